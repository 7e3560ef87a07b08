/* geodb.h - the GeoDB: the cluster state shared by every host.
 *
 * Tables (geodb_sqlite.c has the SQL, geodb_cassandra.c the CQL):
 *   sites     name, status, tags, load_balancer
 *   backends  name, site, address, status, load_factor
 *   backends  ... and the controller's health mark: mark, mark_since, mark_reason
 *   groups    group_id -> site, backend, epoch, written_by, written_at,
 *             alt_backend (pre-chosen failover target), and a move in
 *             progress: move_to, move_started, move_reason; for balancing
 *             (brain/balance.h): sticky (the operator pinned it), moved_at
 *             (its last switch to another backend, unix ms) and history
 *             (the backends it was on before, newest first, as text
 *             "b2@1700000000000,b1@1690000000000": backend@left unix ms);
 *             backend '' is an unassigned group whose backend was removed
 *             (geodb_backend_remove()), the same as no row
 *   users     username -> group_id (overrides only; most users are not stored),
 *             written_by, written_at, and hold_until: "this user was just
 *             moved to another group; proxies hold the user's logins until
 *             then, while every proxy sees the move and ends the user's
 *             sessions on the old backend" (unix ms; 0 none)
 *   leases    name -> holder, expiry (the controller lease)
 *   health    (backend, observer) -> ok, detail, observed_at
 *   move_acks (group_id, observer) -> epoch, acked_at: "this daemon has
 *             closed its sessions of the group for the move of that epoch"
 *   group_load (group_id, observer) -> sessions, logins, reported_at: what
 *             one daemon sends to the group (open sessions, logins since its
 *             previous report), expiring like health and move_acks
 *   user_backend username -> backend, recorded_at: the backend the user
 *             last logged in on (not in the snapshot: one row per user)
 *   meta      schema_version, group_count
 *
 * Several sites (version 4; ARCHITECTURE.md, "Sites and split brain").
 * No cell is written by two sites: each group's home cell (the groups row,
 * with its failover_site) is its home site's, its failover cell is its
 * failover site's, a site's heartbeats, reachability and force moves are
 * that site's (or an operator's):
 *   groups.failover_site  the group's pre-chosen failover site ("" none),
 *             part of the home cell, written like alt_backend
 *   site_heartbeats (site, bucket) -> beat_ms, writer, where bucket is
 *             beat_ms / GEODB_HEARTBEAT_BUCKET_MS: the newest beat of the
 *             site in that bucket; expiring after
 *             GEODB_HEARTBEAT_RETENTION_SECS
 *   site_reachability (observer_site, target_site) -> reachable, since_ms,
 *             observed_ms, written_by: what a site's controller sees of
 *             another site; expiring like health
 *   group_failover group_id -> writer_site, target_site, target_backend,
 *             reason, written_at_ms, home_epoch, written_by: the failover
 *             cell (in the snapshot)
 *   site_force_moves (site, id) -> percent, destinations, started_ms,
 *             written_by: `site force-move` (in the snapshot)
 * Times in these tables are unix milliseconds.
 *
 * Every write carries who wrote it (the writer name given at open) and when,
 * and group assignments carry an epoch that grows with every change, so that
 * later the two halves of a split brain can be merged.
 *
 * Two drivers behind one interface (geodb_driver.h), chosen by the spec:
 *   sqlite:PATH      embedded; several processes on one host share the file
 *                    (WAL mode, busy timeout); the schema is created on open.
 *   cassandra:hosts=H1,H2;port=9042;keyspace=mailcluster;local_dc=dc1;...
 *                    Apache Cassandra over our CQL v4 client; the schema is
 *                    created by geodb_init() (`mailcluster geodb init`).
 * Both mean the same thing: tests/geodb/conformance.c runs the same checks
 * against each.
 *
 * The calls below are synchronous (Cassandra's run a private event loop
 * until the answer is in): the CLI and tests use them, and the daemon at
 * most at start-up.  The daemon's event loop uses the asynchronous calls
 * (geodb_attach() and the *_async functions), whose callbacks always run
 * later from that loop, never inside the call that started them.
 * Getters return 1 found, 0 not found, -1 error; errors are sentences that
 * start with "geodb: " or name the object ("backend b9 does not exist").
 */
