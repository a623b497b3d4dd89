#include "hash.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

void hash_sha256(const void *p, size_t n, uint8_t out[HASH_SHA256_LEN])
{
    SHA256(p, n, out);
}

void hash_sha256_hex(const void *p, size_t n, char out[HASH_SHA256_HEX])
{
    uint8_t d[HASH_SHA256_LEN];
    hash_sha256(p, n, d);
    hash_hex(d, sizeof d, out);
}

void hash_hmac_sha256(const void *key, size_t keylen, const void *p, size_t n,
                      uint8_t out[HASH_SHA256_LEN])
{
    unsigned int len = HASH_SHA256_LEN;
    HMAC(EVP_sha256(), key, (int)keylen, p, n, out, &len);
}

void hash_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}
