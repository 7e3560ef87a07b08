/* test_health.c - the controller's health decision (majority rule, delays,
 * stale observations, operator status) and failover (alternatives, plan,
 * route). */
#include "brain/failover.h"
#include "brain/health.h"
#include "unit.h"

#include <string.h>

#define S 1000 /* ms */

static const int64_t now = 1000000;

/* count observations failing since now - failing_for, the rest ok for long */
static void observe(struct health_observation *o, size_t count, size_t failing, int64_t failing_for)
{
	for (size_t i = 0; i < count; i++) {
		o[i].ok = i >= failing;
		o[i].since_ms = o[i].ok ? now - 600 * S : now - failing_for;
		o[i].observed_at_ms = now - 500;
	}
}

static void test_majority(void)
{
	struct health_settings set;
	health_settings_init(&set);
	CHECK(set.failover_delay_ms == 30 * S && set.probe_interval_ms == 2 * S);
	struct health_backend b = {"b1", BACKEND_STATUS_ONLINE, HEALTH_MARK_UP, 0};
	struct health_observation o[4];
	struct health_decision d;

	/* 1 of 3 failing for long: one daemon's bad link is not an outage */
	observe(o, 3, 1, 300 * S);
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_UP);
	CHECK(d.failing == 1 && d.failing_long == 1 && !d.suspect);

	/* 2 of 3 for 29 s: not yet */
	observe(o, 3, 2, 29 * S);
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_UP);
	CHECK(d.suspect); /* but no group should be moved onto it */

	/* 2 of 3 for 30 s: down */
	observe(o, 3, 2, 30 * S);
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(d.changed && d.mark == HEALTH_MARK_DOWN);
	CHECK_STR(d.reason, "2 of 3 daemons have seen it failing for 30 s "
			    "(backend_failover_delay 30 s)");

	/* 3 of 4 for 31 s; the reason names the shortest of the majority */
	observe(o, 4, 3, 31 * S);
	o[0].since_ms = now - 90 * S;
	health_decide(&set, &b, o, 4, 4, now, &d);
	CHECK(d.changed && d.mark == HEALTH_MARK_DOWN);
	CHECK_STR(d.reason, "3 of 4 daemons have seen it failing for 31 s "
			    "(backend_failover_delay 30 s)");

	/* 2 of 4 is no strict majority */
	observe(o, 4, 2, 300 * S);
	health_decide(&set, &b, o, 4, 4, now, &d);
	CHECK(!d.changed);

	/* the majority is of the live daemons, not of those that answered:
	 * 2 failing of 5 live (3 without an observation) is not enough */
	observe(o, 2, 2, 300 * S);
	health_decide(&set, &b, o, 2, 5, now, &d);
	CHECK(!d.changed && d.live_observers == 5);
	/* and live_observers below the observation count is raised */
	health_decide(&set, &b, o, 2, 1, now, &d);
	CHECK(d.changed && d.live_observers == 2);

	/* no live daemon: nothing is decided */
	health_decide(&set, &b, o, 0, 0, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_UP);
}

static void test_stale(void)
{
	struct health_settings set;
	health_settings_init(&set);
	struct health_backend b = {"b1", BACKEND_STATUS_ONLINE, HEALTH_MARK_UP, 0};
	struct health_observation o[3];
	struct health_decision d;

	/* 2 of 3 failing for long, but one of them last observed 7 s ago
	 * (more than 3 probe intervals): that daemon is no witness */
	observe(o, 3, 2, 300 * S);
	o[1].observed_at_ms = now - 7 * S;
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.fresh == 2 && d.failing == 1);
	/* 6 s is still fresh */
	o[1].observed_at_ms = now - 6 * S;
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(d.changed && d.mark == HEALTH_MARK_DOWN);

	CHECK(health_observer_is_live(&set, now - 6 * S, now));
	CHECK(!health_observer_is_live(&set, now - 6 * S - 1, now));
}

