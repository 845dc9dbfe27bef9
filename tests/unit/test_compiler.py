"""The plan → canvas compiler, as data: what exactly is sent to Celery for each DAG shape."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery, chord, group
from celery.canvas import Signature, _chain, _chord

from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, StepState
from overlord.tasks.app import make_app
from overlord.tasks.compiler import compile_plan, compile_push, compile_rollback, layout

PLAN = "p1"


@pytest.fixture(scope="module")
def app() -> Celery:
    return make_app(None, "memory://")


def step(
    sid: str,
    project: str | None,
    after: list[str] | None = None,
    kind: ActionKind = ActionKind.NOOP,
    estimate: float = 1.0,
    **kw: Any,
) -> DispatchStep:
    return DispatchStep(
        id=sid, kind=kind, project=project, depends_on=after or [], estimate=estimate, **kw
    )


def plan_of(*steps: DispatchStep) -> DispatchPlan:
    plan = DispatchPlan(id=PLAN, task="test", steps=list(steps))
    plan.validate_dag()
    return plan


# --- reading a canvas back ------------------------------------------------------------------


def shape(sig: Any) -> Any:
    """A nested, comparable description: step ids, ("chain", ...), ("chord", [...], body)."""
    if isinstance(sig, _chord):
        return ("chord", [shape(t) for t in sig.tasks], shape(sig.body))
    if isinstance(sig, _chain):
        return ("chain", *[shape(t) for t in sig.tasks])
    if isinstance(sig, group):
        return ("group", *[shape(t) for t in sig.tasks])
    assert isinstance(sig, Signature)
    if sig.task == "overlord.finish":
        return "finish"
    return sig.args[1]


def signatures(sig: Any) -> list[Signature]:
    """Every task signature in the canvas, depth first."""
    if isinstance(sig, _chord):
        return [s for t in sig.tasks for s in signatures(t)] + signatures(sig.body)
    if isinstance(sig, _chain | group):
        return [s for t in sig.tasks for s in signatures(t)]
    return [sig]


def chords(sig: Any) -> int:
    if isinstance(sig, _chord):
        return 1 + sum(chords(t) for t in sig.tasks) + chords(sig.body)
    if isinstance(sig, _chain | group):
        return sum(chords(t) for t in sig.tasks)
    return 0


def happens_before(
    sig: Any, done: frozenset[str] = frozenset()
) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """For each task id in the canvas, the ids Celery guarantees finished before it starts."""
    before: dict[str, frozenset[str]] = {}
    if isinstance(sig, _chord):
        after_header = done
        for t in sig.tasks:
            sub, end = happens_before(t, done)
            before.update(sub)
            after_header |= end
        sub, end = happens_before(sig.body, after_header)
        before.update(sub)
        return before, end
    if isinstance(sig, _chain):
        for t in sig.tasks:
            sub, done = happens_before(t, done)
            before.update(sub)
        return before, done
    if isinstance(sig, group):
        end = done
        for t in sig.tasks:
            sub, e = happens_before(t, done)
            before.update(sub)
            end |= e
        return before, end
    name = "finish" if sig.task == "overlord.finish" else sig.args[1]
    before[name] = done
    return before, done | {name}


def header_chords(sig: Any, in_header: bool = False) -> int:
    """Chords nested inside a chord's header (flat canvases have none)."""
    if isinstance(sig, _chord):
        inner = sum(header_chords(t, True) for t in sig.tasks)
        return int(in_header) + inner + header_chords(sig.body, in_header)
    if isinstance(sig, _chain | group):
        return sum(header_chords(t, in_header) for t in sig.tasks)
    return 0


