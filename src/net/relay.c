/* relay.c - see relay.h.
 *
 * The fd relay keeps, per direction, a read event on the source and a write
 * event on the destination, embedded in the relay (no allocation per
 * relay besides the relay itself).  Only one of the two is armed at a time:
 * either we wait for bytes to read, or for room to write what we hold.
 * Reading stops while bytes are held, which is all the flow control needed.
 */
#include "net/relay.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_SPLICE_MAX (64 * 1024)
/* After one side has closed, how long the other may keep the relay open. */
#define RELAY_HALF_CLOSE_TIMEOUT_SECS 300
/* How long a closing bufferevent relay waits for its last bytes to leave. */
#define RELAY_FLUSH_TIMEOUT_SECS 5

struct relay_pipe {
	int fds[2];
	struct relay_pipe *next;
};

struct relay_pipe_pool {
	struct relay_pipe *spare;
	unsigned spare_count, max_spare;
};

enum relay_kind { RELAY_FD, RELAY_BUFFEREVENT };
enum { DIR_TO_BACKEND = 0, DIR_TO_CLIENT = 1 };

struct relay_dir {
	struct relay *relay;
	int from, to;
	struct event read_event;  /* on from */
	struct event write_event; /* on to */
	struct relay_pipe *pipe;
	size_t in_pipe;
	char *pending;
	size_t pending_len, pending_off;
	bool eof, shut;
	uint64_t bytes;
};

struct relay {
	enum relay_kind kind;
	relay_closed_callback *callback;
	void *context;
	bool finished;
	struct event *timer; /* half-close or flush timeout, created on demand */

	/* A kick waits for the backend to fall quiet, so its goodbye lands
	 * between responses, never inside one (a literal). */
	struct event *kick_timer;
	char *kick_message, *kick_reason;
	struct timeval kick_deadline;
	struct timeval last_to_client; /* when the backend last sent anything */

	/* RELAY_FD */
	struct event_base *base;
	struct relay_pipe_pool *pool;
	struct relay_dir dirs[2];

	/* RELAY_BUFFEREVENT: [0] client, [1] backend */
	struct bufferevent *bev[2];
	size_t buffer_max;
	bool closing;
	char *close_reason;
	uint64_t bev_bytes[2];
};

/* ---- pipe pool ---- */

struct relay_pipe_pool *relay_pipe_pool_create(unsigned max_spare)
{
	struct relay_pipe_pool *pool = calloc(1, sizeof(*pool));
	pool->max_spare = max_spare;
	return pool;
}

void relay_pipe_pool_destroy(struct relay_pipe_pool **_pool)
{
	struct relay_pipe_pool *pool = *_pool;
	if (pool == NULL)
		return;
	while (pool->spare != NULL) {
		struct relay_pipe *p = pool->spare;
		pool->spare = p->next;
		close(p->fds[0]);
		close(p->fds[1]);
		free(p);
	}
	free(pool);
	*_pool = NULL;
}

