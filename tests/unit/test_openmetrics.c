/* test_openmetrics.c - unit tests for util/openmetrics (the exposition
 * format reader, node_exporter samples, resources and their average) and
 * net/metrics_scrape against a fake server.
 *
 * The real pages are two scrapes of Debian's prometheus-node-exporter
 * 1.5.0, two seconds apart (tests/data/node_exporter-1.5.0-{a,b}.prom);
 * their figures are checked against a naive line-by-line reading done
 * here, so the captures can be replaced.  Malformed input is an ordinary
 * case: a table of bad lines, every truncation and byte flips of a real
 * page (under ASan: nothing may read outside the buffer). */
#include "unit.h"

#include "brain/balance.h"
#include "net/metrics_scrape.h"
#include "util/openmetrics.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static bool contains(const char *text, const char *part)
{
	return text != NULL && strstr(text, part) != NULL;
}

static bool near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

/* The whole file (tests/data/NAME, from the repository's root), or NULL. */
static char *read_data(const char *name, size_t *len_r)
{
	char path[256];
	snprintf(path, sizeof(path), "tests/data/%s", name);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "  cannot open %s (run the tests from the repository)\n", path);
		return NULL;
	}
	size_t alloc = 1 << 16, len = 0;
	char *text = malloc(alloc);
	size_t n;
	while ((n = fread(text + len, 1, alloc - len, f)) > 0) {
		len += n;
		if (len == alloc)
			text = realloc(text, alloc *= 2);
	}
	fclose(f);
	*len_r = len;
	return text;
}

/* ---- the reader ---- */

static void test_reader(void)
{
	static const char page[] = "# HELP a_total Things.\n"
				   "# TYPE a_total counter\n"
				   "a_total 1\n"
				   "\n"
				   "   \t\n"
				   "b{x=\"1\",y=\"two\"} 2.5e+06\r\n"
				   "c { x = \"q\\\"uote\\\\back\\nline\" , } -Inf 1700000000000\n"
				   "  d\t+Inf\n"
				   "e NaN\n"
				   "# a comment that is neither HELP nor TYPE\n"
				   "{\"f.dotted\",z=\"9\"} 7\n"
				   "g_total{a=\"\"} 3 # {trace_id=\"abc\"} 1.0 1.5\n"
				   "h{\"quoted label\"=\"v\"} 4 1.5\n"
				   "# EOF\n"
				   "after_eof 1\n";
	struct openmetrics_reader r;
	struct openmetrics_series s;
	const char *error = NULL;
	char value[64];

	openmetrics_reader_init(&r, page, sizeof(page) - 1);
	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "a_total") && near(s.value, 1) && !s.has_timestamp);
	CHECK(s.line == 3 && s.labels == NULL);
	CHECK(openmetrics_label(&s, "x", value, sizeof(value)) == 0);

	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "b") && near(s.value, 2.5e6) && s.line == 6);
	CHECK(openmetrics_label(&s, "x", value, sizeof(value)) == 1);
	CHECK_STR(value, "1");
	CHECK(openmetrics_label(&s, "y", value, sizeof(value)) == 1);
	CHECK_STR(value, "two");
	CHECK(openmetrics_label(&s, "z", value, sizeof(value)) == 0);
	CHECK(!openmetrics_name_is(&s, "bb") && !openmetrics_name_is(&s, ""));

	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "c") && isinf(s.value) && s.value < 0);
	CHECK(s.has_timestamp && near(s.timestamp, 1700000000000.0));
	CHECK(openmetrics_label(&s, "x", value, sizeof(value)) == 1);
	CHECK_STR(value, "q\"uote\\back\nline");
	char small[8];
	CHECK(openmetrics_label(&s, "x", small, sizeof(small)) == -1);
	CHECK_STR(small, "");

	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "d") && isinf(s.value) && s.value > 0);
	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "e") && isnan(s.value));

	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "f.dotted") && near(s.value, 7));
	CHECK(openmetrics_label(&s, "z", value, sizeof(value)) == 1);
	CHECK_STR(value, "9");

	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "g_total") && near(s.value, 3) && !s.has_timestamp);
	CHECK(openmetrics_label(&s, "a", value, sizeof(value)) == 1);
	CHECK_STR(value, "");

	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_name_is(&s, "h") && s.has_timestamp && near(s.timestamp, 1.5));
	CHECK(openmetrics_label(&s, "quoted label", value, sizeof(value)) == 1);
	CHECK_STR(value, "v");

	/* # EOF ends the page: what follows is not read */
	CHECK(openmetrics_next(&r, &s, &error) == 0);
	CHECK(r.eof);
	CHECK(openmetrics_next(&r, &s, &error) == 0);

	/* no final LF; empty text */
	openmetrics_reader_init(&r, "x 1", 3);
	CHECK(openmetrics_next(&r, &s, &error) == 1 && near(s.value, 1));
	CHECK(openmetrics_next(&r, &s, &error) == 0);
	openmetrics_reader_init(&r, "", 0);
	CHECK(openmetrics_next(&r, &s, &error) == 0);
}

