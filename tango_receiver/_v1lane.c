/* The fast lane: receive, check and store steady-state frames with no Python per frame, for two
 * wire forms: stream v1 (dimage-1.0, three parts or more) and the internal format (one JSON
 * object with htype "image", then one bitshuffle-LZ4 blob).
 *
 * Why it exists: at small frames most of the Python engine's time per frame is receiving (pyzmq
 * objects), JSON and h5py's call overhead; the frames of a running series
 * all look alike, so once Python has decoded one frame of a form (shape, type, encoding, chunk
 * header) this code takes the frames of that form that follow, in a run, and Python handles a run
 * as one item. See Internals.md, "The fast lane".
 *
 * It takes a message only when Python would decode it to the same image: a strict JSON subset
 * (flat objects; ASCII strings without escapes; integers; arrays of integers; true, false, null)
 * in which anything valid is also valid for Python's json, and everything else (the first frame
 * of a form, headers, ends, odd or broken messages) is handed back as received, for the Python
 * decoder and its error messages.
 *
 * It links to nothing: libzmq and libhdf5 are the ones pyzmq and h5py already loaded, found with
 * dlsym through their extension modules (``bind``), so there is no second copy of either.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "codecs/bslz4_table.h"

/* --- libzmq and libhdf5, as their stable ABIs declare them ---------------------------------- */
typedef struct { unsigned char _[64]; } __attribute__((aligned(8))) zmq_msg;
typedef struct { void *socket; int fd; short events; short revents; } zmq_pollitem;
#define ZMQ_POLLIN 1
#define ZMQ_DONTWAIT 1

static int (*zmq_msg_init_)(zmq_msg *);
static int (*zmq_msg_recv_)(zmq_msg *, void *, int);
static int (*zmq_msg_close_)(zmq_msg *);
static int (*zmq_msg_move_)(zmq_msg *, zmq_msg *);
static int (*zmq_msg_more_)(const zmq_msg *);
static void *(*zmq_msg_data_)(zmq_msg *);
static size_t (*zmq_msg_size_)(const zmq_msg *);
static int (*zmq_poll_)(zmq_pollitem *, int, long);
static int (*zmq_errno_)(void);
static int (*h5d_write_chunk)(int64_t, int64_t, uint32_t, const uint64_t *, size_t, const void *);

#define MAX_RANK 8
#define MAX_NAME 32        /* type and encoding strings: "uint32", "bs32-lz4<" */
#define MAX_SAFE_INT 9007199254740991LL

/* --- Part: one ZMQ message part, readable as a buffer, freed with its last reference ---------- */
typedef struct {
    PyObject_HEAD
    zmq_msg msg;
} Part;

static int part_getbuffer(PyObject *obj, Py_buffer *view, int flags) {
    Part *self = (Part *)obj;
    return PyBuffer_FillInfo(view, obj, zmq_msg_data_(&self->msg),
                             (Py_ssize_t)zmq_msg_size_(&self->msg), 1, flags);
}

static Py_ssize_t part_length(PyObject *obj) {
    return (Py_ssize_t)zmq_msg_size_(&((Part *)obj)->msg);
}

static void part_dealloc(PyObject *obj) {
    zmq_msg_close_(&((Part *)obj)->msg);
    Py_TYPE(obj)->tp_free(obj);
}

static PyBufferProcs part_as_buffer = {part_getbuffer, NULL};
static PySequenceMethods part_as_sequence = {.sq_length = part_length};

static PyTypeObject PartType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tango_receiver._v1lane.Part",
    .tp_doc = "One message part as received, without a copy (like zmq.Frame).",
    .tp_basicsize = sizeof(Part),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = part_dealloc,
    .tp_as_buffer = &part_as_buffer,
    .tp_as_sequence = &part_as_sequence,
};

/* Takes over ``msg`` (zmq_msg_move: no copy of the data), which is left empty: closing it again
 * is harmless. */
