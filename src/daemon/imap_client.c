/* imap_client.c - see imap_client.h.
 *
 * States:
 *   PRELOGIN      parsing commands (imap_parser.h) and answering them
 *   AUTH_RESPONSE waiting for the client's line after "+ " (AUTHENTICATE
 *                 without an initial response)
 *   BACKEND       routed; the login proxy (login_proxy.h) is logging in at
 *                 the backend.  What the client pipelines meanwhile stays
 *                 buffered and goes to the backend once the login succeeds.
 *   CLOSING       a last line is being written
 *
 * The backend dialogue is pipelined: as soon as the TCP connection is up we
 * send "ID (...)" and "TAG AUTHENTICATE PLAIN <ir>" in one write, and then
 * read the greeting, the ID reply and the login reply in that order.  The
 * login is sent with the client's own tag, so the backend's tagged answer
 * (with its CAPABILITY code) goes to the client as it is.
 */
#include "daemon/imap_client.h"

#include "daemon/daemon.h"
#include "daemon/login_proxy.h"
#include "daemon/session.h"
#include "net/stream.h"
#include "proto/imap_parser.h"
#include "proto/sasl_plain.h"
#include "store/route.h"
#include "util/log.h"
#include "util/net_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROXY_TTL 5

enum client_state { STATE_PRELOGIN, STATE_AUTH_RESPONSE, STATE_BACKEND, STATE_CLOSING };

struct imap_client {
	struct daemon *daemon;
	struct stream *stream;
	bool secured, starting_login;
	struct client_ident id;
	struct imap_parser *parser;
	unsigned auth_failures, bad_commands;
	enum client_state state;
	char *tag; /* of the AUTHENTICATE or login in progress */
	struct route_result *route;
	struct login_proxy *login;
};

static void client_input(void *context);

/* ---- helpers ---- */

static void client_send(struct imap_client *client, const char *text)
{
	stream_write(client->stream, text, strlen(text));
}

#define client_sendf(client, ...) stream_printf((client)->stream, __VA_ARGS__)

static void client_destroy(struct imap_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=imap client=%s:%u session=%s state=%s "
			 "reason=\"%s\"",
			 client->id.client_ip, client->id.client_port, client->id.session_id,
			 client->state == STATE_BACKEND ? "login" : "prelogin", reason);
	login_proxy_abort(&client->login);
	free(client->tag);
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

static void auth_failed(struct imap_client *client)
{
	if (++client->auth_failures >= client->daemon->set->auth_failures_max)
		client_close_after(client, "* BYE Too many invalid authentication attempts.\r\n",
				   "too many failed logins");
}

/* ---- the backend dialogue ---- */

enum imap_dialogue_state { IMAP_DIALOGUE_GREETING, IMAP_DIALOGUE_ID, IMAP_DIALOGUE_LOGIN };

static void imap_backend_connected(struct login_proxy *lp)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp,
			  "MC ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
			  "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
			  "\"x-session-id\" \"%s\" \"x-proxy-ttl\" \"%u\")\r\n"
			  "%s AUTHENTICATE PLAIN %s\r\n",
			  req->ident.client_ip, req->ident.client_port, req->ident.local_ip,
			  req->ident.local_port, req->ident.session_id, PROXY_TTL - 1, req->tag,
			  ir);
	explicit_bzero(ir, sizeof(ir));
}

