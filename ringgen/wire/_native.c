/*
 * Native batch helpers for ringgen/wire/columnar.py and crc.py, loaded through ctypes by native.py.
 *
 * Every entry point works on a whole batch (one ctypes call per batch, never per message), and
 * everything here has a numpy reference implementation that the tests compare byte for byte:
 *
 *   rg_crc32_rows   zlib-compatible CRC-32 of n rows of a strided byte array (slicing-by-16).
 *   rg_encode_rows  header + MemoryPack payload + payload CRC of n bridged messages, driven by a
 *                   small "program" of ops that native.py compiles from the message layout.
 *
 * Little-endian hosts only (the loader refuses others): the wire format is little-endian and the
 * code stores integers with memcpy.
 */
#include <stdint.h>
#include <string.h>

#include "_wire_common.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/*
 * Batches bigger than this many output bytes do not fit in cache: their headers (mostly zeros the
 * decoder never needs cached) are written with non-temporal stores, which skip reading each
 * destination line into cache before overwriting it and so cut the memory traffic per slot.
 */
#define STREAM_MIN_BYTES (8 << 20)

/* Copies a header of `size` bytes (a multiple of 16) to a 16-byte aligned dst, bypassing the cache. */
static void stream_header(uint8_t *dst, const uint8_t *src, int64_t size)
{
#if defined(__SSE2__)
    for (int64_t k = 0; k < size; k += 16)
        _mm_stream_si128((__m128i *)(dst + k), _mm_loadu_si128((const __m128i *)(src + k)));
#else
    memcpy(dst, src, (size_t)size);
#endif
}

/* ---------------------------------------------------------------------------------- CRC-32 */

/* The tables and crc32_bytes live in _wire_common.h, shared with the _encoder.c extension. */

/* Fills the CRC tables; native.py calls it once, right after loading, before any other function. */
void rg_init(void) { rg_crc_init(); }

/*
 * CRC of row i = base[i*stride + offset : ... + len_i], len_i = lengths[i] (or uniform_len when
 * lengths is NULL), into out[i].
 */
void rg_crc32_rows(const uint8_t *base, int64_t n, int64_t stride, int64_t offset,
                   const int64_t *lengths, int64_t uniform_len, uint32_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = crc32_bytes(base + i * stride + offset, lengths ? lengths[i] : uniform_len, 0);
}

/* ----------------------------------------------------------------------------- batch encoder */

/* Ops: six int64 each, {op, a, b, c, d, e}; offsets a/b are into a view row. */
enum {
    OP_U8 = 1,     /* a: byte value (the MemoryPack member count) */
    OP_I32 = 2,    /* a: value (an Array's length prefix) */
    OP_COPY = 3,   /* a: view offset, b: bytes (scalars, Arrays of scalars) */
    OP_MASKED = 4, /* a: view offset, b: bytes, c: mask offset (direct struct: padding -> 0) */
    OP_STR = 5,    /* a: len offset (u32), b: data offset, c: max bytes */
    OP_LIST = 6,   /* a: len offset (u32), b: items offset, c: element size, d: max len,
                      e: mask offset of one element, or -1 for scalar elements */
};
#define OP_WIDTH 6

/* Why a row was refused (the low two bits of rg_encode_rows's negated return value). */
enum { ERR_BOUND = 1, ERR_UTF8 = 2, ERR_OVERFLOW = 3 };

static inline void put_i32(uint8_t *d, int32_t v) { memcpy(d, &v, 4); }

/* Strict UTF-8 check (what Python's decoder accepts) and the UTF-16 length; -1 if invalid. */
static int64_t utf16_units(const uint8_t *s, int64_t n)
{
    int64_t i = 0, units = 0;
    while (i < n) {
        /* eight ASCII bytes at a time: the common case for symbols and words */
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                units += 8;
                continue;
            }
        }
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            units++;
            continue;
        }
        int need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;      /* overlong */
            else if (b == 0xED) hi = 0x9F; /* surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;      /* overlong */
            else if (b == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else {
            return -1;
        }
        if (i + need >= n) return -1; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi) return -1;
        for (int k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return -1;
        i += need + 1;
        units += need == 3 ? 2 : 1; /* astral characters are a surrogate pair */
    }
    return units;
}

/*
 * Encodes n messages: view row i (view + i*view_stride) -> slot i (out + i*out_stride).
 *
 * Each slot gets the header template (header_size bytes: the fields common to the batch, zeros
 * elsewhere) with total_size (u64 at off_total), sequence (u64 seq0 + i at off_seq) and the payload
 * CRC (u32 at off_crc) patched in, then the payload the ops describe. With zero_tail, slots whose
 * payloads are not all one length are zeroed after each payload (a reused buffer may hold old bytes
 * there, and decoders of a ragged batch see them). Returns 0, or -(4 * row + kind) for the first row
 * that cannot be encoded (kind: ERR_*; the caller then reruns the numpy path for its error message).
 */
