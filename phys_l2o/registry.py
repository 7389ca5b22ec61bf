"""One registry for every kind of composable thing, and the specs that build and describe them.

A *spec* is a plain dict of JSON/TOML types that names a registered class and its options,
with nested specs for its sub-modules:

    {"type": "hnn", "preprocessing": True,
     "field": {"type": "port-hamiltonian", "potential": {"type": "scalar-potential-mlp"}}}

``build(spec)`` makes the object, ``spec_of(obj)`` gives its spec back, and
``build(spec_of(obj))`` is an equivalent object (same class, options and weight shapes; the
weights themselves travel in a ``state_dict``). A piece that is left out is omitted from the
spec (or written ``false``: TOML has no null). A bare name stands for a spec without options
(``"rk4"`` is ``{"type": "rk4"}``).

Registering a class is one decorator; its constructor's arguments become its spec:

    @register("dissipation", "my-dissipation")
    class MyDissipation(nn.Module):
        def __init__(self, width: int, strength: float = 1.0) -> None: ...

A spec cannot lie: once constructed, a registered object's options are fixed. Assigning one
(``opt.out_mul = 0.5``) raises ``AttributeError``: build a changed object instead,
``build({**spec_of(opt), "out_mul": 0.5})``. Only a sub-module piece may be replaced, by a
registered module of the same kind (``hnn.field = PortHamiltonianField(...)``); the spec
follows it. A registered piece held under another name than its option's (``hnn.preprocess``)
cannot be replaced at all. ``copy_with`` changes options on a cheap copy of a plain object.

Names are unique across kinds, so a spec's ``type`` alone says what it is. Registering a taken
name raises ``ValueError``, unless the new class has the old one's module, qualified name and
kind: then it replaces the old one quietly (a notebook cell or a module that defines and
registers it has run again). The kinds:

| kind | holds |
|---|---|
| ``inverse-inertia`` | ``M^{-1}``: maps a force to an acceleration |
| ``potential`` | ``V(q)``: gives ``dV/dq`` |
| ``dissipation`` | ``D``: maps ``[dV/dq, q_dot]`` to ``[D_q, D_p]`` |
| ``control`` | ``G(q)``: an external force |
| ``preprocessing`` | the gradient features a learned optimizer sees |
| ``field`` | a vector field composed from the pieces above |
| ``readout`` | turns a field and a gradient-state ``(q, q_dot)`` into an update |
| ``flow`` | advances ``(q, q_dot)`` over a horizon (an ODE solver or a symplectic scheme) |
| ``optimizer`` | a learned optimizer (meta-trainable weights) |
| ``baseline`` | a hand-designed optimizer (``torch.optim``) |
| ``task`` | a family of problems, sampled as a batch |
| ``estimator`` | how a meta-training trajectory becomes meta-updates (evolution strategies) |
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Spec = dict[str, Any]

#: every kind, with what its entries are (for error messages and the docs).
KINDS: dict[str, str] = {
    "inverse-inertia": "inverse inertia",
    "potential": "potential",
    "dissipation": "dissipation",
    "control": "control",
    "preprocessing": "gradient preprocessing",
    "field": "vector field",
    "readout": "read-out",
    "flow": "flow map",
    "optimizer": "learned optimizer",
    "baseline": "baseline optimizer",
    "task": "task",
    "estimator": "meta-gradient estimator",
}

_ENTRIES: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
_KIND_OF: dict[str, str] = {}

C = TypeVar("C", bound=type)
T = TypeVar("T")


class SpecError(ValueError):
    """A spec names no registered type, has an option its class does not take, or cannot be
    written as a spec."""


def register(kind: str, name: str, *, context: tuple[str, ...] = ()) -> Callable[[C], C]:
    """Class decorator: register the class under ``name`` as a ``kind`` and make it spec-able.

    The constructor's arguments (with their defaults filled in) are recorded on every
    instance; ``spec_of`` turns them into the spec. Arguments that are objects of registered
    classes become nested specs. The class's ``__setattr__`` gets a guard: after the outermost
    constructor, a recorded argument (``context`` aside) cannot be assigned (see the module).

    A taken name may be registered again only by the class that holds it (nothing changes)
    or by a new class of the same module, qualified name and kind, which replaces the old one
    quietly: a notebook cell or a reloaded module has defined and registered it again. Objects
    built before keep the old class; their specs build the new one.

    Args:
        kind: one of ``KINDS`` (``"dissipation"``, ``"readout"``, ``"optimizer"``, ...).
        name: the ``type`` of its specs, unique across all kinds.
        context: constructor arguments that describe where the object runs, not what it is
            (a data folder, a device): left out of its spec and handed to ``build`` instead.

    Raises:
        ValueError: an unknown kind or an empty name; or (when the class is decorated) the
            name is taken by another class (another module or qualified name) or as another
            kind, or the class is registered under another name already.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {sorted(KINDS)}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a registered name must be a non-empty string, got {name!r}")

    def add(cls: C) -> C:
        _check_name_free(kind, name, cls)
        if cls.__dict__.get("_spec_type") is None:  # else its constructor records already
            _record_arguments(cls)
        cls._spec_type = name  # type: ignore[attr-defined]
        cls._spec_kind = kind  # type: ignore[attr-defined]
        cls._spec_context = tuple(context)  # type: ignore[attr-defined]
        _ENTRIES[kind][name] = cls  # a replaced class keeps its place in the order
        _KIND_OF[name] = kind
        return cls

    return add


