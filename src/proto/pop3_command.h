/* pop3_command.h - parsing one POP3 command line.
 *
 * A POP3 command is a case-insensitive keyword and up to two arguments,
 * each separated by a single space (RFC 1939 section 3), on a line of at
 * most 255 octets (RFC 2449; AUTH from RFC 5034, STLS, CAPA and friends
 * follow the same syntax).  PASS is the exception: its argument is the
 * whole rest of the line, spaces included, because real passwords contain
 * spaces.  Pure code: bytes in, results out, no allocation.
 *
 * The caller finds the line end itself and passes the line without its
 * CRLF.  The client's responses during an AUTH exchange (base64 or "*")
 * are not commands: the caller reads those lines itself.
 */
#ifndef POP3_COMMAND_H
#define POP3_COMMAND_H

#include <stddef.h>

/* RFC 1939 keywords have 3 or 4 letters; extensions such as XCLIENT need
 * more. */
#define POP3_KEYWORD_MAX 8
#define POP3_ARGS_MAX 2
/* RFC 2449 section 4 raises the command line limit to 255 octets, counting
 * the CRLF; the limit here excludes the CRLF, which is 2 octets lenient. */
#define POP3_LINE_MAX 255
/* A scratch buffer of this size holds the parse of any acceptable line. */
#define POP3_COMMAND_BUF_SIZE (POP3_LINE_MAX + 1)

struct pop3_command {
	const char *keyword; /* upper-cased copy */
	/* NUL-terminated; an argument is never empty except PASS's, which
	 * is "" for "PASS " and absent (arg_count 0) for "PASS". */
	const char *args[POP3_ARGS_MAX];
	unsigned arg_count;
};

/* Parses one line (without CRLF) into buf (scratch, buf_size bytes,
 * caller-owned; all strings point into it; POP3_COMMAND_BUF_SIZE is always
 * enough).  Returns 0, or -1 with *error_r set for an empty line, a line
 * longer than POP3_LINE_MAX ("line too long"), a NUL, CR or LF in the
 * line, a keyword that is empty, longer than POP3_KEYWORD_MAX or not
 * alphabetic, an empty argument (two spaces in a row, or a trailing
 * space), more than POP3_ARGS_MAX arguments, or a buf too small.  An
 * unknown keyword is not an error: that is for the caller to decide.  On
 * failure *cmd_r is cleared. */
int pop3_command_parse(const char *line, size_t len, char *buf, size_t buf_size,
		       struct pop3_command *cmd_r, const char **error_r);

#endif
