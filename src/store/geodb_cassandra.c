/* geodb_cassandra.c - the distributed GeoDB driver: Apache Cassandra over
 * our own asynchronous CQL v4 client (cql_client.h).
 *
 * Spec (after "cassandra:"), semicolon-separated key=value:
 *   hosts=H1,H2[:PORT]  (required)     port=9042
 *   keyspace=mailcluster ([a-z0-9_]{1,48})
 *   local_dc=dc1   username=U   password=P | password_file=FILE (first line)
 *   tls=yes|no   tls_ca=FILE (implies tls; verify against it)   tls_verify=yes|no
 *   consistency=local_quorum   serial_consistency=serial|local_serial
 *   page_size=1000   connect_timeout=2000ms   request_timeout=5s
 *   connections=2 (per node)   replication=dc1:3,dc2:3 (for geodb init)
 *
 * Synchronous calls run on a private event base with a client of their own
 * (created on first use) and block in cql_client_wait().  geodb_attach()
 * creates a second client on the daemon's base for the asynchronous calls.
 *
 * Meaning, the same as the SQLite driver's (tests/geodb/conformance.c):
 * every uniqueness rule is a lightweight transaction (INSERT ... IF NOT
 * EXISTS, UPDATE ... IF EXISTS / IF col = ?) at the serial consistency, and a
 * transaction that was not applied returns the row that won, which is what
 * the caller gets (where Cassandra returns only the condition's columns, a
 * read at the serial consistency fetches the row: group_cas, group_set, the
 * claim of an unassigned group).
 * Tables that are read whole (groups, users, ...) are read in pages.  Lists
 * come out sorted like SQLite's (geodb_sort_*()).  Health observations,
 * move acknowledgements and group loads expire by USING TTL.
 *
 * A group's history and moved_at are computed from the row as it is
 * (geodb_group_switch()): group_set and group_cas read it first and make
 * their write conditional on its epoch, and every write that changes a
 * group's backend raises the epoch, so the history written follows from
 * the row it replaces.  Removing a backend keeps its groups' rows,
 * unassigned (backend ''), so that their history remembers it; an
 * assignment (INSERT ... IF NOT EXISTS) that finds such a row claims it
 * with a second conditional write (see ASSIGN_INSERT below).
 *
 * Group loads, many rows per call, are prepared inserts pipelined on the
 * connection pool (LOAD_PUT_WINDOW in flight).
 *
 * The schema is versioned (meta.schema_version) and created by geodb_init(),
 * which also upgrades an older keyspace (schema_versions: CREATE TABLE IF NOT
 * EXISTS, ALTER TABLE ADD IF NOT EXISTS), and runs the statements of the
 * version it finds again (columns added to that version before its
 * release); every other call refuses a keyspace without it, or at an
 * older version.
 */
#include "store/cql_client.h"
#include "store/geodb_driver.h"
#include "util/log.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define KEYSPACE_MAX_LEN 48
#define SNAP_PARTS 7
/* The snapshot's second phase, the heartbeat rows its failover cells need:
 * at most this many range queries (see snap_heartbeat_ranges()) */
#define SNAP_HEARTBEAT_QUERIES_MAX 64
#define LWT_MAX_COLS 16
#define ROW_MAX_COLS 16 /* the widest SELECT below */
#define GROUP_SET_ATTEMPTS 8
/* An assignment's INSERT ... IF NOT EXISTS that failed with a write timeout
 * has an unknown outcome.  When it came back at once, it was contention, not
 * a slow replica: two proxies met the same new group at the same moment and
 * our proposal was accepted by only part of the replicas (Cassandra answers
 * that with a WRITE_TIMEOUT of type CAS right away, before any timeout).
 * Sending the same insert again is safe and tells: applied, or the row that
 * won (ours, if the first try got in after all).  A write timeout that took
 * its time (a replica gone) is not retried: the login hears UNAVAILABLE as
 * soon as before. */
#define ASSIGN_ATTEMPTS 3
#define ASSIGN_RETRY_WITHIN_MS 1000 /* since the first try */
#define LEASE_ATTEMPTS 5
/* group_load_put: inserts in flight at once (the client queues beyond its
 * streams; this keeps a large report from filling the queue) */
#define LOAD_PUT_WINDOW 64

/* ---- the spec ---- */

struct cass_spec {
	char **hosts;
	unsigned host_count;
	unsigned port;
	char keyspace[KEYSPACE_MAX_LEN + 1];
	char *local_dc;
	char *username;
	char *password;
	bool tls;
	char *tls_ca;
	bool tls_verify;
	bool tls_verify_set;
	enum cql_consistency consistency;
	enum cql_consistency serial_consistency;
	unsigned page_size;
	unsigned connect_timeout_ms;
	unsigned request_timeout_ms; /* 0: not given */
	unsigned connections;
	char *replication; /* "'dc1': 3, 'dc2': 3", or NULL: discover */
};

static void spec_free(struct cass_spec *spec)
{
	for (unsigned i = 0; i < spec->host_count; i++)
		free(spec->hosts[i]);
	free(spec->hosts);
	free(spec->local_dc);
	free(spec->username);
	if (spec->password != NULL) {
		explicit_bzero(spec->password, strlen(spec->password));
		free(spec->password);
	}
	free(spec->tls_ca);
	free(spec->replication);
	memset(spec, 0, sizeof(*spec));
}

static int spec_fail(char *err, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int spec_fail(char *err, size_t size, const char *fmt, ...)
{
	int n = snprintf(err, size, "geodb: cassandra spec: ");
	va_list args;
	va_start(args, fmt);
	vsnprintf(err + n, size - (size_t)n, fmt, args);
	va_end(args);
	return -1;
}

static int parse_uint(const char *text, unsigned long max, unsigned *value_r)
{
	if (*text < '0' || *text > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*value_r = (unsigned)v;
	return 0;
}

static int parse_bool(const char *text, bool *value_r)
{
	if (strcmp(text, "yes") == 0 || strcmp(text, "true") == 0 || strcmp(text, "on") == 0 ||
	    strcmp(text, "1") == 0)
		*value_r = true;
	else if (strcmp(text, "no") == 0 || strcmp(text, "false") == 0 ||
		 strcmp(text, "off") == 0 || strcmp(text, "0") == 0)
		*value_r = false;
	else
		return -1;
	return 0;
}

/* "2000", "2000ms", "2s" -> milliseconds (1 ms .. 1 hour) */
static int parse_duration_ms(const char *text, unsigned *ms_r)
{
	char num[32];
	size_t len = strlen(text), digits = 0;
	while (digits < len && text[digits] >= '0' && text[digits] <= '9')
		digits++;
	if (digits == 0 || digits >= sizeof(num))
		return -1;
	memcpy(num, text, digits);
	num[digits] = '\0';
	unsigned v;
	if (parse_uint(num, 3600000, &v) < 0)
		return -1;
	const char *unit = text + digits;
	unsigned long ms;
	if (*unit == '\0' || strcmp(unit, "ms") == 0)
		ms = v;
	else if (strcmp(unit, "s") == 0)
		ms = (unsigned long)v * 1000;
	else
		return -1;
	if (ms == 0 || ms > 3600000)
		return -1;
	*ms_r = (unsigned)ms;
	return 0;
}

static bool text_is_plain(const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == '\'' || *p == '"' || *p == '\\')
			return false;
	}
	return true;
}

static int parse_hosts(const char *value, struct cass_spec *spec, char *err, size_t size)
{
	char *copy = strdup(value), *save = NULL;
	int ret = 0;
	for (char *h = strtok_r(copy, ",", &save); h != NULL; h = strtok_r(NULL, ",", &save)) {
		if (*h == '\0' || strpbrk(h, " \t") != NULL || !text_is_plain(h)) {
			ret = spec_fail(err, size, "hosts: '%s' is not a host", h);
			break;
		}
		char *colon = strrchr(h, ':');
		/* H:PORT (a bare IPv6 address has more than one colon) */
		if (colon != NULL && strchr(h, ':') == colon) {
			unsigned port;
			if (colon == h || parse_uint(colon + 1, 65535, &port) < 0 || port == 0) {
				ret = spec_fail(err, size, "hosts: '%s' is not H or H:PORT", h);
				break;
			}
		}
		spec->hosts = realloc(spec->hosts, (spec->host_count + 1) * sizeof(char *));
		spec->hosts[spec->host_count++] = strdup(h);
	}
	free(copy);
	if (ret == 0 && spec->host_count == 0)
		ret = spec_fail(err, size, "hosts: no host given");
	return ret;
}

/* "dc1:3,dc2:3" -> "'dc1': 3, 'dc2': 3" */
static int parse_replication(const char *value, struct cass_spec *spec, char *err, size_t size)
{
	char *copy = strdup(value), *save = NULL;
	char out[1024] = "";
	size_t used = 0;
	int ret = 0;
	for (char *item = strtok_r(copy, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(item, ':');
		unsigned rf;
		bool name_ok = colon != NULL && colon != item;
		for (char *p = item; name_ok && p < colon; p++) {
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
				name_ok = false;
		}
		if (!name_ok || parse_uint(colon + 1, 99, &rf) < 0 || rf == 0) {
			ret = spec_fail(err, size,
					"replication: '%s' is not DC:REPLICAS (e.g. dc1:3,dc2:3)",
					item);
			break;
		}
		*colon = '\0';
		int n = snprintf(out + used, sizeof(out) - used, "%s'%s': %u", used > 0 ? ", " : "",
				 item, rf);
		if (n < 0 || (size_t)n >= sizeof(out) - used) {
			ret = spec_fail(err, size, "replication: too long");
			break;
		}
		used += (size_t)n;
	}
	free(copy);
	if (ret == 0 && used == 0)
		ret = spec_fail(err, size, "replication: no data centre given");
	if (ret == 0)
		spec->replication = strdup(out);
	return ret;
}

static int read_password_file(const char *path, char **password_r, char *err, size_t size)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return spec_fail(err, size, "password_file: cannot read %s: %s", path,
				 strerror(errno));
	char line[1024];
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (line[0] == '\0')
		return spec_fail(err, size, "password_file: %s is empty", path);
	*password_r = strdup(line);
	explicit_bzero(line, sizeof(line));
	return 0;
}

static int parse_spec(const char *args, struct cass_spec *spec, char *err, size_t size)
{
	memset(spec, 0, sizeof(*spec));
	spec->port = 9042;
	snprintf(spec->keyspace, sizeof(spec->keyspace), "mailcluster");
	spec->consistency = CQL_CONSISTENCY_LOCAL_QUORUM;
	spec->serial_consistency = CQL_CONSISTENCY_SERIAL;
	spec->page_size = 1000;
	spec->connect_timeout_ms = 2000;
	spec->connections = 2;
	bool tls_set = false;
	char *password_file = NULL;
	char *copy = strdup(args), *save = NULL;
	int ret = 0;
	for (char *item = strtok_r(copy, ";", &save); item != NULL && ret == 0;
	     item = strtok_r(NULL, ";", &save)) {
		while (*item == ' ')
			item++;
		if (*item == '\0')
			continue;
		char *eq = strchr(item, '=');
		if (eq == NULL) {
			ret = spec_fail(err, size, "'%s' is not key=value", item);
			break;
		}
		*eq = '\0';
		const char *key = item, *value = eq + 1;
		const char *cerr;
		if (strcmp(key, "hosts") == 0) {
			if (spec->host_count > 0)
				ret = spec_fail(err, size, "hosts: given twice");
			else
				ret = parse_hosts(value, spec, err, size);
		} else if (strcmp(key, "port") == 0) {
			if (parse_uint(value, 65535, &spec->port) < 0 || spec->port == 0)
				ret = spec_fail(err, size, "port: '%s' is not a port number",
						value);
		} else if (strcmp(key, "keyspace") == 0) {
			size_t len = strlen(value);
			bool ok = len >= 1 && len <= KEYSPACE_MAX_LEN;
			for (const char *p = value; ok && *p != '\0'; p++)
				ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
				     *p == '_';
			if (!ok)
				ret = spec_fail(err, size,
						"keyspace: '%s' is not 1-48 of [a-z0-9_]", value);
			else
				snprintf(spec->keyspace, sizeof(spec->keyspace), "%s", value);
		} else if (strcmp(key, "local_dc") == 0) {
			if (*value == '\0' || !text_is_plain(value))
				ret = spec_fail(err, size,
						"local_dc: '%s' is not a data centre name", value);
			else {
				free(spec->local_dc);
				spec->local_dc = strdup(value);
			}
		} else if (strcmp(key, "username") == 0) {
			if (*value == '\0')
				ret = spec_fail(err, size, "username: empty");
			else {
				free(spec->username);
				spec->username = strdup(value);
			}
		} else if (strcmp(key, "password") == 0) {
			free(spec->password);
			spec->password = strdup(value);
		} else if (strcmp(key, "password_file") == 0) {
			free(password_file);
			password_file = strdup(value);
		} else if (strcmp(key, "tls") == 0) {
			if (parse_bool(value, &spec->tls) < 0)
				ret = spec_fail(err, size, "tls: '%s' is not yes or no", value);
			tls_set = true;
		} else if (strcmp(key, "tls_ca") == 0) {
			if (*value == '\0')
				ret = spec_fail(err, size, "tls_ca: empty");
			else if (access(value, R_OK) < 0)
				ret = spec_fail(err, size, "tls_ca: cannot read %s: %s", value,
						strerror(errno));
			else {
				free(spec->tls_ca);
				spec->tls_ca = strdup(value);
			}
		} else if (strcmp(key, "tls_verify") == 0) {
			if (parse_bool(value, &spec->tls_verify) < 0)
				ret = spec_fail(err, size, "tls_verify: '%s' is not yes or no",
						value);
			spec->tls_verify_set = true;
		} else if (strcmp(key, "consistency") == 0) {
			if (cql_consistency_parse(value, &spec->consistency, &cerr) < 0 ||
			    spec->consistency == CQL_CONSISTENCY_SERIAL ||
			    spec->consistency == CQL_CONSISTENCY_LOCAL_SERIAL ||
			    spec->consistency == CQL_CONSISTENCY_ANY)
				ret = spec_fail(err, size,
						"consistency: '%s' is not a read/write consistency "
						"level (e.g. local_quorum, quorum, one)",
						value);
		} else if (strcmp(key, "serial_consistency") == 0) {
			if (cql_consistency_parse(value, &spec->serial_consistency, &cerr) < 0 ||
			    (spec->serial_consistency != CQL_CONSISTENCY_SERIAL &&
			     spec->serial_consistency != CQL_CONSISTENCY_LOCAL_SERIAL))
				ret = spec_fail(err, size,
						"serial_consistency: '%s' is not serial or "
						"local_serial",
						value);
		} else if (strcmp(key, "page_size") == 0) {
			if (parse_uint(value, 100000, &spec->page_size) < 0 || spec->page_size == 0)
				ret = spec_fail(err, size, "page_size: '%s' is not 1..100000",
						value);
		} else if (strcmp(key, "connect_timeout") == 0) {
			if (parse_duration_ms(value, &spec->connect_timeout_ms) < 0)
				ret = spec_fail(err, size,
						"connect_timeout: '%s' is not a duration (2000, "
						"2000ms or 2s)",
						value);
		} else if (strcmp(key, "request_timeout") == 0) {
			if (parse_duration_ms(value, &spec->request_timeout_ms) < 0)
				ret = spec_fail(err, size,
						"request_timeout: '%s' is not a duration (5000, "
						"5000ms or 5s)",
						value);
		} else if (strcmp(key, "connections") == 0) {
			if (parse_uint(value, 64, &spec->connections) < 0 || spec->connections == 0)
				ret = spec_fail(err, size, "connections: '%s' is not 1..64", value);
		} else if (strcmp(key, "replication") == 0) {
			free(spec->replication);
			spec->replication = NULL;
			ret = parse_replication(value, spec, err, size);
		} else {
			ret = spec_fail(err, size, "unknown key '%s'", key);
		}
	}
	free(copy);
	if (ret == 0 && spec->host_count == 0)
		ret = spec_fail(err, size, "hosts: required (hosts=H1,H2)");
	if (ret == 0 && password_file != NULL) {
		if (spec->password != NULL)
			ret = spec_fail(err, size, "password and password_file: give only one");
		else
			ret = read_password_file(password_file, &spec->password, err, size);
	}
	if (ret == 0 && spec->password != NULL && spec->username == NULL)
		ret = spec_fail(err, size, "password: given without username");
	if (ret == 0 && spec->username != NULL && spec->password == NULL)
		ret = spec_fail(err, size, "username: given without password or password_file");
	if (ret == 0 && spec->tls_ca != NULL) {
		if (tls_set && !spec->tls)
			ret = spec_fail(err, size, "tls_ca: given with tls=no");
		spec->tls = true;
		if (!spec->tls_verify_set)
			spec->tls_verify = true;
	}
	if (ret == 0 && spec->tls_verify_set && spec->tls_verify && !spec->tls)
		ret = spec_fail(err, size, "tls_verify: given without tls=yes");
	free(password_file);
	if (ret < 0)
		spec_free(spec);
	return ret;
}

/* ---- statements ---- */

enum stmt_id {
	Q_META_GET,
	Q_META_ALL,
	Q_META_PUT,
	Q_META_INSERT_IF,
	Q_SITE_ADD,
	Q_SITE_UPDATE,
	Q_SITE_DELETE,
	Q_SITE_GET,
	Q_SITE_ALL,
	Q_BACKEND_ADD,
	Q_BACKEND_UPDATE,
	Q_BACKEND_DELETE,
	Q_BACKEND_GET,
	Q_BACKEND_ALL,
	Q_GROUP_GET,
	Q_GROUP_ALL,
	Q_GROUP_BACKENDS,
	Q_GROUP_REFS,
	Q_GROUP_INSERT,
	Q_GROUP_UPDATE_IF,
	Q_GROUP_SET_IF,
	Q_GROUP_CLAIM_IF,
	Q_GROUP_END_MOVE_IF,
	Q_GROUP_CLEAR_ALT_IF,
	Q_BACKEND_MARK,
	Q_MOVE_ACK_PUT,
	Q_MOVE_ACK_LIST,
	Q_GROUP_STICKY_IF,
	Q_GROUP_LOAD_PUT,
	Q_GROUP_LOAD_ALL,
	Q_USER_BACKEND_PUT,
	Q_USER_BACKEND_GET,
	Q_USER_GET,
	Q_USER_ALL,
	Q_USER_PUT,
	Q_USER_DELETE,
	Q_LEASE_INSERT,
	Q_LEASE_UPDATE_IF,
	Q_LEASE_DELETE_IF,
	Q_HEALTH_PUT,
	Q_HEALTH_GET,
	Q_HEALTH_ALL,
	Q_HEARTBEAT_PUT,
	Q_HEARTBEAT_SITES,
	Q_HEARTBEAT_RANGE,
	Q_REACH_PUT,
	Q_REACH_ALL,
	Q_FAILOVER_PUT,
	Q_FAILOVER_INSERT_IF,
	Q_FAILOVER_UPDATE_IF,
	Q_FAILOVER_DELETE_IF,
	Q_FAILOVER_GET,
	Q_FAILOVER_ALL,
	Q_FORCE_MOVE_PUT,
	Q_FORCE_MOVE_DELETE,
	Q_FORCE_MOVE_DELETE_SITE,
	Q_FORCE_MOVE_SITE,
	Q_FORCE_MOVE_ALL,
	Q_COUNT
};

#define BACKEND_COLUMNS                                                                   \
	"name, site, address, status, load_factor, updated_by, updated_at, mark, mark_since, " \
	"mark_reason"
#define GROUP_COLUMNS                                                                    \
	"group_id, site, backend, epoch, written_by, written_at, alt_backend, move_to, " \
	"move_started, move_reason, sticky, moved_at, history, failover_site"
#define USER_COLUMNS "username, group_id, written_by, written_at, hold_until"
#define GROUP_LOAD_COLUMNS "group_id, observer, sessions, logins, reported_at"
#define BACKEND_COLUMN_COUNT 10
#define GROUP_COLUMN_COUNT 14
#define HEARTBEAT_COLUMNS "site, bucket, beat_ms, writer"
#define HEARTBEAT_COLUMN_COUNT 4
#define REACH_COLUMNS "observer_site, target_site, reachable, since_ms, observed_ms, written_by"
#define REACH_COLUMN_COUNT 6
#define FAILOVER_COLUMNS                                                                          \
	"group_id, writer_site, target_site, target_backend, reason, written_at_ms, home_epoch, " \
	"written_by"
#define FAILOVER_COLUMN_COUNT 8
#define FORCE_MOVE_COLUMNS "site, id, percent, destinations, started_ms, written_by"
#define FORCE_MOVE_COLUMN_COUNT 6
#define GROUP_LOAD_COLUMN_COUNT 5
#define USER_COLUMN_COUNT 5

