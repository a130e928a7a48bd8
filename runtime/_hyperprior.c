/* The hyperprior's side network and scale-index selection, bit-identical on every machine.
 *
 * A hyperprior codes each symbol of y with a Gaussian whose scale index and mean come from h_s(z_hat); the
 * device and the server both compute them, and one index that differs desynchronises the rANS decoder. ML
 * runtimes cannot promise identical floats across machines (FMA or not, SIMD width, summation order, threads,
 * INT8 kernels per ISA), so both ends run this one reference implementation instead. Each function here is a
 * fixed sequence of IEEE-754 binary32 operations, each rounded to nearest even, so any conforming machine gives
 * the same bits:
 * - every output element is a sum of products in one documented order, starting from +0.0f:
 *   conv2d: over (ci, kh, kw) lexicographically, zero-padded input (padding terms are w * 0.0f);
 *   conv_transpose2d: the in-range contributions over (ci, kh, kw) lexicographically;
 *   then + bias (if any); the activation is x > 0 ? x : x * slope (slope 0: +0.0f), like PyTorch's;
 * - no fused multiply-add: built with -ffp-contract=off (and the pragma below for compilers that honour it);
 *   a product is rounded before it is added. -ffast-math (reassociation) is refused at compile time;
 * - no excess precision: FLT_EVAL_METHOD must be 0 (SSE/NEON arithmetic, never the x87 unit);
 * - the floating-point environment is reset for the duration of each call (round to nearest, no
 *   flush-to-zero / denormals-are-zero, which another library may have left set on this thread) and restored;
 * - one thread, the GIL released; vectorisation only over independent output elements (each element's sum keeps
 *   its order), so SSE2, AVX2 or scalar code give the same bits (the AVX2 clone has no FMA either).
 * tests/runtime/test_hyperprior.py checks these functions bit for bit against an independent numpy
 * implementation of the same order, across processes and thread settings, and with flush-to-zero left on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fenv.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define MXCSR_DEFAULT 0x1f80u /* all exceptions masked, round to nearest, FTZ and DAZ off */
#endif

#pragma STDC FP_CONTRACT OFF

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "the deterministic index path needs float arithmetic without excess precision (FLT_EVAL_METHOD == 0)"
#endif
#if defined(__FAST_MATH__)
#error "the deterministic index path must not be built with -ffast-math (it reorders sums)"
#endif

/* An AVX2 clone beside the baseline one where the toolchain can dispatch at load time; both give the same bits.
 * SC2EDGE_SINGLE_TARGET builds one version for the compiler's target (the tests build several and compare). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) && defined(__has_attribute) \
    && !defined(SC2EDGE_SINGLE_TARGET)
#if __has_attribute(target_clones)
#define KERNEL __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef KERNEL
#define KERNEL
#endif

#define MAX_DIM (1 << 16)

/* The thread's FP state, replaced by IEEE defaults while a kernel runs. */
typedef struct {
#if defined(__x86_64__) || defined(__i386__)
    unsigned int mxcsr;
#else
    fenv_t env;
#endif
} FpState;

static void fp_enter(FpState *s) {
#if defined(__x86_64__) || defined(__i386__)
    s->mxcsr = _mm_getcsr();
    _mm_setcsr(MXCSR_DEFAULT);
#else
    fegetenv(&s->env);
    fesetenv(FE_DFL_ENV);
#endif
}

static void fp_leave(const FpState *s) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(s->mxcsr);
#else
    fesetenv(&s->env);
#endif
}

/* A C-contiguous native buffer of 4-byte items with format code `code` ('f' or 'i') and `ndim` dimensions. */
static int get_buffer(PyObject *obj, Py_buffer *view, char code, int writable, int ndim, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (*format == '@' || *format == '=' || (*format == '<' && PY_LITTLE_ENDIAN)) format++;
    if (view->itemsize != 4 || format[0] != code || format[1] != '\0' || view->ndim != ndim) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %s%s buffer of %d dimensions", name,
                     writable ? "writable " : "", code == 'f' ? "float32" : "int32", ndim);
        PyBuffer_Release(view);
        return -1;
    }
    for (int d = 0; d < ndim; d++) {
        if (view->shape[d] < 1 || view->shape[d] > MAX_DIM) {
            PyErr_Format(PyExc_ValueError, "%s has a dimension of %zd (1..%d allowed)", name, view->shape[d], MAX_DIM);
            PyBuffer_Release(view);
            return -1;
        }
    }
    return 0;
}

