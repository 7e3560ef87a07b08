/* test_pop3_command.c - unit tests for src/proto/pop3_command.
 *
 * Each line is parsed and the result written as one string,
 * "KEYWORD[arg][arg]" or "ERR error", so that a test is one readable line.
 * The scratch buffer is surrounded by canary bytes that must survive every
 * parse, and the fuzz loop checks that every accepted line can be rebuilt
 * from its parse.
 */
#include "unit.h"
#include "proto/pop3_command.h"

#include <stdbool.h>
#include <stdint.h>
#include <strings.h>

#define CANARY 0x5a

static unsigned char arena[16 + 512 + 16];
static char result[2048];

static bool canaries_intact(size_t buf_size)
{
	for (size_t i = 0; i < 16; i++) {
		if (arena[i] != CANARY)
			return false;
	}
	for (size_t i = 16 + buf_size; i < sizeof(arena); i++) {
		if (arena[i] != CANARY)
			return false;
	}
	return true;
}

static const char *parse_sized(const char *line, size_t len, size_t buf_size,
			       struct pop3_command *cmd)
{
	const char *error = "unset";
	int ret;

	memset(arena, CANARY, sizeof(arena));
	ret = pop3_command_parse(line, len, (char *)arena + 16, buf_size, cmd, &error);
	CHECK(canaries_intact(buf_size));
	if (ret < 0) {
		CHECK(ret == -1 && error != NULL);
		CHECK(cmd->keyword == NULL && cmd->arg_count == 0);
		snprintf(result, sizeof(result), "ERR %s", error == NULL ? "(null)" : error);
		return result;
	}
	CHECK(ret == 0 && error == NULL && cmd->keyword != NULL);
	CHECK(cmd->arg_count <= POP3_ARGS_MAX);
	snprintf(result, sizeof(result), "%s", cmd->keyword);
	for (unsigned i = 0; i < cmd->arg_count && i < POP3_ARGS_MAX; i++) {
		size_t n = strlen(result);

		snprintf(result + n, sizeof(result) - n, "[%s]", cmd->args[i]);
	}
	return result;
}

static const char *parse(const char *line, size_t len)
{
	struct pop3_command cmd;

	return parse_sized(line, len, POP3_COMMAND_BUF_SIZE, &cmd);
}

#define EXPECT(line, expected) CHECK_STR(parse(line, sizeof(line) - 1), expected)

static void test_commands(void)
{
	EXPECT("CAPA", "CAPA");
	EXPECT("capa", "CAPA");
	EXPECT("StLs", "STLS");
	EXPECT("QUIT", "QUIT");
	EXPECT("USER alice", "USER[alice]");
	EXPECT("user Alice@Example.COM", "USER[Alice@Example.COM]");
	EXPECT("APOP mrose c4c9334bac560ecc979e58001b3e22fb",
	       "APOP[mrose][c4c9334bac560ecc979e58001b3e22fb]");
	EXPECT("TOP 1 10", "TOP[1][10]");
	EXPECT("LIST 1", "LIST[1]");
	/* AUTH mech [initial-response] (RFC 5034). */
	EXPECT("AUTH", "AUTH");
	EXPECT("AUTH PLAIN", "AUTH[PLAIN]");
	EXPECT("AUTH PLAIN AHVzZXIAcGFzcw==", "AUTH[PLAIN][AHVzZXIAcGFzcw==]");
	EXPECT("auth plain =", "AUTH[plain][=]");
	/* Extension keywords up to eight letters. */
	EXPECT("XCLIENT ADDR=192.0.2.1", "XCLIENT[ADDR=192.0.2.1]");
	EXPECT("ABCDEFGH", "ABCDEFGH");
	/* Unknown keywords are for the caller to refuse. */
	EXPECT("XYZZY a b", "XYZZY[a][b]");
	/* 8-bit arguments pass. */
	EXPECT("USER j\xc3\xb6rg", "USER[j\xc3\xb6rg]");
}

static void test_pass(void)
{
	/* The whole rest of the line, spaces and all. */
	EXPECT("PASS secret", "PASS[secret]");
	EXPECT("PASS correct horse battery staple", "PASS[correct horse battery staple]");
	EXPECT("pass  leading and trailing  ", "PASS[ leading and trailing  ]");
	EXPECT("PASS \"quoted\" \\x", "PASS[\"quoted\" \\x]");
	EXPECT("PASS ", "PASS[]");
	EXPECT("PASS", "PASS");
	EXPECT("PASS \xff\xfe", "PASS[\xff\xfe]");
	/* Still no NUL, CR or LF. */
	EXPECT("PASS a\0b", "ERR NUL in command line");
	EXPECT("PASS a\rb", "ERR bare CR or LF in command line");
	/* PASSX is not PASS. */
	EXPECT("PASSX a b", "PASSX[a][b]");
}

static void test_errors(void)
{
	EXPECT("", "ERR empty line");
	EXPECT(" USER a", "ERR line starts with a space instead of a keyword");
	EXPECT(" ", "ERR line starts with a space instead of a keyword");
	EXPECT("US3R a", "ERR keyword is not alphabetic");
	EXPECT("USER-X", "ERR keyword is not alphabetic");
	EXPECT("\xc3\xa4", "ERR keyword is not alphabetic");
	EXPECT("USER\ta", "ERR keyword is not alphabetic");
	EXPECT("ABCDEFGHI", "ERR keyword too long");
	EXPECT("ABCDEFGHIJKLMNOP x", "ERR keyword too long");
	EXPECT("US\0ER", "ERR NUL in command line");
	EXPECT("USER a\r", "ERR bare CR or LF in command line");
	EXPECT("USER a\nQUIT", "ERR bare CR or LF in command line");
	/* Single spaces only, none trailing. */
	EXPECT("USER  a", "ERR empty argument: arguments are separated by single spaces");
	EXPECT("USER a ", "ERR empty argument: arguments are separated by single spaces");
	EXPECT("LIST ", "ERR empty argument: arguments are separated by single spaces");
	EXPECT("TOP 1  2", "ERR empty argument: arguments are separated by single spaces");
	/* At most two arguments. */
	EXPECT("TOP 1 2 3", "ERR too many arguments");
	EXPECT("USER john smith jr", "ERR too many arguments");
	EXPECT("AUTH PLAIN AHVz extra", "ERR too many arguments");
}

