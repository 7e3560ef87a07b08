/* controller_act.c - see controller_act.h. */
#include "daemon/controller_act.h"

#include "brain/failover.h"
#include "brain/move.h"
#include "brain/site.h"
#include "net/doveadm.h"
#include "net/metrics_scrape.h"
#include "daemon/worker.h"
#include "store/geodb.h"
#include "store/route.h"
#include "util/command.h"
#include "util/log.h"
#include "util/strbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALTERNATIVE_CHANGES_PER_PASS FAILOVER_ALTERNATIVE_CHANGES_DEFAULT

struct pass {
	struct controller_act_job *job;
	struct geodb *db;
	struct geodb_snapshot snap;
	struct geodb_health *obs;
	size_t obs_count;
	int64_t now_ms;
	/* the site's live daemons (observer names), sorted */
	char (*live)[NAME_MAX_LEN + 1];
	size_t live_count;
	/* the site's backends: indexes into snap.backends */
	size_t *bidx;
	struct failover_backend *fb;
	size_t backend_count;
	/* the site's groups: indexes into snap.groups */
	size_t *gidx;
	struct failover_group *fg;
	size_t group_count;
	/* several sites: the snapshot's sites and heartbeats, this site's
	 * index in them (-1: not in the GeoDB), its records about each site
	 * (after this pass's update) and every site's records */
	struct route_site_view view;
	int self;
	struct site_reachability *own;
	struct geodb_site_reachability *reach;
	size_t reach_count;
	struct geodb_site_heartbeat *beats; /* view.heartbeats after sites_pass() */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether this pass may still write: the lease is ours and we are not
 * shutting down. */
static bool may_write(struct pass *p)
{
	struct controller_act_job *job = p->job;
	if (worker_stopping(job->worker)) {
		snprintf(job->error, sizeof(job->error), "the daemon is shutting down");
		job->failed = true;
		return false;
	}
	if (mono_ms() >= atomic_load(job->act_until)) {
		snprintf(job->error, sizeof(job->error),
			 "the controller lease was not renewed in time: stopped writing");
		job->failed = true;
		return false;
	}
	return true;
}

static int fail(struct pass *p, const char *what, const char *error)
{
	snprintf(p->job->error, sizeof(p->job->error), "%s: %s", what, error);
	p->job->failed = true;
	return -1;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool is_live(const struct pass *p, const char *observer)
{
	return bsearch(observer, p->live, p->live_count, sizeof(*p->live), cmp_name) != NULL;
}

static int backend_index(const struct pass *p, const char *name)
{
	for (size_t i = 0; i < p->backend_count; i++) {
		if (strcmp(p->fb[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

static struct geodb_backend *site_backend(struct pass *p, size_t i)
{
	return &p->snap.backends[p->bidx[i]];
}

static struct geodb_group *site_group(struct pass *p, size_t i)
{
	return &p->snap.groups[p->gidx[i]];
}

/* The group's failover cell in the snapshot, or NULL. */
static const struct geodb_group_failover *snap_cell(const struct pass *p, unsigned group_id)
{
	size_t lo = 0, hi = p->snap.failover_count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->snap.failovers[mid].group_id == group_id)
			return &p->snap.failovers[mid];
		if (p->snap.failovers[mid].group_id < group_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Reads the state; collects the site's backends, groups and live daemons. */
static int load(struct pass *p)
{
	struct controller_act_job *job = p->job;
	const char *error;
	if (geodb_snapshot_read(p->db, &p->snap, &error) < 0)
		return fail(p, "reading the state", error);
	if (geodb_health_list(p->db, NULL, &p->obs, &p->obs_count, &error) < 0)
		return fail(p, "reading health observations", error);
	p->now_ms = unix_ms();

	p->bidx = calloc(p->snap.backend_count + 1, sizeof(*p->bidx));
	p->fb = calloc(p->snap.backend_count + 1, sizeof(*p->fb));
	for (size_t i = 0; i < p->snap.backend_count; i++) {
		const struct geodb_backend *b = &p->snap.backends[i];
		if (strcmp(b->site, job->site) != 0)
			continue;
		p->bidx[p->backend_count] = i;
		p->fb[p->backend_count] = (struct failover_backend){
			.name = b->name,
			.status = b->status,
			.load_factor = b->load_factor,
			.mark = b->mark,
		};
		p->backend_count++;
	}

	/* live daemons: a fresh observation of one of the site's backends */
	p->live = calloc(p->obs_count + 1, sizeof(*p->live));
	for (size_t i = 0; i < p->obs_count; i++) {
		const struct geodb_health *h = &p->obs[i];
		if (backend_index(p, h->backend) < 0 ||
		    !health_observer_is_live(&job->health, h->observed_at * 1000, p->now_ms))
			continue;
		bool seen = false;
		for (size_t j = 0; j < p->live_count && !seen; j++)
			seen = strcmp(p->live[j], h->observer) == 0;
		if (!seen)
			snprintf(p->live[p->live_count++], sizeof(*p->live), "%s", h->observer);
	}
	qsort(p->live, p->live_count, sizeof(*p->live), cmp_name);

	p->view = (struct route_site_view){p->snap.sites, p->snap.site_count, p->snap.heartbeats,
					   p->snap.heartbeat_count};
	p->self = route_site_index(&p->view, job->site);
	unsigned away = 0;
	p->gidx = calloc(p->snap.group_row_count + 1, sizeof(*p->gidx));
	p->fg = calloc(p->snap.group_row_count + 1, sizeof(*p->fg));
	for (size_t i = 0; i < p->snap.group_row_count; i++) {
		const struct geodb_group *g = &p->snap.groups[i];
		if (strcmp(g->site, job->site) != 0 || g->backend[0] == '\0')
			continue;
		/* failed over to another site: left alone (controller_act.h) */
		if (route_cell_verdict(&p->view, g, snap_cell(p, g->group_id)) ==
		    SITE_VERDICT_STANDS) {
			away++;
			continue;
		}
		p->gidx[p->group_count] = i;
		p->fg[p->group_count] = (struct failover_group){
			.group_id = g->group_id,
			.backend = backend_index(p, g->backend),
			.alt_backend = g->alt_backend[0] != '\0' ? backend_index(p, g->alt_backend) : -1,
		};
		/* metacache: the backends that held it lately are preferred as
		 * its alternative and failover target */
		int hist[BALANCE_HISTORY];
		int64_t left[BALANCE_HISTORY];
		size_t h = 0;
		for (size_t k = 0; k < BALANCE_HISTORY && g->history[k].backend[0] != '\0'; k++) {
			int idx = backend_index(p, g->history[k].backend);
			if (idx < 0)
				continue; /* removed, or in another site */
			hist[h] = idx;
			left[h++] = g->history[k].left_ms;
		}
		failover_group_set_warm(&p->fg[p->group_count], hist, left, h, p->now_ms,
					job->balance.metacache_ttl_ms);
		p->group_count++;
		if (g->move_to[0] != '\0')
			job->moving++;
	}
	if (job->sites != NULL)
		job->sites->groups_failed_away = away;
	job->live_daemons = (unsigned)p->live_count;
	job->backends = (unsigned)p->backend_count;
	job->groups = (unsigned)p->group_count;
	return 0;
}

/* ---- health ---- */

static int decide_health(struct pass *p)
{
	struct controller_act_job *job = p->job;
	struct health_observation *obs = calloc(p->obs_count + 1, sizeof(*obs));
	int ret = 0;
	for (size_t i = 0; i < p->backend_count && ret == 0; i++) {
		struct geodb_backend *b = site_backend(p, i);
		size_t n = 0;
		for (size_t j = 0; j < p->obs_count; j++) {
			const struct geodb_health *h = &p->obs[j];
			if (strcmp(h->backend, b->name) != 0 || !is_live(p, h->observer))
				continue;
			obs[n++] = (struct health_observation){
				.ok = h->ok,
				.since_ms = h->since * 1000,
				.observed_at_ms = h->observed_at * 1000,
			};
		}
		struct health_backend hb = {
			.name = b->name,
			.status = b->status,
			.mark = b->mark,
			.mark_since_ms = b->mark_since * 1000,
		};
		struct health_decision d;
		health_decide(&job->health, &hb, obs, n, (unsigned)p->live_count, p->now_ms, &d);
		p->fb[i].suspect = d.suspect;
		if (!d.changed)
			continue;
		if (!may_write(p)) {
			ret = -1;
			break;
		}
		const char *error;
		int r = geodb_backend_mark(p->db, b->name, d.mark, p->now_ms / 1000, d.reason, &error);
		if (r < 0) {
			ret = fail(p, "marking a backend", error);
			break;
		}
		if (r == 0)
			continue; /* removed meanwhile */
		b->mark = d.mark;
		b->mark_since = p->now_ms / 1000;
		p->fb[i].mark = d.mark;
		if (d.mark == HEALTH_MARK_DOWN)
			job->counts.marks_down++;
		else
			job->counts.marks_up++;
		log_msg(d.mark == HEALTH_MARK_DOWN ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO,
			"event=backend_marked backend=%s site=%s mark=%s reason=\"%s\"", b->name,
			job->site, health_mark_name(d.mark), d.reason);
	}
	free(obs);
	return ret;
}

/* ---- group writes ---- */

/* Compare-and-set of group i to row; updates the pass's copy.  Returns 1
 * applied, 0 someone else changed it first (looked at next pass), -1. */
static int group_write(struct pass *p, size_t i, const struct geodb_group *row, const char *what)
{
	if (!may_write(p))
		return -1;
	struct geodb_group *g = site_group(p, i);
	struct geodb_group stored;
	const char *error;
	int r = geodb_group_cas(p->db, row, g->epoch, &stored, &error);
	if (r < 0)
		return fail(p, what, error);
	if (r == 0) {
		p->job->counts.cas_conflicts++;
		log_info("event=controller_conflict group=%u what=\"%s\" reason=\"the group changed "
			 "meanwhile (epoch %llu, now %llu): looked at again next pass\"",
			 g->group_id, what, (unsigned long long)g->epoch,
			 (unsigned long long)stored.epoch);
	}
	if (stored.backend[0] != '\0') {
		*g = stored;
		p->fg[i].backend = backend_index(p, g->backend);
		p->fg[i].alt_backend = g->alt_backend[0] != '\0' ? backend_index(p, g->alt_backend) : -1;
	}
	return r;
}

/* ---- moves in progress ---- */

static void kick_old_backend(struct pass *p, const struct geodb_group *g)
{
	struct controller_act_job *job = p->job;
	if (job->doveadm_url[0] == '\0')
		return;
	int bi = backend_index(p, g->backend);
	const char *address = bi >= 0 ? site_backend(p, (size_t)bi)->address : "";
	char url[600];
	if (doveadm_url_expand(job->doveadm_url, g->backend, address, url, sizeof(url)) < 0) {
		job->counts.doveadm_failures++;
		log_warning("event=move_kick_failed group=%u backend=%s reason=\"the expanded "
			    "backend_doveadm_url is too long\"",
			    g->group_id, g->backend);
		return;
	}
	unsigned kicked = 0;
	const char *error;
	if (doveadm_kick_group(url, job->doveadm_api_key, job->group_count, g->group_id,
			       job->doveadm_timeout_ms, &kicked, &error) < 0) {
		job->counts.doveadm_failures++;
		log_warning("event=move_kick_failed group=%u backend=%s reason=\"%s\" note=\"the "
			    "move goes on: the proxies have closed their sessions already\"",
			    g->group_id, g->backend, error);
		return;
	}
	/* users overridden into the group: doveadm_kick_group() sees only the
	 * hash */
	const char **users = calloc(p->snap.user_count + 1, sizeof(*users));
	size_t n = 0;
	for (size_t i = 0; i < p->snap.user_count; i++) {
		if (p->snap.users[i].group_id == g->group_id)
			users[n++] = p->snap.users[i].username;
	}
	unsigned kicked_overrides = 0;
	if (n > 0 && doveadm_kick(url, job->doveadm_api_key, users, n, job->doveadm_timeout_ms,
				  &kicked_overrides, &error) < 0) {
		job->counts.doveadm_failures++;
		log_warning("event=move_kick_failed group=%u backend=%s reason=\"%s\" note=\"the "
			    "move goes on\"",
			    g->group_id, g->backend, error);
	}
	free(users);
	job->counts.doveadm_kicks++;
	log_info("event=move_kick group=%u backend=%s kicked=%u", g->group_id, g->backend,
		 kicked + kicked_overrides);
}

static void run_hook(struct pass *p, const struct geodb_group *g)
{
	struct controller_act_job *job = p->job;
	if (job->move_hook[0] == '\0')
		return;
	char group[16], last_left[24] = "";
	snprintf(group, sizeof(group), "%u", g->group_id);
	/* the backend the group was on before this one (metacache: its
	 * indexes may still be there), and when it left it */
	const struct geodb_group_history *last = &g->history[0];
	if (last->backend[0] != '\0')
		snprintf(last_left, sizeof(last_left), "%lld", (long long)(last->left_ms / 1000));
	const struct command_var vars[] = {{"user", ""},
					   {"group", group},
					   {"from", g->backend},
					   {"to", g->move_to},
					   {"last_backend", last->backend},
					   {"last_backend_left", last_left}};
	int status = 0;
	char output[512] = "";
	const char *error;
	if (command_run(job->move_hook, vars, sizeof(vars) / sizeof(vars[0]),
			job->move_hook_timeout_ms, &status, output, sizeof(output), &error) < 0) {
		job->counts.hook_failures++;
		log_warning("event=move_hook_failed group=%u from=%s to=%s reason=\"%s\" "
			    "output=\"%s\" note=\"the move goes on\"",
			    g->group_id, g->backend, g->move_to, error, output);
		return;
	}
	job->counts.hook_runs++;
	log_info("event=move_hook group=%u from=%s to=%s exit=0 output=\"%s\"", g->group_id,
		 g->backend, g->move_to, output);
}

static int count_acks(struct pass *p, const struct geodb_group *g, unsigned *acked_r)
{
	struct geodb_move_ack *acks;
	size_t count;
	const char *error;
	if (geodb_move_ack_list(p->db, g->group_id, &acks, &count, &error) < 0)
		return fail(p, "reading move acknowledgements", error);
	unsigned acked = 0;
	for (size_t i = 0; i < count; i++) {
		if (acks[i].epoch == g->epoch && is_live(p, acks[i].observer))
			acked++;
	}
	free(acks);
	*acked_r = acked;
	return 0;
}

/* Ends group i's move without switching: the group stays where it is. */
static int cancel_move(struct pass *p, size_t i, const char *why)
{
	struct geodb_group *g = site_group(p, i);
	struct geodb_group row = *g;
	row.move_to[0] = '\0';
	row.move_reason[0] = '\0';
	row.move_started_ms = 0;
	int r = group_write(p, i, &row, "cancelling a move");
	if (r == 1)
		log_warning("event=move_cancelled group=%u backend=%s reason=\"%s\"", g->group_id,
			    g->backend, why);
	return r < 0 ? -1 : 0;
}

static int progress_moves(struct pass *p)
{
	struct controller_act_job *job = p->job;
	for (size_t i = 0; i < p->group_count; i++) {
		struct geodb_group *g = site_group(p, i);
		if (g->move_to[0] == '\0')
			continue;
		int from = p->fg[i].backend;
		int to = backend_index(p, g->move_to);
		/* down means marked down (or removed): an operator's offline
		 * backend may still hold sessions, so that move waits */
		struct move_view view = {
			.started_ms = g->move_started_ms,
			.from_down = from < 0 || p->fb[from].mark == HEALTH_MARK_DOWN,
			.live = (unsigned)p->live_count,
		};
		if (to < 0) {
			char why[200];
			snprintf(why, sizeof(why), "its target %s no longer exists in site %s",
				 g->move_to, job->site);
			if (cancel_move(p, i, why) < 0)
				return -1;
			continue;
		}
		if (p->fb[to].status != BACKEND_STATUS_ONLINE ||
		    p->fb[to].mark == HEALTH_MARK_DOWN) {
			/* the target died (or was taken out) mid-move: the move
			 * is cancelled; a group whose own backend is down is
			 * failed over below like any other (an operator's target
			 * with load factor 0 is the operator's choice: kept) */
			char why[200];
			snprintf(why, sizeof(why), "its target %s is %s and marked %s", g->move_to,
				 backend_status_name(p->fb[to].status), health_mark_name(p->fb[to].mark));
			if (cancel_move(p, i, why) < 0)
				return -1;
			continue;
		}
		if (!view.from_down && count_acks(p, g, &view.acked) < 0)
			return -1;
		char reason[200];
		enum move_outcome outcome =
			move_progress(job->move_timeout_ms, &view, p->now_ms, reason, sizeof(reason));
		if (outcome == MOVE_WAIT)
			continue;
		if (outcome != MOVE_FINISH_DOWN)
			kick_old_backend(p, g);
		run_hook(p, g);
		char from_name[NAME_MAX_LEN + 1], to_name[NAME_MAX_LEN + 1], why[96];
		snprintf(from_name, sizeof(from_name), "%s", g->backend);
		snprintf(to_name, sizeof(to_name), "%s", g->move_to);
		snprintf(why, sizeof(why), "%s", g->move_reason);
		struct geodb_group row = *g;
		snprintf(row.backend, sizeof(row.backend), "%s", g->move_to);
		snprintf(row.site, sizeof(row.site), "%s", site_backend(p, (size_t)to)->site);
		if (strcmp(row.alt_backend, row.backend) == 0)
			row.alt_backend[0] = '\0';
		row.move_to[0] = '\0';
		row.move_reason[0] = '\0';
		row.move_started_ms = 0;
		int r = group_write(p, i, &row, "finishing a move");
		if (r < 0)
			return -1;
		if (r == 0)
			continue;
		if (outcome == MOVE_FINISH_ACKED)
			job->counts.moves_acked++;
		else if (outcome == MOVE_FINISH_DOWN)
			job->counts.moves_source_down++;
		else
			job->counts.moves_timed_out++;
		log_msg(outcome == MOVE_FINISH_TIMEOUT ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO,
			"event=move_finished group=%u from=%s to=%s outcome=%s move_reason=\"%s\" "
			"reason=\"%s\" msecs=%lld",
			g->group_id, from_name, to_name, move_outcome_name(outcome), why, reason,
			(long long)(p->now_ms - view.started_ms));
	}
	return 0;
}

/* ---- failover and alternatives ---- */

static int failover(struct pass *p)
{
	struct controller_act_job *job = p->job;
	struct failover_change *moves = calloc(p->group_count + 1, sizeof(*moves));
	size_t count = 0, stranded = 0;
	if (failover_plan(p->fb, p->backend_count, p->fg, p->group_count, moves, &count,
			  &stranded) < 0) {
		free(moves);
		return fail(p, "planning the failover", "out of memory");
	}
	if (stranded > 0) {
		job->counts.stranded += stranded;
		log_warning("event=failover_stranded site=%s groups=%zu reason=\"their backend is "
			    "marked down and no backend of the site can take them\"",
			    job->site, stranded);
	}
	int ret = 0;
	for (size_t m = 0; m < count; m++) {
		size_t i = moves[m].group;
		struct geodb_group *g = site_group(p, i);
		if (g->move_to[0] != '\0')
			continue; /* progress_moves() finishes it (source down) */
		struct geodb_group row = *g;
		const char *target = p->fb[moves[m].backend].name;
		bool to_alt = strcmp(g->alt_backend, target) == 0;
		snprintf(row.backend, sizeof(row.backend), "%s", target);
		row.alt_backend[0] = '\0'; /* chosen afresh below */
		char from[NAME_MAX_LEN + 1];
		snprintf(from, sizeof(from), "%s", g->backend);
		int r = group_write(p, i, &row, "failing a group over");
		if (r < 0) {
			ret = -1;
			break;
		}
		if (r == 0)
			continue;
		job->counts.failovers++;
		log_info("event=group_failover group=%u from=%s to=%s site=%s reason=\"backend %s is "
			 "marked down; %s\"",
			 g->group_id, from, target, job->site, from,
			 to_alt ? "to its pre-chosen alternative" : "its alternative could not take it");
	}
	free(moves);
	return ret;
}

static int alternatives(struct pass *p)
{
	struct controller_act_job *job = p->job;
	struct failover_change *changes = calloc(ALTERNATIVE_CHANGES_PER_PASS, sizeof(*changes));
	size_t count = 0;
	if (failover_alternatives(p->fb, p->backend_count, p->fg, p->group_count,
				  ALTERNATIVE_CHANGES_PER_PASS, changes, &count) < 0) {
		free(changes);
		return fail(p, "choosing alternatives", "out of memory");
	}
	int ret = 0;
	for (size_t c = 0; c < count; c++) {
		size_t i = changes[c].group;
		struct geodb_group *g = site_group(p, i);
		if (g->move_to[0] != '\0')
			continue; /* an epoch change would void the move's acknowledgements */
		struct geodb_group row = *g;
		snprintf(row.alt_backend, sizeof(row.alt_backend), "%s",
			 p->fb[changes[c].backend].name);
		int r = group_write(p, i, &row, "choosing an alternative");
		if (r < 0) {
			ret = -1;
			break;
		}
		if (r == 1) {
			job->counts.alt_changes++;
			log_debug("event=group_alternative group=%u backend=%s alternative=%s",
				  g->group_id, g->backend, g->alt_backend);
		}
	}
	free(changes);
	return ret;
}

/* ---- sites (brain/site.h) ---- */

/* This site's heartbeat, and what this site's controller sees of the
 * others: reachable while their newest heartbeat in our replica is at most
 * site_reachability_timeout old.  The records are rewritten every pass (a
 * TTL of a few timeouts: a controller that stops recording leaves none),
 * and a change is logged with its reason. */
static int sites_pass(struct pass *p)
{
	struct controller_act_job *job = p->job;
	const char *error;
	if (!may_write(p))
		return -1;
	if (geodb_site_heartbeat_put(p->db, job->site, job->me, p->now_ms, &error) < 0)
		return fail(p, "writing the site's heartbeat", error);
	job->counts.site_heartbeats++;
	if (p->snap.site_count < 2)
		return 0;

	struct site_settings set;
	site_settings_init(&set);
	set.reachability_timeout_ms = job->site_reachability_timeout_ms;
	int64_t from = p->now_ms - 2 * set.reachability_timeout_ms - GEODB_HEARTBEAT_BUCKET_MS;
	struct geodb_site_heartbeat *beats = NULL;
	struct geodb_site_reachability *recs = NULL;
	size_t beat_count = 0, rec_count = 0;
	if (geodb_site_heartbeat_list(p->db, NULL, from, p->now_ms, &beats, &beat_count, &error) <
		    0 ||
	    geodb_site_reachability_list(p->db, NULL, &recs, &rec_count, &error) < 0) {
		free(beats);
		free(recs);
		return fail(p, "reading the sites' heartbeats and reachability", error);
	}
	/* every site's records: the failover decision reads the others' */
	p->reach = recs;
	p->reach_count = rec_count;
	p->own = calloc(p->snap.site_count + 1, sizeof(*p->own));
	unsigned ttl_secs = (unsigned)(4 * set.reachability_timeout_ms / 1000);
	if (ttl_secs < 60)
		ttl_secs = 60;
	int ret = 0;
	for (size_t i = 0; i < p->snap.site_count && ret == 0; i++) {
		const char *target = p->snap.sites[i].name;
		if (strcmp(target, job->site) == 0)
			continue;
		int64_t newest = INT64_MIN;
		for (size_t b = 0; b < beat_count; b++) {
			if (strcmp(beats[b].site, target) == 0 && beats[b].beat_ms > newest)
				newest = beats[b].beat_ms;
		}
		struct site_reachability record = {0};
		for (size_t r = 0; r < rec_count; r++) {
			if (strcmp(recs[r].observer_site, job->site) == 0 &&
			    strcmp(recs[r].target_site, target) == 0)
				record = (struct site_reachability){
					.known = true,
					.reachable = recs[r].reachable,
					.since_ms = recs[r].since_ms,
				};
		}
		if (site_reachability_update(&set, &record, newest, p->now_ms)) {
			job->counts.site_reachability_changes++;
			char seen[64];
			if (newest == INT64_MIN)
				snprintf(seen, sizeof(seen), "no heartbeat in the last %lld s",
					 (long long)((p->now_ms - from) / 1000));
			else
				snprintf(seen, sizeof(seen), "newest heartbeat %.1f s old",
					 (double)(p->now_ms - newest) / 1000);
			log_info("event=site_reachability observer=%s target=%s reachable=%s "
				 "reason=\"%s (site_reachability_timeout %u s)\"",
				 job->site, target, record.reachable ? "yes" : "no", seen,
				 job->site_reachability_timeout_ms / 1000);
		}
		p->own[i] = record;
		if (!may_write(p)) {
			ret = -1;
			break;
		}
		struct geodb_site_reachability row = {
			.reachable = record.reachable,
			.since_ms = record.since_ms,
			.observed_ms = p->now_ms,
		};
		snprintf(row.observer_site, sizeof(row.observer_site), "%s", job->site);
		snprintf(row.target_site, sizeof(row.target_site), "%s", target);
		if (geodb_site_reachability_put(p->db, &row, ttl_secs, &error) < 0)
			ret = fail(p, "recording another site's reachability", error);
	}
	/* the verdicts from here on see the recent beats too (the snapshot
	 * has only those its cells need): an outage cell is not written while
	 * the home site's beats show it alive (site_failover_plan()) */
	struct geodb_site_heartbeat *all =
		calloc(p->snap.heartbeat_count + beat_count + 1, sizeof(*all));
	size_t n = 0;
	for (size_t i = 0; i < p->snap.heartbeat_count; i++)
		all[n++] = p->snap.heartbeats[i];
	for (size_t i = 0; i < beat_count; i++)
		all[n++] = beats[i];
	geodb_sort_heartbeats(all, n);
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (kept > 0 && strcmp(all[kept - 1].site, all[i].site) == 0 &&
		    all[kept - 1].bucket == all[i].bucket)
			continue;
		all[kept++] = all[i];
	}
	p->beats = all;
	p->view.heartbeats = all;
	p->view.heartbeat_count = kept;
	free(beats);
	return ret;
}

/* ---- site failover (brain/site.h) ---- */

static void site_settings_of(const struct controller_act_job *job, struct site_settings *set)
{
	site_settings_init(set);
	set->reachability_timeout_ms = job->site_reachability_timeout_ms;
	set->failover_delay_ms = job->site_failover_delay_ms;
	set->failover_rate = job->site_failover_rate;
	set->failback_delay_ms = job->site_failback_delay_ms;
}

/* Every assigned group as the brain sees it: home cell, failover cell,
 * weight; site_loc[i] is the site serving it (effective location). */
struct site_groups {
	struct site_group *sg;
	const struct geodb_group **row;
	const struct geodb_group_failover **cell;
	int *loc_site;
	size_t count;
};

static void site_groups_load(struct pass *p, struct site_groups *x)
{
	size_t n = p->snap.group_row_count;
	x->sg = calloc(n + 1, sizeof(*x->sg));
	x->row = calloc(n + 1, sizeof(*x->row));
	x->cell = calloc(n + 1, sizeof(*x->cell));
	x->loc_site = calloc(n + 1, sizeof(*x->loc_site));
	x->count = 0;
	const struct controller_weights *w = p->job->weights;
	struct site_heartbeats hb = route_site_heartbeats(&p->view);
	for (size_t i = 0; i < n; i++) {
		const struct geodb_group *g = &p->snap.groups[i];
		if (g->backend[0] == '\0')
			continue;
		struct site_group *sg = &x->sg[x->count];
		const struct geodb_group_failover *cell = snap_cell(p, g->group_id);
		sg->group_id = g->group_id;
		sg->weight = w != NULL && w->weight != NULL && g->group_id < p->job->group_count
				     ? w->weight[g->group_id]
				     : 0;
		route_home_cell(&p->view, g, &sg->home);
		route_failover_cell(&p->view, cell, &sg->cell);
		struct site_location loc;
		site_effective_location(&sg->home, &sg->cell, &hb, &loc);
		x->row[x->count] = g;
		x->cell[x->count] = cell;
		x->loc_site[x->count] = loc.site;
		x->count++;
	}
}

static void site_groups_free(struct site_groups *x)
{
	free(x->sg);
	free(x->row);
	free(x->cell);
	free(x->loc_site);
}

/* The home site's part: a failover site for each of its groups that needs
 * one (none yet, or one that can no longer take groups), spread by the
 * other sites' room and tags; a change raises the group's epoch. */
static int choose_failover_sites(struct pass *p, struct site_groups *x)
{
	struct controller_act_job *job = p->job;
	size_t ns = p->snap.site_count < SITE_MAX ? p->snap.site_count : SITE_MAX;
	struct site_candidate cand[SITE_MAX];
	for (size_t c = 0; c < ns; c++) {
		const struct geodb_site *site = &p->snap.sites[c];
		cand[c] = (struct site_candidate){site->name, site->tags, site->status, 0, 0};
	}
	for (size_t b = 0; b < p->snap.backend_count; b++) {
		const struct geodb_backend *be = &p->snap.backends[b];
		int c = route_site_index(&p->view, be->site);
		if (c >= 0 && (size_t)c < ns && be->status == BACKEND_STATUS_ONLINE &&
		    be->mark != HEALTH_MARK_DOWN)
			cand[c].capacity += be->load_factor;
	}
	for (size_t i = 0; i < x->count; i++) {
		if (x->loc_site[i] >= 0 && (size_t)x->loc_site[i] < ns)
			cand[x->loc_site[i]].load++;
	}
	struct site_failover_site_change *changes = calloc(100, sizeof(*changes));
	size_t count = 0;
	struct site_heartbeats hb = route_site_heartbeats(&p->view);
	site_failover_sites(cand, ns, p->self, x->sg, x->count, &hb, 100, changes, &count);
	int ret = 0;
	for (size_t k = 0; k < count && ret == 0; k++) {
		/* the group among this site's groups (p->gidx) */
		const struct geodb_group *g = x->row[changes[k].group];
		size_t i = 0;
		while (i < p->group_count && site_group(p, i) != g)
			i++;
		if (i == p->group_count || g->move_to[0] != '\0')
			continue; /* failed over, or moving: an epoch change would void the move */
		struct geodb_group row = *g;
		const char *to = p->snap.sites[changes[k].site].name;
		snprintf(row.failover_site, sizeof(row.failover_site), "%s", to);
		int r = group_write(p, i, &row, "choosing a failover site");
		if (r < 0)
			ret = -1;
		else if (r == 1) {
			job->counts.site_failover_site_changes++;
			log_debug("event=group_failover_site group=%u failover_site=%s old=%s",
				  g->group_id, to,
				  changes[k].old_site >= 0 ? p->snap.sites[changes[k].old_site].name
							   : "none");
		}
	}
	free(changes);
	return ret;
}

/* Logs the decision about home when its kind differs from the one before
 * (what is done, whether home is reachable, whether this site holds cells
 * of it), not every pass while "unreachable for N s" counts up. */
static void note_decision(struct controller_act_job *job, const char *home,
			  const struct site_decision *d, bool reachable, bool holds_cells)
{
	struct controller_sites *st = job->sites;
	size_t k = 0;
	while (k < st->last_count && strcmp(st->last[k].site, home) != 0)
		k++;
	if (k == st->last_count) {
		if (k == SITE_MAX)
			return;
		st->last_count++;
		snprintf(st->last[k].site, sizeof(st->last[k].site), "%s", home);
		st->last[k].text[0] = '\0';
	}
	char key[sizeof(st->last[k].text)];
	snprintf(key, sizeof(key), "%d/%d/%d/%d/%d/%d", d->fail_over, (int)d->reason,
		 d->release_outage, d->release_evacuate, reachable, holds_cells);
	if (strcmp(st->last[k].text, key) == 0)
		return;
	snprintf(st->last[k].text, sizeof(st->last[k].text), "%s", key);
	log_msg(d->fail_over ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO,
		"event=site_failover_decision site=%s home=%s fail_over=%s release=%s "
		"reason=\"%s\"",
		job->site, home, d->fail_over ? site_failover_reason_name(d->reason) : "no",
		d->release_outage && d->release_evacuate ? "all"
		: d->release_outage			 ? "outage"
		: d->release_evacuate			 ? "evacuate"
							 : "no",
		d->reason_text);
}

/* This site as the failover site of home's groups: the decision, then the
 * cells it writes and releases, within *allowance moves. */
static int fail_over_site(struct pass *p, struct site_groups *x, int home, unsigned *allowance,
			  const struct site_settings *set)
{
	struct controller_act_job *job = p->job;
	size_t ns = p->snap.site_count < SITE_MAX ? p->snap.site_count : SITE_MAX;
	const char *home_name = p->snap.sites[home].name;
	struct site_reachability reports[SITE_MAX];
	memset(reports, 0, sizeof(reports));
	for (size_t r = 0; r < p->reach_count; r++) {
		if (strcmp(p->reach[r].target_site, home_name) != 0)
			continue;
		int c = route_site_index(&p->view, p->reach[r].observer_site);
		if (c >= 0 && (size_t)c < ns)
			reports[c] = (struct site_reachability){true, p->reach[r].reachable,
								p->reach[r].since_ms};
	}
	/* the home site's groups, and which of them this site holds */
	struct site_group *hg = calloc(x->count + 1, sizeof(*hg));
	size_t *hx = calloc(x->count + 1, sizeof(*hx));
	size_t n = 0;
	bool outage_cells = false, evacuate_cells = false, void_cells = false;
	struct site_heartbeats hb = route_site_heartbeats(&p->view);
	for (size_t i = 0; i < x->count; i++) {
		if (x->sg[i].home.site != home)
			continue;
		const struct site_group *g = &x->sg[i];
		if (g->cell.present && g->cell.writer_site == p->self) {
			if (site_cell_verdict(&g->home, &g->cell, &hb) != SITE_VERDICT_STANDS)
				void_cells = true;
			else if (g->cell.reason == SITE_REASON_OUTAGE)
				outage_cells = true;
			else
				evacuate_cells = true;
		}
		hx[n] = i;
		hg[n++] = *g;
	}
	struct site_failover_view v = {
		.self = p->self,
		.home = home,
		.home_status = p->snap.sites[home].status,
		.site_count = ns,
		.own = p->own,
		.reports = reports,
		.has_outage_cells = outage_cells,
		.has_evacuate_cells = evacuate_cells,
	};
	struct site_decision d;
	site_failover_decide(set, &v, p->now_ms, &d);
	note_decision(job, home_name, &d, p->own[home].known && p->own[home].reachable,
		      outage_cells || evacuate_cells);
	int ret = 0;
	if (!d.fail_over && !d.release_outage && !d.release_evacuate && !void_cells)
		goto out;

	/* this site's backends, with the groups each serves now */
	struct placement_candidate *pc = calloc(p->backend_count + 1, sizeof(*pc));
	for (size_t b = 0; b < p->backend_count; b++)
		pc[b] = (struct placement_candidate){
			.name = p->fb[b].name,
			.status = p->fb[b].mark == HEALTH_MARK_DOWN ? BACKEND_STATUS_OFFLINE
								    : p->fb[b].status,
			.load_factor = p->fb[b].load_factor,
		};
	for (size_t i = 0; i < x->count; i++) {
		int b = -1;
		if (x->loc_site[i] != p->self)
			continue;
		if (x->sg[i].home.site == p->self)
			b = backend_index(p, x->row[i]->backend);
		else if (x->cell[i] != NULL)
			b = backend_index(p, x->cell[i]->target_backend);
		if (b >= 0)
			pc[b].assigned_groups++;
	}
	size_t max = n + 1, count = 0, stranded = 0;
	struct site_cell_change *ch = calloc(max, sizeof(*ch));
	site_failover_plan(&d, p->self, hg, n, &hb, pc, p->backend_count, *allowance, p->now_ms,
			   ch, max, &count, &stranded);
	if (stranded > 0)
		log_warning("event=site_failover_stranded site=%s home=%s groups=%zu "
			    "reason=\"no backend of this site can take them\"",
			    job->site, home_name, stranded);
	for (size_t k = 0; k < count && ret == 0; k++) {
		const struct site_cell_change *c = &ch[k];
		const struct geodb_group *g = x->row[hx[c->group]];
		const char *error;
		if (!may_write(p)) {
			ret = -1;
			break;
		}
		if (c->release) {
			int r = geodb_group_failover_release(p->db, g->group_id, job->site, &error);
			if (r < 0) {
				ret = fail(p, "releasing a failover cell", error);
				break;
			}
			if (c->move)
				(*allowance)--;
			if (r == 0)
				continue;
			if (c->move) {
				job->counts.site_cells_released++;
				log_info("event=site_failback group=%u home=%s backend=%s from_site=%s "
					 "reason=\"%s\"",
					 g->group_id, home_name, g->backend, job->site, d.reason_text);
			} else {
				job->counts.site_cells_cleaned++;
				log_info("event=site_cell_void group=%u home=%s site=%s "
					 "reason=\"deleted: the cell is void (%s), the group is home "
					 "already\"",
					 g->group_id, home_name, job->site,
					 site_verdict_name(
						 site_cell_verdict(&hg[c->group].home,
								   &hg[c->group].cell, &hb)));
			}
			continue;
		}
		struct geodb_group_failover cell = {.group_id = g->group_id,
						    .written_at_ms = p->now_ms,
						    .home_epoch = g->epoch};
		snprintf(cell.writer_site, sizeof(cell.writer_site), "%s", job->site);
		snprintf(cell.target_site, sizeof(cell.target_site), "%s", job->site);
		snprintf(cell.target_backend, sizeof(cell.target_backend), "%s",
			 p->fb[c->cell.target_backend].name);
		snprintf(cell.reason, sizeof(cell.reason), "%s",
			 c->cell.reason == SITE_REASON_EVACUATE ? GEODB_FAILOVER_REASON_EVACUATE
								: GEODB_FAILOVER_REASON_OUTAGE);
		struct geodb_group_failover stored;
		int r = geodb_group_failover_put_if(p->db, &cell, &stored, &error);
		if (r < 0) {
			ret = fail(p, "writing a failover cell", error);
			break;
		}
		(*allowance)--;
		if (r == 0) {
			log_warning("event=site_failover_refused group=%u home=%s site=%s "
				    "reason=\"site %s holds the group's failover cell\"",
				    g->group_id, home_name, job->site, stored.writer_site);
			continue;
		}
		job->counts.site_cells_written++;
		log_info("event=site_failover group=%u home=%s from=%s to=%s site=%s cell=%s "
			 "reason=\"%s\"",
			 g->group_id, home_name, g->backend, cell.target_backend, job->site, cell.reason,
			 d.reason_text);
	}
	free(ch);
	free(pc);
out:
	free(hg);
	free(hx);
	return ret;
}

/* After sites_pass(): this site's failover sites, then its part as the
 * failover site of every other site, paced by site_failover_rate. */
static int site_failover_pass(struct pass *p)
{
	struct controller_act_job *job = p->job;
	if (p->self < 0 || p->snap.site_count < 2 || job->sites == NULL || p->own == NULL)
		return 0;
	struct site_settings set;
	site_settings_of(job, &set);
	struct site_groups x;
	site_groups_load(p, &x);
	int ret = choose_failover_sites(p, &x);
	struct controller_sites *st = job->sites;
	if (!st->pace_set) {
		site_pace_init(&st->pace, p->now_ms);
		st->pace_set = true;
	}
	unsigned allowance = site_pace_allowance(&st->pace, set.failover_rate, p->now_ms);
	unsigned before = allowance;
	size_t ns = p->snap.site_count < SITE_MAX ? p->snap.site_count : SITE_MAX;
	for (size_t b = 0; b < ns && ret == 0; b++) {
		if ((int)b != p->self)
			ret = fail_over_site(p, &x, (int)b, &allowance, &set);
	}
	site_pace_spend(&st->pace, before - allowance);
	unsigned held = 0;
	struct site_heartbeats hb = route_site_heartbeats(&p->view);
	for (size_t i = 0; i < x.count; i++)
		if (x.sg[i].cell.present && x.sg[i].cell.writer_site == p->self &&
		    site_cell_verdict(&x.sg[i].home, &x.sg[i].cell, &hb) == SITE_VERDICT_STANDS)
			held++;
	st->cells_held = held;
	site_groups_free(&x);
	return ret;
}

/* ---- balancing ---- */

static struct controller_metrics_host *metrics_host(struct controller_metrics *m,
						    const char *backend, bool create)
{
	for (size_t i = 0; i < m->count; i++) {
		if (strcmp(m->hosts[i].backend, backend) == 0)
			return &m->hosts[i];
	}
	if (!create)
		return NULL;
	struct controller_metrics_host *hosts = realloc(m->hosts, (m->count + 1) * sizeof(*hosts));
	if (hosts == NULL)
		return NULL;
	m->hosts = hosts;
	struct controller_metrics_host *h = &hosts[m->count++];
	memset(h, 0, sizeof(*h));
	snprintf(h->backend, sizeof(h->backend), "%s", backend);
	metrics_average_init(&h->average, m->window);
	return h;
}

/* Scrapes every backend of the site whose last scrape is metrics_interval
 * old (blocking, in the worker; each bounded by timeout_ms). */
static void scrape_due(struct pass *p)
{
	struct controller_act_job *job = p->job;
	struct controller_metrics *m = job->metrics;
	if (m == NULL || m->url[0] == '\0')
		return;
	for (size_t i = 0; i < p->backend_count; i++) {
		const struct geodb_backend *b = site_backend(p, i);
		struct controller_metrics_host *h = metrics_host(m, b->name, true);
		if (h == NULL)
			return;
		if (h->last_ms != 0 && mono_ms() - h->last_ms < (int64_t)m->interval_ms)
			continue;
		if (worker_stopping(job->worker))
			return;
		h->last_ms = mono_ms();
		char url[600];
		const char *error = "the expanded backend_metrics_url is too long";
		struct metrics_sample sample;
		int r = doveadm_url_expand(m->url, b->name, b->address, url, sizeof(url));
		if (r == 0)
			r = metrics_scrape(url, m->timeout_ms, &sample, &error);
		if (r == 0)
			r = metrics_average_add(&h->average, &sample, &error);
		job->counts.metrics_scrapes++;
		if (r < 0) {
			job->counts.metrics_failures++;
			if (!h->failing)
				log_warning("event=metrics_failed backend=%s reason=\"%s\" note=\"balancing "
					    "goes on with the figures it has\"",
					    b->name, error);
			h->failing = true;
		} else if (h->failing) {
			log_info("event=metrics_ok backend=%s", b->name);
			h->failing = false;
		}
	}
}

static void plan_json(struct pass *p, const struct balance_backend *bb,
		      const struct balance_plan *plan)
{
	struct controller_act_job *job = p->job;
	struct strbuf *out = job->plan_json;
	if (out == NULL)
		return;
	strbuf_printf(out, "{\"site\":");
	strbuf_append_json_string(out, job->site);
	strbuf_printf(out, ",\"mode\":\"%s\",\"max_ratio_before\":%.3f,\"max_ratio_after\":%.3f,"
			   "\"summary\":",
		      balance_mode_name(job->balance_mode), plan->max_ratio_before,
		      plan->max_ratio_after);
	strbuf_append_json_string(out, plan->summary);
	strbuf_append(out, ",\"backends\":[");
	for (size_t i = 0; i < p->backend_count; i++) {
		const struct balance_backend_view *v = &plan->backends[i];
		strbuf_append(out, i == 0 ? "{\"backend\":" : ",{\"backend\":");
		strbuf_append_json_string(out, bb[i].name);
		strbuf_printf(out,
			      ",\"load\":%.2f,\"target\":%.2f,\"ratio\":%.3f,"
			      "\"resource_factor\":%.3f,\"can_take\":%s,\"samples\":%u,"
			      "\"cpu_busy\":%.3f,\"mem_available\":%.3f,\"io_busy\":%.3f}",
			      v->load, v->target, v->ratio, v->resource_factor,
			      v->can_take ? "true" : "false", bb[i].resources.samples,
			      bb[i].resources.cpu_busy, bb[i].resources.mem_available,
			      bb[i].resources.io_busy);
	}
	strbuf_append(out, "],\"moves\":[");
	for (size_t m = 0; m < plan->move_count; m++) {
		const struct balance_move *mv = &plan->moves[m];
		strbuf_printf(out, "%s{\"group\":%u,\"from\":", m == 0 ? "" : ",", mv->group_id);
		strbuf_append_json_string(out, bb[mv->from].name);
		strbuf_append(out, ",\"to\":");
		strbuf_append_json_string(out, bb[mv->to].name);
		strbuf_printf(out, ",\"weight\":%.2f,\"warm\":%s,\"reason\":", mv->weight,
			      mv->warm ? "true" : "false");
		strbuf_append_json_string(out, mv->reason);
		strbuf_append(out, "}");
	}
	strbuf_append(out, "]}");

	/* the same as text, for the CLI */
	struct strbuf *text = job->plan_text;
	if (text == NULL)
		return;
	strbuf_printf(text, "site %s, balance %s: highest load/share %.2f, after these moves %.2f; %s\n",
		      job->site, balance_mode_name(job->balance_mode), plan->max_ratio_before,
		      plan->max_ratio_after, plan->summary);
	strbuf_printf(text, "%-20s %10s %10s %7s %7s  %s\n", "backend", "load", "target", "ratio",
		      "factor", "resources");
	for (size_t i = 0; i < p->backend_count; i++) {
		const struct balance_backend_view *v = &plan->backends[i];
		strbuf_printf(text, "%-20s %10.1f %10.1f %7.2f %7.2f  ", bb[i].name, v->load,
			      v->target, v->ratio, v->resource_factor);
		if (bb[i].resources.samples == 0)
			strbuf_append(text, "no samples");
		else
			strbuf_printf(text, "cpu %.0f%% mem available %.0f%% io %.0f%% (%u samples)",
				      100 * bb[i].resources.cpu_busy,
				      100 * bb[i].resources.mem_available,
				      100 * bb[i].resources.io_busy, bb[i].resources.samples);
		strbuf_append(text, v->can_take ? "\n" : " (takes no groups)\n");
	}
	for (size_t m = 0; m < plan->move_count; m++) {
		const struct balance_move *mv = &plan->moves[m];
		strbuf_printf(text, "move group %u from %s to %s (weight %.1f%s): %s\n", mv->group_id,
			      bb[mv->from].name, bb[mv->to].name, mv->weight, mv->warm ? ", warm" : "",
			      mv->reason);
	}
}

static int balance_round(struct pass *p)
{
	struct controller_act_job *job = p->job;
	if (!job->plan_only && (!job->balance_due || job->balance_mode == BALANCE_OFF))
		return 0;
	struct geodb_group_load *loads;
	size_t load_count;
	const char *error;
	if (geodb_group_load_list(p->db, &loads, &load_count, &error) < 0)
		return fail(p, "reading group loads", error);
	double *weight = calloc(job->group_count + 1, sizeof(*weight));
	for (size_t i = 0; i < load_count; i++) {
		/* a live daemon's report; a dead one's sessions are gone */
		if (loads[i].group_id < job->group_count && is_live(p, loads[i].observer))
			weight[loads[i].group_id] += loads[i].sessions + loads[i].logins;
	}
	free(loads);
	/* smoothed (controller_act.h); a plan for the API reads, never updates */
	struct controller_weights *w = job->weights;
	if (w != NULL) {
		if (w->weight == NULL) {
			w->weight = calloc(job->group_count + 1, sizeof(*w->weight));
			w->seen = calloc(job->group_count + 1, 1);
		}
		int64_t now = mono_ms();
		double keep = w->at_ms == 0 ? 0.0
					    : exp(-(double)(now - w->at_ms) / CONTROLLER_WEIGHT_TAU_MS);
		for (unsigned g = 0; g < job->group_count; g++) {
			/* a group's first figure is taken as it is */
			double smoothed = !w->seen[g] ? weight[g]
						      : keep * w->weight[g] + (1 - keep) * weight[g];
			if (!job->plan_only && weight[g] > 0)
				w->seen[g] = 1;
			if (!job->plan_only)
				w->weight[g] = smoothed;
			weight[g] = smoothed;
		}
		if (!job->plan_only)
			w->at_ms = now;
	}
	struct balance_backend *bb = calloc(p->backend_count + 1, sizeof(*bb));
	for (size_t i = 0; i < p->backend_count; i++) {
		bb[i] = (struct balance_backend){
			.name = p->fb[i].name,
			.status = p->fb[i].status,
			.mark = p->fb[i].mark,
			.load_factor = p->fb[i].load_factor,
		};
		const struct controller_metrics_host *h =
			job->metrics != NULL ? metrics_host(job->metrics, p->fb[i].name, false) : NULL;
		if (h != NULL)
			metrics_average_get(&h->average, &bb[i].resources);
		/* the load the resources were measured under: the smoothed one
		 * (balance.h: 0 would mean the current load) */
		for (size_t g = 0; g < p->group_count; g++) {
			if (p->fg[g].backend == (int)i)
				bb[i].resources.load += weight[site_group(p, g)->group_id];
		}
	}
	struct balance_group *bg = calloc(p->group_count + 1, sizeof(*bg));
	for (size_t i = 0; i < p->group_count; i++) {
		const struct geodb_group *g = site_group(p, i);
		bg[i] = (struct balance_group){
			.group_id = g->group_id,
			.backend = p->fg[i].backend,
			.weight = weight[g->group_id],
			.moved_at_ms = g->moved_at_ms,
			.sticky = g->sticky,
			.moving = g->move_to[0] != '\0',
		};
		for (int h = 0; h < BALANCE_HISTORY; h++) {
			bg[i].history[h] = g->history[h].backend[0] != '\0'
						   ? backend_index(p, g->history[h].backend)
						   : -1;
			bg[i].history_left_ms[h] = g->history[h].left_ms;
		}
	}
	free(weight);
	struct balance_plan plan;
	int ret = 0;
	if (balance_plan(&job->balance, bb, p->backend_count, bg, p->group_count, p->now_ms,
			 &plan) < 0) {
		free(bb);
		free(bg);
		return fail(p, "planning the balance", "out of memory");
	}
	job->counts.balance_rounds = 1;
	job->max_ratio_before = plan.max_ratio_before;
	job->max_ratio_after = plan.max_ratio_after;
	plan_json(p, bb, &plan);
	bool dry = job->plan_only || job->balance_mode == BALANCE_DRYRUN;
	for (size_t m = 0; m < plan.move_count && !job->plan_only; m++) {
		const struct balance_move *mv = &plan.moves[m];
		if (dry) {
			job->counts.balance_moves_dryrun++;
			log_info("event=balance_move dryrun=yes group=%u from=%s to=%s weight=%.1f "
				 "reason=\"%s\"",
				 mv->group_id, bb[mv->from].name, bb[mv->to].name, mv->weight,
				 mv->reason);
			continue;
		}
		struct geodb_group *g = site_group(p, mv->group);
		struct geodb_group row = *g;
		snprintf(row.move_to, sizeof(row.move_to), "%s", bb[mv->to].name);
		row.move_started_ms = unix_ms();
		snprintf(row.move_reason, sizeof(row.move_reason), "balance: %.80s", mv->reason);
		int r = group_write(p, mv->group, &row, "starting a balancing move");
		if (r < 0) {
			ret = -1;
			break;
		}
		if (r == 0)
			continue;
		job->counts.balance_moves++;
		log_info("event=balance_move dryrun=no group=%u from=%s to=%s weight=%.1f "
			 "reason=\"%s\"",
			 mv->group_id, bb[mv->from].name, bb[mv->to].name, mv->weight, mv->reason);
	}
	if (!job->plan_only)
		log_msg(plan.move_count > 0 ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
			"event=balance_round site=%s mode=%s moves=%zu max_ratio=%.3f "
			"max_ratio_after=%.3f summary=\"%s\"",
			job->site, balance_mode_name(job->balance_mode), plan.move_count,
			plan.max_ratio_before, plan.max_ratio_after, plan.summary);
	balance_plan_free(&plan);
	free(bb);
	free(bg);
	return ret;
}

void controller_act_run(struct geodb *db, const char *open_error, void *arg)
{
	struct controller_act_job *job = arg;
	struct pass p = {.job = job, .db = db};
	job->counts.passes = 1;
	if (db == NULL) {
		fail(&p, "opening the GeoDB", open_error);
	} else if (job->plan_only) {
		/* /api/balance/plan: read and plan, nothing else */
		if (load(&p) == 0)
			balance_round(&p);
	} else if (load(&p) == 0) {
		bool ok = decide_health(&p) == 0 && progress_moves(&p) == 0 && failover(&p) == 0 &&
			  alternatives(&p) == 0;
		/* the site's heartbeat does not wait for the other steps: a
		 * failing write there must not make the other sites think this
		 * one is gone */
		ok = sites_pass(&p) == 0 && ok;
		ok = ok && site_failover_pass(&p) == 0;
		if (ok) {
			scrape_due(&p);
			balance_round(&p);
		}
	}
	if (job->failed)
		job->counts.pass_failures = 1;
	geodb_snapshot_free(&p.snap);
	free(p.obs);
	free(p.live);
	free(p.bidx);
	free(p.fb);
	free(p.gidx);
	free(p.fg);
	free(p.own);
	free(p.reach);
	free(p.beats);
}
