/* main.c - mailclusterd: start-up, listeners, signals, shutdown.
 *
 *   mailclusterd -c FILE [-F]
 *
 * Loads and checks the configuration (refusing it whole on any error),
 * opens the GeoDB, binds every listener and the admin API, then runs the
 * event loop.  -F keeps it in the foreground logging to stderr; otherwise it
 * detaches and logs to syslog (facility mail).
 */
#include "daemon/admin.h"
#include "daemon/daemon.h"
#include "daemon/frontend.h"
#include "daemon/load_report.h"
#include "daemon/imap_client.h"
#include "daemon/session.h"
#include "daemon/worker.h"
#include "net/relay.h"
#include "net/tls.h"
#include "daemon/controller.h"
#include "daemon/prober.h"
#include "daemon/router.h"
#include "store/geodb.h"
#include "store/route.h"
#include "util/net_util.h"
#include "util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#define PIPE_POOL_SPARE 256

/* Listener kinds to front-ends; a NULL create: not in this build. */
static const struct frontend frontends[LISTENER_COUNT] = {
	[LISTENER_IMAP] = {imap_client_create, false,
			   "* BYE Too many connections, try again later.\r\n"},
	[LISTENER_IMAPS] = {imap_client_create, true, NULL},
	[LISTENER_POP3] = {pop3_client_create, false,
			   "-ERR [SYS/TEMP] Too many connections, try again later.\r\n"},
	[LISTENER_POP3S] = {pop3_client_create, true, NULL},
	[LISTENER_LMTP] = {lmtp_client_create, false,
			   "421 4.3.2 Too many connections, try again later\r\n"},
	[LISTENER_SIEVE] = {sieve_client_create, false,
			    "BYE \"Too many connections, try again later.\"\r\n"},
	[LISTENER_SUBMISSION] = {submission_client_create, false,
				 "421 4.3.2 Too many connections, try again later\r\n"},
	[LISTENER_SUBMISSIONS] = {submission_client_create, true, NULL},
};

struct listener_context {
	struct daemon *daemon;
	const struct frontend *frontend;
	bool haproxy;
	const char *name;
	struct sockaddr_storage local; /* the bound address, if not a wildcard */
	bool local_known;
	struct event *resume_timer;
	struct evconnlistener *listener;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: mailclusterd -c FILE [-F]\n"
		     "  -c FILE  configuration file (required)\n"
		     "  -F       stay in the foreground and log to stderr\n"
		     "  -h       this help\n");
}

static void accept_connection(struct evconnlistener *listener, evutil_socket_t fd,
			      struct sockaddr *addr, int addr_len, void *context)
{
	struct listener_context *lc = context;
	struct daemon *daemon = lc->daemon;
	daemon->metrics.connections_total++;
	if (daemon->client_count >= daemon->set->client_limit) {
		const char *bye = lc->frontend->busy_reply;
		daemon->metrics.connections_refused_limit++;
		if (bye != NULL && !lc->haproxy) {
			ssize_t ignored = write(fd, bye, strlen(bye));
			(void)ignored;
		}
		close(fd);
		log_warning(
			"event=connection_refused listener=%s reason=\"client_limit %u reached\"",
			lc->name, daemon->set->client_limit);
		return;
	}
	if (lc->haproxy) {
		haproxy_accept(daemon, fd, addr, lc->frontend, lc->name);
		return;
	}
	lc->frontend->create(daemon, fd, addr,
			     lc->local_known ? (struct sockaddr *)&lc->local : NULL,
			     lc->frontend->implicit_tls);
}

static void listener_resume(evutil_socket_t fd, short what, void *context)
{
	struct listener_context *lc = context;
	evconnlistener_enable(lc->listener);
}

static void accept_error(struct evconnlistener *listener, void *context)
{
	struct listener_context *lc = context;
	int err = EVUTIL_SOCKET_ERROR();
	log_error("event=accept_error listener=%s reason=\"%s\" action=\"pausing accepts for 1s\"",
		  lc->name, strerror(err));
	/* out of descriptors: retrying at once would spin */
	evconnlistener_disable(listener);
	struct timeval tv = {1, 0};
	evtimer_add(lc->resume_timer, &tv);
}

