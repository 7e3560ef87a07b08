/* test_balance.c - load balancing (brain/balance.h): targets, the resource
 * correction, the plan's rules (hysteresis, max_moves, sticky, moving,
 * min_stay, drains, scope, warm destinations), placement, the lower bound,
 * determinism. */
#include "brain/balance.h"
#include "unit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIN 60000 /* ms */

static const int64_t now = 100LL * 24 * 3600 * 1000;

static const char *const names[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"};

static void backends_init(struct balance_backend *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (struct balance_backend){
			.name = names[i],
			.status = BACKEND_STATUS_ONLINE,
			.mark = HEALTH_MARK_UP,
			.load_factor = 100,
		};
}

static void group_init(struct balance_group *g, unsigned id, int backend, double weight)
{
	*g = (struct balance_group){.group_id = id, .backend = backend, .weight = weight};
	for (int h = 0; h < BALANCE_HISTORY; h++)
		g->history[h] = -1;
}

/* count groups of weight w on backend b, ids from *id on */
static size_t fill(struct balance_group *g, size_t at, unsigned *id, int b, size_t count, double w)
{
	for (size_t i = 0; i < count; i++)
		group_init(&g[at + i], (*id)++, b, w);
	return at + count;
}

static double load_of(const struct balance_group *g, size_t m, int b)
{
	double sum = 0;
	for (size_t i = 0; i < m; i++)
		sum += g[i].backend == b ? g[i].weight : 0;
	return sum;
}

/* the plan's moves applied to the groups */
static void apply(struct balance_group *g, const struct balance_plan *p, int64_t t)
{
	for (size_t k = 0; k < p->move_count; k++) {
		struct balance_group *x = &g[p->moves[k].group];
		memmove(&x->history[1], &x->history[0], (BALANCE_HISTORY - 1) * sizeof(int));
		memmove(&x->history_left_ms[1], &x->history_left_ms[0],
			(BALANCE_HISTORY - 1) * sizeof(int64_t));
		x->history[0] = x->backend;
		x->history_left_ms[0] = t;
		x->backend = p->moves[k].to;
		x->moved_at_ms = t;
	}
}

static void test_settings(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	CHECK(set.max_moves == 10 && set.hysteresis == 0.10 && set.min_stay_ms == 3600000);
	CHECK(set.metacache_ttl_ms == 86400000 && set.min_samples == 5);
	enum balance_mode mode;
	CHECK(balance_mode_parse("dryrun", &mode) == 0 && mode == BALANCE_DRYRUN);
	CHECK(balance_mode_parse("on", &mode) == 0 && mode == BALANCE_ON);
	CHECK(balance_mode_parse("yes", &mode) == -1);
	CHECK_STR(balance_mode_name(BALANCE_OFF), "off");
}

static void test_balanced(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[3];
	backends_init(b, 3);
	struct balance_group g[30];
	unsigned id = 0;
	size_t m = 0;
	/* 108, 100, 92: within 10% of the target 100 each */
	m = fill(g, m, &id, 0, 9, 12);
	m = fill(g, m, &id, 1, 10, 10);
	m = fill(g, m, &id, 2, 10, 9.2);
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count == 0);
	CHECK(strncmp(p.summary, "balanced within hysteresis 10%", 30) == 0);
	CHECK(fabs(p.backends[0].target - 100) < 1e-9 && fabs(p.backends[0].ratio - 1.08) < 1e-9);
	CHECK(fabs(p.max_ratio_before - 1.08) < 1e-9 && p.max_ratio_after == p.max_ratio_before);
	CHECK(p.backends[1].resource_factor == 1 && p.backends[2].can_take);
	balance_plan_free(&p);

	/* 115 is beyond the hysteresis: one move */
	g[0].weight = 19;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count >= 1);
	balance_plan_free(&p);

	/* a smaller hysteresis makes 108 hot */
	g[0].weight = 12;
	set.hysteresis = 0.05;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count >= 1);
	balance_plan_free(&p);
}

