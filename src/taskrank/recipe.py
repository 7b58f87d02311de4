"""What one fine-tune is: how many examples, how many epochs, the learning rate, batch size, tokens
per text and bf16 autocast. One small dataclass, composed wherever taskrank trains a model: a
source model (:class:`taskrank.finetuned.SourceRecipe`), the two halves of a transfer run
(:class:`taskrank.transfer.runner.TransferSetting`), a mixture experiment
(:class:`taskrank.mixture.ExperimentConfig`); ESM-LogME and the CLI take their defaults from the
named recipes below, so each number lives here once.

The base model, the tuning method and the training seed are given beside a recipe (a transfer
grid varies the seed, and source and target train with the same method). Kept free of torch and
pandas: the CLI imports it to build its options.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Which examples a fine-tune sees is fixed across seeds (samples are drawn with this seed);
# training seeds vary only initialisation and batch order.
DATA_SEED = 0


@dataclass(frozen=True)
class Recipe:
    """One fine-tune. ``examples``: a seeded sample of that many training examples (None: all);
    ``lr``: None for the tuning method's default (``taskrank.tuning.DEFAULT_LR``)."""

    examples: int | None = None
    epochs: int = 2
    lr: float | None = None
    batch_size: int = 32
    max_length: int = 128
    bf16: bool = False

    def but(self, **changes) -> "Recipe":
        """This recipe with some fields changed (``SOURCE.but(examples=64)``)."""
        return replace(self, **changes)

    def tuning(self, method: str = "full", seed: int = 0):
        """The training loop's config (:class:`taskrank.tuning.TuningConfig`) for this recipe."""
        from .tuning import TuningConfig

        return TuningConfig(method=method, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                            max_length=self.max_length, seed=seed, bf16=self.bf16)


# CPU-sized defaults (minutes per model on two cores).
# A source model: the transfer benchmark's intermediate models, shared with ESM-LogME, LogME, LEEP, NCE.
SOURCE = Recipe(examples=2000, epochs=2, lr=1e-4)
# The target after a source (and the target-only baseline).
TARGET = Recipe(examples=1000, epochs=1, lr=2e-4)
# Target validation examples a transfer run is scored on.
EVAL_EXAMPLES = 500
# A mixture experiment: examples per source in a mixture (one epoch), then the target.
MIXTURE = Recipe(examples=200, epochs=1, lr=1e-4, max_length=64)
MIXTURE_TARGET = Recipe(examples=200, epochs=2, lr=2e-4, max_length=64)
MIXTURE_EVAL_EXAMPLES = 200
