/* health.h - the controller's decision whether a backend is up or down.
 *
 * Every daemon of a site probes every backend of the site every
 * probe_interval and writes its latest observation to the GeoDB: ok or
 * failing, and since when its current streak (of ok or of failing probes)
 * has lasted.  The site's controller (the daemon holding the controller
 * lease) reads those observations and, once per tick, asks health_decide()
 * what the backend's mark should be:
 *
 *   up -> down  when a strict majority of the site's live daemons have each
 *               seen the backend failing, without a break, for at least
 *               backend_failover_delay.  One daemon's bad link is not an
 *               outage, and a backend down for a few seconds is cheaper to
 *               wait for than to evacuate.
 *   down -> up  when a strict majority of the live daemons have each seen it
 *               healthy for at least backend_recovery_delay.
 *
 * The mark is the controller's own column, next to the operator's status:
 * an operator's offline or standby is never changed, and while the operator
 * status is not online the controller leaves the mark as it is.
 *
 * An observation older than stale_probe_intervals * probe_interval is no
 * observation: that daemon still counts as live (it is in the denominator of
 * the majority) but is no witness either way.  A daemon is live while its
 * heartbeat is as fresh as an observation must be (health_observer_is_live).
 *
 * Pure: times are milliseconds on any clock the caller likes (unix ms in the
 * daemon, virtual ms in the simulator); nothing is read, written or
 * allocated here.
 */
#ifndef BRAIN_HEALTH_H
#define BRAIN_HEALTH_H

#include "brain/types.h"

#include <stddef.h>
#include <stdint.h>

#define HEALTH_FAILOVER_DELAY_MS_DEFAULT 30000 /* backend_failover_delay */
#define HEALTH_RECOVERY_DELAY_MS_DEFAULT 30000 /* backend_recovery_delay */
#define HEALTH_PROBE_INTERVAL_MS_DEFAULT 2000  /* probe_interval */
#define HEALTH_STALE_PROBE_INTERVALS_DEFAULT 3

struct health_settings {
	int64_t failover_delay_ms;
	int64_t recovery_delay_ms;
	int64_t probe_interval_ms;
	/* an observation (or heartbeat) older than this many probe intervals
	 * does not count */
	unsigned stale_probe_intervals;
};

/* Fills in the defaults above. */
void health_settings_init(struct health_settings *set);

/* The controller's mark of a backend. */
enum health_mark { HEALTH_MARK_UP, HEALTH_MARK_DOWN };
const char *health_mark_name(enum health_mark mark);

/* What the controller currently knows of one backend. */
struct health_backend {
	const char *name;
	enum backend_status status; /* the operator's; never changed here */
	enum health_mark mark;      /* the controller's */
	int64_t mark_since_ms;      /* when the mark was last changed */
};

/* One live daemon's latest observation of the backend. */
struct health_observation {
	bool ok;
	/* when this daemon's current streak began: its failing_since when !ok,
	 * its ok_since when ok (the time of the first probe of the streak) */
	int64_t since_ms;
	int64_t observed_at_ms; /* the latest probe's time */
};

struct health_decision {
	enum health_mark mark; /* the mark from now on */
	bool changed;          /* mark != backend->mark */
	/* a majority of the live daemons sees it failing right now, however
	 * short the streak: not yet a reason to mark it down, but a reason not
	 * to move groups onto it (failover.h) */
	bool suspect;
	unsigned live_observers;
	unsigned fresh;        /* live daemons with a fresh observation */
	unsigned failing;      /* ... of which failing */
	unsigned failing_long; /* ... failing for >= backend_failover_delay */
	unsigned ok_long;      /* ... ok for >= backend_recovery_delay */
	char reason[200];      /* a sentence for the log and the admin API */
};

/* Whether a daemon whose latest heartbeat (or any write) was at
 * heartbeat_ms still counts as live at now_ms. */
bool health_observer_is_live(const struct health_settings *set, int64_t heartbeat_ms,
			     int64_t now_ms);
/* Whether an observation still counts at now_ms. */
bool health_observation_is_fresh(const struct health_settings *set,
				 const struct health_observation *observation, int64_t now_ms);

/* Decides the backend's mark at now_ms.  observations are the latest ones of
 * the live daemons (at most one per daemon; a live daemon without one is
 * simply left out), live_observers the number of live daemons of the site
 * (raised to observation_count if smaller).  Reasons read like
 * "3 of 4 daemons have seen it failing for 31 s (backend_failover_delay 30 s)". */
void health_decide(const struct health_settings *set, const struct health_backend *backend,
		   const struct health_observation *observations, size_t observation_count,
		   unsigned live_observers, int64_t now_ms, struct health_decision *decision_r);

#endif
