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

struct daemon;
struct stream;
struct route_result;
struct login_proxy;

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
	const char *client_ip, *local_ip;
	uint16_t client_port, local_port;
	const char *session_id;
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
/* "AUTH PLAIN"-style initial response for the user and password. */
int login_proxy_plain_ir(struct login_proxy *lp, char *dst, size_t dst_size);
void login_proxy_to_client(struct login_proxy *lp, const char *data, size_t len);
void login_proxy_success(struct login_proxy *lp, const char *reply, size_t len);
void login_proxy_failure(struct login_proxy *lp, const char *reply, size_t len);
void login_proxy_unavailable(struct login_proxy *lp, const char *reason);
void login_proxy_retry(struct login_proxy *lp, const char *reason);

#endif
