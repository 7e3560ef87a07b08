/* localdb.c - see localdb.h. */
#include "store/localdb.h"

#include "util/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct localdb {
	unsigned group_count;
	bool loaded;
	struct geodb_snapshot snap; /* sites, backends, users (sorted); groups unused */
	/* group_count entries; backend[0] == '\0': unassigned */
	struct geodb_group *groups;
	int32_t *group_backend; /* index into snap.backends, -1: none */
	unsigned *backend_groups; /* per backend: groups assigned */
	size_t groups_assigned;
	int64_t metacache_ttl_ms;
};

struct localdb *localdb_create(unsigned group_count)
{
	struct localdb *ldb = calloc(1, sizeof(*ldb));
	ldb->backend_groups = calloc(1, sizeof(*ldb->backend_groups));
	ldb->group_count = group_count;
	ldb->metacache_ttl_ms = BALANCE_METACACHE_TTL_MS_DEFAULT;
	ldb->groups = calloc(group_count, sizeof(*ldb->groups));
	ldb->group_backend = malloc(group_count * sizeof(*ldb->group_backend));
	for (unsigned i = 0; i < group_count; i++) {
		ldb->groups[i].group_id = i;
		ldb->group_backend[i] = -1;
	}
	return ldb;
}

void localdb_destroy(struct localdb **_ldb)
{
	struct localdb *ldb = *_ldb;
	if (ldb == NULL)
		return;
	geodb_snapshot_free(&ldb->snap);
	free(ldb->groups);
	free(ldb->group_backend);
	free(ldb->backend_groups);
	free(ldb);
	*_ldb = NULL;
}

unsigned localdb_group_count(const struct localdb *ldb)
{
	return ldb->group_count;
}

bool localdb_loaded(const struct localdb *ldb)
{
	return ldb->loaded;
}

