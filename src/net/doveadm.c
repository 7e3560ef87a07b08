/* doveadm.c - see doveadm.h.
 *
 * Three layers, bottom up:
 *
 *   - a JSON reader.  The whole answer is in memory (at most
 *     DOVEADM_RESPONSE_MAX bytes), so it is cut into a flat array of tokens
 *     (as jsmn does): each token knows its byte range, its number of direct
 *     children and the index just past its subtree, so the answer is walked
 *     without building a tree.  The token array grows by doubling; strings are
 *     decoded (escapes) only when read.  Nesting is bounded.
 *   - one HTTP/1.1 exchange through net/http_client.h (a POST, or the GET
 *     of the key check, with "Connection: close" on a fresh socket, against
 *     one deadline that covers connect, send and receive), with doveadm's
 *     headers and its words for 401/403/404.
 *   - the doveadm commands (who, kick) and kick_group built from them.
 */
#include "net/doveadm.h"

#include "brain/types.h"
#include "brain/user.h"
#include "net/http_client.h"
#include "util/base64.h"
#include "util/strbuf.h"
#include "util/url_template.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Deepest nesting accepted in an answer (Dovecot sends 4 levels). */
#define JSON_DEPTH_MAX 32
/* Most values accepted in one answer. */
#define JSON_TOKENS_MAX (4u * 1024 * 1024)
/* Dovecot's EX_NOTFOUND: "kick" found nobody to kick. */
#define DOVEADM_EX_NOTFOUND 68

/* ---- errors ---- */

/* Errors are built in thread-local buffers (the callers are worker
 * threads): parse_error for the readers, url_error for the sentences the
 * public calls return (which may quote parse_error). */
static __thread char parse_error[768];
static __thread char url_error[1024];

static int __attribute__((format(printf, 2, 3))) fail(const char **error_r, const char *fmt, ...)
{
	char text[sizeof(parse_error)]; /* the arguments may quote parse_error */
	va_list args;
	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	memcpy(parse_error, text, sizeof(parse_error));
	*error_r = parse_error;
	return -1;
}

static int __attribute__((format(printf, 3, 4)))
fail_url(const char *url, const char **error_r, const char *fmt, ...)
{
	char text[sizeof(parse_error) + 128];
	va_list args;
	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	snprintf(url_error, sizeof(url_error), "doveadm on %s: %s", url, text);
	*error_r = url_error;
	return -1;
}

/* ---- JSON reader ---- */

enum json_type { JSON_ARRAY, JSON_OBJECT, JSON_STRING, JSON_SCALAR };

struct json_token {
	enum json_type type;
	/* byte range: a string without its quotes, a container with its
	 * brackets, a scalar (number, true, false, null) as written */
	uint32_t start, end;
	uint32_t next;  /* index of the first token after this subtree */
	uint32_t count; /* direct children; an object counts keys and values */
};

struct json_doc {
	const char *text;
	size_t len;
	struct json_token *tokens;
	uint32_t count, alloc;
};

static void json_doc_free(struct json_doc *doc)
{
	free(doc->tokens);
	doc->tokens = NULL;
	doc->count = doc->alloc = 0;
}

static int json_add(struct json_doc *doc, enum json_type type, size_t start, const char **error_r)
{
	if (doc->count == doc->alloc) {
		if (doc->alloc >= JSON_TOKENS_MAX)
			return fail(error_r, "more than %u JSON values", JSON_TOKENS_MAX);
		uint32_t alloc = doc->alloc == 0 ? 64 : doc->alloc * 2;
		struct json_token *tokens = realloc(doc->tokens, alloc * sizeof(*tokens));
		if (tokens == NULL)
			abort();
		doc->tokens = tokens;
		doc->alloc = alloc;
	}
	struct json_token *tok = &doc->tokens[doc->count];
	tok->type = type;
	tok->start = tok->end = (uint32_t)start;
	tok->next = doc->count + 1;
	tok->count = 0;
	return (int)doc->count++;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The end of the string whose opening quote is at pos (the index of the
 * closing quote), or -1 with *error_r. */
static long json_scan_string(const char *text, size_t len, size_t pos, const char **error_r)
{
	for (size_t i = pos + 1; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '"')
			return (long)i;
		if (c < 0x20)
			return fail(error_r, "control character 0x%02x in a string at byte %zu", c,
				    i);
		if (c != '\\')
			continue;
		if (++i == len)
			break;
		if (text[i] == 'u') {
			if (len - i < 5 || hex_value(text[i + 1]) < 0 ||
			    hex_value(text[i + 2]) < 0 || hex_value(text[i + 3]) < 0 ||
			    hex_value(text[i + 4]) < 0)
				return fail(error_r, "bad \\u escape at byte %zu", i - 1);
			i += 4;
		} else if (strchr("\"\\/bfnrt", text[i]) == NULL || text[i] == '\0') {
			return fail(error_r, "bad escape \\%c at byte %zu", text[i], i - 1);
		}
	}
	return fail(error_r, "unterminated string starting at byte %zu", pos);
}

