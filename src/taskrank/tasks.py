"""Tasks: a labelled dataset plus its spec, loaded from files, folders or the Hugging Face hub.

Everything downstream sees one normalised shape: a DataFrame per split with columns
``text`` (and ``text_pair`` for sentence pairs) and ``label``. Task types:

- ``classification``: ``label`` is the class name (a string);
- ``regression``: ``label`` is a float;
- ``multiple_choice``: a per-example list of answer texts in ``choices`` (a tuple of strings) and
  ``label`` the 0-based index of the right one (given as an index or as the right choice's text).
  Examples whose choices are all the same (verbalised labels, e.g. ``["Yes", "No"]``) make a
  classification task with those class names instead;
- ``generation``: ``label`` is the answer text (e.g. squad_v2 as a TaskWeb source).

Every malformed input raises :class:`TaskError` naming the file, column or value.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import TaskrankError

SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
                 "val": "validation", "test": "test"}
FILE_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
TEXT_GUESSES = (("text", None), ("text_a", "text_b"), ("sentence1", "sentence2"), ("premise", "hypothesis"),
                ("question1", "question2"), ("sentence", None), ("question", None), ("review", None))
LABEL_GUESSES = ("label", "labels", "score", "target", "class", "answer", "answers")
CHOICE_GUESSES = ("choices", "options", "endings")
TASK_TYPES = ("classification", "regression", "multiple_choice", "generation")
# TaskWeb's Retrieval-of-Experts inputs (taskweb-tasks layout): an extra, not a split
ROE_FILE = "roe32.jsonl"
FINGERPRINT_ROWS = 1000


class TaskError(TaskrankError):
    """Malformed task input; the message names the file, column or value."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task is, independent of where its rows came from."""

    name: str
    type: str  # one of TASK_TYPES
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    labels: tuple[str, ...] = ()  # class names, in label-id order (classification only)
    group: str | None = None
    choices: str | None = None  # the choices column(s) of a multiple-choice task, as given

    @property
    def is_pair(self) -> bool:
        return self.text_pair is not None


