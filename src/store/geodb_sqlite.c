/* geodb_sqlite.c - the embedded GeoDB driver: one SQLite file.
 *
 * Several daemons and the CLI on one host may open the same file: WAL mode
 * lets readers run beside one writer, and a busy timeout bounds the wait for
 * the write lock.  Statements used on the login path are prepared once.
 * The conditional group insert is an INSERT ... ON CONFLICT DO UPDATE that
 * updates only an unassigned row (backend ''), followed by a read of the
 * stored row, which is atomic under SQLite's write lock.
 *
 * The schema is created on open, and upgraded there too: every table is
 * CREATE TABLE IF NOT EXISTS (with the newest columns), and the columns that
 * later versions added to existing tables are added to an older file by
 * ALTER TABLE ADD COLUMN (schema_added_columns).  That looks at the columns
 * themselves, not at the recorded version, on every open: a file of the
 * current version written before one of its columns was added gains it
 * too (users.hold_until and the groups' balancing columns, added to
 * version 3 before its release).  Rows that expire (health observations,
 * move acknowledgements, group loads) carry expires_at: reads skip expired
 * rows and writes delete them, like Cassandra's TTL.
 *
 * A group's history and moved_at are computed here from the row as it is
 * (geodb_group_switch()), so the writes that may switch a group's backend
 * (group_set, group_cas, backend_remove) read it and write under one write
 * lock.
 */
#include "store/geodb_driver.h"

#include <sqlite3.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQL_NUMBER_(x) #x
#define SQL_NUMBER(x) SQL_NUMBER_(x)
/* Whether the heartbeat row ROW (NEW or OLD in a trigger) is one a failover
 * cell needs: of its group's home site, in the bucket of the cell or the
 * one before (see snapshot_heartbeats()). */
#define HEARTBEAT_NEEDED(row)                                                                      \
	"EXISTS (SELECT 1 FROM group_failover f CROSS JOIN groups g ON g.group_id = f.group_id"    \
	" WHERE g.site = " row ".site"                                                             \
	" AND " row ".bucket >= f.written_at_ms / " SQL_NUMBER(                                    \
		GEODB_HEARTBEAT_BUCKET_MS) " - 1"                                                  \
					   " AND " row ".bucket <= f.written_at_ms / " SQL_NUMBER( \
						   GEODB_HEARTBEAT_BUCKET_MS) ")"

static const char *const schema_sql =
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS sites ("
	" name TEXT PRIMARY KEY, status TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '',"
	" load_balancer TEXT NOT NULL DEFAULT '', updated_by TEXT NOT NULL, updated_at INTEGER NOT "
	"NULL);"
	"CREATE TABLE IF NOT EXISTS backends ("
	" name TEXT PRIMARY KEY, site TEXT NOT NULL, address TEXT NOT NULL, status TEXT NOT NULL,"
	" load_factor INTEGER NOT NULL, updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL,"
	" mark TEXT NOT NULL DEFAULT 'up', mark_since INTEGER NOT NULL DEFAULT 0,"
	" mark_reason TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS groups ("
	" group_id INTEGER PRIMARY KEY, site TEXT NOT NULL, backend TEXT NOT NULL,"
	" epoch INTEGER NOT NULL, written_by TEXT NOT NULL, written_at INTEGER NOT NULL,"
	" alt_backend TEXT NOT NULL DEFAULT '', move_to TEXT NOT NULL DEFAULT '',"
	" move_started INTEGER NOT NULL DEFAULT 0, move_reason TEXT NOT NULL DEFAULT '',"
	" sticky INTEGER NOT NULL DEFAULT 0, moved_at INTEGER NOT NULL DEFAULT 0,"
	" history TEXT NOT NULL DEFAULT '', failover_site TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX IF NOT EXISTS groups_backend ON groups(backend);"
	"CREATE TABLE IF NOT EXISTS users ("
	" username TEXT PRIMARY KEY, group_id INTEGER NOT NULL,"
	" written_by TEXT NOT NULL, written_at INTEGER NOT NULL,"
	" hold_until INTEGER NOT NULL DEFAULT 0);"
	/* version 2 */
	"CREATE TABLE IF NOT EXISTS leases ("
	" name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS health ("
	" backend TEXT NOT NULL, observer TEXT NOT NULL, ok INTEGER NOT NULL,"
	" detail TEXT NOT NULL, since INTEGER NOT NULL, observed_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL,"
	" PRIMARY KEY (backend, observer));"
	/* version 3: backends.mark*, groups.alt_backend, move_*, sticky,
	 * moved_at and history, users.hold_until (above; added to older files
	 * by schema_added_columns), the move acknowledgements, the groups'
	 * loads and the users' last backends (no routing_generation trigger:
	 * routing does not read them) */
	"CREATE TABLE IF NOT EXISTS move_acks ("
	" group_id INTEGER NOT NULL, observer TEXT NOT NULL, epoch INTEGER NOT NULL,"
	" acked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
	" PRIMARY KEY (group_id, observer));"
	"CREATE TABLE IF NOT EXISTS group_load ("
	" group_id INTEGER NOT NULL, observer TEXT NOT NULL, sessions INTEGER NOT NULL,"
	" logins INTEGER NOT NULL, reported_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
	" PRIMARY KEY (group_id, observer));"
	"CREATE TABLE IF NOT EXISTS user_backend ("
	" username TEXT PRIMARY KEY, backend TEXT NOT NULL, recorded_at INTEGER NOT NULL);"
	/* version 4: several sites.  groups.failover_site (above; added to
	 * older files by schema_added_columns), the sites' heartbeats
	 * (expiring; routing reads only the rows the failover cells need:
	 * triggers below) and reachability (expiring; not read by routing),
	 * the failover cells and the force moves (read by routing: triggers
	 * below).  Times in ms. */
	"CREATE TABLE IF NOT EXISTS site_heartbeats ("
	" site TEXT NOT NULL, bucket INTEGER NOT NULL, beat_ms INTEGER NOT NULL,"
	" writer TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (site, bucket));"
	"CREATE TABLE IF NOT EXISTS site_reachability ("
	" observer_site TEXT NOT NULL, target_site TEXT NOT NULL, reachable INTEGER NOT NULL,"
	" since_ms INTEGER NOT NULL, observed_ms INTEGER NOT NULL, written_by TEXT NOT NULL,"
	" expires_at INTEGER NOT NULL, PRIMARY KEY (observer_site, target_site));"
	"CREATE TABLE IF NOT EXISTS group_failover ("
	" group_id INTEGER PRIMARY KEY, writer_site TEXT NOT NULL, target_site TEXT NOT NULL,"
	" target_backend TEXT NOT NULL, reason TEXT NOT NULL, written_at_ms INTEGER NOT NULL,"
	" home_epoch INTEGER NOT NULL, written_by TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS site_force_moves ("
	" site TEXT NOT NULL, id INTEGER NOT NULL, percent INTEGER NOT NULL,"
	" destinations TEXT NOT NULL, started_ms INTEGER NOT NULL, written_by TEXT NOT NULL,"
	" PRIMARY KEY (site, id));"
	/* every change of what routing reads bumps routing_generation in the
	 * same transaction, so that a reader can tell a routing change from
	 * other commits (health observations, leases) with one tiny query */
	"INSERT INTO meta (key, value) VALUES ('routing_generation', 0) ON CONFLICT DO NOTHING;"
	"CREATE TRIGGER IF NOT EXISTS routing_sites_insert AFTER INSERT ON sites"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_sites_update AFTER UPDATE ON sites"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_sites_delete AFTER DELETE ON sites"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_backends_insert AFTER INSERT ON backends"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_backends_update AFTER UPDATE ON backends"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_backends_delete AFTER DELETE ON backends"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_groups_insert AFTER INSERT ON groups"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_groups_update AFTER UPDATE ON groups"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_groups_delete AFTER DELETE ON groups"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_users_insert AFTER INSERT ON users"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_users_update AFTER UPDATE ON users"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_users_delete AFTER DELETE ON users"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_group_failover_insert AFTER INSERT ON group_failover"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_group_failover_update AFTER UPDATE ON group_failover"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_group_failover_delete AFTER DELETE ON group_failover"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_force_moves_insert AFTER INSERT ON site_force_moves"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_force_moves_update AFTER UPDATE ON site_force_moves"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	"CREATE TRIGGER IF NOT EXISTS routing_force_moves_delete AFTER DELETE ON site_force_moves"
	" BEGIN UPDATE meta SET value = value + 1 WHERE key = 'routing_generation'; END;"
	/* a heartbeat is a routing change only when it is a row a failover
	 * cell needs (struct geodb_snapshot): a home site's beat landing after
	 * the snapshot read may void a cell (brain/site.h, rule 4), and a
	 * daemon watching the file must read it again; every other beat (one
	 * per site every few seconds) stays no change */
	"CREATE TRIGGER IF NOT EXISTS routing_heartbeats_insert AFTER INSERT ON site_heartbeats"
	" WHEN " HEARTBEAT_NEEDED(
		"NEW") " BEGIN UPDATE meta SET value = value + 1"
		       " WHERE key = 'routing_generation'; END;"
		       "CREATE TRIGGER IF NOT EXISTS routing_heartbeats_update AFTER UPDATE ON "
		       "site_heartbeats"
		       " WHEN " HEARTBEAT_NEEDED(
			       "NEW") " BEGIN UPDATE meta SET value = value + 1"
				      " WHERE key = 'routing_generation'; END;"
				      "CREATE TRIGGER IF NOT EXISTS routing_heartbeats_delete "
				      "AFTER DELETE ON site_heartbeats"
				      " WHEN " HEARTBEAT_NEEDED(
					      "OLD") " BEGIN UPDATE meta SET value = value + 1"
						     " WHERE key = 'routing_generation'; END;";

/* Columns that a version added to a table an older file already has. */
static const struct added_column {
	const char *table, *column, *definition;
} schema_added_columns[] = {
	/* version 3 */
	{"backends", "mark", "TEXT NOT NULL DEFAULT 'up'"},
	{"backends", "mark_since", "INTEGER NOT NULL DEFAULT 0"},
	{"backends", "mark_reason", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "alt_backend", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "move_to", "TEXT NOT NULL DEFAULT ''"},
	{"groups", "move_started", "INTEGER NOT NULL DEFAULT 0"},
	{"groups", "move_reason", "TEXT NOT NULL DEFAULT ''"},
	{"users", "hold_until", "INTEGER NOT NULL DEFAULT 0"},
	{"groups", "sticky", "INTEGER NOT NULL DEFAULT 0"},
	{"groups", "moved_at", "INTEGER NOT NULL DEFAULT 0"},
	{"groups", "history", "TEXT NOT NULL DEFAULT ''"},
	/* version 4 */
	{"groups", "failover_site", "TEXT NOT NULL DEFAULT ''"},
};

#define BACKEND_COLUMNS                                                                   \
	"name, site, address, status, load_factor, updated_by, updated_at, mark, mark_since," \
	" mark_reason"
#define GROUP_COLUMNS                                                                   \
	"group_id, site, backend, epoch, written_by, written_at, alt_backend, move_to," \
	" move_started, move_reason, sticky, moved_at, history, failover_site"
#define USER_COLUMNS "username, group_id, written_by, written_at, hold_until"

#define WAL_INDEX_HEADER_SIZE 48
#define WAL_INDEX_REGION_SIZE 32768 /* what SQLite maps the -shm by */

enum stmt_id {
	STMT_GROUP_GET,
	STMT_GROUP_INSERT,
	STMT_USER_GET,
	STMT_BACKEND_GET,
	STMT_GENERATION,
	STMT_BEGIN,
	STMT_COMMIT,
	STMT_COUNT
};

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_GROUP_GET] = "SELECT " GROUP_COLUMNS " FROM groups WHERE group_id = ?",
	/* a new group is not sticky and has no history; an unassigned one
	 * (its backend removed) keeps them, and its epoch grows
	 * (geodb_group_claim()) */
	[STMT_GROUP_INSERT] = "INSERT INTO groups (" GROUP_COLUMNS ")"
			      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, '', ?)"
			      " ON CONFLICT(group_id) DO UPDATE SET site = excluded.site,"
			      " backend = excluded.backend, epoch = groups.epoch + 1,"
			      " written_by = excluded.written_by,"
			      " written_at = excluded.written_at,"
			      " alt_backend = excluded.alt_backend,"
			      " failover_site = excluded.failover_site, move_to = excluded.move_to,"
			      " move_started = excluded.move_started,"
			      " move_reason = excluded.move_reason WHERE groups.backend = ''",
	[STMT_USER_GET] = "SELECT " USER_COLUMNS " FROM users WHERE username = ?",
	[STMT_BACKEND_GET] = "SELECT " BACKEND_COLUMNS " FROM backends WHERE name = ?",
	[STMT_BEGIN] = "BEGIN",
	[STMT_COMMIT] = "COMMIT",
	[STMT_GENERATION] = "SELECT value FROM meta WHERE key = 'routing_generation'",
};

