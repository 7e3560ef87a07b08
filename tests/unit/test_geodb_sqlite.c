/* test_geodb_sqlite.c - the SQLite GeoDB driver, the LocalDB and routing on a real
 * SQLite file, including two handles on one file racing to assign a group
 * (what two daemons on one host do). */
#include "store/geodb.h"
#include "store/localdb.h"
#include "store/route.h"
#include "unit.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char db_path[128], spec[160];

static void remove_db(void)
{
	char p[200];
	unlink(db_path);
	snprintf(p, sizeof(p), "%s-wal", db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db_path);
	unlink(p);
}

static struct geodb *open_db(const char *writer)
{
	struct geodb *db = NULL;
	const char *error;
	if (geodb_open(spec, writer, 2000, &db, &error) < 0)
		fprintf(stderr, "  open: %s\n", error);
	return db;
}

static void test_sites_backends(struct geodb *db)
{
	const char *error;
	struct geodb_site site = {.name = "dc1", .status = SITE_STATUS_ONLINE};
	CHECK(geodb_site_add(db, &site, &error) == 0);
	CHECK(geodb_site_add(db, &site, &error) < 0);
	CHECK(strstr(error, "site dc1 already exists") != NULL);
	struct geodb_site got;
	CHECK(geodb_site_get(db, "dc1", &got, &error) == 1);
	CHECK(got.status == SITE_STATUS_ONLINE);
	CHECK(geodb_site_get(db, "nope", &got, &error) == 0);
	site.status = SITE_STATUS_STANDBY;
	CHECK(geodb_site_update(db, &site, &error) == 0);
	CHECK(geodb_site_get(db, "dc1", &got, &error) == 1 && got.status == SITE_STATUS_STANDBY);
	struct geodb_site missing = {.name = "dc9"};
	CHECK(geodb_site_update(db, &missing, &error) < 0);
	CHECK(strstr(error, "site dc9 does not exist") != NULL);

	CHECK(geodb_backend_add(db, "dc9", "b0", "127.0.0.9", &error) < 0);
	CHECK(strstr(error, "site dc9 does not exist") != NULL);
	CHECK(geodb_backend_add(db, "dc1", "b1", "127.0.0.2", &error) == 0);
	CHECK(geodb_backend_add(db, "dc1", "b2", "127.0.0.3", &error) == 0);
	CHECK(geodb_backend_add(db, "dc1", "b1", "127.0.0.4", &error) < 0);
	CHECK(strstr(error, "backend b1 already exists") != NULL);
	struct geodb_backend b;
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 1);
	CHECK(b.status == BACKEND_STATUS_STANDBY && b.load_factor == 100);
	CHECK_STR(b.address, "127.0.0.2");
	CHECK_STR(b.updated_by, "writer-a");
	b.status = BACKEND_STATUS_ONLINE;
	CHECK(geodb_backend_update(db, &b, &error) == 0);
	CHECK(geodb_backend_get(db, "b2", &b, &error) == 1);
	b.status = BACKEND_STATUS_ONLINE;
	CHECK(geodb_backend_update(db, &b, &error) == 0);

	struct geodb_backend *list;
	size_t count;
	CHECK(geodb_backend_list(db, "dc1", &list, &count, &error) == 0 && count == 2);
	free(list);
	CHECK(geodb_backend_list(db, "dc2", &list, &count, &error) == 0 && count == 0);
	free(list);
	CHECK(geodb_site_remove(db, "dc1", &error) < 0);
	CHECK(strstr(error, "still has 2 backend(s)") != NULL);
}

static void test_groups_race(struct geodb *a, struct geodb *b)
{
	const char *error;
	struct geodb_group ga = {.group_id = 7, .site = "dc1", .backend = "b1", .epoch = 1};
	struct geodb_group gb = {.group_id = 7, .site = "dc1", .backend = "b2", .epoch = 1};
	CHECK(geodb_group_assign_if_absent(a, &ga, &error) == 1);
	/* the second writer loses and reads the winner's row */
	CHECK(geodb_group_assign_if_absent(b, &gb, &error) == 0);
	CHECK_STR(gb.backend, "b1");
	CHECK_STR(gb.written_by, "writer-a");
	CHECK(gb.epoch == 1);

	CHECK(geodb_group_set(b, 7, "dc1", "b2", &error) == 0);
	struct geodb_group g;
	CHECK(geodb_group_get(a, 7, &g, &error) == 1);
	CHECK_STR(g.backend, "b2");
	CHECK(g.epoch == 2);
	CHECK_STR(g.written_by, "writer-b");
	CHECK(geodb_group_get(a, 8, &g, &error) == 0);

	unsigned unassigned = 99;
	CHECK(geodb_backend_remove(a, "b2", &unassigned, &error) < 0);
	CHECK(strstr(error, "is online") != NULL);
}

