/* settings.h - every mailcluster setting, its type, default and limits.
 *
 * settings_load() reads a configuration file (config.h syntax), checks each
 * key against the table in settings.c and refuses the whole file at the first
 * unknown key, bad value or missing required key, naming FILE:LINE and what
 * was expected.  Both the daemon and the CLI use it, so they can never
 * disagree about what a file means.
 */
#ifndef SETTINGS_H
#define SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

enum plaintext_auth { PLAINTEXT_AUTH_TLS, PLAINTEXT_AUTH_ALWAYS };
enum lmtp_username { LMTP_USERNAME_ADDRESS, LMTP_USERNAME_LOCALPART };

/* The listeners, named as Dovecot names its services. */
enum listener_kind {
	LISTENER_IMAP,
	LISTENER_IMAPS,
	LISTENER_POP3,
	LISTENER_POP3S,
	LISTENER_LMTP,
	LISTENER_SIEVE,
	LISTENER_SUBMISSION,
	LISTENER_SUBMISSIONS,
	LISTENER_COUNT
};
extern const char *const listener_names[LISTENER_COUNT];

/* An ADDR:PORT listener address; port 0 = not configured. */
struct listen_addr {
	char host[64];
	int port;
};

struct settings {
	char *site;
	char *geodb;   /* "sqlite:PATH" */
	char *localdb; /* this host's cache; "" = keep it in memory only */
	unsigned localdb_refresh_ms; /* how stale the LocalDB may get */
	unsigned group_count;
	char *log_level;

	/* listen { imap = ADDR:PORT } or listen { imap { address = ADDR:PORT
	 * haproxy = yes } } */
	struct listener_settings {
		struct listen_addr addr;
		bool haproxy; /* expects a PROXY protocol header first */
	} listeners[LISTENER_COUNT];
	char *haproxy_trusted_networks; /* who may send a PROXY header */
	/* who may forward a client (IMAP ID x-originating-ip, XCLIENT, and
	 * x-mailcluster-hops / HOPS= from another site's daemon); their
	 * connections also count as secured for plaintext logins */
	char *login_trusted_networks;
	/* sites: connect to another site's backends directly instead of
	 * through that site's load balancer */
	bool site_direct_backends;
	int backend_port_imap, backend_port_pop3, backend_port_lmtp, backend_port_sieve,
		backend_port_submission;
	enum lmtp_username lmtp_username; /* route LMTP by the address or its local part */
	char *submission_hostname;        /* our name in SMTP greetings */

	char *tls_cert, *tls_key;
	enum plaintext_auth plaintext_auth;
	struct listen_addr admin_listen;

	/* limits and timeouts */
	unsigned proxy_timeout_ms;       /* connect + login at the backend */
	unsigned proxy_connect_retry_ms; /* wait between connect attempts */
	size_t prelogin_line_max;        /* one pre-login command incl. literals */
	unsigned prelogin_timeout_ms;    /* idle time before login completes */
	unsigned auth_failures_max;      /* failed logins per connection */
	unsigned bad_commands_max;       /* pre-login protocol errors per connection */
	unsigned client_limit;           /* concurrent client connections */
	unsigned relay_buffer_max;       /* bytes buffered per direction (TLS relay) */
	size_t lmtp_message_max;         /* largest message LMTP accepts */
	unsigned lmtp_recipients_max;    /* recipients per LMTP transaction */
	unsigned haproxy_timeout_ms;     /* to receive the PROXY header */

	/* the backend prober (daemon/prober.h) */
	unsigned probe_interval_ms; /* between the starts of two probes of a backend */
	unsigned probe_timeout_ms;  /* connect + greeting + test login */

	/* the controller lease (daemon/controller.h): its TTL */
	unsigned controller_lease_ms;
	/* "" = no test login; "%{backend}" in the username is the backend's name */
	char *backend_test_username, *backend_test_password;

	/* health and failover (brain/health.h, brain/failover.h) */
	unsigned backend_failover_delay_ms;
	unsigned backend_recovery_delay_ms;
	/* moves (brain/move.h) */
	unsigned move_timeout_ms;
	unsigned move_rate; /* groups per second started by evacuate */
	/* Dovecot's doveadm HTTP API on each backend: "" = no kicks there;
	 * %{backend} and %{address} expand ("http://%{address}:8080/doveadm/v1") */
	char *backend_doveadm_url, *backend_doveadm_api_key;
	/* each backend host's node_exporter (util/openmetrics.h,
	 * net/metrics_scrape.h): "" = no resource figures; %{backend} and
	 * %{address} expand ("http://%{address}:9100/metrics") */
	char *backend_metrics_url;
	unsigned metrics_interval_ms; /* between two scrapes of a backend */
	unsigned metrics_min_samples; /* averaged samples before they count */
	/* a shell command run before a move switches (%{user} %{group} %{from}
	 * %{to}); "" = none */
	char *move_hook;
	unsigned move_hook_timeout_ms;

	/* load balancing (brain/balance.h) */
	char *balance;                /* "on", "dryrun" or "off" */
	unsigned balance_interval_ms;
	unsigned balance_max_moves;
	unsigned balance_hysteresis;  /* percent over target */
	unsigned group_min_stay_ms;
	unsigned metacache_ttl_ms;
	/* another site is unreachable when its newest heartbeat is older */
	unsigned site_reachability_timeout_ms;
	/* site failover (brain/site.h): a site unreachable from every live
	 * site this long is failed over, at site_failover_rate groups a
	 * second (0: no cell is written or released), and failed back once
	 * reachable this long */
	unsigned site_failover_delay_ms;
	unsigned site_failover_rate;
	unsigned site_failback_delay_ms;
};

/* The longest backend_test_username (once %{backend} is expanded) and
 * backend_test_password. */
#define SETTINGS_TEST_CREDENTIAL_MAX 255

/* Loads and validates path.  On error returns -1 and error_r is a sentence
 * naming the file, the line and what was expected. */
int settings_load(const char *path, struct settings **set_r, const char **error_r);
void settings_free(struct settings **set);

/* Parses "30s", "500ms", "2m", "1h", "1d" or plain seconds. */
int settings_parse_duration(const char *value, unsigned *ms_r);
/* Parses "8192", "8k", "1M". */
int settings_parse_size(const char *value, size_t *bytes_r);
/* Parses "HOST:PORT" (IPv4 or a name; "[v6]:port" for IPv6). */
int settings_parse_addr(const char *value, struct listen_addr *addr_r);

#endif
