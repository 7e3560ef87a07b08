/* prober.c - see prober.h.
 *
 * One probe_target per backend of the site, in a list sorted by name (the
 * LocalDB's order, so a re-read is one merge).  A target owns everything
 * its probes need: the socket, one event on it, one timer (the deadline of
 * the probe in flight, or else the start of the next) and a line buffer;
 * nothing is allocated per probe.
 */
#include "daemon/prober.h"

#include "daemon/daemon.h"
#include "daemon/router.h"
#include "proto/imap_probe.h"
#include "store/geodb.h"
#include "store/localdb.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/net_util.h"
#include "util/strbuf.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Bytes of one backend line that are kept: the verdict is in a line's
 * first words; the rest of a longer line (a long CAPABILITY) is skipped. */
#define PROBE_LINE_MAX 2048
/* Observations outlive a few missed probes, and never less than this. */
#define HEALTH_TTL_MIN_SECS 10

struct probe_target {
	struct probe_target *next; /* sorted by backend name */
	struct prober *prober;
	char backend[NAME_MAX_LEN + 1];
	char address[ADDRESS_MAX_LEN + 1];
	char username[IMAP_PROBE_CREDENTIAL_MAX + 1]; /* %{backend} expanded */

	/* the probe in flight (fd >= 0), or else the wait for the next */
	int fd;
	struct event io;    /* on fd; assigned whenever fd >= 0 */
	struct event timer; /* the probe's deadline, or the next probe's start */
	struct timespec started;
	int64_t started_at; /* unix seconds */
	struct imap_probe dialogue;
	bool recorded; /* this probe's verdict is in the view */
	char in[PROBE_LINE_MAX];
	size_t in_len;
	bool skipping; /* the rest of an over-long line */

	/* the view: what the latest verdict said */
	bool observed, ok;
	int64_t since;       /* the start of the first probe of the current streak */
	int64_t observed_at; /* the latest verdict */
	unsigned failures;   /* consecutive */
	char detail[IMAP_PROBE_DETAIL_MAX];
	struct geodb_op *write; /* the observation on its way to the GeoDB */
};

struct prober {
	struct daemon *daemon;
	struct probe_target *targets;
	struct event *round_timer; /* re-reads the site's backends */
	unsigned ttl_secs;         /* of the observations written */
	bool write_failing;        /* the last write to the GeoDB failed */
	bool written_once;         /* an observation reached the GeoDB */
	uint64_t probes_ok, probes_failed, write_failures;
};

static void probe_start(struct probe_target *target);

