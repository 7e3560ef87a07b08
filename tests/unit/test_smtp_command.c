/* test_smtp_command.c - unit tests for src/proto/smtp_command.
 *
 * Each command line is parsed and the result written as one string,
 * "VERB:verb_text|args|path|params" (plus " size=N last=B" for BDAT) or
 * "ERR VERB error", so that a test is one readable line.  The scratch
 * buffer is surrounded by canary bytes that must survive every parse.  The
 * DATA end scan is checked against a naive reference, delivered whole and
 * in every possible split.
 */
#include "unit.h"
#include "proto/smtp_command.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#define CANARY 0xa5
#define LINE_MAX_TEST 1024

static const char *const verb_names[] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN",   [SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",         [SMTP_VERB_LHLO] = "LHLO",
	[SMTP_VERB_MAIL] = "MAIL",         [SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",         [SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_RSET] = "RSET",         [SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT",         [SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_AUTH] = "AUTH",
	[SMTP_VERB_XCLIENT] = "XCLIENT",
};

/* The scratch buffer with 16 canary bytes on either side. */
static unsigned char arena[16 + SMTP_COMMAND_BUF_SIZE(LINE_MAX_TEST) + 16];
static char result[4 * LINE_MAX_TEST];

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

/* Is p (a result string) inside the scratch buffer? */
static bool in_buf(const char *p, size_t buf_size)
{
	const char *start = (const char *)arena + 16;

	return p >= start && p + strlen(p) < start + buf_size;
}

/* Parse with a buffer of buf_size bytes and describe the outcome. */
static const char *parse_sized(const char *line, size_t len, size_t buf_size,
			       struct smtp_command *cmd)
{
	char *buf = (char *)arena + 16;
	const char *error = "unset";
	int ret;

	memset(arena, CANARY, sizeof(arena));
	ret = smtp_command_parse(line, len, buf, buf_size, cmd, &error);
	CHECK(canaries_intact(buf_size));
	if (ret < 0) {
		CHECK(ret == -1 && error != NULL);
		CHECK(cmd->path == NULL && cmd->params == NULL);
		snprintf(result, sizeof(result), "ERR %s %s",
			 cmd->verb_text == NULL ? "-" : verb_names[cmd->verb],
			 error == NULL ? "(null)" : error);
		return result;
	}
	CHECK(ret == 0 && error == NULL);
	CHECK(in_buf(cmd->verb_text, buf_size) && in_buf(cmd->args, buf_size) &&
	      in_buf(cmd->path, buf_size) && in_buf(cmd->params, buf_size));
	snprintf(result, sizeof(result), "%s:%s|%s|%s|%s", verb_names[cmd->verb], cmd->verb_text,
		 cmd->args, cmd->path, cmd->params);
	if (cmd->verb == SMTP_VERB_BDAT) {
		size_t n = strlen(result);

		snprintf(result + n, sizeof(result) - n, " size=%llu last=%d", cmd->bdat_size,
			 cmd->bdat_last);
	}
	return result;
}

static const char *parse(const char *line, size_t len)
{
	struct smtp_command cmd;

	return parse_sized(line, len, SMTP_COMMAND_BUF_SIZE(len), &cmd);
}

#define EXPECT(line, expected) CHECK_STR(parse(line, sizeof(line) - 1), expected)

