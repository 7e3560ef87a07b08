/* failover.c - see failover.h. */
#include "brain/failover.h"

#include "brain/placement.h"

#include <stdlib.h>

bool failover_backend_can_take(const struct failover_backend *backend)
{
	return backend->status == BACKEND_STATUS_ONLINE && backend->mark == HEALTH_MARK_UP &&
	       backend->load_factor > 0;
}

static bool valid_index(int index, size_t count)
{
	return index >= 0 && (size_t)index < count;
}

void failover_group_set_warm(struct failover_group *group, const int *history,
			     const int64_t *left_ms, size_t history_count, int64_t now_ms,
			     int64_t ttl_ms)
{
	group->warm_count = 0;
	for (size_t h = 0; h < history_count && group->warm_count < FAILOVER_WARM_MAX; h++) {
		if (history[h] < 0)
			break;
		bool listed = history[h] == group->backend;
		for (unsigned w = 0; w < group->warm_count && !listed; w++)
			listed = group->warm[w] == history[h];
		if (!listed && now_ms - left_ms[h] <= ttl_ms)
			group->warm[group->warm_count++] = history[h];
	}
}

/* Marks the group's warm backends in candidates (and clears the others). */
static void mark_warm(struct placement_candidate *candidates, size_t n,
		      const struct failover_group *group)
{
	for (size_t b = 0; b < n; b++)
		candidates[b].warm = false;
	for (unsigned w = 0; w < group->warm_count && w < FAILOVER_WARM_MAX; w++) {
		if (valid_index(group->warm[w], n))
			candidates[group->warm[w]].warm = true;
	}
}

/* Whether the group's alternative is not one of its warm backends while
 * one of those can take groups. */
static bool warm_upgrade_possible(const struct failover_backend *backends, size_t n,
				  const struct failover_group *group)
{
	bool possible = false;
	for (unsigned w = 0; w < group->warm_count && w < FAILOVER_WARM_MAX; w++) {
		if (group->warm[w] == group->alt_backend)
			return false;
		if (valid_index(group->warm[w], n) && group->warm[w] != group->backend &&
		    failover_backend_can_take(&backends[group->warm[w]]))
			possible = true;
	}
	return possible;
}

static bool needs_alternative(const struct failover_backend *backends, size_t backend_count,
			      const struct failover_group *group)
{
	if (!valid_index(group->backend, backend_count))
		return false; /* unassigned: placement's business */
	return !valid_index(group->alt_backend, backend_count) ||
	       group->alt_backend == group->backend ||
	       !failover_backend_can_take(&backends[group->alt_backend]);
}

int failover_alternatives(const struct failover_backend *backends, size_t backend_count,
			  const struct failover_group *groups, size_t group_count,
			  size_t max_changes, struct failover_change *changes_r,
			  size_t *change_count_r)
{
	*change_count_r = 0;
	if (backend_count == 0 || max_changes == 0)
		return 0;

	/* pairs[p * n + a]: groups on backend p whose alternative is a */
	size_t n = backend_count;
	unsigned *pairs = calloc(n * n, sizeof(*pairs));
	struct placement_candidate *candidates = calloc(n, sizeof(*candidates));
	if (pairs == NULL || candidates == NULL) {
		free(pairs);
		free(candidates);
		return -1;
	}
	for (size_t i = 0; i < group_count; i++) {
		const struct failover_group *g = &groups[i];
		if (valid_index(g->backend, n) && !needs_alternative(backends, n, g))
			pairs[(size_t)g->backend * n + (size_t)g->alt_backend]++;
		if (valid_index(g->backend, n))
			candidates[g->backend].carried_groups++; /* for the warm allowance */
	}
	for (size_t b = 0; b < n; b++) {
		candidates[b].name = backends[b].name;
		candidates[b].load_factor = backends[b].load_factor;
		candidates[b].status = failover_backend_can_take(&backends[b])
					       ? BACKEND_STATUS_ONLINE
					       : BACKEND_STATUS_OFFLINE;
	}

	for (size_t i = 0; i < group_count && *change_count_r < max_changes; i++) {
		const struct failover_group *g = &groups[i];
		bool upgrade = false;
		if (!needs_alternative(backends, n, g)) {
			/* a usable alternative is kept, unless one of the group's
			 * warm backends can take it now (it was down or drained
			 * when the alternative was chosen) and its load allows */
			if (!valid_index(g->backend, n) || !warm_upgrade_possible(backends, n, g))
				continue;
			upgrade = true;
		}
		size_t p = (size_t)g->backend;
		for (size_t b = 0; b < n; b++)
			candidates[b].assigned_groups = pairs[p * n + b];
		if (upgrade) /* the group itself is counted on its alternative */
			candidates[g->alt_backend].assigned_groups--;
		mark_warm(candidates, n, g);
		int alt = placement_choose_alternative(candidates, n, p, g->group_id);
		if (alt < 0 || alt == g->alt_backend)
			continue; /* nothing can take it (asked again next time), or no change */
		if (upgrade && !candidates[alt].warm)
			continue; /* only ever to a warm one: no churn */
		if (upgrade)
			pairs[p * n + (size_t)g->alt_backend]--;
		pairs[p * n + (size_t)alt]++;
		changes_r[(*change_count_r)++] = (struct failover_change){
			.group = i,
			.group_id = g->group_id,
			.backend = alt,
			.old_backend = g->alt_backend,
		};
	}
	free(pairs);
	free(candidates);
	return 0;
}

