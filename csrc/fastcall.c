/* graphc._fastcall: a compiled function's call for one signature, in C.

   A FastCall holds the generated module's packed entry (`int graphc_entry_packed(const
   graphc_slot *a, void *ws)`, codegen/c.py) and a compact description of the signature: per
   positional argument the exact Python type it must be ('f': float, 'i': int in int64's
   range, 'a': an array of the exact type, shape and buffer format given, in C order) and the
   entry slot it goes to, the other slots of the entry (fixed addresses, or offsets into the
   workspace), the 0-d outputs read back from the workspace, and the output tree. A call that
   matches runs the entry and returns Python scalars in that tree; any other call (keywords,
   other types, counts or shapes, the NaN locator on, a nonzero return code) goes to
   `general`, the Python path, which converts, retraces or raises the proper GraphcError.
   The workspace is on the C stack (a compiled function's: thread-safe), or a fixed one (a
   train step's arena, which its caller does not share between threads). A TapeCall (below)
   does the same for a reverse tape's signature of float64 arrays and floats, with fresh
   arrays out. graphc/fastcall.py builds and loads it; callplan.py and train.py decide when
   it applies. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#ifndef GRAPHC_FASTCALL_HASH
#define GRAPHC_FASTCALL_HASH ""
#endif

#define WS_MAX 8192         /* bytes: larger workspaces keep the Python plan */
#define SLOTS_MAX 512
#define ARRAYS_MAX 32       /* array arguments (their buffer views live on the C stack) */

typedef union { double d; int64_t i; void *p; } graphc_slot;
typedef int (*packed_fn)(const graphc_slot *, void *);

enum { TREE_LEAF = -1, TREE_NONE = -2 };    /* tree codes; 2n: a tuple of n, 2n+1: a list */

/* What a call type adds to the head below: its run (1: *result is the outputs; 0: not this
   signature, the general path decides; -1: a Python error is set), and the offsets of the
   Python objects it owns and of the PyMem blocks it frees (each list ends at 0). */
typedef struct {
    int (*run)(void *self, PyObject *const *args, PyObject **result);
    Py_ssize_t objects[4];
    Py_ssize_t blocks[10];
} CallKind;

/* The head both call types start with: one vectorcall, traverse, clear and dealloc for both
   (call_* below). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    const CallKind *kind;
    Py_ssize_t n_args;
    PyObject *general;          /* the Python path, called with the same arguments */
    PyObject *nans;             /* graphc.nans.STATE: {'on': bool} */
    PyObject *keep;             /* whatever owns the fixed addresses */
    PyObject *array_type;       /* the exact type of 'a' arguments (numpy.ndarray) */
    char *in_kinds;             /* per argument: 'f' float, 'i' int or 'a' array */
    int *tree;                  /* the output tree in preorder */
} CallHead;

typedef struct {
    CallHead head;
    unsigned long long entry;   /* packed_fn; settable: a tiered build swaps modules */
    Py_ssize_t n_slots, n_outs, n_tree, ws_bytes;
    int release_gil;            /* the kernels loop: other threads may run meanwhile */
    Py_ssize_t *arg_slot;       /* per argument: its slot of the entry */
    Py_ssize_t *array_dims;     /* per argument: where its ndim and shape start in dims */
    Py_ssize_t *dims;           /* per 'a' argument: ndim, then the shape */
    PyObject *formats;          /* per argument: its buffer format (bytes), or None */
    char *ws_fixed;             /* the fixed workspace, or NULL: one on the C stack */
    graphc_slot *fixed;         /* slots after the arguments: an address, */
    Py_ssize_t *ws_offset;      /* or (>= 0) an offset into the workspace */
    Py_ssize_t *out_offset;     /* per output: its offset in the workspace, */
    char *out_kind;             /* and its C type: 'd' double, 'f' float, 'q' int64, 'i' int32, '?' bool */
} FastCall;

static PyObject *str_on;

static PyObject *read_output(char kind, const char *at)
{
    switch (kind) {
    case 'd': { double v; memcpy(&v, at, sizeof v); return PyFloat_FromDouble(v); }
    case 'f': { float v; memcpy(&v, at, sizeof v); return PyFloat_FromDouble(v); }
    case 'q': { int64_t v; memcpy(&v, at, sizeof v); return PyLong_FromLongLong(v); }
    case 'i': { int32_t v; memcpy(&v, at, sizeof v); return PyLong_FromLong(v); }
    default: return PyBool_FromLong(*(const unsigned char *)at);
    }
}

