/* lmtp_client.c - the LMTP front-end (RFC 2033): the delivery path, where
 * nothing may be lost.
 *
 * An MTA hands us one message for many recipients, and each recipient may
 * live on a different backend.  LHLO, MAIL, RSET, NOOP, VRFY and QUIT are
 * answered here; every RCPT is routed on its own (router_route(), by the
 * whole address or by its local part: lmtp_username).  A transaction holds
 * one connection per distinct backend it touches (struct lmtp_backend),
 * opened at the first RCPT for that backend:
 *
 *   connect (retrying within proxy_timeout)  <- 220
 *   LHLO <hostname>                          <- 250s (XCLIENT advertised?)
 *   XCLIENT ADDR= PORT= SESSION= TTL=        <- 220: Dovecot greets again
 *   LHLO <hostname>                          <- 250s
 *   MAIL FROM:<the client's sender> BODY=    <- 250
 *   RCPT TO:<address>                        <- the client's reply
 *
 * Nothing is acknowledged before a backend has.  The message is received
 * whole into memory (bounded by lmtp_message_max); only once its end
 * marker has arrived does each backend get DATA and the message, and give
 * one reply per recipient it accepted.  The client gets one reply per
 * accepted recipient, in its RCPT order, each the true reply of the backend
 * holding that recipient, or 451 if that backend went away before answering
 * for it.  A failing backend affects its own recipients only.
 *
 * At the end of a transaction the backend connections stay open for the
 * client's next one (an MTA sends many messages over one connection): one
 * that took part in DATA is idle again as it is, one that only holds MAIL
 * (and refused recipients) gets RSET, one that failed is dropped.  The next
 * transaction sends MAIL on an idle connection instead of connecting
 * again; a kept connection that turns out dead (the backend closed it
 * meanwhile) is replaced by a new one, so that keeping it never costs a
 * recipient a tempfail.  All are closed when the client goes.
 *
 * Commands are handled one at a time: while a RCPT is at a backend, or the
 * message is being delivered, the client is not read (what it pipelines
 * waits in the stream), so replies go out strictly in command order.
 *
 * Backend callbacks only record what happened (a reply, a failure, by
 * closing their own socket at most) and schedule client_resume(); whatever
 * frees memory (ending the transaction, reading the next command, which may
 * be QUIT) happens there, at the top of the event loop, so no callback ever
 * runs on freed memory.
 *
 * Bare LFs: Dovecot ends DATA at LF "." LF (and CRLF "." LF, LF "." CRLF)
 * as well as at CRLF "." CRLF, so a body relayed as received could end
 * early at the backend and smuggle the rest in as commands (for recipients
 * the client never named here, and with our replies out of step).  A body
 * that contains a bare LF is therefore rewritten before it is sent: every
 * bare LF becomes CRLF and the lines this creates are dot-stuffed
 * (body_normalize()).  A body without one goes out byte for byte.
 */
#include "daemon/daemon.h"
#include "daemon/login_proxy.h"
#include "daemon/frontend.h"
#include "daemon/session.h"
#include "net/stream.h"
#include "proto/smtp_command.h"
#include "daemon/router.h"
#include "util/log.h"
#include "util/net_util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define BACKEND_REPLY_MAX 65536 /* one (multi-line) reply from a backend */
#define LOG_REPLY_MAX 200

/* XCLIENT attributes a backend advertised, of those we send */
#define XCLIENT_ADDR 0x1
#define XCLIENT_PORT 0x2
#define XCLIENT_SESSION 0x4
#define XCLIENT_TTL 0x8
#define XCLIENT_HOPS 0x10 /* another site's daemon (ours) takes HOPS= */

enum client_state {
	CLIENT_COMMANDS,   /* reading and answering commands */
	CLIENT_WAITING,    /* a RCPT is at a backend; not reading meanwhile */
	CLIENT_DATA,       /* receiving the message */
	CLIENT_DELIVERING, /* the message is at the backends; not reading */
	CLIENT_CLOSING,    /* a last reply is being written */
};

enum backend_state {
	BACKEND_CONNECTING,
	BACKEND_GREETING,
	BACKEND_LHLO,
	BACKEND_XCLIENT,
	BACKEND_LHLO_AGAIN, /* after XCLIENT's new greeting */
	BACKEND_MAIL,
	BACKEND_READY,        /* in the transaction, nothing asked */
	BACKEND_RCPT,         /* waiting for a RCPT reply */
	BACKEND_DATA,         /* waiting for 354 */
	BACKEND_DATA_REPLIES, /* message sent (or being sent): collecting replies */
	BACKEND_RSET,         /* waiting for the reply to RSET */
	BACKEND_IDLE,         /* between transactions: MAIL may come */
	BACKEND_FAILED,       /* closed; its recipients get failure_reply */
};

static const char *const backend_state_names[] = {
	[BACKEND_CONNECTING] = "connecting",
	[BACKEND_GREETING] = "greeting",
	[BACKEND_LHLO] = "lhlo",
	[BACKEND_XCLIENT] = "xclient",
	[BACKEND_LHLO_AGAIN] = "lhlo",
	[BACKEND_MAIL] = "mail",
	[BACKEND_READY] = "ready",
	[BACKEND_RCPT] = "rcpt",
	[BACKEND_DATA] = "data",
	[BACKEND_DATA_REPLIES] = "data",
	[BACKEND_RSET] = "rset",
	[BACKEND_IDLE] = "idle",
	[BACKEND_FAILED] = "failed",
};

struct lmtp_client;

/* A connection to one backend: opened for a transaction, kept for the
 * client's next ones while it stays healthy. */
struct lmtp_backend {
	struct lmtp_backend *next;
	struct lmtp_client *client;
	char name[NAME_MAX_LEN + 8]; /* the backend's, or "site:SITE" for a load balancer */
	char address[ADDRESS_MAX_LEN + 1];
	int port;
	/* another site's load balancer (store/route.h): the connection is
	 * marked (XCLIENT HOPS=), and fails unless the far side takes it */
	bool forward;
	enum backend_state state;
	struct bufferevent *bev;
	struct event *timer;      /* the retry wait, or the bound on what we wait for */
	bool retry_pending;       /* the timer is the wait before the next attempt */
	struct timespec deadline; /* for connecting and the dialogue up to MAIL */
	unsigned attempts;
	bool spoke; /* a valid greeting arrived this attempt */
	unsigned xclient_attrs;
	bool pipelining;     /* advertised: MAIL and RCPT go in one write */
	bool rcpt_pipelined; /* the RCPT went out with MAIL */
	char *reply;         /* the reply being read: its lines so far, each with CRLF */
	size_t reply_len, reply_size;
	bool reused;         /* the connection has been through a transaction before */
	bool used;           /* the current transaction routed a recipient here */
	unsigned accepted;   /* recipients it accepted (RCPT 2xx) in this transaction */
	size_t next_rcpt;    /* DATA replies: where to look for the next one's recipient */
	char *failure_reply; /* FAILED: what recipients routed here get */
	char failure[256];   /* FAILED: why, for the log */
};

/* A recipient the backend accepted (or the one at the backend now). */
struct lmtp_rcpt {
	char *address; /* as the client sent it, without <> */
	char user[USERNAME_MAX_LEN + 1];
	unsigned group_id;
	struct lmtp_backend *backend;
	char *reply; /* its reply to DATA, CRLF-terminated, once known */
	bool inflight; /* counted in daemon->lmtp_inflight[group_id] */
};

struct lmtp_client {
	struct daemon *daemon;
	struct stream *stream;
	struct event *resume; /* runs client_resume() from the event loop */
	struct client_ident id;
	char hostname[256];
	enum client_state state;
	bool lhlo_done;
	unsigned bad_commands;
	size_t line_max;
	char *parse_buf;
	size_t parse_buf_size;

	/* the transaction: from MAIL to the end of DATA (or RSET) */
	bool transaction;
	char *mail_from;         /* the reverse-path, without <> */
	char *mail_params;       /* what goes to the backends after it ("" or " BODY=...") */
	struct lmtp_rcpt *rcpts; /* accepted, in the client's order */
	size_t rcpt_count, rcpt_size;
	struct lmtp_backend *backends;

