/* doveadm_tool.c - net/doveadm.h from the command line, for the integration
 * tests (tests/integration/test_doveadm.py) and for poking a backend:
 *
 *   doveadm_tool [-t TIMEOUT_MS] who URL KEY
 *   doveadm_tool [-t TIMEOUT_MS] kick URL KEY USER...
 *   doveadm_tool [-t TIMEOUT_MS] kick-group URL KEY GROUP_COUNT GROUP
 *
 * who prints one user per line; kick and kick-group print "kicked=N".
 * Errors go to stderr as the library words them; the exit code is 0 on
 * success, 1 on a failure, 2 on bad usage.
 */
#include "net/doveadm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
	fprintf(stderr,
		"usage: doveadm_tool [-t TIMEOUT_MS] who URL KEY\n"
		"       doveadm_tool [-t TIMEOUT_MS] kick URL KEY USER...\n"
		"       doveadm_tool [-t TIMEOUT_MS] kick-group URL KEY GROUP_COUNT GROUP\n");
	return 2;
}

static int parse_uint(const char *text, unsigned *value_r)
{
	char *end;
	unsigned long value = strtoul(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || value > 0xffffffffUL)
		return -1;
	*value_r = (unsigned)value;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned timeout_ms = 5000, kicked = 0;
	const char *error;
	int ret;

	argv++;
	argc--;
	if (argc >= 2 && strcmp(argv[0], "-t") == 0) {
		if (parse_uint(argv[1], &timeout_ms) < 0)
			return usage();
		argv += 2;
		argc -= 2;
	}
	if (argc < 3)
		return usage();
	const char *cmd = argv[0], *url = argv[1], *key = argv[2];

	if (strcmp(cmd, "who") == 0 && argc == 3) {
		struct doveadm_user_list users;
		ret = doveadm_who(url, key, timeout_ms, &users, &error);
		for (size_t i = 0; ret == 0 && i < users.count; i++)
			printf("%s\n", users.users[i]);
		doveadm_user_list_free(&users);
	} else if (strcmp(cmd, "kick") == 0 && argc >= 4) {
		ret = doveadm_kick(url, key, (const char *const *)argv + 3, (size_t)argc - 3,
				   timeout_ms, &kicked, &error);
		printf("kicked=%u\n", kicked);
	} else if (strcmp(cmd, "kick-group") == 0 && argc == 5) {
		unsigned group_count, group;
		if (parse_uint(argv[3], &group_count) < 0 || parse_uint(argv[4], &group) < 0)
			return usage();
		ret = doveadm_kick_group(url, key, group_count, group, timeout_ms, &kicked, &error);
		printf("kicked=%u\n", kicked);
	} else {
		return usage();
	}
	if (ret < 0) {
		fprintf(stderr, "%s\n", error);
		return 1;
	}
	return 0;
}
