/* unit.h - the tiny unit test harness shared by every suite in tests/unit.
 *
 * A suite is a function `void suite_NAME(void)` listed in tests/unit/main.c.
 * Inside it, CHECK(cond) records one assertion; a failing CHECK prints the
 * file, line and expression and the run goes on, so one run shows every
 * failure.  main() prints the closing line "N passed, N failed" that CI reads.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

extern unsigned unit_passed, unit_failed;

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (cond) {                                                             \
			unit_passed++;                                                  \
		} else {                                                                \
			unit_failed++;                                                  \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                       \
	} while (0)

/* String equality with both values printed on failure. */
#define CHECK_STR(actual, expected)                                                         \
	do {                                                                                \
		const char *unit_a_ = (actual), *unit_e_ = (expected);                      \
		if (unit_a_ != NULL && unit_e_ != NULL && strcmp(unit_a_, unit_e_) == 0) {  \
			unit_passed++;                                                      \
		} else {                                                                    \
			unit_failed++;                                                      \
			fprintf(stderr, "FAIL %s:%d: %s == \"%s\", got \"%s\"\n", __FILE__, \
				__LINE__, #actual, unit_e_ ? unit_e_ : "(null)",            \
				unit_a_ ? unit_a_ : "(null)");                              \
		}                                                                           \
	} while (0)

#endif
