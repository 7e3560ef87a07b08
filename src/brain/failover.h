/* failover.h - where the groups of a dead backend go, decided before it dies.
 *
 * Every group has, next to its backend, a pre-chosen alternative backend in
 * the same site, so that the moment the controller marks a backend down
 * (health.h) every daemon already knows where each of its groups goes, and
 * the controller can move them all at once:
 *
 *   failover_alternatives()  keeps the alternatives current: a group whose
 *                            alternative is missing, is its own backend, or
 *                            cannot take groups gets a new one, at most
 *                            max_changes per call (so that a backend going
 *                            down rewrites its ~100 alternative cells over a
 *                            few ticks, not in one burst).  Alternatives are
 *                            spread by load factor, per backend: the groups
 *                            of one backend spread over all the others, so
 *                            that when it dies the others share its load.
 *   failover_plan()          the moves of this tick: every group whose
 *                            backend is marked down goes to its alternative,
 *                            or, when that cannot take it (or a majority of
 *                            daemons sees it failing right now), to a fresh
 *                            choice.  Nothing ever moves back when the
 *                            backend returns: a group only ever leaves a
 *                            backend that is marked down.
 *   failover_route()         what a daemon does with a login meanwhile: the
 *                            group's backend, or its alternative as soon as
 *                            the daemon sees the backend marked down (even
 *                            before it sees the move).
 *
 * Metacache affinity: a group's warm backends (those that held it within
 * metacache_ttl, from its history) are preferred as its alternative and as
 * a fresh failover target while their load allows (placement.h).
 *
 * A backend can take groups (as alternative or as failover target) when its
 * operator status is online, its mark is up and its load factor is > 0.
 *
 * The caller passes the site's backends and groups as arrays and refers to
 * backends by index; the functions are pure and deterministic (ties are
 * broken by the placement hash, placement.h).
 */
#ifndef BRAIN_FAILOVER_H
#define BRAIN_FAILOVER_H

#include "brain/health.h"
#include "brain/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FAILOVER_ALTERNATIVE_CHANGES_DEFAULT 100 /* per controller tick */

struct failover_backend {
	const char *name;
	enum backend_status status; /* the operator's */
	unsigned load_factor;       /* 0..100 */
	enum health_mark mark;      /* the controller's */
	bool suspect;               /* health_decision.suspect */
};

#define FAILOVER_WARM_MAX 4 /* as many as a group's history holds */

struct failover_group {
	unsigned group_id;
	int backend;     /* index into the backends, -1: not assigned */
	int alt_backend; /* index into the backends, -1: none chosen */
	/* backends (indexes) that held the group within metacache_ttl */
	unsigned warm_count;
	int warm[FAILOVER_WARM_MAX];
};

/* One change: group (index into the groups array) -> backend (index). */
struct failover_change {
	size_t group;
	unsigned group_id;
	int backend;
	int old_backend;
};

/* Fills group->warm from its history (backend indexes, -1 ending the list,
 * and when the group left each, same clock as now_ms): those it left within
 * ttl_ms, never its own backend. */
void failover_group_set_warm(struct failover_group *group, const int *history,
			     const int64_t *left_ms, size_t history_count, int64_t now_ms,
			     int64_t ttl_ms);

/* Online, marked up and load factor > 0. */
bool failover_backend_can_take(const struct failover_backend *backend);

/* New alternatives for at most max_changes groups that need one, written to
 * changes_r (room for max_changes; old_backend is the old alternative).
 * Groups whose alternative is merely suspect keep it (no churn for a flapping
 * backend); failover_plan() steps around it.  Allocates a
 * backend_count * backend_count table for the call; -1 if that fails. */
int failover_alternatives(const struct failover_backend *backends, size_t backend_count,
			  const struct failover_group *groups, size_t group_count,
			  size_t max_changes, struct failover_change *changes_r,
			  size_t *change_count_r);

/* The moves of this tick, written to moves_r (room for group_count).
 * stranded_r: groups of a down backend for which no backend can take them
 * (they stay and are asked again next tick).  A fresh choice allocates a
 * table of backend_count candidates for the call; -1 if that fails. */
int failover_plan(const struct failover_backend *backends, size_t backend_count,
		  const struct failover_group *groups, size_t group_count,
		  struct failover_change *moves_r, size_t *move_count_r, size_t *stranded_r);

/* Index of the backend a login of the group goes to, or -1 when it has none
 * right now (not assigned, its backend offline or standby by the operator,
 * or marked down with no usable alternative). */
int failover_route(const struct failover_backend *backends, size_t backend_count,
		   const struct failover_group *group);

#endif
