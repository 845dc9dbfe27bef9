"""A Docker client for tests: the engine .ci/docker.sh starts, or $DOCKER_HOST.

Without an engine or without the minion images the tests skip on a laptop and fail in CI
(``CI=true``), so CI never silently skips. Images are not built here: run .ci/docker.sh.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord import defaults

IN_CI = os.environ.get("CI") == "true"
DEFAULT_SOCKET = Path("/tmp/overlord-docker/docker.sock")
IMAGES = (defaults.MINION_IMAGE_LOCAL, defaults.MINION_IMAGE_CLOUD)


def docker_url() -> str | None:
    """$DOCKER_HOST, else the socket of .ci/docker.sh when it exists, else docker's default."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    return f"unix://{DEFAULT_SOCKET}" if DEFAULT_SOCKET.exists() else None


def unavailable(message: str) -> None:
    """Skip locally; fail in CI."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    url = docker_url()
    try:
        client = docker.DockerClient(base_url=url, timeout=60)
        client.ping()
    except Exception as exc:
        unavailable(f"no Docker engine answers at {url or 'the default socket'} ({exc}); "
                    "run .ci/docker.sh and export its DOCKER_HOST")  # fmt: skip
    missing = [image for image in IMAGES if not _has_image(client, image)]
    if missing:
        client.close()
        unavailable(f"minion image(s) {', '.join(missing)} missing; run .ci/docker.sh")
    yield client
    client.close()


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True