@dataclass
class Task:
    """A task's spec and its normalised splits (``text``, optional ``text_pair``, ``label``)."""

    spec: TaskSpec
    splits: dict[str, pd.DataFrame]
    origin: str = ""
    _fingerprint: str | None = field(default=None, repr=False)
    # side data that is not a split (e.g. TaskWeb's RoE inputs, key "roe32"): text, choices
    extras: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_regression(self) -> bool:
        return self.spec.type == "regression"

    @property
    def is_multiple_choice(self) -> bool:
        return self.spec.type == "multiple_choice"

    @property
    def is_generation(self) -> bool:
        return self.spec.type == "generation"

    @property
    def num_labels(self) -> int:
        """Width of a model's head: classes, or 1 (a regression value; a score per (text, choice) pair)."""
        return len(self.spec.labels) if self.spec.type == "classification" else 1

    @property
    def size(self) -> int:
        return len(self.splits["train"])

    def split(self, name: str = "train") -> pd.DataFrame:
        if name not in self.splits:
            raise TaskError(f"{self.origin or self.name}: no '{name}' split (has: {', '.join(self.splits)})")
        return self.splits[name]

    def texts(self, split: str = "train", frame: pd.DataFrame | None = None) -> list:
        """One input per example, what the text methods (textemb, semb, roe, vocab) embed: strings,
        or (text, text_pair) tuples for pair tasks. A multiple-choice example is its text followed
        by its choices, one per line (the answer is not marked); a generation example is its text
        (the answer is an output, as a class label is)."""
        df = self.split(split) if frame is None else frame
        if self.spec.is_pair:
            return list(zip(df["text"].tolist(), df["text_pair"].tolist()))
        if self.is_multiple_choice:
            return [example_text(t, c) for t, c in zip(df["text"].tolist(), df["choices"].tolist())]
        return df["text"].tolist()

    def choice_pairs(self, frame: pd.DataFrame) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Multiple choice: every (text, choice) pair of the frame, example by example, and the
        offsets (N + 1,) of each example's pairs."""
        pairs, offsets = [], [0]
        for text, choices in zip(frame["text"].tolist(), frame["choices"].tolist()):
            pairs += [(text, c) for c in choices]
            offsets.append(len(pairs))
        return pairs, np.asarray(offsets, dtype=np.int64)

    def encoder_inputs(self, frame: pd.DataFrame) -> list:
        """What a tuned model reads: the texts, or every (text, choice) pair of a multiple-choice task."""
        return self.choice_pairs(frame)[0] if self.is_multiple_choice else self.texts(frame=frame)

    def encoder_labels(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels of ``encoder_inputs``: class ids or values; for multiple choice 1 for the right
        (text, choice) pair and 0 for the others (how LogME and ESM-LogME read such a target)."""
        if not self.is_multiple_choice:
            return self.label_ids(frame=frame)
        _, offsets = self.choice_pairs(frame)
        y = np.zeros(offsets[-1], dtype=np.int64)
        y[offsets[:-1] + frame["label"].to_numpy(dtype=np.int64)] = 1
        return y

    def label_ids(self, split: str = "train", frame: pd.DataFrame | None = None) -> np.ndarray:
        """Integer class ids (classification), float targets (regression) or the index of the right
        choice (multiple choice). A generation task has answers, not label ids."""
        df = self.split(split) if frame is None else frame
        if self.is_regression:
            return df["label"].to_numpy(dtype=np.float64)
        if self.is_multiple_choice:
            return df["label"].to_numpy(dtype=np.int64)
        if self.is_generation:
            raise TaskError(f"{self.origin or self.name}: a generation task has answers, not label ids")
        index = {name: i for i, name in enumerate(self.spec.labels)}
        return df["label"].map(index).to_numpy(dtype=np.int64)

    def sample(self, n: int | None, seed: int = 0, split: str = "train") -> pd.DataFrame:
        """Seeded sample of up to n rows; stratified by class for classification."""
        df = self.split(split)
        if n is None or n >= len(df):
            return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        rng = np.random.default_rng(seed)
        if self.spec.type != "classification":
            take = np.sort(rng.choice(len(df), size=n, replace=False))
        else:
            take = _stratified_indices(df["label"].to_numpy(), n, rng)
        picked = df.iloc[take]
        return picked.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    @property
    def fingerprint(self) -> str:
        """Stable hash of the content only: task type, the set of class names, and a seeded sample of
        training rows. Not the name, folder, file format, column names or the order in which class
        names were declared, so a copy of a task is the same task."""
        if self._fingerprint is None:
            rows = self.sample(FINGERPRINT_ROWS, seed=0)
            cols = ["text", "text_pair", "label"] if self.spec.is_pair else ["text", "label"]
            if self.is_multiple_choice:
                cols = ["text", "choices", "label"]
            payload = {
                "type": self.spec.type,
                "labels": sorted(self.spec.labels),
                "pair": self.spec.is_pair,
                "n_train": self.size,
                "rows": [[str(v) for v in r] for r in rows[cols].itertuples(index=False)],
            }
            blob = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
            self._fingerprint = hashlib.sha256(blob).hexdigest()[:16]
        return self._fingerprint

    def metadata(self) -> dict:
        """Numbers and names only (no text): what a pool keeps about a task."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "type": self.spec.type,
            "size": self.size,
            "labels": list(self.spec.labels),
            "group": self.spec.group,
            "pair": self.spec.is_pair,
        }


def example_text(text: str, choices) -> str:
    """A multiple-choice example as one text: the text, then each choice on its own line."""
    return "\n".join([text, *choices])


def _stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Proportional allocation per class (largest remainder), at least one per class when n allows."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts / counts.sum() * n
    alloc = np.floor(exact).astype(int)
    if n >= len(classes):
        alloc = np.maximum(alloc, 1)
    while alloc.sum() > n:
        alloc[np.argmax(alloc)] -= 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while alloc.sum() < n:
        c = order[i % len(classes)]
        if alloc[c] < counts[c]:
            alloc[c] += 1
        i += 1
    picked = []
    for c, k in zip(classes, alloc):
        members = np.flatnonzero(labels == c)
        picked.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------------------------------------
