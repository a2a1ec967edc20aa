"""Federated partitions of a training split: Dirichlet (Hsu et al. 2019), IID and per-class Dirichlet, as hashed artifacts.

Schemes
-------
``dirichlet`` (the convention of the FedSAM splits, Hsu, Qi & Brown 2019)
    ``num_clients`` clients of equal size ``n``. Client k draws class proportions
    :math:`q_k \\sim \\mathrm{Dir}(\\alpha p)`, with :math:`p` the global class prior, then draws its ``n``
    samples class by class from :math:`q_k` without replacement. When a class runs out, the draws that
    would have fallen on it are redrawn from :math:`q_k` restricted to the classes left (the same law as
    sequential draws with renormalisation), and when :math:`q_k` has no mass left on any available class
    the prior :math:`p` restricted to them is used. ``alpha = 0`` is the documented special case of
    **one class per client**, the classes spread evenly over clients (CIFAR-10 with 100 clients: 10
    clients per class), exactly as in the shipped Hsu/FedSAM ``alpha=0`` files. Large ``alpha`` tends to IID.
``iid``
    A seeded shuffle cut into equal shards.
``dirichlet-class``
    The *other* convention several frameworks call "Dirichlet" (Yurochkin et al. 2019, NIID-Bench,
    Flower's ``DirichletPartitioner``, FL-bench): each class is split over the clients with proportions
    drawn from :math:`\\mathrm{Dir}(\\alpha \\mathbf{1})`; client sizes are unequal. Not comparable with
    ``dirichlet`` at the same ``alpha``.

Every partition is deterministic for (labels, scheme, alpha, clients, samples per client, seed), uses no
sample twice, has no unbounded retry loop, and carries a content hash.

Validation split: with ``validation = n > 0`` the ``n`` examples of :func:`fedtrain.holdout.holdout_indices`
are taken out of the training split first, the scheme splits the examples left, and the shards are
mapped back to indices of the whole training split, so no client holds a validation example. The recipe
records ``validation`` only when it is not 0, so the hashes of partitions without one are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedtrain.config import PARTITION_SCHEMES, check_seed
from fedtrain.errors import ConfigError, DataFormatError, DataNotFoundError
from fedtrain.holdout import holdout_indices, remaining_indices
from fedtrain.io import read_json, write_json
from fedtrain.validate import UntrustedFile, integer, list_of, mapping_rule, number, optional, text

__all__ = ["Partition", "make_partition", "build_partition", "save_partition", "load_partition"]

ARTIFACT_FORMAT = "fedlandscape.partition"
_MAX_CLASS_SPLIT_TRIES = 100


@dataclass(frozen=True)
class Partition:
    """Which training samples each client holds, plus the recipe that produced it."""

    scheme: str
    num_clients: int
    alpha: float | None
    seed: int
    samples_per_client: int | None
    dataset: str | None
    num_classes: int
    client_indices: tuple[torch.Tensor, ...]
    label_histograms: torch.Tensor  # (num_clients, num_classes) int64
    validation: int = 0  # training examples held out before the split (fedtrain.holdout)

    @property
    def num_examples(self) -> list[int]:
        """Number of training samples of each client."""
        return [int(idx.numel()) for idx in self.client_indices]

    @property
    def spec(self) -> dict[str, Any]:
        """The recipe: everything needed to rebuild the partition from the dataset."""
        return {
            "scheme": self.scheme,
            "alpha": self.alpha,
            "num_clients": self.num_clients,
            "samples_per_client": self.samples_per_client,
            "seed": self.seed,
            "dataset": self.dataset,
            # only when set: the recipes (and hashes) of partitions without a validation split stay as they were
            **({"validation": self.validation} if self.validation else {}),
        }

    @property
    def hash(self) -> str:
        """SHA-256 of the recipe and the per-client indices (first 16 hex digits)."""
        digest = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode())
        for idx in self.client_indices:
            digest.update(np.int64(idx.numel()).tobytes())
            digest.update(idx.numpy().astype("<i8").tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """Label-heterogeneity statistics: classes and samples per client, effective number of classes."""
        hist = self.label_histograms.to(torch.float64)
        classes = (hist > 0).sum(dim=1).to(torch.float64)
        sizes = hist.sum(dim=1)
        share = hist / sizes.clamp_min(1)[:, None]
        entropy = -(share * share.clamp_min(1e-300).log()).sum(dim=1)
        return {
            "num_clients": self.num_clients,
            "num_samples": int(sizes.sum()),
            "classes_per_client": {"mean": float(classes.mean()), "min": int(classes.min()), "max": int(classes.max())},
            "samples_per_client": {"mean": float(sizes.mean()), "min": int(sizes.min()), "max": int(sizes.max())},
            "effective_classes_per_client": float(entropy.exp().mean()),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON artifact: recipe, hash, summary and per-client indices and label histograms."""
        return {
            "format": ARTIFACT_FORMAT,
            "format_version": 1,
            "spec": self.spec,
            "num_classes": self.num_classes,
            "hash": self.hash,
            "summary": self.summary(),
            "clients": [
                {"indices": idx.tolist(), "label_histogram": hist.tolist()}
                for idx, hist in zip(self.client_indices, self.label_histograms)
            ],
        }


