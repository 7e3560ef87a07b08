/* route.c - see route.h. */
#include "store/route.h"

#include "brain/placement.h"
#include "brain/user.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int assign_group(struct geodb *db, const char *site, struct route_result *r,
			const char **reason_r)
{
	static char reason[256];
	struct geodb_backend *backends = NULL;
	struct geodb_backend_load *loads = NULL;
	size_t backend_count = 0, load_count = 0;
	if (geodb_backend_list(db, site, &backends, &backend_count, reason_r) < 0)
		return -1;
	if (geodb_backend_loads(db, &loads, &load_count, reason_r) < 0) {
		free(backends);
		return -1;
	}
	struct placement_candidate *candidates = calloc(backend_count + 1, sizeof(*candidates));
	for (size_t i = 0; i < backend_count; i++) {
		candidates[i].name = backends[i].name;
		candidates[i].status = backends[i].status;
		candidates[i].load_factor = backends[i].load_factor;
		for (size_t j = 0; j < load_count; j++) {
			if (strcmp(loads[j].backend, backends[i].name) == 0)
				candidates[i].assigned_groups = loads[j].groups;
		}
	}
	int chosen = placement_choose_backend(candidates, backend_count, r->group_id);
	int ret = 0;
	if (chosen < 0) {
		snprintf(reason, sizeof(reason), "no online backend with load factor > 0 in site %s", site);
		*reason_r = reason;
		ret = 1;
	} else {
		memset(&r->group, 0, sizeof(r->group));
		r->group.group_id = r->group_id;
		snprintf(r->group.site, sizeof(r->group.site), "%s", site);
		snprintf(r->group.backend, sizeof(r->group.backend), "%s", backends[chosen].name);
		r->group.epoch = 1;
		int stored = geodb_group_assign_if_absent(db, &r->group, reason_r);
		if (stored < 0)
			ret = -1;
		else
			r->assigned_now = stored == 1;
	}
	free(candidates);
	free(loads);
	free(backends);
	return ret;
}

/* The reads of one routing decision, in one read transaction. */
static enum route_status route_read(struct geodb *db, unsigned group_count, struct route_result *r,
				    bool *group_found_r, bool *backend_found_r, const char **reason_r)
{
	struct geodb_user user;
	int found = geodb_user_get(db, r->username, &user, reason_r);
	if (found < 0)
		return ROUTE_ERROR;
	if (found > 0 && user.group_id < group_count) {
		r->group_id = user.group_id;
		r->group_override = true;
	} else {
		r->group_id = user_hash_group(r->username, group_count);
	}
	found = geodb_group_get(db, r->group_id, &r->group, reason_r);
	if (found < 0)
		return ROUTE_ERROR;
	*group_found_r = found > 0;
	if (found == 0)
		return ROUTE_OK;
	found = geodb_backend_get(db, r->group.backend, &r->backend, reason_r);
	if (found < 0)
		return ROUTE_ERROR;
	*backend_found_r = found > 0;
	return ROUTE_OK;
}

enum route_status route_user(struct geodb *db, const char *site, unsigned group_count,
			     const char *username, bool assign, struct route_result *r,
			     const char **reason_r)
{
	static char reason[256];
	memset(r, 0, sizeof(*r));
	if (user_normalize(username, r->username, sizeof(r->username)) < 0) {
		*reason_r = "invalid username (empty, too long, or containing spaces or control characters)";
		return ROUTE_BAD_USER;
	}
	bool group_found = false, backend_found = false;
	if (geodb_read_begin(db, reason_r) < 0)
		return ROUTE_ERROR;
	enum route_status status = route_read(db, group_count, r, &group_found, &backend_found, reason_r);
	geodb_read_end(db);
	if (status != ROUTE_OK)
		return status;

	if (!group_found) {
		if (!assign) {
			snprintf(reason, sizeof(reason), "group %u has no backend yet", r->group_id);
			*reason_r = reason;
			return ROUTE_UNAVAILABLE;
		}
		int ret = assign_group(db, site, r, reason_r);
		if (ret < 0)
			return ROUTE_ERROR;
		if (ret > 0)
			return ROUTE_UNAVAILABLE;
		int found = geodb_backend_get(db, r->group.backend, &r->backend, reason_r);
		if (found < 0)
			return ROUTE_ERROR;
		backend_found = found > 0;
	}
	if (!backend_found) {
		snprintf(reason, sizeof(reason), "group %u is assigned to backend %s, which does not exist",
			 r->group_id, r->group.backend);
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	if (r->backend.status != BACKEND_STATUS_ONLINE) {
		snprintf(reason, sizeof(reason), "backend %s of group %u is %s", r->backend.name,
			 r->group_id, backend_status_name(r->backend.status));
		*reason_r = reason;
		return ROUTE_UNAVAILABLE;
	}
	return ROUTE_OK;
}
