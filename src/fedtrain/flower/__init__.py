"""fedtrain on Flower: a ClientApp, a Strategy and a ServerApp running this toolkit's FedAvg/FedSAM/FedASAM (+SWA) rounds (needs ``flwr``)."""

from __future__ import annotations

from fedtrain._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "FedLandscapeStrategy": "fedtrain.flower.strategy",
    "client_nodes": "fedtrain.flower.strategy",
    "train_messages": "fedtrain.flower.strategy",
    "collect_updates": "fedtrain.flower.strategy",
    "make_client_app": "fedtrain.flower.client_app",
    "node_clients": "fedtrain.flower.client_app",
    "flower_round_fn": "fedtrain.flower.server_app",
    "make_server_app": "fedtrain.flower.server_app",
    "train_flower": "fedtrain.flower.server_app",
    "simulation_backend": "fedtrain.flower.server_app",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
