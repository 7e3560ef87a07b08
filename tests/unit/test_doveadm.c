/* test_doveadm.c - unit tests for src/net/doveadm: URL templates, the
 * readers of doveadm HTTP API answers (shapes taken from a real Dovecot
 * 2.3.19, garbage, every truncation and byte flips of a real answer), kick
 * masks, and the HTTP client against a fake server forked per test
 * (chunked and Content-Length bodies, the key check, 401, 404, timeouts,
 * refused connections, oversized answers, kick batches and kick_group). */
#include "unit.h"

#include "brain/user.h"
#include "net/doveadm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool contains(const char *text, const char *part)
{
	return text != NULL && strstr(text, part) != NULL;
}

/* ---- URL templates ---- */

static void test_url_expand(void)
{
	char url[128];
	const char *tpl = "http://%{address}:8080/doveadm/v1";

	CHECK(doveadm_url_expand(tpl, "b1", "127.0.0.2", url, sizeof(url)) == 0);
	CHECK_STR(url, "http://127.0.0.2:8080/doveadm/v1");
	CHECK(doveadm_url_expand("http://%{backend}.mail.test:80/%{backend}%{address}", "b1",
				 "10.0.0.1", url, sizeof(url)) == 0);
	CHECK_STR(url, "http://b1.mail.test:80/b110.0.0.1");
	/* IPv6 gets brackets, unless the template has them */
	CHECK(doveadm_url_expand(tpl, "b1", "2001:db8::1", url, sizeof(url)) == 0);
	CHECK_STR(url, "http://[2001:db8::1]:8080/doveadm/v1");
	CHECK(doveadm_url_expand("http://[%{address}]:8080/", "b1", "::1", url, sizeof(url)) == 0);
	CHECK_STR(url, "http://[::1]:8080/");
	/* a lone % and a "%{" that is not ours */
	CHECK(doveadm_url_expand("http://h/100%x%", "b", "a", url, sizeof(url)) == 0);
	CHECK_STR(url, "http://h/100%x%");
	CHECK(doveadm_url_expand("http://%{site}/", "b", "a", url, sizeof(url)) == -1);
	CHECK(doveadm_url_expand("http://%{address", "b", "a", url, sizeof(url)) == -1);
	CHECK(doveadm_url_expand("http://%{}/", "b", "a", url, sizeof(url)) == -1);
	/* exact fit, one byte short */
	const char *expected = "http://127.0.0.2:8080/doveadm/v1";
	size_t need = strlen(expected) + 1;
	char *exact = malloc(need);
	CHECK(doveadm_url_expand(tpl, "b1", "127.0.0.2", exact, need) == 0);
	CHECK_STR(exact, expected);
	CHECK(doveadm_url_expand(tpl, "b1", "127.0.0.2", exact, need - 1) == -1);
	free(exact);
	CHECK(doveadm_url_expand("", "b", "a", url, sizeof(url)) == 0);
	CHECK_STR(url, "");
}

/* ---- the answer readers ---- */

/* What Dovecot 2.3.19 really sends for three users: the row array is closed
 * after the first row, the others follow as loose objects. */
static const char who_2319[] =
	"[[\"doveadmResponse\",[{\"username\":\"user3\",\"connections\":\"1\",\"service\":"
	"\"imap\",\"pids\":\"(16171)\",\"ips\":\"(127.0.0.1)\"}],{\"username\":\"user2\","
	"\"connections\":\"1\",\"service\":\"imap\",\"pids\":\"(16170)\",\"ips\":\"(127.0.0.1)\"},"
	"{\"username\":\"user1\",\"connections\":\"1\",\"service\":\"imap\",\"pids\":\"(16169)\","
	"\"ips\":\"(127.0.0.1)\"},\"who\"]]";

static void check_users(const struct doveadm_user_list *list, const char *const *expected,
			size_t count)
{
	CHECK(list->count == count);
	for (size_t i = 0; i < count && i < list->count; i++)
		CHECK_STR(list->users[i], expected[i]);
}

