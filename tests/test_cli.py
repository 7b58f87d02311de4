"""The command line end to end: rank on the shipped default pool, JSON interfaces, error exits."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskrank.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support_tickets.csv"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_methods_json_lists_estimators():
    names = json.loads(invoke("methods", "--format", "json").stdout)
    assert {"random", "size", "textemb", "semb"} <= set(names)


def test_rank_example_target_on_default_pool(isolated_cache):
    result = invoke("rank", "--target", EXAMPLE, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == list(range(1, 18))
    assert len({r["source"] for r in rows}) == 17
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {"rank", "source", "score", "group", "size"} <= set(rows[0])


def test_textemb_puts_mr_in_top3_for_sst2(shared_tasks, isolated_cache):
    """sst2 and mr are both movie-review sentiment (same site): TextEmb must see it."""
    result = invoke("rank", "--target", shared_tasks / "sst2", "--method", "textemb", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert "sst2" not in [r["source"] for r in rows] and "left out sst2" in result.stderr
    assert "mr" in [r["source"] for r in rows[:3]]


def test_pool_build_and_list(shared_tasks, tmp_path, isolated_cache):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name in ("cr", "trec"):
        (folder / name).symlink_to(shared_tasks / name)
    result = invoke("pool", "build", folder, "--out", tmp_path / "pool", "--method", "size", "--method", "random")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(invoke("pool", "list", "--pool", tmp_path / "pool", "--format", "json").stdout)
    assert [t["name"] for t in listed] == ["cr", "trec"] and listed[0]["size"] == 3020
    ranked = json.loads(invoke("rank", "--target", EXAMPLE, "--pool", tmp_path / "pool", "--method", "size",
                               "--format", "json").stdout)
    assert [r["source"] for r in ranked] == ["trec", "cr"]  # 4907 > 3020 examples
    missing = invoke("rank", "--target", EXAMPLE, "--pool", tmp_path / "pool", "--method", "textemb")
    assert missing.exit_code == 2 and "no 'textemb' artefact for task 'cr'" in missing.stderr


@pytest.mark.parametrize("content,args,words", [
    ("text,lable\nhi,a\nbye,b\n", ["--label", "label"], ["'label'", "did you mean 'lable'"]),
    ("", [], ["empty"]),
    ("text,label\nx,pos\ny,pos\n", [], ["single class"]),
    ("text,label\nx,1.5\ny,oops\n", ["--type", "regression"], ["'oops'", "row 2"]),
])
def test_bad_target_exits_2_with_one_line_and_writes_nothing(tmp_path, isolated_cache, content, args, words):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    before = sorted(tmp_path.rglob("*"))
    result = invoke("rank", "--target", bad, *args)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskrank: error: ") and str(bad) in lines[0]
    for word in words:
        assert word in lines[0]
    assert sorted(tmp_path.rglob("*")) == before and not isolated_cache.exists()


def test_unknown_method_and_pool_are_one_line_errors(isolated_cache):
    result = invoke("rank", "--target", EXAMPLE, "--method", "nope")
    assert result.exit_code == 2 and "unknown method 'nope'" in result.stderr
    result = invoke("rank", "--target", EXAMPLE, "--pool", "/nonexistent/pool")
    assert result.exit_code == 2 and "not a taskrank pool" in result.stderr


def listed_methods() -> list[str]:
    return json.loads(invoke("methods", "--format", "json").stdout)


def default_pool_methods() -> list[str]:
    """Every listed method whose artefacts (or whose members' artefacts) ship in the default pool."""
    from taskrank.estimators import get_estimator
    from taskrank.pool import Pool
    from taskrank.resolve import leaves

    pool = Pool.open("default")
    usable = []
    for name in listed_methods():
        members = leaves([get_estimator(name)])
        if all(pool.store.has(m.artefact_id, m.model.model_id, t["fingerprint"]) for m in members for t in pool.tasks):
            usable.append(name)
    return usable


def test_default_pool_ships_every_method():
    assert default_pool_methods() == listed_methods()


def source_models_cached() -> bool:
    """LogME/LEEP/NCE also need the 17 fine-tuned source models (not shipped: 90 MB each)."""
    from taskrank.estimators.source_models import LogmeEstimator
    from taskrank.pool import Pool

    estimator = LogmeEstimator()
    return all((estimator.model_folder(t["name"], t["fingerprint"]) / "model.safetensors").exists()
               for t in Pool.open("default").tasks)


@pytest.mark.parametrize("method", listed_methods())
def test_every_method_ranks_the_example_on_the_default_pool(method, isolated_cache):
    from taskrank.estimators import get_estimator
    from taskrank.estimators.source_models import _SourceModelEstimator

    if isinstance(get_estimator(method), _SourceModelEstimator) and not source_models_cached():
        pytest.skip("the 17 fine-tuned source models are not in the cache (the transfer benchmark trains them)")
    result = invoke("rank", "--target", EXAMPLE, "--method", method, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 17 and all(r["score"] == r["score"] for r in rows)  # no NaN
