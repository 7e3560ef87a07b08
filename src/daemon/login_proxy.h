/* login_proxy.h - the second half of every login front-end (IMAP, POP3,
 * ManageSieve, Submission): with a routed user and a password, connect to
 * the backend (retrying within proxy_timeout), hold the backend's side of
 * the login through a protocol's dialogue, and on success hand the client
 * stream and the backend socket to a relay and register the session.
 *
 * The front-end owns its stream and parses the client; the dialogue (a
 * small state machine over the backend's lines, one per protocol) sends the
 * forwarding command (ID, XCLIENT) and the login, and says how it ended:
 *
 *   login_proxy_success()     logged in: the reply goes to the client and
 *                             the session starts (the stream is detached)
 *   login_proxy_failure()     the backend refused the credentials: its reply
 *                             goes to the client as it is
 *   login_proxy_unavailable() a temporary failure after the backend spoke
 *   login_proxy_retry()       failed before the backend said anything
 *                             useful: connect again within proxy_timeout
 *
 * The front-end's callback then gets PROXYING (free yourself; the stream is
 * detached), FAILED or UNAVAILABLE (answer in your protocol, go on), and the
 * login proxy frees itself.  A front-end whose client goes away mid-login
 * calls login_proxy_abort().
 */
#ifndef LOGIN_PROXY_H
#define LOGIN_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/router.h"

#include <stdbool.h>
#include <sys/socket.h>

/* The hop count we pass to a backend (XCLIENT TTL=, ID x-proxy-ttl): one
 * below Dovecot's default proxy_ttl of 5, as a proxy that forwarded once. */
#define LOGIN_PROXY_TTL 4

struct daemon;
struct stream;
struct route_result;
struct login_proxy;

/* Who a client is, as every front-end knows it and logs it. */
struct client_ident {
	char client_ip[46], local_ip[46];
	uint16_t client_port, local_port;
	char session_id[24];
	bool loopback; /* the client address is a loopback one */
	/* the peer is in login_trusted_networks: it may forward a client
	 * (another proxy, e.g. another site's daemon) */
	bool trusted;
	/* it did (client_ident_forward()): the fields above are the client's
	 * as the peer gave them, forwarded_by is the peer's own address */
	bool forwarded;
	char forwarded_by[46];
	/* how many sites' daemons forwarded this session already
	 * (x-mailcluster-hops, XCLIENT HOPS=): a session with hops > 0 whose
	 * group lives in another site is never forwarded again (a loop) */
	unsigned hops;
	unsigned proxy_ttl; /* as the peer gave it; 0 = none */
};

/* Fills ident for a new connection; local NULL: ask the socket. */
void client_ident_init(struct client_ident *ident, struct daemon *daemon, int fd,
		       const struct sockaddr *remote, const struct sockaddr *local);

/* One forwarding field from a trusted peer, by its canonical name: "addr"
 * (x-originating-ip, XCLIENT ADDR), "port", "destaddr" (x-connected-ip),
 * "destport", "session" (x-session-id), "ttl" (x-proxy-ttl), "hops"
 * (x-mailcluster-hops, XCLIENT HOPS).  Other names are ignored (0).
 * Returns -1 with *error_r for an invalid value (nothing changed).  The
 * caller checks ident->trusted first. */
int client_ident_forward(struct client_ident *ident, const char *name, const char *value,
			 const char **error_r);
/* XCLIENT's arguments ("ADDR=1.2.3.4 PORT=5 SESSION=x TTL=3 HOPS=1",
 * xtext values; Postfix's "IPV6:" prefix and "[UNAVAILABLE]" are taken):
 * each attribute through client_ident_forward().  -1 with *error_r for a
 * malformed one (ident may have taken the attributes before it). */
int client_ident_xclient(struct client_ident *ident, const char *args, const char **error_r);
/* value as RFC 3461 xtext (XCLIENT's values) into dst. */
void login_xtext(const char *value, char *dst, size_t dst_size);
/* Logs event=forward_accepted once a peer's forwarding was taken. */
void client_ident_forward_log(const struct client_ident *ident, const char *protocol);
/* XCLIENT from ident's peer: true if it is refused because the peer is not
 * in login_trusted_networks, after logging event=forward_refused for
 * protocol.  The caller answers with its protocol's refusal, counted as a
 * bad command (the replies differ, and so does what too many of them do). */
bool client_ident_xclient_refused(const struct client_ident *ident, const char *protocol);
/* The TTL we pass on: one less than the peer's, else LOGIN_PROXY_TTL. */
unsigned client_ident_ttl(const struct client_ident *ident);

/* The routing step of a login, with its metrics and log lines: OK fills
 * route; BAD_USER (answer "authentication failed") and UNAVAILABLE
 * (answer your protocol's temporary failure) are logged already; PENDING:
 * the user's group is being assigned, *wait_r is set and callback runs
 * later, which then passes what it got to login_route_finish(). */
