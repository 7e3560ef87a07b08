/* http_client.c - see http_client.h.
 *
 * One exchange, bottom up: the URL is cut (http_url_parse); a fresh
 * non-blocking socket connects to one of the host's addresses; the request
 * is sent and the answer read, every wait poll()ed against the one
 * deadline; the received bytes go through a small state machine
 * (http_feed) that collects the head up to the blank line, then undoes the
 * body's framing (Content-Length, chunked with extensions and trailers, or
 * until close) into the response's body, checking body_max as it grows.
 *
 * Moved here from net/doveadm.c when net/metrics_scrape.c needed the same
 * client: the sentences are the ones doveadm's tests and operators know.
 */
#include "net/http_client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ---- */

/* detail_error: what the URL parser and the answer reader say; http_error:
 * the sentence returned to the caller (which may quote detail_error).  Both
 * thread-local: the callers are worker threads. */
static __thread char detail_error[512];
static __thread char http_error[768];

static int __attribute__((format(printf, 2, 3))) fail(const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(detail_error, sizeof(detail_error), fmt, args);
	va_end(args);
	*error_r = detail_error;
	return -1;
}

static int __attribute__((format(printf, 2, 3)))
fail_request(const char **error_r, const char *fmt, ...)
{
	char text[sizeof(http_error)]; /* the arguments may quote http_error */
	va_list args;
	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	memcpy(http_error, text, sizeof(http_error));
	*error_r = http_error;
	return -1;
}

/* ---- URL ---- */

int http_url_parse(const char *url, struct http_url *u, const char **error_r)
{
	memset(u, 0, sizeof(*u));
	if (strncasecmp(url, "http://", 7) != 0) {
		if (strncasecmp(url, "https://", 8) == 0)
			return fail(error_r, "https is not supported, only http://");
		return fail(error_r, "the URL does not start with http://");
	}
	const char *auth = url + 7;
	size_t auth_len = strcspn(auth, "/?#");
	if (auth_len == 0 || auth_len >= sizeof(u->authority))
		return fail(error_r, "no host or a host too long in the URL");
	if (memchr(auth, '@', auth_len) != NULL)
		return fail(error_r, "user info in the URL is not supported");
	memcpy(u->authority, auth, auth_len);
	const char *host = u->authority, *port = NULL;
	size_t host_len;
	if (host[0] == '[') {
		const char *close = strchr(host, ']');
		if (close == NULL)
			return fail(error_r, "unterminated [IPv6] host in the URL");
		host++;
		host_len = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return fail(error_r, "junk after ] in the URL host");
	} else {
		const char *colon = strchr(host, ':');
		host_len = colon == NULL ? strlen(host) : (size_t)(colon - host);
		if (colon != NULL)
			port = colon + 1;
	}
	if (host_len == 0 || host_len >= sizeof(u->host))
		return fail(error_r, "no host in the URL");
	memcpy(u->host, host, host_len);
	u->host[host_len] = '\0';
	if (port == NULL) {
		strcpy(u->port, "80");
	} else {
		size_t len = strlen(port);
		if (len == 0 || len > 5 || strspn(port, "0123456789") != len || atoi(port) == 0 ||
		    atoi(port) > 65535)
			return fail(error_r, "bad port '%s' in the URL", port);
		memcpy(u->port, port, len + 1);
	}
	const char *path = auth + auth_len;
	size_t path_len = strcspn(path, "#");
	if (path_len == 0) {
		strcpy(u->path, "/");
	} else {
		if (path_len >= sizeof(u->path))
			return fail(error_r, "the URL path is too long");
		if (path[0] != '/')
			u->path[0] = '/'; /* "http://h?x" */
		strncat(u->path, path, path_len);
	}
	for (const char *p = u->path; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return fail(error_r, "space or control character in the URL path");
	}
	return 0;
}

/* ---- time ---- */

uint64_t http_client_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t http_client_deadline(unsigned timeout_ms)
{
	return http_client_now_ms() + timeout_ms;
}

/* The ms left until deadline for poll(); 0 once it passed. */
static int ms_left(uint64_t deadline)
{
	uint64_t now = http_client_now_ms();
	if (now >= deadline)
		return 0;
	uint64_t left = deadline - now;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for events on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		int left = ms_left(deadline);
		if (left == 0)
			return 0;
		int ret = poll(&pfd, 1, left);
		if (ret > 0)
			return 1;
		if (ret < 0 && errno != EINTR)
			return -1;
	}
}

/* ---- the answer reader ---- */

