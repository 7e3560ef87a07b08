/* main.c - the simulator's command line: runs seeds, sums up, exits 1 if any
 * seed broke an invariant.
 *
 *   build/sim --seeds N [--first S] [--users U] [--backends B] [--daemons D]
 *             [--hours H] [--jobs J] [--scenario faults|balance|sites|both|all]
 *             [--verbose] [--break NAME]...
 *
 * Seeds S .. S+N-1 (S defaults to 1).  Each seed runs the three scenarios
 * (sim.h) unless --scenario says which (a name, or several joined by
 * commas; "both" is faults,balance): "faults" (H hours, default 0.5),
 * "balance" (its phases, about 70 min of virtual time) and "sites" (3 h of
 * virtual time, with its own choice of sites and backends and users / 5
 * users); a seed fails if any does.  Backends and daemons default to a
 * choice made by each seed (3..12 backends, 2..5 daemons).  --jobs runs the
 * seeds in J worker processes (seed i in worker i mod J); every seed's run
 * is the same whatever the number of workers.  A violation prints the seed
 * and the step; `--seeds 1 --first SEED --verbose` replays it with a log
 * (add --scenario balance or sites for a violation marked "scenario
 * balance" or "scenario sites").
 * --break NAME breaks the move protocol's or the site failover's glue on purpose (see
 * sim_break_names; `--break list` lists them) to show that the invariants
 * catch it: such a run is expected to fail.
 */
#include "sim.h"

#include "brain/site.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct totals {
	uint64_t passed, failed;
	struct sim_result sum;
};

#define MAXF(field)                    \
	do {                           \
		if (r->field > t->field) \
			t->field = r->field; \
	} while (0)

