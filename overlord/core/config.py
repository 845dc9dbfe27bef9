"""The configuration contract (SPEC §1): pydantic models and the loader.

Every key is validated when the file is read; a bad file raises ``ConfigError``
with one message naming the file, the key path and what is wrong.
"""

from __future__ import annotations

import hashlib
import os
import re
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from overlord import defaults
from overlord.core.branch_model import BranchModel
from overlord.core.config_file import config_path, expand, workspace_base
from overlord.errors import ConfigError
from overlord.kinds import ActionKind  # one kind per module of overlord/kinds/

__all__ = ["BranchModel", "Config", "config_path", "expand", "load", "parse"]


class Level(StrEnum):
    CAUTIOUS = "cautious"
    PROACTIVE = "proactive"
    SCHEDULED = "scheduled"


class Tier(StrEnum):
    LOCAL = "local"
    CLOUD_FAST = "cloud-fast"
    CLOUD_HEAVY = "cloud-heavy"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectConfig(_Strict):
    path: Path
    remote: str = "origin"
    role: str = "application"
    branch_model: BranchModel = BranchModel.DEVELOP_MAIN
    depends_on: list[str] = Field(default_factory=list)
    test_command: str = defaults.TEST_COMMAND
    lint_command: str | None = None
    package: str | None = None
    name: str = Field(default="", exclude=True)

    @property
    def distribution(self) -> str:
        return self.package or self.name

    @property
    def source_branch(self) -> str:
        return "develop" if self.branch_model is BranchModel.DEVELOP_MAIN else "main"

    @property
    def target_branch(self) -> str:
        return "main"


class AutonomyConfig(_Strict):
    global_: Level = Field(default=Level.PROACTIVE, alias="global")
    overrides: dict[str, Level] = Field(default_factory=dict)
    pre_approved: dict[str, list[ActionKind]] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class ModelEndpoint(_Strict):
    endpoint: str
    model: str
    tier: Tier
    concurrent: int = Field(default=1, ge=1)
    health_check_url: str | None = None
    api_key_env: str | None = None
    queue: str | None = None
    name: str = Field(default="", exclude=True)

    @property
    def queue_name(self) -> str:
        return self.queue or self.name

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the NAME of an environment variable, not a key")
        return value


class DispatchConfig(_Strict):
    max_concurrent_steps: int = Field(default=defaults.MAX_CONCURRENT_STEPS, ge=1)
    step_timeout_default: int = Field(default=defaults.STEP_TIMEOUT, ge=1)
    rollback_on_failure: bool = True
    stale_branch_days: int = Field(default=defaults.STALE_BRANCH_DAYS, ge=0)
    on_saturated: str = Field(default="wait", pattern="^(wait|fallback)$")
    health_interval: int = Field(default=defaults.HEALTH_INTERVAL, ge=1)
    slot_lease_seconds: float = Field(default=defaults.SLOT_LEASE_SECONDS, gt=0)


class MinionsConfig(_Strict):
    backend: str | None = Field(default=None, pattern="^(docker|process)$")
    image_local: str = defaults.MINION_IMAGE_LOCAL
    image_cloud: str = defaults.MINION_IMAGE_CLOUD
    mem_limit: str = "2g"
    cpus: float = Field(default=1.0, gt=0)
    pids_limit: int = Field(default=256, ge=16)
    tmpfs_size: str = "512m"
    max_turns: int = Field(default=20, ge=1)
    docker_url: str | None = None


class ScheduleEntry(_Strict):
    cron: str
    task: str

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a cron expression of 5 fields, e.g. '0 2 * * *'")
        return value


#: Plan states a webhook may listen for (``failed`` also covers a plan that failed and is
#: being rolled back).
NOTIFY_EVENTS = (
    "pending",
    "queued",
    "running",
    "awaiting-push",
    "succeeded",
    "failed",
    "rolled-back",
    "rejected",
    "cancelled",
)


