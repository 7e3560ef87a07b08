/* cql_protocol.c - the CQL native protocol v4 codec: see cql_protocol.h.
 *
 * Building: every builder first checks its arguments and works out the
 * body's size (so that it can refuse a body over 2 GB before writing a
 * byte), then appends the 9-byte header and the body in one go.  Only
 * running out of memory can stop it halfway, and that aborts.
 *
 * Parsing: a small reader (struct parser) walks the body with one bounds
 * check per read; the first failing read records what went wrong and every
 * read after it fails too, so the parse functions just return -1 up the
 * chain and cql_response_parse() turns the record into one sentence.
 * Counts that promise N items are checked against the bytes left (each
 * item needs at least a few bytes) before looping, so no frame can make
 * the parser loop longer than its own length allows, and nested column
 * types are cut off at CQL_TYPE_DEPTH_MAX levels.  The cursors and
 * iterators walk regions that cql_response_parse() has already checked,
 * with the same reader, so they stay inside the frame even if handed
 * something else.
 */
#include "store/cql_protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CQL_VERSION_MASK 0x7F
#define STARTUP_CQL_VERSION "3.0.0"

/* QUERY / EXECUTE <flags> (section 4.1.4). */
#define QUERY_FLAG_VALUES 0x01
#define QUERY_FLAG_SKIP_METADATA 0x02
#define QUERY_FLAG_PAGE_SIZE 0x04
#define QUERY_FLAG_PAGING_STATE 0x08
#define QUERY_FLAG_SERIAL_CONSISTENCY 0x10
#define QUERY_FLAG_DEFAULT_TIMESTAMP 0x20

#define SHORT_MAX 0xFFFF
#define FRAME_BODY_MAX INT32_MAX

/* ---- byte order ---- */

