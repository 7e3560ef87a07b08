/* proxy_protocol.h - the HAProxy PROXY protocol header, version 1 (text) and
 * version 2 (binary), as a load balancer in front of us sends it.
 *
 * A trusted proxy that accepted the client's connection opens its own
 * connection to us and sends, before any IMAP byte, one header saying who
 * the client really is (source) and which address it connected to
 * (destination).  This module only parses that header: pure code, no
 * sockets and no event loop, so that it can be unit tested and fuzzed.
 * Deciding whether a peer may send a header at all is the caller's job
 * (see net_networks_match() in util/net_util.h); the specification forbids
 * guessing whether a header is present, so on a listener that expects one,
 * anything else is an error.
 *
 * Calling convention: pass every byte received on the connection so far,
 * from its very first byte, on every call.  The header is short, so the
 * parser keeps no state and simply looks again.  Bytes that cannot start a
 * PROXY header are rejected as soon as they arrive, without waiting for a
 * whole line or a whole binary header.
 *
 * What is accepted:
 *   v1  "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", likewise TCP6, and
 *       "PROXY UNKNOWN<anything>\r\n".  Exactly one space between fields,
 *       addresses as inet_pton() reads them (the family must match the
 *       keyword), ports in decimal 0..65535 without sign or leading zero,
 *       and the whole line, CRLF included, at most 107 bytes.  A CR not
 *       followed by LF, or an LF not preceded by CR, is an error anywhere in
 *       the line, UNKNOWN's ignored part included.
 *   v2  the 16-byte header (signature, version 2, command, family, length)
 *       and then length bytes.  LOCAL: the family and address block are
 *       ignored.  PROXY over TCP/IPv4 (0x11) or TCP/IPv6 (0x21): addresses
 *       and ports are returned, and whatever follows them inside length
 *       (TLVs) is consumed unread.  PROXY with family byte 0x00 (UNSPEC) is
 *       treated like LOCAL.  Every other family byte is an error, UDP and
 *       AF_UNIX included: falling back to the connection's own address
 *       would make the client look like the proxy, which is trusted (and
 *       may well be on loopback, which counts as secured).
 *
 * "local" results (v2 LOCAL, v2 UNSPEC, v1 UNKNOWN) mean the connection
 * keeps its real endpoints; the caller should remember that the peer only
 * vouched for itself.
 */
#ifndef PROXY_PROTOCOL_H
#define PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The longest v1 line, CRLF included ("PROXY UNKNOWN" with IPv6 fields). */
#define PROXY_PROTOCOL_V1_MAX_LEN 107
/* The fixed part of a v2 header: signature, ver_cmd, fam, length. */
#define PROXY_PROTOCOL_V2_HEADER_LEN 16
/* The longest v2 header: the fixed part plus a 16-bit length.  A caller's
 * receive buffer must be able to hold this much to parse every valid v2
 * header (a caller that wants a lower limit can refuse MORE beyond it). */
#define PROXY_PROTOCOL_V2_MAX_LEN (PROXY_PROTOCOL_V2_HEADER_LEN + 65535)

enum proxy_protocol_status {
	/* Everything so far is a valid beginning; call again with more. */
	PROXY_PROTOCOL_MORE,
	/* *result_r is filled and the first *consumed_r bytes are the
	 * header; what follows them is the client's protocol. */
	PROXY_PROTOCOL_DONE,
	/* Not a valid PROXY header: *error_r says why.  The caller closes
	 * the connection; asking again with more bytes gives the same
	 * answer. */
	PROXY_PROTOCOL_ERROR,
};

struct proxy_protocol_result {
	/* v2 LOCAL or UNSPEC, or v1 "PROXY UNKNOWN": no address carried,
	 * keep the connection's own. */
	bool local;
	/* When !local: AF_INET or AF_INET6 sockaddrs, ports included; the
	 * lengths are sizeof(struct sockaddr_in) or sizeof(sockaddr_in6).
	 * When local, zeroed with zero lengths. */
	struct sockaddr_storage source, destination;
	socklen_t source_len, destination_len;
};

/* Parse the PROXY header at the start of data[0..len), which holds all the
 * bytes received on the connection so far.  Returns:
 *   MORE   every byte so far fits a valid header, but it is not complete
 *          (*consumed_r = 0);
 *   DONE   *result_r is set and *consumed_r is the header's length;
 *   ERROR  *error_r is a sentence saying what was wrong (*consumed_r = 0).
 * *result_r is zeroed unless DONE; *error_r is NULL unless ERROR. */
enum proxy_protocol_status proxy_protocol_parse(const void *data, size_t len,
						struct proxy_protocol_result *result_r,
						size_t *consumed_r, const char **error_r);

#endif
