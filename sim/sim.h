/* sim.h - the deterministic simulator's shared pieces.
 *
 * The simulator (sim.c) runs one site: N daemons probing B backends, one of
 * them holding the controller lease and running the very same brain code the
 * daemon runs (brain/health.h, brain/failover.h, brain/move.h,
 * brain/balance.h), users logging in through random daemons and keeping
 * sessions open (each user weighs what its sessions cost a backend), groups
 * moved by the operator, by evacuations, by failover and by balancing, and
 * injected faults, all in virtual milliseconds.  Three scenarios per seed:
 * "faults" (the failover and move protocol under faults, with balancing on),
 * "balance" (no faults: a skewed start, steady noisy load, a backend
 * added, one drained; it measures the balancing) and "sites" (sites.c: 2-3
 * sites with their own GeoDB replicas, cut apart and healed, whole sites
 * failing over gradually and back: brain/site.h).  Every
 * random choice comes from one seeded generator (rng below), and the GeoDB's
 * replication delays from a hash of the seed (geo.c), so the same seed gives
 * the same run, event by event.
 *
 *   rng      splitmix64: a seed in, a stream of 64-bit numbers out
 *   geo.c    the GeoDB model: cells with last-write-wins versions whose
 *            visibility to each daemon is delayed by up to repl_max_ms
 *   sim.c    the world, the events, the controller glue and the invariants
 *   sites.c  the sites scenario: its own world, replicas and invariants
 *   main.c   command line, seed loop, worker processes, the summary
 */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- rng ---- */

struct rng {
	uint64_t state;
};

static inline uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rng_next(struct rng *rng)
{
	return splitmix64(&rng->state);
}

/* uniform in [lo, hi] */
static inline int64_t rng_range(struct rng *rng, int64_t lo, int64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + (int64_t)(rng_next(rng) % (uint64_t)(hi - lo + 1));
}

