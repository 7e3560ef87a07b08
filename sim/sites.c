/* sites.c - the "sites" scenario: whole sites failing and split brains
 * healing, driven by brain/site.h.
 *
 * The world: 2 or 3 sites (by the seed), each with 2-4 backends (load
 * factor 50 or 100), ~100 groups per backend homed on the sites by
 * placement, and users logging in through a site chosen per user (80%
 * their group's home site, the others another one).  Every site has its
 * controller (ticking every second while the site is up) and its own GeoDB
 * replica, and its own clock (off by up to SKEW_MS = 2 s: write times,
 * heartbeat buckets and every decision use it; the invariants use the
 * simulation's).  A write is made in the writer's replica at once and reaches
 * each other replica after 0..REPL_MS when the link between the two sites
 * is up and both are up; otherwise it waits (Cassandra's hints) and the
 * waiting writes of one link reach the other side in one batch, in write
 * order, 0..REPL_MS after the link and both sites are up again.  Each
 * replica keeps, cell by cell, the newest write (by write time, ties by
 * writer): last-write-wins.  Cells: every group's home cell and failover
 * cell, every site's heartbeat rows (one per 10 s bucket, written every
 * 5 s), every site's reachability record about every other, every site's
 * operator status.
 *
 * A controller, every tick: a heartbeat every 5 s (and at once when its site
 * comes back, before any waiting write reaches its replica);
 * site_reachability_update() for every other site from the newest heartbeat
 * in its replica (written when it changes); site_failover_sites() for its
 * own groups every 10 s (home cells, epoch + 1); site_failover_decide() and,
 * when there is anything to do, site_failover_plan() for every other site,
 * all paced by the site's one site_pace; every minute it moves one of its
 * groups that has no failover cell (and was not moved so before) to another
 * of its backends (home cell, epoch + 1), so that home cells change during
 * cuts too.  A daemon routes a login by site_effective_location() in its own
 * site's replica, except that until site_cell_settled() a new outage cell
 * is not used: routing goes by the version of the cell the replica routed
 * by before (the replica notes when it got each cell); a login for
 * another site is proxied there, and fails when that site is down or cut
 * from the entry site.  A batch of waiting writes is applied as one (the
 * daemons route by the merged replica, not by each replayed write:
 * --break site_merge_piecemeal shows why that matters).
 *
 * Faults, one at a time (then 2-12 min of quiet): a short cut (10-250 s) of
 * one link or of one site from all others, a long one (400-1500 s), one
 * healed in the middle of the failover it caused (reachability timeout +
 * site_failover_delay + 2..20 s), a short (30-250 s) or long (400-2400 s)
 * outage of a whole site (controller, daemons, backends and its replica),
 * the operator evacuating a site for 5-15 min, the operator setting a site
 * standby before a long outage (online again after it), with 3 sites every
 * site cut from every other (long, or healed mid-failover) and healed at
 * once, and with 2 sites an outage of one side during a long cut (back
 * after the heal).
 *
 * Invariants (G = heartbeat interval + REPL_MS + tick + 1 s = 9 s: a link
 * up for that long delivers a fresh heartbeat; a pair (S, B) is "bad" while
 * either site is down or their link is cut):
 *   site_failover_rate    the cells a site writes (OUTAGE or EVACUATE)
 *       number at most rate + 1 in any 1 s and rate * 10 + 1 in any 10 s
 *       (windows open at the start: the controller ticks every second and
 *       the pace refills one second's worth a tick); and every replica sees
 *       at most rate * (10 + REPL_MS / 1 s) + 1 groups placed on a site by
 *       site failover (not by a merge) within any 10 s (the replication
 *       delay spreads or bunches them);
 *   site_short_cut        an OUTAGE cell by S for B's group at t: (S, B) bad
 *       throughout [t - site_failover_delay, t] but for gaps shorter than G
 *       (a cut shorter than the delay moves nothing), and no third site C
 *       with both links to B and to S up for the last 2 min (C would have
 *       reported B reachable);
 *   site_stop_on_return   ... and (S, B) not good for G or more up to t (a
 *       failover stops once the heal is visible);
 *   site_failback_delay   S releases an OUTAGE cell for B at t only when
 *       every bad period of (S, B) longer than the reachability timeout + G
 *       ended by t - site_failback_delay + G;
 *   site_converged        every 30 s while every site and link has been up
 *       for 3 REPL_MS and nothing waits: every group's effective location is
 *       the same in every replica (groups written in the last REPL_MS, whose
 *       cell's heartbeat buckets may still be arriving, or whose cell some
 *       replica cannot judge yet, skipped), and
 *       no OUTAGE cell stands whose home site was really alive for the 7 s
 *       before it was written (its heartbeat rows exist);
 *   site_merge_once       in every replica, a group changes location at
 *       most once through the writes of one batch (one heal of one link,
 *       counting a cell of the batch that the replica routes by only once
 *       it settles), and never goes back, by a later batch within 10 min
 *       and with no other change in between, to where a batch had taken it
 *       from;
 *   site_operator_status  no OUTAGE cell for a site whose status in the
 *       writer's replica is standby or evacuate;
 *   site_evacuate_drains  at the end of an evacuation during which every
 *       site and link was up, each failover site has taken all of the
 *       evacuated site's groups it is the failover site of, if the
 *       evacuation lasted that many groups / rate + 2 ticks + 2 REPL_MS + the
 *       10 s of the failover-site spread.
 */
#include "sim.h"

#include "brain/placement.h"
#include "brain/site.h"
#include "brain/user.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS 3   /* sites at most */
#define BMAX 4 /* backends per site at most */
#define TICK_MS 1000
#define HB_EVERY 5 /* ticks */
#define REPL_MS 2000
#define SPREAD_EVERY 10
#define REBALANCE_EVERY 60
#define OSC_WINDOW_MS (10 * 60000)
#define CHECK_EVERY_MS 30000
#define WITNESS_MS 120000
#define GAP_MS (HB_EVERY * TICK_MS + REPL_MS + TICK_MS + 1000)
#define RING 512
#define RUN_MS (3 * 3600000LL)
#define SKEW_MS 2000 /* sites' clocks off by up to this much */

enum wkind { W_HOME, W_CELL, W_HB, W_REACH, W_STATUS };

struct swrite {
	int64_t t;      /* on the writer's clock */
	int64_t true_t; /* the simulation's */
	int32_t index;  /* group; site (heartbeat, status); site * NS + target (reach) */
	int8_t kind, origin;
	int32_t status;
	struct site_home_cell home;
	struct site_failover_cell cell;
	struct site_reachability reach;
};

struct replica {
	uint32_t *home, *cell; /* per group: write id, 0 none */
	bool *hb;              /* [site * nbuckets + bucket] */
	int64_t hb_newest[NS];
	uint32_t reach[NS][NS];
	uint32_t status[NS];
	struct site_location *loc;
	uint8_t *verdict;
	int8_t *cwriter, *creason; /* the present cell's, -1 none */
	unsigned present;
	unsigned stand[NS][NS][2]; /* writer, home, reason */
	unsigned voids[NS][NS];    /* writer, home */
	uint32_t *merge_heal;
	int64_t *merge_t;
	int32_t *merge_from;
	bool *changed_since;
	int64_t arrivals[NS][RING]; /* placements by site failover seen, per site */
	unsigned arrival_pos[NS];
	int64_t *cell_seen;   /* when the cell's current write reached the replica */
	uint32_t *cell_heal;  /* ... by the batch of this heal (0: live) */
	uint32_t *route_cell; /* the cell's write routing goes by (0: none) */
	bool *pending;        /* route_cell is not the newest: site_cell_settled() */
	bool *dirty;          /* to recompute at the end of the batch being applied */
	unsigned *dirty_list;
	size_t dirty_n;
};

struct ctl {
	struct site_reachability own[NS];
	struct site_pace pace;
	unsigned ticks;
	bool active[NS]; /* failing site b over (outage) */
};

struct period {
	int64_t start, end;
};

