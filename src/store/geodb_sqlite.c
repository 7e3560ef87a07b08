/* geodb_sqlite.c - the embedded GeoDB driver: one SQLite file.
 *
 * Several daemons and the CLI on one host may open the same file: WAL mode
 * lets readers run beside one writer, and a busy timeout bounds the wait for
 * the write lock.  Statements used on the login path are prepared once.
 * The conditional group insert is INSERT ... ON CONFLICT DO NOTHING followed
 * by a read of the stored row, which is atomic under SQLite's write lock.
 */
#include "store/geodb.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const schema_sql =
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS sites ("
	" name TEXT PRIMARY KEY, status TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '',"
	" load_balancer TEXT NOT NULL DEFAULT '', updated_by TEXT NOT NULL, updated_at INTEGER NOT "
	"NULL);"
	"CREATE TABLE IF NOT EXISTS backends ("
	" name TEXT PRIMARY KEY, site TEXT NOT NULL, address TEXT NOT NULL, status TEXT NOT NULL,"
	" load_factor INTEGER NOT NULL, updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS groups ("
	" group_id INTEGER PRIMARY KEY, site TEXT NOT NULL, backend TEXT NOT NULL,"
	" epoch INTEGER NOT NULL, written_by TEXT NOT NULL, written_at INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS groups_backend ON groups(backend);"
	"CREATE TABLE IF NOT EXISTS users ("
	" username TEXT PRIMARY KEY, group_id INTEGER NOT NULL,"
	" written_by TEXT NOT NULL, written_at INTEGER NOT NULL);";

#define WAL_INDEX_HEADER_SIZE 48

enum stmt_id {
	STMT_GROUP_GET,
	STMT_GROUP_INSERT,
	STMT_USER_GET,
	STMT_BACKEND_GET,
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_COUNT
};

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_GROUP_GET] = "SELECT group_id, site, backend, epoch, written_by, written_at FROM "
			   "groups WHERE group_id = ?",
	[STMT_GROUP_INSERT] =
		"INSERT INTO groups (group_id, site, backend, epoch, written_by, written_at)"
		" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(group_id) DO NOTHING",
	[STMT_USER_GET] =
		"SELECT username, group_id, written_by, written_at FROM users WHERE username = ?",
	[STMT_BACKEND_GET] =
		"SELECT name, site, address, status, load_factor, updated_by, updated_at"
		" FROM backends WHERE name = ?",
	[STMT_BEGIN] = "BEGIN",
	[STMT_COMMIT] = "COMMIT",
};

struct geodb {
	sqlite3 *sqlite;
	char *path;
	char writer[NAME_MAX_LEN + 1];
	sqlite3_stmt *stmts[STMT_COUNT];
	char error[512];
	/* the first copy of the WAL-index header in the -shm file */
	const volatile unsigned char *shm;
	unsigned char shm_seen[WAL_INDEX_HEADER_SIZE];
};

static int fail(struct geodb *db, const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct geodb *db, const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(db->error, sizeof(db->error), fmt, args);
	va_end(args);
	*error_r = db->error;
	return -1;
}

static int sql_fail(struct geodb *db, const char **error_r, const char *what)
{
	return fail(db, error_r, "geodb: %s failed on %s: %s", what, db->path,
		    sqlite3_errmsg(db->sqlite));
}

static int64_t now_seconds(void)
{
	return (int64_t)time(NULL);
}

static void copy_text(char *dst, size_t dst_size, sqlite3_stmt *stmt, int col)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);
	snprintf(dst, dst_size, "%s", text != NULL ? (const char *)text : "");
}

static int exec(struct geodb *db, const char *sql, const char **error_r)
{
	char *msg = NULL;
	if (sqlite3_exec(db->sqlite, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fail(db, error_r, "geodb: %s: %s", db->path,
		     msg != NULL ? msg : sqlite3_errmsg(db->sqlite));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* A statement prepared for this call only (admin paths). */
static sqlite3_stmt *prepare(struct geodb *db, const char *sql, const char **error_r)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL) != SQLITE_OK) {
		sql_fail(db, error_r, "prepare");
		return NULL;
	}
	return stmt;
}

