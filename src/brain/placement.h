/* placement.h - where a group without a backend goes.
 *
 * A new group goes to the online backend of the local site with the fewest
 * assigned groups relative to its load factor: the backend minimising
 * (assigned + 1) / load_factor.  Backends with load factor 0, or not online,
 * get nothing.  Ties are broken by a hash of (group, backend name), so that
 * equal backends share new groups evenly instead of the first name winning.
 *
 * Metacache affinity: a candidate marked warm (it held the group within
 * metacache_ttl, so the group's indexes are likely still cached there) is
 * preferred as long as its load allows: the best warm candidate wins when,
 * counting the new group, it would carry at most PLACEMENT_WARM_SLACK_PCT
 * percent plus one group more (relative to its load factor) than the least
 * loaded candidate would: (w + 1) / lf_w <= (1.1 (m + 1) + 1) / lf_m, where
 * w and m count carried_groups + assigned_groups.  The slack is kept below
 * balancing's default hysteresis (balance.h), so that a warm choice does not
 * itself give the balancer a reason to move the group.
 *
 * Pure: the caller passes the candidates and their counts; nothing is read
 * or written here.  Two proxies that decide at the same moment may pick
 * different backends; the GeoDB's conditional insert makes one of them win
 * and both then use the stored row.
 */
#ifndef BRAIN_PLACEMENT_H
#define BRAIN_PLACEMENT_H

#include "brain/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLACEMENT_WARM_SLACK_PCT 10

struct placement_candidate {
	const char *name;
	enum backend_status status;
	unsigned load_factor;     /* 0..100 */
	unsigned assigned_groups; /* groups currently assigned to it */
	bool warm;                /* held this group within metacache_ttl */
	/* groups it carries besides assigned_groups, counted in the warm
	 * allowance only: an alternative's choice spreads one backend's groups
	 * (assigned_groups = those of them that already have the candidate as
	 * their alternative), while the load that would follow a failover is
	 * the candidate's own groups (here) plus those */
	unsigned carried_groups;
};

/* Index of the chosen candidate, or -1 if none can take a group. */
int placement_choose_backend(const struct placement_candidate *candidates, size_t count,
			     unsigned group_id);

/* The same rule for a group's alternative backend (failover.h): never
 * candidates[exclude] (the group's own backend).  For an even failover the
 * caller sets assigned_groups to the number of groups of the same backend
 * that already have the candidate as their alternative, so that when one
 * backend dies its groups spread over all the others by load factor. */
int placement_choose_alternative(const struct placement_candidate *candidates, size_t count,
				 size_t exclude, unsigned group_id);

/* A choice that depends on nothing but the candidates' names, statuses and
 * load factors (weighted rendezvous hashing of (key, name)): every host
 * with the same backend list picks the same one, whatever its counts, and
 * a backend added or removed moves only the keys it wins or held.  For
 * placements no GeoDB write settles (site force moves).  -1: none online
 * with load factor > 0. */
int placement_rendezvous(const struct placement_candidate *candidates, size_t count,
			 uint64_t key);

#endif
