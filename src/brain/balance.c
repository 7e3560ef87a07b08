/* balance.c - see balance.h.
 *
 * One round, in order:
 *
 *   1. classify the backends: can take (online, marked up, load factor > 0),
 *      drain (online, marked up, load factor 0: its groups go), out of scope
 *      (not online, or marked down: failover's business; neither their load
 *      nor their groups count);
 *   2. loads and targets (shares by load factor of the total, then the
 *      bounded resource correction), ratios;
 *   3. moves, one at a time, each recomputing the ratios: first every drain;
 *      then, while a backend is hot (above target * (1 + h)) or cold (below
 *      target * (1 - h)), a group from the hottest hot backend that has a
 *      move that lowers the worse ratio of the two (when none has, or none
 *      is hot: from the backend above its target whose best move carries
 *      the most) to the coolest backend (or to a warm one below its target),
 *      the group whose weight best fits min(excess, room): the amount that
 *      brings one of the two to its target.
 *
 * Groups per backend are kept as index lists (one counting sort per call) so
 * that a move costs the size of one backend's groups, not of all of them.
 */
#include "brain/balance.h"

#include "util/hash.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const balance_mode_names[] = {"off", "dryrun", "on"};

const char *balance_mode_name(enum balance_mode mode)
{
	return (unsigned)mode < 3 ? balance_mode_names[mode] : "unknown";
}

int balance_mode_parse(const char *name, enum balance_mode *mode_r)
{
	for (unsigned i = 0; i < 3; i++) {
		if (strcmp(name, balance_mode_names[i]) == 0) {
			*mode_r = (enum balance_mode)i;
			return 0;
		}
	}
	return -1;
}

void balance_settings_init(struct balance_settings *set)
{
	set->hysteresis = BALANCE_HYSTERESIS_DEFAULT;
	set->max_moves = BALANCE_MAX_MOVES_DEFAULT;
	set->min_stay_ms = BALANCE_MIN_STAY_MS_DEFAULT;
	set->metacache_ttl_ms = BALANCE_METACACHE_TTL_MS_DEFAULT;
	set->min_samples = BALANCE_MIN_SAMPLES_DEFAULT;
}

/* ---- the state of one call ---- */

enum role {
	ROLE_NONE,  /* not online or marked down: not ours */
	ROLE_DRAIN, /* online, up, load factor 0: empties */
	ROLE_TAKE,  /* can take groups */
};

struct state {
	const struct balance_settings *set;
	const struct balance_backend *backends;
	size_t n;
	const struct balance_group *groups;
	size_t m;
	int64_t now;
	enum role *role;
	struct balance_backend_view *view;
	size_t *first, *list; /* groups of backend b: list[first[b] .. first[b + 1]) */
	bool *used;           /* moved in this round */
	size_t skip_group;    /* a group left out of the loads (placement), or SIZE_MAX */
};

static uint64_t tie_break(unsigned group_id, const char *name)
{
	uint32_t g = group_id;
	uint64_t h = hash_fnv1a64(&g, sizeof(g));
	return hash_fnv1a64_add(h, name, strlen(name));
}

static bool valid_backend(const struct state *st, int index)
{
	return index >= 0 && (size_t)index < st->n;
}

static double weight_of(const struct balance_group *g)
{
	/* a missing or nonsensical figure weighs nothing */
	return isfinite(g->weight) && g->weight > 0 ? g->weight : 0;
}

/* The group counts for balancing: on a backend that is ours. */
static bool counted(const struct state *st, size_t i)
{
	const struct balance_group *g = &st->groups[i];
	return i != st->skip_group && valid_backend(st, g->backend) &&
	       st->role[g->backend] != ROLE_NONE;
}

/* The group may be moved by balancing now (min_stay included). */
static bool movable(const struct state *st, size_t i)
{
	const struct balance_group *g = &st->groups[i];
	if (g->sticky || g->moving || st->used[i])
		return false;
	return g->moved_at_ms <= 0 || st->now - g->moved_at_ms >= st->set->min_stay_ms;
}

/* When the group left backend b, if b held it within metacache_ttl; -1 if not. */
static int64_t warm_left_ms(const struct state *st, const struct balance_group *g, int b)
{
	for (int h = 0; h < BALANCE_HISTORY; h++) {
		if (g->history[h] == b && g->history_left_ms[h] > 0 &&
		    st->now - g->history_left_ms[h] <= st->set->metacache_ttl_ms)
			return g->history_left_ms[h];
	}
	return -1;
}

