"""The bench runs end to end on a tiny corpus and prints the JSON report (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_bench_quick_run_prints_a_complete_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--corpus_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["corpus"]["images"] == 24
    for mode in ("stretch", "shorter_side", "center_crop"):
        row = report["per_core"][mode]
        assert set(row) == {"tf", "pillow", "ours_fast", "ours_default", "ours_best", "reference_q90"}
        for pipeline in ("tf", "pillow", "ours_fast", "ours_default", "ours_best"):
            assert row[pipeline]["images_per_s"] > 0 and 20 < row[pipeline]["psnr_db"] < 60
    assert set(report["per_core"]["copy"]) == {"read", "tf", "ours", "ours_unchecked"}
    assert set(report["peak_rss"]) == {"30", "60"}
    assert set(report["targets"]) == {"default", "fast", "best", "copy_vs_read", "copy_checked_vs_tf",
                                      "two_processes", "peak_rss"}
    assert all(isinstance(t["met"], bool) for t in report["targets"].values())
