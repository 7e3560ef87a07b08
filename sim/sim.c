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
 *     backend, move_progress() for every moving group, failover_plan(),
 *     failover_alternatives(), and writes the results - exactly the glue the
 *     daemon's controller does;
 *   - users logging in through random daemons, routed by move_login() and
 *     failover_route() on that daemon's view of the GeoDB; a login that
 *     reaches its backend opens a session there (through that daemon) that
 *     lasts an exponential time (mean 10 min) unless its backend crashes,
 *     its daemon crashes or is cut from the backend, or its daemon kicks it;
 *     a client whose session was cut short logs in again 0.2-5 s later;
 *   - group moves through the move protocol (brain/move.h): the operator's
 *     `group move` (one every 5-60 s, at random, failures or not), the
 *     operator's `backend evacuate` (every 3-15 min: every group of one
 *     backend, paced by move_rate_allowance() at 1-4 moves a second, to the
 *     group's alternative or the least loaded backend; up to 3 passes for
 *     groups that were moving or whose move was cancelled), and the
 *     controller's failover (a group of a backend marked down switches at once);
 *   - faults drawn from the seed: long and short backend crashes, flapping,
 *     slow probes, one daemon cut off from one backend, the controller (or
 *     another daemon) crashing, one daemon cut off from the GeoDB (it keeps
 *     serving from its frozen view, writes nothing, and is no controller),
 *     the operator setting a backend offline or standby (often one that is
 *     failing right then), and the operator draining one backend (load
 *     factor 0 for 5-15 min, from 5-20 min on);
 *   - load: one session of a user weighs what it costs a backend, heavy-
 *     tailed (Pareto, alpha 1.5, 1..30).  Every scrape_interval (10 s) the
 *     daemons' reports give each group's weight (its sessions' weights
 *     averaged over the interval, smoothed with time constant 30 min: the
 *     weight of a group that is heavy right now falls back towards its
 *     average, and a balancer fed raw figures moves such groups, then
 *     regrets it), and each backend's node_exporter its CPU busy (slow_k *
 *     load / capacity, capacity such that a backend at its share is half
 *     busy), IO busy (0.8 of that), memory available (0.85 - 0.2 * load /
 *     capacity), each with noise, smoothed over 5 min together with the load
 *     they were measured under (balance_resources.load);
 *   - balancing: the lease holder, every balance_interval (60 s) of its
 *     lease, runs balance_plan() on what it sees: status and this tick's
 *     mark of every backend, load factors, resources; every group's row in
 *     its view (a moving group, or one it writes this tick, is left alone
 *     and counted where it goes), its weight, when its backend last changed
 *     and the backends it left (kept at the GeoDB's head: the daemon keeps
 *     them in the row), and starts each planned move with a compare-and-set
 *     like the operator's (kind start, reason balance: it waits for the
 *     acknowledgements).  Settings: the defaults, but group_min_stay 5 min
 *     (so that a group can move several times in a run and
 *     no_balance_oscillation is about the plan, not about min_stay) and
 *     balance_max_moves one per backend on sites of more than 10.
 *
 * Two scenarios per seed (main.c runs both unless told one):
 *   faults   all of the above for --hours (0.5): balancing's moves go through
 *            the move protocol under faults and must keep every invariant;
 *   balance  no faults and no operator moves: B backends and one more in
 *            standby; the groups placed as if each load factor were 0.3, 1
 *            or 2.5 times what it is (a skewed start), the users' sessions as
 *            they are at any moment (Poisson, mean 1 a user) and the weights
 *            as the daemons have long reported them (their averages); then
 *            phases, each started by the end of the one before:
 *              converge  until every backend is within the hysteresis;
 *              steady    15 min of noisy load only;
 *              slow      15 min: one host gets 35% slower (CPU and IO per
 *                        load): the resource correction cuts its share;
 *              fill      the standby backend goes online, empty, until it is
 *                        at 0.9 of its share; then 5 min;
 *              drain     one backend's load factor goes to 0, until it has no
 *                        group; then 10 min.
 *
 * The group row (as in store/geodb.h: backend, alt_backend, epoch, move_to,
 * move_started) is one GeoDB cell, so that a reader sees all of one write or
 * none of it.  Every change is a compare-and-set on the epoch (a Cassandra
 * lightweight transaction: linearizable, so modelled at the authoritative
 * head; the writer's expected epoch is the one in its own, possibly stale,
 * view).  A move: start (epoch e -> e+1, move_to, move_started), then the
 * finish (e+1 -> e+2, backend = move_to); the new alternative, when the
 * finish needs one, goes into the same write.  A failover switch off a
 * backend marked down is one write (move_progress() says source_down at
 * once).  Acknowledgements are cells (group, daemon) -> epoch.
 *
 * What every daemon does (the rules src/daemon must follow; the simulator's
 * daemons do exactly this whenever a write becomes visible to them, before
 * anything else at that millisecond):
 *   - the group's row shows a move of an epoch it has not handled: note when
 *     it first saw it (seen), close its sessions of the group that are not on
 *     move_to, and acknowledge the epoch after draining (usually 0-0.3 s,
 *     5%: 0.3-8 s, 1%: 30-45 s - longer than move_timeout);
 *   - otherwise, whenever its route for the group (failover_route() on the
 *     group's row and its backends' marks and statuses) may have changed:
 *     close its sessions of the group that are not on the route (when there
 *     is none: those not on the group's backend, and those on it too if it
 *     sees it marked down), and let its held logins of the group go by the
 *     route;
 *   - a login of a group its view shows moving is held (move_login()); at its
 *     deadline (seen + move_timeout) it goes to move_to; when the daemon sees
 *     a newer move of the group first (it missed the end of the one the login
 *     waits for: the finish and the next start reached it together), the
 *     login waits for the new move, from then on (as src/daemon does);
 *   - a restarted daemon closes nothing (it has no sessions), acknowledges
 *     every move it sees, and takes logins only from its first heartbeat +
 *     2 R on (see no_two_backends below); a daemon cut off from the GeoDB
 *     keeps serving and, back, re-reads everything and acknowledges again.
 *
 * What the controller does with a moving group, every tick (its view):
 *   - the target can no longer take groups (marked down, or not online, or
 *     load factor 0) while the source is online and up: it cancels the move
 *     (backend stays, move cleared, epoch + 1).  move.h has no outcome for
 *     this; without it a move to a backend that crashed before it was marked
 *     down holds the group's logins and then sends them to a dead backend;
 *   - otherwise move_progress(), with from_down = the source is marked down
 *     (not merely offline or standby: such a backend may still serve
 *     sessions, and finishing at once would leave them there - see
 *     --break offline_is_down), live = the daemons whose heartbeat it sees
 *     fresh, acked = those of them whose acknowledgement of the move's epoch
 *     it sees;
 *   - a move finished into a backend marked down goes on at once to where
 *     failover_plan() sends it, in the same write (a redirect, not a second
 *     move of an outage);
 *   - the alternative of a group still moving is left alone (a write would
 *     change the epoch the daemons acknowledge).
 *
 * Timing (ms; see struct timing):
 *   P = probe_interval 2000, J = probe jitter 200 (each interval P +- J),
 *   T = probe timeout 800, C = controller tick 1000, R = replication delay
 *   bound 1500, L = lease ttl 10000, D = backend_failover_delay 30000,
 *   Drec = backend_recovery_delay 30000, stale = 3 P, M = move_timeout
 *   30000.  A probe's outcome is the backend's state when it starts: a
 *   crashed backend refuses at once (1-5 ms), a cut link or a slow probe
 *   times out (T), a healthy backend answers in 1-30 ms.  An observation's
 *   since is the completion time of the first probe of its streak.
 *
 * The invariants, checked at every step that can break them:
 *
 *   no_early_failover  A backend is marked down, and a group moved off it
 *       by failover, at time t only if it was in an outage (a crash; down
 *       periods with up gaps shorter than P + J merged, since no probe need
 *       land in such a gap) that began at or before t - D and had not ended
 *       before t - E, E = max(P + J + T + R, 3P + T) = 6800 ms: after an
 *       outage ends the controller may still see failing observations for
 *       that long (the ok probe comes within P + J + T and is visible within
 *       R more; or a witness that crashed keeps a failing observation fresh
 *       for 3 P).  So an outage shorter than D - E = 23.2 s moves nobody; the
 *       short crashes injected last 0.5 .. 22.2 s, a flap's down periods 0.5
 *       .. 12 s (with up gaps 0.2 .. 10 s: merged, a flap may be a long
 *       outage and then legitimately moves groups).
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
 *       holder) crashed or was cut off from the GeoDB at tc in
 *       [c0 - L - 2C - R, c0 + BOUND]:
 *           BOUND_takeover = BOUND + L + C + R = 48 s
 *       (its lease expires within L, another daemon takes it within C,
 *       settles R, acts within C).  Exempt (counted): X's operator status
 *       not online at some point from c0 - R on; the daemons alive (and
 *       connected to the GeoDB) throughout [c0 - 3P - R, deadline] are not a
 *       strict majority of those alive at any time in it (a restarted daemon
 *       starts a new streak, a crashed one is counted live for up to 3P);
 *       two controller crashes in the window; a daemon cut off from the
 *       GeoDB (its view is frozen).  Also checked at every later login while
 *       X stays down.
 *   one_move_per_outage  Every failover move is attributed to the outage of
 *       its source backend that justifies it (no_early_failover); no group
 *       has two failover moves attributed to the same outage (an operator's
 *       or an evacuation's move in between starts the count again), and
 *       every failover move goes to a backend the controller sees online,
 *       marked up and with load factor > 0 (a move elsewhere would have to
 *       be followed by a second one).  Groups never move back by failover: a
 *       failover move off a healthy backend fails no_early_failover.
 *   operator_status  The status cells are written by the operator only and
 *       always hold what the operator last wrote (checked every controller
 *       tick); the controller never changes the mark of a backend whose
 *       status it sees not online, and never picks a backend it sees not
 *       online as a failover target or alternative.
 *   no_login_to_down  A login routed by daemon d to backend b at t: (a) the
 *       mark of b in the cells d read is not down and b's status there is
 *       online; (b) the controller's mark of b as of t - R (every write made
 *       by then has reached every daemon) is not down, unless d's view holds
 *       a newer write of that mark (exempt: d cut off from the GeoDB).
 *   no_early_recovery  A backend is marked up again at t only if no crash
 *       period overlapped [t - Drec, t - 3P] by P + J or more (every witness
 *       of the recovery probed it at least once in any such stretch).
 *   no_two_backends  At no moment has a user open sessions on two different
 *       backends.  Checked whenever a session opens (the only way a conflict
 *       can start) and again whenever an exempt conflict's grace ends.  A
 *       conflict is exempt (counted) when there is a backend Z such that
 *       every session of the user not on Z is held by a daemon d that has
 *       not yet seen a write which, by design, does not wait for d:
 *         (a) a mark or status write of the session's backend or of a
 *             backend of the group's row in d's view (failover_route() sends
 *             logins to the alternative as soon as a daemon sees the mark,
 *             so a backend marked down but in fact alive - flapping - can
 *             have sessions through daemons that have not seen it yet);
 *         (b) a write of the group's row that switches it without
 *             acknowledgements: a failover switch, a move finished at once
 *             because its source is marked down (source_down), a new
 *             alternative;
 *         (c) d is cut off from the GeoDB, or was less than C + 2R ago (its
 *             view is frozen; back, it sees within R everything written
 *             before, and the controller counts it again within C + R).
 *       The grace ends when d sees the write (at most R after it was made)
 *       or, for (c), C + 2R after d is back; then the conflict must be gone.
 *       Nothing else is exempt: a move finished with acknowledgements, or at
 *       move_timeout, must never leave a user on two backends.  That needs
 *       the restart rule above: the controller waits only for the daemons it
 *       counts live, and it counts a restarted daemon only once it sees its
 *       heartbeat (written at h, seen by h + R).  A move finished before
 *       h + R without the daemon's acknowledgement reaches its view by
 *       h + 2 R; one finished later waited for its acknowledgement.  So from
 *       h + 2 R on its view never routes a login to a source the others have
 *       left.  Without the rule (--break no_ready) a daemon that restarts
 *       just as a move starts serves the old backend while the others serve
 *       the new one (seeds 841 and 1097 of the first 3000 show it).
 *   login_wait_bound  No login is held longer than M = move_timeout = 30 s
 *       after its daemon first saw the move it waits for: the time from a
 *       login's arrival (or from the sight of a newer move it then waits for,
 *       above) to its routing is at most M, exactly (the simulator has no
 *       step granularity: a held login is released at its deadline seen + M,
 *       to the millisecond).  Logins held through two moves, so longer than M
 *       from their arrival, are counted (exempt).  Without the rule above,
 *       such a login went to the new move's target at the old deadline, while
 *       daemons that had not seen the new move yet served its source (seed
 *       475 of the first 2000, after a balancing move finished at
 *       move_timeout and an evacuation moved the group on 0.3 s later).
 *   balance_scope  Every balancing move goes from a backend the controller
 *       sees online and marked up (it can take groups, or drains) to one that
 *       can take groups (online, marked up, load factor > 0), and moves a
 *       group that is on that backend in the controller's view, not moving,
 *       not written this tick, not moved within group_min_stay.
 *   no_balance_oscillation  A balancing move of group g to backend X is an
 *       oscillation if g left X by a balancing move earlier in the run and
 *       nothing but the users' load has changed since: no backend's
 *       can-take state or load factor as balancing saw it, the resource
 *       correction not switched on or off, no host changed speed (the balance
 *       scenario's slow host), and no group switched by failover, moved by
 *       the operator or an evacuation, or had its move cancelled (each of
 *       these starts a new epoch).  Moves off a draining backend are forced
 *       and never count.  Returns in a later epoch are counted (exempt).
 *   balance_converges  (balance scenario) From the first balancing round on,
 *       every backend that can take groups is within the hysteresis of its
 *       target (as the plan sees it: then max/mean <= 1.10) within
 *       ceil(2 * bound / balance_max_moves) + 10 rounds, bound below.
 *   balance_moves_bound  (balance scenario) The balancing moves started from
 *       the first round up to the round that finds every backend within the
 *       hysteresis are at most 1.2 times balance_moves_lower_bound() of the
 *       first round's inputs: the fewest moves that could bring that state
 *       within the hysteresis (why it is a lower bound: balance.h).  The
 *       weights move a little meanwhile (the users), so a descent may even
 *       take a few moves less than the bound.
 *   balance_fill  (balance scenario) The added backend is at 0.9 of its
 *       share or more within 20 rounds.
 *   balance_drain  (balance scenario) The backend whose load factor went to
 *       0 has no group (none on it, none moving to it) within
 *       ceil(its groups / balance_max_moves) + 10 rounds + group_min_stay
 *       (a group that arrived just before may stay that long).
 */
#include "sim.h"

#include "brain/balance.h"
#include "brain/failover.h"
#include "brain/health.h"
#include "brain/move.h"
#include "brain/placement.h"
#include "brain/user.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sim_invariant_names[INV_COUNT] = {
	"no_early_failover", "served_within_bound", "one_move_per_outage", "operator_status",
	"no_login_to_down",  "no_early_recovery",   "no_two_backends",     "login_wait_bound",
	"balance_scope",     "no_balance_oscillation", "balance_converges", "balance_moves_bound",
	"balance_fill",      "balance_drain",
	"site_failover_rate", "site_short_cut", "site_stop_on_return", "site_failback_delay",
	"site_converged", "site_merge_once", "site_operator_status", "site_evacuate_drains",
};

