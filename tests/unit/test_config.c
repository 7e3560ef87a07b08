/* test_config.c - the configuration syntax and the settings table: every
 * malformed file is refused with FILE:LINE and the key it is about. */
#include "unit.h"
#include "util/config.h"
#include "util/settings.h"
#include "util/url_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char *write_temp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/mc-unit-config-%d.conf", (int)getpid());
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static int load(const char *text, struct settings **set_r, const char **error_r)
{
	char *path = write_temp(text);
	int ret = settings_load(path, set_r, error_r);
	unlink(path);
	return ret;
}

static void test_syntax(void)
{
	struct config *config;
	const char *error;
	CHECK(config_parse_text("t.conf",
				"# c\na = 1\nsec {\n  b = two words # c\n}\nc = \"#x \"\n", &config,
				&error) == 0);
	CHECK(config->count == 3);
	CHECK_STR(config->entries[0].key, "a");
	CHECK_STR(config->entries[0].section, "");
	CHECK_STR(config->entries[1].section, "sec");
	CHECK_STR(config->entries[1].value, "two words");
	CHECK(config->entries[1].line == 4);
	CHECK_STR(config->entries[2].value, "#x ");
	config_free(&config);
	CHECK(config == NULL);

	CHECK(config_parse_text("t.conf", "a = 1\n}\n", &config, &error) < 0);
	CHECK(strstr(error, "t.conf:2:") != NULL);
	CHECK(config_parse_text("t.conf", "s {\na = 1\n", &config, &error) < 0);
	CHECK(strstr(error, "never closed") != NULL);
	CHECK(config_parse_text("t.conf", "s {\nt {\nu {\n}\n}\n}\n", &config, &error) < 0);
	CHECK(strstr(error, "t.conf:3:") != NULL);
	CHECK(config_parse_text("t.conf", "s {\n a = 1\n t {\n  b = 2\n }\n c = 3\n}\n", &config,
				&error) == 0);
	CHECK(config->count == 3);
	CHECK_STR(config->entries[1].section, "s/t");
	CHECK_STR(config->entries[2].section, "s");
	config_free(&config);
	CHECK(config_parse_text("t.conf", "just words\n", &config, &error) < 0);
	CHECK(strstr(error, "expected 'key = value'") != NULL);
	CHECK(config_parse_text("t.conf", "a = \"open\n", &config, &error) < 0);
	CHECK(config_parse_text("t.conf", "b@d = 1\n", &config, &error) < 0);
}

static void test_settings_defaults(void)
{
	struct settings *set;
	const char *error = NULL;
	int ret = load(
		"site = dc1\ngeodb = sqlite:/tmp/x.sqlite\nlisten {\n imap = 127.0.0.1:1143\n}\n",
		&set, &error);
	CHECK(ret == 0);
	if (ret != 0) {
		fprintf(stderr, "  error: %s\n", error);
		return;
	}
	CHECK_STR(set->site, "dc1");
	CHECK(set->group_count == 1024);
	CHECK(set->proxy_timeout_ms == 30000);
	CHECK(set->backend_port_imap == 143);
	CHECK(set->listeners[LISTENER_IMAP].addr.port == 1143);
	CHECK_STR(set->listeners[LISTENER_IMAP].addr.host, "127.0.0.1");
	CHECK(!set->listeners[LISTENER_IMAP].haproxy);
	CHECK(set->listeners[LISTENER_IMAPS].addr.port == 0);
	CHECK(set->backend_port_pop3 == 110 && set->backend_port_lmtp == 24);
	CHECK(set->backend_port_sieve == 4190 && set->backend_port_submission == 587);
	CHECK(set->lmtp_username == LMTP_USERNAME_ADDRESS);
	CHECK(set->plaintext_auth == PLAINTEXT_AUTH_TLS);
	CHECK(set->prelogin_line_max == 8192);
	CHECK(set->auth_failures_max == 3);
	settings_free(&set);
	CHECK(set == NULL);
}

