/* CompressAI-compatible rANS (factorized prior), bounds-checked, no pybind11.
 *
 * Reproduces CompressAI 1.2.8's RansEncoder.encode_with_indexes / RansDecoder.decode_with_indexes
 * (compressai/cpp_exts/rans/rans_interface.cpp on ryg's rans64.h): 64-bit state in [2^31, 2^63), 32-bit
 * little-endian words, 16-bit CDFs; a value outside its CDF is coded as the last table entry followed by
 * 4-bit "bypass" items: the nibble count, then the nibbles of raw = -2v-1 (v < 0) or 2(v-max) (v >= max),
 * least significant first. Symbol i is coded with CDF row indexes[i] (CompressAI's semantics: one row per
 * index); the factorized prior passes each symbol's channel, a hyperprior its scale index.
 *
 * Where we differ from CompressAI (which trusts its input):
 * - the encoder works in 64-bit arithmetic, so every int32 symbol codes: |raw| < 2^33 needs up to 9 nibbles
 *   (CompressAI loops forever from 8 nibbles and overflows int32 arithmetic near the int32 limits). Streams
 *   with values whose raw >= 2^28 are therefore ours only: CompressAI's encoder cannot make them and its
 *   decoder is not guaranteed to read them back. Below that the bytes are identical.
 * - any symbol count >= 1 (CompressAI writes before its output buffer for 1 symbol);
 * - the decoder checks every read against the payload's end and raises ValueError instead of reading on:
 *   a truncated payload, an initial state below 2^31, a nibble count above 9 (never written by either
 *   encoder; CompressAI would read on), a value outside int32, unread words or a final state other than
 *   2^31 (an encoder's stream always decodes to exactly its start) are all errors.
 * - the CDF tables are validated on every call (CompressAI only asserts in debug builds), and every index is
 *   checked to name a row before its row is read (CompressAI reads outside its vectors for a bad index).
 * The GIL is released while coding. Work is O(symbols): every loop below has a fixed bound.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION 16
#define PROB_MASK ((1u << PRECISION) - 1)
#define RANS_L (1ull << 31)         /* lower bound of a normalized state */
#define BYPASS_BITS 4
#define MAX_NIBBLES 9               /* raw < 2^33 for any int32 symbol and int32 offset */
#define BUCKET_SHIFT 8              /* decoder: 256 buckets per CDF give the search its starting point */
#define BUCKETS (1 << (PRECISION - BUCKET_SHIFT))

static inline uint32_t load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* A contiguous int32 buffer (numpy int32, array('i'), ...); ndim < 0 accepts any number of dimensions. */
static int get_int32(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (*format == '@' || *format == '=' || (*format == '<' && PY_LITTLE_ENDIAN)) format++;
    if (view->itemsize != 4 || format[0] != 'i' || format[1] != '\0' || (ndim >= 0 && view->ndim != ndim)) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous native int32 buffer%s", name,
                     ndim == 2 ? " of 2 dimensions" : (ndim == 1 ? " of 1 dimension" : ""));
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

typedef struct {
    Py_buffer cdf, lengths, offsets;
    Py_ssize_t channels, width;
} Tables;

static void release_tables(Tables *t) {
    if (t->cdf.obj) PyBuffer_Release(&t->cdf);
    if (t->lengths.obj) PyBuffer_Release(&t->lengths);
    if (t->offsets.obj) PyBuffer_Release(&t->offsets);
}

