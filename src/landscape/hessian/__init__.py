"""The Hessian engine: pure Hessian-vector products, the dataset operator, and estimators of its spectrum.

Floors, each importing only those above it in this list: ``hvp`` (products on one batch) ->
``operator`` (the count-weighted dataset Hessian as a linear operator) -> ``krylov`` (the Lanczos
recurrence) -> ``lanczos`` / ``power`` / ``trace`` / ``density`` (estimators) -> ``analysis`` (the
report of a model or checkpoint). ``exact`` is the independent dense oracle; ``peers`` runs PyHessian
and hessian-eigenthings on the same inputs.
"""
