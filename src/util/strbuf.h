/* strbuf.h - a growable string, for building output (JSON, tables, HTTP
 * bodies) off the hot path. */
#ifndef STRBUF_H
#define STRBUF_H

#include <stddef.h>

struct strbuf {
	char *data; /* always NUL-terminated once anything was appended */
	size_t len, alloc;
};

void strbuf_append(struct strbuf *buf, const char *text);
void strbuf_append_n(struct strbuf *buf, const char *text, size_t len);
void strbuf_printf(struct strbuf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends text as a JSON string literal, quotes included. */
void strbuf_append_json_string(struct strbuf *buf, const char *text);
void strbuf_free(struct strbuf *buf);

#endif