int64_t rg_encode_rows(const uint8_t *view, int64_t n, int64_t view_stride, uint8_t *out,
                       int64_t out_stride, int64_t slot_size, const int64_t *ops, int64_t nops,
                       const uint8_t *masks, const uint8_t *header, int64_t header_size,
                       int64_t off_total, int64_t off_seq, int64_t off_crc, uint64_t seq0,
                       int64_t zero_tail)
{
    const int64_t cap = slot_size - header_size;
    int uniform = 1;
    int64_t first = -1;
    uint8_t hdr[512];
    /* streaming needs 16-byte aligned headers and a template that fits the local copy */
    const int stream = n * out_stride >= STREAM_MIN_BYTES && header_size <= (int64_t)sizeof hdr &&
                       header_size % 16 == 0 && out_stride % 16 == 0 && ((uintptr_t)out & 15) == 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *row = view + i * view_stride;
        uint8_t *slot = out + i * out_stride;
        uint8_t *pay = slot + header_size;
        int64_t pos = 0;
        for (int64_t k = 0; k < nops; k++) {
            const int64_t *op = ops + k * OP_WIDTH;
            switch (op[0]) {
            case OP_U8:
                pay[pos++] = (uint8_t)op[1];
                break;
            case OP_I32:
                put_i32(pay + pos, (int32_t)op[1]);
                pos += 4;
                break;
            case OP_COPY:
                memcpy(pay + pos, row + op[1], (size_t)op[2]);
                pos += op[2];
                break;
            case OP_MASKED: {
                const uint8_t *src = row + op[1], *m = masks + op[3];
                for (int64_t j = 0; j < op[2]; j++)
                    pay[pos + j] = src[j] & m[j];
                pos += op[2];
                break;
            }
            case OP_STR: {
                uint32_t len;
                memcpy(&len, row + op[1], 4);
                if (len > (uint64_t)op[3]) {
                    return -(4 * i + ERR_BOUND);
                }
                if (len == 0) { /* MemoryPack writes an empty string as length 0, no data */
                    put_i32(pay + pos, 0);
                    pos += 4;
                    break;
                }
                if (pos + 8 + (int64_t)len > cap) {
                    return -(4 * i + ERR_OVERFLOW);
                }
                int64_t units = utf16_units(row + op[2], len);
                if (units < 0) {
                    return -(4 * i + ERR_UTF8);
                }
                /* MemoryPack's UTF-8 string header: ~byte count, then the UTF-16 length */
                put_i32(pay + pos, ~(int32_t)len);
                put_i32(pay + pos + 4, (int32_t)units);
                memcpy(pay + pos + 8, row + op[2], len);
                pos += 8 + len;
                break;
            }
            case OP_LIST: {
                uint32_t len;
                memcpy(&len, row + op[1], 4);
                if (len > (uint64_t)op[4]) {
                    return -(4 * i + ERR_BOUND);
                }
                int64_t bytes = (int64_t)len * op[3];
                if (pos + 4 + bytes > cap) {
                    return -(4 * i + ERR_OVERFLOW);
                }
                put_i32(pay + pos, (int32_t)len);
                pos += 4;
                const uint8_t *src = row + op[2];
                if (op[5] < 0) {
                    memcpy(pay + pos, src, (size_t)bytes);
                } else {
                    const uint8_t *m = masks + op[5];
                    for (int64_t j = 0; j < bytes; j++)
                        pay[pos + j] = src[j] & m[j % op[3]];
                }
                pos += bytes;
                break;
            }
            default: /* an op native.py never emits: refuse rather than guess */
                return -(4 * i + ERR_OVERFLOW);
            }
        }
        if (pos > cap) {
            return -(4 * i + ERR_OVERFLOW);
        }
        uint64_t total = (uint64_t)(header_size + pos), seq = seq0 + (uint64_t)i;
        uint32_t crc = crc32_bytes(pay, pos, 0);
        uint8_t *h = stream ? hdr : slot;
        memcpy(h, header, (size_t)header_size);
        memcpy(h + off_total, &total, 8);
        memcpy(h + off_seq, &seq, 8);
        memcpy(h + off_crc, &crc, 4);
        if (stream) stream_header(slot, hdr, header_size);
        if (first < 0) first = pos;
        else if (pos != first) uniform = 0;
    }
#if defined(__SSE2__)
    if (stream) _mm_sfence(); /* make the streamed headers visible before returning */
#endif
    if (zero_tail && !uniform)
        for (int64_t i = 0; i < n; i++) { /* each row's length is back in its header */
            uint8_t *slot = out + i * out_stride;
            uint64_t total;
            memcpy(&total, slot + off_total, 8);
            memset(slot + total, 0, (size_t)(slot_size - (int64_t)total));
        }
    return 0;
}

