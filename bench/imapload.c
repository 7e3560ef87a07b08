/*
 * imapload - a small, fast IMAP load generator for the mailcluster benchmark.
 *
 * One thread, one epoll loop, non-blocking sockets, one small state machine
 * per connection.  Two modes:
 *
 *   imapload session --host H --port P [--source-ip A] --sessions N
 *                    --concurrency C --users FIRST-LAST --password PW
 *                    [--timeout-sec T] [--op-timeout-sec T]
 *
 *       N complete sessions, at most C in flight.  Each one: connect, read
 *       the greeting, "a LOGIN userK PW", "b SELECT INBOX",
 *       "c FETCH 1:* FLAGS", "d LOGOUT", each tagged reply must be OK; then
 *       the connection is closed.  Prints one line on stdout:
 *         sessions_ok=N sessions_failed=N elapsed_s=X sessions_per_s=Y
 *         p50_ms=.. p99_ms=.. (then p90_ms, max_ms)
 *       and failure reasons with counts on stderr.  Exit 0 if every session
 *       succeeded, 1 otherwise, 2 on a usage error.
 *
 *   imapload idle --host H --port P [--source-ip A] --connections N
 *                 --users FIRST-LAST --password PW [--hold-sec S]
 *                 [--ready-file F] [--ramp R] [--timeout-sec T]
 *
 *       Opens N connections (at most R, default 200, connecting/logging in at
 *       once), logs each in and SELECTs INBOX, then holds them.  When every
 *       connection is either logged in or has failed it prints
 *       "idle_ready=N failed=N" on stdout (flushed) and creates the ready
 *       file (if given); then holds for S seconds (default 30) or until
 *       SIGTERM/SIGINT or EOF on stdin (only when stdin is a pipe, socket or
 *       terminal), then sends LOGOUT on each, waits briefly, and exits.
 *       Exit 0 if all N were logged in and none dropped while held.
 *
 * Users: --users 1-100 (or user1-user100) gives user1..user100, cycled;
 * --user-prefix changes "user".  The response parser copes with replies
 * split across reads or several per read, skips literals ({N} and {N+}),
 * ignores untagged lines and matches tags.  Everything is bounded by
 * --timeout-sec (default 120) overall and --op-timeout-sec (default 20) per
 * command, so it never hangs.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE 8192 /* per-connection read buffer */
#define TAIL_KEEP 64   /* bytes kept when a line overflows the buffer */
#define HEAD_SIZE 160  /* bytes of a response line we look at */
#define WBUF_SIZE 1024
#define MAX_REASONS 64
#define CLOSE_WAIT_SEC 2.0 /* wait for the server to close after LOGOUT */
#define LOGOUT_WAIT_SEC 5.0

enum mode { MODE_SESSION, MODE_IDLE };

enum state {
	ST_CONNECTING,
	ST_GREETING,
	ST_LOGIN,
	ST_SELECT,
	ST_FETCH,
	ST_LOGOUT,
	ST_CLOSING, /* session complete, waiting for the server's EOF */
	ST_HELD,    /* idle mode: logged in, selected, held */
	ST_HELD_LOGOUT,
};

static const char *const stage_name[] = {
	[ST_CONNECTING] = "connect", [ST_GREETING] = "greeting", [ST_LOGIN] = "login",
	[ST_SELECT] = "select",      [ST_FETCH] = "fetch",       [ST_LOGOUT] = "logout",
	[ST_CLOSING] = "close",      [ST_HELD] = "held",         [ST_HELD_LOGOUT] = "held_logout",
};

struct conn {
	int fd;
	enum state state;
	int idx;    /* position in the active array */
	int counts; /* counts against the concurrency / ramp limit */
	int user;
	double t_start; /* session start (connect) */
	double deadline;
	/* reader */
	size_t rlen;
	uint64_t lit_left; /* literal bytes still to skip */
	int cont;          /* next fragment continues a logical line */
	int overflow;      /* inside a line longer than the buffer */
	size_t headlen;
	char head[HEAD_SIZE];
	/* writer */
	size_t wlen, woff;
	int want_out;
	char wbuf[WBUF_SIZE];
	char rbuf[RBUF_SIZE];
};

