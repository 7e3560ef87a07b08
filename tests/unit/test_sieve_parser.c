/* test_sieve_parser.c - unit tests for src/proto/sieve_parser.
 *
 * As in test_imap_parser.c, most tests run an input through a small driver
 * that behaves like the real caller (keeps unconsumed bytes, drops consumed
 * bytes, asks for a string line where the ManageSieve front-end would) and
 * writes what happened as a transcript string.  Every input is run three
 * ways, all at once, one byte at a time and in pseudo-random chunks, and the
 * three transcripts must be identical: that is how the tests check that
 * incremental parsing never changes the result.
 */
#include "unit.h"
#include "proto/sieve_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define MAX_LEN 8192

struct transcript {
	char text[16384];
	size_t len;
	bool overflow; /* text did not fit */
	bool contract; /* the parser broke its own contract */
};

static void t_append(struct transcript *t, const char *s, size_t n)
{
	if (t->len + n >= sizeof(t->text)) {
		t->overflow = true;
		return;
	}
	memcpy(t->text + t->len, s, n);
	t->len += n;
	t->text[t->len] = '\0';
}

static void t_puts(struct transcript *t, const char *s)
{
	t_append(t, s, strlen(s));
}

/* Non-printable bytes as \xNN so that transcripts stay comparable. */
static void t_put_escaped(struct transcript *t, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[8];

		if (c < 0x20 || c >= 0x7f || c == '\\') {
			snprintf(tmp, sizeof(tmp), "\\x%02x", c);
			t_puts(t, tmp);
		} else {
			t_append(t, (const char *)&c, 1);
		}
	}
}

static void t_put_command(struct transcript *t, const struct sieve_command *cmd, size_t consumed)
{
	char tmp[32];

	t_puts(t, cmd->name == NULL ? "-" : cmd->name);
	for (unsigned i = 0; i < cmd->arg_count; i++) {
		const struct sieve_arg *arg = &cmd->args[i];

		t_puts(t, arg->type == SIEVE_ARG_ATOM ? " a:" : " s:");
		if (arg->str == NULL || strlen(arg->str) != arg->len) {
			t->contract = true;
			continue;
		}
		t_put_escaped(t, arg->str, arg->len);
	}
	snprintf(tmp, sizeof(tmp), " [%zu]|", consumed);
	t_puts(t, tmp);
}

