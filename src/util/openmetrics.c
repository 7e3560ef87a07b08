/* openmetrics.c - see openmetrics.h.
 *
 * The reader takes one line at a time (memchr for the LF), and cuts it with
 * a cursor: name, optional {labels}, value, optional timestamp, optional
 * exemplar.  Labels are checked once when the line is read and scanned
 * again, in place, when a caller asks for one (pages are small and the
 * caller asks for one or two labels of the few series it wants).  Numbers
 * are read by strtod() from a copy on the stack, so that it cannot run past
 * the token.
 *
 * The sample and the resources use this header's brain type
 * (struct balance_resources) as a plain struct; nothing of the brain's
 * code is called.
 */
#include "util/openmetrics.h"

#include "brain/balance.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest number token read (Go writes at most ~24 characters). */
#define NUMBER_MAX 64

static __thread char metrics_error[512];

static int __attribute__((format(printf, 2, 3))) fail(const char **error_r, const char *fmt, ...)
{
	char text[sizeof(metrics_error)]; /* the arguments may quote metrics_error */
	va_list args;
	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	memcpy(metrics_error, text, sizeof(metrics_error));
	*error_r = metrics_error;
	return -1;
}

/* ---- the exposition format reader ---- */

void openmetrics_reader_init(struct openmetrics_reader *reader, const char *text, size_t len)
{
	reader->pos = text;
	reader->end = text + len;
	reader->line = 0;
	reader->eof = false;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9');
}

static const char *skip_blanks(const char *p, const char *end)
{
	while (p < end && is_blank(*p))
		p++;
	return p;
}

/* Fails with "line N: what: 'the line'" (quoted briefly, controls blanked). */
static int line_fail(const char **error_r, unsigned line, const char *start, const char *end,
		     const char *what)
{
	char quote[61];
	size_t len = (size_t)(end - start) < sizeof(quote) - 1 ? (size_t)(end - start)
							       : sizeof(quote) - 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)start[i];
		quote[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	quote[len] = '\0';
	return fail(error_r, "line %u: %s: '%s%s'", line, what, quote,
		    (size_t)(end - start) > len ? "..." : "");
}

/* The quoted string at *p (at its opening quote): moves *p past the closing
 * quote; false if it does not close on this line. */
static bool scan_quoted(const char **p, const char *end)
{
	const char *q = *p + 1;
	while (q < end) {
		if (*q == '"') {
			*p = q + 1;
			return true;
		}
		if (*q == '\\') {
			if (q + 1 >= end)
				return false;
			q += 2;
			continue;
		}
		q++;
	}
	return false;
}

/* Reads a number token at p (up to a blank or the end); false if it is not
 * one. */
static bool read_number(const char *p, const char *token_end, double *value_r)
{
	char buf[NUMBER_MAX + 1];
	size_t len = (size_t)(token_end - p);
	if (len == 0 || len > NUMBER_MAX)
		return false;
	memcpy(buf, p, len);
	buf[len] = '\0';
	char *end;
	*value_r = strtod(buf, &end);
	return end == buf + len;
}

static const char *token_end(const char *p, const char *end)
{
	while (p < end && !is_blank(*p))
		p++;
	return p;
}

/* Checks the labels between the braces (p just after "{"); sets
 * *close_r to the "}".  The first item may be a quoted metric name
 * (Prometheus 3's {"name.with.dots", label="v"}), then *name_r is set. */
static bool scan_labels(const char *p, const char *end, const char **close_r, const char **name_r,
			size_t *name_len_r)
{
	bool first = true;
	for (;;) {
		p = skip_blanks(p, end);
		if (p < end && *p == '}') {
			*close_r = p;
			return true;
		}
		/* a label name, plain or quoted */
		const char *item = p;
		if (p < end && *p == '"') {
			if (!scan_quoted(&p, end))
				return false;
		} else if (p < end && is_name_start(*p) && *p != ':') {
			while (p < end && is_name_char(*p) && *p != ':')
				p++;
		} else {
			return false;
		}
		const char *item_end = p;
		p = skip_blanks(p, end);
		if (p < end && *p == '=') {
			p = skip_blanks(p + 1, end);
			if (p >= end || *p != '"' || !scan_quoted(&p, end))
				return false;
		} else if (first && *item == '"' && *name_r == NULL) {
			*name_r = item + 1;
			*name_len_r = (size_t)(item_end - item) - 2;
		} else {
			return false;
		}
		first = false;
		p = skip_blanks(p, end);
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == '}') {
			*close_r = p;
			return true;
		}
		return false;
	}
}

