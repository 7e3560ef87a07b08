/* geodbbench.c - routing decisions per second from the LocalDB, and GeoDB
 * read and conditional-write latency.
 *
 *   geodbbench localdb [GROUPS [BACKENDS [USERS [OVERRIDES]]]]
 *       Builds a LocalDB in memory (GROUPS groups spread over BACKENDS
 *       online backends, OVERRIDES user overrides) and routes USERS distinct
 *       user names through route_decide() - what every login of a known user
 *       costs in the daemon.  Prints decisions/s and ns/decision.
 *
 *   geodbbench geodb SPEC [COUNT]
 *       Against a real GeoDB (e.g. the local Cassandra node):
 *       COUNT reads (geodb_group_get of assigned groups, one at a time) and
 *       COUNT conditional writes (geodb_group_assign_if_absent of new groups,
 *       the write a first login does), each timed; prints p50/p90/p99/max
 *       in milliseconds, and the time of one whole snapshot read (what a
 *       LocalDB refresh costs).  Initialises the schema first; use a
 *       keyspace (or SQLite file) of its own: it writes groups 0..2*COUNT.
 */
#include "store/geodb.h"
#include "store/localdb.h"
#include "store/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double *ms, size_t n)
{
	qsort(ms, n, sizeof(*ms), cmp_double);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += ms[i];
	printf("%-22s n=%zu p50=%.3f ms p90=%.3f ms p99=%.3f ms max=%.3f ms mean=%.3f ms\n", what,
	       n, ms[n / 2], ms[n * 90 / 100], ms[n * 99 / 100], ms[n - 1], sum / (double)n);
}

static int bench_localdb(unsigned groups, unsigned backends, unsigned users, unsigned overrides)
{
	struct geodb_snapshot snap = {0};
	snap.group_count = groups;
	snap.site_count = 1;
	snap.sites = calloc(1, sizeof(*snap.sites));
	snprintf(snap.sites[0].name, sizeof(snap.sites[0].name), "dc1");
	snap.backend_count = backends;
	snap.backends = calloc(backends, sizeof(*snap.backends));
	for (unsigned i = 0; i < backends; i++) {
		struct geodb_backend *b = &snap.backends[i];
		snprintf(b->name, sizeof(b->name), "backend%03u", i);
		snprintf(b->site, sizeof(b->site), "dc1");
		snprintf(b->address, sizeof(b->address), "10.0.%u.%u", i / 250, i % 250 + 1);
		b->status = BACKEND_STATUS_ONLINE;
		b->load_factor = 100;
	}
	snap.group_row_count = groups;
	snap.groups = calloc(groups, sizeof(*snap.groups));
	for (unsigned g = 0; g < groups; g++) {
		snap.groups[g].group_id = g;
		snprintf(snap.groups[g].site, sizeof(snap.groups[g].site), "dc1");
		snprintf(snap.groups[g].backend, sizeof(snap.groups[g].backend), "backend%03u",
			 g % backends);
		snap.groups[g].epoch = 1;
	}
	snap.user_count = overrides;
	snap.users = calloc(overrides + 1, sizeof(*snap.users));
	for (unsigned u = 0; u < overrides; u++) {
		snprintf(snap.users[u].username, sizeof(snap.users[u].username), "vip%u@example.com",
			 u);
		snap.users[u].group_id = u % groups;
	}
	struct localdb *ldb = localdb_create(groups);
	const char *error;
	if (localdb_replace(ldb, &snap, &error) < 0) {
		fprintf(stderr, "geodbbench: %s\n", error);
		return 1;
	}
	char (*names)[48] = malloc((size_t)users * sizeof(*names));
	for (unsigned u = 0; u < users; u++)
		snprintf(names[u], sizeof(names[u]), "%s%u@example.com", u % 10 == 0 ? "VIP" : "user",
			 u % 10 == 0 ? u / 10 % (overrides + 1) : u);
	struct route_result r;
	unsigned ok = 0, rounds = 3;
	double best = 1e18;
	for (unsigned round = 0; round < rounds; round++) {
		double t0 = now_ms();
		for (unsigned u = 0; u < users; u++)
			ok += route_decide(ldb, "dc1", names[u], &r, &error) == ROUTE_OK;
		double t = now_ms() - t0;
		if (t < best)
			best = t;
	}
	printf("localdb routing: %u groups, %u backends, %u overrides, %u users: "
	       "%.0f decisions/s (%.0f ns each; best of %u rounds; %u ok)\n",
	       groups, backends, overrides, users, users / (best / 1e3), best * 1e6 / users, rounds,
	       ok);
	free(names);
	localdb_destroy(&ldb);
	return ok == users * rounds ? 0 : 1;
}