static sqlite3_stmt *cached(struct geodb *db, enum stmt_id id)
{
	sqlite3_stmt *stmt = db->stmts[id];
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return stmt;
}

int geodb_open(const char *spec, const char *writer, unsigned busy_timeout_ms, struct geodb **db_r,
	       const char **error_r)
{
	static char open_error[512];
	if (strncmp(spec, "sqlite:", 7) != 0 || spec[7] == '\0') {
		snprintf(open_error, sizeof(open_error),
			 "geodb: unsupported GeoDB '%s': expected sqlite:PATH", spec);
		*error_r = open_error;
		return -1;
	}
	struct geodb *db = calloc(1, sizeof(*db));
	db->path = strdup(spec + 7);
	snprintf(db->writer, sizeof(db->writer), "%s", writer);
	if (sqlite3_open_v2(db->path, &db->sqlite,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(open_error, sizeof(open_error), "geodb: cannot open %s: %s", db->path,
			 db->sqlite != NULL ? sqlite3_errmsg(db->sqlite) : "out of memory");
		*error_r = open_error;
		geodb_close(&db);
		return -1;
	}
	sqlite3_busy_timeout(db->sqlite, (int)busy_timeout_ms);
	if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", error_r) < 0 ||
	    exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		goto failed;
	if (exec(db, schema_sql, error_r) < 0) {
		exec(db, "ROLLBACK;", error_r);
		goto failed;
	}
	char version_sql[128];
	snprintf(version_sql, sizeof(version_sql),
		 "INSERT INTO meta (key, value) VALUES ('schema_version', '%d') ON CONFLICT DO "
		 "NOTHING;",
		 GEODB_SCHEMA_VERSION);
	if (exec(db, version_sql, error_r) < 0 || exec(db, "COMMIT;", error_r) < 0)
		goto failed;
	for (int i = 0; i < STMT_COUNT; i++) {
		if (sqlite3_prepare_v3(db->sqlite, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &db->stmts[i], NULL) != SQLITE_OK) {
			sql_fail(db, error_r, "prepare");
			goto failed;
		}
	}
	/* map the WAL index read-only to notice commits (geodb_changed) */
	char shm_path[4096];
	snprintf(shm_path, sizeof(shm_path), "%s-shm", db->path);
	int shm_fd = open(shm_path, O_RDONLY | O_CLOEXEC);
	if (shm_fd >= 0) {
		void *map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, shm_fd, 0);
		if (map != MAP_FAILED)
			db->shm = map;
		close(shm_fd);
	}
	*db_r = db;
	return 0;
failed:
	snprintf(open_error, sizeof(open_error), "%s", *error_r);
	*error_r = open_error;
	geodb_close(&db);
	return -1;
}

