/* test_sasl_plain.c - unit tests for src/proto/sasl_plain: decoding valid
 * and malformed PLAIN responses, and encoding our own. */
#include "unit.h"
#include "proto/sasl_plain.h"
#include "util/base64.h"

/* Base64-encode raw[0..len) into b64 (which must be big enough). */
static void encode_raw(const char *raw, size_t len, char *b64)
{
	base64_encode(raw, len, b64);
}

struct plain_result {
	int ret;
	const char *authzid, *authcid, *passwd, *error;
	char buf[SASL_PLAIN_BUF_SIZE];
};

static void decode_raw(const char *raw, size_t len, struct plain_result *r)
{
	char b64[2048];

	encode_raw(raw, len, b64);
	r->error = NULL;
	r->ret = sasl_plain_decode(b64, strlen(b64), r->buf, sizeof(r->buf), &r->authzid,
				   &r->authcid, &r->passwd, &r->error);
}

#define DECODE_LIT(lit, r) decode_raw(lit, sizeof(lit) - 1, r)

static void test_valid(void)
{
	struct plain_result r;

	DECODE_LIT("\0user\0pass", &r);
	CHECK(r.ret == 0);
	CHECK_STR(r.authzid, "");
	CHECK_STR(r.authcid, "user");
	CHECK_STR(r.passwd, "pass");

	/* An authzid equal to the authcid is accepted. */
	DECODE_LIT("user\0user\0pass", &r);
	CHECK(r.ret == 0);
	CHECK_STR(r.authzid, "user");
	CHECK_STR(r.authcid, "user");
	CHECK_STR(r.passwd, "pass");

	/* UTF-8 and spaces are just bytes. */
	DECODE_LIT("\0j\xc3\xb6rg@example.org\0p a s s w\xc3\xb6rd", &r);
	CHECK(r.ret == 0);
	CHECK_STR(r.authcid, "j\xc3\xb6rg@example.org");
	CHECK_STR(r.passwd, "p a s s w\xc3\xb6rd");

	/* The well-known encoding. */
	{
		char buf[64];
		const char *z, *c, *p, *e;

		CHECK(sasl_plain_decode("AHVzZXIAcGFzcw==", 16, buf, sizeof(buf), &z, &c, &p, &e) ==
		      0);
		CHECK_STR(z, "");
		CHECK_STR(c, "user");
		CHECK_STR(p, "pass");
		/* The smallest buffer that holds it: 10 bytes + NUL. */
		CHECK(sasl_plain_decode("AHVzZXIAcGFzcw==", 16, buf, 11, &z, &c, &p, &e) == 0);
		CHECK_STR(p, "pass");
		CHECK(sasl_plain_decode("AHVzZXIAcGFzcw==", 16, buf, 10, &z, &c, &p, &e) == -1);
		CHECK_STR(e, "PLAIN response too long");
		CHECK(sasl_plain_decode("AHVzZXIAcGFzcw==", 16, buf, 0, &z, &c, &p, &e) == -1);
	}
}

static void check_fails(const char *raw, size_t len, const char *error)
{
	struct plain_result r;

	decode_raw(raw, len, &r);
	CHECK(r.ret == -1);
	CHECK_STR(r.error, error);
	CHECK(r.authzid == NULL && r.authcid == NULL && r.passwd == NULL);
}

#define CHECK_FAILS(lit, error) check_fails(lit, sizeof(lit) - 1, error)

static void test_malformed(void)
{
	const char *nuls = "PLAIN response must contain exactly two NUL separators";

	CHECK_FAILS("userpass", nuls);
	CHECK_FAILS("user\0pass", nuls);
	CHECK_FAILS("\0user\0pass\0", nuls);
	CHECK_FAILS("\0user\0pa\0ss", nuls);
	CHECK_FAILS("\0\0\0", nuls);
	CHECK_FAILS("", nuls);
	CHECK_FAILS("\0", nuls);
	CHECK_FAILS("\0\0pass", "empty authentication identity in PLAIN response");
	CHECK_FAILS("\0user\0", "empty password in PLAIN response");
	CHECK_FAILS("\0\0", "empty authentication identity in PLAIN response");
	CHECK_FAILS("admin\0user\0pass",
		    "authorization identity differs from authentication identity");
	CHECK_FAILS("User\0user\0pass",
		    "authorization identity differs from authentication identity");

	/* Bad base64 in all its forms. */
	{
		static const char *const bad[] = {
			"AHVzZXIAcGFzcw=",      "AHVzZXIAcGFzcw", "AHVzZXIAcGFzcw==\r\n",
			"AHVz ZXIAcGFzcw==",    "!!!!",           "=",
			"AHVzZXIAcGFzcw==AAAA",
		};
		char buf[64];
		const char *z, *c, *p, *e;

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			e = NULL;
			CHECK(sasl_plain_decode(bad[i], strlen(bad[i]), buf, sizeof(buf), &z, &c,
						&p, &e) == -1);
			CHECK_STR(e, "invalid base64 in PLAIN response");
			CHECK(z == NULL && c == NULL && p == NULL);
		}
		/* No response at all has no NULs. */
		CHECK(sasl_plain_decode("", 0, buf, sizeof(buf), &z, &c, &p, &e) == -1);
		CHECK_STR(e, nuls);
	}
}