struct periods {
	struct period *p;
	size_t n, cap;
	int64_t open; /* INT64_MIN: none */
};

enum {
	E_TICK,
	E_DELIVER,
	E_BATCH,
	E_FAULT,
	E_FAULT_END,
	E_STATUS,
	E_LOGIN,
	E_CHECK,
	E_END,
	E_SETTLE /* a: replica, b: group, x: cell write */
};
enum {
	F_CUT_SHORT,
	F_CUT_LONG,
	F_CUT_MID,
	F_OUTAGE_SHORT,
	F_OUTAGE_LONG,
	F_EVACUATE,
	F_STANDBY_OUTAGE,
	F_CUT_OUTAGE,
	F_SPLIT_ALL
};

struct ev {
	int64_t t;
	uint64_t seq;
	int32_t type, a, b, x;
};

struct ssim {
	struct sim_options opt;
	struct sim_result *res;
	struct rng rng;
	struct site_settings set;
	unsigned ns, g, users, nb[NS], lf[NS][BMAX];
	char names[NS][8], bnames[NS][BMAX][12];
	const char *tags[NS];
	int64_t now, nbuckets;
	uint64_t step, seq;
	bool stop;
	struct ev *heap;
	size_t hn, hcap;
	struct swrite *w;
	size_t wn, wcap;
	uint32_t *pend[NS][NS];
	size_t pn[NS][NS], pcap[NS][NS];
	bool batch_out[NS][NS];
	bool alive[NS], cut[NS][NS];
	struct periods bad[NS][NS]; /* per pair, [min][max] */
	struct periods down[NS];
	int64_t world_change;
	uint32_t heal_seq;
	unsigned *heal_moves; /* per heal id: groups it moved, in any replica */
	size_t heal_moves_cap;
	struct replica rep[NS];
	struct ctl ctl[NS];
	int64_t skew[NS]; /* each site's clock minus the simulation's */
	unsigned *home_site, *weight;
	bool *rebalanced;
	int64_t *last_write;
	unsigned *user_group;
	uint8_t *user_entry;
	int16_t *user_last;
	int64_t ring[NS][RING];
	int64_t back[NS][RING]; /* releases to each home site */
	unsigned back_pos[NS];
	unsigned ring_pos[NS];
	unsigned fault_a, fault_b;
	int fault_kind;
	int64_t evac_since;
	struct site_group *sg;
	size_t *sg_index;
	struct site_cell_change *ch;
	struct site_failover_site_change *fsc;
};

/* ---- plumbing ---- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (p == NULL) {
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static void grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap * 2 : 64;
	while (c < need)
		c *= 2;
	*p = realloc(*p, c * size);
	if (*p == NULL) {
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	*cap = c;
}

static bool ev_before(const struct ev *x, const struct ev *y)
{
	return x->t != y->t ? x->t < y->t : x->seq < y->seq;
}

static void push(struct ssim *s, int64_t t, int type, int a, int b, int x)
{
	grow((void **)&s->heap, &s->hcap, s->hn + 1, sizeof(*s->heap));
	struct ev e = {t, s->seq++, type, a, b, x};
	size_t i = s->hn++;
	while (i > 0 && ev_before(&e, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = e;
}

static struct ev pop(struct ssim *s)
{
	struct ev top = s->heap[0], last = s->heap[--s->hn];
	size_t i = 0, n = s->hn;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && ev_before(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_before(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (n > 0)
		s->heap[i] = last;
	return top;
}

static void violation(struct ssim *s, enum sim_invariant inv, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void violation(struct ssim *s, enum sim_invariant inv, const char *fmt, ...)
{
	if (s->stop)
		return;
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->res->violations[inv]++;
	s->res->failed = true;
	s->stop = true;
	printf("seed %llu (scenario sites) step %llu t=%.3fs invariant %s violated: %s\n",
	       (unsigned long long)s->opt.seed, (unsigned long long)s->step, s->now / 1000.0,
	       sim_invariant_names[inv], msg);
	fflush(stdout);
}

static void logf_(struct ssim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct ssim *s, const char *fmt, ...)
{
	if (!s->opt.verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	printf("t=%.3f ", s->now / 1000.0);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static bool brk(const struct ssim *s, unsigned flag)
{
	return (s->opt.breaks & flag) != 0;
}

/* ---- ground truth: bad periods of each pair ---- */

static struct periods *pair(struct ssim *s, unsigned a, unsigned b)
{
	return a < b ? &s->bad[a][b] : &s->bad[b][a];
}

static void period_set(struct periods *p, bool on, int64_t now)
{
	if (on && p->open == INT64_MIN) {
		p->open = now;
	} else if (!on && p->open != INT64_MIN) {
		grow((void **)&p->p, &p->cap, p->n + 1, sizeof(*p->p));
		p->p[p->n++] = (struct period){p->open, now};
		p->open = INT64_MIN;
	}
}

static bool usable(const struct ssim *s, unsigned o, unsigned d)
{
	return s->alive[o] && s->alive[d] && !s->cut[o][d];
}

/* Longest stretch of [from, to] not covered by p's periods; *ends_at_to_r
 * whether that stretch is the one ending at to. */
static int64_t longest_good(const struct periods *p, int64_t from, int64_t to, bool *ends_at_to_r)
{
	int64_t cursor = from, best = 0;
	*ends_at_to_r = false;
	for (size_t i = 0; i <= p->n; i++) {
		struct period q;
		if (i < p->n)
			q = p->p[i];
		else if (p->open != INT64_MIN)
			q = (struct period){p->open, INT64_MAX};
		else
			break;
		if (q.end < cursor)
			continue;
		if (q.start > to)
			break;
		if (q.start > cursor && q.start - cursor > best)
			best = q.start - cursor;
		if (q.end > cursor)
			cursor = q.end;
	}
	if (cursor < to && to - cursor >= best) {
		best = to - cursor;
		*ends_at_to_r = true;
	}
	return best;
}

/* whether p had no period overlapping [from, to] */
static bool good_throughout(const struct periods *p, int64_t from, int64_t to)
{
	if (p->open != INT64_MIN && p->open <= to)
		return false;
	for (size_t i = p->n; i-- > 0;) {
		if (p->p[i].end < from)
			break;
		if (p->p[i].start <= to)
			return false;
	}
	return true;
}

/* ---- the replicas ---- */

struct hbctx {
	const struct ssim *s;
	const struct replica *r;
};

static bool hb_exists(const void *context, int site, int64_t bucket)
{
	const struct hbctx *c = context;
	if (bucket < 0 || bucket >= c->s->nbuckets || site < 0 || (unsigned)site >= c->s->ns)
		return false;
	return c->r->hb[(size_t)site * c->s->nbuckets + bucket];
}

static bool hb_never(const void *context, int site, int64_t bucket)
{
	(void)context;
	(void)site;
	(void)bucket;
	return false;
}

/* replica r's heartbeat rows for the brain (none at all with
 * --break site_never_void) */
static struct site_heartbeats hbset(const struct ssim *s, unsigned r, struct hbctx *ctx)
{
	ctx->s = s;
	ctx->r = &s->rep[r];
	struct site_heartbeats h = {hb_exists, ctx};
	if (brk(s, SIM_BREAK_SITE_NEVER_VOID))
		h.exists = hb_never;
	return h;
}

static bool newer(const struct ssim *s, uint32_t a, uint32_t b)
{
	if (b == 0)
		return true;
	const struct swrite *x = &s->w[a], *y = &s->w[b];
	if (x->t != y->t)
		return x->t > y->t;
	if (x->origin != y->origin)
		return x->origin > y->origin;
	return a > b;
}

static int encode(int site, int backend)
{
	return site * 64 + backend;
}