/* The subtree at tree[*pos], taking the leaves from leaves[*leaf] on (their references pass
   to the tree; on failure the caller releases the leaves not yet taken). */
static PyObject *build_tree(const int *tree, PyObject **leaves, Py_ssize_t *pos,
                            Py_ssize_t *leaf)
{
    int code = tree[(*pos)++];
    if (code == TREE_LEAF) {
        PyObject *v = leaves[*leaf];
        leaves[(*leaf)++] = NULL;
        return v;
    }
    if (code == TREE_NONE)
        Py_RETURN_NONE;
    Py_ssize_t n = code >> 1;
    PyObject *node = (code & 1) ? PyList_New(n) : PyTuple_New(n);
    if (node == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *child = build_tree(tree, leaves, pos, leaf);
        if (child == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        if (code & 1)
            PyList_SET_ITEM(node, k, child);
        else
            PyTuple_SET_ITEM(node, k, child);
    }
    return node;
}

/* 1: *view is x's buffer (the caller releases it); 0: x is not an exact `array_type` with a
   C-contiguous buffer (the general path converts it). */
static int array_view(PyObject *x, PyObject *array_type, Py_buffer *view)
{
    if (Py_TYPE(x) != (PyTypeObject *)array_type)
        return 0;
    if (PyObject_GetBuffer(x, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* 1: *result is the outputs; 0: the call is not of this signature, or failed in C (the
   general path decides); -1: a Python error is set. */
static int run(void *callable, PyObject *const *args, PyObject **result)
{
    const FastCall *self = callable;
    graphc_slot slots[SLOTS_MAX];
    Py_buffer views[ARRAYS_MAX];
    Py_ssize_t n_views = 0;
    _Alignas(64) char stack_ws[WS_MAX];
    char *ws = self->ws_fixed ? self->ws_fixed : stack_ws;
    for (Py_ssize_t k = 0; k < self->n_slots; k++) {
        Py_ssize_t off = self->ws_offset[k];
        slots[k] = self->fixed[k];
        if (off >= 0)
            slots[k].p = ws + off;
    }
    for (Py_ssize_t k = 0; k < self->head.n_args; k++) {
        PyObject *x = args[k];
        graphc_slot *slot = &slots[self->arg_slot[k]];
        if (self->head.in_kinds[k] == 'f') {
            if (!PyFloat_CheckExact(x))
                goto miss;
            slot->d = PyFloat_AS_DOUBLE(x);
        } else if (self->head.in_kinds[k] == 'i') {
            int overflow;
            if (!PyLong_CheckExact(x))
                goto miss;
            slot->i = PyLong_AsLongLongAndOverflow(x, &overflow);
            if (overflow)
                goto miss;
        } else {
            if (!array_view(x, self->head.array_type, &views[n_views]))
                goto miss;
            Py_buffer *v = &views[n_views++];
            const Py_ssize_t *dims = self->dims + self->array_dims[k];
            const char *format = PyBytes_AS_STRING(PyTuple_GET_ITEM(self->formats, k));
            if (v->ndim != dims[0] || strcmp(v->format ? v->format : "B", format) != 0)
                goto miss;
            for (Py_ssize_t d = 0; d < dims[0]; d++)
                if (v->shape[d] != dims[1 + d])
                    goto miss;
            slot->p = v->buf;
        }
    }
    packed_fn fn = (packed_fn)(uintptr_t)self->entry;
    int rc;
    if (self->release_gil) {
        Py_BEGIN_ALLOW_THREADS
        rc = fn(slots, ws);
        Py_END_ALLOW_THREADS
    } else {
        rc = fn(slots, ws);
    }
    while (n_views)
        PyBuffer_Release(&views[--n_views]);
    if (rc)
        return 0;
    PyObject *leaves[SLOTS_MAX];
    for (Py_ssize_t j = 0; j < self->n_outs; j++) {
        leaves[j] = read_output(self->out_kind[j], ws + self->out_offset[j]);
        if (leaves[j] == NULL) {
            while (j--)
                Py_DECREF(leaves[j]);
            return -1;
        }
    }
    Py_ssize_t pos = 0, leaf = 0;
    *result = build_tree(self->head.tree, leaves, &pos, &leaf);
    for (Py_ssize_t j = 0; j < self->n_outs; j++)
        Py_XDECREF(leaves[j]);       /* only on failure: the tree took the others */
    return *result == NULL ? -1 : 1;
miss:
    while (n_views)
        PyBuffer_Release(&views[--n_views]);
    return 0;
}

/* Sequences of Python ints into a C array of n elements. */
static int int_items(PyObject *seq, Py_ssize_t n, const char *what, long long *out)
{
    if (!PyTuple_Check(seq) || PyTuple_GET_SIZE(seq) != n) {
        PyErr_Format(PyExc_ValueError, "FastCall: %s must be a tuple of %zd ints", what, n);
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        out[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(seq, k));
        if (out[k] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static void *alloc_array(Py_ssize_t n, size_t size)
{
    void *p = PyMem_Calloc(n ? (size_t)n : 1, size);
    if (p == NULL)
        PyErr_NoMemory();
    return p;
}

/* The output tree (a tuple of codes in preorder) into out, checked to be well formed: exactly
   one subtree, n_leaves leaves. buf: scratch of as many long longs. */
static int tree_codes(PyObject *tree, Py_ssize_t n_leaves, long long *buf, int *out)
{
    Py_ssize_t n_tree = PyTuple_GET_SIZE(tree);
    if (int_items(tree, n_tree, "tree", buf) < 0)
        return -1;
    Py_ssize_t open = 1, leaves = 0;
    for (Py_ssize_t k = 0; k < n_tree; k++) {
        if (open <= 0 || buf[k] < TREE_NONE || buf[k] > 2 * (long long)SLOTS_MAX + 1) {
            open = -1;          /* malformed */
            break;
        }
        out[k] = (int)buf[k];
        leaves += buf[k] == TREE_LEAF;
        open += (buf[k] >= 0 ? buf[k] >> 1 : 0) - 1;
    }
    if (open != 0 || leaves != n_leaves) {
        PyErr_SetString(PyExc_ValueError, "FastCall: malformed output tree");
        return -1;
    }
    return 0;
}

/* The call of either type: its run on exactly n_args positional arguments while the NaN
   locator (nans["on"]) is off, else `general`. */
static PyObject *call_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    CallHead *self = (CallHead *)callable;
    if (PyVectorcall_NARGS(nargsf) == self->n_args
            && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)) {
        PyObject *on = PyDict_GetItemWithError(self->nans, str_on);
        if (on == NULL && PyErr_Occurred())
            return NULL;
        if (on == NULL || on == Py_False) {
            PyObject *result;
            int status = self->kind->run(self, args, &result);
            if (status)
                return status > 0 ? result : NULL;
        }
    }
    return PyObject_Vectorcall(self->general, args, nargsf, kwnames);
}

#define FIELD(self, offset) ((char *)(self) + (offset))

static int call_traverse(CallHead *self, visitproc visit, void *arg)
{
    Py_VISIT(self->general);
    Py_VISIT(self->nans);
    Py_VISIT(self->keep);
    Py_VISIT(self->array_type);
    for (const Py_ssize_t *at = self->kind->objects; *at; at++)
        Py_VISIT(*(PyObject **)FIELD(self, *at));
    return 0;
}

static int call_clear(CallHead *self)
{
    Py_CLEAR(self->general);
    Py_CLEAR(self->nans);
    Py_CLEAR(self->keep);
    Py_CLEAR(self->array_type);
    for (const Py_ssize_t *at = self->kind->objects; *at; at++)
        Py_CLEAR(*(PyObject **)FIELD(self, *at));
    return 0;
}

static void call_dealloc(CallHead *self)
{
    PyObject_GC_UnTrack(self);
    call_clear(self);
    PyMem_Free(self->in_kinds);
    PyMem_Free(self->tree);
    for (const Py_ssize_t *at = self->kind->blocks; *at; at++)
        PyMem_Free(*(void **)FIELD(self, *at));
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A new call object with its head filled: its kind, the arguments' kinds (each one of
   `allowed`), room for an output tree of n_tree codes, and references to the objects it
   keeps; NULL with a Python error set. */
static void *call_new(PyTypeObject *type, const CallKind *kind, const char *in_kinds,
                      Py_ssize_t n_args, const char *allowed, Py_ssize_t n_tree,
                      PyObject *general, PyObject *nans, PyObject *keep, PyObject *array_type)
{
    CallHead *self = (CallHead *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = call_vectorcall;
    self->kind = kind;
    self->n_args = n_args;
    self->general = Py_NewRef(general);
    self->nans = Py_NewRef(nans);
    self->keep = Py_NewRef(keep);
    self->array_type = Py_NewRef(array_type);
    self->in_kinds = alloc_array(n_args, 1);
    self->tree = alloc_array(n_tree, sizeof(int));
    if (self->in_kinds == NULL || self->tree == NULL)
        goto fail;
    for (Py_ssize_t k = 0; k < n_args; k++)
        if (in_kinds[k] == '\0' || strchr(allowed, in_kinds[k]) == NULL) {
            PyErr_Format(PyExc_ValueError, "%s: input kinds are one of '%s'", type->tp_name,
                         allowed);
            goto fail;
        }
    memcpy(self->in_kinds, in_kinds, n_args);
    return self;
fail:
    Py_DECREF(self);
    return NULL;
}

/* The arguments' slots (arg_slots: a tuple of distinct slot indices, or None: the first
   n_args) and, for 'a' arguments, their shapes and buffer formats (arrays: per argument None
   or (shape tuple, format bytes)); 0 or -1 with a Python error set. */
static int arguments(FastCall *self, PyObject *arg_slots, PyObject *arrays, char *taken)
{
    Py_ssize_t n = self->head.n_args, n_dims = 0;
    long long *slot = alloc_array(n, sizeof(long long));
    self->arg_slot = alloc_array(n, sizeof(Py_ssize_t));
    self->array_dims = alloc_array(n, sizeof(Py_ssize_t));
    int ok = slot && self->arg_slot && self->array_dims;
    if (ok && arg_slots != Py_None)
        ok = int_items(arg_slots, n, "arg_slots", slot) == 0;
    for (Py_ssize_t k = 0; ok && k < n; k++) {
        if (arg_slots == Py_None)
            slot[k] = k;
        if (slot[k] < 0 || slot[k] >= self->n_slots || taken[slot[k]]) {
            PyErr_SetString(PyExc_ValueError, "FastCall: bad argument slots");
            ok = 0;
            break;
        }
        taken[slot[k]] = 1;
        self->arg_slot[k] = (Py_ssize_t)slot[k];
    }
    PyMem_Free(slot);
    if (!ok)
        return -1;
    Py_ssize_t n_arrays = 0;
    for (Py_ssize_t k = 0; k < n; k++)
        n_arrays += self->head.in_kinds[k] == 'a';
    if (n_arrays > ARRAYS_MAX) {
        PyErr_SetString(PyExc_ValueError, "FastCall: too many array arguments");
        return -1;
    }
    int has_arrays = n_arrays > 0;
    if (has_arrays && (!PyTuple_Check(arrays) || PyTuple_GET_SIZE(arrays) != n
                       || !PyType_Check(self->head.array_type))) {
        PyErr_SetString(PyExc_ValueError, "FastCall: array arguments need their type and "
                        "an (shape, format) per argument");
        return -1;
    }
    for (Py_ssize_t k = 0; has_arrays && k < n; k++) {
        PyObject *spec = PyTuple_GET_ITEM(arrays, k);
        if (self->head.in_kinds[k] != 'a')
            continue;
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2
                || !PyTuple_Check(PyTuple_GET_ITEM(spec, 0))
                || !PyBytes_Check(PyTuple_GET_ITEM(spec, 1))) {
            PyErr_SetString(PyExc_ValueError, "FastCall: an array's spec is (shape, format)");
            return -1;
        }
        n_dims += 1 + PyTuple_GET_SIZE(PyTuple_GET_ITEM(spec, 0));
    }
    self->dims = alloc_array(n_dims, sizeof(Py_ssize_t));
    self->formats = PyTuple_New(n);
    if (self->dims == NULL || self->formats == NULL)
        return -1;
    for (Py_ssize_t k = 0, at = 0; k < n; k++) {
        PyObject *format = Py_None;
        if (self->head.in_kinds[k] == 'a') {
            PyObject *spec = PyTuple_GET_ITEM(arrays, k), *shape = PyTuple_GET_ITEM(spec, 0);
            Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
            long long *extents = alloc_array(ndim, sizeof(long long));
            if (extents == NULL || int_items(shape, ndim, "shape", extents) < 0) {
                PyMem_Free(extents);
                return -1;
            }
            self->array_dims[k] = at;
            self->dims[at++] = ndim;
            for (Py_ssize_t d = 0; d < ndim; d++)
                self->dims[at++] = (Py_ssize_t)extents[d];
            PyMem_Free(extents);
            format = PyTuple_GET_ITEM(spec, 1);
        }
        Py_INCREF(format);
        PyTuple_SET_ITEM(self->formats, k, format);
    }
    return 0;
}

static const CallKind fastcall_kind = {
    run, {offsetof(FastCall, formats)},
    {offsetof(FastCall, arg_slot), offsetof(FastCall, array_dims), offsetof(FastCall, dims),
     offsetof(FastCall, fixed), offsetof(FastCall, ws_offset), offsetof(FastCall, out_offset),
     offsetof(FastCall, out_kind)},
};

/* FastCall(entry, general, nans, keep, in_kinds, fixed, ws_offsets, ws_bytes, outs, tree,
            release_gil[, arg_slots, array_type, arrays, ws_address]): see fastcall.py and
   native.py. fixed and ws_offsets fill the slots the arguments do not take, in order. */
static PyObject *fastcall_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    unsigned long long entry, ws_address = 0;
    PyObject *general, *nans, *keep, *fixed, *offsets, *outs, *tree;
    PyObject *arg_slots = Py_None, *array_type = Py_None, *arrays = Py_None;
    const char *in_kinds, *out_kinds;
    Py_ssize_t n_args, n_outs, ws_bytes;
    int release_gil;
    char *taken = NULL;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "FastCall takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "KOO!Os#OOnOs#Op|OOOK", &entry, &general, &PyDict_Type, &nans,
                          &keep, &in_kinds, &n_args, &fixed, &offsets, &ws_bytes, &outs,
                          &out_kinds, &n_outs, &tree, &release_gil, &arg_slots, &array_type,
                          &arrays, &ws_address))
        return NULL;
    if (!PyTuple_Check(fixed) || !PyTuple_Check(tree)) {
        PyErr_SetString(PyExc_TypeError, "FastCall: fixed and tree must be tuples");
        return NULL;
    }
    Py_ssize_t n_rest = PyTuple_GET_SIZE(fixed), n_tree = PyTuple_GET_SIZE(tree);
    if (n_args + n_rest > SLOTS_MAX || n_outs > SLOTS_MAX || ws_bytes < 0
            || (ws_bytes > WS_MAX && ws_address == 0)) {
        PyErr_SetString(PyExc_ValueError, "FastCall: too many slots or too large a workspace");
        return NULL;
    }
    FastCall *self = call_new(type, &fastcall_kind, in_kinds, n_args, "fia", n_tree, general,
                              nans, keep, array_type);
    if (self == NULL)
        return NULL;
    self->entry = entry;
    self->n_slots = n_args + n_rest;
    self->n_outs = n_outs;
    self->n_tree = n_tree;
    self->ws_bytes = ws_bytes;
    self->release_gil = release_gil;
    self->ws_fixed = (char *)(uintptr_t)ws_address;
    self->fixed = alloc_array(self->n_slots, sizeof(graphc_slot));
    self->ws_offset = alloc_array(self->n_slots, sizeof(Py_ssize_t));
    self->out_offset = alloc_array(n_outs, sizeof(Py_ssize_t));
    self->out_kind = alloc_array(n_outs, 1);
    taken = alloc_array(self->n_slots, 1);
    long long *buf = alloc_array(n_rest + n_outs + n_tree + 1, sizeof(long long));
    if (!self->fixed || !self->ws_offset || !self->out_offset || !self->out_kind || !taken
            || !buf)
        goto fail;
    memcpy(self->out_kind, out_kinds, n_outs);
    if (arguments(self, arg_slots, arrays, taken) < 0)
        goto fail;
    for (Py_ssize_t k = 0; k < self->n_slots; k++)
        self->ws_offset[k] = -1;
    Py_ssize_t *rest_slots = alloc_array(n_rest, sizeof(Py_ssize_t));  /* the others */
    if (rest_slots == NULL)
        goto fail;
    for (Py_ssize_t k = 0, j = 0; k < self->n_slots; k++)
        if (!taken[k])
            rest_slots[j++] = k;
    if (int_items(fixed, n_rest, "fixed", buf) < 0) {
        PyMem_Free(rest_slots);
        goto fail;
    }
    for (Py_ssize_t k = 0; k < n_rest; k++)
        self->fixed[rest_slots[k]].p = (void *)(uintptr_t)buf[k];
    if (int_items(offsets, n_rest, "ws_offsets", buf) < 0) {
        PyMem_Free(rest_slots);
        goto fail;
    }
    for (Py_ssize_t k = 0; k < n_rest; k++) {
        if (buf[k] >= ws_bytes) {
            PyErr_SetString(PyExc_ValueError, "FastCall: a slot lies past the workspace");
            PyMem_Free(rest_slots);
            goto fail;
        }
        self->ws_offset[rest_slots[k]] = (Py_ssize_t)buf[k];
    }
    PyMem_Free(rest_slots);
    if (int_items(outs, n_outs, "outs", buf) < 0)
        goto fail;
    for (Py_ssize_t j = 0; j < n_outs; j++) {
        if (buf[j] < 0 || buf[j] + 8 > ws_bytes) {
            PyErr_SetString(PyExc_ValueError, "FastCall: an output lies past the workspace");
            goto fail;
        }
        self->out_offset[j] = (Py_ssize_t)buf[j];
    }
    if (tree_codes(tree, n_outs, buf, self->head.tree) < 0)
        goto fail;
    PyMem_Free(buf);
    PyMem_Free(taken);
    return (PyObject *)self;
fail:
    PyMem_Free(buf);
    PyMem_Free(taken);
    Py_DECREF(self);
    return NULL;
}

/* The slots FastCall and TapeCall share: both start with a CallHead, called through its
   vectorcall, collected by the same traverse/clear/dealloc. */
#define CALL_TYPE_SLOTS(new_fn)                                                          \
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,    \
    .tp_new = (new_fn),                                                                  \
    .tp_dealloc = (destructor)call_dealloc,                                              \
    .tp_traverse = (traverseproc)call_traverse,                                          \
    .tp_clear = (inquiry)call_clear,                                                     \
    .tp_vectorcall_offset = offsetof(CallHead, vectorcall),                              \
    .tp_call = PyVectorcall_Call

static PyMemberDef fastcall_members[] = {
    {"entry", T_ULONGLONG, offsetof(FastCall, entry), 0,
     "address of the packed entry (a tiered build's optimized module replaces it)"},
    {"general", T_OBJECT, offsetof(FastCall, head.general), READONLY, "the Python path"},
    {NULL}
};

static PyTypeObject FastCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "graphc._fastcall.FastCall",
    .tp_doc = "A compiled function's (or train step's) call for one signature, in C.",
    .tp_basicsize = sizeof(FastCall),
    CALL_TYPE_SLOTS(fastcall_new),
    .tp_members = fastcall_members,
};

/* ---- TapeCall: a reverse tape's call (graphc/reverse_tape.py) ----

   value_and_grad (or grad) of a reverse tape (csrc/graphc_scalar_tape.h's gc_scalar_tape, whose
   address the interpreter's cffi module gives) for one signature of float64 arguments: per
   positional argument 'f', an exact Python float, or 'a', an exact ndarray of float64 in native
   byte order, C order, of the signature's shape (read in place, never written). The outputs
   (the value, then the gradients) are fresh arrays made by `empty` (numpy.empty) per call, so
   they belong to the caller; an output whose shape is None (the gradient of a Python float) is
   a Python float, as on the Python path. The interpreter runs without the GIL on the object's work array,
   or on one of its own when another thread holds that. Any other call goes to `general`. */

#define TAPE_ARGS_MAX 64     /* arguments, and outputs: more keep the Python plan */

typedef double (*tape_fn)(const int32_t *, long, const int64_t *, const double *, void **,
                          double *, double *);

typedef struct {
    CallHead head;              /* array_type: numpy.ndarray */
    tape_fn fn;
    const int32_t *cells;       /* the tape's arrays, owned by `keep` */
    const int64_t *layout;
    const double *init;
    long rows;
    Py_ssize_t n_slots, n_outs;
    int with_value;             /* outputs: the value (0-d) first, then the gradients */
    PyObject *empty;            /* numpy.empty */
    PyObject *out_shapes;       /* a tuple: each output's shape */
    Py_ssize_t *in_shape;       /* per argument: its length, or -1 for 0-d */
    double *work;               /* 2 n_slots: values, then cotangents */
    int busy;                   /* work in use (atomic) */
} TapeCall;

/* 1: *result is the outputs; 0: not this signature (the general path decides); -1: an error. */
static int tape_run(void *callable, PyObject *const *args, PyObject **result)
{
    TapeCall *self = callable;
    void *io[2 * TAPE_ARGS_MAX];
    double floats[TAPE_ARGS_MAX];
    Py_buffer views[TAPE_ARGS_MAX];
    PyObject *outs[TAPE_ARGS_MAX];
    double scalars[TAPE_ARGS_MAX];      /* the outputs that are Python floats */
    Py_ssize_t n_views = 0, n_made = 0;
    int status = 0;
    Py_ssize_t n_args = self->head.n_args;
    for (Py_ssize_t k = 0; k < n_args; k++) {
        PyObject *x = args[k];
        if (self->head.in_kinds[k] == 'f') {
            if (!PyFloat_CheckExact(x))
                goto done;
            floats[k] = PyFloat_AS_DOUBLE(x);
            io[k] = &floats[k];
            continue;
        }
        if (!array_view(x, self->head.array_type, &views[n_views]))
            goto done;
        const Py_buffer *b = &views[n_views++];
        Py_ssize_t n = self->in_shape[k];
        if (b->ndim != (n >= 0) || (n >= 0 && b->shape[0] != n) || b->itemsize != 8
                || b->format == NULL || strcmp(b->format, "d") != 0)
            goto done;
        io[k] = b->buf;
    }
    double *value_at = NULL;
    for (; n_made < self->n_outs; n_made++) {
        PyObject *shape = PyTuple_GET_ITEM(self->out_shapes, n_made);
        if (shape == Py_None) {     /* a Python float, made after the run */
            outs[n_made] = NULL;
            io[n_args + n_made - self->with_value] = &scalars[n_made];
            continue;
        }
        PyObject *out = PyObject_CallOneArg(self->empty, shape);
        Py_buffer b;
        if (out == NULL || PyObject_GetBuffer(out, &b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
            Py_XDECREF(out);
            status = -1;
            goto done;
        }
        outs[n_made] = out;     /* its data stays put: nobody else holds it */
        if (self->with_value && n_made == 0)
            value_at = b.buf;
        else
            io[n_args + n_made - self->with_value] = b.buf;
        PyBuffer_Release(&b);
    }
    double *work = self->work;
    if (__atomic_exchange_n(&self->busy, 1, __ATOMIC_ACQUIRE)) {
        work = PyMem_RawMalloc(2 * (size_t)self->n_slots * sizeof(double));
        if (work == NULL) {
            PyErr_NoMemory();
            status = -1;
            goto done;
        }
    }
    double value;
    Py_BEGIN_ALLOW_THREADS
    value = self->fn(self->cells, self->rows, self->layout, self->init, io, work,
                     work + self->n_slots);
    Py_END_ALLOW_THREADS
    if (work == self->work)
        __atomic_store_n(&self->busy, 0, __ATOMIC_RELEASE);
    else
        PyMem_RawFree(work);
    if (value_at != NULL)
        *value_at = value;
    for (Py_ssize_t j = 0; j < n_made; j++)
        if (outs[j] == NULL && (outs[j] = PyFloat_FromDouble(scalars[j])) == NULL) {
            status = -1;
            goto done;
        }
    Py_ssize_t pos = 0, leaf = 0;
    *result = build_tree(self->head.tree, outs, &pos, &leaf);
    status = *result == NULL ? -1 : 1;
    for (Py_ssize_t j = 0; j < n_made; j++)
        Py_XDECREF(outs[j]);     /* only on failure: the tree took the others */
    n_made = 0;
done:
    for (Py_ssize_t j = 0; j < n_made; j++)
        Py_XDECREF(outs[j]);
    while (n_views)
        PyBuffer_Release(&views[--n_views]);
    return status;
}

static const CallKind tapecall_kind = {
    tape_run, {offsetof(TapeCall, empty), offsetof(TapeCall, out_shapes)},
    {offsetof(TapeCall, in_shape), offsetof(TapeCall, work)},
};

/* TapeCall(entry, general, nans, keep, cells, rows, layout, init, n_slots, in_kinds,
            in_shapes, out_shapes, with_value, tree, ndarray, empty): see reverse_tape.py. */
static PyObject *tapecall_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    unsigned long long entry, cells, layout, init;
    long rows;
    Py_ssize_t n_slots, n_args;
    const char *in_kinds;
    PyObject *general, *nans, *keep, *in_shapes, *out_shapes, *tree, *ndarray, *empty;
    int with_value;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "TapeCall takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "KOO!OKlKKns#O!O!pO!O!O", &entry, &general, &PyDict_Type,
                          &nans, &keep, &cells, &rows, &layout, &init, &n_slots, &in_kinds,
                          &n_args, &PyTuple_Type, &in_shapes, &PyTuple_Type, &out_shapes,
                          &with_value, &PyTuple_Type, &tree, &PyType_Type, &ndarray, &empty))
        return NULL;
    Py_ssize_t n_outs = PyTuple_GET_SIZE(out_shapes), n_tree = PyTuple_GET_SIZE(tree);
    if (n_args > TAPE_ARGS_MAX || n_outs > TAPE_ARGS_MAX || n_outs < with_value || n_slots <= 0
            || PyTuple_GET_SIZE(in_shapes) != n_args) {
        PyErr_SetString(PyExc_ValueError, "TapeCall: too many arguments or outputs");
        return NULL;
    }
    TapeCall *self = call_new(type, &tapecall_kind, in_kinds, n_args, "fa", n_tree, general,
                              nans, keep, ndarray);
    if (self == NULL)
        return NULL;
    self->fn = (tape_fn)(uintptr_t)entry;
    self->cells = (const int32_t *)(uintptr_t)cells;
    self->layout = (const int64_t *)(uintptr_t)layout;
    self->init = (const double *)(uintptr_t)init;
    self->rows = rows;
    self->n_slots = n_slots;
    self->n_outs = n_outs;
    self->with_value = with_value;
    self->empty = Py_NewRef(empty);
    self->out_shapes = Py_NewRef(out_shapes);
    self->in_shape = alloc_array(n_args, sizeof(Py_ssize_t));
    self->work = alloc_array(2 * n_slots, sizeof(double));
    long long *buf = alloc_array(n_args + n_tree + 1, sizeof(long long));
    if (!self->in_shape || !self->work || !buf)
        goto fail;
    if (int_items(in_shapes, n_args, "in_shapes", buf) < 0)
        goto fail;
    for (Py_ssize_t k = 0; k < n_args; k++)
        self->in_shape[k] = (Py_ssize_t)buf[k];
    if (tree_codes(tree, n_outs, buf, self->head.tree) < 0)
        goto fail;
    PyMem_Free(buf);
    return (PyObject *)self;