static void test_skewed(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[4];
	backends_init(b, 4);
	struct balance_group g[200];
	unsigned id = 0;
	size_t m = 0;
	/* 240, 100, 40, 20 (total 400, targets 100): b0 hot */
	m = fill(g, m, &id, 0, 22, 10);
	m = fill(g, m, &id, 0, 1, 20); /* group 22 */
	m = fill(g, m, &id, 1, 10, 10);
	m = fill(g, m, &id, 2, 4, 10);
	m = fill(g, m, &id, 3, 2, 10);
	CHECK(load_of(g, m, 0) == 240);
	/* the bound: 130 must leave b0 (20 + 11 * 10: 12 groups); b2 needs 50
	 * and b3 70 (4 + 6 groups): 12 */
	CHECK(balance_moves_lower_bound(&set, b, 4, g, m, now) == 12);
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 4, g, m, now, &p) == 0);
	CHECK(p.move_count > 0 && p.move_count <= set.max_moves);
	CHECK(fabs(p.max_ratio_before - 2.4) < 1e-9);
	CHECK(p.max_ratio_after < p.max_ratio_before);
	/* the view is the measured state, before the moves */
	CHECK(fabs(p.backends[0].load - 240) < 1e-9 && fabs(p.backends[3].ratio - 0.2) < 1e-9);
	/* every move goes from b0 (the only one above its target) to one below;
	 * the first to the coolest, b3 (room 80), with the group that best
	 * fits min(excess 140, room 80): the 20 */
	for (size_t k = 0; k < p.move_count; k++) {
		CHECK(p.moves[k].from == 0);
		CHECK(p.moves[k].to == 2 || p.moves[k].to == 3);
		CHECK(p.moves[k].group_id == g[p.moves[k].group].group_id);
		CHECK(!p.moves[k].warm);
	}
	CHECK(p.moves[0].to == 3 && p.moves[0].weight == 20);
	CHECK_STR(p.moves[0].reason,
		  "b0 at 2.40 of its share, b3 at 0.20; group 22 (weight 20.0) fits the room");
	balance_plan_free(&p);

	/* rounds until balanced: every round lowers the max ratio, and it ends
	 * within the hysteresis, with no group moved twice (min_stay) */
	set.max_moves = 3;
	int64_t t = now;
	double last = 10;
	unsigned rounds = 0, moves = 0;
	for (; rounds < 20; rounds++, t += MIN) {
		CHECK(balance_plan(&set, b, 4, g, m, t, &p) == 0);
		CHECK(p.move_count <= 3);
		if (p.move_count == 0) {
			CHECK(strncmp(p.summary, "balanced", 8) == 0);
			balance_plan_free(&p);
			break;
		}
		CHECK(p.max_ratio_before <= last);
		CHECK(p.max_ratio_after < p.max_ratio_before);
		if (p.move_count == 3)
			CHECK(strncmp(p.summary, "balance_max_moves 3 reached", 27) == 0);
		last = p.max_ratio_after;
		moves += (unsigned)p.move_count;
		apply(g, &p, t);
		balance_plan_free(&p);
	}
	CHECK(rounds < 20);
	for (int x = 0; x < 4; x++) {
		double l = load_of(g, m, x);
		CHECK(l <= 110 && l >= 90);
	}
	CHECK(moves == 12); /* the bound, exactly */
}

static void test_max_moves(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[2];
	backends_init(b, 2);
	struct balance_group g[100];
	unsigned id = 0;
	size_t m = fill(g, 0, &id, 0, 100, 1); /* 100 vs 0 */
	struct balance_plan p;
	for (unsigned max = 0; max <= 12; max += 4) {
		set.max_moves = max;
		CHECK(balance_plan(&set, b, 2, g, m, now, &p) == 0);
		CHECK(p.move_count == max);
		CHECK(strstr(p.summary, "balance_max_moves") == p.summary);
		balance_plan_free(&p);
	}
}

static void test_unmovable(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[2];
	backends_init(b, 2);
	struct balance_group g[4];
	unsigned id = 0;
	size_t m = fill(g, 0, &id, 0, 4, 10); /* 40 vs 0 */
	g[0].sticky = true;
	g[1].moving = true;
	g[2].moved_at_ms = now - 59 * MIN; /* min_stay is 60 min */
	g[3].moved_at_ms = now - 10 * MIN;
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 2, g, m, now, &p) == 0);
	CHECK(p.move_count == 0);
	CHECK(strstr(p.summary, "no movable group") == p.summary);
	balance_plan_free(&p);
	/* min_stay passed: exactly 60 min counts */
	g[2].moved_at_ms = now - 60 * MIN;
	CHECK(balance_plan(&set, b, 2, g, m, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].group == 2);
	balance_plan_free(&p);
	/* with min_stay 0, the recently moved one too, never the sticky or
	 * moving ones */
	set.min_stay_ms = 0;
	CHECK(balance_plan(&set, b, 2, g, m, now, &p) == 0);
	CHECK(p.move_count == 2);
	for (size_t k = 0; k < p.move_count; k++)
		CHECK(p.moves[k].group >= 2);
	balance_plan_free(&p);
	/* a hot backend that cannot shed does not block the others: b0 (160,
	 * all sticky) is hot, b2 (35) cold; b1 (105) gives what it has above
	 * its target */
	struct balance_backend b3[3];
	backends_init(b3, 3);
	struct balance_group k[40];
	unsigned kid = 0;
	size_t km = fill(k, 0, &kid, 0, 4, 40);
	for (size_t i = 0; i < km; i++)
		k[i].sticky = true;
	km = fill(k, km, &kid, 1, 21, 5);
	km = fill(k, km, &kid, 2, 7, 5);
	CHECK(balance_plan(&set, b3, 3, k, km, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].from == 1 && p.moves[0].to == 2);
	balance_plan_free(&p);
	/* the lower bound ignores sticky and moving groups: 40 on b0, target 20,
	 * 18 over the threshold: two groups of 10, and only two are movable */
	CHECK(balance_moves_lower_bound(&set, b, 2, g, m, now) == 2);
	/* one movable group left: it cannot cover 18, the bound counts it */
	g[3].sticky = true;
	CHECK(balance_moves_lower_bound(&set, b, 2, g, m, now) == 1);
}

