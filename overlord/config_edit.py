"""Edit the autonomy section of the configuration file, keeping everything else as written.

Edits go through ``ruamel.yaml`` round-trip mode, and only the lines an edit changes are
spliced into the original text: comments, key order, blank lines, quoting and the spacing
of unrelated sections survive byte for byte. The result is validated with
``overlord.core.config.parse`` before it is written (atomically: temp file + ``os.replace``), so
a bad edit never lands.

Use the module functions for one edit, or ``ConfigDocument`` for several edits written at
once::

    doc = ConfigDocument.load(path)
    doc.set_global_level("scheduled")
    doc.approve("app", "run-tests")
    doc.save()
"""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from overlord.core import config as config_mod
from overlord.core.approval import parse_kind
from overlord.core.config import ActionKind, Config, Level
from overlord.errors import ConfigError


def parse_level(value: Level | str) -> Level:
    """A level from its name, or a one-line ``ConfigError`` listing the valid ones."""
    try:
        return Level(str(value).strip().lower())
    except ValueError:
        valid = ", ".join(level.value for level in Level)
        raise ConfigError(f"unknown autonomy level {str(value)!r}: use one of {valid}") from None


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file uses them."""
    mapping: dict[int, int] = {}
    offsets: dict[int, int] = {}
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and line.strip() != "---"
    ]
    for prev, line in zip(lines, lines[1:], strict=False):
        head = prev.split(" #", 1)[0].rstrip()
        if not head.endswith(":") or prev.lstrip().startswith("- "):
            continue
        base = len(prev) - len(prev.lstrip())
        indent = len(line) - len(line.lstrip())
        if line.lstrip().startswith("- "):
            if indent >= base:
                offsets[indent - base] = offsets.get(indent - base, 0) + 1
        elif indent > base:
            mapping[indent - base] = mapping.get(indent - base, 0) + 1
    map_indent = max(mapping, key=mapping.__getitem__) if mapping else 2
    offset = max(offsets, key=offsets.__getitem__) if offsets else 0
    return map_indent, offset + 2, offset


def _yaml(text: str) -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    mapping, sequence, offset = _guess_indent(text)
    rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    return rt


def _dump(rt: YAML, data: Any) -> str:
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _is_trivia(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _hoist(baseline: str, edited: str) -> str:
    """Move keys ruamel appended after a trailing comment block back above that block.

    ruamel attaches the blank lines and comments that follow a mapping's last entry to
    that entry, so a key appended to the mapping lands below them (below "# next
    section" or the file's closing comment). An inserted chunk preceded by such a run
    (one that starts with a blank line, or is less indented than the chunk) is moved
    above the run.
    """
    b_lines = baseline.splitlines(keepends=True)
    n_lines = edited.splitlines(keepends=True)
    out: list[str] = []
    ops = difflib.SequenceMatcher(None, b_lines, n_lines, False).get_opcodes()
    for tag, _, _, n1, n2 in ops:
        chunk = n_lines[n1:n2]
        if tag == "insert" and not _is_trivia(chunk[0]):
            k = len(out)
            while k > 0 and _is_trivia(out[k - 1]):
                k -= 1
            run = out[k:]
            indent = _indent(chunk[0])
            if run and (
                not run[0].strip() or all(not x.strip() or _indent(x) < indent for x in run)
            ):
                out[k:k] = chunk
                continue
        out.extend(chunk)
    hoisted = "".join(out)
    try:
        return hoisted if yaml.safe_load(hoisted) == yaml.safe_load(edited) else edited
    except yaml.YAMLError:
        return edited


def _splice(original: str, baseline: str, edited: str) -> str:
    """Apply the change baseline → edited to ``original`` (which baseline normalises).

    Each changed region is located in ``original`` through the lines baseline and original
    share; if a region cannot be located, or the spliced text does not mean what ``edited``
    means, the whole ``edited`` text is used instead (still comment-preserving).
    """
    if baseline == original:
        return edited
    b_lines = baseline.splitlines(keepends=True)
    o_lines = original.splitlines(keepends=True)
    n_lines = edited.splitlines(keepends=True)
    b_to_o: dict[int, int] = {}
    for tag, b1, b2, o1, _ in difflib.SequenceMatcher(None, b_lines, o_lines, False).get_opcodes():
        if tag == "equal":
            b_to_o.update({b1 + k: o1 + k for k in range(b2 - b1)})
    b_to_o[len(b_lines)] = len(o_lines)
    out = list(o_lines)
    edits = difflib.SequenceMatcher(None, b_lines, n_lines, False).get_opcodes()
    for tag, b1, b2, n1, n2 in reversed(edits):
        if tag == "equal":
            continue
        if b1 == b2:  # pure insertion before baseline line b1
            if b1 in b_to_o:
                start = end = b_to_o[b1]
            elif b1 - 1 in b_to_o:
                start = end = b_to_o[b1 - 1] + 1
            else:
                return edited
        else:
            mapped = [b_to_o.get(i) for i in range(b1, b2)]
            if None in mapped or mapped != list(range(b_to_o[b1], b_to_o[b1] + b2 - b1)):
                return edited
            start, end = b_to_o[b1], b_to_o[b1] + (b2 - b1)
        out[start:end] = n_lines[n1:n2]
    spliced = "".join(out)
    try:
        same = yaml.safe_load(spliced) == yaml.safe_load(edited)
    except yaml.YAMLError:
        same = False
    return spliced if same else edited


def _write_atomic(path: Path, text: str) -> None:
    target = path.resolve()
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ConfigDocument:
    """A configuration file loaded for editing; ``save`` validates and writes it."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.original = text
        self._crlf = "\r\n" in text
        normal = text.replace("\r\n", "\n")
        if normal and not normal.endswith("\n"):
            normal += "\n"
        self._text = normal
        self._yaml = _yaml(normal)
        try:
            data = self._yaml.load(normal)
        except YAMLError as exc:
            raise ConfigError(f"{path}: YAML syntax error: {exc}".splitlines()[0]) from None
        if data is None:
            data = CommentedMap()
        if not isinstance(data, CommentedMap):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        self.data = data
        self._baseline = _dump(self._yaml, data)
        self.changes: list[str] = []

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConfigDocument:
        path = Path(path).expanduser()
        return cls(path, config_mod.read_text(path))

    # --- sections -------------------------------------------------------------

    def _section(self, parent: CommentedMap, key: str, *, flow: bool = False) -> CommentedMap:
        value = parent.get(key)
        if value is None:
            value = CommentedMap()
            if flow:
                value.fa.set_flow_style()
            parent[key] = value
        if not isinstance(value, CommentedMap):
            raise ConfigError(f"{self.path}: {key}: must be a mapping to be edited")
        return value

    def _autonomy(self) -> CommentedMap:
        return self._section(self.data, "autonomy")

    def _approved_list(self, project: str, *, create: bool) -> CommentedSeq | None:
        section = self._autonomy()
        pre = section.get("pre_approved")
        if pre is None and not create:
            return None
        pre = self._section(section, "pre_approved")
        kinds = pre.get(project)
        if kinds is None:
            if not create:
                return None
            kinds = CommentedSeq()
            kinds.fa.set_flow_style()
            pre[project] = kinds
        if not isinstance(kinds, CommentedSeq):
            raise ConfigError(f"{self.path}: autonomy.pre_approved.{project}: must be a list")
        return kinds

    # --- edits --------------------------------------------------------------------

    def set_global_level(self, level: Level | str) -> None:
        value = parse_level(level).value
        section = self._autonomy()
        if "global" in section:
            section["global"] = value
        else:
            section.insert(0, "global", value)
        self.changes.append(f"global level: {value}")

    def set_project_level(self, project: str, level: Level | str) -> None:
        value = parse_level(level).value
        section = self._autonomy()
        overrides = self._section(section, "overrides")
        overrides[project] = value
        self.changes.append(f"{project}: level {value}")

    def clear_project_level(self, project: str) -> None:
        overrides = self._autonomy().get("overrides")
        if not isinstance(overrides, CommentedMap) or project not in overrides:
            raise ConfigError(f"{project} has no autonomy override to clear")
        del overrides[project]
        self.changes.append(f"{project}: level override removed")

    def approve(self, project: str, kind: ActionKind | str) -> None:
        value = parse_kind(kind).value
        kinds = self._approved_list(project, create=True)
        assert kinds is not None
        if value in [str(k) for k in kinds]:
            self.changes.append(f"{project}: {value} already pre-approved")
            return
        kinds.append(value)
        self.changes.append(f"{project}: {value} pre-approved")

    def revoke(self, project: str, kind: ActionKind | str) -> None:
        text = str(kind).strip().lower().replace("_", "-")
        kinds = self._approved_list(project, create=False)
        present = [str(k) for k in kinds] if kinds is not None else []
        if kinds is None or text not in present:
            if text not in {k.value for k in ActionKind}:
                parse_kind(text)  # raises the one-line "unknown action kind" error
            have = ", ".join(present) or "none"
            raise ConfigError(f"{text} is not pre-approved for {project} (pre-approved: {have})")
        del kinds[present.index(text)]
        self.changes.append(f"{project}: {text} no longer pre-approved")

    # --- result -----------------------------------------------------------------------

    def render(self) -> str:
        """The new file text: the original with only the edited lines changed."""
        edited = _hoist(self._baseline, _dump(self._yaml, self.data))
        text = _splice(self._text, self._baseline, edited)
        if self._crlf:
            text = text.replace("\n", "\r\n")
        return text

    def validate(self) -> Config:
        return config_mod.parse(self.render(), self.path)

    def save(self) -> Config:
        """Validate the edited text and write it atomically; return the new configuration."""
        text = self.render()
        config = config_mod.parse(text, self.path)
        if text != self.original:
            _write_atomic(self.path, text)
        return config


def _one(path: str | os.PathLike[str], method: str, *args: str) -> Config:
    doc = ConfigDocument.load(path)
    getattr(doc, method)(*args)
    return doc.save()


def set_global_level(path: str | os.PathLike[str], level: Level | str) -> Config:
    return _one(path, "set_global_level", level)


def set_project_level(path: str | os.PathLike[str], project: str, level: Level | str) -> Config:
    return _one(path, "set_project_level", project, level)


def clear_project_level(path: str | os.PathLike[str], project: str) -> Config:
    return _one(path, "clear_project_level", project)


def approve(path: str | os.PathLike[str], project: str, kind: ActionKind | str) -> Config:
    return _one(path, "approve", project, kind)


def revoke(path: str | os.PathLike[str], project: str, kind: ActionKind | str) -> Config:
    return _one(path, "revoke", project, kind)


__all__ = [
    "ConfigDocument",
    "approve",
    "clear_project_level",
    "parse_level",
    "revoke",
    "set_global_level",
    "set_project_level",
]