	/* CLIENT_WAITING: the RCPT being routed or at a backend, and its reply
	 * once known */
	struct router_wait *route_wait;
	struct lmtp_rcpt pending;
	char *pending_reply;
	char pending_reason[300]; /* set when the reply is ours, not the backend's */

	/* CLIENT_DATA / CLIENT_DELIVERING */
	struct evbuffer *message; /* as received, end marker included */
	size_t message_size;
	unsigned scan_state;
	bool message_too_big, bare_lf;
	char last_byte;
	size_t replies_written;
};

static void client_input(void *context);
static void backend_attempt(struct lmtp_backend *backend);
static void backend_output_drained(struct evbuffer *buffer, const struct evbuffer_cb_info *info,
				   void *context);

/* ---- small helpers ---- */

static void client_send(struct lmtp_client *client, const char *text)
{
	stream_write(client->stream, text, strlen(text));
}

#define client_sendf(client, ...) stream_printf((client)->stream, __VA_ARGS__)

static long ms_until(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static struct timeval ms_to_timeval(long ms)
{
	if (ms < 1)
		ms = 1;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

static int reply_code(const char *reply)
{
	return (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
}

/* The first line of a reply, fit for a quoted log field. */
static void log_safe(const char *text, char *dst, size_t dst_size)
{
	size_t i = 0;
	for (; text[i] != '\0' && text[i] != '\r' && text[i] != '\n' && i + 1 < dst_size &&
	       i < LOG_REPLY_MAX;
	     i++) {
		char c = text[i];
		dst[i] = c == '"' ? '\'' : c == '\\' ? '/' : (unsigned char)c < 0x20 ? ' ' : c;
	}
	dst[i] = '\0';
}

/* RFC 3461 xtext, as XCLIENT wants its values: '+', '=' and anything
 * outside '!'..'~' become "+HH". */
static void xtext_encode(const char *value, char *dst, size_t dst_size)
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

static void tempfail_reply(const char *address, char *dst, size_t dst_size)
{
	snprintf(dst, dst_size, "451 4.4.0 <%s> temporarily unavailable, try again later\r\n",
		 address);
}

/* One line per recipient result. */
static void log_rcpt(struct lmtp_client *client, const struct lmtp_rcpt *rcpt, const char *stage,
		     const char *reply, const char *reason)
{
	struct daemon *daemon = client->daemon;
	int code = reply_code(reply);
	const char *result = code < 300 ? "delivered" : code < 500 ? "tempfail" : "rejected";
	char safe_reply[LOG_REPLY_MAX + 1];
	log_safe(reply, safe_reply, sizeof(safe_reply));
	if (code >= 400 && code < 500)
		daemon->metrics.lmtp_recipients_tempfailed++;
	else if (code < 300)
		daemon->metrics.lmtp_recipients_delivered++;
	enum log_level level = code < 300 ? LOG_LEVEL_INFO : LOG_LEVEL_WARNING;
	if (reason != NULL && reason[0] != '\0')
		log_msg(level,
			"event=lmtp_rcpt stage=%s user=%s group=%u backend=%s result=%s "
			"client=%s:%u session=%s reply=\"%s\" reason=\"%s\"",
			stage, rcpt->user[0] != '\0' ? rcpt->user : "-", rcpt->group_id,
			rcpt->backend != NULL ? rcpt->backend->name : "-", result,
			client->id.client_ip, client->id.client_port, client->id.session_id,
			safe_reply, reason);
	else
		log_msg(level,
			"event=lmtp_rcpt stage=%s user=%s group=%u backend=%s result=%s "
			"client=%s:%u session=%s reply=\"%s\"",
			stage, rcpt->user[0] != '\0' ? rcpt->user : "-", rcpt->group_id,
			rcpt->backend != NULL ? rcpt->backend->name : "-", result,
			client->id.client_ip, client->id.client_port, client->id.session_id,
			safe_reply);
}

/* Runs client_resume() from the top of the event loop. */
static void client_schedule(struct lmtp_client *client)
{
	event_active(client->resume, EV_TIMEOUT, 1);
}

/* ---- bare LF normalisation ---- */

/* Rewrites a DATA body (end marker included) in which some LF is not
 * preceded by CR: the client's dot-stuffing is undone line by line (lines
 * end at CRLF only, as smtp_data_end_scan() sees them), every bare LF
 * becomes CRLF, and every resulting line that starts with "." is stuffed
 * again.  What a backend stores is then what the client meant by RFC 5321,
 * and no backend can see an end of data anywhere but at the end. */
static struct evbuffer *body_normalize(struct evbuffer *body)
{
	size_t len = evbuffer_get_length(body);
	const char *in = (const char *)evbuffer_pullup(body, -1);
	char *buf = malloc(len * 2 + 8);
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, buf, smtp_body_normalize(in, len, buf));
	free(buf);
	return out;
}

/* ---- backends ---- */

static void backend_close_socket(struct lmtp_backend *backend, bool quit)
{
	if (backend->bev == NULL)
		return;
	/* a polite QUIT when it fits into the socket at once: the backend
	 * then logs a clean end instead of a lost connection */
	if (quit && backend->spoke &&
	    evbuffer_get_length(bufferevent_get_output(backend->bev)) == 0) {
		ssize_t ignored = write(bufferevent_getfd(backend->bev), "QUIT\r\n", 6);
		(void)ignored;
	}
	evbuffer_remove_cb(bufferevent_get_output(backend->bev), backend_output_drained, backend);
	bufferevent_free(backend->bev); /* safe inside its own callbacks */
	backend->bev = NULL;
	backend->reply_len = 0;
}

static void backend_free(struct lmtp_backend *backend)
{
	backend_close_socket(backend, true);
	if (backend->timer != NULL)
		event_free(backend->timer);
	free(backend->reply);
	free(backend->failure_reply);
	free(backend);
}

static void backend_arm(struct lmtp_backend *backend, long ms)
{
	struct timeval tv = ms_to_timeval(ms);
	evtimer_add(backend->timer, &tv);
}

/* Connecting and the dialogue up to MAIL must be done by proxy_timeout
 * from now. */
static void backend_deadline_set(struct lmtp_backend *backend)
{
	unsigned timeout_ms = backend->client->daemon->set->proxy_timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &backend->deadline);
	backend->deadline.tv_sec += timeout_ms / 1000;
	backend->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (backend->deadline.tv_nsec >= 1000000000) {
		backend->deadline.tv_sec++;
		backend->deadline.tv_nsec -= 1000000000;
	}
}

static void backend_send(struct lmtp_backend *backend, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void backend_send(struct lmtp_backend *backend, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(backend->bev), fmt, args);
	va_end(args);
}

static void rcpt_set_reply(struct lmtp_rcpt *rcpt, const char *reply)
{
	if (rcpt->reply == NULL)
		rcpt->reply = strdup(reply);
}

/* What a recipient routed to a failed backend gets (allocated): the
 * backend's own refusal if it gave one, else 451. */
static char *backend_failure_reply(struct lmtp_backend *backend, const char *address)
{
	char reply[600];
	if (backend->failure_reply != NULL)
		return strdup(backend->failure_reply);
	tempfail_reply(address, reply, sizeof(reply));
	return strdup(reply);
}

/* The backend is gone (or refused the transaction): closes it, and gives
 * whoever waits on it a reply.  failure_reply (may be NULL: 451) is a whole
 * reply, CRLF-terminated. */
static void backend_fail(struct lmtp_backend *backend, const char *reason,
			 const char *failure_reply)
{
	struct lmtp_client *client = backend->client;
	enum backend_state was = backend->state;
	backend_close_socket(backend, true);
	evtimer_del(backend->timer);
	backend->retry_pending = false;
	backend->state = BACKEND_FAILED;
	snprintf(backend->failure, sizeof(backend->failure), "%s", reason);
	if (failure_reply != NULL && backend->failure_reply == NULL)
		backend->failure_reply = strdup(failure_reply);
	log_msg(was == BACKEND_IDLE ? LOG_LEVEL_INFO : LOG_LEVEL_WARNING,
		"event=lmtp_backend_failed backend=%s address=%s state=%s client=%s:%u "
		"session=%s reason=\"%s\"",
		backend->name, backend->address, backend_state_names[was], client->id.client_ip,
		client->id.client_port, client->id.session_id, reason);

	char reply[600];
	if (client->state == CLIENT_WAITING && client->pending.backend == backend &&
	    client->pending_reply == NULL) {
		client->pending_reply = backend_failure_reply(backend, client->pending.address);
		snprintf(client->pending_reason, sizeof(client->pending_reason), "%s", reason);
		client_schedule(client);
	}
	if (client->state == CLIENT_DELIVERING) {
		for (size_t i = 0; i < client->rcpt_count; i++) {
			struct lmtp_rcpt *rcpt = &client->rcpts[i];
			if (rcpt->backend != backend || rcpt->reply != NULL)
				continue;
			tempfail_reply(rcpt->address, reply, sizeof(reply));
			rcpt_set_reply(rcpt, reply);
		}
		client_schedule(client);
	}
}

/* The connection failed.  Connecting or the dialogue before MAIL: try again
 * within proxy_timeout if the backend never greeted us properly.  A kept
 * connection that fails when first used again: a new one.  Else: fail. */
static void backend_lost(struct lmtp_backend *backend, const char *reason)
{
	struct lmtp_client *client = backend->client;
	struct daemon *daemon = client->daemon;
	bool setup = backend->state <= BACKEND_MAIL;
	if (setup)
		daemon->metrics.backend_connect_failures++;
	if (setup && !backend->spoke) {
		backend_close_socket(backend, false);
		long left = ms_until(&backend->deadline);
		if (left > (long)daemon->set->proxy_connect_retry_ms) {
			log_info("event=backend_retry protocol=lmtp backend=%s address=%s "
				 "attempt=%u "
				 "session=%s reason=\"%s\"",
				 backend->name, backend->address, backend->attempts,
				 client->id.session_id, reason);
			backend->retry_pending = true;
			backend->state = BACKEND_CONNECTING;
			backend_arm(backend, daemon->set->proxy_connect_retry_ms);
			return;
		}
		char why[400];
		snprintf(why, sizeof(why), "%s (gave up after %u attempt(s) within proxy_timeout)",
			 reason, backend->attempts);
		backend_fail(backend, why, NULL);
		return;
	}
	bool waited_on = client->state == CLIENT_WAITING && client->pending.backend == backend &&
			 client->pending_reply == NULL;
	if (backend->reused && waited_on &&
	    (backend->state == BACKEND_MAIL || backend->state == BACKEND_RSET)) {
		/* the connection kept from an earlier transaction is dead (the
		 * backend closed it meanwhile): a new one, as if there had been none */
		log_info("event=backend_reconnect protocol=lmtp backend=%s address=%s session=%s "
			 "reason=\"%s\"",
			 backend->name, backend->address, client->id.session_id, reason);
		backend_close_socket(backend, false);
		backend_deadline_set(backend);
		backend_attempt(backend);
		return;
	}
	backend_fail(backend, reason, NULL);
}

static void backend_send_rcpt(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	backend_send(backend, "RCPT TO:<%s>\r\n", client->pending.address);
	backend->state = BACKEND_RCPT;
	backend_arm(backend, client->daemon->set->proxy_timeout_ms);
}

/* MAIL for the client's transaction, with the RCPT it waits on in the
 * same write when the backend takes PIPELINING (RFC 2920): one round trip
 * less per message.  Should MAIL fail, the connection is closed, so the
 * RCPT's reply need not be read. */
static void backend_send_mail(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	backend_send(backend, "MAIL FROM:<%s>%s\r\n", client->mail_from, client->mail_params);
	backend->state = BACKEND_MAIL;
	backend->accepted = 0;
	backend->rcpt_pipelined = backend->pipelining && client->state == CLIENT_WAITING &&
				  client->pending.backend == backend &&
				  client->pending_reply == NULL;
	if (backend->rcpt_pipelined)
		backend_send(backend, "RCPT TO:<%s>\r\n", client->pending.address);
}

/* The backend can take the next step of the RCPT the client waits on. */
static void backend_serve_pending(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	if (client->state != CLIENT_WAITING || client->pending.backend != backend ||
	    client->pending_reply != NULL)
		return;
	if (backend->state == BACKEND_IDLE) {
		backend_send_mail(backend);
		backend_arm(backend, client->daemon->set->proxy_timeout_ms);
	} else if (backend->state == BACKEND_READY) {
		backend_send_rcpt(backend);
	}
}

/* Between transactions: nothing in flight, no timer. */
static void backend_idle(struct lmtp_backend *backend)
{
	evtimer_del(backend->timer);
	evbuffer_remove_cb(bufferevent_get_output(backend->bev), backend_output_drained, backend);
	backend->state = BACKEND_IDLE;
	backend->reused = true;
	backend->accepted = 0;
}

static void backend_send_xclient(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	char addr[128], session[80], cmd[400];
	unsigned attrs = backend->xclient_attrs;
	size_t n = (size_t)snprintf(cmd, sizeof(cmd), "XCLIENT");
	if ((attrs & XCLIENT_ADDR) != 0 && net_is_ip_address(client->id.client_ip)) {
		xtext_encode(client->id.client_ip, addr, sizeof(addr));
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " ADDR=%s%s",
				      strchr(client->id.client_ip, ':') != NULL ? "IPV6:" : "",
				      addr);
	}
	if ((attrs & XCLIENT_PORT) != 0)
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " PORT=%u", client->id.client_port);
	if ((attrs & XCLIENT_SESSION) != 0) {
		xtext_encode(client->id.session_id, session, sizeof(session));
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " SESSION=%s", session);
	}
	if ((attrs & XCLIENT_TTL) != 0)
		n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " TTL=%u",
				      client_ident_ttl(&client->id));
	if ((attrs & XCLIENT_HOPS) != 0 && backend->forward)
		snprintf(cmd + n, sizeof(cmd) - n, " HOPS=%u", client->id.hops + 1);
	backend_send(backend, "%s\r\n", cmd);
	backend->state = BACKEND_XCLIENT;
}

