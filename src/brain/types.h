/* types.h - the cluster model's vocabulary: statuses and name limits.
 *
 * user --hash or override--> group --assignment--> (site, backend)
 *
 * These names are what the GeoDB stores, the CLI prints and the logs say,
 * so they are defined once here.
 */
#ifndef BRAIN_TYPES_H
#define BRAIN_TYPES_H

#include <stdbool.h>

#define NAME_MAX_LEN 63      /* site, backend and tag names */
#define ADDRESS_MAX_LEN 127  /* a backend's address (IP or host name) */
#define USERNAME_MAX_LEN 255 /* a normalised login name */

enum backend_status { BACKEND_STATUS_ONLINE, BACKEND_STATUS_OFFLINE, BACKEND_STATUS_STANDBY };
enum site_status {
	SITE_STATUS_ONLINE,
	SITE_STATUS_OFFLINE,
	SITE_STATUS_STANDBY,
	SITE_STATUS_EVACUATE
};

const char *backend_status_name(enum backend_status status);
int backend_status_parse(const char *name, enum backend_status *status_r);
const char *site_status_name(enum site_status status);
int site_status_parse(const char *name, enum site_status *status_r);

/* Site, backend and tag names: 1-63 of [A-Za-z0-9._-]. */
bool object_name_is_valid(const char *name);

#endif
