/* test_cql_protocol.c - unit tests for src/store/cql_protocol (the CQL
 * native protocol v4 codec).
 *
 * Requests are built and compared byte for byte with frames worked out by
 * hand from doc/native_protocol_v4.spec.  Responses are built here with a
 * tiny writer (struct frame) that follows the spec's notation, then parsed
 * from a heap block of exactly the frame's size, so that AddressSanitizer
 * catches any read past the frame.  Every valid response is also parsed cut
 * short at every length (always an error) and, in the pseudo-fuzz loop,
 * with random damage (fixed seed): whatever parses must then be walkable
 * end to end - rows, columns, nested types, lists, sentences - without a
 * single read outside the frame.
 */
#include "unit.h"
#include "store/cql_protocol.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define FUZZ_ITERATIONS 30000
#define FRAME_MAX 4096

/* ---- helpers: building response frames by hand ---- */

struct frame {
	unsigned char data[FRAME_MAX];
	size_t len;
};

static void f_mem(struct frame *f, const void *data, size_t len)
{
	if (f->len + len > sizeof(f->data))
		abort();
	memcpy(f->data + f->len, data, len);
	f->len += len;
}

static void f_u8(struct frame *f, uint8_t v)
{
	f_mem(f, &v, 1);
}

static void f_u16(struct frame *f, uint16_t v)
{
	f_u8(f, (uint8_t)(v >> 8));
	f_u8(f, (uint8_t)v);
}

static void f_u32(struct frame *f, uint32_t v)
{
	f_u16(f, (uint16_t)(v >> 16));
	f_u16(f, (uint16_t)v);
}

static void f_u64(struct frame *f, uint64_t v)
{
	f_u32(f, (uint32_t)(v >> 32));
	f_u32(f, (uint32_t)v);
}

/* [string] */
static void f_string(struct frame *f, const char *s)
{
	f_u16(f, (uint16_t)strlen(s));
	f_mem(f, s, strlen(s));
}

/* [bytes]; len < 0 writes that (null) length and nothing else */
static void f_bytes(struct frame *f, const void *data, int32_t len)
{
	f_u32(f, (uint32_t)len);
	if (len > 0)
		f_mem(f, data, (size_t)len);
}

static void f_text_cell(struct frame *f, const char *s)
{
	f_bytes(f, s, (int32_t)strlen(s));
}

static void f_int_cell(struct frame *f, int32_t v)
{
	f_u32(f, 4);
	f_u32(f, (uint32_t)v);
}

static void f_bigint_cell(struct frame *f, int64_t v)
{
	f_u32(f, 8);
	f_u64(f, (uint64_t)v);
}

static void f_null_cell(struct frame *f)
{
	f_u32(f, 0xFFFFFFFF);
}

/* Start a response frame: version 0x84, length patched by f_end(). */
static void f_begin(struct frame *f, uint8_t flags, int16_t stream, uint8_t opcode)
{
	f->len = 0;
	f_u8(f, CQL_VERSION_RESPONSE);
	f_u8(f, flags);
	f_u16(f, (uint16_t)stream);
	f_u8(f, opcode);
	f_u32(f, 0);
}

static void f_end(struct frame *f)
{
	uint32_t body = (uint32_t)(f->len - CQL_FRAME_HEADER_LEN);

	f->data[5] = (unsigned char)(body >> 24);
	f->data[6] = (unsigned char)(body >> 16);
	f->data[7] = (unsigned char)(body >> 8);
	f->data[8] = (unsigned char)body;
}

/* ---- helpers: parsing from an exact heap copy ---- */

struct parsed {
	unsigned char *copy;
	struct cql_response resp;
	const char *error;
	int ret;
};

static int parse_bytes(const void *data, size_t len, struct parsed *out)
{
	out->copy = malloc(len == 0 ? 1 : len);
	if (len > 0)
		memcpy(out->copy, data, len);
	out->error = "unset";
	out->ret = cql_response_parse(out->copy, len, &out->resp, &out->error);
	return out->ret;
}

static int parse_frame(const struct frame *f, struct parsed *out)
{
	return parse_bytes(f->data, f->len, out);
}

static void parsed_free(struct parsed *out)
{
	free(out->copy);
	out->copy = NULL;
}

/* Parse and expect -1 with a sentence containing want (if not NULL). */
static void check_malformed(const struct frame *f, const char *want)
{
	struct parsed p;

	CHECK(parse_frame(f, &p) == -1);
	CHECK(p.error != NULL && *p.error != '\0');
	if (want != NULL && p.error != NULL && strstr(p.error, want) == NULL) {
		fprintf(stderr, "error \"%s\" does not contain \"%s\"\n", p.error, want);
		CHECK(false);
	}
	parsed_free(&p);
}

static bool str_is(struct cql_string s, const char *text)
{
	return cql_string_equals(s, text);
}

static bool bytes_equal(const struct cql_buf *buf, size_t offset, const char *expected,
			size_t expected_len)
{
	if (buf->len >= offset && buf->len - offset == expected_len &&
	    memcmp(buf->data + offset, expected, expected_len) == 0)
		return true;
	fprintf(stderr, "got     ");
	for (size_t i = offset; i < buf->len; i++)
		fprintf(stderr, "%02x", buf->data[i]);
	fprintf(stderr, "\nexpected");
	for (size_t i = 0; i < expected_len; i++)
		fprintf(stderr, "%02x", (unsigned char)expected[i]);
	fprintf(stderr, "\n");
	return false;
}

#define CHECK_FRAME(buf, offset, literal) \
	CHECK(bytes_equal((buf), (offset), (literal), sizeof(literal) - 1))

/* ---- requests ---- */

static void test_build_simple(void)
{
	struct cql_buf buf = {0};
	const char *error = NULL;
	size_t mark;

	/* STARTUP, stream 1: [string map] {"CQL_VERSION": "3.0.0"}, 22 bytes */
	CHECK(cql_build_startup(&buf, 1, &error) == 0);
	CHECK_FRAME(&buf, 0,
		    "\x04\x00\x00\x01\x01\x00\x00\x00\x16"
		    "\x00\x01"
		    "\x00\x0b"
		    "CQL_VERSION"
		    "\x00\x05"
		    "3.0.0");

	/* OPTIONS, appended after it: empty body */
	mark = buf.len;
	CHECK(cql_build_options(&buf, 0, &error) == 0);
	CHECK_FRAME(&buf, mark, "\x04\x00\x00\x00\x05\x00\x00\x00\x00");

	/* AUTH_RESPONSE for PasswordAuthenticator: [bytes] "\0cassandra\0secret" */
	buf.len = 0;
	CHECK(cql_build_auth_password(&buf, 2, "cassandra", "secret", &error) == 0);
	CHECK_FRAME(&buf, 0,
		    "\x04\x00\x00\x02\x0f\x00\x00\x00\x15"
		    "\x00\x00\x00\x11"
		    "\x00"
		    "cassandra"
		    "\x00"
		    "secret");

	/* AUTH_RESPONSE with a null token, stream 32767 */
	buf.len = 0;
	CHECK(cql_build_auth_response(&buf, 32767, NULL, 0, &error) == 0);
	CHECK_FRAME(&buf, 0, "\x04\x00\x7f\xff\x0f\x00\x00\x00\x04\xff\xff\xff\xff");
	buf.len = 0;
	CHECK(cql_build_auth_response(&buf, 9, "tok", 3, &error) == 0);
	CHECK_FRAME(&buf, 0, "\x04\x00\x00\x09\x0f\x00\x00\x00\x07\x00\x00\x00\x03tok");

	/* PREPARE: [long string] */
	buf.len = 0;
	CHECK(cql_build_prepare(&buf, 4, "SELECT 1", &error) == 0);
	CHECK_FRAME(&buf, 0,
		    "\x04\x00\x00\x04\x09\x00\x00\x00\x0c"
		    "\x00\x00\x00\x08"
		    "SELECT 1");

	/* QUERY without parameters: consistency ONE, flags 0 */
	buf.len = 0;
	struct cql_query_params params = {.consistency = CQL_CONSISTENCY_ONE};
	CHECK(cql_build_query(&buf, 3, "SELECT 1", &params, &error) == 0);
	CHECK_FRAME(&buf, 0,
		    "\x04\x00\x00\x03\x07\x00\x00\x00\x0f"
		    "\x00\x00\x00\x08"
		    "SELECT 1"
		    "\x00\x01"
		    "\x00");

	/* REGISTER: [string list] */
	buf.len = 0;
	const char *const events[] = {"STATUS_CHANGE", "SCHEMA_CHANGE"};
	CHECK(cql_build_register(&buf, 5, events, 2, &error) == 0);
	CHECK_FRAME(&buf, 0,
		    "\x04\x00\x00\x05\x0b\x00\x00\x00\x20"
		    "\x00\x02"
		    "\x00\x0d"
		    "STATUS_CHANGE"
		    "\x00\x0d"
		    "SCHEMA_CHANGE");

	cql_buf_free(&buf);
	CHECK(buf.data == NULL && buf.len == 0 && buf.alloc == 0);
}

