/* mailcluster.c - the admin CLI, modelled on `doveadm cluster`.
 *
 *   mailcluster -c FILE [-f flow|tab|table|json] COMMAND ...
 *
 * Cluster state commands (site, backend, group, user) talk to the GeoDB
 * named in the configuration file directly, so they work with no daemon
 * running.  `who` and `kick` ask the local daemon over its admin API
 * (admin_listen), because live sessions exist only there.
 *
 * Every command exits 0 on success, 1 when the request was refused or
 * failed (with a sentence on stderr naming the object), 2 on bad usage.
 */
#include "brain/move.h"
#include "brain/placement.h"
#include "brain/types.h"
#include "brain/user.h"
#include "cli/output.h"
#include "net/doveadm.h"
#include "util/command.h"
#include "util/lb_address.h"
#include "util/net_util.h"
#include "store/geodb.h"
#include "store/localdb.h"
#include "store/route.h"
#include "util/settings.h"
#include "util/strbuf.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define EXIT_REFUSED 1
#define EXIT_USAGE 2

struct cli {
	struct settings *set;
	struct geodb *geodb;
	enum output_format format;
};

/* Parsed arguments of one command: --options with values, and positionals. */
#define ARGS_MAX 8
struct args {
	const char *opt_names[ARGS_MAX];
	const char *opt_values[ARGS_MAX];
	unsigned opt_count;
	const char *pos[ARGS_MAX];
	unsigned pos_count;
	bool direct;
};

static const char usage_text[] =
	"usage: mailcluster -c FILE [-f flow|tab|table|json] COMMAND\n"
	"\n"
	"  site add [--tag TAG] [--load-balancer ADDRESS] NAME\n"
	"  site update [--status online|offline|standby|evacuate] [--tag TAG]\n"
	"              [--load-balancer HOST[:PORT]|imap=HOST:PORT,pop3=...|''] NAME\n"
	"  site remove NAME\n"
	"  site status NAME\n"
	"  site list\n"
	"  site force-move start SITE PERCENT DEST...\n"
	"                                            (users of SITE under PERCENT by hash move\n"
	"                                            to the DEST sites at their next login)\n"
	"  site force-move stop SITE\n"
	"  site force-move list [SITE]\n"
	"  site reachability list [OBSERVER]         (what each site's controller sees)\n"
	"  site failover list [HOME]                 (failover cells: groups served by another\n"
	"                                            site, and whether each cell stands)\n"
	"  backend add --site SITE NAME ADDRESS      (added in standby)\n"
	"  backend update [--status online|offline|standby] [--load-factor 0..100] NAME\n"
	"  backend remove NAME\n"
	"  backend status NAME                       (and every daemon's probe of it)\n"
	"  backend list [--site SITE]\n"
	"  backend evacuate [--rate N] [--wait no] NAME\n"
	"                                            (load factor 0, then move every group away)\n"
	"  group list\n"
	"  group status GROUP\n"
	"  group move [--direct] [--wait yes] GROUP BACKEND\n"
	"                                            (without --direct: sessions close first)\n"
	"  user access USER\n"
	"  user status USER\n"
	"  user move [--direct] USER GROUP           (without --direct: sessions close first)\n"
	"  user delete USER\n"
	"  group update --sticky-backend yes|no GROUP (balancing never moves a sticky group)\n"
	"  balance plan                              (asks the running daemon)\n"
	"  who [USER]                                (asks the running daemon)\n"
	"  kick USER                                 (asks the running daemon)\n"
	"  geodb init                                (create or upgrade the schema)\n"
	"  geodb schema                              (print it: SQL or CQL)\n"
	"  geodb refresh                             (the running daemon re-reads the GeoDB now)\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
	if (fmt != NULL) {
		va_list args;
		va_start(args, fmt);
		fprintf(stderr, "mailcluster: ");
		vfprintf(stderr, fmt, args);
		fprintf(stderr, "\n\n");
		va_end(args);
	}
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

static int refused(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int refused(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	fprintf(stderr, "mailcluster: ");
	vfprintf(stderr, fmt, args);
	fprintf(stderr, "\n");
	va_end(args);
	return EXIT_REFUSED;
}

/* Splits argv into --name value options (from the allowed list) and
 * positionals.  --direct takes no value. */
static int parse_args(int argc, char **argv, const char *const *allowed, struct args *args)
{
	memset(args, 0, sizeof(*args));
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			if (args->pos_count == ARGS_MAX)
				return usage("too many arguments");
			args->pos[args->pos_count++] = arg;
			continue;
		}
		bool known = false;
		for (const char *const *a = allowed; *a != NULL; a++) {
			if (strcmp(*a, arg + 2) == 0)
				known = true;
		}
		if (!known)
			return usage("unknown option %s for this command", arg);
		if (strcmp(arg, "--direct") == 0) {
			args->direct = true;
			continue;
		}
		if (i + 1 >= argc)
			return usage("option %s needs a value", arg);
		if (args->opt_count == ARGS_MAX)
			return usage("too many options");
		args->opt_names[args->opt_count] = arg + 2;
		args->opt_values[args->opt_count++] = argv[++i];
	}
	return 0;
}

static const char *opt(const struct args *args, const char *name)
{
	for (unsigned i = 0; i < args->opt_count; i++) {
		if (strcmp(args->opt_names[i], name) == 0)
			return args->opt_values[i];
	}
	return NULL;
}