/* Sums r into t (counters summed, max_* fields maximised). */
static void sum(struct sim_result *t, const struct sim_result *r)
{
	t->failed |= r->failed;
	for (int i = 0; i < INV_COUNT; i++) {
		t->checks[i] += r->checks[i];
		t->violations[i] += r->violations[i];
		t->exempt[i] += r->exempt[i];
	}
	t->steps += r->steps;
	t->logins += r->logins;
	t->logins_ok += r->logins_ok;
	t->logins_failed += r->logins_failed;
	t->logins_unavailable += r->logins_unavailable;
	t->marks_down += r->marks_down;
	t->marks_up += r->marks_up;
	t->moves += r->moves;
	t->alt_changes += r->alt_changes;
	t->takeovers += r->takeovers;
	t->outages_long += r->outages_long;
	t->outages_short += r->outages_short;
	t->faults += r->faults;
	MAXF(max_served_ms);
	t->sessions += r->sessions;
	t->kicks += r->kicks;
	t->relogins += r->relogins;
	t->logins_held += r->logins_held;
	t->logins_reheld += r->logins_reheld;
	t->partitions += r->partitions;
	t->moves_operator += r->moves_operator;
	t->moves_evacuate += r->moves_evacuate;
	t->evacuations += r->evacuations;
	t->cas_failed += r->cas_failed;
	t->finish_acked += r->finish_acked;
	t->finish_down += r->finish_down;
	t->finish_timeout += r->finish_timeout;
	t->cancelled += r->cancelled;
	t->two_backends_mark += r->two_backends_mark;
	t->two_backends_row += r->two_backends_row;
	t->two_backends_cut += r->two_backends_cut;
	MAXF(max_hold_ms);
	MAXF(max_move_ms);
	t->sim_error |= r->sim_error;
	t->balance_rounds += r->balance_rounds;
	t->balance_moves += r->balance_moves;
	t->balance_warm += r->balance_warm;
	t->failover_moves += r->failover_moves;
	t->failover_warm += r->failover_warm;
	t->failover_warm_possible += r->failover_warm_possible;
	t->balance_drain_moves += r->balance_drain_moves;
	t->moves_balance_finished += r->moves_balance_finished;
	t->bal_runs += r->bal_runs;
	t->bal_converged += r->bal_converged;
	t->bal_rounds_sum += r->bal_rounds_sum;
	MAXF(bal_rounds_max);
	t->bal_conv_ms_sum += r->bal_conv_ms_sum;
	MAXF(bal_conv_ms_max);
	t->bal_bound_sum += r->bal_bound_sum;
	t->bal_moves_conv_sum += r->bal_moves_conv_sum;
	MAXF(bal_moves_ratio_max);
	t->bal_mm_start_sum += r->bal_mm_start_sum;
	MAXF(bal_mm_start_max);
	t->bal_mm_conv_sum += r->bal_mm_conv_sum;
	MAXF(bal_mm_conv_max);
	t->bal_mm_end_sum += r->bal_mm_end_sum;
	MAXF(bal_mm_end_max);
	t->bal_steady_moves += r->bal_steady_moves;
	t->bal_steady_ms += r->bal_steady_ms;
	t->bal_filled += r->bal_filled;
	t->bal_drained += r->bal_drained;
	t->bal_fill_ms_sum += r->bal_fill_ms_sum;
	MAXF(bal_fill_ms_max);
	t->bal_drain_ms_sum += r->bal_drain_ms_sum;
	MAXF(bal_drain_ms_max);
	t->bal_fill_moves_sum += r->bal_fill_moves_sum;
	t->bal_drain_moves_sum += r->bal_drain_moves_sum;
	t->bal_drain_groups_sum += r->bal_drain_groups_sum;
	t->bal_slow_factor_sum += r->bal_slow_factor_sum;
	MAXF(bal_slow_factor_max);
	t->bal_slow_n += r->bal_slow_n;
	t->bal_slow_share_sum += r->bal_slow_share_sum;
	t->bal_slow_moves += r->bal_slow_moves;
	t->bal_virtual_ms += r->bal_virtual_ms;
	t->site_runs += r->site_runs;
	t->site_cuts += r->site_cuts;
	t->site_cuts_short += r->site_cuts_short;
	t->site_cuts_long += r->site_cuts_long;
	t->site_cuts_mid += r->site_cuts_mid;
	t->site_heals += r->site_heals;
	t->site_outages += r->site_outages;
	t->site_standby_outages += r->site_standby_outages;
	t->site_evacuations += r->site_evacuations;
	t->site_failovers_started += r->site_failovers_started;
	t->site_failovers_stopped += r->site_failovers_stopped;
	t->site_groups_failed_over += r->site_groups_failed_over;
	t->site_groups_evacuated += r->site_groups_evacuated;
	t->site_released += r->site_released;
	t->site_void_cleaned += r->site_void_cleaned;
	t->site_merge_moves += r->site_merge_moves;
	t->site_home_moves += r->site_home_moves;
	t->site_converged_checks += r->site_converged_checks;
	t->site_failbacks += r->site_failbacks;
	t->site_failback_ms_sum += r->site_failback_ms_sum;
	MAXF(site_failback_ms_max);
	MAXF(site_max_per_s);
	MAXF(site_max_per_10s);
	t->site_logins += r->site_logins;
	t->site_logins_failed += r->site_logins_failed;
	t->site_logins_moved += r->site_logins_moved;
	t->site_logins_proxied += r->site_logins_proxied;
	t->site_splits_all += r->site_splits_all;
	t->site_merge_heals += r->site_merge_heals;
	MAXF(site_merge_max_heal);
	MAXF(site_max_arrivals_10s);
	t->site_evacuations_done += r->site_evacuations_done;
	MAXF(site_max_failback_10s);
}

static void add(struct totals *t, const struct sim_result *r)
{
	if (r->failed)
		t->failed++;
	else
		t->passed++;
	bool failed = t->sum.failed;
	sum(&t->sum, r);
	t->sum.failed = failed;
}