/* a swap never happens: a move must lower the worse ratio strictly */
static void test_no_swap(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[2];
	backends_init(b, 2);
	struct balance_group g[2];
	/* 30 vs 10: target 20; the only groups are 30 and 10: moving the 30
	 * gives 0 vs 40 (worse), moving the 10 is impossible (b1 is cooler) */
	group_init(&g[0], 1, 0, 30);
	group_init(&g[1], 2, 1, 10);
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 2, g, 2, now, &p) == 0);
	CHECK(p.move_count == 0);
	CHECK(strstr(p.summary, "no movable group would lower the highest ratio") == p.summary);
	CHECK(fabs(p.max_ratio_before - 1.5) < 1e-9 && p.max_ratio_after == p.max_ratio_before);
	balance_plan_free(&p);
	/* 25 + 5 vs 10: the 5 moves (1.5 -> 1.25), then nothing: 25 vs 15 is
	 * hot (1.25) but the 25 would make it 0 vs 40 */
	group_init(&g[0], 1, 0, 25);
	struct balance_group g3[3] = {g[0], g[1]};
	group_init(&g3[2], 3, 0, 5);
	CHECK(balance_plan(&set, b, 2, g3, 3, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].group_id == 3 && p.moves[0].to == 1);
	CHECK(fabs(p.max_ratio_after - 1.25) < 1e-9);
	balance_plan_free(&p);
}

static void test_drain(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	set.max_moves = 4;
	struct balance_backend b[3];
	backends_init(b, 3);
	b[2].load_factor = 0;
	struct balance_group g[30];
	unsigned id = 0;
	size_t m = 0;
	m = fill(g, m, &id, 0, 10, 10);
	m = fill(g, m, &id, 1, 10, 10);
	m = fill(g, m, &id, 2, 5, 4);
	m = fill(g, m, &id, 2, 1, 0); /* weighs nothing, goes anyway */
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	/* total 220 over b0 and b1: 110 each, so both are "balanced"; the drain
	 * moves regardless, at most max_moves */
	CHECK(fabs(p.backends[0].target - 110) < 1e-9 && p.backends[2].target == 0);
	CHECK(p.backends[2].ratio == BALANCE_RATIO_NO_TARGET && !p.backends[2].can_take);
	CHECK(p.move_count == 4);
	for (size_t k = 0; k < p.move_count; k++) {
		CHECK(p.moves[k].from == 2 && p.moves[k].to != 2);
		CHECK(strstr(p.moves[k].reason, "b2 drains (load factor 0)") == p.moves[k].reason);
	}
	CHECK(balance_moves_lower_bound(&set, b, 3, g, m, now) == 6);
	/* rounds until empty: the weightless group too */
	int64_t t = now;
	unsigned rounds = 0;
	for (; rounds < 10; rounds++, t += MIN) {
		balance_plan_free(&p);
		CHECK(balance_plan(&set, b, 3, g, m, t, &p) == 0);
		if (p.move_count == 0)
			break;
		apply(g, &p, t);
	}
	balance_plan_free(&p);
	CHECK(rounds == 2);
	CHECK(load_of(g, m, 2) == 0);
	unsigned left = 0;
	for (size_t i = 0; i < m; i++)
		left += g[i].backend == 2;
	CHECK(left == 0);
	/* and they spread: 10/10 + 3/2 or so */
	CHECK(fabs(load_of(g, m, 0) - load_of(g, m, 1)) <= 8);
}