static void test_users(struct geodb *db)
{
	const char *error;
	struct geodb_user u;
	CHECK(geodb_user_get(db, "alice", &u, &error) == 0);
	CHECK(geodb_user_set_group(db, "alice", 3, &error) == 0);
	CHECK(geodb_user_get(db, "alice", &u, &error) == 1 && u.group_id == 3);
	CHECK(geodb_user_set_group(db, "alice", 4, &error) == 0);
	CHECK(geodb_user_get(db, "alice", &u, &error) == 1 && u.group_id == 4);
	CHECK(u.hold_until_ms == 0);
	CHECK(geodb_user_move(db, "alice", 5, 1700000000321, &error) == 0);
	CHECK(geodb_user_get(db, "alice", &u, &error) == 1 && u.group_id == 5 &&
	      u.hold_until_ms == 1700000000321);
	CHECK(geodb_user_set_group(db, "alice", 4, &error) == 0);
	CHECK(geodb_user_get(db, "alice", &u, &error) == 1 && u.hold_until_ms == 0);
	CHECK(geodb_user_delete(db, "alice", &error) == 1);
	CHECK(geodb_user_delete(db, "alice", &error) == 0);
}

/* What `user access` does: a fresh LocalDB from the GeoDB, then route. */
static enum route_status route_via(struct geodb *db, const char *site, const char *user,
				   bool assign, struct route_result *r, const char **reason_r)
{
	struct geodb_snapshot snap;
	if (geodb_snapshot_read(db, &snap, reason_r) < 0)
		return ROUTE_ERROR;
	struct localdb *ldb = localdb_create(64);
	enum route_status status = ROUTE_ERROR;
	if (localdb_replace(ldb, &snap, reason_r) == 1)
		status = route_user_sync(db, ldb, site, user, assign, r, reason_r);
	geodb_snapshot_free(&snap);
	localdb_destroy(&ldb);
	return status;
}

static void test_route(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct route_result r1, r2;
	/* without assign nothing is written and no backend is claimed */
	struct geodb_group g0;
	CHECK(route_via(a, "dc1", "nobody-yet", false, &r1, &reason) == ROUTE_UNAVAILABLE);
	CHECK(r1.group.backend[0] == '\0');
	CHECK(strstr(reason, "has no backend yet") != NULL);
	CHECK(geodb_group_get(a, r1.group_id, &g0, &reason) == 0);
	/* 200 users routed alternately through two handles agree and spread */
	unsigned on_b1 = 0;
	char user[32];
	for (int i = 0; i < 200; i++) {
		snprintf(user, sizeof(user), "User%d", i);
		CHECK(route_via(i % 2 ? a : b, "dc1", user, true, &r1, &reason) ==
		      ROUTE_OK);
		CHECK(route_via(i % 2 ? b : a, "dc1", user, true, &r2, &reason) ==
		      ROUTE_OK);
		CHECK_STR(r1.backend.name, r2.backend.name);
		CHECK(r1.group_id == r2.group_id);
		on_b1 += strcmp(r1.backend.name, "b1") == 0;
	}
	CHECK(on_b1 > 40 && on_b1 < 160);
	CHECK_STR(r1.username, "user199");

	/* an override wins over the hash */
	CHECK(geodb_user_set_group(a, "user5", 7, &reason) == 0);
	CHECK(route_via(b, "dc1", "USER5", true, &r1, &reason) == ROUTE_OK);
	CHECK(r1.group_id == 7 && r1.group_override);

	/* a group whose backend is not online is unavailable */
	struct geodb_backend be;
	CHECK(geodb_backend_get(a, "b2", &be, &reason) == 1);
	be.status = BACKEND_STATUS_STANDBY;
	CHECK(geodb_backend_update(a, &be, &reason) == 0);
	CHECK(route_via(a, "dc1", "user5", true, &r1, &reason) == ROUTE_UNAVAILABLE);
	CHECK(strstr(reason, "backend b2 of group 7 is standby") != NULL);

	/* new groups avoid it; and with no online backend none is assigned */
	CHECK(geodb_user_set_group(a, "newbie", 63, &reason) == 0);
	struct geodb_group g;
	if (geodb_group_get(a, 63, &g, &reason) == 0) {
		CHECK(route_via(a, "dc1", "newbie", true, &r1, &reason) == ROUTE_OK);
		CHECK_STR(r1.backend.name, "b1");
		CHECK(r1.assigned_now);
	}
	CHECK(route_via(a, "dc1", "", true, &r1, &reason) == ROUTE_BAD_USER);
}