static void test_build_query_params(void)
{
	static const unsigned char paging[] = {0x01, 0x02};
	struct cql_buf buf = {0}, values = {0};
	const char *error = NULL;

	cql_buf_put_int(&values, 7);
	cql_buf_put_null(&values);
	CHECK(cql_buf_put_text(&values, "ab", &error) == 0);

	struct cql_query_params params = {
		.consistency = CQL_CONSISTENCY_LOCAL_QUORUM,
		.values = values.data,
		.values_len = values.len,
		.value_count = 3,
		.skip_metadata = true,
		.page_size = 100,
		.paging_state = paging,
		.paging_state_len = sizeof(paging),
		.with_serial_consistency = true,
		.serial_consistency = CQL_CONSISTENCY_LOCAL_SERIAL,
		.with_timestamp = true,
		.timestamp_usecs = 0x0102030405060708,
	};
	CHECK(cql_build_query(&buf, 3, "SELECT v FROM t WHERE a=? AND b=? AND c=?", &params,
			      &error) == 0);
	CHECK_FRAME(&buf, 0,
		    "\x04\x00\x00\x03\x07\x00\x00\x00\x58"
		    "\x00\x00\x00\x29"
		    "SELECT v FROM t WHERE a=? AND b=? AND c=?"
		    "\x00\x06"                         /* LOCAL_QUORUM */
		    "\x3f"                             /* every flag but names */
		    "\x00\x03"                         /* 3 values */
		    "\x00\x00\x00\x04\x00\x00\x00\x07" /* int 7 */
		    "\xff\xff\xff\xff"                 /* null */
		    "\x00\x00\x00\x02"
		    "ab"
		    "\x00\x00\x00\x64"                   /* page size 100 */
		    "\x00\x00\x00\x02\x01\x02"           /* paging state */
		    "\x00\x09"                           /* LOCAL_SERIAL */
		    "\x01\x02\x03\x04\x05\x06\x07\x08"); /* timestamp */

	/* EXECUTE with the other value encoders and a page size only. */
	static const unsigned char id[] = {0xca, 0xfe};
	unsigned char uuid[CQL_UUID_LEN];
	for (unsigned i = 0; i < CQL_UUID_LEN; i++)
		uuid[i] = (unsigned char)i;
	values.len = 0;
	cql_buf_put_bigint(&values, -2);
	cql_buf_put_boolean(&values, true);
	cql_buf_put_timestamp(&values, 1700000000000LL);
	cql_buf_put_uuid(&values, uuid);
	CHECK(cql_buf_put_blob(&values, "\x00\xff\x10", 3, &error) == 0);
	cql_buf_put_unset(&values);
	struct cql_query_params exec = {
		.consistency = CQL_CONSISTENCY_QUORUM,
		.values = values.data,
		.values_len = values.len,
		.value_count = 6,
		.page_size = 5000,
	};
	buf.len = 0;
	CHECK(cql_build_execute(&buf, 0x1234, id, sizeof(id), &exec, &error) == 0);
	CHECK_FRAME(
		&buf, 0,
		"\x04\x00\x12\x34\x0a\x00\x00\x00\x49"
		"\x00\x02\xca\xfe"
		"\x00\x04" /* QUORUM */
		"\x05"     /* values, page size */
		"\x00\x06"
		"\x00\x00\x00\x08\xff\xff\xff\xff\xff\xff\xff\xfe"
		"\x00\x00\x00\x01\x01"
		"\x00\x00\x00\x08\x00\x00\x01\x8b\xcf\xe5\x68\x00"
		"\x00\x00\x00\x10\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
		"\x00\x00\x00\x03\x00\xff\x10"
		"\xff\xff\xff\xfe" /* not set */
		"\x00\x00\x13\x88");

	/* boolean false is one zero byte; an empty text is a zero length */
	values.len = 0;
	cql_buf_put_boolean(&values, false);
	CHECK(cql_buf_put_text(&values, "", &error) == 0);
	CHECK(values.len == 9 && memcmp(values.data, "\0\0\0\1\0\0\0\0\0", 9) == 0);

	cql_buf_free(&values);
	cql_buf_free(&buf);
}

static void test_build_errors(void)
{
	static const unsigned char id[] = {1};
	struct cql_buf buf = {0}, values = {0};
	struct cql_query_params params = {.consistency = CQL_CONSISTENCY_ONE};
	const char *error = NULL;
	size_t before;

	/* something already in the buffer must survive every failure */
	CHECK(cql_build_options(&buf, 0, &error) == 0);
	before = buf.len;

	CHECK(cql_build_options(&buf, -1, &error) == -1);
	CHECK(error != NULL && strstr(error, "negative") != NULL);
	CHECK(cql_build_startup(&buf, -5, &error) == -1);
	CHECK(cql_build_query(&buf, 1, NULL, &params, &error) == -1);
	CHECK(cql_build_query(&buf, 1, "SELECT 1", NULL, &error) == -1);
	CHECK(cql_build_prepare(&buf, 1, NULL, &error) == -1);
	CHECK(cql_build_auth_password(&buf, 1, NULL, "x", &error) == -1);

	params.consistency = (enum cql_consistency)11;
	CHECK(cql_build_query(&buf, 1, "SELECT 1", &params, &error) == -1);
	CHECK(strstr(error, "consistency") != NULL);
	params.consistency = CQL_CONSISTENCY_ONE;

	params.with_serial_consistency = true;
	params.serial_consistency = CQL_CONSISTENCY_QUORUM;
	CHECK(cql_build_query(&buf, 1, "SELECT 1", &params, &error) == -1);
	CHECK(strstr(error, "SERIAL") != NULL);
	params.with_serial_consistency = false;

	params.page_size = -1;
	CHECK(cql_build_query(&buf, 1, "SELECT 1", &params, &error) == -1);
	params.page_size = 0;

	params.with_timestamp = true;
	params.timestamp_usecs = -1;
	CHECK(cql_build_query(&buf, 1, "SELECT 1", &params, &error) == -1);
	params.with_timestamp = false;

	/* the values block must hold exactly value_count [value]s */
	cql_buf_put_int(&values, 1);
	cql_buf_put_int(&values, 2);
	params.values = values.data;
	params.values_len = values.len;
	params.value_count = 1;
	CHECK(cql_build_query(&buf, 1, "SELECT ?", &params, &error) == -1);
	CHECK(strstr(error, "more than value_count") != NULL);
	params.value_count = 3;
	CHECK(cql_build_query(&buf, 1, "SELECT ?", &params, &error) == -1);
	CHECK(strstr(error, "fewer") != NULL);
	params.value_count = 0;
	CHECK(cql_build_query(&buf, 1, "SELECT ?", &params, &error) == -1);
	params.value_count = 2;
	params.values_len = values.len - 1;
	CHECK(cql_build_query(&buf, 1, "SELECT ?", &params, &error) == -1);
	CHECK(strstr(error, "inside a value") != NULL);
	static const unsigned char below_minus_two[] = {0xff, 0xff, 0xff, 0xfd};
	params.values = below_minus_two;
	params.values_len = sizeof(below_minus_two);
	params.value_count = 1;
	CHECK(cql_build_query(&buf, 1, "SELECT ?", &params, &error) == -1);
	CHECK(strstr(error, "below -2") != NULL);
	params.value_count = 70000;
	CHECK(cql_build_query(&buf, 1, "SELECT ?", &params, &error) == -1);
	params.value_count = 0;
	params.values = NULL;
	params.values_len = 0;

	CHECK(cql_build_execute(&buf, 1, id, 0, &params, &error) == -1);
	CHECK(cql_build_execute(&buf, 1, NULL, 1, &params, &error) == -1);
	CHECK(cql_build_execute(&buf, 1, id, 70000, &params, &error) == -1);
	CHECK(cql_build_register(&buf, 1, NULL, 1, &error) == -1);

	CHECK(cql_buf_put_text(&values, NULL, &error) == -1);
	CHECK(cql_buf_put_blob(&values, NULL, 3, &error) == -1);

	CHECK(buf.len == before);
	CHECK_FRAME(&buf, 0, "\x04\x00\x00\x00\x05\x00\x00\x00\x00");

	/* and a valid request still goes after it */
	CHECK(cql_build_execute(&buf, 1, id, sizeof(id), &params, &error) == 0);
	CHECK_FRAME(&buf, before, "\x04\x00\x00\x01\x0a\x00\x00\x00\x06\x00\x01\x01\x00\x01\x00");

	/* a big request grows the buffer past its first allocation */
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(cql_build_prepare(&buf, 2, big, &error) == 0);
	CHECK(buf.len == before + 15 + 9 + 4 + sizeof(big) - 1);
	CHECK(buf.alloc >= buf.len);

	cql_buf_free(&values);
	cql_buf_free(&buf);
}

/* ---- frame peek ---- */

static int peek_copy(const void *data, size_t len, size_t max, struct cql_frame_header *hdr,
		     size_t *frame_len, const char **error)
{
	unsigned char *copy = malloc(len == 0 ? 1 : len);
	int ret;

	if (len > 0)
		memcpy(copy, data, len);
	ret = cql_frame_peek(copy, len, max, hdr, frame_len, error);
	free(copy);
	return ret;
}

static void test_peek(void)
{
	struct cql_frame_header hdr;
	struct frame f;
	size_t frame_len;
	const char *error = NULL;
	unsigned bad = 0;

	f_begin(&f, CQL_FLAG_WARNING, 7, CQL_OPCODE_RESULT);
	f_u16(&f, 0);
	f_u32(&f, CQL_RESULT_VOID);
	f_end(&f);
	for (size_t i = 0; i < f.len; i++) {
		int ret = peek_copy(f.data, i, CQL_MAX_FRAME_DEFAULT, &hdr, &frame_len, &error);

		if (ret != 0 || frame_len != (i < CQL_FRAME_HEADER_LEN ? 0 : f.len))
			bad++;
		if (i >= CQL_FRAME_HEADER_LEN && (hdr.stream != 7 || hdr.length != 6))
			bad++;
	}
	CHECK(bad == 0);
	CHECK(peek_copy(f.data, f.len, CQL_MAX_FRAME_DEFAULT, &hdr, &frame_len, &error) == 1);
	CHECK(frame_len == f.len && hdr.version == 0x84 && hdr.flags == CQL_FLAG_WARNING &&
	      hdr.stream == 7 && hdr.opcode == CQL_OPCODE_RESULT && hdr.length == 6);

	/* a second frame behind it does not matter */
	f_mem(&f, f.data, CQL_FRAME_HEADER_LEN);
	CHECK(peek_copy(f.data, f.len, CQL_MAX_FRAME_DEFAULT, &hdr, &frame_len, &error) == 1);
	CHECK(frame_len == 15);

	/* the limit counts the header too */
	CHECK(peek_copy(f.data, 15, 15, &hdr, &frame_len, &error) == 1);
	CHECK(peek_copy(f.data, 15, 14, &hdr, &frame_len, &error) == -1);
	CHECK(strstr(error, "maximum frame size") != NULL);

	/* negative stream ids (events) are fine */
	unsigned char event[] = {0x84, 0, 0xff, 0xff, 0x0c, 0, 0, 0, 0};
	CHECK(peek_copy(event, sizeof(event), 100, &hdr, &frame_len, &error) == 1);
	CHECK(hdr.stream == -1);

	/* wrong versions are refused from the first byte */
	static const unsigned char versions[] = {0x04, 0x83, 0x85, 0x00, 0x44, 0xff};
	for (size_t i = 0; i < sizeof(versions); i++) {
		unsigned char one[9] = {versions[i], 0, 0, 0, 2, 0, 0, 0, 0};

		CHECK(peek_copy(one, 1, 100, &hdr, &frame_len, &error) == -1);
		CHECK(peek_copy(one, 9, 100, &hdr, &frame_len, &error) == -1);
		CHECK(error != NULL && *error != '\0');
	}
	CHECK(peek_copy("\x04", 1, 100, &hdr, &frame_len, &error) == -1);
	CHECK(strstr(error, "request") != NULL);
	CHECK(peek_copy("\x83", 1, 100, &hdr, &frame_len, &error) == -1);
	CHECK(strstr(error, "older") != NULL);

	/* negative and oversized lengths */
	unsigned char neg[] = {0x84, 0, 0, 1, 8, 0x80, 0, 0, 0};
	CHECK(peek_copy(neg, sizeof(neg), CQL_MAX_FRAME_DEFAULT, &hdr, &frame_len, &error) == -1);
	CHECK(strstr(error, "negative") != NULL);
	unsigned char huge[] = {0x84, 0, 0, 1, 8, 0x10, 0, 0, 0};
	CHECK(peek_copy(huge, sizeof(huge), CQL_MAX_FRAME_DEFAULT, &hdr, &frame_len, &error) == -1);
	unsigned char just[] = {0x84, 0, 0, 1, 8, 0x0f, 0xff, 0xff, 0xf7};
	CHECK(peek_copy(just, sizeof(just), CQL_MAX_FRAME_DEFAULT, &hdr, &frame_len, &error) == 0);
	CHECK(frame_len == CQL_MAX_FRAME_DEFAULT);
	CHECK(peek_copy(NULL, 0, 100, &hdr, &frame_len, &error) == 0 && frame_len == 0);
}

