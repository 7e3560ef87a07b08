/* sieve_client.c - see sieve_client.h.
 *
 * States (as in imap_client.c):
 *   PRELOGIN      parsing commands (sieve_parser.h) and answering them
 *   AUTH_RESPONSE waiting for the client's string line after our empty
 *                 challenge "" (AUTHENTICATE "PLAIN" without an initial
 *                 response, RFC 5804 section 2.1)
 *   BACKEND       routed; the login proxy (login_proxy.h) is logging in at
 *                 the backend.  What the client pipelines meanwhile stays
 *                 buffered and goes to the backend once the login succeeds.
 *   CLOSING       a last line is being written
 *
 * Responses are "OK"/"NO" with a quoted human-readable string; fatal
 * conditions (inactivity, a command longer than prelogin_line_max, too many
 * bad commands or failed logins) get "BYE" and the connection is closed.
 * After STARTTLS the capabilities and an OK are sent again, unasked, over
 * TLS (RFC 5804 section 2.2): they are queued before the handshake and go
 * out right after it.
 *
 * The backend dialogue with Dovecot's managesieve-login is pipelined: as
 * soon as the TCP connection is up we send Dovecot's "XCLIENT ADDR= PORT=
 * SESSION= TTL=" (managesieve-login accepts it from login_trusted_networks,
 * advertises it as the "XCLIENT" capability and answers OK "Updated") and
 * AUTHENTICATE "PLAIN" "<ir>" in one write, then read the capability lines
 * up to the greeting's OK, the XCLIENT reply and the login reply in that
 * order.  A backend that refuses XCLIENT still gets the login; the refusal
 * is logged, because the backend then sees the proxy as the client.
 */
#include "daemon/sieve_client.h"

#include "daemon/daemon.h"
#include "daemon/login_proxy.h"
#include "daemon/session.h"
#include "net/stream.h"
#include "proto/sasl_plain.h"
#include "proto/sieve_parser.h"
#include "store/route.h"
#include "util/log.h"
#include "util/net_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROXY_TTL 5
/* NOOP echoes its tag quoted up to this length, else as a literal */
#define QUOTED_MAX 1024

#define REPLY_TEMPFAIL "NO (TRYLATER) \"Account is temporarily unavailable.\"\r\n"
#define REPLY_PLAINTEXT_DISALLOWED                                                           \
	"NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed on non-secure (SSL/TLS) " \
	"connections.\"\r\n"

enum client_state { STATE_PRELOGIN, STATE_AUTH_RESPONSE, STATE_BACKEND, STATE_CLOSING };

struct sieve_client {
	struct daemon *daemon;
	struct stream *stream;
	bool secured, starting_login;
	struct client_ident id;
	struct sieve_parser *parser;
	unsigned auth_failures, bad_commands;
	enum client_state state;
	struct route_result *route;
	struct login_proxy *login;
};

static void client_input(void *context);

/* ---- helpers ---- */

static void client_send(struct sieve_client *client, const char *text)
{
	stream_write(client->stream, text, strlen(text));
}

#define client_sendf(client, ...) stream_printf((client)->stream, __VA_ARGS__)

/* Writes s as a ManageSieve string: quoted (with \" and \\ escaped) when
 * it can be, else as a literal. */
static void send_string(struct sieve_client *client, const char *s, size_t len)
{
	bool quotable = len <= QUOTED_MAX;
	for (size_t i = 0; i < len && quotable; i++)
		quotable = s[i] != '\r' && s[i] != '\n' && s[i] != '\0';
	if (!quotable) {
		client_sendf(client, "{%zu}\r\n", len);
		stream_write(client->stream, s, len);
		return;
	}
	char buf[2 * QUOTED_MAX + 3], *p = buf;
	*p++ = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			*p++ = '\\';
		*p++ = s[i];
	}
	*p++ = '"';
	stream_write(client->stream, buf, (size_t)(p - buf));
}

/* NO "<text>", with text quoted (parser errors are our own sentences,
 * but quote them properly anyway). */