/* ----------------------------------------------------------------------------- batch decoder */

static inline int32_t get_i32(const uint8_t *s)
{
    int32_t v;
    memcpy(&v, s, 4);
    return v;
}

/*
 * Decodes n slots into view rows: slot i (slots + i*slot_stride) -> row i (view + i*view_stride),
 * with the same op program rg_encode_rows runs, read backwards. Every check the per-message decoder
 * makes is made here: the header's magic, total size (header_size..slot_size), type id and payload
 * CRC, then every member count, Array length, string header (UTF-8 form, within its bound, the
 * UTF-16 length right or -1, valid UTF-8), List count and the payload's exact end. Each row is zeroed
 * before it is filled (padding and the unused tail of a Str or List read as zeros).
 *
 * Returns 0, or -(row + 1) for the first slot that is not a well-formed message: the caller decodes
 * that slot with the per-message decoder, which raises the error naming its field and offset.
 */
int64_t rg_decode_rows(const uint8_t *slots, int64_t n, int64_t slot_stride, int64_t slot_size,
                       uint8_t *view, int64_t view_stride, int64_t view_size, const int64_t *ops,
                       int64_t nops, const uint8_t *masks, int64_t header_size, uint32_t magic,
                       uint32_t type_id, int64_t off_total, int64_t off_type, int64_t off_crc)
{
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *slot = slots + i * slot_stride;
        uint8_t *row = view + i * view_stride;
        uint32_t m, t, crc;
        uint64_t total;
        memcpy(&m, slot, 4);
        memcpy(&total, slot + off_total, 8);
        memcpy(&t, slot + off_type, 4);
        memcpy(&crc, slot + off_crc, 4);
        if (m != magic || total < (uint64_t)header_size || total > (uint64_t)slot_size ||
            t != type_id)
            return -(i + 1);
        const uint8_t *pay = slot + header_size;
        const int64_t end = (int64_t)total - header_size;
        if (crc32_bytes(pay, end, 0) != crc) return -(i + 1);
        memset(row, 0, (size_t)view_size);
        int64_t pos = 0;
        for (int64_t k = 0; k < nops; k++) {
            const int64_t *op = ops + k * OP_WIDTH;
            switch (op[0]) {
            case OP_U8:
                if (pos + 1 > end || pay[pos] != (uint8_t)op[1]) return -(i + 1);
                pos++;
                break;
            case OP_I32:
                if (pos + 4 > end || get_i32(pay + pos) != (int32_t)op[1]) return -(i + 1);
                pos += 4;
                break;
            case OP_COPY:
                if (pos + op[2] > end) return -(i + 1);
                memcpy(row + op[1], pay + pos, (size_t)op[2]);
                pos += op[2];
                break;
            case OP_MASKED: {
                if (pos + op[2] > end) return -(i + 1);
                const uint8_t *mk = masks + op[3];
                for (int64_t j = 0; j < op[2]; j++)
                    row[op[1] + j] = pay[pos + j] & mk[j];
                pos += op[2];
                break;
            }
            case OP_STR: {
                if (pos + 4 > end) return -(i + 1);
                int32_t first = get_i32(pay + pos);
                if (first == 0) { /* the empty string: no UTF-16 length, no bytes */
                    pos += 4;
                    break;
                }
                if (first >= -1) return -(i + 1); /* null, or the UTF-16 form */
                int64_t len = ~(int64_t)first;
                if (len > op[3] || pos + 8 + len > end) return -(i + 1);
                int32_t units = get_i32(pay + pos + 4);
                int64_t have = utf16_units(pay + pos + 8, len);
                if (have < 0 || (units != -1 && units != have)) return -(i + 1);
                uint32_t ulen = (uint32_t)len;
                memcpy(row + op[1], &ulen, 4);
                memcpy(row + op[2], pay + pos + 8, (size_t)len);
                pos += 8 + len;
                break;
            }
            case OP_LIST: {
                if (pos + 4 > end) return -(i + 1);
                int32_t count = get_i32(pay + pos);
                if (count < 0 || count > op[4]) return -(i + 1);
                int64_t bytes = (int64_t)count * op[3];
                if (pos + 4 + bytes > end) return -(i + 1);
                uint32_t ucount = (uint32_t)count;
                memcpy(row + op[1], &ucount, 4);
                const uint8_t *src = pay + pos + 4;
                if (op[5] < 0) {
                    memcpy(row + op[2], src, (size_t)bytes);
                } else {
                    const uint8_t *mk = masks + op[5];
                    for (int64_t j = 0; j < bytes; j++)
                        row[op[2] + j] = src[j] & mk[j % op[3]];
                }
                pos += 4 + bytes;
                break;
            }
            default:
                return -(i + 1);
            }
        }
        if (pos != end) return -(i + 1);
    }
    return 0;
}
