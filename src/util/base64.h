/* base64.h - standard base64 (RFC 4648 section 4, with padding), as used by
 * SASL exchanges in IMAP AUTHENTICATE, POP3 AUTH and friends.
 *
 * Decoding is strict on purpose: no whitespace, padding required, no data
 * after padding and no stray bits in the last quantum.  Whatever a client
 * sends through the proxy must mean exactly one thing, so that the proxy and
 * the backend can never disagree about the decoded bytes.
 */
#ifndef BASE64_H
#define BASE64_H

#include <stddef.h>

/* Length of the encoding of len bytes, without the terminating NUL. */
size_t base64_encoded_len(size_t len);

/* Encode len bytes of src into dst, which must hold
 * base64_encoded_len(len) + 1 bytes; dst is NUL-terminated. */
void base64_encode(const void *src, size_t len, char *dst);

/* Decode len characters of src into dst (at most dst_size bytes) and set
 * *out_len_r to the number of bytes written.  Returns 0 on success, -1 if src
 * holds a character outside the alphabet, is not a whole number of padded
 * quanta, has misplaced padding or non-zero pad bits, or if the result does
 * not fit into dst_size bytes.  dst is not NUL-terminated. */
int base64_decode(const char *src, size_t len, void *dst, size_t dst_size, size_t *out_len_r);

#endif