enum body_mode {
	BODY_LENGTH,      /* Content-Length bytes */
	BODY_CHUNK_SIZE,  /* reading a chunk-size line */
	BODY_CHUNK_DATA,  /* chunk bytes */
	BODY_CHUNK_CRLF,  /* the CRLF after a chunk */
	BODY_TRAILER,     /* trailer lines up to an empty one */
	BODY_UNTIL_CLOSE, /* neither: the connection's end ends it */
	BODY_DONE,
};

struct http_reader {
	struct strbuf head; /* status line and headers, until the blank line */
	bool head_done;
	bool head_only; /* the status is all that is wanted */
	size_t body_max;
	enum body_mode mode;
	uint64_t remaining;
	char line[128]; /* a chunk-size or trailer line */
	size_t line_len;
	struct http_client_response *response;
};

/* Header value of name in head (after "\r\n"), into dst; false if absent. */
static bool http_header(const char *head, const char *name, char *dst, size_t size)
{
	size_t name_len = strlen(name);
	for (const char *line = strstr(head, "\r\n"); line != NULL;
	     line = strstr(line + 2, "\r\n")) {
		const char *p = line + 2;
		if (strncasecmp(p, name, name_len) != 0 || p[name_len] != ':')
			continue;
		p += name_len + 1;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t len = strcspn(p, "\r");
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len >= size)
			len = size - 1;
		memcpy(dst, p, len);
		dst[len] = '\0';
		return true;
	}
	return false;
}

/* Parses the status line and headers; sets the body mode. */
static int http_head_parse(struct http_reader *r, const char **error_r)
{
	const char *head = r->head.data;
	struct http_client_response *resp = r->response;
	char value[128];
	int major, minor, status, reason_at = 0;

	if (sscanf(head, "HTTP/%d.%d %3d %n", &major, &minor, &status, &reason_at) < 3 ||
	    major != 1 || status < 100 || status > 999)
		return fail(error_r, "not an HTTP/1.x answer: '%.40s'", head);
	resp->status = status;
	size_t reason_len = reason_at > 0 ? strcspn(head + reason_at, "\r") : 0;
	if (reason_len >= sizeof(resp->reason))
		reason_len = sizeof(resp->reason) - 1;
	memcpy(resp->reason, head + (reason_at > 0 ? reason_at : 0), reason_len);
	resp->reason[reason_len] = '\0';
	if (!http_header(head, "Content-Type", resp->content_type, sizeof(resp->content_type)))
		resp->content_type[0] = '\0';

	if (http_header(head, "Transfer-Encoding", value, sizeof(value))) {
		size_t len = strlen(value);
		if (len < 7 || strcasecmp(value + len - 7, "chunked") != 0)
			return fail(error_r, "unsupported Transfer-Encoding '%s'", value);
		r->mode = BODY_CHUNK_SIZE;
	} else if (http_header(head, "Content-Length", value, sizeof(value))) {
		char *end;
		errno = 0;
		unsigned long long length = strtoull(value, &end, 10);
		if (value[0] < '0' || value[0] > '9' || *end != '\0' || errno != 0)
			return fail(error_r, "bad Content-Length '%s'", value);
		if (length > r->body_max)
			return fail(error_r, "the answer is %llu bytes, more than the %zu accepted",
				    length, r->body_max);
		r->remaining = length;
		r->mode = length == 0 ? BODY_DONE : BODY_LENGTH;
	} else {
		r->mode = BODY_UNTIL_CLOSE;
	}
	return 0;
}

static int body_append(struct http_reader *r, const char *data, size_t len, const char **error_r)
{
	if (r->response->body.len + len > r->body_max)
		return fail(error_r, "the answer is larger than the %zu bytes accepted",
			    r->body_max);
	strbuf_append_n(&r->response->body, data, len);
	return 0;
}

/* Reads up to a LF into r->line; true once a whole line is there. */
static bool line_feed(struct http_reader *r, const char **data, size_t *len, bool *too_long)
{
	while (*len > 0) {
		char c = **data;
		(*data)++;
		(*len)--;
		if (c == '\n') {
			if (r->line_len > 0 && r->line[r->line_len - 1] == '\r')
				r->line_len--;
			r->line[r->line_len] = '\0';
			return true;
		}
		if (r->line_len + 1 >= sizeof(r->line)) {
			*too_long = true;
			return false;
		}
		r->line[r->line_len++] = c;
	}
	return false;
}

