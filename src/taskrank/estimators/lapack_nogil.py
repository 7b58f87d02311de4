"""The four BLAS/LAPACK calls of batched LogME, called without holding Python's GIL.

scipy's ``scipy.linalg.blas``/``lapack`` wrappers keep the GIL during the call, so maps scored
in several threads ran one after another (measured: two threads calling dsytrd took exactly
twice as long as one). scipy also exports the same routines as C function pointers
(``cython_blas``/``cython_lapack``); calling those through ctypes releases the GIL, so the
threads really run side by side, and skips the wrappers' argument checking.

Every function works in place on Fortran-ordered float64 arrays, as LAPACK does, and falls back
to scipy's wrappers (same results, GIL held) when the pointers are not available.
"""

from __future__ import annotations

import ctypes

import numpy as np
from scipy.linalg import blas, lapack

_P = ctypes.POINTER(ctypes.c_double)
_I = ctypes.POINTER(ctypes.c_int)
_C = ctypes.c_char_p


def _function(module, name: str, *argtypes):
    try:
        capsule = module.__pyx_capi__[name]
        get_name = ctypes.pythonapi.PyCapsule_GetName
        get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        return ctypes.CFUNCTYPE(None, *argtypes)(get_pointer(capsule, get_name(capsule)))
    except Exception:  # pragma: no cover - another scipy build: use its Python wrappers
        return None


try:
    from scipy.linalg import cython_blas, cython_lapack

    _dtrmm = _function(cython_blas, "dtrmm", _C, _C, _C, _C, _I, _I, _P, _P, _I, _P, _I)
    _dsyrk = _function(cython_blas, "dsyrk", _C, _C, _I, _I, _P, _P, _I, _P, _P, _I)
    _dsytrd = _function(cython_lapack, "dsytrd", _C, _I, _P, _I, _P, _P, _P, _P, _I, _I)
    _dormqr = _function(cython_lapack, "dormqr", _C, _C, _I, _I, _I, _P, _I, _P, _P, _I, _P, _I, _I)
except ImportError:  # pragma: no cover
    _dtrmm = _dsyrk = _dsytrd = _dormqr = None

AVAILABLE = None not in (_dtrmm, _dsyrk, _dsytrd, _dormqr)


def _int(value: int):
    return ctypes.byref(ctypes.c_int(int(value)))


def _dbl(value: float):
    return ctypes.byref(ctypes.c_double(float(value)))


def _ptr(array: np.ndarray, offset: int = 0):
    return ctypes.cast(array.ctypes.data + 8 * offset, _P)


def _check(array: np.ndarray) -> None:
    if array.dtype != np.float64 or not array.flags.f_contiguous:
        raise ValueError("expected a Fortran-ordered float64 array")


def trmm_upper(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b := r @ b in place, r upper triangular (m, m), b (m, n)."""
    _check(r), _check(b)
    if not AVAILABLE:
        return blas.dtrmm(1.0, r, b, side=0, lower=0, overwrite_b=1)
    m, n = b.shape
    _dtrmm(b"L", b"U", b"N", b"N", _int(m), _int(n), _dbl(1.0), _ptr(r), _int(r.shape[0]), _ptr(b), _int(m))
    return b


def gram_lower(b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The lower half of b.T @ b (n, n) for b (k, n), into ``out`` (n, n) if given."""
    _check(b)
    if not AVAILABLE:
        return blas.dsyrk(1.0, b, trans=1, lower=1)
    k, n = b.shape
    c = np.empty((n, n), order="F") if out is None else out  # beta = 0: SYRK writes the lower half only
    _check(c)
    if c.shape != (n, n):
        raise ValueError(f"out must be ({n}, {n}), got {c.shape}")
    _dsyrk(b"L", b"T", _int(n), _int(k), _dbl(1.0), _ptr(b), _int(k), _dbl(0.0), _ptr(c), _int(n))
    return c


def tridiagonalise_lower(a: np.ndarray, block: int = 8):
    """Householder reduction of symmetric a (lower half) to tridiagonal T = Q^T a Q, in place.

    Returns (packed reflectors, diagonal, off-diagonal, tau, info) like ``lapack.dsytrd``.
    ``block``: the workspace admits blocks of this many columns (measured at m = 384, one thread:
    8 → 2.53 ms, 16 → 2.59, 32 → 2.79, unblocked 3.85).
    """
    _check(a)
    m = a.shape[0]
    if not AVAILABLE:
        return lapack.dsytrd(a, lower=1, lwork=block * m, overwrite_a=1)
    diag, off, tau = np.empty(m), np.empty(max(m - 1, 1)), np.empty(max(m - 1, 1))
    work, info = np.empty(block * m), ctypes.c_int(0)
    _dsytrd(b"L", _int(m), _ptr(a), _int(m), _ptr(diag), _ptr(off), _ptr(tau), _ptr(work), _int(block * m),
            ctypes.byref(info))
    return a, diag, off[: m - 1], tau[: m - 1], info.value


def apply_reflectors_transposed(packed: np.ndarray, tau: np.ndarray, w: np.ndarray) -> int:
    """w[1:] := Q^T w[1:] in place, for the Q that ``tridiagonalise_lower`` stored in ``packed``."""
    _check(packed), _check(w)
    m, cols = w.shape
    if m < 2:
        return 0
    # lwork = cols, too small for the blocked code: dormqr then applies the reflectors one by one
    # (dorm2r), O(m^2 cols); the blocked code first forms 64 x 64 triangular factors, O(m^2 64),
    # measured 0.85 vs 0.15 ms at m = 384, 3 columns
    if not AVAILABLE:
        out, _, info = lapack.dormqr("L", "T", packed[1:, : m - 1], tau[: m - 1], w[1:], lwork=max(cols, 1))
        w[1:] = out
        return info
    lwork, info = max(cols, 1), ctypes.c_int(0)
    work, tau = np.empty(lwork), np.ascontiguousarray(tau[: m - 1], dtype=np.float64)
    _dormqr(b"L", b"T", _int(m - 1), _int(cols), _int(m - 1), _ptr(packed, 1), _int(packed.shape[0]),
            _ptr(tau), _ptr(w, 1), _int(m), _ptr(work), _int(lwork), ctypes.byref(info))
    return info.value
