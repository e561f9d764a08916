"""Build the optional Cython accelerators (``dvx.chunking._fastcdc``, ``dvx._scan``,
``dvx._buffers``, ``dvx._trees``).

If the C compiler or Cython is missing the package still installs: DVX then falls back
to the pure-Python reference chunker (slowly, with a warning).
"""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - depends on the build machine
            print(f"warning: Cython accelerator not built ({exc}); using the pure-Python chunker")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover
            print(f"warning: could not build {ext.name} ({exc}); using the pure-Python chunker")


def extensions():  # type: ignore[no-untyped-def]
    if os.environ.get("DVX_NO_CYTHON"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    from setuptools import Extension

    exts = [
        Extension("dvx.chunking._fastcdc", ["cython_ext/_fastcdc.pyx"], extra_compile_args=["-O3"]),
        Extension("dvx._scan", ["cython_ext/_scan.pyx"], extra_compile_args=["-O2"]),
        Extension("dvx._buffers", ["cython_ext/_buffers.pyx"], extra_compile_args=["-O2"]),
        Extension("dvx._trees", ["cython_ext/_trees.pyx"], extra_compile_args=["-O2"]),
    ]
    return cythonize(exts, language_level=3, compiler_directives={"boundscheck": False,
                                                                   "wraparound": False,
                                                                   "cdivision": True})


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