/* %1$s is the keyspace */
static const char *const stmt_templates[Q_COUNT] = {
	[Q_META_GET] = "SELECT value FROM %1$s.meta WHERE key = ?",
	[Q_META_ALL] = "SELECT key, value FROM %1$s.meta",
	[Q_META_PUT] = "INSERT INTO %1$s.meta (key, value) VALUES (?, ?)",
	[Q_META_INSERT_IF] = "INSERT INTO %1$s.meta (key, value) VALUES (?, ?) IF NOT EXISTS",
	[Q_SITE_ADD] = "INSERT INTO %1$s.sites (name, status, tags, load_balancer, updated_by, "
		       "updated_at) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
	[Q_SITE_UPDATE] = "UPDATE %1$s.sites SET status = ?, tags = ?, load_balancer = ?, "
			  "updated_by = ?, updated_at = ? WHERE name = ? IF EXISTS",
	[Q_SITE_DELETE] = "DELETE FROM %1$s.sites WHERE name = ? IF EXISTS",
	[Q_SITE_GET] = "SELECT name, status, tags, load_balancer FROM %1$s.sites WHERE name = ?",
	[Q_SITE_ALL] = "SELECT name, status, tags, load_balancer FROM %1$s.sites",
	[Q_BACKEND_ADD] = "INSERT INTO %1$s.backends (name, site, address, status, load_factor, "
			  "tags, updated_by, updated_at, mark, mark_since, mark_reason) VALUES (?, "
			  "?, ?, 'standby', 100, '', ?, ?, 'up', 0, '') IF NOT EXISTS",
	[Q_BACKEND_UPDATE] = "UPDATE %1$s.backends SET status = ?, load_factor = ?, address = ?, "
			     "updated_by = ?, updated_at = ? WHERE name = ? IF EXISTS",
	[Q_BACKEND_DELETE] = "DELETE FROM %1$s.backends WHERE name = ? IF EXISTS",
	[Q_BACKEND_GET] = "SELECT " BACKEND_COLUMNS " FROM %1$s.backends WHERE name = ?",
	[Q_BACKEND_ALL] = "SELECT " BACKEND_COLUMNS " FROM %1$s.backends",
	[Q_GROUP_GET] = "SELECT " GROUP_COLUMNS " FROM %1$s.groups WHERE group_id = ?",
	[Q_GROUP_ALL] = "SELECT " GROUP_COLUMNS " FROM %1$s.groups",
	[Q_GROUP_BACKENDS] = "SELECT group_id, backend FROM %1$s.groups",
	[Q_GROUP_REFS] = "SELECT group_id, backend, alt_backend, move_to, epoch FROM %1$s.groups",
	[Q_GROUP_INSERT] = "INSERT INTO %1$s.groups (" GROUP_COLUMNS ") VALUES (?, ?, ?, ?, ?, "
			   "?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
	[Q_GROUP_UPDATE_IF] = "UPDATE %1$s.groups SET site = ?, backend = ?, alt_backend = ?, "
			      "move_to = ?, move_started = ?, move_reason = ?, epoch = ?, "
			      "written_by = ?, written_at = ?, sticky = ?, moved_at = ?, "
			      "history = ?, failover_site = ? WHERE group_id = ? IF epoch = ?",
	/* group_set: Q_GROUP_UPDATE_IF without sticky, which it keeps (set by
	 * group_set_sticky, which leaves the epoch alone) */
	[Q_GROUP_SET_IF] = "UPDATE %1$s.groups SET site = ?, backend = ?, alt_backend = ?, "
			   "move_to = ?, move_started = ?, move_reason = ?, epoch = ?, "
			   "written_by = ?, written_at = ?, moved_at = ?, history = ?, "
			   "failover_site = ? WHERE group_id = ? IF epoch = ?",
	/* assigning an unassigned group (its backend was removed): sticky,
	 * moved_at and history stay (geodb_group_claim()) */
	[Q_GROUP_CLAIM_IF] = "UPDATE %1$s.groups SET site = ?, backend = ?, alt_backend = ?, "
			     "failover_site = ?, move_to = ?, move_started = ?, move_reason = ?, "
			     "epoch = ?, written_by = ?, written_at = ? WHERE group_id = ? "
			     "IF backend = '' AND epoch = ?",
	[Q_GROUP_END_MOVE_IF] = "UPDATE %1$s.groups SET move_to = '', move_started = 0, "
				"move_reason = '', epoch = ?, written_by = ?, written_at = ? "
				"WHERE group_id = ? IF epoch = ? AND move_to = ?",
	[Q_GROUP_CLEAR_ALT_IF] = "UPDATE %1$s.groups SET alt_backend = '', written_by = ?, "
				 "written_at = ? WHERE group_id = ? IF alt_backend = ?",
	[Q_BACKEND_MARK] = "UPDATE %1$s.backends SET mark = ?, mark_since = ?, mark_reason = ? "
			   "WHERE name = ? IF EXISTS",
	[Q_MOVE_ACK_PUT] = "INSERT INTO %1$s.move_acks (group_id, observer, epoch, acked_at) "
			   "VALUES (?, ?, ?, ?) USING TTL ?",
	[Q_MOVE_ACK_LIST] = "SELECT group_id, observer, epoch, acked_at FROM %1$s.move_acks "
			    "WHERE group_id = ?",
	/* IF EXISTS: never a row of only a sticky flag for a group without one */
	[Q_GROUP_STICKY_IF] = "UPDATE %1$s.groups SET sticky = ?, written_by = ?, written_at = ? "
			      "WHERE group_id = ? IF EXISTS",
	[Q_GROUP_LOAD_PUT] = "INSERT INTO %1$s.group_load (" GROUP_LOAD_COLUMNS ") VALUES (?, ?, "
			     "?, ?, ?) USING TTL ?",
	[Q_GROUP_LOAD_ALL] = "SELECT " GROUP_LOAD_COLUMNS " FROM %1$s.group_load",
	[Q_USER_BACKEND_PUT] = "INSERT INTO %1$s.user_backend (username, backend, recorded_at) "
			       "VALUES (?, ?, ?)",
	[Q_USER_BACKEND_GET] = "SELECT backend, recorded_at FROM %1$s.user_backend WHERE "
			       "username = ?",
	[Q_USER_GET] = "SELECT " USER_COLUMNS " FROM %1$s.users WHERE username = ?",
	[Q_USER_ALL] = "SELECT " USER_COLUMNS " FROM %1$s.users",
	[Q_USER_PUT] = "INSERT INTO %1$s.users (" USER_COLUMNS ") VALUES (?, ?, ?, ?, ?)",
	[Q_USER_DELETE] = "DELETE FROM %1$s.users WHERE username = ? IF EXISTS",
	[Q_LEASE_INSERT] = "INSERT INTO %1$s.leases (name, holder, expires_at) VALUES (?, ?, ?) "
			   "IF NOT EXISTS USING TTL ?",
	[Q_LEASE_UPDATE_IF] = "UPDATE %1$s.leases USING TTL ? SET holder = ?, expires_at = ? "
			      "WHERE name = ? IF holder = ? AND expires_at = ?",
	[Q_LEASE_DELETE_IF] = "DELETE FROM %1$s.leases WHERE name = ? IF holder = ? AND "
			      "expires_at > ?",
	[Q_HEALTH_PUT] = "INSERT INTO %1$s.health (backend, observer, ok, detail, observed_at, "
			 "since) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
	[Q_HEALTH_GET] = "SELECT backend, observer, ok, detail, observed_at, since FROM "
			 "%1$s.health WHERE backend = ?",
	[Q_HEALTH_ALL] = "SELECT backend, observer, ok, detail, observed_at, since FROM "
			 "%1$s.health",
	/* the beat is the cell's timestamp (microseconds): the newest beat of
	 * a bucket wins, whatever order the puts come in */
	[Q_HEARTBEAT_PUT] = "INSERT INTO %1$s.site_heartbeats (" HEARTBEAT_COLUMNS ") VALUES (?, "
			    "?, ?, ?) USING TIMESTAMP ? AND TTL ?",
	[Q_HEARTBEAT_SITES] = "SELECT DISTINCT site FROM %1$s.site_heartbeats",
	[Q_HEARTBEAT_RANGE] = "SELECT " HEARTBEAT_COLUMNS " FROM %1$s.site_heartbeats WHERE "
			      "site = ? AND bucket >= ? AND bucket <= ?",
	[Q_REACH_PUT] = "INSERT INTO %1$s.site_reachability (" REACH_COLUMNS ") VALUES (?, ?, ?, "
			"?, ?, ?) USING TTL ?",
	[Q_REACH_ALL] = "SELECT " REACH_COLUMNS " FROM %1$s.site_reachability",
	[Q_FAILOVER_PUT] = "INSERT INTO %1$s.group_failover (" FAILOVER_COLUMNS ") VALUES (?, ?, "
			   "?, ?, ?, ?, ?, ?)",
	[Q_FAILOVER_INSERT_IF] = "INSERT INTO %1$s.group_failover (" FAILOVER_COLUMNS ") VALUES "
				 "(?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
	[Q_FAILOVER_UPDATE_IF] = "UPDATE %1$s.group_failover SET target_site = ?, "
				 "target_backend = ?, reason = ?, written_at_ms = ?, home_epoch = "
				 "?, written_by = ? WHERE group_id = ? IF writer_site = ?",
	[Q_FAILOVER_DELETE_IF] = "DELETE FROM %1$s.group_failover WHERE group_id = ? IF "
				 "writer_site = ?",
	[Q_FAILOVER_GET] = "SELECT " FAILOVER_COLUMNS " FROM %1$s.group_failover WHERE group_id "
			   "= ?",
	[Q_FAILOVER_ALL] = "SELECT " FAILOVER_COLUMNS " FROM %1$s.group_failover",
	[Q_FORCE_MOVE_PUT] = "INSERT INTO %1$s.site_force_moves (" FORCE_MOVE_COLUMNS ") VALUES "
			     "(?, ?, ?, ?, ?, ?)",
	[Q_FORCE_MOVE_DELETE] = "DELETE FROM %1$s.site_force_moves WHERE site = ? AND id = ?",
	[Q_FORCE_MOVE_DELETE_SITE] = "DELETE FROM %1$s.site_force_moves WHERE site = ?",
	[Q_FORCE_MOVE_SITE] = "SELECT " FORCE_MOVE_COLUMNS " FROM %1$s.site_force_moves WHERE "
			      "site = ?",
	[Q_FORCE_MOVE_ALL] = "SELECT " FORCE_MOVE_COLUMNS " FROM %1$s.site_force_moves",
};

/* The schema, version by version: init applies every version newer than
 * the one recorded in meta.  The Cassandra schema starts at version 2 (the
 * first GeoDB version that had a Cassandra driver). */
static const char *const schema_v2[] = {
	"CREATE TABLE IF NOT EXISTS %1$s.meta (key text PRIMARY KEY, value text)",
	"CREATE TABLE IF NOT EXISTS %1$s.sites (name text PRIMARY KEY, status text, tags text, "
	"load_balancer text, updated_by text, updated_at bigint)",
	"CREATE TABLE IF NOT EXISTS %1$s.backends (name text PRIMARY KEY, site text, address "
	"text, status text, load_factor int, tags text, updated_by text, updated_at bigint)",
	"CREATE TABLE IF NOT EXISTS %1$s.groups (group_id int PRIMARY KEY, site text, backend "
	"text, epoch bigint, written_by text, written_at bigint)",
	"CREATE TABLE IF NOT EXISTS %1$s.users (username text PRIMARY KEY, group_id int, "
	"written_by text, written_at bigint)",
	"CREATE TABLE IF NOT EXISTS %1$s.leases (name text PRIMARY KEY, holder text, expires_at "
	"bigint)",
	"CREATE TABLE IF NOT EXISTS %1$s.health (backend text, observer text, ok boolean, detail "
	"text, observed_at bigint, since bigint, PRIMARY KEY (backend, observer))",
	NULL,
};

/* The controller's marks, failover alternatives, moves and their
 * acknowledgements, users' login holds; for balancing, the groups' sticky
 * flag, last switch and history, their loads and the users' last
 * backends.  ADD IF NOT EXISTS: an init that stopped half-way can run
 * again, and so can the current version's statements on a keyspace
 * already at it (see cass_init()). */
static const char *const schema_v3[] = {
	"ALTER TABLE %1$s.backends ADD IF NOT EXISTS (mark text, mark_since bigint, "
	"mark_reason text)",
	"ALTER TABLE %1$s.groups ADD IF NOT EXISTS (alt_backend text, move_to text, move_started "
	"bigint, move_reason text)",
	"ALTER TABLE %1$s.users ADD IF NOT EXISTS (hold_until bigint)",
	"CREATE TABLE IF NOT EXISTS %1$s.move_acks (group_id int, observer text, epoch bigint, "
	"acked_at bigint, PRIMARY KEY (group_id, observer))",
	"ALTER TABLE %1$s.groups ADD IF NOT EXISTS (sticky boolean, moved_at bigint, history "
	"text)",
	"CREATE TABLE IF NOT EXISTS %1$s.group_load (group_id int, observer text, sessions int, "
	"logins int, reported_at bigint, PRIMARY KEY (group_id, observer))",
	"CREATE TABLE IF NOT EXISTS %1$s.user_backend (username text PRIMARY KEY, backend text, "
	"recorded_at bigint)",
	NULL,
};

/* Several sites: the groups' failover site (part of the home cell), the
 * sites' heartbeats (one partition per site, a row per bucket, expiring
 * by TTL) and reachability, the failover cells and the force moves.
 * Times in unix milliseconds. */
static const char *const schema_v4[] = {
	"ALTER TABLE %1$s.groups ADD IF NOT EXISTS (failover_site text)",
	"CREATE TABLE IF NOT EXISTS %1$s.site_heartbeats (site text, bucket bigint, beat_ms "
	"bigint, writer text, PRIMARY KEY (site, bucket))",
	"CREATE TABLE IF NOT EXISTS %1$s.site_reachability (observer_site text, target_site text, "
	"reachable boolean, since_ms bigint, observed_ms bigint, written_by text, PRIMARY KEY "
	"(observer_site, target_site))",
	"CREATE TABLE IF NOT EXISTS %1$s.group_failover (group_id int PRIMARY KEY, writer_site "
	"text, target_site text, target_backend text, reason text, written_at_ms bigint, "
	"home_epoch bigint, written_by text)",
	"CREATE TABLE IF NOT EXISTS %1$s.site_force_moves (site text, id bigint, percent int, "
	"destinations text, started_ms bigint, written_by text, PRIMARY KEY (site, id))",
	NULL,
};

static const struct schema_version {
	unsigned version;
	const char *const *statements;
} schema_versions[] = {
	{2, schema_v2},
	{3, schema_v3},
	{4, schema_v4},
};

static char *format_ks(const char *template, const char *keyspace)
{
	char *out = NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	if (asprintf(&out, template, keyspace) < 0)
		abort();
#pragma GCC diagnostic pop
	return out;
}

/* ---- the handle ---- */

struct async_job;

struct cassdb {
	struct geodb geo; /* first: the handle geodb.c sees */
	struct cass_spec spec;
	unsigned request_timeout_ms;
	char *cql[Q_COUNT];
	char *schema_text;
	SSL_CTX *ssl_ctx;
	struct event_base *sync_base;
	struct cql_client *sync;
	struct cql_client *async; /* on geo.base, after attach */
	bool schema_ok;
	struct async_job *jobs; /* asynchronous ops in flight */
	char error[1024];
	int32_t error_code; /* of the last run() that failed with a server error, else 0 */
};

static int fail(struct cassdb *db, const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct cassdb *db, const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(db->error, sizeof(db->error), fmt, args);
	va_end(args);
	*error_r = db->error;
	return -1;
}

