/* settings.c - the table of settings and its loader; see settings.h.
 *
 * Each row of setting_defs names a key (with its section), a type, where the
 * value goes in struct settings, and its default.  Adding a setting is adding
 * a row; the loader, the defaults and the error messages come from the table.
 */
#include "util/settings.h"

#include "util/config.h"
#include "util/net_util.h"
#include "util/openmetrics.h"
#include "util/url_template.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum setting_type {
	SET_STRING,
	SET_UINT,
	SET_DURATION,
	SET_SIZE,
	SET_ADDR,
	SET_PORT,
	SET_PLAINTEXT_AUTH,
	SET_LOG_LEVEL,
	SET_BOOL,
	SET_LMTP_USERNAME,
};

const char *const listener_names[LISTENER_COUNT] = {
	[LISTENER_IMAP] = "imap",
	[LISTENER_IMAPS] = "imaps",
	[LISTENER_POP3] = "pop3",
	[LISTENER_POP3S] = "pop3s",
	[LISTENER_LMTP] = "lmtp",
	[LISTENER_SIEVE] = "sieve",
	[LISTENER_SUBMISSION] = "submission",
	[LISTENER_SUBMISSIONS] = "submissions",
};

struct setting_def {
	const char *section;
	const char *key;
	enum setting_type type;
	size_t offset;
	const char *default_value; /* NULL: required (strings) or unset */
	unsigned long min, max;    /* for SET_UINT / SET_SIZE */
};

#define OFF(field) offsetof(struct settings, field)