void geodb_close(struct geodb **_db)
{
	struct geodb *db = *_db;
	if (db == NULL)
		return;
	for (int i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(db->stmts[i]);
	sqlite3_close(db->sqlite);
	if (db->shm != NULL)
		munmap((void *)db->shm, 4096);
	free(db->path);
	free(db);
	*_db = NULL;
}

bool geodb_changed(struct geodb *db)
{
	if (db->shm == NULL)
		return true;
	unsigned char now[WAL_INDEX_HEADER_SIZE];
	for (int i = 0; i < WAL_INDEX_HEADER_SIZE; i++)
		now[i] = db->shm[i];
	if (memcmp(now, db->shm_seen, sizeof(now)) == 0)
		return false;
	/* a header caught half-written differs from the last one too: the
	 * cache is dropped once more than needed, never kept wrongly */
	memcpy(db->shm_seen, now, sizeof(now));
	return true;
}

int geodb_read_begin(struct geodb *db, const char **error_r)
{
	sqlite3_stmt *stmt = cached(db, STMT_BEGIN);
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		return sql_fail(db, error_r, "starting a read transaction");
	return 0;
}

void geodb_read_end(struct geodb *db)
{
	sqlite3_stmt *stmt = cached(db, STMT_COMMIT);
	sqlite3_step(stmt);
	sqlite3_reset(stmt);
}

int geodb_check_group_count(struct geodb *db, unsigned group_count, const char **error_r)
{
	sqlite3_stmt *stmt =
		prepare(db, "SELECT value FROM meta WHERE key = 'group_count'", error_r);
	if (stmt == NULL)
		return -1;
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		unsigned stored = (unsigned)sqlite3_column_int64(stmt, 0);
		sqlite3_finalize(stmt);
		if (stored != group_count)
			return fail(db, error_r,
				    "geodb: group_count = %u in the configuration but the GeoDB %s "
				    "was set up "
				    "with %u: changing it would move almost every user; use %u",
				    group_count, db->path, stored, stored);
		return 0;
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		return sql_fail(db, error_r, "reading group_count");
	char sql[128];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO meta (key, value) VALUES ('group_count', '%u') ON CONFLICT DO "
		 "NOTHING;",
		 group_count);
	if (exec(db, sql, error_r) < 0)
		return -1;
	/* another process may have won the insert with another value */
	return geodb_check_group_count(db, group_count, error_r);
}

/* Runs a one-row-changing statement; returns sqlite3_changes() or -1. */
static int step_done(struct geodb *db, sqlite3_stmt *stmt, const char *what, const char **error_r)
{
	int rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE)
		return sql_fail(db, error_r, what);
	return sqlite3_changes(db->sqlite);
}

/* ---- sites ---- */

static void read_site(sqlite3_stmt *stmt, struct geodb_site *site)
{
	memset(site, 0, sizeof(*site));
	copy_text(site->name, sizeof(site->name), stmt, 0);
	const char *status = (const char *)sqlite3_column_text(stmt, 1);
	if (status == NULL || site_status_parse(status, &site->status) < 0)
		site->status = SITE_STATUS_OFFLINE;
	copy_text(site->tags, sizeof(site->tags), stmt, 2);
	copy_text(site->load_balancer, sizeof(site->load_balancer), stmt, 3);
}

int geodb_site_add(struct geodb *db, const struct geodb_site *site, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db,
		"INSERT INTO sites (name, status, tags, load_balancer, updated_by, updated_at)"
		" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, site->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, site_status_name(site->status), -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, site->tags, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, site->load_balancer, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 6, now_seconds());
	int changes = step_done(db, stmt, "adding a site", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	if (changes == 0)
		return fail(db, error_r, "site %s already exists", site->name);
	return 0;
}

int geodb_site_update(struct geodb *db, const struct geodb_site *site, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db,
				     "UPDATE sites SET status = ?, tags = ?, load_balancer = ?, "
				     "updated_by = ?, updated_at = ?"
				     " WHERE name = ?",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, site_status_name(site->status), -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, site->tags, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, site->load_balancer, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, now_seconds());
	sqlite3_bind_text(stmt, 6, site->name, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "updating a site", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	if (changes == 0)
		return fail(db, error_r, "site %s does not exist", site->name);
	return 0;
}

static int count_rows(struct geodb *db, const char *sql, const char *arg, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db, sql, error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, arg, -1, SQLITE_STATIC);
	int count = -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		count = sqlite3_column_int(stmt, 0);
	else
		sql_fail(db, error_r, "counting");
	sqlite3_finalize(stmt);
	return count;
}

