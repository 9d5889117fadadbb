/*
 * CRC-32 shared by the native wire helpers: _native.c (ctypes, batches) and _encoder.c (the CPython
 * extension, one message per call). Each includes this header, so each library has its own copy of
 * the tables, filled once by rg_crc_init() when the library is loaded.
 *
 * zlib-compatible (IEEE polynomial, reflected, inverted in and out), slicing-by-16.
 */
#ifndef RINGGEN_WIRE_COMMON_H
#define RINGGEN_WIRE_COMMON_H

#include <stdint.h>
#include <string.h>

#define CRC_POLY 0xEDB88320u

/* T[k][b]: register after byte b followed by k zero bytes (T[0] is the classic byte table). */
static uint32_t T[16][256];

/* Fills the tables; must run once before crc32_bytes. */
static void rg_crc_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC_POLY : c >> 1;
        T[0][b] = c;
    }
    for (int k = 1; k < 16; k++)
        for (int b = 0; b < 256; b++)
            T[k][b] = (T[k - 1][b] >> 8) ^ T[0][T[k - 1][b] & 0xFF];
}

/* zlib.crc32(p[:n], crc): slicing-by-16 over the body, byte at a time for the tail. */
static uint32_t crc32_bytes(const uint8_t *p, int64_t n, uint32_t crc)
{
    uint32_t c = ~crc;
    while (n >= 16) {
        uint32_t w0, w1, w2, w3;
        memcpy(&w0, p, 4);
        memcpy(&w1, p + 4, 4);
        memcpy(&w2, p + 8, 4);
        memcpy(&w3, p + 12, 4);
        w0 ^= c;
        c = T[15][w0 & 0xFF] ^ T[14][(w0 >> 8) & 0xFF] ^ T[13][(w0 >> 16) & 0xFF] ^ T[12][w0 >> 24] ^
            T[11][w1 & 0xFF] ^ T[10][(w1 >> 8) & 0xFF] ^ T[9][(w1 >> 16) & 0xFF] ^ T[8][w1 >> 24] ^
            T[7][w2 & 0xFF] ^ T[6][(w2 >> 8) & 0xFF] ^ T[5][(w2 >> 16) & 0xFF] ^ T[4][w2 >> 24] ^
            T[3][w3 & 0xFF] ^ T[2][(w3 >> 8) & 0xFF] ^ T[1][(w3 >> 16) & 0xFF] ^ T[0][w3 >> 24];
        p += 16;
        n -= 16;
    }
    while (n-- > 0)
        c = T[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#endif /* RINGGEN_WIRE_COMMON_H */