static double ratio_of(double load, double target)
{
	if (target > 0)
		return load / target;
	return load > 0 ? BALANCE_RATIO_NO_TARGET : 0;
}

static void update_ratio(struct state *st, size_t b)
{
	st->view[b].ratio = ratio_of(st->view[b].load, st->view[b].target);
}

/* A host's resource pressure: the scarcest of its resources, 0..1. */
static double pressure_of(const struct balance_resources *r)
{
	double p = r->cpu_busy;
	if (1 - r->mem_available > p)
		p = 1 - r->mem_available;
	if (r->io_busy > p)
		p = r->io_busy;
	if (!isfinite(p) || p < 0)
		return 0;
	return p > 1 ? 1 : p;
}

/* The resource correction (balance.h): factors per backend, 1 for none.
 * Intensity = pressure / (load / share): how busy the host is per unit of
 * its share.  Using the load the resources were measured under keeps the
 * figure about the host (its hardware, its neighbours), not about its
 * current load: a host that is merely overloaded is not "slow", and cutting
 * its share for that would feed back (it sheds load, looks idle, gets it
 * back). */
static void resource_correction(struct state *st, double total, double lf_sum)
{
	unsigned need = st->set->min_samples > 0 ? st->set->min_samples : 1;
	double intensity_sum = 0;
	unsigned count = 0;
	double *intensity = calloc(st->n, sizeof(*intensity));
	if (intensity == NULL)
		return; /* no correction rather than no plan */
	for (size_t b = 0; b < st->n; b++) {
		if (st->role[b] != ROLE_TAKE)
			continue;
		const struct balance_resources *r = &st->backends[b].resources;
		if (r->samples < need) {
			free(intensity); /* every backend must have enough, or none counts */
			return;
		}
		double share = total * st->backends[b].load_factor / lf_sum;
		double load = r->load > 0 ? r->load : st->view[b].load;
		double pressure = pressure_of(r);
		if (share <= 0 || load / share < BALANCE_RESOURCE_MIN_LOAD ||
		    pressure >= BALANCE_RESOURCE_SATURATED)
			continue; /* too idle or too full to say anything about the host */
		intensity[b] = pressure / (load / share);
		intensity_sum += intensity[b];
		count++;
	}
	if (count < 2 || intensity_sum <= 0) {
		free(intensity);
		return;
	}
	double mean = intensity_sum / count;
	double sum = 0;
	for (size_t b = 0; b < st->n; b++) {
		double factor = 1;
		if (intensity[b] > mean * (1 + BALANCE_RESOURCE_DEAD_BAND)) {
			factor = mean * (1 + BALANCE_RESOURCE_DEAD_BAND) / intensity[b];
			if (factor < 1 - BALANCE_RESOURCE_MAX_CORRECTION)
				factor = 1 - BALANCE_RESOURCE_MAX_CORRECTION;
		}
		st->view[b].target *= factor;
		sum += st->view[b].target;
	}
	free(intensity);
	if (sum <= 0)
		return;
	for (size_t b = 0; b < st->n; b++) {
		if (st->role[b] != ROLE_TAKE)
			continue;
		double base = total * st->backends[b].load_factor / lf_sum;
		st->view[b].target *= total / sum;
		st->view[b].resource_factor = base > 0 ? st->view[b].target / base : 1;
	}
}

/* Fills st->role and st->view (loads, targets, ratios); returns the number
 * of backends that can take groups. */
