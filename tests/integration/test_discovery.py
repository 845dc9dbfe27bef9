"""`overlord init`: discovery of real git repos, inferred graph, config writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overlord import discovery
from overlord.cli.app import main
from overlord.core import config as config_mod
from overlord.errors import ConfigError
from tests import kit


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kit.apply_env(monkeypatch, kit.isolate_git_env(tmp_path / "home"))


def make_repo(
    path: Path,
    dist: str | None,
    deps: tuple[str, ...] | list[str] = (),
    extras: dict[str, list[str]] | None = None,
    *,
    develop: bool = False,
    remotes: tuple[str, ...] = (),
) -> Path:
    kit.git(path.parent if path.parent.exists() else "/", "init", "-q", "-b", "main", str(path))
    if dist is not None:
        lines = [
            "[project]",
            f'name = "{dist}"',
            'version = "0.1.0"',
            f"dependencies = {json.dumps(list(deps))}",
        ]
        if extras:
            lines.append("[project.optional-dependencies]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in extras.items()]
        (path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    (path / "README.md").write_text(f"# {path.name}\n")
    kit.git(path, "add", "-A")
    kit.git(path, "commit", "-q", "-m", "init")
    if develop:
        kit.git(path, "branch", "develop")
    for remote in remotes:
        kit.git(path, "remote", "add", remote, f"/nowhere/{remote}.git")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    make_repo(root / "core", "acme-core", develop=True, remotes=("upstream", "origin"))
    make_repo(root / "api", "acme-api", ["acme-core>=0.1.0", "requests"], remotes=("github",))
    make_repo(
        root / "group" / "web",
        "acme-web",
        ["requests"],
        {"server": ["Acme_API[fast]~=0.1; python_version>'3.8'"], "all": ["acme-web[server]"]},
    )
    make_repo(root / "notes", None)
    # Not projects: hidden dirs, venvs, node_modules, and repos nested inside a repo.
    make_repo(root / ".cache" / "hidden", "acme-hidden")
    make_repo(root / "node_modules" / "pkg", "acme-npm")
    (root / "venv").mkdir()
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    make_repo(root / "venv" / "inner", "acme-venv")
    make_repo(root / "core" / "vendor" / "nested", "acme-nested")
    return root


def test_discover_finds_repos_and_infers_graph(workspace: Path) -> None:
    found = {item.name: item for item in discovery.discover(workspace)}
    assert sorted(found) == ["api", "core", "notes", "web"]
    assert found["web"].path == workspace.resolve() / "group" / "web"
    assert {n: i.depends_on for n, i in found.items()} == {
        "api": ["core"],
        "core": [],
        "notes": [],
        "web": ["api"],  # through an optional group; its self-reference is ignored
    }
    assert discovery.infer_depends_on(list(found.values()))["web"] == ["api"]
    assert found["core"].branch_model == "develop-main"
    assert found["api"].branch_model == "trunk"
    assert (found["core"].remote, found["api"].remote, found["web"].remote) == (
        "origin",
        "github",
        None,
    )
    assert found["core"].role == found["api"].role == "shared-library"
    assert found["web"].role == found["notes"].role == "application"
    assert found["notes"].distribution is None and found["api"].distribution == "acme-api"


def test_remote_tracking_develop_counts(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path / "upstream", "acme-x", develop=True)
    kit.git(tmp_path, "clone", "-q", str(upstream), str(tmp_path / "ws" / "x"))
    clone = tmp_path / "ws" / "x"
    assert "develop" not in kit.git(clone, "branch", "--format=%(refname:short)").split()
    [item] = discovery.discover(tmp_path / "ws")
    assert item.branch_model == "develop-main" and item.remote == "origin"


def test_max_depth(workspace: Path) -> None:
    assert [i.name for i in discovery.discover(workspace, max_depth=1)] == ["api", "core", "notes"]


def test_rendered_config_loads_and_reproduces_graph(workspace: Path, tmp_path: Path) -> None:
    found = discovery.discover(workspace)
    text = discovery.render_config(found, workspace)
    assert text.startswith("#") and "# models:" in text
    cfg = config_mod.parse(text, tmp_path / "cfg" / "overlord.yml")
    assert {n: p.depends_on for n, p in cfg.projects.items()} == {
        i.name: i.depends_on for i in found
    }
    assert cfg.projects["web"].path == workspace.resolve() / "group" / "web"
    assert cfg.projects["web"].package == "acme-web"
    assert cfg.projects["core"].branch_model.value == "develop-main"
    assert cfg.autonomy.global_.value == "cautious"
    assert "path: group/web" in text


def test_duplicate_directory_names_get_unique_project_names(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    make_repo(root / "a" / "lib", "lib-a")
    make_repo(root / "b" / "lib", "lib-b", ["lib-a"])
    found = discovery.discover(root)
    assert [i.name for i in found] == ["a-lib", "b-lib"]
    assert found[1].depends_on == ["a-lib"]
    cfg = config_mod.parse(discovery.render_config(found, root), tmp_path / "x.yml")
    assert cfg.projects["b-lib"].depends_on == ["a-lib"]


def test_write_config_never_overwrites_without_force(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "dir" / "overlord.yml"
    discovery.write_config(target, "first\n")
    with pytest.raises(ConfigError, match="already exists") as info:
        discovery.write_config(target, "second\n")
    assert "--force" in str(info.value)
    assert target.read_text() == "first\n"
    discovery.write_config(target, "second\n", force=True)
    assert target.read_text() == "second\n"


def test_cli_init_writes_and_refuses_to_overwrite(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "conf" / "overlord.yml"
    assert main(["init", str(workspace), "--config", str(target)]) == 0
    out = capsys.readouterr().out
    assert "acme-core" in out and str(target) in out.replace("\n", "")
    written = target.read_text()
    assert config_mod.load(target).projects["api"].depends_on == ["core"]

    assert main(["init", str(workspace), "--config", str(target)]) == 2
    captured = capsys.readouterr()
    assert "already exists" in captured.err and "--force" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert target.read_text() == written

    target.write_text("# old\n")
    assert main(["init", str(workspace), "--config", str(target), "--force", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"] == str(target)
    assert {p["name"]: p["depends_on"] for p in doc["projects"]}["web"] == ["api"]
    assert target.read_text() == written


def test_cli_init_default_location_and_no_repos(
    tmp_path: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(workspace)
    assert main(["init"]) == 0  # DIR defaults to ".", config to ~/.atom/overlord.yml
    assert (tmp_path / "home" / ".atom" / "overlord.yml").is_file()
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["init", str(empty), "--config", str(tmp_path / "e.yml")]) == 2
    err = capsys.readouterr().err
    assert "no git repositories found" in err and "Traceback" not in err
    assert not (tmp_path / "e.yml").exists()


def test_discover_reproduces_kit_workspace(tmp_path: Path) -> None:
    ws = kit.build_workspace(tmp_path / "kit")
    found = discovery.discover(ws.root / "repos")
    graph = {i.name: i.depends_on for i in found}
    assert {n: sorted(d) for n, d in graph.items()} == {
        n: sorted(d) for n, d in ws.expected_depends_on.items()
    }
    assert {i.name: i.distribution for i in found} == ws.packages
    assert {i.name: i.branch_model for i in found} == {
        "api": "develop-main",
        "core": "develop-main",
        "tools": "trunk",
        "web": "develop-main",
    }