/* Feeds received bytes to the reader. */
static int http_feed(struct http_reader *r, const char *data, size_t len, const char **error_r)
{
	while (!r->head_done && len > 0) {
		/* append what came, find the blank line, then cut the head
		 * there: the rest is body */
		size_t old = r->head.len;
		strbuf_append_n(&r->head, data, len);
		size_t from = old >= 3 ? old - 3 : 0;
		const char *blank = strstr(r->head.data + from, "\r\n\r\n");
		if (blank == NULL) {
			if (r->head.len > HTTP_CLIENT_HEADER_MAX)
				return fail(error_r, "HTTP headers longer than %d bytes",
					    HTTP_CLIENT_HEADER_MAX);
			return 0;
		}
		size_t head_len = (size_t)(blank - r->head.data) + 4;
		size_t used = head_len - old;
		data += used;
		len -= used;
		r->head.len = head_len;
		r->head.data[head_len] = '\0';
		if (http_head_parse(r, error_r) < 0)
			return -1;
		if (r->response->status >= 100 && r->response->status < 200) {
			/* an interim answer (100 Continue): the real one follows */
			r->head.len = 0;
			r->head.data[0] = '\0';
			continue;
		}
		r->head_done = true;
		if (r->head_only)
			r->mode = BODY_DONE;
	}
	while (len > 0) {
		bool too_long = false;
		switch (r->mode) {
		case BODY_LENGTH: {
			size_t n = len < r->remaining ? len : (size_t)r->remaining;
			if (body_append(r, data, n, error_r) < 0)
				return -1;
			data += n;
			len -= n;
			r->remaining -= n;
			if (r->remaining == 0)
				r->mode = BODY_DONE;
			break;
		}
		case BODY_UNTIL_CLOSE:
			if (body_append(r, data, len, error_r) < 0)
				return -1;
			len = 0;
			break;
		case BODY_CHUNK_SIZE: {
			if (!line_feed(r, &data, &len, &too_long)) {
				if (too_long)
					return fail(error_r, "chunk-size line too long");
				break;
			}
			char *end;
			errno = 0;
			unsigned long long size = strtoull(r->line, &end, 16);
			if (end == r->line || (*end != '\0' && *end != ';' && *end != ' ') ||
			    errno != 0)
				return fail(error_r, "bad chunk-size line '%s'", r->line);
			if (size > r->body_max)
				return fail(error_r,
					    "the answer is larger than the %zu bytes accepted",
					    r->body_max);
			r->line_len = 0;
			r->remaining = size;
			r->mode = size == 0 ? BODY_TRAILER : BODY_CHUNK_DATA;
			break;
		}
		case BODY_CHUNK_DATA: {
			size_t n = len < r->remaining ? len : (size_t)r->remaining;
			if (body_append(r, data, n, error_r) < 0)
				return -1;
			data += n;
			len -= n;
			r->remaining -= n;
			if (r->remaining == 0)
				r->mode = BODY_CHUNK_CRLF;
			break;
		}
		case BODY_CHUNK_CRLF:
			if (!line_feed(r, &data, &len, &too_long)) {
				if (too_long)
					return fail(error_r, "no CRLF after a chunk");
				break;
			}
			if (r->line_len != 0)
				return fail(error_r, "no CRLF after a chunk");
			r->mode = BODY_CHUNK_SIZE;
			break;
		case BODY_TRAILER:
			if (!line_feed(r, &data, &len, &too_long)) {
				if (too_long)
					return fail(error_r, "trailer line too long");
				break;
			}
			if (r->line_len == 0)
				r->mode = BODY_DONE;
			r->line_len = 0;
			break;
		case BODY_DONE:
			return 0; /* ignore whatever follows */
		}
	}
	return 0;
}

/* ---- the exchange ---- */

/* Connects to one of the host's addresses before the deadline. */
static int http_connect(const struct http_client_request *req, const struct http_url *u, int *fd_r,
			const char **error_r)
{
	struct addrinfo hints, *addrs;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int gai = getaddrinfo(u->host, u->port, &hints, &addrs);
	if (gai != 0)
		return fail_request(error_r, "cannot resolve %s: %s", u->host, gai_strerror(gai));

	int last_errno = 0;
	bool timed_out = false;
	*fd_r = -1;
	for (struct addrinfo *ai = addrs; ai != NULL && *fd_r < 0; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			last_errno = errno;
			close(fd);
			continue;
		}
		int ready = wait_fd(fd, POLLOUT, req->deadline_ms);
		int error = 0;
		socklen_t error_len = sizeof(error);
		if (ready == 0) {
			timed_out = true;
			close(fd);
			break;
		}
		if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
			error = errno;
		if (error != 0) {
			last_errno = error;
			close(fd);
			continue;
		}
		*fd_r = fd;
	}
	freeaddrinfo(addrs);
	if (*fd_r >= 0)
		return 0;
	if (timed_out)
		return fail_request(error_r, "timed out after %u ms while connecting to %s:%s",
				    req->timeout_ms, u->host, u->port);
	if (last_errno == ECONNREFUSED && req->service != NULL)
		return fail_request(error_r, "connection refused by %s:%s (is %s running there?)",
				    u->host, u->port, req->service);
	if (last_errno == ECONNREFUSED)
		return fail_request(error_r, "connection refused by %s:%s", u->host, u->port);
	char buf[128];
	return fail_request(error_r, "cannot connect to %s:%s: %s", u->host, u->port,
			    strerror_r(last_errno, buf, sizeof(buf)));
}