static void test_who_parse(void)
{
	struct doveadm_user_list users;
	const char *error = NULL;
	static const char *const three[] = {"user1", "user2", "user3"};

	CHECK(doveadm_who_parse(who_2319, strlen(who_2319), &users, &error) == 0);
	check_users(&users, three, 3);
	doveadm_user_list_free(&users);
	CHECK(users.users == NULL && users.count == 0);

	/* the documented shape, whitespace, one user on two services */
	const char *proper = " [ [\"doveadmResponse\", [ {\"username\":\"user2\",\"service\":"
			     "\"imap\"}, {\"username\":\"user1\",\"service\":\"pop3\"},\n"
			     "{\"username\":\"user2\",\"service\":\"pop3\"} ] , \"who\" ] ]\r\n";
	static const char *const two[] = {"user1", "user2"};
	CHECK(doveadm_who_parse(proper, strlen(proper), &users, &error) == 0);
	check_users(&users, two, 2);
	doveadm_user_list_free(&users);

	/* nobody connected: both shapes Dovecot could send */
	const char *empty1 = "[[\"doveadmResponse\",[],\"who\"]]";
	const char *empty2 = "[[\"doveadmResponse\",\"who\"]]";
	CHECK(doveadm_who_parse(empty1, strlen(empty1), &users, &error) == 0);
	CHECK(users.count == 0);
	doveadm_user_list_free(&users);
	CHECK(doveadm_who_parse(empty2, strlen(empty2), &users, &error) == 0);
	CHECK(users.count == 0);
	doveadm_user_list_free(&users);

	/* escapes: \u00e9 (UTF-8 c3 a9), a quote, a surrogate pair, numbers */
	const char *escaped = "[[\"doveadmResponse\",[{\"username\":\"us\\u00e9r\","
			      "\"connections\":2},{\"username\":\"a\\\"b\\/c\"},{\"username\":"
			      "\"\\ud83d\\ude00x\",\"n\":-1.5e+3,\"t\":true,\"z\":null}],\"who\"]]";
	static const char *const esc[] = {"a\"b/c", "us\xc3\xa9r", "\xf0\x9f\x98\x80x"};
	CHECK(doveadm_who_parse(escaped, strlen(escaped), &users, &error) == 0);
	check_users(&users, esc, 3);
	doveadm_user_list_free(&users);

	/* "error" answers are sentences */
	const char *tempfail = "[[\"error\",{\"type\":\"exitCode\", \"exitCode\":75},\"who\"]]";
	CHECK(doveadm_who_parse(tempfail, strlen(tempfail), &users, &error) == -1);
	CHECK_STR(error, "who failed with exit code 75 (EX_TEMPFAIL)");
	CHECK(users.count == 0 && users.users == NULL);
	const char *forbidden = "[[\"error\",{\"type\":\"unAuthorized\", \"exitCode\":0},\"who\"]]";
	CHECK(doveadm_who_parse(forbidden, strlen(forbidden), &users, &error) == -1);
	CHECK(contains(error, "doveadm_allowed_commands"));
	const char *unknown = "[[\"error\",{\"type\":\"unknownMethod\", \"exitCode\":0},\"who\"]]";
	CHECK(doveadm_who_parse(unknown, strlen(unknown), &users, &error) == -1);
	CHECK(contains(error, "does not know the command who"));
}