static void test_lengths(void)
{
	char raw[1024];
	char name255[256], name256[257];
	struct plain_result r;
	size_t n;

	memset(name255, 'u', 255);
	name255[255] = '\0';
	memset(name256, 'u', 256);
	name256[256] = '\0';

	/* 255 bytes in every part: the largest valid response. */
	n = (size_t)snprintf(raw, sizeof(raw), "%s", name255) + 1;
	n += (size_t)snprintf(raw + n, sizeof(raw) - n, "%s", name255) + 1;
	memset(raw + n, 'p', 255);
	n += 255;
	CHECK(n == SASL_PLAIN_BUF_SIZE - 1);
	decode_raw(raw, n, &r);
	CHECK(r.ret == 0);
	CHECK(r.ret == 0 && strlen(r.authzid) == 255 && strlen(r.authcid) == 255 &&
	      strlen(r.passwd) == 255);

	/* 256 bytes in any one part. */
	n = 0;
	raw[n++] = '\0';
	memcpy(raw + n, name256, 257);
	n += 257;
	memcpy(raw + n, "pass", 4);
	n += 4;
	check_fails(raw, n, "PLAIN response part longer than 255 bytes");

	n = 0;
	raw[n++] = '\0';
	memcpy(raw + n, "user", 5);
	n += 5;
	memset(raw + n, 'p', 256);
	n += 256;
	check_fails(raw, n, "PLAIN response part longer than 255 bytes");

	n = 0;
	memcpy(raw + n, name256, 257);
	n += 257;
	memcpy(raw + n, name256, 257);
	n += 257;
	memcpy(raw + n, "pass", 4);
	n += 4;
	check_fails(raw, n, "PLAIN response part longer than 255 bytes");

	/* More than the largest valid response does not fit the buffer. */
	n = 0;
	raw[n++] = '\0';
	memcpy(raw + n, "user", 5);
	n += 5;
	memset(raw + n, 'p', 900);
	n += 900;
	check_fails(raw, n, "PLAIN response too long");
}

static void test_encode(void)
{
	char dst[64];
	struct plain_result r;
	char big[1000], out[2000];

	CHECK(sasl_plain_encode("user", "pass", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "AHVzZXIAcGFzcw==");
	/* 16 characters need 17 bytes with the NUL. */
	CHECK(sasl_plain_encode("user", "pass", dst, 17) == 0);
	CHECK_STR(dst, "AHVzZXIAcGFzcw==");
	CHECK(sasl_plain_encode("user", "pass", dst, 16) == -1);
	CHECK(sasl_plain_encode("user", "pass", dst, 0) == -1);

	/* Every length modulo 3, decoded back. */
	for (unsigned i = 0; i < 6; i++) {
		char pw[8];
		const char *z, *c, *p, *e;

		memcpy(pw, "secret", 6);
		pw[i + 1] = '\0';
		CHECK(sasl_plain_encode("bob", pw, dst, sizeof(dst)) == 0);
		CHECK(strlen(dst) == base64_encoded_len(3 + strlen(pw) + 2));
		CHECK(sasl_plain_decode(dst, strlen(dst), r.buf, sizeof(r.buf), &z, &c, &p, &e) ==
		      0);
		CHECK_STR(z, "");
		CHECK_STR(c, "bob");
		CHECK_STR(p, pw);
	}

	/* Encoding does not impose the 255 limit, the size of dst does. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(sasl_plain_encode("user", big, out, sizeof(out)) == 0);
	CHECK(strlen(out) == base64_encoded_len(4 + 999 + 2));
	CHECK(sasl_plain_encode("user", big, out, 1000) == -1);

	/* Empty strings still make a well-formed message. */
	CHECK(sasl_plain_encode("", "", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "AAA=");
}

void suite_sasl_plain(void)
{
	test_valid();
	test_malformed();
	test_lengths();
	test_encode();
}