static void record_move(struct ssim *s, unsigned r, unsigned g, int from, int to, uint32_t heal)
{
	struct replica *rp = &s->rep[r];
	if (heal == 0) {
		rp->changed_since[g] = true;
		return;
	}
	s->res->site_merge_moves++;
	s->res->checks[INV_SITE_MERGE_ONCE]++;
	if (heal >= s->heal_moves_cap) {
		size_t cap = s->heal_moves_cap;
		grow((void **)&s->heal_moves, &cap, heal + 1, sizeof(*s->heal_moves));
		memset(s->heal_moves + s->heal_moves_cap, 0,
		       (cap - s->heal_moves_cap) * sizeof(*s->heal_moves));
		s->heal_moves_cap = cap;
	}
	s->heal_moves[heal]++;
	if (rp->merge_heal[g] == heal)
		violation(s, INV_SITE_MERGE_ONCE,
			  "replica %s: group %u moved twice by the batch of heal #%u (%d -> %d)",
			  s->names[r], g, heal, from, to);
	else if (rp->merge_heal[g] != 0 && !rp->changed_since[g] &&
		 s->now - rp->merge_t[g] < OSC_WINDOW_MS && to == rp->merge_from[g])
		violation(s, INV_SITE_MERGE_ONCE,
			  "replica %s: group %u moved back to %d by heal #%u, %.1f s after heal "
			  "#%u moved it away",
			  s->names[r], g, to, heal, (s->now - rp->merge_t[g]) / 1000.0,
			  rp->merge_heal[g]);
	rp->merge_heal[g] = heal;
	rp->merge_t[g] = s->now;
	rp->merge_from[g] = from;
	rp->changed_since[g] = false;
}

/* Groups a replica sees placed on a site by site failover (not by a
 * merge): within any 10 s at most what the writer may place in 10 s plus
 * what it may place within the replication delay. */
static void check_arrivals(struct ssim *s, unsigned r, unsigned site)
{
	struct replica *rp = &s->rep[r];
	unsigned rate = s->set.failover_rate;
	unsigned bound = rate * 10 + rate * REPL_MS / 1000 + 1;
	s->res->checks[INV_SITE_FAILOVER_RATE]++;
	rp->arrivals[site][rp->arrival_pos[site]++ % RING] = s->now;
	unsigned in10 = 0;
	for (unsigned i = 0; i < RING && i < rp->arrival_pos[site]; i++) {
		if (rp->arrivals[site][(rp->arrival_pos[site] - 1 - i) % RING] <= s->now - 10000)
			break;
		in10++;
	}
	if (in10 > s->res->site_max_arrivals_10s)
		s->res->site_max_arrivals_10s = in10;
	if (in10 > bound)
		violation(s, INV_SITE_FAILOVER_RATE,
			  "replica %s saw %u groups placed on %s by site failover within 10 s "
			  "(site_failover_rate %u/s: at most %u)",
			  s->names[r], in10, s->names[site], rate, bound);
}

static void recompute(struct ssim *s, unsigned r, unsigned g, uint32_t heal)
{
	struct replica *rp = &s->rep[r];
	struct hbctx ctx;
	struct site_heartbeats hb = hbset(s, r, &ctx);
	const struct site_home_cell *home = &s->w[rp->home[g]].home;
	struct site_failover_cell none = {0};
	const struct site_failover_cell *cell = rp->cell[g] ? &s->w[rp->cell[g]].cell : &none;
	/* take the old cell's count out */
	if (rp->cwriter[g] >= 0) {
		if (rp->verdict[g] == SITE_VERDICT_STANDS)
			rp->stand[rp->cwriter[g]][s->home_site[g]][rp->creason[g]]--;
		else
			rp->voids[rp->cwriter[g]][s->home_site[g]]--;
		rp->present--;
	}
	struct site_location loc;
	site_effective_location(home, cell, &hb, &loc);
	rp->verdict[g] = (uint8_t)loc.verdict;
	rp->cwriter[g] = cell->present ? (int8_t)cell->writer_site : -1;
	rp->creason[g] = (int8_t)cell->reason;
	if (cell->present) {
		if (loc.verdict == SITE_VERDICT_STANDS)
			rp->stand[cell->writer_site][s->home_site[g]][cell->reason]++;
		else
			rp->voids[cell->writer_site][s->home_site[g]]++;
		rp->present++;
	}
	/* routing: by the cell once it has settled (site_cell_settled); until
	 * then by the version of the cell the replica routed by before */
	if (brk(s, SIM_BREAK_SITE_NO_SETTLE) ||
	    site_cell_settled(cell, rp->cell_seen[g], s->set.reachability_timeout_ms, s->now))
		rp->route_cell[g] = rp->cell[g];
	rp->pending[g] = rp->route_cell[g] != rp->cell[g];
	struct site_location route;
	const struct site_failover_cell *rcell =
		rp->route_cell[g] ? &s->w[rp->route_cell[g]].cell : &none;
	site_effective_location(home, rcell, &hb, &route);
	int from = encode(rp->loc[g].site, rp->loc[g].backend);
	int to = encode(route.site, route.backend);
	bool arrival =
		heal == 0 && route.verdict == SITE_VERDICT_STANDS && route.site != rp->loc[g].site;
	rp->loc[g] = route;
	if (from != to)
		record_move(s, r, g, from, to, heal);
	if (arrival)
		check_arrivals(s, r, (unsigned)route.site);
}

/* In a batch (heal != 0) the groups are recomputed once at its end. */
static void touch(struct ssim *s, unsigned r, unsigned g, uint32_t heal)
{
	struct replica *rp = &s->rep[r];
	if (heal == 0 || brk(s, SIM_BREAK_SITE_MERGE_PIECEMEAL)) {
		recompute(s, r, g, heal);
	} else if (!rp->dirty[g]) {
		rp->dirty[g] = true;
		rp->dirty_list[rp->dirty_n++] = g;
	}
}

static void apply(struct ssim *s, unsigned r, uint32_t id, uint32_t heal)
{
	struct replica *rp = &s->rep[r];
	const struct swrite *w = &s->w[id];
	switch ((enum wkind)w->kind) {
	case W_HOME:
		if (newer(s, id, rp->home[w->index])) {
			rp->home[w->index] = id;
			touch(s, r, (unsigned)w->index, heal);
		}
		break;
	case W_CELL:
		if (newer(s, id, rp->cell[w->index])) {
			rp->cell[w->index] = id;
			rp->cell_seen[w->index] = s->now;
			rp->cell_heal[w->index] = heal;
			if (w->cell.present && w->cell.reason == SITE_REASON_OUTAGE)
				push(s, s->now + s->set.reachability_timeout_ms, E_SETTLE, (int)r,
				     w->index, (int)id);
			touch(s, r, (unsigned)w->index, heal);
		}
		break;
	case W_HB: {
		int64_t b = site_heartbeat_bucket(w->t);
		if (w->t > rp->hb_newest[w->index])
			rp->hb_newest[w->index] = w->t;
		if (b < 0 || b >= s->nbuckets)
			break;
		bool *bit = &rp->hb[(size_t)w->index * s->nbuckets + b];
		if (*bit)
			break;
		*bit = true;
		if (rp->present == 0)
			break;
		for (unsigned g = 0; g < s->g; g++) {
			if (rp->cwriter[g] < 0 || s->home_site[g] != (unsigned)w->index)
				continue;
			/* rows of its bucket or the next may void it */
			int64_t cb = site_heartbeat_bucket(s->w[rp->cell[g]].cell.written_ms);
			if (cb == b || cb == b + 1)
				touch(s, r, g, heal);
		}
		break;
	}
	case W_REACH: {
		uint32_t *slot = &rp->reach[w->index / NS][w->index % NS];
		if (newer(s, id, *slot))
			*slot = id;
		break;
	}
	case W_STATUS:
		if (newer(s, id, rp->status[w->index]))
			rp->status[w->index] = id;
		break;
	}
}

/* A site's clock: off by its skew (-SKEW_MS..SKEW_MS, by the seed). */
static int64_t clock_of(const struct ssim *s, unsigned site)
{
	return s->now + s->skew[site];
}

