"""Checks of constructor arguments, with messages that name the argument and what it must be.

A spec read from a config file may hold a string where a number belongs, or ``true`` where a
count belongs (``bool`` is an ``int`` in Python): these are refused here, when the object is
built, not as a raw traceback in its first step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any


def positive_number(name: str, value: Any, *, zero: bool = False) -> float:
    """``value`` as a float, refused unless a finite number ``> 0`` (``>= 0`` with ``zero``)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value >= 0 if zero else value > 0))
    if not ok:
        what = "a finite number >= 0" if zero else "a positive finite number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any, *, zero: bool = False) -> int:
    """``value``, refused unless an integer ``>= 1`` (``>= 0`` with ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        what = "an integer >= 0" if zero else "a positive integer"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_output_dir(path: Path, what: str | None = None) -> None:
    """``path`` is a folder that can be written, or can be made in one (it is made when the
    first result is written, so a command that fails leaves no empty folder behind).

    Raises:
        ValueError: ``path`` or a folder above it is a file, or the nearest existing folder is
            not writable (``what`` names the option, default ``--out PATH``).
    """
    what = what or f"--out {path}"
    for existing in (path, *path.parents):
        if existing.exists():
            break
    if not existing.is_dir():
        raise ValueError(f"{what}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: {existing} is not writable; choose another path")
