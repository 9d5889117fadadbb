/*
 * The decode half of _encoder.c (decode_at): one bridged message from a buffer back into the attrs
 * instance, with the encoder's programs. Included once, by _encoder.c, after the encoder (it uses
 * its program layout, struct rg_spec and the step kinds, and the CRC of _wire_common.h); a header
 * only so that neither file is a thousand lines. Part of the extension's cache key
 * (native.HEADERS).
 */
#ifndef RINGGEN_DECODE_H
#define RINGGEN_DECODE_H

/* ---- decoding: one bridged message from a buffer into the attrs instance ------------------- */

/* The decoder mirrors the generated fast decoder (templates/python/bridged.py.j2, fast_decode_<C>):
 * it returns an object only where that decoder would return an equal one (same Python types:
 * int, float from the f32/f64 bytes as struct reads them, bool, str, list, the classes called
 * positionally), and hands everything else to the program's fallback, the generated decoder
 * (which decodes it, or raises the precise WireFormatError). Every length read from the wire is
 * checked against the message's end before it is used. */

/* "Hand it to the generated decoder": the message is not one this decoder accepts. */
#define DECODE_FALLBACK NULL

static inline uint32_t get_u32(const uint8_t *s)
{
    uint32_t v;
    memcpy(&v, s, 4);
    return v;
}

static inline int32_t get_i32(const uint8_t *s) { return (int32_t)get_u32(s); }

static inline uint64_t get_u64(const uint8_t *s)
{
    uint64_t v;
    memcpy(&v, s, 8);
    return v;
}

/* The size of a scalar with struct code `code`, 0 for a code this module does not know. */
static int scalar_size(int code)
{
    switch (code) {
    case 'b': case 'B': case '?': return 1;
    case 'h': case 'H': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'q': case 'Q': case 'd': return 8;
    default: return 0;
    }
}

/* The Python value struct.unpack gives for the scalar at s (a new reference, NULL on error). */
static PyObject *get_scalar(const uint8_t *s, int code)
{
    switch (code) {
    case 'b': return PyLong_FromLong((int8_t)s[0]);
    case 'B': return PyLong_FromLong(s[0]);
    case '?': return PyBool_FromLong(s[0] != 0);
    case 'h': { int16_t v; memcpy(&v, s, 2); return PyLong_FromLong(v); }
    case 'H': { uint16_t v; memcpy(&v, s, 2); return PyLong_FromLong(v); }
    case 'i': return PyLong_FromLong(get_i32(s));
    case 'I': return PyLong_FromUnsignedLong(get_u32(s));
    case 'q': return PyLong_FromLongLong((long long)get_u64(s));
    case 'Q': return PyLong_FromUnsignedLongLong(get_u64(s));
    case 'f': { /* struct's own conversion, NaN payloads included */
        double x = PyFloat_Unpack4((const char *)s, 1);
        return x == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(x);
    }
    case 'd': {
        double x = PyFloat_Unpack8((const char *)s, 1);
        return x == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(x);
    }
    default:
        PyErr_SetString(PyExc_TypeError, "decode_at: malformed program");
        return NULL;
    }
}

