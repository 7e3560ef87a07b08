/* main.c - the simulator's command line: runs seeds, sums up, exits 1 if any
 * seed broke an invariant.
 *
 *   build/sim --seeds N [--first S] [--users U] [--backends B] [--daemons D]
 *             [--hours H] [--jobs J] [--verbose] [--break NAME]...
 *
 * Seeds S .. S+N-1 (S defaults to 1).  Backends and daemons default to a
 * choice made by each seed (3..12 backends, 2..5 daemons).  --jobs runs the
 * seeds in J worker processes (seed i in worker i mod J); every seed's run
 * is the same whatever the number of workers.  A violation prints the seed
 * and the step; `--seeds 1 --first SEED --verbose` replays it with a log.
 * --break NAME breaks the move protocol's glue on purpose (see
 * sim_break_names; `--break list` lists them) to show that the invariants
 * catch it: such a run is expected to fail.
 */
#include "sim.h"

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

static void add(struct totals *t, const struct sim_result *r)
{
	if (r->failed)
		t->failed++;
	else
		t->passed++;
	for (int i = 0; i < INV_COUNT; i++) {
		t->sum.checks[i] += r->checks[i];
		t->sum.violations[i] += r->violations[i];
		t->sum.exempt[i] += r->exempt[i];
	}
	t->sum.steps += r->steps;
	t->sum.logins += r->logins;
	t->sum.logins_ok += r->logins_ok;
	t->sum.logins_failed += r->logins_failed;
	t->sum.logins_unavailable += r->logins_unavailable;
	t->sum.marks_down += r->marks_down;
	t->sum.marks_up += r->marks_up;
	t->sum.moves += r->moves;
	t->sum.alt_changes += r->alt_changes;
	t->sum.takeovers += r->takeovers;
	t->sum.outages_long += r->outages_long;
	t->sum.outages_short += r->outages_short;
	t->sum.faults += r->faults;
	if (r->max_served_ms > t->sum.max_served_ms)
		t->sum.max_served_ms = r->max_served_ms;
	t->sum.sessions += r->sessions;
	t->sum.kicks += r->kicks;
	t->sum.relogins += r->relogins;
	t->sum.logins_held += r->logins_held;
	t->sum.partitions += r->partitions;
	t->sum.moves_operator += r->moves_operator;
	t->sum.moves_evacuate += r->moves_evacuate;
	t->sum.evacuations += r->evacuations;
	t->sum.cas_failed += r->cas_failed;
	t->sum.finish_acked += r->finish_acked;
	t->sum.finish_down += r->finish_down;
	t->sum.finish_timeout += r->finish_timeout;
	t->sum.cancelled += r->cancelled;
	t->sum.two_backends_mark += r->two_backends_mark;
	t->sum.two_backends_row += r->two_backends_row;
	t->sum.two_backends_cut += r->two_backends_cut;
	if (r->max_hold_ms > t->sum.max_hold_ms)
		t->sum.max_hold_ms = r->max_hold_ms;
	if (r->max_move_ms > t->sum.max_move_ms)
		t->sum.max_move_ms = r->max_move_ms;
	t->sum.sim_error |= r->sim_error;
}

static void run_seeds(const struct sim_options *base, uint64_t first, uint64_t count, unsigned job,
		      unsigned jobs, struct totals *t)
{
	for (uint64_t i = job; i < count; i += jobs) {
		struct sim_options o = *base;
		struct sim_result r;
		o.seed = first + i;
		sim_run(&o, &r);
		add(t, &r);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: sim --seeds N [--first S] [--users U] [--backends B] "
			"[--daemons D] [--hours H] [--jobs J] [--verbose] [--break NAME]...\n");
	exit(2);
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
	struct sim_options o = {.users = 10000, .hours = 0.5};
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
		else
			usage();
	}
	if (seeds == 0 || o.users == 0 || o.hours <= 0 || jobs == 0 ||
	    (o.backends != 0 && o.backends < 3) || (o.daemons != 0 && o.daemons < 2) ||
	    o.daemons > 1000)
		usage();
	if (jobs > seeds)
		jobs = (unsigned)seeds;

	printf("sim: seeds %llu..%llu users=%u backends=%s daemons=%s hours=%g jobs=%u\n",
	       (unsigned long long)first, (unsigned long long)(first + seeds - 1), o.users,
	       o.backends ? "given" : "by seed (3..12)", o.daemons ? "given" : "by seed (2..5)",
	       o.hours, jobs);
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
		printf("invariant %-20s checks=%-10llu violations=%llu exempt=%llu\n",
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
	       "max_crash_to_mark_down=%.3fs (any outage, exempt ones too)\n",
	       (unsigned long long)r->logins, (unsigned long long)r->logins_ok,
	       (unsigned long long)r->logins_failed, (unsigned long long)r->logins_unavailable,
	       (unsigned long long)r->logins_held, r->max_served_ms / 1000.0);
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
	if (r->sim_error)
		printf("sim: the simulator itself failed on some seed (see above)\n");
	printf("%llu seeds passed, %llu failed\n", (unsigned long long)total.passed,
	       (unsigned long long)total.failed);
	return total.failed == 0 ? 0 : 1;
}
