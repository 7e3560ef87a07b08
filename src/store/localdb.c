/* localdb.c - see localdb.h. */
#include "store/localdb.h"

#include "store/route.h"
#include "util/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
	/* failover cells as this host saw them (sorted by group_id): one per
	 * group with a cell now or a routed version */
	struct localdb_cell *cells;
	size_t cell_count;
	int64_t cell_settle_ms;
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
	free(ldb->cells);
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
	for (size_t i = 0; i < snap->heartbeat_count; i++) {
		MIX_STR(snap->heartbeats[i].site);
		MIX_INT(snap->heartbeats[i].bucket);
	}
	MIX_INT(snap->heartbeat_count);
#undef MIX_STR
#undef MIX_INT
	return h;
}

static int64_t unix_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool same_cell(const struct geodb_group_failover *a, const struct geodb_group_failover *b)
{
	return a->written_at_ms == b->written_at_ms && a->home_epoch == b->home_epoch &&
	       strcmp(a->writer_site, b->writer_site) == 0 &&
	       strcmp(a->target_site, b->target_site) == 0 &&
	       strcmp(a->target_backend, b->target_backend) == 0 &&
	       strcmp(a->reason, b->reason) == 0;
}

static const struct localdb_cell *find_cell(const struct localdb *ldb, unsigned group_id)
{
	size_t lo = 0, hi = ldb->cell_count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ldb->cells[mid].group_id == group_id)
			return &ldb->cells[mid];
		if (ldb->cells[mid].group_id < group_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool localdb_cell_settled(const struct localdb *ldb, const struct localdb_cell *cell,
			  int64_t now_ms)
{
	/* only an outage cell waits (brain/site.h site_cell_settled()) */
	if (!cell->current_present ||
	    strcmp(cell->current.reason, GEODB_FAILOVER_REASON_OUTAGE) != 0)
		return true;
	return now_ms - cell->first_seen_ms >= ldb->cell_settle_ms;
}

/* The snapshot's cells (sorted by group_id) replace the current ones: a
 * write seen before keeps its first_seen, and a group's routed version
 * becomes its current one once that has settled. */
static void track_cells(struct localdb *ldb, const struct geodb_group_failover *cells,
			size_t count, int64_t now_ms)
{
	struct localdb_cell *next = calloc(count + ldb->cell_count + 1, sizeof(*next));
	size_t n = 0, i = 0, j = 0;
	while (i < count || j < ldb->cell_count) {
		const struct geodb_group_failover *c = i < count ? &cells[i] : NULL;
		const struct localdb_cell *old = j < ldb->cell_count ? &ldb->cells[j] : NULL;
		if (c != NULL && old != NULL && c->group_id != old->group_id) {
			if (c->group_id < old->group_id)
				old = NULL;
			else
				c = NULL;
		}
		struct localdb_cell e = {.group_id = c != NULL ? c->group_id : old->group_id};
		if (old != NULL) {
			e.routed_present = old->routed_present;
			e.routed = old->routed;
			if (localdb_cell_settled(ldb, old, now_ms)) {
				e.routed_present = old->current_present;
				e.routed = old->current;
			}
			j++;
		}
		if (c != NULL) {
			e.current_present = true;
			e.current = *c;
			e.first_seen_ms = old != NULL && old->current_present &&
							  same_cell(&old->current, c)
						  ? old->first_seen_ms
						  : now_ms;
			i++;
		}
		if (localdb_cell_settled(ldb, &e, now_ms)) {
			e.routed_present = e.current_present;
			e.routed = e.current;
		}
		if (e.current_present || e.routed_present)
			next[n++] = e;
	}
	free(ldb->cells);
	ldb->cells = next;
	ldb->cell_count = n;
}

void localdb_set_cell_settle(struct localdb *ldb, int64_t settle_ms)
{
	ldb->cell_settle_ms = settle_ms;
}

const struct geodb_group_failover *localdb_route_cell(const struct localdb *ldb,
						      unsigned group_id, int64_t now_ms)
{
	const struct localdb_cell *cell = find_cell(ldb, group_id);
	if (cell == NULL)
		return NULL;
	if (localdb_cell_settled(ldb, cell, now_ms))
		return cell->current_present ? &cell->current : NULL;
	return cell->routed_present ? &cell->routed : NULL;
}

const struct localdb_cell *localdb_cell(const struct localdb *ldb, unsigned group_id)
{
	return find_cell(ldb, group_id);
}

void localdb_site_view(const struct localdb *ldb, struct route_site_view *view_r)
{
	*view_r = (struct route_site_view){ldb->snap.sites, ldb->snap.site_count,
					   ldb->snap.heartbeats, ldb->snap.heartbeat_count};
}

const struct geodb_site_force_move *localdb_force_moves(const struct localdb *ldb,
							 size_t *count_r)
{
	*count_r = ldb->snap.force_move_count;
	return ldb->snap.force_moves;
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
	geodb_sort_heartbeats(snap->heartbeats, snap->heartbeat_count);
	track_cells(ldb, snap->failovers, snap->failover_count, unix_now_ms());
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
	stats_r->failover_cells = ldb->snap.failover_count;
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
