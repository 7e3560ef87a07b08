/* login_proxy.c - see login_proxy.h.
 *
 * The backend side is a plain non-blocking socket driven by one event, with
 * a small buffer for the few lines of the login.  The dialogue's terminal
 * calls only mark the outcome; the outcome is acted on when the dialogue
 * returns (finish()), so no code runs on a freed login proxy.
 */
#include "daemon/login_proxy.h"

#include "daemon/daemon.h"
#include "daemon/session.h"
#include "net/relay.h"
#include "net/stream.h"
#include "proto/sasl_plain.h"
#include "daemon/router.h"
#include "util/lb_address.h"
#include "util/log.h"
#include "util/net_util.h"

#include <ctype.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define BACKEND_LINE_MAX 65536

enum outcome { OUTCOME_NONE, OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_UNAVAILABLE, OUTCOME_RETRY };

struct login_proxy {
	struct login_proxy_request request;
	struct route_result route;
	char *tag, *user, *password;
	login_proxy_callback *callback;
	void *context;

	int fd;
	struct event event;
	bool event_set, connecting;
	char *in;
	size_t in_len, in_size;
	struct event *retry_timer;
	struct timespec deadline;
	unsigned attempts;
	unsigned dialogue_state;
	bool spoke; /* the backend sent at least one line this attempt */

	/* set by the dialogue's terminal calls, acted on in finish() */
	enum outcome outcome;
	char *outcome_text;
	size_t outcome_len;
	const char *rest; /* backend bytes after the success reply */
	size_t rest_len;

	char target[ADDRESS_MAX_LEN + 16]; /* "ip:port" we connect to */
	const char *target_ip;             /* the backend's or the load balancer's */
	int target_port;
};

static void attempt_connect(struct login_proxy *lp);

void client_ident_init(struct client_ident *ident, struct daemon *daemon, int fd,
		       const struct sockaddr *remote, const struct sockaddr *local)
{
	net_sockaddr_to_ip(remote, ident->client_ip, sizeof(ident->client_ip), &ident->client_port);
	struct sockaddr_storage local_buf;
	socklen_t local_len = sizeof(local_buf);
	if (local == NULL && getsockname(fd, (struct sockaddr *)&local_buf, &local_len) == 0)
		local = (struct sockaddr *)&local_buf;
	if (local != NULL)
		net_sockaddr_to_ip(local, ident->local_ip, sizeof(ident->local_ip),
				   &ident->local_port);
	session_id_generate(daemon, ident->session_id);
	ident->loopback = net_sockaddr_is_loopback(remote);
	ident->trusted =
		daemon->login_trusted_count > 0 &&
		net_networks_match(daemon->login_trusted, daemon->login_trusted_count, remote);
	ident->forwarded = false;
	ident->forwarded_by[0] = '\0';
	ident->hops = 0;
	ident->proxy_ttl = 0;
}

static int parse_number(const char *value, unsigned max, unsigned *value_r)
{
	char *end;
	if (value[0] < '0' || value[0] > '9')
		return -1;
	unsigned long n = strtoul(value, &end, 10);
	if (*end != '\0' || n > max)
		return -1;
	*value_r = (unsigned)n;
	return 0;
}

static void mark_forwarded(struct client_ident *ident)
{
	if (ident->forwarded)
		return;
	ident->forwarded = true;
	/* the peer's own address, before the client's replaces it */
	snprintf(ident->forwarded_by, sizeof(ident->forwarded_by), "%s", ident->client_ip);
}