# loading


def load_task(
    source: str | Path,
    text: str | None = None,
    text_pair: str | None = None,
    label: str | None = None,
    task_type: str | None = None,
    name: str | None = None,
    hf_config: str | None = None,
    hf_split: str | None = None,
    choices: str | None = None,
) -> Task:
    """Load a task from a file, a folder of split files, or a Hugging Face dataset id.

    ``choices`` names a multiple-choice task's choices: one column holding a list per example (a
    JSON list in CSV/TSV), or several columns separated by commas, one choice each (empty cells
    leave that example with fewer choices). Guessed from ``choices``/``options``/``endings``."""
    path = Path(source).expanduser()
    extras: dict[str, pd.DataFrame] = {}
    if path.is_dir():
        raw, origin = _read_folder(path), str(path)
        meta = _folder_metadata(path)
        if (path / ROE_FILE).is_file():
            extras["roe32"] = read_roe_inputs(path / ROE_FILE)
    elif path.is_file():
        raw, origin, meta = {"train": _read_file(path)}, str(path), {}
    elif _looks_like_path(str(source)):
        raise TaskError(f"{source}: no such file or folder")
    else:
        raw, origin, meta = _read_hub(str(source), hf_config, hf_split), f"hf:{source}", {}
    task_name = name or meta.get("name") or _default_name(path if (path.exists()) else Path(str(source)))
    task = _normalise(raw, origin, task_name, text, text_pair, label, task_type, meta, choices)
    task.extras.update(extras)
    return task


def _looks_like_path(s: str) -> bool:
    return s.startswith((".", "/", "~")) or Path(s).suffix.lower() in FILE_FORMATS or s.count("/") > 1


def _default_name(path: Path) -> str:
    return path.stem if path.suffix else path.name


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise TaskError(f"{path}: file is empty")
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, encoding="utf-8", keep_default_na=False, na_values=[""])
        elif suffix == ".tsv":
            df = pd.read_csv(path, sep="\t", encoding="utf-8", keep_default_na=False, na_values=[""])
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=suffix == ".jsonl", encoding="utf-8", dtype=False)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise TaskError(f"{path}: unsupported file type '{suffix}' (use {', '.join(FILE_FORMATS)})")
    except UnicodeDecodeError as e:
        raise TaskError(f"{path}: not valid UTF-8 text (byte {e.start}); re-save the file as UTF-8") from None
    except TaskError:
        raise
    except Exception as e:  # parser errors from pandas/pyarrow: keep one line, name the file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TaskError(f"{path}: cannot be read as {suffix[1:]}: {msg}") from None
    if len(df) == 0:
        raise TaskError(f"{path}: no rows")
    _check_unique_columns(path, suffix, df)
    return df


def _check_unique_columns(path: Path, suffix: str, df: pd.DataFrame) -> None:
    """Two columns of one name are an error (pandas would silently rename the second 'x.1' in a
    CSV/TSV, and keep only the last of a JSON object's repeated keys)."""
    names = [str(c) for c in df.columns]
    if suffix in (".csv", ".tsv"):
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                names = next(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","), names)
        except (OSError, csv.Error, UnicodeDecodeError):
            pass
    elif suffix == ".jsonl":
        def pairs(items):
            keys = [k for k, _ in items]
            repeated = sorted({k for k in keys if keys.count(k) > 1})
            if repeated:
                raise TaskError(f"{path}: key '{repeated[0]}' appears twice in one JSON object; column names must differ")
            return dict(items)

        with path.open(encoding="utf-8") as f:
            for line in itertools.islice(f, 100):  # a header's worth of rows
                if line.strip():
                    try:
                        json.loads(line, object_pairs_hook=pairs)
                    except json.JSONDecodeError:
                        break
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise TaskError(f"{path}: column name '{repeated[0]}' appears {names.count(repeated[0])} times; "
                        "column names must differ (rename one)")


