/* sieve_parser.h - the pre-login ManageSieve command parser.
 *
 * Turns the bytes a ManageSieve client sends before it has logged in into
 * commands: a command name and up to SIEVE_ARGS_MAX arguments (RFC 5804
 * syntax, restricted to what AUTHENTICATE, STARTTLS, CAPABILITY, LOGOUT and
 * NOOP need).  Unlike IMAP there is no tag and no list, and every literal is
 * non-synchronising: the client sends {N+} and its data at once.  Some
 * clients send {N} instead; like Dovecot, the parser takes that as {N+},
 * so the server never sends a continuation.  The client's responses in an
 * AUTHENTICATE exchange are lines holding a single string; see
 * sieve_parser_expect_string_line().  It is pure code, with no sockets and
 * no event loop, so that it can be unit tested and fuzzed on its own.
 *
 * Calling convention (as for imap_parser): the caller keeps every byte not
 * yet consumed in one contiguous buffer and passes all of it, from the
 * start of the pending command, on every call.  The parser remembers how far
 * it got, so feeding one byte at a time costs no more than feeding the
 * whole command at once.  After SIEVE_PARSE_COMMAND or SIEVE_PARSE_ERROR the
 * caller drops *consumed_r bytes from the front of its buffer; the next
 * call starts a new command.
 */
#ifndef SIEVE_PARSER_H
#define SIEVE_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define SIEVE_ARGS_MAX 8

enum sieve_arg_type {
	SIEVE_ARG_ATOM,   /* e.g. a number */
	SIEVE_ARG_STRING, /* quoted or literal, unescaped */
};

struct sieve_arg {
	enum sieve_arg_type type;
	/* NUL-terminated, in the parser's scratch buffer.  A string cannot
	 * hold NUL, so len == strlen(str). */
	const char *str;
	size_t len;
};

struct sieve_command {
	/* As sent: compare case-insensitively.  NULL for a string line
	 * (sieve_parser_expect_string_line()) and for an ERROR before the
	 * name was parsed. */
	const char *name;
	struct sieve_arg args[SIEVE_ARGS_MAX];
	unsigned arg_count;
};

enum sieve_parse_status {
	/* Incomplete; call again when more bytes have arrived. */
	SIEVE_PARSE_MORE,
	/* *cmd is filled (valid until the next call on this parser) and the
	 * first *consumed_r bytes are the whole command, including its line
	 * end and literals. */
	SIEVE_PARSE_COMMAND,
	/* Syntax error: *error_r says what was wrong, cmd->name is set if it
	 * was parsed, cmd->arg_count is 0, and *consumed_r covers the bad
	 * command up to and including the LF that ends it, so the caller can
	 * drop it and answer NO.  The data of a literal announced at the end
	 * of a bad line is part of that command (the client sends it
	 * regardless), so it is skipped as well. */
	SIEVE_PARSE_ERROR,
	/* The command (line plus literals) exceeds max_len, or a literal
	 * announces more than would fit: fatal, the caller disconnects.
	 * Repeated until sieve_parser_reset(). */
	SIEVE_PARSE_TOO_LONG,
};

/* max_len bounds one whole command including its line end and literals
 * (e.g. 8192).  All the memory the parser needs is allocated here; returns
 * NULL if that allocation fails or max_len is absurdly large (above
 * SIZE_MAX / 16). */
struct sieve_parser *sieve_parser_create(size_t max_len);
/* Frees the parser and sets *parser to NULL; NULL *parser is fine. */
void sieve_parser_destroy(struct sieve_parser **parser);

/* Parse the pending command at the start of data[0..len).  For MORE and
 * TOO_LONG, *consumed_r is 0, cmd->arg_count is 0 and cmd->name is whatever
 * has been parsed so far (or NULL); *error_r is NULL except for ERROR. */
enum sieve_parse_status sieve_parser_parse(struct sieve_parser *parser, const char *data,
					   size_t len, struct sieve_command *cmd,
					   size_t *consumed_r, const char **error_r);

/* Forget the pending command, a TOO_LONG verdict and a pending
 * sieve_parser_expect_string_line(), e.g. after STARTTLS when the plaintext
 * bytes that followed it are thrown away. */
void sieve_parser_reset(struct sieve_parser *parser);

/* The next command is a SASL response line (RFC 5804 section 2.1): exactly
 * one quoted string or literal and the line end.  It is returned as a
 * COMMAND with name NULL and arg_count 1 (a cancelling client sends the
 * string "*"), or as an ERROR for anything else, including an empty line or
 * an atom.  Applies to one command only; a command the parser had already
 * started on is parsed afresh under this rule. */
void sieve_parser_expect_string_line(struct sieve_parser *parser);

#endif
