/* stream.h - a client connection before it is relayed: a plain socket with
 * small buffers of its own, or TLS over a libevent bufferevent.
 *
 * The front-ends (IMAP now; POP3 and the others later) read commands from
 * stream_input(), answer with stream_write() and never care which kind they
 * have.  The plain kind exists for speed: it reads and writes the socket
 * directly (a write goes out at once when nothing is queued), with no
 * per-read ioctl and no event changes per response, which is most of what a
 * login costs in system calls.  Its input buffer grows on demand up to
 * input_max, so an idle pre-login connection holds little.
 *
 * Callbacks: input (bytes arrived; the stream stays readable until
 * disabled), timeout (no input for idle_timeout_ms), closed (EOF or error:
 * reason says which; after it the caller destroys the stream), flushed
 * (after stream_close_after_flush(), once the output is out).
 */
#ifndef STREAM_H
#define STREAM_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct bufferevent;
struct stream;
typedef struct ssl_ctx_st SSL_CTX;

struct stream_callbacks {
	void (*input)(void *context);
	void (*timeout)(void *context);
	void (*closed)(void *context, const char *reason);
	void (*flushed)(void *context);
};

/* Takes over fd.  ssl_ctx != NULL: implicit TLS (server side). */
struct stream *stream_create(struct event_base *base, int fd, SSL_CTX *ssl_ctx, size_t input_max,
			     unsigned idle_timeout_ms, const struct stream_callbacks *callbacks,
			     void *context);
void stream_destroy(struct stream **stream);

bool stream_is_tls(const struct stream *stream);
/* All pending input, contiguous (at most input_max + 2 bytes of it). */
const char *stream_input(struct stream *stream, size_t *len_r);
void stream_consume(struct stream *stream, size_t len);
void stream_write(struct stream *stream, const void *data, size_t len);
void stream_printf(struct stream *stream, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void stream_read_enable(struct stream *stream, bool enable);
/* Stops reading; calls flushed once everything written is out (or after
 * 5 seconds of the peer not reading). */
void stream_close_after_flush(struct stream *stream);

/* STARTTLS: writes reply in the clear (synchronously, after anything still
 * queued), drops input the client sent after its command (it came in the
 * clear and could be an injection), and continues as a TLS stream.
 * -1 with error_r if the reply could not be written. */
int stream_starttls(struct stream *stream, SSL_CTX *ssl_ctx, const char *reply,
		    const char **error_r);

/* Hand-over to the relay.  Plain: *fd_r is the socket, to_client gets the
 * output not yet written (caller copies it), to_server the unread input;
 * the stream no longer owns the socket (pending pointers stay valid, and
 * its events registered, until stream_destroy(), so create the relay in
 * between).  TLS: returns the bufferevent (with its pending data) and the
 * stream no longer owns it.  Either way destroy the stream afterwards. */
struct bufferevent *stream_detach(struct stream *stream, int *fd_r, const char **pending_out_r,
				  size_t *pending_out_len_r, const char **pending_in_r,
				  size_t *pending_in_len_r);

#endif
