/* submission_client.c - the Submission front-end (RFC 6409): one accepted
 * client connection on a submission (587, STARTTLS) or submissions (465,
 * implicit TLS) listener, from the greeting until AUTH succeeds at the
 * user's backend and the connection is handed to the relay (or closed).
 * The create function is declared in frontend.h.
 *
 * The lifecycle (states, closing, the login) is login_client.h's; here are
 * the SMTP commands and replies.  PRELOGIN reads command lines
 * (smtp_command.h) and answers EHLO, HELO, STARTTLS (RFC 3207), AUTH PLAIN
 * (RFC 4954), NOOP, RSET and QUIT itself; MAIL, RCPT, DATA and BDAT get 530
 * until the client has logged in.  AUTH_RESPONSE waits for the client's
 * line after "334 " (AUTH PLAIN without an initial response).
 *
 * What we advertise in EHLO is what holds both before the login (we answer)
 * and after it (the backend answers, and the client does not ask again: a
 * PLAIN login negotiates no security layer, so RFC 4954 does not make it
 * repeat EHLO).  PIPELINING: we answer pipelined commands in order, and
 * Dovecot does after the login.  8BITMIME and ENHANCEDSTATUSCODES: Dovecot's
 * submission service offers both by default and our own replies carry
 * enhanced codes.  Not offered: SIZE (its limit is the backend's to state),
 * CHUNKING (a BDAT chunk before the login could not be skipped safely),
 * BURL, DSN, SMTPUTF8.
 *
 * The backend dialogue, one command at a time (as Dovecot 2.3's
 * submission-login answers it):
 *
 *   <- 220 greeting
 *   -> EHLO <our hostname>         <- 250-... XCLIENT ADDR PORT ... SESSION TTL ...
 *   -> XCLIENT ADDR=<client ip> PORT=<client port> SESSION=<id> TTL=<n>
 *                                  <- 220 greeting (the SMTP state is reset)
 *   -> EHLO <client's EHLO domain> <- 250-... AUTH PLAIN ...
 *   -> AUTH PLAIN <initial response>
 *                                  <- 235 (relay), 5xx (the client's answer) or
 *                                     anything else (temporary failure)
 *
 * XCLIENT carries only the attributes the backend listed (Postfix refuses
 * unknown ones); the backend applies it only to peers in its
 * login_trusted_networks.  The EHLO after XCLIENT is required (XCLIENT
 * resets the session) and names the client's own EHLO domain: Dovecot's
 * submission-login hands that domain to the post-login submission process,
 * which continues in the state after AUTH, so the client's next command,
 * MAIL FROM, meets a session that has had its EHLO.
 */
#include "daemon/daemon.h"
#include "daemon/frontend.h"
#include "daemon/login_client.h"
#include "daemon/login_proxy.h"
#include "daemon/session.h"
#include "net/stream.h"
#include "proto/sasl_plain.h"
#include "proto/smtp_command.h"
#include "store/route.h"
#include "util/base64.h"
#include "util/log.h"
#include "util/net_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* the longest EHLO domain we pass on to the backend (RFC 5321: 255) */
#define HELO_DOMAIN_MAX 255
/* command lines up to this size are parsed on the stack */
#define PARSE_STACK_SIZE 1024

struct submission_client {
	struct login_client base;
	bool helo_done;       /* EHLO or HELO since the greeting or STARTTLS */
	const char *hostname; /* submission_hostname, or system_hostname */
	char system_hostname[HOST_NAME_MAX + 1];
	char *helo_domain; /* what the client's EHLO named, if fit to pass on */
};

/* ---- helpers ---- */

/* Our name in greetings and EHLO: submission_hostname, or the system's
 * name (into buf) when that is empty. */
static const char *our_hostname(const struct daemon *daemon, char buf[HOST_NAME_MAX + 1])
{
	const char *configured = daemon->set->submission_hostname;
	if (configured != NULL && configured[0] != '\0')
		return configured;
	if (gethostname(buf, HOST_NAME_MAX + 1) < 0 || buf[0] == '\0')
		return "localhost";
	buf[HOST_NAME_MAX] = '\0';
	return buf;
}