/* Views of the tables, each CDF checked: starts at 0, rises strictly, ends at 2^16 at cdf_length - 1. */
static int load_tables(PyObject *cdf, PyObject *lengths, PyObject *offsets, Tables *t) {
    memset(t, 0, sizeof(*t));
    if (get_int32(cdf, &t->cdf, 0, 2, "cdf") < 0 || get_int32(lengths, &t->lengths, 0, 1, "cdf_length") < 0
        || get_int32(offsets, &t->offsets, 0, 1, "offset") < 0) {
        release_tables(t);
        return -1;
    }
    t->channels = t->cdf.shape[0];
    t->width = t->cdf.shape[1];
    if (t->channels < 1 || t->lengths.shape[0] != t->channels || t->offsets.shape[0] != t->channels) {
        PyErr_SetString(PyExc_ValueError, "cdf (C, L), cdf_length (C,) and offset (C,) disagree on C >= 1");
        release_tables(t);
        return -1;
    }
    const int32_t *lens = t->lengths.buf;
    for (Py_ssize_t c = 0; c < t->channels; c++) {
        const int32_t *row = (const int32_t *)t->cdf.buf + c * t->width;
        int32_t len = lens[c];
        int ok = len >= 3 && len <= t->width && row[0] == 0 && row[len - 1] == 1 << PRECISION;
        for (int32_t k = 1; ok && k < len; k++) ok = row[k] > row[k - 1];
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "CDF of channel %zd is not a valid %d-bit CDF of length 3..%zd", c,
                         PRECISION, t->width);
            release_tables(t);
            return -1;
        }
    }
    return 0;
}

/* The indexes as a view, after checking that there is one per symbol; the coding loops check that each names a
 * row of the tables before using it. On failure an exception is set and nothing is held. */
