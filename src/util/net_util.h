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

#endif
