/* test_cql_client.c - unit tests for src/store/cql_client (the asynchronous
 * Cassandra client) against fake CQL nodes in this process.
 *
 * A fake node is a loopback listener on an ephemeral port, driven by the
 * same event base as the client.  It reads request frames (version 0x04,
 * parsed here by hand: the codec only reads responses), answers the
 * handshake like Cassandra does (STARTUP, PasswordAuthenticator, the
 * system.local data centre, USE) and answers other queries by their text,
 * a tiny script language of its own:
 *
 *   ROWS n size     n rows of one varchar column, each cell size bytes
 *   PAGED n         n int rows 0..n-1, page_size at a time, the paging
 *                   state being the next row's number
 *   WHO             one row: the node's data centre
 *   ECHO text       held until hold_until requests are held, then all are
 *                   answered in reverse order, each with its own text
 *   WRITE_TIMEOUT   an ERROR frame (Write_timeout)
 *   SILENT          never answered
 *   CLOSE           the node closes the connection
 *   GARBAGE         a RESULT frame with a body that does not parse
 *   EVENT           an EVENT frame on stream -1, then a Void result
 *   NEEDS_KS        Invalid unless the connection has USEd the keyspace
 *   CREATE KEYSPACE creates the node's keyspace (a Schema_change result)
 *   anything else   a Void result
 *
 * PREPARE gets an id naming the node's "generation"; bumping it (a node
 * restart) makes EXECUTE of older ids answer Unprepared.  Writes can be
 * trickled a few bytes per loop turn (trickle_chunk) so that the client has
 * to reassemble frames from many small reads.
 *
 * Every wait is bounded: run_until() gives up after a deadline, and the
 * client's timeouts are short.
 */
#include "unit.h"
#include "store/cql_client.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HELD_MAX 16
#define PREPARED_MAX 16

/* ---- writing response frames ---- */

struct wbuf {
	unsigned char *data;
	size_t len, alloc;
};

static void w_mem(struct wbuf *w, const void *data, size_t len)
{
	if (w->len + len > w->alloc) {
		w->alloc = (w->len + len) * 2 + 64;
		w->data = realloc(w->data, w->alloc);
		if (w->data == NULL)
			abort();
	}
	memcpy(w->data + w->len, data, len);
	w->len += len;
}

static void w_u8(struct wbuf *w, uint8_t v)
{
	w_mem(w, &v, 1);
}

static void w_u16(struct wbuf *w, uint16_t v)
{
	w_u8(w, (uint8_t)(v >> 8));
	w_u8(w, (uint8_t)v);
}

static void w_u32(struct wbuf *w, uint32_t v)
{
	w_u16(w, (uint16_t)(v >> 16));
	w_u16(w, (uint16_t)v);
}

static void w_string(struct wbuf *w, const char *s)
{
	w_u16(w, (uint16_t)strlen(s));
	w_mem(w, s, strlen(s));
}

static void w_bytes(struct wbuf *w, const void *data, int32_t len)
{
	w_u32(w, (uint32_t)len);
	if (len > 0)
		w_mem(w, data, (size_t)len);
}

/* Starts a frame; returns where its header is, for w_end(). */
static size_t w_begin(struct wbuf *w, int16_t stream, uint8_t opcode)
{
	size_t start = w->len;
	w_u8(w, CQL_VERSION_RESPONSE);
	w_u8(w, 0);
	w_u16(w, (uint16_t)stream);
	w_u8(w, opcode);
	w_u32(w, 0);
	return start;
}

static void w_end(struct wbuf *w, size_t start)
{
	uint32_t body = (uint32_t)(w->len - start - CQL_FRAME_HEADER_LEN);
	w->data[start + 5] = (unsigned char)(body >> 24);
	w->data[start + 6] = (unsigned char)(body >> 16);
	w->data[start + 7] = (unsigned char)(body >> 8);
	w->data[start + 8] = (unsigned char)body;
}

/* Rows metadata with the global table spec and one column. */
static void w_rows_head(struct wbuf *w, const char *column, uint16_t type, const void *paging_state,
			int32_t paging_state_len)
{
	int32_t flags = CQL_METADATA_GLOBAL_TABLES_SPEC;
	if (paging_state != NULL)
		flags |= CQL_METADATA_HAS_MORE_PAGES;
	w_u32(w, CQL_RESULT_ROWS);
	w_u32(w, (uint32_t)flags);
	w_u32(w, 1);
	if (paging_state != NULL)
		w_bytes(w, paging_state, paging_state_len);
	w_string(w, "ks");
	w_string(w, "t");
	w_string(w, column);
	w_u16(w, type);
}

/* ---- the fake node ---- */

struct fake_node;

struct fake_conn {
	struct fake_node *node;
	struct bufferevent *bev;
	struct fake_conn *next;
	bool keyspace_set;
	/* trickled output: what is still to go, a few bytes per loop turn */
	struct evbuffer *trickle;
	struct event *trickle_event;
};

struct held {
	struct fake_conn *conn;
	int16_t stream;
	char text[64];
};

struct fake_node {
	struct event_base *base;
	struct evconnlistener *listener;
	uint16_t port;
	char name[32];
	const char *dc;
	const char *user, *password; /* non-NULL: PasswordAuthenticator */
	bool keyspace_exists;
	struct fake_conn *conns;
	size_t trickle_chunk; /* 0: write whole frames */
	bool mute;            /* answer nothing at all */
	unsigned generation;  /* of prepared ids */
	char prepared[PREPARED_MAX][256];
	unsigned prepared_count;
	struct held held[HELD_MAX];
	unsigned held_count, hold_until;
	/* what it saw */
	unsigned accepted, queries, prepares, executes, options, writes;
	unsigned bad_requests; /* frames that were not well-formed v4 requests */
	SSL_CTX *ssl_ctx;      /* non-NULL: TLS */
};

struct request {
	int16_t stream;
	uint8_t opcode;
	char text[256];
	int32_t page_size;
	int32_t paging_state; /* -1: none, else the next row */
	const unsigned char *token;
	int32_t token_len;
	const unsigned char *id;
	uint16_t id_len;
};

static void fake_conn_free(struct fake_conn *fc)
{
	struct fake_node *node = fc->node;
	for (struct fake_conn **pp = &node->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == fc) {
			*pp = fc->next;
			break;
		}
	}
	for (unsigned i = 0; i < node->held_count; i++) {
		if (node->held[i].conn == fc)
			node->held[i].conn = NULL;
	}
	bufferevent_free(fc->bev);
	evbuffer_free(fc->trickle);
	event_free(fc->trickle_event);
	free(fc);
}

static void trickle_run(evutil_socket_t fd, short what, void *context)
{
	struct fake_conn *fc = context;
	unsigned char chunk[64];
	size_t n =
		fc->node->trickle_chunk < sizeof(chunk) ? fc->node->trickle_chunk : sizeof(chunk);
	int got = evbuffer_remove(fc->trickle, chunk, n);
	if (got > 0) {
		bufferevent_write(fc->bev, chunk, (size_t)got);
		fc->node->writes++;
	}
	if (evbuffer_get_length(fc->trickle) > 0) {
		struct timeval zero = {0, 0};
		event_add(fc->trickle_event, &zero);
	}
}