static int backend_index(const struct geodb_snapshot *snap, const char *name)
{
	size_t lo = 0, hi = snap->backend_count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(name, snap->backends[mid].name);
		if (cmp == 0)
			return (int)mid;
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* A fingerprint of what routing depends on, to tell whether a refresh
 * changed anything (and the file must be rewritten). */
static uint64_t routing_hash(const struct localdb *ldb)
{
	uint64_t h = hash_fnv1a64("", 0);
#define MIX_STR(s) h = hash_fnv1a64_add(h, (s), strlen(s) + 1)
#define MIX_INT(v)                                                                                 \
	do {                                                                                       \
		uint64_t v_ = (uint64_t)(v);                                                       \
		h = hash_fnv1a64_add(h, &v_, sizeof(v_));                                          \
	} while (0)
	const struct geodb_snapshot *snap = &ldb->snap;
	for (size_t i = 0; i < snap->site_count; i++) {
		MIX_STR(snap->sites[i].name);
		MIX_INT(snap->sites[i].status);
		MIX_STR(snap->sites[i].tags);
		MIX_STR(snap->sites[i].load_balancer);
	}
	MIX_INT(snap->site_count);
	for (size_t i = 0; i < snap->backend_count; i++) {
		MIX_STR(snap->backends[i].name);
		MIX_STR(snap->backends[i].site);
		MIX_STR(snap->backends[i].address);
		MIX_INT(snap->backends[i].status);
		MIX_INT(snap->backends[i].load_factor);
		MIX_INT(snap->backends[i].mark);
		MIX_INT(snap->backends[i].mark_since);
	}
	MIX_INT(snap->backend_count);
	for (unsigned i = 0; i < ldb->group_count; i++) {
		if (ldb->groups[i].backend[0] == '\0')
			continue;
		MIX_INT(i);
		MIX_STR(ldb->groups[i].site);
		MIX_STR(ldb->groups[i].backend);
		MIX_INT(ldb->groups[i].epoch);
		MIX_STR(ldb->groups[i].alt_backend);
		MIX_STR(ldb->groups[i].failover_site);
		MIX_STR(ldb->groups[i].move_to);
		MIX_INT(ldb->groups[i].move_started_ms);
		/* balancing: a group pinned or let go is a change; moved_at and
		 * history change only with the backend (a switch), and moved_at
		 * stands for both */
		MIX_INT(ldb->groups[i].sticky);
		MIX_INT(ldb->groups[i].moved_at_ms);
	}
	for (size_t i = 0; i < snap->user_count; i++) {
		MIX_STR(snap->users[i].username);
		MIX_INT(snap->users[i].group_id);
		MIX_INT(snap->users[i].hold_until_ms);
	}
	MIX_INT(snap->user_count);
	/* several sites: the failover cells and force moves (kept in snap,
	 * saved with it) */
	for (size_t i = 0; i < snap->failover_count; i++) {
		const struct geodb_group_failover *f = &snap->failovers[i];
		MIX_INT(f->group_id);
		MIX_STR(f->writer_site);
		MIX_STR(f->target_site);
		MIX_STR(f->target_backend);
		MIX_STR(f->reason);
		MIX_INT(f->written_at_ms);
		MIX_INT(f->home_epoch);
	}
	MIX_INT(snap->failover_count);
	for (size_t i = 0; i < snap->force_move_count; i++) {
		const struct geodb_site_force_move *m = &snap->force_moves[i];
		MIX_STR(m->site);
		MIX_INT(m->id);
		MIX_INT(m->percent);
		MIX_STR(m->destinations);
	}
	MIX_INT(snap->force_move_count);
#undef MIX_STR
#undef MIX_INT
	return h;
}

static void index_groups(struct localdb *ldb)
{
	free(ldb->backend_groups);
	ldb->backend_groups = calloc(ldb->snap.backend_count + 1, sizeof(*ldb->backend_groups));
	ldb->groups_assigned = 0;
	for (unsigned i = 0; i < ldb->group_count; i++) {
		ldb->group_backend[i] = -1;
		if (ldb->groups[i].backend[0] == '\0')
			continue;
		ldb->groups_assigned++;
		int index = backend_index(&ldb->snap, ldb->groups[i].backend);
		ldb->group_backend[i] = index;
		if (index >= 0)
			ldb->backend_groups[index]++;
	}
}

int localdb_replace(struct localdb *ldb, struct geodb_snapshot *snap, const char **error_r)
{
	static char error[256];
	if (snap->group_count != 0 && snap->group_count != ldb->group_count) {
		snprintf(error, sizeof(error),
			 "the GeoDB was set up with group_count = %u but this configuration says "
			 "%u; not using it",
			 snap->group_count, ldb->group_count);
		*error_r = error;
		return -1;
	}
	uint64_t before = ldb->loaded ? routing_hash(ldb) : 0;
	geodb_sort_sites(snap->sites, snap->site_count);
	geodb_sort_backends(snap->backends, snap->backend_count);
	geodb_sort_users(snap->users, snap->user_count);
	geodb_sort_failovers(snap->failovers, snap->failover_count);
	geodb_sort_force_moves(snap->force_moves, snap->force_move_count);
	for (unsigned i = 0; i < ldb->group_count; i++) {
		memset(&ldb->groups[i], 0, sizeof(ldb->groups[i]));
		ldb->groups[i].group_id = i;
	}
	for (size_t i = 0; i < snap->group_row_count; i++) {
		if (snap->groups[i].group_id < ldb->group_count)
			ldb->groups[snap->groups[i].group_id] = snap->groups[i];
	}
	free(snap->groups);
	snap->groups = NULL;
	snap->group_row_count = 0;
	geodb_snapshot_free(&ldb->snap);
	ldb->snap = *snap;
	memset(snap, 0, sizeof(*snap));
	index_groups(ldb);
	bool was_loaded = ldb->loaded;
	ldb->loaded = true;
	return !was_loaded || routing_hash(ldb) != before ? 1 : 0;
}

void localdb_put_group(struct localdb *ldb, const struct geodb_group *group)
{
	if (group->group_id >= ldb->group_count)
		return;
	unsigned id = group->group_id;
	int32_t old = ldb->group_backend[id];
	if (ldb->groups[id].backend[0] != '\0')
		ldb->groups_assigned--;
	if (old >= 0)
		ldb->backend_groups[old]--;
	ldb->groups[id] = *group;
	ldb->group_backend[id] = -1;
	if (group->backend[0] == '\0')
		return;
	ldb->groups_assigned++;
	int index = backend_index(&ldb->snap, group->backend);
	ldb->group_backend[id] = index;
	if (index >= 0)
		ldb->backend_groups[index]++;
}

const struct geodb_group *localdb_group(const struct localdb *ldb, unsigned group_id)
{
	if (group_id >= ldb->group_count || ldb->groups[group_id].backend[0] == '\0')
		return NULL;
	return &ldb->groups[group_id];
}

const struct geodb_group *localdb_group_row(const struct localdb *ldb, unsigned group_id)
{
	return group_id < ldb->group_count ? &ldb->groups[group_id] : NULL;
}

void localdb_set_metacache_ttl(struct localdb *ldb, int64_t ttl_ms)
{
	ldb->metacache_ttl_ms = ttl_ms;
}

int64_t localdb_metacache_ttl(const struct localdb *ldb)
{
	return ldb->metacache_ttl_ms;
}

const struct geodb_backend *localdb_group_backend(const struct localdb *ldb, unsigned group_id)
{
	if (group_id >= ldb->group_count || ldb->group_backend[group_id] < 0)
		return NULL;
	return &ldb->snap.backends[ldb->group_backend[group_id]];
}

const struct geodb_backend *localdb_backend(const struct localdb *ldb, const char *name)
{
	int index = backend_index(&ldb->snap, name);
	return index < 0 ? NULL : &ldb->snap.backends[index];
}

const struct geodb_site *localdb_site(const struct localdb *ldb, const char *name)
{
	for (size_t i = 0; i < ldb->snap.site_count; i++) {
		if (strcmp(ldb->snap.sites[i].name, name) == 0)
			return &ldb->snap.sites[i];
	}
	return NULL;
}

const struct geodb_user *localdb_user(const struct localdb *ldb, const char *username)
{
	size_t lo = 0, hi = ldb->snap.user_count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(username, ldb->snap.users[mid].username);
		if (cmp == 0)
			return &ldb->snap.users[mid];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int localdb_user_group(const struct localdb *ldb, const char *username)
{
	const struct geodb_user *user = localdb_user(ldb, username);
	if (user == NULL)
		return -1;
	return user->group_id < ldb->group_count ? (int)user->group_id : -1;
}

const struct geodb_backend *localdb_backends(const struct localdb *ldb, size_t *count_r)
{
	*count_r = ldb->snap.backend_count;
	return ldb->snap.backends;
}

unsigned localdb_backend_group_count(const struct localdb *ldb, size_t backend_index)
{
	return backend_index < ldb->snap.backend_count ? ldb->backend_groups[backend_index] : 0;
}

void localdb_stats(const struct localdb *ldb, struct localdb_stats *stats_r)
{
	stats_r->sites = ldb->snap.site_count;
	stats_r->backends = ldb->snap.backend_count;
	stats_r->groups_assigned = ldb->groups_assigned;
	stats_r->users = ldb->snap.user_count;
}

/* ---- persistence ---- */

int localdb_save(const struct localdb *ldb, const char *path, const char **error_r)
{
	static char error[512];
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		*error_r = "localdb: path too long";
		return -1;
	}
	struct geodb_snapshot snap = ldb->snap; /* borrowed arrays */
	snap.group_count = ldb->group_count;
	snap.groups = malloc((ldb->groups_assigned + 1) * sizeof(*snap.groups));
	snap.group_row_count = 0;
	for (unsigned i = 0; i < ldb->group_count; i++) {
		if (ldb->groups[i].backend[0] != '\0')
			snap.groups[snap.group_row_count++] = ldb->groups[i];
	}
	char spec[4200];
	snprintf(spec, sizeof(spec), "sqlite:%s", tmp);
	struct geodb *db = NULL;
	unlink(tmp);
	int ret = geodb_open(spec, "localdb", 1000, &db, error_r);
	if (ret == 0)
		ret = geodb_snapshot_store(db, &snap, error_r);
	if (ret < 0) {
		snprintf(error, sizeof(error), "localdb: %.480s", *error_r);
		*error_r = error;
	}
	geodb_close(&db);
	free(snap.groups);
	if (ret == 0 && rename(tmp, path) < 0) {
		snprintf(error, sizeof(error), "localdb: rename(%.200s, %.200s) failed: %m", tmp, path);
		*error_r = error;
		ret = -1;
	}
	if (ret < 0)
		unlink(tmp);
	/* WAL leftovers of the temporary name, if the close kept any */
	char side[4200];
	snprintf(side, sizeof(side), "%s-wal", tmp);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", tmp);
	unlink(side);
	return ret;
}

int localdb_load(struct localdb *ldb, const char *path, const char **error_r)
{
	static char error[512];
	if (access(path, F_OK) < 0)
		return 0;
	char spec[4200];
	snprintf(spec, sizeof(spec), "sqlite:%s", path);
	struct geodb *db = NULL;
	struct geodb_snapshot snap;
	if (geodb_open(spec, "localdb", 1000, &db, error_r) < 0 ||
	    geodb_snapshot_read(db, &snap, error_r) < 0) {
		snprintf(error, sizeof(error), "localdb: %.480s", *error_r);
		*error_r = error;
		geodb_close(&db);
		return -1;
	}
	geodb_close(&db);
	if (localdb_replace(ldb, &snap, error_r) < 0) {
		snprintf(error, sizeof(error), "localdb %.200s: %.280s", path, *error_r);
		*error_r = error;
		geodb_snapshot_free(&snap);
		return -1;
	}
	return 1;
}