/* ---- options ---- */
static enum mode g_mode;
static const char *g_host;
static const char *g_port;
static const char *g_source_ip;
static long g_count = -1;      /* sessions or connections */
static long g_concurrency = 0; /* session: concurrency, idle: ramp */
static long g_user_first = -1, g_user_last = -1;
static const char *g_user_prefix = "user";
static const char *g_password;
static double g_timeout_sec = 120;
static double g_op_timeout_sec = 20;
static double g_hold_sec = 30;
static const char *g_ready_file;
static int g_verbose;

/* ---- runtime ---- */
static int g_epfd = -1;
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static struct sockaddr_storage g_src;
static socklen_t g_srclen;
static struct conn **g_active;
static int g_nactive;
static int g_active_cap;
static long g_started, g_ok, g_failed, g_inflight;
static long g_ready, g_dropped, g_logged_out;
static long g_next_user;
static double *g_lat_ms;
static double g_t0, g_t_last_done;
static volatile sig_atomic_t g_stop_signal;
static int g_stdin_watch;

struct reason {
	char name[96];
	long count;
};
static struct reason g_reasons[MAX_REASONS];
static int g_nreasons;
static long g_reasons_other;
static struct reason g_notes[MAX_REASONS]; /* not failures */
static int g_nnotes;
static long g_notes_other;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("imapload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void add_reason(struct reason *tab, int *n, long *other, const char *name)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(tab[i].name, name) == 0) {
			tab[i].count++;
			return;
		}
	if (*n >= MAX_REASONS) {
		(*other)++;
		return;
	}
	snprintf(tab[*n].name, sizeof tab[*n].name, "%s", name);
	tab[*n].count = 1;
	(*n)++;
}

static void print_reasons(const char *title, struct reason *tab, int n, long other)
{
	for (int i = 0; i < n; i++)
		fprintf(stderr, "%s %s count=%ld\n", title, tab[i].name, tab[i].count);
	if (other)
		fprintf(stderr, "%s other count=%ld\n", title, other);
}

static const char *errno_name(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case ECONNRESET:
		return "ECONNRESET";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case EHOSTUNREACH:
		return "EHOSTUNREACH";
	case ENETUNREACH:
		return "ENETUNREACH";
	case EADDRNOTAVAIL:
		return "EADDRNOTAVAIL";
	case EADDRINUSE:
		return "EADDRINUSE";
	case EMFILE:
		return "EMFILE";
	case ENFILE:
		return "ENFILE";
	case EPIPE:
		return "EPIPE";
	case ENOBUFS:
		return "ENOBUFS";
	case ENOMEM:
		return "ENOMEM";
	default:
		return strerror(e);
	}
}

/* ---- connection bookkeeping ---- */

static void active_add(struct conn *c)
{
	if (g_nactive == g_active_cap) {
		g_active_cap = g_active_cap ? g_active_cap * 2 : 256;
		g_active = realloc(g_active, g_active_cap * sizeof *g_active);
		if (!g_active)
			die("out of memory");
	}
	c->idx = g_nactive;
	g_active[g_nactive++] = c;
}

static void active_del(struct conn *c)
{
	struct conn *last = g_active[--g_nactive];
	g_active[c->idx] = last;
	last->idx = c->idx;
}

static void conn_free(struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	if (c->counts)
		g_inflight--;
	active_del(c);
	free(c);
}

static void conn_set_events(struct conn *c)
{
	struct epoll_event ev = {0};
	ev.events = EPOLLIN;
	if (c->state == ST_CONNECTING || c->wlen > c->woff)
		ev.events |= EPOLLOUT;
	int out = (ev.events & EPOLLOUT) != 0;
	if (out == c->want_out)
		return;
	c->want_out = out;
	ev.data.ptr = c;
	epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void session_done(struct conn *c)
{
	double t = now_s();
	if (g_lat_ms)
		g_lat_ms[g_ok] = (t - c->t_start) * 1000.0;
	g_ok++;
	g_t_last_done = t;
}

/* A connection failed: count it (session mode: one failed session; idle
 * mode: one failed connection, or a dropped one if it had been held). */
static void conn_fail(struct conn *c, const char *what)
{
	char name[96];
	snprintf(name, sizeof name, "%s:%s", stage_name[c->state], what);
	if (c->state == ST_CLOSING) {
		/* the session itself had completed */
		add_reason(g_notes, &g_nnotes, &g_notes_other, name);
	} else if (c->state == ST_HELD) {
		add_reason(g_reasons, &g_nreasons, &g_reasons_other, name);
		g_dropped++;
		g_ready--;
	} else if (c->state == ST_HELD_LOGOUT) {
		add_reason(g_notes, &g_nnotes, &g_notes_other, name);
	} else {
		add_reason(g_reasons, &g_nreasons, &g_reasons_other, name);
		g_failed++;
		g_t_last_done = now_s();
	}
	if (g_verbose)
		fprintf(stderr, "imapload: fd %d user%d: %s\n", c->fd, c->user, name);
	conn_free(c);
}

/* Returns 0, or -1 if the connection was closed. */
static int conn_flush(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
		if (n > 0) {
			c->woff += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno == EINTR)
			continue;
		char what[64];
		snprintf(what, sizeof what, "write_%s", n < 0 ? errno_name(errno) : "zero");
		conn_fail(c, what);
		return -1;
	}
	if (c->woff == c->wlen)
		c->woff = c->wlen = 0;
	conn_set_events(c);
	return 0;
}

