/* router.c - see router.h. */
#include "daemon/router.h"

#include "brain/move.h"
#include "daemon/daemon.h"
#include "daemon/prober.h"
#include "daemon/session.h"
#include "daemon/worker.h"
#include "store/geodb.h"
#include "store/localdb.h"
#include "util/log.h"
#include "util/strbuf.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* After a failed refresh or assignment, the next refresh comes sooner. */
#define RETRY_AFTER_FAILURE_MS 1000
/* While logins are held for a move, or acknowledgements wait: how often the
 * GeoDB is looked at (at most), and held logins and LMTP drains checked. */
#define MOVE_REFRESH_MS 500
#define MOVE_CHECK_MS 100

struct router_wait {
	struct router_wait *prev, *next;
	struct router *router;
	struct pending_assign *pending; /* NULL: waiting for the first load, or held */
	bool held;                      /* in router->holds: its group is moving */
	int64_t user_hold_until;        /* held because its user was just moved (unix ms) */
	struct route_result route;
	router_callback *callback;
	void *context;
};

/* One conditional insert in flight for a group, shared by every login that
 * needs that group meanwhile. */
struct pending_assign {
	struct router *router;
	unsigned group_id;
	struct geodb_op *op;
	struct geodb_group proposal;
	struct router_wait *waiters;
};

/* A move this daemon acknowledges once its LMTP transactions for the group
 * are over. */
struct pending_ack {
	struct pending_ack *next;
	unsigned group_id;
	uint64_t epoch;
	bool submitted;
};

struct refresh_waiter {
	struct refresh_waiter *next;
	router_refresh_callback *callback;
	void *context;
};

struct router {
	struct daemon *daemon;
	struct localdb *ldb;
	bool watch;  /* a local GeoDB whose commits we can see (SQLite) */
	bool remote; /* the LocalDB is kept in its file */
	struct pending_assign **pending; /* group_count slots */

	struct event *timer;
	struct geodb_op *refresh_op;
	struct refresh_waiter *refresh_waiters;
	/* logins that came before anything was loaded (no LocalDB file, first
	 * refresh in flight): routed when it ends */
	struct router_wait *load_waiters;
	bool geodb_ok;
	char geodb_error[512];
	bool dirty; /* changed since the file was written */
	bool site_checked;
	time_t last_refresh_ok, last_saved;
	uint64_t refreshes, refresh_failures, assignments, assign_failures, saves;
	uint64_t routed_local; /* decisions made from the LocalDB alone */

	/* moves (brain/move.h): per group, the epoch of the latest move seen
	 * and when it was first seen (unix ms) */
	uint64_t *move_epoch;
	int64_t *move_seen_ms;
	struct router_wait *holds; /* logins held for a moving group */
	struct pending_ack *acks;
	struct event *move_timer; /* armed while holds or acks wait */
	char observer[NAME_MAX_LEN + 1];

	/* readiness (see router_observation_written()): logins wait until
	 * this daemon's first observation is in the GeoDB and a LocalDB read
	 * started after it has been installed */
	bool ready;
	bool observed;        /* the first observation was written */
	bool read_after;      /* the refresh in flight started after that */
	struct event *ready_timer;
	uint64_t holds_total, holds_expired, acks_sent, ack_failures, moves_seen;
	uint64_t sessions_moved; /* sessions ended because their group's backend changed */
};

static struct router *router_of(struct daemon *daemon)
{
	return daemon->router;
}

static void set_geodb_down(struct router *router, const char *error)
{
	if (router->geodb_ok)
		log_warning("event=geodb_down driver=%s reason=\"%s\" note=\"routing goes on from "
			    "the LocalDB; new group assignments fail until it is back\"",
			    geodb_driver_name(router->daemon->geodb), error);
	router->geodb_ok = false;
	snprintf(router->geodb_error, sizeof(router->geodb_error), "%s", error);
}

static void set_geodb_up(struct router *router)
{
	if (!router->geodb_ok)
		log_info("event=geodb_up driver=%s", geodb_driver_name(router->daemon->geodb));
	router->geodb_ok = true;
	router->geodb_error[0] = '\0';
}

