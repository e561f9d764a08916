# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython tree parser for the read API's listings (``dvx.objects.tree_rows`` is the
pure-Python reference: same rows, same checks, same error messages; the tests run both).

A tree (``protocols/format.md`` §4) is attacker-written: every length is checked before
a byte is read, names must be valid UTF-8, unique, sorted by their bytes and one path
component, exactly as the reference checks them.

``ls_entries`` is the inner loop of ``dvx.ops.ls.ls_tree``: it checks a tree exactly as
``tree_rows`` does and turns its entries straight into ``LsEntry`` objects (and its
subtrees into stack items), without a row tuple, a name string or a call per entry.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    ctypedef struct PyObject:
        pass
    ctypedef struct PyTypeObject:
        PyObject* (*tp_alloc)(PyTypeObject*, Py_ssize_t)
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    void Py_INCREF(object o)
    void Py_DECREF_raw "Py_DECREF"(PyObject* o)

cdef extern from "structmember.h":
    int T_OBJECT_EX

import types

from dvx.errors import CorruptObjectError

cdef enum:  # protocols/format.md §4, as in dvx.objects
    ENTRY_FILE = 1
    ENTRY_TREE = 2
    ENTRY_LINK = 3
    MODE_EXEC = 1
    MAX_NAME = 4095
    ID_SIZE = 32
    HEAD = 4  # kind, mode, name length
    SIZES = 16  # size, file count

cdef bytes TREE_MAGIC = b"DVXT"


cdef inline uint16_t _u16(const uint8_t* p) noexcept nogil:
    return <uint16_t>(p[0] | (p[1] << 8))


cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _u64(const uint8_t* p) noexcept nogil:
    return <uint64_t>_u32(p) | (<uint64_t>_u32(p + 4) << 32)


cdef struct Entry:
    uint8_t kind
    uint8_t mode
    Py_ssize_t name_pos
    Py_ssize_t name_len
    uint64_t size
    uint64_t files
    Py_ssize_t ref_pos  # the id (file, tree) or the link target
    Py_ssize_t target_len


cdef struct Cursor:
    const uint8_t* buf
    Py_ssize_t end
    Py_ssize_t pos
    Py_ssize_t count
    Py_ssize_t i
    Py_ssize_t prev_pos
    Py_ssize_t prev_len


cdef object _beyond(Py_ssize_t i, Py_ssize_t end):
    return CorruptObjectError(f"tree entry {i} extends beyond tree length {end}")


def _header(bytes data):
    from dvx.objects import _header as check  # the reference's messages

    return check(data, TREE_MAGIC, "tree")



cdef int _start(Cursor* cur, bytes raw) except -1:
    cur.buf = <const uint8_t*>PyBytes_AS_STRING(raw)
    cur.end = PyBytes_GET_SIZE(raw)
    if cur.end < 8 or memcmp(cur.buf, b"DVXT\x01\x00\x00\x00", 8) != 0:
        _header(raw)  # raises, naming the problem
        raise CorruptObjectError("tree object has a bad header")  # pragma: no cover
    if cur.end < 12:
        raise CorruptObjectError("tree object is truncated before its entry count")
    cur.count = _u32(cur.buf + 8)
    cur.pos = 12
    cur.i = 0
    cur.prev_pos = 0
    cur.prev_len = 0
    return 0


cdef int _next(Cursor* cur, Entry* e, bytes raw) except -1:
    """Parse and check entry ``cur.i`` (the reference's checks, in its order)."""
    cdef const uint8_t* buf = cur.buf
    cdef Py_ssize_t end = cur.end, pos = cur.pos, i = cur.i, cmp_len
    cdef int c
    if pos + HEAD > end:
        raise _beyond(i, end)
    e.kind = buf[pos]
    e.mode = buf[pos + 1]
    e.name_len = _u16(buf + pos + 2)
    pos += HEAD
    e.name_pos = pos
    pos += e.name_len  # may pass the end: the kind's checks below catch it first
    if e.kind == ENTRY_FILE or e.kind == ENTRY_TREE:
        if e.mode and (e.mode != MODE_EXEC or e.kind != ENTRY_FILE):
            raise CorruptObjectError(f"tree entry {i} has invalid mode flags {e.mode:#x}")
        if pos + SIZES + ID_SIZE > end:
            raise _beyond(i, end)
        e.size = _u64(buf + pos)
        e.files = _u64(buf + pos + 8)
        e.ref_pos = pos + SIZES
        e.target_len = 0
        pos += SIZES + ID_SIZE
        if e.kind == ENTRY_FILE and e.files != 1:
            raise CorruptObjectError(f"file entry {_raw_name(raw, e)!r} has file count {e.files}")
    elif e.kind == ENTRY_LINK:
        if e.mode:
            raise CorruptObjectError(f"tree entry {i} has invalid mode flags {e.mode:#x}")
        if pos + SIZES + 2 > end:
            raise _beyond(i, end)
        e.size = _u64(buf + pos)
        e.files = _u64(buf + pos + 8)
        e.target_len = _u16(buf + pos + SIZES)
        pos += SIZES + 2
        e.ref_pos = pos
        if e.target_len == 0 or pos + e.target_len > end:
            raise CorruptObjectError(f"tree entry {i} has a bad link target")
        pos += e.target_len
        try:
            PyUnicode_DecodeUTF8(<const char*>buf + e.ref_pos, e.target_len, NULL)
        except UnicodeDecodeError:
            raise CorruptObjectError(f"link target of {_raw_name(raw, e)!r} is not UTF-8") from None
        if e.size != <uint64_t>e.target_len or e.files != 0:
            raise CorruptObjectError(f"link entry {_raw_name(raw, e)!r} has inconsistent sizes")
    else:
        raise CorruptObjectError(f"tree entry {i} has unknown kind {e.kind}")
    # here pos <= end: the whole name lies inside the tree
    cmp_len = e.name_len if e.name_len < cur.prev_len else cur.prev_len
    c = memcmp(buf + e.name_pos, buf + cur.prev_pos, cmp_len)
    if c < 0 or (c == 0 and e.name_len <= cur.prev_len):
        if e.name_len == 0:
            raise CorruptObjectError(f"invalid name in tree: {b''!r}")
        raise CorruptObjectError(f"tree entries are not sorted and unique at {_raw_name(raw, e)!r}")
    cur.prev_pos = e.name_pos
    cur.prev_len = e.name_len
    cur.pos = pos
    cur.i = i + 1
    return 0