/* The LocalDB: routes with no GeoDB I/O, says whether a refresh changed
 * anything, follows changes made by other handles, and survives a
 * save/load round trip. */
static void test_localdb(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct route_result r;
	struct geodb_backend be;
	for (int i = 1; i <= 2; i++) {
		CHECK(geodb_backend_get(b, i == 1 ? "b1" : "b2", &be, &reason) == 1);
		be.status = BACKEND_STATUS_ONLINE;
		CHECK(geodb_backend_update(b, &be, &reason) == 0);
	}
	struct localdb *ldb = localdb_create(64);
	CHECK(!localdb_loaded(ldb));
	struct geodb_snapshot snap;
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(snap.group_count == 64 && snap.schema_version == GEODB_SCHEMA_VERSION);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(localdb_loaded(ldb));
	/* the same state again: nothing changed */
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 0);

	CHECK(route_user_sync(a, ldb, "dc1", "local-user", true, &r, &reason) == ROUTE_OK);
	unsigned group = r.group_id;
	char first[64];
	snprintf(first, sizeof(first), "%s", r.backend.name);
	/* from the LocalDB alone: the decision is made without the GeoDB */
	struct route_result r2;
	CHECK(route_decide(ldb, "dc1", "Local-User", &r2, &reason) == ROUTE_OK);
	CHECK_STR(r2.backend.name, first);
	CHECK(r2.group_id == group);

	/* commits that routing does not read (health observations) are not
	 * changes for it; a routing change is */
	geodb_changed(a);
	struct geodb_health h = {.ok = true, .observed_at = 1};
	snprintf(h.backend, sizeof(h.backend), "b1");
	snprintf(h.observer, sizeof(h.observer), "probe");
	CHECK(geodb_health_put(b, &h, 10, &reason) == 0);
	CHECK(!geodb_changed(a));
	/* another handle moves the group: the refreshed LocalDB follows */
	const char *other = strcmp(first, "b1") == 0 ? "b2" : "b1";
	CHECK(geodb_group_set(b, group, "dc1", other, &reason) == 0);
	CHECK(geodb_changed(a));
	CHECK(route_decide(ldb, "dc1", "local-user", &r2, &reason) == ROUTE_OK);
	CHECK_STR(r2.backend.name, first); /* stale until refreshed */
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(route_decide(ldb, "dc1", "local-user", &r2, &reason) == ROUTE_OK);
	CHECK_STR(r2.backend.name, other);

	/* an override made elsewhere, and a backend set to standby */
	CHECK(geodb_group_set(b, (group + 1) % 64, "dc1", other, &reason) == 0);
	CHECK(geodb_user_set_group(b, "local-user", (group + 1) % 64, &reason) == 0);
	CHECK(geodb_backend_get(b, other, &be, &reason) == 1);
	be.status = BACKEND_STATUS_STANDBY;
	CHECK(geodb_backend_update(b, &be, &reason) == 0);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(route_decide(ldb, "dc1", "local-user", &r2, &reason) == ROUTE_UNAVAILABLE);
	CHECK(r2.group_id == (group + 1) % 64 && r2.group_override);
	CHECK(strstr(reason, "is standby") != NULL);

	/* several sites: heartbeats are no change for routing; a failover
	 * cell and a force move are */
	geodb_changed(a);
	CHECK(geodb_site_heartbeat_put(b, "dc1", "probe", 1800000000000, &reason) == 0);
	CHECK(!geodb_changed(a));
	struct geodb_group_failover cell = {.group_id = group, .home_epoch = 1};
	snprintf(cell.writer_site, sizeof(cell.writer_site), "dc2");
	snprintf(cell.target_site, sizeof(cell.target_site), "dc2");
	snprintf(cell.target_backend, sizeof(cell.target_backend), "b9");
	snprintf(cell.reason, sizeof(cell.reason), GEODB_FAILOVER_REASON_OUTAGE);
	CHECK(geodb_group_failover_put(b, &cell, &reason) == 0);
	CHECK(geodb_changed(a));
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(snap.failover_count == 1 && snap.heartbeat_count == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	/* ... but a beat of the cell's home site (its group's: dc1) in the
	 * cell's bucket is, for the snapshot carries it; another site's is
	 * not, nor one of another bucket */
	CHECK(geodb_group_failover_get(a, group, &cell, &reason) == 1);
	CHECK(geodb_site_heartbeat_put(b, "dc2", "probe", cell.written_at_ms, &reason) == 0);
	CHECK(geodb_site_heartbeat_put(b, "dc1", "probe", cell.written_at_ms + 3600000, &reason) ==
	      0);
	CHECK(!geodb_changed(a));
	CHECK(geodb_site_heartbeat_put(b, "dc1", "probe", cell.written_at_ms, &reason) == 0);
	CHECK(geodb_changed(a));
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(snap.heartbeat_count == 1 && strcmp(snap.heartbeats[0].site, "dc1") == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) >= 0);
	/* a newer beat of the same bucket replaces the row: a change too */
	CHECK(geodb_site_heartbeat_put(b, "dc1", "probe", cell.written_at_ms + 1, &reason) == 0);
	CHECK(geodb_changed(a));
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) >= 0);
	struct geodb_site_force_move fm = {.id = 1, .percent = 5};
	snprintf(fm.site, sizeof(fm.site), "dc1");
	snprintf(fm.destinations, sizeof(fm.destinations), "dc2");
	CHECK(geodb_site_force_move_start(b, &fm, &reason) == 0);
	CHECK(geodb_changed(a));
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 0);

	/* a snapshot of another group_count is refused, the state kept */
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	snap.group_count = 128;
	CHECK(localdb_replace(ldb, &snap, &reason) < 0);
	CHECK(strstr(reason, "group_count = 128") != NULL);
	geodb_snapshot_free(&snap);
	CHECK(localdb_group(ldb, group) != NULL);

	/* persistence: the same routing after a round trip through a file */
	char path[128];
	snprintf(path, sizeof(path), "/tmp/mc-unit-localdb-%d.sqlite", (int)getpid());
	unlink(path);
	struct localdb *loaded = localdb_create(64);
	CHECK(localdb_load(loaded, path, &reason) == 0); /* no file yet */
	CHECK(localdb_save(ldb, path, &reason) == 0);
	CHECK(localdb_load(loaded, path, &reason) == 1);
	/* the file keeps the failover cell and the force move */
	char file_spec[160];
	snprintf(file_spec, sizeof(file_spec), "sqlite:%s", path);
	struct geodb *file = NULL;
	struct geodb_snapshot kept;
	memset(&kept, 0, sizeof(kept));
	CHECK(geodb_open(file_spec, "unit", 1000, &file, &reason) == 0);
	if (file != NULL) {
		CHECK(geodb_snapshot_read(file, &kept, &reason) == 0);
		geodb_close(&file);
	}
	CHECK(kept.failover_count == 1 && kept.failovers != NULL &&
	      kept.failovers[0].group_id == group &&
	      strcmp(kept.failovers[0].target_backend, "b9") == 0);
	CHECK(kept.force_move_count == 1 && kept.force_moves != NULL &&
	      kept.force_moves[0].percent == 5);
	geodb_snapshot_free(&kept);
	struct localdb_stats s1, s2;
	localdb_stats(ldb, &s1);
	localdb_stats(loaded, &s2);
	CHECK(s1.groups_assigned == s2.groups_assigned && s1.groups_assigned > 0);
	CHECK(s1.backends == s2.backends && s1.users == s2.users && s1.sites == s2.sites);
	for (unsigned g = 0; g < 64; g++) {
		const struct geodb_group *x = localdb_group(ldb, g), *y = localdb_group(loaded, g);
		CHECK((x == NULL) == (y == NULL));
		if (x != NULL && y != NULL) {
			CHECK_STR(x->backend, y->backend);
			CHECK(x->epoch == y->epoch);
		}
	}
	CHECK(route_decide(loaded, "dc1", "local-user", &r2, &reason) == ROUTE_UNAVAILABLE);
	CHECK(r2.group_id == (group + 1) % 64);
	/* a file of another group_count is refused */
	struct localdb *wrong = localdb_create(32);
	CHECK(localdb_load(wrong, path, &reason) < 0);
	localdb_destroy(&wrong);
	unlink(path);

	/* put_group keeps the per-backend counts placement uses */
	size_t count, index = 0;
	const struct geodb_backend *backends = localdb_backends(loaded, &count);
	for (size_t i = 0; i < count; i++)
		if (strcmp(backends[i].name, "b1") == 0)
			index = i;
	unsigned before = localdb_backend_group_count(loaded, index);
	struct geodb_group g = {.group_id = 60, .epoch = 1};
	snprintf(g.site, sizeof(g.site), "dc1");
	snprintf(g.backend, sizeof(g.backend), "b1");
	bool was_b1 = localdb_group(loaded, 60) != NULL &&
		      strcmp(localdb_group(loaded, 60)->backend, "b1") == 0;
	localdb_put_group(loaded, &g);
	CHECK(localdb_backend_group_count(loaded, index) == before + (was_b1 ? 0 : 1));
	localdb_destroy(&loaded);
	localdb_destroy(&ldb);
	CHECK(ldb == NULL);
}

