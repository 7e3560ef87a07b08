/* test_proxy_protocol.c - unit tests for src/proto/proxy_protocol (PROXY
 * protocol v1 and v2 headers) and for the trusted network lists of
 * src/util/net_util (net_networks_parse() and net_networks_match()).
 *
 * Every parse copies its input into a heap block of exactly that size, so
 * that AddressSanitizer catches any read past the bytes the caller gave.
 * Valid headers are also fed cut at every length (each cut must be MORE,
 * never ERROR) and followed by client bytes (which must not be consumed).
 * The pseudo-fuzz loop mutates valid headers with a fixed seed and checks
 * the parser's contract, including that the answer only ever moves forward
 * as bytes arrive.
 */
#include "unit.h"
#include "proto/proxy_protocol.h"
#include "util/net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/un.h>

#define FUZZ_ITERATIONS 25000

struct parse_outcome {
	enum proxy_protocol_status status;
	struct proxy_protocol_result result;
	size_t consumed;
	const char *error;
	bool contract; /* the outputs agree with the status */
};

static bool result_is_zero(const struct proxy_protocol_result *result)
{
	static const struct proxy_protocol_result zero;

	return memcmp(result, &zero, sizeof(zero)) == 0;
}

static void parse(const void *data, size_t len, struct parse_outcome *out)
{
	unsigned char *copy = malloc(len == 0 ? 1 : len);

	if (len > 0)
		memcpy(copy, data, len);
	memset(&out->result, 0xa5, sizeof(out->result));
	out->consumed = 12345;
	out->error = "unset";
	out->status = proxy_protocol_parse(copy, len, &out->result, &out->consumed, &out->error);
	free(copy);

	switch (out->status) {
	case PROXY_PROTOCOL_MORE:
		out->contract =
			out->consumed == 0 && out->error == NULL && result_is_zero(&out->result);
		break;
	case PROXY_PROTOCOL_DONE:
		out->contract =
			out->consumed > 0 && out->consumed <= len && out->error == NULL &&
			(out->result.local
				 ? out->result.source_len == 0 && out->result.destination_len == 0
				 : out->result.source_len > 0 &&
					   out->result.source.ss_family ==
						   out->result.destination.ss_family);
		break;
	case PROXY_PROTOCOL_ERROR:
		out->contract = out->consumed == 0 && out->error != NULL && *out->error != '\0' &&
				result_is_zero(&out->result);
		break;
	default:
		out->contract = false;
		break;
	}
}

/* Feed every proper prefix of a valid header (all MORE), the header itself
 * (DONE, all consumed) and the header followed by client bytes (DONE, the
 * client bytes left alone).  The final result is left in *out. */
static void check_valid(const void *header, size_t len, struct parse_outcome *out)
{
	static const char client[] = "A1 CAPABILITY\r\n";
	unsigned char with_client[PROXY_PROTOCOL_V2_MAX_LEN + sizeof(client)];
	struct parse_outcome cut;
	size_t bad_cuts = 0;

	for (size_t i = 0; i < len; i++) {
		parse(header, i, &cut);
		if (cut.status != PROXY_PROTOCOL_MORE || !cut.contract) {
			if (bad_cuts++ == 0)
				fprintf(stderr, "cut at %zu of %zu: status %d error %s\n", i, len,
					cut.status, cut.error ? cut.error : "(null)");
		}
	}
	CHECK(bad_cuts == 0);

	memcpy(with_client, header, len);
	memcpy(with_client + len, client, sizeof(client) - 1);
	parse(with_client, len + sizeof(client) - 1, out);
	CHECK(out->status == PROXY_PROTOCOL_DONE && out->contract);
	CHECK(out->consumed == len);

	parse(header, len, out);
	CHECK(out->status == PROXY_PROTOCOL_DONE && out->contract);
	CHECK(out->consumed == len);
	if (out->status != PROXY_PROTOCOL_DONE && out->error != NULL)
		fprintf(stderr, "unexpected error: %s\n", out->error);
}

static void check_valid_str(const char *header, struct parse_outcome *out)
{
	check_valid(header, strlen(header), out);
}