static void test_verbs(void)
{
	EXPECT("HELO client.example", "HELO:HELO|client.example||");
	EXPECT("ehlo client.example", "EHLO:EHLO|client.example||");
	EXPECT("LhLo client.example", "LHLO:LHLO|client.example||");
	EXPECT("DATA", "DATA:DATA|||");
	EXPECT("RSET", "RSET:RSET|||");
	EXPECT("noop", "NOOP:NOOP|||");
	EXPECT("NOOP some text", "NOOP:NOOP|some text||");
	EXPECT("QUIT", "QUIT:QUIT|||");
	EXPECT("VRFY user", "VRFY:VRFY|user||");
	EXPECT("starttls", "STARTTLS:STARTTLS|||");
	EXPECT("AUTH PLAIN AHVzZXIAcGFzcw==", "AUTH:AUTH|PLAIN AHVzZXIAcGFzcw==||");
	EXPECT("AUTH LOGIN", "AUTH:AUTH|LOGIN||");
	EXPECT("XCLIENT ADDR=192.0.2.1 NAME=[UNAVAILABLE]",
	       "XCLIENT:XCLIENT|ADDR=192.0.2.1 NAME=[UNAVAILABLE]||");
	/* Unknown verbs are not errors; the caller answers 500. */
	EXPECT("EXPN list", "UNKNOWN:EXPN|list||");
	EXPECT("get / HTTP/1.1", "UNKNOWN:GET|/ HTTP/1.1||");
	EXPECT("MAILX FROM:<a@b>", "UNKNOWN:MAILX|FROM:<a@b>||");
	EXPECT("HEL", "UNKNOWN:HEL|||");
	EXPECT("\xc3\xa4", "UNKNOWN:\xc3\xa4|||");
	/* args is everything after exactly one space. */
	EXPECT("QUIT ", "QUIT:QUIT|||");
	EXPECT("NOOP  x ", "NOOP:NOOP| x ||");
	EXPECT("HELO\tx", "UNKNOWN:HELO\tX|||");
}

static void test_line_errors(void)
{
	EXPECT("", "ERR - empty command line");
	EXPECT(" QUIT", "ERR - command line starts with a space instead of a verb");
	EXPECT(" ", "ERR - command line starts with a space instead of a verb");
	EXPECT("QU\0IT", "ERR - NUL in command line");
	EXPECT("QUIT\r", "ERR - bare CR in command line");
	EXPECT("DATA\rMAIL FROM:<a@b>", "ERR - bare CR in command line");
	EXPECT("RSET\nMAIL FROM:<a@b>", "ERR - bare LF in command line");
	EXPECT("MAIL FROM:<a@b> X=\0", "ERR - NUL in command line");
}

