/* net_util.h - small socket helpers: addresses to text and back, and the
 * TCP options every proxied socket gets. */
#ifndef NET_UTIL_H
#define NET_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* TCP_NODELAY (we write whole responses; Nagle would only add latency) and
 * SO_KEEPALIVE (so a half-open peer is eventually noticed). */
void net_set_tcp_options(int fd);
/* An IPv4 or IPv6 literal plus a port; -1 if address is not an IP. */
int net_parse_ip_port(const char *address, int port, struct sockaddr_storage *addr_r,
		      socklen_t *len_r);
/* The IP (without brackets) and port of sa. */
void net_sockaddr_to_ip(const struct sockaddr *sa, char *ip, size_t ip_size, uint16_t *port_r);
bool net_sockaddr_is_loopback(const struct sockaddr *sa);
bool net_is_ip_address(const char *address);

/* Trusted networks: the peers allowed to do what others may not (send a
 * PROXY protocol header, for one). */
struct net_network {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network order, bits past prefix zeroed;
				   IPv4 uses the first 4 bytes */
	unsigned prefix;        /* 0..32 or 0..128 */
};

/* Parse a list such as "127.0.0.0/8, 10.1.2.3 ::1 2001:db8::/32": entries
 * separated by spaces, tabs and/or commas, each an IP address with an
 * optional "/prefix" (no prefix = a single host).  Host bits past the
 * prefix are accepted and cleared ("10.1.2.3/8" is 10.0.0.0/8).  Returns 0
 * with *count_r entries in *networks_r (NULL when the list is empty), or -1
 * with *error_r (a static buffer) naming the bad entry, *networks_r = NULL
 * and *count_r = 0.  The caller frees *networks_r. */
int net_networks_parse(const char *text, struct net_network **networks_r, size_t *count_r,
		       const char **error_r);
/* Whether sa (AF_INET or AF_INET6; other families never match) lies in one
 * of the networks.  An IPv4-mapped IPv6 address (::ffff:a.b.c.d) matches
 * IPv4 networks, and an IPv4 address matches IPv6 networks as its mapped
 * form, so "::ffff:0:0/96" and "0.0.0.0/0" cover the same peers. */
bool net_networks_match(const struct net_network *networks, size_t count,
			const struct sockaddr *sa);

#endif