/* data[0..len) is an error, and stays one whatever follows. */
static void check_error(const void *data, size_t len)
{
	unsigned char longer[512];
	struct parse_outcome out;

	parse(data, len, &out);
	CHECK(out.status == PROXY_PROTOCOL_ERROR && out.contract);
	if (out.status != PROXY_PROTOCOL_ERROR)
		fprintf(stderr, "expected an error for %zu bytes, got status %d\n", len,
			out.status);

	if (len + 64 <= sizeof(longer)) {
		memcpy(longer, data, len);
		memset(longer + len, '\n', 32);
		memset(longer + len + 32, '1', 32);
		parse(longer, len + 64, &out);
		CHECK(out.status == PROXY_PROTOCOL_ERROR && out.contract);
	}
}

static void check_error_str(const char *data)
{
	check_error(data, strlen(data));
}

static void check_error_text(const char *data, const char *error)
{
	struct parse_outcome out;

	parse(data, strlen(data), &out);
	CHECK(out.status == PROXY_PROTOCOL_ERROR);
	CHECK_STR(out.error, error);
}

/* Whether sa is the IP address text with the given port. */
static bool sockaddr_is(const struct sockaddr_storage *sa, socklen_t sa_len, const char *ip,
			uint16_t port)
{
	char text[INET6_ADDRSTRLEN];

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;

		return sa_len == sizeof(*in4) &&
		       inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text)) != NULL &&
		       strcmp(text, ip) == 0 && ntohs(in4->sin_port) == port;
	}
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		return sa_len == sizeof(*in6) &&
		       inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text)) != NULL &&
		       strcmp(text, ip) == 0 && ntohs(in6->sin6_port) == port;
	}
	return false;
}

static void test_v1_valid(void)
{
	struct parse_outcome out;
	char line[256];

	check_valid_str("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &out);
	CHECK(!out.result.local);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "192.168.0.1", 56324));
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len, "192.168.0.11",
			  443));

	/* The longest TCP4 line; ports 0 and 65535. */
	check_valid_str("PROXY TCP4 255.255.255.255 0.0.0.0 0 65535\r\n", &out);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "255.255.255.255", 0));
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len, "0.0.0.0", 65535));

	check_valid_str("PROXY TCP6 2001:db8::1 2001:DB8::2 143 993\r\n", &out);
	CHECK(!out.result.local);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "2001:db8::1", 143));
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len, "2001:db8::2", 993));

	/* The longest TCP6 line: 104 bytes. */
	snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	CHECK(strlen(line) == 104);
	check_valid_str(line, &out);
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len,
			  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535));

	/* IPv4-mapped and IPv4-tailed IPv6 forms are IPv6 addresses. */
	check_valid_str("PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n", &out);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "::ffff:10.0.0.1", 1));
	CHECK(out.result.source.ss_family == AF_INET6);

	check_valid_str("PROXY UNKNOWN\r\n", &out);
	CHECK(out.result.local);
	CHECK(out.result.source_len == 0 && out.result.destination_len == 0);

	/* Whatever follows UNKNOWN is ignored, even bytes that are not text. */
	check_valid_str("PROXY UNKNOWN ffff:f::1 ::2 65535 65535\r\n", &out);
	CHECK(out.result.local);
	check_valid_str("PROXY UNKNOWN\x01\xff garbage  here\r\n", &out);
	CHECK(out.result.local);

	/* The longest line the specification allows: 107 bytes. */
	snprintf(line, sizeof(line), "PROXY UNKNOWN %s %s 65535 65535\r\n",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	CHECK(strlen(line) == PROXY_PROTOCOL_V1_MAX_LEN);
	check_valid_str(line, &out);
	CHECK(out.result.local);
}