static int atom_safe(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		unsigned char ch = *s;
		if (ch <= ' ' || ch >= 0x7f || strchr("(){%*\"\\]", ch))
			return 0;
	}
	return 1;
}

/* Appends s as an IMAP atom if it can be one, else as a quoted string. */
static void put_astring(char *buf, size_t size, size_t *len, const char *s)
{
	if (atom_safe(s)) {
		*len += snprintf(buf + *len, size - *len, "%s", s);
		return;
	}
	if (*len < size)
		buf[(*len)++] = '"';
	for (; *s && *len + 3 < size; s++) {
		if (*s == '"' || *s == '\\')
			buf[(*len)++] = '\\';
		buf[(*len)++] = *s;
	}
	if (*len < size)
		buf[(*len)++] = '"';
	buf[*len < size ? *len : size - 1] = 0;
}

/* Queues a command and moves to state st.  Returns 0 or -1 if closed. */
static int conn_send(struct conn *c, enum state st, const char *tag, const char *cmd)
{
	size_t len = c->wlen;
	char *b = c->wbuf;
	size_t sz = sizeof c->wbuf - 2;
	len += snprintf(b + len, sz - len, "%s ", tag);
	if (strcmp(cmd, "LOGIN") == 0) {
		char user[64];
		snprintf(user, sizeof user, "%s%d", g_user_prefix, c->user);
		len += snprintf(b + len, sz - len, "LOGIN ");
		put_astring(b, sz, &len, user);
		len += snprintf(b + len, sz - len, " ");
		put_astring(b, sz, &len, g_password);
	} else {
		len += snprintf(b + len, sz - len, "%s", cmd);
	}
	if (len > sz)
		len = sz;
	b[len++] = '\r';
	b[len++] = '\n';
	c->wlen = len;
	c->state = st;
	c->deadline = now_s() + g_op_timeout_sec;
	return conn_flush(c);
}

static int head_is(const char *p, size_t len, const char *word)
{
	size_t wl = strlen(word);
	return len >= wl && strncasecmp(p, word, wl) == 0 && (len == wl || p[wl] == ' ');
}

/* Builds "NO" or "NO [CODE]" from the text after a tagged status. */
static void status_reason(char *out, size_t size, const char *st, size_t stlen)
{
	size_t n = 0;
	while (n < stlen && st[n] != ' ')
		n++;
	size_t w = snprintf(out, size, "%.*s", (int)(n < 12 ? n : 12), st);
	if (n + 1 < stlen && st[n + 1] == '[') {
		size_t e = n + 1;
		while (e < stlen && st[e] != ']' && e - n < 40)
			e++;
		if (w < size)
			snprintf(out + w, size - w, " %.*s]", (int)(e - n - 1), st + n + 1);
	}
	for (char *p = out; *p; p++)
		if (!isprint((unsigned char)*p))
			*p = '?';
}

static int held_logged_in(struct conn *c);

/* Handles one complete logical response (its first HEAD_SIZE bytes).
 * Returns 0, or -1 if the connection was closed. */