/* The one kernel both layer kinds run (stride 1 over a prepared input u):
 *   out[co, oh, ow] = (sum over taps t = 0, 1, ... of w[co * ntaps + t] * u[off[t] + oh * wu + ow]) + bias[co],
 * the sum taken left to right from +0.0f. A conv2d's taps are (ci, kh, kw) in that order over the zero-padded
 * input; a conv_transpose2d's are (ci, kh, kw) over the zero-dilated, padded input, reading the flipped position:
 * each output element then receives exactly the products the scatter definition gives it, in the same order, plus
 * products with the inserted zeros. Adding w * 0.0f (= +-0, w finite) to a sum that starts at +0.0f never changes
 * its bits (such a sum is never -0 under round-to-nearest), so both definitions agree bit for bit (tested).
 * Vectorised over 8 consecutive ow and blocked over 4 co: each output element still sums its taps in order. */
#if defined(__GNUC__)
typedef float v8 __attribute__((vector_size(32)));
#define LANES 8
#define CO_BLOCK 4

KERNEL static void tap_conv(const float *restrict u, Py_ssize_t wu, const Py_ssize_t *restrict off, Py_ssize_t ntaps,
                            const float *restrict wt, const float *restrict bias, Py_ssize_t cout,
                            float *restrict out, Py_ssize_t oh_n, Py_ssize_t ow_n) {
    for (Py_ssize_t co0 = 0; co0 < cout; co0 += CO_BLOCK) {
        Py_ssize_t nco = cout - co0 < CO_BLOCK ? cout - co0 : CO_BLOCK;
        const float *w[CO_BLOCK];
        for (Py_ssize_t b = 0; b < CO_BLOCK; b++) w[b] = wt + (co0 + (b < nco ? b : 0)) * ntaps;
        for (Py_ssize_t oh = 0; oh < oh_n; oh++) {
            for (Py_ssize_t ow0 = 0; ow0 < ow_n; ow0 += 2 * LANES) {
                const float *base = u + oh * wu + ow0;
                v8 acc[2][CO_BLOCK] = {{{0}}};
                v8 a0 = acc[0][0], a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                for (Py_ssize_t t = 0; t < ntaps; t++) {
                    v8 v, x;
                    memcpy(&v, base + off[t], sizeof v);
                    memcpy(&x, base + off[t] + LANES, sizeof x);
                    const float w0 = w[0][t], w1 = w[1][t], w2 = w[2][t], w3 = w[3][t];
                    a0 = a0 + v * w0;
                    a1 = a1 + v * w1;
                    a2 = a2 + v * w2;
                    a3 = a3 + v * w3;
                    b0 = b0 + x * w0;
                    b1 = b1 + x * w1;
                    b2 = b2 + x * w2;
                    b3 = b3 + x * w3;
                }
                acc[0][0] = a0, acc[0][1] = a1, acc[0][2] = a2, acc[0][3] = a3;
                acc[1][0] = b0, acc[1][1] = b1, acc[1][2] = b2, acc[1][3] = b3;
                for (Py_ssize_t half = 0; half < 2; half++) {
                    Py_ssize_t start = ow0 + half * LANES, lanes = ow_n - start < LANES ? ow_n - start : LANES;
                    for (Py_ssize_t b = 0; b < nco && lanes > 0; b++) {
                        if (bias) acc[half][b] = acc[half][b] + bias[co0 + b];
                        memcpy(out + ((co0 + b) * oh_n + oh) * ow_n + start, &acc[half][b],
                               sizeof(float) * (size_t)lanes);
                    }
                }
            }
        }
    }
}
#define U_SLACK (2 * LANES) /* the last vectors of a row may read this far past the input */
#else
/* Compilers without vector extensions: the same sums, one element at a time. */
static void tap_conv(const float *u, Py_ssize_t wu, const Py_ssize_t *off, Py_ssize_t ntaps, const float *wt,
                     const float *bias, Py_ssize_t cout, float *out, Py_ssize_t oh_n, Py_ssize_t ow_n) {
    for (Py_ssize_t co = 0; co < cout; co++)
        for (Py_ssize_t oh = 0; oh < oh_n; oh++)
            for (Py_ssize_t ow = 0; ow < ow_n; ow++) {
                float acc = 0.0f;
                for (Py_ssize_t t = 0; t < ntaps; t++) acc = acc + wt[co * ntaps + t] * u[off[t] + oh * wu + ow];
                out[(co * oh_n + oh) * ow_n + ow] = bias ? acc + bias[co] : acc;
            }
}
#define U_SLACK 0
#endif

