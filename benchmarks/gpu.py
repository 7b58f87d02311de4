"""GPU against CPU in one run: embedding throughput, fine-tuning speed, ESM-LogME per source, a transfer grid.

Every measurement runs once per device (``--devices cpu,cuda`` by default); a device this machine
does not have gets a row with ``skipped`` saying why, so the file always shows what was and was
not measured. Inputs are synthetic (seeded sentences from a small vocabulary, 3 classes), so the
script needs no data and no network:

* ``embed``: texts per second of ``BaseModel.embed`` (``--texts`` texts, ``--max-length`` tokens);
* ``finetune``: training examples per second of full fine-tuning (one epoch, batch 32; mixed
  precision on the GPU, float32 on the CPU);
* ``esm_logme``: seconds per source of ESM-LogME at ``--dim`` and ``--sources`` maps for 1,000
  target examples: the target's embedding on the device plus the scoring, which is CPU code
  (float64 LAPACK, ``score_linear_maps``) on every device;
* ``transfer``: a small grid (3 tasks, 1 seed, full fine-tuning) through ``run_grid``: seconds per run.

Usage:
    python benchmarks/gpu.py                        # the default model (MiniLM, d = 384), cpu and cuda
    python benchmarks/gpu.py --model bert-base-uncased --dim 768 --sources 1500
    python benchmarks/gpu.py --tiny --out /tmp/gpu  # a tiny random model: proves the script runs
Writes ``<out>.json`` (rows + machine) and ``<out>.csv`` (rows). Not a test: numbers depend on the
machine. CPU-only runs are not GPU results: keep them out of benchmarks/results/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORDS = ("the a service app refund charge account password login error crash screen invoice plan team match "
         "goal stock market rate bank weather rain sun happy sad great awful slow fast open close page").split()


def sentences(n: int, seed: int, length=(6, 40)) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(*length))) for _ in range(n)]


def write_task(root: Path, name: str, n: int, seed: int) -> Path:
    """A synthetic 3-class task folder (train + validation CSV)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, k in (("train", n), ("validation", max(n // 4, 6))):
        texts = sentences(k, seed + (split == "validation"))
        labels = np.random.default_rng(seed + 7).integers(0, 3, k)
        body = "\n".join(f'"{t}",c{y}' for t, y in zip(texts, labels))
        (folder / f"{split}.csv").write_text("text,label\n" + body + "\n")
    return folder


def tiny_model(root: Path) -> str:
    """A tiny random BERT (hidden 32, 2 layers) with the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from taskrank.models import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    return str(root / "tiny")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_embed(model: str, device, args) -> dict:
    from taskrank.models import BaseModel

    base = BaseModel(model, max_length=args.max_length, device=str(device))
    texts = sentences(args.texts, 1)
    base.embed(texts[:64])  # load and warm up
    _sync(device)
    start = time.perf_counter()
    base.embed(texts)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"value": len(texts) / seconds, "unit": "texts/s", "seconds": seconds, "n": len(texts)}


def bench_finetune(model: str, device, args, root: Path) -> dict:
    from taskrank.models import BaseModel
    from taskrank.tasks import load_task
    from taskrank.tuning import TuningConfig, fine_tune

    task = load_task(str(write_task(root / "ft", "finetune", args.examples, 3)))
    base = BaseModel(model, max_length=args.max_length, device=str(device))
    config = TuningConfig(method="full", epochs=1, batch_size=32, max_length=args.max_length)
    fine_tune(base, task, config, train=task.split("train").iloc[:64])  # warm-up
    _sync(device)
    start = time.perf_counter()
    fine_tune(base, task, config)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"value": task.size / seconds, "unit": "examples/s", "seconds": seconds, "n": task.size}


def bench_esm_logme(model: str, device, args) -> dict:
    """Target embedding on the device, then ESM-LogME over ``sources`` random maps at ``dim``."""
    from taskrank.estimators.logme import score_linear_maps
    from taskrank.models import BaseModel

    base = BaseModel(model, max_length=args.max_length, device=str(device))
    texts = sentences(1000, 5)
    base.embed(texts[:32])
    _sync(device)
    start = time.perf_counter()
    embedded = base.embed(texts)
    _sync(device)
    embed_seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    d, k = args.dim, args.sources
    # the scoring is measured at d (the paper's 768) whatever the model's width: features of that width
    features = rng.standard_normal((len(texts), d)) if embedded.shape[1] != d else embedded.astype(np.float64)
    labels = rng.integers(0, 3, len(texts))
    weights = (np.eye(d) + rng.standard_normal((k, d, d)) * 0.05 / np.sqrt(d)).astype(np.float32)
    biases = (rng.standard_normal((k, d)) * 0.05).astype(np.float32)
    start = time.perf_counter()
    scores = score_linear_maps(features, labels, weights, biases)
    score_seconds = time.perf_counter() - start
    assert np.isfinite(scores).all()
    return {"value": (embed_seconds + score_seconds) / k, "unit": "s/source", "seconds": embed_seconds + score_seconds,
            "n": k, "embed_seconds": embed_seconds, "score_seconds": score_seconds, "dim": d,
            "note": "scoring is CPU code (float64 LAPACK) on every device; only the embedding moves"}


def bench_transfer(model: str, device, args, root: Path) -> dict:
    from taskrank.tasks import load_task_folder
    from taskrank.transfer.executors import run_grid
    from taskrank.transfer.journal import Journal
    from taskrank.transfer.runner import TransferSetting, plan

    folder = root / f"grid-{device.type}"
    for i, name in enumerate(("alpha", "beta", "gamma")):
        write_task(folder, name, args.grid_examples, 10 + i)
    setting = TransferSetting.flat(model=model, source_examples=args.grid_examples, target_examples=args.grid_examples,
                                   eval_examples=max(args.grid_examples // 4, 6), source_epochs=1,
                                   max_length=args.max_length)
    runs = plan(load_task_folder(folder), [0], setting)
    start = time.perf_counter()
    done = run_grid(runs, Journal(folder / "journal.sqlite"), folder / "work", device=str(device))
    _sync(device)
    seconds = time.perf_counter() - start
    return {"value": seconds / max(done, 1), "unit": "s/run", "seconds": seconds, "n": done}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda, cuda:N, mps")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--sources", type=int, default=1500)
    parser.add_argument("--grid-examples", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--only", default="embed,finetune,esm_logme,transfer")
    parser.add_argument("--tiny", action="store_true", help="tiny random model and sizes: proves the script runs")
    parser.add_argument("--out", default=str(HERE / "results" / "gpu"))
    args = parser.parse_args(argv)
    import torch

    from taskrank.devices import DeviceError, resolve_device

    scratch = Path(tempfile.mkdtemp(prefix="taskrank-gpu-bench-"))
    os.environ.setdefault("TASKRANK_FINETUNED", str(scratch / "finetuned"))
    model = args.model
    if args.tiny:
        model = tiny_model(scratch)
        args.texts, args.examples, args.dim, args.sources, args.grid_examples, args.max_length = 200, 96, 64, 20, 24, 32
    rows = []
    for spec in [d.strip() for d in args.devices.split(",") if d.strip()]:
        try:
            device = resolve_device(spec)
        except DeviceError as e:
            rows += [{"benchmark": b, "device": spec, "skipped": str(e)} for b in args.only.split(",")]
            continue
        for name in args.only.split(","):
            fn = {"embed": lambda: bench_embed(model, device, args),
                  "finetune": lambda: bench_finetune(model, device, args, scratch),
                  "esm_logme": lambda: bench_esm_logme(model, device, args),
                  "transfer": lambda: bench_transfer(model, device, args, scratch)}[name]
            row = {"benchmark": name, "device": str(device), "model": args.model if not args.tiny else "tiny-random-bert"}
            row.update(fn())
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    machine = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
               "threads": torch.get_num_threads(), "platform": platform.platform(),
               "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
               if torch.cuda.is_available() else [], "tiny": args.tiny,
               "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("benchmark", "device", "value", "unit"), k))
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {out.with_suffix('.json')}, {out.with_suffix('.csv')}", file=sys.stderr)


if __name__ == "__main__":
    main()
