/* config.c - see config.h. */
#include "util/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_MAX (1024 * 1024)

static char config_error[512];

static int fail(const char **error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char **error_r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(config_error, sizeof(config_error), fmt, args);
	va_end(args);
	*error_r = config_error;
	return -1;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		s[--len] = '\0';
	return s;
}

static int valid_name(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return 0;
	}
	return 1;
}

static int add_entry(struct config *config, const char *section, const char *key, const char *value,
		     unsigned line)
{
	if ((config->count & 15) == 0) {
		struct config_entry *grown =
			realloc(config->entries, (config->count + 16) * sizeof(*grown));
		if (grown == NULL)
			return -1;
		config->entries = grown;
	}
	struct config_entry *e = &config->entries[config->count++];
	e->section = strdup(section);
	e->key = strdup(key);
	e->value = strdup(value);
	e->line = line;
	return 0;
}

/* Strips a comment that starts outside double quotes. */
static void strip_comment(char *s)
{
	int quoted = 0;
	for (; *s != '\0'; s++) {
		if (*s == '"')
			quoted = !quoted;
		else if (*s == '#' && !quoted) {
			*s = '\0';
			return;
		}
	}
}

int config_parse_text(const char *path, const char *text, struct config **config_r,
		      const char **error_r)
{
	struct config *config = calloc(1, sizeof(*config));
	config->path = strdup(path);
	char *copy = strdup(text);
	char section[64] = "";
	unsigned line_no = 0, section_line = 0;
	char *next = copy;
	int ret = 0;

	while (next != NULL && ret == 0) {
		char *line = next;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		line_no++;
		strip_comment(line);
		line = trim(line);
		if (*line == '\0')
			continue;
		if (strcmp(line, "}") == 0) {
			/* close the innermost section */
			char *slash = strrchr(section, '/');
			if (section[0] == '\0')
				ret = fail(error_r, "%s:%u: '}' without an open section", path,
					   line_no);
			else if (slash != NULL)
				*slash = '\0';
			else
				section[0] = '\0';
			continue;
		}
		size_t len = strlen(line);
		if (line[len - 1] == '{') {
			line[len - 1] = '\0';
			char *name = trim(line);
			if (strchr(section, '/') != NULL)
				ret = fail(error_r,
					   "%s:%u: section '%s' inside section '%s': sections nest "
					   "two deep at most",
					   path, line_no, name, section);
			else if (!valid_name(name) ||
				 strlen(section) + strlen(name) + 2 > sizeof(section))
				ret = fail(error_r, "%s:%u: invalid section name '%s'", path,
					   line_no, name);
			else {
				if (section[0] == '\0') {
					snprintf(section, sizeof(section), "%s", name);
					section_line = line_no;
				} else {
					size_t used = strlen(section);
					snprintf(section + used, sizeof(section) - used, "/%s",
						 name);
				}
			}
			continue;
		}
		char *eq = strchr(line, '=');
		if (eq == NULL) {
			ret = fail(error_r,
				   "%s:%u: expected 'key = value', 'name {' or '}', got '%s'", path,
				   line_no, line);
			continue;
		}
		*eq = '\0';
		char *key = trim(line), *value = trim(eq + 1);
		if (!valid_name(key)) {
			ret = fail(error_r, "%s:%u: invalid key '%s'", path, line_no, key);
			continue;
		}
		size_t vlen = strlen(value);
		if (vlen > 0 && value[0] == '"') {
			if (vlen < 2 || value[vlen - 1] != '"') {
				ret = fail(error_r, "%s:%u: unterminated quoted value for '%s'",
					   path, line_no, key);
				continue;
			}
			value[vlen - 1] = '\0';
			value++;
		}
		if (add_entry(config, section, key, value, line_no) < 0)
			ret = fail(error_r, "%s:%u: out of memory", path, line_no);
	}
	if (ret == 0 && section[0] != '\0')
		ret = fail(error_r, "%s:%u: section '%s' is never closed with '}'", path,
			   section_line, section);
	free(copy);
	if (ret < 0) {
		config_free(&config);
		return -1;
	}
	*config_r = config;
	return 0;
}

int config_parse_file(const char *path, struct config **config_r, const char **error_r)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return fail(error_r, "%s: cannot open configuration file: %s", path,
			    strerror(errno));
	char *text = malloc(CONFIG_FILE_MAX + 1);
	size_t len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	int read_error = ferror(f);
	fclose(f);
	if (read_error) {
		free(text);
		return fail(error_r, "%s: cannot read configuration file", path);
	}
	if (len > CONFIG_FILE_MAX) {
		free(text);
		return fail(error_r, "%s: configuration file larger than %d bytes", path,
			    CONFIG_FILE_MAX);
	}
	if (memchr(text, '\0', len) != NULL) {
		free(text);
		return fail(error_r, "%s: configuration file contains a NUL byte", path);
	}
	text[len] = '\0';
	int ret = config_parse_text(path, text, config_r, error_r);
	free(text);
	return ret;
}

void config_free(struct config **_config)
{
	struct config *config = *_config;
	if (config == NULL)
		return;
	for (size_t i = 0; i < config->count; i++) {
		free(config->entries[i].section);
		free(config->entries[i].key);
		free(config->entries[i].value);
	}
	free(config->entries);
	free(config->path);
	free(config);
	*_config = NULL;
}
