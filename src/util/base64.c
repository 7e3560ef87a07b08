/* base64.c - standard base64 encoding and strict decoding (RFC 4648). */
#include "util/base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t len)
{
	return (len / 3 + (len % 3 != 0 ? 1 : 0)) * 4;
}

void base64_encode(const void *src, size_t len, char *dst)
{
	const unsigned char *in = src;
	size_t i = 0;

	for (; len - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*dst++ = base64_alphabet[v >> 18];
		*dst++ = base64_alphabet[(v >> 12) & 0x3f];
		*dst++ = base64_alphabet[(v >> 6) & 0x3f];
		*dst++ = base64_alphabet[v & 0x3f];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		*dst++ = base64_alphabet[v >> 18];
		*dst++ = base64_alphabet[(v >> 12) & 0x3f];
		*dst++ = '=';
		*dst++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*dst++ = base64_alphabet[v >> 18];
		*dst++ = base64_alphabet[(v >> 12) & 0x3f];
		*dst++ = base64_alphabet[(v >> 6) & 0x3f];
		*dst++ = '=';
	}
	*dst = '\0';
}

/* Value of one alphabet character, or -1.  Range checks rather than a
 * 256-entry table: short, obviously right, and fast enough for SASL. */
static int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *src, size_t len, void *dst, size_t dst_size, size_t *out_len_r)
{
	const unsigned char *in = (const unsigned char *)src;
	unsigned char *out = dst;
	size_t out_len = 0;

	*out_len_r = 0;
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		unsigned pad = 0;

		for (unsigned j = 0; j < 4; j++) {
			unsigned char c = in[i + j];

			/* '=' may only fill the last one or two positions of
			 * the final quantum. */
			if (c == '=' && last && j >= 2) {
				pad++;
				v[j] = 0;
				continue;
			}
			if (pad > 0)
				return -1;
			v[j] = base64_value(c);
			if (v[j] < 0)
				return -1;
		}
		uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
				(uint32_t)v[3];
		size_t n = 3 - pad;

		/* Bits that the padding discards must be zero, otherwise
		 * several encodings would decode to the same bytes. */
		if ((pad == 1 && (bits & 0xff) != 0) || (pad == 2 && (bits & 0xffff) != 0))
			return -1;
		if (dst_size - out_len < n)
			return -1;
		out[out_len++] = (unsigned char)(bits >> 16);
		if (n > 1)
			out[out_len++] = (unsigned char)(bits >> 8);
		if (n > 2)
			out[out_len++] = (unsigned char)bits;
	}
	*out_len_r = out_len;
	return 0;
}
