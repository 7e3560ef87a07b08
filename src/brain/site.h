/* site.h - whole sites failing, and the GeoDB merge after a split brain.
 *
 * Cassandra merges a split cell by cell, keeping the write with the newest
 * timestamp.  Two sites that both rewrite "group g lives on backend X" would
 * flip users back and forth after a heal, so no two sites ever write the same
 * cell:
 *
 *   home cell      (home site, backend, failover site, epoch) per group,
 *                  written only by the home site's controller or by an
 *                  operator.  Any change of it raises the epoch.  The home
 *                  controller leaves a group alone while a failover cell of
 *                  it stands (below): a new epoch would void that cell and
 *                  move the group home at once, not gradually.
 *   failover site  one per group, in the home cell, chosen by the home
 *                  site's controller (site_failover_sites()): among the
 *                  other sites that are online and have capacity (load
 *                  factors of online backends), those sharing a tag with
 *                  the home site if any do, the one with the most room: the least (load + the home
 * site's groups already given to it + 1) / capacity, ties by the placement hash of (group, site
 * name).  Only groups whose failover site is missing or can no longer take groups get a new one, at
 * most max_changes per call.  Not being reachable from the home site is no reason to replace it:
 *                  the home site would raise the epochs of groups whose
 *                  cells from that site it cannot see, voiding them on the
 *                  merge, and those groups would come home at once instead
 *                  of gradually.
 *   failover cell  one per group, written only by the group's failover site
 *                  S: (writer S, target site S, target backend chosen by S's
 *                  placement, written_ms, reason OUTAGE or EVACUATE, the home
 *                  epoch it overrides).  Released (deleted) only by S.
 *   heartbeats     every site's controller writes a row (site, bucket) for
 *                  the bucket of its clock every few seconds; bucket =
 *                  t / SITE_HEARTBEAT_BUCKET_MS.  A site was alive at t when
 *                  a row exists for bucket(t) or bucket(t) - 1
 *                  (site_alive_at()).  After a heal everyone can thus tell
 *                  whether a site was alive when a failover cell was
 *                  written, although nobody on the other side could see it
 *                  then.  Heartbeat rows must live at least as long as any
 *                  failover cell (their TTL bounds the age of a cell).
 *
 * The effective location of a group, a pure function of the converged cells
 * (site_effective_location(), the same on every host once they agree):
 *
 *   1. no failover cell                                      -> home cell;
 *   2. a cell whose home epoch is older than the home cell's  -> void: home
 *      (an operator or the home site changed the group since);
 *   3. a cell not written by the group's failover site        -> void: home;
 *   4. an OUTAGE cell written while the home site was alive by its
 *      heartbeats (a cut, not an outage)                      -> void: home;
 *   5. otherwise (OUTAGE written while the home site was silent, or
 *      EVACUATE)                                             -> the cell,
 *      until its writer releases it.
 *
 * Routing (the daemons) follows the effective location in the daemon's own
 * replica, but uses an OUTAGE cell only once the replica has held it for
 * reachability_timeout (site_cell_settled(); meanwhile it routes by the
 * version of the cell it routed by before, none: home).  Why: when a split
 * of three sites heals, the third site's replica may get the failover
 * site's cell before the home site's heartbeats that void it, and would
 * send the group's users to the failover site and back within the
 * replication delay; with the wait, the heartbeats are there when the cell
 * is first used.  Cells settle in the order they arrived, so the wait keeps
 * the failover's pace.  The price: a real outage's groups reach their
 * failover site reachability_timeout after their cell is written.
 *
 * Reachability: site S sees site B reachable while B's newest heartbeat in
 * S's replica is at most reachability_timeout old; S's controller records,
 * per other site, reachable and since (site_reachability_update()), in a
 * table every site reads.
 *
 * What the failover site S does about home site B (site_failover_decide()):
 *
 *   OUTAGE    B's operator status is online or offline (never standby or
 *             evacuate: those are the operator's), S has seen B unreachable
 *             for site_failover_delay, and so has every other site that S
 *             sees reachable and that reports on B (its record in S's
 *             replica): S writes OUTAGE cells for the groups of B whose
 *             failover site is S and that have no standing cell, lightest
 *             first (weight, then group id), at most site_failover_rate
 *             groups a second (site_pace_*: one token bucket per writing
 *             site, refilled at the rate, holding at most one second's
 *             worth); never while B's heartbeats in S's replica show B
 *             alive at that moment (a beat in this bucket or the one before:
 *             the cell would be void at once by rule 4), so a delay plus
 *             reachability timeout shorter than two buckets waits for them.
 *             As soon as S sees B reachable again it stops where
 *             it is: the cells written so far stand (B was silent when they
 *             were written; those of the 10-20 s before its first new
 *             heartbeat are void by rule 4: those groups come home at once)
 *             and the rest never moved.
 *   EVACUATE  B's operator status is evacuate: the same, reason EVACUATE,
 *             whether B is reachable or not (the operator's drain).
 *   FAILBACK  S releases its standing OUTAGE cells for B, at the same rate,
 *             once B has been reachable for site_failback_delay and its
 *             status is online; its EVACUATE cells once B's status is
 *             online again and B is reachable.  Each failover site paces
 *             itself: B takes back up to (its failover sites) * rate.
 *   CLEANUP   S deletes its own void cells (not a move: the group is home
 *             by rule 2-4 already), at most SITE_CLEANUP_MAX per call; while
 *             it fails B over it rewrites them instead (B may have died
 *             after a cut that voided them).
 *
 * A cut shorter than site_failover_delay therefore moves nothing; a longer
 * one makes both sides act on what they see, and after the heal the cells
 * written during it are void by rule 4: each group served on the wrong side
 * moves home once, and nothing flips again.
 *
 * Limits.  A returning site takes its groups back from each of its failover
 * sites at the rate, so up to (its failover sites) * rate.  A site whose
 * failover site is down too is not failed over (no second choice while
 * the cells could be unseen).  When the home site dies during a cut, the
 * failover site's cells of the cut are void after the heal: those groups go
 * home (dead) and are failed over again at the rate.  The routing wait
 * covers hint replays of different links landing up to reachability_timeout
 * apart; one link's hints must land in write order (Cassandra replays a
 * node's hints in order).  Clocks: the simulator runs with sites' clocks up
 * to 2 s apart (and passes with 9 s); buckets of 10 s and "this bucket or
 * the one before" leave room for that, not for minutes.
 *
 * Defaults (#defines below, later wired into settings): site_failover_delay
 * 300 s, site_failover_rate 10 groups/s, site_failback_delay 1800 s,
 * reachability timeout 30 s, heartbeat buckets of 10 s.
 *
 * Sites, backends and groups are passed as arrays and referred to by index;
 * nothing is read, written or allocated here; ties are broken by the
 * placement hash (placement.h), so every host decides alike.
 */