static void test_v1_malformed(void)
{
	char line[256];

	/* Not a PROXY header at all: decided on the first byte. */
	check_error_str("A");
	check_error_str("A1 LOGIN user pass\r\n");
	check_error_str("GET / HTTP/1.1\r\n");
	check_error_text("* OK", "not a PROXY protocol header");
	/* ... or as soon as the prefix stops matching. */
	check_error_str("PROX ");
	check_error_str("PROXX");
	check_error_str("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
	check_error_str("PROXY\r\n");
	check_error_str("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
	check_error_str("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
	check_error_str("PROXY TCP5");
	check_error_str("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n");
	check_error_str("PROXY \r\n");
	check_error_str("PROXY TCP\r\n");
	check_error_str("PROXY UNK\r\n");
	check_error_text("PROXY TCP4\r\n", "PROXY v1 line ends before its four address fields");
	check_error_str("PROXY TCP4 \r\n");

	/* Line endings: CRLF and nothing else. */
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n");
	check_error_str("PROXY UNKNOWN\n");
	check_error_str("PROXY UNKNOWN x\ry\r\n");
	check_error_str("PROXY UNKNOWN x\ny\r\n");

	/* Bad addresses. */
	check_error_str("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n");
	check_error_str("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n");
	check_error_str("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8x 1 2\r\n");
	check_error_str("PROXY TCP4 ::1 ::1 1 2\r\n");
	check_error_str("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n");
	check_error_str("PROXY TCP6 ::1 ::g 1 2\r\n");
	check_error_str("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n");
	check_error_str("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n");
	check_error_str("PROXY TCP6 [::1] ::1 1 2\r\n");
	check_error_text("PROXY TCP4 1.2.3.4 x",
			 "PROXY v1 destination address is not an IPv4 address");
	check_error_text("PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
			 "PROXY v1 source address is not an IPv4 address");
	/* Longer than any IPv6 text form, decided before the line ends. */
	check_error_str("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0000:0000");

	/* Bad ports. */
	check_error_text("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
			 "PROXY v1 source port is not a decimal number in 0..65535 without "
			 "leading zeroes");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8\r\n");
	check_error_str("PROXY TCP4 1.2.3.4\r\n");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n");
	check_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 33);
	/* Decided early, before the line ends. */
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 01");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 65536");
	check_error_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ");

	/* Length: the line may not exceed 107 bytes, CRLF included. */
	snprintf(line, sizeof(line), "PROXY UNKNOWN %s %s 65535 655350\r\n",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	CHECK(strlen(line) == PROXY_PROTOCOL_V1_MAX_LEN + 1);
	check_error_text(line, "PROXY v1 line has no CRLF within its first 107 bytes");
	/* Without a CR in the first 106 bytes the line cannot end in time,
	 * and that is known at once. */
	check_error(line, PROXY_PROTOCOL_V1_MAX_LEN - 1);
	{
		struct parse_outcome out;

		parse(line, PROXY_PROTOCOL_V1_MAX_LEN - 2, &out);
		CHECK(out.status == PROXY_PROTOCOL_MORE);
	}
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN", 13);
	check_error(line, 200);
}

/* Build a v2 header: the signature, ver_cmd, fam, the given length field
 * and body_len bytes of body.  Returns the total size. */
static size_t v2_build(unsigned char *buf, unsigned char ver_cmd, unsigned char fam,
		       unsigned length, const void *body, size_t body_len)
{
	static const unsigned char signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
						    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

	memcpy(buf, signature, sizeof(signature));
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (unsigned char)(length >> 8);
	buf[15] = (unsigned char)length;
	if (body_len > 0)
		memcpy(buf + 16, body, body_len);
	return 16 + body_len;
}

static const unsigned char v2_tcp4_block[12] = {
	192,  0,    2,   1, /* source */
	198,  51,   100, 7, /* destination */
	0xc3, 0x50,         /* 50000 */
	0x00, 0x8f,         /* 143 */
};

static const unsigned char v2_tcp6_block[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    0x01, /* 2001:db8::1 */
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, /* 2001:db8::1234 */
	0xff, 0xff,                                                       /* 65535 */
	0x00, 0x00,                                                       /* 0 */
};

/* ALPN "imap", a NOOP of 3 bytes and a custom TLV. */
static const unsigned char v2_tlvs[] = {
	0x01, 0x00, 0x04, 'i', 'm', 'a', 'p', 0x04, 0x00, 0x03, 0, 0, 0, 0xe0, 0x00, 0x01, 0x42,
};

static void test_v2_valid(void)
{
	unsigned char body[256], header[PROXY_PROTOCOL_V2_MAX_LEN];
	struct parse_outcome out;
	size_t len;

	len = v2_build(header, 0x21, 0x11, 12, v2_tcp4_block, 12);
	check_valid(header, len, &out);
	CHECK(!out.result.local);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "192.0.2.1", 50000));
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len, "198.51.100.7",
			  143));

	/* TLVs are consumed and ignored. */
	memcpy(body, v2_tcp4_block, 12);
	memcpy(body + 12, v2_tlvs, sizeof(v2_tlvs));
	len = v2_build(header, 0x21, 0x11, 12 + sizeof(v2_tlvs), body, 12 + sizeof(v2_tlvs));
	check_valid(header, len, &out);
	CHECK(len == 16 + 12 + sizeof(v2_tlvs));
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "192.0.2.1", 50000));
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len, "198.51.100.7",
			  143));

	len = v2_build(header, 0x21, 0x21, 36, v2_tcp6_block, 36);
	check_valid(header, len, &out);
	CHECK(!out.result.local);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "2001:db8::1", 65535));
	CHECK(sockaddr_is(&out.result.destination, out.result.destination_len, "2001:db8::1234",
			  0));

	memcpy(body, v2_tcp6_block, 36);
	memcpy(body + 36, v2_tlvs, sizeof(v2_tlvs));
	len = v2_build(header, 0x21, 0x21, 36 + sizeof(v2_tlvs), body, 36 + sizeof(v2_tlvs));
	check_valid(header, len, &out);
	CHECK(sockaddr_is(&out.result.source, out.result.source_len, "2001:db8::1", 65535));

	/* LOCAL: health checks from the proxy itself. */
	len = v2_build(header, 0x20, 0x00, 0, NULL, 0);
	check_valid(header, len, &out);
	CHECK(out.result.local && len == 16);
	/* LOCAL with an address block (it must be skipped) and a family
	 * byte that would be invalid for PROXY (it is ignored). */
	len = v2_build(header, 0x20, 0x11, 12, v2_tcp4_block, 12);
	check_valid(header, len, &out);
	CHECK(out.result.local);
	len = v2_build(header, 0x20, 0xff, 3, "abc", 3);
	check_valid(header, len, &out);
	CHECK(out.result.local);

	/* PROXY with family UNSPEC: like LOCAL. */
	len = v2_build(header, 0x21, 0x00, 0, NULL, 0);
	check_valid(header, len, &out);
	CHECK(out.result.local);
	len = v2_build(header, 0x21, 0x00, sizeof(v2_tlvs), v2_tlvs, sizeof(v2_tlvs));
	check_valid(header, len, &out);
	CHECK(out.result.local);

	/* The largest header there is: 16 + 65535 bytes. */
	memset(header, 0, sizeof(header));
	len = v2_build(header, 0x21, 0x11, 65535, v2_tcp4_block, 12);
	{
		struct parse_outcome big;

		parse(header, PROXY_PROTOCOL_V2_MAX_LEN - 1, &big);
		CHECK(big.status == PROXY_PROTOCOL_MORE && big.contract);
		parse(header, PROXY_PROTOCOL_V2_MAX_LEN, &big);
		CHECK(big.status == PROXY_PROTOCOL_DONE && big.contract);
		CHECK(big.consumed == PROXY_PROTOCOL_V2_MAX_LEN);
		CHECK(sockaddr_is(&big.result.source, big.result.source_len, "192.0.2.1", 50000));
	}
}

