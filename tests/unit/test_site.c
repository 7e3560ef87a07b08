/* test_site.c - site failover and the split-brain merge rule (brain/site.h). */
#include "brain/site.h"
#include "unit.h"

#include <stdint.h>
#include <string.h>

#define S 1000 /* ms */

/* heartbeat rows: sites 0..3, buckets 0..999, a bitmap */
struct rows {
	bool has[4][1000];
};

static bool rows_exist(const void *context, int site, int64_t bucket)
{
	const struct rows *r = context;
	return site >= 0 && site < 4 && bucket >= 0 && bucket < 1000 && r->has[site][bucket];
}

/* site alive (a heartbeat every 5 s) over [from, to) */
static void alive(struct rows *r, int site, int64_t from, int64_t to)
{
	for (int64_t t = from; t < to; t += 5 * S)
		r->has[site][site_heartbeat_bucket(t)] = true;
}

static void test_heartbeats(void)
{
	CHECK(site_heartbeat_bucket(0) == 0);
	CHECK(site_heartbeat_bucket(9999) == 0);
	CHECK(site_heartbeat_bucket(10000) == 1);
	CHECK(site_heartbeat_bucket(-1) == -1);

	static struct rows r;
	memset(&r, 0, sizeof(r));
	struct site_heartbeats hb = {rows_exist, &r};
	alive(&r, 1, 100 * S, 200 * S); /* buckets 10..19 */
	CHECK(site_alive_at(&hb, 1, 150 * S));
	CHECK(site_alive_at(&hb, 1, 205 * S)); /* the previous bucket has one */
	CHECK(!site_alive_at(&hb, 1, 215 * S));
	CHECK(!site_alive_at(&hb, 1, 95 * S));
	CHECK(!site_alive_at(&hb, 2, 150 * S));

	/* the sorted-array context */
	struct site_heartbeat_row a[] = {{0, 3}, {1, 10}, {1, 11}, {2, 5}};
	struct site_heartbeat_rows rs = {a, 4};
	struct site_heartbeats hb2 = {site_heartbeat_rows_exist, &rs};
	CHECK(site_alive_at(&hb2, 1, 115 * S));
	CHECK(site_alive_at(&hb2, 1, 125 * S));
	CHECK(!site_alive_at(&hb2, 1, 135 * S));
	CHECK(site_alive_at(&hb2, 0, 35 * S));
	CHECK(!site_alive_at(&hb2, 3, 35 * S));
	CHECK(site_heartbeat_rows_exist(&rs, 2, 5) && !site_heartbeat_rows_exist(&rs, 2, 6));
}

static void test_reachability(void)
{
	struct site_settings set;
	site_settings_init(&set);
	CHECK(set.failover_delay_ms == 300 * S && set.failover_rate == 10 &&
	      set.failback_delay_ms == 1800 * S);
	struct site_reachability r = {0};
	CHECK(site_reachability_update(&set, &r, 100 * S, 101 * S));
	CHECK(r.known && r.reachable && r.since_ms == 101 * S);
	CHECK(!site_reachability_update(&set, &r, 100 * S, 130 * S)); /* 30 s: still */
	CHECK(site_reachability_update(&set, &r, 100 * S, 131 * S));
	CHECK(!r.reachable && r.since_ms == 131 * S);
	CHECK(!site_reachability_update(&set, &r, INT64_MIN, 200 * S));
	CHECK(r.since_ms == 131 * S);
	CHECK(site_reachability_update(&set, &r, 199 * S, 200 * S));
	CHECK(r.reachable && r.since_ms == 200 * S);
}

