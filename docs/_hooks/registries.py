"""MkDocs hook: list what the registries hold when the site is built.

A page that contains ``<!-- registry: integrators -->`` (or ``flows``, ``learned-optimizers``,
``baselines``) gets a table of the names registered in the installed ``phys_l2o`` in its place,
so the documentation never lists a backend that does not exist or misses one that does.
"""

from __future__ import annotations

import inspect
import re

MARKER = re.compile(r"<!--\s*registry:\s*([a-z-]+)\s*-->")


def _summary(cls: type) -> str:
    """The first sentence of a class's docstring, one line, with RST roles reduced to code."""
    doc = inspect.getdoc(cls) or ""
    first = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    first = re.sub(r":[a-z]+:`~?\.?([^`]+)`", r"``\1``", first)
    return first.replace("|", "\\|")


def _options(cls: type, skip: tuple[str, ...] = ("self", "width")) -> str:
    """The keyword options a registered class takes, from its constructor's signature."""
    params = inspect.signature(cls.__init__).parameters.values()
    names = [p.name for p in params
             if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    flow_name = getattr(cls, "flow_name", None)
    if any(p.kind is p.VAR_KEYWORD for p in params) and flow_name:
        # a read-out that passes its options on to the flow map it integrates with
        from phys_l2o.integrators import FLOWS

        names += [n for n in _option_names(FLOWS[flow_name]) if n not in names]
    return ", ".join(f"`{n}`" for n in names) or "-"


def _option_names(cls: type) -> list[str]:
    return [n.strip("`") for n in _options(cls).split(", ") if n != "-"]


def _table(kind: str) -> str:
    header = ("name", "class", "options", "what it does")
    if kind == "integrators":
        from phys_l2o.integrators import INTEGRATORS as registry
    elif kind == "flows":
        from phys_l2o.integrators import FLOWS as registry
    elif kind == "learned-optimizers":
        from phys_l2o.optimizers import LEARNED_OPTIMIZERS as registry
    elif kind == "baselines":
        from phys_l2o.optimizers import BASELINES

        header = ("name", "class", "fixed arguments")
        rows = [(f"`{name}`", f"`torch.optim.{cls.__name__}`",
                 ", ".join(f"`{k}={v!r}`" for k, v in defaults.items()) or "-")
                for name, (cls, defaults) in BASELINES.items()]
        return _markdown(header, rows)
    else:
        raise ValueError(f"unknown registry {kind!r} in a `<!-- registry: ... -->` marker")
    rows = [(f"`{name}`", f"`{cls.__qualname__}`<br>in `{cls.__module__.rsplit('.', 1)[-1]}`",
             _options(cls), _summary(cls))
            for name, cls in registry.items()]
    return _markdown(header, rows)


def _markdown(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda match: _table(match.group(1)), markdown)
