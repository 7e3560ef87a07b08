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
 * The backend login is pipelined: as soon as the TCP connection is up we
 * send "ID (...)" and "TAG AUTHENTICATE PLAIN <ir>" together, and then read
 * the greeting, the ID reply and the login reply in that order.  The login
 * is sent with the client's own tag, so the backend's tagged answer (with its
 * CAPABILITY code) goes to the client as it is.
 */
#include "daemon/imap_client.h"

#include "daemon/daemon.h"
#include "daemon/session.h"
#include "util/net_util.h"
#include "net/relay.h"
#include "proto/imap_parser.h"
#include "proto/sasl_plain.h"
#include "store/route.h"
#include "util/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define BACKEND_LINE_MAX 65536
#define PROXY_TTL 5

enum client_state { STATE_PRELOGIN, STATE_AUTH_RESPONSE, STATE_BACKEND };
enum backend_state { BACKEND_GREETING, BACKEND_ID_REPLY, BACKEND_LOGIN_REPLY };

struct imap_client {
	struct daemon *daemon;
	struct bufferevent *bev;
	int fd;
	bool tls, secured;
	char client_ip[46], local_ip[46];
	uint16_t client_port, local_port;
	char session_id[24];
	struct imap_parser *parser;
	unsigned auth_failures, bad_commands;
	enum client_state state;

	/* the login in progress */
	char *tag, *login_user, *login_password;
	struct route_result route;
	struct bufferevent *backend_bev;
	enum backend_state backend_state;
	struct event *retry_timer;
	struct timespec deadline;
	unsigned connect_attempts;
};

static void client_input(struct bufferevent *bev, void *context);
static void client_event(struct bufferevent *bev, short what, void *context);
static void backend_connect(struct imap_client *client);

/* ---- helpers ---- */

static void client_send(struct imap_client *client, const char *text)
{
	bufferevent_write(client->bev, text, strlen(text));
}

static void client_sendf(struct imap_client *client, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void client_sendf(struct imap_client *client, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(client->bev), fmt, args);
	va_end(args);
}

static void wipe_free(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static void login_reset(struct imap_client *client)
{
	free(client->tag);
	client->tag = NULL;
	free(client->login_user);
	client->login_user = NULL;
	wipe_free(&client->login_password);
	if (client->backend_bev != NULL) {
		bufferevent_free(client->backend_bev);
		client->backend_bev = NULL;
	}
	if (client->retry_timer != NULL) {
		event_free(client->retry_timer);
		client->retry_timer = NULL;
	}
}

static void client_destroy(struct imap_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=imap client=%s:%u session=%s state=%s reason=\"%s\"",
			 client->client_ip, client->client_port, client->session_id,
			 client->state == STATE_BACKEND ? "login" : "prelogin", reason);
	login_reset(client);
	imap_parser_destroy(&client->parser);
	if (client->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(client->bev);
		if (ssl != NULL)
			SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
		bufferevent_free(client->bev); /* closes the socket */
	} else if (client->fd >= 0) {
		close(client->fd);
	}
	client->daemon->client_count--;
	free(client);
}

/* Sends a last line, then closes once it is written (bounded). */
static void client_close_after(struct imap_client *client, const char *line, const char *reason);

static void client_closing_flushed(struct bufferevent *bev, void *context)
{
	struct imap_client *client = context;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		client_destroy(client, NULL);
}

static void client_closing_event(struct bufferevent *bev, short what, void *context)
{
	client_destroy(context, NULL);
}

static void client_close_after(struct imap_client *client, const char *line, const char *reason)
{
	log_info("event=disconnect protocol=imap client=%s:%u session=%s reason=\"%s\"",
		 client->client_ip, client->client_port, client->session_id, reason);
	login_reset(client);
	if (line != NULL)
		client_send(client, line);
	struct timeval tv = {5, 0};
	bufferevent_set_timeouts(client->bev, NULL, &tv);
	bufferevent_setwatermark(client->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(client->bev, NULL, client_closing_flushed, client_closing_event, client);
	bufferevent_disable(client->bev, EV_READ);
	bufferevent_enable(client->bev, EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(client->bev)) == 0)
		client_destroy(client, NULL);
}