static void run_seeds(const struct sim_options *base, uint64_t first, uint64_t count, unsigned job,
		      unsigned jobs, struct totals *t)
{
	for (uint64_t i = job; i < count; i += jobs) {
		struct sim_options o = *base;
		struct sim_result seed = {0}, r;
		o.seed = first + i;
		for (unsigned sc = SIM_SCENARIO_FAULTS; sc <= SIM_SCENARIO_SITES; sc <<= 1) {
			if ((base->scenario & sc) == 0)
				continue;
			o.scenario = sc;
			if (sc == SIM_SCENARIO_SITES)
				sim_sites_run(&o, &r);
			else
				sim_run(&o, &r);
			sum(&seed, &r);
		}
		add(t, &seed);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: sim --seeds N [--first S] [--users U] [--backends B] "
			"[--daemons D] [--hours H] [--jobs J] [--scenario faults|balance|sites|both|all] "
			"[--verbose] [--break NAME]...\n");
	exit(2);
}

/* "faults", "balance", "sites", "both" (faults and balance), "all", or a
 * comma-separated list of the first three; 0 if invalid */
static unsigned scenario_parse(const char *v)
{
	static const struct {
		const char *name;
		unsigned mask;
	} names[] = {
		{"faults", SIM_SCENARIO_FAULTS},
		{"balance", SIM_SCENARIO_BALANCE},
		{"sites", SIM_SCENARIO_SITES},
		{"both", SIM_SCENARIO_FAULTS | SIM_SCENARIO_BALANCE},
		{"all", SIM_SCENARIO_FAULTS | SIM_SCENARIO_BALANCE | SIM_SCENARIO_SITES},
	};
	unsigned mask = 0;
	while (*v != '\0') {
		size_t len = strcspn(v, ",");
		unsigned found = 0;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == len && strncmp(names[i].name, v, len) == 0)
				found = names[i].mask;
		if (found == 0)
			return 0;
		mask |= found;
		v += len;
		if (*v == ',')
			v++;
	}
	return mask;
}

static unsigned break_flag(const char *name)
{
	for (const struct sim_break_name *b = sim_break_names; b->name != NULL; b++) {
		if (strcmp(b->name, name) == 0)
			return b->flag;
	}
	fprintf(stderr, "sim: --break takes one of:\n");
	for (const struct sim_break_name *b = sim_break_names; b->name != NULL; b++)
		fprintf(stderr, "  %-16s %s\n", b->name, b->what);
	exit(2);
}