static int64_t now_seconds(void)
{
	return (int64_t)time(NULL);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void no_schema_sentence(const struct cassdb *db, char *buf, size_t size)
{
	snprintf(buf, size,
		 "geodb: keyspace %s has no mailcluster schema; run 'mailcluster geodb init'",
		 db->spec.keyspace);
}

/* A server error that means our keyspace or tables are missing. */
static bool is_missing_schema(const struct cql_reply *reply)
{
	if (reply->error_code != CQL_ERROR_INVALID)
		return false;
	return strstr(reply->error, "does not exist") != NULL ||
	       strstr(reply->error, "unconfigured table") != NULL ||
	       strstr(reply->error, "Keyspace") != NULL || strstr(reply->error, "keyspace") != NULL;
}

/* The sentence for a failed request: "geodb: WHAT: the server's words". */
static void reply_error(const struct cassdb *db, const struct cql_reply *reply, const char *what,
			char *buf, size_t size)
{
	if (is_missing_schema(reply))
		no_schema_sentence(db, buf, size);
	else
		snprintf(buf, size, "geodb: %s: %s", what, reply->error);
}

/* ---- bound values ---- */

struct vals {
	struct cql_buf buf;
	unsigned count;
	const char *error;
};

static void v_text(struct vals *v, const char *text)
{
	const char *error;
	if (cql_buf_put_text(&v->buf, text, &error) < 0)
		v->error = error;
	else
		v->count++;
}

static void v_int(struct vals *v, int32_t value)
{
	cql_buf_put_int(&v->buf, value);
	v->count++;
}

static void v_bigint(struct vals *v, int64_t value)
{
	cql_buf_put_bigint(&v->buf, value);
	v->count++;
}

static void v_bool(struct vals *v, bool value)
{
	cql_buf_put_boolean(&v->buf, value);
	v->count++;
}

static void v_free(struct vals *v)
{
	cql_buf_free(&v->buf);
}

enum req_flag {
	F_READ = 0x01,   /* idempotent read at the configured consistency */
	F_COND = 0x02,   /* conditional: serial consistency */
	F_ALL = 0x04,    /* every page */
	F_DDL = 0x08,    /* schema statement: not prepared */
	F_LOCAL = 0x10,  /* system table: consistency ONE, not prepared */
	F_SERIAL = 0x20, /* read at the serial consistency (linearizable) */
};

static void fill_request(const struct cassdb *db, struct cql_request *req, const char *cql,
			 const struct vals *v, unsigned flags)
{
	memset(req, 0, sizeof(*req));
	req->cql = cql;
	req->prepare = (flags & (F_DDL | F_LOCAL)) == 0;
	if (v != NULL) {
		req->values = v->buf.data;
		req->values_len = v->buf.len;
		req->value_count = v->count;
	}
	req->consistency = db->spec.consistency;
	if ((flags & F_LOCAL) != 0)
		req->consistency = CQL_CONSISTENCY_ONE;
	if ((flags & F_SERIAL) != 0)
		req->consistency = db->spec.serial_consistency;
	if ((flags & F_COND) != 0) {
		req->with_serial_consistency = true;
		req->serial_consistency = db->spec.serial_consistency;
	}
	if ((flags & F_ALL) != 0) {
		req->page_size = (int32_t)db->spec.page_size;
		req->all_pages = true;
	}
	req->idempotent = (flags & (F_READ | F_DDL | F_LOCAL | F_SERIAL)) != 0;
}

/* ---- reading rows ---- */

typedef int reply_fn(struct cassdb *db, const struct cql_reply *reply, void *context, char *err,
		     size_t size);

static int bad_cell(char *err, size_t size, const char *column, const char *error)
{
	snprintf(err, size, "bad row: column %s: %s", column, error);
	return -1;
}

static int cell_text(const struct cql_value *v, const char *column, char *dst, size_t dst_size,
		     char *err, size_t size)
{
	struct cql_string s;
	const char *error;
	int r = cql_value_text(v, &s, &error);
	if (r < 0)
		return bad_cell(err, size, column, error);
	size_t len = r == 0 ? 0 : s.len;
	if (len >= dst_size)
		len = dst_size - 1;
	if (len > 0)
		memcpy(dst, s.data, len);
	dst[len] = '\0';
	return 0;
}

static int cell_int(const struct cql_value *v, const char *column, int32_t *value_r, char *err,
		    size_t size)
{
	const char *error;
	int r = cql_value_int(v, value_r, &error);
	if (r < 0)
		return bad_cell(err, size, column, error);
	if (r == 0)
		*value_r = 0;
	return 0;
}

static int cell_bigint(const struct cql_value *v, const char *column, int64_t *value_r, char *err,
		       size_t size)
{
	const char *error;
	int r = cql_value_bigint(v, value_r, &error);
	if (r < 0)
		return bad_cell(err, size, column, error);
	if (r == 0)
		*value_r = 0;
	return 0;
}

static int need_rows(const struct cql_reply *reply, char *err, size_t size)
{
	if (reply->kind != CQL_RESULT_ROWS) {
		snprintf(err, size, "expected rows, got a result of kind %d", (int)reply->kind);
		return -1;
	}
	return 0;
}

typedef int row_fn(const struct cql_value *cells, void *item, char *err, size_t size);

/* Every row of every page into a new array of elem_size items. */
static int collect_rows(const struct cql_reply *reply, unsigned columns, size_t elem_size,
			row_fn *fn, void **items_r, size_t *count_r, char *err, size_t size)
{
	if (need_rows(reply, err, size) < 0)
		return -1;
	size_t total = cql_reply_row_count(reply), count = 0;
	char *items = calloc(total > 0 ? total : 1, elem_size);
	struct cql_reply_cursor cursor;
	struct cql_value cells[ROW_MAX_COLS];
	if (columns > ROW_MAX_COLS) {
		snprintf(err, size, "%u columns asked for, at most %d", columns, ROW_MAX_COLS);
		return -1;
	}
	cql_reply_cursor_init(&cursor, reply);
	while (count < total && cql_reply_next_row(&cursor, cells, columns)) {
		if (fn(cells, items + count * elem_size, err, size) < 0) {
			free(items);
			return -1;
		}
		count++;
	}
	*items_r = items;
	*count_r = count;
	return 0;
}

static int row_site(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_site *site = item;
	char status[32];
	memset(site, 0, sizeof(*site));
	if (cell_text(&c[0], "name", site->name, sizeof(site->name), err, size) < 0 ||
	    cell_text(&c[1], "status", status, sizeof(status), err, size) < 0 ||
	    cell_text(&c[2], "tags", site->tags, sizeof(site->tags), err, size) < 0 ||
	    cell_text(&c[3], "load_balancer", site->load_balancer, sizeof(site->load_balancer), err,
		      size) < 0)
		return -1;
	if (site_status_parse(status, &site->status) < 0)
		site->status = SITE_STATUS_OFFLINE;
	return 0;
}

static int row_backend(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_backend *backend = item;
	char status[32], mark[32];
	int32_t load_factor;
	memset(backend, 0, sizeof(*backend));
	if (cell_text(&c[0], "name", backend->name, sizeof(backend->name), err, size) < 0 ||
	    cell_text(&c[1], "site", backend->site, sizeof(backend->site), err, size) < 0 ||
	    cell_text(&c[2], "address", backend->address, sizeof(backend->address), err, size) <
		    0 ||
	    cell_text(&c[3], "status", status, sizeof(status), err, size) < 0 ||
	    cell_int(&c[4], "load_factor", &load_factor, err, size) < 0 ||
	    cell_text(&c[5], "updated_by", backend->updated_by, sizeof(backend->updated_by), err,
		      size) < 0 ||
	    cell_bigint(&c[6], "updated_at", &backend->updated_at, err, size) < 0 ||
	    cell_text(&c[7], "mark", mark, sizeof(mark), err, size) < 0 ||
	    cell_bigint(&c[8], "mark_since", &backend->mark_since, err, size) < 0 ||
	    cell_text(&c[9], "mark_reason", backend->mark_reason, sizeof(backend->mark_reason), err,
		      size) < 0)
		return -1;
	if (backend_status_parse(status, &backend->status) < 0)
		backend->status = BACKEND_STATUS_OFFLINE;
	backend->load_factor = (unsigned)load_factor;
	/* null (a row from before version 3) is up, like a new backend */
	backend->mark = strcmp(mark, health_mark_name(HEALTH_MARK_DOWN)) == 0 ? HEALTH_MARK_DOWN
									       : HEALTH_MARK_UP;
	return 0;
}

static int row_group(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_group *group = item;
	int32_t id;
	int64_t epoch;
	char history[GEODB_HISTORY_TEXT_MAX];
	memset(group, 0, sizeof(*group));
	if (cell_int(&c[0], "group_id", &id, err, size) < 0 ||
	    cell_text(&c[1], "site", group->site, sizeof(group->site), err, size) < 0 ||
	    cell_text(&c[2], "backend", group->backend, sizeof(group->backend), err, size) < 0 ||
	    cell_bigint(&c[3], "epoch", &epoch, err, size) < 0 ||
	    cell_text(&c[4], "written_by", group->written_by, sizeof(group->written_by), err,
		      size) < 0 ||
	    cell_bigint(&c[5], "written_at", &group->written_at, err, size) < 0 ||
	    cell_text(&c[6], "alt_backend", group->alt_backend, sizeof(group->alt_backend), err,
		      size) < 0 ||
	    cell_text(&c[7], "move_to", group->move_to, sizeof(group->move_to), err, size) < 0 ||
	    cell_bigint(&c[8], "move_started", &group->move_started_ms, err, size) < 0 ||
	    cell_text(&c[9], "move_reason", group->move_reason, sizeof(group->move_reason), err,
		      size) < 0 ||
	    cell_bigint(&c[11], "moved_at", &group->moved_at_ms, err, size) < 0 ||
	    cell_text(&c[12], "history", history, sizeof(history), err, size) < 0 ||
	    cell_text(&c[13], "failover_site", group->failover_site, sizeof(group->failover_site),
		      err, size) < 0)
		return -1;
	const char *error;
	int r = cql_value_boolean(&c[10], &group->sticky, &error);
	if (r < 0)
		return bad_cell(err, size, "sticky", error);
	if (r == 0)
		group->sticky = false; /* null: a row from before the column */
	geodb_history_parse(history, group);
	group->group_id = (unsigned)id;
	group->epoch = (uint64_t)epoch;
	return 0;
}

static int row_user(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_user *user = item;
	int32_t id;
	memset(user, 0, sizeof(*user));
	if (cell_text(&c[0], "username", user->username, sizeof(user->username), err, size) < 0 ||
	    cell_int(&c[1], "group_id", &id, err, size) < 0 ||
	    cell_text(&c[2], "written_by", user->written_by, sizeof(user->written_by), err, size) <
		    0 ||
	    cell_bigint(&c[3], "written_at", &user->written_at, err, size) < 0 ||
	    cell_bigint(&c[4], "hold_until", &user->hold_until_ms, err, size) < 0)
		return -1;
	user->group_id = (unsigned)id;
	return 0;
}

static int row_health(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_health *h = item;
	const char *error;
	memset(h, 0, sizeof(*h));
	if (cell_text(&c[0], "backend", h->backend, sizeof(h->backend), err, size) < 0 ||
	    cell_text(&c[1], "observer", h->observer, sizeof(h->observer), err, size) < 0)
		return -1;
	int r = cql_value_boolean(&c[2], &h->ok, &error);
	if (r < 0)
		return bad_cell(err, size, "ok", error);
	if (r == 0)
		h->ok = false;
	if (cell_text(&c[3], "detail", h->detail, sizeof(h->detail), err, size) < 0 ||
	    cell_bigint(&c[4], "observed_at", &h->observed_at, err, size) < 0 ||
	    cell_bigint(&c[5], "since", &h->since, err, size) < 0)
		return -1;
	return 0;
}

/* Reads the first row (if any) with fn; returns 1 found, 0 none, -1. */
static int first_row(const struct cql_reply *reply, unsigned columns, row_fn *fn, void *item,
		     char *err, size_t size)
{
	if (need_rows(reply, err, size) < 0)
		return -1;
	struct cql_reply_cursor cursor;
	struct cql_value cells[ROW_MAX_COLS];
	if (columns > ROW_MAX_COLS) {
		snprintf(err, size, "%u columns asked for, at most %d", columns, ROW_MAX_COLS);
		return -1;
	}
	cql_reply_cursor_init(&cursor, reply);
	if (!cql_reply_next_row(&cursor, cells, columns))
		return 0;
	return fn(cells, item, err, size) < 0 ? -1 : 1;
}

/* The result of a conditional statement: [applied] and, when it was not
 * applied, the columns of the row that is there (by name from the
 * metadata; by position when the server sent none). */
struct lwt_row {
	bool applied;
	unsigned count;
	bool named;
	char names[LWT_MAX_COLS][32];
	struct cql_value cells[LWT_MAX_COLS];
};

static int lwt_parse(const struct cql_reply *reply, struct lwt_row *row, char *err, size_t size)
{
	memset(row, 0, sizeof(*row));
	if (reply->kind != CQL_RESULT_ROWS || reply->page_count == 0) {
		snprintf(err, size, "a conditional statement returned no [applied] row");
		return -1;
	}
	const struct cql_rows *rows = &reply->pages[0];
	struct cql_columns_cursor cc;
	struct cql_column column;
	unsigned n = 0;
	cql_columns_cursor_init(&cc, &rows->metadata);
	while (n < LWT_MAX_COLS && cql_columns_next(&cc, &column)) {
		snprintf(row->names[n], sizeof(row->names[n]), "%.*s", (int)column.name.len,
			 column.name.data);
		n++;
	}
	row->named = n > 0;
	unsigned count =
		rows->metadata.column_count < 0 ? 0 : (unsigned)rows->metadata.column_count;
	if (count > LWT_MAX_COLS)
		count = LWT_MAX_COLS;
	struct cql_rows_cursor rc;
	cql_rows_cursor_init(&rc, rows);
	const char *error;
	if (count == 0 || !cql_rows_next(&rc, row->cells, count) ||
	    cql_value_boolean(&row->cells[0], &row->applied, &error) != 1) {
		snprintf(err, size, "a conditional statement returned no [applied] value");
		return -1;
	}
	row->count = count;
	return 0;
}

/* The column name, or position pos when there are no names; NULL if the
 * row does not have it. */
static const struct cql_value *lwt_col(const struct lwt_row *row, const char *name, unsigned pos)
{
	if (row->named) {
		for (unsigned i = 0; i < row->count; i++) {
			if (strcmp(row->names[i], name) == 0)
				return &row->cells[i];
		}
		return NULL;
	}
	return pos < row->count ? &row->cells[pos] : NULL;
}

/* ---- running requests ---- */

static int make_ssl_ctx(struct cassdb *db, const char **error_r)
{
	if (!db->spec.tls)
		return 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return fail(db, error_r, "geodb: cannot create a TLS context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (db->spec.tls_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, db->spec.tls_ca, NULL) != 1) {
			unsigned long e = ERR_get_error();
			SSL_CTX_free(ctx);
			return fail(db, error_r, "geodb: tls_ca %s: %s", db->spec.tls_ca,
				    e != 0 ? ERR_reason_error_string(e) : "not usable");
		}
	} else if (db->spec.tls_verify) {
		SSL_CTX_set_default_verify_paths(ctx);
	}
	SSL_CTX_set_verify(ctx, db->spec.tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	db->ssl_ctx = ctx;
	return 0;
}

static int client_create(struct cassdb *db, struct event_base *base, struct cql_client **client_r,
			 const char **error_r)
{
	struct cql_client_settings set;
	memset(&set, 0, sizeof(set));
	set.hosts = (const char *const *)db->spec.hosts;
	set.host_count = db->spec.host_count;
	set.port = (uint16_t)db->spec.port;
	set.keyspace = NULL; /* statements name it: it may not exist yet */
	set.local_dc = db->spec.local_dc;
	set.username = db->spec.username;
	set.password = db->spec.password;
	set.ssl_ctx = db->ssl_ctx;
	set.tls_verify = db->spec.tls_verify;
	set.connections_per_host = db->spec.connections;
	set.connect_timeout_ms = db->spec.connect_timeout_ms;
	set.request_timeout_ms = db->request_timeout_ms;
	const char *error;
	if (cql_client_create(base, &set, client_r, &error) < 0)
		return fail(db, error_r, "geodb: cassandra client: %s", error);
	return 0;
}

static int ensure_sync(struct cassdb *db, const char **error_r)
{
	if (db->sync != NULL)
		return 0;
	if (db->sync_base == NULL) {
		db->sync_base = event_base_new();
		if (db->sync_base == NULL)
			return fail(db, error_r, "geodb: cannot create an event base");
	}
	return client_create(db, db->sync_base, &db->sync, error_r);
}

struct call {
	struct cassdb *db;
	const char *what;
	reply_fn *fn;
	void *context;
	bool done;
	int ret;
};

static void call_done(const struct cql_reply *reply, void *context)
{
	struct call *call = context;
	struct cassdb *db = call->db;
	char err[768];
	if (reply->error != NULL) {
		reply_error(db, reply, call->what, db->error, sizeof(db->error));
		db->error_code = reply->error_code;
		call->ret = -1;
	} else if (call->fn != NULL) {
		call->ret = call->fn(db, reply, call->context, err, sizeof(err));
		if (call->ret < 0)
			snprintf(db->error, sizeof(db->error), "geodb: %s: %s", call->what, err);
	} else {
		call->ret = 0;
	}
	call->done = true;
}

/* Runs one statement on the synchronous client and waits for it.  fn (if
 * any) reads the reply; returns what fn returned (0 without fn) or -1. */
static int run(struct cassdb *db, const char *what, enum stmt_id id, const char *cql,
	       struct vals *v, unsigned flags, reply_fn *fn, void *context, const char **error_r)
{
	if (cql == NULL)
		cql = db->cql[id];
	db->error_code = 0;
	if (v != NULL && v->error != NULL) {
		fail(db, error_r, "geodb: %s: %s", what, v->error);
		v_free(v);
		return -1;
	}
	if (ensure_sync(db, error_r) < 0) {
		if (v != NULL)
			v_free(v);
		return -1;
	}
	struct call call = {db, what, fn, context, false, 0};
	struct cql_request req;
	fill_request(db, &req, cql, v, flags);
	struct cql_pending *pending = cql_client_execute(db->sync, &req, call_done, &call);
	if (v != NULL)
		v_free(v);
	if (cql_client_wait(db->sync, &call.done) < 0 && !call.done) {
		cql_client_cancel(&pending);
		return fail(db, error_r, "geodb: %s: the CQL client stopped before the answer came",
			    what);
	}
	if (call.ret < 0)
		*error_r = db->error;
	return call.ret;
}

static int reply_lwt_applied(struct cassdb *db, const struct cql_reply *reply, void *context,
			     char *err, size_t size)
{
	struct lwt_row row;
	if (lwt_parse(reply, &row, err, size) < 0)
		return -1;
	return row.applied ? 1 : 0;
}

static int parse_version(const char *text, unsigned *version_r)
{
	unsigned long v;
	char *end;
	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || v > 0xffffffffUL)
		return -1;
	*version_r = (unsigned)v;
	return 0;
}

struct meta_value {
	bool found;
	char value[64];
};

static int reply_meta_value(struct cassdb *db, const struct cql_reply *reply, void *context,
			    char *err, size_t size)
{
	struct meta_value *mv = context;
	if (need_rows(reply, err, size) < 0)
		return -1;
	struct cql_reply_cursor cursor;
	struct cql_value cell;
	cql_reply_cursor_init(&cursor, reply);
	mv->found = cql_reply_next_row(&cursor, &cell, 1);
	if (mv->found && cell_text(&cell, "value", mv->value, sizeof(mv->value), err, size) < 0)
		return -1;
	return 0;
}

/* meta.schema_version: 1 found (*version_r), 0 none, -1 error.  A
 * keyspace or meta table that does not exist is "none" when
 * missing_is_none, else the no-schema error. */
static int read_schema_version(struct cassdb *db, unsigned *version_r, const char **error_r)
{
	struct meta_value mv = {0};
	struct vals v = {0};
	v_text(&v, "schema_version");
	if (run(db, "reading the schema version (table meta)", Q_META_GET, NULL, &v, F_READ,
		reply_meta_value, &mv, error_r) < 0)
		return -1;
	if (!mv.found)
		return 0;
	if (parse_version(mv.value, version_r) < 0)
		return fail(db, error_r,
			    "geodb: keyspace %s: meta schema_version '%s' is not a number",
			    db->spec.keyspace, mv.value);
	return 1;
}

/* Before the first operation: the keyspace must have our schema, at our
 * version. */
static int ready(struct cassdb *db, const char **error_r)
{
	if (db->schema_ok)
		return 0;
	unsigned version = 0;
	int found = read_schema_version(db, &version, error_r);
	if (found < 0)
		return -1;
	if (found == 0) {
		no_schema_sentence(db, db->error, sizeof(db->error));
		*error_r = db->error;
		return -1;
	}
	if (version > GEODB_SCHEMA_VERSION)
		return fail(db, error_r,
			    "geodb: keyspace %s has schema version %u, newer than this "
			    "mailcluster knows (%d): upgrade mailcluster",
			    db->spec.keyspace, version, GEODB_SCHEMA_VERSION);
	if (version < GEODB_SCHEMA_VERSION)
		return fail(db, error_r,
			    "geodb: keyspace %s has schema version %u; run 'mailcluster geodb "
			    "init' to upgrade it to %d",
			    db->spec.keyspace, version, GEODB_SCHEMA_VERSION);
	db->schema_ok = true;
	return 0;
}

/* ---- open, close, spec ---- */

static int cass_spec_check(const char *args, const char **error_r)
{
	static __thread char error[512];
	struct cass_spec spec;
	if (parse_spec(args, &spec, error, sizeof(error)) < 0) {
		*error_r = error;
		return -1;
	}
	spec_free(&spec);
	return 0;
}

static void build_schema_text(struct cassdb *db)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	fprintf(f,
		"-- mailcluster GeoDB schema, version %d (Apache Cassandra)\n"
		"CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': "
		"'NetworkTopologyStrategy', %s} AND durable_writes = true;\n",
		GEODB_SCHEMA_VERSION, db->spec.keyspace,
		db->spec.replication != NULL ? db->spec.replication
					     : "<every data centre>: <min(3, its nodes)>");
	for (size_t i = 0; i < sizeof(schema_versions) / sizeof(schema_versions[0]); i++) {
		fprintf(f, "-- version %u\n", schema_versions[i].version);
		for (const char *const *s = schema_versions[i].statements; *s != NULL; s++) {
			char *stmt = format_ks(*s, db->spec.keyspace);
			fprintf(f, "%s;\n", stmt);
			free(stmt);
		}
	}
	fprintf(f, "INSERT INTO %s.meta (key, value) VALUES ('schema_version', '%d');\n",
		db->spec.keyspace, GEODB_SCHEMA_VERSION);
	fclose(f);
	db->schema_text = text;
}

static void cass_close(struct geodb *geo);

static int cass_open(const char *args, unsigned busy_timeout_ms, struct geodb **db_r,
		     const char **error_r)
{
	static __thread char open_error[1024];
	struct cassdb *db = calloc(1, sizeof(*db));
	if (parse_spec(args, &db->spec, open_error, sizeof(open_error)) < 0) {
		free(db);
		*error_r = open_error;
		return -1;
	}
	db->request_timeout_ms = db->spec.request_timeout_ms != 0 ? db->spec.request_timeout_ms
				 : busy_timeout_ms != 0           ? busy_timeout_ms
								  : 5000;
	for (int i = 0; i < Q_COUNT; i++)
		db->cql[i] = format_ks(stmt_templates[i], db->spec.keyspace);
	build_schema_text(db);
	const char *error;
	if (make_ssl_ctx(db, &error) < 0) {
		snprintf(open_error, sizeof(open_error), "%s", error);
		*error_r = open_error;
		cass_close(&db->geo);
		return -1;
	}
	*db_r = &db->geo;
	return 0;
}

/* ---- asynchronous jobs ---- */

enum job_kind { JOB_SNAPSHOT, JOB_ASSIGN, JOB_HEALTH, JOB_LEASE, JOB_LEASE_RELEASE };

/* The statements of an assignment (geodb_group_assign_if_absent()):
 *   ASSIGN_INSERT  INSERT ... IF NOT EXISTS.  Applied: ours is stored.  Not
 *                  applied, the reply carries the row: on a backend, theirs
 *                  won; unassigned (backend '': its backend was removed),
 *                  claim it.
 *   ASSIGN_CLAIM   UPDATE ... IF backend = '' AND epoch = the epoch seen,
 *                  to ours over it (geodb_group_claim()).  Applied: ours is
 *                  stored; else read the row.
 *   ASSIGN_READ    the row at the serial consistency (a condition that
 *                  failed returns only its own columns).  None: insert
 *                  again; unassigned still (another epoch): claim again;
 *                  on a backend: theirs won.
 * Two writers racing agree: each conditional write is decided by Paxos,
 * and the loser reads the row that won.  At most GROUP_SET_ATTEMPTS
 * claims; a write timeout that comes back at once is sent again (see
 * ASSIGN_ATTEMPTS). */
enum assign_step { ASSIGN_INSERT, ASSIGN_CLAIM, ASSIGN_READ };

struct lease_ctx {
	bool exists;
	char holder[NAME_MAX_LEN + 1];
	int64_t expires_at;
};

struct snap_part {
	struct async_job *job;
	unsigned index;
	struct cql_pending *pending;
};

/* A heartbeat row a failover cell of the snapshot needs: (home site, bucket). */
struct snap_heartbeat_need {
	char site[NAME_MAX_LEN + 1];
	int64_t bucket;
};

/* One query of the snapshot's second phase: site's buckets from..to. */
struct snap_heartbeat_range {
	struct async_job *job;
	struct cql_pending *pending;
	char site[NAME_MAX_LEN + 1];
	int64_t from_bucket, to_bucket;
};

struct async_job {
	struct async_job *next, *prev;
	enum job_kind kind;
	struct cassdb *db;
	struct cql_client *client;
	struct geodb_op *op; /* NULL: a synchronous caller waits on done */
	bool done;
	bool failed;
	char error[1024];
	struct event *deferred;
	/* JOB_SNAPSHOT */
	struct geodb_snapshot *snap;
	struct snap_part parts[SNAP_PARTS];
	unsigned remaining; /* parts, then heartbeat ranges, still to come */
	/* its second phase, once every part is in: the heartbeat rows the
	 * failover cells need (sorted by site, bucket; each once) and the
	 * queries that read them */
	struct snap_heartbeat_need *heartbeat_needs;
	size_t heartbeat_need_count;
	struct snap_heartbeat_range *heartbeat_ranges;
	size_t heartbeat_range_count;
	/* JOB_ASSIGN: group is the answer (the row stored) */
	struct geodb_group group;
	struct cql_pending *pending;
	int result;
	unsigned attempts;  /* tries of the statement in flight */
	int64_t started_ms; /* of its first try */
	enum assign_step assign_step;
	struct geodb_group assign_proposal; /* a new row (group_new_row()), as asked */
	struct geodb_group assign_ours;     /* ASSIGN_CLAIM: what it writes */
	uint64_t assign_seen_epoch;         /* ASSIGN_CLAIM: the unassigned row's epoch */
	unsigned assign_claims;             /* claims started */
	bool assign_claim_retried;          /* the claim in flight was sent again */
	/* JOB_HEALTH */
	char health_backend[NAME_MAX_LEN + 1];
	/* JOB_LEASE, JOB_LEASE_RELEASE (attempts above counts the tries) */
	struct geodb_lease lease;    /* name, holder asked for; then the answer */
	struct lease_ctx lease_seen; /* the row as the last refused write saw it */
	unsigned lease_ttl_secs;
	int64_t lease_expires_at; /* of the write in flight */
};

static void job_link(struct cassdb *db, struct async_job *job)
{
	job->next = db->jobs;
	if (db->jobs != NULL)
		db->jobs->prev = job;
	db->jobs = job;
}

static void job_unlink(struct cassdb *db, struct async_job *job)
{
	if (job->prev != NULL)
		job->prev->next = job->next;
	else if (db->jobs == job)
		db->jobs = job->next;
	if (job->next != NULL)
		job->next->prev = job->prev;
	job->next = job->prev = NULL;
}

/* Cancels the job's requests in flight, and frees the snapshot's heartbeat
 * ranges and needs, which only those requests' callbacks use. */
static void job_cancel_requests(struct async_job *job)
{
	for (unsigned i = 0; i < SNAP_PARTS; i++) {
		if (job->parts[i].pending != NULL)
			cql_client_cancel(&job->parts[i].pending);
	}
	for (size_t i = 0; i < job->heartbeat_range_count; i++) {
		if (job->heartbeat_ranges[i].pending != NULL)
			cql_client_cancel(&job->heartbeat_ranges[i].pending);
	}
	free(job->heartbeat_ranges);
	job->heartbeat_ranges = NULL;
	job->heartbeat_range_count = 0;
	free(job->heartbeat_needs);
	job->heartbeat_needs = NULL;
	job->heartbeat_need_count = 0;
	if (job->pending != NULL)
		cql_client_cancel(&job->pending);
}

static void snapshot_free_ptr(struct geodb_snapshot *snap)
{
	if (snap != NULL) {
		geodb_snapshot_free(snap);
		free(snap);
	}
}

/* Finishes a job: hands the result to geodb.c (async) or marks it done
 * (sync; the waiting caller then frees it). */
static void job_finish(struct async_job *job)
{
	job_cancel_requests(job);
	if (job->op == NULL) {
		job->done = true;
		return;
	}
	struct cassdb *db = job->db;
	struct geodb_op *op = job->op;
	job_unlink(db, job);
	if (job->deferred != NULL)
		event_free(job->deferred);
	if (job->kind == JOB_SNAPSHOT) {
		struct geodb_snapshot *snap = job->failed ? NULL : job->snap;
		if (job->failed)
			snapshot_free_ptr(job->snap);
		geodb_op_done_snapshot(op, snap, job->failed ? job->error : NULL);
	} else if (job->kind == JOB_HEALTH || job->kind == JOB_LEASE_RELEASE) {
		geodb_op_done(op, job->failed ? job->error : NULL);
	} else if (job->kind == JOB_LEASE) {
		geodb_op_done_lease(op, job->failed ? -1 : job->result,
				    job->failed ? NULL : &job->lease,
				    job->failed ? job->error : NULL);
	} else {
		geodb_op_done_assign(op, job->failed ? -1 : job->result,
				     job->failed ? NULL : &job->group,
				     job->failed ? job->error : NULL);
	}
	free(job);
}

static void job_deferred_fail(evutil_socket_t fd, short what, void *context)
{
	job_finish(context);
}

