/* site.c - see site.h. */
#include "brain/site.h"

#include "util/hash.h"

#include <stdio.h>
#include <string.h>

void site_settings_init(struct site_settings *set)
{
	set->failover_delay_ms = SITE_FAILOVER_DELAY_MS_DEFAULT;
	set->failover_rate = SITE_FAILOVER_RATE_DEFAULT;
	set->failback_delay_ms = SITE_FAILBACK_DELAY_MS_DEFAULT;
	set->reachability_timeout_ms = SITE_REACHABILITY_TIMEOUT_MS_DEFAULT;
}

/* ---- heartbeats ---- */

int64_t site_heartbeat_bucket(int64_t t_ms)
{
	/* floor, also for times before the epoch */
	int64_t q = t_ms / SITE_HEARTBEAT_BUCKET_MS;
	return t_ms < 0 && q * SITE_HEARTBEAT_BUCKET_MS != t_ms ? q - 1 : q;
}

bool site_heartbeat_rows_exist(const void *context, int site, int64_t bucket)
{
	const struct site_heartbeat_rows *rows = context;
	size_t lo = 0, hi = rows->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct site_heartbeat_row *r = &rows->rows[mid];
		if (r->site < site || (r->site == site && r->bucket < bucket))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rows->count && rows->rows[lo].site == site && rows->rows[lo].bucket == bucket;
}

bool site_alive_at(const struct site_heartbeats *heartbeats, int site, int64_t t_ms)
{
	int64_t bucket = site_heartbeat_bucket(t_ms);
	return heartbeats->exists(heartbeats->context, site, bucket) ||
	       heartbeats->exists(heartbeats->context, site, bucket - 1);
}

/* ---- reachability ---- */

bool site_reachability_update(const struct site_settings *set, struct site_reachability *record,
			      int64_t newest_heartbeat_ms, int64_t now_ms)
{
	bool reachable = newest_heartbeat_ms != INT64_MIN &&
			 now_ms - newest_heartbeat_ms <= set->reachability_timeout_ms;
	if (record->known && record->reachable == reachable)
		return false;
	record->known = true;
	record->reachable = reachable;
	record->since_ms = now_ms;
	return true;
}

/* ---- cells ---- */

const char *site_failover_reason_name(enum site_failover_reason reason)
{
	switch (reason) {
	case SITE_REASON_OUTAGE:
		return "outage";
	case SITE_REASON_EVACUATE:
		return "evacuate";
	}
	return "unknown";
}

const char *site_verdict_name(enum site_verdict verdict)
{
	switch (verdict) {
	case SITE_VERDICT_HOME:
		return "home";
	case SITE_VERDICT_STANDS:
		return "failover";
	case SITE_VERDICT_VOID_EPOCH:
		return "void_epoch";
	case SITE_VERDICT_VOID_WRITER:
		return "void_writer";
	case SITE_VERDICT_VOID_ALIVE:
		return "void_alive";
	}
	return "unknown";
}

enum site_verdict site_cell_verdict(const struct site_home_cell *home,
				    const struct site_failover_cell *cell,
				    const struct site_heartbeats *heartbeats)
{
	if (!cell->present)
		return SITE_VERDICT_HOME;
	if (cell->home_epoch < home->epoch)
		return SITE_VERDICT_VOID_EPOCH;
	if (cell->writer_site != home->failover_site)
		return SITE_VERDICT_VOID_WRITER;
	if (cell->reason == SITE_REASON_OUTAGE &&
	    site_alive_at(heartbeats, home->site, cell->written_ms))
		return SITE_VERDICT_VOID_ALIVE;
	return SITE_VERDICT_STANDS;
}

void site_effective_location(const struct site_home_cell *home,
			     const struct site_failover_cell *cell,
			     const struct site_heartbeats *heartbeats,
			     struct site_location *location_r)
{
	location_r->verdict = site_cell_verdict(home, cell, heartbeats);
	if (location_r->verdict == SITE_VERDICT_STANDS) {
		location_r->site = cell->target_site;
		location_r->backend = cell->target_backend;
	} else {
		location_r->site = home->site;
		location_r->backend = home->backend;
	}
}

bool site_cell_settled(const struct site_failover_cell *cell, int64_t first_seen_ms,
		       int64_t settle_ms, int64_t now_ms)
{
	if (!cell->present || cell->reason != SITE_REASON_OUTAGE)
		return true;
	return now_ms - first_seen_ms >= settle_ms;
}

