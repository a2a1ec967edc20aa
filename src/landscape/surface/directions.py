"""Directions in parameter space for loss surfaces: filter-normalised random, Hessian, interpolation and model planes.

Every direction is a ``dict[str, Tensor]`` keyed by parameter name, the same keys and shapes as
``model.named_parameters()``. A :class:`Directions` bundles the origin (the parameters at coordinate
0), one or two axes and a JSON-able record of how they were made; the point at coordinates
``(a, b)`` is ``origin + a * axes[0] + b * axes[1]``. Nothing here touches a model.

Directions are made on the CPU, where every random draw comes from a CPU generator (the same axes on
every machine), and moved to the evaluating device with :meth:`Directions.to`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from fedtrain.errors import ConfigError
from landscape.settings import ONE_DIM_POLICIES

__all__ = [
    "Directions",
    "OneDimPolicy",
    "random_direction",
    "filter_normalize",
    "random_directions",
    "interpolation_directions",
    "plane_directions",
    "directions_from_vectors",
    "check_same_architecture",
    "directions_sha256",
    "dot",
    "norm",
]

OneDimPolicy = Literal["zero", "keep", "filter"]


@dataclass(frozen=True)
class Directions:
    """An origin and one or two axes spanning the slice of parameter space a surface is drawn on.

    Attributes:
        kind: ``"random"``, ``"hessian"``, ``"interpolation"`` or ``"plane"``.
        origin: parameters at coordinate 0.
        axes: one axis (1-D curve) or two (2-D surface), each keyed like ``origin``.
        info: JSON-able record of how the axes were made (seed, policies, eigenvalues, model coordinates).
    """

    kind: str
    origin: dict[str, Tensor]
    axes: tuple[dict[str, Tensor], ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        """Number of axes (1 or 2)."""
        return len(self.axes)

    def point(self, coefficients: Sequence[float]) -> dict[str, Tensor]:
        """Parameters at ``origin + sum_i coefficients[i] * axes[i]`` (a new dict; ``origin`` is not modified)."""
        out = {}
        for name, base in self.origin.items():
            value = base.clone()
            for coefficient, axis in zip(coefficients, self.axes):
                if coefficient != 0.0:
                    value.add_(axis[name], alpha=float(coefficient))
            out[name] = value
        return out

    def to(self, device: torch.device | str) -> Directions:
        """The same directions with origin and axes on ``device`` (tensors already there are shared, not copied)."""
        origin = {name: t.to(device) for name, t in self.origin.items()}
        axes = tuple({name: t.to(device) for name, t in axis.items()} for axis in self.axes)
        return Directions(self.kind, origin, axes, self.info)


def _as_param_dict(params: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{what} must be a dict[str, Tensor], got {type(params).__name__}. Use dict(model.named_parameters())."
        )
    return {name: value.detach() for name, value in params.items()}


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Euclidean inner product of two parameter dicts, accumulated in float64."""
    return float(sum((a[n].double() * b[n].double()).sum() for n in a))


def norm(a: Mapping[str, Tensor]) -> float:
    """Euclidean norm of a parameter dict, accumulated in float64."""
    return dot(a, a) ** 0.5


def filter_normalize(
    direction: Mapping[str, Tensor], params: Mapping[str, Tensor], *, one_dim: OneDimPolicy = "zero"
) -> dict[str, Tensor]:
    r"""Filter normalisation of Li et al. (2018, "Visualizing the Loss Landscape of Neural Nets", Sec. 4).

    For a tensor with at least two dimensions, each filter ``f`` (a slice along the first dimension:
    one output channel of a convolution, one output neuron of a linear layer) is rescaled to the norm
    of the matching filter of the weights,

    .. math:: d_f \leftarrow d_f \, \frac{\lVert w_f \rVert}{\lVert d_f \rVert},

    computed in float64, so the direction has exactly the filters' norms (to the parameter dtype's
    precision). One-dimensional tensors (biases, normalisation scales) follow ``one_dim``:
    ``"zero"`` sets them to 0 (Li et al.'s ``--xignore biasbn``, the default here), ``"keep"`` copies
    the weights (``d = w``, what Li et al.'s code does without ``biasbn``), ``"filter"`` rescales the
    whole vector to the vector's norm (the tensor is one unit, not one per element).

    Args:
        direction: raw direction, keyed like ``params``.
        params: the weights whose filter norms set the scale.
        one_dim: policy for tensors with fewer than two dimensions.

    Returns:
        A new normalised direction (the inputs are not modified).

    Raises:
        ConfigError: unknown ``one_dim`` policy.
    """
    if one_dim not in ONE_DIM_POLICIES:
        raise ConfigError(f"one_dim must be one of {', '.join(ONE_DIM_POLICIES)}; got {one_dim!r}.")
    out = {}
    for name, weight in params.items():
        d = direction[name].double()
        w = weight.detach().double()
        if w.dim() <= 1:
            if one_dim == "zero":
                scaled = torch.zeros_like(d)
            elif one_dim == "keep":
                scaled = w.clone()
            else:
                scaled = d * (w.norm() / d.norm().clamp_min(1e-300))
        else:
            d_rows, w_rows = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
            ratio = w_rows.norm(dim=1) / d_rows.norm(dim=1).clamp_min(1e-300)
            scaled = (d_rows * ratio[:, None]).reshape(d.shape)
        out[name] = scaled.to(weight.dtype)
    return out