/* Schema version 3 through the LocalDB: a refresh notices a change of a
 * backend's mark and of a group's alternative or move (even without a new
 * epoch), and the file keeps them. */
static void test_localdb_marks_moves(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct localdb *ldb = localdb_create(64);
	struct geodb_snapshot snap;
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 0);

	/* a mark: nothing else changes, yet routing must hear of it */
	CHECK(geodb_backend_mark(b, "b1", HEALTH_MARK_DOWN, 1700000000, "failing", &reason) == 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	const struct geodb_backend *be = localdb_backend(ldb, "b1");
	CHECK(be != NULL && be->mark == HEALTH_MARK_DOWN && be->mark_since == 1700000000);
	CHECK(be != NULL && strcmp(be->mark_reason, "failing") == 0);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 0);

	/* a move of group 7 (test_groups_race() assigned it) */
	struct geodb_group g, stored;
	CHECK(geodb_group_get(a, 7, &g, &reason) == 1);
	struct geodb_group row = g;
	snprintf(row.alt_backend, sizeof(row.alt_backend), "b1");
	snprintf(row.move_to, sizeof(row.move_to), "b1");
	row.move_started_ms = 1700000000123;
	snprintf(row.move_reason, sizeof(row.move_reason), "operator");
	CHECK(geodb_group_cas(b, &row, g.epoch, &stored, &reason) == 1);
	CHECK(stored.epoch == g.epoch + 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	const struct geodb_group *lg = localdb_group(ldb, 7);
	CHECK(lg != NULL && strcmp(lg->move_to, "b1") == 0 && strcmp(lg->alt_backend, "b1") == 0 &&
	      lg->move_started_ms == 1700000000123 && strcmp(lg->move_reason, "operator") == 0);

	/* the same epoch with another alternative, move target or start (a
	 * snapshot made by hand): still a change */
	const char *fields[3] = {"alt_backend", "move_to", "move_started"};
	for (int f = 0; f < 3; f++) {
		CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
		for (size_t i = 0; i < snap.group_row_count; i++) {
			if (snap.groups[i].group_id != 7)
				continue;
			if (f == 0)
				snprintf(snap.groups[i].alt_backend, NAME_MAX_LEN + 1, "b2");
			else if (f == 1)
				snprintf(snap.groups[i].move_to, NAME_MAX_LEN + 1, "b2");
			else
				snap.groups[i].move_started_ms++;
		}
		int changed = localdb_replace(ldb, &snap, &reason);
		CHECK(changed == 1);
		if (changed != 1)
			fprintf(stderr, "  a change of %s went unnoticed\n", fields[f]);
		CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
		CHECK(localdb_replace(ldb, &snap, &reason) == 1); /* and back */
	}

	/* the file keeps marks, alternatives and moves */
	char path[128];
	snprintf(path, sizeof(path), "/tmp/mc-unit-localdb3-%d.sqlite", (int)getpid());
	unlink(path);
	CHECK(localdb_save(ldb, path, &reason) == 0);
	struct localdb *loaded = localdb_create(64);
	CHECK(localdb_load(loaded, path, &reason) == 1);
	be = localdb_backend(loaded, "b1");
	CHECK(be != NULL && be->mark == HEALTH_MARK_DOWN && be->mark_since == 1700000000 &&
	      strcmp(be->mark_reason, "failing") == 0);
	be = localdb_backend(loaded, "b2");
	CHECK(be != NULL && be->mark == HEALTH_MARK_UP);
	lg = localdb_group(loaded, 7);
	CHECK(lg != NULL && strcmp(lg->move_to, "b1") == 0 && strcmp(lg->alt_backend, "b1") == 0 &&
	      lg->move_started_ms == 1700000000123 && strcmp(lg->move_reason, "operator") == 0 &&
	      lg->epoch == stored.epoch);
	unlink(path);
	localdb_destroy(&loaded);
	localdb_destroy(&ldb);
	CHECK(geodb_backend_mark(b, "b1", HEALTH_MARK_UP, 1700000001, "", &reason) == 1);
}

