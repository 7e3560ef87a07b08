/* url_template.c - see url_template.h.  (Was doveadm_url_expand() in
 * net/doveadm.c; moved here so that settings.c can check the templates and
 * every per-backend URL expands the same way.) */
#include "util/url_template.h"

#include <stdbool.h>
#include <string.h>

int url_template_expand(const char *template, const char *backend, const char *address, char *dst,
			size_t size)
{
	size_t n = 0;
	for (const char *p = template; *p != '\0';) {
		const char *value = NULL;
		size_t skip = 1;
		bool bracket = false;

		if (p[0] == '%' && p[1] == '{') {
			const char *close = strchr(p, '}');
			if (close == NULL)
				return -1;
			size_t name_len = (size_t)(close - p - 2);
			if (name_len == 7 && strncmp(p + 2, "backend", 7) == 0) {
				value = backend;
			} else if (name_len == 7 && strncmp(p + 2, "address", 7) == 0) {
				value = address;
				bracket = strchr(address, ':') != NULL &&
					  (p == template || p[-1] != '[');
			} else {
				return -1;
			}
			skip = (size_t)(close - p) + 1;
		}
		if (value == NULL) {
			if (n + 1 >= size)
				return -1;
			dst[n++] = *p;
		} else {
			size_t len = strlen(value);
			if (n + len + (bracket ? 2 : 0) >= size)
				return -1;
			if (bracket)
				dst[n++] = '[';
			memcpy(dst + n, value, len);
			n += len;
			if (bracket)
				dst[n++] = ']';
		}
		p += skip;
	}
	if (n >= size)
		return -1;
	dst[n] = '\0';
	return 0;
}

int url_template_check(const char *template)
{
	for (const char *p = strstr(template, "%{"); p != NULL; p = strstr(p, "%{")) {
		const char *close = strchr(p, '}');
		if (close == NULL)
			return -1;
		size_t name_len = (size_t)(close - p - 2);
		if (name_len != 7 ||
		    (strncmp(p + 2, "backend", 7) != 0 && strncmp(p + 2, "address", 7) != 0))
			return -1;
		p = close + 1;
	}
	return 0;
}