static void format_time(int64_t t, char *dst, size_t size)
{
	if (t <= 0) {
		snprintf(dst, size, "-");
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(dst, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse_uint(const char *s, unsigned max, unsigned *value_r)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || *s == '-' || v > max)
		return -1;
	*value_r = (unsigned)v;
	return 0;
}

static int check_name(const char *kind, const char *name)
{
	if (!object_name_is_valid(name))
		return refused(
			"invalid %s name '%s': expected 1-63 letters, digits, '-', '_' or '.'",
			kind, name);
	return 0;
}

/* ---- site ---- */

static void print_sites(struct cli *cli, const struct geodb_site *sites, size_t count)
{
	static const char *const cols[] = {"site", "status", "tags", "load_balancer", NULL};
	struct output *out = output_create(cli->format, cols);
	for (size_t i = 0; i < count; i++) {
		const char *row[] = {sites[i].name, site_status_name(sites[i].status),
				     sites[i].tags, sites[i].load_balancer};
		output_row(out, row);
	}
	output_print(out, stdout);
	output_destroy(&out);
}

static int cmd_site(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {"tag", "status", "load-balancer", NULL};
	struct args args;
	const char *error;
	if (argc < 1)
		return usage("site: expected add, update, remove, status or list");
	const char *sub = argv[0];
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (strcmp(sub, "list") == 0) {
		if (args.pos_count != 0)
			return usage("site list takes no arguments");
		struct geodb_site *sites;
		size_t count;
		if (geodb_site_list(cli->geodb, &sites, &count, &error) < 0)
			return refused("%s", error);
		print_sites(cli, sites, count);
		free(sites);
		return 0;
	}
	if (args.pos_count != 1)
		return usage("site %s: expected one site NAME", sub);
	const char *name = args.pos[0];
	if (check_name("site", name) != 0)
		return EXIT_REFUSED;
	struct geodb_site site;
	memset(&site, 0, sizeof(site));
	/* where other sites' daemons send this site's users (util/lb_address.h) */
	const char *lb = opt(&args, "load-balancer");
	if (lb != NULL) {
		if (strlen(lb) >= sizeof(site.load_balancer))
			return refused("invalid load balancer address for site %s: longer than %zu "
				       "characters",
				       name, sizeof(site.load_balancer) - 1);
		if (lb_address_check(lb, &error) < 0)
			return refused(
				"invalid load balancer address '%s' for site %s: %s; expected "
				"HOST[:PORT] or imap=HOST[:PORT],pop3=...,lmtp=...,sieve=...,"
				"submission=... (HOST an IP address), or '' for none",
				lb, name, error);
	}
	if (strcmp(sub, "add") == 0) {
		snprintf(site.name, sizeof(site.name), "%s", name);
		site.status = SITE_STATUS_ONLINE;
		if (opt(&args, "tag") != NULL)
			snprintf(site.tags, sizeof(site.tags), "%s", opt(&args, "tag"));
		if (lb != NULL)
			snprintf(site.load_balancer, sizeof(site.load_balancer), "%s", lb);
		if (geodb_site_add(cli->geodb, &site, &error) < 0)
			return refused("%s", error);
		printf("site %s added (status online)\n", name);
		return 0;
	}
	if (strcmp(sub, "remove") == 0) {
		if (geodb_site_remove(cli->geodb, name, &error) < 0)
			return refused("%s", error);
		printf("site %s removed\n", name);
		return 0;
	}
	int found = geodb_site_get(cli->geodb, name, &site, &error);
	if (found < 0)
		return refused("%s", error);
	if (found == 0)
		return refused("site %s does not exist", name);
	if (strcmp(sub, "status") == 0) {
		print_sites(cli, &site, 1);
		return 0;
	}
	if (strcmp(sub, "update") == 0) {
		const char *status = opt(&args, "status"), *tag = opt(&args, "tag");
		if (status == NULL && tag == NULL && lb == NULL)
			return usage("site update: nothing to change (--status, --tag or "
				     "--load-balancer)");
		if (status != NULL && site_status_parse(status, &site.status) < 0)
			return refused("invalid site status '%s': expected online, offline, "
				       "standby or evacuate",
				       status);
		if (tag != NULL)
			snprintf(site.tags, sizeof(site.tags), "%s", tag);
		if (lb != NULL)
			snprintf(site.load_balancer, sizeof(site.load_balancer), "%s", lb);
		if (geodb_site_update(cli->geodb, &site, &error) < 0)
			return refused("%s", error);
		printf("site %s updated (status %s)\n", name, site_status_name(site.status));
		return 0;
	}
	return usage("site: unknown subcommand '%s'", sub);
}

/* ---- site force-move, site reachability ---- */

static void format_time_ms(int64_t ms, char *dst, size_t size)
{
	format_time(ms > 0 ? ms / 1000 : 0, dst, size);
}

static void print_force_moves(struct cli *cli, const struct geodb_site_force_move *moves,
			      size_t count)
{
	static const char *const cols[] = {"site",    "id",         "percent", "destinations",
					   "started", "written_by", NULL};
	struct output *out = output_create(cli->format, cols);
	for (size_t i = 0; i < count; i++) {
		char id[24], percent[8], started[32];
		snprintf(id, sizeof(id), "%lld", (long long)moves[i].id);
		snprintf(percent, sizeof(percent), "%u", moves[i].percent);
		format_time_ms(moves[i].started_ms, started, sizeof(started));
		const char *row[] = {moves[i].site,         id,      percent,
				     moves[i].destinations, started, moves[i].written_by};
		output_row(out, row);
	}
	output_print(out, stdout);
	output_destroy(&out);
}

/* 0 the site exists, else the exit code (said why). */
static int site_must_exist(struct cli *cli, const char *what, const char *name)
{
	const char *error;
	struct geodb_site site;
	if (check_name("site", name) != 0)
		return EXIT_REFUSED;
	int found = geodb_site_get(cli->geodb, name, &site, &error);
	if (found < 0)
		return refused("%s", error);
	if (found == 0)
		return refused("%s site %s does not exist", what, name);
	return 0;
}

static int force_move_start(struct cli *cli, const struct args *args)
{
	const char *error;
	if (args->pos_count < 3)
		return usage("site force-move start: expected SITE PERCENT DEST...");
	const char *site = args->pos[0];
	int ret = site_must_exist(cli, "site force-move start:", site);
	if (ret != 0)
		return ret;
	unsigned percent;
	if (parse_uint(args->pos[1], 100, &percent) < 0)
		return refused("site force-move start %s: invalid percent '%s': expected 0..100",
			       site, args->pos[1]);
	struct geodb_site_force_move move;
	memset(&move, 0, sizeof(move));
	snprintf(move.site, sizeof(move.site), "%s", site);
	move.percent = percent;
	size_t used = 0;
	for (unsigned i = 2; i < args->pos_count; i++) {
		const char *dest = args->pos[i];
		if (strcmp(dest, site) == 0)
			return refused(
				"site force-move start %s: destination %s is the site itself", site,
				dest);
		char what[128];
		snprintf(what, sizeof(what), "site force-move start %s: destination", site);
		ret = site_must_exist(cli, what, dest);
		if (ret != 0)
			return ret;
		for (unsigned j = 2; j < i; j++) {
			if (strcmp(args->pos[j], dest) == 0)
				return refused("site force-move start %s: destination %s is given "
					       "twice",
					       site, dest);
		}
		int n = snprintf(move.destinations + used, sizeof(move.destinations) - used, "%s%s",
				 used > 0 ? "," : "", dest);
		if (n < 0 || (size_t)n >= sizeof(move.destinations) - used)
			return refused("site force-move start %s: too many destinations (at most "
				       "%d characters)",
				       site, GEODB_FORCE_MOVE_DESTINATIONS_MAX);
		used += (size_t)n;
	}
	/* the site's force move, if it has one, keeps its id: the hash of
	 * (id, user) keeps picking the same users, so raising the percent
	 * adds users and lowering it sends only some of them home */
	struct geodb_site_force_move *moves;
	size_t count;
	if (geodb_site_force_move_list(cli->geodb, site, &moves, &count, &error) < 0)
		return refused("%s", error);
	unsigned was = 0;
	if (count > 0) {
		move.id = moves[0].id;
		was = moves[0].percent;
	} else {
		struct timeval tv;
		gettimeofday(&tv, NULL);
		move.id = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
	}
	free(moves);
	if (geodb_site_force_move_start(cli->geodb, &move, &error) < 0)
		return refused("%s", error);
	if (count > 0)
		printf("site %s: force move %lld changed from %u%% to %u%% of its users, to %s\n",
		       site, (long long)move.id, was, percent, move.destinations);
	else
		printf("site %s: force move %lld started: %u%% of its users move to %s at their "
		       "next login\n",
		       site, (long long)move.id, percent, move.destinations);
	return 0;
}

static int cmd_site_force_move(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {NULL};
	struct args args;
	const char *error;
	if (argc < 1)
		return usage("site force-move: expected start, stop or list");
	const char *sub = argv[0];
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (strcmp(sub, "start") == 0)
		return force_move_start(cli, &args);
	if (strcmp(sub, "list") == 0) {
		if (args.pos_count > 1)
			return usage("site force-move list: expected at most one SITE");
		const char *site = args.pos_count == 1 ? args.pos[0] : NULL;
		if (site != NULL && check_name("site", site) != 0)
			return EXIT_REFUSED;
		struct geodb_site_force_move *moves;
		size_t count;
		if (geodb_site_force_move_list(cli->geodb, site, &moves, &count, &error) < 0)
			return refused("%s", error);
		print_force_moves(cli, moves, count);
		free(moves);
		return 0;
	}
	if (strcmp(sub, "stop") == 0) {
		if (args.pos_count != 1)
			return usage("site force-move stop: expected one SITE");
		const char *site = args.pos[0];
		int ret = site_must_exist(cli, "site force-move stop:", site);
		if (ret != 0)
			return ret;
		unsigned stopped;
		if (geodb_site_force_move_stop(cli->geodb, site, 0, &stopped, &error) < 0)
			return refused("%s", error);
		if (stopped == 0)
			printf("site %s: no force move to stop\n", site);
		else
			printf("site %s: %u force move(s) stopped; its users go home at their next "
			       "login\n",
			       site, stopped);
		return 0;
	}
	return usage("site force-move: unknown subcommand '%s'", sub);
}

static int cmd_site_reachability(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {NULL};
	static const char *const cols[] = {"observer", "target",     "reachable", "since",
					   "observed", "written_by", NULL};
	struct args args;
	const char *error;
	if (argc < 1 || strcmp(argv[0], "list") != 0)
		return usage("site reachability: expected list");
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (args.pos_count > 1)
		return usage("site reachability list: expected at most one OBSERVER site");
	const char *observer = args.pos_count == 1 ? args.pos[0] : NULL;
	if (observer != NULL && check_name("site", observer) != 0)
		return EXIT_REFUSED;
	struct geodb_site_reachability *rows;
	size_t count;
	if (geodb_site_reachability_list(cli->geodb, observer, &rows, &count, &error) < 0)
		return refused("%s", error);
	struct output *out = output_create(cli->format, cols);
	for (size_t i = 0; i < count; i++) {
		char since[32], observed[32];
		format_time_ms(rows[i].since_ms, since, sizeof(since));
		format_time_ms(rows[i].observed_ms, observed, sizeof(observed));
		const char *row[] = {rows[i].observer_site,
				     rows[i].target_site,
				     rows[i].reachable ? "yes" : "no",
				     since,
				     observed,
				     rows[i].written_by};
		output_row(out, row);
	}
	output_print(out, stdout);
	output_destroy(&out);
	free(rows);
	return 0;
}

/* `site failover list [HOME]`: every failover cell (of HOME's groups) with
 * the verdict every host reaches on it (route.h route_cell_verdict()). */
static int cmd_site_failover(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {NULL};
	static const char *const cols[] = {"group",   "home",     "home_backend", "writer",
					   "backend", "reason",   "written",      "home_epoch",
					   "epoch",   "verdict",  "written_by",   NULL};
	struct args args;
	const char *error;
	if (argc < 1 || strcmp(argv[0], "list") != 0)
		return usage("site failover: expected list");
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (args.pos_count > 1)
		return usage("site failover list: expected at most one HOME site");
	const char *home = args.pos_count == 1 ? args.pos[0] : NULL;
	if (home != NULL && check_name("site", home) != 0)
		return EXIT_REFUSED;
	struct geodb_snapshot snap;
	if (geodb_snapshot_read(cli->geodb, &snap, &error) < 0)
		return refused("%s", error);
	struct route_site_view view = {snap.sites, snap.site_count, snap.heartbeats,
				       snap.heartbeat_count};
	struct output *out = output_create(cli->format, cols);
	for (size_t i = 0; i < snap.failover_count; i++) {
		const struct geodb_group_failover *c = &snap.failovers[i];
		const struct geodb_group *g = NULL;
		for (size_t k = 0; k < snap.group_row_count && g == NULL; k++)
			if (snap.groups[k].group_id == c->group_id)
				g = &snap.groups[k];
		if (home != NULL && (g == NULL || strcmp(g->site, home) != 0))
			continue;
		char group[16], written[32], home_epoch[24], epoch[24];
		snprintf(group, sizeof(group), "%u", c->group_id);
		format_time_ms(c->written_at_ms, written, sizeof(written));
		snprintf(home_epoch, sizeof(home_epoch), "%llu", (unsigned long long)c->home_epoch);
		snprintf(epoch, sizeof(epoch), "%llu", g != NULL ? (unsigned long long)g->epoch : 0ULL);
		const char *verdict =
			g == NULL ? "no_group" : site_verdict_name(route_cell_verdict(&view, g, c));
		const char *row[] = {group,
				     g != NULL ? g->site : "",
				     g != NULL ? g->backend : "",
				     c->writer_site,
				     c->target_backend,
				     c->reason,
				     written,
				     home_epoch,
				     epoch,
				     verdict,
				     c->written_by};
		output_row(out, row);
	}
	output_print(out, stdout);
	output_destroy(&out);
	geodb_snapshot_free(&snap);
	return 0;
}

/* ---- backend ---- */

static unsigned backend_group_count(struct geodb_backend_load *loads, size_t count,
				    const char *name)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(loads[i].backend, name) == 0)
			return loads[i].groups;
	}
	return 0;
}

