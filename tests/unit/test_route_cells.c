/* test_route_cells.c - routing by failover cells (route.h, localdb.h):
 * snapshots built by hand, installed in a LocalDB, routed with
 * route_decide(); the verdict rules (brain/site.h) as a daemon applies them,
 * and the settle wait of outage cells. */
#include "store/localdb.h"
#include "store/route.h"
#include "brain/placement.h"
#include "brain/site.h"
#include "brain/user.h"
#include "unit.h"

#include <stdlib.h>
#include <time.h>

#define GROUPS 16

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Two sites dc1 (b1) and dc2 (b2); every group lives on b1 in dc1, its
 * failover site dc2, epoch 5; cells and heartbeats as given. */
static void build(struct geodb_snapshot *snap, const struct geodb_group_failover *cells,
		  size_t cell_count, const struct geodb_site_heartbeat *beats, size_t beat_count)
{
	memset(snap, 0, sizeof(*snap));
	snap->schema_version = GEODB_SCHEMA_VERSION;
	snap->group_count = GROUPS;
	snap->sites = calloc(2, sizeof(*snap->sites));
	snap->site_count = 2;
	for (int i = 0; i < 2; i++) {
		snprintf(snap->sites[i].name, sizeof(snap->sites[i].name), "dc%d", i + 1);
		snap->sites[i].status = SITE_STATUS_ONLINE;
		snprintf(snap->sites[i].load_balancer, sizeof(snap->sites[i].load_balancer),
			 "10.0.%d.1", i + 1);
	}
	snap->backends = calloc(2, sizeof(*snap->backends));
	snap->backend_count = 2;
	for (int i = 0; i < 2; i++) {
		struct geodb_backend *b = &snap->backends[i];
		snprintf(b->name, sizeof(b->name), "b%d", i + 1);
		snprintf(b->site, sizeof(b->site), "dc%d", i + 1);
		snprintf(b->address, sizeof(b->address), "127.0.%d.1", i + 1);
		b->status = BACKEND_STATUS_ONLINE;
		b->load_factor = 100;
		b->mark = HEALTH_MARK_UP;
	}
	snap->groups = calloc(GROUPS, sizeof(*snap->groups));
	snap->group_row_count = GROUPS;
	for (unsigned g = 0; g < GROUPS; g++) {
		struct geodb_group *row = &snap->groups[g];
		row->group_id = g;
		snprintf(row->site, sizeof(row->site), "dc1");
		snprintf(row->backend, sizeof(row->backend), "b1");
		snprintf(row->failover_site, sizeof(row->failover_site), "dc2");
		row->epoch = 5;
	}
	snap->failovers = calloc(cell_count + 1, sizeof(*snap->failovers));
	if (cell_count > 0)
		memcpy(snap->failovers, cells, cell_count * sizeof(*cells));
	snap->failover_count = cell_count;
	snap->heartbeats = calloc(beat_count + 1, sizeof(*snap->heartbeats));
	if (beat_count > 0)
		memcpy(snap->heartbeats, beats, beat_count * sizeof(*beats));
	snap->heartbeat_count = beat_count;
}

static struct geodb_group_failover cell(unsigned group, const char *writer, const char *reason,
					int64_t written_ms, uint64_t home_epoch)
{
	struct geodb_group_failover c = {.group_id = group,
					 .written_at_ms = written_ms,
					 .home_epoch = home_epoch};
	snprintf(c.writer_site, sizeof(c.writer_site), "%s", writer);
	snprintf(c.target_site, sizeof(c.target_site), "%s", writer);
	snprintf(c.target_backend, sizeof(c.target_backend), "b2");
	snprintf(c.reason, sizeof(c.reason), "%s", reason);
	return c;
}

/* A user of group g (an override keeps the test independent of the hash). */
static void user_of(struct geodb_snapshot *snap, unsigned g)
{
	snap->users = calloc(1, sizeof(*snap->users));
	snap->user_count = 1;
	snprintf(snap->users[0].username, sizeof(snap->users[0].username), "u");
	snap->users[0].group_id = g;
}

static enum route_status route(struct localdb *ldb, const char *site, struct route_result *r)
{
	const char *reason;
	enum route_status st = route_decide(ldb, site, "u", r, &reason);
	return route_check_site(ldb, site, false, st, r, &reason);
}

/* A force move of every user of dc1 to dc2 (id 1). */
static void force_all(struct geodb_snapshot *snap)
{
	snap->force_moves = calloc(1, sizeof(*snap->force_moves));
	snap->force_move_count = 1;
	struct geodb_site_force_move *m = &snap->force_moves[0];
	snprintf(m->site, sizeof(m->site), "dc1");
	m->id = 1;
	m->percent = 100;
	snprintf(m->destinations, sizeof(m->destinations), "dc2");
}

