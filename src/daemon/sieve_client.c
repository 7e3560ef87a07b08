/* sieve_client.c - see sieve_client.h.
 *
 * The lifecycle (states, closing, the login) is login_client.h's; here are
 * the ManageSieve commands and replies.  PRELOGIN parses commands
 * (sieve_parser.h); AUTH_RESPONSE waits for the client's string line after
 * our empty challenge "" (AUTHENTICATE "PLAIN" without an initial
 * response, RFC 5804 section 2.1).
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
#include "daemon/login_client.h"
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

/* NOOP echoes its tag quoted up to this length, else as a literal */
#define QUOTED_MAX 1024

struct sieve_client {
	struct login_client base;
	struct sieve_parser *parser;
};

/* ---- helpers ---- */

#define client_send(client, text) login_client_send(&(client)->base, text)
#define client_sendf(client, ...) stream_printf((client)->base.stream, __VA_ARGS__)

/* Writes s as a ManageSieve string: quoted (with \" and \\ escaped) when
 * it can be, else as a literal. */
static void send_string(struct sieve_client *client, const char *s, size_t len)
{
	bool quotable = len <= QUOTED_MAX;
	for (size_t i = 0; i < len && quotable; i++)
		quotable = s[i] != '\r' && s[i] != '\n' && s[i] != '\0';
	if (!quotable) {
		client_sendf(client, "{%zu}\r\n", len);
		stream_write(client->base.stream, s, len);
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
	stream_write(client->base.stream, buf, (size_t)(p - buf));
}

/* NO "<text>", with text quoted (parser errors are our own sentences,
 * but quote them properly anyway). */
static void send_no(struct sieve_client *client, const char *text)
{
	client_send(client, "NO ");
	send_string(client, text, strlen(text));
	client_send(client, "\r\n");
}

/* The lifecycle's replies. */
static void sieve_reply(struct login_client *base, enum login_client_reply reply, const char *tag,
			const char *detail)
{
	switch (reply) {
	case LOGIN_REPLY_TIMEOUT:
		login_client_send(base, "BYE \"Disconnected for inactivity.\"\r\n");
		break;
	case LOGIN_REPLY_TOO_MANY_AUTH_FAILURES:
		login_client_send(base, "BYE \"Too many invalid authentication attempts.\"\r\n");
		break;
	case LOGIN_REPLY_PLAINTEXT_DISALLOWED:
		login_client_send(base, "NO (ENCRYPT-NEEDED) \"Plaintext authentication disallowed "
					"on non-secure (SSL/TLS) connections.\"\r\n");
		break;
	case LOGIN_REPLY_AUTH_FAILED:
		login_client_send(base, "NO \"Authentication failed.\"\r\n");
		break;
	case LOGIN_REPLY_TEMPFAIL:
		login_client_send(base,
				  "NO (TRYLATER) \"Account is temporarily unavailable.\"\r\n");
		break;
	case LOGIN_REPLY_AUTH_CANCELLED:
		login_client_send(base, "NO \"Authentication aborted by client.\"\r\n");
		break;
	case LOGIN_REPLY_AUTH_INVALID: {
		char text[160];
		snprintf(text, sizeof(text), "Authentication failed: %s.", detail);
		send_no((struct sieve_client *)base, text);
		break;
	}
	}
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
		     login_client_plaintext_allowed(&client->base) ? "PLAIN" : "",
		     login_client_starttls_available(&client->base) ? "\"STARTTLS\"\r\n" : "",
		     ok_text);
}

/* Returns false if the client is closing. */
static bool bad_command(struct sieve_client *client, const char *text)
{
	client->base.daemon->metrics.prelogin_bad_commands++;
	if (++client->base.bad_commands >= client->base.daemon->set->bad_commands_max) {
		login_client_close_after(&client->base, "BYE \"Too many invalid commands.\"\r\n",
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

static void sieve_send_auth(struct login_proxy *lp)
{
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp, "AUTHENTICATE \"PLAIN\" \"%s\"\r\n", ir);
	explicit_bzero(ir, sizeof(ir));
}

static void sieve_backend_connected(struct login_proxy *lp)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	if (login_proxy_forwarding(lp)) {
		/* to another site's load balancer: marked, and the login waits
		 * until the far side has taken the mark */
		char session[3 * sizeof(req->ident.session_id)];
		login_xtext(req->ident.session_id, session, sizeof(session));
		login_proxy_sendf(lp, "XCLIENT ADDR=%s PORT=%u SESSION=%s TTL=%u HOPS=%u\r\n",
				  req->ident.client_ip, req->ident.client_port, session,
				  client_ident_ttl(&req->ident), login_proxy_hops(lp));
		return;
	}
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp,
			  "XCLIENT ADDR=%s PORT=%u SESSION=%s TTL=%u\r\n"
			  "AUTHENTICATE \"PLAIN\" \"%s\"\r\n",
			  req->ident.client_ip, req->ident.client_port, req->ident.session_id,
			  client_ident_ttl(&req->ident), ir);
	explicit_bzero(ir, sizeof(ir));
}

