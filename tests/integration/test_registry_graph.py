"""Project lookup, the dependency graph and scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.cli.app import main
from overlord.core.config import ActionKind, parse
from overlord.core.graph import DependencyGraph
from overlord.core.registry import Registry
from overlord.core.scope import ActionScope, Impact, Touch
from overlord.errors import ProjectLookupError

CONFIG = """\
projects:
  nebulus-core: {path: c, role: shared-library}
  nebulus-prime: {path: p, depends_on: [nebulus-core]}
  nebulus-gantry: {path: g, depends_on: [nebulus-core, nebulus-prime]}
  nebulus-forge: {path: f, depends_on: [nebulus-prime]}
  tools: {path: t}
"""


@pytest.fixture
def config(tmp_path: Path):
    return parse(CONFIG, tmp_path / "overlord.yml")


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("nebulus-core", "nebulus-core"),
        ("Core", "nebulus-core"),
        ("PRIME", "nebulus-prime"),
        ("gan", "nebulus-gantry"),
        ("nebulus-f", "nebulus-forge"),
        ("tools", "tools"),
    ],
)
def test_lookup(config, query: str, name: str) -> None:
    assert Registry(config).resolve(query) == name


def test_ambiguous_and_unknown_names_list_candidates(config) -> None:
    with pytest.raises(ProjectLookupError, match="ambiguous.*nebulus-core.*nebulus-prime"):
        Registry(config).resolve("nebulus")
    with pytest.raises(ProjectLookupError) as info:
        Registry(config).resolve("ghost")
    assert "unknown project 'ghost'" in info.value.message
    assert "nebulus-core" in (info.value.hint or "")


def test_graph_orders_and_affected(config) -> None:
    graph = DependencyGraph(config)
    order = graph.order()
    assert (
        order.index("nebulus-core") < order.index("nebulus-prime") < order.index("nebulus-gantry")
    )
    assert graph.downstream("nebulus-core") == ["nebulus-gantry", "nebulus-prime"]
    affected = graph.affected_by("nebulus-core")
    assert set(affected) == {"nebulus-prime", "nebulus-gantry", "nebulus-forge"}
    assert affected.index("nebulus-prime") < affected.index("nebulus-gantry")
    assert graph.affected_by("tools") == []


def test_scope_from_touches() -> None:
    read = ActionScope.of([Touch(ActionKind.RUN_TESTS, "a"), Touch(ActionKind.RUN_TESTS, "b")])
    assert read.read_only and read.estimated_impact is Impact.LOW and read.written_projects == []
    clean = ActionScope.of([Touch(ActionKind.CLEAN_STALE_BRANCHES, "a")])
    assert clean.destructive and clean.reversible and clean.estimated_impact is Impact.MEDIUM
    push = ActionScope.of(
        [Touch(ActionKind.MERGE, "a", ("develop", "main")), Touch(ActionKind.PUSH, "a")]
    )
    assert push.affects_remote and not push.reversible and push.estimated_impact is Impact.HIGH
    assert push.branches == ["a:develop", "a:main"]
    lib = ActionScope.of([Touch(ActionKind.TAG, "core")], shared_libraries=["core"])
    assert lib.estimated_impact is Impact.MEDIUM


def test_graph_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "overlord.yml"
    path.write_text(CONFIG)
    assert main(["graph", "affected", "Core", "--json", "--config", str(path)]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["project"] == "nebulus-core" and doc["affected"][0] == "nebulus-prime"
    assert main(["graph", "--json", "--config", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ["nebulus-prime", "nebulus-core"] in doc["edges"]
    assert main(["graph", "affected", "nebulus", "--config", str(path)]) == 2
    assert "ambiguous" in capsys.readouterr().err


def test_init_reproduces_the_workspace_graph(workspace, tmp_path: Path) -> None:
    from overlord.core.config import load

    target = tmp_path / "init.yml"
    assert main(["init", str(workspace.root / "repos"), "--config", str(target)]) == 0
    config = load(target)
    assert {n: sorted(p.depends_on) for n, p in config.projects.items()} == {
        n: sorted(d) for n, d in workspace.expected_depends_on.items()
    }