static struct relay_pipe *pipe_get(struct relay_pipe_pool *pool)
{
	struct relay_pipe *p = pool->spare;
	if (p != NULL) {
		pool->spare = p->next;
		pool->spare_count--;
		return p;
	}
	p = malloc(sizeof(*p));
	if (p == NULL || pipe2(p->fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* Only empty pipes come back: the caller has spliced everything out. */
static void pipe_put(struct relay_pipe_pool *pool, struct relay_pipe *p)
{
	if (pool->spare_count < pool->max_spare) {
		p->next = pool->spare;
		pool->spare = p;
		pool->spare_count++;
		return;
	}
	close(p->fds[0]);
	close(p->fds[1]);
	free(p);
}

/* ---- common ---- */

/* The last thing any event handler does: after the callback the relay may
 * be gone. */
static void relay_finish(struct relay *relay, const char *reason)
{
	if (relay->finished)
		return;
	relay->finished = true;
	if (relay->kind == RELAY_FD) {
		for (int i = 0; i < 2; i++) {
			event_del(&relay->dirs[i].read_event);
			event_del(&relay->dirs[i].write_event);
		}
	} else {
		for (int i = 0; i < 2; i++)
			bufferevent_disable(relay->bev[i], EV_READ | EV_WRITE);
	}
	if (relay->timer != NULL)
		event_del(relay->timer);
	if (relay->kick_timer != NULL)
		event_del(relay->kick_timer);
	relay->callback(relay->context, reason);
}

static void relay_timer_expired(evutil_socket_t fd, short what, void *context)
{
	struct relay *relay = context;
	if (relay->kind == RELAY_BUFFEREVENT && relay->closing)
		relay_finish(relay, relay->close_reason);
	else
		relay_finish(relay, "half-closed connection timed out");
}

static void relay_arm_timer(struct relay *relay, struct event_base *base, int secs)
{
	if (relay->timer == NULL)
		relay->timer = evtimer_new(base, relay_timer_expired, relay);
	struct timeval tv = {secs, 0};
	evtimer_add(relay->timer, &tv);
}

static const char *side_name(int dir_to)
{
	return dir_to == DIR_TO_BACKEND ? "backend" : "client";
}

/* ---- fd relay ---- */

enum flush_result { FLUSH_DONE, FLUSH_BLOCKED, FLUSH_ERROR };

static enum flush_result dir_flush(struct relay_dir *dir)
{
	while (dir->pending != NULL) {
		ssize_t n = write(dir->to, dir->pending + dir->pending_off,
				  dir->pending_len - dir->pending_off);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return FLUSH_BLOCKED;
			return FLUSH_ERROR;
		}
		dir->pending_off += (size_t)n;
		if (dir->pending_off == dir->pending_len) {
			free(dir->pending);
			dir->pending = NULL;
		}
	}
	while (dir->in_pipe > 0) {
		ssize_t n = splice(dir->pipe->fds[0], NULL, dir->to, NULL, dir->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return FLUSH_BLOCKED;
			return FLUSH_ERROR;
		}
		dir->in_pipe -= (size_t)n;
	}
	if (dir->pipe != NULL) {
		pipe_put(dir->relay->pool, dir->pipe);
		dir->pipe = NULL;
	}
	return FLUSH_DONE;
}

/* Arms the right event after a flush; returns false if the relay ended. */
static bool dir_update(struct relay_dir *dir, enum flush_result result)
{
	struct relay *relay = dir->relay;
	int to_side = (int)(dir - relay->dirs);
	char reason[128];
	switch (result) {
	case FLUSH_ERROR:
		snprintf(reason, sizeof(reason), "write to %s failed: %s", side_name(to_side),
			 strerror(errno));
		relay_finish(relay, reason);
		return false;
	case FLUSH_BLOCKED:
		event_del(&dir->read_event);
		event_add(&dir->write_event, NULL);
		return true;
	case FLUSH_DONE:
		event_del(&dir->write_event);
		if (!dir->eof) {
			event_add(&dir->read_event, NULL);
			return true;
		}
		if (!dir->shut) {
			/* If the destination has closed its own sending side
			 * too, the close() that follows delivers our FIN; else
			 * pass the half-close on now. */
			struct relay_dir *other = &relay->dirs[1 - to_side];
			if (!other->eof)
				shutdown(dir->to, SHUT_WR);
			dir->shut = true;
		}
		if (relay->dirs[0].shut && relay->dirs[1].shut) {
			relay_finish(relay, NULL);
			return false;
		}
		relay_arm_timer(relay, relay->base, RELAY_HALF_CLOSE_TIMEOUT_SECS);
		return true;
	}
	return true;
}

static void dir_readable(evutil_socket_t fd, short what, void *context)
{
	struct relay_dir *dir = context;
	struct relay *relay = dir->relay;
	if (dir->pipe == NULL && (dir->pipe = pipe_get(relay->pool)) == NULL) {
		char reason[128];
		snprintf(reason, sizeof(reason), "cannot create a relay pipe: %s", strerror(errno));
		relay_finish(relay, reason);
		return;
	}
	ssize_t n = splice(dir->from, NULL, dir->pipe->fds[1], NULL, RELAY_SPLICE_MAX,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n == 0) {
		dir->eof = true;
		event_del(&dir->read_event);
	} else if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		char reason[128];
		int from_side =
			(int)(dir - relay->dirs) == DIR_TO_BACKEND ? DIR_TO_CLIENT : DIR_TO_BACKEND;
		snprintf(reason, sizeof(reason), "read from %s failed: %s", side_name(from_side),
			 strerror(errno));
		relay_finish(relay, reason);
		return;
	} else {
		dir->in_pipe += (size_t)n;
		dir->bytes += (uint64_t)n;
		if (dir == &relay->dirs[DIR_TO_CLIENT])
			event_base_gettimeofday_cached(relay->base, &relay->last_to_client);
	}
	dir_update(dir, dir_flush(dir));
}

static void dir_writable(evutil_socket_t fd, short what, void *context)
{
	struct relay_dir *dir = context;
	dir_update(dir, dir_flush(dir));
}

static void dir_init(struct relay *relay, struct relay_dir *dir, int from, int to,
		     const void *pending, size_t pending_len)
{
	dir->relay = relay;
	dir->from = from;
	dir->to = to;
	event_assign(&dir->read_event, relay->base, from, EV_READ | EV_PERSIST, dir_readable, dir);
	event_assign(&dir->write_event, relay->base, to, EV_WRITE | EV_PERSIST, dir_writable, dir);
	if (pending_len > 0) {
		dir->pending = malloc(pending_len);
		memcpy(dir->pending, pending, pending_len);
		dir->pending_len = pending_len;
	}
}

struct relay *relay_create_fd(struct event_base *base, struct relay_pipe_pool *pool, int client_fd,
			      int backend_fd, const void *pending_to_backend,
			      size_t pending_to_backend_len, const void *pending_to_client,
			      size_t pending_to_client_len, relay_closed_callback *callback,
			      void *context)
{
	struct relay *relay = calloc(1, sizeof(*relay));
	relay->kind = RELAY_FD;
	relay->base = base;
	event_base_gettimeofday_cached(base, &relay->last_to_client);
	relay->pool = pool;
	relay->callback = callback;
	relay->context = context;
	dir_init(relay, &relay->dirs[DIR_TO_BACKEND], client_fd, backend_fd, pending_to_backend,
		 pending_to_backend_len);
	dir_init(relay, &relay->dirs[DIR_TO_CLIENT], backend_fd, client_fd, pending_to_client,
		 pending_to_client_len);
	/* Write what login left over now (it is small and the socket buffer
	 * is empty, so this nearly always completes and no write event is
	 * ever armed), then read.  Errors are reported from the event loop,
	 * since the caller is not ready for a callback before this returns:
	 * a failed write just arms the write event, which fails again there. */
	for (int i = 0; i < 2; i++) {
		struct relay_dir *dir = &relay->dirs[i];
		if (dir->pending != NULL) {
			ssize_t n = write(dir->to, dir->pending, dir->pending_len);
			if (n == (ssize_t)dir->pending_len) {
				free(dir->pending);
				dir->pending = NULL;
			} else if (n > 0) {
				dir->pending_off = (size_t)n;
			}
		}
		if (dir->pending != NULL)
			event_add(&dir->write_event, NULL);
		else
			event_add(&dir->read_event, NULL);
	}
	return relay;
}

/* ---- bufferevent relay ---- */

static void bev_start_closing(struct relay *relay, const char *reason);

static int bev_index(struct relay *relay, struct bufferevent *bev)
{
	return relay->bev[0] == bev ? 0 : 1;
}

static void bev_read(struct bufferevent *bev, void *context)
{
	struct relay *relay = context;
	int i = bev_index(relay, bev);
	struct bufferevent *other = relay->bev[1 - i];
	struct evbuffer *input = bufferevent_get_input(bev);
	struct evbuffer *output = bufferevent_get_output(other);
	relay->bev_bytes[i] += evbuffer_get_length(input);
	if (i == 1)
		event_base_gettimeofday_cached(bufferevent_get_base(bev), &relay->last_to_client);
	evbuffer_add_buffer(output, input);
	if (evbuffer_get_length(output) >= relay->buffer_max) {
		/* resume when the other side has written half of it */
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(other, EV_WRITE, relay->buffer_max / 2, 0);
	}
}

static void bev_write(struct bufferevent *bev, void *context)
{
	struct relay *relay = context;
	int i = bev_index(relay, bev);
	if (relay->closing) {
		if (evbuffer_get_length(bufferevent_get_output(relay->bev[0])) == 0 &&
		    evbuffer_get_length(bufferevent_get_output(relay->bev[1])) == 0)
			relay_finish(relay, relay->close_reason);
		return;
	}
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(relay->bev[1 - i], EV_READ);
}

static void bev_event(struct bufferevent *bev, short what, void *context)
{
	struct relay *relay = context;
	int i = bev_index(relay, bev);
	if ((what & BEV_EVENT_EOF) != 0) {
		/* TLS has no half-close worth keeping: deliver what the
		 * closing side sent, then close both. */
		bev_read(bev, relay);
		bev_start_closing(relay, NULL);
		return;
	}
	if ((what & BEV_EVENT_ERROR) != 0) {
		char reason[256];
		unsigned long ssl_err = bufferevent_get_openssl_error(bev);
		if (ssl_err != 0)
			snprintf(reason, sizeof(reason), "%s TLS error: %s",
				 i == 0 ? "client" : "backend",
				 ERR_reason_error_string(ssl_err) != NULL
					 ? ERR_reason_error_string(ssl_err)
					 : "unknown");
		else
			snprintf(reason, sizeof(reason), "%s connection error: %s",
				 i == 0 ? "client" : "backend", strerror(EVUTIL_SOCKET_ERROR()));
		relay_finish(relay, reason);
	}
}

static void bev_start_closing(struct relay *relay, const char *reason)
{
	if (relay->closing)
		return;
	relay->closing = true;
	relay->close_reason = reason != NULL ? strdup(reason) : NULL;
	for (int i = 0; i < 2; i++) {
		bufferevent_disable(relay->bev[i], EV_READ);
		bufferevent_setwatermark(relay->bev[i], EV_WRITE, 0, 0);
	}
	if (evbuffer_get_length(bufferevent_get_output(relay->bev[0])) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(relay->bev[1])) == 0) {
		relay_finish(relay, relay->close_reason);
		return;
	}
	relay_arm_timer(relay, bufferevent_get_base(relay->bev[0]), RELAY_FLUSH_TIMEOUT_SECS);
}