#ifndef GEODB_H
#define GEODB_H

#include "brain/balance.h"
#include "brain/health.h"
#include "brain/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEODB_SCHEMA_VERSION 4

/* Site heartbeats: one row per site per bucket of this many milliseconds,
 * kept this long (the default of geodb_site_heartbeat_put()). */
#define GEODB_HEARTBEAT_BUCKET_MS 10000
#define GEODB_HEARTBEAT_RETENTION_SECS (7 * 24 * 3600)
/* The reasons of a failover cell. */
#define GEODB_FAILOVER_REASON_OUTAGE "outage"
#define GEODB_FAILOVER_REASON_EVACUATE "evacuate"
#define GEODB_FAILOVER_REASON_FORCE "force"
/* A force move's destinations: comma-separated site names. */
#define GEODB_FORCE_MOVE_DESTINATIONS_MAX 255

struct geodb;
struct event_base;

struct geodb_site {
	char name[NAME_MAX_LEN + 1];
	enum site_status status;
	char tags[256]; /* comma-separated */
	char load_balancer[ADDRESS_MAX_LEN + 1];
};

struct geodb_backend {
	char name[NAME_MAX_LEN + 1];
	char site[NAME_MAX_LEN + 1];
	char address[ADDRESS_MAX_LEN + 1];
	enum backend_status status;
	unsigned load_factor; /* 0..100 */
	char updated_by[NAME_MAX_LEN + 1];
	int64_t updated_at; /* unix seconds */
	/* the controller's mark (brain/health.h), separate from the operator's
	 * status: geodb_backend_update() never changes it, geodb_backend_mark()
	 * changes nothing else.  A new backend is marked up. */
	enum health_mark mark;
	int64_t mark_since; /* unix seconds; 0: never marked */
	char mark_reason[200];
};

/* A backend a group was on before, and when it left it.  In a group's
 * history each backend appears once (its latest stay), at most
 * BALANCE_HISTORY of them; backend "" ends the list. */
struct geodb_group_history {
	char backend[NAME_MAX_LEN + 1];
	int64_t left_ms; /* unix milliseconds */
};

struct geodb_group {
	unsigned group_id;
	char site[NAME_MAX_LEN + 1];
	char backend[NAME_MAX_LEN + 1];
	uint64_t epoch;
	char written_by[NAME_MAX_LEN + 1];
	int64_t written_at;
	/* the pre-chosen failover target in the same site; "" none */
	char alt_backend[NAME_MAX_LEN + 1];
	/* the pre-chosen failover site (another site; only its controller may
	 * write the group's failover cell); "" none.  Part of the home cell:
	 * written like alt_backend, through geodb_group_cas(). */
	char failover_site[NAME_MAX_LEN + 1];
	/* a move in progress (brain/move.h): "" none */
	char move_to[NAME_MAX_LEN + 1];
	int64_t move_started_ms; /* unix milliseconds */
	char move_reason[96];
	/* balancing (brain/balance.h).  sticky: the operator pinned the group
	 * to its backend ("--sticky-backend"), balancing never moves it.  The
	 * drivers keep moved_at_ms and history themselves: every write that
	 * switches the group to another backend (geodb_group_set(),
	 * geodb_group_cas()) records the backend it leaves at the head of
	 * history with left_ms = now and sets moved_at_ms = now. */
	bool sticky;
	int64_t moved_at_ms; /* unix milliseconds of its last switch; 0: never */
	struct geodb_group_history history[BALANCE_HISTORY]; /* newest first */
};

struct geodb_user {
	char username[USERNAME_MAX_LEN + 1];
	unsigned group_id;
	char written_by[NAME_MAX_LEN + 1];
	int64_t written_at;
	/* the user was just moved to another group (geodb_user_move()):
	 * proxies hold this user's logins until then, while every proxy sees
	 * the move and ends the user's sessions on the old backend.  Unix
	 * milliseconds; 0: no hold. */
	int64_t hold_until_ms;
};

/* Per-backend count of assigned groups, for placement. */
struct geodb_backend_load {
	char backend[NAME_MAX_LEN + 1];
	unsigned groups;
};

