/* sieve_parser.c - incremental parser for pre-login ManageSieve commands.
 *
 * The structure follows imap_parser.c.  A command is one or more line
 * segments: the first holds the command name and arguments; each segment
 * that ends in a literal header {N+} (or {N}) is followed by N bytes of
 * literal data and then by another segment.  The parser waits until a
 * segment's LF (or a literal's last byte) has arrived and then parses that
 * piece exactly once, keeping the tokens found so far in its own state.  So
 * each call only looks at bytes it has not seen before, and the total work
 * per command is linear in its size however the bytes are delivered.
 *
 * Tokens are copied (unescaped) into a scratch buffer allocated once at
 * create time.  Every token's copy plus its NUL is no longer than the raw
 * bytes it came from plus the separator that must follow it, so a command
 * of at most max_len bytes always fits into max_len bytes of scratch; the
 * bounds are still checked, against a small slack.
 *
 * A string line (sieve_parser_expect_string_line()) is parsed by the same
 * code with the command name skipped and room for one string argument.
 */
#include "proto/sieve_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Room beyond max_len in the scratch buffer: defence in depth only. */
#define SIEVE_PARSER_SCRATCH_SLACK (SIEVE_ARGS_MAX + 8)

struct sieve_parser {
	size_t max_len;
	char *scratch;
	size_t scratch_size;
	size_t scratch_used;

	/* Per-command state, cleared by sieve_parser_reset_command(). */
	struct sieve_command cmd; /* built up as segments are parsed */
	size_t seg_start;         /* offset of the segment not yet parsed */
	size_t scan_pos;          /* bytes before this offset hold no LF */
	bool first_done;          /* the first segment has been parsed */
	bool in_literal;          /* waiting for a literal's data */
	size_t literal_start;     /* offset of the literal's first byte */
	size_t literal_size;
	/* Set once the command is known to be bad; the rest of it is then
	 * only skipped until its end. */
	const char *error;

	/* The pending command is a SASL response line.  Survives
	 * sieve_parser_reset_command(), which restarts the same command;
	 * cleared when that command has been returned. */
	bool string_line;
	/* Sticky until sieve_parser_reset(): the connection is beyond saving
	 * and the per-command state is no longer consistent with the input. */
	bool too_long;
};

enum segment_result {
	SEGMENT_END,      /* the command ends with this segment */
	SEGMENT_LITERAL,  /* literal data follows; p->literal_* are set */
	SEGMENT_TOO_LONG, /* the announced literal cannot fit */
};

/* ATOM-CHAR: any CHAR except atom-specials, which are "(", ")", "{", SP,
 * CTL, the list wildcards "%" and "*", and the quoted-specials. */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x1f || c >= 0x7f)
		return false;
	switch (c) {
	case '(':
	case ')':
	case '{':
	case ' ':
	case '%':
	case '*':
	case '"':
	case '\\':
		return false;
	default:
		return true;
	}
}

static void sieve_parser_reset_command(struct sieve_parser *p)
{
	memset(&p->cmd, 0, sizeof(p->cmd));
	p->scratch_used = 0;
	p->seg_start = 0;
	p->scan_pos = 0;
	p->first_done = false;
	p->in_literal = false;
	p->literal_start = 0;
	p->literal_size = 0;
	p->error = NULL;
}

struct sieve_parser *sieve_parser_create(size_t max_len)
{
	struct sieve_parser *p;

	/* Literal sizes are accumulated in size_t up to ten times max_len. */
	if (max_len > SIZE_MAX / 16)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->max_len = max_len;
	p->scratch_size = max_len + SIEVE_PARSER_SCRATCH_SLACK;
	p->scratch = malloc(p->scratch_size);
	if (p->scratch == NULL) {
		free(p);
		return NULL;
	}
	sieve_parser_reset_command(p);
	return p;
}

void sieve_parser_destroy(struct sieve_parser **parser)
{
	struct sieve_parser *p = *parser;

	if (p == NULL)
		return;
	*parser = NULL;
	free(p->scratch);
	free(p);
}