class Webhook(_Strict):
    """One ``notify:`` entry: where a plan's transitions are POSTed, and which ones."""

    url: str | None = None
    url_env: str | None = None
    format: Literal["json", "slack"] = "json"
    events: list[str] = Field(
        default_factory=lambda: ["pending", "awaiting-push", "failed", "rolled-back"]
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the NAME of an environment variable, not a URL")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"list at least one of {', '.join(NOTIFY_EVENTS)}")
        for event in value:
            if event not in NOTIFY_EVENTS:
                raise ValueError(f"unknown event {event!r}; use one of {', '.join(NOTIFY_EVENTS)}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Webhook:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        return self


class Config(_Strict):
    workspace: Path | None = None
    state_url: str | None = None
    broker_url: str | None = None
    projects: dict[str, ProjectConfig] = Field(default_factory=dict)
    autonomy: AutonomyConfig = Field(default_factory=AutonomyConfig)
    models: dict[str, ModelEndpoint] = Field(default_factory=dict)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    minions: MinionsConfig = Field(default_factory=MinionsConfig)
    schedule: dict[str, ScheduleEntry] = Field(default_factory=dict)
    notify: list[Webhook] = Field(default_factory=list)

    _source: Path | None = PrivateAttr(default=None)
    _digest: str | None = PrivateAttr(default=None)
    _as_written: tuple[str | None, dict[str, str]] = PrivateAttr(default=(None, {}))

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def digest(self) -> str | None:
        """The SHA-256 of the bytes this configuration was validated from."""
        return self._digest

    @property
    def as_written(self) -> tuple[str | None, dict[str, str]]:
        """The workspace and each project's path as validated, before they were resolved
        against the file's directory (``status_config`` resolves them again)."""
        return self._as_written

    @property
    def state_dir(self) -> Path:
        base = self._source.parent if self._source else Path.cwd()
        return base

    def project(self, name: str) -> ProjectConfig:
        return self.projects[name]


def load(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read, validate and resolve the configuration file."""
    path = config_path(explicit)
    return parse(read_text(path), path)


def read_text(path: Path) -> str:
    """The configuration file's text, or a one-line ``ConfigError`` saying what to do."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no configuration file",
            "create one with `overlord init DIR` or `overlord demo`, or pass --config",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def parse(text: str, path: Path) -> Config:
    """Validate the YAML text of a configuration file read from ``path``."""
    try:
        # libyaml's loader when PyYAML has it: ~6x faster on a config of hundreds of projects
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {_kind(data)}")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    config._source = path
    config._digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    config._as_written = (
        None if config.workspace is None else str(config.workspace),
        {name: str(project.path) for name, project in config.projects.items()},
    )
    _resolve(config, path)
    _check(config, path)
    from overlord.core import secrets

    secrets.register(config)  # its secret names and URL passwords are redacted everywhere
    return config


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(part: object) -> str:
    text = str(part)
    return text if text and text.isprintable() and " " not in text else repr(text)


def _describe(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    key = ".".join(_key(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        problem = "unknown key"
    elif first["type"] == "missing":
        problem = "required key is missing"
    else:
        problem = first["msg"]
        if first["type"] not in ("value_error",) and "input" in first:
            problem += f" (got {_short_repr(first['input'])})"
        problem = problem.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{key}: {problem}{more}"


def _resolve(config: Config, path: Path) -> None:
    config_dir = path.parent.resolve()
    base = workspace_base(path, config.workspace)
    if config.workspace is not None:
        config.workspace = base
    for name, project in config.projects.items():
        project.name = name
        project.path = expand(project.path, base)
    for name, endpoint in config.models.items():
        endpoint.name = name
    # a password comes from the environment, never the file: redis://:${REDIS_PASSWORD}@...
    if config.broker_url:
        config.broker_url = os.path.expandvars(config.broker_url)
    if config.state_url and not config.state_url.startswith("sqlite:"):
        config.state_url = os.path.expandvars(config.state_url)
    if config.state_url is None:
        config.state_url = f"sqlite:///{config_dir / defaults.STATE_FILE}"
    elif config.state_url.startswith("sqlite:///"):
        raw = config.state_url.removeprefix("sqlite:///")
        config.state_url = f"sqlite:///{expand(raw, config_dir)}"


def _check(config: Config, path: Path) -> None:
    names = set(config.projects)
    for name, project in config.projects.items():
        for dep in project.depends_on:
            if dep not in names:
                raise ConfigError(
                    f"{path}: projects.{name}.depends_on: unknown project {dep!r}",
                    f"known projects: {', '.join(sorted(names)) or 'none'}",
                )
        if name in project.depends_on:
            raise ConfigError(
                f"{path}: projects.{name}.depends_on: a project cannot depend on itself"
            )
    graph = {name: set(p.depends_on) for name, p in config.projects.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = list(reversed(exc.args[1]))
        raise ConfigError(
            f"{path}: projects: dependency cycle {' -> '.join(cycle)}",
            "remove one of these depends_on entries",
        ) from None
    for section in ("overrides", "pre_approved"):
        for name in getattr(config.autonomy, section):
            if name not in names:
                raise ConfigError(f"{path}: autonomy.{section}.{name}: unknown project {name!r}")
    queues: dict[str, str] = {}
    for name, endpoint in config.models.items():
        queue = endpoint.queue_name
        if queue == defaults.DIRECT_QUEUE:
            raise ConfigError(f"{path}: models.{name}.queue: {queue!r} is reserved for git steps")
        if queue in queues:
            raise ConfigError(
                f"{path}: models.{name}.queue: duplicate queue name {queue!r} "
                f"(also used by models.{queues[queue]})"
            )
        queues[queue] = name