/* Is the command_no-th command (from 0) a string line? */
static bool is_string_line(unsigned string_mask, unsigned command_no)
{
	return command_no < 32 && (string_mask >> command_no & 1) != 0;
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

/* Feed input to a fresh parser.  step 0 delivers everything at once, step 1
 * one byte at a time, anything else chunks of 1..step bytes drawn from
 * *rng.  Bit k of string_mask makes the k-th command (from 0) a string
 * line.  Transcript entries: "name args [consumed]|" for COMMAND ("-" for
 * no name), "ERR name [consumed] error|" for ERROR, "TOOLONG|", and at the
 * end "rest=N" for bytes never consumed. */
static void run_parser(const char *input, size_t len, size_t max_len, unsigned string_mask,
		       size_t step, uint32_t *rng, struct transcript *t)
{
	struct sieve_parser *parser = sieve_parser_create(max_len);
	size_t off = 0, delivered = 0, calls = 0;
	unsigned command_no = 0;
	char tmp[64];

	t->len = 0;
	t->text[0] = '\0';
	t->overflow = t->contract = false;
	if (is_string_line(string_mask, 0))
		sieve_parser_expect_string_line(parser);
	for (;;) {
		if (step == 0)
			delivered = len;
		else if (step == 1 || rng == NULL)
			delivered = delivered + 1 > len ? len : delivered + 1;
		else {
			size_t n = 1 + rng_next(rng) % step;
			delivered = len - delivered < n ? len : delivered + n;
		}
		for (;;) {
			struct sieve_command cmd;
			const char *error = "unset";
			size_t consumed = 12345;
			size_t avail = delivered - off;
			enum sieve_parse_status status;

			/* Bounded work: a parser that keeps answering
			 * without progress would otherwise hang the test. */
			if (++calls > 4 * len + 100) {
				t_puts(t, "HANG|");
				t->contract = true;
				goto out;
			}
			status = sieve_parser_parse(parser, input + off, avail, &cmd, &consumed,
						    &error);
			if (consumed > avail)
				t->contract = true;
			switch (status) {
			case SIEVE_PARSE_MORE:
				if (consumed != 0 || error != NULL || cmd.arg_count != 0)
					t->contract = true;
				break;
			case SIEVE_PARSE_COMMAND:
				if (consumed == 0 || consumed > avail || error != NULL ||
				    input[off + consumed - 1] != '\n' ||
				    (cmd.name == NULL) != is_string_line(string_mask, command_no) ||
				    (cmd.name == NULL && cmd.arg_count != 1) ||
				    (cmd.name == NULL && cmd.args[0].type != SIEVE_ARG_STRING) ||
				    cmd.arg_count > SIEVE_ARGS_MAX) {
					t->contract = true;
					goto out;
				}
				t_put_command(t, &cmd, consumed);
				off += consumed;
				if (is_string_line(string_mask, ++command_no))
					sieve_parser_expect_string_line(parser);
				continue;
			case SIEVE_PARSE_ERROR:
				if (consumed == 0 || consumed > avail || error == NULL ||
				    cmd.arg_count != 0 || input[off + consumed - 1] != '\n') {
					t->contract = true;
					goto out;
				}
				t_puts(t, "ERR ");
				t_puts(t, cmd.name == NULL ? "-" : cmd.name);
				snprintf(tmp, sizeof(tmp), " [%zu] ", consumed);
				t_puts(t, tmp);
				t_puts(t, error);
				t_puts(t, "|");
				off += consumed;
				if (is_string_line(string_mask, ++command_no))
					sieve_parser_expect_string_line(parser);
				continue;
			case SIEVE_PARSE_TOO_LONG:
				if (consumed != 0 || error != NULL)
					t->contract = true;
				t_puts(t, "TOOLONG|");
				goto out;
			default:
				t->contract = true;
				goto out;
			}
			break;
		}
		if (delivered == len)
			break;
	}
out:
	snprintf(tmp, sizeof(tmp), "rest=%zu", len - off);
	t_puts(t, tmp);
	sieve_parser_destroy(&parser);
	if (parser != NULL)
		t->contract = true;
}

static struct transcript t_whole, t_bytes, t_chunks;

/* Run input all three ways; the transcripts must agree.  Returns the
 * whole-input transcript. */
static const char *run_all(const char *input, size_t len, size_t max_len, unsigned string_mask)
{
	uint32_t rng = 0x9e3779b9u ^ (uint32_t)len;

	run_parser(input, len, max_len, string_mask, 0, NULL, &t_whole);
	run_parser(input, len, max_len, string_mask, 1, NULL, &t_bytes);
	run_parser(input, len, max_len, string_mask, 7, &rng, &t_chunks);
	CHECK(!t_whole.contract && !t_bytes.contract && !t_chunks.contract);
	CHECK(!t_whole.overflow);
	CHECK_STR(t_bytes.text, t_whole.text);
	CHECK_STR(t_chunks.text, t_whole.text);
	return t_whole.text;
}

/* Expect the transcript of a string literal (may contain NULs). */
#define EXPECT(input, expected) CHECK_STR(run_all(input, sizeof(input) - 1, MAX_LEN, 0), expected)
#define EXPECT_MAX(input, max_len, expected) \
	CHECK_STR(run_all(input, sizeof(input) - 1, max_len, 0), expected)
#define EXPECT_STR(input, mask, expected) \
	CHECK_STR(run_all(input, sizeof(input) - 1, MAX_LEN, mask), expected)

static void test_commands(void)
{
	EXPECT("CAPABILITY\r\n", "CAPABILITY [12]|rest=0");
	EXPECT("capability\n", "capability [11]|rest=0");
	EXPECT("StartTls\r\n", "StartTls [10]|rest=0");
	EXPECT("LOGOUT\r\n", "LOGOUT [8]|rest=0");
	EXPECT("NOOP\r\n", "NOOP [6]|rest=0");
	EXPECT("NOOP \"tag-1\"\r\n", "NOOP s:tag-1 [14]|rest=0");
	/* AUTHENTICATE with the mechanism as a string, with and without an
	 * initial response, quoted or as a literal. */
	EXPECT("AUTHENTICATE \"PLAIN\"\r\n", "AUTHENTICATE s:PLAIN [22]|rest=0");
	EXPECT("AUTHENTICATE \"PLAIN\" \"AHVzZXIAcGFzcw==\"\r\n",
	       "AUTHENTICATE s:PLAIN s:AHVzZXIAcGFzcw== [41]|rest=0");
	EXPECT("AUTHENTICATE \"PLAIN\" {16+}\r\nAHVzZXIAcGFzcw==\r\n",
	       "AUTHENTICATE s:PLAIN s:AHVzZXIAcGFzcw== [46]|rest=0");
	/* {N} is taken as {N+}: no continuation, the data follows. */
	EXPECT("AUTHENTICATE \"PLAIN\" {16}\r\nAHVzZXIAcGFzcw==\r\n",
	       "AUTHENTICATE s:PLAIN s:AHVzZXIAcGFzcw== [45]|rest=0");
	EXPECT("AUTHENTICATE {5+}\r\nPLAIN {3}\r\nabc\r\n",
	       "AUTHENTICATE s:PLAIN s:abc [35]|rest=0");
	/* Atoms: numbers and the like; the mechanism as an atom is the
	 * front-end's business. */
	EXPECT("HAVESPACE \"script\" 12345\r\n", "HAVESPACE s:script a:12345 [26]|rest=0");
	EXPECT("AUTHENTICATE PLAIN\r\n", "AUTHENTICATE a:PLAIN [20]|rest=0");
	EXPECT("X a]b !#$&'+,-./:;<=>?@[^_`|}~\r\n",
	       "X a:a]b a:!#$&'+,-./:;<=>?@[^_`|}~ [32]|rest=0");
	/* Quoted strings: escapes, empty, UTF-8. */
	EXPECT("NOOP \"a\\\"b\\\\c\"\r\n", "NOOP s:a\"b\\x5cc [16]|rest=0");
	EXPECT("NOOP \"\"\r\n", "NOOP s: [9]|rest=0");
	EXPECT("NOOP \"\xc3\xa4\"\r\n", "NOOP s:\\xc3\\xa4 [11]|rest=0");
	/* Literal data can hold anything but NUL, command syntax included. */
	EXPECT("NOOP {10+}\r\nLOGOUT\r\n\"{\r\n", "NOOP s:LOGOUT\\x0d\\x0a\"{ [24]|rest=0");
	EXPECT("NOOP {0+}\r\n\r\n", "NOOP s: [13]|rest=0");
	EXPECT("NOOP {003}\r\nabc\r\n", "NOOP s:abc [17]|rest=0");
	EXPECT("NOOP {1+}\r\nx \"y\" 1\r\n", "NOOP s:x s:y a:1 [20]|rest=0");
}

static void test_pipelining(void)
{
	struct sieve_parser *parser = sieve_parser_create(MAX_LEN);
	struct sieve_command cmd;
	const char *input = "NOOP\r\nCAPABILITY\r\nLOGOUT\r\n";
	size_t consumed;
	const char *error;

	CHECK(sieve_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK(consumed == 6);
	CHECK_STR(cmd.name, "NOOP");
	CHECK(cmd.arg_count == 0 && error == NULL);
	input += consumed;
	CHECK(sieve_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK(consumed == 12);
	CHECK_STR(cmd.name, "CAPABILITY");
	input += consumed;
	CHECK(sieve_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK(consumed == 8);
	input += consumed;
	CHECK(sieve_parser_parse(parser, input, 0, &cmd, &consumed, &error) == SIEVE_PARSE_MORE);
	CHECK(consumed == 0 && error == NULL && cmd.name == NULL);
	sieve_parser_destroy(&parser);
	CHECK(parser == NULL);
	sieve_parser_destroy(&parser);

	EXPECT("NOOP\r\nAUTHENTICATE {5+}\r\nPLAIN\r\nLOGOUT\r\nNO",
	       "NOOP [6]|AUTHENTICATE s:PLAIN [26]|LOGOUT [8]|rest=2");
	/* An error in the middle leaves the neighbours alone. */
	EXPECT("NOOP\r\nAUTHENTICATE \"x\r\nLOGOUT\r\n",
	       "NOOP [6]|ERR AUTHENTICATE [17] unterminated quoted string|LOGOUT [8]|rest=0");
}

static void test_line_ends(void)
{
	EXPECT("NOOP\n", "NOOP [5]|rest=0");
	EXPECT("NOOP {1}\nx \"y\"\n", "NOOP s:x s:y [15]|rest=0");
	EXPECT("NOOP\nLOGOUT\r\n", "NOOP [5]|LOGOUT [8]|rest=0");
	/* A CR anywhere else is an error. */
	EXPECT("NO\rOP\r\n", "ERR - [7] invalid character in command name|rest=0");
	EXPECT("NOOP\r\r\n", "ERR - [7] invalid character in command name|rest=0");
	EXPECT("NOOP x\ry\r\n", "ERR NOOP [10] missing space between arguments|rest=0");
	/* No line end yet: wait. */
	EXPECT("NOOP\r", "rest=5");
	EXPECT("NOOP", "rest=4");
	EXPECT("NOOP {3+}\r\nab", "rest=13");
	EXPECT("", "rest=0");
}

static void test_errors(void)
{
	EXPECT("\r\n", "ERR - [2] empty line|rest=0");
	EXPECT("\n\r\nNOOP\r\n", "ERR - [1] empty line|ERR - [2] empty line|NOOP [6]|rest=0");
	/* Command names are atoms. */
	EXPECT(" NOOP\r\n", "ERR - [7] invalid command name|rest=0");
	EXPECT("\"NOOP\"\r\n", "ERR - [8] invalid command name|rest=0");
	EXPECT("*\r\n", "ERR - [3] invalid command name|rest=0");
	EXPECT("\xc3\xa4\r\n", "ERR - [4] invalid command name|rest=0");
	EXPECT("NO(OP\r\n", "ERR - [7] invalid character in command name|rest=0");
	EXPECT("NOOP\"x\"\r\n", "ERR - [9] invalid character in command name|rest=0");
	EXPECT("NO\0OP\r\n", "ERR - [7] invalid character in command name|rest=0");
	/* A literal in place of the name: its data is still skipped. */
	EXPECT("{6+}\r\nLOGOUT\r\nNOOP\r\n", "ERR - [14] invalid command name|NOOP [6]|rest=0");
	/* Spaces must be single and not trailing. */
	EXPECT("NOOP \r\n", "ERR NOOP [7] unexpected space at end of line|rest=0");
	EXPECT("NOOP x  y\r\n", "ERR NOOP [11] invalid character in argument|rest=0");
	EXPECT("NOOP x\"y\"\r\n", "ERR NOOP [11] missing space between arguments|rest=0");
	EXPECT("NOOP \"x\"y\r\n", "ERR NOOP [11] missing space between arguments|rest=0");
	/* Characters that start no argument: no lists, no wildcards. */
	EXPECT("NOOP (x)\r\n", "ERR NOOP [10] invalid character in argument|rest=0");
	EXPECT("NOOP )\r\n", "ERR NOOP [8] invalid character in argument|rest=0");
	EXPECT("NOOP *\r\n", "ERR NOOP [8] invalid character in argument|rest=0");
	EXPECT("NOOP a%\r\n", "ERR NOOP [9] missing space between arguments|rest=0");
	EXPECT("NOOP \xc3\xa4\r\n", "ERR NOOP [9] invalid character in argument|rest=0");
	EXPECT("NOOP x\\y\r\n", "ERR NOOP [10] missing space between arguments|rest=0");
	/* Quoted strings. */
	EXPECT("NOOP \"x\\n\"\r\n", "ERR NOOP [12] invalid escape in quoted string|rest=0");
	EXPECT("NOOP \"x\\\r\n", "ERR NOOP [10] unterminated quoted string|rest=0");
	EXPECT("NOOP \"x y\r\n", "ERR NOOP [11] unterminated quoted string|rest=0");
	EXPECT("NOOP \"x\0y\"\r\n", "ERR NOOP [12] invalid character in quoted string|rest=0");
	EXPECT("NOOP \"x\ry\"\r\n", "ERR NOOP [12] invalid character in quoted string|rest=0");
	/* Literal headers. */
	EXPECT("NOOP {}\r\n", "ERR NOOP [9] invalid literal size|rest=0");
	EXPECT("NOOP {+}\r\n", "ERR NOOP [10] invalid literal size|rest=0");
	EXPECT("NOOP {-1}\r\n", "ERR NOOP [11] invalid literal size|rest=0");
	EXPECT("NOOP {1x}\r\n", "ERR NOOP [11] invalid literal size|rest=0");
	EXPECT("NOOP {1++}\r\n", "ERR NOOP [12] invalid literal size|rest=0");
	EXPECT("NOOP {1\r\n", "ERR NOOP [9] invalid literal size|rest=0");
	EXPECT("NOOP {1} x\r\n", "ERR NOOP [12] literal size not followed by end of line|rest=0");
	/* A bad line that ends like a literal header is taken for one, as
	 * the client will send that data whatever the server answers. */
	EXPECT("NOOP x{1}\r\nNOOP\r\n", "ERR NOOP [17] missing space between arguments|rest=0");
	/* A bad line ending in a literal header: the client sends the data
	 * regardless, with {N+} and {N} alike, so it goes with the line. */
	EXPECT("NOOP \"\\x\" {8+}\r\nLOGOUT\r\n\r\nNOOP\r\n",
	       "ERR NOOP [26] invalid escape in quoted string|NOOP [6]|rest=0");
	EXPECT("NOOP \"\\x\" {8}\r\nLOGOUT\r\n\r\nNOOP\r\n",
	       "ERR NOOP [25] invalid escape in quoted string|NOOP [6]|rest=0");
	/* ... including the rest of the line after that data. */
	EXPECT("NOOP \"\\x\" {3+}\r\nabc {3}\r\nxyz\r\nNOOP\r\n",
	       "ERR NOOP [30] invalid escape in quoted string|NOOP [6]|rest=0");
	/* NUL in a literal: the literal and the rest of its line go. */
	EXPECT("NOOP {3}\r\nu\0r x\r\nNOOP\r\n", "ERR NOOP [17] NUL in literal|NOOP [6]|rest=0");
	/* After a literal only SP or the line end. */
	EXPECT("NOOP {1+}\r\nxy\r\n", "ERR NOOP [15] missing space between arguments|rest=0");
	EXPECT("NOOP {1+}\r\nx\"y\"\r\n", "ERR NOOP [17] missing space between arguments|rest=0");
}

static void test_too_many_args(void)
{
	EXPECT("X 1 2 3 4 5 6 7 8\r\n", "X a:1 a:2 a:3 a:4 a:5 a:6 a:7 a:8 [19]|rest=0");
	EXPECT("X 1 2 3 4 5 6 7 8 9\r\nNOOP\r\n", "ERR X [21] too many arguments|NOOP [6]|rest=0");
	EXPECT("X 1 2 3 4 5 6 7 8 \"9\"\r\n", "ERR X [23] too many arguments|rest=0");
	/* The ninth as a literal: its data is skipped. */
	EXPECT("X 1 2 3 4 5 6 7 8 {2+}\r\nxy\r\nNOOP\r\n",
	       "ERR X [28] too many arguments|NOOP [6]|rest=0");
	EXPECT("X 1 2 3 4 5 6 7 {1}\r\nx {1}\r\ny\r\nNOOP\r\n",
	       "ERR X [31] too many arguments|NOOP [6]|rest=0");
}

static void test_too_long(void)
{
	size_t n;

	/* max_len 20: a 20-byte command fits, a 21-byte one does not. */
	EXPECT_MAX("NOOP \"0123456789a\"\r\n", 20, "NOOP s:0123456789a [20]|rest=0");
	EXPECT_MAX("NOOP \"0123456789ab\"\r\n", 20, "TOOLONG|rest=21");
	EXPECT_MAX("NOOP \"0123456789ab\"\n", 20, "NOOP s:0123456789ab [20]|rest=0");
	/* Without any LF: as soon as max_len bytes are pending. */
	EXPECT_MAX("NOOP \"0123456789abcdefghij", 20, "TOOLONG|rest=26");
	EXPECT_MAX("NOOP \"0123456789abcd", 20, "TOOLONG|rest=20");
	EXPECT_MAX("NOOP \"0123456789abc", 20, "rest=19");
	/* Each command gets its own max_len. */
	EXPECT_MAX("NOOP \"0123456789a\"\r\nNOOP \"0123456789a\"\r\n", 20,
		   "NOOP s:0123456789a [20]|NOOP s:0123456789a [20]|rest=0");
	/* Bad lines too: an error does not buy unlimited skipping. */
	EXPECT_MAX("NOOP \"\\x\" ...........\r\n", 20, "TOOLONG|rest=23");
	/* A literal that cannot fit: no waiting for its data. */
	EXPECT_MAX("NOOP {8+}\r\n", 20, "rest=11");
	EXPECT_MAX("NOOP {9+}\r\n", 20, "TOOLONG|rest=11");
	EXPECT_MAX("NOOP {9}\r\n", 20, "rest=10");
	EXPECT_MAX("NOOP {10}\r\n", 20, "TOOLONG|rest=11");
	EXPECT_MAX("NOOP {8+}\r\n12345678\r\n", 20, "TOOLONG|rest=21");
	EXPECT_MAX("NOOP {8+}\r\n12345678\n", 20, "NOOP s:12345678 [20]|rest=0");
	EXPECT("NOOP {99999999999999999999999999}\r\n", "TOOLONG|rest=35");
	EXPECT("NOOP {18446744073709551616+}\r\n", "TOOLONG|rest=30");
	EXPECT("NOOP {8192+}\r\n", "TOOLONG|rest=14");
	/* Also within a command that is already bad. */
	EXPECT("NOOP \"\\x\" {99999999999999999999+}\r\n", "TOOLONG|rest=35");
	EXPECT("NOOP \"\\x\" {000000000000000000000000001}\r\nx\r\n",
	       "ERR NOOP [44] invalid escape in quoted string|rest=0");
	/* A long literal that fits exactly. */
	{
		static char big[MAX_LEN + 100];
		size_t hdr = (size_t)snprintf(big, sizeof(big), "NOOP {%u+}\r\n", MAX_LEN - 16);

		CHECK(hdr == 14);
		memset(big + hdr, 'p', MAX_LEN - 16);
		n = hdr + MAX_LEN - 16;
		n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
		CHECK(n == MAX_LEN);
		run_all(big, n, MAX_LEN, 0);
		CHECK(strncmp(t_whole.text, "NOOP s:pppp", 11) == 0);
		run_all(big, n, n - 1, 0);
		CHECK_STR(t_whole.text, "TOOLONG|rest=8192");
	}
	/* After TOO_LONG the parser keeps saying so until reset. */
	{
		struct sieve_parser *parser = sieve_parser_create(20);
		struct sieve_command cmd;
		size_t consumed;
		const char *error;

		CHECK(sieve_parser_parse(parser, "NOOP {100+}\r\n", 13, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_TOO_LONG);
		CHECK_STR(cmd.name, "NOOP");
		CHECK(consumed == 0 && error == NULL);
		CHECK(sieve_parser_parse(parser, "NOOP\r\n", 6, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_TOO_LONG);
		sieve_parser_reset(parser);
		CHECK(sieve_parser_parse(parser, "NOOP\r\n", 6, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_COMMAND);
		sieve_parser_destroy(&parser);
	}
	/* Absurd sizes are refused at create time. */
	CHECK(sieve_parser_create(SIZE_MAX) == NULL);
}

static void test_string_line(void)
{
	/* The SASL exchange of AUTHENTICATE: command, then response lines. */
	EXPECT_STR("\"AHVzZXIAcGFzcw==\"\r\n", 1, "- s:AHVzZXIAcGFzcw== [20]|rest=0");
	EXPECT_STR("\"*\"\r\n", 1, "- s:* [5]|rest=0");
	EXPECT_STR("\"\"\r\n", 1, "- s: [4]|rest=0");
	EXPECT_STR("{4+}\r\nAHVz\r\n", 1, "- s:AHVz [12]|rest=0");
	EXPECT_STR("{4}\r\nAHVz\n", 1, "- s:AHVz [10]|rest=0");
	EXPECT_STR("AUTHENTICATE \"PLAIN\"\r\n\"AHVz\"\r\nNOOP\r\n", 2,
		   "AUTHENTICATE s:PLAIN [22]|- s:AHVz [8]|NOOP [6]|rest=0");
	/* Several rounds (e.g. SCRAM). */
	EXPECT_STR("\"a\"\r\n{1+}\r\nb\r\n\"c\"\r\n", 7, "- s:a [5]|- s:b [9]|- s:c [5]|rest=0");
	/* Only one string: no name, no atom, nothing else. */
	EXPECT_STR("\r\n", 1, "ERR - [2] empty line|rest=0");
	EXPECT_STR("AHVz\r\n", 1, "ERR - [6] expected a quoted string or literal|rest=0");
	EXPECT_STR("*\r\n", 1, "ERR - [3] expected a quoted string or literal|rest=0");
	EXPECT_STR(" \"a\"\r\n", 1, "ERR - [6] expected a quoted string or literal|rest=0");
	EXPECT_STR("\"a\" \"b\"\r\n", 1, "ERR - [9] expected a single string|rest=0");
	EXPECT_STR("\"a\" b\r\n", 1, "ERR - [7] expected a single string|rest=0");
	EXPECT_STR("\"a\" \r\n", 1, "ERR - [6] unexpected space at end of line|rest=0");
	EXPECT_STR("\"a\"b\r\n", 1, "ERR - [6] missing space between arguments|rest=0");
	EXPECT_STR("\"a\\q\"\r\n", 1, "ERR - [7] invalid escape in quoted string|rest=0");
	/* A second literal is refused and its data skipped. */
	EXPECT_STR("{1+}\r\na {1+}\r\nb\r\nNOOP\r\n", 1,
		   "ERR - [17] expected a single string|NOOP [6]|rest=0");
	/* The rule applies to one command; an ERROR uses it up too. */
	EXPECT_STR("x\r\n\"a\"\r\n", 1,
		   "ERR - [3] expected a quoted string or literal|"
		   "ERR - [5] invalid command name|rest=0");
	EXPECT_STR("NOOP\r\n\"a\"\r\n", 2, "NOOP [6]|- s:a [5]|rest=0");

	/* Asked for in the middle of a command: it is parsed afresh, and
	 * reset forgets the request. */
	{
		struct sieve_parser *parser = sieve_parser_create(MAX_LEN);
		struct sieve_command cmd;
		size_t consumed;
		const char *error;

		CHECK(sieve_parser_parse(parser, "\"ab", 3, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_MORE);
		sieve_parser_expect_string_line(parser);
		CHECK(sieve_parser_parse(parser, "\"ab\"\r\n", 6, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_COMMAND);
		CHECK(cmd.name == NULL && cmd.arg_count == 1 && consumed == 6);
		CHECK(cmd.args[0].type == SIEVE_ARG_STRING);
		CHECK_STR(cmd.args[0].str, "ab");
		/* Used up: the same bytes are now a bad command. */
		CHECK(sieve_parser_parse(parser, "\"ab\"\r\n", 6, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_ERROR);
		CHECK_STR(error, "invalid command name");

		sieve_parser_expect_string_line(parser);
		sieve_parser_reset(parser);
		CHECK(sieve_parser_parse(parser, "NOOP\r\n", 6, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_COMMAND);
		CHECK_STR(cmd.name, "NOOP");

		/* TOO_LONG in a string line; reset clears both. */
		sieve_parser_expect_string_line(parser);
		CHECK(sieve_parser_parse(parser, "{9999+}\r\n", 9, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_TOO_LONG);
		CHECK(cmd.name == NULL);
		sieve_parser_reset(parser);
		CHECK(sieve_parser_parse(parser, "NOOP\r\n", 6, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_COMMAND);
		sieve_parser_destroy(&parser);
	}
}

/* Partial results and the calling convention, driven by hand. */
static void test_api(void)
{
	struct sieve_parser *parser = sieve_parser_create(MAX_LEN);
	struct sieve_command cmd;
	const char *input = "AUTHENTICATE \"PLAIN\" {4+}\r\nabcd\r\n";
	size_t len = strlen(input), consumed;
	const char *error;

	/* Before the end: MORE, with the name once it is known. */
	CHECK(sieve_parser_parse(parser, input, 5, &cmd, &consumed, &error) == SIEVE_PARSE_MORE);
	CHECK(cmd.name == NULL);
	CHECK(sieve_parser_parse(parser, input, 28, &cmd, &consumed, &error) == SIEVE_PARSE_MORE);
	CHECK_STR(cmd.name, "AUTHENTICATE");
	CHECK(cmd.arg_count == 0 && consumed == 0 && error == NULL);
	for (size_t n = 28; n < len; n++)
		CHECK(sieve_parser_parse(parser, input, n, &cmd, &consumed, &error) ==
		      SIEVE_PARSE_MORE);
	CHECK(sieve_parser_parse(parser, input, len, &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK(consumed == len && cmd.arg_count == 2);
	CHECK(cmd.args[1].len == 4);
	CHECK_STR(cmd.args[1].str, "abcd");

	/* Less input than before breaks the calling convention; the parser
	 * starts over rather than trusting offsets into vanished bytes. */
	CHECK(sieve_parser_parse(parser, input, 30, &cmd, &consumed, &error) == SIEVE_PARSE_MORE);
	CHECK(sieve_parser_parse(parser, "NOOP\r\n", 6, &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK_STR(cmd.name, "NOOP");

	/* reset forgets a half-parsed command. */
	CHECK(sieve_parser_parse(parser, input, 30, &cmd, &consumed, &error) == SIEVE_PARSE_MORE);
	sieve_parser_reset(parser);
	CHECK(sieve_parser_parse(parser, "LOGOUT\r\n", 8, &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK_STR(cmd.name, "LOGOUT");
	CHECK(consumed == 8);

	/* ERROR: the name if parsed, no arguments, the line consumed. */
	input = "AUTHENTICATE \"PLAIN\" \"a\\b\"\r\nNOOP\r\n";
	CHECK(sieve_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      SIEVE_PARSE_ERROR);
	CHECK_STR(cmd.name, "AUTHENTICATE");
	CHECK(cmd.arg_count == 0);
	CHECK(consumed == 28);
	CHECK_STR(error, "invalid escape in quoted string");
	CHECK(sieve_parser_parse(parser, input + consumed, 6, &cmd, &consumed, &error) ==
	      SIEVE_PARSE_COMMAND);
	CHECK(error == NULL);
	sieve_parser_destroy(&parser);
}

/* One byte at a time through a command of almost 1 MiB, most of it one
 * line: a parser that rescanned the pending line on every call would need
 * some 5 * 10^11 steps here; a linear one a fraction of a second. */
static void test_linear(void)
{
	const size_t max_len = 1 << 20, quoted = 1000000, literal = 1000;
	struct sieve_parser *parser = sieve_parser_create(max_len);
	char *input = malloc(max_len);
	size_t n = 0, consumed = 0;
	const char *error;
	struct sieve_command cmd;
	enum sieve_parse_status status = SIEVE_PARSE_MORE;
	clock_t start = clock();

	CHECK(parser != NULL && input != NULL);
	if (parser == NULL || input == NULL) {
		free(input);
		sieve_parser_destroy(&parser);
		return;
	}
	n += (size_t)sprintf(input, "PUTSCRIPT \"");
	memset(input + n, 'x', quoted);
	n += quoted;
	n += (size_t)sprintf(input + n, "\" {%zu+}\r\n", literal);
	memset(input + n, 'y', literal);
	n += literal;
	n += (size_t)sprintf(input + n, " 1\r\n");

	for (size_t i = 1; i <= n; i++) {
		status = sieve_parser_parse(parser, input, i, &cmd, &consumed, &error);
		if (status != SIEVE_PARSE_MORE)
			break;
	}
	CHECK(status == SIEVE_PARSE_COMMAND);
	CHECK(consumed == n);
	CHECK(cmd.arg_count == 3);
	CHECK(cmd.args[0].len == quoted && cmd.args[1].len == literal && cmd.args[2].len == 1);
	CHECK(clock() - start < 8 * CLOCKS_PER_SEC);
	free(input);
	sieve_parser_destroy(&parser);
}

/* Pieces that mutations splice in: the parser's interesting syntax. */
static const char *const fuzz_tokens[] = {
	"{",        "}",        "\"",    "\\",         "(",     " ",
	"\r\n",     "\n",       "\r",    "\0",         "+",     "{5}\r\n",
	"{3+}\r\n", "{0}\r\n",  "\\\"",  "*",          "NOOP ", "{99999+}\r\n",
	"\xff",     "{1+}\r\n", "{2}\n", "LOGOUT\r\n",
};

static const char *const fuzz_seeds[] = {
	"CAPABILITY\r\n",
	"AUTHENTICATE \"PLAIN\" \"AHVzZXIAcGFzcw==\"\r\n",
	"AUTHENTICATE \"PLAIN\" {16+}\r\nAHVzZXIAcGFzcw==\r\n",
	"AUTHENTICATE \"PLAIN\" {4}\r\nabcd\r\n",
	"\"AHVzZXIAcGFzcw==\"\r\n",
	"{3+}\r\nabc\r\n",
	"NOOP \"a\\\"b\"\nSTARTTLS\r\nLOGOUT\r\n",
	"HAVESPACE \"x\" 100\r\n",
};

static void fuzz_one(const char *input, size_t len, size_t max_len, unsigned string_mask,
		     uint32_t *rng)
{
	/* The three transcripts are compared only as a whole, so that one
	 * disagreement costs one failure and one message, not thousands. */
	uint32_t chunk_rng = rng_next(rng);
	bool bad;

	run_parser(input, len, max_len, string_mask, 0, NULL, &t_whole);
	run_parser(input, len, max_len, string_mask, 1, NULL, &t_bytes);
	run_parser(input, len, max_len, string_mask, 1 + rng_next(rng) % 16, &chunk_rng, &t_chunks);
	bad = t_whole.contract || t_bytes.contract || t_chunks.contract || t_whole.overflow ||
	      strcmp(t_whole.text, t_bytes.text) != 0 || strcmp(t_whole.text, t_chunks.text) != 0;
	CHECK(!bad);
	if (bad) {
		fprintf(stderr, "  input (%zu bytes, max_len %zu, mask %x): ", len, max_len,
			string_mask);
		t_bytes.len = 0;
		t_put_escaped(&t_bytes, input, len);
		fprintf(stderr, "%s\n  whole: %s\n  chunks: %s\n", t_bytes.text, t_whole.text,
			t_chunks.text);
	}
}

static void test_fuzz(void)
{
	uint32_t rng = 20240602u;
	char buf[512];

	for (unsigned iter = 0; iter < 20000; iter++) {
		size_t len = 0, max_len;
		unsigned mode = rng_next(&rng) % 4, string_mask;

		if (mode == 0) {
			/* Random bytes from a syntax-heavy alphabet. */
			static const char alphabet[] = "aA1 ()\"\\{}+\r\n\r\n*%\0\x80";
			size_t n = rng_next(&rng) % 80;

			for (; len < n; len++)
				buf[len] = alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
		} else {
			/* A few seeds, then a few mutations. */
			unsigned seeds = 1 + rng_next(&rng) % 3;
			unsigned mutations = rng_next(&rng) % 5;

			for (unsigned s = 0; s < seeds; s++) {
				const char *seed =
					fuzz_seeds[rng_next(&rng) %
						   (sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]))];
				size_t sl = strlen(seed);

				if (len + sl < sizeof(buf) / 2) {
					memcpy(buf + len, seed, sl);
					len += sl;
				}
			}
			for (unsigned m = 0; m < mutations && len > 0; m++) {
				size_t pos = rng_next(&rng) % len;
				unsigned op = rng_next(&rng) % 4;

				if (op == 0) {
					buf[pos] = (char)rng_next(&rng);
				} else if (op == 1) {
					memmove(buf + pos, buf + pos + 1, len - pos - 1);
					len--;
				} else {
					size_t k = rng_next(&rng) %
						   (sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]));
					const char *tok = fuzz_tokens[k];
					size_t tl = tok[0] == '\0' ? 1 : strlen(tok);

					if (len + tl > sizeof(buf))
						continue;
					memmove(buf + pos + tl, buf + pos, len - pos);
					memcpy(buf + pos, tok, tl);
					len += tl;
				}
			}
		}
		/* Mostly roomy, sometimes tight enough to hit TOO_LONG. */
		max_len = rng_next(&rng) % 3 == 0 ? 1 + rng_next(&rng) % 64 : MAX_LEN;
		/* Sometimes some commands are string lines. */
		string_mask = rng_next(&rng) % 2 == 0 ? 0 : rng_next(&rng) & 0xff;
		fuzz_one(buf, len, max_len, string_mask, &rng);
	}
}

void suite_sieve_parser(void)
{
	test_commands();
	test_pipelining();
	test_line_ends();
	test_errors();
	test_too_many_args();
	test_too_long();
	test_string_line();
	test_api();
	test_linear();
	test_fuzz();
}
