/* cql_client.c - see cql_client.h.
 *
 * How the parts fit:
 *   client    the settings, the hosts, the request queue, the statement
 *             table (the texts of prepare=true requests, interned, each with
 *             an index) and the done list.  A finished request goes on the
 *             done list and a zero-time event (done_event) runs the
 *             callbacks from the event loop.  Nothing else ever calls back,
 *             so the connection code never sees a callback re-enter it (a
 *             callback may execute, cancel or even destroy the client).
 *   host      one node: its address, the data centre system.local named,
 *             its connections.
 *   conn      one connection: a bufferevent, a state (connecting, the
 *             handshake steps, ready), one slot per stream id with a free
 *             list of ids, the ids of the statements prepared on it, and one
 *             timer: the connect + handshake deadline, the reconnect delay,
 *             or the deadline of a heartbeat.
 *   pending   one request from cql_client_execute() to its callback: a copy
 *             of the request, where it is (queued, on a stream, done), the
 *             pages fetched so far (each page's frame kept whole, since the
 *             rows are views into it) and its deadline timer.
 *
 * Flow of a request: execute() puts it on a connection right away if one is
 * ready with a free stream, else on the queue; dispatch() moves queued
 * requests onto connections whenever a stream or a connection frees up.
 * An answer frame is read whole (cql_frame_peek() on the header, then the
 * frame copied out of the input buffer), parsed and routed by stream id.
 *
 * Stream ids are never reused while the node may still answer on them: a
 * request that times out or is cancelled leaves its slot "orphaned" until
 * the answer comes (and is dropped) or the connection closes.  A request
 * timing out also sends an OPTIONS heartbeat on its connection; a node that
 * does not answer that within connect_timeout_ms is closed, so that a node
 * that went silent (no RST) cannot hold requests forever.
 */
#include "store/cql_client.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/net_util.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define DEFAULT_PORT 9042
#define DEFAULT_CONNECTIONS_PER_HOST 2
#define DEFAULT_STREAMS_PER_CONNECTION 1024
#define MAX_STREAMS_PER_CONNECTION 32768
#define DEFAULT_QUEUE_MAX 10000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_REQUEST_TIMEOUT_MS 5000
#define DEFAULT_RECONNECT_MIN_MS 100
#define DEFAULT_RECONNECT_MAX_MS 10000
#define DEFAULT_MAX_FRAME ((size_t)64 * 1024 * 1024)
#define REASON_MAX 256
#define ERROR_MAX 512

#define DC_QUERY "SELECT data_center FROM system.local"

enum conn_state {
	CONN_DOWN,       /* waiting for the reconnect timer */
	CONN_CONNECTING, /* TCP (and TLS) connect */
	CONN_STARTUP,    /* STARTUP sent */
	CONN_AUTH,       /* AUTH_RESPONSE sent */
	CONN_LOCAL,      /* SELECT data_center FROM system.local sent */
	CONN_USE,        /* USE "keyspace" sent */
	CONN_READY,
};

static const char *const conn_state_names[] = {
	"down", "connecting", "STARTUP", "authentication", "system.local", "USE", "ready",
};

enum slot_kind {
	SLOT_FREE,
	SLOT_HANDSHAKE, /* the handshake step conn->state names */
	SLOT_USE,       /* USE retried on a ready connection */
	SLOT_PROBE,     /* OPTIONS heartbeat */
	SLOT_REQUEST,   /* QUERY or EXECUTE of slot->pending */
	SLOT_PREPARE,   /* PREPARE for slot->pending, EXECUTE follows */
	SLOT_ORPHAN,    /* its request is gone; drop the answer */
};

struct slot {
	enum slot_kind kind;
	struct cql_pending *pending;
};

struct prepared_id {
	unsigned char *id; /* NULL: not prepared on this connection */
	uint16_t len;
};

struct cql_host;

struct cql_conn {
	struct cql_host *host;
	unsigned index;
	enum conn_state state;
	struct bufferevent *bev;
	/* bumped whenever bev is freed, so that a loop over its input can
	 * tell that the connection went away under it */
	unsigned generation;
	struct event timer;
	unsigned backoff_ms;
	struct slot *slots;
	uint16_t *free_ids;
	unsigned free_count;
	/* indexed by statement index; prepared_alloc entries */
	struct prepared_id *prepared;
	unsigned prepared_alloc;
	bool keyspace_missing; /* USE failed with Invalid: no such keyspace (yet) */
	bool use_pending;      /* a retried USE is in flight: send nothing else */
	bool probe_pending;    /* an OPTIONS heartbeat is in flight */
	char last_error[REASON_MAX];
};

struct cql_host {
	struct cql_client *client;
	char *address; /* as configured, without the port */
	uint16_t port;
	char *name; /* "address:port" */
	char *dc;   /* from system.local; NULL until known */
	struct cql_conn *conns;
	unsigned ready_count;
	bool tried; /* a connection to it was ready, or failed, at least once */
};

struct statement {
	char *text;
	uint64_t hash;
	unsigned index;
	struct statement *next; /* in its bucket */
};

enum pending_state { PENDING_QUEUED, PENDING_SENT, PENDING_DONE, PENDING_CALLBACK };

struct cql_pending {
	struct cql_client *client;
	struct cql_pending *prev, *next; /* in the queue or the done list */
	enum pending_state state;
	cql_callback *callback;
	void *context;

	char *cql;              /* prepare = false */
	struct statement *stmt; /* prepare = true */
	unsigned char *values;
	size_t values_len;
	unsigned value_count;
	enum cql_consistency consistency;
	bool with_serial_consistency;
	enum cql_consistency serial_consistency;
	int32_t page_size;
	bool all_pages, idempotent;

	bool retried;    /* already moved to another node once */
	bool reprepared; /* already re-prepared after Unprepared once */
	struct cql_host *avoid_host;
	struct cql_conn *conn; /* PENDING_SENT */
	uint16_t stream;
	struct event timer;

	unsigned char *paging_state;
	size_t paging_state_len;
	unsigned char **frames;
	struct cql_rows *pages;
	unsigned page_count, page_alloc;

	int32_t kind;
	int32_t error_code;
	char *error;
	const char *host;
};

struct pending_list {
	struct cql_pending *head, *tail;
	unsigned count;
};

struct cql_client {
	struct event_base *base;
	char *keyspace, *local_dc, *username, *password;
	SSL_CTX *ssl_ctx;
	bool tls_verify;
	unsigned connections_per_host, streams_per_connection, queue_max;
	unsigned connect_timeout_ms, request_timeout_ms, reconnect_min_ms, reconnect_max_ms;
	size_t max_frame;

	struct cql_host *hosts;
	unsigned host_count;
	unsigned round_robin;

	struct pending_list queue, done;
	struct event done_event;
	struct cql_pending *in_callback;
	bool running_callbacks, destroy_requested;

	struct statement **stmt_buckets;
	unsigned stmt_bucket_count, stmt_count;

	struct cql_buf out; /* scratch for building frames */
	uint64_t random_state;
	char last_error[REASON_MAX];
};

static void conn_connect(struct cql_conn *conn);
static void conn_fail(struct cql_conn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void dispatch(struct cql_client *client);

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
	char *copy = strdup(s);
	if (copy == NULL)
		abort();
	return copy;
}

static void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
	if (p == NULL)
		abort();
	return p;
}

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size == 0 ? 1 : size);
	if (p == NULL)
		abort();
	return p;
}

static void *xmemdup(const void *data, size_t len)
{
	void *copy = malloc(len == 0 ? 1 : len);
	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, data, len);
	return copy;
}

static struct timeval ms_to_timeval(unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	return tv;
}

static uint64_t random_next(struct cql_client *client)
{
	/* xorshift64: jitter only, nothing to guess */
	uint64_t x = client->random_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	client->random_state = x;
	return x;
}

