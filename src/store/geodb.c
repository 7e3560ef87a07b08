/* geodb.c - the GeoDB interface: picks the driver by the spec's prefix and
 * dispatches; runs the asynchronous calls of drivers that only have
 * synchronous ones (SQLite) from a zero timeout on the attached loop. */
#include "store/geodb_driver.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct geodb_driver *const drivers[] = {
	&geodb_driver_sqlite,
	&geodb_driver_cassandra,
};

static const struct geodb_driver *driver_for(const char *spec, const char **args_r,
					     const char **error_r)
{
	static char error[512];
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		size_t len = strlen(drivers[i]->prefix);
		if (strncmp(spec, drivers[i]->prefix, len) == 0) {
			*args_r = spec + len;
			return drivers[i];
		}
	}
	snprintf(error, sizeof(error),
		 "geodb: unsupported GeoDB '%.200s': expected sqlite:PATH or "
		 "cassandra:hosts=H1,H2;keyspace=K;...",
		 spec);
	*error_r = error;
	return NULL;
}

int geodb_spec_check(const char *spec, const char **error_r)
{
	const char *args;
	const struct geodb_driver *driver = driver_for(spec, &args, error_r);
	if (driver == NULL)
		return -1;
	return driver->spec_check(args, error_r);
}

int geodb_open(const char *spec, const char *writer, unsigned busy_timeout_ms, struct geodb **db_r,
	       const char **error_r)
{
	const char *args;
	const struct geodb_driver *driver = driver_for(spec, &args, error_r);
	if (driver == NULL)
		return -1;
	struct geodb *db;
	if (driver->open(args, busy_timeout_ms, &db, error_r) < 0)
		return -1;
	db->driver = driver;
	snprintf(db->writer, sizeof(db->writer), "%s", writer);
	*db_r = db;
	return 0;
}

static void deferred_fail_all(struct geodb *db);

void geodb_close(struct geodb **db)
{
	if (*db == NULL)
		return;
	deferred_fail_all(*db);
	(*db)->driver->close(*db);
	*db = NULL;
}

const char *geodb_driver_name(const struct geodb *db)
{
	return db->driver->name;
}

const char *geodb_writer(const struct geodb *db)
{
	return db->writer;
}

int geodb_init(struct geodb *db, unsigned *from_r, const char **error_r)
{
	return db->driver->init(db, from_r, error_r);
}

const char *geodb_schema_text(struct geodb *db)
{
	return db->driver->schema_text(db);
}

void geodb_snapshot_free(struct geodb_snapshot *snap)
{
	free(snap->sites);
	free(snap->backends);
	free(snap->groups);
	free(snap->users);
	free(snap->failovers);
	free(snap->force_moves);
	free(snap->heartbeats);
	memset(snap, 0, sizeof(*snap));
}

int geodb_snapshot_read(struct geodb *db, struct geodb_snapshot *snap_r, const char **error_r)
{
	return db->driver->snapshot_read(db, snap_r, error_r);
}

int geodb_snapshot_store(struct geodb *db, const struct geodb_snapshot *snap, const char **error_r)
{
	if (db->driver->snapshot_store == NULL) {
		*error_r = "geodb: this driver cannot store a whole snapshot";
		return -1;
	}
	return db->driver->snapshot_store(db, snap, error_r);
}

int geodb_read_begin(struct geodb *db, const char **error_r)
{
	return db->driver->read_begin != NULL ? db->driver->read_begin(db, error_r) : 0;
}

void geodb_read_end(struct geodb *db)
{
	if (db->driver->read_end != NULL)
		db->driver->read_end(db);
}

bool geodb_changed(struct geodb *db)
{
	return db->driver->changed != NULL ? db->driver->changed(db) : true;
}

bool geodb_can_watch(const struct geodb *db)
{
	return db->driver->changed != NULL;
}

int geodb_check_group_count(struct geodb *db, unsigned group_count, const char **error_r)
{
	return db->driver->check_group_count(db, group_count, error_r);
}

int geodb_site_add(struct geodb *db, const struct geodb_site *site, const char **error_r)
{
	return db->driver->site_add(db, site, error_r);
}

int geodb_site_update(struct geodb *db, const struct geodb_site *site, const char **error_r)
{
	return db->driver->site_update(db, site, error_r);
}

int geodb_site_remove(struct geodb *db, const char *name, const char **error_r)
{
	return db->driver->site_remove(db, name, error_r);
}

int geodb_site_get(struct geodb *db, const char *name, struct geodb_site *site_r,
		   const char **error_r)
{
	return db->driver->site_get(db, name, site_r, error_r);
}

int geodb_site_list(struct geodb *db, struct geodb_site **sites_r, size_t *count_r,
		    const char **error_r)
{
	return db->driver->site_list(db, sites_r, count_r, error_r);
}

int geodb_backend_add(struct geodb *db, const char *site, const char *name, const char *address,
		      const char **error_r)
{
	return db->driver->backend_add(db, site, name, address, error_r);
}

int geodb_backend_update(struct geodb *db, const struct geodb_backend *backend,
			 const char **error_r)
{
	return db->driver->backend_update(db, backend, error_r);
}

