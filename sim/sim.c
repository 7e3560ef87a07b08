/* sim.c - one simulated site, driven by the real brain, with faults.
 *
 * The world:
 *   - B backends (ground truth: crashed or not, slow or not, cut from one
 *     daemon or not; an operator status and a load factor);
 *   - N daemons, each probing every backend every probe_interval (+- jitter),
 *     writing its observation (ok or failing, and since when its streak runs)
 *     to the GeoDB, a heartbeat every controller_tick, and trying to take
 *     the controller lease when it is free;
 *   - the lease holder, after settling for repl_max (so that it has seen its
 *     predecessor's writes), runs the controller: health_decide() for every
 *     backend, failover_plan(), failover_alternatives(), and writes the
 *     results - exactly the glue the daemon's controller does;
 *   - users logging in through random daemons, routed by failover_route()
 *     on that daemon's view of the GeoDB; each user keeps a session record
 *     (backend, daemon, since) for the moves protocol of later work;
 *   - faults drawn from the seed: long and short backend crashes, flapping,
 *     slow probes, one daemon cut off from one backend, the controller (or
 *     another daemon) crashing, the operator setting a backend offline or
 *     standby (often one that is failing right then).
 *
 * Timing (ms; see struct timing):
 *   P = probe_interval 2000, J = probe jitter 200 (each interval P +- J),
 *   T = probe timeout 800, C = controller tick 1000, R = replication delay
 *   bound 1500, L = lease ttl 10000, D = backend_failover_delay 30000,
 *   Drec = backend_recovery_delay 30000, stale = 3 P.
 *   A probe's outcome is the backend's state when it starts: a crashed
 *   backend refuses at once (1-5 ms), a cut link or a slow probe times out
 *   (T), a healthy backend answers in 1-30 ms.  An observation's since is the
 *   completion time of the first probe of its streak.
 *
 * The invariants, checked at every step that can break them:
 *
 *   no_early_failover  A backend is marked down, and a group moved off it,
 *       at time t only if it was in an outage (a crash; down periods with up
 *       gaps shorter than P + J merged, since no probe need land in such a
 *       gap) that began at or before t - D and had not ended before t - E,
 *       E = max(P + J + T + R, 3P + T) = 6800 ms: after an outage ends the
 *       controller may still see failing observations for that long (the ok
 *       probe comes within P + J + T and is visible within R more; or a
 *       witness that crashed keeps a failing observation fresh for 3 P).
 *       So an outage shorter than D - E = 23.2 s moves nobody; the short
 *       crashes injected last 0.5 .. 22.2 s, a flap's down periods 0.5 ..
 *       12 s (with up gaps 0.2 .. 10 s: merged, a flap may be a long outage
 *       and then legitimately moves groups).
 *   served_within_bound  When a backend X crashes at c0 and stays down, then
 *       from c0 + BOUND on no daemon routes any group to X: every group that
 *       was on X at c0 or is on X in that daemon's view has a route (unless
 *       the operator took its new backend away), the route is not X, and it
 *       was not moved to a backend every daemon had already seen failing
 *       (crashed at least P + J + T + R before the move: failover_plan must
 *       step around such a backend, health_decision.suspect).  The bound:
 *           BOUND = P + J + T + D + C + R = 35.5 s  (<= D + 2P + R, since
 *                   J + T + C <= P)
 *       because: every daemon's first probe starting after c0 starts by
 *       c0 + P + J and fails by + T (its failing_since); by c0 + P + J + T + D
 *       each has failed for D, and its latest observation, written at most
 *       P + J + T before and visible after at most R, is fresh (R + P + J + T
 *       <= 3P); the controller ticks within C, marks X down and writes the
 *       moves; every daemon sees them within R.  If the controller (lease
 *       holder) crashed at tc in [c0 - L - 2C - R, c0 + BOUND]:
 *           BOUND_takeover = BOUND + L + C + R = 48 s
 *       (its lease expires within L, another daemon takes it within C,
 *       settles R, acts within C).  Exempt (counted): X's operator status
 *       not online at some point from c0 - R on; the daemons alive throughout
 *       [c0 - 3P - R, deadline] are not a strict majority of those alive at
 *       any time in it (a restarted daemon starts a new streak, a crashed one
 *       is counted live for up to 3P); two controller crashes in the window.
 *       Also checked at every later login while X stays down.
 *   one_move_per_outage  Every move is attributed to the outage of its source
 *       backend that justifies it (no_early_failover); no group has two moves
 *       attributed to the same outage, and every move goes to a backend the
 *       controller sees online, marked up and with load factor > 0 (a move
 *       elsewhere would have to be followed by a second one).  Groups never
 *       move back: a move off a healthy backend fails no_early_failover.
 *   operator_status  The status cells are written by the operator only and
 *       always hold what the operator last wrote (checked every controller
 *       tick); the controller never changes the mark of a backend whose
 *       status it sees not online, and never picks a backend it sees not
 *       online as a move target or alternative.
 *   no_login_to_down  A login routed by daemon d to backend b at t: (a) the
 *       mark of b in the cells d read is not down and b's status there is
 *       online; (b) the controller's mark of b as of t - R (every write made
 *       by then has reached every daemon) is not down, unless d's view holds
 *       a newer write of that mark.
 *   no_early_recovery  A backend is marked up again at t only if no crash
 *       period overlapped [t - Drec, t - 3P] by P + J or more (every witness
 *       of the recovery probed it at least once in any such stretch).
 */
#include "sim.h"

#include "brain/failover.h"
#include "brain/health.h"
#include "brain/placement.h"
#include "brain/user.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sim_invariant_names[INV_COUNT] = {
	"no_early_failover", "served_within_bound", "one_move_per_outage",
	"operator_status",   "no_login_to_down",    "no_early_recovery",
};

struct timing {
	int64_t probe_interval, probe_jitter, probe_timeout, controller_tick, repl_max, lease_ttl,
		failover_delay, recovery_delay, early_slack, bound, bound_takeover;
};

enum event_type {
	EV_PROBE_START,
	EV_PROBE_DONE,
	EV_TICK,
	EV_LOGIN,
	EV_FAULT,
	EV_BACKEND_DOWN,
	EV_BACKEND_UP,
	EV_SLOW_END,
	EV_CUT_END,
	EV_DAEMON_RESTART,
	EV_OPERATOR,
	EV_DEADLINE,
	EV_END,
};