int geodb_site_remove(struct geodb *db, const char *name, const char **error_r)
{
	int backends =
		count_rows(db, "SELECT count(*) FROM backends WHERE site = ?", name, error_r);
	if (backends < 0)
		return -1;
	if (backends > 0)
		return fail(db, error_r, "site %s still has %d backend(s): remove them first", name,
			    backends);
	sqlite3_stmt *stmt = prepare(db, "DELETE FROM sites WHERE name = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "removing a site", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	if (changes == 0)
		return fail(db, error_r, "site %s does not exist", name);
	return 0;
}

int geodb_site_get(struct geodb *db, const char *name, struct geodb_site *site_r,
		   const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db, "SELECT name, status, tags, load_balancer FROM sites WHERE name = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		read_site(stmt, site_r);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a site");
	}
	sqlite3_finalize(stmt);
	return ret;
}

/* Collects every row of stmt into a growing array of elem_size items. */
static int collect(struct geodb *db, sqlite3_stmt *stmt, size_t elem_size,
		   void (*read_row)(sqlite3_stmt *, void *), void **items_r, size_t *count_r,
		   const char **error_r)
{
	size_t count = 0, alloc = 0;
	char *items = NULL;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			items = realloc(items, alloc * elem_size);
		}
		read_row(stmt, items + count * elem_size);
		count++;
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE) {
		free(items);
		return sql_fail(db, error_r, "listing");
	}
	*items_r = items;
	*count_r = count;
	return 0;
}

static void read_site_row(sqlite3_stmt *stmt, void *item)
{
	read_site(stmt, item);
}

int geodb_site_list(struct geodb *db, struct geodb_site **sites_r, size_t *count_r,
		    const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db, "SELECT name, status, tags, load_balancer FROM sites ORDER BY name", error_r);
	if (stmt == NULL)
		return -1;
	return collect(db, stmt, sizeof(**sites_r), read_site_row, (void **)sites_r, count_r,
		       error_r);
}

/* ---- backends ---- */

static void read_backend(sqlite3_stmt *stmt, struct geodb_backend *backend)
{
	memset(backend, 0, sizeof(*backend));
	copy_text(backend->name, sizeof(backend->name), stmt, 0);
	copy_text(backend->site, sizeof(backend->site), stmt, 1);
	copy_text(backend->address, sizeof(backend->address), stmt, 2);
	const char *status = (const char *)sqlite3_column_text(stmt, 3);
	if (status == NULL || backend_status_parse(status, &backend->status) < 0)
		backend->status = BACKEND_STATUS_OFFLINE;
	backend->load_factor = (unsigned)sqlite3_column_int(stmt, 4);
	copy_text(backend->updated_by, sizeof(backend->updated_by), stmt, 5);
	backend->updated_at = sqlite3_column_int64(stmt, 6);
}

static void read_backend_row(sqlite3_stmt *stmt, void *item)
{
	read_backend(stmt, item);
}