int client_ident_forward(struct client_ident *ident, const char *name, const char *value,
			 const char **error_r)
{
	static char error[200];
	unsigned number;
	if (strcmp(name, "addr") == 0 || strcmp(name, "destaddr") == 0) {
		if (strncasecmp(value, "IPV6:", 5) == 0)
			value += 5;
		if (value[0] == '[')
			return 0; /* [UNAVAILABLE], [TEMPUNAVAIL]: nothing to take */
		if (!net_is_ip_address(value) || strlen(value) >= sizeof(ident->client_ip)) {
			snprintf(error, sizeof(error), "%s '%.60s' is not an IP address", name,
				 value);
			*error_r = error;
			return -1;
		}
		mark_forwarded(ident);
		if (strcmp(name, "addr") == 0)
			snprintf(ident->client_ip, sizeof(ident->client_ip), "%s", value);
		else
			snprintf(ident->local_ip, sizeof(ident->local_ip), "%s", value);
		return 0;
	}
	if (strcmp(name, "port") == 0 || strcmp(name, "destport") == 0) {
		if (value[0] == '[')
			return 0;
		if (parse_number(value, 65535, &number) < 0) {
			snprintf(error, sizeof(error), "%s '%.60s' is not a port", name, value);
			*error_r = error;
			return -1;
		}
		mark_forwarded(ident);
		if (strcmp(name, "port") == 0)
			ident->client_port = (uint16_t)number;
		else
			ident->local_port = (uint16_t)number;
		return 0;
	}
	if (strcmp(name, "session") == 0) {
		size_t len = strlen(value);
		bool ok = len > 0 && len < sizeof(ident->session_id);
		for (size_t i = 0; ok && i < len; i++) {
			char c = value[i];
			ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '+' ||
			     c == '/' || c == '.';
		}
		if (!ok) {
			snprintf(error, sizeof(error),
				 "session id '%.60s' is not 1-23 letters, digits or -_+/.", value);
			*error_r = error;
			return -1;
		}
		mark_forwarded(ident);
		snprintf(ident->session_id, sizeof(ident->session_id), "%s", value);
		return 0;
	}
	if (strcmp(name, "ttl") == 0 || strcmp(name, "hops") == 0) {
		if (parse_number(value, 1000, &number) < 0) {
			snprintf(error, sizeof(error), "%s '%.60s' is not a number up to 1000",
				 name, value);
			*error_r = error;
			return -1;
		}
		mark_forwarded(ident);
		if (strcmp(name, "ttl") == 0)
			ident->proxy_ttl = number;
		else
			ident->hops = number;
		return 0;
	}
	return 0;
}

void login_xtext(const char *value, char *dst, size_t dst_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if (n + 4 > dst_size)
			break;
		if (*p < '!' || *p > '~' || *p == '+' || *p == '=') {
			dst[n++] = '+';
			dst[n++] = hex[*p >> 4];
			dst[n++] = hex[*p & 15];
		} else {
			dst[n++] = (char)*p;
		}
	}
	dst[n] = '\0';
}

static int xtext_decode(const char *src, size_t len, char *dst, size_t dst_size)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (n + 1 >= dst_size)
			return -1;
		if (src[i] != '+') {
			dst[n++] = src[i];
			continue;
		}
		if (i + 2 >= len || !isxdigit((unsigned char)src[i + 1]) ||
		    !isxdigit((unsigned char)src[i + 2]))
			return -1;
		char hex[3] = {src[i + 1], src[i + 2], '\0'};
		dst[n++] = (char)strtoul(hex, NULL, 16);
		i += 2;
	}
	dst[n] = '\0';
	return 0;
}

int client_ident_xclient(struct client_ident *ident, const char *args, const char **error_r)
{
	static char error[200];
	for (const char *p = args; *p != '\0';) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		size_t len = strcspn(p, " ");
		const char *eq = memchr(p, '=', len);
		char name[16], value[128];
		size_t value_len = eq != NULL ? len - (size_t)(eq - p) - 1 : 0;
		if (eq != NULL && value_len < sizeof(value) &&
		    xtext_decode(eq + 1, value_len, value, sizeof(value)) < 0) {
			/* not xtext: as it is (Dovecot's proxies send SESSION so) */
			memcpy(value, eq + 1, value_len);
			value[value_len] = '\0';
		}
		if (eq == NULL || eq == p || (size_t)(eq - p) >= sizeof(name) ||
		    value_len >= sizeof(value)) {
			snprintf(error, sizeof(error), "invalid XCLIENT attribute '%.*s'",
				 (int)(len < 60 ? len : 60), p);
			*error_r = error;
			return -1;
		}
		size_t name_len = (size_t)(eq - p);
		for (size_t i = 0; i < name_len; i++)
			name[i] = (char)tolower((unsigned char)p[i]);
		name[name_len] = '\0';
		if (client_ident_forward(ident, name, value, error_r) < 0)
			return -1;
		p += len;
	}
	return 0;
}

