/* metrics_scrape.h - fetching one sample of a backend host's resources from
 * its node_exporter (backend_metrics_url, every metrics_interval).
 *
 * A blocking GET through net/http_client.h, for a worker thread: the
 * timeout covers connect, send and receive.  The page is read with
 * util/openmetrics.h; comparing two samples (metrics_resources()) and
 * averaging them (struct metrics_average) is the caller's.
 *
 * Errors are sentences that start with "metrics scrape of URL: " and say
 * what to check: "connection refused by 10.0.0.5:9100 (is node_exporter
 * running there?)", "HTTP 404 Not Found (the path is usually /metrics)",
 * "the answer is text/html, not metrics text (is the URL node_exporter's
 * /metrics?)", "line 1: not a metric line: '<html>'", "no
 * node_cpu_seconds_total{mode="idle"} among its 12 series".  Thread-local,
 * valid until the same thread's next call.
 */
#ifndef METRICS_SCRAPE_H
#define METRICS_SCRAPE_H

#include "util/openmetrics.h"

/* The largest page read (node_exporter's is ~60 kB on a small host, a few
 * MB on one with thousands of CPUs, disks or interfaces). */
#define METRICS_SCRAPE_BODY_MAX (8u * 1024 * 1024)

/* GETs url (http:// only) and reads it into *sample_r, whose time_ms is
 * the CLOCK_MONOTONIC ms at which the answer was complete.  0, or -1 with
 * *error_r: the request failed, the status was not 200, the page is not in
 * the exposition format, or it lacks what balancing needs
 * (metrics_sample_check()). */
int metrics_scrape(const char *url, unsigned timeout_ms, struct metrics_sample *sample_r,
		   const char **error_r);

#endif