static uint32_t write_new(struct ssim *s, unsigned origin, enum wkind kind, int index)
{
	grow((void **)&s->w, &s->wcap, s->wn + 1, sizeof(*s->w));
	uint32_t id = (uint32_t)s->wn++;
	memset(&s->w[id], 0, sizeof(s->w[id]));
	s->w[id].t = clock_of(s, origin);
	s->w[id].true_t = s->now;
	s->w[id].kind = (int8_t)kind;
	s->w[id].origin = (int8_t)origin;
	s->w[id].index = index;
	return id;
}

static void pend(struct ssim *s, unsigned o, unsigned d, uint32_t id)
{
	grow((void **)&s->pend[o][d], &s->pcap[o][d], s->pn[o][d] + 1, sizeof(uint32_t));
	s->pend[o][d][s->pn[o][d]++] = id;
}

static void write_send(struct ssim *s, uint32_t id)
{
	unsigned o = (unsigned)s->w[id].origin;
	if (s->w[id].kind == W_HOME || s->w[id].kind == W_CELL)
		s->last_write[s->w[id].index] = s->now;
	apply(s, o, id, 0);
	for (unsigned d = 0; d < s->ns; d++) {
		if (d == o)
			continue;
		if (usable(s, o, d) && s->pn[o][d] == 0)
			push(s, s->now + rng_range(&s->rng, 1, REPL_MS), E_DELIVER, (int)id, (int)d,
			     0);
		else
			pend(s, o, d, id);
	}
}

static void deliver(struct ssim *s, uint32_t id, unsigned d)
{
	unsigned o = (unsigned)s->w[id].origin;
	if (!usable(s, o, d) || s->pn[o][d] > 0) {
		pend(s, o, d, id); /* cut meanwhile: a hint, in order */
		return;
	}
	apply(s, d, id, 0);
}

static void batch(struct ssim *s, unsigned o, unsigned d, uint32_t heal)
{
	s->batch_out[o][d] = false;
	if (!usable(s, o, d))
		return;
	size_t n = s->pn[o][d];
	s->pn[o][d] = 0;
	struct replica *rp = &s->rep[d];
	for (size_t i = 0; i < n; i++)
		apply(s, d, s->pend[o][d][i], heal);
	/* the merge as a whole: each group recomputed once (the daemons read
	 * the replica, not the replay's intermediate states) */
	for (size_t i = 0; i < rp->dirty_n; i++) {
		rp->dirty[rp->dirty_list[i]] = false;
		recompute(s, d, rp->dirty_list[i], heal);
	}
	rp->dirty_n = 0;
	logf_(s, "heal #%u: %zu writes %s -> %s", heal, n, s->names[o], s->names[d]);
}

/* After any change of the world: the bad periods, and the waiting writes
 * of links that work again. */
static void world_changed(struct ssim *s)
{
	s->world_change = s->now;
	for (unsigned a = 0; a < s->ns; a++) {
		period_set(&s->down[a], !s->alive[a], s->now);
		for (unsigned b = a + 1; b < s->ns; b++)
			period_set(&s->bad[a][b], !usable(s, a, b), s->now);
	}
	for (unsigned o = 0; o < s->ns; o++) {
		for (unsigned d = 0; d < s->ns; d++) {
			if (o == d || !usable(s, o, d) || s->pn[o][d] == 0 || s->batch_out[o][d])
				continue;
			s->batch_out[o][d] = true;
			push(s, s->now + rng_range(&s->rng, 1, REPL_MS), E_BATCH, (int)o, (int)d,
			     (int)++s->heal_seq);
		}
	}
}

/* ---- the controller ---- */

static void write_heartbeat(struct ssim *s, unsigned site)
{
	write_send(s, write_new(s, site, W_HB, (int)site));
}

static enum site_status replica_status(const struct ssim *s, unsigned r, unsigned site)
{
	uint32_t id = s->rep[r].status[site];
	return id ? (enum site_status)s->w[id].status : SITE_STATUS_ONLINE;
}

/* groups of home site b as site r's replica has them, into s->sg */
static size_t collect(struct ssim *s, unsigned r, unsigned b)
{
	const struct replica *rp = &s->rep[r];
	size_t n = 0;
	for (unsigned g = 0; g < s->g; g++) {
		if (s->home_site[g] != b)
			continue;
		struct site_group *x = &s->sg[n];
		x->group_id = g;
		x->weight = s->weight[g];
		x->home = s->w[rp->home[g]].home;
		if (rp->cell[g])
			x->cell = s->w[rp->cell[g]].cell;
		else
			memset(&x->cell, 0, sizeof(x->cell));
		s->sg_index[n++] = g;
	}
	return n;
}

static void check_outage_cell(struct ssim *s, unsigned site, unsigned b, unsigned g)
{
	s->res->checks[INV_SITE_OPERATOR_STATUS]++;
	s->res->checks[INV_SITE_SHORT_CUT]++;
	s->res->checks[INV_SITE_STOP_ON_RETURN]++;
	enum site_status st = replica_status(s, site, b);
	if (st == SITE_STATUS_STANDBY || st == SITE_STATUS_EVACUATE)
		violation(s, INV_SITE_OPERATOR_STATUS,
			  "%s wrote an outage cell for group %u of %s, whose status it sees %s",
			  s->names[site], g, s->names[b], site_status_name(st));
	bool at_end;
	int64_t good =
		longest_good(pair(s, site, b), s->now - s->set.failover_delay_ms, s->now, &at_end);
	if (good >= GAP_MS)
		violation(s, at_end ? INV_SITE_STOP_ON_RETURN : INV_SITE_SHORT_CUT,
			  "%s wrote an outage cell for group %u of %s although they could talk "
			  "for %.1f s %s",
			  s->names[site], g, s->names[b], good / 1000.0,
			  at_end ? "up to now (the failover must stop)"
				 : "within site_failover_delay");
	for (unsigned c = 0; c < s->ns; c++) {
		if (c == site || c == b)
			continue;
		if (good_throughout(pair(s, c, b), s->now - WITNESS_MS, s->now) &&
		    good_throughout(pair(s, c, site), s->now - WITNESS_MS, s->now))
			violation(s, INV_SITE_SHORT_CUT,
				  "%s wrote an outage cell for group %u of %s although %s reached "
				  "both for the last %d s",
				  s->names[site], g, s->names[b], s->names[c], WITNESS_MS / 1000);
	}
}

static void check_release(struct ssim *s, unsigned site, unsigned b, unsigned g)
{
	const struct periods *p = pair(s, site, b);
	int64_t need = s->set.reachability_timeout_ms + GAP_MS;
	int64_t limit = s->now - SITE_FAILBACK_DELAY_MS_DEFAULT + GAP_MS;
	s->res->checks[INV_SITE_FAILBACK_DELAY]++;
	/* a cut or outage that began less than the reachability timeout ago
	 * cannot be seen yet */
	if (p->open != INT64_MIN && s->now - p->open >= need) {
		violation(s, INV_SITE_FAILBACK_DELAY,
			  "%s released group %u to %s, with which it could not talk for %.1f s",
			  s->names[site], g, s->names[b], (s->now - p->open) / 1000.0);
		return;
	}
	for (size_t i = p->n; i-- > 0;) {
		if (p->p[i].end - p->p[i].start >= need) {
			if (p->p[i].end > limit)
				violation(s, INV_SITE_FAILBACK_DELAY,
					  "%s released group %u to %s %.1f s after a %.1f s outage "
					  "or cut ended (site_failback_delay %d s)",
					  s->names[site], g, s->names[b],
					  (s->now - p->p[i].end) / 1000.0,
					  (p->p[i].end - p->p[i].start) / 1000.0,
					  (int)(SITE_FAILBACK_DELAY_MS_DEFAULT / 1000));
			break;
		}
	}
}

