"""bump-python-version: set ``requires-python`` in each project's pyproject.toml
(``[project]`` table, comments and layout kept) on its source branch and commit, as
bump-version does; undo puts the branch back at its recorded commit (never over a
person's later work: ``commit_step``).

Asked as ``bump python version in LIST to SPEC`` (or ``... to SPEC in LIST``). SPEC is a
version, meaning at least that one (``3.11`` → ``>=3.11``), or a specifier as PEP 440
writes them (``>=3.11``, ``>=3.10,<4``, ``~=3.12``). Refused before anything changes
(exit 2) when SPEC is not a valid specifier, or when a project has no pyproject.toml with
a ``[project]`` table on its source branch, or declares ``requires-python`` dynamic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from overlord.adapters.git.git import Git
from overlord.core.intent import LIST, TO, FormContext, Intent, IntentKind, projects
from overlord.core.paths import inside
from overlord.errors import MetadataError, VersionError
from overlord.kinds import ActionKind
from overlord.kinds.base import Context, Form, Kind, Traits
from overlord.kinds.commit_step import Edit, commit_action

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("bump-python-version")
KEY = "requires-python"
PYPROJECT = "pyproject.toml"
_HINT = "use a version like 3.11 (meaning >=3.11) or a specifier like >=3.11 or >=3.10,<4"
_PHRASE = r"(?:bump|set|raise) (?:the )?(?:python(?: version)?|requires-python)"


def specifier(raw: str) -> str:
    """``requires-python`` for SPEC: a bare version means at least it; a specifier is kept
    as written (its parts in order, spaces dropped). ``VersionError`` otherwise."""
    text = raw.strip()
    if text[:1].isdigit() or text[:1] in ("v", "V"):
        try:
            return f">={Version(text)}"
        except InvalidVersion:
            pass
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        if not parts or not SpecifierSet(text):
            raise InvalidSpecifier(text)
        return ",".join(str(Specifier(part)) for part in parts)
    except InvalidSpecifier:
        raise VersionError(f"invalid Python version specifier {raw.strip()!r}", _HINT) from None


def _intent(m: re.Match[str], ctx: FormContext) -> Intent:
    wanted = specifier(m["spec"])
    names = projects(m["list"], ctx.registry)
    return Intent(
        kind=IntentKind(NAME), text=ctx.text, projects=names, params={"specifier": wanted}
    )


def _project_table(doc: Any, where: str) -> Any:
    """The ``[project]`` table whose ``requires-python`` may be written, else one line."""
    table = doc.get("project")
    if not hasattr(table, "get"):
        raise MetadataError(
            f"{where}: no [project] table",
            "requires-python lives in [project] (PEP 621): add the table, or set it by hand",
        )
    if KEY in (table.get("dynamic") or []):
        raise MetadataError(
            f"{where}: requires-python is dynamic", "set it where the build backend reads it"
        )
    return table


def _check(path: Path, branch: str, project: str) -> None:
    """Refuse, before anything changes, a project whose source branch has no pyproject
    with a ``[project]`` table (a missing repository or branch is preflight's refusal)."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    git = Git(path)
    sha = git.branch_sha(branch) if git.is_repo() else None
    if sha is None:
        return
    where = f"{project}: {PYPROJECT} on {branch}"
    blob = f"{sha}:{PYPROJECT}"
    if not git.ok("cat-file", "-e", blob):
        raise MetadataError(
            f"{where}: no such file", f"add one with a [project] table, or leave {project} out"
        )
    try:
        doc = tomlkit.parse(git.run("show", blob))
    except TOMLKitError as exc:
        raise MetadataError(f"{where}: invalid TOML: {exc}", "fix the file by hand") from None
    _project_table(doc, where)


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    spec = builder.config.projects[project]
    wanted, branch = intent.params["specifier"], spec.source_branch
    _check(spec.path, branch, project)
    builder.add(
        NAME,
        project,
        f"set requires-python to {wanted} in {project} on {branch}, commit",
        specifier=wanted,
        branch=branch,
        branches=[branch],
    )


def _message(ctx: Context) -> str:
    return f"Set requires-python to {ctx.params['specifier']}"


def _edit(ctx: Context) -> Edit:
    import tomlkit

    from overlord.core import metadata

    repo, wanted = ctx.project.path, ctx.params["specifier"]
    path = repo / PYPROJECT
    doc = metadata.read_pyproject(repo)
    table = _project_table(doc, str(path))
    old = table.get(KEY)
    if old is not None and str(old) == wanted:
        return Edit(f"requires-python already {wanted}: nothing to change")
    if old is None:
        table[KEY] = wanted
    else:
        metadata._set_string(table, KEY, wanted)  # keeps the string's quoting
    inside(repo, path).write_text(tomlkit.dumps(doc), encoding="utf-8")
    return Edit(f"requires-python {old or '(none)'} -> {wanted} in {PYPROJECT}", [path])


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=commit_action(_message, _edit),
    forms=(
        Form(rf"{_PHRASE} {TO} (?P<list>.+?) to (?P<spec>.+)", _intent),
        Form(rf"{_PHRASE} to (?P<spec>.+?) {TO} {LIST}", _intent),
    ),
    help=("bump python version in LIST to SPEC",),
    order=75,
    add_steps=_add_steps,
)
