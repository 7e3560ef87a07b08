/* imap_client.c - see imap_client.h.
 *
 * The lifecycle (states, closing, the login) is login_client.h's; here are
 * the IMAP commands and replies.  PRELOGIN parses commands (imap_parser.h);
 * AUTH_RESPONSE waits for the client's line after "+ " (AUTHENTICATE
 * without an initial response).
 *
 * The backend dialogue is pipelined: as soon as the TCP connection is up we
 * send "ID (...)" and "TAG AUTHENTICATE PLAIN <ir>" in one write, and then
 * read the greeting, the ID reply and the login reply in that order.  The
 * login is sent with the client's own tag, so the backend's tagged answer
 * (with its CAPABILITY code) goes to the client as it is.
 */
#include "daemon/imap_client.h"

#include "daemon/daemon.h"
#include "daemon/login_client.h"
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

struct imap_client {
	struct login_client base;
	struct imap_parser *parser;
	char *tag; /* of the AUTHENTICATE waiting for its response */
};

#define client_send(client, text) login_client_send(&(client)->base, text)
#define client_sendf(client, ...) stream_printf((client)->base.stream, __VA_ARGS__)

static void capability_string(struct imap_client *client, char *dst, size_t size)
{
	snprintf(dst, size, "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+%s%s",
		 login_client_starttls_available(&client->base) ? " STARTTLS" : "",
		 login_client_plaintext_allowed(&client->base) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

/* ---- the backend dialogue ---- */

enum imap_dialogue_state { IMAP_DIALOGUE_GREETING, IMAP_DIALOGUE_ID, IMAP_DIALOGUE_LOGIN };
/* or'ed into the state: the far side echoed x-mailcluster-hops in its ID
 * reply (another site's daemon took our forwarding) */
#define IMAP_DIALOGUE_HOPS_ACCEPTED 0x100u
#define IMAP_DIALOGUE_STATE_MASK 0xffu

static void imap_send_login(struct login_proxy *lp)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp, "%s AUTHENTICATE PLAIN %s\r\n", req->tag, ir);
	explicit_bzero(ir, sizeof(ir));
}

static void imap_backend_connected(struct login_proxy *lp)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	if (login_proxy_forwarding(lp)) {
		/* to another site's load balancer: the session is marked, and
		 * the login waits until the far side has taken the mark.  Seven
		 * pairs at most: our own parser takes 16 tokens. */
		login_proxy_sendf(
			lp,
			"MC ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
			"\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
			"\"x-session-id\" \"%s\" \"x-proxy-ttl\" \"%u\" "
			"\"x-mailcluster-hops\" \"%u\")\r\n",
			req->ident.client_ip, req->ident.client_port, req->ident.local_ip,
			req->ident.local_port, req->ident.session_id, client_ident_ttl(&req->ident),
			login_proxy_hops(lp));
		return;
	}
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
			  req->ident.local_port, req->ident.session_id,
			  client_ident_ttl(&req->ident), req->tag, ir);
	explicit_bzero(ir, sizeof(ir));
}

static void imap_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	unsigned *state = login_proxy_state(lp);
	const char *tag = login_proxy_request(lp)->tag;
	char reason[400];
	switch (*state & IMAP_DIALOGUE_STATE_MASK) {
	case IMAP_DIALOGUE_GREETING:
		if (strncmp(line, "* OK", 4) != 0) {
			snprintf(reason, sizeof(reason), "backend greeting was not OK: %.200s",
				 line);
			login_proxy_retry(lp, reason);
			return;
		}
		*state = (*state & ~IMAP_DIALOGUE_STATE_MASK) | IMAP_DIALOGUE_ID;
		return;
	case IMAP_DIALOGUE_ID:
		if (line[0] == '*') {
			if (strstr(line, "\"x-mailcluster-hops\"") != NULL)
				*state |= IMAP_DIALOGUE_HOPS_ACCEPTED;
			return;
		}
		*state = (*state & ~IMAP_DIALOGUE_STATE_MASK) | IMAP_DIALOGUE_LOGIN;
		if (!login_proxy_forwarding(lp))
			return;
		if ((*state & IMAP_DIALOGUE_HOPS_ACCEPTED) == 0) {
			snprintf(reason, sizeof(reason),
				 "the load balancer %s did not take our forwarding "
				 "(x-mailcluster-hops): is this host in the other site's "
				 "login_trusted_networks?",
				 login_proxy_target(lp));
			login_proxy_unavailable(lp, reason);
			return;
		}
		imap_send_login(lp);
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
	else if (!login_proxy_far_tempfail(lp, line, "[UNAVAILABLE]"))
		login_proxy_failure(lp, line, len); /* NO or BAD: the backend's answer */
}

static const struct login_proxy_dialogue imap_dialogue = {
	.protocol = "imap",
	.connected = imap_backend_connected,
	.line = imap_backend_line,
};

