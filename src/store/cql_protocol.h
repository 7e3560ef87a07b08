/* cql_protocol.h - the CQL native protocol, version 4, as a client speaks it
 * to Cassandra (or ScyllaDB): request frames built into a growable buffer,
 * response frames parsed from bytes.
 *
 * Written from apache/cassandra doc/native_protocol_v4.spec (section numbers
 * below refer to it).  This module is pure code: no sockets, no event loop,
 * no allocation while parsing, so that it can be unit tested and fuzzed.
 * The I/O layer above it owns the connections and does this:
 *
 *   sending     pick a free stream id (0..32767) for the request, append the
 *               frame to the connection's struct cql_buf with one of the
 *               cql_build_*() calls, write the buffer out.
 *   receiving   append what the socket gave to an input buffer; while
 *               cql_frame_peek() says a whole frame is there, hand those
 *               frame_len bytes to cql_response_parse(), dispatch on the
 *               response's stream id, then drop the bytes.
 *
 * A parsed response is a set of views (pointer and length) into the frame:
 * nothing is copied, so the frame's bytes must stay put for as long as the
 * response is looked at.  A caller that keeps something past that (a
 * prepared id, a paging state) copies it.  cql_response_parse() checks every
 * length and count against the frame before it returns 0, so walking the
 * rows, columns and string lists afterwards cannot fail or read outside the
 * frame.
 *
 * Failing calls return -1 and set *error_r to a sentence.  Builders leave
 * the buffer exactly as it was when they fail; running out of memory while
 * growing it aborts, as everywhere else in mailcluster (util/strbuf.c).
 */
#ifndef CQL_PROTOCOL_H
#define CQL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CQL_FRAME_HEADER_LEN 9
#define CQL_VERSION_REQUEST 0x04
#define CQL_VERSION_RESPONSE 0x84
/* The largest frame (header included) worth accepting: the protocol caps a
 * body at 256 MB (section 2.5).  cql_frame_peek() takes the limit as an
 * argument so that a caller can configure a lower one. */
#define CQL_MAX_FRAME_DEFAULT (256 * 1024 * 1024)
#define CQL_UUID_LEN 16
/* How deeply column types may nest (list<frozen<map<text, tuple<...>>>>).
 * Real schemas stay far below; the limit keeps a hostile frame from
 * recursing the parser off its stack. */
#define CQL_TYPE_DEPTH_MAX 32

/* Frame header flags (section 2.2). */
enum cql_frame_flag {
	CQL_FLAG_COMPRESSION = 0x01,
	CQL_FLAG_TRACING = 0x02,
	CQL_FLAG_CUSTOM_PAYLOAD = 0x04,
	CQL_FLAG_WARNING = 0x08,
};

/* Section 2.4. */
enum cql_opcode {
	CQL_OPCODE_ERROR = 0x00,
	CQL_OPCODE_STARTUP = 0x01,
	CQL_OPCODE_READY = 0x02,
	CQL_OPCODE_AUTHENTICATE = 0x03,
	CQL_OPCODE_OPTIONS = 0x05,
	CQL_OPCODE_SUPPORTED = 0x06,
	CQL_OPCODE_QUERY = 0x07,
	CQL_OPCODE_RESULT = 0x08,
	CQL_OPCODE_PREPARE = 0x09,
	CQL_OPCODE_EXECUTE = 0x0A,
	CQL_OPCODE_REGISTER = 0x0B,
	CQL_OPCODE_EVENT = 0x0C,
	CQL_OPCODE_BATCH = 0x0D,
	CQL_OPCODE_AUTH_CHALLENGE = 0x0E,
	CQL_OPCODE_AUTH_RESPONSE = 0x0F,
	CQL_OPCODE_AUTH_SUCCESS = 0x10,
};

/* [consistency], section 3. */
enum cql_consistency {
	CQL_CONSISTENCY_ANY = 0x0000,
	CQL_CONSISTENCY_ONE = 0x0001,
	CQL_CONSISTENCY_TWO = 0x0002,
	CQL_CONSISTENCY_THREE = 0x0003,
	CQL_CONSISTENCY_QUORUM = 0x0004,
	CQL_CONSISTENCY_ALL = 0x0005,
	CQL_CONSISTENCY_LOCAL_QUORUM = 0x0006,
	CQL_CONSISTENCY_EACH_QUORUM = 0x0007,
	CQL_CONSISTENCY_SERIAL = 0x0008,
	CQL_CONSISTENCY_LOCAL_SERIAL = 0x0009,
	CQL_CONSISTENCY_LOCAL_ONE = 0x000A,
};