def _check_name_free(kind: str, name: str, cls: type) -> None:
    """Refuse to register ``cls`` as ``name`` (a ``kind``) unless the name is free, or held by
    ``cls`` or by a class of the same kind, module and qualified name (which ``cls`` then
    replaces).

    Raises:
        ValueError: ``name`` is held by another class or as another kind, or ``cls`` is
            registered under another name (the message says what to do instead).
    """
    own = cls.__dict__.get("_spec_type")
    if own is not None and own != name:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} is registered as {own!r} "
                         f"already and a class has one name; to register it as {name!r} too, "
                         "register a subclass of it")
    if name not in _KIND_OF:
        return
    other = _ENTRIES[_KIND_OF[name]][name]
    same_class = (other.__module__, other.__qualname__) == (cls.__module__, cls.__qualname__)
    if same_class and _KIND_OF[name] == kind:
        return
    hint = (f"; a name keeps its kind: pick another name, or restart Python to register it as "
            f"a {KINDS[kind]}" if same_class else "; pick another name")
    raise ValueError(f"the name {name!r} is already registered (a {_KIND_OF[name]}: "
                     f"{other.__module__}.{other.__qualname__}){hint}")


def _record_arguments(cls: type) -> None:
    """Wrap the constructor of ``cls`` so that it records its arguments (``_spec_arguments``)
    and freezes them when the outermost constructor ends, and guard its ``__setattr__``."""
    signature = inspect.signature(cls.__init__)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if type(self) is cls:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{cls.__qualname__}: {error}") from None
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))  # self
            for pname, param in signature.parameters.items():
                if param.kind is param.VAR_KEYWORD:
                    arguments.update(arguments.pop(pname, {}))
                elif param.kind is param.VAR_POSITIONAL and arguments.pop(pname, ()):
                    raise TypeError(f"{cls.__qualname__} takes no extra positional "
                                    "arguments in a spec")
            object.__setattr__(self, "_spec_arguments", arguments)
        init(self, *args, **kwargs)
        if type(self) is cls:  # the outermost constructor has finished
            object.__setattr__(self, "_spec_frozen", True)

    cls.__init__ = __init__  # type: ignore[method-assign]
    if not getattr(cls.__setattr__, "_spec_guard", False):
        cls.__setattr__ = _guarded_setattr(cls.__setattr__)  # type: ignore[method-assign]