static struct timeval timeval_ms(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* ---- the view and the GeoDB ---- */

static void written(void *context, const char *error)
{
	struct probe_target *target = context;
	struct prober *prober = target->prober;
	target->write = NULL;
	if (error != NULL) {
		prober->write_failures++;
		if (!prober->write_failing)
			log_warning("event=probe_write_failed backend=%s reason=\"%s\" "
				    "note=\"other daemons and the CLI do not see this daemon's "
				    "observations until the GeoDB takes them again\"",
				    target->backend, error);
		prober->write_failing = true;
	} else {
		if (prober->write_failing) {
			log_info("event=probe_write_ok backend=%s", target->backend);
			prober->write_failing = false;
		}
		prober->written_once = true;
		router_observation_written(prober->daemon);
	}
}

static void observation_write(struct probe_target *target)
{
	struct prober *prober = target->prober;
	struct daemon *daemon = prober->daemon;
	if (target->write != NULL)
		return; /* the previous one is still on its way; the next probe's follows */
	struct geodb_health health;
	memset(&health, 0, sizeof(health));
	snprintf(health.backend, sizeof(health.backend), "%s", target->backend);
	/* one observer per daemon process, also when several run on one host
	 * (the controller's majority counts daemons); rows of a daemon that
	 * restarted under another pid expire with their TTL */
	snprintf(health.observer, sizeof(health.observer), "%.52s/%d", daemon->writer,
		 (int)getpid());
	health.ok = target->ok;
	snprintf(health.detail, sizeof(health.detail), "%s", target->detail);
	health.since = target->since;
	health.observed_at = target->observed_at;
	target->write =
		geodb_health_put_async(daemon->geodb, &health, prober->ttl_secs, written, target);
}

/* The probe's verdict goes into the view (once per probe). */
static void verdict_record(struct probe_target *target)
{
	struct prober *prober = target->prober;
	const struct imap_probe *dialogue = &target->dialogue;
	if (target->recorded || dialogue->verdict == IMAP_PROBE_PENDING)
		return;
	target->recorded = true;
	bool ok = dialogue->verdict == IMAP_PROBE_HEALTHY;
	int64_t now = (int64_t)time(NULL);
	if (!target->observed || ok != target->ok) {
		if (!ok)
			log_warning("event=probe_failing backend=%s address=%s detail=\"%s\"",
				    target->backend, target->address, dialogue->detail);
		else if (target->observed)
			log_info("event=probe_ok backend=%s address=%s after_failing=%llds",
				 target->backend, target->address,
				 (long long)(now - target->since));
		target->since = target->started_at;
	}
	target->observed = true;
	target->ok = ok;
	target->observed_at = now;
	snprintf(target->detail, sizeof(target->detail), "%s", ok ? "" : dialogue->detail);
	if (ok) {
		prober->probes_ok++;
		target->failures = 0;
	} else {
		prober->probes_failed++;
		target->failures++;
	}
	observation_write(target);
}

/* ---- one probe ---- */

static void probe_close(struct probe_target *target)
{
	if (target->fd < 0)
		return;
	event_del(&target->io);
	close(target->fd);
	target->fd = -1;
}

/* The probe is over (its dialogue says DONE or failed): record, close,
 * and wait for the next, probe_interval after this one's start. */
static void probe_finish(struct probe_target *target)
{
	verdict_record(target);
	probe_close(target);
	long wait =
		(long)target->prober->daemon->set->probe_interval_ms - ms_since(&target->started);
	struct timeval tv = timeval_ms(wait > 0 ? wait : 0);
	evtimer_add(&target->timer, &tv);
}

/* Sends what the dialogue asked for; false if the probe ended. */
static bool probe_send(struct probe_target *target, const char *command, size_t len)
{
	if (len == 0)
		return true;
	/* a few hundred bytes on a fresh connection: the send buffer takes them */
	ssize_t n = write(target->fd, command, len);
	if (n == (ssize_t)len)
		return true;
	imap_probe_closed(&target->dialogue, n < 0 ? strerror(errno) : "short write");
	probe_finish(target);
	return false;
}

/* Feeds one line; false if the probe ended. */
static bool probe_line(struct probe_target *target, const char *line, size_t len)
{
	char command[IMAP_PROBE_COMMAND_MAX];
	size_t command_len =
		imap_probe_line(&target->dialogue, line, len, command, sizeof(command));
	bool sent = probe_send(target, command, command_len);
	explicit_bzero(command, sizeof(command)); /* it may hold the test password */
	if (!sent)
		return false;
	verdict_record(target);
	if (target->dialogue.step == IMAP_PROBE_DONE) {
		probe_finish(target);
		return false;
	}
	return true;
}

static void probe_read(struct probe_target *target)
{
	ssize_t n =
		read(target->fd, target->in + target->in_len, sizeof(target->in) - target->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		imap_probe_closed(&target->dialogue, n < 0 ? strerror(errno) : NULL);
		probe_finish(target);
		return;
	}
	target->in_len += (size_t)n;
	size_t start = 0;
	char *lf;
	while ((lf = memchr(target->in + start, '\n', target->in_len - start)) != NULL) {
		size_t end = (size_t)(lf - target->in), next = end + 1;
		if (end > start && target->in[end - 1] == '\r')
			end--;
		bool skipped = target->skipping;
		target->skipping = false;
		if (!skipped && !probe_line(target, target->in + start, end - start))
			return;
		start = next;
	}
	memmove(target->in, target->in + start, target->in_len - start);
	target->in_len -= start;
	if (target->in_len == sizeof(target->in)) {
		/* an over-long line: judge it by its start, skip the rest */
		bool skipped = target->skipping;
		target->skipping = true;
		target->in_len = 0;
		if (!skipped)
			probe_line(target, target->in, sizeof(target->in));
	}
}

static void probe_io(evutil_socket_t fd, short what, void *context)
{
	struct probe_target *target = context;
	struct event_base *base = target->prober->daemon->base;
	if (target->dialogue.step != IMAP_PROBE_CONNECT) {
		probe_read(target);
		return;
	}
	/* writable: connected, or the connection failed */
	int error = 0;
	socklen_t error_len = sizeof(error);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
		error = errno;
	if (error != 0) {
		imap_probe_closed(&target->dialogue, strerror(error));
		probe_finish(target);
		return;
	}
	imap_probe_connected(&target->dialogue);
	event_del(&target->io);
	event_assign(&target->io, base, fd, EV_READ | EV_PERSIST, probe_io, target);
	event_add(&target->io, NULL);
}

static void probe_timer(evutil_socket_t fd, short what, void *context)
{
	struct probe_target *target = context;
	if (target->fd < 0) {
		probe_start(target);
		return;
	}
	imap_probe_timed_out(&target->dialogue, target->prober->daemon->set->probe_timeout_ms);
	probe_finish(target);
}

static void probe_start(struct probe_target *target)
{
	struct daemon *daemon = target->prober->daemon;
	const struct settings *set = daemon->set;
	clock_gettime(CLOCK_MONOTONIC, &target->started);
	target->started_at = (int64_t)time(NULL);
	imap_probe_start(&target->dialogue, target->username, set->backend_test_password);
	target->recorded = false;
	target->in_len = 0;
	target->skipping = false;

	struct sockaddr_storage addr;
	socklen_t addr_len;
	if (net_parse_ip_port(target->address, set->backend_port_imap, &addr, &addr_len) < 0) {
		imap_probe_closed(&target->dialogue, "the backend's address is not an IP address");
		probe_finish(target);
		return;
	}
	int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		imap_probe_closed(&target->dialogue, strerror(errno));
		probe_finish(target);
		return;
	}
	target->fd = fd;
	event_assign(&target->io, daemon->base, fd, EV_WRITE, probe_io, target);
	if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
		imap_probe_closed(&target->dialogue, strerror(errno));
		probe_finish(target);
		return;
	}
	event_add(&target->io, NULL);
	struct timeval deadline = timeval_ms(set->probe_timeout_ms);
	evtimer_add(&target->timer, &deadline);
}

