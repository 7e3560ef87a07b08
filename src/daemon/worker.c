/* worker.c - see worker.h. */
#include "daemon/worker.h"

#include "store/geodb.h"
#include "util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct job {
	struct job *next;
	worker_run_fn *run;
	worker_done_fn *done;
	void *arg;
};

struct worker {
	struct event_base *base;
	char *spec, *writer;
	unsigned busy_timeout_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *queue, **queue_tail;     /* to run */
	struct job *finished, **finished_tail; /* run, done not called yet */
	unsigned pending;
	atomic_bool stopping;
	int pipe_fd[2];
	struct event *wake;
};

static void *thread_main(void *context)
{
	struct worker *w = context;
	struct geodb *db = NULL;
	const char *error = NULL;
	char open_error[512] = "";
	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (w->queue == NULL && !atomic_load(&w->stopping))
			pthread_cond_wait(&w->cond, &w->lock);
		struct job *job = w->queue;
		if (job == NULL || atomic_load(&w->stopping)) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		w->queue = job->next;
		if (w->queue == NULL)
			w->queue_tail = &w->queue;
		pthread_mutex_unlock(&w->lock);

		if (db == NULL) {
			/* (re)open lazily: a GeoDB that was away may be back */
			if (geodb_open(w->spec, w->writer, w->busy_timeout_ms, &db, &error) < 0) {
				snprintf(open_error, sizeof(open_error), "%s", error);
				db = NULL;
			}
		}
		job->run(db, db == NULL ? open_error : NULL, job->arg);

		job->next = NULL;
		pthread_mutex_lock(&w->lock);
		*w->finished_tail = job;
		w->finished_tail = &job->next;
		pthread_mutex_unlock(&w->lock);
		char byte = 1;
		ssize_t ret;
		do
			ret = write(w->pipe_fd[1], &byte, 1);
		while (ret < 0 && errno == EINTR);
		/* EAGAIN: the pipe is full of wake-ups already */
	}
	geodb_close(&db);
	return NULL;
}

static void wake_fired(evutil_socket_t fd, short what, void *context)
{
	struct worker *w = context;
	char buf[256];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&w->lock);
	struct job *jobs = w->finished;
	w->finished = NULL;
	w->finished_tail = &w->finished;
	pthread_mutex_unlock(&w->lock);
	while (jobs != NULL) {
		struct job *job = jobs;
		jobs = job->next;
		w->pending--;
		job->done(job->arg, false);
		free(job);
	}
}

int worker_create(struct event_base *base, const char *geodb_spec, const char *writer,
		  unsigned busy_timeout_ms, struct worker **worker_r, const char **error_r)
{
	static char error[256];
	struct worker *w = calloc(1, sizeof(*w));
	w->base = base;
	w->spec = strdup(geodb_spec);
	w->writer = strdup(writer);
	w->busy_timeout_ms = busy_timeout_ms;
	w->queue_tail = &w->queue;
	w->finished_tail = &w->finished;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (pipe2(w->pipe_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(error, sizeof(error), "worker: pipe: %s", strerror(errno));
		*error_r = error;
		free(w->spec);
		free(w->writer);
		free(w);
		return -1;
	}
	w->wake = event_new(base, w->pipe_fd[0], EV_READ | EV_PERSIST, wake_fired, w);
	event_add(w->wake, NULL);
	int ret = pthread_create(&w->thread, NULL, thread_main, w);
	if (ret != 0) {
		snprintf(error, sizeof(error), "worker: pthread_create: %s", strerror(ret));
		*error_r = error;
		event_free(w->wake);
		close(w->pipe_fd[0]);
		close(w->pipe_fd[1]);
		free(w->spec);
		free(w->writer);
		free(w);
		return -1;
	}
	*worker_r = w;
	return 0;
}

void worker_submit(struct worker *w, worker_run_fn *run, worker_done_fn *done, void *arg)
{
	struct job *job = calloc(1, sizeof(*job));
	job->run = run;
	job->done = done;
	job->arg = arg;
	w->pending++;
	pthread_mutex_lock(&w->lock);
	*w->queue_tail = job;
	w->queue_tail = &job->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

unsigned worker_pending(const struct worker *w)
{
	return w->pending;
}

bool worker_stopping(const struct worker *w)
{
	return atomic_load(&((struct worker *)w)->stopping);
}

void worker_destroy(struct worker **_w)
{
	struct worker *w = *_w;
	if (w == NULL)
		return;
	*_w = NULL;
	pthread_mutex_lock(&w->lock);
	atomic_store(&w->stopping, true);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	/* finished first (their run happened), then the ones never run */
	struct job *lists[2] = {w->finished, w->queue};
	for (int i = 0; i < 2; i++) {
		while (lists[i] != NULL) {
			struct job *job = lists[i];
			lists[i] = job->next;
			job->done(job->arg, true);
			free(job);
		}
	}
	event_free(w->wake);
	close(w->pipe_fd[0]);
	close(w->pipe_fd[1]);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w->spec);
	free(w->writer);
	free(w);
}