static const struct {
	const char *body, *error_part;
} who_garbage[] = {
	{"", "ends too early"},
	{"   ", "ends too early"},
	{"[", "ends too early"},
	{"not json", "unexpected 'n'"},
	{"{\"a\":1}", "not a JSON array"},
	{"[[\"doveadmResponse\",[],\"who\"]] x", "data after the JSON value"},
	{"[[\"doveadmResponse\",[],\"who\"],]", "unexpected ']'"},
	{"[[\"doveadmResponse\",[],\"who\"]]]", "data after"},
	{"[[\"doveadmResponse\",[{\"username\" \"u\"}],\"who\"]]", "expected ':'"},
	{"[[\"doveadmResponse\",[{\"username\":\"u\",}],\"who\"]]", "expected a string key"},
	{"[[\"doveadmResponse\",[{\"username\":\"u\"]],\"who\"]]", "expected ',' or '}'"},
	{"[[\"doveadmResponse\",[{username:\"u\"}],\"who\"]]", "expected a string key"},
	{"[[\"doveadmResponse\",[{\"username\":\"a\tb\"}],\"who\"]]", "control character"},
	{"[[\"doveadmResponse\",[{\"username\":\"a\\xb\"}],\"who\"]]", "bad escape"},
	{"[[\"doveadmResponse\",[{\"username\":\"a\\u12G4\"}],\"who\"]]", "bad \\u escape"},
	{"[[\"doveadmResponse\",[{\"username\":\"a\\u00\"}],\"who\"]]", "bad \\u escape"},
	{"[[\"doveadmResponse\",[{\"username\":\"unterminated", "unterminated string"},
	{"[[\"doveadmResponse\",[{\"n\":01}],\"who\"]]", "expected ',' or '}'"},
	{"[[\"doveadmResponse\",[{\"n\":1.}],\"who\"]]", "unexpected '1'"},
	{"[[\"doveadmResponse\",[{\"n\":tru}],\"who\"]]", "unexpected 't'"},
	{"[[\"doveadmResponse\",[{\"n\":truex}],\"who\"]]", "expected ',' or '}'"},
	/* well-formed JSON, wrong shape */
	{"[]", "no answer"},
	{"[1]", "not [kind, ..., tag]"},
	{"[[\"doveadmResponse\"]]", "not [kind, ..., tag]"},
	{"[[\"doveadmResponse\",[],7]]", "does not end with a tag"},
	{"[[\"doveadmResponse\",[],\"k0\"]]", "the tag 'k0', expected 'who'"},
	{"[[\"whatever\",[],\"who\"]]", "neither doveadmResponse nor error"},
	{"[[\"doveadmResponse\",[],\"who\"],[\"doveadmResponse\",[],\"who\"]]", "more than one"},
	{"[[\"doveadmResponse\",[{\"user\":\"u\"}],\"who\"]]", "no username"},
	{"[[\"doveadmResponse\",[{\"username\":7}],\"who\"]]", "no username"},
	{"[[\"doveadmResponse\",[{\"username\":\"\"}],\"who\"]]", "empty username"},
	{"[[\"doveadmResponse\",[{\"username\":\"a\\u0000b\"}],\"who\"]]", "NUL"},
	{"[[\"doveadmResponse\",[\"user1\"],\"who\"]]", "not an object"},
	{"[[\"doveadmResponse\",\"user1\",\"who\"]]", "not an object"},
	{"[[\"error\",{\"type\":\"exitCode\",\"exitCode\":68},\"who\"]]", "exit code 68"},
	{"[[\"error\",\"who\"]]", "who failed: unknown"},
};

static void test_who_garbage(void)
{
	for (size_t i = 0; i < sizeof(who_garbage) / sizeof(who_garbage[0]); i++) {
		struct doveadm_user_list users;
		const char *error = NULL;
		const char *body = who_garbage[i].body;
		int ret = doveadm_who_parse(body, strlen(body), &users, &error);
		CHECK(ret == -1);
		CHECK(users.count == 0 && users.users == NULL);
		if (!contains(error, who_garbage[i].error_part))
			fprintf(stderr, "  garbage %zu '%s': error '%s', expected '%s'\n", i, body,
				error ? error : "(null)", who_garbage[i].error_part);
		CHECK(contains(error, who_garbage[i].error_part));
	}

	/* nesting: deep enough is refused, not recursed into */
	char deep[200];
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	struct doveadm_user_list users;
	const char *error = NULL;
	CHECK(doveadm_who_parse(deep, strlen(deep), &users, &error) == -1);
	CHECK(contains(error, "nested deeper"));

	/* a length that stops inside the text (the rest must not be read) */
	CHECK(doveadm_who_parse(who_2319, 10, &users, &error) == -1);
	CHECK(doveadm_who_parse(who_2319, 0, &users, &error) == -1);
}

/* Every truncation of a real answer fails cleanly, and byte flips either
 * parse or fail - never crash, never leak (the sanitizers watch). */