/* A list of n scalars at s (the caller checked that n * size bytes are there). */
static PyObject *get_scalars(const uint8_t *s, int code, Py_ssize_t n)
{
    int size = scalar_size(code);
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = get_scalar(s + i * size, code);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* A Str at d[*pos:end]: the str, or NULL with no error set (fall back) or an error set. The
 * generated decoder's rules: 0 is "", ~n with 1 <= n <= max_bytes is n strict UTF-8 bytes after a
 * UTF-16 length that is -1 or the str's; anything else falls back. */
static PyObject *get_str(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, int64_t max_bytes)
{
    Py_ssize_t p = *pos, n, units;
    int32_t w, u;
    PyObject *s;
    if (end - p < 4)
        return DECODE_FALLBACK;
    w = get_i32(d + p);
    if (w == 0) {
        *pos = p + 4;
        return PyUnicode_New(0, 0);
    }
    if (w > -2 || (int64_t)w < -2 - max_bytes)
        return DECODE_FALLBACK;
    n = (Py_ssize_t)~w;
    if (end - p < 8 || end - p - 8 < n)
        return DECODE_FALLBACK;
    s = PyUnicode_DecodeUTF8((const char *)d + p + 8, n, NULL);
    if (s == NULL) {
        PyErr_Clear(); /* malformed UTF-8: the reference decoder names it */
        return DECODE_FALLBACK;
    }
    u = get_i32(d + p + 4);
    if (u != -1) {
        units = PyUnicode_GET_LENGTH(s);
        if (units != n && PyUnicode_KIND(s) == PyUnicode_4BYTE_KIND) {
            const Py_UCS4 *c = PyUnicode_4BYTE_DATA(s);
            for (Py_ssize_t i = 0, len = units; i < len; i++)
                units += c[i] > 0xFFFF;
        }
        if ((Py_ssize_t)u != units) {
            Py_DECREF(s);
            return DECODE_FALLBACK;
        }
    }
    *pos = p + 8 + n;
    return s;
}

static PyObject *get_object(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, PyObject *node,
                            int depth);

/* Subprogram `index` of node, or NULL with TypeError set. */
static PyObject *sub_of(PyObject *node, int32_t index)
{
    PyObject *subs = PyTuple_GET_ITEM(node, 4), *sub;
    if (index < 0 || index >= PyTuple_GET_SIZE(subs) ||
        !PyTuple_CheckExact(sub = PyTuple_GET_ITEM(subs, index)) || PyTuple_GET_SIZE(sub) != 5) {
        PyErr_SetString(PyExc_TypeError, "decode_at: malformed program");
        return NULL;
    }
    return sub;
}

/* One member of kind step->kind at d[*pos:end]: a new reference, or NULL (error set, or not: then
 * fall back). */
static PyObject *get_member(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, PyObject *node,
                            const struct rg_step *step, int depth)
{
    Py_ssize_t p = *pos;
    int size;
    int32_t count;
    PyObject *sub, *list;
    switch (step->kind) {
    case K_SCALAR:
        size = scalar_size(step->code);
        if (size == 0 || end - p < size)
            return size == 0 ? get_scalar(d, step->code) : DECODE_FALLBACK;
        *pos = p + size;
        return get_scalar(d + p, step->code);
    case K_STR:
        return get_str(d, pos, end, step->bound);
    case K_LIST:
    case K_ARRAY:
        size = scalar_size(step->code);
        if (size == 0)
            return get_scalar(d, step->code); /* raises: malformed program */
        if (end - p < 4)
            return DECODE_FALLBACK;
        count = get_i32(d + p);
        if (step->kind == K_ARRAY ? count != step->bound : count < 0 || count > step->bound)
            return DECODE_FALLBACK;
        if ((end - p - 4) / size < count)
            return DECODE_FALLBACK;
        *pos = p + 4 + (Py_ssize_t)count * size;
        return get_scalars(d + p + 4, step->code, count);
    case K_OBJECT:
        if ((sub = sub_of(node, step->code)) == NULL)
            return NULL;
        return get_object(d, pos, end, sub, depth + 1);
    case K_OBJLIST:
        if ((sub = sub_of(node, step->code)) == NULL)
            return NULL;
        if (end - p < 4)
            return DECODE_FALLBACK;
        count = get_i32(d + p);
        if (count < 0 || count > step->bound)
            return DECODE_FALLBACK;
        *pos = p + 4;
        if ((list = PyList_New(count)) == NULL)
            return NULL;
        for (int32_t i = 0; i < count; i++) {
            PyObject *o = get_object(d, pos, end, sub, depth + 1);
            if (o == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, i, o);
        }
        return list;
    default:
        PyErr_SetString(PyExc_TypeError, "decode_at: malformed program");
        return NULL;
    }
}

/* The MemoryPack object of program `node` at d[*pos:end]: its member count, its members, then the
 * class called with them positionally, as the generated decoder does. NULL: an error is set, or
 * (none set) the bytes are not ones this decoder accepts. */
static PyObject *get_object(const uint8_t *d, Py_ssize_t *pos, Py_ssize_t end, PyObject *node,
                            int depth)
{
    const struct rg_spec *spec = spec_of(node);
    PyObject *stack[16], **args = stack, *obj = NULL;
    uint32_t k, made = 0;
    if (spec == NULL) {
        PyErr_SetString(PyExc_TypeError, "decode_at: malformed program");
        return NULL;
    }
    if (depth > MAX_DEPTH || *pos >= end || d[*pos] != spec->members)
        return DECODE_FALLBACK;
    *pos += 1;
    if (spec->nsteps > 16 && (args = PyMem_Malloc(spec->nsteps * sizeof(PyObject *))) == NULL)
        return PyErr_NoMemory();
    for (k = 0; k < spec->nsteps; k++, made++)
        if ((args[k] = get_member(d, pos, end, node, &spec->steps[k], depth)) == NULL)
            goto done;
    obj = PyObject_Vectorcall(PyTuple_GET_ITEM(node, 0), args, spec->nsteps, NULL);
    if (obj == NULL)
        PyErr_Clear(); /* the generated decoder calls it again and raises what it raises */
done:
    for (k = 0; k < made; k++)
        Py_DECREF(args[k]);
    if (args != stack)
        PyMem_Free(args);
    return obj;
}

PyDoc_STRVAR(decode_at_doc,
             "decode_at(program, buffer, offset=0, limit=-1)\n"
             "\n"
             "The bridged message held in buffer[offset:offset + limit] (limit -1: to the end),\n"
             "cut at its header's total size as wire.codec.message_bytes cuts it. For anything the\n"
             "generated fast decoder would not accept it returns program[3](data), the generated\n"
             "decoder, where data is buffer itself (offset 0, no limit) or a bytes copy of the\n"
             "range, so a malformed message raises exactly its WireFormatError.");

static PyObject *decode_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *program, *buffer, *obj = NULL;
    const struct rg_spec *spec;
    Py_ssize_t offset = 0, limit = -1, avail, end, pos = HEADER_SIZE;
    const uint8_t *d;
    uint64_t total;
    Py_buffer view;
    (void)self;
    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "decode_at takes 2 to 4 arguments");
        return NULL;
    }
    program = args[0];
    buffer = args[1];
    if ((spec = spec_of(program)) == NULL) {
        PyErr_SetString(PyExc_TypeError, "decode_at: malformed program");
        return NULL;
    }
    if (nargs > 2 && ((offset = PyLong_AsSsize_t(args[2])) < 0 ||
                      (nargs > 3 && (limit = PyLong_AsSsize_t(args[3])) < -1))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "decode_at: offset and limit must not be negative");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0) {
        if (offset != 0 || limit != -1)
            return NULL; /* only ringgen's own slots come with an offset: a real error */
        PyErr_Clear(); /* the generated decoder raises its own error for it, or copies it */
        return PyObject_CallOneArg(PyTuple_GET_ITEM(program, 3), buffer);
    }
    avail = offset < view.len ? view.len - offset : 0;
    if (limit >= 0 && limit < avail)
        avail = limit;
    d = (const uint8_t *)view.buf + (offset < view.len ? offset : view.len);
    /* message_bytes: a total size in [256, avail) cuts the data there */
    end = avail;
    if (avail >= HEADER_SIZE) {
        total = get_u64(d + 4);
        if (total >= HEADER_SIZE && total < (uint64_t)avail)
            end = (Py_ssize_t)total;
        if (get_u32(d) == MAGIC && total == (uint64_t)end &&
            total <= HEADER_SIZE + (uint64_t)spec->max_payload && get_u32(d + 28) == spec->type_id &&
            crc32_bytes(d + HEADER_SIZE, end - HEADER_SIZE, 0) == get_u32(d + 40)) {
            obj = get_object(d, &pos, end, program, 0);
            if (obj != NULL && pos != end)
                Py_CLEAR(obj);
        }
    }
    if (obj == NULL && !PyErr_Occurred()) {
        if (offset == 0 && limit == -1) {
            obj = PyObject_CallOneArg(PyTuple_GET_ITEM(program, 3), buffer);
        } else {
            PyObject *copy = PyBytes_FromStringAndSize((const char *)d, avail);
            if (copy != NULL) {
                obj = PyObject_CallOneArg(PyTuple_GET_ITEM(program, 3), copy);
                Py_DECREF(copy);
            }
        }
    }
    PyBuffer_Release(&view);
    return obj;
}

#endif /* RINGGEN_DECODE_H */
