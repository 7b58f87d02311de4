"""Issue #15: bad input ends with one line on stderr (``taskrank: error: ...``), exit status 2 and
nothing written; options are checked before any work; outputs appear all together or not at all."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.estimators import get_estimator
from taskrank.pool import Pool
from taskrank.recipe import SOURCE
from taskrank.store import Artefact, ArtefactError, Store, default_cache
from taskrank.tasks import TaskError, load_task
from taskrank.transfer.journal import Journal

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "support_tickets.csv"
TASKS = ["a", "b", "c", "d"]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *words) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line 'taskrank: error: ...' holding ``words``."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskrank: error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _probe(path: Path) -> bool:
    """Whether we can still write at ``path`` (a folder: make a file in it; a file: open it for append)."""
    try:
        if path.is_dir():
            (path / ".probe").write_text("x")
            (path / ".probe").unlink()
        else:
            with path.open("a"):
                pass
        return True
    except OSError:
        return False


@pytest.fixture()
def make_readonly(request):
    """Make a file or folder read-only: by its mode, or (as root, which ignores modes) with chattr +i."""

    def lock(path: Path) -> Path:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        request.addfinalizer(lambda: path.chmod(mode))
        if _probe(path):
            done = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)],
                                                             capture_output=True).returncode == 0
            if not done or _probe(path):
                pytest.skip("cannot make a read-only file or folder here (root without chattr +i)")
            request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True))
        return path

    return lock


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for seed in (0, 1):
        for i, t in enumerate(TASKS):
            rows.append(dict(target=t, source="", seed=seed, setting="m/full", metric="accuracy",
                             value=0.6 + 0.05 * i + rng.normal(0, 0.01)))
            for j, s in enumerate(TASKS):
                if s != t:
                    rows.append(dict(target=t, source=s, seed=seed, setting="m/full", metric="accuracy",
                                     value=0.6 + 0.05 * i + 0.02 * (j - 1.5) + rng.normal(0, 0.01)))
    return pd.DataFrame(rows)


@pytest.fixture()
def work(tmp_path, isolated_cache):
    """Inputs of every command: task folders with a 'size' pool, a runs matrix, predictions, a saved
    evaluation and a journal; outputs go to tmp_path/out (checked to stay empty on errors)."""
    root = tmp_path / "in"
    tasks = root / "tasks"
    loaded = []
    for n, t in enumerate(TASKS):
        (tasks / t).mkdir(parents=True)
        rows = [{"text": f"{t} says {i}", "label": "yes" if i % 2 else "no"} for i in range(20 + 10 * n)]
        (tasks / t / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        loaded.append(load_task(tasks / t))
    Pool(root / "pool").build(loaded, [get_estimator("size")])
    runs = _runs()
    runs.to_csv(root / "runs.csv", index=False)
    preds = [(t, s, TASKS.index(s)) for t in TASKS for s in TASKS if s != t]
    pd.DataFrame(preds, columns=["target", "source", "score"]).to_csv(root / "up.csv", index=False)
    r = invoke("evaluate", "--matrix", root / "runs.csv", "--predictions", root / "up.csv", "--boot", 5,
               "--seed-boot", 0, "--out", root / "ev.csv", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    journal = Journal(root / "journal.sqlite")
    for i, row in enumerate(runs.to_dict("records")):
        journal.record({**row, "key": f"k{i}", "config": {}, "seconds": 1.0})
    journal.close()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a-file").write_text("not a folder")
    return SimpleNamespace(root=root, tasks=tasks, pool=root / "pool", runs=root / "runs.csv", preds=root / "up.csv",
                           ev=root / "ev.csv", journal=root / "journal.sqlite", out=tmp_path / "out")


def _command(name: str, w, out: Path) -> list:
    return {
        "evaluate": ["evaluate", "--matrix", w.runs, "--predictions", w.preds, "--boot", 5, "--out", out / "ev.json"],
        "report": ["report", "--evaluation", w.ev, "--matrix", w.runs, "--out", out / "report"],
        "mixture": ["mixture", "--target", "a", "--tasks", w.tasks, "--pool", w.pool, "--method", "size", "--top", 2,
                    "--per-source", 5, "--out", out / "mix.jsonl"],
        "export": ["transfer", "export", "--journal", w.journal, "--out", out / "runs.csv"],
        "export --matrix": ["transfer", "export", "--journal", w.journal, "--out", w.out / "fine" / "runs.csv",
                            "--matrix", out / "matrix.csv"],
        "pool transfer": ["pool", "transfer", "--matrix", w.root / "matrix.csv", "--out", out / "transfer.csv"],
    }[name]


COMMANDS = ["evaluate", "report", "mixture", "export", "export --matrix", "pool transfer"]


# ----------------------------------------------------------------------------- 1. one line, not a traceback


@pytest.mark.parametrize("command", COMMANDS)
def test_out_under_a_file_is_one_line_and_writes_nothing(work, command):
    if command == "pool transfer":
        assert invoke("transfer", "export", "--journal", work.journal, "--out", work.root / "r.csv",
                      "--matrix", work.root / "matrix.csv").exit_code == 0
    before = files(work.out)
    one_line_error(invoke(*_command(command, work, work.out / "a-file" / "sub")), "a-file", "not a folder")
    assert files(work.out) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_out_is_one_line_and_writes_nothing(work, make_readonly, command):
    if command == "pool transfer":
        assert invoke("transfer", "export", "--journal", work.journal, "--out", work.root / "r.csv",
                      "--matrix", work.root / "matrix.csv").exit_code == 0
    locked = work.out / "locked"
    locked.mkdir()
    make_readonly(locked)
    before = files(work.out)
    one_line_error(invoke(*_command(command, work, locked)), "cannot write", str(locked))
    assert files(work.out) == before


def test_read_only_journal(work, make_readonly):
    make_readonly(work.journal)
    r = invoke("transfer", "run", "--tasks", work.tasks, "--journal", work.journal, "--seeds", "0",
               "--workdir", work.out / "models")
    one_line_error(r, "journal.sqlite", "cannot be opened for writing")
    assert not (work.out / "models").exists()
    # reading it is fine: export needs no write access to the journal
    r = invoke("transfer", "export", "--journal", work.journal, "--out", work.out / "runs.csv")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(work.out / "runs.csv")) == len(_runs())


def test_journal_that_is_not_sqlite(work):
    bad = work.root / "bad.sqlite"
    bad.write_text("this is not a database\n" * 20)
    one_line_error(invoke("transfer", "export", "--journal", bad, "--out", work.out / "runs.csv"), "not an SQLite file")
    one_line_error(invoke("transfer", "run", "--tasks", work.tasks, "--journal", bad, "--seeds", "0",
                          "--workdir", work.out / "models"), "not an SQLite file")
    assert files(work.out) == ["a-file"]


def test_truncated_artefact_in_a_pool(work):
    artefact = next((work.pool / "artefacts").rglob("artefact.safetensors"))
    artefact.write_bytes(artefact.read_bytes()[:20])
    one_line_error(invoke("rank", "--target", EXAMPLE, "--pool", work.pool, "--method", "size"),
                   "unreadable artefact", "pool build")


@pytest.mark.parametrize("content", ["{not json", '{"tasks": 3}', "[]", '{"tasks": [{"name": "a"}]}'])
def test_invalid_pool_json(work, content):
    (work.pool / "pool.json").write_text(content)
    one_line_error(invoke("rank", "--target", EXAMPLE, "--pool", work.pool, "--method", "size"), "pool.json")
    one_line_error(invoke("pool", "list", "--pool", work.pool), "pool.json")


def test_pool_build_with_a_folder_that_is_not_a_model(work):
    plain = work.root / "not-a-model"
    plain.mkdir()
    (plain / "README.txt").write_text("hello")
    one_line_error(invoke("pool", "build", work.tasks, "--out", work.out / "pool", "--model", plain),
                   "--model", "not a model folder")
    (plain / "config.json").write_text("{}")  # looks like one, is not
    one_line_error(invoke("pool", "build", work.tasks, "--out", work.out / "pool", "--model", plain, "--method", "size"),
                   "--model", "cannot be loaded")
    assert files(work.out) == ["a-file"]


def test_corrupt_cache_entry_is_rebuilt(tmp_path, isolated_cache):
    cache = default_cache()
    key = ("semb.target-x", "m", "f00d")
    cache.save(*key, Artefact({"x": np.arange(1000.0)}, {"base_model": "m"}))
    tensors = next(isolated_cache.rglob("artefact.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:100])
    assert cache.load(*key) is None and not tensors.parent.exists()  # gone, so it is prepared again
    # a pool's store is not a cache: the same damage is an error that says what to do
    pool_store = Store(tmp_path / "pool-artefacts")
    pool_store.save(*key, Artefact({"x": np.arange(1000.0)}, {"base_model": "m"}))
    damaged = next((tmp_path / "pool-artefacts").rglob("artefact.safetensors"))
    damaged.write_bytes(b"")
    with pytest.raises(ArtefactError, match="unreadable artefact"):
        pool_store.load(*key)


def test_corrupt_cache_entry_is_rebuilt_by_rank(isolated_cache):
    first = invoke("rank", "--target", EXAMPLE, "--method", "semb", "--format", "json")
    assert first.exit_code == 0, first.stderr
    tensors = next(isolated_cache.rglob("artefact.safetensors"))
    whole = tensors.read_bytes()
    tensors.write_bytes(whole[:40])
    again = invoke("rank", "--target", EXAMPLE, "--method", "semb", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout) and tensors.read_bytes() == whole


# ----------------------------------------------------------------------------- 4. options checked before any work


@pytest.mark.parametrize("args,words", [
    (["--seeds", "a,b"], ["--seeds 'a,b'", "whole numbers"]),
    (["--seeds", "0,0"], ["repeated"]),
    (["--source-examples", "-5"], ["--source-examples must be 1 or more, not -5"]),
    (["--batch-size", "0"], ["--batch-size must be 1 or more"]),
    (["--target-lr", "0"], ["--target-lr must be more than 0"]),
    (["--method", "adapter"], ["tuning method 'adapter'", "full, bitfit, lora"]),
    (["--model", "/nonexistent/../" + "x" * 3], []),
])
def test_transfer_run_options_before_any_run(work, args, words):
    if args[0] == "--model":
        (work.root / "xxx").mkdir()
        args = ["--model", work.root / "xxx"]
        words = ["not a model folder"]
    r = invoke("transfer", "run", "--tasks", work.tasks, "--journal", work.out / "journal.sqlite",
               "--workdir", work.out / "models", *(["--seeds", "0"] if args[0] != "--seeds" else []), *args)
    one_line_error(r, *words)
    assert files(work.out) == ["a-file"]  # no journal, no run recorded, no model trained


@pytest.mark.parametrize("args,words", [
    (["--k", "0"], ["--k must be 1 or more, not 0"]),
    (["--k", "100"], ["--k 100", "3 sources"]),
    (["--boot", "-5"], ["--boot must be 0 or more, not -5"]),
    (["--seed-boot", "-1"], ["--seed-boot must be 0 or more"]),
])
def test_evaluate_options_before_any_work(work, args, words):
    r = invoke("evaluate", "--matrix", work.runs, "--predictions", work.preds, "--out", work.out / "ev.json", *args)
    one_line_error(r, *words)
    assert files(work.out) == ["a-file"]
    ok = invoke("evaluate", "--matrix", work.runs, "--predictions", work.preds, "--boot", 5, "--k", 3, "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["meta"]["ks"] == [3]


@pytest.mark.parametrize("top", [-1, 0])
def test_rank_top_must_be_positive(isolated_cache, top):
    one_line_error(invoke("rank", "--target", EXAMPLE, "--method", "size", "--top", top), f"--top must be 1 or more, not {top}")
    rows = json.loads(invoke("rank", "--target", EXAMPLE, "--method", "size", "--top", 1, "--format", "json").stdout)
    assert len(rows) == 1


def test_mixture_options_before_any_work(work):
    for args, word in ((["--top", 0], "--top"), (["--per-source", -1], "--per-source")):
        r = invoke(*_command("mixture", work, work.out)[:-2], "--out", work.out / "m.jsonl", *args)
        one_line_error(r, word)
    r = invoke("mixture", "experiment", "--target", "a", "--tasks", work.tasks, "--pool", work.pool, "--method", "size",
               "--out", work.out / "x.csv", "--conditions", "topk,best")
    one_line_error(r, "--conditions")
    assert files(work.out) == ["a-file"]


# ----------------------------------------------------------------------------- 3. all outputs or none


def test_report_that_fails_half_way_leaves_nothing(work, monkeypatch):
    real = Path.write_text

    def full_disk(self, data, *args, **kwargs):
        if self.name == "report.md":
            raise OSError(28, "No space left on device", str(self))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    r = invoke("report", "--evaluation", work.ev, "--matrix", work.runs, "--out", work.out / "report")
    one_line_error(r, "No space left on device")
    assert files(work.out) == ["a-file"]  # no PNG, no report.html, no temporary folder
    monkeypatch.undo()
    r = invoke("report", "--evaluation", work.ev, "--matrix", work.runs, "--out", work.out / "report")
    assert r.exit_code == 0 and {"report.html", "report.md", "heatmap.png"} <= set(files(work.out / "report"))
    assert not [f for f in files(work.out) if ".taskrank-tmp" in f]


def test_export_that_fails_on_the_second_file_writes_neither(work, monkeypatch):
    import taskrank.report as report

    def broken(pairs, path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(report, "plot_heatmap", broken)
    r = invoke("transfer", "export", "--journal", work.journal, "--out", work.out / "runs.csv",
               "--matrix", work.out / "matrix.csv", "--heatmap", work.out / "heatmap.png")
    one_line_error(r, "No space left on device")
    assert files(work.out) == ["a-file"]
    one_line_error(invoke("transfer", "export", "--journal", work.journal, "--out", work.out / "runs.csv",
                          "--matrix", work.out / "runs.csv"), "different files")


# ----------------------------------------------------------------------------- 5. mixture reads the target's columns


def test_mixture_takes_text_and_label(work):
    target = work.root / "odd.csv"
    target.write_text("body,category\n" + "".join(f"ticket {i},{'x' if i % 2 else 'y'}\n" for i in range(12)))
    base = ["mixture", "--target", target, "--tasks", work.tasks, "--pool", work.pool, "--method", "size",
            "--top", 2, "--per-source", 4, "--out", work.out / "mix.jsonl"]
    one_line_error(invoke(*base), "pass --text")
    r = invoke(*base, "--text", "body", "--label", "category")
    assert r.exit_code == 0, r.stderr
    assert json.loads((work.out / "mix.jsonl.meta.json").read_text())["target"] == "odd"
    assert len((work.out / "mix.jsonl").read_text().splitlines()) == 8


# ----------------------------------------------------------------------------- 2. silently wrong task input


def _write(path: Path, rows, kind=None) -> Path:
    df = pd.DataFrame(rows)
    kind = kind or path.suffix[1:]
    {"parquet": lambda: df.to_parquet(path), "jsonl": lambda: df.to_json(path, orient="records", lines=True),
     "csv": lambda: df.to_csv(path, index=False)}[kind]()
    return path


def test_struct_and_list_text_columns_are_refused_but_choice_lists_work(tmp_path):
    lists = _write(tmp_path / "lists.parquet", {"text": [["a", "b"], ["c"], ["d"]], "label": ["x", "y", "x"]})
    with pytest.raises(TaskError, match=r"text column 'text' holds lists.*--choices"):
        load_task(lists)
    structs = _write(tmp_path / "structs.parquet", {"question": [{"q": "a"}, {"q": "b"}], "label": ["x", "y"]})
    with pytest.raises(TaskError, match="text column 'question' holds structs"):
        load_task(structs)
    labels = _write(tmp_path / "labels.parquet", {"text": ["a", "b", "c"], "label": [["x"], ["y"], ["x"]]})
    with pytest.raises(TaskError, match="label column 'label' holds lists"):
        load_task(labels)
    mc = _write(tmp_path / "mc.parquet", {"question": ["q1", "q2", "q3"], "choices": [["a", "b"], ["c", "d", "e"], ["f", "g"]],
                                         "label": [0, 2, 1]})
    task = load_task(mc)
    assert task.is_multiple_choice and task.split()["choices"].tolist()[1] == ("c", "d", "e")


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_float_labels_mean_regression_even_when_whole(tmp_path, suffix):
    path = _write(tmp_path / f"scores.{suffix}", {"text": ["a", "b", "c", "d"], "label": [1.0, 2.0, 1.0, 5.0]})
    assert load_task(path).is_regression  # as the README says: float labels mean regression
    as_classes = load_task(path, task_type="classification")
    assert as_classes.spec.labels == ("1", "2", "5")
    ints = _write(tmp_path / f"ints.{suffix}", {"text": ["a", "b", "c"], "label": [1, 2, 1]})
    assert load_task(ints).spec.type == "classification"


@pytest.mark.parametrize("name,content,words", [
    ("dup.csv", "text,label,text\na,x,b\nc,y,d\n", ["dup.csv", "column name 'text' appears 2 times"]),
    ("dup.tsv", "text\tlabel\tlabel\na\tx\ty\nc\ty\tx\n", ["column name 'label' appears 2 times"]),
    ("dup.jsonl", '{"text": "a", "label": "x", "text": "b"}\n{"text": "c", "label": "y"}\n', ["key 'text' appears twice"]),
    ("blank.csv", 'text,label\na,x\n"   ",y\nc,x\n', ["column 'text' holds only whitespace in row 2"]),
    ("blank.jsonl", '{"text": "a", "label": "x"}\n{"text": "\\t ", "label": "y"}\n', ["only whitespace in row 2"]),
    ("allempty.jsonl", '{"text": "", "label": "x"}\n{"text": "", "label": "y"}\n', ["empty in every row"]),
    ("mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "neg"}\n{"text": "c", "label": 0}\n',
     ["mixes numbers and names", "row 1: 1", "row 2: 'neg'"]),
    ("mixed.csv", "text,label\na,1\nb,neg\nc,0\n", ["mixes numbers and names"]),
    ("blanklabel.csv", 'text,label\na,x\nb,"  "\nc,y\n', ["label column 'label' is empty in row 2"]),
])
def test_malformed_task_input(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TaskError) as err:
        load_task(path)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_labels_are_stripped_and_empty_texts_kept(tmp_path):
    path = tmp_path / "ws.csv"
    path.write_text("text,label\na,pos\nb,pos \nc, neg\nd,neg\n")
    task = load_task(path)
    assert task.spec.labels == ("neg", "pos") and list(task.label_ids()) == [1, 1, 0, 0]
    same = tmp_path / "clean.csv"
    same.write_text("text,label\na,pos\nb,pos\nc,neg\nd,neg\n")
    assert load_task(same).fingerprint == task.fingerprint
    # an explicit empty string (as in CR, MPQA, TweetEval-hate) is an empty input, kept
    empty = _write(tmp_path / "empty.jsonl", {"text": ["", "b", "c"], "label": ["x", "y", "x"]})
    assert load_task(empty).texts()[0] == ""


# ----------------------------------------------------------------------------- 6. progress, 7. hub, 8. paths


def test_fine_tuning_a_source_model_says_so(tmp_path, monkeypatch, capsys):
    import taskrank.finetuned as finetuned

    path = _write(tmp_path / "src.csv", {"text": list("abcdef"), "label": list("xyxyxy")})
    task = load_task(path)

    def save(model, directory, meta):
        Path(directory).mkdir(parents=True)
        (Path(directory) / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(finetuned, "fine_tune", lambda *a, **k: SimpleNamespace(model=None, history=[{"loss": 0.1}]))
    monkeypatch.setattr(finetuned, "save_encoder", save)
    monkeypatch.delenv("TASKRANK_QUIET", raising=False)
    recipe = finetuned.SourceRecipe(training=SOURCE.but(examples=10))
    finetuned.train(tmp_path / "w", recipe, finetuned.TaskRef.of(task), seed=3, threads=1)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fine-tuning the source model of 'src'" in err[0] and "seed 3" in err[0]
    finetuned.train(tmp_path / "w", recipe, finetuned.TaskRef.of(task), seed=3, threads=1)  # cached: silent
    monkeypatch.setenv("TASKRANK_QUIET", "1")
    finetuned.train(tmp_path / "w", recipe, finetuned.TaskRef.of(task), seed=4, threads=1)  # quiet: silent
    assert capsys.readouterr().err == ""


def test_long_commands_outside_a_terminal_print_one_line_per_finished_unit(work, monkeypatch):
    """A log file gets no progress bar: ``pool build`` says each task, ``evaluate`` each target."""
    monkeypatch.delenv("TASKRANK_QUIET", raising=False)
    r = invoke("pool", "build", work.tasks, "--out", work.out / "pool", "--method", "size")
    assert r.exit_code == 0, r.stderr
    assert [f"pool build {i}/4: {t}" for i, t in enumerate(TASKS, 1)] == [
        line for line in r.stderr.splitlines() if line.startswith("pool build")]
    r = invoke("evaluate", "--matrix", work.runs, "--pool", work.out / "pool", "--method", "size", "--tasks", work.tasks,
               "--boot", 0, "--seed-boot", 0, "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert [f"evaluate: scoring {i}/4: {t}" for i, t in enumerate(TASKS, 1)] == [
        line for line in r.stderr.splitlines() if line.startswith("evaluate: scoring")]


@pytest.mark.parametrize("args", [["rank", "--target", "someone/no-such-dataset", "--method", "size"],
                                  ["pool", "build", "{tasks}", "--out", "{out}", "--model", "someone/no-such-model"]])
def test_unreachable_hub_fails_fast_and_quietly(tmp_path, args):
    """Without HF_HUB_OFFLINE, an endpoint that does not answer: one line in seconds, no retries.
    Never touches the internet: the endpoint and every proxy are a closed local port."""
    (tmp_path / "tasks" / "t").mkdir(parents=True)
    (tmp_path / "tasks" / "t" / "train.csv").write_text("text,label\na,x\nb,y\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "NO_PROXY", "no_proxy")}
    closed = "http://127.0.0.1:9"
    env.update(HF_ENDPOINT=closed, HTTP_PROXY=closed, HTTPS_PROXY=closed, http_proxy=closed, https_proxy=closed,
               HF_HOME=str(tmp_path / "hf"), TASKRANK_CACHE=str(tmp_path / "cache"), TASKRANK_THREADS="1")
    args = [a.format(tasks=tmp_path / "tasks", out=tmp_path / "pool") for a in args]
    start = time.time()
    r = subprocess.run([sys.executable, "-m", "taskrank.cli", *args], env=env, capture_output=True, text=True,
                       timeout=120)
    elapsed = time.time() - start
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("taskrank: error: "), r.stderr
    assert "not in the local Hugging Face cache" in lines[0] and "does not answer" in lines[0]
    assert "Retry" not in r.stderr and elapsed < 30
    assert not (tmp_path / "pool").exists()


def test_pool_transfer_needs_out_and_never_writes_the_package(work):
    assert invoke("transfer", "export", "--journal", work.journal, "--out", work.root / "r.csv",
                  "--matrix", work.root / "matrix.csv").exit_code == 0
    shipped = REPO / "src" / "taskrank" / "pools" / "default" / "transfer.csv"
    before = shipped.stat().st_mtime_ns if shipped.exists() else None
    r = invoke("pool", "transfer", "--matrix", work.root / "matrix.csv")
    assert r.exit_code == 2 and "--out" in r.stderr
    r = invoke("pool", "transfer", "--matrix", work.root / "matrix.csv", "--out", work.out / "t.csv")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(work.out / "t.csv")) == 12
    assert (shipped.stat().st_mtime_ns if shipped.exists() else None) == before
    assert "--out" in (REPO / "benchmarks" / "transfer17" / "export.sh").read_text().split("pool transfer", 1)[1]


def test_shipped_pools_record_no_absolute_path():
    found = []

    def walk(value, where):
        if isinstance(value, dict):
            for v in value.values():
                walk(v, where)
        elif isinstance(value, list):
            for v in value:
                walk(v, where)
        elif isinstance(value, str) and (value.startswith(("/", "~")) or value[1:3] in (":\\", ":/")):
            found.append((where, value))

    for path in (REPO / "src" / "taskrank" / "pools").rglob("*.json"):
        walk(json.loads(path.read_text()), str(path))
    assert not found, found[:3]


def test_source_data_found_by_task_name(tmp_path, monkeypatch):
    from taskrank.estimators.source_models import source_data

    (tmp_path / "data" / "cr").mkdir(parents=True)
    source = Artefact({}, {"task": "cr", "fingerprint": "x"})
    monkeypatch.delenv("TASKRANK_DATA", raising=False)
    assert source_data(source) is None
    monkeypatch.setenv("TASKRANK_DATA", os.pathsep.join([str(tmp_path / "nothing"), str(tmp_path / "data")]))
    assert source_data(source) == str(tmp_path / "data" / "cr")
    old = Artefact({}, {"task": "cr", "fingerprint": "x", "source_path": str(tmp_path)})  # a pool built before
    assert source_data(old) == str(tmp_path)
