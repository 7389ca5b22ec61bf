"""Reproducible random streams: one master seed, an independent generator per purpose.

Problems are drawn on the CPU and then moved, so the same seed gives the same problems on
every device.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named ``stream`` (e.g. ``"test"``) of the master ``seed``.

    Raises:
        ValueError: ``seed`` is not an integer >= 0.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a seed must be an integer >= 0, got {seed!r}")
    state = np.random.SeedSequence([int(seed), zlib.crc32(stream.encode())]).generate_state(2)
    return int((int(state[0]) << 31 ^ int(state[1])) & (2**63 - 1))


def make_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for the named stream of ``seed``."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU. Errors clearly on unavailable CUDA."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available here; "
                         "use --device cpu (or auto)")
    return device
