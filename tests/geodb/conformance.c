/* conformance.c - the GeoDB conformance suite: the same checks against any
 * driver, so that sqlite and cassandra are proven to mean the same thing.
 *
 *   build/geodb_conformance sqlite:/tmp/conformance.sqlite
 *   build/geodb_conformance 'cassandra:hosts=127.0.0.21;keyspace=mc_conf;page_size=50'
 *
 * The GeoDB must be fresh (a new file, a keyspace that does not exist yet):
 * the suite runs geodb_init() itself and counts on an empty state.
 *
 * Cassandra specs should carry page_size=50 (or less): the suite writes
 * more than 250 groups, so that the full-table reads (group list, loads,
 * snapshot, backend remove) have to follow several pages.  For SQLite
 * paging does not apply, but the listings must still hold every row in
 * order.
 *
 * Prints the closing line "N passed, N failed" and exits nonzero on any
 * failure.
 *
 * Upgrades: `build/geodb_conformance --upgrade SPEC` checks a GeoDB of
 * schema version 2 holding the rows of V2_FIXTURE below (a SQLite file that
 * does not exist yet is created so; a Cassandra keyspace must have been
 * made so, as tests/integration/test_geodb_conformance.py does) after
 * geodb_init() brought it to the current version.  `--upgrade-v3 SPEC`
 * does the same for a GeoDB of version 3 as it was before users.hold_until
 * and the balancing columns and tables (groups.sticky, moved_at, history;
 * group_load; user_backend) were added to it (V3_EARLY below, with the same
 * rows).  `--upgrade-v3-full SPEC` does the same for a GeoDB of version 3
 * as released, the last before version 4 added several sites
 * (groups.failover_site; site_heartbeats, site_reachability,
 * group_failover, site_force_moves): V3 below.  A run on SQLite does all
 * three too, on SPEC's file name + "-v2", "-v3early" and "-v3".
 */
#include "../unit/unit.h"
#include "store/geodb.h"

#include <event2/event.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

unsigned unit_passed, unit_failed;

#define GROUP_COUNT 64
#define MANY_FIRST 10
#define MANY_COUNT 250
#define RACE_FIRST 1000
#define RACE_COUNT 50
#define CAS_FIRST 3000      /* group_cas, group_set clearing a move */
#define CAS_RACE_FIRST 3100 /* two handles racing one epoch */
#define CAS_RACE_COUNT 20
#define REMOVE_FIRST 3200 /* backend_remove clearing alternatives and moves */
#define BALANCE_FIRST 3300 /* sticky, moved_at and history */
#define CLAIM_FIRST 3400   /* two handles racing to assign unassigned groups */
#define CLAIM_COUNT 20
#define LOAD_MANY 260      /* group loads in one report: more than a page */
#define SITES_FIRST 3500   /* several sites: failover_site, failover cells */
#define FAILOVER_MANY 120  /* failover cells: more than a page */
#define SNAPHB_FIRST 4000  /* the snapshot's heartbeat rows */
#define SNAPHB_SPREAD 70   /* cells far apart: more runs of buckets than a snapshot's queries */

static const char *spec;
static bool is_cassandra;
static void remove_sqlite_file(const char *path);

/* the error sentence contains what */
#define CHECK_ERR(ret, error, what)                                                    \
	do {                                                                           \
		const char *ce_err_ = (error);                                         \
		if ((ret) < 0 && ce_err_ != NULL && strstr(ce_err_, (what)) != NULL) { \
			unit_passed++;                                                 \
		} else {                                                               \
			unit_failed++;                                                 \
			fprintf(stderr,                                                \
				"FAIL %s:%d: expected an error with \"%s\", got %d "   \
				"\"%s\"\n",                                            \
				__FILE__, __LINE__, (what), (int)(ret),                \
				(ret) < 0 && ce_err_ != NULL ? ce_err_ : "");          \
		}                                                                      \
	} while (0)

/* a call that must succeed (ret >= 0); prints the error otherwise */
#define CHECK_OK(ret, error)                                                              \
	do {                                                                              \
		int co_ret_ = (ret);                                                      \
		if (co_ret_ >= 0) {                                                       \
			unit_passed++;                                                    \
		} else {                                                                  \
			unit_failed++;                                                    \
			fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #ret, \
				(error) != NULL ? (error) : "(no error)");                \
		}                                                                         \
	} while (0)

static struct geodb *open_db(const char *writer)
{
	struct geodb *db;
	const char *error;
	if (geodb_open(spec, writer, 5000, &db, &error) < 0) {
		fprintf(stderr, "cannot open %s: %s\n", spec, error);
		exit(2);
	}
	return db;
}

/* ---- schema ---- */

static void test_spec_and_schema(struct geodb *db)
{
	const char *error = NULL;
	CHECK_STR(geodb_driver_name(db), is_cassandra ? "cassandra" : "sqlite");
	CHECK_STR(geodb_writer(db), "conf-a");
	CHECK(geodb_spec_check(spec, &error) == 0);

	if (is_cassandra) {
		char bad[2048];
		int ret;
		snprintf(bad, sizeof(bad), "%s;bogus=1", spec);
		ret = geodb_spec_check(bad, &error);
		CHECK_ERR(ret, error, "bogus");
		snprintf(bad, sizeof(bad), "%s;page_size=lots", spec);
		ret = geodb_spec_check(bad, &error);
		CHECK_ERR(ret, error, "page_size");
		snprintf(bad, sizeof(bad), "%s;request_timeout=3 weeks", spec);
		ret = geodb_spec_check(bad, &error);
		CHECK_ERR(ret, error, "request_timeout");
		snprintf(bad, sizeof(bad), "%s;keyspace=Bad-Name", spec);
		ret = geodb_spec_check(bad, &error);
		CHECK_ERR(ret, error, "keyspace");
		snprintf(bad, sizeof(bad), "%s;serial_consistency=quorum", spec);
		ret = geodb_spec_check(bad, &error);
		CHECK_ERR(ret, error, "serial_consistency");
		snprintf(bad, sizeof(bad), "%s;request_timeout=2s;connect_timeout=1500ms", spec);
		CHECK(geodb_spec_check(bad, &error) == 0);
		ret = geodb_spec_check("cassandra:keyspace=x", &error);
		CHECK_ERR(ret, error, "hosts");

		/* before init: every operation refuses the keyspace */
		struct geodb_site *sites = NULL;
		size_t count = 0;
		ret = geodb_site_list(db, &sites, &count, &error);
		CHECK_ERR(ret, error, "has no mailcluster schema; run 'mailcluster geodb init'");
		struct geodb_group group;
		ret = geodb_group_get(db, 1, &group, &error);
		CHECK_ERR(ret, error, "has no mailcluster schema");
	}

	unsigned from = 99;
	CHECK_OK(geodb_init(db, &from, &error), error);
	CHECK(from == 0);
	const char *schema = geodb_schema_text(db);
	CHECK(schema != NULL && strstr(schema, "groups") != NULL &&
	      strstr(schema, "leases") != NULL && strstr(schema, "health") != NULL);
	/* version 3 */
	CHECK(schema != NULL && strstr(schema, "mark_since") != NULL &&
	      strstr(schema, "mark_reason") != NULL && strstr(schema, "alt_backend") != NULL &&
	      strstr(schema, "move_to") != NULL && strstr(schema, "move_started") != NULL &&
	      strstr(schema, "move_reason") != NULL && strstr(schema, "move_acks") != NULL);
	CHECK(schema != NULL && strstr(schema, "hold_until") != NULL);
	CHECK(schema != NULL && strstr(schema, "sticky") != NULL &&
	      strstr(schema, "moved_at") != NULL && strstr(schema, "history") != NULL &&
	      strstr(schema, "group_load") != NULL && strstr(schema, "user_backend") != NULL);

	/* the GeoDB must start empty */
	struct geodb_site *sites = NULL;
	size_t count = 99;
	CHECK_OK(geodb_site_list(db, &sites, &count, &error), error);
	if (count != 0) {
		fprintf(stderr, "the GeoDB %s is not empty: give a fresh file or keyspace\n", spec);
		exit(2);
	}
	free(sites);
}

static void test_group_count(struct geodb *db)
{
	const char *error = NULL;
	CHECK_OK(geodb_check_group_count(db, GROUP_COUNT, &error), error);
	CHECK_OK(geodb_check_group_count(db, GROUP_COUNT, &error), error);
	int ret = geodb_check_group_count(db, GROUP_COUNT + 1, &error);
	CHECK_ERR(ret, error, "group_count = 65");
	CHECK_ERR(ret, error, "use 64");
}

/* ---- sites ---- */

static struct geodb_site make_site(const char *name, enum site_status status, const char *tags,
				   const char *lb)
{
	struct geodb_site site;
	memset(&site, 0, sizeof(site));
	snprintf(site.name, sizeof(site.name), "%s", name);
	site.status = status;
	snprintf(site.tags, sizeof(site.tags), "%s", tags);
	snprintf(site.load_balancer, sizeof(site.load_balancer), "%s", lb);
	return site;
}

static void test_sites(struct geodb *db)
{
	const char *error = NULL;
	struct geodb_site dc1 = make_site("dc1", SITE_STATUS_ONLINE, "gold,eu", "10.0.0.1");
	struct geodb_site dc2 = make_site("dc2", SITE_STATUS_ONLINE, "", "");
	CHECK_OK(geodb_site_add(db, &dc2, &error), error);
	CHECK_OK(geodb_site_add(db, &dc1, &error), error);
	int ret = geodb_site_add(db, &dc1, &error);
	CHECK_ERR(ret, error, "site dc1 already exists");

	struct geodb_site got;
	CHECK(geodb_site_get(db, "dc1", &got, &error) == 1);
	CHECK_STR(got.name, "dc1");
	CHECK(got.status == SITE_STATUS_ONLINE);
	CHECK_STR(got.tags, "gold,eu");
	CHECK_STR(got.load_balancer, "10.0.0.1");
	CHECK(geodb_site_get(db, "nosuch", &got, &error) == 0);

	dc2.status = SITE_STATUS_EVACUATE;
	snprintf(dc2.load_balancer, sizeof(dc2.load_balancer), "10.0.0.2");
	snprintf(dc2.tags, sizeof(dc2.tags), "silver");
	CHECK_OK(geodb_site_update(db, &dc2, &error), error);
	CHECK(geodb_site_get(db, "dc2", &got, &error) == 1);
	CHECK(got.status == SITE_STATUS_EVACUATE);
	CHECK_STR(got.load_balancer, "10.0.0.2");
	CHECK_STR(got.tags, "silver");
	struct geodb_site ghost = make_site("ghost", SITE_STATUS_ONLINE, "", "");
	ret = geodb_site_update(db, &ghost, &error);
	CHECK_ERR(ret, error, "site ghost does not exist");
	CHECK(geodb_site_get(db, "ghost", &got, &error) == 0);

	struct geodb_site dc3 = make_site("dc0", SITE_STATUS_STANDBY, "", "");
	CHECK_OK(geodb_site_add(db, &dc3, &error), error);
	struct geodb_site *sites = NULL;
	size_t count = 0;
	CHECK_OK(geodb_site_list(db, &sites, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		CHECK_STR(sites[0].name, "dc0");
		CHECK_STR(sites[1].name, "dc1");
		CHECK_STR(sites[2].name, "dc2");
		CHECK(sites[0].status == SITE_STATUS_STANDBY);
		CHECK_STR(sites[1].tags, "gold,eu");
	}
	free(sites);

	CHECK_OK(geodb_site_remove(db, "dc0", &error), error);
	ret = geodb_site_remove(db, "dc0", &error);
	CHECK_ERR(ret, error, "site dc0 does not exist");
	CHECK(geodb_site_get(db, "dc0", &got, &error) == 0);
	CHECK_OK(geodb_site_list(db, &sites, &count, &error), error);
	CHECK(count == 2);
	free(sites);
}

/* ---- backends ---- */

static void test_backends(struct geodb *db)
{
	const char *error = NULL;
	int ret = geodb_backend_add(db, "nosuch", "b9", "10.1.0.9", &error);
	CHECK_ERR(ret, error, "site nosuch does not exist");
	CHECK_OK(geodb_backend_add(db, "dc1", "b2", "10.1.0.2", &error), error);
	CHECK_OK(geodb_backend_add(db, "dc1", "b1", "10.1.0.1", &error), error);
	CHECK_OK(geodb_backend_add(db, "dc2", "b3", "10.2.0.3", &error), error);
	CHECK_OK(geodb_backend_add(db, "dc2", "b4", "10.2.0.4", &error), error);
	ret = geodb_backend_add(db, "dc2", "b1", "10.2.0.1", &error);
	CHECK_ERR(ret, error, "backend b1 already exists");

	struct geodb_backend b;
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 1);
	CHECK_STR(b.name, "b1");
	CHECK_STR(b.site, "dc1");
	CHECK_STR(b.address, "10.1.0.1");
	CHECK(b.status == BACKEND_STATUS_STANDBY);
	CHECK(b.load_factor == 100);
	CHECK_STR(b.updated_by, "conf-a");
	CHECK(b.updated_at > 0 && llabs((long long)(b.updated_at - time(NULL))) < 60);
	CHECK(geodb_backend_get(db, "nosuch", &b, &error) == 0);

	struct geodb_backend up;
	memset(&up, 0, sizeof(up));
	snprintf(up.name, sizeof(up.name), "b1");
	snprintf(up.address, sizeof(up.address), "10.1.0.11");
	up.status = BACKEND_STATUS_ONLINE;
	up.load_factor = 50;
	CHECK_OK(geodb_backend_update(db, &up, &error), error);
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 1);
	CHECK(b.status == BACKEND_STATUS_ONLINE);
	CHECK(b.load_factor == 50);
	CHECK_STR(b.address, "10.1.0.11");
	CHECK_STR(b.site, "dc1");
	snprintf(up.name, sizeof(up.name), "ghost");
	ret = geodb_backend_update(db, &up, &error);
	CHECK_ERR(ret, error, "backend ghost does not exist");
	CHECK(geodb_backend_get(db, "ghost", &b, &error) == 0);

	/* b2 and b3 online too, b4 stays standby */
	snprintf(up.name, sizeof(up.name), "b2");
	snprintf(up.address, sizeof(up.address), "10.1.0.2");
	up.load_factor = 100;
	CHECK_OK(geodb_backend_update(db, &up, &error), error);
	snprintf(up.name, sizeof(up.name), "b3");
	snprintf(up.address, sizeof(up.address), "10.2.0.3");
	CHECK_OK(geodb_backend_update(db, &up, &error), error);

	struct geodb_backend *list = NULL;
	size_t count = 0;
	CHECK_OK(geodb_backend_list(db, NULL, &list, &count, &error), error);
	CHECK(count == 4);
	if (count == 4) {
		CHECK_STR(list[0].name, "b1");
		CHECK_STR(list[1].name, "b2");
		CHECK_STR(list[2].name, "b3");
		CHECK_STR(list[3].name, "b4");
		CHECK(list[3].status == BACKEND_STATUS_STANDBY);
		CHECK_STR(list[2].site, "dc2");
	}
	free(list);
	CHECK_OK(geodb_backend_list(db, "dc1", &list, &count, &error), error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK_STR(list[0].name, "b1");
		CHECK_STR(list[1].name, "b2");
	}
	free(list);
	CHECK_OK(geodb_backend_list(db, "dc2", &list, &count, &error), error);
	CHECK(count == 2);
	free(list);
	CHECK_OK(geodb_backend_list(db, "nosuch", &list, &count, &error), error);
	CHECK(count == 0);
	free(list);

	ret = geodb_site_remove(db, "dc2", &error);
	CHECK_ERR(ret, error, "site dc2 still has 2 backend(s)");
	struct geodb_site site;
	CHECK(geodb_site_get(db, "dc2", &site, &error) == 1);
}

/* ---- the controller's marks ---- */

static void test_marks(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_backend b, before;
	/* a new backend is up, never marked */
	CHECK(geodb_backend_get(db, "b2", &before, &error) == 1);
	CHECK(before.mark == HEALTH_MARK_UP);
	CHECK(before.mark_since == 0);
	CHECK_STR(before.mark_reason, "");

	int64_t since = (int64_t)time(NULL) - 5;
	const char *reason = "3 of 4 daemons have seen it failing for 31 s "
			     "(backend_failover_delay 30 s)";
	CHECK(geodb_backend_mark(db, "b2", HEALTH_MARK_DOWN, since, reason, &error) == 1);
	CHECK(geodb_backend_get(db2, "b2", &b, &error) == 1);
	CHECK(b.mark == HEALTH_MARK_DOWN);
	CHECK(b.mark_since == since);
	CHECK_STR(b.mark_reason, reason);
	/* nothing else changed */
	CHECK(b.status == before.status);
	CHECK(b.load_factor == before.load_factor);
	CHECK_STR(b.address, before.address);
	CHECK_STR(b.site, before.site);
	CHECK_STR(b.updated_by, before.updated_by);
	CHECK(b.updated_at == before.updated_at);

	/* the operator's update leaves the mark alone */
	b.load_factor = 80;
	CHECK_OK(geodb_backend_update(db2, &b, &error), error);
	CHECK(geodb_backend_get(db, "b2", &b, &error) == 1);
	CHECK(b.load_factor == 80);
	CHECK_STR(b.updated_by, "conf-b");
	CHECK(b.mark == HEALTH_MARK_DOWN);
	CHECK(b.mark_since == since);
	CHECK_STR(b.mark_reason, reason);
	/* even one that carries another mark: update never writes it */
	b.mark = HEALTH_MARK_UP;
	b.mark_since = 1;
	snprintf(b.mark_reason, sizeof(b.mark_reason), "from an update");
	b.load_factor = 100;
	CHECK_OK(geodb_backend_update(db, &b, &error), error);
	CHECK(geodb_backend_get(db2, "b2", &b, &error) == 1);
	CHECK(b.load_factor == 100);
	CHECK(b.mark == HEALTH_MARK_DOWN);
	CHECK(b.mark_since == since);
	CHECK_STR(b.mark_reason, reason);

	/* an unknown backend: 0, and no row appears */
	CHECK(geodb_backend_mark(db, "ghost", HEALTH_MARK_DOWN, since, "gone", &error) == 0);
	CHECK(geodb_backend_get(db, "ghost", &b, &error) == 0);
	/* arguments */
	char long_reason[300];
	memset(long_reason, 'x', sizeof(long_reason) - 1);
	long_reason[sizeof(long_reason) - 1] = '\0';
	int ret = geodb_backend_mark(db, "b2", HEALTH_MARK_UP, since, long_reason, &error);
	CHECK_ERR(ret, error, "reason");
	ret = geodb_backend_mark(db, "no such name", HEALTH_MARK_UP, since, "", &error);
	CHECK_ERR(ret, error, "not a valid name");
	ret = geodb_backend_mark(db, "b2", (enum health_mark)7, since, "", &error);
	CHECK_ERR(ret, error, "neither up nor down");
	CHECK(geodb_backend_get(db, "b2", &b, &error) == 1 && b.mark == HEALTH_MARK_DOWN);

	/* back up; b3 goes down and stays so (the snapshot checks carry it) */
	CHECK(geodb_backend_mark(db2, "b2", HEALTH_MARK_UP, since + 60, "recovered", &error) == 1);
	CHECK(geodb_backend_mark(db2, "b3", HEALTH_MARK_DOWN, since + 61, "b3 failing", &error) ==
	      1);
	struct geodb_backend *list = NULL;
	size_t count = 0;
	CHECK_OK(geodb_backend_list(db, NULL, &list, &count, &error), error);
	CHECK(count == 4);
	if (count == 4) {
		CHECK(list[0].mark == HEALTH_MARK_UP && list[0].mark_since == 0);
		CHECK(list[1].mark == HEALTH_MARK_UP);
		CHECK(list[1].mark_since == since + 60);
		CHECK_STR(list[1].mark_reason, "recovered");
		CHECK(list[2].mark == HEALTH_MARK_DOWN);
		CHECK(list[2].mark_since == since + 61);
		CHECK_STR(list[2].mark_reason, "b3 failing");
		CHECK(list[3].mark == HEALTH_MARK_UP);
	}
	free(list);
	CHECK_OK(geodb_backend_list(db2, "dc2", &list, &count, &error), error);
	CHECK(count == 2 && list != NULL && list[0].mark == HEALTH_MARK_DOWN &&
	      strcmp(list[0].mark_reason, "b3 failing") == 0);
	free(list);
}

/* ---- groups ---- */

static const char *const backend_of_many[3] = {"b1", "b2", "b3"};

static struct geodb_group make_group(unsigned id, const char *site, const char *backend,
				     uint64_t epoch)
{
	struct geodb_group group;
	memset(&group, 0, sizeof(group));
	group.group_id = id;
	snprintf(group.site, sizeof(group.site), "%s", site);
	snprintf(group.backend, sizeof(group.backend), "%s", backend);
	group.epoch = epoch;
	return group;
}

static bool same_group(const struct geodb_group *x, const struct geodb_group *y);
static bool same_history(const struct geodb_group *x, const struct geodb_group *y);
static const char *history_names(const struct geodb_group *g);
static int64_t unix_ms(void);

