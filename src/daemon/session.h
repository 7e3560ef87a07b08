/* session.h - a proxied session: a client logged in and relayed to its
 * backend.  The daemon keeps them in a list so `who` can show them and
 * `kick` can end them.  A session is small on purpose: it is most of what
 * an idle connection costs. */
#ifndef SESSION_H
#define SESSION_H

#include <stdint.h>
#include <time.h>

struct daemon;
struct relay;

struct session {
	struct session *prev, *next;
	struct daemon *daemon;
	struct relay *relay;
	char *user; /* normalised */
	unsigned group_id;
	char backend[64];
	char client_ip[46];
	uint16_t client_port;
	const char *protocol; /* static string */
	char session_id[24];
	time_t since;
};

/* Registers a new session for relay (the session owns the relay). */
struct session *session_create(struct daemon *daemon, struct relay *relay, const char *user,
			       unsigned group_id, const char *backend, const char *client_ip,
			       uint16_t client_port, const char *protocol, const char *session_id);
/* The relay_closed_callback of every session's relay. */
void session_relay_closed(void *context, const char *reason);
/* Ends every session of user with the protocol's goodbye; returns how many. */
unsigned session_kick_user(struct daemon *daemon, const char *user, const char *reason);
/* Moves: ends s telling the client to reconnect (its next login lands on
 * the group's new backend).  Frees s now or later, no other session. */
void session_kick_moving(struct session *s, const char *reason);
/* Ends every session (shutdown). */
void session_destroy_all(struct daemon *daemon);

/* A fresh session id (16 characters, unguessable, unique in this process). */
void session_id_generate(struct daemon *daemon, char dst[24]);

#endif