static void test_effective_location(void)
{
	static struct rows r;
	memset(&r, 0, sizeof(r));
	struct site_heartbeats hb = {rows_exist, &r};
	/* site 0 alive 0..1000 s, down 1000..2000 s, alive again from 2000 s */
	alive(&r, 0, 0, 1000 * S);
	alive(&r, 0, 2000 * S, 3000 * S);
	struct site_home_cell home = {.site = 0, .backend = 3, .failover_site = 1, .epoch = 7};
	struct site_failover_cell cell = {0};
	struct site_location loc;

	/* 1. no cell: home */
	site_effective_location(&home, &cell, &hb, &loc);
	CHECK(loc.verdict == SITE_VERDICT_HOME && loc.site == 0 && loc.backend == 3);

	/* 3. an outage cell written while the home site was silent stands */
	cell = (struct site_failover_cell){.present = true,
					   .writer_site = 1,
					   .target_site = 1,
					   .target_backend = 9,
					   .written_ms = 1400 * S,
					   .reason = SITE_REASON_OUTAGE,
					   .home_epoch = 7};
	site_effective_location(&home, &cell, &hb, &loc);
	CHECK(loc.verdict == SITE_VERDICT_STANDS && loc.site == 1 && loc.backend == 9);
	/* ... and stays standing when the home site comes back */
	alive(&r, 0, 3000 * S, 4000 * S);
	site_effective_location(&home, &cell, &hb, &loc);
	CHECK(loc.verdict == SITE_VERDICT_STANDS);

	/* 2. written while the home site was alive (a cut): void, home */
	cell.written_ms = 500 * S;
	site_effective_location(&home, &cell, &hb, &loc);
	CHECK(loc.verdict == SITE_VERDICT_VOID_ALIVE && loc.site == 0 && loc.backend == 3);
	/* the bucket edge: 5 s after the last heartbeat, still alive (previous
	 * bucket); 20 s after, silent */
	cell.written_ms = 1005 * S;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_VOID_ALIVE);
	cell.written_ms = 1021 * S;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_STANDS);
	/* the heartbeats of a cut arriving after the heal void a cell that
	 * stood until then: the same verdict on every host once converged */
	r.has[0][site_heartbeat_bucket(1021 * S)] = true;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_VOID_ALIVE);

	/* an evacuate cell stands while the home site is alive */
	cell.written_ms = 500 * S;
	cell.reason = SITE_REASON_EVACUATE;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_STANDS);

	/* 4. the home cell changed since (epoch): void, whatever the reason */
	home.epoch = 8;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_VOID_EPOCH);
	cell.reason = SITE_REASON_OUTAGE;
	cell.written_ms = 1400 * S;
	site_effective_location(&home, &cell, &hb, &loc);
	CHECK(loc.verdict == SITE_VERDICT_VOID_EPOCH && loc.site == 0 && loc.backend == 3);
	/* a cell of a newer epoch than the home cell's (the writer saw it) is fine */
	cell.home_epoch = 8;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_STANDS);
	/* written by a site that is not the group's failover site: void */
	cell.writer_site = 2;
	CHECK(site_cell_verdict(&home, &cell, &hb) == SITE_VERDICT_VOID_WRITER);
	CHECK(strcmp(site_verdict_name(SITE_VERDICT_VOID_ALIVE), "void_alive") == 0);
	CHECK(strcmp(site_failover_reason_name(SITE_REASON_EVACUATE), "evacuate") == 0);
}

static void test_settled(void)
{
	struct site_failover_cell cell = {.present = true,
					  .writer_site = 1,
					  .written_ms = 1005 * S,
					  .reason = SITE_REASON_OUTAGE};
	/* held for the settle time: from when the replica first had it */
	CHECK(!site_cell_settled(&cell, 1006 * S, 30 * S, 1006 * S));
	CHECK(!site_cell_settled(&cell, 1006 * S, 30 * S, 1036 * S - 1));
	CHECK(site_cell_settled(&cell, 1006 * S, 30 * S, 1036 * S));
	/* a cell replayed long after it was written waits all the same */
	CHECK(!site_cell_settled(&cell, 5000 * S, 30 * S, 5001 * S));
	/* no cell, or an evacuate cell (never void by heartbeats): at once */
	cell.reason = SITE_REASON_EVACUATE;
	CHECK(site_cell_settled(&cell, 1006 * S, 30 * S, 1006 * S));
	cell.present = false;
	CHECK(site_cell_settled(&cell, 1006 * S, 30 * S, 1006 * S));
}

static void test_tags(void)
{
	CHECK(site_tags_share("eu,fra", "us, eu"));
	CHECK(site_tags_share("eu", "eu"));
	CHECK(!site_tags_share("eu", "eur"));
	CHECK(!site_tags_share("eu", NULL));
	CHECK(!site_tags_share("", "eu"));
	CHECK(!site_tags_share("a b", "c,d"));
}

static bool no_rows(const void *context, int site, int64_t bucket)
{
	(void)context;
	(void)site;
	(void)bucket;
	return false;
}

