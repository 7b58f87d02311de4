"""Shared fixtures: the real benchmark data beside the repository (../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TASKRANK_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_tasks() -> Path:
    path = SHARED / "tasks"
    if not path.is_dir():
        pytest.skip("../shared/data/tasks is not beside the repository")
    return path


@pytest.fixture(scope="session")
def extra_tasks() -> Path:
    path = SHARED / "tasks-extra"
    if not path.is_dir():
        pytest.skip("../shared/data/tasks-extra is not beside the repository")
    return path


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private artefact cache, so a test can check that nothing was written."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TASKRANK_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def taskweb_tasks() -> Path:
    path = SHARED / "taskweb-tasks"
    if not path.is_dir():
        pytest.skip("../shared/data/taskweb-tasks is not beside the repository")
    return path
