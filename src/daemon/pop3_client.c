/* pop3_client.c - see pop3_client.h.
 *
 * The lifecycle (states, closing, the login) is login_client.h's; here are
 * the POP3 commands and replies.  PRELOGIN reads command lines
 * (pop3_command.h); AUTH_RESPONSE waits for the client's line after "+ "
 * (AUTH PLAIN without an initial response).  What the client pipelines
 * during the login goes to the backend once it succeeds: that is what
 * makes PIPELINING true (USER, PASS, STAT, LIST in one write work).
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
#include "daemon/login_client.h"
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

struct pop3_client {
	struct login_client base;
	char *user; /* from USER, until PASS */
};

/* ---- helpers ---- */

#define client_send(client, text) login_client_send(&(client)->base, text)
#define client_sendf(client, ...) stream_printf((client)->base.stream, __VA_ARGS__)

static void forget_user(struct pop3_client *client)
{
	free(client->user);
	client->user = NULL;
}

/* The lifecycle's replies.  POP3 has no unsolicited responses, so the
 * last straw of failed logins closes without another line. */
static void pop3_reply(struct login_client *base, enum login_client_reply reply, const char *tag,
		       const char *detail)
{
	switch (reply) {
	case LOGIN_REPLY_TIMEOUT:
		login_client_send(base, "-ERR Disconnected for inactivity.\r\n");
		break;
	case LOGIN_REPLY_TOO_MANY_AUTH_FAILURES:
		break;
	case LOGIN_REPLY_PLAINTEXT_DISALLOWED:
		login_client_send(base, "-ERR [AUTH] Plaintext authentication disallowed on "
					"non-secure (SSL/TLS) connections.\r\n");
		break;
	case LOGIN_REPLY_AUTH_FAILED:
		login_client_send(base, "-ERR [AUTH] Authentication failed.\r\n");
		break;
	case LOGIN_REPLY_TEMPFAIL:
		login_client_send(base, "-ERR [SYS/TEMP] Account is temporarily unavailable.\r\n");
		break;
	case LOGIN_REPLY_AUTH_CANCELLED:
		login_client_send(base, "-ERR Authentication aborted by client.\r\n");
		break;
	case LOGIN_REPLY_AUTH_INVALID:
		stream_printf(base->stream, "-ERR [AUTH] Authentication failed: %s.\r\n", detail);
		break;
	}
}

/* Returns false if the client is closing. */
static bool bad_command(struct pop3_client *client, const char *reply)
{
	client->base.daemon->metrics.prelogin_bad_commands++;
	if (++client->base.bad_commands >= client->base.daemon->set->bad_commands_max) {
		login_client_close_after(&client->base, "-ERR Too many invalid commands.\r\n",
					 "too many invalid commands");
		return false;
	}
	client_send(client, reply);
	return true;
}

/* ---- the backend dialogue ---- */

enum pop3_dialogue_state { POP3_DIALOGUE_GREETING, POP3_DIALOGUE_XCLIENT, POP3_DIALOGUE_LOGIN };

static void pop3_send_auth(struct login_proxy *lp)
{
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp, "AUTH PLAIN %s\r\n", ir);
	explicit_bzero(ir, sizeof(ir));
}

static void pop3_backend_connected(struct login_proxy *lp)
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
			  "AUTH PLAIN %s\r\n",
			  req->ident.client_ip, req->ident.client_port, req->ident.session_id,
			  client_ident_ttl(&req->ident), ir);
	explicit_bzero(ir, sizeof(ir));
}

