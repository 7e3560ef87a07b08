/* admin.c - see admin.h. */
#include "daemon/admin.h"

#include "brain/user.h"
#include "daemon/daemon.h"
#include "daemon/controller.h"
#include "daemon/load_report.h"
#include "daemon/prober.h"
#include "daemon/router.h"
#include "daemon/session.h"
#include "util/log.h"
#include "util/strbuf.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		  const struct strbuf *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	struct evbuffer *out = evbuffer_new();
	if (body->len > 0)
		evbuffer_add(out, body->data, body->len);
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}

static void reply_error(struct evhttp_request *req, int code, const char *reason,
			const char *message)
{
	struct strbuf body = {0};
	strbuf_append(&body, "{\"error\":");
	strbuf_append_json_string(&body, message);
	strbuf_append(&body, "}\n");
	reply(req, code, reason, "application/json", &body);
	strbuf_free(&body);
}

/* The value of ?name=... in the request URI, or NULL; caller frees. */
static char *query_param(struct evhttp_request *req, const char *name)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *query = evhttp_uri_get_query(uri);
	if (query == NULL)
		return NULL;
	struct evkeyvalq params;
	if (evhttp_parse_query_str(query, &params) < 0)
		return NULL;
	const char *value = evhttp_find_header(&params, name);
	char *copy = value != NULL ? strdup(value) : NULL;
	evhttp_clear_headers(&params);
	return copy;
}

static void handle_status(struct evhttp_request *req, void *context)
{
	struct daemon *daemon = context;
	struct strbuf body = {0};
	strbuf_append(&body, "{\"site\":");
	strbuf_append_json_string(&body, daemon->set->site);
	strbuf_printf(&body, ",\"uptime\":%ld,\"clients\":%u,\"sessions\":%u,",
		      (long)(time(NULL) - daemon->started), daemon->client_count,
		      daemon->session_count);
	const struct daemon_metrics *m = &daemon->metrics;
	strbuf_printf(&body,
		      "\"sites\":{\"direct_backends\":%s,\"forwards\":%llu,"
		      "\"forwards_failed\":%llu,\"unavailable\":%llu,\"forwarded_in\":%llu,"
		      "\"loops_refused\":%llu},",
		      daemon->set->site_direct_backends ? "true" : "false",
		      (unsigned long long)m->site_forwards,
		      (unsigned long long)m->site_forwards_failed,
		      (unsigned long long)m->site_unavailable,
		      (unsigned long long)m->site_forwarded_in, (unsigned long long)m->route_loops);
	router_status_json(daemon, &body);
	strbuf_append(&body, ",");
	prober_status_json(daemon, &body);
	strbuf_append(&body, ",");
	controller_status_json(daemon, &body);
	strbuf_append(&body, "}\n");
	reply(req, 200, "OK", "application/json", &body);
	strbuf_free(&body);
}

static void handle_who(struct evhttp_request *req, void *context)
{
	struct daemon *daemon = context;
	char *filter = query_param(req, "user");
	char normalized[300];
	if (filter != NULL && user_normalize(filter, normalized, sizeof(normalized)) < 0) {
		free(filter);
		reply_error(req, 400, "Bad Request", "invalid user name");
		return;
	}
	struct strbuf body = {0};
	char *format = query_param(req, "format");
	if (format != NULL && strcmp(format, "tsv") == 0) {
		/* for the CLI: user, group, backend, client, protocol, since */
		for (struct session *s = daemon->sessions; s != NULL; s = s->next) {
			if (filter == NULL || strcmp(s->user, normalized) == 0)
				strbuf_printf(&body, "%s\t%u\t%s\t%s:%u\t%s\t%ld\n", s->user,
					      s->group_id, s->backend, s->client_ip, s->client_port,
					      s->protocol, (long)s->since);
		}
		reply(req, 200, "OK", "text/tab-separated-values", &body);
		strbuf_free(&body);
		free(format);
		free(filter);
		return;
	}
	free(format);
	strbuf_append(&body, "{\"sessions\":[");
	bool first = true;
	for (struct session *s = daemon->sessions; s != NULL; s = s->next) {
		if (filter != NULL && strcmp(s->user, normalized) != 0)
			continue;
		if (!first)
			strbuf_append(&body, ",");
		first = false;
		strbuf_append(&body, "{\"user\":");
		strbuf_append_json_string(&body, s->user);
		strbuf_printf(&body, ",\"group\":%u,\"backend\":", s->group_id);
		strbuf_append_json_string(&body, s->backend);
		strbuf_printf(&body,
			      ",\"client\":\"%s:%u\",\"protocol\":\"%s\",\"session\":\"%s\","
			      "\"since\":%ld}",
			      s->client_ip, s->client_port, s->protocol, s->session_id,
			      (long)s->since);
	}
	strbuf_append(&body, "]}\n");
	reply(req, 200, "OK", "application/json", &body);
	strbuf_free(&body);
	free(filter);
}

