/* admin.h - the daemon's HTTP admin API (evhttp on admin_listen).
 *
 *   GET  /api/status         site, uptime, client and session counts (JSON)
 *   GET  /api/who[?user=U]   live proxied sessions (JSON)
 *   POST /api/kick?user=U    ends U's sessions with the protocol's BYE (JSON)
 *   GET  /metrics            Prometheus text format
 *
 * It listens where the operator says (loopback by default in the examples)
 * and has no authentication of its own: keep admin_listen off public
 * networks. */
#ifndef ADMIN_H
#define ADMIN_H

struct daemon;

int admin_start(struct daemon *daemon, const char **error_r);
void admin_stop(struct daemon *daemon);

#endif