def check_canvas(plan: DispatchPlan, canvas: Any) -> None:
    """The invariants every compiled plan holds."""
    sigs = signatures(canvas)
    step_sigs = [s for s in sigs if s.task != "overlord.finish"]
    # every step once, named after its kind, args (plan id, step id), on its queue
    assert sorted(s.args[1] for s in step_sigs) == sorted(s.id for s in plan.steps)
    for sig in step_sigs:
        st = plan.step(sig.args[1])
        assert sig.task == f"overlord.{st.kind.value}"
        assert tuple(sig.args) == (PLAN, st.id)
        assert not sig.kwargs
        assert sig.options["queue"] == st.queue
        assert sig.immutable
        (err,) = sig.options["link_error"]
        assert err.task == "overlord.plan_failed"
        assert tuple(err.args) == (PLAN,)
        assert err.immutable
    # finish exactly once, last, after every step
    finishes = [s for s in sigs if s.task == "overlord.finish"]
    assert len(finishes) == 1 and tuple(finishes[0].args) == (PLAN,)
    assert finishes[0].immutable
    before, _ = happens_before(canvas)
    assert before["finish"] == frozenset(s.id for s in plan.steps)
    # dependencies hold; steps on one repository are always ordered
    for st in plan.steps:
        assert set(st.depends_on) <= before[st.id], st.id
        for other in plan.steps:
            if other.id != st.id and other.project and other.project == st.project:
                assert other.id in before[st.id] or st.id in before[other.id]
    # flat: a chord's header holds chains of steps, never another chord
    assert header_chords(canvas) == 0
    # every step carries a broker priority (0 first)
    for sig in step_sigs:
        assert 0 <= sig.options["priority"] <= 9


# --- shapes -----------------------------------------------------------------------------------


def test_all_independent_is_one_chord_of_single_steps(app: Celery) -> None:
    plan = plan_of(*(step(f"s{i}", p) for i, p in enumerate(["core", "api", "web", "tools"], 1)))
    canvas = compile_plan(app, plan)
    assert isinstance(canvas, _chord)
    assert shape(canvas) == ("chord", ["s1", "s2", "s3", "s4"], "finish")
    check_canvas(plan, canvas)


def test_a_chain_is_a_chain_without_chord(app: Celery) -> None:
    plan = plan_of(step("s1", "core"), step("s2", "core", ["s1"]), step("s3", "api", ["s2"]))
    canvas = compile_plan(app, plan)
    assert shape(canvas) == ("chain", "s1", "s2", "s3", "finish")
    check_canvas(plan, canvas)


def release_like() -> DispatchPlan:
    """tests → bump → merge → tag on core, then per dependent update + tests, then a report."""
    return plan_of(
        step("s1", "core", kind=ActionKind.RUN_TESTS),
        step("s2", "core", ["s1"], kind=ActionKind.BUMP_VERSION),
        step("s3", "core", ["s2"], kind=ActionKind.MERGE),
        step("s4", "core", ["s3"], kind=ActionKind.TAG),
        step("s5", "api", ["s4"], kind=ActionKind.UPDATE_DEPENDENCY),
        step("s6", "web", ["s4"], kind=ActionKind.UPDATE_DEPENDENCY),
        step("s7", "api", ["s5"], kind=ActionKind.RUN_TESTS),
        step("s8", "web", ["s6"], kind=ActionKind.RUN_TESTS),
        step("s9", None, ["s7", "s8"]),
    )


def test_prefix_fan_out_suffix(app: Celery) -> None:
    plan = release_like()
    canvas = compile_plan(app, plan)
    assert shape(canvas) == (
        "chain",
        "s1",
        "s2",
        "s3",
        "s4",
        ("chord", [("chain", "s5", "s7"), ("chain", "s6", "s8")], ("chain", "s9", "finish")),
    )
    check_canvas(plan, canvas)
    assert layout(plan, [s.id for s in plan.steps]).stages[0] == [["s1", "s2", "s3", "s4"]]


def test_every_independent_line_is_its_own_chain_longest_first(app: Celery) -> None:
    # 8 independent lines (2 steps each, unequal estimates): never packed together; the
    # slots (not the canvas) hold max_concurrent_steps
    steps = []
    for i in range(8):
        a, b = f"a{i}", f"b{i}"
        steps += [step(a, f"p{i}", estimate=i + 1), step(b, f"p{i}", [a], estimate=1)]
    plan = plan_of(*steps)
    canvas = compile_plan(app, plan)
    check_canvas(plan, canvas)
    assert shape(canvas) == (
        "chord",
        [("chain", f"a{i}", f"b{i}") for i in reversed(range(8))],
        "finish",
    )
    # priority follows the expected rest: a7 (8 s + 1 s) first, then in line order
    prio = {s.args[1]: s.options["priority"] for s in signatures(canvas) if s.args[1:]}
    assert prio["a7"] == 0
    firsts = [prio[f"a{i}"] for i in reversed(range(8))]
    assert firsts == sorted(firsts)
    assert prio["b7"] >= prio["a1"]  # 1 s left of a 9 s line waits behind a 3 s line


