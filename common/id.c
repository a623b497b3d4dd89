#include "id.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

#include "hash.h"

static int random_bytes(uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int id_job(char out[ID_JOB_LEN])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[17];
    if (random_bytes(r, sizeof r) < 0) {
        return -1;
    }
    out[0] = (char)('0' + r[16] % 10);
    /* 16 bytes = 128 bits = 21 full sextets and 2 bits left: 22 chars */
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 1;
    for (size_t i = 0; i < 16; i++) {
        acc = (acc << 8) | r[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64[(acc >> bits) & 63];
        }
    }
    out[o++] = b64[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return 0;
}

int id_worker(char *out, size_t cap)
{
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    uint8_t r[4];
    char hex[9];
    if (random_bytes(r, sizeof r) < 0) {
        return -1;
    }
    hash_hex(r, sizeof r, hex);
    snprintf(out, cap, "%s:%ld:%s", host, (long)getpid(), hex);
    return 0;
}