static void send_no(struct sieve_client *client, const char *text)
{
	client_send(client, "NO ");
	send_string(client, text, strlen(text));
	client_send(client, "\r\n");
}

static void client_destroy(struct sieve_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=sieve client=%s:%u session=%s state=%s "
			 "reason=\"%s\"",
			 client->id.client_ip, client->id.client_port, client->id.session_id,
			 client->state == STATE_BACKEND ? "login" : "prelogin", reason);
	login_proxy_abort(&client->login);
	free(client->route);
	sieve_parser_destroy(&client->parser);
	stream_destroy(&client->stream);
	client->daemon->client_count--;
	free(client);
}

/* Sends a last line, then closes once it is written (bounded). */
static void client_close_after(struct sieve_client *client, const char *line, const char *reason)
{
	log_info("event=disconnect protocol=sieve client=%s:%u session=%s reason=\"%s\"",
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
	struct sieve_client *client = context;
	client_destroy(client, client->state == STATE_CLOSING ? NULL : reason);
}

static void client_timeout(void *context)
{
	struct sieve_client *client = context;
	client->daemon->metrics.prelogin_timeouts++;
	client_close_after(client, "BYE \"Disconnected for inactivity.\"\r\n",
			   "no login within prelogin_timeout");
}

static const struct stream_callbacks client_stream_callbacks = {
	.input = client_input,
	.timeout = client_timeout,
	.closed = client_closed,
	.flushed = client_flushed,
};

static bool plaintext_allowed(struct sieve_client *client)
{
	return client->secured || client->daemon->set->plaintext_auth == PLAINTEXT_AUTH_ALWAYS;
}

static bool starttls_available(struct sieve_client *client)
{
	return client->daemon->ssl_ctx != NULL && !stream_is_tls(client->stream);
}

/* The capability lines (RFC 5804 section 1.7) and an OK with text. */
static void send_capabilities(struct sieve_client *client, const char *ok_text)
{
	client_sendf(client,
		     "\"IMPLEMENTATION\" \"mailcluster\"\r\n"
		     "\"SASL\" \"%s\"\r\n"
		     "%s"
		     "\"VERSION\" \"1.0\"\r\n"
		     "OK \"%s\"\r\n",
		     plaintext_allowed(client) ? "PLAIN" : "",
		     starttls_available(client) ? "\"STARTTLS\"\r\n" : "", ok_text);
}

/* A failed login: the NO is already written. */
static void auth_failed(struct sieve_client *client)
{
	if (++client->auth_failures >= client->daemon->set->auth_failures_max)
		client_close_after(client, "BYE \"Too many invalid authentication attempts.\"\r\n",
				   "too many failed logins");
}

/* Returns false if the client is closing. */
static bool bad_command(struct sieve_client *client, const char *text)
{
	client->daemon->metrics.prelogin_bad_commands++;
	if (++client->bad_commands >= client->daemon->set->bad_commands_max) {
		client_close_after(client, "BYE \"Too many invalid commands.\"\r\n",
				   "too many invalid commands");
		return false;
	}
	send_no(client, text);
	return true;
}

/* ---- the backend dialogue ---- */

enum sieve_dialogue_state {
	SIEVE_DIALOGUE_GREETING,
	SIEVE_DIALOGUE_XCLIENT,
	SIEVE_DIALOGUE_LOGIN,
};
/* or'ed into the state when the greeting listed "XCLIENT" */
#define SIEVE_DIALOGUE_XCLIENT_ADVERTISED 0x100u

/* Is line the response word (OK, NO, BYE) followed by SP or its end? */
static bool response_is(const char *line, const char *word)
{
	size_t len = strlen(word);
	return strncasecmp(line, word, len) == 0 && (line[len] == ' ' || line[len] == '\0');
}

static void sieve_backend_connected(struct login_proxy *lp)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp,
			  "XCLIENT ADDR=%s PORT=%u SESSION=%s TTL=%u\r\n"
			  "AUTHENTICATE \"PLAIN\" \"%s\"\r\n",
			  req->ident.client_ip, req->ident.client_port, req->ident.session_id,
			  PROXY_TTL - 1, ir);
	explicit_bzero(ir, sizeof(ir));
}