static void fake_send(struct fake_conn *fc, struct wbuf *w)
{
	if (fc->node->trickle_chunk == 0) {
		bufferevent_write(fc->bev, w->data, w->len);
	} else {
		evbuffer_add(fc->trickle, w->data, w->len);
		if (!event_pending(fc->trickle_event, EV_TIMEOUT, NULL)) {
			struct timeval zero = {0, 0};
			event_add(fc->trickle_event, &zero);
		}
	}
	w->len = 0;
}

static void send_void(struct fake_conn *fc, int16_t stream)
{
	struct wbuf w = {0};
	size_t f = w_begin(&w, stream, CQL_OPCODE_RESULT);
	w_u32(&w, CQL_RESULT_VOID);
	w_end(&w, f);
	fake_send(fc, &w);
	free(w.data);
}

static void send_error(struct fake_conn *fc, int16_t stream, int32_t code, const char *message)
{
	struct wbuf w = {0};
	size_t f = w_begin(&w, stream, CQL_OPCODE_ERROR);
	w_u32(&w, (uint32_t)code);
	w_string(&w, message);
	w_end(&w, f);
	fake_send(fc, &w);
	free(w.data);
}

static void send_text_row(struct fake_conn *fc, int16_t stream, const char *column,
			  const char *text)
{
	struct wbuf w = {0};
	size_t f = w_begin(&w, stream, CQL_OPCODE_RESULT);
	w_rows_head(&w, column, CQL_TYPE_VARCHAR, NULL, 0);
	w_u32(&w, 1);
	w_bytes(&w, text, (int32_t)strlen(text));
	w_end(&w, f);
	fake_send(fc, &w);
	free(w.data);
}

static void answer_query(struct fake_conn *fc, const struct request *req)
{
	struct fake_node *node = fc->node;
	struct wbuf w = {0};
	size_t f;
	unsigned n, size;

	if (strcmp(req->text, "SELECT data_center FROM system.local") == 0 ||
	    strcmp(req->text, "WHO") == 0) {
		send_text_row(fc, req->stream, "data_center", node->dc);
	} else if (strncmp(req->text, "USE ", 4) == 0) {
		if (node->keyspace_exists) {
			fc->keyspace_set = true;
			f = w_begin(&w, req->stream, CQL_OPCODE_RESULT);
			w_u32(&w, CQL_RESULT_SET_KEYSPACE);
			w_string(&w, "ks");
			w_end(&w, f);
			fake_send(fc, &w);
		} else {
			send_error(fc, req->stream, CQL_ERROR_INVALID,
				   "Keyspace 'ks' does not exist");
		}
	} else if (strncmp(req->text, "CREATE KEYSPACE", 15) == 0) {
		node->keyspace_exists = true;
		f = w_begin(&w, req->stream, CQL_OPCODE_RESULT);
		w_u32(&w, CQL_RESULT_SCHEMA_CHANGE);
		w_string(&w, "CREATED");
		w_string(&w, "KEYSPACE");
		w_string(&w, "ks");
		w_end(&w, f);
		fake_send(fc, &w);
	} else if (strcmp(req->text, "NEEDS_KS") == 0) {
		if (fc->keyspace_set)
			send_void(fc, req->stream);
		else
			send_error(fc, req->stream, CQL_ERROR_INVALID,
				   "No keyspace has been specified. USE a keyspace, or explicitly "
				   "specify keyspace.tablename");
	} else if (sscanf(req->text, "ROWS %u %u", &n, &size) == 2) {
		char *cell = malloc(size + 16);
		f = w_begin(&w, req->stream, CQL_OPCODE_RESULT);
		w_rows_head(&w, "v", CQL_TYPE_VARCHAR, NULL, 0);
		w_u32(&w, n);
		for (unsigned i = 0; i < n; i++) {
			int len = snprintf(cell, size + 16, "row%u-", i);
			while ((unsigned)len < size)
				cell[len++] = (char)('a' + i % 26);
			w_bytes(&w, cell, len);
		}
		w_end(&w, f);
		fake_send(fc, &w);
		free(cell);
	} else if (sscanf(req->text, "PAGED %u", &n) == 1) {
		unsigned start = req->paging_state >= 0 ? (unsigned)req->paging_state : 0;
		unsigned count = req->page_size > 0 ? (unsigned)req->page_size : n;
		if (start + count > n)
			count = n - start;
		unsigned char state[4] = {0, 0, (unsigned char)((start + count) >> 8),
					  (unsigned char)(start + count)};
		f = w_begin(&w, req->stream, CQL_OPCODE_RESULT);
		w_rows_head(&w, "n", CQL_TYPE_INT, start + count < n ? state : NULL, 4);
		w_u32(&w, count);
		for (unsigned i = start; i < start + count; i++) {
			unsigned char v[4] = {(unsigned char)(i >> 24), (unsigned char)(i >> 16),
					      (unsigned char)(i >> 8), (unsigned char)i};
			w_bytes(&w, v, 4);
		}
		w_end(&w, f);
		fake_send(fc, &w);
	} else if (strncmp(req->text, "ECHO ", 5) == 0) {
		struct held *h = &node->held[node->held_count++];
		h->conn = fc;
		h->stream = req->stream;
		snprintf(h->text, sizeof(h->text), "%s", req->text + 5);
		if (node->held_count >= node->hold_until) {
			while (node->held_count > 0) {
				h = &node->held[--node->held_count];
				if (h->conn != NULL)
					send_text_row(h->conn, h->stream, "v", h->text);
			}
		}
	} else if (strcmp(req->text, "WRITE_TIMEOUT") == 0) {
		f = w_begin(&w, req->stream, CQL_OPCODE_ERROR);
		w_u32(&w, CQL_ERROR_WRITE_TIMEOUT);
		w_string(&w, "Operation timed out - received only 1 responses.");
		w_u16(&w, CQL_CONSISTENCY_LOCAL_QUORUM);
		w_u32(&w, 1);
		w_u32(&w, 2);
		w_string(&w, "SIMPLE");
		w_end(&w, f);
		fake_send(fc, &w);
	} else if (strcmp(req->text, "SILENT") == 0) {
		/* no answer */
	} else if (strcmp(req->text, "GARBAGE") == 0) {
		f = w_begin(&w, req->stream, CQL_OPCODE_RESULT);
		w_u32(&w, 99); /* no such result kind */
		w_end(&w, f);
		fake_send(fc, &w);
	} else if (strcmp(req->text, "EVENT") == 0) {
		f = w_begin(&w, -1, CQL_OPCODE_EVENT);
		w_string(&w, "STATUS_CHANGE");
		w_string(&w, "UP");
		w_u8(&w, 4);
		w_mem(&w, "\x7f\x00\x00\x02", 4);
		w_u32(&w, 9042);
		w_end(&w, f);
		fake_send(fc, &w);
		send_void(fc, req->stream);
	} else {
		send_void(fc, req->stream);
	}
	free(w.data);
}

