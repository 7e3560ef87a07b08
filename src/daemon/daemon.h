/* daemon.h - the daemon's top-level context: everything that lives as long
 * as the process.  There is no other global mutable state; every module
 * gets this struct. */
#ifndef DAEMON_H
#define DAEMON_H

#include "util/settings.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct event_base;
struct listener_context;
struct evhttp;
struct geodb;
struct router;
struct prober;
struct controller;
struct worker;
struct load_report;
struct relay_pipe_pool;
struct net_network;
struct session;
typedef struct ssl_ctx_st SSL_CTX;

/* Counters exported on /metrics. */
struct daemon_metrics {
	uint64_t connections_total;
	uint64_t connections_refused_limit;
	uint64_t logins_ok;
	uint64_t logins_failed;      /* the backend said NO */
	uint64_t logins_unavailable; /* NO [UNAVAILABLE] */
	uint64_t logins_refused;     /* refused before any backend: plaintext, bad user */
	uint64_t group_assignments;
	uint64_t backend_connect_failures;
	uint64_t prelogin_bad_commands;
	uint64_t prelogin_too_long;
	uint64_t prelogin_timeouts;
	uint64_t sessions_ended;
	uint64_t sessions_kicked;
	uint64_t bytes_client_to_backend;
	uint64_t bytes_backend_to_client;
	uint64_t haproxy_refused;
	uint64_t lmtp_recipients_delivered;
	uint64_t lmtp_recipients_tempfailed;
	/* sites (store/route.h route_check_site()) */
	uint64_t site_forwards;        /* logins and LMTP recipients another site's LB took */
	uint64_t site_forwards_failed; /* ... and those it did not (or could not route) */
	uint64_t site_unavailable;     /* refused: the group's site has no usable LB */
	uint64_t site_forwarded_in;    /* forwarded sessions accepted from another site */
	uint64_t route_loops;          /* forwarded sessions not forwarded again */
};

struct daemon {
	struct settings *set;
	const char *config_path;
	struct event_base *base;
	struct geodb *geodb;
	struct router *router;         /* LocalDB + GeoDB refresh (router.h) */
	struct prober *prober;         /* backend health probes (prober.h) */
	struct controller *controller; /* the site's controller lease (controller.h) */
	struct worker *worker;         /* GeoDB work off the loop (worker.h) */
	/* per group: LMTP recipients in transactions now (a move waits for
	 * them before it is acknowledged) */
	uint32_t *lmtp_inflight;
	/* per group: sessions open now and logins since the last load report
	 * (load_report.h: what the controller balances by) */
	uint32_t *group_sessions, *group_logins;
	struct load_report *load_report;
	SSL_CTX *ssl_ctx;
	struct relay_pipe_pool *pipe_pool;
	struct listener_context *listeners[LISTENER_COUNT];
	unsigned listener_count;
	struct evhttp *http;
	char writer[64]; /* names this daemon in GeoDB rows */
	struct net_network *haproxy_trusted;
	size_t haproxy_trusted_count;
	struct net_network *login_trusted; /* login_trusted_networks */
	size_t login_trusted_count;

	struct session *sessions; /* proxied sessions, a doubly-linked list */
	unsigned session_count;
	unsigned client_count; /* every client connection, pre-login included */
	uint64_t id_counter;   /* for session ids */
	uint64_t id_key;       /* random, so session ids are not guessable */
	time_t started;
	struct daemon_metrics metrics;
};

#endif