static void test_mail_rcpt(void)
{
	EXPECT("MAIL FROM:<user@example.com>",
	       "MAIL:MAIL|FROM:<user@example.com>|user@example.com|");
	EXPECT("mail from:<user@example.com>",
	       "MAIL:MAIL|from:<user@example.com>|user@example.com|");
	EXPECT("Mail From:<u@x> SIZE=1000 BODY=8BITMIME",
	       "MAIL:MAIL|From:<u@x> SIZE=1000 BODY=8BITMIME|u@x|SIZE=1000 BODY=8BITMIME");
	/* The null sender. */
	EXPECT("MAIL FROM:<>", "MAIL:MAIL|FROM:<>||");
	EXPECT("MAIL FROM:<> BODY=7BIT", "MAIL:MAIL|FROM:<> BODY=7BIT||BODY=7BIT");
	/* One space after the colon is tolerated, two are not. */
	EXPECT("MAIL FROM: <u@x>", "MAIL:MAIL|FROM: <u@x>|u@x|");
	EXPECT("RCPT TO: <u@x>", "RCPT:RCPT|TO: <u@x>|u@x|");
	EXPECT("MAIL FROM:  <u@x>", "ERR MAIL address must be enclosed in <>");
	/* Parameters after any number of spaces; trailing spaces are fine. */
	EXPECT("MAIL FROM:<u@x>   SIZE=1", "MAIL:MAIL|FROM:<u@x>   SIZE=1|u@x|SIZE=1");
	EXPECT("MAIL FROM:<u@x> ", "MAIL:MAIL|FROM:<u@x> |u@x|");
	EXPECT("RCPT TO:<u@x> NOTIFY=NEVER ORCPT=rfc822;u@x",
	       "RCPT:RCPT|TO:<u@x> NOTIFY=NEVER ORCPT=rfc822;u@x|u@x|NOTIFY=NEVER "
	       "ORCPT=rfc822;u@x");
	EXPECT("rcpt to:<Postmaster>", "RCPT:RCPT|to:<Postmaster>|Postmaster|");
	/* Source routes are dropped. */
	EXPECT("RCPT TO:<@a,@b:user@d>", "RCPT:RCPT|TO:<@a,@b:user@d>|user@d|");
	EXPECT("MAIL FROM:<@relay.example:u@x> SIZE=5",
	       "MAIL:MAIL|FROM:<@relay.example:u@x> SIZE=5|u@x|SIZE=5");
	EXPECT("RCPT TO:<@a,@b>", "ERR RCPT source route in address not followed by ':'");
	EXPECT("MAIL FROM:<@a:>", "ERR MAIL empty address after source route");
	/* Quoted local parts are kept as sent, '>' and '@' inside too. */
	EXPECT("MAIL FROM:<\"a b\"@example.com>",
	       "MAIL:MAIL|FROM:<\"a b\"@example.com>|\"a b\"@example.com|");
	EXPECT("RCPT TO:<\"a>b\"@x> X=1", "RCPT:RCPT|TO:<\"a>b\"@x> X=1|\"a>b\"@x|X=1");
	EXPECT("RCPT TO:<\"a\\\">b\"@x>", "RCPT:RCPT|TO:<\"a\\\">b\"@x>|\"a\\\">b\"@x|");
	EXPECT("RCPT TO:<\"a\\\\\"@x>", "RCPT:RCPT|TO:<\"a\\\\\"@x>|\"a\\\\\"@x|");
	EXPECT("RCPT TO:<\"ab@x>", "ERR RCPT unbalanced quotes in address");
	EXPECT("RCPT TO:<\"a\\\">", "ERR RCPT unbalanced quotes in address");
	EXPECT("RCPT TO:<\"a\\", "ERR RCPT unbalanced quotes in address");
	EXPECT("RCPT TO:<a\"b@x>", "ERR RCPT unbalanced quotes in address");
	/* SMTPUTF8 addresses pass through. */
	EXPECT("RCPT TO:<j\xc3\xb6rg@b\xc3\xbc.example>",
	       "RCPT:RCPT|TO:<j\xc3\xb6rg@b\xc3\xbc.example>|j\xc3\xb6rg@b\xc3\xbc.example|");

	/* Missing or wrong keyword. */
	EXPECT("MAIL", "ERR MAIL MAIL must be followed by FROM:<address>");
	EXPECT("MAIL ", "ERR MAIL MAIL must be followed by FROM:<address>");
	EXPECT("MAIL FROM", "ERR MAIL MAIL must be followed by FROM:<address>");
	EXPECT("MAIL FROM <u@x>", "ERR MAIL MAIL must be followed by FROM:<address>");
	EXPECT("MAIL TO:<u@x>", "ERR MAIL MAIL must be followed by FROM:<address>");
	EXPECT("MAIL  FROM:<u@x>", "ERR MAIL MAIL must be followed by FROM:<address>");
	EXPECT("RCPT FROM:<u@x>", "ERR RCPT RCPT must be followed by TO:<address>");
	EXPECT("RCPT T:<u@x>", "ERR RCPT RCPT must be followed by TO:<address>");
	/* Paths must be in angle brackets, closed, and followed by a space
	 * or nothing. */
	EXPECT("MAIL FROM:u@x", "ERR MAIL address must be enclosed in <>");
	EXPECT("MAIL FROM:", "ERR MAIL address must be enclosed in <>");
	EXPECT("RCPT TO:u@x>", "ERR RCPT address must be enclosed in <>");
	EXPECT("RCPT TO:<u@x", "ERR RCPT address has no closing '>'");
	EXPECT("RCPT TO:<", "ERR RCPT address has no closing '>'");
	EXPECT("RCPT TO:<u@x>SIZE=1", "ERR RCPT junk after address: expected a space before the "
				      "parameters");
	EXPECT("RCPT TO:<u@x>>", "ERR RCPT junk after address: expected a space before the "
				 "parameters");
	/* RCPT needs an address. */
	EXPECT("RCPT TO:<>", "ERR RCPT RCPT TO:<> has an empty address");
}

static void test_path_length(void)
{
	char line[600], expected[1200];
	size_t n;

	/* "<" + 254 + ">" = 256 octets: the limit. */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<");
	memset(line + n, 'a', 250);
	n += 250;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "@b.c> X=1");
	snprintf(expected, sizeof(expected), "RCPT:RCPT|%s|%.254s|X=1", line + 5, line + 9);
	CHECK_STR(parse(line, n), expected);
	/* One more octet is too long. */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<");
	memset(line + n, 'a', 251);
	n += 251;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "@b.c>");
	CHECK_STR(parse(line, n), "ERR RCPT address longer than 256 octets");
	/* The source route counts, as the RFC counts the whole path. */
	n = (size_t)snprintf(line, sizeof(line), "MAIL FROM:<@r:");
	memset(line + n, 'a', 250);
	n += 250;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "@b>");
	CHECK_STR(parse(line, n), "ERR MAIL address longer than 256 octets");
}