static void imap_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	unsigned *state = login_proxy_state(lp);
	const char *tag = login_proxy_request(lp)->tag;
	char reason[300];
	switch (*state) {
	case IMAP_DIALOGUE_GREETING:
		if (strncmp(line, "* OK", 4) != 0) {
			snprintf(reason, sizeof(reason), "backend greeting was not OK: %.200s",
				 line);
			login_proxy_retry(lp, reason);
			return;
		}
		*state = IMAP_DIALOGUE_ID;
		return;
	case IMAP_DIALOGUE_ID:
		if (line[0] != '*')
			*state = IMAP_DIALOGUE_LOGIN;
		return;
	}
	if (line[0] == '*') {
		/* untagged data before the answer: the client's */
		login_proxy_to_client(lp, line, len);
		login_proxy_to_client(lp, "\r\n", 2);
		return;
	}
	if (line[0] == '+') {
		login_proxy_unavailable(lp, "backend asked for a SASL continuation (no SASL-IR?)");
		return;
	}
	size_t tag_len = strlen(tag);
	if (len <= tag_len || strncmp(line, tag, tag_len) != 0 || line[tag_len] != ' ') {
		snprintf(reason, sizeof(reason), "unexpected backend reply to login: %.200s", line);
		login_proxy_unavailable(lp, reason);
		return;
	}
	if (strncasecmp(line + tag_len + 1, "OK", 2) == 0)
		login_proxy_success(lp, line, len);
	else
		login_proxy_failure(lp, line, len); /* NO or BAD: the backend's answer */
}

static const struct login_proxy_dialogue imap_dialogue = {
	.protocol = "imap",
	.connected = imap_backend_connected,
	.line = imap_backend_line,
};

static void login_done(void *context, enum login_proxy_result result, const char *reason)
{
	struct imap_client *client = context;
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
		client_sendf(client, "%s NO [UNAVAILABLE] Account is temporarily unavailable.\r\n",
			     client->tag);
		client->state = STATE_PRELOGIN;
		break;
	}
	free(client->tag);
	client->tag = NULL;
	/* commands pipelined after the login; when called back from inside
	 * client_login() the parsing loop there goes on by itself */
	if (client->state == STATE_PRELOGIN && !client->starting_login)
		client_input(client);
}

/* We have a username and password: route, and start the login proxy. */
static void client_login(struct imap_client *client, const char *tag, const char *user,
			 const char *password)
{
	struct daemon *daemon = client->daemon;
	if (!plaintext_allowed(client)) {
		daemon->metrics.logins_refused++;
		client_sendf(client,
			     "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
			     "non-secure (SSL/TLS) connections.\r\n",
			     tag);
		return;
	}
	if (client->route == NULL)
		client->route = malloc(sizeof(*client->route));
	switch (login_route(daemon, "imap", &client->id, user, client->route)) {
	case LOGIN_ROUTE_OK:
		break;
	case LOGIN_ROUTE_BAD_USER:
		client_sendf(client, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
			     tag);
		auth_failed(client);
		return;
	case LOGIN_ROUTE_UNAVAILABLE:
		client_sendf(client, "%s NO [UNAVAILABLE] Account is temporarily unavailable.\r\n",
			     tag);
		return;
	}
	/* The client stays readable: what it pipelines is buffered (up to
	 * prelogin_line_max) for the backend, and if it goes away the login
	 * is abandoned. */
	client->state = STATE_BACKEND;
	free(client->tag);
	client->tag = strdup(tag);
	struct login_proxy_request request = {
		.daemon = daemon,
		.client = client->stream,
		.dialogue = &imap_dialogue,
		.backend_port = daemon->set->backend_port_imap,
		.route = client->route,
		.ident = client->id,
		.tag = tag,
		.user = user,
		.password = password,
	};
	client->starting_login = true;
	login_proxy_start(&request, login_done, client, &client->login);
	client->starting_login = false;
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
		auth_failed(client);
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
		free(client->tag);
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
	daemon->client_count++;
	client_ident_init(&client->id, daemon, fd, remote, local);
	client->secured = implicit_tls || client->id.loopback;
	client->parser = imap_parser_create(daemon->set->prelogin_line_max);
	client->stream =
		stream_create(daemon->base, fd, implicit_tls ? daemon->ssl_ctx : NULL,
			      daemon->set->prelogin_line_max, daemon->set->prelogin_timeout_ms,
			      &client_stream_callbacks, client);
	log_debug("event=connect protocol=imap client=%s:%u session=%s tls=%s",
		  client->id.client_ip, client->id.client_port, client->id.session_id,
		  implicit_tls ? "yes" : "no");
	char caps[256];
	capability_string(client, caps, sizeof(caps));
	client_sendf(client, "* OK [CAPABILITY %s] mailcluster ready.\r\n", caps);
}