/* A lease (leader election): held by holder until expires_at. */
struct geodb_lease {
	char name[NAME_MAX_LEN + 1];
	char holder[NAME_MAX_LEN + 1];
	int64_t expires_at; /* unix seconds */
};

/* One daemon's latest observation of one backend. */
struct geodb_health {
	char backend[NAME_MAX_LEN + 1];
	char observer[NAME_MAX_LEN + 1];
	bool ok;
	char detail[256];
	int64_t since;       /* unix seconds: when the current ok/failing streak began */
	int64_t observed_at; /* unix seconds */
};

/* One daemon's acknowledgement of a group's move (brain/move.h). */
struct geodb_move_ack {
	unsigned group_id;
	char observer[NAME_MAX_LEN + 1];
	uint64_t epoch;   /* the group's epoch when the move started */
	int64_t acked_at; /* unix seconds */
};

/* What one daemon sends to one group (the balancer's weight of it). */
struct geodb_group_load {
	unsigned group_id;
	char observer[NAME_MAX_LEN + 1]; /* the daemon */
	unsigned sessions;               /* its sessions of the group open now */
	unsigned logins;                 /* logins to the group since its previous report */
	int64_t reported_at;             /* unix seconds, as the daemon gave it */
};

/* A site's heartbeat bucket: the newest beat of the site in it. */
struct geodb_site_heartbeat {
	char site[NAME_MAX_LEN + 1];
	int64_t bucket;                /* beat_ms / GEODB_HEARTBEAT_BUCKET_MS */
	int64_t beat_ms;               /* unix milliseconds */
	char writer[NAME_MAX_LEN + 1]; /* the daemon that beat */
};

/* What observer_site's controller sees of target_site. */
struct geodb_site_reachability {
	char observer_site[NAME_MAX_LEN + 1];
	char target_site[NAME_MAX_LEN + 1];
	bool reachable;
	int64_t since_ms;                  /* when the current reachable/unreachable streak began */
	int64_t observed_ms;               /* when it was last seen so */
	char written_by[NAME_MAX_LEN + 1]; /* the writer of the handle that put it */
};

/* A group's failover cell: writer_site (the group's failover site) serves
 * it on target_backend of target_site instead of its home cell, by
 * ARCHITECTURE's rule.  home_epoch is the home cell's epoch it overrode. */
struct geodb_group_failover {
	unsigned group_id;
	char writer_site[NAME_MAX_LEN + 1];
	char target_site[NAME_MAX_LEN + 1];
	char target_backend[NAME_MAX_LEN + 1];
	char reason[16];       /* GEODB_FAILOVER_REASON_* */
	int64_t written_at_ms; /* unix ms; 0 at a put: now */
	uint64_t home_epoch;
	char written_by[NAME_MAX_LEN + 1]; /* the writer of the handle that put it */
};

/* `site force-move`: the users of site whose hash of (id, user) falls under
 * percent move to one of destinations at their next login. */
struct geodb_site_force_move {
	char site[NAME_MAX_LEN + 1];
	int64_t id;                                               /* > 0 */
	unsigned percent;                                         /* 0..100 */
	char destinations[GEODB_FORCE_MOVE_DESTINATIONS_MAX + 1]; /* "dc2,dc3" */
	int64_t started_ms;                                       /* unix ms */
	char written_by[NAME_MAX_LEN + 1]; /* the writer of the handle that started it */
};