static void test_groups(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_group got;
	CHECK(geodb_group_get(db, 1, &got, &error) == 0);

	struct geodb_group g = make_group(1, "dc1", "b1", 1);
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	CHECK_STR(g.backend, "b1");
	CHECK_STR(g.written_by, "conf-a");
	CHECK(g.epoch == 1);
	struct geodb_group g2 = make_group(1, "dc2", "b3", 1);
	CHECK(geodb_group_assign_if_absent(db2, &g2, &error) == 0);
	CHECK_STR(g2.site, "dc1");
	CHECK_STR(g2.backend, "b1");
	CHECK_STR(g2.written_by, "conf-a");
	CHECK(g2.epoch == 1);
	CHECK(g2.written_at == g.written_at);
	CHECK(geodb_group_get(db2, 1, &got, &error) == 1);
	CHECK_STR(got.backend, "b1");
	CHECK_STR(got.written_by, "conf-a");
	CHECK(got.group_id == 1);

	/* direct moves: epoch + 1 each time, absent groups start at 1 */
	CHECK_OK(geodb_group_set(db2, 1, "dc1", "b2", &error), error);
	CHECK(geodb_group_get(db, 1, &got, &error) == 1);
	CHECK_STR(got.backend, "b2");
	CHECK(got.epoch == 2);
	CHECK_STR(got.written_by, "conf-b");
	CHECK_OK(geodb_group_set(db, 1, "dc2", "b3", &error), error);
	CHECK(geodb_group_get(db, 1, &got, &error) == 1);
	CHECK_STR(got.site, "dc2");
	CHECK_STR(got.backend, "b3");
	CHECK(got.epoch == 3);
	CHECK_STR(got.written_by, "conf-a");
	CHECK_OK(geodb_group_set(db, 2, "dc1", "b1", &error), error);
	CHECK(geodb_group_get(db, 2, &got, &error) == 1);
	CHECK(got.epoch == 1);
	CHECK_STR(got.backend, "b1");
	CHECK_OK(geodb_group_set(db, 2, "dc1", "b2", &error), error);
	CHECK(geodb_group_get(db, 2, &got, &error) == 1);
	CHECK(got.epoch == 2);
	CHECK_STR(got.backend, "b2");

	/* more rows than one page */
	unsigned assigned = 0;
	for (unsigned i = 0; i < MANY_COUNT; i++) {
		const char *backend = backend_of_many[i % 3];
		struct geodb_group m =
			make_group(MANY_FIRST + i, i % 3 == 2 ? "dc2" : "dc1", backend, 7);
		int ret = geodb_group_assign_if_absent(i % 2 == 0 ? db : db2, &m, &error);
		if (ret != 1)
			fprintf(stderr, "group %u: %d %s\n", MANY_FIRST + i, ret,
				ret < 0 ? error : "");
		assigned += ret == 1;
	}
	CHECK(assigned == MANY_COUNT);

	struct geodb_group *groups = NULL;
	size_t count = 0;
	CHECK_OK(geodb_group_list(db, &groups, &count, &error), error);
	CHECK(count == 2 + MANY_COUNT);
	if (count == 2 + MANY_COUNT) {
		bool in_order = groups[0].group_id == 1 && groups[1].group_id == 2;
		bool rows_ok = true;
		for (unsigned i = 0; i < MANY_COUNT; i++) {
			const struct geodb_group *m = &groups[2 + i];
			in_order = in_order && m->group_id == MANY_FIRST + i;
			rows_ok = rows_ok && strcmp(m->backend, backend_of_many[i % 3]) == 0 &&
				  m->epoch == 7 &&
				  strcmp(m->written_by, i % 2 == 0 ? "conf-a" : "conf-b") == 0 &&
				  strcmp(m->site, i % 3 == 2 ? "dc2" : "dc1") == 0;
		}
		CHECK(in_order);
		CHECK(rows_ok);
		CHECK_STR(groups[0].backend, "b3");
		CHECK(groups[0].epoch == 3);
	}
	free(groups);

	/* loads: group 1 on b3, group 2 on b2, the many round robin */
	unsigned expect[3] = {0, 1, 1};
	for (unsigned i = 0; i < MANY_COUNT; i++)
		expect[i % 3]++;
	struct geodb_backend_load *loads = NULL;
	CHECK_OK(geodb_backend_loads(db, &loads, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		for (unsigned i = 0; i < 3; i++) {
			CHECK_STR(loads[i].backend, backend_of_many[i]);
			CHECK(loads[i].groups == expect[i]);
		}
	}
	free(loads);

	/* removing a backend: refused while online, then unassigns */
	unsigned unassigned = 12345;
	int ret = geodb_backend_remove(db, "b1", &unassigned, &error);
	CHECK_ERR(ret, error, "backend b1 is online");
	CHECK(unassigned == 12345);
	ret = geodb_backend_remove(db, "ghost", &unassigned, &error);
	CHECK_ERR(ret, error, "backend ghost does not exist");
	struct geodb_backend b;
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 1);
	b.status = BACKEND_STATUS_OFFLINE;
	CHECK_OK(geodb_backend_update(db, &b, &error), error);
	struct geodb_group group1;
	CHECK(geodb_group_get(db, 1, &group1, &error) == 1);
	int64_t before = unix_ms();
	CHECK_OK(geodb_backend_remove(db2, "b1", &unassigned, &error), error);
	int64_t after = unix_ms();
	CHECK(unassigned == expect[0]);
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 0);
	/* its groups keep their rows, unassigned (backend ""), and remember it:
	 * a switch away from b1, epoch + 1, this writer */
	CHECK(geodb_group_get(db, MANY_FIRST, &got, &error) == 1); /* was on b1 */
	CHECK_STR(got.backend, "");
	CHECK_STR(got.site, "dc1");
	CHECK(got.epoch == 8);
	CHECK_STR(got.written_by, "conf-b");
	CHECK(got.written_at > 0 && llabs((long long)(got.written_at - time(NULL))) < 60);
	CHECK_STR(history_names(&got), "b1");
	CHECK(got.moved_at_ms >= before && got.moved_at_ms <= after &&
	      got.history[0].left_ms == got.moved_at_ms);
	CHECK(!got.sticky);
	CHECK_STR(got.alt_backend, "");
	CHECK_STR(got.move_to, "");
	struct geodb_group unassigned_row = got;
	CHECK(geodb_group_get(db, MANY_FIRST + 1, &got, &error) == 1); /* b2 */
	CHECK_STR(got.backend, "b2");
	CHECK(got.epoch == 7);
	CHECK_STR(history_names(&got), "");
	/* group 1 left b1 before: not on it, untouched */
	CHECK(geodb_group_get(db2, 1, &got, &error) == 1);
	CHECK(same_group(&got, &group1));
	/* loads count no unassigned group */
	CHECK_OK(geodb_backend_loads(db, &loads, &count, &error), error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK_STR(loads[0].backend, "b2");
		CHECK(loads[0].groups == expect[1]);
		CHECK_STR(loads[1].backend, "b3");
		CHECK(loads[1].groups == expect[2]);
	}
	free(loads);
	CHECK_OK(geodb_group_list(db, &groups, &count, &error), error);
	CHECK(count == 2 + MANY_COUNT);
	unsigned unassigned_rows = 0, unassigned_ok = 0;
	for (size_t i = 0; i < count; i++) {
		const struct geodb_group *m = &groups[i];
		if (m->backend[0] != '\0')
			continue;
		unassigned_rows++;
		unassigned_ok += m->group_id >= MANY_FIRST && (m->group_id - MANY_FIRST) % 3 == 0 &&
				 m->epoch == 8 && strcmp(history_names(m), "b1") == 0 &&
				 m->moved_at_ms >= before && m->moved_at_ms <= after &&
				 m->history[0].left_ms == m->moved_at_ms &&
				 strcmp(m->written_by, "conf-b") == 0;
	}
	CHECK(unassigned_rows == expect[0]);
	CHECK(unassigned_ok == expect[0]);
	free(groups);

	/* the next login assigns an unassigned group: the proposal is stored
	 * with epoch + 1 (never back to the proposal's), and the row keeps its
	 * history and moved_at (no switch: it left b1 when b1 went) */
	struct geodb_group c = make_group(MANY_FIRST, "dc2", "b3", 1);
	snprintf(c.alt_backend, sizeof(c.alt_backend), "b2");
	c.sticky = true; /* ignored: the row's stays */
	CHECK(geodb_group_assign_if_absent(db, &c, &error) == 1);
	CHECK_STR(c.site, "dc2");
	CHECK_STR(c.backend, "b3");
	CHECK_STR(c.alt_backend, "b2");
	CHECK(c.epoch == 9);
	CHECK_STR(c.written_by, "conf-a");
	CHECK(!c.sticky);
	CHECK(same_history(&c, &unassigned_row));
	CHECK(c.moved_at_ms == unassigned_row.moved_at_ms);
	/* another writer that met it unassigned too is told the winner's row */
	struct geodb_group c2 = make_group(MANY_FIRST, "dc1", "b2", 1);
	CHECK(geodb_group_assign_if_absent(db2, &c2, &error) == 0);
	CHECK(same_group(&c2, &c));
	CHECK(geodb_group_get(db2, MANY_FIRST, &got, &error) == 1);
	CHECK(same_group(&got, &c));
	/* a standby backend without groups: 0 unassigned */
	unassigned = 12345;
	CHECK_OK(geodb_backend_remove(db, "b4", &unassigned, &error), error);
	CHECK(unassigned == 0);
}

/* ---- compare and set, moves ---- */

static bool same_history(const struct geodb_group *x, const struct geodb_group *y)
{
	for (unsigned i = 0; i < BALANCE_HISTORY; i++) {
		if (strcmp(x->history[i].backend, y->history[i].backend) != 0 ||
		    x->history[i].left_ms != y->history[i].left_ms)
			return false;
		if (x->history[i].backend[0] == '\0')
			break;
	}
	return true;
}

static bool same_group(const struct geodb_group *x, const struct geodb_group *y)
{
	return x->group_id == y->group_id && strcmp(x->site, y->site) == 0 &&
	       strcmp(x->backend, y->backend) == 0 && x->epoch == y->epoch &&
	       strcmp(x->written_by, y->written_by) == 0 && x->written_at == y->written_at &&
	       strcmp(x->alt_backend, y->alt_backend) == 0 && strcmp(x->move_to, y->move_to) == 0 &&
	       x->move_started_ms == y->move_started_ms &&
	       strcmp(x->move_reason, y->move_reason) == 0 && x->sticky == y->sticky &&
	       x->moved_at_ms == y->moved_at_ms && same_history(x, y) &&
	       strcmp(x->failover_site, y->failover_site) == 0;
}

/* The backends of g's history, newest first: "h2,h1" ("" none). */
static const char *history_names(const struct geodb_group *g)
{
	static char buf[BALANCE_HISTORY * (NAME_MAX_LEN + 1) + 1];
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < BALANCE_HISTORY && g->history[i].backend[0] != '\0'; i++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s", i > 0 ? "," : "",
					 g->history[i].backend);
	return buf;
}

static int64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_group_cas(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_group got, stored;
	const unsigned id = CAS_FIRST;

	/* no row: not applied, nothing written */
	struct geodb_group row = make_group(id, "dc1", "b2", 0);
	memset(&stored, 0x55, sizeof(stored));
	CHECK(geodb_group_cas(db, &row, 0, &stored, &error) == 0);
	CHECK(stored.group_id == id);
	CHECK_STR(stored.backend, "");
	CHECK(geodb_group_cas(db, &row, 1, &stored, &error) == 0);
	CHECK_STR(stored.backend, "");
	CHECK(geodb_group_get(db, id, &got, &error) == 0);

	/* an assignment stores the alternative (and move fields) it is given */
	struct geodb_group g = make_group(id, "dc1", "b2", 1);
	snprintf(g.alt_backend, sizeof(g.alt_backend), "b3");
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	CHECK_STR(g.alt_backend, "b3");
	struct geodb_group g2 = make_group(id, "dc2", "b3", 1);
	snprintf(g2.alt_backend, sizeof(g2.alt_backend), "b9");
	CHECK(geodb_group_assign_if_absent(db2, &g2, &error) == 0);
	CHECK_STR(g2.backend, "b2");
	CHECK_STR(g2.alt_backend, "b3"); /* the winner's */
	CHECK_STR(g2.move_to, "");
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(same_group(&got, &g2));

	/* start a move: epoch 1 -> 2, written by this handle */
	int64_t started = unix_ms();
	row = make_group(id, "dc1", "b2", 99 /* ignored */);
	snprintf(row.alt_backend, sizeof(row.alt_backend), "b3");
	snprintf(row.move_to, sizeof(row.move_to), "b3");
	row.move_started_ms = started;
	snprintf(row.move_reason, sizeof(row.move_reason), "evacuate b2");
	time_t before = time(NULL);
	CHECK(geodb_group_cas(db2, &row, 1, &stored, &error) == 1);
	CHECK(stored.group_id == id);
	CHECK(stored.epoch == 2);
	CHECK_STR(stored.written_by, "conf-b");
	CHECK(stored.written_at >= before && stored.written_at <= time(NULL));
	CHECK_STR(stored.site, "dc1");
	CHECK_STR(stored.backend, "b2");
	CHECK_STR(stored.alt_backend, "b3");
	CHECK_STR(stored.move_to, "b3");
	CHECK(stored.move_started_ms == started);
	CHECK_STR(stored.move_reason, "evacuate b2");
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));

	/* the wrong epoch: not applied, stored_r is the row as it is */
	struct geodb_group other = make_group(id, "dc2", "b3", 0);
	memset(&stored, 0, sizeof(stored));
	CHECK(geodb_group_cas(db, &other, 1, &stored, &error) == 0);
	CHECK(same_group(&stored, &got));
	CHECK(geodb_group_cas(db, &other, 3, &stored, &error) == 0);
	CHECK(same_group(&stored, &got));
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(got.epoch == 2);
	CHECK_STR(got.backend, "b2");

	/* finish the move: epoch 2 -> 3, the move cleared */
	row = make_group(id, "dc1", "b3", 0);
	CHECK(geodb_group_cas(db, &row, 2, &stored, &error) == 1);
	CHECK(stored.epoch == 3);
	CHECK_STR(history_names(&stored), "b2"); /* a switch */
	CHECK(stored.moved_at_ms > 0 && stored.history[0].left_ms == stored.moved_at_ms);
	CHECK_STR(stored.written_by, "conf-a");
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));
	CHECK_STR(got.backend, "b3");
	CHECK_STR(got.alt_backend, "");
	CHECK_STR(got.move_to, "");
	CHECK(got.move_started_ms == 0);
	CHECK_STR(got.move_reason, "");

	/* arguments */
	row = make_group(id, "dc1", "", 0);
	int ret = geodb_group_cas(db, &row, 3, &stored, &error);
	CHECK_ERR(ret, error, "backend");
	row = make_group(id, "dc1", "b2", 0);
	snprintf(row.move_to, sizeof(row.move_to), "not a name");
	ret = geodb_group_cas(db, &row, 3, &stored, &error);
	CHECK_ERR(ret, error, "move_to");
	CHECK(geodb_group_get(db, id, &got, &error) == 1 && got.epoch == 3);

	/* a direct move clears a move in progress and an alternative that is
	 * the new backend... */
	row = make_group(id, "dc1", "b3", 0);
	snprintf(row.alt_backend, sizeof(row.alt_backend), "b2");
	snprintf(row.move_to, sizeof(row.move_to), "b2");
	row.move_started_ms = unix_ms();
	snprintf(row.move_reason, sizeof(row.move_reason), "rebalance");
	CHECK(geodb_group_cas(db, &row, 3, &stored, &error) == 1);
	CHECK(stored.epoch == 4);
	CHECK_OK(geodb_group_set(db2, id, "dc1", "b2", &error), error);
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.epoch == 5);
	CHECK_STR(got.backend, "b2");
	CHECK_STR(got.written_by, "conf-b");
	CHECK_STR(got.move_to, "");
	CHECK(got.move_started_ms == 0);
	CHECK_STR(got.move_reason, "");
	CHECK_STR(got.alt_backend, "");
	/* ... but keeps another alternative */
	row = make_group(id, "dc1", "b2", 0);
	snprintf(row.alt_backend, sizeof(row.alt_backend), "b3");
	snprintf(row.move_to, sizeof(row.move_to), "b4");
	row.move_started_ms = unix_ms();
	snprintf(row.move_reason, sizeof(row.move_reason), "operator");
	CHECK(geodb_group_cas(db2, &row, 5, &stored, &error) == 1);
	CHECK_OK(geodb_group_set(db, id, "dc2", "b4", &error), error);
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(got.epoch == 7);
	CHECK_STR(got.site, "dc2");
	CHECK_STR(got.backend, "b4");
	CHECK_STR(got.alt_backend, "b3");
	CHECK_STR(got.move_to, "");
	CHECK_STR(got.move_reason, "");
	/* a group_set of a group without a row starts it bare: nothing left,
	 * so no history and no switch */
	CHECK_OK(geodb_group_set(db, id + 1, "dc1", "b2", &error), error);
	CHECK(geodb_group_get(db2, id + 1, &got, &error) == 1);
	CHECK(got.epoch == 1 && got.alt_backend[0] == '\0' && got.move_to[0] == '\0');
	CHECK(!got.sticky && got.moved_at_ms == 0);
	CHECK_STR(history_names(&got), "");
}

/* ---- balancing: sticky, moved_at, history ---- */

/* left[N]: when the group last left backend hN (its history's left_ms) */
static int64_t balance_left[10];

/* g's history has the left_ms recorded for each hN, newest first. */
static bool history_times_ok(const struct geodb_group *g)
{
	for (unsigned i = 0; i < BALANCE_HISTORY && g->history[i].backend[0] != '\0'; i++) {
		const struct geodb_group_history *h = &g->history[i];
		if (h->backend[0] != 'h' || h->backend[1] < '1' || h->backend[1] > '9' ||
		    h->left_ms != balance_left[h->backend[1] - '0'] ||
		    (i > 0 && h->left_ms > g->history[i - 1].left_ms))
			return false;
	}
	return true;
}

/* After a write that switched g away from backend `left` between before and
 * after: moved_at is when, and so is the new head of the history. */
static void check_switch(const struct geodb_group *g, const char *left, int64_t before,
			 int64_t after)
{
	CHECK(g->moved_at_ms >= before && g->moved_at_ms <= after);
	CHECK_STR(g->history[0].backend, left);
	CHECK(g->history[0].left_ms == g->moved_at_ms);
	if (left[0] == 'h' && left[1] >= '1' && left[1] <= '9')
		balance_left[left[1] - '0'] = g->history[0].left_ms;
	CHECK(history_times_ok(g));
}

