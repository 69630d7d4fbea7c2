"""One bench measurement in its own process, pinned to one core: run a pipeline over a file list.

Usage: python bench/pipelines.py CONFIG_JSON FILE_LIST OUTPUT. Prints {"seconds", "images", "bytes"}.
Pipelines: "ours" (the project's shard worker; in copy mode with its decode check unless
"decode_check" is false), "tf" (TensorFlow ops, the original NVIDIA scripts' way), "pillow" (plain Pillow: full
decode, Lanczos, save), "read" (just read the files).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagenet_tfrecords.images.resize import ResizeMode, plan_geometry  # noqa: E402


def geometry_for(width: int, height: int, config: dict):
    return plan_geometry(width, height, ResizeMode(config["mode"]), config["width"], config["height"])


def run_ours(files: list[str], config: dict, output: Path) -> None:
    from imagenet_tfrecords.images.prepare import ImageOptions, ResizeQuality
    from imagenet_tfrecords.plan.shards import ShardItem, ShardSpec
    from imagenet_tfrecords.output.shard import write_shard

    options = ImageOptions(config["resize"], config["height"], config["width"], ResizeMode(config["mode"]),
                           config["jpeg_q"], ResizeQuality(config["quality"]),
                           decode_check=config.get("decode_check", True))
    items = tuple(ShardItem(f, os.path.basename(f), 1, "n00000000", "bench") for f in files)
    write_shard(ShardSpec("train", 0, 1, str(output.parent), options, items, None))
    os.replace(output.parent / "train-00000-of-00001", output)


def run_tf(files: list[str], config: dict, output: Path) -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    mode, target_height, target_width = config["mode"], config["height"], config["width"]

    def geometry(shape):
        """The resize size and crop window of resize.plan_geometry, in TensorFlow ops."""
        height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
        if mode == "stretch":
            return tf.constant(target_height), tf.constant(target_width), 0, 0, target_height, target_width
        scale = tf.maximum(target_width / width, target_height / height)
        scaled_height = tf.maximum(target_height, tf.cast(tf.round(height * scale), tf.int32))
        scaled_width = tf.maximum(target_width, tf.cast(tf.round(width * scale), tf.int32))
        if mode == "shorter_side":
            return scaled_height, scaled_width, 0, 0, scaled_height, scaled_width
        return (scaled_height, scaled_width, (scaled_height - target_height) // 2,
                (scaled_width - target_width) // 2, target_height, target_width)

    # One graph per image, traced once for any input shape, as the original scripts' tf.Session graph was.
    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def resize_encode(image):
        scaled_height, scaled_width, top, left, height, width = geometry(tf.shape(image))
        resized = tf.image.resize(image, tf.stack([scaled_height, scaled_width]), method="bilinear")
        cropped = tf.image.crop_to_bounding_box(resized, top, left, height, width)
        return tf.io.encode_jpeg(tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8),
                                 quality=config["jpeg_q"]), tf.shape(cropped)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decode_resize_encode(data):
        return resize_encode(tf.io.decode_jpeg(data, channels=3))

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decoded_shape(data):
        return tf.shape(tf.io.decode_jpeg(data, channels=3))

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    with tf.io.TFRecordWriter(str(output)) as writer:
        for path in files:
            data = open(path, "rb").read()
            try:
                if config["resize"]:
                    encoded, shape = decode_resize_encode(tf.constant(data))
                else:  # the original scripts decoded every image to learn its size
                    encoded, shape = tf.constant(data), decoded_shape(tf.constant(data))
            except tf.errors.InvalidArgumentError:  # CMYK or PNG: the original scripts special-cased these by name
                pixels = tf.constant(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
                encoded, shape = resize_encode(pixels) if config["resize"] else (tf.constant(data), tf.shape(pixels))
            encoded = encoded.numpy()
            height, width = shape.numpy().tolist()[:2]
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": feature(encoded), "image/height": feature(height), "image/width": feature(width),
                "image/filename": feature(os.path.basename(path).encode()), "image/class/label": feature(1),
            }))
            writer.write(example.SerializeToString())


def run_pillow(files: list[str], config: dict, output: Path) -> None:
    from PIL import Image

    from imagenet_tfrecords.images.prepare import StoredImage
    from imagenet_tfrecords.plan.shards import ShardItem
    from imagenet_tfrecords.output.records import build_example, frame_record

    with open(output, "wb") as out:
        for path in files:
            image = Image.open(path).convert("RGB")
            geometry = geometry_for(*image.size, config)
            left, top, right, bottom = geometry.region
            box = (left * image.width, top * image.height, right * image.width, bottom * image.height)
            image = image.resize((geometry.width, geometry.height), Image.Resampling.LANCZOS, box=box)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=config["jpeg_q"])
            item = ShardItem(path, os.path.basename(path), 1, "n00000000", "bench")
            out.write(frame_record(build_example(item, StoredImage(buffer.getvalue(), image.height, image.width, ()))))


def run_read(files: list[str], config: dict, output: Path) -> None:
    total = 0
    for path in files:
        with open(path, "rb") as handle:
            total += len(handle.read())
    output.write_bytes(b"")


PIPELINES = {"ours": run_ours, "tf": run_tf, "pillow": run_pillow, "read": run_read}


def main() -> None:
    config = json.loads(sys.argv[1])
    files = Path(sys.argv[2]).read_text().split("\n")
    output = Path(sys.argv[3])
    os.sched_setaffinity(0, {config.get("cpu", 0)})
    if config["pipeline"] == "tf":  # pay TensorFlow's import and tracing before the clock starts
        run_tf(files[:2], config, output)
    for path in files:  # the same warm page cache for every pipeline
        open(path, "rb").read()
    started = time.perf_counter()
    PIPELINES[config["pipeline"]](files, config, output)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "images": len(files), "bytes": output.stat().st_size}))


if __name__ == "__main__":
    main()