static struct output *backends_output(struct cli *cli, const struct geodb_backend *backends,
				      size_t count, const char **error_r)
{
	static const char *const cols[] = {"backend",    "site",        "address", "status",
					   "load_factor", "groups",     "updated_by", "updated_at",
					   "mark",        "mark_since", "mark_reason", NULL};
	struct geodb_backend_load *loads;
	size_t load_count;
	if (geodb_backend_loads(cli->geodb, &loads, &load_count, error_r) < 0)
		return NULL;
	struct output *out = output_create(cli->format, cols);
	for (size_t i = 0; i < count; i++) {
		char lf[16], groups[16], at[32], mark_since[32];
		format_time(backends[i].mark_since, mark_since, sizeof(mark_since));
		snprintf(lf, sizeof(lf), "%u", backends[i].load_factor);
		snprintf(groups, sizeof(groups), "%u",
			 backend_group_count(loads, load_count, backends[i].name));
		format_time(backends[i].updated_at, at, sizeof(at));
		const char *row[] = {backends[i].name,
				     backends[i].site,
				     backends[i].address,
				     backend_status_name(backends[i].status),
				     lf,
				     groups,
				     backends[i].updated_by,
				     at,
				     health_mark_name(backends[i].mark),
				     mark_since,
				     backends[i].mark_reason};
		output_row(out, row);
	}
	free(loads);
	return out;
}

static int print_backends(struct cli *cli, const struct geodb_backend *backends, size_t count)
{
	const char *error;
	struct output *out = backends_output(cli, backends, count, &error);
	if (out == NULL)
		return refused("%s", error);
	output_print(out, stdout);
	output_destroy(&out);
	return 0;
}

/* `backend status`: the backend, then every daemon's latest probe of it
 * (json: as its member "observations"). */
static int print_backend_status(struct cli *cli, const struct geodb_backend *backend)
{
	static const char *const cols[] = {"observer", "health", "since", "age", "detail", NULL};
	const char *error;
	struct geodb_health *health;
	size_t count;
	if (geodb_health_list(cli->geodb, backend->name, &health, &count, &error) < 0)
		return refused("%s", error);
	struct output *out = backends_output(cli, backend, 1, &error);
	if (out == NULL) {
		free(health);
		return refused("%s", error);
	}
	struct output *observations = output_create(cli->format, cols);
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < count; i++) {
		char since[32], age[32];
		format_time(health[i].since, since, sizeof(since));
		int64_t seconds = now - health[i].observed_at;
		snprintf(age, sizeof(age), "%llds", (long long)(seconds > 0 ? seconds : 0));
		const char *row[] = {health[i].observer, health[i].ok ? "ok" : "failing", since,
				     age, health[i].detail};
		output_row(observations, row);
	}
	free(health);
	output_attach(out, "observations", observations);
	output_print(out, stdout);
	output_destroy(&out);
	return 0;
}

static int backend_evacuate(struct cli *cli, const struct geodb_backend *backend, unsigned rate,
			    bool wait);

