/* smtp_command.h - parsing one SMTP, LMTP or Submission command line.
 *
 * Covers what a front-end needs before it hands a session to a backend:
 * the verb (RFC 5321, LHLO from RFC 2033, AUTH from RFC 4954, BDAT from
 * RFC 3030, STARTTLS, XCLIENT), the reverse- or forward-path of MAIL and
 * RCPT with the ESMTP parameters after it, and BDAT's chunk size.  It also
 * finds the end of a DATA body in a byte stream.  Pure code: bytes in,
 * results out, no allocation, so it can be unit tested and fuzzed alone.
 *
 * The caller finds the line end itself (and enforces its own line length
 * limit: RFC 5321 says 512 octets, RFC 4954 allows AUTH lines up to 12288)
 * and passes the line without its CRLF.
 */
#ifndef SMTP_COMMAND_H
#define SMTP_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 4.5.3.1.3: a reverse- or forward-path, with its angle brackets,
 * is at most 256 octets. */
#define SMTP_PATH_MAX 256

/* A scratch buffer of this size always holds the parse of a line of
 * line_len bytes: the verb, the arguments and the path, each with a NUL. */
#define SMTP_COMMAND_BUF_SIZE(line_len) (2 * (line_len) + 3)

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_LHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_XCLIENT,
};

struct smtp_command {
	enum smtp_verb verb;
	const char *verb_text; /* as sent (upper-cased copy) */
	const char *args;      /* the rest of the line after one space, or "" */
	/* MAIL FROM:<path> / RCPT TO:<path>: the address without <> (may be
	 * "" for the null sender <>), and the ESMTP parameters after it (or
	 * ""); "" for other verbs. */
	const char *path;
	const char *params;
	/* BDAT size [LAST] */
	unsigned long long bdat_size;
	bool bdat_last;
};

/* Parses one line (without CRLF; caller found the line end), into buf
 * (scratch, buf_size bytes, caller-owned; all strings point into it;
 * SMTP_COMMAND_BUF_SIZE(len) is always enough).  Returns 0, or -1 with
 * *error_r set for: an empty line or one not starting with a verb, a line
 * with NUL or a bare CR or LF, MAIL without "FROM:", RCPT without "TO:", a
 * path not in <...>, unbalanced quotes in a quoted local part, a path
 * longer than SMTP_PATH_MAX octets, junk between the path and its
 * parameters, RCPT TO:<>, BDAT with a missing, non-numeric or overflowing
 * size or with trailing junk other than LAST, and a buf too small.
 *
 * Verbs and the "FROM:"/"TO:" keywords are case-insensitive; one optional
 * space after "FROM:"/"TO:" is tolerated (common client behaviour); source
 * routes "<@a,@b:user@d>" are accepted and the route dropped; nothing is
 * unescaped, a quoted local part is kept as sent ("\"a b\"@example.com").
 * An unrecognised verb is not an error: verb is SMTP_VERB_UNKNOWN.
 *
 * On failure *cmd_r still holds whatever was parsed before the error (the
 * verb at least, unless the line itself was bad), so that the caller can
 * tell "500 unknown command" from "501 syntax error"; the other strings
 * are NULL. */
int smtp_command_parse(const char *line, size_t len, char *buf, size_t buf_size,
		       struct smtp_command *cmd_r, const char **error_r);

/* The local part of an address (before the last '@' outside quotes; the
 * whole address if there is none), copied to dst and NUL-terminated.
 * Returns 0, or -1 if it does not fit into dst_size. */
int smtp_address_local_part(const char *address, char *dst, size_t dst_size);

/* Scans for the end-of-data marker CRLF "." CRLF.  state carries across
 * calls (start with 0 meaning "at the beginning of a line", since DATA's
 * body starts right after the DATA reply; so a body that starts with
 * ".\r\n" is an empty message).  Returns the number of bytes up to and
 * including the marker if found in data[0..len), or 0 if not yet (all len
 * bytes belong to the body).  After a find *state is 0 again, ready for
 * the next message.
 *
 * Only CRLF counts as a line end, as RFC 5321 says: a bare LF or CR never
 * starts or ends the marker.  A backend that is laxer (accepting
 * LF "." LF, say) would see a different end than this scan: that is the
 * SMTP smuggling problem, and the caller must not relay bare LFs or CRs in
 * a body to such a backend. */
size_t smtp_data_end_scan(unsigned *state, const char *data, size_t len);

/* Rewrites a DATA body (as received, dot-stuffed, ending with ".\r\n" after
 * its last CRLF) so that every bare LF becomes CRLF and the lines this
 * creates are dot-stuffed, keeping the client's own stuffing.  Some
 * servers (Dovecot among them) also end DATA at LF "." LF, so a body with
 * bare LFs relayed as received could end early there and smuggle what
 * follows in as commands.  out must hold 2 * len + 8 bytes; returns the
 * length written.  A body without a bare LF comes out unchanged. */
size_t smtp_body_normalize(const char *in, size_t len, char *out);

#endif