/* "Connection refused" -> "connection refused", as sentences go on. */
static void lowercase_first(char *s)
{
	if (s[0] != '\0' && isupper((unsigned char)s[0]) && !isupper((unsigned char)s[1]))
		s[0] = (char)tolower((unsigned char)s[0]);
}

static bool host_is_local(const struct cql_client *client, const struct cql_host *host)
{
	if (client->local_dc == NULL)
		return true;
	return host->dc != NULL && strcmp(host->dc, client->local_dc) == 0;
}

/* ---- pending lists ---- */

static void list_append(struct pending_list *list, struct cql_pending *p)
{
	p->next = NULL;
	p->prev = list->tail;
	if (list->tail != NULL)
		list->tail->next = p;
	else
		list->head = p;
	list->tail = p;
	list->count++;
}

static void list_prepend(struct pending_list *list, struct cql_pending *p)
{
	p->prev = NULL;
	p->next = list->head;
	if (list->head != NULL)
		list->head->prev = p;
	else
		list->tail = p;
	list->head = p;
	list->count++;
}

static void list_remove(struct pending_list *list, struct cql_pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		list->head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		list->tail = p->prev;
	p->prev = p->next = NULL;
	list->count--;
}

/* ---- statements ---- */

static struct statement *statement_intern(struct cql_client *client, const char *text)
{
	uint64_t hash = hash_fnv1a64(text, strlen(text));
	unsigned bucket = (unsigned)(hash & (client->stmt_bucket_count - 1));
	for (struct statement *s = client->stmt_buckets[bucket]; s != NULL; s = s->next) {
		if (s->hash == hash && strcmp(s->text, text) == 0)
			return s;
	}
	if (client->stmt_count >= client->stmt_bucket_count) {
		unsigned new_count = client->stmt_bucket_count * 2;
		struct statement **buckets = xcalloc(new_count, sizeof(*buckets));
		for (unsigned i = 0; i < client->stmt_bucket_count; i++) {
			struct statement *s = client->stmt_buckets[i], *next;
			for (; s != NULL; s = next) {
				next = s->next;
				unsigned b = (unsigned)(s->hash & (new_count - 1));
				s->next = buckets[b];
				buckets[b] = s;
			}
		}
		free(client->stmt_buckets);
		client->stmt_buckets = buckets;
		client->stmt_bucket_count = new_count;
		bucket = (unsigned)(hash & (new_count - 1));
	}
	struct statement *s = xcalloc(1, sizeof(*s));
	s->text = xstrdup(text);
	s->hash = hash;
	s->index = client->stmt_count++;
	s->next = client->stmt_buckets[bucket];
	client->stmt_buckets[bucket] = s;
	return s;
}

static const struct prepared_id *prepared_lookup(const struct cql_conn *conn,
						 const struct statement *stmt)
{
	if (stmt->index >= conn->prepared_alloc || conn->prepared[stmt->index].id == NULL)
		return NULL;
	return &conn->prepared[stmt->index];
}

static void prepared_store(struct cql_conn *conn, const struct statement *stmt,
			   const unsigned char *id, uint16_t len)
{
	if (stmt->index >= conn->prepared_alloc) {
		unsigned new_alloc = conn->prepared_alloc == 0 ? 16 : conn->prepared_alloc;
		while (new_alloc <= stmt->index)
			new_alloc *= 2;
		conn->prepared = xrealloc(conn->prepared, new_alloc * sizeof(*conn->prepared));
		memset(conn->prepared + conn->prepared_alloc, 0,
		       (new_alloc - conn->prepared_alloc) * sizeof(*conn->prepared));
		conn->prepared_alloc = new_alloc;
	}
	free(conn->prepared[stmt->index].id);
	conn->prepared[stmt->index].id = xmemdup(id, len);
	conn->prepared[stmt->index].len = len;
}

static void prepared_forget(struct cql_conn *conn, const struct statement *stmt)
{
	if (stmt->index < conn->prepared_alloc) {
		free(conn->prepared[stmt->index].id);
		conn->prepared[stmt->index].id = NULL;
	}
}

static void prepared_clear(struct cql_conn *conn)
{
	for (unsigned i = 0; i < conn->prepared_alloc; i++)
		free(conn->prepared[i].id);
	free(conn->prepared);
	conn->prepared = NULL;
	conn->prepared_alloc = 0;
}

/* ---- finishing requests ---- */

static void pending_free(struct cql_pending *p)
{
	event_del(&p->timer);
	free(p->cql);
	free(p->values);
	free(p->paging_state);
	for (unsigned i = 0; i < p->page_count; i++)
		free(p->frames[i]);
	free(p->frames);
	free(p->pages);
	free(p->error);
	free(p);
}

/* p is in no list and on no stream: hand it to the done list. */
static void pending_finish(struct cql_pending *p)
{
	struct cql_client *client = p->client;
	event_del(&p->timer);
	p->conn = NULL;
	p->state = PENDING_DONE;
	list_append(&client->done, p);
	event_active(&client->done_event, EV_TIMEOUT, 0);
}

static void pending_fail(struct cql_pending *p, int32_t code, const char *host, const char *fmt,
			 ...) __attribute__((format(printf, 4, 5)));
static void pending_fail(struct cql_pending *p, int32_t code, const char *host, const char *fmt,
			 ...)
{
	char sentence[ERROR_MAX];
	va_list args;
	va_start(args, fmt);
	vsnprintf(sentence, sizeof(sentence), fmt, args);
	va_end(args);
	free(p->error);
	p->error = xstrdup(sentence);
	p->error_code = code;
	p->host = host;
	pending_finish(p);
}

static void done_run(evutil_socket_t fd, short what, void *context)
{
	struct cql_client *client = context;
	struct cql_pending *p;

	client->running_callbacks = true;
	while (!client->destroy_requested && (p = client->done.head) != NULL) {
		list_remove(&client->done, p);
		p->state = PENDING_CALLBACK;
		struct cql_reply reply = {
			.error = p->error,
			.error_code = p->error != NULL ? p->error_code : 0,
			.kind = p->error != NULL ? 0 : p->kind,
			.pages = p->error != NULL || p->page_count == 0 ? NULL : p->pages,
			.page_count = p->error != NULL ? 0 : p->page_count,
			.host = p->host != NULL ? p->host : "",
		};
		client->in_callback = p;
		if (p->callback != NULL)
			p->callback(&reply, p->context);
		client->in_callback = NULL;
		pending_free(p);
	}
	client->running_callbacks = false;
	if (client->destroy_requested) {
		struct cql_client *doomed = client;
		client->destroy_requested = false;
		cql_client_destroy(&doomed);
	}
}

static void no_connection_sentence(struct cql_client *client, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "no connection to any of ");
	for (unsigned i = 0; i < client->host_count && len < size; i++) {
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i > 0 ? ", " : "",
					client->hosts[i].name);
	}
	if (len < size) {
		snprintf(buf + len, size - len, ": %s",
			 client->last_error[0] != '\0' ? client->last_error : "still connecting");
	}
}

static void pending_timeout(evutil_socket_t fd, short what, void *context);

/* ---- connections: stream slots ---- */

static void slots_reset(struct cql_conn *conn)
{
	unsigned count = conn->host->client->streams_per_connection;
	for (unsigned i = 0; i < count; i++) {
		conn->slots[i].kind = SLOT_FREE;
		conn->slots[i].pending = NULL;
		/* pop order 0, 1, 2, ...: low ids first */
		conn->free_ids[i] = (uint16_t)(count - 1 - i);
	}
	conn->free_count = count;
}

static uint16_t slot_take(struct cql_conn *conn, enum slot_kind kind, struct cql_pending *p)
{
	uint16_t stream = conn->free_ids[--conn->free_count];
	conn->slots[stream].kind = kind;
	conn->slots[stream].pending = p;
	return stream;
}