static void check_rate(struct ssim *s, unsigned site)
{
	unsigned rate = s->set.failover_rate;
	s->res->checks[INV_SITE_FAILOVER_RATE]++;
	s->ring[site][s->ring_pos[site]++ % RING] = s->now;
	unsigned in1 = 0, in10 = 0;
	for (unsigned i = 0; i < RING && i < s->ring_pos[site]; i++) {
		int64_t t = s->ring[site][(s->ring_pos[site] - 1 - i) % RING];
		if (t > s->now - 10000)
			in10++;
		else
			break;
		if (t > s->now - 1000)
			in1++;
	}
	if (in1 > s->res->site_max_per_s)
		s->res->site_max_per_s = in1;
	if (in10 > s->res->site_max_per_10s)
		s->res->site_max_per_10s = in10;
	if (in1 > rate + 1 || in10 > rate * 10 + 1)
		violation(s, INV_SITE_FAILOVER_RATE,
			  "%s placed %u groups in 1 s and %u in 10 s (site_failover_rate %u)",
			  s->names[site], in1, in10, rate);
}

/* Groups released back to site b by all its failover sites together,
 * within 10 s (each paces itself alone: up to (sites - 1) * rate). */
static void count_failback(struct ssim *s, unsigned b)
{
	s->back[b][s->back_pos[b]++ % RING] = s->now;
	unsigned in10 = 0;
	for (unsigned i = 0; i < RING && i < s->back_pos[b]; i++) {
		if (s->back[b][(s->back_pos[b] - 1 - i) % RING] <= s->now - 10000)
			break;
		in10++;
	}
	if (in10 > s->res->site_max_failback_10s)
		s->res->site_max_failback_10s = in10;
}

static unsigned unfailed(struct ssim *s, unsigned site, unsigned b)
{
	const struct replica *rp = &s->rep[site];
	unsigned n = 0;
	for (unsigned g = 0; g < s->g; g++)
		if (s->home_site[g] == b && s->w[rp->home[g]].home.failover_site == (int)site &&
		    rp->verdict[g] != SITE_VERDICT_STANDS)
			n++;
	return n;
}

static void fail_over_site(struct ssim *s, unsigned site, unsigned b, unsigned *allowance)
{
	struct ctl *c = &s->ctl[site];
	struct replica *rp = &s->rep[site];
	struct site_reachability reports[NS];
	for (unsigned x = 0; x < s->ns; x++) {
		uint32_t id = rp->reach[x][b];
		if (id && !brk(s, SIM_BREAK_SITE_IGNORE_REPORTS))
			reports[x] = s->w[id].reach;
		else
			memset(&reports[x], 0, sizeof(reports[x]));
	}
	struct site_failover_view v = {
		.self = (int)site,
		.home = (int)b,
		.home_status = brk(s, SIM_BREAK_SITE_IGNORE_STATUS) ? SITE_STATUS_ONLINE
								    : replica_status(s, site, b),
		.site_count = s->ns,
		.own = c->own,
		.reports = reports,
		.has_outage_cells = rp->stand[site][b][SITE_REASON_OUTAGE] > 0,
		.has_evacuate_cells = rp->stand[site][b][SITE_REASON_EVACUATE] > 0,
	};
	struct site_decision d;
	site_failover_decide(&s->set, &v, clock_of(s, site), &d);
	bool outage = d.fail_over && d.reason == SITE_REASON_OUTAGE;
	if (brk(s, SIM_BREAK_SITE_NO_STOP) && c->active[b] && !d.fail_over) {
		d.fail_over = outage = true;
		d.reason = SITE_REASON_OUTAGE;
	}
	if (outage && !c->active[b]) {
		c->active[b] = true;
		s->res->site_failovers_started++;
		logf_(s, "%s fails %s over: %s", s->names[site], s->names[b], d.reason_text);
	} else if (!outage && c->active[b]) {
		c->active[b] = false;
		unsigned left = unfailed(s, site, b);
		if (left > 0)
			s->res->site_failovers_stopped++;
		logf_(s, "%s stops failing %s over (%u groups left): %s", s->names[site],
		      s->names[b], left, d.reason_text);
	}
	if (!d.fail_over && !d.release_outage && !d.release_evacuate && rp->voids[site][b] == 0)
		return;
	size_t n = collect(s, site, b);
	struct placement_candidate pc[BMAX];
	for (unsigned k = 0; k < s->nb[site]; k++)
		pc[k] = (struct placement_candidate){
			s->bnames[site][k], BACKEND_STATUS_ONLINE, s->lf[site][k], 0, false, 0};
	for (unsigned g = 0; g < s->g; g++)
		if (rp->loc[g].site == (int)site)
			pc[rp->loc[g].backend].assigned_groups++;
	struct hbctx ctx;
	struct site_heartbeats hb = hbset(s, site, &ctx);
	size_t count, stranded;
	site_failover_plan(&d, (int)site, s->sg, n, &hb, pc, s->nb[site], *allowance,
			   clock_of(s, site), s->ch, n, &count, &stranded);
	for (size_t i = 0; i < count && !s->stop; i++) {
		const struct site_cell_change *x = &s->ch[i];
		unsigned g = (unsigned)s->sg_index[x->group];
		uint32_t id = write_new(s, site, W_CELL, (int)g);
		if (x->move)
			(*allowance)--;
		if (x->release) {
			s->w[id].cell.present = false;
			s->w[id].cell.written_ms = clock_of(s, site);
			if (x->move && x->cell.reason == SITE_REASON_OUTAGE)
				check_release(s, site, b, g);
			if (x->move) {
				s->res->site_released++;
				count_failback(s, b);
			} else
				s->res->site_void_cleaned++;
		} else {
			s->w[id].cell = x->cell;
			if (x->cell.reason == SITE_REASON_OUTAGE) {
				check_outage_cell(s, site, b, g);
				s->res->site_groups_failed_over++;
			} else {
				s->res->site_groups_evacuated++;
			}
			check_rate(s, site);
		}
		unsigned before = rp->stand[site][b][SITE_REASON_OUTAGE];
		write_send(s, id);
		if (x->release && x->move && before > 0 &&
		    rp->stand[site][b][SITE_REASON_OUTAGE] == 0) {
			/* failback done: since the pair could talk again */
			const struct periods *p = pair(s, site, b);
			if (p->n > 0) {
				int64_t ms = s->now - p->p[p->n - 1].end;
				s->res->site_failbacks++;
				s->res->site_failback_ms_sum += ms;
				if (ms > s->res->site_failback_ms_max)
					s->res->site_failback_ms_max = ms;
			}
		}
	}
}

static void spread(struct ssim *s, unsigned site)
{
	struct replica *rp = &s->rep[site];
	struct site_candidate sc[NS];
	unsigned load[NS] = {0};
	for (unsigned g = 0; g < s->g; g++)
		load[rp->loc[g].site]++;
	for (unsigned x = 0; x < s->ns; x++) {
		unsigned cap = 0;
		for (unsigned k = 0; k < s->nb[x]; k++)
			cap += s->lf[x][k];
		sc[x] = (struct site_candidate){s->names[x], s->tags[x], replica_status(s, site, x),
						cap, load[x]};
	}
	size_t n = collect(s, site, site), count;
	struct hbctx ctx;
	struct site_heartbeats hb = hbset(s, site, &ctx);
	site_failover_sites(sc, s->ns, (int)site, s->sg, n, &hb, 100, s->fsc, &count);
	for (size_t i = 0; i < count; i++) {
		unsigned g = (unsigned)s->sg_index[s->fsc[i].group];
		uint32_t id = write_new(s, site, W_HOME, (int)g);
		s->w[id].home = s->w[rp->home[g]].home;
		s->w[id].home.failover_site = s->fsc[i].site;
		s->w[id].home.epoch++;
		write_send(s, id);
	}
}

static void rebalance(struct ssim *s, unsigned site)
{
	struct replica *rp = &s->rep[site];
	unsigned g = (unsigned)rng_range(&s->rng, 0, s->g - 1);
	/* once per group: a group moved back and forth by the home site would
	 * look like an oscillation of the merge (site_merge_once) */
	if (s->home_site[g] != site || rp->cwriter[g] >= 0 || s->nb[site] < 2 || s->rebalanced[g])
		return;
	s->rebalanced[g] = true;
	const struct site_home_cell *h = &s->w[rp->home[g]].home;
	int to = (int)rng_range(&s->rng, 0, s->nb[site] - 2);
	if (to >= h->backend)
		to++;
	uint32_t id = write_new(s, site, W_HOME, (int)g);
	s->w[id].home = *h;
	s->w[id].home.backend = to;
	s->w[id].home.epoch++;
	write_send(s, id);
	s->res->site_home_moves++;
}