#define client_send(client, text) login_client_send(&(client)->base, text)
#define client_sendf(client, ...) stream_printf((client)->base.stream, __VA_ARGS__)

/* "421 <enhanced code> <hostname> <text>". */
static void send_421(struct submission_client *client, const char *code, const char *text)
{
	client_sendf(client, "421 %s %s %s\r\n", code, client->hostname, text);
}

/* "421 ...", then close. */
static void client_close_421(struct submission_client *client, const char *code, const char *text,
			     const char *reason)
{
	send_421(client, code, text);
	login_client_close_after(&client->base, NULL, reason);
}

/* The lifecycle's replies. */
static void submission_reply(struct login_client *base, enum login_client_reply reply,
			     const char *tag, const char *detail)
{
	struct submission_client *client = (struct submission_client *)base;
	switch (reply) {
	case LOGIN_REPLY_TIMEOUT:
		send_421(client, "4.4.2", "Timeout, closing connection");
		break;
	case LOGIN_REPLY_TOO_MANY_AUTH_FAILURES:
		send_421(client, "4.7.0", "Too many authentication failures");
		break;
	case LOGIN_REPLY_PLAINTEXT_DISALLOWED:
		client_send(client, "538 5.7.11 Encryption required for requested authentication "
				    "mechanism\r\n");
		break;
	case LOGIN_REPLY_AUTH_FAILED:
		client_send(client, "535 5.7.8 Authentication credentials invalid\r\n");
		break;
	case LOGIN_REPLY_TEMPFAIL:
		client_send(client,
			    "454 4.7.0 Temporary authentication failure, try again later\r\n");
		break;
	case LOGIN_REPLY_AUTH_CANCELLED:
		client_send(client, "501 5.7.0 Authentication aborted by client\r\n");
		break;
	case LOGIN_REPLY_AUTH_INVALID:
		/* RFC 4954: 501 5.5.2 for what is not base64 at all */
		if (detail == sasl_plain_error_base64)
			client_send(client, "501 5.5.2 Invalid base64 data in AUTH response\r\n");
		else
			client_sendf(client, "535 5.7.8 Authentication credentials invalid: %s\r\n",
				     detail);
		break;
	}
}

/* Counts an invalid command; false if that was one too many (closing). */
static bool bad_command(struct submission_client *client)
{
	client->base.daemon->metrics.prelogin_bad_commands++;
	if (++client->base.bad_commands >= client->base.daemon->set->bad_commands_max) {
		client_close_421(client, "4.7.0", "Too many invalid commands",
				 "too many invalid commands");
		return false;
	}
	return true;
}

/* The domain (or address literal) of an EHLO/HELO argument, if it is made
 * of what a domain or an address literal may contain: it goes into our
 * EHLO at the backend, so nothing else may pass.  NULL otherwise. */
static char *helo_domain_dup(const char *args)
{
	size_t len = strcspn(args, " ");
	if (len == 0 || len > HELO_DOMAIN_MAX)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = args[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':'))
			return NULL;
	}
	return strndup(args, len);
}

/* ---- the backend dialogue ---- */

/* *login_proxy_state(): the step in the low byte, above it what the
 * backend's last EHLO offered, and the code of a multi-line reply that has
 * not ended yet. */
enum dialogue_step { STEP_GREETING, STEP_EHLO, STEP_XCLIENT, STEP_EHLO_AGAIN, STEP_AUTH };
#define STEP_MASK 0xffu
#define OFFERS_XCLIENT (1u << 8)
#define XCLIENT_ADDR (1u << 9)
#define XCLIENT_PORT (1u << 10)
#define XCLIENT_SESSION (1u << 11)
#define XCLIENT_TTL (1u << 12)
#define XCLIENT_DESTADDR (1u << 13)
#define XCLIENT_DESTPORT (1u << 14)
#define OFFERS_AUTH_PLAIN (1u << 15)
#define OFFERS_MASK (0xffu << 8)
#define REPLY_CODE_SHIFT 16
#define REPLY_CODE_MASK (0x3ffu << REPLY_CODE_SHIFT)
#define EHLO_AS_OURS (1u << 26) /* the EHLO after XCLIENT named us, not the client */
#define XCLIENT_HOPS (1u << 27) /* offered by another site's daemon (ours) */