static void save_if_dirty(struct router *router)
{
	const char *path = router->daemon->set->localdb;
	if (!router->remote || !router->dirty || path == NULL || path[0] == '\0')
		return;
	const char *error;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (localdb_save(router->ldb, path, &error) < 0) {
		log_error("event=localdb_save_failed path=%s reason=\"%s\"", path, error);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	router->dirty = false;
	router->saves++;
	router->last_saved = time(NULL);
	log_debug("event=localdb_saved path=%s msecs=%ld", path,
		  (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
}

static int64_t now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void move_timer_arm(struct router *router)
{
	if (evtimer_pending(router->move_timer, NULL))
		return;
	struct timeval tv = {0, MOVE_CHECK_MS * 1000};
	evtimer_add(router->move_timer, &tv);
}

/* ---- moves: acknowledgements ---- */

struct ack_job {
	struct router *router;
	struct pending_ack *pa;
	struct geodb_move_ack ack;
	unsigned ttl_secs;
	int result;
	char error[400];
};

static void ack_run(struct geodb *db, const char *open_error, void *arg)
{
	struct ack_job *job = arg;
	const char *error = open_error;
	job->result = db == NULL ? -1 : geodb_move_ack_put(db, &job->ack, job->ttl_secs, &error);
	if (job->result < 0)
		snprintf(job->error, sizeof(job->error), "%s", error);
}

static void ack_unlink(struct router *router, struct pending_ack *pa)
{
	for (struct pending_ack **p = &router->acks; *p != NULL; p = &(*p)->next) {
		if (*p == pa) {
			*p = pa->next;
			free(pa);
			return;
		}
	}
}

static void ack_done(void *arg, bool cancelled)
{
	struct ack_job *job = arg;
	if (cancelled) {
		free(job);
		return;
	}
	struct router *router = job->router;
	if (job->result < 0) {
		router->ack_failures++;
		log_warning("event=move_ack_failed group=%u epoch=%llu reason=\"%s\" note=\"retried\"",
			    job->ack.group_id, (unsigned long long)job->ack.epoch, job->error);
		job->pa->submitted = false;
		move_timer_arm(router);
	} else {
		router->acks_sent++;
		log_info("event=move_ack group=%u epoch=%llu observer=%s", job->ack.group_id,
			 (unsigned long long)job->ack.epoch, job->ack.observer);
		ack_unlink(router, job->pa);
	}
	free(job);
}

/* Submits the acknowledgements whose group has no LMTP transaction left;
 * drops those whose move is over.  Returns whether some still wait. */
static bool acks_check(struct router *router)
{
	struct daemon *daemon = router->daemon;
	bool waiting = false;
	struct pending_ack *pa = router->acks, *next;
	for (; pa != NULL; pa = next) {
		next = pa->next;
		if (pa->submitted)
			continue;
		const struct geodb_group *g = localdb_group(router->ldb, pa->group_id);
		if (g == NULL || g->move_to[0] == '\0' || g->epoch != pa->epoch) {
			ack_unlink(router, pa); /* the move is over (or another began) */
			continue;
		}
		if (daemon->lmtp_inflight[pa->group_id] > 0) {
			waiting = true; /* LMTP transactions in flight finish first */
			continue;
		}
		struct ack_job *job = calloc(1, sizeof(*job));
		job->router = router;
		job->pa = pa;
		job->ack.group_id = pa->group_id;
		job->ack.epoch = pa->epoch;
		snprintf(job->ack.observer, sizeof(job->ack.observer), "%s", router->observer);
		job->ack.acked_at = time(NULL);
		job->ttl_secs = 2 * (daemon->set->move_timeout_ms / 1000) + 10;
		pa->submitted = true;
		worker_submit(daemon->worker, ack_run, ack_done, job);
	}
	return waiting;
}

/* After a change: moves this daemon has not seen yet.  Its sessions of the
 * group on the old backend are ended by sessions_reconcile(); the
 * acknowledgement follows once LMTP is drained. */
static void moves_scan(struct router *router)
{
	unsigned count = localdb_group_count(router->ldb);
	int64_t now = now_unix_ms();
	for (unsigned id = 0; id < count; id++) {
		const struct geodb_group *g = localdb_group(router->ldb, id);
		if (g == NULL || g->move_to[0] == '\0' || router->move_epoch[id] == g->epoch)
			continue;
		router->move_epoch[id] = g->epoch;
		router->move_seen_ms[id] = now;
		router->moves_seen++;
		log_info("event=move_seen group=%u from=%s to=%s epoch=%llu reason=\"%s\"", id,
			 g->backend, g->move_to, (unsigned long long)g->epoch, g->move_reason);
		struct pending_ack *pa = calloc(1, sizeof(*pa));
		pa->group_id = id;
		pa->epoch = g->epoch;
		pa->next = router->acks;
		router->acks = pa;
	}
	if (router->acks != NULL)
		move_timer_arm(router);
}

/* Where a session of group_id should be now: its backend's name, the
 * move's target when the group is moving (its sessions on the old backend
 * end), NULL when the group cannot be routed (nothing to say). */
static const char *session_target(struct router *router, const char *user, unsigned group_id,
				  struct route_result *route)
{
	const char *reason;
	enum route_status status =
		route_decide(router->ldb, router->daemon->set->site, user, route, &reason);
	if (status != ROUTE_OK) {
		/* no backend for new logins (standby, offline, marked down
		 * without an alternative): sessions may stay on the group's own
		 * backend (or the move's target), nowhere else */
		if (status != ROUTE_UNAVAILABLE || route->group.backend[0] == '\0' ||
		    route->group_id != group_id || route->site_failover || route->force_move_id != 0)
			return NULL;
		if (route->group.move_to[0] != '\0')
			return route->group.move_to;
		const struct geodb_backend *b = localdb_backend(router->ldb, route->group.backend);
		if (b == NULL || b->mark == HEALTH_MARK_DOWN)
			return NULL;
		return route->group.backend;
	}
	/* a moving group's sessions belong on the target only (a login held
	 * for move_timeout goes there before the switch); a group failed over
	 * to another site is served by its failover cell's backend */
	if (route->group.move_to[0] != '\0' && !route->site_failover && route->force_move_id == 0)
		return route->group.move_to;
	/* also when the user was moved to another group: only its backend
	 * matters */
	return route->backend.name;
}

static bool session_misplaced(struct router *router, const struct session *s, char *why,
			      size_t why_size)
{
	struct route_result route;
	const char *target = session_target(router, s->user, s->group_id, &route);
	if (target == NULL || strcmp(target, s->backend) == 0)
		return false;
	if (route.group_id != s->group_id)
		snprintf(why, why_size, "user moved from group %u to group %u on %s", s->group_id,
			 route.group_id, target);
	else if (route.group.move_to[0] != '\0')
		snprintf(why, why_size, "group %u moving from %s to %s", s->group_id,
			 route.group.backend, route.group.move_to);
	else if (route.force_move_id != 0)
		snprintf(why, why_size, "force move %lld: user %s now served by %s in site %s",
			 (long long)route.force_move_id, s->user, target, route.backend.site);
	else if (route.site_failover)
		snprintf(why, why_size, "group %u failed over to site %s (%s): now served by %s",
			 s->group_id, route.backend.site, route.site_failover_reason, target);
	else if (route.failover)
		snprintf(why, why_size, "backend %s marked down: group %u now served by %s",
			 s->backend, s->group_id, target);
	else
		snprintf(why, why_size, "group %u moved from %s to %s", s->group_id, s->backend,
			 target);
	return true;
}

/* After a change: every session whose user now belongs elsewhere ends, so
 * that no user keeps sessions on two backends. */
static void sessions_reconcile(struct router *router)
{
	struct daemon *daemon = router->daemon;
	struct session *s = daemon->sessions, *next;
	char why[256];
	for (; s != NULL; s = next) {
		next = s->next;
		if (!session_misplaced(router, s, why, sizeof(why)))
			continue;
		log_info("event=session_moved user=%s group=%u backend=%s session=%s reason=\"%s\"",
			 s->user, s->group_id, s->backend, s->session_id, why);
		router->sessions_moved++;
		session_kick_moving(s, why); /* may free s, not others */
	}
}

static void holds_recheck(struct router *router);
static void move_timer_fired(evutil_socket_t fd, short what, void *context);

static void route_load_waiters(struct router *router);
static void refresh_start(struct router *router);
static void refresh_sync(struct router *router);

/* Logins may be routed from now on; reason: why without the usual path
 * (NULL: the usual one). */
static void set_ready(struct router *router, const char *reason)
{
	router->ready = true;
	evtimer_del(router->ready_timer);
	if (reason != NULL)
		log_warning("event=router_ready reason=\"%s\"", reason);
	else
		log_info("event=router_ready reason=\"this daemon's observations are in the "
			 "GeoDB and its LocalDB was read after them\"");
}

static void ready_timeout(evutil_socket_t fd, short what, void *context)
{
	struct router *router = context;
	if (router->ready)
		return;
	set_ready(router, "no observation of this daemon reached the GeoDB in time: routing "
			  "anyway");
	route_load_waiters(router);
}

/* Whether the site has a backend to probe: without one this daemon writes
 * no observation and has nothing to wait for. */
static bool site_has_backends(struct router *router)
{
	size_t count;
	const struct geodb_backend *backends = localdb_backends(router->ldb, &count);
	for (size_t i = 0; i < count; i++) {
		if (strcmp(backends[i].site, router->daemon->set->site) == 0)
			return true;
	}
	return false;
}

/* Installs a snapshot (taking it); returns false if it was refused. */
static bool install(struct router *router, struct geodb_snapshot *snap)
{
	const char *error;
	int changed = localdb_replace(router->ldb, snap, &error);
	if (changed < 0) {
		log_error("event=localdb_refused reason=\"%s\"", error);
		set_geodb_down(router, error);
		return false;
	}
	router->refreshes++;
	router->last_refresh_ok = time(NULL);
	if (changed > 0) {
		router->dirty = true;
		moves_scan(router);
		sessions_reconcile(router);
		holds_recheck(router);
		struct localdb_stats stats;
		localdb_stats(router->ldb, &stats);
		log_debug("event=localdb_refreshed backends=%zu groups=%zu users=%zu",
			  stats.backends, stats.groups_assigned, stats.users);
	}
	set_geodb_up(router);
	if (router->refreshes == 1)
		prober_sync_now(router->daemon); /* the first probes need not wait a round */
	if (!router->ready && !site_has_backends(router))
		set_ready(router, "no backend in this daemon's site: nothing to probe");
	if (!router->site_checked) {
		router->site_checked = true;
		if (localdb_site(router->ldb, router->daemon->set->site) == NULL)
			log_warning("event=config_warning reason=\"site %s is not in the GeoDB yet: "
				    "add it with 'mailcluster site add %s' and add its backends; "
				    "logins fail with UNAVAILABLE until then\"",
				    router->daemon->set->site, router->daemon->set->site);
	}
	return true;
}

static void refresh_finished(struct router *router, const char *error)
{
	struct refresh_waiter *waiters = router->refresh_waiters;
	router->refresh_waiters = NULL;
	while (waiters != NULL) {
		struct refresh_waiter *w = waiters;
		waiters = w->next;
		w->callback(w->context, error);
		free(w);
	}
}

/* SQLite: read it now (microseconds to a few milliseconds). */
static void refresh_sync(struct router *router)
{
	struct geodb_snapshot snap;
	const char *error;
	if (geodb_snapshot_read(router->daemon->geodb, &snap, &error) < 0) {
		router->refresh_failures++;
		set_geodb_down(router, error);
		return;
	}
	if (!install(router, &snap))
		geodb_snapshot_free(&snap);
}

static void schedule(struct router *router, unsigned msecs)
{
	struct timeval tv = {msecs / 1000, (msecs % 1000) * 1000};
	evtimer_add(router->timer, &tv);
}

static void route_load_waiters(struct router *router);

void router_observation_written(struct daemon *daemon)
{
	struct router *router = router_of(daemon);
	if (router == NULL || router->observed)
		return;
	router->observed = true;
	if (router->ready)
		return;
	if (router->watch) {
		refresh_sync(router);
		if (router->geodb_ok) {
			set_ready(router, NULL);
			route_load_waiters(router);
		}
		return;
	}
	if (router->refresh_op == NULL)
		refresh_start(router);
	/* else: refreshed() starts another once this one is in */
}

static void refreshed(void *context, struct geodb_snapshot *snap, const char *error)
{
	struct router *router = context;
	bool refresh_again = false;
	router->refresh_op = NULL;
	bool after = router->read_after;
	router->read_after = false;
	if (snap == NULL) {
		router->refresh_failures++;
		set_geodb_down(router, error);
		if (!router->ready)
			set_ready(router, "the GeoDB is unreachable: routing from the LocalDB file");
	} else {
		if (!install(router, snap))
			geodb_snapshot_free(snap);
		free(snap);
		save_if_dirty(router);
		if (!router->ready && after)
			set_ready(router, NULL);
		else if (!router->ready && router->observed)
			refresh_again = true; /* started before the observation */
	}
	unsigned interval = router->daemon->set->localdb_refresh_ms;
	if (!router->geodb_ok && interval > RETRY_AFTER_FAILURE_MS)
		interval = RETRY_AFTER_FAILURE_MS;
	if ((router->holds != NULL || router->acks != NULL) && interval > MOVE_REFRESH_MS)
		interval = MOVE_REFRESH_MS; /* a move is on: see its end soon */
	schedule(router, refresh_again ? 0 : interval);
	route_load_waiters(router);
	refresh_finished(router, router->geodb_ok ? NULL : router->geodb_error);
}

/* A local GeoDB is looked at this often (a memory compare, no system
 * call), so that a move started by the CLI is seen at once. */
#define WATCH_CHECK_MS 250

static unsigned watch_interval(const struct router *router)
{
	unsigned ms = router->daemon->set->localdb_refresh_ms;
	return ms < WATCH_CHECK_MS ? ms : WATCH_CHECK_MS;
}

static void refresh_start(struct router *router)
{
	if (router->refresh_op != NULL)
		return; /* one at a time; its end reschedules */
	if (router->watch) {
		refresh_sync(router);
		schedule(router, watch_interval(router));
		refresh_finished(router, router->geodb_ok ? NULL : router->geodb_error);
		return;
	}
	evtimer_del(router->timer);
	router->read_after = router->observed;
	router->refresh_op = geodb_snapshot_read_async(router->daemon->geodb, refreshed, router);
}

static void timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct router *router = context;
	if (router->watch && !geodb_changed(router->daemon->geodb) && router->geodb_ok) {
		schedule(router, watch_interval(router));
		return;
	}
	refresh_start(router);
}

int router_init(struct daemon *daemon, const char **error_r)
{
	struct router *router = calloc(1, sizeof(*router));
	daemon->router = router;
	router->daemon = daemon;
	router->ldb = localdb_create(daemon->set->group_count);
	localdb_set_metacache_ttl(router->ldb, daemon->set->metacache_ttl_ms);
	localdb_set_cell_settle(router->ldb, daemon->set->site_reachability_timeout_ms);
	router->pending = calloc(daemon->set->group_count, sizeof(*router->pending));
	router->watch = geodb_can_watch(daemon->geodb);
	router->remote = !router->watch;
	router->geodb_ok = true; /* until something says otherwise */
	router->timer = evtimer_new(daemon->base, timer_fired, router);
	router->move_timer = evtimer_new(daemon->base, move_timer_fired, router);
	/* not ready until this daemon's first observation is in the GeoDB
	 * (prober.c calls router_observation_written()) and a LocalDB read
	 * after it is installed; bounded, for a GeoDB that takes no writes */
	router->ready_timer = evtimer_new(daemon->base, ready_timeout, router);
	unsigned ready_ms = daemon->set->probe_interval_ms + daemon->set->probe_timeout_ms + 1000;
	struct timeval ready_tv = {ready_ms / 1000, (ready_ms % 1000) * 1000};
	evtimer_add(router->ready_timer, &ready_tv);
	router->move_epoch = calloc(daemon->set->group_count, sizeof(*router->move_epoch));
	router->move_seen_ms = calloc(daemon->set->group_count, sizeof(*router->move_seen_ms));
	/* the prober's observer name: what the controller counts as live */
	snprintf(router->observer, sizeof(router->observer), "%.52s/%d", daemon->writer,
		 (int)getpid());
	if (geodb_attach(daemon->geodb, daemon->base, error_r) < 0)
		return -1;
	const char *path = daemon->set->localdb;
	if (router->remote && path != NULL && path[0] != '\0') {
		const char *error;
		int loaded = localdb_load(router->ldb, path, &error);
		if (loaded < 0) {
			log_warning("event=localdb_load_failed path=%s reason=\"%s\"", path, error);
		} else if (loaded > 0) {
			struct localdb_stats stats;
			localdb_stats(router->ldb, &stats);
			log_info("event=localdb_loaded path=%s backends=%zu groups=%zu users=%zu",
				 path, stats.backends, stats.groups_assigned, stats.users);
		}
	}
	if (router->watch) {
		geodb_changed(daemon->geodb); /* remember the current commit */
		refresh_sync(router);
		if (!router->geodb_ok) {
			*error_r = router->geodb_error;
			return -1;
		}
		schedule(router, watch_interval(router));
	} else {
		refresh_start(router);
	}
	return 0;
}

static void pending_free(struct pending_assign *pa)
{
	free(pa);
}

void router_deinit(struct daemon *daemon)
{
	struct router *router = router_of(daemon);
	if (router == NULL)
		return;
	for (unsigned i = 0; i < daemon->set->group_count; i++) {
		struct pending_assign *pa = router->pending[i];
		if (pa == NULL)
			continue;
		geodb_op_cancel(&pa->op);
		while (pa->waiters != NULL) {
			struct router_wait *w = pa->waiters;
			pa->waiters = w->next;
			free(w);
		}
		pending_free(pa);
	}
	while (router->load_waiters != NULL) {
		struct router_wait *w = router->load_waiters;
		router->load_waiters = w->next;
		free(w);
	}
	while (router->holds != NULL) {
		struct router_wait *w = router->holds;
		router->holds = w->next;
		free(w);
	}
	while (router->acks != NULL) {
		struct pending_ack *pa = router->acks;
		router->acks = pa->next;
		free(pa);
	}
	event_free(router->move_timer);
	event_free(router->ready_timer);
	free(router->move_epoch);
	free(router->move_seen_ms);
	geodb_op_cancel(&router->refresh_op);
	refresh_finished(router, "the daemon is shutting down");
	save_if_dirty(router);
	event_free(router->timer);
	free(router->pending);
	localdb_destroy(&router->ldb);
	free(router);
	daemon->router = NULL;
}

static enum route_status site_check(struct router *router, enum route_status status,
				    struct route_result *route, const char **reason_r);

static void assigned(void *context, int result, const struct geodb_group *stored,
		     const char *error)
{
	struct pending_assign *pa = context;
	struct router *router = pa->router;
	struct daemon *daemon = router->daemon;
	router->pending[pa->group_id] = NULL; /* new logins start afresh */
	pa->op = NULL;
	if (result < 0) {
		router->assign_failures++;
		log_error("event=geodb_error op=assign group=%u reason=\"%s\"", pa->group_id,
			  error);
		/* one failed write (a timeout, a lost race) does not make the
		 * GeoDB down; a refresh soon finds out whether it is */
		if (router->refresh_op == NULL && !router->watch) {
			evtimer_del(router->timer);
			schedule(router, RETRY_AFTER_FAILURE_MS);
		}
	} else {
		router->assignments++;
		router->dirty = true;
		if (result == 1) {
			daemon->metrics.group_assignments++;
			log_info("event=group_assign group=%u backend=%s site=%s", stored->group_id,
				 stored->backend, stored->site);
		}
	}
	if (result >= 0)
		localdb_put_group(router->ldb, stored); /* also when nobody waits any more */
	bool first = true;
	while (pa->waiters != NULL) {
		struct router_wait *w = pa->waiters;
		pa->waiters = w->next;
		if (pa->waiters != NULL)
			pa->waiters->prev = NULL;
		const char *reason = error;
		enum route_status status = ROUTE_ERROR;
		if (result >= 0) {
			status = route_assigned(router->ldb, &w->route, stored, result == 1 && first,
						&reason);
			status = site_check(router, status, &w->route, &reason);
			first = false;
		}
		w->callback(w->context, status, &w->route, reason);
		free(w);
	}
	pending_free(pa);
}

static void unreachable_reason(struct router *router, const struct route_result *route,
			       const char **reason_r)
{
	static char reason[700];
	snprintf(reason, sizeof(reason),
		 "group %u has no backend yet and the GeoDB is unreachable (%s)", route->group_id,
		 router->geodb_error);
	*reason_r = reason;
}

static void wait_link(struct router_wait **head, struct router_wait *w)
{
	w->prev = NULL;
	w->next = *head;
	if (w->next != NULL)
		w->next->prev = w;
	*head = w;
}

/* w's group needs a backend: join the conditional insert in flight for it,
 * or start one. */
static void wait_for_assignment(struct router *router, struct router_wait *w)
{
	struct pending_assign *pa = router->pending[w->route.group_id];
	if (pa == NULL) {
		pa = calloc(1, sizeof(*pa));
		pa->router = router;
		pa->group_id = w->route.group_id;
		pa->proposal = w->route.group;
		router->pending[pa->group_id] = pa;
		pa->op = geodb_group_assign_async(router->daemon->geodb, &pa->proposal, assigned,
						  pa);
	}
	w->pending = pa;
	wait_link(&pa->waiters, w);
}

/* ---- deciding, or waiting ---- */

enum decision {
	DECIDED,      /* answer now with the status */
	WAIT_LOAD,    /* until the first load, or until this daemon is ready */
	WAIT_HOLD,    /* held: the group is moving, or the user was just moved */
	WAIT_ASSIGN,  /* the group is being assigned */
};

/* A moving group's login held for move_timeout goes to the move's target
 * (ROUTE_OK), or is unavailable when the target cannot take it. */
static enum route_status move_target(struct router *router, struct route_result *route,
				     const char **reason_r)
{
	static char reason[300];
	const struct geodb_backend *to = localdb_backend(router->ldb, route->group.move_to);
	if (to == NULL || to->status != BACKEND_STATUS_ONLINE || to->mark != HEALTH_MARK_UP) {
		snprintf(reason, sizeof(reason),
			 "group %u is moving to backend %s, which cannot take it now",
			 route->group_id, route->group.move_to);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	route->backend = *to;
	return ROUTE_OK;
}

/* A decision's last step: a backend in another site is reached through
 * that site's load balancer (route_check_site()). */
static enum route_status site_check(struct router *router, enum route_status status,
				    struct route_result *route, const char **reason_r)
{
	struct daemon *daemon = router->daemon;
	enum route_status checked =
		route_check_site(router->ldb, daemon->set->site, daemon->set->site_direct_backends,
				 status, route, reason_r);
	if (status == ROUTE_OK && checked != ROUTE_OK)
		daemon->metrics.site_unavailable++;
	return checked;
}

/* Routes username into *route: DECIDED with *status_r and *reason_r, or
 * what to wait for (*user_hold_r: until when, for a user move's hold). */
static enum decision decide(struct router *router, const char *username,
			    struct route_result *route, int64_t *user_hold_r,
			    enum route_status *status_r, const char **reason_r)
{
	struct daemon *daemon = router->daemon;
	*user_hold_r = 0;
	enum route_status status =
		route_decide(router->ldb, daemon->set->site, username, route, reason_r);
	*status_r = status;
	if (status == ROUTE_BAD_USER)
		return DECIDED;
	if ((!localdb_loaded(router->ldb) && router->refresh_op != NULL) ||
	    (!router->ready && router->geodb_ok))
		return WAIT_LOAD; /* nothing known yet, or this daemon is not ready */
	if (status == ROUTE_OK && route->group_override) {
		const struct geodb_user *u = localdb_user(router->ldb, route->username);
		if (u != NULL && u->hold_until_ms > now_unix_ms()) {
			*user_hold_r = u->hold_until_ms;
			return WAIT_HOLD;
		}
	}
	if (status == ROUTE_OK && route->group.move_to[0] != '\0' && !route->site_failover &&
	    route->force_move_id == 0) {
		unsigned id = route->group_id;
		if (router->move_epoch[id] != route->group.epoch) {
			/* seen here first (a refresh scans too, but a CLI move on
			 * SQLite may arrive with this very login) */
			moves_scan(router);
			sessions_reconcile(router);
		}
		int64_t deadline;
		if (move_login(daemon->set->move_timeout_ms, true, router->move_seen_ms[id],
			       now_unix_ms(), &deadline) == MOVE_LOGIN_HOLD)
			return WAIT_HOLD;
		router->holds_expired++;
		log_warning("event=move_hold_expired user=%s group=%u to=%s reason=\"held for "
			    "move_timeout %ums: going to the target\"",
			    route->username, id, route->group.move_to, daemon->set->move_timeout_ms);
		*status_r =
			site_check(router, move_target(router, route, reason_r), route, reason_r);
		return DECIDED;
	}
	if (status == ROUTE_ASSIGN) {
		if (router->geodb_ok)
			return WAIT_ASSIGN;
		unreachable_reason(router, route, reason_r);
		*status_r = ROUTE_UNAVAILABLE;
		return DECIDED;
	}
	router->routed_local++;
	*status_r = site_check(router, status, route, reason_r);
	return DECIDED;
}

/* Puts w where decision d says it waits. */
static void wait_place(struct router *router, struct router_wait *w, enum decision d,
		       int64_t user_hold)
{
	w->held = false;
	w->pending = NULL;
	w->user_hold_until = 0;
	switch (d) {
	case DECIDED:
		break; /* not called */
	case WAIT_LOAD:
		wait_link(&router->load_waiters, w);
		break;
	case WAIT_HOLD:
		w->held = true;
		w->user_hold_until = user_hold;
		wait_link(&router->holds, w);
		router->holds_total++;
		move_timer_arm(router);
		break;
	case WAIT_ASSIGN:
		wait_for_assignment(router, w);
		break;
	}
}

/* Routes a waiting login afresh: answers it (and frees w) or places it. */
static void redecide(struct router *router, struct router_wait *w)
{
	char username[sizeof(w->route.username)];
	memcpy(username, w->route.username, sizeof(username));
	int64_t user_hold;
	enum route_status status;
	const char *reason = NULL;
	enum decision d = decide(router, username, &w->route, &user_hold, &status, &reason);
	if (d != DECIDED) {
		wait_place(router, w, d, user_hold);
		return;
	}
	w->callback(w->context, status, &w->route, reason);
	free(w);
}

/* The first load ended (or failed), or this daemon became ready: route the
 * logins that waited for it. */
static void route_load_waiters(struct router *router)
{
	if (!router->ready && router->geodb_ok)
		return;
	struct router_wait *list = router->load_waiters;
	router->load_waiters = NULL;
	while (list != NULL) {
		struct router_wait *w = list;
		list = w->next;
		w->next = w->prev = NULL;
		redecide(router, w);
	}
}

/* Held logins whose hold is over (the user's hold time passed, the group
 * is no longer moving, or move_timeout passed) are routed afresh.
 * Returns whether some are still held. */
static bool holds_check(struct router *router)
{
	int64_t now = now_unix_ms();
	struct router_wait *w = router->holds, *next;
	for (; w != NULL; w = next) {
		next = w->next;
		if (w->user_hold_until != 0) {
			/* the hold as the LocalDB has it now: `user move`
			 * releases it early once its kick and hook are done */
			const struct geodb_user *u = localdb_user(router->ldb, w->route.username);
			if (u != NULL && now < u->hold_until_ms)
				continue;
		} else {
			unsigned id = w->route.group_id;
			const struct geodb_group *g = localdb_group(router->ldb, id);
			int64_t deadline;
			if (g != NULL && g->move_to[0] != '\0' &&
			    move_login(router->daemon->set->move_timeout_ms, true,
				       router->move_seen_ms[id], now, &deadline) == MOVE_LOGIN_HOLD)
				continue;
		}
		if (w->prev != NULL)
			w->prev->next = w->next;
		else
			router->holds = w->next;
		if (w->next != NULL)
			w->next->prev = w->prev;
		w->next = w->prev = NULL;
		/* placed again at the head if it must wait on: not seen again
		 * in this loop */
		redecide(router, w);
	}
	return router->holds != NULL;
}

static void holds_recheck(struct router *router)
{
	if (router->holds != NULL)
		holds_check(router);
}

static void move_timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct router *router = context;
	if (router->watch && geodb_changed(router->daemon->geodb))
		refresh_sync(router);
	bool more = holds_check(router);
	more = acks_check(router) || more;
	for (struct pending_ack *pa = router->acks; pa != NULL && !more; pa = pa->next)
		more = true; /* submitted, not answered yet: a failure re-arms */
	if (more || router->holds != NULL)
		move_timer_arm(router);
}

bool router_session_misplaced(struct daemon *daemon, const struct session *s, char *why,
			      size_t why_size)
{
	return session_misplaced(router_of(daemon), s, why, why_size);
}

enum route_status router_route(struct daemon *daemon, const char *username,
			       struct route_result *route_r, const char **reason_r,
			       router_callback *callback, void *context,
			       struct router_wait **wait_r)
{
	struct router *router = router_of(daemon);
	*wait_r = NULL;
	if (router->watch && geodb_changed(daemon->geodb))
		refresh_sync(router);
	int64_t user_hold;
	enum route_status status;
	enum decision d = decide(router, username, route_r, &user_hold, &status, reason_r);
	if (d == DECIDED)
		return status;
	struct router_wait *w = calloc(1, sizeof(*w));
	w->router = router;
	w->route = *route_r;
	w->callback = callback;
	w->context = context;
	*wait_r = w;
	wait_place(router, w, d, user_hold);
	return ROUTE_ASSIGN;
}

void router_wait_cancel(struct router_wait **_wait)
{
	struct router_wait *w = *_wait;
	if (w == NULL)
		return;
	/* the assignment itself goes on: it is as good for the next login */
	if (w->prev != NULL)
		w->prev->next = w->next;
	else if (w->pending != NULL)
		w->pending->waiters = w->next;
	else if (w->held)
		w->router->holds = w->next;
	else
		w->router->load_waiters = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	free(w);
	*_wait = NULL;
}

const struct localdb *router_localdb(struct daemon *daemon)
{
	return router_of(daemon)->ldb;
}

void router_refresh_now(struct daemon *daemon, router_refresh_callback *callback, void *context)
{
	struct router *router = router_of(daemon);
	struct refresh_waiter *w = calloc(1, sizeof(*w));
	w->callback = callback;
	w->context = context;
	w->next = router->refresh_waiters;
	router->refresh_waiters = w;
	refresh_start(router);
}

void router_status_json(struct daemon *daemon, struct strbuf *out)
{
	struct router *router = router_of(daemon);
	struct localdb_stats stats;
	localdb_stats(router->ldb, &stats);
	strbuf_append(out, "\"geodb\":{\"driver\":");
	strbuf_append_json_string(out, geodb_driver_name(daemon->geodb));
	strbuf_printf(out, ",\"state\":\"%s\",\"error\":", router->geodb_ok ? "ok" : "down");
	strbuf_append_json_string(out, router->geodb_error);
	strbuf_printf(out,
		      ",\"last_refresh\":%ld,\"refreshes\":%llu,\"refresh_failures\":%llu,"
		      "\"assignments\":%llu,\"assign_failures\":%llu},",
		      (long)router->last_refresh_ok, (unsigned long long)router->refreshes,
		      (unsigned long long)router->refresh_failures,
		      (unsigned long long)router->assignments,
		      (unsigned long long)router->assign_failures);
	strbuf_append(out, "\"localdb\":{\"path\":");
	strbuf_append_json_string(out, router->remote ? daemon->set->localdb : "");
	strbuf_printf(out,
		      ",\"loaded\":%s,\"sites\":%zu,\"backends\":%zu,\"groups_assigned\":%zu,"
		      "\"users\":%zu,\"failover_cells\":%zu,\"refresh_ms\":%u,\"saved_at\":%ld,"
		      "\"routed\":%llu}",
		      localdb_loaded(router->ldb) ? "true" : "false", stats.sites, stats.backends,
		      stats.groups_assigned, stats.users, stats.failover_cells,
		      daemon->set->localdb_refresh_ms,
		      (long)router->last_saved, (unsigned long long)router->routed_local);
	unsigned held = 0, acks = 0;
	for (const struct router_wait *w = router->holds; w != NULL; w = w->next)
		held++;
	for (const struct pending_ack *pa = router->acks; pa != NULL; pa = pa->next)
		acks++;
	strbuf_printf(out,
		      ",\"moves\":{\"held_logins\":%u,\"acks_pending\":%u,\"moves_seen\":%llu,"
		      "\"holds\":%llu,\"holds_expired\":%llu,\"acks_sent\":%llu,"
		      "\"ack_failures\":%llu,\"sessions_moved\":%llu}",
		      held, acks, (unsigned long long)router->moves_seen,
		      (unsigned long long)router->holds_total,
		      (unsigned long long)router->holds_expired,
		      (unsigned long long)router->acks_sent,
		      (unsigned long long)router->ack_failures,
		      (unsigned long long)router->sessions_moved);
}

void router_metrics(struct daemon *daemon, struct strbuf *out)
{
	struct router *router = router_of(daemon);
	struct localdb_stats stats;
	localdb_stats(router->ldb, &stats);
	strbuf_printf(out,
		      "# HELP mailcluster_geodb_up Whether the last GeoDB refresh succeeded.\n"
		      "# TYPE mailcluster_geodb_up gauge\nmailcluster_geodb_up %d\n"
		      "# HELP mailcluster_localdb_refreshes_total LocalDB refreshes from the "
		      "GeoDB.\n"
		      "# TYPE mailcluster_localdb_refreshes_total counter\n"
		      "mailcluster_localdb_refreshes_total %llu\n"
		      "# HELP mailcluster_localdb_refresh_failures_total Failed LocalDB "
		      "refreshes.\n"
		      "# TYPE mailcluster_localdb_refresh_failures_total counter\n"
		      "mailcluster_localdb_refresh_failures_total %llu\n"
		      "# HELP mailcluster_localdb_groups_assigned Groups with a backend in the "
		      "LocalDB.\n"
		      "# TYPE mailcluster_localdb_groups_assigned gauge\n"
		      "mailcluster_localdb_groups_assigned %zu\n"
		      "# HELP mailcluster_geodb_assign_failures_total Group assignments the GeoDB "
		      "did not take.\n"
		      "# TYPE mailcluster_geodb_assign_failures_total counter\n"
		      "mailcluster_geodb_assign_failures_total %llu\n"
		      "# HELP mailcluster_routed_local_total Routing decisions made from the "
		      "LocalDB without GeoDB I/O.\n"
		      "# TYPE mailcluster_routed_local_total counter\n"
		      "mailcluster_routed_local_total %llu\n",
		      router->geodb_ok ? 1 : 0, (unsigned long long)router->refreshes,
		      (unsigned long long)router->refresh_failures, stats.groups_assigned,
		      (unsigned long long)router->assign_failures,
		      (unsigned long long)router->routed_local);
	strbuf_printf(out,
		      "# HELP mailcluster_moves_seen_total Group moves this daemon has seen "
		      "start.\n"
		      "# TYPE mailcluster_moves_seen_total counter\n"
		      "mailcluster_moves_seen_total %llu\n"
		      "# HELP mailcluster_move_holds_total Logins held because their group was "
		      "moving.\n"
		      "# TYPE mailcluster_move_holds_total counter\n"
		      "mailcluster_move_holds_total %llu\n"
		      "# HELP mailcluster_move_holds_expired_total Held logins sent to the move's "
		      "target after move_timeout.\n"
		      "# TYPE mailcluster_move_holds_expired_total counter\n"
		      "mailcluster_move_holds_expired_total %llu\n"
		      "# HELP mailcluster_move_acks_total Moves this daemon acknowledged.\n"
		      "# TYPE mailcluster_move_acks_total counter\n"
		      "mailcluster_move_acks_total %llu\n"
		      "# HELP mailcluster_sessions_moved_total Sessions ended because their user "
		      "now belongs on another backend.\n"
		      "# TYPE mailcluster_sessions_moved_total counter\n"
		      "mailcluster_sessions_moved_total %llu\n",
		      (unsigned long long)router->moves_seen, (unsigned long long)router->holds_total,
		      (unsigned long long)router->holds_expired, (unsigned long long)router->acks_sent,
		      (unsigned long long)router->sessions_moved);
}