static int cmd_backend(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {"site", "status", "load-factor", "rate", "wait",
					      NULL};
	struct args args;
	const char *error;
	if (argc < 1)
		return usage("backend: expected add, update, remove, status or list");
	const char *sub = argv[0];
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (strcmp(sub, "list") == 0) {
		if (args.pos_count != 0)
			return usage("backend list takes no arguments besides --site");
		struct geodb_backend *backends;
		size_t count;
		if (geodb_backend_list(cli->geodb, opt(&args, "site"), &backends, &count, &error) <
		    0)
			return refused("%s", error);
		int ret = print_backends(cli, backends, count);
		free(backends);
		return ret;
	}
	if (strcmp(sub, "add") == 0) {
		const char *site = opt(&args, "site");
		if (site == NULL || args.pos_count != 2)
			return usage("backend add: expected --site SITE NAME ADDRESS");
		if (check_name("backend", args.pos[0]) != 0 || check_name("site", site) != 0)
			return EXIT_REFUSED;
		if (!net_is_ip_address(args.pos[1]))
			return refused("invalid address '%s' for backend %s: expected an IPv4 or "
				       "IPv6 address",
				       args.pos[1], args.pos[0]);
		if (geodb_backend_add(cli->geodb, site, args.pos[0], args.pos[1], &error) < 0)
			return refused("%s", error);
		printf("backend %s added to site %s at %s (status standby: "
		       "'backend update --status online %s' to use it)\n",
		       args.pos[0], site, args.pos[1], args.pos[0]);
		return 0;
	}
	if (args.pos_count != 1)
		return usage("backend %s: expected one backend NAME", sub);
	const char *name = args.pos[0];
	if (check_name("backend", name) != 0)
		return EXIT_REFUSED;
	if (strcmp(sub, "remove") == 0) {
		unsigned unassigned;
		if (geodb_backend_remove(cli->geodb, name, &unassigned, &error) < 0)
			return refused("%s", error);
		printf("backend %s removed; %u group(s) unassigned (they are placed again at their "
		       "next login)\n",
		       name, unassigned);
		return 0;
	}
	struct geodb_backend backend;
	int found = geodb_backend_get(cli->geodb, name, &backend, &error);
	if (found < 0)
		return refused("%s", error);
	if (found == 0)
		return refused("backend %s does not exist", name);
	if (strcmp(sub, "status") == 0)
		return print_backend_status(cli, &backend);
	if (strcmp(sub, "evacuate") == 0) {
		unsigned rate = cli->set->move_rate;
		const char *r = opt(&args, "rate");
		if (r != NULL && (parse_uint(r, 10000, &rate) < 0 || rate == 0))
			return refused("invalid --rate '%s': expected 1..10000 groups per second", r);
		const char *wait = opt(&args, "wait");
		return backend_evacuate(cli, &backend, rate, wait == NULL || strcmp(wait, "no") != 0);
	}
	if (strcmp(sub, "update") == 0) {
		const char *status = opt(&args, "status"), *lf = opt(&args, "load-factor");
		if (status == NULL && lf == NULL)
			return usage(
				"backend update: nothing to change (--status or --load-factor)");
		if (status != NULL && backend_status_parse(status, &backend.status) < 0)
			return refused(
				"invalid backend status '%s': expected online, offline or standby",
				status);
		if (lf != NULL && parse_uint(lf, 100, &backend.load_factor) < 0)
			return refused("invalid load factor '%s' for backend %s: expected 0..100",
				       lf, name);
		if (geodb_backend_update(cli->geodb, &backend, &error) < 0)
			return refused("%s", error);
		printf("backend %s updated (status %s, load factor %u)\n", name,
		       backend_status_name(backend.status), backend.load_factor);
		return 0;
	}
	return usage("backend: unknown subcommand '%s'", sub);
}

/* ---- group ---- */

static void group_row(struct output *out, const struct geodb_group *g)
{
	char id[16], epoch[24], at[32];
	snprintf(id, sizeof(id), "%u", g->group_id);
	snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)g->epoch);
	format_time(g->written_at, at, sizeof(at));
	char started[32];
	format_time(g->move_started_ms / 1000, started, sizeof(started));
	char moved[32], history[BALANCE_HISTORY * (NAME_MAX_LEN + 40) + 1];
	format_time(g->moved_at_ms / 1000, moved, sizeof(moved));
	/* "b2 (left 2026-...), b1 (...)" */
	history[0] = '\0';
	size_t len = 0;
	for (int h = 0; h < BALANCE_HISTORY && g->history[h].backend[0] != '\0'; h++) {
		char left[32];
		format_time(g->history[h].left_ms / 1000, left, sizeof(left));
		int n = snprintf(history + len, sizeof(history) - len, "%s%s@%s", h == 0 ? "" : ",",
				 g->history[h].backend, left);
		if (n < 0 || (size_t)n >= sizeof(history) - len)
			break;
		len += (size_t)n;
	}
	const char *row[] = {id,
			     g->site,
			     g->backend,
			     epoch,
			     g->written_by,
			     at,
			     g->alt_backend,
			     g->move_to,
			     g->move_to[0] != '\0' ? started : "",
			     g->move_reason,
			     g->sticky ? "yes" : "no",
			     moved,
			     history,
			     g->failover_site};
	output_row(out, row);
}

static const char *const group_cols[] = {"group",        "site",          "backend",     "epoch",
					 "written_by",   "written_at",    "alt_backend", "move_to",
					 "move_started", "move_reason",   "sticky",      "moved_at",
					 "history",      "failover_site", NULL};

static int64_t unix_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Starts a move of group to backend (brain/move.h): the daemons hold the
 * group's logins and close its sessions, the controller finishes it.
 * Returns 1 started, 0 not needed (printed why), -1 refused (printed). */
static int move_start(struct cli *cli, unsigned group_id, const struct geodb_backend *backend,
		      const char *reason, bool quiet)
{
	const char *error;
	struct geodb_group group;
	int found;
	unsigned tries = 0;
again:
	found = geodb_group_get(cli->geodb, group_id, &group, &error);
	if (found < 0)
		return refused("%s", error), -1;
	if (found == 0 || group.backend[0] == '\0') {
		/* nobody can have sessions of a group without a backend */
		if (geodb_group_set(cli->geodb, group_id, backend->site, backend->name, &error) < 0)
			return refused("%s", error), -1;
		if (!quiet)
			printf("group %u had no backend: assigned to %s (site %s)\n", group_id,
			       backend->name, backend->site);
		return 0;
	}
	if (group.move_to[0] != '\0')
		return refused("group %u is already moving from %s to %s (%s); wait for it to "
			       "finish, or use --direct",
			       group_id, group.backend, group.move_to, group.move_reason),
		       -1;
	if (strcmp(group.site, backend->site) != 0)
		return refused("group %u is in site %s and backend %s in site %s: moves between "
			       "sites are not supported yet; use --direct",
			       group_id, group.site, backend->name, backend->site),
		       -1;
	if (strcmp(group.backend, backend->name) == 0) {
		if (!quiet)
			printf("group %u is already on backend %s\n", group_id, backend->name);
		return 0;
	}
	struct geodb_group row = group, stored;
	snprintf(row.move_to, sizeof(row.move_to), "%s", backend->name);
	row.move_started_ms = unix_ms();
	snprintf(row.move_reason, sizeof(row.move_reason), "%s", reason);
	int r = geodb_group_cas(cli->geodb, &row, group.epoch, &stored, &error);
	if (r < 0)
		return refused("%s", error), -1;
	if (r == 0 && ++tries < 5)
		goto again; /* e.g. the controller chose a new alternative meanwhile */
	if (r == 0)
		return refused("group %u changed while the move was being started (now on %s, "
			       "epoch %llu); try again",
			       group_id, stored.backend, (unsigned long long)stored.epoch),
		       -1;
	if (!quiet)
		printf("group %u: moving from %s to %s (the proxies hold its logins and close its "
		       "sessions; the controller switches it once they all have, within "
		       "move_timeout %us)\n",
		       group_id, group.backend, backend->name, cli->set->move_timeout_ms / 1000);
	return 1;
}


static int move_wait(struct cli *cli, unsigned group_id, unsigned timeout_ms);

/* `backend evacuate`: load factor 0 (no new groups), then every group of
 * the backend moves (the full protocol: brain/move.h) to its alternative,
 * or to the backend placement picks, at move_rate groups per second. */