fail:
    PyMem_Free(buf);
    Py_DECREF(self);
    return NULL;
}

static PyTypeObject TapeCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "graphc._fastcall.TapeCall",
    .tp_doc = "A reverse tape's call for one signature of float64 arguments.",
    .tp_basicsize = sizeof(TapeCall),
    CALL_TYPE_SLOTS(tapecall_new),
};

static struct PyModuleDef fastcall_module = {
    PyModuleDef_HEAD_INIT, "_fastcall", "graphc's C call path (csrc/fastcall.c)", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastcall(void)
{
    str_on = PyUnicode_InternFromString("on");
    if (str_on == NULL || PyType_Ready(&FastCallType) < 0 || PyType_Ready(&TapeCallType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastcall_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "FastCall", (PyObject *)&FastCallType) < 0
            || PyModule_AddObjectRef(m, "TapeCall", (PyObject *)&TapeCallType) < 0
            || PyModule_AddIntConstant(m, "WS_MAX", WS_MAX) < 0
            || PyModule_AddIntConstant(m, "SLOTS_MAX", SLOTS_MAX) < 0
            || PyModule_AddIntConstant(m, "TAPE_ARGS_MAX", TAPE_ARGS_MAX) < 0
            || PyModule_AddIntConstant(m, "ARRAYS_MAX", ARRAYS_MAX) < 0
            || PyModule_AddStringConstant(m, "SOURCE_HASH", GRAPHC_FASTCALL_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
