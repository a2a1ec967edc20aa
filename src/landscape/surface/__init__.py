"""Loss surfaces: directions in parameter space, batched evaluation, the resumable grid, its file, and the API.

``directions`` (random, Hessian, line, plane) and ``evaluate`` (loss/accuracy at many points per pass,
on one device) feed ``grid`` (the resumable chunked computation); ``passes`` chooses points per pass and
batch size (today's CPU defaults, or from free GPU memory); ``record`` is the ``Surface`` and its
``surface.npz``; ``resume`` checks a partial file against a request; ``api`` goes from checkpoint files
to a saved surface.
"""