static void set_step(unsigned *state, enum dialogue_step step)
{
	*state = (*state & ~STEP_MASK) | step;
}

/* "250-text", "250 text" or "250": the code, or -1 for anything else;
 * *last_r says whether this line ends the reply. */
static int reply_code(const char *line, size_t len, bool *last_r)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	*last_r = len == 3 || line[3] == ' ';
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

/* Whether the space-separated list words has word (case-insensitively). */
static bool has_word(const char *words, const char *word)
{
	size_t word_len = strlen(word);
	for (const char *p = words; *p != '\0';) {
		while (*p == ' ')
			p++;
		size_t len = strcspn(p, " ");
		if (len == word_len && strncasecmp(p, word, len) == 0)
			return true;
		p += len;
	}
	return false;
}

/* One EHLO keyword line (after "250-"): note what we need of it. */
static void note_ehlo_keyword(unsigned *state, const char *text)
{
	if (strncasecmp(text, "XCLIENT", 7) == 0 && (text[7] == ' ' || text[7] == '\0')) {
		const char *attrs = text + 7;
		*state |= OFFERS_XCLIENT;
		if (has_word(attrs, "ADDR"))
			*state |= XCLIENT_ADDR;
		if (has_word(attrs, "PORT"))
			*state |= XCLIENT_PORT;
		if (has_word(attrs, "SESSION"))
			*state |= XCLIENT_SESSION;
		if (has_word(attrs, "TTL"))
			*state |= XCLIENT_TTL;
		if (has_word(attrs, "DESTADDR"))
			*state |= XCLIENT_DESTADDR;
		if (has_word(attrs, "DESTPORT"))
			*state |= XCLIENT_DESTPORT;
		if (has_word(attrs, "HOPS"))
			*state |= XCLIENT_HOPS;
	} else if (strncasecmp(text, "AUTH ", 5) == 0 && has_word(text + 5, "PLAIN")) {
		*state |= OFFERS_AUTH_PLAIN;
	}
}

/* xtext (RFC 3461 4.) of src, appended at *p (room checked by the caller:
 * at most 3 bytes per input byte). */
static void xtext_append(char **p, const char *src)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *src != '\0'; src++) {
		unsigned char c = (unsigned char)*src;
		if (c < '!' || c > '~' || c == '+' || c == '=') {
			*(*p)++ = '+';
			*(*p)++ = hex[c >> 4];
			*(*p)++ = hex[c & 15];
		} else {
			*(*p)++ = (char)c;
		}
	}
}

/* "ADDR=" value: IPv6 addresses get Postfix's "IPV6:" prefix (Dovecot
 * takes both forms). */
static void xclient_addr_append(char **p, const char *ip)
{
	if (strchr(ip, ':') != NULL) {
		memcpy(*p, "IPV6:", 5);
		*p += 5;
	}
	xtext_append(p, ip);
}

static void send_xclient(struct login_proxy *lp, unsigned offers)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	/* every value is short: an address, a port, a session id */
	char line[512], *p = line;
	p += sprintf(p, "XCLIENT");
	if ((offers & XCLIENT_ADDR) != 0) {
		p += sprintf(p, " ADDR=");
		xclient_addr_append(&p, req->ident.client_ip);
	}
	if ((offers & XCLIENT_PORT) != 0)
		p += sprintf(p, " PORT=%u", req->ident.client_port);
	if ((offers & XCLIENT_SESSION) != 0) {
		p += sprintf(p, " SESSION=");
		xtext_append(&p, req->ident.session_id);
	}
	if ((offers & XCLIENT_TTL) != 0)
		p += sprintf(p, " TTL=%u", client_ident_ttl(&req->ident));
	if ((offers & XCLIENT_HOPS) != 0 && login_proxy_forwarding(lp))
		p += sprintf(p, " HOPS=%u", login_proxy_hops(lp));
	if ((offers & XCLIENT_DESTADDR) != 0 && req->ident.local_ip[0] != '\0') {
		p += sprintf(p, " DESTADDR=");
		xclient_addr_append(&p, req->ident.local_ip);
	}
	if ((offers & XCLIENT_DESTPORT) != 0 && req->ident.local_port != 0)
		p += sprintf(p, " DESTPORT=%u", req->ident.local_port);
	memcpy(p, "\r\n", 2);
	p += 2;
	login_proxy_send(lp, line, (size_t)(p - line));
}