static int backend_evacuate(struct cli *cli, const struct geodb_backend *backend, unsigned rate,
			    bool wait)
{
	const char *error;
	if (backend->load_factor != 0) {
		struct geodb_backend updated = *backend;
		updated.load_factor = 0;
		if (geodb_backend_update(cli->geodb, &updated, &error) < 0)
			return refused("%s", error);
		printf("backend %s: load factor 0 (it takes no new groups; 'backend update "
		       "--load-factor N %s' undoes it)\n",
		       backend->name, backend->name);
	}
	struct geodb_backend *backends;
	size_t backend_count;
	if (geodb_backend_list(cli->geodb, backend->site, &backends, &backend_count, &error) < 0)
		return refused("%s", error);
	struct geodb_group *groups;
	size_t group_count;
	if (geodb_group_list(cli->geodb, &groups, &group_count, &error) < 0) {
		free(backends);
		return refused("%s", error);
	}
	struct placement_candidate *cand = calloc(backend_count + 1, sizeof(*cand));
	size_t self = backend_count;
	for (size_t b = 0; b < backend_count; b++) {
		const struct geodb_backend *be = &backends[b];
		if (strcmp(be->name, backend->name) == 0)
			self = b;
		cand[b].name = be->name;
		cand[b].load_factor = strcmp(be->name, backend->name) == 0 ? 0 : be->load_factor;
		cand[b].status = be->mark == HEALTH_MARK_DOWN ? BACKEND_STATUS_OFFLINE : be->status;
		for (size_t g = 0; g < group_count; g++)
			cand[b].assigned_groups += strcmp(groups[g].backend, be->name) == 0;
	}
	unsigned *moving = calloc(group_count + 1, sizeof(*moving));
	size_t moving_count = 0, to_move = 0, stranded = 0;
	for (size_t g = 0; g < group_count; g++)
		to_move += strcmp(groups[g].backend, backend->name) == 0;
	printf("backend %s: %zu group(s) to move at %u per second\n", backend->name, to_move, rate);
	int64_t t0 = unix_ms();
	uint64_t started = 0;
	int ret = 0;
	for (size_t g = 0; g < group_count && self < backend_count; g++) {
		const struct geodb_group *gr = &groups[g];
		if (strcmp(gr->backend, backend->name) != 0)
			continue;
		if (gr->move_to[0] != '\0') {
			moving[moving_count++] = gr->group_id;
			continue;
		}
		int target = -1;
		for (size_t b = 0; b < backend_count && gr->alt_backend[0] != '\0'; b++) {
			if (b != self && strcmp(backends[b].name, gr->alt_backend) == 0 &&
			    cand[b].status == BACKEND_STATUS_ONLINE && cand[b].load_factor > 0)
				target = (int)b;
		}
		if (target < 0)
			target = placement_choose_alternative(cand, backend_count, self, gr->group_id);
		if (target < 0) {
			stranded++;
			continue;
		}
		while (move_rate_allowance(rate, t0, started, unix_ms()) == 0)
			usleep(20 * 1000);
		char reason[96];
		snprintf(reason, sizeof(reason), "operator: backend evacuate %.60s", backend->name);
		int r = move_start(cli, gr->group_id, &backends[target], reason, true);
		if (r < 0) {
			ret = EXIT_REFUSED;
			break;
		}
		started++;
		cand[target].assigned_groups++;
		if (r == 1) {
			moving[moving_count++] = gr->group_id;
			printf("group %u: moving from %s to %s\n", gr->group_id, backend->name,
			       backends[target].name);
			fflush(stdout);
		}
	}
	if (stranded > 0)
		printf("backend %s: %zu group(s) stay: no other online backend of site %s with load "
		       "factor > 0 can take them\n",
		       backend->name, stranded, backend->site);
	for (size_t i = 0; i < moving_count && wait && ret == 0; i++) {
		if (move_wait(cli, moving[i], cli->set->move_timeout_ms + 30000) != 0)
			ret = EXIT_REFUSED;
	}
	if (ret == 0 && wait)
		printf("backend %s: evacuated (%zu group(s) moved)\n", backend->name, moving_count);
	free(moving);
	free(cand);
	free(groups);
	free(backends);
	return ret != 0 ? ret : (stranded > 0 ? EXIT_REFUSED : 0);
}

/* Waits until group_id is no longer moving; prints where it ended. */
static int move_wait(struct cli *cli, unsigned group_id, unsigned timeout_ms)
{
	const char *error;
	int64_t deadline = unix_ms() + timeout_ms;
	for (;;) {
		struct geodb_group group;
		int found = geodb_group_get(cli->geodb, group_id, &group, &error);
		if (found < 0)
			return refused("%s", error);
		if (found == 0 || group.move_to[0] == '\0') {
			printf("group %u: on backend %s\n", group_id, found ? group.backend : "-");
			return 0;
		}
		if (unix_ms() >= deadline)
			return refused("group %u is still moving from %s to %s after %us: is a "
				       "daemon of site %s running (its controller finishes moves)?",
				       group_id, group.backend, group.move_to, timeout_ms / 1000,
				       group.site);
		usleep(200 * 1000);
	}
}

static int parse_group(struct cli *cli, const char *s, unsigned *group_r)
{
	if (parse_uint(s, cli->set->group_count - 1, group_r) < 0)
		return refused(
			"invalid group '%s': expected a number from 0 to %u (group_count - 1)", s,
			cli->set->group_count - 1);
	return 0;
}

static int cmd_group(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {"direct", "wait", "sticky-backend", NULL};
	struct args args;
	const char *error;
	if (argc < 1)
		return usage("group: expected list, status, move or update");
	const char *sub = argv[0];
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (strcmp(sub, "list") == 0) {
		struct geodb_group *groups;
		size_t count;
		if (geodb_group_list(cli->geodb, &groups, &count, &error) < 0)
			return refused("%s", error);
		struct output *out = output_create(cli->format, group_cols);
		for (size_t i = 0; i < count; i++)
			group_row(out, &groups[i]);
		output_print(out, stdout);
		output_destroy(&out);
		free(groups);
		return 0;
	}
	unsigned group_id;
	if (strcmp(sub, "status") == 0) {
		if (args.pos_count != 1)
			return usage("group status: expected GROUP");
		if (parse_group(cli, args.pos[0], &group_id) != 0)
			return EXIT_REFUSED;
		struct geodb_group group;
		int found = geodb_group_get(cli->geodb, group_id, &group, &error);
		if (found < 0)
			return refused("%s", error);
		if (found == 0) {
			memset(&group, 0, sizeof(group));
			group.group_id = group_id;
			snprintf(group.backend, sizeof(group.backend), "-");
			snprintf(group.site, sizeof(group.site), "-");
		}
		struct output *out = output_create(cli->format, group_cols);
		group_row(out, &group);
		output_print(out, stdout);
		output_destroy(&out);
		return 0;
	}
	if (strcmp(sub, "update") == 0) {
		const char *sticky = opt(&args, "sticky-backend");
		if (args.pos_count != 1 || sticky == NULL)
			return usage("group update: expected --sticky-backend yes|no GROUP");
		if (strcmp(sticky, "yes") != 0 && strcmp(sticky, "no") != 0)
			return refused("invalid --sticky-backend '%s': expected yes or no", sticky);
		if (parse_group(cli, args.pos[0], &group_id) != 0)
			return EXIT_REFUSED;
		int r = geodb_group_set_sticky(cli->geodb, group_id, strcmp(sticky, "yes") == 0,
					       &error);
		if (r < 0)
			return refused("%s", error);
		if (r == 0)
			return refused("group %u has no backend yet: nothing to pin", group_id);
		printf("group %u: sticky %s\n", group_id, sticky);
		return 0;
	}
	if (strcmp(sub, "move") == 0) {
		if (args.pos_count != 2)
			return usage("group move: expected [--direct] [--wait yes] GROUP BACKEND");
		if (parse_group(cli, args.pos[0], &group_id) != 0)
			return EXIT_REFUSED;
		struct geodb_backend backend;
		int found = geodb_backend_get(cli->geodb, args.pos[1], &backend, &error);
		if (found < 0)
			return refused("%s", error);
		if (found == 0)
			return refused("backend %s does not exist", args.pos[1]);
		if (!args.direct) {
			if (backend.status != BACKEND_STATUS_ONLINE ||
			    backend.mark != HEALTH_MARK_UP)
				return refused("backend %s cannot take groups now (status %s, "
					       "marked %s)",
					       backend.name, backend_status_name(backend.status),
					       health_mark_name(backend.mark));
			char reason[96];
			snprintf(reason, sizeof(reason), "operator: group move");
			int r = move_start(cli, group_id, &backend, reason, false);
			if (r < 0)
				return EXIT_REFUSED;
			const char *wait = opt(&args, "wait");
			if (r == 1 && wait != NULL && strcmp(wait, "no") != 0)
				return move_wait(cli, group_id, cli->set->move_timeout_ms + 30000);
			return 0;
		}
		if (geodb_group_set(cli->geodb, group_id, backend.site, backend.name, &error) < 0)
			return refused("%s", error);
		printf("group %u moved to backend %s (site %s); new logins go there, open sessions "
		       "stay\n",
		       group_id, backend.name, backend.site);
		return 0;
	}
	return usage("group: unknown subcommand '%s'", sub);
}

