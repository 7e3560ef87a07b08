/* pop3_client.c - see pop3_client.h.
 *
 * States (as in imap_client.c):
 *   PRELOGIN      reading command lines (pop3_command.h) and answering them
 *   AUTH_RESPONSE waiting for the client's line after "+ " (AUTH PLAIN
 *                 without an initial response)
 *   BACKEND       routed; the login proxy (login_proxy.h) is logging in at
 *                 the backend.  What the client pipelines meanwhile stays
 *                 buffered and goes to the backend once the login succeeds
 *                 (that is what makes PIPELINING true: USER, PASS, STAT,
 *                 LIST in one write work).
 *   CLOSING       a last line is being written
 *
 * Lines: a command line is at most POP3_LINE_MAX octets (RFC 2449 section
 * 4; also never more than prelogin_line_max); a longer one gets "-ERR" and
 * the connection is closed, since whatever follows it cannot be trusted to
 * be a command.  A SASL response line (RFC 5034 section 4 does not bound
 * it) may be as long as prelogin_line_max.
 *
 * The backend dialogue is pipelined like IMAP's: as soon as the TCP
 * connection is up we send Dovecot's "XCLIENT ADDR= PORT= SESSION= TTL="
 * (pop3-login accepts it from login_trusted_networks and answers "+OK";
 * it advertises it with "[XCLIENT]" in its greeting) and "AUTH PLAIN <ir>"
 * in one write, then read the greeting, the XCLIENT reply and the login
 * reply in that order.  A backend that refuses XCLIENT (-ERR: we are not
 * in its login_trusted_networks) still gets the login; the refusal is
 * logged, because the backend then sees the proxy's address as the
 * client's.
 */
#include "daemon/pop3_client.h"

#include "daemon/daemon.h"
#include "daemon/login_proxy.h"
#include "daemon/session.h"
#include "net/stream.h"
#include "proto/pop3_command.h"
#include "proto/sasl_plain.h"
#include "store/route.h"
#include "util/log.h"
#include "util/net_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROXY_TTL 5

#define REPLY_TEMPFAIL "-ERR [SYS/TEMP] Account is temporarily unavailable.\r\n"
#define REPLY_PLAINTEXT_DISALLOWED \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"

enum client_state { STATE_PRELOGIN, STATE_AUTH_RESPONSE, STATE_BACKEND, STATE_CLOSING };

struct pop3_client {
	struct daemon *daemon;
	struct stream *stream;
	bool secured, starting_login;
	struct client_ident id;
	unsigned auth_failures, bad_commands;
	enum client_state state;
	char *user; /* from USER, until PASS */
	struct route_result *route;
	struct login_proxy *login;
};

static void client_input(void *context);

/* ---- helpers ---- */

static void client_send(struct pop3_client *client, const char *text)
{
	stream_write(client->stream, text, strlen(text));
}

#define client_sendf(client, ...) stream_printf((client)->stream, __VA_ARGS__)

static void forget_user(struct pop3_client *client)
{
	free(client->user);
	client->user = NULL;
}

static void client_destroy(struct pop3_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=pop3 client=%s:%u session=%s state=%s "
			 "reason=\"%s\"",
			 client->id.client_ip, client->id.client_port, client->id.session_id,
			 client->state == STATE_BACKEND ? "login" : "prelogin", reason);
	login_proxy_abort(&client->login);
	forget_user(client);
	free(client->route);
	stream_destroy(&client->stream);
	client->daemon->client_count--;
	free(client);
}

/* Sends a last line (or none), then closes once it is written (bounded). */
static void client_close_after(struct pop3_client *client, const char *line, const char *reason)
{
	log_info("event=disconnect protocol=pop3 client=%s:%u session=%s reason=\"%s\"",
		 client->id.client_ip, client->id.client_port, client->id.session_id, reason);
	login_proxy_abort(&client->login);
	client->state = STATE_CLOSING;
	if (line != NULL)
		client_send(client, line);
	stream_close_after_flush(client->stream); /* calls client_flushed, later */
}

