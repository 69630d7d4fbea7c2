"""Questions for the interactive front ends: one validated answer each, from a flag, a terminal, or a default.

A parser turns the typed text into a value or raises ValueError with the reason; on a
terminal the reason is shown and the question asked again, without one it is an error.
`generate_tfrecord_protos.py` and `purge_mem_caches.py` ask through a `Prompter` (no terminal:
the defaults); `download_imagenet.py` through `ask`, `ask_secret` and `confirm`, which need a
terminal and fail with one clear line (never hanging) without one.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")

YES = frozenset({"y", "yes"})
NO = frozenset({"n", "no"})


@dataclass(frozen=True)
class Question(Generic[T]):
    text: str
    parse: Callable[[str], T]
    default: str | None = None
    how_to_answer: str = ""  # the flag or variable that answers it without a terminal, for the error


class Prompter:
    """Asks on the terminal when `interactive`, else answers every question with its default."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def answer(self, question: Question[T], given: str | None = None, given_by: str = "") -> T:
        """The value of `given` (from a flag) if set, else the typed answer, else the default."""
        if given is not None:
            return _parse_or_fail(question, given, f"{given_by}: {{}}")
        if not self.interactive:
            if question.default is None:
                raise UserError(f"no terminal to ask \"{question.text}\": pass {question.how_to_answer}")
            return _parse_or_fail(question, question.default, f"{{}}; pass {question.how_to_answer}")
        while True:
            text = self._read(question.text + (f" [{question.default}] " if question.default else " "))
            if not text and question.default is None:
                print("  an answer is needed")
                continue
            try:
                return question.parse(text or question.default or "")
            except ValueError as exc:
                print(f"  {exc}; try again")

    def confirm(self, text: str, default: bool) -> bool:
        """A yes/no question; without a terminal the answer is `default`."""
        if not self.interactive:
            return default
        while True:
            reply = self._read(text + (" [Y/n] " if default else " [y/N] "))
            if not reply:
                return default
            try:
                return parse_yes_no(reply)
            except ValueError as exc:
                print(f"  {exc}; try again")

    def secret(self, text: str) -> str:
        """A password, read from the terminal without echo (even under --yes, if there is one)."""
        if not sys.stdin.isatty():
            raise UserError("a password is needed and there is no terminal to ask it on: run this in a terminal, or as root")
        try:
            return getpass.getpass(text)
        except EOFError:
            raise UserError("no password given (end of input)") from None

    @staticmethod
    def _read(prompt: str) -> str:
        try:
            return input(prompt).strip()
        except EOFError:
            print()
            raise UserError(f"no answer (end of input) to \"{prompt.strip()}\"") from None


def _parse_or_fail(question: Question[T], text: str, message: str) -> T:
    """The parsed `text`, or a UserError of `message` formatted with the reason."""
    try:
        return question.parse(text)
    except ValueError as exc:
        raise UserError(message.format(exc)) from None


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


def parse_yes_no(text: str) -> bool:
    word = text.strip().lower()
    if word in YES:
        return True
    if word in NO:
        return False
    raise ValueError(f"answer yes or no, not {text!r}")


def parse_number_in(low: int, high: int | None = None, whole: bool = True) -> Callable[[str], float]:
    """A parser of numbers in low..high (no upper bound when `high` is None): whole ones unless `whole` is False."""
    kind, noun = (int, "a whole number") if whole else (float, "a number")

    def parse(text: str) -> float:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"not {noun}: {text!r}") from None
        if high is not None and not low <= value <= high:
            raise ValueError(f"must be in {low}..{high}, got {value}")
        if not value >= low:  # NaN too
            raise ValueError(f"must be at least {low}, got {value}")
        return value

    return parse


def flag_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """`parse` as an argparse `type`: its reason shown as `argument --flag: reason`."""

    def parse_flag(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_flag



POSITIVE_FLAG = flag_type(parse_number_in(1))  # argparse `type` of a count, a size or a limit

def parse_choice(choices: tuple[str, ...], aliases: dict[str, str] | None = None) -> Callable[[str], str]:
    """A parser of one word out of `choices` (or an alias of one)."""
    aliases = aliases or {}

    def parse(text: str) -> str:
        word = text.strip().lower()
        word = aliases.get(word, word)
        if word not in choices:
            raise ValueError(f"not one of {', '.join(choices)}: {text!r}")
        return word

    return parse


def parse_existing_directory(text: str) -> Path:
    path = Path(text.strip()).expanduser()
    if not text.strip():
        raise ValueError("a directory is needed")
    if not path.exists():
        raise ValueError(f"no such directory: {path}")
    if not path.is_dir():
        raise ValueError(f"not a directory: {path}")
    return path.resolve()


def parse_creatable_directory(text: str) -> Path:
    """A directory that exists or can be made: not a file, below a writable existing directory."""
    if not text.strip():
        raise ValueError("a directory is needed")
    path = Path(text.strip()).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a directory")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot create {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write in {existing}")
    return path