/* Whether an LHLO reply has a line "250-KEYWORD" (or "250 KEYWORD"), with
 * or without parameters. */
static bool reply_has_keyword(const char *reply, const char *keyword)
{
	size_t kw_len = strlen(keyword);
	for (const char *line = reply; *line != '\0';) {
		const char *end = strstr(line, "\r\n");
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
		if (len >= 4 + kw_len && strncasecmp(line + 4, keyword, kw_len) == 0 &&
		    (len == 4 + kw_len || line[4 + kw_len] == ' '))
			return true;
		if (end == NULL)
			break;
		line = end + 2;
	}
	return false;
}

/* "250-XCLIENT ADDR PORT ..." in an LHLO reply: which of ours it takes. */
static unsigned parse_xclient_attrs(const char *reply)
{
	unsigned attrs = 0;
	for (const char *line = reply; *line != '\0';) {
		const char *end = strstr(line, "\r\n");
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
		if (len > 12 && strncasecmp(line + 4, "XCLIENT ", 8) == 0) {
			char words[512];
			snprintf(words, sizeof(words), "%.*s", (int)(len - 12), line + 12);
			for (char *save, *w = strtok_r(words, " ", &save); w != NULL;
			     w = strtok_r(NULL, " ", &save)) {
				if (strcasecmp(w, "ADDR") == 0)
					attrs |= XCLIENT_ADDR;
				else if (strcasecmp(w, "PORT") == 0)
					attrs |= XCLIENT_PORT;
				else if (strcasecmp(w, "SESSION") == 0)
					attrs |= XCLIENT_SESSION;
				else if (strcasecmp(w, "TTL") == 0)
					attrs |= XCLIENT_TTL;
				else if (strcasecmp(w, "HOPS") == 0)
					attrs |= XCLIENT_HOPS;
			}
		}
		if (end == NULL)
			break;
		line = end + 2;
	}
	return attrs;
}