def _read_folder(path: Path) -> dict[str, pd.DataFrame]:
    found: dict[str, Path] = {}
    for f in sorted(path.iterdir()):
        split = SPLIT_ALIASES.get(f.stem.lower())
        if split and f.suffix.lower() in FILE_FORMATS:
            if split in found:
                raise TaskError(f"{path}: both {found[split].name} and {f.name} hold the {split} split; keep one")
            found[split] = f
    if "train" not in found:
        if (path / ROE_FILE).is_file():
            return {"train": _roe_as_train(path / ROE_FILE)}
        raise TaskError(f"{path}: folder has no train split file (expected train.jsonl/.csv/.tsv/.parquet)")
    return {split: _read_file(f).assign(_file=str(f)) for split, f in found.items()}


def read_roe_inputs(path: Path) -> pd.DataFrame:
    """TaskWeb's RoE inputs: every entry's text and choices (None for generation templates)."""
    df = _read_file(path)
    for col in ("text", "choices"):
        if col not in df.columns:
            raise TaskError(f"{path}: no '{col}' column (a TaskWeb roe32.jsonl has text, choices, label)")
    choices = [tuple(str(c) for c in v) if isinstance(v, (list, tuple, np.ndarray)) else None for v in df["choices"]]
    return pd.DataFrame({"text": df["text"].astype(str), "choices": choices})


def _roe_as_train(path: Path) -> pd.DataFrame:
    """A folder with only TaskWeb's RoE inputs: its labelled entries (those with choices and an
    answer among them) are the training examples; if none is labelled, the texts alone make a
    generation task whose answers are unknown (text methods can still use it)."""
    df = _read_file(path)
    labelled = df[df["choices"].map(lambda v: isinstance(v, (list, tuple, np.ndarray))) & (df["label"] >= 0)]
    if len(labelled):
        return labelled[["text", "choices", "label"]].reset_index(drop=True).assign(_file=str(path))
    return pd.DataFrame({"text": df["text"], "answer": ""}).assign(_file=str(path))


def _folder_metadata(path: Path) -> dict:
    """Spec hints from a tasks.json beside the folder (the layout of the shared benchmark data)."""
    index = path.parent / "tasks.json"
    if not index.is_file():
        return {}
    try:
        entry = json.loads(index.read_text(encoding="utf-8")).get(path.name)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaskError(f"{index}: not valid JSON ({e})") from None
    if not entry:
        return {}
    return {"name": path.name, "group": entry.get("group"), "type": entry.get("type"),
            "labels": entry.get("labels") or entry.get("choices"), "inputs": entry.get("inputs")}


def _read_hub(dataset_id: str, config: str | None, split: str | None) -> dict[str, pd.DataFrame]:
    from . import hub

    offline = hub.offline_if_unreachable()  # an unreachable hub: fail at once, not after a minute of retries
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as e:
        if offline:
            raise TaskError(f"{dataset_id}: not a file or folder, and not in the local Hugging Face cache "
                            f"({offline})") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TaskError(f"{dataset_id}: not a file or folder, and not loadable from the Hugging Face hub: {first}") from None
    if split is not None:
        return {"train": ds.to_pandas()}
    out = {}
    for key, part in ds.items():
        canonical = SPLIT_ALIASES.get(key.lower())
        if canonical and canonical not in out:
            out[canonical] = part.to_pandas()
    if "train" not in out:
        raise TaskError(f"{dataset_id}: dataset has no train split (has: {', '.join(ds)}); pass a split")
    return out


def _missing_column(where: str, column: str, columns: list[str], what: str) -> TaskError:
    close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(c for c in columns if c != "_file")
    return TaskError(f"{where}: no {what} column '{column}' (columns: {shown}){hint}")


