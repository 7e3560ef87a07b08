/* hash.c - see hash.h. */
#include "util/hash.h"

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

uint64_t hash_fnv1a64_add(uint64_t hash, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		hash ^= p[i];
		hash *= FNV64_PRIME;
	}
	return hash;
}

uint64_t hash_fnv1a64(const void *data, size_t len)
{
	return hash_fnv1a64_add(FNV64_OFFSET, data, len);
}

uint64_t hash_mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}