static PyObject *part_new(zmq_msg *msg) {
    Part *part = PyObject_New(Part, &PartType);
    if (part == NULL)
        return NULL;
    zmq_msg_init_(&part->msg);
    zmq_msg_move_(&part->msg, msg);
    return (PyObject *)part;
}

/* --- the JSON subset ------------------------------------------------------------------------- */
typedef struct { const char *p, *end; } scan;
typedef struct { const char *s; size_t n; } text;

static void skip_ws(scan *sc) {
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static int eat(scan *sc, char c) {
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == c) {
        sc->p++;
        return 1;
    }
    return 0;
}

static int scan_string(scan *sc, text *out) {
    skip_ws(sc);
    if (sc->p >= sc->end || *sc->p != '"')
        return 0;
    const char *start = ++sc->p;
    while (sc->p < sc->end && *sc->p != '"') {
        unsigned char c = (unsigned char)*sc->p;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return 0;
        sc->p++;
    }
    if (sc->p >= sc->end)
        return 0;
    out->s = start;
    out->n = (size_t)(sc->p - start);
    sc->p++;
    return 1;
}

/* JSON's integer grammar (no leading zeros, no fraction or exponent), within 2**53. */
static int scan_int(scan *sc, long long *out) {
    skip_ws(sc);
    int negative = sc->p < sc->end && *sc->p == '-';
    if (negative)
        sc->p++;
    const char *digits = sc->p;
    long long value = 0;
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') {
        if (sc->p - digits >= 16)
            return 0;
        value = value * 10 + (*sc->p++ - '0');
    }
    size_t n = (size_t)(sc->p - digits);
    if (n == 0 || (n > 1 && *digits == '0') || value > MAX_SAFE_INT)
        return 0;
    if (sc->p < sc->end && (*sc->p == '.' || *sc->p == 'e' || *sc->p == 'E'))
        return 0;
    *out = negative ? -value : value;
    return 1;
}

static int scan_word(scan *sc, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(sc->end - sc->p) >= n && memcmp(sc->p, word, n) == 0) {
        sc->p += n;
        return 1;
    }
    return 0;
}

enum { V_NONE, V_STRING, V_INT, V_INTS, V_OTHER };

typedef struct {
    int kind;
    text str;
    long long num;
    long long ints[MAX_RANK];
    int nints;
} value;

static int scan_value(scan *sc, value *v) {
    skip_ws(sc);
    if (sc->p >= sc->end)
        return 0;
    char c = *sc->p;
    if (c == '"') {
        v->kind = V_STRING;
        return scan_string(sc, &v->str);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        v->kind = V_INT;
        return scan_int(sc, &v->num);
    }
    if (c == '[') {
        sc->p++;
        v->kind = V_INTS;
        v->nints = 0;
        if (eat(sc, ']'))
            return 1;
        do {
            long long item;
            if (v->nints == MAX_RANK || !scan_int(sc, &item))
                return 0;
            v->ints[v->nints++] = item;
        } while (eat(sc, ','));
        return eat(sc, ']');
    }
    v->kind = V_OTHER;
    return scan_word(sc, "true") || scan_word(sc, "false") || scan_word(sc, "null");
}

/* A flat object; the values of ``keys`` are kept in ``out`` (V_NONE: absent). A key read twice is
 * refused: Python keeps the last, and this code must never disagree with it. */
static int scan_object(const char *data, size_t size, const char *const *keys, value *out, int nkeys) {
    scan sc = {data, data + size};
    for (int i = 0; i < nkeys; i++)
        out[i].kind = V_NONE;
    if (!eat(&sc, '{'))
        return 0;
    if (!eat(&sc, '}')) {
        do {
            text key;
            value v;
            if (!scan_string(&sc, &key) || !eat(&sc, ':') || !scan_value(&sc, &v))
                return 0;
            for (int i = 0; i < nkeys; i++) {
                if (strlen(keys[i]) == key.n && memcmp(keys[i], key.s, key.n) == 0) {
                    if (out[i].kind != V_NONE)
                        return 0;
                    out[i] = v;
                }
            }
        } while (eat(&sc, ','));
        if (!eat(&sc, '}'))
            return 0;
    }
    skip_ws(&sc);
    return sc.p == sc.end;
}