static void tick(struct ssim *s, unsigned site)
{
	if (!s->alive[site])
		return;
	push(s, s->now + TICK_MS, E_TICK, (int)site, 0, 0);
	struct ctl *c = &s->ctl[site];
	if (c->ticks++ % HB_EVERY == 0)
		write_heartbeat(s, site);
	for (unsigned x = 0; x < s->ns; x++) {
		int64_t newest = x == site ? clock_of(s, site) : s->rep[site].hb_newest[x];
		if (site_reachability_update(&s->set, &c->own[x], newest, clock_of(s, site))) {
			uint32_t id = write_new(s, site, W_REACH, (int)(site * NS + x));
			s->w[id].reach = c->own[x];
			write_send(s, id);
		}
	}
	if (c->ticks % SPREAD_EVERY == 0)
		spread(s, site);
	unsigned allowance =
		brk(s, SIM_BREAK_SITE_NO_RATE)
			? s->g
			: site_pace_allowance(&c->pace, s->set.failover_rate, clock_of(s, site));
	unsigned before = allowance;
	for (unsigned b = 0; b < s->ns && !s->stop; b++)
		if (b != site)
			fail_over_site(s, site, b, &allowance);
	site_pace_spend(&c->pace, before - allowance);
	if (c->ticks % REBALANCE_EVERY == 0)
		rebalance(s, site);
}

/* ---- the world ---- */

static void site_down(struct ssim *s, unsigned site)
{
	if (!s->alive[site])
		return;
	s->alive[site] = false;
	world_changed(s);
	logf_(s, "site %s down", s->names[site]);
}

static void site_up(struct ssim *s, unsigned site)
{
	if (s->alive[site])
		return;
	s->alive[site] = true;
	struct ctl *c = &s->ctl[site];
	memset(c, 0, sizeof(*c));
	site_pace_init(&c->pace, clock_of(s, site));
	/* the controller's first act: a heartbeat (before any waiting write
	 * reaches its replica) */
	write_heartbeat(s, site);
	c->ticks = 1;
	push(s, s->now + TICK_MS, E_TICK, (int)site, 0, 0);
	world_changed(s);
	logf_(s, "site %s up", s->names[site]);
}

static void set_cut(struct ssim *s, unsigned a, unsigned b, bool on)
{
	if (b >= s->ns || b >= NS || a >= NS) { /* isolate a */
		for (unsigned x = 0; x < s->ns; x++)
			if (x != a)
				s->cut[a][x] = s->cut[x][a] = on;
	} else {
		s->cut[a][b] = s->cut[b][a] = on;
	}
	world_changed(s);
}

static void operator_status(struct ssim *s, unsigned site, enum site_status st)
{
	unsigned via = site;
	for (unsigned x = 0; !s->alive[via] && x < s->ns; x++)
		via = x;
	uint32_t id = write_new(s, via, W_STATUS, (int)site);
	s->w[id].status = (int32_t)st;
	write_send(s, id);
	logf_(s, "operator: site %s status %s", s->names[site], site_status_name(st));
}

/* At the end of an evacuation that every site and link survived: each
 * failover site has taken all of its share of the site's groups, if the
 * evacuation lasted long enough for that at the rate. */
static void check_evacuated(struct ssim *s, unsigned b)
{
	int64_t since = s->evac_since;
	for (unsigned x = 0; x < s->ns; x++)
		for (unsigned y = x + 1; y < s->ns; y++)
			if (!good_throughout(&s->bad[x][y], since, s->now))
				return;
	for (unsigned site = 0; site < s->ns; site++) {
		if (site == b)
			continue;
		const struct replica *rp = &s->rep[site];
		unsigned share = 0, left = 0;
		for (unsigned g = 0; g < s->g; g++) {
			if (s->home_site[g] != b ||
			    s->w[rp->home[g]].home.failover_site != (int)site)
				continue;
			share++;
			left += rp->verdict[g] != SITE_VERDICT_STANDS;
		}
		int64_t need = (int64_t)share * 1000 / s->set.failover_rate + 2 * REPL_MS +
			       2 * TICK_MS + SPREAD_EVERY * TICK_MS;
		s->res->checks[INV_SITE_EVACUATE]++;
		if (s->now - since < need)
			continue;
		if (left > 0)
			violation(s, INV_SITE_EVACUATE,
				  "%s evacuated for %.0f s, but %s still has %u of its %u groups "
				  "to take at home (site_failover_rate %u/s)",
				  s->names[b], (s->now - since) / 1000.0, s->names[site], left,
				  share, s->set.failover_rate);
		else
			s->res->site_evacuations_done++;
	}
}

static void fault(struct ssim *s)
{
	unsigned a = (unsigned)rng_range(&s->rng, 0, s->ns - 1);
	unsigned b = (unsigned)rng_range(&s->rng, 0, s->ns - 2);
	if (b >= a)
		b++;
	/* with 3 sites, half the cuts isolate one site from both others */
	unsigned cut_b = s->ns == 3 && rng_range(&s->rng, 0, 1) ? NS : b;
	int r = (int)rng_range(&s->rng, 0, 99);
	int64_t len;
	int kind;
	int64_t detect = s->set.reachability_timeout_ms + s->set.failover_delay_ms;
	if (r < 22) {
		kind = F_CUT_SHORT;
		len = rng_range(&s->rng, 10000, 250000);
	} else if (r < 40) {
		kind = F_CUT_LONG;
		len = rng_range(&s->rng, 400000, 1500000);
	} else if (r < 55) {
		kind = F_CUT_MID;
		len = detect + rng_range(&s->rng, 2000, 20000);
	} else if (r < 65) {
		kind = F_OUTAGE_SHORT;
		len = rng_range(&s->rng, 30000, 250000);
	} else if (r < 83) {
		kind = F_OUTAGE_LONG;
		len = rng_range(&s->rng, 400000, 2400000);
	} else if (r < 90) {
		kind = F_EVACUATE;
		len = rng_range(&s->rng, 300000, 900000);
	} else if (r < 95) {
		kind = F_STANDBY_OUTAGE;
		len = rng_range(&s->rng, 400000, 1200000);
	} else if (s->ns == 3) {
		kind = F_SPLIT_ALL;
		len = rng_range(&s->rng, 0, 1) ? rng_range(&s->rng, 400000, 1500000)
					       : detect + rng_range(&s->rng, 2000, 20000);
	} else {
		kind = F_CUT_OUTAGE;
		len = rng_range(&s->rng, 600000, 1500000);
	}
	s->fault_kind = kind;
	s->fault_a = a;
	s->fault_b = cut_b;
	switch (kind) {
	case F_CUT_SHORT:
	case F_CUT_LONG:
	case F_CUT_MID:
	case F_CUT_OUTAGE:
	case F_SPLIT_ALL:
		s->res->site_cuts++;
		if (kind == F_CUT_SHORT)
			s->res->site_cuts_short++;
		else if (kind == F_CUT_MID || (kind == F_SPLIT_ALL && len < 400000))
			s->res->site_cuts_mid++;
		else
			s->res->site_cuts_long++;
		if (kind == F_CUT_OUTAGE)
			s->fault_b = b;
		if (kind == F_SPLIT_ALL) {
			s->res->site_splits_all++;
			for (unsigned x = 0; x < s->ns; x++)
				set_cut(s, x, NS, true);
		} else {
			set_cut(s, a, s->fault_b, true);
		}
		if (kind == F_SPLIT_ALL)
			logf_(s, "cut every site from every other for %.0f s", len / 1000.0);
		else
			logf_(s, "cut %s - %s for %.0f s", s->names[a],
			      s->fault_b < s->ns ? s->names[s->fault_b] : "all", len / 1000.0);
		if (kind == F_CUT_OUTAGE) {
			/* one side dies during the cut, comes back after it healed */
			push(s, s->now + rng_range(&s->rng, 60000, len - 60000), E_STATUS, (int)b,
			     -1, 0);
			s->res->site_outages++;
		}
		break;
	case F_OUTAGE_SHORT:
	case F_OUTAGE_LONG:
		s->res->site_outages++;
		site_down(s, a);
		break;
	case F_EVACUATE:
		s->res->site_evacuations++;
		s->evac_since = s->now;
		operator_status(s, a, SITE_STATUS_EVACUATE);
		break;
	case F_STANDBY_OUTAGE:
		s->res->site_outages++;
		s->res->site_standby_outages++;
		operator_status(s, a, SITE_STATUS_STANDBY);
		push(s, s->now + rng_range(&s->rng, 1000, 60000), E_STATUS, (int)a, -1, 0);
		break;
	}
	push(s, s->now + len, E_FAULT_END, 0, 0, 0);
}

