/* proxy_protocol.c - parser for PROXY protocol v1 and v2 headers.
 *
 * The first byte picks the version: 'P' starts a v1 line, CR starts the v2
 * signature, anything else is not a PROXY header.  Each version is then
 * checked against the bytes that have arrived, complete or not, in such a
 * way that the answer only ever moves forward: once a prefix is an error,
 * every longer input is the same error, and once a header is DONE, more
 * bytes after it change nothing.  So the caller can give up at the first
 * ERROR, and a header cut anywhere is MORE, never ERROR.
 *
 * v1 lines are checked field by field.  A field followed by a space (or by
 * the CR that ends the line) is complete and fully checked; the last field
 * of an unfinished line only has to look like the beginning of a valid one
 * (right characters, not too long, no leading zero, port not above 65535).
 */
#include "proto/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN (sizeof(V1_PREFIX) - 1)
/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" */
#define V1_ADDRESS_MAX_LEN (INET6_ADDRSTRLEN - 1)
#define V1_PORT_MAX_LEN 5

#define V2_SIGNATURE_LEN 12
#define V2_VERSION 0x2
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x00
#define V2_FAM_TCP4 0x11
#define V2_FAM_TCP6 0x21
#define V2_ADDR_LEN_TCP4 (2 * 4 + 2 * 2)
#define V2_ADDR_LEN_TCP6 (2 * 16 + 2 * 2)

static const unsigned char v2_signature[V2_SIGNATURE_LEN] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

enum v1_field {
	V1_FIELD_SOURCE,
	V1_FIELD_DESTINATION,
	V1_FIELD_SOURCE_PORT,
	V1_FIELD_DESTINATION_PORT,
	V1_FIELD_COUNT,
};

static enum proxy_protocol_status proxy_error(const char *error, const char **error_r)
{
	*error_r = error;
	return PROXY_PROTOCOL_ERROR;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static bool is_address_char(int family, unsigned char c)
{
	if ((c >= '0' && c <= '9') || c == '.')
		return true;
	/* IPv6 also allows the dotted IPv4 tail of "::ffff:1.2.3.4". */
	return family == AF_INET6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
}

/* Check a v1 address field s[0..n); complete says whether it has ended.
 * On success a complete field is stored in *sa_r and *len_r. */
static int v1_parse_address(int family, const unsigned char *s, size_t n, bool complete,
			    struct sockaddr_storage *sa_r, socklen_t *len_r)
{
	char text[V1_ADDRESS_MAX_LEN + 1];

	if (n > V1_ADDRESS_MAX_LEN)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!is_address_char(family, s[i]))
			return -1;
	}
	if (!complete)
		return 0;

	memcpy(text, s, n);
	text[n] = '\0';
	memset(sa_r, 0, sizeof(*sa_r));
	if (family == AF_INET) {
		struct sockaddr_in *in4 = (struct sockaddr_in *)sa_r;

		/* glibc's inet_pton() refuses leading zeroes in IPv4, as the
		 * specification asks. */
		if (inet_pton(AF_INET, text, &in4->sin_addr) != 1)
			return -1;
		in4->sin_family = AF_INET;
		*len_r = sizeof(*in4);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa_r;

		if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1)
			return -1;
		in6->sin6_family = AF_INET6;
		*len_r = sizeof(*in6);
	}
	return 0;
}

/* Check a v1 port field s[0..n): decimal, no sign, no leading zero, at most
 * 65535.  Every check holds for prefixes too, so complete only matters for
 * the empty field. */
static int v1_parse_port(const unsigned char *s, size_t n, bool complete, uint16_t *port_r)
{
	unsigned value = 0;

	if (n == 0)
		return complete ? -1 : 0;
	if (n > V1_PORT_MAX_LEN || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		value = value * 10 + (unsigned)(s[i] - '0');
	}
	if (value > 65535)
		return -1;
	*port_r = (uint16_t)value;
	return 0;
}

