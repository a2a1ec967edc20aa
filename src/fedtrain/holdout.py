"""The validation split: a seeded hold-out of the training split that no client trains on and that a run evaluates instead of the test split.

With ``TrainConfig.validation = n > 0``:

* the ``n`` held-out examples are a uniform draw without replacement from the training split, made with a
  generator seeded by ``derive_seed(seed, "validation")`` (:func:`holdout_indices`), so the same seed holds
  out the same examples whatever the partition, algorithm or radius;
* they are removed *before* the partition draws the client shards (:func:`fedtrain.partition.make_partition`
  partitions the remaining examples and maps the shards back to training-split indices), so no client ever
  holds one of them, and ``samples_per_client = None`` splits only what is left;
* every evaluation of the run uses them (``eval_examples`` of them, a seeded subset, when set), recorded as
  ``"eval_split": "validation"`` in every ``metrics.jsonl`` line and in ``summary.json``; the accuracy keys
  keep their names (``test_accuracy``), so every reader of runs works unchanged and the split is named next
  to the number;
* the test split is not loaded at all (:func:`fedtrain.data.load_dataset` with ``test=False``).

``n = 0`` (the default) is the toolkit without a validation split: the partition, the test evaluation and
every number are those of before this module existed.
"""

from __future__ import annotations

import torch

from fedtrain._seeds import derived_generator
from fedtrain.config import TrainConfig
from fedtrain.data import ImageDataset, evaluation_tensors, subset_indices
from fedtrain.errors import ConfigError

__all__ = ["holdout_indices", "remaining_indices", "evaluation_split", "evaluation_set"]


def holdout_indices(num_train: int, size: int, seed: int) -> torch.Tensor:
    """Sorted indices of the ``size`` training examples held out for validation.

    A uniform draw without replacement (the first ``size`` entries of a permutation of ``0 .. num_train - 1``)
    from a CPU generator seeded by ``derive_seed(seed, "validation")``.

    Raises:
        ConfigError: ``size`` is not in ``1 .. num_train - 1`` (some examples must stay for the clients).
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size < num_train:
        raise ConfigError(
            f"validation (--validation) must hold out between 1 and {num_train - 1} of the {num_train} training "
            f"examples (the clients need the rest), got {size!r}. Lower --validation."
        )
    order = torch.randperm(num_train, generator=derived_generator(seed, "validation"))
    return order[:size].sort().values


def remaining_indices(num_train: int, held_out: torch.Tensor) -> torch.Tensor:
    """Sorted indices of the training examples not in ``held_out``: what the partition deals to the clients."""
    keep = torch.ones(num_train, dtype=torch.bool)
    keep[held_out] = False
    return torch.nonzero(keep).flatten()


def evaluation_split(config: TrainConfig) -> str:
    """``"validation"`` when the run holds out training examples (``config.validation > 0``), else ``"test"``."""
    return "validation" if config.validation > 0 else "test"


def evaluation_set(config: TrainConfig, dataset: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised inputs and labels a run of ``config`` evaluates, on the dataset's device, in a fixed order.

    ``config.validation == 0``: ``eval_examples`` test images (all when ``None``), the seeded subset of
    :func:`fedtrain.data.evaluation_tensors`, exactly as before validation splits existed. Otherwise the
    held-out training examples of :func:`holdout_indices`, or a seeded subset of ``eval_examples`` of them.
    """
    if config.validation == 0:
        return evaluation_tensors(dataset, "test", config.eval_examples, seed=config.seed)
    held = holdout_indices(int(dataset.train_labels.numel()), config.validation, config.seed)
    chosen = held[subset_indices(held.numel(), config.eval_examples, config.seed)].to(dataset.train_images.device)
    return dataset.normalize(dataset.train_images[chosen]), dataset.train_labels[chosen]