static bool plaintext_allowed(struct imap_client *client)
{
	return client->secured || client->daemon->set->plaintext_auth == PLAINTEXT_AUTH_ALWAYS;
}

static bool starttls_available(struct imap_client *client)
{
	return client->daemon->ssl_ctx != NULL && !client->tls;
}

static void capability_string(struct imap_client *client, char *dst, size_t size)
{
	snprintf(dst, size, "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+%s%s",
		 starttls_available(client) ? " STARTTLS" : "",
		 plaintext_allowed(client) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

static void send_greeting(struct imap_client *client)
{
	char caps[256];
	capability_string(client, caps, sizeof(caps));
	client_sendf(client, "* OK [CAPABILITY %s] mailcluster ready.\r\n", caps);
}

/* ---- the backend login ---- */

static long ms_until(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* The login failed at or before the backend in a way the client may retry
 * later: NO [UNAVAILABLE], back to pre-login. */
static void login_unavailable(struct imap_client *client, const char *reason)
{
	struct daemon *daemon = client->daemon;
	daemon->metrics.logins_unavailable++;
	log_warning("event=login result=unavailable protocol=imap user=%s group=%u backend=%s "
		    "client=%s:%u session=%s reason=\"%s\"",
		    client->route.username, client->route.group_id,
		    client->route.backend.name[0] != '\0' ? client->route.backend.name : "-",
		    client->client_ip, client->client_port, client->session_id, reason);
	client_sendf(client, "%s NO [UNAVAILABLE] Account is temporarily unavailable.\r\n",
		     client->tag);
	login_reset(client);
	client->state = STATE_PRELOGIN;
	bufferevent_enable(client->bev, EV_READ);
}

static void retry_timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct imap_client *client = context;
	event_free(client->retry_timer);
	client->retry_timer = NULL;
	backend_connect(client);
}

static void backend_failed(struct imap_client *client, const char *what)
{
	struct daemon *daemon = client->daemon;
	daemon->metrics.backend_connect_failures++;
	if (client->backend_bev != NULL) {
		bufferevent_free(client->backend_bev);
		client->backend_bev = NULL;
	}
	long left = ms_until(&client->deadline);
	char reason[256];
	if (left > (long)daemon->set->proxy_connect_retry_ms) {
		log_info("event=backend_retry protocol=imap user=%s backend=%s address=%s attempt=%u "
			 "session=%s reason=\"%s\"",
			 client->route.username, client->route.backend.name, client->route.backend.address,
			 client->connect_attempts, client->session_id, what);
		client->retry_timer = evtimer_new(daemon->base, retry_timer_fired, client);
		struct timeval tv = {daemon->set->proxy_connect_retry_ms / 1000,
				     (daemon->set->proxy_connect_retry_ms % 1000) * 1000};
		evtimer_add(client->retry_timer, &tv);
		return;
	}
	snprintf(reason, sizeof(reason), "%s (gave up after %u attempt(s) within proxy_timeout)", what,
		 client->connect_attempts);
	login_unavailable(client, reason);
}

static void start_proxying(struct imap_client *client, const char *tagged_line, size_t line_len)
{
	struct daemon *daemon = client->daemon;
	struct route_result *route = &client->route;
	struct relay *relay;
	struct session *session =
		session_create(daemon, NULL, route->username, route->group_id, route->backend.name,
			       client->client_ip, client->client_port, "imap", client->session_id);

	daemon->metrics.logins_ok++;
	log_info("event=login result=ok protocol=imap user=%s group=%u backend=%s address=%s "
		 "client=%s:%u session=%s tls=%s%s",
		 route->username, route->group_id, route->backend.name, route->backend.address,
		 client->client_ip, client->client_port, client->session_id, client->tls ? "yes" : "no",
		 route->assigned_now ? " group_assigned=yes" : "");

	if (client->tls) {
		/* TLS: stay with bufferevents, the relay moves their chains */
		bufferevent_write(client->bev, tagged_line, line_len);
		bufferevent_write(client->bev, "\r\n", 2);
		relay = relay_create_bufferevent(client->bev, client->backend_bev,
						 daemon->set->relay_buffer_max, session_relay_closed, session);
		client->bev = NULL;
		client->fd = -1;
	} else {
		/* Plain: hand both sockets to the splice relay.  Whatever is
		 * still buffered goes first: to the client our unsent output,
		 * the tagged reply and anything the backend sent after it; to
		 * the backend what the client pipelined after its login. */
		struct evbuffer *to_client = evbuffer_new();
		evbuffer_add_buffer(to_client, bufferevent_get_output(client->bev));
		evbuffer_add(to_client, tagged_line, line_len);
		evbuffer_add(to_client, "\r\n", 2);
		evbuffer_add_buffer(to_client, bufferevent_get_input(client->backend_bev));
		struct evbuffer *to_backend = bufferevent_get_input(client->bev);
		size_t to_client_len = evbuffer_get_length(to_client);
		size_t to_backend_len = evbuffer_get_length(to_backend);
		int backend_fd = bufferevent_getfd(client->backend_bev);
		relay = relay_create_fd(daemon->base, daemon->pipe_pool, client->fd, backend_fd,
					evbuffer_pullup(to_backend, -1), to_backend_len,
					evbuffer_pullup(to_client, -1), to_client_len,
					session_relay_closed, session);
		evbuffer_free(to_client);
		/* the relay owns the sockets now: detach them first */
		bufferevent_setfd(client->bev, -1);
		bufferevent_free(client->bev);
		client->bev = NULL;
		client->fd = -1;
		bufferevent_setfd(client->backend_bev, -1);
		bufferevent_free(client->backend_bev);
	}
	client->backend_bev = NULL;
	session->relay = relay;
	/* the session now counts this connection */
	daemon->client_count++;
	client_destroy(client, NULL);
}

static void backend_input(struct bufferevent *bev, void *context)
{
	struct imap_client *client = context;
	struct evbuffer *input = bufferevent_get_input(bev);
	for (;;) {
		size_t line_len;
		struct evbuffer_ptr eol = evbuffer_search_eol(input, NULL, &line_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(input) > BACKEND_LINE_MAX)
				login_unavailable(client, "backend sent a line longer than 64 KB during login");
			return;
		}
		size_t len = (size_t)eol.pos;
		char *line = malloc(len + 1);
		evbuffer_remove(input, line, len);
		line[len] = '\0';
		evbuffer_drain(input, line_len);

		switch (client->backend_state) {
		case BACKEND_GREETING:
			if (strncmp(line, "* OK", 4) != 0) {
				char reason[300];
				snprintf(reason, sizeof(reason), "backend greeting was not OK: %.200s", line);
				free(line);
				backend_failed(client, reason);
				return;
			}
			client->backend_state = BACKEND_ID_REPLY;
			break;
		case BACKEND_ID_REPLY:
			if (line[0] != '*')
				client->backend_state = BACKEND_LOGIN_REPLY;
			break;
		case BACKEND_LOGIN_REPLY:
			if (line[0] == '*') {
				/* untagged data before the answer: the client's */
				client_sendf(client, "%s\r\n", line);
				break;
			}
			if (line[0] == '+') {
				free(line);
				login_unavailable(client, "backend asked for a SASL continuation (no SASL-IR?)");
				return;
			}
			size_t tag_len = strlen(client->tag);
			const char *status = line + tag_len + 1;
			if (strncmp(line, client->tag, tag_len) != 0 || line[tag_len] != ' ') {
				char reason[300];
				snprintf(reason, sizeof(reason), "unexpected backend reply to login: %.200s", line);
				free(line);
				login_unavailable(client, reason);
				return;
			}
			if (strncasecmp(status, "OK", 2) == 0) {
				start_proxying(client, line, len);
				free(line);
				return;
			}
			/* NO or BAD: the backend's answer is the answer */
			client->daemon->metrics.logins_failed++;
			log_info("event=login result=failed protocol=imap user=%s group=%u backend=%s "
				 "client=%s:%u session=%s reply=\"%.200s\"",
				 client->route.username, client->route.group_id, client->route.backend.name,
				 client->client_ip, client->client_port, client->session_id, status);
			client_sendf(client, "%s\r\n", line);
			free(line);
			login_reset(client);
			client->state = STATE_PRELOGIN;
			if (++client->auth_failures >= client->daemon->set->auth_failures_max) {
				client_close_after(client, "* BYE Too many invalid authentication attempts.\r\n",
						   "too many failed logins");
				return;
			}
			bufferevent_enable(client->bev, EV_READ);
			/* commands pipelined after the failed login */
			client_input(client->bev, client);
			return;
		}
		free(line);
	}
}

static void backend_event(struct bufferevent *bev, short what, void *context)
{
	struct imap_client *client = context;
	if ((what & BEV_EVENT_CONNECTED) != 0) {
		int fd = bufferevent_getfd(bev);
		net_set_tcp_options(fd);
		char ir[1024];
		if (sasl_plain_encode(client->login_user, client->login_password, ir, sizeof(ir)) < 0) {
			login_unavailable(client, "username and password too long to forward");
			return;
		}
		struct evbuffer *out = bufferevent_get_output(bev);
		evbuffer_add_printf(out,
				    "MC ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
				    "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
				    "\"x-session-id\" \"%s\" \"x-proxy-ttl\" \"%u\")\r\n"
				    "%s AUTHENTICATE PLAIN %s\r\n",
				    client->client_ip, client->client_port, client->local_ip,
				    client->local_port, client->session_id, PROXY_TTL - 1, client->tag, ir);
		explicit_bzero(ir, sizeof(ir));
		return;
	}
	char reason[256];
	if ((what & BEV_EVENT_TIMEOUT) != 0) {
		login_unavailable(client, "backend did not answer the login within proxy_timeout");
		return;
	}
	if ((what & BEV_EVENT_EOF) != 0)
		snprintf(reason, sizeof(reason), "backend closed the connection during login");
	else
		snprintf(reason, sizeof(reason), "cannot connect to %s: %s", client->route.backend.address,
			 strerror(EVUTIL_SOCKET_ERROR()));
	if (client->backend_state == BACKEND_GREETING)
		backend_failed(client, reason); /* nothing was said yet: try again */
	else
		login_unavailable(client, reason);
}

static void backend_connect(struct imap_client *client)
{
	struct daemon *daemon = client->daemon;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	client->connect_attempts++;
	client->backend_state = BACKEND_GREETING;
	if (net_parse_ip_port(client->route.backend.address, daemon->set->backend_port_imap, &addr,
			      &addr_len) < 0) {
		char reason[256];
		snprintf(reason, sizeof(reason), "backend address '%s' is not an IP address",
			 client->route.backend.address);
		login_unavailable(client, reason);
		return;
	}
	client->backend_bev = bufferevent_socket_new(daemon->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(client->backend_bev, backend_input, NULL, backend_event, client);
	long left = ms_until(&client->deadline);
	if (left < 1)
		left = 1;
	struct timeval tv = {left / 1000, (left % 1000) * 1000};
	bufferevent_set_timeouts(client->backend_bev, &tv, &tv);
	bufferevent_enable(client->backend_bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(client->backend_bev, (struct sockaddr *)&addr, (int)addr_len) < 0) {
		/* immediate failure; the event callback is not called */
		char reason[256];
		snprintf(reason, sizeof(reason), "cannot connect to %s: %s", client->route.backend.address,
			 strerror(errno));
		backend_failed(client, reason);
	}
}

/* We have a username and password: route and start the backend login. */
static void client_login(struct imap_client *client, const char *tag, const char *user,
			 const char *password)
{
	struct daemon *daemon = client->daemon;
	if (!plaintext_allowed(client)) {
		daemon->metrics.logins_refused++;
		client_sendf(client,
			     "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
			     "(SSL/TLS) connections.\r\n", tag);
		return;
	}
	client->tag = strdup(tag);
	client->login_user = strdup(user);
	client->login_password = strdup(password);
	const char *reason;
	enum route_status status = route_user(daemon->geodb, daemon->set->site, daemon->set->group_count,
					      user, true, &client->route, &reason);
	switch (status) {
	case ROUTE_OK:
		break;
	case ROUTE_BAD_USER:
		daemon->metrics.logins_refused++;
		log_info("event=login result=refused protocol=imap client=%s:%u session=%s reason=\"%s\"",
			 client->client_ip, client->client_port, client->session_id, reason);
		client_sendf(client, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
		login_reset(client);
		if (++client->auth_failures >= daemon->set->auth_failures_max)
			client_close_after(client, "* BYE Too many invalid authentication attempts.\r\n",
					   "too many failed logins");
		return;
	case ROUTE_UNAVAILABLE:
		login_unavailable(client, reason);
		return;
	case ROUTE_ERROR:
		log_error("event=geodb_error user=%s reason=\"%s\"", client->route.username, reason);
		login_unavailable(client, reason);
		return;
	}
	if (client->route.assigned_now) {
		daemon->metrics.group_assignments++;
		log_info("event=group_assign group=%u backend=%s site=%s user=%s", client->route.group_id,
			 client->route.backend.name, client->route.group.site, client->route.username);
	}
	client->state = STATE_BACKEND;
	client->connect_attempts = 0;
	bufferevent_disable(client->bev, EV_READ);
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
	char buf[800];
	const char *authzid, *authcid, *passwd, *error;
	if (len == 1 && b64[0] == '*') {
		client_sendf(client, "%s BAD Authentication aborted by client.\r\n", tag);
		return;
	}
	if (sasl_plain_decode(b64, len, buf, sizeof(buf), &authzid, &authcid, &passwd, &error) < 0) {
		client->daemon->metrics.logins_refused++;
		client_sendf(client, "%s NO [AUTHENTICATIONFAILED] Authentication failed: %s.\r\n", tag, error);
		if (++client->auth_failures >= client->daemon->set->auth_failures_max)
			client_close_after(client, "* BYE Too many invalid authentication attempts.\r\n",
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

static void cmd_starttls(struct imap_client *client, const char *tag)
{
	struct daemon *daemon = client->daemon;
	if (client->tls) {
		client_sendf(client, "%s BAD TLS is already active.\r\n", tag);
		return;
	}
	if (daemon->ssl_ctx == NULL) {
		client_sendf(client, "%s BAD TLS support isn't enabled.\r\n", tag);
		return;
	}
	/* Write everything we owe, then the OK, synchronously, so that no
	 * plaintext is queued behind the handshake; and drop whatever the
	 * client pipelined after STARTTLS (it was sent in the clear and could
	 * be an injection). */
	struct evbuffer *out = bufferevent_get_output(client->bev);
	evbuffer_add_printf(out, "%s OK Begin TLS negotiation now.\r\n", tag);
	/* a bufferevent freezes the start of its output buffer: only it may
	 * drain it.  We are about to free this one, so take it over. */
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) > 0) {
		if (evbuffer_write(out, client->fd) <= 0) {
			char reason[128];
			snprintf(reason, sizeof(reason), "cannot write the STARTTLS reply: %s",
				 strerror(errno));
			client_destroy(client, reason);
			return;
		}
	}
	struct evbuffer *in = bufferevent_get_input(client->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_setfd(client->bev, -1);
	bufferevent_free(client->bev);
	SSL *ssl = SSL_new(daemon->ssl_ctx);
	client->bev = bufferevent_openssl_socket_new(daemon->base, client->fd, ssl,
						     BUFFEREVENT_SSL_ACCEPTING,
						     BEV_OPT_CLOSE_ON_FREE);
	client->tls = true;
	client->secured = true;
	imap_parser_reset(client->parser);
	struct timeval tv = {daemon->set->prelogin_timeout_ms / 1000,
			     (daemon->set->prelogin_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(client->bev, &tv, NULL);
	bufferevent_setwatermark(client->bev, EV_READ, 0, daemon->set->prelogin_line_max + 1024);
	bufferevent_setcb(client->bev, client_input, NULL, client_event, client);
	bufferevent_enable(client->bev, EV_READ | EV_WRITE);
}

/* Returns false if the client was destroyed or must stop reading. */
static bool handle_command(struct imap_client *client, const struct imap_command *cmd)
{
	const char *name = cmd->name, *tag = cmd->tag;
	char caps[256];
	if (strcasecmp(name, "CAPABILITY") == 0) {
		capability_string(client, caps, sizeof(caps));
		client_sendf(client, "* CAPABILITY %s\r\n%s OK Pre-login capabilities listed, post-login "
				     "capabilities have more.\r\n", caps, tag);
	} else if (strcasecmp(name, "NOOP") == 0) {
		client_sendf(client, "%s OK NOOP completed.\r\n", tag);
	} else if (strcasecmp(name, "LOGOUT") == 0) {
		char line[256];
		snprintf(line, sizeof(line), "* BYE Logging out\r\n%s OK Logout completed.\r\n", tag);
		client_close_after(client, line, "logged out before login");
		return false;
	} else if (strcasecmp(name, "ID") == 0) {
		client_sendf(client, "* ID (\"name\" \"mailcluster\")\r\n%s OK ID completed.\r\n", tag);
	} else if (strcasecmp(name, "STARTTLS") == 0) {
		cmd_starttls(client, tag);
		return false; /* the buffer it read from is gone; new input comes by event */
	} else if (strcasecmp(name, "LOGIN") == 0) {
		if (cmd->arg_count != 2 || !arg_is_string(&cmd->args[0]) || !arg_is_string(&cmd->args[1])) {
			client_sendf(client, "%s BAD Error in IMAP command LOGIN: expected username and password.\r\n", tag);
			return true;
		}
		client_login(client, tag, cmd->args[0].str, cmd->args[1].str);
		return client->state == STATE_PRELOGIN;
	} else if (strcasecmp(name, "AUTHENTICATE") == 0) {
		if (cmd->arg_count < 1 || cmd->arg_count > 2 || cmd->args[0].type != IMAP_ARG_ATOM ||
		    (cmd->arg_count == 2 && !arg_is_string(&cmd->args[1]))) {
			client_sendf(client, "%s BAD Error in IMAP command AUTHENTICATE: expected a mechanism.\r\n", tag);
			return true;
		}
		if (strcasecmp(cmd->args[0].str, "PLAIN") != 0) {
			client_sendf(client, "%s NO [CANNOT] Unsupported authentication mechanism.\r\n", tag);
			return true;
		}
		if (!plaintext_allowed(client)) {
			client->daemon->metrics.logins_refused++;
			client_sendf(client, "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
					     "non-secure (SSL/TLS) connections.\r\n", tag);
			return true;
		}
		if (cmd->arg_count == 2) {
			const char *ir = cmd->args[1].str;
			/* "=" is an empty initial response (RFC 4959) */
			cmd_authenticate_response(client, tag, ir, strcmp(ir, "=") == 0 ? 0 : cmd->args[1].len);
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
			client_sendf(client, "%s BAD Error in IMAP command received by server.\r\n", tag);
	}
	return true;
}

/* The line after "+ " in AUTHENTICATE. */
static bool handle_auth_response(struct imap_client *client)
{
	struct evbuffer *input = bufferevent_get_input(client->bev);
	size_t eol_len;
	struct evbuffer_ptr eol = evbuffer_search_eol(input, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(input) > client->daemon->set->prelogin_line_max) {
			client->daemon->metrics.prelogin_too_long++;
			client_close_after(client, "* BYE Line too long.\r\n", "SASL response too long");
		}
		return false;
	}
	size_t len = (size_t)eol.pos;
	if (len > client->daemon->set->prelogin_line_max) {
		client->daemon->metrics.prelogin_too_long++;
		client_close_after(client, "* BYE Line too long.\r\n", "SASL response too long");
		return false;
	}
	char *line = malloc(len + 1);
	evbuffer_remove(input, line, len);
	line[len] = '\0';
	evbuffer_drain(input, eol_len);
	char *tag = client->tag;
	client->tag = NULL;
	client->state = STATE_PRELOGIN;
	cmd_authenticate_response(client, tag, line, len);
	explicit_bzero(line, len);
	free(line);
	free(tag);
	return client->state == STATE_PRELOGIN;
}

static void client_input(struct bufferevent *bev, void *context)
{
	struct imap_client *client = context;
	struct daemon *daemon = client->daemon;
	for (;;) {
		if (client->state == STATE_AUTH_RESPONSE) {
			if (!handle_auth_response(client))
				return;
			continue;
		}
		if (client->state != STATE_PRELOGIN)
			return;
		struct evbuffer *input = bufferevent_get_input(client->bev);
		size_t len = evbuffer_get_length(input);
		if (len == 0)
			return;
		size_t max = daemon->set->prelogin_line_max;
		if (len > max + 2)
			len = max + 2;
		const char *data = (const char *)evbuffer_pullup(input, (ssize_t)len);
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
			client_close_after(client, "* BYE Line too long.\r\n", "pre-login command too long");
			return;
		case IMAP_PARSE_ERROR:
			evbuffer_drain(input, consumed);
			daemon->metrics.prelogin_bad_commands++;
			if (++client->bad_commands >= daemon->set->bad_commands_max) {
				client_close_after(client, "* BYE Too many invalid IMAP commands.\r\n",
						   "too many invalid commands");
				return;
			}
			client_sendf(client, "%s BAD Error in IMAP command: %s.\r\n",
				     cmd.tag != NULL ? cmd.tag : "*", error != NULL ? error : "syntax error");
			continue;
		case IMAP_PARSE_COMMAND:
			/* the command's strings live in the parser's scratch,
			 * so the input can go before the command is handled:
			 * what remains is what the client pipelined after it */
			evbuffer_drain(input, consumed);
			if (!handle_command(client, &cmd))
				return;
			continue;
		}
	}
}

static void client_event(struct bufferevent *bev, short what, void *context)
{
	struct imap_client *client = context;
	if (what == BEV_EVENT_CONNECTED)
		return; /* the TLS handshake finished */
	if ((what & BEV_EVENT_TIMEOUT) != 0) {
		client->daemon->metrics.prelogin_timeouts++;
		client_close_after(client, "* BYE Disconnected for inactivity.\r\n",
				   "no login within prelogin_timeout");
		return;
	}
	if ((what & BEV_EVENT_EOF) != 0) {
		client_destroy(client, "client closed the connection before login");
		return;
	}
	char reason[256];
	unsigned long ssl_err = bufferevent_get_openssl_error(bev);
	if (ssl_err != 0) {
		char detail[200];
		ERR_error_string_n(ssl_err, detail, sizeof(detail));
		snprintf(reason, sizeof(reason), "TLS error: %s", detail);
	} else {
		snprintf(reason, sizeof(reason), "connection error: %s", strerror(EVUTIL_SOCKET_ERROR()));
	}
	client_destroy(client, reason);
}

void imap_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			socklen_t remote_len, bool implicit_tls)
{
	struct imap_client *client = calloc(1, sizeof(*client));
	client->daemon = daemon;
	client->fd = fd;
	daemon->client_count++;
	net_sockaddr_to_ip(remote, client->client_ip, sizeof(client->client_ip), &client->client_port);
	struct sockaddr_storage local;
	socklen_t local_len = sizeof(local);
	if (getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
		net_sockaddr_to_ip((struct sockaddr *)&local, client->local_ip, sizeof(client->local_ip),
				   &client->local_port);
	session_id_generate(daemon, client->session_id);
	net_set_tcp_options(fd);
	client->secured = implicit_tls || net_sockaddr_is_loopback(remote);
	client->parser = imap_parser_create(daemon->set->prelogin_line_max);
	if (implicit_tls) {
		SSL *ssl = SSL_new(daemon->ssl_ctx);
		client->bev = bufferevent_openssl_socket_new(daemon->base, fd, ssl,
							     BUFFEREVENT_SSL_ACCEPTING,
							     BEV_OPT_CLOSE_ON_FREE);
		client->tls = true;
	} else {
		client->bev = bufferevent_socket_new(daemon->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	struct timeval tv = {daemon->set->prelogin_timeout_ms / 1000,
			     (daemon->set->prelogin_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(client->bev, &tv, NULL);
	/* stop reading once more than a whole command is buffered */
	bufferevent_setwatermark(client->bev, EV_READ, 0, daemon->set->prelogin_line_max + 1024);
	bufferevent_setcb(client->bev, client_input, NULL, client_event, client);
	bufferevent_enable(client->bev, EV_READ | EV_WRITE);
	log_debug("event=connect protocol=imap client=%s:%u session=%s tls=%s", client->client_ip,
		  client->client_port, client->session_id, implicit_tls ? "yes" : "no");
	send_greeting(client);
}
