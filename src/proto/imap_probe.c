/* imap_probe.c - see imap_probe.h. */
#include "proto/imap_probe.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* How much of a backend's line a detail quotes. */
#define QUOTED_LINE_MAX 160

void imap_probe_start(struct imap_probe *probe, const char *username, const char *password)
{
	memset(probe, 0, sizeof(*probe));
	probe->step = IMAP_PROBE_CONNECT;
	if (username != NULL && username[0] != '\0') {
		probe->username = username;
		probe->password = password != NULL ? password : "";
	}
}

void imap_probe_connected(struct imap_probe *probe)
{
	if (probe->step == IMAP_PROBE_CONNECT)
		probe->step = IMAP_PROBE_GREETING;
}

static void fail(struct imap_probe *probe, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail(struct imap_probe *probe, const char *fmt, ...)
{
	if (probe->verdict != IMAP_PROBE_PENDING)
		return;
	va_list args;
	va_start(args, fmt);
	vsnprintf(probe->detail, sizeof(probe->detail), fmt, args);
	va_end(args);
	probe->verdict = IMAP_PROBE_FAILING;
}

/* A backend's line as a detail may quote it: printable ASCII, no double
 * quotes (details go into key="value" log fields), at most
 * QUOTED_LINE_MAX bytes. */
static void printable(const char *line, size_t len, char *dst, size_t dst_size)
{
	size_t n = len < QUOTED_LINE_MAX ? len : QUOTED_LINE_MAX;
	if (n >= dst_size)
		n = dst_size - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];
		dst[i] = c == '"' ? '\'' : (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[n] = '\0';
}

/* Whether line starts with word followed by a space or the line's end
 * (case-insensitive, as IMAP keywords are). */
static bool starts_with_word(const char *line, size_t len, const char *word)
{
	size_t n = strlen(word);
	return len >= n && strncasecmp(line, word, n) == 0 && (len == n || line[n] == ' ');
}

/* Writes "TAG LOGOUT\r\n" and moves to the logout step. */
static size_t send_logout(struct imap_probe *probe, const char *tag, char *out, size_t out_size)
{
	probe->step = IMAP_PROBE_LOGOUT;
	probe->logout_tag = tag;
	int n = snprintf(out, out_size, "%s LOGOUT\r\n", tag);
	return n > 0 && (size_t)n < out_size ? (size_t)n : 0;
}

static size_t send_login(struct imap_probe *probe, char *out, size_t out_size)
{
	char user[2 * IMAP_PROBE_CREDENTIAL_MAX + 3], pass[2 * IMAP_PROBE_CREDENTIAL_MAX + 3];
	if (imap_probe_quote(probe->username, user, sizeof(user)) < 0 ||
	    imap_probe_quote(probe->password, pass, sizeof(pass)) < 0) {
		fail(probe, "test credentials cannot be sent: longer than %d bytes or with CR/LF",
		     IMAP_PROBE_CREDENTIAL_MAX);
		return send_logout(probe, "p1", out, out_size);
	}
	int n = snprintf(out, out_size, "p1 LOGIN %s %s\r\n", user, pass);
	memset(pass, 0, sizeof(pass));
	if (n < 0 || (size_t)n >= out_size) {
		out[0] = '\0';
		fail(probe, "test credentials cannot be sent: the LOGIN command is too long");
		return send_logout(probe, "p1", out, out_size);
	}
	probe->step = IMAP_PROBE_LOGIN;
	return (size_t)n;
}

size_t imap_probe_line(struct imap_probe *probe, const char *line, size_t len, char *out,
		       size_t out_size)
{
	char quoted[QUOTED_LINE_MAX + 1];
	out[0] = '\0';
	switch (probe->step) {
	case IMAP_PROBE_CONNECT: /* data before connected(): it is connected */
	case IMAP_PROBE_GREETING:
		if (!starts_with_word(line, len, "* OK")) {
			printable(line, len, quoted, sizeof(quoted));
			fail(probe, "unexpected greeting: %s", quoted);
			probe->step = IMAP_PROBE_DONE;
			return 0;
		}
		if (probe->username != NULL)
			return send_login(probe, out, out_size);
		probe->verdict = IMAP_PROBE_HEALTHY;
		return send_logout(probe, "p1", out, out_size);
	case IMAP_PROBE_LOGIN:
		if (starts_with_word(line, len, "*"))
			return 0; /* untagged: CAPABILITY and the like */
		if (starts_with_word(line, len, "p1 OK")) {
			probe->verdict = IMAP_PROBE_HEALTHY;
		} else {
			bool no = starts_with_word(line, len, "p1 NO") ||
				  starts_with_word(line, len, "p1 BAD");
			const char *reply = no ? line + 3 : line;
			size_t reply_len = no ? len - 3 : len;
			printable(reply, reply_len, quoted, sizeof(quoted));
			if (no)
				fail(probe, "test login failed: %s", quoted);
			else
				fail(probe, "unexpected reply to the test login: %s", quoted);
		}
		return send_logout(probe, "p2", out, out_size);
	case IMAP_PROBE_LOGOUT: {
		size_t tag_len = strlen(probe->logout_tag);
		if (len > tag_len && memcmp(line, probe->logout_tag, tag_len) == 0 &&
		    line[tag_len] == ' ')
			probe->step = IMAP_PROBE_DONE;
		return 0; /* "* BYE" and the tagged reply */
	}
	case IMAP_PROBE_DONE:
		return 0;
	}
	return 0;
}

void imap_probe_timed_out(struct imap_probe *probe, unsigned timeout_ms)
{
	switch (probe->step) {
	case IMAP_PROBE_CONNECT:
		fail(probe, "connect: no answer within %u ms", timeout_ms);
		break;
	case IMAP_PROBE_GREETING:
		fail(probe, "no greeting within %u ms", timeout_ms);
		break;
	case IMAP_PROBE_LOGIN:
		fail(probe, "timed out after %u ms during login", timeout_ms);
		break;
	case IMAP_PROBE_LOGOUT:
	case IMAP_PROBE_DONE:
		break; /* the verdict is in */
	}
	probe->step = IMAP_PROBE_DONE;
}

void imap_probe_closed(struct imap_probe *probe, const char *error)
{
	char reason[128];
	if (error != NULL) {
		snprintf(reason, sizeof(reason), "%s", error);
		reason[0] = (char)tolower((unsigned char)reason[0]);
	} else {
		snprintf(reason, sizeof(reason), "connection closed");
	}
	switch (probe->step) {
	case IMAP_PROBE_CONNECT:
		fail(probe, "connect: %s", reason);
		break;
	case IMAP_PROBE_GREETING:
		fail(probe, "%s before the greeting", reason);
		break;
	case IMAP_PROBE_LOGIN:
		fail(probe, "%s during login", reason);
		break;
	case IMAP_PROBE_LOGOUT:
	case IMAP_PROBE_DONE:
		break;
	}
	probe->step = IMAP_PROBE_DONE;
}

int imap_probe_expand_username(const char *username, const char *backend, char *dst,
			       size_t dst_size)
{
	static const char variable[] = "%{backend}";
	size_t used = 0, backend_len = strlen(backend);
	while (*username != '\0') {
		const char *piece = username;
		size_t piece_len = 1;
		if (strncmp(username, variable, sizeof(variable) - 1) == 0) {
			piece = backend;
			piece_len = backend_len;
			username += sizeof(variable) - 1;
		} else {
			username++;
		}
		if (used + piece_len >= dst_size)
			return -1;
		memcpy(dst + used, piece, piece_len);
		used += piece_len;
	}
	if (used >= dst_size)
		return -1;
	dst[used] = '\0';
	return 0;
}

int imap_probe_quote(const char *s, char *dst, size_t dst_size)
{
	size_t used = 0;
	if (dst_size < 3)
		return -1;
	dst[used++] = '"';
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			return -1;
		bool escape = *s == '"' || *s == '\\';
		if (used + (escape ? 2 : 1) + 2 > dst_size) /* room for the closing quote + NUL */
			return -1;
		if (escape)
			dst[used++] = '\\';
		dst[used++] = *s;
	}
	dst[used++] = '"';
	dst[used] = '\0';
	return (int)used;
}
