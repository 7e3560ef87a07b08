/* test_placement.c - where new groups go. */
#include "brain/placement.h"
#include "unit.h"

#include <stdint.h>

void suite_placement(void)
{
	struct placement_candidate c[3] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 10, false, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 5, false, 0},
		{"b3", BACKEND_STATUS_ONLINE, 100, 7, false, 0},
	};
	CHECK(placement_choose_backend(c, 3, 1) == 1); /* fewest groups */

	/* load factor weighs: b1 at 50 with 3 groups is as full as 6 at 100 */
	struct placement_candidate w[2] = {
		{"b1", BACKEND_STATUS_ONLINE, 50, 3, false, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 6, false, 0},
	};
	/* (3+1)/50 = .08 > (6+1)/100 = .07 -> b2 */
	CHECK(placement_choose_backend(w, 2, 1) == 1);

	/* standby, offline and load factor 0 take nothing */
	struct placement_candidate s[3] = {
		{"b1", BACKEND_STATUS_STANDBY, 100, 0, false, 0},
		{"b2", BACKEND_STATUS_OFFLINE, 100, 0, false, 0},
		{"b3", BACKEND_STATUS_ONLINE, 0, 0, false, 0},
	};
	CHECK(placement_choose_backend(s, 3, 1) == -1);
	CHECK(placement_choose_backend(s, 0, 1) == -1);
	s[2].load_factor = 1;
	CHECK(placement_choose_backend(s, 3, 1) == 2);

	/* filling 1024 groups one by one over 3 equal backends ends even, and
	 * 2:1 load factors end 2:1 */
	struct placement_candidate e[3] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 0, false, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 0, false, 0},
		{"b3", BACKEND_STATUS_ONLINE, 50, 0, false, 0},
	};
	for (unsigned g = 0; g < 1000; g++) {
		int i = placement_choose_backend(e, 3, g);
		CHECK(i >= 0);
		if (i >= 0)
			e[i].assigned_groups++;
	}
	CHECK(e[0].assigned_groups >= 399 && e[0].assigned_groups <= 401);
	CHECK(e[1].assigned_groups >= 399 && e[1].assigned_groups <= 401);
	CHECK(e[2].assigned_groups >= 199 && e[2].assigned_groups <= 201);

	/* ties are not always won by the first name */
	struct placement_candidate t[2] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 0, false, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 0, false, 0},
	};
	unsigned first = 0;
	for (unsigned g = 0; g < 100; g++)
		first += placement_choose_backend(t, 2, g) == 0;
	CHECK(first > 20 && first < 80);
	/* and the same inputs give the same answer */
	CHECK(placement_choose_backend(t, 2, 42) == placement_choose_backend(t, 2, 42));

	/* metacache: a warm backend wins while, with the new group, it holds at
	 * most 10% plus one group more than the best one would; beyond that
	 * the spread wins */
	struct placement_candidate m[3] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 20, false, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 22, true, 0},
		{"b3", BACKEND_STATUS_ONLINE, 100, 24, false, 0},
	};
	CHECK(placement_choose_backend(m, 3, 1) == 1); /* 23 <= 1.1 * 21 + 1 = 24.1 */
	m[1].assigned_groups = 23;                      /* 24 <= 24.1 */
	CHECK(placement_choose_backend(m, 3, 1) == 1);
	m[1].assigned_groups = 24;                      /* 25 > 24.1 */
	CHECK(placement_choose_backend(m, 3, 1) == 0);
	/* small counts: one group more is allowed, two are not */
	struct placement_candidate few[2] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 0, false, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 1, true, 0},
	};
	CHECK(placement_choose_backend(few, 2, 1) == 1);
	few[1].assigned_groups = 2;
	CHECK(placement_choose_backend(few, 2, 1) == 0);
	/* load factors count: warm b2 at 50 with 10 groups is (10+1)/50 = .22,
	 * best b1 (20+1)/100 = .21: within (1.1 * 21 + 1)/100 = .241 */
	m[1].load_factor = 50;
	m[1].assigned_groups = 10;
	CHECK(placement_choose_backend(m, 3, 1) == 1);
	m[1].assigned_groups = 12; /* 13/50 = .26 > .241 */
	CHECK(placement_choose_backend(m, 3, 1) == 0);
	/* of two warm ones the less loaded; a warm one that cannot take groups
	 * (standby, load factor 0, the excluded own backend) is no candidate */
	m[1] = (struct placement_candidate){"b2", BACKEND_STATUS_ONLINE, 100, 23, true, 0};
	m[2].warm = true;
	m[2].assigned_groups = 22;
	CHECK(placement_choose_backend(m, 3, 1) == 2);
	m[2].status = BACKEND_STATUS_STANDBY;
	CHECK(placement_choose_backend(m, 3, 1) == 1);
	m[1].load_factor = 0;
	CHECK(placement_choose_backend(m, 3, 1) == 0);
	m[1].load_factor = 100;
	CHECK(placement_choose_alternative(m, 3, 1, 1) == 0);
	/* the best one warm: itself */
	m[0].warm = true;
	CHECK(placement_choose_backend(m, 3, 1) == 0);

	/* an alternative's choice: the spread counts assigned_groups (this
	 * backend's groups that already have the candidate as alternative), the
	 * warm allowance what each would carry after the failover, against the
	 * lightest candidate (not the spread's pick: b2 at load factor 50 is
	 * the spread's pick here but carries twice its share) */
	struct placement_candidate alt[3] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 10, false, 100},
		{"b2", BACKEND_STATUS_ONLINE, 50, 0, false, 100},
		{"b3", BACKEND_STATUS_ONLINE, 100, 10, true, 101},
	};
	CHECK(placement_choose_alternative(alt, 3, SIZE_MAX, 1) == 2); /* 112 <= 1.1 * 111 + 1 */
	alt[2].carried_groups = 112; /* 123 <= 1.1 * 111 + 1 = 123.1 */
	CHECK(placement_choose_alternative(alt, 3, SIZE_MAX, 1) == 2);
	alt[2].carried_groups = 113; /* 124 > 123.1 */
	CHECK(placement_choose_alternative(alt, 3, SIZE_MAX, 1) == 1);
	alt[2].warm = false;
	alt[2].carried_groups = 101;
	CHECK(placement_choose_alternative(alt, 3, SIZE_MAX, 1) == 1);
}