int geodb_backend_add(struct geodb *db, const char *site, const char *name, const char *address,
		      const char **error_r)
{
	struct geodb_site site_row;
	int found = geodb_site_get(db, site, &site_row, error_r);
	if (found < 0)
		return -1;
	if (found == 0)
		return fail(db, error_r, "site %s does not exist: add it first with 'site add %s'",
			    site, site);
	sqlite3_stmt *stmt =
		prepare(db,
			"INSERT INTO backends (name, site, address, status, load_factor, "
			"updated_by, updated_at)"
			" VALUES (?, ?, ?, 'standby', 100, ?, ?) ON CONFLICT(name) DO NOTHING",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, address, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, now_seconds());
	int changes = step_done(db, stmt, "adding a backend", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	if (changes == 0)
		return fail(db, error_r, "backend %s already exists", name);
	return 0;
}

int geodb_backend_update(struct geodb *db, const struct geodb_backend *backend,
			 const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db,
		"UPDATE backends SET status = ?, load_factor = ?, address = ?, updated_by = ?,"
		" updated_at = ? WHERE name = ?",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, backend_status_name(backend->status), -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 2, (int)backend->load_factor);
	sqlite3_bind_text(stmt, 3, backend->address, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, now_seconds());
	sqlite3_bind_text(stmt, 6, backend->name, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "updating a backend", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	if (changes == 0)
		return fail(db, error_r, "backend %s does not exist", backend->name);
	return 0;
}

int geodb_backend_remove(struct geodb *db, const char *name, unsigned *groups_unassigned_r,
			 const char **error_r)
{
	struct geodb_backend backend;
	int found = geodb_backend_get(db, name, &backend, error_r);
	if (found < 0)
		return -1;
	if (found == 0)
		return fail(db, error_r, "backend %s does not exist", name);
	if (backend.status == BACKEND_STATUS_ONLINE)
		return fail(db, error_r,
			    "backend %s is online: set it offline or standby first "
			    "('backend update --status offline %s')",
			    name, name);
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	sqlite3_stmt *stmt = prepare(db, "DELETE FROM groups WHERE backend = ?", error_r);
	int groups = -1;
	if (stmt != NULL) {
		sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
		groups = step_done(db, stmt, "unassigning groups", error_r);
		sqlite3_finalize(stmt);
	}
	int changes = -1;
	if (groups >= 0 &&
	    (stmt = prepare(db, "DELETE FROM backends WHERE name = ?", error_r)) != NULL) {
		sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
		changes = step_done(db, stmt, "removing a backend", error_r);
		sqlite3_finalize(stmt);
	}
	if (changes < 0) {
		const char *ignored;
		exec(db, "ROLLBACK;", &ignored);
		return -1;
	}
	if (exec(db, "COMMIT;", error_r) < 0)
		return -1;
	*groups_unassigned_r = (unsigned)groups;
	return 0;
}

int geodb_backend_get(struct geodb *db, const char *name, struct geodb_backend *backend_r,
		      const char **error_r)
{
	sqlite3_stmt *stmt = cached(db, STMT_BACKEND_GET);
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		read_backend(stmt, backend_r);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a backend");
	}
	sqlite3_reset(stmt);
	return ret;
}

int geodb_backend_list(struct geodb *db, const char *site, struct geodb_backend **backends_r,
		       size_t *count_r, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db,
		site != NULL
			? "SELECT name, site, address, status, load_factor, updated_by, updated_at"
			  " FROM backends WHERE site = ? ORDER BY name"
			: "SELECT name, site, address, status, load_factor, updated_by, updated_at"
			  " FROM backends ORDER BY name",
		error_r);
	if (stmt == NULL)
		return -1;
	if (site != NULL)
		sqlite3_bind_text(stmt, 1, site, -1, SQLITE_STATIC);
	return collect(db, stmt, sizeof(**backends_r), read_backend_row, (void **)backends_r,
		       count_r, error_r);
}

static void read_load_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_backend_load *load = item;
	copy_text(load->backend, sizeof(load->backend), stmt, 0);
	load->groups = (unsigned)sqlite3_column_int(stmt, 1);
}

int geodb_backend_loads(struct geodb *db, struct geodb_backend_load **loads_r, size_t *count_r,
			const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db, "SELECT backend, count(*) FROM groups GROUP BY backend ORDER BY backend",
		error_r);
	if (stmt == NULL)
		return -1;
	return collect(db, stmt, sizeof(**loads_r), read_load_row, (void **)loads_r, count_r,
		       error_r);
}

/* ---- groups ---- */

static void read_group(sqlite3_stmt *stmt, struct geodb_group *group)
{
	memset(group, 0, sizeof(*group));
	group->group_id = (unsigned)sqlite3_column_int64(stmt, 0);
	copy_text(group->site, sizeof(group->site), stmt, 1);
	copy_text(group->backend, sizeof(group->backend), stmt, 2);
	group->epoch = (uint64_t)sqlite3_column_int64(stmt, 3);
	copy_text(group->written_by, sizeof(group->written_by), stmt, 4);
	group->written_at = sqlite3_column_int64(stmt, 5);
}