cdef bytes _raw_name(bytes raw, Entry* e):
    return raw[e.name_pos:e.name_pos + e.name_len]


cdef object _name(Cursor* cur, Entry* e):
    """The entry's name, decoded and checked as the reference does."""
    cdef const uint8_t* p = cur.buf + e.name_pos
    cdef Py_ssize_t n = e.name_len
    try:
        name = PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
    except UnicodeDecodeError:
        raise CorruptObjectError(f"tree entry {cur.i - 1} name is not UTF-8") from None
    if (n > MAX_NAME or memchr(p, 0x2F, n) != NULL or memchr(p, 0, n) != NULL
            or (n == 1 and p[0] == 0x2E) or (n == 2 and p[0] == 0x2E and p[1] == 0x2E)):
        from dvx.objects import check_name

        check_name(name)  # raises, naming the problem
    return name


cdef inline bint _ascii(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef uint8_t acc = 0
    for k in range(n):
        acc |= p[k]
    return acc < 0x80


cdef object _path(str slash, bint slash_ascii, Cursor* cur, Entry* e):
    """``slash + name``, the name checked as ``_name`` checks it: for an ASCII name
    under an ASCII directory, one string built from the bytes (no name string)."""
    cdef const uint8_t* p = cur.buf + e.name_pos
    cdef Py_ssize_t n = e.name_len, m
    cdef uint8_t* dst
    if not slash_ascii or not _ascii(p, n) or n > MAX_NAME or memchr(p, 0x2F, n) != NULL \
            or memchr(p, 0, n) != NULL or (n == 1 and p[0] == 0x2E) \
            or (n == 2 and p[0] == 0x2E and p[1] == 0x2E):
        return slash + _name(cur, e)  # decoded and checked (raises on a bad name)
    m = len(slash)
    path = PyUnicode_New(m + n, 127)
    dst = <uint8_t*>PyUnicode_DATA(path)
    memcpy(dst, PyUnicode_DATA(slash), m)
    memcpy(dst + m, p, n)
    return path


cdef int _finish(Cursor* cur) except -1:
    if cur.pos != cur.end:
        raise CorruptObjectError(f"tree has {cur.end - cur.pos} trailing bytes after {cur.count} entries")
    return 0


def tree_rows(data):
    """``dvx.objects.tree_rows`` in C: the rows ``(name, kind, size, files, id,
    executable, link target)`` of a tree, after every check of the reference."""
    cdef bytes raw = data if type(data) is bytes else bytes(data)
    cdef Cursor cur
    cdef Entry e
    cdef list rows = []
    cdef object one = 1, zero = 0
    _start(&cur, raw)
    while cur.i < cur.count:
        _next(&cur, &e, raw)
        name = _name(&cur, &e)
        if e.kind == ENTRY_FILE:
            rows.append((name, ENTRY_FILE, e.size, one, _id(&cur, &e), e.mode == MODE_EXEC, None))
        elif e.kind == ENTRY_TREE:
            rows.append((name, ENTRY_TREE, e.size, e.files, _id(&cur, &e), False, None))
        else:
            rows.append((name, ENTRY_LINK, e.size, zero, None, False,
                         PyUnicode_DecodeUTF8(<const char*>cur.buf + e.ref_pos, e.target_len, NULL)))
    _finish(&cur)
    return rows


cdef inline bytes _id(Cursor* cur, Entry* e):
    return PyBytes_FromStringAndSize(<const char*>cur.buf + e.ref_pos, ID_SIZE)


cdef const char* _HEX = b"0123456789abcdef"


cdef inline str _hex(Cursor* cur, Entry* e):
    cdef const uint8_t* src = cur.buf + e.ref_pos
    cdef str out = PyUnicode_New(2 * ID_SIZE, 127)
    cdef uint8_t* dst = <uint8_t*>PyUnicode_DATA(out)
    cdef Py_ssize_t k
    for k in range(ID_SIZE):
        dst[2 * k] = _HEX[src[k] >> 4]
        dst[2 * k + 1] = _HEX[src[k] & 15]
    return out


# -- LsEntry objects without a Python call each ---------------------------------------------
#
# ``dvx.ops.ls.LsEntry`` is a plain slotted dataclass: its generated ``__init__`` only
# stores its seven fields. ``_bind`` finds where each field's slot lies in the object
# (from the class's member descriptors, checked to be object slots) so that ``_make``
# can allocate an instance and fill its slots directly: the same object ``__init__``
# would build, at a fraction of the cost. A class that does not have exactly that
# shape is called normally.

FIELDS = ("path", "kind", "size", "files", "id", "executable", "target")
cdef Py_ssize_t _OFF[7]
cdef object _BOUND = None  # the class _OFF describes
cdef object _REFUSED = None  # a class found not to have that shape


cdef bint _bind(object cls) except -1:
    global _BOUND, _REFUSED
    cdef int k
    cdef Py_ssize_t offs[7]
    if cls is _BOUND:
        return True
    if cls is _REFUSED or type(cls) is not type or hasattr(cls, "__post_init__") \
            or getattr(cls, "__slots__", None) != FIELDS:
        _REFUSED = cls
        return False
    for k in range(7):
        d = cls.__dict__.get(FIELDS[k])
        if type(d) is not types.MemberDescriptorType or (<PyMemberDescrObject*>d).d_member.type != T_OBJECT_EX:
            _REFUSED = cls
            return False
        offs[k] = (<PyMemberDescrObject*>d).d_member.offset
    for k in range(7):
        _OFF[k] = offs[k]
    _BOUND = cls
    return True


cdef inline void _put(PyObject* o, Py_ssize_t off, object v) noexcept:
    Py_INCREF(v)
    (<PyObject**>((<char*>o) + off))[0] = <PyObject*>v


cdef object _make(object cls, object path, object kind, object size, object files, object hexid,
                  object exe, object target):
    cdef PyTypeObject* t = <PyTypeObject*>cls
    cdef PyObject* o = t.tp_alloc(t, 0)  # slots NULL, tracked by the GC (which copes with NULL)
    if o == NULL:
        raise MemoryError()
    _put(o, _OFF[0], path)
    _put(o, _OFF[1], kind)
    _put(o, _OFF[2], size)
    _put(o, _OFF[3], files)
    _put(o, _OFF[4], hexid)
    _put(o, _OFF[5], exe)
    _put(o, _OFF[6], target)
    obj = <object>o  # takes a reference
    Py_DECREF_raw(o)  # drop tp_alloc's
    return obj


def ls_entries(data, str pre, bint recursive, list out, list stack, object cls):
    """Check a tree exactly as ``tree_rows`` does, then, for the directory ``pre``:
    append ``cls(path, kind, size, files, hex id, executable, link target)`` to ``out``
    for each file and link (and subtree, as ``path/``, unless ``recursive``); with
    ``recursive``, append ``(path, tree id)`` of each subtree to ``stack``. Nothing is
    appended when the tree is refused."""
    cdef bytes raw = data if type(data) is bytes else bytes(data)
    cdef Cursor cur
    cdef Entry e
    cdef list got = []
    cdef list subs = []
    cdef str slash = pre + "/"
    cdef bint slash_ascii = slash.isascii()
    cdef object one = 1, zero = 0, target
    cdef bint fast = _bind(cls)
    _start(&cur, raw)
    while cur.i < cur.count:
        _next(&cur, &e, raw)
        path = _path(slash, slash_ascii, &cur, &e)
        if e.kind == ENTRY_FILE:
            if fast:
                got.append(_make(cls, path, "file", e.size, one, _hex(&cur, &e), e.mode == MODE_EXEC, None))
            else:
                got.append(cls(path, "file", e.size, one, _hex(&cur, &e), e.mode == MODE_EXEC, None))
        elif e.kind == ENTRY_TREE:
            if recursive:
                subs.append((path, _id(&cur, &e)))
            elif fast:
                got.append(_make(cls, path + "/", "tree", e.size, e.files, _hex(&cur, &e), False, None))
            else:
                got.append(cls(path + "/", "tree", e.size, e.files, _hex(&cur, &e), False, None))
        else:
            target = PyUnicode_DecodeUTF8(<const char*>cur.buf + e.ref_pos, e.target_len, NULL)
            if fast:
                got.append(_make(cls, path, "link", e.size, zero, None, False, target))
            else:
                got.append(cls(path, "link", e.size, zero, None, False, target))
    _finish(&cur)
    out.extend(got)
    stack.extend(subs)
