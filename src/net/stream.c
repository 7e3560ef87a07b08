/* stream.c - see stream.h. */
#include "net/stream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STREAM_INPUT_INITIAL 512
#define STREAM_FLUSH_TIMEOUT_SECS 5

struct stream {
	struct event_base *base;
	const struct stream_callbacks *callbacks;
	void *context;
	int fd;
	size_t input_max;
	struct timeval idle_timeout;
	bool closing, reading, plain_events, close_event_set;
	struct event close_event; /* defers the flushed callback */

	/* plain */
	struct event read_event, write_event;
	char *in;
	size_t in_len, in_size;
	char *out;
	size_t out_len, out_off, out_size;

	/* TLS */
	struct bufferevent *bev;
};

/* ---- plain ---- */

static void plain_readable(evutil_socket_t fd, short what, void *context)
{
	struct stream *stream = context;
	if ((what & EV_TIMEOUT) != 0) {
		stream->callbacks->timeout(stream->context);
		return;
	}
	if (stream->in_len == stream->in_size) {
		size_t limit = stream->input_max + 64;
		if (stream->in_size >= limit) {
			/* full: the front-end has seen input_max + 2 bytes
			 * and will refuse them; stop reading meanwhile */
			event_del(&stream->read_event);
			stream->callbacks->input(stream->context);
			return;
		}
		size_t size = stream->in_size == 0 ? STREAM_INPUT_INITIAL : stream->in_size * 2;
		if (size > limit)
			size = limit;
		stream->in = realloc(stream->in, size);
		stream->in_size = size;
	}
	ssize_t n = read(stream->fd, stream->in + stream->in_len, stream->in_size - stream->in_len);
	if (n == 0) {
		stream->callbacks->closed(stream->context, "client closed the connection");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		char reason[128];
		snprintf(reason, sizeof(reason), "read failed: %s", strerror(errno));
		stream->callbacks->closed(stream->context, reason);
		return;
	}
	stream->in_len += (size_t)n;
	stream->callbacks->input(stream->context);
}

/* Writes queued output; returns false if the stream was closed. */
static bool plain_flush(struct stream *stream)
{
	while (stream->out_off < stream->out_len) {
		ssize_t n = write(stream->fd, stream->out + stream->out_off,
				  stream->out_len - stream->out_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				struct timeval tv = {STREAM_FLUSH_TIMEOUT_SECS, 0};
				event_add(&stream->write_event, stream->closing ? &tv : NULL);
				return true;
			}
			char reason[128];
			snprintf(reason, sizeof(reason), "write failed: %s", strerror(errno));
			stream->callbacks->closed(stream->context, reason);
			return false;
		}
		stream->out_off += (size_t)n;
	}
	stream->out_len = stream->out_off = 0;
	event_del(&stream->write_event);
	if (stream->closing) {
		stream->callbacks->flushed(stream->context);
		return false;
	}
	return true;
}

static void plain_writable(evutil_socket_t fd, short what, void *context)
{
	struct stream *stream = context;
	if ((what & EV_TIMEOUT) != 0) {
		stream->callbacks->flushed(stream->context);
		return;
	}
	plain_flush(stream);
}

static void plain_queue(struct stream *stream, const void *data, size_t len)
{
	if (stream->out_off > 0 && stream->out_off == stream->out_len)
		stream->out_len = stream->out_off = 0;
	if (stream->out_len + len > stream->out_size) {
		size_t size = stream->out_size == 0 ? 512 : stream->out_size;
		while (size < stream->out_len + len)
			size *= 2;
		stream->out = realloc(stream->out, size);
		stream->out_size = size;
	}
	memcpy(stream->out + stream->out_len, data, len);
	stream->out_len += len;
}

/* ---- TLS ---- */

static void tls_input(struct bufferevent *bev, void *context)
{
	struct stream *stream = context;
	stream->callbacks->input(stream->context);
}