def _normalise(raw, origin, name, text, text_pair, label, task_type, meta, choices=None) -> Task:
    first = raw["train"]
    where = first["_file"].iloc[0] if "_file" in first else origin
    columns = [c for c in first.columns if c != "_file"]
    inputs = meta.get("inputs") or []
    if text is None:
        if inputs:
            text, text_pair = inputs[0], (inputs[1] if len(inputs) > 1 else None)
        else:
            for a, b in TEXT_GUESSES:
                if a in columns and (b is None or b in columns):
                    text, text_pair = a, b
                    break
            else:
                raise TaskError(f"{where}: cannot tell the text column (columns: {', '.join(columns)}); pass --text")
    if label is None:
        label = next((c for c in LABEL_GUESSES if c in columns), None)
        if label is None:
            raise TaskError(f"{where}: cannot tell the label column (columns: {', '.join(columns)}); pass --label")
    if task_type is not None and task_type not in TASK_TYPES:
        raise TaskError(f"{origin}: task type must be one of {', '.join(TASK_TYPES)}, not '{task_type}'")
    if choices is None and text_pair is None and task_type not in ("regression", "generation"):
        choices = next((c for c in CHOICE_GUESSES if c in columns), None)
    choice_columns = [c.strip() for c in choices.split(",") if c.strip()] if choices else []

    splits: dict[str, pd.DataFrame] = {}
    for split, df in raw.items():
        src = df["_file"].iloc[0] if "_file" in df else f"{origin} [{split}]"
        cols = [c for c in df.columns if c != "_file"]
        for col, what in ((text, "text"), (text_pair, "text-pair"), (label, "label"),
                          *((c, "choices") for c in choice_columns)):
            if col is not None and col not in cols:
                raise _missing_column(src, col, cols, what)
        out = pd.DataFrame({"text": df[text]})
        if text_pair is not None:
            out["text_pair"] = df[text_pair]
        if choice_columns:
            out["choices"] = _choice_lists(df, choice_columns, src)
        out["label"] = df[label]
        if not choice_columns:
            _check_scalars(out["label"], src, label, "label")
        for col, orig in (("text", text), ("text_pair", text_pair)):
            if orig is None:
                continue
            _check_scalars(out[col], src, orig, "text")
            bad = out[col].isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise TaskError(f"{src}: column '{orig}' is empty in row {row + 1}")
            out[col] = out[col].astype(str)
            _check_blank(out[col], src, orig)
        if len(out) == 0:
            raise TaskError(f"{src}: split '{split}' has no rows")
        splits[split] = (out, src)

    if choice_columns:
        return _choice_task(splits, origin, name, text, label, task_type or meta.get("type"), meta, choices)
    kind = task_type or meta.get("type") or ("generation" if label in ("answer", "answers") else None) \
        or _infer_type(splits["train"][0]["label"])
    if kind == "multiple_choice":
        raise TaskError(f"{where}: a multiple-choice task needs a choices column (columns: {', '.join(columns)}); "
                        "pass --choices")
    if kind not in TASK_TYPES:
        raise TaskError(f"{origin}: task type must be one of {', '.join(TASK_TYPES)}, not '{kind}'")
    if kind == "generation":
        normalised = {split: df.assign(label=df["label"].map(lambda v: "" if v is None or v != v else str(v)))
                      for split, (df, src) in splits.items()}
        spec = TaskSpec(name=name, type=kind, text=text, text_pair=text_pair, label=label, group=meta.get("group"))
        return Task(spec, normalised, origin)
    normalised = {}
    for split, (df, src) in splits.items():
        normalised[split] = _check_labels(df, kind, src, label)
    labels: tuple[str, ...] = ()
    if kind == "classification":
        labels = _class_names(normalised, meta.get("labels"), origin, label)
        seen = normalised["train"]["label"].unique()
        if len(seen) < 2:
            raise TaskError(f"{where}: label column '{label}' has a single class ('{seen[0]}'); need at least two")
    spec = TaskSpec(name=name, type=kind, text=text, text_pair=text_pair, label=label, labels=labels,
                    group=meta.get("group"))
    return Task(spec, normalised, origin)


_NOT_SCALAR = (list, tuple, dict, set, np.ndarray, bytes, bytearray)


