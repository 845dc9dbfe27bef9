"""The rich console every command prints through (imported on first use: see
``overlord.cli.common``)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.segment import Segment

from overlord.core.terminal import clean


class SafeConsole(Console):
    """A console whose printed text has its control characters shown escaped: every text
    segment passes through ``terminal.clean`` just before it is written; the console's
    own control sequences (styles, the live display's cursor moves) are kept."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(clean(segment.text), segment.style)
            for segment in buffer
        )
