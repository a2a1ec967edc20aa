"""The settings record of ``landscape clients`` (per-client curvature, drift and the drift plane); torch-free."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fedtrain.config import check_device_spec, check_seed
from landscape.settings import WEIGHTS, _choice, _need, _optional_positive_int, _positive_float, _positive_int

__all__ = ["ClientSettings"]


@dataclass(frozen=True)
class ClientSettings:
    """How ``landscape clients`` measures the clients of a federated checkpoint.

    Every Hessian is that of the mean cross-entropy on a fixed set of samples: for client ``k`` a
    seeded subset of ``samples_per_client`` of its own training samples (``None``: all of them); the
    pooled (global) Hessian is taken on the union of those subsets, so that it is exactly the
    sample-weighted mean of the client Hessians. One Hessian-vector product is one pass over the
    samples of the Hessian it belongs to.

    The defaults keep the quick preset (100 clients x 96 samples, the paper's CNN) to minutes on one
    CPU core: a seeded sample of 20 clients, 32 samples each, top-2 eigenvalues (at most 40 products)
    and a 12-product Hutch++ trace, at the global model and at each client's model after one local
    epoch. ``clients=None`` analyses every client (about five times as long on the quick preset).

    Seeds: the client sample ``seed``; client ``k``'s sample subset ``(seed, "client-samples", k)``
    (:func:`fedtrain._seeds.derive_seed`); Lanczos ``seed`` and trace ``seed + 1`` for every Hessian
    (:class:`~landscape.settings.HessianSettings`). The local epochs use the run's own generator of
    client ``k`` in the round after the checkpoint (:func:`fedtrain.round.client_generator`).

    Attributes:
        clients: how many clients to analyse, a seeded sample (``None``: every client).
        samples_per_client: samples of each client in its Hessians (``None``: all of its samples).
        top_k: top eigenvalues of every Hessian.
        tol: relative residual tolerance of the eigensolver.
        max_matvecs: product budget of each eigensolve (``None``: the solver's default, ``max(200, 40 k)``;
            a smaller budget is also cheaper per product, the Krylov basis being allocated to it).
        trace: estimate the trace (Hutch++) of every Hessian.
        trace_matvecs: Hutch++ products per trace.
        local: also analyse each client's model after ``local_epochs`` of the run's own client update.
        local_epochs: local epochs of that update.
        plane: evaluate the plane through the global model and two client models.
        plane_clients: the two clients of the plane (``None``: the two analysed clients whose updates
            have the smallest cosine, the most divergent pair).
        plane_steps: grid points per axis of the plane.
        plane_margin: widening of the three models' bounding box in the plane.
        batch_size: samples per product pass (memory only).
        seed: see above.
        weights: which model of the checkpoint is the global model (``auto``: SWA when present).
        device: where the models, the data and the vectors live (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    """

    clients: int | None = 20
    samples_per_client: int | None = 32
    top_k: int = 2
    tol: float = 1e-3
    max_matvecs: int | None = 40
    trace: bool = True
    trace_matvecs: int = 12
    local: bool = True
    local_epochs: int = 1
    plane: bool = True
    plane_clients: tuple[int, int] | None = None
    plane_steps: int = 11
    plane_margin: float = 0.2
    batch_size: int = 256
    seed: int = 0
    weights: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        check_device_spec(self.device)
        _choice("weights", self.weights, WEIGHTS)
        _optional_positive_int("clients", self.clients)
        _optional_positive_int("samples_per_client", self.samples_per_client)
        _optional_positive_int("max_matvecs", self.max_matvecs)
        for name in ("top_k", "local_epochs", "batch_size"):
            _positive_int(name, getattr(self, name))
        _positive_int("trace_matvecs", self.trace_matvecs, minimum=3)
        _positive_int("plane_steps", self.plane_steps, minimum=2)
        check_seed(self.seed)
        _positive_float("tol", self.tol)
        _positive_float("plane_margin", self.plane_margin, allow_zero=True)
        if self.plane_clients is not None:
            pair = tuple(self.plane_clients)
            _need(len(pair) == 2 and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in pair)
                  and pair[0] != pair[1],
                  f"plane_clients (--plane-clients) must be two different client ids >= 0, got {self.plane_clients!r}.")
            object.__setattr__(self, "plane_clients", pair)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``plane_clients`` as a list)."""
        out = dataclasses.asdict(self)
        out["plane_clients"] = None if self.plane_clients is None else list(self.plane_clients)
        return out
