/* placement.c - see placement.h. */
#include "brain/placement.h"

#include "util/hash.h"

#include <stdint.h>
#include <string.h>

static uint64_t tie_break(unsigned group_id, const char *name)
{
	uint32_t g = group_id;
	uint64_t h = hash_fnv1a64(&g, sizeof(g));
	return hash_fnv1a64_add(h, name, strlen(name));
}

static int choose(const struct placement_candidate *candidates, size_t count, size_t exclude,
		  unsigned group_id)
{
	int best = -1;
	uint64_t best_tie = 0;
	for (size_t i = 0; i < count; i++) {
		const struct placement_candidate *c = &candidates[i];
		if (i == exclude || c->status != BACKEND_STATUS_ONLINE || c->load_factor == 0)
			continue;
		uint64_t tie = tie_break(group_id, c->name);
		if (best < 0) {
			best = (int)i;
			best_tie = tie;
			continue;
		}
		const struct placement_candidate *b = &candidates[best];
		/* compare (c.assigned+1)/c.lf with (b.assigned+1)/b.lf */
		uint64_t lhs = (uint64_t)(c->assigned_groups + 1) * b->load_factor;
		uint64_t rhs = (uint64_t)(b->assigned_groups + 1) * c->load_factor;
		if (lhs < rhs || (lhs == rhs && tie < best_tie)) {
			best = (int)i;
			best_tie = tie;
		}
	}
	return best;
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
