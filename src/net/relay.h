/* relay.h - the byte pump between a client and its backend after login.
 *
 * Two kinds:
 *   - fd relay: both sides plain TCP.  Data moves socket -> pipe -> socket
 *     with splice(), never entering user space.  The pipe is borrowed from a
 *     shared pool only while bytes are in flight and returned when it is
 *     empty, so an idle relay holds two sockets and a few hundred bytes.
 *   - bufferevent relay: at least one side is TLS (a libevent bufferevent);
 *     chains of evbuffer blocks are moved, not copied, and a direction stops
 *     reading while more than buffer_max bytes wait to be written.
 *
 * Half-close: when one side stops sending (EOF), the other side's write half
 * is shut down once everything has been written, and the relay lives on
 * until both directions are done.  The closed callback is called exactly
 * once, and after it the caller destroys the relay.
 */
#ifndef RELAY_H
#define RELAY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bufferevent;
struct relay;
struct relay_pipe_pool;

/* reason is NULL for a normal end (both sides closed), else a sentence. */
typedef void relay_closed_callback(void *context, const char *reason);

struct relay_stats {
	uint64_t bytes_client_to_backend;
	uint64_t bytes_backend_to_client;
};

struct relay_pipe_pool *relay_pipe_pool_create(unsigned max_spare);
void relay_pipe_pool_destroy(struct relay_pipe_pool **pool);

/* Relays between two plain sockets (non-blocking; the relay owns and closes
 * them).  pending_* are bytes already read from one side during login, to be
 * written to the other side first. */
struct relay *relay_create_fd(struct event_base *base, struct relay_pipe_pool *pool, int client_fd,
			      int backend_fd, const void *pending_to_backend,
			      size_t pending_to_backend_len, const void *pending_to_client,
			      size_t pending_to_client_len, relay_closed_callback *callback,
			      void *context);
/* Relays between two bufferevents (the relay owns and frees them); any data
 * already in their input buffers is relayed first. */
struct relay *relay_create_bufferevent(struct bufferevent *client, struct bufferevent *backend,
				       size_t buffer_max, relay_closed_callback *callback,
				       void *context);

/* Ends the relay, with message to the client if that can be done between
 * two responses: stops relaying the client's commands, waits (up to a few
 * seconds) until the backend has been quiet for half a second, then sends
 * message and closes; if the backend never falls quiet, closes without
 * it.  The closed callback is called with reason, now or later. */
void relay_kick(struct relay *relay, const char *message, const char *reason);

void relay_get_stats(const struct relay *relay, struct relay_stats *stats_r);
void relay_destroy(struct relay **relay);

#endif