static void test_operator(void)
{
	struct health_settings set;
	health_settings_init(&set);
	struct health_observation o[3];
	struct health_decision d;

	/* offline or standby by the operator: never marked, either way */
	observe(o, 3, 3, 300 * S);
	struct health_backend b = {"b1", BACKEND_STATUS_OFFLINE, HEALTH_MARK_UP, 0};
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_UP);
	CHECK(strstr(d.reason, "operator status is offline") != NULL);
	b.status = BACKEND_STATUS_STANDBY;
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_UP);
	observe(o, 3, 0, 0);
	b.mark = HEALTH_MARK_DOWN;
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_DOWN);
}

static void test_recovery(void)
{
	struct health_settings set;
	health_settings_init(&set);
	set.recovery_delay_ms = 60 * S;
	struct health_backend b = {"b1", BACKEND_STATUS_ONLINE, HEALTH_MARK_DOWN, now - 600 * S};
	struct health_observation o[3];
	struct health_decision d;

	/* all ok for 59 s: kept down */
	for (int i = 0; i < 3; i++)
		o[i] = (struct health_observation){true, now - 59 * S, now - 100};
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_DOWN);
	/* 2 of 3 ok for 60 s: up */
	o[0].since_ms = o[1].since_ms = now - 60 * S;
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(d.changed && d.mark == HEALTH_MARK_UP);
	CHECK_STR(d.reason, "2 of 3 daemons have seen it healthy for 60 s "
			    "(backend_recovery_delay 60 s)");
	/* 1 of 3 ok for long, the others failing: kept down */
	o[1] = (struct health_observation){false, now - 5 * S, now - 100};
	o[2] = o[1];
	health_decide(&set, &b, o, 3, 3, now, &d);
	CHECK(!d.changed && d.mark == HEALTH_MARK_DOWN);
}

#define NB 4
#define NG 400

static void setup_groups(struct failover_backend *b, struct failover_group *g)
{
	static const char *names[NB] = {"b0", "b1", "b2", "b3"};
	static const unsigned lf[NB] = {100, 100, 50, 100};
	for (int i = 0; i < NB; i++)
		b[i] = (struct failover_backend){names[i], BACKEND_STATUS_ONLINE, lf[i],
						 HEALTH_MARK_UP, false};
	for (unsigned i = 0; i < NG; i++)
		g[i] = (struct failover_group){.group_id = i, .backend = (int)(i % NB), .alt_backend = -1};
}

static void test_alternatives(void)
{
	struct failover_backend b[NB];
	struct failover_group g[NG];
	struct failover_change c[NG];
	size_t count;
	setup_groups(b, g);

	/* bounded per call */
	CHECK(failover_alternatives(b, NB, g, NG, 10, c, &count) == 0);
	CHECK(count == 10);
	/* all of them, spread by load factor, never the group's own backend */
	CHECK(failover_alternatives(b, NB, g, NG, NG, c, &count) == 0);
	CHECK(count == NG);
	unsigned per[NB][NB] = {{0}};
	bool own = false;
	for (size_t i = 0; i < count; i++) {
		CHECK(c[i].group == i && c[i].group_id == i && c[i].old_backend == -1);
		own |= c[i].backend == g[c[i].group].backend;
		g[c[i].group].alt_backend = c[i].backend;
		per[g[c[i].group].backend][c[i].backend]++;
	}
	CHECK(!own);
	/* the 100 groups of b0 over b1 (100), b2 (50), b3 (100): 40/20/40 */
	CHECK(per[0][1] >= 39 && per[0][1] <= 41);
	CHECK(per[0][2] >= 19 && per[0][2] <= 21);
	CHECK(per[0][3] >= 39 && per[0][3] <= 41);
	/* and b2's over the three others evenly */
	CHECK(per[2][0] >= 33 && per[2][0] <= 34 && per[2][1] >= 33 && per[2][3] >= 33);
	/* deterministic: the same input gives the same answer */
	struct failover_group g2[NG];
	struct failover_change c2[NG];
	size_t count2;
	setup_groups(b, g2);
	failover_alternatives(b, NB, g2, NG, NG, c2, &count2);
	bool same = count2 == count;
	for (size_t i = 0; i < count && same; i++)
		same = c[i].group == c2[i].group && c[i].backend == c2[i].backend;
	CHECK(same);

	/* nothing to change when all are fine */
	CHECK(failover_alternatives(b, NB, g, NG, NG, c, &count) == 0 && count == 0);
	/* b1 marked down: exactly the groups whose alternative was b1 change,
	 * never to b1 or their own backend */
	b[1].mark = HEALTH_MARK_DOWN;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	CHECK(count == per[0][1] + per[2][1] + per[3][1]);
	bool bad = false;
	for (size_t i = 0; i < count; i++)
		bad |= c[i].old_backend != 1 || c[i].backend == 1 ||
		       c[i].backend == g[c[i].group].backend;
	CHECK(!bad);
	/* a suspect alternative is kept (no churn); standby, offline and load
	 * factor 0 are replaced */
	b[1].mark = HEALTH_MARK_UP;
	b[1].suspect = true;
	CHECK(failover_alternatives(b, NB, g, NG, NG, c, &count) == 0 && count == 0);
	b[1].suspect = false;
	b[1].status = BACKEND_STATUS_STANDBY;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	CHECK(count == per[0][1] + per[2][1] + per[3][1]);
	b[1].status = BACKEND_STATUS_ONLINE;
	b[1].load_factor = 0;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	CHECK(count == per[0][1] + per[2][1] + per[3][1]);
	/* one backend only: no alternative possible, none invented */
	struct failover_group lone = {.group_id = 7, .backend = 0, .alt_backend = -1};
	CHECK(failover_alternatives(b, 1, &lone, 1, 1, c, &count) == 0 && count == 0);
}