static void tls_output(struct bufferevent *bev, void *context)
{
	struct stream *stream = context;
	if (stream->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		stream->callbacks->flushed(stream->context);
}

static void tls_event(struct bufferevent *bev, short what, void *context)
{
	struct stream *stream = context;
	if (what == BEV_EVENT_CONNECTED)
		return; /* the handshake finished */
	if ((what & BEV_EVENT_TIMEOUT) != 0) {
		if (stream->closing)
			stream->callbacks->flushed(stream->context);
		else
			stream->callbacks->timeout(stream->context);
		return;
	}
	if (stream->closing) {
		stream->callbacks->flushed(stream->context);
		return;
	}
	if ((what & BEV_EVENT_EOF) != 0) {
		stream->callbacks->closed(stream->context, "client closed the connection");
		return;
	}
	char reason[256];
	unsigned long ssl_err = bufferevent_get_openssl_error(bev);
	if (ssl_err != 0) {
		char detail[200];
		ERR_error_string_n(ssl_err, detail, sizeof(detail));
		snprintf(reason, sizeof(reason), "TLS error: %s", detail);
	} else {
		snprintf(reason, sizeof(reason), "connection error: %s",
			 strerror(EVUTIL_SOCKET_ERROR()));
	}
	stream->callbacks->closed(stream->context, reason);
}

static void tls_start(struct stream *stream, SSL_CTX *ssl_ctx)
{
	SSL *ssl = SSL_new(ssl_ctx);
	stream->bev = bufferevent_openssl_socket_new(
		stream->base, stream->fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_set_timeouts(stream->bev, &stream->idle_timeout, NULL);
	/* stop reading once more than a whole command is buffered */
	bufferevent_setwatermark(stream->bev, EV_READ, 0, stream->input_max + 1024);
	bufferevent_setcb(stream->bev, tls_input, tls_output, tls_event, stream);
	bufferevent_enable(stream->bev, EV_READ | EV_WRITE);
}

/* ---- API ---- */

struct stream *stream_create(struct event_base *base, int fd, SSL_CTX *ssl_ctx, size_t input_max,
			     unsigned idle_timeout_ms, const struct stream_callbacks *callbacks,
			     void *context)
{
	struct stream *stream = calloc(1, sizeof(*stream));
	stream->base = base;
	stream->fd = fd;
	stream->input_max = input_max;
	stream->idle_timeout.tv_sec = idle_timeout_ms / 1000;
	stream->idle_timeout.tv_usec = (idle_timeout_ms % 1000) * 1000;
	stream->callbacks = callbacks;
	stream->context = context;
	stream->reading = true;
	if (ssl_ctx != NULL) {
		tls_start(stream, ssl_ctx);
		return stream;
	}
	event_assign(&stream->read_event, base, fd, EV_READ | EV_PERSIST, plain_readable, stream);
	event_assign(&stream->write_event, base, fd, EV_WRITE | EV_PERSIST, plain_writable, stream);
	stream->plain_events = true;
	event_add(&stream->read_event, &stream->idle_timeout);
	return stream;
}

void stream_destroy(struct stream **_stream)
{
	struct stream *stream = *_stream;
	if (stream == NULL)
		return;
	if (stream->close_event_set)
		event_del(&stream->close_event);
	if (stream->plain_events) {
		event_del(&stream->read_event);
		event_del(&stream->write_event);
	}
	if (stream->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(stream->bev);
		if (ssl != NULL)
			SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
		bufferevent_free(stream->bev); /* closes the socket */
	} else if (stream->fd >= 0) {
		close(stream->fd);
	}
	free(stream->in);
	free(stream->out);
	free(stream);
	*_stream = NULL;
}

bool stream_is_tls(const struct stream *stream)
{
	return stream->bev != NULL;
}

const char *stream_input(struct stream *stream, size_t *len_r)
{
	if (stream->bev == NULL) {
		*len_r = stream->in_len;
		return stream->in;
	}
	struct evbuffer *input = bufferevent_get_input(stream->bev);
	size_t len = evbuffer_get_length(input);
	if (len > stream->input_max + 2)
		len = stream->input_max + 2;
	*len_r = len;
	return len == 0 ? NULL : (const char *)evbuffer_pullup(input, (ssize_t)len);
}

void stream_consume(struct stream *stream, size_t len)
{
	if (stream->bev != NULL) {
		evbuffer_drain(bufferevent_get_input(stream->bev), len);
		return;
	}
	if (len >= stream->in_len) {
		stream->in_len = 0;
	} else {
		memmove(stream->in, stream->in + len, stream->in_len - len);
		stream->in_len -= len;
	}
	/* reading stopped when the buffer was full: go on */
	if (stream->reading && !stream->closing)
		event_add(&stream->read_event, &stream->idle_timeout);
}

void stream_write(struct stream *stream, const void *data, size_t len)
{
	if (stream->bev != NULL) {
		bufferevent_write(stream->bev, data, len);
		return;
	}
	if (stream->out_len == stream->out_off) {
		/* nothing queued: straight to the socket */
		ssize_t n = write(stream->fd, data, len);
		if (n == (ssize_t)len)
			return;
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return; /* the next read reports the broken connection */
			n = 0;
		}
		data = (const char *)data + n;
		len -= (size_t)n;
		plain_queue(stream, data, len);
		event_add(&stream->write_event, NULL);
		return;
	}
	plain_queue(stream, data, len);
}

void stream_printf(struct stream *stream, const char *fmt, ...)
{
	char buf[1024];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		stream_write(stream, buf, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	va_start(args, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, args);
	va_end(args);
	stream_write(stream, big, (size_t)n);
	free(big);
}

void stream_read_enable(struct stream *stream, bool enable)
{
	stream->reading = enable;
	if (stream->bev != NULL) {
		if (enable)
			bufferevent_enable(stream->bev, EV_READ);
		else
			bufferevent_disable(stream->bev, EV_READ);
		return;
	}
	if (enable)
		event_add(&stream->read_event, &stream->idle_timeout);
	else
		event_del(&stream->read_event);
}

static void close_event_fired(evutil_socket_t fd, short what, void *context)
{
	struct stream *stream = context;
	stream->callbacks->flushed(stream->context);
}

/* The flushed callback must not run inside the caller's stack: it
 * destroys what the caller may still be looking at. */
static void flushed_later(struct stream *stream)
{
	if (!stream->close_event_set) {
		event_assign(&stream->close_event, stream->base, -1, 0, close_event_fired, stream);
		stream->close_event_set = true;
	}
	event_active(&stream->close_event, EV_TIMEOUT, 1);
}

void stream_close_after_flush(struct stream *stream)
{
	stream->closing = true;
	stream_read_enable(stream, false);
	struct timeval tv = {STREAM_FLUSH_TIMEOUT_SECS, 0};
	if (stream->bev != NULL) {
		bufferevent_set_timeouts(stream->bev, NULL, &tv);
		bufferevent_setwatermark(stream->bev, EV_WRITE, 0, 0);
		bufferevent_enable(stream->bev, EV_WRITE);
		if (evbuffer_get_length(bufferevent_get_output(stream->bev)) == 0)
			flushed_later(stream);
		return;
	}
	if (stream->out_len == stream->out_off) {
		flushed_later(stream);
		return;
	}
	event_add(&stream->write_event, &tv);
}

int stream_starttls(struct stream *stream, SSL_CTX *ssl_ctx, const char *reply,
		    const char **error_r)
{
	static char error[128];
	if (stream->bev != NULL) {
		*error_r = "TLS is already active";
		return -1;
	}
	plain_queue(stream, reply, strlen(reply));
	/* the reply must be out before the handshake starts */
	while (stream->out_off < stream->out_len) {
		ssize_t n = write(stream->fd, stream->out + stream->out_off,
				  stream->out_len - stream->out_off);
		if (n <= 0) {
			snprintf(error, sizeof(error), "cannot write the STARTTLS reply: %s",
				 n < 0 ? strerror(errno) : "nothing written");
			*error_r = error;
			return -1;
		}
		stream->out_off += (size_t)n;
	}
	stream->out_len = stream->out_off = 0;
	stream->in_len = 0;
	event_del(&stream->read_event);
	event_del(&stream->write_event);
	stream->plain_events = false;
	free(stream->in);
	free(stream->out);
	stream->in = stream->out = NULL;
	stream->in_size = stream->out_size = 0;
	tls_start(stream, ssl_ctx);
	return 0;
}

struct bufferevent *stream_detach(struct stream *stream, int *fd_r, const char **pending_out_r,
				  size_t *pending_out_len_r, const char **pending_in_r,
				  size_t *pending_in_len_r)
{
	if (stream->bev != NULL) {
		struct bufferevent *bev = stream->bev;
		stream->bev = NULL;
		stream->fd = -1;
		*fd_r = -1;
		*pending_out_r = *pending_in_r = NULL;
		*pending_out_len_r = *pending_in_len_r = 0;
		return bev;
	}
	/* The events stay registered until stream_destroy(): the relay adds
	 * its own on the same socket first, so epoll is not told to drop the
	 * socket and take it back. */
	*fd_r = stream->fd;
	stream->fd = -1;
	*pending_out_r = stream->out + stream->out_off;
	*pending_out_len_r = stream->out_len - stream->out_off;
	*pending_in_r = stream->in;
	*pending_in_len_r = stream->in_len;
	return NULL;
}