int geodb_backend_remove(struct geodb *db, const char *name, unsigned *groups_unassigned_r,
			 const char **error_r)
{
	/* the rule is the same for every driver, so it is here */
	static __thread char error[256];
	struct geodb_backend backend;
	int found = geodb_backend_get(db, name, &backend, error_r);
	if (found < 0)
		return -1;
	if (found == 0) {
		snprintf(error, sizeof(error), "backend %s does not exist", name);
		*error_r = error;
		return -1;
	}
	if (backend.status == BACKEND_STATUS_ONLINE) {
		snprintf(error, sizeof(error),
			 "backend %s is online: set it offline or standby first "
			 "('backend update --status offline %s')",
			 name, name);
		*error_r = error;
		return -1;
	}
	return db->driver->backend_remove(db, name, groups_unassigned_r, error_r);
}

int geodb_backend_get(struct geodb *db, const char *name, struct geodb_backend *backend_r,
		      const char **error_r)
{
	return db->driver->backend_get(db, name, backend_r, error_r);
}

int geodb_backend_list(struct geodb *db, const char *site, struct geodb_backend **backends_r,
		       size_t *count_r, const char **error_r)
{
	return db->driver->backend_list(db, site, backends_r, count_r, error_r);
}

int geodb_backend_loads(struct geodb *db, struct geodb_backend_load **loads_r, size_t *count_r,
			const char **error_r)
{
	return db->driver->backend_loads(db, loads_r, count_r, error_r);
}

int geodb_group_get(struct geodb *db, unsigned group_id, struct geodb_group *group_r,
		    const char **error_r)
{
	return db->driver->group_get(db, group_id, group_r, error_r);
}

int geodb_group_assign_if_absent(struct geodb *db, struct geodb_group *group, const char **error_r)
{
	return db->driver->group_assign_if_absent(db, group, error_r);
}

int geodb_group_set(struct geodb *db, unsigned group_id, const char *site, const char *backend,
		    const char **error_r)
{
	return db->driver->group_set(db, group_id, site, backend, error_r);
}

/* name is a valid object name, or "" where empty_ok. */
static int check_name(const char *what, const char *name, size_t size, bool empty_ok,
		      const char **error_r)
{
	static __thread char error[256];
	if (strnlen(name, size) == size) {
		snprintf(error, sizeof(error), "geodb: %s is not terminated within %zu bytes", what,
			 size);
		*error_r = error;
		return -1;
	}
	if ((empty_ok && name[0] == '\0') || object_name_is_valid(name))
		return 0;
	snprintf(error, sizeof(error),
		 "geodb: %s '%.80s' is not a valid name (1-%d of [A-Za-z0-9._-])", what, name,
		 NAME_MAX_LEN);
	*error_r = error;
	return -1;
}

int geodb_group_cas(struct geodb *db, const struct geodb_group *row, uint64_t expected_epoch,
		    struct geodb_group *stored_r, const char **error_r)
{
	static __thread char error[256];
	if (check_name("the group's site", row->site, sizeof(row->site), false, error_r) < 0 ||
	    check_name("the group's backend", row->backend, sizeof(row->backend), false, error_r) <
		    0 ||
	    check_name("the group's alt_backend", row->alt_backend, sizeof(row->alt_backend), true,
		       error_r) < 0 ||
	    check_name("the group's failover_site", row->failover_site, sizeof(row->failover_site),
		       true, error_r) < 0 ||
	    check_name("the group's move_to", row->move_to, sizeof(row->move_to), true, error_r) <
		    0)
		return -1;
	if (strnlen(row->move_reason, sizeof(row->move_reason)) == sizeof(row->move_reason)) {
		snprintf(error, sizeof(error),
			 "geodb: group %u: move_reason is not terminated within %zu bytes",
			 row->group_id, sizeof(row->move_reason));
		*error_r = error;
		return -1;
	}
	if (row->move_started_ms < 0) {
		snprintf(error, sizeof(error), "geodb: group %u: move_started %lld is negative",
			 row->group_id, (long long)row->move_started_ms);
		*error_r = error;
		return -1;
	}
	return db->driver->group_cas(db, row, expected_epoch, stored_r, error_r);
}

int geodb_group_list(struct geodb *db, struct geodb_group **groups_r, size_t *count_r,
		     const char **error_r)
{
	return db->driver->group_list(db, groups_r, count_r, error_r);
}

int geodb_group_set_sticky(struct geodb *db, unsigned group_id, bool sticky, const char **error_r)
{
	return db->driver->group_set_sticky(db, group_id, sticky, error_r);
}

int geodb_user_get(struct geodb *db, const char *username, struct geodb_user *user_r,
		   const char **error_r)
{
	return db->driver->user_get(db, username, user_r, error_r);
}

int geodb_user_set_group(struct geodb *db, const char *username, unsigned group_id,
			 const char **error_r)
{
	return db->driver->user_set_group(db, username, group_id, error_r);
}

