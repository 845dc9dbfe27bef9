"""Secrets kept out of project commands and out of every printed or stored text (SPEC §4.6).

The secrets Overlord knows are: the values of the environment variables named by any
model's ``api_key_env`` or webhook's ``url_env`` (and a few service variables,
``SECRET_ENV``), webhook URLs written in the file, and the passwords
in URLs (the configuration's ``broker_url``, ``state_url``, endpoints, and any URL in the
environment). Loading a configuration registers its names and URLs (``register``).

- ``scrubbed_env(config)``: the environment for a command started for a project (test
  commands, git and the hooks it runs): without those variables and without any variable
  whose value carries a URL password.
- ``redact(text)``: ``text`` with every known secret value replaced by ``***`` and every
  URL password masked; applied where text is stored (steps, events, notes, memory) and
  where errors are printed.
- ``mask_url(url)``: one URL with its password masked, for printing.

Pure: no import beyond the standard library and ``overlord.core.config`` (type only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from overlord import defaults

if TYPE_CHECKING:
    from overlord.core.config import Config
#: Shown in place of a secret.
MASK = "***"
#: Variables that always hold a secret (Compose's credentials, the broker URL override).
SECRET_ENV = frozenset({"REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "OVERLORD_BROKER_URL"})

#: ``scheme://user:password@`` (user may be empty): group 1 is kept, the password masked.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)@")

_names: set[str] = set(SECRET_ENV)
_values: set[str] = set()


def url_password(url: str) -> str | None:
    """The password in ``url``, if it carries one."""
    found = _URL_PASSWORD.search(url)
    return found.group(2) if found else None


def mask_url(url: str) -> str:
    """``url`` with its password shown as ``***``."""
    return _URL_PASSWORD.sub(rf"\1{MASK}@", url)


def of_config(config: Config) -> tuple[set[str], set[str]]:
    """The secrets a configuration names: (variable names, values it carries itself:
    URL passwords, webhook URLs written in the file)."""
    names: set[str] = set()
    values: set[str] = set()
    urls = [config.broker_url, config.state_url, config.minions.docker_url]
    for endpoint in config.models.values():
        if endpoint.api_key_env:
            names.add(endpoint.api_key_env)
        urls += [endpoint.endpoint, endpoint.health_check_url]
    for hook in config.notify:  # a webhook URL is a credential (Slack's carry a token)
        if hook.url_env:
            names.add(hook.url_env)
        elif hook.url and len(hook.url.split("/", 3)) > 3 and hook.url.split("/", 3)[3]:
            values.add(hook.url)
    for url in urls:
        password = url_password(url or "")
        if password:
            values.add(password)
    return names, values


def register(config: Config) -> None:
    """Remember the secret names and URL passwords of a loaded configuration."""
    names, values = of_config(config)
    _names.update(names)
    _values.update(values)


def add_names(names: Iterable[str]) -> None:
    """Remember more names of variables that hold secrets (a configuration's, read
    before it is validated: see ``adapters.git.prefetch``)."""
    _names.update(names)


def secret_names(config: Config | None = None) -> set[str]:
    """Names of the environment variables that hold secrets."""
    return _names | of_config(config)[0] if config is not None else set(_names)


def known_values(config: Config | None = None) -> list[str]:
    """Every secret value known now, longest first."""
    values = set(_values)
    if config is not None:
        register(config)
        values |= _values
    for name in secret_names(config):
        value = os.environ.get(name)
        if value:
            values.add(value)
            password = url_password(value)
            if password:
                values.add(password)
    for value in os.environ.values():
        password = url_password(value) if "://" in value else None
        if password:
            values.add(password)
    if "FLOWER_BASIC_AUTH" in os.environ:  # user:password — the password alone, too
        values |= {p.partition(":")[2] for p in os.environ["FLOWER_BASIC_AUTH"].split(",")}
    return sorted(
        (v for v in values if len(v) >= defaults.SECRET_MIN_LENGTH), key=len, reverse=True
    )


#: Proxy variables git itself may need to reach a remote (kept for git, see ``keep``).
PROXY_ENV = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
)


def scrubbed_env(
    config: Config | None = None,
    base: Mapping[str, str] | None = None,
    *,
    keep: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """The environment for a command started for a project: ``base`` (default: this
    process's) without secret variables and without variables holding a URL password
    (except the names in ``keep``, which must not be secret variables)."""
    names = secret_names(config)
    source = os.environ if base is None else base
    return {
        key: value
        for key, value in source.items()
        if key not in names and (key in keep or not ("://" in value and url_password(value)))
    }


def redact(text: str, config: Config | None = None) -> str:
    """``text`` without any secret value Overlord knows, and with URL passwords masked."""
    if not text:
        return text
    for value in known_values(config):
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = mask_url(text)
    return text