static int handle_response(struct conn *c, const char *h, size_t len)
{
	if (len == 0)
		return 0;
	if (h[0] == '*') {
		const char *p = h + 1;
		size_t l = len - 1;
		while (l && *p == ' ')
			p++, l--;
		if (c->state == ST_GREETING) {
			if (head_is(p, l, "OK"))
				return conn_send(c, ST_LOGIN, "a", "LOGIN");
			if (head_is(p, l, "PREAUTH"))
				return conn_fail(c, "preauth"), -1;
			if (head_is(p, l, "BYE")) {
				char why[64];
				status_reason(why, sizeof why, p, l);
				return conn_fail(c, why), -1;
			}
			return conn_fail(c, "bad_greeting"), -1;
		}
		if (head_is(p, l, "BYE") && c->state != ST_LOGOUT && c->state != ST_CLOSING &&
		    c->state != ST_HELD_LOGOUT) {
			char why[64];
			status_reason(why, sizeof why, p, l);
			return conn_fail(c, why), -1;
		}
		return 0; /* other untagged data is ignored */
	}
	if (h[0] == '+') {
		if (c->state == ST_HELD)
			return 0;
		return conn_fail(c, "unexpected_continuation"), -1;
	}
	/* tagged */
	size_t tl = 0;
	while (tl < len && h[tl] != ' ')
		tl++;
	const char *st = h + tl;
	size_t stl = len - tl;
	while (stl && *st == ' ')
		st++, stl--;
	const char *want;
	switch (c->state) {
	case ST_LOGIN:
		want = "a";
		break;
	case ST_SELECT:
		want = "b";
		break;
	case ST_FETCH:
		want = "c";
		break;
	case ST_LOGOUT:
		want = "d";
		break;
	case ST_HELD_LOGOUT:
		want = "z";
		break;
	case ST_HELD:
	case ST_CLOSING:
		return 0; /* nothing outstanding: ignore */
	default:
		return conn_fail(c, "unexpected_tagged"), -1;
	}
	if (tl != strlen(want) || memcmp(h, want, tl) != 0)
		return conn_fail(c, "tag_mismatch"), -1;
	if (!head_is(st, stl, "OK")) {
		char why[64];
		if (head_is(st, stl, "NO") || head_is(st, stl, "BAD"))
			status_reason(why, sizeof why, st, stl);
		else
			snprintf(why, sizeof why, "bad_status");
		return conn_fail(c, why), -1;
	}
	switch (c->state) {
	case ST_LOGIN:
		return conn_send(c, ST_SELECT, "b", "SELECT INBOX");
	case ST_SELECT:
		if (g_mode == MODE_IDLE)
			return held_logged_in(c);
		return conn_send(c, ST_FETCH, "c", "FETCH 1:* FLAGS");
	case ST_FETCH:
		return conn_send(c, ST_LOGOUT, "d", "LOGOUT");
	case ST_LOGOUT:
		session_done(c);
		/* Let the server close first (as LOGOUT requires); the
		 * session no longer counts against the concurrency. */
		c->state = ST_CLOSING;
		c->deadline = now_s() + CLOSE_WAIT_SEC;
		if (c->counts) {
			c->counts = 0;
			g_inflight--;
		}
		return 0;
	case ST_HELD_LOGOUT:
		g_logged_out++;
		conn_free(c);
		return -1;
	default:
		return 0;
	}
}

/* Returns the length of a literal announced at the end of line, or -1. */
static int64_t literal_at_end(const char *line, size_t len)
{
	if (len < 3 || line[len - 1] != '}')
		return -1;
	size_t i = len - 1;
	if (i > 0 && line[i - 1] == '+') /* {N+} (LITERAL+), seen in echoes */
		i--;
	size_t end = i;
	while (i > 0 && isdigit((unsigned char)line[i - 1]) && end - i < 19)
		i--;
	if (i == end || i == 0 || line[i - 1] != '{')
		return -1;
	int64_t v = 0;
	for (size_t k = i; k < end; k++)
		v = v * 10 + (line[k] - '0');
	return v;
}

static void capture_head(struct conn *c, const char *p, size_t len)
{
	if (len > HEAD_SIZE)
		len = HEAD_SIZE;
	memcpy(c->head, p, len);
	c->headlen = len;
}

