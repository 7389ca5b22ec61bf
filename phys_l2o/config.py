"""Config files: specs as TOML text, written and read with clear errors.

A config file holds specs (``phys_l2o.registry``) as TOML tables, such as the ``[optimizer]``
table that ``phys-l2o train --config`` reads; sweep files are TOML too
(``phys_l2o.experiments.compose`` reads them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from .registry import SpecError


def to_toml(spec: Mapping[str, Any], table: str | None = None) -> str:
    """``spec`` as TOML text (under ``[table]`` when given), for a config file.

    Raises:
        SpecError: a number is not finite (TOML could hold it, JSON could not).
    """
    import tomli_w

    _check_finite(spec, table or "spec")
    return tomli_w.dumps({table: dict(spec)} if table else dict(spec))


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where} = {value} is not a finite number")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML file (``tomllib``, or ``tomli`` on Python 3.10) with a clear error."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"no config file at {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path} is not valid TOML: {error}") from error
    except RecursionError:
        raise SpecError(f"{path} nests its tables or arrays too deeply to be read; a spec "
                        "needs a few levels") from None