/* The next recipient (in the client's order) held by backend that has no
 * DATA reply yet: the one its next reply is for. */
static struct lmtp_rcpt *backend_next_rcpt(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	for (; backend->next_rcpt < client->rcpt_count; backend->next_rcpt++) {
		struct lmtp_rcpt *rcpt = &client->rcpts[backend->next_rcpt];
		if (rcpt->backend == backend && rcpt->reply == NULL)
			return rcpt;
	}
	return NULL;
}

static void backend_output_drained(struct evbuffer *buffer, const struct evbuffer_cb_info *info,
				   void *context)
{
	struct lmtp_backend *backend = context;
	/* the backend is taking the message: it is alive */
	if (info->n_deleted > 0 && backend->state == BACKEND_DATA_REPLIES)
		backend_arm(backend, backend->client->daemon->set->proxy_timeout_ms);
}

static void backend_send_message(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	struct evbuffer *out = bufferevent_get_output(backend->bev);
	/* by reference: several backends share one copy of the message */
	if (evbuffer_add_buffer_reference(out, client->message) < 0) {
		size_t len = evbuffer_get_length(client->message);
		evbuffer_add(out, evbuffer_pullup(client->message, -1), len);
	}
	evbuffer_add_cb(out, backend_output_drained, backend);
	backend->state = BACKEND_DATA_REPLIES;
	backend->next_rcpt = 0;
	backend_arm(backend, client->daemon->set->proxy_timeout_ms);
}

/* One complete reply (reply: its lines, each with CRLF) in the backend's
 * current state. */
static void backend_reply(struct lmtp_backend *backend, int code, const char *reply)
{
	struct lmtp_client *client = backend->client;
	char reason[400], safe[LOG_REPLY_MAX + 1];
	log_safe(reply, safe, sizeof(safe));
	switch (backend->state) {
	case BACKEND_GREETING:
		if (code != 220) {
			snprintf(reason, sizeof(reason), "backend greeting was not 220: %s", safe);
			backend_lost(backend, reason);
			return;
		}
		backend->spoke = true;
		backend_send(backend, "LHLO %s\r\n", client->hostname);
		backend->state = BACKEND_LHLO;
		return;
	case BACKEND_LHLO:
	case BACKEND_LHLO_AGAIN:
		if (code != 250) {
			snprintf(reason, sizeof(reason), "backend refused LHLO: %s", safe);
			backend_lost(backend, reason);
			return;
		}
		backend->pipelining = reply_has_keyword(reply, "PIPELINING");
		if (backend->state == BACKEND_LHLO) {
			backend->xclient_attrs = parse_xclient_attrs(reply);
			if (backend->forward && (backend->xclient_attrs & XCLIENT_HOPS) == 0) {
				snprintf(reason, sizeof(reason),
					 "the load balancer %s:%d does not offer XCLIENT HOPS to "
					 "us, so it would not take our forwarding: is this host in "
					 "the other site's login_trusted_networks?",
					 backend->address, backend->port);
				backend_fail(backend, reason, NULL);
				return;
			}
			if (backend->xclient_attrs != 0) {
				backend_send_xclient(backend);
				return;
			}
		}
		backend_send_mail(backend);
		return;
	case BACKEND_XCLIENT:
		if (code == 220) {
			/* a new session, as after a new connection: LHLO again */
			backend_send(backend, "LHLO %s\r\n", client->hostname);
			backend->state = BACKEND_LHLO_AGAIN;
		} else if (code / 100 == 2) {
			backend_send_mail(backend);
		} else if (backend->forward) {
			snprintf(
				reason, sizeof(reason),
				"the load balancer %s:%d refused our forwarding (XCLIENT HOPS): %s",
				backend->address, backend->port, safe);
			backend_fail(backend, reason, NULL);
		} else {
			/* the mail matters more than the client's address in the
			 * backend's log: go on without */
			log_warning("event=lmtp_xclient_refused backend=%s address=%s session=%s "
				    "reply=\"%s\"",
				    backend->name, backend->address, client->id.session_id, safe);
			backend_send_mail(backend);
		}
		return;
	case BACKEND_MAIL:
		if (code / 100 != 2) {
			/* it will take no recipient in this transaction: they get
			 * its answer (a 5xx only if it said one) */
			snprintf(reason, sizeof(reason), "backend refused MAIL FROM: %s", safe);
			backend_fail(backend, reason, code >= 400 ? reply : NULL);
			return;
		}
		if (backend->rcpt_pipelined) {
			/* its reply comes next */
			backend->state = BACKEND_RCPT;
			backend_arm(backend, client->daemon->set->proxy_timeout_ms);
			return;
		}
		backend->state = BACKEND_READY;
		evtimer_del(backend->timer);
		backend_serve_pending(backend);
		return;
	case BACKEND_RCPT:
		backend->state = BACKEND_READY;
		evtimer_del(backend->timer);
		if (code / 100 == 2)
			backend->accepted++;
		client->pending_reply = strdup(reply);
		client->pending_reason[0] = '\0';
		client_schedule(client);
		return;
	case BACKEND_DATA:
		if (code != 354) {
			/* one answer for all its recipients */
			for (struct lmtp_rcpt *rcpt; (rcpt = backend_next_rcpt(backend)) != NULL;)
				rcpt_set_reply(rcpt, reply);
			snprintf(reason, sizeof(reason), "backend refused DATA: %s", safe);
			backend_fail(backend, reason, NULL);
			client_schedule(client);
			return;
		}
		backend_send_message(backend);
		return;
	case BACKEND_DATA_REPLIES: {
		struct lmtp_rcpt *rcpt = backend_next_rcpt(backend);
		if (rcpt == NULL) {
			backend_fail(backend, "backend sent more replies than recipients", NULL);
			return;
		}
		rcpt_set_reply(rcpt, reply);
		backend_arm(backend, client->daemon->set->proxy_timeout_ms);
		if (backend_next_rcpt(backend) == NULL)
			backend_idle(backend); /* kept for the next transaction */
		client_schedule(client);
		return;
	}
	case BACKEND_RSET:
		if (code / 100 != 2) {
			snprintf(reason, sizeof(reason), "backend refused RSET: %s", safe);
			backend_lost(backend, reason);
			return;
		}
		backend_idle(backend);
		backend_serve_pending(backend);
		return;
	case BACKEND_CONNECTING:
	case BACKEND_READY:
	case BACKEND_IDLE:
	case BACKEND_FAILED:
		break;
	}
	if (backend->state == BACKEND_IDLE)
		snprintf(reason, sizeof(reason), "backend ended the idle connection: %s", safe);
	else
		snprintf(reason, sizeof(reason), "unexpected reply from backend: %s", safe);
	backend_fail(backend, reason, NULL);
}

/* One line from the backend. */
static void backend_line(struct lmtp_backend *backend, const char *line, size_t len)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-') ||
	    memchr(line, '\0', len) != NULL) {
		char reason[300], safe[LOG_REPLY_MAX + 1];
		char copy[LOG_REPLY_MAX + 1];
		snprintf(copy, sizeof(copy), "%.*s",
			 (int)(len < LOG_REPLY_MAX ? len : LOG_REPLY_MAX), line);
		log_safe(copy, safe, sizeof(safe));
		snprintf(reason, sizeof(reason), "backend sent a malformed reply line: %s", safe);
		backend_lost(backend, reason);
		return;
	}
	if (backend->reply_len + len + 3 > BACKEND_REPLY_MAX) {
		backend_lost(backend, "backend sent a reply longer than 64 KB");
		return;
	}
	if (backend->reply_len + len + 3 > backend->reply_size) {
		size_t size = backend->reply_size == 0 ? 256 : backend->reply_size;
		while (size < backend->reply_len + len + 3)
			size *= 2;
		backend->reply = realloc(backend->reply, size);
		backend->reply_size = size;
	}
	memcpy(backend->reply + backend->reply_len, line, len);
	backend->reply_len += len;
	memcpy(backend->reply + backend->reply_len, "\r\n", 3);
	backend->reply_len += 2;
	if (len > 3 && line[3] == '-')
		return; /* more lines follow */
	int code = reply_code(backend->reply);
	backend->reply_len = 0;
	backend_reply(backend, code, backend->reply);
}