static const struct setting_def setting_defs[] = {
	{"", "site", SET_STRING, OFF(site), NULL, 0, 0},
	{"", "geodb", SET_STRING, OFF(geodb), NULL, 0, 0},
	{"", "localdb", SET_STRING, OFF(localdb), "/dev/shm/mailcluster-localdb.sqlite", 0, 0},
	{"", "localdb_refresh", SET_DURATION, OFF(localdb_refresh_ms), "5s", 0, 0},
	{"", "group_count", SET_UINT, OFF(group_count), "1024", 1, 1000000},
	{"", "log_level", SET_LOG_LEVEL, OFF(log_level), "info", 0, 0},
#define LISTENER(kind, name)                                                                  \
	{"listen", name, SET_ADDR, OFF(listeners[kind].addr), "", 0, 0},                      \
		{"listen/" name, "address", SET_ADDR, OFF(listeners[kind].addr), NULL, 0, 0}, \
	{                                                                                     \
		"listen/" name, "haproxy", SET_BOOL, OFF(listeners[kind].haproxy), "no", 0, 0 \
	}
	LISTENER(LISTENER_IMAP, "imap"),
	LISTENER(LISTENER_IMAPS, "imaps"),
	LISTENER(LISTENER_POP3, "pop3"),
	LISTENER(LISTENER_POP3S, "pop3s"),
	LISTENER(LISTENER_LMTP, "lmtp"),
	LISTENER(LISTENER_SIEVE, "sieve"),
	LISTENER(LISTENER_SUBMISSION, "submission"),
	LISTENER(LISTENER_SUBMISSIONS, "submissions"),
	{"", "haproxy_trusted_networks", SET_STRING, OFF(haproxy_trusted_networks), "", 0, 0},
	{"", "login_trusted_networks", SET_STRING, OFF(login_trusted_networks), "", 0, 0},
	{"", "site_direct_backends", SET_BOOL, OFF(site_direct_backends), "no", 0, 0},
	{"", "haproxy_timeout", SET_DURATION, OFF(haproxy_timeout_ms), "3s", 0, 0},
	{"backend_port", "imap", SET_PORT, OFF(backend_port_imap), "143", 0, 0},
	{"backend_port", "pop3", SET_PORT, OFF(backend_port_pop3), "110", 0, 0},
	{"backend_port", "lmtp", SET_PORT, OFF(backend_port_lmtp), "24", 0, 0},
	{"backend_port", "sieve", SET_PORT, OFF(backend_port_sieve), "4190", 0, 0},
	{"backend_port", "submission", SET_PORT, OFF(backend_port_submission), "587", 0, 0},
	{"", "lmtp_username", SET_LMTP_USERNAME, OFF(lmtp_username), "address", 0, 0},
	{"", "lmtp_message_max", SET_SIZE, OFF(lmtp_message_max), "64M", 1024, 2147483647},
	{"", "lmtp_recipients_max", SET_UINT, OFF(lmtp_recipients_max), "100", 1, 100000},
	{"", "submission_hostname", SET_STRING, OFF(submission_hostname), "", 0, 0},
	{"", "tls_cert", SET_STRING, OFF(tls_cert), "", 0, 0},
	{"", "tls_key", SET_STRING, OFF(tls_key), "", 0, 0},
	{"", "plaintext_auth", SET_PLAINTEXT_AUTH, OFF(plaintext_auth), "tls", 0, 0},
	{"", "admin_listen", SET_ADDR, OFF(admin_listen), "", 0, 0},
	{"", "proxy_timeout", SET_DURATION, OFF(proxy_timeout_ms), "30s", 0, 0},
	{"", "proxy_connect_retry", SET_DURATION, OFF(proxy_connect_retry_ms), "1s", 0, 0},
	{"", "prelogin_line_max", SET_SIZE, OFF(prelogin_line_max), "8k", 512, 1024 * 1024},
	{"", "prelogin_timeout", SET_DURATION, OFF(prelogin_timeout_ms), "60s", 0, 0},
	{"", "auth_failures_max", SET_UINT, OFF(auth_failures_max), "3", 1, 1000},
	{"", "bad_commands_max", SET_UINT, OFF(bad_commands_max), "10", 1, 1000},
	{"", "client_limit", SET_UINT, OFF(client_limit), "100000", 1, 10000000},
	{"", "relay_buffer_max", SET_SIZE, OFF(relay_buffer_max), "256k", 4096, 64 * 1024 * 1024},
	{"", "probe_interval", SET_DURATION, OFF(probe_interval_ms), "2s", 0, 0},
	{"", "probe_timeout", SET_DURATION, OFF(probe_timeout_ms), "3s", 0, 0},
	{"", "controller_lease", SET_DURATION, OFF(controller_lease_ms), "10s", 0, 0},
	{"", "backend_test_username", SET_STRING, OFF(backend_test_username), "", 0, 0},
	{"", "backend_test_password", SET_STRING, OFF(backend_test_password), "", 0, 0},
	{"", "backend_failover_delay", SET_DURATION, OFF(backend_failover_delay_ms), "30s", 0, 0},
	{"", "backend_recovery_delay", SET_DURATION, OFF(backend_recovery_delay_ms), "30s", 0, 0},
	{"", "move_timeout", SET_DURATION, OFF(move_timeout_ms), "30s", 0, 0},
	{"", "move_rate", SET_UINT, OFF(move_rate), "1", 1, 10000},
	{"", "backend_doveadm_url", SET_STRING, OFF(backend_doveadm_url), "", 0, 0},
	{"", "backend_doveadm_api_key", SET_STRING, OFF(backend_doveadm_api_key), "", 0, 0},
	{"", "backend_metrics_url", SET_STRING, OFF(backend_metrics_url), "", 0, 0},
	{"", "metrics_interval", SET_DURATION, OFF(metrics_interval_ms), "15s", 0, 0},
	{"", "metrics_min_samples", SET_UINT, OFF(metrics_min_samples), "5", 1,
	 METRICS_AVERAGE_MAX},
	{"", "move_hook", SET_STRING, OFF(move_hook), "", 0, 0},
	{"", "move_hook_timeout", SET_DURATION, OFF(move_hook_timeout_ms), "30s", 0, 0},
	{"", "balance", SET_STRING, OFF(balance), "on", 0, 0},
	{"", "balance_interval", SET_DURATION, OFF(balance_interval_ms), "60s", 0, 0},
	{"", "balance_max_moves", SET_UINT, OFF(balance_max_moves), "10", 0, 100000},
	{"", "balance_hysteresis", SET_UINT, OFF(balance_hysteresis), "10", 1, 100},
	{"", "group_min_stay", SET_DURATION, OFF(group_min_stay_ms), "1h", 0, 0},
	{"", "metacache_ttl", SET_DURATION, OFF(metacache_ttl_ms), "1d", 0, 0},
	{"", "site_reachability_timeout", SET_DURATION, OFF(site_reachability_timeout_ms), "30s", 0,
	 0},
	{"", "site_failover_delay", SET_DURATION, OFF(site_failover_delay_ms), "5m", 0, 0},
	{"", "site_failover_rate", SET_UINT, OFF(site_failover_rate), "10", 0, 100000},
	{"", "site_failback_delay", SET_DURATION, OFF(site_failback_delay_ms), "30m", 0, 0},
};

