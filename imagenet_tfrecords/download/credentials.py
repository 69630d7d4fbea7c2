"""The ImageNet user ID and access key: from flags, environment, ~/.netrc or a prompt; never argv or logs."""

from __future__ import annotations

import logging
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UserError
from ..prompts import ask, ask_secret

log = logging.getLogger(__name__)

USER_ENV = "IMAGENET_USER"
SECRET_ENV = "IMAGENET_ACCESS_KEY"


@dataclass(frozen=True)
class Credentials:
    user: str
    secret: str = field(repr=False)  # never in repr, logs or messages


def _netrc_entry(host: str) -> tuple[str, str] | None:
    """(login, password) for `host` (or the default entry) from ~/.netrc, if the file has one."""
    path = Path.home() / ".netrc"
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc().authenticators(host)  # no argument: the stdlib checks owner and permissions
    except netrc.NetrcParseError as exc:  # its message can quote the file: do not show it
        if "permissive" in str(exc):
            raise UserError(f"{path}: readable by others; run `chmod 600 {path}`") from None
        if "owner" in str(exc):
            raise UserError(f"{path}: owned by another user; it must be yours") from None
        raise UserError(f"{path}:{exc.lineno}: cannot parse this line of ~/.netrc; fix it (its text is not shown)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if entry is None:
        return None
    login, _account, password = entry
    return login or "", password or ""


def resolve_credentials(base_url: str, user_flag: str | None) -> Credentials | None:
    """User ID from --user, IMAGENET_USER, ~/.netrc or a prompt; the key from IMAGENET_ACCESS_KEY, ~/.netrc or
    a hidden prompt. An empty user ID means a mirror without login (None)."""
    host = urlsplit(base_url).hostname or ""
    entry = _netrc_entry(host)
    user = user_flag if user_flag is not None else os.environ.get(USER_ENV)
    if user is None and entry and entry[0]:
        user = entry[0]
    if user is None:
        user = ask("ImageNet user ID (empty for a mirror without login)", "the ImageNet user ID",
                   f"pass --user, set {USER_ENV}, or add 'machine {host} login ... password ...' to ~/.netrc")
    if not user:
        log.info("no user ID: downloading without a login")
        return None
    secret = os.environ.get(SECRET_ENV)
    if not secret and entry and entry[1] and entry[0] in ("", user):
        secret = entry[1]
    if not secret:
        secret = ask_secret(f"Access key for {user} (not shown)", "the access key",
                            f"set {SECRET_ENV} or add 'machine {host} login {user} password ...' to ~/.netrc")
    if not secret:
        raise UserError(f"no access key for {user}: set {SECRET_ENV}, add it to ~/.netrc, or type it at the prompt")
    return Credentials(user, secret)