static int text_is(text t, const char *s) {
    return strlen(s) == t.n && memcmp(s, t.s, t.n) == 0;
}

/* --- Lane: the form it takes, and the receive loop -------------------------------------------- */
typedef struct {
    long long shape[MAX_RANK];  /* as the message gives it (stream v1: [x, y]) */
    int rank;
    char type[MAX_NAME], encoding[MAX_NAME];  /* encoding: the internal format's compression */
    unsigned char header[12];
} form;

typedef struct {
    PyObject_HEAD
    int internal;               /* the internal format's messages, else stream v1's */
    int has_form;
    form form;
    long long n_blocks, tail;   /* what the chunk's block table holds, for the form's header */
} Lane;

/* What a message is, read without the GIL. */
typedef struct {
    size_t first, nparts;       /* its parts in the receive buffer */
    size_t blob;                /* which of its parts is the chunk */
    int image;                  /* an image whose description could be read */
    int fast;                   /* ... of the lane's form, with a sound chunk */
    long long frame, number;    /* its frame, and its place in the stream (msg_number) */
    form form;                  /* its description (image only) */
} message;

static int copy_name(char *dst, text t) {
    if (t.n >= MAX_NAME)
        return 0;
    memcpy(dst, t.s, t.n);
    dst[t.n] = 0;
    return 1;
}

static int chunk_sound(const Lane *lane, const unsigned char *chunk, size_t size) {
    if (size < 12 || memcmp(chunk, lane->form.header, 12) != 0)
        return 0;
    size_t pos;  /* the blocks and the raw tail end where the chunk ends, as check_chunk asks */
    if (!bslz4_walk(chunk, size, lane->n_blocks, &pos))
        return 0;
    return pos + (size_t)lane->tail == size;
}

/* The description of an image (``shape`` an array of integers, ``type`` and ``encoding``
 * strings) as a form, and the chunk's header: 0 where it cannot be one. */
static int describe(const value *shape, const value *type, text encoding, zmq_msg *blob, form *f) {
    memset(f, 0, sizeof(form));  /* compared whole with the lane's form */
    if (shape->kind != V_INTS || shape->nints < 1 || type->kind != V_STRING ||
        !copy_name(f->type, type->str) || !copy_name(f->encoding, encoding) ||
        zmq_msg_size_(blob) < 12)
        return 0;
    f->rank = shape->nints;
    memcpy(f->shape, shape->ints, sizeof(long long) * (size_t)shape->nints);
    memcpy(f->header, zmq_msg_data_(blob), 12);
    return 1;
}

static const char *const V1_HEAD_KEYS[] = {"htype", "frame"};
static const char *const V1_DESC_KEYS[] = {"shape", "type", "encoding"};

/* Stream v1: dimage-1.0, its description dimage_d-1.0 ([x, y]), the chunk, and parts Python
 * does not read. Its place in the stream is frame + 1. */
static int read_v1(zmq_msg *parts, message *m) {
    if (m->nparts < 3)
        return 0;
    zmq_msg *head = &parts[m->first], *desc = head + 1;
    value h[2], d[3];
    if (!scan_object(zmq_msg_data_(head), zmq_msg_size_(head), V1_HEAD_KEYS, h, 2) ||
        h[0].kind != V_STRING || !text_is(h[0].str, "dimage-1.0") || h[1].kind != V_INT ||
        h[1].num < 0)
        return 0;
    if (!scan_object(zmq_msg_data_(desc), zmq_msg_size_(desc), V1_DESC_KEYS, d, 3) ||
        d[0].kind != V_INTS || d[0].nints != 2 || !(d[2].kind == V_STRING || d[2].kind == V_NONE))
        return 0;
    text lt = {"<", 1};  /* Python's default when no encoding is given */
    m->blob = 2;
    m->frame = h[1].num;
    m->number = m->frame + 1;
    return describe(&d[0], &d[1], d[2].kind == V_NONE ? lt : d[2].str, head + 2, &m->form);
}

