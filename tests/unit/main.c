/* main.c - runs every unit suite and prints the closing "N passed, N failed". */
#include "unit.h"

unsigned unit_passed, unit_failed;

void suite_base64(void);
void suite_sasl_plain(void);
void suite_imap_parser(void);
void suite_smtp_command(void);
void suite_smtp_body_normalize(void);
void suite_pop3_command(void);
void suite_sieve_parser(void);
void suite_config(void);
void suite_hash(void);
void suite_placement(void);
void suite_health(void);
void suite_move(void);
void suite_balance(void);
void suite_site(void);
void suite_geodb_sqlite(void);
void suite_cql_protocol(void);
void suite_cql_client(void);
void suite_proxy_protocol(void);
void suite_imap_probe(void);
void suite_doveadm(void);
void suite_openmetrics(void);
void suite_command(void);
void suite_lb_address(void);
void suite_route_cells(void);

static const struct {
	const char *name;
	void (*run)(void);
} suites[] = {
	{"base64", suite_base64},
	{"sasl_plain", suite_sasl_plain},
	{"imap_parser", suite_imap_parser},
	{"smtp_command", suite_smtp_command},
	{"smtp_body_normalize", suite_smtp_body_normalize},
	{"pop3_command", suite_pop3_command},
	{"sieve_parser", suite_sieve_parser},
	{"config", suite_config},
	{"hash", suite_hash},
	{"placement", suite_placement},
	{"health", suite_health},
	{"move", suite_move},
	{"balance", suite_balance},
	{"site", suite_site},
	{"geodb_sqlite", suite_geodb_sqlite},
	{"cql_protocol", suite_cql_protocol},
	{"cql_client", suite_cql_client},
	{"proxy_protocol", suite_proxy_protocol},
	{"imap_probe", suite_imap_probe},
	{"doveadm", suite_doveadm},
	{"openmetrics", suite_openmetrics},
	{"command", suite_command},
	{"lb_address", suite_lb_address},
	{"route_cells", suite_route_cells},
};

int main(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (argc > 1 && strcmp(argv[1], suites[i].name) != 0)
			continue;
		unsigned before_failed = unit_failed, before_passed = unit_passed;
		suites[i].run();
		fprintf(stderr, "suite %-14s %u passed, %u failed\n", suites[i].name,
			unit_passed - before_passed, unit_failed - before_failed);
	}
	printf("%u passed, %u failed\n", unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}