/* ---- responses: builders shared by the tests and the fuzz loop ---- */

static void build_ready(struct frame *f)
{
	f_begin(f, 0, 1, CQL_OPCODE_READY);
	f_end(f);
}

static void build_authenticate(struct frame *f)
{
	f_begin(f, 0, 1, CQL_OPCODE_AUTHENTICATE);
	f_string(f, "org.apache.cassandra.auth.PasswordAuthenticator");
	f_end(f);
}

static void build_auth_challenge(struct frame *f)
{
	f_begin(f, 0, 2, CQL_OPCODE_AUTH_CHALLENGE);
	f_bytes(f, "nonce", 5);
	f_end(f);
}

static void build_auth_success(struct frame *f)
{
	f_begin(f, 0, 2, CQL_OPCODE_AUTH_SUCCESS);
	f_bytes(f, NULL, -1);
	f_end(f);
}

static void build_supported(struct frame *f)
{
	f_begin(f, 0, 0, CQL_OPCODE_SUPPORTED);
	f_u16(f, 3);
	f_string(f, "PROTOCOL_VERSIONS");
	f_u16(f, 3);
	f_string(f, "3/v3");
	f_string(f, "4/v4");
	f_string(f, "5/v5-beta");
	f_string(f, "COMPRESSION");
	f_u16(f, 2);
	f_string(f, "snappy");
	f_string(f, "lz4");
	f_string(f, "CQL_VERSION");
	f_u16(f, 1);
	f_string(f, "3.4.5");
	f_end(f);
}

static void build_void(struct frame *f)
{
	f_begin(f, 0, 3, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_VOID);
	f_end(f);
}

/* A Void result with every optional prefix: tracing id, warnings and a
 * custom payload, in that order. */
static void build_void_flags(struct frame *f)
{
	f_begin(f, CQL_FLAG_TRACING | CQL_FLAG_WARNING | CQL_FLAG_CUSTOM_PAYLOAD, 3,
		CQL_OPCODE_RESULT);
	for (unsigned i = 0; i < CQL_UUID_LEN; i++)
		f_u8(f, (uint8_t)(0xa0 + i));
	f_u16(f, 2);
	f_string(f, "Batch for [mail.users] is of size 6.0KiB, exceeding specified threshold");
	f_string(f, "Aggregation query used without partition key");
	f_u16(f, 1);
	f_string(f, "k");
	f_bytes(f, "v\x00", 2);
	f_u32(f, CQL_RESULT_VOID);
	f_end(f);
}

static void build_set_keyspace(struct frame *f)
{
	f_begin(f, 0, 3, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_SET_KEYSPACE);
	f_string(f, "mail");
	f_end(f);
}

static const unsigned char test_uuid[CQL_UUID_LEN] = {
	0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3,
	0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00,
};

#define ROWS_COLUMNS 12

/* Rows: global table spec, more pages, twelve columns of every kind of
 * type (nested ones included) and three rows with NULLs, an empty value
 * and edge values. */
static void build_rows(struct frame *f, uint8_t flags)
{
	f_begin(f, flags, 5, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_ROWS);
	f_u32(f, CQL_METADATA_GLOBAL_TABLES_SPEC | CQL_METADATA_HAS_MORE_PAGES);
	f_u32(f, ROWS_COLUMNS);
	f_bytes(f, "\xde\xad\xbe\xef", 4);
	f_string(f, "mail");
	f_string(f, "users");
	f_string(f, "username");
	f_u16(f, CQL_TYPE_VARCHAR);
	f_string(f, "group_id");
	f_u16(f, CQL_TYPE_INT);
	f_string(f, "epoch");
	f_u16(f, CQL_TYPE_BIGINT);
	f_string(f, "active");
	f_u16(f, CQL_TYPE_BOOLEAN);
	f_string(f, "created");
	f_u16(f, CQL_TYPE_TIMESTAMP);
	f_string(f, "id");
	f_u16(f, CQL_TYPE_UUID);
	f_string(f, "tags");
	f_u16(f, CQL_TYPE_SET);
	f_u16(f, CQL_TYPE_VARCHAR);
	f_string(f, "attrs");
	f_u16(f, CQL_TYPE_MAP);
	f_u16(f, CQL_TYPE_VARCHAR);
	f_u16(f, CQL_TYPE_INT);
	f_string(f, "home");
	f_u16(f, CQL_TYPE_UDT);
	f_string(f, "mail");
	f_string(f, "address");
	f_u16(f, 2);
	f_string(f, "street");
	f_u16(f, CQL_TYPE_VARCHAR);
	f_string(f, "nums");
	f_u16(f, CQL_TYPE_LIST);
	f_u16(f, CQL_TYPE_INT);
	f_string(f, "pair");
	f_u16(f, CQL_TYPE_TUPLE);
	f_u16(f, 2);
	f_u16(f, CQL_TYPE_INT);
	f_u16(f, CQL_TYPE_VARCHAR);
	f_string(f, "raw");
	f_u16(f, CQL_TYPE_BLOB);
	f_string(f, "dur");
	f_u16(f, CQL_TYPE_CUSTOM);
	f_string(f, "org.apache.cassandra.db.marshal.DurationType");

	f_u32(f, 3);
	/* row 1: everything set */
	f_text_cell(f, "alice");
	f_int_cell(f, 7);
	f_bigint_cell(f, 42);
	f_bytes(f, "\x01", 1);
	f_bigint_cell(f, 1700000000000LL);
	f_bytes(f, test_uuid, CQL_UUID_LEN);
	f_bytes(f, "\x00\x00\x00\x01\x00\x00\x00\x01x", 9); /* {'x'} */
	f_bytes(f, "\x00\x00\x00\x01\x00\x00\x00\x01k\x00\x00\x00\x04\x00\x00\x00\x02",
		17);                                        /* {'k': 2} */
	f_bytes(f, "\x00\x00\x00\x01s\xff\xff\xff\xff", 9); /* {street: 's', nums: null} */
	f_bytes(f, "\x00\x00\x00\x04\x00\x00\x00\x05\x00\x00\x00\x00", 12); /* (5, '') */
	f_bytes(f, "\x00\xff", 2);
	f_bytes(f, "\x02\x04\x06", 3);
	/* row 2: NULLs, an empty int, an empty string */
	f_text_cell(f, "bob");
	f_bytes(f, NULL, 0);
	for (unsigned i = 2; i < ROWS_COLUMNS - 2; i++)
		f_null_cell(f);
	f_bytes(f, NULL, 0);
	f_u32(f, 0xFFFFFFF0); /* any negative length is null */
	/* row 3: edge values */
	f_text_cell(f, "");
	f_int_cell(f, -1);
	f_bigint_cell(f, INT64_MIN);
	f_bytes(f, "\x00", 1);
	f_bigint_cell(f, -1000);
	for (unsigned i = 5; i < ROWS_COLUMNS; i++)
		f_null_cell(f);
	f_end(f);
}

static void build_rows_plain(struct frame *f)
{
	build_rows(f, 0);
}

/* Rows with per-column table specs and no more pages. */
static void build_rows_per_column(struct frame *f)
{
	f_begin(f, 0, 6, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_ROWS);
	f_u32(f, 0);
	f_u32(f, 2);
	f_string(f, "ks1");
	f_string(f, "t1");
	f_string(f, "a");
	f_u16(f, CQL_TYPE_ASCII);
	f_string(f, "ks2");
	f_string(f, "t2");
	f_string(f, "b");
	f_u16(f, CQL_TYPE_COUNTER);
	f_u32(f, 1);
	f_text_cell(f, "hi");
	f_bigint_cell(f, 99);
	f_end(f);
}

/* Rows without metadata (Skip_metadata): the types are unknown. */
static void build_rows_no_metadata(struct frame *f)
{
	f_begin(f, 0, 6, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_ROWS);
	f_u32(f, CQL_METADATA_NO_METADATA | CQL_METADATA_HAS_MORE_PAGES);
	f_u32(f, 2);
	f_bytes(f, "ps", 2);
	f_u32(f, 2);
	f_int_cell(f, 1);
	f_bytes(f, "\x00\x00\x01", 3); /* a 3-byte "int" */
	f_null_cell(f);
	f_text_cell(f, "zz");
	f_end(f);
}

static void build_rows_empty(struct frame *f)
{
	f_begin(f, 0, 6, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_ROWS);
	f_u32(f, CQL_METADATA_GLOBAL_TABLES_SPEC);
	f_u32(f, 1);
	f_string(f, "mail");
	f_string(f, "groups");
	f_string(f, "site");
	f_u16(f, CQL_TYPE_VARCHAR);
	f_u32(f, 0);
	f_end(f);
}