/* Fails a job that could not even start: later, from the loop. */
static void job_fail_later(struct async_job *job)
{
	job->failed = true;
	struct event_base *base = job->db->geo.base;
	job->deferred = evtimer_new(base, job_deferred_fail, job);
	struct timeval zero = {0, 0};
	evtimer_add(job->deferred, &zero);
}

/* ---- snapshot ---- */

static const enum stmt_id snap_stmts[SNAP_PARTS] = {Q_META_ALL,      Q_SITE_ALL, Q_BACKEND_ALL,
						    Q_GROUP_ALL,     Q_USER_ALL, Q_FAILOVER_ALL,
						    Q_FORCE_MOVE_ALL};
static const char *const snap_what[SNAP_PARTS] = {"reading the snapshot (table meta)",
						  "reading the snapshot (table sites)",
						  "reading the snapshot (table backends)",
						  "reading the snapshot (table groups)",
						  "reading the snapshot (table users)",
						  "reading the snapshot (table group_failover)",
						  "reading the snapshot (table site_force_moves)"};

static int row_failover(const struct cql_value *c, void *item, char *err, size_t size);
static int row_force_move(const struct cql_value *c, void *item, char *err, size_t size);

static int snap_meta(const struct cql_reply *reply, struct geodb_snapshot *snap, char *err,
		     size_t size)
{
	if (need_rows(reply, err, size) < 0)
		return -1;
	struct cql_reply_cursor cursor;
	struct cql_value cells[2];
	cql_reply_cursor_init(&cursor, reply);
	while (cql_reply_next_row(&cursor, cells, 2)) {
		char key[64], value[64];
		unsigned *target = NULL;
		if (cell_text(&cells[0], "key", key, sizeof(key), err, size) < 0 ||
		    cell_text(&cells[1], "value", value, sizeof(value), err, size) < 0)
			return -1;
		if (strcmp(key, "schema_version") == 0)
			target = &snap->schema_version;
		else if (strcmp(key, "group_count") == 0)
			target = &snap->group_count;
		if (target != NULL && parse_version(value, target) < 0) {
			snprintf(err, size, "bad row: meta %s '%s' is not a number", key, value);
			return -1;
		}
	}
	return 0;
}

static int snap_part_read(unsigned index, const struct cql_reply *reply,
			  struct geodb_snapshot *snap, char *err, size_t size)
{
	switch (index) {
	case 0:
		return snap_meta(reply, snap, err, size);
	case 1:
		if (collect_rows(reply, 4, sizeof(struct geodb_site), row_site,
				 (void **)&snap->sites, &snap->site_count, err, size) < 0)
			return -1;
		geodb_sort_sites(snap->sites, snap->site_count);
		return 0;
	case 2:
		if (collect_rows(reply, BACKEND_COLUMN_COUNT, sizeof(struct geodb_backend),
				 row_backend, (void **)&snap->backends, &snap->backend_count, err,
				 size) < 0)
			return -1;
		geodb_sort_backends(snap->backends, snap->backend_count);
		return 0;
	case 3:
		if (collect_rows(reply, GROUP_COLUMN_COUNT, sizeof(struct geodb_group), row_group,
				 (void **)&snap->groups, &snap->group_row_count, err, size) < 0)
			return -1;
		geodb_sort_groups(snap->groups, snap->group_row_count);
		return 0;
	case 4:
		if (collect_rows(reply, USER_COLUMN_COUNT, sizeof(struct geodb_user), row_user,
				 (void **)&snap->users, &snap->user_count, err, size) < 0)
			return -1;
		geodb_sort_users(snap->users, snap->user_count);
		return 0;
	case 5:
		if (collect_rows(reply, FAILOVER_COLUMN_COUNT, sizeof(struct geodb_group_failover),
				 row_failover, (void **)&snap->failovers, &snap->failover_count,
				 err, size) < 0)
			return -1;
		geodb_sort_failovers(snap->failovers, snap->failover_count);
		return 0;
	default:
		if (collect_rows(reply, FORCE_MOVE_COLUMN_COUNT,
				 sizeof(struct geodb_site_force_move), row_force_move,
				 (void **)&snap->force_moves, &snap->force_move_count, err,
				 size) < 0)
			return -1;
		geodb_sort_force_moves(snap->force_moves, snap->force_move_count);
		return 0;
	}
}

/* ---- the snapshot's second phase: the heartbeat rows its cells need ----
 *
 * A failover cell is void when its group's home site was alive when it was
 * written (brain/site.h, rule 4): when the site has a heartbeat row of
 * bucket(written_at_ms) or the one before.  Those rows come with the
 * snapshot (struct geodb_snapshot), read once the cells and groups are in:
 * per home site, its needed buckets merged into runs of consecutive ones,
 * one range query per run.  A site has up to a week of buckets (8640 a
 * day), so it is never read whole unless it has to be: only when there are
 * more than SNAP_HEARTBEAT_QUERIES_MAX runs (many cells far apart) does each
 * site get one query over its first to last needed bucket, and the rows
 * between, not needed, are dropped.  No cells (the common case): no
 * queries. */

static int heartbeat_need_cmp(const void *a, const void *b)
{
	const struct snap_heartbeat_need *x = a, *y = b;
	int cmp = strcmp(x->site, y->site);
	if (cmp != 0)
		return cmp;
	return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

static int group_id_cmp(const void *key, const void *item)
{
	unsigned id = *(const unsigned *)key;
	unsigned other = ((const struct geodb_group *)item)->group_id;
	return id < other ? -1 : id > other;
}

/* The (home site, bucket)s of snap's cells, sorted and each once: two per
 * cell whose group has a row with a site (snap->groups is sorted). */
static size_t snap_heartbeat_needs(const struct geodb_snapshot *snap,
				   struct snap_heartbeat_need **needs_r)
{
	struct snap_heartbeat_need *needs = calloc(snap->failover_count * 2 + 1, sizeof(*needs));
	size_t count = 0;
	for (size_t i = 0; i < snap->failover_count; i++) {
		const struct geodb_group_failover *cell = &snap->failovers[i];
		const struct geodb_group *group =
			bsearch(&cell->group_id, snap->groups, snap->group_row_count,
				sizeof(*snap->groups), group_id_cmp);
		if (group == NULL || group->site[0] == '\0')
			continue;
		int64_t bucket = cell->written_at_ms / GEODB_HEARTBEAT_BUCKET_MS;
		for (int64_t b = bucket - 1; b <= bucket; b++) {
			snprintf(needs[count].site, sizeof(needs[count].site), "%s", group->site);
			needs[count++].bucket = b;
		}
	}
	if (count > 1)
		qsort(needs, count, sizeof(*needs), heartbeat_need_cmp);
	size_t unique = 0;
	for (size_t i = 0; i < count; i++) {
		if (unique == 0 || heartbeat_need_cmp(&needs[unique - 1], &needs[i]) != 0)
			needs[unique++] = needs[i];
	}
	*needs_r = needs;
	return unique;
}

/* The queries for needs (sorted, each once): a run of consecutive buckets
 * of a site each, or beyond SNAP_HEARTBEAT_QUERIES_MAX runs one per site
 * over its first to last needed bucket.  (More home sites with cells than
 * that would still get one query each; no deployment has them.) */
static size_t snap_heartbeat_ranges(const struct snap_heartbeat_need *needs, size_t need_count,
				    struct snap_heartbeat_range **ranges_r)
{
	size_t runs = 0;
	for (size_t i = 0; i < need_count; i++) {
		if (i == 0 || strcmp(needs[i].site, needs[i - 1].site) != 0 ||
		    needs[i].bucket != needs[i - 1].bucket + 1)
			runs++;
	}
	bool per_site = runs > SNAP_HEARTBEAT_QUERIES_MAX;
	struct snap_heartbeat_range *ranges = calloc(runs + 1, sizeof(*ranges));
	size_t count = 0;
	for (size_t i = 0; i < need_count; i++) {
		struct snap_heartbeat_range *last = count > 0 ? &ranges[count - 1] : NULL;
		if (last != NULL && strcmp(last->site, needs[i].site) == 0 &&
		    (per_site || needs[i].bucket == last->to_bucket + 1)) {
			last->to_bucket = needs[i].bucket;
			continue;
		}
		struct snap_heartbeat_range *range = &ranges[count++];
		snprintf(range->site, sizeof(range->site), "%s", needs[i].site);
		range->from_bucket = range->to_bucket = needs[i].bucket;
	}
	*ranges_r = ranges;
	return count;
}

static const char snap_heartbeat_what[] = "reading the snapshot (table site_heartbeats)";

static int row_heartbeat(const struct cql_value *c, void *item, char *err, size_t size);

/* Adds the rows of a range's reply that a cell needs to the snapshot. */
static int snap_heartbeat_read(struct async_job *job, const struct cql_reply *reply, char *err,
			       size_t size)
{
	struct geodb_site_heartbeat *rows = NULL;
	size_t count = 0;
	if (collect_rows(reply, HEARTBEAT_COLUMN_COUNT, sizeof(*rows), row_heartbeat,
			 (void **)&rows, &count, err, size) < 0)
		return -1;
	struct geodb_snapshot *snap = job->snap;
	if (count > 0)
		snap->heartbeats =
			realloc(snap->heartbeats, (snap->heartbeat_count + count) * sizeof(*rows));
	for (size_t i = 0; i < count; i++) {
		struct snap_heartbeat_need key;
		snprintf(key.site, sizeof(key.site), "%s", rows[i].site);
		key.bucket = rows[i].bucket;
		if (bsearch(&key, job->heartbeat_needs, job->heartbeat_need_count, sizeof(key),
			    heartbeat_need_cmp) != NULL)
			snap->heartbeats[snap->heartbeat_count++] = rows[i];
	}
	free(rows);
	return 0;
}

static void snap_heartbeat_done(const struct cql_reply *reply, void *context)
{
	struct snap_heartbeat_range *range = context;
	struct async_job *job = range->job;
	range->pending = NULL;
	if (job->failed || job->done)
		return;
	char err[768];
	if (reply->error != NULL) {
		reply_error(job->db, reply, snap_heartbeat_what, job->error, sizeof(job->error));
		job->failed = true;
	} else if (snap_heartbeat_read(job, reply, err, sizeof(err)) < 0) {
		snprintf(job->error, sizeof(job->error), "geodb: %s: %s", snap_heartbeat_what, err);
		job->failed = true;
	}
	if (!job->failed && --job->remaining > 0)
		return;
	if (!job->failed)
		geodb_sort_heartbeats(job->snap->heartbeats, job->snap->heartbeat_count);
	job_finish(job); /* frees range */
}

/* Starts the second phase; false if there is nothing to read (or it could
 * not start: job->failed). */
static bool snap_heartbeats_start(struct async_job *job)
{
	const struct geodb_snapshot *snap = job->snap;
	if (snap->failover_count == 0)
		return false;
	job->heartbeat_need_count = snap_heartbeat_needs(snap, &job->heartbeat_needs);
	job->heartbeat_range_count = snap_heartbeat_ranges(
		job->heartbeat_needs, job->heartbeat_need_count, &job->heartbeat_ranges);
	if (job->heartbeat_range_count == 0)
		return false;
	job->remaining = (unsigned)job->heartbeat_range_count;
	for (size_t i = 0; i < job->heartbeat_range_count; i++) {
		struct snap_heartbeat_range *range = &job->heartbeat_ranges[i];
		struct vals v = {0};
		v_text(&v, range->site);
		v_bigint(&v, range->from_bucket);
		v_bigint(&v, range->to_bucket);
		if (v.error != NULL) {
			snprintf(job->error, sizeof(job->error), "geodb: %s: site %s: %s",
				 snap_heartbeat_what, range->site, v.error);
			job->failed = true;
			v_free(&v);
			return false; /* job_finish() cancels the ones sent */
		}
		struct cql_request req;
		fill_request(job->db, &req, job->db->cql[Q_HEARTBEAT_RANGE], &v, F_READ | F_ALL);
		range->job = job;
		range->pending = cql_client_execute(job->client, &req, snap_heartbeat_done, range);
		v_free(&v);
	}
	return true;
}

static void snap_part_done(const struct cql_reply *reply, void *context)
{
	struct snap_part *part = context;
	struct async_job *job = part->job;
	part->pending = NULL;
	if (job->failed || job->done)
		return;
	char err[768];
	if (reply->error != NULL) {
		reply_error(job->db, reply, snap_what[part->index], job->error, sizeof(job->error));
		job->failed = true;
	} else if (snap_part_read(part->index, reply, job->snap, err, sizeof(err)) < 0) {
		snprintf(job->error, sizeof(job->error), "geodb: %s: %s", snap_what[part->index],
			 err);
		job->failed = true;
	}
	if (!job->failed && --job->remaining > 0)
		return;
	if (!job->failed && job->snap->schema_version == 0) {
		no_schema_sentence(job->db, job->error, sizeof(job->error));
		job->failed = true;
	}
	if (!job->failed && snap_heartbeats_start(job))
		return;
	job_finish(job);
}

static void snapshot_start(struct async_job *job)
{
	job->kind = JOB_SNAPSHOT;
	job->snap = calloc(1, sizeof(*job->snap));
	job->remaining = SNAP_PARTS;
	for (unsigned i = 0; i < SNAP_PARTS; i++) {
		struct cql_request req;
		fill_request(job->db, &req, job->db->cql[snap_stmts[i]], NULL, F_READ | F_ALL);
		job->parts[i].job = job;
		job->parts[i].index = i;
		job->parts[i].pending =
			cql_client_execute(job->client, &req, snap_part_done, &job->parts[i]);
	}
}

static int cass_snapshot_read(struct geodb *geo, struct geodb_snapshot *snap_r,
			      const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	struct async_job *job = calloc(1, sizeof(*job));
	job->db = db;
	job->client = db->sync;
	snapshot_start(job);
	int ret = 0;
	if (cql_client_wait(db->sync, &job->done) < 0 && !job->done) {
		job_cancel_requests(job);
		snprintf(job->error, sizeof(job->error),
			 "geodb: reading the snapshot: the CQL client stopped before the answer "
			 "came");
		job->failed = true;
	}
	if (job->failed) {
		ret = fail(db, error_r, "%s", job->error);
		snapshot_free_ptr(job->snap);
	} else {
		*snap_r = *job->snap;
		free(job->snap);
	}
	free(job);
	return ret;
}

static void cass_snapshot_read_async(struct geodb *geo, struct geodb_op *op)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct async_job *job = calloc(1, sizeof(*job));
	job->db = db;
	job->op = op;
	job->client = db->async;
	job->kind = JOB_SNAPSHOT;
	job_link(db, job);
	if (db->async == NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: reading the snapshot: not attached to an event loop");
		job_fail_later(job);
		return;
	}
	snapshot_start(job);
}

/* ---- conditional group insert ---- */

static void group_values(struct cassdb *db, struct vals *v, const struct geodb_group *group,
			 int64_t now)
{
	v_int(v, (int32_t)group->group_id);
	v_text(v, group->site);
	v_text(v, group->backend);
	v_bigint(v, (int64_t)group->epoch);
	v_text(v, db->geo.writer);
	v_bigint(v, now);
	v_text(v, group->alt_backend);
	v_text(v, group->move_to);
	v_bigint(v, group->move_started_ms);
	v_text(v, group->move_reason);
	char history[GEODB_HISTORY_TEXT_MAX];
	geodb_history_format(group, history, sizeof(history));
	v_bool(v, group->sticky);
	v_bigint(v, group->moved_at_ms);
	v_text(v, history);
	v_text(v, group->failover_site);
}

/* A new group is not sticky and has no history (geodb_group_assign_if_absent()). */
static void group_new_row(struct geodb_group *group)
{
	group->sticky = false;
	group->moved_at_ms = 0;
	memset(group->history, 0, sizeof(group->history));
}

/* From a not-applied INSERT ... IF NOT EXISTS on groups: the stored row. */
static int lwt_group(const struct lwt_row *row, struct geodb_group *group, char *err, size_t size)
{
	/* by position: [applied], group_id, alt_backend, backend, epoch,
	 * failover_site, history, move_reason, move_started, move_to, moved_at,
	 * site, sticky, written_at, written_by (key, then the regular columns
	 * in name order) */
	const struct cql_value *id = lwt_col(row, "group_id", 1);
	const struct cql_value *backend = lwt_col(row, "backend", 3);
	const struct cql_value *epoch = lwt_col(row, "epoch", 4);
	const struct cql_value *site = lwt_col(row, "site", 11);
	const struct cql_value *at = lwt_col(row, "written_at", 13);
	const struct cql_value *by = lwt_col(row, "written_by", 14);
	if (id == NULL || backend == NULL || epoch == NULL || site == NULL || at == NULL ||
	    by == NULL) {
		snprintf(err, size, "the conditional insert was not applied but returned no row");
		return -1;
	}
	const struct cql_value null_cell = {.data = NULL, .len = -1, .type = CQL_TYPE_UNKNOWN};
	const struct cql_value *alt = lwt_col(row, "alt_backend", 2);
	const struct cql_value *failover_site = lwt_col(row, "failover_site", 5);
	const struct cql_value *history = lwt_col(row, "history", 6);
	const struct cql_value *move_reason = lwt_col(row, "move_reason", 7);
	const struct cql_value *move_started = lwt_col(row, "move_started", 8);
	const struct cql_value *move_to = lwt_col(row, "move_to", 9);
	const struct cql_value *moved_at = lwt_col(row, "moved_at", 10);
	const struct cql_value *sticky = lwt_col(row, "sticky", 12);
	struct cql_value cells[GROUP_COLUMN_COUNT] = {
		*id,
		*site,
		*backend,
		*epoch,
		*by,
		*at,
		alt != NULL ? *alt : null_cell,
		move_to != NULL ? *move_to : null_cell,
		move_started != NULL ? *move_started : null_cell,
		move_reason != NULL ? *move_reason : null_cell,
		sticky != NULL ? *sticky : null_cell,
		moved_at != NULL ? *moved_at : null_cell,
		history != NULL ? *history : null_cell,
		failover_site != NULL ? *failover_site : null_cell,
	};
	return row_group(cells, group, err, size);
}

/* 1 ours stored, 0 another's (group filled with it), -1 */
static int assign_reply(struct cassdb *db, const struct cql_reply *reply, struct geodb_group *group,
			int64_t now, char *err, size_t size)
{
	struct lwt_row row;
	if (lwt_parse(reply, &row, err, size) < 0)
		return -1;
	if (row.applied) {
		snprintf(group->written_by, sizeof(group->written_by), "%s", db->geo.writer);
		group->written_at = now;
		return 1;
	}
	struct geodb_group stored;
	if (lwt_group(&row, &stored, err, size) < 0)
		return -1;
	*group = stored;
	return 0;
}

/* The values of Q_GROUP_CLAIM_IF: ours (epoch seen + 1), if the row is
 * still unassigned at seen_epoch. */
static void claim_values(struct vals *v, const struct geodb_group *ours, uint64_t seen_epoch)
{
	v_text(v, ours->site);
	v_text(v, ours->backend);
	v_text(v, ours->alt_backend);
	v_text(v, ours->failover_site);
	v_text(v, ours->move_to);
	v_bigint(v, ours->move_started_ms);
	v_text(v, ours->move_reason);
	v_bigint(v, (int64_t)ours->epoch);
	v_text(v, ours->written_by);
	v_bigint(v, ours->written_at);
	v_int(v, (int32_t)ours->group_id);
	v_bigint(v, (int64_t)seen_epoch);
}

static bool same_group_row(const struct geodb_group *x, const struct geodb_group *y);
static void assign_done(const struct cql_reply *reply, void *context);

static void assign_what(const struct async_job *job, char *buf, size_t size)
{
	snprintf(buf, size, "assigning group %u (table groups%s)", job->assign_proposal.group_id,
		 job->assign_step == ASSIGN_CLAIM  ? ", claiming its unassigned row"
		 : job->assign_step == ASSIGN_READ ? ", serial read"
						   : "");
}

/* Sends the statement of job's step; false (job->error set) if it cannot. */
static bool assign_send(struct async_job *job)
{
	struct cassdb *db = job->db;
	struct vals v = {0};
	enum stmt_id id = Q_GROUP_INSERT;
	unsigned flags = F_COND;
	if (job->assign_step == ASSIGN_INSERT) {
		group_values(db, &v, &job->assign_proposal, job->assign_proposal.written_at);
	} else if (job->assign_step == ASSIGN_CLAIM) {
		claim_values(&v, &job->assign_ours, job->assign_seen_epoch);
		id = Q_GROUP_CLAIM_IF;
	} else {
		v_int(&v, (int32_t)job->assign_proposal.group_id);
		id = Q_GROUP_GET;
		flags = F_SERIAL;
	}
	if (v.error != NULL) {
		char what[160];
		assign_what(job, what, sizeof(what));
		snprintf(job->error, sizeof(job->error), "geodb: %s: %s", what, v.error);
		v_free(&v);
		return false;
	}
	struct cql_request req;
	fill_request(db, &req, db->cql[id], &v, flags);
	job->attempts++;
	job->pending = cql_client_execute(job->client, &req, assign_done, job);
	v_free(&v);
	return true;
}

/* Moves job on to step and sends its statement; false (job->error set) if
 * it cannot. */
static bool assign_step_start(struct async_job *job, enum assign_step step)
{
	job->assign_step = step;
	job->attempts = 0;
	job->started_ms = now_ms();
	return assign_send(job);
}

/* job->group is the group's row, unassigned: claims it for the proposal. */
static bool assign_claim(struct async_job *job)
{
	if (job->assign_claims++ >= GROUP_SET_ATTEMPTS) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: assigning group %u (table groups): its unassigned row kept "
			 "changing under us (%d attempts); try again",
			 job->assign_proposal.group_id, GROUP_SET_ATTEMPTS);
		return false;
	}
	job->assign_ours = job->assign_proposal;
	geodb_group_claim(&job->assign_ours, &job->group);
	snprintf(job->assign_ours.written_by, sizeof(job->assign_ours.written_by), "%s",
		 job->db->geo.writer);
	job->assign_ours.written_at = now_seconds();
	job->assign_seen_epoch = job->group.epoch;
	job->assign_claim_retried = false;
	return assign_step_start(job, ASSIGN_CLAIM);
}

/* The answer to job's step.  Returns 1 when the next statement is in
 * flight, 0 when the job is done (job->result, job->group), -1 on failure
 * (job->error). */
