"""Base-model families (BERT-like, T5 encoder, decoder-only) and devices, on tiny random models.

Every model is built here from a small config (hidden 32, 2 layers) with the default model's
tokenizer, saved to a temporary folder and used as ``--model DIR``: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskrank.models import BaseModel, ModelError, default_model_path
from taskrank.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
MAX_LENGTH = 32
TEXTS = ["a short one", "a somewhat longer sentence about billing and refunds", "hi",
         "the app crashes when I open the settings page on my phone"]
PAIRS = [("is it raining", "yes it is"), ("a cat sat", "on the mat, as cats do")]


def _tokenizer(**changes):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    for key, value in changes.items():
        setattr(tokenizer, key, value)
    return tokenizer


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny random BERT, RoBERTa, T5 (a full seq2seq checkpoint: taskrank keeps its encoder),
    GPT-2 (its tokenizer without a pad token; and the same weights with a left-padding tokenizer)."""
    from transformers import (BertConfig, BertModel, GPT2Config, GPT2Model, RobertaConfig, RobertaModel, T5Config,
                              T5ForConditionalGeneration)

    root = tmp_path_factory.mktemp("families")
    tokenizer = _tokenizer()
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    models = {
        "bert": BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=64, **small)),
        "roberta": RobertaModel(RobertaConfig(vocab_size=vocab, max_position_embeddings=MAX_LENGTH + pad + 2,
                                              pad_token_id=pad, type_vocab_size=2, **small)),
        "t5": T5ForConditionalGeneration(T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                  num_heads=4, pad_token_id=pad, decoder_start_token_id=pad)),
        "gpt2": GPT2Model(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)),
    }
    dirs = {}
    for name, model in models.items():
        dirs[name] = root / name
        model.save_pretrained(dirs[name])
        if name == "gpt2":  # a decoder's tokenizer: an end-of-text token, no pad token
            _tokenizer(eos_token="[SEP]", pad_token=None).save_pretrained(dirs[name])
        else:
            tokenizer.save_pretrained(dirs[name])
    dirs["gpt2-left"] = root / "gpt2-left"
    models["gpt2"].save_pretrained(dirs["gpt2-left"])
    _tokenizer(eos_token="[SEP]", pad_token=None, padding_side="left").save_pretrained(dirs["gpt2-left"])
    return dirs