/* Error codes, section 9. */
enum cql_error_code {
	CQL_ERROR_SERVER = 0x0000,
	CQL_ERROR_PROTOCOL = 0x000A,
	CQL_ERROR_AUTHENTICATION = 0x0100,
	CQL_ERROR_UNAVAILABLE = 0x1000,
	CQL_ERROR_OVERLOADED = 0x1001,
	CQL_ERROR_IS_BOOTSTRAPPING = 0x1002,
	CQL_ERROR_TRUNCATE = 0x1003,
	CQL_ERROR_WRITE_TIMEOUT = 0x1100,
	CQL_ERROR_READ_TIMEOUT = 0x1200,
	CQL_ERROR_READ_FAILURE = 0x1300,
	CQL_ERROR_FUNCTION_FAILURE = 0x1400,
	CQL_ERROR_WRITE_FAILURE = 0x1500,
	CQL_ERROR_SYNTAX = 0x2000,
	CQL_ERROR_UNAUTHORIZED = 0x2100,
	CQL_ERROR_INVALID = 0x2200,
	CQL_ERROR_CONFIG = 0x2300,
	CQL_ERROR_ALREADY_EXISTS = 0x2400,
	CQL_ERROR_UNPREPARED = 0x2500,
};

/* RESULT kinds, section 4.2.5. */
enum cql_result_kind {
	CQL_RESULT_VOID = 0x0001,
	CQL_RESULT_ROWS = 0x0002,
	CQL_RESULT_SET_KEYSPACE = 0x0003,
	CQL_RESULT_PREPARED = 0x0004,
	CQL_RESULT_SCHEMA_CHANGE = 0x0005,
};

/* Rows metadata flags, section 4.2.5.2. */
enum cql_metadata_flag {
	CQL_METADATA_GLOBAL_TABLES_SPEC = 0x0001,
	CQL_METADATA_HAS_MORE_PAGES = 0x0002,
	CQL_METADATA_NO_METADATA = 0x0004,
};

/* Column type option ids, section 4.2.5.2. */
enum cql_type_id {
	CQL_TYPE_CUSTOM = 0x0000,
	CQL_TYPE_ASCII = 0x0001,
	CQL_TYPE_BIGINT = 0x0002,
	CQL_TYPE_BLOB = 0x0003,
	CQL_TYPE_BOOLEAN = 0x0004,
	CQL_TYPE_COUNTER = 0x0005,
	CQL_TYPE_DECIMAL = 0x0006,
	CQL_TYPE_DOUBLE = 0x0007,
	CQL_TYPE_FLOAT = 0x0008,
	CQL_TYPE_INT = 0x0009,
	CQL_TYPE_TIMESTAMP = 0x000B,
	CQL_TYPE_UUID = 0x000C,
	CQL_TYPE_VARCHAR = 0x000D,
	CQL_TYPE_VARINT = 0x000E,
	CQL_TYPE_TIMEUUID = 0x000F,
	CQL_TYPE_INET = 0x0010,
	CQL_TYPE_DATE = 0x0011,
	CQL_TYPE_TIME = 0x0012,
	CQL_TYPE_SMALLINT = 0x0013,
	CQL_TYPE_TINYINT = 0x0014,
	CQL_TYPE_LIST = 0x0020,
	CQL_TYPE_MAP = 0x0021,
	CQL_TYPE_SET = 0x0022,
	CQL_TYPE_UDT = 0x0030,
	CQL_TYPE_TUPLE = 0x0031,
	/* Not on the wire: a value whose column type was not sent
	 * (No_metadata).  The value decoders then check only the length. */
	CQL_TYPE_UNKNOWN = 0xFFFF,
};

/* ---- building requests ---- */

/* A growable byte buffer that request frames are appended to.  Zero it to
 * start; frames are appended back to back, so several requests can be
 * built before one write.  Reset with len = 0 to reuse the memory. */
struct cql_buf {
	unsigned char *data;
	size_t len, alloc;
};