static int assign_next(struct async_job *job, const struct cql_reply *reply)
{
	char what[160], err[768];
	assign_what(job, what, sizeof(what));
	if (job->assign_step == ASSIGN_INSERT) {
		job->group = job->assign_proposal;
		int r = assign_reply(job->db, reply, &job->group, job->assign_proposal.written_at,
				     err, sizeof(err));
		if (r < 0)
			goto bad;
		if (r == 1 || job->group.backend[0] != '\0') {
			job->result = r;
			return 0;
		}
		return assign_claim(job) ? 1 : -1;
	}
	if (job->assign_step == ASSIGN_CLAIM) {
		struct lwt_row row;
		if (lwt_parse(reply, &row, err, sizeof(err)) < 0)
			goto bad;
		if (row.applied) {
			job->group = job->assign_ours;
			job->result = 1;
			return 0;
		}
		return assign_step_start(job, ASSIGN_READ) ? 1 : -1;
	}
	struct geodb_group seen;
	int found = first_row(reply, GROUP_COLUMN_COUNT, row_group, &seen, err, sizeof(err));
	if (found < 0)
		goto bad;
	if (found == 0) /* gone (nothing deletes a group row today): a new one */
		return assign_step_start(job, ASSIGN_INSERT) ? 1 : -1;
	job->group = seen;
	/* a claim sent again finds its first try's row: ours */
	if (job->assign_claim_retried && same_group_row(&seen, &job->assign_ours)) {
		job->result = 1;
		return 0;
	}
	if (seen.backend[0] != '\0') {
		job->result = 0;
		return 0;
	}
	return assign_claim(job) ? 1 : -1;
bad:
	snprintf(job->error, sizeof(job->error), "geodb: %s: %s", what, err);
	return -1;
}

static void assign_done(const struct cql_reply *reply, void *context)
{
	struct async_job *job = context;
	job->pending = NULL;
	if (reply->error != NULL) {
		char what[160];
		assign_what(job, what, sizeof(what));
		reply_error(job->db, reply, what, job->error, sizeof(job->error));
		if (job->assign_step != ASSIGN_READ &&
		    reply->error_code == CQL_ERROR_WRITE_TIMEOUT &&
		    job->attempts < ASSIGN_ATTEMPTS &&
		    now_ms() - job->started_ms < ASSIGN_RETRY_WITHIN_MS) {
			log_info("event=geodb_retry op=assign group=%u attempt=%u reason=\"%s\"",
				 job->assign_proposal.group_id, job->attempts + 1, job->error);
			if (job->assign_step == ASSIGN_CLAIM)
				job->assign_claim_retried = true;
			if (assign_send(job))
				return;
		}
		job->failed = true;
	} else {
		int r = assign_next(job, reply);
		if (r > 0)
			return;
		job->failed = r < 0;
	}
	job_finish(job);
}

static struct async_job *assign_job_new(struct cassdb *db, const struct geodb_group *group,
					struct cql_client *client)
{
	struct async_job *job = calloc(1, sizeof(*job));
	job->db = db;
	job->client = client;
	job->kind = JOB_ASSIGN;
	job->assign_proposal = *group;
	group_new_row(&job->assign_proposal);
	job->assign_proposal.written_at = now_seconds();
	job->group = job->assign_proposal;
	return job;
}

static int cass_group_assign_if_absent(struct geodb *geo, struct geodb_group *group,
				       const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0 || ensure_sync(db, error_r) < 0)
		return -1;
	/* the job the asynchronous call runs, on the private client */
	struct async_job *job = assign_job_new(db, group, db->sync);
	if (!assign_step_start(job, ASSIGN_INSERT)) {
		job->failed = true;
	} else if (cql_client_wait(db->sync, &job->done) < 0 && !job->done) {
		job_cancel_requests(job);
		snprintf(job->error, sizeof(job->error),
			 "geodb: assigning group %u (table groups): the CQL client stopped before "
			 "the answer came",
			 group->group_id);
		job->failed = true;
	}
	int ret;
	if (job->failed) {
		ret = fail(db, error_r, "%s", job->error);
	} else {
		*group = job->group;
		ret = job->result;
	}
	free(job);
	return ret;
}

static void cass_group_assign_async(struct geodb *geo, struct geodb_op *op,
				    const struct geodb_group *group)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct async_job *job = assign_job_new(db, group, db->async);
	job->op = op;
	job_link(db, job);
	if (db->async == NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: assigning group %u (table groups): not attached to an event loop",
			 group->group_id);
		job_fail_later(job);
		return;
	}
	if (!assign_step_start(job, ASSIGN_INSERT))
		job_fail_later(job);
}

static int cass_attach(struct geodb *geo, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (db->async != NULL)
		return fail(db, error_r, "geodb: already attached to an event loop");
	return client_create(db, geo->base, &db->async, error_r);
}

static void cass_close(struct geodb *geo)
{
	struct cassdb *db = (struct cassdb *)geo;
	/* ops still in flight end with an error (their callbacks run unless
	 * they were cancelled) */
	while (db->jobs != NULL) {
		struct async_job *job = db->jobs;
		if (!job->failed) {
			job->failed = true;
			snprintf(job->error, sizeof(job->error),
				 "geodb: the GeoDB was closed before the answer came");
		}
		job_finish(job);
	}
	if (db->async != NULL)
		cql_client_destroy(&db->async);
	if (db->sync != NULL)
		cql_client_destroy(&db->sync);
	if (db->sync_base != NULL)
		event_base_free(db->sync_base);
	if (db->ssl_ctx != NULL)
		SSL_CTX_free(db->ssl_ctx);
	for (int i = 0; i < Q_COUNT; i++)
		free(db->cql[i]);
	free(db->schema_text);
	spec_free(&db->spec);
	free(db);
}

/* ---- init ---- */

struct strset {
	char items[64][64];
	unsigned count;
};

static void strset_add(struct strset *set, const char *item)
{
	for (unsigned i = 0; i < set->count; i++) {
		if (strcmp(set->items[i], item) == 0)
			return;
	}
	if (set->count < 64)
		snprintf(set->items[set->count++], sizeof(set->items[0]), "%s", item);
}

static bool strset_has(const struct strset *set, const char *item)
{
	for (unsigned i = 0; i < set->count; i++) {
		if (strcmp(set->items[i], item) == 0)
			return true;
	}
	return false;
}

/* The cluster's nodes as system.local and system.peers describe them. */
struct topology {
	struct node {
		char address[64]; /* hex of the inet bytes */
		char dc[64];
	} nodes[64];
	unsigned node_count;
	struct strset local_hosts, peer_hosts; /* which nodes answered */
	struct strset versions;
	unsigned version_nulls;
};

static void inet_key(const struct cql_value *v, char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = '\0';
	for (int32_t i = 0; v->data != NULL && i < v->len && n + 3 < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%02x", v->data[i]);
}

static int reply_nodes(struct cassdb *db, const struct cql_reply *reply, void *context, char *err,
		       size_t size, bool local)
{
	struct topology *topo = context;
	if (need_rows(reply, err, size) < 0)
		return -1;
	strset_add(local ? &topo->local_hosts : &topo->peer_hosts,
		   reply->host != NULL ? reply->host : "?");
	struct cql_reply_cursor cursor;
	struct cql_value cells[2];
	cql_reply_cursor_init(&cursor, reply);
	while (cql_reply_next_row(&cursor, cells, 2)) {
		char address[64], dc[64];
		inet_key(&cells[0], address, sizeof(address));
		if (cell_text(&cells[1], "data_center", dc, sizeof(dc), err, size) < 0)
			return -1;
		if (dc[0] == '\0')
			continue;
		bool known = false;
		for (unsigned i = 0; i < topo->node_count && !known; i++)
			known = strcmp(topo->nodes[i].address, address) == 0;
		if (!known && topo->node_count < 64) {
			struct node *node = &topo->nodes[topo->node_count++];
			snprintf(node->address, sizeof(node->address), "%s", address);
			snprintf(node->dc, sizeof(node->dc), "%s", dc);
		}
	}
	return 0;
}

static int reply_local_nodes(struct cassdb *db, const struct cql_reply *reply, void *context,
			     char *err, size_t size)
{
	return reply_nodes(db, reply, context, err, size, true);
}

static int reply_peer_nodes(struct cassdb *db, const struct cql_reply *reply, void *context,
			    char *err, size_t size)
{
	return reply_nodes(db, reply, context, err, size, false);
}

/* The answers so far cover every node: one node answered both system.local
 * and system.peers, or two nodes listed their peers (between them they list
 * every node). */
static bool topology_complete(const struct topology *topo)
{
	if (topo->peer_hosts.count >= 2)
		return true;
	for (unsigned i = 0; i < topo->local_hosts.count; i++) {
		if (strset_has(&topo->peer_hosts, topo->local_hosts.items[i]))
			return true;
	}
	return false;
}

/* system.local from one node, then system.peers until the answers cover
 * every node (topology_complete()).  The client takes the nodes in turn, so
 * asked in pairs, system.local and system.peers would reach two different
 * nodes every time and the second node's own row would never be read.
 * 1 complete, 0 not (after a bound), -1 error. */
static int read_topology(struct cassdb *db, const char *what, const char *local_cql,
			 reply_fn *local_fn, const char *peers_cql, reply_fn *peers_fn,
			 struct topology *topo, const char **error_r)
{
	char what_local[160], what_peers[160];
	snprintf(what_local, sizeof(what_local), "%s (system.local)", what);
	snprintf(what_peers, sizeof(what_peers), "%s (system.peers)", what);
	if (run(db, what_local, 0, local_cql, NULL, F_LOCAL, local_fn, topo, error_r) < 0)
		return -1;
	unsigned tries = db->spec.host_count * db->spec.connections + 1;
	for (unsigned i = 0; i < tries; i++) {
		if (run(db, what_peers, 0, peers_cql, NULL, F_LOCAL, peers_fn, topo, error_r) < 0)
			return -1;
		if (topology_complete(topo))
			return 1;
	}
	return 0;
}

/* "'dc1': 3, 'dc2': 1": every data centre with min(3, its nodes). */
static int discover_replication(struct cassdb *db, char *out, size_t out_size, const char **error_r)
{
	struct topology *topo = calloc(1, sizeof(*topo));
	int ret = 0;
	int complete = read_topology(db, "reading the cluster's data centres",
				     "SELECT broadcast_address, data_center FROM system.local",
				     reply_local_nodes, "SELECT peer, data_center FROM system.peers",
				     reply_peer_nodes, topo, error_r);
	if (complete < 0)
		ret = -1;
	else if (complete == 0)
		ret = fail(db, error_r,
			   "geodb: could not read the whole cluster's data centres (no node answered "
			   "both system.local and system.peers); give replication=dc1:3,dc2:3 in the "
			   "spec");
	else if (topo->node_count == 0)
		ret = fail(db, error_r,
			   "geodb: the cluster reported no data centres; give replication=dc1:3 "
			   "in the spec");
	size_t used = 0;
	out[0] = '\0';
	for (unsigned i = 0; ret == 0 && i < topo->node_count; i++) {
		bool seen = false;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = strcmp(topo->nodes[j].dc, topo->nodes[i].dc) == 0;
		if (seen)
			continue;
		unsigned n = 0;
		for (unsigned j = 0; j < topo->node_count; j++)
			n += strcmp(topo->nodes[j].dc, topo->nodes[i].dc) == 0;
		if (!text_is_plain(topo->nodes[i].dc)) {
			ret = fail(db, error_r, "geodb: data centre name '%s' cannot be quoted",
				   topo->nodes[i].dc);
			break;
		}
		used += (size_t)snprintf(out + used, out_size - used, "%s'%s': %u",
					 used > 0 ? ", " : "", topo->nodes[i].dc, n < 3 ? n : 3);
		if (used >= out_size) {
			ret = fail(db, error_r, "geodb: too many data centres");
			break;
		}
	}
	free(topo);
	return ret;
}

static int reply_versions(struct cassdb *db, const struct cql_reply *reply, void *context,
			  char *err, size_t size, bool local)
{
	struct topology *topo = context;
	if (need_rows(reply, err, size) < 0)
		return -1;
	strset_add(local ? &topo->local_hosts : &topo->peer_hosts,
		   reply->host != NULL ? reply->host : "?");
	struct cql_reply_cursor cursor;
	struct cql_value cell;
	cql_reply_cursor_init(&cursor, reply);
	while (cql_reply_next_row(&cursor, &cell, 1)) {
		unsigned char uuid[CQL_UUID_LEN];
		const char *error;
		int r = cql_value_uuid(&cell, uuid, &error);
		if (r < 0)
			return bad_cell(err, size, "schema_version", error);
		if (r == 0) {
			topo->version_nulls++;
			continue;
		}
		char key[64];
		struct cql_value v = {uuid, CQL_UUID_LEN, CQL_TYPE_UUID};
		inet_key(&v, key, sizeof(key));
		strset_add(&topo->versions, key);
	}
	return 0;
}

static int reply_local_versions(struct cassdb *db, const struct cql_reply *reply, void *context,
				char *err, size_t size)
{
	return reply_versions(db, reply, context, err, size, true);
}

static int reply_peer_versions(struct cassdb *db, const struct cql_reply *reply, void *context,
			       char *err, size_t size)
{
	return reply_versions(db, reply, context, err, size, false);
}

/* After schema changes: until every node reports the same schema version
 * (bounded): a node's own version (system.local) and the versions it has
 * heard of from every other node (system.peers: a node announces its new
 * version once it has applied the change).  A single node agrees at once. */
static int wait_schema_agreement(struct cassdb *db, const char **error_r)
{
	unsigned limit = db->request_timeout_ms > 10000 ? db->request_timeout_ms : 10000;
	int64_t deadline = now_ms() + limit;
	unsigned agreed = 0;
	for (;;) {
		struct topology *topo = calloc(1, sizeof(*topo));
		int complete = read_topology(db, "checking schema agreement",
					     "SELECT schema_version FROM system.local",
					     reply_local_versions,
					     "SELECT schema_version FROM system.peers",
					     reply_peer_versions, topo, error_r);
		unsigned versions = topo->versions.count;
		free(topo);
		if (complete < 0)
			return -1;
		agreed = complete == 1 && versions <= 1 ? agreed + 1 : 0;
		/* two agreeing rounds in a row (different nodes may answer them) */
		if (agreed >= (db->spec.host_count > 1 ? 2u : 1u))
			return 0;
		if (now_ms() >= deadline)
			return fail(
				db, error_r,
				"geodb: the nodes did not agree on the schema within %u ms; run "
				"'mailcluster geodb init' again",
				limit);
		usleep(200 * 1000);
	}
}

static int reply_count(struct cassdb *db, const struct cql_reply *reply, void *context, char *err,
		       size_t size)
{
	if (need_rows(reply, err, size) < 0)
		return -1;
	return (int)cql_reply_row_count(reply);
}

static int run_ddl(struct cassdb *db, const char *cql, const char **error_r)
{
	char what[160];
	snprintf(what, sizeof(what), "creating the schema (%.100s...)", cql);
	return run(db, what, 0, cql, NULL, F_DDL, NULL, NULL, error_r);
}

static int cass_init(struct geodb *geo, unsigned *from_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	const char *ks = db->spec.keyspace;
	struct vals v = {0};
	v_text(&v, ks);
	int found = run(db, "looking for the keyspace (system_schema.keyspaces)", 0,
			"SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
			&v, F_LOCAL, reply_count, NULL, error_r);
	if (found < 0)
		return -1;
	if (found == 0) {
		char replication[1024];
		if (db->spec.replication != NULL)
			snprintf(replication, sizeof(replication), "%s", db->spec.replication);
		else if (discover_replication(db, replication, sizeof(replication), error_r) < 0)
			return -1;
		char *cql = NULL;
		if (asprintf(&cql,
			     "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': "
			     "'NetworkTopologyStrategy', %s} AND durable_writes = true",
			     ks, replication) < 0)
			abort();
		int ret = run_ddl(db, cql, error_r);
		free(cql);
		if (ret < 0 || wait_schema_agreement(db, error_r) < 0)
			return -1;
	}
	/* the version recorded, if the meta table exists */
	unsigned from = 0;
	v = (struct vals){0};
	v_text(&v, ks);
	int has_meta = run(db, "looking for the meta table (system_schema.tables)", 0,
			   "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? "
			   "AND table_name = 'meta'",
			   &v, F_LOCAL, reply_count, NULL, error_r);
	if (has_meta < 0)
		return -1;
	if (has_meta > 0 && read_schema_version(db, &from, error_r) < 0)
		return -1;
	if (from > GEODB_SCHEMA_VERSION)
		return fail(db, error_r,
			    "geodb: keyspace %s has schema version %u, newer than this mailcluster "
			    "knows (%d): upgrade mailcluster",
			    ks, from, GEODB_SCHEMA_VERSION);
	for (size_t i = 0; i < sizeof(schema_versions) / sizeof(schema_versions[0]); i++) {
		const struct schema_version *sv = &schema_versions[i];
		/* the statements of the version found run again: they are
		 * idempotent, and a keyspace made before the version's last
		 * column was added (users.hold_until came to version 3 before
		 * its release) gains what it lacks, whether that version is the
		 * current one or an older one upgraded now */
		if (sv->version < from)
			continue;
		for (const char *const *s = sv->statements; *s != NULL; s++) {
			char *cql = format_ks(*s, ks);
			int ret = run_ddl(db, cql, error_r);
			free(cql);
			if (ret < 0)
				return -1;
		}
		if (wait_schema_agreement(db, error_r) < 0)
			return -1;
		char version[16];
		snprintf(version, sizeof(version), "%u", sv->version);
		v = (struct vals){0};
		v_text(&v, "schema_version");
		v_text(&v, version);
		if (run(db, "recording the schema version (table meta)", Q_META_PUT, NULL, &v, 0,
			NULL, NULL, error_r) < 0)
			return -1;
	}
	*from_r = from;
	db->schema_ok = true;
	return 0;
}

static const char *cass_schema_text(struct geodb *geo)
{
	return ((struct cassdb *)geo)->schema_text;
}

static int cass_read_begin(struct geodb *geo, const char **error_r)
{
	return 0;
}

static void cass_read_end(struct geodb *geo)
{
}

/* ---- meta ---- */

static int reply_meta_insert(struct cassdb *db, const struct cql_reply *reply, void *context,
			     char *err, size_t size)
{
	struct meta_value *mv = context;
	struct lwt_row row;
	if (lwt_parse(reply, &row, err, size) < 0)
		return -1;
	if (row.applied)
		return 1;
	const struct cql_value *value = lwt_col(&row, "value", 2);
	if (value == NULL) {
		snprintf(err, size, "the conditional insert was not applied but returned no row");
		return -1;
	}
	mv->found = true;
	return cell_text(value, "value", mv->value, sizeof(mv->value), err, size) < 0 ? -1 : 0;
}

static int cass_check_group_count(struct geodb *geo, unsigned group_count, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	struct meta_value mv = {0};
	struct vals v = {0};
	v_text(&v, "group_count");
	if (run(db, "reading group_count (table meta)", Q_META_GET, NULL, &v, F_READ,
		reply_meta_value, &mv, error_r) < 0)
		return -1;
	if (!mv.found) {
		char value[16];
		snprintf(value, sizeof(value), "%u", group_count);
		v = (struct vals){0};
		v_text(&v, "group_count");
		v_text(&v, value);
		int applied = run(db, "recording group_count (table meta)", Q_META_INSERT_IF, NULL,
				  &v, F_COND, reply_meta_insert, &mv, error_r);
		if (applied < 0)
			return -1;
		if (applied > 0)
			return 0;
		/* another process won the insert: mv has its value */
	}
	unsigned stored;
	if (parse_version(mv.value, &stored) < 0)
		return fail(db, error_r,
			    "geodb: keyspace %s: meta group_count '%s' is not a number",
			    db->spec.keyspace, mv.value);
	if (stored != group_count)
		return fail(
			db, error_r,
			"geodb: group_count = %u in the configuration but the GeoDB keyspace %s "
			"was set up with %u: changing it would move almost every user; use %u",
			group_count, db->spec.keyspace, stored, stored);
	return 0;
}

/* ---- sites ---- */

struct get_ctx {
	row_fn *fn;
	unsigned columns;
	void *item;
};

static int reply_get(struct cassdb *db, const struct cql_reply *reply, void *context, char *err,
		     size_t size)
{
	struct get_ctx *ctx = context;
	return first_row(reply, ctx->columns, ctx->fn, ctx->item, err, size);
}

struct list_ctx {
	row_fn *fn;
	unsigned columns;
	size_t elem_size;
	void *items;
	size_t count;
};

static int reply_list(struct cassdb *db, const struct cql_reply *reply, void *context, char *err,
		      size_t size)
{
	struct list_ctx *ctx = context;
	return collect_rows(reply, ctx->columns, ctx->elem_size, ctx->fn, &ctx->items, &ctx->count,
			    err, size);
}

static int list_all(struct cassdb *db, const char *what, enum stmt_id id, row_fn *fn,
		    unsigned columns, size_t elem_size, void **items_r, size_t *count_r,
		    const char **error_r)
{
	if (ready(db, error_r) < 0)
		return -1;
	struct list_ctx ctx = {fn, columns, elem_size, NULL, 0};
	if (run(db, what, id, NULL, NULL, F_READ | F_ALL, reply_list, &ctx, error_r) < 0)
		return -1;
	*items_r = ctx.items;
	*count_r = ctx.count;
	return 0;
}

static int cass_site_add(struct geodb *geo, const struct geodb_site *site, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "adding site %s (table sites)", site->name);
	struct vals v = {0};
	v_text(&v, site->name);
	v_text(&v, site_status_name(site->status));
	v_text(&v, site->tags);
	v_text(&v, site->load_balancer);
	v_text(&v, geo->writer);
	v_bigint(&v, now_seconds());
	int applied = run(db, what, Q_SITE_ADD, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
	if (applied < 0)
		return -1;
	if (applied == 0)
		return fail(db, error_r, "site %s already exists", site->name);
	return 0;
}

static int cass_site_update(struct geodb *geo, const struct geodb_site *site, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "updating site %s (table sites)", site->name);
	struct vals v = {0};
	v_text(&v, site_status_name(site->status));
	v_text(&v, site->tags);
	v_text(&v, site->load_balancer);
	v_text(&v, geo->writer);
	v_bigint(&v, now_seconds());
	v_text(&v, site->name);
	int applied =
		run(db, what, Q_SITE_UPDATE, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
	if (applied < 0)
		return -1;
	if (applied == 0)
		return fail(db, error_r, "site %s does not exist", site->name);
	return 0;
}

static int cass_backend_list(struct geodb *geo, const char *site, struct geodb_backend **backends_r,
			     size_t *count_r, const char **error_r);

static int cass_site_remove(struct geodb *geo, const char *name, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct geodb_backend *backends;
	size_t count;
	if (cass_backend_list(geo, name, &backends, &count, error_r) < 0)
		return -1;
	free(backends);
	if (count > 0)
		return fail(db, error_r, "site %s still has %zu backend(s): remove them first",
			    name, count);
	char what[128];
	snprintf(what, sizeof(what), "removing site %s (table sites)", name);
	struct vals v = {0};
	v_text(&v, name);
	int applied =
		run(db, what, Q_SITE_DELETE, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
	if (applied < 0)
		return -1;
	if (applied == 0)
		return fail(db, error_r, "site %s does not exist", name);
	return 0;
}

static int cass_site_get(struct geodb *geo, const char *name, struct geodb_site *site_r,
			 const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "reading site %s (table sites)", name);
	struct vals v = {0};
	v_text(&v, name);
	struct get_ctx ctx = {row_site, 4, site_r};
	return run(db, what, Q_SITE_GET, NULL, &v, F_READ, reply_get, &ctx, error_r);
}

static int cass_site_list(struct geodb *geo, struct geodb_site **sites_r, size_t *count_r,
			  const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (list_all(db, "listing sites (table sites)", Q_SITE_ALL, row_site, 4, sizeof(**sites_r),
		     (void **)sites_r, count_r, error_r) < 0)
		return -1;
	geodb_sort_sites(*sites_r, *count_r);
	return 0;
}

/* ---- backends ---- */

static int cass_backend_add(struct geodb *geo, const char *site, const char *name,
			    const char *address, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct geodb_site site_row;
	int found = cass_site_get(geo, site, &site_row, error_r);
	if (found < 0)
		return -1;
	if (found == 0)
		return fail(db, error_r, "site %s does not exist: add it first with 'site add %s'",
			    site, site);
	char what[128];
	snprintf(what, sizeof(what), "adding backend %s (table backends)", name);
	struct vals v = {0};
	v_text(&v, name);
	v_text(&v, site);
	v_text(&v, address);
	v_text(&v, geo->writer);
	v_bigint(&v, now_seconds());
	int applied =
		run(db, what, Q_BACKEND_ADD, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
	if (applied < 0)
		return -1;
	if (applied == 0)
		return fail(db, error_r, "backend %s already exists", name);
	return 0;
}

static int cass_backend_update(struct geodb *geo, const struct geodb_backend *backend,
			       const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "updating backend %s (table backends)", backend->name);
	struct vals v = {0};
	v_text(&v, backend_status_name(backend->status));
	v_int(&v, (int32_t)backend->load_factor);
	v_text(&v, backend->address);
	v_text(&v, geo->writer);
	v_bigint(&v, now_seconds());
	v_text(&v, backend->name);
	int applied =
		run(db, what, Q_BACKEND_UPDATE, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
	if (applied < 0)
		return -1;
	if (applied == 0)
		return fail(db, error_r, "backend %s does not exist", backend->name);
	return 0;
}

static int cass_backend_get(struct geodb *geo, const char *name, struct geodb_backend *backend_r,
			    const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "reading backend %s (table backends)", name);
	struct vals v = {0};
	v_text(&v, name);
	struct get_ctx ctx = {row_backend, BACKEND_COLUMN_COUNT, backend_r};
	return run(db, what, Q_BACKEND_GET, NULL, &v, F_READ, reply_get, &ctx, error_r);
}

static int cass_backend_list(struct geodb *geo, const char *site, struct geodb_backend **backends_r,
			     size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct geodb_backend *items;
	size_t count;
	if (list_all(db, "listing backends (table backends)", Q_BACKEND_ALL, row_backend,
		     BACKEND_COLUMN_COUNT, sizeof(*items), (void **)&items, &count, error_r) < 0)
		return -1;
	if (site != NULL) {
		size_t kept = 0;
		for (size_t i = 0; i < count; i++) {
			if (strcmp(items[i].site, site) == 0)
				items[kept++] = items[i];
		}
		count = kept;
	}
	geodb_sort_backends(items, count);
	*backends_r = items;
	*count_r = count;
	return 0;
}

/* group_id + backend of every group (paged) */
struct group_ref {
	int32_t group_id;
	char backend[NAME_MAX_LEN + 1];
};

static int row_group_ref(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct group_ref *ref = item;
	if (cell_int(&c[0], "group_id", &ref->group_id, err, size) < 0 ||
	    cell_text(&c[1], "backend", ref->backend, sizeof(ref->backend), err, size) < 0)
		return -1;
	return 0;
}

/* group_id, backend, alt_backend, move_to and epoch of every group */
struct group_refs {
	int32_t group_id;
	char backend[NAME_MAX_LEN + 1];
	char alt_backend[NAME_MAX_LEN + 1];
	char move_to[NAME_MAX_LEN + 1];
	int64_t epoch;
};

static int row_group_refs(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct group_refs *ref = item;
	if (cell_int(&c[0], "group_id", &ref->group_id, err, size) < 0 ||
	    cell_text(&c[1], "backend", ref->backend, sizeof(ref->backend), err, size) < 0 ||
	    cell_text(&c[2], "alt_backend", ref->alt_backend, sizeof(ref->alt_backend), err,
		      size) < 0 ||
	    cell_text(&c[3], "move_to", ref->move_to, sizeof(ref->move_to), err, size) < 0 ||
	    cell_bigint(&c[4], "epoch", &ref->epoch, err, size) < 0)
		return -1;
	return 0;
}

static int group_get_serial(struct cassdb *db, unsigned group_id, struct geodb_group *group_r,
			    const char **error_r);

/* Ends the group's move to the removed backend name (epoch + 1), for as
 * long as it is moving there. */
static int end_move_to(struct cassdb *db, const struct group_refs *ref, const char *name,
		       const char **error_r)
{
	char what[160];
	snprintf(what, sizeof(what), "ending the move of group %d to backend %s (table groups)",
		 (int)ref->group_id, name);
	int64_t epoch = ref->epoch;
	for (int attempt = 0; attempt < GROUP_SET_ATTEMPTS; attempt++) {
		struct vals v = {0};
		v_bigint(&v, epoch + 1);
		v_text(&v, db->geo.writer);
		v_bigint(&v, now_seconds());
		v_int(&v, ref->group_id);
		v_bigint(&v, epoch);
		v_text(&v, name);
		int applied = run(db, what, Q_GROUP_END_MOVE_IF, NULL, &v, F_COND,
				  reply_lwt_applied, NULL, error_r);
		if (applied != 0)
			return applied < 0 ? -1 : 0;
		struct geodb_group now;
		int found = group_get_serial(db, (unsigned)ref->group_id, &now, error_r);
		if (found < 0)
			return -1;
		if (found == 0 || strcmp(now.move_to, name) != 0)
			return 0; /* no longer moving there */
		epoch = (int64_t)now.epoch;
	}
	return fail(db, error_r, "geodb: %s: it kept changing under us (%d attempts); try again",
		    what, GROUP_SET_ATTEMPTS);
}

static void group_update_values(struct cassdb *db, struct vals *v, const struct geodb_group *row,
				int64_t expected_epoch, int64_t now, bool with_sticky);

/* Unassigns the group from the removed backend name, for as long as it is
 * on it: its row stays, without a backend, and remembers name in its
 * history (geodb_group_unassign()).  Returns 1 unassigned, 0 not on name
 * (any more), -1. */
static int unassign_from(struct cassdb *db, const struct group_refs *ref, const char *name,
			 const char **error_r)
{
	char what[160];
	snprintf(what, sizeof(what), "unassigning group %d from backend %s (table groups)",
		 (int)ref->group_id, name);
	for (int attempt = 0; attempt < GROUP_SET_ATTEMPTS; attempt++) {
		/* the whole row, for its history; the write is conditional on
		 * its epoch, which every change of the backend raises */
		struct geodb_group current, row;
		int found = group_get_serial(db, (unsigned)ref->group_id, &current, error_r);
		if (found < 0)
			return -1;
		if (found == 0 || strcmp(current.backend, name) != 0)
			return 0;
		geodb_group_unassign(&row, &current, geodb_unix_ms());
		struct vals v = {0};
		group_update_values(db, &v, &row, (int64_t)current.epoch, now_seconds(), false);
		int applied = run(db, what, Q_GROUP_SET_IF, NULL, &v, F_COND, reply_lwt_applied,
				  NULL, error_r);
		if (applied != 0)
			return applied;
	}
	return fail(db, error_r, "geodb: %s: it kept changing under us (%d attempts); try again",
		    what, GROUP_SET_ATTEMPTS);
}

static int cass_backend_remove(struct geodb *geo, const char *name, unsigned *groups_unassigned_r,
			       const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	/* geodb.c checked that it exists and is not online */
	struct group_refs *refs;
	size_t count;
	if (list_all(db, "unassigning groups (table groups)", Q_GROUP_REFS, row_group_refs, 5,
		     sizeof(*refs), (void **)&refs, &count, error_r) < 0)
		return -1;
	unsigned unassigned = 0;
	for (size_t i = 0; i < count; i++) {
		char what[128];
		struct vals v = {0};
		int on_it = 0, ret = 0;
		if (strcmp(refs[i].backend, name) == 0) {
			on_it = unassign_from(db, &refs[i], name, error_r);
			ret = on_it < 0 ? -1 : 0;
			unassigned += on_it > 0;
		}
		/* a move to it is over (epoch + 1, like any change of the
		 * move); being the alternative of a group is only a reference:
		 * cleared, if it still is (an unassigned group's are already) */
		if (ret == 0 && on_it == 0 && strcmp(refs[i].move_to, name) == 0)
			ret = end_move_to(db, &refs[i], name, error_r);
		if (ret == 0 && on_it == 0 && strcmp(refs[i].alt_backend, name) == 0) {
			snprintf(what, sizeof(what),
				 "clearing the alternative backend %s of group %d (table groups)",
				 name, (int)refs[i].group_id);
			v = (struct vals){0};
			v_text(&v, geo->writer);
			v_bigint(&v, now_seconds());
			v_int(&v, refs[i].group_id);
			v_text(&v, name);
			ret = run(db, what, Q_GROUP_CLEAR_ALT_IF, NULL, &v, F_COND,
				  reply_lwt_applied, NULL, error_r);
		}
		if (ret < 0) {
			free(refs);
			return -1;
		}
	}
	free(refs);
	char what[128];
	snprintf(what, sizeof(what), "removing backend %s (table backends)", name);
	struct vals v = {0};
	v_text(&v, name);
	if (run(db, what, Q_BACKEND_DELETE, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r) < 0)
		return -1;
	*groups_unassigned_r = unassigned;
	return 0;
}

static int load_cmp(const void *a, const void *b)
{
	return strcmp(((const struct geodb_backend_load *)a)->backend,
		      ((const struct geodb_backend_load *)b)->backend);
}

static int cass_backend_loads(struct geodb *geo, struct geodb_backend_load **loads_r,
			      size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct group_ref *refs;
	size_t count;
	if (list_all(db, "counting groups per backend (table groups)", Q_GROUP_BACKENDS,
		     row_group_ref, 2, sizeof(*refs), (void **)&refs, &count, error_r) < 0)
		return -1;
	struct geodb_backend_load *loads = calloc(count > 0 ? count : 1, sizeof(*loads));
	size_t n = 0;
	for (size_t i = 0; i < count; i++) {
		if (refs[i].backend[0] == '\0')
			continue; /* unassigned: its backend was removed */
		size_t j;
		for (j = 0; j < n; j++) {
			if (strcmp(loads[j].backend, refs[i].backend) == 0)
				break;
		}
		if (j == n)
			snprintf(loads[n++].backend, sizeof(loads[0].backend), "%s",
				 refs[i].backend);
		loads[j].groups++;
	}
	free(refs);
	if (n > 1)
		qsort(loads, n, sizeof(*loads), load_cmp);
	*loads_r = loads;
	*count_r = n;
	return 0;
}

/* ---- groups ---- */

static int cass_group_get(struct geodb *geo, unsigned group_id, struct geodb_group *group_r,
			  const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "reading group %u (table groups)", group_id);
	struct vals v = {0};
	v_int(&v, (int32_t)group_id);
	struct get_ctx ctx = {row_group, GROUP_COLUMN_COUNT, group_r};
	return run(db, what, Q_GROUP_GET, NULL, &v, F_READ, reply_get, &ctx, error_r);
}

