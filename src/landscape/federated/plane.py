"""The client-drift plane: the loss on the plane through the global model and two client models.

The plane is that of Garipov et al. (2018), :func:`landscape.surface.directions.plane_directions`, with the
global model at the origin and two clients' locally updated models spanning it; the grid and its
evaluation are :func:`landscape.surface.grid.plane_coordinates` and :func:`~landscape.surface.grid.compute_surface`.
The loss is drawn three times on the same plane: on the pooled samples and on each of the two clients'
own samples, so one sees where each client's valley lies relative to the global model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from fedtrain.errors import ConfigError
from landscape.surface.directions import plane_directions
from landscape.surface.grid import compute_surface, plane_coordinates
from landscape.surface.record import Surface

__all__ = ["drift_plane"]


def drift_plane(
    model: nn.Module,
    models: Mapping[str, Mapping[str, Tensor]],
    data: Mapping[str, tuple[Tensor, Tensor]],
    *,
    steps: int = 11,
    margin: float = 0.2,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, Surface]:
    """Train loss and accuracy on the plane through three models, once per data set.

    Args:
        model: the architecture (never modified; its BatchNorm statistics are the frozen ones).
        models: exactly three ``label -> parameters`` entries, the origin (the global model) first, then
            the two client models.
        data: ``name -> (inputs, labels)``: each set the loss is evaluated on (e.g. ``"pooled"`` and
            one entry per client).
        steps: grid points per axis.
        margin: widening of the models' bounding box on each side, as a fraction of its size.
        batch_size: samples per forward pass.
        device: where the grid is evaluated.

    Returns:
        ``name -> Surface`` for each entry of ``data``; every surface's metadata holds ``labels`` (the
        three models, in the order of ``model_coordinates``) and ``loss_on`` (the data set's name).

    Raises:
        ConfigError: not three models, or three models on one line.
    """
    if len(models) != 3:
        raise ConfigError(f"The drift plane goes through exactly three models (global and two clients), got {len(models)}.")
    labels = list(models)
    directions = plane_directions(*(models[label] for label in labels))
    coordinates = plane_coordinates(directions.info["model_coordinates"], steps, margin)
    return {
        name: compute_surface(model, directions, coordinates, {"train": pair}, batch_size=batch_size,
                              metadata={"labels": labels, "loss_on": name}, device=device)
        for name, pair in data.items()
    }