static size_t compute_view(struct state *st, double extra_weight)
{
	size_t takers = 0;
	double total = extra_weight, lf_sum = 0;
	for (size_t b = 0; b < st->n; b++) {
		const struct balance_backend *be = &st->backends[b];
		bool up = be->status == BACKEND_STATUS_ONLINE && be->mark == HEALTH_MARK_UP;
		st->role[b] = !up ? ROLE_NONE : be->load_factor > 0 ? ROLE_TAKE : ROLE_DRAIN;
		st->view[b] = (struct balance_backend_view){
			.resource_factor = 1,
			.can_take = st->role[b] == ROLE_TAKE,
		};
		if (st->role[b] == ROLE_TAKE) {
			takers++;
			lf_sum += be->load_factor;
		}
	}
	for (size_t i = 0; i < st->m; i++) {
		const struct balance_group *g = &st->groups[i];
		if (i == st->skip_group || !valid_backend(st, g->backend))
			continue;
		st->view[g->backend].load += weight_of(g);
		if (st->role[g->backend] != ROLE_NONE)
			total += weight_of(g);
	}
	if (takers == 0) {
		for (size_t b = 0; b < st->n; b++)
			update_ratio(st, b);
		return 0;
	}
	for (size_t b = 0; b < st->n; b++) {
		if (st->role[b] == ROLE_TAKE)
			st->view[b].target = total * st->backends[b].load_factor / lf_sum;
	}
	if (total > 0)
		resource_correction(st, total, lf_sum);
	for (size_t b = 0; b < st->n; b++)
		update_ratio(st, b);
	return takers;
}

static int state_init(struct state *st, const struct balance_settings *set,
		      const struct balance_backend *backends, size_t backend_count,
		      const struct balance_group *groups, size_t group_count, int64_t now_ms,
		      struct balance_backend_view *view)
{
	*st = (struct state){
		.set = set,
		.backends = backends,
		.n = backend_count,
		.groups = groups,
		.m = group_count,
		.now = now_ms,
		.view = view,
		.skip_group = SIZE_MAX,
	};
	st->role = calloc(backend_count + 1, sizeof(*st->role));
	st->first = calloc(backend_count + 2, sizeof(*st->first));
	st->list = calloc(group_count + 1, sizeof(*st->list));
	st->used = calloc(group_count + 1, sizeof(*st->used));
	if (st->role == NULL || st->first == NULL || st->list == NULL || st->used == NULL)
		return -1;
	return 0;
}

/* The per-backend group lists (after compute_view: only counted groups). */
static void index_groups(struct state *st)
{
	for (size_t i = 0; i < st->m; i++) {
		if (counted(st, i))
			st->first[st->groups[i].backend + 1]++;
	}
	for (size_t b = 0; b < st->n; b++)
		st->first[b + 1] += st->first[b];
	size_t *fill = calloc(st->n + 1, sizeof(*fill));
	if (fill == NULL) {
		/* lists stay empty: no moves, but a correct view */
		memset(st->first, 0, (st->n + 1) * sizeof(*st->first));
		return;
	}
	for (size_t i = 0; i < st->m; i++) {
		if (counted(st, i)) {
			size_t b = (size_t)st->groups[i].backend;
			st->list[st->first[b] + fill[b]++] = i;
		}
	}
	free(fill);
}

static void state_free(struct state *st)
{
	free(st->role);
	free(st->first);
	free(st->list);
	free(st->used);
}

/* ---- planning ---- */

struct candidate {
	bool found;
	size_t group;
	int to;
	double fit;    /* |weight - amount|: smaller is better */
	double amount; /* what the move aims at: min(excess, room) */
	uint64_t tie;
	int64_t warm_ms; /* when the group left `to`; -1: not warm */
};

/* Whether c is better than best (fit, then the tie hash). */
static bool better(const struct candidate *c, const struct candidate *best)
{
	if (!best->found)
		return true;
	if (c->fit != best->fit)
		return c->fit < best->fit;
	return c->tie < best->tie;
}

static double max_take_ratio(const struct state *st)
{
	double max = 0;
	for (size_t b = 0; b < st->n; b++) {
		if (st->role[b] == ROLE_TAKE && st->view[b].ratio > max)
			max = st->view[b].ratio;
	}
	return max;
}

/* The backend that can take groups with the lowest ratio, not `except`; -1. */
static int coolest(const struct state *st, int except)
{
	int best = -1;
	for (size_t b = 0; b < st->n; b++) {
		if (st->role[b] != ROLE_TAKE || (int)b == except)
			continue;
		if (best < 0 || st->view[b].ratio < st->view[best].ratio ||
		    (st->view[b].ratio == st->view[best].ratio &&
		     tie_break(0, st->backends[b].name) < tie_break(0, st->backends[best].name)))
			best = (int)b;
	}
	return best;
}

/* Room below its target. */
static double room(const struct state *st, int b)
{
	return st->view[b].target - st->view[b].load;
}