static void send_ehlo_ours(struct login_proxy *lp)
{
	char buf[HOST_NAME_MAX + 1];
	login_proxy_sendf(lp, "EHLO %s\r\n", our_hostname(login_proxy_request(lp)->daemon, buf));
}

/* The client's EHLO domain comes as the request's tag. */
static void send_ehlo_clients(struct login_proxy *lp, unsigned *state)
{
	const char *helo = login_proxy_request(lp)->tag;
	if (helo == NULL) {
		*state |= EHLO_AS_OURS;
		send_ehlo_ours(lp);
	} else {
		login_proxy_sendf(lp, "EHLO %s\r\n", helo);
	}
}

static void send_auth(struct login_proxy *lp)
{
	char ir[SASL_PLAIN_BUF_SIZE * 2];
	if (login_proxy_plain_ir(lp, ir, sizeof(ir)) < 0) {
		login_proxy_unavailable(lp, "username and password too long to forward");
		return;
	}
	login_proxy_sendf(lp, "AUTH PLAIN %s\r\n", ir);
	explicit_bzero(ir, sizeof(ir));
}

static void submission_backend_line(struct login_proxy *lp, const char *line, size_t len)
{
	const struct login_proxy_request *req = login_proxy_request(lp);
	unsigned *state = login_proxy_state(lp);
	enum dialogue_step step = *state & STEP_MASK;
	unsigned pending_code = (*state & REPLY_CODE_MASK) >> REPLY_CODE_SHIFT;
	char reason[300];
	bool last = false;
	int code = reply_code(line, len, &last);

	if (code < 0 || (pending_code != 0 && (unsigned)code != pending_code)) {
		snprintf(reason, sizeof(reason), "backend sent an invalid SMTP reply line: %.200s",
			 line);
		if (step == STEP_GREETING)
			login_proxy_retry(lp, reason);
		else
			login_proxy_unavailable(lp, reason);
		return;
	}
	*state &= ~REPLY_CODE_MASK;
	if (!last)
		*state |= (unsigned)code << REPLY_CODE_SHIFT;

	switch (step) {
	case STEP_GREETING:
		if (code != 220) {
			snprintf(reason, sizeof(reason), "backend greeting was not 220: %.200s",
				 line);
			login_proxy_retry(lp, reason);
			return;
		}
		if (!last)
			return;
		set_step(state, STEP_EHLO);
		send_ehlo_ours(lp);
		return;
	case STEP_EHLO:
	case STEP_EHLO_AGAIN:
		if (code != 250) {
			if (!last)
				return;
			if (step == STEP_EHLO_AGAIN && (*state & EHLO_AS_OURS) == 0) {
				/* it did not like the client's domain: ours then */
				*state |= EHLO_AS_OURS;
				send_ehlo_ours(lp);
				return;
			}
			snprintf(reason, sizeof(reason), "backend refused EHLO: %.200s", line);
			login_proxy_unavailable(lp, reason);
			return;
		}
		if (len > 4)
			note_ehlo_keyword(state, line + 4);
		if (!last)
			return;
		if (step == STEP_EHLO_AGAIN) {
			if ((*state & OFFERS_AUTH_PLAIN) == 0) {
				login_proxy_unavailable(lp,
							"backend does not offer AUTH PLAIN to us "
							"(does it require TLS?)");
				return;
			}
			set_step(state, STEP_AUTH);
			send_auth(lp);
			return;
		}
		if (login_proxy_forwarding(lp) && (*state & XCLIENT_HOPS) == 0) {
			snprintf(reason, sizeof(reason),
				 "the load balancer %s does not offer XCLIENT HOPS to us, so it "
				 "would not take our forwarding: is this host in the other site's "
				 "login_trusted_networks?",
				 login_proxy_target(lp));
			login_proxy_unavailable(lp, reason);
			return;
		}
		if ((*state & OFFERS_XCLIENT) == 0) {
			/* it still works, but the backend sees our address */
			log_warning(
				"event=backend_warning protocol=submission backend=%s "
				"session=%s reason=\"backend does not offer XCLIENT: the client "
				"address is not forwarded (add the proxy to its "
				"login_trusted_networks)\"",
				req->route->backend.name, req->ident.session_id);
			*state &= ~OFFERS_MASK;
			set_step(state, STEP_EHLO_AGAIN);
			send_ehlo_clients(lp, state);
			return;
		}
		set_step(state, STEP_XCLIENT);
		send_xclient(lp, *state & (OFFERS_MASK | XCLIENT_HOPS));
		return;
	case STEP_XCLIENT:
		if (code / 100 != 2) {
			snprintf(reason, sizeof(reason),
				 "backend refused XCLIENT (is the proxy in its "
				 "login_trusted_networks?): %.200s",
				 line);
			login_proxy_unavailable(lp, reason);
			return;
		}
		if (!last)
			return;
		/* XCLIENT reset the session: EHLO again, as the client */
		*state &= ~OFFERS_MASK;
		set_step(state, STEP_EHLO_AGAIN);
		send_ehlo_clients(lp, state);
		return;
	case STEP_AUTH:
		break;
	}
	if (code == 235 || code >= 500) {
		if (!last) {
			/* the first lines of a multi-line reply: the client's */
			login_proxy_to_client(lp, line, len);
			login_proxy_to_client(lp, "\r\n", 2);
		} else if (code == 235) {
			login_proxy_success(lp, line, len);
		} else {
			login_proxy_failure(lp, line, len); /* 535 and the like: the backend's */
		}
		return;
	}
	if (code == 334)
		snprintf(reason, sizeof(reason), "backend asked for a SASL continuation: %.200s",
			 line);
	else
		snprintf(reason, sizeof(reason), "backend answered AUTH with: %.200s", line);
	login_proxy_unavailable(lp, reason);
}