static void test_plan(void)
{
	struct failover_backend b[NB];
	struct failover_group g[NG];
	struct failover_change c[NG], moves[NG];
	size_t count, move_count, stranded;
	setup_groups(b, g);
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	for (size_t i = 0; i < count; i++)
		g[c[i].group].alt_backend = c[i].backend;

	/* nothing down: nothing moves */
	CHECK(failover_plan(b, NB, g, NG, moves, &move_count, &stranded) == 0);
	CHECK(move_count == 0 && stranded == 0);

	/* b0 down: each of its 100 groups moves once, to its alternative */
	b[0].mark = HEALTH_MARK_DOWN;
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	CHECK(move_count == 100 && stranded == 0);
	unsigned moved[NG] = {0};
	bool ok = true;
	for (size_t i = 0; i < move_count; i++) {
		const struct failover_change *m = &moves[i];
		moved[m->group]++;
		ok &= m->old_backend == 0 && g[m->group].backend == 0 &&
		      m->backend == g[m->group].alt_backend;
	}
	CHECK(ok);
	bool once = true;
	for (unsigned i = 0; i < NG; i++)
		once &= moved[i] == (i % NB == 0 ? 1u : 0u);
	CHECK(once);
	/* the route follows the alternative as soon as the mark is seen */
	CHECK(failover_route(b, NB, &g[0]) == g[0].alt_backend);
	CHECK(failover_route(b, NB, &g[1]) == 1);
	for (size_t i = 0; i < move_count; i++)
		g[moves[i].group].backend = moves[i].backend;

	/* the moves applied, the plan has nothing more to do */
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	CHECK(move_count == 0);
	/* b0 returns: nobody moves back */
	b[0].mark = HEALTH_MARK_UP;
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	CHECK(move_count == 0);
	bool none_on_b0 = true;
	for (unsigned i = 0; i < NG; i++)
		none_on_b0 &= g[i].backend != 0;
	CHECK(none_on_b0);

	/* an unusable alternative gets a fresh choice: b1 down while the
	 * alternatives of its groups point at b2 (standby by the operator) or
	 * b3 (suspect: failing right now) */
	setup_groups(b, g);
	for (unsigned i = 0; i < NG; i++)
		g[i].alt_backend = i % 2 ? 2 : 3;
	b[1].mark = HEALTH_MARK_DOWN;
	b[2].status = BACKEND_STATUS_STANDBY;
	b[3].suspect = true;
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	CHECK(move_count == 100 && stranded == 0);
	ok = true;
	for (size_t i = 0; i < move_count; i++)
		ok &= moves[i].old_backend == 1 && moves[i].backend == 0;
	CHECK(ok);
	/* nothing can take them: stranded, not moved */
	b[0].load_factor = 0;
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	CHECK(move_count == 0 && stranded == 100);
	/* the route: an operator's offline is not routed around */
	b[1].mark = HEALTH_MARK_UP;
	b[1].status = BACKEND_STATUS_OFFLINE;
	struct failover_group one = {.group_id = 1, .backend = 1, .alt_backend = 0};
	CHECK(failover_route(b, NB, &one) == -1);
	b[1].status = BACKEND_STATUS_ONLINE;
	b[1].mark = HEALTH_MARK_DOWN;
	CHECK(failover_route(b, NB, &one) == 0);
	b[0].mark = HEALTH_MARK_DOWN;
	CHECK(failover_route(b, NB, &one) == -1);
	struct failover_group unassigned = {.group_id = 1, .backend = -1, .alt_backend = 0};
	CHECK(failover_route(b, NB, &unassigned) == -1);
}