/* A move of group i from `from` to `to` would strictly lower
 * max(ratio_from, ratio_to) (drains: always allowed). */
static bool lowers_max(const struct state *st, int from, int to, double w)
{
	if (st->role[from] == ROLE_DRAIN)
		return true;
	if (w <= 0)
		return false;
	double rf = st->view[from].ratio, rt = st->view[to].ratio;
	double before = rf > rt ? rf : rt;
	double rf_after = ratio_of(st->view[from].load - w, st->view[from].target);
	double rt_after = ratio_of(st->view[to].load + w, st->view[to].target);
	double after = rf_after > rt_after ? rf_after : rt_after;
	return after < before;
}

/* The best move out of backend `from` (balance.h: the group that best fits
 * min(excess, room) of the coolest backend; a warm destination below its
 * target instead when that moves at least BALANCE_WARM_SHARE of what the
 * best cold move would). */
static struct candidate best_move_from(const struct state *st, int from)
{
	struct candidate cold = {0}, warm = {0};
	int cool = coolest(st, from);
	if (cool < 0)
		return cold;
	bool drain = st->role[from] == ROLE_DRAIN;
	double excess = drain ? st->view[from].load : st->view[from].load - st->view[from].target;
	for (size_t k = st->first[from]; k < st->first[from + 1]; k++) {
		size_t i = st->list[k];
		if (!movable(st, i))
			continue;
		const struct balance_group *g = &st->groups[i];
		double w = weight_of(g);
		/* to the coolest */
		double amount = excess < room(st, cool) ? excess : room(st, cool);
		if (amount < 0)
			amount = 0;
		if ((drain || st->view[cool].ratio < st->view[from].ratio) &&
		    lowers_max(st, from, cool, w)) {
			struct candidate c = {
				.found = true,
				.group = i,
				.to = cool,
				.fit = fabs(w - amount),
				.amount = amount,
				.tie = tie_break(g->group_id, st->backends[cool].name),
				.warm_ms = warm_left_ms(st, g, cool),
			};
			if (better(&c, &cold))
				cold = c;
		}
		/* to a backend that held it recently and is below its target */
		for (int h = 0; h < BALANCE_HISTORY; h++) {
			int to = g->history[h];
			if (!valid_backend(st, to) || to == from || st->role[to] != ROLE_TAKE ||
			    room(st, to) <= 0)
				continue;
			int64_t left = warm_left_ms(st, g, to);
			if (left < 0 || !lowers_max(st, from, to, w))
				continue;
			double a = excess < room(st, to) ? excess : room(st, to);
			struct candidate c = {
				.found = true,
				.group = i,
				.to = to,
				.fit = fabs(w - a),
				.amount = a,
				.tie = tie_break(g->group_id, st->backends[to].name),
				.warm_ms = left,
			};
			if (better(&c, &warm))
				warm = c;
		}
	}
	if (!warm.found)
		return cold;
	if (!cold.found)
		return warm;
	double w_warm = weight_of(&st->groups[warm.group]);
	double w_cold = weight_of(&st->groups[cold.group]);
	double useful_warm = w_warm < warm.amount ? w_warm : warm.amount;
	double useful_cold = w_cold < cold.amount ? w_cold : cold.amount;
	return useful_warm >= BALANCE_WARM_SHARE * useful_cold ? warm : cold;
}

static void describe(const struct state *st, const struct candidate *c, int from, char *reason,
		     size_t size)
{
	const struct balance_group *g = &st->groups[c->group];
	const char *fname = st->backends[from].name, *tname = st->backends[c->to].name;
	double w = weight_of(g);
	double excess = st->view[from].load - st->view[from].target;
	int len;
	if (st->role[from] == ROLE_DRAIN)
		len = snprintf(reason, size,
			       "%s drains (load factor 0); group %u (weight %.1f) to %s at %.2f of "
			       "its share",
			       fname, g->group_id, w, tname, st->view[c->to].ratio);
	else
		len = snprintf(reason, size,
			       "%s at %.2f of its share, %s at %.2f; group %u (weight %.1f) fits "
			       "the %s",
			       fname, st->view[from].ratio, tname, st->view[c->to].ratio,
			       g->group_id, w, c->amount < excess ? "room" : "excess");
	if (c->warm_ms >= 0 && len >= 0 && (size_t)len < size) {
		int64_t ago = st->now - c->warm_ms;
		if (ago < 0)
			ago = 0;
		if (ago >= 60000)
			snprintf(reason + len, size - (size_t)len, "; %s held it %lld min ago",
				 tname, (long long)(ago / 60000));
		else
			snprintf(reason + len, size - (size_t)len, "; %s held it %lld s ago", tname,
				 (long long)(ago / 1000));
	}
}