static void client_flushed(void *context)
{
	client_destroy(context, NULL);
}

static void client_closed(void *context, const char *reason)
{
	struct pop3_client *client = context;
	client_destroy(client, client->state == STATE_CLOSING ? NULL : reason);
}

static void client_timeout(void *context)
{
	struct pop3_client *client = context;
	client->daemon->metrics.prelogin_timeouts++;
	client_close_after(client, "-ERR Disconnected for inactivity.\r\n",
			   "no login within prelogin_timeout");
}

static const struct stream_callbacks client_stream_callbacks = {
	.input = client_input,
	.timeout = client_timeout,
	.closed = client_closed,
	.flushed = client_flushed,
};

static bool plaintext_allowed(struct pop3_client *client)
{
	return client->secured || client->daemon->set->plaintext_auth == PLAINTEXT_AUTH_ALWAYS;
}

static bool starttls_available(struct pop3_client *client)
{
	return client->daemon->ssl_ctx != NULL && !stream_is_tls(client->stream);
}

/* A failed login: the reply is already written.  POP3 has no unsolicited
 * responses, so the last straw closes without another line. */
static void auth_failed(struct pop3_client *client)
{
	if (++client->auth_failures >= client->daemon->set->auth_failures_max)
		client_close_after(client, NULL, "too many failed logins");
}

/* Returns false if the client is closing. */
static bool bad_command(struct pop3_client *client, const char *reply)
{
	client->daemon->metrics.prelogin_bad_commands++;
	if (++client->bad_commands >= client->daemon->set->bad_commands_max) {
		client_close_after(client, "-ERR Too many invalid commands.\r\n",
				   "too many invalid commands");
		return false;
	}
	client_send(client, reply);
	return true;
}

/* ---- the backend dialogue ---- */

enum pop3_dialogue_state { POP3_DIALOGUE_GREETING, POP3_DIALOGUE_XCLIENT, POP3_DIALOGUE_LOGIN };

static void pop3_backend_connected(struct login_proxy *lp)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp,
			  "XCLIENT ADDR=%s PORT=%u SESSION=%s TTL=%u\r\n"
			  "AUTH PLAIN %s\r\n",
			  req->ident.client_ip, req->ident.client_port, req->ident.session_id,
			  PROXY_TTL - 1, ir);
	explicit_bzero(ir, sizeof(ir));
}

static void pop3_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	unsigned *state = login_proxy_state(lp);
	char reason[300];
	switch (*state) {
	case POP3_DIALOGUE_GREETING:
		if (strncmp(line, "+OK", 3) != 0) {
			snprintf(reason, sizeof(reason), "backend greeting was not +OK: %.200s",
				 line);
			login_proxy_retry(lp, reason);
			return;
		}
		*state = POP3_DIALOGUE_XCLIENT;
		return;
	case POP3_DIALOGUE_XCLIENT:
		if (strncmp(line, "+OK", 3) != 0)
			log_warning(
				"event=forward_refused protocol=pop3 user=%s backend=%s "
				"client=%s:%u session=%s reason=\"backend refused XCLIENT, so it "
				"sees the proxy as the client (is the proxy in its "
				"login_trusted_networks?): %.200s\"",
				req->route->username, req->route->backend.name,
				req->ident.client_ip, req->ident.client_port, req->ident.session_id,
				line);
		*state = POP3_DIALOGUE_LOGIN;
		return;
	}
	if (strncmp(line, "+OK", 3) == 0) {
		login_proxy_success(lp, line, len);
	} else if (strncmp(line, "-ERR", 4) == 0) {
		login_proxy_failure(lp, line, len); /* the backend's answer */
	} else if (line[0] == '+') {
		login_proxy_unavailable(lp, "backend asked for a SASL continuation after an "
					    "initial response");
	} else {
		snprintf(reason, sizeof(reason), "unexpected backend reply to login: %.200s", line);
		login_proxy_unavailable(lp, reason);
	}
}