/* ---- failover sites ---- */

static uint64_t tie_break(unsigned group_id, const char *name)
{
	uint32_t g = group_id;
	uint64_t h = hash_fnv1a64(&g, sizeof(g));
	return hash_fnv1a64_add(h, name, strlen(name));
}

static bool tag_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t';
}

bool site_tags_share(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return false;
	for (const char *p = a; *p != '\0';) {
		while (tag_sep(*p))
			p++;
		size_t len = 0;
		while (p[len] != '\0' && !tag_sep(p[len]))
			len++;
		if (len == 0)
			break;
		for (const char *q = b; *q != '\0';) {
			while (tag_sep(*q))
				q++;
			size_t qlen = 0;
			while (q[qlen] != '\0' && !tag_sep(q[qlen]))
				qlen++;
			if (qlen == len && memcmp(p, q, len) == 0)
				return true;
			q += qlen;
		}
		p += len;
	}
	return false;
}

static bool site_can_take(const struct site_candidate *sites, size_t site_count, int home, int c)
{
	return c >= 0 && (size_t)c < site_count && c != home &&
	       sites[c].status == SITE_STATUS_ONLINE && sites[c].capacity > 0;
}

void site_failover_sites(const struct site_candidate *sites, size_t site_count, int home,
			 const struct site_group *groups, size_t group_count,
			 const struct site_heartbeats *heartbeats, size_t max_changes,
			 struct site_failover_site_change *changes_r, size_t *change_count_r)
{
	unsigned designated[SITE_MAX] = {0};
	bool eligible[SITE_MAX] = {false};
	*change_count_r = 0;
	if (site_count > SITE_MAX)
		site_count = SITE_MAX;
	if (home < 0 || (size_t)home >= site_count)
		return;
	for (size_t i = 0; i < group_count; i++) {
		int fs = groups[i].home.failover_site;
		if (groups[i].home.site == home && fs >= 0 && (size_t)fs < site_count)
			designated[fs]++;
	}
	/* sites sharing a tag with the home site first, if any can take */
	bool any_tagged = false;
	for (size_t c = 0; c < site_count; c++) {
		if (site_can_take(sites, site_count, home, (int)c) &&
		    site_tags_share(sites[home].tags, sites[c].tags))
			any_tagged = true;
	}
	for (size_t c = 0; c < site_count; c++)
		eligible[c] = site_can_take(sites, site_count, home, (int)c) &&
			      (!any_tagged || site_tags_share(sites[home].tags, sites[c].tags));

	for (size_t i = 0; i < group_count && *change_count_r < max_changes; i++) {
		const struct site_group *g = &groups[i];
		if (g->home.site != home)
			continue;
		if (site_can_take(sites, site_count, home, g->home.failover_site))
			continue;
		if (site_cell_verdict(&g->home, &g->cell, heartbeats) == SITE_VERDICT_STANDS)
			continue; /* failed over: its home cell stays as it is */
		int best = -1;
		uint64_t best_tie = 0;
		for (size_t c = 0; c < site_count; c++) {
			if (!eligible[c])
				continue;
			uint64_t tie = tie_break(g->group_id, sites[c].name);
			if (best >= 0) {
				const struct site_candidate *b = &sites[best], *s = &sites[c];
				/* (load + designated + 1) / capacity, smaller wins */
				uint64_t lhs =
					((uint64_t)s->load + designated[c] + 1) * b->capacity;
				uint64_t rhs =
					((uint64_t)b->load + designated[best] + 1) * s->capacity;
				if (lhs > rhs || (lhs == rhs && tie >= best_tie))
					continue;
			}
			best = (int)c;
			best_tie = tie;
		}
		if (best < 0)
			continue; /* nowhere to go: keep what it has */
		int old = g->home.failover_site;
		if (old >= 0 && (size_t)old < site_count && designated[old] > 0)
			designated[old]--;
		designated[best]++;
		changes_r[(*change_count_r)++] = (struct site_failover_site_change){
			.group = i, .group_id = g->group_id, .site = best, .old_site = old};
	}
}

/* ---- the failover site's decision ---- */

