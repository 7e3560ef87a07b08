/* move.c - see move.h. */
#include "brain/move.h"

#include <stdio.h>

const char *move_outcome_name(enum move_outcome outcome)
{
	switch (outcome) {
	case MOVE_WAIT:
		return "wait";
	case MOVE_FINISH_ACKED:
		return "acknowledged";
	case MOVE_FINISH_DOWN:
		return "source_down";
	case MOVE_FINISH_TIMEOUT:
		return "timeout";
	}
	return "unknown";
}

enum move_outcome move_progress(int64_t timeout_ms, const struct move_view *view, int64_t now_ms,
				char *reason_r, size_t reason_size)
{
	int64_t age = now_ms - view->started_ms;
	if (age < 0)
		age = 0;
	if (view->from_down) {
		snprintf(reason_r, reason_size,
			 "the old backend is down: nobody can be served there, finishing at once");
		return MOVE_FINISH_DOWN;
	}
	/* no live daemon seen at all (observations not written yet): nobody
	 * has confirmed anything; the timeout decides */
	if (view->live > 0 && view->acked >= view->live) {
		snprintf(reason_r, reason_size, "%u of %u live daemons acknowledged after %lld ms",
			 view->acked, view->live, (long long)age);
		return MOVE_FINISH_ACKED;
	}
	if (age >= timeout_ms) {
		snprintf(reason_r, reason_size,
			 "only %u of %u live daemons acknowledged within move_timeout %lld ms: "
			 "finishing anyway",
			 view->acked, view->live, (long long)timeout_ms);
		return MOVE_FINISH_TIMEOUT;
	}
	snprintf(reason_r, reason_size, "%u of %u live daemons acknowledged so far (%lld ms)",
		 view->acked, view->live, (long long)age);
	return MOVE_WAIT;
}

enum move_login move_login(int64_t timeout_ms, bool moving, int64_t seen_ms, int64_t now_ms,
			   int64_t *deadline_ms_r)
{
	*deadline_ms_r = seen_ms + timeout_ms;
	if (!moving)
		return MOVE_LOGIN_ROUTE;
	return now_ms < *deadline_ms_r ? MOVE_LOGIN_HOLD : MOVE_LOGIN_TARGET;
}

unsigned move_rate_allowance(unsigned rate, int64_t since_ms, uint64_t started, int64_t now_ms)
{
	if (rate == 0 || now_ms < since_ms)
		return 0;
	/* one move may start at since_ms itself */
	uint64_t allowed = 1 + (uint64_t)(now_ms - since_ms) * rate / 1000;
	return allowed > started ? (unsigned)(allowed - started) : 0;
}
