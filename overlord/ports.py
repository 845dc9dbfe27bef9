"""The ports: what the rest of Overlord needs from the outside world, as small Protocols.

Pure (typing only): nothing here imports Celery, Kombu, Redis, Docker, HTTP clients or
SQLAlchemy. Each port has one factory in ``overlord.wiring`` that picks the real
implementation, in-memory implementations in ``overlord.testing`` for unit tests, and a
contract test that every implementation passes (``tests/test_contract_*.py``).

- ``PlanStore``: plans, steps and events (SPEC §4.3); ``overlord.adapters.sql.store.Store`` on SQLite
  and PostgreSQL.
- ``Slots``: at most ``limit`` holders at once (a plan's ``max_concurrent_steps``, an
  endpoint's ``concurrent``); ``routing.semaphore.Semaphore`` across every process on a
  Redis broker, ``local_slots.LocalSlots`` among one process's threads.
- ``MinionBackend``: where a minion job runs (SPEC §5 Minions); ``containers.DockerBackend``
  (a sandboxed container) and ``host_minion.ProcessBackend`` (a host process).
- ``Executor``: where a plan's steps run (SPEC §5), the only code that names Celery tasks,
  queues and canvases; ``tasks.executor.CeleryExecutor`` (embedded or distributed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState

if TYPE_CHECKING:
    from types import TracebackType

    from overlord.adapters.containers.result import MinionResult
#: What ``PlanStore.gate_view`` answers: the plan's state, its document, and its step rows
#: (``step_id``, ``state``, ``data``, ``undo``).
GateView = tuple[str, dict[str, Any], list[dict[str, Any]]]


class PlanStore(Protocol):
    """Persisted plans (SPEC §4.3): written before anything acts on them; every state change
    a compare-and-set, so a redelivered task or a second worker never acts twice. Texts are
    stored redacted of secrets; a plan id may be given as a unique prefix where it says so.
    """

    #: The ``state_url`` the store was opened on: the key of this process's webhooks
    #: (``notify.install``) and of per-store caches.
    url: str

    # --- plans
    def save(self, plan: DispatchPlan) -> None:
        """Insert a new plan with its steps (event ``created``); webhooks told its state."""

    def resolve_id(self, plan_id: str) -> str:
        """The full id of the one plan ``plan_id`` (a prefix) names; else ``PlanNotFound``."""

    def load(self, plan_id: str) -> DispatchPlan:
        """The whole plan (``plan_id`` may be a unique prefix); else ``PlanNotFound``."""

    def load_step(self, plan_id: str, step_id: str) -> DispatchStep:
        """One step of the plan ``plan_id`` (in full); else ``PlanNotFound``."""

    def step_projects(self, plan_id: str) -> dict[str, str | None]:
        """Step id -> project, for every step of the plan."""

    def list_plans(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: ``id``, ``task``, ``kind``, ``state``, ``created_at`` and
        ``updated_at`` (ISO texts), at most ``limit``, only in ``state`` when given."""

    def state(self, plan_id: str) -> PlanState:
        """The plan's state (one cheap read, polled while following a plan)."""

    def gate_view(self, plan_id: str) -> GateView | None:
        """What the lifecycle gate reads (None: no such plan)."""

    def transition(
        self, plan_id: str, to: PlanState, *, expect: Iterable[PlanState] | None = None, **doc: Any
    ) -> bool:
        """Move the plan to ``to`` if it is in one of ``expect`` (any state when None),
        setting ``doc``'s keys of its document; True if this call moved it (event ``plan``).
        Only ``lifecycle.move`` calls it."""

    def transitions(self) -> int:
        """How many plan transitions this process has made so far (read it before reading a
        state, and pass it to ``wait_for_transition``)."""

    def wait_for_transition(self, timeout: float, after: int | None = None) -> None:
        """Sleep up to ``timeout`` seconds, less when a plan changes state in this process;
        not at all when one did since ``transitions()`` answered ``after``."""

    def update_doc(self, plan_id: str, **doc: Any) -> None:
        """Set keys of the plan's document (``add_notes=[...]`` appends to its notes);
        no concurrent change is lost."""

    # --- steps
    def claim(self, plan_id: str, step_id: str, worker: str) -> DispatchStep | None:
        """Pending or running -> running (attempts + 1) while the plan runs: the step
        claimed. None when it finished already, or when the plan stopped running (the
        step is then skipped)."""

    def record_undo(self, plan_id: str, step_id: str, undo: dict[str, Any]) -> None:
        """Persist what the step's undo needs, before the step acts."""

    def set_route(
        self, plan_id: str, step_id: str, endpoint: str, reason: str, tier: str | None = None
    ) -> None:
        """Record the endpoint a step used, why, and (after a fallback) its tier."""

    def finish(
        self,
        plan_id: str,
        step_id: str,
        state: StepState,
        *,
        output: str = "",
        error: str | None = None,
        undo: dict[str, Any] | None = None,
    ) -> None:
        """How the step ended (event ``step``): output tail and error redacted; a
        succeeded step gets the next place in the plan's order of completion."""

    def set_step_state(self, plan_id: str, step_id: str, state: StepState) -> None:
        """Set a step's state (undone after its undo; pending for a push to retry)."""

    def reset_lost(self, plan_id: str, step_id: str, *, worker: str | None, attempts: int) -> bool:
        """A lost running step back to pending, only if still the same attempt."""

    def reset_unfinished(self, plan_id: str) -> None:
        """Every running step of the plan back to pending (its run's process died)."""

    # --- events
    def event(self, plan_id: str, step_id: str | None, kind: str, message: str) -> None:
        """Record an event (message redacted)."""

    def events(self, plan_id: str) -> list[dict[str, Any]]:
        """The plan's events in order: ``id``, ``plan_id``, ``step_id``, ``at`` (ISO text),
        ``kind``, ``message``."""