/* A failover target: can take groups and is not failing right now. */
static bool can_receive(const struct failover_backend *backend)
{
	return failover_backend_can_take(backend) && !backend->suspect;
}

int failover_plan(const struct failover_backend *backends, size_t backend_count,
		  const struct failover_group *groups, size_t group_count,
		  struct failover_change *moves_r, size_t *move_count_r, size_t *stranded_r)
{
	size_t n = backend_count;
	*move_count_r = 0;
	*stranded_r = 0;

	/* the common case: nothing is marked down, nothing to do */
	bool any = false;
	for (size_t b = 0; b < n && !any; b++)
		any = backends[b].mark == HEALTH_MARK_DOWN;
	if (!any)
		return 0;

	/* for fresh choices, made only when needed: groups per backend,
	 * counting the moves planned so far */
	struct placement_candidate *candidates = NULL;

	for (size_t i = 0; i < group_count; i++) {
		const struct failover_group *g = &groups[i];
		if (!valid_index(g->backend, n) || backends[g->backend].mark != HEALTH_MARK_DOWN)
			continue;
		int target = -1;
		if (valid_index(g->alt_backend, n) && g->alt_backend != g->backend &&
		    can_receive(&backends[g->alt_backend])) {
			target = g->alt_backend;
		} else {
			if (candidates == NULL) {
				candidates = calloc(n, sizeof(*candidates));
				if (candidates == NULL)
					return -1;
				for (size_t b = 0; b < n; b++) {
					candidates[b].name = backends[b].name;
					candidates[b].load_factor = backends[b].load_factor;
					candidates[b].status = can_receive(&backends[b])
								       ? BACKEND_STATUS_ONLINE
								       : BACKEND_STATUS_OFFLINE;
				}
				for (size_t j = 0; j < group_count; j++) {
					if (valid_index(groups[j].backend, n))
						candidates[groups[j].backend].assigned_groups++;
				}
				for (size_t m = 0; m < *move_count_r; m++)
					candidates[moves_r[m].backend].assigned_groups++;
			}
			mark_warm(candidates, n, g);
			target = placement_choose_alternative(candidates, n, (size_t)g->backend,
							      g->group_id);
		}
		if (target < 0) {
			(*stranded_r)++;
			continue;
		}
		if (candidates != NULL)
			candidates[target].assigned_groups++;
		moves_r[(*move_count_r)++] = (struct failover_change){
			.group = i,
			.group_id = g->group_id,
			.backend = target,
			.old_backend = g->backend,
		};
	}
	free(candidates);
	return 0;
}

int failover_route(const struct failover_backend *backends, size_t backend_count,
		   const struct failover_group *group)
{
	if (!valid_index(group->backend, backend_count))
		return -1;
	const struct failover_backend *b = &backends[group->backend];
	if (b->status != BACKEND_STATUS_ONLINE)
		return -1; /* the operator's decision: not ours to route around */
	if (b->mark == HEALTH_MARK_UP)
		return group->backend;
	if (valid_index(group->alt_backend, backend_count) &&
	    group->alt_backend != group->backend &&
	    backends[group->alt_backend].status == BACKEND_STATUS_ONLINE &&
	    backends[group->alt_backend].mark == HEALTH_MARK_UP)
		return group->alt_backend;
	return -1;
}