/* ---- user ---- */

/* `user move` without --direct: the user's new group is written with a
 * hold: every proxy holds the user's logins until then, and sees the move
 * meanwhile (a local GeoDB within 250 ms, a remote one within
 * localdb_refresh) and ends the user's sessions on the old backend. */
static int user_move(struct cli *cli, const char *user, unsigned group_id)
{
	const char *error;
	struct geodb_user row;
	int found = geodb_user_get(cli->geodb, user, &row, &error);
	if (found < 0)
		return refused("%s", error);
	unsigned old_group = found ? row.group_id : user_hash_group(user, cli->set->group_count);
	struct geodb_group from, to;
	int from_found = geodb_group_get(cli->geodb, old_group, &from, &error);
	if (from_found < 0)
		return refused("%s", error);
	int to_found = geodb_group_get(cli->geodb, group_id, &to, &error);
	if (to_found < 0)
		return refused("%s", error);
	bool same = from_found == 1 && to_found == 1 && from.move_to[0] == '\0' &&
		    to.move_to[0] == '\0' && strcmp(from.backend, to.backend) == 0;
	int64_t hold_ms = 0;
	if (!same && from_found == 1) {
		/* how long until every proxy has seen it, with a margin */
		hold_ms = (strncmp(cli->set->geodb, "sqlite:", 7) == 0
				   ? 250
				   : (int64_t)cli->set->localdb_refresh_ms) +
			  1000;
		if (hold_ms > (int64_t)cli->set->move_timeout_ms)
			hold_ms = cli->set->move_timeout_ms;
	}
	/* the doveadm kick and the hook run once every proxy has seen the
	 * move, while the logins are still held: the hold covers them too
	 * (the hook's budget, within move_timeout), and is released after */
	bool extra = hold_ms > 0 &&
		     (cli->set->backend_doveadm_url[0] != '\0' || cli->set->move_hook[0] != '\0');
	int64_t budget = 0;
	if (extra) {
		budget = (int64_t)cli->set->move_timeout_ms - hold_ms;
		if (budget > (int64_t)cli->set->move_hook_timeout_ms + 2000)
			budget = (int64_t)cli->set->move_hook_timeout_ms + 2000;
		if (budget < 0)
			budget = 0;
	}
	/* the user's last backend before the one it leaves (for the hook):
	 * the later of the one an earlier user move recorded and the one its
	 * group was on before */
	char last_backend[NAME_MAX_LEN + 1] = "", last_left[24] = "";
	int64_t last_at = 0;
	if (geodb_user_last_backend_get(cli->geodb, user, last_backend, &last_at, &error) != 1 ||
	    (from_found == 1 && strcmp(last_backend, from.backend) == 0)) {
		last_backend[0] = '\0';
		last_at = 0;
	}
	if (from_found == 1 && from.history[0].backend[0] != '\0' &&
	    from.history[0].left_ms > last_at) {
		snprintf(last_backend, sizeof(last_backend), "%s", from.history[0].backend);
		last_at = from.history[0].left_ms;
	}
	if (last_backend[0] != '\0')
		snprintf(last_left, sizeof(last_left), "%lld", (long long)(last_at / 1000));
	int64_t start = unix_ms();
	if (geodb_user_move(cli->geodb, user, group_id, hold_ms > 0 ? start + hold_ms + budget : 0,
			    &error) < 0)
		return refused("%s", error);
	if (!same && from_found == 1 &&
	    geodb_user_last_backend(cli->geodb, user, from.backend, start, &error) < 0)
		fprintf(stderr, "mailcluster: user %s: recording its last backend failed: %s\n", user,
			error);
	if (hold_ms == 0) {
		printf("user %s moved to group %u%s%s\n", user, group_id,
		       same ? " on the same backend " : "", same ? to.backend : "");
		return 0;
	}
	printf("user %s moved from group %u (backend %s) to group %u (backend %s); its logins "
	       "are held for %lld ms while every proxy ends its sessions on %s\n",
	       user, old_group, from.backend, group_id, to_found == 1 ? to.backend : "-",
	       (long long)(hold_ms + budget), from.backend);
	fflush(stdout);
	if (!extra)
		return 0;
	int64_t wait = start + hold_ms - unix_ms();
	if (wait > 0)
		usleep((useconds_t)wait * 1000);
	int ret = 0;
	if (cli->set->backend_doveadm_url[0] != '\0') {
		struct geodb_backend old_backend;
		char url[600];
		unsigned kicked = 0;
		const char *users[] = {user};
		if (geodb_backend_get(cli->geodb, from.backend, &old_backend, &error) != 1 ||
		    doveadm_url_expand(cli->set->backend_doveadm_url, old_backend.name,
				       old_backend.address, url, sizeof(url)) < 0) {
			fprintf(stderr, "mailcluster: user %s: no doveadm URL for backend %s\n", user,
				from.backend);
			ret = EXIT_REFUSED;
		} else if (doveadm_kick(url, cli->set->backend_doveadm_api_key, users, 1,
					cli->set->probe_timeout_ms, &kicked, &error) < 0) {
			fprintf(stderr, "mailcluster: user %s: kicking on %s failed (the move goes on): "
				"%s\n", user, from.backend, error);
			ret = EXIT_REFUSED;
		} else {
			printf("user %s: %u kicked on %s through doveadm\n", user, kicked, from.backend);
		}
	}
	if (cli->set->move_hook[0] != '\0') {
		char group[16];
		snprintf(group, sizeof(group), "%u", group_id);
		const struct command_var vars[] = {{"user", user},
						   {"group", group},
						   {"from", from.backend},
						   {"to", to_found == 1 ? to.backend : ""},
						   {"last_backend", last_backend},
						   {"last_backend_left", last_left}};
		int status;
		char output[512] = "";
		unsigned timeout = (unsigned)(budget > 2000 ? budget - 2000 : 1000);
		if (command_run(cli->set->move_hook, vars, sizeof(vars) / sizeof(vars[0]), timeout,
				&status, output,
				sizeof(output), &error) < 0) {
			fprintf(stderr, "mailcluster: user %s: move_hook failed (the move goes on): %s; "
				"output: %s\n", user, error, output);
			ret = EXIT_REFUSED;
		} else {
			printf("user %s: move_hook ran (exit 0)%s%s\n", user, output[0] ? ": " : "",
			       output);
		}
	}
	/* release the hold: the user's logins go on now */
	if (geodb_user_move(cli->geodb, user, group_id, 0, &error) < 0)
		return refused("%s (the hold ends by itself at its time)", error);
	return ret;
}