static void sieve_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	unsigned *state = login_proxy_state(lp);
	char reason[400];
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
		*state = (*state & ~0xffu) | SIEVE_DIALOGUE_LOGIN;
		if (login_proxy_forwarding(lp)) {
			if (!response_is(line, "OK")) {
				snprintf(
					reason, sizeof(reason),
					"the load balancer %s did not take our forwarding (XCLIENT "
					"HOPS): is this host in the other site's "
					"login_trusted_networks? It said: %.200s",
					login_proxy_target(lp), line);
				login_proxy_unavailable(lp, reason);
				return;
			}
			sieve_send_auth(lp);
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
		} else if (!login_proxy_far_tempfail(lp, line, "(TRYLATER)")) {
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

/* ---- pre-login commands ---- */

/* Returns false: new input comes from the TLS layer (or the client is gone). */
static bool cmd_starttls(struct sieve_client *client)
{
	struct daemon *daemon = client->base.daemon;
	if (stream_is_tls(client->base.stream)) {
		client_send(client, "NO \"TLS is already active.\"\r\n");
		return true;
	}
	if (daemon->ssl_ctx == NULL) {
		client_send(client, "NO \"TLS support isn't enabled.\"\r\n");
		return true;
	}
	const char *error;
	if (stream_starttls(client->base.stream, daemon->ssl_ctx,
			    "OK \"Begin TLS negotiation now.\"\r\n", &error) < 0) {
		login_client_destroy(&client->base, error);
		return false;
	}
	client->base.secured = true;
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
	if (!login_client_plaintext_allowed(&client->base)) {
		client->base.daemon->metrics.logins_refused++;
		sieve_reply(&client->base, LOGIN_REPLY_PLAINTEXT_DISALLOWED, NULL, NULL);
		return true;
	}
	if (cmd->arg_count == 2) {
		login_client_plain_response(&client->base, NULL, cmd->args[1].str,
					    cmd->args[1].len);
		return client->base.state == LOGIN_CLIENT_PRELOGIN;
	}
	client->base.state = LOGIN_CLIENT_AUTH_RESPONSE;
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

/* XCLIENT ADDR=... PORT=... SESSION=... TTL=... HOPS=... from a peer in
 * login_trusted_networks (another proxy, another site's daemon). */
static bool cmd_xclient(struct sieve_client *client, const struct sieve_command *cmd)
{
	struct client_ident *ident = &client->base.id;
	if (client_ident_xclient_refused(ident, "sieve"))
		return bad_command(client, "You aren't allowed to use XCLIENT.");
	if (ident->forwarded)
		return bad_command(client, "XCLIENT was given already.");
	char args[600];
	size_t n = 0;
	args[0] = '\0';
	for (unsigned i = 0; i < cmd->arg_count; i++)
		n += (size_t)snprintf(args + n, n < sizeof(args) ? sizeof(args) - n : 0, "%s%s",
				      i > 0 ? " " : "", cmd->args[i].str);
	struct client_ident copy = *ident;
	const char *error;
	if (n >= sizeof(args) || client_ident_xclient(&copy, args, &error) < 0) {
		char text[300];
		snprintf(text, sizeof(text), "Invalid XCLIENT: %s.",
			 n >= sizeof(args) ? "too long" : error);
		return bad_command(client, text);
	}
	*ident = copy;
	client_ident_forward_log(ident, "sieve");
	client_send(client, "OK \"Updated\"\r\n");
	return true;
}

/* Returns false if the client was destroyed or must stop reading. */
static bool handle_command(struct sieve_client *client, const struct sieve_command *cmd)
{
	const char *name = cmd->name;
	if (strcasecmp(name, "XCLIENT") == 0) {
		return cmd_xclient(client, cmd);
	} else if (strcasecmp(name, "CAPABILITY") == 0) {
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
		login_client_close_after(&client->base, "OK \"Logout completed.\"\r\n",
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
	client->base.state = LOGIN_CLIENT_PRELOGIN;
	login_client_plain_response(&client->base, NULL, cmd->args[0].str, cmd->args[0].len);
	return client->base.state == LOGIN_CLIENT_PRELOGIN;
}

static void sieve_input(struct login_client *base)
{
	struct sieve_client *client = (struct sieve_client *)base;
	struct daemon *daemon = client->base.daemon;
	for (;;) {
		if (client->base.state != LOGIN_CLIENT_PRELOGIN &&
		    client->base.state != LOGIN_CLIENT_AUTH_RESPONSE)
			return;
		size_t len;
		const char *data = stream_input(client->base.stream, &len);
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
			login_client_close_after(&client->base, "BYE \"Line too long.\"\r\n",
						 client->base.state == LOGIN_CLIENT_AUTH_RESPONSE
							 ? "SASL response too long"
							 : "pre-login command too long");
			return;
		case SIEVE_PARSE_ERROR: {
			stream_consume(client->base.stream, consumed);
			char text[200];
			if (client->base.state == LOGIN_CLIENT_AUTH_RESPONSE) {
				client->base.state = LOGIN_CLIENT_PRELOGIN;
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
			stream_consume(client->base.stream, consumed);
			if (client->base.state == LOGIN_CLIENT_AUTH_RESPONSE)
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

static void sieve_free(struct login_client *base)
{
	sieve_parser_destroy(&((struct sieve_client *)base)->parser);
}

static int sieve_backend_port(const struct settings *set)
{
	return set->backend_port_sieve;
}

static const struct login_client_protocol sieve_protocol = {
	.name = "sieve",
	.dialogue = &sieve_dialogue,
	.backend_port = sieve_backend_port,
	.reply = sieve_reply,
	.input = sieve_input,
	.free = sieve_free,
};

void sieve_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			 const struct sockaddr *local, bool implicit_tls)
{
	struct sieve_client *client = calloc(1, sizeof(*client));
	client->parser = sieve_parser_create(daemon->set->prelogin_line_max);
	login_client_init(&client->base, &sieve_protocol, daemon, fd, remote, local, implicit_tls);
	send_capabilities(client, "mailcluster ready.");
}