/* Returns false if the connection was closed. */
static bool answer(struct fake_conn *fc, const struct request *req)
{
	struct fake_node *node = fc->node;
	struct wbuf w = {0};
	size_t f;

	if (node->mute)
		return true;
	switch (req->opcode) {
	case CQL_OPCODE_STARTUP:
		if (node->user != NULL) {
			f = w_begin(&w, req->stream, CQL_OPCODE_AUTHENTICATE);
			w_string(&w, "org.apache.cassandra.auth.PasswordAuthenticator");
		} else {
			f = w_begin(&w, req->stream, CQL_OPCODE_READY);
		}
		w_end(&w, f);
		fake_send(fc, &w);
		break;
	case CQL_OPCODE_AUTH_RESPONSE: {
		char expect[128];
		int len = snprintf(expect, sizeof(expect), "%c%s%c%s", 0, node->user, 0,
				   node->password);
		if (req->token_len == len && memcmp(req->token, expect, (size_t)len) == 0) {
			f = w_begin(&w, req->stream, CQL_OPCODE_AUTH_SUCCESS);
			w_bytes(&w, NULL, -1);
			w_end(&w, f);
			fake_send(fc, &w);
		} else {
			send_error(fc, req->stream, CQL_ERROR_AUTHENTICATION,
				   "Provided username and/or password are incorrect");
		}
		break;
	}
	case CQL_OPCODE_OPTIONS:
		node->options++;
		f = w_begin(&w, req->stream, CQL_OPCODE_SUPPORTED);
		w_u16(&w, 0);
		w_end(&w, f);
		fake_send(fc, &w);
		break;
	case CQL_OPCODE_PREPARE: {
		char id[32];
		node->prepares++;
		unsigned index = node->prepared_count++ % PREPARED_MAX;
		snprintf(node->prepared[index], sizeof(node->prepared[index]), "%s", req->text);
		snprintf(id, sizeof(id), "g%u-%u", node->generation, index);
		f = w_begin(&w, req->stream, CQL_OPCODE_RESULT);
		w_u32(&w, CQL_RESULT_PREPARED);
		w_u16(&w, (uint16_t)strlen(id));
		w_mem(&w, id, strlen(id));
		w_u32(&w, 0); /* bind metadata: flags, no columns, no pk */
		w_u32(&w, 0);
		w_u32(&w, 0);
		w_u32(&w, CQL_METADATA_NO_METADATA); /* result metadata */
		w_u32(&w, 0);
		w_end(&w, f);
		fake_send(fc, &w);
		break;
	}
	case CQL_OPCODE_EXECUTE: {
		unsigned generation, index;
		char id[32];
		node->executes++;
		snprintf(id, sizeof(id), "%.*s", (int)req->id_len, (const char *)req->id);
		if (sscanf(id, "g%u-%u", &generation, &index) != 2 ||
		    generation != node->generation || index >= PREPARED_MAX) {
			f = w_begin(&w, req->stream, CQL_OPCODE_ERROR);
			w_u32(&w, CQL_ERROR_UNPREPARED);
			w_string(&w, "Prepared query with ID not found");
			w_u16(&w, req->id_len);
			w_mem(&w, req->id, req->id_len);
			w_end(&w, f);
			fake_send(fc, &w);
			break;
		}
		struct request query = *req;
		snprintf(query.text, sizeof(query.text), "%s", node->prepared[index]);
		answer_query(fc, &query);
		break;
	}
	case CQL_OPCODE_QUERY:
		node->queries++;
		if (strcmp(req->text, "CLOSE") == 0) {
			fake_conn_free(fc);
			free(w.data);
			return false;
		}
		answer_query(fc, req);
		break;
	default:
		send_error(fc, req->stream, CQL_ERROR_PROTOCOL, "unexpected opcode");
		break;
	}
	free(w.data);
	return true;
}

/* ---- reading request frames ---- */

struct reader {
	const unsigned char *pos, *end;
	bool bad;
};

static const unsigned char *r_take(struct reader *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->pos) < n) {
		r->bad = true;
		return NULL;
	}
	const unsigned char *p = r->pos;
	r->pos += n;
	return p;
}

static uint32_t r_u32(struct reader *r)
{
	const unsigned char *p = r_take(r, 4);
	return p == NULL ? 0
			 : ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
				   p[3];
}

static uint16_t r_u16(struct reader *r)
{
	const unsigned char *p = r_take(r, 2);
	return p == NULL ? 0 : (uint16_t)((p[0] << 8) | p[1]);
}

static void r_long_string(struct reader *r, char *buf, size_t size)
{
	uint32_t len = r_u32(r);
	const unsigned char *p = r_take(r, len);
	snprintf(buf, size, "%.*s", p == NULL ? 0 : (int)len, p == NULL ? "" : (const char *)p);
}

/* <query_parameters> (section 4.1.4) */
static void r_params(struct reader *r, struct request *req)
{
	r_u16(r); /* consistency */
	const unsigned char *flags_p = r_take(r, 1);
	uint8_t flags = flags_p == NULL ? 0 : flags_p[0];
	if ((flags & 0x01) != 0) {
		uint16_t n = r_u16(r);
		for (uint16_t i = 0; i < n; i++) {
			int32_t len = (int32_t)r_u32(r);
			if (len > 0)
				r_take(r, (size_t)len);
		}
	}
	if ((flags & 0x04) != 0)
		req->page_size = (int32_t)r_u32(r);
	if ((flags & 0x08) != 0) {
		int32_t len = (int32_t)r_u32(r);
		const unsigned char *p = len == 4 ? r_take(r, 4) : NULL;
		if (p != NULL)
			req->paging_state = (p[2] << 8) | p[3];
	}
}

static void fake_read(struct bufferevent *bev, void *context)
{
	struct fake_conn *fc = context;
	struct evbuffer *input = bufferevent_get_input(bev);

	for (;;) {
		size_t len = evbuffer_get_length(input);
		if (len < CQL_FRAME_HEADER_LEN)
			return;
		const unsigned char *h = evbuffer_pullup(input, CQL_FRAME_HEADER_LEN);
		if (h[0] != CQL_VERSION_REQUEST)
			fc->node->bad_requests++;
		size_t body =
			((size_t)h[5] << 24) | ((size_t)h[6] << 16) | ((size_t)h[7] << 8) | h[8];
		if (len < CQL_FRAME_HEADER_LEN + body)
			return;
		unsigned char *frame = malloc(CQL_FRAME_HEADER_LEN + body);
		evbuffer_remove(input, frame, CQL_FRAME_HEADER_LEN + body);
		struct request req = {
			.stream = (int16_t)((frame[2] << 8) | frame[3]),
			.opcode = frame[4],
			.paging_state = -1,
		};
		struct reader r = {frame + CQL_FRAME_HEADER_LEN,
				   frame + CQL_FRAME_HEADER_LEN + body, false};
		switch (req.opcode) {
		case CQL_OPCODE_QUERY:
			r_long_string(&r, req.text, sizeof(req.text));
			r_params(&r, &req);
			break;
		case CQL_OPCODE_PREPARE:
			r_long_string(&r, req.text, sizeof(req.text));
			break;
		case CQL_OPCODE_EXECUTE:
			req.id_len = r_u16(&r);
			req.id = r_take(&r, req.id_len);
			r_params(&r, &req);
			break;
		case CQL_OPCODE_AUTH_RESPONSE:
			req.token_len = (int32_t)r_u32(&r);
			req.token = req.token_len > 0 ? r_take(&r, (size_t)req.token_len) : NULL;
			break;
		default:
			break;
		}
		if (r.bad)
			fc->node->bad_requests++;
		bool open = answer(fc, &req);
		free(frame);
		if (!open)
			return;
	}
}