static void test_bdat(void)
{
	EXPECT("BDAT 100", "BDAT:BDAT|100|| size=100 last=0");
	EXPECT("BDAT 0 LAST", "BDAT:BDAT|0 LAST|| size=0 last=1");
	EXPECT("bdat 5 last", "BDAT:BDAT|5 last|| size=5 last=1");
	EXPECT("BDAT 007 Last", "BDAT:BDAT|007 Last|| size=7 last=1");
	EXPECT("BDAT 18446744073709551615", "BDAT:BDAT|18446744073709551615|| "
					    "size=18446744073709551615 last=0");
	EXPECT("BDAT 18446744073709551616", "ERR BDAT BDAT chunk size too large");
	EXPECT("BDAT 99999999999999999999999", "ERR BDAT BDAT chunk size too large");
	EXPECT("BDAT", "ERR BDAT BDAT requires a chunk size");
	EXPECT("BDAT ", "ERR BDAT BDAT requires a chunk size");
	EXPECT("BDAT x", "ERR BDAT BDAT chunk size is not a number");
	EXPECT("BDAT -1", "ERR BDAT BDAT chunk size is not a number");
	EXPECT("BDAT +1", "ERR BDAT BDAT chunk size is not a number");
	EXPECT("BDAT  1", "ERR BDAT BDAT chunk size is not a number");
	EXPECT("BDAT LAST", "ERR BDAT BDAT chunk size is not a number");
	EXPECT("BDAT 1x", "ERR BDAT BDAT chunk size may only be followed by LAST");
	EXPECT("BDAT 1 ", "ERR BDAT BDAT chunk size may only be followed by LAST");
	EXPECT("BDAT 1  LAST", "ERR BDAT BDAT chunk size may only be followed by LAST");
	EXPECT("BDAT 1 LAST ", "ERR BDAT BDAT chunk size may only be followed by LAST");
	EXPECT("BDAT 1 LASTX", "ERR BDAT BDAT chunk size may only be followed by LAST");
	EXPECT("BDAT 1 LAS", "ERR BDAT BDAT chunk size may only be followed by LAST");
	EXPECT("BDAT 1 2", "ERR BDAT BDAT chunk size may only be followed by LAST");
}

/* The scratch buffer: exactly enough works, one byte less fails cleanly,
 * and nothing outside buf_size is ever written. */
static void test_buffer(void)
{
	static const char *const lines[] = {
		"QUIT",
		"QUIT ",
		"MAIL FROM:<user@example.com> SIZE=1",
		"RCPT TO:<@a:\"x y\"@z>",
		"BDAT 10 LAST",
		"EHLO x",
	};

	for (size_t l = 0; l < sizeof(lines) / sizeof(lines[0]); l++) {
		size_t len = strlen(lines[l]), need = 0;
		struct smtp_command cmd;
		char full[256];

		snprintf(full, sizeof(full), "%s", parse(lines[l], len));
		CHECK(strncmp(full, "ERR", 3) != 0);
		for (size_t size = 0; size <= SMTP_COMMAND_BUF_SIZE(len); size++) {
			const char *r = parse_sized(lines[l], len, size, &cmd);

			if (strncmp(r, "ERR", 3) != 0) {
				if (need == 0)
					need = size;
				CHECK_STR(r, full);
			} else {
				/* Once it fits, more room keeps it fitting. */
				CHECK(need == 0);
				CHECK(strstr(r, "too long for the parse buffer") != NULL);
			}
		}
		CHECK(need > 0);
	}
}