#ifndef BRAIN_SITE_H
#define BRAIN_SITE_H

#include "brain/placement.h"
#include "brain/types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SITE_FAILOVER_DELAY_MS_DEFAULT 300000  /* site_failover_delay */
#define SITE_FAILOVER_RATE_DEFAULT 10          /* site_failover_rate: groups per second */
#define SITE_FAILBACK_DELAY_MS_DEFAULT 1800000 /* site_failback_delay */
#define SITE_REACHABILITY_TIMEOUT_MS_DEFAULT 30000
#define SITE_HEARTBEAT_BUCKET_MS 10000
#define SITE_CLEANUP_MAX 100 /* void cells deleted per call */
#define SITE_MAX 32          /* sites in one cluster */

struct site_settings {
	int64_t failover_delay_ms;
	unsigned failover_rate; /* groups per second, per writing site; 0: none */
	int64_t failback_delay_ms;
	int64_t reachability_timeout_ms;
};
void site_settings_init(struct site_settings *set);

/* ---- heartbeats ---- */

int64_t site_heartbeat_bucket(int64_t t_ms);

/* The heartbeat rows of one replica, as the caller keeps them. */
struct site_heartbeats {
	bool (*exists)(const void *context, int site, int64_t bucket);
	const void *context;
};

/* Rows as a sorted array (site, then bucket): a ready-made context for
 * struct site_heartbeats (exists = site_heartbeat_rows_exist). */
