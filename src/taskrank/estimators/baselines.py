"""Baselines every paper compares against: RANDOM (seeded), SIZE (DataSize: larger source first),
vocabulary overlap, and CurveGrad (steepness of the source's training-loss curve)."""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import ParameterError
from ..models import BaseModel
from ..store import Artefact
from ..tasks import Task
from .base import Estimator
from .fisher import VU_BATCH_SIZE, FineTunedFamily
from .registry import register


@register
class RandomEstimator(Estimator):
    """A seeded random score per (target, source) pair: stable across runs and pool orderings."""

    name = "random"
    summary = "seeded random scores (the floor every method must beat)"
    score_only = ("seed",)

    def __init__(self, model: BaseModel | None = None, seed: int = 0):
        super().__init__(model)
        self.seed = seed

    def prepare(self, task: Task) -> Artefact:
        return self.artefact(task, {})

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        def draw(source: Artefact) -> float:
            key = f"{self.seed}|{target.config['fingerprint']}|{source.config['fingerprint']}".encode()
            return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64

        return np.array([draw(s) for s in sources], dtype=np.float64)


@register
class SizeEstimator(Estimator):
    """DataSize (Vu et al. 2020): bigger training sets transfer more; score = log of the train size."""

    name = "size"
    summary = "training-set size of the source (DataSize)"

    def prepare(self, task: Task) -> Artefact:
        return self.artefact(task, {"size": np.array([task.size], dtype=np.int64)})

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        return np.log(np.array([float(s.tensors["size"][0]) for s in sources]))


VOCAB_MEASURES = ("jaccard", "weighted", "top")

# NLTK's English stop-word list (nltk.corpus.stopwords.words("english"), 179 words), which
# 2407.16245's run_vocab_sim.py removes before counting
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him
his himself she she's her hers herself it it's its itself they them their theirs themselves what which who
whom this that that'll these those am is are was were be been being have has had having do does did doing
a an the and but if or because as until while of at by for with about against between into through during
before after above below to from up down in out on off over under again further then once here there when
where why how all any both each few more most other some such no nor not only own same so than too very s t
can will just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't
doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't
shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split())


@register
class VocabOverlap(Estimator):
    """Vocabulary overlap of seeded samples of the two tasks (base-tokenizer token ids; both texts of
    pair tasks; special tokens left out). ``measure``:

    - ``"jaccard"`` (default; the ESM paper's ``compute_vocabulary_overlap.py``): |A ∩ B| / |A ∪ B| of
      the token-id sets;
    - ``"weighted"``: token frequencies instead (Ruzicka: sum of minima over sum of maxima of relative
      frequencies);
    - ``"top"`` (2407.16245's ``run_vocab_sim.py``): each task's ``top_n`` (1,000) most frequent tokens
      after removing NLTK's English stop words and punctuation-only tokens, overlap |A ∩ B| / ``top_n``
      (the paper prints ×100).

    Artefacts keep token ids and counts only, no text."""

    name = "vocab"
    summary = "Jaccard overlap of the token vocabularies of data samples"
    score_only = ("measure", "top_n")

    def __init__(self, model: BaseModel | None = None, n_examples: int = 1000, seed: int = 0,
                 measure: str = "jaccard", top_n: int = 1000):
        super().__init__(model)
        if measure not in VOCAB_MEASURES:
            raise ParameterError(f"{self.name}: measure must be one of {', '.join(VOCAB_MEASURES)}, not '{measure}'")
        self.n_examples = n_examples
        self.seed = seed
        self.measure = measure
        self.top_n = top_n
        self._dropped: np.ndarray | None = None

    def prepare(self, task: Task) -> Artefact:
        tokenizer = self.model.load()[0]
        texts = task.texts(frame=task.sample(self.n_examples, self.seed))
        flat = [" ".join(t) if isinstance(t, tuple) else t for t in texts]
        ids = tokenizer(flat, add_special_tokens=False, truncation=True, max_length=self.model.max_length)["input_ids"]
        ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
        tokens, counts = np.unique(ids, return_counts=True)
        return self.artefact(task, {"tokens": tokens, "counts": counts.astype(np.int64)}, n_examples=len(texts))

    def dropped_ids(self) -> np.ndarray:
        """Token ids the ``"top"`` measure leaves out: stop words and punctuation-only tokens."""
        if self._dropped is None:
            tokenizer = self.model.load()[0]
            vocab = tokenizer.get_vocab()
            self._dropped = np.array(sorted(i for t, i in vocab.items() if is_stop_or_punctuation(t)), dtype=np.int64)
        return self._dropped

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        drop = self.dropped_ids() if self.measure == "top" else None
        return np.array([vocab_similarity(target.tensors["tokens"], target.tensors["counts"],
                                          s.tensors["tokens"], s.tensors["counts"], self.measure,
                                          top_n=self.top_n, drop=drop) for s in sources])


def is_stop_or_punctuation(token: str) -> bool:
    """What 2407.16245's ``run_vocab_sim.py`` removes: a stop word (``token.lower()`` in NLTK's English
    list, checked on the token as the tokenizer writes it) or, since it strips punctuation from the
    text before tokenising, a token made of punctuation only."""
    import string

    return token.lower() in STOP_WORDS or (bool(token) and all(ch in string.punctuation for ch in token))