def random_direction(
    params: Mapping[str, Tensor], *, generator: torch.Generator, one_dim: OneDimPolicy = "zero"
) -> dict[str, Tensor]:
    """A Gaussian direction, filter-normalised to ``params`` (Li et al. 2018).

    The Gaussian entries are drawn on the CPU from ``generator`` in the order of ``params``' keys,
    so a seed gives the same direction on every machine.

    Args:
        params: the weights (``dict(model.named_parameters())``).
        generator: the CPU generator every entry is drawn from.
        one_dim: policy for one-dimensional tensors (see :func:`filter_normalize`).

    Returns:
        The direction, keyed like ``params``.

    Raises:
        TypeError: ``params`` is not a mapping (a programming error, not a setting).
    """
    params = _as_param_dict(params, "params")
    raw = {name: torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype) for name, p in params.items()}
    return filter_normalize(raw, params, one_dim=one_dim)


def random_directions(
    params: Mapping[str, Tensor], *, ndim: int = 2, seed: int = 0, one_dim: OneDimPolicy = "zero"
) -> Directions:
    """One or two independent filter-normalised Gaussian directions around ``params``.

    As in Li et al., the axes are not orthogonalised: in high dimension two Gaussian directions are
    nearly orthogonal; their cosine is recorded in ``info["cosine"]`` so a user can check.

    Args:
        params: the weights at the centre of the surface.
        ndim: 1 (a line) or 2 (a plane).
        seed: seed of the one generator all axes are drawn from (axis 0 first).
        one_dim: policy for one-dimensional tensors (see :func:`filter_normalize`).

    Returns:
        The directions, with ``info`` holding the seed, the policy, the axes' norms and their cosine.

    Raises:
        ConfigError: ``ndim`` is not 1 or 2.
        TypeError: a parameter dict is not a mapping (a programming error, not a setting).
    """
    if ndim not in (1, 2):
        raise ConfigError(f"A surface has 1 or 2 dimensions, got {ndim}.")
    params = _as_param_dict(params, "params")
    generator = torch.Generator().manual_seed(seed)
    axes = tuple(random_direction(params, generator=generator, one_dim=one_dim) for _ in range(ndim))
    info: dict[str, Any] = {
        "seed": seed,
        "distribution": "gaussian",
        "normalization": "filter",
        "one_dim": one_dim,
        "axis_norms": [norm(a) for a in axes],
        "origin_norm": norm(params),
    }
    if ndim == 2:
        info["cosine"] = dot(*axes) / max(norm(axes[0]) * norm(axes[1]), 1e-300)
    return Directions("random", {n: p.clone() for n, p in params.items()}, axes, info)


def directions_from_vectors(
    params: Mapping[str, Tensor], vectors: Sequence[Mapping[str, Tensor]], *, kind: str, info: dict[str, Any]
) -> Directions:
    """Directions along given vectors (e.g. Hessian eigenvectors), used as they are (no rescaling).

    Args:
        params: the weights at the centre.
        vectors: one or two vectors keyed like ``params`` (missing keys are zero).
        kind: name recorded in the output (``"hessian"``).
        info: JSON-able record of how the vectors were made.

    Returns:
        The directions.

    Raises:
        ConfigError: not one or two vectors, or a vector's shapes do not match ``params``.
        TypeError: a parameter dict is not a mapping (a programming error, not a setting).
    """
    params = _as_param_dict(params, "params")
    if len(vectors) not in (1, 2):
        raise ConfigError(f"A surface needs 1 or 2 direction vectors, got {len(vectors)}.")
    axes = []
    for vector in vectors:
        axis = {}
        for name, p in params.items():
            v = vector.get(name)
            if v is None:
                axis[name] = torch.zeros_like(p)
            elif v.shape != p.shape:
                raise ConfigError(f"Direction entry {name!r} has shape {tuple(v.shape)}, the parameter {tuple(p.shape)}.")
            else:
                axis[name] = v.detach().to(p.dtype).clone()
        axes.append(axis)
    info = {**info, "axis_norms": [norm(a) for a in axes], "origin_norm": norm(params)}
    return Directions(kind, {n: p.clone() for n, p in params.items()}, tuple(axes), info)