struct event {
	int64_t t;
	uint64_t seq;
	int32_t type, a, b, x;
	uint32_t c;
};

struct period {
	int64_t start, end; /* end INT64_MAX while ongoing */
};

struct outage {
	int64_t start, end; /* merged: up gaps shorter than P + J joined */
	uint32_t id;
};

struct backend {
	char name[16];
	unsigned load_factor;
	bool crashed;
	bool fault_busy; /* crash, flap, slow or cut in progress */
	bool bad;        /* crash or flap in progress: not usable */
	bool op_busy;    /* operator status not online */
	double slow_p;   /* probability a probe times out */
	enum backend_status op_status;
	int64_t op_status_t;    /* last operator write */
	uint32_t down_seq;      /* continuous down periods so far */
	uint32_t deadline_seq;  /* the down period whose deadline passed (checked) */
	struct period *periods; /* continuous crash periods */
	size_t period_count, period_cap;
	struct outage *outages;
	size_t outage_count, outage_cap;
};

struct daemon {
	bool alive;
	uint32_t inc; /* incarnation: events of an older one are dropped */
	int64_t restarted_at, crashed_at;
	int cut_backend; /* -1: none */
	bool *has_streak;
	bool *streak_ok;
	int64_t *streak_since;
};

struct session {
	int32_t backend; /* -1: none */
	int16_t daemon;
	int64_t since;
};

struct sim {
	struct sim_options opt;
	struct sim_result *res;
	struct rng rng;
	struct geo geo;
	struct timing tm;
	struct health_settings hs;
	unsigned n, b, g, users; /* daemons, backends, groups, users */
	int64_t now, end;
	uint64_t step, event_seq;
	bool stop;

	struct event *heap;
	size_t heap_count, heap_cap;

	struct backend *backends;
	struct daemon *daemons;
	struct geo_cell *status, *mark, *assign, *alt, *obs, *hb;
	uint32_t *group_last_move_outage; /* (backend << 20 | outage id) + 1, 0: none */
	int64_t *group_move_t;            /* time of the group's last move */
	unsigned *user_group;
	struct session *sessions;

	/* the lease: linearizable (a conditional write), so global */
	int lease_holder;
	uint32_t lease_inc;
	int64_t lease_expires, lease_acquired;
	int64_t controller_crashes[16];
	size_t controller_crash_count;

	bool cut_active;
	int daemon_down; /* -1: none */

	/* controller scratch */
	bool *live;
	struct health_observation *hobs;
	struct failover_backend *fb;
	struct failover_group *fg;
	struct failover_change *changes;
};

/* ---- events ---- */

static bool ev_before(const struct event *x, const struct event *y)
{
	return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static void ev_push(struct sim *s, int64_t t, int type, int a, int b, int x, uint32_t c)
{
	if (s->heap_count == s->heap_cap) {
		s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 1024;
		s->heap = realloc(s->heap, s->heap_cap * sizeof(*s->heap));
		if (s->heap == NULL)
			abort();
	}
	struct event e = {t, s->event_seq++, type, a, b, x, c};
	size_t i = s->heap_count++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!ev_before(&e, &s->heap[parent]))
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = e;
}