int geodb_user_move(struct geodb *db, const char *username, unsigned group_id,
		    int64_t hold_until_ms, const char **error_r)
{
	static __thread char error[256];
	if (hold_until_ms < 0) {
		snprintf(error, sizeof(error),
			 "geodb: user %.100s: hold_until %lld is negative (unix milliseconds, or "
			 "0 for no hold)",
			 username, (long long)hold_until_ms);
		*error_r = error;
		return -1;
	}
	return db->driver->user_move(db, username, group_id, hold_until_ms, error_r);
}

int geodb_user_last_backend(struct geodb *db, const char *username, const char *backend,
			    int64_t at_ms, const char **error_r)
{
	static __thread char error[256];
	size_t len = strnlen(username, USERNAME_MAX_LEN + 1);
	if (len == 0 || len > USERNAME_MAX_LEN) {
		snprintf(error, sizeof(error),
			 "geodb: the last backend of a user needs a username of 1-%d characters",
			 USERNAME_MAX_LEN);
		*error_r = error;
		return -1;
	}
	if (check_name("the user's last backend", backend, NAME_MAX_LEN + 1, false, error_r) < 0)
		return -1;
	if (at_ms < 0) {
		snprintf(error, sizeof(error),
			 "geodb: user %.100s: the time of the last backend %lld is negative (unix "
			 "milliseconds)",
			 username, (long long)at_ms);
		*error_r = error;
		return -1;
	}
	return db->driver->user_last_backend(db, username, backend, at_ms, error_r);
}

int geodb_user_last_backend_get(struct geodb *db, const char *username,
				char backend_r[NAME_MAX_LEN + 1], int64_t *at_ms_r,
				const char **error_r)
{
	backend_r[0] = '\0';
	*at_ms_r = 0;
	return db->driver->user_last_backend_get(db, username, backend_r, at_ms_r, error_r);
}

int geodb_user_delete(struct geodb *db, const char *username, const char **error_r)
{
	return db->driver->user_delete(db, username, error_r);
}

int geodb_user_list(struct geodb *db, struct geodb_user **users_r, size_t *count_r,
		    const char **error_r)
{
	return db->driver->user_list(db, users_r, count_r, error_r);
}

int geodb_backend_mark(struct geodb *db, const char *name, enum health_mark mark,
		       int64_t mark_since, const char *reason, const char **error_r)
{
	static __thread char error[256];
	const struct geodb_backend *sizes = NULL;
	if (check_name("backend name", name, sizeof(sizes->name), false, error_r) < 0)
		return -1;
	if (mark != HEALTH_MARK_UP && mark != HEALTH_MARK_DOWN) {
		snprintf(error, sizeof(error), "geodb: backend %s: mark %d is neither up nor down",
			 name, (int)mark);
		*error_r = error;
		return -1;
	}
	if (reason == NULL)
		reason = "";
	size_t len = strlen(reason);
	if (len >= sizeof(sizes->mark_reason)) {
		snprintf(error, sizeof(error),
			 "geodb: backend %s: the mark reason has %zu characters, at most %zu fit",
			 name, len, sizeof(sizes->mark_reason) - 1);
		*error_r = error;
		return -1;
	}
	if (mark_since < 0) {
		snprintf(error, sizeof(error), "geodb: backend %s: mark_since %lld is negative",
			 name, (long long)mark_since);
		*error_r = error;
		return -1;
	}
	return db->driver->backend_mark(db, name, mark, mark_since, reason, error_r);
}

int geodb_move_ack_put(struct geodb *db, const struct geodb_move_ack *ack, unsigned ttl_secs,
		       const char **error_r)
{
	static __thread char error[256];
	if (ttl_secs == 0) {
		*error_r = "geodb: a move acknowledgement needs a TTL of at least one second";
		return -1;
	}
	size_t len = strnlen(ack->observer, sizeof(ack->observer));
	if (len == 0 || len == sizeof(ack->observer)) {
		snprintf(error, sizeof(error),
			 "geodb: group %u: a move acknowledgement needs an observer name of "
			 "1-%zu characters",
			 ack->group_id, sizeof(ack->observer) - 1);
		*error_r = error;
		return -1;
	}
	return db->driver->move_ack_put(db, ack, ttl_secs, error_r);
}

int geodb_move_ack_list(struct geodb *db, unsigned group_id, struct geodb_move_ack **acks_r,
			size_t *count_r, const char **error_r)
{
	return db->driver->move_ack_list(db, group_id, acks_r, count_r, error_r);
}

int geodb_group_load_put(struct geodb *db, const char *observer,
			 const struct geodb_group_load *rows, size_t count, unsigned ttl_secs,
			 const char **error_r)
{
	static __thread char error[256];
	if (ttl_secs == 0) {
		*error_r = "geodb: a group load report needs a TTL of at least one second";
		return -1;
	}
	size_t len = strnlen(observer, NAME_MAX_LEN + 1);
	if (len == 0 || len > NAME_MAX_LEN) {
		snprintf(error, sizeof(error),
			 "geodb: a group load report needs an observer name of 1-%d characters",
			 NAME_MAX_LEN);
		*error_r = error;
		return -1;
	}
	if (count == 0)
		return 0;
	return db->driver->group_load_put(db, observer, rows, count, ttl_secs, error_r);
}

int geodb_group_load_list(struct geodb *db, struct geodb_group_load **rows_r, size_t *count_r,
			  const char **error_r)
{
	return db->driver->group_load_list(db, rows_r, count_r, error_r);
}