static void build_prepared(struct frame *f)
{
	f_begin(f, 0, 8, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_PREPARED);
	f_u16(f, CQL_UUID_LEN);
	f_mem(f, test_uuid, CQL_UUID_LEN);
	/* bind metadata: 3 markers, partition key = markers 2 and 0 */
	f_u32(f, CQL_METADATA_GLOBAL_TABLES_SPEC);
	f_u32(f, 3);
	f_u32(f, 2);
	f_u16(f, 2);
	f_u16(f, 0);
	f_string(f, "mail");
	f_string(f, "users");
	f_string(f, "bucket");
	f_u16(f, CQL_TYPE_INT);
	f_string(f, "username");
	f_u16(f, CQL_TYPE_VARCHAR);
	f_string(f, "site");
	f_u16(f, CQL_TYPE_VARCHAR);
	/* result metadata: 2 columns */
	f_u32(f, CQL_METADATA_GLOBAL_TABLES_SPEC);
	f_u32(f, 2);
	f_string(f, "mail");
	f_string(f, "users");
	f_string(f, "group_id");
	f_u16(f, CQL_TYPE_INT);
	f_string(f, "changed");
	f_u16(f, CQL_TYPE_TIMESTAMP);
	f_end(f);
}

/* A Prepared INSERT: no partition key binding, empty result metadata. */
static void build_prepared_insert(struct frame *f)
{
	f_begin(f, 0, 8, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_PREPARED);
	f_u16(f, 2);
	f_mem(f, "\xab\xcd", 2);
	f_u32(f, 0);
	f_u32(f, 1);
	f_u32(f, 0);
	f_string(f, "mail");
	f_string(f, "log");
	f_string(f, "line");
	f_u16(f, CQL_TYPE_LIST);
	f_u16(f, CQL_TYPE_VARCHAR);
	f_u32(f, CQL_METADATA_NO_METADATA);
	f_u32(f, 0);
	f_end(f);
}

static void build_schema_keyspace(struct frame *f)
{
	f_begin(f, 0, 9, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_SCHEMA_CHANGE);
	f_string(f, "CREATED");
	f_string(f, "KEYSPACE");
	f_string(f, "mail");
	f_end(f);
}

static void build_schema_table(struct frame *f)
{
	f_begin(f, 0, 9, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_SCHEMA_CHANGE);
	f_string(f, "UPDATED");
	f_string(f, "TABLE");
	f_string(f, "mail");
	f_string(f, "users");
	f_end(f);
}

static void build_schema_function(struct frame *f)
{
	f_begin(f, 0, 9, CQL_OPCODE_RESULT);
	f_u32(f, CQL_RESULT_SCHEMA_CHANGE);
	f_string(f, "DROPPED");
	f_string(f, "FUNCTION");
	f_string(f, "mail");
	f_string(f, "fnv");
	f_u16(f, 2);
	f_string(f, "int");
	f_string(f, "text");
	f_end(f);
}

static void build_event_status(struct frame *f)
{
	f_begin(f, 0, -1, CQL_OPCODE_EVENT);
	f_string(f, "STATUS_CHANGE");
	f_string(f, "UP");
	f_u8(f, 4);
	f_mem(f, "\x0a\x00\x00\x01", 4);
	f_u32(f, 9042);
	f_end(f);
}

