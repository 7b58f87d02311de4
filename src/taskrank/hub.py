"""The Hugging Face hub, offline-first.

Without ``HF_HUB_OFFLINE``, a hub id that cannot be reached makes ``datasets`` and
``transformers`` retry for 25-50 s, printing a warning per retry, before they fail. Before the
first hub call taskrank asks the endpoint (``HF_ENDPOINT``, default https://huggingface.co) once,
with a short timeout (``TASKRANK_HUB_TIMEOUT`` seconds, default 3); if it does not answer, the
hub libraries are switched to offline mode, so what is in the local cache still loads at once and
anything else fails at once, with one line.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from functools import lru_cache

__all__ = ["endpoint", "reachable", "offline_if_unreachable"]

TRUE = {"1", "ON", "YES", "TRUE"}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _offline_requested() -> bool:
    return any((os.environ.get(v) or "").upper() in TRUE
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


@lru_cache(maxsize=8)
def _probe(url: str, timeout: float) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True  # it answered (any status will do)
    except (OSError, ValueError):
        return False
    return True


def reachable(timeout: float | None = None) -> bool:
    """Whether the hub endpoint answers within ``timeout`` seconds (asked once per process)."""
    if timeout is None:
        timeout = float(os.environ.get("TASKRANK_HUB_TIMEOUT") or 3)
    return _probe(endpoint(), timeout)


def _set_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # for worker processes started later, and libraries imported later
    for module, names in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                          ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        if module in sys.modules or module.split(".")[0] in sys.modules:
            try:
                mod = __import__(module, fromlist=["_"])
            except ImportError:
                continue
            for name in names:
                if hasattr(mod, name):
                    setattr(mod, name, True)


_switched: str | None = None  # why this process went offline, when taskrank switched it


def offline_if_unreachable() -> str | None:
    """Call before a hub call. None if the hub is usable (it answered one quick question); else
    why the hub libraries are (now) offline, for an error message."""
    global _switched
    if _switched is None and _offline_requested():
        _set_offline()
        return "HF_HUB_OFFLINE is set"
    if _switched is None and reachable():
        return None
    if _switched is None:
        _switched = f"the hub at {endpoint()} does not answer"
        _set_offline()
    return _switched