int geodb_lease_acquire(struct geodb *db, const char *name, const char *holder, unsigned ttl_secs,
			struct geodb_lease *lease_r, const char **error_r)
{
	if (ttl_secs == 0) {
		*error_r = "geodb: a lease needs a TTL of at least one second";
		return -1;
	}
	return db->driver->lease_acquire(db, name, holder, ttl_secs, lease_r, error_r);
}

int geodb_lease_release(struct geodb *db, const char *name, const char *holder,
			const char **error_r)
{
	return db->driver->lease_release(db, name, holder, error_r);
}

int geodb_health_put(struct geodb *db, const struct geodb_health *health, unsigned ttl_secs,
		     const char **error_r)
{
	if (ttl_secs == 0) {
		*error_r = "geodb: a health observation needs a TTL of at least one second";
		return -1;
	}
	return db->driver->health_put(db, health, ttl_secs, error_r);
}

int geodb_health_list(struct geodb *db, const char *backend, struct geodb_health **health_r,
		      size_t *count_r, const char **error_r)
{
	return db->driver->health_list(db, backend, health_r, count_r, error_r);
}

/* ---- several sites ---- */

int geodb_site_heartbeat_put_ttl(struct geodb *db, const char *site, const char *writer,
				 int64_t now_ms, unsigned ttl_secs, const char **error_r)
{
	static __thread char error[256];
	if (check_name("the heartbeat's site", site, NAME_MAX_LEN + 1, false, error_r) < 0)
		return -1;
	size_t len = strnlen(writer, NAME_MAX_LEN + 1);
	if (len == 0 || len > NAME_MAX_LEN) {
		snprintf(error, sizeof(error),
			 "geodb: site %s: a heartbeat needs a writer name of 1-%d characters", site,
			 NAME_MAX_LEN);
		*error_r = error;
		return -1;
	}
	if (now_ms <= 0) {
		snprintf(error, sizeof(error),
			 "geodb: site %s: heartbeat time %lld is not positive (unix milliseconds)",
			 site, (long long)now_ms);
		*error_r = error;
		return -1;
	}
	if (ttl_secs == 0) {
		*error_r = "geodb: a heartbeat needs a retention of at least one second";
		return -1;
	}
	return db->driver->site_heartbeat_put(db, site, writer, now_ms, ttl_secs, error_r);
}

int geodb_site_heartbeat_put(struct geodb *db, const char *site, const char *writer, int64_t now_ms,
			     const char **error_r)
{
	return geodb_site_heartbeat_put_ttl(db, site, writer, now_ms,
					    GEODB_HEARTBEAT_RETENTION_SECS, error_r);
}

int geodb_site_heartbeat_list(struct geodb *db, const char *site, int64_t from_ms, int64_t to_ms,
			      struct geodb_site_heartbeat **rows_r, size_t *count_r,
			      const char **error_r)
{
	static __thread char error[256];
	if (from_ms > to_ms || from_ms < 0) {
		snprintf(error, sizeof(error),
			 "geodb: heartbeats from %lld to %lld: not a range of unix milliseconds",
			 (long long)from_ms, (long long)to_ms);
		*error_r = error;
		return -1;
	}
	if (site != NULL &&
	    check_name("the heartbeats' site", site, NAME_MAX_LEN + 1, false, error_r) < 0)
		return -1;
	return db->driver->site_heartbeat_list(db, site, from_ms, to_ms, rows_r, count_r, error_r);
}

int geodb_site_reachability_put(struct geodb *db, const struct geodb_site_reachability *row,
				unsigned ttl_secs, const char **error_r)
{
	static __thread char error[256];
	if (check_name("the observer site", row->observer_site, sizeof(row->observer_site), false,
		       error_r) < 0 ||
	    check_name("the target site", row->target_site, sizeof(row->target_site), false,
		       error_r) < 0)
		return -1;
	if (row->since_ms < 0 || row->observed_ms < 0) {
		snprintf(error, sizeof(error),
			 "geodb: reachability of %s from %s: negative time (unix milliseconds)",
			 row->target_site, row->observer_site);
		*error_r = error;
		return -1;
	}
	if (ttl_secs == 0) {
		*error_r = "geodb: a reachability observation needs a TTL of at least one second";
		return -1;
	}
	return db->driver->site_reachability_put(db, row, ttl_secs, error_r);
}

int geodb_site_reachability_list(struct geodb *db, const char *observer_site,
				 struct geodb_site_reachability **rows_r, size_t *count_r,
				 const char **error_r)
{
	return db->driver->site_reachability_list(db, observer_site, rows_r, count_r, error_r);
}

bool geodb_failover_reason_is_valid(const char *reason)
{
	return strcmp(reason, GEODB_FAILOVER_REASON_OUTAGE) == 0 ||
	       strcmp(reason, GEODB_FAILOVER_REASON_EVACUATE) == 0 ||
	       strcmp(reason, GEODB_FAILOVER_REASON_FORCE) == 0;
}

