"""fedtrain: federated training (FedAvg, FedSAM, FedASAM, +SWA) on federated splits of real datasets."""

from fedtrain.checkpoint import Checkpoint, file_sha256, load_checkpoint, save_checkpoint
from fedtrain.data import DATASETS, ImageDataset, augment_batch, evaluation_tensors, load_dataset
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError, DataNotFoundError, LandscapeError
from fedtrain.models import MODELS, build_model, count_parameters
from fedtrain.aggregate import aggregate
from fedtrain.client import ClientConfig, ClientShard, ClientUpdate, NonFiniteLossError, client_update
from fedtrain.config import PRESETS, TrainConfig, load_config_file, preset_config, resolve_config
from fedtrain.run import load_run_config, run_rounds, train
from fedtrain.sam import SAM, asam_epsilon, sam_epsilon
from fedtrain.server import ServerState, select_clients, server_update
from fedtrain.swa import collects, cyclic_lr, swa_average

__all__ = [
    # data
    "DATASETS",
    "ImageDataset",
    "load_dataset",
    "augment_batch",
    "evaluation_tensors",
    # models
    "MODELS",
    "build_model",
    "count_parameters",
    # checkpoints
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "file_sha256",
    # federated training
    "TrainConfig",
    "PRESETS",
    "preset_config",
    "resolve_config",
    "load_config_file",
    "train",
    "load_run_config",
    "run_rounds",
    "ClientConfig",
    "ClientShard",
    "ClientUpdate",
    "client_update",
    "aggregate",
    "ServerState",
    "select_clients",
    "server_update",
    "SAM",
    "sam_epsilon",
    "asam_epsilon",
    "cyclic_lr",
    "collects",
    "swa_average",
    "NonFiniteLossError",
    # errors
    "LandscapeError",
    "ConfigError",
    "DataNotFoundError",
    "DataFormatError",
    "CheckpointError",
]