/* A user's login hold through the LocalDB: a refresh notices a new hold
 * (even for the same group), and the file keeps it. */
static void test_localdb_user_hold(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct localdb *ldb = localdb_create(64);
	struct geodb_snapshot snap;
	CHECK(geodb_user_set_group(b, "held", 9, &reason) == 0);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	const struct geodb_user *u = localdb_user(ldb, "held");
	CHECK(u != NULL && u->group_id == 9 && u->hold_until_ms == 0);

	/* the same group with a hold: a change */
	CHECK(geodb_user_move(b, "held", 9, 1700000000555, &reason) == 0);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	u = localdb_user(ldb, "held");
	CHECK(u != NULL && u->group_id == 9 && u->hold_until_ms == 1700000000555);
	CHECK(localdb_user_group(ldb, "held") == 9);
	CHECK(localdb_user(ldb, "nobody") == NULL);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 0);
	/* another hold only (a snapshot made by hand): still a change */
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	for (size_t i = 0; i < snap.user_count; i++) {
		if (strcmp(snap.users[i].username, "held") == 0)
			snap.users[i].hold_until_ms++;
	}
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1); /* and back */

	/* the file keeps it */
	char path[128];
	snprintf(path, sizeof(path), "/tmp/mc-unit-localdb-hold-%d.sqlite", (int)getpid());
	unlink(path);
	CHECK(localdb_save(ldb, path, &reason) == 0);
	struct localdb *loaded = localdb_create(64);
	CHECK(localdb_load(loaded, path, &reason) == 1);
	u = localdb_user(loaded, "held");
	CHECK(u != NULL && u->group_id == 9 && u->hold_until_ms == 1700000000555);
	unlink(path);
	localdb_destroy(&loaded);
	localdb_destroy(&ldb);
	CHECK(geodb_user_delete(b, "held", &reason) == 1);
}