static void test_settings_listener_sections(void)
{
	struct settings *set;
	const char *error = NULL;
	int ret = load("site = dc1\ngeodb = sqlite:/x\nhaproxy_trusted_networks = 127.0.0.0/8\n"
		       "listen {\n pop3 {\n  address = 127.0.0.1:1110\n  haproxy = yes\n }\n"
		       " lmtp = 127.0.0.1:1024\n}\nlmtp_username = localpart\n",
		       &set, &error);
	CHECK(ret == 0);
	if (ret != 0) {
		fprintf(stderr, "  error: %s\n", error);
		return;
	}
	CHECK(set->listeners[LISTENER_POP3].addr.port == 1110);
	CHECK(set->listeners[LISTENER_POP3].haproxy);
	CHECK(set->listeners[LISTENER_LMTP].addr.port == 1024);
	CHECK(!set->listeners[LISTENER_LMTP].haproxy);
	CHECK(set->lmtp_username == LMTP_USERNAME_LOCALPART);
	settings_free(&set);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlisten {\n imap {\n  haproxy = maybe\n }\n}\n",
		   &set, &error) < 0);
	CHECK(strstr(error, ":5: invalid value 'maybe' for 'haproxy': expected yes or no") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlisten {\n imap {\n  haproxy = yes\n }\n}\n",
		   &set, &error) < 0);
	CHECK(strstr(error, "haproxy_trusted_networks is empty") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlisten {\n pop3s = 1.2.3.4:995\n}\n", &set,
		   &error) < 0);
	CHECK(strstr(error, "listen pop3s needs tls_cert") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlmtp_username = domain\n", &set, &error) < 0);
}

