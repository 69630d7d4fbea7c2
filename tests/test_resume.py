"""Kill -9 a real build half-way, run it again, and get the same bytes as an uninterrupted build."""

from __future__ import annotations

from pathlib import Path

from conftest import every_file, kill_build_after_first_train_shard, run_build_cli, sample_args, shard_digests

# Upscaling to 1500x1500 makes each image slow enough to stop the build between shards.
SLOW = ("--resize_images", "--new_height", "1500", "--new_width", "1500", "--train_shards", "10",
        "--num_threads", "2")


def test_resume_after_kill_is_byte_identical(sample, tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_build_cli(*sample_args(sample, reference, *SLOW))

    done_at_kill = kill_build_after_first_train_shard(sample_args(sample, interrupted, *SLOW), interrupted)
    assert 0 < len(done_at_kill) < 12, "kill should land while shards are still being written"
    assert [p for p in interrupted.iterdir() if p.name.endswith(".tmp")], "a shard was being written"

    result = run_build_cli(*sample_args(sample, interrupted, *SLOW))
    resumed = sum(int(line.split()[4]) for line in result.stdout.splitlines()[1:3])
    assert resumed == len(done_at_kill)
    assert shard_digests(interrupted) == shard_digests(reference)
    assert not [p for p in interrupted.iterdir() if p.name.endswith(".tmp")]
    # every file, not only the shards: the same bytes however the build got there, and after a rerun with nothing to do
    expected = every_file(reference)
    assert {"manifest.json", "imagenet_tfrecords.json", "dataset_info.json", "features.json"} <= expected.keys()
    assert every_file(interrupted) == expected
    run_build_cli(*sample_args(sample, interrupted, *SLOW))
    run_build_cli(*sample_args(sample, reference, *SLOW))
    assert every_file(interrupted) == every_file(reference) == expected


def test_rerun_of_a_finished_build_writes_nothing(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if "-of-" in p.name}
    contents = every_file(tmp_path)
    result = run_build_cli(*sample_args(sample, tmp_path))
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if "-of-" in p.name}
    assert before == after
    assert every_file(tmp_path) == contents  # the manifest and JSON descriptions too, byte for byte
    assert [line.split()[4] for line in result.stdout.splitlines()[1:3]] == ["2", "4"]


def test_a_shard_that_no_longer_matches_the_plan_is_rebuilt(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path))
    victim = tmp_path / "train-00001-of-00004"
    original = victim.read_bytes()
    victim.write_bytes(original[:-10])  # a damaged shard: size no longer matches the manifest
    result = run_build_cli(*sample_args(sample, tmp_path))
    assert victim.read_bytes() == original
    assert result.stdout.splitlines()[2].split()[4] == "3"


def test_other_options_in_the_same_directory_are_refused(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path))
    result = run_build_cli(*sample_args(sample, tmp_path, "--resize_images"), check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(tmp_path) in last and "image" in last


def test_shards_without_a_manifest_are_not_overwritten(sample, tmp_path: Path) -> None:
    (tmp_path / "train-00000-of-00004").write_bytes(b"someone else's shard")
    result = run_build_cli(*sample_args(sample, tmp_path), check=False)
    assert result.returncode == 1
    assert "no manifest.json" in result.stderr
    assert (tmp_path / "train-00000-of-00004").read_bytes() == b"someone else's shard"
