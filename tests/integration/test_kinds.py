"""Every action kind is complete (issue 16 part 1): one module per kind in
``overlord/kinds/``, collected by ``overlord.kinds.registry``, each with traits, an
expected duration, an action, a Celery task, and parser forms or a reason it has none.
A kind missing something is refused with one line naming its module."""

from __future__ import annotations

import ast
import importlib.util
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from celery import Celery

from overlord.core import config as config_module
from overlord.core.parser import SUPPORTED_FORMS
from overlord.core.scope import ActionScope, Touch
from overlord.errors import KindError, OverlordError
from overlord.kinds import MACHINERY, ActionKind, kind_modules
from overlord.kinds import registry as kind_registry
from overlord.kinds.base import Action, Kind, Traits, empty, never, nothing
from overlord.tasks.definitions import register
from overlord.tasks.names import step_task_name
from tests.dispatch_helpers import cli
from tests.kit import Workspace

ROOT = Path(__file__).resolve().parents[2]
KINDS_DIR = ROOT / "overlord" / "kinds"


def test_every_action_kind_has_a_complete_module() -> None:
    assert [k.value for k in ActionKind] == [m.replace("_", "-") for m in kind_modules()]
    registered = kind_registry.kinds()
    assert list(registered) == list(ActionKind)
    for name in kind_modules():
        module = importlib.import_module(f"overlord.kinds.{name}")
        assert kind_registry.problems(name, getattr(module, "KIND", None)) == []
        kind = registered[ActionKind(name.replace("_", "-"))]
        assert isinstance(kind.traits, Traits), name
        assert kind.estimate > 0, name
        assert isinstance(kind.load_action(), Action), name
        assert kind.forms or kind.planned_by, f"{name}: no forms and no reason"


def test_every_kind_has_a_celery_task() -> None:
    app = Celery("kinds-test", set_as_current=False)
    register(app)
    missing = [k.value for k in kind_registry.kinds() if step_task_name(k) not in app.tasks]
    assert not missing, f"no Celery task for {missing}"


def test_every_kind_with_forms_is_in_the_help_and_the_parser() -> None:
    for kind in kind_registry.kinds().values():
        for text in kind.help:
            assert text in SUPPORTED_FORMS, (kind.name, text)


def test_dispatch_help_lists_every_form(workspace: Workspace) -> None:
    res = cli(workspace.config_path, "dispatch", "--help")
    assert res.code == 0, res.text
    shown = res.out.split("Instructions:", 1)[1].splitlines()
    assert [line.strip() for line in shown if line.strip()][1:] == SUPPORTED_FORMS


def test_planner_made_kinds_say_what_makes_them() -> None:
    made = {k.name.value: k.planned_by for k in kind_registry.kinds().values() if not k.forms}
    assert set(made) == {"bump-version", "noop", "push"}
    assert all(made.values())


def test_the_modules_of_the_package_are_kinds_or_listed_machinery() -> None:
    files = {p.stem for p in KINDS_DIR.glob("*.py")} - {"__init__"}
    assert files == set(kind_modules()) | MACHINERY


def test_the_type_checking_view_names_real_kinds() -> None:
    """``ActionKind`` as mypy sees it (the kinds the code names by attribute) holds only
    kinds that have a module."""
    tree = ast.parse((KINDS_DIR / "__init__.py").read_text())
    stub = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "ActionKind")
    for node in stub.body:
        if isinstance(node, ast.Assign):
            name = node.targets[0]
            assert isinstance(name, ast.Name) and isinstance(node.value, ast.Constant)
            assert ActionKind[name.id].value == node.value.value


# --- a kind missing something -------------------------------------------------------


def _complete(**changes: object) -> Kind:
    fields: dict[str, object] = {
        "name": ActionKind.NOOP,
        "traits": Traits(True, False, True, False),
        "estimate": 1.0,
        "action": Action(empty, lambda ctx, undo: "ok", never, nothing),
        "planned_by": "tests",
        "pre_approvable": False,
        "always_approved": True,
    }
    fields.update(changes)
    return Kind(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": ActionKind.TAG}, "KIND.name is 'tag', the module says 'noop'"),
        ({"traits": None}, "KIND.traits is not a Traits"),
        ({"estimate": 0}, "KIND.estimate must be a positive number"),
        ({"action": None}, "KIND.action is neither an Action"),
        ({"planned_by": ""}, "KIND has no forms and no planned_by"),
        ({"forms": ("x",), "help": ("x",), "add_steps": len}, "not a Form"),
        ({"pre_approvable": True}, "an always-approved kind cannot also be pre-approvable"),
    ],
)
def test_an_incomplete_kind_is_named_with_what_it_lacks(
    changes: dict[str, object], says: str
) -> None:
    assert kind_registry.problems("noop", _complete()) == []
    (problem,) = kind_registry.problems("noop", _complete(**changes))
    assert problem.startswith("overlord/kinds/noop.py: ") and says in problem