def test_uneven_suites_are_sent_longest_first(app: Celery) -> None:
    estimates = [1, 1, 4, 1, 3, 1, 1, 1, 1]
    plan = plan_of(*(step(f"s{i}", f"p{i}", estimate=e) for i, e in enumerate(estimates, 1)))
    canvas = compile_plan(app, plan)
    check_canvas(plan, canvas)
    order = ["s3", "s5", "s1", "s2", "s4", "s6", "s7", "s8", "s9"]
    assert shape(canvas) == ("chord", order, "finish")


def test_multi_stage_dag_keeps_both_fan_outs(app: Celery) -> None:
    # A -> {B, C} -> D -> {E, F} -> G: B and C in parallel, then E and F in parallel
    plan = plan_of(
        step("A", "core"),
        step("B", "api", ["A"], estimate=2),
        step("C", "web", ["A"]),
        step("D", "core", ["A", "B", "C"]),
        step("E", "api", ["D", "B"]),
        step("F", "web", ["D", "C"], estimate=3),
        step("G", None, ["E", "F"]),
    )
    canvas = compile_plan(app, plan)
    check_canvas(plan, canvas)
    assert shape(canvas) == (
        "chain",
        "A",
        ("chord", ["B", "C"], ("chain", "D", ("chord", ["F", "E"], ("chain", "G", "finish")))),
    )
    before, _ = happens_before(canvas)
    assert "C" not in before["B"] and "B" not in before["C"]
    assert "F" not in before["E"] and "E" not in before["F"]
    assert layout(plan, [s.id for s in plan.steps]).stages == [
        [["A"]],
        [["B"], ["C"]],
        [["D"]],
        [["F"], ["E"]],
        [["G"]],
    ]


def test_a_part_with_inner_branches_stays_one_chain(app: Celery) -> None:
    # no step every other waits for: the connected part runs as one chain, in order
    plan = plan_of(
        step("s1", "a"), step("s2", "b"), step("s3", "c", ["s1", "s2"]), step("s4", "d", ["s2"])
    )
    canvas = compile_plan(app, plan)
    check_canvas(plan, canvas)
    assert shape(canvas) == ("chain", "s1", "s2", "s3", "s4", "finish")


def test_one_step_and_no_step(app: Celery) -> None:
    plan = plan_of(step("s1", "core"))
    assert shape(compile_plan(app, plan)) == ("chain", "s1", "finish")
    plan.step("s1").state = StepState.SUCCEEDED
    assert shape(compile_plan(app, plan)) == "finish"


def test_same_project_never_in_two_lines(app: Celery) -> None:
    # steps on core with no dependency between them (a hand-built plan): still one line
    plan = plan_of(
        step("s1", "core"),
        step("s2", "api"),
        step("s3", "core"),
        step("s4", "web"),
        step("s5", "core"),
    )
    canvas = compile_plan(app, plan)
    check_canvas(plan, canvas)
    lines = [[s.args[1] for s in signatures(line)] for line in canvas.tasks]
    assert ["s1", "s3", "s5"] in lines
    seen: set[str | None] = set()
    for line in lines:
        projects = {plan.step(s).project for s in line}
        assert not projects & seen
        seen |= projects


def test_finished_steps_are_not_compiled_again(app: Celery) -> None:
    plan = release_like()
    for sid in ("s1", "s2", "s5"):
        plan.step(sid).state = StepState.SUCCEEDED
    plan.step("s3").state = StepState.RUNNING  # interrupted: compiled again (idempotent)
    canvas = compile_plan(app, plan)
    ids = sorted(s.args[1] for s in signatures(canvas) if s.task != "overlord.finish")
    assert ids == ["s3", "s4", "s6", "s7", "s8", "s9"]