static void test_line_length(void)
{
	char line[POP3_LINE_MAX + 2];
	struct pop3_command cmd;

	/* 255 octets without CRLF are fine, 256 are not. */
	memcpy(line, "PASS ", 5);
	memset(line + 5, 'p', sizeof(line) - 5);
	parse_sized(line, POP3_LINE_MAX, POP3_COMMAND_BUF_SIZE, &cmd);
	CHECK_STR(cmd.keyword, "PASS");
	CHECK(cmd.arg_count == 1);
	CHECK(strlen(cmd.args[0]) == POP3_LINE_MAX - 5);
	CHECK_STR(parse(line, POP3_LINE_MAX + 1), "ERR line too long");
	CHECK_STR(parse(line, sizeof(line)), "ERR line too long");
	/* Too long is reported before anything else is looked at. */
	memset(line, '\0', sizeof(line));
	CHECK_STR(parse(line, sizeof(line)), "ERR line too long");

	/* The buffer needs len + 1 bytes; one less fails cleanly. */
	CHECK_STR(parse_sized("USER a b", 8, 9, &cmd), "USER[a][b]");
	CHECK_STR(parse_sized("USER a b", 8, 8, &cmd), "ERR line too long for the parse buffer");
	CHECK_STR(parse_sized("USER a b", 8, 0, &cmd), "ERR line too long for the parse buffer");
	CHECK_STR(parse_sized("QUIT", 4, 5, &cmd), "QUIT");
}

static uint32_t rng_next(uint32_t *state)
{
	/* xorshift32: deterministic across platforms. */
	uint32_t x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/* Random lines: no crash, no write outside the buffer, and every accepted
 * line is exactly its keyword and arguments joined by single spaces. */
static void test_fuzz(void)
{
	static const char *const seeds[] = {
		"USER alice",     "PASS a b  c", "AUTH PLAIN AHVzZXIAcGFzcw==", "TOP 1 10", "CAPA",
		"XCLIENT ADDR=1", "STLS",
	};
	static const char alphabet[] = "  aZPASSuser1=\r\n\xc3";
	uint32_t rng = 20240604u;
	char line[300], rebuilt[600];
	unsigned bad = 0;

	for (unsigned iter = 0; iter < 20000; iter++) {
		struct pop3_command cmd;
		const char *r;
		size_t len, size, n;
		unsigned before = unit_failed;

		if (rng_next(&rng) % 4 == 0) {
			len = rng_next(&rng) % 40;
			for (size_t i = 0; i < len; i++)
				line[i] = alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
		} else {
			const char *seed =
				seeds[rng_next(&rng) % (sizeof(seeds) / sizeof(seeds[0]))];
			unsigned mutations = rng_next(&rng) % 6;

			len = strlen(seed);
			memcpy(line, seed, len);
			for (unsigned m = 0; m < mutations && len > 0; m++) {
				size_t pos = rng_next(&rng) % len;
				unsigned op = rng_next(&rng) % 4;

				if (op == 0) {
					line[pos] = (char)rng_next(&rng);
				} else if (op == 1) {
					memmove(line + pos, line + pos + 1, len - pos - 1);
					len--;
				} else if (op == 2 && len < 260) {
					/* A long run, to cross the length limit. */
					size_t k = 1 + rng_next(&rng) % 40;

					if (len + k > sizeof(line))
						k = sizeof(line) - len;
					memmove(line + pos + k, line + pos, len - pos);
					memset(line + pos, 'x', k);
					len += k;
				} else if (len < sizeof(line)) {
					memmove(line + pos + 1, line + pos, len - pos);
					line[pos] =
						alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
					len++;
				}
			}
		}
		size = POP3_COMMAND_BUF_SIZE;
		if (rng_next(&rng) % 4 == 0)
			size = rng_next(&rng) % (size + 1);
		r = parse_sized(line, len, size, &cmd);
		if (unit_failed != before)
			bad++;
		if (strncmp(r, "ERR", 3) == 0)
			continue;
		n = (size_t)snprintf(rebuilt, sizeof(rebuilt), "%s", cmd.keyword);
		for (unsigned i = 0; i < cmd.arg_count; i++)
			n += (size_t)snprintf(rebuilt + n, sizeof(rebuilt) - n, " %s", cmd.args[i]);
		if (len > POP3_LINE_MAX || n != len || strncasecmp(rebuilt, line, len) != 0 ||
		    memcmp(rebuilt + strlen(cmd.keyword), line + strlen(cmd.keyword),
			   len - strlen(cmd.keyword)) != 0 ||
		    strlen(cmd.keyword) > POP3_KEYWORD_MAX)
			bad++;
		for (unsigned i = 0; i < cmd.arg_count; i++) {
			if (cmd.args[i][0] == '\0' && strcmp(cmd.keyword, "PASS") != 0)
				bad++;
		}
	}
	CHECK(bad == 0);
}

void suite_pop3_command(void)
{
	test_commands();
	test_pass();
	test_errors();
	test_line_length();
	test_fuzz();
}
