/* session.c - see session.h. */
#include "daemon/session.h"

#include "daemon/daemon.h"
#include "net/relay.h"
#include "util/hash.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

struct session *session_create(struct daemon *daemon, struct relay *relay, const char *user,
			       unsigned group_id, const char *backend, const char *client_ip,
			       uint16_t client_port, const char *protocol, const char *session_id)
{
	struct session *s = calloc(1, sizeof(*s));
	s->daemon = daemon;
	s->relay = relay;
	s->user = strdup(user);
	s->group_id = group_id;
	strncpy(s->backend, backend, sizeof(s->backend) - 1);
	strncpy(s->client_ip, client_ip, sizeof(s->client_ip) - 1);
	s->client_port = client_port;
	s->protocol = protocol;
	strncpy(s->session_id, session_id, sizeof(s->session_id) - 1);
	s->since = time(NULL);
	if (group_id < daemon->set->group_count) {
		daemon->group_sessions[group_id]++;
		daemon->group_logins[group_id]++;
	}
	s->next = daemon->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	daemon->sessions = s;
	daemon->session_count++;
	return s;
}

static void session_destroy(struct session *s, const char *reason)
{
	struct daemon *daemon = s->daemon;
	struct relay_stats stats;
	relay_get_stats(s->relay, &stats);
	daemon->metrics.bytes_client_to_backend += stats.bytes_client_to_backend;
	daemon->metrics.bytes_backend_to_client += stats.bytes_backend_to_client;
	daemon->metrics.sessions_ended++;
	log_info(
		"event=session_end protocol=%s user=%s group=%u backend=%s client=%s:%u session=%s "
		"duration=%lds bytes_in=%llu bytes_out=%llu reason=\"%s\"",
		s->protocol, s->user, s->group_id, s->backend, s->client_ip, s->client_port,
		s->session_id, (long)(time(NULL) - s->since),
		(unsigned long long)stats.bytes_client_to_backend,
		(unsigned long long)stats.bytes_backend_to_client,
		reason != NULL ? reason : "closed");
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		daemon->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	daemon->session_count--;
	daemon->client_count--;
	if (s->group_id < daemon->set->group_count)
		daemon->group_sessions[s->group_id]--;
	relay_destroy(&s->relay);
	free(s->user);
	free(s);
}

void session_relay_closed(void *context, const char *reason)
{
	session_destroy(context, reason);
}

/* The goodbye when a session's group moves to another backend: the client
 * is told to come back (it will land on the new backend). */
static const char *goodbye_moving(const char *protocol)
{
	if (strcmp(protocol, "imap") == 0)
		return "* BYE [UNAVAILABLE] Your mailbox is moving to another server, please "
		       "reconnect.\r\n";
	if (strcmp(protocol, "submission") == 0)
		return "421 4.3.2 Mailbox moving to another server, please reconnect\r\n";
	if (strcmp(protocol, "pop3") == 0)
		return "-ERR [IN-USE] Your mailbox is moving to another server, please "
		       "reconnect.\r\n";
	if (strcmp(protocol, "sieve") == 0)
		return "BYE \"Your mailbox is moving to another server, please reconnect.\"\r\n";
	return NULL;
}

static const char *goodbye(const char *protocol)
{
	if (strcmp(protocol, "imap") == 0)
		return "* BYE Disconnected by the administrator.\r\n";
	if (strcmp(protocol, "submission") == 0)
		return "421 4.3.2 Disconnected by the administrator\r\n";
	if (strcmp(protocol, "pop3") == 0)
		return "-ERR Disconnected by the administrator.\r\n";
	if (strcmp(protocol, "sieve") == 0)
		return "BYE \"Disconnected by the administrator.\"\r\n";
	return NULL;
}

unsigned session_kick_user(struct daemon *daemon, const char *user, const char *reason)
{
	unsigned count = 0;
	struct session *s = daemon->sessions, *next;
	for (; s != NULL; s = next) {
		next = s->next;
		if (strcmp(s->user, user) != 0)
			continue;
		count++;
		daemon->metrics.sessions_kicked++;
		/* relay_kick ends the relay now or once the backend is quiet;
		 * either way session_relay_closed frees s, maybe right here */
		relay_kick(s->relay, goodbye(s->protocol), reason);
	}
	return count;
}

void session_kick_moving(struct session *s, const char *reason)
{
	s->daemon->metrics.sessions_kicked++;
	relay_kick(s->relay, goodbye_moving(s->protocol), reason);
}

void session_destroy_all(struct daemon *daemon)
{
	while (daemon->sessions != NULL)
		session_destroy(daemon->sessions, "daemon shutting down");
}

void session_id_generate(struct daemon *daemon, char dst[24])
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint64_t counter = ++daemon->id_counter;
	uint64_t h = hash_fnv1a64_add(daemon->id_key, &counter, sizeof(counter));
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	uint64_t h2 = hash_fnv1a64_add(h, &daemon->id_key, sizeof(daemon->id_key));
	for (int i = 0; i < 16; i++) {
		uint64_t src = i < 8 ? h : h2;
		dst[i] = alphabet[(src >> ((i % 8) * 6)) & 63];
	}
	dst[16] = '\0';
}
