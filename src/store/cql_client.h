/* cql_client.h - an asynchronous Apache Cassandra client on a libevent
 * event base: connections to several nodes, many requests in flight on
 * each, prepared statements, paging, retries and reconnects.  The frames
 * are built and parsed by cql_protocol.h; this module owns the sockets.
 *
 *   hosts      the contact points ("H" or "H:PORT").  On connecting, the
 *              client asks each node which data centre it is in (system.local)
 *              and sends requests to nodes of local_dc only, falling back to
 *              the others only while no local node is up.
 *   pool       connections_per_host connections per node, each with up to
 *              streams_per_connection requests in flight; requests beyond
 *              that wait in a queue (bounded by queue_max, then refused).
 *   prepared   a request with prepare=true is PREPAREd once per connection
 *              (cached by its text) and then EXECUTEd; an UNPREPARED error
 *              (the node restarted) re-prepares and re-executes once.
 *   paging     page_size > 0 asks for pages; all_pages fetches every page
 *              before the callback, which then sees all rows in order.
 *   failures   a node that closes or fails to connect is marked down and
 *              reconnected with exponential backoff (reconnect_min_ms ..
 *              reconnect_max_ms, jittered); its in-flight requests are
 *              retried once on another node if idempotent, else fail.  A
 *              request that gets no answer within request_timeout_ms fails
 *              (its stream id stays reserved until the node answers or the
 *              connection closes).
 *   auth, TLS  username/password for PasswordAuthenticator; ssl_ctx for TLS
 *              (bufferevent_openssl), with the host name checked when
 *              tls_verify is set.
 *
 * Callbacks run from the event loop, never inside cql_client_execute();
 * every request gets exactly one callback unless cancelled.  Errors are one
 * sentence: the server's (cql_error_sentence()) or ours ("no connection to
 * any of 127.0.0.21:9042: connection refused", "request timed out after
 * 2000 ms on 127.0.0.21:9042").
 *
 * Blocking use (the CLI): create the client on a private event base and
 * call cql_client_wait() after cql_client_execute().
 */
#ifndef CQL_CLIENT_H
#define CQL_CLIENT_H

#include "store/cql_protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
typedef struct ssl_ctx_st SSL_CTX;

struct cql_client_settings {
	const char *const *hosts; /* "127.0.0.21" or "127.0.0.21:9043" */
	unsigned host_count;
	uint16_t port;        /* default port, 9042 if 0 */
	const char *keyspace; /* USE keyspace on every connection; NULL: none */
	const char *local_dc; /* NULL or "": every node is local */
	const char *username; /* NULL: no authentication */
	const char *password;
	SSL_CTX *ssl_ctx;     /* NULL: plain TCP */
	bool tls_verify;      /* check the node's certificate name against its host */
	unsigned connections_per_host;   /* 0: 2 */
	unsigned streams_per_connection; /* 0: 1024 (the protocol allows 32768) */
	unsigned queue_max;              /* 0: 10000 requests waiting for a stream */
	unsigned connect_timeout_ms;     /* 0: 2000 */
	unsigned request_timeout_ms;     /* 0: 5000 */
	unsigned reconnect_min_ms;       /* 0: 100 */
	unsigned reconnect_max_ms;       /* 0: 10000 */
	size_t max_frame;                /* 0: 64 MB */
};

struct cql_client;

/* Copies what it needs from set.  Connects in the background at once. */
int cql_client_create(struct event_base *base, const struct cql_client_settings *set,
		      struct cql_client **client_r, const char **error_r);
/* Fails every request still in flight (their callbacks do not run). */
void cql_client_destroy(struct cql_client **client);

struct cql_request {
	const char *cql; /* copied */
	bool prepare;    /* EXECUTE as a prepared statement */
	/* value_count [value]s as cql_buf_put_*() build them; copied */
	const unsigned char *values;
	size_t values_len;
	unsigned value_count;
	enum cql_consistency consistency; /* set it: 0 is ANY */
	bool with_serial_consistency;     /* conditional updates (IF ...) */
	enum cql_consistency serial_consistency;
	int32_t page_size; /* 0: no paging */
	bool all_pages;    /* fetch every page before the callback */
	bool idempotent;   /* may be retried on another node */
};

/* What a request got.  Valid only during the callback. */
struct cql_reply {
	/* NULL on success, else a sentence (and the rest is empty) */
	const char *error;
	/* the server's error code (enum cql_error_code), or -1 for our own
	 * failures (no connection, timeout, queue full, bad frame) */
	int32_t error_code;
	int32_t kind; /* enum cql_result_kind on success */
	/* kind == CQL_RESULT_ROWS: one entry per page fetched (one unless
	 * all_pages); each page's rows carry their metadata */
	const struct cql_rows *pages;
	unsigned page_count;
	/* the node that answered, "127.0.0.21:9042" */
	const char *host;
};

typedef void cql_callback(const struct cql_reply *reply, void *context);

/* Queues req.  Returns a handle for cql_client_cancel(), never NULL; the
 * callback runs later exactly once (success, error or timeout) unless
 * cancelled first. */
struct cql_pending;
struct cql_pending *cql_client_execute(struct cql_client *client, const struct cql_request *req,
				       cql_callback *callback, void *context);
/* The callback will not run; clears *pending. */
void cql_client_cancel(struct cql_pending **pending);

/* Runs the client's event base until *done is true (blocking use).
 * Returns -1 if the loop had nothing left to wait for first. */
int cql_client_wait(struct cql_client *client, const bool *done);

/* Walk all rows of a reply across its pages. */
struct cql_reply_cursor {
	const struct cql_reply *reply;
	unsigned page;
	struct cql_rows_cursor rows;
};
void cql_reply_cursor_init(struct cql_reply_cursor *cursor_r, const struct cql_reply *reply);
bool cql_reply_next_row(struct cql_reply_cursor *cursor, struct cql_value *cells_r,
			unsigned cells_count);
/* Total rows over all pages. */
size_t cql_reply_row_count(const struct cql_reply *reply);

/* For logs and /api/status: "127.0.0.21:9042 dc1 up 2/2 connections, ..." */
void cql_client_describe(struct cql_client *client, char *buf, size_t size);
/* How many nodes have at least one ready connection. */
unsigned cql_client_hosts_up(struct cql_client *client);

#endif