/* `site force-move`: who is picked, where they go, and that every host
 * agrees without a GeoDB write. */
static void test_force_moves(void)
{
	/* picks: about percent of the users, monotone in percent, the same
	 * for the same (id, user), destinations spread */
	unsigned at30 = 0, kept = 0, dest1 = 0;
	for (int i = 0; i < 2000; i++) {
		char user[32];
		snprintf(user, sizeof(user), "user%d", i);
		size_t d30, d60, again;
		bool p30 = site_force_move_picks(7, 30, user, 2, &d30);
		bool p60 = site_force_move_picks(7, 60, user, 2, &d60);
		CHECK(site_force_move_picks(7, 30, user, 2, &again) == p30 && again == d30);
		at30 += p30;
		kept += p30 && p60 && d30 == d60;
		dest1 += p30 && d30 == 1;
		CHECK(!site_force_move_picks(7, 0, user, 2, &d30));
		CHECK(site_force_move_picks(7, 100, user, 2, &d30));
	}
	CHECK(at30 > 2000 * 25 / 100 && at30 < 2000 * 35 / 100);
	CHECK(kept == at30); /* raising the percent keeps everyone picked before */
	CHECK(dest1 > at30 / 3 && dest1 < at30 * 2 / 3);

	/* rendezvous: independent of the counts; weighted; only the online */
	struct placement_candidate c[3] = {
		{.name = "x1", .status = BACKEND_STATUS_ONLINE, .load_factor = 100},
		{.name = "x2", .status = BACKEND_STATUS_ONLINE, .load_factor = 100},
		{.name = "x3", .status = BACKEND_STATUS_ONLINE, .load_factor = 100}};
	unsigned won[3] = {0}, same = 0;
	for (uint64_t key = 0; key < 3000; key++) {
		int a = placement_rendezvous(c, 3, key);
		c[0].assigned_groups = (unsigned)key; /* counts play no part */
		same += placement_rendezvous(c, 3, key) == a;
		if (a >= 0)
			won[a]++;
	}
	CHECK(same == 3000);
	for (int i = 0; i < 3; i++)
		CHECK(won[i] > 800 && won[i] < 1200);
	c[2].status = BACKEND_STATUS_OFFLINE;
	c[1].load_factor = 0;
	for (uint64_t key = 0; key < 100; key++)
		CHECK(placement_rendezvous(c, 3, key) == 0);
	c[0].status = BACKEND_STATUS_STANDBY;
	CHECK(placement_rendezvous(c, 3, 1) == -1);

	/* routing: dc1's users picked go to dc2 (from dc1: through dc2's load
	 * balancer; from dc2: directly); 0 percent, none */
	const char *error;
	struct route_result r;
	struct geodb_snapshot snap;
	struct localdb *ldb = localdb_create(GROUPS);
	build(&snap, NULL, 0, NULL, 0);
	user_of(&snap, 3);
	force_all(&snap);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc1", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK_STR(r.via_site, "dc2");
	CHECK(r.force_move_id == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK(r.via_site[0] == '\0');
	/* the destination has no usable backend: unavailable, with the reason */
	build(&snap, NULL, 0, NULL, 0);
	user_of(&snap, 3);
	force_all(&snap);
	snap.backends[1].mark = HEALTH_MARK_DOWN;
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route_decide(ldb, "dc1", "u", &r, &error) == ROUTE_UNAVAILABLE);
	CHECK(strstr(error, "force move 1 of site dc1 sends u to site dc2, which has no backend") !=
	      NULL);
	/* stopped (the row gone): home */
	build(&snap, NULL, 0, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc1", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b1");
	CHECK(r.force_move_id == 0);
	localdb_destroy(&ldb);
}

