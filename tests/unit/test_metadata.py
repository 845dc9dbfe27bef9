"""Packaging metadata: reading, version bumps and pin rewrites keep the files intact."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.version import Version

from overlord.core import metadata
from overlord.errors import MetadataError, VersionError

PEP621 = """\
# Acme API — hand-written, keep these comments
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-api"
version = '0.1.0'  # bumped by overlord release
description = "Acme API"
dependencies = [
    "acme-core>=0.1.0",  # the shared library
    # pinned on purpose:
    "requests>=2.28",
]

[project.optional-dependencies]
redis = ["acme-core[redis]>=0.1; python_version>'3.8'"]
web = [
  'acme-web~=0.1',
]

[tool.ruff]
line-length = 100  # team standard
"""


def write(repo: Path, rel: str, text: str) -> Path:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="pyproject.toml: no such file"):
        metadata.read_pyproject(tmp_path)
    write(tmp_path, "pyproject.toml", "[project\nname=")
    with pytest.raises(MetadataError, match="pyproject.toml: invalid TOML"):
        metadata.read_pyproject(tmp_path)
    assert metadata.distribution_name(tmp_path / "nowhere") is None


def test_pep621_reading(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", PEP621)
    assert metadata.distribution_name(tmp_path) == "acme-api"
    assert metadata.version_source(tmp_path) == "project"
    assert metadata.current_version(tmp_path) == Version("0.1.0")
    names = [r.name for r in metadata.dependencies(tmp_path)]
    assert names == ["acme-core", "requests", "acme-core", "acme-web"]
    known = {"acme-core": "core", "acme-web": "web", "acme-api": "api"}
    assert metadata.depends_on_names(tmp_path, known) == ["core", "web"]


def test_poetry_reading_and_version(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        '[tool.poetry]\nname = "Acme_Web"\nversion = "1.2.3"  # keep\n\n'
        '[tool.poetry.dependencies]\npython = "^3.10"\nacme-core = "^0.1.0"\n'
        'acme-api = {version = "~0.1", extras = ["x"]}\n\n'
        '[tool.poetry.group.dev.dependencies]\npytest = ">=8"\n',
    )
    write(tmp_path, "acme_web/__init__.py", '__version__ = "1.2.3"\n')
    assert metadata.version_source(tmp_path) == "poetry"
    assert metadata.current_version(tmp_path) == Version("1.2.3")
    assert [r.name for r in metadata.dependencies(tmp_path)] == ["acme-core", "acme-api", "pytest"]
    changed = metadata.set_version(tmp_path, "v1.3.0")
    assert changed == [tmp_path / "pyproject.toml", tmp_path / "acme_web/__init__.py"]
    assert 'version = "1.3.0"  # keep' in (tmp_path / "pyproject.toml").read_text()
    core = metadata.rewrite_pin(tmp_path, "acme_core", "0.2.0")
    assert core.changed and core.new == ["acme-core = ^0.2.0"]
    api = metadata.rewrite_pin(tmp_path, "acme-api", "0.3.0")
    text = (tmp_path / "pyproject.toml").read_text()
    assert api.changed and 'acme-api = {version = "~0.3", extras = ["x"]}' in text
    assert 'acme-core = "^0.2.0"' in text


def test_dynamic_version_is_left_alone(tmp_path: Path) -> None:
    text = '[project]\nname = "acme-core"\ndynamic = ["version"]\n\n[tool.setuptools_scm]\n'
    write(tmp_path, "pyproject.toml", text)
    write(tmp_path, "acme_core/__init__.py", "from importlib.metadata import version\n")
    assert metadata.version_source(tmp_path) == "dynamic"
    assert metadata.current_version(tmp_path) is None
    assert metadata.set_version(tmp_path, "0.2.0") == []
    assert (tmp_path / "pyproject.toml").read_text() == text


def test_dynamic_version_from_attr_updates_the_literal(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        '[project]\nname = "acme-core"\ndynamic = ["version"]\n\n'
        '[tool.setuptools.dynamic]\nversion = {attr = "acme_core.__version__"}\n',
    )
    init = write(tmp_path, "src/acme_core/__init__.py", "__version__ = '0.1.0'\n")
    assert metadata.set_version(tmp_path, "0.2.0") == [init]
    assert init.read_text() == "__version__ = '0.2.0'\n"


def test_no_version_at_all_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n')
    assert metadata.version_source(tmp_path) == "none"
    with pytest.raises(MetadataError, match="no version to set"):
        metadata.set_version(tmp_path, "0.2.0")


@pytest.mark.parametrize(
    "rel",
    [
        "acme_api/__init__.py",
        "src/acme_api/__init__.py",
        "acme_api/_version.py",
        "acme_api/__about__.py",
    ],
)
def test_set_version_updates_version_literal(tmp_path: Path, rel: str) -> None:
    write(tmp_path, "pyproject.toml", PEP621)
    module = write(tmp_path, rel, '"""Doc."""\n\n__version__: str = "0.1.0"  # here\nX = 1\n')
    changed = metadata.set_version(tmp_path, "0.2.0rc1")
    assert changed == [tmp_path / "pyproject.toml", module]
    assert module.read_text() == '"""Doc."""\n\n__version__: str = "0.2.0rc1"  # here\nX = 1\n'
    after = (tmp_path / "pyproject.toml").read_text()
    assert after == PEP621.replace("version = '0.1.0'", "version = '0.2.0rc1'")


def test_set_version_single_top_level_package(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "weird-dist"\nversion = "1.0"\n')
    pkg = write(tmp_path, "src/pkg/__init__.py", "__version__ = '1.0'\n")
    write(tmp_path, "tests/__init__.py", "")
    assert metadata.set_version(tmp_path, "1.1") == [tmp_path / "pyproject.toml", pkg]
    assert pkg.read_text() == "__version__ = '1.1'\n"


def test_parse_version() -> None:
    assert metadata.parse_version("v0.2.0") == Version("0.2.0")
    assert metadata.parse_version(" 1.0.0-rc.1 ") == Version("1.0.0rc1")
    for bad in ("banana", "1.0.0-x.7.z.92", "", "vv1"):
        with pytest.raises(VersionError, match="not a valid version") as info:
            metadata.parse_version(bad)
        assert info.value.hint and "PEP 440" in info.value.hint


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("acme-core>=0.1.0", "acme-core>=0.2.0"),
        ("acme-core==0.1.0", "acme-core==0.2.0"),
        ("acme-core~=0.1.0", "acme-core~=0.2.0"),
        ("acme-core~=0.1", "acme-core~=0.2"),
        ("acme-core>=0.1,<0.2", "acme-core>=0.2,<0.3"),
        ("acme-core>=1.0,<2.0", "acme-core>=2.0,<3.0"),
        ("acme-core==0.1.*", "acme-core==0.2.*"),
        ("acme-core (>=0.1.0)", "acme-core (>=0.2.0)"),
        (
            "acme-core[redis]>=0.1; python_version>'3.8'",
            "acme-core[redis]>=0.2; python_version>'3.8'",
        ),
        ("Acme_Core >= 0.1.0 ; extra == 'x'", "Acme_Core >= 0.2.0 ; extra == 'x'"),
    ],
)
def test_rewrite_keeps_operator_extras_and_markers(tmp_path: Path, old: str, new: str) -> None:
    target = "2.0.0" if "<3.0" in new else "0.2.0"
    write(
        tmp_path,
        "pyproject.toml",
        f'[project]\nname = "x"\nversion = "1"\ndependencies = ["{old}"]\n',
    )
    change = metadata.rewrite_pin(tmp_path, "acme-core", target)
    assert change.changed and change.old == [old] and change.new == [new]
    assert Requirement(new).specifier.contains(target)
    assert metadata.dependencies(tmp_path)[0] == Requirement(new)


def test_rewrite_every_group_and_preserve_everything_else(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", PEP621)
    change = metadata.rewrite_pin(tmp_path, "ACME.core", Version("0.2.0"))
    assert change.changed and change.file == tmp_path / "pyproject.toml"
    assert change.new == ["acme-core>=0.2.0", "acme-core[redis]>=0.2; python_version>'3.8'"]
    expected = PEP621.replace('"acme-core>=0.1.0"', '"acme-core>=0.2.0"').replace(
        "[redis]>=0.1;", "[redis]>=0.2;"
    )
    assert (tmp_path / "pyproject.toml").read_text() == expected


def test_rewrite_unchanged_cases(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\nversion = "1"\ndependencies = ["acme-core"]\n'
    write(tmp_path, "pyproject.toml", text)
    change = metadata.rewrite_pin(tmp_path, "acme-core", "0.2.0")
    assert not change.changed and "no version specifier" in change.reason
    text2 = text.replace('"acme-core"', '"acme-core>=0.2.0"')
    write(tmp_path, "pyproject.toml", text2)
    change = metadata.rewrite_pin(tmp_path, "acme-core", "0.2.0")
    assert not change.changed and "already" in change.reason
    assert (tmp_path / "pyproject.toml").read_text() == text2
    with pytest.raises(MetadataError, match="does not depend on acme-web"):
        metadata.rewrite_pin(tmp_path, "acme-web", "0.2.0")


versions = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)).map(
    lambda t: Version(".".join(map(str, t)))
)


@settings(max_examples=150, deadline=None)
@given(
    v1=versions,
    v2=versions,
    op=st.sampled_from([">=", "==", "~="]),
    width=st.integers(2, 3),
    literal=st.booleans(),
)
def test_property_rewrite_admits_and_keeps_operator(
    v1: Version, v2: Version, op: str, width: int, literal: bool
) -> None:
    if v1 == v2:
        return
    v1, v2 = min(v1, v2), max(v1, v2)
    pin = f"acme-core{op}{'.'.join(map(str, v1.release[:width]))}"
    q = "'" if literal else '"'
    original = (
        '# header comment\n[project]\nname = "app"  # name\nversion = "1.0"\n'
        f'dependencies = [\n    {q}{pin}{q},  # the pin\n    "requests>=2",\n]\n'
        "\n[tool.other]\nkeep = [1, 2]  # untouched\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "pyproject.toml").write_text(original)
        change = metadata.rewrite_pin(repo, "acme-core", v2)
        after = (repo / "pyproject.toml").read_text()
    new_pin = change.new[0]
    req = Requirement(new_pin)
    assert req.specifier.contains(v2)
    assert [s.operator for s in req.specifier] == [op]
    before_lines, after_lines = original.splitlines(), after.splitlines()
    assert len(before_lines) == len(after_lines)
    differing = [
        i for i, (a, b) in enumerate(zip(before_lines, after_lines, strict=True)) if a != b
    ]
    assert differing in ([], [5])
    assert after_lines[5] == f"    {q}{new_pin}{q},  # the pin"