static void fake_event(struct bufferevent *bev, short what, void *context)
{
	if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0)
		fake_conn_free(context);
}

static void fake_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
			int socklen, void *context)
{
	struct fake_node *node = context;
	struct fake_conn *fc = calloc(1, sizeof(*fc));
	fc->node = node;
	if (node->ssl_ctx != NULL)
		fc->bev = bufferevent_openssl_socket_new(node->base, fd, SSL_new(node->ssl_ctx),
							 BUFFEREVENT_SSL_ACCEPTING,
							 BEV_OPT_CLOSE_ON_FREE);
	else
		fc->bev = bufferevent_socket_new(node->base, fd, BEV_OPT_CLOSE_ON_FREE);
	fc->trickle = evbuffer_new();
	fc->trickle_event = evtimer_new(node->base, trickle_run, fc);
	bufferevent_setcb(fc->bev, fake_read, NULL, fake_event, fc);
	bufferevent_enable(fc->bev, EV_READ | EV_WRITE);
	fc->next = node->conns;
	node->conns = fc;
	node->accepted++;
}

/* Listens on 127.0.0.1:node->port (0: any free port, remembered). */
static void fake_node_start(struct fake_node *node)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(node->port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	node->listener = evconnlistener_new_bind(node->base, fake_accept, node,
						 LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 16,
						 (struct sockaddr *)&sin, sizeof(sin));
	if (node->listener == NULL)
		abort();
	socklen_t len = sizeof(sin);
	getsockname(evconnlistener_get_fd(node->listener), (struct sockaddr *)&sin, &len);
	node->port = ntohs(sin.sin_port);
	snprintf(node->name, sizeof(node->name), "127.0.0.1:%u", node->port);
}

/* The node goes away: no listener, every connection closed. */
static void fake_node_stop(struct fake_node *node)
{
	if (node->listener != NULL) {
		evconnlistener_free(node->listener);
		node->listener = NULL;
	}
	while (node->conns != NULL)
		fake_conn_free(node->conns);
}

static void fake_node_init(struct fake_node *node, struct event_base *base, const char *dc)
{
	memset(node, 0, sizeof(*node));
	node->base = base;
	node->dc = dc;
	node->keyspace_exists = true;
	fake_node_start(node);
}

/* ---- the test environment ---- */

struct result {
	int calls;
	char error[512];
	int32_t code;
	int32_t kind;
	char host[64];
	size_t rows;
	unsigned pages;
	char first[64], last[64]; /* varchar cells: first and last */
	bool ints_in_order;       /* int cells: 0, 1, 2, ... */
	int order;                /* when the callback ran, among all */
};

static bool in_execute;
static int callback_order;
/* callbacks that ran inside cql_client_execute(), or whose row cursor
 * disagreed with cql_reply_row_count() */
static unsigned callback_problems;

static void on_reply(const struct cql_reply *reply, void *context)
{
	struct result *res = context;
	struct cql_reply_cursor cursor;
	struct cql_value cell;
	struct cql_string text;
	const char *error;
	int32_t value;

	if (in_execute)
		callback_problems++;
	res->calls++;
	res->order = ++callback_order;
	snprintf(res->error, sizeof(res->error), "%s", reply->error != NULL ? reply->error : "");
	res->code = reply->error_code;
	res->kind = reply->kind;
	snprintf(res->host, sizeof(res->host), "%s", reply->host);
	res->rows = cql_reply_row_count(reply);
	res->pages = reply->page_count;
	res->ints_in_order = true;
	size_t walked = 0;
	cql_reply_cursor_init(&cursor, reply);
	while (cql_reply_next_row(&cursor, &cell, 1)) {
		if (cell.type == CQL_TYPE_INT) {
			if (cql_value_int(&cell, &value, &error) != 1 || value != (int32_t)walked)
				res->ints_in_order = false;
		} else if (cql_value_text(&cell, &text, &error) == 1) {
			if (walked == 0)
				snprintf(res->first, sizeof(res->first), "%.*s", (int)text.len,
					 text.data);
			snprintf(res->last, sizeof(res->last), "%.*s", (int)text.len, text.data);
		}
		walked++;
	}
	if (walked != res->rows)
		callback_problems++;
}

struct env {
	struct event_base *base;
	struct fake_node nodes[2];
	unsigned node_count;
	struct cql_client *client;
	const char *hosts[3];
	struct cql_client_settings set;
};

static void env_init(struct env *env, unsigned node_count)
{
	memset(env, 0, sizeof(*env));
	env->base = event_base_new();
	env->node_count = node_count;
	for (unsigned i = 0; i < node_count; i++)
		fake_node_init(&env->nodes[i], env->base, i == 0 ? "dc1" : "dc2");
	env->set.hosts = env->hosts;
	env->set.connections_per_host = 1;
	env->set.streams_per_connection = 64;
	env->set.connect_timeout_ms = 200;
	env->set.request_timeout_ms = 500;
	env->set.reconnect_min_ms = 10;
	env->set.reconnect_max_ms = 50;
}

static bool env_client(struct env *env)
{
	const char *error = NULL;
	for (unsigned i = 0; i < env->node_count; i++)
		env->hosts[i] = env->nodes[i].name;
	if (env->set.host_count == 0)
		env->set.host_count = env->node_count;
	int ret = cql_client_create(env->base, &env->set, &env->client, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "cql_client_create: %s\n", error);
	return ret == 0;
}

static void env_free(struct env *env)
{
	cql_client_destroy(&env->client);
	for (unsigned i = 0; i < env->node_count; i++) {
		CHECK(env->nodes[i].bad_requests == 0);
		fake_node_stop(&env->nodes[i]);
	}
	event_base_free(env->base);
}

static void set_flag(evutil_socket_t fd, short what, void *context)
{
	*(bool *)context = true;
}

enum wait_what { WAIT_CALLS, WAIT_HOSTS_UP, WAIT_HOSTS_DOWN };

/* Runs the loop until the condition holds or ms pass; returns whether it
 * holds. */
