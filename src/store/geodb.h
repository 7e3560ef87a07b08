/* geodb.h - the GeoDB: the cluster state shared by every host.
 *
 * Tables (see geodb_sqlite.c for the SQL):
 *   sites     name, status, tags, load_balancer
 *   backends  name, site, address, status, load_factor
 *   groups    group_id -> site, backend, epoch, written_by, written_at
 *   users     username -> group_id (overrides only; most users are not stored)
 *   meta      schema_version, group_count
 *
 * Every write carries who wrote it (the writer name given at open) and when,
 * and group assignments carry an epoch that grows with every change, so that
 * later the two halves of a split brain can be merged.
 *
 * This version has one driver, embedded SQLite (geodb = sqlite:PATH), which
 * several processes on one host may share (WAL mode, busy timeout).  Calls
 * are synchronous.  Getters return 1 found, 0 not found, -1 error.
 */
#ifndef GEODB_H
#define GEODB_H

#include "brain/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEODB_SCHEMA_VERSION 1

struct geodb;

struct geodb_site {
	char name[NAME_MAX_LEN + 1];
	enum site_status status;
	char tags[256]; /* comma-separated */
	char load_balancer[ADDRESS_MAX_LEN + 1];
};

struct geodb_backend {
	char name[NAME_MAX_LEN + 1];
	char site[NAME_MAX_LEN + 1];
	char address[ADDRESS_MAX_LEN + 1];
	enum backend_status status;
	unsigned load_factor; /* 0..100 */
	char updated_by[NAME_MAX_LEN + 1];
	int64_t updated_at; /* unix seconds */
};

struct geodb_group {
	unsigned group_id;
	char site[NAME_MAX_LEN + 1];
	char backend[NAME_MAX_LEN + 1];
	uint64_t epoch;
	char written_by[NAME_MAX_LEN + 1];
	int64_t written_at;
};

struct geodb_user {
	char username[USERNAME_MAX_LEN + 1];
	unsigned group_id;
	char written_by[NAME_MAX_LEN + 1];
	int64_t written_at;
};

/* Per-backend count of assigned groups, for placement. */
struct geodb_backend_load {
	char backend[NAME_MAX_LEN + 1];
	unsigned groups;
};

/* Opens spec ("sqlite:PATH"), creating the schema if the file is new.
 * writer names this process in every row it writes.  busy_timeout_ms bounds
 * how long a call waits for another process's write lock. */
int geodb_open(const char *spec, const char *writer, unsigned busy_timeout_ms, struct geodb **db_r,
	       const char **error_r);
void geodb_close(struct geodb **db);

/* A read transaction around several reads: one lock round-trip instead of
 * one per statement (what route_user() does on every login).  Writes must
 * not happen inside it. */
int geodb_read_begin(struct geodb *db, const char **error_r);
void geodb_read_end(struct geodb *db);

/* Whether anything was committed to the GeoDB (by any process) since the
 * last call: lets a cache skip every query while nothing changed.  For
 * SQLite it compares the WAL-index header in the mapped -shm file (see
 * https://www.sqlite.org/walformat.html), which every commit rewrites: no
 * system call.  Where that cannot be watched it always says true. */
bool geodb_changed(struct geodb *db);

/* Records group_count on first use; afterwards refuses a different one,
 * because changing it would move almost every user. */
int geodb_check_group_count(struct geodb *db, unsigned group_count, const char **error_r);

int geodb_site_add(struct geodb *db, const struct geodb_site *site, const char **error_r);
int geodb_site_update(struct geodb *db, const struct geodb_site *site, const char **error_r);
int geodb_site_remove(struct geodb *db, const char *name, const char **error_r);
int geodb_site_get(struct geodb *db, const char *name, struct geodb_site *site_r,
		   const char **error_r);
int geodb_site_list(struct geodb *db, struct geodb_site **sites_r, size_t *count_r,
		    const char **error_r);

/* Adds in standby with load factor 100. */
int geodb_backend_add(struct geodb *db, const char *site, const char *name, const char *address,
		      const char **error_r);
int geodb_backend_update(struct geodb *db, const struct geodb_backend *backend,
			 const char **error_r);
/* Refuses an online backend; unassigns the groups of the removed one and
 * returns their number in *groups_unassigned_r. */
int geodb_backend_remove(struct geodb *db, const char *name, unsigned *groups_unassigned_r,
			 const char **error_r);
int geodb_backend_get(struct geodb *db, const char *name, struct geodb_backend *backend_r,
		      const char **error_r);
/* site NULL = all sites. */
int geodb_backend_list(struct geodb *db, const char *site, struct geodb_backend **backends_r,
		       size_t *count_r, const char **error_r);
int geodb_backend_loads(struct geodb *db, struct geodb_backend_load **loads_r, size_t *count_r,
			const char **error_r);

int geodb_group_get(struct geodb *db, unsigned group_id, struct geodb_group *group_r,
		    const char **error_r);
/* Conditional insert: stores *group if the group has no row yet.  Either
 * way *group is filled with the row that is stored afterwards, so two
 * writers racing agree.  Returns 1 if ours was stored, 0 if another won. */
int geodb_group_assign_if_absent(struct geodb *db, struct geodb_group *group, const char **error_r);
/* Direct move: sets the group's site and backend, epoch + 1. */
int geodb_group_set(struct geodb *db, unsigned group_id, const char *site, const char *backend,
		    const char **error_r);
int geodb_group_list(struct geodb *db, struct geodb_group **groups_r, size_t *count_r,
		     const char **error_r);

int geodb_user_get(struct geodb *db, const char *username, struct geodb_user *user_r,
		   const char **error_r);
int geodb_user_set_group(struct geodb *db, const char *username, unsigned group_id,
			 const char **error_r);
/* Returns 1 if a row was deleted, 0 if there was none. */
int geodb_user_delete(struct geodb *db, const char *username, const char **error_r);

#endif