static void apply_move(struct state *st, struct balance_plan *plan, const struct candidate *c,
		       int from)
{
	const struct balance_group *g = &st->groups[c->group];
	struct balance_move *mv = &plan->moves[plan->move_count++];
	*mv = (struct balance_move){
		.group = c->group,
		.group_id = g->group_id,
		.from = from,
		.to = c->to,
		.weight = weight_of(g),
		.warm = c->warm_ms >= 0,
	};
	describe(st, c, from, mv->reason, sizeof(mv->reason));
	st->used[c->group] = true;
	st->view[from].load -= mv->weight;
	st->view[c->to].load += mv->weight;
	if (st->view[from].load < 0)
		st->view[from].load = 0; /* rounding */
	update_ratio(st, (size_t)from);
	update_ratio(st, (size_t)c->to);
}

/* A drain backend with a movable group, the one with the most load first
 * (ties by name hash); -1 if none. */
static int next_drain(const struct state *st)
{
	int best = -1;
	for (size_t b = 0; b < st->n; b++) {
		if (st->role[b] != ROLE_DRAIN)
			continue;
		bool any = false;
		for (size_t k = st->first[b]; k < st->first[b + 1] && !any; k++)
			any = movable(st, st->list[k]);
		if (!any)
			continue;
		if (best < 0 || st->view[b].load > st->view[best].load ||
		    (st->view[b].load == st->view[best].load &&
		     tie_break(0, st->backends[b].name) < tie_break(0, st->backends[best].name)))
			best = (int)b;
	}
	return best;
}

static bool is_hot(const struct state *st, size_t b)
{
	return st->role[b] == ROLE_TAKE && st->view[b].ratio > 1 + st->set->hysteresis;
}

static bool is_cold(const struct state *st, size_t b)
{
	return st->role[b] == ROLE_TAKE && st->view[b].target > 0 &&
	       st->view[b].ratio < 1 - st->set->hysteresis;
}

/* The source of the next move among the backends that can take groups and
 * are above floor * target, hottest first: the first that has a move
 * (first), or the one whose best move carries the most (min(weight,
 * amount)); -1 and !best_r->found if none has a move. */
static int pick_source(const struct state *st, double floor, bool first, struct candidate *best_r)
{
	int from = -1, prev = -1;
	double last = INFINITY, best_useful = -1;
	*best_r = (struct candidate){0};
	for (;;) {
		int s = -1;
		for (size_t b = 0; b < st->n; b++) {
			if (st->role[b] != ROLE_TAKE || st->view[b].ratio <= floor ||
			    st->view[b].ratio > last)
				continue;
			if (st->view[b].ratio == last && (int)b <= prev)
				continue; /* equal ratios: in index order */
			if (s < 0 || st->view[b].ratio > st->view[s].ratio)
				s = (int)b;
		}
		if (s < 0)
			break;
		prev = s;
		last = st->view[s].ratio;
		struct candidate c = best_move_from(st, s);
		if (!c.found)
			continue;
		double w = weight_of(&st->groups[c.group]);
		double useful = w < c.amount ? w : c.amount;
		if (useful > best_useful) {
			*best_r = c;
			from = s;
			best_useful = useful;
		}
		if (first)
			break;
	}
	return from;
}

