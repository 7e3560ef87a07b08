/* test_imap_probe.c - the prober's IMAP dialogue (src/proto/imap_probe):
 * verdicts and their details for every way a backend can answer, the
 * commands sent, %{backend} expansion and quoting. */
#include "proto/imap_probe.h"
#include "unit.h"

#include <string.h>

static char out[IMAP_PROBE_COMMAND_MAX];

static size_t feed(struct imap_probe *p, const char *line)
{
	return imap_probe_line(p, line, strlen(line), out, sizeof(out));
}

static void test_without_login(void)
{
	struct imap_probe p;
	imap_probe_start(&p, NULL, NULL);
	CHECK(p.step == IMAP_PROBE_CONNECT && p.verdict == IMAP_PROBE_PENDING);
	imap_probe_connected(&p);
	CHECK(p.step == IMAP_PROBE_GREETING);
	size_t n = feed(&p, "* OK [CAPABILITY IMAP4rev1 ID] Dovecot ready.");
	CHECK(n == strlen("p1 LOGOUT\r\n") && strcmp(out, "p1 LOGOUT\r\n") == 0);
	CHECK(p.verdict == IMAP_PROBE_HEALTHY && p.step == IMAP_PROBE_LOGOUT);
	CHECK(feed(&p, "* BYE Logging out") == 0 && p.step == IMAP_PROBE_LOGOUT);
	CHECK(feed(&p, "p1 OK Logout completed.") == 0 && p.step == IMAP_PROBE_DONE);
	CHECK(p.verdict == IMAP_PROBE_HEALTHY && p.detail[0] == '\0');

	/* "" as the username is no login too; a bare "* OK" is a greeting */
	imap_probe_start(&p, "", "secret");
	imap_probe_connected(&p);
	feed(&p, "* OK");
	CHECK(p.verdict == IMAP_PROBE_HEALTHY && strcmp(out, "p1 LOGOUT\r\n") == 0);
	/* the verdict stands when the backend closes instead of answering LOGOUT */
	imap_probe_closed(&p, NULL);
	CHECK(p.verdict == IMAP_PROBE_HEALTHY && p.step == IMAP_PROBE_DONE);
}