def test_forms_need_help_and_a_way_to_plan() -> None:
    from overlord.kinds.base import Form

    problems = kind_registry.problems("noop", _complete(forms=(Form("x", len),)))  # type: ignore[arg-type]
    assert any("KIND.help is empty" in p for p in problems)
    assert any("neither add_steps nor plan" in p for p in problems)


def _load_with(monkeypatch: pytest.MonkeyPatch, name: str, module: types.ModuleType) -> None:
    monkeypatch.setitem(sys.modules, f"overlord.kinds.{name}", module)
    monkeypatch.setattr(kind_registry, "kind_modules", lambda: [*kind_modules(), name])


def test_a_module_without_kind_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _load_with(monkeypatch, "half_done", types.ModuleType("overlord.kinds.half_done"))
    with pytest.raises(KindError) as info:
        kind_registry.load()
    assert (
        info.value.message
        == "overlord/kinds/half_done.py declares no KIND (a overlord.kinds.base.Kind)"
    )


def test_a_kind_without_traits_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """What used to be a KeyError deep in a plan (a missing TRAITS entry) is one line
    naming the module and the missing field."""
    real_import = importlib.import_module
    source = (
        "from overlord.kinds.base import Kind\n"
        "KIND = Kind(name='no-traits', estimate=1.0, action=None, planned_by='x')\n"
    )

    def fake_import(name: str) -> types.ModuleType:
        if name != "overlord.kinds.no_traits":
            return real_import(name)
        module = types.ModuleType(name)
        exec(compile(source, "no_traits.py", "exec"), module.__dict__)
        return module

    monkeypatch.setattr(kind_registry, "kind_modules", lambda: [*kind_modules(), "no_traits"])
    monkeypatch.setattr(kind_registry.importlib, "import_module", fake_import)
    with pytest.raises(KindError) as info:
        kind_registry.load()
    message = info.value.message
    assert message.startswith("overlord/kinds/no_traits.py cannot be loaded: TypeError")
    assert "traits" in message and "\n" not in message


def test_an_unknown_kind_is_a_one_line_error() -> None:
    with pytest.raises(KindError, match="unknown action kind 'nope'"):
        kind_registry.traits("nope")
    with pytest.raises(OverlordError):
        ActionScope.of([Touch("nope", "core")])  # type: ignore[arg-type]


def test_a_broken_kind_ends_a_command_with_one_line_and_exit_2(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict[ActionKind, Kind]:
        raise KindError("overlord/kinds/run_tests.py: KIND.traits is not a Traits")

    monkeypatch.setattr(kind_registry, "kinds", broken)
    config_module.load(workspace.config_path)
    res = cli(workspace.config_path, "dispatch", "--dry-run", "run tests in core")
    assert res.code == 2, res.text
    assert "Traceback" not in res.text
    assert "overlord/kinds/run_tests.py: KIND.traits is not a Traits" in res.text


# --- how the registry is loaded -------------------------------------------------------


def test_no_kind_module_reaches_the_registry_or_the_parser_at_import() -> None:
    """The registry imports every kind module (``importlib``, which the cycle check does
    not see): with those edges added, the module-level import graph has no cycle, and no
    kind module reaches the parser (which reads the registry when imported)."""
    spec = importlib.util.spec_from_file_location(
        "import_cycles", ROOT / ".ci" / "import_cycles.py"
    )
    assert spec and spec.loader
    cycles_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cycles_module)
    graph, _, _ = cycles_module.build(ROOT / "overlord")
    graph["overlord.kinds.registry"] |= {f"overlord.kinds.{m}" for m in kind_modules()}
    assert cycles_module.cycles(graph) == []

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for module in kind_modules():
        reached = reach(f"overlord.kinds.{module}")
        assert "overlord.core.parser" not in reached, module
        assert "overlord.kinds.registry" not in reached, module


def test_loading_every_kind_imports_no_infrastructure() -> None:
    """Kind modules are read by the planner: their code that needs Celery, Redis, Docker
    or SQL (a minion step, a push's record) is imported only when a step runs."""
    from tests.integration.test_core_imports import _chains, loaded_after

    loaded = loaded_after(
        "from overlord.kinds import registry\n"
        "assert all(k.traits for k in registry.kinds().values())\n"
    )
    assert loaded == {}, _chains(loaded)


def test_threads_loading_the_registry_at_once_all_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker threads that take their first steps together wait for one load (it used to
    refuse all but the first: 'uses the kind registry while it is being loaded')."""
    real_load = kind_registry.load
    barrier = threading.Barrier(8)

    def slow_load() -> dict[ActionKind, object]:
        time.sleep(0.2)  # every other thread arrives while this one loads
        return real_load()

    monkeypatch.setattr(kind_registry, "_loaded", None)
    monkeypatch.setattr(kind_registry, "load", slow_load)
    got: list[object] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        barrier.wait()
        try:
            got.append(kind_registry.kinds())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(got) == 8 and all(g is got[0] for g in got)