static bool run_until(struct env *env, enum wait_what what, const int *calls, int n, unsigned ms)
{
	bool expired = false;
	struct event *deadline = evtimer_new(env->base, set_flag, &expired);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(deadline, &tv);
	for (;;) {
		bool holds = false;
		switch (what) {
		case WAIT_CALLS:
			holds = *calls >= n;
			break;
		case WAIT_HOSTS_UP:
			holds = cql_client_hosts_up(env->client) >= (unsigned)n;
			break;
		case WAIT_HOSTS_DOWN:
			holds = cql_client_hosts_up(env->client) <= (unsigned)n;
			break;
		}
		if (holds || expired) {
			event_free(deadline);
			return holds;
		}
		event_base_loop(env->base, EVLOOP_ONCE);
	}
}

static struct cql_pending *execute(struct env *env, const char *cql, bool idempotent,
				   struct result *res)
{
	struct cql_request req = {
		.cql = cql,
		.consistency = CQL_CONSISTENCY_LOCAL_QUORUM,
		.idempotent = idempotent,
	};
	memset(res, 0, sizeof(*res));
	in_execute = true;
	struct cql_pending *p = cql_client_execute(env->client, &req, on_reply, res);
	in_execute = false;
	CHECK(p != NULL);
	return p;
}

/* One request, waited for. */
static void query(struct env *env, const char *cql, struct result *res)
{
	execute(env, cql, false, res);
	CHECK(run_until(env, WAIT_CALLS, &res->calls, 1, 3000));
	CHECK(res->calls == 1);
}

/* ---- tests ---- */

static void test_simple_query(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	env.set.keyspace = "ks";
	if (!env_client(&env))
		goto out;
	/* queued until the handshake is done, then sent */
	query(&env, "ROWS 3 10", &res);
	CHECK_STR(res.error, "");
	CHECK(res.kind == CQL_RESULT_ROWS);
	CHECK(res.rows == 3);
	CHECK(res.pages == 1);
	CHECK_STR(res.first, "row0-aaaaa");
	CHECK_STR(res.last, "row2-ccccc");
	CHECK_STR(res.host, env.nodes[0].name);
	CHECK(cql_client_hosts_up(env.client) == 1);

	/* the DC was learned, and the keyspace is set */
	char describe[512];
	cql_client_describe(env.client, describe, sizeof(describe));
	CHECK(strstr(describe, "dc1 up 1/1 connections") != NULL);
	query(&env, "NEEDS_KS", &res);
	CHECK_STR(res.error, "");
	CHECK(res.kind == CQL_RESULT_VOID);
	CHECK(res.pages == 0);

	/* an EVENT frame on stream -1 is ignored */
	query(&env, "EVENT", &res);
	CHECK_STR(res.error, "");
	CHECK(res.kind == CQL_RESULT_VOID);

out:
	env_free(&env);
}

static bool wait_done_flag;
static void on_reply_set_done(const struct cql_reply *reply, void *context)
{
	on_reply(reply, context);
	wait_done_flag = true;
}

static void test_wait(void)
{
	struct env env;
	struct result res = {0};
	env_init(&env, 1);
	if (!env_client(&env))
		goto out;
	struct cql_request req = {.cql = "WHO", .consistency = CQL_CONSISTENCY_ONE};
	wait_done_flag = false;
	cql_client_execute(env.client, &req, on_reply_set_done, &res);
	CHECK(!wait_done_flag);
	CHECK(cql_client_wait(env.client, &wait_done_flag) == 0);
	CHECK(res.calls == 1);
	CHECK_STR(res.first, "dc1");
	/* already done: returns at once */
	CHECK(cql_client_wait(env.client, &wait_done_flag) == 0);
out:
	env_free(&env);
}

static void test_auth(void)
{
	struct env env;
	struct result res;

	/* right credentials */
	env_init(&env, 1);
	env.nodes[0].user = "cassandra";
	env.nodes[0].password = "s3cret";
	env.set.username = "cassandra";
	env.set.password = "s3cret";
	if (env_client(&env)) {
		query(&env, "WHO", &res);
		CHECK_STR(res.error, "");
		CHECK_STR(res.first, "dc1");
	}
	env_free(&env);

	/* no username: a clear sentence */
	env_init(&env, 1);
	env.nodes[0].user = "cassandra";
	env.nodes[0].password = "s3cret";
	env.set.request_timeout_ms = 200;
	if (env_client(&env)) {
		query(&env, "WHO", &res);
		char expect[512];
		snprintf(expect, sizeof(expect),
			 "no connection to any of %s: node requires authentication "
			 "(org.apache.cassandra.auth.PasswordAuthenticator); set username/password",
			 env.nodes[0].name);
		CHECK_STR(res.error, expect);
		CHECK(res.code == -1);
		CHECK(cql_client_hosts_up(env.client) == 0);
	}
	env_free(&env);

	/* wrong password */
	env_init(&env, 1);
	env.nodes[0].user = "cassandra";
	env.nodes[0].password = "s3cret";
	env.set.username = "cassandra";
	env.set.password = "wrong";
	env.set.request_timeout_ms = 200;
	if (env_client(&env)) {
		query(&env, "WHO", &res);
		CHECK(strstr(res.error, "authentication failed: Provided username and/or "
					"password are incorrect") != NULL);
	}
	env_free(&env);
}

static void test_missing_keyspace(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	env.nodes[0].keyspace_exists = false;
	env.set.keyspace = "ks";
	if (!env_client(&env))
		goto out;
	/* the node is up all the same; requests get the server's sentence */
	query(&env, "NEEDS_KS", &res);
	CHECK(strstr(res.error, "No keyspace has been specified") != NULL);
	CHECK(res.code == CQL_ERROR_INVALID);
	CHECK(cql_client_hosts_up(env.client) == 1);
	/* CREATE KEYSPACE through the client: USE is tried again */
	query(&env, "CREATE KEYSPACE ks WITH replication = {}", &res);
	CHECK_STR(res.error, "");
	CHECK(res.kind == CQL_RESULT_SCHEMA_CHANGE);
	query(&env, "NEEDS_KS", &res);
	CHECK_STR(res.error, "");
out:
	env_free(&env);
}

static void test_large_result_trickled(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	env.set.request_timeout_ms = 20000;
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	env.nodes[0].trickle_chunk = 7;
	/* 2000 rows of 100 bytes: about 208 KB, 7 bytes per write */
	execute(&env, "ROWS 2000 100", false, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 30000));
	CHECK_STR(res.error, "");
	CHECK(res.rows == 2000);
	CHECK(strncmp(res.first, "row0-aaaa", 9) == 0);
	CHECK(strncmp(res.last, "row1999-xxxx", 12) == 0);
	CHECK(strlen(res.last) == 63); /* truncated copy of a 100-byte cell */
	CHECK(env.nodes[0].writes > 200 * 1024 / 7);
out:
	env_free(&env);
}

