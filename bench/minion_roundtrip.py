"""A minion round trip in the Docker sandbox against a bare ``docker run`` of the same image.

    .venv/bin/python bench/minion_roundtrip.py [--runs N]

Ours: ``containers.run_minion`` on a small real repository — clone, relay on its unix
socket, container start (no network, read-only, limits), one chat turn against the local
scripted OpenAI server through the relay, result read back, branch fetched back. Baseline:
the same image started bare (``python3 -c pass``), waited for and removed, through the same
engine, in the same run. Targets (the issue): at most 1.5x the bare run, and under 1 s.
Needs the engine and images of .ci/docker.sh (``$DOCKER_HOST``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import median, report, scratch

from overlord import defaults
from overlord.adapters.containers.docker import docker_client, run_minion
from overlord.core.config import Config
from tests.kit import git
from tests.openai_server import ScriptedOpenAI

DEFAULT_HOST = "unix:///tmp/overlord-docker/docker.sock"


def bare_run(client: object, image: str) -> float:
    started = time.perf_counter()
    container = client.containers.run(  # type: ignore[attr-defined]
        image, entrypoint=["python3", "-c", "pass"], detach=True, network_mode="none"
    )
    container.wait(timeout=60)
    container.remove(force=True)
    return time.perf_counter() - started


def minion_run(repo: Path, config: Config, server: ScriptedOpenAI, n: int) -> float:
    job = {
        "repo": str(repo), "branch": f"overlord/bench/s{n}", "base": "main",
        "instruction": "Say done.", "task_type": "review", "endpoint": server.url,
        "model": "scripted-model", "tier": "local", "test_command": None,
    }  # fmt: skip
    started = time.perf_counter()
    result = run_minion(job, backend="docker", config=config, timeout=60, secrets={})
    elapsed = time.perf_counter() - started
    if not result.ok or len(result.relay_calls) != 1:
        sys.exit(f"minion round trip failed: {result.reason} {result.relay_calls}")
    git(repo, "branch", "-D", f"overlord/bench/s{n}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    config = Config.model_validate({"minions": {"docker_url": host}})
    client = docker_client(config)
    image = defaults.MINION_IMAGE_LOCAL
    try:
        client.images.get(image)
    except Exception as exc:
        sys.exit(f"needs the Docker engine and images of .ci/docker.sh at {host}: {exc}")
    with scratch("overlord-bench-minion-") as root:
        repo = root / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        for i in range(20):
            (repo / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 50)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        ours, bare = [], []
        with ScriptedOpenAI() as server:  # answers every chat with "done": one turn
            bare_run(client, image)  # warm-up of both paths
            minion_run(repo, config, server, 0)
            for n in range(1, opts.runs + 1):  # interleaved: the same load for both
                bare.append(bare_run(client, image))
                ours.append(minion_run(repo, config, server, n))
    client.close()
    ours_s, bare_s = median(ours), median(bare)
    print(f"minion round trip median {ours_s:.3f}s; bare docker run median {bare_s:.3f}s "
          f"({ours_s / bare_s:.2f}x)", file=sys.stderr)  # fmt: skip
    report("minion round trip vs bare docker run", ours_s, bare_s, "bare docker run", 1 / 1.5)
    report("minion round trip under 1 s", ours_s, 1.0, "1 s budget", 1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
