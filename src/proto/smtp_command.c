/* smtp_command.c - SMTP/LMTP/Submission command lines and the end of DATA.
 *
 * smtp_command_parse() checks the line as a whole first (no NUL, no bare
 * CR or LF: the bytes SMTP smuggling and header injection rely on), then
 * copies it into the caller's scratch buffer as "VERB\0args\0" with the
 * verb upper-cased.  MAIL and RCPT additionally get a copy of the address
 * from between the angle brackets; their parameters are the tail of the
 * args copy, so they need no copy of their own.  Hence the buffer bound in
 * the header: verb and args take len + 2 bytes at most, the address less
 * than len + 1.
 *
 * smtp_data_end_scan() is a five-state machine over the body bytes.  The
 * common state, inside a line, skips ahead with memchr() to the next CR,
 * so scanning a large body costs about as much as copying it.
 */
#include "proto/smtp_command.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
	{"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO},       {"LHLO", SMTP_VERB_LHLO},
	{"MAIL", SMTP_VERB_MAIL}, {"RCPT", SMTP_VERB_RCPT},       {"DATA", SMTP_VERB_DATA},
	{"BDAT", SMTP_VERB_BDAT}, {"RSET", SMTP_VERB_RSET},       {"NOOP", SMTP_VERB_NOOP},
	{"QUIT", SMTP_VERB_QUIT}, {"VRFY", SMTP_VERB_VRFY},       {"STARTTLS", SMTP_VERB_STARTTLS},
	{"AUTH", SMTP_VERB_AUTH}, {"XCLIENT", SMTP_VERB_XCLIENT},
};

static enum smtp_verb smtp_verb_lookup(const char *upper)
{
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		if (strcmp(upper, smtp_verbs[i].name) == 0)
			return smtp_verbs[i].verb;
	}
	return SMTP_VERB_UNKNOWN;
}

/* The line end was stripped by the caller, so every CR or LF left is a
 * bare one. */
static int check_line_bytes(const char *line, size_t len, const char **error_r)
{
	for (size_t i = 0; i < len; i++) {
		switch (line[i]) {
		case '\0':
			*error_r = "NUL in command line";
			return -1;
		case '\r':
			*error_r = "bare CR in command line";
			return -1;
		case '\n':
			*error_r = "bare LF in command line";
			return -1;
		default:
			break;
		}
	}
	return 0;
}

/* Parse "KEYWORD[ ]<path>[ params]" from args (NUL-terminated, args_len
 * bytes; keyword includes its ':'), copying the address to out. */
static int parse_path_arg(struct smtp_command *cmd, const char *args, size_t args_len,
			  const char *keyword, bool allow_null, char *out, size_t out_size,
			  const char **error_r)
{
	size_t kw_len = strlen(keyword), i, addr_len;
	const char *open, *close, *addr, *rest;
	bool in_quote = false;

	if (args_len < kw_len || strncasecmp(args, keyword, kw_len) != 0) {
		*error_r = allow_null ? "MAIL must be followed by FROM:<address>"
				      : "RCPT must be followed by TO:<address>";
		return -1;
	}
	open = args + kw_len;
	if (*open == ' ')
		open++;
	if (*open != '<') {
		*error_r = "address must be enclosed in <>";
		return -1;
	}
	/* Find the '>' that closes the path.  Inside a quoted local part
	 * '>' is an ordinary character and a backslash escapes the next. */
	for (i = 1;; i++) {
		char c = open[i];

		if (c == '\0') {
			*error_r = in_quote ? "unbalanced quotes in address"
					    : "address has no closing '>'";
			return -1;
		}
		if (in_quote) {
			if (c == '\\') {
				if (open[i + 1] == '\0') {
					*error_r = "unbalanced quotes in address";
					return -1;
				}
				i++;
			} else if (c == '"') {
				in_quote = false;
			}
		} else if (c == '"') {
			in_quote = true;
		} else if (c == '>') {
			break;
		}
	}
	close = open + i;
	if ((size_t)(close - open) + 1 > SMTP_PATH_MAX) {
		*error_r = "address longer than 256 octets";
		return -1;
	}
	addr = open + 1;
	if (*addr == '@') {
		/* A-d-l ":" of RFC 5321: the route is obsolete and ignored
		 * (section 4.1.2); the mailbox starts after the colon. */
		const char *colon = memchr(addr, ':', (size_t)(close - addr));

		if (colon == NULL) {
			*error_r = "source route in address not followed by ':'";
			return -1;
		}
		addr = colon + 1;
		if (addr == close) {
			*error_r = "empty address after source route";
			return -1;
		}
	}
	addr_len = (size_t)(close - addr);
	if (addr_len == 0 && !allow_null) {
		*error_r = "RCPT TO:<> has an empty address";
		return -1;
	}
	rest = close + 1;
	if (*rest == ' ') {
		while (*rest == ' ')
			rest++;
	} else if (*rest != '\0') {
		*error_r = "junk after address: expected a space before the parameters";
		return -1;
	}
	if (out_size < addr_len + 1) {
		*error_r = "command line too long for the parse buffer";
		return -1;
	}
	memcpy(out, addr, addr_len);
	out[addr_len] = '\0';
	cmd->path = out;
	cmd->params = rest;
	return 0;
}