static void test_group_balance(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	const unsigned id = BALANCE_FIRST;
	struct geodb_group got, stored, row;
	int64_t before, after, moved;

	/* an assignment is never sticky and has no history, whatever it says */
	struct geodb_group g = make_group(id, "dc1", "h1", 1);
	g.sticky = true;
	g.moved_at_ms = 42;
	snprintf(g.history[0].backend, sizeof(g.history[0].backend), "h9");
	g.history[0].left_ms = 7;
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	CHECK(!g.sticky && g.moved_at_ms == 0);
	CHECK_STR(history_names(&g), "");
	struct geodb_group g2 = make_group(id, "dc1", "h2", 1);
	g2.sticky = true;
	CHECK(geodb_group_assign_if_absent(db2, &g2, &error) == 0);
	CHECK_STR(g2.backend, "h1");
	CHECK(!g2.sticky && g2.moved_at_ms == 0);
	CHECK_STR(history_names(&g2), "");
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(same_group(&got, &g));

	/* group_set h1 -> h2: a switch */
	before = unix_ms();
	CHECK_OK(geodb_group_set(db2, id, "dc1", "h2", &error), error);
	after = unix_ms();
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.epoch == 2);
	CHECK_STR(history_names(&got), "h1");
	check_switch(&got, "h1", before, after);
	CHECK(!got.sticky);
	moved = got.moved_at_ms;

	/* group_set to the backend it is on: no switch, nothing recorded */
	CHECK_OK(geodb_group_set(db, id, "dc1", "h2", &error), error);
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(got.epoch == 3);
	CHECK_STR(got.written_by, "conf-a");
	CHECK_STR(history_names(&got), "h1");
	CHECK(got.moved_at_ms == moved);
	CHECK(history_times_ok(&got));

	/* sticky: set, set again, cleared, set; the epoch stays */
	CHECK(geodb_group_set_sticky(db, id, true, &error) == 1);
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(got.sticky);
	CHECK(got.epoch == 3);
	CHECK_STR(got.backend, "h2");
	CHECK_STR(history_names(&got), "h1");
	CHECK(got.moved_at_ms == moved);
	CHECK_STR(got.written_by, "conf-a");
	CHECK(geodb_group_set_sticky(db2, id, true, &error) == 1);
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.sticky && got.epoch == 3);
	CHECK_STR(got.written_by, "conf-b");
	CHECK(geodb_group_set_sticky(db, id, false, &error) == 1);
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(!got.sticky && got.epoch == 3);
	CHECK(geodb_group_set_sticky(db2, id, true, &error) == 1);
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.sticky);
	/* a group without a row: 0, and none appears */
	CHECK(geodb_group_set_sticky(db, id + 1, true, &error) == 0);
	CHECK(geodb_group_get(db2, id + 1, &got, &error) == 0);

	/* group_cas h2 -> h3: a switch; sticky as given (kept); row's own
	 * history and moved_at are ignored */
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	row = got;
	snprintf(row.backend, sizeof(row.backend), "h3");
	row.moved_at_ms = 1;
	snprintf(row.history[0].backend, sizeof(row.history[0].backend), "zz");
	row.history[0].left_ms = 2;
	before = unix_ms();
	CHECK(geodb_group_cas(db2, &row, 3, &stored, &error) == 1);
	after = unix_ms();
	CHECK(stored.epoch == 4 && stored.sticky);
	CHECK_STR(stored.backend, "h3");
	CHECK_STR(history_names(&stored), "h2,h1");
	check_switch(&stored, "h2", before, after);
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));
	moved = got.moved_at_ms;

	/* a compare-and-set that fails records nothing */
	row = got;
	snprintf(row.backend, sizeof(row.backend), "h5");
	CHECK(geodb_group_cas(db, &row, 3, &stored, &error) == 0);
	CHECK(same_group(&stored, &got));
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(same_group(&stored, &got));

	/* group_cas on the same backend (a move starts): no switch; sticky
	 * as given: cleared */
	row = got;
	snprintf(row.move_to, sizeof(row.move_to), "h4");
	row.move_started_ms = unix_ms();
	snprintf(row.move_reason, sizeof(row.move_reason), "balance");
	row.sticky = false;
	CHECK(geodb_group_cas(db, &row, 4, &stored, &error) == 1);
	CHECK(stored.epoch == 5 && !stored.sticky);
	CHECK_STR(history_names(&stored), "h2,h1");
	CHECK(stored.moved_at_ms == moved);
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));

	/* group_set h3 -> h1 keeps sticky; h1 is in the history already, but
	 * only older entries of the backend left (h3) are dropped */
	CHECK(geodb_group_set_sticky(db2, id, true, &error) == 1);
	before = unix_ms();
	CHECK_OK(geodb_group_set(db2, id, "dc1", "h1", &error), error);
	after = unix_ms();
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.epoch == 6 && got.sticky);
	CHECK_STR(got.move_to, "");
	CHECK_STR(history_names(&got), "h3,h2,h1");
	check_switch(&got, "h3", before, after);

	/* group_cas h1 -> h2: h1 is recorded anew, its older entry dropped */
	row = got;
	snprintf(row.backend, sizeof(row.backend), "h2");
	before = unix_ms();
	CHECK(geodb_group_cas(db, &row, 6, &stored, &error) == 1);
	after = unix_ms();
	CHECK(stored.epoch == 7 && stored.sticky);
	CHECK_STR(history_names(&stored), "h1,h3,h2");
	check_switch(&stored, "h1", before, after);
	/* group_cas h2 -> h4 */
	row = stored;
	snprintf(row.backend, sizeof(row.backend), "h4");
	before = unix_ms();
	CHECK(geodb_group_cas(db2, &row, 7, &stored, &error) == 1);
	after = unix_ms();
	CHECK_STR(history_names(&stored), "h2,h1,h3");
	check_switch(&stored, "h2", before, after);
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));
	/* group_set h4 -> h5: four entries */
	before = unix_ms();
	CHECK_OK(geodb_group_set(db, id, "dc1", "h5", &error), error);
	after = unix_ms();
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(got.epoch == 9);
	CHECK_STR(history_names(&got), "h4,h2,h1,h3");
	check_switch(&got, "h4", before, after);
	/* group_set h5 -> h6: at most BALANCE_HISTORY, the oldest goes */
	before = unix_ms();
	CHECK_OK(geodb_group_set(db2, id, "dc1", "h6", &error), error);
	after = unix_ms();
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.epoch == 10);
	CHECK_STR(history_names(&got), "h5,h4,h2,h1");
	check_switch(&got, "h5", before, after);
	/* group_cas h6 -> h1: h1 was the oldest; the limit drops it */
	row = got;
	snprintf(row.backend, sizeof(row.backend), "h1");
	before = unix_ms();
	CHECK(geodb_group_cas(db, &row, 10, &stored, &error) == 1);
	after = unix_ms();
	CHECK(stored.epoch == 11 && stored.sticky);
	CHECK_STR(stored.backend, "h1");
	CHECK_STR(history_names(&stored), "h6,h5,h4,h2");
	check_switch(&stored, "h6", before, after);
	CHECK(geodb_group_get(db2, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));
	/* to h5, which is in the history: h1 is recorded, nothing dropped but
	 * the oldest */
	before = unix_ms();
	CHECK_OK(geodb_group_set(db2, id, "dc1", "h5", &error), error);
	after = unix_ms();
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(got.epoch == 12 && got.sticky);
	CHECK_STR(history_names(&got), "h1,h6,h5,h4");
	check_switch(&got, "h1", before, after);
	/* leaving h5 with a full history: its older entry goes, so the
	 * oldest (h4) stays */
	row = got;
	snprintf(row.backend, sizeof(row.backend), "h2");
	before = unix_ms();
	CHECK(geodb_group_cas(db2, &row, 12, &stored, &error) == 1);
	after = unix_ms();
	CHECK(stored.epoch == 13 && stored.sticky);
	CHECK_STR(history_names(&stored), "h5,h1,h6,h4");
	check_switch(&stored, "h5", before, after);
	CHECK(geodb_group_get(db, id, &got, &error) == 1);
	CHECK(same_group(&got, &stored));

	/* an assignment that loses is told the row that won, balancing
	 * fields and all */
	g = make_group(id, "dc1", "h2", 1);
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 0);
	CHECK(same_group(&g, &got));

	/* the listing carries it (and check_snapshot() compares the snapshot
	 * with the listing) */
	struct geodb_group *groups = NULL;
	size_t count = 0;
	CHECK_OK(geodb_group_list(db2, &groups, &count, &error), error);
	bool listed = false;
	for (size_t i = 0; i < count; i++) {
		if (groups[i].group_id == id)
			listed = same_group(&groups[i], &got);
	}
	CHECK(listed);
	free(groups);
}

/* Two handles race compare-and-sets on the same epoch. */
struct cas_racer {
	struct geodb *db;
	const char *backend;
	pthread_barrier_t *barrier;
	int results[CAS_RACE_COUNT];
	struct geodb_group stored[CAS_RACE_COUNT];
	char errors[CAS_RACE_COUNT][256];
};

static void *cas_race_run(void *context)
{
	struct cas_racer *r = context;
	for (unsigned i = 0; i < CAS_RACE_COUNT; i++) {
		const char *error = NULL;
		struct geodb_group row = make_group(CAS_RACE_FIRST + i, "dc1", r->backend, 0);
		snprintf(row.move_to, sizeof(row.move_to), "%s", r->backend);
		row.move_started_ms = 1000 + i;
		snprintf(row.move_reason, sizeof(row.move_reason), "race %s", r->backend);
		pthread_barrier_wait(r->barrier);
		r->results[i] = geodb_group_cas(r->db, &row, 1, &r->stored[i], &error);
		snprintf(r->errors[i], sizeof(r->errors[i]), "%s",
			 r->results[i] < 0 && error != NULL ? error : "");
	}
	return NULL;
}

static void test_cas_race(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	for (unsigned i = 0; i < CAS_RACE_COUNT; i++) {
		struct geodb_group g = make_group(CAS_RACE_FIRST + i, "dc1", "b1", 1);
		CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	}
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, 2);
	struct cas_racer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	a->db = db;
	a->backend = "b2";
	a->barrier = &barrier;
	b->db = db2;
	b->backend = "b3";
	b->barrier = &barrier;
	pthread_t ta, tb;
	pthread_create(&ta, NULL, cas_race_run, a);
	pthread_create(&tb, NULL, cas_race_run, b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&barrier);

	unsigned one_winner = 0, agree = 0, stored_ok = 0, wins_a = 0;
	for (unsigned i = 0; i < CAS_RACE_COUNT; i++) {
		if (a->results[i] < 0 || b->results[i] < 0) {
			fprintf(stderr, "cas race group %u: %s %s\n", CAS_RACE_FIRST + i,
				a->errors[i], b->errors[i]);
			continue;
		}
		one_winner += a->results[i] + b->results[i] == 1;
		wins_a += a->results[i] == 1;
		/* both were told the row that is stored */
		agree += same_group(&a->stored[i], &b->stored[i]);
		struct geodb_group now;
		const char *winner = a->results[i] == 1 ? "conf-a" : "conf-b";
		const char *winner_backend = a->results[i] == 1 ? "b2" : "b3";
		/* the winner switched it from b1: b1 heads the history, once */
		if (geodb_group_get(db, CAS_RACE_FIRST + i, &now, &error) == 1 &&
		    same_group(&now, &a->stored[i]) && now.epoch == 2 &&
		    strcmp(now.written_by, winner) == 0 &&
		    strcmp(now.backend, winner_backend) == 0 &&
		    strcmp(now.move_to, winner_backend) == 0 && now.move_started_ms == 1000 + i &&
		    strcmp(history_names(&now), "b1") == 0 && now.moved_at_ms > 0 &&
		    now.history[0].left_ms == now.moved_at_ms)
			stored_ok++;
	}
	CHECK(one_winner == CAS_RACE_COUNT);
	CHECK(agree == CAS_RACE_COUNT);
	CHECK(stored_ok == CAS_RACE_COUNT);
	fprintf(stderr, "cas race: conf-a won %u of %u groups\n", wins_a, CAS_RACE_COUNT);
	free(a);
	free(b);
}

/* Removing a backend unassigns its groups (their rows stay, remembering
 * it), ends the moves to it and clears it as anybody's alternative. */
static void test_remove_references(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	CHECK_OK(geodb_backend_add(db, "dc1", "b5", "10.1.0.5", &error), error);
	const unsigned on_b2_alt_b5 = REMOVE_FIRST, moving_to_b5 = REMOVE_FIRST + 1,
		       on_b5 = REMOVE_FIRST + 2, untouched = REMOVE_FIRST + 3;
	struct geodb_group g = make_group(on_b2_alt_b5, "dc1", "b2", 4);
	snprintf(g.alt_backend, sizeof(g.alt_backend), "b5");
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	g = make_group(moving_to_b5, "dc1", "b3", 6);
	snprintf(g.alt_backend, sizeof(g.alt_backend), "b2");
	snprintf(g.move_to, sizeof(g.move_to), "b5");
	g.move_started_ms = unix_ms();
	snprintf(g.move_reason, sizeof(g.move_reason), "to b5");
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	/* on_b5: came from b2, pinned, with an alternative and a move away in
	 * progress */
	g = make_group(on_b5, "dc1", "b2", 1);
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	CHECK_OK(geodb_group_set(db, on_b5, "dc1", "b5", &error), error);
	CHECK(geodb_group_set_sticky(db, on_b5, true, &error) == 1);
	struct geodb_group on_b5_row, stored;
	CHECK(geodb_group_get(db, on_b5, &on_b5_row, &error) == 1);
	CHECK_STR(history_names(&on_b5_row), "b2");
	struct geodb_group row = on_b5_row;
	snprintf(row.alt_backend, sizeof(row.alt_backend), "b3");
	snprintf(row.move_to, sizeof(row.move_to), "b2");
	row.move_started_ms = unix_ms();
	snprintf(row.move_reason, sizeof(row.move_reason), "back to b2");
	CHECK(geodb_group_cas(db, &row, on_b5_row.epoch, &stored, &error) == 1);
	CHECK(stored.epoch == 3 && stored.sticky);
	CHECK_STR(history_names(&stored), "b2");
	on_b5_row = stored;
	g = make_group(untouched, "dc1", "b2", 2);
	snprintf(g.alt_backend, sizeof(g.alt_backend), "b3");
	snprintf(g.move_to, sizeof(g.move_to), "b3");
	g.move_started_ms = 12345;
	snprintf(g.move_reason, sizeof(g.move_reason), "to b3");
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	struct geodb_group keep;
	CHECK(geodb_group_get(db, untouched, &keep, &error) == 1);

	unsigned unassigned = 12345;
	int64_t before = unix_ms();
	CHECK_OK(geodb_backend_remove(db2, "b5", &unassigned, &error), error);
	int64_t after = unix_ms();
	CHECK(unassigned == 1);
	/* unassigned: its move ended, its alternative (another backend) and
	 * sticky kept, b5 at the head of its history, b2's entry as it was */
	struct geodb_group got;
	CHECK(geodb_group_get(db, on_b5, &got, &error) == 1);
	CHECK_STR(got.backend, "");
	CHECK_STR(got.site, "dc1");
	CHECK(got.epoch == 4);
	CHECK_STR(got.written_by, "conf-b");
	CHECK_STR(got.alt_backend, "b3");
	CHECK_STR(got.move_to, "");
	CHECK(got.move_started_ms == 0);
	CHECK_STR(got.move_reason, "");
	CHECK(got.sticky);
	CHECK_STR(history_names(&got), "b5,b2");
	CHECK(got.moved_at_ms >= before && got.moved_at_ms <= after &&
	      got.history[0].left_ms == got.moved_at_ms);
	CHECK(got.history[1].left_ms == on_b5_row.history[0].left_ms);
	struct geodb_group unassigned_row = got;
	/* the alternative is cleared; that is no change of the assignment */
	CHECK(geodb_group_get(db, on_b2_alt_b5, &got, &error) == 1);
	CHECK_STR(got.backend, "b2");
	CHECK_STR(got.alt_backend, "");
	CHECK(got.epoch == 4);
	/* the move is over: epoch + 1; its alternative stays */
	CHECK(geodb_group_get(db, moving_to_b5, &got, &error) == 1);
	CHECK_STR(got.backend, "b3");
	CHECK_STR(got.move_to, "");
	CHECK(got.move_started_ms == 0);
	CHECK_STR(got.move_reason, "");
	CHECK_STR(got.alt_backend, "b2");
	CHECK(got.epoch == 7);
	CHECK_STR(got.written_by, "conf-b");
	CHECK(geodb_group_get(db, untouched, &got, &error) == 1);
	CHECK(same_group(&got, &keep));

	/* assigned again: the proposal (its site, backend, alternative and
	 * move) over the row, epoch + 1; sticky, history and moved_at stay */
	g = make_group(on_b5, "dc1", "b3", 1);
	snprintf(g.alt_backend, sizeof(g.alt_backend), "b2");
	CHECK(geodb_group_assign_if_absent(db2, &g, &error) == 1);
	CHECK_STR(g.backend, "b3");
	CHECK_STR(g.site, "dc1");
	CHECK_STR(g.alt_backend, "b2");
	CHECK_STR(g.move_to, "");
	CHECK(g.epoch == 5);
	CHECK_STR(g.written_by, "conf-b");
	CHECK(g.sticky);
	CHECK_STR(history_names(&g), "b5,b2");
	CHECK(same_history(&g, &unassigned_row));
	CHECK(g.moved_at_ms == unassigned_row.moved_at_ms);
	struct geodb_group g2 = make_group(on_b5, "dc1", "b2", 1);
	CHECK(geodb_group_assign_if_absent(db, &g2, &error) == 0);
	CHECK(same_group(&g2, &g));
	CHECK(geodb_group_get(db, on_b5, &got, &error) == 1);
	CHECK(same_group(&got, &g));
	/* from there on it is an assigned group like any: a switch records b3 */
	CHECK_OK(geodb_group_set(db, on_b5, "dc1", "b2", &error), error);
	CHECK(geodb_group_get(db2, on_b5, &got, &error) == 1);
	CHECK(got.epoch == 6 && got.sticky);
	CHECK_STR(history_names(&got), "b3,b5,b2");
}

/* ---- move acknowledgements ---- */

static struct geodb_move_ack make_ack(unsigned group_id, const char *observer, uint64_t epoch,
				      int64_t acked_at)
{
	struct geodb_move_ack ack;
	memset(&ack, 0, sizeof(ack));
	ack.group_id = group_id;
	snprintf(ack.observer, sizeof(ack.observer), "%s", observer);
	ack.epoch = epoch;
	ack.acked_at = acked_at;
	return ack;
}

static void test_move_acks(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_move_ack *acks = NULL;
	size_t count = 99;
	CHECK_OK(geodb_move_ack_list(db, CAS_FIRST, &acks, &count, &error), error);
	CHECK(count == 0);
	free(acks);

	int64_t now = time(NULL);
	struct geodb_move_ack ack = make_ack(CAS_FIRST, "daemon-b/12", 4, now);
	CHECK_OK(geodb_move_ack_put(db, &ack, 60, &error), error);
	ack = make_ack(CAS_FIRST, "daemon-a/7", 4, now - 1);
	CHECK_OK(geodb_move_ack_put(db2, &ack, 60, &error), error);
	ack = make_ack(CAS_FIRST, "daemon-c/1", 4, now);
	CHECK_OK(geodb_move_ack_put(db, &ack, 1, &error), error); /* short-lived */
	ack = make_ack(CAS_FIRST + 1, "daemon-a/7", 9, now);
	CHECK_OK(geodb_move_ack_put(db, &ack, 60, &error), error);
	/* replaces daemon-b's row */
	ack = make_ack(CAS_FIRST, "daemon-b/12", 5, now + 1);
	CHECK_OK(geodb_move_ack_put(db2, &ack, 60, &error), error);
	/* arguments */
	int ret = geodb_move_ack_put(db, &ack, 0, &error);
	CHECK_ERR(ret, error, "TTL");
	ack = make_ack(CAS_FIRST, "", 5, now);
	ret = geodb_move_ack_put(db, &ack, 60, &error);
	CHECK_ERR(ret, error, "observer");

	CHECK_OK(geodb_move_ack_list(db, CAS_FIRST, &acks, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		CHECK(acks[0].group_id == CAS_FIRST);
		CHECK_STR(acks[0].observer, "daemon-a/7");
		CHECK(acks[0].epoch == 4);
		CHECK(acks[0].acked_at == now - 1);
		CHECK_STR(acks[1].observer, "daemon-b/12");
		CHECK(acks[1].epoch == 5);
		CHECK(acks[1].acked_at == now + 1);
		CHECK(acks[1].group_id == CAS_FIRST);
		CHECK_STR(acks[2].observer, "daemon-c/1");
	}
	free(acks);
	CHECK_OK(geodb_move_ack_list(db2, CAS_FIRST + 1, &acks, &count, &error), error);
	CHECK(count == 1 && acks != NULL && acks[0].epoch == 9 &&
	      acks[0].group_id == CAS_FIRST + 1 &&
	      strcmp(acks[0].observer, "daemon-a/7") == 0);
	free(acks);
	CHECK_OK(geodb_move_ack_list(db2, CAS_FIRST + 2, &acks, &count, &error), error);
	CHECK(count == 0);
	free(acks);

	/* expiry: the 1-second acknowledgement */
	sleep(3);
	CHECK_OK(geodb_move_ack_list(db, CAS_FIRST, &acks, &count, &error), error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK_STR(acks[0].observer, "daemon-a/7");
		CHECK_STR(acks[1].observer, "daemon-b/12");
	}
	free(acks);
}

/* ---- group loads ---- */

static struct geodb_group_load make_load(unsigned group_id, unsigned sessions, unsigned logins,
					 int64_t reported_at)
{
	struct geodb_group_load load;
	memset(&load, 0, sizeof(load));
	load.group_id = group_id;
	snprintf(load.observer, sizeof(load.observer), "ignored");
	load.sessions = sessions;
	load.logins = logins;
	load.reported_at = reported_at;
	return load;
}

/* The live row of (group_id, observer) in rows, or NULL. */
static const struct geodb_group_load *find_load(const struct geodb_group_load *rows, size_t count,
						unsigned group_id, const char *observer)
{
	for (size_t i = 0; i < count; i++) {
		if (rows[i].group_id == group_id && strcmp(rows[i].observer, observer) == 0)
			return &rows[i];
	}
	return NULL;
}

static bool load_is(const struct geodb_group_load *load, unsigned sessions, unsigned logins,
		    int64_t reported_at)
{
	return load != NULL && load->sessions == sessions && load->logins == logins &&
	       load->reported_at == reported_at;
}

static void test_group_load(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_group_load *rows = NULL;
	size_t count = 99;
	CHECK_OK(geodb_group_load_list(db, &rows, &count, &error), error);
	CHECK(count == 0);
	free(rows);

	/* two daemons report; the observer given names every row */
	int64_t now = time(NULL);
	struct geodb_group_load a[3] = {make_load(3, 10, 2, now), make_load(1, 0, 7, now),
					make_load(2, 120000, 0, now)};
	CHECK_OK(geodb_group_load_put(db, "daemon-a/1", a, 3, 60, &error), error);
	struct geodb_group_load b[2] = {make_load(2, 5, 1, now - 1), make_load(40, 1, 1, now - 1)};
	CHECK_OK(geodb_group_load_put(db2, "daemon-b/2", b, 2, 60, &error), error);
	CHECK_OK(geodb_group_load_list(db2, &rows, &count, &error), error);
	CHECK(count == 5);
	if (count == 5) {
		CHECK(rows[0].group_id == 1 && rows[1].group_id == 2 && rows[2].group_id == 2 &&
		      rows[3].group_id == 3 && rows[4].group_id == 40);
		CHECK_STR(rows[1].observer, "daemon-a/1");
		CHECK_STR(rows[2].observer, "daemon-b/2");
		CHECK(load_is(&rows[0], 0, 7, now));
		CHECK(load_is(&rows[1], 120000, 0, now));
		CHECK(load_is(&rows[2], 5, 1, now - 1));
		CHECK(load_is(&rows[3], 10, 2, now));
		CHECK(load_is(&rows[4], 1, 1, now - 1));
	}
	free(rows);

	/* a new report replaces the observer's rows of those groups only */
	struct geodb_group_load a2[2] = {make_load(2, 3, 4, now + 1), make_load(1, 0, 0, now + 1)};
	CHECK_OK(geodb_group_load_put(db2, "daemon-a/1", a2, 2, 60, &error), error);
	/* nothing to report: nothing changes */
	CHECK_OK(geodb_group_load_put(db, "daemon-b/2", NULL, 0, 60, &error), error);
	CHECK_OK(geodb_group_load_list(db, &rows, &count, &error), error);
	CHECK(count == 5);
	CHECK(load_is(find_load(rows, count, 1, "daemon-a/1"), 0, 0, now + 1));
	CHECK(load_is(find_load(rows, count, 2, "daemon-a/1"), 3, 4, now + 1));
	CHECK(load_is(find_load(rows, count, 3, "daemon-a/1"), 10, 2, now));
	CHECK(load_is(find_load(rows, count, 2, "daemon-b/2"), 5, 1, now - 1));
	CHECK(find_load(rows, count, 1, "ignored") == NULL);
	free(rows);

	/* arguments */
	int ret = geodb_group_load_put(db, "daemon-a/1", a, 3, 0, &error);
	CHECK_ERR(ret, error, "TTL");
	ret = geodb_group_load_put(db, "", a, 3, 60, &error);
	CHECK_ERR(ret, error, "observer");
	char long_name[NAME_MAX_LEN + 2];
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	ret = geodb_group_load_put(db, long_name, a, 3, 60, &error);
	CHECK_ERR(ret, error, "observer");

	/* one report of many groups (several pages, more than the inserts a
	 * driver has in flight at once) */
	struct geodb_group_load *many = calloc(LOAD_MANY, sizeof(*many));
	for (unsigned i = 0; i < LOAD_MANY; i++)
		many[i] = make_load(1000 + i, i, 2 * i, now);
	CHECK_OK(geodb_group_load_put(db, "daemon-c/3", many, LOAD_MANY, 60, &error), error);
	free(many);
	CHECK_OK(geodb_group_load_list(db2, &rows, &count, &error), error);
	CHECK(count == 5 + LOAD_MANY);
	unsigned many_ok = 0;
	bool sorted = true;
	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			sorted = sorted && (rows[i - 1].group_id < rows[i].group_id ||
					    (rows[i - 1].group_id == rows[i].group_id &&
					     strcmp(rows[i - 1].observer, rows[i].observer) < 0));
		if (strcmp(rows[i].observer, "daemon-c/3") == 0 && rows[i].group_id >= 1000 &&
		    load_is(&rows[i], rows[i].group_id - 1000, 2 * (rows[i].group_id - 1000), now))
			many_ok++;
	}
	CHECK(sorted);
	CHECK(many_ok == LOAD_MANY);
	free(rows);

	/* expiry: daemon-d's rows live 1 second, except the one it reported
	 * again for longer */
	struct geodb_group_load d[2] = {make_load(7, 1, 0, now), make_load(8, 2, 0, now)};
	CHECK_OK(geodb_group_load_put(db, "daemon-d/4", d, 2, 1, &error), error);
	CHECK_OK(geodb_group_load_put(db2, "daemon-d/4", &d[1], 1, 60, &error), error);
	CHECK_OK(geodb_group_load_list(db, &rows, &count, &error), error);
	CHECK(count == 7 + LOAD_MANY);
	free(rows);
	sleep(3);
	CHECK_OK(geodb_group_load_list(db, &rows, &count, &error), error);
	CHECK(count == 6 + LOAD_MANY);
	CHECK(find_load(rows, count, 7, "daemon-d/4") == NULL);
	CHECK(load_is(find_load(rows, count, 8, "daemon-d/4"), 2, 0, now));
	CHECK(load_is(find_load(rows, count, 3, "daemon-a/1"), 10, 2, now));
	free(rows);
}

