/* command.c - see command.h.
 *
 * The shell is started with posix_spawn() (a vfork-style clone: cheap even
 * from a daemon with a large address space, and safe in a threaded one),
 * with the file actions and attributes doing what a child would do by hand:
 * new process group, /dev/null stdin, the pipe as stdout and stderr,
 * closefrom(3), empty signal mask, default dispositions.
 *
 * The parent then waits on the pipe and on a pidfd of the shell (the
 * pidfd becomes readable when the shell exits; without pidfds, a short
 * tick polls waitid()).  The shell's exit is noticed with WNOWAIT, i.e.
 * without reaping it, so that its pid - which is also its process group
 * id - cannot be reused while we may still signal the group.
 */
#include "util/command.h"

#include "util/strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* How often the exit is polled when no pidfd is available, and while a
 * killed group is given its grace period. */
#define COMMAND_TICK_MS 20

static __thread char command_error[512];

static int __attribute__((format(printf, 2, 3))) fail(const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(command_error, sizeof(command_error), fmt, args);
	va_end(args);
	*error_r = command_error;
	return -1;
}

static void append_quoted(struct strbuf *dst, const char *value)
{
	strbuf_append_n(dst, "'", 1);
	for (const char *p = value; *p != '\0';) {
		size_t len = strcspn(p, "'");
		strbuf_append_n(dst, p, len);
		p += len;
		if (*p == '\'') {
			strbuf_append_n(dst, "'\\''", 4);
			p++;
		}
	}
	strbuf_append_n(dst, "'", 1);
}