static void handle_kick(struct evhttp_request *req, void *context)
{
	struct daemon *daemon = context;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "Method Not Allowed", "use POST /api/kick?user=USER");
		return;
	}
	char *user = query_param(req, "user");
	char normalized[300];
	if (user == NULL || user_normalize(user, normalized, sizeof(normalized)) < 0) {
		free(user);
		reply_error(req, 400, "Bad Request", "missing or invalid ?user=USER");
		return;
	}
	unsigned kicked = session_kick_user(daemon, normalized, "kicked by the administrator");
	log_info("event=kick user=%s sessions=%u", normalized, kicked);
	struct strbuf body = {0};
	strbuf_append(&body, "{\"user\":");
	strbuf_append_json_string(&body, normalized);
	strbuf_printf(&body, ",\"kicked\":%u}\n", kicked);
	reply(req, 200, "OK", "application/json", &body);
	strbuf_free(&body);
	free(user);
}

static void metric(struct strbuf *body, const char *name, const char *type, const char *help,
		   const char *labels, unsigned long long value)
{
	strbuf_printf(body, "# HELP %s %s\n# TYPE %s %s\n%s%s %llu\n", name, help, name, type, name,
		      labels, value);
}

static void handle_metrics(struct evhttp_request *req, void *context)
{
	struct daemon *daemon = context;
	const struct daemon_metrics *m = &daemon->metrics;
	struct strbuf body = {0};
	metric(&body, "mailcluster_client_connections", "gauge",
	       "Client connections open now, pre-login included.", "", daemon->client_count);
	metric(&body, "mailcluster_sessions", "gauge", "Proxied sessions open now.", "",
	       daemon->session_count);
	metric(&body, "mailcluster_connections_total", "counter", "Client connections accepted.",
	       "", m->connections_total);
	metric(&body, "mailcluster_connections_refused_total", "counter",
	       "Client connections refused because client_limit was reached.", "",
	       m->connections_refused_limit);
	strbuf_printf(&body,
		      "# HELP mailcluster_logins_total Logins by result.\n"
		      "# TYPE mailcluster_logins_total counter\n"
		      "mailcluster_logins_total{result=\"ok\"} %llu\n"
		      "mailcluster_logins_total{result=\"failed\"} %llu\n"
		      "mailcluster_logins_total{result=\"unavailable\"} %llu\n"
		      "mailcluster_logins_total{result=\"refused\"} %llu\n",
		      (unsigned long long)m->logins_ok, (unsigned long long)m->logins_failed,
		      (unsigned long long)m->logins_unavailable,
		      (unsigned long long)m->logins_refused);
	metric(&body, "mailcluster_group_assignments_total", "counter",
	       "Groups assigned a backend by this daemon.", "", m->group_assignments);
	metric(&body, "mailcluster_backend_connect_failures_total", "counter",
	       "Failed connection attempts to backends.", "", m->backend_connect_failures);
	metric(&body, "mailcluster_prelogin_bad_commands_total", "counter",
	       "Invalid pre-login commands.", "", m->prelogin_bad_commands);
	metric(&body, "mailcluster_prelogin_too_long_total", "counter",
	       "Connections closed for an over-long pre-login command.", "", m->prelogin_too_long);
	metric(&body, "mailcluster_prelogin_timeouts_total", "counter",
	       "Connections closed for not logging in within prelogin_timeout.", "",
	       m->prelogin_timeouts);
	metric(&body, "mailcluster_sessions_ended_total", "counter", "Proxied sessions ended.", "",
	       m->sessions_ended);
	metric(&body, "mailcluster_haproxy_refused_total", "counter",
	       "Connections refused at the PROXY header (untrusted peer, bad header, timeout).", "",
	       m->haproxy_refused);
	metric(&body, "mailcluster_sessions_kicked_total", "counter", "Sessions ended by kick.", "",
	       m->sessions_kicked);
	/* bytes of sessions still open are counted when they end */
	metric(&body, "mailcluster_relayed_bytes_total", "counter",
	       "Bytes relayed by ended sessions, client to backend.", "{direction=\"to_backend\"}",
	       m->bytes_client_to_backend);
	strbuf_printf(&body, "mailcluster_relayed_bytes_total{direction=\"to_client\"} %llu\n",
		      (unsigned long long)m->bytes_backend_to_client);
	strbuf_printf(&body,
		      "# HELP mailcluster_lmtp_recipients_total LMTP recipients by final result.\n"
		      "# TYPE mailcluster_lmtp_recipients_total counter\n"
		      "mailcluster_lmtp_recipients_total{result=\"delivered\"} %llu\n"
		      "mailcluster_lmtp_recipients_total{result=\"tempfailed\"} %llu\n",
		      (unsigned long long)m->lmtp_recipients_delivered,
		      (unsigned long long)m->lmtp_recipients_tempfailed);
	metric(&body, "mailcluster_site_forwards_total", "counter",
	       "Logins and LMTP recipients another site's load balancer took.", "",
	       m->site_forwards);
	metric(&body, "mailcluster_site_forwards_failed_total", "counter",
	       "Logins and LMTP recipients another site's load balancer did not take.", "",
	       m->site_forwards_failed);
	metric(&body, "mailcluster_site_unavailable_total", "counter",
	       "Logins and recipients refused because their group's site has no usable load "
	       "balancer.",
	       "", m->site_unavailable);
	metric(&body, "mailcluster_site_forwarded_in_total", "counter",
	       "Sessions another site's daemon forwarded here.", "", m->site_forwarded_in);
	metric(&body, "mailcluster_route_loops_total", "counter",
	       "Forwarded sessions whose group lived in another site again: refused, not "
	       "forwarded back.",
	       "", m->route_loops);
	router_metrics(daemon, &body);
	prober_metrics(daemon, &body);
	controller_metrics(daemon, &body);
	load_report_metrics(daemon, &body);
	reply(req, 200, "OK", "text/plain; version=0.0.4", &body);
	strbuf_free(&body);
}