def top_tokens(tokens, counts, n: int = 1000, drop=None) -> np.ndarray:
    """The ``n`` most frequent token ids (count descending, ties by id ascending), ``drop`` left out."""
    tokens, counts = np.asarray(tokens), np.asarray(counts)
    if drop is not None and len(drop):
        keep = ~np.isin(tokens, drop)
        tokens, counts = tokens[keep], counts[keep]
    return tokens[np.lexsort((tokens, -counts))[:n]]


def vocab_similarity(tokens_a, counts_a, tokens_b, counts_b, measure: str = "jaccard", top_n: int = 1000,
                     drop=None) -> float:
    """Jaccard of two token sets, the weighted (Ruzicka) overlap of their relative frequencies, or
    (``"top"``) the share of ``top_n`` that the two tasks' ``top_n`` most frequent tokens (``drop``
    left out) have in common."""
    if measure == "jaccard":
        union = len(np.union1d(tokens_a, tokens_b))
        return len(np.intersect1d(tokens_a, tokens_b)) / union if union else 0.0
    if measure == "top":
        common = np.intersect1d(top_tokens(tokens_a, counts_a, top_n, drop),
                                top_tokens(tokens_b, counts_b, top_n, drop))
        return len(common) / top_n
    if measure != "weighted":
        raise ParameterError(f"measure must be one of {', '.join(VOCAB_MEASURES)}, not '{measure}'")
    vocab = np.union1d(tokens_a, tokens_b)
    pa = np.zeros(len(vocab))
    pb = np.zeros(len(vocab))
    pa[np.searchsorted(vocab, tokens_a)] = np.asarray(counts_a, dtype=np.float64) / max(np.sum(counts_a), 1)
    pb[np.searchsorted(vocab, tokens_b)] = np.asarray(counts_b, dtype=np.float64) / max(np.sum(counts_b), 1)
    denom = np.maximum(pa, pb).sum()
    return float(np.minimum(pa, pb).sum() / denom) if denom else 0.0


CURVE_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)
RRF_K = 60


def curve_gradients(losses, fractions=CURVE_FRACTIONS, window: float = 0.2) -> np.ndarray:
    """Slopes of the training-loss curve at fractions of training (Bingel & Søgaard 2017).

    Step losses are divided by the mean loss of the first ``window/2`` of training (so tasks with
    other numbers of classes compare), placed at x = (step + 0.5) / steps, and a least-squares line
    is fitted to the points within ``window/2`` of each fraction; the slope is in relative loss per
    whole training run (negative: still improving)."""
    y = np.asarray(losses, dtype=np.float64)
    n = len(y)
    if n < 2:
        return np.zeros(len(fractions))
    x = (np.arange(n) + 0.5) / n
    start = y[x <= window / 2]
    y = y / (start.mean() if len(start) and start.mean() > 0 else (y[0] or 1.0))
    out = []
    for f in fractions:
        near = np.abs(x - f) <= window / 2
        if near.sum() < 2:  # too few steps: the two nearest
            near = np.zeros(n, bool)
            near[np.argsort(np.abs(x - f), kind="stable")[:2]] = True
        out.append(np.polyfit(x[near], y[near], 1)[0])
    return np.array(out)


def reciprocal_rank_fusion(values: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """RRF over columns: rank the rows by each column ascending (1 = smallest, ties share the best
    rank) and sum 1 / (k + rank)."""
    values = np.asarray(values, dtype=np.float64)
    fused = np.zeros(len(values))
    for column in values.T:
        ranks = np.array([1 + np.sum(column < v) for v in column])
        fused += 1.0 / (k + ranks)
    return fused


@register
class CurveGrad(FineTunedFamily):
    """CurveGrad (Bingel & Søgaard 2017, as Vu et al. 2020 use it): sources whose training-loss curve
    still falls steeply (most negative gradients at 10, 20, 30, 50, 70% of training) rank first;
    the five per-fraction rankings are merged by reciprocal rank fusion (k = 60).

    The features belong to the source alone, so the target does not change the order: the score of a
    source is its fused reciprocal rank among the sources being scored (Bingel & Søgaard's target
    features decide *whether* auxiliary training helps, not which source). The loss curve comes from
    the same full fine-tuning run as TaskEmb (family ``finetune``)."""

    name = "curvegrad"
    summary = "steepness of the source's training-loss curve, rank-fused (CurveGrad)"
    score_only = ("window",)

    def __init__(self, model: BaseModel | None = None, n_examples: int = 500, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 16, n_fisher: int = 256, seed: int = 0, window: float = 0.2,
                 fisher_batch_size: int = VU_BATCH_SIZE):
        super().__init__(model, n_examples, epochs, lr, batch_size, n_fisher, seed, fisher_batch_size)
        self.window = window

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        grads = np.stack([curve_gradients(s.tensors["step_losses"], window=self.window) for s in sources])
        return reciprocal_rank_fusion(grads)