static void backend_readable(struct bufferevent *bev, void *context)
{
	struct lmtp_backend *backend = context;
	struct evbuffer *input = bufferevent_get_input(bev);
	for (;;) {
		size_t len;
		char *line = evbuffer_readln(input, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL)
			break;
		backend_line(backend, line, len);
		free(line);
		/* closed, or replaced by a new connection: the rest of this
		 * one's input is no longer anyone's */
		if (backend->bev != bev)
			return;
	}
	if (evbuffer_get_length(input) > BACKEND_REPLY_MAX)
		backend_lost(backend, "backend sent a line longer than 64 KB");
}

static void backend_event(struct bufferevent *bev, short what, void *context)
{
	struct lmtp_backend *backend = context;
	char reason[300];
	if ((what & BEV_EVENT_CONNECTED) != 0) {
		net_set_tcp_options(bufferevent_getfd(bev));
		backend->state = BACKEND_GREETING;
		return;
	}
	if ((what & BEV_EVENT_EOF) != 0)
		snprintf(reason, sizeof(reason), "backend %s closed the connection",
			 backend->address);
	else
		snprintf(reason, sizeof(reason), "%s %s: %s",
			 backend->state == BACKEND_CONNECTING ? "cannot connect to"
							      : "connection to",
			 backend->address, strerror(EVUTIL_SOCKET_ERROR()));
	backend_lost(backend, reason);
}

static void backend_timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct lmtp_backend *backend = context;
	if (backend->retry_pending) {
		backend->retry_pending = false;
		backend_attempt(backend);
		return;
	}
	char reason[200];
	if (backend->state == BACKEND_CONNECTING)
		snprintf(reason, sizeof(reason), "connect to %s timed out", backend->address);
	else if (backend->state <= BACKEND_MAIL)
		snprintf(reason, sizeof(reason),
			 "backend did not complete the greeting dialogue (%s) within proxy_timeout",
			 backend_state_names[backend->state]);
	else
		snprintf(reason, sizeof(reason), "backend did not answer %s within proxy_timeout",
			 backend_state_names[backend->state]);
	backend_lost(backend, reason);
}

static void backend_attempt(struct lmtp_backend *backend)
{
	struct lmtp_client *client = backend->client;
	struct daemon *daemon = client->daemon;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char reason[300];
	backend->attempts++;
	backend->spoke = false;
	backend->reused = false;
	backend->state = BACKEND_CONNECTING;
	backend->reply_len = 0;
	if (net_parse_ip_port(backend->address, backend->port, &addr, &addr_len) < 0) {
		snprintf(reason, sizeof(reason), "backend address '%s' is not an IP address",
			 backend->address);
		backend_fail(backend, reason, NULL);
		return;
	}
	backend_arm(backend, ms_until(&backend->deadline));
	int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot create a socket: %s", strerror(errno));
		backend_lost(backend, reason);
		return;
	}
	backend->bev = bufferevent_socket_new(daemon->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(backend->bev, backend_readable, NULL, backend_event, backend);
	bufferevent_enable(backend->bev, EV_READ | EV_WRITE);
	/* errors such as a refused connection come back as a (deferred) event */
	if (bufferevent_socket_connect(backend->bev, (struct sockaddr *)&addr, (int)addr_len) < 0) {
		snprintf(reason, sizeof(reason), "cannot connect to %s: %s", backend->address,
			 strerror(errno));
		backend_lost(backend, reason);
	}
}

/* The connection a routed recipient goes through: its backend's, or for
 * a group in another site, that site's load balancer's (one per site). */
static void backend_key(const struct route_result *route, char *dst, size_t dst_size)
{
	if (route->via_site[0] != '\0')
		snprintf(dst, dst_size, "site:%s", route->via_site);
	else
		snprintf(dst, dst_size, "%s", route->backend.name);
}

static struct lmtp_backend *backend_create(struct lmtp_client *client,
					   const struct route_result *route)
{
	struct lmtp_backend *backend = calloc(1, sizeof(*backend));
	backend->client = client;
	backend_key(route, backend->name, sizeof(backend->name));
	const char *address;
	backend->forward = login_route_target(route, client->daemon->set->backend_port_lmtp,
					      &address, &backend->port);
	snprintf(backend->address, sizeof(backend->address), "%s", address);
	backend->timer = evtimer_new(client->daemon->base, backend_timer_fired, backend);
	backend_deadline_set(backend);
	backend->next = client->backends;
	client->backends = backend;
	return backend;
}

static struct lmtp_backend *backend_find(struct lmtp_client *client, const char *name)
{
	for (struct lmtp_backend *backend = client->backends; backend != NULL;
	     backend = backend->next) {
		if (strcmp(backend->name, name) == 0)
			return backend;
	}
	return NULL;
}

/* ---- the transaction ---- */

static void rcpt_clear(struct lmtp_client *client, struct lmtp_rcpt *rcpt)
{
	if (rcpt->inflight)
		client->daemon->lmtp_inflight[rcpt->group_id]--;
	free(rcpt->address);
	free(rcpt->reply);
	memset(rcpt, 0, sizeof(*rcpt));
}

static void backend_remove(struct lmtp_client *client, struct lmtp_backend *backend)
{
	for (struct lmtp_backend **p = &client->backends; *p != NULL; p = &(*p)->next) {
		if (*p == backend) {
			*p = backend->next;
			backend_free(backend);
			return;
		}
	}
}

/* Ends the transaction (RSET semantics).  keep_backends: connections that
 * are idle stay, those holding MAIL get RSET and stay, the rest are closed
 * (closing aborts whatever a backend holds that has not been through
 * DATA).  Else every connection is closed. */
static void transaction_reset(struct lmtp_client *client, bool keep_backends)
{
	struct lmtp_backend **p = &client->backends;
	while (*p != NULL) {
		struct lmtp_backend *backend = *p;
		backend->used = false;
		if (keep_backends && backend->state == BACKEND_READY) {
			backend_send(backend, "RSET\r\n");
			backend->state = BACKEND_RSET;
			backend->accepted = 0;
			backend_arm(backend, client->daemon->set->proxy_timeout_ms);
		}
		if (keep_backends &&
		    (backend->state == BACKEND_IDLE || backend->state == BACKEND_RSET)) {
			p = &backend->next;
			continue;
		}
		*p = backend->next;
		backend_free(backend);
	}
	for (size_t i = 0; i < client->rcpt_count; i++)
		rcpt_clear(client, &client->rcpts[i]);
	free(client->rcpts);
	client->rcpts = NULL;
	client->rcpt_count = client->rcpt_size = 0;
	rcpt_clear(client, &client->pending);
	free(client->pending_reply);
	client->pending_reply = NULL;
	free(client->mail_from);
	free(client->mail_params);
	client->mail_from = client->mail_params = NULL;
	if (client->message != NULL) {
		evbuffer_free(client->message);
		client->message = NULL;
	}
	client->message_size = 0;
	client->transaction = false;
}

/* ---- the client's life ---- */

static void client_destroy(struct lmtp_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=lmtp client=%s:%u session=%s reason=\"%s\"",
			 client->id.client_ip, client->id.client_port, client->id.session_id,
			 reason);
	router_wait_cancel(&client->route_wait);
	transaction_reset(client, false);
	event_free(client->resume);
	stream_destroy(&client->stream);
	free(client->parse_buf);
	client->daemon->client_count--;
	free(client);
}

/* Sends a last line, then closes once it is written (bounded). */
static void client_close_after(struct lmtp_client *client, const char *line, const char *reason)
{
	log_info("event=disconnect protocol=lmtp client=%s:%u session=%s reason=\"%s\"",
		 client->id.client_ip, client->id.client_port, client->id.session_id, reason);
	transaction_reset(client, false);
	client->state = CLIENT_CLOSING;
	if (line != NULL)
		client_send(client, line);
	stream_close_after_flush(client->stream);
}