static const char *const INTERNAL_KEYS[] = {"htype", "msg_number", "frame", "shape", "type",
                                            "compression", "channels", "discard"};

/* The internal format: one JSON object, then exactly one blob (Detector.decode_image); a
 * multichannel image (``channels``), and one that says whether to discard it, are Python's. */
static int read_internal(zmq_msg *parts, message *m) {
    if (m->nparts != 2)
        return 0;
    zmq_msg *head = &parts[m->first];
    value h[8];
    if (!scan_object(zmq_msg_data_(head), zmq_msg_size_(head), INTERNAL_KEYS, h, 8) ||
        h[0].kind != V_STRING || !text_is(h[0].str, "image") || h[1].kind != V_INT ||
        h[1].num < 0 || h[2].kind != V_INT || h[2].num < 0 || h[5].kind != V_STRING ||
        h[6].kind != V_NONE || h[7].kind != V_NONE)
        return 0;
    m->blob = 1;
    m->number = h[1].num;
    m->frame = h[2].num;
    return describe(&h[3], &h[4], h[5].str, head + 1, &m->form);
}

static void classify(const Lane *lane, zmq_msg *parts, message *m) {
    m->fast = 0;
    m->image = lane->internal ? read_internal(parts, m) : read_v1(parts, m);
    if (!m->image)
        return;
    zmq_msg *blob = &parts[m->first + m->blob];
    m->fast = lane->has_form && memcmp(&m->form, &lane->form, sizeof(form)) == 0 &&
              chunk_sound(lane, zmq_msg_data_(blob), zmq_msg_size_(blob));
}

static int lane_init(PyObject *obj, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"internal", NULL};
    int internal = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p", keywords, &internal))
        return -1;
    ((Lane *)obj)->internal = internal;
    return 0;
}

static PyObject *lane_set_form(PyObject *obj, PyObject *args) {
    Lane *self = (Lane *)obj;
    long long n_blocks, tail;
    PyObject *shape;
    const char *type, *encoding;
    Py_buffer header;
    if (!PyArg_ParseTuple(args, "O!ssy*LL", &PyTuple_Type, &shape, &type, &encoding, &header,
                          &n_blocks, &tail))
        return NULL;
    form f;
    memset(&f, 0, sizeof(form));
    text t = {type, strlen(type)}, e = {encoding, strlen(encoding)};
    Py_ssize_t rank = PyTuple_GET_SIZE(shape);
    int ok = header.len == 12 && n_blocks >= 0 && tail >= 0 && rank >= 1 && rank <= MAX_RANK &&
             copy_name(f.type, t) && copy_name(f.encoding, e);
    if (ok)
        memcpy(f.header, header.buf, 12);
    PyBuffer_Release(&header);
    for (Py_ssize_t i = 0; ok && i < rank; i++) {
        f.shape[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, i));
        if (f.shape[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "form not representable by the lane");
        return NULL;
    }
    f.rank = (int)rank;
    self->form = f;
    self->n_blocks = n_blocks;
    self->tail = tail;
    self->has_form = 1;
    Py_RETURN_NONE;
}

/* The receive buffer: every part of every message taken in one call. */
typedef struct {
    zmq_msg *parts;
    size_t nparts, cap;
    message *msgs;
    size_t nmsgs;
} batch;

/* Messages are moved with zmq_msg_move, as libzmq asks, never by copying their bytes. */
static int batch_grow(batch *b) {
    size_t cap = b->cap ? 2 * b->cap : 256;
    zmq_msg *parts = PyMem_RawMalloc(cap * sizeof(zmq_msg));
    if (parts == NULL)
        return 0;
    for (size_t i = 0; i < b->nparts; i++) {
        zmq_msg_init_(&parts[i]);
        zmq_msg_move_(&parts[i], &b->parts[i]);
        zmq_msg_close_(&b->parts[i]);
    }
    PyMem_RawFree(b->parts);
    b->parts = parts;
    b->cap = cap;
    return 1;
}

