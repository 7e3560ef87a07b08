/* log.c - see log.h.  The logger's settings are process-wide by nature
 * (syslog is too), so they live here rather than in the daemon context. */
#include "util/log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static struct {
	bool to_stderr;
	enum log_level level;
} log_conf = {true, LOG_LEVEL_INFO};

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void log_init(const char *ident, bool to_stderr, enum log_level level)
{
	log_conf.to_stderr = to_stderr;
	log_conf.level = level;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

int log_level_parse(const char *name, enum log_level *level_r)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

bool log_enabled(enum log_level level)
{
	return level >= log_conf.level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char line[2048];
	va_list args;
	va_start(args, fmt);
	vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (log_conf.to_stderr) {
		struct timespec now;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s %s\n",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			tm.tm_sec, now.tv_nsec / 1000000, level_names[level], line);
	} else {
		static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
		syslog(prio[level], "%s", line);
	}
}
