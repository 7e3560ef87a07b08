/* test_base64.c - unit tests for src/util/base64: RFC 4648 vectors, strict
 * rejection of everything that is not canonical padded base64, and
 * round trips of pseudo-random data. */
#include "unit.h"
#include "util/base64.h"

#include <stdint.h>

static const struct {
	const char *raw, *b64;
} vectors[] = {
	/* RFC 4648 section 10 */
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

static int decode_str(const char *b64, char *dst, size_t dst_size, size_t *len_r)
{
	return base64_decode(b64, strlen(b64), dst, dst_size, len_r);
}

static void test_vectors(void)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char enc[16], dec[16];
		size_t raw_len = strlen(vectors[i].raw), len = 99;

		CHECK(base64_encoded_len(raw_len) == strlen(vectors[i].b64));
		memset(enc, 'x', sizeof(enc));
		base64_encode(vectors[i].raw, raw_len, enc);
		CHECK_STR(enc, vectors[i].b64);

		CHECK(decode_str(vectors[i].b64, dec, sizeof(dec), &len) == 0);
		CHECK(len == raw_len);
		CHECK(memcmp(dec, vectors[i].raw, raw_len) == 0);
	}
	CHECK(base64_encoded_len(0) == 0);
	CHECK(base64_encoded_len(1) == 4);
	CHECK(base64_encoded_len(3) == 4);
	CHECK(base64_encoded_len(4) == 8);
	CHECK(base64_encoded_len(767) == 1024);
}

static void test_binary(void)
{
	unsigned char raw[256], dec[256];
	char enc[400];
	size_t len;

	for (unsigned i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)i;
	base64_encode(raw, sizeof(raw), enc);
	CHECK(strlen(enc) == base64_encoded_len(sizeof(raw)));
	CHECK(decode_str(enc, (char *)dec, sizeof(dec), &len) == 0);
	CHECK(len == sizeof(raw) && memcmp(raw, dec, len) == 0);
	/* Both characters beyond the letters and digits appear. */
	CHECK(strchr(enc, '+') != NULL && strchr(enc, '/') != NULL);

	/* Decoding "////" gives 0xff bytes, "++++" gives 0xfb 0xef 0xbe. */
	CHECK(decode_str("////", (char *)dec, sizeof(dec), &len) == 0);
	CHECK(len == 3 && dec[0] == 0xff && dec[1] == 0xff && dec[2] == 0xff);
	CHECK(decode_str("++++", (char *)dec, sizeof(dec), &len) == 0);
	CHECK(len == 3 && dec[0] == 0xfb && dec[1] == 0xef && dec[2] == 0xbe);
}

static void test_invalid(void)
{
	static const char *const bad[] = {
		"Zg",               /* no padding */
		"Zg=",              /* short padding */
		"Z",                /* lone character */
		"Z===",             /* three pad characters */
		"====",             /* padding only */
		"=Zg=",             /* padding first */
		"Zg=A",             /* data after padding */
		"Zg==Zg==",         /* padding before the last quantum */
		"Zm9v====",         /* a whole quantum of padding */
		"Zm9v\n",           /* whitespace */
		"Zm9v\r\n",         /* whitespace */
		"Zm 9v",            /* whitespace */
		" Zm9v",            /* whitespace */
		"Zm9-",             /* base64url alphabet */
		"Zm9_",             /* base64url alphabet */
		"Zm9.",             /* outside any alphabet */
		"Zh==",             /* non-zero pad bits */
		"Zm9=",             /* non-zero pad bits */
		"Zm8=Zm8=",         /* padding in the middle */
		"\xff\xff\xff\xff", /* 8-bit */
	};
	char dst[32];
	size_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		len = 99;
		CHECK(decode_str(bad[i], dst, sizeof(dst), &len) == -1);
		CHECK(len == 0);
	}
	/* An embedded NUL counts as an invalid character. */
	CHECK(base64_decode("Zm\0v", 4, dst, sizeof(dst), &len) == -1);
	/* len is honoured: the NUL after "Zm9v" is outside it. */
	CHECK(base64_decode("Zm9vYmFy", 4, dst, sizeof(dst), &len) == 0);
	CHECK(len == 3 && memcmp(dst, "foo", 3) == 0);
}

static void test_output_size(void)
{
	char dst[8];
	size_t len;

	memset(dst, 'x', sizeof(dst));
	CHECK(decode_str("Zm9vYmFy", dst, 6, &len) == 0 && len == 6);
	CHECK(decode_str("Zm9vYmFy", dst, 5, &len) == -1);
	CHECK(decode_str("Zm9vYmE=", dst, 5, &len) == 0 && len == 5);
	CHECK(decode_str("Zm9vYmE=", dst, 4, &len) == -1);
	CHECK(decode_str("Zg==", dst, 1, &len) == 0 && len == 1);
	CHECK(decode_str("Zg==", dst, 0, &len) == -1);
	CHECK(decode_str("", dst, 0, &len) == 0 && len == 0);
	CHECK(decode_str("", NULL, 0, &len) == 0 && len == 0);
	/* Nothing is written beyond dst_size even on failure. */
	memset(dst, 'x', sizeof(dst));
	CHECK(decode_str("Zm9vYmFy", dst, 4, &len) == -1);
	CHECK(dst[4] == 'x');
}

static void test_round_trips(void)
{
	uint32_t seed = 12345;
	unsigned char raw[64], dec[64];
	char enc[100];
	size_t len;

	for (unsigned iter = 0; iter < 500; iter++) {
		size_t n = iter % sizeof(raw);

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			raw[i] = (unsigned char)(seed >> 16);
		}
		enc[base64_encoded_len(n) + 1] = 'x';
		base64_encode(raw, n, enc);
		CHECK(enc[base64_encoded_len(n)] == '\0');
		CHECK(enc[base64_encoded_len(n) + 1] == 'x');
		CHECK(base64_decode(enc, strlen(enc), dec, n, &len) == 0);
		CHECK(len == n && memcmp(raw, dec, n) == 0);
	}
}

void suite_base64(void)
{
	test_vectors();
	test_binary();
	test_invalid();
	test_output_size();
	test_round_trips();
}
