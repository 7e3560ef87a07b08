/* metrics_scrape.c - see metrics_scrape.h. */
#include "net/metrics_scrape.h"

#include "net/http_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static __thread char scrape_error[1024];

static int __attribute__((format(printf, 3, 4)))
fail_url(const char *url, const char **error_r, const char *fmt, ...)
{
	char text[768];
	va_list args;
	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	snprintf(scrape_error, sizeof(scrape_error), "metrics scrape of %s: %s", url, text);
	*error_r = scrape_error;
	return -1;
}

/* Whether a Content-Type is one of the exposition formats: text/plain
 * (0.0.4) or application/openmetrics-text; an absent one is given the
 * benefit of the doubt. */
static bool metrics_content_type(const char *type)
{
	size_t len = strcspn(type, "; \t");
	return len == 0 || (len == 10 && strncasecmp(type, "text/plain", 10) == 0) ||
	       (len == 28 && strncasecmp(type, "application/openmetrics-text", 28) == 0);
}

int metrics_scrape(const char *url, unsigned timeout_ms, struct metrics_sample *sample_r,
		   const char **error_r)
{
	const struct http_client_request request = {
		.url = url,
		.method = "GET",
		/* the classic text format first: what node_exporter serves by
		 * default; OpenMetrics is read as well */
		.headers = "Accept: text/plain;version=0.0.4;q=1,"
			   "application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1\r\n",
		.body_max = METRICS_SCRAPE_BODY_MAX,
		.service = "node_exporter",
		.deadline_ms = http_client_deadline(timeout_ms),
		.timeout_ms = timeout_ms,
	};
	struct http_client_response response;
	char status[256];
	int ret = -1;

	memset(sample_r, 0, sizeof(*sample_r));
	if (http_client_request(&request, &response, error_r) < 0)
		return fail_url(url, error_r, "%s", *error_r);
	int64_t time_ms = (int64_t)http_client_now_ms();

	if (response.status == 404) {
		fail_url(url, error_r, "HTTP 404 %s (the path is usually /metrics)",
			 response.reason);
	} else if (response.status != 200) {
		http_client_status_describe(&response, status, sizeof(status));
		fail_url(url, error_r, "%s", status);
	} else if (!metrics_content_type(response.content_type)) {
		fail_url(url, error_r,
			 "the answer is %s, not metrics text (is the URL node_exporter's "
			 "/metrics?)",
			 response.content_type);
	} else if (metrics_sample_parse(response.body.data, response.body.len, time_ms, sample_r,
					error_r) < 0) {
		fail_url(url, error_r, "not a metrics page: %s", *error_r);
	} else if (metrics_sample_check(sample_r, error_r) < 0) {
		fail_url(url, error_r, "%s (is the URL node_exporter's /metrics?)", *error_r);
	} else {
		ret = 0;
	}
	http_client_response_free(&response);
	return ret;
}
