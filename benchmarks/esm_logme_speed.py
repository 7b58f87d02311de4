"""ESM-LogME speed, memory and agreement: taskrank vs hf-dataset-selector (hfselect) 0.2.1.

Both sides score the same target embeddings with the same K Embedding Space Maps, read from the
same safetensors files (hfselect's own layout: keys ``model.weight`` / ``model.bias``), each side in
its own subprocess so that peak RSS (ru_maxrss of that process) is per method:

* taskrank: ``score_linear_maps`` over a lazy sequence that loads each ESM when indexed.
* hfselect: its own ``ESM`` modules loaded from the files, then its ``compute_scores`` (ESM
  application in batches of 128, then its numba LogME per ESM).  Only the base-model embedding
  step is replaced, by returning the precomputed target embeddings, so no model is downloaded.
  hfselect runs from its own venv (``--hfselect-python``).

Inputs (documented, not real data): N target embeddings from a fixed seed — 3 classes, class means
along random directions plus anisotropic Gaussian noise (covariance eigenvalues ~ 1/i^0.7, like
sentence embeddings) — and maps W_k = I + e_k G_k / sqrt(d) + t_k P, b_k ~ N(0, 0.05^2), with G_k
Gaussian, P the projector on the class-mean directions and e_k, t_k varying per map, so the scores
spread out and the rankings are meaningful.

Usage:  python benchmarks/esm_logme_speed.py [--dims 384 768] [--ks 100 500 1500] ...
Writes benchmarks/results/esm_logme_speed.json and .csv.  Not a test: the numbers depend on the
machine and on its load, which is recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLASSES = 3


# ----------------------------------------------------------------------------------------------
# inputs


def make_inputs(work: Path, d: int, k_max: int, n: int, seed: int) -> None:
    """Target embeddings, labels and k_max ESM files for dimension d under work/d{d}/ (kept if there)."""
    from safetensors.numpy import save_file

    root = work / f"d{d}"
    esm_dir = root / "esms"
    esm_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, d])
    if not (root / "target.npy").exists():
        y = rng.integers(0, CLASSES, n)
        means = rng.standard_normal((CLASSES, d)) * 0.35
        scales = 1.0 / np.arange(1, d + 1) ** 0.35  # covariance eigenvalues ~ 1 / i^0.7
        basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
        emb = means[y] + (rng.standard_normal((n, d)) * scales) @ basis.T
        np.save(root / "target.npy", emb.astype(np.float32))
        np.save(root / "labels.npy", y.astype(np.int64))
    emb = np.load(root / "target.npy")
    y = np.load(root / "labels.npy")
    centroids = np.stack([emb[y == c].mean(0) - emb.mean(0) for c in range(CLASSES)])
    u, _ = np.linalg.qr(centroids.T.astype(np.float64))  # (d, CLASSES)
    for k in range(k_max):
        path = esm_dir / f"esm_{k:05d}.safetensors"
        if path.exists():
            continue
        r = np.random.default_rng([seed, d, k])
        e_k, t_k = r.uniform(0.1, 0.6), r.uniform(-0.8, 1.5)
        w = np.eye(d) + e_k * r.standard_normal((d, d)) / np.sqrt(d) + t_k * (u @ u.T)
        b = 0.05 * r.standard_normal(d)
        save_file({"model.weight": w.astype(np.float32), "model.bias": b.astype(np.float32)}, str(path))


def disk_per_esm(work: Path, d: int) -> dict:
    """Bytes of one d x d map + bias as safetensors, float32 and float16."""
    from safetensors.numpy import save_file

    out = {}
    for name, dtype in (("float32", np.float32), ("float16", np.float16)):
        path = work / f"disk_{d}_{name}.safetensors"
        save_file({"model.weight": np.zeros((d, d), dtype), "model.bias": np.zeros(d, dtype)}, str(path))
        out[name] = path.stat().st_size
        path.unlink()
    return out


# ----------------------------------------------------------------------------------------------
# the two sides, each in its own process


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child_taskrank(root: Path, k: int, batch_size: int, threads: int | None) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    from safetensors.numpy import load_file

    from taskrank.estimators.logme import score_linear_maps

    emb = np.load(root / "target.npy")
    y = np.load(root / "labels.npy")
    paths = sorted((root / "esms").glob("esm_*.safetensors"))[:k]

    class Maps:  # loads one ESM file per item: only a batch of maps is ever in memory
        def __init__(self, key):
            self.key = key

        def __len__(self):
            return len(paths)

        def __getitem__(self, i):  # one read per file: the bias is asked for right after its weight
            if cache.get("i") != i:
                cache.update(i=i, tensors=load_file(str(paths[i])))
            return cache["tensors"][self.key]

    cache: dict = {}

    setup_rss = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    scores = score_linear_maps(
        emb, y, Maps("model.weight"), Maps("model.bias"), batch_size=batch_size, threads=threads
    )
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    from taskrank.estimators.logme import _thread_count

    return {
        "threads": f"{_thread_count(threads)} (maps side by side in threads; BLAS 1 thread, set by taskrank)",
        "scores": scores.tolist(),
        "load_s": None,
        "score_s": total,
        "total_s": total,
        "cpu_s": cpu,
        "setup_rss_mb": setup_rss,
    }


def child_hfselect(root: Path, k: int, threads: str) -> dict:
    import torch
    from safetensors.torch import load_file

    import hfselect.esm_logme as esm_logme
    from hfselect.esm import ESM
    from hfselect.logme import LogME

    if threads != "default":  # else as hfselect leaves it: torch's default (the cores) and BLAS's own
        torch.set_num_threads(int(threads))
    import numba

    used = f"{threads}: torch {torch.get_num_threads()}, numba {numba.config.NUMBA_NUM_THREADS}, " + (
        "OpenBLAS/OMP default (cores)" if threads == "default" else f"OpenBLAS/OMP/MKL {threads}"
    )
    emb = torch.from_numpy(np.load(root / "target.npy"))
    y = np.load(root / "labels.npy")
    n, d = emb.shape
    paths = sorted((root / "esms").glob("esm_*.safetensors"))[:k]

    class Target(torch.utils.data.Dataset):  # stands in for hfselect.Dataset after tokenisation
        is_regression = False

        def __len__(self):
            return n

        def __getitem__(self, i):
            return i

        def collate_fn(self, rows, tokenizer=None):
            idx = torch.tensor(rows)
            return idx, torch.ones(len(rows), 1), torch.from_numpy(y[idx.numpy()])

    # the base model's pooled output of batch `ids` is the precomputed target embedding
    esm_logme.get_pooled_output = lambda model, ids, mask: emb[ids]

    t0 = time.perf_counter()  # numba compiles LogME's kernels on first use: once per process
    LogME(regression=False).fit(np.random.default_rng(0).standard_normal((50, 8)), np.arange(50) % 2)
    jit_s = time.perf_counter() - t0

    setup_rss = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    esms = []
    for p in paths:
        esm = ESM(architecture="linear", embedding_dim=d)
        esm.load_state_dict(load_file(str(p)))
        esm.eval()
        esms.append(esm)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = esm_logme.compute_scores(Target(), torch.nn.Identity(), esms, tokenizer=None, batch_size=128)
    score_s, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "threads": used,
        "scores": [float(s) for s in scores],
        "load_s": load_s,
        "score_s": score_s,
        "total_s": load_s + score_s,
        "cpu_s": cpu,
        "jit_s": jit_s,
        "setup_rss_mb": setup_rss,
    }


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def run_child(python: str, method: str, root: Path, k: int, args, threads: str) -> dict:
    """One side in a fresh process.  taskrank: ``threads`` maps at a time (it sets BLAS to one thread
    itself); hfselect: ``threads`` = "default" leaves every threading setting as it is, a number sets
    torch, OpenBLAS/OMP/MKL and numba to it."""
    env = {key: val for key, val in os.environ.items() if key not in THREAD_VARS}
    if method == "hfselect" and threads != "default":
        env.update({var: threads for var in THREAD_VARS})
    env["TQDM_DISABLE"] = "1"
    cmd = [python, str(Path(__file__).resolve()), "--child", method, "--root", str(root), "--k", str(k)]
    cmd += ["--child-threads", threads, "--batch-size", str(args.batch_size)]
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["loadavg_1min_before"] = load_before
    out["loadavg_1min_after"] = os.getloadavg()[0]
    return out


# ----------------------------------------------------------------------------------------------
# the parent: grid, agreement, output


def parse_caps(items: list[str]) -> dict[int, int]:
    caps = {}
    for item in items:
        dim, _, k = item.partition("=")
        caps[int(dim)] = int(k)
    return caps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    p.add_argument("--ks", type=int, nargs="+", default=[100, 500, 1500])
    p.add_argument("--n", type=int, default=1000, help="target examples (default 1000, as in the ESM paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--taskrank-threads", default="default", help="maps scored at once by taskrank (default: its own, the cores)"
    )
    p.add_argument(
        "--hfselect-threads",
        nargs="+",
        default=["default", "1"],
        help="hfselect configurations: 'default' (its own threading: torch and BLAS on every core) and/or a "
        "number of torch/BLAS/numba threads (default: default 1)",
    )
    p.add_argument(
        "--hfselect-default-max-k",
        nargs="*",
        default=["384=100", "768=10"],
        metavar="DIM=K",
        help="cap K for hfselect's default-threading runs (extrapolated above), which thrash on a loaded machine",
    )
    p.add_argument("--batch-size", type=int, default=8, help="taskrank maps read at a time")
    p.add_argument("--hfselect-python", default=str(HERE / ".venv-hfselect" / "bin" / "python"))
    p.add_argument(
        "--hfselect-max-k",
        nargs="*",
        default=["768=100"],
        metavar="DIM=K",
        help="cap hfselect's K for a dimension (it holds all K mapped N x d matrices and ESMs in memory, and "
        "takes ~0.25 s per map at d = 768); per-source time is then measured at the cap and reported as "
        "extrapolated (default 768=100, so that the whole default run stays under 10 minutes)",
    )
    p.add_argument("--skip-hfselect", action="store_true")
    p.add_argument("--work-dir", default="/tmp/taskrank-esm-bench", help="where ESM files are written")
    p.add_argument("--keep-work-dir", action="store_true")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    # internal: run one side
    p.add_argument("--child", choices=["taskrank", "hfselect"], help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-threads", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        root = Path(args.root)
        if args.child == "taskrank":
            threads = None if args.child_threads == "default" else int(args.child_threads)
            res = child_taskrank(root, args.k, args.batch_size, threads)
        else:
            res = child_hfselect(root, args.k, args.child_threads)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return 0

    caps = parse_caps(args.hfselect_max_k)
    default_caps = parse_caps(args.hfselect_default_max_k)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.skip_hfselect and not Path(args.hfselect_python).exists():
        p.error(f"no hfselect python at {args.hfselect_python} (see benchmarks/README.md) or pass --skip-hfselect")

    from scipy.stats import kendalltau

    rows, agreement, disk = [], [], {}
    started, load_start = time.time(), os.getloadavg()[0]
    for d in args.dims:
        t0 = time.perf_counter()
        make_inputs(work, d, max(args.ks), args.n, args.seed)
        print(f"d={d}: inputs ready ({time.perf_counter() - t0:.1f} s)", flush=True)
        disk[d] = disk_per_esm(work, d)
        root = work / f"d{d}"
        hf_done: dict[tuple[str, int], dict] = {}
        for k in args.ks:
            tr = run_child(sys.executable, "taskrank", root, k, args, args.taskrank_threads)
            tr_row = dict(d=d, K=k, method="taskrank", k_run=k, extrapolated=False, **_timing(tr, k))
            rows.append(tr_row)
            print(_line(tr_row), flush=True)
            if args.skip_hfselect:
                continue
            for threads in args.hfselect_threads:
                cap = default_caps.get(d, k) if threads == "default" else k
                k_hf = min(k, caps.get(d, k), cap)
                hf = hf_done.get((threads, k_hf)) or run_child(
                    args.hfselect_python, "hfselect", root, k_hf, args, threads
                )
                hf_done[(threads, k_hf)] = hf
                row = dict(
                    d=d, K=k, method=f"hfselect-0.2.1 [threads {threads}]", k_run=k_hf, extrapolated=k_hf < k,
                    **_timing(hf, k_hf),
                )
                row["jit_s"] = hf.get("jit_s")
                row["speedup_wall"] = row["s_per_source"] / tr_row["s_per_source"]
                row["speedup_cpu"] = row["cpu_s_per_source"] / tr_row["cpu_s_per_source"]
                rows.append(row)
                print(_line(row), flush=True)
                a = np.asarray(tr["scores"][:k_hf])
                b = np.asarray(hf["scores"])
                tau = kendalltau(a, b)
                row["kendall_tau"] = float(tau.statistic)
                agreement.append(
                    dict(
                        d=d,
                        K=k,
                        hfselect_threads=threads,
                        k_compared=k_hf,
                        kendall_tau=float(tau.statistic),
                        same_top1=bool(np.argmax(a) == np.argmax(b)),
                        max_abs_diff=float(np.max(np.abs(a - b))),
                        speedup_wall=row["speedup_wall"],
                        speedup_cpu=row["speedup_cpu"],
                    )
                )
                print(
                    f"    Kendall tau {tau.statistic:.4f}; taskrank faster per source x{row['speedup_wall']:.1f} (wall), "
                    f"x{row['speedup_cpu']:.1f} (CPU time)",
                    flush=True,
                )

    meta = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_s": time.time() - started,
        "n_target": args.n,
        "classes": CLASSES,
        "taskrank_threads": args.taskrank_threads,
        "hfselect_threads": args.hfselect_threads,
        "taskrank_batch_size": args.batch_size,
        "hfselect_caps": caps,
        "hfselect_default_threads_caps": default_caps,
        "threads_note": "each row's 'threads' says what that side ran with. hfselect 'default' is its own threading "
        "(torch and OpenBLAS on every core), '1' is torch/BLAS/numba at one thread. On a loaded machine multi-threaded "
        "OpenBLAS/torch thrash (threads spin waiting for each other), so hfselect's default is far slower than its "
        "single-threaded run there; the speed-up against the faster hfselect configuration is the conservative one. "
        "The kernel groups CPU time by session (autogroup), so under load a side's extra threads do not get it "
        "more CPU: wall time follows CPU time",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "inputs": "synthetic (fixed seed), see the module docstring",
        "seconds_per_source": "(load + score) / maps scored, wall clock (s_per_source) and CPU time of the side's "
        "process (cpu_s_per_source, robust to other load on the machine); hfselect excludes its one-time numba "
        "compile (jit_s)",
        "loadavg_1min_at_start": load_start,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "peak_rss": "ru_maxrss of the side's own process (imports and target included); setup_rss_mb is before scoring",
        "notes": "hfselect's LogME is only correct where N >= D (it drops zero eigen-directions and stops at a 1e-3 tolerance)",
    }
    result = {"meta": meta, "rows": rows, "agreement": agreement, "disk_bytes_per_esm": {str(k): v for k, v in disk.items()}}
    (out_dir / "esm_logme_speed.json").write_text(json.dumps(result, indent=2))
    with open(out_dir / "esm_logme_speed.csv", "w", newline="") as fh:
        fields = ["d", "K", "method", "threads", "k_run", "extrapolated", "load_s", "score_s", "total_s",
                  "s_per_source", "cpu_s_per_source", "peak_rss_mb", "setup_rss_mb", "jit_s", "loadavg_1min_before",
                  "loadavg_1min_after", "kendall_tau", "speedup_wall", "speedup_cpu",
                  "disk_float32_bytes", "disk_float16_bytes"]  # fmt: skip
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            extra = {
                "disk_float32_bytes": disk[row["d"]]["float32"],
                "disk_float16_bytes": disk[row["d"]]["float16"],
            }
            writer.writerow({**row, **extra})
    print(f"wrote {out_dir / 'esm_logme_speed.json'} and .csv ({time.time() - started:.0f} s)")
    if not args.keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _timing(res: dict, k: int) -> dict:
    return {
        "threads": res.get("threads"),
        "load_s": res.get("load_s"),
        "score_s": res["score_s"],
        "total_s": res["total_s"],
        "s_per_source": res["total_s"] / k,
        "cpu_s_per_source": res["cpu_s"] / k,
        "peak_rss_mb": res["peak_rss_mb"],
        "setup_rss_mb": res["setup_rss_mb"],
        "loadavg_1min_before": res["loadavg_1min_before"],
        "loadavg_1min_after": res["loadavg_1min_after"],
    }


def _line(row: dict) -> str:
    ext = f" (measured at K={row['k_run']}, extrapolated)" if row["extrapolated"] else ""
    return (
        f"  d={row['d']:4d} K={row['K']:5d} {row['method']:34s} {row['s_per_source'] * 1e3:8.2f} ms/source wall, "
        f"{row['cpu_s_per_source'] * 1e3:8.2f} ms CPU, "
        f"peak RSS {row['peak_rss_mb']:7.0f} MB{ext}"
    )


if __name__ == "__main__":
    sys.exit(main())
