/* imap_client.c - see imap_client.h.
 *
 * States:
 *   PRELOGIN      parsing commands (imap_parser.h) and answering them
 *   AUTH_RESPONSE waiting for the client's line after "+ " (AUTHENTICATE
 *                 without an initial response)
 *   BACKEND       routed; connecting to / logging in at the backend.  The
 *                 client is not read meanwhile: whatever it pipelined stays
 *                 buffered and goes to the backend once the login succeeds.
 *
 * The client side is a stream (stream.h: plain socket or TLS).  The backend
 * side is a plain non-blocking socket driven by one event, with a small
 * buffer for the few lines of the login.  The backend login is pipelined: as
 * soon as the TCP connection is up we send "ID (...)" and "TAG AUTHENTICATE
 * PLAIN <ir>" in one write, and then read the greeting, the ID reply and the
 * login reply in that order.  The login is sent with the client's own tag,
 * so the backend's tagged answer (with its CAPABILITY code) goes to the
 * client as it is.
 */
#include "daemon/imap_client.h"

#include "daemon/daemon.h"
#include "daemon/session.h"
#include "net/relay.h"
#include "net/stream.h"
#include "proto/imap_parser.h"
#include "proto/sasl_plain.h"
#include "store/route.h"
#include "util/log.h"
#include "util/net_util.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define BACKEND_LINE_MAX 65536
#define PROXY_TTL 5

enum client_state { STATE_PRELOGIN, STATE_AUTH_RESPONSE, STATE_BACKEND, STATE_CLOSING };
enum backend_state { BACKEND_CONNECTING, BACKEND_GREETING, BACKEND_ID_REPLY, BACKEND_LOGIN_REPLY };

struct imap_client {
	struct daemon *daemon;
	struct stream *stream;
	bool secured;
	char client_ip[46], local_ip[46];
	uint16_t client_port, local_port;
	char session_id[24];
	struct imap_parser *parser;
	unsigned auth_failures, bad_commands;
	enum client_state state;

	/* the login in progress */
	char *tag, *login_user, *login_password;
	struct route_result *route;
	int backend_fd;
	struct event backend_event;
	bool backend_event_set;
	enum backend_state backend_state;
	char *backend_in;
	size_t backend_in_len, backend_in_size;
	struct event *retry_timer;
	struct timespec deadline;
	unsigned connect_attempts;
};

static void client_input(void *context);
static void backend_connect(struct imap_client *client);

/* ---- helpers ---- */

static void client_send(struct imap_client *client, const char *text)
{
	stream_write(client->stream, text, strlen(text));
}

#define client_sendf(client, ...) stream_printf((client)->stream, __VA_ARGS__)

static void wipe_free(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static void backend_close(struct imap_client *client)
{
	if (client->backend_event_set) {
		event_del(&client->backend_event);
		client->backend_event_set = false;
	}
	if (client->backend_fd >= 0) {
		close(client->backend_fd);
		client->backend_fd = -1;
	}
	client->backend_in_len = 0;
}

static void login_reset(struct imap_client *client)
{
	free(client->tag);
	client->tag = NULL;
	free(client->login_user);
	client->login_user = NULL;
	wipe_free(&client->login_password);
	backend_close(client);
	free(client->backend_in);
	client->backend_in = NULL;
	client->backend_in_size = 0;
	if (client->retry_timer != NULL) {
		event_free(client->retry_timer);
		client->retry_timer = NULL;
	}
}

static void client_destroy(struct imap_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=imap client=%s:%u session=%s state=%s "
			 "reason=\"%s\"",
			 client->client_ip, client->client_port, client->session_id,
			 client->state == STATE_BACKEND ? "login" : "prelogin", reason);
	login_reset(client);
	free(client->route);
	imap_parser_destroy(&client->parser);
	stream_destroy(&client->stream);
	client->daemon->client_count--;
	free(client);
}