/* Parses one sample line [start, end) into *s. */
static int parse_series(const char *start, const char *end, unsigned line,
			struct openmetrics_series *s, const char **error_r)
{
	const char *p = skip_blanks(start, end);

	memset(s, 0, sizeof(*s));
	s->line = line;
	if (is_name_start(*p)) {
		s->name = p;
		while (p < end && is_name_char(*p))
			p++;
		s->name_len = (size_t)(p - s->name);
	} else if (*p != '{') {
		return line_fail(error_r, line, start, end, "not a metric line");
	}
	const char *brace = skip_blanks(p, end);
	if (brace < end && *brace == '{') {
		const char *close;
		if (!scan_labels(brace + 1, end, &close, &s->name, &s->name_len))
			return line_fail(error_r, line, start, end, "malformed labels");
		s->labels = brace + 1;
		s->labels_len = (size_t)(close - s->labels);
		p = close + 1;
	}
	if (s->name == NULL)
		return line_fail(error_r, line, start, end, "no metric name");
	if (p >= end || !is_blank(*p))
		return line_fail(error_r, line, start, end,
				 "expected a blank and a value after the name");
	p = skip_blanks(p, end);
	const char *value_end = token_end(p, end);
	if (!read_number(p, value_end, &s->value))
		return line_fail(error_r, line, start, end, "the value is not a number");
	p = skip_blanks(value_end, end);
	if (p < end && *p != '#') {
		const char *ts_end = token_end(p, end);
		if (!read_number(p, ts_end, &s->timestamp) || !isfinite(s->timestamp))
			return line_fail(error_r, line, start, end,
					 "the timestamp is not a number");
		s->has_timestamp = true;
		p = skip_blanks(ts_end, end);
	}
	/* OpenMetrics: an exemplar (" # {trace_id="x"} 1 ts") may follow; it
	 * is not used */
	if (p < end && *p != '#')
		return line_fail(error_r, line, start, end, "junk after the value");
	return 0;
}

int openmetrics_next(struct openmetrics_reader *r, struct openmetrics_series *series_r,
		     const char **error_r)
{
	while (!r->eof && r->pos < r->end) {
		const char *start = r->pos;
		const char *nl = memchr(start, '\n', (size_t)(r->end - start));
		const char *end = nl != NULL ? nl : r->end;
		r->pos = nl != NULL ? nl + 1 : r->end;
		r->line++;
		if (end > start && end[-1] == '\r')
			end--;
		const char *p = skip_blanks(start, end);
		const char *last = end;
		while (last > p && is_blank(last[-1]))
			last--;
		if (p == last)
			continue; /* blank line */
		if (*p == '#') {
			/* # HELP, # TYPE, # UNIT or any comment; # EOF ends it */
			if (last - p == 5 && memcmp(p, "# EOF", 5) == 0)
				r->eof = true;
			continue;
		}
		if (parse_series(start, last, r->line, series_r, error_r) < 0)
			return -1;
		return 1;
	}
	return 0;
}

bool openmetrics_name_is(const struct openmetrics_series *series, const char *name)
{
	size_t len = strlen(name);
	return series->name_len == len && memcmp(series->name, name, len) == 0;
}

/* Decodes the quoted string at q (its opening quote) into dst; -1 if it
 * does not fit. */
