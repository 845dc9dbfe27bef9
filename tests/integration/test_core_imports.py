"""The pure core imports no infrastructure (team guide, issue 16 part 5).

Config, registry, graph, scope, plan, parser, planner, autonomy, release planning, the ports
(their Protocols, their factories' module, the in-memory implementations) must
not load Celery, Kombu, Redis, Docker, HTTP clients or SQLAlchemy, not even lazily on the
planning path. Each check runs in a fresh interpreter and reads ``sys.modules``; when a
forbidden package is loaded it names the chain of overlord modules that imported it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from tests.kit import Workspace
from tests.openai_server import ScriptedOpenAI

FORBIDDEN = ("celery", "kombu", "redis", "docker", "requests", "sqlalchemy", "httpx", "urllib3")

CORE = (
    "overlord.core.config",
    "overlord.core.registry",
    "overlord.core.graph",
    "overlord.core.scope",
    "overlord.core.plan",
    "overlord.core.parser",
    "overlord.core.planner",
    "overlord.core.approval",
    "overlord.core.release",
    "overlord.ports",
    "overlord.wiring",
    "overlord.testing.memory_store",
    "overlord.local_slots",
    "overlord.adapters.containers.job",
    "overlord.testing.minions",
    "overlord.testing.executor",
)

# Records, for the first import of each forbidden package, which overlord modules were
# importing at that moment (outermost first), then runs the body and prints the result.
PROBE = """
import json, sys
FORBIDDEN = {forbidden!r}
chains = {{}}

class Probe:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in FORBIDDEN and top not in chains:
            frame, chain = sys._getframe(1), []
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if module.startswith("overlord") and (not chain or chain[-1] != module):
                    chain.append(module)
                frame = frame.f_back
            chains[top] = " -> ".join(reversed(chain)) + " -> " + name
        return None

sys.meta_path.insert(0, Probe())
{body}
loaded = sorted({{n.partition(".")[0] for n in sys.modules}} & set(FORBIDDEN))
print(json.dumps({{"loaded": {{n: chains.get(n, "?") for n in loaded}}}}))
"""


def loaded_after(body: str, cwd: Path | None = None) -> dict[str, str]:
    """The forbidden packages a fresh interpreter has loaded after running ``body``, each
    with the import chain that brought it in."""
    script = PROBE.format(forbidden=FORBIDDEN, body=textwrap.dedent(body))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])["loaded"]
    return loaded


def with_models(ws: Workspace, server: ScriptedOpenAI) -> Path:
    data = yaml.safe_load(ws.config_path.read_text())
    data["models"] = {
        "local-14b": {
            "endpoint": server.url,
            "model": "scripted-14b",
            "tier": "local",
            "concurrent": 2,
            "health_check_url": server.health_url,
        }
    }
    ws.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return ws.config_path


def test_core_modules_import_no_infrastructure() -> None:
    loaded = loaded_after("\n".join(f"import {m}" for m in CORE))
    assert loaded == {}, _chains(loaded)


def test_planning_chores_from_several_lines_imports_no_infrastructure(
    workspace: Workspace,
) -> None:
    """A multi-line text (as typed, or as a translation answers) parsed line by line and
    planned as one plan: the path `overlord dispatch` and beat take for chores."""
    body = f"""
    from overlord.core import config, planner
    from overlord.core.parser import parse_all, parse_lines
    from overlord.core.registry import Registry
    cfg = config.load({str(workspace.config_path)!r})
    registry = Registry(cfg)
    text = "run tests in core and api\\nclean stale branches in web; update requests to 2.32.3 in api"
    plan = planner.plan_for_all(parse_all(text, registry), cfg)
    assert len(plan.steps) > 2, plan.steps
    translated = ["run tests in core", "merge develop into main in tools"]
    plan = planner.plan_for_all(parse_lines(translated, registry), cfg, task="test and ship")
    assert plan.steps
    """
    loaded = loaded_after(body)
    assert loaded == {}, _chains(loaded)


def test_planning_a_release_imports_no_infrastructure(workspace: Workspace) -> None:
    body = f"""
    from overlord.core import config, planner
    from overlord.core.parser import parse
    from overlord.core.registry import Registry
    cfg = config.load({str(workspace.config_path)!r})
    plan = planner.plan_for(parse("release core 9.9.9", Registry(cfg)), cfg)
    assert plan.kind == "release", plan
    """
    loaded = loaded_after(body)
    assert loaded == {}, _chains(loaded)


def test_planning_a_code_task_imports_no_infrastructure(workspace: Workspace) -> None:
    """Planning routes code work by what it is handed (``routing.Known``); the health
    checks and the cache it comes from are at the edges (issue 16 part 3)."""
    with ScriptedOpenAI() as server:
        path = with_models(workspace, server)
        body = f"""
        from overlord.core import config, planner
        from overlord.core.parser import parse
        from overlord.core.registry import Registry
        cfg = config.load({str(path)!r})
        plan = planner.plan_for(parse("implement a greeting function in core", Registry(cfg)), cfg)
        assert plan.steps[0].kind.value == "minion", plan
        """
        loaded = loaded_after(body)
    assert loaded == {}, _chains(loaded)


def _chains(loaded: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {chain}" for name, chain in loaded.items())