def test_push_and_rollback_canvases(app: Celery) -> None:
    plan = plan_of(
        step("s1", "core", kind=ActionKind.TAG),
        step("s2", "core", ["s1"], kind=ActionKind.PUSH),
        step("s3", "api", ["s1"], kind=ActionKind.PUSH),
    )
    # pushes are never part of the main phase
    main = compile_plan(app, plan)
    assert shape(main) == ("chain", "s1", "finish")
    push = compile_push(app, plan)
    assert shape(push) == ("chord", ["s2", "s3"], "finish")
    assert all(s.immutable for s in signatures(push))
    back = compile_rollback(app, plan, ["s3", "s1"])
    assert [(s.task, tuple(s.args)) for s in signatures(back)] == [
        ("overlord.undo", (PLAN, "s3")),
        ("overlord.undo", (PLAN, "s1")),
        ("overlord.rollback_done", (PLAN,)),
    ]
    assert all(s.immutable and s.options["queue"] == "direct" for s in signatures(back))


def test_model_steps_go_to_their_endpoint_queue(app: Celery) -> None:
    plan = plan_of(
        step("s1", "core", kind=ActionKind.MINION, queue="local-14b"),
        step("s2", "api", kind=ActionKind.MINION, queue="cloud-fast"),
    )
    canvas = compile_plan(app, plan)
    check_canvas(plan, canvas)
    assert {s.args[1]: s.options["queue"] for s in signatures(canvas) if s.args[1:]} == {
        "s1": "local-14b",
        "s2": "cloud-fast",
    }


def test_canvas_is_json(app: Celery) -> None:
    """What goes to the broker is plain JSON (Celery accepts JSON only)."""
    import json

    canvas = compile_plan(app, release_like())
    json.dumps(dict(canvas))
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


def test_chord_error_callback_flag_is_set_on_the_app(app: Celery) -> None:
    # the flag must be where signatures are built: link_error reaches every header task
    assert app.conf.task_allow_error_cb_on_chord_header is True
    canvas = compile_plan(app, release_like())
    assert isinstance(canvas, _chain)
    fan = canvas.tasks[-1]
    assert isinstance(fan, chord)


# --- display names (Celery's shadow): what Flower, worker logs and events show -------------


def test_every_message_names_what_runs_where(app: Celery) -> None:
    plan = DispatchPlan(
        id="c25b87c98c",
        task="release core 0.2.0",
        steps=[
            DispatchStep(id="s1", kind=ActionKind.MERGE, project="core"),
            DispatchStep(id="s2", kind=ActionKind.RUN_TESTS, project="api", depends_on=["s1"]),
            DispatchStep(id="s3", kind=ActionKind.MERGE, project="api", depends_on=["s1"]),
            DispatchStep(id="s4", kind=ActionKind.RUN_TESTS, project="web", depends_on=["s1"]),
            DispatchStep(id="s5", kind=ActionKind.PUSH, project="core", depends_on=["s2"]),
        ],
    )
    plan.validate_dag()
    main = signatures(compile_plan(app, plan))
    assert {(s.task, s.options["shadow"]) for s in main} == {
        ("overlord.merge", "merge core · c25b87c98c/s1"),
        ("overlord.run-tests", "run-tests api · c25b87c98c/s2"),
        ("overlord.merge", "merge api · c25b87c98c/s3"),
        ("overlord.run-tests", "run-tests web · c25b87c98c/s4"),
        ("overlord.finish", "finish · c25b87c98c"),
    }
    # the error callback of every step is named too
    errbacks = {e["options"]["shadow"] for s in main for e in s.options.get("link_error", [])}
    assert errbacks == {"plan-failed · c25b87c98c"}
    push = signatures(compile_push(app, plan))
    assert [(s.task, s.options["shadow"]) for s in push] == [
        ("overlord.push", "push core · c25b87c98c/s5"),
        ("overlord.finish", "finish · c25b87c98c"),
    ]
    back = signatures(compile_rollback(app, plan, ["s3", "s1"]))
    assert [(s.task, s.options["shadow"]) for s in back] == [
        ("overlord.undo", "undo merge api · c25b87c98c/s3"),
        ("overlord.undo", "undo merge core · c25b87c98c/s1"),
        ("overlord.rollback_done", "rollback-done · c25b87c98c"),
    ]
    # registered names and arguments are unchanged: routing and the lifecycle use them
    assert all(s.task.startswith("overlord.") for s in main + push + back)
    assert {tuple(s.args) for s in main if s.task == "overlord.merge"} == {
        ("c25b87c98c", "s1"),
        ("c25b87c98c", "s3"),
    }


