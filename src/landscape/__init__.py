"""landscape: Hessian spectra and loss surfaces of any checkpoint, and paper-style figures."""

from landscape.density import SpectralDensity, density_slq
from landscape.directions import Directions, interpolation_directions, plane_directions, random_directions
from landscape.exact import dense_hessian
from landscape.hessian import HessianReport, analyze_checkpoint, analyze_model, hessian_eigenvectors
from landscape.hvp import make_hvp
from landscape.lanczos import Eigenpairs, top_eigenpairs
from landscape.operator import DenseOperator, HessianOperator
from landscape.power import power_iteration_eigenpairs
from landscape.surface import compute_surface, surface_for_checkpoint
from landscape.surface_io import Surface, load_surface, save_surface
from landscape.trace import TraceEstimate, trace_hutchinson, trace_hutchpp

__all__ = [
    # Hessian operator and estimators
    "make_hvp",
    "HessianOperator",
    "DenseOperator",
    "top_eigenpairs",
    "Eigenpairs",
    "power_iteration_eigenpairs",
    "trace_hutchinson",
    "trace_hutchpp",
    "TraceEstimate",
    "density_slq",
    "SpectralDensity",
    "dense_hessian",
    # Hessian analysis of models and checkpoints
    "hessian_eigenvectors",
    "analyze_model",
    "analyze_checkpoint",
    "HessianReport",
    # loss surfaces
    "random_directions",
    "interpolation_directions",
    "plane_directions",
    "Directions",
    "compute_surface",
    "surface_for_checkpoint",
    "Surface",
    "save_surface",
    "load_surface",
]