/* The group's row at the serial consistency: after a conditional write
 * that was not applied, what is there (an unfinished Paxos round of
 * another writer completed first). */
static int group_get_serial(struct cassdb *db, unsigned group_id, struct geodb_group *group_r,
			    const char **error_r)
{
	char what[128];
	snprintf(what, sizeof(what), "reading group %u (table groups, serial)", group_id);
	struct vals v = {0};
	v_int(&v, (int32_t)group_id);
	struct get_ctx ctx = {row_group, GROUP_COLUMN_COUNT, group_r};
	return run(db, what, Q_GROUP_GET, NULL, &v, F_SERIAL, reply_get, &ctx, error_r);
}

struct set_ctx {
	bool exists;   /* after a failed condition: is there a row? */
	int64_t epoch; /* and its epoch */
};

static int reply_group_cas(struct cassdb *db, const struct cql_reply *reply, void *context,
			   char *err, size_t size)
{
	struct set_ctx *ctx = context;
	struct lwt_row row;
	if (lwt_parse(reply, &row, err, size) < 0)
		return -1;
	if (row.applied)
		return 1;
	/* [applied], epoch for UPDATE IF epoch = ?; the whole row for the
	 * INSERT IF NOT EXISTS (epoch fifth: see lwt_group()) */
	const struct cql_value *epoch = lwt_col(&row, "epoch", row.count > 2 ? 4 : 1);
	ctx->exists = false;
	if (epoch != NULL) {
		const char *error;
		int r = cql_value_bigint(epoch, &ctx->epoch, &error);
		if (r < 0)
			return bad_cell(err, size, "epoch", error);
		ctx->exists = r == 1;
	}
	return 0;
}

/* The values of Q_GROUP_UPDATE_IF (Q_GROUP_SET_IF without sticky): row's
 * fields, epoch expected + 1. */
static void group_update_values(struct cassdb *db, struct vals *v, const struct geodb_group *row,
				int64_t expected_epoch, int64_t now, bool with_sticky)
{
	v_text(v, row->site);
	v_text(v, row->backend);
	v_text(v, row->alt_backend);
	v_text(v, row->move_to);
	v_bigint(v, row->move_started_ms);
	v_text(v, row->move_reason);
	v_bigint(v, expected_epoch + 1);
	v_text(v, db->geo.writer);
	v_bigint(v, now);
	char history[GEODB_HISTORY_TEXT_MAX];
	geodb_history_format(row, history, sizeof(history));
	if (with_sticky)
		v_bool(v, row->sticky);
	v_bigint(v, row->moved_at_ms);
	v_text(v, history);
	v_text(v, row->failover_site);
	v_int(v, (int32_t)row->group_id);
	v_bigint(v, expected_epoch);
}

static int cass_group_set(struct geodb *geo, unsigned group_id, const char *site,
			  const char *backend, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct geodb_group current;
	int found = cass_group_get(geo, group_id, &current, error_r);
	if (found < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "moving group %u (table groups)", group_id);
	for (int attempt = 0; attempt < GROUP_SET_ATTEMPTS; attempt++) {
		struct vals v = {0};
		int64_t now = now_seconds();
		struct set_ctx ctx = {false, 0};
		int applied;
		if (found == 0) {
			struct geodb_group group = {.group_id = group_id, .epoch = 1};
			snprintf(group.site, sizeof(group.site), "%s", site);
			snprintf(group.backend, sizeof(group.backend), "%s", backend);
			group_values(db, &v, &group, now);
			applied = run(db, what, Q_GROUP_INSERT, NULL, &v, F_COND, reply_group_cas,
				      &ctx, error_r);
		} else {
			/* a direct move ends a move in progress; the alternative
			 * stays unless it is where the group goes now, and so
			 * does sticky; a switch of backend goes into history */
			struct geodb_group row = current;
			snprintf(row.site, sizeof(row.site), "%s", site);
			snprintf(row.backend, sizeof(row.backend), "%s", backend);
			if (strcmp(row.alt_backend, backend) == 0)
				row.alt_backend[0] = '\0';
			if (strcmp(row.failover_site, site) == 0)
				row.failover_site[0] = '\0';
			row.move_to[0] = '\0';
			row.move_started_ms = 0;
			row.move_reason[0] = '\0';
			geodb_group_switch(&row, &current, geodb_unix_ms());
			group_update_values(db, &v, &row, (int64_t)current.epoch, now, false);
			applied = run(db, what, Q_GROUP_SET_IF, NULL, &v, F_COND, reply_group_cas,
				      &ctx, error_r);
		}
		if (applied < 0)
			return -1;
		if (applied > 0)
			return 0;
		/* changed under us: the whole row again, as it is now */
		found = group_get_serial(db, group_id, &current, error_r);
		if (found < 0)
			return -1;
	}
	return fail(db, error_r,
		    "geodb: moving group %u (table groups): it kept changing under us (%d "
		    "attempts); try again",
		    group_id, GROUP_SET_ATTEMPTS);
}

static bool same_history(const struct geodb_group *x, const struct geodb_group *y)
{
	for (size_t i = 0; i < BALANCE_HISTORY; i++) {
		if (strcmp(x->history[i].backend, y->history[i].backend) != 0 ||
		    x->history[i].left_ms != y->history[i].left_ms)
			return false;
		if (x->history[i].backend[0] == '\0')
			break;
	}
	return true;
}

static bool same_group_row(const struct geodb_group *x, const struct geodb_group *y)
{
	return x->group_id == y->group_id && x->epoch == y->epoch &&
	       strcmp(x->site, y->site) == 0 && strcmp(x->backend, y->backend) == 0 &&
	       strcmp(x->alt_backend, y->alt_backend) == 0 &&
	       strcmp(x->failover_site, y->failover_site) == 0 &&
	       strcmp(x->move_to, y->move_to) == 0 && x->move_started_ms == y->move_started_ms &&
	       strcmp(x->move_reason, y->move_reason) == 0 &&
	       strcmp(x->written_by, y->written_by) == 0 && x->written_at == y->written_at &&
	       x->sticky == y->sticky && x->moved_at_ms == y->moved_at_ms && same_history(x, y);
}

static int cass_group_cas(struct geodb *geo, const struct geodb_group *row,
			  uint64_t expected_epoch, struct geodb_group *stored_r,
			  const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "changing group %u (table groups)", row->group_id);
	/* the row as it is at expected_epoch, for its history: a read at the
	 * configured consistency, and if that does not show expected_epoch,
	 * one at the serial consistency (an unfinished round completes
	 * first), which decides: not at expected_epoch, not applied */
	struct geodb_group current;
	int found = cass_group_get(geo, row->group_id, &current, error_r);
	if (found < 0)
		return -1;
	if (found == 0 || current.epoch != expected_epoch) {
		found = group_get_serial(db, row->group_id, &current, error_r);
		if (found < 0)
			return -1;
		if (found == 0) {
			memset(stored_r, 0, sizeof(*stored_r));
			stored_r->group_id = row->group_id;
			return 0;
		}
		if (current.epoch != expected_epoch) {
			*stored_r = current;
			return 0;
		}
	}
	/* what we write, as group_get would read it back */
	struct geodb_group ours = *row;
	geodb_group_switch(&ours, &current, geodb_unix_ms());
	ours.epoch = expected_epoch + 1;
	snprintf(ours.written_by, sizeof(ours.written_by), "%s", geo->writer);
	ours.written_at = now_seconds();
	int64_t started = now_ms();
	int applied;
	bool retried = false;
	for (unsigned attempt = 1;; attempt++) {
		struct vals v = {0};
		group_update_values(db, &v, &ours, (int64_t)expected_epoch, ours.written_at, true);
		applied = run(db, what, Q_GROUP_UPDATE_IF, NULL, &v, F_COND, reply_lwt_applied,
			      NULL, error_r);
		if (applied >= 0)
			break;
		/* contention (a write timeout at once): the outcome is unknown,
		 * and the same write again tells (see ASSIGN_ATTEMPTS) */
		if (db->error_code != CQL_ERROR_WRITE_TIMEOUT || attempt >= ASSIGN_ATTEMPTS ||
		    now_ms() - started >= ASSIGN_RETRY_WITHIN_MS)
			return -1;
		log_info("event=geodb_retry op=group_cas group=%u attempt=%u reason=\"%s\"",
			 row->group_id, attempt + 1, *error_r);
		retried = true;
	}
	if (applied == 1) {
		*stored_r = ours;
		return 1;
	}
	found = group_get_serial(db, row->group_id, stored_r, error_r);
	if (found < 0)
		return -1;
	if (found == 0) {
		memset(stored_r, 0, sizeof(*stored_r));
		stored_r->group_id = row->group_id;
		return 0;
	}
	/* after a retry, "not applied" may only mean that the first try got in */
	return retried && same_group_row(stored_r, &ours) ? 1 : 0;
}

static int cass_group_list(struct geodb *geo, struct geodb_group **groups_r, size_t *count_r,
			   const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (list_all(db, "listing groups (table groups)", Q_GROUP_ALL, row_group,
		     GROUP_COLUMN_COUNT, sizeof(**groups_r), (void **)groups_r, count_r,
		     error_r) < 0)
		return -1;
	geodb_sort_groups(*groups_r, *count_r);
	return 0;
}

static int cass_group_set_sticky(struct geodb *geo, unsigned group_id, bool sticky,
				 const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "%s group %u (table groups)", sticky ? "pinning" : "unpinning",
		 group_id);
	struct vals v = {0};
	v_bool(&v, sticky);
	v_text(&v, geo->writer);
	v_bigint(&v, now_seconds());
	v_int(&v, (int32_t)group_id);
	return run(db, what, Q_GROUP_STICKY_IF, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
}

/* ---- users ---- */

static int cass_user_get(struct geodb *geo, const char *username, struct geodb_user *user_r,
			 const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[USERNAME_MAX_LEN + 64];
	snprintf(what, sizeof(what), "reading user %s (table users)", username);
	struct vals v = {0};
	v_text(&v, username);
	struct get_ctx ctx = {row_user, USER_COLUMN_COUNT, user_r};
	return run(db, what, Q_USER_GET, NULL, &v, F_READ, reply_get, &ctx, error_r);
}

