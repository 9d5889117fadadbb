/*
 * One bridged message per call, straight from the object's attributes into a ring slot: the
 * CPython extension behind BridgedCodec.pack_into / pack (built and loaded by native_ext.py), and
 * back from a slot into the object for BridgedCodec.decode (decode_at, in _decode.h).
 *
 * The generated Python encoder needs about ten C-level calls per message (attribute reads,
 * struct.pack, str.encode, zlib.crc32, bytes joins, the copy into the slot); this module does the
 * whole message in one call. It handles only what it can encode exactly like the generated encoder
 * and hands anything else (a value of an unexpected type, out of range, over its bound, a str with
 * a lone surrogate, a buffer too small) to the program's fallback, the codec's Python path, which
 * produces the same bytes or raises the precise EncodeError. Nothing is written to the caller's
 * buffer unless the whole message encodes. The fallback is called from here so that the codec's
 * pack_into can be a functools.partial of this function: no Python frame per message.
 *
 * The program (native_ext.program_for + the codec's fallback) is a tuple
 *     (cls, spec, names, fallback, subs)
 * where spec is bytes holding a struct rg_spec (read in place: no int conversions per call),
 * names a tuple of the interned attribute names, one per step, and subs the programs of nested
 * bridged classes (same shape, fallback None). Each step is {kind, code, bound} (code: the struct
 * code of the scalar or element type, or the index in subs of a nested class):
 *     K_SCALAR   the scalar's raw bytes                                  (bound unused)
 *     K_STR      MemoryPack UTF-8 string: ~bytes, UTF-16 units, bytes     (bound: max bytes)
 *     K_LIST     int32 count, then the scalar elements                   (bound: max count)
 *     K_ARRAY    int32 count, then the scalar elements                   (bound: exact count)
 *     K_OBJECT   a nested bridged object: member count, then its members (bound unused)
 *     K_OBJLIST  int32 count, then nested bridged objects                (bound: max count)
 *
 * decode_at reads one message back with the same programs (native_ext.fast_decoder): header
 * checks, CRC, then the steps, each length from the wire bounded by the message's end before use,
 * building the objects the generated decoder builds; anything irregular goes to program[3], the
 * generated decoder, which raises the precise WireFormatError.
 *
 * Little-endian hosts only (native_ext.py refuses others), like _native.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_wire_common.h"

enum { K_SCALAR = 1, K_STR = 2, K_LIST = 3, K_ARRAY = 4, K_OBJECT = 5, K_OBJLIST = 6 };

/* Nesting deeper than this falls back (schemas are acyclic, so this only bounds the C stack). */
#define MAX_DEPTH 32

/* native_ext.py packs these with struct "<IIII" and "<iiq" per step. */
struct rg_step {
    int32_t kind, code;
    int64_t bound;
};
struct rg_spec {
    uint32_t type_id, max_payload, members, nsteps;
    struct rg_step steps[];
};

#define HEADER_SIZE 256
#define MAGIC 0xDCF1u
/* .NET ticks (100 ns since 0001-01-01) of the Unix epoch: header.TICKS_AT_UNIX_EPOCH */
#define TICKS_AT_UNIX_EPOCH 621355968000000000ull
/* Payloads up to this size are built on the stack; bigger ones in a heap buffer. */
#define STACK_PAYLOAD 8192

/* "Fall back to the generated encoder": the conversion failed, with any Python error cleared. */
#define FALLBACK (-1)

static inline void put_u32(uint8_t *d, uint32_t v) { memcpy(d, &v, 4); }
static inline void put_u64(uint8_t *d, uint64_t v) { memcpy(d, &v, 8); }

/* A signed integer of `size` bytes, as struct.pack does it (range checked). */
static int put_int(uint8_t *d, PyObject *v, int size)
{
    int overflow = 0;
    long long x;
    if (!PyLong_Check(v))
        return FALLBACK;
    x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return FALLBACK;
    }
    switch (size) {
    case 1: {
        if (x < INT8_MIN || x > INT8_MAX) return FALLBACK;
        int8_t y = (int8_t)x;
        memcpy(d, &y, 1);
        break;
    }
    case 2: {
        if (x < INT16_MIN || x > INT16_MAX) return FALLBACK;
        int16_t y = (int16_t)x;
        memcpy(d, &y, 2);
        break;
    }
    case 4: {
        if (x < INT32_MIN || x > INT32_MAX) return FALLBACK;
        int32_t y = (int32_t)x;
        memcpy(d, &y, 4);
        break;
    }
    default:
        memcpy(d, &x, 8);
    }
    return size;
}

/* An unsigned integer of `size` bytes (negative or too big: fall back). */
static int put_uint(uint8_t *d, PyObject *v, int size)
{
    unsigned long long x;
    if (!PyLong_Check(v))
        return FALLBACK;
    x = PyLong_AsUnsignedLongLong(v); /* raises for negative values and overflow */
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (size < 8 && x >> (8 * size))
        return FALLBACK;
    memcpy(d, &x, (size_t)size); /* the low bytes: little-endian host */
    return size;
}

