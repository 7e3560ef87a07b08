/* openmetrics.h - reading a host's resource figures from its node_exporter.
 *
 * Three parts, each usable alone:
 *
 *   - a reader of the Prometheus text exposition format (0.0.4) and of
 *     OpenMetrics text 1.0, as node_exporter and Dovecot serve them:
 *         # HELP name text          # TYPE name counter       # EOF
 *         name{label="value",other="a \"quoted\" \\ value\n"} 1.5e+06 [timestamp]
 *     It walks a buffer in place, one series per call, and copies nothing
 *     (a label value is decoded only when asked for, into the caller's
 *     buffer).  Blank lines and comments are skipped; "# EOF" ends the page;
 *     values may be NaN, +Inf, -Inf; an OpenMetrics exemplar after the value
 *     (" # {...} 1") is skipped.  A line that fits neither format is an
 *     error naming its number: a page with one bad line is refused whole,
 *     as Prometheus refuses it.
 *
 *   - metrics_sample_parse(): what balancing needs from one node_exporter
 *     page, summed while reading:
 *         node_cpu_seconds_total{cpu,mode}      idle (idle + iowait) and total,
 *                                               summed over the CPUs
 *         node_memory_MemAvailable_bytes        gauges
 *         node_memory_MemTotal_bytes
 *         node_disk_io_time_seconds_total{device}  per device
 *
 *   - metrics_resources(): two samples of the same host -> struct
 *     balance_resources (brain/balance.h), and struct metrics_average, which
 *     averages those over the last N pairs.
 *
 * Figures (see balance.h):
 *   cpu_busy       1 - d(idle + iowait) / d(all modes), over all CPUs.  Time
 *                  waiting for IO is idle CPU (the disk figure shows the
 *                  wait); steal is busy (the host cannot use it).
 *   mem_available  MemAvailable / MemTotal of the newer sample.
 *   io_busy        the busiest disk: max over devices of d(io_time) /
 *                  d(scrape time), clamped to 0..1.
 *
 * Which devices count.  node_exporter already leaves out partitions and
 * ram*, loop*, fd* (its default --collector.diskstats.device-exclude); we
 * also drop those, zram* and sr* (memory and optical drives, not where
 * mail lives).  Devices stacked on other disks - dm-* (LVM, dm-crypt),
 * md<N> (software RAID), drbd* - count only when the page has no other
 * disk: their busy time repeats their disks' (or, for a volume striped
 * over several disks, overstates each disk's), and balance.h wants "the
 * busiest disk".  A page with no disk at all (diskless, mail on NFS) has
 * io_busy 0.
 *
 * Nothing here allocates; the errors are sentences in a thread-local
 * buffer, valid until the same thread's next call into this module.
 */
#ifndef OPENMETRICS_H
#define OPENMETRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct balance_resources; /* brain/balance.h: a plain struct of figures */

/* ---- the exposition format reader ---- */

struct openmetrics_reader {
	const char *pos, *end;
	unsigned line; /* of the last line read, from 1 */
	bool eof;      /* "# EOF" was read */
};

/* One series (sample line).  The pointers are into the buffer. */
struct openmetrics_series {
	const char *name;
	size_t name_len;
	const char *labels; /* between the braces, as written (checked) */
	size_t labels_len;
	double value;
	bool has_timestamp;
	double timestamp; /* as written: ms (0.0.4) or seconds (OpenMetrics) */
	unsigned line;
};

void openmetrics_reader_init(struct openmetrics_reader *reader, const char *text, size_t len);
/* The next series: 1 with *series_r, 0 at the end of the text or after
 * "# EOF", -1 with *error_r ("line 7: ..."). */
int openmetrics_next(struct openmetrics_reader *reader, struct openmetrics_series *series_r,
		     const char **error_r);
