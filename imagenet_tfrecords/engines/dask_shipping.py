"""Ready a Dask cluster for the shard worker: its dependencies checked, this package sent to it.

Workers need only the dependencies (`pip install -r requirements.txt`): a worker that cannot
import this package, or imports another version of it (by a fingerprint of its files), gets
this machine's copy through Dask's `UploadDirectory` plugin, which every nanny unpacks in its
local directory, puts first on the path and restarts its worker with; the scheduler keeps the
plugin, so a worker that joins or restarts later gets it too. The scheduler needs nothing of
this package (see `engines.dask`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from . import dask_probe

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

PACKAGE = __name__.split(".")[0]
PACKAGE_DIR = Path(__file__).resolve().parent.parent
# What the shard worker imports, as pip names them: a different version may change the shards' bytes.
WORKER_DEPENDENCIES = ("numpy", "pillow", "simplejpeg", "opencv-python-headless", "protobuf", "google-crc32c",
                       "tifffile")
# What the shard worker imports for one output format only (`--output_format`), and how to install it there.
FORMAT_DEPENDENCIES = {"array_record": ("array-record", "pip install 'array-record>=0.8', the "
                                        "imagenet-tfrecords[array_record] extra")}
RESTART_TIMEOUT_SECONDS = 120


def check_dependencies(client: Client, output_format: str = "tfrecord") -> None:
    """One error if a worker lacks a dependency of the shard worker (for `output_format`, too); one warning
    naming those whose versions differ."""
    extra = FORMAT_DEPENDENCIES.get(output_format)
    dependencies = WORKER_DEPENDENCIES + ((extra[0],) if extra else ())
    versions = client.get_versions(check=False, packages=list(dependencies))
    here = versions["client"]["packages"]
    workers = {address: info["packages"] for address, info in versions["workers"].items()}
    missing = sorted({name for packages in workers.values() for name in dependencies if not packages.get(name)})
    if missing:
        lacking = sorted(address for address, packages in workers.items() if not all(map(packages.get, missing)))
        hint = "pip install -r requirements.txt"
        if extra and extra[0] in missing:
            hint = extra[1] if missing == [extra[0]] else f"{hint}; {extra[1]}"
        raise UserError(f"Dask worker {', '.join(lacking)} cannot find {', '.join(missing)}: install "
                        f"{'it' if len(missing) == 1 else 'them'} on the workers ({hint})")
    differ = [f"{name} {here[name]} here, {', '.join(sorted(others))} on the workers"
              for name in dependencies if here.get(name)
              if (others := {packages[name] for packages in workers.values()} - {here[name]})]
    if differ:
        log.warning("the Dask workers have other versions than this machine, so shards may differ from a local "
                    "build: %s", "; ".join(differ))


def _outdated_workers(client: Client, fingerprint: str) -> list[str]:
    dask_probe.register()
    found = client.run(dask_probe.package_fingerprint, PACKAGE)
    return sorted(worker for worker, theirs in found.items() if theirs != fingerprint)


def ship_package(client: Client) -> None:
    """Send this package to the workers when one lacks it or has another version; they restart with it."""
    fingerprint = dask_probe.tree_fingerprint(PACKAGE_DIR)
    outdated = _outdated_workers(client, fingerprint)
    if not outdated:
        return
    from distributed.diagnostics.plugin import UploadDirectory

    workers = len(client.nthreads())
    log.info("sending %s to the Dask cluster (%d of %d workers cannot import it or have another version); "
             "the workers restart", PACKAGE, len(outdated), workers)
    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging) / f"{PACKAGE}-{fingerprint[:16]}"  # unpacked on the nannies under this name
        shutil.copytree(PACKAGE_DIR, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
        client.register_plugin(UploadDirectory(str(root), restart_workers=True, update_path=True, skip_words=(),
                                               skip=()))
    try:
        client.wait_for_workers(workers, timeout=RESTART_TIMEOUT_SECONDS)
    except TimeoutError:
        raise UserError(f"fewer than the {workers} Dask workers came back within {RESTART_TIMEOUT_SECONDS} s of "
                        f"restarting with {PACKAGE}; see their logs") from None
    outdated = _outdated_workers(client, fingerprint)
    if outdated:
        raise UserError(f"Dask worker {', '.join(outdated)} still cannot import this {PACKAGE} after it was sent "
                        "(a worker started with --no-nanny cannot take it): install it there, or start the worker "
                        "with a nanny")


def prepare_cluster(client: Client, output_format: str = "tfrecord") -> None:
    check_dependencies(client, output_format)
    ship_package(client)