/* Frees the memory and zeroes the buffer. */
void cql_buf_free(struct cql_buf *buf);

/* Bound values, each appended as a [value] (an [int] length, then that
 * many bytes; length -1 is NULL, -2 is "not set").  Build them into a
 * scratch buffer and pass it as cql_query_params.values.  The integers
 * are big-endian two's complement (section 6); a boolean is one byte 0 or
 * 1; a timestamp is milliseconds since the Unix epoch. */
void cql_buf_put_int(struct cql_buf *buf, int32_t value);
void cql_buf_put_bigint(struct cql_buf *buf, int64_t value);
void cql_buf_put_boolean(struct cql_buf *buf, bool value);
void cql_buf_put_timestamp(struct cql_buf *buf, int64_t msecs);
void cql_buf_put_uuid(struct cql_buf *buf, const unsigned char uuid[CQL_UUID_LEN]);
void cql_buf_put_null(struct cql_buf *buf);
void cql_buf_put_unset(struct cql_buf *buf);
/* varchar/text (NUL-terminated; the NUL is not sent) and blob.  Fail only
 * if the value is longer than a [value] can say (2 GB). */
int cql_buf_put_text(struct cql_buf *buf, const char *text, const char **error_r);
int cql_buf_put_blob(struct cql_buf *buf, const void *data, size_t len, const char **error_r);

/* <query_parameters> of QUERY and EXECUTE (section 4.1.4).  Zero the struct
 * and set what is wanted; note that a zero consistency is ANY, so always
 * set consistency. */
struct cql_query_params {
	enum cql_consistency consistency;
	/* value_count [value]s back to back, as cql_buf_put_*() append them.
	 * value_count 0 sends no values (and values must be empty).  The
	 * builder checks that the block holds exactly value_count values. */
	const unsigned char *values;
	size_t values_len;
	unsigned value_count;
	/* Ask for Rows results without column specs (No_metadata): for an
	 * EXECUTE whose result metadata came with the Prepared result. */
	bool skip_metadata;
	/* > 0: ask for pages of at most this many rows (section 8). */
	int32_t page_size;
	/* Non-NULL: continue from the paging state a Rows result gave. */
	const unsigned char *paging_state;
	size_t paging_state_len;
	/* SERIAL or LOCAL_SERIAL, for conditional updates. */
	bool with_serial_consistency;
	enum cql_consistency serial_consistency;
	/* The default write timestamp, in microseconds (not negative). */
	bool with_timestamp;
	int64_t timestamp_usecs;
};

/* Each builder appends one whole request frame, version 0x04 with no
 * flags, to buf and returns 0; stream is the request's stream id, which
 * must not be negative (negative ids belong to the server).  On -1 the
 * buffer is unchanged. */

/* STARTUP with the one option CQL_VERSION = "3.0.0" (no compression). */
int cql_build_startup(struct cql_buf *buf, int16_t stream, const char **error_r);
/* OPTIONS: asks for a SUPPORTED response. */
int cql_build_options(struct cql_buf *buf, int16_t stream, const char **error_r);
/* AUTH_RESPONSE with a raw token; token NULL sends a null [bytes]. */
int cql_build_auth_response(struct cql_buf *buf, int16_t stream, const void *token,
			    size_t token_len, const char **error_r);
/* AUTH_RESPONSE for org.apache.cassandra.auth.PasswordAuthenticator: the
 * SASL PLAIN token "\0user\0password".  Neither may contain NUL. */
int cql_build_auth_password(struct cql_buf *buf, int16_t stream, const char *user,
			    const char *password, const char **error_r);
/* QUERY: a CQL statement (NUL-terminated) with its parameters. */
int cql_build_query(struct cql_buf *buf, int16_t stream, const char *query,
		    const struct cql_query_params *params, const char **error_r);
/* PREPARE: answered by a Prepared result whose id EXECUTE takes. */
int cql_build_prepare(struct cql_buf *buf, int16_t stream, const char *query, const char **error_r);
/* EXECUTE a prepared statement; id is the [short bytes] id, 1..65535
 * bytes. */
int cql_build_execute(struct cql_buf *buf, int16_t stream, const unsigned char *id, size_t id_len,
		      const struct cql_query_params *params, const char **error_r);
/* REGISTER for events: "TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE".
 * Events then arrive as EVENT responses on stream -1. */
