/* localdb.h - a host's own copy of the state it routes by.
 *
 * The daemon routes every login from this copy: a steady stream of logins
 * by known users costs no GeoDB read or write.  The copy is a whole
 * snapshot of the GeoDB (sites, backends, group assignments, user
 * overrides; geodb_snapshot_read()), replaced when a refresh brings a
 * newer one, plus the assignments this host made since.  It is persisted
 * to the `localdb` SQLite file (the sqlite GeoDB schema), so that a daemon
 * restarted while the GeoDB is away still routes every known user and a
 * restarted fleet does not stampede the GeoDB.
 *
 * Lookups are O(1) for groups (an array of group_count) and O(log n) for
 * backends and user overrides (sorted arrays, binary search).
 */
#ifndef LOCALDB_H
#define LOCALDB_H

#include "store/geodb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct localdb;

struct localdb *localdb_create(unsigned group_count);
void localdb_destroy(struct localdb **ldb);

unsigned localdb_group_count(const struct localdb *ldb);
/* Whether a state was ever installed (from the GeoDB or the file). */
bool localdb_loaded(const struct localdb *ldb);

/* Installs snap (taking its arrays; snap is left empty).  Returns 1 if the
 * routing state differs from what was there, 0 if it is the same, -1 (and
 * installs nothing) if the snapshot cannot be used: error_r says why (a
 * different group_count). */
int localdb_replace(struct localdb *ldb, struct geodb_snapshot *snap, const char **error_r);

/* Records an assignment (ours, or the winner's row a conditional insert
 * returned) until the next snapshot brings it. */
void localdb_put_group(struct localdb *ldb, const struct geodb_group *group);

/* NULL if the group has no backend. */
const struct geodb_group *localdb_group(const struct localdb *ldb, unsigned group_id);
/* The group's row whether assigned or not (an unassigned one may keep the
 * history of a removed backend's group); NULL only for an id out of range. */
const struct geodb_group *localdb_group_row(const struct localdb *ldb, unsigned group_id);
/* How recently a backend must have held a group for route_decide() to
 * prefer it when placing the group again (metacache_ttl; default 1 day). */
void localdb_set_metacache_ttl(struct localdb *ldb, int64_t ttl_ms);
int64_t localdb_metacache_ttl(const struct localdb *ldb);
/* The group's backend row; NULL if unassigned or the backend is unknown. */
const struct geodb_backend *localdb_group_backend(const struct localdb *ldb, unsigned group_id);
const struct geodb_backend *localdb_backend(const struct localdb *ldb, const char *name);
const struct geodb_site *localdb_site(const struct localdb *ldb, const char *name);
/* The user's override group, or -1. */
int localdb_user_group(const struct localdb *ldb, const char *username);
/* The user's override row (group, writer, login hold), or NULL. */
const struct geodb_user *localdb_user(const struct localdb *ldb, const char *username);
/* All backends (sorted by name) and the groups assigned to each. */
const struct geodb_backend *localdb_backends(const struct localdb *ldb, size_t *count_r);
unsigned localdb_backend_group_count(const struct localdb *ldb, size_t backend_index);

/* ---- several sites (brain/site.h) ---- */

/* A group's failover cell as this host holds it.  A daemon routes by an
 * outage cell only once it has held that write of the cell for the settle
 * time (site_reachability_timeout; brain/site.h site_cell_settled());
 * until then by the version it routed by before (routed; none: home). */
struct localdb_cell {
	unsigned group_id;
	bool current_present; /* the snapshot's cell; false: released */
	struct geodb_group_failover current;
	int64_t first_seen_ms; /* when this host first held current (unix ms) */
	bool routed_present;
	struct geodb_group_failover routed;
};
void localdb_set_cell_settle(struct localdb *ldb, int64_t settle_ms);
bool localdb_cell_settled(const struct localdb *ldb, const struct localdb_cell *cell,
			  int64_t now_ms);
/* NULL: the group has no cell this host knows of. */
const struct localdb_cell *localdb_cell(const struct localdb *ldb, unsigned group_id);
/* The cell to route the group by at now_ms (the current one once settled,
 * else the routed one); NULL: none (home). */
const struct geodb_group_failover *localdb_route_cell(const struct localdb *ldb,
						      unsigned group_id, int64_t now_ms);
/* The sites and heartbeat rows the cells' verdicts are judged by
 * (route.h route_cell_verdict()). */
struct route_site_view;
void localdb_site_view(const struct localdb *ldb, struct route_site_view *view_r);
/* `site force-move` rows, sorted by site, then id. */
const struct geodb_site_force_move *localdb_force_moves(const struct localdb *ldb,
							 size_t *count_r);

struct localdb_stats {
	size_t sites, backends, groups_assigned, users, failover_cells;
};
void localdb_stats(const struct localdb *ldb, struct localdb_stats *stats_r);

/* Persistence: the whole state into / from a SQLite file (written to a
 * temporary name and renamed, so a crash never leaves half a file).
 * localdb_load() returns 0 when there is no file. */
int localdb_save(const struct localdb *ldb, const char *path, const char **error_r);
int localdb_load(struct localdb *ldb, const char *path, const char **error_r);

#endif