void client_ident_forward_log(const struct client_ident *ident, const char *protocol)
{
	if (!ident->forwarded)
		return;
	log_info("event=forward_accepted protocol=%s peer=%s client=%s:%u session=%s hops=%u",
		 protocol, ident->forwarded_by, ident->client_ip, ident->client_port,
		 ident->session_id, ident->hops);
}

bool client_ident_xclient_refused(const struct client_ident *ident, const char *protocol)
{
	if (ident->trusted)
		return false;
	log_warning("event=forward_refused protocol=%s peer=%s:%u session=%s "
		    "reason=\"XCLIENT from a peer not in login_trusted_networks\"",
		    protocol, ident->client_ip, ident->client_port, ident->session_id);
	return true;
}

unsigned client_ident_ttl(const struct client_ident *ident)
{
	if (ident->proxy_ttl == 0)
		return LOGIN_PROXY_TTL;
	return ident->proxy_ttl > 1 ? ident->proxy_ttl - 1 : 0;
}

/* The port of this daemon's own listener for protocol, else the
 * protocol's standard one: where a load balancer given without a port
 * is reached. */
static int own_port(const struct daemon *daemon, const char *protocol)
{
	static const struct {
		const char *protocol;
		enum listener_kind kind;
		int standard;
	} ports[] = {
		{"imap", LISTENER_IMAP, 143},
		{"pop3", LISTENER_POP3, 110},
		{"lmtp", LISTENER_LMTP, 24},
		{"sieve", LISTENER_SIEVE, 4190},
		{"submission", LISTENER_SUBMISSION, 587},
	};
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		if (strcmp(ports[i].protocol, protocol) != 0)
			continue;
		int port = daemon->set->listeners[ports[i].kind].addr.port;
		return port != 0 ? port : ports[i].standard;
	}
	return 0;
}