def _check_scalars(values: pd.Series, src: str, column: str, what: str) -> None:
    """A text or label column must hold single values: a list or struct (Parquet, JSON, a hub
    dataset) would otherwise become its Python repr. (A list column is right for --choices.)"""
    if values.dtype != object:
        return
    bad = values.map(lambda v: isinstance(v, _NOT_SCALAR)).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        kind = {dict: "structs", bytes: "bytes", bytearray: "bytes"}.get(type(value), "lists")
        hint = " (a column of choice lists goes to --choices)" if kind == "lists" and what == "text" else ""
        raise TaskError(f"{src}: {what} column '{column}' holds {kind}, not single values (row {row + 1}: "
                        f"{str(value)[:60]!r}); pass --{what} with a column of {what}s{hint}")


def _check_blank(texts: pd.Series, src: str, column: str) -> None:
    """A text of only whitespace is an error, as an empty cell is; an empty JSON/Parquet string
    ("") is kept as an empty input (a few real datasets have some: CR, MPQA, TweetEval-hate), but
    a column that is empty in every row is an error."""
    stripped = texts.str.strip()
    blank = ((stripped == "") & (texts != "")).to_numpy(dtype=bool)
    if blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise TaskError(f"{src}: column '{column}' holds only whitespace in row {row + 1} "
                        f"({texts.iloc[row]!r}); give a text or remove the row")
    if (stripped == "").all():
        raise TaskError(f"{src}: column '{column}' is empty in every row; is it the text column?")


def _choice_lists(df: pd.DataFrame, columns: list[str], src: str) -> list[tuple[str, ...]]:
    """Each row's choices as a tuple of strings: from one list column (a JSON list in CSV/TSV) or
    from one column per choice (empty cells skipped)."""
    out = []
    for row, values in enumerate(zip(*(df[c].tolist() for c in columns))):
        if len(columns) == 1:
            value = values[0]
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = None
            if not isinstance(value, (list, tuple, np.ndarray)):
                raise TaskError(f"{src}: column '{columns[0]}' must hold a list of choices, row {row + 1} has "
                                f"{str(values[0])[:60]!r}")
            items = list(value)
        else:
            items = [v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)) or v == "")]
        bad = [v for v in items if not isinstance(v, (str, int, float)) or isinstance(v, bool) or not str(v).strip()]
        if bad:
            raise TaskError(f"{src}: row {row + 1} has a choice that is not a non-empty text: {bad[0]!r}")
        if len(items) < 2:
            raise TaskError(f"{src}: row {row + 1} has {len(items)} choice(s); a multiple-choice example needs at least two")
        out.append(tuple(str(v) for v in items))
    return out


def _choice_index(label, choices: tuple[str, ...], src: str, column: str, row: int) -> int:
    """The right choice's index from an index (int or whole-number string) or the choice's text."""
    if isinstance(label, (int, np.integer)) or (isinstance(label, (float, np.floating)) and float(label).is_integer()):
        index = int(label)
    elif isinstance(label, str) and label.strip().lstrip("-").isdigit() and label.strip() not in choices:
        index = int(label.strip())
    elif isinstance(label, str) and label in choices:
        return choices.index(label)
    else:
        raise TaskError(f"{src}: label column '{column}' row {row + 1}: {label!r} is neither a choice index "
                        f"nor one of the choices")
    if not 0 <= index < len(choices):
        raise TaskError(f"{src}: label column '{column}' row {row + 1}: index {index} out of range for "
                        f"{len(choices)} choices")
    return index