static void slot_release(struct cql_conn *conn, uint16_t stream)
{
	conn->slots[stream].kind = SLOT_FREE;
	conn->slots[stream].pending = NULL;
	conn->free_ids[conn->free_count++] = stream;
}

static unsigned conn_in_flight(const struct cql_conn *conn)
{
	return conn->host->client->streams_per_connection - conn->free_count;
}

/* Sends what client->out holds. */
static void conn_write_out(struct cql_conn *conn)
{
	struct cql_client *client = conn->host->client;
	if (bufferevent_write(conn->bev, client->out.data, client->out.len) < 0)
		abort(); /* out of memory, as cql_buf does */
	client->out.len = 0;
}

static void request_params(const struct cql_pending *p, struct cql_query_params *params)
{
	memset(params, 0, sizeof(*params));
	params->consistency = p->consistency;
	params->values = p->values;
	params->values_len = p->values_len;
	params->value_count = p->value_count;
	params->page_size = p->page_size;
	if (p->paging_state != NULL) {
		params->paging_state = p->paging_state;
		params->paging_state_len = p->paging_state_len;
	}
	params->with_serial_consistency = p->with_serial_consistency;
	params->serial_consistency = p->serial_consistency;
}

/* Writes p's next frame on stream (already taken for p): PREPARE if its
 * statement is not prepared on conn, else EXECUTE or QUERY. */
static void conn_write_request(struct cql_conn *conn, uint16_t stream, struct cql_pending *p)
{
	struct cql_client *client = conn->host->client;
	struct cql_query_params params;
	const char *error;
	int ret;

	p->conn = conn;
	p->stream = stream;
	p->state = PENDING_SENT;
	client->out.len = 0;
	request_params(p, &params);
	if (p->stmt != NULL) {
		const struct prepared_id *id = prepared_lookup(conn, p->stmt);
		if (id == NULL) {
			conn->slots[stream].kind = SLOT_PREPARE;
			ret = cql_build_prepare(&client->out, (int16_t)stream, p->stmt->text,
						&error);
		} else {
			conn->slots[stream].kind = SLOT_REQUEST;
			ret = cql_build_execute(&client->out, (int16_t)stream, id->id, id->len,
						&params, &error);
		}
	} else {
		conn->slots[stream].kind = SLOT_REQUEST;
		ret = cql_build_query(&client->out, (int16_t)stream, p->cql, &params, &error);
	}
	conn->slots[stream].pending = p;
	if (ret < 0) {
		slot_release(conn, stream);
		pending_fail(p, -1, "", "cannot send the request: %s", error);
		return;
	}
	conn_write_out(conn);
}

/* ---- connections: handshake ---- */

static void conn_send_internal(struct cql_conn *conn, enum slot_kind kind, const char *query)
{
	struct cql_client *client = conn->host->client;
	struct cql_query_params params = {.consistency = CQL_CONSISTENCY_ONE};
	const char *error;
	uint16_t stream = slot_take(conn, kind, NULL);
	int ret;

	client->out.len = 0;
	if (kind == SLOT_PROBE)
		ret = cql_build_options(&client->out, (int16_t)stream, &error);
	else
		ret = cql_build_query(&client->out, (int16_t)stream, query, &params, &error);
	if (ret < 0) {
		slot_release(conn, stream);
		conn_fail(conn, "cannot build %s: %s", query != NULL ? query : "OPTIONS", error);
		return;
	}
	conn_write_out(conn);
}

static void use_query(const struct cql_client *client, char *buf, size_t size)
{
	/* USE "name" with quotes doubled: the name is taken as written */
	size_t len = (size_t)snprintf(buf, size, "USE \"");
	for (const char *s = client->keyspace; *s != '\0' && len + 3 < size; s++) {
		if (*s == '"')
			buf[len++] = '"';
		buf[len++] = *s;
	}
	buf[len++] = '"';
	buf[len] = '\0';
}

static void conn_send_use(struct cql_conn *conn, enum slot_kind kind)
{
	char query[600];
	use_query(conn->host->client, query, sizeof(query));
	conn_send_internal(conn, kind, query);
}

static void conn_ready(struct cql_conn *conn)
{
	struct cql_host *host = conn->host;
	struct cql_client *client = host->client;

	conn->state = CONN_READY;
	event_del(&conn->timer);
	conn->backoff_ms = client->reconnect_min_ms;
	conn->last_error[0] = '\0';
	host->tried = true;
	if (host->ready_count++ == 0) {
		log_info("event=cql_up host=%s dc=%s local=%s", host->name,
			 host->dc != NULL ? host->dc : "unknown",
			 host_is_local(client, host) ? "yes" : "no");
	}
	dispatch(client);
}

static void conn_after_local(struct cql_conn *conn)
{
	if (conn->host->client->keyspace != NULL) {
		conn->state = CONN_USE;
		conn_send_use(conn, SLOT_HANDSHAKE);
	} else {
		conn_ready(conn);
	}
}

static void conn_after_auth(struct cql_conn *conn)
{
	if (conn->host->dc == NULL) {
		conn->state = CONN_LOCAL;
		conn_send_internal(conn, SLOT_HANDSHAKE, DC_QUERY);
	} else {
		conn_after_local(conn);
	}
}

static void conn_learn_dc(struct cql_conn *conn, const struct cql_response *resp)
{
	struct cql_host *host = conn->host;
	struct cql_rows_cursor cursor;
	struct cql_value cell;
	struct cql_string dc;
	const char *error;

	if (resp->header.opcode == CQL_OPCODE_ERROR) {
		char sentence[ERROR_MAX];
		log_warning("event=cql_dc_unknown host=%s reason=\"%s\"", host->name,
			    cql_error_sentence(resp, sentence, sizeof(sentence)));
		return;
	}
	if (resp->header.opcode != CQL_OPCODE_RESULT || resp->result.kind != CQL_RESULT_ROWS) {
		log_warning("event=cql_dc_unknown host=%s reason=\"unexpected %s answer to %s\"",
			    host->name, cql_opcode_name(resp->header.opcode), DC_QUERY);
		return;
	}
	cql_rows_cursor_init(&cursor, &resp->result.rows);
	if (!cql_rows_next(&cursor, &cell, 1) || cql_value_text(&cell, &dc, &error) <= 0) {
		log_warning("event=cql_dc_unknown host=%s reason=\"system.local has no "
			    "data_center\"",
			    host->name);
		return;
	}
	char *name = xcalloc(1, dc.len + 1);
	memcpy(name, dc.data, dc.len);
	for (char *s = name; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20)
			*s = ' ';
	}
	free(host->dc);
	host->dc = name;
	log_info("event=cql_dc host=%s dc=%s local=%s", host->name, host->dc,
		 host_is_local(host->client, host) ? "yes" : "no");
}