/* Everything a daemon routes by, read in one go (the LocalDB's source). */
struct geodb_snapshot {
	unsigned schema_version; /* 0: not recorded */
	unsigned group_count;    /* 0: not recorded yet */
	struct geodb_site *sites;
	size_t site_count;
	struct geodb_backend *backends; /* sorted by name */
	size_t backend_count;
	struct geodb_group *groups; /* sorted by group_id */
	size_t group_row_count;
	struct geodb_user *users; /* sorted by username */
	size_t user_count;
	struct geodb_group_failover *failovers; /* sorted by group_id */
	size_t failover_count;
	struct geodb_site_force_move *force_moves; /* sorted by site, id */
	size_t force_move_count;
	/* The heartbeat rows (table site_heartbeats) the failover cells'
	 * verdicts need, so that a daemon judges rule 4 of brain/site.h
	 * (site_alive_at()) from its snapshot alone: for every cell of
	 * failovers, the rows of its group's home site (the site of the
	 * group's row in groups; nothing for a cell whose group has no row or
	 * an empty site) of buckets bucket(written_at_ms) - 1 and
	 * bucket(written_at_ms), bucket(t) = t / GEODB_HEARTBEAT_BUCKET_MS,
	 * those that exist and have not expired.  Each row once, sorted by
	 * site, then bucket (geodb_sort_heartbeats()).  Rows of other buckets
	 * may be absent: the drivers read only the buckets the cells need,
	 * never a site's whole week of them, and with no cells they read no
	 * heartbeats at all. */
	struct geodb_site_heartbeat *heartbeats;
	size_t heartbeat_count;
};
void geodb_snapshot_free(struct geodb_snapshot *snap);

/* Sorting helpers: drivers use them so that snapshots and lists come out in
 * the same order whatever the database's own order. */
void geodb_sort_sites(struct geodb_site *sites, size_t count);
void geodb_sort_backends(struct geodb_backend *backends, size_t count);
void geodb_sort_groups(struct geodb_group *groups, size_t count);
void geodb_sort_users(struct geodb_user *users, size_t count);
void geodb_sort_failovers(struct geodb_group_failover *cells, size_t count);
void geodb_sort_force_moves(struct geodb_site_force_move *moves, size_t count);
void geodb_sort_heartbeats(struct geodb_site_heartbeat *rows, size_t count);

/* Opens spec (see above).  writer names this process in every row it
 * writes.  busy_timeout_ms bounds how long a call waits for another
 * process's write lock (SQLite) or for a node's answer (Cassandra, when
 * the spec sets no request_timeout).  Opening Cassandra checks the spec but
 * does not connect: the first call does. */
int geodb_open(const char *spec, const char *writer, unsigned busy_timeout_ms, struct geodb **db_r,
	       const char **error_r);
void geodb_close(struct geodb **db);
/* Checks a spec without opening anything (configuration parsing). */
int geodb_spec_check(const char *spec, const char **error_r);
/* "sqlite" or "cassandra". */
const char *geodb_driver_name(const struct geodb *db);
const char *geodb_writer(const struct geodb *db);

/* Creates the schema, or upgrades an older one, and records
 * GEODB_SCHEMA_VERSION.  *from_r is the version found (0: none).  For
 * Cassandra the keyspace is created with NetworkTopologyStrategy (the
 * spec's replication=dc1:3,dc2:3, else every data centre the cluster
 * reports with min(3, its nodes) replicas). */
int geodb_init(struct geodb *db, unsigned *from_r, const char **error_r);
/* The schema as the driver's language (SQL or CQL), for `geodb schema`. */
const char *geodb_schema_text(struct geodb *db);

/* Whole-state read: sites, backends, groups, user overrides, failover
 * cells, the heartbeat rows those cells need (see struct geodb_snapshot),
 * force moves, meta. */
int geodb_snapshot_read(struct geodb *db, struct geodb_snapshot *snap_r, const char **error_r);
/* Replaces sites, backends, groups, users, failover cells, heartbeat rows,
 * force moves and group_count by snap's, rows as they are (writers and
 * epochs kept), in one transaction: how the LocalDB file is written.  The
 * heartbeat rows stored do not expire (a copy of one snapshot: its cells
 * do not either, and a cell whose heartbeats were gone would turn from
 * void to standing); geodb_snapshot_read() of the file returns those of
 * them that its cells need.  SQLite only. */
int geodb_snapshot_store(struct geodb *db, const struct geodb_snapshot *snap, const char **error_r);

/* A read transaction around several reads: one lock round-trip instead of
 * one per statement (what route_user() does on every login).  Writes must
 * not happen inside it. */
int geodb_read_begin(struct geodb *db, const char **error_r);
void geodb_read_end(struct geodb *db);