/* POST /api/geodb/refresh: answered once the refresh is done. */
struct refresh_request {
	struct evhttp_request *req;
	struct daemon *daemon;
	bool gone; /* the client closed the connection meanwhile */
};

static void refresh_client_gone(struct evhttp_connection *conn, void *context)
{
	struct refresh_request *r = context;
	r->gone = true;
}

static void refresh_done(void *context, const char *error)
{
	struct refresh_request *r = context;
	if (!r->gone) {
		evhttp_connection_set_closecb(evhttp_request_get_connection(r->req), NULL, NULL);
		if (error != NULL) {
			reply_error(r->req, 503, "Service Unavailable", error);
		} else {
			struct strbuf body = {0};
			strbuf_append(&body, "{\"refreshed\":true,");
			router_status_json(r->daemon, &body);
			strbuf_append(&body, "}\n");
			reply(r->req, 200, "OK", "application/json", &body);
			strbuf_free(&body);
		}
	}
	free(r);
}

static void handle_geodb_refresh(struct evhttp_request *req, void *context)
{
	struct daemon *daemon = context;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "Method Not Allowed", "use POST /api/geodb/refresh");
		return;
	}
	struct refresh_request *r = calloc(1, sizeof(*r));
	r->req = req;
	r->daemon = daemon;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), refresh_client_gone, r);
	log_info("event=geodb_refresh_requested");
	router_refresh_now(daemon, refresh_done, r);
}