struct site_heartbeat_row {
	int site;
	int64_t bucket;
};
struct site_heartbeat_rows {
	const struct site_heartbeat_row *rows;
	size_t count;
};
bool site_heartbeat_rows_exist(const void *rows, int site, int64_t bucket);

/* A row for bucket(t_ms) or the one before. */
bool site_alive_at(const struct site_heartbeats *heartbeats, int site, int64_t t_ms);

/* ---- reachability ---- */

struct site_reachability {
	bool known; /* false: never recorded (no report) */
	bool reachable;
	int64_t since_ms; /* when the recorder first saw the current state */
};

/* S's record about another site at now_ms, given that site's newest
 * heartbeat in S's replica (INT64_MIN: none).  Returns true when it changed
 * (then it is to be written). */
bool site_reachability_update(const struct site_settings *set, struct site_reachability *record,
			      int64_t newest_heartbeat_ms, int64_t now_ms);

/* ---- cells and the effective location ---- */

enum site_failover_reason { SITE_REASON_OUTAGE, SITE_REASON_EVACUATE };
const char *site_failover_reason_name(enum site_failover_reason reason);

struct site_home_cell {
	int site;          /* the home site */
	int backend;       /* caller's backend index; -1: none */
	int failover_site; /* -1: none chosen */
	uint32_t epoch;
};

struct site_failover_cell {
	bool present;
	int writer_site;
	int target_site; /* = writer_site */
	int target_backend;
	int64_t written_ms;
	enum site_failover_reason reason;
	uint32_t home_epoch; /* the home cell's epoch it overrides */
};

enum site_verdict {
	SITE_VERDICT_HOME,        /* no failover cell */
	SITE_VERDICT_STANDS,      /* the failover cell */
	SITE_VERDICT_VOID_EPOCH,  /* the home cell changed since: home */
	SITE_VERDICT_VOID_WRITER, /* not the group's failover site: home */
	SITE_VERDICT_VOID_ALIVE,  /* written while the home site was alive: home */
};
const char *site_verdict_name(enum site_verdict verdict);

enum site_verdict site_cell_verdict(const struct site_home_cell *home,
				    const struct site_failover_cell *cell,
				    const struct site_heartbeats *heartbeats);

struct site_location {
	int site, backend;
	enum site_verdict verdict;
};
void site_effective_location(const struct site_home_cell *home,
			     const struct site_failover_cell *cell,
			     const struct site_heartbeats *heartbeats,
			     struct site_location *location_r);

/* Whether a daemon may route by the cell (above): not present, not an
 * OUTAGE cell, or first seen (first_seen_ms: when the daemon's replica first
 * held this write of the cell) at least settle_ms ago. */
bool site_cell_settled(const struct site_failover_cell *cell, int64_t first_seen_ms,
		       int64_t settle_ms, int64_t now_ms);

/* ---- the failover site of each group (the home site's controller) ---- */

struct site_candidate {
	const char *name;
	const char *tags; /* separated by commas or blanks; NULL: none */
	enum site_status status;
	unsigned capacity; /* sum of the load factors of its online backends */
	unsigned load;     /* groups it carries now (its own and failed over) */
};

struct site_group {
	unsigned group_id;
	double weight; /* what it weighs; only orders the failover (lightest first) */
	struct site_home_cell home;
	struct site_failover_cell cell; /* in the deciding site's replica */
};

struct site_failover_site_change {
	size_t group; /* index into the groups */
	unsigned group_id;
	int site, old_site;
};

