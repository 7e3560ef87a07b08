/* route.c - see route.h. */
#include "store/route.h"

#include "brain/placement.h"
#include "brain/user.h"
#include "util/hash.h"

#include <stdint.h>
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
		snprintf(reason, sizeof(reason),
			 "no online backend with load factor > 0 in site %s", site);
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

/* ---- the cache ---- */

#define USER_SLOTS 65536 /* power of two; cleared when half full */
#define BACKENDS_MAX 256

struct user_slot {
	uint32_t generation;
	int32_t group; /* -1: no override */
	uint64_t key, check;
};

struct group_slot {
	uint32_t generation;
	uint16_t backend; /* index into backends[] */
};

struct route_cache {
	uint32_t generation; /* a slot is valid only if it has this one */
	unsigned group_count;
	struct user_slot *users;
	unsigned user_fill;
	struct group_slot *groups;
	struct geodb_backend backends[BACKENDS_MAX];
	unsigned backend_count;
};

struct route_cache *route_cache_create(unsigned group_count)
{
	struct route_cache *cache = calloc(1, sizeof(*cache));
	cache->generation = 1;
	cache->group_count = group_count;
	cache->users = calloc(USER_SLOTS, sizeof(*cache->users));
	cache->groups = calloc(group_count, sizeof(*cache->groups));
	return cache;
}

void route_cache_destroy(struct route_cache **_cache)
{
	struct route_cache *cache = *_cache;
	if (cache == NULL)
		return;
	free(cache->users);
	free(cache->groups);
	free(cache);
	*_cache = NULL;
}

static void cache_clear(struct route_cache *cache)
{
	cache->user_fill = 0;
	cache->backend_count = 0;
	if (++cache->generation == 0) {
		/* wrapped: old stamps could look current again */
		memset(cache->users, 0, USER_SLOTS * sizeof(*cache->users));
		memset(cache->groups, 0, cache->group_count * sizeof(*cache->groups));
		cache->generation = 1;
	}
}

/* Users are keyed by two independent 64-bit hashes of the name, so a
 * collision would need 128 bits to agree. */
static void user_keys(const char *username, uint64_t *key_r, uint64_t *check_r)
{
	size_t len = strlen(username);
	*key_r = hash_fnv1a64(username, len);
	*check_r = hash_fnv1a64_add(0x84222325cbf29ce4ULL, username, len) ^ (uint64_t)len;
}

static struct user_slot *user_slot_find(struct route_cache *cache, uint64_t key, uint64_t check,
					bool *found_r)
{
	unsigned i = (unsigned)key & (USER_SLOTS - 1);
	for (;;) {
		struct user_slot *slot = &cache->users[i];
		if (slot->generation != cache->generation) {
			*found_r = false;
			return slot;
		}
		if (slot->key == key && slot->check == check) {
			*found_r = true;
			return slot;
		}
		i = (i + 1) & (USER_SLOTS - 1);
	}
}

static void user_slot_store(struct route_cache *cache, struct user_slot *slot, uint64_t key,
			    uint64_t check, int32_t group)
{
	if (cache->user_fill >= USER_SLOTS / 2)
		return; /* full enough: stop caching users until the next change */
	slot->generation = cache->generation;
	slot->key = key;
	slot->check = check;
	slot->group = group;
	cache->user_fill++;
}

