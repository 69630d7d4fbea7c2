"""imagenet-tfrecords: ImageNet-layout image folders or tarballs -> Inception-schema TFRecord shards."""

__version__ = "0.1.0"