static void read_group_row(sqlite3_stmt *stmt, void *item)
{
	read_group(stmt, item);
}

int geodb_group_get(struct geodb *db, unsigned group_id, struct geodb_group *group_r,
		    const char **error_r)
{
	sqlite3_stmt *stmt = cached(db, STMT_GROUP_GET);
	sqlite3_bind_int64(stmt, 1, group_id);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		read_group(stmt, group_r);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a group");
	}
	sqlite3_reset(stmt);
	return ret;
}

int geodb_group_assign_if_absent(struct geodb *db, struct geodb_group *group, const char **error_r)
{
	sqlite3_stmt *stmt = cached(db, STMT_GROUP_INSERT);
	sqlite3_bind_int64(stmt, 1, group->group_id);
	sqlite3_bind_text(stmt, 2, group->site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, group->backend, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, (sqlite3_int64)group->epoch);
	sqlite3_bind_text(stmt, 5, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 6, now_seconds());
	int changes = step_done(db, stmt, "assigning a group", error_r);
	sqlite3_reset(stmt);
	if (changes < 0)
		return -1;
	int found = geodb_group_get(db, group->group_id, group, error_r);
	if (found < 0)
		return -1;
	if (found == 0)
		return fail(db, error_r, "geodb: group %u vanished right after it was assigned",
			    group->group_id);
	return changes > 0 ? 1 : 0;
}

int geodb_group_set(struct geodb *db, unsigned group_id, const char *site, const char *backend,
		    const char **error_r)
{
	sqlite3_stmt *stmt = prepare(
		db,
		"INSERT INTO groups (group_id, site, backend, epoch, written_by, written_at)"
		" VALUES (?1, ?2, ?3, 1, ?4, ?5) ON CONFLICT(group_id) DO UPDATE SET"
		" site = ?2, backend = ?3, epoch = epoch + 1, written_by = ?4, written_at = ?5",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, group_id);
	sqlite3_bind_text(stmt, 2, site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, backend, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, now_seconds());
	int changes = step_done(db, stmt, "moving a group", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

int geodb_group_list(struct geodb *db, struct geodb_group **groups_r, size_t *count_r,
		     const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db,
				     "SELECT group_id, site, backend, epoch, written_by, "
				     "written_at FROM groups ORDER BY group_id",
				     error_r);
	if (stmt == NULL)
		return -1;
	return collect(db, stmt, sizeof(**groups_r), read_group_row, (void **)groups_r, count_r,
		       error_r);
}

/* ---- users ---- */

int geodb_user_get(struct geodb *db, const char *username, struct geodb_user *user_r,
		   const char **error_r)
{
	sqlite3_stmt *stmt = cached(db, STMT_USER_GET);
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		memset(user_r, 0, sizeof(*user_r));
		copy_text(user_r->username, sizeof(user_r->username), stmt, 0);
		user_r->group_id = (unsigned)sqlite3_column_int64(stmt, 1);
		copy_text(user_r->written_by, sizeof(user_r->written_by), stmt, 2);
		user_r->written_at = sqlite3_column_int64(stmt, 3);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a user");
	}
	sqlite3_reset(stmt);
	return ret;
}

int geodb_user_set_group(struct geodb *db, const char *username, unsigned group_id,
			 const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT INTO users (username, group_id, written_by, "
				     "written_at) VALUES (?1, ?2, ?3, ?4)"
				     " ON CONFLICT(username) DO UPDATE SET group_id = ?2, "
				     "written_by = ?3, written_at = ?4",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, group_id);
	sqlite3_bind_text(stmt, 3, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, now_seconds());
	int changes = step_done(db, stmt, "moving a user", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

int geodb_user_delete(struct geodb *db, const char *username, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db, "DELETE FROM users WHERE username = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "deleting a user", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : (changes > 0 ? 1 : 0);
}
