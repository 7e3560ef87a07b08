/* test_command.c - unit tests for src/util/command: %{name} expansion with
 * shell quoting (quotes, ";", "$(...)" in values stay inert, checked by a
 * real /bin/sh), exit statuses, signals, output capture and its limits,
 * stdin from /dev/null, no inherited descriptors or ignored signals, and
 * timeouts that kill the whole process group and leave no process behind. */
#include "unit.h"

#include "util/command.h"
#include "util/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const struct command_var move_vars[] = {
	{"user", "o'brien; rm -rf /tmp/nothing"},
	{"group", "17"},
	{"from", "backend1"},
	{"to", "$(touch /tmp/mc-command-test-pwned)`id`"},
};
#define MOVE_VAR_COUNT (sizeof(move_vars) / sizeof(move_vars[0]))

static bool contains(const char *text, const char *part)
{
	return text != NULL && strstr(text, part) != NULL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Gone = no such process, or a zombie of someone else's (an orphan that
 * init has not reaped yet). */
static bool process_gone(pid_t pid)
{
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	char path[64], stat[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return true;
	ssize_t n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return true;
	stat[n] = '\0';
	const char *close_paren = strrchr(stat, ')');
	return close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

static void test_expand(void)
{
	struct strbuf out = {0};
	const char *error = NULL;

	CHECK(command_expand("hook %{user} %{group} %{from}->%{to}", move_vars, MOVE_VAR_COUNT,
			     &out, &error) == 0);
	CHECK_STR(out.data, "hook 'o'\\''brien; rm -rf /tmp/nothing' '17' 'backend1'->"
			    "'$(touch /tmp/mc-command-test-pwned)`id`'");
	strbuf_free(&out);

	/* "%" alone, "%%", "%d" and a "%{" at the very end of a value are text */
	CHECK(command_expand("echo 100% %% %d %{group}%", move_vars, MOVE_VAR_COUNT, &out,
			     &error) == 0);
	CHECK_STR(out.data, "echo 100% %% %d '17'%");
	strbuf_free(&out);

	const struct command_var tricky[] = {{"v", "''"}, {"e", ""}, {"p", "%{v}"}};
	CHECK(command_expand("%{v}|%{e}|%{p}", tricky, 3, &out, &error) == 0);
	CHECK_STR(out.data, "''\\'''\\'''|''|'%{v}'");
	strbuf_free(&out);

	CHECK(command_expand("", move_vars, MOVE_VAR_COUNT, &out, &error) == 0);
	CHECK_STR(out.data, "");
	strbuf_free(&out);

	CHECK(command_expand("hook %{nope}", move_vars, MOVE_VAR_COUNT, &out, &error) == -1);
	CHECK_STR(error, "unknown variable %{nope} (known: %{user} %{group} %{from} %{to})");
	strbuf_free(&out);
	CHECK(command_expand("hook %{user", move_vars, MOVE_VAR_COUNT, &out, &error) == -1);
	CHECK_STR(error, "unterminated %{ in 'hook %{user'");
	strbuf_free(&out);
	CHECK(command_expand("%{x}", NULL, 0, &out, &error) == -1);
	CHECK_STR(error, "unknown variable %{x} (known: none)");
	strbuf_free(&out);
}

static void test_run_quoting(void)
{
	char output[512];
	int status = 99;
	const char *error = NULL;

	unlink("/tmp/mc-command-test-pwned");
	/* every value arrives as exactly one argument, byte for byte */
	int ret = command_run("printf '[%s]' %{user} %{group} %{from} %{to}", move_vars,
			      MOVE_VAR_COUNT, 5000, &status, output, sizeof(output), &error);
	CHECK(ret == 0);
	if (ret < 0)
		fprintf(stderr, "  command_run: %s\n", error);
	CHECK(status == 0);
	CHECK_STR(output, "[o'brien; rm -rf /tmp/nothing][17][backend1]"
			  "[$(touch /tmp/mc-command-test-pwned)`id`]");
	CHECK(access("/tmp/mc-command-test-pwned", F_OK) < 0);

	const struct command_var multi[] = {{"v", "line1\nline2\t'x'"}};
	CHECK(command_run("printf %s %{v} | wc -l", multi, 1, 5000, &status, output, sizeof(output),
			  &error) == 0);
	CHECK_STR(output, "1");

	/* an unknown variable runs nothing */
	CHECK(command_run("touch /tmp/mc-command-test-pwned; %{nope}", move_vars, MOVE_VAR_COUNT,
			  5000, &status, output, sizeof(output), &error) == -1);
	CHECK(status == -1);
	CHECK(contains(error, "unknown variable %{nope}"));
	CHECK(access("/tmp/mc-command-test-pwned", F_OK) < 0);
}

static void test_run_status_and_output(void)
{
	char output[64];
	int status = 99;
	const char *error = NULL;

	CHECK(command_run("echo out; echo err >&2; exit 3", NULL, 0, 5000, &status, output,
			  sizeof(output), &error) == -1);
	CHECK(status == 3);
	CHECK_STR(error, "the command exited with status 3");
	CHECK_STR(output, "out err");

	CHECK(command_run("true", NULL, 0, 5000, &status, output, sizeof(output), &error) == 0);
	CHECK(status == 0);
	CHECK_STR(output, "");

	CHECK(command_run("kill -USR1 $$", NULL, 0, 5000, &status, output, sizeof(output),
			  &error) == -1);
	CHECK(status == -1);
	CHECK_STR(error, "the command was killed by signal 10 (SIGUSR1)");

	CHECK(command_run("exec /nonexistent/hook", NULL, 0, 5000, &status, output, sizeof(output),
			  &error) == -1);
	CHECK(status == 127 || status == 2);
	CHECK(contains(output, "/nonexistent/hook"));

	/* a flood: the first bytes are kept, the rest read and dropped */
	char small[16];
	uint64_t start = mono_ms();
	CHECK(command_run("head -c 1000000 /dev/zero | tr '\\0' a; echo done >&2", NULL, 0, 10000,
			  &status, small, sizeof(small), &error) == 0);
	CHECK(mono_ms() - start < 5000);
	CHECK_STR(small, "aaaaaaaaaaaaaaa");
	/* no room at all is fine too */
	CHECK(command_run("echo hi", NULL, 0, 5000, &status, NULL, 0, &error) == 0);
	CHECK(command_run("echo hi", NULL, 0, 5000, &status, small, 1, &error) == 0);
	CHECK_STR(small, "");

	/* control characters become spaces, trailing ones go */
	CHECK(command_run("printf 'a\\tb\\r\\nc\\001d\\n\\n'", NULL, 0, 5000, &status, output,
			  sizeof(output), &error) == 0);
	CHECK_STR(output, "a b  c d");
}

static void test_run_environment(void)
{
	char output[256];
	int status;
	const char *error = NULL;

	/* stdin is /dev/null: cat ends at once instead of waiting */
	CHECK(command_run("cat; echo eof", NULL, 0, 3000, &status, output, sizeof(output),
			  &error) == 0);
	CHECK_STR(output, "eof");

	/* a descriptor of ours without O_CLOEXEC does not leak into the hook */
	int fd = open("/dev/null", O_RDONLY);
	CHECK(fd >= 0);
	CHECK(dup2(fd, 57) == 57);
	close(fd);
	CHECK(command_run("if [ -e /proc/$$/fd/57 ]; then echo leaked; else echo closed; fi", NULL,
			  0, 3000, &status, output, sizeof(output), &error) == 0);
	CHECK_STR(output, "closed");
	close(57);

	/* an ignored SIGPIPE (as in the daemon) is not inherited: "yes" dies
	 * of SIGPIPE quietly instead of complaining about EPIPE */
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);
	sigset_t block, old_mask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &old_mask);
	CHECK(command_run("yes | head -n 1", NULL, 0, 5000, &status, output, sizeof(output),
			  &error) == 0);
	CHECK_STR(output, "y");
	/* nor is a blocked signal: SigBlk of the shell is all zero */
	CHECK(command_run("grep SigBlk /proc/self/status", NULL, 0, 5000, &status, output,
			  sizeof(output), &error) == 0);
	CHECK(contains(output, "SigBlk: 0000000000000000"));
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	signal(SIGPIPE, old);

	/* a process group of its own */
	char expected[64];
	snprintf(expected, sizeof(expected), "%d", (int)getpgrp());
	CHECK(command_run("set -- $(cat /proc/$$/stat); echo $5 $$", NULL, 0, 5000, &status, output,
			  sizeof(output), &error) == 0);
	char pgid[32], pid[32];
	CHECK(sscanf(output, "%31s %31s", pgid, pid) == 2);
	CHECK(strcmp(pgid, pid) == 0);
	CHECK(strcmp(pgid, expected) != 0);
}