/* Strided conv2d (not in the models' h_s, kept for completeness): the taps' order, one element at a time. */
static void strided_conv2d(const float *xp, Py_ssize_t cin, Py_ssize_t hp, Py_ssize_t wp, const float *wt,
                           const float *bias, Py_ssize_t cout, Py_ssize_t k, Py_ssize_t stride, float *out,
                           Py_ssize_t oh_n, Py_ssize_t ow_n) {
    for (Py_ssize_t co = 0; co < cout; co++)
        for (Py_ssize_t oh = 0; oh < oh_n; oh++)
            for (Py_ssize_t ow = 0; ow < ow_n; ow++) {
                float acc = 0.0f;
                for (Py_ssize_t ci = 0; ci < cin; ci++)
                    for (Py_ssize_t kh = 0; kh < k; kh++)
                        for (Py_ssize_t kw = 0; kw < k; kw++)
                            acc = acc + wt[((co * cin + ci) * k + kh) * k + kw]
                                            * xp[(ci * hp + oh * stride + kh) * wp + ow * stride + kw];
                out[(co * oh_n + oh) * ow_n + ow] = bias ? acc + bias[co] : acc;
            }
}

/* u[ci, top + ih * step, top + iw * step] = x[ci, ih, iw] in a zeroed (C, hu, wu) buffer (+ U_SLACK floats). */
static void place_input(const float *x, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t step, Py_ssize_t top,
                        Py_ssize_t hu, Py_ssize_t wu, float *u) {
    memset(u, 0, sizeof(float) * (size_t)(c * hu * wu + U_SLACK));
    for (Py_ssize_t ci = 0; ci < c; ci++)
        for (Py_ssize_t i = 0; i < h; i++) {
            float *dst = u + (ci * hu + top + i * step) * wu + top;
            const float *src = x + (ci * h + i) * w;
            for (Py_ssize_t j = 0; j < w; j++) dst[j * step] = src[j];
        }
}

/* Parses (x, weight, bias or None, out) and checks that the channel counts agree; weight is 4-d. */
typedef struct {
    Py_buffer x, weight, bias, out;
} ConvViews;

static void release_views(ConvViews *v) {
    if (v->x.obj) PyBuffer_Release(&v->x);
    if (v->weight.obj) PyBuffer_Release(&v->weight);
    if (v->bias.obj) PyBuffer_Release(&v->bias);
    if (v->out.obj) PyBuffer_Release(&v->out);
}

static int load_views(PyObject *x, PyObject *weight, PyObject *bias, PyObject *out, int transposed, ConvViews *v) {
    memset(v, 0, sizeof(*v));
    if (get_buffer(x, &v->x, 'f', 0, 3, "x") < 0 || get_buffer(weight, &v->weight, 'f', 0, 4, "weight") < 0
        || (bias != Py_None && get_buffer(bias, &v->bias, 'f', 0, 1, "bias") < 0)
        || get_buffer(out, &v->out, 'f', 1, 3, "out") < 0) {
        release_views(v);
        return -1;
    }
    Py_ssize_t cin = v->weight.shape[transposed ? 0 : 1], cout = v->weight.shape[transposed ? 1 : 0];
    if (v->weight.shape[2] != v->weight.shape[3] || cin != v->x.shape[0] || cout != v->out.shape[0]
        || (v->bias.obj && v->bias.shape[0] != cout)) {
        PyErr_SetString(PyExc_ValueError, "x, weight, bias and out disagree on channels (or the kernel is not square)");
        release_views(v);
        return -1;
    }
    return 0;
}

