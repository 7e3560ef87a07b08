/* url_template.h - the %{backend} / %{address} templates of the per-backend
 * URL settings (backend_doveadm_url, backend_metrics_url):
 *
 *     http://%{address}:8080/doveadm/v1     http://%{backend}.mail:9100/metrics
 */
#ifndef URL_TEMPLATE_H
#define URL_TEMPLATE_H

#include <stddef.h>

/* Expands %{backend} and %{address} in template into dst.  An IPv6 address
 * is put in brackets unless the template already has "[" before
 * %{address}.  -1 if the template holds another %{...} or an unterminated
 * "%{", or if the result does not fit into size bytes.  A "%" not followed
 * by "{" is copied as it is. */
int url_template_expand(const char *template, const char *backend, const char *address, char *dst,
			size_t size);

/* Whether template expands at all (only known %{...} names, terminated):
 * for checking a setting when it is loaded. */
int url_template_check(const char *template);

#endif
