"""Loss surfaces: directions in parameter space, batched evaluation, the resumable grid, its file, and the API.

``directions`` (random, Hessian, line, plane) and ``evaluate`` (loss/accuracy at many points per pass)
feed ``grid`` (the resumable chunked computation); ``record`` is the ``Surface`` and its ``surface.npz``;
``api`` goes from checkpoint files to a saved surface.
"""
