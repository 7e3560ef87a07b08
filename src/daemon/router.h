/* router.h - the daemon's routing: the LocalDB it routes from, kept fresh
 * from the GeoDB, and the group assignments it makes.
 *
 *   known user     route_decide() on the LocalDB: no GeoDB I/O at all.
 *   new group      one conditional insert in the GeoDB (asynchronous);
 *                  every login waiting for the same group shares it.  While
 *                  the GeoDB is known to be unreachable the answer is
 *                  UNAVAILABLE at once: a proxy must not guess a backend
 *                  that another proxy might guess differently.
 *   refresh        a remote GeoDB (Cassandra) is read whole every
 *                  localdb_refresh, in the background; the LocalDB is saved
 *                  to its file when it changed.  A local one (SQLite) is
 *                  re-read as soon as any process commits (geodb_changed()),
 *                  so CLI changes are seen by the next login.
 *   GeoDB down     routing goes on from the LocalDB; refreshes keep being
 *                  tried, and the first that succeeds brings it back.
 *   failover       a group whose backend the controller marked down goes to
 *                  its alternative backend at once (route.h).
 *   moves          (brain/move.h) a group seen moving: its logins are held
 *                  (at most move_timeout, then sent to the target), this
 *                  daemon's sessions of the group on the old backend end
 *                  (IMAP BYE, POP3 -ERR, ManageSieve BYE), and once its LMTP
 *                  transactions for the group are over the move is
 *                  acknowledged in the GeoDB (through the worker thread).
 *                  After every change of the LocalDB, every session whose
 *                  user now belongs on another backend ends, so no user
 *                  keeps sessions on two backends.
 */
#ifndef ROUTER_H
#define ROUTER_H

#include "store/route.h"

#include <stdbool.h>
#include <stddef.h>

struct daemon;
struct localdb;
struct strbuf;

/* Loads the LocalDB file (remote GeoDBs), attaches the GeoDB to the loop,
 * reads it once (SQLite: now; Cassandra: in the background). */
int router_init(struct daemon *daemon, const char **error_r);
void router_deinit(struct daemon *daemon);

/* The LocalDB routed from (the prober lists the site's backends in it).
 * Rows read from it are valid until the next return to the event loop,
 * when a refresh may replace them. */
const struct localdb *router_localdb(struct daemon *daemon);

/* status: ROUTE_OK, ROUTE_UNAVAILABLE or ROUTE_ERROR. */
typedef void router_callback(void *context, enum route_status status,
			     const struct route_result *route, const char *reason);
struct router_wait;

/* Routes username.  Answers at once (ROUTE_OK, ROUTE_UNAVAILABLE,
 * ROUTE_BAD_USER, with *route_r and *reason_r), or returns ROUTE_ASSIGN:
 * the group is being assigned, *wait_r is set and callback runs later with
 * the outcome (unless router_wait_cancel() first). */
enum route_status router_route(struct daemon *daemon, const char *username,
			       struct route_result *route_r, const char **reason_r,
			       router_callback *callback, void *context,
			       struct router_wait **wait_r);
void router_wait_cancel(struct router_wait **wait);

/* Whether session s belongs elsewhere now (its group moved or is moving,
 * its backend is marked down, its user moved to another group); why gets a
 * sentence.  Every change the LocalDB brings ends such sessions; a login
 * that was routed just before the change checks its new session with this. */
struct session;
bool router_session_misplaced(struct daemon *daemon, const struct session *s, char *why,
			      size_t why_size);

/* The prober's first observation reached the GeoDB: from now on the
 * site's controller counts this daemon among the live ones, whose
 * acknowledgements a move waits for.  Logins wait (at most probe_interval +
 * probe_timeout + 1s, and not while the GeoDB is unreachable) until this
 * has happened and a LocalDB read started after it is installed: a daemon
 * that routed before the controller could see it might serve a group whose
 * move the controller finished without it. */
void router_observation_written(struct daemon *daemon);

/* Refresh from the GeoDB now (`mailcluster geodb refresh`); callback runs
 * when it is done, with error NULL on success. */
typedef void router_refresh_callback(void *context, const char *error);
void router_refresh_now(struct daemon *daemon, router_refresh_callback *callback, void *context);

/* The "geodb" and "localdb" members of /api/status, as JSON (no braces
 * around the pair), and the /metrics lines. */
void router_status_json(struct daemon *daemon, struct strbuf *out);
void router_metrics(struct daemon *daemon, struct strbuf *out);

#endif
