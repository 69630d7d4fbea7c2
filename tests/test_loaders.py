"""Every loader recipe of docs/loaders.md runs as written on a build of the sample, and gives every record's
label (from 0, whichever --label_offset), synset, text, boxes and image; Model Garden's decoder reads label 1
as the first class, and a --label_offset 0 build warns once that such scripts would train one class off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, run_build_cli, sample_args
from model_garden.classification_decoder import IMAGENET_NUM_CLASSES, Decoder, parse_eval
from tfread import read_split, shard_files

LOADERS = REPO / "docs" / "loaders.md"
README = REPO / "README.md"
DATA_LINE = re.compile(r'^DATA = os\.path\.expanduser\("([^"]+)"\)', re.M)  # the one line a test changes
INFO_FILE = re.compile(r'f"\{DATA\}/(\w+\.json)"')  # the build's metadata file, as a recipe opens it
SIDES = ("ymin", "xmin", "ymax", "xmax")
SIZE = (256, 256, 3)  # the sample as README builds it: --resize_images
WARNING = ("--label_offset 0: labels 0..999; training scripts written for the Inception files (Model Garden's "
           "ImageNet configs, 1001 classes) read label 1 as the first class and would train every class one off")


def recipe(name: str) -> str:
    found = re.search(rf"<!-- recipe:{name} -->\n```python\n(.*?)```\n<!-- /recipe:{name} -->", LOADERS.read_text(), re.S)
    assert found, f"docs/loaders.md lacks the {name} recipe between <!-- recipe:{name} --> and <!-- /recipe:{name} -->"
    return found[1]


def run_recipe(name: str, data: Path, capsys: pytest.CaptureFixture) -> tuple[dict, list[str]]:
    """The recipe exec'd as written, its DATA folder replaced by `data`: its names and the lines it printed."""
    text = recipe(name)
    (default,) = DATA_LINE.findall(text)
    namespace: dict = {"__name__": f"recipe_{name}"}
    exec(compile(text.replace(f'"{default}"', repr(str(data))), f"{LOADERS}:{name}", "exec"), namespace)
    return namespace, capsys.readouterr().out.splitlines()


def run_recipe_alone(name: str, data: Path, epilogue: str, tmp_path: Path) -> tuple[list, list[str]]:
    """The recipe run as written in a Python of its own (no TensorFlow imported: the `tfrecord` package's
    tf.train.Example cannot be loaded beside TensorFlow's), its DATA folder replaced by `data`, then
    `epilogue`, which writes what the test checks as JSON to RESULT: that, and the lines the recipe printed."""
    text = recipe(name)
    (default,) = DATA_LINE.findall(text)
    result = tmp_path / f"{name}.json"
    script = tmp_path / f"recipe_{name}.py"
    script.write_text(text.replace(f'"{default}"', repr(str(data))) + f"\nRESULT = {str(result)!r}\n" + epilogue)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(result.read_text()), done.stdout.splitlines()


def info_name() -> str:
    """The metadata file that README's tf.data read-back opens (the recipes must open the same one)."""
    return INFO_FILE.findall(re.search(r"<!-- readback -->(.*?)<!-- /readback -->", README.read_text(), re.S)[1])[0]


def load_info(build: Path) -> dict:
    return json.loads((build / info_name()).read_text())


def assert_every_record(got: list[dict], build: Path, truth: Path | None = None) -> None:
    """`got` (a loader's records, in file order) against tf.data's view of the same shards, and the labels
    against the classes: label L from 0 is synsets[L]."""
    info = load_info(build)
    records = read_split(truth or build, "train")
    assert len(got) == len(records) == info["splits"]["train"]["num_records"] == 100
    for loaded, record in zip(got, records):
        assert loaded["label"] == record["image/class/label"] - info["label_offset"], record["image/filename"]
        assert info["synsets"][loaded["label"]] == record["image/class/synset"] == loaded["synset"]
        assert record["image/filename"].startswith(loaded["synset"])  # the class folder it came from
        assert loaded["text"] == record["image/class/text"]
        boxes = np.array([record[f"image/object/bbox/{side}"] for side in SIDES], np.float32).T.reshape(-1, 4)
        assert np.array_equal(np.asarray(loaded["boxes"], np.float32).reshape(-1, 4), boxes)
        assert tuple(loaded["shape"]) == (record["image/height"], record["image/width"], 3) == SIZE
    assert any(len(r["image/object/bbox/xmin"]) for r in records)  # boxes were compared, not only empty lists


