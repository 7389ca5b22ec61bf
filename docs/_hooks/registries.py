"""MkDocs hook: list what the registry holds and what the package exports when the site is built.

A page that contains ``<!-- registry: KIND -->``, with ``KIND`` one of ``phys_l2o.KINDS``
(``potential``, ``readout``, ``flow``, ``optimizer``, ``baseline``, ...), gets in its place a
table of the names registered as that kind in the installed ``phys_l2o``: name, class, the
options of its specs (from the constructor's signature) and the first sentence of its
docstring. The documentation so never lists a name that does not exist or misses one that
does.

``<!-- exports: MODULE -->`` becomes a table of the names in ``MODULE.__all__``, each linked to
its entry in the API reference.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys

MARKER = re.compile(r"<!--\s*registry:\s*([a-z-]+)\s*-->")
EXPORTS = re.compile(r"<!--\s*exports:\s*([\w.]+)\s*-->")
#: the end of the first sentence: a full stop before a blank or the end, not in "e.g." / "i.e."
SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)")


def _summary(cls: type) -> str:
    """The first sentence of a class's docstring, one line, with RST roles reduced to code."""
    doc = inspect.getdoc(cls) or ""
    first = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    end = SENTENCE_END.search(first)
    if end:
        first = first[:end.end()]
    first = re.sub(r":[a-z]+:`~?\.?([^`]+)`", r"``\1``", first)
    return first.replace("|", "\\|") or "-"


def _public_path(cls: type) -> str:
    """``package.Class`` when the package exports the class, else ``module.Class``."""
    module = cls.__module__
    package = module.rsplit(".", 1)[0]
    if package != module:
        try:
            if getattr(importlib.import_module(package), cls.__name__, None) is cls:
                return f"{package}.{cls.__name__}"
        except ImportError:
            pass
    return f"{module}.{cls.__qualname__}"


def _options(cls: type) -> str:
    """The options a spec of ``cls`` may give: its constructor's arguments with their defaults,
    less ``width`` (the building optimizer's) and the class's context arguments."""
    skip = {"width", *getattr(cls, "_spec_context", ())}
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # less `self`
    options = []
    for p in params:
        if p.name in skip or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            torch_class = getattr(cls, "torch_class", None)
            options.append(f"any `torch.optim.{torch_class.__name__}` argument" if torch_class
                           else f"`**{p.name}`")
        elif p.default is p.empty:
            options.append(f"`{p.name}`")
        else:
            options.append(f"`{p.name}={p.default!r}`")
    return ", ".join(options) or "-"


def _defaults(cls: type) -> str:
    """A baseline's fixed ``torch.optim`` arguments (its class attribute ``defaults``)."""
    defaults = getattr(cls, "defaults", None) or {}
    return ", ".join(f"`{k}={v!r}`" for k, v in defaults.items()) or "-"


def _table(kind: str) -> str:
    from phys_l2o import KINDS, registered

    if kind not in KINDS:
        raise ValueError(f"unknown registry {kind!r} in a `<!-- registry: ... -->` marker; "
                         f"choose a kind from {sorted(KINDS)}")
    baseline = kind == "baseline"
    header = ["name", "class", "options"] + (["fixed arguments"] if baseline else []) + \
        ["what it is"]
    rows = []
    for name, cls in registered(kind).items():
        row = [f"`{name}`", f"`{_public_path(cls)}`", _options(cls)]
        if baseline:
            row.append(_defaults(cls))
        rows.append([*row, _summary(cls)])
    return _markdown(header, rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _defined_in(name: str, obj: object, package: str) -> str | None:
    """The module of ``package`` that defines ``obj`` (the deepest one that holds it)."""
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return obj.__module__
    holders = [module for module_name, module in sys.modules.items()
               if (module_name == package or module_name.startswith(package + "."))
               and getattr(module, name, None) is obj]
    return max((m.__name__ for m in holders), key=lambda n: n.count("."), default=None)


def _comment_doc(module_name: str, name: str) -> str:
    """The ``#:`` comment above ``name = ...`` in a module's source, one line."""
    try:
        source = inspect.getsource(sys.modules[module_name])
    except (KeyError, OSError, TypeError):
        return ""
    match = re.search(rf"((?:^#:.*\n)+)^{re.escape(name)}\b\s*(?::[^=\n]*)?=", source, re.M)
    if not match:
        return ""
    text = " ".join(line[2:].strip() for line in match.group(1).splitlines())
    return text[:1].upper() + text[1:]


def _exports(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
        names = module.__all__
    except (ImportError, AttributeError):
        raise ValueError(f"unknown module {module_name!r} (or one without __all__) in an "
                         "`<!-- exports: ... -->` marker") from None
    package = module_name.split(".", 1)[0]
    rows = []
    for name in names:
        obj = getattr(module, name)
        home = _defined_in(name, obj, package)
        if inspect.isclass(obj):
            what = ("protocol" if getattr(obj, "_is_protocol", False) else
                    "exception" if issubclass(obj, BaseException) else "class")
            target = f"{obj.__module__}.{obj.__qualname__}"
            summary = _summary(obj)
        elif inspect.isroutine(obj):
            what, target, summary = "function", f"{obj.__module__}.{obj.__qualname__}", \
                _summary(obj)
        else:
            what = f"`{type(obj).__name__}`"
            target = f"{home}.{name}" if home and home != module_name else None
            summary = _comment_doc(home, name) if home else ""
            if name == "__version__":
                summary = f"The installed version of {package} (`{obj}` here)."
        link = f"[`{name}`][{target}]" if target else f"`{name}`"
        where = f"`{home}`" if home and home != module_name else "-"
        rows.append([link, what, where, summary.replace("|", "\\|") or "-"])
    return _markdown(["name", "what", "defined in", "summary"], rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = MARKER.sub(lambda match: _table(match.group(1)), markdown)
    return EXPORTS.sub(lambda match: _exports(match.group(1)), markdown)