/* The answer to a handshake step, a retried USE or a heartbeat. */
static void conn_internal_response(struct cql_conn *conn, enum slot_kind kind,
				   const struct cql_response *resp)
{
	struct cql_client *client = conn->host->client;
	uint8_t opcode = resp->header.opcode;
	char sentence[ERROR_MAX];
	const char *error;

	if (kind == SLOT_PROBE) {
		conn->probe_pending = false;
		if (conn->state == CONN_READY)
			event_del(&conn->timer);
		return;
	}
	if (kind == SLOT_USE) {
		conn->use_pending = false;
		if (opcode == CQL_OPCODE_RESULT && resp->result.kind == CQL_RESULT_SET_KEYSPACE) {
			conn->keyspace_missing = false;
			log_info("event=cql_keyspace host=%s keyspace=%s", conn->host->name,
				 client->keyspace);
		}
		dispatch(client);
		return;
	}

	switch (conn->state) {
	case CONN_STARTUP:
		if (opcode == CQL_OPCODE_READY) {
			conn_after_auth(conn);
		} else if (opcode == CQL_OPCODE_AUTHENTICATE) {
			if (client->username == NULL) {
				conn_fail(conn,
					  "node requires authentication (%.*s); set "
					  "username/password",
					  (int)resp->authenticator.len, resp->authenticator.data);
				return;
			}
			uint16_t stream = slot_take(conn, SLOT_HANDSHAKE, NULL);
			client->out.len = 0;
			if (cql_build_auth_password(&client->out, (int16_t)stream, client->username,
						    client->password, &error) < 0) {
				slot_release(conn, stream);
				conn_fail(conn, "cannot authenticate: %s", error);
				return;
			}
			conn->state = CONN_AUTH;
			conn_write_out(conn);
		} else if (opcode == CQL_OPCODE_ERROR) {
			conn_fail(conn, "STARTUP refused: %s",
				  cql_error_sentence(resp, sentence, sizeof(sentence)));
		} else {
			conn_fail(conn, "unexpected %s answer to STARTUP", cql_opcode_name(opcode));
		}
		break;
	case CONN_AUTH:
		if (opcode == CQL_OPCODE_AUTH_SUCCESS) {
			conn_after_auth(conn);
		} else if (opcode == CQL_OPCODE_ERROR) {
			/* the sentence says "authentication failed: ..." */
			conn_fail(conn, "%s", cql_error_sentence(resp, sentence, sizeof(sentence)));
		} else if (opcode == CQL_OPCODE_AUTH_CHALLENGE) {
			conn_fail(conn, "the node's authenticator sent a challenge; only "
					"PasswordAuthenticator is supported");
		} else {
			conn_fail(conn, "unexpected %s answer to AUTH_RESPONSE",
				  cql_opcode_name(opcode));
		}
		break;
	case CONN_LOCAL:
		conn_learn_dc(conn, resp);
		conn_after_local(conn);
		break;
	case CONN_USE:
		if (opcode == CQL_OPCODE_RESULT && resp->result.kind == CQL_RESULT_SET_KEYSPACE) {
			conn->keyspace_missing = false;
		} else if (opcode == CQL_OPCODE_ERROR && resp->error.code == CQL_ERROR_INVALID) {
			/* The keyspace does not exist (yet): `geodb init`
			 * connects to create it.  Requests will get the
			 * server's own sentence; USE is tried again when a
			 * CREATE KEYSPACE goes through us, and on the next
			 * connection. */
			if (!conn->keyspace_missing) {
				log_warning("event=cql_keyspace_missing host=%s keyspace=%s "
					    "reason=\"%s\"",
					    conn->host->name, client->keyspace,
					    cql_error_sentence(resp, sentence, sizeof(sentence)));
			}
			conn->keyspace_missing = true;
		} else if (opcode == CQL_OPCODE_ERROR) {
			conn_fail(conn, "USE %s failed: %s", client->keyspace,
				  cql_error_sentence(resp, sentence, sizeof(sentence)));
			return;
		} else {
			conn_fail(conn, "unexpected %s answer to USE", cql_opcode_name(opcode));
			return;
		}
		conn_ready(conn);
		break;
	default:
		break;
	}
}

/* A statement went through that may have created our keyspace: connections
 * that could not USE it try again (and take no requests meanwhile). */
static void keyspace_maybe_created(struct cql_client *client)
{
	for (unsigned h = 0; h < client->host_count; h++) {
		for (unsigned c = 0; c < client->connections_per_host; c++) {
			struct cql_conn *conn = &client->hosts[h].conns[c];
			if (conn->state != CONN_READY || !conn->keyspace_missing ||
			    conn->use_pending || conn->free_count == 0)
				continue;
			conn->use_pending = true;
			conn_send_use(conn, SLOT_USE);
		}
	}
}

static bool creates_keyspace(const struct cql_pending *p, const struct cql_response *resp)
{
	const struct cql_client *client = p->client;
	if (resp->result.kind == CQL_RESULT_SCHEMA_CHANGE) {
		const struct cql_schema_change *change = &resp->result.schema_change;
		return cql_string_equals(change->target, "KEYSPACE") &&
		       cql_string_equals(change->keyspace, client->keyspace);
	}
	/* CREATE KEYSPACE IF NOT EXISTS on an existing one: a Void result */
	const char *text = p->stmt != NULL ? p->stmt->text : p->cql;
	while (isspace((unsigned char)*text))
		text++;
	if (strncasecmp(text, "CREATE", 6) != 0)
		return false;
	text += 6;
	while (isspace((unsigned char)*text))
		text++;
	return strncasecmp(text, "KEYSPACE", 8) == 0;
}

/* ---- connections: answers ---- */

static void pending_add_page(struct cql_pending *p, unsigned char *frame,
			     const struct cql_rows *rows)
{
	if (p->page_count == p->page_alloc) {
		p->page_alloc = p->page_alloc == 0 ? 1 : p->page_alloc * 2;
		p->frames = xrealloc(p->frames, p->page_alloc * sizeof(*p->frames));
		p->pages = xrealloc(p->pages, p->page_alloc * sizeof(*p->pages));
	}
	p->frames[p->page_count] = frame;
	p->pages[p->page_count] = *rows;
	p->page_count++;
}

/* Moves p (on no stream now) back to the front of the queue. */
static void pending_requeue(struct cql_pending *p)
{
	p->conn = NULL;
	p->state = PENDING_QUEUED;
	list_prepend(&p->client->queue, p);
}

static void request_response(struct cql_conn *conn, uint16_t stream, unsigned char *frame,
			     const struct cql_response *resp)
{
	struct cql_host *host = conn->host;
	struct cql_client *client = host->client;
	struct slot *slot = &conn->slots[stream];
	struct cql_pending *p = slot->pending;
	uint8_t opcode = resp->header.opcode;
	char sentence[ERROR_MAX];

	if (opcode == CQL_OPCODE_ERROR) {
		int32_t code = resp->error.code;
		if (code == CQL_ERROR_UNPREPARED && p->stmt != NULL && !p->reprepared) {
			/* the node forgot it (restarted): prepare again */
			p->reprepared = true;
			prepared_forget(conn, p->stmt);
			log_info("event=cql_reprepare host=%s", host->name);
			free(frame);
			conn_write_request(conn, stream, p);
			return;
		}
		cql_error_sentence(resp, sentence, sizeof(sentence));
		free(frame);
		slot_release(conn, stream);
		if ((code == CQL_ERROR_OVERLOADED || code == CQL_ERROR_IS_BOOTSTRAPPING) &&
		    p->idempotent && !p->retried) {
			log_info("event=cql_retry host=%s reason=\"%s\"", host->name, sentence);
			p->retried = true;
			p->avoid_host = host;
			pending_requeue(p);
		} else {
			pending_fail(p, code, host->name, "%s", sentence);
		}
		dispatch(client);
		return;
	}
	if (opcode != CQL_OPCODE_RESULT ||
	    (slot->kind == SLOT_PREPARE &&
	     (resp->result.kind != CQL_RESULT_PREPARED || resp->result.prepared.id.len <= 0))) {
		free(frame);
		slot_release(conn, stream);
		pending_fail(p, -1, host->name, "unexpected %s answer to %s from %s",
			     cql_opcode_name(opcode),
			     slot->kind == SLOT_PREPARE ? "PREPARE" : "a request", host->name);
		dispatch(client);
		return;
	}
	if (slot->kind == SLOT_PREPARE) {
		const struct cql_bytes *id = &resp->result.prepared.id;
		prepared_store(conn, p->stmt, id->data, (uint16_t)id->len);
		free(frame);
		conn_write_request(conn, stream, p); /* now the EXECUTE */
		return;
	}

	int32_t kind = resp->result.kind;
	if (client->keyspace != NULL && creates_keyspace(p, resp))
		keyspace_maybe_created(client);
	slot_release(conn, stream);
	p->kind = kind;
	p->host = host->name;
	if (kind == CQL_RESULT_ROWS) {
		const struct cql_metadata *metadata = &resp->result.rows.metadata;
		pending_add_page(p, frame, &resp->result.rows);
		if (p->all_pages && (metadata->flags & CQL_METADATA_HAS_MORE_PAGES) != 0 &&
		    metadata->paging_state.len > 0) {
			free(p->paging_state);
			p->paging_state_len = (size_t)metadata->paging_state.len;
			p->paging_state = xmemdup(metadata->paging_state.data, p->paging_state_len);
			/* each page gets the whole request timeout */
			struct timeval tv = ms_to_timeval(client->request_timeout_ms);
			event_add(&p->timer, &tv);
			pending_requeue(p);
			dispatch(client);
			return;
		}
	} else {
		free(frame);
	}
	pending_finish(p);
	dispatch(client);
}

