"""Issue #15 (one recipe): what a fine-tune is lives in one dataclass, composed where models are
trained, with every persisted key unchanged; environment settings are parsed in one place."""

import inspect
import re
from dataclasses import replace
from pathlib import Path

import pytest

import taskrank
from taskrank import cli, environment
from taskrank.errors import TaskrankError
from taskrank.estimators.esm import EsmLogme
from taskrank.finetuned import SourceRecipe, TaskRef, model_dir
from taskrank.mixture import ExperimentConfig
from taskrank.recipe import EVAL_EXAMPLES, MIXTURE, MIXTURE_TARGET, SOURCE, TARGET, Recipe
from taskrank.transfer.runner import Run, TransferSetting

SRC = Path(taskrank.__file__).parent

# The flat setting of the runner's defaults with bf16, which every run key of the first transfer17 grid
# was made from (in git history; today's grid is recipe L, checked by test_transfer17).
FLAT_GRID = {"model": "default", "method": "full", "source_examples": 2000, "source_epochs": 2, "source_lr": 1e-4,
             "target_examples": 1000, "target_epochs": 1, "target_lr": 2e-4, "eval_examples": 500,
             "batch_size": 32, "max_length": 128, "bf16": True}


def test_a_transfer_setting_is_two_recipes_and_writes_the_flat_fields_it_always_wrote():
    setting = TransferSetting(source=SOURCE.but(bf16=True), target=TARGET.but(bf16=True))
    assert setting.to_dict() == FLAT_GRID
    assert TransferSetting.flat(**FLAT_GRID) == setting
    assert TransferSetting().source == SOURCE and TransferSetting().target == TARGET
    assert TransferSetting().eval_examples == EVAL_EXAMPLES
    # the tuning configs come from the recipes
    assert setting.target_tuning(3).epochs == 1 and setting.target_tuning(3).lr == 2e-4
    assert setting.target_tuning(3).seed == 3 and setting.target_tuning(3).bf16
    assert setting.source_recipe().tuning(1).epochs == 2 and setting.source_recipe().tuning(1).lr == 1e-4


def test_a_target_recipe_that_differs_in_a_shared_field_gets_its_own_key():
    ref = TaskRef("t", "", "f" * 16)
    same = TransferSetting.flat(**FLAT_GRID)
    longer = replace(same, target=same.target.but(max_length=256))
    assert longer.to_dict() == {**FLAT_GRID, "target_max_length": 256}
    assert TransferSetting.flat(**longer.to_dict()) == longer
    assert Run(ref, None, 0, longer).key != Run(ref, None, 0, same).key
    with pytest.raises(TypeError, match="source_exmaples"):
        TransferSetting.flat(source_exmaples=3)


def test_scoring_on_validation_and_test_pooled_is_its_own_key_and_uses_both_splits(shared_tasks):
    """Issue #13: a larger, steadier gold scores a target on its validation and test rows pooled."""
    import pandas as pd

    from taskrank.tasks import load_task
    from taskrank.transfer.runner import target_frames

    ref = TaskRef("t", "", "f" * 16)
    same = TransferSetting.flat(**FLAT_GRID)
    pooled = TransferSetting.flat(**{**FLAT_GRID, "eval_splits": "validation+test", "eval_examples": 3000})
    assert pooled.to_dict() == {**FLAT_GRID, "eval_splits": "validation+test", "eval_examples": 3000}
    assert TransferSetting.flat(**pooled.to_dict()) == pooled
    assert Run(ref, None, 0, pooled).key != Run(ref, None, 0, same).key
    cr = load_task(str(shared_tasks / "cr"), name="cr")  # 377 validation + 378 test rows
    validation, test = set(cr.texts("validation")), set(cr.texts("test"))
    _, held = target_frames(cr, pooled)
    texts = cr.texts(frame=held)
    assert len(held) == len(cr.split("validation")) + len(cr.split("test"))  # all of them: fewer than 3,000
    assert set(texts) <= validation | test and set(texts) & validation and set(texts) & test
    _, grid = target_frames(cr, same)
    assert len(grid) == min(500, len(cr.split("validation"))) and set(cr.texts(frame=grid)) <= validation
    with pytest.raises(TaskrankError, match="eval splits 'test'"):
        TransferSetting(eval_splits="test")


def test_source_model_folders_keep_their_names():
    """A cached source model is found by its folder name, which hashes the recipe: a refactor of the
    recipe must not orphan the models users have trained (90 MB each)."""
    ref = TaskRef("sst2", "", "0123456789abcdef")
    grid = TransferSetting.flat(**FLAT_GRID).source_recipe()
    assert grid == SourceRecipe(training=SOURCE.but(bf16=True))
    assert EsmLogme().recipe().digest() == grid.digest()  # ESM-LogME reuses the benchmark's models
    assert model_dir("w", grid, ref, 0).name == "sst2-0123456789abcdef-s0-517af9e550"
    assert grid.to_dict() == {"model": "default", "method": "full", "source_examples": 2000, "source_epochs": 2,
                              "source_lr": 1e-4, "batch_size": 32, "max_length": 128, "bf16": True,
                              "pooling": "auto", "pairs": "tokenizer"}
    assert model_dir("w", SourceRecipe(), ref, 2).name == "sst2-0123456789abcdef-s2-c9017471d7"


