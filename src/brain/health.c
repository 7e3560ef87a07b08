/* health.c - see health.h. */
#include "brain/health.h"

#include <stdio.h>

void health_settings_init(struct health_settings *set)
{
	set->failover_delay_ms = HEALTH_FAILOVER_DELAY_MS_DEFAULT;
	set->recovery_delay_ms = HEALTH_RECOVERY_DELAY_MS_DEFAULT;
	set->probe_interval_ms = HEALTH_PROBE_INTERVAL_MS_DEFAULT;
	set->stale_probe_intervals = HEALTH_STALE_PROBE_INTERVALS_DEFAULT;
}

const char *health_mark_name(enum health_mark mark)
{
	return mark == HEALTH_MARK_DOWN ? "down" : "up";
}

static int64_t stale_after_ms(const struct health_settings *set)
{
	return (int64_t)set->stale_probe_intervals * set->probe_interval_ms;
}

bool health_observer_is_live(const struct health_settings *set, int64_t heartbeat_ms,
			     int64_t now_ms)
{
	return now_ms - heartbeat_ms <= stale_after_ms(set);
}

bool health_observation_is_fresh(const struct health_settings *set,
				 const struct health_observation *observation, int64_t now_ms)
{
	return now_ms - observation->observed_at_ms <= stale_after_ms(set);
}

/* "31 s", or "2.5 s" when not whole: durations and delays in reasons. */
static const char *seconds(char *buf, size_t size, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	if (ms % 1000 == 0 || ms >= 10000)
		snprintf(buf, size, "%lld s", (long long)(ms / 1000));
	else
		snprintf(buf, size, "%lld.%lld s", (long long)(ms / 1000),
			 (long long)(ms % 1000 / 100));
	return buf;
}

void health_decide(const struct health_settings *set, const struct health_backend *backend,
		   const struct health_observation *observations, size_t observation_count,
		   unsigned live_observers, int64_t now_ms, struct health_decision *decision_r)
{
	struct health_decision *d = decision_r;
	char dur[24], delay[24];

	*d = (struct health_decision){.mark = backend->mark};
	if (live_observers < observation_count)
		live_observers = (unsigned)observation_count;
	d->live_observers = live_observers;

	/* the shortest streak among the long ones: "each of them has seen it
	 * failing (or ok) for at least this long" */
	int64_t failing_long_min = INT64_MAX, ok_long_min = INT64_MAX;
	for (size_t i = 0; i < observation_count; i++) {
		const struct health_observation *o = &observations[i];
		if (!health_observation_is_fresh(set, o, now_ms))
			continue;
		d->fresh++;
		int64_t streak = now_ms - o->since_ms;
		if (!o->ok) {
			d->failing++;
			if (streak >= set->failover_delay_ms) {
				d->failing_long++;
				if (streak < failing_long_min)
					failing_long_min = streak;
			}
		} else if (streak >= set->recovery_delay_ms) {
			d->ok_long++;
			if (streak < ok_long_min)
				ok_long_min = streak;
		}
	}
	d->suspect = d->failing * 2 > live_observers;

	if (backend->status != BACKEND_STATUS_ONLINE) {
		snprintf(d->reason, sizeof(d->reason),
			 "operator status is %s: the controller leaves its mark (%s) alone",
			 backend_status_name(backend->status), health_mark_name(backend->mark));
		return;
	}
	if (live_observers == 0) {
		snprintf(d->reason, sizeof(d->reason), "no live daemon observes it: mark %s kept",
			 health_mark_name(backend->mark));
		return;
	}
	unsigned majority = live_observers / 2 + 1;

	if (backend->mark == HEALTH_MARK_UP) {
		seconds(delay, sizeof(delay), set->failover_delay_ms);
		if (d->failing_long >= majority) {
			d->mark = HEALTH_MARK_DOWN;
			d->changed = true;
			snprintf(d->reason, sizeof(d->reason),
				 "%u of %u daemons have seen it failing for %s "
				 "(backend_failover_delay %s)",
				 d->failing_long, live_observers,
				 seconds(dur, sizeof(dur), failing_long_min), delay);
		} else {
			snprintf(d->reason, sizeof(d->reason),
				 "%u of %u daemons see it failing, %u of them for "
				 "backend_failover_delay %s; %u needed: kept up",
				 d->failing, live_observers, d->failing_long, delay, majority);
		}
	} else {
		seconds(delay, sizeof(delay), set->recovery_delay_ms);
		if (d->ok_long >= majority) {
			d->mark = HEALTH_MARK_UP;
			d->changed = true;
			snprintf(d->reason, sizeof(d->reason),
				 "%u of %u daemons have seen it healthy for %s "
				 "(backend_recovery_delay %s)",
				 d->ok_long, live_observers, seconds(dur, sizeof(dur), ok_long_min),
				 delay);
		} else {
			snprintf(d->reason, sizeof(d->reason),
				 "%u of %u daemons see it healthy, %u of them for "
				 "backend_recovery_delay %s; %u needed: kept down",
				 d->fresh - d->failing, live_observers, d->ok_long, delay,
				 majority);
		}
	}
}