void sieve_parser_reset(struct sieve_parser *parser)
{
	sieve_parser_reset_command(parser);
	parser->string_line = false;
	parser->too_long = false;
}

void sieve_parser_expect_string_line(struct sieve_parser *parser)
{
	/* The caller passes the pending bytes from the command's start on
	 * every call, so starting over only costs a rescan. */
	sieve_parser_reset_command(parser);
	parser->string_line = true;
}

/* Record the first error of the command; the rest of it is skipped. */
static enum segment_result segment_error(struct sieve_parser *p, const char *error)
{
	p->error = error;
	return SEGMENT_END;
}

/* Is there room for another argument?  If not, p->error says why. */
static bool arg_room(struct sieve_parser *p)
{
	if (p->string_line && p->cmd.arg_count == 1) {
		p->error = "expected a single string";
		return false;
	}
	if (p->cmd.arg_count == SIEVE_ARGS_MAX) {
		p->error = "too many arguments";
		return false;
	}
	return true;
}

/* Copy n bytes to scratch and NUL-terminate them; NULL if out of room,
 * which the size argument in the file comment says cannot happen. */
static const char *scratch_add(struct sieve_parser *p, const unsigned char *s, size_t n)
{
	char *dst;

	if (p->scratch_size - p->scratch_used < n + 1)
		return NULL;
	dst = p->scratch + p->scratch_used;
	memcpy(dst, s, n);
	dst[n] = '\0';
	p->scratch_used += n + 1;
	return dst;
}

/* The caller has checked arg_room(). */
static void add_arg(struct sieve_parser *p, enum sieve_arg_type type, const char *str, size_t len)
{
	struct sieve_arg *arg = &p->cmd.args[p->cmd.arg_count++];

	arg->type = type;
	arg->str = str;
	arg->len = len;
}

/* Parse the quoted string starting at s[*i] == '"'.  Returns false with
 * p->error set on failure. */
static bool parse_quoted(struct sieve_parser *p, const unsigned char *s, size_t n, size_t *i)
{
	size_t pos = *i + 1;
	char *start, *out;

	if (!arg_room(p))
		return false;
	/* The unescaped string is no longer than what remains of the line. */
	if (p->scratch_size - p->scratch_used < n - pos + 1) {
		p->error = "command too long";
		return false;
	}
	start = out = p->scratch + p->scratch_used;
	for (;;) {
		unsigned char c;

		if (pos == n) {
			p->error = "unterminated quoted string";
			return false;
		}
		c = s[pos++];
		if (c == '"')
			break;
		if (c == '\\') {
			if (pos == n) {
				p->error = "unterminated quoted string";
				return false;
			}
			c = s[pos++];
			if (c != '"' && c != '\\') {
				p->error = "invalid escape in quoted string";
				return false;
			}
		} else if (c == '\0' || c == '\r' || c == '\n') {
			/* 8-bit bytes are let through: strings are UTF-8,
			 * and checking that is the job of whoever
			 * interprets the string. */
			p->error = "invalid character in quoted string";
			return false;
		}
		*out++ = (char)c;
	}
	*out = '\0';
	add_arg(p, SIEVE_ARG_STRING, start, (size_t)(out - start));
	p->scratch_used += (size_t)(out - start) + 1;
	*i = pos;
	return true;
}

/* Parse "{digits+}" or "{digits}" at s[i..n); it must end the segment.
 * next_offset is where the literal's data starts in the input. */
