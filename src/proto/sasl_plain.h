/* sasl_plain.h - the SASL PLAIN mechanism (RFC 4616): decoding a client's
 * response on the way in, and encoding our own for the backend login.
 */
#ifndef SASL_PLAIN_H
#define SASL_PLAIN_H

#include <stddef.h>

/* RFC 4616 limits each of authzid, authcid and passwd to 255 octets. */
#define SASL_PLAIN_PART_MAX 255

/* Room a decode buffer needs for the largest valid response: three parts,
 * two separators and the NUL that terminates the password. */
#define SASL_PLAIN_BUF_SIZE (3 * SASL_PLAIN_PART_MAX + 3)

/* Decode the base64 PLAIN response b64 (b64_len characters) into buf and
 * split it into "authzid NUL authcid NUL passwd".  Every part is left
 * NUL-terminated in buf and returned through the _r pointers; *authzid_r is
 * "" when the client sent none.  Returns 0, or -1 with *error_r set (and the
 * part pointers set to NULL) when the base64 is invalid, the message does not
 * have exactly two NULs, authcid or passwd is empty, a part exceeds 255
 * bytes, the response does not fit into buf, or a non-empty authzid differs
 * from authcid (proxy authorisation is not supported). */
/* The error_r of sasl_plain_decode() when the response is not base64 at all
 * (compare the pointer). */
extern const char sasl_plain_error_base64[];

int sasl_plain_decode(const char *b64, size_t b64_len, char *buf, size_t buf_size,
		      const char **authzid_r, const char **authcid_r, const char **passwd_r,
		      const char **error_r);

/* Write the base64 of "NUL authcid NUL passwd" (no authzid) to dst and
 * NUL-terminate it.  Returns 0, or -1 if it does not fit into dst_size. */
int sasl_plain_encode(const char *authcid, const char *passwd, char *dst, size_t dst_size);

#endif