def test_display_names_show_untrusted_project_names_on_one_clean_line(app: Celery) -> None:
    from overlord.core.terminal import one_line

    hostile = "api\x1b[31m\r\nFAKE LOG LINE\u202e\x00" + "x" * 80
    plan = plan_of(step("s1", hostile, kind=ActionKind.RUN_TESTS))
    (sig, _finish) = signatures(compile_plan(app, plan))
    shown = sig.options["shadow"]
    assert shown.startswith("run-tests api[31m FAKE LOG LINE")
    assert shown.endswith(f"… · {PLAN}/s1")
    assert shown.isprintable() and "\x1b" not in shown and "\u202e" not in shown
    assert len(shown) < 80
    assert one_line("  a\tb\n c  ") == "a b c"


def test_the_sent_event_carries_the_display_name_too(app: Celery) -> None:
    """Flower keeps the name of whichever event it saw first: ``task-sent`` must not say
    ``overlord.undo`` while ``task-received`` says ``undo merge api · PLAN/s3``."""
    message = app.amqp.as_task_v2(
        "id-1", "overlord.undo", ("p1", "s3"), create_sent_event=True, shadow="undo merge api"
    )
    assert message.headers["task"] == "overlord.undo"  # routing and the gate use this
    assert message.headers["shadow"] == "undo merge api"
    assert message.sent_event["name"] == "undo merge api"
    # as ``send_task`` calls it: everything by position
    sent = app.amqp.as_task_v2("id-3", "overlord.rollback", ("p1",), {}, *[None] * 12, True)
    assert sent.sent_event["name"] == "overlord.rollback"
    shown = (None,) * 12 + (True, None, None, "rollback · p1")
    by_position = app.amqp.as_task_v2("id-4", "overlord.rollback", ("p1",), {}, *shown)
    assert by_position.sent_event["name"] == "rollback · p1"
    plain = app.amqp.as_task_v2("id-2", "overlord.health", (), create_sent_event=True)
    assert plain.sent_event["name"] == "overlord.health"


def test_sending_a_flat_chord_subscribes_to_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's Redis backend subscribed to every header task's result channel when a chord
    was sent (one round trip each, for results nobody reads): a flat header skips that."""
    from celery.backends.redis import RedisBackend
    from celery.result import AsyncResult, GroupResult

    from overlord.tasks.results import Results, backend_url

    redis_app = make_app(None, "redis+socket:///nonexistent/r.sock")  # never connected to
    backend = redis_app.backend
    assert isinstance(backend, Results)
    assert backend.connparams["path"] == "/nonexistent/r.sock"
    header = [AsyncResult(f"t{i}", app=redis_app) for i in range(3)]
    assert backend.apply_chord(("g1", header), None) is None
    assert not backend._pending_results[0] and not backend._pending_results[1]
    celerys: list[object] = []  # a nested group goes through Celery's own code
    monkeypatch.setattr(RedisBackend, "apply_chord", lambda self, args, body: celerys.append(args))
    inner = GroupResult.__new__(GroupResult)  # built for real, it would subscribe too
    nested = [*header, inner]
    backend.apply_chord(("g3", nested), None)
    assert celerys == [("g3", nested)]
    assert backend_url("redis://h:1/0") == "overlord.tasks.results:Results+redis://h:1/0"
    assert backend_url("memory://") == "memory://"
