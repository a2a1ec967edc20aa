"""landscape: Hessian spectra and loss surfaces of any checkpoint, and paper-style figures."""