/* One scalar with struct code `code`; its size, or FALLBACK. */
static int put_scalar(uint8_t *d, int code, PyObject *v)
{
    switch (code) {
    case 'b': return put_int(d, v, 1);
    case 'h': return put_int(d, v, 2);
    case 'i': return put_int(d, v, 4);
    case 'q': return put_int(d, v, 8);
    case 'B': return put_uint(d, v, 1);
    case 'H': return put_uint(d, v, 2);
    case 'I': return put_uint(d, v, 4);
    case 'Q': return put_uint(d, v, 8);
    case 'f': {
        /* only exact floats: struct would also call __float__/__index__ on other objects */
        if (!PyFloat_CheckExact(v)) return FALLBACK;
        double x = PyFloat_AS_DOUBLE(v);
        float y = (float)x; /* PyFloat_Pack4's rounding; it refuses finite values that overflow */
        if (isinf(y) && !isinf(x)) return FALLBACK;
        memcpy(d, &y, 4);
        return 4;
    }
    case 'd': {
        if (!PyFloat_CheckExact(v)) return FALLBACK;
        double x = PyFloat_AS_DOUBLE(v);
        memcpy(d, &x, 8);
        return 8;
    }
    case '?': /* struct takes any object's truth value; only the two bools are handled here */
        if (v == Py_True) { d[0] = 1; return 1; }
        if (v == Py_False) { d[0] = 0; return 1; }
        return FALLBACK;
    default:
        return FALLBACK;
    }
}

/* A Str field at d: bytes written, or FALLBACK. */
static Py_ssize_t put_str(uint8_t *d, PyObject *v, Py_ssize_t max_bytes)
{
    Py_ssize_t n, units;
    const char *utf8;
    if (!PyUnicode_CheckExact(v))
        return FALLBACK;
    utf8 = PyUnicode_AsUTF8AndSize(v, &n); /* NULL for a lone surrogate */
    if (utf8 == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (n > max_bytes)
        return FALLBACK;
    if (n == 0) { /* MemoryPack writes the empty string as a single int32 0 */
        put_u32(d, 0);
        return 4;
    }
    units = PyUnicode_GET_LENGTH(v);
    if (PyUnicode_KIND(v) == PyUnicode_4BYTE_KIND) {
        /* astral characters are a surrogate pair in UTF-16 */
        const Py_UCS4 *s = PyUnicode_4BYTE_DATA(v);
        Py_ssize_t len = units;
        for (Py_ssize_t i = 0; i < len; i++)
            units += s[i] > 0xFFFF;
    }
    put_u32(d, ~(uint32_t)n);
    put_u32(d + 4, (uint32_t)units);
    memcpy(d + 8, utf8, (size_t)n);
    return 8 + n;
}

/* A List or Array of scalars: int32 count, then the elements. */
static Py_ssize_t put_seq(uint8_t *d, PyObject *v, int code, Py_ssize_t bound, int exact)
{
    PyObject **items;
    Py_ssize_t n, pos = 4;
    if (PyList_CheckExact(v)) {
        n = PyList_GET_SIZE(v);
        items = ((PyListObject *)v)->ob_item;
    } else if (PyTuple_CheckExact(v)) {
        n = PyTuple_GET_SIZE(v);
        items = ((PyTupleObject *)v)->ob_item;
    } else {
        return FALLBACK;
    }
    if (exact ? n != bound : n > bound)
        return FALLBACK;
    put_u32(d, (uint32_t)n);
    /* no Python code runs below (exact ints/floats/bools only), so `items` stays valid */
    for (Py_ssize_t i = 0; i < n; i++) {
        int k = put_scalar(d + pos, code, items[i]);
        if (k < 0)
            return FALLBACK;
        pos += k;
    }
    return pos;
}

/* A program tuple's spec, checked once per call per node. */
static const struct rg_spec *spec_of(PyObject *node)
{
    PyObject *spec_bytes, *names;
    const struct rg_spec *spec;
    if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) != 5 ||
        !PyBytes_CheckExact(spec_bytes = PyTuple_GET_ITEM(node, 1)) ||
        !PyTuple_CheckExact(names = PyTuple_GET_ITEM(node, 2)) ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(node, 4)) ||
        PyBytes_GET_SIZE(spec_bytes) < (Py_ssize_t)sizeof(struct rg_spec))
        return NULL;
    spec = (const struct rg_spec *)PyBytes_AS_STRING(spec_bytes);
    if (PyBytes_GET_SIZE(spec_bytes) !=
            (Py_ssize_t)(sizeof(struct rg_spec) + spec->nsteps * sizeof(struct rg_step)) ||
        PyTuple_GET_SIZE(names) != (Py_ssize_t)spec->nsteps)
        return NULL;
    return spec;
}