static void test_v2_malformed(void)
{
	unsigned char header[512];
	struct parse_outcome out;
	size_t len;

	/* A wrong byte anywhere in the signature is an error at that byte. */
	for (size_t i = 0; i < 12; i++) {
		len = v2_build(header, 0x21, 0x11, 12, v2_tcp4_block, 12);
		header[i] ^= 0x40;
		check_error(header, i + 1);
		check_error(header, len);
	}

	/* Version 3, 1 and 0, known at the 13th byte. */
	len = v2_build(header, 0x31, 0x11, 12, v2_tcp4_block, 12);
	check_error(header, 13);
	parse(header, len, &out);
	CHECK_STR(out.error, "PROXY v2 header has an unsupported version (expected 2)");
	len = v2_build(header, 0x11, 0x11, 12, v2_tcp4_block, 12);
	check_error(header, len);
	len = v2_build(header, 0x01, 0x11, 12, v2_tcp4_block, 12);
	check_error(header, len);
	/* Unknown commands. */
	len = v2_build(header, 0x22, 0x11, 12, v2_tcp4_block, 12);
	check_error(header, 13);
	len = v2_build(header, 0x2f, 0x11, 12, v2_tcp4_block, 12);
	check_error(header, len);

	/* Families and transports for PROXY, known at the 14th byte. */
	len = v2_build(header, 0x21, 0x31, 216, NULL, 0);
	memset(header + 16, 0, 216);
	len += 216;
	check_error(header, 14);
	parse(header, len, &out);
	CHECK_STR(out.error, "PROXY v2 header is for AF_UNIX: unix sockets not supported");
	header[13] = 0x32;
	check_error(header, len);
	len = v2_build(header, 0x21, 0x12, 12, v2_tcp4_block, 12); /* UDP */
	check_error(header, 14);
	len = v2_build(header, 0x21, 0x22, 12, v2_tcp4_block, 12);
	check_error(header, len);
	len = v2_build(header, 0x21, 0x10, 12, v2_tcp4_block, 12);
	check_error(header, len);
	len = v2_build(header, 0x21, 0x01, 12, v2_tcp4_block, 12);
	check_error(header, len);
	len = v2_build(header, 0x21, 0x41, 12, v2_tcp4_block, 12);
	check_error(header, len);
	parse(header, len, &out);
	CHECK_STR(out.error, "PROXY v2 header has an invalid address family or transport");
	len = v2_build(header, 0x21, 0x13, 12, v2_tcp4_block, 12);
	check_error(header, len);

	/* The length must cover the address block ("length overflow": the
	 * addresses would run past the header), known at the 16th byte. */
	len = v2_build(header, 0x21, 0x11, 11, v2_tcp4_block, 12);
	check_error(header, 16);
	parse(header, len, &out);
	CHECK_STR(out.error, "PROXY v2 header length is too short for its address block");
	len = v2_build(header, 0x21, 0x21, 35, v2_tcp6_block, 36);
	check_error(header, len);
	len = v2_build(header, 0x21, 0x21, 12, v2_tcp4_block, 12);
	check_error(header, len);
	len = v2_build(header, 0x21, 0x11, 0, NULL, 0);
	check_error(header, len);

	/* A truncated address block is not an error but MORE: the rest may
	 * still arrive (the caller's timeout deals with it if not). */
	len = v2_build(header, 0x21, 0x11, 12, v2_tcp4_block, 8);
	parse(header, len, &out);
	CHECK(out.status == PROXY_PROTOCOL_MORE && out.contract);
	len = v2_build(header, 0x21, 0x21, 36, v2_tcp6_block, 20);
	parse(header, len, &out);
	CHECK(out.status == PROXY_PROTOCOL_MORE && out.contract);
	/* So is a length claiming TLVs that have not come yet. */
	len = v2_build(header, 0x21, 0x11, 65535, v2_tcp4_block, 12);
	parse(header, len, &out);
	CHECK(out.status == PROXY_PROTOCOL_MORE && out.contract);
}

