/* haproxy.c - the PROXY protocol stage of haproxy = yes listeners; see
 * frontend.h.
 *
 * The header is read without consuming anything after it: the bytes are
 * peeked (MSG_PEEK) until proxy_protocol_parse() has a whole header, and
 * then exactly that many are read, so the front-end starts on a clean
 * socket.  A load balancer sends the header in its first packet, so one
 * peek nearly always does; a header that comes in pieces is peeked again
 * after a short pause (not at every readiness event, which a peek would
 * never clear), all within haproxy_timeout.
 */
#include "daemon/daemon.h"
#include "daemon/frontend.h"
#include "proto/proxy_protocol.h"
#include "util/log.h"
#include "util/net_util.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HAPROXY_HEADER_MAX (16 + 65535)
#define HAPROXY_REPEEK_MSEC 20

struct haproxy_conn {
	struct daemon *daemon;
	int fd;
	const struct frontend *frontend;
	const char *listener_name;
	struct sockaddr_storage peer;
	struct event *event;
	struct timespec deadline;
	size_t last_len;
	char peer_ip[46];
	uint16_t peer_port;
};

static void haproxy_conn_free(struct haproxy_conn *conn, const char *reason)
{
	if (reason != NULL) {
		log_warning("event=haproxy_refused listener=%s peer=%s:%u reason=\"%s\"",
			    conn->listener_name, conn->peer_ip, conn->peer_port, reason);
		close(conn->fd);
		conn->daemon->metrics.haproxy_refused++;
	}
	event_free(conn->event);
	conn->daemon->client_count--;
	free(conn);
}

static bool expired(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

static void haproxy_try(evutil_socket_t fd, short what, void *context)
{
	struct haproxy_conn *conn = context;
	static char buf[HAPROXY_HEADER_MAX];
	if ((what & EV_TIMEOUT) != 0 && expired(&conn->deadline)) {
		haproxy_conn_free(conn, "no complete PROXY header within haproxy_timeout");
		return;
	}
	ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_PEEK);
	if (n == 0) {
		haproxy_conn_free(conn, "closed before sending a PROXY header");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		char reason[128];
		snprintf(reason, sizeof(reason), "read failed: %s", strerror(errno));
		haproxy_conn_free(conn, reason);
		return;
	}
	struct proxy_protocol_result result;
	size_t consumed;
	const char *error;
	switch (proxy_protocol_parse(buf, (size_t)n, &result, &consumed, &error)) {
	case PROXY_PROTOCOL_ERROR: {
		char reason[256];
		snprintf(reason, sizeof(reason), "bad PROXY header: %s", error);
		haproxy_conn_free(conn, reason);
		return;
	}
	case PROXY_PROTOCOL_MORE: {
		/* peeked bytes stay readable: wait by the clock instead */
		conn->last_len = (size_t)n;
		event_del(conn->event);
		event_assign(conn->event, conn->daemon->base, conn->fd, EV_TIMEOUT, haproxy_try,
			     conn);
		struct timeval tv = {0, HAPROXY_REPEEK_MSEC * 1000};
		event_add(conn->event, &tv);
		return;
	}
	case PROXY_PROTOCOL_DONE:
		break;
	}
	/* now take exactly the header off the socket */
	ssize_t r = recv(conn->fd, buf, consumed, 0);
	if (r != (ssize_t)consumed) {
		haproxy_conn_free(conn, "could not read the PROXY header it had sent");
		return;
	}
	int client_fd = conn->fd;
	struct daemon *daemon = conn->daemon;
	const struct frontend *frontend = conn->frontend;
	struct sockaddr_storage remote, local;
	bool have_local = false;
	if (result.local) {
		memcpy(&remote, &conn->peer, sizeof(remote));
	} else {
		memcpy(&remote, &result.source, sizeof(remote));
		memcpy(&local, &result.destination, sizeof(local));
		have_local = true;
	}
	haproxy_conn_free(conn, NULL);
	frontend->create(daemon, client_fd, (struct sockaddr *)&remote,
			 have_local ? (struct sockaddr *)&local : NULL, frontend->implicit_tls);
}

void haproxy_accept(struct daemon *daemon, int fd, const struct sockaddr *peer,
		    const struct frontend *frontend, const char *listener_name)
{
	struct haproxy_conn *conn = calloc(1, sizeof(*conn));
	conn->daemon = daemon;
	conn->fd = fd;
	conn->frontend = frontend;
	conn->listener_name = listener_name;
	memcpy(&conn->peer, peer,
	       peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in));
	net_sockaddr_to_ip(peer, conn->peer_ip, sizeof(conn->peer_ip), &conn->peer_port);
	daemon->client_count++;
	conn->event = event_new(daemon->base, fd, EV_READ | EV_PERSIST, haproxy_try, conn);
	if (!net_networks_match(daemon->haproxy_trusted, daemon->haproxy_trusted_count, peer)) {
		haproxy_conn_free(conn, "peer is not in haproxy_trusted_networks");
		return;
	}
	unsigned timeout_ms = daemon->set->haproxy_timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &conn->deadline);
	conn->deadline.tv_sec += timeout_ms / 1000;
	conn->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (conn->deadline.tv_nsec >= 1000000000) {
		conn->deadline.tv_sec++;
		conn->deadline.tv_nsec -= 1000000000;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	event_add(conn->event, &tv);
}