static void test_paging(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	if (!env_client(&env))
		goto out;
	struct cql_request req = {
		.cql = "PAGED 25",
		.consistency = CQL_CONSISTENCY_ONE,
		.page_size = 10,
		.all_pages = true,
	};
	memset(&res, 0, sizeof(res));
	cql_client_execute(env.client, &req, on_reply, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK_STR(res.error, "");
	CHECK(res.pages == 3);
	CHECK(res.rows == 25);
	CHECK(res.ints_in_order);
	CHECK(env.nodes[0].queries == 1 + 3); /* system.local, then 3 pages */

	/* prepared and paged */
	req.prepare = true;
	req.cql = "PAGED 40";
	memset(&res, 0, sizeof(res));
	cql_client_execute(env.client, &req, on_reply, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK_STR(res.error, "");
	CHECK(res.pages == 4);
	CHECK(res.rows == 40);
	CHECK(res.ints_in_order);

	/* without all_pages: the first page only */
	req.all_pages = false;
	req.prepare = false;
	memset(&res, 0, sizeof(res));
	cql_client_execute(env.client, &req, on_reply, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK(res.pages == 1);
	CHECK(res.rows == 10);
	CHECK(res.ints_in_order);
out:
	env_free(&env);
}

static void test_error_frame(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	if (!env_client(&env))
		goto out;
	query(&env, "WRITE_TIMEOUT", &res);
	CHECK_STR(res.error,
		  "write timeout at LOCAL_QUORUM (1 of 2 replicas acknowledged, type SIMPLE)");
	CHECK(res.code == CQL_ERROR_WRITE_TIMEOUT);
	CHECK(res.rows == 0);
	CHECK_STR(res.host, env.nodes[0].name);

	/* a frame that does not parse spoils only its own request */
	query(&env, "GARBAGE", &res);
	CHECK(strncmp(res.error, "bad response from 127.0.0.1:", 28) == 0);
	CHECK(res.code == -1);
	query(&env, "WHO", &res);
	CHECK_STR(res.error, "");
	CHECK(env.nodes[0].accepted == 1);
out:
	env_free(&env);
}

static void test_interleaved(void)
{
	struct env env;
	struct result res[5];
	char cql[5][32];
	env_init(&env, 1);
	if (!env_client(&env))
		goto out;
	env.nodes[0].hold_until = 5;
	for (int i = 0; i < 5; i++) {
		snprintf(cql[i], sizeof(cql[i]), "ECHO answer-%d", i);
		execute(&env, cql[i], false, &res[i]);
	}
	for (int i = 0; i < 5; i++)
		CHECK(run_until(&env, WAIT_CALLS, &res[i].calls, 1, 3000));
	for (int i = 0; i < 5; i++) {
		char expect[32];
		snprintf(expect, sizeof(expect), "answer-%d", i);
		CHECK_STR(res[i].first, expect);
		CHECK(res[i].calls == 1);
	}
	/* answered in reverse: the callbacks ran in that order too */
	CHECK(res[4].order < res[0].order);
out:
	env_free(&env);
}

static void test_prepared(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	if (!env_client(&env))
		goto out;
	struct cql_request req = {
		.cql = "WHO",
		.prepare = true,
		.consistency = CQL_CONSISTENCY_ONE,
	};
	for (int i = 0; i < 2; i++) {
		memset(&res, 0, sizeof(res));
		cql_client_execute(env.client, &req, on_reply, &res);
		CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
		CHECK_STR(res.error, "");
		CHECK_STR(res.first, "dc1");
	}
	CHECK(env.nodes[0].prepares == 1);
	CHECK(env.nodes[0].executes == 2);

	/* the node restarted: Unprepared, prepared again, executed again */
	env.nodes[0].generation++;
	memset(&res, 0, sizeof(res));
	cql_client_execute(env.client, &req, on_reply, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK_STR(res.error, "");
	CHECK_STR(res.first, "dc1");
	CHECK(env.nodes[0].prepares == 2);
	CHECK(env.nodes[0].executes == 4);

	/* values go with it */
	struct cql_buf values = {0};
	cql_buf_put_int(&values, 7);
	req.values = values.data;
	req.values_len = values.len;
	req.value_count = 1;
	memset(&res, 0, sizeof(res));
	cql_client_execute(env.client, &req, on_reply, &res);
	cql_buf_free(&values); /* copied by execute */
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK_STR(res.error, "");

	/* a value block that does not match value_count fails, later */
	unsigned char bad[2] = {0, 1};
	req.values = bad;
	req.values_len = 2;
	memset(&res, 0, sizeof(res));
	in_execute = true;
	cql_client_execute(env.client, &req, on_reply, &res);
	in_execute = false;
	CHECK(res.calls == 0);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK(strncmp(res.error, "cannot send the request: ", 25) == 0);
out:
	env_free(&env);
}

static void test_node_closes(void)
{
	struct env env;
	struct result res;
	env_init(&env, 2);
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 2, 2000));

	/* idempotent: retried on the other node, whichever got it first */
	execute(&env, "CLOSE", true, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK(strstr(res.error, "lost with the request in flight: the node closed the "
				"connection") != NULL);
	/* the first node closed, the retry went to the other, which closed too */
	CHECK(env.nodes[0].queries + env.nodes[1].queries == 2 + 2);

	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 2, 2000));
	/* non-idempotent: fails */
	execute(&env, "CLOSE", false, &res);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK(strstr(res.error, "lost with the request in flight: the node closed the "
				"connection") != NULL);
	CHECK(res.code == -1);
	CHECK(env.nodes[0].queries + env.nodes[1].queries == 2 + 3);
out:
	env_free(&env);
}

/* The node dies with an idempotent request on it: the other node answers. */
static void test_retry_other_node(void)
{
	struct env env;
	struct result res;
	env_init(&env, 2);
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 2, 2000));
	/* both nodes hold ECHO; the one that gets it dies */
	env.nodes[0].hold_until = 100;
	env.nodes[1].hold_until = 100;
	execute(&env, "ECHO retried", true, &res);
	/* let the request reach a node */
	for (int i = 0; i < 50 && env.nodes[0].held_count + env.nodes[1].held_count == 0; i++)
		event_base_loop(env.base, EVLOOP_ONCE);
	unsigned victim = env.nodes[0].held_count > 0 ? 0 : 1;
	CHECK(env.nodes[victim].held_count == 1);
	env.nodes[victim].held_count = 0;
	env.nodes[1 - victim].hold_until = 1; /* the survivor answers at once */
	fake_node_stop(&env.nodes[victim]);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK_STR(res.error, "");
	CHECK_STR(res.first, "retried");
	CHECK_STR(res.host, env.nodes[1 - victim].name);
out:
	env_free(&env);
}

static void test_request_timeout(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	env.set.request_timeout_ms = 150;
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	query(&env, "SILENT", &res);
	char expect[128];
	snprintf(expect, sizeof(expect), "request timed out after 150 ms on %s", env.nodes[0].name);
	CHECK_STR(res.error, expect);
	CHECK(res.code == -1);
	/* the heartbeat is answered: the connection stays */
	for (int i = 0; i < 20; i++)
		event_base_loop(env.base, EVLOOP_NONBLOCK);
	query(&env, "WHO", &res);
	CHECK_STR(res.error, "");
	CHECK(env.nodes[0].options == 1);
	CHECK(env.nodes[0].accepted == 1);

	/* a node that answers nothing at all is closed after the heartbeat */
	env.nodes[0].mute = true;
	query(&env, "WHO", &res);
	CHECK_STR(res.error, expect);
	CHECK(run_until(&env, WAIT_HOSTS_DOWN, NULL, 0, 2000));
out:
	env_free(&env);
}

