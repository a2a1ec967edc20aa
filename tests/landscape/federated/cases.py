"""A tiny federated run for the per-client curvature tests: 4 clients of an MLP (1,078 parameters) on the synthetic data."""

from __future__ import annotations

from pathlib import Path

from fedtrain.config import TrainConfig
from fedtrain.run import train

TINY = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [4]}, partition="dirichlet", alpha=0.0,
            num_clients=4, samples_per_client=12, clients_per_round=2, rounds=3, batch_size=5, lr=0.1,
            eval_every=1, eval_examples=50, last_k=1, checkpoint_every=1, checkpoint_rounds=[1, 2], seed=3, device="cpu")


def tiny_run(folder: Path, **changes) -> Path:
    """Train the tiny run into ``folder`` (checkpoints after rounds 1, 2 and 3) and return ``folder``."""
    train(TrainConfig(**{**TINY, **changes}), folder)
    return folder