static int send_all(int fd, const struct strbuf *request, const struct http_client_request *req,
		    size_t *sent_r, const char **error_r)
{
	char buf[128];
	size_t sent = 0;
	/* a server that answers early (401) and closes ends the sending, and
	 * its answer is still read */
	while (sent < request->len) {
		ssize_t n = send(fd, request->data + sent, request->len - sent, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int ready = wait_fd(fd, POLLOUT, req->deadline_ms);
			if (ready == 0)
				return fail_request(error_r,
						    "timed out after %u ms while sending the "
						    "request",
						    req->timeout_ms);
			if (ready > 0)
				continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			break;
		return fail_request(error_r, "sending the request failed: %s",
				    strerror_r(errno, buf, sizeof(buf)));
	}
	*sent_r = sent;
	return 0;
}

static int receive_all(int fd, struct http_reader *reader, const struct http_client_request *req,
		       bool sent_all, const char **error_r)
{
	char buf[128];
	char chunk[16384];
	size_t received = 0;
	while (!(reader->head_done && reader->mode == BODY_DONE)) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
		if (n > 0) {
			received += (size_t)n;
			if (http_feed(reader, chunk, (size_t)n, error_r) < 0)
				return fail_request(error_r, "bad HTTP answer: %s", detail_error);
			continue;
		}
		if (n == 0) {
			if (reader->head_done && reader->mode == BODY_UNTIL_CLOSE)
				return 0;
			if (received == 0 && !sent_all)
				return fail_request(error_r, "the connection was closed while "
							     "sending the request");
			return fail_request(error_r,
					    "the connection was closed after %zu bytes of the "
					    "answer, before its end",
					    received);
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int ready = wait_fd(fd, POLLIN, req->deadline_ms);
			if (ready == 0)
				return fail_request(error_r,
						    "timed out after %u ms while waiting for the "
						    "answer",
						    req->timeout_ms);
			if (ready > 0)
				continue;
		}
		return fail_request(error_r, "receiving the answer failed: %s",
				    strerror_r(errno, buf, sizeof(buf)));
	}
	return 0;
}

int http_client_request(const struct http_client_request *req,
			struct http_client_response *response_r, const char **error_r)
{
	struct http_url u;
	struct strbuf request = {0};
	struct http_reader reader;
	int fd = -1, ret = -1;

	memset(response_r, 0, sizeof(*response_r));
	memset(&reader, 0, sizeof(reader));
	reader.response = response_r;
	reader.head_only = req->head_only;
	reader.body_max = req->body_max;
	if (http_url_parse(req->url, &u, error_r) < 0)
		return fail_request(error_r, "%s", detail_error);

	strbuf_printf(&request,
		      "%s %s HTTP/1.1\r\n"
		      "Host: %s\r\n"
		      "%s"
		      "Connection: close\r\n",
		      req->method, u.path, u.authority, req->headers != NULL ? req->headers : "");
	if (req->body != NULL) {
		strbuf_printf(&request, "Content-Length: %zu\r\n\r\n", req->body_len);
		strbuf_append_n(&request, req->body, req->body_len);
	} else {
		strbuf_append(&request, "\r\n");
	}

	size_t sent = 0;
	if (http_connect(req, &u, &fd, error_r) < 0 ||
	    send_all(fd, &request, req, &sent, error_r) < 0 ||
	    receive_all(fd, &reader, req, sent == request.len, error_r) < 0)
		goto out;
	if (response_r->body.data == NULL)
		strbuf_append_n(&response_r->body, "", 0);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	strbuf_free(&request);
	strbuf_free(&reader.head);
	if (ret < 0)
		strbuf_free(&response_r->body);
	return ret;
}

void http_client_response_free(struct http_client_response *response)
{
	strbuf_free(&response->body);
}

void http_client_status_describe(const struct http_client_response *response, char *dst,
				 size_t size)
{
	char quote[161];
	size_t len =
		response->body.len < sizeof(quote) - 1 ? response->body.len : sizeof(quote) - 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)response->body.data[i];
		quote[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	quote[len] = '\0';
	snprintf(dst, size, "HTTP %d %s%s%s", response->status, response->reason,
		 len > 0 ? ": " : "", quote);
}
