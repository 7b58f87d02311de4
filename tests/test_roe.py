"""RoE (Retrieval-of-Experts) against a dense hand computation, and its artefacts."""

import json

import numpy as np
import pytest

from taskrank.estimators import ESTIMATORS, get_estimator
from taskrank.estimators.roe import RoE, roe_similarity
from taskrank.store import Artefact, ArtefactError
from taskrank.tasks import load_task


def _artefact(emb, role):
    return Artefact({"embeddings": np.asarray(emb, dtype=np.float32)},
                    {"task": role, "fingerprint": role, "role": role, "n_examples": len(emb)})


def test_dense_hand_computation():
    t = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    s1 = np.array([[0.8, 0.6], [-1.0, 0.0], [0.0, -1.0], [0.6, -0.8]])
    s2 = np.array([[0.0, 1.0]])
    # s1: rows of t·s1ᵀ = [.8, -1, 0, .6], [.6, 0, -1, -.8], [.96, -.6, -.8, -.28]; maxima .8, .6, .96
    expected1 = (0.8 + 0.6 + 0.96) / 3
    # s2: t·s2ᵀ = 0, 1, .8
    expected2 = (0.0 + 1.0 + 0.8) / 3
    # the same by explicit loops over every pair
    loops = [np.mean([max(float(np.dot(a, b)) for b in s) for a in t]) for s in (s1, s2)]
    assert loops == pytest.approx([expected1, expected2])
    scores = RoE().score(_artefact(t, "target"), [_artefact(s1, "source"), _artefact(s2, "source")])
    assert scores == pytest.approx([expected1, expected2], abs=1e-6)
    assert roe_similarity(t, s1) == pytest.approx(expected1)


def test_asymmetric_and_not_cosine():
    a = np.array([[1.0, 0.0]])
    b = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert roe_similarity(a, b) == pytest.approx(1.0)     # a's one example has a perfect match in b
    assert roe_similarity(b, a) == pytest.approx(0.5)     # b's second example has none in a
    # raw dot products: scaling the source scales the score (prepare normalises, score does not)
    assert roe_similarity(a, 2 * b) == pytest.approx(2.0)


def test_roles_are_checked():
    t = _artefact([[1.0, 0.0]], "target")
    with pytest.raises(ArtefactError, match="used as the target"):
        RoE().score(_artefact([[1.0, 0.0]], "source"), [t])
    with pytest.raises(ValueError, match="same width|one width"):
        roe_similarity(np.ones((2, 3)), np.ones((2, 4)))


def test_registered_in_default_pool():
    assert ESTIMATORS["roe"] is RoE and RoE.in_default_pool
    est = get_estimator("roe")
    assert (est.n_source, est.n_target, est.normalise) == (100, 32, True)


