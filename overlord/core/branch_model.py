"""The branch models a project follows (``branch_model`` in SPEC §1), and the main line
each merges finished branches into. Standard library only: ``overlord status`` reads it
without loading the configuration's models."""

from __future__ import annotations

from enum import StrEnum


class BranchModel(StrEnum):
    DEVELOP_MAIN = "develop-main"
    TRUNK = "trunk"


def main_line(model: str) -> list[str]:
    """The branches a finished branch is merged into under ``model``."""
    if model == BranchModel.DEVELOP_MAIN:
        return ["develop", "main"]
    return ["main"]