/* "size [LAST]": one space between, nothing else. */
static int parse_bdat(struct smtp_command *cmd, const char *args, size_t args_len,
		      const char **error_r)
{
	unsigned long long size = 0;
	size_t i = 0;

	if (args_len == 0) {
		*error_r = "BDAT requires a chunk size";
		return -1;
	}
	if (args[0] < '0' || args[0] > '9') {
		*error_r = "BDAT chunk size is not a number";
		return -1;
	}
	for (; i < args_len && args[i] >= '0' && args[i] <= '9'; i++) {
		unsigned digit = (unsigned)(args[i] - '0');

		if (size > (ULLONG_MAX - digit) / 10) {
			*error_r = "BDAT chunk size too large";
			return -1;
		}
		size = size * 10 + digit;
	}
	if (i < args_len) {
		if (args_len - i != 5 || strcasecmp(args + i, " LAST") != 0) {
			*error_r = "BDAT chunk size may only be followed by LAST";
			return -1;
		}
		cmd->bdat_last = true;
	}
	cmd->bdat_size = size;
	return 0;
}

int smtp_command_parse(const char *line, size_t len, char *buf, size_t buf_size,
		       struct smtp_command *cmd_r, const char **error_r)
{
	const char *space;
	size_t verb_len, args_len, used;
	char *verb, *args;
	int ret = 0;

