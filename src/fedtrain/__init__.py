"""fedtrain: federated training (FedAvg, FedSAM, FedASAM, the methods of fedtrain.methods, +SWA) on federated splits of real datasets."""

from __future__ import annotations

from fedtrain._lazy import lazy_exports

# Public name -> the module that owns it. Imported on first use, so that importing one torch-free
# module of the package (errors, config, settings) does not import torch.
_EXPORTS: dict[str, str] = {
    # data
    "DATASETS": "fedtrain.config",
    "ImageDataset": "fedtrain.data",
    "load_dataset": "fedtrain.data",
    "Normalize": "fedtrain.data",
    "augment_batch": "fedtrain.data",
    "augmentation_draws": "fedtrain.data",
    "apply_augmentation": "fedtrain.data",
    "evaluation_tensors": "fedtrain.data",
    # models
    "MODELS": "fedtrain.models",
    "build_model": "fedtrain.models",
    "count_parameters": "fedtrain.models",
    # checkpoints
    "Checkpoint": "fedtrain.checkpoint",
    "save_checkpoint": "fedtrain.checkpoint",
    "load_checkpoint": "fedtrain.checkpoint",
    "file_sha256": "fedtrain.checkpoint",
    # federated training
    "TrainConfig": "fedtrain.config",
    "PRESETS": "fedtrain.config",
    "preset_config": "fedtrain.config",
    "resolve_config": "fedtrain.config",
    "load_config_file": "fedtrain.config",
    "train": "fedtrain.run",
    "load_run_config": "fedtrain.run",
    "run_rounds": "fedtrain.run",
    "federated_round": "fedtrain.round",
    "plan_round": "fedtrain.round",
    "train_clients": "fedtrain.round",
    "cohort_update": "fedtrain.cohort",
    "CohortSettings": "fedtrain.cohort",
    "aggregate_round": "fedtrain.round",
    "RoundData": "fedtrain.round",
    "RoundPlan": "fedtrain.round",
    "RoundMetrics": "fedtrain.round",
    "ClientConfig": "fedtrain.client",
    "ClientShard": "fedtrain.client",
    "ClientUpdate": "fedtrain.client",
    "client_update": "fedtrain.client",
    "aggregate": "fedtrain.aggregation",
    "ServerState": "fedtrain.server",
    "select_clients": "fedtrain.server",
    "server_update": "fedtrain.server",
    "SAM": "fedtrain.sam",
    "sam_epsilon": "fedtrain.sam",
    "asam_epsilon": "fedtrain.sam",
    "cyclic_lr": "fedtrain.swa",
    "collects": "fedtrain.swa",
    "swa_average": "fedtrain.swa",
    "NonFiniteLossError": "fedtrain.client",
    # methods (the extension point)
    "Method": "fedtrain.methods",
    "ClientContext": "fedtrain.methods",
    "ServerContext": "fedtrain.methods",
    "load_method": "fedtrain.methods",
    # errors
    "LandscapeError": "fedtrain.errors",
    "ConfigError": "fedtrain.errors",
    "DataNotFoundError": "fedtrain.errors",
    "DataFormatError": "fedtrain.errors",
    "CheckpointError": "fedtrain.errors",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