struct sqldb {
	struct geodb geo; /* first: the handle geodb.c sees */
	sqlite3 *sqlite;
	char *path;
	const char *writer; /* geo.writer */
	unsigned found_version; /* the schema version the file had at open (0: new) */
	sqlite3_stmt *stmts[STMT_COUNT];
	char error[512];
	/* the first copy of the WAL-index header in the -shm file */
	const volatile unsigned char *shm;
	unsigned char shm_seen[WAL_INDEX_HEADER_SIZE];
	int64_t generation_seen; /* routing_generation at the last geodb_changed() */
};

static int fail(struct sqldb *db, const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct sqldb *db, const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(db->error, sizeof(db->error), fmt, args);
	va_end(args);
	*error_r = db->error;
	return -1;
}

static int sql_fail(struct sqldb *db, const char **error_r, const char *what)
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

static int exec(struct sqldb *db, const char *sql, const char **error_r)
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
static sqlite3_stmt *prepare(struct sqldb *db, const char *sql, const char **error_r)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(db->sqlite, sql, -1, &stmt, NULL) != SQLITE_OK) {
		sql_fail(db, error_r, "prepare");
		return NULL;
	}
	return stmt;
}

static sqlite3_stmt *cached(struct sqldb *db, enum stmt_id id)
{
	sqlite3_stmt *stmt = db->stmts[id];
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return stmt;
}

static void sqlite_close(struct geodb *geo);
static int sqlite_backend_get(struct geodb *geo, const char *name, struct geodb_backend *backend_r,
			      const char **error_r);
static int sqlite_group_get(struct geodb *geo, unsigned group_id, struct geodb_group *group_r,
			    const char **error_r);
static int sqlite_site_get(struct geodb *geo, const char *name, struct geodb_site *site_r,
			   const char **error_r);

/* The upgrade of an older file: the columns its tables lack (inside
 * sqlite_open()'s transaction). */
static int add_missing_columns(struct sqldb *db, const char **error_r)
{
	sqlite3_stmt *has = prepare(db, "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?",
				    error_r);
	if (has == NULL)
		return -1;
	int ret = 0;
	for (size_t i = 0; i < sizeof(schema_added_columns) / sizeof(schema_added_columns[0]) &&
			   ret == 0;
	     i++) {
		const struct added_column *add = &schema_added_columns[i];
		sqlite3_reset(has);
		sqlite3_bind_text(has, 1, add->table, -1, SQLITE_STATIC);
		sqlite3_bind_text(has, 2, add->column, -1, SQLITE_STATIC);
		if (sqlite3_step(has) != SQLITE_ROW) {
			ret = sql_fail(db, error_r, "looking at the schema");
			break;
		}
		if (sqlite3_column_int(has, 0) > 0)
			continue;
		char sql[256];
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s;", add->table,
			 add->column, add->definition);
		ret = exec(db, sql, error_r);
	}
	sqlite3_finalize(has);
	return ret;
}

static int sqlite_spec_check(const char *path, const char **error_r)
{
	if (path[0] == '\0') {
		*error_r = "geodb: sqlite: expects a file name (sqlite:PATH)";
		return -1;
	}
	return 0;
}