int balance_plan(const struct balance_settings *set, const struct balance_backend *backends,
		 size_t backend_count, const struct balance_group *groups, size_t group_count,
		 int64_t now_ms, struct balance_plan *plan_r)
{
	struct state st = {0};
	*plan_r = (struct balance_plan){0};
	plan_r->backends = calloc(backend_count + 1, sizeof(*plan_r->backends));
	plan_r->moves = calloc(set->max_moves + 1, sizeof(*plan_r->moves));
	if (plan_r->backends == NULL || plan_r->moves == NULL ||
	    state_init(&st, set, backends, backend_count, groups, group_count, now_ms,
		       plan_r->backends) < 0) {
		state_free(&st);
		balance_plan_free(plan_r);
		return -1;
	}
	size_t takers = compute_view(&st, 0);
	plan_r->max_ratio_before = max_take_ratio(&st);
	if (takers == 0) {
		plan_r->max_ratio_after = plan_r->max_ratio_before;
		snprintf(plan_r->summary, sizeof(plan_r->summary), "no backend can take groups");
		state_free(&st);
		return 0;
	}
	index_groups(&st);

	const char *why = NULL;
	char why_buf[120];
	unsigned pct = (unsigned)lround(set->hysteresis * 100);
	while (why == NULL) {
		if (plan_r->move_count >= set->max_moves) {
			snprintf(why_buf, sizeof(why_buf), "balance_max_moves %u reached",
				 set->max_moves);
			why = why_buf;
			break;
		}
		/* drains first, whatever the hysteresis */
		int drain = next_drain(&st);
		if (drain >= 0) {
			struct candidate c = best_move_from(&st, drain);
			if (c.found) {
				apply_move(&st, plan_r, &c, drain);
				continue;
			}
		}
		bool hot = false, cold = false;
		for (size_t b = 0; b < st.n; b++) {
			hot |= is_hot(&st, b);
			cold |= is_cold(&st, b);
		}
		if (!hot && !cold) {
			if (drain >= 0)
				why = "nowhere to drain to";
			else {
				snprintf(why_buf, sizeof(why_buf),
					 "balanced within hysteresis %u%%", pct);
				why = why_buf;
			}
			break;
		}
		/* the hot backends shed first; when none of them can (or none is
		 * hot), a cold one pulls */
		struct candidate best = {0};
		int from = -1;
		if (hot)
			from = pick_source(&st, 1 + set->hysteresis, true, &best);
		if (!best.found && cold)
			from = pick_source(&st, 1, false, &best);
		if (!best.found) {
			why = "no movable group would lower the highest ratio (sticky, moving, "
			      "moved within group_min_stay, or too heavy)";
			break;
		}
		apply_move(&st, plan_r, &best, from);
	}
	plan_r->max_ratio_after = max_take_ratio(&st);
	snprintf(plan_r->summary, sizeof(plan_r->summary), "%s; %zu move%s, max ratio %.2f -> %.2f",
		 why, plan_r->move_count, plan_r->move_count == 1 ? "" : "s",
		 plan_r->max_ratio_before, plan_r->max_ratio_after);
	/* the view keeps the loads before the moves (what was measured) */
	for (size_t b = 0; b < st.n; b++)
		st.view[b].load = 0;
	for (size_t i = 0; i < group_count; i++) {
		if (valid_backend(&st, groups[i].backend))
			st.view[groups[i].backend].load += weight_of(&groups[i]);
	}
	for (size_t b = 0; b < st.n; b++)
		update_ratio(&st, b);
	state_free(&st);
	return 0;
}

void balance_plan_free(struct balance_plan *plan)
{
	free(plan->backends);
	free(plan->moves);
	plan->backends = NULL;
	plan->moves = NULL;
	plan->move_count = 0;
}

/* ---- one group somewhere ---- */

int balance_placement(const struct balance_settings *set, const struct balance_backend *backends,
		      size_t backend_count, const struct balance_group *groups, size_t group_count,
		      const struct balance_group *group, int64_t now_ms)
{
	struct state st = {0};
	struct balance_backend_view *view = calloc(backend_count + 1, sizeof(*view));
	if (view == NULL ||
	    state_init(&st, set, backends, backend_count, groups, group_count, now_ms, view) < 0) {
		free(view);
		state_free(&st);
		return -1;
	}
	/* the group itself, if it is among the groups, counts only where it goes */
	for (size_t i = 0; i < group_count; i++) {
		if (groups[i].group_id == group->group_id) {
			st.skip_group = i;
			break;
		}
	}
	double w = weight_of(group);
	compute_view(&st, w);
	int best = -1, best_warm = -1;
	double best_r = 0, best_warm_r = 0;
	uint64_t best_tie = 0, best_warm_tie = 0;
	for (size_t b = 0; b < st.n; b++) {
		if (st.role[b] != ROLE_TAKE)
			continue;
		/* the ratio after taking it; with no load at all, by load factor */
		double r = st.view[b].target > 0 ? (st.view[b].load + w) / st.view[b].target
						 : 1.0 / backends[b].load_factor;
		uint64_t tie = tie_break(group->group_id, backends[b].name);
		if (best < 0 || r < best_r || (r == best_r && tie < best_tie)) {
			best = (int)b;
			best_r = r;
			best_tie = tie;
		}
		if (warm_left_ms(&st, group, (int)b) >= 0 &&
		    (best_warm < 0 || r < best_warm_r ||
		     (r == best_warm_r && tie < best_warm_tie))) {
			best_warm = (int)b;
			best_warm_r = r;
			best_warm_tie = tie;
		}
	}
	if (best_warm >= 0 && (st.view[best_warm].target <= 0 ||
			       best_warm_r <= 1 + set->hysteresis || best_warm_r <= best_r))
		best = best_warm;
	state_free(&st);
	free(view);
	return best;
}

