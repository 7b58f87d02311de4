"""LogME (single and batched over linear maps), LEEP and NCE — numpy/scipy only, float64.

LogME (You et al., ICML 2021; fixed-point version, JMLR 2022) is the log marginal likelihood
(evidence) per example of a Bayesian linear model y = F w + noise, w ~ N(0, I/alpha),
noise ~ N(0, 1/beta), maximised over alpha and beta.  Everything it needs comes from the
eigenvalues sigma of F^T F and the projections of F^T y on the eigenvectors, and the evidence only
ever depends on lambda = alpha / beta and beta.

Two points where this module deliberately differs from the public code (thuml/LogME,
hf-dataset-selector), both of which matter when N < D:

* The log-determinant runs over all D directions: log det(alpha I + beta F^T F) =
  D log alpha + sum_{sigma > 0} log(1 + sigma / lambda).  Its D log alpha cancels the prior's
  D/2 log alpha exactly, so we evaluate ``-1/2 sum log1p(sigma / lambda)`` over the non-zero
  eigenvalues.  Summing log(alpha + beta sigma) over the non-zero sigma only (as the public code
  does) leaves a spurious (D - rank)/2 log alpha in the score.
* The alpha/beta fixed point is iterated until lambda changes by less than 1e-12 relatively
  (the public code stops after 11-50 steps at 1e-3), so the score is the actual maximum.

``score_linear_maps`` scores many linear maps (Embedding Space Maps) of one target without ever
forming the mapped N x D_out features: with G = [F, 1] and W' = [W, b], the mapped Gram matrix is
W' (G^T G) W'^T and the mapped F^T y is W' (G^T y), so each map costs one small symmetric
eigenproblem whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import lapack

__all__ = ["logme", "score_linear_maps", "leep", "nce"]

_EPS = np.finfo(np.float64).eps
_LOG_2PI = float(np.log(2.0 * np.pi))


# --------------------------------------------------------------------------------------------
# input checks


def _as_features(features, name: str = "features") -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (examples x dimensions), got shape {f.shape}")
    if f.shape[0] < 2 or f.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 examples and 1 dimension, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {f.dtype}")
    f = f.astype(np.float64, copy=False)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return f


def _as_targets(labels, n: int, regression: bool) -> np.ndarray:
    """Target columns (N, C): one-vs-rest indicators of the classes present, or regression columns."""
    y = np.asarray(labels)
    if y.shape[:1] != (n,):
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
    classes, idx = np.unique(y, return_inverse=True)
    onehot = np.zeros((n, len(classes)), dtype=np.float64)
    onehot[np.arange(n), idx.ravel()] = 1.0
    return onehot


# --------------------------------------------------------------------------------------------
# the fixed point, on spectra


def _evidence_from_spectrum(
    sig: np.ndarray,
    w: np.ndarray,
    n: int,
    *,
    yy: np.ndarray | None = None,
    rest: np.ndarray | None = None,
    rtol: float = 1e-12,
    max_iter: int = 10_000,
) -> np.ndarray:
    """Maximised evidence per example for many target columns at once.

    sig: (..., m) eigenvalues (negatives from rounding already set to 0); w: (..., C, m) weights.
    Two forms of the weights, both exact, chosen by the caller for numerical reasons:

    * ``yy`` given: ``w`` are squared projections z^2 of F^T y on the eigenvectors of F^T F, and the
      residual is yy - sum z^2 (2 lambda + sigma) / (lambda + sigma)^2 (no division by sigma).
    * ``rest`` given: ``w`` are squared coordinates x^2 of y in an orthonormal eigenbasis of F F^T
      restricted to a space containing y's fitted part, ``rest`` the squared norm of y outside it;
      the residual rest + sum x^2 lambda^2 / (lambda + sigma)^2 has no cancellation, which matters
      when N < D and the fit becomes nearly exact.

    Returns (..., C) evidence / n.
    """
    sig = np.asarray(sig, dtype=np.float64)[..., None, :]  # (..., 1, m)
    w = np.asarray(w, dtype=np.float64)
    exact = rest is not None
    if exact:
        z2 = w * sig  # squared projections of F^T y
        base = np.asarray(rest, dtype=np.float64)
    else:
        z2 = w
        base = np.asarray(yy, dtype=np.float64)
    base = np.broadcast_to(base, w.shape[:-1])
    total = base + (w.sum(-1) if exact else 0.0)  # = y^T y
    smax = sig.max(axis=-1)  # (..., 1)
    has_signal = (z2.max(axis=-1) > 0) & (smax > 0)  # no signal: lambda -> infinity

    # lambda is kept within [lo, hi] relative to the spectrum's scale; beyond these the evidence is
    # flat to ~1e-13, and an optimum at the boundary (exact interpolation, no signal) is a limit.
    scale = np.where(smax > 0, smax, 1.0)
    lo, hi = scale * 1e-13, scale * 1e13
    lam = np.broadcast_to(np.where(smax > 0, sig.sum(-1) / np.maximum((sig > 0).sum(-1), 1), 1.0), base.shape)
    lam = np.array(lam, dtype=np.float64)
    lo = np.broadcast_to(lo, base.shape)
    hi = np.broadcast_to(hi, base.shape)

    m = sig.shape[-1]
    if m > n:
        raise ValueError("internal: more eigenvalues than examples")

    def parts(lam_, s, zz, ww, b):
        """n - gamma (as (n - m) + sum lambda/(lambda+sigma): no cancellation as gamma -> n),
        |m|^2 and the residual |y - F m|^2 at lambda."""
        lam_ = lam_[..., None]
        d = 1.0 / (lam_ + s)
        n_gamma = (n - m) + (lam_ * d).sum(-1)
        m2 = (zz * d * d).sum(-1)
        if exact:
            res = b + (ww * (lam_ * d) ** 2).sum(-1)
        else:
            res = b - (zz * (2.0 * lam_ + s) * d * d).sum(-1)
        return n_gamma, m2, res

    flat_shape = base.shape
    lam_f = lam.reshape(-1)
    active = has_signal.reshape(-1).copy()
    sig_f = np.broadcast_to(sig, flat_shape + sig.shape[-1:]).reshape(-1, sig.shape[-1])
    z2_f = z2.reshape(-1, z2.shape[-1])
    w_f = w.reshape(-1, w.shape[-1])
    base_f = np.ascontiguousarray(base).reshape(-1)
    lo_f, hi_f = lo.reshape(-1), hi.reshape(-1)
    converged = ~active
    idx = np.flatnonzero(active)
    for _ in range(max_iter):
        if idx.size == 0:
            break
        lam_a = lam_f[idx]
        n_gamma, m2, res = parts(lam_a, sig_f[idx], z2_f[idx], w_f[idx], base_f[idx])
        if not exact:  # the difference form can round below zero for a near-perfect fit
            res = np.maximum(res, total.reshape(-1)[idx] * _EPS)
        new = (n - n_gamma) * res / (n_gamma * m2)  # alpha / beta = (gamma / m2) / ((n - gamma) / res)
        new = np.clip(new, lo_f[idx], hi_f[idx])
        done = (np.abs(new - lam_a) <= rtol * lam_a) | (new == lam_a)
        lam_f[idx] = new
        converged[idx[done]] = True
        idx = idx[~done]
    lam = lam_f.reshape(flat_shape)

    # Evidence at lambda with the best beta for it, beta = n / (res + lambda |m|^2): at the fixed
    # point this is the fixed point's beta; at a boundary optimum (lambda clamped, e.g. an exact
    # interpolation when N < D) it is the supremum's limit, which the fixed point's beta is not.
    # With alpha = lambda beta the terms -beta/2 res - alpha/2 |m|^2 sum to -n/2.
    # lambda = inf (no signal) is the limit m = 0, beta = n / y^T y.
    with np.errstate(divide="ignore", invalid="ignore"):
        lam_e = np.where(has_signal, lam, 1.0)
        _, m2, res = parts(lam_e, sig, z2, w, base)
        if not exact:
            res = np.maximum(res, total * _EPS)
        q = np.where(has_signal, res + lam_e * m2, total)
        logdet = np.where(has_signal, np.log1p(sig / lam_e[..., None]).sum(-1), 0.0)
    ev = 0.5 * n * np.log(n / q) - 0.5 * logdet - 0.5 * n - 0.5 * n * _LOG_2PI
    return ev / n


def _clean_eigenvalues(s: np.ndarray, size: int) -> np.ndarray:
    """Eigenvalues of a Gram matrix: rounding noise (|s| <= size * eps * max s) set to exactly 0."""
    s = np.asarray(s, dtype=np.float64)
    smax = s.max(axis=-1, keepdims=True)
    tol = np.maximum(smax, 0.0) * size * _EPS
    return np.where(s > tol, s, 0.0)


# --------------------------------------------------------------------------------------------
# public API


def logme(features, labels, regression: bool = False) -> float:
    """LogME evidence per example of ``labels`` given ``features`` (N, D); higher = more transferable.

    Classification: integer class ids (N,), one-vs-rest indicator column per class present,
    evidences averaged over classes.  Regression: floats (N,) or (N, T), averaged over columns.
    Works in the D x D covariance space when N >= D and in the N x N Gram space otherwise, so the
    cost is O(N D min(N, D)) either way; the evidence is the same (see the module docstring).
    """
    f = _as_features(features)
    n, d = f.shape
    y = _as_targets(labels, n, regression)
    if n >= d:
        s, v = np.linalg.eigh(f.T @ f)
        s = _clean_eigenvalues(s, d)
        z = v.T @ (f.T @ y)  # (D, C)
        ev = _evidence_from_spectrum(s, (z * z).T, n, yy=(y * y).sum(0))
    else:
        s, u = np.linalg.eigh(f @ f.T)
        s = _clean_eigenvalues(s, n)
        x = u.T @ y  # (N, C): u is a complete basis of R^N, so nothing of y is outside it
        ev = _evidence_from_spectrum(s, (x * x).T, n, rest=np.zeros(y.shape[1]))
    return float(np.mean(ev))


def _rows(seq, start: int, stop: int, name: str) -> np.ndarray:
    """Items start..stop of an array or a lazy sequence (e.g. loading maps from disk) as float64."""
    if isinstance(seq, np.ndarray):
        block = seq[start:stop]
    else:
        block = np.stack([np.asarray(seq[i]) for i in range(start, stop)])
    block = np.asarray(block, dtype=np.float64)
    if not np.isfinite(block).all():
        raise ValueError(f"{name}[{start}:{stop}] contain NaN or infinite values")
    return block


def score_linear_maps(
    features,
    labels,
    weights: np.ndarray | Sequence[np.ndarray],
    biases: np.ndarray | Sequence[np.ndarray] | None = None,
    regression: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """LogME of ``features @ weights[k].T + biases[k]`` for every k (torch nn.Linear convention).

    ``weights``: (K, D_out, D) array, or any sequence whose items are (D_out, D) arrays (e.g. one
    that loads each map from disk), ``biases`` likewise (K, D_out) or None.  Only ``batch_size`` maps
    are held (in float64) at a time and the mapped N x D_out features are never formed: per map the
    work is one D_out x D_out (or rank(G) x rank(G), whichever is smaller) eigenproblem.
    Equals ``logme(features @ W.T + b, labels)`` for each map.
    """
    f = _as_features(features)
    n, d = f.shape
    y = _as_targets(labels, n, regression)
    k_total = len(weights)
    if biases is not None and len(biases) != k_total:
        raise ValueError(f"{len(biases)} biases for {k_total} weight matrices")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if k_total == 0:
        return np.zeros(0)

    # G = [F, 1] = U diag(s) V^T once per target; R^T = V diag(s) gives G^T G = R^T R and
    # q = U^T y the coordinates of y's part inside col(G).
    g = np.hstack([f, np.ones((n, 1))]) if biases is not None else f
    dg = g.shape[1]
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    r = int((s > s[0] * max(n, dg) * _EPS).sum()) if s[0] > 0 else 0
    rt = vt[:r].T * s[:r]  # (dg, r)
    q = u[:, :r].T @ y  # (r, C)
    yy = (y * y).sum(0)
    # |y outside col(G)|^2, without cancellation; exactly 0 when col(G) is all of R^N (N <= rank):
    # there rounding noise of ~1e-30 would otherwise decide the evidence of a near-exact fit
    rest = np.zeros(y.shape[1]) if r == n else ((y - u[:, :r] @ q) ** 2).sum(0)

    out = np.empty(k_total)
    d_out = None
    for start in range(0, k_total, batch_size):
        stop = min(start + batch_size, k_total)
        wb = _rows(weights, start, stop, "weights")
        if wb.ndim != 3 or wb.shape[2] != d:
            raise ValueError(f"weights must have shape (K, D_out, {d}), got {wb.shape[1:]} per map")
        if d_out is None:
            d_out = wb.shape[1]
        elif wb.shape[1] != d_out:
            raise ValueError("all maps must have the same output dimension")
        if biases is not None:
            bb = _rows(biases, start, stop, "biases").reshape(stop - start, -1)
            if bb.shape[1] != d_out:
                raise ValueError(f"biases must have {d_out} entries per map, got {bb.shape[1]}")
            wb = np.concatenate([wb, bb[:, :, None]], axis=2)
        b = (wb.reshape(-1, dg) @ rt).reshape(stop - start, d_out, r)  # W' R^T, one big GEMM
        del wb
        if d_out <= r:
            sig, z2 = _spectra_out_space(b, q)
            out[start:stop] = _evidence_from_spectrum(sig, z2, n, yy=yy).mean(-1)
        else:
            sig, x2 = _spectra_rank_space(b, q)
            out[start:stop] = _evidence_from_spectrum(sig, x2, n, rest=rest).mean(-1)
    return out


def _spectra_out_space(b: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of A = B B^T (D_out x D_out) and squared projections of c = B q on its eigenvectors.

    LAPACK: tridiagonalise A (dsytrd), apply the reflectors to c instead of forming the
    eigenvectors of A (dormqr), then a divide-and-conquer eigensolve of the tridiagonal matrix
    (dstevd) — about 30% cheaper than a full eigh, whose back-transformation we do not need.
    """
    k, m, _ = b.shape
    c_cols = q.shape[1]
    sig = np.empty((k, m))
    z2 = np.empty((k, c_cols, m))
    for i in range(k):
        a = b[i] @ b[i].T
        c = b[i] @ q
        s, z = _eigvals_and_projections(a, c)
        sig[i] = _clean_eigenvalues(s, m)
        z2[i] = (z * z).T
    return sig, z2


