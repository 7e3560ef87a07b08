/* login_client.c - see login_client.h.
 *
 * The stream's context is the struct login_client, which is also the
 * front-end's client (it is its first member): the protocol's hooks get it
 * and cast it back.
 */
#include "daemon/login_client.h"

#include "daemon/daemon.h"
#include "net/stream.h"
#include "proto/sasl_plain.h"
#include "store/route.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

static void wipe_free(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static void client_input(void *context)
{
	struct login_client *client = context;
	client->protocol->input(client);
}

static void client_flushed(void *context)
{
	login_client_destroy(context, NULL);
}

static void client_closed(void *context, const char *reason)
{
	struct login_client *client = context;
	login_client_destroy(client, client->state == LOGIN_CLIENT_CLOSING ? NULL : reason);
}

/* Logs the disconnect and starts closing; the caller writes the last line. */
static void close_start(struct login_client *client, const char *reason)
{
	log_info("event=disconnect protocol=%s client=%s:%u session=%s reason=\"%s\"",
		 client->protocol->name, client->id.client_ip, client->id.client_port,
		 client->id.session_id, reason);
	login_proxy_abort(&client->login);
	client->state = LOGIN_CLIENT_CLOSING;
}

/* Closes with the protocol's last line for reply. */
static void close_with_reply(struct login_client *client, enum login_client_reply reply,
			     const char *reason)
{
	close_start(client, reason);
	client->protocol->reply(client, reply, NULL, NULL);
	stream_close_after_flush(client->stream); /* calls client_flushed, later */
}

static void client_timeout(void *context)
{
	struct login_client *client = context;
	client->daemon->metrics.prelogin_timeouts++;
	close_with_reply(client, LOGIN_REPLY_TIMEOUT, "no login within prelogin_timeout");
}

static const struct stream_callbacks client_stream_callbacks = {
	.input = client_input,
	.timeout = client_timeout,
	.closed = client_closed,
	.flushed = client_flushed,
};

void login_client_init(struct login_client *client, const struct login_client_protocol *protocol,
		       struct daemon *daemon, int fd, const struct sockaddr *remote,
		       const struct sockaddr *local, bool implicit_tls)
{
	client->protocol = protocol;
	client->daemon = daemon;
	daemon->client_count++;
	client_ident_init(&client->id, daemon, fd, remote, local);
	/* Dovecot's rule: TLS, loopback, or a peer in login_trusted_networks */
	client->secured = implicit_tls || client->id.loopback || client->id.trusted;
	client->stream =
		stream_create(daemon->base, fd, implicit_tls ? daemon->ssl_ctx : NULL,
			      daemon->set->prelogin_line_max, daemon->set->prelogin_timeout_ms,
			      &client_stream_callbacks, client);
	log_debug("event=connect protocol=%s client=%s:%u session=%s tls=%s", protocol->name,
		  client->id.client_ip, client->id.client_port, client->id.session_id,
		  implicit_tls ? "yes" : "no");
}

void login_client_destroy(struct login_client *client, const char *reason)
{
	if (reason != NULL)
		log_info("event=disconnect protocol=%s client=%s:%u session=%s state=%s "
			 "reason=\"%s\"",
			 client->protocol->name, client->id.client_ip, client->id.client_port,
			 client->id.session_id,
			 client->state == LOGIN_CLIENT_BACKEND ? "login" : "prelogin", reason);
	login_proxy_abort(&client->login);
	router_wait_cancel(&client->route_wait);
	wipe_free(&client->wait_user);
	wipe_free(&client->wait_password);
	if (client->protocol->free != NULL)
		client->protocol->free(client);
	free(client->tag);
	free(client->route);
	stream_destroy(&client->stream);
	client->daemon->client_count--;
	free(client);
}

void login_client_close_after(struct login_client *client, const char *line, const char *reason)
{
	close_start(client, reason);
	if (line != NULL)
		login_client_send(client, line);
	stream_close_after_flush(client->stream); /* calls client_flushed, later */
}

void login_client_send(struct login_client *client, const char *text)
{
	stream_write(client->stream, text, strlen(text));
}

bool login_client_plaintext_allowed(const struct login_client *client)
{
	return client->secured || client->daemon->set->plaintext_auth == PLAINTEXT_AUTH_ALWAYS;
}

bool login_client_starttls_available(const struct login_client *client)
{
	return client->daemon->ssl_ctx != NULL && !stream_is_tls(client->stream);
}

void login_client_auth_failed(struct login_client *client)
{
	if (++client->auth_failures >= client->daemon->set->auth_failures_max)
		close_with_reply(client, LOGIN_REPLY_TOO_MANY_AUTH_FAILURES,
				 "too many failed logins");
}

static void login_done(void *context, enum login_proxy_result result, const char *reason)
{
	struct login_client *client = context;
	client->login = NULL;
	switch (result) {
	case LOGIN_PROXY_PROXYING:
		login_client_destroy(client, NULL); /* the session has the sockets */
		return;
	case LOGIN_PROXY_FAILED:
		client->state = LOGIN_CLIENT_PRELOGIN;
		login_client_auth_failed(client);
		break;
	case LOGIN_PROXY_UNAVAILABLE:
		client->protocol->reply(client, LOGIN_REPLY_TEMPFAIL, client->tag, NULL);
		client->state = LOGIN_CLIENT_PRELOGIN;
		break;
	}
	free(client->tag);
	client->tag = NULL;
	/* commands pipelined after the login; when called back from inside
	 * login_client_login() the reading loop there goes on by itself */
	if (client->state == LOGIN_CLIENT_PRELOGIN && !client->starting_login)
		client->protocol->input(client);
}

static void start_login(struct login_client *client, const char *tag, const char *user,
			const char *password)
{
	struct daemon *daemon = client->daemon;
	const struct login_client_protocol *protocol = client->protocol;
	client->state = LOGIN_CLIENT_BACKEND;
	if (tag != client->tag) {
		free(client->tag);
		client->tag = tag != NULL ? strdup(tag) : NULL;
	}
	struct login_proxy_request request = {
		.daemon = daemon,
		.client = client->stream,
		.dialogue = protocol->dialogue,
		.backend_port = protocol->backend_port(daemon->set),
		.route = client->route,
		.ident = client->id,
		.tag = tag,
		.user = user,
		.password = password,
	};
	client->starting_login = true;
	login_proxy_start(&request, login_done, client, &client->login);
	client->starting_login = false;
}

/* The group of a login's user got its backend (or could not). */
static void routed(void *context, enum route_status status, const struct route_result *route,
		   const char *reason)
{
	struct login_client *client = context;
	client->route_wait = NULL;
	*client->route = *route;
	switch (login_route_finish(client->daemon, client->protocol->name, &client->id, status,
				   client->route, reason)) {
	case LOGIN_ROUTE_OK:
		start_login(client, client->tag, client->wait_user, client->wait_password);
		break;
	case LOGIN_ROUTE_BAD_USER: /* not after an assignment */
	case LOGIN_ROUTE_UNAVAILABLE:
	case LOGIN_ROUTE_PENDING:
		client->protocol->reply(client, LOGIN_REPLY_TEMPFAIL, client->tag, NULL);
		client->state = LOGIN_CLIENT_PRELOGIN;
		free(client->tag);
		client->tag = NULL;
		break;
	}
	wipe_free(&client->wait_user);
	wipe_free(&client->wait_password);
	/* what the client pipelined meanwhile (nobody else reads it now) */
	if (client->state == LOGIN_CLIENT_PRELOGIN)
		client->protocol->input(client);
}

void login_client_login(struct login_client *client, const char *tag, const char *user,
			const char *password)
{
	struct daemon *daemon = client->daemon;
	const struct login_client_protocol *protocol = client->protocol;
	if (!login_client_plaintext_allowed(client)) {
		daemon->metrics.logins_refused++;
		protocol->reply(client, LOGIN_REPLY_PLAINTEXT_DISALLOWED, tag, NULL);
		return;
	}
	if (client->route == NULL)
		client->route = malloc(sizeof(*client->route));
	switch (login_route(daemon, protocol->name, &client->id, user, client->route, routed, client,
			    &client->route_wait)) {
	case LOGIN_ROUTE_OK:
		break;
	case LOGIN_ROUTE_BAD_USER:
		protocol->reply(client, LOGIN_REPLY_AUTH_FAILED, tag, NULL);
		login_client_auth_failed(client);
		return;
	case LOGIN_ROUTE_UNAVAILABLE:
		protocol->reply(client, LOGIN_REPLY_TEMPFAIL, tag, NULL);
		return;
	case LOGIN_ROUTE_PENDING:
		/* read nothing more until routed() */
		client->state = LOGIN_CLIENT_BACKEND;
		free(client->tag);
		client->tag = tag != NULL ? strdup(tag) : NULL;
		client->wait_user = strdup(user);
		client->wait_password = strdup(password);
		return;
	}
	start_login(client, tag, user, password);
}

void login_client_plain_response(struct login_client *client, const char *tag, const char *b64,
				 size_t len)
{
	char buf[SASL_PLAIN_BUF_SIZE];
	const char *authzid, *authcid, *passwd, *error;
	if (len == 1 && b64[0] == '*') {
		client->protocol->reply(client, LOGIN_REPLY_AUTH_CANCELLED, tag, NULL);
		return;
	}
	if (sasl_plain_decode(b64, len, buf, sizeof(buf), &authzid, &authcid, &passwd, &error) <
	    0) {
		explicit_bzero(buf, sizeof(buf));
		client->daemon->metrics.logins_refused++;
		client->protocol->reply(client, LOGIN_REPLY_AUTH_INVALID, tag, error);
		login_client_auth_failed(client);
		return;
	}
	login_client_login(client, tag, authcid, passwd);
	explicit_bzero(buf, sizeof(buf));
}
