/* lb_address.h - a site's load balancer address, as `mailcluster site
 * update --load-balancer` stores it and the daemon reads it when it sends a
 * session to another site (store/route.h: a group whose backend lives in
 * another site is reached through that site's load balancer).
 *
 * Two forms:
 *
 *   HOST[:PORT]                      every protocol goes to HOST; to PORT,
 *                                    or without one to the port of this
 *                                    daemon's own listener of the protocol
 *   imap=HOST[:PORT],pop3=HOST[:PORT],lmtp=...,sieve=...,submission=...
 *                                    per protocol (any subset, each at most
 *                                    once); a protocol not listed has no
 *                                    load balancer address
 *
 * HOST is an IPv4 address or an IPv6 one in brackets ("[2001:db8::1]:143");
 * host names are not resolved (the daemon never waits for DNS on its event
 * loop).  Pure code: no allocation, no I/O.
 */
#ifndef LB_ADDRESS_H
#define LB_ADDRESS_H

#include <stddef.h>

/* The protocols a per-protocol list may name. */
extern const char *const lb_address_protocols[];

/* 0 if spec is valid (the empty string is: "no load balancer"), else -1
 * with *error_r a sentence (static buffer) naming the bad part. */
int lb_address_check(const char *spec, const char **error_r);

/* The address for protocol ("imap", "pop3", "lmtp", "sieve",
 * "submission"): 1 with the IP (without brackets) in host_r and the port in
 * *port_r (0: none given, use the default), 0 when spec has none for that
 * protocol (spec empty, or a list without it), -1 if spec is invalid
 * (*error_r as for lb_address_check()). */
int lb_address_for(const char *spec, const char *protocol, char *host_r, size_t host_size,
		   int *port_r, const char **error_r);

#endif