static void test_failover_sites(void)
{
	struct site_heartbeats hb = {no_rows, NULL};
	/* home site 0 (tag eu); 1 eu, 2 eu, 3 us: 1 and 2 share a tag */
	struct site_candidate sites[4] = {
		{"dc0", "eu", SITE_STATUS_ONLINE, 400, 400},
		{"dc1", "eu", SITE_STATUS_ONLINE, 400, 200},
		{"dc2", "eu", SITE_STATUS_ONLINE, 400, 300},
		{"dc3", "us", SITE_STATUS_ONLINE, 1000, 0},
	};
	static struct site_group g[300];
	for (unsigned i = 0; i < 300; i++)
		g[i] = (struct site_group){.group_id = i,
					   .home = {.site = 0, .backend = 0, .failover_site = -1}};
	struct site_failover_site_change ch[300];
	size_t n;
	/* bounded per call */
	site_failover_sites(sites, 4, 0, g, 300, &hb, 50, ch, &n);
	CHECK(n == 50);
	site_failover_sites(sites, 4, 0, g, 300, &hb, 300, ch, &n);
	CHECK(n == 300);
	unsigned count[4] = {0};
	for (size_t i = 0; i < n; i++) {
		count[ch[i].site]++;
		g[ch[i].group].home.failover_site = ch[i].site;
	}
	/* the tag wins over the roomier dc3; spare room spreads: dc1 fills up
	 * to dc2's level first (100 more), then both share the rest */
	CHECK(count[0] == 0 && count[3] == 0);
	CHECK(count[1] == 200 && count[2] == 100);
	/* nothing to change now */
	site_failover_sites(sites, 4, 0, g, 300, &hb, 300, ch, &n);
	CHECK(n == 0);
	/* dc2 offline: its groups get a new one (dc1, the only tagged one
	 * left); the others keep theirs */
	sites[2].status = SITE_STATUS_OFFLINE;
	site_failover_sites(sites, 4, 0, g, 300, &hb, 300, ch, &n);
	CHECK(n == 100);
	for (size_t i = 0; i < n; i++)
		CHECK(ch[i].site == 1 && ch[i].old_site == 2);
	/* no tagged site can take: the others */
	sites[1].status = SITE_STATUS_STANDBY;
	site_failover_sites(sites, 4, 0, g, 300, &hb, 300, ch, &n);
	CHECK(n == 300);
	CHECK(ch[0].site == 3);
	/* a group whose failover cell stands is left alone */
	g[0].home.failover_site = 1;
	g[0].cell = (struct site_failover_cell){.present = true,
						.writer_site = 1,
						.target_site = 1,
						.written_ms = 5 * S,
						.reason = SITE_REASON_OUTAGE};
	site_failover_sites(sites, 4, 0, g, 1, &hb, 300, ch, &n);
	CHECK(n == 0);
	/* nowhere to go: kept */
	sites[3].capacity = 0;
	site_failover_sites(sites, 4, 0, g + 1, 299, &hb, 300, ch, &n);
	CHECK(n == 0);
	/* deterministic ties by the hash: two equal sites share evenly */
	struct site_candidate eq[3] = {
		{"a", NULL, SITE_STATUS_ONLINE, 100, 0},
		{"b", NULL, SITE_STATUS_ONLINE, 100, 0},
		{"c", NULL, SITE_STATUS_ONLINE, 100, 0},
	};
	for (unsigned i = 0; i < 100; i++)
		g[i] = (struct site_group){.group_id = i,
					   .home = {.site = 0, .backend = 0, .failover_site = -1}};
	site_failover_sites(eq, 3, 0, g, 100, &hb, 100, ch, &n);
	unsigned c1 = 0;
	for (size_t i = 0; i < n; i++)
		c1 += ch[i].site == 1;
	CHECK(n == 100 && c1 == 50);
}

static void view_init(struct site_failover_view *v, struct site_reachability *own,
		      struct site_reachability *rep)
{
	memset(own, 0, 3 * sizeof(*own));
	memset(rep, 0, 3 * sizeof(*rep));
	*v = (struct site_failover_view){.self = 1,
					 .home = 0,
					 .home_status = SITE_STATUS_ONLINE,
					 .site_count = 3,
					 .own = own,
					 .reports = rep};
}