/* Sends a last line, then closes once it is written (bounded). */
static void client_close_after(struct imap_client *client, const char *line, const char *reason)
{
	log_info("event=disconnect protocol=imap client=%s:%u session=%s reason=\"%s\"",
		 client->client_ip, client->client_port, client->session_id, reason);
	login_reset(client);
	client->state = STATE_CLOSING;
	if (line != NULL)
		client_send(client, line);
	stream_close_after_flush(client->stream); /* calls client_flushed */
}

static void client_flushed(void *context)
{
	client_destroy(context, NULL);
}

static void client_closed(void *context, const char *reason)
{
	struct imap_client *client = context;
	client_destroy(client, client->state == STATE_CLOSING ? NULL : reason);
}

static void client_timeout(void *context)
{
	struct imap_client *client = context;
	client->daemon->metrics.prelogin_timeouts++;
	client_close_after(client, "* BYE Disconnected for inactivity.\r\n",
			   "no login within prelogin_timeout");
}

static const struct stream_callbacks client_stream_callbacks = {
	.input = client_input,
	.timeout = client_timeout,
	.closed = client_closed,
	.flushed = client_flushed,
};

static bool plaintext_allowed(struct imap_client *client)
{
	return client->secured || client->daemon->set->plaintext_auth == PLAINTEXT_AUTH_ALWAYS;
}

static bool starttls_available(struct imap_client *client)
{
	return client->daemon->ssl_ctx != NULL && !stream_is_tls(client->stream);
}

