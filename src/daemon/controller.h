/* controller.h - the site's controller: which daemon of a site decides.
 *
 * Every daemon of a site campaigns for the lease "controller/<site>" in the
 * GeoDB (geodb_lease_acquire_async(): a conditional write with a TTL of
 * controller_lease).  The holder is this process: the daemon's writer name
 * and its pid, so that two daemons on one host are two candidates and a
 * restarted daemon does not inherit the lease of the process it replaces.
 *
 * The holder renews every controller_lease/3; the others try as often,
 * with a per-daemon jitter, and get the lease once it is released or has
 * expired.  A holder steps down on its own when it has not renewed for
 * 2/3 of the TTL (or TTL - 1s, if shorter: the GeoDB counts whole
 * seconds), before anyone else can get the lease, so that there are never
 * two controllers; and when a renewal says another has the lease.  On
 * SIGTERM the holder releases the lease, so that another takes over at its
 * next try instead of after the TTL.
 *
 * Logged: event=controller_elected, event=controller_lost, and the GeoDB
 * refusing or answering again.  While this daemon holds the lease, a pass
 * of decisions (controller_act.h: health marks, moves, failover,
 * alternatives, balancing) runs every probe_interval in the worker thread,
 * writing only until the step-down moment.
 */
#ifndef CONTROLLER_H
#define CONTROLLER_H

#include <stdbool.h>

struct daemon;
struct strbuf;

/* After prober_init(): the first try is within controller_lease/3. */
void controller_init(struct daemon *daemon);
/* Shutdown: stops campaigning and, if this daemon holds the lease (or may
 * be about to), releases it.  Returns true if it started a release: then
 * released(daemon) runs once it is done, or after at most a second; false
 * if there was nothing to release (or it was already stopping). */
bool controller_stop(struct daemon *daemon, void (*released)(struct daemon *daemon));
/* Cancels whatever is in flight (a release too: if the loop is already
 * exiting, the lease just expires); before prober_deinit(). */
void controller_deinit(struct daemon *daemon);

/* "controller":{"lease","holder","me","expires_at"} for /api/status, and
 * the /metrics lines. */
void controller_status_json(struct daemon *daemon, struct strbuf *out);
void controller_metrics(struct daemon *daemon, struct strbuf *out);

/* The plan the next balancing round would make, computed now in the
 * worker (reads the GeoDB, writes nothing), as JSON (or text for the
 * CLI): callback gets it,
 * or NULL and an error.  Uses this daemon's resource samples: only the
 * controller has them. */
typedef void controller_plan_callback(void *context, const char *json, const char *error);
void controller_plan(struct daemon *daemon, bool text, controller_plan_callback *callback,
		     void *context);

#endif