/* ---- the site's backends ---- */

static struct probe_target *target_create(struct prober *prober,
					  const struct geodb_backend *backend)
{
	struct daemon *daemon = prober->daemon;
	const struct settings *set = daemon->set;
	struct probe_target *target = calloc(1, sizeof(*target));
	target->prober = prober;
	target->fd = -1;
	snprintf(target->backend, sizeof(target->backend), "%s", backend->name);
	snprintf(target->address, sizeof(target->address), "%s", backend->address);
	/* cannot fail: settings_load() bounds the expanded length */
	if (imap_probe_expand_username(set->backend_test_username, target->backend,
				       target->username, sizeof(target->username)) < 0)
		target->username[0] = '\0';
	evtimer_assign(&target->timer, daemon->base, probe_timer, target);
	/* the phase: the same for this backend on every run and every host;
	 * before this daemon's first observation is written, within the first
	 * 100 ms (logins wait for that: router.h) */
	uint64_t phase =
		hash_fnv1a64(target->backend, strlen(target->backend)) % set->probe_interval_ms;
	if (!prober->written_once)
		phase %= 100;
	struct timeval tv = timeval_ms((long)phase);
	evtimer_add(&target->timer, &tv);
	log_debug("event=probe_target_added backend=%s address=%s phase_ms=%llu", target->backend,
		  target->address, (unsigned long long)phase);
	return target;
}

static void target_remove(struct probe_target **link)
{
	struct probe_target *target = *link;
	*link = target->next;
	log_debug("event=probe_target_removed backend=%s", target->backend);
	geodb_op_cancel(&target->write);
	probe_close(target);
	event_del(&target->timer);
	free(target);
}

/* Merges the LocalDB's backends of our site (sorted by name) into the
 * targets (sorted the same way). */
