/* user.c - see user.h. */
#include "brain/user.h"

#include "brain/types.h"
#include "util/hash.h"

#include <string.h>

int user_normalize(const char *username, char *dst, size_t dst_size)
{
	size_t len = strlen(username);
	if (len == 0 || len > USERNAME_MAX_LEN || len >= dst_size)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)username[i];
		if (c <= 0x20 || c == 0x7f)
			return -1;
		dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : (char)c;
	}
	dst[len] = '\0';
	return 0;
}

unsigned user_hash_group(const char *normalized, unsigned group_count)
{
	return (unsigned)(hash_fnv1a64(normalized, strlen(normalized)) % group_count);
}
