"""Model Garden's image-classification `Decoder`, reimplemented (not copied) for the tests.

Source: tensorflow/models, `official/vision/dataloaders/classification_input.py` (`Decoder`, and the
image decoding of its `Parser`), Copyright The TensorFlow Authors, Apache License 2.0. No network is at
hand where these tests run, so this follows that file's feature spec key for key instead of vendoring
it: `image/encoded` a scalar string (default ''), `image/class/label` a scalar int64 (default -1), or a
VarLenFeature int64 for multi-label; `decode` is `tf.io.parse_single_example` with that spec and
nothing else. Its `Parser` then decodes the image with 3 channels and casts the label to int32 as it
is, with no offset taken off; its ImageNet configs (`official/vision/configs/image_classification.py`,
`image_classification_imagenet`) count `num_classes=1001`: label 0, the background, and 1..1000.
"""

from __future__ import annotations

import tensorflow as tf

DEFAULT_IMAGE_FIELD_KEY = "image/encoded"
DEFAULT_LABEL_FIELD_KEY = "image/class/label"
IMAGENET_NUM_CLASSES = 1001  # image_classification_imagenet: ImageClassificationModel(num_classes=1001)


class Decoder:
    """A tf.Example decoder for the classification task (Model Garden's `classification_input.Decoder`)."""

    def __init__(self, image_field_key: str = DEFAULT_IMAGE_FIELD_KEY, label_field_key: str = DEFAULT_LABEL_FIELD_KEY,
                 is_multilabel: bool = False, keys_to_features: dict | None = None) -> None:
        if not keys_to_features:
            keys_to_features = {image_field_key: tf.io.FixedLenFeature((), tf.string, default_value="")}
        if is_multilabel:
            keys_to_features.update({label_field_key: tf.io.VarLenFeature(dtype=tf.int64)})
        else:
            keys_to_features.update({label_field_key: tf.io.FixedLenFeature((), tf.int64, default_value=-1)})
        self._keys_to_features = keys_to_features

    def decode(self, serialized_example: tf.Tensor) -> dict[str, tf.Tensor]:
        return tf.io.parse_single_example(serialized_example, self._keys_to_features)


def parse_eval(decoded_tensors: dict[str, tf.Tensor], image_field_key: str = DEFAULT_IMAGE_FIELD_KEY,
               label_field_key: str = DEFAULT_LABEL_FIELD_KEY) -> tuple[tf.Tensor, tf.Tensor]:
    """The Parser's first steps, before any crop or resize: the image decoded with 3 channels (uint8,
    height x width x 3), the label cast to int32 as stored."""
    image = tf.io.decode_image(decoded_tensors[image_field_key], channels=3, expand_animations=False)
    label = tf.cast(decoded_tensors[label_field_key], dtype=tf.int32)
    return image, label