void site_failover_decide(const struct site_settings *set, const struct site_failover_view *view,
			  int64_t now_ms, struct site_decision *decision_r)
{
	struct site_decision *d = decision_r;
	memset(d, 0, sizeof(*d));
	const struct site_reachability *me = &view->own[view->home];
	enum site_status status = view->home_status;
	bool unreachable = me->known && !me->reachable;
	bool reachable = me->known && me->reachable;
	long long delay_s = (long long)(set->failover_delay_ms / 1000);

	if (status == SITE_STATUS_EVACUATE) {
		d->fail_over = true;
		d->reason = SITE_REASON_EVACUATE;
		snprintf(d->reason_text, sizeof(d->reason_text),
			 "status evacuate: draining at site_failover_rate %u/s",
			 set->failover_rate);
	} else if (status == SITE_STATUS_STANDBY) {
		snprintf(d->reason_text, sizeof(d->reason_text),
			 "status standby: not failed over by outage (the operator's)");
	} else if (unreachable) {
		int64_t age = now_ms - me->since_ms;
		if (age < set->failover_delay_ms) {
			snprintf(d->reason_text, sizeof(d->reason_text),
				 "unreachable for %lld s (site_failover_delay %lld s)",
				 (long long)(age / 1000), delay_s);
			return;
		}
		for (size_t c = 0; c < view->site_count; c++) {
			if ((int)c == view->self || (int)c == view->home)
				continue;
			const struct site_reachability *live = &view->own[c],
						       *r = &view->reports[c];
			if (!live->known || !live->reachable || !r->known)
				continue; /* not live in S's view, or no report */
			if (r->reachable) {
				snprintf(d->reason_text, sizeof(d->reason_text),
					 "unreachable for %lld s, but site #%zu reaches it",
					 (long long)(age / 1000), c);
				return;
			}
			if (now_ms - r->since_ms < set->failover_delay_ms) {
				snprintf(d->reason_text, sizeof(d->reason_text),
					 "unreachable for %lld s, from site #%zu for %lld s only "
					 "(site_failover_delay %lld s)",
					 (long long)(age / 1000), c,
					 (long long)((now_ms - r->since_ms) / 1000), delay_s);
				return;
			}
		}
		d->fail_over = true;
		d->reason = SITE_REASON_OUTAGE;
		snprintf(
			d->reason_text, sizeof(d->reason_text),
			"unreachable from every live site for %lld s (site_failover_delay %lld s): "
			"failing over at %u/s",
			(long long)(age / 1000), delay_s, set->failover_rate);
	}
	if (reachable && status == SITE_STATUS_ONLINE) {
		int64_t age = now_ms - me->since_ms;
		d->release_evacuate = view->has_evacuate_cells;
		d->release_outage = view->has_outage_cells && age >= set->failback_delay_ms;
		if (view->has_outage_cells || view->has_evacuate_cells)
			snprintf(d->reason_text, sizeof(d->reason_text),
				 "reachable for %lld s (site_failback_delay %lld s): %s",
				 (long long)(age / 1000),
				 (long long)(set->failback_delay_ms / 1000),
				 d->release_outage || d->release_evacuate ? "failing back"
									  : "waiting");
		else
			snprintf(d->reason_text, sizeof(d->reason_text),
				 "reachable, nothing failed over");
	}
}

/* ---- the pace ---- */

void site_pace_init(struct site_pace *pace, int64_t now_ms)
{
	pace->last_ms = now_ms;
	pace->tokens = 1000; /* one move at once */
}

unsigned site_pace_allowance(struct site_pace *pace, unsigned rate, int64_t now_ms)
{
	if (now_ms > pace->last_ms) {
		pace->tokens += (now_ms - pace->last_ms) * (int64_t)rate;
		pace->last_ms = now_ms;
	}
	int64_t cap = (int64_t)(rate > 0 ? rate : 1) * 1000;
	if (pace->tokens > cap)
		pace->tokens = cap;
	if (rate == 0 || pace->tokens < 1000)
		return 0;
	return (unsigned)(pace->tokens / 1000);
}

void site_pace_spend(struct site_pace *pace, unsigned moves)
{
	pace->tokens -= (int64_t)moves * 1000;
}

/* ---- the failover site's cell writes ---- */

/* (weight, group id) of a after b */
static bool lighter_after(const struct site_group *a, const struct site_group *b)
{
	return a->weight > b->weight || (a->weight == b->weight && a->group_id > b->group_id);
}

