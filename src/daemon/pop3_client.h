/* pop3_client.h - the POP3 front-end (RFC 1939, 2449, 5034): one accepted
 * client connection from the greeting until it is handed to the relay (or
 * closed).
 *
 * Pre-login it answers CAPA, STLS, USER, PASS, AUTH PLAIN and QUIT itself.
 * With a username and password it routes the user, connects to the
 * backend's pop3-login, forwards the client's address with Dovecot's
 * XCLIENT, replays the login as AUTH PLAIN and passes the backend's answer
 * back.  On +OK the connection becomes a session (session.h, protocol
 * "pop3") relayed by relay.h.
 */
#ifndef POP3_CLIENT_H
#define POP3_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

struct daemon;

/* Takes over fd (non-blocking, accepted on a listener; implicit_tls for
 * pop3s).  local is the listener's address when it is bound to one IP,
 * else NULL.  (The same type as frontend_create_fn in frontend.h.) */
void pop3_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls);

#endif
