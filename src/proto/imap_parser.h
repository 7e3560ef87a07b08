/* imap_parser.h - the pre-login IMAP command parser.
 *
 * Turns the bytes a client sends before it has logged in into commands: a
 * tag, a command name and up to IMAP_ARGS_MAX argument tokens (RFC 9051 and
 * RFC 3501 syntax, restricted to what CAPABILITY, ID, LOGIN, AUTHENTICATE,
 * STARTTLS and friends need, plus LITERAL+ from RFC 7888).  It is pure code,
 * with no sockets and no event loop, so that it can be unit tested and
 * fuzzed on its own.
 *
 * Calling convention: the caller keeps every byte not yet consumed in one
 * contiguous buffer and passes all of it, from the start of the pending
 * command, on every call.  The parser remembers how far it got, so feeding
 * one byte at a time costs no more than feeding the whole command at once.
 * After IMAP_PARSE_COMMAND or IMAP_PARSE_ERROR the caller drops *consumed_r
 * bytes from the front of its buffer; the next call starts a new command.
 */
#ifndef IMAP_PARSER_H
#define IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define IMAP_ARGS_MAX 16

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_STRING, /* quoted or literal, unescaped */
	IMAP_ARG_NIL,
	IMAP_ARG_LIST_START,
	IMAP_ARG_LIST_END,
};

struct imap_arg {
	enum imap_arg_type type;
	/* NUL-terminated, in the parser's scratch buffer; NULL for NIL and
	 * the LIST_* tokens.  A string cannot hold NUL, so len == strlen. */
	const char *str;
	size_t len;
};

struct imap_command {
	const char *tag;  /* NULL if the line had no usable tag */
	const char *name; /* as sent: compare case-insensitively */
	struct imap_arg args[IMAP_ARGS_MAX];
	unsigned arg_count;
};

enum imap_parse_status {
	/* Incomplete; call again when more bytes have arrived. */
	IMAP_PARSE_MORE,
	/* A synchronising literal {N} awaits its data: the caller sends
	 * "+ OK\r\n" once, then calls again (with the same bytes, or more).
	 * Returned exactly once per synchronising literal. */
	IMAP_PARSE_CONTINUE,
	/* *cmd is filled (valid until the next call on this parser) and the
	 * first *consumed_r bytes are the whole command, including its CRLF
	 * and literals. */
	IMAP_PARSE_COMMAND,
	/* Syntax error: *error_r says what was wrong, cmd->tag is set if a
	 * tag was parsed (cmd->name likewise), and *consumed_r covers the
	 * bad command up to and including the LF that ends it, so the caller
	 * can drop it and answer BAD.  The data of a LITERAL+ literal
	 * announced at the end of a bad line is part of that command (the
	 * client sends it regardless), so it is skipped as well; a bad
	 * line's synchronising literal is never continued, so its line ends
	 * the command. */
	IMAP_PARSE_ERROR,
	/* The command (line plus literals) exceeds max_len, or a literal
	 * announces more than would fit: fatal, the caller disconnects.
	 * Repeated until imap_parser_reset(). */
	IMAP_PARSE_TOO_LONG,
};

/* max_len bounds one whole command including CRLF and literals (e.g. 8192).
 * All the memory the parser needs is allocated here; returns NULL if that
 * allocation fails or max_len is absurdly large (above SIZE_MAX / 16). */
struct imap_parser *imap_parser_create(size_t max_len);
/* Frees the parser and sets *parser to NULL; NULL *parser is fine. */
void imap_parser_destroy(struct imap_parser **parser);

/* Parse the pending command at the start of data[0..len).  For MORE,
 * CONTINUE and TOO_LONG, *consumed_r is 0, cmd->arg_count is 0 and cmd->tag
 * and cmd->name are whatever has been parsed so far (or NULL); *error_r is
 * NULL except for ERROR. */
enum imap_parse_status imap_parser_parse(struct imap_parser *parser, const char *data, size_t len,
					 struct imap_command *cmd, size_t *consumed_r,
					 const char **error_r);

/* Forget the pending command (and a TOO_LONG verdict), e.g. after STARTTLS
 * when the plaintext bytes that followed it are thrown away. */
void imap_parser_reset(struct imap_parser *parser);

/* If arg is an atom or a string, set *str_r and return true: that is what
 * RFC 9051 calls an astring (LOGIN's user name and password, for one). */
bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r);

#endif