/* Takes frame (malloc'ed, frame_len bytes, header checked). */
static void conn_frame(struct cql_conn *conn, unsigned char *frame, size_t frame_len)
{
	struct cql_host *host = conn->host;
	struct cql_client *client = host->client;
	struct cql_response resp;
	const char *error;

	int16_t stream = (int16_t)(((unsigned)frame[2] << 8) | frame[3]);
	if (stream < 0) {
		free(frame); /* an EVENT: we never REGISTER, ignore it */
		return;
	}
	struct slot *slot =
		(unsigned)stream < client->streams_per_connection ? &conn->slots[stream] : NULL;
	if (slot == NULL || slot->kind == SLOT_FREE) {
		log_warning("event=cql_unexpected_stream host=%s stream=%d opcode=%s", host->name,
			    stream, cql_opcode_name(frame[4]));
		free(frame);
		return;
	}
	enum slot_kind kind = slot->kind;
	if (kind == SLOT_ORPHAN) {
		free(frame);
		slot_release(conn, (uint16_t)stream);
		dispatch(client);
		return;
	}
	if (cql_response_parse(frame, frame_len, &resp, &error) < 0) {
		char reason[ERROR_MAX];
		snprintf(reason, sizeof(reason), "%s", error);
		free(frame);
		log_warning("event=cql_bad_response host=%s stream=%d reason=\"%s\"", host->name,
			    stream, reason);
		if (kind == SLOT_REQUEST || kind == SLOT_PREPARE) {
			struct cql_pending *p = slot->pending;
			slot_release(conn, (uint16_t)stream);
			pending_fail(p, -1, host->name, "bad response from %s: %s", host->name,
				     reason);
			dispatch(client);
		} else {
			slot_release(conn, (uint16_t)stream);
			conn_fail(conn, "bad response during %s: %s", conn_state_names[conn->state],
				  reason);
		}
		return;
	}
	if (kind == SLOT_REQUEST || kind == SLOT_PREPARE) {
		request_response(conn, (uint16_t)stream, frame, &resp);
		return;
	}
	slot_release(conn, (uint16_t)stream);
	conn_internal_response(conn, kind, &resp);
	free(frame);
}

static void conn_read(struct bufferevent *bev, void *context)
{
	struct cql_conn *conn = context;
	struct cql_client *client = conn->host->client;
	struct evbuffer *input = bufferevent_get_input(bev);
	unsigned generation = conn->generation;
	struct cql_frame_header hdr;
	size_t frame_len;
	const char *error;

	while (conn->generation == generation) {
		size_t len = evbuffer_get_length(input);
		if (len < CQL_FRAME_HEADER_LEN)
			break;
		const unsigned char *head = evbuffer_pullup(input, CQL_FRAME_HEADER_LEN);
		if (cql_frame_peek(head, CQL_FRAME_HEADER_LEN, client->max_frame, &hdr, &frame_len,
				   &error) < 0) {
			log_warning("event=cql_bad_frame host=%s max_frame=%zu reason=\"%s\"",
				    conn->host->name, client->max_frame, error);
			conn_fail(conn, "%s", error);
			return;
		}
		if (len < frame_len)
			break;
		unsigned char *frame = malloc(frame_len);
		if (frame == NULL)
			abort();
		evbuffer_remove(input, frame, frame_len);
		conn_frame(conn, frame, frame_len);
	}
}

static void conn_event(struct bufferevent *bev, short what, void *context)
{
	struct cql_conn *conn = context;
	struct cql_client *client = conn->host->client;
	char reason[REASON_MAX];

	if ((what & BEV_EVENT_CONNECTED) != 0) {
		evutil_socket_t fd = bufferevent_getfd(bev);
		if (fd >= 0)
			net_set_tcp_options(fd);
		conn->state = CONN_STARTUP;
		uint16_t stream = slot_take(conn, SLOT_HANDSHAKE, NULL);
		const char *error;
		client->out.len = 0;
		if (cql_build_startup(&client->out, (int16_t)stream, &error) < 0) {
			conn_fail(conn, "cannot build STARTUP: %s", error);
			return;
		}
		conn_write_out(conn);
		return;
	}
	if ((what & BEV_EVENT_EOF) != 0) {
		conn_fail(conn, "the node closed the connection");
		return;
	}
	if ((what & BEV_EVENT_ERROR) != 0) {
		int err = EVUTIL_SOCKET_ERROR();
		unsigned long ssl_err =
			client->ssl_ctx != NULL ? bufferevent_get_openssl_error(bev) : 0;
		if (ssl_err != 0 && (ERR_GET_LIB(ssl_err) != 0 || err == 0)) {
			char detail[200];
			SSL *ssl = bufferevent_openssl_get_ssl(bev);
			long verify = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
			ERR_error_string_n(ssl_err, detail, sizeof(detail));
			if (verify != X509_V_OK)
				snprintf(reason, sizeof(reason), "TLS error: %s (%s)", detail,
					 X509_verify_cert_error_string(verify));
			else
				snprintf(reason, sizeof(reason), "TLS error: %s", detail);
		} else if (err != 0) {
			snprintf(reason, sizeof(reason), "%s", evutil_socket_error_to_string(err));
			lowercase_first(reason);
		} else {
			snprintf(reason, sizeof(reason), "connection failed");
		}
		conn_fail(conn, "%s", reason);
	}
}

/* ---- connections: life cycle ---- */

static void conn_schedule_reconnect(struct cql_conn *conn)
{
	struct cql_client *client = conn->host->client;
	unsigned delay = conn->backoff_ms;
	/* jitter: up to a quarter more, so that connections to a node that
	 * came back do not all knock at once */
	delay += (unsigned)(random_next(client) % (delay / 4 + 1));
	if (delay > client->reconnect_max_ms)
		delay = client->reconnect_max_ms;
	conn->backoff_ms = conn->backoff_ms >= client->reconnect_max_ms / 2
				   ? client->reconnect_max_ms
				   : conn->backoff_ms * 2;
	struct timeval tv = ms_to_timeval(delay);
	event_add(&conn->timer, &tv);
}

/* Every connection to every node has failed and waits for its reconnect
 * timer: the queued requests fail now rather than at their timeout (a
 * login needing the GeoDB hears "unavailable" at once, the CLI gives up at
 * once).  Requests made afterwards queue again and wait for the reconnects. */
static void fail_queue_if_all_down(struct cql_client *client)
{
	if (client->queue.head == NULL)
		return;
	for (unsigned i = 0; i < client->host_count; i++) {
		for (unsigned j = 0; j < client->connections_per_host; j++) {
			if (client->hosts[i].conns[j].state != CONN_DOWN)
				return;
		}
	}
	char sentence[ERROR_MAX];
	no_connection_sentence(client, sentence, sizeof(sentence));
	struct cql_pending *p;
	while ((p = client->queue.head) != NULL) {
		list_remove(&client->queue, p);
		pending_fail(p, -1, "", "%s", sentence);
	}
}