int cql_build_register(struct cql_buf *buf, int16_t stream, const char *const *event_types,
		       unsigned count, const char **error_r);

/* ---- reading responses ---- */

struct cql_frame_header {
	uint8_t version;
	uint8_t flags;
	int16_t stream;
	uint8_t opcode;
	uint32_t length; /* of the body */
};

/* Is there a whole response frame at the start of data[0..len)?  Returns
 *   0   not yet; *frame_len_r is 0 while the 9-byte header is incomplete,
 *       then the length the whole frame will have (*hdr_r is set), so that
 *       the caller can make room for it;
 *   1   yes: *hdr_r is set and the frame is data[0..*frame_len_r), that is
 *       the header and hdr_r->length body bytes;
 *  -1   the header is unusable: not a v4 response (checked from the first
 *       byte on), or a frame longer than max_frame bytes (header
 *       included).  The connection cannot be resynchronised; close it.
 * Only the header is checked; cql_response_parse() looks at the body. */
int cql_frame_peek(const void *data, size_t len, size_t max_frame, struct cql_frame_header *hdr_r,
		   size_t *frame_len_r, const char **error_r);

/* A [string]: UTF-8 as the server sent it, not NUL-terminated (print with
 * "%.*s").  Empty strings have len 0. */
struct cql_string {
	const char *data;
	size_t len;
};

/* A [bytes] or [short bytes]; len -1 (and data NULL) is null. */
struct cql_bytes {
	const unsigned char *data;
	int32_t len;
};

/* A [string list], walked with cql_string_list_next() (which consumes it:
 * copy the struct to walk it again). */
struct cql_string_list {
	const unsigned char *pos, *end;
	uint16_t count;
};

/* A [string multimap]: keys with [string list] values. */
struct cql_string_multimap {
	const unsigned char *pos, *end;
	uint16_t count;
};

/* A [bytes map]: [string] keys with [bytes] values. */
struct cql_bytes_map {
	const unsigned char *pos, *end;
	uint16_t count;
};

/* A column type: its option id and the whole [option] (id included), so
 * that nested types can be looked into with cql_type_child(). */
struct cql_type {
	uint16_t id;
	const unsigned char *data;
	size_t len;
};

/* One column spec: the column's table, name and type. */
struct cql_column {
	struct cql_string keyspace, table, name;
	struct cql_type type;
};

/* Rows metadata (section 4.2.5.2), also the bind metadata of a Prepared
 * result (section 4.2.5.4). */
struct cql_metadata {
	/* enum cql_metadata_flag; in bind metadata only Global_tables_spec
	 * is kept, the one flag section 4.2.5.4 defines there. */
	int32_t flags;
	int32_t column_count;
	/* Has_more_pages: pass it back in cql_query_params.paging_state for
	 * the next page.  len -1 when there is none. */
	struct cql_bytes paging_state;
	/* The global table spec, when Global_tables_spec is set. */
	struct cql_string keyspace, table;
	/* Prepared bind metadata only: the bind markers of the partition key
	 * columns, read with cql_metadata_pk_index(). */
	int32_t pk_count;
	const unsigned char *pk_indexes;
	/* The column specs, walked with cql_columns_next(); none when
	 * No_metadata is set. */
	const unsigned char *specs;
	size_t specs_len;
};

struct cql_columns_cursor {
	const struct cql_metadata *metadata;
	const unsigned char *pos, *end;
	int32_t left;
};

/* A RESULT of kind Rows.  The rows are walked with cql_rows_next(). */
struct cql_rows {
	struct cql_metadata metadata;
	int32_t row_count;
	const unsigned char *content;
	size_t content_len;
};

struct cql_rows_cursor {
	const struct cql_rows *rows;
	const unsigned char *pos, *end;
	int32_t rows_left;
};

/* One cell: a view of its bytes (len -1 and data NULL for NULL) and its
 * column's type id (CQL_TYPE_UNKNOWN without metadata). */
struct cql_value {
	const unsigned char *data;
	int32_t len;
	uint16_t type;
};

struct cql_prepared {
	/* Copy it to EXECUTE later: it stays valid on that node until the
	 * node restarts (then EXECUTE gets an Unprepared error). */
	struct cql_bytes id;
	struct cql_metadata metadata;        /* the bind markers */
	struct cql_metadata result_metadata; /* what EXECUTE will return; may be empty */
};