static void capability_string(struct imap_client *client, char *dst, size_t size)
{
	snprintf(dst, size, "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+%s%s",
		 starttls_available(client) ? " STARTTLS" : "",
		 plaintext_allowed(client) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

/* ---- the backend login ---- */

static long ms_until(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static void back_to_prelogin(struct imap_client *client)
{
	login_reset(client);
	client->state = STATE_PRELOGIN;
}

/* The login failed at or before the backend in a way the client may retry
 * later: NO [UNAVAILABLE], back to pre-login. */
static void login_unavailable(struct imap_client *client, const char *reason)
{
	struct daemon *daemon = client->daemon;
	const struct route_result *route = client->route;
	daemon->metrics.logins_unavailable++;
	log_warning("event=login result=unavailable protocol=imap user=%s group=%u backend=%s "
		    "client=%s:%u session=%s reason=\"%s\"",
		    route->username, route->group_id,
		    route->backend.name[0] != '\0' ? route->backend.name : "-", client->client_ip,
		    client->client_port, client->session_id, reason);
	client_sendf(client, "%s NO [UNAVAILABLE] Account is temporarily unavailable.\r\n",
		     client->tag);
	back_to_prelogin(client);
}

static void retry_timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct imap_client *client = context;
	event_free(client->retry_timer);
	client->retry_timer = NULL;
	backend_connect(client);
}

/* The connection failed before the backend said anything: try again
 * within proxy_timeout. */
static void backend_failed(struct imap_client *client, const char *what)
{
	struct daemon *daemon = client->daemon;
	daemon->metrics.backend_connect_failures++;
	backend_close(client);
	long left = ms_until(&client->deadline);
	if (left > (long)daemon->set->proxy_connect_retry_ms) {
		log_info("event=backend_retry protocol=imap user=%s backend=%s address=%s "
			 "attempt=%u "
			 "session=%s reason=\"%s\"",
			 client->route->username, client->route->backend.name,
			 client->route->backend.address, client->connect_attempts,
			 client->session_id, what);
		client->retry_timer = evtimer_new(daemon->base, retry_timer_fired, client);
		struct timeval tv = {daemon->set->proxy_connect_retry_ms / 1000,
				     (daemon->set->proxy_connect_retry_ms % 1000) * 1000};
		evtimer_add(client->retry_timer, &tv);
		return;
	}
	char reason[300];
	snprintf(reason, sizeof(reason), "%s (gave up after %u attempt(s) within proxy_timeout)",
		 what, client->connect_attempts);
	login_unavailable(client, reason);
}

static void start_proxying(struct imap_client *client, const char *tagged_line, size_t line_len,
			   const char *backend_rest, size_t backend_rest_len)
{
	struct daemon *daemon = client->daemon;
	const struct route_result *route = client->route;
	struct session *session =
		session_create(daemon, NULL, route->username, route->group_id, route->backend.name,
			       client->client_ip, client->client_port, "imap", client->session_id);
	bool tls = stream_is_tls(client->stream);

	daemon->metrics.logins_ok++;
	log_info("event=login result=ok protocol=imap user=%s group=%u backend=%s address=%s "
		 "client=%s:%u session=%s tls=%s%s",
		 route->username, route->group_id, route->backend.name, route->backend.address,
		 client->client_ip, client->client_port, client->session_id, tls ? "yes" : "no",
		 route->assigned_now ? " group_assigned=yes" : "");

	/* Whatever is still buffered goes first: to the client our unsent
	 * output, the tagged reply and anything the backend sent after it; to
	 * the backend what the client pipelined after its login. */
	/* The login's events on both sockets are removed (client_destroy)
	 * only after the relay has added its own: epoll sees no change. */
	int backend_fd = client->backend_fd;
	client->backend_fd = -1;
	int client_fd;
	const char *out, *in;
	size_t out_len, in_len;
	if (tls) {
		stream_write(client->stream, tagged_line, line_len);
		stream_write(client->stream, "\r\n", 2);
		if (backend_rest_len > 0)
			stream_write(client->stream, backend_rest, backend_rest_len);
		struct bufferevent *client_bev =
			stream_detach(client->stream, &client_fd, &out, &out_len, &in, &in_len);
		struct bufferevent *backend_bev =
			bufferevent_socket_new(daemon->base, backend_fd, BEV_OPT_CLOSE_ON_FREE);
		session->relay = relay_create_bufferevent(client_bev, backend_bev,
							  daemon->set->relay_buffer_max,
							  session_relay_closed, session);
	} else {
		stream_detach(client->stream, &client_fd, &out, &out_len, &in, &in_len);
		size_t to_client_len = out_len + line_len + 2 + backend_rest_len;
		char *to_client = malloc(to_client_len);
		memcpy(to_client, out, out_len);
		memcpy(to_client + out_len, tagged_line, line_len);
		memcpy(to_client + out_len + line_len, "\r\n", 2);
		if (backend_rest_len > 0)
			memcpy(to_client + out_len + line_len + 2, backend_rest, backend_rest_len);
		session->relay = relay_create_fd(daemon->base, daemon->pipe_pool, client_fd,
						 backend_fd, in, in_len, to_client, to_client_len,
						 session_relay_closed, session);
		free(to_client);
	}
	/* the session now counts this connection */
	daemon->client_count++;
	client_destroy(client, NULL);
}

/* Handles one line from the backend; false if the client moved on (to the
 * relay, back to pre-login, or gone). */
static bool backend_line(struct imap_client *client, char *line, size_t len, const char *rest,
			 size_t rest_len)
{
	switch (client->backend_state) {
	case BACKEND_CONNECTING:
		break;
	case BACKEND_GREETING:
		if (strncmp(line, "* OK", 4) != 0) {
			char reason[300];
			snprintf(reason, sizeof(reason), "backend greeting was not OK: %.200s",
				 line);
			backend_failed(client, reason);
			return false;
		}
		client->backend_state = BACKEND_ID_REPLY;
		break;
	case BACKEND_ID_REPLY:
		if (line[0] != '*')
			client->backend_state = BACKEND_LOGIN_REPLY;
		break;
	case BACKEND_LOGIN_REPLY: {
		if (line[0] == '*') {
			/* untagged data before the answer: the client's */
			stream_write(client->stream, line, len);
			stream_write(client->stream, "\r\n", 2);
			break;
		}
		if (line[0] == '+') {
			login_unavailable(client,
					  "backend asked for a SASL continuation (no SASL-IR?)");
			return false;
		}
		size_t tag_len = strlen(client->tag);
		if (len <= tag_len || strncmp(line, client->tag, tag_len) != 0 ||
		    line[tag_len] != ' ') {
			char reason[300];
			snprintf(reason, sizeof(reason),
				 "unexpected backend reply to login: %.200s", line);
			login_unavailable(client, reason);
			return false;
		}
		const char *status = line + tag_len + 1;
		if (strncasecmp(status, "OK", 2) == 0) {
			start_proxying(client, line, len, rest, rest_len);
			return false;
		}
		/* NO or BAD: the backend's answer is the answer */
		client->daemon->metrics.logins_failed++;
		log_info("event=login result=failed protocol=imap user=%s group=%u backend=%s "
			 "client=%s:%u session=%s reply=\"%.200s\"",
			 client->route->username, client->route->group_id,
			 client->route->backend.name, client->client_ip, client->client_port,
			 client->session_id, status);
		stream_write(client->stream, line, len);
		stream_write(client->stream, "\r\n", 2);
		if (++client->auth_failures >= client->daemon->set->auth_failures_max) {
			client_close_after(client,
					   "* BYE Too many invalid authentication attempts.\r\n",
					   "too many failed logins");
			return false;
		}
		back_to_prelogin(client);
		/* commands pipelined after the failed login */
		client_input(client);
		return false;
	}
	}
	return true;
}

static void backend_send_login(struct imap_client *client)
{
	char ir[SASL_PLAIN_BUF_SIZE * 2], request[2048];
	if (sasl_plain_encode(client->login_user, client->login_password, ir, sizeof(ir)) < 0) {
		login_unavailable(client, "username and password too long to forward");
		return;
	}
	int n = snprintf(request, sizeof(request),
			 "MC ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
			 "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
			 "\"x-session-id\" \"%s\" \"x-proxy-ttl\" \"%u\")\r\n"
			 "%s AUTHENTICATE PLAIN %s\r\n",
			 client->client_ip, client->client_port, client->local_ip,
			 client->local_port, client->session_id, PROXY_TTL - 1, client->tag, ir);
	explicit_bzero(ir, sizeof(ir));
	/* a fresh connection's send buffer takes these few hundred bytes whole */
	ssize_t written = -1;
	if (n > 0 && (size_t)n < sizeof(request))
		written = write(client->backend_fd, request, (size_t)n);
	explicit_bzero(request, sizeof(request));
	if (written != n) {
		char reason[256];
		snprintf(reason, sizeof(reason), "cannot connect to %s: %s",
			 client->route->backend.address,
			 written < 0 ? strerror(errno) : "short write");
		backend_failed(client, reason);
		return;
	}
	client->backend_state = BACKEND_GREETING;
}

static void backend_io(evutil_socket_t fd, short what, void *context)
{
	struct imap_client *client = context;
	if ((what & EV_TIMEOUT) != 0) {
		if (client->backend_state == BACKEND_CONNECTING)
			backend_failed(client, "connect timed out");
		else
			login_unavailable(client,
					  "backend did not answer the login within proxy_timeout");
		return;
	}
	if (client->backend_state == BACKEND_CONNECTING) {
		/* writable: connected, or failed, which the write reports */
		event_del(&client->backend_event);
		long left = ms_until(&client->deadline);
		struct timeval tv = {left > 0 ? left / 1000 : 0,
				     left > 0 ? (left % 1000) * 1000 : 1000};
		event_assign(&client->backend_event, client->daemon->base, fd, EV_READ | EV_PERSIST,
			     backend_io, client);
		event_add(&client->backend_event, &tv);
		backend_send_login(client);
		return;
	}

	if (client->backend_in_len == client->backend_in_size) {
		if (client->backend_in_size >= BACKEND_LINE_MAX) {
			login_unavailable(client,
					  "backend sent a line longer than 64 KB during login");
			return;
		}
		client->backend_in_size =
			client->backend_in_size == 0 ? 1024 : client->backend_in_size * 4;
		client->backend_in = realloc(client->backend_in, client->backend_in_size);
	}
	ssize_t n = read(fd, client->backend_in + client->backend_in_len,
			 client->backend_in_size - client->backend_in_len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		char reason[256];
		snprintf(reason, sizeof(reason), "backend %s during login",
			 n == 0 ? "closed the connection" : strerror(errno));
		if (client->backend_state == BACKEND_GREETING)
			backend_failed(client, reason); /* nothing was said yet: try again */
		else
			login_unavailable(client, reason);
		return;
	}
	client->backend_in_len += (size_t)n;
	char *buf = client->backend_in;
	size_t start = 0;
	for (;;) {
		char *lf = memchr(buf + start, '\n', client->backend_in_len - start);
		if (lf == NULL)
			break;
		size_t line_end = (size_t)(lf - buf), next = line_end + 1;
		if (line_end > start && buf[line_end - 1] == '\r')
			line_end--;
		buf[line_end] = '\0';
		if (!backend_line(client, buf + start, line_end - start, buf + next,
				  client->backend_in_len - next))
			return; /* client moved on; buffer may be gone */
		start = next;
	}
	memmove(buf, buf + start, client->backend_in_len - start);
	client->backend_in_len -= start;
}

static void backend_connect(struct imap_client *client)
{
	struct daemon *daemon = client->daemon;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char reason[256];
	client->connect_attempts++;
	client->backend_state = BACKEND_CONNECTING;
	if (net_parse_ip_port(client->route->backend.address, daemon->set->backend_port_imap, &addr,
			      &addr_len) < 0) {
		snprintf(reason, sizeof(reason), "backend address '%s' is not an IP address",
			 client->route->backend.address);
		login_unavailable(client, reason);
		return;
	}
	int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot create a socket: %s", strerror(errno));
		backend_failed(client, reason);
		return;
	}
	net_set_tcp_options(fd);
	client->backend_fd = fd;
	if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
		snprintf(reason, sizeof(reason), "cannot connect to %s: %s",
			 client->route->backend.address, strerror(errno));
		backend_failed(client, reason);
		return;
	}
	long left = ms_until(&client->deadline);
	if (left < 1)
		left = 1;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	event_assign(&client->backend_event, daemon->base, fd, EV_WRITE, backend_io, client);
	event_add(&client->backend_event, &tv);
	client->backend_event_set = true;
}