static void conn_fail(struct cql_conn *conn, const char *fmt, ...)
{
	struct cql_host *host = conn->host;
	struct cql_client *client = host->client;
	char reason[REASON_MAX];
	va_list args;

	va_start(args, fmt);
	vsnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);

	bool was_ready = conn->state == CONN_READY;
	if (was_ready) {
		log_warning("event=cql_down host=%s connection=%u in_flight=%u reason=\"%s\"",
			    host->name, conn->index, conn_in_flight(conn), reason);
		if (--host->ready_count == 0)
			log_warning("event=cql_host_down host=%s reason=\"%s\"", host->name,
				    reason);
	} else if (strcmp(reason, conn->last_error) != 0) {
		log_warning("event=cql_connect_failed host=%s connection=%u state=%s "
			    "reason=\"%s\"",
			    host->name, conn->index, conn_state_names[conn->state], reason);
	} else {
		log_debug("event=cql_connect_failed host=%s connection=%u state=%s reason=\"%s\"",
			  host->name, conn->index, conn_state_names[conn->state], reason);
	}
	snprintf(conn->last_error, sizeof(conn->last_error), "%s", reason);
	snprintf(client->last_error, sizeof(client->last_error), "%s", reason);
	host->tried = true;

	if (conn->bev != NULL) {
		bufferevent_free(conn->bev);
		conn->bev = NULL;
	}
	conn->generation++;
	event_del(&conn->timer);

	/* The requests on it: idempotent ones move to another node once,
	 * in their order, the others fail. */
	struct pending_list retry = {0};
	for (unsigned i = 0; i < client->streams_per_connection; i++) {
		struct slot *slot = &conn->slots[i];
		struct cql_pending *p = slot->pending;
		if (p == NULL || (slot->kind != SLOT_REQUEST && slot->kind != SLOT_PREPARE))
			continue;
		p->conn = NULL;
		if (p->idempotent && !p->retried) {
			p->retried = true;
			p->avoid_host = host;
			p->state = PENDING_QUEUED;
			list_append(&retry, p);
		} else {
			pending_fail(p, -1, host->name,
				     "connection to %s lost with the request in flight: %s",
				     host->name, reason);
		}
	}
	while (retry.tail != NULL) {
		struct cql_pending *p = retry.tail;
		list_remove(&retry, p);
		list_prepend(&client->queue, p);
	}
	slots_reset(conn);
	prepared_clear(conn);
	conn->keyspace_missing = false;
	conn->use_pending = false;
	conn->probe_pending = false;
	conn->state = CONN_DOWN;
	conn_schedule_reconnect(conn);
	dispatch(client);
	fail_queue_if_all_down(client);
}

static void conn_timer(evutil_socket_t fd, short what, void *context)
{
	struct cql_conn *conn = context;
	struct cql_client *client = conn->host->client;

	switch (conn->state) {
	case CONN_DOWN:
		conn_connect(conn);
		break;
	case CONN_READY:
		if (conn->probe_pending) {
			conn_fail(conn, "no answer to a heartbeat within %u ms",
				  client->connect_timeout_ms);
		}
		break;
	case CONN_CONNECTING:
		conn_fail(conn, "connect timed out after %u ms", client->connect_timeout_ms);
		break;
	default:
		conn_fail(conn, "handshake timed out after %u ms (waiting for the answer to %s)",
			  client->connect_timeout_ms, conn_state_names[conn->state]);
		break;
	}
}

static int resolve(const struct cql_host *host, struct sockaddr_storage *addr_r, socklen_t *len_r,
		   char *error, size_t error_size)
{
	if (net_parse_ip_port(host->address, host->port, addr_r, len_r) == 0)
		return 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *result;
	int ret = getaddrinfo(host->address, NULL, &hints, &result);
	if (ret != 0) {
		snprintf(error, error_size, "cannot resolve %s: %s", host->address,
			 gai_strerror(ret));
		return -1;
	}
	memset(addr_r, 0, sizeof(*addr_r));
	memcpy(addr_r, result->ai_addr, result->ai_addrlen);
	*len_r = result->ai_addrlen;
	if (addr_r->ss_family == AF_INET)
		((struct sockaddr_in *)addr_r)->sin_port = htons(host->port);
	else
		((struct sockaddr_in6 *)addr_r)->sin6_port = htons(host->port);
	freeaddrinfo(result);
	return 0;
}

static void conn_connect(struct cql_conn *conn)
{
	struct cql_host *host = conn->host;
	struct cql_client *client = host->client;
	const int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char error[REASON_MAX];

	if (resolve(host, &addr, &addr_len, error, sizeof(error)) < 0) {
		conn_fail(conn, "%s", error);
		return;
	}
	if (client->ssl_ctx != NULL) {
		SSL *ssl = SSL_new(client->ssl_ctx);
		if (ssl == NULL) {
			conn_fail(conn, "TLS error: cannot create a TLS session");
			return;
		}
		bool is_ip = net_is_ip_address(host->address);
		if (!is_ip)
			SSL_set_tlsext_host_name(ssl, host->address);
		if (client->tls_verify) {
			X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
			SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
			if (is_ip) {
				X509_VERIFY_PARAM_set1_ip_asc(param, host->address);
			} else {
				X509_VERIFY_PARAM_set_hostflags(
					param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
				X509_VERIFY_PARAM_set1_host(param, host->address, 0);
			}
		}
		conn->bev = bufferevent_openssl_socket_new(client->base, -1, ssl,
							   BUFFEREVENT_SSL_CONNECTING, options);
	} else {
		conn->bev = bufferevent_socket_new(client->base, -1, options);
	}
	if (conn->bev == NULL) {
		conn_fail(conn, "cannot create a connection");
		return;
	}
	conn->state = CONN_CONNECTING;
	bufferevent_setcb(conn->bev, conn_read, NULL, conn_event, conn);
	struct timeval tv = ms_to_timeval(client->connect_timeout_ms);
	event_add(&conn->timer, &tv);
	if (bufferevent_socket_connect(conn->bev, (struct sockaddr *)&addr, (int)addr_len) < 0) {
		snprintf(error, sizeof(error), "%s", strerror(errno));
		lowercase_first(error);
		conn_fail(conn, "%s", error);
		return;
	}
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
}

/* ---- choosing a connection ---- */

/* A node that may be in the local data centre (its DC is learnt during the
 * handshake) has not had a first connection ready or failed yet: at start,
 * requests wait for it rather than go to a remote node whose handshake
 * happened to finish first (bounded: a handshake that does not finish fails
 * after connect_timeout_ms). */
static bool local_node_pending(const struct cql_client *client)
{
	for (unsigned i = 0; i < client->host_count; i++) {
		const struct cql_host *host = &client->hosts[i];
		if (!host->tried && (host->dc == NULL || host_is_local(client, host)))
			return true;
	}
	return false;
}

/* A ready connection with a free stream: round robin over the nodes of the
 * local data centre, then, only if none of them has a ready connection
 * (and each has been tried once), over the others.  NULL when there is none
 * (or all are busy).  exclude: a node not to use. */
static struct cql_conn *conn_pick(struct cql_client *client, const struct cql_host *exclude)
{
	unsigned total = client->host_count * client->connections_per_host;
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && local_node_pending(client))
			return NULL;
		bool want_local = pass == 0;
		bool any_ready = false;
		for (unsigned i = 0; i < total; i++) {
			/* consecutive numbers alternate between nodes */
			unsigned n = (client->round_robin + i) % total;
			struct cql_host *host = &client->hosts[n % client->host_count];
			struct cql_conn *conn = &host->conns[n / client->host_count];
			if (host == exclude || host_is_local(client, host) != want_local)
				continue;
			if (conn->state != CONN_READY || conn->use_pending)
				continue;
			any_ready = true;
			if (conn->free_count == 0)
				continue;
			client->round_robin = n + 1;
			return conn;
		}
		if (any_ready)
			return NULL;
	}
	return NULL;
}