static void test_decide(void)
{
	struct site_settings set;
	site_settings_init(&set);
	struct site_reachability own[3], rep[3];
	struct site_failover_view v;
	struct site_decision d;
	view_init(&v, own, rep);
	/* site 1 deciding about site 0; 2 is a third site */
	own[0] = (struct site_reachability){true, false, 1000 * S};
	own[1] = (struct site_reachability){true, true, 0};
	own[2] = (struct site_reachability){true, true, 0};

	/* unreachable for less than the delay: nothing (a short cut) */
	site_failover_decide(&set, &v, 1299 * S, &d);
	CHECK(!d.fail_over && !d.release_outage);
	CHECK(strstr(d.reason_text, "site_failover_delay") != NULL);
	/* long enough, no other report: fail over */
	site_failover_decide(&set, &v, 1300 * S, &d);
	CHECK(d.fail_over && d.reason == SITE_REASON_OUTAGE);
	/* a live third site still reaches it: no */
	rep[2] = (struct site_reachability){true, true, 500 * S};
	site_failover_decide(&set, &v, 1400 * S, &d);
	CHECK(!d.fail_over);
	CHECK(strstr(d.reason_text, "reaches it") != NULL);
	/* ... it lost it too, but not for the delay yet */
	rep[2] = (struct site_reachability){true, false, 1200 * S};
	site_failover_decide(&set, &v, 1400 * S, &d);
	CHECK(!d.fail_over);
	site_failover_decide(&set, &v, 1500 * S, &d);
	CHECK(d.fail_over);
	/* a third site we cannot hear is no witness */
	rep[2] = (struct site_reachability){true, true, 500 * S};
	own[2].reachable = false;
	site_failover_decide(&set, &v, 1400 * S, &d);
	CHECK(d.fail_over);
	own[2].reachable = true;
	rep[2].known = false;
	/* the operator's standby or evacuate: never by outage */
	v.home_status = SITE_STATUS_STANDBY;
	site_failover_decide(&set, &v, 5000 * S, &d);
	CHECK(!d.fail_over);
	v.home_status = SITE_STATUS_EVACUATE;
	site_failover_decide(&set, &v, 5000 * S, &d);
	CHECK(d.fail_over && d.reason == SITE_REASON_EVACUATE);
	/* offline is not the operator's hold: outage rules */
	v.home_status = SITE_STATUS_OFFLINE;
	site_failover_decide(&set, &v, 1300 * S, &d);
	CHECK(d.fail_over && d.reason == SITE_REASON_OUTAGE);
	v.home_status = SITE_STATUS_ONLINE;

	/* it comes back: stop at once (no fail_over), release only after
	 * site_failback_delay of reachability */
	own[0] = (struct site_reachability){true, true, 2000 * S};
	v.has_outage_cells = true;
	site_failover_decide(&set, &v, 2001 * S, &d);
	CHECK(!d.fail_over && !d.release_outage);
	site_failover_decide(&set, &v, 3799 * S, &d);
	CHECK(!d.release_outage);
	site_failover_decide(&set, &v, 3800 * S, &d);
	CHECK(d.release_outage && !d.release_evacuate);
	/* evacuate cells: released as soon as it is online and reachable */
	v.has_evacuate_cells = true;
	site_failover_decide(&set, &v, 2001 * S, &d);
	CHECK(d.release_evacuate && !d.release_outage);
	v.home_status = SITE_STATUS_EVACUATE;
	site_failover_decide(&set, &v, 5000 * S, &d);
	CHECK(!d.release_evacuate && !d.release_outage);
	/* never known: nothing */
	view_init(&v, own, rep);
	site_failover_decide(&set, &v, 5000 * S, &d);
	CHECK(!d.fail_over && !d.release_outage && !d.release_evacuate);
}

static void test_pace(void)
{
	struct site_pace p;
	site_pace_init(&p, 100 * S);
	CHECK(site_pace_allowance(&p, 10, 100 * S) == 1);
	site_pace_spend(&p, 1);
	CHECK(site_pace_allowance(&p, 10, 100 * S + 99) == 0);
	CHECK(site_pace_allowance(&p, 10, 100 * S + 100) == 1);
	/* at most one second's worth, however long it waited */
	CHECK(site_pace_allowance(&p, 10, 500 * S) == 10);
	site_pace_spend(&p, 10);
	CHECK(site_pace_allowance(&p, 10, 500 * S + 500) == 5);
	CHECK(site_pace_allowance(&p, 0, 600 * S) == 0);
	/* over any 10 s: at most rate * (10 + 1) moves */
	site_pace_init(&p, 0);
	unsigned total = 0;
	for (int64_t t = 0; t <= 10 * S; t += 250) {
		unsigned a = site_pace_allowance(&p, 10, t);
		site_pace_spend(&p, a);
		total += a;
	}
	CHECK(total <= 110 && total >= 100);
}

