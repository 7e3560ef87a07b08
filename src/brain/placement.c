/* placement.c - see placement.h. */
#include "brain/placement.h"

#include "util/hash.h"

#include <stdint.h>
#include <math.h>
#include <string.h>

static uint64_t tie_break(unsigned group_id, const char *name)
{
	uint32_t g = group_id;
	uint64_t h = hash_fnv1a64(&g, sizeof(g));
	return hash_fnv1a64_add(h, name, strlen(name));
}

/* Whether candidate c is a better home than b: (assigned + 1) / load_factor
 * smaller, ties broken by the hash. */
static bool better(const struct placement_candidate *c, uint64_t c_tie,
		   const struct placement_candidate *b, uint64_t b_tie)
{
	uint64_t lhs = (uint64_t)(c->assigned_groups + 1) * b->load_factor;
	uint64_t rhs = (uint64_t)(b->assigned_groups + 1) * c->load_factor;
	return lhs < rhs || (lhs == rhs && c_tie < b_tie);
}

/* (carried + assigned + 1) / load_factor of c is below that of b */
static bool lighter(const struct placement_candidate *c, const struct placement_candidate *b)
{
	uint64_t c_load = (uint64_t)c->carried_groups + c->assigned_groups + 1;
	uint64_t b_load = (uint64_t)b->carried_groups + b->assigned_groups + 1;
	return c_load * b->load_factor < b_load * c->load_factor;
}

static int choose(const struct placement_candidate *candidates, size_t count, size_t exclude,
		  unsigned group_id)
{
	int best = -1, warm = -1, lightest = -1;
	uint64_t best_tie = 0, warm_tie = 0;
	for (size_t i = 0; i < count; i++) {
		const struct placement_candidate *c = &candidates[i];
		if (i == exclude || c->status != BACKEND_STATUS_ONLINE || c->load_factor == 0)
			continue;
		uint64_t tie = tie_break(group_id, c->name);
		if (best < 0 || better(c, tie, &candidates[best], best_tie)) {
			best = (int)i;
			best_tie = tie;
		}
		if (c->warm && (warm < 0 || better(c, tie, &candidates[warm], warm_tie))) {
			warm = (int)i;
			warm_tie = tie;
		}
		if (lightest < 0 || lighter(c, &candidates[lightest]))
			lightest = (int)i;
	}
	if (warm < 0 || warm == best)
		return best;
	/* the warm one while its load allows, against the lightest loaded
	 * candidate: (w + 1) / lf_w <= ((1 + slack) (m + 1) + 1) / lf_m */
	const struct placement_candidate *w = &candidates[warm], *m = &candidates[lightest];
	uint64_t w_load = (uint64_t)w->carried_groups + w->assigned_groups + 1;
	uint64_t m_load = (uint64_t)m->carried_groups + m->assigned_groups + 1;
	uint64_t lhs = w_load * m->load_factor * 100;
	uint64_t rhs = (m_load * (100 + PLACEMENT_WARM_SLACK_PCT) + 100) * w->load_factor;
	return lhs <= rhs ? warm : best;
}

int placement_choose_backend(const struct placement_candidate *candidates, size_t count,
			     unsigned group_id)
{
	return choose(candidates, count, SIZE_MAX, group_id);
}

int placement_choose_alternative(const struct placement_candidate *candidates, size_t count,
				 size_t exclude, unsigned group_id)
{
	return choose(candidates, count, exclude, group_id);
}

int placement_rendezvous(const struct placement_candidate *candidates, size_t count,
			 uint64_t key)
{
	int best = -1;
	double best_score = 0;
	for (size_t i = 0; i < count; i++) {
		const struct placement_candidate *c = &candidates[i];
		if (c->status != BACKEND_STATUS_ONLINE || c->load_factor == 0)
			continue;
		uint64_t h = hash_mix64(hash_fnv1a64_add(hash_fnv1a64(&key, sizeof(key)), c->name,
							 strlen(c->name)));
		/* u uniform in (0, 1]; the weighted winner maximises lf / -ln(u) */
		double u = ((double)(h >> 11) + 1.0) / 9007199254740992.0;
		double score = -(double)c->load_factor / log(u);
		if (best < 0 || score > best_score) {
			best = (int)i;
			best_score = score;
		}
	}
	return best;
}
