"""The GIL-free BLAS/LAPACK calls equal scipy's wrappers, and batched LogME does not depend on them."""

import numpy as np
import pytest
from scipy.linalg import lapack

from taskrank.estimators import lapack_nogil
from taskrank.estimators.logme import score_linear_maps


@pytest.fixture()
def rng():
    return np.random.default_rng(3)


def test_pointers_found():
    assert lapack_nogil.AVAILABLE  # scipy ships cython_blas / cython_lapack


def test_each_call_equals_scipy(rng):
    m, n = 37, 29
    r = np.asfortranarray(np.triu(rng.normal(size=(m, m))))
    b = np.asfortranarray(rng.normal(size=(m, n)))
    np.testing.assert_allclose(lapack_nogil.trmm_upper(r, b.copy(order="F")), r @ b, rtol=1e-12, atol=1e-12)

    gram = lapack_nogil.gram_lower(b)
    np.testing.assert_allclose(np.tril(gram), np.tril(b.T @ b), rtol=1e-12, atol=1e-12)

    a = np.asfortranarray(b.T @ b)
    packed, diag, off, tau, info = lapack_nogil.tridiagonalise_lower(a.copy(order="F"))
    ref_packed, ref_diag, ref_off, ref_tau, ref_info = lapack.dsytrd(a.copy(order="F"), lower=1)
    assert info == ref_info == 0
    for got, ref in ((diag, ref_diag), (off, ref_off), (tau, ref_tau), (np.tril(packed), np.tril(ref_packed))):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)

    w = np.asfortranarray(rng.normal(size=(n, 3)))
    ref = lapack.dormqr("L", "T", ref_packed[1:, : n - 1], ref_tau[: n - 1], w[1:].copy(order="F"), lwork=n * 3)[0]
    got = w.copy(order="F")
    assert lapack_nogil.apply_reflectors_transposed(packed, tau, got) == 0
    np.testing.assert_allclose(got[1:], ref, rtol=1e-10, atol=1e-10)
    assert got[0].tolist() == w[0].tolist()
    # and Q^T A Q is the tridiagonal T: the reflectors applied to A's columns reproduce T's spectrum
    np.testing.assert_allclose(np.linalg.eigvalsh(np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)),
                               np.linalg.eigvalsh(a), rtol=1e-10, atol=1e-9)


def test_rejects_c_ordered_arrays(rng):
    with pytest.raises(ValueError, match="Fortran"):
        lapack_nogil.gram_lower(np.ascontiguousarray(rng.normal(size=(5, 4))))


def test_batched_scores_same_through_scipy_wrappers(rng, monkeypatch):
    f = rng.normal(size=(120, 16))
    y = rng.integers(0, 3, 120)
    weights = rng.normal(size=(6, 16, 16))
    biases = rng.normal(size=(6, 16))
    fast = score_linear_maps(f, y, weights, biases, threads=2)
    monkeypatch.setattr(lapack_nogil, "AVAILABLE", False)
    np.testing.assert_allclose(score_linear_maps(f, y, weights, biases, threads=2), fast, rtol=1e-10)