static struct event ev_pop(struct sim *s)
{
	struct event top = s->heap[0];
	struct event last = s->heap[--s->heap_count];
	size_t i = 0, n = s->heap_count;
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

/* ---- reporting ---- */

static void violation(struct sim *s, enum sim_invariant inv, const char *fmt, ...)
{
	char msg[512];
	va_list args;
	if (s->stop)
		return; /* the first violation of a seed is the one to read */
	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	s->res->violations[inv]++;
	s->res->failed = true;
	s->stop = true;
	printf("seed %llu step %llu t=%.3fs invariant %s violated: %s\n",
	       (unsigned long long)s->opt.seed, (unsigned long long)s->step, s->now / 1000.0,
	       sim_invariant_names[inv], msg);
	fflush(stdout);
}

static void logf_(struct sim *s, const char *fmt, ...)
{
	if (!s->opt.verbose)
		return;
	va_list args;
	va_start(args, fmt);
	printf("t=%.3f ", s->now / 1000.0);
	vprintf(fmt, args);
	printf("\n");
	va_end(args);
}

static void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size);
	if (p == NULL) {
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static int64_t exp_ms(struct sim *s, double mean_ms)
{
	double u = rng_double(&s->rng);
	return (int64_t)(-log(1.0 - u) * mean_ms);
}

/* ---- ground truth ---- */

static bool reachable(const struct sim *s, unsigned d, unsigned b)
{
	return !s->backends[b].crashed && s->daemons[d].cut_backend != (int)b;
}

static void backend_down(struct sim *s, unsigned b)
{
	struct backend *be = &s->backends[b];
	if (be->crashed)
		return;
	be->crashed = true;
	be->down_seq++;
	if (be->period_count == be->period_cap) {
		be->period_cap = be->period_cap ? be->period_cap * 2 : 8;
		be->periods = realloc(be->periods, be->period_cap * sizeof(*be->periods));
	}
	be->periods[be->period_count++] = (struct period){s->now, INT64_MAX};
	struct outage *last = be->outage_count ? &be->outages[be->outage_count - 1] : NULL;
	if (last != NULL && s->now - last->end < s->tm.probe_interval + s->tm.probe_jitter) {
		last->end = INT64_MAX; /* a gap no probe need have seen */
	} else {
		if (be->outage_count == be->outage_cap) {
			be->outage_cap = be->outage_cap ? be->outage_cap * 2 : 8;
			be->outages = realloc(be->outages, be->outage_cap * sizeof(*be->outages));
		}
		be->outages[be->outage_count] =
			(struct outage){s->now, INT64_MAX, (uint32_t)be->outage_count + 1};
		be->outage_count++;
	}
	ev_push(s, s->now + s->tm.bound, EV_DEADLINE, 0, (int)b, 0, be->down_seq);
	logf_(s, "fault backend=%s crashed", be->name);
}

static void backend_up(struct sim *s, unsigned b)
{
	struct backend *be = &s->backends[b];
	if (!be->crashed)
		return;
	be->crashed = false;
	be->periods[be->period_count - 1].end = s->now;
	struct outage *o = &be->outages[be->outage_count - 1];
	o->end = s->now;
	logf_(s, "fault backend=%s back after %.1f s (outage %.1f s)", be->name,
	      (s->now - be->periods[be->period_count - 1].start) / 1000.0,
	      (o->end - o->start) / 1000.0);
}

/* ---- invariant helpers ---- */

/* The outage that justifies marking b down (or moving a group off it) at
 * now; 0 if none does. */
static uint32_t justifying_outage(const struct sim *s, unsigned b)
{
	const struct backend *be = &s->backends[b];
	for (size_t i = be->outage_count; i-- > 0;) {
		const struct outage *o = &be->outages[i];
		if (o->start <= s->now - s->tm.failover_delay &&
		    (o->end == INT64_MAX || o->end >= s->now - s->tm.early_slack))
			return o->id;
		if (o->end != INT64_MAX && o->end < s->now - s->tm.failover_delay)
			break;
	}
	return 0;
}

static void check_early_failover(struct sim *s, unsigned b, const char *what)
{
	s->res->checks[INV_NO_EARLY_FAILOVER]++;
	if (justifying_outage(s, b) != 0)
		return;
	const struct backend *be = &s->backends[b];
	const struct outage *o = be->outage_count ? &be->outages[be->outage_count - 1] : NULL;
	if (o == NULL)
		violation(s, INV_NO_EARLY_FAILOVER, "%s backend %s, which never crashed", what,
			  be->name);
	else
		violation(s, INV_NO_EARLY_FAILOVER,
			  "%s backend %s: its last outage began %.3f s ago and %s (D=%.1f s, "
			  "E=%.1f s)",
			  what, be->name, (s->now - o->start) / 1000.0,
			  o->end == INT64_MAX ? "goes on" : "ended", s->tm.failover_delay / 1000.0,
			  s->tm.early_slack / 1000.0);
}

static void check_early_recovery(struct sim *s, unsigned b)
{
	const struct backend *be = &s->backends[b];
	int64_t lo = s->now - s->tm.recovery_delay, hi = s->now - 3 * s->tm.probe_interval;
	s->res->checks[INV_NO_EARLY_RECOVERY]++;
	for (size_t i = be->period_count; i-- > 0;) {
		const struct period *p = &be->periods[i];
		int64_t a = p->start > lo ? p->start : lo;
		int64_t z = p->end < hi ? p->end : hi;
		if (z - a >= s->tm.probe_interval + s->tm.probe_jitter) {
			violation(s, INV_NO_EARLY_RECOVERY,
				  "backend %s marked up although it was down from %.3f s to %s "
				  "within the recovery window",
				  be->name, p->start / 1000.0,
				  p->end == INT64_MAX ? "now" : "later");
			return;
		}
		if (p->end < lo)
			break;
	}
}

/* ---- daemons: probing ---- */

static void probe_start(struct sim *s, const struct event *e)
{
	unsigned d = (unsigned)e->a, b = (unsigned)e->b;
	struct daemon *dm = &s->daemons[d];
	if (!dm->alive || dm->inc != e->c)
		return;
	const struct backend *be = &s->backends[b];
	bool ok;
	int64_t duration;
	if (be->crashed) {
		ok = false;
		duration = rng_range(&s->rng, 1, 5);
	} else if (dm->cut_backend == (int)b) {
		ok = false;
		duration = s->tm.probe_timeout;
	} else if (be->slow_p > 0 && rng_double(&s->rng) < be->slow_p) {
		ok = false;
		duration = s->tm.probe_timeout;
	} else {
		ok = true;
		duration = rng_range(&s->rng, 1, 30);
	}
	ev_push(s, s->now + duration, EV_PROBE_DONE, (int)d, (int)b, ok, dm->inc);
	int64_t next =
		s->tm.probe_interval + rng_range(&s->rng, -s->tm.probe_jitter, s->tm.probe_jitter);
	ev_push(s, s->now + next, EV_PROBE_START, (int)d, (int)b, 0, dm->inc);
}

static void probe_done(struct sim *s, const struct event *e)
{
	unsigned d = (unsigned)e->a, b = (unsigned)e->b;
	struct daemon *dm = &s->daemons[d];
	if (!dm->alive || dm->inc != e->c)
		return;
	bool ok = e->x != 0;
	if (!dm->has_streak[b] || dm->streak_ok[b] != ok) {
		dm->has_streak[b] = true;
		dm->streak_ok[b] = ok;
		dm->streak_since[b] = s->now;
	}
	geo_put(&s->geo, &s->obs[d * s->b + b], (int)d, s->now, ok, dm->streak_since[b]);
}

/* ---- the controller: the same glue the daemon's controller runs ---- */

static void controller_act(struct sim *s, unsigned d)
{
	int64_t now = s->now;

	/* the operator's status cells hold what the operator wrote */
	for (unsigned b = 0; b < s->b; b++) {
		const struct geo_write *w = geo_head(&s->status[b]);
		s->res->checks[INV_OPERATOR_STATUS]++;
		if (w == NULL || w->writer != GEO_WRITER_OPERATOR ||
		    w->value != (int32_t)s->backends[b].op_status)
			violation(s, INV_OPERATOR_STATUS, "backend %s status cell changed",
				  s->backends[b].name);
	}

	unsigned live_count = 0;
	for (unsigned e = 0; e < s->n; e++) {
		const struct geo_write *w = geo_read(&s->geo, &s->hb[e], (int)d, now);
		s->live[e] = w != NULL && health_observer_is_live(&s->hs, w->t, now);
		live_count += s->live[e];
	}

	for (unsigned b = 0; b < s->b; b++) {
		struct backend *be = &s->backends[b];
		const struct geo_write *st = geo_read(&s->geo, &s->status[b], (int)d, now);
		const struct geo_write *mk = geo_read(&s->geo, &s->mark[b], (int)d, now);
		struct health_backend hb = {
			.name = be->name,
			.status = (enum backend_status)st->value,
			.mark = (enum health_mark)mk->value,
			.mark_since_ms = mk->aux,
		};
		size_t count = 0;
		for (unsigned e = 0; e < s->n; e++) {
			if (!s->live[e])
				continue;
			const struct geo_write *w =
				geo_read(&s->geo, &s->obs[e * s->b + b], (int)d, now);
			if (w == NULL)
				continue;
			s->hobs[count++] = (struct health_observation){
				.ok = w->value != 0,
				.since_ms = w->aux,
				.observed_at_ms = w->t,
			};
		}
		struct health_decision dec;
		health_decide(&s->hs, &hb, s->hobs, count, live_count, now, &dec);
		if (dec.changed) {
			s->res->checks[INV_OPERATOR_STATUS]++;
			if (hb.status != BACKEND_STATUS_ONLINE)
				violation(s, INV_OPERATOR_STATUS,
					  "controller changed the mark of backend %s, which it "
					  "sees %s",
					  be->name, backend_status_name(hb.status));
			if (dec.mark == HEALTH_MARK_DOWN) {
				check_early_failover(s, b, "marked down");
				s->res->marks_down++;
				if (be->crashed) {
					int64_t since = be->periods[be->period_count - 1].start;
					if (now - since > s->res->max_served_ms)
						s->res->max_served_ms = now - since;
				}
			} else {
				check_early_recovery(s, b);
				s->res->marks_up++;
			}
			geo_put(&s->geo, &s->mark[b], (int)d, now, dec.mark, now);
			logf_(s, "controller=d%u backend=%s mark=%s reason=\"%s\"", d, be->name,
			      health_mark_name(dec.mark), dec.reason);
		}
		s->fb[b] = (struct failover_backend){
			.name = be->name,
			.status = hb.status,
			.load_factor = be->load_factor,
			.mark = dec.mark,
			.suspect = dec.suspect,
		};
	}

	for (unsigned g = 0; g < s->g; g++) {
		const struct geo_write *a = geo_read(&s->geo, &s->assign[g], (int)d, now);
		const struct geo_write *al = geo_read(&s->geo, &s->alt[g], (int)d, now);
		s->fg[g] = (struct failover_group){g, a->value, al->value};
	}

	size_t move_count, stranded;
	if (failover_plan(s->fb, s->b, s->fg, s->g, s->changes, &move_count, &stranded) < 0) {
		fprintf(stderr, "sim: failover_plan failed\n");
		exit(2);
	}
	for (size_t i = 0; i < move_count; i++) {
		const struct failover_change *m = &s->changes[i];
		const struct geo_write *before = geo_head(&s->assign[m->group]);
		if (before->value == m->backend)
			continue;
		unsigned from = (unsigned)before->value;
		s->res->checks[INV_OPERATOR_STATUS]++;
		if (s->fb[m->backend].status != BACKEND_STATUS_ONLINE)
			violation(s, INV_OPERATOR_STATUS,
				  "group %zu moved to backend %s, which is %s", m->group,
				  s->backends[m->backend].name,
				  backend_status_name(s->fb[m->backend].status));
		s->res->checks[INV_ONE_MOVE_PER_OUTAGE]++;
		if (!failover_backend_can_take(&s->fb[m->backend]))
			violation(s, INV_ONE_MOVE_PER_OUTAGE,
				  "group %zu moved to backend %s, which cannot take it (mark %s, "
				  "load factor %u): it will have to move again",
				  m->group, s->backends[m->backend].name,
				  health_mark_name(s->fb[m->backend].mark),
				  s->fb[m->backend].load_factor);
		check_early_failover(s, from, "moved a group off");
		uint32_t oid = justifying_outage(s, from);
		uint32_t key = ((uint32_t)from << 20 | oid) + 1;
		s->res->checks[INV_ONE_MOVE_PER_OUTAGE]++;
		if (oid != 0 && s->group_last_move_outage[m->group] == key)
			violation(s, INV_ONE_MOVE_PER_OUTAGE,
				  "group %zu moved off backend %s twice in outage %u", m->group,
				  s->backends[from].name, oid);
		s->group_last_move_outage[m->group] = key;
		s->group_move_t[m->group] = now;
		geo_put(&s->geo, &s->assign[m->group], (int)d, now, m->backend, 0);
		s->fg[m->group].backend = m->backend;
		s->res->moves++;
		logf_(s, "controller=d%u group=%zu move from=%s to=%s", d, m->group,
		      s->backends[from].name, s->backends[m->backend].name);
	}
	if (stranded > 0)
		logf_(s, "controller=d%u stranded_groups=%zu", d, stranded);

	size_t alt_count;
	if (failover_alternatives(s->fb, s->b, s->fg, s->g, FAILOVER_ALTERNATIVE_CHANGES_DEFAULT,
				  s->changes, &alt_count) < 0) {
		fprintf(stderr, "sim: failover_alternatives failed\n");
		exit(2);
	}
	for (size_t i = 0; i < alt_count; i++) {
		const struct failover_change *c = &s->changes[i];
		s->res->checks[INV_OPERATOR_STATUS]++;
		if (s->fb[c->backend].status != BACKEND_STATUS_ONLINE ||
		    c->backend == s->fg[c->group].backend)
			violation(s, INV_OPERATOR_STATUS,
				  "group %zu got alternative %s, which is %s or its own backend",
				  c->group, s->backends[c->backend].name,
				  backend_status_name(s->fb[c->backend].status));
		geo_put(&s->geo, &s->alt[c->group], (int)d, now, c->backend, 0);
		s->res->alt_changes++;
	}
}

static void tick(struct sim *s, const struct event *e)
{
	unsigned d = (unsigned)e->a;
	struct daemon *dm = &s->daemons[d];
	if (!dm->alive || dm->inc != e->c)
		return;
	geo_put(&s->geo, &s->hb[d], (int)d, s->now, 1, 0);
	if (s->lease_holder == (int)d && s->lease_inc == dm->inc && s->lease_expires > s->now) {
		s->lease_expires = s->now + s->tm.lease_ttl;
	} else if (s->lease_expires <= s->now) {
		if (s->lease_holder >= 0)
			s->res->takeovers++;
		s->lease_holder = (int)d;
		s->lease_inc = dm->inc;
		s->lease_acquired = s->now;
		s->lease_expires = s->now + s->tm.lease_ttl;
		logf_(s, "lease holder=d%u", d);
	}
	if (s->lease_holder == (int)d && s->lease_inc == dm->inc &&
	    s->now >= s->lease_acquired + s->tm.repl_max)
		controller_act(s, d);
	ev_push(s, s->now + s->tm.controller_tick, EV_TICK, (int)d, 0, 0, dm->inc);
}

/* ---- users ---- */

/* How daemon d routes group g now, by its view: the group's cells and its
 * two backends' cells, through failover_route().  Returns 0 or 1 (the
 * backend is idx_r[that]) or -1; fb_r gets the two backends as seen. */
static int view_route(struct sim *s, unsigned d, unsigned g, struct failover_backend fb_r[2],
		      int idx_r[2])
{
	const struct geo_write *a = geo_read(&s->geo, &s->assign[g], (int)d, s->now);
	const struct geo_write *al = geo_read(&s->geo, &s->alt[g], (int)d, s->now);
	idx_r[0] = a->value;
	idx_r[1] = al->value;
	memset(fb_r, 0, 2 * sizeof(*fb_r));
	for (int i = 0; i < 2; i++) {
		if (idx_r[i] < 0)
			continue;
		const struct geo_write *st =
			geo_read(&s->geo, &s->status[idx_r[i]], (int)d, s->now);
		const struct geo_write *mk = geo_read(&s->geo, &s->mark[idx_r[i]], (int)d, s->now);
		fb_r[i] = (struct failover_backend){
			s->backends[idx_r[i]].name, (enum backend_status)st->value,
			s->backends[idx_r[i]].load_factor, (enum health_mark)mk->value, false};
	}
	struct failover_group fg = {g, idx_r[0] >= 0 ? 0 : -1,
				    idx_r[1] < 0 ? -1 : (idx_r[1] == idx_r[0] ? 0 : 1)};
	return failover_route(fb_r, 2, &fg);
}

static void login(struct sim *s)
{
	double rate_per_ms = (s->users / 600.0) / 1000.0; /* each user every 10 min */
	if (rate_per_ms < 0.001)
		rate_per_ms = 0.001;
	ev_push(s, s->now + exp_ms(s, 1.0 / rate_per_ms), EV_LOGIN, 0, 0, 0, 0);

	unsigned d = (unsigned)rng_range(&s->rng, 0, s->n - 1);
	if (!s->daemons[d].alive)
		d = (d + 1) % s->n; /* at most one daemon is down */
	unsigned u = (unsigned)rng_range(&s->rng, 0, s->users - 1);
	unsigned g = s->user_group[u];
	s->res->logins++;

	struct failover_backend fb[2];
	int idx[2];
	int r = view_route(s, d, g, fb, idx);
	if (r < 0) {
		s->res->logins_unavailable++;
		return;
	}
	unsigned b = (unsigned)idx[r];
	struct backend *be = &s->backends[b];

	s->res->checks[INV_NO_LOGIN_TO_DOWN]++;
	if (fb[r].mark == HEALTH_MARK_DOWN || fb[r].status != BACKEND_STATUS_ONLINE)
		violation(s, INV_NO_LOGIN_TO_DOWN,
			  "daemon d%u routed user %u (group %u) to backend %s, which it sees "
			  "marked %s, status %s",
			  d, u, g, be->name, health_mark_name(fb[r].mark),
			  backend_status_name(fb[r].status));
	const struct geo_write *auth = geo_at(&s->mark[b], s->now - s->tm.repl_max);
	const struct geo_write *seen = geo_read(&s->geo, &s->mark[b], (int)d, s->now);
	if (auth != NULL && auth->value == HEALTH_MARK_DOWN && seen->t <= auth->t)
		violation(s, INV_NO_LOGIN_TO_DOWN,
			  "daemon d%u routed user %u to backend %s, marked down at %.3f s, more "
			  "than the replication bound ago",
			  d, u, be->name, auth->t / 1000.0);
	if (be->crashed && be->deadline_seq == be->down_seq) {
		s->res->checks[INV_SERVED_WITHIN_BOUND]++;
		violation(s, INV_SERVED_WITHIN_BOUND,
			  "daemon d%u routed user %u (group %u) to backend %s, dead since %.3f s",
			  d, u, g, be->name, be->periods[be->period_count - 1].start / 1000.0);
	}

	if (!reachable(s, d, b)) {
		s->res->logins_failed++;
		return;
	}
	s->res->logins_ok++;
	s->sessions[u] = (struct session){(int32_t)b, (int16_t)d, s->now};
}

/* ---- the served-within-bound deadline ---- */

static void deadline(struct sim *s, const struct event *e)
{
	unsigned x = (unsigned)e->b;
	struct backend *be = &s->backends[x];
	if (!be->crashed || be->down_seq != e->c)
		return; /* it came back before the deadline */
	int64_t c0 = be->periods[be->period_count - 1].start;
	bool takeover = e->x != 0;

	/* a controller crash in the window needs the takeover bound */
	size_t crashes = 0;
	int64_t lo = c0 - s->tm.lease_ttl - 2 * s->tm.controller_tick - s->tm.repl_max;
	for (size_t i = 0; i < s->controller_crash_count; i++)
		crashes += s->controller_crashes[i] >= lo && s->controller_crashes[i] <= s->now;
	if (crashes >= 2) {
		s->res->exempt[INV_SERVED_WITHIN_BOUND]++;
		return;
	}
	if (crashes == 1 && !takeover) {
		ev_push(s, c0 + s->tm.bound_takeover, EV_DEADLINE, 0, (int)x, 1, e->c);
		return;
	}
	if (be->op_status != BACKEND_STATUS_ONLINE || be->op_status_t > c0 - s->tm.repl_max) {
		s->res->exempt[INV_SERVED_WITHIN_BOUND]++;
		return;
	}
	int64_t window = c0 - 3 * s->tm.probe_interval - s->tm.repl_max;
	unsigned cont = 0, other = 0;
	for (unsigned d = 0; d < s->n; d++) {
		const struct daemon *dm = &s->daemons[d];
		if (dm->alive && dm->restarted_at < window)
			cont++;
		else if (dm->alive || dm->crashed_at >= window)
			other++;
	}
	if (cont * 2 <= cont + other) {
		s->res->exempt[INV_SERVED_WITHIN_BOUND]++;
		return;
	}

	/* every group that was on X when it died: no daemon routes it to X,
	 * and each has a route unless the operator took its backend away */
	s->res->checks[INV_SERVED_WITHIN_BOUND]++;
	for (unsigned d = 0; d < s->n && !s->stop; d++) {
		if (!s->daemons[d].alive)
			continue;
		for (unsigned g = 0; g < s->g && !s->stop; g++) {
			const struct geo_write *then = geo_at(&s->assign[g], c0);
			const struct geo_write *a =
				geo_read(&s->geo, &s->assign[g], (int)d, s->now);
			if (a->value != (int32_t)x && (then == NULL || then->value != (int32_t)x))
				continue;
			struct failover_backend fb[2];
			int idx[2];
			int r = view_route(s, d, g, fb, idx);
			if (r >= 0 && idx[r] != (int)x) {
				/* served: unless it was moved to a backend that every
				 * daemon had seen failing by then (P + J + T + R after
				 * that backend's crash), which the plan must avoid */
				const struct backend *y = &s->backends[idx[r]];
				int64_t cy = y->crashed ? y->periods[y->period_count - 1].start : 0;
				int64_t margin = s->tm.probe_interval + s->tm.probe_jitter +
						 s->tm.probe_timeout + s->tm.repl_max;
				if (!y->crashed || s->group_move_t[g] < c0 ||
				    s->group_move_t[g] < cy + margin)
					continue;
				violation(s, INV_SERVED_WITHIN_BOUND,
					  "group %u of backend %s (dead since %.3f s) was moved at "
					  "%.3f s to backend %s, dead since %.3f s",
					  g, be->name, c0 / 1000.0, s->group_move_t[g] / 1000.0,
					  y->name, cy / 1000.0);
				continue;
			}
			if (r < 0 && a->value != (int32_t)x &&
			    fb[0].status != BACKEND_STATUS_ONLINE)
				continue; /* its new backend is offline by the operator */
			violation(s, INV_SERVED_WITHIN_BOUND,
				  "backend %s dead since %.3f s (%.1f s, bound %.1f s): daemon d%u "
				  "routes group %u %s%s (assigned %s, mark %s, alternative %d)",
				  be->name, c0 / 1000.0, (s->now - c0) / 1000.0,
				  (takeover ? s->tm.bound_takeover : s->tm.bound) / 1000.0, d, g,
				  r < 0 ? "nowhere" : "to ", r < 0 ? "" : be->name,
				  s->backends[a->value].name, health_mark_name(fb[0].mark), idx[1]);
		}
	}
	be->deadline_seq = be->down_seq;
}

/* ---- faults ---- */

static unsigned usable_backends(const struct sim *s)
{
	unsigned n = 0;
	for (unsigned b = 0; b < s->b; b++) {
		const struct backend *be = &s->backends[b];
		n += be->load_factor > 0 && !be->bad && !be->op_busy;
	}
	return n;
}

/* a backend free for a new fault that takes it away, or -1 */
static int pick_backend(struct sim *s, bool takes_away)
{
	if (takes_away && usable_backends(s) < 3)
		return -1;
	for (int tries = 0; tries < 8; tries++) {
		unsigned b = (unsigned)rng_range(&s->rng, 0, s->b - 1);
		const struct backend *be = &s->backends[b];
		if (!be->fault_busy && !be->op_busy)
			return (int)b;
	}
	return -1;
}

static void fault(struct sim *s)
{
	ev_push(s, s->now + rng_range(&s->rng, 20000, 100000), EV_FAULT, 0, 0, 0, 0);
	const struct timing *tm = &s->tm;
	int64_t short_max = tm->failover_delay - tm->early_slack - 1000;
	unsigned kind = (unsigned)rng_range(&s->rng, 0, 99);
	int b;
	s->res->faults++;

	if (kind < 20) { /* long crash */
		if ((b = pick_backend(s, true)) < 0)
			return;
		struct backend *be = &s->backends[b];
		be->fault_busy = be->bad = true;
		backend_down(s, (unsigned)b);
		s->res->outages_long++;
		ev_push(s, s->now + rng_range(&s->rng, 40000, 150000), EV_BACKEND_UP, 0, b, 1, 0);
	} else if (kind < 40) { /* short crash: shorter than D - E */
		if ((b = pick_backend(s, true)) < 0)
			return;
		struct backend *be = &s->backends[b];
		be->fault_busy = be->bad = true;
		backend_down(s, (unsigned)b);
		s->res->outages_short++;
		ev_push(s, s->now + rng_range(&s->rng, 500, short_max), EV_BACKEND_UP, 0, b, 1, 0);
	} else if (kind < 52) { /* flapping */
		if ((b = pick_backend(s, true)) < 0)
			return;
		struct backend *be = &s->backends[b];
		be->fault_busy = be->bad = true;
		int64_t t = s->now, until = s->now + rng_range(&s->rng, 40000, 180000);
		logf_(s, "fault backend=%s flapping until %.3f", be->name, until / 1000.0);
		while (t < until) {
			ev_push(s, t, EV_BACKEND_DOWN, 0, b, 0, 0);
			t += rng_range(&s->rng, 500, 12000);
			ev_push(s, t, EV_BACKEND_UP, 0, b, 0, 0);
			t += rng_range(&s->rng, 200, 10000);
		}
		ev_push(s, t, EV_BACKEND_UP, 0, b, 1, 0);
	} else if (kind < 62) { /* slow probes */
		if ((b = pick_backend(s, false)) < 0)
			return;
		struct backend *be = &s->backends[b];
		be->fault_busy = true;
		be->slow_p = 0.1 + 0.25 * rng_double(&s->rng);
		logf_(s, "fault backend=%s slow p=%.2f", be->name, be->slow_p);
		ev_push(s, s->now + rng_range(&s->rng, 30000, 300000), EV_SLOW_END, 0, b, 0, 0);
	} else if (kind < 72) { /* one daemon cut off from one backend */
		if (s->n < 3 || s->cut_active || (b = pick_backend(s, false)) < 0)
			return;
		unsigned d = (unsigned)rng_range(&s->rng, 0, s->n - 1);
		s->cut_active = true;
		s->backends[b].fault_busy = true;
		s->daemons[d].cut_backend = b;
		logf_(s, "fault daemon=d%u cut from backend=%s", d, s->backends[b].name);
		ev_push(s, s->now + rng_range(&s->rng, 10000, 200000), EV_CUT_END, (int)d, b, 0, 0);
	} else if (kind < 90) { /* a daemon crashes; often the controller */
		if (s->daemon_down >= 0)
			return;
		unsigned d;
		bool holder = kind < 82 && s->lease_holder >= 0 && s->lease_expires > s->now;
		if (holder)
			d = (unsigned)s->lease_holder;
		else
			d = (unsigned)rng_range(&s->rng, 0, s->n - 1);
		struct daemon *dm = &s->daemons[d];
		if (!dm->alive)
			return;
		bool is_holder = s->lease_holder == (int)d && s->lease_inc == dm->inc;
		dm->alive = false;
		dm->inc++;
		dm->crashed_at = s->now;
		s->daemon_down = (int)d;
		if (is_holder && s->controller_crash_count < 16)
			s->controller_crashes[s->controller_crash_count++] = s->now;
		logf_(s, "fault daemon=d%u crashed%s", d, is_holder ? " holding the lease" : "");
		ev_push(s, s->now + rng_range(&s->rng, 5000, 120000), EV_DAEMON_RESTART, (int)d, 0,
			0, 0);
	} else { /* the operator sets a backend offline or standby, often a failing one */
		b = -1;
		if (rng_range(&s->rng, 0, 1) == 0) {
			for (unsigned i = 0; i < s->b && b < 0; i++) {
				if (s->backends[i].bad && !s->backends[i].op_busy)
					b = (int)i;
			}
		}
		if (b < 0 && (b = pick_backend(s, true)) < 0)
			return;
		struct backend *be = &s->backends[b];
		if (!be->bad && usable_backends(s) < 3)
			return;
		be->op_busy = true;
		enum backend_status st =
			rng_range(&s->rng, 0, 1) ? BACKEND_STATUS_OFFLINE : BACKEND_STATUS_STANDBY;
		ev_push(s, s->now, EV_OPERATOR, 0, b, st, 0);
		ev_push(s, s->now + rng_range(&s->rng, 10000, 300000), EV_OPERATOR, 0, b,
			BACKEND_STATUS_ONLINE, 1);
	}
}

static void operator_set(struct sim *s, const struct event *e)
{
	struct backend *be = &s->backends[e->b];
	be->op_status = (enum backend_status)e->x;
	be->op_status_t = s->now;
	geo_put(&s->geo, &s->status[e->b], GEO_WRITER_OPERATOR, s->now, e->x, 0);
	if (e->c == 1)
		be->op_busy = false;
	logf_(s, "operator backend=%s status=%s", be->name, backend_status_name(be->op_status));
}

static void daemon_restart(struct sim *s, unsigned d)
{
	struct daemon *dm = &s->daemons[d];
	dm->alive = true;
	dm->restarted_at = s->now;
	s->daemon_down = -1;
	for (unsigned b = 0; b < s->b; b++) {
		dm->has_streak[b] = false;
		ev_push(s, s->now + rng_range(&s->rng, 0, s->tm.probe_interval), EV_PROBE_START,
			(int)d, (int)b, 0, dm->inc);
	}
	ev_push(s, s->now + rng_range(&s->rng, 0, s->tm.controller_tick), EV_TICK, (int)d, 0, 0,
		dm->inc);
	logf_(s, "daemon=d%u restarted", d);
}

/* ---- setup and run ---- */

static void setup(struct sim *s)
{
	struct timing *tm = &s->tm;
	tm->probe_interval = HEALTH_PROBE_INTERVAL_MS_DEFAULT;
	tm->probe_jitter = 200;
	tm->probe_timeout = 800;
	tm->controller_tick = 1000;
	tm->repl_max = 1500;
	tm->lease_ttl = 10000;
	tm->failover_delay = HEALTH_FAILOVER_DELAY_MS_DEFAULT;
	tm->recovery_delay = HEALTH_RECOVERY_DELAY_MS_DEFAULT;
	int64_t e1 = tm->probe_interval + tm->probe_jitter + tm->probe_timeout + tm->repl_max;
	int64_t e2 = 3 * tm->probe_interval + tm->probe_timeout;
	tm->early_slack = e1 > e2 ? e1 : e2;
	tm->bound = tm->probe_interval + tm->probe_jitter + tm->probe_timeout + tm->failover_delay +
		    tm->controller_tick + tm->repl_max;
	tm->bound_takeover = tm->bound + tm->lease_ttl + tm->controller_tick + tm->repl_max;
	health_settings_init(&s->hs);
	s->hs.failover_delay_ms = tm->failover_delay;
	s->hs.recovery_delay_ms = tm->recovery_delay;
	s->hs.probe_interval_ms = tm->probe_interval;
	/* the bound's premise: the latest observation is always fresh */
	if (tm->repl_max + tm->probe_interval + tm->probe_jitter + tm->probe_timeout >
	    (int64_t)s->hs.stale_probe_intervals * tm->probe_interval) {
		fprintf(stderr, "sim: timing breaks the freshness premise\n");
		exit(2);
	}

	s->rng.state = s->opt.seed;
	geo_init(&s->geo, s->opt.seed, tm->repl_max);
	s->n = s->opt.daemons ? s->opt.daemons : (unsigned)rng_range(&s->rng, 2, 5);
	s->b = s->opt.backends ? s->opt.backends : (unsigned)rng_range(&s->rng, 3, 12);
	s->g = 100 * s->b;
	s->users = s->opt.users;
	s->end = (int64_t)(s->opt.hours * 3600000.0);
	s->lease_holder = -1;
	s->daemon_down = -1;
	int64_t t0 = -tm->repl_max - 1; /* initial writes: visible everywhere at 0 */

	s->backends = xcalloc(s->b, sizeof(*s->backends));
	s->status = xcalloc(s->b, sizeof(*s->status));
	s->mark = xcalloc(s->b, sizeof(*s->mark));
	bool lf_zero = s->b >= 5 && rng_range(&s->rng, 0, 2) == 0;
	for (unsigned b = 0; b < s->b; b++) {
		struct backend *be = &s->backends[b];
		snprintf(be->name, sizeof(be->name), "b%u", b);
		be->load_factor = rng_range(&s->rng, 0, 1) ? 100 : 50;
		if (lf_zero && b == s->b - 1)
			be->load_factor = 0;
		be->op_status = BACKEND_STATUS_ONLINE;
		be->op_status_t = t0;
		geo_put(&s->geo, &s->status[b], GEO_WRITER_OPERATOR, t0, BACKEND_STATUS_ONLINE, 0);
		geo_put(&s->geo, &s->mark[b], GEO_WRITER_OPERATOR, t0, HEALTH_MARK_UP, t0);
	}

	s->assign = xcalloc(s->g, sizeof(*s->assign));
	s->alt = xcalloc(s->g, sizeof(*s->alt));
	s->group_last_move_outage = xcalloc(s->g, sizeof(*s->group_last_move_outage));
	s->group_move_t = xcalloc(s->g, sizeof(*s->group_move_t));
	s->fb = xcalloc(s->b, sizeof(*s->fb));
	s->fg = xcalloc(s->g, sizeof(*s->fg));
	s->changes = xcalloc(s->g, sizeof(*s->changes));
	struct placement_candidate *pc = xcalloc(s->b, sizeof(*pc));
	for (unsigned b = 0; b < s->b; b++) {
		pc[b] = (struct placement_candidate){s->backends[b].name, BACKEND_STATUS_ONLINE,
						     s->backends[b].load_factor, 0};
		s->fb[b] = (struct failover_backend){s->backends[b].name, BACKEND_STATUS_ONLINE,
						     s->backends[b].load_factor, HEALTH_MARK_UP,
						     false};
	}
	for (unsigned g = 0; g < s->g; g++) {
		int b = placement_choose_backend(pc, s->b, g);
		pc[b].assigned_groups++;
		s->fg[g] = (struct failover_group){g, b, -1};
	}
	free(pc);
	size_t count;
	if (failover_alternatives(s->fb, s->b, s->fg, s->g, s->g, s->changes, &count) < 0)
		exit(2);
	for (size_t i = 0; i < count; i++)
		s->fg[s->changes[i].group].alt_backend = s->changes[i].backend;
	for (unsigned g = 0; g < s->g; g++) {
		geo_put(&s->geo, &s->assign[g], GEO_WRITER_OPERATOR, t0, s->fg[g].backend, 0);
		geo_put(&s->geo, &s->alt[g], GEO_WRITER_OPERATOR, t0, s->fg[g].alt_backend, 0);
	}

	s->daemons = xcalloc(s->n, sizeof(*s->daemons));
	s->obs = xcalloc((size_t)s->n * s->b, sizeof(*s->obs));
	s->hb = xcalloc(s->n, sizeof(*s->hb));
	s->live = xcalloc(s->n, sizeof(*s->live));
	s->hobs = xcalloc(s->n, sizeof(*s->hobs));
	for (unsigned d = 0; d < s->n; d++) {
		struct daemon *dm = &s->daemons[d];
		dm->alive = true;
		dm->restarted_at = INT64_MIN;
		dm->crashed_at = INT64_MIN;
		dm->cut_backend = -1;
		dm->has_streak = xcalloc(s->b, sizeof(bool));
		dm->streak_ok = xcalloc(s->b, sizeof(bool));
		dm->streak_since = xcalloc(s->b, sizeof(int64_t));
		for (unsigned b = 0; b < s->b; b++)
			ev_push(s, rng_range(&s->rng, 0, tm->probe_interval), EV_PROBE_START,
				(int)d, (int)b, 0, 0);
		ev_push(s, rng_range(&s->rng, 0, tm->controller_tick), EV_TICK, (int)d, 0, 0, 0);
	}

	s->user_group = xcalloc(s->users, sizeof(*s->user_group));
	s->sessions = xcalloc(s->users, sizeof(*s->sessions));
	for (unsigned u = 0; u < s->users; u++) {
		char name[48];
		snprintf(name, sizeof(name), "user%u@example.org", u);
		s->user_group[u] = user_hash_group(name, s->g);
		s->sessions[u].backend = -1;
	}

	ev_push(s, 0, EV_LOGIN, 0, 0, 0, 0);
	ev_push(s, rng_range(&s->rng, 30000, 90000), EV_FAULT, 0, 0, 0, 0);
	ev_push(s, s->end, EV_END, 0, 0, 0, 0);
}

static void teardown(struct sim *s)
{
	for (unsigned b = 0; b < s->b; b++) {
		free(s->backends[b].periods);
		free(s->backends[b].outages);
	}
	for (unsigned d = 0; d < s->n; d++) {
		free(s->daemons[d].has_streak);
		free(s->daemons[d].streak_ok);
		free(s->daemons[d].streak_since);
	}
	free(s->backends);
	free(s->daemons);
	free(s->status);
	free(s->mark);
	free(s->assign);
	free(s->alt);
	free(s->obs);
	free(s->hb);
	free(s->group_last_move_outage);
	free(s->group_move_t);
	free(s->user_group);
	free(s->sessions);
	free(s->heap);
	free(s->live);
	free(s->hobs);
	free(s->fb);
	free(s->fg);
	free(s->changes);
}

void sim_run(const struct sim_options *options, struct sim_result *result_r)
{
	struct sim sim = {.opt = *options, .res = result_r};
	struct sim *s = &sim;
	memset(result_r, 0, sizeof(*result_r));
	setup(s);
	if (s->opt.verbose)
		printf("seed %llu daemons=%u backends=%u groups=%u users=%u\n",
		       (unsigned long long)s->opt.seed, s->n, s->b, s->g, s->users);

	while (s->heap_count > 0 && !s->stop) {
		struct event e = ev_pop(s);
		s->now = e.t;
		s->step++;
		switch ((enum event_type)e.type) {
		case EV_PROBE_START:
			probe_start(s, &e);
			break;
		case EV_PROBE_DONE:
			probe_done(s, &e);
			break;
		case EV_TICK:
			tick(s, &e);
			break;
		case EV_LOGIN:
			login(s);
			break;
		case EV_FAULT:
			fault(s);
			break;
		case EV_BACKEND_DOWN:
			backend_down(s, (unsigned)e.b);
			break;
		case EV_BACKEND_UP:
			backend_up(s, (unsigned)e.b);
			if (e.x) {
				s->backends[e.b].fault_busy = false;
				s->backends[e.b].bad = false;
			}
			break;
		case EV_SLOW_END:
			s->backends[e.b].slow_p = 0;
			s->backends[e.b].fault_busy = false;
			break;
		case EV_CUT_END:
			s->daemons[e.a].cut_backend = -1;
			s->backends[e.b].fault_busy = false;
			s->cut_active = false;
			break;
		case EV_DAEMON_RESTART:
			daemon_restart(s, (unsigned)e.a);
			break;
		case EV_OPERATOR:
			operator_set(s, &e);
			break;
		case EV_DEADLINE:
			deadline(s, &e);
			break;
		case EV_END:
			s->heap_count = 0;
			break;
		}
		if (s->geo.overflow && !s->stop) {
			printf("seed %llu step %llu: simulator error: a GeoDB cell overflowed\n",
			       (unsigned long long)s->opt.seed, (unsigned long long)s->step);
			s->res->sim_error = s->res->failed = true;
			s->stop = true;
		}
	}
	result_r->steps = s->step;
	teardown(s);
}