/* ---- users' last backends ---- */

static void test_user_backend(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	char backend[NAME_MAX_LEN + 1];
	int64_t at = 99;
	snprintf(backend, sizeof(backend), "junk");
	CHECK(geodb_user_last_backend_get(db, "erin", backend, &at, &error) == 0);
	CHECK_STR(backend, "");
	CHECK(at == 0);

	CHECK_OK(geodb_user_last_backend(db, "erin", "b2", 1700000000111, &error), error);
	CHECK(geodb_user_last_backend_get(db2, "erin", backend, &at, &error) == 1);
	CHECK_STR(backend, "b2");
	CHECK(at == 1700000000111);
	/* replaced */
	CHECK_OK(geodb_user_last_backend(db2, "erin", "b3", 1700000000222, &error), error);
	CHECK(geodb_user_last_backend_get(db, "erin", backend, &at, &error) == 1);
	CHECK_STR(backend, "b3");
	CHECK(at == 1700000000222);
	/* another user is another row; the longest name fits */
	char long_user[USERNAME_MAX_LEN + 1];
	memset(long_user, 'u', sizeof(long_user) - 1);
	long_user[sizeof(long_user) - 1] = '\0';
	CHECK_OK(geodb_user_last_backend(db, long_user, "b2", 1700000000333, &error), error);
	CHECK(geodb_user_last_backend_get(db2, long_user, backend, &at, &error) == 1);
	CHECK_STR(backend, "b2");
	CHECK(at == 1700000000333);
	CHECK(geodb_user_last_backend_get(db2, "erin", backend, &at, &error) == 1);
	CHECK_STR(backend, "b3");

	/* no override comes of it: the users table (and the snapshot) is for
	 * overrides only */
	struct geodb_user u;
	CHECK(geodb_user_get(db, "erin", &u, &error) == 0);
	/* nor does it touch an override */
	CHECK_OK(geodb_user_last_backend(db, "bob", "b3", 1700000000444, &error), error);
	CHECK(geodb_user_get(db2, "bob", &u, &error) == 1);
	CHECK(u.group_id == 4 && u.hold_until_ms == 1700000000789);

	/* arguments: nothing is written */
	int ret = geodb_user_last_backend(db, "erin", "not a name", 1700000000555, &error);
	CHECK_ERR(ret, error, "not a valid name");
	ret = geodb_user_last_backend(db, "erin", "", 1700000000555, &error);
	CHECK_ERR(ret, error, "not a valid name");
	ret = geodb_user_last_backend(db, "erin", "b2", -1, &error);
	CHECK_ERR(ret, error, "negative");
	ret = geodb_user_last_backend(db, "", "b2", 1700000000555, &error);
	CHECK_ERR(ret, error, "username");
	char too_long[USERNAME_MAX_LEN + 2];
	memset(too_long, 'u', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	ret = geodb_user_last_backend(db, too_long, "b2", 1700000000555, &error);
	CHECK_ERR(ret, error, "username");
	CHECK(geodb_user_last_backend_get(db, "erin", backend, &at, &error) == 1);
	CHECK_STR(backend, "b3");
	CHECK(at == 1700000000222);
}

/* ---- users ---- */

static void test_users(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_user u;
	memset(&u, 0, sizeof(u));
	CHECK(geodb_user_get(db, "alice@example.com", &u, &error) == 0);
	CHECK_OK(geodb_user_set_group(db, "alice@example.com", 5, &error), error);
	CHECK(geodb_user_get(db2, "alice@example.com", &u, &error) == 1);
	CHECK_STR(u.username, "alice@example.com");
	CHECK(u.group_id == 5);
	CHECK_STR(u.written_by, "conf-a");
	CHECK(u.written_at > 0);
	CHECK_OK(geodb_user_set_group(db2, "alice@example.com", 7, &error), error);
	CHECK(geodb_user_get(db, "alice@example.com", &u, &error) == 1);
	CHECK(u.group_id == 7);
	CHECK_STR(u.written_by, "conf-b");
	CHECK_OK(geodb_user_set_group(db, "bob", 3, &error), error);
	CHECK_OK(geodb_user_set_group(db, "carol", 63, &error), error);

	struct geodb_user *users = NULL;
	size_t count = 0;
	CHECK_OK(geodb_user_list(db, &users, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		CHECK_STR(users[0].username, "alice@example.com");
		CHECK_STR(users[1].username, "bob");
		CHECK_STR(users[2].username, "carol");
		CHECK(users[2].group_id == 63);
	}
	free(users);
	CHECK(geodb_user_delete(db, "carol", &error) == 1);
	CHECK(geodb_user_delete(db, "carol", &error) == 0);
	CHECK(geodb_user_delete(db, "nobody", &error) == 0);
	CHECK(geodb_user_get(db, "carol", &u, &error) == 0);
	CHECK_OK(geodb_user_list(db, &users, &count, &error), error);
	CHECK(count == 2);
	free(users);

	/* a move with a login hold: group, writer and hold_until, which
	 * geodb_user_set_group() clears again */
	CHECK_OK(geodb_user_move(db2, "alice@example.com", 9, 1700000000123, &error), error);
	CHECK(geodb_user_get(db, "alice@example.com", &u, &error) == 1);
	CHECK(u.group_id == 9);
	CHECK(u.hold_until_ms == 1700000000123);
	CHECK_STR(u.written_by, "conf-b");
	CHECK(u.written_at > 0);
	CHECK_OK(geodb_user_set_group(db, "alice@example.com", 7, &error), error);
	CHECK(geodb_user_get(db2, "alice@example.com", &u, &error) == 1);
	CHECK(u.group_id == 7);
	CHECK(u.hold_until_ms == 0);
	CHECK_STR(u.written_by, "conf-a");
	/* a user without a row gets one; a move without a hold clears it */
	CHECK_OK(geodb_user_move(db, "dave", 11, 1700000000456, &error), error);
	CHECK(geodb_user_get(db2, "dave", &u, &error) == 1);
	CHECK(u.group_id == 11 && u.hold_until_ms == 1700000000456);
	CHECK_OK(geodb_user_move(db2, "dave", 12, 0, &error), error);
	CHECK(geodb_user_get(db, "dave", &u, &error) == 1);
	CHECK(u.group_id == 12 && u.hold_until_ms == 0);
	/* a negative hold is refused and changes nothing */
	int ret = geodb_user_move(db, "dave", 13, -1, &error);
	CHECK_ERR(ret, error, "hold_until -1 is negative");
	CHECK(geodb_user_get(db, "dave", &u, &error) == 1);
	CHECK(u.group_id == 12 && u.hold_until_ms == 0);
	CHECK(geodb_user_delete(db, "dave", &error) == 1);

	/* bob keeps a hold: the listing, and check_snapshot(), carry it */
	CHECK_OK(geodb_user_move(db2, "bob", 4, 1700000000789, &error), error);
	CHECK_OK(geodb_user_list(db, &users, &count, &error), error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK_STR(users[0].username, "alice@example.com");
		CHECK(users[0].group_id == 7 && users[0].hold_until_ms == 0);
		CHECK_STR(users[1].username, "bob");
		CHECK(users[1].group_id == 4 && users[1].hold_until_ms == 1700000000789);
		CHECK_STR(users[1].written_by, "conf-b");
	}
	free(users);
}

/* ---- the conditional insert race ---- */

struct racer {
	struct geodb *db;
	const char *backend;
	unsigned first, count; /* groups first.. (count <= RACE_COUNT) */
	pthread_barrier_t *barrier;
	int results[RACE_COUNT];
	struct geodb_group stored[RACE_COUNT];
	char errors[RACE_COUNT][256];
};

static void *race_run(void *context)
{
	struct racer *r = context;
	for (unsigned i = 0; i < r->count; i++) {
		const char *error = NULL;
		/* both writers fire the same group at the same moment */
		pthread_barrier_wait(r->barrier);
		struct geodb_group g = make_group(r->first + i, "dc1", r->backend, 1);
		r->results[i] = geodb_group_assign_if_absent(r->db, &g, &error);
		r->stored[i] = g;
		snprintf(r->errors[i], sizeof(r->errors[i]), "%s",
			 r->results[i] < 0 && error != NULL ? error : "");
	}
	return NULL;
}

static void test_race(struct geodb *db, struct geodb *db2)
{
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, 2);
	struct racer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	a->db = db;
	a->backend = "b2";
	a->barrier = &barrier;
	b->db = db2;
	b->backend = "b3";
	b->barrier = &barrier;
	a->first = b->first = RACE_FIRST;
	a->count = b->count = RACE_COUNT;
	pthread_t ta, tb;
	pthread_create(&ta, NULL, race_run, a);
	pthread_create(&tb, NULL, race_run, b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&barrier);

	unsigned one_winner = 0, agree = 0, stored_ok = 0, wins_a = 0;
	for (unsigned i = 0; i < RACE_COUNT; i++) {
		if (a->results[i] < 0 || b->results[i] < 0) {
			fprintf(stderr, "race group %u: %s %s\n", RACE_FIRST + i, a->errors[i],
				b->errors[i]);
			continue;
		}
		one_winner += a->results[i] + b->results[i] == 1;
		wins_a += a->results[i] == 1;
		const struct geodb_group *x = &a->stored[i], *y = &b->stored[i];
		bool same = x->group_id == y->group_id && strcmp(x->site, y->site) == 0 &&
			    strcmp(x->backend, y->backend) == 0 && x->epoch == y->epoch &&
			    strcmp(x->written_by, y->written_by) == 0 &&
			    x->written_at == y->written_at;
		agree += same;
		const char *error = NULL;
		struct geodb_group now;
		const char *winner = a->results[i] == 1 ? "conf-a" : "conf-b";
		const char *winner_backend = a->results[i] == 1 ? "b2" : "b3";
		if (geodb_group_get(db, RACE_FIRST + i, &now, &error) == 1 &&
		    strcmp(now.backend, x->backend) == 0 && strcmp(now.written_by, winner) == 0 &&
		    strcmp(now.backend, winner_backend) == 0 && now.epoch == x->epoch)
			stored_ok++;
	}
	CHECK(one_winner == RACE_COUNT);
	CHECK(agree == RACE_COUNT);
	CHECK(stored_ok == RACE_COUNT);
	fprintf(stderr, "race: conf-a won %u of %u groups\n", wins_a, RACE_COUNT);
	free(a);
	free(b);
}

/* Two handles race to assign the same unassigned groups (their backend
 * was removed): exactly one wins each, both are told the same row, whose
 * epoch is the unassigned row's + 1 and whose history is kept. */
static void test_claim_race(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	CHECK_OK(geodb_backend_add(db, "dc1", "b6", "10.1.0.6", &error), error);
	unsigned assigned = 0;
	for (unsigned i = 0; i < CLAIM_COUNT; i++) {
		struct geodb_group g = make_group(CLAIM_FIRST + i, "dc1", "b6", 3);
		assigned += geodb_group_assign_if_absent(db, &g, &error) == 1;
	}
	CHECK(assigned == CLAIM_COUNT);
	unsigned unassigned = 0;
	CHECK_OK(geodb_backend_remove(db2, "b6", &unassigned, &error), error);
	CHECK(unassigned == CLAIM_COUNT);
	struct geodb_group before[CLAIM_COUNT];
	unsigned unassigned_ok = 0;
	for (unsigned i = 0; i < CLAIM_COUNT; i++) {
		unassigned_ok += geodb_group_get(db, CLAIM_FIRST + i, &before[i], &error) == 1 &&
				 before[i].backend[0] == '\0' && before[i].epoch == 4 &&
				 strcmp(history_names(&before[i]), "b6") == 0;
	}
	CHECK(unassigned_ok == CLAIM_COUNT);

	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, 2);
	struct racer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	a->db = db;
	a->backend = "b2";
	a->barrier = &barrier;
	b->db = db2;
	b->backend = "b3";
	b->barrier = &barrier;
	a->first = b->first = CLAIM_FIRST;
	a->count = b->count = CLAIM_COUNT;
	pthread_t ta, tb;
	pthread_create(&ta, NULL, race_run, a);
	pthread_create(&tb, NULL, race_run, b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&barrier);

	unsigned one_winner = 0, agree = 0, stored_ok = 0, wins_a = 0;
	for (unsigned i = 0; i < CLAIM_COUNT; i++) {
		if (a->results[i] < 0 || b->results[i] < 0) {
			fprintf(stderr, "claim race group %u: %s %s\n", CLAIM_FIRST + i,
				a->errors[i], b->errors[i]);
			continue;
		}
		one_winner += a->results[i] + b->results[i] == 1;
		wins_a += a->results[i] == 1;
		agree += same_group(&a->stored[i], &b->stored[i]);
		struct geodb_group now;
		const char *winner = a->results[i] == 1 ? "conf-a" : "conf-b";
		const char *winner_backend = a->results[i] == 1 ? "b2" : "b3";
		if (geodb_group_get(db, CLAIM_FIRST + i, &now, &error) == 1 &&
		    same_group(&now, &a->stored[i]) && now.epoch == 5 &&
		    strcmp(now.written_by, winner) == 0 &&
		    strcmp(now.backend, winner_backend) == 0 && same_history(&now, &before[i]) &&
		    now.moved_at_ms == before[i].moved_at_ms)
			stored_ok++;
	}
	CHECK(one_winner == CLAIM_COUNT);
	CHECK(agree == CLAIM_COUNT);
	CHECK(stored_ok == CLAIM_COUNT);
	fprintf(stderr, "claim race: conf-a won %u of %u groups\n", wins_a, CLAIM_COUNT);
	free(a);
	free(b);
}

/* ---- leases and health ---- */