static void test_scope(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[5];
	backends_init(b, 5);
	b[2].mark = HEALTH_MARK_DOWN;
	b[3].status = BACKEND_STATUS_OFFLINE;
	b[4].status = BACKEND_STATUS_STANDBY;
	struct balance_group g[60];
	unsigned id = 0;
	size_t m = 0;
	m = fill(g, m, &id, 0, 20, 10); /* 200 */
	m = fill(g, m, &id, 1, 2, 10);  /* 20 */
	m = fill(g, m, &id, 2, 10, 10); /* down: failover's */
	m = fill(g, m, &id, 3, 10, 10); /* offline */
	/* b4 standby, empty: never a destination */
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 5, g, m, now, &p) == 0);
	/* totals only over b0 and b1: 220, 110 each */
	CHECK(fabs(p.backends[0].target - 110) < 1e-9 && fabs(p.backends[1].target - 110) < 1e-9);
	CHECK(p.backends[2].target == 0 && !p.backends[2].can_take);
	CHECK(fabs(p.backends[2].load - 100) < 1e-9);
	CHECK(p.backends[4].load == 0 && p.backends[4].ratio == 0);
	CHECK(fabs(p.max_ratio_before - 200.0 / 110) < 1e-9);
	/* b0 at 200 must come to 121 or less: 8 groups of 10 to b1 */
	CHECK(p.move_count == 8);
	for (size_t k = 0; k < p.move_count; k++)
		CHECK(p.moves[k].from == 0 && p.moves[k].to == 1);
	balance_plan_free(&p);
	/* nothing can take: no plan */
	b[0].status = b[1].status = BACKEND_STATUS_OFFLINE;
	CHECK(balance_plan(&set, b, 5, g, m, now, &p) == 0);
	CHECK(p.move_count == 0);
	CHECK_STR(p.summary, "no backend can take groups");
	balance_plan_free(&p);
	CHECK(balance_placement(&set, b, 5, g, m, &g[0], now) == -1);
	CHECK(balance_moves_lower_bound(&set, b, 5, g, m, now) == 0);
}

/* b2 is slower: pressure 0.6 per unit of share where the others have 0.4 */
static void resources(struct balance_backend *b, size_t n, unsigned samples,
		      const double *per_share, const double *load_share)
{
	for (size_t i = 0; i < n; i++)
		b[i].resources = (struct balance_resources){
			.samples = samples,
			.cpu_busy = per_share[i] * load_share[i],
			.mem_available = 0.8,
			.io_busy = 0.1,
		};
}