static void sieve_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	unsigned *state = login_proxy_state(lp);
	char reason[300];
	switch (*state & 0xff) {
	case SIEVE_DIALOGUE_GREETING:
		if (line[0] == '"') {
			/* a capability line */
			if (strcasecmp(line, "\"XCLIENT\"") == 0)
				*state |= SIEVE_DIALOGUE_XCLIENT_ADVERTISED;
			return;
		}
		if (!response_is(line, "OK")) {
			snprintf(reason, sizeof(reason), "backend greeting was not OK: %.200s",
				 line);
			login_proxy_retry(lp, reason);
			return;
		}
		*state = (*state & ~0xffu) | SIEVE_DIALOGUE_XCLIENT;
		return;
	case SIEVE_DIALOGUE_XCLIENT:
		if (response_is(line, "BYE")) {
			snprintf(reason, sizeof(reason), "backend said BYE to XCLIENT: %.200s",
				 line);
			login_proxy_unavailable(lp, reason);
			return;
		}
		if (!response_is(line, "OK"))
			log_warning(
				"event=forward_refused protocol=sieve user=%s backend=%s "
				"client=%s:%u session=%s xclient_advertised=%s reason=\"backend "
				"refused XCLIENT, so it sees the proxy as the client (is the "
				"proxy in its login_trusted_networks?): %.200s\"",
				req->route->username, req->route->backend.name,
				req->ident.client_ip, req->ident.client_port, req->ident.session_id,
				(*state & SIEVE_DIALOGUE_XCLIENT_ADVERTISED) != 0 ? "yes" : "no",
				line);
		*state = (*state & ~0xffu) | SIEVE_DIALOGUE_LOGIN;
		return;
	}
	if (response_is(line, "OK")) {
		/* may carry capabilities; a literal's data, if any, follows
		 * in the bytes passed on after the reply */
		login_proxy_success(lp, line, len);
	} else if (response_is(line, "NO")) {
		if (len > 0 && line[len - 1] == '}') {
			/* the text is a literal, still to come: say it ourselves */
			const char *no = "NO \"Authentication failed.\"";
			login_proxy_failure(lp, no, strlen(no));
		} else {
			login_proxy_failure(lp, line, len); /* the backend's answer */
		}
	} else if (line[0] == '"' || line[0] == '{') {
		login_proxy_unavailable(lp, "backend sent a SASL challenge after an initial "
					    "response");
	} else {
		snprintf(reason, sizeof(reason), "unexpected backend reply to login: %.200s", line);
		login_proxy_unavailable(lp, reason);
	}
}

static const struct login_proxy_dialogue sieve_dialogue = {
	.protocol = "sieve",
	.connected = sieve_backend_connected,
	.line = sieve_backend_line,
};

static void login_done(void *context, enum login_proxy_result result, const char *reason)
{
	struct sieve_client *client = context;
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
	 * client_login() the parsing loop there goes on by itself */
	if (client->state == STATE_PRELOGIN && !client->starting_login)
		client_input(client);
}

