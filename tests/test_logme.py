"""LogME, batched LogME of linear maps, LEEP and NCE against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from taskrank.estimators.logme import leep, logme, nce, score_linear_maps

LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# an independent dense reference: the evidence written out in D x D, maximised numerically


def dense_evidence(f, y, log_alpha, log_beta, sig, v):
    """log p(y | F, alpha, beta) / N for w ~ N(0, I_D / alpha), noise ~ N(0, 1 / beta), from the full
    D x D eigendecomposition F^T F = V diag(sig) V^T (all D eigenvalues, zeros included)."""
    n, d = f.shape
    a, b = math.exp(log_alpha), math.exp(log_beta)
    m = b * (v @ ((v.T @ (f.T @ y)) / (a + b * sig)))  # posterior mean (alpha I + beta F^T F)^-1 beta F^T y
    res = float(np.sum((y - f @ m) ** 2))
    logdet = float(np.sum(np.log(a + b * sig)))
    ev = d / 2 * log_alpha + n / 2 * log_beta - b / 2 * res - a / 2 * float(m @ m) - logdet / 2 - n / 2 * LOG_2PI
    return ev / n


def dense_max_evidence(f, y):
    sig, v = np.linalg.eigh(f.T @ f)
    sig = np.clip(sig, 0.0, None)

    def neg(p):
        return -dense_evidence(f, y, p[0], p[1], sig, v)

    grid = [(neg((la, lb)), la, lb) for la in np.linspace(-10, 10, 21) for lb in np.linspace(-10, 10, 21)]
    start = min(grid)[1:]
    options = dict(xatol=1e-12, fatol=1e-16, maxiter=20000, maxfev=40000)
    r = optimize.minimize(neg, start, method="Nelder-Mead", options=options)
    r = optimize.minimize(neg, r.x, method="BFGS", options=dict(gtol=1e-12))
    return -r.fun


def dense_logme(f, labels, regression=False):
    if regression:
        ys = np.asarray(labels, dtype=float).reshape(len(f), -1).T
    else:
        ys = [(labels == c).astype(float) for c in np.unique(labels)]
    return float(np.mean([dense_max_evidence(f, y) for y in ys]))


def blobs(rng, n, d, classes, signal, flip):
    """Gaussian features around class means; a share ``flip`` of labels redrawn at random."""
    y = rng.integers(0, classes, n)
    f = rng.standard_normal((classes, d))[y] * signal + rng.standard_normal((n, d))
    y = np.where(rng.random(n) < flip, rng.integers(0, classes, n), y)
    return f, y


def rel(a, b):
    return abs(a - b) / abs(b)


# ---------------------------------------------------------------------------------------------
# logme against the dense reference


@pytest.mark.parametrize(
    "n,d,classes",
    [(120, 25, 3), (80, 12, 2), (40, 100, 3), (30, 60, 4)],
    ids=["N>D-3cls", "N>D-2cls", "N<D-3cls", "N<D-4cls"],
)
def test_logme_classification_matches_dense_reference(n, d, classes):
    rng = np.random.default_rng(n * 1000 + d)
    f, y = blobs(rng, n, d, classes, signal=0.3, flip=0.25)
    assert rel(logme(f, y), dense_logme(f, y)) < 1e-8


@pytest.mark.parametrize("n,d", [(120, 25), (35, 80)], ids=["N>D", "N<D"])
@pytest.mark.parametrize("columns", [1, 2])
def test_logme_regression_matches_dense_reference(n, d, columns):
    rng = np.random.default_rng(7 * n + d + columns)
    f = rng.standard_normal((n, d))
    y = f[:, :columns] * 0.5 + rng.standard_normal((n, columns))
    labels = y[:, 0] if columns == 1 else y
    assert rel(logme(f, labels, regression=True), dense_logme(f, labels, regression=True)) < 1e-8


def test_logme_separable_n_below_d_reaches_the_supremum():
    """N < D with separable classes: the evidence increases towards lambda -> 0 (an exact fit); we
    return the limit, which no finite (alpha, beta) exceeds and the optimiser approaches."""
    rng = np.random.default_rng(3)
    f, y = blobs(rng, 40, 100, 3, signal=0.5, flip=0.0)
    ours, ref = logme(f, y), dense_logme(f, y)
    assert ours >= ref - 1e-12
    assert rel(ours, ref) < 1e-6


def test_logme_counts_all_d_directions():
    """Padding features with zero columns changes the D x D problem but not the evidence: the
    zero eigenvalues' log(alpha) terms cancel the prior's. The public code's score moves."""
    rng = np.random.default_rng(5)
    f, y = blobs(rng, 30, 20, 3, signal=0.4, flip=0.2)
    padded = np.hstack([f, np.zeros((30, 50))])
    assert rel(logme(padded, y), logme(f, y)) < 1e-12