static void test_resources(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[4];
	backends_init(b, 4);
	struct balance_group g[40];
	unsigned id = 0;
	size_t m = 0;
	for (int x = 0; x < 4; x++)
		m = fill(g, m, &id, x, 10, 10);
	double intensity[4] = {0.4, 0.4, 0.6, 0.4}, share[4] = {1, 1, 1, 1};
	struct balance_plan p;

	/* not enough samples on one backend: no correction at all */
	resources(b, 4, 5, intensity, share);
	b[1].resources.samples = 4;
	CHECK(balance_plan(&set, b, 4, g, m, now, &p) == 0);
	for (int x = 0; x < 4; x++)
		CHECK(p.backends[x].resource_factor == 1 && p.backends[x].target == 100);
	CHECK(p.move_count == 0);
	balance_plan_free(&p);

	/* enough: b2's share is cut, bounded, the others' raised; the sum stays */
	resources(b, 4, 5, intensity, share);
	CHECK(balance_plan(&set, b, 4, g, m, now, &p) == 0);
	double sum = 0;
	for (int x = 0; x < 4; x++)
		sum += p.backends[x].target;
	CHECK(fabs(sum - 400) < 1e-9);
	/* mean 0.45, cut to 0.45 * 1.05 / 0.6 = 0.7875, then scaled by
	 * 400 / 378.75 */
	CHECK(fabs(p.backends[2].resource_factor - 0.7875 * 400 / 378.75) < 1e-9);
	CHECK(fabs(p.backends[0].resource_factor - 400 / 378.75) < 1e-9);
	CHECK(p.backends[2].ratio > 1.1); /* so it sheds load */
	CHECK(p.move_count >= 1 && p.moves[0].from == 2);
	balance_plan_free(&p);

	/* much slower (0.9 per share, mean 0.525): the cut stops at 25%
	 * (before scaling) */
	intensity[2] = 0.9;
	resources(b, 4, 50, intensity, share);
	CHECK(balance_plan(&set, b, 4, g, m, now, &p) == 0);
	double scale = 400 / (300 + 75.0);
	CHECK(fabs(p.backends[2].resource_factor - 0.75 * scale) < 1e-9);
	CHECK(fabs(p.backends[2].target - 75 * scale) < 1e-9);
	balance_plan_free(&p);
	/* saturated (CPU at 95% or more): how fast it is cannot be told */
	intensity[2] = 0.96;
	resources(b, 4, 50, intensity, share);
	CHECK(balance_plan(&set, b, 4, g, m, now, &p) == 0);
	CHECK(p.backends[2].resource_factor == 1 && p.backends[2].target == 100);
	balance_plan_free(&p);
	/* below half its share a host is not judged: b3 carries 0.4 of its
	 * share and its memory (fixed costs) dominates its pressure */
	struct balance_group k[40];
	id = 0;
	m = 0;
	m = fill(k, m, &id, 0, 12, 10);
	m = fill(k, m, &id, 1, 12, 10);
	m = fill(k, m, &id, 2, 12, 10);
	m = fill(k, m, &id, 3, 4, 10); /* targets 100: 1.2, 1.2, 1.2, 0.4 */
	double flat[4] = {0.4, 0.4, 0.4, 0.4}, part[4] = {1.2, 1.2, 1.2, 0.4};
	resources(b, 4, 5, flat, part);
	b[3].resources.mem_available = 0.6; /* pressure 0.4 at 0.4 of its share */
	CHECK(balance_plan(&set, b, 4, k, m, now, &p) == 0);
	CHECK(p.backends[3].resource_factor == 1 && p.backends[3].target == 100);
	balance_plan_free(&p);

	/* a host that is busy because it is loaded is not slow: b0 carries 1.5
	 * shares at 0.4 per share (pressure 0.6): no correction, and the plan
	 * moves its excess as usual */
	struct balance_group h[40];
	id = 0;
	m = 0;
	m = fill(h, m, &id, 0, 15, 10);
	m = fill(h, m, &id, 1, 9, 10);
	m = fill(h, m, &id, 2, 8, 10);
	m = fill(h, m, &id, 3, 8, 10);
	double even[4] = {0.4, 0.4, 0.4, 0.4}, loaded[4] = {1.5, 0.9, 0.8, 0.8};
	resources(b, 4, 5, even, loaded);
	CHECK(balance_plan(&set, b, 4, h, m, now, &p) == 0);
	for (int x = 0; x < 4; x++)
		CHECK(fabs(p.backends[x].resource_factor - 1) < 1e-9);
	balance_plan_free(&p);
	/* ... even right after moves, when the resources were measured under
	 * the old load (resources.load): b0 now carries 1.0 but was measured
	 * at 1.5 */
	for (int x = 0; x < 4; x++)
		b[x].resources.load = loaded[x] * 100;
	m = 0;
	id = 0;
	for (int x = 0; x < 4; x++)
		m = fill(h, m, &id, x, 10, 10);
	CHECK(balance_plan(&set, b, 4, h, m, now, &p) == 0);
	for (int x = 0; x < 4; x++)
		CHECK(fabs(p.backends[x].resource_factor - 1) < 1e-9);
	CHECK(p.move_count == 0);
	balance_plan_free(&p);
	/* without it, the current load is used, and b0 looks slow */
	for (int x = 0; x < 4; x++)
		b[x].resources.load = 0;
	CHECK(balance_plan(&set, b, 4, h, m, now, &p) == 0);
	CHECK(p.backends[0].resource_factor < 0.9);
	balance_plan_free(&p);

	/* small differences (noise) are within the dead band */
	double noisy[4] = {0.40, 0.42, 0.39, 0.41};
	resources(b, 4, 5, noisy, share);
	CHECK(balance_plan(&set, b, 4, g, 40, now, &p) == 0);
	for (int x = 0; x < 4; x++)
		CHECK(fabs(p.backends[x].resource_factor - 1) < 1e-9);
	balance_plan_free(&p);
}