/* We have a username and password: route, and start the login proxy. */
static void client_login(struct sieve_client *client, const char *user, const char *password)
{
	struct daemon *daemon = client->daemon;
	if (!plaintext_allowed(client)) {
		daemon->metrics.logins_refused++;
		client_send(client, REPLY_PLAINTEXT_DISALLOWED);
		return;
	}
	if (client->route == NULL)
		client->route = malloc(sizeof(*client->route));
	switch (login_route(daemon, "sieve", &client->id, user, client->route)) {
	case LOGIN_ROUTE_OK:
		break;
	case LOGIN_ROUTE_BAD_USER:
		client_send(client, "NO \"Authentication failed.\"\r\n");
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
		.dialogue = &sieve_dialogue,
		.backend_port = daemon->set->backend_port_sieve,
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

/* The PLAIN response, from AUTHENTICATE's argument or the string line
 * after our "" challenge. */
static void auth_plain_response(struct sieve_client *client, const char *b64, size_t len)
{
	char buf[SASL_PLAIN_BUF_SIZE];
	const char *authzid, *authcid, *passwd, *error;
	if (len == 1 && b64[0] == '*') {
		client_send(client, "NO \"Authentication aborted by client.\"\r\n");
		return;
	}
	if (sasl_plain_decode(b64, len, buf, sizeof(buf), &authzid, &authcid, &passwd, &error) <
	    0) {
		char text[160];
		client->daemon->metrics.logins_refused++;
		snprintf(text, sizeof(text), "Authentication failed: %s.", error);
		send_no(client, text);
		auth_failed(client);
		return;
	}
	client_login(client, authcid, passwd);
	explicit_bzero(buf, sizeof(buf));
}

/* Returns false: new input comes from the TLS layer (or the client is gone). */
static bool cmd_starttls(struct sieve_client *client)
{
	struct daemon *daemon = client->daemon;
	if (stream_is_tls(client->stream)) {
		client_send(client, "NO \"TLS is already active.\"\r\n");
		return true;
	}
	if (daemon->ssl_ctx == NULL) {
		client_send(client, "NO \"TLS support isn't enabled.\"\r\n");
		return true;
	}
	const char *error;
	if (stream_starttls(client->stream, daemon->ssl_ctx,
			    "OK \"Begin TLS negotiation now.\"\r\n", &error) < 0) {
		client_destroy(client, error);
		return false;
	}
	client->secured = true;
	sieve_parser_reset(client->parser);
	/* queued now, sent by the TLS layer once the handshake is done */
	send_capabilities(client, "TLS negotiation successful.");
	return false;
}

static bool cmd_authenticate(struct sieve_client *client, const struct sieve_command *cmd)
{
	if (cmd->arg_count < 1 || cmd->arg_count > 2 ||
	    (cmd->arg_count == 2 && cmd->args[1].type != SIEVE_ARG_STRING))
		return bad_command(client, "Error in AUTHENTICATE: expected a mechanism and an "
					   "optional initial response.");
	if (strcasecmp(cmd->args[0].str, "PLAIN") != 0) {
		client_send(client, "NO \"Unsupported authentication mechanism.\"\r\n");
		return true;
	}
	if (!plaintext_allowed(client)) {
		client->daemon->metrics.logins_refused++;
		client_send(client, REPLY_PLAINTEXT_DISALLOWED);
		return true;
	}
	if (cmd->arg_count == 2) {
		auth_plain_response(client, cmd->args[1].str, cmd->args[1].len);
		return client->state == STATE_PRELOGIN;
	}
	client->state = STATE_AUTH_RESPONSE;
	sieve_parser_expect_string_line(client->parser);
	client_send(client, "\"\"\r\n"); /* the empty challenge */
	return true;
}

static bool command_needs_login(const char *name)
{
	static const char *const names[] = {
		"PUTSCRIPT",    "LISTSCRIPTS", "SETACTIVE", "GETSCRIPT",      "DELETESCRIPT",
		"RENAMESCRIPT", "CHECKSCRIPT", "HAVESPACE", "UNAUTHENTICATE",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i]) == 0)
			return true;
	}
	return false;
}

