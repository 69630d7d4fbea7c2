"""Errors a user can cause: each carries one line saying what, where, and what to do."""

import os
import sys
from collections.abc import Callable

RESUME_HINT = "interrupted; run the same command again to resume"


def printable(path: str | os.PathLike) -> str:
    """A path as one printable line: bytes that are not UTF-8 as \\xNN, control characters (a newline) escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class UserError(Exception):
    """A problem with the input or the flags; the CLI prints it as one line and exits 1."""


class BadImageError(UserError):
    """One image file that cannot be turned into an RGB JPEG."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{printable(path)}: {reason}; fix or remove the file, or re-run with --skip_bad_images"
        )

    def __reduce__(self):  # keep (path, reason) across process boundaries
        return (BadImageError, (self.path, self.reason))


def run_command(body: Callable[[], int], interrupted: str = RESUME_HINT) -> int:
    """A command's exit code: the body's, or 1 after printing a UserError as one line, or 130 on Ctrl-C."""
    try:
        return body()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