/* The length of the number or literal at text[pos], or 0 if there is none. */
static size_t json_scan_scalar(const char *text, size_t len, size_t pos)
{
	static const char *const literals[] = {"true", "false", "null"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(literals[i]);
		if (len - pos >= n && memcmp(text + pos, literals[i], n) == 0)
			return n;
	}
	size_t i = pos;
	if (i < len && text[i] == '-')
		i++;
	if (i < len && text[i] == '0') {
		i++;
	} else if (i < len && is_digit(text[i])) {
		while (i < len && is_digit(text[i]))
			i++;
	} else {
		return 0;
	}
	if (i < len && text[i] == '.') {
		if (++i == len || !is_digit(text[i]))
			return 0;
		while (i < len && is_digit(text[i]))
			i++;
	}
	if (i < len && (text[i] == 'e' || text[i] == 'E')) {
		i++;
		if (i < len && (text[i] == '+' || text[i] == '-'))
			i++;
		if (i == len || !is_digit(text[i]))
			return 0;
		while (i < len && is_digit(text[i]))
			i++;
	}
	return i - pos;
}

enum json_expect {
	EXPECT_VALUE,
	EXPECT_VALUE_OR_CLOSE, /* just after "[" */
	EXPECT_KEY,
	EXPECT_KEY_OR_CLOSE, /* just after "{" */
	EXPECT_COLON,
	EXPECT_COMMA_OR_CLOSE,
	EXPECT_END,
};

/* Cuts text into doc->tokens: exactly one JSON value, whitespace around it
 * allowed.  -1 with *error_r naming the byte where it went wrong. */
