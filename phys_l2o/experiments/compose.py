"""Sweep files that compose: shared files, defaults, variants based on variants.

``expand(path)`` reads a sweep file and resolves its composition keys into the plain data of a
sweep (what ``Sweep.from_dict`` checks): the same data as a file that writes everything out.

    # my-ablation.toml
    include = ["package:shared/quadratic.toml", "budgets.toml"]
    name = "my-ablation"
    reference = "hnn (paper)"

    [variant_defaults]
    unroll = 15
    meta_lr = 0.01

    [[variants]]
    name = "hnn (paper)"
    optimizer = { type = "hnn", out_mul = 0.001 }

    [[variants]]
    name = "no control"
    base = "hnn (paper)"
    optimizer.field = { type = "paper-field", control = false }

The keys, resolved in this order:

- ``include = ["FILE", ...]`` (top level): files merged under this one, in order; each may
  include others. A path is relative to the including file; ``package:PATH`` is a file of the
  package's ``phys_l2o/sweeps/`` (``package:paper-mnist.toml``, the paper's shared tasks in
  ``package:shared/``). Merging is *later wins*: a later include wins over an earlier one and
  the including file over all it includes. Tables merge key by key, at every depth, except
  that a table naming another ``type`` (another spec) replaces the table; everything else,
  arrays such as ``[[variants]]`` included, is replaced whole.
- ``[variant_defaults]``: keys every ``[[variants]]`` entry gets unless it sets them, merged
  the same way: ``optimizer = { out_mul = 0.001 }`` gives every optimizer spec that option
  unless it sets its own (with a ``type``: every spec of that type, and the variants without
  an ``optimizer``).
- ``[presets.NAME]``: named tables that a variant or a target starts from with
  ``preset = "NAME"`` (the variant defaults, then the preset, then its own keys). Shared files
  keep the paper's optimizers and targets here (``package:shared/quadratic.toml``,
  ``package:shared/mnist-presets.toml``), so that no sweep file copies them.
- ``base = "NAME"`` in a variant: the variant named ``NAME`` (resolved, defaults included),
  patched with this variant's keys; ``name`` stays its own. In a ``[targets.LABEL]`` table,
  ``base = "LABEL"`` does the same with another target. An entry has a ``base`` or a
  ``preset``, not both.
- ``{ type = "paper-field", ... }`` anywhere: the paper's field with the pieces given replaced,
  written out as the explicit ``port-hamiltonian`` spec (``phys_l2o.physics.PaperField``
  builds the same field), so the expanded data names each piece.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: where ``package:`` paths point: the package's sweep files.
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "sweeps"
#: the prefix of a path into ``PACKAGE_DIR``.
PACKAGE_PREFIX = "package:"


class ComposeError(ValueError):
    """A sweep file's composition keys cannot be resolved (the message names the file and,
    for an include, the chain of files that led to it)."""


def expand(path: str | os.PathLike) -> dict[str, Any]:
    """The sweep data of the file at ``path``, its includes, defaults and bases resolved.

    Raises:
        FileNotFoundError: no file at ``path``.
        ComposeError: an included file is missing, not valid TOML, or includes itself
            (through others); a composition key has the wrong type; a ``base`` names no
            variant (or target) or forms a cycle; a ``paper-field`` spec has an unknown option.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep file at {path}")
    data = _merged(path.resolve(), ())
    where = str(path)
    presets = data.pop("presets", {})
    if not isinstance(presets, Mapping) or not all(isinstance(p, Mapping)
                                                   for p in presets.values()):
        raise ComposeError(f"{where}: presets must be a table of tables ([presets.NAME])")
    defaults = data.pop("variant_defaults", {})
    if not isinstance(defaults, Mapping):
        raise ComposeError(f"{where}: variant_defaults must be a table ([variant_defaults])")
    if {"name", "base"} & set(defaults):
        raise ComposeError(f"{where}: [variant_defaults] cannot set a variant's name or base")
    variants = data.get("variants")
    if isinstance(variants, list):
        if not all(isinstance(v, Mapping) for v in variants):
            raise ComposeError(f"{where}: variants must be an array of tables ([[variants]])")
        names = [v.get("name", i) for i, v in enumerate(variants)]
        data["variants"] = [_with_name_first(_resolve(i, variants, names, defaults, presets,
                                                      f"{where}: variants"))
                            for i in range(len(variants))]
    targets = data.get("targets")
    if isinstance(targets, Mapping) and all(isinstance(t, Mapping) for t in targets.values()):
        labels, tables = list(targets), list(targets.values())
        data["targets"] = {label: _resolve(i, tables, labels, {}, presets, f"{where}: targets")
                           for i, label in enumerate(labels)}
    return _expand_paper_fields(data, where)