static int listen_on(struct daemon *daemon, enum listener_kind kind, const char **error_r)
{
	static char error[256];
	const struct listen_addr *addr = &daemon->set->listeners[kind].addr;
	const char *name = listener_names[kind];
	if (addr->port == 0)
		return 0;
	if (frontends[kind].create == NULL) {
		snprintf(error, sizeof(error),
			 "listen %s: this front-end is not available in this build", name);
		*error_r = error;
		return -1;
	}
	struct sockaddr_storage ss;
	int ss_len = sizeof(ss);
	char spec[128];
	if (strchr(addr->host, ':') != NULL)
		snprintf(spec, sizeof(spec), "[%s]:%d", addr->host, addr->port);
	else
		snprintf(spec, sizeof(spec), "%s:%d", addr->host, addr->port);
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &ss_len) < 0) {
		snprintf(error, sizeof(error), "listen %s = %s: not an IP address and port", name,
			 spec);
		*error_r = error;
		return -1;
	}
	struct listener_context *lc = calloc(1, sizeof(*lc));
	lc->daemon = daemon;
	lc->frontend = &frontends[kind];
	lc->haproxy = daemon->set->listeners[kind].haproxy;
	lc->name = name;
	lc->resume_timer = evtimer_new(daemon->base, listener_resume, lc);
	lc->listener = evconnlistener_new_bind(daemon->base, accept_connection, lc,
					       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						       LEV_OPT_CLOSE_ON_EXEC,
					       4096, (struct sockaddr *)&ss, ss_len);
	if (lc->listener == NULL) {
		snprintf(error, sizeof(error), "cannot listen on %s (listen %s): %s", spec, name,
			 strerror(errno));
		*error_r = error;
		event_free(lc->resume_timer);
		free(lc);
		return -1;
	}
	evconnlistener_set_error_cb(lc->listener, accept_error);
	/* accepted sockets inherit these from the listener on Linux: set once
	 * here instead of twice per connection */
	net_set_tcp_options(evconnlistener_get_fd(lc->listener));
	struct sockaddr_in6 any6 = {.sin6_family = AF_INET6};
	bool wildcard =
		(ss.ss_family == AF_INET &&
		 ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
		(ss.ss_family == AF_INET6 &&
		 memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &any6.sin6_addr, 16) == 0);
	if (!wildcard) {
		memcpy(&lc->local, &ss, sizeof(ss));
		lc->local_known = true;
	}
	daemon->listeners[daemon->listener_count++] = lc;
	log_info("event=listening listener=%s address=%s", name, spec);
	return 0;
}

static void stop_listeners(struct daemon *daemon)
{
	for (unsigned i = 0; i < daemon->listener_count; i++) {
		struct listener_context *lc = daemon->listeners[i];
		evconnlistener_free(lc->listener);
		event_free(lc->resume_timer);
		free(lc);
	}
	daemon->listener_count = 0;
}

