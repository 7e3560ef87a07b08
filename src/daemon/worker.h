/* worker.h - a thread for the GeoDB work that must not block the event loop
 * and has no asynchronous call: the controller's decisions (many reads and
 * conditional writes in a row, doveadm kicks, the move hook) and the move
 * acknowledgements.
 *
 * The thread has its own GeoDB handle (geodb_open() of the daemon's spec,
 * with the daemon's writer name), so it never shares a connection with the
 * loop.  Jobs run one at a time, in the order submitted; each job's done
 * callback runs afterwards on the event loop (a pipe wakes it), never in
 * the thread.  Nothing here touches the daemon's state from the thread:
 * a job gets its own copies of what it needs.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stdbool.h>

struct event_base;
struct geodb;
struct worker;

/* In the thread.  db is NULL when the thread's handle could not be opened
 * (open_error says why): the job must report that as its failure. */
typedef void worker_run_fn(struct geodb *db, const char *open_error, void *arg);
/* On the loop, after run.  cancelled: the worker is being destroyed and
 * run may not have happened; free arg and touch nothing else. */
typedef void worker_done_fn(void *arg, bool cancelled);

int worker_create(struct event_base *base, const char *geodb_spec, const char *writer,
		  unsigned busy_timeout_ms, struct worker **worker_r, const char **error_r);
void worker_submit(struct worker *worker, worker_run_fn *run, worker_done_fn *done, void *arg);
/* Jobs submitted and not yet done (the queue's length, the running one
 * included). */
unsigned worker_pending(const struct worker *worker);
/* Set while worker_destroy() waits: long jobs check it between steps. */
bool worker_stopping(const struct worker *worker);
/* Waits for the running job, cancels the queued ones (their done runs
 * with cancelled = true), joins the thread. */
void worker_destroy(struct worker **worker);

#endif