def _direct(directory: Path, texts, pooling: str) -> np.ndarray:
    """The same embedding computed with transformers directly, one text at a time (no padding)."""
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    config = AutoModel.from_pretrained(str(directory)).config
    model = (T5EncoderModel if config.model_type == "t5" else AutoModel).from_pretrained(str(directory)).eval()
    rows = []
    for text in texts:
        enc = tokenizer(*(text if isinstance(text, tuple) else (text,)), truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if config.model_type in ("bert", "roberta"):
            inputs["token_type_ids"] = enc["token_type_ids"]
        with torch.no_grad():
            out = model(**inputs)
        hidden = out.last_hidden_state[0]
        rows.append({"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1],
                     "pooler": out.pooler_output[0] if pooling == "pooler" else None}[pooling].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("name,pooling,default", [("bert", "pooler", "mean"), ("roberta", "mean", "mean"),
                                                  ("roberta", "cls", "mean"), ("t5", "mean", "mean"),
                                                  ("gpt2", "last", "last"), ("gpt2", "mean", "last")])
def test_embeddings_equal_a_direct_transformers_computation(family_dirs, name, pooling, default):
    base = BaseModel(str(family_dirs[name]), pooling=pooling, max_length=MAX_LENGTH, batch_size=3)
    assert BaseModel(str(family_dirs[name])).pooling == default  # the family's documented default
    np.testing.assert_allclose(base.embed(TEXTS), _direct(family_dirs[name], TEXTS, pooling), atol=2e-5)
    np.testing.assert_allclose(base.embed(PAIRS), _direct(family_dirs[name], PAIRS, pooling), atol=2e-5)


def test_decoder_pad_token_and_left_padding(family_dirs):
    """GPT-2's tokenizer had no pad token (the end-of-text token pads); the last real token is found
    with right and with left padding alike, positions skipping the left padding."""
    right = BaseModel(str(family_dirs["gpt2"]), max_length=MAX_LENGTH)
    left = BaseModel(str(family_dirs["gpt2-left"]), max_length=MAX_LENGTH)
    assert right.load()[0].pad_token == "[SEP]" and left.load()[0].padding_side == "left"
    expected = _direct(family_dirs["gpt2"], TEXTS, "last")
    np.testing.assert_allclose(left.embed(TEXTS), expected, atol=2e-5)
    np.testing.assert_allclose(right.embed(TEXTS), expected, atol=2e-5)


def test_sep_joined_pairs_are_one_text(family_dirs):
    """pairs='sep-joined' embeds "a [SEP] b" as one text (hf-dataset-selector's inputs)."""
    base = BaseModel(str(family_dirs["bert"]), pooling="pooler", pairs="sep-joined", max_length=MAX_LENGTH)
    joined = [f"{a} [SEP] {b}" for a, b in PAIRS]
    np.testing.assert_allclose(base.embed(PAIRS), _direct(family_dirs["bert"], joined, "pooler"), atol=2e-5)
    assert not np.allclose(base.embed(PAIRS), BaseModel(str(family_dirs["bert"]), pooling="pooler").embed(PAIRS))


def test_pooling_and_pairs_enter_artefact_ids_only_when_not_default(family_dirs):
    from taskrank.estimators import get_estimator

    default = get_estimator("textemb")
    assert default.artefact_id == get_estimator("textemb", model=BaseModel(pooling="mean")).artefact_id
    ids = {get_estimator("textemb", model=BaseModel(pooling=p)).artefact_id for p in ("mean", "cls", "pooler")}
    ids.add(get_estimator("textemb", model=BaseModel(pairs="sep-joined")).artefact_id)
    assert len(ids) == 4
    pooler = get_estimator("textemb", model=BaseModel(pooling="pooler"))
    assert pooler.target_artefact_id != default.target_artefact_id


def test_unknown_architecture_and_unsuitable_pooling_are_one_line(tmp_path, family_dirs):
    from transformers import BartConfig, BartModel

    BartModel(BartConfig(vocab_size=100, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"architecture 'BartModel' \(model_type 'bart'\) is not supported") as e:
        BaseModel(str(tmp_path))
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="pooling 'pooler' does not suit"):
        BaseModel(str(family_dirs["gpt2"]), pooling="pooler")


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    rows = [("I was charged twice, refund please", "billing"), ("my invoice is wrong", "billing"),
            ("the app crashes on start", "bug"), ("error when saving a file", "bug"),
            ("how do I change my password", "account"), ("I cannot log in to my account", "account")] * 3
    path = tmp_path_factory.mktemp("task") / "tickets.csv"
    path.write_text("text,label\n" + "\n".join(f'"{t}",{y}' for t, y in rows) + "\n")
    return load_task(str(path))


@pytest.mark.parametrize("name,method", [("roberta", "lora"), ("t5", "lora"), ("t5", "prompt"), ("gpt2", "lora"),
                                         ("gpt2", "prefix"), ("gpt2", "bitfit"), ("bert", "prefix")])
def test_tuning_methods_train_on_every_family(family_dirs, tiny_task, name, method):
    from taskrank.estimators.tuned import tupate_embedding
    from taskrank.tuning import TuningConfig, fine_tune, keep_checkpoints

    base = BaseModel(str(family_dirs[name]), max_length=MAX_LENGTH)
    keeper = keep_checkpoints()
    config = TuningConfig(method=method, epochs=2, batch_size=6, max_length=MAX_LENGTH, prompt_length=4,
                          prefix_length=4)
    result = fine_tune(base, tiny_task, config, on_start=keeper.on_start, on_epoch_end=keeper)
    start, end = result.checkpoints["init"], result.checkpoints["last"]
    trained = [k for k in start if not k.startswith("head.")]
    assert trained and any(not np.allclose(start[k], end[k]) for k in trained)  # the adapter moved
    assert np.isfinite(result.history[-1]["loss"])
    if method in ("lora", "bitfit"):  # TuPaTE's per-layer construction finds the layers (block.N, h.N)
        assert tupate_embedding(end, method, 2).ndim == 1


@pytest.mark.parametrize("method,match", [("bitfit", "has no bias terms"), ("prefix", "T5's encoder takes no")])
def test_t5_refuses_what_it_cannot_tune_in_one_line(family_dirs, tiny_task, method, match):
    from taskrank.tuning import TuningConfig, TuningError, fine_tune

    base = BaseModel(str(family_dirs["t5"]), max_length=MAX_LENGTH)
    with pytest.raises(TuningError, match=match) as e:
        fine_tune(base, tiny_task, TuningConfig(method=method, epochs=1, max_length=MAX_LENGTH, prefix_length=4))
    assert "\n" not in str(e.value)


def test_transfer_run_end_to_end_on_t5_and_gpt2(family_dirs, tmp_path):
    """A tiny transfer grid per family: every pair recorded, finite, and a transfer differs from the baseline."""
    from taskrank.tasks import load_task_folder
    from taskrank.transfer.executors import run_grid
    from taskrank.transfer.journal import Journal
    from taskrank.transfer.runner import TransferSetting, plan

    tasks = _task_folder(tmp_path / "tasks")
    for name in ("t5", "gpt2"):
        setting = TransferSetting.flat(model=str(family_dirs[name]), method="full", source_examples=12,
                                       target_examples=12, eval_examples=6, source_epochs=1, max_length=MAX_LENGTH,
                                       batch_size=6, source_lr=1e-3, target_lr=1e-3)
        runs = plan(load_task_folder(tasks), [0], setting, targets=["topic"])
        journal = Journal(tmp_path / f"{name}.sqlite")
        assert run_grid(runs, journal, tmp_path / f"work-{name}", device="cpu") == len(runs) == 2
        frame = journal.frame()
        assert frame["value"].notna().all() and set(frame["setting"]) == {f"{name}/full"}


def _task_folder(root: Path) -> Path:
    texts = {"topic": [("the team won the final match", "sport"), ("stocks fell sharply today", "money"),
                       ("a new striker joined the club", "sport"), ("the bank raised interest rates", "money")],
             "mood": [("I love this so much", "pos"), ("this is awful and sad", "neg"),
                      ("what a wonderful day", "pos"), ("I hate waiting in line", "neg")]}
    for name, rows in texts.items():
        (root / name).mkdir(parents=True)
        for split, k in (("train", 4), ("validation", 2)):
            body = "\n".join(f'"{t}",{y}' for t, y in (rows * k)[: 6 * k])
            (root / name / f"{split}.csv").write_text("text,label\n" + body + "\n")
    return root


def test_pool_build_with_each_family_ranks_the_example(family_dirs, tmp_path):
    """`pool build --model DIR` with a tiny T5, GPT-2 and RoBERTa; `rank` of the shipped example with
    textemb and tupate-lora; the pool records a non-default pooling and rank uses it."""
    import json

    from typer.testing import CliRunner

    from taskrank.cli import app

    tasks = _task_folder(tmp_path / "tasks")
    runner = CliRunner()
    for name in ("t5", "gpt2", "roberta"):
        out = tmp_path / f"pool-{name}"
        extra = ["--pooling", "cls"] if name == "roberta" else []
        built = runner.invoke(app, ["pool", "build", str(tasks), "--out", str(out), "--model", str(family_dirs[name]),
                                    "--method", "textemb", "--method", "tupate-lora", "--device", "cpu", *extra])
        assert built.exit_code == 0, built.output
        meta = json.loads((out / "pool.json").read_text())
        assert meta.get("pooling") == {"t5": None, "gpt2": "last", "roberta": "cls"}[name]
        for method in ("textemb", "tupate-lora"):
            ranked = runner.invoke(app, ["rank", "--target", str(REPO / "examples" / "support_tickets.csv"), "--pool",
                                         str(out), "--model", str(family_dirs[name]), "--method", method,
                                         "--device", "cpu", "--format", "json"])
            assert ranked.exit_code == 0, ranked.output
            rows = json.loads(ranked.stdout)
            assert {r["source"] for r in rows} == {"topic", "mood"}
            assert all(np.isfinite(r["score"]) for r in rows)


def test_device_cuda_without_cuda_exits_2_with_one_line():
    from typer.testing import CliRunner

    from taskrank.cli import app
    from taskrank.devices import DeviceError, cuda_count, resolve_device

    assert str(resolve_device("cpu")) == "cpu"
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device("tpu")
    if cuda_count():
        pytest.skip("this machine has CUDA")
    assert str(resolve_device("auto")) == "cpu"
    result = CliRunner().invoke(app, ["rank", "--target", str(REPO / "examples" / "support_tickets.csv"),
                                      "--device", "cuda"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: CUDA is not available here" in lines[0]


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_runs_only_where_the_cpu_has_it(monkeypatch, capsys, native):
    """Emulated bf16 is about ten times slower than float32 on a CPU without bf16 instructions, so
    the option is ignored there (one note on stderr) and honoured where the CPU has them."""
    import torch

    from taskrank import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: native)
    devices._note_no_cpu_bf16.cache_clear()
    cpu = torch.device("cpu")
    with devices.autocast(cpu, True):
        assert torch.is_autocast_enabled("cpu") is native
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == (torch.bfloat16 if native else torch.float32)
    with devices.autocast(cpu, False):
        assert not torch.is_autocast_enabled("cpu")
    err = capsys.readouterr().err
    assert ("no bf16 instructions" in err) is not native
