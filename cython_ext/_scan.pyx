# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython directory scanner for `dvx status` / `dvx add` (dvx.workspace.scan_dir is the
pure-Python reference, with identical results).

One fstatat(AT_SYMLINK_NOFOLLOW) per entry through directory file descriptors
(openat + O_NOFOLLOW), so a symlink is never followed and a directory swapped for a
link mid-scan is not entered.
"""

from libc.errno cimport errno, ENOENT, ENOTDIR, ELOOP
from libc.string cimport strcmp
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