static void test_reconnect(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	env.set.connections_per_host = 2;
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	fake_node_stop(&env.nodes[0]);
	CHECK(run_until(&env, WAIT_HOSTS_DOWN, NULL, 0, 2000));
	/* let it fail to reconnect a few times */
	bool expired = false;
	struct event *pause = evtimer_new(env.base, set_flag, &expired);
	struct timeval tv = {0, 120 * 1000};
	evtimer_add(pause, &tv);
	while (!expired)
		event_base_loop(env.base, EVLOOP_ONCE);
	event_free(pause);
	char describe[512];
	cql_client_describe(env.client, describe, sizeof(describe));
	CHECK(strstr(describe, "down 0/2 connections") != NULL);
	CHECK(strstr(describe, "connection refused") != NULL);

	/* while it is down, a request waits; the node comes back in time */
	execute(&env, "WHO", false, &res);
	fake_node_start(&env.nodes[0]);
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 3000));
	CHECK_STR(res.error, "");
	CHECK_STR(res.first, "dc1");
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	cql_client_describe(env.client, describe, sizeof(describe));
	/* both connections come back (the backoff is at most 50 ms) */
	for (int i = 0; i < 100 && strstr(describe, "up 2/2") == NULL; i++) {
		event_base_loop(env.base, EVLOOP_ONCE);
		cql_client_describe(env.client, describe, sizeof(describe));
	}
	CHECK(strstr(describe, "up 2/2 connections") != NULL);
out:
	env_free(&env);
}

static void test_local_dc(void)
{
	struct env env;
	struct result res;
	env_init(&env, 2); /* node 0 in dc1, node 1 in dc2 */
	env.set.local_dc = "dc2";
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 2, 2000));
	for (int i = 0; i < 6; i++) {
		query(&env, "WHO", &res);
		CHECK_STR(res.first, "dc2");
		CHECK_STR(res.host, env.nodes[1].name);
	}
	char describe[512];
	cql_client_describe(env.client, describe, sizeof(describe));
	CHECK(strstr(describe, "dc1 (remote) up") != NULL);

	/* the local node goes down: the remote one serves */
	fake_node_stop(&env.nodes[1]);
	CHECK(run_until(&env, WAIT_HOSTS_DOWN, NULL, 1, 2000));
	query(&env, "WHO", &res);
	CHECK_STR(res.first, "dc1");
	CHECK_STR(res.host, env.nodes[0].name);

	/* and back to local when it returns */
	fake_node_start(&env.nodes[1]);
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 2, 2000));
	query(&env, "WHO", &res);
	CHECK_STR(res.first, "dc2");
out:
	env_free(&env);
}

/* A request made before any connection is up is not sent to whichever node's
 * handshake happens to finish first: it waits for the local data centre's
 * nodes to have had a first try. */
static void test_local_dc_at_start(void)
{
	struct env env;
	struct result res;
	env_init(&env, 2); /* node 0 in dc1 (connected to first), node 1 in dc2 */
	env.set.local_dc = "dc2";
	if (!env_client(&env))
		goto out;
	for (int i = 0; i < 3; i++) {
		query(&env, "WHO", &res);
		CHECK_STR(res.first, "dc2");
		CHECK_STR(res.host, env.nodes[1].name);
	}
out:
	env_free(&env);
}

/* ... but not forever: a local node that does not answer its handshake is
 * given up after connect_timeout_ms, and the remote one serves. */
static void test_local_dc_silent_at_start(void)
{
	struct env env;
	struct result res;
	env_init(&env, 2);
	env.set.local_dc = "dc2";
	env.nodes[1].mute = true;
	if (!env_client(&env))
		goto out;
	execute(&env, "WHO", false, &res);
	CHECK(!run_until(&env, WAIT_CALLS, &res.calls, 1, 100)); /* < connect_timeout_ms */
	CHECK(run_until(&env, WAIT_CALLS, &res.calls, 1, 2000));
	CHECK_STR(res.error, "");
	CHECK_STR(res.first, "dc1");
	CHECK_STR(res.host, env.nodes[0].name);
out:
	env_free(&env);
}

static void test_no_local_dc_round_robin(void)
{
	struct env env;
	struct result res;
	env_init(&env, 2);
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 2, 2000));
	unsigned seen[2] = {0, 0};
	for (int i = 0; i < 6; i++) {
		query(&env, "WHO", &res);
		seen[strcmp(res.first, "dc1") == 0 ? 0 : 1]++;
	}
	CHECK(seen[0] == 3 && seen[1] == 3);
out:
	env_free(&env);
}

static void test_queue_max(void)
{
	struct env env;
	struct result res[3];
	env_init(&env, 1);
	fake_node_stop(&env.nodes[0]); /* nobody listens on that port */
	env.set.queue_max = 2;
	env.set.request_timeout_ms = 200;
	if (!env_client(&env))
		goto out;
	for (int i = 0; i < 3; i++)
		execute(&env, "WHO", false, &res[i]);
	CHECK(res[2].calls == 0); /* not inside execute */
	CHECK(run_until(&env, WAIT_CALLS, &res[2].calls, 1, 1000));
	CHECK_STR(res[2].error, "request queue full (2 requests waiting for a connection)");
	CHECK(res[2].code == -1);
	/* the queued ones fail once every connection has failed (at the
	 * latest at their timeout), with the reason */
	CHECK(run_until(&env, WAIT_CALLS, &res[1].calls, 1, 2000));
	CHECK(res[0].calls == 1);
	char expect[256];
	snprintf(expect, sizeof(expect), "no connection to any of %s: connection refused",
		 env.nodes[0].name);
	CHECK_STR(res[0].error, expect);
	CHECK_STR(res[1].error, expect);
out:
	env_free(&env);
}

static void test_streams_exhausted(void)
{
	struct env env;
	struct result res[6];
	char cql[6][32];
	env_init(&env, 1);
	env.set.streams_per_connection = 2;
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	/* two streams: ECHOs wait in the queue and go out as streams free */
	env.nodes[0].hold_until = 2;
	for (int i = 0; i < 6; i++) {
		snprintf(cql[i], sizeof(cql[i]), "ECHO %d", i);
		execute(&env, cql[i], false, &res[i]);
	}
	for (int i = 0; i < 6; i++) {
		CHECK(run_until(&env, WAIT_CALLS, &res[i].calls, 1, 3000));
		char expect[8];
		snprintf(expect, sizeof(expect), "%d", i);
		CHECK_STR(res[i].first, expect);
	}
out:
	env_free(&env);
}

static void test_max_frame(void)
{
	struct env env;
	struct result res;
	env_init(&env, 1);
	env.set.max_frame = 1024;
	if (!env_client(&env))
		goto out;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	query(&env, "ROWS 100 100", &res);
	CHECK(strstr(res.error, "CQL frame is longer than the maximum frame size") != NULL);
	/* it reconnects and goes on */
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	query(&env, "ROWS 2 10", &res);
	CHECK_STR(res.error, "");
	CHECK(res.rows == 2);
out:
	env_free(&env);
}