enum route_status login_route_site(struct daemon *daemon, const char *protocol,
				   const struct client_ident *ident, struct route_result *route,
				   const char **reason_r)
{
	static char reason[600];
	route->forward_address[0] = '\0';
	route->forward_port = 0;
	if (route->via_site[0] == '\0')
		return ROUTE_OK;
	if (ident->hops > 0) {
		daemon->metrics.route_loops++;
		snprintf(reason, sizeof(reason),
			 "this session was forwarded to us by another site (hops=%u, from %s), but "
			 "here group %u lives in site %s: not forwarded again (the sites' views "
			 "disagree, e.g. replication delay or a split)",
			 ident->hops, ident->forwarded_by, route->group_id, route->via_site);
		log_warning("event=route_loop protocol=%s user=%s group=%u site=%s backend=%s "
			    "client=%s:%u session=%s hops=%u forwarded_by=%s reason=\"%s\"",
			    protocol, route->username, route->group_id, route->via_site,
			    route->backend.name, ident->client_ip, ident->client_port,
			    ident->session_id, ident->hops, ident->forwarded_by, reason);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	const char *error;
	int port;
	int found = lb_address_for(route->via.load_balancer, protocol, route->forward_address,
				   sizeof(route->forward_address), &port, &error);
	if (found <= 0) {
		daemon->metrics.site_unavailable++;
		if (found < 0)
			snprintf(reason, sizeof(reason),
				 "group %u lives in site %s, whose load balancer address '%s' is "
				 "invalid: %s",
				 route->group_id, route->via_site, route->via.load_balancer, error);
		else
			snprintf(reason, sizeof(reason),
				 "group %u lives in site %s, whose load balancer address '%s' has "
				 "no %s address",
				 route->group_id, route->via_site, route->via.load_balancer,
				 protocol);
		route->forward_address[0] = '\0';
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	route->forward_port = port != 0 ? port : own_port(daemon, protocol);
	return ROUTE_OK;
}

bool login_route_target(const struct route_result *route, int backend_port, const char **ip_r,
			int *port_r)
{
	if (route->via_site[0] != '\0') {
		*ip_r = route->forward_address;
		*port_r = route->forward_port;
		return true;
	}
	*ip_r = route->backend.address;
	*port_r = backend_port;
	return false;
}

enum login_route login_route_finish(struct daemon *daemon, const char *protocol,
				    const struct client_ident *ident, enum route_status status,
				    struct route_result *route, const char *reason)
{
	if (status == ROUTE_OK)
		status = login_route_site(daemon, protocol, ident, route, &reason);
	switch (status) {
	case ROUTE_OK:
		return LOGIN_ROUTE_OK;
	case ROUTE_BAD_USER:
		daemon->metrics.logins_refused++;
		log_info("event=login result=refused protocol=%s client=%s:%u session=%s "
			 "reason=\"%s\"",
			 protocol, ident->client_ip, ident->client_port, ident->session_id, reason);
		return LOGIN_ROUTE_BAD_USER;
	case ROUTE_ERROR:
	case ROUTE_UNAVAILABLE:
	case ROUTE_ASSIGN:
		break;
	}
	daemon->metrics.logins_unavailable++;
	log_warning("event=login result=unavailable protocol=%s user=%s group=%u client=%s:%u "
		    "session=%s reason=\"%s\"",
		    protocol, route->username, route->group_id, ident->client_ip,
		    ident->client_port, ident->session_id, reason);
	return LOGIN_ROUTE_UNAVAILABLE;
}

enum login_route login_route(struct daemon *daemon, const char *protocol,
			     const struct client_ident *ident, const char *user,
			     struct route_result *route, router_callback *callback, void *context,
			     struct router_wait **wait_r)
{
	const char *reason = NULL;
	enum route_status status =
		router_route(daemon, user, route, &reason, callback, context, wait_r);
	if (status == ROUTE_ASSIGN)
		return LOGIN_ROUTE_PENDING;
	return login_route_finish(daemon, protocol, ident, status, route, reason);
}

static long ms_until(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static void backend_close(struct login_proxy *lp)
{
	if (lp->event_set) {
		event_del(&lp->event);
		lp->event_set = false;
	}
	if (lp->fd >= 0) {
		close(lp->fd);
		lp->fd = -1;
	}
	lp->in_len = 0;
}

static void wipe_free(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static void login_proxy_free(struct login_proxy *lp)
{
	backend_close(lp);
	if (lp->retry_timer != NULL)
		event_free(lp->retry_timer);
	free(lp->in);
	free(lp->tag);
	free(lp->user);
	wipe_free(&lp->password);
	free(lp->outcome_text);
	free(lp);
}

void login_proxy_abort(struct login_proxy **_lp)
{
	struct login_proxy *lp = *_lp;
	if (lp == NULL)
		return;
	login_proxy_free(lp);
	*_lp = NULL;
}

const struct login_proxy_request *login_proxy_request(const struct login_proxy *lp)
{
	return &lp->request;
}

unsigned *login_proxy_state(struct login_proxy *lp)
{
	return &lp->dialogue_state;
}

void login_proxy_send(struct login_proxy *lp, const char *data, size_t len)
{
	if (lp->outcome != OUTCOME_NONE)
		return;
	/* login commands are a few hundred bytes on a fresh connection: the
	 * send buffer takes them whole */
	ssize_t n = write(lp->fd, data, len);
	if (n != (ssize_t)len) {
		char reason[256];
		snprintf(reason, sizeof(reason), "cannot send to %s %s: %s",
			 lp->route.via_site[0] != '\0' ? "load balancer" : "backend", lp->target,
			 n < 0 ? strerror(errno) : "short write");
		if (lp->spoke)
			login_proxy_unavailable(lp, reason);
		else
			login_proxy_retry(lp, reason);
	}
}

void login_proxy_sendf(struct login_proxy *lp, const char *fmt, ...)
{
	char buf[2048];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		login_proxy_unavailable(lp, "login command too long to forward");
		return;
	}
	login_proxy_send(lp, buf, (size_t)n);
	explicit_bzero(buf, sizeof(buf));
}

bool login_proxy_forwarding(const struct login_proxy *lp)
{
	return lp->route.via_site[0] != '\0';
}

unsigned login_proxy_hops(const struct login_proxy *lp)
{
	return lp->request.ident.hops + 1;
}

bool login_proxy_far_tempfail(struct login_proxy *lp, const char *line, const char *marker)
{
	if (!login_proxy_forwarding(lp) || strstr(line, marker) == NULL)
		return false;
	char reason[600];
	snprintf(reason, sizeof(reason), "the load balancer %s of site %s answered: %.200s",
		 lp->target, lp->route.via_site, line);
	login_proxy_unavailable(lp, reason);
	return true;
}

const char *login_proxy_target(const struct login_proxy *lp)
{
	return lp->target;
}

int login_proxy_plain_ir(struct login_proxy *lp, char *dst, size_t dst_size)
{
	return sasl_plain_encode(lp->user, lp->password, dst, dst_size);
}

void login_proxy_to_client(struct login_proxy *lp, const char *data, size_t len)
{
	stream_write(lp->request.client, data, len);
}

static void set_outcome(struct login_proxy *lp, enum outcome outcome, const char *text, size_t len)
{
	if (lp->outcome != OUTCOME_NONE)
		return;
	lp->outcome = outcome;
	lp->outcome_text = malloc(len + 1);
	memcpy(lp->outcome_text, text, len);
	lp->outcome_text[len] = '\0';
	lp->outcome_len = len;
}

void login_proxy_success(struct login_proxy *lp, const char *reply, size_t len)
{
	set_outcome(lp, OUTCOME_SUCCESS, reply, len);
}

void login_proxy_failure(struct login_proxy *lp, const char *reply, size_t len)
{
	set_outcome(lp, OUTCOME_FAILURE, reply, len);
}

void login_proxy_unavailable(struct login_proxy *lp, const char *reason)
{
	set_outcome(lp, OUTCOME_UNAVAILABLE, reason, strlen(reason));
}

void login_proxy_retry(struct login_proxy *lp, const char *reason)
{
	set_outcome(lp, OUTCOME_RETRY, reason, strlen(reason));
}

/* ---- outcomes ---- */

static void proxy_now(struct login_proxy *lp)
{
	const struct login_proxy_request *req = &lp->request;
	struct daemon *daemon = req->daemon;
	const struct route_result *route = &lp->route;
	const char *protocol = req->dialogue->protocol;
	struct session *session = session_create(
		daemon, NULL, route->username, route->group_id, route->backend.name,
		req->ident.client_ip, req->ident.client_port, protocol, req->ident.session_id);
	bool tls = stream_is_tls(req->client);

	daemon->metrics.logins_ok++;
	if (route->via_site[0] != '\0')
		daemon->metrics.site_forwards++;
	if (req->ident.hops > 0)
		daemon->metrics.site_forwarded_in++;
	char via[NAME_MAX_LEN + 16] = "", hops[64] = "";
	if (route->via_site[0] != '\0')
		snprintf(via, sizeof(via), " via_site=%s", route->via_site);
	if (req->ident.forwarded)
		snprintf(hops, sizeof(hops), " hops=%u", req->ident.hops);
	if (route->site_failover)
		snprintf(hops + strlen(hops), sizeof(hops) - strlen(hops), " site_failover=%s",
			 route->site_failover_reason);
	if (route->force_move_id != 0)
		snprintf(hops + strlen(hops), sizeof(hops) - strlen(hops), " force_move=%lld",
			 (long long)route->force_move_id);
	log_info("event=login result=ok protocol=%s user=%s group=%u backend=%s address=%s%s "
		 "client=%s:%u session=%s tls=%s%s%s",
		 protocol, route->username, route->group_id, route->backend.name, lp->target, via,
		 req->ident.client_ip, req->ident.client_port, req->ident.session_id,
		 tls ? "yes" : "no", hops, route->assigned_now ? " group_assigned=yes" : "");

	/* Whatever is still buffered goes first: to the client our unsent
	 * output, the reply and anything the backend sent after it; to the
	 * backend what the client pipelined after its login.  The login's
	 * events on both sockets are removed only after the relay has added
	 * its own, so epoll sees no change. */
	int backend_fd = lp->fd, client_fd;
	lp->fd = -1;
	const char *out, *in;
	size_t out_len, in_len;
	if (tls) {
		stream_write(req->client, lp->outcome_text, lp->outcome_len);
		stream_write(req->client, "\r\n", 2);
		if (lp->rest_len > 0)
			stream_write(req->client, lp->rest, lp->rest_len);
		struct bufferevent *client_bev =
			stream_detach(req->client, &client_fd, &out, &out_len, &in, &in_len);
		struct bufferevent *backend_bev =
			bufferevent_socket_new(daemon->base, backend_fd, BEV_OPT_CLOSE_ON_FREE);
		session->relay = relay_create_bufferevent(client_bev, backend_bev,
							  daemon->set->relay_buffer_max,
							  session_relay_closed, session);
	} else {
		stream_detach(req->client, &client_fd, &out, &out_len, &in, &in_len);
		size_t to_client_len = out_len + lp->outcome_len + 2 + lp->rest_len;
		char *to_client = malloc(to_client_len), *p = to_client;
		if (out_len > 0)
			memcpy(p, out, out_len);
		p += out_len;
		memcpy(p, lp->outcome_text, lp->outcome_len);
		p += lp->outcome_len;
		memcpy(p, "\r\n", 2);
		p += 2;
		if (lp->rest_len > 0)
			memcpy(p, lp->rest, lp->rest_len);
		session->relay = relay_create_fd(daemon->base, daemon->pipe_pool, client_fd,
						 backend_fd, in, in_len, to_client, to_client_len,
						 session_relay_closed, session);
		free(to_client);
	}
	/* the session counts this connection from now on; the front-end
	 * uncounts its own when it frees itself */
	daemon->client_count++;
	/* routed just before a change (a move, a failover) the LocalDB has
	 * since brought: end it now rather than leave the user on two
	 * backends */
	char why[256];
	if (router_session_misplaced(daemon, session, why, sizeof(why))) {
		log_info("event=session_moved user=%s group=%u backend=%s session=%s "
			 "reason=\"%s (at login)\"",
			 session->user, session->group_id, session->backend, session->session_id,
			 why);
		session_kick_moving(session, why);
	}
}

static void retry_timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct login_proxy *lp = context;
	event_free(lp->retry_timer);
	lp->retry_timer = NULL;
	attempt_connect(lp);
}

/* Acts on the outcome; returns false if lp is gone. */
static bool finish(struct login_proxy *lp)
{
	const struct login_proxy_request *req = &lp->request;
	struct daemon *daemon = req->daemon;
	const char *protocol = req->dialogue->protocol;
	enum outcome outcome = lp->outcome;
	lp->outcome = OUTCOME_NONE;
	switch (outcome) {
	case OUTCOME_NONE:
		return true;
	case OUTCOME_RETRY: {
		daemon->metrics.backend_connect_failures++;
		backend_close(lp);
		long left = ms_until(&lp->deadline);
		if (left > (long)daemon->set->proxy_connect_retry_ms) {
			log_info("event=backend_retry protocol=%s user=%s backend=%s address=%s "
				 "attempt=%u session=%s reason=\"%s\"",
				 protocol, lp->route.username, lp->route.backend.name, lp->target,
				 lp->attempts, req->ident.session_id, lp->outcome_text);
			free(lp->outcome_text);
			lp->outcome_text = NULL;
			lp->retry_timer = evtimer_new(daemon->base, retry_timer_fired, lp);
			struct timeval tv = {daemon->set->proxy_connect_retry_ms / 1000,
					     (daemon->set->proxy_connect_retry_ms % 1000) * 1000};
			evtimer_add(lp->retry_timer, &tv);
			return true;
		}
		char reason[600];
		snprintf(reason, sizeof(reason),
			 "%s (gave up after %u attempt(s) within proxy_timeout)", lp->outcome_text,
			 lp->attempts);
		free(lp->outcome_text);
		lp->outcome_text = strdup(reason);
	}
		/* fall through */
	case OUTCOME_UNAVAILABLE:
		daemon->metrics.logins_unavailable++;
		if (lp->route.via_site[0] != '\0')
			daemon->metrics.site_forwards_failed++;
		log_warning("event=login result=unavailable protocol=%s user=%s group=%u "
			    "backend=%s%s%s%s%s "
			    "client=%s:%u session=%s reason=\"%s\"",
			    protocol, lp->route.username, lp->route.group_id,
			    lp->route.backend.name,
			    lp->route.via_site[0] != '\0' ? " via_site=" : "", lp->route.via_site,
			    lp->route.via_site[0] != '\0' ? " address=" : "",
			    lp->route.via_site[0] != '\0' ? lp->target : "", req->ident.client_ip,
			    req->ident.client_port, req->ident.session_id, lp->outcome_text);
		lp->callback(lp->context, LOGIN_PROXY_UNAVAILABLE, lp->outcome_text);
		break;
	case OUTCOME_FAILURE:
		daemon->metrics.logins_failed++;
		log_info("event=login result=failed protocol=%s user=%s group=%u backend=%s "
			 "client=%s:%u session=%s reply=\"%.200s\"",
			 protocol, lp->route.username, lp->route.group_id, lp->route.backend.name,
			 req->ident.client_ip, req->ident.client_port, req->ident.session_id,
			 lp->outcome_text);
		stream_write(req->client, lp->outcome_text, lp->outcome_len);
		stream_write(req->client, "\r\n", 2);
		lp->callback(lp->context, LOGIN_PROXY_FAILED, NULL);
		break;
	case OUTCOME_SUCCESS:
		proxy_now(lp);
		lp->callback(lp->context, LOGIN_PROXY_PROXYING, NULL);
		break;
	}
	login_proxy_free(lp);
	return false;
}

static void backend_io(evutil_socket_t fd, short what, void *context)
{
	struct login_proxy *lp = context;
	const struct login_proxy_dialogue *dialogue = lp->request.dialogue;
	if ((what & EV_TIMEOUT) != 0) {
		if (lp->connecting)
			login_proxy_retry(lp, "connect timed out");
		else
			login_proxy_unavailable(
				lp, "backend did not answer the login within proxy_timeout");
		finish(lp);
		return;
	}
	if (lp->connecting) {
		/* writable: connected, or failed, which the first write reports */
		lp->connecting = false;
		event_del(&lp->event);
		long left = ms_until(&lp->deadline);
		struct timeval tv = {left > 0 ? left / 1000 : 0,
				     left > 0 ? (left % 1000) * 1000 : 1000};
		event_assign(&lp->event, lp->request.daemon->base, fd, EV_READ | EV_PERSIST,
			     backend_io, lp);
		event_add(&lp->event, &tv);
		if (dialogue->connected != NULL)
			dialogue->connected(lp);
		finish(lp);
		return;
	}

	if (lp->in_len == lp->in_size) {
		if (lp->in_size >= BACKEND_LINE_MAX) {
			login_proxy_unavailable(
				lp, "backend sent a line longer than 64 KB during login");
			finish(lp);
			return;
		}
		lp->in_size = lp->in_size == 0 ? 1024 : lp->in_size * 4;
		lp->in = realloc(lp->in, lp->in_size);
	}
	ssize_t n = read(fd, lp->in + lp->in_len, lp->in_size - lp->in_len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		char reason[256];
		snprintf(reason, sizeof(reason), "%s %s %s during login",
			 lp->route.via_site[0] != '\0' ? "load balancer" : "backend", lp->target,
			 n == 0 ? "closed the connection" : strerror(errno));
		if (lp->spoke)
			login_proxy_unavailable(lp, reason);
		else
			login_proxy_retry(lp, reason); /* nothing was said yet: try again */
		finish(lp);
		return;
	}
	lp->in_len += (size_t)n;
	char *buf = lp->in;
	size_t start = 0;
	for (;;) {
		char *lf = memchr(buf + start, '\n', lp->in_len - start);
		if (lf == NULL)
			break;
		size_t line_end = (size_t)(lf - buf), next = line_end + 1;
		if (line_end > start && buf[line_end - 1] == '\r')
			line_end--;
		buf[line_end] = '\0';
		lp->rest = buf + next;
		lp->rest_len = lp->in_len - next;
		dialogue->line(lp, buf + start, line_end - start);
		lp->spoke = true;
		if (!finish(lp))
			return; /* lp is gone */
		if (lp->fd < 0)
			return; /* retrying */
		start = next;
	}
	memmove(buf, buf + start, lp->in_len - start);
	lp->in_len -= start;
}

static void attempt_connect(struct login_proxy *lp)
{
	struct daemon *daemon = lp->request.daemon;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char reason[256];
	lp->attempts++;
	lp->connecting = true;
	lp->spoke = false;
	lp->dialogue_state = 0;
	if (net_parse_ip_port(lp->target_ip, lp->target_port, &addr, &addr_len) < 0) {
		snprintf(reason, sizeof(reason), "backend address '%s' is not an IP address",
			 lp->target_ip);
		login_proxy_unavailable(lp, reason);
		finish(lp);
		return;
	}
	int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot create a socket: %s", strerror(errno));
		login_proxy_retry(lp, reason);
		finish(lp);
		return;
	}
	net_set_tcp_options(fd);
	lp->fd = fd;
	if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
		snprintf(reason, sizeof(reason), "cannot connect to %s: %s", lp->target,
			 strerror(errno));
		login_proxy_retry(lp, reason);
		finish(lp);
		return;
	}
	long left = ms_until(&lp->deadline);
	if (left < 1)
		left = 1;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	event_assign(&lp->event, daemon->base, fd, EV_WRITE, backend_io, lp);
	event_add(&lp->event, &tv);
	lp->event_set = true;
}