static enum segment_result parse_literal_header(struct sieve_parser *p, const unsigned char *s,
						size_t n, size_t i, size_t next_offset)
{
	size_t size = 0, digits = 0;

	for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		/* Saturate rather than overflow: anything above max_len is
		 * too long anyway. */
		if (size <= p->max_len)
			size = size * 10 + (size_t)(s[i] - '0');
	}
	if (i < n && s[i] == '+')
		i++;
	if (digits == 0 || i == n || s[i] != '}')
		return segment_error(p, "invalid literal size");
	if (i + 1 != n)
		return segment_error(p, "literal size not followed by end of line");
	if (!arg_room(p))
		return SEGMENT_END;
	/* The command needs at least an LF after the data.  next_offset is
	 * at most max_len, as the LF before it was found within max_len. */
	if (size > p->max_len || size + 1 > p->max_len - next_offset)
		return SEGMENT_TOO_LONG;
	p->in_literal = true;
	p->literal_start = next_offset;
	p->literal_size = size;
	return SEGMENT_LITERAL;
}

/* Parse one segment s[0..n) (line end already stripped).  On a syntax error
 * this returns SEGMENT_END with p->error set. */
static enum segment_result parse_segment(struct sieve_parser *p, const unsigned char *s, size_t n,
					 size_t next_offset)
{
	size_t i = 0, start;
	bool want_sep = true;

	if (!p->first_done) {
		p->first_done = true;
		if (n == 0)
			return segment_error(p, "empty line");
		if (p->string_line) {
			/* No name: the string comes first. */
			want_sep = false;
		} else {
			while (i < n && is_atom_char(s[i]))
				i++;
			if (i == 0)
				return segment_error(p, "invalid command name");
			if (i < n && s[i] != ' ')
				return segment_error(p, "invalid character in command name");
			p->cmd.name = scratch_add(p, s, i);
			if (p->cmd.name == NULL)
				return segment_error(p, "command too long");
		}
	}
	/* After the command name, as after a literal's data, only SP or the
	 * end of the line may come next. */
	for (;;) {
		unsigned char c;

		if (i == n)
			return SEGMENT_END;
		c = s[i];
		if (want_sep) {
			if (c != ' ')
				return segment_error(p, "missing space between arguments");
			i++;
			if (i == n)
				return segment_error(p, "unexpected space at end of line");
			want_sep = false;
			continue;
		}
		switch (c) {
		case '"':
			if (!parse_quoted(p, s, n, &i))
				return SEGMENT_END;
			break;
		case '{':
			return parse_literal_header(p, s, n, i, next_offset);
		default: {
			const char *str;

			if (p->string_line) {
				if (!arg_room(p))
					return SEGMENT_END;
				return segment_error(p, "expected a quoted string or literal");
			}
			start = i;
			while (i < n && is_atom_char(s[i]))
				i++;
			if (i == start)
				return segment_error(p, "invalid character in argument");
			/* Check the count before using scratch, so that a
			 * surplus argument cannot exhaust it. */
			if (!arg_room(p))
				return SEGMENT_END;
			str = scratch_add(p, s + start, i - start);
			if (str == NULL)
				return segment_error(p, "command too long");
			add_arg(p, SIEVE_ARG_ATOM, str, i - start);
			break;
		}
		}
		want_sep = true;
	}
}

/* A segment of a command already known to be bad.  Its end is the end of
 * the command unless it announces a literal: the client sends that data
 * without waiting, so the data belongs to this command and must not be
 * mistaken for the next one. */
static enum segment_result skip_segment(struct sieve_parser *p, const unsigned char *s, size_t n,
					size_t next_offset)
{
	size_t i, digits_end, size = 0, mult = 1;

	if (n < 3 || s[n - 1] != '}')
		return SEGMENT_END;
	i = n - 1;
	if (s[i - 1] == '+')
		i--;
	/* s[i] is '+' or '}'; the digits are before it. */
	digits_end = i;
	for (; i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9'; i--) {
		if (mult > p->max_len) {
			/* More significant digits: only zeros keep it
			 * small, anything else makes it too long. */
			if (s[i - 1] != '0')
				size = p->max_len + 1;
			continue;
		}
		size += (size_t)(s[i - 1] - '0') * mult;
		mult *= 10;
	}
	if (i == digits_end || i == 0 || s[i - 1] != '{')
		return SEGMENT_END;
	if (size > p->max_len || size + 1 > p->max_len - next_offset)
		return SEGMENT_TOO_LONG;
	p->in_literal = true;
	p->literal_start = next_offset;
	p->literal_size = size;
	return SEGMENT_LITERAL;
}

