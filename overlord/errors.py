"""One error hierarchy for Overlord.

Every error carries a one-line message that says what went wrong and, where it
helps, a hint of what to do. The CLI maps them to exit codes in one place
(``overlord.cli.app.run``): ``exit_code`` is 2 for bad input or configuration,
1 for work that ran and failed, 3 for a plan waiting for approval.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PENDING = 3


class OverlordError(Exception):
    """Base of every error Overlord raises on purpose."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


# --- bad input and configuration (exit 2) ---------------------------------


class ConfigError(OverlordError):
    """The configuration file is missing, unreadable or invalid."""


class ProjectLookupError(OverlordError):
    """A project name is unknown or ambiguous."""


class ParseError(OverlordError):
    """A task instruction could not be understood."""


class NoFormMatches(ParseError):
    """No supported form matches the text (the planning model may translate it)."""


class TranslationRefused(ParseError):
    """The model's translation has a line the parser refuses: nothing is planned."""


class TranslationUnavailable(OverlordError):
    """No model could translate the text (none configured, every tier down, ...)."""


class VersionError(OverlordError):
    """A version string is not valid or not acceptable here."""


class PlanError(OverlordError):
    """A plan cannot be built or run as asked (bad DAG, unsupported step...)."""


class PlanNotFound(OverlordError):
    """No persisted plan has the given id."""


class GitError(OverlordError):
    """A git command failed."""

    def __init__(self, message: str, hint: str | None = None, *, stderr: str = "") -> None:
        super().__init__(message, hint)
        self.stderr = stderr


class RepoNotFound(GitError):
    """A project's path is missing or is not a git repository."""


class DirtyTree(GitError):
    """A working tree has uncommitted changes where a clean one is needed."""


class MissingBranch(GitError):
    """A branch the work needs does not exist."""


class BadRefName(GitError):
    """A branch or tag name that is not exactly one (a revision expression, ``-x``)."""


class BrokerUnavailable(OverlordError):
    """The Celery broker cannot be reached."""


class EndpointUnavailable(OverlordError):
    """No model endpoint of the wanted tier is healthy."""


class SandboxUnavailable(OverlordError):
    """Code work needs a sandbox (a Docker engine) and none answers."""


class MetadataError(OverlordError):
    """Packaging metadata (pyproject.toml) cannot be read or edited as needed."""


class KindError(OverlordError):
    """An action kind module is missing or incomplete (``tests/integration/test_kinds.py`` names what)."""


class PushRefused(OverlordError):
    """A push would send something other than what the plan tested (a branch moved)."""


# --- execution (exit 1) ----------------------------------------------------


class StepFailed(OverlordError):
    """A step ran and failed (``output`` keeps what it printed)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, *, output: str = "") -> None:
        super().__init__(message, hint)
        self.output = output


class SlotTimeout(StepFailed):
    """No slot (of an endpoint's ``concurrent``) became free in time (``ports.Slots``)."""


class ExecutionFailed(OverlordError):
    """A plan ran and failed (and was rolled back when configured to)."""

    exit_code = EXIT_FAILED


# --- approval (exit 3) ------------------------------------------------------


class ApprovalRequired(OverlordError):
    """The plan was saved as pending and waits for a person's approval."""

    exit_code = EXIT_PENDING
