/* test_move.c - the move protocol's pure decisions (brain/move.h). */
#include "brain/move.h"
#include "unit.h"

#include <string.h>

#define S 1000 /* ms */

static void test_progress(void)
{
	char reason[200];
	struct move_view v = {.started_ms = 100 * S, .live = 3, .acked = 2};
	CHECK(move_progress(30 * S, &v, 110 * S, reason, sizeof(reason)) == MOVE_WAIT);
	CHECK(strstr(reason, "2 of 3") != NULL);
	v.acked = 3;
	CHECK(move_progress(30 * S, &v, 110 * S, reason, sizeof(reason)) == MOVE_FINISH_ACKED);
	/* a daemon gone meanwhile is not waited for: fewer live than acks */
	v.live = 2;
	CHECK(move_progress(30 * S, &v, 101 * S, reason, sizeof(reason)) == MOVE_FINISH_ACKED);
	/* nobody live (no observation written yet): nobody confirmed, wait */
	v.live = 0;
	v.acked = 0;
	CHECK(move_progress(30 * S, &v, 101 * S, reason, sizeof(reason)) == MOVE_WAIT);
	CHECK(move_progress(30 * S, &v, 130 * S, reason, sizeof(reason)) == MOVE_FINISH_TIMEOUT);
	v.live = 3;
	v.acked = 1;
	CHECK(move_progress(30 * S, &v, 130 * S - 1, reason, sizeof(reason)) == MOVE_WAIT);
	CHECK(move_progress(30 * S, &v, 130 * S, reason, sizeof(reason)) == MOVE_FINISH_TIMEOUT);
	CHECK(strstr(reason, "only 1 of 3") != NULL && strstr(reason, "finishing anyway") != NULL);
	/* source down wins over everything: at once */
	v.from_down = true;
	CHECK(move_progress(30 * S, &v, 100 * S, reason, sizeof(reason)) == MOVE_FINISH_DOWN);
	/* a clock behind the start (another host's) counts as age 0 */
	v.from_down = false;
	CHECK(move_progress(30 * S, &v, 90 * S, reason, sizeof(reason)) == MOVE_WAIT);
	CHECK(strcmp(move_outcome_name(MOVE_FINISH_TIMEOUT), "timeout") == 0);
	CHECK(strcmp(move_outcome_name(MOVE_FINISH_ACKED), "acknowledged") == 0);
}

static void test_login(void)
{
	int64_t deadline;
	CHECK(move_login(30 * S, false, 0, 5 * S, &deadline) == MOVE_LOGIN_ROUTE);
	CHECK(move_login(30 * S, true, 10 * S, 10 * S, &deadline) == MOVE_LOGIN_HOLD);
	CHECK(deadline == 40 * S);
	CHECK(move_login(30 * S, true, 10 * S, 40 * S - 1, &deadline) == MOVE_LOGIN_HOLD);
	CHECK(move_login(30 * S, true, 10 * S, 40 * S, &deadline) == MOVE_LOGIN_TARGET);
}

static void test_rate(void)
{
	CHECK(move_rate_allowance(0, 0, 0, 100 * S) == 0);
	CHECK(move_rate_allowance(2, 10 * S, 0, 10 * S) == 1);
	CHECK(move_rate_allowance(2, 10 * S, 1, 10 * S) == 0);
	CHECK(move_rate_allowance(2, 10 * S, 1, 10 * S + 499) == 0);
	CHECK(move_rate_allowance(2, 10 * S, 1, 10 * S + 500) == 1);
	CHECK(move_rate_allowance(2, 10 * S, 3, 11 * S) == 0);
	CHECK(move_rate_allowance(2, 10 * S, 0, 20 * S) == 21);
	CHECK(move_rate_allowance(2, 10 * S, 0, 9 * S) == 0);
}

void suite_move(void)
{
	test_progress();
	test_login();
	test_rate();
}
