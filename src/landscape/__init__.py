"""landscape: Hessian spectra and loss surfaces of any checkpoint, and paper-style figures."""

from __future__ import annotations

from fedtrain._lazy import lazy_exports

# Public name -> the module that owns it. Imported on first use, so that importing one torch-free
# module of the package (errors, config, settings) does not import torch.
_EXPORTS: dict[str, str] = {
    # settings records
    "HessianSettings": "landscape.settings",
    "SurfaceSettings": "landscape.settings",
    # Hessian operator and estimators
    "make_hvp": "landscape.hessian.hvp",
    "HessianOperator": "landscape.hessian.operator",
    "DenseOperator": "landscape.hessian.operator",
    "top_eigenpairs": "landscape.hessian.lanczos",
    "Eigenpairs": "landscape.hessian.lanczos",
    "power_iteration_eigenpairs": "landscape.hessian.power",
    "trace_hutchinson": "landscape.hessian.trace",
    "trace_hutchpp": "landscape.hessian.trace",
    "TraceEstimate": "landscape.hessian.trace",
    "density_slq": "landscape.hessian.density",
    "SpectralDensity": "landscape.hessian.density",
    "dense_hessian": "landscape.hessian.exact",
    # Hessian analysis of models and checkpoints
    "hessian_eigenvectors": "landscape.hessian.analysis",
    "analyze_model": "landscape.hessian.analysis",
    "analyze_checkpoint": "landscape.hessian.analysis",
    "HessianReport": "landscape.hessian.analysis",
    # loss surfaces
    "random_directions": "landscape.surface.directions",
    "interpolation_directions": "landscape.surface.directions",
    "plane_directions": "landscape.surface.directions",
    "Directions": "landscape.surface.directions",
    "compute_surface": "landscape.surface.grid",
    "surface_for_checkpoint": "landscape.surface.api",
    "Surface": "landscape.surface.record",
    "save_surface": "landscape.surface.record",
    "load_surface": "landscape.surface.record",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