/* We have a username and password: route and start the backend login. */
static void client_login(struct imap_client *client, const char *tag, const char *user,
			 const char *password)
{
	struct daemon *daemon = client->daemon;
	if (!plaintext_allowed(client)) {
		daemon->metrics.logins_refused++;
		client_sendf(
			client,
			"%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
			"(SSL/TLS) connections.\r\n",
			tag);
		return;
	}
	if (client->route == NULL)
		client->route = malloc(sizeof(*client->route));
	const char *reason;
	enum route_status status =
		route_user(daemon->geodb, daemon->route_cache, daemon->set->site,
			   daemon->set->group_count, user, true, client->route, &reason);
	client->tag = strdup(tag);
	switch (status) {
	case ROUTE_OK:
		break;
	case ROUTE_BAD_USER:
		daemon->metrics.logins_refused++;
		log_info("event=login result=refused protocol=imap client=%s:%u session=%s "
			 "reason=\"%s\"",
			 client->client_ip, client->client_port, client->session_id, reason);
		client_sendf(client, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
			     tag);
		login_reset(client);
		if (++client->auth_failures >= daemon->set->auth_failures_max)
			client_close_after(client,
					   "* BYE Too many invalid authentication attempts.\r\n",
					   "too many failed logins");
		return;
	case ROUTE_UNAVAILABLE:
		login_unavailable(client, reason);
		return;
	case ROUTE_ERROR:
		log_error("event=geodb_error user=%s reason=\"%s\"", client->route->username,
			  reason);
		login_unavailable(client, reason);
		return;
	}
	if (client->route->assigned_now) {
		daemon->metrics.group_assignments++;
		log_info("event=group_assign group=%u backend=%s site=%s user=%s",
			 client->route->group_id, client->route->backend.name,
			 client->route->group.site, client->route->username);
	}
	client->login_user = strdup(user);
	client->login_password = strdup(password);
	client->state = STATE_BACKEND;
	client->connect_attempts = 0;
	/* the client stays readable: what it pipelines is buffered (up to
	 * prelogin_line_max) for the backend, and if it goes away the login
	 * is abandoned */
	clock_gettime(CLOCK_MONOTONIC, &client->deadline);
	client->deadline.tv_sec += daemon->set->proxy_timeout_ms / 1000;
	client->deadline.tv_nsec += (long)(daemon->set->proxy_timeout_ms % 1000) * 1000000;
	if (client->deadline.tv_nsec >= 1000000000) {
		client->deadline.tv_sec++;
		client->deadline.tv_nsec -= 1000000000;
	}
	backend_connect(client);
}