int main(int argc, char **argv)
{
	struct sim_options o = {
		.users = 10000,
		.hours = 0.5,
		.scenario = SIM_SCENARIO_FAULTS | SIM_SCENARIO_BALANCE | SIM_SCENARIO_SITES,
	};
	uint64_t seeds = 0, first = 1;
	unsigned jobs = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--verbose") == 0) {
			o.verbose = true;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--seeds") == 0)
			seeds = strtoull(v, NULL, 10);
		else if (strcmp(a, "--first") == 0)
			first = strtoull(v, NULL, 10);
		else if (strcmp(a, "--users") == 0)
			o.users = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--backends") == 0)
			o.backends = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--daemons") == 0)
			o.daemons = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--hours") == 0)
			o.hours = strtod(v, NULL);
		else if (strcmp(a, "--jobs") == 0)
			jobs = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--break") == 0)
			o.breaks |= break_flag(v);
		else if (strcmp(a, "--scenario") == 0)
			o.scenario = scenario_parse(v);
		else
			usage();
	}
	if (seeds == 0 || o.users == 0 || o.hours <= 0 || jobs == 0 || o.scenario == 0 ||
	    (o.backends != 0 && o.backends < 3) || (o.daemons != 0 && o.daemons < 2) ||
	    o.daemons > 1000)
		usage();
	if (jobs > seeds)
		jobs = (unsigned)seeds;

	char scenarios[40] = "";
	if (o.scenario & SIM_SCENARIO_FAULTS)
		strcat(scenarios, "+faults");
	if (o.scenario & SIM_SCENARIO_BALANCE)
		strcat(scenarios, "+balance");
	if (o.scenario & SIM_SCENARIO_SITES)
		strcat(scenarios, "+sites");
	memmove(scenarios, scenarios + 1, strlen(scenarios));
	printf("sim: seeds %llu..%llu users=%u backends=%s daemons=%s hours=%g jobs=%u "
	       "scenarios=%s\n",
	       (unsigned long long)first, (unsigned long long)(first + seeds - 1), o.users,
	       o.backends ? "given" : "by seed (3..12)", o.daemons ? "given" : "by seed (2..5)",
	       o.hours, jobs,
	       scenarios);
	if (o.backends)
		printf("sim: backends=%u\n", o.backends);
	if (o.daemons)
		printf("sim: daemons=%u\n", o.daemons);
	for (const struct sim_break_name *b = sim_break_names; b->name != NULL; b++) {
		if (o.breaks & b->flag)
			printf("sim: BROKEN on purpose: %s (%s)\n", b->name, b->what);
	}
	fflush(stdout);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct totals total = {0};
	if (jobs == 1) {
		run_seeds(&o, first, seeds, 0, 1, &total);
	} else {
		int fds[64][2];
		if (jobs > 64)
			jobs = 64;
		for (unsigned j = 0; j < jobs; j++) {
			if (pipe(fds[j]) < 0) {
				perror("pipe");
				return 2;
			}
			pid_t pid = fork();
			if (pid < 0) {
				perror("fork");
				return 2;
			}
			if (pid == 0) {
				struct totals t = {0};
				close(fds[j][0]);
				run_seeds(&o, first, seeds, j, jobs, &t);
				fflush(stdout);
				ssize_t n = write(fds[j][1], &t, sizeof(t));
				_exit(n == (ssize_t)sizeof(t) ? 0 : 2);
			}
			close(fds[j][1]);
		}
		for (unsigned j = 0; j < jobs; j++) {
			struct totals t;
			size_t got = 0;
			while (got < sizeof(t)) {
				ssize_t n = read(fds[j][0], (char *)&t + got, sizeof(t) - got);
				if (n <= 0)
					break;
				got += (size_t)n;
			}
			close(fds[j][0]);
			if (got != sizeof(t)) {
				fprintf(stderr, "sim: worker %u died\n", j);
				return 2;
			}
			total.passed += t.passed;
			total.failed += t.failed;
			add(&total, &t.sum);
			total.passed--; /* add() counted the sum as one seed */
		}
		while (wait(NULL) > 0)
			;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;

	const struct sim_result *r = &total.sum;
	for (int i = 0; i < INV_COUNT; i++)
		printf("invariant %-22s checks=%-10llu violations=%llu exempt=%llu\n",
		       sim_invariant_names[i], (unsigned long long)r->checks[i],
		       (unsigned long long)r->violations[i], (unsigned long long)r->exempt[i]);
	printf("stats: steps=%llu faults=%llu long_crashes=%llu short_crashes=%llu "
	       "marks_down=%llu marks_up=%llu moves=%llu alt_changes=%llu takeovers=%llu\n",
	       (unsigned long long)r->steps, (unsigned long long)r->faults,
	       (unsigned long long)r->outages_long, (unsigned long long)r->outages_short,
	       (unsigned long long)r->marks_down, (unsigned long long)r->marks_up,
	       (unsigned long long)r->moves, (unsigned long long)r->alt_changes,
	       (unsigned long long)r->takeovers);
	printf("stats: logins=%llu ok=%llu failed=%llu unavailable=%llu held=%llu "
	       "held_again_for_a_new_move=%llu max_crash_to_mark_down=%.3fs (any outage, exempt "
	       "ones too)\n",
	       (unsigned long long)r->logins, (unsigned long long)r->logins_ok,
	       (unsigned long long)r->logins_failed, (unsigned long long)r->logins_unavailable,
	       (unsigned long long)r->logins_held, (unsigned long long)r->logins_reheld,
	       r->max_served_ms / 1000.0);
	printf("stats: sessions=%llu kicks=%llu relogins=%llu geodb_cuts=%llu "
	       "operator_moves=%llu evacuations=%llu evacuate_moves=%llu\n",
	       (unsigned long long)r->sessions, (unsigned long long)r->kicks,
	       (unsigned long long)r->relogins, (unsigned long long)r->partitions,
	       (unsigned long long)r->moves_operator, (unsigned long long)r->evacuations,
	       (unsigned long long)r->moves_evacuate);
	printf("stats: no_two_backends exempt by class: unseen_mark_or_status=%llu "
	       "unseen_switch=%llu geodb_cut=%llu\n",
	       (unsigned long long)r->two_backends_mark, (unsigned long long)r->two_backends_row,
	       (unsigned long long)r->two_backends_cut);
	printf("stats: moves finished acked=%llu source_down=%llu timeout=%llu cancelled=%llu "
	       "cas_failed=%llu max_move=%.3fs max_hold=%.3fs wall=%.1fs\n",
	       (unsigned long long)r->finish_acked, (unsigned long long)r->finish_down,
	       (unsigned long long)r->finish_timeout, (unsigned long long)r->cancelled,
	       (unsigned long long)r->cas_failed, r->max_move_ms / 1000.0, r->max_hold_ms / 1000.0,
	       secs);
	printf("stats: failover moves=%llu with a warm backend able to take it=%llu, to a warm "
	       "backend=%llu\n",
	       (unsigned long long)r->failover_moves, (unsigned long long)r->failover_warm_possible,
	       (unsigned long long)r->failover_warm);
	printf("stats: balancing rounds=%llu moves=%llu (finished %llu) warm=%llu drain=%llu\n",
	       (unsigned long long)r->balance_rounds, (unsigned long long)r->balance_moves,
	       (unsigned long long)r->moves_balance_finished, (unsigned long long)r->balance_warm,
	       (unsigned long long)r->balance_drain_moves);
	if (r->bal_runs > 0) {
		double n = (double)r->bal_runs;
		double conv = r->bal_converged ? (double)r->bal_converged : 1;
		printf("balance: runs=%llu virtual=%.1fh start max/mean avg %.2f worst %.2f; "
		       "balanced (all within 10%%) %llu/%llu after avg %.1f rounds (max %llu), "
		       "%.1f min (max %.1f), max/mean then avg %.3f worst %.3f\n",
		       (unsigned long long)r->bal_runs, r->bal_virtual_ms / 3600000.0,
		       r->bal_mm_start_sum / n, r->bal_mm_start_max,
		       (unsigned long long)r->bal_converged, (unsigned long long)r->bal_runs,
		       r->bal_rounds_sum / conv, (unsigned long long)r->bal_rounds_max,
		       r->bal_conv_ms_sum / conv / 60000.0, r->bal_conv_ms_max / 60000.0,
		       r->bal_mm_conv_sum / conv, r->bal_mm_conv_max);
		printf("balance: moves until balanced %llu vs lower bound %llu (x%.3f), worst "
		       "seed x%.3f (limit 1.2)\n",
		       (unsigned long long)r->bal_moves_conv_sum,
		       (unsigned long long)r->bal_bound_sum,
		       r->bal_bound_sum ? (double)r->bal_moves_conv_sum / r->bal_bound_sum : 0,
		       r->bal_moves_ratio_max);
		printf("balance: steady noisy load: %llu moves in %.1f h (%.1f an hour); a host "
		       "35%% slower: resource factor after 15 min avg %.3f (max %.3f), its load "
		       "%.2f of its plain share, %.1f moves\n",
		       (unsigned long long)r->bal_steady_moves, r->bal_steady_ms / 3600000.0,
		       r->bal_steady_ms ? r->bal_steady_moves / (r->bal_steady_ms / 3600000.0) : 0,
		       r->bal_slow_n ? r->bal_slow_factor_sum / r->bal_slow_n : 0,
		       r->bal_slow_factor_max,
		       r->bal_slow_n ? r->bal_slow_share_sum / r->bal_slow_n : 0,
		       r->bal_slow_n ? r->bal_slow_moves / (double)r->bal_slow_n : 0);
		printf("balance: added backend at 0.9 of its share %llu/%llu in avg %.1f min (max "
		       "%.1f), %.1f moves; load-factor-0 backend empty %llu/%llu in avg %.1f min "
		       "(max %.1f), %.1f moves for %.1f groups; max/mean at the end avg %.3f "
		       "worst %.3f\n",
		       (unsigned long long)r->bal_filled, (unsigned long long)r->bal_runs,
		       r->bal_filled ? r->bal_fill_ms_sum / (double)r->bal_filled / 60000.0 : 0,
		       r->bal_fill_ms_max / 60000.0,
		       r->bal_filled ? r->bal_fill_moves_sum / (double)r->bal_filled : 0,
		       (unsigned long long)r->bal_drained, (unsigned long long)r->bal_runs,
		       r->bal_drained ? r->bal_drain_ms_sum / (double)r->bal_drained / 60000.0 : 0,
		       r->bal_drain_ms_max / 60000.0,
		       r->bal_drained ? r->bal_drain_moves_sum / (double)r->bal_drained : 0,
		       r->bal_drained ? r->bal_drain_groups_sum / (double)r->bal_drained : 0,
		       r->bal_drained ? r->bal_mm_end_sum / (double)r->bal_drained : 0,
		       r->bal_mm_end_max);
	}
	if (r->site_runs > 0) {
		printf("sites: runs=%llu cuts=%llu (short %llu, long %llu, healed mid-failover %llu; "
		       "of them all three sites split apart %llu) heals=%llu outages=%llu (with "
		       "standby %llu) evacuations=%llu (fully drained %llu site shares)\n",
		       (unsigned long long)r->site_runs, (unsigned long long)r->site_cuts,
		       (unsigned long long)r->site_cuts_short, (unsigned long long)r->site_cuts_long,
		       (unsigned long long)r->site_cuts_mid, (unsigned long long)r->site_splits_all,
		       (unsigned long long)r->site_heals, (unsigned long long)r->site_outages,
		       (unsigned long long)r->site_standby_outages,
		       (unsigned long long)r->site_evacuations,
		       (unsigned long long)r->site_evacuations_done);
		printf("sites: failovers started=%llu stopped before done=%llu; groups failed "
		       "over=%llu evacuated=%llu released=%llu void cells cleaned=%llu\n",
		       (unsigned long long)r->site_failovers_started,
		       (unsigned long long)r->site_failovers_stopped,
		       (unsigned long long)r->site_groups_failed_over,
		       (unsigned long long)r->site_groups_evacuated,
		       (unsigned long long)r->site_released,
		       (unsigned long long)r->site_void_cleaned);
		printf("sites: pace (site_failover_rate %d/s): max groups placed by one site in 1 s "
		       "%llu, in 10 s %llu; max seen placed on one site by one replica in 10 s %llu\n",
		       SITE_FAILOVER_RATE_DEFAULT, (unsigned long long)r->site_max_per_s,
		       (unsigned long long)r->site_max_per_10s,
		       (unsigned long long)r->site_max_arrivals_10s);
		printf("sites: merge moves=%llu by %llu heals (max %llu groups by one heal, over "
		       "all replicas), at most 1 per group per heal and none back (site_merge_once)\n",
		       (unsigned long long)r->site_merge_moves,
		       (unsigned long long)r->site_merge_heals,
		       (unsigned long long)r->site_merge_max_heal);
		printf("sites: failbacks done=%llu, from the heal to the last release avg %.1f min "
		       "(max %.1f), max groups released onto one site in 10 s %llu; home-site "
		       "moves=%llu converged checks=%llu\n",
		       (unsigned long long)r->site_failbacks,
		       r->site_failbacks ? r->site_failback_ms_sum / (double)r->site_failbacks / 60000.0
					 : 0,
		       r->site_failback_ms_max / 60000.0,
		       (unsigned long long)r->site_max_failback_10s,
		       (unsigned long long)r->site_home_moves,
		       (unsigned long long)r->site_converged_checks);
		printf("sites: logins=%llu failed=%llu (site down or cut from the entry site) "
		       "proxied to another site=%llu on another backend than the user's last=%llu\n",
		       (unsigned long long)r->site_logins, (unsigned long long)r->site_logins_failed,
		       (unsigned long long)r->site_logins_proxied,
		       (unsigned long long)r->site_logins_moved);
	}
	if (r->sim_error)
		printf("sim: the simulator itself failed on some seed (see above)\n");
	printf("%llu seeds passed, %llu failed\n", (unsigned long long)total.passed,
	       (unsigned long long)total.failed);
	return total.failed == 0 ? 0 : 1;
}
