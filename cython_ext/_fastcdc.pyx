# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython accelerator for canonical FastCDC 2020 (protocols/chunking.md section 3).

Same algorithm as dvx/chunking/reference.py, which is its specification and is
tested against it. The scan runs without the GIL so several files (or the chunk and
hash stages) can use all cores.
"""

from libc.stdint cimport uint64_t
from cpython.mem cimport PyMem_Malloc, PyMem_Free


cdef inline Py_ssize_t _cut(const unsigned char* src, Py_ssize_t n,
                            Py_ssize_t min_size, Py_ssize_t avg_size, Py_ssize_t max_size,
                            uint64_t mask_s, uint64_t mask_l,
                            uint64_t mask_s_ls, uint64_t mask_l_ls,
                            const uint64_t* gear, const uint64_t* gear_ls,
                            uint64_t* out_hash) noexcept nogil:
    cdef Py_ssize_t remaining = n
    cdef Py_ssize_t center = avg_size
    cdef Py_ssize_t index, a, stop
    cdef uint64_t h = 0
    if remaining <= min_size:
        out_hash[0] = 0
        return remaining
    if remaining > max_size:
        remaining = max_size
    elif remaining < center:
        center = remaining
    index = min_size // 2
    stop = center // 2
    while index < stop:
        a = index * 2
        h = (h << 2) + gear_ls[src[a]]
        if (h & mask_s_ls) == 0:
            out_hash[0] = h
            return a
        h = h + gear[src[a + 1]]
        if (h & mask_s) == 0:
            out_hash[0] = h
            return a + 1
        index += 1
    stop = remaining // 2
    while index < stop:
        a = index * 2
        h = (h << 2) + gear_ls[src[a]]
        if (h & mask_l_ls) == 0:
            out_hash[0] = h
            return a
        h = h + gear[src[a + 1]]
        if (h & mask_l) == 0:
            out_hash[0] = h
            return a + 1
        index += 1
    out_hash[0] = h
    return remaining


cdef class Cutter:
    """Holds the gear tables and masks of one parameter set."""

    cdef uint64_t gear[256]
    cdef uint64_t gear_ls[256]
    cdef Py_ssize_t min_size, avg_size, max_size
    cdef uint64_t mask_s, mask_l, mask_s_ls, mask_l_ls

    def __init__(self, params):
        cdef int i
        for i in range(256):
            self.gear[i] = params.gear[i]
            self.gear_ls[i] = params.gear_ls[i]
        self.min_size = params.min_size
        self.avg_size = params.avg_size
        self.max_size = params.max_size
        self.mask_s = params.mask_s
        self.mask_l = params.mask_l
        self.mask_s_ls = params.mask_s_ls
        self.mask_l_ls = params.mask_l_ls

    def find_cuts(self, const unsigned char[::1] data, Py_ssize_t length, bint eof):
        """Chunk end offsets in data[:length] and their gear hashes (see reference.find_cuts)."""
        if length > data.shape[0]:
            raise ValueError(f"length {length} exceeds buffer size {data.shape[0]}")
        cdef Py_ssize_t cap = length // (self.min_size - 1 if self.min_size > 1 else 1) + 2
        cdef Py_ssize_t* ends = <Py_ssize_t*> PyMem_Malloc(cap * sizeof(Py_ssize_t))
        cdef uint64_t* hashes = <uint64_t*> PyMem_Malloc(cap * sizeof(uint64_t))
        cdef Py_ssize_t count = 0, pos = 0, n
        cdef const unsigned char* src = &data[0] if data.shape[0] > 0 else NULL
        if ends == NULL or hashes == NULL:
            PyMem_Free(ends)
            PyMem_Free(hashes)
            raise MemoryError()
        try:
            with nogil:
                while pos < length and (eof or length - pos >= self.max_size):
                    n = _cut(src + pos, length - pos, self.min_size, self.avg_size,
                             self.max_size, self.mask_s, self.mask_l, self.mask_s_ls,
                             self.mask_l_ls, self.gear, self.gear_ls, &hashes[count])
                    pos += n
                    ends[count] = pos
                    count += 1
            return [ends[i] for i in range(count)], [hashes[i] for i in range(count)]
        finally:
            PyMem_Free(ends)
            PyMem_Free(hashes)