static const struct login_proxy_dialogue submission_dialogue = {
	.protocol = "submission",
	.connected = NULL, /* the backend speaks first */
	.line = submission_backend_line,
};

/* ---- pre-login commands ---- */

/* The PLAIN response (the initial response of AUTH or the line after
 * "334 "); the EHLO domain goes with the login, for the EHLO after XCLIENT. */
static void auth_response(struct submission_client *client, const char *b64, size_t len)
{
	login_client_plain_response(&client->base, client->helo_domain, b64, len);
}

static bool cmd_auth(struct submission_client *client, const char *args)
{
	size_t mech_len = strcspn(args, " ");
	const char *ir = args[mech_len] == ' ' ? args + mech_len + 1 : NULL;
	if (!client->helo_done) {
		client_send(client, "503 5.5.1 Send EHLO first\r\n");
		return true;
	}
	if (mech_len == 0 || (ir != NULL && (ir[0] == '\0' || strchr(ir, ' ') != NULL))) {
		if (!bad_command(client))
			return false;
		client_send(client, "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
		return true;
	}
	if (mech_len != 5 || strncasecmp(args, "PLAIN", 5) != 0) {
		client_send(client, "504 5.5.4 Unsupported authentication mechanism\r\n");
		return true;
	}
	if (!login_client_plaintext_allowed(&client->base)) {
		client->base.daemon->metrics.logins_refused++;
		submission_reply(&client->base, LOGIN_REPLY_PLAINTEXT_DISALLOWED, NULL, NULL);
		return true;
	}
	if (ir != NULL) {
		/* "=" is an empty initial response (RFC 4954) */
		auth_response(client, ir, strcmp(ir, "=") == 0 ? 0 : strlen(ir));
		return client->base.state == LOGIN_CLIENT_PRELOGIN;
	}
	client->base.state = LOGIN_CLIENT_AUTH_RESPONSE;
	client_send(client, "334 \r\n");
	return true;
}

static bool cmd_starttls(struct submission_client *client, const char *args)
{
	struct daemon *daemon = client->base.daemon;
	if (args[0] != '\0') {
		if (!bad_command(client))
			return false;
		client_send(client, "501 5.5.4 Syntax: STARTTLS takes no parameters\r\n");
		return true;
	}
	if (stream_is_tls(client->base.stream)) {
		client_send(client, "503 5.5.1 TLS is already active\r\n");
		return true;
	}
	if (daemon->ssl_ctx == NULL) {
		client_send(client, "502 5.5.1 TLS is not available\r\n");
		return true;
	}
	const char *error;
	if (stream_starttls(client->base.stream, daemon->ssl_ctx,
			    "220 2.0.0 Ready to start TLS\r\n", &error) < 0) {
		login_client_destroy(&client->base, error);
		return false;
	}
	/* RFC 3207: back to the state after the greeting; the client must
	 * say EHLO again (input pipelined after STARTTLS is dropped) */
	client->base.secured = true;
	client->helo_done = false;
	free(client->helo_domain);
	client->helo_domain = NULL;
	return false; /* new input comes from the TLS layer */
}

static void cmd_ehlo(struct submission_client *client)
{
	/* keywords before the last one go with "250-" */
	const char *keywords[7];
	unsigned count = 0;
	keywords[count++] = "PIPELINING";
	keywords[count++] = "8BITMIME";
	keywords[count++] = "ENHANCEDSTATUSCODES";
	if (login_client_starttls_available(&client->base))
		keywords[count++] = "STARTTLS";
	if (login_client_plaintext_allowed(&client->base))
		keywords[count++] = "AUTH PLAIN";
	/* to another proxy (another site's daemon) in login_trusted_networks */
	if (client->base.id.trusted && !client->base.id.forwarded)
		keywords[count++] = "XCLIENT ADDR PORT SESSION TTL DESTADDR DESTPORT HOPS";
	client_sendf(client, "250-%s\r\n", client->hostname);
	for (unsigned i = 0; i < count; i++)
		client_sendf(client, "250%c%s\r\n", i + 1 < count ? '-' : ' ', keywords[i]);
}

/* XCLIENT from a peer in login_trusted_networks: who the client is; then,
 * as Postfix and Dovecot do, a new greeting and EHLO again. */
static bool cmd_xclient(struct submission_client *client, const char *args)
{
	struct client_ident copy = client->base.id;
	const char *error;
	if (client_ident_xclient(&copy, args, &error) < 0) {
		if (!bad_command(client))
			return false;
		client_sendf(client, "501 5.5.4 Invalid XCLIENT: %s\r\n", error);
		return true;
	}
	client->base.id = copy;
	client_ident_forward_log(&client->base.id, "submission");
	client->helo_done = false;
	free(client->helo_domain);
	client->helo_domain = NULL;
	client_sendf(client, "220 %s ESMTP mailcluster\r\n", client->hostname);
	return true;
}

/* Returns false if the client was destroyed or must stop reading. */
static bool handle_command(struct submission_client *client, const struct smtp_command *cmd,
			   bool parsed, const char *error)
{
	enum smtp_verb verb = cmd->verb;
	/* MAIL, RCPT and BDAT with bad arguments still get 530: the login
	 * comes first; other verbs cannot fail but for the line as a whole */
	if (!parsed && verb != SMTP_VERB_MAIL && verb != SMTP_VERB_RCPT && verb != SMTP_VERB_BDAT)
		verb = SMTP_VERB_UNKNOWN;
	switch (verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		if (cmd->args[0] == '\0') {
			if (!bad_command(client))
				return false;
			client_send(client, "501 5.5.4 Missing domain\r\n");
			return true;
		}
		free(client->helo_domain);
		client->helo_domain = helo_domain_dup(cmd->args);
		client->helo_done = true;
		if (cmd->verb == SMTP_VERB_EHLO)
			cmd_ehlo(client);
		else
			client_sendf(client, "250 %s\r\n", client->hostname);
		return true;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_RSET:
		client_send(client, "250 2.0.0 OK\r\n");
		return true;
	case SMTP_VERB_QUIT:
		login_client_close_after(&client->base, "221 2.0.0 Bye\r\n", "quit before login");
		return false;
	case SMTP_VERB_STARTTLS:
		return cmd_starttls(client, cmd->args);
	case SMTP_VERB_AUTH:
		return cmd_auth(client, cmd->args);
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
	case SMTP_VERB_DATA:
	case SMTP_VERB_BDAT:
		if (!bad_command(client))
			return false;
		client_send(client, "530 5.7.0 Authentication required\r\n");
		return true;
	case SMTP_VERB_XCLIENT:
		if (!client_ident_xclient_refused(&client->base.id, "submission") &&
		    !client->base.id.forwarded)
			return cmd_xclient(client, cmd->args);
		/* fall through */
	case SMTP_VERB_VRFY:
	case SMTP_VERB_LHLO:
		if (!bad_command(client))
			return false;
		client_send(client, "502 5.5.1 Command not implemented\r\n");
		return true;
	case SMTP_VERB_UNKNOWN:
		break;
	}
	if (!bad_command(client))
		return false;
	if (!parsed)
		client_sendf(client, "500 5.5.2 Syntax error: %s\r\n", error);
	else
		client_send(client, "500 5.5.1 Unknown command\r\n");
	return true;
}

/* One command line (without its line end), already consumed from the
 * input.  Returns false if the client was destroyed or must stop reading. */
static bool handle_line(struct submission_client *client, const char *line, size_t len)
{
	char stack_buf[PARSE_STACK_SIZE];
	size_t buf_size = SMTP_COMMAND_BUF_SIZE(len);
	char *buf = buf_size <= sizeof(stack_buf) ? stack_buf : malloc(buf_size);
	struct smtp_command cmd;
	const char *error = NULL;
	bool parsed = smtp_command_parse(line, len, buf, buf_size, &cmd, &error) == 0;
	if (error == NULL)
		error = "syntax error";
	bool go_on = handle_command(client, &cmd, parsed, error);
	explicit_bzero(buf, buf_size); /* an AUTH line holds a password */
	if (buf != stack_buf)
		free(buf);
	return go_on;
}

static void submission_input(struct login_client *base)
{
	struct submission_client *client = (struct submission_client *)base;
	struct daemon *daemon = client->base.daemon;
	size_t max = daemon->set->prelogin_line_max;
	for (;;) {
		if (client->base.state != LOGIN_CLIENT_PRELOGIN &&
		    client->base.state != LOGIN_CLIENT_AUTH_RESPONSE)
			return;
		size_t len;
		const char *data = stream_input(client->base.stream, &len);
		if (len == 0)
			return;
		const char *lf = memchr(data, '\n', len);
		size_t line_len = lf != NULL ? (size_t)(lf - data) : len;
		if (lf != NULL && line_len > 0 && data[line_len - 1] == '\r')
			line_len--;
		if (line_len > max) {
			daemon->metrics.prelogin_too_long++;
			login_client_close_after(&client->base, "500 5.5.2 Line too long\r\n",
						 "pre-login command too long");
			return;
		}
		if (lf == NULL)
			return;
		/* the line is copied: the input buffer may move while it is
		 * handled, and what remains in it is what the client
		 * pipelined after this line */
		char *line = malloc(line_len + 1);
		memcpy(line, data, line_len);
		line[line_len] = '\0';
		stream_consume(client->base.stream, (size_t)(lf - data) + 1);
		bool go_on;
		if (client->base.state == LOGIN_CLIENT_AUTH_RESPONSE) {
			client->base.state = LOGIN_CLIENT_PRELOGIN;
			auth_response(client, line, line_len);
			go_on = client->base.state == LOGIN_CLIENT_PRELOGIN;
		} else {
			go_on = handle_line(client, line, line_len);
		}
		explicit_bzero(line, line_len);
		free(line);
		if (!go_on)
			return;
	}
}

static void submission_free(struct login_client *base)
{
	free(((struct submission_client *)base)->helo_domain);
}

static int submission_backend_port(const struct settings *set)
{
	return set->backend_port_submission;
}

static const struct login_client_protocol submission_protocol = {
	.name = "submission",
	.dialogue = &submission_dialogue,
	.backend_port = submission_backend_port,
	.reply = submission_reply,
	.input = submission_input,
	.free = submission_free,
};

void submission_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			      const struct sockaddr *local, bool implicit_tls)
{
	struct submission_client *client = calloc(1, sizeof(*client));
	client->hostname = our_hostname(daemon, client->system_hostname);
	login_client_init(&client->base, &submission_protocol, daemon, fd, remote, local,
			  implicit_tls);
	client_sendf(client, "220 %s ESMTP mailcluster\r\n", client->hostname);
}