static void test_leases_health(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_lease lease;
	int64_t now = time(NULL);
	CHECK(geodb_lease_acquire(db, "controller-dc1", "host1", 30, &lease, &error) == 1);
	CHECK_STR(lease.name, "controller-dc1");
	CHECK_STR(lease.holder, "host1");
	CHECK(lease.expires_at >= now + 29 && lease.expires_at <= now + 32);
	memset(&lease, 0, sizeof(lease));
	CHECK(geodb_lease_acquire(db2, "controller-dc1", "host2", 30, &lease, &error) == 0);
	CHECK_STR(lease.holder, "host1");
	CHECK(lease.expires_at >= now + 29 && lease.expires_at <= now + 32);
	/* renew */
	CHECK(geodb_lease_acquire(db2, "controller-dc1", "host1", 60, &lease, &error) == 1);
	CHECK_STR(lease.holder, "host1");
	CHECK(lease.expires_at >= now + 59);
	CHECK(geodb_lease_release(db, "controller-dc1", "host2", &error) == 0);
	CHECK(geodb_lease_acquire(db, "controller-dc1", "host2", 30, &lease, &error) == 0);
	CHECK(geodb_lease_release(db, "controller-dc1", "host1", &error) == 1);
	CHECK(geodb_lease_release(db, "controller-dc1", "host1", &error) == 0);
	CHECK(geodb_lease_acquire(db, "controller-dc1", "host2", 1, &lease, &error) == 1);
	CHECK_STR(lease.holder, "host2");
	CHECK(geodb_lease_acquire(db2, "controller-dc1", "host1", 30, &lease, &error) == 0);
	CHECK_STR(lease.holder, "host2");
	/* another lease is independent */
	CHECK(geodb_lease_acquire(db, "controller-dc2", "host1", 30, &lease, &error) == 1);
	CHECK(geodb_lease_acquire(db, "controller-dc3", "host3", 1, &lease, &error) == 1);

	struct geodb_health h;
	memset(&h, 0, sizeof(h));
	now = time(NULL);
	snprintf(h.backend, sizeof(h.backend), "b2");
	snprintf(h.observer, sizeof(h.observer), "proxy-b");
	h.ok = true;
	snprintf(h.detail, sizeof(h.detail), "IMAP greeting in 3 ms");
	h.observed_at = now;
	CHECK_OK(geodb_health_put(db, &h, 60, &error), error);
	snprintf(h.observer, sizeof(h.observer), "proxy-a");
	h.ok = false;
	snprintf(h.detail, sizeof(h.detail), "connection refused");
	h.observed_at = now - 100; /* stored as given */
	CHECK_OK(geodb_health_put(db2, &h, 60, &error), error);
	h.observed_at = now;
	snprintf(h.backend, sizeof(h.backend), "b3");
	h.ok = true;
	snprintf(h.detail, sizeof(h.detail), "short-lived");
	CHECK_OK(geodb_health_put(db, &h, 1, &error), error);
	/* replaces proxy-b's row for b2 */
	snprintf(h.backend, sizeof(h.backend), "b2");
	snprintf(h.observer, sizeof(h.observer), "proxy-b");
	h.ok = false;
	snprintf(h.detail, sizeof(h.detail), "timeout");
	h.since = now - 42; /* failing for 42 s */
	CHECK_OK(geodb_health_put(db, &h, 60, &error), error);

	struct geodb_health *list = NULL;
	size_t count = 0;
	CHECK_OK(geodb_health_list(db, NULL, &list, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		CHECK_STR(list[0].backend, "b2");
		CHECK_STR(list[0].observer, "proxy-a");
		CHECK(!list[0].ok);
		CHECK_STR(list[0].detail, "connection refused");
		CHECK(list[0].observed_at == now - 100);
		CHECK(list[1].observed_at == now);
		CHECK_STR(list[1].backend, "b2");
		CHECK_STR(list[1].observer, "proxy-b");
		CHECK(!list[1].ok);
		CHECK_STR(list[1].detail, "timeout");
		CHECK(list[1].since == now - 42);
		CHECK(list[0].since == 0);
		CHECK_STR(list[2].backend, "b3");
		CHECK(list[2].ok);
	}
	free(list);
	CHECK_OK(geodb_health_list(db2, "b2", &list, &count, &error), error);
	CHECK(count == 2);
	free(list);
	CHECK_OK(geodb_health_list(db2, "nosuch", &list, &count, &error), error);
	CHECK(count == 0);
	free(list);

	/* expiry: the 1-second lease and health row */
	sleep(3);
	CHECK(geodb_lease_acquire(db2, "controller-dc1", "host1", 30, &lease, &error) == 1);
	CHECK_STR(lease.holder, "host1");
	CHECK(geodb_lease_acquire(db, "controller-dc1", "host2", 30, &lease, &error) == 0);
	CHECK_STR(lease.holder, "host1");
	/* an expired lease is nobody's: releasing it does nothing */
	CHECK(geodb_lease_release(db, "controller-dc3", "host3", &error) == 0);
	CHECK(geodb_lease_acquire(db2, "controller-dc2", "host2", 30, &lease, &error) == 0);
	CHECK_STR(lease.holder, "host1");
	CHECK_OK(geodb_health_list(db, NULL, &list, &count, &error), error);
	CHECK(count == 2);
	if (count == 2)
		CHECK_STR(list[1].observer, "proxy-b");
	free(list);
	CHECK_OK(geodb_health_list(db, "b3", &list, &count, &error), error);
	CHECK(count == 0);
	free(list);
}

/* ---- snapshot ---- */

/* snap holds exactly what the list calls return */
/* ---- several sites (schema version 4) ---- */

/* groups.failover_site: part of the home cell, written with it */
static void test_failover_site(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_group g = make_group(SITES_FIRST, "dc1", "b1", 1);
	snprintf(g.failover_site, sizeof(g.failover_site), "dc2");
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	CHECK_STR(g.failover_site, "dc2");
	struct geodb_group got, stored;
	CHECK(geodb_group_get(db2, SITES_FIRST, &got, &error) == 1);
	CHECK_STR(got.failover_site, "dc2");
	CHECK(got.epoch == 1);
	/* a losing assignment gets the winner's failover site */
	struct geodb_group other = make_group(SITES_FIRST, "dc1", "b3", 1);
	snprintf(other.failover_site, sizeof(other.failover_site), "dc9");
	CHECK(geodb_group_assign_if_absent(db2, &other, &error) == 0);
	CHECK_STR(other.failover_site, "dc2");
	/* group_cas writes it (like alt_backend: epoch + 1) */
	struct geodb_group row = got;
	snprintf(row.failover_site, sizeof(row.failover_site), "dc3");
	CHECK(geodb_group_cas(db2, &row, 1, &stored, &error) == 1);
	CHECK(stored.epoch == 2);
	CHECK_STR(stored.failover_site, "dc3");
	CHECK(geodb_group_get(db, SITES_FIRST, &got, &error) == 1);
	CHECK_STR(got.failover_site, "dc3");
	CHECK(same_group(&got, &stored));
	/* a stale cas leaves it */
	snprintf(row.failover_site, sizeof(row.failover_site), "dc4");
	CHECK(geodb_group_cas(db, &row, 1, &stored, &error) == 0);
	CHECK_STR(stored.failover_site, "dc3");
	snprintf(row.failover_site, sizeof(row.failover_site), "bad site");
	int ret = geodb_group_cas(db, &row, 2, &stored, &error);
	CHECK_ERR(ret, error, "failover_site");
	/* sticky and a move within the site keep it; a move to that very
	 * site clears it (like alt_backend) */
	CHECK(geodb_group_set_sticky(db, SITES_FIRST, true, &error) == 1);
	CHECK_OK(geodb_group_set(db2, SITES_FIRST, "dc1", "b3", &error), error);
	CHECK(geodb_group_get(db, SITES_FIRST, &got, &error) == 1);
	CHECK_STR(got.failover_site, "dc3");
	CHECK(got.sticky && got.epoch == 3);
	CHECK_OK(geodb_group_set(db, SITES_FIRST, "dc3", "b31", &error), error);
	CHECK(geodb_group_get(db2, SITES_FIRST, &got, &error) == 1);
	CHECK_STR(got.failover_site, "");
	CHECK_STR(got.site, "dc3");
	/* cleared by a cas too, and listed */
	row = got;
	snprintf(row.failover_site, sizeof(row.failover_site), "dc1");
	CHECK(geodb_group_cas(db, &row, got.epoch, &stored, &error) == 1);
	struct geodb_group *groups = NULL;
	size_t count = 0;
	CHECK_OK(geodb_group_list(db2, &groups, &count, &error), error);
	bool seen = false;
	for (size_t i = 0; i < count; i++) {
		if (groups[i].group_id == SITES_FIRST) {
			seen = true;
			CHECK_STR(groups[i].failover_site, "dc1");
		}
	}
	CHECK(seen);
	free(groups);
	/* a group without one */
	g = make_group(SITES_FIRST + 1, "dc1", "b1", 1);
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	CHECK(geodb_group_get(db2, SITES_FIRST + 1, &got, &error) == 1);
	CHECK_STR(got.failover_site, "");
}

static const struct geodb_site_heartbeat *find_heartbeat(const struct geodb_site_heartbeat *rows,
							 size_t count, const char *site,
							 int64_t bucket)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(rows[i].site, site) == 0 && rows[i].bucket == bucket)
			return &rows[i];
	}
	return NULL;
}

/* A round bucket boundary, far from the real clock. */
#define BEAT_T0 1800000000000LL
#define BEAT_B0 (BEAT_T0 / GEODB_HEARTBEAT_BUCKET_MS)

static void test_heartbeats(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_site_heartbeat *rows = NULL;
	size_t count = 99;
	CHECK(GEODB_HEARTBEAT_BUCKET_MS == 10000);
	CHECK_OK(geodb_site_heartbeat_list(db, NULL, 0, BEAT_T0 * 2, &rows, &count, &error), error);
	CHECK(count == 0);
	free(rows);
	/* one bucket: the newest beat stays, whatever order they come in */
	CHECK_OK(geodb_site_heartbeat_put(db, "hb1", "d1", BEAT_T0 + 1000, &error), error);
	CHECK_OK(geodb_site_heartbeat_put(db2, "hb1", "d2", BEAT_T0 + 5000, &error), error);
	CHECK_OK(geodb_site_heartbeat_put(db, "hb1", "d1", BEAT_T0 + 3000, &error), error);
	/* the next buckets, and another site */
	CHECK_OK(geodb_site_heartbeat_put(db, "hb1", "d1", BEAT_T0 + 12000, &error), error);
	CHECK_OK(geodb_site_heartbeat_put(db, "hb1", "d1", BEAT_T0 + 19999, &error), error);
	CHECK_OK(geodb_site_heartbeat_put(db2, "hb2", "e1", BEAT_T0 + 25000, &error), error);
	CHECK_OK(geodb_site_heartbeat_put(db2, "hb0", "z1", BEAT_T0 - 1, &error), error);

	CHECK_OK(geodb_site_heartbeat_list(db2, "hb1", BEAT_T0, BEAT_T0 + 20000, &rows, &count,
					   &error),
		 error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK_STR(rows[0].site, "hb1");
		CHECK(rows[0].bucket == BEAT_B0 && rows[0].beat_ms == BEAT_T0 + 5000);
		CHECK_STR(rows[0].writer, "d2");
		CHECK(rows[1].bucket == BEAT_B0 + 1 && rows[1].beat_ms == BEAT_T0 + 19999);
		CHECK_STR(rows[1].writer, "d1");
	}
	free(rows);
	/* every site: sorted by site, then bucket */
	CHECK_OK(geodb_site_heartbeat_list(db, NULL, BEAT_T0 - 5000, BEAT_T0 + 30000, &rows, &count,
					   &error),
		 error);
	CHECK(count == 4);
	if (count == 4) {
		CHECK_STR(rows[0].site, "hb0");
		CHECK(rows[0].bucket == BEAT_B0 - 1 && rows[0].beat_ms == BEAT_T0 - 1);
		CHECK_STR(rows[1].site, "hb1");
		CHECK_STR(rows[2].site, "hb1");
		CHECK(rows[1].bucket == BEAT_B0 && rows[2].bucket == BEAT_B0 + 1);
		CHECK_STR(rows[3].site, "hb2");
		CHECK(rows[3].bucket == BEAT_B0 + 2 && rows[3].beat_ms == BEAT_T0 + 25000);
		CHECK_STR(rows[3].writer, "e1");
	}
	free(rows);
	/* the range is of buckets: a moment inside one finds it, a moment
	 * between beats of one finds none */
	CHECK_OK(geodb_site_heartbeat_list(db, NULL, BEAT_T0 + 10000, BEAT_T0 + 10000, &rows,
					   &count, &error),
		 error);
	CHECK(count == 1 && rows != NULL && find_heartbeat(rows, count, "hb1", BEAT_B0 + 1));
	free(rows);
	CHECK_OK(geodb_site_heartbeat_list(db, "hb2", BEAT_T0, BEAT_T0 + 19999, &rows, &count,
					   &error),
		 error);
	CHECK(count == 0);
	free(rows);
	CHECK_OK(geodb_site_heartbeat_list(db, "nosuchsite", 0, BEAT_T0 * 2, &rows, &count, &error),
		 error);
	CHECK(count == 0);
	free(rows);
	int ret = geodb_site_heartbeat_list(db, NULL, BEAT_T0 + 1, BEAT_T0, &rows, &count, &error);
	CHECK_ERR(ret, error, "not a range");
	ret = geodb_site_heartbeat_put(db, "hb1", "d1", 0, &error);
	CHECK_ERR(ret, error, "not positive");
	ret = geodb_site_heartbeat_put(db, "bad site", "d1", BEAT_T0, &error);
	CHECK_ERR(ret, error, "bad site");
	ret = geodb_site_heartbeat_put(db, "hb1", "", BEAT_T0, &error);
	CHECK_ERR(ret, error, "writer name");
	ret = geodb_site_heartbeat_put_ttl(db, "hb1", "d1", BEAT_T0, 0, &error);
	CHECK_ERR(ret, error, "at least one second");
}

