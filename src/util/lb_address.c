/* lb_address.c - see lb_address.h. */
#include "util/lb_address.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const lb_address_protocols[] = {"imap", "pop3", "lmtp", "sieve", "submission", NULL};

#define ENTRY_MAX 128 /* one HOST[:PORT], brackets included */

static char error_buf[600];

static int fail(const char **error_r, const char *fmt, const char *a, const char *b)
{
	snprintf(error_buf, sizeof(error_buf), fmt, a, b);
	*error_r = error_buf;
	return -1;
}

/* One HOST[:PORT] of len bytes at text. */
static int parse_host_port(const char *text, size_t len, char *host_r, size_t host_size,
			   int *port_r, const char **error_r)
{
	char entry[ENTRY_MAX + 1], host[ENTRY_MAX + 1];
	if (len == 0)
		return fail(error_r, "an address is empty%s%s: expected HOST[:PORT]", "", "");
	if (len > ENTRY_MAX) {
		snprintf(entry, sizeof(entry), "%.*s", 40, text);
		return fail(error_r, "address '%s...' is too long (at most %s characters)", entry,
			    "128");
	}
	memcpy(entry, text, len);
	entry[len] = '\0';
	char orig[ENTRY_MAX + 1];
	memcpy(orig, entry, len + 1);
	const char *port_text = NULL;
	if (entry[0] == '[') {
		char *close = strchr(entry, ']');
		if (close == NULL)
			return fail(error_r, "address '%s': '[' without ']'%s", entry, "");
		*close = '\0';
		snprintf(host, sizeof(host), "%s", entry + 1);
		if (close[1] == ':')
			port_text = close + 2;
		else if (close[1] != '\0')
			return fail(error_r, "address '%s]...': expected ':PORT' after ']'%s",
				    entry, "");
		struct in6_addr a6;
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return fail(error_r, "address '[%s]': not an IPv6 address%s", host, "");
	} else {
		char *colon = strchr(entry, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return fail(error_r,
				    "address '%s': an IPv6 address goes in brackets, e.g. "
				    "[2001:db8::1]:143%s",
				    entry, "");
		if (colon != NULL) {
			*colon = '\0';
			port_text = colon + 1;
		}
		snprintf(host, sizeof(host), "%s", entry);
		struct in_addr a4;
		if (inet_pton(AF_INET, host, &a4) != 1)
			return fail(error_r,
				    "address '%s': '%s' is not an IP address (IPv4, or IPv6 in "
				    "brackets; host names are not resolved)",
				    orig, host);
	}
	int port = 0;
	if (port_text != NULL) {
		char *end;
		long value = strtol(port_text, &end, 10);
		if (port_text[0] < '0' || port_text[0] > '9' || *end != '\0' || value < 1 ||
		    value > 65535)
			return fail(error_r, "address of host %s: port '%s' is not 1-65535", host,
				    port_text);
		port = (int)value;
	}
	if (host_r != NULL) {
		if (strlen(host) >= host_size)
			return fail(error_r, "address '%s' is too long%s", host, "");
		snprintf(host_r, host_size, "%s", host);
	}
	*port_r = port;
	return 0;
}

static bool known_protocol(const char *name, size_t len)
{
	for (const char *const *p = lb_address_protocols; *p != NULL; p++) {
		if (strlen(*p) == len && strncmp(*p, name, len) == 0)
			return true;
	}
	return false;
}

/* Walks spec; with protocol non-NULL, stops at its entry.  Returns 1 (found,
 * host_r/port_r set), 0 (valid, not found) or -1. */
static int walk(const char *spec, const char *protocol, char *host_r, size_t host_size, int *port_r,
		const char **error_r)
{
	int port;
	if (spec[0] == '\0')
		return 0;
	if (strchr(spec, '=') == NULL) {
		if (strchr(spec, ',') != NULL)
			return fail(error_r,
				    "'%s': several addresses must each name their protocol "
				    "(imap=HOST:PORT,pop3=HOST:PORT,...)%s",
				    spec, "");
		if (parse_host_port(spec, strlen(spec), host_r, host_size, &port, error_r) < 0)
			return -1;
		*port_r = port;
		return 1;
	}
	unsigned seen = 0;
	int found = 0;
	for (const char *p = spec;;) {
		size_t len = strcspn(p, ",");
		const char *eq = memchr(p, '=', len);
		char name[32];
		if (eq == NULL) {
			char entry[ENTRY_MAX + 1];
			snprintf(entry, sizeof(entry), "%.*s",
				 (int)(len < ENTRY_MAX ? len : ENTRY_MAX), p);
			return fail(error_r,
				    "'%s': expected PROTOCOL=HOST[:PORT] (PROTOCOL one of imap, "
				    "pop3, lmtp, sieve, submission)%s",
				    entry, "");
		}
		size_t name_len = (size_t)(eq - p);
		snprintf(name, sizeof(name), "%.*s", (int)(name_len < 31 ? name_len : 31), p);
		if (!known_protocol(p, name_len))
			return fail(error_r,
				    "unknown protocol '%s' in the load balancer address: expected "
				    "imap, pop3, lmtp, sieve or submission%s",
				    name, "");
		unsigned bit = 0;
		for (unsigned i = 0; lb_address_protocols[i] != NULL; i++) {
			if (strcmp(lb_address_protocols[i], name) == 0)
				bit = 1u << i;
		}
		if ((seen & bit) != 0)
			return fail(error_r, "protocol '%s' is given twice%s", name, "");
		seen |= bit;
		char host[ENTRY_MAX + 1];
		if (parse_host_port(eq + 1, len - name_len - 1, host, sizeof(host), &port,
				    error_r) < 0)
			return -1;
		if (protocol != NULL && strcmp(protocol, name) == 0 && found == 0) {
			if (host_r != NULL) {
				if (strlen(host) >= host_size)
					return fail(error_r, "address '%s' is too long%s", host,
						    "");
				snprintf(host_r, host_size, "%s", host);
			}
			*port_r = port;
			found = 1;
		}
		if (p[len] == '\0')
			break;
		p += len + 1;
		if (*p == '\0')
			return fail(error_r, "'%s' ends with ','%s", spec, "");
	}
	return found;
}

int lb_address_check(const char *spec, const char **error_r)
{
	int port;
	return walk(spec, NULL, NULL, 0, &port, error_r) < 0 ? -1 : 0;
}

int lb_address_for(const char *spec, const char *protocol, char *host_r, size_t host_size,
		   int *port_r, const char **error_r)
{
	*port_r = 0;
	return walk(spec, protocol, host_r, host_size, port_r, error_r);
}
