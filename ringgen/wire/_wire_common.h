/*
 * CRC-32 shared by the native wire helpers: _native.c (ctypes, batches) and _encoder.c (the CPython
 * extension, one message per call). Each includes this header, so each library has its own copy of
 * the tables, filled once by rg_crc_init() when the library is loaded.
 *
 * zlib-compatible (IEEE polynomial, reflected, inverted in and out): slicing-by-16, and on x86-64
 * CPUs with PCLMULQDQ (checked once, by rg_crc_init) carry-less multiplication folding for runs of 64
 * bytes and more, the method of Intel's "Fast CRC Computation Using PCLMULQDQ" (2009) with the
 * constants zlib's and Linux's x86 CRC-32 code use. Slicing-by-16 costs about 1.5 ns a byte; a
 * 77-byte payload's CRC was two thirds of the batch encoder's time.
 */
#ifndef RINGGEN_WIRE_COMMON_H
#define RINGGEN_WIRE_COMMON_H

#include <stdint.h>
#include <string.h>

#define CRC_POLY 0xEDB88320u

/* T[k][b]: register after byte b followed by k zero bytes (T[0] is the classic byte table). */
static uint32_t T[16][256];

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RG_CRC_CLMUL 1
#include <cpuid.h>
#include <immintrin.h>

/* Whether the CPU has PCLMULQDQ and SSE4.1 (set by rg_crc_init). */
static int rg_crc_clmul;

/* Folding constants of the reflected IEEE polynomial: x^(4*128+32), x^(4*128-32) mod P; x^(128+32),
 * x^(128-32); x^64; then P and mu for the Barrett reduction. */
static const uint64_t rg_k1k2[2] __attribute__((aligned(16))) = {0x0154442bd4ull, 0x01c6e41596ull};
static const uint64_t rg_k3k4[2] __attribute__((aligned(16))) = {0x01751997d0ull, 0x00ccaa009eull};
static const uint64_t rg_k5k0[2] __attribute__((aligned(16))) = {0x0163cd6124ull, 0ull};
static const uint64_t rg_poly[2] __attribute__((aligned(16))) = {0x01db710641ull, 0x01f7011641ull};

/* The CRC register (not inverted) after the n bytes of p, n a multiple of 16 and >= 64, starting
 * from register c. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_fold(const uint8_t *p, int64_t n,
                                                                    uint32_t c)
{
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;
    x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    x0 = _mm_load_si128((const __m128i *)rg_k1k2);
    p += 64;
    n -= 64;
    while (n >= 64) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(p + 0x00));
        y6 = _mm_loadu_si128((const __m128i *)(p + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(p + 0x20));
        y8 = _mm_loadu_si128((const __m128i *)(p + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        p += 64;
        n -= 64;
    }
    /* four lanes -> one */
    x0 = _mm_load_si128((const __m128i *)rg_k3k4);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (n >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)p);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        p += 16;
        n -= 16;
    }
    /* 128 -> 64 bits */
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_loadl_epi64((const __m128i *)rg_k5k0);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    /* Barrett reduction to 32 bits */
    x0 = _mm_load_si128((const __m128i *)rg_poly);
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

/* Fills the tables; must run once before crc32_bytes. */
static void rg_crc_init(void)
{
#ifdef RG_CRC_CLMUL
    unsigned a, b, c, d;
    rg_crc_clmul = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (c & bit_SSE4_1);
#endif
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
#ifdef RG_CRC_CLMUL
    if (rg_crc_clmul && n >= 64) {
        int64_t body = n & ~(int64_t)15;
        c = crc32_fold(p, body, c);
        p += body;
        n -= body;
    }
#endif
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
    if (n >= 8) { /* the tail: 8, then 4 bytes at a time (a byte at a time is ~5 cycles a byte) */
        uint32_t w0, w1;
        memcpy(&w0, p, 4);
        memcpy(&w1, p + 4, 4);
        w0 ^= c;
        c = T[7][w0 & 0xFF] ^ T[6][(w0 >> 8) & 0xFF] ^ T[5][(w0 >> 16) & 0xFF] ^ T[4][w0 >> 24] ^
            T[3][w1 & 0xFF] ^ T[2][(w1 >> 8) & 0xFF] ^ T[1][(w1 >> 16) & 0xFF] ^ T[0][w1 >> 24];
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t w0;
        memcpy(&w0, p, 4);
        w0 ^= c;
        c = T[3][w0 & 0xFF] ^ T[2][(w0 >> 8) & 0xFF] ^ T[1][(w0 >> 16) & 0xFF] ^ T[0][w0 >> 24];
        p += 4;
        n -= 4;
    }
    while (n-- > 0)
        c = T[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#endif /* RINGGEN_WIRE_COMMON_H */