/* Balancing through the LocalDB: a refresh notices a group pinned or let
 * go (no new epoch), a switch brings its history, and the file keeps
 * sticky, moved_at and history. */
static void test_localdb_balance(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct localdb *ldb = localdb_create(64);
	struct geodb_snapshot snap;
	struct geodb_group g;
	CHECK(geodb_group_get(a, 7, &g, &reason) == 1);
	CHECK(!g.sticky);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);

	/* pinned: the same epoch, yet a change */
	CHECK(geodb_group_set_sticky(b, 7, true, &reason) == 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	const struct geodb_group *lg = localdb_group(ldb, 7);
	CHECK(lg != NULL && lg->sticky && lg->epoch == g.epoch);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 0);
	/* only sticky differs (a snapshot made by hand): a change, and back */
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	for (size_t i = 0; i < snap.group_row_count; i++) {
		if (snap.groups[i].group_id == 7)
			snap.groups[i].sticky = false;
	}
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);

	/* a switch: the backend left heads the history */
	const char *other = strcmp(g.backend, "b1") == 0 ? "b2" : "b1";
	CHECK(geodb_group_set(b, 7, "dc1", other, &reason) == 0);
	CHECK(geodb_snapshot_read(a, &snap, &reason) == 0);
	CHECK(localdb_replace(ldb, &snap, &reason) == 1);
	lg = localdb_group(ldb, 7);
	CHECK(lg != NULL && strcmp(lg->backend, other) == 0 && lg->sticky);
	CHECK(lg != NULL && strcmp(lg->history[0].backend, g.backend) == 0 &&
	      lg->history[0].left_ms == lg->moved_at_ms && lg->moved_at_ms > 0);
	struct geodb_group switched = lg != NULL ? *lg : g;

	/* the file keeps them */
	char path[128];
	snprintf(path, sizeof(path), "/tmp/mc-unit-localdb-balance-%d.sqlite", (int)getpid());
	unlink(path);
	CHECK(localdb_save(ldb, path, &reason) == 0);
	struct localdb *loaded = localdb_create(64);
	CHECK(localdb_load(loaded, path, &reason) == 1);
	lg = localdb_group(loaded, 7);
	CHECK(lg != NULL && lg->sticky && lg->moved_at_ms == switched.moved_at_ms);
	for (int h = 0; h < BALANCE_HISTORY && lg != NULL; h++)
		CHECK(strcmp(lg->history[h].backend, switched.history[h].backend) == 0 &&
		      lg->history[h].left_ms == switched.history[h].left_ms);
	unlink(path);
	localdb_destroy(&loaded);
	localdb_destroy(&ldb);
	CHECK(geodb_group_set_sticky(b, 7, false, &reason) == 1);

	/* group loads and last backends are no routing change */
	struct geodb_group_load load = {
		.group_id = 7, .sessions = 2, .logins = 1, .reported_at = 1};
	(void)geodb_changed(a);
	CHECK(geodb_group_load_put(b, "daemon-x", &load, 1, 60, &reason) == 0);
	CHECK(geodb_user_last_backend(b, "someone", "b1", 1700000000000, &reason) == 0);
	CHECK(!geodb_changed(a));
	struct geodb_group_load *loads = NULL;
	size_t count = 0;
	CHECK(geodb_group_load_list(a, &loads, &count, &reason) == 0);
	CHECK(count == 1 && loads != NULL && loads[0].sessions == 2 &&
	      strcmp(loads[0].observer, "daemon-x") == 0);
	free(loads);
	char backend[NAME_MAX_LEN + 1];
	int64_t at;
	CHECK(geodb_user_last_backend_get(a, "someone", backend, &at, &reason) == 1);
	CHECK(strcmp(backend, "b1") == 0 && at == 1700000000000);
}

