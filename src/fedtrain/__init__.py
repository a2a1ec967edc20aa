"""fedtrain: federated training (FedAvg, FedSAM, FedASAM, +SWA) on federated splits of real datasets."""

from fedtrain.checkpoint import Checkpoint, file_sha256, load_checkpoint, save_checkpoint
from fedtrain.data import DATASETS, ImageDataset, augment_batch, evaluation_tensors, load_dataset
from fedtrain.errors import CheckpointError, ConfigError, DataFormatError, DataNotFoundError, LandscapeError
from fedtrain.models import MODELS, build_model, count_parameters

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
    # errors
    "LandscapeError",
    "ConfigError",
    "DataNotFoundError",
    "DataFormatError",
    "CheckpointError",
]