void suite_route_cells(void)
{
	test_force_moves();
	const char *error;
	struct route_result r;
	struct geodb_snapshot snap;
	int64_t now = now_ms();
	int64_t long_ago = now - 3600 * 1000; /* dc1 silent then: no heartbeat rows */
	struct localdb *ldb = localdb_create(GROUPS);
	localdb_set_cell_settle(ldb, 0);

	/* no cell: home (from dc2: through dc1's load balancer) */
	build(&snap, NULL, 0, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b1");
	CHECK_STR(r.via_site, "dc1");
	CHECK(!r.site_failover);

	/* an outage cell written while dc1 was silent stands: b2, from dc1's
	 * daemons through dc2's load balancer, from dc2's directly */
	struct geodb_group_failover c = cell(3, "dc2", GEODB_FAILOVER_REASON_OUTAGE, long_ago, 5);
	build(&snap, &c, 1, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK(r.via_site[0] == '\0');
	CHECK(r.site_failover);
	CHECK_STR(r.site_failover_reason, "outage");
	CHECK(route(ldb, "dc1", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK_STR(r.via_site, "dc2");

	/* the same cell, but dc1's heartbeats show it alive then (a cut, not an
	 * outage): void, home; the bucket before counts too */
	int64_t bucket = long_ago / GEODB_HEARTBEAT_BUCKET_MS;
	struct geodb_site_heartbeat beat = {.site = "dc1", .bucket = bucket - 1};
	build(&snap, &c, 1, &beat, 1);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1); /* the heartbeat is a change */
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b1");
	CHECK(!r.site_failover);
	/* a heartbeat of another site, or of a bucket too early, does not */
	struct geodb_site_heartbeat others[2] = {{.site = "dc1", .bucket = bucket - 2},
						 {.site = "dc2", .bucket = bucket}};
	build(&snap, &c, 1, others, 2);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");

	/* a cell overriding an older home epoch: void */
	c = cell(3, "dc2", GEODB_FAILOVER_REASON_OUTAGE, long_ago, 4);
	build(&snap, &c, 1, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b1");
	/* a cell by a site that is not the group's failover site: void */
	c = cell(3, "dc1", GEODB_FAILOVER_REASON_OUTAGE, long_ago, 5);
	snprintf(c.target_backend, sizeof(c.target_backend), "b1");
	build(&snap, &c, 1, NULL, 0);
	user_of(&snap, 3);
	snprintf(snap.groups[3].backend, sizeof(snap.groups[3].backend), "b2");
	snprintf(snap.groups[3].site, sizeof(snap.groups[3].site), "dc2");
	snprintf(snap.groups[3].failover_site, sizeof(snap.groups[3].failover_site), "dc3");
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK(!r.site_failover);

	/* an evacuate cell stands whatever the heartbeats say */
	c = cell(3, "dc2", GEODB_FAILOVER_REASON_EVACUATE, now, 5);
	struct geodb_site_heartbeat alive = {.site = "dc1", .bucket = now / GEODB_HEARTBEAT_BUCKET_MS};
	build(&snap, &c, 1, &alive, 1);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc1", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK_STR(r.site_failover_reason, "evacuate");

	/* the cell's backend marked down: unavailable, with the reason */
	build(&snap, &c, 1, &alive, 1);
	user_of(&snap, 3);
	snap.backends[1].mark = HEALTH_MARK_DOWN;
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route_decide(ldb, "dc1", "u", &r, &error) == ROUTE_UNAVAILABLE);
	CHECK(strstr(error, "failed over to backend b2 of site dc2, which is online and marked "
			    "down") != NULL);
	localdb_destroy(&ldb);

	/* the settle wait: a new outage cell is used only once this host has
	 * held it for the settle time; meanwhile the version routed before */
	ldb = localdb_create(GROUPS);
	localdb_set_cell_settle(ldb, 3600 * 1000);
	build(&snap, NULL, 0, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	c = cell(3, "dc2", GEODB_FAILOVER_REASON_OUTAGE, long_ago, 5);
	build(&snap, &c, 1, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b1"); /* not settled: home */
	const struct localdb_cell *held = localdb_cell(ldb, 3);
	CHECK(held != NULL && held->current_present && !held->routed_present);
	CHECK(held != NULL && !localdb_cell_settled(ldb, held, now_ms()));
	CHECK(held != NULL && localdb_cell_settled(ldb, held, now_ms() + 3600 * 1000));
	/* the same write again keeps its first sighting */
	int64_t first = held != NULL ? held->first_seen_ms : 0;
	build(&snap, &c, 1, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 0);
	held = localdb_cell(ldb, 3);
	CHECK(held != NULL && held->first_seen_ms == first);
	/* evacuate cells and releases need no wait */
	struct geodb_group_failover ev = cell(3, "dc2", GEODB_FAILOVER_REASON_EVACUATE, now, 5);
	build(&snap, &ev, 1, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	/* a new outage write now waits, and meanwhile the evacuate cell it
	 * replaced (the version routed by) still routes */
	build(&snap, &c, 1, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	held = localdb_cell(ldb, 3);
	CHECK(held != NULL && held->routed_present &&
	      strcmp(held->routed.reason, GEODB_FAILOVER_REASON_EVACUATE) == 0);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b2");
	CHECK_STR(r.site_failover_reason, "evacuate");
	/* released: home at once, and nothing is kept */
	build(&snap, NULL, 0, NULL, 0);
	user_of(&snap, 3);
	CHECK(localdb_replace(ldb, &snap, &error) == 1);
	CHECK(route(ldb, "dc2", &r) == ROUTE_OK);
	CHECK_STR(r.backend.name, "b1");
	CHECK(localdb_cell(ldb, 3) == NULL);
	localdb_destroy(&ldb);
}