/* Whether anything was committed to the GeoDB (by any process) since the
 * last call: lets a cache skip every query while nothing changed.  For
 * SQLite it compares the WAL-index header in the mapped -shm file (see
 * https://www.sqlite.org/walformat.html), which every commit rewrites: no
 * system call.  Where that cannot be watched it always says true, and
 * geodb_can_watch() says false (Cassandra: refresh on a timer instead). */
bool geodb_changed(struct geodb *db);
bool geodb_can_watch(const struct geodb *db);

/* Records group_count on first use; afterwards refuses a different one,
 * because changing it would move almost every user. */
int geodb_check_group_count(struct geodb *db, unsigned group_count, const char **error_r);

int geodb_site_add(struct geodb *db, const struct geodb_site *site, const char **error_r);
int geodb_site_update(struct geodb *db, const struct geodb_site *site, const char **error_r);
int geodb_site_remove(struct geodb *db, const char *name, const char **error_r);
int geodb_site_get(struct geodb *db, const char *name, struct geodb_site *site_r,
		   const char **error_r);
int geodb_site_list(struct geodb *db, struct geodb_site **sites_r, size_t *count_r,
		    const char **error_r);

/* Adds in standby with load factor 100. */
int geodb_backend_add(struct geodb *db, const char *site, const char *name, const char *address,
		      const char **error_r);
int geodb_backend_update(struct geodb *db, const struct geodb_backend *backend,
			 const char **error_r);
/* Refuses an online backend; unassigns the groups of the removed one and
 * returns their number in *groups_unassigned_r.  An unassigned group keeps
 * its row, so that its history remembers the backend (placement prefers a
 * backend that held the group recently): backend "" (the site stays), a
 * move in progress ended, alt_backend cleared if it is the removed
 * backend, epoch + 1, this writer and now as written_by / written_at,
 * sticky kept, and the removed backend at the head of history with
 * left_ms = now and moved_at_ms = now (a switch, see struct geodb_group).
 * Such a row means what no row means: the group has no backend, the next
 * login assigns it (geodb_group_assign_if_absent()); listings and the
 * snapshot carry it, geodb_backend_loads() does not count it.  Other
 * groups forget the backend: a move to it is ended (move_to "", epoch + 1)
 * and where it is alt_backend that is cleared (the epoch stays: it is no
 * change of the assignment, and a move in progress keeps its
 * acknowledgements). */
int geodb_backend_remove(struct geodb *db, const char *name, unsigned *groups_unassigned_r,
			 const char **error_r);
int geodb_backend_get(struct geodb *db, const char *name, struct geodb_backend *backend_r,
		      const char **error_r);
/* site NULL = all sites. */
int geodb_backend_list(struct geodb *db, const char *site, struct geodb_backend **backends_r,
		       size_t *count_r, const char **error_r);
int geodb_backend_loads(struct geodb *db, struct geodb_backend_load **loads_r, size_t *count_r,
			const char **error_r);

int geodb_group_get(struct geodb *db, unsigned group_id, struct geodb_group *group_r,
		    const char **error_r);
/* Conditional assignment: stores *group if the group has no row yet (not
 * sticky, no history, moved_at_ms 0, whatever *group says), or if its row
 * is unassigned (backend "", see geodb_backend_remove()).  Over an
 * unassigned row *group's site, backend, alt_backend, failover_site and
 * move are stored
 * with epoch = the row's + 1 (epochs never go back), and the row keeps its
 * sticky, history and moved_at_ms: assigning an unassigned group is no
 * switch.  Either way *group is filled with the row that is stored
 * afterwards, and two writers racing agree: exactly one of them stores its
 * assignment and gets 1, every other gets 0 and the winner's row (SQLite:
 * one statement under the write lock; Cassandra: INSERT ... IF NOT EXISTS,
 * then for an unassigned row UPDATE ... IF backend = '' AND epoch = the
 * epoch seen, and a serial read of the row when that fails).  Returns 1 if
 * ours was stored, 0 if another won (or the group was assigned already). */