struct relay *relay_create_bufferevent(struct bufferevent *client, struct bufferevent *backend,
				       size_t buffer_max, relay_closed_callback *callback,
				       void *context)
{
	struct relay *relay = calloc(1, sizeof(*relay));
	relay->kind = RELAY_BUFFEREVENT;
	relay->base = bufferevent_get_base(client);
	event_base_gettimeofday_cached(relay->base, &relay->last_to_client);
	relay->callback = callback;
	relay->context = context;
	relay->bev[0] = client;
	relay->bev[1] = backend;
	relay->buffer_max = buffer_max;
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(relay->bev[i], bev_read, bev_write, bev_event, relay);
		bufferevent_set_timeouts(relay->bev[i], NULL, NULL);
		bufferevent_setwatermark(relay->bev[i], EV_READ, 0, 0);
		bufferevent_setwatermark(relay->bev[i], EV_WRITE, 0, 0);
		/* already-buffered input goes over first */
		struct evbuffer *input = bufferevent_get_input(relay->bev[i]);
		if (evbuffer_get_length(input) > 0)
			evbuffer_add_buffer(bufferevent_get_output(relay->bev[1 - i]), input);
	}
	for (int i = 0; i < 2; i++)
		bufferevent_enable(relay->bev[i], EV_READ | EV_WRITE);
	return relay;
}