static void test_local_part(void)
{
	char dst[64];

	CHECK(smtp_address_local_part("user@example.com", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "user");
	CHECK(smtp_address_local_part("postmaster", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "postmaster");
	CHECK(smtp_address_local_part("", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "");
	CHECK(smtp_address_local_part("@example.com", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "");
	/* The last '@' outside quotes. */
	CHECK(smtp_address_local_part("a@b@c", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "a@b");
	CHECK(smtp_address_local_part("\"a@b\"@c", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "\"a@b\"");
	CHECK(smtp_address_local_part("\"a b\"@example.com", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "\"a b\"");
	CHECK(smtp_address_local_part("\"a\\\"@b\"@c", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "\"a\\\"@b\"");
	CHECK(smtp_address_local_part("\"x@y", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "\"x@y");
	CHECK(smtp_address_local_part("\"x\\", dst, sizeof(dst)) == 0);
	CHECK_STR(dst, "\"x\\");
	/* Size: local part plus NUL. */
	CHECK(smtp_address_local_part("user@x", dst, 5) == 0);
	CHECK_STR(dst, "user");
	memset(dst, 'Z', sizeof(dst));
	CHECK(smtp_address_local_part("user@x", dst, 4) == -1);
	CHECK(dst[4] == 'Z');
	CHECK(smtp_address_local_part("", dst, 0) == -1);
	CHECK(smtp_address_local_part("", dst, 1) == 0);
}

/* The reference: the first CRLF "." CRLF in CRLF + data, as the offset
 * just past it in data, or 0. */
static size_t naive_data_end(const char *data, size_t len)
{
	for (size_t i = 0; i + 3 <= len; i++) {
		bool line_start = i == 0 || (i >= 2 && data[i - 2] == '\r' && data[i - 1] == '\n');

		if (line_start && data[i] == '.' && data[i + 1] == '\r' && data[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Scan data in pieces cut at the given points, as a stream would deliver
 * it; returns the total offset past the marker, or 0. */
static size_t scan_pieces(const char *data, size_t len, const size_t *cuts, size_t cut_count)
{
	unsigned state = 0;
	size_t start = 0;

	for (size_t c = 0; c <= cut_count; c++) {
		size_t end = c < cut_count ? cuts[c] : len;
		size_t r = smtp_data_end_scan(&state, data + start, end - start);

		if (r != 0) {
			if (state != 0 || r > end - start)
				return (size_t)-1;
			return start + r;
		}
		start = end;
	}
	return 0;
}

static size_t scan_whole(const char *data, size_t len)
{
	return scan_pieces(data, len, NULL, 0);
}

static size_t scan_bytes(const char *data, size_t len)
{
	unsigned state = 0;

	for (size_t i = 0; i < len; i++) {
		if (smtp_data_end_scan(&state, data + i, 1) == 1)
			return state == 0 ? i + 1 : (size_t)-1;
	}
	return 0;
}

#define EXPECT_END(data, expected)                                         \
	do {                                                               \
		CHECK(scan_whole(data, sizeof(data) - 1) == expected);     \
		CHECK(scan_bytes(data, sizeof(data) - 1) == expected);     \
		CHECK(naive_data_end(data, sizeof(data) - 1) == expected); \
	} while (0)

static void test_data_end(void)
{
	unsigned state;

	/* An empty message: the marker right at the start. */
	EXPECT_END(".\r\n", 3);
	EXPECT_END(".\r\nMAIL FROM:<>\r\n", 3);
	EXPECT_END("hello\r\n.\r\n", 10);
	EXPECT_END("hello\r\n.\r\nQUIT\r\n", 10);
	EXPECT_END("Subject: x\r\n\r\nbody\r\n.\r\n", 23);
	/* Dot-stuffed lines are not the end. */
	EXPECT_END("..\r\n", 0);
	EXPECT_END("x\r\n..\r\n.\r\n", 10);
	EXPECT_END(". \r\n", 0);
	EXPECT_END(".x\r\n.\r\n", 7);
	/* Only CRLF ends a line: no bare LF or CR (SMTP smuggling). */
	EXPECT_END("x\n.\n", 0);
	EXPECT_END("x\n.\r\n", 0);
	EXPECT_END("x\r\n.\n", 0);
	EXPECT_END("x\r.\r\n", 0);
	EXPECT_END("x\r\n.\r.\r\n", 0);
	EXPECT_END("x\r\n.\r\r\n.\r\n", 10);
	EXPECT_END("\r\r\n.\r\n", 6);
	EXPECT_END("\r\n.\r\n", 5);
	EXPECT_END("\r\n\r\n.\r\n", 7);
	EXPECT_END(".\r", 0);
	EXPECT_END("", 0);
	/* Nothing found: the state says where the next piece starts. */
	state = 0;
	CHECK(smtp_data_end_scan(&state, "abc\r\n", 5) == 0);
	CHECK(state == 0);
	CHECK(smtp_data_end_scan(&state, ".", 1) == 0);
	CHECK(smtp_data_end_scan(&state, "\r", 1) == 0);
	CHECK(smtp_data_end_scan(&state, "\nrest", 5) == 1);
	CHECK(state == 0);
	/* After a find the state is fresh for the next message. */
	CHECK(smtp_data_end_scan(&state, ".\r\n", 3) == 3);
	CHECK(smtp_data_end_scan(&state, "", 0) == 0);
	CHECK(state == 0);
	/* A state the scanner never sets counts as "inside a line". */
	state = 77;
	CHECK(smtp_data_end_scan(&state, ".\r\n", 3) == 0);
	CHECK(smtp_data_end_scan(&state, ".\r\n", 3) == 3);
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

/* Random bodies from a marker-heavy alphabet, cut at random points. */
static void test_data_end_fuzz(void)
{
	static const char alphabet[] = "\r\n.\r\n.a";
	uint32_t rng = 5321u;
	char data[64];
	unsigned bad = 0;

	for (unsigned iter = 0; iter < 20000; iter++) {
		size_t len = rng_next(&rng) % sizeof(data), cuts[4], cut_count;
		size_t expected, got;

		for (size_t i = 0; i < len; i++)
			data[i] = alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
		cut_count = rng_next(&rng) % 5;
		for (size_t c = 0; c < cut_count; c++)
			cuts[c] = len == 0 ? 0 : rng_next(&rng) % (len + 1);
		/* Sort the cut points (insertion sort; at most four). */
		for (size_t c = 1; c < cut_count; c++) {
			for (size_t k = c; k > 0 && cuts[k - 1] > cuts[k]; k--) {
				size_t tmp = cuts[k];

				cuts[k] = cuts[k - 1];
				cuts[k - 1] = tmp;
			}
		}
		expected = naive_data_end(data, len);
		got = scan_pieces(data, len, cuts, cut_count);
		if (got != expected || scan_bytes(data, len) != expected)
			bad++;
	}
	CHECK(bad == 0);
}

/* Random lines through smtp_command_parse(): no crash, no write outside the
 * buffer, and every success self-consistent. */
static void test_parse_fuzz(void)
{
	static const char *const seeds[] = {
		"MAIL FROM:<user@example.com> SIZE=100",
		"RCPT TO:<@a,@b:\"x y\"@z> NOTIFY=NEVER",
		"BDAT 1234 LAST",
		"EHLO client.example",
		"mail from: <>",
		"AUTH PLAIN AHVzZXIAcGFzcw==",
	};
	static const char alphabet[] = "<>\"\\@:, .aA1LAST\r\n";
	uint32_t rng = 20240603u;
	char line[160];
	unsigned bad = 0;

	for (unsigned iter = 0; iter < 20000; iter++) {
		size_t len;
		struct smtp_command cmd;
		const char *r;

		if (rng_next(&rng) % 4 == 0) {
			len = rng_next(&rng) % 60;
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
				unsigned op = rng_next(&rng) % 3;

				if (op == 0) {
					line[pos] = (char)rng_next(&rng);
				} else if (op == 1) {
					memmove(line + pos, line + pos + 1, len - pos - 1);
					len--;
				} else if (len < sizeof(line)) {
					memmove(line + pos + 1, line + pos, len - pos);
					line[pos] =
						alphabet[rng_next(&rng) % (sizeof(alphabet) - 1)];
					len++;
				}
			}
		}
		/* Sometimes a buffer too small by a random amount. */
		{
			size_t size = SMTP_COMMAND_BUF_SIZE(len);
			unsigned before = unit_failed;

			if (rng_next(&rng) % 4 == 0)
				size = rng_next(&rng) % (size + 1);
			r = parse_sized(line, len, size, &cmd);
			if (unit_failed != before)
				bad++;
		}
		if (strncmp(r, "ERR", 3) == 0)
			continue;
		/* args is the line after verb and space; params a suffix of
		 * args; the path shorter than the limit. */
		{
			size_t args_len = strlen(cmd.args), params_len = strlen(cmd.params);

			bool ok = args_len <= len &&
				  memcmp(line + len - args_len, cmd.args, args_len) == 0 &&
				  params_len <= args_len &&
				  strcmp(cmd.args + args_len - params_len, cmd.params) == 0 &&
				  strlen(cmd.path) < SMTP_PATH_MAX &&
				  (cmd.verb == SMTP_VERB_UNKNOWN ||
				   strcmp(cmd.verb_text, verb_names[cmd.verb]) == 0);

			if (!ok)
				bad++;
		}
	}
	CHECK(bad == 0);
}

void suite_smtp_command(void)
{
	test_verbs();
	test_line_errors();
	test_mail_rcpt();
	test_path_length();
	test_bdat();
	test_buffer();
	test_local_part();
	test_data_end();
	test_data_end_fuzz();
	test_parse_fuzz();
}

/* ---- bare LF normalisation ---- */

static void check_normalize(const char *in, const char *expected)
{
	size_t len = strlen(in);
	char *out = malloc(2 * len + 8);
	size_t n = smtp_body_normalize(in, len, out);
	out[n] = '\0';
	CHECK_STR(out, expected);
	free(out);
}

/* Counts end-of-data markers a lax server would see: LF "." LF and
 * CRLF "." CRLF (and the mixed forms) at any line start. */
static unsigned lax_markers(const char *s, size_t len)
{
	unsigned markers = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		bool line_start = i == 0 || s[i - 1] == '\n';
		if (!line_start || s[i] != '.')
			continue;
		if (s[i + 1] == '\n' || (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n'))
			markers++;
	}
	return markers;
}

void suite_smtp_body_normalize(void);
void suite_smtp_body_normalize(void)
{
	/* without bare LFs nothing changes */
	check_normalize("a\r\nb\r\n.\r\n", "a\r\nb\r\n.\r\n");
	check_normalize("..dot\r\n.\r\n", "..dot\r\n.\r\n");
	check_normalize(".\r\n", ".\r\n");
	/* bare LF becomes CRLF */
	check_normalize("a\nb\r\n.\r\n", "a\r\nb\r\n.\r\n");
	/* a dot after a bare LF was not stuffed by the client: stuff it now */
	check_normalize("a\n.b\r\n.\r\n", "a\r\n..b\r\n.\r\n");
	/* the smuggling attempt: LF "." LF inside the body stays content */
	check_normalize("x\n.\nMAIL FROM:<e@vil>\r\n.\r\n",
			"x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n");
	/* CRLF "." LF: the dot at a line start is the client's stuffing
	 * (RFC 5321 4.5.2 removes it); what is left is an empty line */
	check_normalize("x\r\n.\nRCPT TO:<v@ictim>\r\n.\r\n",
			"x\r\n\r\nRCPT TO:<v@ictim>\r\n.\r\n");

	/* pseudo-fuzz: random bodies of CR, LF, '.', 'a'; after normalising,
	 * a lax server finds exactly one end marker (the real one) */
	unsigned seed = 12345;
	char in[64], *out = malloc(2 * sizeof(in) + 16);
	for (int round = 0; round < 20000; round++) {
		size_t n = 0, body = (size_t)(seed % 40);
		for (size_t i = 0; i < body; i++) {
			seed = seed * 1103515245 + 12345;
			in[n++] = "\r\n.a"[(seed >> 16) % 4];
		}
		/* make it a valid DATA stream: stuff client line starts, end with CRLF.CRLF */
		char data[2 * sizeof(in) + 8];
		size_t d = 0;
		bool ls = true;
		for (size_t i = 0; i < n; i++) {
			if (ls && in[i] == '.')
				data[d++] = '.';
			ls = in[i] == '\n' && i > 0 && in[i - 1] == '\r';
			data[d++] = in[i];
		}
		if (d < 2 || data[d - 2] != '\r' || data[d - 1] != '\n') {
			data[d++] = '\r';
			data[d++] = '\n';
		}
		memcpy(data + d, ".\r\n", 3);
		d += 3;
		size_t m = smtp_body_normalize(data, d, out);
		CHECK(m >= 3 && memcmp(out + m - 3, ".\r\n", 3) == 0);
		CHECK(lax_markers(out, m) == 1);
		/* every LF in the output has its CR */
		bool ok = true;
		for (size_t i = 0; i < m; i++)
			if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
				ok = false;
		CHECK(ok);
	}
	free(out);
}