static void client_flushed(void *context)
{
	client_destroy(context, NULL);
}

static void client_closed(void *context, const char *reason)
{
	struct lmtp_client *client = context;
	if (client->state == CLIENT_DATA)
		log_warning("event=lmtp_data_aborted client=%s:%u session=%s recipients=%zu "
			    "received=%zu reason=\"client went away before the end of the message; "
			    "nothing delivered\"",
			    client->id.client_ip, client->id.client_port, client->id.session_id,
			    client->rcpt_count, client->message_size);
	client_destroy(client, client->state == CLIENT_CLOSING ? NULL : reason);
}

static void client_timeout(void *context)
{
	struct lmtp_client *client = context;
	char line[400];
	client->daemon->metrics.prelogin_timeouts++;
	snprintf(line, sizeof(line), "421 4.4.2 %s Timeout, closing connection\r\n",
		 client->hostname);
	client_close_after(client, line, "idle for prelogin_timeout");
}

static const struct stream_callbacks client_stream_callbacks = {
	.input = client_input,
	.timeout = client_timeout,
	.closed = client_closed,
	.flushed = client_flushed,
};

/* Back to reading commands: what the client pipelined is processed now. */
static void client_continue(struct lmtp_client *client)
{
	client->state = CLIENT_COMMANDS;
	stream_read_enable(client->stream, true);
	client_input(client);
}

/* The RCPT at the backend has its reply. */
static void rcpt_finish(struct lmtp_client *client)
{
	char *reply = client->pending_reply;
	client->pending_reply = NULL;
	client_send(client, reply);
	if (client->pending.backend != NULL && client->pending.backend->forward) {
		/* another site's load balancer took the recipient, or not */
		if (reply_code(reply) / 100 == 2)
			client->daemon->metrics.site_forwards++;
		else
			client->daemon->metrics.site_forwards_failed++;
	}
	if (reply_code(reply) / 100 == 2) {
		if (client->rcpt_count == client->rcpt_size) {
			client->rcpt_size = client->rcpt_size == 0 ? 8 : client->rcpt_size * 2;
			client->rcpts =
				realloc(client->rcpts, client->rcpt_size * sizeof(*client->rcpts));
		}
		client->rcpts[client->rcpt_count++] = client->pending;
		memset(&client->pending, 0, sizeof(client->pending));
	} else {
		log_rcpt(client, &client->pending, "rcpt", reply, client->pending_reason);
		rcpt_clear(client, &client->pending);
	}
	free(reply);
}

/* DATA replies, in the client's RCPT order, as far as they are known;
 * true once all are out. */
static bool data_replies_write(struct lmtp_client *client)
{
	while (client->replies_written < client->rcpt_count) {
		struct lmtp_rcpt *rcpt = &client->rcpts[client->replies_written];
		if (rcpt->reply == NULL)
			return false;
		client_send(client, rcpt->reply);
		const char *reason = NULL;
		if (rcpt->backend != NULL && rcpt->backend->state == BACKEND_FAILED &&
		    reply_code(rcpt->reply) / 100 == 4)
			reason = rcpt->backend->failure;
		log_rcpt(client, rcpt, "data", rcpt->reply, reason);
		client->replies_written++;
	}
	return true;
}

static void client_resume(evutil_socket_t fd, short what, void *context)
{
	struct lmtp_client *client = context;
	switch (client->state) {
	case CLIENT_WAITING:
		if (client->pending_reply == NULL)
			return;
		rcpt_finish(client);
		client_continue(client); /* may free the client */
		return;
	case CLIENT_DELIVERING:
		if (!data_replies_write(client))
			return;
		transaction_reset(client, true);
		client_continue(client); /* may free the client */
		return;
	case CLIENT_COMMANDS:
	case CLIENT_DATA:
	case CLIENT_CLOSING:
		return;
	}
}

/* ---- commands ---- */

/* A protocol error by the client; false if it was one too many. */
static bool client_bad_command(struct lmtp_client *client, const char *reply)
{
	struct daemon *daemon = client->daemon;
	daemon->metrics.prelogin_bad_commands++;
	if (++client->bad_commands >= daemon->set->bad_commands_max) {
		client_close_after(client,
				   "421 4.7.0 Too many invalid commands, closing connection\r\n",
				   "too many invalid commands");
		return false;
	}
	client_send(client, reply);
	return true;
}

static void cmd_lhlo(struct lmtp_client *client, const struct smtp_command *cmd)
{
	if (cmd->args[0] == '\0') {
		client_bad_command(client, "501 5.5.4 LHLO requires a domain name\r\n");
		return;
	}
	transaction_reset(client, true);
	client->lhlo_done = true;
	client_sendf(client,
		     "250-%s\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
		     "%s250 SIZE %zu\r\n",
		     client->hostname,
		     client->id.trusted && !client->id.forwarded
			     ? "250-XCLIENT ADDR PORT SESSION TTL HOPS\r\n"
			     : "",
		     client->daemon->set->lmtp_message_max);
}

/* XCLIENT from a peer in login_trusted_networks (another site's daemon):
 * who the client is and how many sites forwarded it; then a new greeting
 * and LHLO again.  Returns false if the client must stop reading. */
static bool cmd_xclient(struct lmtp_client *client, const struct smtp_command *cmd)
{
	if (client_ident_xclient_refused(&client->id, "lmtp") || client->id.forwarded)
		return client_bad_command(client, "502 5.5.1 Command not implemented\r\n");
	if (client->transaction) {
		client_send(client, "503 5.5.1 XCLIENT not permitted in a transaction\r\n");
		return true;
	}
	struct client_ident copy = client->id;
	const char *error;
	if (client_ident_xclient(&copy, cmd->args, &error) < 0) {
		char reply[300];
		snprintf(reply, sizeof(reply), "501 5.5.4 Invalid XCLIENT: %s\r\n", error);
		return client_bad_command(client, reply);
	}
	client->id = copy;
	client_ident_forward_log(&client->id, "lmtp");
	client->daemon->metrics.site_forwarded_in += client->id.hops > 0 ? 1 : 0;
	transaction_reset(client, false);
	client->lhlo_done = false;
	client_sendf(client, "220 %s LMTP mailcluster ready\r\n", client->hostname);
	return true;
}

/* MAIL parameters: BODY= goes on to the backends, SIZE= is checked here
 * (Dovecot does not take it), anything else was never advertised. */
static bool mail_params_check(struct lmtp_client *client, const char *params, char *forward,
			      size_t forward_size)
{
	char copy[600];
	size_t n = 0;
	forward[0] = '\0';
	snprintf(copy, sizeof(copy), "%s", params);
	for (char *save, *param = strtok_r(copy, " ", &save); param != NULL;
	     param = strtok_r(NULL, " ", &save)) {
		char *value = strchr(param, '=');
		if (value != NULL)
			*value++ = '\0';
		if (strcasecmp(param, "BODY") == 0 && value != NULL &&
		    (strcasecmp(value, "7BIT") == 0 || strcasecmp(value, "8BITMIME") == 0)) {
			n += (size_t)snprintf(forward + n, forward_size - n, " BODY=%s", value);
		} else if (strcasecmp(param, "SIZE") == 0 && value != NULL && value[0] != '\0' &&
			   strspn(value, "0123456789") == strlen(value)) {
			unsigned long long size = strtoull(value, NULL, 10);
			if (strlen(value) > 18 || size > client->daemon->set->lmtp_message_max) {
				client_send(client, "552 5.3.4 Message size exceeds fixed maximum "
						    "message size\r\n");
				return false;
			}
		} else {
			client_bad_command(client, "555 5.5.4 Unsupported MAIL parameter\r\n");
			return false;
		}
	}
	return true;
}

