# cython: language_level=3, boundscheck=False, wraparound=False
"""Copying between buffers without holding the GIL.

The pack writer copies every new chunk into an aligned staging buffer for direct I/O
(``dvx/store/local.py``); doing that ``memcpy`` with the GIL released lets the chunker
and hashers keep running. ``dvx/store/local.py`` falls back to a slice assignment when
this module was not built.
"""

from libc.string cimport memcpy


def copy_into(unsigned char[::1] dst, Py_ssize_t offset, const unsigned char[::1] src):
    """Copy all of ``src`` into ``dst`` at ``offset``; returns the number of bytes."""
    cdef Py_ssize_t n = src.shape[0]
    if offset < 0 or offset + n > dst.shape[0]:
        raise ValueError("copy_into: source does not fit in the destination")
    if n:
        with nogil:
            memcpy(&dst[offset], &src[0], n)
    return n