static char settings_error[768];

static int fail(const char **error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(settings_error, sizeof(settings_error), fmt, args);
	va_end(args);
	*error_r = settings_error;
	return -1;
}

int settings_parse_duration(const char *value, unsigned *ms_r)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(value, &end, 10);
	if (end == value || errno != 0 || *value == '-')
		return -1;
	while (*end == ' ')
		end++;
	unsigned long long mult;
	if (*end == '\0' || strcmp(end, "s") == 0 || strcmp(end, "sec") == 0 ||
	    strcmp(end, "secs") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0 || strcmp(end, "msec") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0 || strcmp(end, "mins") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0 || strcmp(end, "hour") == 0 || strcmp(end, "hours") == 0)
		mult = 3600 * 1000;
	else if (strcmp(end, "d") == 0 || strcmp(end, "day") == 0 || strcmp(end, "days") == 0)
		mult = 86400 * 1000;
	else
		return -1;
	if (n > UINT_MAX / mult)
		return -1;
	*ms_r = (unsigned)(n * mult);
	return 0;
}

int settings_parse_size(const char *value, size_t *bytes_r)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(value, &end, 10);
	if (end == value || errno != 0 || *value == '-')
		return -1;
	unsigned long long mult = 1;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		break;
	case 'k':
		mult = 1024;
		end++;
		break;
	case 'm':
		mult = 1024 * 1024;
		end++;
		break;
	case 'g':
		mult = 1024ULL * 1024 * 1024;
		end++;
		break;
	default:
		return -1;
	}
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || n > SIZE_MAX / mult)
		return -1;
	*bytes_r = (size_t)(n * mult);
	return 0;
}

static int parse_port(const char *value, int *port_r)
{
	char *end;
	errno = 0;
	long port = strtol(value, &end, 10);
	if (end == value || *end != '\0' || errno != 0 || port < 1 || port > 65535)
		return -1;
	*port_r = (int)port;
	return 0;
}

int settings_parse_addr(const char *value, struct listen_addr *addr_r)
{
	const char *colon;
	const char *host = value;
	size_t host_len;
	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		host = value + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(value, ':');
		if (colon == NULL)
			return -1;
		host_len = (size_t)(colon - value);
	}
	if (host_len == 0 || host_len >= sizeof(addr_r->host))
		return -1;
	if (parse_port(colon + 1, &addr_r->port) < 0)
		return -1;
	memcpy(addr_r->host, host, host_len);
	addr_r->host[host_len] = '\0';
	return 0;
}

static const char *const type_expectations[] = {
	[SET_STRING] = "a string",
	[SET_UINT] = "a whole number",
	[SET_DURATION] = "a duration such as 30s, 500ms, 2m or 1h",
	[SET_SIZE] = "a size such as 8192, 8k or 1M",
	[SET_ADDR] = "ADDRESS:PORT, e.g. 127.0.0.1:143",
	[SET_PORT] = "a port number 1..65535",
	[SET_PLAINTEXT_AUTH] = "'tls' or 'always'",
	[SET_LOG_LEVEL] = "debug, info, warning or error",
	[SET_BOOL] = "yes or no",
	[SET_LMTP_USERNAME] = "'address' or 'localpart'",
};

