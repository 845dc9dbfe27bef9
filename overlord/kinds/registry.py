"""The registry of action kinds: every kind module of ``overlord.kinds``, loaded on first
use, checked, and looked up by ``ActionKind``.

A kind module that is missing or incomplete is refused with one line naming the module
and what it lacks (``KindError``), never a ``KeyError`` deep in a plan.
"""

from __future__ import annotations

import importlib
import threading

from overlord.errors import KindError
from overlord.kinds import ActionKind, kind_modules
from overlord.kinds.base import Action, Form, Kind, Traits

_lock = threading.RLock()  # re-entered by the loading thread only (then refused below)
_local = threading.local()
_loaded: dict[ActionKind, Kind] | None = None


def problems(module: str, kind: object) -> list[str]:
    """What the ``KIND`` of ``overlord/kinds/<module>.py`` lacks (empty: it is complete)."""
    where = f"overlord/kinds/{module}.py"
    if not isinstance(kind, Kind):
        return [f"{where} declares no KIND (a overlord.kinds.base.Kind)"]
    out: list[str] = []
    expected = module.replace("_", "-")
    if kind.name != expected:
        out.append(f"{where}: KIND.name is {str(kind.name)!r}, the module says {expected!r}")
    if not isinstance(kind.traits, Traits):
        out.append(f"{where}: KIND.traits is not a Traits")
    if not kind.estimate > 0:
        out.append(f"{where}: KIND.estimate must be a positive number of seconds")
    if not (isinstance(kind.action, Action) or callable(kind.action)):
        out.append(f"{where}: KIND.action is neither an Action nor a function returning one")
    if kind.forms:
        if not all(isinstance(form, Form) for form in kind.forms):
            out.append(f"{where}: KIND.forms holds something that is not a Form")
        if not kind.help:
            out.append(f"{where}: KIND.help is empty: say how people write its forms")
        if kind.add_steps is None and kind.plan is None:
            out.append(f"{where}: KIND has forms but neither add_steps nor plan")
    elif not kind.planned_by:
        out.append(f"{where}: KIND has no forms and no planned_by (what makes its steps?)")
    if kind.always_approved and kind.pre_approvable:
        out.append(f"{where}: an always-approved kind cannot also be pre-approvable")
    return out


def kinds() -> dict[ActionKind, Kind]:
    """Every kind, by ``ActionKind``, in module order; ``KindError`` when one is incomplete.
    Loaded once per process; threads asking while one loads wait for it."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = load()
    return _loaded


def load() -> dict[ActionKind, Kind]:
    """Load and check every kind module (uncached: ``kinds`` keeps the result)."""
    if getattr(_local, "loading", False):
        raise KindError(
            "a kind module uses the kind registry while it is being loaded",
            "a kind module must not import overlord.core.parser or anything that reads the registry",
        )
    _local.loading = True
    try:
        out: dict[ActionKind, Kind] = {}
        for module in kind_modules():
            try:
                loaded = importlib.import_module(f"overlord.kinds.{module}")
            except KindError:
                raise
            except Exception as exc:
                raise KindError(
                    f"overlord/kinds/{module}.py cannot be loaded: {type(exc).__name__}: {exc}"
                ) from exc
            kind = getattr(loaded, "KIND", None)
            missing = problems(module, kind)
            if missing:
                raise KindError(
                    "; ".join(missing), "tests/integration/test_kinds.py checks every kind"
                )
            assert isinstance(kind, Kind)
            out[ActionKind(kind.name)] = kind
        return out
    finally:
        _local.loading = False


def kind(name: ActionKind | str) -> Kind:
    """The kind named ``name``."""
    try:
        return kinds()[ActionKind(name)]
    except ValueError:
        known = ", ".join(k.value for k in ActionKind)
        raise KindError(f"unknown action kind {str(name)!r}", f"known: {known}") from None


def traits(name: ActionKind | str) -> Traits:
    return kind(name).traits


def action(name: ActionKind | str) -> Action:
    """The prepare/run/done/undo of a step of kind ``name``."""
    return kind(name).load_action()


def by_order() -> list[Kind]:
    """The kinds in the order their forms are tried and shown (``Kind.order``, then name)."""
    return sorted(kinds().values(), key=lambda k: (k.order, k.name))


def pre_approvable() -> tuple[ActionKind, ...]:
    """The kinds ``autonomy.pre_approved`` may name."""
    return tuple(name for name, k in kinds().items() if k.pre_approvable)
