"""Errors a user can cause: each carries one line saying what, where, and what to do."""


class UserError(Exception):
    """A problem with the input or the flags; the CLI prints it as one line and exits 1."""


class BadImageError(UserError):
    """One image file that cannot be turned into an RGB JPEG."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path}: {reason}; fix or remove the file, or re-run with --skip_bad_images"
        )

    def __reduce__(self):  # keep (path, reason) across process boundaries
        return (BadImageError, (self.path, self.reason))