/* ---- pre-login commands ---- */

static void cmd_authenticate_response(struct imap_client *client, const char *tag, const char *b64,
				      size_t len)
{
	char buf[SASL_PLAIN_BUF_SIZE];
	const char *authzid, *authcid, *passwd, *error;
	if (len == 1 && b64[0] == '*') {
		client_sendf(client, "%s BAD Authentication aborted by client.\r\n", tag);
		return;
	}
	if (sasl_plain_decode(b64, len, buf, sizeof(buf), &authzid, &authcid, &passwd, &error) <
	    0) {
		client->daemon->metrics.logins_refused++;
		client_sendf(client, "%s NO [AUTHENTICATIONFAILED] Authentication failed: %s.\r\n",
			     tag, error);
		if (++client->auth_failures >= client->daemon->set->auth_failures_max)
			client_close_after(client,
					   "* BYE Too many invalid authentication attempts.\r\n",
					   "too many failed logins");
		return;
	}
	client_login(client, tag, authcid, passwd);
	explicit_bzero(buf, sizeof(buf));
}

static bool arg_is_string(const struct imap_arg *arg)
{
	return arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_STRING;
}

static bool cmd_starttls(struct imap_client *client, const char *tag)
{
	struct daemon *daemon = client->daemon;
	if (stream_is_tls(client->stream)) {
		client_sendf(client, "%s BAD TLS is already active.\r\n", tag);
		return true;
	}
	if (daemon->ssl_ctx == NULL) {
		client_sendf(client, "%s BAD TLS support isn't enabled.\r\n", tag);
		return true;
	}
	char reply[256];
	snprintf(reply, sizeof(reply), "%s OK Begin TLS negotiation now.\r\n", tag);
	const char *error;
	if (stream_starttls(client->stream, daemon->ssl_ctx, reply, &error) < 0) {
		client_destroy(client, error);
		return false;
	}
	client->secured = true;
	imap_parser_reset(client->parser);
	return false; /* new input comes from the TLS layer */
}

