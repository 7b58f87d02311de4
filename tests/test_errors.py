"""Issue #15 (structure): one error base. Every kind of bad input is a ``TaskrankError`` (and so
a ``ValueError``); the CLI catches that one type; an estimator's bad parameter is one too."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import taskrank
from taskrank.cli import app
from taskrank.errors import ParameterError, TaskrankError
from taskrank.estimators import UnknownEstimator, get_estimator

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support_tickets.csv"
INTERNAL = {"_NotPositiveDefinite"}  # a numerical fallback signal inside LogME, never seen by a user


def _modules():
    for info in pkgutil.walk_packages(taskrank.__path__, "taskrank."):
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional extra (e.g. a GPU-only or LLM module) that is not installed
            continue


def test_every_error_class_of_the_package_is_a_taskrank_error():
    found = {}
    for module in _modules():
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    assert len(found) >= 10  # TaskError, ArtefactError, PoolError, ModelError, EvaluationError, ...
    stray = [k for k, cls in found.items() if not issubclass(cls, TaskrankError) and k.rsplit(".", 1)[1] not in INTERNAL]
    assert stray == []
    assert all(issubclass(cls, ValueError) for cls in found.values() if issubclass(cls, TaskrankError))


@pytest.mark.parametrize("name, params", [
    ("textemb", {"weighting": "bogus"}),
    ("taskemb", {"fusion": "bogus"}),
    ("tupate-lora", {"checkpoint": "bogus"}),
    ("tupate-prefix", {"prefix_embedding": "bogus"}),
    ("prompt-max", {"direction": "bogus"}),
])
def test_estimator_parameter_errors_are_parameter_errors_naming_the_method(name, params):
    with pytest.raises(ParameterError, match=f"^{name}: .*bogus"):
        get_estimator(name, **params)


def test_unknown_parameter_is_a_taskrank_error():
    with pytest.raises(UnknownEstimator) as e:
        get_estimator("textemb", no_such=1)
    assert isinstance(e.value, TaskrankError)


def test_cli_prints_a_parameter_error_as_one_line(isolated_cache):
    r = CliRunner().invoke(app, ["rank", "--target", str(EXAMPLE), "--method", "textemb,weighting=bogus"],
                           catch_exceptions=False)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskrank: error: textemb: weighting must be one of"), lines
    assert lines[0].endswith("not 'bogus'")
    assert not isolated_cache.exists() or not any(isolated_cache.rglob("*.safetensors"))