static void test_warm(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	set.max_moves = 1;
	struct balance_backend b[3];
	backends_init(b, 3);
	struct balance_group g[40];
	unsigned id = 0;
	size_t m = 0;
	/* 150, 80, 70 (targets 100) */
	m = fill(g, m, &id, 0, 15, 10);
	m = fill(g, m, &id, 1, 8, 10);
	m = fill(g, m, &id, 2, 7, 10);
	struct balance_plan p;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].to == 2 && !p.moves[0].warm);
	balance_plan_free(&p);
	/* group 5 was on b1 40 min ago: b1 is below target, so it goes there */
	g[5].history[0] = 1;
	g[5].history_left_ms[0] = now - 40 * MIN;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].group == 5 && p.moves[0].to == 1);
	CHECK(p.moves[0].warm);
	CHECK(strstr(p.moves[0].reason, "; b1 held it 40 min ago") != NULL);
	balance_plan_free(&p);
	/* beyond metacache_ttl it is cold again */
	g[5].history_left_ms[0] = now - set.metacache_ttl_ms - 1;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].to == 2 && !p.moves[0].warm);
	balance_plan_free(&p);
	/* a warm backend above its target is not preferred */
	g[5].history_left_ms[0] = now - 40 * MIN;
	group_init(&g[m++], id++, 1, 30); /* b1: 110, b0 150, b2 70: targets 110 */
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].to == 2);
	balance_plan_free(&p);
	/* a warm move that carries too little is not preferred either: a warm
	 * group of 2 against the fitting 10s */
	m--;
	g[5].weight = 2;
	CHECK(balance_plan(&set, b, 3, g, m, now, &p) == 0);
	CHECK(p.move_count == 1 && p.moves[0].group != 5 && !p.moves[0].warm);
	balance_plan_free(&p);
	/* zeroed history (left 0) is no history, even for backend 0 at a
	 * virtual time within metacache_ttl of 0 */
	struct balance_group two[2], z;
	group_init(&two[0], 1, 0, 100);
	group_init(&two[1], 2, 1, 95);
	group_init(&z, 3, -1, 5);
	memset(z.history, 0, sizeof(z.history));
	CHECK(balance_placement(&set, b, 2, two, 2, &z, 10 * MIN) == 1);
	z.history_left_ms[0] = 5 * MIN; /* now it is warm: b0 at 1.05 after */
	CHECK(balance_placement(&set, b, 2, two, 2, &z, 10 * MIN) == 0);
}

static void test_placement(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[3];
	backends_init(b, 3);
	b[2].load_factor = 50;
	struct balance_group g[40];
	unsigned id = 0;
	size_t m = 0;
	m = fill(g, m, &id, 0, 10, 10); /* 100 */
	m = fill(g, m, &id, 1, 8, 10);  /* 80 */
	m = fill(g, m, &id, 2, 5, 10);  /* 50 at half the load factor */
	struct balance_group x;
	group_init(&x, 999, -1, 20);
	/* total 250: targets 100, 100, 50; after taking 20: 1.2, 1.0, 1.4 */
	CHECK(balance_placement(&set, b, 3, g, m, &x, now) == 1);
	/* warm b0 (ratio 1.2 after) is above target + 10%: not preferred */
	x.history[0] = 0;
	x.history_left_ms[0] = now - 5 * MIN;
	CHECK(balance_placement(&set, b, 3, g, m, &x, now) == 1);
	/* a lighter group: b0 at 1.10 after (102 / 92.8), within the
	 * hysteresis: warm wins */
	x.weight = 2;
	CHECK(balance_placement(&set, b, 3, g, m, &x, now) == 0);
	/* a group whose backend went down goes to the most room */
	b[0].mark = HEALTH_MARK_DOWN;
	x.history[0] = -1;
	x.weight = 8;
	CHECK(balance_placement(&set, b, 3, g, m, &x, now) == 1);
	/* load factor 0, offline, marked down: never */
	b[1].load_factor = 0;
	CHECK(balance_placement(&set, b, 3, g, m, &x, now) == 2);
	b[2].status = BACKEND_STATUS_STANDBY;
	CHECK(balance_placement(&set, b, 3, g, m, &x, now) == -1);
	/* the group itself, listed on a backend that counts, counts only where
	 * it goes: b0 50 + the group's 50, b1 90.  Counted twice, the targets
	 * would be 120 and b0 at 150 after, b1 140 (b1); right, 95: b0 100, b1
	 * 140 (b0) */
	struct balance_backend two[2];
	backends_init(two, 2);
	struct balance_group s3[3];
	group_init(&s3[0], 7, 0, 50);
	group_init(&s3[1], 8, 0, 50);
	group_init(&s3[2], 9, 1, 90);
	CHECK(balance_placement(&set, two, 2, s3, 3, &s3[0], now) == 0);
	/* an empty site: by load factor, ties by the hash, not the first name */
	struct balance_backend e[2];
	backends_init(e, 2);
	unsigned first = 0;
	for (unsigned i = 0; i < 100; i++) {
		struct balance_group y;
		group_init(&y, i, -1, 0);
		first += balance_placement(&set, e, 2, NULL, 0, &y, now) == 0;
	}
	CHECK(first > 20 && first < 80);
}