def test_esm_logme_parameters_follow_the_source_recipe():
    esm = EsmLogme()
    assert (esm.source_examples, esm.source_epochs, esm.source_lr, esm.max_length) == (
        SOURCE.examples, SOURCE.epochs, SOURCE.lr, SOURCE.max_length)
    small = EsmLogme(source_examples=64, source_epochs=1).recipe()
    assert small.training == SOURCE.but(examples=64, epochs=1, bf16=True)


def test_a_mixture_experiment_is_two_recipes():
    config = ExperimentConfig()
    assert config.mixture == MIXTURE and config.target == MIXTURE_TARGET
    assert config.target.tuning("full", 5).max_length == 64 and config.mixture.tuning("full", 5).epochs == 1


def _default(command, name):
    return inspect.signature(command).parameters[name].default.default


@pytest.mark.parametrize("command", [cli.transfer_run, cli.select_command])
def test_cli_transfer_defaults_are_the_recipes(command):
    assert [_default(command, f"source_{k}") for k in ("examples", "epochs", "lr")] == [
        SOURCE.examples, SOURCE.epochs, SOURCE.lr]
    assert [_default(command, f"target_{k}") for k in ("examples", "epochs", "lr")] == [
        TARGET.examples, TARGET.epochs, TARGET.lr]
    assert [_default(command, k) for k in ("batch_size", "max_length", "bf16", "eval_examples")] == [
        SOURCE.batch_size, SOURCE.max_length, SOURCE.bf16, EVAL_EXAMPLES]


def test_cli_mixture_defaults_are_the_recipes():
    c = cli.mixture_experiment
    assert (_default(c, "per_source"), _default(c, "mixture_epochs"), _default(c, "mixture_lr")) == (
        MIXTURE.examples, MIXTURE.epochs, MIXTURE.lr)
    assert (_default(c, "target_examples"), _default(c, "target_epochs"), _default(c, "target_lr")) == (
        MIXTURE_TARGET.examples, MIXTURE_TARGET.epochs, MIXTURE_TARGET.lr)


def test_no_recipe_number_is_copied_into_the_cli():
    text = "".join(inspect.getsource(c) for c in (cli.transfer_run, cli.select_command, cli.mixture_experiment))
    names = r"(source|target|mixture)_(examples|epochs|lr)|per_source|eval_examples|batch_size|max_length"
    copied = re.findall(rf"\b(?:{names}): \w+ = typer\.Option\([0-9]", text)
    assert copied == []


def test_data_seed_and_environment_settings_are_defined_once():
    lines = [(p.relative_to(SRC).as_posix(), line) for p in sorted(SRC.rglob("*.py"))
             for line in p.read_text().splitlines()]
    assert [p for p, line in lines if re.match(r"DATA_SEED\s*=", line)] == ["recipe.py"]
    assert {p for p, line in lines if 'environ.get("TASKRANK_THREADS"' in line} == {"environment.py"}
    assert {p for p, line in lines if '".cache"' in line} == {"environment.py"}


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("TASKRANK_THREADS", "3")
    assert environment.threads() == 3
    monkeypatch.setenv("TASKRANK_THREADS", "0")  # 0: all the cores this process may use
    assert environment.threads() >= 1
    for bad in ("two", "-1", "1.5"):
        monkeypatch.setenv("TASKRANK_THREADS", bad)
        with pytest.raises(TaskrankError, match="TASKRANK_THREADS"):
            environment.threads()


def test_cache_folders(monkeypatch, tmp_path):
    monkeypatch.delenv("TASKRANK_FINETUNED", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TASKRANK_CACHE", raising=False)
    assert environment.artefact_cache() == str(tmp_path / ".cache" / "taskrank")
    assert environment.finetuned_cache() == str(tmp_path / ".cache" / "taskrank" / "finetuned")
    monkeypatch.setenv("TASKRANK_FINETUNED", str(tmp_path / "models"))
    monkeypatch.setenv("TASKRANK_CACHE", str(tmp_path / "c"))
    assert environment.finetuned_cache() == str(tmp_path / "models")
    assert environment.artefact_cache() == str(tmp_path / "c")


def test_recipe_defaults():
    assert Recipe().tuning().learning_rate == 5e-5  # lr None: the tuning method's default
    assert Recipe(lr=1e-3).tuning("lora", 2).learning_rate == 1e-3
