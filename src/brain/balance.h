/* balance.h - spreading a site's load evenly, moving as little as possible.
 *
 * The controller runs a balancing round every balance_interval.  Its inputs
 * are, per backend of the site, what it can take (operator status, mark,
 * load factor) and how busy its host is (resource figures scraped from the
 * backend's node_exporter: CPU busy, memory available, disk IO busy), and
 * per group, what it weighs (the sessions and logins the proxies send to
 * it, summed over the site's daemons), when it last moved, whether the
 * operator pinned it (sticky), and the backends it was on recently (their
 * caches are warm: metacache affinity).
 *
 *   load of a backend     the sum of its groups' weights (a moving group
 *                         counts on the backend the caller gives it);
 *   scope                 a backend can take groups when it is online,
 *                         marked up and has load factor > 0; one online and
 *                         up with load factor 0 drains (target 0: its groups
 *                         go first, whatever the hysteresis, at most
 *                         max_moves a round); one not online or marked down
 *                         is failover's business: its groups stay, and
 *                         neither they nor it count in the totals;
 *   target of a backend   its share of the site's total weight (the loads
 *                         of the backends that can take or drain) by load
 *                         factor, corrected by its resources: a host busier
 *                         than the site's average for its load gets a
 *                         smaller share (bounded; only when every backend
 *                         that can take groups has had enough samples);
 *   hot, cold             above target * (1 + hysteresis), below
 *                         target * (1 - hysteresis) (a new, empty backend
 *                         is cold: it pulls groups until it is within the
 *                         hysteresis of its share);
 *   plan                  the fewest, best-chosen moves, at most max_moves
 *                         per round: drains first; then, while a backend is
 *                         hot or cold, one group from the hottest hot
 *                         backend that can give one (when none is hot, or
 *                         none of them can and a backend is cold: from the
 *                         backend above its target whose best move carries
 *                         the most) to the coolest, the group whose weight
 *                         best fits min(excess over target of the source,
 *                         room below target of the destination).  A group
 *                         moves only if that strictly lowers the worse of
 *                         the two backends' ratios (so noise within the
 *                         hysteresis moves nothing, and a group never
 *                         moves on a mere swap), never a sticky
 *                         group, never a moving one, never one moved less
 *                         than min_stay ago, never twice in a round.  A
 *                         destination that held the group within
 *                         metacache_ttl (warm) and is below its target is
 *                         preferred when that move carries at least
 *                         BALANCE_WARM_SHARE of what the best cold one
 *                         would.  Ties are broken by a hash of group id and
 *                         backend name (placement.h): deterministic.
 *
 * The resource correction.  A host's pressure is its scarcest resource,
 * max(cpu_busy, 1 - mem_available, io_busy); its intensity is that pressure
 * divided by the load it had meanwhile relative to its share (resources.load
 * / uncorrected target): how busy it is per unit of its share.  A host whose
 * intensity is more than BALANCE_RESOURCE_DEAD_BAND above the site's mean
 * gets its share multiplied by mean * (1 + dead band) / intensity, never by
 * less than 1 - BALANCE_RESOURCE_MAX_CORRECTION; then all targets are scaled
 * so that they sum to the total again.  Dividing by the load keeps the
 * correction about the host (slower disks, a noisy neighbour), not about an
 * overload that balancing is fixing anyway: raw pressure would cut the share
 * of every hot host, which then sheds load, looks idle, and pulls it back.
 * Hosts below BALANCE_RESOURCE_MIN_LOAD of their share (their fixed costs,
 * memory above all, dominate) or at a pressure of BALANCE_RESOURCE_SATURATED
 * or more (a resource at its limit says the host is full, not how fast it
 * is) are neither corrected nor part of the mean.
 *
 * balance_placement() is the same rule for one group that must go somewhere
 * (failover, first assignment after its backend was removed): the backend
 * with the most room, preferring one that held it within metacache_ttl.
 *
 * Pure: times are milliseconds on any clock; nothing is read or written
 * here; every allocation is per call and freed before return.
 */
#ifndef BRAIN_BALANCE_H
#define BRAIN_BALANCE_H

#include "brain/health.h"
#include "brain/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BALANCE_INTERVAL_MS_DEFAULT 60000         /* balance_interval */
#define BALANCE_MAX_MOVES_DEFAULT 10              /* balance_max_moves */
#define BALANCE_HYSTERESIS_DEFAULT 0.10           /* balance_hysteresis: 10% over target */
#define BALANCE_MIN_STAY_MS_DEFAULT 3600000       /* group_min_stay */
#define BALANCE_METACACHE_TTL_MS_DEFAULT 86400000 /* metacache_ttl */
#define BALANCE_MIN_SAMPLES_DEFAULT 5             /* balance_min_samples */
#define BALANCE_RESOURCE_MAX_CORRECTION 0.25      /* a share is cut by at most 25% */
#define BALANCE_RESOURCE_DEAD_BAND 0.05           /* intensity within 5% of the mean: no cut */
#define BALANCE_RESOURCE_MIN_LOAD 0.5             /* below half its share a host is not judged */
#define BALANCE_RESOURCE_SATURATED 0.95           /* nor at a pressure of 95% or more */
#define BALANCE_WARM_SHARE 0.75                   /* a warm move must carry 75% of the best one */
#define BALANCE_RATIO_NO_TARGET 1e9               /* the ratio of a backend with load, target 0 */
#define BALANCE_HISTORY 4                         /* recent backends kept per group */