static void test_who_truncated_and_flipped(void)
{
	size_t len = strlen(who_2319);
	unsigned truncated_failures = 0;
	for (size_t cut = 0; cut < len; cut++) {
		struct doveadm_user_list users;
		const char *error;
		char *copy = malloc(cut + 1); /* exactly cut bytes: ASan sees over-reads */
		memcpy(copy, who_2319, cut);
		if (doveadm_who_parse(copy, cut, &users, &error) == -1 && users.count == 0)
			truncated_failures++;
		doveadm_user_list_free(&users);
		free(copy);
	}
	CHECK(truncated_failures == len);

	uint32_t seed = 12345;
	unsigned parsed = 0, failed = 0, empty_names = 0;
	static const char interesting[] = "[]{}\",:\\u0aZ \x01\xff";
	for (unsigned round = 0; round < 3000; round++) {
		char *copy = malloc(len);
		memcpy(copy, who_2319, len);
		for (unsigned flips = 0; flips < 1 + round % 3; flips++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % len;
			seed = seed * 1103515245u + 12345u;
			copy[at] = interesting[(seed >> 8) % (sizeof(interesting) - 1)];
		}
		struct doveadm_user_list users;
		const char *error;
		if (doveadm_who_parse(copy, len, &users, &error) == 0)
			parsed++;
		else
			failed++;
		for (size_t i = 0; i < users.count; i++)
			empty_names += users.users[i][0] == '\0';
		doveadm_user_list_free(&users);
		free(copy);
	}
	CHECK(parsed + failed == 3000);
	CHECK(empty_names == 0);
	CHECK(parsed > 0); /* flips inside strings keep it valid */
	CHECK(failed > 0);
}

static void test_kick_parse(void)
{
	unsigned kicked = 99;
	const char *error = NULL;
	/* what Dovecot 2.3.19 sent for kick user2, nosuch, user1 */
	const char *real = "[[\"doveadmResponse\",[{\"result\":\"user2\"}],\"k0\"],[\"error\","
			   "{\"type\":\"exitCode\", \"exitCode\":68},\"k1\"],[\"doveadmResponse\","
			   "[{\"result\":\"user1\"}],\"k2\"]]";
	CHECK(doveadm_kick_parse(real, strlen(real), 3, &kicked, &error) == 0);
	CHECK(kicked == 2);
	/* answers and commands must pair up */
	CHECK(doveadm_kick_parse(real, strlen(real), 4, &kicked, &error) == -1);
	CHECK_STR(error, "3 answers to 4 kick commands");
	CHECK(doveadm_kick_parse(real, strlen(real), 2, &kicked, &error) == -1);
	const char *swapped = "[[\"doveadmResponse\",[],\"k1\"],[\"doveadmResponse\",[],\"k0\"]]";
	CHECK(doveadm_kick_parse(swapped, strlen(swapped), 2, &kicked, &error) == -1);
	CHECK_STR(error, "answer 0 has the tag 'k1', expected 'k0'");
	/* a process with two users, in the 2.3.19 shape; an empty result */
	const char *two = "[[\"doveadmResponse\",[{\"result\":\"a\"}],{\"result\":\"b\"},\"k0\"],"
			  "[\"doveadmResponse\",[],\"k1\"]]";
	CHECK(doveadm_kick_parse(two, strlen(two), 2, &kicked, &error) == 0);
	CHECK(kicked == 1);
	/* other errors fail the call, and say which command */
	const char *usage = "[[\"doveadmResponse\",[{\"result\":\"user2\"}],\"k0\"],[\"error\","
			    "{\"type\":\"exitCode\", \"exitCode\":64},\"k1\"]]";
	CHECK(doveadm_kick_parse(usage, strlen(usage), 2, &kicked, &error) == -1);
	CHECK_STR(error, "kick k1 failed with exit code 64 (EX_USAGE)");
	CHECK(kicked == 1);
	const char *notallowed = "[[\"error\",{\"type\":\"unAuthorized\"},\"k0\"]]";
	CHECK(doveadm_kick_parse(notallowed, strlen(notallowed), 1, &kicked, &error) == -1);
	CHECK(contains(error, "kick k0 is not allowed"));
	CHECK(doveadm_kick_parse("[]", 2, 0, &kicked, &error) == 0);
	CHECK(kicked == 0);
	CHECK(doveadm_kick_parse("[", 1, 0, &kicked, &error) == -1);
	CHECK(contains(error, "malformed JSON"));
}

