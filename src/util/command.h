/* command.h - run an operator's shell command (the move_hook) with a
 * timeout, for a worker thread.
 *
 * The template names variables as %{name}; each value is put into the
 * command shell-quoted (in single quotes, ' as '\''), so a value is always
 * one word and never code: "x'; rm -rf /" stays a harmless string.  A
 * "%" not followed by "{" is copied as it is.
 *
 * The command runs as `/bin/sh -c COMMAND` in a process group of its own,
 * with stdin from /dev/null, stdout and stderr into one pipe, every other
 * file descriptor closed, an empty signal mask and default signal
 * dispositions (the daemon may ignore SIGPIPE; the hook must not inherit
 * that).  On timeout the whole group gets SIGTERM, then SIGKILL after
 * COMMAND_KILL_GRACE_MS; the shell is always reaped.  Processes the command
 * leaves behind in the background after it exits normally are left alone.
 *
 * Errors are sentences in a thread-local buffer, valid until the same
 * thread's next call into this module.
 */
#ifndef COMMAND_H
#define COMMAND_H

#include <stddef.h>

struct strbuf;

/* How long a timed-out command has between SIGTERM and SIGKILL. */
#define COMMAND_KILL_GRACE_MS 2000

struct command_var {
	const char *name; /* without %{ } */
	const char *value;
};

/* Appends template to dst with every %{name} replaced by its quoted value.
 * -1 with *error_r for an unknown name or an unterminated "%{". */
int command_expand(const char *template, const struct command_var *vars, size_t var_count,
		   struct strbuf *dst, const char **error_r);

/* Expands template and runs it, waiting at most timeout_ms for it to exit.
 *
 * Returns 0 if it exited with status 0.  Otherwise -1 with *error_r:
 * the expansion failed, it could not start, it exited with another status,
 * a signal killed it, or it timed out (and was killed).  *exit_status_r is
 * the exit status when it exited by itself, else -1.
 *
 * output_r (output_size bytes, may be NULL/0) receives the first bytes of
 * its stdout and stderr, NUL-terminated, made fit for one log line:
 * control characters (newlines included) become spaces and trailing spaces
 * are dropped.  Later output is read and thrown away, so a chatty command
 * never blocks on a full pipe. */
int command_run(const char *template, const struct command_var *vars, size_t var_count,
		unsigned timeout_ms, int *exit_status_r, char *output_r, size_t output_size,
		const char **error_r);

#endif