static void on_lease_released(struct daemon *daemon)
{
	event_base_loopexit(daemon->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *context)
{
	struct daemon *daemon = context;
	log_info("event=shutdown signal=%s sessions=%u", strsignal((int)sig),
		 daemon->session_count);
	/* the controller lease first (at most a second), so that another
	 * daemon takes over at once; a second signal does not wait */
	if (controller_stop(daemon, on_lease_released))
		return;
	event_base_loopexit(daemon->base, NULL);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int detach(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return chdir("/");
}

/* The GeoDB spec for the log, without the value of password=. */
static void redact_password(const char *spec, char *dst, size_t size)
{
	snprintf(dst, size, "%s", spec);
	char *p = strstr(dst, "password=");
	if (p == NULL)
		return;
	p += strlen("password=");
	char *end = strchr(p, ';');
	char rest[512];
	snprintf(rest, sizeof(rest), "***%s", end != NULL ? end : "");
	snprintf(p, size - (size_t)(p - dst), "%s", rest);
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	bool foreground = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:Fh")) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'F':
			foreground = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (config_path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}

	struct daemon daemon;
	memset(&daemon, 0, sizeof(daemon));
	daemon.config_path = config_path;
	const char *error;
	if (settings_load(config_path, &daemon.set, &error) < 0) {
		fprintf(stderr, "mailclusterd: %s\n", error);
		return 1;
	}
	enum log_level level = LOG_LEVEL_INFO;
	log_level_parse(daemon.set->log_level, &level);
	log_init("mailclusterd", foreground, level);

	char host[64] = "unknown";
	gethostname(host, sizeof(host) - 1);
	snprintf(daemon.writer, sizeof(daemon.writer), "%.40s/%.20s", host, daemon.set->site);
	if (getrandom(&daemon.id_key, sizeof(daemon.id_key), 0) != sizeof(daemon.id_key))
		daemon.id_key = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)time(NULL);

	if (daemon.set->tls_cert[0] != '\0' &&
	    tls_server_context_create(daemon.set->tls_cert, daemon.set->tls_key, &daemon.ssl_ctx,
				      &error) < 0) {
		fprintf(stderr, "mailclusterd: %s\n", error);
		return 1;
	}
	if (geodb_open(daemon.set->geodb, daemon.writer, 1000, &daemon.geodb, &error) < 0 ||
	    (geodb_can_watch(daemon.geodb) &&
	     geodb_check_group_count(daemon.geodb, daemon.set->group_count, &error) < 0)) {
		fprintf(stderr, "mailclusterd: %s\n", error);
		return 1;
	}
	bool any_listener = false;
	for (int k = 0; k < LISTENER_COUNT; k++)
		any_listener |= daemon.set->listeners[k].addr.port != 0;
	if (!any_listener) {
		fprintf(stderr,
			"mailclusterd: %s: no listener configured: set listen { imap = ADDR:PORT "
			"}\n",
			config_path);
		return 1;
	}
	if (daemon.set->haproxy_trusted_networks[0] != '\0' &&
	    net_networks_parse(daemon.set->haproxy_trusted_networks, &daemon.haproxy_trusted,
			       &daemon.haproxy_trusted_count, &error) < 0) {
		fprintf(stderr, "mailclusterd: %s: haproxy_trusted_networks: %s\n", config_path,
			error);
		return 1;
	}
	if (daemon.set->login_trusted_networks[0] != '\0' &&
	    net_networks_parse(daemon.set->login_trusted_networks, &daemon.login_trusted,
			       &daemon.login_trusted_count, &error) < 0) {
		fprintf(stderr, "mailclusterd: %s: login_trusted_networks: %s\n", config_path,
			error);
		return 1;
	}
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	if (!foreground && detach() < 0) {
		fprintf(stderr, "mailclusterd: cannot detach: %s\n", strerror(errno));
		return 1;
	}

	/* the changelist folds a delete and an add of the same socket in one
	 * loop turn (a login handing its sockets to the relay) into one or
	 * no epoll_ctl() */
	struct event_config *event_config = event_config_new();
	event_config_set_flag(event_config, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	daemon.base = event_base_new_with_config(event_config);
	event_config_free(event_config);
	daemon.pipe_pool = relay_pipe_pool_create(PIPE_POOL_SPARE);
	daemon.started = time(NULL);
	daemon.lmtp_inflight = calloc(daemon.set->group_count, sizeof(*daemon.lmtp_inflight));
	daemon.group_sessions = calloc(daemon.set->group_count, sizeof(*daemon.group_sessions));
	daemon.group_logins = calloc(daemon.set->group_count, sizeof(*daemon.group_logins));
	if (worker_create(daemon.base, daemon.set->geodb, daemon.writer, 1000, &daemon.worker,
			  &error) < 0 ||
	    router_init(&daemon, &error) < 0) {
		log_error("event=startup_failed reason=\"%s\"", error);
		if (foreground)
			fprintf(stderr, "mailclusterd: %s\n", error);
		return 1;
	}
	prober_init(&daemon);
	controller_init(&daemon);
	load_report_init(&daemon);
	for (int k = 0; k < LISTENER_COUNT; k++) {
		if (listen_on(&daemon, (enum listener_kind)k, &error) < 0)
			break;
		error = NULL;
	}
	if (error != NULL || admin_start(&daemon, &error) < 0) {
		log_error("event=startup_failed reason=\"%s\"", error);
		if (foreground)
			fprintf(stderr, "mailclusterd: %s\n", error);
		return 1;
	}
	struct event *sigterm = evsignal_new(daemon.base, SIGTERM, on_signal, &daemon);
	struct event *sigint = evsignal_new(daemon.base, SIGINT, on_signal, &daemon);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	char geodb_shown[512];
	redact_password(daemon.set->geodb, geodb_shown, sizeof(geodb_shown));
	log_info("event=started site=%s geodb=\"%s\" group_count=%u pid=%d", daemon.set->site,
		 geodb_shown, daemon.set->group_count, (int)getpid());

	event_base_dispatch(daemon.base);

	/* the worker's running job ends first (the controller's checks
	 * worker_stopping()); queued ones are dropped */
	worker_destroy(&daemon.worker);
	stop_listeners(&daemon);
	admin_stop(&daemon);
	session_destroy_all(&daemon);
	event_free(sigterm);
	event_free(sigint);
	relay_pipe_pool_destroy(&daemon.pipe_pool);
	load_report_deinit(&daemon);
	controller_deinit(&daemon);
	prober_deinit(&daemon);
	router_deinit(&daemon);
	geodb_close(&daemon.geodb);
	tls_context_destroy(&daemon.ssl_ctx);
	event_base_free(daemon.base);
	free(daemon.haproxy_trusted);
	free(daemon.login_trusted);
	free(daemon.lmtp_inflight);
	free(daemon.group_sessions);
	free(daemon.group_logins);
	settings_free(&daemon.set);
	log_info("event=stopped");
	return 0;
}