/* ---- common API ---- */

#define KICK_QUIET_MSEC 500
#define KICK_WAIT_MAX_SECS 5

static long msec_between(const struct timeval *a, const struct timeval *b)
{
	return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_usec - a->tv_usec) / 1000;
}

/* Sends the goodbye if nothing is half-way to the client, then ends. */
static void kick_now(struct relay *relay, bool send_message)
{
	char *reason = relay->kick_reason;
	relay->kick_reason = NULL;
	const char *message = send_message ? relay->kick_message : NULL;
	if (relay->kind == RELAY_FD) {
		struct relay_dir *to_client = &relay->dirs[DIR_TO_CLIENT];
		if (message != NULL && to_client->in_pipe == 0 && to_client->pending == NULL &&
		    !to_client->shut) {
			ssize_t ignored = write(to_client->to, message, strlen(message));
			(void)ignored;
		}
		relay_finish(relay, reason);
		free(reason);
		return;
	}
	struct evbuffer *output = bufferevent_get_output(relay->bev[0]);
	if (message != NULL && evbuffer_get_length(output) == 0)
		evbuffer_add(output, message, strlen(message));
	bev_start_closing(relay, reason);
	free(reason);
}

static void kick_check(evutil_socket_t fd, short what, void *context)
{
	struct relay *relay = context;
	struct timeval now;
	event_base_gettimeofday_cached(relay->base, &now);
	long quiet = msec_between(&relay->last_to_client, &now);
	bool flushed = relay->kind == RELAY_FD
			       ? relay->dirs[DIR_TO_CLIENT].in_pipe == 0 &&
					 relay->dirs[DIR_TO_CLIENT].pending == NULL
			       : evbuffer_get_length(bufferevent_get_output(relay->bev[0])) == 0;
	if (quiet >= KICK_QUIET_MSEC && flushed) {
		kick_now(relay, true);
		return;
	}
	if (msec_between(&relay->kick_deadline, &now) >= 0) {
		/* never quiet: a goodbye could cut a response in two */
		kick_now(relay, false);
		return;
	}
	long wait = quiet >= KICK_QUIET_MSEC ? 50 : KICK_QUIET_MSEC - quiet;
	struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
	evtimer_add(relay->kick_timer, &tv);
}