static void test_kick_mask(void)
{
	static const struct {
		const char *user, *mask;
	} masks[] = {
		{"user1", "user1"},
		{"alice@example.com", "alice@example.com"},
		{"12345", "1234?"},
		{"10.1.2.3", "10.1.2.?"},
		{"10.1", "10.?"},
		{"0x7f", "0x7?"},
		{"10.0.0.0/8", "10.0.0.0/?"},
		{"::1", "::?"},
		{"[::1]", "[::1?"},
		{"2001:db8::/32", "2001:db8::/3?"},
		{"user:1", "user:1"},
		{"a*b", "a*b"},
		{"1", "?"},
		{"1.2.3.4.5", "1.2.3.4.5"},
	};
	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		char mask[64];
		CHECK(doveadm_kick_mask(masks[i].user, mask, sizeof(mask)) == 0);
		CHECK_STR(mask, masks[i].mask);
	}
	char small[4];
	CHECK(doveadm_kick_mask("user1", small, sizeof(small)) == -1);
	CHECK(doveadm_kick_mask("", small, sizeof(small)) == -1);
}

/* ---- the HTTP client against a fake server ---- */

struct fake_server {
	pid_t pid;
	int port;
	int requests_fd; /* what the server received, for the test to read */
};

/* Serves answers[i] to the i-th connection, after delay_ms; the requests
 * go back through a pipe, each followed by "\n--END--\n".  An answer of
 * NULL: accept, read, never answer (until killed). */
