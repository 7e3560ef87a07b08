/* controller_act.h - one pass of the site controller's decisions, run in the
 * worker thread (worker.h) with its own GeoDB handle while this daemon
 * holds the controller lease (controller.h):
 *
 *   1. read the state (snapshot) and every daemon's health observations;
 *      the site's live daemons are those with a fresh observation;
 *   2. health: brain/health.h decides each backend's mark; changes are
 *      written with geodb_backend_mark() and logged with their reason;
 *   3. moves in progress: brain/move.h decides (acknowledged by every live
 *      daemon, source down, or timed out); a finishing move kicks the
 *      group's users on the old backend through doveadm (when configured),
 *      runs the move_hook, and switches the group (compare-and-set);
 *   4. failover: brain/failover.h moves the groups of backends marked down
 *      to their alternatives (finishing at once: nobody is served there);
 *   5. alternatives: brain/failover.h keeps every group's alternative
 *      current (a bounded number of changes per pass);
 *   5b. sites (brain/site.h): the site's heartbeat and what it sees of the
 *      other sites; a failover site for each of the site's groups; for
 *      every other site, the failover decision and this site's failover
 *      cells for that site's groups (written and released at
 *      site_failover_rate).  A group whose failover cell stands is left
 *      alone by steps 3-6: a new epoch would void the cell and move the
 *      group home at once, not gradually;
 *   6. balancing, every balance_interval: brain/balance.h plans the round
 *      from the groups' weights (the daemons' load reports) and the hosts'
 *      resources; with balance = on its moves are started (the move
 *      protocol finishes them), with dryrun they are only logged.
 *
 * Every write first checks that the lease is still ours (act_until, a
 * CLOCK_MONOTONIC millisecond deadline the event loop extends at every
 * renewal), so a controller that lost the lease mid-pass stops writing.
 * Every write is a compare-and-set on the group's epoch, so an operator's
 * change made meanwhile wins and the controller looks again next pass.
 */
#ifndef CONTROLLER_ACT_H
#define CONTROLLER_ACT_H

#include "brain/balance.h"
#include "brain/health.h"
#include "brain/site.h"
#include "brain/types.h"
#include "util/openmetrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct geodb;
struct strbuf;
struct worker;

struct controller_act_counts {
	uint64_t passes, pass_failures;
	uint64_t marks_down, marks_up;
	uint64_t failovers, stranded;
	uint64_t moves_acked, moves_source_down, moves_timed_out;
	uint64_t alt_changes;
	uint64_t doveadm_kicks, doveadm_failures;
	uint64_t hook_runs, hook_failures; /* runs: exit 0; failures: the rest */
	uint64_t cas_conflicts;
	uint64_t balance_rounds, balance_moves, balance_moves_dryrun;
	uint64_t metrics_scrapes, metrics_failures;
	uint64_t site_heartbeats, site_reachability_changes;
	/* site failover (this site as a failover site): cells written,
	 * released (failback, at the rate) and void ones deleted; failover
	 * sites chosen for this site's groups */
	uint64_t site_cells_written, site_cells_released, site_cells_cleaned;
	uint64_t site_failover_site_changes;
};

/* The site failover's state across passes (the controller's; touched in
 * jobs only): the pace of this site's cell writes and the kind of the latest
 * decision about each other site, logged when it changes. */
struct controller_sites {
	struct site_pace pace;
	bool pace_set;
	struct {
		char site[NAME_MAX_LEN + 1];
		char text[200];
	} last[SITE_MAX];
	size_t last_count;
	/* the latest pass's figures, for the status API */
	unsigned groups_failed_away; /* this site's groups served elsewhere */
	unsigned cells_held;         /* standing cells this site wrote */
};

/* The hosts' resources: every metrics_interval the pass scrapes each
 * backend's backend_metrics_url and averages the figures (util/openmetrics.h).
 * Owned by the controller, touched only inside worker jobs (one at a time). */
struct controller_metrics_host {
	char backend[NAME_MAX_LEN + 1];
	struct metrics_average average;
	int64_t last_ms; /* monotonic: the latest scrape */
	bool failing;
};

/* Group weights smoothed over time (a weight that is high right now is
 * often lower soon after: raw figures make the planner move groups and
 * regret it; the simulator measured 47 moves an hour under steady load
 * with 10 s figures against 2.5 with a 30 minute average). */
#define CONTROLLER_WEIGHT_TAU_MS (30 * 60 * 1000)

struct controller_weights {
	double *weight;  /* group_count entries; smoothed */
	unsigned char *seen; /* a group's first nonzero figure was taken */
	int64_t at_ms;   /* monotonic: the latest update; 0 never */
};

struct controller_metrics {
	char url[512]; /* backend_metrics_url; "" none */
	unsigned interval_ms, timeout_ms, window;
	struct controller_metrics_host *hosts;
	size_t count;
	uint64_t scrapes, failures;
};

struct controller_act_job {
	/* in */
	char site[NAME_MAX_LEN + 1];
	struct health_settings health;
	unsigned move_timeout_ms;
	unsigned group_count;
	char doveadm_url[512], doveadm_api_key[256];
	unsigned doveadm_timeout_ms;
	char move_hook[1024];
	unsigned move_hook_timeout_ms;
	const _Atomic int64_t *act_until; /* monotonic ms; the controller's */
	const struct worker *worker;      /* worker_stopping(): shutdown */
	void *owner;                      /* the controller (on the loop only) */
	char me[NAME_MAX_LEN + 1];        /* this daemon, the heartbeats' writer */
	unsigned site_reachability_timeout_ms;
	unsigned site_failover_delay_ms, site_failover_rate, site_failback_delay_ms;
	struct controller_sites *sites;

	/* balancing (brain/balance.h): this pass runs a round */
	bool balance_due;
	bool plan_only;          /* compute the round's plan, write nothing at all */
	enum balance_mode balance_mode;
	struct balance_settings balance;
	/* the hosts' resources; NULL: none configured */
	struct controller_metrics *metrics;
	/* the smoothed group weights (the controller's; touched in jobs only) */
	struct controller_weights *weights;

	/* out */
	struct controller_act_counts counts; /* this pass's */
	struct strbuf *plan_json; /* the round's plan (when it ran), for the API */
	struct strbuf *plan_text; /* ... and as text, for the CLI */
	double max_ratio_before, max_ratio_after;
	unsigned live_daemons, backends, groups, moving;
	bool failed;
	char error[512];
};

/* worker_run_fn */
void controller_act_run(struct geodb *db, const char *open_error, void *arg);

#endif