static void test_reachability(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_site_reachability r;
	memset(&r, 0, sizeof(r));
	snprintf(r.observer_site, sizeof(r.observer_site), "dc1");
	snprintf(r.target_site, sizeof(r.target_site), "dc2");
	r.reachable = false;
	r.since_ms = 1700000000100;
	r.observed_ms = 1700000000200;
	CHECK_OK(geodb_site_reachability_put(db, &r, 60, &error), error);
	snprintf(r.target_site, sizeof(r.target_site), "dc3");
	r.reachable = true;
	CHECK_OK(geodb_site_reachability_put(db, &r, 60, &error), error);
	snprintf(r.observer_site, sizeof(r.observer_site), "dc2");
	snprintf(r.target_site, sizeof(r.target_site), "dc1");
	CHECK_OK(geodb_site_reachability_put(db2, &r, 60, &error), error);
	struct geodb_site_reachability *rows = NULL;
	size_t count = 0;
	CHECK_OK(geodb_site_reachability_list(db2, NULL, &rows, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		CHECK_STR(rows[0].observer_site, "dc1");
		CHECK_STR(rows[0].target_site, "dc2");
		CHECK(!rows[0].reachable && rows[0].since_ms == 1700000000100 &&
		      rows[0].observed_ms == 1700000000200);
		CHECK_STR(rows[0].written_by, "conf-a");
		CHECK_STR(rows[1].target_site, "dc3");
		CHECK(rows[1].reachable);
		CHECK_STR(rows[2].observer_site, "dc2");
		CHECK_STR(rows[2].written_by, "conf-b");
	}
	free(rows);
	/* a put replaces the pair's row */
	snprintf(r.observer_site, sizeof(r.observer_site), "dc1");
	snprintf(r.target_site, sizeof(r.target_site), "dc2");
	r.reachable = true;
	r.since_ms = 1700000000300;
	r.observed_ms = 1700000000400;
	CHECK_OK(geodb_site_reachability_put(db2, &r, 60, &error), error);
	CHECK_OK(geodb_site_reachability_list(db, "dc1", &rows, &count, &error), error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK_STR(rows[0].target_site, "dc2");
		CHECK(rows[0].reachable && rows[0].since_ms == 1700000000300 &&
		      rows[0].observed_ms == 1700000000400);
		CHECK_STR(rows[0].written_by, "conf-b");
		CHECK_STR(rows[1].target_site, "dc3");
	}
	free(rows);
	int ret = geodb_site_reachability_put(db, &r, 0, &error);
	CHECK_ERR(ret, error, "at least one second");
	r.observer_site[0] = '\0';
	ret = geodb_site_reachability_put(db, &r, 60, &error);
	CHECK_ERR(ret, error, "observer site");
}

/* What expires: heartbeats and reachability put with a TTL of 2 s (both
 * drivers count whole seconds: 1 s may be gone before the first read). */
static void test_site_expiry(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	CHECK_OK(geodb_site_heartbeat_put_ttl(db, "hbx", "x1", BEAT_T0 + 1000, 2, &error), error);
	struct geodb_site_reachability r;
	memset(&r, 0, sizeof(r));
	snprintf(r.observer_site, sizeof(r.observer_site), "dcx");
	snprintf(r.target_site, sizeof(r.target_site), "dc1");
	r.reachable = true;
	CHECK_OK(geodb_site_reachability_put(db, &r, 2, &error), error);
	struct geodb_site_heartbeat *beats = NULL;
	struct geodb_site_reachability *rows = NULL;
	size_t count = 0;
	CHECK_OK(geodb_site_heartbeat_list(db2, "hbx", BEAT_T0, BEAT_T0 + 1000, &beats, &count,
					   &error),
		 error);
	CHECK(count == 1);
	free(beats);
	CHECK_OK(geodb_site_reachability_list(db2, "dcx", &rows, &count, &error), error);
	CHECK(count == 1);
	free(rows);
	sleep(3);
	CHECK_OK(geodb_site_heartbeat_list(db2, "hbx", BEAT_T0, BEAT_T0 + 1000, &beats, &count,
					   &error),
		 error);
	CHECK(count == 0);
	free(beats);
	CHECK_OK(geodb_site_reachability_list(db2, "dcx", &rows, &count, &error), error);
	CHECK(count == 0);
	free(rows);
	/* the others (60 s, 7 days) are still there */
	CHECK_OK(geodb_site_reachability_list(db2, NULL, &rows, &count, &error), error);
	CHECK(count == 3);
	free(rows);
	CHECK_OK(geodb_site_heartbeat_list(db2, NULL, 0, BEAT_T0 * 2, &beats, &count, &error),
		 error);
	CHECK(count == 4);
	free(beats);
}

static struct geodb_group_failover make_failover(unsigned group_id, const char *writer_site,
						 const char *target_backend, const char *reason,
						 uint64_t home_epoch)
{
	struct geodb_group_failover cell;
	memset(&cell, 0, sizeof(cell));
	cell.group_id = group_id;
	snprintf(cell.writer_site, sizeof(cell.writer_site), "%s", writer_site);
	snprintf(cell.target_site, sizeof(cell.target_site), "%s", writer_site);
	snprintf(cell.target_backend, sizeof(cell.target_backend), "%s", target_backend);
	snprintf(cell.reason, sizeof(cell.reason), "%s", reason);
	cell.written_at_ms = 1700000000000 + group_id;
	cell.home_epoch = home_epoch;
	return cell;
}

static bool same_failover(const struct geodb_group_failover *x,
			  const struct geodb_group_failover *y)
{
	return x->group_id == y->group_id && strcmp(x->writer_site, y->writer_site) == 0 &&
	       strcmp(x->target_site, y->target_site) == 0 &&
	       strcmp(x->target_backend, y->target_backend) == 0 &&
	       strcmp(x->reason, y->reason) == 0 && x->written_at_ms == y->written_at_ms &&
	       x->home_epoch == y->home_epoch && strcmp(x->written_by, y->written_by) == 0;
}

static void test_failover_cells(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_group_failover cell, stored, got;
	unsigned id = SITES_FIRST + 10;
	CHECK(geodb_group_failover_get(db, id, &got, &error) == 0);
	cell = make_failover(id, "dc2", "b21", GEODB_FAILOVER_REASON_OUTAGE, 5);
	CHECK(geodb_group_failover_put_if(db, &cell, &stored, &error) == 1);
	CHECK_STR(stored.written_by, "conf-a");
	CHECK(stored.written_at_ms == cell.written_at_ms);
	CHECK(geodb_group_failover_get(db2, id, &got, &error) == 1);
	CHECK(same_failover(&got, &stored));
	CHECK_STR(got.target_site, "dc2");
	CHECK_STR(got.target_backend, "b21");
	CHECK_STR(got.reason, "outage");
	CHECK(got.home_epoch == 5);
	/* another site is refused and told whose cell it is */
	struct geodb_group_failover theirs =
		make_failover(id, "dc3", "b31", GEODB_FAILOVER_REASON_EVACUATE, 6);
	memset(&stored, 0, sizeof(stored));
	CHECK(geodb_group_failover_put_if(db2, &theirs, &stored, &error) == 0);
	CHECK(same_failover(&stored, &got));
	CHECK(geodb_group_failover_get(db, id, &got, &error) == 1);
	CHECK_STR(got.writer_site, "dc2");
	CHECK_STR(got.target_backend, "b21");
	/* the same site (another daemon of it) rewrites its cell */
	cell = make_failover(id, "dc2", "b22", GEODB_FAILOVER_REASON_FORCE, 7);
	cell.written_at_ms = 0; /* now */
	int64_t before = unix_ms();
	CHECK(geodb_group_failover_put_if(db2, &cell, &stored, &error) == 1);
	int64_t after = unix_ms();
	CHECK(geodb_group_failover_get(db, id, &got, &error) == 1);
	CHECK(same_failover(&got, &stored));
	CHECK_STR(got.target_backend, "b22");
	CHECK_STR(got.reason, "force");
	CHECK(got.home_epoch == 7);
	CHECK_STR(got.written_by, "conf-b");
	CHECK(got.written_at_ms >= before && got.written_at_ms <= after);
	/* release: only by its writer site */
	CHECK(geodb_group_failover_release(db, id, "dc3", &error) == 0);
	CHECK(geodb_group_failover_get(db2, id, &got, &error) == 1);
	CHECK(geodb_group_failover_release(db2, id, "dc2", &error) == 1);
	CHECK(geodb_group_failover_get(db, id, &got, &error) == 0);
	CHECK(geodb_group_failover_release(db, id, "dc2", &error) == 0);
	CHECK(geodb_group_failover_release(db, id + 1, "dc2", &error) == 0);
	/* released: another site may write it now */
	CHECK(geodb_group_failover_put_if(db2, &theirs, &stored, &error) == 1);
	CHECK(geodb_group_failover_get(db, id, &got, &error) == 1);
	CHECK_STR(got.writer_site, "dc3");
	CHECK_STR(got.reason, "evacuate");
	/* the plain put replaces whatever is there */
	cell = make_failover(id, "dc2", "b23", GEODB_FAILOVER_REASON_OUTAGE, 8);
	CHECK_OK(geodb_group_failover_put(db, &cell, &error), error);
	CHECK(geodb_group_failover_get(db2, id, &got, &error) == 1);
	CHECK_STR(got.writer_site, "dc2");
	CHECK_STR(got.target_backend, "b23");
	CHECK_STR(got.written_by, "conf-a");
	CHECK(got.home_epoch == 8);
	/* what is refused */
	cell = make_failover(id, "dc2", "b23", "flood", 8);
	int ret = geodb_group_failover_put(db, &cell, &error);
	CHECK_ERR(ret, error, "flood");
	ret = geodb_group_failover_put_if(db, &cell, &stored, &error);
	CHECK_ERR(ret, error, "flood");
	cell = make_failover(id, "dc 2", "b23", GEODB_FAILOVER_REASON_OUTAGE, 8);
	ret = geodb_group_failover_put(db, &cell, &error);
	CHECK_ERR(ret, error, "writer_site");
	cell = make_failover(id, "dc2", "", GEODB_FAILOVER_REASON_OUTAGE, 8);
	ret = geodb_group_failover_put(db, &cell, &error);
	CHECK_ERR(ret, error, "target_backend");
	cell = make_failover(id, "dc2", "b23", GEODB_FAILOVER_REASON_OUTAGE, 8);
	cell.written_at_ms = -1;
	ret = geodb_group_failover_put(db, &cell, &error);
	CHECK_ERR(ret, error, "negative");
	ret = geodb_group_failover_release(db, id, "", &error);
	CHECK_ERR(ret, error, "writer_site");
	CHECK(geodb_group_failover_get(db2, id, &got, &error) == 1);
	CHECK_STR(got.target_backend, "b23");

	/* more cells than a page: listed whole and in order; every other one
	 * refused to another site */
	for (unsigned i = 0; i < FAILOVER_MANY; i++) {
		cell = make_failover(SITES_FIRST + 100 + i, i % 2 == 0 ? "dc2" : "dc3", "b21",
				     GEODB_FAILOVER_REASON_OUTAGE, i);
		CHECK(geodb_group_failover_put_if(i % 3 == 0 ? db : db2, &cell, &stored, &error) ==
		      1);
	}
	unsigned refused = 0;
	for (unsigned i = 0; i < FAILOVER_MANY; i += 2) {
		cell = make_failover(SITES_FIRST + 100 + i, "dc3", "b31",
				     GEODB_FAILOVER_REASON_OUTAGE, 99);
		refused += geodb_group_failover_put_if(db, &cell, &stored, &error) == 0 &&
			   strcmp(stored.writer_site, "dc2") == 0 && stored.home_epoch == i;
	}
	CHECK(refused == (FAILOVER_MANY + 1) / 2);
	struct geodb_group_failover *cells = NULL;
	size_t count = 0;
	CHECK_OK(geodb_group_failover_list(db2, &cells, &count, &error), error);
	CHECK(count == FAILOVER_MANY + 1);
	bool sorted = true, right = count == FAILOVER_MANY + 1;
	for (size_t i = 1; i < count; i++)
		sorted = sorted && cells[i - 1].group_id < cells[i].group_id;
	for (size_t i = 1; right && i < count; i++) {
		unsigned n = (unsigned)i - 1;
		right = cells[i].group_id == SITES_FIRST + 100 + n &&
			strcmp(cells[i].writer_site, n % 2 == 0 ? "dc2" : "dc3") == 0 &&
			cells[i].home_epoch == n &&
			strcmp(cells[i].written_by, n % 3 == 0 ? "conf-a" : "conf-b") == 0;
	}
	CHECK(sorted);
	CHECK(right);
	if (count > 0)
		CHECK(cells[0].group_id == id);
	free(cells);
}

static void test_force_moves(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	struct geodb_site_force_move move;
	memset(&move, 0, sizeof(move));
	snprintf(move.site, sizeof(move.site), "dc1");
	move.id = 1;
	move.percent = 10;
	snprintf(move.destinations, sizeof(move.destinations), "dc2,dc3");
	int64_t before = unix_ms();
	CHECK_OK(geodb_site_force_move_start(db, &move, &error), error);
	int64_t after = unix_ms();
	move.id = 2;
	move.percent = 50;
	move.started_ms = 1700000000000;
	snprintf(move.destinations, sizeof(move.destinations), "dc2");
	CHECK_OK(geodb_site_force_move_start(db2, &move, &error), error);
	snprintf(move.site, sizeof(move.site), "dc2");
	move.id = 7;
	move.percent = 100;
	snprintf(move.destinations, sizeof(move.destinations), "dc1");
	CHECK_OK(geodb_site_force_move_start(db, &move, &error), error);
	struct geodb_site_force_move *moves = NULL;
	size_t count = 0;
	CHECK_OK(geodb_site_force_move_list(db2, NULL, &moves, &count, &error), error);
	CHECK(count == 3);
	if (count == 3) {
		CHECK_STR(moves[0].site, "dc1");
		CHECK(moves[0].id == 1 && moves[0].percent == 10);
		CHECK_STR(moves[0].destinations, "dc2,dc3");
		CHECK(moves[0].started_ms >= before && moves[0].started_ms <= after);
		CHECK_STR(moves[0].written_by, "conf-a");
		CHECK(moves[1].id == 2 && moves[1].percent == 50 &&
		      moves[1].started_ms == 1700000000000);
		CHECK_STR(moves[1].written_by, "conf-b");
		CHECK_STR(moves[2].site, "dc2");
		CHECK(moves[2].id == 7 && moves[2].percent == 100);
	}
	free(moves);
	/* a start of the same (site, id) replaces it */
	snprintf(move.site, sizeof(move.site), "dc1");
	move.id = 1;
	move.percent = 30;
	move.started_ms = 1700000000001;
	snprintf(move.destinations, sizeof(move.destinations), "dc3");
	CHECK_OK(geodb_site_force_move_start(db2, &move, &error), error);
	CHECK_OK(geodb_site_force_move_list(db, "dc1", &moves, &count, &error), error);
	CHECK(count == 2);
	if (count == 2) {
		CHECK(moves[0].id == 1 && moves[0].percent == 30 &&
		      moves[0].started_ms == 1700000000001);
		CHECK_STR(moves[0].destinations, "dc3");
		CHECK_STR(moves[0].written_by, "conf-b");
		CHECK(moves[1].id == 2);
	}
	free(moves);
	/* what is refused */
	move.percent = 101;
	int ret = geodb_site_force_move_start(db, &move, &error);
	CHECK_ERR(ret, error, "out of range");
	move.percent = 0;
	snprintf(move.destinations, sizeof(move.destinations), "dc2,dc1");
	ret = geodb_site_force_move_start(db, &move, &error);
	CHECK_ERR(ret, error, "its own site");
	snprintf(move.destinations, sizeof(move.destinations), "dc2,dc3,dc2");
	ret = geodb_site_force_move_start(db, &move, &error);
	CHECK_ERR(ret, error, "given twice");
	snprintf(move.destinations, sizeof(move.destinations), "dc2,,dc3");
	ret = geodb_site_force_move_start(db, &move, &error);
	CHECK_ERR(ret, error, "not a valid site name");
	move.destinations[0] = '\0';
	ret = geodb_site_force_move_start(db, &move, &error);
	CHECK_ERR(ret, error, "destination");
	snprintf(move.destinations, sizeof(move.destinations), "dc2");
	move.id = 0;
	ret = geodb_site_force_move_start(db, &move, &error);
	CHECK_ERR(ret, error, "not positive");
	/* stop one, then the rest of the site */
	unsigned stopped = 99;
	CHECK_OK(geodb_site_force_move_stop(db, "dc1", 2, &stopped, &error), error);
	CHECK(stopped == 1);
	CHECK_OK(geodb_site_force_move_stop(db2, "dc1", 2, &stopped, &error), error);
	CHECK(stopped == 0);
	CHECK_OK(geodb_site_force_move_list(db, NULL, &moves, &count, &error), error);
	CHECK(count == 2);
	free(moves);
	/* dc1/5 and dc2/7 stay for the snapshot (test_snapshot()) */
	move.id = 5;
	move.percent = 0;
	CHECK_OK(geodb_site_force_move_start(db, &move, &error), error);
	CHECK_OK(geodb_site_force_move_stop(db2, "dc1", 1, &stopped, &error), error);
	CHECK(stopped == 1);
	move.id = 6;
	CHECK_OK(geodb_site_force_move_start(db, &move, &error), error);
	CHECK_OK(geodb_site_force_move_stop(db2, "dc3", 0, &stopped, &error), error);
	CHECK(stopped == 0);
	snprintf(move.site, sizeof(move.site), "dc4");
	move.id = 1;
	CHECK_OK(geodb_site_force_move_start(db, &move, &error), error);
	CHECK_OK(geodb_site_force_move_stop(db2, "dc4", 0, &stopped, &error), error);
	CHECK(stopped == 1);
	CHECK_OK(geodb_site_force_move_list(db, NULL, &moves, &count, &error), error);
	CHECK(count == 3);
	if (count == 3)
		CHECK(strcmp(moves[0].site, "dc1") == 0 && moves[0].id == 5 && moves[1].id == 6 &&
		      strcmp(moves[2].site, "dc2") == 0 && moves[2].id == 7 &&
		      moves[0].percent == 0);
	free(moves);
	CHECK_OK(geodb_site_force_move_stop(db2, "dc1", 6, &stopped, &error), error);
	CHECK(stopped == 1);
}

static void test_snapshot_heartbeats(struct geodb *db, struct geodb *db2);

static void test_sites_v4(struct geodb *db, struct geodb *db2)
{
	test_failover_site(db, db2);
	test_heartbeats(db, db2);
	test_reachability(db, db2);
	test_site_expiry(db, db2);
	/* while no other test's failover cells stand */
	test_snapshot_heartbeats(db, db2);
	test_failover_cells(db, db2);
	test_force_moves(db, db2);
}

/* The snapshot's failover cells and force moves are the lists'. */
static void check_snapshot_sites(struct geodb *db, const struct geodb_snapshot *snap)
{
	const char *error = NULL;
	struct geodb_group_failover *cells = NULL;
	size_t count = 0;
	CHECK_OK(geodb_group_failover_list(db, &cells, &count, &error), error);
	CHECK(snap->failover_count == count && count == FAILOVER_MANY + 1);
	unsigned same = 0;
	for (size_t i = 0; i < count && i < snap->failover_count; i++)
		same += same_failover(&snap->failovers[i], &cells[i]);
	CHECK(same == count);
	free(cells);
	struct geodb_site_force_move *moves = NULL;
	CHECK_OK(geodb_site_force_move_list(db, NULL, &moves, &count, &error), error);
	CHECK(snap->force_move_count == count && count == 2);
	same = 0;
	for (size_t i = 0; i < count && i < snap->force_move_count; i++)
		same += strcmp(snap->force_moves[i].site, moves[i].site) == 0 &&
			snap->force_moves[i].id == moves[i].id &&
			snap->force_moves[i].percent == moves[i].percent &&
			strcmp(snap->force_moves[i].destinations, moves[i].destinations) == 0 &&
			snap->force_moves[i].started_ms == moves[i].started_ms &&
			strcmp(snap->force_moves[i].written_by, moves[i].written_by) == 0;
	CHECK(same == count);
	free(moves);
	/* heartbeat rows there are (test_heartbeats()), but none of these
	 * cells' groups has a row: no home site, nothing to read for them */
	CHECK(snap->heartbeat_count == 0);
	/* the failover site of a group (test_failover_site()) */
	bool seen = false;
	for (size_t i = 0; i < snap->group_row_count; i++) {
		if (snap->groups[i].group_id == SITES_FIRST) {
			seen = true;
			CHECK_STR(snap->groups[i].failover_site, "dc1");
		}
	}
	CHECK(seen);
}

static void check_snapshot(struct geodb *db, const struct geodb_snapshot *snap)
{
	const char *error = NULL;
	CHECK(snap->schema_version == GEODB_SCHEMA_VERSION);
	CHECK(snap->group_count == GROUP_COUNT);

	struct geodb_site *sites = NULL;
	size_t count = 0;
	CHECK_OK(geodb_site_list(db, &sites, &count, &error), error);
	CHECK(snap->site_count == count && count == 2);
	for (size_t i = 0; i < count && i < snap->site_count; i++) {
		CHECK_STR(snap->sites[i].name, sites[i].name);
		CHECK(snap->sites[i].status == sites[i].status);
		CHECK_STR(snap->sites[i].tags, sites[i].tags);
		CHECK_STR(snap->sites[i].load_balancer, sites[i].load_balancer);
	}
	free(sites);

	struct geodb_backend *backends = NULL;
	CHECK_OK(geodb_backend_list(db, NULL, &backends, &count, &error), error);
	CHECK(snap->backend_count == count && count == 2);
	for (size_t i = 0; i < count && i < snap->backend_count; i++) {
		CHECK_STR(snap->backends[i].name, backends[i].name);
		CHECK_STR(snap->backends[i].site, backends[i].site);
		CHECK_STR(snap->backends[i].address, backends[i].address);
		CHECK(snap->backends[i].status == backends[i].status);
		CHECK(snap->backends[i].load_factor == backends[i].load_factor);
		CHECK(snap->backends[i].mark == backends[i].mark);
		CHECK(snap->backends[i].mark_since == backends[i].mark_since);
		CHECK_STR(snap->backends[i].mark_reason, backends[i].mark_reason);
	}
	free(backends);
	/* test_marks() left b3 marked down */
	if (snap->backend_count == 2) {
		CHECK_STR(snap->backends[1].name, "b3");
		CHECK(snap->backends[1].mark == HEALTH_MARK_DOWN);
		CHECK_STR(snap->backends[1].mark_reason, "b3 failing");
		CHECK(snap->backends[0].mark == HEALTH_MARK_UP);
	}

	struct geodb_group *groups = NULL;
	CHECK_OK(geodb_group_list(db, &groups, &count, &error), error);
	CHECK(snap->group_row_count == count);
	CHECK(count > MANY_COUNT / 2);
	unsigned same = 0;
	for (size_t i = 0; i < count && i < snap->group_row_count; i++)
		same += same_group(&snap->groups[i], &groups[i]);
	CHECK(same == count);
	bool sorted = true;
	for (size_t i = 1; i < snap->group_row_count; i++)
		sorted = sorted && snap->groups[i - 1].group_id < snap->groups[i].group_id;
	CHECK(sorted);
	free(groups);
	/* the alternative and the move of a group (test_remove_references()) */
	bool seen = false;
	for (size_t i = 0; i < snap->group_row_count; i++) {
		const struct geodb_group *g = &snap->groups[i];
		if (g->group_id != REMOVE_FIRST + 3)
			continue;
		seen = true;
		CHECK_STR(g->alt_backend, "b3");
		CHECK_STR(g->move_to, "b3");
		CHECK(g->move_started_ms == 12345);
		CHECK_STR(g->move_reason, "to b3");
	}
	CHECK(seen);
	/* the balancing fields (test_group_balance()) */
	seen = false;
	for (size_t i = 0; i < snap->group_row_count; i++) {
		const struct geodb_group *g = &snap->groups[i];
		if (g->group_id != BALANCE_FIRST)
			continue;
		seen = true;
		CHECK(g->sticky);
		CHECK_STR(g->backend, "h2");
		CHECK_STR(history_names(g), "h5,h1,h6,h4");
		CHECK(g->moved_at_ms > 0 && g->moved_at_ms == g->history[0].left_ms);
		CHECK(history_times_ok(g));
	}
	CHECK(seen);

	struct geodb_user *users = NULL;
	CHECK_OK(geodb_user_list(db, &users, &count, &error), error);
	CHECK(snap->user_count == count && count == 2);
	for (size_t i = 0; i < count && i < snap->user_count; i++) {
		CHECK_STR(snap->users[i].username, users[i].username);
		CHECK(snap->users[i].group_id == users[i].group_id);
		CHECK_STR(snap->users[i].written_by, users[i].written_by);
		CHECK(snap->users[i].written_at == users[i].written_at);
		CHECK(snap->users[i].hold_until_ms == users[i].hold_until_ms);
	}
	free(users);
	/* bob's login hold (test_users()) */
	if (snap->user_count == 2) {
		CHECK_STR(snap->users[1].username, "bob");
		CHECK(snap->users[1].group_id == 4);
		CHECK(snap->users[1].hold_until_ms == 1700000000789);
		CHECK(snap->users[0].hold_until_ms == 0);
	}
	check_snapshot_sites(db, snap);
}

/* SQLite only: snap stored into a fresh LocalDB file named by suffix
 * (geodb_snapshot_store()) and read back into *back_r; with twice, what was
 * read is stored over it once more and read again.  path_r: the file, for
 * remove_sqlite_file(). */
static void store_and_read_back(const struct geodb_snapshot *snap, const char *suffix, bool twice,
				char *path_r, size_t path_size, struct geodb_snapshot *back_r)
{
	const char *error = NULL;
	char local_spec[4300];
	snprintf(path_r, path_size, "%s%s", spec + 7, suffix);
	snprintf(local_spec, sizeof(local_spec), "sqlite:%s", path_r);
	unlink(path_r);
	struct geodb *local = NULL;
	memset(back_r, 0, sizeof(*back_r));
	CHECK_OK(geodb_open(local_spec, "localdb", 1000, &local, &error), error);
	if (local == NULL)
		return;
	CHECK_OK(geodb_snapshot_store(local, snap, &error), error);
	CHECK_OK(geodb_snapshot_read(local, back_r, &error), error);
	if (twice) {
		CHECK_OK(geodb_snapshot_store(local, back_r, &error), error);
		geodb_snapshot_free(back_r);
		memset(back_r, 0, sizeof(*back_r));
		CHECK_OK(geodb_snapshot_read(local, back_r, &error), error);
	}
	geodb_close(&local);
}

static void test_snapshot(struct geodb *db)
{
	const char *error = NULL;
	struct geodb_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	CHECK_OK(geodb_snapshot_read(db, &snap, &error), error);
	check_snapshot(db, &snap);
	if (!is_cassandra) {
		/* the LocalDB file (geodb_snapshot_store()) keeps the failover
		 * cells, the force moves and the groups' failover sites */
		char path[4200];
		struct geodb_snapshot back;
		store_and_read_back(&snap, "-local", false, path, sizeof(path), &back);
		CHECK(back.failover_count == snap.failover_count && back.failover_count > 0);
		unsigned same = 0;
		for (size_t i = 0; i < back.failover_count && i < snap.failover_count; i++)
			same += same_failover(&back.failovers[i], &snap.failovers[i]);
		CHECK(same == snap.failover_count);
		CHECK(back.force_move_count == snap.force_move_count && back.force_move_count == 2);
		if (back.force_move_count == 2)
			CHECK(back.force_moves[1].id == snap.force_moves[1].id &&
			      strcmp(back.force_moves[1].destinations,
				     snap.force_moves[1].destinations) == 0);
		same = 0;
		for (size_t i = 0; i < back.group_row_count && i < snap.group_row_count; i++)
			same += strcmp(back.groups[i].failover_site,
				       snap.groups[i].failover_site) == 0;
		CHECK(back.group_row_count == snap.group_row_count && same == snap.group_row_count);
		geodb_snapshot_free(&back);
		remove_sqlite_file(path);
	}
	geodb_snapshot_free(&snap);
}

/* ---- asynchronous calls ---- */

struct async_state {
	struct event_base *base;
	unsigned calls;
	struct geodb_snapshot *snap;
	char error[512];
	int result;
	struct geodb_group stored;
	bool has_stored;
	unsigned cancelled_calls;
	struct geodb_lease lease;
	bool has_lease;
};

static void on_snapshot(void *context, struct geodb_snapshot *snap, const char *error)
{
	struct async_state *st = context;
	st->calls++;
	st->snap = snap;
	snprintf(st->error, sizeof(st->error), "%s", error != NULL ? error : "");
	event_base_loopbreak(st->base);
}

static void on_assign(void *context, int result, const struct geodb_group *stored,
		      const char *error)
{
	struct async_state *st = context;
	st->calls++;
	st->result = result;
	st->has_stored = stored != NULL;
	if (stored != NULL)
		st->stored = *stored;
	snprintf(st->error, sizeof(st->error), "%s", error != NULL ? error : "");
	event_base_loopbreak(st->base);
}

static void on_done(void *context, const char *error)
{
	struct async_state *st = context;
	st->calls++;
	snprintf(st->error, sizeof(st->error), "%s", error != NULL ? error : "");
	event_base_loopbreak(st->base);
}

static void on_lease(void *context, int result, const struct geodb_lease *lease, const char *error)
{
	struct async_state *st = context;
	st->calls++;
	st->result = result;
	st->has_lease = lease != NULL;
	if (lease != NULL)
		st->lease = *lease;
	snprintf(st->error, sizeof(st->error), "%s", error != NULL ? error : "");
	event_base_loopbreak(st->base);
}

static void on_cancelled(void *context, int result, const struct geodb_group *stored,
			 const char *error)
{
	struct async_state *st = context;
	st->cancelled_calls++;
}

static void on_timeout(evutil_socket_t fd, short what, void *context)
{
	event_base_loopbreak(context);
}

/* Runs base until a callback breaks the loop, or seconds pass. */
static void dispatch(struct event_base *base, unsigned seconds)
{
	struct event *timer = evtimer_new(base, on_timeout, base);
	struct timeval tv = {(time_t)seconds, 0};
	evtimer_add(timer, &tv);
	event_base_dispatch(base);
	event_free(timer);
}

/* ---- the snapshot's heartbeat rows ---- */

/* Heartbeats of the snapshot's home sites, far from test_heartbeats()'s. */
#define SNAPHB_T0 1800001000000LL
#define SNAPHB_B0 (SNAPHB_T0 / GEODB_HEARTBEAT_BUCKET_MS)

/* snap's heartbeat rows as "site@bucket-SNAPHB_B0,...", in their order. */
static const char *heartbeat_names(const struct geodb_snapshot *snap)
{
	static char names[4096];
	size_t len = 0;
	names[0] = '\0';
	for (size_t i = 0; i < snap->heartbeat_count && len < sizeof(names); i++)
		len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s@%lld",
					i > 0 ? "," : "", snap->heartbeats[i].site,
					(long long)(snap->heartbeats[i].bucket - SNAPHB_B0));
	return names;
}

static void put_snaphb_beat(struct geodb *db, const char *site, int64_t bucket_offset)
{
	const char *error = NULL;
	int64_t ms = (SNAPHB_B0 + bucket_offset) * GEODB_HEARTBEAT_BUCKET_MS + 4321;
	CHECK_OK(geodb_site_heartbeat_put(db, site, "hbw", ms, &error), error);
}

static void put_snaphb_cell(struct geodb *db, unsigned group_id, int64_t written_at_ms)
{
	const char *error = NULL;
	struct geodb_group_failover cell =
		make_failover(group_id, "dc2", "b21", GEODB_FAILOVER_REASON_OUTAGE, 1);
	cell.written_at_ms = written_at_ms;
	CHECK_OK(geodb_group_failover_put(db, &cell, &error), error);
}

static void read_snapshot(struct geodb *db, struct geodb_snapshot *snap)
{
	const char *error = NULL;
	memset(snap, 0, sizeof(*snap));
	CHECK_OK(geodb_snapshot_read(db, snap, &error), error);
}