static void test_lower_bound(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[4];
	backends_init(b, 4);
	struct balance_group g[40];
	unsigned id = 0;
	size_t m = 0;
	/* 200, 100, 60, 40: target 100, threshold 110: b0 needs 90 out, its
	 * groups are 50, 30, 20, 20, 20, 20, 20, 20 -> 50 + 30 + 20 = 100: 3.
	 * b2 needs 90 - 60 = 30 in: the heaviest elsewhere, 50: 1; b3 needs
	 * 50 in: 50: 1.  max(3, 2) = 3 */
	group_init(&g[m++], id++, 0, 50);
	group_init(&g[m++], id++, 0, 30);
	m = fill(g, m, &id, 0, 6, 20);
	m = fill(g, m, &id, 1, 10, 10);
	m = fill(g, m, &id, 2, 6, 10);
	m = fill(g, m, &id, 3, 4, 10);
	CHECK(balance_moves_lower_bound(&set, b, 4, g, m, now) == 3);
	/* without the 50 (sticky): 30 + 20 + 20 + 20 = 90: 4 */
	g[0].sticky = true;
	CHECK(balance_moves_lower_bound(&set, b, 4, g, m, now) == 4);
	g[0].sticky = false;
	/* three cold backends needing many small groups in: 10 backends of
	 * which one empty: the in side decides */
	struct balance_backend c[3];
	backends_init(c, 3);
	m = 0;
	id = 0;
	m = fill(g, m, &id, 0, 15, 10); /* 150 */
	m = fill(g, m, &id, 1, 15, 10); /* 150 */
	/* target 100 each, b2 empty: 90 in: 9 groups; b0, b1 40 over 110: 4
	 * each: max(8, 9) = 9 */
	CHECK(balance_moves_lower_bound(&set, c, 3, g, m, now) == 9);
	/* balanced: 0 */
	m = 0;
	id = 0;
	for (int x = 0; x < 3; x++)
		m = fill(g, m, &id, x, 10, 10);
	CHECK(balance_moves_lower_bound(&set, c, 3, g, m, now) == 0);
	/* the cold backends together: b0 (load factor 50) 30 + 40 + 60 + 30,
	 * b2 (100) 40 + 40 + 30 + 10, b1 and b3 (50) empty: total 280, targets
	 * 56, 56, 112, 56.  b0 is 98.4 over 61.6: 60 + 40, 2 groups; b1 and b3
	 * need 50.4 each, one group each (the 60) - but not the same one: 100.8
	 * from b0 and b2 takes 60 + 40 + 40: 3 */
	struct balance_backend e[4];
	backends_init(e, 4);
	e[0].load_factor = e[1].load_factor = e[3].load_factor = 50;
	m = 0;
	id = 0;
	group_init(&g[m++], id++, 0, 30);
	group_init(&g[m++], id++, 0, 40);
	group_init(&g[m++], id++, 0, 60);
	group_init(&g[m++], id++, 0, 30);
	group_init(&g[m++], id++, 2, 40);
	group_init(&g[m++], id++, 2, 40);
	group_init(&g[m++], id++, 2, 30);
	group_init(&g[m++], id++, 2, 10);
	CHECK(balance_moves_lower_bound(&set, e, 4, g, m, now) == 3);

	/* it is a lower bound: the planner, round after round, needs at least
	 * as many moves, on a heavy-tailed case */
	struct balance_backend d[6];
	backends_init(d, 6);
	struct balance_group h[300];
	uint64_t r = 12345;
	for (size_t i = 0; i < 300; i++) {
		r = r * 6364136223846793005ULL + 1442695040888963407ULL;
		double u = ((r >> 11) + 1) * (1.0 / 9007199254740993.0);
		group_init(&h[i], (unsigned)i, i < 150 ? 0 : (int)(1 + i % 5), pow(u, -1 / 1.5));
	}
	size_t bound = balance_moves_lower_bound(&set, d, 6, h, 300, now);
	CHECK(bound > 0);
	size_t moves = 0;
	struct balance_plan p;
	for (int round = 0; round < 50; round++) {
		CHECK(balance_plan(&set, d, 6, h, 300, now + round * MIN, &p) == 0);
		moves += p.move_count;
		bool done = p.move_count == 0;
		apply(h, &p, now + round * MIN);
		balance_plan_free(&p);
		if (done)
			break;
	}
	CHECK(moves >= bound);
	CHECK(moves * 10 <= bound * 12); /* and within 1.2 times it here (equal) */
}

static void test_deterministic(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	struct balance_backend b[4];
	backends_init(b, 4);
	struct balance_group g[80];
	unsigned id = 0;
	size_t m = 0;
	m = fill(g, m, &id, 0, 40, 5); /* all equal: ties everywhere */
	m = fill(g, m, &id, 1, 20, 5);
	m = fill(g, m, &id, 2, 10, 5);
	m = fill(g, m, &id, 3, 10, 5);
	struct balance_plan p, q;
	CHECK(balance_plan(&set, b, 4, g, m, now, &p) == 0);
	CHECK(balance_plan(&set, b, 4, g, m, now, &q) == 0);
	CHECK(p.move_count == q.move_count && p.move_count > 0);
	for (size_t k = 0; k < p.move_count && k < q.move_count; k++) {
		CHECK(p.moves[k].group == q.moves[k].group && p.moves[k].to == q.moves[k].to);
		CHECK(strcmp(p.moves[k].reason, q.moves[k].reason) == 0);
	}
	CHECK(strcmp(p.summary, q.summary) == 0);
	/* among equal groups the hash chooses, not the array order: the first
	 * move is not simply group 0 */
	bool all_first = true;
	for (size_t k = 0; k < p.move_count; k++)
		all_first &= p.moves[k].group_id == k;
	CHECK(!all_first);
	balance_plan_free(&p);
	balance_plan_free(&q);
}

