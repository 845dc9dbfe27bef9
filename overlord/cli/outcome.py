"""How a command's end becomes an exit code and at most a one-line message (SPEC §2),
for the typer app and for ``overlord status``'s path past it (``cli.entry``) alike."""

from __future__ import annotations

import sys
from collections.abc import Callable

from overlord.errors import EXIT_BAD_INPUT, OverlordError


def run(work: Callable[[], object]) -> int:
    """``work()``'s exit code: its own when it returns an int, else 0; our errors, typer's
    aborts and exits, usage errors and ^C mapped as SPEC §2 says."""
    from overlord.cli.basics import err_console

    try:
        rc = work()
    except OverlordError as exc:
        from rich.text import Text

        from overlord.core.secrets import redact

        # messages quote user input and tool output: never read them as markup; they
        # may quote a URL or a command's output: never print a secret (SPEC §4.6)
        message = Text.assemble(("error:", "bold red"), " ", redact(exc.message))
        err_console.print(message, soft_wrap=True)
        if exc.hint:
            err_console.print(
                Text.assemble(("hint:", "dim"), " ", redact(exc.hint)), soft_wrap=True
            )
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:
        typer = sys.modules.get("typer")  # only a command typer ran can raise its own
        if typer is not None and isinstance(exc, typer.Abort):
            err_console.print("aborted")
            return 1
        if typer is not None and isinstance(exc, typer.Exit):
            return int(exc.exit_code or 0)
        # Usage errors (missing argument, bad option value) are click exceptions; typer
        # may ship its own copy of click, so recognise them by shape, not by class.
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):
            show()
            return EXIT_BAD_INPUT
        raise
    finally:
        _settle_notifications()
    return rc if isinstance(rc, int) else 0


def _settle_notifications() -> None:
    """Before the command returns: let webhook deliveries this command started finish
    (at most ``defaults.WEBHOOK_EXIT_WAIT`` s; one still running then is recorded as cut
    short)."""
    webhooks = sys.modules.get("overlord.webhooks")
    if webhooks is None or not webhooks.pending():
        return
    if not webhooks.wait_idle(1.0):
        from overlord import defaults
        from overlord.cli.basics import err_console

        err_console.print(
            f"waiting for {webhooks.pending()} webhook delivery(ies), "
            f"at most {defaults.WEBHOOK_EXIT_WAIT:.0f} s"
        )
        webhooks.drain(defaults.WEBHOOK_EXIT_WAIT - 1.0)
