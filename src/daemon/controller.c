/* controller.c - see controller.h.
 *
 * One timer (tick) starts a try every controller_lease/3 (jittered while
 * this daemon does not hold the lease, so that a site's daemons do not
 * race in lockstep); at most one try is in flight.  While this daemon
 * holds the lease a second timer (step_down) is armed for the moment,
 * counted from the start of the latest successful try, when it must stop
 * believing it holds the lease; every successful renewal re-arms it.  The
 * GeoDB computes expires_at from its own clock at or after that start, so
 * the lease stays ours in the GeoDB at least until the step-down.
 */
#include "daemon/controller.h"

#include "daemon/controller_act.h"
#include "daemon/daemon.h"
#include "daemon/worker.h"
#include "store/geodb.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/strbuf.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The longest a SIGTERM waits for the release of the lease. */
#define RELEASE_TIMEOUT_MS 1000

struct controller {
	struct daemon *daemon;
	char lease_name[NAME_MAX_LEN + 1]; /* "controller/<site>" */
	char me_name[NAME_MAX_LEN + 1];    /* this process, as a holder */
	unsigned ttl_secs;
	unsigned interval_ms;  /* between two tries: TTL/3 */
	unsigned step_down_ms; /* without a renewal for this long, stop holding */

	struct event *tick;      /* the next try */
	struct event *step_down; /* armed while we hold the lease */
	struct event *release_timer;
	struct geodb_op *acquire; /* the try in flight */
	struct geodb_op *release;
	struct timespec try_started; /* of the try in flight */
	uint64_t tries;              /* all of them: varies the jitter */
	void (*released)(struct daemon *daemon);

	/* the view */
	bool me;                       /* we hold the lease */
	bool stopping;                 /* controller_stop() was called */
	bool geodb_failing;            /* the latest try got an error */
	char holder[NAME_MAX_LEN + 1]; /* as last seen; "" unknown */
	int64_t expires_at;            /* the holder's, as last seen */
	uint64_t elections, losses;

	/* acting (controller_act.h): a pass every probe_interval while we
	 * hold the lease, in the worker thread; it writes only while
	 * CLOCK_MONOTONIC ms < act_until (the step-down moment) */
	struct event *act_timer;
	_Atomic int64_t act_until;
	bool act_in_flight;
	struct controller_act_counts counts; /* summed over passes */
	time_t last_pass;
	int64_t last_balance_ms; /* monotonic: the latest round started */
	double max_ratio;        /* the latest round's, before its moves */
	/* the hosts' resources (metrics): touched only in worker jobs */
	struct controller_metrics metrics;
	struct controller_weights weights;
	struct controller_sites sites;
	unsigned live_daemons, backends, groups, moving;
	char last_error[512];
};