static void dispatch(struct cql_client *client)
{
	struct cql_pending *p, *next;
	for (p = client->queue.head; p != NULL; p = next) {
		next = p->next;
		struct cql_conn *conn = conn_pick(client, p->avoid_host);
		if (conn == NULL && p->avoid_host != NULL)
			conn = conn_pick(client, NULL);
		if (conn == NULL) {
			if (p->avoid_host == NULL)
				break;
			continue;
		}
		list_remove(&client->queue, p);
		conn_write_request(conn, slot_take(conn, SLOT_REQUEST, p), p);
	}
}

static void pending_timeout(evutil_socket_t fd, short what, void *context)
{
	struct cql_pending *p = context;
	struct cql_client *client = p->client;
	char sentence[ERROR_MAX];

	if (p->state == PENDING_QUEUED) {
		list_remove(&client->queue, p);
		if (cql_client_hosts_up(client) == 0) {
			no_connection_sentence(client, sentence, sizeof(sentence));
			pending_fail(p, -1, "", "%s", sentence);
		} else {
			pending_fail(p, -1, "",
				     "request timed out after %u ms waiting for a free stream (%u "
				     "requests queued)",
				     client->request_timeout_ms, client->queue.count + 1);
		}
		return;
	}
	if (p->state != PENDING_SENT)
		return;
	struct cql_conn *conn = p->conn;
	conn->slots[p->stream].kind = SLOT_ORPHAN;
	conn->slots[p->stream].pending = NULL;
	pending_fail(p, -1, conn->host->name, "request timed out after %u ms on %s",
		     client->request_timeout_ms, conn->host->name);
	/* Is the node still there?  Ask; conn_timer() closes the
	 * connection if the heartbeat goes unanswered too. */
	if (conn->state != CONN_READY || conn->probe_pending)
		return;
	if (conn->free_count == 0) {
		conn_fail(conn, "all %u streams busy and requests timing out",
			  client->streams_per_connection);
		return;
	}
	conn->probe_pending = true;
	conn_send_internal(conn, SLOT_PROBE, NULL);
	struct timeval tv = ms_to_timeval(client->connect_timeout_ms);
	event_add(&conn->timer, &tv);
}

/* ---- API ---- */

static int parse_host(const char *spec, uint16_t default_port, char **address_r, uint16_t *port_r,
		      char *error, size_t error_size)
{
	const char *colon = strrchr(spec, ':');
	const char *start = spec, *end = spec + strlen(spec);
	unsigned long port = default_port;

	if (spec[0] == '[') {
		/* [v6]:port or [v6] */
		const char *close = strchr(spec, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
			snprintf(error, error_size, "bad CQL host \"%s\": expected [address]:port",
				 spec);
			return -1;
		}
		start = spec + 1;
		end = close;
		colon = close[1] == ':' ? close + 1 : NULL;
	} else if (colon != NULL && strchr(spec, ':') != colon) {
		colon = NULL; /* a bare IPv6 address */
	} else if (colon != NULL) {
		end = colon;
	}
	if (colon != NULL) {
		char *endp;
		errno = 0;
		port = strtoul(colon + 1, &endp, 10);
		if (colon[1] == '\0' || *endp != '\0' || errno != 0 || port == 0 || port > 65535) {
			snprintf(error, error_size, "bad CQL host \"%s\": port must be 1..65535",
				 spec);
			return -1;
		}
	}
	if (end == start) {
		snprintf(error, error_size, "bad CQL host \"%s\": no address", spec);
		return -1;
	}
	*address_r = xcalloc(1, (size_t)(end - start) + 1);
	memcpy(*address_r, start, (size_t)(end - start));
	*port_r = (uint16_t)port;
	return 0;
}

int cql_client_create(struct event_base *base, const struct cql_client_settings *set,
		      struct cql_client **client_r, const char **error_r)
{
	static char error[REASON_MAX];

	*client_r = NULL;
	if (set->host_count == 0 || set->hosts == NULL) {
		*error_r = "no CQL hosts configured";
		return -1;
	}
	if (set->streams_per_connection > MAX_STREAMS_PER_CONNECTION) {
		snprintf(error, sizeof(error),
			 "streams_per_connection %u is more than the protocol's %u",
			 set->streams_per_connection, MAX_STREAMS_PER_CONNECTION);
		*error_r = error;
		return -1;
	}
	if (set->username != NULL && (strlen(set->username) == 0)) {
		*error_r = "CQL username is empty";
		return -1;
	}