static void test_cancel(void)
{
	struct env env;
	struct result res[3], after;
	env_init(&env, 1);
	env.set.request_timeout_ms = 150;
	if (!env_client(&env))
		goto out;
	/* queued, then cancelled */
	struct cql_pending *p = execute(&env, "WHO", false, &res[0]);
	cql_client_cancel(&p);
	CHECK(p == NULL);
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	/* in flight, then cancelled: the answer is dropped */
	p = execute(&env, "WHO", false, &res[1]);
	cql_client_cancel(&p);
	/* done but not yet called back */
	p = execute(&env, "WRITE_TIMEOUT", false, &res[2]);
	for (int i = 0; i < 5; i++)
		event_base_loop(env.base, EVLOOP_NONBLOCK);
	if (res[2].calls == 0)
		cql_client_cancel(&p);
	query(&env, "WHO", &after);
	CHECK_STR(after.error, "");
	bool expired = false;
	struct event *pause = evtimer_new(env.base, set_flag, &expired);
	struct timeval tv = {0, 300 * 1000};
	evtimer_add(pause, &tv);
	while (!expired)
		event_base_loop(env.base, EVLOOP_ONCE);
	event_free(pause);
	CHECK(res[0].calls == 0);
	CHECK(res[1].calls == 0);
	CHECK(res[2].calls <= 1);
out:
	env_free(&env);
}

struct destroy_ctx {
	struct cql_client **client;
	int calls;
};

static void on_reply_destroy(const struct cql_reply *reply, void *context)
{
	struct destroy_ctx *ctx = context;
	ctx->calls++;
	cql_client_destroy(ctx->client);
}

static void test_destroy_in_callback(void)
{
	struct env env;
	struct destroy_ctx ctx = {0};
	struct result other;
	env_init(&env, 1);
	if (!env_client(&env))
		goto out;
	ctx.client = &env.client;
	CHECK(run_until(&env, WAIT_HOSTS_UP, NULL, 1, 2000));
	env.nodes[0].hold_until = 2;
	struct cql_request req = {.cql = "ECHO a", .consistency = CQL_CONSISTENCY_ONE};
	execute(&env, "ECHO b", false, &other);
	cql_client_execute(env.client, &req, on_reply_destroy, &ctx);
	/* the answers come in reverse, together: the first callback destroys
	 * the client, the other one never runs */
	CHECK(run_until(&env, WAIT_CALLS, &ctx.calls, 1, 2000));
	for (int i = 0; i < 5; i++)
		event_base_loop(env.base, EVLOOP_NONBLOCK);
	CHECK(env.client == NULL);
	CHECK(ctx.calls == 1);
	CHECK(other.calls == 0);
out:
	env_free(&env);
}

static void test_create_errors(void)
{
	struct event_base *base = event_base_new();
	struct cql_client *client = NULL;
	const char *error = NULL;
	struct cql_client_settings set = {0};

	CHECK(cql_client_create(base, &set, &client, &error) == -1);
	CHECK_STR(error, "no CQL hosts configured");
	const char *bad_port[] = {"127.0.0.1:99999"};
	set.hosts = bad_port;
	set.host_count = 1;
	CHECK(cql_client_create(base, &set, &client, &error) == -1);
	CHECK_STR(error, "bad CQL host \"127.0.0.1:99999\": port must be 1..65535");
	CHECK(client == NULL);
	const char *v6[] = {"[::1]:19042", "::1"};
	set.hosts = v6;
	set.host_count = 2;
	set.connections_per_host = 1;
	set.connect_timeout_ms = 100;
	CHECK(cql_client_create(base, &set, &client, &error) == 0);
	char describe[256];
	cql_client_describe(client, describe, sizeof(describe));
	CHECK(strncmp(describe, "[::1]:19042 dc? down 0/1 connections, 0 in flight", 49) == 0);
	CHECK(strstr(describe, ", [::1]:9042 dc? down") != NULL);
	cql_client_destroy(&client);
	CHECK(client == NULL);
	event_base_free(base);
}

/* A self-signed certificate for the name san ("IP:127.0.0.1"). */
static X509 *make_cert(EVP_PKEY *key, const char *san)
{
	X509 *cert = X509_new();
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, key);
	X509_NAME *name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fake node", -1,
				   -1, 0);
	X509_set_issuer_name(cert, name);
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(cert, key, EVP_sha256());
	return cert;
}

static void test_tls(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	const char *sans[2] = {"IP:127.0.0.1", "IP:127.0.0.2"};

	for (int i = 0; i < 2; i++) {
		struct env env;
		struct result res;
		X509 *cert = make_cert(key, sans[i]);
		SSL_CTX *server = SSL_CTX_new(TLS_server_method());
		SSL_CTX_use_certificate(server, cert);
		SSL_CTX_use_PrivateKey(server, key);
		SSL_CTX *client = SSL_CTX_new(TLS_client_method());
		X509_STORE_add_cert(SSL_CTX_get_cert_store(client), cert);

		env_init(&env, 1);
		env.nodes[0].ssl_ctx = server;
		env.set.ssl_ctx = client;
		env.set.tls_verify = true;
		env.set.request_timeout_ms = 300;
		if (env_client(&env)) {
			SSL_CTX_free(client); /* the client keeps its own reference */
			client = NULL;
			query(&env, "ROWS 50 100", &res);
			if (i == 0) {
				/* the certificate names 127.0.0.1 */
				CHECK_STR(res.error, "");
				CHECK(res.rows == 50);
			} else {
				/* it names another address */
				CHECK(strstr(res.error, "TLS error: ") != NULL);
				CHECK(strstr(res.error, "certificate verify failed (IP address "
							"mismatch)") != NULL);
			}
		}
		env_free(&env);
		SSL_CTX_free(client);
		SSL_CTX_free(server);
		X509_free(cert);
	}
	EVP_PKEY_free(key);
}

void suite_cql_client(void)
{
	/* the client logs every connection up and down: keep the run quiet
	 * (LOG_LEVEL_DEBUG here shows the client's side of each test) */
	log_init("unit", true, LOG_LEVEL_ERROR);
	test_create_errors();
	test_simple_query();
	test_wait();
	test_auth();
	test_missing_keyspace();
	test_large_result_trickled();
	test_paging();
	test_error_frame();
	test_interleaved();
	test_prepared();
	test_node_closes();
	test_retry_other_node();
	test_request_timeout();
	test_reconnect();
	test_local_dc();
	test_local_dc_at_start();
	test_local_dc_silent_at_start();
	test_no_local_dc_round_robin();
	test_queue_max();
	test_streams_exhausted();
	test_max_frame();
	test_cancel();
	test_destroy_in_callback();
	test_tls();
	CHECK(callback_problems == 0);
	log_init("unit", true, LOG_LEVEL_INFO);
}
