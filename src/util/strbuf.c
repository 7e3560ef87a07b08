/* strbuf.c - see strbuf.h. */
#include "util/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reserve(struct strbuf *buf, size_t more)
{
	if (buf->len + more + 1 <= buf->alloc)
		return;
	size_t alloc = buf->alloc == 0 ? 256 : buf->alloc;
	while (alloc < buf->len + more + 1)
		alloc *= 2;
	char *data = realloc(buf->data, alloc);
	if (data == NULL)
		abort();
	buf->data = data;
	buf->alloc = alloc;
}

void strbuf_append_n(struct strbuf *buf, const char *text, size_t len)
{
	reserve(buf, len);
	memcpy(buf->data + buf->len, text, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

void strbuf_append(struct strbuf *buf, const char *text)
{
	strbuf_append_n(buf, text, strlen(text));
}

void strbuf_printf(struct strbuf *buf, const char *fmt, ...)
{
	/* format into the free space; grow and format again if it was short */
	reserve(buf, 64);
	for (;;) {
		size_t room = buf->alloc - buf->len;
		va_list args;
		va_start(args, fmt);
		int n = vsnprintf(buf->data + buf->len, room, fmt, args);
		va_end(args);
		if (n < 0) {
			buf->data[buf->len] = '\0';
			return;
		}
		if ((size_t)n < room) {
			buf->len += (size_t)n;
			return;
		}
		reserve(buf, (size_t)n);
	}
}

void strbuf_append_json_string(struct strbuf *buf, const char *text)
{
	strbuf_append_n(buf, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		switch (*p) {
		case '"':
			strbuf_append_n(buf, "\\\"", 2);
			break;
		case '\\':
			strbuf_append_n(buf, "\\\\", 2);
			break;
		case '\n':
			strbuf_append_n(buf, "\\n", 2);
			break;
		case '\r':
			strbuf_append_n(buf, "\\r", 2);
			break;
		case '\t':
			strbuf_append_n(buf, "\\t", 2);
			break;
		default:
			if (*p < 0x20)
				strbuf_printf(buf, "\\u%04x", *p);
			else
				strbuf_append_n(buf, (const char *)p, 1);
		}
	}
	strbuf_append_n(buf, "\"", 1);
}

void strbuf_free(struct strbuf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->alloc = 0;
}