static void test_plan(void)
{
	static struct rows r;
	memset(&r, 0, sizeof(r));
	struct site_heartbeats hb = {rows_exist, &r};
	/* home site 0 alive until 100 s, then silent */
	alive(&r, 0, 0, 100 * S);
	static struct site_group g[40];
	for (unsigned i = 0; i < 40; i++)
		g[i] = (struct site_group){.group_id = i,
					   .weight =
						   (double)(40 - i), /* group 39 is the lightest */
					   .home = {.site = 0,
						    .backend = 0,
						    .failover_site = i % 2 ? 1 : 2,
						    .epoch = 1}};
	struct placement_candidate be[2] = {
		{"s1b0", BACKEND_STATUS_ONLINE, 100, 50, false, 0},
		{"s1b1", BACKEND_STATUS_ONLINE, 100, 50, false, 0},
	};
	struct site_decision d = {.fail_over = true, .reason = SITE_REASON_OUTAGE};
	struct site_cell_change ch[40];
	size_t n, stranded;
	/* while the home site's heartbeats still show it alive (its last beat
	 * in this bucket or the one before) no outage cell is written: it would
	 * be void at once; an evacuate cell is */
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 5, 105 * S, ch, 40, &n, &stranded);
	CHECK(n == 0 && stranded == 0);
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 5, 109 * S, ch, 40, &n, &stranded);
	CHECK(n == 0);
	d.reason = SITE_REASON_EVACUATE;
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 5, 105 * S, ch, 40, &n, &stranded);
	CHECK(n == 5 && ch[0].cell.reason == SITE_REASON_EVACUATE);
	be[0].assigned_groups = be[1].assigned_groups = 50;
	d.reason = SITE_REASON_OUTAGE;
	/* the rate bound: allowance 5 -> 5 cells, only groups whose failover
	 * site is 1, lightest first, spread over its backends */
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 5, 500 * S, ch, 40, &n, &stranded);
	CHECK(n == 5 && stranded == 0);
	CHECK(ch[0].group_id == 39 && ch[1].group_id == 37 && ch[4].group_id == 31);
	unsigned on0 = 0;
	for (size_t i = 0; i < n; i++) {
		CHECK(ch[i].move && !ch[i].release && ch[i].cell.writer_site == 1 &&
		      ch[i].cell.written_ms == 500 * S && ch[i].cell.home_epoch == 1);
		on0 += ch[i].cell.target_backend == 0;
		g[ch[i].group].cell = ch[i].cell;
	}
	CHECK(on0 == 2 || on0 == 3);
	CHECK(be[0].assigned_groups + be[1].assigned_groups == 105);
	/* the next tick goes on where it stopped */
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 100, 501 * S, ch, 40, &n, &stranded);
	CHECK(n == 15 && ch[0].group_id == 29);
	for (size_t i = 0; i < n; i++)
		g[ch[i].group].cell = ch[i].cell;
	/* all done: nothing more */
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 100, 502 * S, ch, 40, &n, &stranded);
	CHECK(n == 0);
	/* not failing over, not released yet: nothing (the cells stand) */
	d = (struct site_decision){0};
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 100, 600 * S, ch, 40, &n, &stranded);
	CHECK(n == 0);
	/* failback: released at the allowance */
	d.release_outage = true;
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 4, 3000 * S, ch, 40, &n, &stranded);
	CHECK(n == 4);
	for (size_t i = 0; i < n; i++)
		CHECK(ch[i].release && ch[i].move);
	/* void cells (a cut: the home was alive when they were written) are
	 * deleted without counting as moves */
	d = (struct site_decision){0};
	alive(&r, 0, 100 * S, 600 * S);
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 0, 3000 * S, ch, 40, &n, &stranded);
	CHECK(n == 20);
	for (size_t i = 0; i < n; i++)
		CHECK(ch[i].release && !ch[i].move);
	/* ... but rewritten when failing over again */
	d = (struct site_decision){.fail_over = true, .reason = SITE_REASON_OUTAGE};
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 3, 5000 * S, ch, 40, &n, &stranded);
	CHECK(n == 3 && !ch[0].release && ch[0].cell.written_ms == 5000 * S);
	/* no backend can take: stranded, nothing written */
	be[0].status = be[1].status = BACKEND_STATUS_STANDBY;
	site_failover_plan(&d, 1, g, 40, &hb, be, 2, 3, 5000 * S, ch, 40, &n, &stranded);
	CHECK(n == 0 && stranded == 20);
}

void suite_site(void)
{
	test_heartbeats();
	test_reachability();
	test_effective_location();
	test_settled();
	test_tags();
	test_failover_sites();
	test_decide();
	test_pace();
	test_plan();
}
