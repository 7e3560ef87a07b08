/* net_util.c - see net_util.h. */
#include "util/net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The longest entry: a full IPv6 text form with an IPv4 tail, plus "/128". */
#define NET_NETWORK_ENTRY_MAX (INET6_ADDRSTRLEN - 1 + 4)
/* How much of a bad entry an error quotes. */
#define NET_NETWORK_ERROR_QUOTE_MAX 64

static bool net_networks_is_separator(char c)
{
	return c == ' ' || c == ',' || c == '\t' || c == '\r' || c == '\n';
}

/* Fail with "Invalid network '<entry>': <reason>".  The text is
 * malloc'd and handed to the caller through *networks_r (see net_util.h),
 * so that no static buffer is needed. */
static int net_networks_fail(const char *entry, size_t entry_len, const char *reason,
			     struct net_network **networks_r, size_t *count_r, const char **error_r)
{
	static char error[256];
	int quote_len =
		(int)(entry_len < NET_NETWORK_ERROR_QUOTE_MAX ? entry_len
							      : NET_NETWORK_ERROR_QUOTE_MAX);
	const char *ellipsis = entry_len > NET_NETWORK_ERROR_QUOTE_MAX ? "..." : "";
	snprintf(error, sizeof(error), "Invalid network '%.*s%s': %s", quote_len, entry, ellipsis,
		 reason);
	*count_r = 0;
	*networks_r = NULL;
	*error_r = error;
	return -1;
}

/* Parse one entry s[0..n) into *network_r; NULL or the reason it is bad. */
static const char *net_network_parse_entry(const char *s, size_t n, struct net_network *network_r)
{
	char text[NET_NETWORK_ENTRY_MAX + 1];
	const char *slash;
	unsigned max_prefix, prefix, addr_len;

	if (n > NET_NETWORK_ENTRY_MAX)
		return "too long to be an IP address with a prefix";
	memcpy(text, s, n);
	text[n] = '\0';
	slash = memchr(text, '/', n);
	if (slash != NULL)
		text[slash - text] = '\0';

	memset(network_r, 0, sizeof(*network_r));
	if (inet_pton(AF_INET, text, network_r->addr) == 1) {
		network_r->family = AF_INET;
		max_prefix = 32;
	} else if (inet_pton(AF_INET6, text, network_r->addr) == 1) {
		network_r->family = AF_INET6;
		max_prefix = 128;
	} else {
		return "expected an IPv4 or IPv6 address, optionally followed by /prefix";
	}

	prefix = max_prefix;
	if (slash != NULL) {
		const char *p = slash + 1;

		if (*p == '\0')
			return "the prefix after '/' is missing";
		prefix = 0;
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				return "the prefix after '/' is not a decimal number";
			prefix = prefix * 10 + (unsigned)(*p - '0');
			if (prefix > max_prefix)
				break;
		}
		if (prefix > max_prefix) {
			return max_prefix == 32 ? "the prefix of an IPv4 network must be 0..32"
						: "the prefix of an IPv6 network must be 0..128";
		}
	}
	network_r->prefix = prefix;

	/* Clear the host bits, so that the stored network is canonical. */
	addr_len = max_prefix / 8;
	for (unsigned i = 0; i < addr_len; i++) {
		if (i * 8 >= prefix)
			network_r->addr[i] = 0;
		else if (i * 8 + 8 > prefix)
			network_r->addr[i] &= (unsigned char)(0xff << (8 - (prefix - i * 8)));
	}
	return NULL;
}

int net_networks_parse(const char *text, struct net_network **networks_r, size_t *count_r,
		       const char **error_r)
{
	struct net_network *networks = NULL;
	size_t count = 0, entries = 0;
	const char *p;

	*networks_r = NULL;
	*count_r = 0;
	*error_r = NULL;

	/* Count first, so that one allocation is enough. */
	for (p = text; *p != '\0';) {
		while (net_networks_is_separator(*p))
			p++;
		if (*p == '\0')
			break;
		entries++;
		while (*p != '\0' && !net_networks_is_separator(*p))
			p++;
	}
	if (entries == 0)
		return 0;
	networks = calloc(entries, sizeof(*networks));
	if (networks == NULL) {
		*error_r = "Out of memory parsing the network list";
		return -1;
	}

	for (p = text; *p != '\0';) {
		const char *start, *reason;

		while (net_networks_is_separator(*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && !net_networks_is_separator(*p))
			p++;
		reason = net_network_parse_entry(start, (size_t)(p - start), &networks[count]);
		if (reason != NULL) {
			free(networks);
			return net_networks_fail(start, (size_t)(p - start), reason, networks_r,
						 count_r, error_r);
		}
		count++;
	}
	*networks_r = networks;
	*count_r = count;
	return 0;
}

/* Whether the first prefix bits of a and b are equal. */
static bool net_prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned bytes = prefix / 8, bits = prefix % 8;
	unsigned char mask;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	mask = (unsigned char)(0xff << (8 - bits));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool net_networks_match(const struct net_network *networks, size_t count, const struct sockaddr *sa)
{
	unsigned char v4[4], v6[16];
	bool have_v4 = false;

	/* The address in both forms: IPv4 (when it is one, mapped or not)
	 * and IPv6 (mapping IPv4 into ::ffff:0:0/96). */
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;

		memcpy(v4, &in4->sin_addr, 4);
		memset(v6, 0, 10);
		v6[10] = v6[11] = 0xff;
		memcpy(v6 + 12, v4, 4);
		have_v4 = true;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		memcpy(v6, &in6->sin6_addr, 16);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memcpy(v4, v6 + 12, 4);
			have_v4 = true;
		}
	} else {
		return false;
	}

	for (size_t i = 0; i < count; i++) {
		const struct net_network *network = &networks[i];

		if (network->family == AF_INET) {
			if (have_v4 && net_prefix_equal(network->addr, v4, network->prefix))
				return true;
		} else if (network->family == AF_INET6) {
			if (net_prefix_equal(network->addr, v6, network->prefix))
				return true;
		}
	}
	return false;
}
