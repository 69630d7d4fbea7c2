"""Functions run on Dask workers (`client.run`) that may not import this package yet.

`register` has cloudpickle pickle this module by value, so its functions reach workers that lack
the package. Standard library only, and no import from the package itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Collection
from pathlib import Path


def tree_fingerprint(root: Path) -> str:
    """SHA-256 over every file of a package directory (relative name and bytes), bytecode caches left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def package_fingerprint(package: str) -> str | None:
    """The fingerprint of `package` as this process would import it; None when it cannot."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return tree_fingerprint(Path(next(iter(spec.submodule_search_locations))))


def holding(keys: Collection[str], dask_worker) -> bool:
    """Whether this worker still holds one of `keys`: queued, running, or cancelled while running."""
    return any(key in dask_worker.state.tasks for key in keys)


def register() -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
