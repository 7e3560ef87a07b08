/* geodb_driver.h - what a GeoDB driver implements (for geodb.c and the
 * drivers only; everything else includes geodb.h).
 *
 * A driver's handle embeds struct geodb as its first member, so that the
 * public functions in geodb.c can dispatch through db->driver and the
 * driver can cast back:
 *
 *     struct sqldb { struct geodb geo; sqlite3 *sqlite; ... };
 *     static int sqlite_site_add(struct geodb *geo, ...)
 *     { struct sqldb *db = (struct sqldb *)geo; ... }
 *
 * Every synchronous operation of geodb.h is a member with the same
 * parameters (minus the geodb_ prefix).  The asynchronous ones are
 * optional: geodb.c runs the synchronous one from a zero timeout on the
 * attached event base when a driver leaves them NULL (fine for SQLite,
 * whose calls take microseconds).  A driver that implements them gets the
 * op that geodb.c allocated and must finish it exactly once, later (never
 * inside the call), with geodb_op_done_snapshot() / geodb_op_done_assign() /
 * geodb_op_done_lease() / geodb_op_done();
 * geodb.c then runs the caller's callback unless it was cancelled, and
 * frees the op.
 */
#ifndef GEODB_DRIVER_H
#define GEODB_DRIVER_H

#include "store/geodb.h"

struct geodb {
	const struct geodb_driver *driver;
	char writer[NAME_MAX_LEN + 1];
	struct event_base *base;   /* set by geodb_attach() */
	struct geodb_op *deferred; /* geodb.c's queued synchronous fallbacks */
};

struct geodb_driver {
	const char *name;   /* "sqlite" */
	const char *prefix; /* "sqlite:" */
	/* args: the spec after the prefix.  Fills *db_r with a handle whose
	 * struct geodb part geodb.c then completes (driver, writer). */
	int (*open)(const char *args, unsigned busy_timeout_ms, struct geodb **db_r,
		    const char **error_r);
	int (*spec_check)(const char *args, const char **error_r);
	void (*close)(struct geodb *db);
	/* optional: called by geodb_attach() after db->base is set */
	int (*attach)(struct geodb *db, const char **error_r);

	int (*init)(struct geodb *db, unsigned *from_r, const char **error_r);
	const char *(*schema_text)(struct geodb *db);
	int (*snapshot_read)(struct geodb *db, struct geodb_snapshot *snap_r, const char **error_r);
	/* optional (SQLite): replace the whole content by snap */
	int (*snapshot_store)(struct geodb *db, const struct geodb_snapshot *snap,
			      const char **error_r);
	int (*read_begin)(struct geodb *db, const char **error_r);
	void (*read_end)(struct geodb *db);
	bool (*changed)(struct geodb *db); /* NULL: cannot watch */
	int (*check_group_count)(struct geodb *db, unsigned group_count, const char **error_r);

	int (*site_add)(struct geodb *db, const struct geodb_site *site, const char **error_r);
	int (*site_update)(struct geodb *db, const struct geodb_site *site, const char **error_r);
	int (*site_remove)(struct geodb *db, const char *name, const char **error_r);
	int (*site_get)(struct geodb *db, const char *name, struct geodb_site *site_r,
			const char **error_r);
	int (*site_list)(struct geodb *db, struct geodb_site **sites_r, size_t *count_r,
			 const char **error_r);

	int (*backend_add)(struct geodb *db, const char *site, const char *name,
			   const char *address, const char **error_r);
	int (*backend_update)(struct geodb *db, const struct geodb_backend *backend,
			      const char **error_r);
	/* geodb.c has checked that the backend exists and is not online */
	int (*backend_remove)(struct geodb *db, const char *name, unsigned *groups_unassigned_r,
			      const char **error_r);
	int (*backend_get)(struct geodb *db, const char *name, struct geodb_backend *backend_r,
			   const char **error_r);
	int (*backend_list)(struct geodb *db, const char *site, struct geodb_backend **backends_r,
			    size_t *count_r, const char **error_r);
	int (*backend_loads)(struct geodb *db, struct geodb_backend_load **loads_r, size_t *count_r,
			     const char **error_r);