/* cell checked, written_at_ms 0 made now: into *out */
static int failover_check(const struct geodb_group_failover *cell, struct geodb_group_failover *out,
			  const char **error_r)
{
	static __thread char error[256];
	if (check_name("the failover cell's writer_site", cell->writer_site,
		       sizeof(cell->writer_site), false, error_r) < 0 ||
	    check_name("the failover cell's target_site", cell->target_site,
		       sizeof(cell->target_site), false, error_r) < 0 ||
	    check_name("the failover cell's target_backend", cell->target_backend,
		       sizeof(cell->target_backend), false, error_r) < 0)
		return -1;
	if (strnlen(cell->reason, sizeof(cell->reason)) == sizeof(cell->reason) ||
	    !geodb_failover_reason_is_valid(cell->reason)) {
		snprintf(
			error, sizeof(error),
			"geodb: group %u: failover reason '%.16s' is not outage, evacuate or force",
			cell->group_id, cell->reason);
		*error_r = error;
		return -1;
	}
	if (cell->written_at_ms < 0) {
		snprintf(error, sizeof(error),
			 "geodb: group %u: failover written_at %lld is negative", cell->group_id,
			 (long long)cell->written_at_ms);
		*error_r = error;
		return -1;
	}
	*out = *cell;
	if (out->written_at_ms == 0)
		out->written_at_ms = geodb_unix_ms();
	return 0;
}

int geodb_group_failover_put(struct geodb *db, const struct geodb_group_failover *cell,
			     const char **error_r)
{
	struct geodb_group_failover ours;
	if (failover_check(cell, &ours, error_r) < 0)
		return -1;
	return db->driver->group_failover_put(db, &ours, error_r);
}

int geodb_group_failover_put_if(struct geodb *db, const struct geodb_group_failover *cell,
				struct geodb_group_failover *stored_r, const char **error_r)
{
	struct geodb_group_failover ours;
	if (failover_check(cell, &ours, error_r) < 0)
		return -1;
	return db->driver->group_failover_put_if(db, &ours, stored_r, error_r);
}

int geodb_group_failover_release(struct geodb *db, unsigned group_id, const char *writer_site,
				 const char **error_r)
{
	if (check_name("the failover cell's writer_site", writer_site, NAME_MAX_LEN + 1, false,
		       error_r) < 0)
		return -1;
	return db->driver->group_failover_release(db, group_id, writer_site, error_r);
}

int geodb_group_failover_get(struct geodb *db, unsigned group_id,
			     struct geodb_group_failover *cell_r, const char **error_r)
{
	return db->driver->group_failover_get(db, group_id, cell_r, error_r);
}

int geodb_group_failover_list(struct geodb *db, struct geodb_group_failover **cells_r,
			      size_t *count_r, const char **error_r)
{
	return db->driver->group_failover_list(db, cells_r, count_r, error_r);
}