def test_prepare_on_a_real_task(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [{"text": f"sentence number {i} is {'good' if i % 2 else 'bad'}", "label": i % 2} for i in range(40)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    task = load_task(folder)
    est = RoE(n_source=12, n_target=5)
    src, tgt = est.prepare(task), est.prepare_target(task)
    assert src.tensors["embeddings"].shape == (12, 384) and tgt.tensors["embeddings"].shape == (5, 384)
    assert np.linalg.norm(src.tensors["embeddings"], axis=1) == pytest.approx(np.ones(12), abs=1e-5)
    assert (src.config["role"], tgt.config["role"]) == ("source", "target")
    # the artefact keeps numbers only: no example text anywhere in its config
    assert "sentence number" not in json.dumps(src.config)
    # seeded: the same sample and embeddings again
    np.testing.assert_allclose(est.prepare_target(task).tensors["embeddings"], tgt.tensors["embeddings"], atol=1e-6)
    # unit vectors: a dot product is at most 1; texts this alike score high
    score = est.score(tgt, [src])[0]
    assert 0.5 < score <= 1.0 + 1e-6


# ----------------------------------------------------------------------------- TaskShop on top of RoE & co.

import pandas as pd  # noqa: E402

from taskrank.estimators.taskshop import DEFAULT_TRANSFER, TaskShop, read_transfer, taskshop, write_transfer  # noqa: E402
from taskrank.pool import Pool  # noqa: E402
from taskrank.ranking import rank  # noqa: E402

# the 4-task web of tests/test_taskshop.py: TW(s→p) keyed (p, s)
TW = {
    ("A", "B"): 0.1, ("A", "C"): 0.2, ("A", "D"): -0.1,
    ("B", "A"): 0.3, ("B", "C"): 0.0, ("B", "D"): 0.2,
    ("C", "A"): -0.2, ("C", "B"): 0.4, ("C", "D"): 0.1,
    ("D", "A"): 0.05, ("D", "B"): 0.15, ("D", "C"): 0.25,
}


def _transfer_csv(path):
    pd.DataFrame([{"target": p, "source": s, "score": v} for (p, s), v in TW.items()]).to_csv(path, index=False)
    return path


def test_taskshop_estimator_unseen_target_by_hand(tmp_path):
    csv = _transfer_csv(tmp_path / "tw.csv")
    est = TaskShop(direct="size", transfer=str(csv))
    sim_e = np.array([0.5, 0.2, 0.9, 0.1])  # sim(E, A..D); E has no row in the transfer table
    got = dict(zip("ABCD", est.combine("E", list("ABCD"), [sim_e])))
    # (E, A): pivots B, C, D: (.15+.1) (-.1+.45) (.025+.05) -> mean .225
    assert got["A"] == pytest.approx(0.7 * 0.225 + 0.3 * 0.5)
    # (E, C): pivots A, B, D: (.1+.25) (0+.1) (.125+.05) -> mean .625/3
    assert got["C"] == pytest.approx(0.7 * 0.625 / 3 + 0.3 * 0.9)
    assert sorted(got, key=lambda s: -got[s]) == ["C", "B", "A", "D"]


def test_taskshop_names_and_parameters(tmp_path):
    csv = _transfer_csv(tmp_path / "tw.csv")
    est = get_estimator(f"taskshop:size,lam=0.5,normalise=zscore,transfer={csv}")
    assert (est.direct, est.lam, est.normalise, est.transfer) == ("size", 0.5, "zscore", str(csv))
    assert est.name == f"taskshop:size,lam=0.5,normalise=zscore,transfer={csv}"
    assert get_estimator("taskshop:roe").name == "taskshop:roe"
    assert get_estimator("taskshop:roe").transfer_table is not None
    nested = get_estimator("taskshop:ensemble:size+random,lam=0.2")
    assert nested.members[0].name == "ensemble:size+random" and nested.lam == 0.2
    for bad, why in (("taskshop:roe,lam=2", "lam must be in"), ("taskshop:roe,colour=red", "cannot read parameter"),
                     ("taskshop:roe,normalise=cube", "normalise must be")):
        with pytest.raises(ValueError, match=why):
            get_estimator(bad)
    missing = TaskShop(direct="size", transfer=str(tmp_path / "none.csv"))
    with pytest.raises(ArtefactError, match="no such file"):
        missing.combine("E", ["A", "B"], [np.array([1.0, 2.0])])


def test_write_transfer_from_a_pair_table(tmp_path):
    pairs = pd.DataFrame({
        "setting": "m/full", "target": ["A", "A", "B", "B"], "source": ["B", "C", "A", "C"],
        "score": [0.1, np.nan, 0.3, -0.2], "PC": [0.2, np.nan, 0.5, -0.3], "PM": [1.0, np.nan, 1.0, 0.0],
    })
    path = write_transfer(pairs, tmp_path / "transfer.csv")
    table = read_transfer(path)
    assert list(table.columns) == ["target", "source", "score"]
    assert table.values.tolist() == [["A", "B", 0.1], ["B", "A", 0.3], ["B", "C", -0.2]]  # NaN pair left out
    with pytest.raises(ArtefactError, match="several settings"):
        write_transfer(pd.concat([pairs, pairs.assign(setting="other")]), tmp_path / "x.csv")
    assert DEFAULT_TRANSFER.name == "transfer.csv" and DEFAULT_TRANSFER.parent.name == "default"


def _named_task(root, name, n):
    folder = root / name
    folder.mkdir(parents=True)
    rows = [{"text": f"{name} text {i}", "label": i % 2} for i in range(n)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return load_task(folder)


def test_rank_an_unseen_target_with_taskshop(tmp_path):
    """End to end: E is in no transfer result; TaskShop ranks the pool A..D for it through pivots."""
    sizes = {"A": 120, "B": 100, "C": 110, "D": 105}
    tasks = {n: _named_task(tmp_path / "tasks", n, k) for n, k in sizes.items()}
    target = _named_task(tmp_path / "tasks", "E", 10)
    pool = Pool(tmp_path / "pool")
    pool.build(list(tasks.values()), [get_estimator("size")])
    csv = _transfer_csv(tmp_path / "tw.csv")
    ranking = rank(target, pool, get_estimator(f"taskshop:size,transfer={csv}"))
    direct = pd.DataFrame({"target": "E", "source": list(sizes), "score": np.log(list(sizes.values()))})
    expected = taskshop(direct, read_transfer(csv), lam=0.7).set_index("source")["score"]
    assert dict(zip(ranking.table["source"], ranking.table["score"])) == pytest.approx(expected.to_dict())
    # the transfer evidence overturns the order that size alone gives (A, C, D, B)
    assert ranking.table["source"].tolist() == ["B", "C", "A", "D"]