int command_expand(const char *template, const struct command_var *vars, size_t var_count,
		   struct strbuf *dst, const char **error_r)
{
	for (const char *p = template; *p != '\0';) {
		if (p[0] != '%' || p[1] != '{') {
			size_t len = strcspn(p + 1, "%") + 1;
			strbuf_append_n(dst, p, len);
			p += len;
			continue;
		}
		const char *close = strchr(p + 2, '}');
		if (close == NULL)
			return fail(error_r, "unterminated %%{ in '%s'", template);
		size_t name_len = (size_t)(close - (p + 2));
		const struct command_var *var = NULL;
		for (size_t i = 0; i < var_count && var == NULL; i++) {
			if (strlen(vars[i].name) == name_len &&
			    memcmp(vars[i].name, p + 2, name_len) == 0)
				var = &vars[i];
		}
		if (var == NULL) {
			struct strbuf known = {0};
			for (size_t i = 0; i < var_count; i++)
				strbuf_printf(&known, "%s%%{%s}", i == 0 ? "" : " ", vars[i].name);
			fail(error_r, "unknown variable %%{%.*s} (known: %s)", (int)name_len, p + 2,
			     var_count == 0 ? "none" : known.data);
			strbuf_free(&known);
			return -1;
		}
		append_quoted(dst, var->value);
		p = close + 1;
	}
	if (dst->data == NULL)
		strbuf_append_n(dst, "", 0);
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct capture {
	char *dst;
	size_t size, len;
};

/* Reads what the pipe has now; closes it (fd = -1) at its end. */
static void pipe_drain(int *fd, struct capture *out)
{
	char buf[4096];
	while (*fd >= 0) {
		ssize_t n = read(*fd, buf, sizeof(buf));
		if (n > 0) {
			for (ssize_t i = 0; i < n && out->len + 1 < out->size; i++) {
				unsigned char c = (unsigned char)buf[i];
				out->dst[out->len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		close(*fd);
		*fd = -1;
	}
}

/* Whether the shell has exited, without reaping it. */
static bool has_exited(pid_t pid)
{
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
		if (errno != EINTR)
			return true; /* ECHILD: nothing left to wait for */
	}
	return info.si_pid == pid;
}

/* Waits (reading the pipe) until the shell exits or the deadline passes.
 * true if it exited. */
static bool wait_exit(pid_t pid, int pidfd, int *pipe_fd, struct capture *out, uint64_t deadline)
{
	for (;;) {
		if (has_exited(pid))
			return true;
		uint64_t now = now_ms();
		if (now >= deadline)
			return false;
		uint64_t left = deadline - now;
		struct pollfd pfds[2];
		nfds_t n = 0;
		if (*pipe_fd >= 0)
			pfds[n++] = (struct pollfd){.fd = *pipe_fd, .events = POLLIN};
		if (pidfd >= 0)
			pfds[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		else if (left > COMMAND_TICK_MS)
			left = COMMAND_TICK_MS;
		if (poll(pfds, n, (int)(left > INT32_MAX ? INT32_MAX : left)) < 0 && errno != EINTR)
			left = COMMAND_TICK_MS; /* cannot happen; do not spin */
		pipe_drain(pipe_fd, out);
	}
}

/* Whether a process of group pgid is still running.  Zombies do not
 * count: killed orphans wait as zombies until init reaps them, which some
 * inits (in containers) do only every few seconds.  Without /proc, any
 * member counts. */
static bool group_alive(pid_t pgid)
{
	if (kill(-pgid, 0) < 0 && errno == ESRCH)
		return false;
	DIR *dir = opendir("/proc");
	if (dir == NULL)
		return true;
	bool alive = false;
	struct dirent *entry;
	while (!alive && (entry = readdir(dir)) != NULL) {
		if (entry->d_name[0] < '1' || entry->d_name[0] > '9')
			continue;
		char path[300], stat[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", entry->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, stat, sizeof(stat) - 1);
		close(fd);
		if (n <= 0)
			continue;
		stat[n] = '\0';
		/* "pid (comm) state ppid pgrp ...": comm may hold anything */
		const char *p = strrchr(stat, ')');
		char state;
		int ppid, pgrp;
		if (p != NULL && sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 &&
		    pgrp == pgid && state != 'Z' && state != 'X')
			alive = true;
	}
	closedir(dir);
	return alive;
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	long fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd >= 0) {
		(void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
		return (int)fd;
	}
#endif
	return -1;
}

static int spawn_shell(const char *command, int out_fd, pid_t *pid_r, const char **error_r)
{
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char *argv[] = {"sh", "-c", (char *)command, NULL};

	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
	posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
	posix_spawn_file_actions_addclosefrom_np(&actions, 3);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	int err = posix_spawn(pid_r, "/bin/sh", &actions, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	if (err != 0) {
		char buf[128];
		return fail(error_r, "cannot start /bin/sh: %s", strerror_r(err, buf, sizeof(buf)));
	}
	return 0;
}

int command_run(const char *template, const struct command_var *vars, size_t var_count,
		unsigned timeout_ms, int *exit_status_r, char *output_r, size_t output_size,
		const char **error_r)
{
	struct strbuf command = {0};
	struct capture out = {.dst = output_r, .size = output_r == NULL ? 0 : output_size};
	int pipe_fds[2], pidfd = -1, status = 0, ret = -1;
	pid_t pid;

	*exit_status_r = -1;
	if (out.size > 0)
		output_r[0] = '\0';
	if (command_expand(template, vars, var_count, &command, error_r) < 0) {
		strbuf_free(&command);
		return -1;
	}
	uint64_t deadline = now_ms() + timeout_ms;

	if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
		char buf[128];
		strbuf_free(&command);
		return fail(error_r, "pipe() failed: %s", strerror_r(errno, buf, sizeof(buf)));
	}
	int spawned = spawn_shell(command.data, pipe_fds[1], &pid, error_r);
	close(pipe_fds[1]);
	strbuf_free(&command);
	if (spawned < 0) {
		close(pipe_fds[0]);
		return -1;
	}
	int pipe_fd = pipe_fds[0];
	(void)fcntl(pipe_fd, F_SETFL, O_NONBLOCK);
	pidfd = open_pidfd(pid);

	bool exited = wait_exit(pid, pidfd, &pipe_fd, &out, deadline);
	bool reaped = false, needed_kill = false;
	if (!exited) {
		/* the whole group: the shell and whatever it started */
		(void)kill(-pid, SIGTERM);
		uint64_t grace = now_ms() + COMMAND_KILL_GRACE_MS;
		if (wait_exit(pid, pidfd, &pipe_fd, &out, grace)) {
			/* reaped now, so that kill(-pid, 0) below sees only the
			 * rest of the group (a zombie leader would count); the
			 * group id cannot be reused while members remain */
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			reaped = true;
		}
		while (group_alive(pid) && now_ms() < grace) {
			struct timespec tick = {0, COMMAND_TICK_MS * 1000000L};
			nanosleep(&tick, NULL);
			pipe_drain(&pipe_fd, &out);
		}
		if (group_alive(pid) && kill(-pid, SIGKILL) == 0)
			needed_kill = true;
	}
	/* whatever is already in the pipe; output of leftover background
	 * processes is not waited for */
	pipe_drain(&pipe_fd, &out);
	if (pipe_fd >= 0)
		close(pipe_fd);
	if (pidfd >= 0)
		close(pidfd);
	while (!reaped && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (out.size > 0) {
		while (out.len > 0 && out.dst[out.len - 1] == ' ')
			out.len--;
		out.dst[out.len] = '\0';
	}

	if (!exited) {
		if (needed_kill)
			fail(error_r,
			     "timed out after %u ms: killed its process group with SIGTERM, "
			     "then SIGKILL %d ms later",
			     timeout_ms, COMMAND_KILL_GRACE_MS);
		else
			fail(error_r,
			     "timed out after %u ms: killed its process group with SIGTERM",
			     timeout_ms);
	} else if (WIFEXITED(status)) {
		*exit_status_r = WEXITSTATUS(status);
		if (*exit_status_r == 0)
			ret = 0;
		else
			fail(error_r, "the command exited with status %d", *exit_status_r);
	} else if (WIFSIGNALED(status)) {
		const char *name = sigabbrev_np(WTERMSIG(status));
		fail(error_r, "the command was killed by signal %d (SIG%s)", WTERMSIG(status),
		     name != NULL ? name : "?");
	} else {
		fail(error_r, "the command ended with wait status 0x%x", (unsigned)status);
	}
	return ret;
}