	struct cql_client *client = xcalloc(1, sizeof(*client));
	client->base = base;
	if (set->keyspace != NULL && set->keyspace[0] != '\0')
		client->keyspace = xstrdup(set->keyspace);
	if (set->local_dc != NULL && set->local_dc[0] != '\0')
		client->local_dc = xstrdup(set->local_dc);
	if (set->username != NULL) {
		client->username = xstrdup(set->username);
		client->password = xstrdup(set->password != NULL ? set->password : "");
	}
	if (set->ssl_ctx != NULL) {
		SSL_CTX_up_ref(set->ssl_ctx);
		client->ssl_ctx = set->ssl_ctx;
	}
	client->tls_verify = set->tls_verify;
	client->connections_per_host = set->connections_per_host != 0
					       ? set->connections_per_host
					       : DEFAULT_CONNECTIONS_PER_HOST;
	client->streams_per_connection = set->streams_per_connection != 0
						 ? set->streams_per_connection
						 : DEFAULT_STREAMS_PER_CONNECTION;
	client->queue_max = set->queue_max != 0 ? set->queue_max : DEFAULT_QUEUE_MAX;
	client->connect_timeout_ms =
		set->connect_timeout_ms != 0 ? set->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	client->request_timeout_ms =
		set->request_timeout_ms != 0 ? set->request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
	client->reconnect_min_ms =
		set->reconnect_min_ms != 0 ? set->reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS;
	client->reconnect_max_ms =
		set->reconnect_max_ms != 0 ? set->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
	if (client->reconnect_max_ms < client->reconnect_min_ms)
		client->reconnect_max_ms = client->reconnect_min_ms;
	client->max_frame = set->max_frame != 0 ? set->max_frame : DEFAULT_MAX_FRAME;
	client->random_state =
		((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)client;
	if (client->random_state == 0)
		client->random_state = 1;
	client->stmt_bucket_count = 16;
	client->stmt_buckets = xcalloc(client->stmt_bucket_count, sizeof(*client->stmt_buckets));
	event_assign(&client->done_event, base, -1, 0, done_run, client);

	client->hosts = xcalloc(set->host_count, sizeof(*client->hosts));
	client->host_count = set->host_count;
	uint16_t default_port = set->port != 0 ? set->port : DEFAULT_PORT;
	for (unsigned h = 0; h < set->host_count; h++) {
		struct cql_host *host = &client->hosts[h];
		host->client = client;
		host->conns = xcalloc(client->connections_per_host, sizeof(*host->conns));
		for (unsigned c = 0; c < client->connections_per_host; c++) {
			struct cql_conn *conn = &host->conns[c];
			conn->host = host;
			conn->index = c;
			conn->backoff_ms = client->reconnect_min_ms;
			conn->slots = xcalloc(client->streams_per_connection, sizeof(*conn->slots));
			conn->free_ids =
				xcalloc(client->streams_per_connection, sizeof(*conn->free_ids));
			slots_reset(conn);
			evtimer_assign(&conn->timer, base, conn_timer, conn);
		}
		if (set->hosts[h] == NULL || parse_host(set->hosts[h], default_port, &host->address,
							&host->port, error, sizeof(error)) < 0) {
			if (set->hosts[h] == NULL)
				snprintf(error, sizeof(error), "CQL host %u is NULL", h);
			cql_client_destroy(&client);
			*error_r = error;
			return -1;
		}
		size_t name_size = strlen(host->address) + 16;
		host->name = xcalloc(1, name_size);
		if (strchr(host->address, ':') != NULL)
			snprintf(host->name, name_size, "[%s]:%u", host->address, host->port);
		else
			snprintf(host->name, name_size, "%s:%u", host->address, host->port);
	}
	for (unsigned h = 0; h < client->host_count; h++) {
		for (unsigned c = 0; c < client->connections_per_host; c++)
			conn_connect(&client->hosts[h].conns[c]);
	}
	*client_r = client;
	return 0;
}

void cql_client_destroy(struct cql_client **_client)
{
	struct cql_client *client = *_client;
	if (client == NULL)
		return;
	*_client = NULL;
	if (client->running_callbacks) {
		/* done_run() finishes the job once the callback returns */
		client->destroy_requested = true;
		return;
	}
	for (unsigned h = 0; h < client->host_count; h++) {
		struct cql_host *host = &client->hosts[h];
		for (unsigned c = 0; host->conns != NULL && c < client->connections_per_host; c++) {
			struct cql_conn *conn = &host->conns[c];
			if (conn->bev != NULL)
				bufferevent_free(conn->bev);
			event_del(&conn->timer);
			for (unsigned i = 0;
			     conn->slots != NULL && i < client->streams_per_connection; i++) {
				struct slot *slot = &conn->slots[i];
				if (slot->pending != NULL &&
				    (slot->kind == SLOT_REQUEST || slot->kind == SLOT_PREPARE))
					pending_free(slot->pending);
			}
			free(conn->slots);
			free(conn->free_ids);
			prepared_clear(conn);
		}
		free(host->conns);
		free(host->address);
		free(host->name);
		free(host->dc);
	}
	free(client->hosts);
	struct cql_pending *p;
	while ((p = client->queue.head) != NULL) {
		list_remove(&client->queue, p);
		pending_free(p);
	}
	while ((p = client->done.head) != NULL) {
		list_remove(&client->done, p);
		pending_free(p);
	}
	event_del(&client->done_event);
	for (unsigned i = 0; i < client->stmt_bucket_count; i++) {
		struct statement *s = client->stmt_buckets[i], *next;
		for (; s != NULL; s = next) {
			next = s->next;
			free(s->text);
			free(s);
		}
	}
	free(client->stmt_buckets);
	cql_buf_free(&client->out);
	free(client->keyspace);
	free(client->local_dc);
	free(client->username);
	if (client->password != NULL) {
		explicit_bzero(client->password, strlen(client->password));
		free(client->password);
	}
	if (client->ssl_ctx != NULL)
		SSL_CTX_free(client->ssl_ctx);
	free(client);
}

struct cql_pending *cql_client_execute(struct cql_client *client, const struct cql_request *req,
				       cql_callback *callback, void *context)
{
	struct cql_pending *p = xcalloc(1, sizeof(*p));
	p->client = client;
	p->callback = callback;
	p->context = context;
	if (req->prepare)
		p->stmt = statement_intern(client, req->cql != NULL ? req->cql : "");
	else
		p->cql = xstrdup(req->cql != NULL ? req->cql : "");
	if (req->values_len > 0)
		p->values = xmemdup(req->values, req->values_len);
	p->values_len = req->values_len;
	p->value_count = req->value_count;
	p->consistency = req->consistency;
	p->with_serial_consistency = req->with_serial_consistency;
	p->serial_consistency = req->serial_consistency;
	p->page_size = req->page_size;
	p->all_pages = req->all_pages;
	p->idempotent = req->idempotent;
	evtimer_assign(&p->timer, client->base, pending_timeout, p);

	if (req->cql == NULL) {
		pending_fail(p, -1, "", "no CQL statement given");
		return p;
	}
	struct timeval tv = ms_to_timeval(client->request_timeout_ms);
	event_add(&p->timer, &tv);
	struct cql_conn *conn = client->queue.head == NULL ? conn_pick(client, NULL) : NULL;
	if (conn != NULL) {
		conn_write_request(conn, slot_take(conn, SLOT_REQUEST, p), p);
		return p;
	}
	if (client->queue.count >= client->queue_max) {
		pending_fail(p, -1, "", "request queue full (%u requests waiting for a connection)",
			     client->queue.count);
		return p;
	}
	p->state = PENDING_QUEUED;
	list_append(&client->queue, p);
	return p;
}

void cql_client_cancel(struct cql_pending **_pending)
{
	struct cql_pending *p = *_pending;
	if (p == NULL)
		return;
	*_pending = NULL;
	struct cql_client *client = p->client;
	switch (p->state) {
	case PENDING_QUEUED:
		list_remove(&client->queue, p);
		break;
	case PENDING_DONE:
		list_remove(&client->done, p);
		break;
	case PENDING_SENT:
		/* the node may still answer on that stream: keep it reserved */
		p->conn->slots[p->stream].kind = SLOT_ORPHAN;
		p->conn->slots[p->stream].pending = NULL;
		break;
	case PENDING_CALLBACK:
		return; /* its callback is running; done_run() frees it */
	}
	pending_free(p);
}

int cql_client_wait(struct cql_client *client, const bool *done)
{
	struct event_base *base = client->base;
	while (!*done) {
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			return *done ? 0 : -1;
	}
	return 0;
}

void cql_reply_cursor_init(struct cql_reply_cursor *cursor_r, const struct cql_reply *reply)
{
	memset(cursor_r, 0, sizeof(*cursor_r));
	cursor_r->reply = reply;
	if (reply->page_count > 0)
		cql_rows_cursor_init(&cursor_r->rows, &reply->pages[0]);
}

bool cql_reply_next_row(struct cql_reply_cursor *cursor, struct cql_value *cells_r,
			unsigned cells_count)
{
	const struct cql_reply *reply = cursor->reply;
	while (cursor->page < reply->page_count) {
		if (cql_rows_next(&cursor->rows, cells_r, cells_count))
			return true;
		if (++cursor->page < reply->page_count)
			cql_rows_cursor_init(&cursor->rows, &reply->pages[cursor->page]);
	}
	return false;
}

size_t cql_reply_row_count(const struct cql_reply *reply)
{
	size_t count = 0;
	for (unsigned i = 0; i < reply->page_count; i++)
		count += reply->pages[i].row_count > 0 ? (size_t)reply->pages[i].row_count : 0;
	return count;
}

void cql_client_describe(struct cql_client *client, char *buf, size_t size)
{
	size_t len = 0;
	if (size == 0)
		return;
	buf[0] = '\0';
	for (unsigned h = 0; h < client->host_count && len < size; h++) {
		const struct cql_host *host = &client->hosts[h];
		unsigned in_flight = 0;
		const char *error = NULL;
		for (unsigned c = 0; c < client->connections_per_host; c++) {
			const struct cql_conn *conn = &host->conns[c];
			if (conn->state == CONN_READY)
				in_flight += conn_in_flight(conn);
			if (conn->state != CONN_READY && conn->last_error[0] != '\0')
				error = conn->last_error;
		}
		len += (size_t)snprintf(
			buf + len, size - len, "%s%s %s%s %s %u/%u connections, %u in flight",
			h > 0 ? ", " : "", host->name, host->dc != NULL ? host->dc : "dc?",
			client->local_dc == NULL || host_is_local(client, host) ? "" : " (remote)",
			host->ready_count > 0 ? "up" : "down", host->ready_count,
			client->connections_per_host, in_flight);
		if (error != NULL && len < size)
			len += (size_t)snprintf(buf + len, size - len, " (%s)", error);
	}
	if (len < size)
		snprintf(buf + len, size - len, "; %u queued", client->queue.count);
}

unsigned cql_client_hosts_up(struct cql_client *client)
{
	unsigned up = 0;
	for (unsigned h = 0; h < client->host_count; h++) {
		if (client->hosts[h].ready_count > 0)
			up++;
	}
	return up;
}
