/* test_placement.c - where new groups go. */
#include "brain/placement.h"
#include "unit.h"

void suite_placement(void)
{
	struct placement_candidate c[3] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 10},
		{"b2", BACKEND_STATUS_ONLINE, 100, 5},
		{"b3", BACKEND_STATUS_ONLINE, 100, 7},
	};
	CHECK(placement_choose_backend(c, 3, 1) == 1); /* fewest groups */

	/* load factor weighs: b1 at 50 with 3 groups is as full as 6 at 100 */
	struct placement_candidate w[2] = {
		{"b1", BACKEND_STATUS_ONLINE, 50, 3},
		{"b2", BACKEND_STATUS_ONLINE, 100, 6},
	};
	/* (3+1)/50 = .08 > (6+1)/100 = .07 -> b2 */
	CHECK(placement_choose_backend(w, 2, 1) == 1);

	/* standby, offline and load factor 0 take nothing */
	struct placement_candidate s[3] = {
		{"b1", BACKEND_STATUS_STANDBY, 100, 0},
		{"b2", BACKEND_STATUS_OFFLINE, 100, 0},
		{"b3", BACKEND_STATUS_ONLINE, 0, 0},
	};
	CHECK(placement_choose_backend(s, 3, 1) == -1);
	CHECK(placement_choose_backend(s, 0, 1) == -1);
	s[2].load_factor = 1;
	CHECK(placement_choose_backend(s, 3, 1) == 2);

	/* filling 1024 groups one by one over 3 equal backends ends even, and
	 * 2:1 load factors end 2:1 */
	struct placement_candidate e[3] = {
		{"b1", BACKEND_STATUS_ONLINE, 100, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 0},
		{"b3", BACKEND_STATUS_ONLINE, 50, 0},
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
		{"b1", BACKEND_STATUS_ONLINE, 100, 0},
		{"b2", BACKEND_STATUS_ONLINE, 100, 0},
	};
	unsigned first = 0;
	for (unsigned g = 0; g < 100; g++)
		first += placement_choose_backend(t, 2, g) == 0;
	CHECK(first > 20 && first < 80);
	/* and the same inputs give the same answer */
	CHECK(placement_choose_backend(t, 2, 42) == placement_choose_backend(t, 2, 42));
}
