"""Asking on a terminal, and failing with one clear line (never hanging) when there is none."""

from __future__ import annotations

import getpass
import sys

from ..errors import UserError


def _require_terminal(what: str, how: str) -> None:
    if not sys.stdin.isatty():
        raise UserError(f"no terminal to ask for {what}: {how}")


def ask(question: str, what: str, how: str, default: str | None = None) -> str:
    """One line of input; `default` when the answer is empty. `how` tells a script what to pass instead."""
    _require_terminal(what, how)
    suffix = f" [{default}]" if default else ""
    try:
        answer = input(f"{question}{suffix}: ").strip()
    except EOFError:
        raise UserError(f"no answer for {what}: {how}") from None
    return answer or (default or "")


def ask_secret(question: str, what: str, how: str) -> str:
    """A secret, typed without echo; it is returned and never shown."""
    _require_terminal(what, how)
    try:
        return getpass.getpass(f"{question}: ")
    except EOFError:
        raise UserError(f"no answer for {what}: {how}") from None


def confirm(question: str, yes: bool) -> bool:
    """True when the user agrees, or at once with --yes."""
    if yes:
        return True
    answer = ask(f"{question} [y/N]", "a confirmation", "pass --yes")
    return answer.lower() in ("y", "yes")
