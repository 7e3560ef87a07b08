/* route.h - user -> group -> backend, the one routing function.
 *
 * The daemon calls it at every login (from its LocalDB) and the CLI's
 * `user access` calls it too (from a LocalDB it fills from the GeoDB), so
 * a login and an operator asking "where would alice go" get the same
 * answer.  The decision is pure: it reads the LocalDB and writes nothing.
 * A group without a backend gets a proposal (placement.h picks) that the
 * caller stores with the GeoDB's conditional insert, which settles races
 * between proxies; route_assigned() then finishes the decision from the
 * row that was stored, whoever won.
 */
#ifndef ROUTE_H
#define ROUTE_H

#include "brain/site.h"
#include "store/geodb.h"
#include "store/localdb.h"

enum route_status {
	ROUTE_OK,          /* backend is online: go there (the group's, or its
			    * alternative while the group's is marked down) */
	ROUTE_UNAVAILABLE, /* no usable backend now: NO [UNAVAILABLE] */
	ROUTE_BAD_USER,    /* the username cannot be a user */
	ROUTE_ASSIGN,      /* the group needs a backend: store result->group */
	ROUTE_ERROR,       /* GeoDB failure (route_user_sync only) */
};

struct route_result {
	char username[USERNAME_MAX_LEN + 1]; /* normalised */
	unsigned group_id;
	bool group_override; /* the user has an explicit group */
	bool assigned_now;   /* this call assigned the group */
	/* the group's backend is marked down: backend is its alternative */
	bool failover;
	/* the group's home site is failed over (its failover cell stands):
	 * backend is the cell's, in the failover site; the cell's reason */
	bool site_failover;
	char site_failover_reason[16];
	/* a site force move picked the user (its id; 0: none): backend is in
	 * one of its destination sites */
	int64_t force_move_id;
	struct geodb_group group;
	struct geodb_backend backend;
	/* route_check_site(): backend is in another site, reached through
	 * that site's load balancer (its row in via); "" = go to backend */
	char via_site[NAME_MAX_LEN + 1];
	struct geodb_site via;
	/* set by the daemon for one protocol (login_proxy.h): where to
	 * connect instead of the backend, the load balancer's IP and port */
	char forward_address[ADDRESS_MAX_LEN + 1];
	int forward_port;
};

/* Routes username by ldb.  ROUTE_ASSIGN fills result->group with the
 * proposed row (site, backend, epoch 1) when placement found a backend in
 * site; when none is usable the answer is ROUTE_UNAVAILABLE.  reason_r
 * (UNAVAILABLE, BAD_USER) is a sentence for the log. */
enum route_status route_decide(const struct localdb *ldb, const char *site, const char *username,
			       struct route_result *result, const char **reason_r);

/* After the conditional insert of result->group: stored is the row now in
 * the GeoDB (ours if ours_won).  Records it in ldb and finishes result:
 * ROUTE_OK or ROUTE_UNAVAILABLE. */
enum route_status route_assigned(struct localdb *ldb, struct route_result *result,
				 const struct geodb_group *stored, bool ours_won,
				 const char **reason_r);

/* Sites: on a ROUTE_OK result whose backend is in another site than
 * site, unless direct (setting site_direct_backends), the session goes to
 * that site's load balancer, which routes it there: result->via_site and
 * result->via are set.  ROUTE_UNAVAILABLE (with *reason_r) when that site
 * is not in the LocalDB, is offline or standby, or has no load balancer.
 * Any other status is returned as it is. */
enum route_status route_check_site(const struct localdb *ldb, const char *site, bool direct,
				   enum route_status status, struct route_result *result,
				   const char **reason_r);

/* ---- several sites: the failover cells (brain/site.h) ---- */

/* Sites sorted by name (a site's index is its position) and the heartbeat
 * rows sorted by site, then bucket: a snapshot's (geodb.h). */
struct route_site_view {
	const struct geodb_site *sites;
	size_t site_count;
	const struct geodb_site_heartbeat *heartbeats;
	size_t heartbeat_count;
};
int route_site_index(const struct route_site_view *view, const char *name);
/* heartbeats->context is view: it must outlive the result. */
struct site_heartbeats route_site_heartbeats(const struct route_site_view *view);
/* The brain's cells of a group row and of its failover cell (NULL: none);
 * backends are -1 (not known by index here). */
void route_home_cell(const struct route_site_view *view, const struct geodb_group *group,
		     struct site_home_cell *home_r);
void route_failover_cell(const struct route_site_view *view,
			 const struct geodb_group_failover *cell, struct site_failover_cell *cell_r);
/* The verdict on the group's failover cell (site_cell_verdict(); NULL:
 * SITE_VERDICT_HOME) by the rule every host applies; a cell naming a site
 * the view does not know is void. */
enum site_verdict route_cell_verdict(const struct route_site_view *view,
				     const struct geodb_group *group,
				     const struct geodb_group_failover *cell);

/* Both steps against the GeoDB at once, for the CLI: ldb must hold a fresh
 * snapshot of db.  With assign=false an unassigned group gives
 * ROUTE_UNAVAILABLE without writing. */
enum route_status route_user_sync(struct geodb *db, struct localdb *ldb, const char *site,
				  const char *username, bool assign, struct route_result *result,
				  const char **reason_r);

#endif