int geodb_group_assign_if_absent(struct geodb *db, struct geodb_group *group, const char **error_r);
/* Direct move: sets the group's site and backend, epoch + 1, and clears a
 * move in progress (alt_backend is kept unless it is the new backend,
 * failover_site unless it is the new site; sticky is kept).  When backend
 * is another than the stored one, that one goes to the head of history (see struct geodb_group) and
 * moved_at_ms is now.  A group without a row gets one: not sticky, no history. */
int geodb_group_set(struct geodb *db, unsigned group_id, const char *site, const char *backend,
		    const char **error_r);
/* Pins the group to its backend (sticky) or lets balancing move it again;
 * this writer and now as written_by / written_at; the epoch stays (it is
 * no change of the assignment, and a move in progress keeps its
 * acknowledgements).  Returns 1 set, 0 the group has no row (none is
 * made). */
int geodb_group_set_sticky(struct geodb *db, unsigned group_id, bool sticky, const char **error_r);
/* Compare and set, for the controller and the move protocol: if the
 * group's row exists and its epoch is expected_epoch, replaces site,
 * backend, alt_backend, failover_site, move_to, move_started_ms,
 * move_reason and sticky by
 * row's, with epoch expected_epoch + 1 and this writer and now as
 * written_by / written_at.  history and moved_at_ms are the driver's: a
 * row->backend other than the stored one records the stored one at the
 * head of history and sets moved_at_ms to now (row's are ignored).
 * *stored_r is the row stored afterwards either way (found false in
 * neither case: then the group has no row and 0 is returned with
 * stored_r->backend "").  Returns 1 applied, 0 not (another epoch, or no
 * row), -1 error.  row->group_id names the group; row->epoch is ignored. */
int geodb_group_cas(struct geodb *db, const struct geodb_group *row, uint64_t expected_epoch,
		    struct geodb_group *stored_r, const char **error_r);
int geodb_group_list(struct geodb *db, struct geodb_group **groups_r, size_t *count_r,
		     const char **error_r);

int geodb_user_get(struct geodb *db, const char *username, struct geodb_user *user_r,
		   const char **error_r);
/* Sets the user's group (creating the row), this writer and now as
 * written_by / written_at, and no hold (hold_until_ms 0). */
int geodb_user_set_group(struct geodb *db, const char *username, unsigned group_id,
			 const char **error_r);
/* Moves the user to group_id like geodb_user_set_group() and sets the
 * user's login hold until hold_until_ms (unix milliseconds; 0: none;
 * negative is refused). */
int geodb_user_move(struct geodb *db, const char *username, unsigned group_id,
		    int64_t hold_until_ms, const char **error_r);
/* The backend username last logged in on, and when (unix ms): the caller
 * records it when it changes, not on every login.  Kept in its own table
 * (user_backend), not in users, whose rows are overrides: this never
 * creates, changes or needs a users row.  backend must be a valid name,
 * at_ms not negative.  Replaces the user's previous one. */
int geodb_user_last_backend(struct geodb *db, const char *username, const char *backend,
			    int64_t at_ms, const char **error_r);
/* 1 found (backend_r, *at_ms_r), 0 none recorded (backend_r "", 0). */
int geodb_user_last_backend_get(struct geodb *db, const char *username,
				char backend_r[NAME_MAX_LEN + 1], int64_t *at_ms_r,
				const char **error_r);
/* Returns 1 if a row was deleted, 0 if there was none. */
int geodb_user_delete(struct geodb *db, const char *username, const char **error_r);
int geodb_user_list(struct geodb *db, struct geodb_user **users_r, size_t *count_r,
		    const char **error_r);

/* The controller's mark of a backend: sets mark, mark_since and
 * mark_reason and nothing else.  0 if the backend does not exist. */
int geodb_backend_mark(struct geodb *db, const char *name, enum health_mark mark,
		       int64_t mark_since, const char *reason, const char **error_r);

/* Move acknowledgements: one row per (group, observer), replaced by each
 * put, expiring after ttl_secs (at least 1). */
int geodb_move_ack_put(struct geodb *db, const struct geodb_move_ack *ack, unsigned ttl_secs,
		       const char **error_r);
/* All acknowledgements of group_id (sorted by observer). */
int geodb_move_ack_list(struct geodb *db, unsigned group_id, struct geodb_move_ack **acks_r,
			size_t *count_r, const char **error_r);