static void cmd_mail(struct lmtp_client *client, const struct smtp_command *cmd)
{
	if (!client->lhlo_done) {
		client_send(client, "503 5.5.1 Send LHLO first\r\n");
		return;
	}
	if (client->transaction) {
		client_send(client, "503 5.5.1 Nested MAIL command\r\n");
		return;
	}
	char forward[600];
	if (!mail_params_check(client, cmd->params, forward, sizeof(forward)))
		return;
	client->transaction = true;
	client->mail_from = strdup(cmd->path);
	client->mail_params = strdup(forward);
	client_send(client, "250 2.1.0 Sender OK\r\n");
}

static void rcpt_routed(void *context, enum route_status status, const struct route_result *route,
			const char *reason);
static bool rcpt_route(struct lmtp_client *client, enum route_status status,
		       const struct route_result *route, const char *reason, bool async);

/* Returns false if the client now waits for a backend. */
static bool cmd_rcpt(struct lmtp_client *client, const struct smtp_command *cmd)
{
	struct daemon *daemon = client->daemon;
	if (!client->transaction) {
		client_send(client, "503 5.5.1 MAIL needed first\r\n");
		return true;
	}
	if (cmd->params[0] != '\0') {
		client_bad_command(client, "555 5.5.4 Unsupported RCPT parameter\r\n");
		return true;
	}
	if (client->rcpt_count >= daemon->set->lmtp_recipients_max) {
		client_send(client, "452 4.5.3 Too many recipients\r\n");
		return true;
	}
	char local_part[SMTP_PATH_MAX + 1];
	const char *user = cmd->path;
	if (daemon->set->lmtp_username == LMTP_USERNAME_LOCALPART) {
		if (smtp_address_local_part(cmd->path, local_part, sizeof(local_part)) < 0) {
			client_send(client, "501 5.1.3 Invalid recipient address\r\n");
			return true;
		}
		user = local_part;
	}
	struct lmtp_rcpt *rcpt = &client->pending;
	rcpt_clear(client, rcpt);
	rcpt->address = strdup(cmd->path);
	struct route_result route;
	const char *reason = NULL;
	enum route_status status = router_route(daemon, user, &route, &reason, rcpt_routed, client,
						&client->route_wait);
	if (status == ROUTE_ASSIGN) {
		/* the group is being assigned: read nothing meanwhile */
		snprintf(rcpt->user, sizeof(rcpt->user), "%s", route.username);
		rcpt->group_id = route.group_id;
		client->state = CLIENT_WAITING;
		stream_read_enable(client->stream, false);
		return false;
	}
	return rcpt_route(client, status, &route, reason, false);
}

/* The reply to a RCPT that goes to no backend.  From a callback (async)
 * it goes through client_resume() like a backend's reply. */
static void rcpt_reply_ours(struct lmtp_client *client, const char *reply, const char *reason,
			    bool async)
{
	if (async) {
		client->pending_reply = strdup(reply);
		snprintf(client->pending_reason, sizeof(client->pending_reason), "%s",
			 reason != NULL ? reason : "");
		client_schedule(client);
		return;
	}
	client_send(client, reply);
	log_rcpt(client, &client->pending, "rcpt", reply, reason);
	rcpt_clear(client, &client->pending);
}

static void rcpt_routed(void *context, enum route_status status, const struct route_result *route,
			const char *reason)
{
	struct lmtp_client *client = context;
	client->route_wait = NULL;
	rcpt_route(client, status, route, reason, true);
}

/* The rest of RCPT once its user is routed.  Returns false if the client
 * now waits for a backend (or, async, for client_resume()). */
static bool rcpt_route(struct lmtp_client *client, enum route_status status,
		       const struct route_result *routed, const char *reason, bool async)
{
	struct lmtp_rcpt *rcpt = &client->pending;
	const char *path = rcpt->address;
	char reply[600];
	/* a group in another site: that site's load balancer, unless this
	 * session came from another site already (a loop) */
	struct route_result site_route = *routed;
	const struct route_result *route = &site_route;
	if (status == ROUTE_OK)
		status =
			login_route_site(client->daemon, "lmtp", &client->id, &site_route, &reason);
	snprintf(rcpt->user, sizeof(rcpt->user), "%.*s", (int)sizeof(rcpt->user) - 1,
		 route->username[0] != '\0' ? route->username : "-");
	rcpt->group_id = route->group_id;
	switch (status) {
	case ROUTE_OK:
		break;
	case ROUTE_BAD_USER:
		snprintf(reply, sizeof(reply), "550 5.1.3 <%s> is not a valid user name\r\n", path);
		rcpt_reply_ours(client, reply, reason, async);
		return async ? false : true;
	case ROUTE_UNAVAILABLE:
	case ROUTE_ERROR:
	case ROUTE_ASSIGN:
		if (status == ROUTE_ERROR)
			log_error("event=geodb_error user=%s reason=\"%s\"", rcpt->user, reason);
		tempfail_reply(path, reply, sizeof(reply));
		rcpt_reply_ours(client, reply, reason, async);
		return async ? false : true;
	}
	char key[NAME_MAX_LEN + 8];
	backend_key(route, key, sizeof(key));
	struct lmtp_backend *backend = backend_find(client, key);
	if (backend != NULL && backend->state == BACKEND_FAILED && !backend->used) {
		/* a connection kept from an earlier transaction that died
		 * meanwhile: it is no answer for this one */
		backend_remove(client, backend);
		backend = NULL;
	}
	rcpt->backend = backend;
	/* from here until the transaction ends this recipient is in flight
	 * for its group: a move of the group waits for it (router.h) */
	if (!rcpt->inflight) {
		rcpt->inflight = true;
		client->daemon->lmtp_inflight[rcpt->group_id]++;
	}
	if (backend != NULL && backend->state == BACKEND_FAILED) {
		char *failure = backend_failure_reply(backend, path);
		if (async) {
			client->pending_reply = failure;
			snprintf(client->pending_reason, sizeof(client->pending_reason), "%s",
				 backend->failure);
			client_schedule(client);
			return false;
		}
		client_send(client, failure);
		log_rcpt(client, rcpt, "rcpt", failure, backend->failure);
		free(failure);
		rcpt_clear(client, rcpt);
		return true;
	}
	/* wait for the backend's answer; read nothing meanwhile */
	client->state = CLIENT_WAITING;
	stream_read_enable(client->stream, false);
	if (backend == NULL) {
		backend = backend_create(client, route);
		rcpt->backend = backend;
		backend->used = true;
		backend_attempt(backend);
	} else {
		/* idle: MAIL first; RSET in flight: MAIL after its reply */
		backend->used = true;
		backend_serve_pending(backend);
	}
	return false;
}