/* Parses what is buffered.  Returns 0, or -1 if the connection was closed. */
static int conn_parse(struct conn *c)
{
	size_t pos = 0;
	while (pos < c->rlen) {
		if (c->lit_left) {
			size_t avail = c->rlen - pos;
			size_t n = c->lit_left < avail ? (size_t)c->lit_left : avail;
			pos += n;
			c->lit_left -= n;
			continue;
		}
		char *start = c->rbuf + pos;
		char *lf = memchr(start, '\n', c->rlen - pos);
		if (!lf) {
			if (pos == 0 && c->rlen == sizeof c->rbuf) {
				/* line longer than the buffer: remember its head,
				 * keep only its tail (for a literal marker) */
				if (!c->cont && !c->overflow)
					capture_head(c, start, c->rlen);
				c->overflow = 1;
				memmove(c->rbuf, c->rbuf + c->rlen - TAIL_KEEP, TAIL_KEEP);
				c->rlen = TAIL_KEEP;
				return 0;
			}
			break;
		}
		size_t len = lf - start;
		pos += len + 1;
		if (len && start[len - 1] == '\r')
			len--;
		if (!c->cont && !c->overflow)
			capture_head(c, start, len);
		c->overflow = 0;
		int64_t lit = literal_at_end(start, len);
		if (lit >= 0) {
			c->lit_left = (uint64_t)lit;
			c->cont = 1;
			continue;
		}
		c->cont = 0;
		/* copy: handle_response may send, which never touches rbuf,
		 * but may free c */
		char head[HEAD_SIZE];
		size_t hl = c->headlen;
		memcpy(head, c->head, hl);
		if (handle_response(c, head, hl) < 0)
			return -1;
	}
	if (pos) {
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
		c->rlen -= pos;
	}
	return 0;
}

static int conn_read(struct conn *c)
{
	for (int rounds = 0; rounds < 4; rounds++) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen, 0);
		if (n > 0) {
			c->rlen += n;
			if (conn_parse(c) < 0)
				return -1;
			if ((size_t)n < sizeof c->rbuf)
				return 0; /* likely drained */
			continue;
		}
		if (n == 0) {
			if (c->state == ST_CLOSING) {
				conn_free(c);
				return -1;
			}
			if (c->state == ST_HELD_LOGOUT) {
				g_logged_out++;
				conn_free(c);
				return -1;
			}
			conn_fail(c, "eof");
			return -1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EINTR)
			continue;
		char what[64];
		snprintf(what, sizeof what, "read_%s", errno_name(errno));
		conn_fail(c, what);
		return -1;
	}
	return 0;
}

/* Starts one connection.  Returns 0, or -1 if it failed at once. */
static int conn_start(int counts)
{
	struct conn *c = malloc(sizeof *c);
	if (!c)
		die("out of memory");
	memset(c, 0, offsetof(struct conn, wbuf));
	c->fd = -1;
	c->state = ST_CONNECTING;
	c->counts = counts;
	if (counts)
		g_inflight++;
	c->user = (int)(g_user_first + g_next_user);
	g_next_user = (g_next_user + 1) % (g_user_last - g_user_first + 1);
	c->t_start = now_s();
	c->deadline = c->t_start + g_op_timeout_sec;
	active_add(c);
	g_started++;

	int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		char what[64];
		snprintf(what, sizeof what, "socket_%s", errno_name(errno));
		conn_fail(c, what);
		return -1;
	}
	c->fd = fd;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (g_srclen) {
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&g_src, g_srclen) < 0) {
			char what[64];
			snprintf(what, sizeof what, "bind_%s", errno_name(errno));
			conn_fail(c, what);
			return -1;
		}
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
	c->want_out = 1;
	if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) < 0 && errno != EINPROGRESS) {
		conn_fail(c, errno_name(errno));
		return -1;
	}
	return 0;
}

static void conn_event(struct conn *c, uint32_t events)
{
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			conn_fail(c, errno_name(err));
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLIN | EPOLLHUP | EPOLLERR)))
			return;
		c->state = ST_GREETING;
		c->deadline = now_s() + g_op_timeout_sec;
		conn_set_events(c);
	}
	if (events & EPOLLOUT && c->wlen > c->woff) {
		if (conn_flush(c) < 0)
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(c);
}

/* ---- idle mode ---- */

static int held_logged_in(struct conn *c)
{
	c->state = ST_HELD;
	c->deadline = 0;
	if (c->counts) {
		c->counts = 0;
		g_inflight--;
	}
	g_ready++;
	return 0;
}

static void on_signal(int sig)
{
	g_stop_signal = sig;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			fprintf(stderr, "imapload: setrlimit(NOFILE): %s\n", strerror(errno));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && g_count > 0 &&
	    (rlim_t)g_count + 64 > rl.rlim_cur && g_mode == MODE_IDLE)
		fprintf(stderr, "imapload: warning: RLIMIT_NOFILE %llu is below %ld connections\n",
			(unsigned long long)rl.rlim_cur, g_count);
}