/* The literal's data d[0..size) has arrived. */
static void literal_done(struct sieve_parser *p, const unsigned char *d, size_t size)
{
	const char *str;

	if (memchr(d, '\0', size) != NULL) {
		p->error = "NUL in literal";
		return;
	}
	if (!arg_room(p))
		return;
	str = scratch_add(p, d, size);
	if (str == NULL) {
		p->error = "command too long";
		return;
	}
	add_arg(p, SIEVE_ARG_STRING, str, size);
}

/* What the caller sees of an unfinished command. */
static void fill_partial(const struct sieve_parser *p, struct sieve_command *cmd)
{
	cmd->name = p->cmd.name;
	cmd->arg_count = 0;
}

enum sieve_parse_status sieve_parser_parse(struct sieve_parser *p, const char *data, size_t len,
					   struct sieve_command *cmd, size_t *consumed_r,
					   const char **error_r)
{
	const unsigned char *d = (const unsigned char *)data;
	enum sieve_parse_status status;

	*consumed_r = 0;
	*error_r = NULL;
	if (p->too_long) {
		fill_partial(p, cmd);
		return SIEVE_PARSE_TOO_LONG;
	}
	/* Less input than we have already looked at: the caller did not keep
	 * to the calling convention, so start this command afresh rather
	 * than trust offsets into bytes that are gone. */
	if (len < p->scan_pos)
		sieve_parser_reset_command(p);

	for (;;) {
		const unsigned char *lf;
		size_t limit, lf_off, seg_end;
		enum segment_result res;

		if (p->in_literal) {
			size_t end = p->literal_start + p->literal_size;

			if (len < end) {
				fill_partial(p, cmd);
				return SIEVE_PARSE_MORE;
			}
			if (p->error == NULL)
				literal_done(p, d + p->literal_start, p->literal_size);
			p->in_literal = false;
			p->seg_start = p->scan_pos = end;
		}

		/* The LF that ends the command must be within max_len. */
		limit = len < p->max_len ? len : p->max_len;
		lf = NULL;
		if (p->scan_pos < limit)
			lf = memchr(d + p->scan_pos, '\n', limit - p->scan_pos);
		if (lf == NULL) {
			if (p->scan_pos < limit)
				p->scan_pos = limit;
			fill_partial(p, cmd);
			if (len >= p->max_len) {
				p->too_long = true;
				return SIEVE_PARSE_TOO_LONG;
			}
			return SIEVE_PARSE_MORE;
		}
		lf_off = (size_t)(lf - d);
		seg_end = lf_off;
		if (seg_end > p->seg_start && d[seg_end - 1] == '\r')
			seg_end--;

		res = SEGMENT_END;
		if (p->error == NULL)
			res = parse_segment(p, d + p->seg_start, seg_end - p->seg_start,
					    lf_off + 1);
		if (res == SEGMENT_END && p->error != NULL)
			res = skip_segment(p, d + p->seg_start, seg_end - p->seg_start, lf_off + 1);
		if (res == SEGMENT_TOO_LONG) {
			p->too_long = true;
			fill_partial(p, cmd);
			return SIEVE_PARSE_TOO_LONG;
		}
		if (res == SEGMENT_LITERAL) {
			p->seg_start = p->scan_pos = p->literal_start;
			continue;
		}

		/* The command is complete.  The scratch buffer keeps its
		 * contents until the next call, so *cmd stays valid. */
		*cmd = p->cmd;
		*consumed_r = lf_off + 1;
		if (p->error != NULL) {
			*error_r = p->error;
			cmd->arg_count = 0;
			status = SIEVE_PARSE_ERROR;
		} else {
			status = SIEVE_PARSE_COMMAND;
		}
		sieve_parser_reset_command(p);
		p->string_line = false;
		return status;
	}
}