/* Whether two tag lists share a tag. */
bool site_tags_share(const char *a, const char *b);

/* New failover sites for at most max_changes of the home site's groups that
 * need one (none, the home site itself, or one that can no longer take
 * groups), written to changes_r.  Groups whose failover cell stands are left
 * alone.  The caller raises each changed group's home epoch. */
void site_failover_sites(const struct site_candidate *sites, size_t site_count, int home,
			 const struct site_group *groups, size_t group_count,
			 const struct site_heartbeats *heartbeats, size_t max_changes,
			 struct site_failover_site_change *changes_r, size_t *change_count_r);

/* ---- what the failover site does (its controller, every tick) ---- */

struct site_failover_view {
	int self, home;               /* S and B */
	enum site_status home_status; /* B's operator status in S's replica */
	size_t site_count;
	/* per site, S's own record about it (reachable: live in S's view);
	 * [home] is S's record about B */
	const struct site_reachability *own;
	/* per site C, C's record about B as S's replica has it */
	const struct site_reachability *reports;
	bool has_outage_cells;   /* S has standing OUTAGE cells for B's groups */
	bool has_evacuate_cells; /* ... EVACUATE cells */
};

struct site_decision {
	bool fail_over; /* write cells for B's groups, reason below */
	enum site_failover_reason reason;
	bool release_outage;   /* release S's OUTAGE cells for B */
	bool release_evacuate; /* release S's EVACUATE cells for B */
	char reason_text[200]; /* a sentence for the log */
};

/* What S does about B at now_ms (S's clock): the rules OUTAGE, EVACUATE and
 * FAILBACK at the top; decision_r->reason_text says why, e.g.
 * "unreachable for 120 s (site_failover_delay 300 s)". */
void site_failover_decide(const struct site_settings *set, const struct site_failover_view *view,
			  int64_t now_ms, struct site_decision *decision_r);

/* The pace of one writing site: a token bucket (milli-groups), refilled at
 * site_failover_rate, holding at most one second's worth. */
struct site_pace {
	int64_t last_ms;
	int64_t tokens;
};
void site_pace_init(struct site_pace *pace, int64_t now_ms);
/* Refills and returns how many moves may be made now. */
unsigned site_pace_allowance(struct site_pace *pace, unsigned rate, int64_t now_ms);
void site_pace_spend(struct site_pace *pace, unsigned moves);

struct site_cell_change {
	size_t group; /* index into the groups */
	unsigned group_id;
	bool release; /* delete the cell; otherwise write cell */
	bool move;    /* counts against the pace (not a void cell's cleanup) */
	struct site_failover_cell cell;
};

/* S's cell writes of this tick for one home site B, as decided: every group
 * of B is passed (those whose failover site is not S are skipped), each
 * with its cells in S's replica; new cells are written at now_ms, a release
 * is a deletion (a write at now_ms too, so that it wins the merge).  backends are S's, with
 * assigned_groups the groups each carries; the placements made are added to
 * them.  At most allowance moves and SITE_CLEANUP_MAX cleanups, written to
 * changes_r (room for max_changes).  stranded_r: groups left to fail over
 * when no backend of S can take one. */
void site_failover_plan(const struct site_decision *decision, int self,
			const struct site_group *groups, size_t group_count,
			const struct site_heartbeats *heartbeats,
			struct placement_candidate *backends, size_t backend_count,
			unsigned allowance, int64_t now_ms, struct site_cell_change *changes_r,
			size_t max_changes, size_t *change_count_r, size_t *stranded_r);

/* ---- force moves (`site force-move start SITE PERCENT DEST...`) ---- */

/* Whether the user is picked by the force move id at percent (the hash of
 * (id, user) falls under it: raising the percent adds users, lowering it
 * sends only some home), and which of dest_count destinations it goes to
 * (*dest_r, by another part of the same hash). */
bool site_force_move_picks(int64_t id, unsigned percent, const char *username,
			   size_t dest_count, size_t *dest_r);

#endif