/* ---- main loop ---- */

static void sweep_timeouts(double t)
{
	for (int i = 0; i < g_nactive;) {
		struct conn *c = g_active[i];
		if (c->deadline > 0 && t >= c->deadline) {
			if (c->state == ST_CLOSING) {
				add_reason(g_notes, &g_nnotes, &g_notes_other,
					   "close:server_kept_open");
				conn_free(c);
			} else if (c->state == ST_HELD_LOGOUT) {
				add_reason(g_notes, &g_nnotes, &g_notes_other,
					   "held_logout:timeout");
				conn_free(c);
			} else {
				conn_fail(c, "timeout");
			}
			continue; /* slot i now holds another connection */
		}
		i++;
	}
}

static void poll_once(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(g_epfd, evs, 256, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return;
		die("epoll_wait: %s", strerror(errno));
	}
	/* A handler may free a connection that a later event in this batch
	 * refers to only if it is the same connection; each fd appears once
	 * per epoll_wait, so this is safe. */
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL) {
			char b[512];
			ssize_t r = read(0, b, sizeof b);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				epoll_ctl(g_epfd, EPOLL_CTL_DEL, 0, NULL);
				g_stdin_watch = 0;
				g_stop_signal = -1;
			}
			continue;
		}
		conn_event(evs[i].data.ptr, evs[i].events);
	}
}

static void abort_all(const char *why)
{
	while (g_nactive > 0) {
		struct conn *c = g_active[g_nactive - 1];
		if (c->state == ST_CLOSING || c->state == ST_HELD_LOGOUT)
			conn_free(c);
		else
			conn_fail(c, why);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p)
{
	if (n <= 0)
		return 0;
	long i = (long)(p * n + 0.999999) - 1; /* nearest-rank */
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i];
}

static int run_session(void)
{
	g_lat_ms = calloc(g_count ? g_count : 1, sizeof *g_lat_ms);
	if (!g_lat_ms)
		die("out of memory");
	g_t0 = now_s();
	g_t_last_done = g_t0;
	double end = g_t0 + g_timeout_sec;
	double next_sweep = g_t0 + 0.1;
	int timed_out = 0;
	while (g_ok + g_failed < g_count || g_nactive > 0) {
		while (g_started < g_count && g_inflight < g_concurrency && !g_stop_signal)
			conn_start(1);
		double t = now_s();
		if (t >= end) {
			timed_out = 1;
			break;
		}
		if (g_stop_signal)
			break;
		if (g_started >= g_count && g_nactive == 0)
			break;
		poll_once(50);
		t = now_s();
		if (t >= next_sweep) {
			sweep_timeouts(t);
			next_sweep = t + 0.1;
		}
	}
	abort_all(timed_out ? "overall_timeout" : "interrupted");
	long not_started = g_count - g_started;
	if (not_started > 0) {
		for (long i = 0; i < not_started; i++)
			add_reason(g_reasons, &g_nreasons, &g_reasons_other, "not_started");
		g_failed += not_started;
	}
	double elapsed = g_t_last_done - g_t0;
	if (elapsed <= 0)
		elapsed = now_s() - g_t0;
	qsort(g_lat_ms, g_ok, sizeof *g_lat_ms, cmp_double);
	printf("sessions_ok=%ld sessions_failed=%ld elapsed_s=%.3f sessions_per_s=%.1f "
	       "p50_ms=%.2f p99_ms=%.2f p90_ms=%.2f max_ms=%.2f\n",
	       g_ok, g_failed, elapsed, elapsed > 0 ? g_ok / elapsed : 0.0,
	       pct(g_lat_ms, g_ok, 0.50), pct(g_lat_ms, g_ok, 0.99), pct(g_lat_ms, g_ok, 0.90),
	       g_ok ? g_lat_ms[g_ok - 1] : 0.0);
	fflush(stdout);
	print_reasons("failure", g_reasons, g_nreasons, g_reasons_other);
	print_reasons("note", g_notes, g_nnotes, g_notes_other);
	free(g_lat_ms);
	return g_failed == 0 && g_ok == g_count ? 0 : 1;
}

