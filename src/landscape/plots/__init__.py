"""Figures: Hessian spectra, loss surfaces and the paper's panels, drawn from saved results only."""
