/* hash: digests and MACs (OpenSSL underneath), and hex encoding.
 *
 * All output buffers are caller-owned and fixed-size; hex output is lowercase and NUL-terminated.
 */
#ifndef PIXQ_HASH_H
#define PIXQ_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SHA256_LEN 32                        /* bytes of a SHA-256 digest */
#define HASH_SHA256_HEX (2 * HASH_SHA256_LEN + 1) /* chars of its hex form, with NUL */

/* SHA-256 of `n` bytes at `p` into `out`. */
void hash_sha256(const void *p, size_t n, uint8_t out[HASH_SHA256_LEN]);

/* SHA-256 of `n` bytes as lowercase hex. */
void hash_sha256_hex(const void *p, size_t n, char out[HASH_SHA256_HEX]);

/* HMAC-SHA256 of `n` bytes under a `keylen`-byte key into `out`. */
void hash_hmac_sha256(const void *key, size_t keylen, const void *p, size_t n,
                      uint8_t out[HASH_SHA256_LEN]);

/* Writes `n` bytes as 2n lowercase hex chars plus a NUL into `out` (2n+1 bytes). */
void hash_hex(const uint8_t *p, size_t n, char *out);

#endif