static const struct login_proxy_dialogue pop3_dialogue = {
	.protocol = "pop3",
	.connected = pop3_backend_connected,
	.line = pop3_backend_line,
};

static void login_done(void *context, enum login_proxy_result result, const char *reason)
{
	struct pop3_client *client = context;
	client->login = NULL;
	switch (result) {
	case LOGIN_PROXY_PROXYING:
		client_destroy(client, NULL); /* the session has the sockets */
		return;
	case LOGIN_PROXY_FAILED:
		client->state = STATE_PRELOGIN;
		auth_failed(client);
		break;
	case LOGIN_PROXY_UNAVAILABLE:
		client_send(client, REPLY_TEMPFAIL);
		client->state = STATE_PRELOGIN;
		break;
	}
	/* commands pipelined after the login; when called back from inside
	 * client_login() the reading loop there goes on by itself */
	if (client->state == STATE_PRELOGIN && !client->starting_login)
		client_input(client);
}

/* We have a username and password: route, and start the login proxy. */
static void client_login(struct pop3_client *client, const char *user, const char *password)
{
	struct daemon *daemon = client->daemon;
	if (!plaintext_allowed(client)) {
		daemon->metrics.logins_refused++;
		client_send(client, REPLY_PLAINTEXT_DISALLOWED);
		return;
	}
	if (client->route == NULL)
		client->route = malloc(sizeof(*client->route));
	switch (login_route(daemon, "pop3", &client->id, user, client->route)) {
	case LOGIN_ROUTE_OK:
		break;
	case LOGIN_ROUTE_BAD_USER:
		client_send(client, "-ERR [AUTH] Authentication failed.\r\n");
		auth_failed(client);
		return;
	case LOGIN_ROUTE_UNAVAILABLE:
		client_send(client, REPLY_TEMPFAIL);
		return;
	}
	/* The client stays readable: what it pipelines is buffered (up to
	 * prelogin_line_max) for the backend, and if it goes away the login
	 * is abandoned. */
	client->state = STATE_BACKEND;
	struct login_proxy_request request = {
		.daemon = daemon,
		.client = client->stream,
		.dialogue = &pop3_dialogue,
		.backend_port = daemon->set->backend_port_pop3,
		.route = client->route,
		.ident = client->id,
		.tag = NULL,
		.user = user,
		.password = password,
	};
	client->starting_login = true;
	login_proxy_start(&request, login_done, client, &client->login);
	client->starting_login = false;
}

/* ---- pre-login commands ---- */

/* The PLAIN response, from AUTH's argument or the line after "+ ". */
static void auth_plain_response(struct pop3_client *client, const char *b64, size_t len)
{
	char buf[SASL_PLAIN_BUF_SIZE];
	const char *authzid, *authcid, *passwd, *error;
	if (len == 1 && b64[0] == '*') {
		client_send(client, "-ERR Authentication aborted by client.\r\n");
		return;
	}
	if (sasl_plain_decode(b64, len, buf, sizeof(buf), &authzid, &authcid, &passwd, &error) <
	    0) {
		client->daemon->metrics.logins_refused++;
		client_sendf(client, "-ERR [AUTH] Authentication failed: %s.\r\n", error);
		auth_failed(client);
		return;
	}
	client_login(client, authcid, passwd);
	explicit_bzero(buf, sizeof(buf));
}

static void cmd_capa(struct pop3_client *client)
{
	bool plaintext = plaintext_allowed(client);
	client_sendf(client,
		     "+OK\r\nCAPA\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n%s%s%s\r\n.\r\n",
		     starttls_available(client) ? "STLS\r\n" : "", plaintext ? "USER\r\n" : "",
		     plaintext ? "SASL PLAIN" : "SASL");
}