static void fault_end(struct ssim *s)
{
	unsigned a = s->fault_a;
	switch (s->fault_kind) {
	case F_SPLIT_ALL:
		for (unsigned x = 0; x < s->ns; x++)
			set_cut(s, x, NS, false);
		s->res->site_heals++;
		logf_(s, "heal all");
		break;
	case F_CUT_SHORT:
	case F_CUT_LONG:
	case F_CUT_MID:
		set_cut(s, a, s->fault_b, false);
		s->res->site_heals++;
		logf_(s, "heal %s", s->names[a]);
		break;
	case F_CUT_OUTAGE:
		set_cut(s, a, s->fault_b, false);
		s->res->site_heals++;
		/* the dead side comes back later */
		push(s, s->now + rng_range(&s->rng, 60000, 900000), E_STATUS, (int)s->fault_b, -2,
		     0);
		break;
	case F_OUTAGE_SHORT:
	case F_OUTAGE_LONG:
		site_up(s, a);
		break;
	case F_EVACUATE:
		check_evacuated(s, a);
		operator_status(s, a, SITE_STATUS_ONLINE);
		break;
	case F_STANDBY_OUTAGE:
		if (!s->alive[a])
			site_up(s, a);
		push(s, s->now + rng_range(&s->rng, 10000, 60000), E_STATUS, (int)a,
		     SITE_STATUS_ONLINE, 0);
		break;
	}
	push(s, s->now + rng_range(&s->rng, 120000, 720000), E_FAULT, 0, 0, 0);
}

static void status_event(struct ssim *s, const struct ev *e)
{
	if (e->b == -1) {
		if (s->alive[e->a])
			site_down(s, (unsigned)e->a);
	} else if (e->b == -2) {
		if (!s->alive[e->a])
			site_up(s, (unsigned)e->a);
	} else {
		operator_status(s, (unsigned)e->a, (enum site_status)e->b);
	}
}

static void login(struct ssim *s)
{
	push(s, s->now + rng_range(&s->rng, 1, 600), E_LOGIN, 0, 0, 0);
	unsigned u = (unsigned)rng_range(&s->rng, 0, s->users - 1);
	unsigned e = s->user_entry[u];
	for (unsigned x = 0; !s->alive[e] && x < s->ns; x++)
		e = x; /* the client's next address */
	if (!s->alive[e])
		return;
	const struct site_location *loc = &s->rep[e].loc[s->user_group[u]];
	s->res->site_logins++;
	if (!s->alive[loc->site] ||
	    ((unsigned)loc->site != e && !usable(s, e, (unsigned)loc->site))) {
		s->res->site_logins_failed++;
		return;
	}
	int where = encode(loc->site, loc->backend);
	if (s->user_last[u] >= 0 && s->user_last[u] != where)
		s->res->site_logins_moved++;
	s->user_last[u] = (int16_t)where;
	if ((unsigned)loc->site != e)
		s->res->site_logins_proxied++;
}

static void check_converged(struct ssim *s)
{
	push(s, s->now + CHECK_EVERY_MS, E_CHECK, 0, 0, 0);
	if (s->now - s->world_change < 3 * REPL_MS)
		return;
	for (unsigned o = 0; o < s->ns; o++)
		for (unsigned d = 0; d < s->ns; d++)
			if (!usable(s, o, d) && o != d)
				return;
			else if (s->pn[o][d] > 0 || s->batch_out[o][d])
				return;
	s->res->site_converged_checks++;
	const struct replica *r0 = &s->rep[0];
	for (unsigned g = 0; g < s->g && !s->stop; g++) {
		if (s->last_write[g] > s->now - REPL_MS - 1)
			continue;
		bool pending = false;
		for (unsigned r = 0; r < s->ns; r++)
			pending |= s->rep[r].pending[g];
		if (pending)
			continue;
		if (r0->cell[g]) {
			const struct site_failover_cell *c = &s->w[r0->cell[g]].cell;
			int64_t written = s->w[r0->cell[g]].true_t;
			/* the heartbeat rows of its bucket and the next are all in */
			int64_t settled =
				written + 2 * SITE_HEARTBEAT_BUCKET_MS + REPL_MS + 2 * SKEW_MS;
			if (c->present && settled >= s->now)
				continue;
			unsigned b = s->home_site[g];
			if (c->present && r0->verdict[g] == SITE_VERDICT_STANDS &&
			    c->reason == SITE_REASON_OUTAGE &&
			    good_throughout(&s->down[b], written - 7000, written))
				violation(
					s, INV_SITE_CONVERGED,
					"group %u: the outage cell of %s, written at %.3f s while "
					"its home site %s was alive, stands after the merge",
					g, s->names[c->writer_site], written / 1000.0, s->names[b]);
		}
		s->res->checks[INV_SITE_CONVERGED]++;
		for (unsigned r = 1; r < s->ns; r++) {
			const struct site_location *a = &r0->loc[g], *b = &s->rep[r].loc[g];
			if (a->site != b->site || a->backend != b->backend)
				violation(
					s, INV_SITE_CONVERGED,
					"group %u: replica %s routes it to %s/%d (%s), replica %s "
					"to %s/%d (%s)",
					g, s->names[0], s->names[a->site], a->backend,
					site_verdict_name(a->verdict), s->names[r],
					s->names[b->site], b->backend,
					site_verdict_name(b->verdict));
		}
	}
}

/* ---- setup ---- */

