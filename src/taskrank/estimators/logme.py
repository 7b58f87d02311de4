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
  code stops after 11-50 steps at 1e-3, far from converged when N < D).  Where plain iteration
  crawls (its rate tends to 1 on a nearly flat evidence, typical for N < D) the same fixed point is
  found by bisection on the sign of (step(lambda) - lambda), which is the sign of the slope.
* When N < D the features can interpolate the labels and the supremum may lie at lambda -> 0; we
  follow the fixed point there and report the limit, using the best beta for the final lambda.

``score_linear_maps`` scores many linear maps (Embedding Space Maps) of one target without ever
forming the mapped N x D_out features: with G = [F, 1] and W' = [W, b], the mapped Gram matrix is
W' (G^T G) W'^T and the mapped F^T y is W' (G^T y), so per map the work is one D_out x D_out
symmetric problem whatever N is — and only its tridiagonal form is needed, not its eigenvectors
(see ``_logme_mapped``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import blas, lapack

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
#   n - gamma = (n - m) + sum lambda d_i          (written so, it has no cancellation as gamma -> n)
#   |m|^2     = sum z_i^2 d_i^2                   (posterior mean of w)
#   res       = |y - F m|^2
#   lambda   <- alpha / beta = (gamma / |m|^2) / ((n - gamma) / res)
# and at the end the evidence per example with beta = n / (res + lambda |m|^2) (best for lambda):
#   [n/2 log beta - 1/2 sum log1p(sigma / lambda) - n/2 - n/2 log 2 pi] / n.


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
        return n_gamma, m2, res

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

    def step(lam_, i):  # alpha / beta = (gamma / |m|^2) / ((n - gamma) / res)
        n_gamma, m2, res = parts(lam_, sig_f[i], z2_f[i], w_f[i], base_f[i], total_f[i])
        return (n - n_gamma) * res / (n_gamma * m2)

    idx = np.flatnonzero(flat(has_signal))
    for _ in range(max_iter):
        if idx.size == 0:
            break
        cur = lam[idx]
        new = np.clip(step(cur, idx), lo[idx], hi[idx])
        lam[idx] = new
        idx = idx[np.abs(new - cur) > _RTOL * cur]
    if idx.size:
        lam[idx] = _bisect_fixed_point(step, lam[idx], idx, lo[idx], hi[idx])

    lam = np.where(has_signal, lam.reshape(shape), 1.0)
    _, m2, res = parts(lam, sig, z2, w, base, total)
    with np.errstate(divide="ignore"):
        logdet = np.log1p(sig / lam[..., None]).sum(-1)
        ev = 0.5 * np.log(n / (res + lam * m2)) - 0.5 * logdet / n - 0.5 - 0.5 * _LOG_2PI
    return np.where(has_signal, ev, _no_signal_evidence(n, total))


def _bisect_fixed_point(step, lam, idx, lo, hi):
    """Where plain iteration crawls (rate near 1: nearly flat evidence, typically N < D heading for
    lambda -> 0), locate the same fixed point by bisection in log lambda.  step(lambda) - lambda has
    the sign of the evidence's slope, so from the current lambda we bracket towards where the
    iteration was heading: a sign change there is the fixed point (to 1e-13 in log lambda), none
    means the supremum is the boundary (lo or hi, where the evidence is flat to ~1e-13)."""
    up = step(lam, idx) > lam
    end = np.where(up, hi, lo)
    crosses = (step(end, idx) > end) != up
    a, b = np.log(lam), np.log(end)
    for _ in range(64):
        if not crosses.any() or np.max(np.abs(b - a)[crosses]) <= 1e-13:
            break
        mid = 0.5 * (a + b)
        same = (step(np.exp(mid), idx) > np.exp(mid)) == up
        a = np.where(crosses & same, mid, a)
        b = np.where(crosses & ~same, mid, b)
    return np.where(crosses, np.exp(0.5 * (a + b)), end)


class _NotPositiveDefinite(ArithmeticError):
    pass


def _evidence_tridiagonal(diag, off, w, theta, yy: float, n: int, max_iter: int = 50) -> float | None:
    """The same fixed point for one column, given A = Q T Q^T (T tridiagonal: ``diag``, ``off``),
    w = Q^T c and T's cleaned eigenvalues ``theta`` — without T's eigenvectors.

    The c-dependent sums are rational functions of lambda that a tridiagonal solve gives exactly:
    x = (T + lambda)^-1 w has w.x = sum z^2 d and x.x = sum z^2 d^2 = |m|^2.  Each step is O(m)
    (LAPACK dptsv), which saves computing eigenvectors of T.  Returns None if a solve is not
    positive definite (rounding); the caller then uses the eigenvectors.
    """
    m = diag.shape[0]
    smax = theta.max()
    if smax <= 0 or not w.any():
        return float(_no_signal_evidence(n, yy))
    lo, hi = smax / _LAMBDA_RANGE, smax * _LAMBDA_RANGE

    def parts(lam):
        *_, x, info = lapack.dptsv(diag + lam, off, w)
        if info != 0:
            raise _NotPositiveDefinite
        m2 = x @ x
        res = max(yy - w @ x - lam * m2, yy * _EPS)  # = yy - sum z^2 (2 lambda + sigma) d^2
        return m2, res

    def step(lam):
        m2, res = parts(lam)
        n_gamma = (n - m) + lam * np.sum(1.0 / (theta + lam))
        return (n - n_gamma) * res / (n_gamma * m2)

    try:
        lam = theta.sum() / np.count_nonzero(theta)
        for _ in range(max_iter):
            new = min(max(step(lam), lo), hi)
            converged = abs(new - lam) <= _RTOL * lam
            lam = new
            if converged:
                break
        else:
            vector_step = lambda v, _: np.array([step(x) for x in v])  # noqa: E731
            lam = float(_bisect_fixed_point(vector_step, np.array([lam]), None, lo, hi)[0])
        m2, res = parts(lam)
    except _NotPositiveDefinite:
        return None
    logdet = np.log1p(theta / lam).sum()
    return float(0.5 * np.log(n / (res + lam * m2)) - 0.5 * logdet / n - 0.5 - 0.5 * _LOG_2PI)


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
    batch_size: int = 16,
) -> np.ndarray:
    """LogME of ``features @ weights[k].T + biases[k]`` for every k (torch nn.Linear convention).

    ``weights``: a (K, D_out, D) array, or any sequence of (D_out, D) arrays (e.g. one that loads
    each map from disk when indexed); ``biases`` likewise (K, D_out), or None for no bias.  Only
    ``batch_size`` maps are held in memory (as float64) at a time and the mapped N x D_out features
    are never formed.  Equals ``logme(features @ W.T + b, labels, regression)`` for each map.
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

    # Once per target: G = [F, 1] = U diag(s) V^T.  R = diag(s) V^T (r x dg) has R^T R = G^T G, so for
    # B = W' R^T the mapped Gram matrix is B B^T and the mapped F^T y is B q with q = U^T y.
    g = np.hstack([f, np.ones((n, 1))]) if biases is not None else f
    dg = g.shape[1]
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    r = int((s > s[0] * max(n, dg) * _EPS).sum()) if s[0] > 0 else 0
    rfac = s[:r, None] * vt[:r]
    q = u[:, :r].T @ y  # (r, C)
    yy = (y * y).sum(0)
    # |y outside col(G)|^2, without cancellation; exactly 0 when col(G) is all of R^N: there
    # rounding noise (~1e-30) would otherwise decide the evidence of an exact interpolation
    rest = np.zeros(y.shape[1]) if r == n else ((y - u[:, :r] @ q) ** 2).sum(0)
    triangular = r == dg
    if triangular:  # rotate R to upper triangular (R = Q2 R2): W' R2^T is a TRMM, half a GEMM's flops
        q2, rfac = np.linalg.qr(rfac)
        q = q2.T @ q

    out = np.empty(k_total)
    d_out = None
    for start in range(0, k_total, batch_size):
        stop = min(start + batch_size, k_total)
        wb = _load_maps(weights, biases, start, stop, d, d_out)  # (k, D_out, dg) = [W, b]
        d_out = wb.shape[1]
        flat = wb.reshape(-1, dg)
        if triangular:  # (R2 W'^T)^T, in place: W'^T is W' in Fortran order
            b = blas.dtrmm(1.0, rfac, flat.T, side=0, lower=0, overwrite_b=1).T
        else:
            b = flat @ rfac.T
        b = b.reshape(stop - start, d_out, r)  # B = W' R^T for the batch
        del wb, flat
        if r == 0:
            out[start:stop] = np.mean(_no_signal_evidence(n, yy))
        elif d_out <= r:
            out[start:stop] = [_logme_mapped(bk, q, yy, n) for bk in b]
        else:
            out[start:stop] = _logme_mapped_rank_space(b, q, rest, n)
    return out


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


def _logme_mapped(b: np.ndarray, q: np.ndarray, yy: np.ndarray, n: int) -> float:
    """LogME of one map given B (D_out x r): the D_out x D_out problem A = B B^T, c = B q.

    LAPACK: tridiagonalise A (dsytrd), apply the reflectors to c rather than forming eigenvectors
    (dormqr), eigenvalues of T (dsterf), then the fixed point by tridiagonal solves.  This avoids
    all O(D_out^3) eigenvector work; a full eigendecomposition is the fallback.
    """
    a = b @ b.T  # symmetric, so a.T is the same matrix in Fortran order: LAPACK takes it uncopied
    c = b @ q
    m = a.shape[0]
    if m > 2:
        # lwork: with scipy's default (m) dsytrd runs unblocked, ~1.5x slower
        packed, diag, off, tau, info = lapack.dsytrd(a.T, lower=1, lwork=64 * m, overwrite_a=1)
        if info == 0:
            w = np.array(c, order="F")
            wq, _, info = lapack.dormqr("L", "T", packed[1:, : m - 1], tau[: m - 1], w[1:], lwork=m * c.shape[1])
            if info == 0:
                w[1:] = wq
                theta, info = lapack.dsterf(diag, off)
                if info == 0:
                    theta = _clean_eigenvalues(theta, m)
                    evs = [_evidence_tridiagonal(diag, off, w[:, j], theta, yy[j], n) for j in range(c.shape[1])]
                    if all(e is not None for e in evs):
                        return float(np.mean(evs))
    s, v = np.linalg.eigh(b @ b.T)  # (dsytrd overwrote a)
    z = v.T @ c
    return float(np.mean(_evidence_from_spectrum(_clean_eigenvalues(s, m), (z * z).T, n, yy=yy)))


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