/* The snapshot of a handle of its own, read asynchronously. */
static const char *async_heartbeat_names(void)
{
	static char names[4096];
	const char *error = NULL;
	struct async_state st;
	memset(&st, 0, sizeof(st));
	st.base = event_base_new();
	struct geodb *db3 = open_db("conf-hb");
	CHECK_OK(geodb_attach(db3, st.base, &error), error);
	struct geodb_op *op = geodb_snapshot_read_async(db3, on_snapshot, &st);
	CHECK(op != NULL);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.snap != NULL);
	snprintf(names, sizeof(names), "async error: %s", st.error);
	if (st.snap != NULL) {
		snprintf(names, sizeof(names), "%s", heartbeat_names(st.snap));
		geodb_snapshot_free(st.snap);
		free(st.snap);
	}
	geodb_close(&db3);
	event_base_free(st.base);
	return names;
}

/* What a snapshot carries of the heartbeats (struct geodb_snapshot): for
 * each failover cell, its group's home site's rows of the cell's bucket and
 * the one before, where they exist; nothing of other buckets or of sites
 * that are no cell's home; each row once; sorted by site, then bucket.  Runs
 * while no other test's cells stand, and releases its own. */
static void test_snapshot_heartbeats(struct geodb *db, struct geodb *db2)
{
	const char *error = NULL;
	const int64_t b0_ms = SNAPHB_B0 * GEODB_HEARTBEAT_BUCKET_MS;
	struct geodb_snapshot snap;
	/* home sites: hs1 of groups +0, +1, +2, hs2 of +3; +4 has no row; hs3
	 * beats in the buckets hs1's cells need but is nobody's home */
	static const char *const homes[] = {"hs1", "hs1", "hs1", "hs2"};
	for (unsigned i = 0; i < 4; i++) {
		struct geodb_group g = make_group(SNAPHB_FIRST + i, homes[i], "b1", 1);
		CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	}
	for (int64_t b = -3; b <= 2; b++)
		put_snaphb_beat(db, "hs1", b);
	put_snaphb_beat(db, "hs1", 8);
	put_snaphb_beat(db2, "hs2", 19);
	put_snaphb_beat(db2, "hs2", 21);
	for (int64_t b = -1; b <= 1; b++)
		put_snaphb_beat(db2, "hs3", b);

	/* no cells: no rows, though there are heartbeats */
	read_snapshot(db2, &snap);
	CHECK(snap.failover_count == 0 && snap.heartbeat_count == 0);
	geodb_snapshot_free(&snap);
	/* a cell whose group has no row: nothing for it */
	put_snaphb_cell(db, SNAPHB_FIRST + 4, b0_ms + 500);
	read_snapshot(db2, &snap);
	CHECK(snap.failover_count == 1 && snap.heartbeat_count == 0);
	geodb_snapshot_free(&snap);
	/* a cell in bucket B0: hs1's B0 - 1 and B0, not B0 - 2 or B0 + 1, not
	 * hs3's */
	put_snaphb_cell(db, SNAPHB_FIRST + 0, b0_ms + 500);
	read_snapshot(db2, &snap);
	CHECK_STR(heartbeat_names(&snap), "hs1@-1,hs1@0");
	if (snap.heartbeat_count == 2) {
		CHECK(snap.heartbeats[1].beat_ms == b0_ms + 4321);
		CHECK_STR(snap.heartbeats[1].writer, "hbw");
	}
	geodb_snapshot_free(&snap);
	/* one in the next bucket (B0 once), one whose buckets have no rows
	 * (hs1's B0 + 8 is not B0 + 9 or B0 + 10), hs2's where one of the two
	 * exists (B0 + 19; B0 + 21 is not needed) */
	put_snaphb_cell(db2, SNAPHB_FIRST + 1, b0_ms + GEODB_HEARTBEAT_BUCKET_MS + 9999);
	put_snaphb_cell(db2, SNAPHB_FIRST + 2, b0_ms + 10 * GEODB_HEARTBEAT_BUCKET_MS);
	put_snaphb_cell(db2, SNAPHB_FIRST + 3, b0_ms + 20 * GEODB_HEARTBEAT_BUCKET_MS + 1);
	read_snapshot(db, &snap);
	CHECK(snap.failover_count == 5);
	CHECK_STR(heartbeat_names(&snap), "hs1@-1,hs1@0,hs1@1,hs2@19");
	/* the same asynchronously */
	CHECK_STR(async_heartbeat_names(), "hs1@-1,hs1@0,hs1@1,hs2@19");
	if (!is_cassandra) {
		/* the LocalDB file keeps them: stored, read back, and stored
		 * again over itself: replaced, not added */
		char path[4200];
		struct geodb_snapshot back;
		store_and_read_back(&snap, "-localhb", true, path, sizeof(path), &back);
		CHECK_STR(heartbeat_names(&back), "hs1@-1,hs1@0,hs1@1,hs2@19");
		unsigned same = 0;
		for (size_t i = 0; i < back.heartbeat_count && i < snap.heartbeat_count; i++)
			same += back.heartbeats[i].beat_ms == snap.heartbeats[i].beat_ms &&
				strcmp(back.heartbeats[i].writer, snap.heartbeats[i].writer) == 0;
		CHECK(same == snap.heartbeat_count && same == 4);
		geodb_snapshot_free(&back);
		remove_sqlite_file(path);
	}
	geodb_snapshot_free(&snap);

	/* cells far apart: more runs of buckets than a snapshot's queries, so
	 * hs4 is read over its first to last needed bucket, and the rows
	 * between (B0 + 3i + 1) are dropped */
	for (unsigned i = 0; i < SNAPHB_SPREAD; i++) {
		struct geodb_group g = make_group(SNAPHB_FIRST + 100 + i, "hs4", "b1", 1);
		CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
		for (int64_t b = 3 * (int64_t)i - 1; b <= 3 * (int64_t)i + 1; b++)
			put_snaphb_beat(db2, "hs4", b);
		put_snaphb_cell(db, SNAPHB_FIRST + 100 + i,
				b0_ms + 3 * (int64_t)i * GEODB_HEARTBEAT_BUCKET_MS + 7);
	}
	read_snapshot(db2, &snap);
	CHECK(snap.heartbeat_count == 4 + 2 * SNAPHB_SPREAD);
	unsigned right = 0, in_order = 0;
	for (size_t i = 0; i < snap.heartbeat_count; i++) {
		const struct geodb_site_heartbeat *hb = &snap.heartbeats[i];
		int64_t b = hb->bucket - SNAPHB_B0;
		if (strcmp(hb->site, "hs4") == 0)
			right += b >= -1 && b <= 3 * (SNAPHB_SPREAD - 1) && (b + 3) % 3 != 1;
		if (i > 0) {
			int cmp = strcmp(snap.heartbeats[i - 1].site, hb->site);
			in_order +=
				cmp < 0 || (cmp == 0 && snap.heartbeats[i - 1].bucket < hb->bucket);
		}
	}
	CHECK(right == 2 * SNAPHB_SPREAD);
	CHECK(snap.heartbeat_count > 0 && in_order == snap.heartbeat_count - 1);
	geodb_snapshot_free(&snap);
	CHECK(strstr(async_heartbeat_names(), "hs2@19,hs4@-1,hs4@0,hs4@2,hs4@3,hs4@5") != NULL);

	/* released: no rows again */
	for (unsigned i = 0; i <= 4; i++)
		CHECK(geodb_group_failover_release(db, SNAPHB_FIRST + i, "dc2", &error) == 1);
	for (unsigned i = 0; i < SNAPHB_SPREAD; i++)
		CHECK(geodb_group_failover_release(db2, SNAPHB_FIRST + 100 + i, "dc2", &error) ==
		      1);
	read_snapshot(db, &snap);
	CHECK(snap.failover_count == 0 && snap.heartbeat_count == 0);
	geodb_snapshot_free(&snap);
}

static void test_async(struct geodb *db)
{
	const char *error = NULL;
	struct async_state st;
	memset(&st, 0, sizeof(st));
	st.base = event_base_new();
	CHECK_OK(geodb_attach(db, st.base, &error), error);

	struct geodb_op *op = geodb_snapshot_read_async(db, on_snapshot, &st);
	CHECK(op != NULL);
	CHECK(st.calls == 0); /* never inside the call */
	dispatch(st.base, 20);
	CHECK(st.calls == 1);
	CHECK(st.snap != NULL);
	if (st.snap != NULL) {
		check_snapshot(db, st.snap);
		geodb_snapshot_free(st.snap);
		free(st.snap);
		st.snap = NULL;
	} else {
		fprintf(stderr, "async snapshot: %s\n", st.error);
	}

	struct geodb_group g = make_group(2000, "dc1", "b2", 4);
	g.sticky = true; /* an assignment is never sticky and has no history */
	g.moved_at_ms = 5;
	snprintf(g.history[0].backend, sizeof(g.history[0].backend), "b1");
	st.calls = 0;
	op = geodb_group_assign_async(db, &g, on_assign, &st);
	CHECK(op != NULL && st.calls == 0);
	dispatch(st.base, 20);
	CHECK(st.calls == 1);
	CHECK(st.result == 1);
	CHECK(st.has_stored && st.stored.group_id == 2000 && strcmp(st.stored.backend, "b2") == 0 &&
	      st.stored.epoch == 4 && strcmp(st.stored.written_by, "conf-a") == 0);
	CHECK(st.has_stored && !st.stored.sticky && st.stored.moved_at_ms == 0 &&
	      st.stored.history[0].backend[0] == '\0');
	if (st.result < 0)
		fprintf(stderr, "async assign: %s\n", st.error);

	g = make_group(2000, "dc2", "b3", 1);
	st.calls = 0;
	geodb_group_assign_async(db, &g, on_assign, &st);
	dispatch(st.base, 20);
	CHECK(st.calls == 1);
	CHECK(st.result == 0);
	CHECK(st.has_stored && strcmp(st.stored.backend, "b2") == 0 && st.stored.epoch == 4 &&
	      strcmp(st.stored.site, "dc1") == 0);
	struct geodb_group got;
	CHECK(geodb_group_get(db, 2000, &got, &error) == 1);
	CHECK_STR(got.backend, "b2");
	CHECK(!got.sticky && got.moved_at_ms == 0 && got.history[0].backend[0] == '\0');
	CHECK(same_group(&got, &st.stored));

	/* cancelled: the callback must not run */
	g = make_group(2001, "dc1", "b2", 1);
	op = geodb_group_assign_async(db, &g, on_cancelled, &st);
	geodb_op_cancel(&op);
	CHECK(op == NULL);
	/* keep the loop running while the answer comes in */
	st.calls = 0;
	g = make_group(2002, "dc1", "b3", 1);
	geodb_group_assign_async(db, &g, on_assign, &st);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 1);
	dispatch(st.base, 1);
	CHECK(st.cancelled_calls == 0);

	/* an unassigned group (its backend removed), assigned asynchronously:
	 * epoch + 1, history and moved_at kept; the next is told that row */
	CHECK_OK(geodb_backend_add(db, "dc1", "async-rm", "10.1.0.9", &error), error);
	g = make_group(2003, "dc1", "async-rm", 2);
	CHECK(geodb_group_assign_if_absent(db, &g, &error) == 1);
	unsigned unassigned = 0;
	CHECK_OK(geodb_backend_remove(db, "async-rm", &unassigned, &error), error);
	CHECK(unassigned == 1);
	struct geodb_group unassigned_row;
	CHECK(geodb_group_get(db, 2003, &unassigned_row, &error) == 1);
	CHECK(unassigned_row.backend[0] == '\0' && unassigned_row.epoch == 3 &&
	      strcmp(history_names(&unassigned_row), "async-rm") == 0);
	g = make_group(2003, "dc1", "b2", 1);
	st.calls = 0;
	op = geodb_group_assign_async(db, &g, on_assign, &st);
	CHECK(op != NULL && st.calls == 0);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 1);
	if (st.result < 0)
		fprintf(stderr, "async assign of an unassigned group: %s\n", st.error);
	CHECK(st.has_stored && strcmp(st.stored.backend, "b2") == 0 && st.stored.epoch == 4 &&
	      strcmp(st.stored.written_by, "conf-a") == 0 &&
	      same_history(&st.stored, &unassigned_row) &&
	      st.stored.moved_at_ms == unassigned_row.moved_at_ms);
	CHECK(geodb_group_get(db, 2003, &got, &error) == 1);
	CHECK(same_group(&got, &st.stored));
	g = make_group(2003, "dc1", "b3", 1);
	st.calls = 0;
	geodb_group_assign_async(db, &g, on_assign, &st);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 0);
	CHECK(st.has_stored && same_group(&st.stored, &got));

	/* a health observation written asynchronously, read back */
	struct geodb_health h;
	memset(&h, 0, sizeof(h));
	snprintf(h.backend, sizeof(h.backend), "async-b");
	snprintf(h.observer, sizeof(h.observer), "proxy-async");
	h.ok = true;
	h.since = time(NULL) - 5;
	h.observed_at = time(NULL);
	snprintf(h.detail, sizeof(h.detail), "greeting ok");
	st.calls = 0;
	snprintf(st.error, sizeof(st.error), "not called");
	op = geodb_health_put_async(db, &h, 60, on_done, &st);
	CHECK(op != NULL && st.calls == 0);
	dispatch(st.base, 20);
	CHECK(st.calls == 1);
	CHECK_STR(st.error, "");
	struct geodb_health *list = NULL;
	size_t count = 0;
	CHECK_OK(geodb_health_list(db, "async-b", &list, &count, &error), error);
	CHECK(count == 1 && list != NULL && list[0].ok && list[0].since == h.since &&
	      strcmp(list[0].observer, "proxy-async") == 0);
	free(list);

	/* leases asynchronously: A gets it, B is told A has it, A renews,
	 * A releases, then B gets it */
	time_t now = time(NULL);
	st.calls = 0;
	op = geodb_lease_acquire_async(db, "async-lease", "holder-a", 30, on_lease, &st);
	CHECK(op != NULL && st.calls == 0);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 1 && st.has_lease);
	CHECK_STR(st.lease.holder, "holder-a");
	CHECK(st.lease.expires_at >= now + 29 && st.lease.expires_at <= now + 32);
	if (st.result < 0)
		fprintf(stderr, "async lease: %s\n", st.error);
	st.calls = 0;
	geodb_lease_acquire_async(db, "async-lease", "holder-b", 30, on_lease, &st);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 0 && st.has_lease);
	CHECK_STR(st.lease.name, "async-lease");
	CHECK_STR(st.lease.holder, "holder-a");
	CHECK(st.lease.expires_at >= now + 29);
	st.calls = 0;
	geodb_lease_acquire_async(db, "async-lease", "holder-a", 30, on_lease, &st);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 1);
	CHECK_STR(st.lease.holder, "holder-a");
	st.calls = 0;
	snprintf(st.error, sizeof(st.error), "not called");
	op = geodb_lease_release_async(db, "async-lease", "holder-a", on_done, &st);
	CHECK(op != NULL && st.calls == 0);
	dispatch(st.base, 20);
	CHECK(st.calls == 1);
	CHECK_STR(st.error, "");
	st.calls = 0;
	geodb_lease_acquire_async(db, "async-lease", "holder-b", 30, on_lease, &st);
	dispatch(st.base, 20);
	CHECK(st.calls == 1 && st.result == 1);
	CHECK_STR(st.lease.holder, "holder-b");
	struct geodb_lease got_lease;
	CHECK(geodb_lease_acquire(db, "async-lease", "holder-a", 30, &got_lease, &error) == 0);
	CHECK_STR(got_lease.holder, "holder-b");

	geodb_close(&db);
	event_base_free(st.base);
}

/* ---- errors ---- */

static void test_unreachable(void)
{
	/* a port where nothing listens: an error sentence within the timeout */
	const char *error = NULL;
	struct geodb *db = NULL;
	const char *bad_spec = "cassandra:hosts=127.0.0.1:1;keyspace=mc_nowhere;"
			       "connect_timeout=1000ms;request_timeout=2s";
	CHECK_OK(geodb_open(bad_spec, "conf-x", 5000, &db, &error), error);
	if (db == NULL)
		return;
	time_t start = time(NULL);
	struct geodb_site *sites = NULL;
	size_t count = 0;
	int ret = geodb_site_list(db, &sites, &count, &error);
	CHECK_ERR(ret, error, "geodb: ");
	CHECK(time(NULL) - start <= 6);
	if (ret < 0)
		fprintf(stderr, "unreachable: %s\n", error);
	unsigned from;
	ret = geodb_init(db, &from, &error);
	CHECK_ERR(ret, error, "geodb: ");
	CHECK(time(NULL) - start <= 12);
	geodb_close(&db);
}

/* ---- upgrading a version 2 GeoDB ---- */

/* V2_FIXTURE: site dc1 online; backends b1 (online) and b2 (standby) of dc1,
 * written by "v2" at 1700000000; groups 5 -> b1 (epoch 3) and 6 -> b2
 * (epoch 1); user alice -> group 5; group_count 64.  The tables are
 * version 2's, as geodb_sqlite.c created them. */
static const char *const v2_sqlite_fixture =
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE sites (name TEXT PRIMARY KEY, status TEXT NOT NULL, tags TEXT NOT NULL "
	"DEFAULT '', load_balancer TEXT NOT NULL DEFAULT '', updated_by TEXT NOT NULL, "
	"updated_at INTEGER NOT NULL);"
	"CREATE TABLE backends (name TEXT PRIMARY KEY, site TEXT NOT NULL, address TEXT NOT NULL,"
	" status TEXT NOT NULL, load_factor INTEGER NOT NULL, updated_by TEXT NOT NULL,"
	" updated_at INTEGER NOT NULL);"
	"CREATE TABLE groups (group_id INTEGER PRIMARY KEY, site TEXT NOT NULL, backend TEXT NOT "
	"NULL, epoch INTEGER NOT NULL, written_by TEXT NOT NULL, written_at INTEGER NOT NULL);"
	"CREATE INDEX groups_backend ON groups(backend);"
	"CREATE TABLE users (username TEXT PRIMARY KEY, group_id INTEGER NOT NULL,"
	" written_by TEXT NOT NULL, written_at INTEGER NOT NULL);"
	"CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT "
	"NULL);"
	"CREATE TABLE health (backend TEXT NOT NULL, observer TEXT NOT NULL, ok INTEGER NOT NULL,"
	" detail TEXT NOT NULL, since INTEGER NOT NULL, observed_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL, PRIMARY KEY (backend, observer));"
	"INSERT INTO meta (key, value) VALUES ('routing_generation', 0);"
	"CREATE TRIGGER routing_backends_update AFTER UPDATE ON backends"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER routing_groups_update AFTER UPDATE ON groups"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"INSERT INTO meta VALUES ('schema_version', '2'), ('group_count', '64');"
	"INSERT INTO sites VALUES ('dc1', 'online', '', '', 'v2', 1700000000);"
	"INSERT INTO backends VALUES ('b1', 'dc1', '10.9.0.1', 'online', 100, 'v2', 1700000000),"
	" ('b2', 'dc1', '10.9.0.2', 'standby', 100, 'v2', 1700000000);"
	"INSERT INTO groups VALUES (5, 'dc1', 'b1', 3, 'v2', 1700000000),"
	" (6, 'dc1', 'b2', 1, 'v2', 1700000000);"
	"INSERT INTO users VALUES ('alice', 5, 'v2', 1700000000);";

/* V3_EARLY: version 3 as geodb_sqlite.c first made it, before
 * users.hold_until and the balancing columns and tables (groups.sticky,
 * moved_at, history; group_load; user_backend): V2_FIXTURE's file with
 * version 3's other columns and tables, recorded as version 3. */
static const char *const v3_early_sqlite_upgrade =
	"ALTER TABLE backends ADD COLUMN mark TEXT NOT NULL DEFAULT 'up';"
	"ALTER TABLE backends ADD COLUMN mark_since INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE backends ADD COLUMN mark_reason TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE groups ADD COLUMN alt_backend TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE groups ADD COLUMN move_to TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE groups ADD COLUMN move_started INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE groups ADD COLUMN move_reason TEXT NOT NULL DEFAULT '';"
	"CREATE TABLE move_acks (group_id INTEGER NOT NULL, observer TEXT NOT NULL,"
	" epoch INTEGER NOT NULL, acked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
	" PRIMARY KEY (group_id, observer));"
	"UPDATE meta SET value = '3' WHERE key = 'schema_version';";

/* V3: version 3 as released (the last before version 4's several sites):
 * V3_EARLY's file with the columns and tables added to version 3 later. */
static const char *const v3_sqlite_upgrade =
	"ALTER TABLE users ADD COLUMN hold_until INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE groups ADD COLUMN sticky INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE groups ADD COLUMN moved_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE groups ADD COLUMN history TEXT NOT NULL DEFAULT '';"
	"CREATE TABLE group_load (group_id INTEGER NOT NULL, observer TEXT NOT NULL,"
	" sessions INTEGER NOT NULL, logins INTEGER NOT NULL, reported_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL, PRIMARY KEY (group_id, observer));"
	"CREATE TABLE user_backend (username TEXT PRIMARY KEY, backend TEXT NOT NULL,"
	" recorded_at INTEGER NOT NULL);";

enum fixture { FIXTURE_V2, FIXTURE_V3_EARLY, FIXTURE_V3 };

static unsigned fixture_version(enum fixture fixture)
{
	return fixture == FIXTURE_V2 ? 2 : 3;
}

/* A SQLite file holding V2_FIXTURE's rows as fixture (V2_FIXTURE, V3_EARLY
 * or V3). */
static int make_old_sqlite(const char *path, enum fixture fixture)
{
	sqlite3 *db;
	char *msg = NULL;
	unsigned from_version = fixture_version(fixture);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, v2_sqlite_fixture, NULL, NULL, &msg) != SQLITE_OK ||
	    (fixture != FIXTURE_V2 &&
	     sqlite3_exec(db, v3_early_sqlite_upgrade, NULL, NULL, &msg) != SQLITE_OK) ||
	    (fixture == FIXTURE_V3 &&
	     sqlite3_exec(db, v3_sqlite_upgrade, NULL, NULL, &msg) != SQLITE_OK)) {
		fprintf(stderr, "cannot create the version %u file %s: %s\n", from_version, path,
			msg != NULL ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		sqlite3_close(db);
		return -1;
	}
	sqlite3_close(db);
	return 0;
}