static int decode_quoted(const char *q, const char *end, char *dst, size_t size)
{
	size_t n = 0;
	for (q++; q < end && *q != '"'; q++) {
		char c = *q;
		if (c == '\\' && q + 1 < end) {
			char e = *++q;
			if (e == 'n') {
				c = '\n';
			} else if (e == '\\' || e == '"') {
				c = e;
			} else {
				/* an unknown escape stays as written */
				if (n + 1 >= size)
					goto too_long;
				dst[n++] = '\\';
				c = e;
			}
		}
		if (n + 1 >= size)
			goto too_long;
		dst[n++] = c;
	}
	if (size > 0)
		dst[n] = '\0';
	return 0;
too_long:
	if (size > 0)
		dst[0] = '\0';
	return -1;
}

int openmetrics_label(const struct openmetrics_series *series, const char *name, char *dst,
		      size_t size)
{
	size_t name_len = strlen(name);
	const char *p = series->labels, *end = series->labels + series->labels_len;
	if (size > 0)
		dst[0] = '\0';
	if (p == NULL)
		return 0;
	/* the labels were checked when the line was read */
	while (p < end) {
		p = skip_blanks(p, end);
		if (p >= end)
			break;
		const char *item = p, *item_end;
		bool quoted = *p == '"';
		if (quoted) {
			scan_quoted(&p, end);
			item_end = p;
		} else {
			while (p < end && is_name_char(*p))
				p++;
			item_end = p;
		}
		p = skip_blanks(p, end);
		if (p < end && *p == '=') {
			p = skip_blanks(p + 1, end);
			const char *value = p;
			scan_quoted(&p, end);
			bool match;
			if (quoted) {
				char label[128];
				match = decode_quoted(item, item_end, label, sizeof(label)) == 0 &&
					strcmp(label, name) == 0;
			} else {
				match = (size_t)(item_end - item) == name_len &&
					memcmp(item, name, name_len) == 0;
			}
			if (match)
				return decode_quoted(value, end, dst, size) < 0 ? -1 : 1;
		}
		p = skip_blanks(p, end);
		if (p < end && *p == ',')
			p++;
	}
	return 0;
}

/* ---- one node_exporter page ---- */

