"""Federated curvature: per-client and pooled Hessians, client drift and the drift plane of a federated checkpoint."""