/* GET /api/balance/plan: what the next balancing round would do, and why. */
struct plan_request {
	struct evhttp_request *req;
	bool gone;
	bool text;
};

static void plan_client_gone(struct evhttp_connection *conn, void *context)
{
	struct plan_request *r = context;
	r->gone = true;
}

static void plan_done(void *context, const char *json, const char *error)
{
	struct plan_request *r = context;
	if (!r->gone) {
		evhttp_connection_set_closecb(evhttp_request_get_connection(r->req), NULL, NULL);
		if (json == NULL) {
			reply_error(r->req, 503, "Service Unavailable", error);
		} else {
			struct strbuf body = {0};
			strbuf_append(&body, json);
			if (!r->text)
				strbuf_append(&body, "\n");
			reply(r->req, 200, "OK", r->text ? "text/plain" : "application/json", &body);
			strbuf_free(&body);
		}
	}
	free(r);
}

static void handle_balance_plan(struct evhttp_request *req, void *context)
{
	struct daemon *daemon = context;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_error(req, 405, "Method Not Allowed", "use GET /api/balance/plan");
		return;
	}
	struct plan_request *r = calloc(1, sizeof(*r));
	r->req = req;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), plan_client_gone, r);
	const char *uri = evhttp_request_get_uri(req);
	r->text = uri != NULL && strstr(uri, "format=text") != NULL;
	controller_plan(daemon, r->text, plan_done, r);
}

static void handle_other(struct evhttp_request *req, void *context)
{
	reply_error(req, 404, "Not Found",
		    "unknown path: see /api/status, /api/who, /api/kick, /api/geodb/refresh, "
		    "/api/balance/plan, /metrics");
}

int admin_start(struct daemon *daemon, const char **error_r)
{
	static char error[256];
	if (daemon->set->admin_listen.port == 0)
		return 0;
	daemon->http = evhttp_new(daemon->base);
	evhttp_set_allowed_methods(daemon->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(daemon->http, 8192);
	evhttp_set_max_body_size(daemon->http, 65536);
	evhttp_set_timeout(daemon->http, 30);
	evhttp_set_cb(daemon->http, "/api/status", handle_status, daemon);
	evhttp_set_cb(daemon->http, "/api/who", handle_who, daemon);
	evhttp_set_cb(daemon->http, "/api/kick", handle_kick, daemon);
	evhttp_set_cb(daemon->http, "/metrics", handle_metrics, daemon);
	evhttp_set_cb(daemon->http, "/api/geodb/refresh", handle_geodb_refresh, daemon);
	evhttp_set_cb(daemon->http, "/api/balance/plan", handle_balance_plan, daemon);
	evhttp_set_gencb(daemon->http, handle_other, daemon);
	if (evhttp_bind_socket(daemon->http, daemon->set->admin_listen.host,
			       (uint16_t)daemon->set->admin_listen.port) < 0) {
		snprintf(error, sizeof(error), "admin: cannot listen on admin_listen %s:%d: %s",
			 daemon->set->admin_listen.host, daemon->set->admin_listen.port,
			 strerror(errno));
		*error_r = error;
		evhttp_free(daemon->http);
		daemon->http = NULL;
		return -1;
	}
	return 0;
}

void admin_stop(struct daemon *daemon)
{
	if (daemon->http != NULL)
		evhttp_free(daemon->http);
	daemon->http = NULL;
}