static int cass_user_move(struct geodb *geo, const char *username, unsigned group_id,
			  int64_t hold_until_ms, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[USERNAME_MAX_LEN + 64];
	snprintf(what, sizeof(what), "moving user %s (table users)", username);
	struct vals v = {0};
	v_text(&v, username);
	v_int(&v, (int32_t)group_id);
	v_text(&v, geo->writer);
	v_bigint(&v, now_seconds());
	v_bigint(&v, hold_until_ms);
	return run(db, what, Q_USER_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

static int cass_user_set_group(struct geodb *geo, const char *username, unsigned group_id,
			       const char **error_r)
{
	return cass_user_move(geo, username, group_id, 0, error_r);
}

static int cass_user_delete(struct geodb *geo, const char *username, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[USERNAME_MAX_LEN + 64];
	snprintf(what, sizeof(what), "deleting user %s (table users)", username);
	struct vals v = {0};
	v_text(&v, username);
	return run(db, what, Q_USER_DELETE, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
}

static int cass_user_list(struct geodb *geo, struct geodb_user **users_r, size_t *count_r,
			  const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (list_all(db, "listing users (table users)", Q_USER_ALL, row_user, USER_COLUMN_COUNT,
		     sizeof(**users_r), (void **)users_r, count_r, error_r) < 0)
		return -1;
	geodb_sort_users(*users_r, *count_r);
	return 0;
}

/* ---- leases ---- */

static int reply_lease_cas(struct cassdb *db, const struct cql_reply *reply, void *context,
			   char *err, size_t size)
{
	struct lease_ctx *ctx = context;
	struct lwt_row row;
	if (lwt_parse(reply, &row, err, size) < 0)
		return -1;
	if (row.applied)
		return 1;
	/* by position: the insert returns [applied], name, expires_at,
	 * holder; the update [applied], expires_at, holder */
	bool insert = row.count >= 4;
	const struct cql_value *holder = lwt_col(&row, "holder", insert ? 3 : 2);
	const struct cql_value *expires = lwt_col(&row, "expires_at", insert ? 2 : 1);
	ctx->exists = false;
	if (holder == NULL || expires == NULL)
		return 0;
	struct cql_string s;
	const char *error;
	int r = cql_value_text(holder, &s, &error);
	if (r < 0)
		return bad_cell(err, size, "holder", error);
	if (r == 0)
		return 0; /* gone (expired) */
	if (cell_text(holder, "holder", ctx->holder, sizeof(ctx->holder), err, size) < 0 ||
	    cell_bigint(expires, "expires_at", &ctx->expires_at, err, size) < 0)
		return -1;
	ctx->exists = true;
	return 0;
}

static int cass_lease_acquire(struct geodb *geo, const char *name, const char *holder,
			      unsigned ttl_secs, struct geodb_lease *lease_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "acquiring lease %s (table leases)", name);
	struct lease_ctx ctx = {0};
	for (int attempt = 0; attempt < LEASE_ATTEMPTS; attempt++) {
		int64_t now = now_seconds();
		int64_t expires_at = now + (int64_t)ttl_secs;
		struct vals v = {0};
		int applied;
		if (!ctx.exists) {
			v_text(&v, name);
			v_text(&v, holder);
			v_bigint(&v, expires_at);
			v_int(&v, (int32_t)ttl_secs);
			applied = run(db, what, Q_LEASE_INSERT, NULL, &v, F_COND, reply_lease_cas,
				      &ctx, error_r);
		} else if (strcmp(ctx.holder, holder) != 0 && ctx.expires_at > now) {
			memset(lease_r, 0, sizeof(*lease_r));
			snprintf(lease_r->name, sizeof(lease_r->name), "%s", name);
			snprintf(lease_r->holder, sizeof(lease_r->holder), "%s", ctx.holder);
			lease_r->expires_at = ctx.expires_at;
			return 0;
		} else {
			/* ours (renew), or another's that has expired but whose
			 * row has not yet (take it over) */
			v_int(&v, (int32_t)ttl_secs);
			v_text(&v, holder);
			v_bigint(&v, expires_at);
			v_text(&v, name);
			v_text(&v, ctx.holder);
			v_bigint(&v, ctx.expires_at);
			applied = run(db, what, Q_LEASE_UPDATE_IF, NULL, &v, F_COND,
				      reply_lease_cas, &ctx, error_r);
		}
		if (applied < 0)
			return -1;
		if (applied > 0) {
			memset(lease_r, 0, sizeof(*lease_r));
			snprintf(lease_r->name, sizeof(lease_r->name), "%s", name);
			snprintf(lease_r->holder, sizeof(lease_r->holder), "%s", holder);
			lease_r->expires_at = expires_at;
			return 1;
		}
	}
	return fail(db, error_r,
		    "geodb: acquiring lease %s (table leases): it kept changing under us (%d "
		    "attempts)",
		    name, LEASE_ATTEMPTS);
}

static int cass_lease_release(struct geodb *geo, const char *name, const char *holder,
			      const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "releasing lease %s (table leases)", name);
	struct vals v = {0};
	v_text(&v, name);
	v_text(&v, holder);
	v_bigint(&v, now_seconds()); /* an expired lease is nobody's */
	return run(db, what, Q_LEASE_DELETE_IF, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
}

/* The asynchronous acquire: the same steps as cass_lease_acquire(), one
 * request at a time.  lease_step() decides from what the last refused
 * write saw (job->lease_seen) and sends the next write, or finishes;
 * lease_done() reads each answer and steps again. */
static void lease_done(const struct cql_reply *reply, void *context);

static void lease_step(struct async_job *job)
{
	struct cassdb *db = job->db;
	const struct lease_ctx *seen = &job->lease_seen;
	const char *name = job->lease.name, *holder = job->lease.holder;
	int64_t now = now_seconds();
	if (seen->exists && strcmp(seen->holder, holder) != 0 && seen->expires_at > now) {
		/* another's, and alive */
		snprintf(job->lease.holder, sizeof(job->lease.holder), "%s", seen->holder);
		job->lease.expires_at = seen->expires_at;
		job->result = 0;
		job_finish(job);
		return;
	}
	if (job->attempts >= LEASE_ATTEMPTS) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: acquiring lease %s (table leases): it kept changing under us (%d "
			 "attempts)",
			 name, LEASE_ATTEMPTS);
		job->failed = true;
		job_finish(job);
		return;
	}
	job->attempts++;
	job->lease_expires_at = now + (int64_t)job->lease_ttl_secs;
	struct vals v = {0};
	enum stmt_id id;
	if (!seen->exists) {
		id = Q_LEASE_INSERT;
		v_text(&v, name);
		v_text(&v, holder);
		v_bigint(&v, job->lease_expires_at);
		v_int(&v, (int32_t)job->lease_ttl_secs);
	} else {
		/* ours (renew), or another's that has expired but whose row
		 * has not yet (take it over) */
		id = Q_LEASE_UPDATE_IF;
		v_int(&v, (int32_t)job->lease_ttl_secs);
		v_text(&v, holder);
		v_bigint(&v, job->lease_expires_at);
		v_text(&v, name);
		v_text(&v, seen->holder);
		v_bigint(&v, seen->expires_at);
	}
	if (v.error != NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: acquiring lease %s (table leases): %s", name, v.error);
		v_free(&v);
		job_fail_later(job); /* maybe still inside the call that started it */
		return;
	}
	struct cql_request req;
	fill_request(db, &req, db->cql[id], &v, F_COND);
	job->pending = cql_client_execute(db->async, &req, lease_done, job);
	v_free(&v);
}

static void lease_done(const struct cql_reply *reply, void *context)
{
	struct async_job *job = context;
	job->pending = NULL;
	char what[128], err[768];
	snprintf(what, sizeof(what), "acquiring lease %s (table leases)", job->lease.name);
	if (reply->error != NULL) {
		reply_error(job->db, reply, what, job->error, sizeof(job->error));
		job->failed = true;
		job_finish(job);
		return;
	}
	int applied = reply_lease_cas(job->db, reply, &job->lease_seen, err, sizeof(err));
	if (applied < 0) {
		snprintf(job->error, sizeof(job->error), "geodb: %s: %s", what, err);
		job->failed = true;
		job_finish(job);
	} else if (applied > 0) {
		job->lease.expires_at = job->lease_expires_at;
		job->result = 1;
		job_finish(job);
	} else {
		lease_step(job);
	}
}

static struct async_job *lease_job_new(struct cassdb *db, struct geodb_op *op, enum job_kind kind,
				       const char *name, const char *holder)
{
	struct async_job *job = calloc(1, sizeof(*job));
	job->db = db;
	job->op = op;
	job->kind = kind;
	snprintf(job->lease.name, sizeof(job->lease.name), "%s", name);
	snprintf(job->lease.holder, sizeof(job->lease.holder), "%s", holder);
	job_link(db, job);
	return job;
}

static void cass_lease_acquire_async(struct geodb *geo, struct geodb_op *op, const char *name,
				     const char *holder, unsigned ttl_secs)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct async_job *job = lease_job_new(db, op, JOB_LEASE, name, holder);
	job->lease_ttl_secs = ttl_secs;
	if (db->async == NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: acquiring lease %s: not attached to an event loop", name);
		job_fail_later(job);
		return;
	}
	lease_step(job);
}

static void lease_release_done(const struct cql_reply *reply, void *context)
{
	struct async_job *job = context;
	job->pending = NULL;
	if (reply->error != NULL) {
		char what[128];
		snprintf(what, sizeof(what), "releasing lease %s (table leases)", job->lease.name);
		reply_error(job->db, reply, what, job->error, sizeof(job->error));
		job->failed = true;
	}
	job_finish(job);
}

static void cass_lease_release_async(struct geodb *geo, struct geodb_op *op, const char *name,
				     const char *holder)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct async_job *job = lease_job_new(db, op, JOB_LEASE_RELEASE, name, holder);
	if (db->async == NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: releasing lease %s: not attached to an event loop", name);
		job_fail_later(job);
		return;
	}
	struct vals v = {0};
	v_text(&v, name);
	v_text(&v, holder);
	v_bigint(&v, now_seconds()); /* an expired lease is nobody's */
	struct cql_request req;
	fill_request(db, &req, db->cql[Q_LEASE_DELETE_IF], &v, F_COND);
	job->pending = cql_client_execute(db->async, &req, lease_release_done, job);
	v_free(&v);
}

/* ---- health ---- */

static void health_values(struct vals *v, const struct geodb_health *health, unsigned ttl_secs)
{
	v_text(v, health->backend);
	v_text(v, health->observer);
	v_bool(v, health->ok);
	v_text(v, health->detail);
	v_bigint(v, health->observed_at);
	v_bigint(v, health->since);
	v_int(v, (int32_t)ttl_secs);
}

static int cass_health_put(struct geodb *geo, const struct geodb_health *health, unsigned ttl_secs,
			   const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[192];
	snprintf(what, sizeof(what), "recording the health of backend %s seen by %s (table health)",
		 health->backend, health->observer);
	struct vals v = {0};
	health_values(&v, health, ttl_secs);
	return run(db, what, Q_HEALTH_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

static void health_done(const struct cql_reply *reply, void *context)
{
	struct async_job *job = context;
	job->pending = NULL;
	if (reply->error != NULL) {
		char what[192];
		snprintf(what, sizeof(what), "recording the health of backend %s (table health)",
			 job->health_backend);
		reply_error(job->db, reply, what, job->error, sizeof(job->error));
		job->failed = true;
	}
	job_finish(job);
}

static void cass_health_put_async(struct geodb *geo, struct geodb_op *op,
				  const struct geodb_health *health, unsigned ttl_secs)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct async_job *job = calloc(1, sizeof(*job));
	job->db = db;
	job->op = op;
	job->kind = JOB_HEALTH;
	snprintf(job->health_backend, sizeof(job->health_backend), "%s", health->backend);
	job_link(db, job);
	if (db->async == NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: recording the health of backend %s: not attached to an event loop",
			 health->backend);
		job_fail_later(job);
		return;
	}
	struct vals v = {0};
	health_values(&v, health, ttl_secs);
	if (v.error != NULL) {
		snprintf(job->error, sizeof(job->error),
			 "geodb: recording the health of backend %s: %s", health->backend, v.error);
		v_free(&v);
		job_fail_later(job);
		return;
	}
	struct cql_request req;
	fill_request(db, &req, db->cql[Q_HEALTH_PUT], &v, 0);
	job->pending = cql_client_execute(db->async, &req, health_done, job);
	v_free(&v);
}

static int health_cmp(const void *a, const void *b)
{
	const struct geodb_health *x = a, *y = b;
	int c = strcmp(x->backend, y->backend);
	return c != 0 ? c : strcmp(x->observer, y->observer);
}

static int cass_health_list(struct geodb *geo, const char *backend, struct geodb_health **health_r,
			    size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	struct list_ctx ctx = {row_health, 6, sizeof(**health_r), NULL, 0};
	int ret;
	if (backend != NULL) {
		char what[128];
		snprintf(what, sizeof(what), "listing the health of backend %s (table health)",
			 backend);
		struct vals v = {0};
		v_text(&v, backend);
		ret = run(db, what, Q_HEALTH_GET, NULL, &v, F_READ | F_ALL, reply_list, &ctx,
			  error_r);
	} else {
		ret = run(db, "listing health observations (table health)", Q_HEALTH_ALL, NULL,
			  NULL, F_READ | F_ALL, reply_list, &ctx, error_r);
	}
	if (ret < 0)
		return -1;
	struct geodb_health *items = ctx.items;
	if (ctx.count > 1)
		qsort(items, ctx.count, sizeof(*items), health_cmp);
	*health_r = items;
	*count_r = ctx.count;
	return 0;
}

/* ---- the controller's marks ---- */

static int cass_backend_mark(struct geodb *geo, const char *name, enum health_mark mark,
			     int64_t mark_since, const char *reason, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "marking backend %s %s (table backends)", name,
		 health_mark_name(mark));
	struct vals v = {0};
	v_text(&v, health_mark_name(mark));
	v_bigint(&v, mark_since);
	v_text(&v, reason);
	v_text(&v, name);
	/* IF EXISTS: never a row of only a mark for a backend that is gone */
	return run(db, what, Q_BACKEND_MARK, NULL, &v, F_COND, reply_lwt_applied, NULL, error_r);
}

/* ---- move acknowledgements ---- */

