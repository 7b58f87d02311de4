"""Where models run: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and the mixed precision that fits.

A device is never part of an artefact's identity: the same task prepared on a GPU or on the CPU
lands under the same artefact id (GPU numbers differ from CPU ones in the last digits, and by
mixed precision, not in meaning). On the CPU everything runs as it always has: float32, with the
tuning loop's optional bf16 autocast (``TuningConfig.bf16``), which only runs where the CPU has
bf16 instructions (elsewhere PyTorch emulates them about ten times slower than float32, so the
option is then ignored, with one note on stderr). On a GPU, forward passes run under
autocast: bf16 where the GPU supports it, else fp16 with a gradient scaler for training.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys

from .errors import TaskrankError

DEVICES = "auto, cpu, cuda, cuda:N or mps"
_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(TaskrankError):
    """A device that is not known or not present on this machine."""


def cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | None = "auto", option: str = "--device"):
    """A ``torch.device`` for ``spec``; ``auto`` takes the first GPU (this worker's, see
    :func:`set_worker_device`) when one is present, else the CPU. An unknown or absent device
    raises :class:`DeviceError` with one line."""
    import torch

    spec = (spec or "auto").strip().lower()
    if not _SPEC.match(spec):
        raise DeviceError(f"{option} {spec}: not a device; use {DEVICES}")
    if spec == "auto":
        worker = os.environ.get("TASKRANK_DEVICE")
        if worker and worker != "auto":
            return resolve_device(worker, "TASKRANK_DEVICE")
        if cuda_count():
            return torch.device("cuda", 0)
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise DeviceError(f"{option} mps: this machine has no Apple GPU (MPS) available to torch")
        return torch.device("mps")
    n = cuda_count()
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if n == 0:
        why = "torch was built without CUDA" if not torch.backends.cuda.is_built() else "no CUDA GPU is visible"
        raise DeviceError(f"{option} {spec}: CUDA is not available here ({why}); use --device cpu or auto")
    if index >= n:
        raise DeviceError(f"{option} {spec}: this machine has {n} CUDA GPU(s) (cuda:0 to cuda:{n - 1})")
    return torch.device("cuda", index)


def set_worker_device(spec: str) -> None:
    """Make ``auto`` mean ``spec`` in this process (one worker per GPU: each worker gets its own)."""
    os.environ["TASKRANK_DEVICE"] = spec


def worker_devices(spec: str | None, workers: int) -> list[str]:
    """The device of each of ``workers`` local workers: with ``auto``/``cuda`` and GPUs present, one
    GPU per worker in turn (cuda:0, cuda:1, ..., wrapping around); otherwise ``spec`` for all."""
    spec = (spec or "auto").strip().lower()
    resolve_device(spec)  # an absent device is said now, before any worker starts
    n = cuda_count()
    if spec in ("auto", "cuda") and n:
        return [f"cuda:{i % n}" for i in range(workers)]
    return [spec] * workers


def device_pool(workers: int, device: str | None, env: dict | None = None):
    """``workers`` local processes (spawned), each with ``env`` and its own device from
    :func:`worker_devices`; in a task, device ``auto`` means the worker's device."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    context = mp.get_context("spawn")
    queue = context.Queue()
    for d in worker_devices(device, workers):
        queue.put(d)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(queue, env or {}))


def _worker_init(devices, env: dict) -> None:
    os.environ.update(env)
    set_worker_device(devices.get())


def local_workers(workers: int, device: str | None) -> int:
    """Workers to start: as asked, or one per GPU when several GPUs serve ``auto``/``cuda`` and none was asked."""
    n = cuda_count() if (device or "auto").strip().lower() in ("auto", "cuda") else 0
    return n if workers == 0 and n > 1 else workers


def bf16_supported(device) -> bool:
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu"


def amp_dtype(device):
    """The autocast dtype on a GPU (bf16 where supported, else fp16); None on the CPU."""
    import torch

    if device.type == "cpu":
        return None
    return torch.bfloat16 if bf16_supported(device) else torch.float16


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=None)
def _note_no_cpu_bf16() -> None:
    print("taskrank: this CPU has no bf16 instructions; the bf16 option is ignored (float32 is about ten "
          "times faster here than emulated bf16)", file=sys.stderr)


def autocast(device, cpu_bf16: bool = False):
    """Mixed precision for forward passes: on a GPU bf16 (or fp16 where bf16 is missing); on the CPU
    bf16 only when asked (``cpu_bf16``, the tuning loop's ``bf16`` option) and the CPU has it, else
    nothing."""
    import torch

    if device.type == "cpu":
        if cpu_bf16 and not cpu_has_bf16():
            _note_no_cpu_bf16()
            cpu_bf16 = False
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16)
    dtype = amp_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(device):
    """A gradient scaler for fp16 training on a GPU (bf16 and the CPU need none): ``None`` when off."""
    import torch

    if device.type == "cuda" and amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def default_batch_size(device, cpu: int) -> int:
    """Batch size for inference: the CPU value as it is; larger on a GPU, where memory allows."""
    if device.type == "cuda":
        import torch

        gib = torch.cuda.get_device_properties(device).total_memory / 2**30
        return cpu * (8 if gib >= 40 else 4 if gib >= 16 else 2)
    return cpu
