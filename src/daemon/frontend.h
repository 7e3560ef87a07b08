/* frontend.h - what a listener hands an accepted connection to.
 *
 * Each protocol front-end (imap_client.c, pop3_client.c, sieve_client.c,
 * submission_client.c, lmtp_client.c) has a create function of this type;
 * main.c maps listener kinds to them.  remote is the client's address (from
 * the PROXY header when the listener has haproxy = yes), local the address
 * it connected to (NULL: ask the socket). */
#ifndef FRONTEND_H
#define FRONTEND_H

#include <stdbool.h>
#include <sys/socket.h>

struct daemon;

typedef void frontend_create_fn(struct daemon *daemon, int fd, const struct sockaddr *remote,
				const struct sockaddr *local, bool implicit_tls);

struct frontend {
	frontend_create_fn *create;
	bool implicit_tls;
	const char *busy_reply; /* written when client_limit is reached (plain only) */
};

/* The front-ends.  All but IMAP are weak: a build without one links, and
 * a listener for it is refused at start with a clear error. */
frontend_create_fn imap_client_create;
frontend_create_fn pop3_client_create __attribute__((weak));
frontend_create_fn sieve_client_create __attribute__((weak));
frontend_create_fn submission_client_create __attribute__((weak));
frontend_create_fn lmtp_client_create __attribute__((weak));

/* Reads the PROXY protocol header (haproxy = yes listeners) from a
 * trusted peer, then calls the front-end with the addresses it carries.
 * Untrusted peers, bad headers and timeouts close the connection. */
void haproxy_accept(struct daemon *daemon, int fd, const struct sockaddr *peer,
		    const struct frontend *frontend, const char *listener_name);

#endif