/* Messages waiting now, after up to ``timeout_ms`` for the first; no GIL held. Returns -1 on an
 * error that is not "nothing more" (errno in ``*err``). A message is atomic in ZMQ: once its first
 * part is there, so are the others. */
static int take(void *socket, long timeout_ms, size_t max_msgs, size_t max_bytes, batch *b, int *err) {
    zmq_pollitem item = {socket, 0, ZMQ_POLLIN, 0};
    int ready = zmq_poll_(&item, 1, timeout_ms);
    if (ready <= 0) {
        *err = ready < 0 ? zmq_errno_() : 0;
        return ready;
    }
    size_t bytes = 0;
    while (b->nmsgs < max_msgs && bytes < max_bytes) {
        message *m = &b->msgs[b->nmsgs];
        m->first = b->nparts;
        m->nparts = 0;
        for (int more = 1; more;) {
            if (b->nparts == b->cap && !batch_grow(b)) {
                *err = ENOMEM;
                return -1;
            }
            zmq_msg *part = &b->parts[b->nparts];
            zmq_msg_init_(part);
            int n = zmq_msg_recv_(part, socket, ZMQ_DONTWAIT);
            if (n < 0) {
                zmq_msg_close_(part);
                *err = zmq_errno_();
                if (m->nparts == 0 && *err == EAGAIN)
                    return 0;
                if (m->nparts)  /* cannot happen with ZMQ's atomic messages: keep what came */
                    b->nmsgs++;
                return -1;
            }
            b->nparts++;
            m->nparts++;
            bytes += (size_t)n;
            more = zmq_msg_more_(part);
        }
        b->nmsgs++;
    }
    return 0;
}

static PyObject *parts_list(zmq_msg *parts, size_t n) {
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *part = part_new(&parts[i]);
        if (part == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, part);
    }
    return list;
}

/* (parts, candidate): a message for the Python decoder; candidate is (shape, type, encoding,
 * header) when it is an image whose form Python may hand to ``set_form``. */
static PyObject *slow_item(batch *b, message *m) {
    PyObject *parts = parts_list(&b->parts[m->first], m->nparts);
    if (parts == NULL)
        return NULL;
    if (!m->image)
        return Py_BuildValue("(NO)", parts, Py_None);
    PyObject *shape = PyTuple_New(m->form.rank);
    for (int i = 0; shape != NULL && i < m->form.rank; i++) {
        PyObject *n = PyLong_FromLongLong(m->form.shape[i]);
        if (n == NULL)
            Py_CLEAR(shape);
        else
            PyTuple_SET_ITEM(shape, i, n);
    }
    if (shape == NULL) {
        Py_DECREF(parts);
        return NULL;
    }
    return Py_BuildValue("(N(Nssy#))", parts, shape, m->form.type, m->form.encoding,
                         (const char *)m->form.header, (Py_ssize_t)12);
}

/* (first frame, msg_number - frame, stride, chunks, wire bytes of each frame, head parts or
 * None): frames first, first + stride, ... of the lane's form, numbered in step. The internal
 * format's head parts are kept, so that a frame is forwarded as it came; the other parts are
 * closed. */
static PyObject *run_item(const Lane *lane, batch *b, size_t start, size_t count, long long stride) {
    PyObject *chunks = PyList_New((Py_ssize_t)count), *wires = PyList_New((Py_ssize_t)count);
    PyObject *heads = lane->internal ? PyList_New((Py_ssize_t)count) : Py_NewRef(Py_None);
    if (chunks == NULL || wires == NULL || heads == NULL)
        goto fail;
    for (size_t i = 0; i < count; i++) {
        message *m = &b->msgs[start + i];
        long long size = 0;
        for (size_t p = 0; p < m->nparts; p++)
            size += (long long)zmq_msg_size_(&b->parts[m->first + p]);
        PyObject *nbytes = PyLong_FromLongLong(size);
        PyObject *chunk = part_new(&b->parts[m->first + m->blob]);
        PyObject *head = lane->internal ? part_new(&b->parts[m->first]) : NULL;
        if (nbytes == NULL || chunk == NULL || (lane->internal && head == NULL)) {
            Py_XDECREF(nbytes);
            Py_XDECREF(chunk);
            Py_XDECREF(head);
            goto fail;
        }
        PyList_SET_ITEM(wires, (Py_ssize_t)i, nbytes);
        PyList_SET_ITEM(chunks, (Py_ssize_t)i, chunk);
        if (head != NULL)
            PyList_SET_ITEM(heads, (Py_ssize_t)i, head);
    }
    message *m = &b->msgs[start];
    return Py_BuildValue("(LLLNNN)", m->frame, m->number - m->frame, stride, chunks, wires, heads);
fail:
    Py_XDECREF(chunks);
    Py_XDECREF(wires);
    Py_XDECREF(heads);
    return NULL;
}