/* Group loads: observer's rows replace its previous ones of the same
 * groups (one row per (group, observer)), each expiring after ttl_secs (at
 * least 1).  count rows in one go (SQLite: one transaction; Cassandra:
 * pipelined inserts).  Every row is stored under observer (1-NAME_MAX_LEN
 * characters); the rows' own observer field is not looked at.  A daemon
 * that reported a group before and has no traffic for it now sends zeros
 * rather than nothing, or the old figures stay until they expire. */
int geodb_group_load_put(struct geodb *db, const char *observer,
			 const struct geodb_group_load *rows, size_t count, unsigned ttl_secs,
			 const char **error_r);
/* Every row that has not expired, sorted by group_id, then observer. */
int geodb_group_load_list(struct geodb *db, struct geodb_group_load **rows_r, size_t *count_r,
			  const char **error_r);

/* Leases: acquires name for holder for ttl_secs if it is free or expired,
 * or renews it if holder has it.  Returns 1 held (lease_r says until when),
 * 0 held by another (lease_r says who), -1 error. */
int geodb_lease_acquire(struct geodb *db, const char *name, const char *holder, unsigned ttl_secs,
			struct geodb_lease *lease_r, const char **error_r);
/* Releases it if holder has it: 1 released, 0 not ours. */
int geodb_lease_release(struct geodb *db, const char *name, const char *holder,
			const char **error_r);

/* Health observations: one row per (backend, observer), replaced by each
 * put; they expire after ttl_secs (at least 1; so does a lease). */
int geodb_health_put(struct geodb *db, const struct geodb_health *health, unsigned ttl_secs,
		     const char **error_r);
/* backend NULL: all backends. */
int geodb_health_list(struct geodb *db, const char *backend, struct geodb_health **health_r,
		      size_t *count_r, const char **error_r);

/* ---- several sites (schema version 4) ---- */

/* A heartbeat of site by the daemon writer at now_ms (unix ms, > 0): the
 * row of bucket now_ms / GEODB_HEARTBEAT_BUCKET_MS holds the newest beat
 * put into it (an older beat put later changes nothing), and expires
 * GEODB_HEARTBEAT_RETENTION_SECS after the put.  Only site's own
 * controller puts its heartbeats. */
int geodb_site_heartbeat_put(struct geodb *db, const char *site, const char *writer, int64_t now_ms,
			     const char **error_r);
/* The same with another retention (at least 1 second; tests). */
int geodb_site_heartbeat_put_ttl(struct geodb *db, const char *site, const char *writer,
				 int64_t now_ms, unsigned ttl_secs, const char **error_r);
/* The buckets of site (NULL: every site) that overlap [from_ms, to_ms]
 * (bucket from_ms / GEODB_HEARTBEAT_BUCKET_MS to to_ms / ...), not
 * expired, sorted by site, then bucket.  from_ms > to_ms is refused. */
int geodb_site_heartbeat_list(struct geodb *db, const char *site, int64_t from_ms, int64_t to_ms,
			      struct geodb_site_heartbeat **rows_r, size_t *count_r,
			      const char **error_r);

/* Reachability: one row per (observer_site, target_site), replaced by each
 * put, written_by this writer; expires after ttl_secs (at least 1). */
int geodb_site_reachability_put(struct geodb *db, const struct geodb_site_reachability *row,
				unsigned ttl_secs, const char **error_r);
/* observer_site NULL: every observer.  Sorted by observer, then target. */
int geodb_site_reachability_list(struct geodb *db, const char *observer_site,
				 struct geodb_site_reachability **rows_r, size_t *count_r,
				 const char **error_r);

/* Failover cells.  put replaces the group's cell whoever wrote it (only
 * the group's failover site may call it), written_by this writer and
 * written_at_ms now when cell's is 0.  reason is one of
 * GEODB_FAILOVER_REASON_*; the names must be valid. */
int geodb_group_failover_put(struct geodb *db, const struct geodb_group_failover *cell,
			     const char **error_r);