static int backend_cached(struct route_cache *cache, const char *name)
{
	for (unsigned i = 0; i < cache->backend_count; i++) {
		if (strcmp(cache->backends[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* ---- routing ---- */

struct route_reads {
	struct route_cache *cache;
	bool in_transaction;
	bool group_found, backend_found;
};

static int ensure_transaction(struct geodb *db, struct route_reads *reads, const char **reason_r)
{
	if (reads->in_transaction)
		return 0;
	if (geodb_read_begin(db, reason_r) < 0)
		return -1;
	reads->in_transaction = true;
	return 0;
}

/* The reads of one routing decision: from the cache, or else in one read
 * transaction. */
static enum route_status route_read(struct geodb *db, unsigned group_count, struct route_result *r,
				    struct route_reads *reads, const char **reason_r)
{
	struct route_cache *cache = reads->cache;
	struct user_slot *user_slot = NULL;
	uint64_t key = 0, check = 0;
	bool found_in_cache = false;
	int32_t override = -1;

	if (cache != NULL) {
		user_keys(r->username, &key, &check);
		user_slot = user_slot_find(cache, key, check, &found_in_cache);
		if (found_in_cache)
			override = user_slot->group;
	}
	if (!found_in_cache) {
		struct geodb_user user;
		if (ensure_transaction(db, reads, reason_r) < 0)
			return ROUTE_ERROR;
		int found = geodb_user_get(db, r->username, &user, reason_r);
		if (found < 0)
			return ROUTE_ERROR;
		if (found > 0 && user.group_id < group_count)
			override = (int32_t)user.group_id;
		if (cache != NULL)
			user_slot_store(cache, user_slot, key, check, override);
	}
	if (override >= 0) {
		r->group_id = (unsigned) override;
		r->group_override = true;
	} else {
		r->group_id = user_hash_group(r->username, group_count);
	}

	if (cache != NULL && cache->groups[r->group_id].generation == cache->generation) {
		const struct geodb_backend *b =
			&cache->backends[cache->groups[r->group_id].backend];
		r->group.group_id = r->group_id;
		memcpy(r->group.site, b->site, sizeof(r->group.site));
		memcpy(r->group.backend, b->name, sizeof(r->group.backend));
		r->backend = *b;
		reads->group_found = reads->backend_found = true;
		return ROUTE_OK;
	}
	if (ensure_transaction(db, reads, reason_r) < 0)
		return ROUTE_ERROR;
	int found = geodb_group_get(db, r->group_id, &r->group, reason_r);
	if (found < 0)
		return ROUTE_ERROR;
	reads->group_found = found > 0;
	if (found == 0)
		return ROUTE_OK;
	int index = cache != NULL ? backend_cached(cache, r->group.backend) : -1;
	if (index >= 0) {
		r->backend = cache->backends[index];
		found = 1;
	} else {
		found = geodb_backend_get(db, r->group.backend, &r->backend, reason_r);
		if (found < 0)
			return ROUTE_ERROR;
		if (found > 0 && cache != NULL && cache->backend_count < BACKENDS_MAX) {
			index = (int)cache->backend_count++;
			cache->backends[index] = r->backend;
		}
	}
	reads->backend_found = found > 0;
	if (index >= 0) {
		cache->groups[r->group_id].generation = cache->generation;
		cache->groups[r->group_id].backend = (uint16_t)index;
	}
	return ROUTE_OK;
}

enum route_status route_user(struct geodb *db, struct route_cache *cache, const char *site,
			     unsigned group_count, const char *username, bool assign,
			     struct route_result *r, const char **reason_r)
{
	static char reason[256];
	memset(r, 0, sizeof(*r));
	if (user_normalize(username, r->username, sizeof(r->username)) < 0) {
		*reason_r = "invalid username (empty, too long, or containing spaces or control "
			    "characters)";
		return ROUTE_BAD_USER;
	}
	if (cache != NULL && cache->group_count != group_count)
		cache = NULL;
	if (cache != NULL && geodb_changed(db))
		cache_clear(cache);
	struct route_reads reads = {.cache = cache};
	enum route_status status = route_read(db, group_count, r, &reads, reason_r);
	if (reads.in_transaction)
		geodb_read_end(db);
	if (status != ROUTE_OK)
		return status;
	bool backend_found = reads.backend_found;

	if (!reads.group_found) {
		if (!assign) {
			snprintf(reason, sizeof(reason), "group %u has no backend yet",
				 r->group_id);
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
		snprintf(reason, sizeof(reason),
			 "group %u is assigned to backend %s, which does not exist", r->group_id,
			 r->group.backend);
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
