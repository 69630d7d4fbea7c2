"""One record against the Inception schema (`output/schema.py`), and with `--deep` its image."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ..images.acceptance import DEFAULT_MAX_PIXELS, stored_jpeg_problem
from ..images.formats import read_jpeg_header, sniff_format
from ..output.schema import BOX_COORDINATES, BOX_LABEL, CONSTANTS, RECORD_SCHEMA, SINGLE_VALUED
from ..proto.imgrec_example_pb2 import Example

_JPEG_MODES = {1: "L", 4: "CMYK"}  # a JPEG's components, named as Pillow names the modes
# Each key's list kind, the single values first, then the box lists: the order problems are named in.
_KINDS = {key: field.list_kind for key, field in sorted(RECORD_SCHEMA.items(), key=lambda item: item[1].per_box)}


@dataclass(frozen=True)
class Parsed:
    label: int
    synset: str
    text: str
    height: int
    width: int
    encoded: bytes


Fields = dict[str, tuple[str | None, list]]  # key -> (list kind, values)


def _fields(example: Example) -> Fields:
    """Each feature's kind and values, read once (map lookups in protobuf are the slow part)."""
    fields = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        fields[key] = (kind, list(getattr(feature, kind).value) if kind else [])
    return fields


def _schema_problems(fields: Fields) -> list[str]:
    kinds = {key: kind for key, (kind, _) in fields.items()}
    if kinds == _KINDS and all(len(fields[key][1]) == 1 for key in SINGLE_VALUED):
        return [f"{key} is {fields[key][1][0]!r}, expected {value!r}"
                for key, value in CONSTANTS.items() if fields[key][1] != [value]]
    if kinds.keys() != _KINDS.keys():
        missing, extra = sorted(_KINDS.keys() - kinds.keys()), sorted(kinds.keys() - _KINDS.keys())
        return [f"schema: missing keys {missing}, unexpected keys {extra}"]
    wrong_kind = [f"schema: {key} is a {kinds[key]}, expected {kind}"
                  for key, kind in _KINDS.items() if kinds[key] != kind]
    return wrong_kind or [f"schema: {key} holds {len(fields[key][1])} values, expected 1"
                          for key in SINGLE_VALUED if len(fields[key][1]) != 1]


def _box_problems(fields: Fields, label: int) -> list[str]:
    xmin, ymin, xmax, ymax = (fields[key][1] for key in BOX_COORDINATES)
    box_labels = fields[BOX_LABEL][1]
    if not len(xmin) == len(ymin) == len(xmax) == len(ymax) == len(box_labels):
        return ["bounding box lists differ in length"]
    problems = [f"bounding box label {value} differs from the image label {label}"
                for value in set(box_labels) - {label}]
    for box in zip(xmin, ymin, xmax, ymax):
        if not (0.0 <= box[0] <= box[2] <= 1.0 and 0.0 <= box[1] <= box[3] <= 1.0):
            problems.append(f"bounding box {box} is not inside [0, 1] with min <= max")
    return problems


def _filename(fields: Fields) -> str | None:
    """The record's image/filename, if it holds one string, for naming the image in problems."""
    kind, values = fields.get("image/filename", (None, []))
    return values[0].decode("utf-8", "backslashreplace") if kind == "bytes_list" and len(values) == 1 else None


def parse_record(payload: bytes) -> tuple[Parsed | None, str | None, list[str]]:
    """The fields verify needs from one record and its image filename, or why it breaks the Inception schema."""
    try:
        fields = _fields(Example.FromString(payload))
    except DecodeError:
        return None, None, ["does not parse as a tf.train.Example"]
    filename = _filename(fields)
    problems = _schema_problems(fields)
    if problems:
        return None, filename, problems
    one = {key: fields[key][1][0] for key in SINGLE_VALUED}
    parsed = Parsed(one["image/class/label"], one["image/class/synset"].decode(errors="replace"),
                    one["image/class/text"].decode(errors="replace"), one["image/height"], one["image/width"],
                    one["image/encoded"])
    if parsed.height < 1 or parsed.width < 1:
        problems.append(f"image/height x image/width is {parsed.height}x{parsed.width}")
    return parsed, filename, problems + _box_problems(fields, parsed.label)


def image_problem(parsed: Parsed, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """`--deep`: a 3-channel JPEG of the stored size that the build would store (acceptance)."""
    kind = sniff_format(parsed.encoded)
    header = read_jpeg_header(parsed.encoded) if kind == "JPEG" else None
    if kind != "JPEG":
        return f"image is {kind or 'not an image file'}, but image/format says JPEG"
    if header is None:
        return "image does not decode (JPEG without a frame header)"
    if header.components != 3:
        return f"image is {_JPEG_MODES.get(header.components, header.components)}, not 3-channel RGB"
    if (header.width, header.height) != (parsed.width, parsed.height):
        return f"image is {header.width}x{header.height} (WxH), the record says {parsed.width}x{parsed.height}"
    problem = stored_jpeg_problem(parsed.encoded, header, max_pixels)
    return f"image is bad: {problem}" if problem else None
