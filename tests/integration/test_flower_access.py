"""`overlord flower` refuses to expose Flower's API (it can enqueue any task) without a
credential: an empty or malformed FLOWER_BASIC_AUTH is refused, the default address is
127.0.0.1, and a non-loopback address needs the credential (SPEC §4.6)."""

from __future__ import annotations

import pytest

from overlord.cli.services import check_flower_access
from overlord.errors import ConfigError
from tests.dispatch_helpers import cli, configure
from tests.kit import Workspace


@pytest.mark.parametrize("auth", ["", ":", "admin", "admin:", ":pw", "a:b,c:", "a:b,"])
def test_empty_or_malformed_credential_is_refused(
    auth: str, synced_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(synced_workspace, broker_url="redis://127.0.0.1:9/0")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", auth)
    res = cli(synced_workspace.config_path, "flower")
    assert res.code == 2, res.text
    assert "FLOWER_BASIC_AUTH must be user:password" in res.text
    assert "Traceback" not in res.text


def test_address_and_credential_rules() -> None:
    check_flower_access("127.0.0.1", None, False)  # the default: this machine only
    check_flower_access("127.0.0.1", None, True)
    check_flower_access("0.0.0.0", "admin:s3cret", False)
    check_flower_access("0.0.0.0", "a:b,c:d", False)
    with pytest.raises(ConfigError, match="needs \\$FLOWER_BASIC_AUTH"):
        check_flower_access("0.0.0.0", None, False)
    with pytest.raises(ConfigError, match="unauthenticated-api"):
        check_flower_access("0.0.0.0", "admin:s3cret", True)


def test_default_address_is_loopback(synced_workspace: Workspace) -> None:
    res = cli(synced_workspace.config_path, "flower", "--help")
    assert res.code == 0 and "127.0.0.1" in res.text