/* Metacache affinity: warm backends (that held the group recently) are
 * preferred as alternative and as fresh failover target while their load
 * allows (placement.h: at most 10% plus one group above the best). */
static void test_metacache(void)
{
	struct failover_backend b[NB];
	struct failover_group g[NG];
	struct failover_change c[NG], moves[NG];
	size_t count, move_count, stranded;

	/* the warm list comes from the history: within the ttl, not the
	 * group's own backend, at most FAILOVER_WARM_MAX */
	struct failover_group one = {.group_id = 1, .backend = 0, .alt_backend = -1};
	int hist[5] = {2, 0, 3, 1, -1};
	int64_t left[5] = {900, 800, 700, 100, 0};
	failover_group_set_warm(&one, hist, left, 5, 1000, 300);
	CHECK(one.warm_count == 2 && one.warm[0] == 2 && one.warm[1] == 3);
	failover_group_set_warm(&one, hist, left, 5, 1000, 50);
	CHECK(one.warm_count == 0);
	int twice[3] = {2, 2, -1}; /* listed once */
	failover_group_set_warm(&one, twice, left, 3, 1000, 300);
	CHECK(one.warm_count == 1 && one.warm[0] == 2);

	/* 10 of b0's 100 groups (every tenth) were on b3 lately: b3 is their
	 * alternative, and b0's alternatives still spread 40/20/40 */
	setup_groups(b, g);
	for (unsigned i = 0; i < NG; i += 10 * NB)
		g[i].warm[g[i].warm_count++] = 3;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	CHECK(count == NG);
	unsigned per[NB] = {0};
	for (size_t i = 0; i < count; i++) {
		g[c[i].group].alt_backend = c[i].backend;
		if (g[c[i].group].backend == 0)
			per[c[i].backend]++;
	}
	unsigned warm_kept = 0;
	for (unsigned i = 0; i < NG; i += 10 * NB)
		warm_kept += g[i].alt_backend == 3;
	CHECK(warm_kept == 10);
	CHECK(per[1] >= 39 && per[1] <= 41 && per[2] >= 19 && per[2] <= 21 && per[3] >= 39 &&
	      per[3] <= 41);

	/* all of b0's groups warm on b3: b3 takes more of them, no more than
	 * its load allows */
	setup_groups(b, g);
	for (unsigned i = 0; i < NG; i += NB)
		g[i].warm[g[i].warm_count++] = 3;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	memset(per, 0, sizeof(per));
	for (size_t i = 0; i < count; i++) {
		g[c[i].group].alt_backend = c[i].backend;
		if (g[c[i].group].backend == 0)
			per[c[i].backend]++;
	}
	CHECK(per[1] + per[2] + per[3] == 100);
	CHECK(per[3] > 41);
	/* what b3 would carry after b0's death is within 10% + 1 group of b1 */
	CHECK((100 + per[3]) * 100 <= (100 + per[1] + 1) * 110 + 100);

	/* a warm backend that could not take groups when the alternatives were
	 * chosen (down, drained) becomes the alternative once it can, while
	 * its load allows; nothing else changes (no churn) */
	setup_groups(b, g);
	b[3].mark = HEALTH_MARK_DOWN;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	for (size_t i = 0; i < count; i++)
		g[c[i].group].alt_backend = c[i].backend;
	for (unsigned i = 0; i < NG; i++)
		CHECK(g[i].alt_backend != 3);
	g[0].warm[g[0].warm_count++] = 3;
	g[4].warm[g[4].warm_count++] = 3;
	CHECK(failover_alternatives(b, NB, g, NG, NG, c, &count) == 0 && count == 0);
	b[3].mark = HEALTH_MARK_UP;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	CHECK(count == 2 && c[0].group == 0 && c[0].backend == 3 && c[1].group == 4 &&
	      c[1].backend == 3 && c[0].old_backend == g[0].alt_backend);
	for (size_t i = 0; i < count; i++)
		g[c[i].group].alt_backend = c[i].backend;
	CHECK(failover_alternatives(b, NB, g, NG, NG, c, &count) == 0 && count == 0);
	/* many warm ones: b3 takes them only up to its load allowance */
	for (unsigned i = 0; i < NG; i += NB)
		g[i].warm[0] = 3, g[i].warm_count = 1;
	failover_alternatives(b, NB, g, NG, NG, c, &count);
	bool all_to_b3 = true;
	for (size_t i = 0; i < count; i++)
		all_to_b3 &= c[i].backend == 3;
	CHECK(all_to_b3 && count > 0 && count < 98);
	memset(per, 0, sizeof(per));
	for (size_t i = 0; i < count; i++)
		g[c[i].group].alt_backend = c[i].backend;
	for (unsigned i = 0; i < NG; i += NB)
		per[g[i].alt_backend]++;
	CHECK((100 + per[3]) * 100 <= (100 + per[1] + 1) * 110 + 100);
	CHECK(per[3] > 34 && per[0] == 0 && per[1] + per[2] + per[3] == 100);
	CHECK(failover_alternatives(b, NB, g, NG, NG, c, &count) == 0 && count == 0);

	/* a fresh failover choice: b1 down, its alternatives unusable (b2
	 * standby), its groups warm on b3: b3 takes them while within the
	 * slack of b0's groups, then they spread */
	setup_groups(b, g);
	for (unsigned i = 0; i < NG; i++) {
		g[i].alt_backend = 2;
		if (g[i].backend == 1)
			g[i].warm[g[i].warm_count++] = 3;
	}
	b[1].mark = HEALTH_MARK_DOWN;
	b[2].status = BACKEND_STATUS_STANDBY;
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	CHECK(move_count == 100 && stranded == 0);
	unsigned to[NB] = {0};
	for (size_t i = 0; i < move_count; i++)
		to[moves[i].backend]++;
	/* b0 and b3 had 100 each: b3 ends about 10% + 1 above b0 */
	CHECK(to[0] + to[3] == 100 && to[3] > to[0]);
	CHECK((100 + to[3]) * 100 <= (100 + to[0] + 1) * 110 + 100);
	CHECK((100 + to[3] + 1) * 100 > (100 + to[0] + 1) * 110 + 100 - 110);
	/* without warmth the same plan splits them evenly */
	for (unsigned i = 0; i < NG; i++)
		g[i].warm_count = 0;
	failover_plan(b, NB, g, NG, moves, &move_count, &stranded);
	memset(to, 0, sizeof(to));
	for (size_t i = 0; i < move_count; i++)
		to[moves[i].backend]++;
	CHECK(to[0] == 50 && to[3] == 50);
}

void suite_health(void)
{
	test_majority();
	test_stale();
	test_operator();
	test_recovery();
	test_alternatives();
	test_plan();
	test_metacache();
}