def _eigvals_and_projections(a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of symmetric ``a`` and V^T c for its eigenvectors V."""
    m = a.shape[0]
    if m > 2:
        packed, diag, off, tau, info = lapack.dsytrd(a, lower=1)
        if info == 0:
            w = np.array(c, dtype=np.float64, order="F")
            res = lapack.dormqr("L", "T", packed[1:, : m - 1], tau[: m - 1], w[1:], lwork=max(1, m * c.shape[1]))
            if res[-1] == 0:
                w[1:] = res[0]
                s, vt_tri, info2 = lapack.dstevd(diag, off, compute_v=1)
                if info2 == 0:
                    return s, vt_tri.T @ w
    s, v = np.linalg.eigh(a)
    return s, v.T @ c


def _spectra_rank_space(b: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """When rank(G) < D_out: eigen-decompose B^T B (r x r) instead; x = P^T q are y's coordinates
    along the mapped features' principal directions (an orthonormal basis of col(G))."""
    s, p = np.linalg.eigh(np.einsum("kmi,kmj->kij", b, b))
    sig = _clean_eigenvalues(s, b.shape[2])
    x = np.einsum("kri,rc->kci", p, q)
    return sig, x * x


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
    "expected empirical predictor" built from the source model's soft predictions (N, Z)."""
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"source_probs must have shape (N, Z), got {theta.shape}")
    if not np.isfinite(theta).all() or (theta < 0).any():
        raise ValueError("source_probs must be finite and non-negative")
    if not np.allclose(theta.sum(1), 1.0, atol=1e-6):
        raise ValueError("each row of source_probs must sum to 1 (pass probabilities, not logits)")
    y = _class_ids(target_labels, theta.shape[0], "target_labels")
    n = theta.shape[0]
    onehot = np.zeros((n, y.max() + 1))
    onehot[np.arange(n), y] = 1.0
    joint = onehot.T @ theta / n  # P(y, z)
    pz = joint.sum(0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = (theta * cond[y]).sum(1)
    return float(np.mean(np.log(eep)))


def nce(source_pred_labels, target_labels) -> float:
    """NCE (Tran et al., ICCV 2019): negative conditional entropy -H(Y | Z) of the target labels
    given the source model's hard predictions, from their empirical joint distribution (nats)."""
    z = _class_ids(source_pred_labels, None, "source_pred_labels")
    y = _class_ids(target_labels, z.shape[0], "target_labels")
    n = z.shape[0]
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= n
    pz = joint.sum(0)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.broadcast_to(pz, joint.shape)[nz])).sum())