def _guarded_setattr(setattr_: Callable[..., None]) -> Callable[..., None]:
    """``setattr_`` (the class's own) behind the guard that keeps a spec true: a constructed
    object's spec'd arguments, and its registered sub-modules, change only as
    ``_check_assignment`` allows."""

    def __setattr__(self: Any, name: str, value: Any) -> None:
        state = self.__dict__
        if state.get("_spec_frozen") and (
                (name in state["_spec_arguments"] and name not in type(self)._spec_context)
                or is_registered(state.get("_modules", {}).get(name))):
            _check_assignment(self, name, value)
            setattr_(self, name, value)  # a piece replaced: the spec follows it
            object.__setattr__(self, "_spec_arguments", {**self._spec_arguments, name: value})
            object.__setattr__(self, "_spec_changed", True)
        else:
            setattr_(self, name, value)

    __setattr__._spec_guard = True  # type: ignore[attr-defined]
    return __setattr__


def _check_assignment(obj: Any, name: str, value: Any) -> None:
    """Refuse (``AttributeError``, saying what to do instead) to assign a spec'd argument or
    a registered sub-module of a constructed object, except a sub-module named after its
    argument that becomes a registered module of the same kind."""
    cls = type(obj)
    variable = {"optimizer": "opt", "baseline": "opt", "task": "task"}.get(cls._spec_kind,
                                                                           "piece")
    shown = repr(value) if isinstance(value, (bool, int, float, str)) else "..."
    context = "".join(f", {key}=..." for key in cls._spec_context)
    rebuild = f"phys_l2o.build({{**phys_l2o.spec_of({variable}), {name!r}: {shown}}}{context})"
    pieces = obj.__dict__.get("_modules", {})
    current = pieces.get(name)
    if name not in obj._spec_arguments:
        raise AttributeError(f"{cls.__qualname__}.{name} holds a piece that its spec names "
                             "otherwise, so a new one would be lost on saving; build a changed "
                             "one from its spec (phys_l2o.spec_of, phys_l2o.build)")
    if name not in pieces:
        raise AttributeError(f"{cls.__qualname__}.{name} is part of its spec and cannot change "
                             f"after construction; build a changed one: {rebuild}")
    if not (is_registered(value) and hasattr(value, "_modules")):
        what = f"{type(value).__module__}.{type(value).__qualname__}"
        raise AttributeError(f"{cls.__qualname__}.{name} is part of its spec: it can be replaced "
                             f"only by a module of a registered class, not by a {what} (it has "
                             f"no spec and would be lost on saving); register its class, or "
                             f"build a changed one: {rebuild}")
    if is_registered(current) and current._spec_kind != value._spec_kind:
        raise AttributeError(f"{cls.__qualname__}.{name} holds a {KINDS[current._spec_kind]}, "
                             f"not a {KINDS[value._spec_kind]} ({type(value).__qualname__})")


#: the modules that register the built-in kinds (imported on the first look-up).
BUILTIN_MODULES = ("phys_l2o.physics", "phys_l2o.integrators", "phys_l2o.optimizers",
                   "phys_l2o.tasks", "phys_l2o.meta.es")


def _load_builtins() -> None:
    """Import the modules that register the built-in classes (once; cheap afterwards)."""
    for module in BUILTIN_MODULES:
        if module not in sys.modules:
            importlib.import_module(module)


def registered(kind: str) -> dict[str, type]:
    """The classes registered as ``kind``, by name, in the order they were registered."""
    _load_builtins()
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {sorted(KINDS)}")
    return dict(_ENTRIES[kind])


