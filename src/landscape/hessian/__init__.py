"""The Hessian engine: pure Hessian-vector products, the dataset operator, and estimators of its spectrum.

Floors, each importing only those above it in this list: ``hvp`` (products on one batch) ->
``operator`` (the count-weighted dataset Hessian as a linear operator) -> ``krylov`` (the shared
Lanczos recurrence) -> ``lanczos`` / ``power`` / ``trace`` / ``density`` (estimators) -> ``peers``
(PyHessian and hessian-eigenthings on the same inputs) -> ``analysis`` (the report of a model or
checkpoint, from a :class:`~landscape.settings.HessianSettings`). ``exact``, the dense oracle of the
tests, imports none of them. ``ggn`` (the generalised Gauss-Newton and empirical Fisher operators) sits
beside ``operator``; ``measures`` (flatness beyond eigenvalues) above the estimators and below
``analysis``; ``subsets`` (disjoint seeded data subsets, their settings and the mean +- standard error over
them) above ``trace`` and below ``analysis``; ``tracking`` (sharpness during training, a :mod:`fedtrain.observers`
observer) above ``analysis``.
"""