const struct sim_break_name sim_break_names[] = {
	{"no_move_kick", SIM_BREAK_NO_MOVE_KICK, "daemons acknowledge a move without kicking"},
	{"no_route_kick", SIM_BREAK_NO_ROUTE_KICK,
	 "daemons keep sessions off their route (a backend marked down, a finished move)"},
	{"no_hold", SIM_BREAK_NO_HOLD, "logins of a moving group go to the old backend"},
	{"no_ack_wait", SIM_BREAK_NO_ACK_WAIT, "the controller finishes moves without acks"},
	{"no_ready", SIM_BREAK_NO_READY, "a restarted daemon takes logins at once"},
	{"no_deadline", SIM_BREAK_NO_DEADLINE, "held logins wait for the switch however long"},
	{"offline_is_down", SIM_BREAK_OFFLINE_IS_DOWN,
	 "a move off an offline backend finishes at once, like one off a backend marked down"},
	{"balance_no_hysteresis", SIM_BREAK_BALANCE_NO_HYSTERESIS,
	 "the controller plans with balance_hysteresis 0"},
	{"balance_ignore_mark", SIM_BREAK_BALANCE_IGNORE_MARK,
	 "the controller passes every backend to balancing as online and marked up"},
	{"balance_no_smoothing", SIM_BREAK_BALANCE_NO_SMOOTHING,
	 "group weights are the last scrape interval's, not smoothed"},
	{"balance_ignore_drain", SIM_BREAK_BALANCE_IGNORE_DRAIN,
	 "the controller passes a load factor 0 to balancing as 100"},
	{"site_never_void", SIM_BREAK_SITE_NEVER_VOID,
	 "no heartbeat rows reach the brain: a failover cell written during a cut is never void"},
	{"site_no_rate", SIM_BREAK_SITE_NO_RATE, "site failover writes every cell at once"},
	{"site_no_stop", SIM_BREAK_SITE_NO_STOP,
	 "a site failover goes on when the site is reachable again"},
	{"site_no_failback_delay", SIM_BREAK_SITE_NO_FAILBACK_DELAY,
	 "site_failback_delay 0: failback as soon as the site is reachable"},
	{"site_ignore_reports", SIM_BREAK_SITE_IGNORE_REPORTS,
	 "the failover site ignores the other sites' reachability records"},
	{"site_ignore_status", SIM_BREAK_SITE_IGNORE_STATUS,
	 "the failover site passes the home site's status as online (standby, evacuate ignored)"},
	{"site_merge_piecemeal", SIM_BREAK_SITE_MERGE_PIECEMEAL,
	 "daemons route by every write of a hint replay as it lands, not by the merged state"},
	{"site_no_settle", SIM_BREAK_SITE_NO_SETTLE,
	 "daemons route by a failover cell they cannot judge yet (site_cell_settled)"},
	{NULL, 0, NULL},
};

struct timing {
	int64_t probe_interval, probe_jitter, probe_timeout, controller_tick, repl_max, lease_ttl,
		failover_delay, recovery_delay, early_slack, bound, bound_takeover;
	int64_t move_timeout, session_mean, ready_delay;
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
	EV_SEE,         /* a: daemon, b: enum see_kind, x: group or backend */
	EV_ACK,         /* a: daemon, b: group, x: epoch, c: incarnation */
	EV_SESSION_END, /* a: session, c: generation */
	EV_RELOGIN,     /* a: user */
	EV_HOLD_END,    /* a: held login, c: generation */
	EV_RECHECK,     /* a: user */
	EV_OP_MOVE,
	EV_EVACUATE,
	EV_EVAC_STEP,
	EV_HEAL,        /* a: daemon */
	EV_SCRAPE,      /* the group weights and the backends' resources are sampled */
	EV_LOAD_FACTOR, /* b: backend, x: its new load factor */
	EV_PHASE,       /* the balance scenario's next phase */
};

enum see_kind { SEE_ROW, SEE_MARK, SEE_STATUS };

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
	/* load: milli-weights of the sessions on it, now and integrated since
	 * the last scrape; its node_exporter's figures, smoothed */
	int64_t load_now, load_acc, load_t;
	double capacity; /* weight at which its CPU is fully busy (slow_k 1) */
	double slow_k;   /* how busy it gets per unit of load (1: like the others) */
	struct balance_resources res;
};

struct daemon {
	bool alive;
	bool partitioned; /* cut off from the GeoDB: reads a frozen view, writes nothing */
	bool first_hb_pending;
	uint32_t inc; /* incarnation: events of an older one are dropped */
	int64_t restarted_at, crashed_at;
	int64_t part_start, part_end, heal_at; /* the latest cut from the GeoDB */
	int64_t serve_from;                    /* takes logins from then on (a restarted daemon) */
	int64_t exempt_until; /* back from a GeoDB cut: its sessions may be stale */
	int cut_backend;      /* -1: none */
	bool *has_streak;
	bool *streak_ok;
	int64_t *streak_since;
	uint32_t *handled; /* per group: the epoch of the move it has handled */
	int64_t *seen_ms;  /* ... and when it first saw it */
	unsigned held;     /* logins it holds */
};

/* One version of a group's row (the cell's value is the backend, its aux
 * the index of the row version in struct sim.rows). */
enum row_kind {
	ROW_INITIAL,
	ROW_START,
	ROW_FINISH_ACKED,
	ROW_FINISH_TIMEOUT,
	ROW_FINISH_DOWN,         /* the source marked down */
	ROW_FINISH_DOWN_OFFLINE, /* only with --break offline_is_down */
	ROW_SWITCH,              /* failover off a backend marked down, at once */
	ROW_ALT,                 /* a new alternative only */
	ROW_CANCEL,              /* the target cannot take it: back to the source */
};
enum move_reason {
	REASON_NONE,
	REASON_OPERATOR,
	REASON_EVACUATE,
	REASON_FAILOVER,
	REASON_BALANCE
};

struct row {
	int32_t backend, alt, move_to; /* move_to -1: not moving */
	uint32_t epoch;
	int64_t move_started;
	uint8_t kind, reason;
};

/* A row write a daemon need not acknowledge: see no_two_backends (b). */
static bool row_kind_no_ack(uint8_t kind)
{
	return kind == ROW_FINISH_DOWN || kind == ROW_SWITCH || kind == ROW_ALT ||
	       kind == ROW_CANCEL;
}

struct session {
	int64_t since;
	int32_t user, group, backend;
	int32_t u_prev, u_next, g_prev, g_next, b_prev, b_next;
	uint32_t gen;
	int16_t daemon;
	bool open;
};

struct held_login {
	int64_t arrival, deadline;
	int64_t hold_from; /* when its daemon first saw the move it waits for */
	uint32_t epoch;    /* ... that move's epoch */
	int32_t user, group;
	uint32_t gen, inc;
	int32_t next_free;
	int16_t daemon;
	bool active;
};

#define OSC_KEEP 4 /* departures by balancing remembered per group */

/* The balance scenario's phases (see the header). */
enum phase {
	PH_CONVERGE, /* from the skewed start until balanced */
	PH_STEADY,   /* steady noisy load: no oscillation, few moves */
	PH_SLOW,     /* one host becomes slower: its share shrinks */
	PH_FILL,     /* a backend added: until it is at its share */
	PH_SETTLE,
	PH_DRAIN, /* a backend's load factor set to 0: until it has no group */
	PH_FINAL,
};

struct scenario {
	enum phase phase;
	int added, drained, slow; /* backend indexes */
	int64_t start, deadline, phase_start;
	unsigned rounds;
	size_t bound;
	uint64_t moves_at_phase; /* balance_moves when the phase began */
	unsigned drain_groups;
	double mm_last, slow_factor, slow_share;
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
	double login_clock; /* the next arrival, fractional ms */

	struct event *heap;
	size_t heap_count, heap_cap;

	struct backend *backends;
	struct daemon *daemons;
	struct geo_cell *status, *mark, *assign, *acks, *obs, *hb;
	struct row *rows; /* every version of every group row written */
	size_t row_count, row_cap;
	uint32_t *group_last_move_outage; /* (backend << 20 | outage id) + 1, 0: none */
	int64_t *group_move_t;            /* time of the group's last failover move */
	int32_t *group_move_to;           /* ... and its target */
	unsigned *user_group;

	/* sessions: a pool with lists per user, group and backend */
	struct session *pool;
	size_t pool_count, pool_cap;
	int32_t pool_free;
	int32_t *user_head, *group_head, *backend_head;

	struct held_login *held;
	size_t held_count, held_cap;
	int32_t held_free;

	/* the lease: linearizable (a conditional write), so global */
	int lease_holder;
	uint32_t lease_inc;
	int64_t lease_expires, lease_acquired;
	int64_t controller_crashes[16];
	size_t controller_crash_count;

	bool cut_active;
	int daemon_down; /* -1: none; a crashed daemon or one cut off from the GeoDB */
	int partitioned; /* -1: none */
	struct geo_write *snap_assign, *snap_mark, *snap_status; /* its frozen view */

	/* the operator's evacuation in progress */
	int evac_backend; /* -1: none */
	unsigned evac_rate;
	int64_t evac_since;
	uint64_t evac_started;
	unsigned evac_pass;
	unsigned *evac_groups;
	size_t evac_count, evac_pos;

	/* controller scratch */
	bool *live;
	struct health_observation *hobs;
	struct failover_backend *fb;
	struct failover_group *fg;
	struct failover_change *changes;
	struct row *crow;    /* the rows as the controller sees them */
	uint8_t *pending;    /* 0 or the row kind to write this tick */
	int32_t *plan_from;  /* a failover move's source, -1: none */
	int64_t *move_begin; /* per group: its move's start (for max_move_ms) */

	/* load and balancing */
	struct rng load_rng; /* user weights and metric noise, apart from the events */
	struct balance_settings bs;
	int64_t scrape_interval, balance_interval, weight_tau, resource_tau, last_scrape;
	uint32_t *user_w;                /* per user: milli-weight of one session */
	int64_t *g_load, *g_acc, *g_t;   /* per group: its sessions' milli-weights, integral */
	double *g_weight;                /* per group: the smoothed weight reported */
	bool weights_init;
	int64_t *moved_at;               /* per group: its backend's last change (0: never) */
	int32_t *hist;                   /* per group: backends it left, newest first */
	int64_t *hist_t;                 /* ... when */
	int32_t *osc_b;                  /* per group: backends it left by balancing */
	uint32_t *osc_epoch;             /* ... in which disturbance epoch */
	int64_t *osc_t;                  /* ... when */
	uint32_t bal_epoch;              /* + 1 at every change other than the users' load */
	uint64_t disturbances;           /* non-balancing moves since the last round */
	uint16_t *bal_sig;               /* per backend: what balancing saw last round */
	bool bal_corrected;              /* every backend had enough samples last round */
	int64_t balance_next;
	int balance_holder;
	uint32_t balance_inc;
	struct balance_backend *bb;
	struct balance_group *bg;
	struct scenario sc;
};

static bool brk(const struct sim *s, unsigned flag)
{
	return (s->opt.breaks & flag) != 0;
}

/* ---- events ---- */

/* A write becoming visible to a daemon is handled before anything else that
 * happens at the same millisecond (the daemon reacts to what it sees). */