/* Returns false if the client was destroyed or must stop reading. */
static bool handle_command(struct imap_client *client, const struct imap_command *cmd)
{
	const char *name = cmd->name, *tag = cmd->tag;
	char caps[256];
	if (strcasecmp(name, "CAPABILITY") == 0) {
		capability_string(client, caps, sizeof(caps));
		client_sendf(client,
			     "* CAPABILITY %s\r\n%s OK Pre-login capabilities listed, post-login "
			     "capabilities have more.\r\n",
			     caps, tag);
	} else if (strcasecmp(name, "NOOP") == 0) {
		client_sendf(client, "%s OK NOOP completed.\r\n", tag);
	} else if (strcasecmp(name, "LOGOUT") == 0) {
		char line[256];
		snprintf(line, sizeof(line), "* BYE Logging out\r\n%s OK Logout completed.\r\n",
			 tag);
		client_close_after(client, line, "logged out before login");
		return false;
	} else if (strcasecmp(name, "ID") == 0) {
		client_sendf(client, "* ID (\"name\" \"mailcluster\")\r\n%s OK ID completed.\r\n",
			     tag);
	} else if (strcasecmp(name, "STARTTLS") == 0) {
		return cmd_starttls(client, tag);
	} else if (strcasecmp(name, "LOGIN") == 0) {
		if (cmd->arg_count != 2 || !arg_is_string(&cmd->args[0]) ||
		    !arg_is_string(&cmd->args[1])) {
			client_sendf(client,
				     "%s BAD Error in IMAP command LOGIN: expected username and "
				     "password.\r\n",
				     tag);
			return true;
		}
		client_login(client, tag, cmd->args[0].str, cmd->args[1].str);
		return client->state == STATE_PRELOGIN;
	} else if (strcasecmp(name, "AUTHENTICATE") == 0) {
		if (cmd->arg_count < 1 || cmd->arg_count > 2 ||
		    cmd->args[0].type != IMAP_ARG_ATOM ||
		    (cmd->arg_count == 2 && !arg_is_string(&cmd->args[1]))) {
			client_sendf(client,
				     "%s BAD Error in IMAP command AUTHENTICATE: expected a "
				     "mechanism.\r\n",
				     tag);
			return true;
		}
		if (strcasecmp(cmd->args[0].str, "PLAIN") != 0) {
			client_sendf(client,
				     "%s NO [CANNOT] Unsupported authentication mechanism.\r\n",
				     tag);
			return true;
		}
		if (!plaintext_allowed(client)) {
			client->daemon->metrics.logins_refused++;
			client_sendf(
				client,
				"%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
				"non-secure (SSL/TLS) connections.\r\n",
				tag);
			return true;
		}
		if (cmd->arg_count == 2) {
			const char *ir = cmd->args[1].str;
			/* "=" is an empty initial response (RFC 4959) */
			cmd_authenticate_response(client, tag, ir,
						  strcmp(ir, "=") == 0 ? 0 : cmd->args[1].len);
			return client->state == STATE_PRELOGIN;
		}
		client->tag = strdup(tag);
		client->state = STATE_AUTH_RESPONSE;
		client_send(client, "+ \r\n");
	} else {
		client->daemon->metrics.prelogin_bad_commands++;
		if (++client->bad_commands >= client->daemon->set->bad_commands_max) {
			client_close_after(client, "* BYE Too many invalid IMAP commands.\r\n",
					   "too many invalid commands");
			return false;
		}
		if (strcasecmp(name, "SELECT") == 0 || strcasecmp(name, "EXAMINE") == 0 ||
		    strcasecmp(name, "LIST") == 0 || strcasecmp(name, "STATUS") == 0 ||
		    strcasecmp(name, "FETCH") == 0 || strcasecmp(name, "IDLE") == 0)
			client_sendf(client, "%s BAD Command not allowed before login.\r\n", tag);
		else
			client_sendf(client, "%s BAD Error in IMAP command received by server.\r\n",
				     tag);
	}
	return true;
}

