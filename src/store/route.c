/* route.c - see route.h. */
#include "store/route.h"

#include "brain/placement.h"
#include "brain/site.h"
#include "brain/user.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum route_status check_backend(struct route_result *r, const struct geodb_backend *backend,
				       const char **reason_r)
{
	static char reason[256];
	if (backend == NULL) {
		snprintf(reason, sizeof(reason),
			 "group %u is assigned to backend %s, which does not exist", r->group_id,
			 r->group.backend);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	r->backend = *backend;
	if (backend->status != BACKEND_STATUS_ONLINE) {
		snprintf(reason, sizeof(reason), "backend %s of group %u is %s", backend->name,
			 r->group_id, backend_status_name(backend->status));
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	return ROUTE_OK;
}

/* The group's backend is marked down by the controller: its users go to the
 * pre-chosen alternative at once (failover.h: failover_route()), even before
 * this host sees the group moved there. */
static enum route_status check_marked(const struct localdb *ldb, struct route_result *r,
				      enum route_status status, const char **reason_r)
{
	static char reason[512];
	if (status != ROUTE_OK || r->backend.mark != HEALTH_MARK_DOWN)
		return status;
	const struct geodb_backend *alt =
		r->group.alt_backend[0] != '\0' ? localdb_backend(ldb, r->group.alt_backend) : NULL;
	/* the same rule as failover_route() */
	if (alt == NULL || strcmp(alt->name, r->backend.name) == 0 ||
	    alt->status != BACKEND_STATUS_ONLINE || alt->mark != HEALTH_MARK_UP) {
		snprintf(reason, sizeof(reason),
			 "backend %s of group %u is marked down (%s) and the group has no usable "
			 "alternative backend%s%s",
			 r->backend.name, r->group_id, r->backend.mark_reason,
			 r->group.alt_backend[0] != '\0' ? " (" : "",
			 r->group.alt_backend[0] != '\0' ? "its alternative cannot take it)" : "");
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	r->failover = true;
	r->backend = *alt;
	return ROUTE_OK;
}

static int64_t unix_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- several sites: the failover cell (brain/site.h) ---- */

static int site_name_cmp(const void *key, const void *site)
{
	return strcmp(key, ((const struct geodb_site *)site)->name);
}

int route_site_index(const struct route_site_view *view, const char *name)
{
	const struct geodb_site *site =
		view->site_count > 0 ? bsearch(name, view->sites, view->site_count,
					       sizeof(*view->sites), site_name_cmp)
				     : NULL;
	return site != NULL ? (int)(site - view->sites) : -1;
}

static bool heartbeat_exists(const void *context, int site, int64_t bucket)
{
	const struct route_site_view *view = context;
	if (site < 0 || (size_t)site >= view->site_count)
		return false;
	const char *name = view->sites[site].name;
	size_t lo = 0, hi = view->heartbeat_count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct geodb_site_heartbeat *h = &view->heartbeats[mid];
		int cmp = strcmp(name, h->site);
		if (cmp == 0 && h->bucket == bucket)
			return true;
		if (cmp < 0 || (cmp == 0 && bucket < h->bucket))
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

struct site_heartbeats route_site_heartbeats(const struct route_site_view *view)
{
	return (struct site_heartbeats){heartbeat_exists, view};
}

void route_home_cell(const struct route_site_view *view, const struct geodb_group *group,
		     struct site_home_cell *home_r)
{
	*home_r = (struct site_home_cell){
		.site = route_site_index(view, group->site),
		.backend = -1,
		.failover_site = group->failover_site[0] != '\0'
					 ? route_site_index(view, group->failover_site)
					 : -1,
		.epoch = (uint32_t)group->epoch,
	};
}

void route_failover_cell(const struct route_site_view *view,
			 const struct geodb_group_failover *cell, struct site_failover_cell *cell_r)
{
	memset(cell_r, 0, sizeof(*cell_r));
	if (cell == NULL)
		return;
	*cell_r = (struct site_failover_cell){
		.present = true,
		.writer_site = route_site_index(view, cell->writer_site),
		.target_site = route_site_index(view, cell->target_site),
		.target_backend = -1,
		.written_ms = cell->written_at_ms,
		.reason = strcmp(cell->reason, GEODB_FAILOVER_REASON_EVACUATE) == 0
				  ? SITE_REASON_EVACUATE
				  : SITE_REASON_OUTAGE,
		.home_epoch = (uint32_t)cell->home_epoch,
	};
}

enum site_verdict route_cell_verdict(const struct route_site_view *view,
				     const struct geodb_group *group,
				     const struct geodb_group_failover *cell)
{
	if (cell == NULL)
		return SITE_VERDICT_HOME;
	struct site_home_cell home;
	struct site_failover_cell fc;
	route_home_cell(view, group, &home);
	route_failover_cell(view, cell, &fc);
	if (fc.writer_site < 0 || home.failover_site < 0)
		return SITE_VERDICT_VOID_WRITER; /* a site this host does not know */
	if (cell->home_epoch < group->epoch)
		return SITE_VERDICT_VOID_EPOCH; /* also beyond 32 bits */
	struct site_heartbeats heartbeats = route_site_heartbeats(view);
	return site_cell_verdict(&home, &fc, &heartbeats);
}

/* The group was failed over to another site (its cell stands, and this
 * host has held it long enough): its users go to the cell's backend. */
static enum route_status check_cell(const struct localdb *ldb, struct route_result *r,
				    const char **reason_r)
{
	static char reason[400];
	const struct geodb_group_failover *cell =
		localdb_route_cell(ldb, r->group_id, unix_now_ms());
	struct route_site_view view;
	localdb_site_view(ldb, &view);
	if (cell == NULL || route_cell_verdict(&view, &r->group, cell) != SITE_VERDICT_STANDS)
		return ROUTE_OK;
	r->site_failover = true;
	snprintf(r->site_failover_reason, sizeof(r->site_failover_reason), "%s", cell->reason);
	const struct geodb_backend *b = localdb_backend(ldb, cell->target_backend);
	if (b == NULL || strcmp(b->site, cell->target_site) != 0) {
		snprintf(reason, sizeof(reason),
			 "group %u is failed over to backend %s of site %s, which does not exist "
			 "there",
			 r->group_id, cell->target_backend, cell->target_site);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	r->backend = *b;
	if (b->status != BACKEND_STATUS_ONLINE || b->mark == HEALTH_MARK_DOWN) {
		snprintf(reason, sizeof(reason),
			 "group %u is failed over to backend %s of site %s, which is %s%s", r->group_id,
			 b->name, b->site, backend_status_name(b->status),
			 b->mark == HEALTH_MARK_DOWN ? " and marked down" : "");
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	return ROUTE_OK;
}

/* ---- several sites: force moves ---- */

/* `site force-move`: a user of the site the group is served in, picked by
 * the move's hash, goes to one of its destinations: the backend there that
 * weighted rendezvous hashing of the group picks (placement_rendezvous():
 * every host with the same backend list agrees without a GeoDB write, and
 * the destination's daemon routes the forwarded session alike). */
static enum route_status check_force_move(const struct localdb *ldb, enum route_status status,
					  struct route_result *r, const char **reason_r)
{
	static char reason[400];
	if (status != ROUTE_OK)
		return status;
	size_t count;
	const struct geodb_site_force_move *moves = localdb_force_moves(ldb, &count);
	for (size_t i = 0; i < count; i++) {
		const struct geodb_site_force_move *m = &moves[i];
		if (strcmp(m->site, r->backend.site) != 0)
			continue;
		char names[GEODB_FORCE_MOVE_DESTINATIONS_MAX + 1];
		const char *dest[SITE_MAX];
		size_t n = 0;
		snprintf(names, sizeof(names), "%s", m->destinations);
		for (char *save = NULL, *t = strtok_r(names, ",", &save); t != NULL && n < SITE_MAX;
		     t = strtok_r(NULL, ",", &save))
			dest[n++] = t;
		size_t d;
		if (!site_force_move_picks(m->id, m->percent, r->username, n, &d))
			continue;
		size_t bcount;
		const struct geodb_backend *backends = localdb_backends(ldb, &bcount);
		struct placement_candidate *c = calloc(bcount + 1, sizeof(*c));
		size_t *index = calloc(bcount + 1, sizeof(*index));
		size_t k = 0;
		for (size_t b = 0; b < bcount; b++) {
			if (strcmp(backends[b].site, dest[d]) != 0)
				continue;
			c[k] = (struct placement_candidate){
				.name = backends[b].name,
				.status = backends[b].mark == HEALTH_MARK_DOWN ? BACKEND_STATUS_OFFLINE
									       : backends[b].status,
				.load_factor = backends[b].load_factor,
			};
			index[k++] = b;
		}
		int chosen = placement_rendezvous(c, k, r->group_id);
		if (chosen >= 0)
			r->backend = backends[index[chosen]];
		free(c);
		free(index);
		r->force_move_id = m->id;
		if (chosen < 0) {
			snprintf(reason, sizeof(reason),
				 "force move %lld of site %s sends %s to site %s, which has no "
				 "backend online with load factor > 0",
				 (long long)m->id, m->site, r->username, dest[d]);
			*reason_r = reason;
			return ROUTE_UNAVAILABLE;
		}
		return ROUTE_OK;
	}
	return ROUTE_OK;
}

static enum route_status propose(const struct localdb *ldb, const char *site,
				 struct route_result *r, const char **reason_r)
{
	static char reason[256];
	size_t count;
	const struct geodb_backend *backends = localdb_backends(ldb, &count);
	struct placement_candidate *candidates = calloc(count + 1, sizeof(*candidates));
	size_t *index = calloc(count + 1, sizeof(*index));
	size_t n = 0;
	/* metacache: a group placed again (its backend was removed) prefers a
	 * backend that held it within metacache_ttl */
	const struct geodb_group *row = localdb_group_row(ldb, r->group_id);
	int64_t now_ms = unix_now_ms();
	for (size_t i = 0; i < count; i++) {
		if (strcmp(backends[i].site, site) != 0)
			continue;
		candidates[n].warm = false;
		for (size_t h = 0; row != NULL && h < BALANCE_HISTORY &&
				   row->history[h].backend[0] != '\0';
		     h++) {
			if (strcmp(row->history[h].backend, backends[i].name) == 0 &&
			    now_ms - row->history[h].left_ms <= localdb_metacache_ttl(ldb))
				candidates[n].warm = true;
		}
		candidates[n].name = backends[i].name;
		/* a backend the controller marked down takes no new group */
		candidates[n].status = backends[i].mark == HEALTH_MARK_DOWN ? BACKEND_STATUS_OFFLINE
									    : backends[i].status;
		candidates[n].load_factor = backends[i].load_factor;
		candidates[n].assigned_groups = localdb_backend_group_count(ldb, i);
		index[n++] = i;
	}
	int chosen = placement_choose_backend(candidates, n, r->group_id);
	enum route_status status = ROUTE_ASSIGN;
	if (chosen < 0) {
		snprintf(reason, sizeof(reason),
			 "no online backend with load factor > 0 in site %s", site);
		*reason_r = reason;
		status = ROUTE_UNAVAILABLE;
	} else {
		const struct geodb_backend *b = &backends[index[chosen]];
		memset(&r->group, 0, sizeof(r->group));
		r->group.group_id = r->group_id;
		snprintf(r->group.site, sizeof(r->group.site), "%s", site);
		snprintf(r->group.backend, sizeof(r->group.backend), "%s", b->name);
		r->group.epoch = 1;
	}
	free(candidates);
	free(index);
	return status;
}

enum route_status route_decide(const struct localdb *ldb, const char *site, const char *username,
			       struct route_result *r, const char **reason_r)
{
	memset(r, 0, sizeof(*r));
	if (user_normalize(username, r->username, sizeof(r->username)) < 0) {
		*reason_r = "invalid username (empty, too long, or containing spaces or control "
			    "characters)";
		return ROUTE_BAD_USER;
	}
	int override = localdb_user_group(ldb, r->username);
	if (override >= 0) {
		r->group_id = (unsigned)override;
		r->group_override = true;
	} else {
		r->group_id = user_hash_group(r->username, localdb_group_count(ldb));
	}
	const struct geodb_group *group = localdb_group(ldb, r->group_id);
	if (group == NULL)
		return propose(ldb, site, r, reason_r);
	r->group = *group;
	enum route_status status = ROUTE_OK;
	if (localdb_cell(ldb, r->group_id) != NULL)
		status = check_cell(ldb, r, reason_r);
	if (status == ROUTE_OK && !r->site_failover)
		status = check_marked(
			ldb, r, check_backend(r, localdb_group_backend(ldb, r->group_id), reason_r),
			reason_r);
	return check_force_move(ldb, status, r, reason_r);
}

enum route_status route_assigned(struct localdb *ldb, struct route_result *r,
				 const struct geodb_group *stored, bool ours_won,
				 const char **reason_r)
{
	localdb_put_group(ldb, stored);
	r->group = *stored;
	r->assigned_now = ours_won;
	return check_force_move(
		ldb,
		check_marked(ldb, r, check_backend(r, localdb_backend(ldb, stored->backend), reason_r),
			     reason_r),
		r, reason_r);
}

enum route_status route_check_site(const struct localdb *ldb, const char *site, bool direct,
				   enum route_status status, struct route_result *r,
				   const char **reason_r)
{
	static char reason[400];
	r->via_site[0] = '\0';
	if (status != ROUTE_OK || direct || strcmp(r->backend.site, site) == 0)
		return status;
	const struct geodb_site *other = localdb_site(ldb, r->backend.site);
	if (other == NULL) {
		snprintf(reason, sizeof(reason),
			 "group %u lives on backend %s in site %s, which is not in the GeoDB",
			 r->group_id, r->backend.name, r->backend.site);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	if (other->status == SITE_STATUS_OFFLINE || other->status == SITE_STATUS_STANDBY) {
		snprintf(reason, sizeof(reason), "group %u lives in site %s, which is %s",
			 r->group_id, other->name, site_status_name(other->status));
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	if (other->load_balancer[0] == '\0') {
		snprintf(reason, sizeof(reason),
			 "group %u lives in site %s, which has no load balancer address "
			 "(mailcluster site update --load-balancer HOST[:PORT] %s)",
			 r->group_id, other->name, other->name);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	r->via = *other;
	snprintf(r->via_site, sizeof(r->via_site), "%s", other->name);
	return ROUTE_OK;
}

enum route_status route_user_sync(struct geodb *db, struct localdb *ldb, const char *site,
				  const char *username, bool assign, struct route_result *r,
				  const char **reason_r)
{
	static char reason[256];
	enum route_status status = route_decide(ldb, site, username, r, reason_r);
	if (status != ROUTE_ASSIGN)
		return status;
	if (!assign) {
		memset(&r->group, 0, sizeof(r->group)); /* a proposal, not an assignment */
		r->group.group_id = r->group_id;
		snprintf(reason, sizeof(reason), "group %u has no backend yet", r->group_id);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	struct geodb_group stored = r->group;
	int won = geodb_group_assign_if_absent(db, &stored, reason_r);
	if (won < 0)
		return ROUTE_ERROR;
	return route_assigned(ldb, r, &stored, won == 1, reason_r);
}