/* uniform in [0, 1) */
static inline double rng_double(struct rng *rng)
{
	return (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- the GeoDB model (geo.c) ----
 *
 * A cell is one GeoDB value (a backend's mark, a group's assignment, one
 * daemon's observation of one backend, ...).  Each write gets a global
 * sequence number; daemon d sees write w from w.t + delay(w.seq, d) on, where
 * delay is in [0, repl_max_ms] (0 for the writer itself: a daemon reads its
 * own writes).  A read returns the newest write (by write time: Cassandra's
 * last-write-wins) that has reached the reader, so a view may miss recent
 * writes but never goes backwards past a write older than repl_max_ms. */

#define GEO_VERSIONS 4 /* versions kept per cell; older ones are visible everywhere */
#define GEO_WRITER_OPERATOR (-1)

struct geo_write {
	int64_t t;   /* write time */
	int64_t aux; /* a second value: a mark's since, an observation's since */
	uint32_t seq;
	int32_t value;
	int16_t writer; /* daemon index, or GEO_WRITER_OPERATOR */
};

struct geo_cell {
	struct geo_write w[GEO_VERSIONS]; /* newest first */
	uint8_t count;
};

struct geo {
	uint64_t delay_seed;
	int64_t repl_max_ms;
	uint32_t seq;
	bool overflow; /* a cell had to drop a version not yet visible everywhere */
};

void geo_init(struct geo *geo, uint64_t seed, int64_t repl_max_ms);
void geo_put(struct geo *geo, struct geo_cell *cell, int writer, int64_t now, int32_t value,
	     int64_t aux);
/* The newest write daemon `reader` sees at now, or NULL. */
const struct geo_write *geo_read(const struct geo *geo, const struct geo_cell *cell, int reader,
				 int64_t now);
/* The newest write made at or before t (the authoritative value at t), or NULL. */
const struct geo_write *geo_at(const struct geo_cell *cell, int64_t t);
/* The newest write of all (the authoritative value now), or NULL. */
const struct geo_write *geo_head(const struct geo_cell *cell);
int64_t geo_delay(const struct geo *geo, uint32_t seq, int reader);

/* ---- one simulation (sim.c) ---- */

/* Deliberate breaks of the move protocol's glue (--break NAME), to show
 * that the invariants catch them: a run with a break is expected to fail. */
enum sim_break {
	SIM_BREAK_NO_MOVE_KICK = 1 << 0,    /* daemons ack a move without closing sessions */
	SIM_BREAK_NO_ROUTE_KICK = 1 << 1,   /* daemons keep sessions off their changed route */
	SIM_BREAK_NO_HOLD = 1 << 2,         /* logins of a moving group go to the old backend */
	SIM_BREAK_NO_ACK_WAIT = 1 << 3,     /* the controller finishes moves without acks */
	SIM_BREAK_NO_READY = 1 << 4,        /* a restarted daemon takes logins at once */
	SIM_BREAK_NO_DEADLINE = 1 << 5,     /* held logins wait for the switch, however long */
	SIM_BREAK_OFFLINE_IS_DOWN = 1 << 6, /* an offline source finishes a move at once */
	/* balancing's glue (brain/balance.c itself is broken by editing it) */
	SIM_BREAK_BALANCE_NO_HYSTERESIS = 1 << 7, /* balance_hysteresis 0 */
	SIM_BREAK_BALANCE_IGNORE_MARK = 1 << 8,   /* backends passed as online and up */
	SIM_BREAK_BALANCE_NO_SMOOTHING = 1 << 9,  /* group weights: the last 10 s only */
	SIM_BREAK_BALANCE_IGNORE_DRAIN = 1 << 10, /* load factor 0 passed as 100 */
	/* site failover's glue (the sites scenario) */
	SIM_BREAK_SITE_NEVER_VOID = 1 << 11,        /* no heartbeat rows: no cell is ever void */
	SIM_BREAK_SITE_NO_RATE = 1 << 12,           /* every group at once */
	SIM_BREAK_SITE_NO_STOP = 1 << 13,           /* a failover goes on when the site is back */
	SIM_BREAK_SITE_NO_FAILBACK_DELAY = 1 << 14, /* site_failback_delay 0 */
	SIM_BREAK_SITE_IGNORE_REPORTS = 1 << 15,    /* other sites' reachability not read */
	SIM_BREAK_SITE_IGNORE_STATUS = 1 << 16,     /* the home site's status passed as online */
	SIM_BREAK_SITE_MERGE_PIECEMEAL = 1 << 17,   /* routes follow each replayed write */
	SIM_BREAK_SITE_NO_SETTLE = 1 << 18,         /* routing uses cells it cannot judge yet */
};
struct sim_break_name {
	const char *name;
	unsigned flag;
	const char *what;
};
extern const struct sim_break_name sim_break_names[];

enum sim_scenario {
	SIM_SCENARIO_FAULTS = 1 << 0,
	SIM_SCENARIO_BALANCE = 1 << 1,
	SIM_SCENARIO_SITES = 1 << 2,
};

struct sim_options {
	uint64_t seed;
	unsigned scenario; /* one enum sim_scenario for sim_run(); main takes a mask */
	unsigned daemons;  /* 0: chosen by the seed, 2..5 */
	unsigned backends; /* 0: chosen by the seed, 3..12 */
	unsigned users;
	double hours; /* the faults scenario's length; the balance scenario runs its phases */
	bool verbose;
	unsigned breaks; /* enum sim_break flags; 0 in every real run */
};

enum sim_invariant {
	INV_NO_EARLY_FAILOVER,
	INV_SERVED_WITHIN_BOUND,
	INV_ONE_MOVE_PER_OUTAGE,
	INV_OPERATOR_STATUS,
	INV_NO_LOGIN_TO_DOWN,
	INV_NO_EARLY_RECOVERY,
	INV_NO_TWO_BACKENDS,
	INV_LOGIN_WAIT_BOUND,
	INV_BALANCE_SCOPE,
	INV_NO_BALANCE_OSCILLATION,
	INV_BALANCE_CONVERGES,
	INV_BALANCE_MOVES_BOUND,
	INV_BALANCE_FILL,
	INV_BALANCE_DRAIN,
	INV_SITE_FAILOVER_RATE,
	INV_SITE_SHORT_CUT,
	INV_SITE_STOP_ON_RETURN,
	INV_SITE_FAILBACK_DELAY,
	INV_SITE_CONVERGED,
	INV_SITE_MERGE_ONCE,
	INV_SITE_OPERATOR_STATUS,
	INV_SITE_EVACUATE,
	INV_COUNT
};

extern const char *const sim_invariant_names[INV_COUNT];

struct sim_result {
	bool failed;
	bool sim_error; /* the simulator itself gave up (not an invariant) */
	uint64_t checks[INV_COUNT];
	uint64_t violations[INV_COUNT];
	uint64_t exempt[INV_COUNT];
	uint64_t steps, logins, logins_ok, logins_failed, logins_unavailable;
	uint64_t marks_down, marks_up, moves, alt_changes, takeovers;
	uint64_t outages_long, outages_short, faults;
	int64_t max_served_ms; /* worst measured time from crash to all groups served */
	/* sessions and the move protocol */
	uint64_t sessions, kicks, relogins, logins_held, logins_reheld, partitions;
	uint64_t moves_operator, moves_evacuate, evacuations, cas_failed;
	uint64_t finish_acked, finish_down, finish_timeout, cancelled;
	/* exempt no_two_backends conflicts by class (one may have several) */
	uint64_t two_backends_mark, two_backends_row, two_backends_cut;
	int64_t max_hold_ms; /* longest a login was held */
	int64_t max_move_ms; /* longest from a move's start to its finish */
	/* balancing, both scenarios */
	uint64_t balance_rounds, balance_moves, balance_warm, balance_drain_moves;
	uint64_t moves_balance_finished;
	/* failover moves, and those to a backend that held the group within
	 * metacache_ttl (its caches warm) */
	uint64_t failover_moves, failover_warm, failover_warm_possible;
	/* the balance scenario (sums over its runs; max_* are maxima) */
	uint64_t bal_runs, bal_converged, bal_rounds_sum, bal_rounds_max;
	int64_t bal_conv_ms_sum, bal_conv_ms_max;
	uint64_t bal_bound_sum, bal_moves_conv_sum;
	double bal_moves_ratio_max; /* moves until convergence / lower bound */
	double bal_mm_start_sum, bal_mm_start_max, bal_mm_conv_sum, bal_mm_conv_max;
	double bal_mm_end_sum, bal_mm_end_max; /* at the end of the run (after add and drain) */
	uint64_t bal_steady_moves;
	int64_t bal_steady_ms;
	uint64_t bal_filled, bal_drained;
	int64_t bal_fill_ms_sum, bal_fill_ms_max, bal_drain_ms_sum, bal_drain_ms_max;
	uint64_t bal_fill_moves_sum, bal_drain_moves_sum, bal_drain_groups_sum;
	double bal_slow_factor_sum, bal_slow_factor_max; /* the slow host's resource factor */
	double bal_slow_share_sum;                       /* ... its load / its uncorrected share */
	uint64_t bal_slow_n, bal_slow_moves;
	int64_t bal_virtual_ms; /* virtual time of the balance scenario runs */
	/* the sites scenario (sites.c) */
	uint64_t site_runs, site_cuts, site_cuts_short, site_cuts_long, site_cuts_mid;
	uint64_t site_heals, site_outages, site_standby_outages, site_evacuations;
	uint64_t site_failovers_started, site_failovers_stopped;
	uint64_t site_groups_failed_over, site_groups_evacuated, site_released, site_void_cleaned;
	uint64_t site_merge_moves, site_home_moves, site_converged_checks;
	uint64_t site_failbacks;
	int64_t site_failback_ms_sum, site_failback_ms_max;
	uint64_t site_max_per_s, site_max_per_10s; /* groups placed by one site (maxima) */
	uint64_t site_logins, site_logins_failed, site_logins_moved, site_logins_proxied;
	uint64_t site_splits_all, site_merge_heals, site_merge_max_heal;
	uint64_t site_max_arrivals_10s, site_evacuations_done, site_max_failback_10s;
};

/* Runs one seed; prints violations (with seed and step) to stdout. */
void sim_run(const struct sim_options *options, struct sim_result *result_r);
/* The sites scenario (sites.c), the same way. */
void sim_sites_run(const struct sim_options *options, struct sim_result *result_r);

#endif