def lookup(name: str, kind: str | None = None) -> type:
    """The class registered as ``name`` (and, if given, as a ``kind``).

    Raises:
        SpecError: the name is not registered (the message lists the names of the kind and
            says how to register one), or is registered as another kind.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {sorted(KINDS)}")
    _load_builtins()
    found = _KIND_OF.get(name)
    if found is None:
        where = f"a {KINDS[kind]}" if kind else "any kind"
        choices = sorted(_ENTRIES[kind]) if kind else sorted(_KIND_OF)
        raise SpecError(
            f"{name!r} is not registered as {where}; choose from {choices}, or register your "
            f"class with @phys_l2o.register({kind or 'KIND'!r}, {name!r}) and import the module "
            "that defines it before building or loading")
    if kind is not None and found != kind:
        raise SpecError(f"{name!r} is a {KINDS[found]}, not a {KINDS[kind]}; choose a "
                        f"{KINDS[kind]} from {sorted(_ENTRIES[kind])}")
    return _ENTRIES[found][name]


def as_spec(value: str | Mapping[str, Any]) -> Spec:
    """A spec from a bare name or a mapping with a ``type``."""
    if isinstance(value, str):
        return {"type": value}
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return dict(value)
    raise SpecError(f"a spec is a registered name or a mapping with a 'type' (a string), got "
                    f"{value!r}")


def build(spec: str | Mapping[str, Any], kind: str | None = None, **context: Any) -> Any:
    """Build the object a spec describes.

    Args:
        spec: ``{"type": name, **options}`` or a bare name.
        kind: the kind the object must be (refuses a spec of another kind).
        **context: arguments handed to the constructor when it takes them and the spec does
            not give them, such as a piece's feature ``width`` (a spec that gives another
            value is refused) or a task's ``data_root`` and ``device``.

    Raises:
        SpecError: an unregistered type, an option the class does not take, or a spec whose
            value disagrees with the context.
    """
    spec = as_spec(spec)
    name = spec.pop("type")
    cls = lookup(name, kind)
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    named = {n for n, p in parameters.items()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}
    unknown = sorted(set(spec) - named) if not takes_any else []
    if unknown:
        raise SpecError(f"{name!r} ({cls.__qualname__}) takes no option {unknown}; its options "
                        f"are {sorted(named - set(cls._spec_context))}")
    for key, value in context.items():
        if key not in named or value is None:
            continue
        if key in spec and spec[key] != value:
            raise SpecError(f"the {KINDS[_KIND_OF[name]]} {name!r} is specified with "
                            f"{key}={spec[key]!r}, but it is built where {key}={value!r} is "
                            f"needed; remove {key!r} from its spec or change it to {value!r}")
        spec[key] = value
    for key, value in spec.items():
        # TOML has no null: a piece left out may be written `false`
        default = parameters[key].default if key in parameters else None
        if value is False and default is None:
            spec[key] = None
    try:
        return cls(**spec)
    except TypeError as error:
        raise SpecError(f"bad options for {name!r} ({cls.__qualname__}): {error}") from error
    except RuntimeError as error:  # torch refusing a size, e.g. a negative width
        raise SpecError(f"{name!r} ({cls.__qualname__}) cannot be built with the options "
                        f"{spec}: {str(error).splitlines()[0]}") from error


def build_part(value: Any, kind: str, **context: Any) -> Any:
    """A constructor argument that may be an object, a spec, a name, or left out.

    ``None`` and ``False`` give ``None``; a spec or a name is built as a ``kind`` with the
    ``context``; anything else is returned as it is.
    """
    if value is None or value is False:
        return None
    if isinstance(value, (str, Mapping)):
        return build(value, kind, **context)
    return value


def is_registered(obj: Any) -> bool:
    """Whether ``obj`` is an instance built by a registered class (so it has a spec)."""
    return "_spec_arguments" in getattr(obj, "__dict__", {}) and \
        type(obj).__dict__.get("_spec_type") is not None


def copy_with(obj: T, **options: Any) -> T:
    """A shallow copy of ``obj`` with spec'd options changed in its attributes and spec alike,
    without running its constructor: for a class that stores each option as given and
    derives nothing from it, or updates that on the copy (``MNISTTask.with_pool`` keeps the
    loaded digits so). Modules are refused (their copies would share sub-modules); otherwise
    build a changed one, ``build({**spec_of(obj), **options})``.

    Raises:
        SpecError: ``obj`` is not registered, or an option is not one of its spec's.
        TypeError: ``obj`` is a module.
    """
    if not is_registered(obj):
        raise SpecError(f"{type(obj).__qualname__} is not registered, so it has no spec")
    if hasattr(obj, "_modules"):
        raise TypeError(f"{type(obj).__qualname__} is a module: build a changed one")
    unknown = sorted((set(options) - set(obj._spec_arguments))
                     | (set(options) & set(type(obj)._spec_context)))
    if unknown:
        raise SpecError(f"{type(obj).__qualname__} has no spec'd option {unknown}")
    other = copy.copy(obj)
    for key, value in options.items():
        object.__setattr__(other, key, value)
    object.__setattr__(other, "_spec_arguments", {**obj._spec_arguments, **options})
    return other


def spec_of(obj: Any) -> Spec:
    """The spec that rebuilds ``obj``: its registered type and its constructor's arguments.

    Arguments a class lists in ``spec_quiet`` are left out while at their default (switches
    such as the reference protocol's, named only when on).

    Raises:
        SpecError: ``obj``'s class is not registered, or an argument is not a JSON/TOML
            value, a registered object, or a mapping or list of those.
    """
    if not is_registered(obj):
        cls = type(obj)
        raise SpecError(f"{cls.__module__}.{cls.__qualname__} is not registered, so it has no "
                        "spec: decorate the class with @phys_l2o.register(KIND, NAME) (see "
                        "phys_l2o.registry.KINDS for the kinds)")
    cls = type(obj)
    spec: Spec = {"type": cls._spec_type}
    parameters = inspect.signature(cls.__init__).parameters
    submodules = obj.__dict__.get("_modules", {})
    quiet = getattr(cls, "spec_quiet", ())
    for key, value in obj._spec_arguments.items():
        if key in cls._spec_context:
            continue
        if key in quiet and key in parameters and value == parameters[key].default:
            continue  # a switch named only when on (specs written before it stay the same)
        current = submodules.get(key)
        if is_registered(current) and current is not value and (
                is_registered(value) or _changed_within(current)):
            value = current  # a piece replaced after construction, or changed inside
        if value is None:
            default = parameters[key].default if key in parameters else None
            if default is not None and default is not inspect.Parameter.empty:
                spec[key] = False
            continue
        spec[key] = plain_data(value, f"{cls._spec_type}.{key}")
    return spec


def _changed_within(module: Any) -> bool:
    """Whether a piece of ``module`` (a registered ``nn.Module``), or itself, was replaced."""
    return any(m.__dict__.get("_spec_changed") for m in module.modules())


def plain_data(value: Any, where: str, *, keep_none: bool = False) -> Any:
    """``value`` as JSON/TOML data: numbers, strings, booleans, lists and string-keyed
    mappings. Paths become strings, numpy and 0-d torch scalars numbers, tuples lists, and
    objects of registered classes their specs. ``None`` entries of a mapping are dropped
    unless ``keep_none``.

    Raises:
        SpecError: a value of another type (the message says where it is).
    """
    if value is None and keep_none:
        return None
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if is_registered(value):
        return spec_of(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(f"{where} has a key that is not a string: {k!r}")
            if v is not None or keep_none:
                out[k] = plain_data(v, f"{where}.{k}", keep_none=keep_none)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_data(v, f"{where}[{i}]", keep_none=keep_none)
                for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy and 0-d torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return plain_data(item(), where, keep_none=keep_none)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        cls = type(value)
        raise SpecError(f"{where} is a {cls.__module__}.{cls.__qualname__}, which is not "
                        "registered, so it has no spec: decorate its class with "
                        "@phys_l2o.register(KIND, NAME) (see phys_l2o.registry.KINDS)")
    raise SpecError(f"{where} = {value!r} cannot be written as plain data: use numbers, "
                    "strings, booleans, lists, mappings and objects of registered classes")
