/* test_imap_parser.c - unit tests for src/proto/imap_parser.
 *
 * Most tests run an input through a small driver that behaves like the real
 * caller (keeps unconsumed bytes, answers CONTINUE, drops consumed bytes)
 * and writes what happened as a transcript string.  Every input is run
 * three ways, all at once, one byte at a time and in pseudo-random chunks,
 * and the three transcripts must be identical: that is how the tests check
 * that incremental parsing never changes the result and that CONTINUE comes
 * exactly once per synchronising literal.
 */
#include "unit.h"
#include "proto/imap_parser.h"

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

/* Strings are written with non-printable bytes as \xNN so that transcripts
 * stay readable and comparable. */
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

static void t_put_command(struct transcript *t, const struct imap_command *cmd, size_t consumed)
{
	char tmp[32];

	t_puts(t, cmd->tag);
	t_puts(t, " ");
	t_puts(t, cmd->name);
	for (unsigned i = 0; i < cmd->arg_count; i++) {
		const struct imap_arg *arg = &cmd->args[i];

		switch (arg->type) {
		case IMAP_ARG_ATOM:
			t_puts(t, " a:");
			t_put_escaped(t, arg->str, arg->len);
			if (strlen(arg->str) != arg->len)
				t->contract = true;
			break;
		case IMAP_ARG_STRING:
			t_puts(t, " s:");
			t_put_escaped(t, arg->str, arg->len);
			if (strlen(arg->str) != arg->len)
				t->contract = true;
			break;
		case IMAP_ARG_NIL:
			t_puts(t, " NIL");
			if (arg->str != NULL)
				t->contract = true;
			break;
		case IMAP_ARG_LIST_START:
			t_puts(t, " (");
			if (arg->str != NULL)
				t->contract = true;
			break;
		case IMAP_ARG_LIST_END:
			t_puts(t, " )");
			if (arg->str != NULL)
				t->contract = true;
			break;
		}
	}
	snprintf(tmp, sizeof(tmp), " [%zu]|", consumed);
	t_puts(t, tmp);
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
 * *rng.  Transcript entries: "+|" for CONTINUE, "tag name args [consumed]|"
 * for COMMAND, "ERR tag [consumed] error|" for ERROR, "TOOLONG|", and at
 * the end "rest=N" for bytes never consumed. */
static void run_parser(const char *input, size_t len, size_t max_len, size_t step, uint32_t *rng,
		       struct transcript *t)
{
	struct imap_parser *parser = imap_parser_create(max_len);
	size_t off = 0, delivered = 0, calls = 0;
	char tmp[64];

	t->len = 0;
	t->text[0] = '\0';
	t->overflow = t->contract = false;
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
			struct imap_command cmd;
			const char *error = "unset";
			size_t consumed = 12345;
			size_t avail = delivered - off;
			enum imap_parse_status status;

			/* Bounded work: a parser that keeps answering
			 * without progress would otherwise hang the test. */
			if (++calls > 4 * len + 100) {
				t_puts(t, "HANG|");
				t->contract = true;
				goto out;
			}
			status = imap_parser_parse(parser, input + off, avail, &cmd, &consumed,
						   &error);
			if (consumed > avail)
				t->contract = true;
			switch (status) {
			case IMAP_PARSE_MORE:
				if (consumed != 0 || error != NULL || cmd.arg_count != 0)
					t->contract = true;
				break;
			case IMAP_PARSE_CONTINUE:
				if (consumed != 0 || error != NULL)
					t->contract = true;
				t_puts(t, "+|");
				continue;
			case IMAP_PARSE_COMMAND:
				if (consumed == 0 || consumed > avail || error != NULL ||
				    cmd.tag == NULL || cmd.name == NULL ||
				    input[off + consumed - 1] != '\n')
					t->contract = true;
				else
					t_put_command(t, &cmd, consumed);
				off += consumed;
				continue;
			case IMAP_PARSE_ERROR:
				if (consumed == 0 || consumed > avail || error == NULL ||
				    input[off + consumed - 1] != '\n') {
					t->contract = true;
					goto out;
				}
				t_puts(t, "ERR ");
				t_puts(t, cmd.tag == NULL ? "-" : cmd.tag);
				snprintf(tmp, sizeof(tmp), " [%zu] ", consumed);
				t_puts(t, tmp);
				t_puts(t, error);
				t_puts(t, "|");
				off += consumed;
				continue;
			case IMAP_PARSE_TOO_LONG:
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
	imap_parser_destroy(&parser);
	if (parser != NULL)
		t->contract = true;
}

static struct transcript t_whole, t_bytes, t_chunks;

/* Run input all three ways; the transcripts must agree.  Returns the
 * whole-input transcript. */
static const char *run_all(const char *input, size_t len, size_t max_len)
{
	uint32_t rng = 0x9e3779b9u ^ (uint32_t)len;

	run_parser(input, len, max_len, 0, NULL, &t_whole);
	run_parser(input, len, max_len, 1, NULL, &t_bytes);
	run_parser(input, len, max_len, 7, &rng, &t_chunks);
	CHECK(!t_whole.contract && !t_bytes.contract && !t_chunks.contract);
	CHECK(!t_whole.overflow);
	CHECK_STR(t_bytes.text, t_whole.text);
	CHECK_STR(t_chunks.text, t_whole.text);
	return t_whole.text;
}

/* Expect the transcript of a string literal (may contain NULs). */
#define EXPECT(input, expected) CHECK_STR(run_all(input, sizeof(input) - 1, MAX_LEN), expected)
#define EXPECT_MAX(input, max_len, expected) \
	CHECK_STR(run_all(input, sizeof(input) - 1, max_len), expected)

static void test_login(void)
{
	/* Atoms, any case, astring characters including ']'. */
	EXPECT("a1 LOGIN user pass\r\n", "a1 LOGIN a:user a:pass [20]|rest=0");
	EXPECT("a1 login us]er p@ss!#$&'+,-./:;<=>?^_`|~\r\n",
	       "a1 login a:us]er a:p@ss!#$&'+,-./:;<=>?^_`|~ [42]|rest=0");
	/* Quoted strings with both escapes, empty string, UTF-8. */
	EXPECT("t LOGIN \"us er\" \"p\\\"a\\\\ss\"\r\n",
	       "t LOGIN s:us er s:p\"a\\x5css [28]|rest=0");
	EXPECT("t LOGIN \"\" \"\xc3\xa4\"\r\n", "t LOGIN s: s:\\xc3\\xa4 [17]|rest=0");
	/* Synchronising literals: one CONTINUE each. */
	EXPECT("x LOGIN {4}\r\nuser {4}\r\npass\r\n", "+|+|x LOGIN s:user s:pass [29]|rest=0");
	/* LITERAL+: no CONTINUE. */
	EXPECT("x LOGIN {4+}\r\nuser {4+}\r\npass\r\n", "x LOGIN s:user s:pass [31]|rest=0");
	/* Mixed. */
	EXPECT("x LOGIN {4+}\r\nuser \"pa ss\"\r\n", "x LOGIN s:user s:pa ss [28]|rest=0");
	EXPECT("x LOGIN \"user\" {4}\r\np\r\ns\r\n", "+|x LOGIN s:user s:p\\x0d\\x0as [26]|rest=0");
	EXPECT("x LOGIN user {0}\r\n\r\n", "+|x LOGIN a:user s: [20]|rest=0");
	/* Literal data can hold anything but NUL, including IMAP syntax. */
	EXPECT("x LOGIN {10+}\r\nb LOGOUT\r\n {2}\r\n\r\n\r\n",
	       "+|x LOGIN s:b LOGOUT\\x0d\\x0a s:\\x0d\\x0a [35]|rest=0");
	/* The literal may be followed directly by the end of the line. */
	EXPECT("x LOGIN user {3}\r\nabc\n", "+|x LOGIN a:user s:abc [22]|rest=0");
	/* Leading zeros in the literal size are digits like any other. */
	EXPECT("x LOGIN user {003+}\r\nabc\r\n", "x LOGIN a:user s:abc [26]|rest=0");
}

static void test_authenticate(void)
{
	EXPECT("A001 AUTHENTICATE PLAIN\r\n", "A001 AUTHENTICATE a:PLAIN [25]|rest=0");
	EXPECT("A001 AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n",
	       "A001 AUTHENTICATE a:PLAIN a:AHVzZXIAcGFzcw== [42]|rest=0");
	/* SASL-IR's "=" for an empty initial response is an atom too. */
	EXPECT("A001 AUTHENTICATE PLAIN =\r\n", "A001 AUTHENTICATE a:PLAIN a:= [27]|rest=0");
}

static void test_id_and_lists(void)
{
	EXPECT("i ID NIL\r\n", "i ID NIL [10]|rest=0");
	EXPECT("i ID nil\r\n", "i ID NIL [10]|rest=0");
	EXPECT("i ID Nil\r\n", "i ID NIL [10]|rest=0");
	/* Only the atom NIL is NIL; a quoted "NIL" or NILS is not. */
	EXPECT("i ID \"NIL\" NILS NI\r\n", "i ID s:NIL a:NILS a:NI [20]|rest=0");
	EXPECT("i ID (\"name\" \"sodr\" \"version\" NIL)\r\n",
	       "i ID ( s:name s:sodr s:version NIL ) [36]|rest=0");
	EXPECT("i ID ()\r\n", "i ID ( ) [9]|rest=0");
	EXPECT("i ID (a (b ()) c) d\r\n", "i ID ( a:a ( a:b ( ) ) a:c ) a:d [21]|rest=0");
	/* A list may span a literal. */
	EXPECT("i ID (\"x\" {1}\r\ny)\r\n", "+|i ID ( s:x s:y ) [19]|rest=0");
	EXPECT("i ID ({1+}\r\ny {1+}\r\nz)\r\n", "i ID ( s:y s:z ) [24]|rest=0");
	/* No arguments. */
	EXPECT("c CAPABILITY\r\n", "c CAPABILITY [14]|rest=0");
	EXPECT("c capability\n", "c capability [13]|rest=0");
	/* Tags are astrings without '+'. */
	EXPECT("a]b.1 NOOP\r\n", "a]b.1 NOOP [12]|rest=0");
}

static void test_pipelining(void)
{
	struct imap_parser *parser = imap_parser_create(MAX_LEN);
	struct imap_command cmd;
	const char *input = "a NOOP\r\nb CAPABILITY\r\nc LOGOUT\r\n";
	size_t consumed;
	const char *error;

	/* consumed_r stops at the end of the first command. */
	CHECK(imap_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK(consumed == 8);
	CHECK_STR(cmd.tag, "a");
	CHECK_STR(cmd.name, "NOOP");
	CHECK(cmd.arg_count == 0);
	input += consumed;
	CHECK(imap_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK(consumed == 14);
	CHECK_STR(cmd.name, "CAPABILITY");
	input += consumed;
	CHECK(imap_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK(consumed == 10);
	CHECK_STR(cmd.tag, "c");
	input += consumed;
	CHECK(imap_parser_parse(parser, input, 0, &cmd, &consumed, &error) == IMAP_PARSE_MORE);
	CHECK(consumed == 0 && error == NULL);
	imap_parser_destroy(&parser);
	CHECK(parser == NULL);
	imap_parser_destroy(&parser);

	EXPECT("a NOOP\r\nb LOGIN {1+}\r\nx y\r\nc LOGOUT\r\nd NO",
	       "a NOOP [8]|b LOGIN s:x a:y [19]|c LOGOUT [10]|rest=4");
	/* An error in the middle leaves the neighbours alone. */
	EXPECT("a NOOP\r\nb LOGIN \"x\r\nc LOGOUT\r\n",
	       "a NOOP [8]|ERR b [12] unterminated quoted string|"
	       "c LOGOUT [10]|rest=0");
}

/* The CONTINUE bookkeeping, driven by hand. */
static void test_continue_once(void)
{
	struct imap_parser *parser = imap_parser_create(MAX_LEN);
	struct imap_command cmd;
	const char *input = "a LOGIN {4}\r\nuser {4}\r\npass\r\n";
	size_t len = strlen(input), consumed;
	const char *error;
	unsigned continues = 0;

	/* Before the header's LF: MORE, however often asked. */
	for (unsigned i = 0; i < 3; i++)
		CHECK(imap_parser_parse(parser, input, 11, &cmd, &consumed, &error) ==
		      IMAP_PARSE_MORE);
	CHECK(imap_parser_parse(parser, input, 13, &cmd, &consumed, &error) == IMAP_PARSE_CONTINUE);
	CHECK(consumed == 0 && error == NULL);
	CHECK_STR(cmd.tag, "a");
	CHECK_STR(cmd.name, "LOGIN");
	/* The same bytes again, and partial data: MORE, never CONTINUE. */
	for (size_t n = 13; n < 23; n++) {
		enum imap_parse_status s =
			imap_parser_parse(parser, input, n, &cmd, &consumed, &error);
		CHECK(s == IMAP_PARSE_MORE);
	}
	/* The second literal's header. */
	CHECK(imap_parser_parse(parser, input, 23, &cmd, &consumed, &error) == IMAP_PARSE_CONTINUE);
	CHECK(imap_parser_parse(parser, input, 23, &cmd, &consumed, &error) == IMAP_PARSE_MORE);
	CHECK(imap_parser_parse(parser, input, len, &cmd, &consumed, &error) == IMAP_PARSE_COMMAND);
	CHECK(consumed == len);
	CHECK(cmd.arg_count == 2);
	CHECK_STR(cmd.args[0].str, "user");
	CHECK_STR(cmd.args[1].str, "pass");

	/* All at once: still one CONTINUE per literal, then the command. */
	for (;;) {
		enum imap_parse_status s =
			imap_parser_parse(parser, input, len, &cmd, &consumed, &error);
		if (s != IMAP_PARSE_CONTINUE) {
			CHECK(s == IMAP_PARSE_COMMAND);
			break;
		}
		if (++continues > 2)
			break;
	}
	CHECK(continues == 2);

	/* Less input than before breaks the calling convention; the parser
	 * starts over rather than trusting offsets into vanished bytes. */
	CHECK(imap_parser_parse(parser, input, 13, &cmd, &consumed, &error) == IMAP_PARSE_CONTINUE);
	CHECK(imap_parser_parse(parser, "b NOOP\r\n", 8, &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK_STR(cmd.tag, "b");

	/* reset forgets a half-parsed command, and its CONTINUE. */
	CHECK(imap_parser_parse(parser, input, 13, &cmd, &consumed, &error) == IMAP_PARSE_CONTINUE);
	imap_parser_reset(parser);
	CHECK(imap_parser_parse(parser, "b NOOP\r\n", 8, &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK_STR(cmd.tag, "b");
	CHECK(consumed == 8);
	imap_parser_destroy(&parser);
}

static void test_line_ends(void)
{
	/* Bare LF is a line end too, also after a literal header. */
	EXPECT("a NOOP\n", "a NOOP [7]|rest=0");
	EXPECT("a LOGIN {1}\nx \"y\"\n", "+|a LOGIN s:x s:y [18]|rest=0");
	EXPECT("a NOOP\nb NOOP\r\n", "a NOOP [7]|b NOOP [8]|rest=0");
	/* A CR anywhere else is an error. */
	EXPECT("a NO\rOP\r\n", "ERR a [9] invalid character in command name|rest=0");
	EXPECT("a NOOP\r\r\n", "ERR a [9] invalid character in command name|rest=0");
	EXPECT("a LOGIN x\ry\r\n", "ERR a [13] missing space between arguments|rest=0");
	/* No line end yet: wait. */
	EXPECT("a NOOP\r", "rest=7");
	EXPECT("a NOOP", "rest=6");
	EXPECT("", "rest=0");
}

static void test_errors(void)
{
	/* Empty lines and missing or bad tags. */
	EXPECT("\r\n", "ERR - [2] empty line|rest=0");
	EXPECT("\n", "ERR - [1] empty line|rest=0");
	EXPECT("\r\n\r\na NOOP\r\n", "ERR - [2] empty line|ERR - [2] empty line|a NOOP [8]|rest=0");
	EXPECT("*\r\n", "ERR - [3] missing or invalid tag|rest=0");
	EXPECT("* OK hello\r\n", "ERR - [12] missing or invalid tag|rest=0");
	EXPECT("+ NOOP\r\n", "ERR - [8] missing or invalid tag|rest=0");
	EXPECT(" NOOP\r\n", "ERR - [7] missing or invalid tag|rest=0");
	EXPECT("a+ NOOP\r\n", "ERR - [9] invalid character in tag|rest=0");
	EXPECT("a(b NOOP\r\n", "ERR - [10] invalid character in tag|rest=0");
	EXPECT("\xc3\xa4 NOOP\r\n", "ERR - [9] missing or invalid tag|rest=0");
	/* A tag but no usable command name. */
	EXPECT("a\r\n", "ERR a [3] missing command name|rest=0");
	EXPECT("a \r\n", "ERR a [4] missing command name|rest=0");
	EXPECT("a  NOOP\r\n", "ERR a [9] invalid command name|rest=0");
	EXPECT("a \"NOOP\"\r\n", "ERR a [10] invalid command name|rest=0");
	EXPECT("a NO]OP\r\n", "ERR a [9] invalid character in command name|rest=0");
	EXPECT("a NOOP(\r\n", "ERR a [9] invalid character in command name|rest=0");
	/* Spaces must be single and not trailing. */
	EXPECT("a NOOP \r\n", "ERR a [9] unexpected space at end of line|rest=0");
	EXPECT("a LOGIN x  y\r\n", "ERR a [14] invalid character in argument|rest=0");
	EXPECT("a LOGIN x\"y\"\r\n", "ERR a [14] missing space between arguments|rest=0");
	/* Characters that start no argument. */
	EXPECT("a LOGIN %\r\n", "ERR a [11] invalid character in argument|rest=0");
	EXPECT("a LOGIN x\\y\r\n", "ERR a [13] missing space between arguments|rest=0");
	EXPECT("a LOGIN \xc3\xa4\r\n", "ERR a [12] invalid character in argument|rest=0");
	EXPECT("a LOGIN x\0y\r\n", "ERR a [13] missing space between arguments|rest=0");
	/* Quoted strings. */
	EXPECT("a LOGIN \"x\\n\" y\r\n", "ERR a [17] invalid escape in quoted string|rest=0");
	EXPECT("a LOGIN \"x\\\r\n", "ERR a [13] unterminated quoted string|rest=0");
	EXPECT("a LOGIN \"user pass\r\n", "ERR a [20] unterminated quoted string|rest=0");
	EXPECT("a LOGIN \"us\0er\" p\r\n", "ERR a [19] invalid character in quoted string|rest=0");
	EXPECT("a LOGIN \"us\rer\" p\r\n", "ERR a [19] invalid character in quoted string|rest=0");
	/* Lists. */
	EXPECT("a ID (\r\n", "ERR a [8] missing ')'|rest=0");
	EXPECT("a ID (a\r\n", "ERR a [9] missing ')'|rest=0");
	EXPECT("a ID a)\r\n", "ERR a [9] unexpected ')'|rest=0");
	EXPECT("a ID ( a)\r\n", "ERR a [11] invalid character in argument|rest=0");
	EXPECT("a ID (a )\r\n", "ERR a [11] unexpected ')'|rest=0");
	EXPECT("a ID ())\r\n", "ERR a [10] unexpected ')'|rest=0");
	EXPECT("a ID )\r\n", "ERR a [8] unexpected ')'|rest=0");
	EXPECT("a ID (a)b\r\n", "ERR a [11] missing space between arguments|rest=0");
	/* Literal headers. */
	EXPECT("a LOGIN {}\r\n", "ERR a [12] invalid literal size|rest=0");
	EXPECT("a LOGIN {+}\r\n", "ERR a [13] invalid literal size|rest=0");
	EXPECT("a LOGIN {-1}\r\n", "ERR a [14] invalid literal size|rest=0");
	EXPECT("a LOGIN {1x}\r\n", "ERR a [14] invalid literal size|rest=0");
	EXPECT("a LOGIN {1\r\n", "ERR a [12] invalid literal size|rest=0");
	EXPECT("a LOGIN {1} x\r\n", "ERR a [15] literal size not followed by end of line|rest=0");
	EXPECT("a LOGIN ~{1}\r\n", "ERR a [14] missing space between arguments|rest=0");
	/* A bad line with a synchronising literal: no CONTINUE, and the line
	 * ends the command (the client waits for "+", gets BAD). */
	EXPECT("a LOGIN \"x\\y\" {4}\r\n", "ERR a [19] invalid escape in quoted string|rest=0");
	/* A bad line with a LITERAL+: its data is skipped with it, so that
	 * it is never taken for a command. */
	EXPECT("a LOGIN \"x\\y\" {10+}\r\nb LOGOUT\r\n\r\nc NOOP\r\n",
	       "ERR a [33] invalid escape in quoted string|c NOOP [8]|rest=0");
	/* ... including the rest of the line after that data. */
	EXPECT("a LOGIN \"x\\y\" {3+}\r\nabc {3}\r\nxyz\r\n",
	       "ERR a [29] invalid escape in quoted string|"
	       "ERR xyz [5] missing command name|rest=0");
	/* NUL in a literal: the literal and the rest of its line go. */
	EXPECT("a LOGIN {3}\r\nu\0r pass\r\nb NOOP\r\n",
	       "+|ERR a [23] NUL in literal|b NOOP [8]|rest=0");
	EXPECT("a LOGIN {3+}\r\n\0\0\0 {2+}\r\nxx\r\n", "ERR a [28] NUL in literal|rest=0");
	/* After a literal only SP, ')' or the line end. */
	EXPECT("a LOGIN {1+}\r\nxy\r\n", "ERR a [18] missing space between arguments|rest=0");
	/* An error after a literal names the same tag. */
	EXPECT("a LOGIN {1}\r\nx \"\\q\"\r\n",
	       "+|ERR a [21] invalid escape in quoted string|rest=0");
}

static void test_too_many_args(void)
{
	/* IMAP_ARGS_MAX tokens are fine, one more is not. */
	EXPECT("a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\r\n",
	       "a X a:1 a:2 a:3 a:4 a:5 a:6 a:7 a:8 a:9 a:10 a:11 a:12 a:13 "
	       "a:14 a:15 a:16 [44]|rest=0");
	EXPECT("a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\r\nb NOOP\r\n",
	       "ERR a [47] too many arguments|b NOOP [8]|rest=0");
	/* List tokens count. */
	EXPECT("a X (1 2 3 4 5 6 7 8 9 10 11 12 13 14)\r\n",
	       "a X ( a:1 a:2 a:3 a:4 a:5 a:6 a:7 a:8 a:9 a:10 a:11 a:12 a:13 "
	       "a:14 ) [40]|rest=0");
	EXPECT("a X (1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)\r\n",
	       "ERR a [43] too many arguments|rest=0");
	EXPECT("a X ((((((((()))))))))\r\n", "ERR a [24] too many arguments|rest=0");
	EXPECT("a X NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL "
	       "NIL NIL NIL\r\n",
	       "ERR a [73] too many arguments|rest=0");
	EXPECT("a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 \"16\" \"17\"\r\n",
	       "ERR a [51] too many arguments|rest=0");
	/* The 17th as a literal: a synchronising one is not continued, the
	 * data of a LITERAL+ one is skipped. */
	EXPECT("a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 {2}\r\n",
	       "ERR a [48] too many arguments|rest=0");
	EXPECT("a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 {2+}\r\nxy\r\n",
	       "ERR a [53] too many arguments|rest=0");
	EXPECT("a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 {1}\r\nx {1}\r\ny\r\n",
	       "+|ERR a [52] too many arguments|"
	       "ERR y [3] missing command name|rest=0");
}

static void test_too_long(void)
{
	char line[200];
	size_t n;

	/* max_len 20: a 20-byte command fits, a 21-byte one does not. */
	EXPECT_MAX("a LOGIN user passw\r\n", 20, "a LOGIN a:user a:passw [20]|rest=0");
	EXPECT_MAX("a LOGIN user passwd\r\n", 20, "TOOLONG|rest=21");
	EXPECT_MAX("a LOGIN user passwo\n", 20, "a LOGIN a:user a:passwo [20]|rest=0");
	/* Without any LF: as soon as max_len bytes are pending. */
	EXPECT_MAX("a LOGIN user password and more", 20, "TOOLONG|rest=30");
	EXPECT_MAX("a LOGIN user passwor", 20, "TOOLONG|rest=20");
	EXPECT_MAX("a LOGIN user passwo", 20, "rest=19");
	/* Each command gets its own max_len. */
	EXPECT_MAX("a LOGIN user passw\r\nb LOGIN user passw\r\n", 20,
		   "a LOGIN a:user a:passw [20]|b LOGIN a:user a:passw "
		   "[20]|rest=0");
	/* Bad lines too: an error does not buy unlimited skipping. */
	EXPECT_MAX("a LOGIN \"\\x\" ..........\r\n", 20, "TOOLONG|rest=25");
	/* A literal that cannot fit: no CONTINUE, no waiting for its data. */
	EXPECT_MAX("a LOGIN {6}\r\n", 20, "+|rest=13");
	EXPECT_MAX("a LOGIN {5+}\r\n", 20, "rest=14");
	EXPECT_MAX("a LOGIN {7}\r\n", 20, "TOOLONG|rest=13");
	EXPECT_MAX("a LOGIN {6+}\r\n", 20, "TOOLONG|rest=14");
	EXPECT_MAX("a LOGIN {6}\r\n123456\r\n", 20, "+|TOOLONG|rest=21");
	EXPECT_MAX("a LOGIN {6}\r\n123456\n", 20, "+|a LOGIN s:123456 [20]|rest=0");
	EXPECT("a LOGIN {99999999999999999999999999}\r\n", "TOOLONG|rest=38");
	EXPECT("a LOGIN {18446744073709551616+}\r\n", "TOOLONG|rest=33");
	EXPECT("a LOGIN {4294967296}\r\n", "TOOLONG|rest=22");
	EXPECT("a LOGIN {8192}\r\n", "TOOLONG|rest=16");
	/* Also within a command that is already bad. */
	EXPECT("a LOGIN \"\\x\" {99999999999999999999+}\r\n", "TOOLONG|rest=38");
	EXPECT("a LOGIN \"\\x\" {000000000000000000000000001+}\r\nx\r\n",
	       "ERR a [48] invalid escape in quoted string|rest=0");
	/* A long literal that fits exactly. */
	{
		static char big[MAX_LEN + 100];
		size_t hdr =
			(size_t)snprintf(big, sizeof(big), "a LOGIN u {%u+}\r\n", MAX_LEN - 21);
		memset(big + hdr, 'p', MAX_LEN - 21);
		n = hdr + MAX_LEN - 21;
		n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
		CHECK(n == MAX_LEN);
		run_all(big, n, MAX_LEN);
		CHECK(strncmp(t_whole.text, "a LOGIN a:u s:pppp", 18) == 0);
		run_all(big, n, n);
		CHECK(strncmp(t_whole.text, "a LOGIN a:u s:pppp", 18) == 0);
		run_all(big, n, n - 1);
		CHECK_STR(t_whole.text, "TOOLONG|rest=8192");
	}
	/* After TOO_LONG the parser keeps saying so until reset. */
	{
		struct imap_parser *parser = imap_parser_create(20);
		struct imap_command cmd;
		size_t consumed;
		const char *error;

		n = (size_t)snprintf(line, sizeof(line), "a LOGIN {100}\r\n");
		CHECK(imap_parser_parse(parser, line, n, &cmd, &consumed, &error) ==
		      IMAP_PARSE_TOO_LONG);
		CHECK_STR(cmd.tag, "a");
		CHECK(imap_parser_parse(parser, "a NOOP\r\n", 8, &cmd, &consumed, &error) ==
		      IMAP_PARSE_TOO_LONG);
		imap_parser_reset(parser);
		CHECK(imap_parser_parse(parser, "a NOOP\r\n", 8, &cmd, &consumed, &error) ==
		      IMAP_PARSE_COMMAND);
		imap_parser_destroy(&parser);
	}
}

/* A parser error reported through the API: tag, name, consumed. */
static void test_error_fields(void)
{
	struct imap_parser *parser = imap_parser_create(MAX_LEN);
	struct imap_command cmd;
	size_t consumed;
	const char *error;
	const char *input = "tag1 LOGIN \"a\\b\" c\r\nnext NOOP\r\n";

	/* Before the LF: MORE, even though the error is already there. */
	CHECK(imap_parser_parse(parser, input, 18, &cmd, &consumed, &error) == IMAP_PARSE_MORE);
	CHECK(imap_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      IMAP_PARSE_ERROR);
	CHECK(consumed == 20);
	CHECK_STR(cmd.tag, "tag1");
	CHECK_STR(cmd.name, "LOGIN");
	CHECK_STR(error, "invalid escape in quoted string");
	input += consumed;
	CHECK(imap_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK_STR(cmd.tag, "next");
	CHECK(error == NULL);

	CHECK(imap_parser_parse(parser, "* x\r\n", 5, &cmd, &consumed, &error) == IMAP_PARSE_ERROR);
	CHECK(cmd.tag == NULL && cmd.name == NULL && consumed == 5);
	imap_parser_destroy(&parser);
}

static void test_astring(void)
{
	struct imap_parser *parser = imap_parser_create(MAX_LEN);
	struct imap_command cmd;
	size_t consumed;
	const char *error, *str = NULL;
	const char *input = "a X atom \"str\" NIL ()\r\n";

	CHECK(imap_parser_parse(parser, input, strlen(input), &cmd, &consumed, &error) ==
	      IMAP_PARSE_COMMAND);
	CHECK(cmd.arg_count == 5);
	CHECK(imap_arg_get_astring(&cmd.args[0], &str));
	CHECK_STR(str, "atom");
	CHECK(imap_arg_get_astring(&cmd.args[1], &str));
	CHECK_STR(str, "str");
	CHECK(!imap_arg_get_astring(&cmd.args[2], &str));
	CHECK(!imap_arg_get_astring(&cmd.args[3], &str));
	CHECK(!imap_arg_get_astring(&cmd.args[4], &str));
	imap_parser_destroy(&parser);
}

/* One byte at a time through a command of almost 1 MiB, most of it one
 * line: a parser that rescans the pending line on every call does some
 * 5 * 10^11 steps here, which takes far beyond the time limit even with a
 * vectorised memchr(); a linear one needs a fraction of a second. */
static void test_linear(void)
{
	const size_t max_len = 1 << 20, quoted = 1000000, literal = 1000;
	struct imap_parser *parser = imap_parser_create(max_len);
	char *input = malloc(max_len);
	size_t n = 0, consumed = 0;
	unsigned continues = 0;
	const char *error;
	struct imap_command cmd;
	enum imap_parse_status status = IMAP_PARSE_MORE;
	clock_t start = clock();

	CHECK(parser != NULL && input != NULL);
	if (parser == NULL || input == NULL) {
		free(input);
		imap_parser_destroy(&parser);
		return;
	}
	n += (size_t)sprintf(input, "a LOGIN \"");
	memset(input + n, 'x', quoted);
	n += quoted;
	n += (size_t)sprintf(input + n, "\" {%zu}\r\n", literal);
	memset(input + n, 'y', literal);
	n += literal;
	n += (size_t)sprintf(input + n, " z\r\n");

	for (size_t i = 1; i <= n; i++) {
		status = imap_parser_parse(parser, input, i, &cmd, &consumed, &error);
		if (status == IMAP_PARSE_CONTINUE) {
			continues++;
			status = imap_parser_parse(parser, input, i, &cmd, &consumed, &error);
		}
		if (status != IMAP_PARSE_MORE)
			break;
	}
	CHECK(status == IMAP_PARSE_COMMAND);
	CHECK(continues == 1);
	CHECK(consumed == n);
	CHECK(cmd.arg_count == 3);
	CHECK(cmd.args[0].len == quoted && cmd.args[1].len == literal && cmd.args[2].len == 1);
	/* Generous for slow, sanitised builds; see above. */
	CHECK(clock() - start < 8 * CLOCKS_PER_SEC);
	free(input);
	imap_parser_destroy(&parser);
}

/* Pieces that mutations splice in: the parser's interesting syntax. */
static const char *const fuzz_tokens[] = {
	"{",  "}",  "\"",       "\\",      "(",          ")",       " ",           "\r\n", "\n",
	"\r", "\0", "+",        "{5}\r\n", "{3+}\r\n",   "{0}\r\n", "{99999}\r\n", "NIL",  "\\\"",
	"*",  "]",  "a LOGIN ", "{2}\n",   "x NOOP\r\n", "\xff",    "{1+}\r\n",
};

static const char *const fuzz_seeds[] = {
	"a LOGIN user pass\r\n",
	"a LOGIN \"us\\\"er\" \"p\\\\ass\"\r\n",
	"a LOGIN {4}\r\nuser {4}\r\npass\r\n",
	"a LOGIN {4+}\r\nuser \"pass\"\r\n",
	"a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n",
	"i ID (\"name\" \"x\" \"version\" NIL)\r\n",
	"i ID NIL\r\nc CAPABILITY\r\nl LOGOUT\r\n",
	"s STARTTLS\n",
	"i ID (a (b {1}\r\nc) ())\r\n",
};

static void fuzz_one(const char *input, size_t len, size_t max_len, uint32_t *rng)
{
	/* The three transcripts are compared only as a whole, so that one
	 * disagreement costs one failure and one message, not thousands. */
	uint32_t chunk_rng = rng_next(rng);
	bool bad;

	run_parser(input, len, max_len, 0, NULL, &t_whole);
	run_parser(input, len, max_len, 1, NULL, &t_bytes);
	run_parser(input, len, max_len, 1 + rng_next(rng) % 16, &chunk_rng, &t_chunks);
	bad = t_whole.contract || t_bytes.contract || t_chunks.contract || t_whole.overflow ||
	      strcmp(t_whole.text, t_bytes.text) != 0 || strcmp(t_whole.text, t_chunks.text) != 0;
	CHECK(!bad);
	if (bad) {
		fprintf(stderr, "  input (%zu bytes, max_len %zu): ", len, max_len);
		t_bytes.len = 0;
		t_put_escaped(&t_bytes, input, len);
		fprintf(stderr, "%s\n  whole: %s\n  chunks: %s\n", t_bytes.text, t_whole.text,
			t_chunks.text);
	}
}

static void test_fuzz(void)
{
	uint32_t rng = 20240601u;
	char buf[512];

	for (unsigned iter = 0; iter < 20000; iter++) {
		size_t len = 0, max_len;
		unsigned mode = rng_next(&rng) % 4;

		if (mode == 0) {
			/* Random bytes from a syntax-heavy alphabet. */
			static const char alphabet[] = "aA1 ()\"\\{}+\r\n\r\n*]%NIL\0\x80";
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
		fuzz_one(buf, len, max_len, &rng);
	}
}

void suite_imap_parser(void)
{
	test_login();
	test_authenticate();
	test_id_and_lists();
	test_pipelining();
	test_continue_once();
	test_line_ends();
	test_errors();
	test_too_many_args();
	test_too_long();
	test_error_fields();
	test_astring();
	test_linear();
	test_fuzz();
}