static void setup(struct ssim *s)
{
	site_settings_init(&s->set);
	if (brk(s, SIM_BREAK_SITE_NO_FAILBACK_DELAY))
		s->set.failback_delay_ms = 0;
	s->rng.state = s->opt.seed ^ 0x7369746573ULL;
	s->ns = (unsigned)rng_range(&s->rng, 2, 3);
	s->nbuckets = RUN_MS / SITE_HEARTBEAT_BUCKET_MS + 2;
	static const char *const tag_sets[3] = {"eu", "eu", "us"};
	unsigned total = 0;
	struct placement_candidate pc[NS * BMAX];
	unsigned pc_site[NS * BMAX], pc_local[NS * BMAX];
	for (unsigned x = 0; x < s->ns; x++) {
		snprintf(s->names[x], sizeof(s->names[x]), "dc%u", x);
		s->tags[x] = tag_sets[x];
		s->nb[x] = (unsigned)rng_range(&s->rng, 2, BMAX);
		for (unsigned k = 0; k < s->nb[x]; k++) {
			s->lf[x][k] = rng_range(&s->rng, 0, 1) ? 100 : 50;
			snprintf(s->bnames[x][k], sizeof(s->bnames[x][k]), "dc%ub%u", x, k);
			pc[total] = (struct placement_candidate){
				s->bnames[x][k], BACKEND_STATUS_ONLINE, s->lf[x][k], 0, false, 0};
			pc_site[total] = x;
			pc_local[total] = k;
			total++;
		}
		s->alive[x] = true;
		s->skew[x] = rng_range(&s->rng, -SKEW_MS, SKEW_MS);
		s->down[x].open = INT64_MIN;
		for (unsigned y = 0; y < NS; y++)
			s->bad[x][y].open = INT64_MIN;
	}
	s->g = 100 * total;
	s->users = s->opt.users / 5 ? s->opt.users / 5 : 1;
	s->home_site = xcalloc(s->g, sizeof(*s->home_site));
	s->weight = xcalloc(s->g, sizeof(*s->weight));
	s->rebalanced = xcalloc(s->g, sizeof(*s->rebalanced));
	s->last_write = xcalloc(s->g, sizeof(*s->last_write));
	s->sg = xcalloc(s->g, sizeof(*s->sg));
	s->sg_index = xcalloc(s->g, sizeof(*s->sg_index));
	s->ch = xcalloc(s->g, sizeof(*s->ch));
	s->fsc = xcalloc(s->g, sizeof(*s->fsc));
	for (unsigned x = 0; x < s->ns; x++) {
		struct replica *r = &s->rep[x];
		r->home = xcalloc(s->g, sizeof(*r->home));
		r->cell = xcalloc(s->g, sizeof(*r->cell));
		r->hb = xcalloc((size_t)s->ns * s->nbuckets, sizeof(*r->hb));
		r->loc = xcalloc(s->g, sizeof(*r->loc));
		r->verdict = xcalloc(s->g, sizeof(*r->verdict));
		r->cwriter = xcalloc(s->g, sizeof(*r->cwriter));
		r->creason = xcalloc(s->g, sizeof(*r->creason));
		r->merge_heal = xcalloc(s->g, sizeof(*r->merge_heal));
		r->merge_t = xcalloc(s->g, sizeof(*r->merge_t));
		r->merge_from = xcalloc(s->g, sizeof(*r->merge_from));
		r->changed_since = xcalloc(s->g, sizeof(*r->changed_since));
		r->dirty = xcalloc(s->g, sizeof(*r->dirty));
		r->cell_seen = xcalloc(s->g, sizeof(*r->cell_seen));
		r->cell_heal = xcalloc(s->g, sizeof(*r->cell_heal));
		r->pending = xcalloc(s->g, sizeof(*r->pending));
		r->route_cell = xcalloc(s->g, sizeof(*r->route_cell));
		r->dirty_list = xcalloc(s->g, sizeof(*r->dirty_list));
		memset(r->cwriter, -1, s->g);
	}
	/* write id 0 is "none" */
	write_new(s, 0, W_STATUS, 0);
	s->now = -REPL_MS - 1;
	for (unsigned g = 0; g < s->g; g++) {
		int b = placement_choose_backend(pc, total, g);
		pc[b].assigned_groups++;
		s->home_site[g] = pc_site[b];
		uint32_t id = write_new(s, pc_site[b], W_HOME, (int)g);
		s->w[id].home = (struct site_home_cell){.site = (int)pc_site[b],
							.backend = (int)pc_local[b],
							.failover_site = -1,
							.epoch = 1};
		for (unsigned x = 0; x < s->ns; x++) {
			s->rep[x].home[g] = id;
			s->rep[x].loc[g] = (struct site_location){(int)pc_site[b], (int)pc_local[b],
								  SITE_VERDICT_HOME};
		}
	}
	for (unsigned x = 0; x < s->ns; x++)
		for (unsigned y = 0; y < s->ns; y++)
			s->rep[x].hb_newest[y] = 0;
	s->now = 0;
	s->user_group = xcalloc(s->users, sizeof(*s->user_group));
	s->user_entry = xcalloc(s->users, sizeof(*s->user_entry));
	s->user_last = xcalloc(s->users, sizeof(*s->user_last));
	for (unsigned u = 0; u < s->users; u++) {
		char name[48];
		snprintf(name, sizeof(name), "user%u@example.org", u);
		s->user_group[u] = user_hash_group(name, s->g);
		s->weight[s->user_group[u]]++;
		unsigned home = s->home_site[s->user_group[u]];
		s->user_entry[u] = (uint8_t)(rng_range(&s->rng, 0, 4)
						     ? home
						     : (unsigned)rng_range(&s->rng, 0, s->ns - 1));
		s->user_last[u] = -1;
	}
	for (unsigned x = 0; x < s->ns; x++) {
		site_pace_init(&s->ctl[x].pace, clock_of(s, x));
		push(s, rng_range(&s->rng, 0, TICK_MS - 1), E_TICK, (int)x, 0, 0);
	}
	push(s, 0, E_LOGIN, 0, 0, 0);
	push(s, CHECK_EVERY_MS, E_CHECK, 0, 0, 0);
	push(s, rng_range(&s->rng, 300000, 600000), E_FAULT, 0, 0, 0);
	push(s, RUN_MS, E_END, 0, 0, 0);
}

static void teardown(struct ssim *s)
{
	for (unsigned x = 0; x < s->ns; x++) {
		struct replica *r = &s->rep[x];
		free(r->home);
		free(r->cell);
		free(r->hb);
		free(r->loc);
		free(r->verdict);
		free(r->cwriter);
		free(r->creason);
		free(r->merge_heal);
		free(r->merge_t);
		free(r->merge_from);
		free(r->changed_since);
		free(r->dirty);
		free(r->cell_seen);
		free(r->cell_heal);
		free(r->pending);
		free(r->route_cell);
		free(r->dirty_list);
		free(s->down[x].p);
		for (unsigned y = 0; y < NS; y++) {
			free(s->bad[x][y].p);
			free(s->pend[x][y]);
		}
	}
	free(s->home_site);
	free(s->weight);
	free(s->rebalanced);
	free(s->last_write);
	free(s->sg);
	free(s->sg_index);
	free(s->ch);
	free(s->fsc);
	free(s->user_group);
	free(s->user_entry);
	free(s->user_last);
	free(s->w);
	free(s->heap);
	free(s->heal_moves);
}

void sim_sites_run(const struct sim_options *options, struct sim_result *result_r)
{
	static struct ssim zero;
	struct ssim *s = malloc(sizeof(*s));
	if (s == NULL)
		exit(2);
	*s = zero;
	s->opt = *options;
	s->res = result_r;
	memset(result_r, 0, sizeof(*result_r));
	setup(s);
	result_r->site_runs = 1;
	if (s->opt.verbose)
		printf("seed %llu scenario=sites sites=%u groups=%u users=%u\n",
		       (unsigned long long)s->opt.seed, s->ns, s->g, s->users);
	while (s->hn > 0 && !s->stop) {
		struct ev e = pop(s);
		s->now = e.t;
		s->step++;
		switch (e.type) {
		case E_TICK:
			tick(s, (unsigned)e.a);
			break;
		case E_DELIVER:
			deliver(s, (uint32_t)e.a, (unsigned)e.b);
			break;
		case E_BATCH:
			batch(s, (unsigned)e.a, (unsigned)e.b, (uint32_t)e.x);
			break;
		case E_FAULT:
			fault(s);
			break;
		case E_FAULT_END:
			fault_end(s);
			break;
		case E_STATUS:
			status_event(s, &e);
			break;
		case E_LOGIN:
			login(s);
			break;
		case E_CHECK:
			check_converged(s);
			break;
		case E_SETTLE:
			if (s->rep[e.a].cell[e.b] == (uint32_t)e.x)
				recompute(s, (unsigned)e.a, (unsigned)e.b,
					  s->rep[e.a].cell_heal[e.b]);
			break;
		case E_END:
			s->hn = 0;
			break;
		}
	}
	result_r->steps = s->step;
	for (size_t h = 0; h < s->heal_moves_cap; h++) {
		if (s->heal_moves[h] == 0)
			continue;
		result_r->site_merge_heals++;
		if (s->heal_moves[h] > result_r->site_merge_max_heal)
			result_r->site_merge_max_heal = s->heal_moves[h];
	}
	teardown(s);
	free(s);
}
