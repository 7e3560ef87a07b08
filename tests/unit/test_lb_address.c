/* test_lb_address.c - src/util/lb_address: a site's load balancer address,
 * valid and invalid forms, and the address each protocol gets. */
#include "unit.h"
#include "util/lb_address.h"

static void check_for(const char *spec, const char *protocol, int found, const char *host, int port)
{
	char buf[128] = "";
	int p = -1;
	const char *error = NULL;
	int ret = lb_address_for(spec, protocol, buf, sizeof(buf), &p, &error);
	CHECK(ret == found);
	if (ret != found)
		fprintf(stderr, "lb_address_for(\"%s\", %s) = %d (%s)\n", spec, protocol, ret,
			error != NULL ? error : "");
	if (found == 1) {
		CHECK_STR(buf, host);
		CHECK(p == port);
	}
}

static void check_bad(const char *spec, const char *expect)
{
	const char *error = NULL;
	CHECK(lb_address_check(spec, &error) < 0);
	CHECK(error != NULL && strstr(error, expect) != NULL);
	if (error == NULL || strstr(error, expect) == NULL)
		fprintf(stderr, "lb_address_check(\"%s\"): \"%s\", expected \"%s\"\n", spec,
			error != NULL ? error : "(none)", expect);
	char host[64];
	int port;
	CHECK(lb_address_for(spec, "imap", host, sizeof(host), &port, &error) < 0);
}

static void test_single(void)
{
	const char *error;
	CHECK(lb_address_check("", &error) == 0);
	check_for("", "imap", 0, NULL, 0);
	check_for("10.0.0.5", "imap", 1, "10.0.0.5", 0);
	check_for("10.0.0.5", "lmtp", 1, "10.0.0.5", 0);
	check_for("10.0.0.5:10143", "pop3", 1, "10.0.0.5", 10143);
	check_for("[2001:db8::1]:143", "sieve", 1, "2001:db8::1", 143);
	check_for("[::1]", "submission", 1, "::1", 0);
}

static void test_list(void)
{
	const char *spec = "imap=10.0.0.5:143,pop3=10.0.0.6,lmtp=[::1]:24";
	const char *error;
	CHECK(lb_address_check(spec, &error) == 0);
	check_for(spec, "imap", 1, "10.0.0.5", 143);
	check_for(spec, "pop3", 1, "10.0.0.6", 0);
	check_for(spec, "lmtp", 1, "::1", 24);
	check_for(spec, "sieve", 0, NULL, 0);
	check_for(spec, "submission", 0, NULL, 0);
	check_for("submission=1.2.3.4:587", "submission", 1, "1.2.3.4", 587);
}

static void test_invalid(void)
{
	check_bad("lb.example.com", "is not an IP address");
	check_bad("10.0.0.5:", "port '' is not 1-65535");
	check_bad("10.0.0.5:0", "port '0' is not 1-65535");
	check_bad("10.0.0.5:65536", "port '65536'");
	check_bad("10.0.0.5:+1", "port '+1'");
	check_bad("2001:db8::1", "in brackets");
	check_bad("[2001:db8::1", "without ']'");
	check_bad("[10.0.0.5]:143", "not an IPv6 address");
	check_bad("[::1]x", "expected ':PORT' after ']'");
	check_bad("10.0.0.5,10.0.0.6", "must each name their protocol");
	check_bad("imap=10.0.0.5,smtp=10.0.0.5", "unknown protocol 'smtp'");
	check_bad("imap=10.0.0.5,imap=10.0.0.5", "given twice");
	check_bad("imap=10.0.0.5,", "ends with ','");
	check_bad("imap=", "empty");
	check_bad("=10.0.0.5", "unknown protocol ''");
	check_bad("imap=10.0.0.5,10.0.0.6", "expected PROTOCOL=HOST[:PORT]");
	check_bad("imap=10.0.0.5:1,pop3=bad", "'bad' is not an IP address");
}

void suite_lb_address(void)
{
	test_single();
	test_list();
	test_invalid();
}
