/* tiffint: the integers of a TIFF structure (EXIF's), in either byte order. */
#ifndef PIXQ_TIFFINT_H
#define PIXQ_TIFFINT_H

#include <stdbool.h>
#include <stdint.h>

/* The 16-bit integer at `p`, big-endian ("MM") or little-endian ("II"). */
static inline uint32_t tiffint_u16(const unsigned char *p, bool big_endian)
{
    return big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

/* The 32-bit integer at `p`, big-endian ("MM") or little-endian ("II"). */
static inline uint32_t tiffint_u32(const unsigned char *p, bool big_endian)
{
    if (big_endian) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

#endif