	int (*group_get)(struct geodb *db, unsigned group_id, struct geodb_group *group_r,
			 const char **error_r);
	int (*group_assign_if_absent)(struct geodb *db, struct geodb_group *group,
				      const char **error_r);
	int (*group_set)(struct geodb *db, unsigned group_id, const char *site, const char *backend,
			 const char **error_r);
	/* geodb.c has checked row's names and move_reason */
	int (*group_cas)(struct geodb *db, const struct geodb_group *row, uint64_t expected_epoch,
			 struct geodb_group *stored_r, const char **error_r);
	int (*group_list)(struct geodb *db, struct geodb_group **groups_r, size_t *count_r,
			  const char **error_r);
	int (*group_set_sticky)(struct geodb *db, unsigned group_id, bool sticky,
				const char **error_r);

	int (*user_get)(struct geodb *db, const char *username, struct geodb_user *user_r,
			const char **error_r);
	int (*user_set_group)(struct geodb *db, const char *username, unsigned group_id,
			      const char **error_r);
	/* geodb.c has checked that hold_until_ms is not negative */
	int (*user_move)(struct geodb *db, const char *username, unsigned group_id,
			 int64_t hold_until_ms, const char **error_r);
	int (*user_delete)(struct geodb *db, const char *username, const char **error_r);
	int (*user_list)(struct geodb *db, struct geodb_user **users_r, size_t *count_r,
			 const char **error_r);
	/* geodb.c has checked the username's length, the backend name and
	 * that at_ms is not negative */
	int (*user_last_backend)(struct geodb *db, const char *username, const char *backend,
				 int64_t at_ms, const char **error_r);
	int (*user_last_backend_get)(struct geodb *db, const char *username,
				     char backend_r[NAME_MAX_LEN + 1], int64_t *at_ms_r,
				     const char **error_r);

	/* geodb.c has checked the name, the mark and the reason's length */
	int (*backend_mark)(struct geodb *db, const char *name, enum health_mark mark,
			    int64_t mark_since, const char *reason, const char **error_r);
	int (*move_ack_put)(struct geodb *db, const struct geodb_move_ack *ack, unsigned ttl_secs,
			    const char **error_r);
	int (*move_ack_list)(struct geodb *db, unsigned group_id, struct geodb_move_ack **acks_r,
			     size_t *count_r, const char **error_r);
	/* geodb.c has checked the observer, the TTL and that count > 0 */
	int (*group_load_put)(struct geodb *db, const char *observer,
			      const struct geodb_group_load *rows, size_t count, unsigned ttl_secs,
			      const char **error_r);
	int (*group_load_list)(struct geodb *db, struct geodb_group_load **rows_r, size_t *count_r,
			       const char **error_r);

	int (*lease_acquire)(struct geodb *db, const char *name, const char *holder,
			     unsigned ttl_secs, struct geodb_lease *lease_r, const char **error_r);
	int (*lease_release)(struct geodb *db, const char *name, const char *holder,
			     const char **error_r);
	int (*health_put)(struct geodb *db, const struct geodb_health *health, unsigned ttl_secs,
			  const char **error_r);
	int (*health_list)(struct geodb *db, const char *backend, struct geodb_health **health_r,
			   size_t *count_r, const char **error_r);

	/* geodb.c has checked the names, now_ms > 0 and ttl_secs >= 1 */
	int (*site_heartbeat_put)(struct geodb *db, const char *site, const char *writer,
				  int64_t now_ms, unsigned ttl_secs, const char **error_r);
	/* geodb.c has checked from_ms <= to_ms */
	int (*site_heartbeat_list)(struct geodb *db, const char *site, int64_t from_ms,
				   int64_t to_ms, struct geodb_site_heartbeat **rows_r,
				   size_t *count_r, const char **error_r);
	/* geodb.c has checked the names and ttl_secs >= 1 */
	int (*site_reachability_put)(struct geodb *db, const struct geodb_site_reachability *row,
				     unsigned ttl_secs, const char **error_r);
	int (*site_reachability_list)(struct geodb *db, const char *observer_site,
				      struct geodb_site_reachability **rows_r, size_t *count_r,
				      const char **error_r);
	/* geodb.c has checked cell and set written_at_ms (never 0 here) */
	int (*group_failover_put)(struct geodb *db, const struct geodb_group_failover *cell,
				  const char **error_r);
	int (*group_failover_put_if)(struct geodb *db, const struct geodb_group_failover *cell,
				     struct geodb_group_failover *stored_r, const char **error_r);
	int (*group_failover_release)(struct geodb *db, unsigned group_id, const char *writer_site,
				      const char **error_r);
	int (*group_failover_get)(struct geodb *db, unsigned group_id,
				  struct geodb_group_failover *cell_r, const char **error_r);
	int (*group_failover_list)(struct geodb *db, struct geodb_group_failover **cells_r,
				   size_t *count_r, const char **error_r);
	/* geodb.c has checked move and set started_ms (never 0 here) */
	int (*site_force_move_start)(struct geodb *db, const struct geodb_site_force_move *move,
				     const char **error_r);
	int (*site_force_move_stop)(struct geodb *db, const char *site, int64_t id,
				    unsigned *stopped_r, const char **error_r);
	int (*site_force_move_list)(struct geodb *db, const char *site,
				    struct geodb_site_force_move **moves_r, size_t *count_r,
				    const char **error_r);