static int apply(struct settings *set, const struct setting_def *def, const char *value)
{
	void *field = (char *)set + def->offset;
	switch (def->type) {
	case SET_STRING:
	case SET_LOG_LEVEL:
		if (def->type == SET_LOG_LEVEL && strcmp(value, "debug") != 0 &&
		    strcmp(value, "info") != 0 && strcmp(value, "warning") != 0 &&
		    strcmp(value, "error") != 0)
			return -1;
		free(*(char **)field);
		*(char **)field = strdup(value);
		return 0;
	case SET_UINT: {
		char *end;
		errno = 0;
		unsigned long n = strtoul(value, &end, 10);
		if (end == value || *end != '\0' || errno != 0 || *value == '-' || n < def->min ||
		    n > def->max)
			return -1;
		*(unsigned *)field = (unsigned)n;
		return 0;
	}
	case SET_DURATION:
		return settings_parse_duration(value, (unsigned *)field);
	case SET_SIZE: {
		size_t n;
		if (settings_parse_size(value, &n) < 0 || n < def->min || n > def->max)
			return -1;
		*(size_t *)field = n;
		return 0;
	}
	case SET_ADDR:
		if (*value == '\0') {
			memset(field, 0, sizeof(struct listen_addr));
			return 0;
		}
		return settings_parse_addr(value, (struct listen_addr *)field);
	case SET_PORT:
		return parse_port(value, (int *)field);
	case SET_BOOL:
		if (strcmp(value, "yes") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "no") == 0)
			*(bool *)field = false;
		else
			return -1;
		return 0;
	case SET_LMTP_USERNAME:
		if (strcmp(value, "address") == 0)
			*(enum lmtp_username *)field = LMTP_USERNAME_ADDRESS;
		else if (strcmp(value, "localpart") == 0)
			*(enum lmtp_username *)field = LMTP_USERNAME_LOCALPART;
		else
			return -1;
		return 0;
	case SET_PLAINTEXT_AUTH:
		if (strcmp(value, "tls") == 0)
			*(enum plaintext_auth *)field = PLAINTEXT_AUTH_TLS;
		else if (strcmp(value, "always") == 0)
			*(enum plaintext_auth *)field = PLAINTEXT_AUTH_ALWAYS;
		else
			return -1;
		return 0;
	}
	return -1;
}

/* The length of backend_test_username once every %{backend} in it is
 * replaced by a backend name of the longest kind. */
static size_t test_username_max_len(const char *username)
{
	static const char variable[] = "%{backend}";
	size_t len = strlen(username);
	for (const char *p = strstr(username, variable); p != NULL;
	     p = strstr(p + sizeof(variable) - 1, variable))
		len += 63 - (sizeof(variable) - 1); /* object names have at most 63 bytes */
	return len;
}

static int valid_object_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 63)
		return 0;
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return 0;
	}
	return 1;
}