static void test_reader_garbage(void)
{
	static const struct {
		const char *line, *error_part;
	} bad[] = {
		{"<!DOCTYPE html>", "line 1: not a metric line: '<!DOCTYPE html>'"},
		{"9lives 1", "not a metric line"},
		{"x", "expected a blank and a value"},
		{"x{", "malformed labels"},
		{"x{a=\"1\"", "malformed labels"},
		{"x{a=1} 1", "malformed labels"},
		{"x{a=\"1\" b=\"2\"} 1", "malformed labels"},
		{"x{a=\"open} 1", "malformed labels"},
		{"x{=\"v\"} 1", "malformed labels"},
		{"x{a=\"1\",,b=\"2\"} 1", "malformed labels"},
		{"x{\"name\",\"again\"} 1", "malformed labels"},
		{"x{\"name\"} 1", "malformed labels"}, /* two names */
		{"{a=\"1\"} 1", "no metric name"},
		{"x{a=\"1\"}1", "expected a blank and a value"},
		{"x one", "the value is not a number"},
		{"x 1.2.3", "the value is not a number"},
		{"x 0x", "the value is not a number"},
		{"x 1 soon", "the timestamp is not a number"},
		{"x 1 NaN", "the timestamp is not a number"},
		{"x 1 2 3", "junk after the value"},
		{"x 1\0 2", "the value is not a number"},
		{"x 1234567890123456789012345678901234567890123456789012345678901234567890",
		 "the value is not a number"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct openmetrics_reader r;
		struct openmetrics_series s;
		const char *error = NULL;
		/* the NUL case is one byte longer than strlen() says */
		size_t len = strlen(bad[i].line);
		if (strcmp(bad[i].line, "x 1") == 0)
			len = 6;
		openmetrics_reader_init(&r, bad[i].line, len);
		int ret = openmetrics_next(&r, &s, &error);
		CHECK(ret == -1);
		if (ret != -1 || !contains(error, bad[i].error_part))
			fprintf(stderr, "  bad %zu '%s': ret %d error '%s', expected '%s'\n", i,
				bad[i].line, ret, ret == -1 ? error : "", bad[i].error_part);
		CHECK(contains(error, bad[i].error_part));
	}

	/* the line number is the page's */
	struct openmetrics_reader r;
	struct openmetrics_series s;
	const char *error = NULL;
	static const char page[] = "# HELP x\n\nx 1\n<p>oops</p>\n";
	openmetrics_reader_init(&r, page, sizeof(page) - 1);
	CHECK(openmetrics_next(&r, &s, &error) == 1);
	CHECK(openmetrics_next(&r, &s, &error) == -1);
	CHECK_STR(error, "line 4: not a metric line: '<p>oops</p>'");

	/* a long line is quoted briefly */
	char long_line[300];
	memset(long_line, 'z', sizeof(long_line));
	long_line[0] = '!';
	openmetrics_reader_init(&r, long_line, sizeof(long_line));
	CHECK(openmetrics_next(&r, &s, &error) == -1);
	CHECK(contains(error, "zzz...'") && strlen(error) < 120);

	/* binary junk */
	unsigned char junk[256];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	openmetrics_reader_init(&r, (const char *)junk, sizeof(junk));
	int ret;
	while ((ret = openmetrics_next(&r, &s, &error)) == 1)
		;
	CHECK(ret == -1);
}

/* ---- node_exporter pages ---- */

/* What a naive reading of the page says: sums by a plain strstr/strtod
 * over the lines, independent of the reader. */
struct naive {
	unsigned cpus;
	double idle, total, avail, memtotal;
};

static void naive_read(const char *text, struct naive *n)
{
	memset(n, 0, sizeof(*n));
	for (const char *line = text; *line != '\0';) {
		const char *nl = strchr(line, '\n');
		size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
		char buf[512];
		if (len < sizeof(buf)) {
			memcpy(buf, line, len);
			buf[len] = '\0';
			const char *value = strrchr(buf, ' ');
			double v = value != NULL ? strtod(value + 1, NULL) : 0;
			if (strncmp(buf, "node_cpu_seconds_total{", 23) == 0) {
				n->total += v;
				if (strstr(buf, "mode=\"idle\"") != NULL) {
					n->idle += v;
					n->cpus++;
				}
				if (strstr(buf, "mode=\"iowait\"") != NULL)
					n->idle += v;
			} else if (strncmp(buf, "node_memory_MemAvailable_bytes ", 31) == 0) {
				n->avail = v;
			} else if (strncmp(buf, "node_memory_MemTotal_bytes ", 27) == 0) {
				n->memtotal = v;
			}
		}
		line = nl != NULL ? nl + 1 : line + len;
	}
}

static double naive_disk(const char *text, const char *device)
{
	char needle[128];
	snprintf(needle, sizeof(needle), "node_disk_io_time_seconds_total{device=\"%s\"} ", device);
	const char *p = strstr(text, needle);
	return p != NULL ? strtod(p + strlen(needle), NULL) : -1;
}

static void test_real_pages(void)
{
	size_t len_a, len_b;
	char *a = read_data("node_exporter-1.5.0-a.prom", &len_a);
	char *b = read_data("node_exporter-1.5.0-b.prom", &len_b);
	CHECK(a != NULL && b != NULL);
	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		return;
	}
	static struct metrics_sample sa, sb;
	const char *error = NULL;
	int ret = metrics_sample_parse(a, len_a, 1000, &sa, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  page a: %s\n", error);
	CHECK(metrics_sample_parse(b, len_b, 3000, &sb, &error) == 0);
	CHECK(metrics_sample_check(&sa, &error) == 0 && metrics_sample_check(&sb, &error) == 0);

	/* a and b are NUL-free text: the naive reading needs a C string */
	char *a_str = strndup(a, len_a), *b_str = strndup(b, len_b);
	struct naive na, nb;
	naive_read(a_str, &na);
	naive_read(b_str, &nb);
	CHECK(sa.time_ms == 1000 && sb.time_ms == 3000);
	CHECK(sa.cpu_count == na.cpus && na.cpus >= 1);
	CHECK(near(sa.cpu_idle_s, na.idle) && near(sa.cpu_total_s, na.total));
	CHECK(near(sa.mem_available_bytes, na.avail) && near(sa.mem_total_bytes, na.memtotal));
	CHECK(sa.mem_total_bytes > 1e8 && sa.mem_available_bytes < sa.mem_total_bytes);
	CHECK(sa.series > 300); /* node_exporter 1.5.0 on a small VM: ~500 */
	/* the capture's host: vda (a virtio disk) and zram0 (ignored) */
	CHECK(sa.disk_count >= 1);
	for (unsigned i = 0; i < sa.disk_count; i++) {
		CHECK(near(sa.disks[i].io_time_s, naive_disk(a_str, sa.disks[i].name)));
		CHECK(strncmp(sa.disks[i].name, "loop", 4) != 0 &&
		      strncmp(sa.disks[i].name, "zram", 4) != 0);
	}

	/* the two pages, two seconds apart */
	struct balance_resources res;
	ret = metrics_resources(&sa, &sb, &res, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  resources: %s\n", error);
	double busy = 1 - (nb.idle - na.idle) / (nb.total - na.total);
	CHECK(res.samples == 1);
	CHECK(near(res.cpu_busy, busy < 0 ? 0 : busy > 1 ? 1 : busy));
	CHECK(res.cpu_busy >= 0 && res.cpu_busy <= 1);
	CHECK(near(res.mem_available, nb.avail / nb.memtotal));
	double io = 0;
	for (unsigned i = 0; i < sb.disk_count; i++) {
		double d = (naive_disk(b_str, sb.disks[i].name) -
			    naive_disk(a_str, sb.disks[i].name)) /
			   2.0;
		if (!sb.disks[i].stacked && d > io)
			io = d;
	}
	CHECK(near(res.io_busy, io > 1 ? 1 : io));
	CHECK(res.io_busy >= 0 && res.io_busy <= 1);

	/* every truncation at a line end parses; any truncation is safe
	 * (every line end and every 97th byte: the page is 57 kB) */
	static struct metrics_sample cut;
	unsigned line_cuts = 0, line_cuts_ok = 0;
	for (size_t n = 0; n <= len_a; n++) {
		bool line_end = n == 0 || a[n - 1] == '\n';
		if (!line_end && n % 97 != 0)
			continue;
		char *copy = malloc(n + 1);
		memcpy(copy, a, n);
		ret = metrics_sample_parse(copy, n, 0, &cut, &error);
		line_cuts += line_end;
		line_cuts_ok += line_end && ret == 0;
		free(copy);
	}
	CHECK(line_cuts > 300 && line_cuts_ok == line_cuts);
	/* byte flips: parse or refuse, never read outside the buffer */
	unsigned refused = 0;
	for (size_t i = 0; i < len_a; i += 61) {
		char *copy = malloc(len_a);
		memcpy(copy, a, len_a);
		copy[i] ^= (char)(1 + i % 255);
		if (metrics_sample_parse(copy, len_a, 0, &cut, &error) < 0)
			refused++;
		free(copy);
	}
	CHECK(refused > 0);

	/* the OpenMetrics rendering of the same figures: counters keep their
	 * _total, a _created may follow, # EOF closes */
	static const char om[] = "# TYPE node_cpu_seconds counter\n"
				 "# UNIT node_cpu_seconds seconds\n"
				 "# HELP node_cpu_seconds Seconds the CPUs spent in each mode.\n"
				 "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100.0\n"
				 "node_cpu_seconds_created{cpu=\"0\",mode=\"idle\"} 1.7e9\n"
				 "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 50.0\n"
				 "node_memory_MemAvailable_bytes 5.0e8\n"
				 "node_memory_MemTotal_bytes 1.0e9\n"
				 "# EOF\n";
	CHECK(metrics_sample_parse(om, sizeof(om) - 1, 0, &cut, &error) == 0);
	CHECK(cut.cpu_count == 1 && near(cut.cpu_idle_s, 100) && near(cut.cpu_total_s, 150));
	CHECK(metrics_sample_check(&cut, &error) == 0);

	free(a_str);
	free(b_str);
	free(a);
	free(b);
}

/* A page with two CPUs; iowait counts as idle, steal as busy. */
static void page_printf(char *dst, size_t size, double idle, double iowait, double user,
			double steal, double avail, double total, const char *disks)
{
	snprintf(dst, size,
		 "# TYPE node_cpu_seconds_total counter\n"
		 "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"0\",mode=\"iowait\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"0\",mode=\"steal\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"1\",mode=\"iowait\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"1\",mode=\"user\"} %.17g\n"
		 "node_cpu_seconds_total{cpu=\"1\",mode=\"steal\"} %.17g\n"
		 "node_memory_MemAvailable_bytes %.17g\n"
		 "node_memory_MemTotal_bytes %.17g\n"
		 "%s",
		 idle, iowait, user, steal, idle, iowait, user, steal, avail, total, disks);
}

static void sample_of(struct metrics_sample *s, int64_t time_ms, double idle, double iowait,
		      double user, double steal, double avail, double total, const char *disks)
{
	char page[4096];
	const char *error = NULL;
	page_printf(page, sizeof(page), idle, iowait, user, steal, avail, total, disks);
	int ret = metrics_sample_parse(page, strlen(page), time_ms, s, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  sample: %s\n", error);
}

static void test_resources(void)
{
	static struct metrics_sample a, b;
	struct balance_resources res;
	const char *error = NULL;
	const char *disks_a = "node_disk_io_time_seconds_total{device=\"sda\"} 100\n"
			      "node_disk_io_time_seconds_total{device=\"nvme0n1\"} 50\n"
			      "node_disk_io_time_seconds_total{device=\"dm-0\"} 100\n"
			      "node_disk_io_time_seconds_total{device=\"loop0\"} 0\n"
			      "node_disk_io_time_seconds_total{device=\"zram0\"} 0\n";
	/* over 10 s: sda busy 2.5 s, nvme0n1 6 s, dm-0 9 s (not counted: sda
	 * and nvme0n1 are there), loop0 and zram0 ignored */
	const char *disks_b = "node_disk_io_time_seconds_total{device=\"sda\"} 102.5\n"
			      "node_disk_io_time_seconds_total{device=\"nvme0n1\"} 56\n"
			      "node_disk_io_time_seconds_total{device=\"dm-0\"} 109\n"
			      "node_disk_io_time_seconds_total{device=\"loop0\"} 9\n"
			      "node_disk_io_time_seconds_total{device=\"zram0\"} 9\n"
			      "node_disk_io_time_seconds_total{device=\"sdz\"} 1000\n";
	/* per CPU over 10 s: idle +4, iowait +1, user +4, steal +1: busy 50% */
	sample_of(&a, 10000, 100, 10, 50, 5, 4e9, 16e9, disks_a);
	sample_of(&b, 20000, 104, 11, 54, 6, 2e9, 16e9, disks_b);
	CHECK(a.disk_count == 3 && a.disks_ignored == 2);
	CHECK(b.disk_count == 4 && b.disks[2].stacked && !b.disks[0].stacked);
	CHECK(metrics_resources(&a, &b, &res, &error) == 0);
	CHECK(res.samples == 1);
	CHECK(near(res.cpu_busy, 0.5));
	CHECK(near(res.mem_available, 0.125));
	CHECK(near(res.io_busy, 0.6)); /* nvme0n1; sdz is new since a */

	/* only stacked disks: they count */
	sample_of(&a, 10000, 100, 10, 50, 5, 4e9, 16e9,
		  "node_disk_io_time_seconds_total{device=\"md0\"} 10\n"
		  "node_disk_io_time_seconds_total{device=\"drbd1\"} 10\n");
	sample_of(&b, 12000, 101, 10, 50, 5, 4e9, 16e9,
		  "node_disk_io_time_seconds_total{device=\"md0\"} 10.5\n"
		  "node_disk_io_time_seconds_total{device=\"drbd1\"} 13\n");
	CHECK(metrics_resources(&a, &b, &res, &error) == 0);
	CHECK(near(res.io_busy, 1.0)); /* 3 s in 2 s: clamped */
	CHECK(near(res.cpu_busy, 0.0));

	/* no disks at all: io_busy 0 */
	sample_of(&a, 10000, 100, 10, 50, 5, 4e9, 16e9, "");
	sample_of(&b, 11000, 100, 10, 51, 5, 17e9, 16e9, "");
	CHECK(metrics_resources(&a, &b, &res, &error) == 0);
	CHECK(near(res.io_busy, 0) && near(res.cpu_busy, 1.0));
	CHECK(near(res.mem_available, 1.0)); /* more available than total: clamped */

	/* cannot be compared */
	sample_of(&a, 10000, 100, 10, 50, 5, 4e9, 16e9, disks_a);
	sample_of(&b, 10000, 101, 10, 51, 5, 4e9, 16e9, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "not taken one after the other"));
	CHECK(res.samples == 0);
	CHECK(metrics_resources(&b, &a, &res, &error) == -1);

	sample_of(&b, 20000, 100, 10, 50, 5, 4e9, 16e9, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "no CPU time passed"));

	/* a reboot: every counter starts again */
	sample_of(&b, 20000, 3, 0, 1, 0, 4e9, 16e9, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "node_cpu_seconds_total went back"));
	CHECK(contains(error, "counter reset"));

	/* one disk's counter went back (hot-swapped) */
	sample_of(&b, 20000, 101, 10, 51, 5, 4e9, 16e9,
		  "node_disk_io_time_seconds_total{device=\"sda\"} 1\n");
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "{device=\"sda\"} went back from 100.000 to 1.000"));

	/* a little iowait lost is not a reset (the kernel's estimate): idle
	 * + iowait -0.3 s per CPU counts as no idle time */
	sample_of(&b, 20000, 100.2, 9.5, 52, 5, 4e9, 16e9, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == 0);
	CHECK(near(res.cpu_busy, 1.0));
	/* iowait is idle: per CPU idle +1, iowait +1, user +2 */
	sample_of(&b, 20000, 101, 11, 52, 5, 4e9, 16e9, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == 0);
	CHECK(near(res.cpu_busy, 0.5));

	/* a CPU came online */
	char page[4096];
	page_printf(page, sizeof(page), 101, 10, 51, 5, 4e9, 16e9, "");
	strcat(page, "node_cpu_seconds_total{cpu=\"2\",mode=\"idle\"} 1\n");
	CHECK(metrics_sample_parse(page, strlen(page), 20000, &b, &error) == 0);
	CHECK(b.cpu_count == 3);
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK_STR(error, "the number of CPUs changed from 2 to 3");

	/* missing metrics */
	static const char no_mem[] = "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1\n";
	CHECK(metrics_sample_parse(no_mem, sizeof(no_mem) - 1, 20000, &b, &error) == 0);
	CHECK(metrics_sample_check(&b, &error) == -1);
	CHECK_STR(error, "no node_memory_MemTotal_bytes among its 1 series");
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "no node_memory_MemTotal_bytes"));
	static const char no_avail[] = "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1\n"
				       "node_memory_MemTotal_bytes 1e9\n";
	CHECK(metrics_sample_parse(no_avail, sizeof(no_avail) - 1, 20000, &b, &error) == 0);
	CHECK(metrics_sample_check(&b, &error) == -1);
	CHECK(contains(error, "no node_memory_MemAvailable_bytes"));
	static const char other[] = "# a Dovecot page, not node_exporter's\n"
				    "dovecot_auth_success_total 5\n";
	CHECK(metrics_sample_parse(other, sizeof(other) - 1, 20000, &b, &error) == 0);
	CHECK(metrics_sample_check(&b, &error) == -1);
	CHECK_STR(error, "no node_cpu_seconds_total{mode=\"idle\"} among its 1 series");
	CHECK(metrics_resources(&b, &a, &res, &error) == -1);

	/* not numbers */
	sample_of(&b, 20000, NAN, 10, 51, 5, 4e9, 16e9, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "not a finite number"));
	sample_of(&b, 20000, 101, 10, 51, 5, 4e9, 0, disks_a);
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "MemTotal_bytes 0"));
	sample_of(&b, 20000, 101, 10, 51, 5, 4e9, 16e9,
		  "node_disk_io_time_seconds_total{device=\"sda\"} +Inf\n");
	CHECK(metrics_resources(&a, &b, &res, &error) == -1);
	CHECK(contains(error, "{device=\"sda\"} is not a finite number"));

	/* more disks than kept; names too long */
	char many[METRICS_DISK_MAX * 64 + 256];
	size_t n = 0;
	for (unsigned i = 0; i < METRICS_DISK_MAX + 3; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n,
				      "node_disk_io_time_seconds_total{device=\"sd%u\"} 1\n", i);
	snprintf(many + n, sizeof(many) - n,
		 "node_disk_io_time_seconds_total{device=\"%0100d\"} 1\n"
		 "node_disk_io_time_seconds_total{other=\"x\"} 1\n",
		 7);
	CHECK(metrics_sample_parse(many, strlen(many), 0, &b, &error) == 0);
	CHECK(b.disk_count == METRICS_DISK_MAX && b.disks_dropped == 4);
}