int geodb_site_force_move_start(struct geodb *db, const struct geodb_site_force_move *move,
				const char **error_r)
{
	static __thread char error[512];
	if (check_name("the force move's site", move->site, sizeof(move->site), false, error_r) < 0)
		return -1;
	if (move->id <= 0) {
		snprintf(error, sizeof(error), "geodb: site %s: force move id %lld is not positive",
			 move->site, (long long)move->id);
		*error_r = error;
		return -1;
	}
	if (move->percent > 100) {
		snprintf(error, sizeof(error),
			 "geodb: site %s: force move percent %u is out of range (0..100)",
			 move->site, move->percent);
		*error_r = error;
		return -1;
	}
	if (move->started_ms < 0) {
		snprintf(error, sizeof(error), "geodb: site %s: force move start %lld is negative",
			 move->site, (long long)move->started_ms);
		*error_r = error;
		return -1;
	}
	size_t len = strnlen(move->destinations, sizeof(move->destinations));
	if (len == 0 || len == sizeof(move->destinations)) {
		snprintf(error, sizeof(error),
			 "geodb: site %s: a force move needs 1-%d characters of destination sites",
			 move->site, GEODB_FORCE_MOVE_DESTINATIONS_MAX);
		*error_r = error;
		return -1;
	}
	/* each destination a valid site name, not site, not twice */
	const char *p = move->destinations;
	while (true) {
		size_t n = strcspn(p, ",");
		char name[NAME_MAX_LEN + 1];
		bool ok = n > 0 && n <= NAME_MAX_LEN;
		if (ok) {
			memcpy(name, p, n);
			name[n] = '\0';
			ok = object_name_is_valid(name);
		}
		if (!ok) {
			snprintf(error, sizeof(error),
				 "geodb: site %s: force move destinations '%s': '%.*s' is not a "
				 "valid site name",
				 move->site, move->destinations, (int)(n < 80 ? n : 80), p);
			*error_r = error;
			return -1;
		}
		if (strcmp(name, move->site) == 0) {
			snprintf(error, sizeof(error),
				 "geodb: site %s: a force move cannot have its own site as a "
				 "destination",
				 move->site);
			*error_r = error;
			return -1;
		}
		for (const char *q = move->destinations; q < p;) {
			size_t m = strcspn(q, ",");
			if (m == n && memcmp(q, p, n) == 0) {
				snprintf(error, sizeof(error),
					 "geodb: site %s: force move destination %s is given twice",
					 move->site, name);
				*error_r = error;
				return -1;
			}
			q += m + 1;
		}
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	struct geodb_site_force_move ours = *move;
	if (ours.started_ms == 0)
		ours.started_ms = geodb_unix_ms();
	return db->driver->site_force_move_start(db, &ours, error_r);
}

int geodb_site_force_move_stop(struct geodb *db, const char *site, int64_t id, unsigned *stopped_r,
			       const char **error_r)
{
	if (check_name("the force move's site", site, NAME_MAX_LEN + 1, false, error_r) < 0)
		return -1;
	*stopped_r = 0;
	return db->driver->site_force_move_stop(db, site, id, stopped_r, error_r);
}

int geodb_site_force_move_list(struct geodb *db, const char *site,
			       struct geodb_site_force_move **moves_r, size_t *count_r,
			       const char **error_r)
{
	return db->driver->site_force_move_list(db, site, moves_r, count_r, error_r);
}

/* ---- a group's balancing fields ---- */

int64_t geodb_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void geodb_group_switch(struct geodb_group *row, const struct geodb_group *stored, int64_t now_ms)
{
	struct geodb_group_history history[BALANCE_HISTORY];
	memset(history, 0, sizeof(history));
	if (stored == NULL) {
		memcpy(row->history, history, sizeof(history));
		row->moved_at_ms = 0;
		return;
	}
	if (stored->backend[0] == '\0' || strcmp(stored->backend, row->backend) == 0) {
		/* no switch: nothing left, nothing to record */
		memcpy(row->history, stored->history, sizeof(history));
		row->moved_at_ms = stored->moved_at_ms;
		return;
	}
	size_t n = 0;
	snprintf(history[n].backend, sizeof(history[n].backend), "%s", stored->backend);
	history[n++].left_ms = now_ms;
	for (size_t i = 0; i < BALANCE_HISTORY && n < BALANCE_HISTORY; i++) {
		const struct geodb_group_history *h = &stored->history[i];
		if (h->backend[0] == '\0')
			break;
		if (strcmp(h->backend, stored->backend) != 0)
			history[n++] = *h;
	}
	memcpy(row->history, history, sizeof(history));
	row->moved_at_ms = now_ms;
}

void geodb_group_unassign(struct geodb_group *row, const struct geodb_group *stored, int64_t now_ms)
{
	*row = *stored;
	row->backend[0] = '\0';
	if (strcmp(row->alt_backend, stored->backend) == 0)
		row->alt_backend[0] = '\0';
	row->move_to[0] = '\0';
	row->move_started_ms = 0;
	row->move_reason[0] = '\0';
	row->epoch = stored->epoch + 1;
	geodb_group_switch(row, stored, now_ms);
}

void geodb_group_claim(struct geodb_group *row, const struct geodb_group *stored)
{
	row->epoch = stored->epoch + 1;
	row->sticky = stored->sticky;
	/* stored has no backend: no switch, its history and moved_at stay */
	geodb_group_switch(row, stored, 0);
}

void geodb_history_format(const struct geodb_group *group, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < BALANCE_HISTORY && group->history[i].backend[0] != '\0'; i++) {
		int n = snprintf(buf + used, size - used, "%s%s@%lld", i > 0 ? "," : "",
				 group->history[i].backend, (long long)group->history[i].left_ms);
		if (n < 0 || (size_t)n >= size - used) {
			buf[used] = '\0'; /* whole entries only */
			return;
		}
		used += (size_t)n;
	}
}

void geodb_history_parse(const char *text, struct geodb_group *group)
{
	memset(group->history, 0, sizeof(group->history));
	size_t n = 0;
	const char *p = text != NULL ? text : "";
	while (*p != '\0' && n < BALANCE_HISTORY) {
		size_t len = strcspn(p, ",");
		char entry[NAME_MAX_LEN + 32];
		const char *next = p[len] == ',' ? p + len + 1 : p + len;
		if (len >= sizeof(entry)) {
			p = next;
			continue;
		}
		memcpy(entry, p, len);
		entry[len] = '\0';
		p = next;
		char *at = strrchr(entry, '@');
		if (at == NULL || at[1] < '0' || at[1] > '9')
			continue;
		*at = '\0';
		char *end;
		errno = 0;
		long long left = strtoll(at + 1, &end, 10);
		if (errno != 0 || *end != '\0' || !object_name_is_valid(entry))
			continue;
		bool seen = false;
		for (size_t i = 0; i < n && !seen; i++)
			seen = strcmp(group->history[i].backend, entry) == 0;
		if (seen)
			continue;
		/* a valid name has at most NAME_MAX_LEN characters */
		snprintf(group->history[n].backend, sizeof(group->history[n].backend), "%.*s",
			 NAME_MAX_LEN, entry);
		group->history[n++].left_ms = left;
	}
}

/* ---- sorting ---- */

static int site_cmp(const void *a, const void *b)
{
	return strcmp(((const struct geodb_site *)a)->name, ((const struct geodb_site *)b)->name);
}

static int backend_cmp(const void *a, const void *b)
{
	return strcmp(((const struct geodb_backend *)a)->name,
		      ((const struct geodb_backend *)b)->name);
}