def make_partition(
    labels: torch.Tensor,
    *,
    scheme: str,
    num_clients: int,
    alpha: float | None = None,
    seed: int = 0,
    samples_per_client: int | None = None,
    dataset: str | None = None,
    num_classes: int | None = None,
    validation: int = 0,
) -> Partition:
    """Split the indices of ``labels`` over ``num_clients`` clients.

    Args:
        labels: int64 labels of the training split.
        scheme: ``dirichlet`` (Hsu et al.), ``iid`` or ``dirichlet-class`` (see the module docstring).
        num_clients: number of clients K.
        alpha: concentration; required for the Dirichlet schemes (``>= 0`` for ``dirichlet``, ``> 0``
            for ``dirichlet-class``), ignored for ``iid``.
        seed: seed of every random choice.
        samples_per_client: client size n for ``dirichlet`` and ``iid`` (default ``len(labels) // K``).
        dataset: name recorded in the recipe.
        num_classes: number of classes (default ``max(labels) + 1``).
        validation: examples held out before the split (:func:`fedtrain.holdout.holdout_indices` with
            ``seed``); the clients share the rest.

    Raises:
        ConfigError: unknown scheme, nonsensical numbers, or a split that the data cannot satisfy.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if validation:
        return _partition_rest(labels, validation, scheme=scheme, num_clients=num_clients, alpha=alpha, seed=seed,
                               samples_per_client=samples_per_client, dataset=dataset, num_classes=num_classes)
    if scheme not in PARTITION_SCHEMES:
        raise ConfigError(f"Unknown partition scheme {scheme!r}. Available schemes: {', '.join(PARTITION_SCHEMES)}.")
    check_seed(seed)  # before NumPy sees it: a negative seed is its ValueError, 2**70 a seed no torch generator takes
    if num_clients < 1:
        raise ConfigError(f"The number of clients must be >= 1, got {num_clients}.")
    if scheme != "iid":
        if alpha is None or not np.isfinite(alpha) or alpha < 0:
            raise ConfigError(f"Scheme {scheme!r} needs a finite alpha >= 0 (--alpha), got {alpha}.")
        if scheme == "dirichlet-class" and alpha == 0:
            raise ConfigError("Scheme 'dirichlet-class' needs alpha > 0; for one class per client use scheme 'dirichlet' with alpha 0.")
    else:
        alpha = None
    if scheme == "dirichlet-class":
        if samples_per_client is not None:
            raise ConfigError("Scheme 'dirichlet-class' gives clients unequal sizes: do not set samples_per_client.")
    else:
        samples_per_client = labels.numel() // num_clients if samples_per_client is None else samples_per_client
        if samples_per_client < 1 or samples_per_client * num_clients > labels.numel():
            raise ConfigError(
                f"{num_clients} clients x {samples_per_client} samples need {num_clients * samples_per_client} "
                f"samples but the training split has {labels.numel()}. Use fewer clients or fewer samples per client."
            )
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    if scheme == "iid":
        order = rng.permutation(y.size)[: num_clients * samples_per_client]  # type: ignore[operator]
        shards = np.split(order, num_clients)
    elif scheme == "dirichlet" and alpha == 0:
        shards = _one_class_per_client(y, num_classes, num_clients, samples_per_client, rng)  # type: ignore[arg-type]
    elif scheme == "dirichlet":
        shards = _dirichlet_per_client(y, num_classes, num_clients, samples_per_client, alpha, rng)  # type: ignore[arg-type]
    else:
        shards = _dirichlet_per_class(y, num_classes, num_clients, alpha, rng)  # type: ignore[arg-type]
    indices = tuple(torch.from_numpy(np.sort(np.asarray(s, dtype=np.int64))) for s in shards)
    histograms = torch.stack([torch.bincount(labels[idx], minlength=num_classes) for idx in indices])
    return Partition(
        scheme=scheme,
        num_clients=num_clients,
        alpha=None if alpha is None else float(alpha),
        seed=seed,
        samples_per_client=samples_per_client,
        dataset=dataset,
        num_classes=num_classes,
        client_indices=indices,
        label_histograms=histograms,
    )


def _partition_rest(labels: torch.Tensor, validation: int, *, seed: int, **split: Any) -> Partition:
    """:func:`make_partition` of the examples left after holding out ``validation`` of them, in whole-split indices."""
    check_seed(seed)
    held = holdout_indices(labels.numel(), validation, seed)
    rest = remaining_indices(labels.numel(), held)
    try:
        inner = make_partition(labels[rest], seed=seed, **split)
    except ConfigError as err:
        raise ConfigError(f"With {validation} of the {labels.numel()} training examples held out for validation "
                          f"(--validation), {rest.numel()} are left for the clients, and they do not fit: {err} "
                          "Or lower --validation.") from None
    return replace(inner, client_indices=tuple(rest[idx] for idx in inner.client_indices), validation=validation)


def _class_pools(y: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]


def _one_class_per_client(
    y: np.ndarray, num_classes: int, num_clients: int, n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    present = [c for c in range(num_classes) if (y == c).any()]
    pools = _class_pools(y, num_classes, rng)
    # Classes dealt round-robin over a shuffled client order: every class gets floor or ceil of K/C clients.
    classes_of = np.array([present[k % len(present)] for k in range(num_clients)])[rng.permutation(num_clients)]
    shards, taken = [], np.zeros(num_classes, dtype=np.int64)
    for c in classes_of:
        if n > pools[c].size:
            raise ConfigError(
                f"alpha=0 puts one class on each client, but a client of {n} samples is larger than class {c} "
                f"({pools[c].size} samples). Use at most {min(p.size for p in pools if p.size)} samples per client "
                "(--samples-per-client) or more clients."
            )
        if taken[c] + n > pools[c].size:
            need = int((classes_of == c).sum()) * n
            raise ConfigError(
                f"alpha=0 gives class {c} to {int((classes_of == c).sum())} clients of {n} samples ({need} samples) "
                f"but the class has only {pools[c].size}. Use fewer samples per client or a number of clients "
                f"that spreads the {len(present)} classes evenly."
            )
        shards.append(pools[c][taken[c] : taken[c] + n])
        taken[c] += n
    return shards


def _dirichlet_per_client(
    y: np.ndarray, num_classes: int, num_clients: int, n: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    pools = _class_pools(y, num_classes, rng)
    prior = np.bincount(y, minlength=num_classes) / y.size
    available = np.array([pool.size for pool in pools])
    taken = np.zeros(num_classes, dtype=np.int64)
    support = prior > 0
    shards = []
    for _ in range(num_clients):
        q = np.zeros(num_classes)
        q[support] = rng.dirichlet(alpha * prior[support])
        if not np.all(np.isfinite(q)) or q.sum() <= 0:
            # All gamma draws underflowed (tiny alpha): the limit of Dir(alpha p) is a one-hot drawn from p.
            q = np.eye(num_classes)[rng.choice(num_classes, p=prior)]
        counts = np.zeros(num_classes, dtype=np.int64)
        remaining = n
        # Each pass exhausts at least one class or places every draw: at most num_classes passes.
        for _ in range(num_classes + 1):
            if remaining == 0:
                break
            left = available - taken - counts
            weights = np.where(left > 0, q, 0.0)
            if weights.sum() <= 0:
                weights = np.where(left > 0, prior, 0.0)
            draws = rng.multinomial(remaining, weights / weights.sum())
            placed = np.minimum(draws, left)
            counts += placed
            remaining -= int(placed.sum())
        if remaining:
            raise DataFormatError(f"Could not place {remaining} samples: the training split ran out of samples.")
        shards.append(np.concatenate([pools[c][taken[c] : taken[c] + counts[c]] for c in range(num_classes)]))
        taken += counts
    return shards


def _dirichlet_per_class(
    y: np.ndarray, num_classes: int, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    pools = _class_pools(y, num_classes, rng)
    for _ in range(_MAX_CLASS_SPLIT_TRIES):
        shards: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for pool in pools:
            share = rng.dirichlet(np.full(num_clients, alpha))
            if not np.all(np.isfinite(share)):
                share = np.eye(num_clients)[rng.integers(num_clients)]
            cuts = np.round(np.cumsum(share)[:-1] * pool.size).astype(np.int64)
            for k, part in enumerate(np.split(pool, cuts)):
                shards[k].append(part)
        merged = [np.concatenate(parts) for parts in shards]
        if min(part.size for part in merged) > 0:
            return merged
    raise ConfigError(
        f"'dirichlet-class' with alpha={alpha} left some of the {num_clients} clients empty in "
        f"{_MAX_CLASS_SPLIT_TRIES} tries. Use a larger alpha or fewer clients."
    )


def save_partition(partition: Partition, path: str | os.PathLike[str]) -> None:
    """Write the partition artifact as JSON, atomically."""
    write_json(path, partition.to_dict())


def load_partition(path: str | os.PathLike[str]) -> Partition:
    """Read a partition artifact and check its content hash.

    Raises:
        DataNotFoundError: no such file.
        DataFormatError: not a partition artifact, damaged, or its hash does not match its content.
    """
    if not os.path.isfile(path):
        raise DataNotFoundError(f"No partition file at {path}. Build one with `landscape partition --out {path}`.")
    file = UntrustedFile(Path(path), "fedlandscape partition artifact", "Rebuild it with `landscape partition`.")
    raw = file.mapping(read_json(path, kind=file.kind, fix=file.fix))
    if raw.get("format") != ARTIFACT_FORMAT:
        raise DataFormatError(f"{path} is not a fedlandscape partition artifact (it lacks the format marker {ARTIFACT_FORMAT!r}). "
                              "Build one with `landscape partition`.")
    spec = file.field(raw, "spec", mapping_rule())
    num_classes = file.field(raw, "num_classes", integer(1))
    clients = file.field(raw, "clients", list_of(mapping_rule()))
    file.field(spec, "num_clients", integer(len(clients), len(clients)), "spec ")
    for key, rule in (("scheme", text()), ("dataset", optional(text())), ("seed", integer(0)), ("alpha", optional(number(low=0))),
                      ("samples_per_client", optional(integer(1)))):
        file.field(spec, key, rule, "spec ")
    file.field(spec, "validation", integer(0), "spec ", default=0)
    for n, client in enumerate(clients):
        file.field(client, "indices", list_of(integer(0)), f"client {n} ")
        file.field(client, "label_histogram", list_of(integer(0), num_classes), f"client {n} ")
    try:
        partition = Partition(
            scheme=spec["scheme"],
            num_clients=spec["num_clients"],
            alpha=spec["alpha"],
            seed=spec["seed"],
            samples_per_client=spec["samples_per_client"],
            dataset=spec["dataset"],
            num_classes=num_classes,
            client_indices=tuple(torch.tensor(c["indices"], dtype=torch.int64) for c in clients),
            label_histograms=torch.tensor([c["label_histogram"] for c in clients], dtype=torch.int64).reshape(len(clients), num_classes),
            validation=spec.get("validation", 0),
        )
    except (ValueError, TypeError, RuntimeError) as err:
        file.fail(f"its content does not make a partition ({err})")
    if partition.hash != raw.get("hash"):
        raise DataFormatError(
            f"{path} is damaged: its content hash {partition.hash} does not match the recorded {raw.get('hash')}. "
            "Rebuild it with `landscape partition`."
        )
    return partition


def build_partition(
    dataset: str,
    *,
    scheme: str,
    num_clients: int,
    alpha: float | None = None,
    seed: int = 0,
    samples_per_client: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Partition:
    """Load ``dataset`` and partition its training split (see :func:`make_partition`)."""
    from fedtrain.data import load_dataset

    data = load_dataset(dataset, data_dir)
    return make_partition(
        data.train_labels,
        scheme=scheme,
        num_clients=num_clients,
        alpha=alpha,
        seed=seed,
        samples_per_client=samples_per_client,
        dataset=dataset,
        num_classes=data.num_classes,
    )