static void test_run_timeout(void)
{
	char output[128];
	int status = 99;
	const char *error = NULL;

	/* the shell and a child in the background, both killed with SIGTERM */
	uint64_t start = mono_ms();
	CHECK(command_run("sleep 60 & echo $$ $!; wait", NULL, 0, 300, &status, output,
			  sizeof(output), &error) == -1);
	uint64_t took = mono_ms() - start;
	CHECK(took >= 290 && took < 2000);
	CHECK(status == -1);
	CHECK_STR(error, "timed out after 300 ms: killed its process group with SIGTERM");
	int shell = 0, sleeper = 0;
	CHECK(sscanf(output, "%d %d", &shell, &sleeper) == 2);
	CHECK(shell > 0 && process_gone(shell));
	/* the orphaned sleep may take a moment to be reaped by init */
	for (int i = 0; i < 100 && sleeper > 0 && !process_gone(sleeper); i++)
		usleep(10000);
	CHECK(sleeper > 0 && process_gone(sleeper));

	/* a plain foreground sleep 60 */
	start = mono_ms();
	CHECK(command_run("sleep 60", NULL, 0, 200, &status, output, sizeof(output), &error) == -1);
	CHECK(mono_ms() - start < 2000);
	CHECK(contains(error, "timed out after 200 ms"));

	/* SIGTERM ignored by all: SIGKILL after the grace period */
	start = mono_ms();
	CHECK(command_run("trap '' TERM; echo $$; sleep 60; echo survived", NULL, 0, 200, &status,
			  output, sizeof(output), &error) == -1);
	took = mono_ms() - start;
	CHECK(took >= 200 + COMMAND_KILL_GRACE_MS - 50 &&
	      took < 200 + COMMAND_KILL_GRACE_MS + 2000);
	CHECK_STR(error, "timed out after 200 ms: killed its process group with SIGTERM, then "
			 "SIGKILL 2000 ms later");
	CHECK(sscanf(output, "%d", &shell) == 1 && process_gone(shell));
	CHECK(!contains(output, "survived"));

	/* a background process that outlives a quick, successful hook is
	 * left alone, and does not hold command_run up */
	start = mono_ms();
	CHECK(command_run("sleep 5 >/dev/null 2>&1 & echo $!", NULL, 0, 3000, &status, output,
			  sizeof(output), &error) == 0);
	CHECK(mono_ms() - start < 1000);
	sleeper = atoi(output);
	CHECK(sleeper > 0 && !process_gone(sleeper));
	if (sleeper > 0)
		kill(sleeper, SIGKILL);
	/* ... even when it keeps the output pipe open */
	start = mono_ms();
	CHECK(command_run("sleep 5 & echo $!", NULL, 0, 3000, &status, output, sizeof(output),
			  &error) == 0);
	CHECK(mono_ms() - start < 1000);
	sleeper = atoi(output);
	if (sleeper > 0)
		kill(sleeper, SIGKILL);
}

void suite_command(void)
{
	test_expand();
	test_run_quoting();
	test_run_status_and_output();
	test_run_environment();
	test_run_timeout();
}