static void pop3_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	unsigned *state = login_proxy_state(lp);
	char reason[400];
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
		*state = POP3_DIALOGUE_LOGIN;
		if (login_proxy_forwarding(lp)) {
			if (strncmp(line, "+OK", 3) != 0) {
				snprintf(
					reason, sizeof(reason),
					"the load balancer %s did not take our forwarding (XCLIENT "
					"HOPS): is this host in the other site's "
					"login_trusted_networks? It said: %.200s",
					login_proxy_target(lp), line);
				login_proxy_unavailable(lp, reason);
				return;
			}
			pop3_send_auth(lp);
			return;
		}
		if (strncmp(line, "+OK", 3) != 0)
			log_warning(
				"event=forward_refused protocol=pop3 user=%s backend=%s "
				"client=%s:%u session=%s reason=\"backend refused XCLIENT, so it "
				"sees the proxy as the client (is the proxy in its "
				"login_trusted_networks?): %.200s\"",
				req->route->username, req->route->backend.name,
				req->ident.client_ip, req->ident.client_port, req->ident.session_id,
				line);
		return;
	}
	if (strncmp(line, "+OK", 3) == 0) {
		login_proxy_success(lp, line, len);
	} else if (strncmp(line, "-ERR", 4) == 0) {
		if (!login_proxy_far_tempfail(lp, line, "[SYS/TEMP]"))
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

/* ---- pre-login commands ---- */

static void cmd_capa(struct pop3_client *client)
{
	bool plaintext = login_client_plaintext_allowed(&client->base);
	client_sendf(client,
		     "+OK\r\nCAPA\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n%s%s%s\r\n.\r\n",
		     login_client_starttls_available(&client->base) ? "STLS\r\n" : "",
		     plaintext ? "USER\r\n" : "", plaintext ? "SASL PLAIN" : "SASL");
}

/* Returns false: new input comes from the TLS layer (or the client is gone). */
static bool cmd_stls(struct pop3_client *client)
{
	struct daemon *daemon = client->base.daemon;
	if (stream_is_tls(client->base.stream)) {
		client_send(client, "-ERR TLS is already active.\r\n");
		return true;
	}
	if (daemon->ssl_ctx == NULL) {
		client_send(client, "-ERR TLS support isn't enabled.\r\n");
		return true;
	}
	forget_user(client); /* RFC 2595 section 4: start again */
	const char *error;
	if (stream_starttls(client->base.stream, daemon->ssl_ctx,
			    "+OK Begin TLS negotiation now.\r\n", &error) < 0) {
		login_client_destroy(&client->base, error);
		return false;
	}
	client->base.secured = true;
	return false;
}

static bool cmd_auth(struct pop3_client *client, const struct pop3_command *cmd)
{
	if (cmd->arg_count == 0) {
		/* the mechanism list (RFC 1734's AUTH without arguments) */
		client_sendf(client, "+OK\r\n%s.\r\n",
			     login_client_plaintext_allowed(&client->base) ? "PLAIN\r\n" : "");
		return true;
	}
	if (strcasecmp(cmd->args[0], "PLAIN") != 0) {
		client_send(client, "-ERR [AUTH] Unsupported authentication mechanism.\r\n");
		return true;
	}
	if (!login_client_plaintext_allowed(&client->base)) {
		client->base.daemon->metrics.logins_refused++;
		pop3_reply(&client->base, LOGIN_REPLY_PLAINTEXT_DISALLOWED, NULL, NULL);
		return true;
	}
	if (cmd->arg_count == 2) {
		const char *ir = cmd->args[1];
		/* "=" is an empty initial response (RFC 5034 section 4) */
		login_client_plain_response(&client->base, NULL, ir,
					    strcmp(ir, "=") == 0 ? 0 : strlen(ir));
		return client->base.state == LOGIN_CLIENT_PRELOGIN;
	}
	client->base.state = LOGIN_CLIENT_AUTH_RESPONSE;
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
		login_client_close_after(&client->base, "+OK Logging out.\r\n",
					 "logged out before login");
		return false;
	} else if (strcmp(keyword, "USER") == 0) {
		if (!login_client_plaintext_allowed(&client->base)) {
			client->base.daemon->metrics.logins_refused++;
			pop3_reply(&client->base, LOGIN_REPLY_PLAINTEXT_DISALLOWED, NULL, NULL);
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
			client->base.daemon->metrics.logins_refused++;
			client_send(client,
				    "-ERR [AUTH] Authentication failed: empty password.\r\n");
			login_client_auth_failed(&client->base);
		} else {
			login_client_login(&client->base, NULL, user, cmd->args[0]);
		}
		free(user);
		return client->base.state == LOGIN_CLIENT_PRELOGIN;
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

/* XCLIENT from a peer in login_trusted_networks (another proxy, another
 * site's daemon): who the client is, and how many sites forwarded it. */
static bool cmd_xclient(struct pop3_client *client, const char *args)
{
	struct client_ident *ident = &client->base.id;
	if (client_ident_xclient_refused(ident, "pop3"))
		return bad_command(client, "-ERR You aren't allowed to use XCLIENT.\r\n");
	if (ident->forwarded)
		return bad_command(client, "-ERR XCLIENT was given already.\r\n");
	struct client_ident copy = *ident;
	const char *error;
	if (client_ident_xclient(&copy, args, &error) < 0) {
		char reply[300];
		snprintf(reply, sizeof(reply), "-ERR Invalid XCLIENT: %s.\r\n", error);
		return bad_command(client, reply);
	}
	*ident = copy;
	client_ident_forward_log(ident, "pop3");
	client_send(client, "+OK Updated\r\n");
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
	client->base.daemon->metrics.prelogin_too_long++;
	login_client_close_after(&client->base, "-ERR Line too long.\r\n", reason);
}

/* The line after "+ " in AUTH PLAIN. */
static bool handle_auth_response(struct pop3_client *client, const char *data, size_t len)
{
	size_t max = client->base.daemon->set->prelogin_line_max, consumed;
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
	stream_consume(client->base.stream, consumed);
	client->base.state = LOGIN_CLIENT_PRELOGIN;
	login_client_plain_response(&client->base, NULL, line, (size_t)line_len);
	explicit_bzero(line, (size_t)line_len);
	free(line);
	return client->base.state == LOGIN_CLIENT_PRELOGIN;
}

static void pop3_input(struct login_client *base)
{
	struct pop3_client *client = (struct pop3_client *)base;
	size_t max = client->base.daemon->set->prelogin_line_max;
	if (max > POP3_LINE_MAX)
		max = POP3_LINE_MAX;
	for (;;) {
		if (client->base.state != LOGIN_CLIENT_PRELOGIN &&
		    client->base.state != LOGIN_CLIENT_AUTH_RESPONSE)
			return;
		size_t len, consumed;
		const char *data = stream_input(client->base.stream, &len);
		if (len == 0)
			return;
		if (client->base.state == LOGIN_CLIENT_AUTH_RESPONSE) {
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
		if (line_len > 8 && strncasecmp(data, "XCLIENT ", 8) == 0) {
			/* more arguments than a POP3 command has: read here */
			char xclient[POP3_LINE_MAX + 1];
			snprintf(xclient, sizeof(xclient), "%.*s", (int)line_len - 8, data + 8);
			stream_consume(client->base.stream, consumed);
			if (!cmd_xclient(client, xclient))
				return;
			continue;
		}
		char buf[POP3_COMMAND_BUF_SIZE];
		struct pop3_command cmd;
		const char *error;
		int ret =
			pop3_command_parse(data, (size_t)line_len, buf, sizeof(buf), &cmd, &error);
		/* the command lives in buf: what remains is what the client
		 * pipelined after it */
		stream_consume(client->base.stream, consumed);
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

static void pop3_free(struct login_client *base)
{
	forget_user((struct pop3_client *)base);
}

static int pop3_backend_port(const struct settings *set)
{
	return set->backend_port_pop3;
}

static const struct login_client_protocol pop3_protocol = {
	.name = "pop3",
	.dialogue = &pop3_dialogue,
	.backend_port = pop3_backend_port,
	.reply = pop3_reply,
	.input = pop3_input,
	.free = pop3_free,
};

void pop3_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls)
{
	struct pop3_client *client = calloc(1, sizeof(*client));
	login_client_init(&client->base, &pop3_protocol, daemon, fd, remote, local, implicit_tls);
	client_send(client, "+OK mailcluster ready.\r\n");
}