static int bench_geodb(const char *spec, unsigned count)
{
	struct geodb *db;
	const char *error;
	unsigned from;
	if (geodb_open(spec, "geodbbench", 5000, &db, &error) < 0 ||
	    geodb_init(db, &from, &error) < 0) {
		fprintf(stderr, "geodbbench: %s\n", error);
		return 1;
	}
	struct geodb_site site = {.status = SITE_STATUS_ONLINE};
	snprintf(site.name, sizeof(site.name), "benchsite");
	geodb_site_add(db, &site, &error); /* may exist from an earlier run */
	double *writes = calloc(count, sizeof(double)), *reads = calloc(count, sizeof(double));
	unsigned base = (unsigned)time(NULL) % 1000 * 100000; /* fresh ids per run */
	unsigned failures = 0;
	for (unsigned i = 0; i < count; i++) {
		struct geodb_group g = {.group_id = base + i, .epoch = 1};
		snprintf(g.site, sizeof(g.site), "benchsite");
		snprintf(g.backend, sizeof(g.backend), "b%u", i % 8);
		double t0 = now_ms();
		int ret = geodb_group_assign_if_absent(db, &g, &error);
		writes[i] = now_ms() - t0;
		if (ret != 1) {
			failures++;
			if (failures < 3)
				fprintf(stderr, "geodbbench: write %u: %s\n", i,
					ret < 0 ? error : "not applied");
		}
	}
	for (unsigned i = 0; i < count; i++) {
		struct geodb_group g;
		double t0 = now_ms();
		int ret = geodb_group_get(db, base + (i * 7919) % count, &g, &error);
		reads[i] = now_ms() - t0;
		if (ret != 1) {
			failures++;
			if (failures < 3)
				fprintf(stderr, "geodbbench: read %u: %s\n", i,
					ret < 0 ? error : "not found");
		}
	}
	printf("geodb %s\n", geodb_driver_name(db));
	report("conditional write", writes, count);
	report("read", reads, count);
	struct geodb_snapshot snap;
	double t0 = now_ms();
	if (geodb_snapshot_read(db, &snap, &error) == 0) {
		printf("%-22s %zu groups, %zu backends, %zu users in %.1f ms\n", "snapshot read",
		       snap.group_row_count, snap.backend_count, snap.user_count, now_ms() - t0);
		geodb_snapshot_free(&snap);
	} else {
		printf("snapshot read failed: %s\n", error);
		failures++;
	}
	printf("failures: %u\n", failures);
	free(writes);
	free(reads);
	geodb_close(&db);
	return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "localdb") == 0) {
		unsigned groups = argc > 2 ? (unsigned)atoi(argv[2]) : 20000;
		unsigned backends = argc > 3 ? (unsigned)atoi(argv[3]) : 200;
		unsigned users = argc > 4 ? (unsigned)atoi(argv[4]) : 1000000;
		unsigned overrides = argc > 5 ? (unsigned)atoi(argv[5]) : 10000;
		if (groups == 0 || backends == 0 || users == 0 || backends > 1000) {
			fprintf(stderr, "geodbbench: bad numbers\n");
			return 2;
		}
		return bench_localdb(groups, backends, users, overrides);
	}
	if (argc >= 3 && strcmp(argv[1], "geodb") == 0) {
		unsigned count = argc > 3 ? (unsigned)atoi(argv[3]) : 2000;
		if (count == 0 || count > 1000000) {
			fprintf(stderr, "geodbbench: bad count\n");
			return 2;
		}
		return bench_geodb(argv[2], count);
	}
	fprintf(stderr, "usage: geodbbench localdb [GROUPS [BACKENDS [USERS [OVERRIDES]]]]\n"
			"       geodbbench geodb SPEC [COUNT]\n");
	return 2;
}