static void imap_reply(struct login_client *base, enum login_client_reply reply, const char *tag,
		       const char *detail)
{
	switch (reply) {
	case LOGIN_REPLY_TIMEOUT:
		login_client_send(base, "* BYE Disconnected for inactivity.\r\n");
		break;
	case LOGIN_REPLY_TOO_MANY_AUTH_FAILURES:
		login_client_send(base, "* BYE Too many invalid authentication attempts.\r\n");
		break;
	case LOGIN_REPLY_PLAINTEXT_DISALLOWED:
		stream_printf(base->stream,
			      "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed on "
			      "non-secure (SSL/TLS) connections.\r\n",
			      tag);
		break;
	case LOGIN_REPLY_AUTH_FAILED:
		stream_printf(base->stream,
			      "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
		break;
	case LOGIN_REPLY_TEMPFAIL:
		stream_printf(base->stream,
			      "%s NO [UNAVAILABLE] Account is temporarily unavailable.\r\n", tag);
		break;
	case LOGIN_REPLY_AUTH_CANCELLED:
		stream_printf(base->stream, "%s BAD Authentication aborted by client.\r\n", tag);
		break;
	case LOGIN_REPLY_AUTH_INVALID:
		stream_printf(base->stream,
			      "%s NO [AUTHENTICATIONFAILED] Authentication failed: %s.\r\n", tag,
			      detail);
		break;
	}
}

/* ---- pre-login commands ---- */

static bool arg_is_string(const struct imap_arg *arg)
{
	return arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_STRING;
}

/* Dovecot's ID forwarding fields (and ours), by client_ident_forward()'s
 * names. */
static const struct {
	const char *id_field, *name;
} id_forward_fields[] = {
	{"x-originating-ip", "addr"},   {"x-originating-port", "port"},
	{"x-connected-ip", "destaddr"}, {"x-connected-port", "destport"},
	{"x-session-id", "session"},    {"x-proxy-ttl", "ttl"},
	{"x-mailcluster-hops", "hops"},
};

/* ID: from a peer in login_trusted_networks (another proxy, another
 * site's daemon) the forwarding fields say who the client is; the reply
 * then echoes x-mailcluster-hops, which is how the forwarding daemon knows
 * its mark was taken. */
static void cmd_id(struct imap_client *client, const struct imap_command *cmd)
{
	struct client_ident *ident = &client->base.id;
	bool has_list = cmd->arg_count >= 2 && cmd->args[0].type == IMAP_ARG_LIST_START;
	if (has_list && !ident->forwarded) {
		struct client_ident copy = *ident;
		const char *error = NULL;
		bool hops_given = false;
		for (unsigned i = 1; i + 1 < cmd->arg_count && error == NULL; i += 2) {
			if (!arg_is_string(&cmd->args[i]) || !arg_is_string(&cmd->args[i + 1]))
				continue;
			for (size_t f = 0;
			     f < sizeof(id_forward_fields) / sizeof(id_forward_fields[0]); f++) {
				if (strcasecmp(cmd->args[i].str, id_forward_fields[f].id_field) !=
				    0)
					continue;
				if (strcmp(id_forward_fields[f].name, "hops") == 0)
					hops_given = true;
				if (ident->trusted)
					client_ident_forward(&copy, id_forward_fields[f].name,
							     cmd->args[i + 1].str, &error);
			}
		}
		if (!ident->trusted && hops_given) {
			log_warning("event=forward_refused protocol=imap peer=%s:%u session=%s "
				    "reason=\"x-mailcluster-hops from a peer not in "
				    "login_trusted_networks: ignored\"",
				    ident->client_ip, ident->client_port, ident->session_id);
		} else if (error != NULL) {
			log_warning("event=forward_refused protocol=imap peer=%s:%u session=%s "
				    "reason=\"%s\"",
				    ident->client_ip, ident->client_port, ident->session_id, error);
		} else if (copy.forwarded) {
			*ident = copy;
			client_ident_forward_log(ident, "imap");
		}
	}
	if (ident->forwarded)
		client_sendf(client,
			     "* ID (\"name\" \"mailcluster\" \"x-mailcluster-hops\" \"%u\")\r\n"
			     "%s OK ID completed.\r\n",
			     ident->hops, cmd->tag);
	else
		client_sendf(client, "* ID (\"name\" \"mailcluster\")\r\n%s OK ID completed.\r\n",
			     cmd->tag);
}

static bool cmd_starttls(struct imap_client *client, const char *tag)
{
	struct daemon *daemon = client->base.daemon;
	if (stream_is_tls(client->base.stream)) {
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
	if (stream_starttls(client->base.stream, daemon->ssl_ctx, reply, &error) < 0) {
		login_client_destroy(&client->base, error);
		return false;
	}
	client->base.secured = true;
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
		login_client_close_after(&client->base, line, "logged out before login");
		return false;
	} else if (strcasecmp(name, "ID") == 0) {
		cmd_id(client, cmd);
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
		login_client_login(&client->base, tag, cmd->args[0].str, cmd->args[1].str);
		return client->base.state == LOGIN_CLIENT_PRELOGIN;
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
		if (!login_client_plaintext_allowed(&client->base)) {
			client->base.daemon->metrics.logins_refused++;
			imap_reply(&client->base, LOGIN_REPLY_PLAINTEXT_DISALLOWED, tag, NULL);
			return true;
		}
		if (cmd->arg_count == 2) {
			const char *ir = cmd->args[1].str;
			/* "=" is an empty initial response (RFC 4959) */
			login_client_plain_response(&client->base, tag, ir,
						    strcmp(ir, "=") == 0 ? 0 : cmd->args[1].len);
			return client->base.state == LOGIN_CLIENT_PRELOGIN;
		}
		free(client->tag);
		client->tag = strdup(tag);
		client->base.state = LOGIN_CLIENT_AUTH_RESPONSE;
		client_send(client, "+ \r\n");
	} else {
		client->base.daemon->metrics.prelogin_bad_commands++;
		if (++client->base.bad_commands >= client->base.daemon->set->bad_commands_max) {
			login_client_close_after(&client->base,
						 "* BYE Too many invalid IMAP commands.\r\n",
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
	size_t max = client->base.daemon->set->prelogin_line_max;
	const char *lf = memchr(data, '\n', len);
	if (lf == NULL) {
		if (len > max) {
			client->base.daemon->metrics.prelogin_too_long++;
			login_client_close_after(&client->base, "* BYE Line too long.\r\n",
						 "SASL response too long");
		}
		return false;
	}
	size_t line_len = (size_t)(lf - data), consumed = line_len + 1;
	if (line_len > 0 && data[line_len - 1] == '\r')
		line_len--;
	if (line_len > max) {
		client->base.daemon->metrics.prelogin_too_long++;
		login_client_close_after(&client->base, "* BYE Line too long.\r\n",
					 "SASL response too long");
		return false;
	}
	char *line = malloc(line_len + 1);
	memcpy(line, data, line_len);
	line[line_len] = '\0';
	stream_consume(client->base.stream, consumed);
	char *tag = client->tag;
	client->tag = NULL;
	client->base.state = LOGIN_CLIENT_PRELOGIN;
	login_client_plain_response(&client->base, tag, line, line_len);
	explicit_bzero(line, line_len);
	free(line);
	free(tag);
	return client->base.state == LOGIN_CLIENT_PRELOGIN;
}

static void imap_input(struct login_client *base)
{
	struct imap_client *client = (struct imap_client *)base;
	struct daemon *daemon = client->base.daemon;
	for (;;) {
		if (client->base.state != LOGIN_CLIENT_PRELOGIN &&
		    client->base.state != LOGIN_CLIENT_AUTH_RESPONSE)
			return;
		size_t len;
		const char *data = stream_input(client->base.stream, &len);
		if (len == 0)
			return;
		if (client->base.state == LOGIN_CLIENT_AUTH_RESPONSE) {
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
			login_client_close_after(&client->base, "* BYE Line too long.\r\n",
						 "pre-login command too long");
			return;
		case IMAP_PARSE_ERROR:
			stream_consume(client->base.stream, consumed);
			daemon->metrics.prelogin_bad_commands++;
			if (++client->base.bad_commands >= daemon->set->bad_commands_max) {
				login_client_close_after(
					&client->base, "* BYE Too many invalid IMAP commands.\r\n",
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
			stream_consume(client->base.stream, consumed);
			if (!handle_command(client, &cmd))
				return;
			continue;
		}
	}
}

static void imap_free(struct login_client *base)
{
	struct imap_client *client = (struct imap_client *)base;
	free(client->tag);
	imap_parser_destroy(&client->parser);
}

static int imap_backend_port(const struct settings *set)
{
	return set->backend_port_imap;
}

static const struct login_client_protocol imap_protocol = {
	.name = "imap",
	.dialogue = &imap_dialogue,
	.backend_port = imap_backend_port,
	.reply = imap_reply,
	.input = imap_input,
	.free = imap_free,
};

void imap_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls)
{
	struct imap_client *client = calloc(1, sizeof(*client));
	client->parser = imap_parser_create(daemon->set->prelogin_line_max);
	login_client_init(&client->base, &imap_protocol, daemon, fd, remote, local, implicit_tls);
	char caps[256];
	capability_string(client, caps, sizeof(caps));
	client_sendf(client, "* OK [CAPABILITY %s] mailcluster ready.\r\n", caps);
}