static int load_indexes(PyObject *obj, Py_buffer *view, Py_ssize_t count) {
    if (get_int32(obj, view, 0, -1, "indexes") < 0) return -1;
    if (view->len / 4 != count) {
        PyErr_Format(PyExc_ValueError, "%zd indexes for %zd symbols: one index per symbol is needed", view->len / 4,
                     count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void bad_index_error(const int32_t *idx, Py_ssize_t at, Py_ssize_t rows) {
    PyErr_Format(PyExc_ValueError, "index %d of symbol %zd names no CDF row (the tables have rows 0..%zd)", idx[at],
                 at, rows - 1);
}

/* Output words an encoding can need: log2 of the state grows by <= 16 + 2^-14 bits per table item and
 * <= 4 + 2^-26 per nibble (<= 10 nibbles a symbol), a word leaves 32 bits, the state keeps >= 31, the
 * flush writes 2. encode() also checks every write against this capacity. */
static Py_ssize_t max_words(Py_ssize_t symbols) {
    return symbols / 4 * 7 + 7 * (symbols % 4) / 4 + symbols / 65536 + 3;
}

/* floor(x / freq) for x < 2^63 without a division (25% faster encoding): with k = ceil(log2 freq) and
 * m = ceil(2^(63+k) / freq) < 2^64, x * m / 2^(63+k) = x / freq + x * (m * freq - 2^(63+k)) / (freq * 2^(63+k)),
 * whose error < x / 2^(63+k) < 2^-k <= 1 / freq never reaches the next integer. The rANS state is below
 * freq * 2^47 <= 2^63 when divided. Computed on first use of a table entry; plain division without __int128. */
typedef struct {
    uint64_t m;  /* 0 until first used */
    uint32_t shift;
} Reciprocal;

static inline uint64_t divide(uint64_t x, uint32_t freq, Reciprocal *rcp) {
#ifndef __SIZEOF_INT128__
    (void)rcp;
    return x / freq;
#else
    if (!rcp->m) {
        uint32_t k = 0;
        while ((1u << k) < freq) k++;
        unsigned __int128 power = (unsigned __int128)1 << (63 + k);
        rcp->m = (uint64_t)((power + freq - 1) / freq);
        rcp->shift = 63 + k;
    }
    return (uint64_t)(((unsigned __int128)x * rcp->m) >> rcp->shift);
#endif
}

/* Encoder side, writing words backwards from *ptr; returns -1 when the buffer is full. */
static inline int put_item(uint64_t *x, unsigned char **ptr, const unsigned char *begin, uint32_t start,
                           uint32_t freq, Reciprocal *rcp) {
    if (*x >= ((RANS_L >> PRECISION) << 32) * freq) {
        if (*ptr == begin) return -1;
        *ptr -= 4;
        store_le32(*ptr, (uint32_t)*x);
        *x >>= 32;
    }
    uint64_t q = divide(*x, freq, rcp);
    *x = (q << PRECISION) + (*x - q * freq) + start;
    return 0;
}

static inline int put_nibble(uint64_t *x, unsigned char **ptr, const unsigned char *begin, uint32_t val) {
    if (*x >= ((RANS_L >> PRECISION) << 32) << (PRECISION - BYPASS_BITS)) {
        if (*ptr == begin) return -1;
        *ptr -= 4;
        store_le32(*ptr, (uint32_t)*x);
        *x >>= 32;
    }
    *x = (*x << BYPASS_BITS) | val;
    return 0;
}

static PyObject *rans_encode(PyObject *self, PyObject *args) {
    PyObject *symbols_obj, *indexes_obj, *cdf_obj, *lengths_obj, *offsets_obj;
    if (!PyArg_ParseTuple(args, "OOOOO:encode_with_indexes", &symbols_obj, &indexes_obj, &cdf_obj, &lengths_obj,
                          &offsets_obj))
        return NULL;
    Py_buffer symbols, indexes;
    Tables t;
    if (get_int32(symbols_obj, &symbols, 0, -1, "symbols") < 0) return NULL;
    if (load_tables(cdf_obj, lengths_obj, offsets_obj, &t) < 0) {
        PyBuffer_Release(&symbols);
        return NULL;
    }
    Py_ssize_t count = symbols.len / 4;
    PyObject *result = NULL;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "no symbols to encode");
        release_tables(&t);
        PyBuffer_Release(&symbols);
        return NULL;
    }
    if (load_indexes(indexes_obj, &indexes, count) < 0) {
        release_tables(&t);
        PyBuffer_Release(&symbols);
        return NULL;
    }
    Py_ssize_t capacity = 4 * max_words(count);
    unsigned char *out = PyMem_RawMalloc(capacity);
    Reciprocal *reciprocals = PyMem_RawCalloc(t.channels * t.width, sizeof(Reciprocal));
    if (!out || !reciprocals) {
        PyMem_RawFree(out);
        PyMem_RawFree(reciprocals);
        PyErr_NoMemory();
        goto done;
    }
    const int32_t *sym = symbols.buf, *idx = indexes.buf, *lens = t.lengths.buf, *offs = t.offsets.buf;
    unsigned char *ptr = out + capacity;
    int full = 0;
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    uint64_t x = RANS_L;
    for (Py_ssize_t i = count - 1; i >= 0; i--) {  /* rANS is LIFO: the last symbol is pushed first */
        const int32_t c = idx[i];
        if ((uint32_t)c >= (uint32_t)t.channels) {
            bad = i;
            break;
        }
        const int32_t *row = (const int32_t *)t.cdf.buf + c * t.width;
        const int64_t top = lens[c] - 2, offset = offs[c];
        int64_t value = (int64_t)sym[i] - offset;
        if (value < 0 || value >= top) {  /* escape: the items go in reverse of their decoding order */
            uint64_t raw = value < 0 ? (uint64_t)(-2 * value - 1) : (uint64_t)(2 * (value - top));
            int nibbles = 0;
            while (nibbles < MAX_NIBBLES && raw >> (BYPASS_BITS * nibbles)) nibbles++;
            for (int j = nibbles - 1; j >= 0; j--)
                full |= put_nibble(&x, &ptr, out, (uint32_t)(raw >> (BYPASS_BITS * j)) & 15u);
            full |= put_nibble(&x, &ptr, out, (uint32_t)nibbles);  /* < 15: a single count nibble */
            value = top;
        }
        full |= put_item(&x, &ptr, out, (uint32_t)row[value], (uint32_t)(row[value + 1] - row[value]),
                         reciprocals + c * t.width + value);
        if (full) break;
    }
    if (bad < 0 && !full && ptr - out >= 8) {
        ptr -= 8;
        store_le32(ptr, (uint32_t)x);
        store_le32(ptr + 4, (uint32_t)(x >> 32));
    } else {
        full = bad < 0;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        bad_index_error(idx, bad, t.channels);
    else if (full)
        PyErr_SetString(PyExc_RuntimeError, "rANS output exceeded its proven bound (a bug in _rans.c)");
    else
        result = PyBytes_FromStringAndSize((const char *)ptr, out + capacity - ptr);
    PyMem_RawFree(out);
    PyMem_RawFree(reciprocals);
done:
    release_tables(&t);
    PyBuffer_Release(&indexes);
    PyBuffer_Release(&symbols);
    return result;
}

/* Decoder side: every read is checked against the payload's end. */
typedef struct {
    uint64_t x;
    const unsigned char *ptr, *end;
} Reader;

static inline int renormalize(Reader *r) {
    if (r->x < RANS_L) {
        if (r->ptr == r->end) return -1;
        r->x = (r->x << 32) | load_le32(r->ptr);
        r->ptr += 4;
    }
    return 0;
}

static inline int get_nibble(Reader *r, uint32_t *val) {
    *val = (uint32_t)(r->x & 15u);
    r->x >>= BYPASS_BITS;
    return renormalize(r);
}

enum { OK, BAD_INDEX, TRUNCATED, TOO_MANY_NIBBLES, OUT_OF_RANGE, TRAILING, BAD_END };

static PyObject *rans_decode(PyObject *self, PyObject *args) {
    PyObject *payload_obj, *out_obj, *indexes_obj, *cdf_obj, *lengths_obj, *offsets_obj;
    if (!PyArg_ParseTuple(args, "OOOOOO:decode_with_indexes", &payload_obj, &out_obj, &indexes_obj, &cdf_obj,
                          &lengths_obj, &offsets_obj))
        return NULL;
    Py_buffer payload, out, indexes;
    Tables t;
    if (PyObject_GetBuffer(payload_obj, &payload, PyBUF_SIMPLE) < 0) return NULL;
    if (get_int32(out_obj, &out, 1, -1, "out") < 0) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    if (load_tables(cdf_obj, lengths_obj, offsets_obj, &t) < 0) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&payload);
        return NULL;
    }
    Py_ssize_t count = out.len / 4;
    if (load_indexes(indexes_obj, &indexes, count) < 0) {
        release_tables(&t);
        PyBuffer_Release(&out);
        PyBuffer_Release(&payload);
        return NULL;
    }
    PyObject *result = NULL;
    int32_t *buckets = NULL;
    const unsigned char *bytes = payload.buf;
    if (payload.len < 8 || payload.len % 4) {
        PyErr_Format(PyExc_ValueError, "rANS payload of %zd bytes: not a whole number of words from 8 bytes",
                     payload.len);
        goto done;
    }
    Reader r = {(uint64_t)load_le32(bytes + 4) << 32 | load_le32(bytes), bytes + 8, bytes + payload.len};
    if (r.x < RANS_L) {
        PyErr_SetString(PyExc_ValueError, "rANS payload is corrupt: its initial coder state is below 2**31");
        goto done;
    }
    buckets = PyMem_RawMalloc(sizeof(int32_t) * BUCKETS * t.channels);
    if (!buckets) {
        PyErr_NoMemory();
        goto done;
    }
    const int32_t *idx = indexes.buf, *lens = t.lengths.buf, *offs = t.offsets.buf;
    int32_t *values = out.buf;
    int status = OK;
    Py_ssize_t at = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t c = 0; c < t.channels; c++) {  /* bucket b: the last s with cdf[s] <= b << BUCKET_SHIFT */
        const int32_t *row = (const int32_t *)t.cdf.buf + c * t.width;
        int32_t s = 0;
        for (int32_t b = 0; b < BUCKETS; b++) {
            while (row[s + 1] <= b << BUCKET_SHIFT) s++;
            buckets[c * BUCKETS + b] = s;
        }
    }
    for (at = 0; at < count; at++) {
        const int32_t c = idx[at];
        if ((uint32_t)c >= (uint32_t)t.channels) { status = BAD_INDEX; break; }
        const int32_t *row = (const int32_t *)t.cdf.buf + c * t.width, *bucket = buckets + c * BUCKETS;
        const int32_t top = lens[c] - 2;
        const int64_t offset = offs[c];
        uint32_t cum = (uint32_t)(r.x & PROB_MASK);
        int32_t s = bucket[cum >> BUCKET_SHIFT];
        while ((uint32_t)row[s + 1] <= cum) s++;  /* stops at top at the latest: row[top + 1] = 2^16 */
        uint32_t start = (uint32_t)row[s], freq = (uint32_t)(row[s + 1] - row[s]);
        r.x = freq * (r.x >> PRECISION) + (r.x & PROB_MASK) - start;
        if (renormalize(&r) < 0) { status = TRUNCATED; break; }
        int64_t value = s;
        if (s == top) {
            uint32_t nibbles, nibble;
            if (get_nibble(&r, &nibbles) < 0) { status = TRUNCATED; break; }
            if (nibbles > MAX_NIBBLES) { status = TOO_MANY_NIBBLES; break; }
            uint64_t raw = 0;
            for (uint32_t j = 0; j < nibbles; j++) {
                if (get_nibble(&r, &nibble) < 0) { status = TRUNCATED; break; }
                raw |= (uint64_t)nibble << (BYPASS_BITS * j);
            }
            if (status != OK) break;
            value = raw & 1 ? -(int64_t)(raw >> 1) - 1 : (int64_t)(raw >> 1) + top;
        }
        value += offset;
        if (value < INT32_MIN || value > INT32_MAX) { status = OUT_OF_RANGE; break; }
        values[at] = (int32_t)value;
    }
    if (status == OK && r.ptr != r.end) status = TRAILING;
    else if (status == OK && r.x != RANS_L) status = BAD_END;
    Py_END_ALLOW_THREADS
    switch (status) {
    case OK: result = Py_NewRef(Py_None); break;
    case BAD_INDEX: bad_index_error(idx, at, t.channels); break;
    case TRUNCATED:
        PyErr_Format(PyExc_ValueError, "rANS payload is truncated or corrupt: it ends at symbol %zd of %zd",
                     at, count);
        break;
    case TOO_MANY_NIBBLES:
        PyErr_Format(PyExc_ValueError, "rANS payload is corrupt: symbol %zd escapes with over %d nibbles", at,
                     MAX_NIBBLES);
        break;
    case OUT_OF_RANGE:
        PyErr_Format(PyExc_ValueError, "rANS payload is corrupt: symbol %zd lies outside int32", at);
        break;
    case TRAILING:
        PyErr_Format(PyExc_ValueError, "rANS payload is corrupt: %zd bytes left after the last symbol",
                     (Py_ssize_t)(r.end - r.ptr));
        break;
    default:
        PyErr_SetString(PyExc_ValueError, "rANS payload is corrupt: the coder does not end in its initial state");
    }
done:
    PyMem_RawFree(buckets);
    release_tables(&t);
    PyBuffer_Release(&indexes);
    PyBuffer_Release(&out);
    PyBuffer_Release(&payload);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_with_indexes", rans_encode, METH_VARARGS,
     "encode_with_indexes(symbols, indexes, cdf, cdf_length, offset) -> bytes\n\n"
     "int32 symbols, each coded with CDF row indexes[i] (int32, as many) -> CompressAI's rANS bytes. "
     "cdf: int32 (R, L); cdf_length, offset: int32 (R,)."},
    {"decode_with_indexes", rans_decode, METH_VARARGS,
     "decode_with_indexes(payload, out, indexes, cdf, cdf_length, offset) -> None\n\n"
     "rANS bytes -> int32 symbols written into out (writable, one per index); ValueError for a corrupt payload "
     "or an index naming no row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sc2edge.runtime._rans",
    .m_doc = "CompressAI-compatible rANS coder, bounds-checked.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