	memset(cmd_r, 0, sizeof(*cmd_r));
	*error_r = NULL;
	if (len == 0) {
		*error_r = "empty command line";
		return -1;
	}
	if (check_line_bytes(line, len, error_r) < 0)
		return -1;
	space = memchr(line, ' ', len);
	verb_len = space == NULL ? len : (size_t)(space - line);
	if (verb_len == 0) {
		*error_r = "command line starts with a space instead of a verb";
		return -1;
	}
	args_len = space == NULL ? 0 : len - verb_len - 1;
	used = verb_len + 1 + args_len + 1;
	if (buf_size < used) {
		*error_r = "command line too long for the parse buffer";
		return -1;
	}
	verb = buf;
	for (size_t i = 0; i < verb_len; i++) {
		char c = line[i];

		verb[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
	}
	verb[verb_len] = '\0';
	args = buf + verb_len + 1;
	memcpy(args, line + len - args_len, args_len);
	args[args_len] = '\0';
	cmd_r->verb_text = verb;
	cmd_r->verb = smtp_verb_lookup(verb);
	cmd_r->args = args;

	switch (cmd_r->verb) {
	case SMTP_VERB_MAIL:
		ret = parse_path_arg(cmd_r, args, args_len, "FROM:", true, buf + used,
				     buf_size - used, error_r);
		break;
	case SMTP_VERB_RCPT:
		ret = parse_path_arg(cmd_r, args, args_len, "TO:", false, buf + used,
				     buf_size - used, error_r);
		break;
	case SMTP_VERB_BDAT:
		ret = parse_bdat(cmd_r, args, args_len, error_r);
		cmd_r->path = cmd_r->params = args + args_len;
		break;
	default:
		/* The args' NUL is an empty string inside buf. */
		cmd_r->path = cmd_r->params = args + args_len;
		break;
	}
	if (ret < 0) {
		cmd_r->path = cmd_r->params = NULL;
		cmd_r->bdat_size = 0;
		cmd_r->bdat_last = false;
	}
	return ret;
}

int smtp_address_local_part(const char *address, char *dst, size_t dst_size)
{
	const char *at = NULL, *p;
	bool in_quote = false;
	size_t local_len;

	for (p = address; *p != '\0'; p++) {
		if (in_quote) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				in_quote = false;
		} else if (*p == '"') {
			in_quote = true;
		} else if (*p == '@') {
			at = p;
		}
	}
	local_len = at == NULL ? (size_t)(p - address) : (size_t)(at - address);
	if (dst_size < local_len + 1)
		return -1;
	memcpy(dst, address, local_len);
	dst[local_len] = '\0';
	return 0;
}

/* States of smtp_data_end_scan(); 0 must be "at the start of a line". */
enum data_scan_state {
	DATA_LINE_START = 0, /* after CRLF, or at the body's start */
	DATA_DOT,            /* "." at the start of a line */
	DATA_DOT_CR,         /* "." CR at the start of a line */
	DATA_IN_LINE,        /* anywhere else */
	DATA_CR,             /* CR not preceded by a lone "." line start */
};

size_t smtp_data_end_scan(unsigned *state, const char *data, size_t len)
{
	unsigned st = *state;
	size_t i = 0;

	if (st > DATA_CR)
		st = DATA_IN_LINE;
	while (i < len) {
		char c = data[i];

		switch (st) {
		case DATA_IN_LINE: {
			const char *cr = memchr(data + i, '\r', len - i);

			if (cr == NULL) {
				i = len;
				continue;
			}
			i = (size_t)(cr - data) + 1;
			st = DATA_CR;
			continue;
		}
		case DATA_LINE_START:
			st = c == '.' ? DATA_DOT : c == '\r' ? DATA_CR : DATA_IN_LINE;
			break;
		case DATA_DOT:
			st = c == '\r' ? DATA_DOT_CR : DATA_IN_LINE;
			break;
		case DATA_DOT_CR:
			if (c == '\n') {
				*state = DATA_LINE_START;
				return i + 1;
			}
			st = c == '\r' ? DATA_CR : DATA_IN_LINE;
			break;
		case DATA_CR:
			st = c == '\n' ? DATA_LINE_START : c == '\r' ? DATA_CR : DATA_IN_LINE;
			break;
		}
		i++;
	}
	*state = st;
	return 0;
}

size_t smtp_body_normalize(const char *in, size_t len, char *out)
{
	/* the content ends before the final ".\r\n" */
	size_t content_len = len >= 3 ? len - 3 : 0;
	char *o = out;
	bool client_line_start = true, line_start = true;
	char prev = '\0';
	for (size_t i = 0; i < content_len; i++) {
		char c = in[i];
		if (client_line_start) {
			client_line_start = false;
			if (c == '.')
				continue; /* the client's stuffing */
		}
		if (line_start) {
			line_start = false;
			if (c == '.')
				*o++ = '.';
		}
		if (c == '\n') {
			if (prev != '\r')
				*o++ = '\r';
			else
				client_line_start = true;
			*o++ = '\n';
			line_start = true;
			prev = c;
			continue;
		}
		*o++ = c;
		prev = c;
	}
	memcpy(o, ".\r\n", 3);
	o += 3;
	return (size_t)(o - out);
}
