/* sasl_plain.c - SASL PLAIN (RFC 4616) response decoding and encoding. */
#include "proto/sasl_plain.h"
#include "util/base64.h"

#include <string.h>

const char sasl_plain_error_base64[] = "invalid base64 in PLAIN response";

int sasl_plain_decode(const char *b64, size_t b64_len, char *buf, size_t buf_size,
		      const char **authzid_r, const char **authcid_r, const char **passwd_r,
		      const char **error_r)
{
	const char *authzid, *authcid, *passwd, *nul1, *nul2;
	size_t len, decoded_len;

	*authzid_r = *authcid_r = *passwd_r = NULL;
	if (buf_size == 0) {
		*error_r = "PLAIN response too long";
		return -1;
	}
	/* Size check first, from the length alone, so that an overlong
	 * response is reported as such and not as bad base64. */
	decoded_len = b64_len / 4 * 3;
	if (b64_len >= 4 && b64[b64_len - 1] == '=')
		decoded_len -= b64[b64_len - 2] == '=' ? 2 : 1;
	if (decoded_len > buf_size - 1) {
		*error_r = "PLAIN response too long";
		return -1;
	}
	/* One byte stays free for the NUL that ends the password. */
	if (base64_decode(b64, b64_len, buf, buf_size - 1, &len) < 0) {
		*error_r = sasl_plain_error_base64;
		return -1;
	}
	buf[len] = '\0';

	nul1 = memchr(buf, '\0', len);
	nul2 = nul1 == NULL ? NULL : memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - buf));
	if (nul1 == NULL || nul2 == NULL ||
	    memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - buf)) != NULL) {
		*error_r = "PLAIN response must contain exactly two NUL separators";
		return -1;
	}
	authzid = buf;
	authcid = nul1 + 1;
	passwd = nul2 + 1;
	if (*authcid == '\0') {
		*error_r = "empty authentication identity in PLAIN response";
		return -1;
	}
	if (*passwd == '\0') {
		*error_r = "empty password in PLAIN response";
		return -1;
	}
	if ((size_t)(nul1 - authzid) > SASL_PLAIN_PART_MAX ||
	    (size_t)(nul2 - authcid) > SASL_PLAIN_PART_MAX ||
	    (size_t)(buf + len - passwd) > SASL_PLAIN_PART_MAX) {
		*error_r = "PLAIN response part longer than 255 bytes";
		return -1;
	}
	/* An authzid equal to authcid is just a verbose way of asking for
	 * no proxy authorisation; anything else would need it. */
	if (*authzid != '\0' && strcmp(authzid, authcid) != 0) {
		*error_r = "authorization identity differs from authentication identity";
		return -1;
	}
	*authzid_r = authzid;
	*authcid_r = authcid;
	*passwd_r = passwd;
	return 0;
}

/* The byte at offset i of the virtual message "NUL authcid NUL passwd".
 * Encoding from pieces avoids copying the password into a temporary buffer
 * that would then need wiping, and needs no length limit. */
static unsigned char plain_byte(const char *authcid, size_t authcid_len, const char *passwd,
				size_t i)
{
	if (i == 0 || i == authcid_len + 1)
		return 0;
	if (i <= authcid_len)
		return (unsigned char)authcid[i - 1];
	return (unsigned char)passwd[i - authcid_len - 2];
}

int sasl_plain_encode(const char *authcid, const char *passwd, char *dst, size_t dst_size)
{
	size_t authcid_len = strlen(authcid);
	size_t passwd_len = strlen(passwd);
	size_t total = authcid_len + passwd_len + 2;

	if (base64_encoded_len(total) >= dst_size)
		return -1;
	for (size_t i = 0; i < total; i += 3) {
		unsigned char group[3];
		size_t n = total - i < 3 ? total - i : 3;

		for (size_t j = 0; j < n; j++)
			group[j] = plain_byte(authcid, authcid_len, passwd, i + j);
		/* Each call also writes a NUL, which the next group
		 * overwrites; the last one terminates dst. */
		base64_encode(group, n, dst);
		dst += 4;
	}
	return 0;
}