static uint64_t lcg(uint64_t *r)
{
	*r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
	return *r >> 33;
}

/* Random sites: every move obeys the rules, whatever the state. */
static void test_properties(void)
{
	struct balance_settings set;
	balance_settings_init(&set);
	uint64_t r = 99;
#define RND() lcg(&r)
	unsigned violations = 0, plans = 0;
	for (int trial = 0; trial < 300; trial++) {
		size_t n = 2 + RND() % 7, m = 10 + RND() % 200;
		struct balance_backend b[8];
		backends_init(b, n);
		for (size_t x = 0; x < n; x++) {
			b[x].load_factor = (unsigned)(RND() % 4) * 50;
			if (RND() % 8 == 0)
				b[x].mark = HEALTH_MARK_DOWN;
			if (RND() % 8 == 0)
				b[x].status = BACKEND_STATUS_OFFLINE;
			b[x].resources = (struct balance_resources){
				.samples = 5 + (unsigned)(RND() % 2),
				.cpu_busy = (RND() % 100) / 100.0,
				.mem_available = (RND() % 100) / 100.0,
				.io_busy = (RND() % 100) / 100.0,
			};
		}
		struct balance_group g[210];
		for (size_t i = 0; i < m; i++) {
			group_init(&g[i], (unsigned)i, (int)(RND() % (n + 1)) - 1,
				   (double)(RND() % 1000) / 10);
			g[i].sticky = RND() % 10 == 0;
			g[i].moving = RND() % 10 == 0;
			g[i].moved_at_ms = RND() % 3 == 0 ? now - (int64_t)(RND() % 120) * MIN : 0;
			g[i].history[0] = (int)(RND() % (n + 1)) - 1;
			g[i].history_left_ms[0] = now - (int64_t)(RND() % 60) * MIN;
		}
		struct balance_plan p;
		if (balance_plan(&set, b, n, g, m, now, &p) < 0) {
			violations++;
			continue;
		}
		plans++;
		double sum_target = 0, sum_load = 0;
		for (size_t x = 0; x < n; x++) {
			bool up =
				b[x].status == BACKEND_STATUS_ONLINE && b[x].mark == HEALTH_MARK_UP;
			sum_target += p.backends[x].target;
			if (up)
				sum_load += p.backends[x].load;
			if (p.backends[x].resource_factor < 0.75 - 1e-9)
				violations++;
		}
		if (sum_target > 0 && fabs(sum_target - sum_load) > 1e-6 * sum_load)
			violations++;
		if (p.move_count > set.max_moves)
			violations++;
		for (size_t k = 0; k < p.move_count; k++) {
			const struct balance_move *mv = &p.moves[k];
			const struct balance_group *x = &g[mv->group];
			const struct balance_backend *f = &b[mv->from], *t = &b[mv->to];
			if (x->sticky || x->moving || x->backend != mv->from || mv->from == mv->to)
				violations++;
			if (x->moved_at_ms > 0 && now - x->moved_at_ms < set.min_stay_ms)
				violations++;
			if (f->status != BACKEND_STATUS_ONLINE || f->mark != HEALTH_MARK_UP)
				violations++;
			if (t->status != BACKEND_STATUS_ONLINE || t->mark != HEALTH_MARK_UP ||
			    t->load_factor == 0)
				violations++;
			for (size_t j = 0; j < k; j++)
				violations += p.moves[j].group == mv->group;
		}
		bool drained = false;
		for (size_t k = 0; k < p.move_count; k++)
			drained |= b[p.moves[k].from].load_factor == 0;
		if (!drained && p.max_ratio_after > p.max_ratio_before + 1e-9)
			violations++;
		balance_plan_free(&p);
	}
	CHECK(plans == 300);
	CHECK(violations == 0);
#undef RND
}

void suite_balance(void)
{
	test_settings();
	test_balanced();
	test_skewed();
	test_max_moves();
	test_unmovable();
	test_no_swap();
	test_drain();
	test_scope();
	test_resources();
	test_warm();
	test_placement();
	test_lower_bound();
	test_deterministic();
	test_properties();
}