static void test_average(void)
{
	static struct metrics_average avg;
	static struct metrics_sample s;
	struct balance_resources res;
	const char *error = NULL;

	metrics_average_init(&avg, 3);
	metrics_average_get(&avg, &res);
	CHECK(res.samples == 0 && res.cpu_busy == 0 && res.mem_available == 0);

	/* the first sample only starts it */
	sample_of(&s, 0, 0, 0, 0, 0, 8e9, 16e9, "");
	CHECK(metrics_average_add(&avg, &s, &error) == 0);
	metrics_average_get(&avg, &res);
	CHECK(res.samples == 0);

	/* pairs with cpu_busy 0.25, 0.5, 0.75, 1.0 (per CPU per second:
	 * user and idle share one second); memory 50%, then 25% */
	double idle = 0, user = 0;
	static const double busy[] = {0.25, 0.5, 0.75, 1.0};
	for (int i = 0; i < 4; i++) {
		idle += 1 - busy[i];
		user += busy[i];
		sample_of(&s, (i + 1) * 1000, idle, 0, user, 0, i < 2 ? 8e9 : 4e9, 16e9, "");
		CHECK(metrics_average_add(&avg, &s, &error) == 0);
		metrics_average_get(&avg, &res);
		CHECK(res.samples == (unsigned)(i < 3 ? i + 1 : 3));
	}
	/* the last three: 0.5, 0.75, 1.0; memory 0.5, 0.25, 0.25 */
	CHECK(near(res.cpu_busy, 0.75));
	CHECK(near(res.mem_available, 1.0 / 3.0));
	CHECK(near(res.io_busy, 0));

	/* a reset: refused, the figures stay, the next pair counts again */
	sample_of(&s, 5000, 1, 0, 1, 0, 8e9, 16e9, "");
	CHECK(metrics_average_add(&avg, &s, &error) == -1);
	CHECK(contains(error, "counter reset"));
	metrics_average_get(&avg, &res);
	CHECK(res.samples == 3 && near(res.cpu_busy, 0.75));
	sample_of(&s, 6000, 1, 0, 3, 0, 8e9, 16e9, "");
	CHECK(metrics_average_add(&avg, &s, &error) == 0);
	metrics_average_get(&avg, &res);
	CHECK(res.samples == 3 && near(res.cpu_busy, (0.75 + 1.0 + 1.0) / 3));

	metrics_average_reset(&avg);
	metrics_average_get(&avg, &res);
	CHECK(res.samples == 0 && avg.window == 3 && !avg.has_prev);

	metrics_average_init(&avg, 0);
	CHECK(avg.window == 1);
	metrics_average_init(&avg, 1000);
	CHECK(avg.window == METRICS_AVERAGE_MAX);
}

