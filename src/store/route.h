/* route.h - user -> group -> backend, the one routing function.
 *
 * The daemon calls it at every login and the CLI's `user access` calls it
 * too, so a login and an operator asking "where would alice go" always get
 * the same answer.  A group without a backend is assigned here (placement.h
 * picks, the GeoDB's conditional insert settles races between proxies).
 */
#ifndef ROUTE_H
#define ROUTE_H

#include "store/geodb.h"

enum route_status {
	ROUTE_OK,          /* backend is online: go there */
	ROUTE_UNAVAILABLE, /* no usable backend now: NO [UNAVAILABLE] */
	ROUTE_BAD_USER,    /* the username cannot be a user */
	ROUTE_ERROR,       /* GeoDB failure */
};

struct route_result {
	char username[USERNAME_MAX_LEN + 1]; /* normalised */
	unsigned group_id;
	bool group_override; /* the user has an explicit group */
	bool assigned_now;   /* this call assigned the group */
	struct geodb_group group;
	struct geodb_backend backend;
};

/* A daemon's memory of what it read from the GeoDB for routing: user
 * overrides (and their absence), group assignments and backends.  It is
 * dropped whole whenever geodb_changed() says anything was committed, so a
 * steady stream of logins of known users costs no GeoDB read at all, and a
 * change by any process is seen by the next login. */
struct route_cache;
struct route_cache *route_cache_create(unsigned group_count);
void route_cache_destroy(struct route_cache **cache);

/* Routes username.  cache may be NULL (always read the GeoDB).  A result
 * served from the cache carries the group's site and backend but not its
 * epoch and writer.  With assign=false an unassigned group gives
 * ROUTE_UNAVAILABLE without writing.  reason_r (for UNAVAILABLE, BAD_USER,
 * ERROR) is a sentence for the log. */
enum route_status route_user(struct geodb *db, struct route_cache *cache, const char *site,
			     unsigned group_count, const char *username, bool assign,
			     struct route_result *result_r, const char **reason_r);

#endif
