/* config.h - the configuration file syntax, without knowing any key.
 *
 * The syntax is dovecot.conf's core:
 *
 *     # comment
 *     key = value
 *     section {
 *       key = value
 *     }
 *
 *     section {
 *       inner {          (one more level: entries get section "section/inner")
 *         key = value
 *       }
 *     }
 *
 * One statement per line.  A value runs to the end of the line (trailing
 * blanks dropped) and may be double-quoted to keep leading/trailing blanks or
 * a '#'.  Sections nest one level.  config_parse() turns a file into a flat
 * list of entries, each with its section and line number, so that the layer
 * that knows the keys (settings.c) can say "FILE:LINE: ..." for every error.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

struct config_entry {
	char *section; /* "" at top level, "outer" or "outer/inner" */
	char *key;
	char *value;
	unsigned line;
};

struct config {
	char *path;
	struct config_entry *entries;
	size_t count;
};

/* Parses the file at path.  -1 with "PATH:LINE: what was wrong" in
 * error_r (a static buffer, valid until the next call). */
int config_parse_file(const char *path, struct config **config_r, const char **error_r);
/* The same for text already in memory; path is only used in errors. */
int config_parse_text(const char *path, const char *text, struct config **config_r,
		      const char **error_r);
void config_free(struct config **config);

#endif