static uint16_t get_be16(const unsigned char *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_be64(const unsigned char *p)
{
	return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

/* ---- the growable buffer ---- */

void cql_buf_free(struct cql_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->alloc = 0;
}

static void buf_reserve(struct cql_buf *buf, size_t more)
{
	size_t alloc;
	unsigned char *data;

	if (more <= buf->alloc - buf->len)
		return;
	if (more > SIZE_MAX / 2 - buf->len)
		abort();
	alloc = buf->alloc == 0 ? 256 : buf->alloc;
	while (alloc - buf->len < more)
		alloc *= 2;
	data = realloc(buf->data, alloc);
	if (data == NULL)
		abort();
	buf->data = data;
	buf->alloc = alloc;
}

static void put_mem(struct cql_buf *buf, const void *data, size_t len)
{
	if (len == 0)
		return;
	buf_reserve(buf, len);
	memcpy(buf->data + buf->len, data, len);
	buf->len += len;
}

static void put_u8(struct cql_buf *buf, uint8_t value)
{
	put_mem(buf, &value, 1);
}

static void put_u16(struct cql_buf *buf, uint16_t value)
{
	unsigned char b[2] = {(unsigned char)(value >> 8), (unsigned char)value};

	put_mem(buf, b, sizeof(b));
}

static void put_u32(struct cql_buf *buf, uint32_t value)
{
	unsigned char b[4] = {(unsigned char)(value >> 24), (unsigned char)(value >> 16),
			      (unsigned char)(value >> 8), (unsigned char)value};

	put_mem(buf, b, sizeof(b));
}

static void put_u64(struct cql_buf *buf, uint64_t value)
{
	put_u32(buf, (uint32_t)(value >> 32));
	put_u32(buf, (uint32_t)value);
}

/* [string]: the caller has checked len <= SHORT_MAX. */
static void put_string(struct cql_buf *buf, const char *text, size_t len)
{
	put_u16(buf, (uint16_t)len);
	put_mem(buf, text, len);
}

/* ---- bound values ---- */

void cql_buf_put_int(struct cql_buf *buf, int32_t value)
{
	put_u32(buf, 4);
	put_u32(buf, (uint32_t)value);
}

void cql_buf_put_bigint(struct cql_buf *buf, int64_t value)
{
	put_u32(buf, 8);
	put_u64(buf, (uint64_t)value);
}

void cql_buf_put_boolean(struct cql_buf *buf, bool value)
{
	put_u32(buf, 1);
	put_u8(buf, value ? 1 : 0);
}

void cql_buf_put_timestamp(struct cql_buf *buf, int64_t msecs)
{
	cql_buf_put_bigint(buf, msecs);
}

void cql_buf_put_uuid(struct cql_buf *buf, const unsigned char uuid[CQL_UUID_LEN])
{
	put_u32(buf, CQL_UUID_LEN);
	put_mem(buf, uuid, CQL_UUID_LEN);
}

void cql_buf_put_null(struct cql_buf *buf)
{
	put_u32(buf, (uint32_t)-1);
}

void cql_buf_put_unset(struct cql_buf *buf)
{
	put_u32(buf, (uint32_t)-2);
}

int cql_buf_put_blob(struct cql_buf *buf, const void *data, size_t len, const char **error_r)
{
	if (len > FRAME_BODY_MAX) {
		*error_r = "CQL value is longer than 2 GB";
		return -1;
	}
	if (data == NULL && len > 0) {
		*error_r = "CQL value has a length but no data";
		return -1;
	}
	buf_reserve(buf, 4 + len);
	put_u32(buf, (uint32_t)len);
	put_mem(buf, data, len);
	return 0;
}

int cql_buf_put_text(struct cql_buf *buf, const char *text, const char **error_r)
{
	if (text == NULL) {
		*error_r = "CQL text value is a NULL pointer (use cql_buf_put_null())";
		return -1;
	}
	return cql_buf_put_blob(buf, text, strlen(text), error_r);
}

/* ---- building requests ---- */

static int check_stream(int16_t stream, const char **error_r)
{
	if (stream < 0) {
		*error_r = "CQL request stream id is negative (negative ids are the server's)";
		return -1;
	}
	return 0;
}

static int check_body_len(uint64_t body_len, const char **error_r)
{
	if (body_len > FRAME_BODY_MAX) {
		*error_r = "CQL request body would be longer than 2 GB";
		return -1;
	}
	return 0;
}

/* Append a request header; the length is patched by frame_end(). */
static size_t frame_begin(struct cql_buf *buf, int16_t stream, uint8_t opcode, uint64_t body_len)
{
	size_t start;

	buf_reserve(buf, CQL_FRAME_HEADER_LEN + (size_t)body_len);
	start = buf->len;
	put_u8(buf, CQL_VERSION_REQUEST);
	put_u8(buf, 0);
	put_u16(buf, (uint16_t)stream);
	put_u8(buf, opcode);
	put_u32(buf, 0);
	return start;
}

static void frame_end(struct cql_buf *buf, size_t start)
{
	uint32_t body_len = (uint32_t)(buf->len - start - CQL_FRAME_HEADER_LEN);
	unsigned char *p = buf->data + start + 5;

	p[0] = (unsigned char)(body_len >> 24);
	p[1] = (unsigned char)(body_len >> 16);
	p[2] = (unsigned char)(body_len >> 8);
	p[3] = (unsigned char)body_len;
}

/* The values block holds exactly count well-formed [value]s. */
static int values_check(const unsigned char *values, size_t len, unsigned count,
			const char **error_r)
{
	size_t pos = 0;

	if (values == NULL && len > 0) {
		*error_r = "CQL bound values have a length but no data";
		return -1;
	}
	for (unsigned i = 0; i < count; i++) {
		int32_t n;

		if (len - pos < 4) {
			*error_r = "CQL bound values hold fewer values than value_count says";
			return -1;
		}
		n = (int32_t)get_be32(values + pos);
		pos += 4;
		if (n >= 0) {
			if (len - pos < (size_t)n) {
				*error_r = "CQL bound values end inside a value";
				return -1;
			}
			pos += (size_t)n;
		} else if (n != -1 && n != -2) {
			*error_r = "CQL bound value has a length below -2";
			return -1;
		}
	}
	if (pos != len) {
		*error_r = "CQL bound values hold more than value_count values";
		return -1;
	}
	return 0;
}

/* Check <query_parameters> and add their size to *len. */
static int params_check(const struct cql_query_params *params, uint64_t *len, const char **error_r)
{
	if (params == NULL) {
		*error_r = "CQL query parameters are missing";
		return -1;
	}
	if (cql_consistency_name(params->consistency) == NULL) {
		*error_r = "CQL consistency level is not one protocol v4 defines";
		return -1;
	}
	*len += 2 + 1;
	if (params->value_count > SHORT_MAX) {
		*error_r = "CQL request has more than 65535 bound values";
		return -1;
	}
	if (params->values_len > FRAME_BODY_MAX) {
		*error_r = "CQL bound values are longer than 2 GB";
		return -1;
	}
	if (values_check(params->values, params->values_len, params->value_count, error_r) < 0)
		return -1;
	if (params->value_count > 0)
		*len += 2 + params->values_len;
	if (params->page_size < 0) {
		*error_r = "CQL page size is negative";
		return -1;
	}
	if (params->page_size > 0)
		*len += 4;
	if (params->paging_state != NULL) {
		if (params->paging_state_len > FRAME_BODY_MAX) {
			*error_r = "CQL paging state is longer than 2 GB";
			return -1;
		}
		*len += 4 + params->paging_state_len;
	}
	if (params->with_serial_consistency) {
		if (params->serial_consistency != CQL_CONSISTENCY_SERIAL &&
		    params->serial_consistency != CQL_CONSISTENCY_LOCAL_SERIAL) {
			*error_r = "CQL serial consistency is neither SERIAL nor LOCAL_SERIAL";
			return -1;
		}
		*len += 2;
	}
	if (params->with_timestamp) {
		if (params->timestamp_usecs < 0) {
			*error_r = "CQL default timestamp is negative";
			return -1;
		}
		*len += 8;
	}
	return 0;
}

static void params_put(struct cql_buf *buf, const struct cql_query_params *params)
{
	uint8_t flags = 0;

	if (params->value_count > 0)
		flags |= QUERY_FLAG_VALUES;
	if (params->skip_metadata)
		flags |= QUERY_FLAG_SKIP_METADATA;
	if (params->page_size > 0)
		flags |= QUERY_FLAG_PAGE_SIZE;
	if (params->paging_state != NULL)
		flags |= QUERY_FLAG_PAGING_STATE;
	if (params->with_serial_consistency)
		flags |= QUERY_FLAG_SERIAL_CONSISTENCY;
	if (params->with_timestamp)
		flags |= QUERY_FLAG_DEFAULT_TIMESTAMP;

	put_u16(buf, (uint16_t)params->consistency);
	put_u8(buf, flags);
	if (params->value_count > 0) {
		put_u16(buf, (uint16_t)params->value_count);
		put_mem(buf, params->values, params->values_len);
	}
	if (params->page_size > 0)
		put_u32(buf, (uint32_t)params->page_size);
	if (params->paging_state != NULL) {
		put_u32(buf, (uint32_t)params->paging_state_len);
		put_mem(buf, params->paging_state, params->paging_state_len);
	}
	if (params->with_serial_consistency)
		put_u16(buf, (uint16_t)params->serial_consistency);
	if (params->with_timestamp)
		put_u64(buf, (uint64_t)params->timestamp_usecs);
}

int cql_build_startup(struct cql_buf *buf, int16_t stream, const char **error_r)
{
	static const char key[] = "CQL_VERSION", value[] = STARTUP_CQL_VERSION;
	size_t start;

	if (check_stream(stream, error_r) < 0)
		return -1;
	start = frame_begin(buf, stream, CQL_OPCODE_STARTUP,
			    2 + 2 + 2 + strlen(key) + strlen(value));
	put_u16(buf, 1);
	put_string(buf, key, strlen(key));
	put_string(buf, value, strlen(value));
	frame_end(buf, start);
	return 0;
}

int cql_build_options(struct cql_buf *buf, int16_t stream, const char **error_r)
{
	if (check_stream(stream, error_r) < 0)
		return -1;
	frame_end(buf, frame_begin(buf, stream, CQL_OPCODE_OPTIONS, 0));
	return 0;
}

int cql_build_auth_response(struct cql_buf *buf, int16_t stream, const void *token,
			    size_t token_len, const char **error_r)
{
	size_t start;

	if (check_stream(stream, error_r) < 0)
		return -1;
	if (token != NULL && check_body_len(4 + (uint64_t)token_len, error_r) < 0)
		return -1;
	start = frame_begin(buf, stream, CQL_OPCODE_AUTH_RESPONSE, 4 + (token ? token_len : 0));
	if (token == NULL) {
		put_u32(buf, (uint32_t)-1);
	} else {
		put_u32(buf, (uint32_t)token_len);
		put_mem(buf, token, token_len);
	}
	frame_end(buf, start);
	return 0;
}

int cql_build_auth_password(struct cql_buf *buf, int16_t stream, const char *user,
			    const char *password, const char **error_r)
{
	size_t user_len, password_len, start;
	uint64_t token_len;

	if (check_stream(stream, error_r) < 0)
		return -1;
	if (user == NULL || password == NULL) {
		*error_r = "CQL user name or password is missing";
		return -1;
	}
	user_len = strlen(user);
	password_len = strlen(password);
	token_len = 1 + (uint64_t)user_len + 1 + password_len;
	if (check_body_len(4 + token_len, error_r) < 0)
		return -1;
	start = frame_begin(buf, stream, CQL_OPCODE_AUTH_RESPONSE, 4 + token_len);
	put_u32(buf, (uint32_t)token_len);
	put_u8(buf, 0);
	put_mem(buf, user, user_len);
	put_u8(buf, 0);
	put_mem(buf, password, password_len);
	frame_end(buf, start);
	return 0;
}

/* Check a [long string] query and return its length. */
static int query_check(const char *query, size_t *len_r, const char **error_r)
{
	if (query == NULL) {
		*error_r = "CQL query is missing";
		return -1;
	}
	*len_r = strlen(query);
	if (*len_r > FRAME_BODY_MAX) {
		*error_r = "CQL query is longer than 2 GB";
		return -1;
	}
	return 0;
}

int cql_build_query(struct cql_buf *buf, int16_t stream, const char *query,
		    const struct cql_query_params *params, const char **error_r)
{
	uint64_t body_len;
	size_t query_len, start;

	if (check_stream(stream, error_r) < 0 || query_check(query, &query_len, error_r) < 0)
		return -1;
	body_len = 4 + (uint64_t)query_len;
	if (params_check(params, &body_len, error_r) < 0 || check_body_len(body_len, error_r) < 0)
		return -1;
	start = frame_begin(buf, stream, CQL_OPCODE_QUERY, body_len);
	put_u32(buf, (uint32_t)query_len);
	put_mem(buf, query, query_len);
	params_put(buf, params);
	frame_end(buf, start);
	return 0;
}

int cql_build_prepare(struct cql_buf *buf, int16_t stream, const char *query, const char **error_r)
{
	size_t query_len, start;

	if (check_stream(stream, error_r) < 0 || query_check(query, &query_len, error_r) < 0 ||
	    check_body_len(4 + (uint64_t)query_len, error_r) < 0)
		return -1;
	start = frame_begin(buf, stream, CQL_OPCODE_PREPARE, 4 + (uint64_t)query_len);
	put_u32(buf, (uint32_t)query_len);
	put_mem(buf, query, query_len);
	frame_end(buf, start);
	return 0;
}

int cql_build_execute(struct cql_buf *buf, int16_t stream, const unsigned char *id, size_t id_len,
		      const struct cql_query_params *params, const char **error_r)
{
	uint64_t body_len;
	size_t start;

	if (check_stream(stream, error_r) < 0)
		return -1;
	if (id == NULL || id_len == 0 || id_len > SHORT_MAX) {
		*error_r = "CQL prepared statement id is not 1 to 65535 bytes long";
		return -1;
	}
	body_len = 2 + (uint64_t)id_len;
	if (params_check(params, &body_len, error_r) < 0 || check_body_len(body_len, error_r) < 0)
		return -1;
	start = frame_begin(buf, stream, CQL_OPCODE_EXECUTE, body_len);
	put_u16(buf, (uint16_t)id_len);
	put_mem(buf, id, id_len);
	params_put(buf, params);
	frame_end(buf, start);
	return 0;
}

int cql_build_register(struct cql_buf *buf, int16_t stream, const char *const *event_types,
		       unsigned count, const char **error_r)
{
	uint64_t body_len = 2;
	size_t start;

	if (check_stream(stream, error_r) < 0)
		return -1;
	if (count > SHORT_MAX || (count > 0 && event_types == NULL)) {
		*error_r = "CQL REGISTER event type list is missing or longer than 65535";
		return -1;
	}
	for (unsigned i = 0; i < count; i++) {
		if (event_types[i] == NULL || strlen(event_types[i]) > SHORT_MAX) {
			*error_r = "CQL REGISTER event type is missing or longer than 65535 bytes";
			return -1;
		}
		body_len += 2 + strlen(event_types[i]);
	}
	start = frame_begin(buf, stream, CQL_OPCODE_REGISTER, body_len);
	put_u16(buf, (uint16_t)count);
	for (unsigned i = 0; i < count; i++)
		put_string(buf, event_types[i], strlen(event_types[i]));
	frame_end(buf, start);
	return 0;
}

/* ---- the frame header ---- */

static void header_decode(const unsigned char *p, struct cql_frame_header *hdr_r)
{
	hdr_r->version = p[0];
	hdr_r->flags = p[1];
	hdr_r->stream = (int16_t)get_be16(p + 2);
	hdr_r->opcode = p[4];
	hdr_r->length = get_be32(p + 5);
}

static const char *version_error(uint8_t version)
{
	if (version == CQL_VERSION_REQUEST)
		return "CQL frame is a request (version 0x04), not a response";
	if ((version & 0x80) != 0 && (version & CQL_VERSION_MASK) < 4)
		return "CQL server answered with an older protocol version than v4";
	if ((version & 0x80) != 0)
		return "CQL server answered with a newer protocol version than v4";
	return "CQL frame version byte is not 0x84 (not a protocol v4 response)";
}

int cql_frame_peek(const void *data, size_t len, size_t max_frame, struct cql_frame_header *hdr_r,
		   size_t *frame_len_r, const char **error_r)
{
	const unsigned char *p = data;
	struct cql_frame_header hdr;
	uint64_t frame_len;

	memset(hdr_r, 0, sizeof(*hdr_r));
	*frame_len_r = 0;
	if (len >= 1 && p[0] != CQL_VERSION_RESPONSE) {
		*error_r = version_error(p[0]);
		return -1;
	}
	if (len < CQL_FRAME_HEADER_LEN)
		return 0;

	header_decode(p, &hdr);
	if (hdr.length > FRAME_BODY_MAX) {
		*error_r = "CQL frame length is negative";
		return -1;
	}
	frame_len = CQL_FRAME_HEADER_LEN + (uint64_t)hdr.length;
	if (frame_len > max_frame) {
		*error_r = "CQL frame is longer than the maximum frame size";
		return -1;
	}
	*hdr_r = hdr;
	*frame_len_r = (size_t)frame_len;
	return len >= frame_len ? 1 : 0;
}

/* ---- the reader ---- */

struct parser {
	const unsigned char *pos, *end;
	/* What is being read, for the error sentence ("the Rows metadata"). */
	const char *section;
	/* What went wrong first; NULL while all is well. */
	const char *problem;
	char detail[24];
};

static void parser_init(struct parser *p, const unsigned char *data, size_t len)
{
	memset(p, 0, sizeof(*p));
	p->pos = data;
	p->end = data + len;
}

static int fail(struct parser *p, const char *problem)
{
	if (p->problem == NULL)
		p->problem = problem;
	/* Nothing more can be read once something failed. */
	p->pos = p->end;
	return -1;
}

static size_t parser_left(const struct parser *p)
{
	return (size_t)(p->end - p->pos);
}

static int read_raw(struct parser *p, size_t n, const unsigned char **data_r)
{
	if (p->problem != NULL || parser_left(p) < n)
		return fail(p, "frame ends early");
	*data_r = p->pos;
	p->pos += n;
	return 0;
}

static int read_byte(struct parser *p, uint8_t *value_r)
{
	const unsigned char *d;

	if (read_raw(p, 1, &d) < 0)
		return -1;
	*value_r = d[0];
	return 0;
}

static int read_short(struct parser *p, uint16_t *value_r)
{
	const unsigned char *d;

	if (read_raw(p, 2, &d) < 0)
		return -1;
	*value_r = get_be16(d);
	return 0;
}

static int read_int(struct parser *p, int32_t *value_r)
{
	const unsigned char *d;

	if (read_raw(p, 4, &d) < 0)
		return -1;
	*value_r = (int32_t)get_be32(d);
	return 0;
}

/* [int] that must not be negative (a count). */
static int read_count(struct parser *p, int32_t *value_r)
{
	if (read_int(p, value_r) < 0)
		return -1;
	if (*value_r < 0)
		return fail(p, "negative count");
	return 0;
}

static int read_string(struct parser *p, struct cql_string *str_r)
{
	const unsigned char *d;
	uint16_t n;

	if (read_short(p, &n) < 0 || read_raw(p, n, &d) < 0)
		return -1;
	str_r->data = (const char *)d;
	str_r->len = n;
	return 0;
}

/* [bytes]: any negative length is null, which we always call -1. */
static int read_bytes(struct parser *p, struct cql_bytes *bytes_r)
{
	const unsigned char *d;
	int32_t n;

	if (read_int(p, &n) < 0)
		return -1;
	if (n < 0) {
		bytes_r->data = NULL;
		bytes_r->len = -1;
		return 0;
	}
	if (read_raw(p, (size_t)n, &d) < 0)
		return -1;
	bytes_r->data = d;
	bytes_r->len = n;
	return 0;
}

static int read_short_bytes(struct parser *p, struct cql_bytes *bytes_r)
{
	const unsigned char *d;
	uint16_t n;

	if (read_short(p, &n) < 0 || read_raw(p, n, &d) < 0)
		return -1;
	bytes_r->data = d;
	bytes_r->len = n;
	return 0;
}

static int read_string_list(struct parser *p, struct cql_string_list *list_r)
{
	struct cql_string str;
	uint16_t n;

	if (read_short(p, &n) < 0)
		return -1;
	list_r->pos = p->pos;
	list_r->count = n;
	for (unsigned i = 0; i < n; i++) {
		if (read_string(p, &str) < 0)
			return -1;
	}
	list_r->end = p->pos;
	return 0;
}

static int read_string_multimap(struct parser *p, struct cql_string_multimap *map_r)
{
	struct cql_string key;
	struct cql_string_list values;
	uint16_t n;

	if (read_short(p, &n) < 0)
		return -1;
	map_r->pos = p->pos;
	map_r->count = n;
	for (unsigned i = 0; i < n; i++) {
		if (read_string(p, &key) < 0 || read_string_list(p, &values) < 0)
			return -1;
	}
	map_r->end = p->pos;
	return 0;
}

static int read_bytes_map(struct parser *p, struct cql_bytes_map *map_r)
{
	struct cql_string key;
	struct cql_bytes value;
	uint16_t n;

	if (read_short(p, &n) < 0)
		return -1;
	map_r->pos = p->pos;
	map_r->count = n;
	for (unsigned i = 0; i < n; i++) {
		if (read_string(p, &key) < 0 || read_bytes(p, &value) < 0)
			return -1;
	}
	map_r->end = p->pos;
	return 0;
}

/* A column type [option], nested types included (section 4.2.5.2). */
static int read_option(struct parser *p, unsigned depth, struct cql_type *type_r)
{
	const unsigned char *start = p->pos;
	struct cql_string str;
	struct cql_type child;
	uint16_t id, n;

	if (depth >= CQL_TYPE_DEPTH_MAX)
		return fail(p, "column types nested too deeply");
	if (read_short(p, &id) < 0)
		return -1;
	switch (id) {
	case CQL_TYPE_CUSTOM:
		if (read_string(p, &str) < 0)
			return -1;
		break;
	case CQL_TYPE_ASCII:
	case CQL_TYPE_BIGINT:
	case CQL_TYPE_BLOB:
	case CQL_TYPE_BOOLEAN:
	case CQL_TYPE_COUNTER:
	case CQL_TYPE_DECIMAL:
	case CQL_TYPE_DOUBLE:
	case CQL_TYPE_FLOAT:
	case CQL_TYPE_INT:
	case CQL_TYPE_TIMESTAMP:
	case CQL_TYPE_UUID:
	case CQL_TYPE_VARCHAR:
	case CQL_TYPE_VARINT:
	case CQL_TYPE_TIMEUUID:
	case CQL_TYPE_INET:
	case CQL_TYPE_DATE:
	case CQL_TYPE_TIME:
	case CQL_TYPE_SMALLINT:
	case CQL_TYPE_TINYINT:
		break;
	case CQL_TYPE_LIST:
	case CQL_TYPE_SET:
		if (read_option(p, depth + 1, &child) < 0)
			return -1;
		break;
	case CQL_TYPE_MAP:
		if (read_option(p, depth + 1, &child) < 0 || read_option(p, depth + 1, &child) < 0)
			return -1;
		break;
	case CQL_TYPE_UDT:
		if (read_string(p, &str) < 0 || read_string(p, &str) < 0 || read_short(p, &n) < 0)
			return -1;
		for (unsigned i = 0; i < n; i++) {
			if (read_string(p, &str) < 0 || read_option(p, depth + 1, &child) < 0)
				return -1;
		}
		break;
	case CQL_TYPE_TUPLE:
		if (read_short(p, &n) < 0)
			return -1;
		for (unsigned i = 0; i < n; i++) {
			if (read_option(p, depth + 1, &child) < 0)
				return -1;
		}
		break;
	default:
		snprintf(p->detail, sizeof(p->detail), " 0x%04x", id);
		return fail(p, "unknown column type id");
	}
	type_r->id = id;
	type_r->data = start;
	type_r->len = (size_t)(p->pos - start);
	return 0;
}

/* (<ksname><tablename>)?<name><type> */
static int read_column_spec(struct parser *p, const struct cql_metadata *metadata,
			    struct cql_column *column_r)
{
	if ((metadata->flags & CQL_METADATA_GLOBAL_TABLES_SPEC) != 0) {
		column_r->keyspace = metadata->keyspace;
		column_r->table = metadata->table;
	} else if (read_string(p, &column_r->keyspace) < 0 ||
		   read_string(p, &column_r->table) < 0) {
		return -1;
	}
	if (read_string(p, &column_r->name) < 0)
		return -1;
	return read_option(p, 0, &column_r->type);
}

/* Rows <metadata> (prepared = false) or the bind <metadata> of a Prepared
 * result (prepared = true). */
static int read_metadata(struct parser *p, bool prepared, struct cql_metadata *metadata_r)
{
	struct cql_column column;
	size_t min_spec_len;

	metadata_r->paging_state.data = NULL;
	metadata_r->paging_state.len = -1;
	if (read_int(p, &metadata_r->flags) < 0 || read_count(p, &metadata_r->column_count) < 0)
		return -1;
	if (prepared) {
		const unsigned char *indexes;

		if (read_count(p, &metadata_r->pk_count) < 0 ||
		    read_raw(p, (size_t)metadata_r->pk_count * 2, &indexes) < 0)
			return -1;
		metadata_r->pk_indexes = indexes;
		for (int32_t i = 0; i < metadata_r->pk_count; i++) {
			if (get_be16(indexes + 2 * i) >= metadata_r->column_count)
				return fail(p, "partition key index beyond the bind markers");
		}
		/* Only Global_tables_spec means anything here. */
		metadata_r->flags &= CQL_METADATA_GLOBAL_TABLES_SPEC;
	} else {
		if ((metadata_r->flags & CQL_METADATA_HAS_MORE_PAGES) != 0 &&
		    read_bytes(p, &metadata_r->paging_state) < 0)
			return -1;
		if ((metadata_r->flags & CQL_METADATA_NO_METADATA) != 0)
			return 0;
	}
	if ((metadata_r->flags & CQL_METADATA_GLOBAL_TABLES_SPEC) != 0) {
		if (read_string(p, &metadata_r->keyspace) < 0 ||
		    read_string(p, &metadata_r->table) < 0)
			return -1;
		min_spec_len = 2 + 2;
	} else {
		min_spec_len = 2 + 2 + 2 + 2;
	}
	if ((uint64_t)metadata_r->column_count * min_spec_len > parser_left(p))
		return fail(p, "frame ends early");
	metadata_r->specs = p->pos;
	for (int32_t i = 0; i < metadata_r->column_count; i++) {
		if (read_column_spec(p, metadata_r, &column) < 0)
			return -1;
	}
	metadata_r->specs_len = (size_t)(p->pos - metadata_r->specs);
	return 0;
}

static int read_rows(struct parser *p, struct cql_rows *rows_r)
{
	struct cql_bytes cell;
	uint64_t cells;

	p->section = "the Rows metadata";
	if (read_metadata(p, false, &rows_r->metadata) < 0)
		return -1;
	p->section = "the row count";
	if (read_count(p, &rows_r->row_count) < 0)
		return -1;
	p->section = "the row values";
	if (rows_r->row_count > 0 && rows_r->metadata.column_count == 0)
		return fail(p, "rows without columns");
	cells = (uint64_t)rows_r->row_count * (uint64_t)rows_r->metadata.column_count;
	if (cells > parser_left(p) / 4)
		return fail(p, "frame ends early");
	rows_r->content = p->pos;
	for (uint64_t i = 0; i < cells; i++) {
		if (read_bytes(p, &cell) < 0)
			return -1;
	}
	rows_r->content_len = (size_t)(p->pos - rows_r->content);
	return 0;
}

static int read_schema_change(struct parser *p, struct cql_schema_change *change_r)
{
	struct cql_string target;

	if (read_string(p, &change_r->change_type) < 0 || read_string(p, &change_r->target) < 0)
		return -1;
	target = change_r->target;
	if (cql_string_equals(target, "KEYSPACE"))
		return read_string(p, &change_r->keyspace);
	if (cql_string_equals(target, "TABLE") || cql_string_equals(target, "TYPE"))
		return read_string(p, &change_r->keyspace) < 0 ? -1
							       : read_string(p, &change_r->name);
	if (cql_string_equals(target, "FUNCTION") || cql_string_equals(target, "AGGREGATE")) {
		if (read_string(p, &change_r->keyspace) < 0 || read_string(p, &change_r->name) < 0)
			return -1;
		return read_string_list(p, &change_r->arg_types);
	}
	return fail(p, "unknown schema change target");
}

static int read_result(struct parser *p, struct cql_result *result_r)
{
	struct cql_prepared *prepared = &result_r->prepared;

	p->section = "the result kind";
	if (read_int(p, &result_r->kind) < 0)
		return -1;
	switch (result_r->kind) {
	case CQL_RESULT_VOID:
		return 0;
	case CQL_RESULT_ROWS:
		return read_rows(p, &result_r->rows);
	case CQL_RESULT_SET_KEYSPACE:
		p->section = "the keyspace name";
		return read_string(p, &result_r->keyspace);
	case CQL_RESULT_PREPARED:
		p->section = "the prepared statement id";
		if (read_short_bytes(p, &prepared->id) < 0)
			return -1;
		p->section = "the bind marker metadata";
		if (read_metadata(p, true, &prepared->metadata) < 0)
			return -1;
		p->section = "the result metadata";
		return read_metadata(p, false, &prepared->result_metadata);
	case CQL_RESULT_SCHEMA_CHANGE:
		p->section = "the schema change";
		return read_schema_change(p, &result_r->schema_change);
	default:
		snprintf(p->detail, sizeof(p->detail), " %d", (int)result_r->kind);
		return fail(p, "unknown kind");
	}
}

static int read_error(struct parser *p, struct cql_error *error_r)
{
	uint8_t data_present;

	p->section = "the error code and message";
	if (read_int(p, &error_r->code) < 0 || read_string(p, &error_r->message) < 0)
		return -1;
	p->section = "the error details";
	switch (error_r->code) {
	case CQL_ERROR_UNAVAILABLE:
		return read_short(p, &error_r->consistency) < 0 ||
				       read_int(p, &error_r->required) < 0 ||
				       read_int(p, &error_r->alive) < 0
			       ? -1
			       : 0;
	case CQL_ERROR_WRITE_TIMEOUT:
	case CQL_ERROR_WRITE_FAILURE:
		if (read_short(p, &error_r->consistency) < 0 ||
		    read_int(p, &error_r->received) < 0 || read_int(p, &error_r->block_for) < 0)
			return -1;
		if (error_r->code == CQL_ERROR_WRITE_FAILURE &&
		    read_int(p, &error_r->num_failures) < 0)
			return -1;
		return read_string(p, &error_r->write_type);
	case CQL_ERROR_READ_TIMEOUT:
	case CQL_ERROR_READ_FAILURE:
		if (read_short(p, &error_r->consistency) < 0 ||
		    read_int(p, &error_r->received) < 0 || read_int(p, &error_r->block_for) < 0)
			return -1;
		if (error_r->code == CQL_ERROR_READ_FAILURE &&
		    read_int(p, &error_r->num_failures) < 0)
			return -1;
		if (read_byte(p, &data_present) < 0)
			return -1;
		error_r->data_present = data_present != 0;
		return 0;
	case CQL_ERROR_FUNCTION_FAILURE:
		if (read_string(p, &error_r->keyspace) < 0 ||
		    read_string(p, &error_r->function) < 0)
			return -1;
		return read_string_list(p, &error_r->arg_types);
	case CQL_ERROR_ALREADY_EXISTS:
		if (read_string(p, &error_r->keyspace) < 0)
			return -1;
		return read_string(p, &error_r->table);
	case CQL_ERROR_UNPREPARED:
		return read_short_bytes(p, &error_r->unprepared_id);
	default:
		/* No details, or a code this version does not know: the
		 * message is all there is to say. */
		return 0;
	}
}

static int read_event(struct parser *p, struct cql_event *event_r)
{
	const unsigned char *address;
	uint8_t address_len;

	p->section = "the event";
	if (read_string(p, &event_r->type) < 0)
		return -1;
	if (cql_string_equals(event_r->type, "SCHEMA_CHANGE"))
		return read_schema_change(p, &event_r->schema_change);
	if (!cql_string_equals(event_r->type, "TOPOLOGY_CHANGE") &&
	    !cql_string_equals(event_r->type, "STATUS_CHANGE"))
		return fail(p, "unknown event type");
	if (read_string(p, &event_r->change) < 0 || read_byte(p, &address_len) < 0)
		return -1;
	if (address_len != 4 && address_len != 16)
		return fail(p, "address neither 4 nor 16 bytes long");
	if (read_raw(p, address_len, &address) < 0 || read_int(p, &event_r->port) < 0)
		return -1;
	event_r->address = address;
	event_r->address_len = address_len;
	return 0;
}

static int read_body(struct parser *p, struct cql_response *resp)
{
	switch (resp->header.opcode) {
	case CQL_OPCODE_ERROR:
		return read_error(p, &resp->error);
	case CQL_OPCODE_READY:
		return 0;
	case CQL_OPCODE_AUTHENTICATE:
		p->section = "the authenticator name";
		return read_string(p, &resp->authenticator);
	case CQL_OPCODE_SUPPORTED:
		p->section = "the supported options";
		return read_string_multimap(p, &resp->supported);
	case CQL_OPCODE_RESULT:
		return read_result(p, &resp->result);
	case CQL_OPCODE_EVENT:
		return read_event(p, &resp->event);
	case CQL_OPCODE_AUTH_CHALLENGE:
	case CQL_OPCODE_AUTH_SUCCESS:
		p->section = "the authentication token";
		return read_bytes(p, &resp->token);
	default:
		p->section = "the frame header";
		return fail(p, "opcode that is not a response");
	}
}

static int response_error(struct cql_response *resp, const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int response_error(struct cql_response *resp, const char **error_r, const char *fmt, ...)
{
	char text[sizeof(resp->error_text)];
	struct cql_frame_header header = resp->header;
	va_list args;

	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	/* Nothing of the frame may be trusted: hand back only the header. */
	memset(resp, 0, sizeof(*resp));
	resp->header = header;
	memcpy(resp->error_text, text, sizeof(text));
	*error_r = resp->error_text;
	return -1;
}

int cql_response_parse(const unsigned char *frame, size_t frame_len, struct cql_response *resp_r,
		       const char **error_r)
{
	const unsigned char *tracing_id;
	struct parser p;

	memset(resp_r, 0, sizeof(*resp_r));
	if (frame_len < CQL_FRAME_HEADER_LEN)
		return response_error(resp_r, error_r,
				      "CQL frame is %zu bytes long, shorter than its 9-byte header",
				      frame_len);
	header_decode(frame, &resp_r->header);
	if (resp_r->header.version != CQL_VERSION_RESPONSE)
		return response_error(resp_r, error_r, "%s", version_error(resp_r->header.version));
	if (resp_r->header.length != frame_len - CQL_FRAME_HEADER_LEN)
		return response_error(resp_r, error_r,
				      "CQL frame header announces a %u-byte body but %zu bytes "
				      "follow it",
				      resp_r->header.length, frame_len - CQL_FRAME_HEADER_LEN);
	if ((resp_r->header.flags & CQL_FLAG_COMPRESSION) != 0)
		return response_error(resp_r, error_r,
				      "CQL %s frame on stream %d is compressed, but compression "
				      "was never negotiated",
				      cql_opcode_name(resp_r->header.opcode),
				      resp_r->header.stream);

	parser_init(&p, frame + CQL_FRAME_HEADER_LEN, frame_len - CQL_FRAME_HEADER_LEN);
	if ((resp_r->header.flags & CQL_FLAG_TRACING) != 0) {
		p.section = "the tracing id";
		if (read_raw(&p, CQL_UUID_LEN, &tracing_id) == 0)
			resp_r->tracing_id = tracing_id;
	}
	if ((resp_r->header.flags & CQL_FLAG_WARNING) != 0 && p.problem == NULL) {
		p.section = "the warnings";
		(void)read_string_list(&p, &resp_r->warnings);
	}
	if ((resp_r->header.flags & CQL_FLAG_CUSTOM_PAYLOAD) != 0 && p.problem == NULL) {
		p.section = "the custom payload";
		(void)read_bytes_map(&p, &resp_r->custom_payload);
	}
	if (p.problem == NULL)
		(void)read_body(&p, resp_r);
	if (p.problem != NULL) {
		return response_error(resp_r, error_r,
				      "malformed CQL %s frame on stream %d: %s%s in %s",
				      cql_opcode_name(resp_r->header.opcode), resp_r->header.stream,
				      p.problem, p.detail, p.section);
	}
	*error_r = NULL;
	return 0;
}

/* ---- walking what was parsed ---- */

bool cql_string_equals(struct cql_string s, const char *text)
{
	size_t len = strlen(text);

	return s.len == len && (len == 0 || memcmp(s.data, text, len) == 0);
}

bool cql_string_list_next(struct cql_string_list *list, struct cql_string *str_r)
{
	struct parser p;

	if (list->count == 0 || list->pos == NULL)
		return false;
	parser_init(&p, list->pos, (size_t)(list->end - list->pos));
	if (read_string(&p, str_r) < 0) {
		list->count = 0;
		return false;
	}
	list->pos = p.pos;
	list->count--;
	return true;
}

bool cql_string_multimap_next(struct cql_string_multimap *map, struct cql_string *key_r,
			      struct cql_string_list *values_r)
{
	struct parser p;

	if (map->count == 0 || map->pos == NULL)
		return false;
	parser_init(&p, map->pos, (size_t)(map->end - map->pos));
	if (read_string(&p, key_r) < 0 || read_string_list(&p, values_r) < 0) {
		map->count = 0;
		return false;
	}
	map->pos = p.pos;
	map->count--;
	return true;
}

bool cql_bytes_map_next(struct cql_bytes_map *map, struct cql_string *key_r,
			struct cql_bytes *value_r)
{
	struct parser p;

	if (map->count == 0 || map->pos == NULL)
		return false;
	parser_init(&p, map->pos, (size_t)(map->end - map->pos));
	if (read_string(&p, key_r) < 0 || read_bytes(&p, value_r) < 0) {
		map->count = 0;
		return false;
	}
	map->pos = p.pos;
	map->count--;
	return true;
}

int cql_string_multimap_get(const struct cql_string_multimap *map, const char *key,
			    struct cql_string_list *values_r)
{
	struct cql_string_multimap walk = *map;
	struct cql_string name;
	struct cql_string_list values;

	while (cql_string_multimap_next(&walk, &name, &values)) {
		if (cql_string_equals(name, key)) {
			*values_r = values;
			return 1;
		}
	}
	memset(values_r, 0, sizeof(*values_r));
	return 0;
}

void cql_columns_cursor_init(struct cql_columns_cursor *cursor_r,
			     const struct cql_metadata *metadata)
{
	cursor_r->metadata = metadata;
	cursor_r->pos = metadata->specs;
	cursor_r->end = metadata->specs == NULL ? NULL : metadata->specs + metadata->specs_len;
	cursor_r->left = metadata->specs == NULL ? 0 : metadata->column_count;
}

bool cql_columns_next(struct cql_columns_cursor *cursor, struct cql_column *column_r)
{
	struct parser p;

	if (cursor->left <= 0)
		return false;
	parser_init(&p, cursor->pos, (size_t)(cursor->end - cursor->pos));
	if (read_column_spec(&p, cursor->metadata, column_r) < 0) {
		cursor->left = 0;
		return false;
	}
	cursor->pos = p.pos;
	cursor->left--;
	return true;
}

int cql_metadata_pk_index(const struct cql_metadata *metadata, unsigned i)
{
	if (metadata->pk_indexes == NULL || i >= (unsigned)metadata->pk_count)
		return -1;
	return get_be16(metadata->pk_indexes + 2 * (size_t)i);
}

void cql_rows_cursor_init(struct cql_rows_cursor *cursor_r, const struct cql_rows *rows)
{
	cursor_r->rows = rows;
	cursor_r->pos = rows->content;
	cursor_r->end = rows->content == NULL ? NULL : rows->content + rows->content_len;
	cursor_r->rows_left = rows->content == NULL ? 0 : rows->row_count;
}

bool cql_rows_next(struct cql_rows_cursor *cursor, struct cql_value *cells_r, unsigned cells_count)
{
	const struct cql_metadata *metadata = &cursor->rows->metadata;
	struct parser cells, specs;
	struct cql_column column;
	struct cql_bytes cell;
	bool typed = metadata->specs != NULL;

	if (cursor->rows_left <= 0)
		return false;
	parser_init(&cells, cursor->pos, (size_t)(cursor->end - cursor->pos));
	if (typed)
		parser_init(&specs, metadata->specs, metadata->specs_len);
	for (int32_t i = 0; i < metadata->column_count; i++) {
		if (read_bytes(&cells, &cell) < 0) {
			cursor->rows_left = 0;
			return false;
		}
		if ((uint32_t)i >= cells_count)
			continue;
		cells_r[i].data = cell.data;
		cells_r[i].len = cell.len;
		cells_r[i].type = CQL_TYPE_UNKNOWN;
		if (typed && read_column_spec(&specs, metadata, &column) == 0)
			cells_r[i].type = column.type.id;
	}
	for (unsigned i = (unsigned)metadata->column_count; i < cells_count; i++) {
		cells_r[i].data = NULL;
		cells_r[i].len = -1;
		cells_r[i].type = CQL_TYPE_UNKNOWN;
	}
	cursor->pos = cells.pos;
	cursor->rows_left--;
	return true;
}

int cql_type_child(const struct cql_type *type, unsigned index, struct cql_string *name_r,
		   struct cql_type *child_r)
{
	struct cql_string name = {"", 0}, skip;
	struct cql_type sibling;
	struct parser p;
	uint16_t id, n;
	unsigned count;

	if (type->data == NULL)
		return 0;
	parser_init(&p, type->data, type->len);
	if (read_short(&p, &id) < 0)
		return 0;
	switch (id) {
	case CQL_TYPE_LIST:
	case CQL_TYPE_SET:
		count = 1;
		break;
	case CQL_TYPE_MAP:
		count = 2;
		break;
	case CQL_TYPE_TUPLE:
		if (read_short(&p, &n) < 0)
			return 0;
		count = n;
		break;
	case CQL_TYPE_UDT:
		if (read_string(&p, &skip) < 0 || read_string(&p, &skip) < 0 ||
		    read_short(&p, &n) < 0)
			return 0;
		count = n;
		break;
	default:
		return 0;
	}
	if (index >= count)
		return 0;
	for (unsigned i = 0; i <= index; i++) {
		if (id == CQL_TYPE_UDT && read_string(&p, &name) < 0)
			return 0;
		if (read_option(&p, 0, &sibling) < 0)
			return 0;
	}
	*child_r = sibling;
	if (name_r != NULL)
		*name_r = id == CQL_TYPE_UDT ? name : (struct cql_string){"", 0};
	return 1;
}

const char *cql_type_name(uint16_t id)
{
	switch (id) {
	case CQL_TYPE_CUSTOM:
		return "custom";
	case CQL_TYPE_ASCII:
		return "ascii";
	case CQL_TYPE_BIGINT:
		return "bigint";
	case CQL_TYPE_BLOB:
		return "blob";
	case CQL_TYPE_BOOLEAN:
		return "boolean";
	case CQL_TYPE_COUNTER:
		return "counter";
	case CQL_TYPE_DECIMAL:
		return "decimal";
	case CQL_TYPE_DOUBLE:
		return "double";
	case CQL_TYPE_FLOAT:
		return "float";
	case CQL_TYPE_INT:
		return "int";
	case CQL_TYPE_TIMESTAMP:
		return "timestamp";
	case CQL_TYPE_UUID:
		return "uuid";
	case CQL_TYPE_VARCHAR:
		return "varchar";
	case CQL_TYPE_VARINT:
		return "varint";
	case CQL_TYPE_TIMEUUID:
		return "timeuuid";
	case CQL_TYPE_INET:
		return "inet";
	case CQL_TYPE_DATE:
		return "date";
	case CQL_TYPE_TIME:
		return "time";
	case CQL_TYPE_SMALLINT:
		return "smallint";
	case CQL_TYPE_TINYINT:
		return "tinyint";
	case CQL_TYPE_LIST:
		return "list";
	case CQL_TYPE_MAP:
		return "map";
	case CQL_TYPE_SET:
		return "set";
	case CQL_TYPE_UDT:
		return "udt";
	case CQL_TYPE_TUPLE:
		return "tuple";
	default:
		return "unknown";
	}
}

/* ---- decoding values ---- */

/* The column's type is one of a and b (or not known). */
static bool type_fits(uint16_t type, uint16_t a, uint16_t b)
{
	return type == CQL_TYPE_UNKNOWN || type == a || type == b;
}

/* 1 if the value has exactly want bytes, 0 if NULL or empty, else -1. */
static int value_fixed(const struct cql_value *value, int32_t want, const char *wrong_length,
		       const char **error_r)
{
	if (value->len <= 0 || value->data == NULL)
		return 0;
	if (value->len != want) {
		*error_r = wrong_length;
		return -1;
	}
	return 1;
}

int cql_value_int(const struct cql_value *value, int32_t *int_r, const char **error_r)
{
	int ret;

	*int_r = 0;
	if (!type_fits(value->type, CQL_TYPE_INT, CQL_TYPE_INT)) {
		*error_r = "CQL column is not of type int";
		return -1;
	}
	ret = value_fixed(value, 4, "CQL int value is not 4 bytes long", error_r);
	if (ret > 0)
		*int_r = (int32_t)get_be32(value->data);
	return ret;
}

int cql_value_bigint(const struct cql_value *value, int64_t *bigint_r, const char **error_r)
{
	int ret;

	*bigint_r = 0;
	if (!type_fits(value->type, CQL_TYPE_BIGINT, CQL_TYPE_COUNTER)) {
		*error_r = "CQL column is not of type bigint or counter";
		return -1;
	}
	ret = value_fixed(value, 8, "CQL bigint value is not 8 bytes long", error_r);
	if (ret > 0)
		*bigint_r = (int64_t)get_be64(value->data);
	return ret;
}

int cql_value_boolean(const struct cql_value *value, bool *boolean_r, const char **error_r)
{
	int ret;

	*boolean_r = false;
	if (!type_fits(value->type, CQL_TYPE_BOOLEAN, CQL_TYPE_BOOLEAN)) {
		*error_r = "CQL column is not of type boolean";
		return -1;
	}
	ret = value_fixed(value, 1, "CQL boolean value is not 1 byte long", error_r);
	if (ret > 0)
		*boolean_r = value->data[0] != 0;
	return ret;
}

int cql_value_text(const struct cql_value *value, struct cql_string *text_r, const char **error_r)
{
	text_r->data = "";
	text_r->len = 0;
	if (!type_fits(value->type, CQL_TYPE_VARCHAR, CQL_TYPE_ASCII)) {
		*error_r = "CQL column is not of type varchar, text or ascii";
		return -1;
	}
	if (value->len < 0)
		return 0;
	if (value->len == 0)
		return 1;
	text_r->data = (const char *)value->data;
	text_r->len = (size_t)value->len;
	return 1;
}

int cql_value_timestamp(const struct cql_value *value, int64_t *msecs_r, const char **error_r)
{
	int ret;

	*msecs_r = 0;
	if (!type_fits(value->type, CQL_TYPE_TIMESTAMP, CQL_TYPE_TIMESTAMP)) {
		*error_r = "CQL column is not of type timestamp";
		return -1;
	}
	ret = value_fixed(value, 8, "CQL timestamp value is not 8 bytes long", error_r);
	if (ret > 0)
		*msecs_r = (int64_t)get_be64(value->data);
	return ret;
}

int cql_value_uuid(const struct cql_value *value, unsigned char uuid_r[CQL_UUID_LEN],
		   const char **error_r)
{
	int ret;

	memset(uuid_r, 0, CQL_UUID_LEN);
	if (!type_fits(value->type, CQL_TYPE_UUID, CQL_TYPE_TIMEUUID)) {
		*error_r = "CQL column is not of type uuid or timeuuid";
		return -1;
	}
	ret = value_fixed(value, CQL_UUID_LEN, "CQL uuid value is not 16 bytes long", error_r);
	if (ret > 0)
		memcpy(uuid_r, value->data, CQL_UUID_LEN);
	return ret;
}

/* ---- names and sentences ---- */

static const char *const consistency_names[] = {
	[CQL_CONSISTENCY_ANY] = "ANY",
	[CQL_CONSISTENCY_ONE] = "ONE",
	[CQL_CONSISTENCY_TWO] = "TWO",
	[CQL_CONSISTENCY_THREE] = "THREE",
	[CQL_CONSISTENCY_QUORUM] = "QUORUM",
	[CQL_CONSISTENCY_ALL] = "ALL",
	[CQL_CONSISTENCY_LOCAL_QUORUM] = "LOCAL_QUORUM",
	[CQL_CONSISTENCY_EACH_QUORUM] = "EACH_QUORUM",
	[CQL_CONSISTENCY_SERIAL] = "SERIAL",
	[CQL_CONSISTENCY_LOCAL_SERIAL] = "LOCAL_SERIAL",
	[CQL_CONSISTENCY_LOCAL_ONE] = "LOCAL_ONE",
};

#define CONSISTENCY_COUNT (sizeof(consistency_names) / sizeof(consistency_names[0]))

const char *cql_consistency_name(unsigned consistency)
{
	return consistency < CONSISTENCY_COUNT ? consistency_names[consistency] : NULL;
}

int cql_consistency_parse(const char *name, enum cql_consistency *consistency_r,
			  const char **error_r)
{
	for (unsigned i = 0; i < CONSISTENCY_COUNT; i++) {
		if (name != NULL && strcasecmp(name, consistency_names[i]) == 0) {
			*consistency_r = (enum cql_consistency)i;
			return 0;
		}
	}
	*error_r = "unknown CQL consistency level (expected ANY, ONE, TWO, THREE, QUORUM, ALL, "
		   "LOCAL_QUORUM, EACH_QUORUM, SERIAL, LOCAL_SERIAL or LOCAL_ONE)";
	return -1;
}

const char *cql_opcode_name(unsigned opcode)
{
	switch (opcode) {
	case CQL_OPCODE_ERROR:
		return "ERROR";
	case CQL_OPCODE_STARTUP:
		return "STARTUP";
	case CQL_OPCODE_READY:
		return "READY";
	case CQL_OPCODE_AUTHENTICATE:
		return "AUTHENTICATE";
	case CQL_OPCODE_OPTIONS:
		return "OPTIONS";
	case CQL_OPCODE_SUPPORTED:
		return "SUPPORTED";
	case CQL_OPCODE_QUERY:
		return "QUERY";
	case CQL_OPCODE_RESULT:
		return "RESULT";
	case CQL_OPCODE_PREPARE:
		return "PREPARE";
	case CQL_OPCODE_EXECUTE:
		return "EXECUTE";
	case CQL_OPCODE_REGISTER:
		return "REGISTER";
	case CQL_OPCODE_EVENT:
		return "EVENT";
	case CQL_OPCODE_BATCH:
		return "BATCH";
	case CQL_OPCODE_AUTH_CHALLENGE:
		return "AUTH_CHALLENGE";
	case CQL_OPCODE_AUTH_RESPONSE:
		return "AUTH_RESPONSE";
	case CQL_OPCODE_AUTH_SUCCESS:
		return "AUTH_SUCCESS";
	default:
		return "UNKNOWN";
	}
}

/* A sentence being written into a caller's fixed buffer. */
struct sentence {
	char *buf;
	size_t size, len;
};

static void sentence_printf(struct sentence *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sentence_printf(struct sentence *s, const char *fmt, ...)
{
	va_list args;
	int n;

	if (s->len + 1 >= s->size)
		return;
	va_start(args, fmt);
	n = vsnprintf(s->buf + s->len, s->size - s->len, fmt, args);
	va_end(args);
	if (n < 0)
		return;
	s->len += (size_t)n;
	if (s->len >= s->size)
		s->len = s->size - 1;
}

static void sentence_string(struct sentence *s, struct cql_string str)
{
	/* A [string] is at most 65535 bytes, so the cast is exact. */
	sentence_printf(s, "%.*s", (int)str.len, str.data == NULL ? "" : str.data);
}

static void sentence_consistency(struct sentence *s, uint16_t consistency)
{
	const char *name = cql_consistency_name(consistency);

	if (name != NULL)
		sentence_printf(s, "%s", name);
	else
		sentence_printf(s, "unknown consistency 0x%04x", consistency);
}

/* "prefix: message", or just the prefix when the server sent no text. */
static void sentence_message(struct sentence *s, const char *prefix, const struct cql_error *error)
{
	sentence_printf(s, "%s", prefix);
	if (error->message.len > 0) {
		sentence_printf(s, ": ");
		sentence_string(s, error->message);
	}
}

static void sentence_error(struct sentence *s, const struct cql_error *error)
{
	struct cql_string_list args = error->arg_types;
	struct cql_string arg;

	switch (error->code) {
	case CQL_ERROR_SERVER:
		sentence_message(s, "server error", error);
		break;
	case CQL_ERROR_PROTOCOL:
		sentence_message(s, "protocol error", error);
		break;
	case CQL_ERROR_AUTHENTICATION:
		sentence_message(s, "authentication failed", error);
		break;
	case CQL_ERROR_UNAVAILABLE:
		sentence_printf(s, "unavailable at ");
		sentence_consistency(s, error->consistency);
		sentence_printf(s, ": %d replicas required, %d alive", (int)error->required,
				(int)error->alive);
		break;
	case CQL_ERROR_OVERLOADED:
		sentence_message(s, "coordinator overloaded", error);
		break;
	case CQL_ERROR_IS_BOOTSTRAPPING:
		sentence_message(s, "coordinator is bootstrapping", error);
		break;
	case CQL_ERROR_TRUNCATE:
		sentence_message(s, "truncate failed", error);
		break;
	case CQL_ERROR_WRITE_TIMEOUT:
	case CQL_ERROR_WRITE_FAILURE:
		sentence_printf(s, "write %s at ",
				error->code == CQL_ERROR_WRITE_TIMEOUT ? "timeout" : "failure");
		sentence_consistency(s, error->consistency);
		sentence_printf(s, " (%d of %d replicas acknowledged, ", (int)error->received,
				(int)error->block_for);
		if (error->code == CQL_ERROR_WRITE_FAILURE)
			sentence_printf(s, "%d failed, ", (int)error->num_failures);
		sentence_printf(s, "type ");
		sentence_string(s, error->write_type);
		sentence_printf(s, ")");
		break;
	case CQL_ERROR_READ_TIMEOUT:
	case CQL_ERROR_READ_FAILURE:
		sentence_printf(s, "read %s at ",
				error->code == CQL_ERROR_READ_TIMEOUT ? "timeout" : "failure");
		sentence_consistency(s, error->consistency);
		sentence_printf(s, " (%d of %d replicas responded, ", (int)error->received,
				(int)error->block_for);
		if (error->code == CQL_ERROR_READ_FAILURE)
			sentence_printf(s, "%d failed, ", (int)error->num_failures);
		sentence_printf(s, "%s)",
				error->data_present ? "data received"
						    : "no data from the replica asked for it");
		break;
	case CQL_ERROR_FUNCTION_FAILURE:
		sentence_printf(s, "function failure in ");
		sentence_string(s, error->keyspace);
		sentence_printf(s, ".");
		sentence_string(s, error->function);
		sentence_printf(s, "(");
		for (bool first = true; cql_string_list_next(&args, &arg); first = false) {
			if (!first)
				sentence_printf(s, ", ");
			sentence_string(s, arg);
		}
		sentence_printf(s, ")");
		if (error->message.len > 0) {
			sentence_printf(s, ": ");
			sentence_string(s, error->message);
		}
		break;
	case CQL_ERROR_SYNTAX:
		sentence_message(s, "syntax error", error);
		break;
	case CQL_ERROR_UNAUTHORIZED:
		sentence_message(s, "unauthorized", error);
		break;
	case CQL_ERROR_INVALID:
		sentence_message(s, "invalid query", error);
		break;
	case CQL_ERROR_CONFIG:
		sentence_message(s, "configuration error", error);
		break;
	case CQL_ERROR_ALREADY_EXISTS:
		if (error->table.len > 0) {
			sentence_printf(s, "table ");
			sentence_string(s, error->keyspace);
			sentence_printf(s, ".");
			sentence_string(s, error->table);
		} else {
			sentence_printf(s, "keyspace ");
			sentence_string(s, error->keyspace);
		}
		sentence_printf(s, " already exists");
		break;
	case CQL_ERROR_UNPREPARED:
		sentence_printf(s, "unprepared statement (id ");
		for (int32_t i = 0; i < error->unprepared_id.len; i++)
			sentence_printf(s, "%02x", error->unprepared_id.data[i]);
		sentence_printf(s, "): the node no longer knows it, prepare it again");
		break;
	default:
		sentence_printf(s, "error 0x%04x", (unsigned)error->code);
		if (error->message.len > 0) {
			sentence_printf(s, ": ");
			sentence_string(s, error->message);
		}
		break;
	}
}

const char *cql_error_sentence(const struct cql_response *resp, char *buf, size_t size)
{
	struct sentence s = {buf, size, 0};

	if (size == 0)
		return buf;
	buf[0] = '\0';
	if (resp->header.opcode != CQL_OPCODE_ERROR)
		sentence_printf(&s, "not an ERROR response (%s)",
				cql_opcode_name(resp->header.opcode));
	else
		sentence_error(&s, &resp->error);
	/* One line in the log, whatever the server put in its message. */
	for (size_t i = 0; i < s.len; i++) {
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7F)
			buf[i] = ' ';
	}
	return buf;
}