/* ---- the lower bound ---- */

struct weighed {
	double weight;
	size_t group;
};

static int by_weight_desc(const void *a, const void *b)
{
	const struct weighed *x = a, *y = b;
	if (x->weight != y->weight)
		return x->weight > y->weight ? -1 : 1;
	return x->group < y->group ? -1 : x->group > y->group;
}

size_t balance_moves_lower_bound(const struct balance_settings *set,
				 const struct balance_backend *backends, size_t backend_count,
				 const struct balance_group *groups, size_t group_count,
				 int64_t now_ms)
{
	struct state st = {0};
	struct balance_backend_view *view = calloc(backend_count + 1, sizeof(*view));
	struct weighed *order = calloc(group_count + 1, sizeof(*order));
	bool *cold = calloc(backend_count + 1, sizeof(*cold));
	if (view == NULL || order == NULL || cold == NULL ||
	    state_init(&st, set, backends, backend_count, groups, group_count, now_ms, view) < 0) {
		free(view);
		free(order);
		free(cold);
		state_free(&st);
		return 0;
	}
	size_t out = 0, in = 0;
	if (compute_view(&st, 0) == 0)
		goto done;
	/* the groups that could ever be moved by balancing (min_stay only
	 * delays a group: counting it keeps this a lower bound), heaviest first */
	size_t count = 0;
	for (size_t i = 0; i < group_count; i++) {
		if (counted(&st, i) && !groups[i].sticky && !groups[i].moving)
			order[count++] = (struct weighed){weight_of(&groups[i]), i};
	}
	qsort(order, count, sizeof(*order), by_weight_desc);

	double h = set->hysteresis, deficit_sum = 0;
	for (size_t b = 0; b < st.n; b++) {
		if (st.role[b] == ROLE_DRAIN) {
			/* empties: every movable group on it */
			for (size_t k = 0; k < count; k++)
				out += groups[order[k].group].backend == (int)b;
			continue;
		}
		if (st.role[b] != ROLE_TAKE)
			continue;
		double excess = st.view[b].load - st.view[b].target * (1 + h);
		double deficit = st.view[b].target * (1 - h) - st.view[b].load;
		if (excess > 0) {
			/* its heaviest groups out until the excess is covered */
			double moved = 0;
			for (size_t k = 0; k < count && moved < excess; k++) {
				if (groups[order[k].group].backend != (int)b)
					continue;
				moved += order[k].weight;
				out++;
			}
		} else if (deficit > 0 && st.view[b].target > 0) {
			/* the heaviest groups of the others in until it is covered */
			double moved = 0;
			for (size_t k = 0; k < count && moved < deficit; k++) {
				if (groups[order[k].group].backend == (int)b)
					continue;
				moved += order[k].weight;
				in++;
			}
			cold[b] = true;
			deficit_sum += deficit;
		}
	}
	/* the cold backends together: moves among them leave their total load
	 * as it is, so at least their summed deficit must come from the others,
	 * one group a move (the same heavy group cannot fill two of them) */
	size_t in_all = 0;
	double moved = 0;
	for (size_t k = 0; k < count && moved < deficit_sum; k++) {
		if (cold[groups[order[k].group].backend])
			continue;
		moved += order[k].weight;
		in_all++;
	}
	if (in_all > in)
		in = in_all;
done:
	state_free(&st);
	free(view);
	free(order);
	free(cold);
	return out > in ? out : in;
}
