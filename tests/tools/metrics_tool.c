/* metrics_tool.c - net/metrics_scrape.h and util/openmetrics.h from the
 * command line, for the integration tests (tests/integration/test_metrics.py)
 * and for looking at a backend's node_exporter:
 *
 *   metrics_tool [-t TIMEOUT_MS] sample URL
 *   metrics_tool [-t TIMEOUT_MS] resources URL INTERVAL_MS [PAIRS]
 *   metrics_tool parse FILE
 *
 * sample prints one scrape (key=value lines: cpu_count, cpu_idle_s,
 * cpu_total_s, mem_available_bytes, mem_total_bytes, series, disks,
 * disks_ignored, then one "disk=NAME io_time_s=X stacked=0|1" per disk).
 * resources scrapes PAIRS + 1 times (default 1 pair), INTERVAL_MS apart,
 * prints "pair=I cpu_busy=.. mem_available=.. io_busy=.." per pair and
 * "samples=N cpu_busy=.. mem_available=.. io_busy=.." for the average.
 * parse reads a saved page as sample does.  Errors go to stderr as the
 * library words them; the exit code is 0 on success, 1 on a failure, 2 on
 * bad usage.
 */
#include "brain/balance.h"
#include "net/metrics_scrape.h"
#include "util/openmetrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
	fprintf(stderr, "usage: metrics_tool [-t TIMEOUT_MS] sample URL\n"
			"       metrics_tool [-t TIMEOUT_MS] resources URL INTERVAL_MS [PAIRS]\n"
			"       metrics_tool parse FILE\n");
	return 2;
}

static int parse_uint(const char *text, unsigned *value_r)
{
	char *end;
	unsigned long value = strtoul(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || value > 0xffffffffUL)
		return -1;
	*value_r = (unsigned)value;
	return 0;
}

static void print_sample(const struct metrics_sample *s)
{
	printf("cpu_count=%u\ncpu_idle_s=%.3f\ncpu_total_s=%.3f\n", s->cpu_count, s->cpu_idle_s,
	       s->cpu_total_s);
	printf("mem_available_bytes=%.0f\nmem_total_bytes=%.0f\n", s->mem_available_bytes,
	       s->mem_total_bytes);
	printf("series=%u\ndisks=%u\ndisks_ignored=%u\ndisks_dropped=%u\n", s->series,
	       s->disk_count, s->disks_ignored, s->disks_dropped);
	for (unsigned i = 0; i < s->disk_count; i++)
		printf("disk=%s io_time_s=%.3f stacked=%d\n", s->disks[i].name,
		       s->disks[i].io_time_s, s->disks[i].stacked ? 1 : 0);
}

static int cmd_parse(const char *path, const char **error_r)
{
	static char text[METRICS_SCRAPE_BODY_MAX];
	static struct metrics_sample sample;
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		*error_r = "cannot open the file";
		return -1;
	}
	size_t len = fread(text, 1, sizeof(text), f);
	fclose(f);
	if (metrics_sample_parse(text, len, 0, &sample, error_r) < 0 ||
	    metrics_sample_check(&sample, error_r) < 0)
		return -1;
	print_sample(&sample);
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static int cmd_resources(const char *url, unsigned timeout_ms, unsigned interval_ms, unsigned pairs,
			 const char **error_r)
{
	static struct metrics_average avg;
	static struct metrics_sample sample;
	struct balance_resources res;

	metrics_average_init(&avg, pairs);
	for (unsigned i = 0; i <= pairs; i++) {
		if (i > 0)
			sleep_ms(interval_ms);
		if (metrics_scrape(url, timeout_ms, &sample, error_r) < 0 ||
		    metrics_average_add(&avg, &sample, error_r) < 0)
			return -1;
		if (i > 0) {
			unsigned last = (avg.next + avg.window - 1) % avg.window;
			printf("pair=%u cpu_busy=%.6f mem_available=%.6f io_busy=%.6f\n", i,
			       avg.figures[last].cpu_busy, avg.figures[last].mem_available,
			       avg.figures[last].io_busy);
		}
	}
	metrics_average_get(&avg, &res);
	printf("samples=%u cpu_busy=%.6f mem_available=%.6f io_busy=%.6f\n", res.samples,
	       res.cpu_busy, res.mem_available, res.io_busy);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned timeout_ms = 5000;
	const char *error = "";
	int ret;

	argv++;
	argc--;
	if (argc >= 2 && strcmp(argv[0], "-t") == 0) {
		if (parse_uint(argv[1], &timeout_ms) < 0)
			return usage();
		argv += 2;
		argc -= 2;
	}
	if (argc < 2)
		return usage();
	const char *cmd = argv[0];
	if (strcmp(cmd, "sample") == 0 && argc == 2) {
		static struct metrics_sample sample;
		ret = metrics_scrape(argv[1], timeout_ms, &sample, &error);
		if (ret == 0)
			print_sample(&sample);
	} else if (strcmp(cmd, "resources") == 0 && (argc == 3 || argc == 4)) {
		unsigned interval_ms, pairs = 1;
		if (parse_uint(argv[2], &interval_ms) < 0 ||
		    (argc == 4 && (parse_uint(argv[3], &pairs) < 0 || pairs == 0 ||
				   pairs > METRICS_AVERAGE_MAX)))
			return usage();
		ret = cmd_resources(argv[1], timeout_ms, interval_ms, pairs, &error);
	} else if (strcmp(cmd, "parse") == 0 && argc == 2) {
		ret = cmd_parse(argv[1], &error);
	} else {
		return usage();
	}
	if (ret < 0) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	return 0;
}
