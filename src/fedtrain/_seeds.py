"""Derived seeds: one independent, stateless seed per (run seed, purpose, round, client)."""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "derived_generator"]


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed that depends only on its arguments (BLAKE2b of their decimal text).

    Deriving every generator from ``(seed, purpose, round, client)`` instead of advancing a shared
    one means that no random state has to be saved to resume a run, and that adding a client or an
    evaluation never shifts another component's random stream.
    """
    text = ":".join([str(int(seed)), purpose, *(str(int(k)) for k in keys)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def derived_generator(seed: int, purpose: str, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *keys))
