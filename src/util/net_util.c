/* net_util.c - see net_util.h. */
#include "util/net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

void net_set_tcp_options(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int net_parse_ip_port(const char *address, int port, struct sockaddr_storage *addr_r,
		      socklen_t *len_r)
{
	memset(addr_r, 0, sizeof(*addr_r));
	struct sockaddr_in *in4 = (struct sockaddr_in *)addr_r;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr_r;
	if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*in6);
		return 0;
	}
	return -1;
}

bool net_is_ip_address(const char *address)
{
	struct sockaddr_storage addr;
	socklen_t len;
	return net_parse_ip_port(address, 1, &addr, &len) == 0;
}

void net_sockaddr_to_ip(const struct sockaddr *sa, char *ip, size_t ip_size, uint16_t *port_r)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in4->sin_addr, ip, (socklen_t)ip_size);
		*port_r = ntohs(in4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, (socklen_t)ip_size);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)ip_size);
		*port_r = ntohs(in6->sin6_port);
	} else {
		snprintf(ip, ip_size, "unknown");
		*port_r = 0;
	}
}

bool net_sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			return in6->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}
