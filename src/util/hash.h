/* hash.h - stable hashes.  These values are part of the cluster's on-disk
 * and on-wire contract (a user's group is derived from one), so they must
 * never change between versions or hosts: no seeds, no platform types. */
#ifndef HASH_H
#define HASH_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a: offset basis 0xcbf29ce484222325, prime 0x100000001b3. */
uint64_t hash_fnv1a64(const void *data, size_t len);
/* Folds more bytes into a running FNV-1a 64 hash. */
uint64_t hash_fnv1a64_add(uint64_t hash, const void *data, size_t len);
/* MurmurHash3's 64-bit finalizer: spreads every input bit over every output
 * bit (FNV-1a alone leaves the high bits of similar inputs alike); for
 * hashes whose high bits or ratios are used. */
uint64_t hash_mix64(uint64_t h);

#endif