/* Whether the series is called name. */
bool openmetrics_name_is(const struct openmetrics_series *series, const char *name);
/* The decoded value of the label called name into dst: 1 found, 0 absent,
 * -1 longer than size - 1 bytes (dst is then ""). */
int openmetrics_label(const struct openmetrics_series *series, const char *name, char *dst,
		      size_t size);

/* ---- one node_exporter page ---- */

/* Disks kept per sample; more are counted in disks_dropped. */
#define METRICS_DISK_MAX 128
/* The longest device name kept (longer ones are dropped, counted). */
#define METRICS_DEVICE_NAME_MAX 63

struct metrics_disk {
	char name[METRICS_DEVICE_NAME_MAX + 1];
	bool stacked;     /* dm-*, md<N>, drbd*: counts only without other disks */
	double io_time_s; /* node_disk_io_time_seconds_total */
};

struct metrics_sample {
	int64_t time_ms; /* when it was scraped, on a monotonic ms clock */
	bool has_cpu, has_mem_available, has_mem_total;
	unsigned cpu_count; /* series with mode="idle" */
	double cpu_idle_s;  /* sum over CPUs of modes idle and iowait */
	double cpu_total_s; /* sum over CPUs of every mode */
	double mem_available_bytes, mem_total_bytes;
	struct metrics_disk disks[METRICS_DISK_MAX];
	unsigned disk_count;
	unsigned disks_ignored; /* loop*, ram*, zram*, fd*, sr* */
	unsigned disks_dropped; /* beyond METRICS_DISK_MAX or names too long */
	unsigned series;        /* every series on the page */
};

/* Reads a page into *sample_r (time_ms is set to time_ms).  0 even when
 * the page lacks some metric (the has_* flags say; metrics_resources()
 * refuses it), -1 with *error_r when the page is not in the format. */
int metrics_sample_parse(const char *text, size_t len, int64_t time_ms,
			 struct metrics_sample *sample_r, const char **error_r);
/* -1 with *error_r naming the first metric balancing needs that the sample
 * lacks (the CPU and memory ones; disks are optional). */
int metrics_sample_check(const struct metrics_sample *sample, const char **error_r);

/* ---- resources from two samples ---- */

/* The host's resources between prev and cur (out->samples = 1).  -1 with
 * *error_r when they cannot be compared: a metric is missing or not a
 * finite number, cur is not later than prev, a counter went backwards (the
 * host restarted), the number of CPUs changed, or no CPU time passed. */
int metrics_resources(const struct metrics_sample *prev, const struct metrics_sample *cur,
		      struct balance_resources *out, const char **error_r);

/* The average of the resources of the last `window` pairs of consecutive
 * samples.  Feed every scraped sample; the first one only starts it. */
#define METRICS_AVERAGE_MAX 64

struct metrics_average {
	unsigned window; /* 1..METRICS_AVERAGE_MAX */
	unsigned count;  /* figures held, <= window */
	unsigned next;   /* where the next figures go */
	struct {
		double cpu_busy, mem_available, io_busy;
	} figures[METRICS_AVERAGE_MAX];
	bool has_prev;
	struct metrics_sample prev;
};

/* window is clamped to 1..METRICS_AVERAGE_MAX.  Balancing uses a host's
 * figures once samples >= metrics_min_samples, so window must be at least
 * that. */
void metrics_average_init(struct metrics_average *avg, unsigned window);
/* Forgets everything (the host was unreachable too long, or was replaced). */
void metrics_average_reset(struct metrics_average *avg);
/* Compares sample with the previous one and adds the result.  The sample
 * becomes the previous one either way (after a counter reset the next pair
 * compares again); -1 with *error_r (metrics_resources()'s) when it could
 * not be compared: the figures held so far stay. */
int metrics_average_add(struct metrics_average *avg, const struct metrics_sample *sample,
			const char **error_r);
/* The average of the figures held; out->samples = how many (0: all 0). */
void metrics_average_get(const struct metrics_average *avg, struct balance_resources *out);

#endif
