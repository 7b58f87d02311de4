"""LogME (single and batched over linear maps), LEEP and NCE — numpy/scipy only, float64.

LogME (You et al., ICML 2021; fixed-point version, JMLR 2022) is the log marginal likelihood
(evidence) per example of a Bayesian linear model y = F w + noise, w ~ N(0, I/alpha),
noise ~ N(0, 1/beta), maximised over alpha and beta.  It needs only the eigenvalues sigma of F^T F
and the projections z of F^T y on its eigenvectors; the evidence depends on lambda = alpha / beta
and beta, and for a given lambda the best beta is closed-form, so the search is one-dimensional.

Where this module deliberately differs from the public code (thuml/LogME, hf-dataset-selector),
which matters when N < D:

* The log-determinant runs over all D directions: log det(alpha I + beta F^T F) =
  D log alpha + sum_{sigma > 0} log(1 + sigma / lambda).  Its D log alpha cancels the prior's
  D/2 log alpha exactly, so we evaluate ``-1/2 sum log1p(sigma / lambda)`` over the non-zero
  eigenvalues only.  Summing log(alpha + beta sigma) over the non-zero sigma alone (as the public
  code does) leaves a spurious (D - rank)/2 log alpha in the score.
* The alpha/beta fixed point runs until lambda changes by less than 1e-12 relatively (the public
  code stops after 11-50 steps at 1e-3, far from converged when N < D).  It is solved by a
  safeguarded Newton's method on log step(lambda) - log lambda, whose sign is the sign of the
  evidence's slope: from the same start (the mean eigenvalue) it reaches the maximum that the plain
  iteration lambda <- step(lambda) heads for, in 4-8 steps where the plain iteration crawls for
  hundreds or thousands (its rate tends to 1 on a nearly flat evidence, typical for N < D).
* When N < D the features can interpolate the labels and the supremum may lie at lambda -> 0; we
  follow the fixed point there and report the limit, using the best beta for the final lambda.

``score_linear_maps`` scores many linear maps (Embedding Space Maps) of one target without ever
forming the mapped N x D_out features: with G = [F, 1] and W' = [W, b], the mapped Gram matrix is
W' (G^T G) W'^T and the mapped F^T y is W' (G^T y), so per map the work is one D_out x D_out
symmetric problem whatever N is — and only its tridiagonal form is needed, neither its
eigenvectors nor, mostly, its eigenvalues (see ``_reduce_map`` and ``_finish_maps``).  Maps are
reduced side by side in threads (their BLAS/LAPACK calls release the GIL: ``lapack_nogil``), each
with single-threaded BLAS, while the fixed points of the previous batch run together.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
from scipy.linalg import blas, lapack
from scipy.linalg import eigh_tridiagonal
from scipy.linalg import qr as scipy_qr

from .. import environment
from . import lapack_nogil

__all__ = ["logme", "score_linear_maps", "leep", "nce"]

_EPS = np.finfo(np.float64).eps
_LOG_2PI = float(np.log(2.0 * np.pi))
_RTOL = 1e-12  # relative change of lambda at which the fixed point has converged
_LAMBDA_RANGE = 1e13  # lambda kept in [smax / 1e13, smax * 1e13]; the evidence is flat beyond


# --------------------------------------------------------------------------------------------
# input checks


def _as_features(features, name: str = "features") -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (examples x dimensions), got shape {f.shape}")
    if f.shape[0] < 2 or f.shape[1] < 1:
        raise ValueError(f"{name} need at least 2 examples and 1 dimension, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {f.dtype}")
    f = f.astype(np.float64, copy=False)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return f


def _as_targets(labels, n: int, regression: bool) -> np.ndarray:
    """Target columns (N, C): one-vs-rest indicators of the classes present, or regression columns."""
    y = np.asarray(labels)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"labels have {y.shape[0] if y.ndim else 0} rows but features have {n}")
    if regression:
        if y.ndim not in (1, 2):
            raise ValueError(f"regression labels must have shape (N,) or (N, T), got {y.shape}")
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
            raise ValueError(f"regression labels must be real numbers, got dtype {y.dtype}")
        y = y.astype(np.float64).reshape(n, -1)
        if not np.isfinite(y).all():
            raise ValueError("regression labels contain NaN or infinite values")
        zero = ~(y != 0).any(axis=0)
        if zero.any():
            raise ValueError(f"regression label column(s) {np.flatnonzero(zero).tolist()} are all zero")
        return y
    if y.ndim != 1:
        raise ValueError(f"classification labels must have shape (N,), got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
            y = y.astype(np.int64)
        else:
            raise ValueError(
                f"classification labels must be integer class ids, got dtype {y.dtype} "
                "(pass regression=True for real-valued targets)"
            )
    _, idx = np.unique(y, return_inverse=True)
    idx = idx.ravel()
    onehot = np.zeros((n, idx.max() + 1), dtype=np.float64)
    onehot[np.arange(n), idx] = 1.0
    return onehot


# --------------------------------------------------------------------------------------------
# the fixed point
#
# With d_i = 1 / (lambda + sigma_i) over the m eigenvalues at hand (m <= n):
#   gamma     = sum sigma_i d_i,  n - gamma = (n - m) + sum lambda d_i   (both free of cancellation)
#   |m|^2     = sum z_i^2 d_i^2                   (posterior mean of w)
#   res       = |y - F m|^2
#   lambda   <- step(lambda) = alpha / beta = (gamma / |m|^2) / ((n - gamma) / res)
# and at the end the evidence per example with beta = n / (res + lambda |m|^2) (best for lambda):
#   [n/2 log beta - 1/2 sum log1p(sigma / lambda) - n/2 - n/2 log 2 pi] / n.
#
# The fixed point is the root of h(u) = log step(e^u) - u, u = log lambda; h has the sign of the
# evidence's slope.  Its derivative needs one more sum, m3 = sum z_i^2 d_i^3:
#   d gamma = -sum sigma_i d_i^2,  d |m|^2 = -2 m3,  d res = 2 lambda m3   (per d lambda),
#   h'(u) = lambda (d gamma / gamma + d gamma / (n - gamma) + 2 m3 / |m|^2 + d res / res) - 1.


def _fixed_point(evaluate, lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int = 100):
    """Roots of h(log lambda) for many columns at once, by Newton's method in u = log lambda.

    ``evaluate(lam, idx)`` returns (h, h') for the columns ``idx`` at ``lam``.  Safeguards: the sign
    of h brackets the root (h > 0: it lies above), a Newton step is taken only downhill in h (h' < 0,
    a maximum of the evidence) and inside the bracket, else the plain step u + h (the classic
    fixed-point iteration, clipped to [lo, hi]) if inside, else bisection.  From the same start it
    reaches the fixed point that the plain iteration heads for, in 4-8 steps where that takes 10 to
    thousands (its rate tends to 1 on a flat evidence), and ends at lo or hi where the evidence keeps
    rising to the edge of the range.  Stops, as the plain iteration, when lambda changes by at most
    1e-12 relatively.  Returns (lambda, converged per column).
    """
    lam = np.array(lam, dtype=np.float64)
    u = np.log(lam)
    log_lo, log_hi = np.log(lo), np.log(hi)
    u_lo, u_hi = log_lo.copy(), log_hi.copy()
    idx = np.arange(lam.size)
    for _ in range(max_iter):
        if idx.size == 0:
            break
        h, dh = evaluate(lam[idx], idx)
        ui = u[idx]
        lo_i = u_lo[idx] = np.where(h > 0, ui, u_lo[idx])
        hi_i = u_hi[idx] = np.where(h < 0, ui, u_hi[idx])
        downhill = dh < 0
        newton = ui - h / np.where(downhill, dh, -1.0)
        plain = np.minimum(np.maximum(ui + h, log_lo[idx]), log_hi[idx])
        new = np.where((plain >= lo_i) & (plain <= hi_i), plain, 0.5 * (lo_i + hi_i))
        new = np.where(downhill & (newton >= lo_i) & (newton <= hi_i), newton, new)
        lam_new = np.exp(new)
        done = np.abs(lam_new - lam[idx]) <= _RTOL * lam[idx]
        lam[idx], u[idx] = lam_new, new
        idx = idx[~done]
    converged = np.ones(lam.size, dtype=bool)
    converged[idx] = False
    return lam, converged


def _h_and_slope(lam, n, m, gamma, n_gamma, dgamma, m2, m3, res, dres):
    """h = log step(lambda) - log lambda and dh / d log lambda (see above), vectorised."""
    h = np.log(gamma * res / (n_gamma * m2)) - np.log(lam)
    dh = lam * (dgamma / gamma + dgamma / n_gamma + 2.0 * m3 / m2 + dres / res) - 1.0
    return h, dh


def _clean_eigenvalues(s: np.ndarray, size: int) -> np.ndarray:
    """Eigenvalues of a Gram matrix with rounding noise (s <= size * eps * max s) set to exactly 0."""
    s = np.asarray(s, dtype=np.float64)
    tol = np.maximum(s.max(axis=-1, keepdims=True), 0.0) * size * _EPS
    return np.where(s > tol, s, 0.0)


def _no_signal_evidence(n: int, yy):
    """The limit lambda -> inf (F^T y = 0): m = 0 and beta = n / y^T y."""
    return 0.5 * np.log(n / np.asarray(yy, dtype=np.float64)) - 0.5 - 0.5 * _LOG_2PI


def _evidence_from_spectrum(
    sig: np.ndarray,
    w: np.ndarray,
    n: int,
    *,
    yy: np.ndarray | None = None,
    rest: np.ndarray | None = None,
    max_iter: int = 200,
) -> np.ndarray:
    """Maximised evidence per example for many target columns at once, vectorised.

    sig: (..., m) cleaned eigenvalues; w: (..., C, m) weights in one of two exact forms, chosen by
    the caller for numerical reasons:

    * ``yy`` (y^T y per column) given: ``w`` are z^2, squared projections of F^T y on the
      eigenvectors of F^T F; res = yy - sum z^2 (2 lambda + sigma) d^2 (no division by sigma).
    * ``rest`` given: ``w`` are x^2, squared coordinates of y along orthonormal eigenvectors of
      F F^T spanning a space that holds y's fitted part, ``rest`` is |y|^2 outside that space, and
      res = rest + sum x^2 lambda^2 d^2, free of cancellation even for a near-exact fit (N < D).

    Returns (..., C) evidence / n.
    """
    sig = np.asarray(sig, dtype=np.float64)[..., None, :]  # (..., 1, m)
    w = np.asarray(w, dtype=np.float64)
    m = sig.shape[-1]
    if m > n:
        raise ValueError(f"internal: {m} eigenvalues for {n} examples")
    exact = rest is not None
    z2 = w * sig if exact else w
    base = np.broadcast_to(np.asarray(rest if exact else yy, dtype=np.float64), w.shape[:-1])
    total = base + w.sum(-1) if exact else base  # y^T y
    smax = sig.max(axis=-1)
    has_signal = (z2.max(axis=-1) > 0) & (smax > 0)

    def parts(lam, s, zz, ww, b, tot):
        lam = lam[..., None]
        d = 1.0 / (lam + s)
        n_gamma = (n - m) + (lam * d).sum(-1)
        m2 = (zz * d * d).sum(-1)
        if exact:
            res = b + (ww * (lam * d) ** 2).sum(-1)
        else:  # the difference can round below zero for a near-perfect fit
            res = np.maximum(b - (zz * (2.0 * lam + s) * d * d).sum(-1), tot * _EPS)
        return n_gamma, m2, res, d

    # iterate only the columns that have not converged, flattened to (columns, m)
    shape = base.shape

    def flat(a, tail=()):
        return np.ascontiguousarray(np.broadcast_to(a, shape + tail)).reshape((-1,) + tail)

    sig_f, z2_f, w_f = flat(sig, (m,)), flat(z2, (m,)), flat(w, (m,))
    base_f, total_f = flat(base), flat(total)
    smax_f = flat(np.where(smax > 0, smax, 1.0))
    lo, hi = smax_f / _LAMBDA_RANGE, smax_f * _LAMBDA_RANGE
    positive = (sig_f > 0).sum(-1)
    lam = np.where(positive > 0, sig_f.sum(-1) / np.maximum(positive, 1), 1.0)  # mean non-zero sigma

    def evaluate(lam_, i):
        s, zz, tot = sig_f[i], z2_f[i], total_f[i]
        n_gamma, m2, res, d = parts(lam_, s, zz, w_f[i], base_f[i], tot)
        sd = s * d
        gamma = sd.sum(-1)
        dgamma = -(sd * d).sum(-1)
        m3 = (zz * d * d * d).sum(-1)
        floored = ~exact & (res <= tot * _EPS)
        dres = np.where(floored, 0.0, 2.0 * lam_ * m3)
        return _h_and_slope(lam_, n, m, gamma, n_gamma, dgamma, m2, m3, res, dres)

    idx = np.flatnonzero(flat(has_signal))
    if idx.size:
        lam[idx], _ = _fixed_point(lambda l_, j: evaluate(l_, idx[j]), lam[idx], lo[idx], hi[idx], max_iter)

    lam = np.where(has_signal, lam.reshape(shape), 1.0)
    _, m2, res, _ = parts(lam, sig, z2, w, base, total)
    with np.errstate(divide="ignore"):
        logdet = np.log1p(sig / lam[..., None]).sum(-1)
        ev = 0.5 * np.log(n / (res + lam * m2)) - 0.5 * logdet / n - 0.5 - 0.5 * _LOG_2PI
    return np.where(has_signal, ev, _no_signal_evidence(n, total))


class _NotPositiveDefinite(ArithmeticError):
    pass


class _Shifted:
    """T_j + lambda_j I for several columns j at once, each block on the diagonal of one
    block-diagonal tridiagonal matrix (zero coupling between the blocks, so LAPACK's O(k m) LDL^T
    factorisation and solves treat each block exactly as alone).  ``diag`` (m,) or (k, m) and
    ``off`` (m - 1,) or (k, m - 1): one T for every column, or one per column (several maps)."""

    def __init__(self, diag, off, w, yy):
        self.m = diag.shape[-1]
        k = w.shape[1]
        self.diag = np.broadcast_to(diag, (k, self.m))
        self.off = np.zeros((k, self.m))
        self.off[:, :-1] = off
        self.w = np.ascontiguousarray(w.T)  # (k, m)
        self.yy = yy
        self.floor = yy * _EPS

    def factor(self, lam, i):
        """LDL^T of the blocks for columns ``i`` at ``lam``: pivots D and multipliers l, (len(i) * m,)."""
        dd, ll, info = lapack.dpttrf((self.diag[i] + lam[:, None]).ravel(), self.off[i].ravel()[:-1])
        if info != 0:
            raise _NotPositiveDefinite
        return dd, ll

    def solve(self, dd, ll, b):
        x, info = lapack.dpttrs(dd, ll, b)
        if info != 0:
            raise _NotPositiveDefinite
        return x.reshape(-1)

    def sums(self, lam, i, third=True):
        """Per column: |m|^2 = sum z^2 d^2, m3 = sum z^2 d^3, res (floored at y^T y eps) and whether
        it was floored, and the factorisation.  With x = (T + lambda)^-1 w: w.x = sum z^2 d, x.x."""
        dd, ll = self.factor(lam, i)
        w = self.w[i].reshape(-1)
        x = self.solve(dd, ll, w)
        k = len(i)
        m2 = np.einsum("ij,ij->i", x.reshape(k, -1), x.reshape(k, -1))
        wx = np.einsum("ij,ij->i", w.reshape(k, -1), x.reshape(k, -1))
        m3 = None
        if third:
            x2 = self.solve(dd, ll, x)
            m3 = np.einsum("ij,ij->i", x.reshape(k, -1), x2.reshape(k, -1))
        res = self.yy[i] - wx - lam * m2  # = yy - sum z^2 (2 lambda + sigma) d^2
        floored = res <= self.floor[i]  # rounded below zero for a near-perfect fit
        if (m2 <= 0).any():
            raise _NotPositiveDefinite
        return m2, m3, np.where(floored, self.floor[i], res), floored, dd, ll


def _evidence_tridiagonal_ldl(diag, off, w, yy, n: int, max_iter: int = 100) -> list[np.ndarray | None]:
    """Evidence per example for every column of ``w`` given A = Q T Q^T (T tridiagonal: ``diag``,
    ``off``) and w = Q^T c, without T's eigenvalues or eigenvectors — for K maps at once: ``diag``
    (K, m), ``off`` (K, m - 1), ``w`` (K, m, C).  Returns, per map, (C,) evidences or None.

    Every sum over T's eigenvalues theta the fixed point needs is a spectral function of T that
    the LDL^T factorisation of T + lambda (pivots D_k, multipliers l_k; LAPACK dpttrf, O(m)) gives:
    log det = sum log D_k; with D'_k = dD_k / dlambda = 1 + l_{k-1}^2 D'_{k-1} (all terms positive)
    tr (T + lambda)^-1 = sum d = sum D'_k / D_k, so n - gamma = (n - m) + lambda sum d; and with
    D''_k = l_{k-1}^2 (D''_{k-1} - 2 D'_{k-1}^2 / D_{k-1}) also sum d^2 = sum (D'_k / D_k)^2 -
    D''_k / D_k for Newton's slope.  The c-dependent sums come from solves as in
    ``_evidence_tridiagonal``.  This saves the O(m^2) eigenvalues of T (dsterf), the largest cost
    after the reduction.  All maps' columns iterate together (one short Python loop per batch of
    maps instead of one per map); each column's arithmetic is the same as alone.

    A map gets a result only where its T is certified well inside full rank (smallest eigenvalue
    >= 1 / tr T^-1 > m^2 eps tr T, so cleaning would drop none) and its fixed point lies well inside
    the lambda range; else None, and the caller uses T's eigenvalues (same start, same iteration).
    """
    diag, off, w = np.atleast_2d(diag), np.atleast_2d(off), np.asarray(w)
    w = w[None] if w.ndim == 2 else w
    k_maps, m = diag.shape
    yy = np.asarray(yy, dtype=np.float64)
    results: list[np.ndarray | None] = [None] * k_maps
    col_map, col_class, col_trace = [], [], []
    for k in range(k_maps):  # certify each T: full rank, well inside
        cols = np.flatnonzero(w[k].any(axis=0))
        trace = float(diag[k].sum())
        if trace <= 0 or cols.size == 0:
            continue
        dd, ll, info = lapack.dpttrf(diag[k], off[k])
        if info != 0:
            continue
        band = np.ones((2, m), order="F")
        band[1, : m - 1] = -(ll * ll)
        inv_trace = float((blas.dtbsv(1, band, np.ones(m), lower=1) / dd).sum())
        if not 1.0 / inv_trace > m * m * _EPS * trace:
            continue
        col_map += [k] * cols.size
        col_class += cols.tolist()
        col_trace += [trace] * cols.size
    if not col_map:
        return results
    col_map, col_class, col_trace = np.array(col_map), np.array(col_class), np.array(col_trace)
    n_cols = col_map.size
    shifted = _Shifted(diag[col_map], off[col_map], w[col_map, :, col_class].T, yy[col_class])
    band = np.ones((2, n_cols * m), order="F")  # unit lower bidiagonal, band storage: row 1 below
    ones = np.ones(n_cols * m)

    def derivatives(lam, dd, ll, second=True):
        """sum d = tr (T + lambda)^-1 and sum d^2 per block, from the pivot recurrences."""
        k = dd.size // m
        band[1, : k * m - 1] = -(ll * ll)
        lb = band[:, : k * m]
        d1 = blas.dtbsv(1, lb, ones[: k * m], lower=1)  # D' (a new array: ones is kept)
        r1 = d1 / dd
        s1 = r1.reshape(k, m).sum(-1)
        if not second:
            return s1, None
        rhs = np.zeros(k * m)
        rhs[1:] = -2.0 * ll * ll * d1[:-1] * r1[:-1]
        d2 = blas.dtbsv(1, lb, rhs, lower=1)  # D''
        s2 = (r1 * r1 - d2 / dd).reshape(k, m).sum(-1)
        return s1, s2

    def evaluate(lam_, i):
        m2, m3, res, floored, dd_, ll_ = shifted.sums(lam_, i)
        s1, s2 = derivatives(lam_, dd_, ll_)
        gamma = m - lam_ * s1
        n_gamma = (n - m) + lam_ * s1
        dgamma = -(s1 - lam_ * s2)  # slope only: its rounding does not move the root
        dres = np.where(floored, 0.0, 2.0 * lam_ * m3)
        if (gamma <= 0).any():
            raise _NotPositiveDefinite
        return _h_and_slope(lam_, n, m, gamma, n_gamma, dgamma, m2, m3, res, dres)

    lo = col_trace / _LAMBDA_RANGE  # within [smax / 1e13, smax * 1e13]:
    hi = col_trace / m * _LAMBDA_RANGE  # tr T / m <= smax <= tr T
    try:
        lam, converged = _fixed_point(evaluate, col_trace / m, lo, hi, max_iter)
        m2, _, res, _, dd, _ = shifted.sums(lam, np.arange(n_cols), third=False)
    except _NotPositiveDefinite:  # rounding in one map: take each map alone
        if k_maps == 1:
            return results
        return [_evidence_tridiagonal_ldl(diag[k], off[k], w[k], yy, n, max_iter)[0] for k in range(k_maps)]
    logdet = np.log(dd.reshape(n_cols, m) / lam[:, None]).sum(-1)  # sum log1p(theta / lambda)
    evidence = 0.5 * np.log(n / (res + lam * m2)) - 0.5 * logdet / n - 0.5 - 0.5 * _LOG_2PI
    bad = ~converged | (lam <= lo * 1e3) | (lam >= hi * 1e-3)
    for k in np.unique(col_map):
        mine = col_map == k
        if not bad[mine].any():
            out = np.array(_no_signal_evidence(n, yy), dtype=np.float64)
            out[col_class[mine]] = evidence[mine]
            results[k] = out
    return results


def _evidence_tridiagonal(diag, off, w, theta, yy, n: int, max_iter: int = 100) -> np.ndarray | None:
    """The same fixed point for every column of ``w`` (m, C), given A = Q T Q^T (T tridiagonal:
    ``diag``, ``off``), w = Q^T c and T's cleaned eigenvalues ``theta`` — without T's eigenvectors.

    The c-dependent sums are rational functions of lambda that tridiagonal solves give exactly:
    x = (T + lambda)^-1 w has w.x = sum z^2 d and x.x = sum z^2 d^2 = |m|^2, and one more solve gives
    x.(T + lambda)^-1 x = sum z^2 d^3 for Newton's step.  Each step is O(m) (LAPACK dpttrf, dpttrs,
    all columns in one call), which saves computing eigenvectors of T.  Returns (C,) evidence per
    example, or None if a solve is not positive definite (rounding), the search does not converge
    or ends at the edge of the lambda range: the caller then uses the eigenvectors.
    """
    m = diag.shape[0]
    smax = float(theta.max())
    yy = np.asarray(yy, dtype=np.float64)
    out = np.array(_no_signal_evidence(n, yy), dtype=np.float64)
    cols = np.flatnonzero(w.any(axis=0))
    if smax <= 0 or cols.size == 0:
        return out
    shifted = _Shifted(diag, off, w[:, cols], yy[cols])
    lo, hi = np.full(cols.size, smax / _LAMBDA_RANGE), np.full(cols.size, smax * _LAMBDA_RANGE)
    lam0 = np.full(cols.size, theta.sum() / np.count_nonzero(theta))  # mean non-zero eigenvalue

    def evaluate(lam_, i):
        m2, m3, res, floored, _, _ = shifted.sums(lam_, i)
        d = 1.0 / (theta + lam_[:, None])
        td = theta * d
        n_gamma = (n - m) + lam_ * d.sum(-1)
        dres = np.where(floored, 0.0, 2.0 * lam_ * m3)
        return _h_and_slope(lam_, n, m, td.sum(-1), n_gamma, -(td * d).sum(-1), m2, m3, res, dres)

    try:
        lam, converged = _fixed_point(evaluate, lam0, lo, hi, max_iter)
        if not converged.all() or ((lam <= lo * 1e3) | (lam >= hi * 1e-3)).any():
            return None  # at the edge: the eigenvector path evaluates it without ill-conditioned solves
        m2, _, res, _, _, _ = shifted.sums(lam, np.arange(cols.size), third=False)
    except _NotPositiveDefinite:
        return None
    logdet = np.log1p(theta / lam[:, None]).sum(-1)
    out[cols] = 0.5 * np.log(n / (res + lam * m2)) - 0.5 * logdet / n - 0.5 - 0.5 * _LOG_2PI
    return out


# --------------------------------------------------------------------------------------------
# public API


def logme(features, labels, regression: bool = False) -> float:
    """LogME evidence per example of ``labels`` given ``features`` (N, D); higher = more transferable.

    Classification: integer class ids (N,), one-vs-rest indicator column per class present,
    evidences averaged over classes.  Regression: floats (N,) or (N, T), averaged over columns.
    Works in the D x D covariance space when N >= D and in the N x N Gram space otherwise, so the
    cost is O(N D min(N, D)); the zero eigenvalues of F^T F beyond rank N are accounted for exactly
    (see the module docstring).
    """
    f = _as_features(features)
    n, d = f.shape
    y = _as_targets(labels, n, regression)
    if n >= d:
        s, v = np.linalg.eigh(f.T @ f)
        z = v.T @ (f.T @ y)  # (D, C)
        ev = _evidence_from_spectrum(_clean_eigenvalues(s, d), (z * z).T, n, yy=(y * y).sum(0))
    else:
        s, u = np.linalg.eigh(f @ f.T)
        x = u.T @ y  # (N, C): u is a basis of all of R^N, nothing of y lies outside it
        ev = _evidence_from_spectrum(_clean_eigenvalues(s, n), (x * x).T, n, rest=np.zeros(y.shape[1]))
    return float(np.mean(ev))


def score_linear_maps(
    features,
    labels,
    weights: np.ndarray | Sequence[np.ndarray],
    biases: np.ndarray | Sequence[np.ndarray] | None = None,
    regression: bool = False,
    batch_size: int = 8,
    threads: int | None = None,
) -> np.ndarray:
    """LogME of ``features @ weights[k].T + biases[k]`` for every k (torch nn.Linear convention).

    ``weights``: a (K, D_out, D) array, or any sequence of (D_out, D) arrays (e.g. one that loads
    each map from disk when indexed); ``biases`` likewise (K, D_out), or None for no bias.  Maps are
    read ``batch_size`` at a time, in the calling thread, and at most two batches are held in memory
    as given (e.g. float32): the one being scored and the next being read; each map is converted to
    float64 where it is reduced, into that thread's reused array.  The mapped N x D_out features are
    never formed.  Equals ``logme(features @ W.T + b, labels, regression)`` for each map.

    ``threads``: maps scored at once, each in its own thread (LAPACK releases the GIL); default
    TASKRANK_THREADS, else the cores this process may use.  While scoring, BLAS is limited to one
    thread per map (process-wide, through threadpoolctl).
    """
    f = _as_features(features)
    n, d = f.shape
    y = _as_targets(labels, n, regression)
    k_total = len(weights)
    if biases is not None and len(biases) != k_total:
        raise ValueError(f"{len(biases)} biases for {k_total} weight matrices")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    threads = _thread_count(threads)

    # BLAS with one thread throughout: the maps run side by side in our own threads instead, and on a
    # loaded machine OpenBLAS threads that wait for each other cost far more than they save
    with _single_threaded_blas():
        return _score_linear_maps(f, y, weights, biases, batch_size, threads)


def _score_linear_maps(f, y, weights, biases, batch_size: int, threads: int) -> np.ndarray:
    n, d = f.shape
    k_total = len(weights)
    rfac, q, rest, triangular = _target_factor(f, y, biases is not None)
    r = rfac.shape[0]
    yy = (y * y).sum(0)

    out = np.empty(k_total)
    if k_total == 0:
        return out
    first = np.asarray(weights[0])
    d_out = first.shape[0] if first.ndim == 2 else None
    per_map = r > 0 and d_out is not None and d_out <= r
    pool = ThreadPoolExecutor(threads) if threads > 1 and per_map and k_total > 1 else None
    waiting: list = []  # (start, futures) of the batch reduced while the next one is read
    workspace = threading.local()  # per thread: the float64 map and its Gram matrix, reused map after map

    def finish_waiting() -> None:
        for first, done in waiting:
            out[first:first + len(done)] = _finish_maps([f.result() for f in done], yy, n)
        waiting.clear()

    try:
        for start in range(0, k_total, batch_size):
            stop = min(start + batch_size, k_total)
            if r == 0 or not per_map:
                wb = _load_maps(weights, biases, start, stop, d, d_out)  # (k, D_out, dg) = [W, b]
                d_out = wb.shape[1]
                if r == 0:
                    out[start:stop] = np.mean(_no_signal_evidence(n, yy))
                else:  # D_out > r: the batch at once in the r x r space
                    b = np.matmul(wb, rfac.T)  # B = W' R^T
                    del wb
                    out[start:stop] = _logme_mapped_rank_space(b, q, rest, n)
                continue
            maps = _read_maps(weights, biases, start, stop, d, d_out)  # as given: converted where reduced
            args = (rfac, triangular, q, workspace)
            if pool is None:
                out[start:stop] = _finish_maps([_reduce_map(i, wi, bi, *args) for i, wi, bi in maps], yy, n)
            else:  # reduce this batch in threads while the previous one is finished here
                futures = [pool.submit(_reduce_map, i, wi, bi, *args) for i, wi, bi in maps]
                del maps
                finish_waiting()
                waiting.append((start, futures))
        finish_waiting()
    finally:
        if pool is not None:
            for _, futures in waiting:
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True)
    return out


def _target_factor(f: np.ndarray, y: np.ndarray, ones: bool):
    """Once per target, for G = [F, 1] (or F without biases, ``ones`` False; N x dg): R (r x dg,
    r = rank G) with R^T R = G^T G and q = U^T y (r, C) for an orthonormal basis U of col(G) with
    G = U R, so that for B = W' R^T the mapped Gram matrix is B B^T and the mapped F^T y is B q;
    and ``rest`` = |y outside col(G)|^2 per column.  Returns (R, q, rest, triangular): R upper
    triangular (dg x dg) when G has full column rank, so W' R^T is a TRMM, half a GEMM's flops.

    Householder QR of G (a third of an SVD's time: 19 vs 92 ms at 1,000 x 385) where G certainly
    has full column rank: s_min >= 1 / |R^-1|_F and s_max <= |R|_F, so the test below implies the
    SVD's rank test s_min > s_max max(N, dg) eps.  Otherwise (N < dg, or nearly rank-deficient)
    the SVD gives the rank.  Both give the same B B^T and B q up to rounding (R is unique up to the
    signs of its rows, and q's rows flip with them).
    """
    n = f.shape[0]
    g = np.hstack([f, np.ones((n, 1))]) if ones else f
    dg = g.shape[1]
    tol = max(n, dg) * _EPS
    if n >= dg:
        (packed, tau), rfac = scipy_qr(g, mode="raw", overwrite_a=ones, check_finite=False)
        rinv, info = lapack.dtrtri(rfac, lower=0)
        if info == 0 and np.linalg.norm(rfac) * tol * np.linalg.norm(rinv) < 1.0:
            qty, _, info = lapack.dormqr("L", "T", packed, tau, y, lwork=64 * y.shape[1] + 65 * 64)
            if info == 0:
                # rest from Q^T y's rows beyond dg: no cancellation; exactly 0 when N = dg
                rest = (qty[dg:] ** 2).sum(0)
                return np.asfortranarray(rfac), np.ascontiguousarray(qty[:dg]), rest, True
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    r = int((s > s[0] * tol).sum()) if s[0] > 0 else 0
    rfac = s[:r, None] * vt[:r]  # R = diag(s) V^T
    q = u[:, :r].T @ y  # (r, C)
    # |y outside col(G)|^2, without cancellation; exactly 0 when col(G) is all of R^N: there
    # rounding noise (~1e-30) would otherwise decide the evidence of an exact interpolation
    rest = np.zeros(y.shape[1]) if r == n else ((y - u[:, :r] @ q) ** 2).sum(0)
    triangular = r == dg
    if triangular:  # rotate R to upper triangular (R = Q2 R2)
        q2, rfac = np.linalg.qr(rfac)
        q = q2.T @ q
    return np.asfortranarray(rfac), np.ascontiguousarray(q), rest, triangular


def _thread_count(threads: int | None) -> int:
    if threads is None:
        threads = environment.threads()
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


_BLAS_CONTROLLER: list = []  # threadpoolctl's view of the BLAS libraries, found once


def _single_threaded_blas():
    """BLAS limited to one thread while this process's own threads run LAPACK side by side.

    The libraries are looked up once per process (``threadpool_limits`` scans every loaded library
    on each call: 7-28 ms, as much as scoring a few maps); numpy's and scipy's BLAS, the only ones
    used here, are loaded by this module's imports, so the first lookup finds them."""
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            return nullcontext()
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def _load_maps(weights, biases, start: int, stop: int, d: int, d_out: int | None) -> np.ndarray:
    """Maps start..stop as one float64 array [W, b] (k, D_out, D + 1), or (k, D_out, D) without
    biases; ``weights``/``biases`` may be arrays or lazy sequences (items loaded when indexed)."""
    first = np.asarray(weights[start])
    if first.ndim != 2 or first.shape[1] != d:
        raise ValueError(f"weights must be (D_out, {d}) per map, got {first.shape}")
    if d_out is not None and first.shape[0] != d_out:
        raise ValueError(f"all maps must have the same output dimension ({d_out}), got {first.shape[0]}")
    d_out = first.shape[0]
    out = np.empty((stop - start, d_out, d + (biases is not None)))
    for j, i in enumerate(range(start, stop)):
        wi = first if j == 0 else np.asarray(weights[i])
        if wi.shape != (d_out, d):
            raise ValueError(f"weights[{i}] has shape {wi.shape}, expected {(d_out, d)}")
        out[j, :, :d] = wi
        if biases is not None:
            bi = np.asarray(biases[i]).reshape(-1)
            if bi.shape != (d_out,):
                raise ValueError(f"biases[{i}] has {bi.size} entries, expected {d_out}")
            out[j, :, d] = bi
    if not np.isfinite(out).all():
        raise ValueError(f"maps {start}..{stop - 1} contain NaN or infinite values")
    return out


def _read_maps(weights, biases, start: int, stop: int, d: int, d_out: int) -> list:
    """Maps start..stop as given (any real dtype; items of lazy sequences loaded here, in the calling
    thread), shapes checked: [(index, W (D_out, d), b (D_out,) or None)]."""
    maps = []
    for i in range(start, stop):
        wi = np.asarray(weights[i])
        if wi.shape != (d_out, d):
            if wi.ndim != 2 or wi.shape[1] != d:
                raise ValueError(f"weights must be (D_out, {d}) per map, got {wi.shape}")
            raise ValueError(f"all maps must have the same output dimension ({d_out}), got {wi.shape[0]}")
        bi = None
        if biases is not None:
            bi = np.asarray(biases[i]).reshape(-1)
            if bi.shape != (d_out,):
                raise ValueError(f"biases[{i}] has {bi.size} entries, expected {d_out}")
        maps.append((i, wi, bi))
    return maps


def _workspace(local: threading.local, name: str, shape: tuple, order: str) -> np.ndarray:
    """This thread's float64 array ``name`` of ``shape``, allocated once per call and thread: fresh
    arrays (or an 8-map batch array, 38 MB at D = 768) cost page faults and cache misses: converting a
    map took 3-19 ms of its 75-100 ms at D = 768 on a loaded machine, into a reused array under 2."""
    a = getattr(local, name, None)
    if a is None or a.shape != shape:
        a = np.empty(shape, order=order)
        setattr(local, name, a)
    return a


def _reduce_map(i: int, wi, bi, rfac: np.ndarray, triangular: bool, q: np.ndarray, local: threading.local):
    """The O(D_out^3) part for map i, W' = [W, b] (D_out x dg, D_out <= r): B = W' R^T, A = B B^T,
    c = B q, and A = Q T Q^T with w = Q^T c.  Returns (A, c, diag, off, w): (None, c, diag, off, w)
    normally, (A, c, None, None, None) where D_out <= 2 or the reduction failed.

    W' is converted to float64 here, into this thread's reused array, and checked for NaN/inf.
    BLAS/LAPACK, all without the GIL (``lapack_nogil``), so maps reduce side by side in threads:
    B^T = R W'^T (TRMM in place on W'^T, which is W' in Fortran order), the lower half of A (SYRK,
    into this thread's array), tridiagonalise A (dsytrd), and apply the reflectors to c rather than
    forming eigenvectors (dormqr).  Nothing of size D_out^2 is returned, so the threads' arrays are
    reused at once.
    """
    d_out, d = wi.shape
    wk = _workspace(local, "map", (d_out, d + (bi is not None)), "C")
    wk[:, :d] = wi
    if bi is not None:
        wk[:, d] = bi
    if not np.isfinite(wk).all():
        raise ValueError(f"map {i} contains NaN or infinite values")
    if triangular:
        bt = lapack_nogil.trmm_upper(rfac, wk.T)  # in place: wk.T is W'^T in Fortran order, (r, D_out)
    else:
        bt = np.asfortranarray(rfac @ wk.T)
    c = bt.T @ q  # (D_out, C)
    if d_out > 2:
        gram = lapack_nogil.gram_lower(bt, _workspace(local, "gram", (d_out, d_out), "F"))
        packed, diag, off, tau, info = lapack_nogil.tridiagonalise_lower(gram)
        if info == 0:
            w = np.array(c, order="F")
            if lapack_nogil.apply_reflectors_transposed(packed, tau, w) == 0:
                return None, c, diag, off, w
    return bt.T @ bt, c, None, None, None


def _finish_maps(reduced: list, yy: np.ndarray, n: int) -> list[float]:
    """LogME of reduced maps (``_reduce_map``): the fixed point of all of them at once from LDL^T
    factorisations of T + lambda (``_evidence_tridiagonal_ldl``, O(D_out) per step and map).
    Fallbacks per map, each exact: T's eigenvalues (dsterf) where T is near-singular or the maximum
    is at the edge of the lambda range (``_evidence_tridiagonal``), then T's eigenvectors (A = Q T Q^T,
    so A's eigenvalues are T's and z = V_T^T w), or A's where it was not reduced.
    """
    tri = [i for i, parts in enumerate(reduced) if parts[2] is not None]
    evs: list = [None] * len(reduced)
    if tri:
        found = _evidence_tridiagonal_ldl(*(np.stack([reduced[i][j] for i in tri]) for j in (2, 3, 4)), yy, n)
        for i, ev in zip(tri, found):
            evs[i] = ev
    scores = []
    for (gram, c, diag, off, w), ev in zip(reduced, evs):
        m = c.shape[0]
        if ev is None and diag is not None:
            theta, info = lapack.dsterf(diag, off)
            if info == 0:
                ev = _evidence_tridiagonal(diag, off, w, _clean_eigenvalues(theta, m), yy, n)
        if ev is None:
            if diag is not None:
                s, v = eigh_tridiagonal(diag, off)
                z = v.T @ w
            else:
                s, v = np.linalg.eigh(gram)
                z = v.T @ c
            ev = _evidence_from_spectrum(_clean_eigenvalues(s, m), (z * z).T, n, yy=yy)
        scores.append(float(np.mean(ev)))
    return scores


def _logme_mapped_rank_space(b: np.ndarray, q: np.ndarray, rest: np.ndarray, n: int) -> np.ndarray:
    """LogME of a batch of maps when rank(G) = r < D_out (e.g. N < D): eigen-decompose B^T B (r x r)
    instead; x = P^T q are y's coordinates along the mapped features' principal directions."""
    s, p = np.linalg.eigh(np.matmul(b.transpose(0, 2, 1), b))
    x = np.einsum("kri,rc->kci", p, q)
    return _evidence_from_spectrum(_clean_eigenvalues(s, b.shape[2]), x * x, n, rest=rest).mean(-1)


# --------------------------------------------------------------------------------------------
# LEEP and NCE (classification)


def _class_ids(labels, n: int | None, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {y.shape}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} have {y.shape[0]} rows, expected {n}")
    if y.shape[0] == 0:
        raise ValueError(f"{name} are empty")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        raise ValueError(f"{name} must be integer class ids, got dtype {y.dtype}")
    return np.unique(y, return_inverse=True)[1].ravel()


def leep(source_probs, target_labels) -> float:
    """LEEP (Nguyen et al., ICML 2020): mean log-likelihood of the target labels under the
    "expected empirical predictor" P(y | x) = sum_z P(y | z) theta(x)_z, where theta (N, Z) are the
    source model's predicted probabilities and P(y | z) their empirical joint with the labels."""
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"source_probs must have shape (N, Z), got {theta.shape}")
    if not np.isfinite(theta).all() or (theta < 0).any():
        raise ValueError("source_probs must be finite and non-negative")
    if not np.allclose(theta.sum(1), 1.0, atol=1e-6):
        raise ValueError("each row of source_probs must sum to 1 (pass probabilities, not logits)")
    y = _class_ids(target_labels, theta.shape[0], "target_labels")
    n = theta.shape[0]
    joint = np.zeros((y.max() + 1, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= n  # P(y, z)
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    return float(np.mean(np.log((theta * cond[y]).sum(1))))


def nce(source_pred_labels, target_labels) -> float:
    """NCE (Tran et al., ICCV 2019): the negative conditional entropy -H(Y | Z) in nats of the
    target labels given the source model's hard predictions, from their empirical joint."""
    z = _class_ids(source_pred_labels, None, "source_pred_labels")
    y = _class_ids(target_labels, z.shape[0], "target_labels")
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= z.shape[0]
    pz = np.broadcast_to(joint.sum(0), joint.shape)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / pz[nz])).sum())