void relay_kick(struct relay *relay, const char *message, const char *reason)
{
	if (relay->finished || relay->kick_timer != NULL)
		return;
	/* No new commands reach the backend; what it is still answering
	 * is relayed until it falls quiet (KICK_QUIET_MSEC), and only then
	 * does the goodbye go out: the backend's stream is spliced unseen,
	 * so silence is the only sign that no response is half-way.  If it
	 * never falls quiet (KICK_WAIT_MAX_SECS), the relay ends without a
	 * goodbye rather than with one inside a literal. */
	if (relay->kind == RELAY_FD)
		event_del(&relay->dirs[DIR_TO_BACKEND].read_event);
	else
		bufferevent_disable(relay->bev[0], EV_READ);
	relay->kick_message = message != NULL ? strdup(message) : NULL;
	relay->kick_reason = strdup(reason != NULL ? reason : "kicked");
	event_base_gettimeofday_cached(relay->base, &relay->kick_deadline);
	relay->kick_deadline.tv_sec += KICK_WAIT_MAX_SECS;
	relay->kick_timer = evtimer_new(relay->base, kick_check, relay);
	kick_check(-1, 0, relay);
}

void relay_get_stats(const struct relay *relay, struct relay_stats *stats_r)
{
	if (relay->kind == RELAY_FD) {
		stats_r->bytes_client_to_backend = relay->dirs[DIR_TO_BACKEND].bytes;
		stats_r->bytes_backend_to_client = relay->dirs[DIR_TO_CLIENT].bytes;
	} else {
		stats_r->bytes_client_to_backend = relay->bev_bytes[0];
		stats_r->bytes_backend_to_client = relay->bev_bytes[1];
	}
}

static void free_ssl_bufferevent(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl != NULL)
		SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
	bufferevent_free(bev);
}

void relay_destroy(struct relay **_relay)
{
	struct relay *relay = *_relay;
	if (relay == NULL)
		return;
	if (relay->timer != NULL)
		event_free(relay->timer);
	if (relay->kick_timer != NULL)
		event_free(relay->kick_timer);
	free(relay->kick_message);
	free(relay->kick_reason);
	if (relay->kind == RELAY_FD) {
		for (int i = 0; i < 2; i++) {
			struct relay_dir *dir = &relay->dirs[i];
			event_del(&dir->read_event);
			event_del(&dir->write_event);
			free(dir->pending);
			if (dir->pipe != NULL) {
				/* bytes still inside: the pipe cannot be reused */
				close(dir->pipe->fds[0]);
				close(dir->pipe->fds[1]);
				free(dir->pipe);
			}
		}
		close(relay->dirs[DIR_TO_BACKEND].from);
		close(relay->dirs[DIR_TO_BACKEND].to);
	} else {
		free_ssl_bufferevent(relay->bev[0]);
		free_ssl_bufferevent(relay->bev[1]);
		free(relay->close_reason);
	}
	free(relay);
	*_relay = NULL;
}
