/* login_client.h - the lifecycle every login front-end (IMAP, POP3,
 * ManageSieve, Submission) shares: one accepted client connection from the
 * greeting until the login proxy (login_proxy.h) hands it to the relay, or
 * until it is closed.
 *
 * A front-end embeds struct login_client as the FIRST member of its own
 * client struct, describes its protocol with a struct login_client_protocol
 * (the dialogue, the backend port, its replies, and hooks for its input and
 * its own fields), and keeps parsing and answering commands itself.  This
 * module owns the stream callbacks, the disconnect log lines, the
 * failed-login count and the login: routing, the login proxy and what
 * happens when it ends.
 *
 * States:
 *   PRELOGIN      the front-end reads commands and answers them
 *   AUTH_RESPONSE the front-end waits for the client's SASL response line
 *   BACKEND       routed; the login proxy is logging in at the backend.
 *                 The client stays readable: what it pipelines meanwhile
 *                 stays buffered and goes to the backend once the login
 *                 succeeds, and if it goes away the login is abandoned.
 *   CLOSING       a last line is being written
 */
#ifndef LOGIN_CLIENT_H
#define LOGIN_CLIENT_H

#include "daemon/login_proxy.h"

#include <stdbool.h>
#include <sys/socket.h>

struct daemon;
struct settings;
struct stream;
struct route_result;
struct router_wait;
struct login_client;

enum login_client_state {
	LOGIN_CLIENT_PRELOGIN,
	LOGIN_CLIENT_AUTH_RESPONSE,
	LOGIN_CLIENT_BACKEND,
	LOGIN_CLIENT_CLOSING,
};

/* The replies whose wording is the protocol's but whose moment is ours. */
enum login_client_reply {
	LOGIN_REPLY_TIMEOUT,                /* last line: no login within prelogin_timeout */
	LOGIN_REPLY_TOO_MANY_AUTH_FAILURES, /* last line: auth_failures_max reached */
	LOGIN_REPLY_PLAINTEXT_DISALLOWED,   /* a login without TLS, not allowed */
	LOGIN_REPLY_AUTH_FAILED,            /* routing found no such user */
	LOGIN_REPLY_TEMPFAIL,               /* the login could not be done now */
	LOGIN_REPLY_AUTH_CANCELLED,         /* the client answered "*" */
	LOGIN_REPLY_AUTH_INVALID,           /* not a valid PLAIN response: detail says why */
};

struct login_client_protocol {
	const char *name; /* "imap": in log lines and routing */
	const struct login_proxy_dialogue *dialogue;
	int (*backend_port)(const struct settings *set);
	/* Writes the protocol's line for reply (or nothing, if it has none);
	 * tag: the login's (login_client_login()), or NULL; detail: for
	 * LOGIN_REPLY_AUTH_INVALID, the sasl_plain_decode() error, else NULL. */
	void (*reply)(struct login_client *client, enum login_client_reply reply, const char *tag,
		      const char *detail);
	/* The stream has input (also called for what was pipelined after a
	 * login that did not succeed). */
	void (*input)(struct login_client *client);
	/* Frees the front-end's own fields (not the struct); may be NULL. */
	void (*free)(struct login_client *client);
};

struct login_client {
	const struct login_client_protocol *protocol;
	struct daemon *daemon;
	struct stream *stream;
	bool secured;        /* TLS, or a loopback client */
	bool starting_login; /* inside login_proxy_start() */
	struct client_ident id;
	unsigned auth_failures, bad_commands;
	enum login_client_state state;
	char *tag; /* of the login in progress, for its replies */
	struct route_result *route;
	struct router_wait *route_wait; /* the group is being assigned */
	char *wait_user, *wait_password;  /* meanwhile */
	struct login_proxy *login;
};

/* Fills the base of a new client (the front-end's struct, allocated
 * zeroed): takes over fd, creates the stream and logs the connection.  The
 * front-end then greets. */
void login_client_init(struct login_client *client, const struct login_client_protocol *protocol,
		       struct daemon *daemon, int fd, const struct sockaddr *remote,
		       const struct sockaddr *local, bool implicit_tls);
/* Frees the client at once; reason non-NULL: log a disconnect. */
void login_client_destroy(struct login_client *client, const char *reason);
/* Logs the disconnect, writes line (if not NULL), then closes once it is
 * written (bounded). */
void login_client_close_after(struct login_client *client, const char *line, const char *reason);

void login_client_send(struct login_client *client, const char *text);
bool login_client_plaintext_allowed(const struct login_client *client);
/* TLS is configured and not active yet. */
bool login_client_starttls_available(const struct login_client *client);
/* A failed login, its reply already written: counts it, and closes the
 * client with LOGIN_REPLY_TOO_MANY_AUTH_FAILURES after the last straw. */
void login_client_auth_failed(struct login_client *client);
/* We have a username and password: route, and start the login proxy.
 * tag goes to the login proxy request (login_proxy.h) and to the replies;
 * may be NULL.  Afterwards the state says whether to go on reading
 * (PRELOGIN) or not. */
void login_client_login(struct login_client *client, const char *tag, const char *user,
			const char *password);
/* A SASL PLAIN response (base64; "*" cancels): decodes it and logs in, or
 * answers LOGIN_REPLY_AUTH_CANCELLED / LOGIN_REPLY_AUTH_INVALID (the
 * latter counted as a failed login).  tag as for login_client_login(). */
void login_client_plain_response(struct login_client *client, const char *tag, const char *b64,
				 size_t len);

#endif