static void fake_start(struct fake_server *fs, const char *const *answers, size_t count,
		       unsigned delay_ms)
{
	int listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sin_len = sizeof(sin);
	int pipe_fds[2];

	CHECK(listen_fd >= 0);
	CHECK(bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(listen(listen_fd, 8) == 0);
	CHECK(getsockname(listen_fd, (struct sockaddr *)&sin, &sin_len) == 0);
	CHECK(pipe(pipe_fds) == 0);
	fs->port = ntohs(sin.sin_port);
	fflush(NULL);
	fs->pid = fork();
	if (fs->pid == 0) {
		close(pipe_fds[0]);
		for (size_t i = 0; i < count; i++) {
			int fd = accept(listen_fd, NULL, NULL);
			if (fd < 0)
				_exit(1);
			/* read the head, then Content-Length bytes of body */
			char buf[65536];
			size_t len = 0;
			char *end = NULL;
			while (end == NULL && len < sizeof(buf) - 1) {
				ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
				if (n <= 0)
					break;
				len += (size_t)n;
				buf[len] = '\0';
				end = strstr(buf, "\r\n\r\n");
			}
			const char *cl = strstr(buf, "Content-Length: ");
			size_t want =
				end == NULL ? len
					    : (size_t)(end + 4 - buf) +
						      (cl != NULL ? strtoul(cl + 16, NULL, 10) : 0);
			while (len < want && len < sizeof(buf) - 1) {
				ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
				if (n <= 0)
					break;
				len += (size_t)n;
			}
			if (write(pipe_fds[1], buf, len) < 0 ||
			    write(pipe_fds[1], "\n--END--\n", 9) < 0)
				_exit(1);
			if (answers[i] == NULL) {
				pause();
				_exit(0);
			}
			if (delay_ms > 0) {
				struct timespec ts = {delay_ms / 1000,
						      (long)(delay_ms % 1000) * 1000000};
				nanosleep(&ts, NULL);
			}
			/* in pieces, to exercise reassembly */
			size_t answer_len = strlen(answers[i]);
			for (size_t off = 0; off < answer_len; off += 7) {
				size_t n = answer_len - off < 7 ? answer_len - off : 7;
				if (write(fd, answers[i] + off, n) < 0)
					break;
			}
			close(fd);
		}
		_exit(0);
	}
	close(listen_fd);
	close(pipe_fds[1]);
	fs->requests_fd = pipe_fds[0];
}

/* Stops the server; returns what it received (free it). */
static char *fake_finish(struct fake_server *fs)
{
	int status;
	/* a server that hangs on purpose is killed; others have exited */
	if (waitpid(fs->pid, &status, WNOHANG) == 0) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
		if (waitpid(fs->pid, &status, WNOHANG) == 0) {
			kill(fs->pid, SIGKILL);
			waitpid(fs->pid, &status, 0);
		}
	}
	char *text = malloc(1);
	size_t len = 0;
	for (;;) {
		char buf[4096];
		ssize_t n = read(fs->requests_fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		text = realloc(text, len + (size_t)n + 1);
		memcpy(text + len, buf, (size_t)n);
		len += (size_t)n;
	}
	text[len] = '\0';
	close(fs->requests_fd);
	return text;
}

static const char key_ok[] =
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n[...]";

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_http_who_chunked(void)
{
	struct fake_server fs;
	char url[64];
	/* the who answer in chunks of odd sizes, with an extension and a trailer */
	char chunked[2048];
	size_t len = strlen(who_2319), first = 17;
	snprintf(chunked, sizeof(chunked),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		 "transfer-encoding:  chunked\r\n\r\n%zx;ext=1\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n"
		 "X-Trailer: 1\r\n\r\n",
		 first, (int)first, who_2319, len - first, who_2319 + first);
	const char *answers[] = {key_ok, chunked};
	fake_start(&fs, answers, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);

	struct doveadm_user_list users;
	const char *error = NULL;
	static const char *const three[] = {"user1", "user2", "user3"};
	int ret = doveadm_who(url, "secret-key", 5000, &users, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  who: %s\n", error);
	check_users(&users, three, 3);
	doveadm_user_list_free(&users);

	char *requests = fake_finish(&fs);
	/* first the key check (a GET: no body), then the POST */
	CHECK(strncmp(requests, "GET /doveadm/v1 HTTP/1.1\r\n", 26) == 0);
	/* base64("secret-key") */
	CHECK(contains(requests, "\r\nAuthorization: X-Dovecot-API c2VjcmV0LWtleQ==\r\n"));
	char host[64];
	snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", fs.port);
	CHECK(contains(requests, host));
	const char *post = strstr(requests, "--END--\n");
	CHECK(post != NULL && strncmp(post + 8, "POST /doveadm/v1 HTTP/1.1\r\n", 27) == 0);
	CHECK(contains(post, "\r\nContent-Type: application/json\r\n"));
	CHECK(contains(post, "\r\nContent-Length: 18\r\n"));
	CHECK(contains(post, "\r\n\r\n[[\"who\",{},\"who\"]]\n--END--"));
	free(requests);
}

static void test_http_errors(void)
{
	struct fake_server fs;
	char url[64];
	char expected[160];
	struct doveadm_user_list users;
	const char *error = NULL;

	/* a wrong key: the GET gets the 401, nothing is POSTed */
	const char *unauthorized[] = {
		"HTTP/1.1 401 Authentication required\r\nContent-Length: 0\r\n"
		"Connection: close\r\nWWW-Authenticate: X-Dovecot-API\r\n\r\n"};
	fake_start(&fs, unauthorized, 1, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "wrong", 5000, &users, &error) == -1);
	snprintf(expected, sizeof(expected),
		 "doveadm on %s: HTTP 401 (wrong backend_doveadm_api_key?)", url);
	CHECK_STR(error, expected);
	CHECK(users.count == 0);
	char *requests = fake_finish(&fs);
	CHECK(strstr(requests, "POST") == NULL);
	free(requests);

	/* a wrong path */
	const char *not_found[] = {
		"HTTP/1.1 404 Path Not Found\r\nContent-Length: 9\r\n\r\nNot Found"};
	fake_start(&fs, not_found, 1, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/nope", fs.port);
	CHECK(doveadm_who(url, "k", 5000, &users, &error) == -1);
	CHECK(contains(error, "HTTP 404 Path Not Found (the path should be /doveadm/v1)"));
	free(fake_finish(&fs));

	/* a 400 quotes the body; the body ends with the connection */
	const char *bad[] = {key_ok, "HTTP/1.1 400 Bad Request\r\n\r\nJSON parse error:\nx"};
	fake_start(&fs, bad, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "k", 5000, &users, &error) == -1);
	CHECK(contains(error, ": HTTP 400 Bad Request: JSON parse error: x"));
	free(fake_finish(&fs));

	/* a server that never answers: the overall timeout holds */
	const char *silent[] = {key_ok, NULL};
	fake_start(&fs, silent, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	uint64_t start = mono_ms();
	CHECK(doveadm_who(url, "k", 300, &users, &error) == -1);
	uint64_t took = mono_ms() - start;
	CHECK(took >= 290 && took < 1500);
	snprintf(expected, sizeof(expected),
		 "doveadm on %s: timed out after 300 ms while waiting for the answer", url);
	CHECK_STR(error, expected);
	free(fake_finish(&fs));

	/* slow, but within the timeout */
	const char *slow[] = {key_ok, "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
				      "[[\"doveadmResponse\",[],\"who\"]]"};
	fake_start(&fs, slow, 2, 100);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "k", 3000, &users, &error) == 0);
	doveadm_user_list_free(&users);
	free(fake_finish(&fs));

	/* the connection ends inside the body */
	const char *short_body[] = {key_ok, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[[\"do"};
	fake_start(&fs, short_body, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "k", 3000, &users, &error) == -1);
	CHECK(contains(error, "closed after"));
	free(fake_finish(&fs));

	/* too big to accept */
	const char *huge[] = {key_ok, "HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\n[["};
	fake_start(&fs, huge, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "k", 3000, &users, &error) == -1);
	CHECK(contains(error, "20000000 bytes, more than the 16777216 accepted"));
	free(fake_finish(&fs));

	/* not HTTP at all */
	const char *junk[] = {"* OK IMAP ready\r\n\r\n"};
	fake_start(&fs, junk, 1, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "k", 3000, &users, &error) == -1);
	CHECK(contains(error, "not an HTTP/1.x answer"));
	free(fake_finish(&fs));

	/* malformed chunking */
	const char *bad_chunk[] = {key_ok,
				   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"};
	fake_start(&fs, bad_chunk, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	CHECK(doveadm_who(url, "k", 3000, &users, &error) == -1);
	CHECK(contains(error, "bad chunk-size line 'zz'"));
	free(fake_finish(&fs));

	/* nobody listening */
	int probe = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sin_len = sizeof(sin);
	CHECK(bind(probe, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(getsockname(probe, (struct sockaddr *)&sin, &sin_len) == 0);
	close(probe);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", ntohs(sin.sin_port));
	CHECK(doveadm_who(url, "k", 3000, &users, &error) == -1);
	CHECK(contains(error, "connection refused by 127.0.0.1:"));
	CHECK(strncmp(error, "doveadm on http://127.0.0.1:", 28) == 0);

	/* URLs we do not speak */
	CHECK(doveadm_who("https://127.0.0.1:1/", "k", 100, &users, &error) == -1);
	CHECK(contains(error, "https is not supported"));
	CHECK(doveadm_who("http://u:p@127.0.0.1:1/", "k", 100, &users, &error) == -1);
	CHECK(contains(error, "user info in the URL"));
	CHECK(doveadm_who("http://127.0.0.1:99999/", "k", 100, &users, &error) == -1);
	CHECK(contains(error, "bad port '99999'"));
	CHECK(doveadm_who("http://[::1/", "k", 100, &users, &error) == -1);
	CHECK(contains(error, "unterminated [IPv6]"));
}

/* The group of a user as doveadm_kick_group() computes it. */
static unsigned group_of(const char *user, unsigned group_count)
{
	char normalized[300];
	if (user_normalize(user, normalized, sizeof(normalized)) < 0)
		return (unsigned)-1;
	return user_hash_group(normalized, group_count);
}

static void test_http_kick(void)
{
	struct fake_server fs;
	char url[64];
	const char *error = NULL;
	unsigned kicked = 99;

	const char *kick_body =
		"[[\"doveadmResponse\",[{\"result\":\"user1\"}],\"k0\"],[\"error\","
		"{\"type\":\"exitCode\", \"exitCode\":68},\"k1\"],[\"doveadmResponse\","
		"[],\"k2\"]]";
	char kick_http3[512];
	snprintf(kick_http3, sizeof(kick_http3), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(kick_body), kick_body);
	const char *answers[] = {key_ok, kick_http3};
	fake_start(&fs, answers, 2, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	const char *users[] = {"user1", "12345", "we\"ird"};
	int ret = doveadm_kick(url, "k", users, 3, 3000, &kicked, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  kick: %s\n", error);
	CHECK(kicked == 1);
	char *requests = fake_finish(&fs);
	CHECK(contains(requests,
		       "\r\n\r\n[[\"kick\",{\"mask\":[\"user1\"]},\"k0\"],[\"kick\",{\"mask\":"
		       "[\"1234?\"]},\"k1\"],[\"kick\",{\"mask\":[\"we\\\"ird\"]},\"k2\"]]"));
	free(requests);

	/* nothing to kick: no request at all */
	CHECK(doveadm_kick("http://127.0.0.1:1/", "k", users, 0, 100, &kicked, &error) == 0);
	CHECK(kicked == 0);

	/* kick_group: who, then kicks for exactly the users of the group */
	const unsigned group_count = 4;
	char who[4096] = "[[\"doveadmResponse\",[";
	const char *names[] = {"user1", "user2", "user3", "user4", "user5",
			       "user6", "user7", "user8", "User9", "user10"};
	for (size_t i = 0; i < 10; i++)
		snprintf(who + strlen(who), sizeof(who) - strlen(who), "%s{\"username\":\"%s\"}",
			 i == 0 ? "" : ",", names[i]);
	strcat(who, "],\"who\"]]");
	unsigned target = group_of("user1", group_count), members = 0;
	char kick_answer[4096] = "[";
	for (size_t i = 0; i < 10; i++) {
		if (group_of(names[i], group_count) != target)
			continue;
		snprintf(kick_answer + strlen(kick_answer),
			 sizeof(kick_answer) - strlen(kick_answer),
			 "%s[\"doveadmResponse\",[{\"result\":\"%s\"}],\"k%u\"]",
			 members == 0 ? "" : ",", names[i], members);
		members++;
	}
	strcat(kick_answer, "]");
	char who_http[4200], kick_http[4200];
	snprintf(who_http, sizeof(who_http), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(who), who);
	snprintf(kick_http, sizeof(kick_http), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(kick_answer), kick_answer);
	const char *group_answers[] = {key_ok, who_http, kick_http};
	fake_start(&fs, group_answers, 3, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/doveadm/v1", fs.port);
	ret = doveadm_kick_group(url, "k", group_count, target, 3000, &kicked, &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  kick_group: %s\n", error);
	CHECK(members >= 1 && kicked == members);
	requests = fake_finish(&fs);
	/* the kick request names the members (the sorted who list) and no one else */
	const char *kick_req = strstr(requests, "[[\"kick\"");
	CHECK(kick_req != NULL);
	for (size_t i = 0; kick_req != NULL && i < 10; i++) {
		char needle[64];
		snprintf(needle, sizeof(needle), "[\"%s\"]", names[i]);
		CHECK(contains(kick_req, needle) == (group_of(names[i], group_count) == target));
	}
	free(requests);

	CHECK(doveadm_kick_group(url, "k", 4, 4, 100, &kicked, &error) == -1);
	CHECK(contains(error, "group 4 is not below group_count 4"));
}

void suite_doveadm(void)
{
	test_url_expand();
	test_who_parse();
	test_who_garbage();
	test_who_truncated_and_flipped();
	test_kick_parse();
	test_kick_mask();
	test_http_who_chunked();
	test_http_errors();
	test_http_kick();
}
