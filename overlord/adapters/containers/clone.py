"""The clone a container minion works in, and bringing its branch back without trusting it.

The container gets a standalone ``git clone --no-hardlinks`` (local branches and tags,
HEAD detached), never the repository itself. Afterwards the branch is fetched from the
clone into the real repository, read-only on the clone's side: nothing is written into the
clone (a link the container planted is never followed), and the fetch is refused when the
container left a link or special file in the clone's git directory, changed its config, or
added object alternates — git would otherwise read through them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from overlord.adapters.containers.result import read_untrusted
from overlord.adapters.git.git import Git
from overlord.errors import GitError

#: Where the container writes its result, inside the clone (relative path).
RESULT_FILE = ".git/overlord-result.json"


def clone(repo: Git, dest: Path) -> bytes:
    """Clone ``repo`` into ``dest`` (HEAD detached at the repo's HEAD); return the clone's
    config (to compare afterwards). A bare clone holds the local branches and tags as
    they are; its config is then made a work tree's, without the remote, with the repo's
    commit identity — four git commands in all."""
    head = repo.head()
    identity = repo.run("config", "--get-regexp", r"^user\.(name|email)$", check=False)
    git_dir = dest / ".git"
    Git(dest.parent).run(
        "clone", "--quiet", "--bare", "--no-hardlinks", str(repo.path), str(git_dir)
    )
    config = git_dir / "config"
    text = re.sub(r"(?m)^(\s*)bare = true$", r"\1bare = false", config.read_text())
    text = re.sub(r'(?ms)^\[remote "origin"\].*?(?=^\[|\Z)', "", text)
    user = [line.split(" ", 1) for line in identity.splitlines() if " " in line]
    if user:
        text += "[user]\n" + "".join(f"\t{k.split('.')[1]} = {_quoted(v)}\n" for k, v in user)
    config.write_text(text)
    Git(dest).run("checkout", "--quiet", "--detach", head)
    return config.read_bytes()


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tampering(work: Path, config: bytes) -> str | None:
    """Why the clone at ``work`` must not be read by git (None when it may)."""
    git_dir = work / ".git"
    try:
        info = os.lstat(git_dir)
    except OSError:
        return "its .git directory is gone"
    if not stat.S_ISDIR(info.st_mode):
        return "its .git is not a directory any more"
    for dirpath, dirnames, filenames in os.walk(git_dir):
        for name in dirnames + filenames:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                rel = os.path.relpath(os.path.join(dirpath, name), work)
                return f"it left a link or special file at {rel}"
    try:
        if read_untrusted(work, ".git/config") != config:
            return "it changed .git/config"
    except OSError as exc:
        return f"its .git/config cannot be read safely ({exc})"
    if os.path.lexists(git_dir / "objects" / "info" / "alternates"):
        return "it added object alternates"
    return None


def fetch_back(repo: Git, work: Path, branch: str, config: bytes) -> str | None:
    """Fetch ``branch`` from the clone into ``repo``; None on success, else the reason.

    The clone belongs to the container's user, so git refuses it unless trusted; ``-c
    safe.directory`` does not reach upload-pack, so trust comes from a one-fetch global
    config beside the clone (in our own scratch directory, which the container never saw).
    """
    problem = tampering(work, config)
    if problem:
        return f"not bringing branch {branch} back: the minion tampered with its clone ({problem})"
    git_dir = work / ".git"
    trust = work.parent / "trust.gitconfig"
    trust.write_text(f"[safe]\n\tdirectory = {git_dir}\n")
    ref = f"refs/heads/{branch}"
    env = {"GIT_CONFIG_GLOBAL": str(trust), "GIT_CONFIG_NOSYSTEM": "1"}
    try:
        repo.run("-c", "protocol.file.allow=always", "fetch", "--quiet", "--no-tags",
                 "--no-write-fetch-head", str(git_dir), f"{ref}:{ref}", env=env)  # fmt: skip
    except GitError as exc:
        return f"could not bring branch {branch} back into {repo.path}: {exc.message}"
    return None