/* reason is one of GEODB_FAILOVER_REASON_*. */
bool geodb_failover_reason_is_valid(const char *reason);
/* put if the group has no cell or its cell's writer_site is cell's
 * (Cassandra: lightweight transactions at the serial consistency; SQLite:
 * one transaction).  Returns 1 written (*stored_r = cell as stored), 0
 * refused: another site's cell is there (*stored_r = that cell). */
int geodb_group_failover_put_if(struct geodb *db, const struct geodb_group_failover *cell,
				struct geodb_group_failover *stored_r, const char **error_r);
/* Release: deletes the group's cell if writer_site wrote it.  1 deleted,
 * 0 no cell or another site's. */
int geodb_group_failover_release(struct geodb *db, unsigned group_id, const char *writer_site,
				 const char **error_r);
/* 1 found, 0 none. */
int geodb_group_failover_get(struct geodb *db, unsigned group_id,
			     struct geodb_group_failover *cell_r, const char **error_r);
/* Every cell, sorted by group_id (Cassandra: in pages). */
int geodb_group_failover_list(struct geodb *db, struct geodb_group_failover **cells_r,
			      size_t *count_r, const char **error_r);

/* Force moves.  start stores (replaces) the row (move->site, move->id),
 * written_by this writer, started_ms now when move's is 0.  id > 0,
 * percent 0..100, destinations 1 or more valid site names other than
 * site, comma-separated, no repeats (that the sites exist is the
 * caller's to check). */
int geodb_site_force_move_start(struct geodb *db, const struct geodb_site_force_move *move,
				const char **error_r);
/* Stops site's force move id (0: every force move of site); *stopped_r
 * how many there were. */
int geodb_site_force_move_stop(struct geodb *db, const char *site, int64_t id, unsigned *stopped_r,
			       const char **error_r);
/* site NULL: every site.  Sorted by site, then id. */
int geodb_site_force_move_list(struct geodb *db, const char *site,
			       struct geodb_site_force_move **moves_r, size_t *count_r,
			       const char **error_r);

/* ---- asynchronous calls, for the daemon's event loop ---- */

/* Binds db to base: the *_async calls run there.  The sync calls stay
 * usable (for Cassandra they use a connection of their own and must not be
 * made from inside a callback of base's loop). */
int geodb_attach(struct geodb *db, struct event_base *base, const char **error_r);

/* An operation in flight.  geodb_op_cancel() makes sure its callback will
 * not run (the work may still complete in the GeoDB) and clears *op. */
struct geodb_op;
void geodb_op_cancel(struct geodb_op **op);

/* snap is NULL on error; otherwise the callback owns it: it was
 * malloc()ed, so free it with geodb_snapshot_free() and then free(). */
typedef void geodb_snapshot_callback(void *context, struct geodb_snapshot *snap, const char *error);
struct geodb_op *geodb_snapshot_read_async(struct geodb *db, geodb_snapshot_callback *callback,
					   void *context);

/* geodb_group_assign_if_absent(): result 1 ours stored, 0 another won, -1
 * error; stored is the row now in the GeoDB (NULL on error). */
typedef void geodb_assign_callback(void *context, int result, const struct geodb_group *stored,
				   const char *error);
struct geodb_op *geodb_group_assign_async(struct geodb *db, const struct geodb_group *group,
					  geodb_assign_callback *callback, void *context);

/* geodb_health_put(): error NULL on success. */
typedef void geodb_done_callback(void *context, const char *error);
struct geodb_op *geodb_health_put_async(struct geodb *db, const struct geodb_health *health,
					unsigned ttl_secs, geodb_done_callback *callback,
					void *context);

/* geodb_lease_acquire(): result 1 held by us (lease says until when), 0
 * held by another (lease says who), -1 error (lease NULL). */
typedef void geodb_lease_callback(void *context, int result, const struct geodb_lease *lease,
				  const char *error);
struct geodb_op *geodb_lease_acquire_async(struct geodb *db, const char *name, const char *holder,
					   unsigned ttl_secs, geodb_lease_callback *callback,
					   void *context);
/* geodb_lease_release(): error NULL on success, whether or not the lease
 * was still ours. */
struct geodb_op *geodb_lease_release_async(struct geodb *db, const char *name, const char *holder,
					   geodb_done_callback *callback, void *context);

#endif
