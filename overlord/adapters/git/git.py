"""The one adapter for git: every git call Overlord makes goes through ``Git``.

Commands run as argument lists (never through a shell), with a timeout, ``LC_ALL=C``
(stable messages to parse) and ``GIT_TERMINAL_PROMPT=0`` (never wait for a password).
A failing command raises ``GitError`` naming the command and git's last stderr line;
a missing path or a directory that is not a repository raises ``RepoNotFound``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from overlord import defaults
from overlord.adapters.git.porcelain import SEP as _SEP
from overlord.adapters.git.porcelain import parse_date, parse_status_v2
from overlord.adapters.git.refs import branch_ref, check_branch, tag_ref, without_repository_vars
from overlord.errors import GitError, RepoNotFound

_NOT_A_REPO = ("not a git repository", "cannot change to")
_OPERATIONS = (
    ("MERGE_HEAD", "merge"),
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
    ("BISECT_LOG", "bisect"),
)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def kill_group(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


class Git:
    """git commands in one working tree (or bare repository) at ``path``."""

    def __init__(self, path: Path | str, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout if timeout is not None else defaults.GIT_TIMEOUT

    def __repr__(self) -> str:
        return f"Git({str(self.path)!r})"

    # --- running ---------------------------------------------------------------

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        from overlord.core.secrets import PROXY_ENV, scrubbed_env

        # git runs the repository's hooks: they get no secret (a proxy git needs is kept);
        # GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE ... of the caller (a hook, a shell) never
        # send git to another repository than the project's
        env = without_repository_vars(scrubbed_env(keep=PROXY_ENV))
        env.update(LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0")
        # The project path itself must be the repository: never pick up an enclosing one.
        env["GIT_CEILING_DIRECTORIES"] = str(self.path.resolve().parent)
        if extra:
            env.update(extra)
        return env

    def run(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        input: str | None = None,
    ) -> str:
        """Run ``git ARGS`` in the repository; return stdout without its trailing newline."""
        return self._run(args, check=check, env=env, timeout=timeout, input=input).stdout.rstrip(
            "\n"
        )

    def _run(
        self,
        args: Iterable[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv, full_env = self.command(args, env)
        limit = timeout if timeout is not None else self.timeout
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=full_env,
                start_new_session=True,  # so a timeout can stop git's children too
            )
        except FileNotFoundError:
            raise self.not_installed() from None
        try:
            stdout, stderr = proc.communicate(input, timeout=limit)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            _, stderr = proc.communicate()
            raise self.timed_out(argv, limit, stderr or "") from None
        except BaseException:  # KeyboardInterrupt: do not leave git running
            kill_group(proc)
            proc.wait()
            raise
        return self.checked(
            subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr), check=check
        )

    def command(
        self, args: Iterable[str], env: Mapping[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The argument list and environment of ``git ARGS`` here; ``RepoNotFound`` when
        the path is no directory (nothing is started then)."""
        if not self.path.is_dir():
            raise RepoNotFound(
                f"{self.path}: no such directory", "check the project's path in the config"
            )
        return self.argv(args), self._env(env)

    def argv(self, args: Iterable[str]) -> list[str]:
        return ["git", "-C", str(self.path), *(str(a) for a in args)]

    def not_installed(self) -> GitError:
        return GitError("git is not installed or not on PATH", "install git")

    def timed_out(self, argv: list[str], limit: float, stderr: str) -> GitError:
        return GitError(
            f"`git {' '.join(argv[3:])}` in {self.path} timed out after {limit:g}s",
            "raise the timeout or check for a hung remote or hook",
            stderr=stderr,
        )

    def checked(
        self, result: subprocess.CompletedProcess[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``result`` of a finished ``command``, or (``check`` and a non-zero exit) the
        ``GitError`` / ``RepoNotFound`` it means."""
        if not check or result.returncode == 0:
            return result
        stdout, stderr = result.stdout, result.stderr
        last = _last_line(stderr) or _last_line(stdout) or f"exit {result.returncode}"
        if any(marker in stderr for marker in _NOT_A_REPO):
            raise RepoNotFound(
                f"{self.path}: not a git repository",
                "check the project's path in the config",
                stderr=stderr,
            )
        command = "git " + " ".join(result.args[3:])
        raise GitError(f"`{command}` failed in {self.path}: {last}", stderr=stderr)

    def ok(self, *args: str) -> bool:
        """Whether ``git ARGS`` exits 0 (a missing repository counts as not ok)."""
        try:
            return self._run(args, check=False).returncode == 0
        except RepoNotFound:
            return False

    # --- inspecting --------------------------------------------------------------

    def is_repo(self) -> bool:
        return self.path.is_dir() and self.ok("rev-parse", "--git-dir")

    def git_dir(self) -> Path:
        out = self.run("rev-parse", "--absolute-git-dir")
        return Path(out)

    def current_branch(self) -> str | None:
        """The checked-out branch, or None when HEAD is detached."""
        out = self._run(["symbolic-ref", "-q", "HEAD"], check=False)
        if out.returncode != 0:
            if "not a git repository" in out.stderr:
                raise RepoNotFound(f"{self.path}: not a git repository", stderr=out.stderr)
            return None
        # not ``--short``: it answers ``heads/main`` when a tag ``main`` exists too
        return out.stdout.strip().removeprefix("refs/heads/") or None

    def head(self) -> str:
        return self.run("rev-parse", "--verify", "HEAD^{commit}")

    def rev(self, ref: str) -> str | None:
        """The commit ``ref`` points to, or None when there is no such commit."""
        out = self._run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], check=False)
        return (out.stdout.strip() or None) if out.returncode == 0 else None

    def ref_target(self, ref: str) -> str | None:
        """The raw object id ``ref`` names (an annotated tag's own id, not its commit)."""
        out = self._run(["rev-parse", "--verify", "--quiet", ref], check=False)
        return (out.stdout.strip() or None) if out.returncode == 0 else None

    def branch_exists(self, name: str) -> bool:
        return self.ok("show-ref", "--verify", "--quiet", branch_ref(name))

    def tag_exists(self, name: str) -> bool:
        return self.ok("show-ref", "--verify", "--quiet", tag_ref(name))

    def branch_sha(self, name: str) -> str | None:
        """The tip of branch ``name`` (exactly ``refs/heads/<name>``), or None."""
        out = self._run(["show-ref", "--verify", "--hash", branch_ref(name)], check=False)
        return (out.stdout.strip() or None) if out.returncode == 0 else None

    def _refs(self, *patterns: str, fmt: str, extra: Iterable[str] = ()) -> list[list[str]]:
        out = self.run("for-each-ref", f"--format={fmt}", *extra, *patterns)
        return [line.split(_SEP) for line in out.splitlines() if line]

    def branches(self) -> dict[str, str]:
        """Local branch name → tip commit sha."""
        rows = self._refs("refs/heads", fmt=f"%(refname:lstrip=2){_SEP}%(objectname)")
        return {name: sha for name, sha in rows}

    def tags(self) -> dict[str, str]:
        """Tag name → commit sha (annotated tags peeled)."""
        fmt = f"%(refname:lstrip=2){_SEP}%(objectname){_SEP}%(*objectname)"
        return {name: peeled or sha for name, sha, peeled in self._refs("refs/tags", fmt=fmt)}

    def branch_tips(self) -> dict[str, tuple[str, datetime]]:
        """Local branch name → (tip sha, committer date)."""
        fmt = f"%(refname:lstrip=2){_SEP}%(objectname){_SEP}%(committerdate:iso-strict)"
        return {n: (sha, parse_date(d)) for n, sha, d in self._refs("refs/heads", fmt=fmt)}

    def recent_tags(self, n: int = 3) -> list[dict[str, Any]]:
        """The ``n`` newest tags (by creator date): ``{"name", "date"}`` (date ISO-8601)."""
        fmt = f"%(refname:lstrip=2){_SEP}%(creatordate:iso-strict)"
        rows = self._refs("refs/tags", fmt=fmt, extra=["--sort=-creatordate", f"--count={n}"])
        return [{"name": name, "date": date} for name, date in rows]

    def last_commit(self, ref: str = "HEAD") -> dict[str, str]:
        """``{"sha", "date", "subject"}`` of the commit at ``ref`` (date ISO-8601)."""
        out = self.run("log", "-1", f"--format=%H{_SEP}%cI{_SEP}%s", ref, "--")
        sha, date, subject = out.split(_SEP, 2)
        return {"sha": sha, "date": date, "subject": subject}

    def merged_into(self, *branches: str) -> list[str]:
        """Local branches whose tips are reachable from any of ``branches``."""
        extra = [f"--merged={branch_ref(b)}" for b in branches]
        return [row[0] for row in self._refs("refs/heads", fmt="%(refname:lstrip=2)", extra=extra)]

    def status_counts(self) -> dict[str, int]:
        """Counts of staged, modified (unstaged), untracked and conflicted paths."""
        out = self.run("status", "--porcelain=v2", "--untracked-files=normal")
        return parse_status_v2(out)["counts"]

    def is_dirty(self) -> bool:
        """Tracked changes (staged or not) or untracked files."""
        return bool(self.run("status", "--porcelain=v1", "--untracked-files=normal"))

    def operation_in_progress(self) -> str | None:
        """merge / rebase / cherry-pick / revert / bisect when one is under way."""
        gd = self.git_dir()
        for marker, name in _OPERATIONS:
            if (gd / marker).exists():
                return name
        return None

    def upstream(self, branch: str) -> str | None:
        out = self._run(
            ["rev-parse", "--abbrev-ref", "--symbolic-full-name", f"{check_branch(branch)}@{{u}}"],
            check=False,
        )
        return (out.stdout.strip() or None) if out.returncode == 0 else None

    def ahead_behind(self, branch: str, upstream: str) -> tuple[int, int]:
        """(commits on ``branch`` not on ``upstream``, commits on ``upstream`` not on ``branch``)."""
        out = self.run("rev-list", "--left-right", "--count", f"{branch_ref(branch)}...{upstream}")
        ahead, behind = out.split()
        return int(ahead), int(behind)

    def remotes(self) -> list[str]:
        return self.run("remote").split()

    def remote_named(self, spec: str) -> str | None:
        """The git remote a config's ``remote`` means: a remote of that name, or (for
        ``owner/repo``) the remote whose URL ends with it; None when there is none."""
        names = self.remotes()
        if spec in names:
            return spec
        if "/" not in spec:
            return None
        wanted = spec.strip("/").removesuffix(".git")
        for name in names:
            url = (self.remote_url(name) or "").rstrip("/").removesuffix(".git")
            if url == wanted or url.endswith(("/" + wanted, ":" + wanted)):
                return name
        return None

    def remote_url(self, name: str) -> str | None:
        out = self._run(["remote", "get-url", name], check=False)
        return (out.stdout.strip() or None) if out.returncode == 0 else None

    def ls_remote(self, remote: str) -> dict[str, str]:
        """Ref name → object id on ``remote`` (``refs/heads/main``, ``refs/tags/v1`` ...)."""
        out = self.run("ls-remote", "--refs", remote)
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            refs[name] = sha
        return refs

    # --- changing --------------------------------------------------------------

    def checkout(self, branch: str) -> None:
        """Check out branch ``branch`` (exactly that branch), or detach at a commit id."""
        if len(branch) == 40 and all(c in "0123456789abcdef" for c in branch):
            self.run("checkout", "-q", "--detach", branch, "--")
        elif self.branch_sha(branch) is None:
            raise GitError(f"{self.path}: no branch {branch!r} to check out")
        else:  # a local branch wins over a tag of the same name in ``checkout``
            self.run("checkout", "-q", "--no-guess", branch, "--")

    def create_branch(self, name: str, start: str) -> None:
        """Create ``refs/heads/<name>`` at commit ``start`` (refused if it exists)."""
        self.run("update-ref", f"refs/heads/{name}", start, "")

    def delete_branch(self, name: str) -> None:
        self.run("branch", "-D", "--", name)

    def update_ref(self, ref: str, sha: str) -> None:
        self.run("update-ref", ref, sha)

    def reset_hard(self, sha: str) -> None:
        self.run("reset", "-q", "--hard", sha)

    def merge_no_ff(self, src: str, message: str) -> str:
        """Merge ``src`` into the current branch with a merge commit; return the new HEAD.

        On a conflict the merge is aborted (the tree is left as it was) and GitError raised.
        """
        ref = branch_ref(src)  # the branch, never a tag or commit that shares its name
        proc = self._run(["merge", "--no-ff", "--no-edit", "-m", message, ref], check=False)
        if proc.returncode != 0:
            conflicted = (self.git_dir() / "MERGE_HEAD").exists()
            if conflicted:
                self._run(["merge", "--abort"], check=False)
            detail = _last_line(proc.stderr) or _last_line(proc.stdout)
            what = "conflicts" if conflicted else "failed"
            raise GitError(
                f"`git merge --no-ff {src}` {what} in {self.path}: {detail}"
                + (" (merge aborted)" if conflicted else ""),
                "resolve the conflict by hand, then run again" if conflicted else None,
                stderr=proc.stderr + proc.stdout,
            )
        return self.head()

    def tag_annotated(self, name: str, message: str, ref: str = "HEAD") -> None:
        tag_ref(name)
        self.run("tag", "-a", "-m", message, "--", name, ref)

    def delete_tag(self, name: str) -> None:
        self.run("update-ref", "-d", tag_ref(name))

    def commit_paths(self, paths: Iterable[str | Path], message: str) -> str:
        """Stage ``paths`` and commit them; return the new commit sha."""
        names = [str(p) for p in paths]
        self.run("add", "--", *names)
        self.run("commit", "-q", "-m", message, "--", *names)
        return self.head()

    def fetch(self, remote: str) -> None:
        self.run("fetch", "--quiet", "--prune", "--tags", remote)

    def push_atomic(self, remote: str, refspecs: list[str]) -> None:
        """Push all ``refspecs`` or none of them."""
        self.run("push", "--atomic", "--porcelain", remote, *refspecs)

    def worktree_add(self, path: Path | str, branch: str, base: str) -> None:
        """A new worktree at ``path`` on a new branch ``branch`` starting at ``base``."""
        self.run("worktree", "add", "-q", "-b", branch, str(path), base)

    def worktree_remove(self, path: Path | str) -> None:
        self.run("worktree", "remove", "--force", str(path))
        self._run(["worktree", "prune"], check=False)
