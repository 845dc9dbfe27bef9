"""Text from outside (repositories, tests, models, the state database) made safe to print.

``clean`` shows every C0 and C1 control character except newline and tab escaped
(``ESC`` becomes the four characters ``\\x1b``), and the Unicode bidirectional overrides
too: a commit subject or a test's output cannot move the cursor, clear the screen, retitle
the terminal or reorder what the person reads before approving (SPEC §4.6). The CLI's
consoles pass everything they print through it (``overlord.cli.common``). ``one_line``
makes a name safe to show within one line (task display names, notifications).
"""

from __future__ import annotations

import re
import unicodedata

from overlord import defaults

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` with control characters (but newline and tab) shown escaped."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text.replace("\r\n", "\n"))


def one_line(text: str, limit: int = defaults.DISPLAY_NAME_LIMIT) -> str:
    """``text`` safe to print in one line: control/format characters dropped, runs of
    white space as one space, at most ``limit`` characters (cut with an ellipsis)."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or not unicodedata.category(ch).startswith("C")
    )
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