static int cass_move_ack_put(struct geodb *geo, const struct geodb_move_ack *ack,
			     unsigned ttl_secs, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[192];
	snprintf(what, sizeof(what),
		 "recording the move acknowledgement of group %u by %s (table move_acks)",
		 ack->group_id, ack->observer);
	struct vals v = {0};
	v_int(&v, (int32_t)ack->group_id);
	v_text(&v, ack->observer);
	v_bigint(&v, (int64_t)ack->epoch);
	v_bigint(&v, ack->acked_at);
	v_int(&v, (int32_t)ttl_secs);
	return run(db, what, Q_MOVE_ACK_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

static int row_move_ack(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_move_ack *ack = item;
	int32_t id;
	int64_t epoch;
	memset(ack, 0, sizeof(*ack));
	if (cell_int(&c[0], "group_id", &id, err, size) < 0 ||
	    cell_text(&c[1], "observer", ack->observer, sizeof(ack->observer), err, size) < 0 ||
	    cell_bigint(&c[2], "epoch", &epoch, err, size) < 0 ||
	    cell_bigint(&c[3], "acked_at", &ack->acked_at, err, size) < 0)
		return -1;
	ack->group_id = (unsigned)id;
	ack->epoch = (uint64_t)epoch;
	return 0;
}

static int move_ack_cmp(const void *a, const void *b)
{
	return strcmp(((const struct geodb_move_ack *)a)->observer,
		      ((const struct geodb_move_ack *)b)->observer);
}

static int cass_move_ack_list(struct geodb *geo, unsigned group_id, struct geodb_move_ack **acks_r,
			      size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[128];
	snprintf(what, sizeof(what), "listing the move acknowledgements of group %u (table "
		 "move_acks)", group_id);
	struct list_ctx ctx = {row_move_ack, 4, sizeof(**acks_r), NULL, 0};
	struct vals v = {0};
	v_int(&v, (int32_t)group_id);
	if (run(db, what, Q_MOVE_ACK_LIST, NULL, &v, F_READ | F_ALL, reply_list, &ctx, error_r) < 0)
		return -1;
	struct geodb_move_ack *items = ctx.items;
	if (ctx.count > 1)
		qsort(items, ctx.count, sizeof(*items), move_ack_cmp);
	*acks_r = items;
	*count_r = ctx.count;
	return 0;
}

/* ---- group loads ---- */

/* One report: its rows go out as prepared inserts, LOAD_PUT_WINDOW in
 * flight at once, each finished one making room for the next; the first
 * error stops sending, and the call returns once none is in flight. */
struct load_put;

struct load_put_slot {
	struct load_put *put;
	struct cql_pending *pending; /* NULL: free */
};

struct load_put {
	struct cassdb *db;
	const char *observer;
	const struct geodb_group_load *rows;
	size_t count, sent;
	unsigned ttl_secs, in_flight;
	bool failed, done;
	char error[768];
	struct load_put_slot slots[LOAD_PUT_WINDOW];
};

static void load_put_fail(struct load_put *put, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void load_put_fail(struct load_put *put, const char *fmt, ...)
{
	if (put->failed)
		return; /* the first error is the one told */
	va_list args;
	va_start(args, fmt);
	vsnprintf(put->error, sizeof(put->error), fmt, args);
	va_end(args);
	put->failed = true;
}

static int32_t clamp_int32(unsigned value)
{
	return value > INT32_MAX ? INT32_MAX : (int32_t)value;
}

static void load_put_done(const struct cql_reply *reply, void *context);

static void load_put_send(struct load_put *put)
{
	struct cassdb *db = put->db;
	for (unsigned i = 0; i < LOAD_PUT_WINDOW && !put->failed && put->sent < put->count; i++) {
		struct load_put_slot *slot = &put->slots[i];
		if (slot->pending != NULL)
			continue;
		const struct geodb_group_load *row = &put->rows[put->sent++];
		struct vals v = {0};
		v_int(&v, (int32_t)row->group_id);
		v_text(&v, put->observer);
		v_int(&v, clamp_int32(row->sessions));
		v_int(&v, clamp_int32(row->logins));
		v_bigint(&v, row->reported_at);
		v_int(&v, (int32_t)put->ttl_secs);
		if (v.error != NULL) {
			load_put_fail(put,
				      "geodb: recording the load of group %u seen by %s (table "
				      "group_load): %s",
				      row->group_id, put->observer, v.error);
			v_free(&v);
			break;
		}
		struct cql_request req;
		fill_request(db, &req, db->cql[Q_GROUP_LOAD_PUT], &v, 0);
		slot->put = put;
		slot->pending = cql_client_execute(db->sync, &req, load_put_done, slot);
		put->in_flight++;
		v_free(&v);
	}
	if (put->in_flight == 0)
		put->done = true;
}

static void load_put_done(const struct cql_reply *reply, void *context)
{
	struct load_put_slot *slot = context;
	struct load_put *put = slot->put;
	slot->pending = NULL;
	put->in_flight--;
	if (reply->error != NULL && !put->failed) {
		char what[160];
		snprintf(what, sizeof(what), "recording group loads seen by %s (table group_load)",
			 put->observer);
		reply_error(put->db, reply, what, put->error, sizeof(put->error));
		put->failed = true;
	}
	load_put_send(put);
}

static int cass_group_load_put(struct geodb *geo, const char *observer,
			       const struct geodb_group_load *rows, size_t count, unsigned ttl_secs,
			       const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	struct load_put *put = calloc(1, sizeof(*put));
	put->db = db;
	put->observer = observer;
	put->rows = rows;
	put->count = count;
	put->ttl_secs = ttl_secs;
	load_put_send(put);
	if (cql_client_wait(db->sync, &put->done) < 0 && !put->done) {
		for (unsigned i = 0; i < LOAD_PUT_WINDOW; i++) {
			if (put->slots[i].pending != NULL)
				cql_client_cancel(&put->slots[i].pending);
		}
		load_put_fail(put,
			      "geodb: recording group loads seen by %s (table group_load): the "
			      "CQL client stopped before the answer came",
			      observer);
	}
	int ret = put->failed ? fail(db, error_r, "%s", put->error) : 0;
	free(put);
	return ret;
}

static int row_group_load(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_group_load *load = item;
	int32_t id, sessions, logins;
	memset(load, 0, sizeof(*load));
	if (cell_int(&c[0], "group_id", &id, err, size) < 0 ||
	    cell_text(&c[1], "observer", load->observer, sizeof(load->observer), err, size) < 0 ||
	    cell_int(&c[2], "sessions", &sessions, err, size) < 0 ||
	    cell_int(&c[3], "logins", &logins, err, size) < 0 ||
	    cell_bigint(&c[4], "reported_at", &load->reported_at, err, size) < 0)
		return -1;
	load->group_id = (unsigned)id;
	load->sessions = sessions < 0 ? 0 : (unsigned)sessions;
	load->logins = logins < 0 ? 0 : (unsigned)logins;
	return 0;
}

static int group_load_cmp(const void *a, const void *b)
{
	const struct geodb_group_load *x = a, *y = b;
	if (x->group_id != y->group_id)
		return x->group_id < y->group_id ? -1 : 1;
	return strcmp(x->observer, y->observer);
}

static int cass_group_load_list(struct geodb *geo, struct geodb_group_load **rows_r,
				size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (list_all(db, "listing group loads (table group_load)", Q_GROUP_LOAD_ALL, row_group_load,
		     GROUP_LOAD_COLUMN_COUNT, sizeof(**rows_r), (void **)rows_r, count_r,
		     error_r) < 0)
		return -1;
	if (*count_r > 1)
		qsort(*rows_r, *count_r, sizeof(**rows_r), group_load_cmp);
	return 0;
}

/* ---- users' last backends ---- */

static int cass_user_last_backend(struct geodb *geo, const char *username, const char *backend,
				  int64_t at_ms, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[USERNAME_MAX_LEN + 64];
	snprintf(what, sizeof(what), "recording the last backend of user %s (table user_backend)",
		 username);
	struct vals v = {0};
	v_text(&v, username);
	v_text(&v, backend);
	v_bigint(&v, at_ms);
	return run(db, what, Q_USER_BACKEND_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

struct user_backend_row {
	char backend[NAME_MAX_LEN + 1];
	int64_t at_ms;
};

static int row_user_backend(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct user_backend_row *row = item;
	if (cell_text(&c[0], "backend", row->backend, sizeof(row->backend), err, size) < 0 ||
	    cell_bigint(&c[1], "recorded_at", &row->at_ms, err, size) < 0)
		return -1;
	return 0;
}

static int cass_user_last_backend_get(struct geodb *geo, const char *username,
				      char backend_r[NAME_MAX_LEN + 1], int64_t *at_ms_r,
				      const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[USERNAME_MAX_LEN + 64];
	snprintf(what, sizeof(what), "reading the last backend of user %s (table user_backend)",
		 username);
	struct vals v = {0};
	v_text(&v, username);
	struct user_backend_row row = {"", 0};
	struct get_ctx ctx = {row_user_backend, 2, &row};
	int found = run(db, what, Q_USER_BACKEND_GET, NULL, &v, F_READ, reply_get, &ctx, error_r);
	if (found > 0) {
		snprintf(backend_r, NAME_MAX_LEN + 1, "%s", row.backend);
		*at_ms_r = row.at_ms;
	}
	return found;
}

/* ---- several sites ---- */

static int cass_site_heartbeat_put(struct geodb *geo, const char *site, const char *writer,
				   int64_t now_ms, unsigned ttl_secs, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[256];
	snprintf(what, sizeof(what), "recording a heartbeat of site %s (table site_heartbeats)",
		 site);
	struct vals v = {0};
	v_text(&v, site);
	v_bigint(&v, now_ms / GEODB_HEARTBEAT_BUCKET_MS);
	v_bigint(&v, now_ms);
	v_text(&v, writer);
	v_bigint(&v, now_ms * 1000); /* USING TIMESTAMP, microseconds */
	v_int(&v, (int32_t)ttl_secs);
	return run(db, what, Q_HEARTBEAT_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

static int row_heartbeat(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_site_heartbeat *hb = item;
	memset(hb, 0, sizeof(*hb));
	if (cell_text(&c[0], "site", hb->site, sizeof(hb->site), err, size) < 0 ||
	    cell_bigint(&c[1], "bucket", &hb->bucket, err, size) < 0 ||
	    cell_bigint(&c[2], "beat_ms", &hb->beat_ms, err, size) < 0 ||
	    cell_text(&c[3], "writer", hb->writer, sizeof(hb->writer), err, size) < 0)
		return -1;
	return 0;
}

struct site_name {
	char name[NAME_MAX_LEN + 1];
};

static int row_site_name(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct site_name *site = item;
	return cell_text(&c[0], "site", site->name, sizeof(site->name), err, size);
}

static int cass_site_heartbeat_list(struct geodb *geo, const char *site, int64_t from_ms,
				    int64_t to_ms, struct geodb_site_heartbeat **rows_r,
				    size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct site_name *sites = NULL;
	size_t site_count = 0;
	if (site != NULL) {
		if (ready(db, error_r) < 0)
			return -1;
		sites = calloc(1, sizeof(*sites));
		snprintf(sites[0].name, sizeof(sites[0].name), "%s", site);
		site_count = 1;
	} else if (list_all(db, "listing the sites with heartbeats (table site_heartbeats)",
			    Q_HEARTBEAT_SITES, row_site_name, 1, sizeof(*sites), (void **)&sites,
			    &site_count, error_r) < 0) {
		return -1;
	}
	/* one partition per site: a range of its buckets each */
	struct geodb_site_heartbeat *all = NULL;
	size_t count = 0;
	for (size_t i = 0; i < site_count; i++) {
		char what[256];
		snprintf(what, sizeof(what),
			 "listing the heartbeats of site %s (table site_heartbeats)",
			 sites[i].name);
		struct vals v = {0};
		v_text(&v, sites[i].name);
		v_bigint(&v, from_ms / GEODB_HEARTBEAT_BUCKET_MS);
		v_bigint(&v, to_ms / GEODB_HEARTBEAT_BUCKET_MS);
		struct list_ctx ctx = {row_heartbeat, HEARTBEAT_COLUMN_COUNT, sizeof(*all), NULL,
				       0};
		if (run(db, what, Q_HEARTBEAT_RANGE, NULL, &v, F_READ | F_ALL, reply_list, &ctx,
			error_r) < 0) {
			free(sites);
			free(all);
			return -1;
		}
		if (ctx.count > 0) {
			all = realloc(all, (count + ctx.count) * sizeof(*all));
			memcpy(all + count, ctx.items, ctx.count * sizeof(*all));
			count += ctx.count;
		}
		free(ctx.items);
	}
	free(sites);
	geodb_sort_heartbeats(all, count);
	*rows_r = all != NULL ? all : calloc(1, sizeof(*all));
	*count_r = count;
	return 0;
}

static int cass_site_reachability_put(struct geodb *geo, const struct geodb_site_reachability *row,
				      unsigned ttl_secs, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[256];
	snprintf(what, sizeof(what),
		 "recording the reachability of site %s from %s (table site_reachability)",
		 row->target_site, row->observer_site);
	struct vals v = {0};
	v_text(&v, row->observer_site);
	v_text(&v, row->target_site);
	v_bool(&v, row->reachable);
	v_bigint(&v, row->since_ms);
	v_bigint(&v, row->observed_ms);
	v_text(&v, geo->writer);
	v_int(&v, (int32_t)ttl_secs);
	return run(db, what, Q_REACH_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

static int row_reachability(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_site_reachability *r = item;
	const char *error;
	memset(r, 0, sizeof(*r));
	if (cell_text(&c[0], "observer_site", r->observer_site, sizeof(r->observer_site), err,
		      size) < 0 ||
	    cell_text(&c[1], "target_site", r->target_site, sizeof(r->target_site), err, size) < 0)
		return -1;
	int ok = cql_value_boolean(&c[2], &r->reachable, &error);
	if (ok < 0)
		return bad_cell(err, size, "reachable", error);
	if (ok == 0)
		r->reachable = false;
	if (cell_bigint(&c[3], "since_ms", &r->since_ms, err, size) < 0 ||
	    cell_bigint(&c[4], "observed_ms", &r->observed_ms, err, size) < 0 ||
	    cell_text(&c[5], "written_by", r->written_by, sizeof(r->written_by), err, size) < 0)
		return -1;
	return 0;
}

static int reachability_cmp(const void *a, const void *b)
{
	const struct geodb_site_reachability *x = a, *y = b;
	int c = strcmp(x->observer_site, y->observer_site);
	return c != 0 ? c : strcmp(x->target_site, y->target_site);
}

static int cass_site_reachability_list(struct geodb *geo, const char *observer_site,
				       struct geodb_site_reachability **rows_r, size_t *count_r,
				       const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct geodb_site_reachability *items;
	size_t count;
	if (list_all(db, "listing the sites' reachability (table site_reachability)", Q_REACH_ALL,
		     row_reachability, REACH_COLUMN_COUNT, sizeof(*items), (void **)&items, &count,
		     error_r) < 0)
		return -1;
	if (observer_site != NULL) {
		size_t kept = 0;
		for (size_t i = 0; i < count; i++) {
			if (strcmp(items[i].observer_site, observer_site) == 0)
				items[kept++] = items[i];
		}
		count = kept;
	}
	if (count > 1)
		qsort(items, count, sizeof(*items), reachability_cmp);
	*rows_r = items;
	*count_r = count;
	return 0;
}

static int row_failover(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_group_failover *cell = item;
	int32_t id;
	int64_t epoch;
	memset(cell, 0, sizeof(*cell));
	if (cell_int(&c[0], "group_id", &id, err, size) < 0 ||
	    cell_text(&c[1], "writer_site", cell->writer_site, sizeof(cell->writer_site), err,
		      size) < 0 ||
	    cell_text(&c[2], "target_site", cell->target_site, sizeof(cell->target_site), err,
		      size) < 0 ||
	    cell_text(&c[3], "target_backend", cell->target_backend, sizeof(cell->target_backend),
		      err, size) < 0 ||
	    cell_text(&c[4], "reason", cell->reason, sizeof(cell->reason), err, size) < 0 ||
	    cell_bigint(&c[5], "written_at_ms", &cell->written_at_ms, err, size) < 0 ||
	    cell_bigint(&c[6], "home_epoch", &epoch, err, size) < 0 ||
	    cell_text(&c[7], "written_by", cell->written_by, sizeof(cell->written_by), err, size) <
		    0)
		return -1;
	cell->group_id = (unsigned)id;
	cell->home_epoch = (uint64_t)epoch;
	return 0;
}

static void failover_values(struct cassdb *db, struct vals *v,
			    const struct geodb_group_failover *cell)
{
	v_int(v, (int32_t)cell->group_id);
	v_text(v, cell->writer_site);
	v_text(v, cell->target_site);
	v_text(v, cell->target_backend);
	v_text(v, cell->reason);
	v_bigint(v, cell->written_at_ms);
	v_bigint(v, (int64_t)cell->home_epoch);
	v_text(v, db->geo.writer);
}

static int cass_group_failover_put(struct geodb *geo, const struct geodb_group_failover *cell,
				   const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[256];
	snprintf(what, sizeof(what), "writing the failover cell of group %u (table group_failover)",
		 cell->group_id);
	struct vals v = {0};
	failover_values(db, &v, cell);
	return run(db, what, Q_FAILOVER_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

/* The result of Q_FAILOVER_INSERT_IF / Q_FAILOVER_UPDATE_IF: applied, or
 * the cell there (its writer_site only, for the update; exists false when
 * there is none). */
struct failover_lwt {
	bool exists;
	struct geodb_group_failover cell;
};

static int reply_failover_lwt(struct cassdb *db, const struct cql_reply *reply, void *context,
			      char *err, size_t size)
{
	struct failover_lwt *ctx = context;
	struct lwt_row row;
	if (lwt_parse(reply, &row, err, size) < 0)
		return -1;
	memset(&ctx->cell, 0, sizeof(ctx->cell));
	ctx->exists = false;
	if (row.applied)
		return 1;
	/* by position (the insert's): [applied], group_id, home_epoch, reason,
	 * target_backend, target_site, writer_site, written_at_ms, written_by;
	 * the update's: [applied], writer_site */
	bool insert = row.count > 2;
	const struct cql_value *writer = lwt_col(&row, "writer_site", insert ? 6 : 1);
	if (writer == NULL)
		return 0;
	const char *error;
	struct cql_string text;
	int r = cql_value_text(writer, &text, &error);
	if (r < 0)
		return bad_cell(err, size, "writer_site", error);
	if (r == 0)
		return 0; /* no row */
	ctx->exists = true;
	if (cell_text(writer, "writer_site", ctx->cell.writer_site, sizeof(ctx->cell.writer_site),
		      err, size) < 0)
		return -1;
	if (!insert)
		return 0;
	const struct cql_value null_cell = {.data = NULL, .len = -1, .type = CQL_TYPE_UNKNOWN};
	const struct cql_value *id = lwt_col(&row, "group_id", 1);
	const struct cql_value *epoch = lwt_col(&row, "home_epoch", 2);
	const struct cql_value *reason = lwt_col(&row, "reason", 3);
	const struct cql_value *backend = lwt_col(&row, "target_backend", 4);
	const struct cql_value *site = lwt_col(&row, "target_site", 5);
	const struct cql_value *at = lwt_col(&row, "written_at_ms", 7);
	const struct cql_value *by = lwt_col(&row, "written_by", 8);
	struct cql_value cells[FAILOVER_COLUMN_COUNT] = {
		id != NULL ? *id : null_cell,         *writer,
		site != NULL ? *site : null_cell,     backend != NULL ? *backend : null_cell,
		reason != NULL ? *reason : null_cell, at != NULL ? *at : null_cell,
		epoch != NULL ? *epoch : null_cell,   by != NULL ? *by : null_cell,
	};
	return row_failover(cells, &ctx->cell, err, size) < 0 ? -1 : 0;
}

static int failover_get(struct cassdb *db, unsigned group_id, unsigned flags,
			struct geodb_group_failover *cell_r, const char **error_r)
{
	char what[256];
	snprintf(what, sizeof(what),
		 "reading the failover cell of group %u (table group_failover%s)", group_id,
		 (flags & F_SERIAL) != 0 ? ", serial" : "");
	struct vals v = {0};
	v_int(&v, (int32_t)group_id);
	struct get_ctx ctx = {row_failover, FAILOVER_COLUMN_COUNT, cell_r};
	return run(db, what, Q_FAILOVER_GET, NULL, &v, flags, reply_get, &ctx, error_r);
}

static int cass_group_failover_get(struct geodb *geo, unsigned group_id,
				   struct geodb_group_failover *cell_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	return failover_get(db, group_id, F_READ, cell_r, error_r);
}

/* INSERT ... IF NOT EXISTS; when a cell is there and is ours (same
 * writer_site), UPDATE ... IF writer_site = ours; when the cell changed in
 * between (released, or written by another), again. */
static int cass_group_failover_put_if(struct geodb *geo, const struct geodb_group_failover *cell,
				      struct geodb_group_failover *stored_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[256];
	snprintf(what, sizeof(what),
		 "writing the failover cell of group %u if no other site's (table group_failover)",
		 cell->group_id);
	struct geodb_group_failover ours = *cell;
	snprintf(ours.written_by, sizeof(ours.written_by), "%s", geo->writer);
	for (int attempt = 0; attempt < GROUP_SET_ATTEMPTS; attempt++) {
		struct failover_lwt ctx;
		struct vals v = {0};
		failover_values(db, &v, cell);
		int applied = run(db, what, Q_FAILOVER_INSERT_IF, NULL, &v, F_COND,
				  reply_failover_lwt, &ctx, error_r);
		if (applied < 0)
			return -1;
		if (applied > 0) {
			*stored_r = ours;
			return 1;
		}
		if (ctx.exists && strcmp(ctx.cell.writer_site, cell->writer_site) != 0) {
			*stored_r = ctx.cell;
			return 0;
		}
		if (!ctx.exists)
			continue; /* gone meanwhile: insert again */
		v = (struct vals){0};
		v_text(&v, cell->target_site);
		v_text(&v, cell->target_backend);
		v_text(&v, cell->reason);
		v_bigint(&v, cell->written_at_ms);
		v_bigint(&v, (int64_t)cell->home_epoch);
		v_text(&v, geo->writer);
		v_int(&v, (int32_t)cell->group_id);
		v_text(&v, cell->writer_site);
		applied = run(db, what, Q_FAILOVER_UPDATE_IF, NULL, &v, F_COND, reply_failover_lwt,
			      &ctx, error_r);
		if (applied < 0)
			return -1;
		if (applied > 0) {
			*stored_r = ours;
			return 1;
		}
		if (ctx.exists) {
			/* another site's now: the whole cell, as it is */
			int found = failover_get(db, cell->group_id, F_SERIAL, stored_r, error_r);
			if (found < 0)
				return -1;
			if (found > 0 && strcmp(stored_r->writer_site, cell->writer_site) != 0)
				return 0;
		}
	}
	return fail(db, error_r, "geodb: %s: it kept changing under us (%d attempts); try again",
		    what, GROUP_SET_ATTEMPTS);
}

static int cass_group_failover_release(struct geodb *geo, unsigned group_id,
				       const char *writer_site, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[256];
	snprintf(
		what, sizeof(what),
		"releasing the failover cell of group %u written by site %s (table group_failover)",
		group_id, writer_site);
	struct vals v = {0};
	v_int(&v, (int32_t)group_id);
	v_text(&v, writer_site);
	return run(db, what, Q_FAILOVER_DELETE_IF, NULL, &v, F_COND, reply_lwt_applied, NULL,
		   error_r);
}

static int cass_group_failover_list(struct geodb *geo, struct geodb_group_failover **cells_r,
				    size_t *count_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (list_all(db, "listing failover cells (table group_failover)", Q_FAILOVER_ALL,
		     row_failover, FAILOVER_COLUMN_COUNT, sizeof(**cells_r), (void **)cells_r,
		     count_r, error_r) < 0)
		return -1;
	geodb_sort_failovers(*cells_r, *count_r);
	return 0;
}

static int row_force_move(const struct cql_value *c, void *item, char *err, size_t size)
{
	struct geodb_site_force_move *move = item;
	int32_t percent;
	memset(move, 0, sizeof(*move));
	if (cell_text(&c[0], "site", move->site, sizeof(move->site), err, size) < 0 ||
	    cell_bigint(&c[1], "id", &move->id, err, size) < 0 ||
	    cell_int(&c[2], "percent", &percent, err, size) < 0 ||
	    cell_text(&c[3], "destinations", move->destinations, sizeof(move->destinations), err,
		      size) < 0 ||
	    cell_bigint(&c[4], "started_ms", &move->started_ms, err, size) < 0 ||
	    cell_text(&c[5], "written_by", move->written_by, sizeof(move->written_by), err, size) <
		    0)
		return -1;
	move->percent = percent < 0 ? 0 : (unsigned)percent;
	return 0;
}

static int cass_site_force_move_start(struct geodb *geo, const struct geodb_site_force_move *move,
				      const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (ready(db, error_r) < 0)
		return -1;
	char what[256];
	snprintf(what, sizeof(what), "starting a force move of site %s (table site_force_moves)",
		 move->site);
	struct vals v = {0};
	v_text(&v, move->site);
	v_bigint(&v, move->id);
	v_int(&v, (int32_t)move->percent);
	v_text(&v, move->destinations);
	v_bigint(&v, move->started_ms);
	v_text(&v, geo->writer);
	return run(db, what, Q_FORCE_MOVE_PUT, NULL, &v, 0, NULL, NULL, error_r) < 0 ? -1 : 0;
}

static int cass_site_force_move_list(struct geodb *geo, const char *site,
				     struct geodb_site_force_move **moves_r, size_t *count_r,
				     const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	if (site == NULL) {
		if (list_all(db, "listing force moves (table site_force_moves)", Q_FORCE_MOVE_ALL,
			     row_force_move, FORCE_MOVE_COLUMN_COUNT, sizeof(**moves_r),
			     (void **)moves_r, count_r, error_r) < 0)
			return -1;
	} else {
		if (ready(db, error_r) < 0)
			return -1;
		char what[256];
		snprintf(what, sizeof(what),
			 "listing the force moves of site %s (table site_force_moves)", site);
		struct vals v = {0};
		v_text(&v, site);
		struct list_ctx ctx = {row_force_move, FORCE_MOVE_COLUMN_COUNT, sizeof(**moves_r),
				       NULL, 0};
		if (run(db, what, Q_FORCE_MOVE_SITE, NULL, &v, F_READ | F_ALL, reply_list, &ctx,
			error_r) < 0)
			return -1;
		*moves_r = ctx.items;
		*count_r = ctx.count;
	}
	geodb_sort_force_moves(*moves_r, *count_r);
	return 0;
}

static int cass_site_force_move_stop(struct geodb *geo, const char *site, int64_t id,
				     unsigned *stopped_r, const char **error_r)
{
	struct cassdb *db = (struct cassdb *)geo;
	struct geodb_site_force_move *moves;
	size_t count;
	if (cass_site_force_move_list(geo, site, &moves, &count, error_r) < 0)
		return -1;
	unsigned stopping = 0;
	for (size_t i = 0; i < count; i++)
		stopping += id == 0 || moves[i].id == id;
	free(moves);
	char what[256];
	snprintf(what, sizeof(what), "stopping the force moves of site %s (table site_force_moves)",
		 site);
	struct vals v = {0};
	v_text(&v, site);
	if (id != 0)
		v_bigint(&v, id);
	if (run(db, what, id != 0 ? Q_FORCE_MOVE_DELETE : Q_FORCE_MOVE_DELETE_SITE, NULL, &v, 0,
		NULL, NULL, error_r) < 0)
		return -1;
	*stopped_r = stopping;
	return 0;
}

const struct geodb_driver geodb_driver_cassandra = {
	.name = "cassandra",
	.prefix = "cassandra:",
	.open = cass_open,
	.spec_check = cass_spec_check,
	.close = cass_close,
	.attach = cass_attach,
	.init = cass_init,
	.schema_text = cass_schema_text,
	.snapshot_read = cass_snapshot_read,
	.read_begin = cass_read_begin,
	.read_end = cass_read_end,
	.changed = NULL,
	.check_group_count = cass_check_group_count,
	.site_add = cass_site_add,
	.site_update = cass_site_update,
	.site_remove = cass_site_remove,
	.site_get = cass_site_get,
	.site_list = cass_site_list,
	.backend_add = cass_backend_add,
	.backend_update = cass_backend_update,
	.backend_remove = cass_backend_remove,
	.backend_get = cass_backend_get,
	.backend_list = cass_backend_list,
	.backend_loads = cass_backend_loads,
	.group_get = cass_group_get,
	.group_assign_if_absent = cass_group_assign_if_absent,
	.group_set = cass_group_set,
	.group_cas = cass_group_cas,
	.group_list = cass_group_list,
	.group_set_sticky = cass_group_set_sticky,
	.user_get = cass_user_get,
	.user_set_group = cass_user_set_group,
	.user_move = cass_user_move,
	.user_delete = cass_user_delete,
	.user_list = cass_user_list,
	.user_last_backend = cass_user_last_backend,
	.user_last_backend_get = cass_user_last_backend_get,
	.lease_acquire = cass_lease_acquire,
	.lease_release = cass_lease_release,
	.health_put = cass_health_put,
	.health_list = cass_health_list,
	.backend_mark = cass_backend_mark,
	.move_ack_put = cass_move_ack_put,
	.move_ack_list = cass_move_ack_list,
	.group_load_put = cass_group_load_put,
	.group_load_list = cass_group_load_list,
	.snapshot_read_async = cass_snapshot_read_async,
	.group_assign_async = cass_group_assign_async,
	.health_put_async = cass_health_put_async,
	.lease_acquire_async = cass_lease_acquire_async,
	.lease_release_async = cass_lease_release_async,
	.site_heartbeat_put = cass_site_heartbeat_put,
	.site_heartbeat_list = cass_site_heartbeat_list,
	.site_reachability_put = cass_site_reachability_put,
	.site_reachability_list = cass_site_reachability_list,
	.group_failover_put = cass_group_failover_put,
	.group_failover_put_if = cass_group_failover_put_if,
	.group_failover_release = cass_group_failover_release,
	.group_failover_get = cass_group_failover_get,
	.group_failover_list = cass_group_failover_list,
	.site_force_move_start = cass_site_force_move_start,
	.site_force_move_stop = cass_site_force_move_stop,
	.site_force_move_list = cass_site_force_move_list,
};
