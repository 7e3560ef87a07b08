/* test_hash.c - the user -> group hash is a cluster-wide contract: these
 * values must never change between versions or hosts. */
#include "brain/user.h"
#include "unit.h"
#include "util/hash.h"

void suite_hash(void)
{
	/* FNV-1a 64 published test vectors */
	CHECK(hash_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
	CHECK(hash_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
	CHECK(hash_fnv1a64("foobar", 6) == 0x85944171f73967e8ULL);
	CHECK(hash_fnv1a64_add(hash_fnv1a64("foo", 3), "bar", 3) == 0x85944171f73967e8ULL);

	char norm[300];
	CHECK(user_normalize("User1@Example.COM", norm, sizeof(norm)) == 0);
	CHECK_STR(norm, "user1@example.com");
	CHECK(user_normalize("", norm, sizeof(norm)) < 0);
	CHECK(user_normalize("has space", norm, sizeof(norm)) < 0);
	CHECK(user_normalize("tab\there", norm, sizeof(norm)) < 0);
	CHECK(user_normalize("ctl\x01", norm, sizeof(norm)) < 0);
	CHECK(user_normalize("J\xc3\xb6rg", norm, sizeof(norm)) == 0);
	CHECK_STR(norm, "j\xc3\xb6rg");
	char long_name[300];
	memset(long_name, 'a', 256);
	long_name[256] = '\0';
	CHECK(user_normalize(long_name, norm, sizeof(norm)) < 0);

	/* documented: group = fnv1a64(normalised) % group_count */
	CHECK(user_hash_group("foobar", 1024) == (unsigned)(0x85944171f73967e8ULL % 1024));
	CHECK(user_hash_group("a", 7) == (unsigned)(0xaf63dc4c8601ec8cULL % 7));

	/* users spread over groups: 100000 users into 1024 groups, no group
	 * more than 2x or less than 0.5x the mean */
	unsigned counts[1024] = {0};
	char name[32];
	for (int i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "user%d@example.com", i);
		counts[user_hash_group(name, 1024)]++;
	}
	unsigned min = ~0u, max = 0;
	for (int g = 0; g < 1024; g++) {
		if (counts[g] < min)
			min = counts[g];
		if (counts[g] > max)
			max = counts[g];
	}
	CHECK(max < 2 * 98);
	CHECK(min > 98 / 2);
}