static void test_bad_greetings(void)
{
	static const struct {
		const char *line, *detail;
	} cases[] = {
		{"* BYE Too many connections", "unexpected greeting: * BYE Too many connections"},
		{"* PREAUTH ready", "unexpected greeting: * PREAUTH ready"},
		{"* OKAY", "unexpected greeting: * OKAY"},
		{"+OK POP3 ready", "unexpected greeting: +OK POP3 ready"},
		{"", "unexpected greeting: "},
		/* quotes and control bytes do not reach the key="value" log field */
		{"* NO \"x\"\x01", "unexpected greeting: * NO 'x'?"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_probe p;
		imap_probe_start(&p, "user1", "password");
		imap_probe_connected(&p);
		CHECK(feed(&p, cases[i].line) == 0 && out[0] == '\0');
		CHECK(p.verdict == IMAP_PROBE_FAILING && p.step == IMAP_PROBE_DONE);
		CHECK(strcmp(p.detail, cases[i].detail) == 0);
	}
	/* a very long greeting is quoted in part */
	char line[1000];
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	struct imap_probe p;
	imap_probe_start(&p, NULL, NULL);
	imap_probe_connected(&p);
	feed(&p, line);
	CHECK(p.verdict == IMAP_PROBE_FAILING && strlen(p.detail) < 200);
	CHECK(strncmp(p.detail, "unexpected greeting: xxx", 24) == 0);
	/* "* ok" is as good as "* OK" (IMAP keywords are case-insensitive) */
	imap_probe_start(&p, NULL, NULL);
	feed(&p, "* ok hi");
	CHECK(p.verdict == IMAP_PROBE_HEALTHY);
}

static void test_login(void)
{
	struct imap_probe p;
	imap_probe_start(&p, "probe\"user", "pa\\ss word");
	imap_probe_connected(&p);
	feed(&p, "* OK Dovecot ready.");
	CHECK(strcmp(out, "p1 LOGIN \"probe\\\"user\" \"pa\\\\ss word\"\r\n") == 0);
	CHECK(p.step == IMAP_PROBE_LOGIN && p.verdict == IMAP_PROBE_PENDING);
	CHECK(feed(&p, "* CAPABILITY IMAP4rev1 IDLE") == 0 && p.verdict == IMAP_PROBE_PENDING);
	feed(&p, "p1 OK [CAPABILITY IMAP4rev1] Logged in");
	CHECK(p.verdict == IMAP_PROBE_HEALTHY && strcmp(out, "p2 LOGOUT\r\n") == 0);
	CHECK(feed(&p, "p1 OK not ours") == 0 && p.step == IMAP_PROBE_LOGOUT);
	feed(&p, "p2 OK Logout completed.");
	CHECK(p.step == IMAP_PROBE_DONE && p.verdict == IMAP_PROBE_HEALTHY);

	imap_probe_start(&p, "user1", "wrong");
	imap_probe_connected(&p);
	feed(&p, "* OK ready");
	feed(&p, "p1 NO [AUTHENTICATIONFAILED] Authentication failed.");
	CHECK(p.verdict == IMAP_PROBE_FAILING && strcmp(out, "p2 LOGOUT\r\n") == 0);
	CHECK(strcmp(p.detail, "test login failed: NO [AUTHENTICATIONFAILED] Authentication "
			       "failed.") == 0);
	feed(&p, "p2 OK bye");
	CHECK(p.step == IMAP_PROBE_DONE && p.verdict == IMAP_PROBE_FAILING);

	imap_probe_start(&p, "user1", "x");
	feed(&p, "* OK ready");
	feed(&p, "p1 BAD Error in IMAP command");
	CHECK(strcmp(p.detail, "test login failed: BAD Error in IMAP command") == 0);

	imap_probe_start(&p, "user1", "x");
	feed(&p, "* OK ready");
	feed(&p, "+ go ahead");
	CHECK(strcmp(p.detail, "unexpected reply to the test login: + go ahead") == 0);

	/* credentials a quoted string cannot carry: failing, never sent */
	imap_probe_start(&p, "user1", "pass\r\nx LOGOUT");
	feed(&p, "* OK ready");
	CHECK(p.verdict == IMAP_PROBE_FAILING && strstr(p.detail, "CR/LF") != NULL);
	CHECK(strcmp(out, "p1 LOGOUT\r\n") == 0);
}

static void test_timeouts_and_closes(void)
{
	struct imap_probe p;
	imap_probe_start(&p, NULL, NULL);
	imap_probe_timed_out(&p, 3000);
	CHECK(strcmp(p.detail, "connect: no answer within 3000 ms") == 0);
	CHECK(p.step == IMAP_PROBE_DONE);

	imap_probe_start(&p, NULL, NULL);
	imap_probe_closed(&p, "Connection refused");
	CHECK(strcmp(p.detail, "connect: connection refused") == 0);

	imap_probe_start(&p, NULL, NULL);
	imap_probe_connected(&p);
	imap_probe_timed_out(&p, 3000);
	CHECK(strcmp(p.detail, "no greeting within 3000 ms") == 0);

	imap_probe_start(&p, NULL, NULL);
	imap_probe_connected(&p);
	imap_probe_closed(&p, NULL);
	CHECK(strcmp(p.detail, "connection closed before the greeting") == 0);

	imap_probe_start(&p, "user1", "password");
	imap_probe_connected(&p);
	feed(&p, "* OK ready");
	imap_probe_timed_out(&p, 2500);
	CHECK(strcmp(p.detail, "timed out after 2500 ms during login") == 0);
	CHECK(p.verdict == IMAP_PROBE_FAILING);

	imap_probe_start(&p, "user1", "password");
	imap_probe_connected(&p);
	feed(&p, "* OK ready");
	imap_probe_closed(&p, "Connection reset by peer");
	CHECK(strcmp(p.detail, "connection reset by peer during login") == 0);

	/* the first verdict is the one that counts */
	imap_probe_start(&p, "user1", "password");
	feed(&p, "* BYE go away");
	imap_probe_closed(&p, NULL);
	CHECK(strcmp(p.detail, "unexpected greeting: * BYE go away") == 0);
}

static void test_expand_and_quote(void)
{
	char dst[64];
	CHECK(imap_probe_expand_username("probe-%{backend}", "b1", dst, sizeof(dst)) == 0);
	CHECK(strcmp(dst, "probe-b1") == 0);
	CHECK(imap_probe_expand_username("%{backend}@%{backend}.test", "backend2", dst,
					 sizeof(dst)) == 0);
	CHECK(strcmp(dst, "backend2@backend2.test") == 0);
	CHECK(imap_probe_expand_username("user1", "b1", dst, sizeof(dst)) == 0);
	CHECK(strcmp(dst, "user1") == 0);
	/* other variables and a lone % stay as they are */
	CHECK(imap_probe_expand_username("%{user}%b%{backend", "b1", dst, sizeof(dst)) == 0);
	CHECK(strcmp(dst, "%{user}%b%{backend") == 0);
	CHECK(imap_probe_expand_username("", "b1", dst, sizeof(dst)) == 0 && dst[0] == '\0');
	/* exactly fitting, and one byte too many */
	CHECK(imap_probe_expand_username("%{backend}", "1234567", dst, 8) == 0);
	CHECK(strcmp(dst, "1234567") == 0);
	CHECK(imap_probe_expand_username("%{backend}", "12345678", dst, 8) < 0);
	CHECK(imap_probe_expand_username("abcdefgh", "b", dst, 8) < 0);

	CHECK(imap_probe_quote("user1", dst, sizeof(dst)) == 7 && strcmp(dst, "\"user1\"") == 0);
	CHECK(imap_probe_quote("", dst, sizeof(dst)) == 2 && strcmp(dst, "\"\"") == 0);
	CHECK(imap_probe_quote("a\"b\\c", dst, sizeof(dst)) == 9);
	CHECK(strcmp(dst, "\"a\\\"b\\\\c\"") == 0);
	CHECK(imap_probe_quote("a\rb", dst, sizeof(dst)) < 0);
	CHECK(imap_probe_quote("a\nb", dst, sizeof(dst)) < 0);
	/* "abc" needs 6 bytes with its quotes and NUL */
	CHECK(imap_probe_quote("abc", dst, 6) == 5);
	CHECK(imap_probe_quote("abc", dst, 5) < 0);
	CHECK(imap_probe_quote("ab\"", dst, 6) < 0);
}

void suite_imap_probe(void)
{
	test_without_login();
	test_bad_greetings();
	test_login();
	test_timeouts_and_closes();
	test_expand_and_quote();
}