/* A small deterministic generator (xorshift32), so a failure replays. */
static uint32_t rng_next(uint32_t *state)
{
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/* The contract between a prefix's answer and the whole input's. */
static bool prefix_consistent(const struct parse_outcome *prefix, const struct parse_outcome *whole)
{
	switch (prefix->status) {
	case PROXY_PROTOCOL_ERROR:
		return whole->status == PROXY_PROTOCOL_ERROR;
	case PROXY_PROTOCOL_DONE:
		return whole->status == PROXY_PROTOCOL_DONE &&
		       whole->consumed == prefix->consumed &&
		       memcmp(&whole->result, &prefix->result, sizeof(whole->result)) == 0;
	default:
		return true;
	}
}

static void test_fuzz(void)
{
	static const char *const v1_seeds[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 0 65535\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff:f::1 ::2 65535 65535\r\n",
	};
	unsigned char seeds[8][128];
	size_t seed_lens[8];
	unsigned seed_count = 0, contract_failures = 0, prefix_failures = 0;
	unsigned done = 0, more = 0, error = 0;
	uint32_t rng = 0x5eed1234;

	for (size_t i = 0; i < sizeof(v1_seeds) / sizeof(v1_seeds[0]); i++) {
		seed_lens[seed_count] = strlen(v1_seeds[i]);
		memcpy(seeds[seed_count++], v1_seeds[i], strlen(v1_seeds[i]));
	}
	seed_lens[seed_count] = v2_build(seeds[seed_count], 0x21, 0x11, 12, v2_tcp4_block, 12);
	seed_count++;
	{
		unsigned char body[64];

		memcpy(body, v2_tcp6_block, 36);
		memcpy(body + 36, v2_tlvs, sizeof(v2_tlvs));
		seed_lens[seed_count] = v2_build(seeds[seed_count], 0x21, 0x21,
						 36 + sizeof(v2_tlvs), body, 36 + sizeof(v2_tlvs));
		seed_count++;
	}
	seed_lens[seed_count] = v2_build(seeds[seed_count], 0x20, 0x00, 0, NULL, 0);
	seed_count++;
	seed_lens[seed_count] = v2_build(seeds[seed_count], 0x21, 0x00, 4, "\x04\x00\x01x", 4);
	seed_count++;

	for (unsigned iter = 0; iter < FUZZ_ITERATIONS; iter++) {
		unsigned char input[256];
		size_t len;
		unsigned mode = rng_next(&rng) % 8;
		struct parse_outcome whole, prefix;

		if (mode == 0) {
			/* Random bytes, sometimes behind a valid first byte. */
			len = rng_next(&rng) % 160;
			for (size_t i = 0; i < len; i++)
				input[i] = (unsigned char)rng_next(&rng);
			if (len > 0 && (rng_next(&rng) & 1) != 0)
				input[0] = (rng_next(&rng) & 1) != 0 ? 'P' : 0x0D;
		} else {
			unsigned s = rng_next(&rng) % seed_count;
			unsigned mutations = 1 + rng_next(&rng) % 4;

			len = seed_lens[s];
			memcpy(input, seeds[s], len);
			for (unsigned m = 0; m < mutations; m++) {
				size_t pos = len == 0 ? 0 : rng_next(&rng) % len;
				static const unsigned char interesting[] = {
					' ', '\r', '\n', '0',  '9',  ':',
					'.', 'f',  0x00, 0xff, 0x20, 0x21,
				};

				switch (rng_next(&rng) % 6) {
				case 0: /* flip a bit */
					if (len > 0)
						input[pos] ^=
							(unsigned char)(1u << (rng_next(&rng) % 8));
					break;
				case 1: /* an interesting byte */
					if (len > 0)
						input[pos] = interesting[rng_next(&rng) %
									 sizeof(interesting)];
					break;
				case 2: /* truncate */
					len = pos;
					break;
				case 3: /* insert a byte */
					if (len < 200) {
						memmove(input + pos + 1, input + pos, len - pos);
						input[pos] = (unsigned char)rng_next(&rng);
						len++;
					}
					break;
				case 4: /* delete a byte */
					if (len > 0) {
						memmove(input + pos, input + pos + 1,
							len - pos - 1);
						len--;
					}
					break;
				default: /* append client bytes */
					if (len + 16 <= sizeof(input)) {
						memcpy(input + len, "A1 NOOP\r\nA2 NOOP", 16);
						len += 16;
					}
					break;
				}
			}
		}

		parse(input, len, &whole);
		if (!whole.contract || whole.consumed > len)
			contract_failures++;
		if (whole.status == PROXY_PROTOCOL_DONE)
			done++;
		else if (whole.status == PROXY_PROTOCOL_MORE)
			more++;
		else
			error++;

		/* Two random prefixes must agree with the whole. */
		for (unsigned p = 0; p < 2 && len > 0; p++) {
			size_t cut = rng_next(&rng) % len;

			parse(input, cut, &prefix);
			if (!prefix.contract)
				contract_failures++;
			if (!prefix_consistent(&prefix, &whole)) {
				if (prefix_failures++ == 0)
					fprintf(stderr,
						"fuzz iteration %u: cut %zu of %zu gives %d, "
						"whole gives %d\n",
						iter, cut, len, prefix.status, whole.status);
			}
		}
	}
	CHECK(contract_failures == 0);
	CHECK(prefix_failures == 0);
	/* The mutations reach every outcome. */
	CHECK(done > FUZZ_ITERATIONS / 20);
	CHECK(more > FUZZ_ITERATIONS / 50);
	CHECK(error > FUZZ_ITERATIONS / 20);
}

/* Parse a list that must be valid; *count_r entries, caller frees. */
static struct net_network *networks_parse_ok(const char *text, size_t *count_r)
{
	struct net_network *networks = (struct net_network *)1;
	const char *error = "unset";

	*count_r = 999;
	CHECK(net_networks_parse(text, &networks, count_r, &error) == 0);
	CHECK(error == NULL);
	if (error != NULL)
		fprintf(stderr, "net_networks_parse(\"%s\"): %s\n", text, error);
	return networks;
}

static void check_networks_bad(const char *text, const char *error_expected)
{
	struct net_network *networks = NULL;
	size_t count = 999;
	const char *error = NULL;

	CHECK(net_networks_parse(text, &networks, &count, &error) == -1);
	CHECK(count == 0);
	if (error_expected != NULL)
		CHECK_STR(error, error_expected);
	else
		CHECK(error != NULL && strstr(error, "Invalid network '") == error);
	free(networks);
}

static bool match_ip(const struct net_network *networks, size_t count, const char *ip)
{
	struct sockaddr_storage sa;
	socklen_t sa_len;

	if (net_parse_ip_port(ip, 143, &sa, &sa_len) < 0) {
		fprintf(stderr, "test bug: %s is not an IP\n", ip);
		return false;
	}
	return net_networks_match(networks, count, (const struct sockaddr *)&sa);
}

static void test_networks(void)
{
	struct net_network *networks;
	size_t count;

	networks = networks_parse_ok("127.0.0.0/8, 10.1.2.3 ::1,2001:db8::/32", &count);
	CHECK(count == 4);
	if (count == 4) {
		CHECK(networks[0].family == AF_INET && networks[0].prefix == 8);
		CHECK(networks[1].family == AF_INET && networks[1].prefix == 32);
		CHECK(networks[2].family == AF_INET6 && networks[2].prefix == 128);
		CHECK(networks[3].family == AF_INET6 && networks[3].prefix == 32);
	}
	CHECK(match_ip(networks, count, "127.0.0.1"));
	CHECK(match_ip(networks, count, "127.255.255.255"));
	CHECK(!match_ip(networks, count, "128.0.0.1"));
	CHECK(!match_ip(networks, count, "126.255.255.255"));
	CHECK(match_ip(networks, count, "10.1.2.3"));
	CHECK(!match_ip(networks, count, "10.1.2.4"));
	CHECK(match_ip(networks, count, "::1"));
	CHECK(!match_ip(networks, count, "::2"));
	CHECK(match_ip(networks, count, "2001:db8::"));
	CHECK(match_ip(networks, count, "2001:db8:ffff:ffff::1"));
	CHECK(!match_ip(networks, count, "2001:db9::1"));
	/* IPv4-mapped IPv6 peers match IPv4 networks. */
	CHECK(match_ip(networks, count, "::ffff:127.0.0.1"));
	CHECK(match_ip(networks, count, "::ffff:10.1.2.3"));
	CHECK(!match_ip(networks, count, "::ffff:10.1.2.4"));
	/* ... but IPv4-compatible (::a.b.c.d) ones do not. */
	CHECK(!match_ip(networks, count, "::127.0.0.1"));
	/* Non-IP peers never match. */
	{
		struct sockaddr_un un;

		memset(&un, 0, sizeof(un));
		un.sun_family = AF_UNIX;
		CHECK(!net_networks_match(networks, count, (const struct sockaddr *)&un));
	}
	free(networks);

	/* Empty lists. */
	networks = networks_parse_ok("", &count);
	CHECK(count == 0 && networks == NULL);
	CHECK(!match_ip(networks, count, "127.0.0.1"));
	networks = networks_parse_ok(" ,, \t,", &count);
	CHECK(count == 0 && networks == NULL);

	/* /0 */
	networks = networks_parse_ok("0.0.0.0/0", &count);
	CHECK(count == 1 && networks[0].prefix == 0);
	CHECK(match_ip(networks, count, "0.0.0.0"));
	CHECK(match_ip(networks, count, "255.255.255.255"));
	CHECK(match_ip(networks, count, "::ffff:8.8.8.8"));
	CHECK(!match_ip(networks, count, "::1"));
	free(networks);
	networks = networks_parse_ok("::/0", &count);
	CHECK(match_ip(networks, count, "::1"));
	CHECK(match_ip(networks, count, "ffff::1"));
	CHECK(match_ip(networks, count, "8.8.8.8")); /* as ::ffff:8.8.8.8 */
	free(networks);

	/* /32 and /128 are single hosts, like no prefix. */
	networks = networks_parse_ok("192.0.2.1/32 2001:db8::1/128", &count);
	CHECK(count == 2);
	CHECK(match_ip(networks, count, "192.0.2.1"));
	CHECK(!match_ip(networks, count, "192.0.2.0"));
	CHECK(!match_ip(networks, count, "192.0.2.2"));
	CHECK(match_ip(networks, count, "2001:db8::1"));
	CHECK(!match_ip(networks, count, "2001:db8::"));
	CHECK(!match_ip(networks, count, "2001:db8::2"));
	free(networks);

	/* Prefixes not on a byte boundary; host bits are cleared. */
	networks = networks_parse_ok("224.0.0.0/3,10.1.2.3/8,fe80::1/10", &count);
	CHECK(count == 3);
	CHECK(match_ip(networks, count, "224.0.0.1"));
	CHECK(match_ip(networks, count, "255.1.1.1"));
	CHECK(!match_ip(networks, count, "223.255.255.255"));
	CHECK(match_ip(networks, count, "10.200.0.1"));
	CHECK(!match_ip(networks, count, "11.0.0.0"));
	CHECK(match_ip(networks, count, "febf::1"));
	CHECK(!match_ip(networks, count, "fec0::1"));
	if (count == 3) {
		static const unsigned char ten[4] = {10, 0, 0, 0};

		CHECK(memcmp(networks[1].addr, ten, 4) == 0);
		CHECK(networks[2].addr[0] == 0xfe && networks[2].addr[1] == 0x80 &&
		      networks[2].addr[15] == 0);
	}
	free(networks);

	/* An IPv6 network written in mapped form covers IPv4 peers too. */
	networks = networks_parse_ok("::ffff:10.0.0.0/104", &count);
	CHECK(match_ip(networks, count, "10.2.3.4"));
	CHECK(match_ip(networks, count, "::ffff:10.2.3.4"));
	CHECK(!match_ip(networks, count, "11.2.3.4"));
	free(networks);

	/* Bad entries. */
	check_networks_bad(
		"1.2.3.4/33",
		"Invalid network '1.2.3.4/33': the prefix of an IPv4 network must be 0..32");
	check_networks_bad("abc", "Invalid network 'abc': expected an IPv4 or IPv6 address, "
				  "optionally followed by /prefix");
	check_networks_bad("1.2.3.4/",
			   "Invalid network '1.2.3.4/': the prefix after '/' is missing");
	check_networks_bad("127.0.0.1, 10.0.0.0/8 bad/8 ::1",
			   "Invalid network 'bad/8': expected an IPv4 or IPv6 address, "
			   "optionally followed by /prefix");
	check_networks_bad("::1/129", NULL);
	check_networks_bad("::1/99999999999999999999", NULL);
	check_networks_bad("1.2.3.4/-1", NULL);
	check_networks_bad("1.2.3.4/+8", NULL);
	check_networks_bad("1.2.3.4/8x", NULL);
	check_networks_bad("1.2.3.4/8/8", NULL);
	check_networks_bad("/8", NULL);
	check_networks_bad("1.2.3", NULL);
	check_networks_bad("01.2.3.4", NULL);
	check_networks_bad("[::1]", NULL);
	check_networks_bad("fe80::1%eth0", NULL);
	check_networks_bad("localhost", NULL);
	check_networks_bad("1.2.3.4;5.6.7.8", NULL);
	/* Long junk is quoted only in part. */
	{
		char text[300];
		struct net_network *bad = NULL;
		size_t bad_count;
		const char *error = NULL;

		memset(text, 'x', sizeof(text) - 1);
		text[sizeof(text) - 1] = '\0';
		CHECK(net_networks_parse(text, &bad, &bad_count, &error) == -1);
		CHECK(error != NULL && strlen(error) < 200 && strstr(error, "xxx...'") != NULL);
		free(bad);
	}
}

void suite_proxy_protocol(void)
{
	test_v1_valid();
	test_v1_malformed();
	test_v2_valid();
	test_v2_malformed();
	test_fuzz();
	test_networks();
}