/* The step between the frames of a run that starts at message ``i``, from its first two (0: no
 * run of two). Several workers each get every n-th message of the stream (ZMQ deals them out in
 * turn), so their runs step by n, and the engine puts the workers' runs together again. */
static long long run_stride(const batch *b, size_t i) {
    const message *m = &b->msgs[i], *next = m + 1;
    if (!m->fast || i + 1 >= b->nmsgs || !next->fast)
        return 0;
    long long stride = next->frame - m->frame;
    return stride >= 1 && next->number - m->number == stride ? stride : 0;
}

static PyObject *lane_receive(PyObject *obj, PyObject *args) {
    Lane *self = (Lane *)obj;
    unsigned long long address;
    long timeout_ms;
    Py_ssize_t max_msgs, max_bytes;
    if (!PyArg_ParseTuple(args, "Klnn", &address, &timeout_ms, &max_msgs, &max_bytes))
        return NULL;
    if (max_msgs < 1 || max_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "max_messages and max_bytes must be positive");
        return NULL;
    }
    batch b = {NULL, 0, 0, PyMem_RawCalloc((size_t)max_msgs, sizeof(message)), 0};
    if (b.msgs == NULL)
        return PyErr_NoMemory();
    int err = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = take((void *)(uintptr_t)address, timeout_ms, (size_t)max_msgs, (size_t)max_bytes, &b, &err);
    for (size_t i = 0; i < b.nmsgs; i++)
        classify(self, b.parts, &b.msgs[i]);
    Py_END_ALLOW_THREADS
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < b.nmsgs;) {
        size_t n = 1;
        message *m = &b.msgs[i];
        long long stride = run_stride(&b, i);
        if (stride)  /* n * stride stays below 2**63: both are bounded (64 messages, 2**53) */
            while (i + n < b.nmsgs && b.msgs[i + n].fast &&
                   b.msgs[i + n].frame == m->frame + (long long)n * stride &&
                   b.msgs[i + n].number == m->number + (long long)n * stride)
                n++;
        PyObject *item = m->fast ? run_item(self, &b, i, n, stride ? stride : 1) : slow_item(&b, m);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
        i += n;
    }
    for (size_t i = 0; i < b.nparts; i++)  /* the other parts, and those handed out (empty now) */
        zmq_msg_close_(&b.parts[i]);
    PyMem_RawFree(b.parts);
    PyMem_RawFree(b.msgs);
    /* an error after messages were taken: they go first, and the next call meets it again */
    if (out != NULL && rc < 0 && b.nmsgs == 0 && err != EINTR && err != EAGAIN) {
        Py_DECREF(out);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return out;
}

static PyMethodDef lane_methods[] = {
    {"set_form", lane_set_form, METH_VARARGS,
     "set_form(shape, type, encoding, header, n_blocks, tail): take the frames of this form "
     "from now on (Python decoded one and found it sound)."},
    {"receive", lane_receive, METH_VARARGS,
     "receive(socket_address, timeout_ms, max_messages, max_bytes) -> list of items: "
     "(parts, candidate) for the Python decoder, or (first_frame, number_offset, stride, chunks, "
     "wire_bytes_each, head_parts) for a run of frames of the lane's form."},
    {NULL}};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tango_receiver._v1lane.Lane",
    .tp_doc = "Lane(internal=False): the frames of one form, stream v1's or the internal format's, "
              "taken without Python per frame.",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,  /* zero-filled: a new lane has no form and takes nothing */
    .tp_init = lane_init,
    .tp_methods = lane_methods,
};