static struct timeval timeval_ms(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

static long elapsed_ms(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void tick_schedule(struct controller *c)
{
	long delay = c->interval_ms;
	if (!c->me) {
		/* 3/4 to 5/4 of the interval, differently for each daemon and
		 * each try */
		uint64_t h = hash_fnv1a64(c->me_name, strlen(c->me_name));
		h = hash_fnv1a64_add(h, &c->tries, sizeof(c->tries));
		delay = c->interval_ms * 3 / 4 + (long)(h % (c->interval_ms / 2 + 1));
	}
	struct timeval tv = timeval_ms(delay);
	evtimer_add(c->tick, &tv);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lose(struct controller *c, const char *reason)
{
	atomic_store(&c->act_until, 0);
	c->me = false;
	c->losses++;
	evtimer_del(c->step_down);
	log_warning("event=controller_lost site=%s lease=%s holder=%s reason=\"%s\"",
		    c->daemon->set->site, c->lease_name, c->me_name, reason);
}

static void step_down_fired(evutil_socket_t fd, short what, void *context)
{
	struct controller *c = context;
	char reason[128];
	snprintf(reason, sizeof(reason), "not renewed for %ums (controller_lease %us)",
		 c->step_down_ms, c->ttl_secs);
	lose(c, reason);
	/* in the GeoDB the lease may still be ours for a moment; who will
	 * have it next is not known */
	c->holder[0] = '\0';
	c->expires_at = 0;
}

static void counts_add(struct controller_act_counts *sum, const struct controller_act_counts *add)
{
	uint64_t *d = (uint64_t *)sum;
	const uint64_t *a = (const uint64_t *)add;
	for (size_t i = 0; i < sizeof(*sum) / sizeof(uint64_t); i++)
		d[i] += a[i];
}

static void act_done(void *arg, bool cancelled)
{
	struct controller_act_job *job = arg;
	if (cancelled) {
		free(job);
		return;
	}
	struct controller *c = job->owner;
	c->act_in_flight = false;
	counts_add(&c->counts, &job->counts);
	if (job->counts.balance_rounds > 0)
		c->max_ratio = job->max_ratio_before;
	c->last_pass = time(NULL);
	c->live_daemons = job->live_daemons;
	c->backends = job->backends;
	c->groups = job->groups;
	c->moving = job->moving;
	if (job->failed) {
		if (strcmp(c->last_error, job->error) != 0)
			log_warning("event=controller_pass_failed site=%s reason=\"%s\"",
				    c->daemon->set->site, job->error);
		snprintf(c->last_error, sizeof(c->last_error), "%s", job->error);
	} else {
		if (c->last_error[0] != '\0')
			log_info("event=controller_pass_ok site=%s", c->daemon->set->site);
		c->last_error[0] = '\0';
	}
	free(job);
}

static void job_balance_settings(const struct settings *set, struct balance_settings *b)
{
	balance_settings_init(b);
	b->hysteresis = set->balance_hysteresis / 100.0;
	b->max_moves = set->balance_max_moves;
	b->min_stay_ms = set->group_min_stay_ms;
	b->metacache_ttl_ms = set->metacache_ttl_ms;
	b->min_samples = set->metrics_min_samples;
}

/* Every probe_interval: one pass of decisions while we hold the lease. */
static void act_fired(evutil_socket_t fd, short what, void *context)
{
	struct controller *c = context;
	struct daemon *daemon = c->daemon;
	if (!c->me || c->stopping || c->act_in_flight)
		return;
	const struct settings *set = daemon->set;
	struct controller_act_job *job = calloc(1, sizeof(*job));
	snprintf(job->site, sizeof(job->site), "%s", set->site);
	health_settings_init(&job->health);
	job->health.failover_delay_ms = set->backend_failover_delay_ms;
	job->health.recovery_delay_ms = set->backend_recovery_delay_ms;
	job->health.probe_interval_ms = set->probe_interval_ms;
	job->move_timeout_ms = set->move_timeout_ms;
	job->group_count = set->group_count;
	snprintf(job->doveadm_url, sizeof(job->doveadm_url), "%s", set->backend_doveadm_url);
	snprintf(job->doveadm_api_key, sizeof(job->doveadm_api_key), "%s",
		 set->backend_doveadm_api_key);
	job->doveadm_timeout_ms = set->probe_timeout_ms;
	snprintf(job->move_hook, sizeof(job->move_hook), "%s", set->move_hook);
	job->move_hook_timeout_ms = set->move_hook_timeout_ms;
	job->owner = c;
	job->act_until = &c->act_until;
	snprintf(job->me, sizeof(job->me), "%s", c->me_name);
	job->site_reachability_timeout_ms = set->site_reachability_timeout_ms;
	job->site_failover_delay_ms = set->site_failover_delay_ms;
	job->site_failover_rate = set->site_failover_rate;
	job->site_failback_delay_ms = set->site_failback_delay_ms;
	job->sites = &c->sites;
	balance_mode_parse(set->balance, &job->balance_mode);
	job_balance_settings(set, &job->balance);
	int64_t now = mono_ms();
	if (job->balance_mode != BALANCE_OFF &&
	    (c->last_balance_ms == 0 || now - c->last_balance_ms >= set->balance_interval_ms)) {
		job->balance_due = true;
		c->last_balance_ms = now;
	}
	job->metrics = &c->metrics;
	job->weights = &c->weights;
	job->worker = daemon->worker;
	c->act_in_flight = true;
	worker_submit(daemon->worker, controller_act_run, act_done, job);
}

static void acquired(void *context, int result, const struct geodb_lease *lease, const char *error)
{
	struct controller *c = context;
	struct daemon *daemon = c->daemon;
	c->acquire = NULL;
	if (result < 0) {
		if (!c->geodb_failing)
			log_warning("event=controller_geodb_failing site=%s lease=%s reason=\"%s\"",
				    daemon->set->site, c->lease_name, error);
		c->geodb_failing = true;
		return; /* a holder steps down when step_down fires */
	}
	if (c->geodb_failing)
		log_info("event=controller_geodb_ok site=%s lease=%s", daemon->set->site,
			 c->lease_name);
	c->geodb_failing = false;

	if (result == 0) {
		if (c->me) {
			char reason[160];
			snprintf(reason, sizeof(reason), "held by %s", lease->holder);
			lose(c, reason);
		}
		snprintf(c->holder, sizeof(c->holder), "%s", lease->holder);
		c->expires_at = lease->expires_at;
		return;
	}

	/* ours in the GeoDB, for as long as the step-down allows */
	long remaining = (long)c->step_down_ms - elapsed_ms(&c->try_started);
	if (remaining <= 0) {
		/* the answer came too late to rely on */
		if (c->me)
			lose(c, "the renewal was answered too late");
		return;
	}
	struct timeval tv = timeval_ms(remaining);
	evtimer_add(c->step_down, &tv);
	if (!c->me) {
		const char *reason = "lease free";
		char previous[160];
		if (c->holder[0] != '\0' && strcmp(c->holder, c->me_name) != 0) {
			snprintf(previous, sizeof(previous), "lease of %s released or expired",
				 c->holder);
			reason = previous;
		}
		c->me = true;
		c->elections++;
		log_info("event=controller_elected site=%s lease=%s holder=%s expires_at=%lld "
			 "reason=\"%s\"",
			 daemon->set->site, c->lease_name, c->me_name, (long long)lease->expires_at,
			 reason);
	}
	snprintf(c->holder, sizeof(c->holder), "%s", c->me_name);
	c->expires_at = lease->expires_at;
	/* the worker may write until the step-down moment */
	atomic_store(&c->act_until, mono_ms() + remaining);
}

static void release_timeout(evutil_socket_t fd, short what, void *context);

static void tick_fired(evutil_socket_t fd, short what, void *context)
{
	struct controller *c = context;
	if (c->acquire == NULL) {
		clock_gettime(CLOCK_MONOTONIC, &c->try_started);
		c->acquire = geodb_lease_acquire_async(c->daemon->geodb, c->lease_name, c->me_name,
						       c->ttl_secs, acquired, c);
	}
	c->tries++;
	tick_schedule(c);
}

struct plan_request {
	controller_plan_callback *callback;
	void *context;
	struct strbuf json, text;
	bool want_text;
	struct controller_act_job *job;
};

static void plan_done(void *arg, bool cancelled)
{
	struct plan_request *r = arg;
	if (!cancelled) {
		if (r->job->failed)
			r->callback(r->context, NULL, r->job->error);
		else
			r->callback(r->context, r->want_text ? r->text.data : r->json.data, NULL);
	}
	strbuf_free(&r->json);
	strbuf_free(&r->text);
	free(r->job);
	free(r);
}

static void plan_run(struct geodb *db, const char *open_error, void *arg)
{
	struct plan_request *r = arg;
	controller_act_run(db, open_error, r->job);
}

void controller_plan(struct daemon *daemon, bool text, controller_plan_callback *callback,
		     void *context)
{
	struct controller *c = daemon->controller;
	const struct settings *set = daemon->set;
	struct plan_request *r = calloc(1, sizeof(*r));
	r->callback = callback;
	r->context = context;
	struct controller_act_job *job = calloc(1, sizeof(*job));
	r->job = job;
	snprintf(job->site, sizeof(job->site), "%s", set->site);
	health_settings_init(&job->health);
	job->health.probe_interval_ms = set->probe_interval_ms;
	job->group_count = set->group_count;
	job->plan_only = true;
	balance_mode_parse(set->balance, &job->balance_mode);
	job_balance_settings(set, &job->balance);
	job->metrics = &c->metrics;
	job->weights = &c->weights;
	job->act_until = &c->act_until;
	job->worker = daemon->worker;
	job->owner = c;
	job->plan_json = &r->json;
	job->plan_text = &r->text;
	r->want_text = text;
	worker_submit(daemon->worker, plan_run, plan_done, r);
}

void controller_init(struct daemon *daemon)
{
	struct controller *c = calloc(1, sizeof(*c));
	daemon->controller = c;
	c->daemon = daemon;
	/* a site name longer than 52 characters is cut (the GeoDB's names
	 * are at most NAME_MAX_LEN) */
	snprintf(c->lease_name, sizeof(c->lease_name), "controller/%s", daemon->set->site);
	snprintf(c->me_name, sizeof(c->me_name), "%.52s/%d", daemon->writer, (int)getpid());
	unsigned ttl_ms = daemon->set->controller_lease_ms;
	c->ttl_secs = (ttl_ms + 999) / 1000;
	c->interval_ms = ttl_ms / 3;
	c->step_down_ms = ttl_ms * 2 / 3;
	if (c->step_down_ms > c->ttl_secs * 1000 - 1000)
		c->step_down_ms = c->ttl_secs * 1000 - 1000;
	c->tick = evtimer_new(daemon->base, tick_fired, c);
	c->step_down = evtimer_new(daemon->base, step_down_fired, c);
	c->release_timer = evtimer_new(daemon->base, release_timeout, c);
	snprintf(c->metrics.url, sizeof(c->metrics.url), "%s", daemon->set->backend_metrics_url);
	c->metrics.interval_ms = daemon->set->metrics_interval_ms;
	c->metrics.timeout_ms = daemon->set->probe_timeout_ms;
	c->metrics.window = daemon->set->metrics_min_samples * 2;
	c->act_timer = event_new(daemon->base, -1, EV_PERSIST, act_fired, c);
	struct timeval act_tv = timeval_ms(daemon->set->probe_interval_ms);
	evtimer_add(c->act_timer, &act_tv);
	tick_schedule(c);
}

static void release_finish(struct controller *c)
{
	evtimer_del(c->release_timer);
	void (*released)(struct daemon * daemon) = c->released;
	c->released = NULL;
	if (released != NULL)
		released(c->daemon);
}

static void release_done(void *context, const char *error)
{
	struct controller *c = context;
	c->release = NULL;
	if (error != NULL)
		log_warning("event=controller_release_failed site=%s lease=%s holder=%s "
			    "reason=\"%s\"",
			    c->daemon->set->site, c->lease_name, c->me_name, error);
	else
		log_info("event=controller_released site=%s lease=%s holder=%s",
			 c->daemon->set->site, c->lease_name, c->me_name);
	release_finish(c);
}

static void release_timeout(evutil_socket_t fd, short what, void *context)
{
	struct controller *c = context;
	geodb_op_cancel(&c->release);
	log_warning("event=controller_release_failed site=%s lease=%s holder=%s reason=\"no answer "
		    "within %ums\"",
		    c->daemon->set->site, c->lease_name, c->me_name, RELEASE_TIMEOUT_MS);
	release_finish(c);
}

bool controller_stop(struct daemon *daemon, void (*released)(struct daemon *daemon))
{
	struct controller *c = daemon->controller;
	if (c == NULL || c->stopping)
		return false;
	c->stopping = true;
	evtimer_del(c->tick);
	evtimer_del(c->step_down);
	evtimer_del(c->act_timer);
	atomic_store(&c->act_until, 0);
	/* a try in flight may yet make us the holder: release in that case
	 * too (the release is conditional on the holder, so it is harmless) */
	bool maybe_holder = c->me || c->acquire != NULL;
	geodb_op_cancel(&c->acquire);
	c->me = false;
	if (!maybe_holder)
		return false;
	c->released = released;
	c->release = geodb_lease_release_async(daemon->geodb, c->lease_name, c->me_name,
					       release_done, c);
	struct timeval tv = timeval_ms(RELEASE_TIMEOUT_MS);
	evtimer_add(c->release_timer, &tv);
	return true;
}

void controller_deinit(struct daemon *daemon)
{
	struct controller *c = daemon->controller;
	if (c == NULL)
		return;
	geodb_op_cancel(&c->acquire);
	geodb_op_cancel(&c->release);
	event_free(c->tick);
	event_free(c->step_down);
	event_free(c->release_timer);
	event_free(c->act_timer);
	free(c->metrics.hosts);
	free(c->weights.weight);
	free(c->weights.seen);
	free(c);
	daemon->controller = NULL;
}

/* ---- exposure ---- */

void controller_status_json(struct daemon *daemon, struct strbuf *out)
{
	const struct controller *c = daemon->controller;
	strbuf_append(out, "\"controller\":{\"lease\":");
	strbuf_append_json_string(out, c->lease_name);
	strbuf_append(out, ",\"holder\":");
	strbuf_append_json_string(out, c->holder);
	strbuf_printf(out, ",\"me\":%s,\"expires_at\":%lld,\"elections\":%llu",
		      c->me ? "true" : "false", (long long)c->expires_at,
		      (unsigned long long)c->elections);
	const struct controller_act_counts *k = &c->counts;
	strbuf_printf(out,
		      ",\"last_pass\":%ld,\"live_daemons\":%u,\"backends\":%u,\"groups\":%u,"
		      "\"moving\":%u,\"passes\":%llu,\"pass_failures\":%llu,\"marks_down\":%llu,"
		      "\"marks_up\":%llu,\"failovers\":%llu,\"stranded\":%llu,"
		      "\"moves_acked\":%llu,\"moves_source_down\":%llu,\"moves_timed_out\":%llu,"
		      "\"alt_changes\":%llu,\"doveadm_kicks\":%llu,\"doveadm_failures\":%llu,"
		      "\"hook_runs\":%llu,\"hook_failures\":%llu,\"error\":",
		      (long)c->last_pass, c->live_daemons, c->backends, c->groups, c->moving,
		      (unsigned long long)k->passes, (unsigned long long)k->pass_failures,
		      (unsigned long long)k->marks_down, (unsigned long long)k->marks_up,
		      (unsigned long long)k->failovers, (unsigned long long)k->stranded,
		      (unsigned long long)k->moves_acked, (unsigned long long)k->moves_source_down,
		      (unsigned long long)k->moves_timed_out, (unsigned long long)k->alt_changes,
		      (unsigned long long)k->doveadm_kicks, (unsigned long long)k->doveadm_failures,
		      (unsigned long long)k->hook_runs, (unsigned long long)k->hook_failures);
	strbuf_append_json_string(out, c->last_error);
	strbuf_printf(out,
		      ",\"site_heartbeats\":%llu,\"site_reachability_changes\":%llu,"
		      "\"site_failover\":{\"cells_written\":%llu,\"cells_released\":%llu,"
		      "\"cells_cleaned\":%llu,\"failover_site_changes\":%llu,"
		      "\"cells_held\":%u,\"groups_failed_away\":%u}",
		      (unsigned long long)k->site_heartbeats,
		      (unsigned long long)k->site_reachability_changes,
		      (unsigned long long)k->site_cells_written,
		      (unsigned long long)k->site_cells_released,
		      (unsigned long long)k->site_cells_cleaned,
		      (unsigned long long)k->site_failover_site_changes, c->sites.cells_held,
		      c->sites.groups_failed_away);
	strbuf_printf(out,
		      ",\"balance\":{\"mode\":\"%s\",\"rounds\":%llu,\"moves\":%llu,"
		      "\"moves_dryrun\":%llu,\"max_ratio\":%.3f}}",
		      c->daemon->set->balance, (unsigned long long)k->balance_rounds,
		      (unsigned long long)k->balance_moves, (unsigned long long)k->balance_moves_dryrun,
		      c->max_ratio);
}

void controller_metrics(struct daemon *daemon, struct strbuf *out)
{
	const struct controller *c = daemon->controller;
	strbuf_printf(out,
		      "# HELP mailcluster_controller Whether this daemon holds its site's "
		      "controller lease.\n"
		      "# TYPE mailcluster_controller gauge\n"
		      "mailcluster_controller %d\n"
		      "# HELP mailcluster_controller_elections_total Times this daemon gained the "
		      "controller lease.\n"
		      "# TYPE mailcluster_controller_elections_total counter\n"
		      "mailcluster_controller_elections_total %llu\n"
		      "# HELP mailcluster_controller_losses_total Times this daemon lost the "
		      "controller lease (not counting shutdown).\n"
		      "# TYPE mailcluster_controller_losses_total counter\n"
		      "mailcluster_controller_losses_total %llu\n",
		      c->me ? 1 : 0, (unsigned long long)c->elections,
		      (unsigned long long)c->losses);
	const struct controller_act_counts *k = &c->counts;
	strbuf_printf(out,
		      "# HELP mailcluster_controller_passes_total Decision passes this daemon ran "
		      "as controller.\n"
		      "# TYPE mailcluster_controller_passes_total counter\n"
		      "mailcluster_controller_passes_total %llu\n"
		      "# HELP mailcluster_controller_pass_failures_total Passes that stopped on an "
		      "error.\n"
		      "# TYPE mailcluster_controller_pass_failures_total counter\n"
		      "mailcluster_controller_pass_failures_total %llu\n"
		      "# HELP mailcluster_backend_marks_total Backends this controller marked, by "
		      "mark.\n"
		      "# TYPE mailcluster_backend_marks_total counter\n"
		      "mailcluster_backend_marks_total{mark=\"down\"} %llu\n"
		      "mailcluster_backend_marks_total{mark=\"up\"} %llu\n"
		      "# HELP mailcluster_group_failovers_total Groups moved off a backend marked "
		      "down.\n"
		      "# TYPE mailcluster_group_failovers_total counter\n"
		      "mailcluster_group_failovers_total %llu\n"
		      "# HELP mailcluster_moves_finished_total Moves this controller finished, by "
		      "outcome.\n"
		      "# TYPE mailcluster_moves_finished_total counter\n"
		      "mailcluster_moves_finished_total{outcome=\"acknowledged\"} %llu\n"
		      "mailcluster_moves_finished_total{outcome=\"source_down\"} %llu\n"
		      "mailcluster_moves_finished_total{outcome=\"timeout\"} %llu\n"
		      "# HELP mailcluster_group_alternative_changes_total Alternative backends "
		      "chosen.\n"
		      "# TYPE mailcluster_group_alternative_changes_total counter\n"
		      "mailcluster_group_alternative_changes_total %llu\n"
		      "# HELP mailcluster_move_doveadm_kicks_total doveadm kicks, by result.\n"
		      "# TYPE mailcluster_move_doveadm_kicks_total counter\n"
		      "mailcluster_move_doveadm_kicks_total{result=\"ok\"} %llu\n"
		      "mailcluster_move_doveadm_kicks_total{result=\"failed\"} %llu\n"
		      "# HELP mailcluster_move_hook_runs_total move_hook runs, by result.\n"
		      "# TYPE mailcluster_move_hook_runs_total counter\n"
		      "mailcluster_move_hook_runs_total{result=\"ok\"} %llu\n"
		      "mailcluster_move_hook_runs_total{result=\"failed\"} %llu\n",
		      (unsigned long long)k->passes, (unsigned long long)k->pass_failures,
		      (unsigned long long)k->marks_down, (unsigned long long)k->marks_up,
		      (unsigned long long)k->failovers, (unsigned long long)k->moves_acked,
		      (unsigned long long)k->moves_source_down,
		      (unsigned long long)k->moves_timed_out, (unsigned long long)k->alt_changes,
		      (unsigned long long)k->doveadm_kicks, (unsigned long long)k->doveadm_failures,
		      (unsigned long long)k->hook_runs,
		      (unsigned long long)k->hook_failures);
	strbuf_printf(out,
		      "# HELP mailcluster_site_heartbeats_total Heartbeats this controller wrote "
		      "for its site.\n"
		      "# TYPE mailcluster_site_heartbeats_total counter\n"
		      "mailcluster_site_heartbeats_total %llu\n"
		      "# HELP mailcluster_site_reachability_changes_total Other sites seen "
		      "becoming reachable or unreachable.\n"
		      "# TYPE mailcluster_site_reachability_changes_total counter\n"
		      "mailcluster_site_reachability_changes_total %llu\n"
		      "# HELP mailcluster_site_failover_cells_total Failover cells this site's "
		      "controller wrote (groups of another site taken over), released (given "
		      "back) and deleted as void.\n"
		      "# TYPE mailcluster_site_failover_cells_total counter\n"
		      "mailcluster_site_failover_cells_total{action=\"written\"} %llu\n"
		      "mailcluster_site_failover_cells_total{action=\"released\"} %llu\n"
		      "mailcluster_site_failover_cells_total{action=\"cleaned\"} %llu\n",
		      (unsigned long long)k->site_heartbeats,
		      (unsigned long long)k->site_reachability_changes,
		      (unsigned long long)k->site_cells_written,
		      (unsigned long long)k->site_cells_released,
		      (unsigned long long)k->site_cells_cleaned);
	strbuf_printf(out,
		      "# HELP mailcluster_balance_rounds_total Balancing rounds this controller "
		      "ran.\n"
		      "# TYPE mailcluster_balance_rounds_total counter\n"
		      "mailcluster_balance_rounds_total %llu\n"
		      "# HELP mailcluster_balance_moves_total Balancing moves, started or only "
		      "planned (dryrun).\n"
		      "# TYPE mailcluster_balance_moves_total counter\n"
		      "mailcluster_balance_moves_total{dryrun=\"no\"} %llu\n"
		      "mailcluster_balance_moves_total{dryrun=\"yes\"} %llu\n"
		      "# HELP mailcluster_balance_max_ratio The most loaded backend's load over its "
		      "share, at the latest round.\n"
		      "# TYPE mailcluster_balance_max_ratio gauge\n"
		      "mailcluster_balance_max_ratio %.3f\n",
		      (unsigned long long)k->balance_rounds, (unsigned long long)k->balance_moves,
		      (unsigned long long)k->balance_moves_dryrun, c->max_ratio);
}