def printed_batches(lines: list[str], shape: str, total: str) -> None:
    assert lines[-1] == total
    assert lines[:-1] and set(lines[:-1]) == {shape}


@pytest.fixture(scope="module")
def offset0_build(sample, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The sample as README builds it, with --label_offset 0: the folder and the build's output."""
    output = tmp_path_factory.mktemp("offset0")
    result = run_build_cli(*sample_args(sample, output, "--resize_images", "--num_threads", "2", "--label_offset", "0"))
    return output, result


@pytest.fixture(params=[1, 0], ids=["label_offset_1", "label_offset_0"])
def build(request: pytest.FixtureRequest) -> Path:
    """The sample built with each --label_offset."""
    return request.getfixturevalue("resized_build") if request.param else request.getfixturevalue("offset0_build")[0]


@pytest.fixture(scope="module")
def array_record_build(sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("array_record")
    run_build_cli(*sample_args(sample, output, "--resize_images", "--num_threads", "2", "--output_format", "array_record"))
    return output


@pytest.mark.parametrize("name", ["tfds", "grain", "dali", "pytorch"])
def test_every_recipe_opens_the_metadata_file_of_readmes_read_back(name: str) -> None:
    assert INFO_FILE.findall(recipe(name)) == [info_name()]


def test_dali_recipe(build: Path, capsys: pytest.CaptureFixture) -> None:
    namespace, lines = run_recipe("dali", build, capsys)
    printed_batches(lines, "32 (224, 224, 3) int64", "100 train images, 1000 classes")
    assert len(lines) == 1 + 100 // 32
    pipe = namespace["train_pipeline"](shuffle=False, batch_size=100)  # the whole split in one batch, in file order
    pipe.build()
    images, labels, boxes, synsets, texts, resized = pipe.run()
    assert resized.at(0).shape == (224, 224, 3)
    assert_every_record([{"label": int(labels.at(k)[0]), "synset": bytes(synsets.at(k)).decode(),
                          "text": bytes(texts.at(k)).decode(), "boxes": np.array(boxes.at(k)),
                          "shape": images.at(k).shape} for k in range(len(images))], build)


PYTORCH_CHECK = """
import json
import sys
assert "tensorflow" not in sys.modules  # as docs/loaders.md says: no TensorFlow
in_order = torch.utils.data.ChainDataset([  # the recipe's decoding, in file order: no index, shuffle or workers
    TFRecordDataset(shard, None, DESCRIPTION, transform=decode) for shard in shards])
records = [{"label": r["label"], "synset": r["synset"], "text": r["text"], "boxes": r["boxes"].tolist(),
            "shape": list(r["image"].permute(1, 2, 0).shape)} for r in in_order]
# The recipe's dataset (each worker its part of every shard, by the DALI index), one record at a time.
each = [[r["label"], r["synset"]] for r in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)]
loaded = [int(label) for _, labels in loader for label in labels]  # the recipe's loader, a second epoch
with open(RESULT, "w") as f:
    json.dump({"records": records, "each": each, "loaded": loaded}, f)
"""


def test_pytorch_recipe(build: Path, tmp_path: Path) -> None:
    result, lines = run_recipe_alone("pytorch", build, PYTORCH_CHECK, tmp_path)
    printed_batches(lines, "(32, 3, 224, 224) torch.float32 (32,) torch.int64", "100 train images, 1000 classes")
    assert len(result["loaded"]) == 32 * (len(lines) - 1)
    assert sorted(map(tuple, result["each"])) == sorted((r["label"], r["synset"]) for r in result["records"])
    assert set(result["loaded"]) <= set(range(load_info(build)["num_classes"]))
    assert_every_record(result["records"], build)


def test_tfds_recipe(build: Path, capsys: pytest.CaptureFixture) -> None:
    namespace, lines = run_recipe("tfds", build, capsys)
    printed_batches(lines, "(32, 224, 224, 3) float32 (32,) int64", "100 train images, 1000 classes")
    import tensorflow_datasets as tfds

    one_file_at_a_time = tfds.ReadConfig(interleave_cycle_length=1)  # file order, as tf.data reads the shards
    in_order = namespace["builder"].as_dataset(split="train", shuffle_files=False, read_config=one_file_at_a_time)
    in_order = in_order.map(namespace["parse"])
    assert_every_record([{"label": int(r["label"]), "synset": r["synset"].decode(), "text": r["text"].decode(),
                          "boxes": r["boxes"], "shape": r["image"].shape} for r in in_order.as_numpy_iterator()], build)


GRAIN_CHECK = """
import json
import sys
assert "tensorflow" not in sys.modules
with open(RESULT, "w") as f:  # records[k] in order: the same records as a TFRecord build of the same sample
    json.dump([{"label": int(r["label"]), "synset": r["synset"], "text": r["text"], "boxes": r["boxes"].tolist(),
                "shape": list(r["image"].shape)} for r in (records[k] for k in range(len(records)))], f)
"""


def test_grain_recipe(request: pytest.FixtureRequest, resized_build: Path, tmp_path: Path) -> None:
    array_record_build = request.getfixturevalue("array_record_build")
    records, lines = run_recipe_alone("grain", array_record_build, GRAIN_CHECK, tmp_path)
    printed_batches(lines, "(32, 224, 224, 3) float32 (32,) int64", "100 train images, 1000 classes")
    assert_every_record(records, array_record_build, truth=resized_build)


def test_model_garden_decoder_reads_label_1_as_the_first_class(resized_build: Path) -> None:
    """With the default --label_offset 1, Model Garden's ImageNet config (1001 classes) gets class k of the
    labels file as label k + 1, and no image as the background label 0."""
    info = load_info(resized_build)
    assert info["num_classes"] + 1 == IMAGENET_NUM_CLASSES
    decoder = Decoder()
    for split in ("train", "validation"):
        records = read_split(resized_build, split)
        serialized = list(tf.data.TFRecordDataset(shard_files(resized_build, split)))
        assert len(serialized) == len(records) > 0
        for example, record in zip(serialized, records):
            image, label = parse_eval(decoder.decode(example))
            assert image.dtype == tf.uint8 and tuple(image.shape) == SIZE
            assert 1 <= int(label) < IMAGENET_NUM_CLASSES
            assert int(label) == info["synsets"].index(record["image/class/synset"]) + 1


def test_model_garden_decoder_reads_a_label_offset_0_build_one_class_off(offset0_build) -> None:
    """What the build's warning is about: the first class arrives as label 0, Model Garden's background."""
    build, _ = offset0_build
    info = load_info(build)
    labels = [int(parse_eval(Decoder().decode(example))[1]) for example in
              tf.data.TFRecordDataset(shard_files(build, "train"))]
    synsets = [r["image/class/synset"] for r in read_split(build, "train")]
    assert labels == [info["synsets"].index(synset) for synset in synsets]
    assert 0 in labels


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if "--label_offset 0:" in line]


def test_a_label_offset_0_build_warns_once(offset0_build) -> None:
    _, result = offset0_build
    (line,) = warnings_in(result.stdout + result.stderr)
    assert line.endswith(WARNING)


def test_the_default_build_does_not_warn(sample, tmp_path: Path) -> None:
    result = run_build_cli("--validation_directory", sample.validation_dir, "--output_directory", tmp_path,
                           "--validation_shards", "1", "--num_threads", "1")
    assert warnings_in(result.stdout + result.stderr) == []


def test_the_guided_build_warns_once_too(sample, tmp_path: Path) -> None:
    """generate_tfrecord_protos.py runs the build in its own process: the build's one warning, not a second."""
    result = subprocess.run(
        [sys.executable, str(REPO / "generate_tfrecord_protos.py"), "--yes", "--data_dir", str(sample.root),
         "--output_directory", str(tmp_path / "out"), "--no_resize", "--jpeg_q", "90", "--label_offset", "0",
         "--min_free_gb", "0", "--validation_shards", "1", "--train_shards", "1", "--num_threads", "1"],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (line,) = warnings_in(result.stdout + result.stderr)
    assert line.endswith(WARNING)