static void write_ready_file(void)
{
	if (!g_ready_file)
		return;
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.tmp", g_ready_file);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "imapload: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f, "idle_ready=%ld failed=%ld\n", g_ready, g_failed);
	fclose(f);
	if (rename(tmp, g_ready_file) < 0)
		fprintf(stderr, "imapload: %s: %s\n", g_ready_file, strerror(errno));
}

static int run_idle(void)
{
	struct stat st;
	if (fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(0))) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, 0, &ev) == 0)
			g_stdin_watch = 1;
	}
	g_t0 = now_s();
	double end = g_t0 + g_timeout_sec;
	double next_sweep = g_t0 + 0.1;
	/* phase 1: ramp up */
	while (g_ready + g_failed < g_count && !g_stop_signal) {
		while (g_started < g_count && g_inflight < g_concurrency)
			conn_start(1);
		double t = now_s();
		if (t >= end)
			break;
		poll_once(50);
		t = now_s();
		if (t >= next_sweep) {
			sweep_timeouts(t);
			next_sweep = t + 0.1;
		}
	}
	/* whatever is still logging in has had its time */
	for (int i = 0; i < g_nactive;) {
		struct conn *c = g_active[i];
		if (c->state != ST_HELD) {
			conn_fail(c, g_stop_signal ? "interrupted" : "overall_timeout");
			continue;
		}
		i++;
	}
	if (g_started < g_count) {
		for (long i = g_started; i < g_count; i++)
			add_reason(g_reasons, &g_nreasons, &g_reasons_other, "not_started");
		g_failed += g_count - g_started;
	}
	double ramp = now_s() - g_t0;
	printf("idle_ready=%ld failed=%ld\n", g_ready, g_failed);
	fflush(stdout);
	write_ready_file();
	fprintf(stderr, "imapload: %ld connections logged in and held after %.2fs\n", g_ready,
		ramp);

	/* phase 2: hold */
	double hold_end = now_s() + g_hold_sec;
	while (!g_stop_signal && g_nactive > 0) {
		double t = now_s();
		if (t >= hold_end)
			break;
		double left = (hold_end - t) * 1000;
		poll_once(left < 200 ? (int)left + 1 : 200);
	}
	long held = g_ready;

	/* phase 3: LOGOUT and close */
	double t = now_s();
	for (int i = 0; i < g_nactive;) {
		struct conn *c = g_active[i];
		int before = g_nactive;
		if (c->state == ST_HELD) {
			c->wlen = c->woff = 0;
			if (conn_send(c, ST_HELD_LOGOUT, "z", "LOGOUT") == 0)
				c->deadline = t + LOGOUT_WAIT_SEC;
		}
		if (g_nactive == before)
			i++;
	}
	double logout_end = t + LOGOUT_WAIT_SEC + 0.5;
	while (g_nactive > 0 && now_s() < logout_end) {
		poll_once(100);
		sweep_timeouts(now_s());
	}
	abort_all("shutdown");
	fprintf(stderr,
		"imapload: idle done: ready=%ld dropped_while_held=%ld still_held_at_end=%ld "
		"logged_out=%ld failed=%ld\n",
		g_ready + g_dropped, g_dropped, held, g_logged_out, g_failed);
	print_reasons("failure", g_reasons, g_nreasons, g_reasons_other);
	print_reasons("note", g_notes, g_nnotes, g_notes_other);
	return g_failed == 0 && g_dropped == 0 ? 0 : 1;
}

static void usage(FILE *f)
{
	fputs("usage:\n"
	      "  imapload session --host H --port P [--source-ip A] --sessions N\n"
	      "                   --concurrency C --users FIRST-LAST --password PW\n"
	      "                   [--timeout-sec T] [--op-timeout-sec T] [--user-prefix S]\n"
	      "  imapload idle --host H --port P [--source-ip A] --connections N\n"
	      "                --users FIRST-LAST --password PW [--hold-sec S]\n"
	      "                [--ready-file F] [--ramp R] [--timeout-sec T] [--op-timeout-sec "
	      "T]\n",
	      f);
}

static long parse_long(const char *opt, const char *s, long min)
{
	char *e;
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < min)
		die("bad value for --%s: %s", opt, s);
	return v;
}

static double parse_double(const char *opt, const char *s)
{
	char *e;
	double v = strtod(s, &e);
	if (e == s || *e || v < 0)
		die("bad value for --%s: %s", opt, s);
	return v;
}