/* A Schema_change result or a SCHEMA_CHANGE event (section 4.2.6). */
struct cql_schema_change {
	struct cql_string change_type; /* CREATED, UPDATED, DROPPED */
	struct cql_string target;      /* KEYSPACE, TABLE, TYPE, FUNCTION, AGGREGATE */
	struct cql_string keyspace;
	struct cql_string name;           /* empty for KEYSPACE */
	struct cql_string_list arg_types; /* FUNCTION and AGGREGATE only */
};

struct cql_result {
	int32_t kind; /* enum cql_result_kind */
	union {
		struct cql_rows rows;
		struct cql_string keyspace; /* Set_keyspace */
		struct cql_prepared prepared;
		struct cql_schema_change schema_change;
	};
};

/* An ERROR response.  Which of the detail fields are set depends on the
 * code (section 9); the others are zero. */
struct cql_error {
	int32_t code; /* enum cql_error_code, or one this version does not know */
	struct cql_string message;
	/* Unavailable, Write_timeout, Read_timeout, Read_failure,
	 * Write_failure: the consistency level as sent (maybe unknown). */
	uint16_t consistency;
	int32_t required, alive;          /* Unavailable */
	int32_t received, block_for;      /* timeouts and failures */
	int32_t num_failures;             /* Read_failure, Write_failure */
	bool data_present;                /* Read_timeout, Read_failure */
	struct cql_string write_type;     /* Write_timeout, Write_failure */
	struct cql_string keyspace;       /* Already_exists, Function_failure */
	struct cql_string table;          /* Already_exists (empty for a keyspace) */
	struct cql_string function;       /* Function_failure */
	struct cql_string_list arg_types; /* Function_failure */
	struct cql_bytes unprepared_id;   /* Unprepared */
};

/* An EVENT (section 4.2.6), pushed on stream -1 after REGISTER. */
struct cql_event {
	struct cql_string type; /* TOPOLOGY_CHANGE, STATUS_CHANGE, SCHEMA_CHANGE */
	/* TOPOLOGY_CHANGE (NEW_NODE, REMOVED_NODE), STATUS_CHANGE (UP, DOWN) */
	struct cql_string change;
	const unsigned char *address; /* 4 or 16 bytes, network order */
	uint8_t address_len;
	int32_t port;
	struct cql_schema_change schema_change; /* SCHEMA_CHANGE */
};

struct cql_response {
	struct cql_frame_header header; /* header.opcode says which member is set */
	/* Tracing flag: the 16-byte tracing session id, else NULL. */
	const unsigned char *tracing_id;
	/* Warning flag: the server's warnings (count 0 without it). */
	struct cql_string_list warnings;
	/* Custom payload flag: ignored by mailcluster, kept as a view. */
	struct cql_bytes_map custom_payload;
	union {
		struct cql_error error;               /* ERROR */
		struct cql_string authenticator;      /* AUTHENTICATE: class name */
		struct cql_bytes token;               /* AUTH_CHALLENGE, AUTH_SUCCESS */
		struct cql_string_multimap supported; /* SUPPORTED */
		struct cql_result result;             /* RESULT */
		struct cql_event event;               /* EVENT */
	};
	/* Holds the sentence *error_r points to when parsing fails. */
	char error_text[192];
};

/* Parse one whole response frame, as cql_frame_peek() delimited it.
 * Returns 0 with *resp_r filled (views into frame), or -1 with *error_r
 * pointing to a sentence in resp_r->error_text: not a v4 response, a
 * header length that disagrees with frame_len, a compressed body (we never
 * ask for compression), a request opcode, or a body that does not hold
 * what its opcode says.  Bytes after what the spec describes are ignored,
 * as section 1 asks.  A -1 spoils only this frame: the connection can go
 * on with the next one. */
int cql_response_parse(const unsigned char *frame, size_t frame_len, struct cql_response *resp_r,
		       const char **error_r);

/* Walk a string list / multimap / bytes map from a parsed response.  Each
 * returns false when nothing is left. */
bool cql_string_list_next(struct cql_string_list *list, struct cql_string *str_r);
bool cql_string_multimap_next(struct cql_string_multimap *map, struct cql_string *key_r,
			      struct cql_string_list *values_r);