#define BAD_PROGRAM (-2) /* a malformed program: a bug in native_ext.py, raised as TypeError */

static Py_ssize_t put_object(uint8_t *d, PyObject *obj, PyObject *node, int depth);

/* A nested bridged object of subprogram `index`; exact type only. */
static Py_ssize_t put_sub(uint8_t *d, PyObject *v, PyObject *node, int32_t index, int depth)
{
    PyObject *subs = PyTuple_GET_ITEM(node, 4), *sub;
    if (index < 0 || index >= PyTuple_GET_SIZE(subs))
        return BAD_PROGRAM;
    sub = PyTuple_GET_ITEM(subs, index);
    if (!PyTuple_CheckExact(sub) || PyTuple_GET_SIZE(sub) != 5)
        return BAD_PROGRAM;
    if ((PyObject *)Py_TYPE(v) != PyTuple_GET_ITEM(sub, 0))
        return FALLBACK;
    return put_object(d, v, sub, depth + 1);
}

/* A List of nested bridged objects: int32 count, then the objects. */
static Py_ssize_t put_objlist(uint8_t *d, PyObject *v, PyObject *node, const struct rg_step *step,
                              int depth)
{
    Py_ssize_t n, pos = 4;
    if (!PyList_CheckExact(v) && !PyTuple_CheckExact(v))
        return FALLBACK;
    /* a new reference: attribute reads of the items may run Python code that mutates a list */
    PyObject *seq = PySequence_Tuple(v);
    if (seq == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    n = PyTuple_GET_SIZE(seq);
    if (n > step->bound) {
        Py_DECREF(seq);
        return FALLBACK;
    }
    put_u32(d, (uint32_t)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = put_sub(d + pos, PyTuple_GET_ITEM(seq, i), node, step->code, depth);
        if (k < 0) {
            Py_DECREF(seq);
            return k;
        }
        pos += k;
    }
    Py_DECREF(seq);
    return pos;
}

/* The MemoryPack object `obj` per program `node` into d (room for its max payload): member count,
   then the members. Its size, FALLBACK or BAD_PROGRAM. */
static Py_ssize_t put_object(uint8_t *d, PyObject *obj, PyObject *node, int depth)
{
    const struct rg_spec *spec = spec_of(node);
    PyObject *names;
    Py_ssize_t pos = 1;
    if (spec == NULL)
        return BAD_PROGRAM;
    if (depth > MAX_DEPTH)
        return FALLBACK;
    names = PyTuple_GET_ITEM(node, 2);
    d[0] = (uint8_t)spec->members;
    for (uint32_t k = 0; k < spec->nsteps; k++) {
        const struct rg_step *step = &spec->steps[k];
        Py_ssize_t wrote;
        PyObject *v = PyObject_GetAttr(obj, PyTuple_GET_ITEM(names, k));
        if (v == NULL) {
            PyErr_Clear(); /* the generated encoder raises its own error for it */
            return FALLBACK;
        }
        switch (step->kind) {
        case K_SCALAR: wrote = put_scalar(d + pos, step->code, v); break;
        case K_STR: wrote = put_str(d + pos, v, (Py_ssize_t)step->bound); break;
        case K_LIST: wrote = put_seq(d + pos, v, step->code, (Py_ssize_t)step->bound, 0); break;
        case K_ARRAY: wrote = put_seq(d + pos, v, step->code, (Py_ssize_t)step->bound, 1); break;
        case K_OBJECT: wrote = put_sub(d + pos, v, node, step->code, depth); break;
        case K_OBJLIST: wrote = put_objlist(d + pos, v, node, step, depth); break;
        default: wrote = BAD_PROGRAM;
        }
        Py_DECREF(v);
        if (wrote < 0)
            return wrote;
        pos += wrote;
    }
    return pos;
}

/* An unsigned header field from a Python int, checked against `max`; 0 if it does not fit. */
static int header_arg(PyObject *v, unsigned long long max, unsigned long long *out)
{
    if (!PyLong_CheckExact(v))
        return 0;
    *out = PyLong_AsUnsignedLongLong(v);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return *out <= max;
}

PyDoc_STRVAR(encode_into_doc,
             "encode_into(program, buffer, offset, obj, sender=0, receiver=0, sequence=0,\n"
             "            timestamp=None)\n"
             "\n"
             "Header + MemoryPack payload of one bridged message. With a writable buffer, writes\n"
             "the message at buffer[offset:] and returns None; with buffer None, returns the bytes.\n"
             "timestamp None means now. For anything the program does not cover it writes nothing\n"
             "and returns program[3](buffer, offset, obj, ...), the Python encoder, called with the\n"
             "same arguments.");

/* The Python encoder, with the caller's arguments: it gives the same bytes or the precise error. */
static PyObject *fall_back(PyObject *program, PyObject *const *args, Py_ssize_t nargs)
{
    return PyObject_Vectorcall(PyTuple_GET_ITEM(program, 3), args + 1, (size_t)(nargs - 1), NULL);
}

static PyObject *encode_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *program, *obj, *buffer, *result;
    const struct rg_spec *spec;
    unsigned long long offset = 0;
    unsigned long long sender = 0, receiver = 0, sequence = 0, ticks;
    uint8_t stack[STACK_PAYLOAD], *payload = stack;
    Py_ssize_t size;
    Py_buffer view;
    (void)self;
    if (nargs < 4 || nargs > 8) {
        PyErr_SetString(PyExc_TypeError, "encode_into takes 4 to 8 arguments");
        return NULL;
    }
    program = args[0];
    buffer = args[1];
    obj = args[3];
    spec = spec_of(program);
    if (spec == NULL) {
        PyErr_SetString(PyExc_TypeError, "encode_into: malformed program");
        return NULL;
    }
    if ((PyObject *)Py_TYPE(obj) != PyTuple_GET_ITEM(program, 0))
        return fall_back(program, args, nargs); /* subclasses and strangers */
    if ((nargs > 4 && !header_arg(args[4], UINT32_MAX, &sender)) ||
        (nargs > 5 && !header_arg(args[5], UINT32_MAX, &receiver)) ||
        (nargs > 6 && !header_arg(args[6], UINT64_MAX, &sequence)))
        return fall_back(program, args, nargs);
    if (nargs < 8 || args[7] == Py_None) {
        /* time.time_ns() // 100 + TICKS_AT_UNIX_EPOCH: time_ns reads the same clock */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ticks = ((unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec) / 100 +
                TICKS_AT_UNIX_EPOCH;
    } else if (!header_arg(args[7], UINT64_MAX, &ticks)) {
        return fall_back(program, args, nargs);
    }
    if (buffer != Py_None && !header_arg(args[2], PY_SSIZE_T_MAX, &offset))
        return fall_back(program, args, nargs);

    if (spec->max_payload > STACK_PAYLOAD) {
        payload = PyMem_Malloc((size_t)spec->max_payload);
        if (payload == NULL)
            return PyErr_NoMemory();
    }
    size = put_object(payload, obj, program, 0);
    if (size == BAD_PROGRAM) {
        PyErr_SetString(PyExc_TypeError, "encode_into: malformed program");
        result = NULL;
        goto done;
    }
    if (size < 0) {
        result = fall_back(program, args, nargs);
        goto done;
    }

    uint8_t header[HEADER_SIZE];
    uint64_t total = HEADER_SIZE + (uint64_t)size;
    memset(header, 0, sizeof header);
    put_u32(header, MAGIC);
    put_u64(header + 4, total);
    put_u64(header + 12, ticks);
    put_u32(header + 20, (uint32_t)sender);
    put_u32(header + 24, (uint32_t)receiver);
    put_u32(header + 28, spec->type_id);
    put_u64(header + 32, sequence);
    put_u32(header + 40, crc32_bytes(payload, size, 0));
    /* flags (44) and reason (48) stay 0, as the generated encoder's defaults */

    if (buffer == Py_None) {
        result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
        if (result != NULL) {
            char *out = PyBytes_AS_STRING(result);
            memcpy(out, header, HEADER_SIZE);
            memcpy(out + HEADER_SIZE, payload, (size_t)size);
        }
        goto done;
    }
    if (PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear(); /* read-only or strided: memoryview's own error comes from the slow path */
        result = fall_back(program, args, nargs);
        goto done;
    }
    if (offset + total > (unsigned long long)view.len) {
        PyBuffer_Release(&view);
        result = fall_back(program, args, nargs); /* its slice assignment reports the short buffer */
        goto done;
    }
    uint8_t *out = (uint8_t *)view.buf + offset;
    memcpy(out, header, HEADER_SIZE);
    memcpy(out + HEADER_SIZE, payload, (size_t)size);
    PyBuffer_Release(&view);
    result = Py_None;
    Py_INCREF(result);
done:
    if (payload != stack)
        PyMem_Free(payload);
    return result;
}

#include "_decode.h" /* decode_at: the decoder, with these programs */

static PyMethodDef methods[] = {
    {"encode_into", (PyCFunction)(void (*)(void))encode_into, METH_FASTCALL, encode_into_doc},
    {"decode_at", (PyCFunction)(void (*)(void))decode_at, METH_FASTCALL, decode_at_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ringgen_encoder",
    .m_doc = "Per-message bridged encoder (see ringgen/wire/native_ext.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ringgen_encoder(void)
{
    rg_crc_init();
    return PyModule_Create(&module);
}