def _choice_task(splits, origin, name, text, label, kind, meta, choices) -> Task:
    """A task with per-example choices: multiple choice, or classification when every example has the
    same choices (they are the class names, in the order given)."""
    for split, (df, src) in splits.items():
        df["label"] = [_choice_index(v, c, src, label, i) for i, (v, c) in enumerate(zip(df["label"], df["choices"]))]
    distinct = {c for df, _ in splits.values() for c in df["choices"]}
    if kind is None:
        kind = "classification" if len(distinct) == 1 else "multiple_choice"
    if kind == "classification":
        if len(distinct) != 1:
            raise TaskError(f"{origin}: the examples' choices differ, so this is not a classification task "
                            "(leave out --type, or pass --type multiple_choice)")
        names = next(iter(distinct))
        if len(set(names)) != len(names):
            raise TaskError(f"{origin}: the choices {list(names)} repeat a name; class names must differ")
        normalised = {split: df.drop(columns="choices").assign(label=[names[i] for i in df["label"]])
                      for split, (df, _) in splits.items()}
        spec = TaskSpec(name=name, type=kind, text=text, label=label, labels=names, group=meta.get("group"),
                        choices=choices)
        return Task(spec, normalised, origin)
    if kind != "multiple_choice":
        raise TaskError(f"{origin}: a task with choices is multiple_choice or classification, not '{kind}'")
    normalised = {split: df.reset_index(drop=True) for split, (df, _) in splits.items()}
    spec = TaskSpec(name=name, type=kind, text=text, label=label, group=meta.get("group"), choices=choices)
    return Task(spec, normalised, origin)


def _infer_type(values: pd.Series) -> str:
    """Float labels mean regression, whole-number floats (1.0, 2.0) too, as the README says: the
    type of the values decides, not whether they happen to be whole. Strings, bools and integers
    mean classes (``--type`` overrides either way)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and values.map(lambda v: isinstance(v, (float, np.floating))).any():
        return "regression"
    return "classification"


def _check_labels(df: pd.DataFrame, kind: str, src: str, column: str) -> pd.DataFrame:
    values = df["label"]
    if kind == "regression":
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TaskError(f"{src}: regression label column '{column}' has a non-numeric or non-finite value "
                            f"{values.iloc[row]!r} in row {row + 1}")
        return df.assign(label=numeric.astype(float))
    missing = values.isna() | values.map(lambda v: isinstance(v, float) and math.isnan(v))
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise TaskError(f"{src}: label column '{column}' is empty in row {row + 1}")
    numbers = values.map(_is_number).to_numpy(dtype=bool)
    if numbers.any() and not numbers.all():
        a, b = int(np.flatnonzero(numbers)[0]), int(np.flatnonzero(~numbers)[0])
        raise TaskError(f"{src}: label column '{column}' mixes numbers and names (row {a + 1}: {values.iloc[a]!r}, "
                        f"row {b + 1}: {values.iloc[b]!r}); use one kind of label")
    labels = values.map(_label_string)
    blank = (labels == "").to_numpy(dtype=bool)
    if blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise TaskError(f"{src}: label column '{column}' is empty in row {row + 1} ({values.iloc[row]!r})")
    return df.assign(label=labels)


def _is_number(v) -> bool:
    """A number, or a text that reads as a finite number (' 2', '1.5'); not a bool."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    try:
        return math.isfinite(float(str(v).strip()))
    except ValueError:
        return False


def _label_string(v) -> str:
    """A class name: surrounding whitespace is dropped ('pos ' and 'pos' are one class), and a
    whole-number float is written as an integer (1.0 -> '1')."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _class_names(splits: dict[str, pd.DataFrame], declared, origin: str, column: str) -> tuple[str, ...]:
    seen = set()
    for df in splits.values():
        seen.update(df["label"].unique().tolist())
    if declared:
        names = [str(x).strip() for x in declared]
        unknown = sorted(seen - set(names))
        if unknown:
            raise TaskError(f"{origin}: label column '{column}' has value '{unknown[0]}' not among the declared labels")
        return tuple(names)
    if all(s.lstrip("-").isdigit() for s in seen):
        return tuple(sorted(seen, key=int))
    return tuple(sorted(seen))


def load_task_folder(folder: str | Path) -> list[Task]:
    """Every task in a folder of task folders (the layout of ../shared/data/tasks), by name."""
    root = Path(folder)
    if not root.is_dir():
        raise TaskError(f"{root}: not a folder of tasks")
    tasks = [load_task(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not tasks:
        raise TaskError(f"{root}: contains no task folders")
    return tasks