static int group_cmp(const void *a, const void *b)
{
	unsigned x = ((const struct geodb_group *)a)->group_id;
	unsigned y = ((const struct geodb_group *)b)->group_id;
	return x < y ? -1 : x > y;
}

static int user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct geodb_user *)a)->username,
		      ((const struct geodb_user *)b)->username);
}

void geodb_sort_sites(struct geodb_site *sites, size_t count)
{
	if (count > 1)
		qsort(sites, count, sizeof(*sites), site_cmp);
}

void geodb_sort_backends(struct geodb_backend *backends, size_t count)
{
	if (count > 1)
		qsort(backends, count, sizeof(*backends), backend_cmp);
}

void geodb_sort_groups(struct geodb_group *groups, size_t count)
{
	if (count > 1)
		qsort(groups, count, sizeof(*groups), group_cmp);
}

void geodb_sort_users(struct geodb_user *users, size_t count)
{
	if (count > 1)
		qsort(users, count, sizeof(*users), user_cmp);
}

static int failover_cmp(const void *a, const void *b)
{
	unsigned x = ((const struct geodb_group_failover *)a)->group_id;
	unsigned y = ((const struct geodb_group_failover *)b)->group_id;
	return x < y ? -1 : x > y;
}

static int force_move_cmp(const void *a, const void *b)
{
	const struct geodb_site_force_move *x = a, *y = b;
	int cmp = strcmp(x->site, y->site);
	if (cmp != 0)
		return cmp;
	return x->id < y->id ? -1 : x->id > y->id;
}

void geodb_sort_failovers(struct geodb_group_failover *cells, size_t count)
{
	if (count > 1)
		qsort(cells, count, sizeof(*cells), failover_cmp);
}

void geodb_sort_force_moves(struct geodb_site_force_move *moves, size_t count)
{
	if (count > 1)
		qsort(moves, count, sizeof(*moves), force_move_cmp);
}

