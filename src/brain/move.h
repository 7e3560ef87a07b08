/* move.h - moving a group to another backend without leaving a user with
 * sessions on two backends.
 *
 * A move (an operator's `group move`, `backend evacuate`, or the
 * controller's own) goes through the group's row in the GeoDB:
 *
 *   1. start     the controller (or the CLI) sets move_to, move_started
 *                and move_reason with a compare-and-set on the epoch
 *                (epoch e -> e + 1).  The move is known by that new epoch.
 *   2. hold      every daemon that sees the group moving holds new logins
 *                of the group (move_login()), closes its sessions of the
 *                group on the old backend (IMAP "* BYE", POP3 "-ERR",
 *                ManageSieve "BYE"), lets its LMTP transactions to the old
 *                backend finish, and then acknowledges the move (a row
 *                (group, daemon) -> epoch in move_acks).
 *   3. finish    the controller finishes the move (move_progress()) when
 *                every live daemon of the site (at least one) has acknowledged it, at once
 *                when the old backend is marked down (nobody can be served
 *                there anyway), or when move_timeout has passed since the
 *                start (it says so: a daemon that never answered may still
 *                have sessions there).  Before switching it kicks the
 *                group's users on the old backend through doveadm and runs
 *                the move_hook; then a compare-and-set writes backend =
 *                move_to and clears the move (epoch + 1).
 *   4. release   daemons seeing the switch route the held logins to the new
 *                backend.
 *
 * A daemon holds a login at most move_timeout from the moment it first saw
 * the move (move_login()); after that it routes it to move_to, because the
 * controller finishes every move by move_started + move_timeout.
 *
 * Pure: times are milliseconds on any clock the caller likes; nothing is
 * read, written or allocated here.
 */
#ifndef BRAIN_MOVE_H
#define BRAIN_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MOVE_TIMEOUT_MS_DEFAULT 30000 /* move_timeout */
#define MOVE_RATE_DEFAULT 1           /* move_rate: groups per second (evacuate) */

enum move_outcome {
	MOVE_WAIT,            /* not every live daemon has acknowledged yet */
	MOVE_FINISH_ACKED,    /* every live daemon has acknowledged */
	MOVE_FINISH_DOWN,     /* the old backend is marked down or gone */
	MOVE_FINISH_TIMEOUT,  /* move_timeout passed without every acknowledgement */
};
const char *move_outcome_name(enum move_outcome outcome);

struct move_view {
	int64_t started_ms;   /* move_started */
	bool from_down;       /* the old backend is marked down, or offline/removed */
	unsigned live;        /* live daemons of the site (health_observer_is_live()) */
	unsigned acked;       /* ... of which have acknowledged this move's epoch */
};

/* What the controller does with a move in progress at now_ms.  reason_r
 * (room for reason_size) gets a sentence for the log, e.g. "2 of 3 live
 * daemons acknowledged; move_timeout 30 s passed". */
enum move_outcome move_progress(int64_t timeout_ms, const struct move_view *view, int64_t now_ms,
				char *reason_r, size_t reason_size);

enum move_login {
	MOVE_LOGIN_ROUTE,  /* the group is not moving: its backend */
	MOVE_LOGIN_HOLD,   /* wait (until the daemon's view changes, or the deadline) */
	MOVE_LOGIN_TARGET, /* held long enough: go to move_to */
};

/* What a daemon does with a login of a group: moving says whether its view
 * shows the group moving, seen_ms when it first saw that move.
 * *deadline_ms_r is when a held login stops waiting (seen_ms + timeout). */
enum move_login move_login(int64_t timeout_ms, bool moving, int64_t seen_ms, int64_t now_ms,
			   int64_t *deadline_ms_r);

/* Evacuate and other paced moves: how many more moves may start at now_ms
 * when `started` moves were started since since_ms at rate per second
 * (rate 0: none). */
unsigned move_rate_allowance(unsigned rate, int64_t since_ms, uint64_t started, int64_t now_ms);

#endif