static bool has_prefix(const char *name, const char *prefix)
{
	return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* Not where mail lives: memory, loop and removable devices. */
static bool disk_ignored(const char *name)
{
	return has_prefix(name, "loop") || has_prefix(name, "ram") || has_prefix(name, "zram") ||
	       has_prefix(name, "fd") || has_prefix(name, "sr");
}

/* On top of other disks: device mapper, software RAID, DRBD. */
static bool disk_stacked(const char *name)
{
	return has_prefix(name, "dm-") || has_prefix(name, "drbd") ||
	       (has_prefix(name, "md") && name[2] >= '0' && name[2] <= '9');
}

static void sample_add_disk(struct metrics_sample *sample, const struct openmetrics_series *s)
{
	char device[METRICS_DEVICE_NAME_MAX + 1];
	int ret = openmetrics_label(s, "device", device, sizeof(device));
	if (ret == 0)
		return; /* not a device's */
	if (ret < 0 || sample->disk_count == METRICS_DISK_MAX) {
		sample->disks_dropped++;
		return;
	}
	if (disk_ignored(device)) {
		sample->disks_ignored++;
		return;
	}
	struct metrics_disk *disk = &sample->disks[sample->disk_count++];
	memcpy(disk->name, device, sizeof(disk->name));
	disk->stacked = disk_stacked(device);
	disk->io_time_s = s->value;
}

int metrics_sample_parse(const char *text, size_t len, int64_t time_ms,
			 struct metrics_sample *sample_r, const char **error_r)
{
	struct openmetrics_reader reader;
	struct openmetrics_series s;
	int ret;

	memset(sample_r, 0, sizeof(*sample_r));
	sample_r->time_ms = time_ms;
	openmetrics_reader_init(&reader, text, len);
	while ((ret = openmetrics_next(&reader, &s, error_r)) > 0) {
		sample_r->series++;
		/* every name of interest starts so; most lines are skipped here */
		if (s.name_len < 5 || memcmp(s.name, "node_", 5) != 0)
			continue;
		if (openmetrics_name_is(&s, "node_cpu_seconds_total")) {
			char mode[32];
			if (openmetrics_label(&s, "mode", mode, sizeof(mode)) <= 0)
				continue;
			sample_r->has_cpu = true;
			sample_r->cpu_total_s += s.value;
			if (strcmp(mode, "idle") == 0) {
				sample_r->cpu_idle_s += s.value;
				sample_r->cpu_count++;
			} else if (strcmp(mode, "iowait") == 0) {
				sample_r->cpu_idle_s += s.value;
			}
		} else if (openmetrics_name_is(&s, "node_memory_MemAvailable_bytes")) {
			sample_r->has_mem_available = true;
			sample_r->mem_available_bytes = s.value;
		} else if (openmetrics_name_is(&s, "node_memory_MemTotal_bytes")) {
			sample_r->has_mem_total = true;
			sample_r->mem_total_bytes = s.value;
		} else if (openmetrics_name_is(&s, "node_disk_io_time_seconds_total")) {
			sample_add_disk(sample_r, &s);
		}
	}
	return ret;
}

int metrics_sample_check(const struct metrics_sample *sample, const char **error_r)
{
	if (!sample->has_cpu || sample->cpu_count == 0)
		return fail(error_r, "no node_cpu_seconds_total{mode=\"idle\"} among its %u series",
			    sample->series);
	if (!sample->has_mem_total)
		return fail(error_r, "no node_memory_MemTotal_bytes among its %u series",
			    sample->series);
	if (!sample->has_mem_available)
		return fail(error_r,
			    "no node_memory_MemAvailable_bytes among its %u series (a Linux "
			    "kernel before 3.14?)",
			    sample->series);
	return 0;
}

/* ---- resources from two samples ---- */

static double clamp01(double value)
{
	return value < 0 ? 0 : value > 1 ? 1 : value;
}

static const struct metrics_disk *disk_find(const struct metrics_sample *sample, const char *name)
{
	for (unsigned i = 0; i < sample->disk_count; i++) {
		if (strcmp(sample->disks[i].name, name) == 0)
			return &sample->disks[i];
	}
	return NULL;
}

/* The busiest disk of one class between the samples: 1 with *busy_r,
 * 0 if no disk of the class is in both, -1 on a counter reset. */
static int disks_busy(const struct metrics_sample *prev, const struct metrics_sample *cur,
		      bool stacked, double wall_s, double *busy_r, const char **error_r)
{
	int found = 0;
	*busy_r = 0;
	for (unsigned i = 0; i < cur->disk_count; i++) {
		const struct metrics_disk *now = &cur->disks[i];
		if (now->stacked != stacked)
			continue;
		const struct metrics_disk *before = disk_find(prev, now->name);
		if (before == NULL)
			continue; /* new since prev */
		if (!isfinite(now->io_time_s) || !isfinite(before->io_time_s))
			return fail(error_r,
				    "node_disk_io_time_seconds_total{device=\"%s\"} is not a "
				    "finite number",
				    now->name);
		double delta = now->io_time_s - before->io_time_s;
		if (delta < 0)
			return fail(
				error_r,
				"node_disk_io_time_seconds_total{device=\"%s\"} went back from "
				"%.3f to %.3f (a counter reset: the host or the disk restarted)",
				now->name, before->io_time_s, now->io_time_s);
		double busy = clamp01(delta / wall_s);
		if (busy > *busy_r)
			*busy_r = busy;
		found = 1;
	}
	return found;
}

int metrics_resources(const struct metrics_sample *prev, const struct metrics_sample *cur,
		      struct balance_resources *out, const char **error_r)
{
	memset(out, 0, sizeof(*out));
	if (metrics_sample_check(prev, error_r) < 0 || metrics_sample_check(cur, error_r) < 0)
		return -1;
	if (!isfinite(prev->cpu_idle_s) || !isfinite(prev->cpu_total_s) ||
	    !isfinite(cur->cpu_idle_s) || !isfinite(cur->cpu_total_s))
		return fail(error_r, "node_cpu_seconds_total is not a finite number");
	if (!isfinite(cur->mem_available_bytes) || !isfinite(cur->mem_total_bytes) ||
	    cur->mem_total_bytes <= 0)
		return fail(error_r,
			    "node_memory_MemTotal_bytes %g and MemAvailable_bytes %g are not a "
			    "usable pair",
			    cur->mem_total_bytes, cur->mem_available_bytes);
	if (cur->time_ms <= prev->time_ms)
		return fail(error_r,
			    "the samples were not taken one after the other (at %lld ms, then "
			    "%lld ms)",
			    (long long)prev->time_ms, (long long)cur->time_ms);
	if (cur->cpu_count != prev->cpu_count)
		return fail(error_r, "the number of CPUs changed from %u to %u", prev->cpu_count,
			    cur->cpu_count);

	double total = cur->cpu_total_s - prev->cpu_total_s;
	double idle = cur->cpu_idle_s - prev->cpu_idle_s;
	/* the kernel's iowait may step back a little (it is an estimate):
	 * only a second or more of lost idle time is a reset */
	if (total < 0 || idle < -1.0)
		return fail(error_r,
			    "node_cpu_seconds_total went back from %.2f to %.2f s (a counter "
			    "reset: the host restarted?)",
			    idle < -1.0 ? prev->cpu_idle_s : prev->cpu_total_s,
			    idle < -1.0 ? cur->cpu_idle_s : cur->cpu_total_s);
	if (total == 0)
		return fail(error_r, "no CPU time passed between the samples (%lld ms apart)",
			    (long long)(cur->time_ms - prev->time_ms));
	out->cpu_busy = clamp01(1.0 - (idle < 0 ? 0 : idle) / total);

	double available = cur->mem_available_bytes;
	out->mem_available = clamp01(available / cur->mem_total_bytes);

	double wall_s = (double)(cur->time_ms - prev->time_ms) / 1000.0;
	int found = disks_busy(prev, cur, false, wall_s, &out->io_busy, error_r);
	if (found == 0)
		found = disks_busy(prev, cur, true, wall_s, &out->io_busy, error_r);
	if (found < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	out->samples = 1;
	return 0;
}

void metrics_average_init(struct metrics_average *avg, unsigned window)
{
	memset(avg, 0, sizeof(*avg));
	avg->window = window < 1 ? 1 : window > METRICS_AVERAGE_MAX ? METRICS_AVERAGE_MAX : window;
}

void metrics_average_reset(struct metrics_average *avg)
{
	metrics_average_init(avg, avg->window);
}

int metrics_average_add(struct metrics_average *avg, const struct metrics_sample *sample,
			const char **error_r)
{
	struct balance_resources figures;
	int ret = 0;
	if (avg->has_prev) {
		ret = metrics_resources(&avg->prev, sample, &figures, error_r);
		if (ret == 0) {
			avg->figures[avg->next].cpu_busy = figures.cpu_busy;
			avg->figures[avg->next].mem_available = figures.mem_available;
			avg->figures[avg->next].io_busy = figures.io_busy;
			avg->next = (avg->next + 1) % avg->window;
			if (avg->count < avg->window)
				avg->count++;
		}
	}
	avg->prev = *sample;
	avg->has_prev = true;
	return ret;
}

void metrics_average_get(const struct metrics_average *avg, struct balance_resources *out)
{
	memset(out, 0, sizeof(*out));
	if (avg->count == 0)
		return;
	for (unsigned i = 0; i < avg->count; i++) {
		out->cpu_busy += avg->figures[i].cpu_busy;
		out->mem_available += avg->figures[i].mem_available;
		out->io_busy += avg->figures[i].io_busy;
	}
	out->cpu_busy /= avg->count;
	out->mem_available /= avg->count;
	out->io_busy /= avg->count;
	out->samples = avg->count;
}