	/* optional asynchronous versions (see above) */
	void (*snapshot_read_async)(struct geodb *db, struct geodb_op *op);
	void (*group_assign_async)(struct geodb *db, struct geodb_op *op,
				   const struct geodb_group *group);
	void (*health_put_async)(struct geodb *db, struct geodb_op *op,
				 const struct geodb_health *health, unsigned ttl_secs);
	void (*lease_acquire_async)(struct geodb *db, struct geodb_op *op, const char *name,
				    const char *holder, unsigned ttl_secs);
	void (*lease_release_async)(struct geodb *db, struct geodb_op *op, const char *name,
				    const char *holder);
};

extern const struct geodb_driver geodb_driver_sqlite;
extern const struct geodb_driver geodb_driver_cassandra;

/* ---- for the drivers: a group's balancing fields ---- */

/* Unix milliseconds now (moved_at_ms, history's left_ms). */
int64_t geodb_unix_ms(void);

/* row is about to replace stored (the group's row as it is, or NULL when
 * the group has none): sets row's history and moved_at_ms from stored's.
 * A switch (stored has a backend and row another) puts stored's backend at
 * the head of the history with left_ms now_ms, drops an older entry of the
 * same backend and anything beyond BALANCE_HISTORY, and sets moved_at_ms
 * to now_ms; otherwise row gets stored's history and moved_at_ms (none
 * without a stored row). */
void geodb_group_switch(struct geodb_group *row, const struct geodb_group *stored, int64_t now_ms);

/* stored is the row of a group on a backend being removed
 * (geodb_backend_remove()): row becomes the group's unassigned row.
 * Backend "" (the site stays), a move in progress ended, alt_backend
 * cleared if it is the removed backend, epoch + 1, sticky kept, and the
 * removed backend at the head of the history (a switch:
 * geodb_group_switch()).  written_by and written_at are the driver's. */
void geodb_group_unassign(struct geodb_group *row, const struct geodb_group *stored,
			  int64_t now_ms);

/* row, a proposed assignment (geodb_group_assign_if_absent()), is about
 * to be stored over stored, the row of an unassigned group (backend ""):
 * row keeps its site, backend, alternative and move, and gets epoch
 * stored + 1 and stored's sticky, history and moved_at_ms (assigning an
 * unassigned group is no switch).  written_by and written_at are the
 * driver's. */
void geodb_group_claim(struct geodb_group *row, const struct geodb_group *stored);

/* The history column: "b2@1700000000000,b1@1690000000000" (newest first).
 * GEODB_HISTORY_TEXT_MAX holds the longest. */
#define GEODB_HISTORY_TEXT_MAX (BALANCE_HISTORY * (NAME_MAX_LEN + 22) + 1)
void geodb_history_format(const struct geodb_group *group, char *buf, size_t size);
/* Fills group->history from text; entries it cannot read are skipped (a
 * history is a hint, never a reason to refuse a row). */
void geodb_history_parse(const char *text, struct geodb_group *group);

/* For drivers finishing an asynchronous op (exactly once, from the event
 * loop).  done_snapshot takes ownership of snap, which must be malloc()ed
 * (NULL with error set on failure). */
void geodb_op_done_snapshot(struct geodb_op *op, struct geodb_snapshot *snap, const char *error);
void geodb_op_done_assign(struct geodb_op *op, int result, const struct geodb_group *stored,
			  const char *error);
void geodb_op_done(struct geodb_op *op, const char *error);
/* lease: NULL on error. */
void geodb_op_done_lease(struct geodb_op *op, int result, const struct geodb_lease *lease,
			 const char *error);

#endif