/* Returns false if the client must stop reading (delivering). */
static bool cmd_data(struct lmtp_client *client, const struct smtp_command *cmd)
{
	if (cmd->args[0] != '\0')
		return client_bad_command(client, "501 5.5.4 DATA takes no arguments\r\n");
	if (!client->transaction) {
		client_send(client, "503 5.5.1 MAIL needed first\r\n");
		return true;
	}
	if (client->rcpt_count == 0) {
		client_send(client, "554 5.5.1 No valid recipients\r\n");
		return true;
	}
	client->message = evbuffer_new();
	client->message_size = 0;
	client->scan_state = 0;
	client->message_too_big = client->bare_lf = false;
	client->last_byte = '\0';
	client->state = CLIENT_DATA;
	client_send(client, "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	return true;
}

static void cmd_rset(struct lmtp_client *client, const struct smtp_command *cmd)
{
	if (cmd->args[0] != '\0') {
		client_bad_command(client, "501 5.5.4 RSET takes no arguments\r\n");
		return;
	}
	transaction_reset(client, true);
	client_send(client, "250 2.0.0 OK\r\n");
}

/* Returns false if the client must stop reading. */
static bool handle_command(struct lmtp_client *client, const struct smtp_command *cmd)
{
	char line[400];
	switch (cmd->verb) {
	case SMTP_VERB_LHLO:
		cmd_lhlo(client, cmd);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(client, cmd);
		break;
	case SMTP_VERB_RCPT:
		return cmd_rcpt(client, cmd);
	case SMTP_VERB_DATA:
		return cmd_data(client, cmd);
	case SMTP_VERB_RSET:
		cmd_rset(client, cmd);
		break;
	case SMTP_VERB_NOOP:
		client_send(client, "250 2.0.0 OK\r\n");
		break;
	case SMTP_VERB_VRFY:
		client_send(client, "252 2.5.2 Cannot VRFY user, but will accept message and "
				    "attempt delivery\r\n");
		break;
	case SMTP_VERB_QUIT:
		snprintf(line, sizeof(line), "221 2.0.0 %s closing connection\r\n",
			 client->hostname);
		client_close_after(client, line, "quit");
		return false;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		return client_bad_command(client, "502 5.5.1 LMTP uses LHLO\r\n");
	case SMTP_VERB_XCLIENT:
		return cmd_xclient(client, cmd);
	case SMTP_VERB_BDAT:
	case SMTP_VERB_STARTTLS:
	case SMTP_VERB_AUTH:
		return client_bad_command(client, "502 5.5.1 Command not implemented\r\n");
	case SMTP_VERB_UNKNOWN:
		return client_bad_command(client, "500 5.5.2 Unknown command\r\n");
	}
	return client->state == CLIENT_COMMANDS || client->state == CLIENT_DATA;
}

/* ---- input ---- */

/* Message bytes: appended (or only counted once over lmtp_message_max),
 * noting whether any LF comes without its CR. */
static void message_append(struct lmtp_client *client, const char *data, size_t len)
{
	size_t max = client->daemon->set->lmtp_message_max;
	client->message_size += len;
	if (client->message_too_big)
		return;
	/* the end marker's ".\r\n" is not counted */
	if (client->message_size > max + 3) {
		client->message_too_big = true;
		evbuffer_free(client->message);
		client->message = NULL;
		return;
	}
	if (!client->bare_lf) {
		for (const char *p = data, *end = data + len;
		     (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) {
			char prev = p > data ? p[-1] : client->last_byte;
			if (prev != '\r') {
				client->bare_lf = true;
				break;
			}
		}
	}
	if (len > 0)
		client->last_byte = data[len - 1];
	evbuffer_add(client->message, data, len);
}

/* The end of the message arrived.  Returns true if the client may be read
 * on at once (the message was refused here), false while delivering. */
static bool message_complete(struct lmtp_client *client)
{
	if (client->message_too_big) {
		log_warning("event=lmtp_message_too_big client=%s:%u session=%s size=%zu "
			    "lmtp_message_max=%zu recipients=%zu",
			    client->id.client_ip, client->id.client_port, client->id.session_id,
			    client->message_size, client->daemon->set->lmtp_message_max,
			    client->rcpt_count);
		for (size_t i = 0; i < client->rcpt_count; i++) {
			struct lmtp_rcpt *rcpt = &client->rcpts[i];
			const char *reply = "552 5.3.4 Message too big for system\r\n";
			client_send(client, reply);
			log_rcpt(client, rcpt, "data", reply, "message over lmtp_message_max");
		}
		transaction_reset(client, true);
		client->state = CLIENT_COMMANDS;
		return true;
	}
	if (client->bare_lf) {
		struct evbuffer *normal = body_normalize(client->message);
		evbuffer_free(client->message);
		client->message = normal;
		log_info("event=lmtp_bare_lf client=%s:%u session=%s action=\"rewrote bare LF as "
			 "CRLF before delivery\"",
			 client->id.client_ip, client->id.client_port, client->id.session_id);
	}
	client->state = CLIENT_DELIVERING;
	client->replies_written = 0;
	stream_read_enable(client->stream, false);
	char reply[600];
	for (struct lmtp_backend *backend = client->backends; backend != NULL;
	     backend = backend->next) {
		if (backend->accepted == 0) {
			/* it took no recipient: nothing to deliver there; it is
			 * reset when the transaction ends */
			continue;
		} else if (backend->state == BACKEND_READY) {
			backend_send(backend, "DATA\r\n");
			backend->state = BACKEND_DATA;
			backend->next_rcpt = 0;
			backend_arm(backend, client->daemon->set->proxy_timeout_ms);
		} else {
			/* it went away after accepting recipients */
			for (size_t i = 0; i < client->rcpt_count; i++) {
				struct lmtp_rcpt *rcpt = &client->rcpts[i];
				if (rcpt->backend != backend)
					continue;
				tempfail_reply(rcpt->address, reply, sizeof(reply));
				rcpt_set_reply(rcpt, reply);
			}
		}
	}
	client_schedule(client);
	return false;
}

/* Message bytes in the stream; false if the client must stop reading. */
static bool client_data_input(struct lmtp_client *client, const char *data, size_t len)
{
	size_t end = smtp_data_end_scan(&client->scan_state, data, len);
	size_t take = end > 0 ? end : len;
	message_append(client, data, take);
	stream_consume(client->stream, take);
	if (end == 0)
		return false; /* more to come */
	return message_complete(client);
}

static void client_input(void *context)
{
	struct lmtp_client *client = context;
	struct daemon *daemon = client->daemon;
	for (;;) {
		if (client->state != CLIENT_COMMANDS && client->state != CLIENT_DATA)
			return;
		size_t len;
		const char *data = stream_input(client->stream, &len);
		if (len == 0)
			return;
		if (client->state == CLIENT_DATA) {
			if (!client_data_input(client, data, len))
				return;
			continue;
		}
		const char *lf = memchr(data, '\n', len);
		size_t line_len = lf != NULL ? (size_t)(lf - data) : len;
		if (line_len > 0 && lf != NULL && data[line_len - 1] == '\r')
			line_len--;
		if (line_len > client->line_max) {
			daemon->metrics.prelogin_too_long++;
			client_close_after(client, "500 5.5.2 Line too long\r\n",
					   "command line longer than prelogin_line_max");
			return;
		}
		if (lf == NULL)
			return;
		size_t need = SMTP_COMMAND_BUF_SIZE(line_len);
		if (need > client->parse_buf_size) {
			client->parse_buf = realloc(client->parse_buf, need);
			client->parse_buf_size = need;
		}
		struct smtp_command cmd;
		const char *error;
		int ret = smtp_command_parse(data, line_len, client->parse_buf,
					     client->parse_buf_size, &cmd, &error);
		/* the command's strings live in parse_buf: the input can go */
		stream_consume(client->stream, (size_t)(lf - data) + 1);
		if (ret < 0) {
			char reply[300];
			if (cmd.verb == SMTP_VERB_UNKNOWN)
				snprintf(reply, sizeof(reply), "500 5.5.2 Syntax error: %s\r\n",
					 error);
			else
				snprintf(reply, sizeof(reply), "501 5.5.4 Syntax error: %s\r\n",
					 error);
			if (!client_bad_command(client, reply))
				return;
			continue;
		}
		if (!handle_command(client, &cmd))
			return;
	}
}

void lmtp_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls)
{
	struct lmtp_client *client = calloc(1, sizeof(*client));
	client->daemon = daemon;
	daemon->client_count++;
	client_ident_init(&client->id, daemon, fd, remote, local);
	const char *name = daemon->set->submission_hostname;
	if (name != NULL && name[0] != '\0')
		snprintf(client->hostname, sizeof(client->hostname), "%s", name);
	else if (gethostname(client->hostname, sizeof(client->hostname) - 1) < 0 ||
		 client->hostname[0] == '\0')
		snprintf(client->hostname, sizeof(client->hostname), "localhost");
	client->line_max = daemon->set->prelogin_line_max;
	client->resume = event_new(daemon->base, -1, 0, client_resume, client);
	client->stream =
		stream_create(daemon->base, fd, NULL, client->line_max,
			      daemon->set->prelogin_timeout_ms, &client_stream_callbacks, client);
	(void)implicit_tls; /* LMTP has no TLS listener */
	log_debug("event=connect protocol=lmtp client=%s:%u session=%s", client->id.client_ip,
		  client->id.client_port, client->id.session_id);
	client_sendf(client, "220 %s LMTP mailcluster ready\r\n", client->hostname);
}