static void test_settings_errors(void)
{
	struct settings *set = NULL;
	const char *error = NULL;
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nbogus = 1\n", &set, &error) < 0);
	CHECK(strstr(error, ":3: unknown setting 'bogus'") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlisten {\n pop9 = 1.2.3.4:5\n}\n", &set,
		   &error) < 0);
	CHECK(strstr(error, ":4: unknown setting 'pop9' in section 'listen'") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\ngroup_count = 0\n", &set, &error) < 0);
	CHECK(strstr(error, ":3: invalid value '0' for 'group_count'") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nproxy_timeout = soon\n", &set, &error) < 0);
	CHECK(strstr(error, "expected a duration") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlisten {\n imap = nowhere\n}\n", &set, &error) <
	      0);
	CHECK(strstr(error, "ADDRESS:PORT") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nplaintext_auth = sometimes\n", &set, &error) <
	      0);
	CHECK(strstr(error, "'tls' or 'always'") != NULL);
	CHECK(load("geodb = sqlite:/x\n", &set, &error) < 0);
	CHECK(strstr(error, "missing required setting 'site'") != NULL);
	CHECK(load("site = dc1\n", &set, &error) < 0);
	CHECK(strstr(error, "missing required setting 'geodb'") != NULL);
	CHECK(load("site = dc1\ngeodb = mysql:x\n", &set, &error) < 0);
	CHECK(strstr(error, "expected sqlite:PATH") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nsite = dc2\n", &set, &error) < 0);
	CHECK(strstr(error, ":3: 'site' is already set on line 1") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nlisten {\n imaps = 1.2.3.4:993\n}\n", &set,
		   &error) < 0);
	CHECK(strstr(error, "imaps needs tls_cert") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\ntls_cert = /a\n", &set, &error) < 0);
	CHECK(strstr(error, "set together") != NULL);
	CHECK(load("site = d c\ngeodb = sqlite:/x\n", &set, &error) < 0);
	CHECK(strstr(error, "invalid site name") != NULL);
	CHECK(set == NULL);
	CHECK(settings_load("/nonexistent/mailcluster.conf", &set, &error) < 0);
	CHECK(strstr(error, "cannot open") != NULL);
}

static void test_value_parsers(void)
{
	unsigned ms;
	size_t bytes;
	struct listen_addr addr;
	CHECK(settings_parse_duration("30s", &ms) == 0 && ms == 30000);
	CHECK(settings_parse_duration("30", &ms) == 0 && ms == 30000);
	CHECK(settings_parse_duration("250ms", &ms) == 0 && ms == 250);
	CHECK(settings_parse_duration("2m", &ms) == 0 && ms == 120000);
	CHECK(settings_parse_duration("1h", &ms) == 0 && ms == 3600000);
	CHECK(settings_parse_duration("-1s", &ms) < 0);
	CHECK(settings_parse_duration("1y", &ms) < 0);
	CHECK(settings_parse_duration("", &ms) < 0);
	CHECK(settings_parse_duration("99999999999d", &ms) < 0);
	CHECK(settings_parse_size("8k", &bytes) == 0 && bytes == 8192);
	CHECK(settings_parse_size("1M", &bytes) == 0 && bytes == 1048576);
	CHECK(settings_parse_size("100", &bytes) == 0 && bytes == 100);
	CHECK(settings_parse_size("3x", &bytes) < 0);
	CHECK(settings_parse_addr("127.0.0.1:143", &addr) == 0 && addr.port == 143);
	CHECK(settings_parse_addr("[::1]:143", &addr) == 0 && strcmp(addr.host, "::1") == 0);
	CHECK(settings_parse_addr("127.0.0.1:0", &addr) < 0);
	CHECK(settings_parse_addr("127.0.0.1:65536", &addr) < 0);
	CHECK(settings_parse_addr(":143", &addr) < 0);
	CHECK(settings_parse_addr("[::1]143", &addr) < 0);
}

/* backend_metrics_url, metrics_interval, metrics_min_samples (issue 6) */
static void test_settings_metrics(void)
{
	struct settings *set = NULL;
	const char *error = NULL;
	int ret = load("site = dc1\ngeodb = sqlite:/x\n", &set, &error);
	CHECK(ret == 0);
	if (ret == 0) {
		CHECK_STR(set->backend_metrics_url, "");
		CHECK(set->metrics_interval_ms == 15000);
		CHECK(set->metrics_min_samples == 5);
		settings_free(&set);
	}
	ret = load("site = dc1\ngeodb = sqlite:/x\nbackend_metrics_url = "
		   "http://%{address}:9100/metrics\nmetrics_interval = 5s\n"
		   "metrics_min_samples = 3\n",
		   &set, &error);
	CHECK(ret == 0);
	if (ret == 0) {
		CHECK_STR(set->backend_metrics_url, "http://%{address}:9100/metrics");
		CHECK(set->metrics_interval_ms == 5000 && set->metrics_min_samples == 3);
		settings_free(&set);
	}
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nbackend_metrics_url = https://%{address}/\n",
		   &set, &error) < 0);
	CHECK(strstr(error, "backend_metrics_url must start with http:// (e.g. "
			    "http://%{address}:9100/metrics), not 'https://%{address}/'") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nbackend_metrics_url = http://%{site}/\n",
		   &set, &error) < 0);
	CHECK(strstr(error, "may only use %{backend} and %{address}") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nmetrics_interval = 500ms\n", &set,
		   &error) < 0);
	CHECK(strstr(error, "metrics_interval must be 1s or more") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nmetrics_min_samples = 0\n", &set, &error) <
	      0);
	CHECK(strstr(error, "'metrics_min_samples': expected a whole number from 1 to 64") != NULL);
	CHECK(load("site = dc1\ngeodb = sqlite:/x\nmetrics_min_samples = 65\n", &set,
		   &error) < 0);
	CHECK(set == NULL);

	CHECK(url_template_check("") == 0);
	CHECK(url_template_check("http://%{backend}.x:9100/%{address}%x%") == 0);
	CHECK(url_template_check("http://%{backend") == -1);
	CHECK(url_template_check("http://%{}/") == -1);
	CHECK(url_template_check("http://%{addresses}/") == -1);
	char url[64];
	CHECK(url_template_expand("http://%{address}:9100/metrics", "b1", "::1", url,
				  sizeof(url)) == 0);
	CHECK_STR(url, "http://[::1]:9100/metrics");
}

void suite_config(void)
{
	test_syntax();
	test_settings_defaults();
	test_settings_listener_sections();
	test_settings_errors();
	test_value_parsers();
	test_settings_metrics();
}