/* ---- metrics_scrape() against a fake server ---- */

/* Serves answer to one connection (reads the request head first); returns
 * the port.  *pid_r: wait for it. */
static int serve_once(const char *answer, pid_t *pid_r)
{
	int listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sin_len = sizeof(sin);
	CHECK(listen_fd >= 0);
	CHECK(bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(listen(listen_fd, 4) == 0);
	CHECK(getsockname(listen_fd, (struct sockaddr *)&sin, &sin_len) == 0);
	fflush(NULL);
	*pid_r = fork();
	if (*pid_r == 0) {
		signal(SIGPIPE, SIG_IGN);
		int fd = accept(listen_fd, NULL, NULL);
		char buf[8192];
		size_t len = 0;
		while (len < sizeof(buf) - 1) {
			ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
			if (n <= 0)
				break;
			len += (size_t)n;
			buf[len] = '\0';
			if (strstr(buf, "\r\n\r\n") != NULL)
				break;
		}
		/* the request must ask for the text format */
		if (strncmp(buf, "GET /metrics HTTP/1.1\r\n", 23) != 0 ||
		    strstr(buf, "\r\nAccept: text/plain;version=0.0.4") == NULL)
			_exit(3);
		size_t answer_len = strlen(answer), off = 0;
		while (off < answer_len) {
			ssize_t n = write(fd, answer + off, answer_len - off);
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		close(fd);
		_exit(0);
	}
	close(listen_fd);
	return ntohs(sin.sin_port);
}

static int scrape_answer(const char *answer, struct metrics_sample *sample, const char **error_r,
			 char *url, size_t url_size)
{
	pid_t pid;
	int port = serve_once(answer, &pid);
	snprintf(url, url_size, "http://127.0.0.1:%d/metrics", port);
	int ret = metrics_scrape(url, 3000, sample, error_r);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return ret;
}

static void test_scrape(void)
{
	static struct metrics_sample sample;
	const char *error = NULL;
	char url[64], expected[256];

	/* chunked, as node_exporter sends it */
	static const char body[] = "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 10\n"
				   "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 30\n"
				   "node_memory_MemAvailable_bytes 1e9\n"
				   "node_memory_MemTotal_bytes 4e9\n";
	char chunked[1024];
	snprintf(chunked, sizeof(chunked),
		 "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		 "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
		 strlen(body), body);
	int ret = scrape_answer(chunked, &sample, &error, url, sizeof(url));
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  scrape: %s\n", error);
	CHECK(sample.cpu_count == 1 && near(sample.cpu_total_s, 40));
	CHECK(sample.time_ms > 0);

	/* OpenMetrics content type */
	char om[1024];
	snprintf(om, sizeof(om),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; "
		 "version=1.0.0; charset=utf-8\r\nContent-Length: %zu\r\n\r\n%s# EOF\n",
		 strlen(body) + 6, body);
	CHECK(scrape_answer(om, &sample, &error, url, sizeof(url)) == 0);

	/* an HTML page */
	CHECK(scrape_answer("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
			    "Content-Length: 15\r\n\r\n<html></html>\r\n",
			    &sample, &error, url, sizeof(url)) == -1);
	snprintf(expected, sizeof(expected),
		 "metrics scrape of %s: the answer is text/html; charset=utf-8, not metrics "
		 "text (is the URL node_exporter's /metrics?)",
		 url);
	CHECK_STR(error, expected);

	/* HTML said to be text */
	CHECK(scrape_answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n<html>\n", &sample,
			    &error, url, sizeof(url)) == -1);
	snprintf(expected, sizeof(expected),
		 "metrics scrape of %s: not a metrics page: line 1: not a metric line: "
		 "'<html>'",
		 url);
	CHECK_STR(error, expected);

	/* metrics, but not node_exporter's */
	CHECK(scrape_answer("HTTP/1.1 200 OK\r\n\r\nup 1\n", &sample, &error, url, sizeof(url)) ==
	      -1);
	CHECK(contains(error, ": no node_cpu_seconds_total{mode=\"idle\"} among its 1 series (is "
			      "the URL node_exporter's /metrics?)"));

	CHECK(scrape_answer("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", &sample, &error,
			    url, sizeof(url)) == -1);
	CHECK(contains(error, ": HTTP 404 Not Found (the path is usually /metrics)"));
	CHECK(scrape_answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
			    &sample, &error, url, sizeof(url)) == -1);
	CHECK(contains(error, ": HTTP 503 Service Unavailable: busy"));

	/* bigger than METRICS_SCRAPE_BODY_MAX */
	CHECK(scrape_answer("HTTP/1.1 200 OK\r\nContent-Length: 9000000\r\n\r\nx", &sample, &error,
			    url, sizeof(url)) == -1);
	CHECK(contains(error, "9000000 bytes, more than the 8388608 accepted"));

	/* nobody listening */
	int probe = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sin_len = sizeof(sin);
	CHECK(bind(probe, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(getsockname(probe, (struct sockaddr *)&sin, &sin_len) == 0);
	close(probe);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", ntohs(sin.sin_port));
	CHECK(metrics_scrape(url, 3000, &sample, &error) == -1);
	snprintf(expected, sizeof(expected),
		 "metrics scrape of %s: connection refused by 127.0.0.1:%d (is node_exporter "
		 "running there?)",
		 url, ntohs(sin.sin_port));
	CHECK_STR(error, expected);

	CHECK(metrics_scrape("https://127.0.0.1:1/metrics", 100, &sample, &error) == -1);
	CHECK_STR(error, "metrics scrape of https://127.0.0.1:1/metrics: https is not "
			 "supported, only http://");
}

void suite_openmetrics(void)
{
	test_reader();
	test_reader_garbage();
	test_real_pages();
	test_resources();
	test_average();
	test_scrape();
}