enum balance_mode { BALANCE_OFF, BALANCE_DRYRUN, BALANCE_ON };
const char *balance_mode_name(enum balance_mode mode);
int balance_mode_parse(const char *name, enum balance_mode *mode_r);

struct balance_settings {
	double hysteresis;        /* a backend is hot above target * (1 + hysteresis) */
	unsigned max_moves;       /* per round */
	int64_t min_stay_ms;      /* a group stays at least this long after a move */
	int64_t metacache_ttl_ms; /* a backend that held a group this recently is warm */
	unsigned min_samples;     /* resource samples needed before they count */
};
void balance_settings_init(struct balance_settings *set);

/* A host's resources, each averaged over the samples so far. */
struct balance_resources {
	unsigned samples;     /* 0: none (no backend_metrics_url, or not scraped yet) */
	double cpu_busy;      /* 0..1: share of CPU time not idle */
	double mem_available; /* 0..1: MemAvailable / MemTotal */
	double io_busy;       /* 0..1: share of time the busiest disk was busy */
	/* the backend's load (sum of its groups' weights, the same unit as
	 * balance_group.weight) averaged over the same samples; 0: not known,
	 * the current load is used instead (wrong for a while after moves) */
	double load;
};

struct balance_backend {
	const char *name;
	enum backend_status status; /* the operator's */
	enum health_mark mark;      /* the controller's */
	unsigned load_factor;       /* 0..100 */
	struct balance_resources resources;
};

struct balance_group {
	unsigned group_id;
	int backend;         /* index into the backends; -1: not assigned */
	double weight;       /* sessions + logins it brings (>= 0) */
	int64_t moved_at_ms; /* its last move; 0: never */
	bool sticky;         /* the operator pinned it: never moved by balancing */
	bool moving;         /* a move is in progress: left alone */
	/* the backends it was on before, newest first, with when it left them
	 * (index -1 or left 0: none) */
	int history[BALANCE_HISTORY];
	int64_t history_left_ms[BALANCE_HISTORY];
};

/* Per backend, what the round computed. */
struct balance_backend_view {
	double load;            /* sum of its groups' weights (before this round's moves) */
	double target;          /* its share */
	double ratio;           /* load / target (0 when target is 0 and load is 0;
				 * BALANCE_RATIO_NO_TARGET when target is 0 and load is not) */
	double resource_factor; /* the correction applied to its share (1: none) */
	bool can_take;          /* online, marked up, load factor > 0 */
};

struct balance_move {
	size_t group; /* index into the groups */
	unsigned group_id;
	int from, to; /* backend indexes */
	double weight;
	bool warm; /* to held the group within metacache_ttl */
	char reason[160];
};

struct balance_plan {
	struct balance_backend_view *backends; /* backend_count entries */
	struct balance_move *moves;            /* move_count entries, in order */
	size_t move_count;
	double max_ratio_before, max_ratio_after; /* over the backends that can take */
	/* why no (more) moves, then what the moves do: "balanced within
	 * hysteresis 10%; 0 moves, max ratio 1.07 -> 1.07", "balance_max_moves 10
	 * reached; 10 moves, max ratio 1.62 -> 1.31", "no movable group would
	 * lower the highest ratio (...)", "no backend can take groups" */
	char summary[200];
};

/* Plans one round at now_ms.  Returns 0 and fills *plan_r (free with
 * balance_plan_free()), -1 on allocation failure. */
int balance_plan(const struct balance_settings *set, const struct balance_backend *backends,
		 size_t backend_count, const struct balance_group *groups, size_t group_count,
		 int64_t now_ms, struct balance_plan *plan_r);
void balance_plan_free(struct balance_plan *plan);

/* Where one group goes (it has no usable backend): index of the backend
 * that can take groups with the lowest ratio after taking it (the most room
 * below its target), preferring a warm one (history within metacache_ttl)
 * unless that would put it above target + hysteresis; -1 if no backend can
 * take groups.  The group itself, if it is among groups (same group_id), is
 * left out of its old backend's load: it counts where it goes. */
int balance_placement(const struct balance_settings *set, const struct balance_backend *backends,
		      size_t backend_count, const struct balance_group *groups, size_t group_count,
		      const struct balance_group *group, int64_t now_ms);

/* A lower bound on the number of moves to bring every backend that can take
 * groups within [target * (1 - hysteresis), target * (1 + hysteresis)] and
 * every draining backend to no group, from this state (these weights and
 * targets), with groups that are neither sticky nor moving:
 *   out = for each hot backend, the fewest of its groups whose weights cover
 *         load - target * (1 + h) (heaviest first), plus for each draining
 *         backend all its groups;
 *   in  = the larger of: for each cold backend, the fewest groups of the
 *         other backends whose weights cover target * (1 - h) - load,
 *         summed; and the fewest groups of the backends that are not cold
 *         whose weights cover the cold backends' summed deficit (heaviest
 *         first);
 *   bound = max(out, in).
 * Every move takes one group off one backend and onto one other, and no k
 * groups carry more than the k heaviest: a hot backend needs at least its
 * count of groups to leave (moves into it only raise that); a cold one its
 * count to arrive; and the cold ones together need their summed deficit
 * from outside (moves among them leave their total as it is), where one
 * heavy group can fill only one of them.  It ignores where groups can go
 * (a plan must not overshoot a destination) and min_stay, so plans may need
 * more.  For the simulator's report. */
size_t balance_moves_lower_bound(const struct balance_settings *set,
				 const struct balance_backend *backends, size_t backend_count,
				 const struct balance_group *groups, size_t group_count,
				 int64_t now_ms);

#endif