static int cmd_user(struct cli *cli, int argc, char **argv)
{
	static const char *const allowed[] = {"direct", NULL};
	struct args args;
	const char *error;
	if (argc < 1)
		return usage("user: expected access, status, move or delete");
	const char *sub = argv[0];
	if (parse_args(argc - 1, argv + 1, allowed, &args) != 0)
		return EXIT_USAGE;
	if (strcmp(sub, "move") == 0) {
		if (args.pos_count != 2)
			return usage("user move: expected [--direct] USER GROUP");
		char normalized[USERNAME_MAX_LEN + 1];
		if (user_normalize(args.pos[0], normalized, sizeof(normalized)) < 0)
			return refused("invalid user name '%s'", args.pos[0]);
		unsigned group_id;
		if (parse_group(cli, args.pos[1], &group_id) != 0)
			return EXIT_REFUSED;
		if (args.direct) {
			if (geodb_user_set_group(cli->geodb, normalized, group_id, &error) < 0)
				return refused("%s", error);
			printf("user %s moved to group %u\n", normalized, group_id);
			return 0;
		}
		return user_move(cli, normalized, group_id);
	}
	if (args.pos_count != 1)
		return usage("user %s: expected USER", sub);
	const char *user = args.pos[0];
	if (strcmp(sub, "delete") == 0) {
		char normalized[USERNAME_MAX_LEN + 1];
		if (user_normalize(user, normalized, sizeof(normalized)) < 0)
			return refused("invalid user name '%s'", user);
		int deleted = geodb_user_delete(cli->geodb, normalized, &error);
		if (deleted < 0)
			return refused("%s", error);
		if (deleted == 0)
			return refused("user %s has no stored override to delete", normalized);
		printf("user %s deleted: back to its hash group %u\n", normalized,
		       user_hash_group(normalized, cli->set->group_count));
		return 0;
	}
	bool access = strcmp(sub, "access") == 0;
	if (!access && strcmp(sub, "status") != 0)
		return usage("user: unknown subcommand '%s'", sub);
	struct route_result route;
	const char *reason;
	struct geodb_snapshot snap;
	if (geodb_snapshot_read(cli->geodb, &snap, &error) < 0)
		return refused("%s", error);
	struct localdb *ldb = localdb_create(cli->set->group_count);
	localdb_set_metacache_ttl(ldb, cli->set->metacache_ttl_ms);
	if (localdb_replace(ldb, &snap, &error) < 0) {
		geodb_snapshot_free(&snap);
		localdb_destroy(&ldb);
		return refused("%s", error);
	}
	enum route_status status =
		route_user_sync(cli->geodb, ldb, cli->set->site, user, access, &route, &reason);
	/* a group in another site: a login here goes to that site's load
	 * balancer (as the daemon's route_check_site()) */
	status = route_check_site(ldb, cli->set->site, cli->set->site_direct_backends, status,
				  &route, &reason);
	localdb_destroy(&ldb);
	if (status == ROUTE_BAD_USER || status == ROUTE_ERROR)
		return refused("user %s: %s", user, reason);
	char group[16];
	snprintf(group, sizeof(group), "%u", route.group_id);
	const char *backend = route.group.backend[0] != '\0' ? route.group.backend : "-";
	const char *site = route.group.site[0] != '\0' ? route.group.site : "-";
	if (access) {
		static const char *const cols[] = {"user",     "group",  "backend", "address",
						   "via_site", "status", NULL};
		const char *address =
			route.backend.address[0] != '\0' ? route.backend.address : "-";
		if (route.via_site[0] != '\0')
			address = route.via.load_balancer;
		const char *row[] = {route.username,
				     group,
				     backend,
				     address,
				     route.via_site[0] != '\0' ? route.via_site : "-",
				     status == ROUTE_OK ? "ok" : reason};
		struct output *out = output_create(cli->format, cols);
		output_row(out, row);
		output_print(out, stdout);
		output_destroy(&out);
		return status == ROUTE_OK ? 0 : EXIT_REFUSED;
	}
	/* the user's last backend: a user move recorded it, or its group's
	 * latest switch did (whichever is newer) */
	char last[NAME_MAX_LEN + 1] = "", last_at[32] = "-";
	int64_t last_ms = 0;
	if (geodb_user_last_backend_get(cli->geodb, route.username, last, &last_ms, &reason) < 0)
		last[0] = '\0';
	if (route.group.history[0].backend[0] != '\0' &&
	    route.group.history[0].left_ms > last_ms) {
		snprintf(last, sizeof(last), "%s", route.group.history[0].backend);
		last_ms = route.group.history[0].left_ms;
	}
	if (last_ms > 0)
		format_time(last_ms / 1000, last_at, sizeof(last_at));
	static const char *const cols[] = {"user",     "group",        "backend",
					   "site",     "override",     "last_backend",
					   "left_at",  NULL};
	const char *row[] = {route.username, group, backend, site,
			     route.group_override ? "yes" : "no", last[0] != '\0' ? last : "-",
			     last_at};
	struct output *out = output_create(cli->format, cols);
	output_row(out, row);
	output_print(out, stdout);
	output_destroy(&out);
	return 0;
}

/* ---- who / kick: the daemon's admin API ---- */

/* A minimal blocking HTTP/1.0 request to admin_listen; body_r gets the
 * response body.  Returns the HTTP status or -1. */
static int admin_request(struct cli *cli, const char *method, const char *path,
			 struct strbuf *body_r)
{
	const struct listen_addr *addr = &cli->set->admin_listen;
	if (addr->port == 0) {
		refused("admin_listen is not set in the configuration: cannot reach the daemon");
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t len;
	if (net_parse_ip_port(addr->host, addr->port, &ss, &len) < 0) {
		refused("admin_listen %s is not an IP address", addr->host);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		refused("cannot reach the daemon's admin API at %s:%d: %s (is mailclusterd "
			"running?)",
			addr->host, addr->port, strerror(errno));
		close(fd);
		return -1;
	}
	char request[1024];
	int n = snprintf(request, sizeof(request),
			 "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", method, path,
			 addr->host);
	if (write(fd, request, (size_t)n) != n) {
		refused("cannot send to the daemon's admin API: %s", strerror(errno));
		close(fd);
		return -1;
	}
	struct strbuf response = {0};
	char buf[4096];
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		strbuf_append_n(&response, buf, (size_t)r);
	close(fd);
	int status = -1;
	if (response.len == 0 || sscanf(response.data, "HTTP/%*s %d", &status) != 1) {
		refused("the daemon's admin API sent no valid HTTP response");
		strbuf_free(&response);
		return -1;
	}
	const char *sep = strstr(response.data, "\r\n\r\n");
	if (sep != NULL)
		strbuf_append(body_r, sep + 4);
	strbuf_free(&response);
	return status;
}

/* Percent-encodes a query value. */
static void url_encode(const char *s, char *dst, size_t size)
{
	size_t o = 0;
	for (; *s != '\0' && o + 4 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '-' || c == '_' || c == '@')
			dst[o++] = (char)c;
		else
			o += (size_t)snprintf(dst + o, size - o, "%%%02X", c);
	}
	dst[o] = '\0';
}