/* Runs tap_conv over u (cin, hu, wu) with taps (ci, kh, kw) in order at offsets ci*hu*wu + row(kh)*wu + col(kw),
 * row(kh) = kh or k - 1 - kh (flipped, transposed convolutions). Returns -1 without memory (no exception set). */
static int run_taps(const float *u, Py_ssize_t cin, Py_ssize_t hu, Py_ssize_t wu, Py_ssize_t k, int flipped,
                    const float *wt, const float *bias, Py_ssize_t cout, float *out, Py_ssize_t oh_n,
                    Py_ssize_t ow_n) {
    Py_ssize_t ntaps = cin * k * k;
    Py_ssize_t *off = PyMem_RawMalloc(sizeof(Py_ssize_t) * (size_t)ntaps);
    if (!off) return -1;
    for (Py_ssize_t ci = 0, t = 0; ci < cin; ci++)
        for (Py_ssize_t kh = 0; kh < k; kh++)
            for (Py_ssize_t kw = 0; kw < k; kw++, t++)
                off[t] = ci * hu * wu + (flipped ? k - 1 - kh : kh) * wu + (flipped ? k - 1 - kw : kw);
    tap_conv(u, wu, off, ntaps, wt, bias, cout, out, oh_n, ow_n);
    PyMem_RawFree(off);
    return 0;
}

