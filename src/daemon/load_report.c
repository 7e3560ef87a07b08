/* load_report.c - see load_report.h. */
#include "daemon/load_report.h"

#include "daemon/daemon.h"
#include "daemon/worker.h"
#include "store/geodb.h"
#include "util/log.h"
#include "util/strbuf.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct load_report {
	struct daemon *daemon;
	struct event *timer;
	unsigned char *reported; /* per group: the previous report had a row */
	bool in_flight;
	bool failing;
	char observer[NAME_MAX_LEN + 1];
	uint64_t reports, failures, rows;
};

struct report_job {
	struct load_report *lr;
	char observer[NAME_MAX_LEN + 1];
	struct geodb_group_load *rows;
	size_t count;
	unsigned ttl_secs;
	int result;
	char error[400];
};

static void report_run(struct geodb *db, const char *open_error, void *arg)
{
	struct report_job *job = arg;
	const char *error = open_error;
	job->result = db == NULL ? -1
				 : geodb_group_load_put(db, job->observer, job->rows, job->count,
							job->ttl_secs, &error);
	if (job->result < 0)
		snprintf(job->error, sizeof(job->error), "%s", error);
}

static void report_done(void *arg, bool cancelled)
{
	struct report_job *job = arg;
	if (!cancelled) {
		struct load_report *lr = job->lr;
		lr->in_flight = false;
		if (job->result < 0) {
			lr->failures++;
			if (!lr->failing)
				log_warning("event=load_report_failed rows=%zu reason=\"%s\" note=\"the "
					    "controller balances without this daemon's figures until it "
					    "works again\"",
					    job->count, job->error);
			lr->failing = true;
		} else {
			if (lr->failing)
				log_info("event=load_report_ok rows=%zu", job->count);
			lr->failing = false;
			lr->reports++;
			lr->rows += job->count;
		}
	}
	free(job->rows);
	free(job);
}

static void timer_fired(evutil_socket_t fd, short what, void *context)
{
	struct load_report *lr = context;
	struct daemon *daemon = lr->daemon;
	if (lr->in_flight)
		return; /* the previous one is still on its way */
	unsigned n = daemon->set->group_count;
	size_t count = 0;
	for (unsigned g = 0; g < n; g++)
		count += daemon->group_sessions[g] > 0 || daemon->group_logins[g] > 0 ||
			 lr->reported[g];
	if (count == 0)
		return;
	struct report_job *job = calloc(1, sizeof(*job));
	job->lr = lr;
	snprintf(job->observer, sizeof(job->observer), "%s", lr->observer);
	job->rows = calloc(count, sizeof(*job->rows));
	int64_t now = (int64_t)time(NULL);
	for (unsigned g = 0; g < n; g++) {
		bool active = daemon->group_sessions[g] > 0 || daemon->group_logins[g] > 0;
		if (!active && !lr->reported[g])
			continue;
		struct geodb_group_load *row = &job->rows[job->count++];
		row->group_id = g;
		snprintf(row->observer, sizeof(row->observer), "%s", lr->observer);
		row->sessions = daemon->group_sessions[g];
		row->logins = daemon->group_logins[g];
		row->reported_at = now;
		daemon->group_logins[g] = 0;
		lr->reported[g] = active;
	}
	unsigned interval = daemon->set->balance_interval_ms / 2;
	job->ttl_secs = (3 * interval + 999) / 1000;
	if (job->ttl_secs < 10)
		job->ttl_secs = 10;
	lr->in_flight = true;
	worker_submit(daemon->worker, report_run, report_done, job);
}

void load_report_init(struct daemon *daemon)
{
	struct load_report *lr = calloc(1, sizeof(*lr));
	daemon->load_report = lr;
	lr->daemon = daemon;
	lr->reported = calloc(daemon->set->group_count, 1);
	/* the observer name the controller counts as live (prober.c) */
	snprintf(lr->observer, sizeof(lr->observer), "%.52s/%d", daemon->writer, (int)getpid());
	lr->timer = event_new(daemon->base, -1, EV_PERSIST, timer_fired, lr);
	unsigned ms = daemon->set->balance_interval_ms / 2;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(lr->timer, &tv);
}

void load_report_deinit(struct daemon *daemon)
{
	struct load_report *lr = daemon->load_report;
	if (lr == NULL)
		return;
	event_free(lr->timer);
	free(lr->reported);
	free(lr);
	daemon->load_report = NULL;
}

void load_report_metrics(struct daemon *daemon, struct strbuf *out)
{
	const struct load_report *lr = daemon->load_report;
	strbuf_printf(out,
		      "# HELP mailcluster_load_reports_total Group load reports written to the "
		      "GeoDB, by result.\n"
		      "# TYPE mailcluster_load_reports_total counter\n"
		      "mailcluster_load_reports_total{result=\"ok\"} %llu\n"
		      "mailcluster_load_reports_total{result=\"failed\"} %llu\n",
		      (unsigned long long)lr->reports, (unsigned long long)lr->failures);
}