static void sockaddr_set_port(struct sockaddr_storage *sa, uint16_t port)
{
	if (sa->ss_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

/* Check the fields of a TCP4/TCP6 line, s[0..n) being what follows
 * "PROXY TCPx " up to the CR (complete) or up to the end of the data. */
static enum proxy_protocol_status v1_parse_tcp(int family, const unsigned char *s, size_t n,
					       bool complete, struct proxy_protocol_result *result,
					       const char **error_r)
{
	uint16_t source_port = 0, destination_port = 0;
	size_t pos = 0;

	for (unsigned field = 0; field < V1_FIELD_COUNT; field++) {
		size_t start = pos;
		bool field_complete;
		int ret;

		while (pos < n && s[pos] != ' ')
			pos++;
		field_complete = pos < n || complete;

		switch (field) {
		case V1_FIELD_SOURCE:
			if ((field_complete && pos == start) ||
			    v1_parse_address(family, s + start, pos - start, field_complete,
					     &result->source, &result->source_len) < 0) {
				return proxy_error(
					family == AF_INET
						? "PROXY v1 source address is not an IPv4 address"
						: "PROXY v1 source address is not an IPv6 address",
					error_r);
			}
			break;
		case V1_FIELD_DESTINATION:
			if ((field_complete && pos == start) ||
			    v1_parse_address(family, s + start, pos - start, field_complete,
					     &result->destination, &result->destination_len) < 0) {
				return proxy_error(family == AF_INET
							   ? "PROXY v1 destination address is not "
							     "an IPv4 address"
							   : "PROXY v1 destination address is not "
							     "an IPv6 address",
						   error_r);
			}
			break;
		case V1_FIELD_SOURCE_PORT:
			ret = v1_parse_port(s + start, pos - start, field_complete, &source_port);
			if (ret < 0) {
				return proxy_error("PROXY v1 source port is not a decimal number "
						   "in 0..65535 without leading zeroes",
						   error_r);
			}
			break;
		default:
			ret = v1_parse_port(s + start, pos - start, field_complete,
					    &destination_port);
			if (ret < 0) {
				return proxy_error("PROXY v1 destination port is not a decimal "
						   "number in 0..65535 without leading zeroes",
						   error_r);
			}
			break;
		}

		if (!field_complete)
			return PROXY_PROTOCOL_MORE;
		if (field + 1 == V1_FIELD_COUNT) {
			if (pos < n) {
				return proxy_error("PROXY v1 line has data after the destination "
						   "port (expected CRLF)",
						   error_r);
			}
			break;
		}
		if (pos == n) {
			/* The line ended (complete) after this field. */
			return proxy_error("PROXY v1 line ends before its four address fields",
					   error_r);
		}
		pos++; /* the single space */
	}
	sockaddr_set_port(&result->source, source_port);
	sockaddr_set_port(&result->destination, destination_port);
	return PROXY_PROTOCOL_DONE;
}

static enum proxy_protocol_status proxy_protocol_parse_v1(const unsigned char *data, size_t len,
							  struct proxy_protocol_result *result,
							  size_t *consumed_r, const char **error_r)
{
	static const struct {
		const char *keyword; /* including the space that follows */
		int family;
	} protocols[] = {
		{"TCP4 ", AF_INET},
		{"TCP6 ", AF_INET6},
		{"UNKNOWN", AF_UNSPEC},
	};
	/* The CR of the longest line is its 106th byte. */
	size_t scan_len = min_size(len, PROXY_PROTOCOL_V1_MAX_LEN - 1);
	size_t line_len = len; /* bytes before the CR, or all so far */
	bool complete = false;
	const unsigned char *rest;
	size_t rest_len;
	enum proxy_protocol_status status;

	if (memcmp(data, V1_PREFIX, min_size(len, V1_PREFIX_LEN)) != 0)
		return proxy_error("not a PROXY protocol header", error_r);

	for (size_t i = 0; i < scan_len; i++) {
		if (data[i] == '\n')
			return proxy_error("PROXY v1 line has an LF without CR", error_r);
		if (data[i] == '\r') {
			if (i + 1 < len && data[i + 1] != '\n')
				return proxy_error("PROXY v1 line has a CR without LF", error_r);
			line_len = i;
			complete = true;
			break;
		}
	}
	if (!complete && len >= PROXY_PROTOCOL_V1_MAX_LEN - 1) {
		return proxy_error("PROXY v1 line has no CRLF within its first 107 bytes", error_r);
	}
	if (line_len < V1_PREFIX_LEN) {
		/* Only reachable without a CR: the prefix has none. */
		return PROXY_PROTOCOL_MORE;
	}

	rest = data + V1_PREFIX_LEN;
	rest_len = line_len - V1_PREFIX_LEN;
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
		size_t keyword_len = strlen(protocols[i].keyword);

		if (memcmp(rest, protocols[i].keyword, min_size(rest_len, keyword_len)) != 0)
			continue;
		if (rest_len < keyword_len) {
			if (!complete)
				return PROXY_PROTOCOL_MORE;
			if (protocols[i].family != AF_UNSPEC && rest_len + 1 == keyword_len) {
				return proxy_error("PROXY v1 line ends before its four address "
						   "fields",
						   error_r);
			}
			break;
		}
		if (protocols[i].family == AF_UNSPEC) {
			/* The rest of an UNKNOWN line is ignored. */
			status = PROXY_PROTOCOL_DONE;
			result->local = true;
		} else {
			status = v1_parse_tcp(protocols[i].family, rest + keyword_len,
					      rest_len - keyword_len, complete, result, error_r);
		}
		if (status != PROXY_PROTOCOL_DONE)
			return status;
		if (!complete || line_len + 1 == len) {
			/* Fine so far, but the CR or the LF is still missing. */
			return PROXY_PROTOCOL_MORE;
		}
		*consumed_r = line_len + 2;
		return PROXY_PROTOCOL_DONE;
	}
	return proxy_error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN", error_r);
}

static void v2_set_address(int family, const unsigned char *addr, const unsigned char *port,
			   struct sockaddr_storage *sa_r, socklen_t *len_r)
{
	memset(sa_r, 0, sizeof(*sa_r));
	if (family == AF_INET) {
		struct sockaddr_in *in4 = (struct sockaddr_in *)sa_r;

		in4->sin_family = AF_INET;
		memcpy(&in4->sin_addr, addr, 4);
		memcpy(&in4->sin_port, port, 2); /* both in network order */
		*len_r = sizeof(*in4);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa_r;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, addr, 16);
		memcpy(&in6->sin6_port, port, 2);
		*len_r = sizeof(*in6);
	}
}

