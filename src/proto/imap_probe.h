/* imap_probe.h - the backend prober's IMAP dialogue, without the I/O.
 *
 * The daemon's prober (daemon/prober.c) connects to a backend, feeds every
 * line the backend sends to imap_probe_line() and sends what it is told
 * to; this file decides the verdict and words its detail:
 *
 *   connect    refused, unreachable, no answer     "connect: connection refused"
 *   greeting   must be "* OK ..."                  "no greeting within 3000 ms",
 *                                                  "unexpected greeting: * BYE ..."
 *   login      only with test credentials:         "test login failed: NO [...] ..."
 *              p1 LOGIN "user" "password"          "timed out after 3000 ms during login"
 *   logout     p1 (or p2) LOGOUT                   the verdict is in already; the reply
 *                                                  only lets us close politely
 *
 * Pure code: no allocation, no I/O, no clock.
 */
#ifndef IMAP_PROBE_H
#define IMAP_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#define IMAP_PROBE_DETAIL_MAX 256
/* out buffers of imap_probe_line(): the LOGIN command with two quoted
 * strings of up to IMAP_PROBE_CREDENTIAL_MAX bytes, each byte escaped */
#define IMAP_PROBE_CREDENTIAL_MAX 255
#define IMAP_PROBE_COMMAND_MAX (32 + 4 * (IMAP_PROBE_CREDENTIAL_MAX + 1))

enum imap_probe_step {
	IMAP_PROBE_CONNECT,
	IMAP_PROBE_GREETING,
	IMAP_PROBE_LOGIN,
	IMAP_PROBE_LOGOUT,
	IMAP_PROBE_DONE, /* close the connection */
};

enum imap_probe_verdict { IMAP_PROBE_PENDING, IMAP_PROBE_HEALTHY, IMAP_PROBE_FAILING };

struct imap_probe {
	enum imap_probe_step step;
	enum imap_probe_verdict verdict;
	const char *username, *password; /* NULL: no test login */
	const char *logout_tag;
	char detail[IMAP_PROBE_DETAIL_MAX]; /* why FAILING; "" otherwise */
};

/* Starts a dialogue (step CONNECT).  username NULL or "": no test login.
 * The strings must outlive the dialogue. */
void imap_probe_start(struct imap_probe *probe, const char *username, const char *password);
/* The TCP connection is up: the greeting is next. */
void imap_probe_connected(struct imap_probe *probe);
/* One line from the backend without its CRLF (possibly only the start of
 * a longer line).  Writes the command to send now to out (NUL-terminated,
 * "" for none; IMAP_PROBE_COMMAND_MAX bytes are always enough) and returns
 * its length. */
size_t imap_probe_line(struct imap_probe *probe, const char *line, size_t len, char *out,
		       size_t out_size);
/* The probe's time is up, or the connection ended: error is the socket
 * error (strerror() text), NULL for an orderly close.  Gives the FAILING
 * verdict if there was none yet; the step becomes DONE. */
void imap_probe_timed_out(struct imap_probe *probe, unsigned timeout_ms);
void imap_probe_closed(struct imap_probe *probe, const char *error);

/* username with every "%{backend}" replaced by backend.  Returns 0, or -1
 * if the result does not fit in dst. */
int imap_probe_expand_username(const char *username, const char *backend, char *dst,
			       size_t dst_size);
/* s as an IMAP quoted string, quotes included, '\' and '"' escaped.
 * Returns its length, or -1 if s contains CR or LF (a quoted string cannot
 * carry them) or the result does not fit in dst. */
int imap_probe_quote(const char *s, char *dst, size_t dst_size);

#endif