static int heartbeat_cmp(const void *a, const void *b)
{
	const struct geodb_site_heartbeat *x = a, *y = b;
	int cmp = strcmp(x->site, y->site);
	if (cmp != 0)
		return cmp;
	return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

void geodb_sort_heartbeats(struct geodb_site_heartbeat *rows, size_t count)
{
	if (count > 1)
		qsort(rows, count, sizeof(*rows), heartbeat_cmp);
}

/* ---- asynchronous calls ---- */

enum op_kind { OP_SNAPSHOT, OP_ASSIGN, OP_HEALTH, OP_LEASE, OP_LEASE_RELEASE };

struct geodb_op {
	struct geodb *db;
	enum op_kind kind;
	bool cancelled;
	geodb_snapshot_callback *snapshot_callback;
	geodb_assign_callback *assign_callback;
	geodb_done_callback *done_callback;
	geodb_lease_callback *lease_callback;
	void *context;
	/* the synchronous fallback: run from a zero timeout; queued in
	 * db->deferred meanwhile */
	struct event *deferred;
	struct geodb_op *prev, *next;
	struct geodb_group group;
	struct geodb_health health;
	struct geodb_lease lease; /* OP_LEASE*: name and holder asked for */
	unsigned ttl_secs;
};

int geodb_attach(struct geodb *db, struct event_base *base, const char **error_r)
{
	db->base = base;
	if (db->driver->attach != NULL)
		return db->driver->attach(db, error_r);
	return 0;
}

void geodb_op_cancel(struct geodb_op **op)
{
	if (*op == NULL)
		return;
	/* the driver still finishes it; then it is freed without a callback */
	(*op)->cancelled = true;
	(*op)->context = NULL;
	*op = NULL;
}

static void op_free(struct geodb_op *op)
{
	if (op->deferred != NULL)
		event_free(op->deferred);
	free(op);
}

void geodb_op_done_snapshot(struct geodb_op *op, struct geodb_snapshot *snap, const char *error)
{
	if (!op->cancelled)
		op->snapshot_callback(op->context, snap, error);
	else if (snap != NULL) {
		geodb_snapshot_free(snap);
		free(snap);
	}
	op_free(op);
}

void geodb_op_done_assign(struct geodb_op *op, int result, const struct geodb_group *stored,
			  const char *error)
{
	if (!op->cancelled)
		op->assign_callback(op->context, result, stored, error);
	op_free(op);
}

static void deferred_unlink(struct geodb_op *op)
{
	if (op->prev != NULL)
		op->prev->next = op->next;
	else
		op->db->deferred = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
}

void geodb_op_done(struct geodb_op *op, const char *error)
{
	if (!op->cancelled)
		op->done_callback(op->context, error);
	op_free(op);
}

void geodb_op_done_lease(struct geodb_op *op, int result, const struct geodb_lease *lease,
			 const char *error)
{
	if (!op->cancelled)
		op->lease_callback(op->context, result, lease, error);
	op_free(op);
}

static void run_deferred(evutil_socket_t fd, short what, void *context)
{
	struct geodb_op *op = context;
	const char *error = NULL;
	deferred_unlink(op);
	if (op->kind == OP_SNAPSHOT) {
		struct geodb_snapshot *snap = calloc(1, sizeof(*snap));
		if (op->db->driver->snapshot_read(op->db, snap, &error) < 0) {
			free(snap);
			snap = NULL;
		}
		geodb_op_done_snapshot(op, snap, error);
	} else if (op->kind == OP_ASSIGN) {
		int result = op->db->driver->group_assign_if_absent(op->db, &op->group, &error);
		geodb_op_done_assign(op, result, result < 0 ? NULL : &op->group, error);
	} else if (op->kind == OP_LEASE) {
		struct geodb_lease lease;
		int result = geodb_lease_acquire(op->db, op->lease.name, op->lease.holder,
						 op->ttl_secs, &lease, &error);
		geodb_op_done_lease(op, result, result < 0 ? NULL : &lease, error);
	} else if (op->kind == OP_LEASE_RELEASE) {
		int result = geodb_lease_release(op->db, op->lease.name, op->lease.holder, &error);
		geodb_op_done(op, result < 0 ? error : NULL);
	} else {
		int result = geodb_health_put(op->db, &op->health, op->ttl_secs, &error);
		geodb_op_done(op, result < 0 ? error : NULL);
	}
}

static struct geodb_op *op_new(struct geodb *db, enum op_kind kind, void *context)
{
	struct geodb_op *op = calloc(1, sizeof(*op));
	op->db = db;
	op->kind = kind;
	op->context = context;
	return op;
}

/* Closing with fallbacks still queued: they end with an error, like the
 * Cassandra driver's requests in flight. */
static void deferred_fail_all(struct geodb *db)
{
	while (db->deferred != NULL) {
		struct geodb_op *op = db->deferred;
		deferred_unlink(op);
		const char *closed = "geodb: closed before the answer came";
		if (op->kind == OP_SNAPSHOT)
			geodb_op_done_snapshot(op, NULL, closed);
		else if (op->kind == OP_ASSIGN)
			geodb_op_done_assign(op, -1, NULL, closed);
		else if (op->kind == OP_LEASE)
			geodb_op_done_lease(op, -1, NULL, closed);
		else
			geodb_op_done(op, closed);
	}
}

static void op_defer(struct geodb_op *op)
{
	op->next = op->db->deferred;
	if (op->next != NULL)
		op->next->prev = op;
	op->db->deferred = op;
	op->deferred = evtimer_new(op->db->base, run_deferred, op);
	struct timeval zero = {0, 0};
	evtimer_add(op->deferred, &zero);
}

struct geodb_op *geodb_snapshot_read_async(struct geodb *db, geodb_snapshot_callback *callback,
					   void *context)
{
	struct geodb_op *op = op_new(db, OP_SNAPSHOT, context);
	op->snapshot_callback = callback;
	if (db->driver->snapshot_read_async != NULL)
		db->driver->snapshot_read_async(db, op);
	else
		op_defer(op);
	return op;
}

struct geodb_op *geodb_group_assign_async(struct geodb *db, const struct geodb_group *group,
					  geodb_assign_callback *callback, void *context)
{
	struct geodb_op *op = op_new(db, OP_ASSIGN, context);
	op->assign_callback = callback;
	op->group = *group;
	if (db->driver->group_assign_async != NULL)
		db->driver->group_assign_async(db, op, group);
	else
		op_defer(op);
	return op;
}

struct geodb_op *geodb_health_put_async(struct geodb *db, const struct geodb_health *health,
					unsigned ttl_secs, geodb_done_callback *callback,
					void *context)
{
	struct geodb_op *op = op_new(db, OP_HEALTH, context);
	op->done_callback = callback;
	op->health = *health;
	op->ttl_secs = ttl_secs;
	if (db->driver->health_put_async != NULL)
		db->driver->health_put_async(db, op, health, ttl_secs);
	else
		op_defer(op);
	return op;
}

struct geodb_op *geodb_lease_acquire_async(struct geodb *db, const char *name, const char *holder,
					   unsigned ttl_secs, geodb_lease_callback *callback,
					   void *context)
{
	struct geodb_op *op = op_new(db, OP_LEASE, context);
	op->lease_callback = callback;
	snprintf(op->lease.name, sizeof(op->lease.name), "%s", name);
	snprintf(op->lease.holder, sizeof(op->lease.holder), "%s", holder);
	op->ttl_secs = ttl_secs;
	/* a TTL of 0 takes the fallback, whose synchronous call says why not */
	if (db->driver->lease_acquire_async != NULL && ttl_secs >= 1)
		db->driver->lease_acquire_async(db, op, op->lease.name, op->lease.holder, ttl_secs);
	else
		op_defer(op);
	return op;
}

struct geodb_op *geodb_lease_release_async(struct geodb *db, const char *name, const char *holder,
					   geodb_done_callback *callback, void *context)
{
	struct geodb_op *op = op_new(db, OP_LEASE_RELEASE, context);
	op->done_callback = callback;
	snprintf(op->lease.name, sizeof(op->lease.name), "%s", name);
	snprintf(op->lease.holder, sizeof(op->lease.holder), "%s", holder);
	if (db->driver->lease_release_async != NULL)
		db->driver->lease_release_async(db, op, op->lease.name, op->lease.holder);
	else
		op_defer(op);
	return op;
}