static bool ev_before(const struct event *x, const struct event *y)
{
	if (x->t != y->t)
		return x->t < y->t;
	bool xs = x->type == EV_SEE, ys = y->type == EV_SEE;
	if (xs != ys)
		return xs;
	return x->seq < y->seq;
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
	__attribute__((format(printf, 3, 4)));
static void logf_(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violation(struct sim *s, enum sim_invariant inv, const char *fmt, ...)
{
	char msg[1024];
	va_list args;
	if (s->stop)
		return; /* the first violation of a seed is the one to read */
	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	s->res->violations[inv]++;
	s->res->failed = true;
	s->stop = true;
	printf("seed %llu%s step %llu t=%.3fs invariant %s violated: %s\n",
	       (unsigned long long)s->opt.seed,
	       s->opt.scenario == SIM_SCENARIO_BALANCE ? " (scenario balance)" : "",
	       (unsigned long long)s->step, s->now / 1000.0, sim_invariant_names[inv], msg);
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

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (p == NULL) {
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return p;
}

static double exp_double(struct sim *s, double mean_ms)
{
	double u = rng_double(&s->rng);
	return -log(1.0 - u) * mean_ms;
}

static int64_t exp_ms(struct sim *s, double mean_ms)
{
	return (int64_t)exp_double(s, mean_ms);
}

/* ---- the GeoDB cells as each daemon sees them ---- */

static const struct geo_write *view_cell(const struct sim *s, const struct geo_cell *cells,
					 const struct geo_write *snap, size_t index, unsigned d)
{
	if (s->partitioned == (int)d)
		return &snap[index];
	return geo_read(&s->geo, &cells[index], (int)d, s->now);
}

static const struct row *view_row(const struct sim *s, unsigned d, unsigned g)
{
	return &s->rows[view_cell(s, s->assign, s->snap_assign, g, d)->aux];
}

static const struct geo_write *view_mark(const struct sim *s, unsigned d, unsigned b)
{
	return view_cell(s, s->mark, s->snap_mark, b, d);
}

static const struct geo_write *view_status(const struct sim *s, unsigned d, unsigned b)
{
	return view_cell(s, s->status, s->snap_status, b, d);
}

static const struct row *head_row(const struct sim *s, unsigned g)
{
	return &s->rows[geo_head(&s->assign[g])->aux];
}

/* Every daemon handles a write of a row, mark or status when it sees it. */
static void see_schedule(struct sim *s, const struct geo_cell *cell, int writer, enum see_kind kind,
			 unsigned index)
{
	const struct geo_write *w = geo_head(cell);
	for (unsigned d = 0; d < s->n; d++) {
		int64_t t = writer == (int)d ? s->now : w->t + geo_delay(&s->geo, w->seq, (int)d);
		ev_push(s, t, EV_SEE, (int)d, kind, (int)index, 0);
	}
}

static void row_put(struct sim *s, unsigned g, int writer, int64_t t, const struct row *r, bool see)
{
	if (s->row_count == s->row_cap) {
		s->row_cap = s->row_cap ? s->row_cap * 2 : 4096;
		s->rows = xrealloc(s->rows, s->row_cap * sizeof(*s->rows));
	}
	s->rows[s->row_count] = *r;
	/* the group's history (for balancing: its last move, the backends
	 * whose caches may still be warm) */
	const struct geo_write *prev = geo_head(&s->assign[g]);
	if (prev != NULL && prev->value != r->backend && prev->value >= 0) {
		int32_t *h = &s->hist[(size_t)g * BALANCE_HISTORY];
		int64_t *ht = &s->hist_t[(size_t)g * BALANCE_HISTORY];
		memmove(h + 1, h, (BALANCE_HISTORY - 1) * sizeof(*h));
		memmove(ht + 1, ht, (BALANCE_HISTORY - 1) * sizeof(*ht));
		h[0] = prev->value;
		ht[0] = t;
		s->moved_at[g] = t;
	}
	geo_put(&s->geo, &s->assign[g], writer, t, r->backend, (int64_t)s->row_count);
	s->row_count++;
	if (see)
		see_schedule(s, &s->assign[g], writer, SEE_ROW, g);
}

/* The compare-and-set on the epoch (at the head: a lightweight transaction
 * is linearizable).  r gets epoch expected + 1. */
static bool row_cas(struct sim *s, unsigned g, int writer, uint32_t expected, struct row *r)
{
	if (head_row(s, g)->epoch != expected) {
		s->res->cas_failed++;
		return false;
	}
	r->epoch = expected + 1;
	row_put(s, g, writer, s->now, r, true);
	return true;
}

static void mark_put(struct sim *s, unsigned b, int writer, int32_t mark)
{
	geo_put(&s->geo, &s->mark[b], writer, s->now, mark, s->now);
	see_schedule(s, &s->mark[b], writer, SEE_MARK, b);
}

static void status_put(struct sim *s, unsigned b, int32_t status)
{
	geo_put(&s->geo, &s->status[b], GEO_WRITER_OPERATOR, s->now, status, 0);
	see_schedule(s, &s->status[b], GEO_WRITER_OPERATOR, SEE_STATUS, b);
}

/* As the operator (the CLI reads the GeoDB at quorum: the head) sees it. */
static bool head_can_take(const struct sim *s, unsigned b)
{
	struct failover_backend fb = {
		.status = (enum backend_status)geo_head(&s->status[b])->value,
		.load_factor = s->backends[b].load_factor,
		.mark = (enum health_mark)geo_head(&s->mark[b])->value,
	};
	return failover_backend_can_take(&fb);
}

/* How daemon d routes group g now, by its view: the group's row and its
 * two backends' cells, through failover_route().  override >= 0 routes as
 * if the group's backend were that one (a held login past its deadline goes
 * to move_to).  Returns 0 or 1 (the backend is idx_r[that]) or -1; fb_r
 * gets the two backends as seen. */
static int view_route(struct sim *s, unsigned d, unsigned g, int override,
		      struct failover_backend fb_r[2], int idx_r[2])
{
	const struct row *r = view_row(s, d, g);
	idx_r[0] = override >= 0 ? override : r->backend;
	idx_r[1] = r->alt;
	memset(fb_r, 0, 2 * sizeof(*fb_r));
	for (int i = 0; i < 2; i++) {
		if (idx_r[i] < 0)
			continue;
		const struct geo_write *st = view_status(s, d, (unsigned)idx_r[i]);
		const struct geo_write *mk = view_mark(s, d, (unsigned)idx_r[i]);
		fb_r[i] = (struct failover_backend){
			s->backends[idx_r[i]].name, (enum backend_status)st->value,
			s->backends[idx_r[i]].load_factor, (enum health_mark)mk->value, false};
	}
	struct failover_group fg = {
		.group_id = g,
		.backend = idx_r[0] >= 0 ? 0 : -1,
		.alt_backend = idx_r[1] < 0 ? -1 : (idx_r[1] == idx_r[0] ? 0 : 1),
	};
	return failover_route(fb_r, 2, &fg);
}

static int view_route_backend(struct sim *s, unsigned d, unsigned g)
{
	struct failover_backend fb[2];
	int idx[2];
	int r = view_route(s, d, g, -1, fb, idx);
	return r < 0 ? -1 : idx[r];
}

/* ---- load ---- */

/* A session of weight dw (milli, negative: closed) on backend b for group g:
 * the integrals the scrapes average over. */
static void load_change(struct sim *s, unsigned g, unsigned b, int64_t dw)
{
	s->g_acc[g] += s->g_load[g] * (s->now - s->g_t[g]);
	s->g_t[g] = s->now;
	s->g_load[g] += dw;
	struct backend *be = &s->backends[b];
	be->load_acc += be->load_now * (s->now - be->load_t);
	be->load_t = s->now;
	be->load_now += dw;
}

/* about normal, mean 0, standard deviation 1 */
static double gauss(struct rng *rng)
{
	double sum = 0;
	for (int i = 0; i < 4; i++)
		sum += rng_double(rng);
	return (sum - 2) * 1.7320508075688772;
}

static double clamp01(double x)
{
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

static double smooth(double old, double sample, double alpha)
{
	return old + alpha * (sample - old);
}

/* Every scrape_interval: what the daemons report of each group's weight
 * (its sessions' weights, averaged over the interval and smoothed with time
 * constant weight_tau) and what each backend's node_exporter shows (CPU and
 * IO busy in proportion to its load, slow_k times as much on a slow host,
 * memory a little; plus noise), smoothed the same way. */
static void scrape(struct sim *s)
{
	ev_push(s, s->now + s->scrape_interval, EV_SCRAPE, 0, 0, 0, 0);
	int64_t span = s->now - s->last_scrape;
	s->last_scrape = s->now;
	if (span <= 0)
		return;
	double alpha = (double)span / (double)s->resource_tau;
	if (alpha > 1)
		alpha = 1;
	double alpha_w = (double)span / (double)s->weight_tau;
	if (alpha_w > 1 || brk(s, SIM_BREAK_BALANCE_NO_SMOOTHING))
		alpha_w = 1;
	bool first = !s->weights_init;
	s->weights_init = true;
	for (unsigned g = 0; g < s->g; g++) {
		s->g_acc[g] += s->g_load[g] * (s->now - s->g_t[g]);
		s->g_t[g] = s->now;
		double avg = (double)s->g_acc[g] / (double)span / 1000.0;
		s->g_acc[g] = 0;
		s->g_weight[g] = first ? avg : smooth(s->g_weight[g], avg, alpha_w);
	}
	for (unsigned b = 0; b < s->b; b++) {
		struct backend *be = &s->backends[b];
		be->load_acc += be->load_now * (s->now - be->load_t);
		be->load_t = s->now;
		double avg = (double)be->load_acc / (double)span / 1000.0;
		be->load_acc = 0;
		if (be->crashed)
			continue; /* its node_exporter does not answer */
		double util = avg / be->capacity;
		double cpu = clamp01(be->slow_k * util + 0.03 * gauss(&s->load_rng));
		double io = clamp01(0.8 * be->slow_k * util + 0.03 * gauss(&s->load_rng));
		double mem = clamp01(0.85 - 0.2 * util + 0.02 * gauss(&s->load_rng));
		struct balance_resources *r = &be->res;
		if (r->samples == 0) {
			*r = (struct balance_resources){0, cpu, mem, io, avg};
		} else {
			r->cpu_busy = smooth(r->cpu_busy, cpu, alpha);
			r->mem_available = smooth(r->mem_available, mem, alpha);
			r->io_busy = smooth(r->io_busy, io, alpha);
			r->load = smooth(r->load, avg, alpha);
		}
		r->samples++;
	}
}

/* ---- sessions ---- */

static void list_unlink(struct sim *s, int32_t id)
{
	struct session *o = &s->pool[id];
#define UNLINK(prev, next, head)                         \
	do {                                             \
		if (o->prev >= 0)                        \
			s->pool[o->prev].next = o->next; \
		else                                     \
			head = o->next;                  \
		if (o->next >= 0)                        \
			s->pool[o->next].prev = o->prev; \
	} while (0)
	UNLINK(u_prev, u_next, s->user_head[o->user]);
	UNLINK(g_prev, g_next, s->group_head[o->group]);
	UNLINK(b_prev, b_next, s->backend_head[o->backend]);
#undef UNLINK
}

static int32_t session_open(struct sim *s, unsigned u, unsigned g, unsigned b, unsigned d)
{
	int32_t id;
	if (s->pool_free >= 0) {
		id = s->pool_free;
		s->pool_free = s->pool[id].u_next;
	} else {
		if (s->pool_count == s->pool_cap) {
			s->pool_cap = s->pool_cap ? s->pool_cap * 2 : 4096;
			s->pool = xrealloc(s->pool, s->pool_cap * sizeof(*s->pool));
		}
		id = (int32_t)s->pool_count++;
		s->pool[id].gen = 0;
	}
	struct session *o = &s->pool[id];
	o->since = s->now;
	o->user = (int32_t)u;
	o->group = (int32_t)g;
	o->backend = (int32_t)b;
	o->daemon = (int16_t)d;
	o->open = true;
	o->u_prev = o->g_prev = o->b_prev = -1;
	o->u_next = s->user_head[u];
	o->g_next = s->group_head[g];
	o->b_next = s->backend_head[b];
	if (o->u_next >= 0)
		s->pool[o->u_next].u_prev = id;
	if (o->g_next >= 0)
		s->pool[o->g_next].g_prev = id;
	if (o->b_next >= 0)
		s->pool[o->b_next].b_prev = id;
	s->user_head[u] = s->group_head[g] = s->backend_head[b] = id;
	s->res->sessions++;
	load_change(s, g, b, s->user_w[u]);
	ev_push(s, s->now + 1 + exp_ms(s, (double)s->tm.session_mean), EV_SESSION_END, id, 0, 0,
		o->gen);
	return id;
}

/* relogin: the client was cut off and comes back soon (through any daemon) */
static void session_close(struct sim *s, int32_t id, bool relogin)
{
	struct session *o = &s->pool[id];
	list_unlink(s, id);
	load_change(s, (unsigned)o->group, (unsigned)o->backend, -(int64_t)s->user_w[o->user]);
	o->open = false;
	o->gen++;
	o->u_next = s->pool_free;
	s->pool_free = id;
	if (relogin) {
		s->res->relogins++;
		ev_push(s, s->now + rng_range(&s->rng, 200, 5000), EV_RELOGIN, o->user, 0, 0, 0);
	}
}

/* relogin: not when the backend died (its clients would only fail again) */
static void sessions_close_backend(struct sim *s, unsigned b, int daemon, bool relogin)
{
	for (int32_t i = s->backend_head[b], next; i >= 0; i = next) {
		next = s->pool[i].b_next;
		if (daemon < 0 || s->pool[i].daemon == daemon)
			session_close(s, i, relogin);
	}
}

static void sessions_close_daemon(struct sim *s, unsigned d)
{
	for (size_t i = 0; i < s->pool_count; i++) {
		if (s->pool[i].open && s->pool[i].daemon == (int)d)
			session_close(s, (int32_t)i, true);
	}
}

/* Daemon d closes its sessions of group g that are not on keep; keep < 0
 * (no route): those not on the group's backend in its view, and those on it
 * too when it sees it marked down (an offline backend's sessions are the
 * operator's business). */
static void kick_group(struct sim *s, unsigned d, unsigned g, int keep)
{
	if (keep < 0) {
		int b = view_row(s, d, g)->backend;
		if (b >= 0 && view_mark(s, d, (unsigned)b)->value != HEALTH_MARK_DOWN)
			keep = b;
	}
	for (int32_t i = s->group_head[g], next; i >= 0; i = next) {
		const struct session *o = &s->pool[i];
		next = o->g_next;
		if (o->daemon != (int)d || o->backend == keep)
			continue;
		s->res->kicks++;
		session_close(s, i, true);
	}
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
		be->periods = xrealloc(be->periods, be->period_cap * sizeof(*be->periods));
	}
	be->periods[be->period_count++] = (struct period){s->now, INT64_MAX};
	struct outage *last = be->outage_count ? &be->outages[be->outage_count - 1] : NULL;
	if (last != NULL && s->now - last->end < s->tm.probe_interval + s->tm.probe_jitter) {
		last->end = INT64_MAX; /* a gap no probe need have seen */
	} else {
		if (be->outage_count == be->outage_cap) {
			be->outage_cap = be->outage_cap ? be->outage_cap * 2 : 8;
			be->outages = xrealloc(be->outages, be->outage_cap * sizeof(*be->outages));
		}
		be->outages[be->outage_count] =
			(struct outage){s->now, INT64_MAX, (uint32_t)be->outage_count + 1};
		be->outage_count++;
	}
	ev_push(s, s->now + s->tm.bound, EV_DEADLINE, 0, (int)b, 0, be->down_seq);
	sessions_close_backend(s, b, -1, false);
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

/* Whether cell has writes daemon d has not seen yet (with rows: only those
 * of a kind that does not wait for d's acknowledgement count); *until_r
 * gets the earliest time d sees one of the newer writes, whatever they are. */
static bool unseen_writes(const struct sim *s, const struct geo_cell *cell, unsigned d, bool rows,
			  int64_t *until_r)
{
	const struct geo_write *seen = geo_read(&s->geo, cell, (int)d, s->now);
	bool any = false;
	for (unsigned i = 0; i < cell->count && &cell->w[i] != seen; i++) {
		const struct geo_write *w = &cell->w[i];
		int64_t visible = w->t + geo_delay(&s->geo, w->seq, (int)d);
		if (visible < *until_r)
			*until_r = visible;
		if (!rows || row_kind_no_ack(s->rows[w->aux].kind))
			any = true;
	}
	return any;
}

enum stale_class { STALE_MARK = 1, STALE_ROW = 2, STALE_CUT = 4 };

/* no_two_backends (a), (b), (c): whether the session is stale by design
 * (a mask of enum stale_class, 0: it is not), until *until_r at the latest
 * (then it must be closed, or agree). */
static unsigned session_stale_by_design(const struct sim *s, const struct session *o,
					int64_t *until_r)
{
	unsigned d = (unsigned)o->daemon;
	const struct daemon *dm = &s->daemons[d];
	if (dm->partitioned) {
		*until_r = dm->heal_at + s->tm.controller_tick + s->tm.ready_delay;
		return STALE_CUT;
	}
	if (s->now < dm->exempt_until) {
		*until_r = dm->exempt_until;
		return STALE_CUT;
	}
	unsigned stale = 0;
	if (unseen_writes(s, &s->assign[o->group], d, true, until_r))
		stale |= STALE_ROW;
	const struct row *r = view_row(s, d, (unsigned)o->group);
	int32_t backends[4] = {o->backend, r->backend, r->alt, r->move_to};
	for (int i = 0; i < 4; i++) {
		if (backends[i] < 0)
			continue;
		if (unseen_writes(s, &s->mark[backends[i]], d, false, until_r) ||
		    unseen_writes(s, &s->status[backends[i]], d, false, until_r))
			stale |= STALE_MARK;
	}
	return stale;
}

/* no_two_backends for user u, now. */
static void check_user(struct sim *s, unsigned u)
{
	int32_t distinct[16];
	unsigned count = 0;
	for (int32_t i = s->user_head[u]; i >= 0; i = s->pool[i].u_next) {
		int32_t b = s->pool[i].backend;
		unsigned k = 0;
		while (k < count && distinct[k] != b)
			k++;
		if (k == count && count < 16)
			distinct[count++] = b;
	}
	s->res->checks[INV_NO_TWO_BACKENDS]++;
	if (count <= 1)
		return;
	for (unsigned z = 0; z < count; z++) {
		bool exempt = true;
		unsigned classes = 0;
		int64_t until = INT64_MAX;
		for (int32_t i = s->user_head[u]; i >= 0 && exempt; i = s->pool[i].u_next) {
			if (s->pool[i].backend == distinct[z])
				continue;
			unsigned c = session_stale_by_design(s, &s->pool[i], &until);
			exempt = c != 0;
			classes |= c;
		}
		if (exempt) {
			s->res->exempt[INV_NO_TWO_BACKENDS]++;
			s->res->two_backends_mark += (classes & STALE_MARK) != 0;
			s->res->two_backends_row += (classes & STALE_ROW) != 0;
			s->res->two_backends_cut += (classes & STALE_CUT) != 0;
			logf_(s, "user=%u two backends, exempt until %.3f:%s%s%s", u,
			      until / 1000.0, classes & STALE_MARK ? " mark" : "",
			      classes & STALE_ROW ? " row" : "", classes & STALE_CUT ? " cut" : "");
			ev_push(s, until, EV_RECHECK, (int)u, 0, 0, 0);
			return;
		}
	}
	char desc[700];
	size_t len = 0;
	for (int32_t i = s->user_head[u]; i >= 0 && len < sizeof(desc) - 120;
	     i = s->pool[i].u_next) {
		const struct session *o = &s->pool[i];
		const struct row *r = view_row(s, (unsigned)o->daemon, (unsigned)o->group);
		len += (size_t)snprintf(desc + len, sizeof(desc) - len,
					"%s%s via d%d since %.3f (its view: group on %d, moving "
					"to %d, epoch %u)",
					len ? "; " : "", s->backends[o->backend].name, o->daemon,
					o->since / 1000.0, r->backend, r->move_to, r->epoch);
	}
	const struct row *h = head_row(s, s->user_group[u]);
	violation(s, INV_NO_TWO_BACKENDS,
		  "user %u (group %u, now on %d, moving to %d, epoch %u) has sessions on %u "
		  "backends: %s",
		  u, s->user_group[u], h->backend, h->move_to, h->epoch, count, desc);
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
	if (!dm->partitioned)
		geo_put(&s->geo, &s->obs[d * s->b + b], (int)d, s->now, ok, dm->streak_since[b]);
}

/* ---- daemons: routing logins, holding them, following moves ---- */

static void route_login(struct sim *s, unsigned u, unsigned d, unsigned g, int override,
			int64_t arrival, int64_t hold_from)
{
	if (arrival < s->now) {
		int64_t waited = s->now - arrival;
		int64_t for_move = s->now - (hold_from > arrival ? hold_from : arrival);
		s->res->checks[INV_LOGIN_WAIT_BOUND]++;
		if (waited > s->res->max_hold_ms)
			s->res->max_hold_ms = waited;
		if (for_move > s->tm.move_timeout)
			violation(s, INV_LOGIN_WAIT_BOUND,
				  "daemon d%u held a login of user %u (group %u) for %.3f s "
				  "(move_timeout %.1f s)",
				  d, u, g, for_move / 1000.0, s->tm.move_timeout / 1000.0);
		else if (waited > s->tm.move_timeout)
			s->res->exempt[INV_LOGIN_WAIT_BOUND]++; /* held through two moves */
	}
	struct failover_backend fb[2];
	int idx[2];
	int r = view_route(s, d, g, override, fb, idx);
	if (r < 0) {
		s->res->logins_unavailable++;
		return;
	}
	unsigned b = (unsigned)idx[r];
	struct backend *be = &s->backends[b];
	bool frozen = s->daemons[d].partitioned;

	s->res->checks[INV_NO_LOGIN_TO_DOWN]++;
	if (fb[r].mark == HEALTH_MARK_DOWN || fb[r].status != BACKEND_STATUS_ONLINE)
		violation(s, INV_NO_LOGIN_TO_DOWN,
			  "daemon d%u routed user %u (group %u) to backend %s, which it sees "
			  "marked %s, status %s",
			  d, u, g, be->name, health_mark_name(fb[r].mark),
			  backend_status_name(fb[r].status));
	const struct geo_write *auth = geo_at(&s->mark[b], s->now - s->tm.repl_max);
	const struct geo_write *seen = view_mark(s, d, b);
	if (auth != NULL && auth->value == HEALTH_MARK_DOWN && seen->t <= auth->t) {
		if (frozen)
			s->res->exempt[INV_NO_LOGIN_TO_DOWN]++;
		else
			violation(s, INV_NO_LOGIN_TO_DOWN,
				  "daemon d%u routed user %u to backend %s, marked down at %.3f "
				  "s, more than the replication bound ago",
				  d, u, be->name, auth->t / 1000.0);
	}
	if (be->crashed && be->deadline_seq == be->down_seq) {
		if (frozen) {
			s->res->exempt[INV_SERVED_WITHIN_BOUND]++;
		} else {
			s->res->checks[INV_SERVED_WITHIN_BOUND]++;
			violation(s, INV_SERVED_WITHIN_BOUND,
				  "daemon d%u routed user %u (group %u) to backend %s, dead "
				  "since %.3f s",
				  d, u, g, be->name,
				  be->periods[be->period_count - 1].start / 1000.0);
		}
	}

	if (!reachable(s, d, b)) {
		s->res->logins_failed++;
		return;
	}
	s->res->logins_ok++;
	session_open(s, u, g, b, d);
	check_user(s, u);
}

static int32_t held_alloc(struct sim *s)
{
	int32_t id;
	if (s->held_free >= 0) {
		id = s->held_free;
		s->held_free = s->held[id].next_free;
	} else {
		if (s->held_count == s->held_cap) {
			s->held_cap = s->held_cap ? s->held_cap * 2 : 256;
			s->held = xrealloc(s->held, s->held_cap * sizeof(*s->held));
		}
		id = (int32_t)s->held_count++;
		s->held[id].gen = 0;
	}
	return id;
}

static void held_drop(struct sim *s, int32_t id)
{
	struct held_login *h = &s->held[id];
	h->active = false;
	h->gen++;
	s->daemons[h->daemon].held--;
	h->next_free = s->held_free;
	s->held_free = id;
}

/* A held login goes on: by the route when the daemon sees the move
 * finished, to move_to when its deadline has come (MOVE_LOGIN_TARGET). */
static void held_release(struct sim *s, int32_t id)
{
	const struct held_login h = s->held[id];
	held_drop(s, id);
	const struct row *r = view_row(s, (unsigned)h.daemon, (unsigned)h.group);
	route_login(s, (unsigned)h.user, (unsigned)h.daemon, (unsigned)h.group,
		    r->move_to >= 0 ? r->move_to : -1, h.arrival, h.hold_from);
}

/* Daemon d sees a move of group g it has not seen before (epoch) while it
 * holds logins of g for an older one, whose end it never saw (the finish
 * and the new start reached it together): they wait for the new move, from
 * now (as src/daemon/router.c does: a held login's deadline is the move's
 * first sight plus move_timeout).  Sent to the new move's target at the old
 * deadline, they would open sessions there while the daemons that have not
 * seen the new move yet still serve its source. */
static void held_rehold_group(struct sim *s, unsigned d, unsigned g, uint32_t epoch)
{
	if (s->daemons[d].held == 0)
		return;
	for (size_t i = 0; i < s->held_count; i++) {
		struct held_login *h = &s->held[i];
		if (!h->active || h->daemon != (int)d || h->group != (int)g || h->epoch == epoch)
			continue;
		h->epoch = epoch;
		h->hold_from = s->now;
		move_login(s->tm.move_timeout, true, s->now, s->now, &h->deadline);
		h->gen++;
		s->res->logins_reheld++;
		ev_push(s, h->deadline, EV_HOLD_END, (int)i, 0, 0, h->gen);
	}
}

static void held_release_group(struct sim *s, unsigned d, unsigned g)
{
	if (s->daemons[d].held == 0)
		return;
	for (size_t i = 0; i < s->held_count && !s->stop; i++) {
		if (s->held[i].active && s->held[i].daemon == (int)d && s->held[i].group == (int)g)
			held_release(s, (int32_t)i);
	}
}

static void held_end(struct sim *s, const struct event *e)
{
	struct held_login *h = &s->held[e->a];
	if (!h->active || h->gen != e->c)
		return;
	if (brk(s, SIM_BREAK_NO_DEADLINE)) {
		const struct row *r = view_row(s, (unsigned)h->daemon, (unsigned)h->group);
		if (r->move_to >= 0) {
			ev_push(s, s->now + s->tm.controller_tick, EV_HOLD_END, e->a, 0, 0, e->c);
			return;
		}
	}
	held_release(s, e->a);
}

/* A login of user u arriving at daemon d. */
static void login_at(struct sim *s, unsigned u, unsigned d)
{
	unsigned g = s->user_group[u];
	struct daemon *dm = &s->daemons[d];
	s->res->logins++;
	const struct row *r = view_row(s, d, g);
	if (r->move_to < 0 || brk(s, SIM_BREAK_NO_HOLD)) {
		route_login(s, u, d, g, -1, s->now, s->now);
		return;
	}
	if (dm->handled[g] != r->epoch) {
		/* cannot happen: a daemon handles every write it sees at once */
		printf("seed %llu step %llu: simulator error: d%u routes group %u moving in "
		       "epoch %u without having handled it\n",
		       (unsigned long long)s->opt.seed, (unsigned long long)s->step, d, g,
		       r->epoch);
		s->res->sim_error = s->res->failed = true;
		s->stop = true;
		return;
	}
	int64_t deadline;
	switch (move_login(s->tm.move_timeout, true, dm->seen_ms[g], s->now, &deadline)) {
	case MOVE_LOGIN_HOLD: {
		int32_t id = held_alloc(s);
		struct held_login *h = &s->held[id];
		h->arrival = s->now;
		h->deadline = deadline;
		h->hold_from = dm->seen_ms[g];
		h->epoch = r->epoch;
		h->user = (int32_t)u;
		h->group = (int32_t)g;
		h->daemon = (int16_t)d;
		h->inc = dm->inc;
		h->active = true;
		dm->held++;
		s->res->logins_held++;
		ev_push(s, deadline, EV_HOLD_END, id, 0, 0, h->gen);
		break;
	}
	case MOVE_LOGIN_TARGET:
		route_login(s, u, d, g, r->move_to, s->now, s->now);
		break;
	case MOVE_LOGIN_ROUTE:
		route_login(s, u, d, g, -1, s->now, s->now);
		break;
	}
}

static bool serving(const struct sim *s, unsigned d)
{
	const struct daemon *dm = &s->daemons[d];
	return dm->alive && (s->now >= dm->serve_from || brk(s, SIM_BREAK_NO_READY));
}

/* A login of user u through a random daemon (the load balancer sends none
 * to a daemon that is down or not ready yet). */
static void login_user(struct sim *s, unsigned u)
{
	unsigned d = (unsigned)rng_range(&s->rng, 0, s->n - 1);
	for (unsigned tries = 0; tries < s->n && !serving(s, d); tries++)
		d = (d + 1) % s->n;
	if (!serving(s, d)) {
		s->res->logins++;
		s->res->logins_unavailable++;
		return;
	}
	login_at(s, u, d);
}

static void login(struct sim *s)
{
	double rate_per_ms = (s->users / 600.0) / 1000.0; /* each user every 10 min */
	if (rate_per_ms < 0.001)
		rate_per_ms = 0.001;
	s->login_clock += exp_double(s, 1.0 / rate_per_ms);
	ev_push(s, (int64_t)s->login_clock, EV_LOGIN, 0, 0, 0, 0);
	login_user(s, (unsigned)rng_range(&s->rng, 0, s->users - 1));
}

/* How long a daemon takes to acknowledge a move after closing its sessions
 * (its LMTP transactions to the old backend finish first). */
static int64_t drain_ms(struct sim *s)
{
	unsigned p = (unsigned)rng_range(&s->rng, 0, 99);
	if (p < 94)
		return rng_range(&s->rng, 0, 300);
	if (p < 99)
		return rng_range(&s->rng, 300, 8000);
	return rng_range(&s->rng, 30000, 45000);
}

/* Daemon d follows its view of group g (the rules in the header). */
static void daemon_follow_group(struct sim *s, unsigned d, unsigned g, bool ack_again)
{
	struct daemon *dm = &s->daemons[d];
	const struct row *r = view_row(s, d, g);
	if (r->move_to >= 0) {
		bool fresh = dm->handled[g] != r->epoch;
		if (fresh) {
			dm->handled[g] = r->epoch;
			dm->seen_ms[g] = s->now;
			held_rehold_group(s, d, g, r->epoch);
		}
		if (!brk(s, SIM_BREAK_NO_MOVE_KICK))
			kick_group(s, d, g, r->move_to);
		if (fresh || ack_again)
			ev_push(s, s->now + drain_ms(s), EV_ACK, (int)d, (int)g, (int)r->epoch,
				dm->inc);
		return;
	}
	if (!brk(s, SIM_BREAK_NO_ROUTE_KICK))
		kick_group(s, d, g, view_route_backend(s, d, g));
	held_release_group(s, d, g);
}

/* Daemon d sees a mark or status change of backend b: every group whose
 * route may involve b. */
static void daemon_follow_backend(struct sim *s, unsigned d, unsigned b)
{
	for (unsigned g = 0; g < s->g && !s->stop; g++) {
		const struct row *r = view_row(s, d, g);
		if (r->backend == (int)b || r->alt == (int)b || r->move_to == (int)b)
			daemon_follow_group(s, d, g, false);
	}
}

static void daemon_follow_all(struct sim *s, unsigned d, bool ack_again)
{
	for (unsigned g = 0; g < s->g && !s->stop; g++)
		daemon_follow_group(s, d, g, ack_again);
}

static void see(struct sim *s, const struct event *e)
{
	unsigned d = (unsigned)e->a;
	const struct daemon *dm = &s->daemons[d];
	if (!dm->alive || dm->partitioned)
		return; /* it reads everything again when back */
	if (e->b == SEE_ROW)
		daemon_follow_group(s, d, (unsigned)e->x, false);
	else
		daemon_follow_backend(s, d, (unsigned)e->x);
}

static void ack(struct sim *s, const struct event *e)
{
	unsigned d = (unsigned)e->a, g = (unsigned)e->b;
	const struct daemon *dm = &s->daemons[d];
	if (!dm->alive || dm->inc != e->c || dm->partitioned)
		return; /* a daemon cut off from the GeoDB acknowledges again when back */
	geo_put(&s->geo, &s->acks[(size_t)g * s->n + d], (int)d, s->now, e->x, 0);
}

/* ---- the controller: the same glue the daemon's controller runs ---- */

static const char *reason_name(unsigned reason)
{
	switch (reason) {
	case REASON_OPERATOR:
		return "operator";
	case REASON_EVACUATE:
		return "evacuate";
	case REASON_FAILOVER:
		return "failover";
	case REASON_BALANCE:
		return "balance";
	}
	return "none";
}

/* The failover checks of one group switched off a backend marked down.
 * redirect: a move finished into a backend marked down and sent on at once
 * (the group was never served there: no outage of `from` to attribute). */
static void check_failover_move(struct sim *s, unsigned d, unsigned g, unsigned from, int to,
				bool redirect)
{
	s->res->checks[INV_OPERATOR_STATUS]++;
	if (s->fb[to].status != BACKEND_STATUS_ONLINE)
		violation(s, INV_OPERATOR_STATUS, "group %u moved to backend %s, which is %s", g,
			  s->backends[to].name, backend_status_name(s->fb[to].status));
	s->res->checks[INV_ONE_MOVE_PER_OUTAGE]++;
	if (!failover_backend_can_take(&s->fb[to]))
		violation(s, INV_ONE_MOVE_PER_OUTAGE,
			  "group %u moved to backend %s, which cannot take it (mark %s, load "
			  "factor %u): it will have to move again",
			  g, s->backends[to].name, health_mark_name(s->fb[to].mark),
			  s->fb[to].load_factor);
	s->group_move_t[g] = s->now;
	s->group_move_to[g] = to;
	s->res->moves++;
	logf_(s, "controller=d%u group=%u move from=%s to=%s reason=failover%s", d, g,
	      s->backends[from].name, s->backends[to].name, redirect ? " (redirect)" : "");
	if (redirect)
		return;
	check_early_failover(s, from, "moved a group off");
	uint32_t oid = justifying_outage(s, from);
	uint32_t key = ((uint32_t)from << 20 | oid) + 1;
	s->res->checks[INV_ONE_MOVE_PER_OUTAGE]++;
	if (oid != 0 && s->group_last_move_outage[g] == key)
		violation(s, INV_ONE_MOVE_PER_OUTAGE,
			  "group %u moved off backend %s twice in outage %u", g,
			  s->backends[from].name, oid);
	s->group_last_move_outage[g] = key;
}

/* ---- balancing: the same glue the daemon's controller runs ---- */

/* max over mean of load / target, over the backends that can take groups */
static double max_over_mean(const struct sim *s, const struct balance_plan *plan)
{
	double max = 0, load = 0, target = 0;
	for (unsigned b = 0; b < s->b; b++) {
		const struct balance_backend_view *v = &plan->backends[b];
		if (!v->can_take)
			continue;
		load += v->load;
		target += v->target;
		if (v->ratio > max)
			max = v->ratio;
	}
	return load > 0 && target > 0 ? max / (load / target) : 0;
}

/* every backend that can take groups within the hysteresis of its target */
static bool within_hysteresis(const struct sim *s, const struct balance_plan *plan, double h)
{
	for (unsigned b = 0; b < s->b; b++) {
		const struct balance_backend_view *v = &plan->backends[b];
		if (v->can_take && v->target > 0 && (v->ratio > 1 + h || v->ratio < 1 - h))
			return false;
	}
	return true;
}

static unsigned groups_on(const struct sim *s, int b)
{
	unsigned count = 0;
	for (unsigned g = 0; g < s->g; g++) {
		const struct row *r = head_row(s, g);
		count += r->backend == b || r->move_to == b;
	}
	return count;
}

static int64_t rounds_ms(const struct sim *s, size_t moves, unsigned extra)
{
	size_t rounds = (moves + s->bs.max_moves - 1) / s->bs.max_moves;
	return (int64_t)(rounds + extra) * s->balance_interval;
}

/* The balance scenario's measurements at one round (before its moves). */
static void scenario_round(struct sim *s, const struct balance_plan *plan, double h)
{
	struct scenario *sc = &s->sc;
	struct sim_result *res = s->res;
	double mm = max_over_mean(s, plan);
	sc->mm_last = mm;
	switch (sc->phase) {
	case PH_CONVERGE: {
		sc->rounds++;
		if (sc->rounds == 1) {
			/* the lower bound, from the first round's inputs: see the
			 * header (balance_moves_bound) */
			sc->bound = balance_moves_lower_bound(&s->bs, s->bb, s->b, s->bg, s->g,
							      s->now);
			sc->start = s->now;
			sc->moves_at_phase = res->balance_moves;
			sc->deadline = s->now + rounds_ms(s, sc->bound * 2, 10);
			res->bal_runs++;
			res->bal_mm_start_sum += mm;
			if (mm > res->bal_mm_start_max)
				res->bal_mm_start_max = mm;
			logf_(s, "balance scenario: start max/mean=%.3f lower_bound=%zu", mm,
			      sc->bound);
		}
		if (s->opt.verbose)
			logf_(s, "balance scenario: round %u moves so far %llu lower bound now %zu",
			      sc->rounds,
			      (unsigned long long)(res->balance_moves - sc->moves_at_phase),
			      balance_moves_lower_bound(&s->bs, s->bb, s->b, s->bg, s->g, s->now));
		if (!within_hysteresis(s, plan, h)) {
			res->checks[INV_BALANCE_CONVERGES]++;
			if (s->now >= sc->deadline)
				violation(s, INV_BALANCE_CONVERGES,
					  "not balanced after %u rounds (%.0f s): "
					  "max/mean %.3f, %llu moves, lower bound %zu: %s",
					  sc->rounds, (s->now - sc->start) / 1000.0, mm,
					  (unsigned long long)(res->balance_moves -
							       sc->moves_at_phase),
					  sc->bound, plan->summary);
			break;
		}
		uint64_t moves = res->balance_moves - sc->moves_at_phase;
		int64_t took = s->now - sc->start;
		res->checks[INV_BALANCE_CONVERGES]++;
		res->bal_converged++;
		res->bal_rounds_sum += sc->rounds;
		if (sc->rounds > res->bal_rounds_max)
			res->bal_rounds_max = sc->rounds;
		res->bal_conv_ms_sum += took;
		if (took > res->bal_conv_ms_max)
			res->bal_conv_ms_max = took;
		res->bal_mm_conv_sum += mm;
		if (mm > res->bal_mm_conv_max)
			res->bal_mm_conv_max = mm;
		res->bal_bound_sum += sc->bound;
		res->bal_moves_conv_sum += moves;
		double ratio = sc->bound > 0 ? (double)moves / (double)sc->bound : moves > 0 ? 99 : 1;
		if (ratio > res->bal_moves_ratio_max)
			res->bal_moves_ratio_max = ratio;
		res->checks[INV_BALANCE_MOVES_BOUND]++;
		if (moves * 10 > sc->bound * 12)
			violation(s, INV_BALANCE_MOVES_BOUND,
				  "%llu moves until balanced (round %u), more "
				  "than 1.2 times the lower bound %zu",
				  (unsigned long long)moves, sc->rounds, sc->bound);
		logf_(s, "balance scenario: balanced at round %u after %.0f s: max/mean=%.3f "
			 "moves=%llu lower_bound=%zu",
		      sc->rounds, took / 1000.0, mm, (unsigned long long)moves, sc->bound);
		sc->phase = PH_STEADY;
		sc->phase_start = s->now;
		sc->moves_at_phase = res->balance_moves;
		ev_push(s, s->now + 15 * 60000, EV_PHASE, 0, 0, 0, 0);
		break;
	}
	case PH_STEADY:
		break;
	case PH_SLOW: {
		const struct balance_backend_view *v = &plan->backends[sc->slow];
		sc->slow_factor = v->resource_factor;
		sc->slow_share = v->ratio * v->resource_factor; /* load / uncorrected share */
		break;
	}
	case PH_FILL: {
		const struct balance_backend_view *v = &plan->backends[sc->added];
		res->checks[INV_BALANCE_FILL]++;
		if (v->can_take && v->ratio >= 1 - h) {
			int64_t took = s->now - sc->phase_start;
			res->bal_filled++;
			res->bal_fill_ms_sum += took;
			if (took > res->bal_fill_ms_max)
				res->bal_fill_ms_max = took;
			res->bal_fill_moves_sum += res->balance_moves - sc->moves_at_phase;
			logf_(s, "balance scenario: backend %s filled to %.2f of its share in %.0f s",
			      s->backends[sc->added].name, v->ratio, took / 1000.0);
			sc->phase = PH_SETTLE;
			ev_push(s, s->now + 5 * 60000, EV_PHASE, 0, 0, 0, 0);
		} else if (s->now >= sc->deadline) {
			violation(s, INV_BALANCE_FILL,
				  "backend %s, added %.0f s ago, is at %.2f of "
				  "its share: %s",
				  s->backends[sc->added].name, (s->now - sc->phase_start) / 1000.0,
				  v->ratio, plan->summary);
		}
		break;
	}
	case PH_DRAIN: {
		unsigned left = groups_on(s, sc->drained);
		res->checks[INV_BALANCE_DRAIN]++;
		if (left == 0) {
			int64_t took = s->now - sc->phase_start;
			res->bal_drained++;
			res->bal_drain_ms_sum += took;
			if (took > res->bal_drain_ms_max)
				res->bal_drain_ms_max = took;
			res->bal_drain_moves_sum += res->balance_moves - sc->moves_at_phase;
			res->bal_drain_groups_sum += sc->drain_groups;
			logf_(s, "balance scenario: backend %s drained in %.0f s",
			      s->backends[sc->drained].name, took / 1000.0);
			sc->phase = PH_FINAL;
			ev_push(s, s->now + 10 * 60000, EV_PHASE, 0, 0, 0, 0);
		} else if (s->now >= sc->deadline) {
			violation(s, INV_BALANCE_DRAIN,
				  "backend %s, load factor 0 for %.0f s, still "
				  "has %u of its %u groups: %s",
				  s->backends[sc->drained].name,
				  (s->now - sc->phase_start) / 1000.0, left, sc->drain_groups,
				  plan->summary);
		}
		break;
	}
	case PH_SETTLE:
	case PH_FINAL:
		break;
	}
}

/* The balance scenario's next phase (EV_PHASE). */
static void scenario_phase(struct sim *s)
{
	struct scenario *sc = &s->sc;
	struct sim_result *res = s->res;
	switch (sc->phase) {
	case PH_STEADY:
		res->bal_steady_moves += res->balance_moves - sc->moves_at_phase;
		res->bal_steady_ms += s->now - sc->phase_start;
		/* one host gets slower (a noisy neighbour, a degraded disk): its
		 * CPU and IO are 35% busier for the same load */
		s->backends[sc->slow].slow_k = 1.35;
		s->bal_epoch++; /* not the users' load: no_balance_oscillation */
		logf_(s, "backend=%s slower from now on", s->backends[sc->slow].name);
		sc->phase = PH_SLOW;
		sc->phase_start = s->now;
		sc->moves_at_phase = res->balance_moves;
		ev_push(s, s->now + 15 * 60000, EV_PHASE, 0, 0, 0, 0);
		break;
	case PH_SLOW: {
		res->bal_slow_n++;
		res->bal_slow_factor_sum += sc->slow_factor;
		if (sc->slow_factor > res->bal_slow_factor_max)
			res->bal_slow_factor_max = sc->slow_factor;
		res->bal_slow_share_sum += sc->slow_share;
		res->bal_slow_moves += res->balance_moves - sc->moves_at_phase;
		/* a new backend: online, empty */
		struct backend *be = &s->backends[sc->added];
		be->op_status = BACKEND_STATUS_ONLINE;
		be->op_status_t = s->now;
		status_put(s, (unsigned)sc->added, BACKEND_STATUS_ONLINE);
		logf_(s, "operator backend=%s status=online (added)", be->name);
		sc->phase = PH_FILL;
		sc->phase_start = s->now;
		sc->moves_at_phase = res->balance_moves;
		sc->deadline = s->now + 20 * s->balance_interval;
		break;
	}
	case PH_SETTLE: {
		struct backend *be = &s->backends[sc->drained];
		be->load_factor = 0;
		sc->drain_groups = groups_on(s, sc->drained);
		logf_(s, "operator backend=%s load_factor=0 (drain %u groups)", be->name,
		      sc->drain_groups);
		sc->phase = PH_DRAIN;
		sc->phase_start = s->now;
		sc->moves_at_phase = res->balance_moves;
		/* a group that moved in recently may stay min_stay */
		sc->deadline = s->now + rounds_ms(s, sc->drain_groups, 10) + s->bs.min_stay_ms;
		break;
	}
	case PH_FINAL:
		res->bal_mm_end_sum += sc->mm_last;
		if (sc->mm_last > res->bal_mm_end_max)
			res->bal_mm_end_max = sc->mm_last;
		res->bal_virtual_ms += s->now;
		ev_push(s, s->now, EV_END, 0, 0, 0, 0);
		break;
	default:
		break;
	}
}

/* One balancing round, every balance_interval of the lease holder: the
 * inputs as the daemon's controller builds them, balance_plan(), and the
 * moves started through the move protocol (compare-and-set on the epoch the
 * controller sees). */
static void balance_round(struct sim *s, unsigned d)
{
	int64_t now = s->now;
	if (s->balance_holder != (int)d || s->balance_inc != s->lease_inc) {
		s->balance_holder = (int)d;
		s->balance_inc = s->lease_inc;
		s->balance_next = now + s->balance_interval;
	}
	if (now < s->balance_next)
		return;
	s->balance_next = now + s->balance_interval;

	struct balance_settings set = s->bs;
	if (brk(s, SIM_BREAK_BALANCE_NO_HYSTERESIS))
		set.hysteresis = 0;

	/* backends: the controller's view of status and mark (this tick's
	 * decision), load factor, resources */
	bool changed = s->disturbances > 0, corrected = true;
	s->disturbances = 0;
	for (unsigned b = 0; b < s->b; b++) {
		struct balance_backend *x = &s->bb[b];
		*x = (struct balance_backend){
			.name = s->backends[b].name,
			.status = s->fb[b].status,
			.mark = s->fb[b].mark,
			.load_factor = s->backends[b].load_factor,
			.resources = s->backends[b].res,
		};
		if (brk(s, SIM_BREAK_BALANCE_IGNORE_MARK)) {
			x->status = BACKEND_STATUS_ONLINE;
			x->mark = HEALTH_MARK_UP;
		}
		if (brk(s, SIM_BREAK_BALANCE_IGNORE_DRAIN) && x->load_factor == 0)
			x->load_factor = 100;
		bool up = x->status == BACKEND_STATUS_ONLINE && x->mark == HEALTH_MARK_UP;
		uint16_t sig = (uint16_t)(up ? 1000 + x->load_factor : 0);
		changed |= sig != s->bal_sig[b];
		s->bal_sig[b] = sig;
		if (up && x->load_factor > 0 && x->resources.samples < set.min_samples)
			corrected = false;
	}
	/* the targets change with anything but the users' load: a new epoch
	 * for no_balance_oscillation */
	changed |= corrected != s->bal_corrected;
	s->bal_corrected = corrected;
	if (changed)
		s->bal_epoch++;

	/* groups: the controller's view of the rows; a group it writes this
	 * tick, or that is moving, is left alone and counts where it goes */
	for (unsigned g = 0; g < s->g; g++) {
		const struct row *r = &s->crow[g];
		bool pending = s->pending[g] != 0;
		struct balance_group *x = &s->bg[g];
		*x = (struct balance_group){
			.group_id = g,
			.backend = pending ? s->fg[g].backend : r->move_to >= 0 ? r->move_to : r->backend,
			.weight = s->g_weight[g],
			.moved_at_ms = s->moved_at[g],
			.moving = pending || r->move_to >= 0,
		};
		memcpy(x->history, &s->hist[(size_t)g * BALANCE_HISTORY], sizeof(x->history));
		memcpy(x->history_left_ms, &s->hist_t[(size_t)g * BALANCE_HISTORY],
		       sizeof(x->history_left_ms));
	}

	struct balance_plan plan;
	if (balance_plan(&set, s->bb, s->b, s->bg, s->g, now, &plan) < 0) {
		fprintf(stderr, "sim: balance_plan failed\n");
		exit(2);
	}
	s->res->balance_rounds++;
	if (s->opt.verbose) {
		char line[2048];
		size_t len = 0;
		for (unsigned b = 0; b < s->b && len < sizeof(line) - 40; b++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %s=%.3f%s",
						s->backends[b].name, plan.backends[b].ratio,
						plan.backends[b].resource_factor != 1 ? "*" : "");
		logf_(s, "controller=d%u balance round: %s; ratios:%s", d, plan.summary, line);
	}
	if (s->opt.scenario == SIM_SCENARIO_BALANCE)
		scenario_round(s, &plan, set.hysteresis);

	for (size_t k = 0; k < plan.move_count && !s->stop; k++) {
		const struct balance_move *mv = &plan.moves[k];
		unsigned g = (unsigned)mv->group;
		int from = mv->from, to = mv->to;
		const struct row *r = &s->crow[g];

		/* balance_scope: what the controller sees, not what it passed */
		s->res->checks[INV_BALANCE_SCOPE]++;
		const struct failover_backend *f = &s->fb[from];
		if (f->status != BACKEND_STATUS_ONLINE || f->mark != HEALTH_MARK_UP ||
		    !failover_backend_can_take(&s->fb[to]) || to == from)
			violation(s, INV_BALANCE_SCOPE,
				  "balancing moves group %u from backend %s (%s, marked %s) to "
				  "backend %s (%s, marked %s, load factor %u)",
				  g, s->backends[from].name, backend_status_name(f->status),
				  health_mark_name(f->mark), s->backends[to].name,
				  backend_status_name(s->fb[to].status),
				  health_mark_name(s->fb[to].mark), s->fb[to].load_factor);
		else if (r->move_to >= 0 || s->pending[g] != 0 || r->backend != from ||
			 (s->moved_at[g] > 0 && now - s->moved_at[g] < set.min_stay_ms))
			violation(s, INV_BALANCE_SCOPE,
				  "balancing moves group %u (on %d, moving to %d, moved %.0f s "
				  "ago) from backend %s",
				  g, r->backend, r->move_to, (now - s->moved_at[g]) / 1000.0,
				  s->backends[from].name);

		/* no_balance_oscillation: not back to a backend it left by
		 * balancing while nothing but the users' load changed */
		bool drain = f->load_factor == 0;
		s->res->checks[INV_NO_BALANCE_OSCILLATION]++;
		for (unsigned i = 0; i < OSC_KEEP; i++) {
			size_t at = (size_t)g * OSC_KEEP + i;
			if (s->osc_b[at] != to)
				continue;
			if (s->osc_epoch[at] == s->bal_epoch && !drain)
				violation(
					s, INV_NO_BALANCE_OSCILLATION,
					"balancing moves group %u from backend %s back to backend "
					"%s, which it left by balancing %.0f s ago with nothing "
					"changed since but the users' load (%s)",
					g, s->backends[from].name, s->backends[to].name,
					(now - s->osc_t[at]) / 1000.0, mv->reason);
			else
				s->res->exempt[INV_NO_BALANCE_OSCILLATION]++;
			break;
		}
		if (s->stop)
			break;

		struct row w = *r;
		w.move_to = to;
		w.move_started = now;
		w.kind = ROW_START;
		w.reason = REASON_BALANCE;
		if (!row_cas(s, g, (int)d, r->epoch, &w))
			continue;
		s->move_begin[g] = now;
		s->res->balance_moves++;
		s->res->balance_warm += mv->warm;
		s->res->balance_drain_moves += drain;
		size_t at = (size_t)g * OSC_KEEP;
		memmove(&s->osc_b[at + 1], &s->osc_b[at], (OSC_KEEP - 1) * sizeof(*s->osc_b));
		memmove(&s->osc_epoch[at + 1], &s->osc_epoch[at],
			(OSC_KEEP - 1) * sizeof(*s->osc_epoch));
		memmove(&s->osc_t[at + 1], &s->osc_t[at], (OSC_KEEP - 1) * sizeof(*s->osc_t));
		s->osc_b[at] = from;
		s->osc_epoch[at] = s->bal_epoch;
		s->osc_t[at] = now;
		logf_(s, "controller=d%u group=%u move from=%s to=%s reason=balance (%s) epoch=%u",
		      d, g, s->backends[from].name, s->backends[to].name, mv->reason, w.epoch);
	}
	balance_plan_free(&plan);
}

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
		const struct geo_write *st = view_status(s, d, b);
		const struct geo_write *mk = view_mark(s, d, b);
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
			mark_put(s, b, (int)d, dec.mark);
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
		s->crow[g] = *view_row(s, d, g);
		s->fg[g] = (struct failover_group){
			.group_id = g, .backend = s->crow[g].backend, .alt_backend = s->crow[g].alt};
		failover_group_set_warm(&s->fg[g], &s->hist[(size_t)g * BALANCE_HISTORY],
					&s->hist_t[(size_t)g * BALANCE_HISTORY], BALANCE_HISTORY,
					now, BALANCE_METACACHE_TTL_MS_DEFAULT);
		s->pending[g] = 0;
		s->plan_from[g] = -1;
	}

	/* 1. the moves in progress: move_progress() on the acknowledgements the
	 * controller sees from the live daemons */
	for (unsigned g = 0; g < s->g; g++) {
		const struct row *r = &s->crow[g];
		if (r->move_to < 0)
			continue;
		unsigned acked = 0;
		for (unsigned e = 0; e < s->n; e++) {
			if (!s->live[e])
				continue;
			const struct geo_write *w =
				geo_read(&s->geo, &s->acks[(size_t)g * s->n + e], (int)d, now);
			acked += w != NULL && (uint32_t)w->value == r->epoch;
		}
		bool down = s->fb[r->backend].mark == HEALTH_MARK_DOWN;
		bool offline = s->fb[r->backend].status != BACKEND_STATUS_ONLINE;
		if (!failover_backend_can_take(&s->fb[r->move_to]) && !down && !offline) {
			/* the target went away (marked down, or taken offline by the
			 * operator) while its source still serves: cancel.  Daemons
			 * that saw the move let their held logins go to the source;
			 * those that did not never left it. */
			s->pending[g] = ROW_CANCEL;
			logf_(s,
			      "controller=d%u group=%u cancel from=%s to=%s reason=%s "
			      "(the target is %s, marked %s)",
			      d, g, s->backends[r->backend].name, s->backends[r->move_to].name,
			      reason_name(r->reason), backend_status_name(s->fb[r->move_to].status),
			      health_mark_name(s->fb[r->move_to].mark));
			continue;
		}
		struct move_view mv = {
			.started_ms = r->move_started,
			.from_down = down || (offline && brk(s, SIM_BREAK_OFFLINE_IS_DOWN)),
			.live = live_count,
			.acked = brk(s, SIM_BREAK_NO_ACK_WAIT) ? live_count : acked,
		};
		char reason[160];
		enum move_outcome out =
			move_progress(s->tm.move_timeout, &mv, now, reason, sizeof(reason));
		if (out == MOVE_WAIT)
			continue;
		s->pending[g] = out == MOVE_FINISH_ACKED     ? ROW_FINISH_ACKED
				: out == MOVE_FINISH_TIMEOUT ? ROW_FINISH_TIMEOUT
				: down                       ? ROW_FINISH_DOWN
							     : ROW_FINISH_DOWN_OFFLINE;
		s->fg[g].backend = r->move_to;
		logf_(s, "controller=d%u group=%u finish from=%s to=%s reason=%s outcome=%s (%s)",
		      d, g, s->backends[r->backend].name, s->backends[r->move_to].name,
		      reason_name(r->reason), move_outcome_name(out), reason);
	}

	/* 2. failover: groups of a backend marked down switch at once */
	size_t move_count, stranded;
	if (failover_plan(s->fb, s->b, s->fg, s->g, s->changes, &move_count, &stranded) < 0) {
		fprintf(stderr, "sim: failover_plan failed\n");
		exit(2);
	}
	for (size_t i = 0; i < move_count; i++) {
		const struct failover_change *m = &s->changes[i];
		unsigned g = (unsigned)m->group;
		if (s->crow[g].move_to >= 0 && s->pending[g] == 0)
			continue; /* moving, and its source is not down: cannot happen */
		struct move_view mv = {.started_ms = now, .from_down = true, .live = live_count};
		char reason[160];
		if (move_progress(s->tm.move_timeout, &mv, now, reason, sizeof(reason)) !=
		    MOVE_FINISH_DOWN) {
			fprintf(stderr, "sim: move_progress does not finish a move off a backend "
					"marked down\n");
			exit(2);
		}
		s->res->failover_moves++;
		bool could = false;
		for (unsigned w = 0; w < s->fg[g].warm_count; w++) {
			s->res->failover_warm += s->fg[g].warm[w] == m->backend;
			could |= failover_backend_can_take(&s->fb[s->fg[g].warm[w]]);
		}
		s->res->failover_warm_possible += could;
		s->plan_from[g] = s->fg[g].backend;
		s->fg[g].backend = m->backend;
		s->pending[g] = ROW_SWITCH;
	}
	if (stranded > 0)
		logf_(s, "controller=d%u stranded_groups=%zu", d, stranded);

	/* 3. alternatives (not of a group still moving: that would change its
	 * epoch under the daemons' acknowledgements) */
	size_t alt_count;
	if (failover_alternatives(s->fb, s->b, s->fg, s->g, FAILOVER_ALTERNATIVE_CHANGES_DEFAULT,
				  s->changes, &alt_count) < 0) {
		fprintf(stderr, "sim: failover_alternatives failed\n");
		exit(2);
	}
	for (size_t i = 0; i < alt_count; i++) {
		const struct failover_change *c = &s->changes[i];
		unsigned g = (unsigned)c->group;
		if (s->crow[g].move_to >= 0 && s->pending[g] == 0)
			continue;
		s->res->checks[INV_OPERATOR_STATUS]++;
		if (s->fb[c->backend].status != BACKEND_STATUS_ONLINE ||
		    c->backend == s->fg[g].backend)
			violation(s, INV_OPERATOR_STATUS,
				  "group %u got alternative %s, which is %s or its own backend", g,
				  s->backends[c->backend].name,
				  backend_status_name(s->fb[c->backend].status));
		s->fg[g].alt_backend = c->backend;
		if (s->pending[g] == 0)
			s->pending[g] = ROW_ALT;
		s->res->alt_changes++;
	}

	/* 4. one compare-and-set per group changed */
	for (unsigned g = 0; g < s->g && !s->stop; g++) {
		if (s->pending[g] == 0)
			continue;
		const struct row *r = &s->crow[g];
		struct row w = {
			.backend = s->fg[g].backend,
			.alt = s->fg[g].alt_backend,
			.move_to = -1,
			.kind = s->pending[g],
			.reason = s->pending[g] == ROW_SWITCH ? REASON_FAILOVER : r->reason,
		};
		if (w.kind == ROW_SWITCH && r->move_to < 0 &&
		    geo_head(&s->assign[g])->value == w.backend)
			continue; /* already there */
		uint32_t expected = r->epoch;
		if (!row_cas(s, g, (int)d, expected, &w))
			continue;
		if (r->move_to >= 0) {
			switch (s->pending[g] == ROW_SWITCH ? ROW_FINISH_DOWN : s->pending[g]) {
			case ROW_FINISH_ACKED:
				s->res->finish_acked++;
				break;
			case ROW_FINISH_TIMEOUT:
				s->res->finish_timeout++;
				break;
			case ROW_CANCEL:
				s->res->cancelled++;
				break;
			default:
				s->res->finish_down++;
				break;
			}
			if (now - r->move_started > s->res->max_move_ms)
				s->res->max_move_ms = now - r->move_started;
			/* an operator's placement: a later failover starts counting again */
			s->group_last_move_outage[g] = 0;
		}
		if (s->plan_from[g] >= 0)
			check_failover_move(s, d, g, (unsigned)s->plan_from[g], w.backend,
					    r->move_to >= 0);
		if (w.kind == ROW_SWITCH || w.kind == ROW_CANCEL)
			s->disturbances++;
		if (r->move_to >= 0 && r->reason == REASON_BALANCE && w.kind != ROW_CANCEL)
			s->res->moves_balance_finished++;
	}

	/* 5. balancing, every balance_interval */
	if (!s->stop)
		balance_round(s, d);
}

static void tick(struct sim *s, const struct event *e)
{
	unsigned d = (unsigned)e->a;
	struct daemon *dm = &s->daemons[d];
	if (!dm->alive || dm->inc != e->c)
		return;
	ev_push(s, s->now + s->tm.controller_tick, EV_TICK, (int)d, 0, 0, dm->inc);
	if (dm->partitioned)
		return; /* no heartbeat, no lease, no controller */
	geo_put(&s->geo, &s->hb[d], (int)d, s->now, 1, 0);
	if (dm->first_hb_pending) {
		/* every controller decision from now + R on counts it; one made
		 * before reaches its view by now + 2 R */
		dm->first_hb_pending = false;
		dm->serve_from = s->now + s->tm.ready_delay;
	}
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
		bool cut = dm->partitioned || dm->part_end >= window;
		if (dm->alive && dm->restarted_at < window && !cut)
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
		if (s->daemons[d].partitioned) {
			s->res->exempt[INV_SERVED_WITHIN_BOUND]++; /* its view is frozen */
			continue;
		}
		for (unsigned g = 0; g < s->g && !s->stop; g++) {
			const struct geo_write *then = geo_at(&s->assign[g], c0);
			const struct row *a = view_row(s, d, g);
			if (a->backend != (int32_t)x && (then == NULL || then->value != (int32_t)x))
				continue;
			/* a login of a moving group is held, then goes to move_to */
			struct failover_backend fb[2];
			int idx[2];
			int r = view_route(s, d, g, a->move_to, fb, idx);
			if (r >= 0 && idx[r] != (int)x) {
				/* served: unless failover moved it to a backend that
				 * every daemon had seen failing by then (P + J + T + R
				 * after that backend's crash), which the plan must
				 * avoid (where an operator's move sends it later is the
				 * operator's choice) */
				const struct backend *y = &s->backends[idx[r]];
				int64_t cy = y->crashed ? y->periods[y->period_count - 1].start : 0;
				int64_t margin = s->tm.probe_interval + s->tm.probe_jitter +
						 s->tm.probe_timeout + s->tm.repl_max;
				if (!y->crashed || a->move_to >= 0 ||
				    s->group_move_to[g] != idx[r] || s->group_move_t[g] < c0 ||
				    s->group_move_t[g] < cy + margin)
					continue;
				violation(s, INV_SERVED_WITHIN_BOUND,
					  "group %u of backend %s (dead since %.3f s) was moved at "
					  "%.3f s to backend %s, dead since %.3f s",
					  g, be->name, c0 / 1000.0, s->group_move_t[g] / 1000.0,
					  y->name, cy / 1000.0);
				continue;
			}
			if (r < 0 && a->backend != (int32_t)x &&
			    fb[0].status != BACKEND_STATUS_ONLINE)
				continue; /* its new backend is offline by the operator */
			violation(s, INV_SERVED_WITHIN_BOUND,
				  "backend %s dead since %.3f s (%.1f s, bound %.1f s): daemon d%u "
				  "routes group %u %s%s (assigned %s, mark %s, alternative %d)",
				  be->name, c0 / 1000.0, (s->now - c0) / 1000.0,
				  (takeover ? s->tm.bound_takeover : s->tm.bound) / 1000.0, d, g,
				  r < 0 ? "nowhere" : "to ", r < 0 ? "" : be->name,
				  s->backends[a->backend].name, health_mark_name(fb[0].mark),
				  idx[1]);
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

static bool is_lease_holder(const struct sim *s, unsigned d)
{
	return s->lease_holder == (int)d && s->lease_inc == s->daemons[d].inc &&
	       s->lease_expires > s->now;
}

static void daemon_crash(struct sim *s, unsigned d)
{
	struct daemon *dm = &s->daemons[d];
	bool is_holder = is_lease_holder(s, d);
	dm->alive = false;
	dm->inc++;
	dm->crashed_at = s->now;
	s->daemon_down = (int)d;
	if (is_holder && s->controller_crash_count < 16)
		s->controller_crashes[s->controller_crash_count++] = s->now;
	sessions_close_daemon(s, d);
	for (size_t i = 0; i < s->held_count; i++) {
		if (s->held[i].active && s->held[i].daemon == (int)d)
			held_drop(s, (int32_t)i); /* its clients lost their connections */
	}
	logf_(s, "fault daemon=d%u crashed%s", d, is_holder ? " holding the lease" : "");
	ev_push(s, s->now + rng_range(&s->rng, 5000, 120000), EV_DAEMON_RESTART, (int)d, 0, 0, 0);
}

/* d loses the GeoDB: it keeps serving from the view it has (the LocalDB). */
static void daemon_partition(struct sim *s, unsigned d)
{
	struct daemon *dm = &s->daemons[d];
	bool is_holder = is_lease_holder(s, d);
	for (unsigned g = 0; g < s->g; g++)
		s->snap_assign[g] = *geo_read(&s->geo, &s->assign[g], (int)d, s->now);
	for (unsigned b = 0; b < s->b; b++) {
		s->snap_mark[b] = *geo_read(&s->geo, &s->mark[b], (int)d, s->now);
		s->snap_status[b] = *geo_read(&s->geo, &s->status[b], (int)d, s->now);
	}
	dm->partitioned = true;
	dm->part_start = s->now;
	dm->heal_at = s->now + rng_range(&s->rng, 3000, 90000);
	s->partitioned = (int)d;
	s->daemon_down = (int)d;
	if (is_holder && s->controller_crash_count < 16)
		s->controller_crashes[s->controller_crash_count++] = s->now;
	s->res->partitions++;
	logf_(s, "fault daemon=d%u cut from the GeoDB until %.3f%s", d, dm->heal_at / 1000.0,
	      is_holder ? " holding the lease" : "");
	ev_push(s, dm->heal_at, EV_HEAL, (int)d, 0, 0, 0);
}

static void daemon_heal(struct sim *s, unsigned d)
{
	struct daemon *dm = &s->daemons[d];
	dm->partitioned = false;
	dm->part_end = s->now;
	/* its next heartbeat comes within C, the controller sees it within R
	 * more, and a decision made before that reaches it within R */
	dm->exempt_until = s->now + s->tm.controller_tick + s->tm.ready_delay;
	s->partitioned = -1;
	s->daemon_down = -1;
	logf_(s, "daemon=d%u back to the GeoDB", d);
	daemon_follow_all(s, d, true);
}

static void fault(struct sim *s)
{
	ev_push(s, s->now + rng_range(&s->rng, 20000, 100000), EV_FAULT, 0, 0, 0, 0);
	const struct timing *tm = &s->tm;
	int64_t short_max = tm->failover_delay - tm->early_slack - 1000;
	unsigned kind = (unsigned)rng_range(&s->rng, 0, 107);
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
		sessions_close_backend(s, (unsigned)b, (int)d, true);
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
		if (!s->daemons[d].alive)
			return;
		daemon_crash(s, d);
	} else if (kind < 100) { /* the operator sets a backend offline or standby */
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
	} else { /* a daemon cut off from the GeoDB; often the controller */
		if (s->daemon_down >= 0)
			return;
		unsigned d;
		if (kind < 104 && s->lease_holder >= 0 && s->lease_expires > s->now)
			d = (unsigned)s->lease_holder;
		else
			d = (unsigned)rng_range(&s->rng, 0, s->n - 1);
		if (!s->daemons[d].alive || s->now < s->daemons[d].serve_from)
			return;
		daemon_partition(s, d);
	}
}

static void operator_set(struct sim *s, const struct event *e)
{
	struct backend *be = &s->backends[e->b];
	be->op_status = (enum backend_status)e->x;
	be->op_status_t = s->now;
	status_put(s, (unsigned)e->b, e->x);
	if (e->c == 1)
		be->op_busy = false;
	logf_(s, "operator backend=%s status=%s", be->name, backend_status_name(be->op_status));
}

static void daemon_restart(struct sim *s, unsigned d)
{
	struct daemon *dm = &s->daemons[d];
	dm->alive = true;
	dm->restarted_at = s->now;
	dm->first_hb_pending = true;
	dm->serve_from = INT64_MAX;
	s->daemon_down = -1;
	for (unsigned b = 0; b < s->b; b++) {
		dm->has_streak[b] = false;
		ev_push(s, s->now + rng_range(&s->rng, 0, s->tm.probe_interval), EV_PROBE_START,
			(int)d, (int)b, 0, dm->inc);
	}
	ev_push(s, s->now + rng_range(&s->rng, 0, s->tm.controller_tick), EV_TICK, (int)d, 0, 0,
		dm->inc);
	/* a new process: no sessions, nothing handled; it acknowledges every
	 * move it sees */
	memset(dm->handled, 0, s->g * sizeof(*dm->handled));
	daemon_follow_all(s, d, false);
	logf_(s, "daemon=d%u restarted", d);
}

/* ---- the operator: group move, backend evacuate ---- */

/* The CLI's start of a move: reads the row at quorum (the head) and
 * compare-and-sets it. */
static bool operator_start_move(struct sim *s, unsigned g, int target, unsigned reason)
{
	const struct row *h = head_row(s, g);
	if (h->move_to >= 0 || target < 0 || target == h->backend)
		return false;
	struct row w = *h;
	w.move_to = target;
	w.move_started = s->now;
	w.kind = ROW_START;
	w.reason = (uint8_t)reason;
	int from = h->backend;
	if (!row_cas(s, g, GEO_WRITER_OPERATOR, h->epoch, &w))
		return false;
	s->move_begin[g] = s->now;
	s->disturbances++;
	logf_(s, "operator group=%u move from=%s to=%s reason=%s epoch=%u", g,
	      s->backends[from].name, s->backends[target].name, reason_name(reason), w.epoch);
	return true;
}

static void operator_move(struct sim *s)
{
	ev_push(s, s->now + rng_range(&s->rng, 5000, 60000), EV_OP_MOVE, 0, 0, 0, 0);
	unsigned g = (unsigned)rng_range(&s->rng, 0, s->g - 1);
	const struct row *h = head_row(s, g);
	if (h->move_to >= 0)
		return; /* "group 7 is already moving" */
	for (int tries = 0; tries < 8; tries++) {
		unsigned b = (unsigned)rng_range(&s->rng, 0, s->b - 1);
		if ((int)b == h->backend || !head_can_take(s, b))
			continue;
		if (operator_start_move(s, g, (int)b, REASON_OPERATOR))
			s->res->moves_operator++;
		return;
	}
}

/* The groups still on the backend being evacuated; how many. */
static size_t evacuate_collect(struct sim *s, unsigned b)
{
	s->evac_count = 0;
	s->evac_pos = 0;
	for (unsigned g = 0; g < s->g; g++) {
		if (head_row(s, g)->backend == (int)b)
			s->evac_groups[s->evac_count++] = g;
	}
	return s->evac_count;
}

static void evacuate(struct sim *s)
{
	ev_push(s, s->now + rng_range(&s->rng, 180000, 900000), EV_EVACUATE, 0, 0, 0, 0);
	if (s->evac_backend >= 0)
		return;
	unsigned b = (unsigned)rng_range(&s->rng, 0, s->b - 1);
	if (evacuate_collect(s, b) == 0)
		return;
	s->evac_backend = (int)b;
	s->evac_rate = (unsigned)rng_range(&s->rng, MOVE_RATE_DEFAULT, 4);
	s->evac_since = s->now;
	s->evac_started = 0;
	s->evac_pass = 1;
	s->res->evacuations++;
	logf_(s, "operator backend=%s evacuate groups=%zu move_rate=%u", s->backends[b].name,
	      s->evac_count, s->evac_rate);
	ev_push(s, s->now, EV_EVAC_STEP, 0, 0, 0, 0);
}

/* Where an evacuated group goes: its alternative, or the least loaded
 * backend that can take it. */
static int evacuate_target(struct sim *s, unsigned g, unsigned from)
{
	const struct row *h = head_row(s, g);
	if (h->alt >= 0 && h->alt != (int)from && head_can_take(s, (unsigned)h->alt))
		return h->alt;
	struct placement_candidate *pc = xcalloc(s->b, sizeof(*pc));
	for (unsigned b = 0; b < s->b; b++) {
		pc[b].name = s->backends[b].name;
		pc[b].load_factor = s->backends[b].load_factor;
		pc[b].status = head_can_take(s, b) ? BACKEND_STATUS_ONLINE : BACKEND_STATUS_OFFLINE;
	}
	for (unsigned i = 0; i < s->g; i++)
		pc[head_row(s, i)->backend].assigned_groups++;
	int target = placement_choose_alternative(pc, s->b, from, g);
	free(pc);
	return target;
}

static void evacuate_step(struct sim *s)
{
	unsigned from = (unsigned)s->evac_backend;
	unsigned allowance =
		move_rate_allowance(s->evac_rate, s->evac_since, s->evac_started, s->now);
	while (allowance > 0 && s->evac_pos < s->evac_count) {
		unsigned g = s->evac_groups[s->evac_pos++];
		const struct row *h = head_row(s, g);
		if (h->backend != (int)from || h->move_to >= 0)
			continue; /* gone already, or moving */
		if (operator_start_move(s, g, evacuate_target(s, g, from), REASON_EVACUATE)) {
			s->evac_started++;
			s->res->moves_evacuate++;
			allowance--;
		}
	}
	/* groups that were moving, or whose move was cancelled, or that came
	 * back by failover: another pass, a few times (then the operator looks) */
	if (s->evac_pos == s->evac_count && s->evac_pass < 3 && evacuate_collect(s, from) > 0)
		s->evac_pass++;
	if (s->evac_pos < s->evac_count) {
		ev_push(s, s->now + 250, EV_EVAC_STEP, 0, 0, 0, 0);
		return;
	}
	logf_(s, "operator backend=%s evacuated moves=%llu", s->backends[from].name,
	      (unsigned long long)s->evac_started);
	s->evac_backend = -1;
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
	tm->move_timeout = MOVE_TIMEOUT_MS_DEFAULT;
	tm->session_mean = 600000;
	tm->ready_delay = 2 * tm->repl_max;
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

	bool balance = s->opt.scenario == SIM_SCENARIO_BALANCE;
	s->rng.state = s->opt.seed;
	s->load_rng.state = s->opt.seed ^ 0x6c6f616420726e67ULL;
	geo_init(&s->geo, s->opt.seed, tm->repl_max);
	s->n = s->opt.daemons ? s->opt.daemons : (unsigned)rng_range(&s->rng, 2, 5);
	/* the balance scenario has one more backend, added later */
	unsigned initial = s->opt.backends ? s->opt.backends : (unsigned)rng_range(&s->rng, 3, 12);
	s->b = balance ? initial + 1 : initial;
	s->g = 100 * initial;
	s->users = s->opt.users;
	s->end = balance ? 6 * 3600000LL : (int64_t)(s->opt.hours * 3600000.0);

	/* balancing: the defaults, but group_min_stay 5 min (so that a group
	 * can move several times in a run: no_balance_oscillation is then
	 * about the plan, not about min_stay) and balance_max_moves one per
	 * backend on sites of more than 10 */
	balance_settings_init(&s->bs);
	s->bs.min_stay_ms = 5 * 60000;
	if (initial > s->bs.max_moves)
		s->bs.max_moves = initial;
	s->scrape_interval = 10000;
	s->balance_interval = BALANCE_INTERVAL_MS_DEFAULT;
	s->weight_tau = 30 * 60000;
	s->resource_tau = 5 * 60000;
	s->balance_holder = -1;
	s->user_w = xcalloc(s->users, sizeof(*s->user_w));
	s->g_load = xcalloc(s->g, sizeof(*s->g_load));
	s->g_acc = xcalloc(s->g, sizeof(*s->g_acc));
	s->g_t = xcalloc(s->g, sizeof(*s->g_t));
	s->g_weight = xcalloc(s->g, sizeof(*s->g_weight));
	s->moved_at = xcalloc(s->g, sizeof(*s->moved_at));
	s->hist = xcalloc((size_t)s->g * BALANCE_HISTORY, sizeof(*s->hist));
	s->hist_t = xcalloc((size_t)s->g * BALANCE_HISTORY, sizeof(*s->hist_t));
	for (size_t i = 0; i < (size_t)s->g * BALANCE_HISTORY; i++)
		s->hist[i] = -1;
	s->osc_b = xcalloc((size_t)s->g * OSC_KEEP, sizeof(*s->osc_b));
	s->osc_epoch = xcalloc((size_t)s->g * OSC_KEEP, sizeof(*s->osc_epoch));
	s->osc_t = xcalloc((size_t)s->g * OSC_KEEP, sizeof(*s->osc_t));
	for (size_t i = 0; i < (size_t)s->g * OSC_KEEP; i++)
		s->osc_b[i] = -1;
	s->bal_sig = xcalloc(s->b, sizeof(*s->bal_sig));
	s->bb = xcalloc(s->b, sizeof(*s->bb));
	s->bg = xcalloc(s->g, sizeof(*s->bg));
	s->lease_holder = -1;
	s->daemon_down = -1;
	s->partitioned = -1;
	s->evac_backend = -1;
	s->pool_free = -1;
	s->held_free = -1;
	int64_t t0 = -tm->repl_max - 1; /* initial writes: visible everywhere at 0 */

	s->backends = xcalloc(s->b, sizeof(*s->backends));
	s->status = xcalloc(s->b, sizeof(*s->status));
	s->mark = xcalloc(s->b, sizeof(*s->mark));
	s->backend_head = xcalloc(s->b, sizeof(*s->backend_head));
	bool lf_zero = !balance && s->b >= 5 && rng_range(&s->rng, 0, 2) == 0;
	for (unsigned b = 0; b < s->b; b++) {
		struct backend *be = &s->backends[b];
		snprintf(be->name, sizeof(be->name), "b%u", b);
		be->load_factor = rng_range(&s->rng, 0, 1) ? 100 : 50;
		if (lf_zero && b == s->b - 1)
			be->load_factor = 0;
		be->op_status = BACKEND_STATUS_ONLINE;
		if (balance && b == initial) {
			/* the backend added later: known, but standby (no groups) */
			be->op_status = BACKEND_STATUS_STANDBY;
			be->load_factor = 100;
		}
		be->op_status_t = t0;
		be->slow_k = 1;
		geo_put(&s->geo, &s->status[b], GEO_WRITER_OPERATOR, t0, be->op_status, 0);
		geo_put(&s->geo, &s->mark[b], GEO_WRITER_OPERATOR, t0, HEALTH_MARK_UP, t0);
		s->backend_head[b] = -1;
	}

	s->assign = xcalloc(s->g, sizeof(*s->assign));
	s->group_last_move_outage = xcalloc(s->g, sizeof(*s->group_last_move_outage));
	s->group_move_t = xcalloc(s->g, sizeof(*s->group_move_t));
	s->group_move_to = xcalloc(s->g, sizeof(*s->group_move_to));
	s->fb = xcalloc(s->b, sizeof(*s->fb));
	s->fg = xcalloc(s->g, sizeof(*s->fg));
	s->changes = xcalloc(s->g, sizeof(*s->changes));
	s->crow = xcalloc(s->g, sizeof(*s->crow));
	s->pending = xcalloc(s->g, sizeof(*s->pending));
	s->plan_from = xcalloc(s->g, sizeof(*s->plan_from));
	s->move_begin = xcalloc(s->g, sizeof(*s->move_begin));
	s->evac_groups = xcalloc(s->g, sizeof(*s->evac_groups));
	s->snap_assign = xcalloc(s->g, sizeof(*s->snap_assign));
	s->snap_mark = xcalloc(s->b, sizeof(*s->snap_mark));
	s->snap_status = xcalloc(s->b, sizeof(*s->snap_status));
	s->group_head = xcalloc(s->g, sizeof(*s->group_head));
	struct placement_candidate *pc = xcalloc(s->b, sizeof(*pc));
	for (unsigned b = 0; b < s->b; b++) {
		/* the balance scenario starts skewed: the groups placed as if
		 * the load factors were 0.3, 1 or 2.5 times what they are */
		unsigned lf = s->backends[b].load_factor;
		if (balance) {
			static const unsigned skew[4] = {30, 100, 100, 250};
			lf = lf * skew[rng_range(&s->rng, 0, 3)] / 100;
		}
		pc[b] = (struct placement_candidate){s->backends[b].name,
						     s->backends[b].op_status, lf, 0, false, 0};
		s->fb[b] = (struct failover_backend){s->backends[b].name,
						     s->backends[b].op_status,
						     s->backends[b].load_factor, HEALTH_MARK_UP,
						     false};
	}
	for (unsigned g = 0; g < s->g; g++) {
		int b = placement_choose_backend(pc, s->b, g);
		pc[b].assigned_groups++;
		s->fg[g] = (struct failover_group){.group_id = g, .backend = b, .alt_backend = -1};
		s->group_head[g] = -1;
	}
	free(pc);
	size_t count;
	if (failover_alternatives(s->fb, s->b, s->fg, s->g, s->g, s->changes, &count) < 0)
		exit(2);
	for (size_t i = 0; i < count; i++)
		s->fg[s->changes[i].group].alt_backend = s->changes[i].backend;
	for (unsigned g = 0; g < s->g; g++) {
		struct row r = {
			.backend = s->fg[g].backend,
			.alt = s->fg[g].alt_backend,
			.move_to = -1,
			.epoch = 1,
			.kind = ROW_INITIAL,
		};
		row_put(s, g, GEO_WRITER_OPERATOR, t0, &r, false);
	}

	s->daemons = xcalloc(s->n, sizeof(*s->daemons));
	s->obs = xcalloc((size_t)s->n * s->b, sizeof(*s->obs));
	s->hb = xcalloc(s->n, sizeof(*s->hb));
	s->acks = xcalloc((size_t)s->n * s->g, sizeof(*s->acks));
	s->live = xcalloc(s->n, sizeof(*s->live));
	s->hobs = xcalloc(s->n, sizeof(*s->hobs));
	for (unsigned d = 0; d < s->n; d++) {
		struct daemon *dm = &s->daemons[d];
		dm->alive = true;
		dm->restarted_at = INT64_MIN;
		dm->crashed_at = INT64_MIN;
		dm->part_start = dm->part_end = dm->heal_at = INT64_MIN;
		dm->serve_from = INT64_MIN;
		dm->exempt_until = INT64_MIN;
		dm->cut_backend = -1;
		dm->has_streak = xcalloc(s->b, sizeof(bool));
		dm->streak_ok = xcalloc(s->b, sizeof(bool));
		dm->streak_since = xcalloc(s->b, sizeof(int64_t));
		dm->handled = xcalloc(s->g, sizeof(*dm->handled));
		dm->seen_ms = xcalloc(s->g, sizeof(*dm->seen_ms));
		for (unsigned b = 0; b < s->b; b++)
			ev_push(s, rng_range(&s->rng, 0, tm->probe_interval), EV_PROBE_START,
				(int)d, (int)b, 0, 0);
		ev_push(s, rng_range(&s->rng, 0, tm->controller_tick), EV_TICK, (int)d, 0, 0, 0);
	}

	/* users: what one session of each costs a backend, heavy-tailed
	 * (Pareto, alpha 1.5, from 1 to 30: a few users with large mailboxes
	 * and many clients weigh as much as dozens of others) */
	s->user_group = xcalloc(s->users, sizeof(*s->user_group));
	s->user_head = xcalloc(s->users, sizeof(*s->user_head));
	double expected = 0;
	for (unsigned u = 0; u < s->users; u++) {
		char name[48];
		snprintf(name, sizeof(name), "user%u@example.org", u);
		s->user_group[u] = user_hash_group(name, s->g);
		s->user_head[u] = -1;
		double w = pow(1.0 - rng_double(&s->load_rng), -1 / 1.5);
		s->user_w[u] = (uint32_t)((w < 30 ? w : 30) * 1000 + 0.5);
		expected += s->user_w[u] / 1000.0; /* one session per user on average */
	}
	/* a backend's CPU is half busy at its share of the expected load */
	unsigned lf_sum = 0;
	for (unsigned b = 0; b < initial; b++)
		lf_sum += s->backends[b].load_factor;
	for (unsigned b = 0; b < s->b; b++) {
		unsigned lf = s->backends[b].load_factor ? s->backends[b].load_factor : 100;
		s->backends[b].capacity = expected * lf / (lf_sum ? lf_sum : 100) / 0.5;
	}

	ev_push(s, 0, EV_LOGIN, 0, 0, 0, 0);
	ev_push(s, s->scrape_interval, EV_SCRAPE, 0, 0, 0, 0);
	ev_push(s, s->end, EV_END, 0, 0, 0, 0);
	if (balance) {
		struct scenario *sc = &s->sc;
		sc->phase = PH_CONVERGE;
		sc->added = (int)initial;
		sc->slow = (int)rng_range(&s->rng, 0, initial - 1);
		sc->drained = (int)rng_range(&s->rng, 0, initial - 1);
		/* the weights as the daemons have reported them for a while:
		 * their long-run average, one session per user */
		for (unsigned u = 0; u < s->users; u++)
			s->g_weight[s->user_group[u]] += s->user_w[u] / 1000.0;
		s->weights_init = true;
		/* the users' sessions as they are at any moment (each user logs
		 * in every 10 min on average and stays 10 min: Poisson, mean 1),
		 * so that the skew is there from the start */
		for (unsigned u = 0; u < s->users; u++) {
			double l = exp(-1.0), p = rng_double(&s->rng);
			unsigned k = 0;
			while (p > l && k < 10) {
				p *= rng_double(&s->rng);
				k++;
			}
			unsigned g = s->user_group[u];
			for (unsigned i = 0; i < k; i++)
				session_open(s, u, g, (unsigned)head_row(s, g)->backend,
					     (unsigned)rng_range(&s->rng, 0, s->n - 1));
		}
		return;
	}
	ev_push(s, rng_range(&s->rng, 30000, 90000), EV_FAULT, 0, 0, 0, 0);
	ev_push(s, rng_range(&s->rng, 5000, 60000), EV_OP_MOVE, 0, 0, 0, 0);
	ev_push(s, rng_range(&s->rng, 60000, 600000), EV_EVACUATE, 0, 0, 0, 0);
	/* the operator drains a backend (load factor 0) for a while */
	int drained = (int)rng_range(&s->rng, 0, s->b - 1);
	if (s->b >= 4 && s->backends[drained].load_factor > 0) {
		int64_t t = rng_range(&s->rng, 5 * 60000, 20 * 60000);
		ev_push(s, t, EV_LOAD_FACTOR, 0, drained, 0, 0);
		ev_push(s, t + rng_range(&s->rng, 5 * 60000, 15 * 60000), EV_LOAD_FACTOR, 0,
			drained, (int)s->backends[drained].load_factor, 0);
	}
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
		free(s->daemons[d].handled);
		free(s->daemons[d].seen_ms);
	}
	free(s->backends);
	free(s->daemons);
	free(s->status);
	free(s->mark);
	free(s->assign);
	free(s->acks);
	free(s->rows);
	free(s->obs);
	free(s->hb);
	free(s->group_last_move_outage);
	free(s->group_move_t);
	free(s->group_move_to);
	free(s->user_group);
	free(s->user_head);
	free(s->group_head);
	free(s->backend_head);
	free(s->pool);
	free(s->held);
	free(s->heap);
	free(s->live);
	free(s->hobs);
	free(s->fb);
	free(s->fg);
	free(s->changes);
	free(s->crow);
	free(s->pending);
	free(s->plan_from);
	free(s->move_begin);
	free(s->evac_groups);
	free(s->snap_assign);
	free(s->snap_mark);
	free(s->snap_status);
	free(s->user_w);
	free(s->g_load);
	free(s->g_acc);
	free(s->g_t);
	free(s->g_weight);
	free(s->moved_at);
	free(s->hist);
	free(s->hist_t);
	free(s->osc_b);
	free(s->osc_epoch);
	free(s->osc_t);
	free(s->bal_sig);
	free(s->bb);
	free(s->bg);
}

void sim_run(const struct sim_options *options, struct sim_result *result_r)
{
	struct sim sim = {.opt = *options, .res = result_r};
	struct sim *s = &sim;
	memset(result_r, 0, sizeof(*result_r));
	setup(s);
	if (s->opt.verbose)
		printf("seed %llu scenario=%s daemons=%u backends=%u groups=%u users=%u\n",
		       (unsigned long long)s->opt.seed,
		       s->opt.scenario == SIM_SCENARIO_BALANCE ? "balance" : "faults", s->n, s->b,
		       s->g, s->users);

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
		case EV_SEE:
			see(s, &e);
			break;
		case EV_ACK:
			ack(s, &e);
			break;
		case EV_SESSION_END:
			if (s->pool[e.a].open && s->pool[e.a].gen == e.c)
				session_close(s, e.a, false);
			break;
		case EV_RELOGIN:
			login_user(s, (unsigned)e.a);
			break;
		case EV_HOLD_END:
			held_end(s, &e);
			break;
		case EV_RECHECK:
			check_user(s, (unsigned)e.a);
			break;
		case EV_OP_MOVE:
			operator_move(s);
			break;
		case EV_EVACUATE:
			evacuate(s);
			break;
		case EV_EVAC_STEP:
			evacuate_step(s);
			break;
		case EV_HEAL:
			daemon_heal(s, (unsigned)e.a);
			break;
		case EV_SCRAPE:
			scrape(s);
			break;
		case EV_LOAD_FACTOR:
			s->backends[e.b].load_factor = (unsigned)e.x;
			logf_(s, "operator backend=%s load_factor=%d", s->backends[e.b].name, e.x);
			break;
		case EV_PHASE:
			scenario_phase(s);
			break;
		}
		if (s->geo.overflow && !s->stop) {
			printf("seed %llu step %llu: simulator error: a GeoDB cell overflowed\n",
			       (unsigned long long)s->opt.seed, (unsigned long long)s->step);
			s->res->sim_error = s->res->failed = true;
			s->stop = true;
		}
	}
	if (s->opt.scenario == SIM_SCENARIO_BALANCE && !s->stop && s->sc.phase != PH_FINAL)
		violation(s, INV_BALANCE_CONVERGES, "still in phase %d at the end of the run",
			  (int)s->sc.phase);
	result_r->steps = s->step;
	teardown(s);
}