/* The line after "+ " in AUTHENTICATE. */
static bool handle_auth_response(struct imap_client *client, const char *data, size_t len)
{
	size_t max = client->daemon->set->prelogin_line_max;
	const char *lf = memchr(data, '\n', len);
	if (lf == NULL) {
		if (len > max) {
			client->daemon->metrics.prelogin_too_long++;
			client_close_after(client, "* BYE Line too long.\r\n",
					   "SASL response too long");
		}
		return false;
	}
	size_t line_len = (size_t)(lf - data), consumed = line_len + 1;
	if (line_len > 0 && data[line_len - 1] == '\r')
		line_len--;
	if (line_len > max) {
		client->daemon->metrics.prelogin_too_long++;
		client_close_after(client, "* BYE Line too long.\r\n", "SASL response too long");
		return false;
	}
	char *line = malloc(line_len + 1);
	memcpy(line, data, line_len);
	line[line_len] = '\0';
	stream_consume(client->stream, consumed);
	char *tag = client->tag;
	client->tag = NULL;
	client->state = STATE_PRELOGIN;
	cmd_authenticate_response(client, tag, line, line_len);
	explicit_bzero(line, line_len);
	free(line);
	free(tag);
	return client->state == STATE_PRELOGIN;
}

static void client_input(void *context)
{
	struct imap_client *client = context;
	struct daemon *daemon = client->daemon;
	for (;;) {
		if (client->state != STATE_PRELOGIN && client->state != STATE_AUTH_RESPONSE)
			return;
		size_t len;
		const char *data = stream_input(client->stream, &len);
		if (len == 0)
			return;
		if (client->state == STATE_AUTH_RESPONSE) {
			if (!handle_auth_response(client, data, len))
				return;
			continue;
		}
		struct imap_command cmd;
		size_t consumed = 0;
		const char *error = NULL;
		switch (imap_parser_parse(client->parser, data, len, &cmd, &consumed, &error)) {
		case IMAP_PARSE_MORE:
			return;
		case IMAP_PARSE_CONTINUE:
			client_send(client, "+ OK\r\n");
			continue;
		case IMAP_PARSE_TOO_LONG:
			daemon->metrics.prelogin_too_long++;
			client_close_after(client, "* BYE Line too long.\r\n",
					   "pre-login command too long");
			return;
		case IMAP_PARSE_ERROR:
			stream_consume(client->stream, consumed);
			daemon->metrics.prelogin_bad_commands++;
			if (++client->bad_commands >= daemon->set->bad_commands_max) {
				client_close_after(client,
						   "* BYE Too many invalid IMAP commands.\r\n",
						   "too many invalid commands");
				return;
			}
			client_sendf(client, "%s BAD Error in IMAP command: %s.\r\n",
				     cmd.tag != NULL ? cmd.tag : "*",
				     error != NULL ? error : "syntax error");
			continue;
		case IMAP_PARSE_COMMAND:
			/* the command's strings live in the parser's scratch,
			 * so the input can go before the command is handled:
			 * what remains is what the client pipelined after it */
			stream_consume(client->stream, consumed);
			if (!handle_command(client, &cmd))
				return;
			continue;
		}
	}
}