static int sqlite_open(const char *path, unsigned busy_timeout_ms, struct geodb **db_r,
		       const char **error_r)
{
	static char open_error[512];
	if (sqlite_spec_check(path, error_r) < 0)
		return -1;
	struct sqldb *db = calloc(1, sizeof(*db));
	db->path = strdup(path);
	db->writer = db->geo.writer;
	if (sqlite3_open_v2(db->path, &db->sqlite,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(open_error, sizeof(open_error), "geodb: cannot open %s: %s", db->path,
			 db->sqlite != NULL ? sqlite3_errmsg(db->sqlite) : "out of memory");
		*error_r = open_error;
		sqlite_close(&db->geo);
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
	/* every table is CREATE IF NOT EXISTS, so creating and upgrading are
	 * the same statements; what remains is recording the version */
	sqlite3_stmt *version = prepare(db, "SELECT value FROM meta WHERE key = 'schema_version'",
					error_r);
	if (version == NULL) {
		exec(db, "ROLLBACK;", error_r);
		goto failed;
	}
	if (sqlite3_step(version) == SQLITE_ROW)
		db->found_version = (unsigned)sqlite3_column_int(version, 0);
	sqlite3_finalize(version);
	if (db->found_version > GEODB_SCHEMA_VERSION) {
		fail(db, error_r,
		     "geodb: %s has schema version %u, newer than this mailcluster knows (%d)",
		     db->path, db->found_version, GEODB_SCHEMA_VERSION);
		exec(db, "ROLLBACK;", &(const char *){NULL});
		goto failed;
	}
	if (add_missing_columns(db, error_r) < 0) {
		exec(db, "ROLLBACK;", &(const char *){NULL});
		goto failed;
	}
	char version_sql[160];
	snprintf(version_sql, sizeof(version_sql),
		 "INSERT INTO meta (key, value) VALUES ('schema_version', '%d') ON CONFLICT DO "
		 "UPDATE SET value = excluded.value;",
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
	/* Notice commits (geodb_changed) by reading the WAL-index header in
	 * the region of the -shm file that this connection's SQLite already
	 * maps, through the VFS.  Never open() the -shm ourselves: closing any
	 * descriptor of a file drops all of this process's POSIX locks on it,
	 * SQLite's "somebody uses this file" lock among them; the next process
	 * to open the database then believes it is the first, truncates the
	 * -shm and SQLite here dies of SIGBUS reading past its end. */
	sqlite3_file *file = NULL;
	void *region = NULL;
	if (sqlite3_file_control(db->sqlite, "main", SQLITE_FCNTL_FILE_POINTER, &file) ==
		    SQLITE_OK &&
	    file != NULL && file->pMethods != NULL && file->pMethods->iVersion >= 2 &&
	    file->pMethods->xShmMap != NULL &&
	    file->pMethods->xShmMap(file, 0, WAL_INDEX_REGION_SIZE, 0, (volatile void **)&region) ==
		    SQLITE_OK)
		db->shm = region; /* NULL when not mapped: every call says "changed" */
	*db_r = &db->geo;
	return 0;
failed:
	snprintf(open_error, sizeof(open_error), "%s", *error_r);
	*error_r = open_error;
	sqlite_close(&db->geo);
	return -1;
}

static void sqlite_close(struct geodb *geo)
{
	struct sqldb *db = (struct sqldb *)geo;
	for (int i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(db->stmts[i]);
	sqlite3_close(db->sqlite);
	free(db->path);
	free(db);
}

static bool sqlite_changed(struct geodb *geo)
{
	struct sqldb *db = (struct sqldb *)geo;
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
	/* something was committed: was it something routing reads? */
	sqlite3_stmt *stmt = cached(db, STMT_GENERATION);
	bool changed = true;
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		int64_t generation = sqlite3_column_int64(stmt, 0);
		changed = generation != db->generation_seen;
		db->generation_seen = generation;
	}
	sqlite3_reset(stmt);
	return changed;
}

static int sqlite_read_begin(struct geodb *geo, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = cached(db, STMT_BEGIN);
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc != SQLITE_DONE)
		return sql_fail(db, error_r, "starting a read transaction");
	return 0;
}

static void sqlite_read_end(struct geodb *geo)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = cached(db, STMT_COMMIT);
	sqlite3_step(stmt);
	sqlite3_reset(stmt);
}

static int sqlite_check_group_count(struct geodb *geo, unsigned group_count, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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
	return sqlite_check_group_count(geo, group_count, error_r);
}

/* Runs a one-row-changing statement; returns sqlite3_changes() or -1. */
static int step_done(struct sqldb *db, sqlite3_stmt *stmt, const char *what, const char **error_r)
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

static int sqlite_site_add(struct geodb *geo, const struct geodb_site *site, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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

static int sqlite_site_update(struct geodb *geo, const struct geodb_site *site, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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

static int count_rows(struct sqldb *db, const char *sql, const char *arg, const char **error_r)
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

static int sqlite_site_remove(struct geodb *geo, const char *name, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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

static int sqlite_site_get(struct geodb *geo, const char *name, struct geodb_site *site_r,
		   const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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
static int collect(struct sqldb *db, sqlite3_stmt *stmt, size_t elem_size,
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

static int sqlite_site_list(struct geodb *geo, struct geodb_site **sites_r, size_t *count_r,
		    const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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
	const char *mark = (const char *)sqlite3_column_text(stmt, 7);
	backend->mark = mark != NULL && strcmp(mark, health_mark_name(HEALTH_MARK_DOWN)) == 0
				? HEALTH_MARK_DOWN
				: HEALTH_MARK_UP;
	backend->mark_since = sqlite3_column_int64(stmt, 8);
	copy_text(backend->mark_reason, sizeof(backend->mark_reason), stmt, 9);
}

static void read_backend_row(sqlite3_stmt *stmt, void *item)
{
	read_backend(stmt, item);
}

static int sqlite_backend_add(struct geodb *geo, const char *site, const char *name, const char *address,
		      const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	struct geodb_site site_row;
	int found = sqlite_site_get(geo, site, &site_row, error_r);
	if (found < 0)
		return -1;
	if (found == 0)
		return fail(db, error_r, "site %s does not exist: add it first with 'site add %s'",
			    site, site);
	sqlite3_stmt *stmt =
		prepare(db,
			"INSERT INTO backends (name, site, address, status, load_factor, "
			"updated_by, updated_at, mark, mark_since, mark_reason)"
			" VALUES (?, ?, ?, 'standby', 100, ?, ?, 'up', 0, '')"
			" ON CONFLICT(name) DO NOTHING",
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

static int sqlite_backend_update(struct geodb *geo, const struct geodb_backend *backend,
			 const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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

/* Runs sql (?1 writer, ?2 now, ?3 name) for backend_remove(). */
static int groups_forget(struct sqldb *db, const char *sql, const char *name, const char *what,
			 const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db, sql, error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, now_seconds());
	sqlite3_bind_text(stmt, 3, name, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, what, error_r);
	sqlite3_finalize(stmt);
	return changes;
}

static void read_group_row(sqlite3_stmt *stmt, void *item);

/* The groups on the removed backend name keep their rows, unassigned
 * (geodb_group_unassign()): their history remembers it.  Returns their
 * number, or -1. */
static int groups_unassign(struct sqldb *db, const char *name, const char **error_r)
{
	sqlite3_stmt *stmt =
		prepare(db, "SELECT " GROUP_COLUMNS " FROM groups WHERE backend = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	struct geodb_group *groups;
	size_t count;
	if (collect(db, stmt, sizeof(*groups), read_group_row, (void **)&groups, &count, error_r) <
	    0)
		return -1;
	int ret = 0;
	if (count > 0)
		stmt = prepare(db,
			       "UPDATE groups SET backend = '', alt_backend = ?1, move_to = '',"
			       " move_started = 0, move_reason = '', epoch = ?2, written_by = ?3,"
			       " written_at = ?4, moved_at = ?5, history = ?6 WHERE group_id = ?7",
			       error_r);
	if (count > 0 && stmt == NULL)
		ret = -1;
	int64_t now_ms = geodb_unix_ms(), now = now_seconds();
	for (size_t i = 0; i < count && ret == 0; i++) {
		struct geodb_group row;
		char history[GEODB_HISTORY_TEXT_MAX];
		geodb_group_unassign(&row, &groups[i], now_ms);
		geodb_history_format(&row, history, sizeof(history));
		sqlite3_bind_text(stmt, 1, row.alt_backend, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, (sqlite3_int64)row.epoch);
		sqlite3_bind_text(stmt, 3, db->writer, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, now);
		sqlite3_bind_int64(stmt, 5, row.moved_at_ms);
		sqlite3_bind_text(stmt, 6, history, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(stmt, 7, row.group_id);
		if (step_done(db, stmt, "unassigning a group", error_r) < 0)
			ret = -1;
		sqlite3_reset(stmt);
	}
	if (count > 0 && stmt != NULL)
		sqlite3_finalize(stmt);
	free(groups);
	return ret < 0 ? -1 : (int)count;
}

static int sqlite_backend_remove(struct geodb *geo, const char *name, unsigned *groups_unassigned_r,
			 const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	/* geodb.c checked that it exists and is not online */
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	sqlite3_stmt *stmt;
	int groups = groups_unassign(db, name, error_r);
	/* a move to it is over (epoch + 1, like any change of the move); being
	 * the alternative of a group is only a reference: cleared */
	int cleared = groups < 0 ? -1
				 : groups_forget(db,
						 "UPDATE groups SET move_to = '', move_started = 0,"
						 " move_reason = '', epoch = epoch + 1, written_by = ?1,"
						 " written_at = ?2 WHERE move_to = ?3",
						 name, "ending the moves to a removed backend", error_r);
	if (cleared >= 0)
		cleared = groups_forget(db,
					"UPDATE groups SET alt_backend = '', written_by = ?1,"
					" written_at = ?2 WHERE alt_backend = ?3",
					name, "clearing a removed alternative backend", error_r);
	int changes = -1;
	if (cleared >= 0 &&
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

static int sqlite_backend_get(struct geodb *geo, const char *name, struct geodb_backend *backend_r,
		      const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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

static int sqlite_backend_list(struct geodb *geo, const char *site, struct geodb_backend **backends_r,
		       size_t *count_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db,
		site != NULL
			? "SELECT " BACKEND_COLUMNS " FROM backends WHERE site = ? ORDER BY name"
			: "SELECT " BACKEND_COLUMNS " FROM backends ORDER BY name",
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

static int sqlite_backend_loads(struct geodb *geo, struct geodb_backend_load **loads_r, size_t *count_r,
			const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db,
			"SELECT backend, count(*) FROM groups WHERE backend != '' GROUP BY backend"
			" ORDER BY backend",
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
	copy_text(group->alt_backend, sizeof(group->alt_backend), stmt, 6);
	copy_text(group->move_to, sizeof(group->move_to), stmt, 7);
	group->move_started_ms = sqlite3_column_int64(stmt, 8);
	copy_text(group->move_reason, sizeof(group->move_reason), stmt, 9);
	group->sticky = sqlite3_column_int(stmt, 10) != 0;
	group->moved_at_ms = sqlite3_column_int64(stmt, 11);
	geodb_history_parse((const char *)sqlite3_column_text(stmt, 12), group);
	copy_text(group->failover_site, sizeof(group->failover_site), stmt, 13);
}

static void read_group_row(sqlite3_stmt *stmt, void *item)
{
	read_group(stmt, item);
}

static int sqlite_group_get(struct geodb *geo, unsigned group_id, struct geodb_group *group_r,
		    const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
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

static int sqlite_group_assign_if_absent(struct geodb *geo, struct geodb_group *group, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = cached(db, STMT_GROUP_INSERT);
	sqlite3_bind_int64(stmt, 1, group->group_id);
	sqlite3_bind_text(stmt, 2, group->site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, group->backend, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, (sqlite3_int64)group->epoch);
	sqlite3_bind_text(stmt, 5, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 6, now_seconds());
	sqlite3_bind_text(stmt, 7, group->alt_backend, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 8, group->move_to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 9, group->move_started_ms);
	sqlite3_bind_text(stmt, 10, group->move_reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 11, group->failover_site, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "assigning a group", error_r);
	sqlite3_reset(stmt);
	if (changes < 0)
		return -1;
	int found = sqlite_group_get(geo, group->group_id, group, error_r);
	if (found < 0)
		return -1;
	if (found == 0)
		return fail(db, error_r, "geodb: group %u vanished right after it was assigned",
			    group->group_id);
	return changes > 0 ? 1 : 0;
}

static int sqlite_group_set(struct geodb *geo, unsigned group_id, const char *site, const char *backend,
		    const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	/* the row as it is and the write, under one write lock: the history
	 * is computed from it */
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	struct geodb_group current, row;
	int found = sqlite_group_get(geo, group_id, &current, error_r);
	int changes = -1;
	sqlite3_stmt *stmt = NULL;
	if (found >= 0)
		stmt = prepare(
			db,
			"INSERT INTO groups (group_id, site, backend, epoch, written_by,"
			" written_at, moved_at, history)"
			" VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7) ON CONFLICT(group_id) DO"
			" UPDATE SET site = ?2, backend = ?3, epoch = epoch + 1,"
			" written_by = ?4, written_at = ?5, move_to = '', move_started = 0,"
			" move_reason = '', moved_at = ?6, history = ?7,"
			" alt_backend = CASE WHEN alt_backend = ?3 THEN '' ELSE alt_backend END,"
			" failover_site = CASE WHEN failover_site = ?2 THEN '' ELSE failover_site"
			" END",
			error_r);
	if (stmt != NULL) {
		memset(&row, 0, sizeof(row));
		snprintf(row.backend, sizeof(row.backend), "%s", backend);
		geodb_group_switch(&row, found > 0 ? &current : NULL, geodb_unix_ms());
		char history[GEODB_HISTORY_TEXT_MAX];
		geodb_history_format(&row, history, sizeof(history));
		sqlite3_bind_int64(stmt, 1, group_id);
		sqlite3_bind_text(stmt, 2, site, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, backend, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 4, db->writer, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 5, now_seconds());
		sqlite3_bind_int64(stmt, 6, row.moved_at_ms);
		sqlite3_bind_text(stmt, 7, history, -1, SQLITE_TRANSIENT);
		changes = step_done(db, stmt, "moving a group", error_r);
		sqlite3_finalize(stmt);
	}
	if (changes < 0) {
		exec(db, "ROLLBACK;", &(const char *){NULL});
		return -1;
	}
	return exec(db, "COMMIT;", error_r);
}

static int sqlite_group_cas(struct geodb *geo, const struct geodb_group *row,
			    uint64_t expected_epoch, struct geodb_group *stored_r,
			    const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	/* the update and the read of what it left, under one write lock */
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	struct geodb_group current, ours = *row;
	int changes = -1, found = sqlite_group_get(geo, row->group_id, &current, error_r);
	sqlite3_stmt *stmt = NULL;
	if (found == 0 || (found > 0 && current.epoch != expected_epoch))
		changes = 0; /* not applied */
	else if (found > 0)
		stmt = prepare(db,
			       "UPDATE groups SET site = ?1, backend = ?2, alt_backend = ?3,"
			       " move_to = ?4, move_started = ?5, move_reason = ?6,"
			       " epoch = ?7 + 1, written_by = ?8, written_at = ?9, sticky = ?11,"
			       " moved_at = ?12, history = ?13, failover_site = ?14"
			       " WHERE group_id = ?10 AND epoch = ?7",
			       error_r);
	if (stmt != NULL) {
		char history[GEODB_HISTORY_TEXT_MAX];
		geodb_group_switch(&ours, &current, geodb_unix_ms());
		geodb_history_format(&ours, history, sizeof(history));
		sqlite3_bind_text(stmt, 1, row->site, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, row->backend, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, row->alt_backend, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 4, row->move_to, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 5, row->move_started_ms);
		sqlite3_bind_text(stmt, 6, row->move_reason, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 7, (sqlite3_int64)expected_epoch);
		sqlite3_bind_text(stmt, 8, db->writer, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 9, now_seconds());
		sqlite3_bind_int64(stmt, 10, row->group_id);
		sqlite3_bind_int(stmt, 11, row->sticky ? 1 : 0);
		sqlite3_bind_int64(stmt, 12, ours.moved_at_ms);
		sqlite3_bind_text(stmt, 13, history, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 14, row->failover_site, -1, SQLITE_STATIC);
		changes = step_done(db, stmt, "changing a group", error_r);
		sqlite3_finalize(stmt);
	}
	if (changes >= 0)
		found = sqlite_group_get(geo, row->group_id, stored_r, error_r);
	else
		found = -1;
	if (found < 0) {
		exec(db, "ROLLBACK;", &(const char *){NULL});
		return -1;
	}
	if (exec(db, "COMMIT;", error_r) < 0)
		return -1;
	if (found == 0) {
		memset(stored_r, 0, sizeof(*stored_r));
		stored_r->group_id = row->group_id;
		return 0;
	}
	return changes > 0 ? 1 : 0;
}

static int sqlite_group_list(struct geodb *geo, struct geodb_group **groups_r, size_t *count_r,
		     const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db, "SELECT " GROUP_COLUMNS " FROM groups ORDER BY group_id", error_r);
	if (stmt == NULL)
		return -1;
	return collect(db, stmt, sizeof(**groups_r), read_group_row, (void **)groups_r, count_r,
		       error_r);
}

static int sqlite_group_set_sticky(struct geodb *geo, unsigned group_id, bool sticky,
				   const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db,
		"UPDATE groups SET sticky = ?, written_by = ?, written_at = ? WHERE group_id = ?",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int(stmt, 1, sticky ? 1 : 0);
	sqlite3_bind_text(stmt, 2, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, now_seconds());
	sqlite3_bind_int64(stmt, 4, group_id);
	int changes = step_done(db, stmt, "pinning a group", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : (changes > 0 ? 1 : 0);
}

/* ---- users ---- */

/* a row of USER_COLUMNS */
static void read_user_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_user *user = item;
	memset(user, 0, sizeof(*user));
	copy_text(user->username, sizeof(user->username), stmt, 0);
	user->group_id = (unsigned)sqlite3_column_int64(stmt, 1);
	copy_text(user->written_by, sizeof(user->written_by), stmt, 2);
	user->written_at = sqlite3_column_int64(stmt, 3);
	user->hold_until_ms = sqlite3_column_int64(stmt, 4);
}

static int sqlite_user_get(struct geodb *geo, const char *username, struct geodb_user *user_r,
		   const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = cached(db, STMT_USER_GET);
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		read_user_row(stmt, user_r);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a user");
	}
	sqlite3_reset(stmt);
	return ret;
}

static int sqlite_user_move(struct geodb *geo, const char *username, unsigned group_id,
			    int64_t hold_until_ms, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db,
			"INSERT INTO users (" USER_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5)"
			" ON CONFLICT(username) DO UPDATE SET group_id = ?2, "
			"written_by = ?3, written_at = ?4, hold_until = ?5",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, group_id);
	sqlite3_bind_text(stmt, 3, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, now_seconds());
	sqlite3_bind_int64(stmt, 5, hold_until_ms);
	int changes = step_done(db, stmt, "moving a user", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static int sqlite_user_set_group(struct geodb *geo, const char *username, unsigned group_id,
				 const char **error_r)
{
	return sqlite_user_move(geo, username, group_id, 0, error_r);
}

static int sqlite_user_delete(struct geodb *geo, const char *username, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(db, "DELETE FROM users WHERE username = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "deleting a user", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : (changes > 0 ? 1 : 0);
}

static int sqlite_user_list(struct geodb *geo, struct geodb_user **users_r, size_t *count_r,
			    const char **error_r);
static int sqlite_group_failover_list(struct geodb *geo, struct geodb_group_failover **cells_r,
				      size_t *count_r, const char **error_r);
static int sqlite_site_force_move_list(struct geodb *geo, const char *site,
				       struct geodb_site_force_move **moves_r, size_t *count_r,
				       const char **error_r);

/* ---- users' last backends ---- */

static int sqlite_user_last_backend(struct geodb *geo, const char *username, const char *backend,
				    int64_t at_ms, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT INTO user_backend (username, backend, recorded_at)"
				     " VALUES (?1, ?2, ?3) ON CONFLICT(username) DO UPDATE SET"
				     " backend = ?2, recorded_at = ?3",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, backend, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, at_ms);
	int changes = step_done(db, stmt, "recording a user's last backend", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static int sqlite_user_last_backend_get(struct geodb *geo, const char *username,
					char backend_r[NAME_MAX_LEN + 1], int64_t *at_ms_r,
					const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db, "SELECT backend, recorded_at FROM user_backend WHERE username = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, username, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		copy_text(backend_r, NAME_MAX_LEN + 1, stmt, 0);
		*at_ms_r = sqlite3_column_int64(stmt, 1);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a user's last backend");
	}
	sqlite3_finalize(stmt);
	return ret;
}

/* ---- schema ---- */

static int sqlite_init(struct geodb *geo, unsigned *from_r, const char **error_r)
{
	/* sqlite_open() created or upgraded the schema already */
	struct sqldb *db = (struct sqldb *)geo;
	*from_r = db->found_version;
	return 0;
}

static const char *sqlite_schema_text(struct geodb *geo)
{
	return schema_sql;
}

/* ---- the whole state at once ---- */

static int meta_uint(struct sqldb *db, const char *key, unsigned *value_r, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db, "SELECT value FROM meta WHERE key = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	*value_r = rc == SQLITE_ROW ? (unsigned)sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_finalize(stmt);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(db, error_r, "reading meta");
	return 0;
}

static void read_heartbeat_row(sqlite3_stmt *stmt, void *item);

/* The heartbeat rows the failover cells need (struct geodb_snapshot): per
 * cell whose group has a row with a site, that site's rows of buckets
 * bucket(written_at_ms) - 1 and bucket(written_at_ms), looked up by the
 * primary key (site, bucket), never a scan of the site's week of rows.
 * CROSS JOIN keeps that order (SQLite's planner would otherwise scan every
 * group for the few cells), DISTINCT drops the second copy of a row two
 * cells in adjacent buckets both need. */
static int snapshot_heartbeats(struct sqldb *db, struct geodb_snapshot *snap, const char **error_r)
{
	if (snap->failover_count == 0)
		return 0; /* the common case costs nothing */
	char sql[640];
	snprintf(sql, sizeof(sql),
		 "SELECT DISTINCT h.site, h.bucket, h.beat_ms, h.writer FROM group_failover f"
		 " CROSS JOIN groups g ON g.group_id = f.group_id AND g.site <> ''"
		 " CROSS JOIN site_heartbeats h ON h.site = g.site"
		 " AND h.bucket >= f.written_at_ms / %d - 1 AND h.bucket <= f.written_at_ms / %d"
		 " WHERE h.expires_at > ? ORDER BY h.site, h.bucket",
		 GEODB_HEARTBEAT_BUCKET_MS, GEODB_HEARTBEAT_BUCKET_MS);
	sqlite3_stmt *stmt = prepare(db, sql, error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	if (collect(db, stmt, sizeof(*snap->heartbeats), read_heartbeat_row,
		    (void **)&snap->heartbeats, &snap->heartbeat_count, error_r) < 0)
		return fail(db, error_r,
			    "geodb: reading the snapshot (table site_heartbeats) failed on %s: %s",
			    db->path, sqlite3_errmsg(db->sqlite));
	/* SQLite's text order is memcmp's, strcmp's: sorted already */
	return 0;
}

static int sqlite_snapshot_read(struct geodb *geo, struct geodb_snapshot *snap,
				const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	memset(snap, 0, sizeof(*snap));
	if (sqlite_read_begin(geo, error_r) < 0)
		return -1;
	int ret = -1;
	if (meta_uint(db, "schema_version", &snap->schema_version, error_r) == 0 &&
	    meta_uint(db, "group_count", &snap->group_count, error_r) == 0 &&
	    sqlite_site_list(geo, &snap->sites, &snap->site_count, error_r) == 0 &&
	    sqlite_backend_list(geo, NULL, &snap->backends, &snap->backend_count, error_r) == 0 &&
	    sqlite_group_list(geo, &snap->groups, &snap->group_row_count, error_r) == 0 &&
	    sqlite_user_list(geo, &snap->users, &snap->user_count, error_r) == 0 &&
	    sqlite_group_failover_list(geo, &snap->failovers, &snap->failover_count, error_r) ==
		    0 &&
	    snapshot_heartbeats(db, snap, error_r) == 0 &&
	    sqlite_site_force_move_list(geo, NULL, &snap->force_moves, &snap->force_move_count,
					error_r) == 0)
		ret = 0;
	sqlite_read_end(geo);
	if (ret < 0)
		geodb_snapshot_free(snap);
	return ret;
}

/* ---- users (list) ---- */

static int sqlite_user_list(struct geodb *geo, struct geodb_user **users_r, size_t *count_r,
			    const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db, "SELECT " USER_COLUMNS " FROM users ORDER BY username", error_r);
	if (stmt == NULL)
		return -1;
	return collect(db, stmt, sizeof(**users_r), read_user_row, (void **)users_r, count_r,
		       error_r);
}

/* ---- leases ---- */

static int sqlite_lease_acquire(struct geodb *geo, const char *name, const char *holder,
				unsigned ttl_secs, struct geodb_lease *lease_r,
				const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	int64_t now = now_seconds();
	/* one statement: take it if absent, expired or ours; the write lock
	 * makes it atomic against other processes */
	sqlite3_stmt *stmt = prepare(
		db,
		"INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)"
		" ON CONFLICT(name) DO UPDATE SET holder = ?2, expires_at = ?3"
		" WHERE leases.holder = ?2 OR leases.expires_at <= ?4",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, holder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, now + ttl_secs);
	sqlite3_bind_int64(stmt, 4, now);
	int changes = step_done(db, stmt, "acquiring a lease", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	stmt = prepare(db, "SELECT name, holder, expires_at FROM leases WHERE name = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		memset(lease_r, 0, sizeof(*lease_r));
		copy_text(lease_r->name, sizeof(lease_r->name), stmt, 0);
		copy_text(lease_r->holder, sizeof(lease_r->holder), stmt, 1);
		lease_r->expires_at = sqlite3_column_int64(stmt, 2);
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_ROW)
		return sql_fail(db, error_r, "reading a lease");
	return changes > 0 ? 1 : 0;
}

static int sqlite_lease_release(struct geodb *geo, const char *name, const char *holder,
				const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db, "DELETE FROM leases WHERE name = ? AND holder = ? AND expires_at > ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, holder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, now_seconds());
	int changes = step_done(db, stmt, "releasing a lease", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : (changes > 0 ? 1 : 0);
}

/* ---- health observations ---- */

static int sqlite_health_put(struct geodb *geo, const struct geodb_health *health,
			     unsigned ttl_secs, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db,
			"INSERT INTO health (backend, observer, ok, detail, observed_at, expires_at,"
			" since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(backend, observer)"
			" DO UPDATE SET ok = ?3, detail = ?4, observed_at = ?5, expires_at = ?6,"
			" since = ?7",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, health->backend, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, health->observer, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 3, health->ok ? 1 : 0);
	sqlite3_bind_text(stmt, 4, health->detail, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, health->observed_at);
	sqlite3_bind_int64(stmt, 6, now_seconds() + ttl_secs);
	sqlite3_bind_int64(stmt, 7, health->since);
	int changes = step_done(db, stmt, "recording a health observation", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	/* expired rows go away like Cassandra's TTL'd ones */
	stmt = prepare(db, "DELETE FROM health WHERE expires_at <= ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	changes = step_done(db, stmt, "expiring health observations", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static void read_health_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_health *health = item;
	memset(health, 0, sizeof(*health));
	copy_text(health->backend, sizeof(health->backend), stmt, 0);
	copy_text(health->observer, sizeof(health->observer), stmt, 1);
	health->ok = sqlite3_column_int(stmt, 2) != 0;
	copy_text(health->detail, sizeof(health->detail), stmt, 3);
	health->observed_at = sqlite3_column_int64(stmt, 4);
	health->since = sqlite3_column_int64(stmt, 5);
}

static int sqlite_health_list(struct geodb *geo, const char *backend,
			      struct geodb_health **health_r, size_t *count_r,
			      const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db,
		backend != NULL
			? "SELECT backend, observer, ok, detail, observed_at, since FROM health"
			  " WHERE expires_at > ?1 AND backend = ?2 ORDER BY backend, observer"
			: "SELECT backend, observer, ok, detail, observed_at, since FROM health"
			  " WHERE expires_at > ?1 ORDER BY backend, observer",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	if (backend != NULL)
		sqlite3_bind_text(stmt, 2, backend, -1, SQLITE_STATIC);
	return collect(db, stmt, sizeof(**health_r), read_health_row, (void **)health_r, count_r,
		       error_r);
}

/* ---- the controller's marks ---- */

static int sqlite_backend_mark(struct geodb *geo, const char *name, enum health_mark mark,
			       int64_t mark_since, const char *reason, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db, "UPDATE backends SET mark = ?, mark_since = ?, mark_reason = ? WHERE name = ?",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, health_mark_name(mark), -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, mark_since);
	sqlite3_bind_text(stmt, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, name, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "marking a backend", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : (changes > 0 ? 1 : 0);
}

/* ---- move acknowledgements ---- */

static int sqlite_move_ack_put(struct geodb *geo, const struct geodb_move_ack *ack,
			       unsigned ttl_secs, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT INTO move_acks (group_id, observer, epoch, acked_at,"
				     " expires_at) VALUES (?1, ?2, ?3, ?4, ?5)"
				     " ON CONFLICT(group_id, observer) DO UPDATE SET epoch = ?3,"
				     " acked_at = ?4, expires_at = ?5",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, ack->group_id);
	sqlite3_bind_text(stmt, 2, ack->observer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, (sqlite3_int64)ack->epoch);
	sqlite3_bind_int64(stmt, 4, ack->acked_at);
	sqlite3_bind_int64(stmt, 5, now_seconds() + ttl_secs);
	int changes = step_done(db, stmt, "recording a move acknowledgement", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	/* expired rows go away like Cassandra's TTL'd ones */
	stmt = prepare(db, "DELETE FROM move_acks WHERE expires_at <= ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	changes = step_done(db, stmt, "expiring move acknowledgements", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static void read_move_ack_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_move_ack *ack = item;
	memset(ack, 0, sizeof(*ack));
	ack->group_id = (unsigned)sqlite3_column_int64(stmt, 0);
	copy_text(ack->observer, sizeof(ack->observer), stmt, 1);
	ack->epoch = (uint64_t)sqlite3_column_int64(stmt, 2);
	ack->acked_at = sqlite3_column_int64(stmt, 3);
}

static int sqlite_move_ack_list(struct geodb *geo, unsigned group_id,
				struct geodb_move_ack **acks_r, size_t *count_r,
				const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(db,
				     "SELECT group_id, observer, epoch, acked_at FROM move_acks"
				     " WHERE group_id = ?1 AND expires_at > ?2 ORDER BY observer",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, group_id);
	sqlite3_bind_int64(stmt, 2, now_seconds());
	return collect(db, stmt, sizeof(**acks_r), read_move_ack_row, (void **)acks_r, count_r,
		       error_r);
}

/* ---- group loads ---- */

static int sqlite_group_load_put(struct geodb *geo, const char *observer,
				 const struct geodb_group_load *rows, size_t count,
				 unsigned ttl_secs, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	int64_t now = now_seconds();
	int ret = -1;
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT INTO group_load (group_id, observer, sessions, logins,"
				     " reported_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
				     " ON CONFLICT(group_id, observer) DO UPDATE SET sessions = ?3,"
				     " logins = ?4, reported_at = ?5, expires_at = ?6",
				     error_r);
	if (stmt != NULL) {
		ret = 0;
		for (size_t i = 0; i < count && ret == 0; i++) {
			sqlite3_reset(stmt);
			sqlite3_bind_int64(stmt, 1, rows[i].group_id);
			sqlite3_bind_text(stmt, 2, observer, -1, SQLITE_STATIC);
			sqlite3_bind_int64(stmt, 3, rows[i].sessions);
			sqlite3_bind_int64(stmt, 4, rows[i].logins);
			sqlite3_bind_int64(stmt, 5, rows[i].reported_at);
			sqlite3_bind_int64(stmt, 6, now + ttl_secs);
			if (step_done(db, stmt, "recording a group load", error_r) < 0)
				ret = -1;
		}
		sqlite3_finalize(stmt);
	}
	/* expired rows go away like Cassandra's TTL'd ones */
	if (ret == 0 &&
	    (stmt = prepare(db, "DELETE FROM group_load WHERE expires_at <= ?", error_r)) != NULL) {
		sqlite3_bind_int64(stmt, 1, now);
		ret = step_done(db, stmt, "expiring group loads", error_r) < 0 ? -1 : 0;
		sqlite3_finalize(stmt);
	} else if (ret == 0) {
		ret = -1;
	}
	if (ret < 0) {
		exec(db, "ROLLBACK;", &(const char *){NULL});
		return -1;
	}
	return exec(db, "COMMIT;", error_r);
}

static void read_group_load_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_group_load *load = item;
	memset(load, 0, sizeof(*load));
	load->group_id = (unsigned)sqlite3_column_int64(stmt, 0);
	copy_text(load->observer, sizeof(load->observer), stmt, 1);
	load->sessions = (unsigned)sqlite3_column_int64(stmt, 2);
	load->logins = (unsigned)sqlite3_column_int64(stmt, 3);
	load->reported_at = sqlite3_column_int64(stmt, 4);
}

static int sqlite_group_load_list(struct geodb *geo, struct geodb_group_load **rows_r,
				  size_t *count_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db,
			"SELECT group_id, observer, sessions, logins, reported_at"
			" FROM group_load WHERE expires_at > ? ORDER BY group_id, observer",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	return collect(db, stmt, sizeof(**rows_r), read_group_load_row, (void **)rows_r, count_r,
		       error_r);
}

/* ---- several sites ---- */

/* Deletes table's rows whose expires_at has passed (like Cassandra's TTL). */
static int expire_rows(struct sqldb *db, const char *table, const char **error_r)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE expires_at <= ?", table);
	sqlite3_stmt *stmt = prepare(db, sql, error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	int changes = step_done(db, stmt, "expiring rows", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static int sqlite_site_heartbeat_put(struct geodb *geo, const char *site, const char *writer,
				     int64_t now_ms, unsigned ttl_secs, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	if (expire_rows(db, "site_heartbeats", error_r) < 0)
		return -1;
	/* the newest beat of the bucket stays, like Cassandra's cell written
	 * with the beat as its timestamp */
	sqlite3_stmt *stmt =
		prepare(db,
			"INSERT INTO site_heartbeats (site, bucket, beat_ms, writer, expires_at)"
			" VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(site, bucket) DO UPDATE SET"
			" beat_ms = ?3, writer = ?4, expires_at = ?5"
			" WHERE site_heartbeats.beat_ms <= ?3",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, site, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, now_ms / GEODB_HEARTBEAT_BUCKET_MS);
	sqlite3_bind_int64(stmt, 3, now_ms);
	sqlite3_bind_text(stmt, 4, writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, now_seconds() + ttl_secs);
	int changes = step_done(db, stmt, "recording a site heartbeat", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static void read_heartbeat_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_site_heartbeat *hb = item;
	memset(hb, 0, sizeof(*hb));
	copy_text(hb->site, sizeof(hb->site), stmt, 0);
	hb->bucket = sqlite3_column_int64(stmt, 1);
	hb->beat_ms = sqlite3_column_int64(stmt, 2);
	copy_text(hb->writer, sizeof(hb->writer), stmt, 3);
}

static int sqlite_site_heartbeat_list(struct geodb *geo, const char *site, int64_t from_ms,
				      int64_t to_ms, struct geodb_site_heartbeat **rows_r,
				      size_t *count_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db,
			site != NULL ? "SELECT site, bucket, beat_ms, writer FROM site_heartbeats"
				       " WHERE expires_at > ?1 AND bucket >= ?2 AND bucket <= ?3"
				       " AND site = ?4 ORDER BY site, bucket"
				     : "SELECT site, bucket, beat_ms, writer FROM site_heartbeats"
				       " WHERE expires_at > ?1 AND bucket >= ?2 AND bucket <= ?3"
				       " ORDER BY site, bucket",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	sqlite3_bind_int64(stmt, 2, from_ms / GEODB_HEARTBEAT_BUCKET_MS);
	sqlite3_bind_int64(stmt, 3, to_ms / GEODB_HEARTBEAT_BUCKET_MS);
	if (site != NULL)
		sqlite3_bind_text(stmt, 4, site, -1, SQLITE_STATIC);
	return collect(db, stmt, sizeof(**rows_r), read_heartbeat_row, (void **)rows_r, count_r,
		       error_r);
}

static int sqlite_site_reachability_put(struct geodb *geo,
					const struct geodb_site_reachability *row,
					unsigned ttl_secs, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	if (expire_rows(db, "site_reachability", error_r) < 0)
		return -1;
	sqlite3_stmt *stmt = prepare(
		db,
		"INSERT INTO site_reachability (observer_site, target_site, reachable,"
		" since_ms, observed_ms, written_by, expires_at)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(observer_site, target_site)"
		" DO UPDATE SET reachable = ?3, since_ms = ?4, observed_ms = ?5,"
		" written_by = ?6, expires_at = ?7",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, row->observer_site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, row->target_site, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, 3, row->reachable ? 1 : 0);
	sqlite3_bind_int64(stmt, 4, row->since_ms);
	sqlite3_bind_int64(stmt, 5, row->observed_ms);
	sqlite3_bind_text(stmt, 6, db->writer, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 7, now_seconds() + ttl_secs);
	int changes = step_done(db, stmt, "recording a site's reachability", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static void read_reachability_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_site_reachability *r = item;
	memset(r, 0, sizeof(*r));
	copy_text(r->observer_site, sizeof(r->observer_site), stmt, 0);
	copy_text(r->target_site, sizeof(r->target_site), stmt, 1);
	r->reachable = sqlite3_column_int(stmt, 2) != 0;
	r->since_ms = sqlite3_column_int64(stmt, 3);
	r->observed_ms = sqlite3_column_int64(stmt, 4);
	copy_text(r->written_by, sizeof(r->written_by), stmt, 5);
}

static int sqlite_site_reachability_list(struct geodb *geo, const char *observer_site,
					 struct geodb_site_reachability **rows_r, size_t *count_r,
					 const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db,
		observer_site != NULL
			? "SELECT observer_site, target_site, reachable, since_ms, observed_ms,"
			  " written_by FROM site_reachability WHERE expires_at > ?1"
			  " AND observer_site = ?2 ORDER BY observer_site, target_site"
			: "SELECT observer_site, target_site, reachable, since_ms, observed_ms,"
			  " written_by FROM site_reachability WHERE expires_at > ?1"
			  " ORDER BY observer_site, target_site",
		error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now_seconds());
	if (observer_site != NULL)
		sqlite3_bind_text(stmt, 2, observer_site, -1, SQLITE_STATIC);
	return collect(db, stmt, sizeof(**rows_r), read_reachability_row, (void **)rows_r, count_r,
		       error_r);
}

#define FAILOVER_COLUMNS                                                             \
	"group_id, writer_site, target_site, target_backend, reason, written_at_ms," \
	" home_epoch, written_by"

/* Stores cell (replacing the group's) as written by written_by. */
static int failover_write(struct sqldb *db, const struct geodb_group_failover *cell,
			  const char *written_by, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT OR REPLACE INTO group_failover (" FAILOVER_COLUMNS
				     ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, cell->group_id);
	sqlite3_bind_text(stmt, 2, cell->writer_site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, cell->target_site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, cell->target_backend, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, cell->reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 6, cell->written_at_ms);
	sqlite3_bind_int64(stmt, 7, (sqlite3_int64)cell->home_epoch);
	sqlite3_bind_text(stmt, 8, written_by, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "writing a failover cell", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static int sqlite_group_failover_put(struct geodb *geo, const struct geodb_group_failover *cell,
				     const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	return failover_write(db, cell, db->writer, error_r);
}

static void read_failover_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_group_failover *cell = item;
	memset(cell, 0, sizeof(*cell));
	cell->group_id = (unsigned)sqlite3_column_int64(stmt, 0);
	copy_text(cell->writer_site, sizeof(cell->writer_site), stmt, 1);
	copy_text(cell->target_site, sizeof(cell->target_site), stmt, 2);
	copy_text(cell->target_backend, sizeof(cell->target_backend), stmt, 3);
	copy_text(cell->reason, sizeof(cell->reason), stmt, 4);
	cell->written_at_ms = sqlite3_column_int64(stmt, 5);
	cell->home_epoch = (uint64_t)sqlite3_column_int64(stmt, 6);
	copy_text(cell->written_by, sizeof(cell->written_by), stmt, 7);
}

static int sqlite_group_failover_get(struct geodb *geo, unsigned group_id,
				     struct geodb_group_failover *cell_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db, "SELECT " FAILOVER_COLUMNS " FROM group_failover WHERE group_id = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, group_id);
	int rc = sqlite3_step(stmt), ret;
	if (rc == SQLITE_ROW) {
		read_failover_row(stmt, cell_r);
		ret = 1;
	} else if (rc == SQLITE_DONE) {
		ret = 0;
	} else {
		ret = sql_fail(db, error_r, "reading a failover cell");
	}
	sqlite3_finalize(stmt);
	return ret;
}

static int sqlite_group_failover_put_if(struct geodb *geo, const struct geodb_group_failover *cell,
					struct geodb_group_failover *stored_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	/* the read and the write under one write lock */
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	struct geodb_group_failover current;
	int found = sqlite_group_failover_get(geo, cell->group_id, &current, error_r);
	int ret = -1;
	if (found > 0 && strcmp(current.writer_site, cell->writer_site) != 0) {
		*stored_r = current;
		ret = 0;
	} else if (found >= 0 && failover_write(db, cell, db->writer, error_r) == 0) {
		*stored_r = *cell;
		snprintf(stored_r->written_by, sizeof(stored_r->written_by), "%s", db->writer);
		ret = 1;
	}
	if (ret < 0) {
		exec(db, "ROLLBACK;", &(const char *){NULL});
		return -1;
	}
	if (exec(db, "COMMIT;", error_r) < 0)
		return -1;
	return ret;
}

static int sqlite_group_failover_release(struct geodb *geo, unsigned group_id,
					 const char *writer_site, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db, "DELETE FROM group_failover WHERE group_id = ? AND writer_site = ?", error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, group_id);
	sqlite3_bind_text(stmt, 2, writer_site, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "releasing a failover cell", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : (changes > 0 ? 1 : 0);
}

static int sqlite_group_failover_list(struct geodb *geo, struct geodb_group_failover **cells_r,
				      size_t *count_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(
		db, "SELECT " FAILOVER_COLUMNS " FROM group_failover ORDER BY group_id", error_r);
	if (stmt == NULL)
		return -1;
	return collect(db, stmt, sizeof(**cells_r), read_failover_row, (void **)cells_r, count_r,
		       error_r);
}

#define FORCE_MOVE_COLUMNS "site, id, percent, destinations, started_ms, written_by"

static int force_move_write(struct sqldb *db, const struct geodb_site_force_move *move,
			    const char *written_by, const char **error_r)
{
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT OR REPLACE INTO site_force_moves (" FORCE_MOVE_COLUMNS
				     ") VALUES (?, ?, ?, ?, ?, ?)",
				     error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, move->site, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, move->id);
	sqlite3_bind_int(stmt, 3, (int)move->percent);
	sqlite3_bind_text(stmt, 4, move->destinations, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, move->started_ms);
	sqlite3_bind_text(stmt, 6, written_by, -1, SQLITE_STATIC);
	int changes = step_done(db, stmt, "starting a force move", error_r);
	sqlite3_finalize(stmt);
	return changes < 0 ? -1 : 0;
}

static int sqlite_site_force_move_start(struct geodb *geo, const struct geodb_site_force_move *move,
					const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	return force_move_write(db, move, db->writer, error_r);
}

static int sqlite_site_force_move_stop(struct geodb *geo, const char *site, int64_t id,
				       unsigned *stopped_r, const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt =
		prepare(db,
			id != 0 ? "DELETE FROM site_force_moves WHERE site = ?1 AND id = ?2"
				: "DELETE FROM site_force_moves WHERE site = ?1",
			error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, site, -1, SQLITE_STATIC);
	if (id != 0)
		sqlite3_bind_int64(stmt, 2, id);
	int changes = step_done(db, stmt, "stopping force moves", error_r);
	sqlite3_finalize(stmt);
	if (changes < 0)
		return -1;
	*stopped_r = (unsigned)changes;
	return 0;
}

static void read_force_move_row(sqlite3_stmt *stmt, void *item)
{
	struct geodb_site_force_move *move = item;
	memset(move, 0, sizeof(*move));
	copy_text(move->site, sizeof(move->site), stmt, 0);
	move->id = sqlite3_column_int64(stmt, 1);
	move->percent = (unsigned)sqlite3_column_int(stmt, 2);
	copy_text(move->destinations, sizeof(move->destinations), stmt, 3);
	move->started_ms = sqlite3_column_int64(stmt, 4);
	copy_text(move->written_by, sizeof(move->written_by), stmt, 5);
}

static int sqlite_site_force_move_list(struct geodb *geo, const char *site,
				       struct geodb_site_force_move **moves_r, size_t *count_r,
				       const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	sqlite3_stmt *stmt = prepare(db,
				     site != NULL ? "SELECT " FORCE_MOVE_COLUMNS
						    " FROM site_force_moves WHERE site = ?"
						    " ORDER BY site, id"
						  : "SELECT " FORCE_MOVE_COLUMNS
						    " FROM site_force_moves ORDER BY site, id",
				     error_r);
	if (stmt == NULL)
		return -1;
	if (site != NULL)
		sqlite3_bind_text(stmt, 1, site, -1, SQLITE_STATIC);
	return collect(db, stmt, sizeof(**moves_r), read_force_move_row, (void **)moves_r, count_r,
		       error_r);
}

/* ---- the LocalDB file ---- */

/* The snapshot's heartbeat rows, which never expire in the file: it is a
 * copy of one snapshot, whose failover cells do not expire either, and a
 * cell whose heartbeats had gone would turn from void to standing (rule 4
 * of brain/site.h) in a daemon that starts from the file. */
static int store_heartbeats(struct sqldb *db, const struct geodb_snapshot *snap,
			    const char **error_r)
{
	if (snap->heartbeat_count == 0)
		return 0;
	sqlite3_stmt *stmt =
		prepare(db,
			"INSERT OR REPLACE INTO site_heartbeats (site, bucket, beat_ms,"
			" writer, expires_at) VALUES (?, ?, ?, ?, ?)",
			error_r);
	if (stmt == NULL)
		return -1;
	for (size_t i = 0; i < snap->heartbeat_count; i++) {
		const struct geodb_site_heartbeat *hb = &snap->heartbeats[i];
		sqlite3_reset(stmt);
		sqlite3_bind_text(stmt, 1, hb->site, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, hb->bucket);
		sqlite3_bind_int64(stmt, 3, hb->beat_ms);
		sqlite3_bind_text(stmt, 4, hb->writer, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 5, INT64_MAX);
		if (step_done(db, stmt, "storing a heartbeat (table site_heartbeats)", error_r) <
		    0) {
			sqlite3_finalize(stmt);
			return -1;
		}
	}
	sqlite3_finalize(stmt);
	return 0;
}

static int store_rows(struct sqldb *db, const struct geodb_snapshot *snap, const char **error_r)
{
	static const char *const clear =
		"DELETE FROM sites; DELETE FROM backends; DELETE FROM groups; DELETE FROM users;"
		" DELETE FROM group_failover; DELETE FROM site_force_moves;"
		" DELETE FROM site_heartbeats;";
	if (exec(db, clear, error_r) < 0)
		return -1;
	sqlite3_stmt *stmt = prepare(db,
				     "INSERT INTO sites (name, status, tags, load_balancer, "
				     "updated_by, updated_at) VALUES (?, ?, ?, ?, ?, 0)",
				     error_r);
	if (stmt == NULL)
		return -1;
	for (size_t i = 0; i < snap->site_count; i++) {
		const struct geodb_site *site = &snap->sites[i];
		sqlite3_reset(stmt);
		sqlite3_bind_text(stmt, 1, site->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, site_status_name(site->status), -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, site->tags, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 4, site->load_balancer, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 5, db->writer, -1, SQLITE_STATIC);
		if (step_done(db, stmt, "storing a site", error_r) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
	}
	sqlite3_finalize(stmt);
	stmt = prepare(db,
		       "INSERT INTO backends (" BACKEND_COLUMNS
		       ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		       error_r);
	if (stmt == NULL)
		return -1;
	for (size_t i = 0; i < snap->backend_count; i++) {
		const struct geodb_backend *b = &snap->backends[i];
		sqlite3_reset(stmt);
		sqlite3_bind_text(stmt, 1, b->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, b->site, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, b->address, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 4, backend_status_name(b->status), -1, SQLITE_STATIC);
		sqlite3_bind_int(stmt, 5, (int)b->load_factor);
		sqlite3_bind_text(stmt, 6, b->updated_by, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 7, b->updated_at);
		sqlite3_bind_text(stmt, 8, health_mark_name(b->mark), -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 9, b->mark_since);
		sqlite3_bind_text(stmt, 10, b->mark_reason, -1, SQLITE_STATIC);
		if (step_done(db, stmt, "storing a backend", error_r) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
	}
	sqlite3_finalize(stmt);
	stmt = prepare(db,
		       "INSERT INTO groups (" GROUP_COLUMNS
		       ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		       error_r);
	if (stmt == NULL)
		return -1;
	for (size_t i = 0; i < snap->group_row_count; i++) {
		const struct geodb_group *g = &snap->groups[i];
		sqlite3_reset(stmt);
		sqlite3_bind_int64(stmt, 1, g->group_id);
		sqlite3_bind_text(stmt, 2, g->site, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, g->backend, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, (sqlite3_int64)g->epoch);
		sqlite3_bind_text(stmt, 5, g->written_by, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 6, g->written_at);
		sqlite3_bind_text(stmt, 7, g->alt_backend, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 8, g->move_to, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 9, g->move_started_ms);
		sqlite3_bind_text(stmt, 10, g->move_reason, -1, SQLITE_STATIC);
		sqlite3_bind_int(stmt, 11, g->sticky ? 1 : 0);
		sqlite3_bind_int64(stmt, 12, g->moved_at_ms);
		char history[GEODB_HISTORY_TEXT_MAX];
		geodb_history_format(g, history, sizeof(history));
		sqlite3_bind_text(stmt, 13, history, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(stmt, 14, g->failover_site, -1, SQLITE_STATIC);
		if (step_done(db, stmt, "storing a group", error_r) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
	}
	sqlite3_finalize(stmt);
	stmt = prepare(db, "INSERT INTO users (" USER_COLUMNS ") VALUES (?, ?, ?, ?, ?)", error_r);
	if (stmt == NULL)
		return -1;
	for (size_t i = 0; i < snap->user_count; i++) {
		const struct geodb_user *u = &snap->users[i];
		sqlite3_reset(stmt);
		sqlite3_bind_text(stmt, 1, u->username, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, u->group_id);
		sqlite3_bind_text(stmt, 3, u->written_by, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, u->written_at);
		sqlite3_bind_int64(stmt, 5, u->hold_until_ms);
		if (step_done(db, stmt, "storing a user", error_r) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
	}
	sqlite3_finalize(stmt);
	for (size_t i = 0; i < snap->failover_count; i++) {
		if (failover_write(db, &snap->failovers[i], snap->failovers[i].written_by,
				   error_r) < 0)
			return -1;
	}
	for (size_t i = 0; i < snap->force_move_count; i++) {
		if (force_move_write(db, &snap->force_moves[i], snap->force_moves[i].written_by,
				     error_r) < 0)
			return -1;
	}
	if (store_heartbeats(db, snap, error_r) < 0)
		return -1;
	if (snap->group_count != 0) {
		char sql[160];
		snprintf(sql, sizeof(sql),
			 "INSERT INTO meta (key, value) VALUES ('group_count', '%u') ON CONFLICT "
			 "DO UPDATE SET value = excluded.value;",
			 snap->group_count);
		if (exec(db, sql, error_r) < 0)
			return -1;
	}
	return 0;
}

static int sqlite_snapshot_store(struct geodb *geo, const struct geodb_snapshot *snap,
				 const char **error_r)
{
	struct sqldb *db = (struct sqldb *)geo;
	if (exec(db, "BEGIN IMMEDIATE;", error_r) < 0)
		return -1;
	if (store_rows(db, snap, error_r) < 0) {
		exec(db, "ROLLBACK;", &(const char *){NULL});
		return -1;
	}
	return exec(db, "COMMIT;", error_r);
}

const struct geodb_driver geodb_driver_sqlite = {
	.snapshot_store = sqlite_snapshot_store,
	.name = "sqlite",
	.prefix = "sqlite:",
	.open = sqlite_open,
	.spec_check = sqlite_spec_check,
	.close = sqlite_close,
	.init = sqlite_init,
	.schema_text = sqlite_schema_text,
	.snapshot_read = sqlite_snapshot_read,
	.read_begin = sqlite_read_begin,
	.read_end = sqlite_read_end,
	.changed = sqlite_changed,
	.check_group_count = sqlite_check_group_count,
	.site_add = sqlite_site_add,
	.site_update = sqlite_site_update,
	.site_remove = sqlite_site_remove,
	.site_get = sqlite_site_get,
	.site_list = sqlite_site_list,
	.backend_add = sqlite_backend_add,
	.backend_update = sqlite_backend_update,
	.backend_remove = sqlite_backend_remove,
	.backend_get = sqlite_backend_get,
	.backend_list = sqlite_backend_list,
	.backend_loads = sqlite_backend_loads,
	.group_get = sqlite_group_get,
	.group_assign_if_absent = sqlite_group_assign_if_absent,
	.group_set = sqlite_group_set,
	.group_cas = sqlite_group_cas,
	.group_list = sqlite_group_list,
	.group_set_sticky = sqlite_group_set_sticky,
	.user_get = sqlite_user_get,
	.user_set_group = sqlite_user_set_group,
	.user_move = sqlite_user_move,
	.user_delete = sqlite_user_delete,
	.user_list = sqlite_user_list,
	.user_last_backend = sqlite_user_last_backend,
	.user_last_backend_get = sqlite_user_last_backend_get,
	.lease_acquire = sqlite_lease_acquire,
	.lease_release = sqlite_lease_release,
	.health_put = sqlite_health_put,
	.health_list = sqlite_health_list,
	.backend_mark = sqlite_backend_mark,
	.move_ack_put = sqlite_move_ack_put,
	.move_ack_list = sqlite_move_ack_list,
	.group_load_put = sqlite_group_load_put,
	.group_load_list = sqlite_group_load_list,
	.site_heartbeat_put = sqlite_site_heartbeat_put,
	.site_heartbeat_list = sqlite_site_heartbeat_list,
	.site_reachability_put = sqlite_site_reachability_put,
	.site_reachability_list = sqlite_site_reachability_list,
	.group_failover_put = sqlite_group_failover_put,
	.group_failover_put_if = sqlite_group_failover_put_if,
	.group_failover_release = sqlite_group_failover_release,
	.group_failover_get = sqlite_group_failover_get,
	.group_failover_list = sqlite_group_failover_list,
	.site_force_move_start = sqlite_site_force_move_start,
	.site_force_move_stop = sqlite_site_force_move_stop,
	.site_force_move_list = sqlite_site_force_move_list,
};