static enum proxy_protocol_status proxy_protocol_parse_v2(const unsigned char *data, size_t len,
							  struct proxy_protocol_result *result,
							  size_t *consumed_r, const char **error_r)
{
	unsigned char command, fam;
	size_t length, needed = 0;

	if (memcmp(data, v2_signature, min_size(len, V2_SIGNATURE_LEN)) != 0)
		return proxy_error("not a PROXY protocol header", error_r);
	if (len <= V2_SIGNATURE_LEN)
		return PROXY_PROTOCOL_MORE;

	if ((data[12] >> 4) != V2_VERSION)
		return proxy_error("PROXY v2 header has an unsupported version (expected 2)",
				   error_r);
	command = data[12] & 0x0f;
	if (command != V2_CMD_LOCAL && command != V2_CMD_PROXY) {
		return proxy_error("PROXY v2 header has an unknown command (expected LOCAL or "
				   "PROXY)",
				   error_r);
	}
	if (len <= 13)
		return PROXY_PROTOCOL_MORE;

	/* LOCAL ignores the family, whatever it says. */
	fam = data[13];
	if (command == V2_CMD_PROXY) {
		switch (fam) {
		case V2_FAM_UNSPEC:
			break;
		case V2_FAM_TCP4:
			needed = V2_ADDR_LEN_TCP4;
			break;
		case V2_FAM_TCP6:
			needed = V2_ADDR_LEN_TCP6;
			break;
		default:
			if ((fam >> 4) > 0x3 || (fam & 0x0f) > 0x2) {
				return proxy_error("PROXY v2 header has an invalid address family "
						   "or transport",
						   error_r);
			}
			if ((fam >> 4) == 0x3)
				return proxy_error("PROXY v2 header is for AF_UNIX: unix sockets "
						   "not supported",
						   error_r);
			return proxy_error("PROXY v2 header is for an unsupported protocol "
					   "(expected TCP over IPv4 or IPv6, or UNSPEC)",
					   error_r);
		}
	}
	if (len < PROXY_PROTOCOL_V2_HEADER_LEN)
		return PROXY_PROTOCOL_MORE;

	length = ((size_t)data[14] << 8) | data[15];
	if (length < needed) {
		return proxy_error("PROXY v2 header length is too short for its address block",
				   error_r);
	}
	if (len - PROXY_PROTOCOL_V2_HEADER_LEN < length)
		return PROXY_PROTOCOL_MORE;

	if (command == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC) {
		result->local = true;
	} else {
		const unsigned char *block = data + PROXY_PROTOCOL_V2_HEADER_LEN;
		int family = fam == V2_FAM_TCP4 ? AF_INET : AF_INET6;
		size_t addr_size = family == AF_INET ? 4 : 16;

		v2_set_address(family, block, block + 2 * addr_size, &result->source,
			       &result->source_len);
		v2_set_address(family, block + addr_size, block + 2 * addr_size + 2,
			       &result->destination, &result->destination_len);
	}
	/* TLVs, if any, are consumed unread. */
	*consumed_r = PROXY_PROTOCOL_V2_HEADER_LEN + length;
	return PROXY_PROTOCOL_DONE;
}

enum proxy_protocol_status proxy_protocol_parse(const void *data, size_t len,
						struct proxy_protocol_result *result_r,
						size_t *consumed_r, const char **error_r)
{
	const unsigned char *bytes = data;
	enum proxy_protocol_status status;

	memset(result_r, 0, sizeof(*result_r));
	*consumed_r = 0;
	*error_r = NULL;
	if (len == 0)
		return PROXY_PROTOCOL_MORE;

	if (bytes[0] == V1_PREFIX[0]) {
		status = proxy_protocol_parse_v1(bytes, len, result_r, consumed_r, error_r);
	} else if (bytes[0] == v2_signature[0]) {
		status = proxy_protocol_parse_v2(bytes, len, result_r, consumed_r, error_r);
	} else {
		return proxy_error("not a PROXY protocol header", error_r);
	}
	if (status != PROXY_PROTOCOL_DONE) {
		/* Drop fields a partial parse may have filled in. */
		memset(result_r, 0, sizeof(*result_r));
		*consumed_r = 0;
	}
	return status;
}