void login_proxy_start(const struct login_proxy_request *request, login_proxy_callback *callback,
		       void *context, struct login_proxy **lp_r)
{
	struct login_proxy *lp = calloc(1, sizeof(*lp));
	lp->request = *request;
	lp->route = *request->route;
	lp->request.route = &lp->route;
	lp->tag = request->tag != NULL ? strdup(request->tag) : NULL;
	lp->request.tag = lp->tag;
	lp->user = strdup(request->user);
	lp->request.user = lp->user;
	lp->password = strdup(request->password);
	lp->request.password = lp->password;
	lp->callback = callback;
	lp->context = context;
	lp->fd = -1;
	login_route_target(&lp->route, request->backend_port, &lp->target_ip, &lp->target_port);
	bool v6 = strchr(lp->target_ip, ':') != NULL;
	snprintf(lp->target, sizeof(lp->target), "%s%s%s:%d", v6 ? "[" : "", lp->target_ip,
		 v6 ? "]" : "", lp->target_port);
	unsigned timeout_ms = request->daemon->set->proxy_timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &lp->deadline);
	lp->deadline.tv_sec += timeout_ms / 1000;
	lp->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (lp->deadline.tv_nsec >= 1000000000) {
		lp->deadline.tv_sec++;
		lp->deadline.tv_nsec -= 1000000000;
	}
	/* the caller holds lp before anything can call back */
	*lp_r = lp;
	attempt_connect(lp);
}
