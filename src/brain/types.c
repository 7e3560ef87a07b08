/* types.c - see types.h. */
#include "brain/types.h"

#include <ctype.h>
#include <string.h>

static const char *const backend_status_names[] = {"online", "offline", "standby"};
static const char *const site_status_names[] = {"online", "offline", "standby", "evacuate"};

const char *backend_status_name(enum backend_status status)
{
	return (unsigned)status < 3 ? backend_status_names[status] : "unknown";
}

int backend_status_parse(const char *name, enum backend_status *status_r)
{
	for (unsigned i = 0; i < 3; i++) {
		if (strcmp(name, backend_status_names[i]) == 0) {
			*status_r = (enum backend_status)i;
			return 0;
		}
	}
	return -1;
}

const char *site_status_name(enum site_status status)
{
	return (unsigned)status < 4 ? site_status_names[status] : "unknown";
}

int site_status_parse(const char *name, enum site_status *status_r)
{
	for (unsigned i = 0; i < 4; i++) {
		if (strcmp(name, site_status_names[i]) == 0) {
			*status_r = (enum site_status)i;
			return 0;
		}
	}
	return -1;
}

bool object_name_is_valid(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_' &&
		    name[i] != '.')
			return false;
	}
	return true;
}