enum login_route {
	LOGIN_ROUTE_OK,
	LOGIN_ROUTE_BAD_USER,
	LOGIN_ROUTE_UNAVAILABLE,
	LOGIN_ROUTE_PENDING
};
enum login_route login_route(struct daemon *daemon, const char *protocol,
			     const struct client_ident *ident, const char *user,
			     struct route_result *route_r, router_callback *callback,
			     void *context, struct router_wait **wait_r);
enum login_route login_route_finish(struct daemon *daemon, const char *protocol,
				    const struct client_ident *ident, enum route_status status,
				    struct route_result *route, const char *reason);

/* Sites: a ROUTE_OK route through another site's load balancer
 * (route->via_site, store/route.h) gets that balancer's address for
 * protocol in route->forward_address and ->forward_port: ROUTE_OK.
 * ROUTE_UNAVAILABLE (*reason_r) when the balancer has no address for the
 * protocol, or when ident was forwarded to us by another site already:
 * such a session is never forwarded again (the sites' LocalDBs disagree
 * for a while; forwarding it back could go on forever); that is logged
 * as event=route_loop and counted.  Login front-ends get this through
 * login_route(); LMTP calls it per recipient. */
enum route_status login_route_site(struct daemon *daemon, const char *protocol,
				   const struct client_ident *ident, struct route_result *route,
				   const char **reason_r);
/* Where a session of route (through login_route_site()) connects: for a
 * group in another site, that site's load balancer (route->forward_address
 * and ->forward_port); else the group's backend at backend_port (the
 * protocol's backend port setting).  *ip_r points into route.  Returns
 * whether it is the load balancer. */
bool login_route_target(const struct route_result *route, int backend_port, const char **ip_r,
			int *port_r);

enum login_proxy_result {
	LOGIN_PROXY_PROXYING,
	LOGIN_PROXY_FAILED,
	LOGIN_PROXY_UNAVAILABLE,
};

/* reason: for UNAVAILABLE, a sentence for the log (already logged). */
typedef void login_proxy_callback(void *context, enum login_proxy_result result,
				  const char *reason);

struct login_proxy_dialogue {
	const char *protocol; /* "imap", "pop3", "sieve", "submission" */
	/* Connected: send what may go before the greeting (or nothing). */
	void (*connected)(struct login_proxy *lp);
	/* One line from the backend, CRLF stripped, NUL-terminated. */
	void (*line)(struct login_proxy *lp, const char *line, size_t len);
};

struct login_proxy_request {
	struct daemon *daemon;
	struct stream *client;
	const struct login_proxy_dialogue *dialogue;
	int backend_port;
	const struct route_result *route; /* copied */
	struct client_ident ident;
	const char *tag; /* the dialogue's to use, e.g. the IMAP tag; may be NULL */
	const char *user, *password;
};

/* Sets *lp_r, then starts; the callback may run before this returns (an
 * immediate failure), after which *lp_r must not be used: the callback
 * should clear the caller's pointer. */
void login_proxy_start(const struct login_proxy_request *request, login_proxy_callback *callback,
		       void *context, struct login_proxy **lp_r);
void login_proxy_abort(struct login_proxy **lp);

/* For dialogues. */
const struct login_proxy_request *login_proxy_request(const struct login_proxy *lp);
unsigned *login_proxy_state(struct login_proxy *lp); /* starts at 0 */
void login_proxy_send(struct login_proxy *lp, const char *data, size_t len);
void login_proxy_sendf(struct login_proxy *lp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Whether the login goes to another site's load balancer: the dialogue
 * then marks the session (x-mailcluster-hops, XCLIENT HOPS=) and gives up
 * unless the far side accepted the mark, and does not send the login
 * before that. */
bool login_proxy_forwarding(const struct login_proxy *lp);
/* The hop count to send: ours plus one. */
unsigned login_proxy_hops(const struct login_proxy *lp);
/* Forwarding, and line is the far side's temporary failure (it carries
 * marker, e.g. "[UNAVAILABLE]": the other site could not route the user
 * either, or refused a loop): login_proxy_unavailable() with the line as
 * the reason, so the client gets our own temporary failure and it is
 * counted as a failed forward.  Returns whether it was. */
bool login_proxy_far_tempfail(struct login_proxy *lp, const char *line, const char *marker);
/* Where we connect, "ip:port", for log lines and reasons. */
const char *login_proxy_target(const struct login_proxy *lp);
/* "AUTH PLAIN"-style initial response for the user and password. */
int login_proxy_plain_ir(struct login_proxy *lp, char *dst, size_t dst_size);
void login_proxy_to_client(struct login_proxy *lp, const char *data, size_t len);
void login_proxy_success(struct login_proxy *lp, const char *reply, size_t len);
void login_proxy_failure(struct login_proxy *lp, const char *reply, size_t len);
void login_proxy_unavailable(struct login_proxy *lp, const char *reason);
void login_proxy_retry(struct login_proxy *lp, const char *reason);

#endif
