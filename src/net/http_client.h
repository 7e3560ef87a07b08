/* http_client.h - a small blocking HTTP/1.1 client for the services that run
 * on the backends: Dovecot's doveadm HTTP API (net/doveadm.h) and the
 * node_exporter the load figures come from (net/metrics_scrape.h).
 *
 * Callers are worker threads, never the event loop: a request blocks,
 * bounded by a deadline that covers connect, send and receive (name lookup
 * aside).  Only http:// is spoken (no TLS); one request per connection
 * ("Connection: close"); the answer's body may be framed by Content-Length,
 * chunked, or the end of the connection, and is bounded by the caller's
 * body_max (a bigger one is an error, never truncated).
 *
 * Errors are sentences without the URL ("connection refused by
 * 127.0.0.1:8080 (is doveadm's inet_listener http running there?)",
 * "timed out after 3000 ms while waiting for the answer"): each caller puts
 * its own "doveadm on URL: " in front.  The text lives in a thread-local
 * buffer, valid until the same thread's next call into this module.
 */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include "util/strbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The status line and headers of an answer, at most. */
#define HTTP_CLIENT_HEADER_MAX (64 * 1024)

/* An http:// URL cut into what a request needs. */
struct http_url {
	char host[256];      /* without the brackets of an IPv6 address */
	char port[8];        /* "80" when the URL has none */
	char authority[300]; /* host[:port] as written, for the Host header */
	char path[1024];     /* path and query; "/" when empty */
};

/* Cuts url; -1 with *error_r ("https is not supported, only http://", "bad
 * port '99999' in the URL", ...). */
int http_url_parse(const char *url, struct http_url *url_r, const char **error_r);

struct http_client_request {
	const char *url;
	const char *method; /* "GET", "POST", ... */
	/* extra header lines, each ending in "\r\n" (Host, Connection and, with
	 * a body, Content-Length are added); NULL: none */
	const char *headers;
	const char *body; /* NULL: no body */
	size_t body_len;
	bool head_only;  /* read only the status line and headers */
	size_t body_max; /* the largest body accepted */
	/* what should listen at the URL, for the hint after "connection
	 * refused" ("is SERVICE running there?"); NULL: no hint */
	const char *service;
	uint64_t deadline_ms; /* on http_client_now_ms()'s clock */
	unsigned timeout_ms;  /* what the deadline was made of, for the errors */
};

struct http_client_response {
	int status;             /* 200, 404, ... */
	char reason[64];        /* "OK", "Not Found", ... */
	char content_type[128]; /* "" when absent */
	struct strbuf body;     /* the decoded body, NUL-terminated (free it) */
};

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t http_client_now_ms(void);
/* http_client_now_ms() + timeout_ms. */
uint64_t http_client_deadline(unsigned timeout_ms);

/* Sends the request and reads the answer before the deadline.  0 with
 * *response_r filled (any status: the caller judges it; free it with
 * http_client_response_free()), or -1 with *error_r and nothing to free. */
int http_client_request(const struct http_client_request *request,
			struct http_client_response *response_r, const char **error_r);
void http_client_response_free(struct http_client_response *response);

/* "HTTP 400 Bad Request: " and the start of the body (controls blanked),
 * for a status the caller has no better words for. */
void http_client_status_describe(const struct http_client_response *response, char *dst,
				 size_t size);

#endif