class Slots(Protocol):
    """At most ``limit`` holders of ``name`` at once. A token that holds a slot holds it
    again without taking a second one (a redelivered step takes its own slot back); a
    released slot goes to a waiter at once."""

    name: str
    limit: int

    def hold(
        self, token: str | None = None, timeout: float | None = None
    ) -> AbstractContextManager[str]:
        """Hold a slot for the ``with`` block (the token it holds it with); ``timeout=None``
        waits as long as it takes, ``0`` tries once; ``errors.SlotTimeout`` when no slot
        became free in time. Released when the block ends, however it ends."""

    def in_use(self) -> int:
        """How many slots are held now."""


class MinionBackend(Protocol):
    """Runs one minion job to its end: a minion works on the job's branch of the job's
    repository, reaching the model only through what the backend provides (never the
    key), and the branch comes back with one commit on its base, or not at all."""

    #: What the step records (``docker``, ``process``): ``MinionResult.backend``.
    name: str

    def run(
        self, job: dict[str, Any], *, timeout: float, secrets: Mapping[str, str]
    ) -> MinionResult:
        """Run ``job`` (``repo``, ``branch``, ``base``, ``instruction``, ``endpoint``,
        ``model``, ``api_key_env``, ...; see ``minion_step.job_for``) within ``timeout``
        seconds, the key's value taken from ``secrets``. A failed run is a result (the
        person's checkout untouched, no branch left); only bad input raises
        (``PlanError``, ``RepoNotFound``)."""


class Executor(Protocol):
    """Runs a saved plan's steps (SPEC §5), for one command: open it with ``with``. What
    it starts settles the plan in the store (succeeded, awaiting the push, rolled back);
    the caller follows the store, never the executor."""

    #: The steps run in this process (and stop with it), not on workers elsewhere.
    embedded: bool

    def __enter__(self) -> Executor: ...

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def idle_queues(self, queues: set[str]) -> list[str]:
        """Of ``queues`` (and the git steps' own), those no worker consumes: a plan sent
        there would wait forever. None when the executor runs its own worker."""

    def holders(self, plan_id: str) -> list[str]:
        """The workers still running or holding a task of the plan, as ``worker (what)``."""

    def run_steps(self, plan: DispatchPlan) -> None:
        """Start every unfinished step of the running ``plan`` but its pushes, each once
        its dependencies succeeded; a failure starts the rollback; then the plan settles."""

    def run_push(self, plan: DispatchPlan) -> None:
        """Start the push phase of ``plan`` (a person approved it), then settle it."""

    def run_rollback(self, plan_id: str) -> None:
        """Start the rollback of a failing plan: undo completed steps in reverse order."""

    def recover(self, plan_id: str) -> list[str]:
        """Send again the steps of the running plan whose worker was lost; a line each."""