static PyObject *hp_conv2d(PyObject *self, PyObject *args) {
    PyObject *x_obj, *w_obj, *b_obj, *out_obj;
    Py_ssize_t stride, pad;
    if (!PyArg_ParseTuple(args, "OOOnnO:conv2d", &x_obj, &w_obj, &b_obj, &stride, &pad, &out_obj)) return NULL;
    if (stride < 1 || stride > 64 || pad < 0 || pad > 64) {
        PyErr_SetString(PyExc_ValueError, "stride must lie in 1..64 and padding in 0..64");
        return NULL;
    }
    ConvViews v;
    if (load_views(x_obj, w_obj, b_obj, out_obj, 0, &v) < 0) return NULL;
    Py_ssize_t cin = v.x.shape[0], h = v.x.shape[1], w = v.x.shape[2], k = v.weight.shape[2];
    Py_ssize_t hp = h + 2 * pad, wp = w + 2 * pad;
    Py_ssize_t oh_n = hp >= k ? (hp - k) / stride + 1 : 0, ow_n = wp >= k ? (wp - k) / stride + 1 : 0;
    if (oh_n < 1 || ow_n < 1 || v.out.shape[1] != oh_n || v.out.shape[2] != ow_n) {
        PyErr_Format(PyExc_ValueError, "conv2d output must be %zd x %zd, got %zd x %zd", oh_n, ow_n, v.out.shape[1],
                     v.out.shape[2]);
        release_views(&v);
        return NULL;
    }
    float *u = PyMem_RawMalloc(sizeof(float) * (size_t)(cin * hp * wp + U_SLACK));
    int status = u ? 0 : -1;
    if (u) {
        const float *bias = v.bias.obj ? v.bias.buf : NULL;
        FpState fp;
        Py_BEGIN_ALLOW_THREADS
        fp_enter(&fp);
        place_input(v.x.buf, cin, h, w, 1, pad, hp, wp, u);
        if (stride == 1)
            status = run_taps(u, cin, hp, wp, k, 0, v.weight.buf, bias, v.out.shape[0], v.out.buf, oh_n, ow_n);
        else
            strided_conv2d(u, cin, hp, wp, v.weight.buf, bias, v.out.shape[0], k, stride, v.out.buf, oh_n, ow_n);
        fp_leave(&fp);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(u);
    }
    release_views(&v);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *hp_conv_transpose2d(PyObject *self, PyObject *args) {
    PyObject *x_obj, *w_obj, *b_obj, *out_obj;
    Py_ssize_t stride, pad, out_pad;
    if (!PyArg_ParseTuple(args, "OOOnnnO:conv_transpose2d", &x_obj, &w_obj, &b_obj, &stride, &pad, &out_pad, &out_obj))
        return NULL;
    ConvViews v;
    if (load_views(x_obj, w_obj, b_obj, out_obj, 1, &v) < 0) return NULL;
    Py_ssize_t cin = v.x.shape[0], cout = v.out.shape[0], h = v.x.shape[1], w = v.x.shape[2], k = v.weight.shape[2];
    if (stride < 1 || stride > 64 || pad < 0 || pad > k - 1 || out_pad < 0 || out_pad >= stride) {
        PyErr_SetString(PyExc_ValueError, "conv_transpose2d needs stride in 1..64, padding in 0..kernel-1 and "
                                          "output_padding in 0..stride-1");
        release_views(&v);
        return NULL;
    }
    Py_ssize_t oh_n = (h - 1) * stride - 2 * pad + k + out_pad, ow_n = (w - 1) * stride - 2 * pad + k + out_pad;
    if (v.out.shape[1] != oh_n || v.out.shape[2] != ow_n) {
        PyErr_Format(PyExc_ValueError, "conv_transpose2d output must be %zd x %zd, got %zd x %zd", oh_n, ow_n,
                     v.out.shape[1], v.out.shape[2]);
        release_views(&v);
        return NULL;
    }
    /* u: x dilated by the stride, placed k - 1 - pad from the top/left; out = stride-1 conv of u, kernel flipped. */
    Py_ssize_t hu = oh_n + k - 1, wu = ow_n + k - 1, ntaps = cin * k * k;
    float *u = PyMem_RawMalloc(sizeof(float) * (size_t)(cin * hu * wu + U_SLACK));
    float *wt = PyMem_RawMalloc(sizeof(float) * (size_t)(cout * ntaps));
    int status = u && wt ? 0 : -1;
    if (status == 0) {
        const float *src = v.weight.buf, *bias = v.bias.obj ? v.bias.buf : NULL;
        FpState fp;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t co = 0; co < cout; co++)  /* (ci, co, kh, kw) -> (co, ci, kh, kw): taps in order per co */
            for (Py_ssize_t ci = 0; ci < cin; ci++)
                memcpy(wt + (co * cin + ci) * k * k, src + (ci * cout + co) * k * k, sizeof(float) * (size_t)(k * k));
        fp_enter(&fp);
        place_input(v.x.buf, cin, h, w, stride, k - 1 - pad, hu, wu, u);
        status = run_taps(u, cin, hu, wu, k, 1, wt, bias, cout, v.out.buf, oh_n, ow_n);
        fp_leave(&fp);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(wt);
    PyMem_RawFree(u);
    release_views(&v);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *hp_leaky_relu(PyObject *self, PyObject *args) {
    PyObject *x_obj;
    float slope;
    if (!PyArg_ParseTuple(args, "Of:leaky_relu", &x_obj, &slope)) return NULL;
    Py_buffer x;
    if (get_buffer(x_obj, &x, 'f', 1, 3, "x") < 0) return NULL;
    float *v = x.buf;
    Py_ssize_t n = x.len / 4;
    FpState fp;
    fp_enter(&fp);
    if (slope == 0.0f) {
        for (Py_ssize_t i = 0; i < n; i++) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
    } else {
        for (Py_ssize_t i = 0; i < n; i++) v[i] = v[i] > 0.0f ? v[i] : v[i] * slope;
    }
    fp_leave(&fp);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
}

static PyObject *hp_dequantize(PyObject *self, PyObject *args) {
    PyObject *sym_obj, *off_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO:dequantize", &sym_obj, &off_obj, &out_obj)) return NULL;
    Py_buffer sym, off, out;
    if (get_buffer(sym_obj, &sym, 'i', 0, 3, "symbols") < 0) return NULL;
    if (get_buffer(off_obj, &off, 'f', 0, 1, "offsets") < 0) {
        PyBuffer_Release(&sym);
        return NULL;
    }
    if (get_buffer(out_obj, &out, 'f', 1, 3, "out") < 0) {
        PyBuffer_Release(&off);
        PyBuffer_Release(&sym);
        return NULL;
    }
    PyObject *result = NULL;
    if (off.shape[0] != sym.shape[0] || out.len != sym.len) {
        PyErr_SetString(PyExc_ValueError, "symbols (C, H, W), offsets (C,) and out (C, H, W) disagree");
    } else {
        const int32_t *s = sym.buf;
        const float *o = off.buf;
        float *dst = out.buf;
        Py_ssize_t plane = sym.shape[1] * sym.shape[2];
        FpState fp;
        fp_enter(&fp);
        for (Py_ssize_t c = 0; c < sym.shape[0]; c++)
            for (Py_ssize_t i = c * plane; i < (c + 1) * plane; i++) dst[i] = (float)s[i] + o[c];
        fp_leave(&fp);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&off);
    PyBuffer_Release(&sym);
    return result;
}

/* CompressAI's GaussianConditional.build_indexes: s = max(scale, bound); index = the number of entries among the
 * table's first L - 1 that are < s, i.e. L - 1 - #{i < L - 1 : s <= table[i]} (NaN -> L - 1). */
static PyObject *hp_build_indexes(PyObject *self, PyObject *args) {
    PyObject *scales_obj, *table_obj, *out_obj;
    float bound;
    if (!PyArg_ParseTuple(args, "OOfO:build_indexes", &scales_obj, &table_obj, &bound, &out_obj)) return NULL;
    Py_buffer scales, table, out;
    if (get_buffer(scales_obj, &scales, 'f', 0, 3, "scales") < 0) return NULL;
    if (get_buffer(table_obj, &table, 'f', 0, 1, "scale_table") < 0) {
        PyBuffer_Release(&scales);
        return NULL;
    }
    if (get_buffer(out_obj, &out, 'i', 1, 3, "out") < 0) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&scales);
        return NULL;
    }
    PyObject *result = NULL;
    if (out.len != scales.len) {
        PyErr_SetString(PyExc_ValueError, "scales and out must have the same shape");
    } else {
        const float *s = scales.buf, *t = table.buf;
        int32_t *dst = out.buf;
        Py_ssize_t last = table.shape[0] - 1;
        FpState fp;
        fp_enter(&fp);
        for (Py_ssize_t i = 0; i < scales.len / 4; i++) {
            float v = s[i] < bound ? bound : s[i];
            int32_t index = (int32_t)last;
            for (Py_ssize_t j = 0; j < last; j++) index -= v <= t[j];
            dst[i] = index;
        }
        fp_leave(&fp);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&table);
    PyBuffer_Release(&scales);
    return result;
}

