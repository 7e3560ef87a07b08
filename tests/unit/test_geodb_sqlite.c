/* test_geodb_sqlite.c - the SQLite GeoDB driver and route_user() on a real
 * SQLite file, including two handles on one file racing to assign a group
 * (what two daemons on one host do). */
#include "store/geodb.h"
#include "store/route.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
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
	CHECK(geodb_user_delete(db, "alice", &error) == 1);
	CHECK(geodb_user_delete(db, "alice", &error) == 0);
}

static void test_route(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct route_result r1, r2;
	/* 200 users routed alternately through two handles agree and spread */
	unsigned on_b1 = 0;
	char user[32];
	for (int i = 0; i < 200; i++) {
		snprintf(user, sizeof(user), "User%d", i);
		CHECK(route_user(i % 2 ? a : b, NULL, "dc1", 64, user, true, &r1, &reason) ==
		      ROUTE_OK);
		CHECK(route_user(i % 2 ? b : a, NULL, "dc1", 64, user, true, &r2, &reason) ==
		      ROUTE_OK);
		CHECK_STR(r1.backend.name, r2.backend.name);
		CHECK(r1.group_id == r2.group_id);
		on_b1 += strcmp(r1.backend.name, "b1") == 0;
	}
	CHECK(on_b1 > 40 && on_b1 < 160);
	CHECK_STR(r1.username, "user199");

	/* an override wins over the hash */
	CHECK(geodb_user_set_group(a, "user5", 7, &reason) == 0);
	CHECK(route_user(b, NULL, "dc1", 64, "USER5", true, &r1, &reason) == ROUTE_OK);
	CHECK(r1.group_id == 7 && r1.group_override);

	/* a group whose backend is not online is unavailable */
	struct geodb_backend be;
	CHECK(geodb_backend_get(a, "b2", &be, &reason) == 1);
	be.status = BACKEND_STATUS_STANDBY;
	CHECK(geodb_backend_update(a, &be, &reason) == 0);
	CHECK(route_user(a, NULL, "dc1", 64, "user5", true, &r1, &reason) == ROUTE_UNAVAILABLE);
	CHECK(strstr(reason, "backend b2 of group 7 is standby") != NULL);

	/* new groups avoid it; and with no online backend none is assigned */
	CHECK(geodb_user_set_group(a, "newbie", 63, &reason) == 0);
	struct geodb_group g;
	if (geodb_group_get(a, 63, &g, &reason) == 0) {
		CHECK(route_user(a, NULL, "dc1", 64, "newbie", true, &r1, &reason) == ROUTE_OK);
		CHECK_STR(r1.backend.name, "b1");
		CHECK(r1.assigned_now);
	}
	CHECK(route_user(a, NULL, "dc1", 64, "", true, &r1, &reason) == ROUTE_BAD_USER);
	CHECK(route_user(a, NULL, "dc2", 64, "nobody-in-dc2", false, &r1, &reason) != ROUTE_OK ||
	      r1.group.backend[0] != '\0');
}

/* The routing cache: served from memory while nothing changes, dropped
 * the moment any handle (another process, in real life) commits. */
static void test_cache(struct geodb *a, struct geodb *b)
{
	const char *reason;
	struct route_cache *cache = route_cache_create(64);
	struct route_result r;
	struct geodb_backend be;
	for (int i = 1; i <= 2; i++) {
		CHECK(geodb_backend_get(b, i == 1 ? "b1" : "b2", &be, &reason) == 1);
		be.status = BACKEND_STATUS_ONLINE;
		CHECK(geodb_backend_update(b, &be, &reason) == 0);
	}
	CHECK(route_user(a, cache, "dc1", 64, "cached-user", true, &r, &reason) == ROUTE_OK);
	unsigned group = r.group_id;
	char first[64];
	snprintf(first, sizeof(first), "%s", r.backend.name);
	geodb_changed(a); /* absorb our own commits */
	CHECK(!geodb_changed(a));
	CHECK(route_user(a, cache, "dc1", 64, "Cached-User", true, &r, &reason) == ROUTE_OK);
	CHECK_STR(r.backend.name, first);
	CHECK(r.group_id == group);

	/* another handle moves the group: the next cached lookup follows */
	const char *other = strcmp(first, "b1") == 0 ? "b2" : "b1";
	CHECK(geodb_group_set(b, group, "dc1", other, &reason) == 0);
	CHECK(route_user(a, cache, "dc1", 64, "cached-user", true, &r, &reason) == ROUTE_OK);
	CHECK_STR(r.backend.name, other);

	/* and a user override made elsewhere is seen at once */
	CHECK(geodb_group_set(b, (group + 1) % 64, "dc1", other, &reason) == 0);
	CHECK(geodb_user_set_group(b, "cached-user", (group + 1) % 64, &reason) == 0);
	CHECK(route_user(a, cache, "dc1", 64, "cached-user", true, &r, &reason) == ROUTE_OK);
	CHECK(r.group_id == (group + 1) % 64 && r.group_override);
	/* a backend set to standby elsewhere: unavailable at once */
	CHECK(geodb_backend_get(b, other, &be, &reason) == 1);
	be.status = BACKEND_STATUS_STANDBY;
	CHECK(geodb_backend_update(b, &be, &reason) == 0);
	CHECK(route_user(a, cache, "dc1", 64, "cached-user", true, &r, &reason) ==
	      ROUTE_UNAVAILABLE);
	route_cache_destroy(&cache);
	CHECK(cache == NULL);
}

static void test_group_count(struct geodb *db)
{
	const char *error;
	CHECK(geodb_check_group_count(db, 64, &error) == 0);
	CHECK(geodb_check_group_count(db, 64, &error) == 0);
	CHECK(geodb_check_group_count(db, 128, &error) < 0);
	CHECK(strstr(error, "set up with 64") != NULL);
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
	CHECK(geodb_open("cassandra:hosts=x", "w", 100, &bad, &error) < 0);

	test_group_count(a);
	test_sites_backends(a);
	test_groups_race(a, b);
	test_users(a);
	test_route(a, b);
	test_cache(a, b);
	geodb_close(&a);
	geodb_close(&b);
	CHECK(a == NULL);
	remove_db();
}
