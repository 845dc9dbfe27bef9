"""The configuration contract (SPEC §1): every bad file is one line, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import Level, Tier
from overlord.errors import ConfigError, OverlordError

GOOD = """\
# a comment
workspace: {ws}
projects:
  core:
    path: core
    role: shared-library
  app:
    path: app
    depends_on: [core]
autonomy:
  global: proactive
  overrides: {{core: cautious}}
  pre_approved:
    app: [run-tests, clean-stale-branches]
models:
  local-14b: {{endpoint: "http://127.0.0.1:5000/v1", model: q, tier: local, concurrent: 2}}
  cloud-fast: {{endpoint: "https://x/v1", model: h, tier: cloud-fast, api_key_env: ANTHROPIC_API_KEY}}
schedule:
  nightly: {{cron: "0 2 * * *", task: "run tests across all projects"}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overlord.yml"
    path.write_text(text)
    return path


def test_good_file_resolves_paths_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.format(ws=tmp_path / "ws"))
    config = config_module.load(path)
    assert config.projects["core"].path == tmp_path / "ws" / "core"
    assert config.projects["app"].depends_on == ["core"]
    assert config.projects["core"].test_command == "python -m pytest -q"
    assert config.autonomy.global_ is Level.PROACTIVE
    assert config.models["cloud-fast"].tier is Tier.CLOUD_FAST
    assert config.models["local-14b"].queue_name == "local-14b"
    assert config.state_url == f"sqlite:///{tmp_path / 'overlord.db'}"
    assert config.dispatch.max_concurrent_steps == 5


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERLORD_CONFIG", str(tmp_path / "env.yml"))
    assert config_module.config_path("explicit.yml") == Path("explicit.yml")
    assert config_module.config_path(None) == tmp_path / "env.yml"
    monkeypatch.delenv("OVERLORD_CONFIG")
    assert config_module.config_path(None) == Path("~/.atom/overlord.yml").expanduser()


BAD = [
    ("projects: [", "YAML syntax error at line"),
    ("projects:\n  core: {path: c, colour: red}\n", "projects.core.colour: unknown key"),
    ("bogus: 1\n", "bogus: unknown key"),
    ("projects:\n  core: {path: c, depends_on: nope}\n", "projects.core.depends_on"),
    ("projects:\n  core: {path: c, depends_on: [ghost]}\n", "unknown project 'ghost'"),
    (
        "projects:\n  a: {path: a, depends_on: [b]}\n  b: {path: b, depends_on: [a]}\n",
        "dependency cycle a -> b -> a",
    ),
    ("models:\n  m: {endpoint: e, model: x, tier: gpu}\n", "models.m.tier"),
    (
        "models:\n  a: {endpoint: e, model: x, tier: local, queue: q}\n"
        "  b: {endpoint: e, model: x, tier: local, queue: q}\n",
        "duplicate queue name 'q'",
    ),
    (
        "models:\n  m: {endpoint: e, model: x, tier: local, api_key_env: 'sk-123 abc'}\n",
        "api_key_env",
    ),
    ("autonomy: {global: reckless}\n", "autonomy.global"),
    ("dispatch: {max_concurrent_steps: many}\n", "dispatch.max_concurrent_steps"),
    ("schedule:\n  n: {cron: '0 2 *', task: t}\n", "schedule.n.cron"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("projects:\n  core: {}\n", "projects.core.path: required key is missing"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config_module.load(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "expected"), BAD[:6])
def test_cli_refuses_bad_files_with_exit_2(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, text)
    assert main(["graph", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err.replace("\n", " ") or expected in err
    assert "Traceback" not in err


def test_missing_file_says_how_to_create_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["graph", "--config", str(tmp_path / "none.yml")]) == 2
    err = capsys.readouterr().err
    assert "no configuration file" in err and "overlord init" in err


def test_missing_project_path_is_not_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "projects:\n  core: {path: /nonexistent/core}\n")
    assert config_module.load(path).projects["core"].path == Path("/nonexistent/core")


def test_subprocess_bad_config_has_no_traceback(tmp_path: Path) -> None:
    path = write(
        tmp_path, "projects:\n  a: {path: a, depends_on: [b]}\n  b: {path: b, depends_on: [a]}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "overlord", "--config", str(path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "dependency cycle" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "projects",
                    "path",
                    "depends_on",
                    "models",
                    "tier",
                    "autonomy",
                    "global",
                    "core",
                    "x",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(document=yaml_values)
def test_random_documents_never_crash_the_loader(tmp_path: Path, document: object) -> None:
    text = yaml.safe_dump(document)
    try:
        config_module.parse(text, tmp_path / "random.yml")
    except OverlordError as exc:
        assert exc.exit_code == 2
        assert "\n" not in exc.message


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    try:
        config_module.parse(text, Path("/tmp/random.yml"))
    except OverlordError as exc:
        assert exc.exit_code == 2