/* "1-100" or "user1-user100": digits after any non-digit prefix */
static void parse_users(const char *s)
{
	const char *dash = NULL;
	for (const char *p = s; *p; p++)
		if (*p == '-' && p > s && isdigit((unsigned char)p[-1])) {
			dash = p;
			break;
		}
	const char *a = s;
	while (*a && !isdigit((unsigned char)*a))
		a++;
	char *e;
	long first = strtol(a, &e, 10);
	long last = first;
	if (e == a)
		die("bad --users: %s", s);
	if (dash) {
		if (e != dash)
			die("bad --users: %s", s);
		const char *b = dash + 1;
		while (*b && !isdigit((unsigned char)*b))
			b++;
		last = strtol(b, &e, 10);
		if (e == b || *e)
			die("bad --users: %s", s);
	} else if (*e) {
		die("bad --users: %s", s);
	}
	if (first < 0 || last < first || last > INT_MAX)
		die("bad --users range: %s", s);
	g_user_first = first;
	g_user_last = last;
}

static void resolve(void)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	int rc = getaddrinfo(g_host, g_port, &hints, &res);
	if (rc)
		die("%s:%s: %s", g_host, g_port, gai_strerror(rc));
	memcpy(&g_addr, res->ai_addr, res->ai_addrlen);
	g_addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	if (g_source_ip) {
		hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
		hints.ai_family = g_addr.ss_family;
		rc = getaddrinfo(g_source_ip, "0", &hints, &res);
		if (rc)
			die("--source-ip %s: %s", g_source_ip, gai_strerror(rc));
		memcpy(&g_src, res->ai_addr, res->ai_addrlen);
		g_srclen = res->ai_addrlen;
		freeaddrinfo(res);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "session") == 0)
		g_mode = MODE_SESSION;
	else if (strcmp(argv[1], "idle") == 0)
		g_mode = MODE_IDLE;
	else if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	} else {
		usage(stderr);
		return 2;
	}
	static const struct option opts[] = {
		{"host", required_argument, 0, 'H'},
		{"port", required_argument, 0, 'P'},
		{"source-ip", required_argument, 0, 'S'},
		{"sessions", required_argument, 0, 'n'},
		{"connections", required_argument, 0, 'n'},
		{"concurrency", required_argument, 0, 'c'},
		{"ramp", required_argument, 0, 'c'},
		{"users", required_argument, 0, 'u'},
		{"user-prefix", required_argument, 0, 'U'},
		{"password", required_argument, 0, 'p'},
		{"timeout-sec", required_argument, 0, 't'},
		{"op-timeout-sec", required_argument, 0, 'o'},
		{"hold-sec", required_argument, 0, 'h'},
		{"ready-file", required_argument, 0, 'r'},
		{"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, '?'},
		{0, 0, 0, 0},
	};
	optind = 2;
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'H':
			g_host = optarg;
			break;
		case 'P':
			g_port = optarg;
			break;
		case 'S':
			g_source_ip = optarg;
			break;
		case 'n':
			g_count = parse_long("sessions", optarg, 0);
			break;
		case 'c':
			g_concurrency = parse_long("concurrency", optarg, 1);
			break;
		case 'u':
			parse_users(optarg);
			break;
		case 'U':
			g_user_prefix = optarg;
			break;
		case 'p':
			g_password = optarg;
			break;
		case 't':
			g_timeout_sec = parse_double("timeout-sec", optarg);
			break;
		case 'o':
			g_op_timeout_sec = parse_double("op-timeout-sec", optarg);
			break;
		case 'h':
			g_hold_sec = parse_double("hold-sec", optarg);
			break;
		case 'r':
			g_ready_file = optarg;
			break;
		case 'v':
			g_verbose = 1;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc)
		die("unexpected argument: %s", argv[optind]);
	if (!g_host || !g_port || g_count < 0 || g_user_first < 0 || !g_password)
		die("--host, --port, --%s, --users and --password are required",
		    g_mode == MODE_SESSION ? "sessions" : "connections");
	if (g_concurrency <= 0) {
		if (g_mode == MODE_SESSION)
			die("--concurrency is required");
		g_concurrency = 200;
	}
	if (g_op_timeout_sec > g_timeout_sec)
		g_op_timeout_sec = g_timeout_sec;

	resolve();
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	g_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (g_epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	return g_mode == MODE_SESSION ? run_session() : run_idle();
}
