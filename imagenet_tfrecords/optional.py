"""Packages that only one feature needs, imported where that feature runs: a missing one is one line."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UserError


def require(module: str, package: str, feature: str) -> ModuleType:
    """`module`, imported for `feature`; if it cannot be, one line naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"install {package} for {feature}: pip install '{package}' "
                        f"(or pip install -r requirements.txt) [{exc}]") from None
