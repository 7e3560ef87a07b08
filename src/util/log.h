/* log.h - one line per event, key=value fields.
 *
 * Every message is a set of key=value fields ("event=login user=alice
 * backend=b1"), so logs can be grepped and parsed.  The daemon logs to
 * stderr in the foreground and to syslog otherwise; the level is a setting.
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, LOG_LEVEL_ERROR };

/* Sets where and what to log.  ident names the program in syslog. */
void log_init(const char *ident, bool to_stderr, enum log_level level);
/* Parses "debug", "info", "warning", "error"; -1 if unknown. */
int log_level_parse(const char *name, enum log_level *level_r);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...)                                         \
	do {                                                   \
		if (log_enabled(LOG_LEVEL_DEBUG))              \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
