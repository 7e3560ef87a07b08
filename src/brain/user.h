/* user.h - from a login name to the user's group.
 *
 * The group of a user is, unless an override moved it:
 *
 *     group = fnv1a64(normalised username) mod group_count
 *
 * where the username is normalised by lower-casing ASCII letters, and
 * fnv1a64 is 64-bit FNV-1a (hash.h).  This is part of the cluster contract:
 * every host, every version, computes the same group for the same user.
 */
#ifndef BRAIN_USER_H
#define BRAIN_USER_H

#include <stddef.h>

/* Writes the normalised form of username into dst (dst_size bytes).
 * -1 if it is empty, too long (> USERNAME_MAX_LEN) or contains a space or
 * a control character.  Bytes >= 0x80 (UTF-8) are kept as they are; only
 * ASCII letters are lower-cased. */
int user_normalize(const char *username, char *dst, size_t dst_size);
/* The hash group of a normalised username. */
unsigned user_hash_group(const char *normalized, unsigned group_count);

#endif