static void test_group_count(struct geodb *db)
{
	const char *error;
	CHECK(geodb_check_group_count(db, 64, &error) == 0);
	CHECK(geodb_check_group_count(db, 64, &error) == 0);
	CHECK(geodb_check_group_count(db, 128, &error) < 0);
	CHECK(strstr(error, "set up with 64") != NULL);
}

/* Whether another process sees a lock on the -shm file's "in use" byte
 * (SQLite's unix VFS: byte 128).  Without it, the next process to open the
 * database believes it is the first, truncates the -shm under this
 * process's SQLite, and that one dies of SIGBUS. */
static bool shm_in_use_lock_seen_from_outside(void)
{
	char shm[200];
	snprintf(shm, sizeof(shm), "%s-shm", db_path);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(shm, O_RDWR);
		struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 128,
				     .l_len = 1};
		_exit(fd >= 0 && fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK ? 0
											    : 1);
	}
	int status = 0;
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

static void test_shm_lock_kept(struct geodb *a)
{
	/* opening handles (each notices commits through the -shm) and closing
	 * one of them leaves the process's lock in place */
	CHECK(shm_in_use_lock_seen_from_outside());
	struct geodb *c = open_db("writer-c");
	CHECK(c != NULL);
	geodb_close(&c);
	CHECK(shm_in_use_lock_seen_from_outside());
	/* and commits are still noticed */
	(void)geodb_changed(a);
	CHECK(!geodb_changed(a));
}

/* route_check_site(): a group whose backend is in another site goes
 * through that site's load balancer, unless direct; no balancer, a
 * standby or offline site: unavailable. */