static void targets_sync(struct prober *prober)
{
	const char *site = prober->daemon->set->site;
	size_t count;
	const struct geodb_backend *backends =
		localdb_backends(router_localdb(prober->daemon), &count);
	struct probe_target **link = &prober->targets;
	for (size_t i = 0; i < count; i++) {
		const struct geodb_backend *backend = &backends[i];
		if (strcmp(backend->site, site) != 0)
			continue;
		while (*link != NULL && strcmp((*link)->backend, backend->name) < 0)
			target_remove(link);
		if (*link != NULL && strcmp((*link)->backend, backend->name) == 0) {
			/* a new address is used from the next probe on */
			snprintf((*link)->address, sizeof((*link)->address), "%s",
				 backend->address);
		} else {
			struct probe_target *target = target_create(prober, backend);
			target->next = *link;
			*link = target;
		}
		link = &(*link)->next;
	}
	while (*link != NULL)
		target_remove(link);
}

static void round_timer_fired(evutil_socket_t fd, short what, void *context)
{
	targets_sync(context);
}

void prober_sync_now(struct daemon *daemon)
{
	if (daemon->prober != NULL)
		targets_sync(daemon->prober);
}

void prober_init(struct daemon *daemon)
{
	struct prober *prober = calloc(1, sizeof(*prober));
	daemon->prober = prober;
	prober->daemon = daemon;
	unsigned ttl_ms = 3 * daemon->set->probe_interval_ms;
	if (ttl_ms < HEALTH_TTL_MIN_SECS * 1000)
		ttl_ms = HEALTH_TTL_MIN_SECS * 1000;
	prober->ttl_secs = (ttl_ms + 999) / 1000;
	prober->round_timer = event_new(daemon->base, -1, EV_PERSIST, round_timer_fired, prober);
	struct timeval tv = timeval_ms(daemon->set->probe_interval_ms);
	event_add(prober->round_timer, &tv);
	targets_sync(prober);
}

void prober_deinit(struct daemon *daemon)
{
	struct prober *prober = daemon->prober;
	if (prober == NULL)
		return;
	while (prober->targets != NULL)
		target_remove(&prober->targets);
	event_free(prober->round_timer);
	free(prober);
	daemon->prober = NULL;
}

/* ---- exposure ---- */

void prober_status_json(struct daemon *daemon, struct strbuf *out)
{
	strbuf_append(out, "\"probes\":[");
	bool first = true;
	for (const struct probe_target *t = daemon->prober->targets; t != NULL; t = t->next) {
		if (!t->observed)
			continue;
		strbuf_append(out, first ? "{\"backend\":" : ",{\"backend\":");
		first = false;
		strbuf_append_json_string(out, t->backend);
		strbuf_append(out, ",\"address\":");
		strbuf_append_json_string(out, t->address);
		strbuf_printf(out,
			      ",\"ok\":%s,\"since\":%lld,\"detail\":", t->ok ? "true" : "false",
			      (long long)t->since);
		strbuf_append_json_string(out, t->detail);
		strbuf_printf(out, ",\"observed_at\":%lld,\"failures\":%u}",
			      (long long)t->observed_at, t->failures);
	}
	strbuf_append(out, "]");
}

void prober_metrics(struct daemon *daemon, struct strbuf *out)
{
	const struct prober *prober = daemon->prober;
	strbuf_append(out, "# HELP mailcluster_backend_probe_ok Whether this daemon's latest probe "
			   "of the backend succeeded.\n"
			   "# TYPE mailcluster_backend_probe_ok gauge\n");
	for (const struct probe_target *t = prober->targets; t != NULL; t = t->next) {
		if (t->observed)
			strbuf_printf(out, "mailcluster_backend_probe_ok{backend=\"%s\"} %d\n",
				      t->backend, t->ok ? 1 : 0);
	}
	strbuf_printf(out,
		      "# HELP mailcluster_backend_probes_total Backend probes by result.\n"
		      "# TYPE mailcluster_backend_probes_total counter\n"
		      "mailcluster_backend_probes_total{result=\"ok\"} %llu\n"
		      "mailcluster_backend_probes_total{result=\"failed\"} %llu\n"
		      "# HELP mailcluster_backend_probe_write_failures_total Probe observations "
		      "the GeoDB did not take.\n"
		      "# TYPE mailcluster_backend_probe_write_failures_total counter\n"
		      "mailcluster_backend_probe_write_failures_total %llu\n",
		      (unsigned long long)prober->probes_ok,
		      (unsigned long long)prober->probes_failed,
		      (unsigned long long)prober->write_failures);
}
