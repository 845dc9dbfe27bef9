"""``overlord status``'s git reads, started before the command line has loaded.

Loading the CLI (typer, pydantic, the configuration's models) keeps one core busy for a
couple of hundred milliseconds while git could already be reading the repositories.
``begin(argv)``, called first by the entry point, looks at the arguments: for a plain
``status [--json] [--config PATH]`` it reads the project paths from the configuration
file (the YAML alone, nothing validated) and starts, in a background thread, the two
read-only calls the scanner makes of every repository (``batch.Call``: argument lists,
the environment ``Git`` gives). The validated configuration stays the authority: the
scanner adopts a prefetched call only where it asks exactly the same (argument list and
environment) of a path of that configuration (``Prefetch.adopt``); everything else is
dropped. Anything unexpected (a file that does not parse, other arguments) means no
prefetch, and the command then reports the configuration as it always does.

When the file's very bytes were validated before (``core.status_config``: its digest),
the paths come from the digest instead of the YAML, and ``begin`` hands the digest on
(``Plain.known``) so that the command does not validate the file again.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from overlord.adapters.git.batch import Call, run_all
from overlord.adapters.git.git import Git
from overlord.adapters.git.porcelain import REFS_ARGS, STATUS_ARGS
from overlord.core import status_config
from overlord.core.config_file import config_path, expand, workspace_base

_started: Prefetch | None = None


class Prefetch:
    """The calls started early, running in a background thread."""

    def __init__(self, calls: list[Call]) -> None:
        self.calls = {tuple(call.argv): call for call in calls if call.argv}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overlord-prefetch", daemon=True)

    def _run(self) -> None:
        try:
            run_all(list(self.calls.values()), stop=self._stop)
        except Exception:  # never the command's failure: the scanner asks again
            self.calls = {}

    def start(self) -> None:
        self._thread.start()
        atexit.register(self.stop)  # a command that fails early leaves no git running

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def adopt(self, *calls: Call) -> None:
        """Give each of ``calls`` the outcome of the prefetched call that ran exactly
        its argument list in exactly its environment, if there is one (what is not
        adopted stays in ``calls``, unused)."""
        self._thread.join()
        for call in calls:
            key = tuple(call.argv)
            early = self.calls.get(key)
            if early is None or not early.done or early.env != call.env or call.done:
                continue
            call.result, call.error = early.result, early.error
            del self.calls[key]


def status_reads(git: Git) -> list[Call]:
    """The two reads ``overlord status`` makes of every repository (in one environment):
    ``status --porcelain=v2 --branch`` and ``for-each-ref`` of branches and tags."""
    status = Call(git, *STATUS_ARGS)
    return [status, Call(git, *REFS_ARGS, like=status)]


def started() -> Prefetch | None:
    """The prefetch ``begin`` started in this process (once: the next caller gets None)."""
    global _started
    found, _started = _started, None
    return found


class Plain(NamedTuple):
    """A plain ``overlord [--config G] status [--json] [--config C]`` command line."""

    json: bool
    command: str | None  # the command's own --config
    group: str | None  # the one before the command (it sets $OVERLORD_CONFIG)
    #: the file's digest, when these very bytes were validated before
    known: status_config.StatusConfig | None = None


def plain_status(argv: Sequence[str]) -> Plain | None:
    """``argv`` read as a plain ``status`` command line; None for any other (arguments,
    ``--fetch``, ``--help``, another command ...), which typer reads."""
    args = list(argv)
    group: str | None = None
    command: str | None = None
    json = seen_status = False
    while args:
        arg = args.pop(0)
        if arg in ("--config", "-c") and args:
            value = args.pop(0)
        elif arg.startswith("--config="):
            value = arg.removeprefix("--config=")
        elif arg == "status" and not seen_status:
            seen_status = True
            continue
        elif arg == "--json" and seen_status:
            json = True
            continue
        else:
            return None
        if seen_status:
            command = value
        else:
            group = value
    return Plain(json, command, group) if seen_status else None


def begin(argv: Sequence[str]) -> Plain | None:
    """For a plain ``status`` command line: do what its ``--config`` before the command
    does (set ``$OVERLORD_CONFIG``), start the reads, and return the command line."""
    global _started
    plain = plain_status(argv)
    if plain is None:
        return None
    if plain.group:
        os.environ["OVERLORD_CONFIG"] = plain.group
    try:
        path = config_path(plain.command or None)
        known = status_config.lookup(path)
        calls = _calls(path) if known is None else _known_calls(known)
    except Exception:  # the CLI reads the file again and says what is wrong with it
        return plain
    plain = plain._replace(known=known)
    if calls:
        _started = Prefetch(calls)
        _started.start()
    return plain


def _known_calls(known: status_config.StatusConfig) -> list[Call]:
    from overlord.core import secrets

    secrets.add_names(known.secret_names)
    return [call for p in known.projects.values() for call in status_reads(Git(p.path))]


def _calls(path: Path) -> list[Call]:
    import yaml

    data = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, dict):
        return []
    _register_secret_names(data)
    workspace = data.get("workspace")
    base = workspace_base(path, workspace if isinstance(workspace, str) else None)
    calls: list[Call] = []
    for project in projects.values():
        where = project.get("path") if isinstance(project, dict) else None
        if isinstance(where, str):
            git = Git(expand(where, base))
            calls += status_reads(git)
    return calls


def _register_secret_names(data: dict[str, Any]) -> None:
    """The variables the file names as secrets stay out of git's environment, as they
    do once the file is validated (names only: a file the CLI then refuses adds none
    that it would not have added)."""
    from overlord.core import secrets

    names: list[str] = []
    models = data.get("models")
    for model in models.values() if isinstance(models, dict) else ():
        if isinstance(model, dict) and isinstance(model.get("api_key_env"), str):
            names.append(model["api_key_env"])
    hooks = data.get("notify")
    for hook in hooks if isinstance(hooks, list) else ():
        if isinstance(hook, dict) and isinstance(hook.get("url_env"), str):
            names.append(hook["url_env"])
    secrets.add_names(names)