/* Version 4 on an upgraded GeoDB: group 5 is claim (on b3), the old
 * rows' failover site "". */
static void test_upgrade_v4(struct geodb *db, struct geodb *db2, const struct geodb_group *claim)
{
	const char *error = NULL;
	struct geodb_group row = *claim, stored, g;
	snprintf(row.failover_site, sizeof(row.failover_site), "dc2");
	CHECK(geodb_group_cas(db, &row, claim->epoch, &stored, &error) == 1);
	CHECK(geodb_group_get(db2, 5, &g, &error) == 1);
	CHECK_STR(g.failover_site, "dc2");
	CHECK(g.epoch == claim->epoch + 1 && strcmp(g.backend, "b3") == 0);
	CHECK(geodb_group_get(db2, 6, &g, &error) == 1);
	CHECK_STR(g.failover_site, "");
	CHECK_OK(geodb_site_heartbeat_put(db, "dc1", "conf-u", BEAT_T0 + 1, &error), error);
	struct geodb_site_heartbeat *beats = NULL;
	size_t count = 0;
	CHECK_OK(geodb_site_heartbeat_list(db2, NULL, BEAT_T0, BEAT_T0, &beats, &count, &error),
		 error);
	CHECK(count == 1 && beats != NULL && beats[0].beat_ms == BEAT_T0 + 1);
	free(beats);
	struct geodb_site_reachability r, *rows = NULL;
	memset(&r, 0, sizeof(r));
	snprintf(r.observer_site, sizeof(r.observer_site), "dc1");
	snprintf(r.target_site, sizeof(r.target_site), "dc2");
	CHECK_OK(geodb_site_reachability_put(db2, &r, 60, &error), error);
	CHECK_OK(geodb_site_reachability_list(db, "dc1", &rows, &count, &error), error);
	CHECK(count == 1 && rows != NULL && !rows[0].reachable);
	free(rows);
	struct geodb_group_failover cell = make_failover(5, "dc2", "b21", "outage", g.epoch), got;
	CHECK(geodb_group_failover_put_if(db, &cell, &got, &error) == 1);
	struct geodb_group_failover theirs = make_failover(5, "dc3", "b31", "outage", g.epoch);
	CHECK(geodb_group_failover_put_if(db2, &theirs, &got, &error) == 0);
	CHECK_STR(got.writer_site, "dc2");
	struct geodb_site_force_move move;
	memset(&move, 0, sizeof(move));
	snprintf(move.site, sizeof(move.site), "dc1");
	move.id = 3;
	move.percent = 20;
	snprintf(move.destinations, sizeof(move.destinations), "dc2");
	CHECK_OK(geodb_site_force_move_start(db2, &move, &error), error);
	struct geodb_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	CHECK_OK(geodb_snapshot_read(db, &snap, &error), error);
	CHECK(snap.failover_count == 1 && snap.failovers != NULL &&
	      snap.failovers[0].group_id == 5 && strcmp(snap.failovers[0].writer_site, "dc2") == 0);
	CHECK(snap.force_move_count == 1 && snap.force_moves != NULL &&
	      snap.force_moves[0].percent == 20);
	CHECK(snap.group_row_count == 2 && snap.groups != NULL &&
	      strcmp(snap.groups[0].failover_site, "dc2") == 0);
	geodb_snapshot_free(&snap);
	CHECK(geodb_group_failover_release(db2, 5, "dc2", &error) == 1);
	unsigned stopped = 0;
	CHECK_OK(geodb_site_force_move_stop(db, "dc1", 0, &stopped, &error), error);
	CHECK(stopped == 1);
}

/* upgrade_spec holds V2_FIXTURE's rows at from_version (2, or 3 as
 * V3_EARLY). */
static void test_upgrade(const char *upgrade_spec, unsigned from_version)
{
	const char *error = NULL;
	bool cassandra = strncmp(upgrade_spec, "cassandra:", 10) == 0;
	struct geodb *db = NULL, *db2 = NULL;
	if (geodb_open(upgrade_spec, "conf-u", 5000, &db, &error) < 0) {
		fprintf(stderr, "cannot open %s: %s\n", upgrade_spec, error);
		unit_failed++;
		return;
	}
	struct geodb_backend b;
	if (cassandra) {
		/* not usable before `geodb init` */
		char expected[64];
		snprintf(expected, sizeof(expected), "has schema version %u; run", from_version);
		int ret = geodb_backend_get(db, "b1", &b, &error);
		CHECK_ERR(ret, error, expected);
		CHECK_ERR(ret, error, "'mailcluster geodb init'");
	}
	unsigned from = 99;
	CHECK_OK(geodb_init(db, &from, &error), error);
	CHECK(from == from_version);
	CHECK_OK(geodb_open(upgrade_spec, "conf-v", 5000, &db2, &error), error);
	if (db2 == NULL) {
		geodb_close(&db);
		return;
	}
	CHECK_OK(geodb_init(db2, &from, &error), error);
	CHECK(from == GEODB_SCHEMA_VERSION);

	/* the old rows, with the new columns at their defaults */
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 1);
	CHECK(b.status == BACKEND_STATUS_ONLINE);
	CHECK_STR(b.address, "10.9.0.1");
	CHECK_STR(b.updated_by, "v2");
	CHECK(b.updated_at == 1700000000);
	CHECK(b.mark == HEALTH_MARK_UP);
	CHECK(b.mark_since == 0);
	CHECK_STR(b.mark_reason, "");
	struct geodb_group g;
	CHECK(geodb_group_get(db, 5, &g, &error) == 1);
	CHECK_STR(g.backend, "b1");
	CHECK(g.epoch == 3);
	CHECK_STR(g.written_by, "v2");
	CHECK_STR(g.alt_backend, "");
	CHECK_STR(g.move_to, "");
	CHECK(g.move_started_ms == 0);
	CHECK_STR(g.move_reason, "");
	CHECK(!g.sticky && g.moved_at_ms == 0);
	CHECK_STR(history_names(&g), "");
	CHECK_STR(g.failover_site, "");
	struct geodb_user u;
	memset(&u, 0, sizeof(u));
	CHECK(geodb_user_get(db, "alice", &u, &error) == 1);
	CHECK(u.group_id == 5);
	CHECK_STR(u.written_by, "v2");
	CHECK(u.written_at == 1700000000);
	CHECK(u.hold_until_ms == 0);
	struct geodb_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	CHECK_OK(geodb_snapshot_read(db2, &snap, &error), error);
	CHECK(snap.schema_version == GEODB_SCHEMA_VERSION);
	CHECK(snap.group_count == 64);
	CHECK(snap.site_count == 1 && snap.backend_count == 2 && snap.group_row_count == 2 &&
	      snap.user_count == 1);
	if (snap.backend_count == 2)
		CHECK(snap.backends[0].mark == HEALTH_MARK_UP &&
		      snap.backends[1].mark == HEALTH_MARK_UP &&
		      snap.backends[1].mark_reason[0] == '\0');
	if (snap.group_row_count == 2)
		CHECK(snap.groups[0].group_id == 5 && snap.groups[0].epoch == 3 &&
		      snap.groups[0].alt_backend[0] == '\0' && snap.groups[0].move_to[0] == '\0' &&
		      !snap.groups[1].sticky && snap.groups[1].moved_at_ms == 0 &&
		      snap.groups[1].history[0].backend[0] == '\0');
	if (snap.user_count == 1)
		CHECK(strcmp(snap.users[0].username, "alice") == 0 && snap.users[0].group_id == 5 &&
		      snap.users[0].hold_until_ms == 0);
	CHECK(snap.failover_count == 0 && snap.force_move_count == 0);
	if (snap.group_row_count == 2)
		CHECK(snap.groups[1].failover_site[0] == '\0');
	geodb_snapshot_free(&snap);

	/* and everything of version 3 works on them */
	CHECK(geodb_backend_mark(db, "b1", HEALTH_MARK_DOWN, 1700000100, "upgraded", &error) == 1);
	CHECK(geodb_backend_get(db2, "b1", &b, &error) == 1);
	CHECK(b.mark == HEALTH_MARK_DOWN && b.mark_since == 1700000100);
	CHECK_STR(b.mark_reason, "upgraded");
	CHECK(b.updated_at == 1700000000);
	struct geodb_group row, stored;
	memset(&row, 0, sizeof(row));
	row.group_id = 5;
	snprintf(row.site, sizeof(row.site), "dc1");
	snprintf(row.backend, sizeof(row.backend), "b1");
	snprintf(row.alt_backend, sizeof(row.alt_backend), "b2");
	snprintf(row.move_to, sizeof(row.move_to), "b2");
	row.move_started_ms = 1700000100000;
	snprintf(row.move_reason, sizeof(row.move_reason), "b1 down");
	CHECK(geodb_group_cas(db, &row, 3, &stored, &error) == 1);
	CHECK(stored.epoch == 4);
	CHECK(geodb_group_cas(db2, &row, 3, &stored, &error) == 0);
	CHECK(stored.epoch == 4 && strcmp(stored.move_to, "b2") == 0);
	struct geodb_move_ack ack;
	memset(&ack, 0, sizeof(ack));
	ack.group_id = 5;
	snprintf(ack.observer, sizeof(ack.observer), "daemon/1");
	ack.epoch = 4;
	ack.acked_at = 1700000101;
	CHECK_OK(geodb_move_ack_put(db2, &ack, 60, &error), error);
	struct geodb_move_ack *acks = NULL;
	size_t count = 0;
	CHECK_OK(geodb_move_ack_list(db, 5, &acks, &count, &error), error);
	CHECK(count == 1 && acks != NULL && acks[0].epoch == 4);
	free(acks);
	/* the balancing columns on the old rows: the cas above did not switch
	 * group 5; group 6 switches from b2, and gets pinned */
	CHECK(geodb_group_get(db2, 5, &g, &error) == 1);
	CHECK(g.moved_at_ms == 0 && !g.sticky);
	CHECK_STR(history_names(&g), "");
	CHECK(geodb_group_set_sticky(db, 6, true, &error) == 1);
	int64_t before = unix_ms();
	CHECK_OK(geodb_group_set(db2, 6, "dc1", "b1", &error), error);
	int64_t after = unix_ms();
	CHECK(geodb_group_get(db, 6, &g, &error) == 1);
	CHECK(g.epoch == 2 && strcmp(g.backend, "b1") == 0 && g.alt_backend[0] == '\0');
	CHECK(g.sticky);
	CHECK_STR(history_names(&g), "b2");
	CHECK(g.moved_at_ms >= before && g.moved_at_ms <= after &&
	      g.history[0].left_ms == g.moved_at_ms);
	memset(&snap, 0, sizeof(snap));
	CHECK_OK(geodb_snapshot_read(db2, &snap, &error), error);
	CHECK(snap.group_row_count == 2 && snap.groups != NULL && snap.groups[1].group_id == 6 &&
	      snap.groups[1].sticky && strcmp(snap.groups[1].history[0].backend, "b2") == 0 &&
	      snap.groups[1].moved_at_ms == g.moved_at_ms);
	geodb_snapshot_free(&snap);
	/* the new tables */
	struct geodb_group_load load;
	memset(&load, 0, sizeof(load));
	load.group_id = 5;
	load.sessions = 3;
	load.logins = 9;
	load.reported_at = 1700000102;
	CHECK_OK(geodb_group_load_put(db, "daemon/1", &load, 1, 60, &error), error);
	struct geodb_group_load *loads = NULL;
	CHECK_OK(geodb_group_load_list(db2, &loads, &count, &error), error);
	CHECK(count == 1 && loads != NULL && loads[0].group_id == 5 && loads[0].sessions == 3 &&
	      loads[0].logins == 9 && loads[0].reported_at == 1700000102 &&
	      strcmp(loads[0].observer, "daemon/1") == 0);
	free(loads);
	char last[NAME_MAX_LEN + 1];
	int64_t last_at = 0;
	CHECK_OK(geodb_user_last_backend(db2, "alice", "b1", 1700000102000, &error), error);
	CHECK(geodb_user_last_backend_get(db, "alice", last, &last_at, &error) == 1);
	CHECK_STR(last, "b1");
	CHECK(last_at == 1700000102000);
	unsigned unassigned = 99;
	CHECK_OK(geodb_backend_remove(db, "b2", &unassigned, &error), error);
	CHECK(unassigned == 0);
	CHECK(geodb_group_get(db2, 5, &g, &error) == 1);
	CHECK(g.epoch == 5 && g.move_to[0] == '\0' && g.alt_backend[0] == '\0');
	/* removing b1 unassigns both old rows, which remember it */
	CHECK(geodb_backend_get(db, "b1", &b, &error) == 1);
	b.status = BACKEND_STATUS_OFFLINE;
	CHECK_OK(geodb_backend_update(db, &b, &error), error);
	unassigned = 99;
	CHECK_OK(geodb_backend_remove(db2, "b1", &unassigned, &error), error);
	CHECK(unassigned == 2);
	CHECK(geodb_group_get(db, 5, &g, &error) == 1);
	CHECK(g.backend[0] == '\0' && g.epoch == 6 && g.moved_at_ms > 0 && !g.sticky);
	CHECK_STR(history_names(&g), "b1");
	CHECK(geodb_group_get(db, 6, &g, &error) == 1);
	CHECK(g.backend[0] == '\0' && g.epoch == 3 && g.sticky);
	CHECK_STR(history_names(&g), "b1,b2");
	struct geodb_backend_load *backend_loads = NULL;
	CHECK_OK(geodb_backend_loads(db2, &backend_loads, &count, &error), error);
	CHECK(count == 0);
	free(backend_loads);
	struct geodb_group claim = make_group(5, "dc1", "b3", 1);
	CHECK(geodb_group_assign_if_absent(db, &claim, &error) == 1);
	CHECK(claim.epoch == 7 && strcmp(claim.backend, "b3") == 0 && !claim.sticky);
	CHECK_STR(history_names(&claim), "b1");
	struct geodb_group claim2 = make_group(5, "dc1", "b4", 1);
	CHECK(geodb_group_assign_if_absent(db2, &claim2, &error) == 0);
	CHECK(same_group(&claim2, &claim));
	/* a user's login hold on the old row */
	CHECK_OK(geodb_user_move(db, "alice", 6, 1700000100500, &error), error);
	CHECK(geodb_user_get(db2, "alice", &u, &error) == 1);
	CHECK(u.group_id == 6 && u.hold_until_ms == 1700000100500);
	CHECK_STR(u.written_by, "conf-u");
	memset(&snap, 0, sizeof(snap));
	CHECK_OK(geodb_snapshot_read(db2, &snap, &error), error);
	CHECK(snap.user_count == 1 && snap.users != NULL &&
	      snap.users[0].hold_until_ms == 1700000100500);
	geodb_snapshot_free(&snap);
	CHECK_OK(geodb_user_set_group(db2, "alice", 5, &error), error);
	CHECK(geodb_user_get(db, "alice", &u, &error) == 1);
	CHECK(u.group_id == 5 && u.hold_until_ms == 0);
	test_upgrade_v4(db, db2, &claim);
	geodb_close(&db2);
	geodb_close(&db);
}

static void remove_sqlite_file(const char *path)
{
	char side[4200];
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
}

static const char *const fixture_what[] = {
	[FIXTURE_V2] = "",
	[FIXTURE_V3_EARLY] = " (before users.hold_until and the balancing columns)",
	[FIXTURE_V3] = " (as released: before several sites)",
};

/* The upgrade run on SQLite: a file of its own, as make_old_sqlite()
 * makes it. */
static void test_sqlite_upgrade(enum fixture fixture)
{
	char old_path[4200], old_spec[4300];
	unsigned from_version = fixture_version(fixture);
	snprintf(old_path, sizeof(old_path), "%s-v%u%s", spec + 7, from_version,
		 fixture == FIXTURE_V3_EARLY ? "early" : "");
	snprintf(old_spec, sizeof(old_spec), "sqlite:%s", old_path);
	remove_sqlite_file(old_path);
	fprintf(stderr, "upgrade from version %u%s\n", from_version, fixture_what[fixture]);
	if (make_old_sqlite(old_path, fixture) == 0)
		test_upgrade(old_spec, from_version);
	else
		unit_failed++;
	remove_sqlite_file(old_path);
}

int main(int argc, char **argv)
{
	if (argc == 3 &&
	    (strcmp(argv[1], "--upgrade") == 0 || strcmp(argv[1], "--upgrade-v3") == 0 ||
	     strcmp(argv[1], "--upgrade-v3-full") == 0)) {
		enum fixture fixture = strcmp(argv[1], "--upgrade") == 0      ? FIXTURE_V2
				       : strcmp(argv[1], "--upgrade-v3") == 0 ? FIXTURE_V3_EARLY
									      : FIXTURE_V3;
		unsigned from_version = fixture_version(fixture);
		spec = argv[2];
		if (strncmp(spec, "sqlite:", 7) == 0 && access(spec + 7, F_OK) < 0 &&
		    make_old_sqlite(spec + 7, fixture) < 0)
			return 2;
		fprintf(stderr, "upgrade from version %u%s\n", from_version, fixture_what[fixture]);
		test_upgrade(spec, from_version);
		printf("%u passed, %u failed\n", unit_passed, unit_failed);
		return unit_failed == 0 ? 0 : 1;
	}
	if (argc != 2) {
		fprintf(stderr,
			"usage: %s SPEC   (sqlite:PATH or cassandra:...;page_size=50)\n"
			"       %s --upgrade SPEC   (a version 2 GeoDB holding V2_FIXTURE)\n"
			"       %s --upgrade-v3 SPEC   (V2_FIXTURE's rows at version 3 before "
			"users.hold_until and the balancing columns: V3_EARLY)\n"
			"       %s --upgrade-v3-full SPEC   (V2_FIXTURE's rows at version 3 as "
			"released, before several sites: V3)\n",
			argv[0], argv[0], argv[0], argv[0]);
		return 2;
	}
	spec = argv[1];
	is_cassandra = strncmp(spec, "cassandra:", 10) == 0;
	if (is_cassandra && strstr(spec, "page_size=") == NULL)
		fprintf(stderr,
			"note: give page_size=50 in the spec so that the %u-group "
			"listings span several pages\n",
			MANY_COUNT);

	struct geodb *db = open_db("conf-a");
	test_spec_and_schema(db);
	/* a second handle finds the schema and says so: init is idempotent */
	struct geodb *db2 = open_db("conf-b");
	unsigned from = 99;
	const char *error = NULL;
	CHECK_OK(geodb_init(db2, &from, &error), error);
	CHECK(from == GEODB_SCHEMA_VERSION);
	fprintf(stderr, "group count\n");
	test_group_count(db);
	fprintf(stderr, "sites\n");
	test_sites(db);
	fprintf(stderr, "backends\n");
	test_backends(db);
	fprintf(stderr, "marks\n");
	test_marks(db, db2);
	fprintf(stderr, "groups\n");
	test_groups(db, db2);
	fprintf(stderr, "group compare and set\n");
	test_group_cas(db, db2);
	test_cas_race(db, db2);
	fprintf(stderr, "removing a backend clears references\n");
	test_remove_references(db, db2);
	fprintf(stderr, "balancing: sticky, moved_at, history\n");
	test_group_balance(db, db2);
	fprintf(stderr, "group loads\n");
	test_group_load(db, db2);
	fprintf(stderr, "move acknowledgements\n");
	test_move_acks(db, db2);
	fprintf(stderr, "users\n");
	test_users(db, db2);
	fprintf(stderr, "users' last backends\n");
	test_user_backend(db, db2);
	fprintf(stderr, "several sites: failover sites, heartbeats, reachability, failover "
			"cells, force moves\n");
	test_sites_v4(db, db2);
	fprintf(stderr, "snapshot\n");
	test_snapshot(db);
	fprintf(stderr, "race\n");
	test_race(db, db2);
	fprintf(stderr, "claim race: assigning unassigned groups\n");
	test_claim_race(db, db2);
	fprintf(stderr, "leases and health\n");
	test_leases_health(db, db2);
	geodb_close(&db2);
	fprintf(stderr, "async\n");
	test_async(db); /* closes db */
	if (is_cassandra) {
		fprintf(stderr, "unreachable\n");
		test_unreachable();
	} else {
		test_sqlite_upgrade(FIXTURE_V2);
		test_sqlite_upgrade(FIXTURE_V3_EARLY);
		test_sqlite_upgrade(FIXTURE_V3);
	}
	printf("%u passed, %u failed\n", unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}