static void build_event_topology(struct frame *f)
{
	f_begin(f, 0, -1, CQL_OPCODE_EVENT);
	f_string(f, "TOPOLOGY_CHANGE");
	f_string(f, "NEW_NODE");
	f_u8(f, 16);
	f_mem(f, "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 16);
	f_u32(f, 9042);
	f_end(f);
}

static void build_event_schema(struct frame *f)
{
	f_begin(f, 0, -1, CQL_OPCODE_EVENT);
	f_string(f, "SCHEMA_CHANGE");
	f_string(f, "CREATED");
	f_string(f, "TYPE");
	f_string(f, "mail");
	f_string(f, "address");
	f_end(f);
}

static void error_begin(struct frame *f, int32_t code, const char *message)
{
	f_begin(f, 0, 4, CQL_OPCODE_ERROR);
	f_u32(f, (uint32_t)code);
	f_string(f, message);
}

static void build_error_unavailable(struct frame *f)
{
	error_begin(f, CQL_ERROR_UNAVAILABLE, "Cannot achieve consistency level LOCAL_QUORUM");
	f_u16(f, CQL_CONSISTENCY_LOCAL_QUORUM);
	f_u32(f, 2);
	f_u32(f, 1);
	f_end(f);
}

static void build_error_write_timeout(struct frame *f)
{
	error_begin(f, CQL_ERROR_WRITE_TIMEOUT, "Operation timed out - received only 1 responses.");
	f_u16(f, CQL_CONSISTENCY_LOCAL_QUORUM);
	f_u32(f, 1);
	f_u32(f, 2);
	f_string(f, "SIMPLE");
	f_end(f);
}

static void build_error_read_timeout(struct frame *f)
{
	error_begin(f, CQL_ERROR_READ_TIMEOUT, "Operation timed out");
	f_u16(f, CQL_CONSISTENCY_QUORUM);
	f_u32(f, 1);
	f_u32(f, 2);
	f_u8(f, 0);
	f_end(f);
}

static void build_error_read_failure(struct frame *f)
{
	error_begin(f, CQL_ERROR_READ_FAILURE, "Operation failed");
	f_u16(f, CQL_CONSISTENCY_ONE);
	f_u32(f, 0);
	f_u32(f, 1);
	f_u32(f, 1);
	f_u8(f, 1);
	f_end(f);
}

static void build_error_write_failure(struct frame *f)
{
	error_begin(f, CQL_ERROR_WRITE_FAILURE, "Operation failed");
	f_u16(f, CQL_CONSISTENCY_EACH_QUORUM);
	f_u32(f, 2);
	f_u32(f, 4);
	f_u32(f, 2);
	f_string(f, "BATCH");
	f_end(f);
}

static void build_error_function_failure(struct frame *f)
{
	error_begin(f, CQL_ERROR_FUNCTION_FAILURE, "boom");
	f_string(f, "mail");
	f_string(f, "f");
	f_u16(f, 2);
	f_string(f, "int");
	f_string(f, "text");
	f_end(f);
}

static void build_error_already_exists(struct frame *f)
{
	error_begin(f, CQL_ERROR_ALREADY_EXISTS, "Cannot add already existing table");
	f_string(f, "mail");
	f_string(f, "users");
	f_end(f);
}

static void build_error_unprepared(struct frame *f)
{
	error_begin(f, CQL_ERROR_UNPREPARED, "Prepared query with ID abcd not found");
	f_u16(f, 2);
	f_mem(f, "\xab\xcd", 2);
	f_end(f);
}

static void build_error_syntax(struct frame *f)
{
	error_begin(f, CQL_ERROR_SYNTAX, "line 1:0 no viable alternative at input 'SELEC'");
	f_end(f);
}

typedef void frame_builder(struct frame *f);

static frame_builder *const valid_builders[] = {
	build_ready,
	build_authenticate,
	build_auth_challenge,
	build_auth_success,
	build_supported,
	build_void,
	build_void_flags,
	build_set_keyspace,
	build_rows_plain,
	build_rows_per_column,
	build_rows_no_metadata,
	build_rows_empty,
	build_prepared,
	build_prepared_insert,
	build_schema_keyspace,
	build_schema_table,
	build_schema_function,
	build_event_status,
	build_event_topology,
	build_event_schema,
	build_error_unavailable,
	build_error_write_timeout,
	build_error_read_timeout,
	build_error_read_failure,
	build_error_write_failure,
	build_error_function_failure,
	build_error_already_exists,
	build_error_unprepared,
	build_error_syntax,
};

#define VALID_BUILDER_COUNT (sizeof(valid_builders) / sizeof(valid_builders[0]))

/* ---- responses: the tests ---- */

static void test_simple_responses(void)
{
	struct cql_string_list list;
	struct cql_string s, key;
	struct parsed p;
	struct frame f;
	unsigned n;

	/* READY, hand-written from the spec */
	static const unsigned char ready[] = {0x84, 0x00, 0x00, 0x01, 0x02, 0, 0, 0, 0};
	CHECK(parse_bytes(ready, sizeof(ready), &p) == 0);
	CHECK(p.error == NULL);
	CHECK(p.resp.header.opcode == CQL_OPCODE_READY && p.resp.header.stream == 1);
	CHECK(p.resp.tracing_id == NULL && p.resp.warnings.count == 0);
	parsed_free(&p);

	build_authenticate(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.header.opcode == CQL_OPCODE_AUTHENTICATE);
	CHECK(str_is(p.resp.authenticator, "org.apache.cassandra.auth.PasswordAuthenticator"));
	parsed_free(&p);

	build_auth_challenge(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.token.len == 5 && memcmp(p.resp.token.data, "nonce", 5) == 0);
	parsed_free(&p);

	build_auth_success(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.header.opcode == CQL_OPCODE_AUTH_SUCCESS);
	CHECK(p.resp.token.len == -1 && p.resp.token.data == NULL);
	parsed_free(&p);

	build_supported(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.supported.count == 3);
	CHECK(cql_string_multimap_get(&p.resp.supported, "COMPRESSION", &list) == 1);
	CHECK(list.count == 2);
	CHECK(cql_string_list_next(&list, &s) && str_is(s, "snappy"));
	CHECK(cql_string_list_next(&list, &s) && str_is(s, "lz4"));
	CHECK(!cql_string_list_next(&list, &s));
	CHECK(cql_string_multimap_get(&p.resp.supported, "CQL_VERSION", &list) == 1);
	CHECK(cql_string_list_next(&list, &s) && str_is(s, "3.4.5"));
	CHECK(cql_string_multimap_get(&p.resp.supported, "NOPE", &list) == 0);
	struct cql_string_multimap walk = p.resp.supported;
	n = 0;
	while (cql_string_multimap_next(&walk, &key, &list))
		n += list.count;
	CHECK(n == 6);
	parsed_free(&p);

	build_void(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.result.kind == CQL_RESULT_VOID);
	parsed_free(&p);

	build_set_keyspace(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.result.kind == CQL_RESULT_SET_KEYSPACE);
	CHECK(str_is(p.resp.result.keyspace, "mail"));
	parsed_free(&p);

	/* a body longer than the spec describes: the rest is ignored */
	build_void(&f);
	f_u32(&f, 0x12345678);
	f_end(&f);
	CHECK(parse_frame(&f, &p) == 0 && p.resp.result.kind == CQL_RESULT_VOID);
	parsed_free(&p);
}

static void test_flags(void)
{
	struct cql_string s, key;
	struct cql_bytes value;
	struct parsed p;
	struct frame f;

	build_void_flags(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.tracing_id != NULL && p.resp.tracing_id[0] == 0xa0 &&
	      p.resp.tracing_id[15] == 0xaf);
	CHECK(p.resp.warnings.count == 2);
	CHECK(cql_string_list_next(&p.resp.warnings, &s) && strstr(s.data, "Batch for") == s.data);
	CHECK(cql_string_list_next(&p.resp.warnings, &s) &&
	      str_is(s, "Aggregation query used without partition key"));
	CHECK(!cql_string_list_next(&p.resp.warnings, &s));
	CHECK(p.resp.custom_payload.count == 1);
	CHECK(cql_bytes_map_next(&p.resp.custom_payload, &key, &value));
	CHECK(str_is(key, "k") && value.len == 2 && memcmp(value.data, "v\0", 2) == 0);
	CHECK(!cql_bytes_map_next(&p.resp.custom_payload, &key, &value));
	CHECK(p.resp.result.kind == CQL_RESULT_VOID);
	parsed_free(&p);

	/* the warning flag in front of a Rows result */
	build_rows(&f, CQL_FLAG_WARNING);
	memmove(f.data + CQL_FRAME_HEADER_LEN + 7, f.data + CQL_FRAME_HEADER_LEN,
		f.len - CQL_FRAME_HEADER_LEN);
	memcpy(f.data + CQL_FRAME_HEADER_LEN,
	       "\x00\x01\x00\x03"
	       "abc",
	       7);
	f.len += 7;
	f_end(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.warnings.count == 1);
	CHECK(cql_string_list_next(&p.resp.warnings, &s) && str_is(s, "abc"));
	CHECK(p.resp.result.kind == CQL_RESULT_ROWS && p.resp.result.rows.row_count == 3);
	parsed_free(&p);

	/* tracing flag with too short a body */
	f_begin(&f, CQL_FLAG_TRACING, 1, CQL_OPCODE_READY);
	f_mem(&f, test_uuid, 15);
	f_end(&f);
	check_malformed(&f, "frame ends early in the tracing id");
	/* warnings claiming more strings than there are */
	f_begin(&f, CQL_FLAG_WARNING, 1, CQL_OPCODE_READY);
	f_u16(&f, 2);
	f_string(&f, "one");
	f_end(&f);
	check_malformed(&f, "in the warnings");
	/* compression was never negotiated */
	build_void(&f);
	f.data[1] = CQL_FLAG_COMPRESSION;
	check_malformed(&f, "compressed");
	/* unknown flag bits are ignored */
	build_void(&f);
	f.data[1] = 0xf0;
	struct parsed q;
	CHECK(parse_frame(&f, &q) == 0);
	parsed_free(&q);
}

static void test_rows(void)
{
	struct cql_value cells[ROWS_COLUMNS + 2];
	struct cql_columns_cursor columns;
	struct cql_rows_cursor cursor;
	struct cql_column column;
	struct cql_type child, grandchild;
	struct cql_string name, text;
	unsigned char uuid[CQL_UUID_LEN];
	const char *error = NULL;
	struct parsed p;
	struct frame f;
	int32_t i32;
	int64_t i64;
	bool b;

	build_rows(&f, 0);
	CHECK(parse_frame(&f, &p) == 0);
	const struct cql_rows *rows = &p.resp.result.rows;
	CHECK(p.resp.header.stream == 5 && p.resp.result.kind == CQL_RESULT_ROWS);
	CHECK(rows->metadata.flags == 3 && rows->metadata.column_count == ROWS_COLUMNS);
	CHECK(rows->metadata.paging_state.len == 4 &&
	      memcmp(rows->metadata.paging_state.data, "\xde\xad\xbe\xef", 4) == 0);
	CHECK(str_is(rows->metadata.keyspace, "mail") && str_is(rows->metadata.table, "users"));
	CHECK(rows->row_count == 3);

	/* the column specs */
	static const char *const names[ROWS_COLUMNS] = {
		"username", "group_id", "epoch", "active", "created", "id",
		"tags",     "attrs",    "home",  "pair",   "raw",     "dur",
	};
	static const uint16_t types[ROWS_COLUMNS] = {
		CQL_TYPE_VARCHAR,   CQL_TYPE_INT,   CQL_TYPE_BIGINT, CQL_TYPE_BOOLEAN,
		CQL_TYPE_TIMESTAMP, CQL_TYPE_UUID,  CQL_TYPE_SET,    CQL_TYPE_MAP,
		CQL_TYPE_UDT,       CQL_TYPE_TUPLE, CQL_TYPE_BLOB,   CQL_TYPE_CUSTOM,
	};
	struct cql_type home = {0}, pair = {0}, attrs = {0}, tags = {0}, dur = {0};
	unsigned n = 0;
	cql_columns_cursor_init(&columns, &rows->metadata);
	while (cql_columns_next(&columns, &column)) {
		CHECK(n < ROWS_COLUMNS);
		if (n >= ROWS_COLUMNS)
			break;
		CHECK(str_is(column.name, names[n]));
		CHECK(column.type.id == types[n]);
		CHECK(str_is(column.keyspace, "mail") && str_is(column.table, "users"));
		if (n == 6)
			tags = column.type;
		if (n == 7)
			attrs = column.type;
		if (n == 8)
			home = column.type;
		if (n == 9)
			pair = column.type;
		if (n == 11)
			dur = column.type;
		n++;
	}
	CHECK(n == ROWS_COLUMNS);
	CHECK(strcmp(cql_type_name(types[8]), "udt") == 0);

	/* nested types */
	CHECK(cql_type_child(&tags, 0, &name, &child) == 1 && child.id == CQL_TYPE_VARCHAR);
	CHECK(name.len == 0);
	CHECK(cql_type_child(&tags, 1, NULL, &child) == 0);
	CHECK(cql_type_child(&attrs, 0, NULL, &child) == 1 && child.id == CQL_TYPE_VARCHAR);
	CHECK(cql_type_child(&attrs, 1, NULL, &child) == 1 && child.id == CQL_TYPE_INT);
	CHECK(cql_type_child(&attrs, 2, NULL, &child) == 0);
	CHECK(cql_type_child(&home, 0, &name, &child) == 1 && child.id == CQL_TYPE_VARCHAR &&
	      str_is(name, "street"));
	CHECK(cql_type_child(&home, 1, &name, &child) == 1 && child.id == CQL_TYPE_LIST &&
	      str_is(name, "nums"));
	CHECK(child.len == 4);
	CHECK(cql_type_child(&child, 0, NULL, &grandchild) == 1 && grandchild.id == CQL_TYPE_INT);
	CHECK(cql_type_child(&home, 2, &name, &child) == 0);
	CHECK(cql_type_child(&pair, 0, NULL, &child) == 1 && child.id == CQL_TYPE_INT);
	CHECK(cql_type_child(&pair, 1, NULL, &child) == 1 && child.id == CQL_TYPE_VARCHAR);
	CHECK(cql_type_child(&pair, 2, NULL, &child) == 0);
	CHECK(cql_type_child(&dur, 0, NULL, &child) == 0);

	/* row 1 */
	cql_rows_cursor_init(&cursor, rows);
	CHECK(cql_rows_next(&cursor, cells, ROWS_COLUMNS + 2));
	CHECK(cql_value_text(&cells[0], &text, &error) == 1 && str_is(text, "alice"));
	CHECK(cql_value_int(&cells[1], &i32, &error) == 1 && i32 == 7);
	CHECK(cql_value_bigint(&cells[2], &i64, &error) == 1 && i64 == 42);
	CHECK(cql_value_boolean(&cells[3], &b, &error) == 1 && b);
	CHECK(cql_value_timestamp(&cells[4], &i64, &error) == 1 && i64 == 1700000000000LL);
	CHECK(cql_value_uuid(&cells[5], uuid, &error) == 1 &&
	      memcmp(uuid, test_uuid, CQL_UUID_LEN) == 0);
	CHECK(cells[6].type == CQL_TYPE_SET && cells[6].len == 9);
	CHECK(cells[7].type == CQL_TYPE_MAP && cells[7].len == 17);
	CHECK(cells[8].type == CQL_TYPE_UDT && cells[8].len == 9);
	CHECK(cells[9].type == CQL_TYPE_TUPLE && cells[9].len == 12);
	CHECK(cells[10].type == CQL_TYPE_BLOB && cells[10].len == 2 && cells[10].data[1] == 0xff);
	CHECK(cells[11].type == CQL_TYPE_CUSTOM && cells[11].len == 3);
	CHECK(cells[12].len == -1 && cells[12].data == NULL && cells[12].type == CQL_TYPE_UNKNOWN);
	CHECK(cells[13].len == -1);

	/* the type checks */
	CHECK(cql_value_bigint(&cells[1], &i64, &error) == -1);
	CHECK(strstr(error, "bigint") != NULL);
	CHECK(cql_value_int(&cells[0], &i32, &error) == -1);
	CHECK(cql_value_text(&cells[1], &text, &error) == -1);
	CHECK(cql_value_boolean(&cells[4], &b, &error) == -1);
	CHECK(cql_value_timestamp(&cells[2], &i64, &error) == -1);
	CHECK(cql_value_uuid(&cells[0], uuid, &error) == -1);

	/* row 2: NULLs and empties; only the first 3 cells asked for */
	cells[3].len = 12345;
	CHECK(cql_rows_next(&cursor, cells, 3));
	CHECK(cells[3].len == 12345); /* untouched */
	CHECK(cql_value_text(&cells[0], &text, &error) == 1 && str_is(text, "bob"));
	i32 = 5;
	CHECK(cql_value_int(&cells[1], &i32, &error) == 0 && i32 == 0); /* empty */
	CHECK(cql_value_bigint(&cells[2], &i64, &error) == 0);          /* NULL */

	/* row 3 */
	CHECK(cql_rows_next(&cursor, cells, ROWS_COLUMNS));
	CHECK(cql_value_text(&cells[0], &text, &error) == 1 && text.len == 0);
	CHECK(cql_value_int(&cells[1], &i32, &error) == 1 && i32 == -1);
	CHECK(cql_value_bigint(&cells[2], &i64, &error) == 1 && i64 == INT64_MIN);
	CHECK(cql_value_boolean(&cells[3], &b, &error) == 1 && !b);
	CHECK(cql_value_timestamp(&cells[4], &i64, &error) == 1 && i64 == -1000);
	CHECK(cql_value_uuid(&cells[5], uuid, &error) == 0);
	CHECK(cql_value_text(&cells[11], &text, &error) == -1); /* custom is not text */

	CHECK(!cql_rows_next(&cursor, cells, ROWS_COLUMNS));
	CHECK(!cql_rows_next(&cursor, cells, ROWS_COLUMNS));

	/* the cursor can start again, and no cells at all is fine */
	cql_rows_cursor_init(&cursor, rows);
	n = 0;
	while (cql_rows_next(&cursor, NULL, 0))
		n++;
	CHECK(n == 3);
	parsed_free(&p);

	/* per-column table specs */
	build_rows_per_column(&f);
	CHECK(parse_frame(&f, &p) == 0);
	rows = &p.resp.result.rows;
	CHECK(rows->metadata.paging_state.len == -1);
	cql_columns_cursor_init(&columns, &rows->metadata);
	CHECK(cql_columns_next(&columns, &column) && str_is(column.keyspace, "ks1") &&
	      str_is(column.table, "t1") && str_is(column.name, "a") &&
	      column.type.id == CQL_TYPE_ASCII);
	CHECK(cql_columns_next(&columns, &column) && str_is(column.keyspace, "ks2") &&
	      str_is(column.table, "t2") && column.type.id == CQL_TYPE_COUNTER);
	CHECK(!cql_columns_next(&columns, &column));
	cql_rows_cursor_init(&cursor, rows);
	CHECK(cql_rows_next(&cursor, cells, 2));
	CHECK(cql_value_text(&cells[0], &text, &error) == 1 && str_is(text, "hi"));
	CHECK(cql_value_bigint(&cells[1], &i64, &error) == 1 && i64 == 99); /* counter */
	CHECK(!cql_rows_next(&cursor, cells, 2));
	parsed_free(&p);

	/* no metadata: types unknown, only lengths are checked */
	build_rows_no_metadata(&f);
	CHECK(parse_frame(&f, &p) == 0);
	rows = &p.resp.result.rows;
	CHECK(rows->metadata.column_count == 2 && rows->metadata.specs == NULL);
	CHECK(rows->metadata.paging_state.len == 2);
	cql_columns_cursor_init(&columns, &rows->metadata);
	CHECK(!cql_columns_next(&columns, &column));
	cql_rows_cursor_init(&cursor, rows);
	CHECK(cql_rows_next(&cursor, cells, 2));
	CHECK(cells[0].type == CQL_TYPE_UNKNOWN);
	CHECK(cql_value_int(&cells[0], &i32, &error) == 1 && i32 == 1);
	CHECK(cql_value_int(&cells[1], &i32, &error) == -1);
	CHECK(strstr(error, "4 bytes") != NULL);
	CHECK(cql_value_bigint(&cells[1], &i64, &error) == -1);
	CHECK(cql_value_uuid(&cells[1], uuid, &error) == -1);
	CHECK(cql_value_boolean(&cells[1], &b, &error) == -1);
	CHECK(cql_value_text(&cells[1], &text, &error) == 1 && text.len == 3);
	CHECK(cql_rows_next(&cursor, cells, 2));
	CHECK(cql_value_text(&cells[0], &text, &error) == 0 && cells[0].len == -1);
	CHECK(cql_value_text(&cells[1], &text, &error) == 1 && str_is(text, "zz"));
	CHECK(!cql_rows_next(&cursor, cells, 2));
	parsed_free(&p);

	build_rows_empty(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.result.rows.row_count == 0 && p.resp.result.rows.metadata.column_count == 1);
	cql_rows_cursor_init(&cursor, &p.resp.result.rows);
	CHECK(!cql_rows_next(&cursor, cells, 1));
	parsed_free(&p);
}

static void test_prepared_and_schema(void)
{
	struct cql_columns_cursor columns;
	struct cql_column column;
	struct cql_string s;
	struct parsed p;
	struct frame f;

	build_prepared(&f);
	CHECK(parse_frame(&f, &p) == 0);
	const struct cql_prepared *prepared = &p.resp.result.prepared;
	CHECK(p.resp.result.kind == CQL_RESULT_PREPARED);
	CHECK(prepared->id.len == CQL_UUID_LEN &&
	      memcmp(prepared->id.data, test_uuid, CQL_UUID_LEN) == 0);
	CHECK(prepared->metadata.column_count == 3 && prepared->metadata.pk_count == 2);
	CHECK(cql_metadata_pk_index(&prepared->metadata, 0) == 2);
	CHECK(cql_metadata_pk_index(&prepared->metadata, 1) == 0);
	CHECK(cql_metadata_pk_index(&prepared->metadata, 2) == -1);
	CHECK(str_is(prepared->metadata.keyspace, "mail"));
	cql_columns_cursor_init(&columns, &prepared->metadata);
	CHECK(cql_columns_next(&columns, &column) && str_is(column.name, "bucket") &&
	      column.type.id == CQL_TYPE_INT && str_is(column.table, "users"));
	CHECK(cql_columns_next(&columns, &column) && str_is(column.name, "username"));
	CHECK(cql_columns_next(&columns, &column) && str_is(column.name, "site"));
	CHECK(!cql_columns_next(&columns, &column));
	CHECK(prepared->result_metadata.column_count == 2);
	CHECK(cql_metadata_pk_index(&prepared->result_metadata, 0) == -1);
	cql_columns_cursor_init(&columns, &prepared->result_metadata);
	CHECK(cql_columns_next(&columns, &column) && str_is(column.name, "group_id"));
	CHECK(cql_columns_next(&columns, &column) && str_is(column.name, "changed") &&
	      column.type.id == CQL_TYPE_TIMESTAMP);
	CHECK(!cql_columns_next(&columns, &column));
	parsed_free(&p);

	build_prepared_insert(&f);
	CHECK(parse_frame(&f, &p) == 0);
	prepared = &p.resp.result.prepared;
	CHECK(prepared->id.len == 2 && prepared->metadata.pk_count == 0);
	CHECK(prepared->result_metadata.flags == CQL_METADATA_NO_METADATA);
	CHECK(prepared->result_metadata.column_count == 0);
	cql_columns_cursor_init(&columns, &prepared->metadata);
	CHECK(cql_columns_next(&columns, &column) && str_is(column.keyspace, "mail") &&
	      str_is(column.table, "log") && column.type.id == CQL_TYPE_LIST);
	parsed_free(&p);

	build_schema_keyspace(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.result.kind == CQL_RESULT_SCHEMA_CHANGE);
	CHECK(str_is(p.resp.result.schema_change.change_type, "CREATED"));
	CHECK(str_is(p.resp.result.schema_change.target, "KEYSPACE"));
	CHECK(str_is(p.resp.result.schema_change.keyspace, "mail"));
	CHECK(p.resp.result.schema_change.name.len == 0);
	parsed_free(&p);

	build_schema_table(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(str_is(p.resp.result.schema_change.target, "TABLE"));
	CHECK(str_is(p.resp.result.schema_change.name, "users"));
	parsed_free(&p);

	build_schema_function(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(str_is(p.resp.result.schema_change.name, "fnv"));
	struct cql_string_list args = p.resp.result.schema_change.arg_types;
	CHECK(args.count == 2);
	CHECK(cql_string_list_next(&args, &s) && str_is(s, "int"));
	CHECK(cql_string_list_next(&args, &s) && str_is(s, "text"));
	parsed_free(&p);

	build_event_status(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.header.stream == -1 && p.resp.header.opcode == CQL_OPCODE_EVENT);
	CHECK(str_is(p.resp.event.type, "STATUS_CHANGE") && str_is(p.resp.event.change, "UP"));
	CHECK(p.resp.event.address_len == 4 && p.resp.event.address[0] == 10 &&
	      p.resp.event.address[3] == 1 && p.resp.event.port == 9042);
	parsed_free(&p);

	build_event_topology(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(str_is(p.resp.event.change, "NEW_NODE") && p.resp.event.address_len == 16 &&
	      p.resp.event.address[0] == 0x20 && p.resp.event.address[15] == 1);
	parsed_free(&p);

	build_event_schema(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(str_is(p.resp.event.schema_change.target, "TYPE") &&
	      str_is(p.resp.event.schema_change.keyspace, "mail") &&
	      str_is(p.resp.event.schema_change.name, "address"));
	parsed_free(&p);
}

static void check_error_frame(frame_builder *build, int32_t code, const char *sentence)
{
	char text[256];
	struct parsed p;
	struct frame f;

	build(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.header.opcode == CQL_OPCODE_ERROR && p.resp.error.code == code);
	CHECK_STR(cql_error_sentence(&p.resp, text, sizeof(text)), sentence);
	parsed_free(&p);
}

static void test_errors(void)
{
	struct cql_string s;
	char text[256];
	struct parsed p;
	struct frame f;

	check_error_frame(build_error_unavailable, CQL_ERROR_UNAVAILABLE,
			  "unavailable at LOCAL_QUORUM: 2 replicas required, 1 alive");
	check_error_frame(build_error_write_timeout, CQL_ERROR_WRITE_TIMEOUT,
			  "write timeout at LOCAL_QUORUM (1 of 2 replicas acknowledged, type "
			  "SIMPLE)");
	check_error_frame(build_error_read_timeout, CQL_ERROR_READ_TIMEOUT,
			  "read timeout at QUORUM (1 of 2 replicas responded, no data from the "
			  "replica asked for it)");
	check_error_frame(build_error_read_failure, CQL_ERROR_READ_FAILURE,
			  "read failure at ONE (0 of 1 replicas responded, 1 failed, data "
			  "received)");
	check_error_frame(build_error_write_failure, CQL_ERROR_WRITE_FAILURE,
			  "write failure at EACH_QUORUM (2 of 4 replicas acknowledged, 2 failed, "
			  "type BATCH)");
	check_error_frame(build_error_function_failure, CQL_ERROR_FUNCTION_FAILURE,
			  "function failure in mail.f(int, text): boom");
	check_error_frame(build_error_already_exists, CQL_ERROR_ALREADY_EXISTS,
			  "table mail.users already exists");
	check_error_frame(build_error_unprepared, CQL_ERROR_UNPREPARED,
			  "unprepared statement (id abcd): the node no longer knows it, prepare "
			  "it again");
	check_error_frame(build_error_syntax, CQL_ERROR_SYNTAX,
			  "syntax error: line 1:0 no viable alternative at input 'SELEC'");

	/* the fields themselves */
	build_error_write_timeout(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.error.consistency == CQL_CONSISTENCY_LOCAL_QUORUM &&
	      p.resp.error.received == 1 && p.resp.error.block_for == 2 &&
	      str_is(p.resp.error.write_type, "SIMPLE"));
	CHECK(str_is(p.resp.error.message, "Operation timed out - received only 1 responses."));
	parsed_free(&p);
	build_error_unavailable(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.error.required == 2 && p.resp.error.alive == 1);
	parsed_free(&p);
	build_error_read_failure(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.error.num_failures == 1 && p.resp.error.data_present &&
	      p.resp.error.block_for == 1 && p.resp.error.received == 0);
	parsed_free(&p);
	build_error_write_failure(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.error.num_failures == 2 && str_is(p.resp.error.write_type, "BATCH"));
	parsed_free(&p);
	build_error_function_failure(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(str_is(p.resp.error.keyspace, "mail") && str_is(p.resp.error.function, "f"));
	struct cql_string_list args = p.resp.error.arg_types;
	CHECK(cql_string_list_next(&args, &s) && str_is(s, "int"));
	parsed_free(&p);
	build_error_unprepared(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK(p.resp.error.unprepared_id.len == 2 && p.resp.error.unprepared_id.data[0] == 0xab);
	/* a small buffer truncates, NUL-terminated */
	CHECK_STR(cql_error_sentence(&p.resp, text, 11), "unprepared");
	CHECK(cql_error_sentence(&p.resp, text, 0) == text);
	CHECK_STR(cql_error_sentence(&p.resp, text, 1), "");
	parsed_free(&p);

	/* codes without details */
	static const struct {
		int32_t code;
		const char *message, *sentence;
	} plain[] = {
		{CQL_ERROR_SERVER, "NullPointerException", "server error: NullPointerException"},
		{CQL_ERROR_PROTOCOL, "Invalid or unsupported protocol version (5)",
		 "protocol error: Invalid or unsupported protocol version (5)"},
		{CQL_ERROR_AUTHENTICATION, "Provided username mail and/or password are incorrect",
		 "authentication failed: Provided username mail and/or password are incorrect"},
		{CQL_ERROR_OVERLOADED, "", "coordinator overloaded"},
		{CQL_ERROR_IS_BOOTSTRAPPING, "bootstrapping",
		 "coordinator is bootstrapping: bootstrapping"},
		{CQL_ERROR_TRUNCATE, "x", "truncate failed: x"},
		{CQL_ERROR_UNAUTHORIZED, "User mail has no SELECT permission",
		 "unauthorized: User mail has no SELECT permission"},
		{CQL_ERROR_INVALID, "Keyspace nope does not exist",
		 "invalid query: Keyspace nope does not exist"},
		{CQL_ERROR_CONFIG, "x", "configuration error: x"},
		{0x9999, "future", "error 0x9999: future"},
		{CQL_ERROR_SERVER, "line one\nline\ttwo\r", "server error: line one line two "},
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		error_begin(&f, plain[i].code, plain[i].message);
		f_end(&f);
		CHECK(parse_frame(&f, &p) == 0);
		CHECK(p.resp.error.code == plain[i].code);
		CHECK_STR(cql_error_sentence(&p.resp, text, sizeof(text)), plain[i].sentence);
		parsed_free(&p);
	}

	/* Already_exists for a keyspace has an empty table */
	error_begin(&f, CQL_ERROR_ALREADY_EXISTS, "x");
	f_string(&f, "mail");
	f_string(&f, "");
	f_end(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK_STR(cql_error_sentence(&p.resp, text, sizeof(text)), "keyspace mail already exists");
	parsed_free(&p);

	/* a consistency this version does not define */
	error_begin(&f, CQL_ERROR_UNAVAILABLE, "x");
	f_u16(&f, 0x42);
	f_u32(&f, 3);
	f_u32(&f, 0);
	f_end(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK_STR(cql_error_sentence(&p.resp, text, sizeof(text)),
		  "unavailable at unknown consistency 0x0042: 3 replicas required, 0 alive");
	parsed_free(&p);

	/* not an error at all */
	build_void(&f);
	CHECK(parse_frame(&f, &p) == 0);
	CHECK_STR(cql_error_sentence(&p.resp, text, sizeof(text)),
		  "not an ERROR response (RESULT)");
	parsed_free(&p);

	/* missing details */
	error_begin(&f, CQL_ERROR_WRITE_TIMEOUT, "x");
	f_u16(&f, 1);
	f_u32(&f, 1);
	f_end(&f);
	check_malformed(&f, "malformed CQL ERROR frame on stream 4: frame ends early in the error "
			    "details");
}

static void test_consistency_names(void)
{
	static const char *const names[] = {
		"ANY",          "ONE",         "TWO",    "THREE",        "QUORUM",    "ALL",
		"LOCAL_QUORUM", "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE",
	};
	enum cql_consistency consistency;
	const char *error = NULL;

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		CHECK_STR(cql_consistency_name(i), names[i]);
		CHECK(cql_consistency_parse(names[i], &consistency, &error) == 0 &&
		      consistency == i);
	}
	CHECK(cql_consistency_name(11) == NULL);
	CHECK(cql_consistency_name(0xffff) == NULL);
	CHECK(cql_consistency_parse("local_quorum", &consistency, &error) == 0 &&
	      consistency == CQL_CONSISTENCY_LOCAL_QUORUM);
	CHECK(cql_consistency_parse("QUORUMS", &consistency, &error) == -1);
	CHECK(strstr(error, "LOCAL_QUORUM") != NULL);
	CHECK(cql_consistency_parse("", &consistency, &error) == -1);
	CHECK(cql_consistency_parse(NULL, &consistency, &error) == -1);
	CHECK_STR(cql_opcode_name(CQL_OPCODE_AUTH_SUCCESS), "AUTH_SUCCESS");
	CHECK_STR(cql_opcode_name(0x04), "UNKNOWN");
	CHECK_STR(cql_type_name(0x99), "unknown");
}

/* Every valid frame cut anywhere (header length fixed to match) is an
 * error with a sentence, and the response holds nothing but the header;
 * a header length that disagrees with the frame is an error too. */
static void test_truncated(void)
{
	struct cql_response zero_body;
	unsigned bad = 0;
	struct frame f;

	for (size_t b = 0; b < VALID_BUILDER_COUNT; b++) {
		valid_builders[b](&f);
		for (size_t body = 0; body + CQL_FRAME_HEADER_LEN < f.len; body++) {
			struct frame cut = f;
			struct parsed p;

			cut.len = CQL_FRAME_HEADER_LEN + body;
			f_end(&cut);
			if (parse_frame(&cut, &p) != -1 || p.error == NULL ||
			    p.error != p.resp.error_text || *p.error == '\0') {
				if (bad++ == 0)
					fprintf(stderr, "builder %zu cut at %zu parsed\n", b, body);
			}
			memset(&zero_body, 0, sizeof(zero_body));
			zero_body.header = p.resp.header;
			memcpy(zero_body.error_text, p.resp.error_text,
			       sizeof(zero_body.error_text));
			if (memcmp(&zero_body, &p.resp, sizeof(zero_body)) != 0)
				bad++;
			parsed_free(&p);
		}
		/* length field one more / one less than what was given */
		struct frame lie = f;
		lie.data[8]++;
		check_malformed(&lie, "announces");
		lie.len = f.len + 1;
		lie.data[f.len] = 0;
		lie.data[8]--;
		check_malformed(&lie, "announces");
		/* shorter than a header */
		struct parsed p;
		for (size_t len = 0; len < CQL_FRAME_HEADER_LEN; len++) {
			CHECK(parse_bytes(f.data, len, &p) == -1);
			parsed_free(&p);
		}
	}
	CHECK(bad == 0);
}

static void test_corrupt(void)
{
	struct parsed p;
	struct frame f;

	/* wrong versions */
	build_void(&f);
	f.data[0] = CQL_VERSION_REQUEST;
	check_malformed(&f, "request");
	f.data[0] = 0x83;
	check_malformed(&f, "older");

	/* request and unknown opcodes */
	static const uint8_t not_responses[] = {0x01, 0x04, 0x05, 0x07, 0x09, 0x0a,
						0x0b, 0x0d, 0x0f, 0x11, 0xff};
	for (size_t i = 0; i < sizeof(not_responses); i++) {
		build_void(&f);
		f.data[4] = not_responses[i];
		check_malformed(&f, "opcode that is not a response");
	}

	/* unknown result kind */
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, 6);
	f_end(&f);
	check_malformed(
		&f, "malformed CQL RESULT frame on stream 5: unknown kind 6 in the result kind");

	/* unknown type id: 0x000A (text, gone since v3) and 0x0015 (v5's duration) */
	static const uint16_t bad_types[] = {0x000A, 0x0015, 0x0023, 0x0032, 0x00ff, 0xffff};
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
		f_u32(&f, CQL_RESULT_ROWS);
		f_u32(&f, CQL_METADATA_GLOBAL_TABLES_SPEC);
		f_u32(&f, 1);
		f_string(&f, "k");
		f_string(&f, "t");
		f_string(&f, "c");
		f_u16(&f, CQL_TYPE_LIST);
		f_u16(&f, bad_types[i]);
		f_u32(&f, 0);
		f_end(&f);
		check_malformed(&f, "unknown column type id 0x");
	}

	/* types nested to the limit parse, one deeper does not */
	for (unsigned depth = CQL_TYPE_DEPTH_MAX - 1; depth <= CQL_TYPE_DEPTH_MAX + 40;
	     depth += 41) {
		f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
		f_u32(&f, CQL_RESULT_ROWS);
		f_u32(&f, CQL_METADATA_GLOBAL_TABLES_SPEC);
		f_u32(&f, 1);
		f_string(&f, "k");
		f_string(&f, "t");
		f_string(&f, "c");
		for (unsigned i = 0; i < depth; i++)
			f_u16(&f, CQL_TYPE_LIST);
		f_u16(&f, CQL_TYPE_INT);
		f_u32(&f, 0);
		f_end(&f);
		if (depth < CQL_TYPE_DEPTH_MAX) {
			CHECK(parse_frame(&f, &p) == 0);
			parsed_free(&p);
		} else {
			check_malformed(&f, "nested too deeply");
		}
	}

	/* negative counts */
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_ROWS);
	f_u32(&f, CQL_METADATA_NO_METADATA);
	f_u32(&f, 0xFFFFFFFF);
	f_u32(&f, 0);
	f_end(&f);
	check_malformed(&f, "negative count in the Rows metadata");
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_ROWS);
	f_u32(&f, CQL_METADATA_NO_METADATA);
	f_u32(&f, 1);
	f_u32(&f, 0x80000000);
	f_end(&f);
	check_malformed(&f, "negative count in the row count");

	/* rows without columns, and counts far beyond the frame */
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_ROWS);
	f_u32(&f, CQL_METADATA_NO_METADATA);
	f_u32(&f, 0);
	f_u32(&f, 0x7fffffff);
	f_end(&f);
	check_malformed(&f, "rows without columns");
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_ROWS);
	f_u32(&f, CQL_METADATA_NO_METADATA);
	f_u32(&f, 0x7fffffff);
	f_u32(&f, 0x7fffffff);
	f_null_cell(&f);
	f_end(&f);
	check_malformed(&f, "frame ends early in the row values");
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_ROWS);
	f_u32(&f, 0);
	f_u32(&f, 0x7fffffff);
	f_string(&f, "k");
	f_end(&f);
	check_malformed(&f, "frame ends early in the Rows metadata");
	/* a cell whose length runs past the frame */
	f_begin(&f, 0, 5, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_ROWS);
	f_u32(&f, CQL_METADATA_NO_METADATA);
	f_u32(&f, 1);
	f_u32(&f, 1);
	f_u32(&f, 0x7fffffff);
	f_u32(&f, 0);
	f_end(&f);
	check_malformed(&f, "row values");

	/* a partition key index beyond the bind markers */
	f_begin(&f, 0, 8, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_PREPARED);
	f_u16(&f, 1);
	f_u8(&f, 1);
	f_u32(&f, CQL_METADATA_GLOBAL_TABLES_SPEC);
	f_u32(&f, 1);
	f_u32(&f, 1);
	f_u16(&f, 1);
	f_string(&f, "k");
	f_string(&f, "t");
	f_string(&f, "c");
	f_u16(&f, CQL_TYPE_INT);
	f_u32(&f, CQL_METADATA_NO_METADATA);
	f_u32(&f, 0);
	f_end(&f);
	check_malformed(&f, "partition key index beyond the bind markers");

	/* unknown schema change target, event type, inet length */
	f_begin(&f, 0, 9, CQL_OPCODE_RESULT);
	f_u32(&f, CQL_RESULT_SCHEMA_CHANGE);
	f_string(&f, "CREATED");
	f_string(&f, "INDEX");
	f_string(&f, "mail");
	f_end(&f);
	check_malformed(&f, "unknown schema change target");
	f_begin(&f, 0, -1, CQL_OPCODE_EVENT);
	f_string(&f, "WEATHER_CHANGE");
	f_end(&f);
	check_malformed(&f, "unknown event type");
	f_begin(&f, 0, -1, CQL_OPCODE_EVENT);
	f_string(&f, "STATUS_CHANGE");
	f_string(&f, "UP");
	f_u8(&f, 5);
	f_mem(&f, "\1\2\3\4\5", 5);
	f_u32(&f, 9042);
	f_end(&f);
	check_malformed(&f, "neither 4 nor 16");
}

/* ---- pseudo-fuzz ---- */

static uint32_t rng_next(uint64_t *state)
{
	/* splitmix64: fixed seed, same run every time */
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* Look at everything a parsed response offers, as a caller would. */
static unsigned walk_type(const struct cql_type *type, unsigned depth)
{
	struct cql_type child;
	struct cql_string name;
	unsigned n = 1;

	if (depth > CQL_TYPE_DEPTH_MAX + 2)
		return n;
	for (unsigned i = 0; i < 4 && cql_type_child(type, i, &name, &child) == 1; i++)
		n += walk_type(&child, depth + 1) + (unsigned)name.len;
	return n;
}

static unsigned walk_response(struct cql_response *resp)
{
	struct cql_value cells[8];
	struct cql_columns_cursor columns;
	struct cql_rows_cursor rows;
	struct cql_column column;
	struct cql_string s, key;
	struct cql_string_list list;
	struct cql_bytes value;
	unsigned char uuid[CQL_UUID_LEN];
	const char *error;
	char text[96];
	unsigned n = 0;
	int32_t i32;
	int64_t i64;
	bool b;

	while (cql_string_list_next(&resp->warnings, &s))
		n += (unsigned)s.len;
	while (cql_bytes_map_next(&resp->custom_payload, &key, &value))
		n += (unsigned)key.len;
	switch (resp->header.opcode) {
	case CQL_OPCODE_ERROR:
		n += (unsigned)strlen(cql_error_sentence(resp, text, sizeof(text)));
		break;
	case CQL_OPCODE_SUPPORTED:
		while (cql_string_multimap_next(&resp->supported, &key, &list)) {
			while (cql_string_list_next(&list, &s))
				n += (unsigned)s.len;
		}
		break;
	case CQL_OPCODE_EVENT:
		for (unsigned i = 0; i < resp->event.address_len; i++)
			n += resp->event.address[i];
		while (cql_string_list_next(&resp->event.schema_change.arg_types, &s))
			n += (unsigned)s.len;
		break;
	case CQL_OPCODE_RESULT:
		if (resp->result.kind == CQL_RESULT_PREPARED) {
			cql_columns_cursor_init(&columns, &resp->result.prepared.metadata);
			while (cql_columns_next(&columns, &column))
				n += walk_type(&column.type, 0);
			for (unsigned i = 0; i < (unsigned)resp->result.prepared.metadata.pk_count;
			     i++)
				n += (unsigned)cql_metadata_pk_index(
					&resp->result.prepared.metadata, i);
			cql_columns_cursor_init(&columns, &resp->result.prepared.result_metadata);
			while (cql_columns_next(&columns, &column))
				n += walk_type(&column.type, 0);
		} else if (resp->result.kind == CQL_RESULT_ROWS) {
			cql_columns_cursor_init(&columns, &resp->result.rows.metadata);
			while (cql_columns_next(&columns, &column))
				n += walk_type(&column.type, 0) + (unsigned)column.name.len;
			cql_rows_cursor_init(&rows, &resp->result.rows);
			while (cql_rows_next(&rows, cells, 8)) {
				for (unsigned i = 0; i < 8; i++) {
					n += (unsigned)cql_value_int(&cells[i], &i32, &error);
					n += (unsigned)cql_value_bigint(&cells[i], &i64, &error);
					n += (unsigned)cql_value_boolean(&cells[i], &b, &error);
					n += (unsigned)cql_value_timestamp(&cells[i], &i64, &error);
					n += (unsigned)cql_value_uuid(&cells[i], uuid, &error);
					if (cql_value_text(&cells[i], &s, &error) == 1 && s.len > 0)
						n += (unsigned char)s.data[s.len - 1];
					for (int32_t j = 0; j < cells[i].len; j++)
						n += cells[i].data[j];
				}
			}
		} else if (resp->result.kind == CQL_RESULT_SCHEMA_CHANGE) {
			while (cql_string_list_next(&resp->result.schema_change.arg_types, &s))
				n += (unsigned)s.len;
		}
		break;
	default:
		break;
	}
	return n;
}

static void test_fuzz(void)
{
	static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff,
					      0x20, 0x21, 0x22, 0x30, 0x31, 0x0d};
	uint64_t rng = 20240601;
	unsigned parsed_ok = 0, parsed_bad = 0, contract = 0;
	volatile unsigned sink = 0;
	struct frame f;

	for (unsigned iter = 0; iter < FUZZ_ITERATIONS; iter++) {
		valid_builders[rng_next(&rng) % VALID_BUILDER_COUNT](&f);
		unsigned mutations = 1 + rng_next(&rng) % 4;

		for (unsigned m = 0; m < mutations; m++) {
			size_t at = rng_next(&rng) % f.len;

			switch (rng_next(&rng) % 6) {
			case 0:
				f.data[at] ^= (unsigned char)(1u << (rng_next(&rng) % 8));
				break;
			case 1:
				f.data[at] = interesting[rng_next(&rng) % sizeof(interesting)];
				break;
			case 2:
				f.data[at] = (unsigned char)rng_next(&rng);
				break;
			case 3:
				/* cut short */
				if (at > 0)
					f.len = at;
				break;
			case 4:
				/* grow with random bytes */
				for (unsigned k = rng_next(&rng) % 16; k > 0 && f.len < FRAME_MAX;
				     k--)
					f.data[f.len++] = (unsigned char)rng_next(&rng);
				break;
			default:
				/* a length or count field set to something wild */
				if (at + 4 <= f.len) {
					uint32_t v = rng_next(&rng) % 2 ? 0x7fffffff
									: rng_next(&rng) % 300;
					f.data[at] = (unsigned char)(v >> 24);
					f.data[at + 1] = (unsigned char)(v >> 16);
					f.data[at + 2] = (unsigned char)(v >> 8);
					f.data[at + 3] = (unsigned char)v;
				}
				break;
			}
		}
		/* mostly keep the header honest, so that the body gets read */
		if (f.len >= CQL_FRAME_HEADER_LEN && rng_next(&rng) % 8 != 0) {
			f.data[0] = CQL_VERSION_RESPONSE;
			f_end(&f);
		}

		struct cql_frame_header hdr;
		size_t frame_len;
		const char *error = NULL;
		int peek = peek_copy(f.data, f.len, FRAME_MAX, &hdr, &frame_len, &error);
		if (peek == 1 && frame_len > f.len)
			contract++;
		if (peek == -1 && (error == NULL || *error == '\0'))
			contract++;

		struct parsed p;
		if (parse_frame(&f, &p) == 0) {
			parsed_ok++;
			if (p.error != NULL || peek != 1 || frame_len != f.len)
				contract++;
			sink += walk_response(&p.resp);
		} else {
			parsed_bad++;
			if (p.ret != -1 || p.error == NULL || *p.error == '\0')
				contract++;
		}
		parsed_free(&p);
	}
	(void)sink;
	CHECK(contract == 0);
	/* both outcomes must be well exercised for the loop to mean much */
	CHECK(parsed_ok > FUZZ_ITERATIONS / 20);
	CHECK(parsed_bad > FUZZ_ITERATIONS / 4);
}

void suite_cql_protocol(void)
{
	test_build_simple();
	test_build_query_params();
	test_build_errors();
	test_peek();
	test_simple_responses();
	test_flags();
	test_rows();
	test_prepared_and_schema();
	test_errors();
	test_consistency_names();
	test_truncated();
	test_corrupt();
	test_fuzz();
}
