"""Plan notifications (SPEC §1 ``notify:``): what a webhook is told, and when.

When a plan enters a state some ``notify:`` entry lists, ``lifecycle.move`` (every
transition) or ``Store.save`` (a plan saved as pending or queued) calls ``entered`` after
the change is committed; this hands the delivery to the background sender in
``overlord.webhooks`` and returns at once, so a notification never blocks or fails the
plan. Nothing here does I/O; the sender is imported only when something is to be sent.

A webhook is told the plan id, the state, the task text, the projects, and for
``pending`` / ``awaiting-push`` the exact ``overlord approve ID`` command; for a failure,
the failing step's one-line reason. Never a secret (texts are redacted) and never raw
step output. A webhook's URL is never printed or stored: ``label`` names it by its
position and ``$ENV`` name, or by its scheme and host only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from overlord import defaults
from overlord.core.config import Config, Webhook
from overlord.core.plan import DispatchPlan, PlanState

#: state database URL → the configuration whose webhooks its plans notify (this process)
_INSTALLED: dict[str, Config] = {}


def install(config: Config) -> None:
    """Notify ``config.notify`` of transitions of plans in ``config.state_url`` made in
    this process (called wherever a configuration is loaded to act on)."""
    if not config.state_url:
        return
    if config.notify:
        _INSTALLED[config.state_url] = config
    else:
        _INSTALLED.pop(config.state_url, None)


def event_for(state: PlanState) -> str:
    """The ``events:`` name a plan state answers to (a failing plan has ``failed``)."""
    return "failed" if state is PlanState.FAILING else state.value


def entered(state_url: str, plan_id: str, state: PlanState, *, cancelling: bool = False) -> None:
    """A plan of ``state_url`` entered ``state`` (committed): notify, in the background,
    every webhook listening for it. Returns at once; never raises. A cancel rolls back
    through ``failing`` (``cancelling``): that is no failure, ``cancelled`` follows."""
    config = _INSTALLED.get(state_url)
    if config is None or (cancelling and state is PlanState.FAILING):
        return
    event = event_for(state)
    hooks = [(i, h) for i, h in enumerate(config.notify, 1) if event in h.events]
    if not hooks:
        return
    try:
        from overlord import webhooks

        webhooks.send(config, plan_id, state, hooks)
    except Exception:  # a notification never fails the plan
        pass


# --- what is said ---------------------------------------------------------------------


@dataclass
class Facts:
    """What a notification says about a plan (all of it safe to send)."""

    plan: str
    state: str
    task: str
    projects: list[str] = field(default_factory=list)
    approve: str | None = None
    reason: str | None = None


def one_line(text: str, limit: int = defaults.NOTIFY_MAX_REASON) -> str:
    from overlord.core.terminal import one_line as shown

    first = next((line for line in text.splitlines() if line.strip()), "")
    return shown(first, limit)


def redact(text: str, config: Config) -> str:
    """``text`` without any secret Overlord knows (model API keys, webhook URLs, URL
    passwords)."""
    from overlord.core.secrets import redact as redact_secrets

    return redact_secrets(text, config)


def facts(plan: DispatchPlan, state: PlanState, config: Config) -> Facts:
    """What to tell about ``plan`` entering ``state``."""
    said = Facts(
        plan=plan.id,
        state=event_for(state),
        task=redact(one_line(plan.task, 300), config),
        projects=list(plan.projects),
    )
    if state.waiting:
        said.approve = f"overlord approve {plan.id}"
    if state in (PlanState.FAILING, PlanState.FAILED, PlanState.ROLLED_BACK):
        failed = [s for s in plan.steps if s.error and s.state.value == "failed"]
        if failed:
            step = failed[0]
            where = f"{step.kind.value} {step.project or ''}".strip()
            said.reason = redact(one_line(f"{step.id} {where}: {step.error}"), config)
        elif plan.error:
            said.reason = redact(one_line(plan.error), config)
    return said


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_HEADLINE = {
    "pending": "waits for your approval",
    "awaiting-push": "passed everything and waits for your approval to push",
    "queued": "is approved and queued",
    "running": "is running",
    "succeeded": "succeeded",
    "failed": "failed",
    "rolled-back": "failed and was rolled back (everything it did is undone)",
    "rejected": "was rejected",
    "cancelled": "was cancelled",
    "test": "is a test notification: this webhook works",
}


def slack_text(said: Facts) -> str:
    where = f" ({', '.join(said.projects)})" if said.projects else ""
    lines = [
        f"Overlord plan `{said.plan}` {_HEADLINE.get(said.state, said.state)}: "
        f"{_slack_escape(said.task)}{_slack_escape(where)}"
    ]
    if said.reason:
        lines.append(f"Reason: {_slack_escape(said.reason)}")
    if said.approve:
        lines.append(f"Approve with `{said.approve}` (or `overlord reject {said.plan}`)")
    return "\n".join(lines)


def payload(hook: Webhook, said: Facts) -> dict[str, Any]:
    """The JSON body POSTed to ``hook``."""
    if hook.format == "slack":
        return {"text": slack_text(said)}
    return asdict(said)


def label(index: int, hook: Webhook) -> str:
    """How a webhook is named in output and records: never its URL's path or secret."""
    if hook.url_env:
        return f"webhook {index} ({hook.format}, ${hook.url_env})"
    parts = urlsplit(hook.url or "")
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    more = "/…" if parts.path.strip("/") or parts.query else ""
    return f"webhook {index} ({hook.format}, {parts.scheme}://{host}{port}{more})"


def target(hook: Webhook) -> str | None:
    """The URL to POST to, or None when its ``url_env`` variable is not set."""
    if hook.url:
        return hook.url
    value = os.environ.get(hook.url_env or "", "").strip()
    return value or None