def test_labels_are_class_ids_not_ranks():
    rng = np.random.default_rng(11)
    f, y = blobs(rng, 60, 10, 3, signal=0.5, flip=0.1)
    assert logme(f, y) == pytest.approx(logme(f, np.array([5, 9, 42])[y]), rel=1e-14)


def test_separable_labels_score_higher_than_shuffled():
    rng = np.random.default_rng(1)
    f, y = blobs(rng, 200, 16, 4, signal=2.0, flip=0.0)
    shuffled = rng.permutation(y)
    assert logme(f, y) > logme(f, shuffled) + 0.1


def test_bad_inputs_raise_clear_errors():
    f = np.ones((5, 3))
    with pytest.raises(ValueError, match="rows"):
        logme(f, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="integer class ids"):
        logme(f, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="NaN"):
        logme(np.full((5, 3), np.nan), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="2-D"):
        logme(np.ones(5), np.zeros(5, dtype=int))


# ---------------------------------------------------------------------------------------------
# score_linear_maps against logme on explicitly mapped features


@pytest.mark.parametrize(
    "n,d,d_out,bias,batch",
    [
        (150, 20, 20, True, 4),  # N > D_out, D_out x D_out path
        (150, 20, 12, False, 3),  # N > D, maps that shrink
        (30, 60, 60, True, 4),  # N < D_out: rank(G) = N
        (30, 60, 40, False, 5),
        (45, 20, 50, True, 4),  # N > D but D + 1 < D_out: rank-space path with N >= D_out
    ],
)
@pytest.mark.parametrize("regression", [False, True])
def test_batched_maps_equal_one_at_a_time(n, d, d_out, bias, batch, regression):
    rng = np.random.default_rng(n + d + d_out)
    f, y = blobs(rng, n, d, 3, signal=0.4, flip=0.2)
    if regression:
        y = f[:, :2] @ rng.standard_normal((2, 2)) + rng.standard_normal((n, 2))
    k = 7  # not a multiple of any batch size used
    w = rng.standard_normal((k, d_out, d)) / math.sqrt(d)
    b = rng.standard_normal((k, d_out)) if bias else None
    got = score_linear_maps(f, y, w, b, regression=regression, batch_size=batch)
    want = np.array([logme(f @ w[i].T + (b[i] if bias else 0.0), y, regression=regression) for i in range(k)])
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=0)


def test_batched_maps_accept_lazy_float32_sequences():
    rng = np.random.default_rng(2)
    f, y = blobs(rng, 80, 16, 2, signal=0.5, flip=0.1)
    w = (np.eye(16) + 0.3 * rng.standard_normal((5, 16, 16))).astype(np.float32)
    b = (0.1 * rng.standard_normal((5, 16))).astype(np.float32)

    class Lazy:
        def __init__(self, arr):
            self.arr = arr

        def __len__(self):
            return len(self.arr)

        def __getitem__(self, i):
            return self.arr[i]

    np.testing.assert_allclose(
        score_linear_maps(f, y, Lazy(w), Lazy(b), batch_size=2), score_linear_maps(f, y, w, b), rtol=1e-12
    )


def test_batched_maps_identity_equals_logme():
    rng = np.random.default_rng(4)
    f, y = blobs(rng, 100, 10, 3, signal=0.5, flip=0.1)
    got = score_linear_maps(f, y, np.eye(10)[None], np.zeros((1, 10)))
    assert rel(got[0], logme(np.hstack([f, np.ones((100, 1))]) @ np.vstack([np.eye(10), np.zeros(10)]), y)) < 1e-8
    assert rel(got[0], logme(f, y)) < 1e-8


def test_batched_maps_shape_errors():
    f = np.random.default_rng(0).standard_normal((20, 4))
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="per map"):
        score_linear_maps(f, y, np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="biases"):
        score_linear_maps(f, y, np.ones((2, 3, 4)), np.ones((3, 3)))
    assert score_linear_maps(f, y, np.ones((0, 3, 4))).shape == (0,)


# ---------------------------------------------------------------------------------------------
# LEEP and NCE