def check_same_architecture(named_params: Sequence[tuple[str, Mapping[str, Tensor]]]) -> None:
    """Raise a clear error unless all parameter dicts have the same names and shapes.

    Args:
        named_params: ``(label, params)`` pairs; labels name the culprit in the message.

    Raises:
        ConfigError: names or shapes differ.
    """
    (first_label, first), *rest = named_params
    for label, params in rest:
        if set(params) != set(first):
            missing = sorted(set(first) ^ set(params))[:4]
            raise ConfigError(
                f"{label} and {first_label} hold different architectures (parameters {', '.join(missing)} are in "
                "only one of them). Lines and planes join models of one architecture: pass parameters with the "
                "same names and shapes."
            )
        for name, value in params.items():
            if value.shape != first[name].shape:
                raise ConfigError(
                    f"{label} and {first_label} hold different architectures: parameter {name!r} has shape "
                    f"{tuple(value.shape)} in one and {tuple(first[name].shape)} in the other. Lines and planes "
                    "join models of one architecture."
                )


def interpolation_directions(params_a: Mapping[str, Tensor], params_b: Mapping[str, Tensor]) -> Directions:
    """The line through models A (coordinate 0) and B (coordinate 1): ``origin = A``, ``axis = B - A``.

    Args:
        params_a: parameters of A.
        params_b: parameters of B (same names and shapes).

    Returns:
        One-axis directions; ``info`` records the distance ``||B - A||`` and the models' coordinates 0 and 1.

    Raises:
        ConfigError: A and B have different architectures.
        TypeError: a parameter dict is not a mapping (a programming error, not a setting).
    """
    a, b = _as_param_dict(params_a, "params_a"), _as_param_dict(params_b, "params_b")
    check_same_architecture([("model A", a), ("model B", b)])
    axis = {n: b[n] - a[n] for n in a}
    info = {"distance": norm(axis), "model_coordinates": [[0.0], [1.0]], "origin_norm": norm(a)}
    return Directions("interpolation", {n: v.clone() for n, v in a.items()}, (axis,), info)


def plane_directions(
    params_0: Mapping[str, Tensor], params_1: Mapping[str, Tensor], params_2: Mapping[str, Tensor]
) -> Directions:
    r"""The plane through three models (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast Ensembling").

    With :math:`w_0` at the origin, :math:`u = (w_1 - w_0)/\lVert w_1 - w_0\rVert` and
    :math:`v` the unit component of :math:`w_2 - w_0` orthogonal to :math:`u` (Gram-Schmidt in float64),
    the point at :math:`(x, y)` is :math:`w_0 + x u + y v`; coordinates are distances in parameter space.
    The models sit at :math:`(0, 0)`, :math:`(\lVert w_1 - w_0\rVert, 0)` and
    :math:`(\langle w_2 - w_0, u\rangle, \lVert w_2 - w_0 - \langle w_2 - w_0, u\rangle u\rVert)`,
    recorded in ``info["model_coordinates"]``.

    Args:
        params_0: model A, at the origin.
        params_1: model B, on the first axis.
        params_2: model C.

    Returns:
        Two-axis directions with orthonormal axes.

    Raises:
        ConfigError: different architectures, or the three models are (nearly) on one line.
        TypeError: a parameter dict is not a mapping (a programming error, not a setting).
    """
    w0, w1, w2 = (_as_param_dict(p, f"params_{i}") for i, p in enumerate((params_0, params_1, params_2)))
    check_same_architecture([("model A", w0), ("model B", w1), ("model C", w2)])
    d1 = {n: w1[n].double() - w0[n].double() for n in w0}
    d2 = {n: w2[n].double() - w0[n].double() for n in w0}
    length_1 = norm(d1)
    if length_1 == 0.0:
        raise ConfigError("Models A and B of the plane hold identical weights, so they span no axis; pass three different models.")
    u = {n: t / length_1 for n, t in d1.items()}
    along = dot(d2, u)
    residual = {n: d2[n] - along * u[n] for n in w0}
    height = norm(residual)
    # Rounding of the stored weights leaves a residual of about eps * ||w||; below 100 eps the plane is noise.
    eps = max(torch.finfo(t.dtype).eps for t in w0.values())
    if height <= 100 * eps * (norm(w0) + norm(w2)):
        raise ConfigError(
            "The three models lie on one line in parameter space, so they do not span a plane. Pick a third "
            "model off that line, or draw the line through two of them."
        )
    v = {n: t / height for n, t in residual.items()}
    axes = tuple({n: t[n].to(w0[n].dtype) for n in w0} for t in (u, v))
    info = {
        "model_coordinates": [[0.0, 0.0], [length_1, 0.0], [along, height]],
        "orthonormal": True,
        "origin_norm": norm(w0),
    }
    return Directions("plane", {n: t.clone() for n, t in w0.items()}, axes, info)


def directions_sha256(directions: Directions) -> str:
    """Hex SHA-256 of the origin and axes' bytes (in key order): ties a saved surface to its exact directions."""
    digest = hashlib.sha256()
    for tensors in (directions.origin, *directions.axes):
        for name in sorted(tensors):
            digest.update(name.encode())
            digest.update(tensors[name].detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()