static enum route_status route_site(struct geodb *db, const char *site, bool direct,
				    const char *user, struct route_result *r, const char **reason_r)
{
	struct geodb_snapshot snap;
	if (geodb_snapshot_read(db, &snap, reason_r) < 0)
		return ROUTE_ERROR;
	struct localdb *ldb = localdb_create(64);
	enum route_status status = ROUTE_ERROR;
	if (localdb_replace(ldb, &snap, reason_r) == 1) {
		status = route_decide(ldb, site, user, r, reason_r);
		status = route_check_site(ldb, site, direct, status, r, reason_r);
	}
	geodb_snapshot_free(&snap);
	localdb_destroy(&ldb);
	return status;
}

static void test_route_sites(struct geodb *db)
{
	const char *reason;
	struct route_result r;
	struct geodb_site site = {.status = SITE_STATUS_ONLINE};
	snprintf(site.name, sizeof(site.name), "dc2");
	CHECK(geodb_site_add(db, &site, &reason) == 0);
	CHECK(geodb_backend_add(db, "dc2", "b9", "127.0.0.9", &reason) == 0);
	struct geodb_backend be;
	CHECK(geodb_backend_get(db, "b9", &be, &reason) == 1);
	be.status = BACKEND_STATUS_ONLINE;
	CHECK(geodb_backend_update(db, &be, &reason) == 0);
	CHECK(geodb_group_set(db, 50, "dc2", "b9", &reason) == 0);
	CHECK(geodb_user_set_group(db, "far-user", 50, &reason) == 0);

	CHECK(route_site(db, "dc1", false, "far-user", &r, &reason) == ROUTE_UNAVAILABLE);
	CHECK(strstr(reason, "group 50 lives in site dc2, which has no load balancer") != NULL);
	CHECK(route_site(db, "dc1", true, "far-user", &r, &reason) == ROUTE_OK);
	CHECK(r.via_site[0] == '\0' && strcmp(r.backend.name, "b9") == 0);
	CHECK(route_site(db, "dc2", false, "far-user", &r, &reason) == ROUTE_OK);
	CHECK(r.via_site[0] == '\0');

	snprintf(site.load_balancer, sizeof(site.load_balancer), "10.0.2.10");
	CHECK(geodb_site_update(db, &site, &reason) == 0);
	CHECK(route_site(db, "dc1", false, "far-user", &r, &reason) == ROUTE_OK);
	CHECK_STR(r.via_site, "dc2");
	CHECK_STR(r.via.load_balancer, "10.0.2.10");
	CHECK_STR(r.backend.name, "b9");

	site.status = SITE_STATUS_STANDBY;
	CHECK(geodb_site_update(db, &site, &reason) == 0);
	CHECK(route_site(db, "dc1", false, "far-user", &r, &reason) == ROUTE_UNAVAILABLE);
	CHECK(strstr(reason, "lives in site dc2, which is standby") != NULL);
	site.status = SITE_STATUS_EVACUATE; /* its groups are still served there */
	CHECK(geodb_site_update(db, &site, &reason) == 0);
	CHECK(route_site(db, "dc1", false, "far-user", &r, &reason) == ROUTE_OK);
	CHECK_STR(r.via_site, "dc2");
}

void suite_geodb_sqlite(void)
{
	snprintf(db_path, sizeof(db_path), "/tmp/mc-unit-geodb-%d.sqlite", (int)getpid());
	snprintf(spec, sizeof(spec), "sqlite:%s", db_path);
	remove_db();
	struct geodb *a = open_db("writer-a"), *b = open_db("writer-b");
	CHECK(a != NULL && b != NULL);
	if (a == NULL || b == NULL)
		return;
	const char *error;
	struct geodb *bad;
	CHECK(geodb_open("sqlite:/nonexistent-dir/x.sqlite", "w", 100, &bad, &error) < 0);
	CHECK(strstr(error, "/nonexistent-dir/x.sqlite") != NULL);
	CHECK(geodb_open("mysql:x", "w", 100, &bad, &error) < 0);
	CHECK(strstr(error, "unsupported GeoDB") != NULL);

	test_shm_lock_kept(a);
	test_group_count(a);
	test_sites_backends(a);
	test_groups_race(a, b);
	test_users(a);
	test_route(a, b);
	test_localdb(a, b);
	test_localdb_marks_moves(a, b);
	test_localdb_user_hold(a, b);
	test_localdb_balance(a, b);
	test_route_sites(a);
	geodb_close(&a);
	geodb_close(&b);
	CHECK(a == NULL);
	remove_db();
}
