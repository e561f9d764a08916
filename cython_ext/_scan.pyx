# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython directory scanner for `dvx status` / `dvx add` (dvx.workspace.scan_dir is the
pure-Python reference, with identical results).

One fstatat(AT_SYMLINK_NOFOLLOW) per entry through directory file descriptors
(openat + O_NOFOLLOW), so a symlink is never followed and a directory swapped for a
link mid-scan is not entered.
"""

from libc.errno cimport errno, ENOENT, ENOTDIR, ELOOP
from libc.string cimport strcmp, strlen
from libc.errno cimport ENOMEM
from posix.time cimport timespec

cdef extern from "<sys/stat.h>" nogil:
    cdef struct stat_ns "stat":
        unsigned long st_ino
        long st_size
        unsigned int st_mode
        timespec st_mtim
        timespec st_ctim
    int fstatat(int dirfd, const char *pathname, stat_ns *buf, int flags)
    bint S_ISREG(unsigned int mode)
    bint S_ISDIR(unsigned int mode)
    bint S_ISLNK(unsigned int mode)

cdef extern from "<fcntl.h>" nogil:
    int AT_SYMLINK_NOFOLLOW
    int AT_FDCWD
    int O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC
    int openat(int dirfd, const char *pathname, int flags, ...)

cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    cdef struct dirent:
        char d_name[256]
    DIR *fdopendir(int fd)
    dirent *readdir(DIR *d)
    int closedir(DIR *d)

cdef extern from "<unistd.h>" nogil:
    ssize_t readlinkat(int dirfd, const char *pathname, char *buf, size_t bufsiz)
    int close(int fd)

import os


cdef inline object _decode(const char* raw):
    return (<bytes>raw).decode("utf-8", "surrogateescape")


def scan_tree(str top):
    """Returns (files, links, dirs, special) exactly like dvx.workspace.scan_dir: files
    map '/'-joined relative paths to (ino, size, mtime_ns, ctime_ns, exec); special maps
    FIFOs, sockets and devices (not data, never tracked) to their st_mode."""
    cdef dict files = {}
    cdef dict links = {}
    cdef set dirs = set()
    cdef dict special = {}
    cdef stat_ns st
    cdef DIR* d
    cdef dirent* ent
    cdef int fd, sub, rc
    cdef char linkbuf[4097]
    cdef ssize_t n
    cdef bytes top_b = os.fsencode(top)
    fd = openat(AT_FDCWD, top_b, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd < 0:
        raise OSError(errno, os.strerror(errno), top)
    stack = [("", fd)]
    while stack:
        prefix, fd = stack.pop()
        d = fdopendir(fd)
        if d == NULL:
            close(fd)
            raise OSError(errno, os.strerror(errno), os.path.join(top, prefix))
        try:
            while True:
                ent = readdir(d)
                if ent == NULL:
                    break
                if strcmp(ent.d_name, b".") == 0 or strcmp(ent.d_name, b"..") == 0:
                    continue
                with nogil:
                    rc = fstatat(fd, ent.d_name, &st, AT_SYMLINK_NOFOLLOW)
                if rc != 0:
                    if errno == ENOENT:
                        continue  # vanished while scanning
                    raise OSError(errno, os.strerror(errno), os.path.join(top, prefix + _decode(ent.d_name)))
                rel = prefix + _decode(ent.d_name)
                if S_ISREG(st.st_mode):
                    files[rel] = (st.st_ino, st.st_size,
                                  st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
                                  st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec,
                                  1 if st.st_mode & 0o100 else 0)
                elif S_ISDIR(st.st_mode):
                    sub = openat(fd, ent.d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if sub < 0:
                        if errno == ENOENT or errno == ENOTDIR or errno == ELOOP:
                            continue  # replaced meanwhile
                        raise OSError(errno, os.strerror(errno), os.path.join(top, rel))
                    dirs.add(rel)
                    stack.append((rel + "/", sub))
                elif S_ISLNK(st.st_mode):
                    n = readlinkat(fd, ent.d_name, linkbuf, 4096)
                    if n < 0:
                        if errno == ENOENT:
                            continue
                        raise OSError(errno, os.strerror(errno), os.path.join(top, rel))
                    links[rel] = linkbuf[:n].decode("utf-8", "surrogateescape")
                else:
                    special[rel] = st.st_mode
        finally:
            closedir(d)  # also closes fd
    return files, links, dirs, special


cdef extern from "<sys/stat.h>" nogil:
    int fstat(int fd, stat_ns *buf)

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t count)
    int close(int fd)

from libc.stdlib cimport malloc, free
from libc.errno cimport EINTR
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING


cdef struct _FileResult:
    int err
    Py_ssize_t offset, length
    unsigned long ino
    long size
    long long mtime, ctime
    int exe


def read_files(list paths, list sizes):
    """Read whole small files with the GIL released for the whole batch.

    ``paths`` are ``bytes``; ``sizes`` the sizes a scan saw. Each file is opened with
    ``O_NOFOLLOW`` and read up to one byte past its expected size (so growth shows).
    Returns ``(data, results)``: one bytes object holding every file's content back to
    back, and per file either an ``errno`` (int) or ``(offset, length, (ino, size,
    mtime_ns, ctime_ns, exec))`` where the stat comes from ``fstat`` after reading.
    (``dvx.workspace.read_files_reference`` is the pure-Python equivalent.)
    """
    cdef Py_ssize_t n = len(paths), i, total = 0
    cdef Py_ssize_t want, got
    cdef ssize_t r
    cdef int fd
    cdef stat_ns st
    for i in range(n):
        if not isinstance(paths[i], bytes):
            raise TypeError("read_files: paths must be bytes")
        total += <Py_ssize_t> sizes[i] + 1
    data = PyBytes_FromStringAndSize(NULL, total)
    cdef char* base = PyBytes_AS_STRING(data)
    cdef const char** cpaths = <const char**> malloc((n + 1) * sizeof(char*))
    cdef Py_ssize_t* csizes = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
    cdef _FileResult* res = <_FileResult*> malloc((n + 1) * sizeof(_FileResult))
    if cpaths == NULL or csizes == NULL or res == NULL:
        free(cpaths); free(csizes); free(res)
        raise MemoryError()
    try:
        for i in range(n):
            cpaths[i] = <const char*> (<bytes> paths[i])
            csizes[i] = sizes[i]
        with nogil:
            total = 0
            for i in range(n):
                res[i].err = 0
                res[i].offset = total
                fd = openat(AT_FDCWD, cpaths[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                if fd < 0:
                    res[i].err = errno
                    continue
                want = csizes[i] + 1
                got = 0
                while got < want:
                    r = read(fd, base + total + got, want - got)
                    if r < 0:
                        if errno == EINTR:
                            continue
                        res[i].err = errno
                        break
                    if r == 0:
                        break
                    got += r
                if res[i].err == 0 and fstat(fd, &st) != 0:
                    res[i].err = errno
                close(fd)
                if res[i].err:
                    continue
                res[i].length = got
                res[i].ino = st.st_ino
                res[i].size = st.st_size
                res[i].mtime = st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
                res[i].ctime = st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec
                res[i].exe = 1 if st.st_mode & 0o100 else 0
                total += want
        out = []
        for i in range(n):
            if res[i].err:
                out.append(res[i].err)
            else:
                out.append((res[i].offset, res[i].length,
                            (res[i].ino, res[i].size, res[i].mtime, res[i].ctime, res[i].exe)))
        return data, out
    finally:
        free(cpaths); free(csizes); free(res)


# -- per-directory scan (dvx.workspace.scan_dirs) -------------------------------------
#
# One record per directory: its entries sorted by the bytes of their names, each a
# fixed 36-byte head (ENTRY_HEAD in dvx/workspace.py) followed by the name, and for a
# link a 2-byte target length and the target. Equal records mean equal entries with
# equal stats, so a directory is compared with its cached state in one memcmp, and
# no Python object is made per file unless the caller asks (parse_entries,
# diff_entries).

from libc.string cimport memcpy, memcmp
from libc.stdlib cimport realloc, calloc

cdef enum:
    HEAD_SIZE = 36
    K_FILE = 1
    K_DIR = 2
    K_LINK = 3
    K_SPECIAL = 4


cdef packed struct _Head:
    unsigned short name_len
    unsigned char kind
    unsigned char exe
    unsigned long long ino
    unsigned long long size
    long long mtime
    long long ctime


cdef struct _Buf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline void _put(_Buf* b, const void* src, Py_ssize_t n) noexcept nogil:
    memcpy(b.data + b.len, src, n)
    b.len += n


cdef extern from "<stdlib.h>" nogil:
    void qsort(void* base, size_t nmemb, size_t size, int (*compar)(const void*, const void*))


cdef struct _Ent:
    Py_ssize_t off  # of the name in the arena
    char* name
    int sub  # an open subdirectory (recursive scans), else -1


cdef int _cmp_ent(const void* a, const void* b) noexcept nogil:
    return strcmp((<_Ent*> a).name, (<_Ent*> b).name)


cdef int _scan_c(int fd, bint recursive, _Buf* arena, _Buf* ents, _Buf* rec,
                 Py_ssize_t* count, Py_ssize_t* bad) noexcept nogil:
    """List, sort and stat one directory (fd is closed). Returns 0, or an errno with
    ``bad`` the entry it concerns (-1: the directory itself). Never raises."""
    cdef DIR* d = fdopendir(fd)
    cdef dirent* ent
    cdef Py_ssize_t n = 0, i, nlen
    cdef _Ent* e
    cdef stat_ns st
    cdef _Head h
    cdef char linkbuf[4097]
    cdef ssize_t ln
    cdef unsigned short tlen
    cdef int err = 0
    arena.len = ents.len = rec.len = 0
    bad[0] = -1
    if d == NULL:
        err = errno
        close(fd)
        return err
    while True:
        ent = readdir(d)
        if ent == NULL:
            break
        if strcmp(ent.d_name, b".") == 0 or strcmp(ent.d_name, b"..") == 0:
            continue
        nlen = strlen(ent.d_name)
        if _reserve_c(arena, nlen + 1) or _reserve_c(ents, sizeof(_Ent)):
            closedir(d)
            return ENOMEM
        e = <_Ent*> (ents.data + ents.len)
        e.off = arena.len
        e.sub = -1
        memcpy(arena.data + arena.len, ent.d_name, nlen + 1)
        arena.len += nlen + 1
        ents.len += sizeof(_Ent)
        n += 1
    e = <_Ent*> ents.data
    for i in range(n):
        e[i].name = arena.data + e[i].off
    qsort(e, n, sizeof(_Ent), _cmp_ent)
    for i in range(n):
        if fstatat(fd, e[i].name, &st, AT_SYMLINK_NOFOLLOW) != 0:
            if errno == ENOENT:
                e[i].name = NULL  # vanished while scanning
                continue
            err = errno
            bad[0] = i
            break
        nlen = strlen(e[i].name)
        h.name_len = <unsigned short> nlen
        h.exe = 0
        h.ino = 0
        h.size = 0
        h.mtime = 0
        h.ctime = 0
        tlen = 0
        if S_ISREG(st.st_mode):
            h.kind = K_FILE
            h.exe = 1 if st.st_mode & 0o100 else 0
            h.ino = st.st_ino
            h.size = st.st_size
            h.mtime = st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
            h.ctime = st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec
        elif S_ISDIR(st.st_mode):
            h.kind = K_DIR
            if recursive:
                e[i].sub = openat(fd, e[i].name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if e[i].sub < 0:
                    e[i].sub = -1
                    if errno == ENOENT or errno == ENOTDIR or errno == ELOOP:
                        e[i].name = NULL  # replaced meanwhile
                        continue
                    err = errno
                    bad[0] = i
                    break
        elif S_ISLNK(st.st_mode):
            ln = readlinkat(fd, e[i].name, linkbuf, 4096)
            if ln < 0:
                if errno == ENOENT:
                    e[i].name = NULL
                    continue
                err = errno
                bad[0] = i
                break
            h.kind = K_LINK
            h.size = ln
            tlen = <unsigned short> ln
        else:
            h.kind = K_SPECIAL
            h.size = st.st_mode
        if _reserve_c(rec, HEAD_SIZE + nlen + 2 + tlen):
            err = ENOMEM
            break
        _put(rec, &h, HEAD_SIZE)
        _put(rec, e[i].name, nlen)
        if h.kind == K_LINK:
            _put(rec, &tlen, 2)
            _put(rec, linkbuf, tlen)
    count[0] = n
    closedir(d)  # also closes fd
    if err:
        for i in range(n):
            if e[i].sub >= 0:
                close(e[i].sub)
                e[i].sub = -1
    return err


cdef int _reserve_c(_Buf* b, Py_ssize_t more) noexcept nogil:
    cdef Py_ssize_t cap
    cdef char* p
    if b.len + more <= b.cap:
        return 0
    cap = b.cap * 2
    if cap < b.len + more:
        cap = b.len + more
    if cap < 4096:
        cap = 4096
    p = <char*> realloc(b.data, cap)
    if p == NULL:
        return 1
    b.data = p
    b.cap = cap
    return 0


def scan_one(int fd, str where, bint recursive=True):
    """The record of the directory open at ``fd`` (which this closes) and its
    subdirectories as ``[(name, fd), ...]`` (open when ``recursive``, else -1), for
    the caller to scan in turn: the listing, sorting and one ``fstatat`` per entry run
    without the GIL, so several threads can scan different directories at once.
    ``where`` names the directory in errors."""
    cdef _Buf arena, ents, rec
    cdef Py_ssize_t count = 0, bad = -1, i
    cdef int err
    cdef _Ent* e
    arena.data = ents.data = rec.data = NULL
    arena.len = arena.cap = ents.len = ents.cap = rec.len = rec.cap = 0
    try:
        with nogil:
            err = _scan_c(fd, recursive, &arena, &ents, &rec, &count, &bad)
        e = <_Ent*> ents.data
        if err:
            if err == ENOMEM:
                raise MemoryError()
            if bad < 0:
                raise OSError(err, os.strerror(err), where)
            raise OSError(err, os.strerror(err), os.path.join(where, _decode(e[bad].name)))
        subs = []
        for i in range(count):
            if e[i].name != NULL and (e[i].sub >= 0 or not recursive):
                if e[i].sub >= 0:
                    subs.append((_decode(e[i].name), e[i].sub))
        record = PyBytes_FromStringAndSize(rec.data, rec.len)
        return record, subs
    finally:
        free(arena.data)
        free(ents.data)
        free(rec.data)


def scan_dirs(str top, bint recursive=True):
    """Walk ``top`` (never following a symlink) and return ``[(rel_dir, record), ...]``,
    one per directory, ``""`` first, then level by level, each directory's
    subdirectories in name order (only ``top`` itself unless ``recursive``). One
    thread; ``dvx.treescan.scan_dirs`` runs ``scan_one`` on two.
    ``dvx.treescan.scan_dirs_reference`` is the pure-Python equivalent."""
    cdef int fd = openat(AT_FDCWD, os.fsencode(top), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd < 0:
        raise OSError(errno, os.strerror(errno), top)
    out = []
    level = [("", fd)]
    try:
        while level:
            nxt = []
            while level:
                rel, fd = level.pop(0)
                record, subs = scan_one(fd, os.path.join(top, rel), recursive)
                out.append((rel, record))
                nxt.extend((f"{rel}/{name}" if rel else name, sub) for name, sub in subs)
            level = nxt
    finally:
        for _r, fd in level:
            close(fd)
    return out


cdef tuple _entry_at(const char* p, Py_ssize_t pos):
    cdef _Head h
    cdef unsigned short tlen
    memcpy(&h, p + pos, HEAD_SIZE)
    name = _decode_n(p + pos + HEAD_SIZE, h.name_len)
    target = None
    if h.kind == K_LINK:
        memcpy(&tlen, p + pos + HEAD_SIZE + h.name_len, 2)
        target = _decode_n(p + pos + HEAD_SIZE + h.name_len + 2, tlen)
    return (name, h.kind, h.exe, h.ino, h.size, h.mtime, h.ctime, target)


def parse_entries(bytes record):
    """The entries of one directory record: ``[(name, kind, exec, ino, size, mtime_ns,
    ctime_ns, link_target_or_None), ...]`` (names decoded with surrogateescape)."""
    cdef const char* p = record
    cdef Py_ssize_t pos = 0, end = len(record), n
    out = []
    while pos < end:
        if pos + HEAD_SIZE > end:
            raise ValueError("truncated directory record")
        n = _entry_len(p, pos)
        if pos + n > end:
            raise ValueError("truncated directory record")
        out.append(_entry_at(p, pos))
        pos += n
    return out


cdef inline object _decode_n(const char* raw, Py_ssize_t n):
    return raw[:n].decode("utf-8", "surrogateescape")


cdef inline Py_ssize_t _entry_len(const char* p, Py_ssize_t pos) noexcept:
    cdef _Head h
    cdef unsigned short tlen
    memcpy(&h, p + pos, HEAD_SIZE)
    if h.kind == K_LINK:
        memcpy(&tlen, p + pos + HEAD_SIZE + h.name_len, 2)
        return HEAD_SIZE + h.name_len + 2 + tlen
    return HEAD_SIZE + h.name_len


cdef inline int _name_cmp(const char* a, Py_ssize_t apos, const char* b, Py_ssize_t bpos) noexcept:
    cdef unsigned short alen, blen
    cdef int c
    memcpy(&alen, a + apos, 2)
    memcpy(&blen, b + bpos, 2)
    c = memcmp(a + apos + HEAD_SIZE, b + bpos + HEAD_SIZE, alen if alen < blen else blen)
    if c != 0:
        return c
    return (alen > blen) - (alen < blen)


def diff_entries(bytes old, bytes new):
    """Entries that differ between two records of one directory (a merge of the two
    sorted lists in C): ``[(name, old_index, new_index, old_entry, new_entry), ...]`` in
    name order, with -1 and None for a side that lacks the name, indexes counting
    entries from 0, entries as ``parse_entries`` gives them. Entries equal in every
    byte (kind, stat, link target) are left out."""
    cdef const char* a = old
    cdef const char* b = new
    cdef Py_ssize_t ap = 0, bp = 0, aend = len(old), bend = len(new)
    cdef Py_ssize_t ai = 0, bi = 0, alen, blen
    cdef int c
    out = []
    while ap < aend or bp < bend:
        if ap >= aend:
            c = 1
        elif bp >= bend:
            c = -1
        else:
            c = _name_cmp(a, ap, b, bp)
        if c < 0:
            e = _entry_at(a, ap)
            out.append((e[0], ai, -1, e, None))
            ap += _entry_len(a, ap)
            ai += 1
        elif c > 0:
            e = _entry_at(b, bp)
            out.append((e[0], -1, bi, None, e))
            bp += _entry_len(b, bp)
            bi += 1
        else:
            alen = _entry_len(a, ap)
            blen = _entry_len(b, bp)
            if alen != blen or memcmp(a + ap, b + bp, alen) != 0:
                e = _entry_at(b, bp)
                out.append((e[0], ai, bi, _entry_at(a, ap), e))
            ap += alen
            bp += blen
            ai += 1
            bi += 1
    return out


def racy_entries(bytes record, long long limit):
    """Indexes of the file entries of a record whose mtime is not before ``limit``."""
    cdef const char* p = record
    cdef Py_ssize_t pos = 0, end = len(record), i = 0
    cdef _Head h
    out = []
    while pos < end:
        memcpy(&h, p + pos, HEAD_SIZE)
        if h.kind == K_FILE and h.mtime >= limit:
            out.append(i)
        pos += _entry_len(p, pos)
        i += 1
    return out


def kind_entries(bytes record, int kind):
    """Indexes of the entries of a record of one kind (e.g. 4: FIFOs, sockets, devices)."""
    cdef const char* p = record
    cdef Py_ssize_t pos = 0, end = len(record), i = 0
    cdef _Head h
    out = []
    while pos < end:
        memcpy(&h, p + pos, HEAD_SIZE)
        if h.kind == kind:
            out.append(i)
        pos += _entry_len(p, pos)
        i += 1
    return out


def patch_entries(bytes record, dict stats):
    """A copy of ``record`` whose entries at the given indexes carry new stats:
    ``{index: (ino, size, mtime_ns, ctime_ns, exec)}`` (files only)."""
    cdef bytearray out = bytearray(record)
    cdef char* p = out
    cdef Py_ssize_t pos = 0, end = len(out), i = 0, k = 0, nxt
    cdef _Head h
    cdef list keys = sorted(k for k in stats if k >= 0)  # walked in step with the entries
    nxt = keys[0] if keys else -1
    while pos < end and nxt >= 0:
        if i == nxt:
            memcpy(&h, p + pos, HEAD_SIZE)
            if h.kind != K_FILE:
                raise ValueError("patch_entries: not a file")
            h.ino, h.size, h.mtime, h.ctime, h.exe = stats[i]
            memcpy(p + pos, &h, HEAD_SIZE)
            k += 1
            nxt = keys[k] if k < len(keys) else -1
        pos += _entry_len(p, pos)
        i += 1
    return bytes(out)


# -- many directories at once, on several threads (dvx.treescan.scan_dirs) -------------
#
# One call scans a whole level of directories: the threads are started here and pull
# directories from a shared counter until none is left, all without the GIL, so a
# level of a thousand directories costs one call instead of a thousand thread-pool
# round trips. No thread outlives the call (nothing to reset after a fork).

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t* thread, const void* attr, void* (*start)(void*) noexcept nogil,
                       void* arg)
    int pthread_join(pthread_t thread, void** retval)

cdef extern from *:
    """
    static inline Py_ssize_t dvx_next_job(Py_ssize_t* counter) {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    """
    Py_ssize_t dvx_next_job(Py_ssize_t* counter) nogil

cdef enum:
    MAX_SCAN_THREADS = 16


cdef struct _Job:
    int fd
    int err
    Py_ssize_t count
    Py_ssize_t bad
    _Buf arena
    _Buf ents
    _Buf rec


cdef struct _Jobs:
    _Job* jobs
    Py_ssize_t n
    Py_ssize_t next
    bint recursive


cdef void* _scan_jobs(void* arg) noexcept nogil:
    cdef _Jobs* all_jobs = <_Jobs*> arg
    cdef Py_ssize_t i
    cdef _Job* j
    while True:
        i = dvx_next_job(&all_jobs.next)
        if i >= all_jobs.n:
            return NULL
        j = &all_jobs.jobs[i]
        j.err = _scan_c(j.fd, all_jobs.recursive, &j.arena, &j.ents, &j.rec, &j.count, &j.bad)


def scan_level(list fds, list wheres, bint recursive=True, int threads=2):
    """``scan_one`` for several directories (each fd is closed), on up to ``threads``
    threads: a list with, per directory, ``(record, subs)`` or the exception that
    ``scan_one`` would have raised (its subdirectories then closed)."""
    cdef Py_ssize_t n = len(fds), i, k
    cdef _Jobs all_jobs
    cdef pthread_t tids[MAX_SCAN_THREADS]
    cdef int started = 0, t
    cdef _Job* j
    cdef _Ent* e
    if len(wheres) != n:
        raise ValueError("scan_level: one name per directory")
    if threads > MAX_SCAN_THREADS:
        threads = MAX_SCAN_THREADS
    if threads > n:
        threads = <int> n
    all_jobs.jobs = <_Job*> calloc(n + 1, sizeof(_Job))
    if all_jobs.jobs == NULL:
        for fd in fds:
            close(fd)
        raise MemoryError()
    all_jobs.n = n
    all_jobs.next = 0
    all_jobs.recursive = recursive
    for i in range(n):
        all_jobs.jobs[i].fd = fds[i]
    out = []
    try:
        with nogil:
            for t in range(1, threads):
                if pthread_create(&tids[started], NULL, _scan_jobs, &all_jobs) != 0:
                    break  # fewer threads: this one does the rest
                started += 1
            _scan_jobs(&all_jobs)
            for t in range(started):
                pthread_join(tids[t], NULL)
        for i in range(n):
            j = &all_jobs.jobs[i]
            e = <_Ent*> j.ents.data
            if j.err:
                if j.err == ENOMEM:
                    out.append(MemoryError())
                elif j.bad < 0:
                    out.append(OSError(j.err, os.strerror(j.err), wheres[i]))
                else:
                    out.append(OSError(j.err, os.strerror(j.err), os.path.join(wheres[i], _decode(e[j.bad].name))))
                continue
            subs = []
            for k in range(j.count):
                if e[k].name != NULL and e[k].sub >= 0:
                    subs.append((_decode(e[k].name), e[k].sub))
            out.append((PyBytes_FromStringAndSize(j.rec.data, j.rec.len), subs))
        return out
    finally:
        for i in range(n):
            free(all_jobs.jobs[i].arena.data)
            free(all_jobs.jobs[i].ents.data)
            free(all_jobs.jobs[i].rec.data)
        free(all_jobs.jobs)


# -- new files, written whole (dvx.ops.checkout) -------------------------------------
#
# Checkout restores a missing small file as an unnamed file (O_TMPFILE) in its
# directory, filled, then linked into place: the name appears with the whole content
# or not at all, and a kill leaves nothing. This does a batch of them on several
# threads without the GIL (the kernel's work of creating a file is most of the cost).

cdef extern from "<fcntl.h>" nogil:
    int O_WRONLY
    int AT_SYMLINK_FOLLOW
    int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)

cdef extern from *:
    """
    #include <fcntl.h>
    #ifdef O_TMPFILE
    #define DVX_O_TMPFILE O_TMPFILE
    #else
    #define DVX_O_TMPFILE 0  /* not Linux: write_new_files reports EOPNOTSUPP */
    #endif
    """
    int DVX_O_TMPFILE

cdef extern from "<errno.h>" nogil:
    int EOPNOTSUPP

cdef extern from "<sys/stat.h>" nogil:
    int fchmod(int fd, unsigned int mode)

cdef extern from "<stdio.h>" nogil:
    int snprintf(char *s, size_t n, const char *fmt, ...)

cdef extern from "<errno.h>" nogil:
    int ENOSPC, EDQUOT, EROFS

cdef extern from "<unistd.h>" nogil:
    ssize_t write(int fd, const void *buf, size_t count)


cdef struct _NewFile:
    int dirfd
    const char* name
    const char* data
    Py_ssize_t size
    int exe
    int err  # 0: written; -1: not tried (the disk filled up first)
    unsigned long ino
    long st_size
    long long mtime
    long long ctime
    int st_exe


cdef struct _NewFiles:
    _NewFile* files
    Py_ssize_t n
    Py_ssize_t next
    int stop


cdef int _write_new(_NewFile* f) noexcept nogil:
    cdef int fd
    cdef Py_ssize_t done = 0
    cdef ssize_t r
    cdef stat_ns st
    cdef char path[64]
    cdef int err = 0
    if DVX_O_TMPFILE == 0:
        return EOPNOTSUPP
    fd = openat(f.dirfd, ".", O_WRONLY | DVX_O_TMPFILE | O_CLOEXEC, 0o777 if f.exe else 0o666)
    if fd < 0:
        return errno
    while done < f.size:
        r = write(fd, f.data + done, f.size - done)
        if r < 0:
            if errno == EINTR:
                continue
            err = errno
            break
        done += r
    if err == 0 and f.exe:
        if fstat(fd, &st) != 0 or fchmod(fd, st.st_mode | ((st.st_mode & 0o444) >> 2)) != 0:
            err = errno
    if err == 0:
        snprintf(path, 64, "/proc/self/fd/%d", fd)
        if linkat(AT_FDCWD, path, f.dirfd, f.name, AT_SYMLINK_FOLLOW) != 0:
            err = errno
    if err == 0 and fstat(fd, &st) != 0:  # after the link: its ctime is final
        err = errno
    close(fd)  # unlinked and unnamed: nothing stays behind on an error
    if err == 0:
        f.ino = st.st_ino
        f.st_size = st.st_size
        f.mtime = st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
        f.ctime = st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec
        f.st_exe = 1 if st.st_mode & 0o100 else 0
    return err


cdef void* _write_news(void* arg) noexcept nogil:
    cdef _NewFiles* all_files = <_NewFiles*> arg
    cdef Py_ssize_t i
    cdef _NewFile* f
    while True:
        i = dvx_next_job(&all_files.next)
        if i >= all_files.n:
            return NULL
        f = &all_files.files[i]
        if all_files.stop:
            f.err = -1
            continue
        f.err = _write_new(f)
        if f.err == ENOSPC or f.err == EDQUOT or f.err == EROFS:
            all_files.stop = 1  # every other file would fail the same way


def write_new_files(list files, int threads=2):
    """Write each ``(dir_fd, name, data, exec)`` (``name`` and ``data`` bytes) as a new
    file named ``name`` in the directory open at ``dir_fd``: an ``O_TMPFILE`` file,
    filled, chmod'ed like ``restore_file`` when ``exec``, then linked into place (never
    over an existing name). Returns per file its stat key ``(ino, size, mtime_ns,
    ctime_ns, exec)`` taken after the link, or an ``errno`` (``EEXIST``: the name
    exists; ``EOPNOTSUPP``/``EISDIR``/``EINVAL``: no ``O_TMPFILE`` here; ``ENOENT`` from
    the link: no ``/proc``), or -1 for a file not tried after the disk filled up."""
    cdef Py_ssize_t n = len(files), i
    cdef _NewFiles all_files
    cdef pthread_t tids[MAX_SCAN_THREADS]
    cdef int started = 0, t
    cdef _NewFile* f
    if threads > MAX_SCAN_THREADS:
        threads = MAX_SCAN_THREADS
    if threads > n:
        threads = <int> n
    for item in files:
        if not (isinstance(item[1], bytes) and isinstance(item[2], bytes)):
            raise TypeError("write_new_files: names and data must be bytes")
    all_files.files = <_NewFile*> calloc(n + 1, sizeof(_NewFile))
    if all_files.files == NULL:
        raise MemoryError()
    all_files.n = n
    all_files.next = 0
    all_files.stop = 0
    try:
        for i in range(n):
            f = &all_files.files[i]
            item = files[i]
            f.dirfd = item[0]
            f.name = <const char*> (<bytes> item[1])
            f.data = <const char*> (<bytes> item[2])
            f.size = len(<bytes> item[2])
            f.exe = 1 if item[3] else 0
        with nogil:
            for t in range(1, threads):
                if pthread_create(&tids[started], NULL, _write_news, &all_files) != 0:
                    break
                started += 1
            _write_news(&all_files)
            for t in range(started):
                pthread_join(tids[t], NULL)
        out = []
        for i in range(n):
            f = &all_files.files[i]
            if f.err:
                out.append(f.err)
            else:
                out.append((f.ino, f.st_size, f.mtime, f.ctime, f.st_exe))
        return out
    finally:
        free(all_files.files)
