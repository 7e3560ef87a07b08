/* pop3_command.c - POP3 command line parsing.
 *
 * The line is copied once into the caller's scratch buffer with the keyword
 * upper-cased, and the separating spaces are overwritten with NULs, so that
 * the keyword and the arguments are all pointers into that one copy of
 * len + 1 bytes.  PASS stops splitting after its keyword.
 */
#include "proto/pop3_command.h"

#include <stdbool.h>
#include <string.h>

static int pop3_fail(struct pop3_command *cmd, const char **error_r, const char *error)
{
	memset(cmd, 0, sizeof(*cmd));
	*error_r = error;
	return -1;
}

int pop3_command_parse(const char *line, size_t len, char *buf, size_t buf_size,
		       struct pop3_command *cmd_r, const char **error_r)
{
	size_t i, start;
	bool whole_rest;

	memset(cmd_r, 0, sizeof(*cmd_r));
	*error_r = NULL;
	if (len == 0)
		return pop3_fail(cmd_r, error_r, "empty line");
	if (len > POP3_LINE_MAX)
		return pop3_fail(cmd_r, error_r, "line too long");
	if (buf_size < len + 1)
		return pop3_fail(cmd_r, error_r, "line too long for the parse buffer");
	for (i = 0; i < len; i++) {
		if (line[i] == '\0')
			return pop3_fail(cmd_r, error_r, "NUL in command line");
		if (line[i] == '\r' || line[i] == '\n')
			return pop3_fail(cmd_r, error_r, "bare CR or LF in command line");
	}

	for (i = 0; i < len && line[i] != ' '; i++) {
		char c = line[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		else if (c < 'A' || c > 'Z')
			return pop3_fail(cmd_r, error_r, "keyword is not alphabetic");
		if (i == POP3_KEYWORD_MAX)
			return pop3_fail(cmd_r, error_r, "keyword too long");
		buf[i] = c;
	}
	if (i == 0)
		return pop3_fail(cmd_r, error_r, "line starts with a space instead of a keyword");
	buf[i] = '\0';
	cmd_r->keyword = buf;
	whole_rest = strcmp(buf, "PASS") == 0;
	if (i == len)
		return 0;

	/* line[i] is the space after the keyword or an argument. */
	while (i < len) {
		size_t end;

		start = ++i;
		if (whole_rest) {
			end = len;
		} else {
			const char *sp = memchr(line + start, ' ', len - start);

			end = sp == NULL ? len : (size_t)(sp - line);
			if (end == start)
				return pop3_fail(cmd_r, error_r,
						 "empty argument: arguments are separated by "
						 "single spaces");
		}
		if (cmd_r->arg_count == POP3_ARGS_MAX)
			return pop3_fail(cmd_r, error_r, "too many arguments");
		memcpy(buf + start, line + start, end - start);
		buf[end] = '\0';
		cmd_r->args[cmd_r->arg_count++] = buf + start;
		i = end;
	}
	return 0;
}