/* Returns false: new input comes from the TLS layer (or the client is gone). */
static bool cmd_stls(struct pop3_client *client)
{
	struct daemon *daemon = client->daemon;
	if (stream_is_tls(client->stream)) {
		client_send(client, "-ERR TLS is already active.\r\n");
		return true;
	}
	if (daemon->ssl_ctx == NULL) {
		client_send(client, "-ERR TLS support isn't enabled.\r\n");
		return true;
	}
	forget_user(client); /* RFC 2595 section 4: start again */
	const char *error;
	if (stream_starttls(client->stream, daemon->ssl_ctx, "+OK Begin TLS negotiation now.\r\n",
			    &error) < 0) {
		client_destroy(client, error);
		return false;
	}
	client->secured = true;
	return false;
}

static bool cmd_auth(struct pop3_client *client, const struct pop3_command *cmd)
{
	if (cmd->arg_count == 0) {
		/* the mechanism list (RFC 1734's AUTH without arguments) */
		client_sendf(client, "+OK\r\n%s.\r\n",
			     plaintext_allowed(client) ? "PLAIN\r\n" : "");
		return true;
	}
	if (strcasecmp(cmd->args[0], "PLAIN") != 0) {
		client_send(client, "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
		return true;
	}
	if (!plaintext_allowed(client)) {
		client->daemon->metrics.logins_refused++;
		client_send(client, REPLY_PLAINTEXT_DISALLOWED);
		return true;
	}
	if (cmd->arg_count == 2) {
		const char *ir = cmd->args[1];
		/* "=" is an empty initial response (RFC 5034 section 4) */
		auth_plain_response(client, ir, strcmp(ir, "=") == 0 ? 0 : strlen(ir));
		return client->state == STATE_PRELOGIN;
	}
	client->state = STATE_AUTH_RESPONSE;
	client_send(client, "+ \r\n");
	return true;
}

/* Returns false if the client was destroyed or must stop reading. */
static bool handle_command(struct pop3_client *client, const struct pop3_command *cmd)
{
	const char *keyword = cmd->keyword; /* upper-cased by the parser */
	if (strcmp(keyword, "CAPA") == 0) {
		cmd_capa(client);
	} else if (strcmp(keyword, "STLS") == 0) {
		return cmd_stls(client);
	} else if (strcmp(keyword, "QUIT") == 0) {
		client_close_after(client, "+OK Logging out.\r\n", "logged out before login");
		return false;
	} else if (strcmp(keyword, "USER") == 0) {
		if (!plaintext_allowed(client)) {
			client->daemon->metrics.logins_refused++;
			client_send(client, REPLY_PLAINTEXT_DISALLOWED);
			return true;
		}
		if (cmd->arg_count != 1)
			return bad_command(client, "-ERR USER: expected a username.\r\n");
		forget_user(client);
		client->user = strdup(cmd->args[0]);
		client_send(client, "+OK\r\n");
	} else if (strcmp(keyword, "PASS") == 0) {
		if (client->user == NULL)
			return bad_command(client, "-ERR No username given.\r\n");
		char *user = client->user;
		client->user = NULL; /* a failed PASS starts again at USER */
		if (cmd->arg_count == 0 || cmd->args[0][0] == '\0') {
			client->daemon->metrics.logins_refused++;
			client_send(client,
				    "-ERR [AUTH] Authentication failed: empty password.\r\n");
			auth_failed(client);
		} else {
			client_login(client, user, cmd->args[0]);
		}
		free(user);
		return client->state == STATE_PRELOGIN;
	} else if (strcmp(keyword, "AUTH") == 0) {
		return cmd_auth(client, cmd);
	} else if (strcmp(keyword, "STAT") == 0 || strcmp(keyword, "LIST") == 0 ||
		   strcmp(keyword, "RETR") == 0 || strcmp(keyword, "DELE") == 0 ||
		   strcmp(keyword, "UIDL") == 0 || strcmp(keyword, "TOP") == 0 ||
		   strcmp(keyword, "NOOP") == 0 || strcmp(keyword, "RSET") == 0) {
		return bad_command(client, "-ERR Command not allowed before login.\r\n");
	} else {
		return bad_command(client, "-ERR Unknown command.\r\n");
	}
	return true;
}

/* Finds the next line in data; returns its length without the line end
 * and sets *consumed_r, or returns -1 if no line is complete yet. */
static long next_line(const char *data, size_t len, size_t *consumed_r)
{
	const char *lf = memchr(data, '\n', len);
	if (lf == NULL)
		return -1;
	size_t line_len = (size_t)(lf - data);
	*consumed_r = line_len + 1;
	if (line_len > 0 && data[line_len - 1] == '\r')
		line_len--;
	return (long)line_len;
}

static void line_too_long(struct pop3_client *client, const char *reason)
{
	client->daemon->metrics.prelogin_too_long++;
	client_close_after(client, "-ERR Line too long.\r\n", reason);
}

/* The line after "+ " in AUTH PLAIN. */
static bool handle_auth_response(struct pop3_client *client, const char *data, size_t len)
{
	size_t max = client->daemon->set->prelogin_line_max, consumed;
	long line_len = next_line(data, len, &consumed);
	if (line_len < 0) {
		if (len > max + 1)
			line_too_long(client, "SASL response too long");
		return false;
	}
	if ((size_t)line_len > max) {
		line_too_long(client, "SASL response too long");
		return false;
	}
	char *line = malloc((size_t)line_len + 1);
	memcpy(line, data, (size_t)line_len);
	line[line_len] = '\0';
	stream_consume(client->stream, consumed);
	client->state = STATE_PRELOGIN;
	auth_plain_response(client, line, (size_t)line_len);
	explicit_bzero(line, (size_t)line_len);
	free(line);
	return client->state == STATE_PRELOGIN;
}

static void client_input(void *context)
{
	struct pop3_client *client = context;
	size_t max = client->daemon->set->prelogin_line_max;
	if (max > POP3_LINE_MAX)
		max = POP3_LINE_MAX;
	for (;;) {
		if (client->state != STATE_PRELOGIN && client->state != STATE_AUTH_RESPONSE)
			return;
		size_t len, consumed;
		const char *data = stream_input(client->stream, &len);
		if (len == 0)
			return;
		if (client->state == STATE_AUTH_RESPONSE) {
			if (!handle_auth_response(client, data, len))
				return;
			continue;
		}
		long line_len = next_line(data, len, &consumed);
		if (line_len < 0) {
			/* + 1: the CR of a line whose LF is still to come */
			if (len > max + 1)
				line_too_long(client, "pre-login command too long");
			return;
		}
		if ((size_t)line_len > max) {
			line_too_long(client, "pre-login command too long");
			return;
		}
		char buf[POP3_COMMAND_BUF_SIZE];
		struct pop3_command cmd;
		const char *error;
		int ret =
			pop3_command_parse(data, (size_t)line_len, buf, sizeof(buf), &cmd, &error);
		/* the command lives in buf: what remains is what the client
		 * pipelined after it */
		stream_consume(client->stream, consumed);
		bool go_on;
		if (ret < 0) {
			char reply[160];
			snprintf(reply, sizeof(reply), "-ERR Invalid command: %s.\r\n", error);
			go_on = bad_command(client, reply);
		} else {
			go_on = handle_command(client, &cmd);
		}
		explicit_bzero(buf, sizeof(buf)); /* PASS */
		if (!go_on)
			return;
	}
}

void pop3_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls)
{
	struct pop3_client *client = calloc(1, sizeof(*client));
	client->daemon = daemon;
	daemon->client_count++;
	client_ident_init(&client->id, daemon, fd, remote, local);
	client->secured = implicit_tls || client->id.loopback;
	client->stream =
		stream_create(daemon->base, fd, implicit_tls ? daemon->ssl_ctx : NULL,
			      daemon->set->prelogin_line_max, daemon->set->prelogin_timeout_ms,
			      &client_stream_callbacks, client);
	log_debug("event=connect protocol=pop3 client=%s:%u session=%s tls=%s",
		  client->id.client_ip, client->id.client_port, client->id.session_id,
		  implicit_tls ? "yes" : "no");
	client_send(client, "+OK mailcluster ready.\r\n");
}
