/* doveadm.h - a blocking client for Dovecot's doveadm HTTP API, for kicking
 * the users of a group off a backend while the group moves.
 *
 * The controller calls these from a worker thread, never from the event
 * loop: every call blocks, bounded by its timeout_ms, which covers the whole
 * call (name lookup aside: connect, send and receive of every request it
 * makes).  Only http:// is spoken (no TLS); one request per connection
 * (net/http_client.h does the HTTP).
 *
 * The wire format (Dovecot 2.3): POST a JSON array of commands,
 *     [["who",{},"who"]]          [["kick",{"mask":["user1"]},"k0"], ...]
 * with "Authorization: X-Dovecot-API base64(api key)"; the answer is an array
 * of one entry per command, in order,
 *     ["doveadmResponse",[{"username":"user1",...},...],"who"]
 *     ["error",{"type":"exitCode","exitCode":68},"k0"]
 * Dovecot 2.3.19 closes the row array after the first row when there are
 * several ([..., [{row1}], {row2}, {row3}, "tag"]); both shapes are read.
 *
 * Dovecot 2.3.19 also never answers a POST whose key is wrong: the
 * doveadm-server process waits forever on the unread body, and stays.  So
 * every call first checks the key with a bodyless GET of the URL (whose 401
 * comes at once; only the status line and headers are read) and POSTs only
 * with a key the backend accepted.  A call is thus two or three requests.
 *
 * Errors are sentences that start with "doveadm on URL: " and say what to
 * check ("HTTP 401 (wrong backend_doveadm_api_key?)", "timed out after
 * 3000 ms while waiting for the answer", "connection refused").  The text
 * lives in a thread-local buffer: valid until the same thread's next call
 * into this module.
 */
#ifndef DOVEADM_H
#define DOVEADM_H

#include <stddef.h>

/* The largest answer read (bigger ones are an error, not truncated). */
#define DOVEADM_RESPONSE_MAX (16u * 1024 * 1024)
/* Kick commands sent in one HTTP request (more users: more requests). */
#define DOVEADM_KICK_BATCH 500

/* Usernames as Dovecot reports them, sorted (strcmp) and without
 * duplicates.  Free with doveadm_user_list_free(). */
struct doveadm_user_list {
	char **users;
	size_t count;
};
void doveadm_user_list_free(struct doveadm_user_list *list);

/* Expands %{backend} and %{address} in a backend_doveadm_url template into
 * dst: url_template_expand() (util/url_template.h), which says how. */
int doveadm_url_expand(const char *template, const char *backend, const char *address, char *dst,
		       size_t size);

/* The users with a connection (any service) on the backend at url.
 * Returns 0 with *users_r filled (free it), or -1 with *error_r and an
 * empty *users_r. */
int doveadm_who(const char *url, const char *api_key, unsigned timeout_ms,
		struct doveadm_user_list *users_r, const char **error_r);

/* Kicks (Dovecot's "kick": SIGTERM to the processes serving them) every
 * connection of each of users.  *kicked_r = how many of them had
 * connections that were kicked; a user without connections is not an
 * error.  Sent as one "kick" command per user, DOVEADM_KICK_BATCH commands
 * per request.  Returns -1 with *error_r if a request or a command failed;
 * *kicked_r then counts the users kicked before the failure.
 *
 * Dovecot matches a kick mask as a wildcard pattern and reads a mask that
 * parses as an IP address (inet_aton: "12345", "10.1" too) as an IP
 * filter.  So such a username is sent with its last character replaced by
 * "?", and a username containing "*" or "?" is sent as it is: both may also
 * kick a few other users whose names match the pattern - harmless for a
 * move (they log in again), never too few. */
int doveadm_kick(const char *url, const char *api_key, const char *const *users, size_t count,
		 unsigned timeout_ms, unsigned *kicked_r, const char **error_r);

/* who, then kick the users whose hash group (user_hash_group() of the
 * user_normalize()d name, brain/user.h) is group_id; timeout_ms bounds both
 * requests together.
 *
 * Limit: this sees only the hash.  A user with an explicit group override
 * is not known here: one overridden INTO group_id is not kicked, and one
 * whose hash is group_id but who was overridden elsewhere is kicked for
 * nothing.  The caller kicks the overridden users of the group itself with
 * doveadm_kick().  The backend must report the same login name the proxy
 * routes by (a backend that strips domains would hash differently). */
int doveadm_kick_group(const char *url, const char *api_key, unsigned group_count,
		       unsigned group_id, unsigned timeout_ms, unsigned *kicked_r,
		       const char **error_r);

/* ---- the readers of the answers, exposed for the unit tests ---- */

/* Reads the answer to [["who",{},"who"]]: Dovecot's JSON, fully checked
 * (malformed JSON, a wrong shape or an "error" entry are -1 with *error_r,
 * a sentence without the "doveadm on URL: " prefix). */
int doveadm_who_parse(const char *body, size_t len, struct doveadm_user_list *users_r,
		      const char **error_r);
/* Reads the answer to command_count kick commands tagged "k0", "k1", ...:
 * *kicked_r = the commands answered with at least one kicked user; an
 * "error" with exit code 68 (EX_NOTFOUND: nobody to kick) counts as 0. */
int doveadm_kick_parse(const char *body, size_t len, size_t command_count, unsigned *kicked_r,
		       const char **error_r);
/* The kick mask for username (see doveadm_kick()); -1 if it does not fit. */
int doveadm_kick_mask(const char *username, char *dst, size_t size);

#endif