static int json_parse(struct json_doc *doc, const char *text, size_t len, const char **error_r)
{
	uint32_t stack[JSON_DEPTH_MAX];
	unsigned depth = 0;
	enum json_expect expect = EXPECT_VALUE;
	size_t pos = 0;

	memset(doc, 0, sizeof(*doc));
	doc->text = text;
	doc->len = len;
	if (len > UINT32_MAX - 1)
		return fail(error_r, "answer too large");

	for (;;) {
		while (pos < len && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' ||
				     text[pos] == '\r'))
			pos++;
		if (pos == len) {
			if (expect == EXPECT_END)
				return 0;
			return fail(error_r, "the JSON ends too early (byte %zu)", pos);
		}
		char c = text[pos];
		struct json_token *parent = depth > 0 ? &doc->tokens[stack[depth - 1]] : NULL;
		bool close = false, value_done = false;

		switch (expect) {
		case EXPECT_END:
			return fail(error_r, "data after the JSON value at byte %zu", pos);
		case EXPECT_COLON:
			if (c != ':')
				return fail(error_r, "expected ':' at byte %zu", pos);
			pos++;
			expect = EXPECT_VALUE;
			continue;
		case EXPECT_COMMA_OR_CLOSE:
			if (c == ',') {
				pos++;
				expect = parent->type == JSON_OBJECT ? EXPECT_KEY : EXPECT_VALUE;
				continue;
			}
			if ((c == ']' && parent->type == JSON_ARRAY) ||
			    (c == '}' && parent->type == JSON_OBJECT)) {
				close = true;
				break;
			}
			return fail(error_r, "expected ',' or '%c' at byte %zu",
				    parent->type == JSON_OBJECT ? '}' : ']', pos);
		case EXPECT_KEY_OR_CLOSE:
			if (c == '}') {
				close = true;
				break;
			}
			/* fall through */
		case EXPECT_KEY: {
			if (c != '"')
				return fail(error_r, "expected a string key at byte %zu", pos);
			long end = json_scan_string(text, len, pos, error_r);
			if (end < 0)
				return -1;
			int tok = json_add(doc, JSON_STRING, pos + 1, error_r);
			if (tok < 0)
				return -1;
			doc->tokens[tok].end = (uint32_t)end;
			doc->tokens[stack[depth - 1]].count++;
			pos = (size_t)end + 1;
			expect = EXPECT_COLON;
			continue;
		}
		case EXPECT_VALUE_OR_CLOSE:
			if (c == ']') {
				close = true;
				break;
			}
			/* fall through */
		case EXPECT_VALUE:
			if (c == '[' || c == '{') {
				if (depth == JSON_DEPTH_MAX)
					return fail(error_r,
						    "JSON nested deeper than %d at byte %zu",
						    JSON_DEPTH_MAX, pos);
				int tok = json_add(doc, c == '[' ? JSON_ARRAY : JSON_OBJECT, pos,
						   error_r);
				if (tok < 0)
					return -1;
				if (depth > 0)
					doc->tokens[stack[depth - 1]].count++;
				stack[depth++] = (uint32_t)tok;
				pos++;
				expect = c == '[' ? EXPECT_VALUE_OR_CLOSE : EXPECT_KEY_OR_CLOSE;
				continue;
			}
			if (c == '"') {
				long end = json_scan_string(text, len, pos, error_r);
				if (end < 0)
					return -1;
				int tok = json_add(doc, JSON_STRING, pos + 1, error_r);
				if (tok < 0)
					return -1;
				doc->tokens[tok].end = (uint32_t)end;
				pos = (size_t)end + 1;
				value_done = true;
			} else {
				size_t n = json_scan_scalar(text, len, pos);
				if (n == 0)
					return fail(error_r, "unexpected '%c' at byte %zu",
						    (unsigned char)c >= 0x20 ? c : '?', pos);
				int tok = json_add(doc, JSON_SCALAR, pos, error_r);
				if (tok < 0)
					return -1;
				doc->tokens[tok].end = (uint32_t)(pos + n);
				pos += n;
				value_done = true;
			}
			if (depth > 0)
				doc->tokens[stack[depth - 1]].count++;
			break;
		}
		if (close) {
			struct json_token *container = &doc->tokens[stack[--depth]];
			container->end = (uint32_t)(pos + 1);
			container->next = doc->count;
			pos++;
			value_done = true;
		}
		if (value_done)
			expect = depth == 0 ? EXPECT_END : EXPECT_COMMA_OR_CLOSE;
	}
}