/* --- writing a run --------------------------------------------------------------------------- */
static PyObject *write_chunks(PyObject *module, PyObject *args) {
    long long dataset, first;
    int rank;
    PyObject *chunks;
    if (!PyArg_ParseTuple(args, "LiLO!", &dataset, &rank, &first, &PyList_Type, &chunks))
        return NULL;
    if (rank < 1 || rank > MAX_RANK || first < 0) {
        PyErr_SetString(PyExc_ValueError, "rank must be 1..8 and the first index not negative");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(chunks), got = 0;
    Py_buffer *views = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    if (views == NULL)
        return PyErr_NoMemory();
    for (; got < n; got++)
        if (PyObject_GetBuffer(PyList_GET_ITEM(chunks, got), &views[got], PyBUF_SIMPLE) < 0)
            break;
    Py_ssize_t written = 0;
    int err = 0;
    if (got == n) {
        Py_BEGIN_ALLOW_THREADS
        uint64_t offset[MAX_RANK] = {0};
        for (; written < n; written++) {
            offset[0] = (uint64_t)(first + written);
            errno = 0;
            if (h5d_write_chunk(dataset, 0, 0, offset, (size_t)views[written].len,
                                views[written].buf) < 0) {
                err = errno;
                break;
            }
        }
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    if (got < n)
        return NULL;
    return Py_BuildValue("(ni)", written, err);
}

/* --- binding to the loaded libraries --------------------------------------------------------- */
static int resolve(void *handle, const char *name, void **out) {
    *out = dlsym(handle, name);
    if (*out == NULL) {
        PyErr_Format(PyExc_ImportError, "%s not found: %s", name, dlerror());
        return 0;
    }
    return 1;
}

static PyObject *bind(PyObject *module, PyObject *args) {
    const char *zmq_path, *h5_path;
    if (!PyArg_ParseTuple(args, "ss", &zmq_path, &h5_path))
        return NULL;
    void *zmq = dlopen(zmq_path, RTLD_NOW | RTLD_NOLOAD), *h5 = dlopen(h5_path, RTLD_NOW | RTLD_NOLOAD);
    if (zmq == NULL || h5 == NULL) {
        PyErr_Format(PyExc_ImportError, "pyzmq or h5py not loaded: %s", dlerror());
        return NULL;
    }
    int ok = resolve(zmq, "zmq_msg_init", (void **)&zmq_msg_init_) &&
             resolve(zmq, "zmq_msg_recv", (void **)&zmq_msg_recv_) &&
             resolve(zmq, "zmq_msg_close", (void **)&zmq_msg_close_) &&
             resolve(zmq, "zmq_msg_move", (void **)&zmq_msg_move_) &&
             resolve(zmq, "zmq_msg_more", (void **)&zmq_msg_more_) &&
             resolve(zmq, "zmq_msg_data", (void **)&zmq_msg_data_) &&
             resolve(zmq, "zmq_msg_size", (void **)&zmq_msg_size_) &&
             resolve(zmq, "zmq_poll", (void **)&zmq_poll_) &&
             resolve(zmq, "zmq_errno", (void **)&zmq_errno_) &&
             resolve(h5, "H5Dwrite_chunk", (void **)&h5d_write_chunk);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(pyzmq_extension_path, h5py_extension_path): use the libzmq and libhdf5 those loaded."},
    {"write_chunks", write_chunks, METH_VARARGS,
     "write_chunks(dataset_id, rank, first_index, chunks) -> (written, errno): H5Dwrite_chunk of "
     "each chunk at frame first_index + i; the caller holds h5py's lock."},
    {NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_v1lane", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__v1lane(void) {
    if (PyType_Ready(&PartType) < 0 || PyType_Ready(&LaneType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&LaneType);
    if (PyModule_AddObject(module, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(&LaneType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
