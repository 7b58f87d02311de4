"""Tasks: a labelled dataset plus its spec, loaded from files, folders or the Hugging Face hub.

Everything downstream sees one normalised shape: a DataFrame per split with columns
``text`` (and ``text_pair`` for sentence pairs) and ``label`` (class name as a string, or a float
for regression). Every malformed input raises :class:`TaskError` naming the file, column or value.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
                 "val": "validation", "test": "test"}
FILE_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
TEXT_GUESSES = (("text", None), ("text_a", "text_b"), ("sentence1", "sentence2"), ("premise", "hypothesis"),
                ("question1", "question2"), ("sentence", None), ("question", None), ("review", None))
LABEL_GUESSES = ("label", "labels", "score", "target", "class")
FINGERPRINT_ROWS = 1000


class TaskError(ValueError):
    """Malformed task input; the message names the file, column or value."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task is, independent of where its rows came from."""

    name: str
    type: str  # "classification" | "regression"
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    labels: tuple[str, ...] = ()  # class names, in label-id order (classification only)
    group: str | None = None

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

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_regression(self) -> bool:
        return self.spec.type == "regression"

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.spec.labels)

    @property
    def size(self) -> int:
        return len(self.splits["train"])

    def split(self, name: str = "train") -> pd.DataFrame:
        if name not in self.splits:
            raise TaskError(f"{self.origin or self.name}: no '{name}' split (has: {', '.join(self.splits)})")
        return self.splits[name]

    def texts(self, split: str = "train", frame: pd.DataFrame | None = None) -> list:
        """Inputs of a split: strings, or (text, text_pair) tuples for pair tasks."""
        df = self.split(split) if frame is None else frame
        if self.spec.is_pair:
            return list(zip(df["text"].tolist(), df["text_pair"].tolist()))
        return df["text"].tolist()

    def label_ids(self, split: str = "train", frame: pd.DataFrame | None = None) -> np.ndarray:
        """Integer class ids (classification) or float targets (regression)."""
        df = self.split(split) if frame is None else frame
        if self.is_regression:
            return df["label"].to_numpy(dtype=np.float64)
        index = {name: i for i, name in enumerate(self.spec.labels)}
        return df["label"].map(index).to_numpy(dtype=np.int64)

    def sample(self, n: int | None, seed: int = 0, split: str = "train") -> pd.DataFrame:
        """Seeded sample of up to n rows; stratified by class for classification."""
        df = self.split(split)
        if n is None or n >= len(df):
            return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        rng = np.random.default_rng(seed)
        if self.is_regression:
            take = np.sort(rng.choice(len(df), size=n, replace=False))
        else:
            take = _stratified_indices(df["label"].to_numpy(), n, rng)
        picked = df.iloc[take]
        return picked.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    def with_train(self, frame: pd.DataFrame) -> "Task":
        """The same task with another training set (e.g. a sample); the fingerprint follows."""
        return Task(self.spec, {**self.splits, "train": frame.reset_index(drop=True)}, self.origin)

    @property
    def fingerprint(self) -> str:
        """Stable hash of the content only: task type, the set of class names, and a seeded sample of
        training rows. Not the name, folder, file format, column names or the order in which class
        names were declared, so a copy of a task is the same task."""
        if self._fingerprint is None:
            rows = self.sample(FINGERPRINT_ROWS, seed=0)
            cols = ["text", "text_pair", "label"] if self.spec.is_pair else ["text", "label"]
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
) -> Task:
    """Load a task from a file, a folder of split files, or a Hugging Face dataset id."""
    path = Path(source).expanduser()
    if path.is_dir():
        raw, origin = _read_folder(path), str(path)
        meta = _folder_metadata(path)
    elif path.is_file():
        raw, origin, meta = {"train": _read_file(path)}, str(path), {}
    elif _looks_like_path(str(source)):
        raise TaskError(f"{source}: no such file or folder")
    else:
        raw, origin, meta = _read_hub(str(source), hf_config, hf_split), f"hf:{source}", {}
    task_name = name or meta.get("name") or _default_name(path if (path.exists()) else Path(str(source)))
    return _normalise(raw, origin, task_name, text, text_pair, label, task_type, meta)


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
    return df


def _read_folder(path: Path) -> dict[str, pd.DataFrame]:
    found: dict[str, Path] = {}
    for f in sorted(path.iterdir()):
        split = SPLIT_ALIASES.get(f.stem.lower())
        if split and f.suffix.lower() in FILE_FORMATS and split not in found:
            found[split] = f
    if "train" not in found:
        raise TaskError(f"{path}: folder has no train split file (expected train.jsonl/.csv/.tsv/.parquet)")
    return {split: _read_file(f).assign(_file=str(f)) for split, f in found.items()}


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
            "labels": entry.get("labels"), "inputs": entry.get("inputs")}


def _read_hub(dataset_id: str, config: str | None, split: str | None) -> dict[str, pd.DataFrame]:
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as e:
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


def _normalise(raw, origin, name, text, text_pair, label, task_type, meta) -> Task:
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

    splits: dict[str, pd.DataFrame] = {}
    for split, df in raw.items():
        src = df["_file"].iloc[0] if "_file" in df else f"{origin} [{split}]"
        cols = [c for c in df.columns if c != "_file"]
        for col, what in ((text, "text"), (text_pair, "text-pair"), (label, "label")):
            if col is not None and col not in cols:
                raise _missing_column(src, col, cols, what)
        out = pd.DataFrame({"text": df[text]})
        if text_pair is not None:
            out["text_pair"] = df[text_pair]
        out["label"] = df[label]
        for col, orig in (("text", text), ("text_pair", text_pair)):
            if orig is None:
                continue
            bad = out[col].isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise TaskError(f"{src}: column '{orig}' is empty in row {row + 1}")
            out[col] = out[col].astype(str)
        if len(out) == 0:
            raise TaskError(f"{src}: split '{split}' has no rows")
        splits[split] = (out, src)

    kind = task_type or meta.get("type") or _infer_type(splits["train"][0]["label"])
    if kind not in ("classification", "regression"):
        raise TaskError(f"{origin}: task type must be classification or regression, not '{kind}'")
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


def _infer_type(values: pd.Series) -> str:
    """Floats that are not all whole numbers mean regression; strings, bools and ints mean classes."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and values.map(lambda v: isinstance(v, (float, np.floating))).any():
        if not np.all(np.mod(numeric.to_numpy(dtype=float), 1) == 0):
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
    return df.assign(label=values.map(_label_string))


def _label_string(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _class_names(splits: dict[str, pd.DataFrame], declared, origin: str, column: str) -> tuple[str, ...]:
    seen = set()
    for df in splits.values():
        seen.update(df["label"].unique().tolist())
    if declared:
        names = [str(x) for x in declared]
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