def test_nce_hand_computed():
    assert nce([0, 0, 1, 1], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert nce([0, 0, 0, 0], [0, 1, 0, 1]) == pytest.approx(-math.log(2))
    # z = 0: y uniform over {0, 1} (H = log 2, weight 1/2); z = 1: y certain
    assert nce([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(-0.5 * math.log(2))


def test_leep_hand_computed():
    theta = np.array([[0.8, 0.2], [0.4, 0.6]])
    # P(y,z) = [[.4, .1], [.2, .3]], P(z) = [.6, .4], P(y|z) = [[2/3, 1/4], [1/3, 3/4]]
    # EEP(y1|x1) = .8*2/3 + .2*1/4 = 7/12, EEP(y2|x2) = .4*1/3 + .6*3/4 = 7/12
    assert leep(theta, [0, 1]) == pytest.approx(math.log(7 / 12))


def test_leep_with_hard_predictions_equals_nce():
    rng = np.random.default_rng(9)
    z = rng.integers(0, 4, 50)
    y = (z + (rng.random(50) < 0.3)) % 3
    assert leep(np.eye(4)[z], y) == pytest.approx(nce(z, y), rel=1e-12)


def test_leep_rejects_logits():
    with pytest.raises(ValueError, match="sum to 1"):
        leep(np.array([[2.0, 1.0], [0.5, 0.5]]), [0, 1])


def test_batched_maps_eigenvector_fallback_agrees(monkeypatch):
    """The tridiagonal-solve path and its fallback (full eigendecomposition) give the same scores."""
    import taskrank.estimators.logme as mod

    rng = np.random.default_rng(12)
    f, y = blobs(rng, 90, 15, 3, signal=0.4, flip=0.2)
    w = rng.standard_normal((5, 15, 15)) / math.sqrt(15)
    b = rng.standard_normal((5, 15))
    fast = score_linear_maps(f, y, w, b, batch_size=2)
    monkeypatch.setattr(mod, "_evidence_tridiagonal_ldl", lambda diag, *a, **k: [None] * len(diag))  # no map certified
    with_eigenvalues = score_linear_maps(f, y, w, b, batch_size=2)
    np.testing.assert_allclose(with_eigenvalues, fast, rtol=1e-12)
    monkeypatch.setattr(mod, "_evidence_tridiagonal", lambda *a, **k: None)
    np.testing.assert_allclose(score_linear_maps(f, y, w, b, batch_size=2), fast, rtol=1e-10)


def test_batched_maps_pivot_path_is_taken_and_exact(monkeypatch):
    """On ordinary full-rank maps the eigenvalue-free path (LDL^T pivots of T + lambda) scores every
    map, and agrees with T's eigenvalues and with a full eigendecomposition."""
    import taskrank.estimators.logme as mod

    rng = np.random.default_rng(21)
    f, y = blobs(rng, 200, 24, 3, signal=0.4, flip=0.2)
    w = np.eye(24) + 0.3 * rng.standard_normal((6, 24, 24))
    b = 0.1 * rng.standard_normal((6, 24))
    calls = []
    ldl = mod._evidence_tridiagonal_ldl
    monkeypatch.setattr(mod, "_evidence_tridiagonal_ldl", lambda *a, **k: calls.append(ldl(*a, **k)) or calls[-1])
    got = score_linear_maps(f, y, w, b, threads=1, batch_size=4)
    assert [len(c) for c in calls] == [4, 2]  # the maps of a batch iterate together
    assert all(ev is not None for c in calls for ev in c)
    want = np.array([logme(f @ w[i].T + b[i], y) for i in range(6)])
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=0)
    # each map's result does not depend on the others in its batch
    np.testing.assert_array_equal(score_linear_maps(f, y, w, b, threads=1, batch_size=1), got)


def test_batched_maps_threads_give_identical_scores():
    rng = np.random.default_rng(8)
    f, y = blobs(rng, 120, 18, 3, signal=0.4, flip=0.2)
    w = rng.standard_normal((11, 18, 18)) / math.sqrt(18)
    b = rng.standard_normal((11, 18))
    one = score_linear_maps(f, y, w, b, batch_size=3, threads=1)
    np.testing.assert_array_equal(score_linear_maps(f, y, w, b, batch_size=3, threads=3), one)
    with pytest.raises(ValueError, match="threads"):
        score_linear_maps(f, y, w, b, threads=0)


def test_fixed_point_reaches_the_interior_maximum_the_plain_iteration_crawls_to():
    """Two stationary points: the evidence rises to a maximum at lambda ~ 0.38 smax, falls to a minimum,
    then rises slowly towards its lambda -> inf limit, which stays lower.  The plain iteration from the
    mean eigenvalue crawls towards the maximum (rate near 1); the old bisection fallback then bracketed
    towards the edge, found no sign change there (two roots in between) and reported the edge.
    Newton's method gets the maximum, which is higher than what the dense optimiser finds too."""
    n, d, d_out = 150, 20, 12
    rng = np.random.default_rng(n + d + d_out)  # the (150, 20, 12) case of the batched test above
    f, y = blobs(rng, n, d, 3, signal=0.4, flip=0.2)
    w = rng.standard_normal((7, d_out, d)) / math.sqrt(d)
    mapped = f @ w[5].T
    ours, ref = logme(mapped, y), dense_logme(mapped, y)
    assert ours > ref + 1e-6  # 2.5e-5 higher: the optimiser, started from a coarse grid, ends at the edge
    # the global supremum over lambda of the dense evidence (beta at its best for each lambda)
    assert rel(ours, np.mean([profile_max_evidence(mapped, (y == c).astype(float)) for c in range(3)])) < 1e-9


def profile_max_evidence(f, y):
    """max over lambda = alpha / beta of the dense evidence with beta at its best for lambda: a fine
    grid over 26 decades around the largest eigenvalue, then a bounded 1-D refinement."""
    n = f.shape[0]
    sig, v = np.linalg.eigh(f.T @ f)
    sig = np.clip(sig, 0.0, None)
    proj = v.T @ (f.T @ y)

    def neg(log_lam):
        lam = math.exp(log_lam)
        m = v @ (proj / (sig + lam))
        beta = n / (float(np.sum((y - f @ m) ** 2)) + lam * float(m @ m))
        return -dense_evidence(f, y, log_lam + math.log(beta), math.log(beta), sig, v)

    grid = np.linspace(math.log(sig.max()) - 30, math.log(sig.max()) + 30, 1201)
    i = int(np.argmin([neg(g) for g in grid]))
    bounds = (grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])
    r = optimize.minimize_scalar(neg, bounds=bounds, method="bounded", options=dict(xatol=1e-12))
    return -min(r.fun, neg(grid[i]))


# ---------------------------------------------------------------------------------------------
# the per-target factor and the per-map reduction


@pytest.mark.parametrize("duplicate", [False, True], ids=["full-rank:QR", "rank-deficient:SVD"])
@pytest.mark.parametrize("ones", [True, False])
def test_target_factor_reproduces_the_gram_statistics(duplicate, ones):
    """R^T R = G^T G, R^T q = G^T y and |y|^2 = |q|^2 + rest, for G = [F, 1] or F: what every map's
    B B^T and B q rest on.  Full column rank takes the QR path (R upper triangular), a duplicated
    column the SVD path (r < dg)."""
    from taskrank.estimators.logme import _as_targets, _target_factor

    rng = np.random.default_rng(5)
    f, labels = blobs(rng, 60, 8, 3, signal=0.5, flip=0.1)
    if duplicate:
        f[:, 7] = f[:, 2]
    y = _as_targets(labels, 60, False)
    rfac, q, rest, triangular = _target_factor(f, y, ones)
    g = np.hstack([f, np.ones((60, 1))]) if ones else f
    assert triangular is (not duplicate)
    assert rfac.shape[0] == g.shape[1] - duplicate
    if triangular:
        np.testing.assert_array_equal(rfac, np.triu(rfac))
    np.testing.assert_allclose(rfac.T @ rfac, g.T @ g, rtol=0, atol=1e-11 * np.abs(g.T @ g).max())
    np.testing.assert_allclose(rfac.T @ q, g.T @ y, rtol=0, atol=1e-11 * np.abs(g.T @ y).max())
    np.testing.assert_allclose((q * q).sum(0) + rest, (y * y).sum(0), rtol=1e-12)
    w = np.eye(8)[None] + 0.2 * rng.standard_normal((3, 8, 8))
    b = 0.1 * rng.standard_normal((3, 8)) if ones else None
    got = score_linear_maps(f, labels, w, b, threads=1)
    want = [logme(f @ w[i].T + (b[i] if ones else 0.0), labels) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=0)


def test_batched_maps_of_one_or_two_outputs():
    """D_out <= 2 is not tridiagonalised: the 2 x 2 Gram matrix goes to the eigendecomposition."""
    rng = np.random.default_rng(6)
    f, y = blobs(rng, 90, 10, 3, signal=0.5, flip=0.1)
    for d_out in (1, 2):
        w = rng.standard_normal((5, d_out, 10))
        b = rng.standard_normal((5, d_out))
        for threads in (1, 2):
            got = score_linear_maps(f, y, w, b, batch_size=2, threads=threads)
            want = [logme(f @ w[i].T + b[i], y) for i in range(5)]
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_maps_reject_non_finite_maps(threads):
    rng = np.random.default_rng(7)
    f, y = blobs(rng, 60, 6, 2, signal=0.5, flip=0.1)
    w = np.eye(6)[None] + 0.1 * rng.standard_normal((5, 6, 6))
    b = np.zeros((5, 6))
    w[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="map 3 contains NaN or infinite"):
        score_linear_maps(f, y, w, b, batch_size=2, threads=threads)
    w[3, 2, 1], b[4, 0] = 0.0, np.inf
    with pytest.raises(ValueError, match="map 4 contains NaN or infinite"):
        score_linear_maps(f, y, w, b, batch_size=2, threads=threads)