bool cql_bytes_map_next(struct cql_bytes_map *map, struct cql_string *key_r,
			struct cql_bytes *value_r);
/* Find key in a SUPPORTED multimap: 1 found (*values_r set), 0 not. */
int cql_string_multimap_get(const struct cql_string_multimap *map, const char *key,
			    struct cql_string_list *values_r);
/* s equals the NUL-terminated text. */
bool cql_string_equals(struct cql_string s, const char *text);

/* Walk the column specs of metadata (none if No_metadata). */
void cql_columns_cursor_init(struct cql_columns_cursor *cursor_r,
			     const struct cql_metadata *metadata);
bool cql_columns_next(struct cql_columns_cursor *cursor, struct cql_column *column_r);
/* The bind marker index of partition key column i, or -1 if i >= pk_count. */
int cql_metadata_pk_index(const struct cql_metadata *metadata, unsigned i);

/* Walk the rows.  cql_rows_next() fills cells_r[0..cells_count) with the
 * first cells of the next row (cells beyond the row's column count are
 * set to NULL with type CQL_TYPE_UNKNOWN; the row's cells beyond
 * cells_count are skipped) and returns true, or returns false after the
 * last row. */
void cql_rows_cursor_init(struct cql_rows_cursor *cursor_r, const struct cql_rows *rows);
bool cql_rows_next(struct cql_rows_cursor *cursor, struct cql_value *cells_r, unsigned cells_count);

/* The index'th component of a nested type: the element of a list or set
 * (index 0), the key (0) or value (1) of a map, a tuple's index'th type,
 * a UDT's index'th field (its name in *name_r, if name_r is not NULL;
 * other types give an empty name).  Returns 1, or 0 if there is no such
 * component. */
int cql_type_child(const struct cql_type *type, unsigned index, struct cql_string *name_r,
		   struct cql_type *child_r);
/* "int", "varchar", "list", ..., or "unknown". */
const char *cql_type_name(uint16_t id);

/* Decode one cell.  Each returns 1 with the value, 0 if the cell is NULL
 * (or empty, which section 6 allows for non-string types and which we
 * read as NULL), or -1 if the column's type does not fit or the value has
 * the wrong length for it.
 *   int        int (4 bytes)
 *   bigint     bigint, counter (8 bytes)
 *   boolean    boolean (1 byte, nonzero is true)
 *   text       varchar, ascii (any length; a view, not checked for UTF-8
 *              or NUL bytes)
 *   timestamp  timestamp (8 bytes, milliseconds since the epoch)
 *   uuid       uuid, timeuuid (16 bytes) */
int cql_value_int(const struct cql_value *value, int32_t *int_r, const char **error_r);
int cql_value_bigint(const struct cql_value *value, int64_t *bigint_r, const char **error_r);
int cql_value_boolean(const struct cql_value *value, bool *boolean_r, const char **error_r);
int cql_value_text(const struct cql_value *value, struct cql_string *text_r, const char **error_r);
int cql_value_timestamp(const struct cql_value *value, int64_t *msecs_r, const char **error_r);
int cql_value_uuid(const struct cql_value *value, unsigned char uuid_r[CQL_UUID_LEN],
		   const char **error_r);

/* ---- names and sentences ---- */

/* Write a one-line sentence for an operator about the ERROR response resp
 * into buf (truncated to size, always NUL-terminated) and return buf, e.g.
 *   "write timeout at LOCAL_QUORUM (1 of 2 replicas acknowledged, type SIMPLE)"
 *   "unavailable at LOCAL_QUORUM: 2 replicas required, 1 alive"
 *   "syntax error: line 1:0 no viable alternative at input 'SELEC'"
 * Control characters in the server's text are replaced by spaces. */
const char *cql_error_sentence(const struct cql_response *resp, char *buf, size_t size);

/* "LOCAL_QUORUM" etc., or NULL for a value the protocol does not define. */
const char *cql_consistency_name(unsigned consistency);
/* The reverse, case-insensitively (configuration files). */
int cql_consistency_parse(const char *name, enum cql_consistency *consistency_r,
			  const char **error_r);
/* "RESULT" etc., or "UNKNOWN". */
const char *cql_opcode_name(unsigned opcode);

#endif
