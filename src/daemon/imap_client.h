/* imap_client.h - the IMAP front-end: one accepted client connection from
 * the greeting until it is handed to the relay (or closed).
 *
 * Pre-login it answers CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN and
 * AUTHENTICATE PLAIN itself.  With a username and password it routes the
 * user, connects to the backend, forwards the client's address with ID,
 * replays the login as AUTHENTICATE PLAIN, and passes the backend's tagged
 * answer back.  On OK the connection becomes a session (session.h) relayed
 * by relay.h, and everything pre-login is freed.
 */
#ifndef IMAP_CLIENT_H
#define IMAP_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

struct daemon;

/* Takes over fd (non-blocking, accepted on a listener; implicit_tls for
 * imaps).  local is the listener's address when it is bound to one IP (no
 * getsockname() needed then), else NULL. */
void imap_client_create(struct daemon *daemon, int fd, const struct sockaddr *remote,
			const struct sockaddr *local, bool implicit_tls);
/* (the same type as frontend_create_fn in frontend.h) */

#endif
