/* router.c - see router.h. */
#include "daemon/router.h"

#include "daemon/daemon.h"
#include "store/geodb.h"
#include "store/localdb.h"
#include "util/log.h"
#include "util/strbuf.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* After a failed refresh or assignment, the next refresh comes sooner. */
#define RETRY_AFTER_FAILURE_MS 1000

struct router_wait {
	struct router_wait *prev, *next;
	struct router *router;
	struct pending_assign *pending; /* NULL: waiting for the first load */
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
		struct localdb_stats stats;
		localdb_stats(router->ldb, &stats);
		log_debug("event=localdb_refreshed backends=%zu groups=%zu users=%zu",
			  stats.backends, stats.groups_assigned, stats.users);
	}
	set_geodb_up(router);
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

static void refreshed(void *context, struct geodb_snapshot *snap, const char *error)
{
	struct router *router = context;
	router->refresh_op = NULL;
	if (snap == NULL) {
		router->refresh_failures++;
		set_geodb_down(router, error);
	} else {
		if (!install(router, snap))
			geodb_snapshot_free(snap);
		free(snap);
		save_if_dirty(router);
	}
	unsigned interval = router->daemon->set->localdb_refresh_ms;
	if (!router->geodb_ok && interval > RETRY_AFTER_FAILURE_MS)
		interval = RETRY_AFTER_FAILURE_MS;
	schedule(router, interval);
	route_load_waiters(router);
	refresh_finished(router, router->geodb_ok ? NULL : router->geodb_error);
}

static void refresh_start(struct router *router)
{
	if (router->refresh_op != NULL)
		return; /* one at a time; its end reschedules */
	if (router->watch) {
		refresh_sync(router);
		schedule(router, router->daemon->set->localdb_refresh_ms);
		refresh_finished(router, router->geodb_ok ? NULL : router->geodb_error);
		return;
	}
	evtimer_del(router->timer);
	router->refresh_op = geodb_snapshot_read_async(router->daemon->geodb, refreshed, router);
}

static void timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct router *router = context;
	if (router->watch && !geodb_changed(router->daemon->geodb) && router->geodb_ok) {
		schedule(router, router->daemon->set->localdb_refresh_ms);
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
	router->pending = calloc(daemon->set->group_count, sizeof(*router->pending));
	router->watch = geodb_can_watch(daemon->geodb);
	router->remote = !router->watch;
	router->geodb_ok = true; /* until something says otherwise */
	router->timer = evtimer_new(daemon->base, timer_fired, router);
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
		schedule(router, daemon->set->localdb_refresh_ms);
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
	geodb_op_cancel(&router->refresh_op);
	refresh_finished(router, "the daemon is shutting down");
	save_if_dirty(router);
	event_free(router->timer);
	free(router->pending);
	localdb_destroy(&router->ldb);
	free(router);
	daemon->router = NULL;
}

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

/* The first load ended (or failed): route the logins that waited for it. */
static void route_load_waiters(struct router *router)
{
	while (router->load_waiters != NULL) {
		struct router_wait *w = router->load_waiters;
		router->load_waiters = w->next;
		if (w->next != NULL)
			w->next->prev = NULL;
		w->next = w->prev = NULL;
		char username[sizeof(w->route.username)];
		memcpy(username, w->route.username, sizeof(username));
		const char *reason = NULL;
		enum route_status status = route_decide(router->ldb, router->daemon->set->site,
							username, &w->route, &reason);
		if (status == ROUTE_ASSIGN && router->geodb_ok) {
			wait_for_assignment(router, w);
			continue;
		}
		if (status == ROUTE_ASSIGN) {
			unreachable_reason(router, &w->route, &reason);
			status = ROUTE_UNAVAILABLE;
		}
		w->callback(w->context, status, &w->route, reason);
		free(w);
	}
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
	enum route_status status =
		route_decide(router->ldb, daemon->set->site, username, route_r, reason_r);
	if (status != ROUTE_ASSIGN && (status == ROUTE_BAD_USER || localdb_loaded(router->ldb) ||
				       router->refresh_op == NULL)) {
		router->routed_local++;
		return status;
	}
	if (!router->geodb_ok) {
		unreachable_reason(router, route_r, reason_r);
		return ROUTE_UNAVAILABLE;
	}
	struct router_wait *w = calloc(1, sizeof(*w));
	w->router = router;
	w->route = *route_r;
	w->callback = callback;
	w->context = context;
	*wait_r = w;
	if (!localdb_loaded(router->ldb) && router->refresh_op != NULL) {
		/* nothing known yet: a proposal now would be a guess */
		wait_link(&router->load_waiters, w);
		return ROUTE_ASSIGN;
	}
	wait_for_assignment(router, w);
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
		      "\"users\":%zu,\"refresh_ms\":%u,\"saved_at\":%ld,\"routed\":%llu}",
		      localdb_loaded(router->ldb) ? "true" : "false", stats.sites, stats.backends,
		      stats.groups_assigned, stats.users, daemon->set->localdb_refresh_ms,
		      (long)router->last_saved, (unsigned long long)router->routed_local);
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
}