static PyMethodDef methods[] = {
    {"dequantize", hp_dequantize, METH_VARARGS,
     "dequantize(symbols, offsets, out) -> None\n\nout[c] = float(symbols[c]) + offsets[c] (int32 C,H,W; float32 C,)."},
    {"conv2d", hp_conv2d, METH_VARARGS,
     "conv2d(x, weight, bias, stride, padding, out) -> None\n\nfloat32 x (Ci,H,W), weight (Co,Ci,K,K), bias (Co,) or "
     "None, out (Co,OH,OW); fixed summation order (see the file's comment)."},
    {"conv_transpose2d", hp_conv_transpose2d, METH_VARARGS,
     "conv_transpose2d(x, weight, bias, stride, padding, output_padding, out) -> None\n\nfloat32 x (Ci,H,W), "
     "weight (Ci,Co,K,K), bias (Co,) or None, out (Co,OH,OW); fixed summation order."},
    {"leaky_relu", hp_leaky_relu, METH_VARARGS,
     "leaky_relu(x, slope) -> None\n\nIn place: x > 0 ? x : x * slope (slope 0: ReLU, +0.0)."},
    {"build_indexes", hp_build_indexes, METH_VARARGS,
     "build_indexes(scales, scale_table, bound, out) -> None\n\nCompressAI's GaussianConditional.build_indexes into "
     "int32 out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sc2edge.runtime._hyperprior",
    .m_doc = "Deterministic hyperprior side network (fixed-order IEEE float32) and scale-index selection.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__hyperprior(void) { return PyModule_Create(&module); }