/* Returns false if the client was destroyed or must stop reading. */
static bool handle_command(struct sieve_client *client, const struct sieve_command *cmd)
{
	const char *name = cmd->name;
	if (strcasecmp(name, "CAPABILITY") == 0) {
		send_capabilities(client, "Capability completed.");
	} else if (strcasecmp(name, "NOOP") == 0) {
		if (cmd->arg_count == 1 && cmd->args[0].type == SIEVE_ARG_STRING) {
			/* RFC 5804 section 2.14: the string comes back as a TAG */
			client_send(client, "OK (TAG ");
			send_string(client, cmd->args[0].str, cmd->args[0].len);
			client_send(client, ") \"Done\"\r\n");
		} else if (cmd->arg_count == 0) {
			client_send(client, "OK \"NOOP completed.\"\r\n");
		} else {
			return bad_command(client, "Error in NOOP: expected an optional string.");
		}
	} else if (strcasecmp(name, "LOGOUT") == 0) {
		client_close_after(client, "OK \"Logout completed.\"\r\n",
				   "logged out before login");
		return false;
	} else if (strcasecmp(name, "STARTTLS") == 0) {
		return cmd_starttls(client);
	} else if (strcasecmp(name, "AUTHENTICATE") == 0) {
		return cmd_authenticate(client, cmd);
	} else if (command_needs_login(name)) {
		return bad_command(client, "Command not allowed before login.");
	} else {
		return bad_command(client, "Unknown command.");
	}
	return true;
}

/* The string line after our "" challenge. */
static bool handle_auth_response(struct sieve_client *client, const struct sieve_command *cmd)
{
	client->state = STATE_PRELOGIN;
	auth_plain_response(client, cmd->args[0].str, cmd->args[0].len);
	return client->state == STATE_PRELOGIN;
}

static void client_input(void *context)
{
	struct sieve_client *client = context;
	struct daemon *daemon = client->daemon;
	for (;;) {
		if (client->state != STATE_PRELOGIN && client->state != STATE_AUTH_RESPONSE)
			return;
		size_t len;
		const char *data = stream_input(client->stream, &len);
		if (len == 0)
			return;
		struct sieve_command cmd;
		size_t consumed = 0;
		const char *error = NULL;
		bool go_on;
		switch (sieve_parser_parse(client->parser, data, len, &cmd, &consumed, &error)) {
		case SIEVE_PARSE_MORE:
			return;
		case SIEVE_PARSE_TOO_LONG:
			daemon->metrics.prelogin_too_long++;
			client_close_after(client, "BYE \"Line too long.\"\r\n",
					   client->state == STATE_AUTH_RESPONSE
						   ? "SASL response too long"
						   : "pre-login command too long");
			return;
		case SIEVE_PARSE_ERROR: {
			stream_consume(client->stream, consumed);
			char text[200];
			if (client->state == STATE_AUTH_RESPONSE) {
				client->state = STATE_PRELOGIN;
				snprintf(text, sizeof(text), "Invalid SASL response: %s.",
					 error != NULL ? error : "syntax error");
			} else {
				snprintf(text, sizeof(text), "Error in MANAGESIEVE command: %s.",
					 error != NULL ? error : "syntax error");
			}
			go_on = bad_command(client, text);
			break;
		}
		case SIEVE_PARSE_COMMAND:
			/* the command's strings live in the parser's scratch,
			 * so the input can go before the command is handled:
			 * what remains is what the client pipelined after it */
			stream_consume(client->stream, consumed);
			if (client->state == STATE_AUTH_RESPONSE)
				go_on = handle_auth_response(client, &cmd);
			else
				go_on = handle_command(client, &cmd);
			break;
		default:
			return;
		}
		if (!go_on)
			return;
	}
}

void sieve_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			 const struct sockaddr *local, bool implicit_tls)
{
	struct sieve_client *client = calloc(1, sizeof(*client));
	client->daemon = daemon;
	daemon->client_count++;
	client_ident_init(&client->id, daemon, fd, remote, local);
	client->secured = implicit_tls || client->id.loopback;
	client->parser = sieve_parser_create(daemon->set->prelogin_line_max);
	client->stream =
		stream_create(daemon->base, fd, implicit_tls ? daemon->ssl_ctx : NULL,
			      daemon->set->prelogin_line_max, daemon->set->prelogin_timeout_ms,
			      &client_stream_callbacks, client);
	log_debug("event=connect protocol=sieve client=%s:%u session=%s tls=%s",
		  client->id.client_ip, client->id.client_port, client->id.session_id,
		  implicit_tls ? "yes" : "no");
	send_capabilities(client, "mailcluster ready.");
}
