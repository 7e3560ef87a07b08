/* prober.h - the backend prober: how this daemon sees the backends of its
 * site.
 *
 * Every backend of the daemon's site that the LocalDB lists, whatever its
 * status (observations of standby and offline backends are useful too),
 * gets a probe every probe_interval: a TCP connect to its IMAP port, the
 * greeting and, with backend_test_username/_password, a real LOGIN
 * (proto/imap_probe.h holds the dialogue and words the details).  A probe
 * ends within probe_timeout; probes of one backend never overlap, and each
 * backend's phase within the interval is a hash of its name, so a site's
 * backends are not probed in lockstep.  The LocalDB is looked at again
 * every probe_interval: backends added or removed there are picked up then.
 *
 * Each verdict updates the daemon's view of the backend (ok or failing,
 * since when, why, consecutive failures; /api/status "probes", /metrics)
 * and is written to the GeoDB as this daemon's observation
 * (geodb_health_put_async(), expiring after max(3 probe intervals, 10 s)),
 * where `mailcluster backend status` and the controller read it.  Only
 * changes are logged: event=probe_failing, event=probe_ok, and the GeoDB
 * refusing or taking observations again.
 */
#ifndef PROBER_H
#define PROBER_H

struct daemon;
struct strbuf;

/* After router_init(): the first probes start within one probe_interval. */
void prober_init(struct daemon *daemon);
/* Closes every probe in flight; before router_deinit(). */
void prober_deinit(struct daemon *daemon);

/* "probes":[{"backend","address","ok","since","detail","observed_at",
 * "failures"}, ...] for /api/status (backends probed at least once), and
 * the /metrics lines. */
void prober_status_json(struct daemon *daemon, struct strbuf *out);
void prober_metrics(struct daemon *daemon, struct strbuf *out);

/* Re-reads the site's backends from the LocalDB now (the router calls it
 * after its first load, so that the first probes need not wait a round). */
void prober_sync_now(struct daemon *daemon);

#endif