int settings_load(const char *path, struct settings **set_r, const char **error_r)
{
	struct config *config;
	if (config_parse_file(path, &config, error_r) < 0)
		return -1;

	struct settings *set = calloc(1, sizeof(*set));
	const size_t ndefs = sizeof(setting_defs) / sizeof(setting_defs[0]);
	for (size_t i = 0; i < ndefs; i++) {
		if (setting_defs[i].default_value != NULL &&
		    apply(set, &setting_defs[i], setting_defs[i].default_value) < 0)
			abort(); /* a broken default is a bug in the table */
	}
	int ret = 0;
	unsigned line_seen[sizeof(setting_defs) / sizeof(setting_defs[0])] = {0};
	for (size_t i = 0; i < config->count && ret == 0; i++) {
		const struct config_entry *e = &config->entries[i];
		const struct setting_def *def = NULL;
		size_t d;
		for (d = 0; d < ndefs; d++) {
			if (strcmp(setting_defs[d].section, e->section) == 0 &&
			    strcmp(setting_defs[d].key, e->key) == 0) {
				def = &setting_defs[d];
				break;
			}
		}
		if (def == NULL) {
			if (e->section[0] != '\0')
				ret = fail(error_r, "%s:%u: unknown setting '%s' in section '%s'",
					   path, e->line, e->key, e->section);
			else
				ret = fail(error_r, "%s:%u: unknown setting '%s'", path, e->line,
					   e->key);
			break;
		}
		if (line_seen[d] != 0) {
			ret = fail(error_r, "%s:%u: '%s' is already set on line %u", path, e->line,
				   e->key, line_seen[d]);
			break;
		}
		line_seen[d] = e->line;
		if (apply(set, def, e->value) < 0) {
			if (def->type == SET_UINT || def->type == SET_SIZE)
				ret = fail(error_r,
					   "%s:%u: invalid value '%s' for '%s': expected %s from "
					   "%lu to %lu",
					   path, e->line, e->value, e->key,
					   type_expectations[def->type], def->min, def->max);
			else
				ret = fail(error_r,
					   "%s:%u: invalid value '%s' for '%s': expected %s", path,
					   e->line, e->value, e->key, type_expectations[def->type]);
		}
	}
	config_free(&config);
	if (ret == 0) {
		if (set->site == NULL)
			ret = fail(error_r,
				   "%s: missing required setting 'site' (the name of this host's "
				   "site)",
				   path);
		else if (!valid_object_name(set->site))
			ret = fail(error_r,
				   "%s: invalid site name '%s': expected 1-63 letters, digits, "
				   "'-', '_' or '.'",
				   path, set->site);
		else if (set->geodb == NULL)
			ret = fail(error_r,
				   "%s: missing required setting 'geodb' (e.g. geodb = "
				   "sqlite:/var/lib/mailcluster/geodb.sqlite)",
				   path);
		else if ((strncmp(set->geodb, "sqlite:", 7) != 0 || set->geodb[7] == '\0') &&
			 (strncmp(set->geodb, "cassandra:", 10) != 0 || set->geodb[10] == '\0'))
			ret = fail(error_r,
				   "%s: invalid value '%s' for 'geodb': expected sqlite:PATH or "
				   "cassandra:hosts=H1,H2;keyspace=K;...",
				   path, set->geodb);
		else if (set->localdb_refresh_ms < 100)
			ret = fail(error_r, "%s: localdb_refresh must be at least 100ms", path);
		else if (set->probe_interval_ms < 100 || set->probe_timeout_ms < 100)
			ret = fail(error_r,
				   "%s: probe_interval and probe_timeout must be 100ms or more",
				   path);
		else if (set->controller_lease_ms < 2000 || set->controller_lease_ms > 3600 * 1000)
			ret = fail(error_r,
				   "%s: controller_lease must be between 2s and 1h, not %ums", path,
				   set->controller_lease_ms);
		else if ((set->backend_test_username[0] == '\0') !=
			 (set->backend_test_password[0] == '\0'))
			ret = fail(
				error_r,
				"%s: backend_test_username and backend_test_password must be set "
				"together",
				path);
		else if (strpbrk(set->backend_test_username, "\r\n") != NULL ||
			 strpbrk(set->backend_test_password, "\r\n") != NULL ||
			 test_username_max_len(set->backend_test_username) >
				 SETTINGS_TEST_CREDENTIAL_MAX ||
			 strlen(set->backend_test_password) > SETTINGS_TEST_CREDENTIAL_MAX)
			ret = fail(error_r,
				   "%s: backend_test_username and backend_test_password must be at "
				   "most %d bytes (the username with %%{backend} expanded to a "
				   "63-byte name) without CR or LF",
				   path, SETTINGS_TEST_CREDENTIAL_MAX);
		else if ((set->tls_cert[0] == '\0') != (set->tls_key[0] == '\0'))
			ret = fail(error_r, "%s: tls_cert and tls_key must be set together", path);
		else if (set->backend_failover_delay_ms < 1000 || set->backend_recovery_delay_ms < 1000)
			ret = fail(error_r,
				   "%s: backend_failover_delay and backend_recovery_delay must be "
				   "1s or more",
				   path);
		else if (set->move_timeout_ms < 1000)
			ret = fail(error_r, "%s: move_timeout must be 1s or more", path);
		else if (strcmp(set->balance, "on") != 0 && strcmp(set->balance, "dryrun") != 0 &&
			 strcmp(set->balance, "off") != 0)
			ret = fail(error_r, "%s: invalid value '%s' for 'balance': expected on, dryrun or off",
				   path, set->balance);
		else if (set->balance_interval_ms < 1000)
			ret = fail(error_r, "%s: balance_interval must be 1s or more", path);
		else if (set->backend_doveadm_url[0] != '\0' &&
			 strncmp(set->backend_doveadm_url, "http://", 7) != 0)
			ret = fail(error_r,
				   "%s: backend_doveadm_url must start with http:// (e.g. "
				   "http://%%{address}:8080/doveadm/v1), not '%s'",
				   path, set->backend_doveadm_url);
		else if ((set->backend_doveadm_url[0] == '\0') !=
			 (set->backend_doveadm_api_key[0] == '\0'))
			ret = fail(error_r,
				   "%s: backend_doveadm_url and backend_doveadm_api_key must be set "
				   "together",
				   path);
		else if (set->backend_metrics_url[0] != '\0' &&
			 strncmp(set->backend_metrics_url, "http://", 7) != 0)
			ret = fail(error_r,
				   "%s: backend_metrics_url must start with http:// (e.g. "
				   "http://%%{address}:9100/metrics), not '%s'",
				   path, set->backend_metrics_url);
		else if (url_template_check(set->backend_metrics_url) < 0)
			ret = fail(error_r,
				   "%s: backend_metrics_url '%s' may only use %%{backend} and "
				   "%%{address}",
				   path, set->backend_metrics_url);
		else if (set->metrics_interval_ms < 1000)
			ret = fail(error_r, "%s: metrics_interval must be 1s or more", path);
		else if (set->site_reachability_timeout_ms < 2 * set->probe_interval_ms)
			ret = fail(error_r,
				   "%s: site_reachability_timeout (%ums) must be at least twice "
				   "probe_interval (%ums): a site's controller writes its heartbeat "
				   "once a probe_interval",
				   path, set->site_reachability_timeout_ms, set->probe_interval_ms);
		else if (set->site_failover_delay_ms < 1000)
			ret = fail(error_r, "%s: site_failover_delay must be 1s or more", path);
		else {
			static const enum listener_kind implicit_tls[] = {
				LISTENER_IMAPS, LISTENER_POP3S, LISTENER_SUBMISSIONS};
			for (size_t i = 0; i < 3 && ret == 0; i++) {
				if (set->listeners[implicit_tls[i]].addr.port != 0 &&
				    set->tls_cert[0] == '\0')
					ret = fail(error_r,
						   "%s: listen %s needs tls_cert and tls_key", path,
						   listener_names[implicit_tls[i]]);
			}
			struct net_network *networks = NULL;
			size_t network_count;
			const char *net_error;
			if (ret == 0 && net_networks_parse(set->haproxy_trusted_networks, &networks,
							   &network_count, &net_error) < 0)
				ret = fail(error_r, "%s: invalid haproxy_trusted_networks: %s",
					   path, net_error);
			free(networks);
			networks = NULL;
			if (ret == 0 && net_networks_parse(set->login_trusted_networks, &networks,
							   &network_count, &net_error) < 0)
				ret = fail(error_r, "%s: invalid login_trusted_networks: %s", path,
					   net_error);
			free(networks);
			for (int k = 0; k < LISTENER_COUNT && ret == 0; k++) {
				if (set->listeners[k].haproxy &&
				    set->haproxy_trusted_networks[0] == '\0')
					ret = fail(error_r,
						   "%s: listen %s has haproxy = yes but "
						   "haproxy_trusted_networks is empty: every "
						   "connection would be refused",
						   path, listener_names[k]);
			}
		}
	}
	if (ret < 0) {
		settings_free(&set);
		return -1;
	}
	*set_r = set;
	return 0;
}

void settings_free(struct settings **_set)
{
	struct settings *set = *_set;
	if (set == NULL)
		return;
	const size_t ndefs = sizeof(setting_defs) / sizeof(setting_defs[0]);
	for (size_t i = 0; i < ndefs; i++) {
		if (setting_defs[i].type == SET_STRING || setting_defs[i].type == SET_LOG_LEVEL)
			free(*(char **)((char *)set + setting_defs[i].offset));
	}
	free(set);
	*_set = NULL;
}