/* An outage cell written while the home site's heartbeats still show it
 * alive (a beat in this bucket or the one before) would be void at once by
 * rule 4: it waits until they do not. */
static bool too_early(const struct site_decision *decision, const struct site_group *g,
		      const struct site_heartbeats *heartbeats, int64_t now_ms)
{
	return decision->reason == SITE_REASON_OUTAGE &&
	       site_alive_at(heartbeats, g->home.site, now_ms);
}

void site_failover_plan(const struct site_decision *decision, int self,
			const struct site_group *groups, size_t group_count,
			const struct site_heartbeats *heartbeats,
			struct placement_candidate *backends, size_t backend_count,
			unsigned allowance, int64_t now_ms, struct site_cell_change *changes_r,
			size_t max_changes, size_t *change_count_r, size_t *stranded_r)
{
	size_t n = 0;
	unsigned moves = 0;
	*stranded_r = 0;

	if (decision->fail_over) {
		/* lightest first: each round takes the lightest group after
		 * the one taken before (no allocation, allowance is small) */
		const struct site_group *prev = NULL;
		while (moves < allowance && n < max_changes) {
			size_t pick = SIZE_MAX;
			for (size_t i = 0; i < group_count; i++) {
				const struct site_group *g = &groups[i];
				if (g->home.failover_site != self)
					continue;
				if (prev != NULL && !lighter_after(g, prev))
					continue;
				if (pick != SIZE_MAX && !lighter_after(&groups[pick], g))
					continue;
				if (site_cell_verdict(&g->home, &g->cell, heartbeats) ==
				    SITE_VERDICT_STANDS)
					continue;
				if (too_early(decision, g, heartbeats, now_ms))
					continue;
				pick = i;
			}
			if (pick == SIZE_MAX)
				break;
			const struct site_group *g = &groups[pick];
			prev = g;
			int b = placement_choose_backend(backends, backend_count, g->group_id);
			if (b < 0) {
				/* no backend of S can take any: count what is left */
				for (size_t i = 0; i < group_count; i++) {
					const struct site_group *h = &groups[i];
					if (h->home.failover_site == self &&
					    (h == g || lighter_after(h, g)) &&
					    !too_early(decision, h, heartbeats, now_ms) &&
					    site_cell_verdict(&h->home, &h->cell, heartbeats) !=
						    SITE_VERDICT_STANDS)
						(*stranded_r)++;
				}
				break;
			}
			backends[b].assigned_groups++;
			changes_r[n++] = (struct site_cell_change){
				.group = pick,
				.group_id = g->group_id,
				.move = true,
				.cell = {.present = true,
					 .writer_site = self,
					 .target_site = self,
					 .target_backend = b,
					 .written_ms = now_ms,
					 .reason = decision->reason,
					 .home_epoch = g->home.epoch},
			};
			moves++;
		}
	}

	unsigned cleanups = 0;
	for (size_t i = 0; i < group_count && n < max_changes; i++) {
		const struct site_group *g = &groups[i];
		if (!g->cell.present || g->cell.writer_site != self)
			continue;
		enum site_verdict v = site_cell_verdict(&g->home, &g->cell, heartbeats);
		bool release = false, move = false;
		if (v == SITE_VERDICT_STANDS) {
			release = g->cell.reason == SITE_REASON_OUTAGE ? decision->release_outage
								       : decision->release_evacuate;
			move = true;
			if (release && moves >= allowance)
				release = false;
		} else if (!decision->fail_over && cleanups < SITE_CLEANUP_MAX) {
			release = true; /* void: the group is home already */
			cleanups++;
		}
		if (!release)
			continue;
		if (move)
			moves++;
		changes_r[n++] = (struct site_cell_change){
			.group = i,
			.group_id = g->group_id,
			.release = true,
			.move = move,
			.cell = g->cell,
		};
	}
	*change_count_r = n;
}

/* ---- force moves ---- */

bool site_force_move_picks(int64_t id, unsigned percent, const char *username,
			   size_t dest_count, size_t *dest_r)
{
	uint64_t h = hash_mix64(
		hash_fnv1a64_add(hash_fnv1a64(&id, sizeof(id)), username, strlen(username)));
	*dest_r = dest_count > 0 ? (size_t)((h >> 32) % dest_count) : 0;
	return dest_count > 0 && (h % 10000) < (uint64_t)percent * 100;
}