void imap_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls)
{
	struct imap_client *client = calloc(1, sizeof(*client));
	client->daemon = daemon;
	client->backend_fd = -1;
	daemon->client_count++;
	net_sockaddr_to_ip(remote, client->client_ip, sizeof(client->client_ip),
			   &client->client_port);
	struct sockaddr_storage local_buf;
	socklen_t local_len = sizeof(local_buf);
	if (local == NULL && getsockname(fd, (struct sockaddr *)&local_buf, &local_len) == 0)
		local = (struct sockaddr *)&local_buf;
	if (local != NULL)
		net_sockaddr_to_ip(local, client->local_ip, sizeof(client->local_ip),
				   &client->local_port);
	session_id_generate(daemon, client->session_id);
	client->secured = implicit_tls || net_sockaddr_is_loopback(remote);
	client->parser = imap_parser_create(daemon->set->prelogin_line_max);
	client->stream =
		stream_create(daemon->base, fd, implicit_tls ? daemon->ssl_ctx : NULL,
			      daemon->set->prelogin_line_max, daemon->set->prelogin_timeout_ms,
			      &client_stream_callbacks, client);
	log_debug("event=connect protocol=imap client=%s:%u session=%s tls=%s", client->client_ip,
		  client->client_port, client->session_id, implicit_tls ? "yes" : "no");
	char caps[256];
	capability_string(client, caps, sizeof(caps));
	client_sendf(client, "* OK [CAPABILITY %s] mailcluster ready.\r\n", caps);
}