def merge(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged onto ``under``, later wins: tables merge key by key (a table that names
    another ``type`` replaces the table), anything else is replaced. Neither is changed."""
    out = dict(under)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping) and \
                old.get("type", value.get("type")) == value.get("type", old.get("type")):
            out[key] = merge(old, value)
        else:
            out[key] = _copy(value)
    return out


def include_path(name: str, including: Path) -> Path:
    """The file an ``include`` entry ``name`` of the file ``including`` names."""
    if name.startswith(PACKAGE_PREFIX):
        return (PACKAGE_DIR / name.removeprefix(PACKAGE_PREFIX)).resolve()
    return (including.parent / Path(name).expanduser()).resolve()


def _merged(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The file at ``path`` merged over its includes (recursively); ``chain`` is the files
    that included it, outermost first."""
    from ..config import load_toml

    shown = " -> ".join(str(p) for p in (*chain, path))
    if path in chain:
        raise ComposeError(f"include cycle: {shown}")
    if not path.is_file():
        raise ComposeError(f"no file at {path} (included by {shown.rsplit(' -> ', 1)[0]})")
    try:
        data = load_toml(path)
    except ValueError as error:
        raise ComposeError(f"{error} (include chain: {shown})") from None
    includes = data.pop("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ComposeError(f"{path}: include must be an array of file names, got {includes!r}")
    out: dict[str, Any] = {}
    for name in includes:
        out = merge(out, _merged(include_path(name, path), (*chain, path)))
    return merge(out, data)


def _resolve(index: int, entries: list[Mapping[str, Any]], labels: list[Any],
             defaults: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]], where: str,
             chain: tuple[int, ...] = ()) -> dict[str, Any]:
    """Entry ``index`` of ``entries`` (named ``labels[index]``) patched onto its ``base``, or
    onto the ``defaults`` and its ``preset`` when it has no base; ``chain`` is the entries
    based on it."""
    entry = dict(entries[index])
    base = entry.pop("base", None)
    preset = entry.pop("preset", None)
    here = f"{where}[{labels[index]!r}]"
    if base is not None and preset is not None:
        raise ComposeError(f"{here}: give a base or a preset, not both")
    if base is None:
        if preset is None:
            return merge(defaults, entry)
        if not isinstance(preset, str) or preset not in presets:
            raise ComposeError(f"{here}: preset {preset!r} names none of the presets "
                               f"{sorted(presets)}")
        return merge(merge(defaults, presets[preset]), entry)
    if not isinstance(base, str):
        raise ComposeError(f"{here}: base must be a name (a string), got {base!r}")
    if base not in labels:
        raise ComposeError(f"{here}: base {base!r} names none of {labels}")
    found = labels.index(base)
    if found == index or found in chain:
        raise ComposeError(f"{here}: base {base!r} leads back to {labels[index]!r}")
    return merge(_resolve(found, entries, labels, defaults, presets, where, (*chain, index)),
                 entry)


def _with_name_first(variant: dict[str, Any]) -> dict[str, Any]:
    return {"name": variant["name"], **variant} if "name" in variant else variant


def _expand_paper_fields(value: Any, where: str) -> Any:
    """``value`` with every ``paper-field`` spec written out as its ``port-hamiltonian``
    spec."""
    if isinstance(value, list):
        return [_expand_paper_fields(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    out = {k: _expand_paper_fields(v, f"{where}.{k}") for k, v in value.items()}
    if out.get("type") == "paper-field":
        from ..physics.paper_field import paper_field_spec

        try:
            return paper_field_spec(out, where)
        except ValueError as error:
            raise ComposeError(str(error)) from None
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