static void utf8_append(char *dst, size_t *pos, uint32_t cp)
{
	if (cp < 0x80) {
		dst[(*pos)++] = (char)cp;
	} else if (cp < 0x800) {
		dst[(*pos)++] = (char)(0xc0 | (cp >> 6));
		dst[(*pos)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		dst[(*pos)++] = (char)(0xe0 | (cp >> 12));
		dst[(*pos)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		dst[(*pos)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		dst[(*pos)++] = (char)(0xf0 | (cp >> 18));
		dst[(*pos)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		dst[(*pos)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		dst[(*pos)++] = (char)(0x80 | (cp & 0x3f));
	}
}

static uint32_t hex4(const char *p)
{
	return (uint32_t)(hex_value(p[0]) << 12 | hex_value(p[1]) << 8 | hex_value(p[2]) << 4 |
			  hex_value(p[3]));
}

/* Decodes a string token (already checked by json_parse) into dst, NUL-
 * terminated.  The decoded form is never longer than the raw one, so
 * raw length + 1 bytes always suffice.  -1 if it does not fit into size
 * bytes or holds a NUL (\u0000), which a C string cannot carry. */
static int json_string_get(const struct json_doc *doc, uint32_t index, char *dst, size_t size)
{
	const struct json_token *tok = &doc->tokens[index];
	const char *p = doc->text + tok->start, *end = doc->text + tok->end;
	size_t n = 0;

	if (tok->type != JSON_STRING)
		return -1;
	while (p < end) {
		if (n + 1 >= size)
			return -1;
		if (*p != '\\') {
			dst[n++] = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case 'b':
			dst[n++] = '\b';
			break;
		case 'f':
			dst[n++] = '\f';
			break;
		case 'n':
			dst[n++] = '\n';
			break;
		case 'r':
			dst[n++] = '\r';
			break;
		case 't':
			dst[n++] = '\t';
			break;
		case 'u': {
			uint32_t cp = hex4(p + 1);
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 7 && p[1] == '\\' &&
			    p[2] == 'u') {
				uint32_t low = hex4(p + 3);
				if (low >= 0xdc00 && low < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
					p += 6;
				}
			}
			if (cp >= 0xd800 && cp < 0xe000)
				cp = 0xfffd; /* a lone surrogate */
			if (cp == 0)
				return -1;
			size_t bytes = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
			if (n + bytes >= size)
				return -1;
			utf8_append(dst, &n, cp);
			break;
		}
		default: /* " \ / */
			dst[n++] = *p;
		}
		p++;
	}
	if (n >= size)
		return -1;
	dst[n] = '\0';
	return 0;
}

static bool json_string_is(const struct json_doc *doc, uint32_t index, const char *literal)
{
	char text[128];
	return json_string_get(doc, index, text, sizeof(text)) == 0 && strcmp(text, literal) == 0;
}

/* The index of the value of key in an object, or -1. */
static long json_object_get(const struct json_doc *doc, uint32_t object, const char *key)
{
	const struct json_token *obj = &doc->tokens[object];
	if (obj->type != JSON_OBJECT)
		return -1;
	uint32_t i = object + 1;
	for (uint32_t n = 0; n + 1 < obj->count; n += 2) {
		uint32_t value = doc->tokens[i].next;
		if (json_string_is(doc, i, key))
			return value;
		i = doc->tokens[value].next;
	}
	return -1;
}

/* ---- doveadm answers ---- */

/* One entry of an answer: ["doveadmResponse", rows..., tag] or
 * ["error", {"type":..., "exitCode":...}, tag]. */
struct doveadm_answer {
	bool ok;
	char tag[64];
	char error_type[64]; /* !ok: "exitCode", "unAuthorized", ... */
	long exit_code;      /* !ok: -1 if none was given */
	uint32_t first, end; /* tokens between the kind and the tag */
};

/* Calls answer() for each entry of the answer array, in order. */
typedef int doveadm_answer_callback(void *context, const struct json_doc *doc, size_t index,
				    const struct doveadm_answer *answer, const char **error_r);

static int answers_walk(const char *body, size_t len, doveadm_answer_callback *callback,
			void *context, size_t *count_r, const char **error_r)
{
	struct json_doc doc;
	int ret = 0;

	*count_r = 0;
	if (json_parse(&doc, body, len, error_r) < 0) {
		json_doc_free(&doc);
		return fail(error_r, "malformed JSON in the answer: %s", parse_error);
	}
	if (doc.tokens[0].type != JSON_ARRAY) {
		json_doc_free(&doc);
		return fail(error_r, "the answer is not a JSON array");
	}
	uint32_t entry = 1;
	for (uint32_t n = 0; n < doc.tokens[0].count && ret == 0; n++) {
		const struct json_token *tok = &doc.tokens[entry];
		struct doveadm_answer answer;
		memset(&answer, 0, sizeof(answer));
		answer.exit_code = -1;

		if (tok->type != JSON_ARRAY || tok->count < 2) {
			ret = fail(error_r, "answer entry %u is not [kind, ..., tag]", n);
			break;
		}
		uint32_t kind = entry + 1, tag = kind;
		for (uint32_t i = kind; i < tok->next; i = doc.tokens[i].next)
			tag = i;
		if (doc.tokens[tag].type != JSON_STRING ||
		    json_string_get(&doc, tag, answer.tag, sizeof(answer.tag)) < 0) {
			ret = fail(error_r, "answer entry %u does not end with a tag string", n);
			break;
		}
		answer.first = doc.tokens[kind].next;
		answer.end = tag;
		if (json_string_is(&doc, kind, "doveadmResponse")) {
			answer.ok = true;
		} else if (json_string_is(&doc, kind, "error")) {
			long type = answer.first < answer.end
					    ? json_object_get(&doc, answer.first, "type")
					    : -1;
			if (type < 0 || json_string_get(&doc, (uint32_t)type, answer.error_type,
							sizeof(answer.error_type)) < 0)
				snprintf(answer.error_type, sizeof(answer.error_type), "unknown");
			long code = answer.first < answer.end
					    ? json_object_get(&doc, answer.first, "exitCode")
					    : -1;
			if (code >= 0 && doc.tokens[code].type == JSON_SCALAR)
				answer.exit_code =
					strtol(doc.text + doc.tokens[code].start, NULL, 10);
		} else {
			ret = fail(error_r,
				   "answer entry %u (tag %s) is neither doveadmResponse nor "
				   "error",
				   n, answer.tag);
			break;
		}
		ret = callback(context, &doc, n, &answer, error_r);
		entry = tok->next;
		(*count_r)++;
	}
	json_doc_free(&doc);
	return ret;
}

/* Calls row() for each result row (an object) of a doveadmResponse entry:
 * the elements between the kind and the tag, each a row or an array of
 * rows (see the 2.3.19 note in doveadm.h). */
typedef int doveadm_row_callback(void *context, const struct json_doc *doc, uint32_t row,
				 const char **error_r);

static int answer_rows(const struct json_doc *doc, const struct doveadm_answer *answer,
		       doveadm_row_callback *row, void *context, const char **error_r)
{
	for (uint32_t i = answer->first; i < answer->end; i = doc->tokens[i].next) {
		const struct json_token *tok = &doc->tokens[i];
		if (tok->type == JSON_OBJECT) {
			if (row(context, doc, i, error_r) < 0)
				return -1;
			continue;
		}
		if (tok->type != JSON_ARRAY)
			return fail(error_r, "a result row of %s is not an object", answer->tag);
		for (uint32_t j = i + 1; j < tok->next; j = doc->tokens[j].next) {
			if (doc->tokens[j].type != JSON_OBJECT)
				return fail(error_r, "a result row of %s is not an object",
					    answer->tag);
			if (row(context, doc, j, error_r) < 0)
				return -1;
		}
	}
	return 0;
}

static const char *exit_code_name(long code)
{
	switch (code) {
	case 64:
		return "EX_USAGE";
	case 65:
		return "EX_DATAERR";
	case 67:
		return "EX_NOUSER";
	case 68:
		return "EX_NOTFOUND";
	case 69:
		return "EX_UNAVAILABLE";
	case 70:
		return "EX_SOFTWARE";
	case 73:
		return "EX_CANTCREAT";
	case 75:
		return "EX_TEMPFAIL";
	case 77:
		return "EX_NOPERM";
	case 78:
		return "EX_CONFIG";
	default:
		return "?";
	}
}

/* A sentence for an "error" entry of command (with what for the user). */
static int answer_failure(const struct doveadm_answer *answer, const char *command,
			  const char **error_r)
{
	if (strcmp(answer->error_type, "exitCode") == 0)
		return fail(error_r, "%s failed with exit code %ld (%s)", command,
			    answer->exit_code, exit_code_name(answer->exit_code));
	if (strcmp(answer->error_type, "unAuthorized") == 0)
		return fail(error_r,
			    "%s is not allowed (see doveadm_allowed_commands on the backend)",
			    command);
	if (strcmp(answer->error_type, "unknownMethod") == 0)
		return fail(error_r, "this Dovecot does not know the command %s", command);
	if (strcmp(answer->error_type, "invalidRequest") == 0)
		return fail(error_r, "Dovecot refused the parameters of %s (invalidRequest)",
			    command);
	return fail(error_r, "%s failed: %s", command, answer->error_type);
}

/* -- who -- */

struct who_context {
	char **users;
	size_t count, alloc;
};

static int who_row(void *context, const struct json_doc *doc, uint32_t row, const char **error_r)
{
	struct who_context *ctx = context;
	long name = json_object_get(doc, row, "username");
	if (name < 0 || doc->tokens[name].type != JSON_STRING)
		return fail(error_r, "a who row has no username string");
	const struct json_token *tok = &doc->tokens[name];
	size_t size = tok->end - tok->start + 1;
	char *user = malloc(size);
	if (user == NULL)
		abort();
	if (json_string_get(doc, (uint32_t)name, user, size) < 0 || user[0] == '\0') {
		free(user);
		return fail(error_r, "a who row has an empty username or one with a NUL");
	}
	if (ctx->count == ctx->alloc) {
		ctx->alloc = ctx->alloc == 0 ? 64 : ctx->alloc * 2;
		char **users = realloc(ctx->users, ctx->alloc * sizeof(*users));
		if (users == NULL)
			abort();
		ctx->users = users;
	}
	ctx->users[ctx->count++] = user;
	return 0;
}

static int who_answer(void *context, const struct json_doc *doc, size_t index,
		      const struct doveadm_answer *answer, const char **error_r)
{
	if (index > 0)
		return fail(error_r, "more than one answer to one who command");
	if (strcmp(answer->tag, "who") != 0)
		return fail(error_r, "the answer has the tag '%s', expected 'who'", answer->tag);
	if (!answer->ok)
		return answer_failure(answer, "who", error_r);
	return answer_rows(doc, answer, who_row, context, error_r);
}

static int strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void doveadm_user_list_free(struct doveadm_user_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->users[i]);
	free(list->users);
	list->users = NULL;
	list->count = 0;
}

int doveadm_who_parse(const char *body, size_t len, struct doveadm_user_list *users_r,
		      const char **error_r)
{
	struct who_context ctx;
	size_t count;

	memset(&ctx, 0, sizeof(ctx));
	memset(users_r, 0, sizeof(*users_r));
	users_r->users = NULL;
	int ret = answers_walk(body, len, who_answer, &ctx, &count, error_r);
	if (ret == 0 && count != 1)
		ret = fail(error_r, "no answer to the who command");
	users_r->users = ctx.users;
	users_r->count = ctx.count;
	if (ret < 0) {
		doveadm_user_list_free(users_r);
		return -1;
	}
	/* one row per user and service: sort, then drop the repeats */
	if (users_r->count > 1) {
		qsort(users_r->users, users_r->count, sizeof(char *), strcmp_p);
		size_t kept = 1;
		for (size_t i = 1; i < users_r->count; i++) {
			if (strcmp(users_r->users[i], users_r->users[kept - 1]) == 0)
				free(users_r->users[i]);
			else
				users_r->users[kept++] = users_r->users[i];
		}
		users_r->count = kept;
	}
	return 0;
}

/* -- kick -- */

struct kick_context {
	const char *const *users; /* for messages; NULL in the unit tests */
	size_t first;             /* index of users[] the first command kicks */
	unsigned kicked;
};

static int kick_row(void *context, const struct json_doc *doc, uint32_t row, const char **error_r)
{
	unsigned *rows = context;
	(*rows)++;
	return 0;
}

static int kick_answer(void *context, const struct json_doc *doc, size_t index,
		       const struct doveadm_answer *answer, const char **error_r)
{
	struct kick_context *ctx = context;
	char tag[32], command[USERNAME_MAX_LEN + 32];

	snprintf(tag, sizeof(tag), "k%zu", index);
	if (ctx->users != NULL)
		snprintf(command, sizeof(command), "kick %s", ctx->users[ctx->first + index]);
	else
		snprintf(command, sizeof(command), "kick %s", tag);
	if (strcmp(answer->tag, tag) != 0)
		return fail(error_r, "answer %zu has the tag '%s', expected '%s'", index,
			    answer->tag, tag);
	if (!answer->ok) {
		if (strcmp(answer->error_type, "exitCode") == 0 &&
		    answer->exit_code == DOVEADM_EX_NOTFOUND)
			return 0; /* nobody to kick */
		return answer_failure(answer, command, error_r);
	}
	/* the rows name the users of the killed processes: any row = kicked */
	unsigned rows = 0;
	if (answer_rows(doc, answer, kick_row, &rows, error_r) < 0)
		return -1;
	if (rows > 0)
		ctx->kicked++;
	return 0;
}

static int kick_parse(const char *body, size_t len, const char *const *users, size_t first,
		      size_t command_count, unsigned *kicked_r, const char **error_r)
{
	struct kick_context ctx = {.users = users, .first = first, .kicked = 0};
	size_t count;
	int ret = answers_walk(body, len, kick_answer, &ctx, &count, error_r);
	*kicked_r = ctx.kicked;
	if (ret == 0 && count != command_count)
		ret = fail(error_r, "%zu answers to %zu kick commands", count, command_count);
	return ret;
}

int doveadm_kick_parse(const char *body, size_t len, size_t command_count, unsigned *kicked_r,
		       const char **error_r)
{
	return kick_parse(body, len, NULL, 0, command_count, kicked_r, error_r);
}

/* Whether Dovecot's net_parse_range() would read text as "IP[/bits]":
 * inet_aton() for IPv4 (which takes "12345" and "10.1" too), inet_pton()
 * for anything with a colon, optionally in brackets. */
static bool dovecot_reads_as_ip(const char *text)
{
	char host[USERNAME_MAX_LEN + 1];
	size_t len = strcspn(text, "/");
	struct in_addr in4;
	struct in6_addr in6;

	if (len >= sizeof(host))
		return false;
	memcpy(host, text, len);
	host[len] = '\0';
	if (strchr(host, ':') == NULL)
		return inet_aton(host, &in4) != 0;
	if (host[0] == '[' && len >= 2 && host[len - 1] == ']') {
		memmove(host, host + 1, len - 2);
		host[len - 2] = '\0';
	}
	return inet_pton(AF_INET6, host, &in6) == 1;
}

int doveadm_kick_mask(const char *username, char *dst, size_t size)
{
	size_t len = strlen(username);
	if (len == 0 || len >= size)
		return -1;
	memcpy(dst, username, len + 1);
	if (dovecot_reads_as_ip(username))
		dst[len - 1] = '?';
	return 0;
}

/* ---- URL and HTTP ---- */

int doveadm_url_expand(const char *template, const char *backend, const char *address, char *dst,
		       size_t size)
{
	return url_template_expand(template, backend, address, dst, size);
}

/* POSTs body to url (or, with body NULL, GETs url and reads only the
 * status line and headers) and reads the answer, all before the deadline.
 * Free *answer with http_client_response_free(). */
static int http_request(const char *url, const char *api_key, const char *body, uint64_t deadline,
			unsigned timeout_ms, struct http_client_response *answer,
			const char **error_r)
{
	size_t key_len = strlen(api_key);
	char *key64 = malloc(base64_encoded_len(key_len) + 1);
	if (key64 == NULL)
		abort();
	base64_encode(api_key, key_len, key64);
	struct strbuf headers = {0};
	strbuf_printf(&headers,
		      "Authorization: X-Dovecot-API %s\r\n"
		      "Accept: application/json\r\n"
		      "%s",
		      key64, body != NULL ? "Content-Type: application/json\r\n" : "");
	free(key64);

	const struct http_client_request request = {
		.url = url,
		.method = body != NULL ? "POST" : "GET",
		.headers = headers.data,
		.body = body,
		.body_len = body != NULL ? strlen(body) : 0,
		.head_only = body == NULL,
		.body_max = DOVEADM_RESPONSE_MAX,
		.service = "doveadm's inet_listener http",
		.deadline_ms = deadline,
		.timeout_ms = timeout_ms,
	};
	int ret = http_client_request(&request, answer, error_r);
	strbuf_free(&headers);
	if (ret < 0)
		return fail_url(url, error_r, "%s", *error_r);
	return 0;
}

/* The error for an HTTP status other than 200. */
static int http_status_failure(const char *url, const struct http_client_response *answer,
			       const char **error_r)
{
	char text[256];
	switch (answer->status) {
	case 401:
		return fail_url(url, error_r, "HTTP 401 (wrong backend_doveadm_api_key?)");
	case 403:
		return fail_url(url, error_r,
				"HTTP 403 %s (is doveadm_api_key set on the backend?)",
				answer->reason);
	case 404:
		return fail_url(url, error_r, "HTTP 404 %s (the path should be /doveadm/v1)",
				answer->reason);
	default:
		/* a short quote of the body for 400 "Bad Request" and kin */
		http_client_status_describe(answer, text, sizeof(text));
		return fail_url(url, error_r, "%s", text);
	}
}

static uint64_t deadline_after(unsigned timeout_ms)
{
	return http_client_deadline(timeout_ms);
}

/* Checks the key with a bodyless GET of the URL (Dovecot's list of
 * commands; only its status is read).  Dovecot 2.3.19 never answers a POST
 * whose authentication fails: the doveadm-server process waits forever on
 * the unread body, and stays.  A GET gets its 401 at once, so commands are
 * POSTed only with a key the backend accepted. */
static int check_key(const char *url, const char *api_key, uint64_t deadline, unsigned timeout_ms,
		     const char **error_r)
{
	struct http_client_response answer;
	if (http_request(url, api_key, NULL, deadline, timeout_ms, &answer, error_r) < 0)
		return -1;
	int ret = answer.status == 200 ? 0 : http_status_failure(url, &answer, error_r);
	http_client_response_free(&answer);
	return ret;
}

static int who_until(const char *url, const char *api_key, uint64_t deadline, unsigned timeout_ms,
		     struct doveadm_user_list *users_r, const char **error_r)
{
	struct http_client_response answer;
	memset(users_r, 0, sizeof(*users_r));
	if (http_request(url, api_key, "[[\"who\",{},\"who\"]]", deadline, timeout_ms, &answer,
			 error_r) < 0)
		return -1;
	int ret;
	if (answer.status != 200)
		ret = http_status_failure(url, &answer, error_r);
	else if (doveadm_who_parse(answer.body.data, answer.body.len, users_r, error_r) < 0)
		ret = fail_url(url, error_r, "%s", parse_error);
	else
		ret = 0;
	http_client_response_free(&answer);
	return ret;
}

int doveadm_who(const char *url, const char *api_key, unsigned timeout_ms,
		struct doveadm_user_list *users_r, const char **error_r)
{
	uint64_t deadline = deadline_after(timeout_ms);
	memset(users_r, 0, sizeof(*users_r));
	if (check_key(url, api_key, deadline, timeout_ms, error_r) < 0)
		return -1;
	return who_until(url, api_key, deadline, timeout_ms, users_r, error_r);
}

static int kick_until(const char *url, const char *api_key, const char *const *users, size_t count,
		      uint64_t deadline, unsigned timeout_ms, unsigned *kicked_r,
		      const char **error_r)
{
	*kicked_r = 0;
	for (size_t first = 0; first < count; first += DOVEADM_KICK_BATCH) {
		size_t n = count - first < DOVEADM_KICK_BATCH ? count - first : DOVEADM_KICK_BATCH;
		struct strbuf body = {0};
		char mask[USERNAME_MAX_LEN * 4 + 1];

		strbuf_append(&body, "[");
		for (size_t i = 0; i < n; i++) {
			if (doveadm_kick_mask(users[first + i], mask, sizeof(mask)) < 0) {
				strbuf_free(&body);
				return fail_url(url, error_r,
						"cannot kick user '%.64s': empty or "
						"too long a name",
						users[first + i]);
			}
			strbuf_append(&body,
				      i == 0 ? "[\"kick\",{\"mask\":[" : ",[\"kick\",{\"mask\":[");
			strbuf_append_json_string(&body, mask);
			strbuf_printf(&body, "]},\"k%zu\"]", i);
		}
		strbuf_append(&body, "]");

		struct http_client_response answer;
		int ret = http_request(url, api_key, body.data, deadline, timeout_ms, &answer,
				       error_r);
		strbuf_free(&body);
		if (ret < 0)
			return -1;
		unsigned kicked = 0;
		if (answer.status != 200)
			ret = http_status_failure(url, &answer, error_r);
		else if (kick_parse(answer.body.data, answer.body.len, users, first, n, &kicked,
				    error_r) < 0)
			ret = fail_url(url, error_r, "%s", parse_error);
		*kicked_r += kicked;
		http_client_response_free(&answer);
		if (ret < 0)
			return -1;
	}
	return 0;
}

int doveadm_kick(const char *url, const char *api_key, const char *const *users, size_t count,
		 unsigned timeout_ms, unsigned *kicked_r, const char **error_r)
{
	uint64_t deadline = deadline_after(timeout_ms);
	*kicked_r = 0;
	if (count == 0)
		return 0;
	if (check_key(url, api_key, deadline, timeout_ms, error_r) < 0)
		return -1;
	return kick_until(url, api_key, users, count, deadline, timeout_ms, kicked_r, error_r);
}

int doveadm_kick_group(const char *url, const char *api_key, unsigned group_count,
		       unsigned group_id, unsigned timeout_ms, unsigned *kicked_r,
		       const char **error_r)
{
	struct doveadm_user_list who;
	uint64_t deadline = deadline_after(timeout_ms);

	*kicked_r = 0;
	if (group_count == 0 || group_id >= group_count)
		return fail_url(url, error_r, "group %u is not below group_count %u", group_id,
				group_count);
	if (check_key(url, api_key, deadline, timeout_ms, error_r) < 0 ||
	    who_until(url, api_key, deadline, timeout_ms, &who, error_r) < 0)
		return -1;

	/* keep the users of the group, in place */
	size_t kept = 0;
	for (size_t i = 0; i < who.count; i++) {
		char normalized[USERNAME_MAX_LEN + 1];
		if (user_normalize(who.users[i], normalized, sizeof(normalized)) == 0 &&
		    user_hash_group(normalized, group_count) == group_id)
			who.users[kept++] = who.users[i];
		else
			free(who.users[i]);
	}
	who.count = kept;
	int ret = kick_until(url, api_key, (const char *const *)who.users, who.count, deadline,
			     timeout_ms, kicked_r, error_r);
	doveadm_user_list_free(&who);
	return ret;
}
