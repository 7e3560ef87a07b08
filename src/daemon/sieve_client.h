/* sieve_client.h - the ManageSieve front-end (RFC 5804): one accepted client
 * connection from the greeting until it is handed to the relay (or closed).
 *
 * Pre-login it answers CAPABILITY, NOOP, LOGOUT, STARTTLS and AUTHENTICATE
 * "PLAIN" itself.  With a username and password it routes the user,
 * connects to the backend's managesieve-login, forwards the client's
 * address with Dovecot's XCLIENT, replays the login as AUTHENTICATE "PLAIN"
 * and passes the backend's answer back.  On OK the connection becomes a
 * session (session.h, protocol "sieve") relayed by relay.h.
 */
#ifndef SIEVE_CLIENT_H
#define SIEVE_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

struct daemon;

/* Takes over fd (non-blocking, accepted on a listener).  local is the
 * listener's address when it is bound to one IP, else NULL.  (The same
 * type as frontend_create_fn in frontend.h.) */
void sieve_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			 const struct sockaddr *local, bool implicit_tls);

#endif