static int cmd_who(struct cli *cli, int argc, char **argv)
{
	if (argc > 1)
		return usage("who: expected at most one USER");
	char path[1024] = "/api/who?format=tsv";
	if (argc == 1) {
		char enc[800];
		url_encode(argv[0], enc, sizeof(enc));
		snprintf(path, sizeof(path), "/api/who?format=tsv&user=%s", enc);
	}
	struct strbuf body = {0};
	int status = admin_request(cli, "GET", path, &body);
	if (status != 200) {
		if (status > 0)
			refused("the daemon refused 'who' (HTTP %d): %s", status,
				body.data != NULL ? body.data : "");
		strbuf_free(&body);
		return EXIT_REFUSED;
	}
	static const char *const cols[] = {"user",     "group", "backend", "client",
					   "protocol", "since", NULL};
	struct output *out = output_create(cli->format, cols);
	char *save = NULL;
	for (char *line = strtok_r(body.data != NULL ? body.data : "", "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *fields[6] = {0};
		unsigned nf = 0;
		for (char *f = line; nf < 6; nf++) {
			fields[nf] = f;
			char *tab = strchr(f, '\t');
			if (tab == NULL) {
				nf++;
				break;
			}
			*tab = '\0';
			f = tab + 1;
		}
		if (nf != 6)
			continue;
		char since[32];
		format_time(strtoll(fields[5], NULL, 10), since, sizeof(since));
		const char *row[] = {fields[0], fields[1], fields[2], fields[3], fields[4], since};
		output_row(out, row);
	}
	output_print(out, stdout);
	output_destroy(&out);
	strbuf_free(&body);
	return 0;
}

/* `balance plan`: what the next balancing round would do, computed by the
 * daemon (only the site's controller has the hosts' resource samples). */
static int cmd_balance(struct cli *cli, int argc, char **argv)
{
	if (argc != 1 || strcmp(argv[0], "plan") != 0)
		return usage("balance: expected plan");
	bool json = cli->format == OUTPUT_JSON;
	struct strbuf body = {0};
	int status = admin_request(cli, "GET",
				   json ? "/api/balance/plan" : "/api/balance/plan?format=text", &body);
	if (status != 200) {
		if (status > 0)
			refused("the daemon could not plan (HTTP %d): %s", status,
				body.data != NULL ? body.data : "");
		strbuf_free(&body);
		return EXIT_REFUSED;
	}
	fputs(body.data != NULL ? body.data : "", stdout);
	strbuf_free(&body);
	return 0;
}

static int cmd_kick(struct cli *cli, int argc, char **argv)
{
	if (argc != 1)
		return usage("kick: expected USER");
	char enc[800], path[1024];
	url_encode(argv[0], enc, sizeof(enc));
	snprintf(path, sizeof(path), "/api/kick?user=%s", enc);
	struct strbuf body = {0};
	int status = admin_request(cli, "POST", path, &body);
	if (status != 200) {
		if (status > 0)
			refused("the daemon refused 'kick' (HTTP %d): %s", status,
				body.data != NULL ? body.data : "");
		strbuf_free(&body);
		return EXIT_REFUSED;
	}
	const char *k = body.data != NULL ? strstr(body.data, "\"kicked\":") : NULL;
	unsigned kicked = k != NULL ? (unsigned)strtoul(k + 9, NULL, 10) : 0;
	printf("user %s: %u session(s) kicked\n", argv[0], kicked);
	strbuf_free(&body);
	return 0;
}

static int cmd_geodb(struct cli *cli, int argc, char **argv)
{
	const char *error;
	if (argc != 1)
		return usage("geodb: expected init, schema or refresh");
	if (strcmp(argv[0], "schema") == 0) {
		fputs(geodb_schema_text(cli->geodb), stdout);
		return 0;
	}
	if (strcmp(argv[0], "init") != 0)
		return usage("geodb: unknown subcommand '%s'", argv[0]);
	unsigned from;
	if (geodb_init(cli->geodb, &from, &error) < 0 ||
	    geodb_check_group_count(cli->geodb, cli->set->group_count, &error) < 0)
		return refused("%s", error);
	if (from == GEODB_SCHEMA_VERSION)
		printf("geodb (%s): schema version %d, up to date; group_count %u\n",
		       geodb_driver_name(cli->geodb), GEODB_SCHEMA_VERSION, cli->set->group_count);
	else if (from == 0)
		printf("geodb (%s): schema version %d created; group_count %u\n",
		       geodb_driver_name(cli->geodb), GEODB_SCHEMA_VERSION, cli->set->group_count);
	else
		printf("geodb (%s): schema upgraded from version %u to %d; group_count %u\n",
		       geodb_driver_name(cli->geodb), from, GEODB_SCHEMA_VERSION,
		       cli->set->group_count);
	return 0;
}

static int cmd_geodb_refresh(struct cli *cli)
{
	struct strbuf body = {0};
	int status = admin_request(cli, "POST", "/api/geodb/refresh", &body);
	if (status != 200) {
		if (status > 0)
			refused("the daemon could not refresh from the GeoDB (HTTP %d): %s", status,
				body.data != NULL ? body.data : "");
		strbuf_free(&body);
		return EXIT_REFUSED;
	}
	const char *g = body.data != NULL ? strstr(body.data, "\"groups_assigned\":") : NULL;
	unsigned long groups = g != NULL ? strtoul(g + 18, NULL, 10) : 0;
	printf("localdb refreshed from the GeoDB: %lu groups assigned\n", groups);
	strbuf_free(&body);
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL, *format = "table";
	int opt_char;
	while ((opt_char = getopt(argc, argv, "+c:f:h")) != -1) {
		switch (opt_char) {
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			format = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			return usage(NULL);
		}
	}
	if (config_path == NULL)
		return usage("-c FILE is required");
	if (optind >= argc)
		return usage("no command given");
	struct cli cli;
	memset(&cli, 0, sizeof(cli));
	if (output_format_parse(format, &cli.format) < 0)
		return usage("unknown output format '%s': expected flow, tab, table or json",
			     format);
	const char *error;
	if (settings_load(config_path, &cli.set, &error) < 0)
		return refused("%s", error);

	const char *command = argv[optind];
	int sub_argc = argc - optind - 1;
	char **sub_argv = argv + optind + 1;
	int ret;
	if (strcmp(command, "who") == 0 || strcmp(command, "kick") == 0) {
		ret = strcmp(command, "who") == 0 ? cmd_who(&cli, sub_argc, sub_argv)
						  : cmd_kick(&cli, sub_argc, sub_argv);
		settings_free(&cli.set);
		return ret;
	}
	if (strcmp(command, "balance") == 0) {
		ret = cmd_balance(&cli, sub_argc, sub_argv);
		settings_free(&cli.set);
		return ret;
	}
	if (strcmp(command, "geodb") == 0 && sub_argc == 1 && strcmp(sub_argv[0], "refresh") == 0) {
		ret = cmd_geodb_refresh(&cli);
		settings_free(&cli.set);
		return ret;
	}
	bool geodb_command = strcmp(command, "geodb") == 0;
	char writer[NAME_MAX_LEN + 1], host[64] = "unknown";
	gethostname(host, sizeof(host) - 1);
	snprintf(writer, sizeof(writer), "cli@%.50s", host);
	if (geodb_open(cli.set->geodb, writer, 10000, &cli.geodb, &error) < 0 ||
	    (!geodb_command &&
	     geodb_check_group_count(cli.geodb, cli.set->group_count, &error) < 0)) {
		geodb_close(&cli.geodb);
		settings_free(&cli.set);
		return refused("%s", error);
	}
	if (strcmp(command, "site") == 0 && sub_argc >= 1 && strcmp(sub_argv[0], "force-move") == 0)
		ret = cmd_site_force_move(&cli, sub_argc - 1, sub_argv + 1);
	else if (strcmp(command, "site") == 0 && sub_argc >= 1 &&
		 strcmp(sub_argv[0], "failover") == 0)
		ret = cmd_site_failover(&cli, sub_argc - 1, sub_argv + 1);
	else if (strcmp(command, "site") == 0 && sub_argc >= 1 &&
		 strcmp(sub_argv[0], "reachability") == 0)
		ret = cmd_site_reachability(&cli, sub_argc - 1, sub_argv + 1);
	else if (strcmp(command, "site") == 0)
		ret = cmd_site(&cli, sub_argc, sub_argv);
	else if (strcmp(command, "backend") == 0)
		ret = cmd_backend(&cli, sub_argc, sub_argv);
	else if (strcmp(command, "group") == 0)
		ret = cmd_group(&cli, sub_argc, sub_argv);
	else if (strcmp(command, "user") == 0)
		ret = cmd_user(&cli, sub_argc, sub_argv);
	else if (geodb_command)
		ret = cmd_geodb(&cli, sub_argc, sub_argv);
	else
		ret = usage("unknown command '%s'", command);
	geodb_close(&cli.geodb);
	settings_free(&cli.set);
	return ret;
}
