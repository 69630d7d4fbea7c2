"""generate_tfrecord_protos.py: ask for the build options, print the build_imagenet_data.py command, run it."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import cli
from .commands import add_version_flag
from .download.archives import BUILTIN_ARCHIVES
from .engines.pool import available_cpus
from .errors import UserError, run_command
from .host.memory import GIB, MIB, gib, read_memory
from .host.purge import PurgeOptions, purge
from .build import BuildConfig
from .images.prepare import ResizeMode, ResizeQuality
from .inputs.classes import resolve_classes
from .inputs.ilsvrc_names import FLAT_VALIDATION_NAME
from .inputs.labels import DEFAULT_LABELS_FILE, ClassTable, load_wnids
from .prompts import (POSITIVE_FLAG, Prompter, Question, parse_choice, parse_creatable_directory,
                      parse_existing_directory, parse_number_in)

DATA_DIR_ENV = "IMAGENET_DATA_DIR"
OUTPUT_DIR_ENV = "PROTO_OUT_DIR"
BOUNDING_BOX_FILE = "bounding_boxes.csv"  # what download_imagenet.py leaves beside train/ and validation/
# What a build needs (docs/memory.md "What a build needs", measured): the parent about 60 MiB of libraries plus 106 bytes an
# image (130 MiB for ImageNet's train names and labels); each worker about 55 MiB of libraries, an 8 MiB
# write buffer and one decoded image (a 24-megapixel photo is 72 MiB of RGB). Rounded up.
PARENT_NEED = 256 * MIB
WORKER_NEED = 160 * MIB
RESIZED, ORIGINAL = "resized", "original"
MODES = tuple(m.value for m in ResizeMode)
QUALITIES = tuple(q.value for q in ResizeQuality)
RESIZE_ALIASES = {"r": RESIZED, "resize": RESIZED, "y": RESIZED, "yes": RESIZED, "o": ORIGINAL, "n": ORIGINAL, "no": ORIGINAL}
LABEL_OFFSETS = ("1", "0")
LABEL_ALIASES = {"inception": "1", "tfds": "0", "torchvision": "0"}
T = TypeVar("T")


@dataclass(frozen=True)
class Answers:
    data_dir: Path
    output_dir: Path
    resize: bool
    height: int
    width: int
    mode: str
    quality: int
    label_offset: int
    labels_file: Path | None = None  # None: the ImageNet classes, or the class folder names
    validation_labels_file: Path | None = None  # a `file,class` CSV for a flat validation folder

    @property
    def train_dir(self) -> Path | None:
        return self.data_dir / "train" if (self.data_dir / "train").is_dir() else None

    @property
    def validation_dir(self) -> Path | None:
        return self.data_dir / "validation" if (self.data_dir / "validation").is_dir() else None

    def tarball(self, key: str) -> Path | None:
        """A downloaded ILSVRC archive in the data dir (train, val, devkit, bbox), if it is there."""
        path = self.data_dir / BUILTIN_ARCHIVES[key].name
        return path if path.is_file() else None

    def tar_arguments(self) -> list[str]:
        """Build straight from the tarballs where the extracted folders (or the box CSV) are missing."""
        argv = []
        train, validation = self.tarball("train"), self.tarball("val")
        if train and not self.train_dir:
            argv += ["--train_tar", str(train)]
        if validation and not self.validation_dir:
            argv += ["--validation_tar", str(validation)]
            argv += ["--devkit", str(self.tarball("devkit"))] if self.tarball("devkit") else []
        if self.tarball("bbox") and not (self.data_dir / BOUNDING_BOX_FILE).is_file():
            argv += ["--bbox_tar", str(self.tarball("bbox"))]
        return argv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Ask for the build options (or take them from flags and environment variables), print the "
        "equivalent build_imagenet_data.py command and run it. With --yes or no terminal, nothing is asked.",
    )
    parser.add_argument("--data_dir", help=f"the raw data: the download target, holding train/ and validation/ "
                        f"(default ${DATA_DIR_ENV})")
    parser.add_argument("--output_directory", help=f"where the shards go (default ${OUTPUT_DIR_ENV}, else DATA_DIR/tfrecords)")
    resize = parser.add_mutually_exclusive_group()
    resize.add_argument("--resize", dest="resize", action="store_const", const=RESIZED,
                        help="store pre-resized images (recommended, the default)")
    resize.add_argument("--no_resize", dest="resize", action="store_const", const=ORIGINAL,
                        help="store the original images")
    parser.add_argument("--new_height",
                        help="height after resizing (default 256; the original NVIDIA scripts used 352)")
    parser.add_argument("--new_width", help="width after resizing (default: the height)")
    parser.add_argument("--resize_mode", help=f"one of {', '.join(MODES)} (default stretch: aspect not kept)")
    parser.add_argument("--jpeg_q", help="JPEG quality, 1..100 (default 90, recommended)")
    parser.add_argument("--labels_file", help="one class per line, in label order (default: the ImageNet classes, or "
                        "the class folder names, sorted, when they are not ImageNet wnids)")
    parser.add_argument("--validation_labels_file", help="for a validation/ folder with no class folders: a CSV of "
                        "'file,class' lines")
    parser.add_argument("--label_offset", help="1: labels 1..N with 0 as background (Inception, Model Garden; "
                        "the default); 0: labels 0..N-1 (TFDS, torchvision)")
    parser.add_argument("--yes", action="store_true", help="ask nothing: take flags, environment, then defaults")
    add_version_flag(parser)
    parser.add_argument("--min_free_gb", type=float, metavar="GB",
                        help="before a training-set build, offer to purge memory below GB GiB available (default: "
                        f"what the build needs, {PARENT_NEED // MIB} MiB plus {WORKER_NEED // MIB} MiB a worker)")
    passed = parser.add_argument_group("passed on to build_imagenet_data.py")
    passed.add_argument("--train_shards", type=POSITIVE_FLAG, help="number of train shards (default: fitted to the data, "
                        "1024 for ImageNet)")
    passed.add_argument("--validation_shards", type=POSITIVE_FLAG, help="number of validation shards (default: fitted "
                        "to the data, 128 for ImageNet)")
    passed.add_argument("--num_threads", type=POSITIVE_FLAG, help="worker processes (default: CPU count)")
    passed.add_argument("--resize_quality", choices=QUALITIES, help="resampling preset: fast, default or best")
    passed.add_argument("--skip_bad_images", action="store_true",
                        help="leave out unreadable images, listing them in bad_images.tsv, instead of stopping")
    return parser


def parse_data_dir(text: str) -> Path:
    path = parse_existing_directory(text)
    tars = [path / BUILTIN_ARCHIVES[key].name for key in ("train", "val")]
    if not (path / "train").is_dir() and not (path / "validation").is_dir() and not any(t.is_file() for t in tars):
        raise ValueError(f"{path} holds neither train/ nor validation/ (nor the ILSVRC2012_img_*.tar files): "
                         "give the directory the download went to")
    return path


def parse_labels_file(text: str) -> Path | None:
    """A labels file that exists; nothing typed: none."""
    if not text:
        return None
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


def parse_labels_csv(text: str) -> Path:
    path = parse_labels_file(text)
    if path is None:
        raise ValueError("a 'file,class' CSV is needed")
    return path


def needs_labels_csv(validation_dir: Path | None) -> bool:
    """A validation/ folder of loose files that are not ILSVRC-named: only a CSV can label them."""
    if validation_dir is None:
        return False
    entries = list(validation_dir.iterdir())
    return (not any(entry.is_dir() for entry in entries)
            and any(not FLAT_VALIDATION_NAME.fullmatch(entry.name) for entry in entries if entry.is_file()))


def _classes(data_dir: Path, labels_file: Path | None, validation_labels_file: Path | None) -> ClassTable:
    """The classes the build will have, to word the questions by them."""
    train, validation = (data_dir / name for name in ("train", "validation"))
    where = BuildConfig(output_dir=data_dir, train_dir=train if train.is_dir() else None,
                        validation_dir=validation if validation.is_dir() else None, labels_file=labels_file,
                        validation_labels_file=validation_labels_file)  # the tars alone: the ImageNet classes
    return resolve_classes(where, 1)


def _default_classes(data_dir: Path) -> str:
    """What Enter gives at the labels file question, in words."""
    classes = _classes(data_dir, None, None)
    if classes.wnids == tuple(load_wnids(DEFAULT_LABELS_FILE)):
        return "the 1000 ImageNet classes"
    shown = ", ".join(classes.wnids[:5]) + (", ..." if len(classes.wnids) > 5 else "")
    return f"the {len(classes.wnids)} class folder names, sorted: {shown}"


def ask_answers(args: argparse.Namespace, prompter: Prompter, env: Mapping[str, str]) -> Answers:
    """Every answer, in the original scripts' order (the label convention last): the flag if given, else the
    terminal, else the environment variable or default."""

    def ask(text: str, parse: Callable[[str], T], default: str | None, flag: str, variable: str = "") -> T:
        how = f"{flag} or set {variable}" if variable else flag
        return prompter.answer(Question(text, parse, default, how), getattr(args, flag.lstrip("-")), flag)

    data_dir = ask("Where is the raw data (a folder holding train/ and validation/, one folder of images per class "
                   "in each; or the download_imagenet.py target)?",
                   parse_data_dir, env.get(DATA_DIR_ENV) or None, "--data_dir", DATA_DIR_ENV)
    output_dir = ask("Where should the TFRecord files go?", parse_creatable_directory,
                     env.get(OUTPUT_DIR_ENV) or str(data_dir / "tfrecords"), "--output_directory", OUTPUT_DIR_ENV)
    validation_dir = data_dir / "validation" if (data_dir / "validation").is_dir() else None
    validation_labels_file = None
    if needs_labels_csv(validation_dir):
        validation_labels_file = ask(f"{validation_dir} has no class folders: where is the CSV that gives each file's "
                                     "class ('file,class' lines)?", parse_labels_csv, None, "--validation_labels_file")
    labels_file = ask(f"Labels file, one class per line in label order (Enter: {_default_classes(data_dir)})?",
                      parse_labels_file, "", "--labels_file")
    num_classes = len(_classes(data_dir, labels_file, validation_labels_file).wnids)
    resize = ask(f"Store pre-resized images (recommended) or the originals? ({RESIZED}/{ORIGINAL})",
                 parse_choice((RESIZED, ORIGINAL), RESIZE_ALIASES), RESIZED, "--resize") == RESIZED
    height, width, mode = 256, 256, ResizeMode.STRETCH.value
    if resize:
        height = ask("Height after resizing, in pixels (the original NVIDIA scripts used 352; stretch mode does not "
                     "keep the aspect ratio)?", parse_number_in(1), "256", "--new_height")
        width = ask("Width after resizing, in pixels (Enter: the same as the height)?", parse_number_in(1), str(height),
                    "--new_width")
        mode = ask("Resize mode: stretch (exactly HxW, aspect NOT kept, as the original NVIDIA scripts), shorter_side "
                   "(keep aspect, cover HxW), center_crop (shorter_side, then the centre HxW)?", parse_choice(MODES),
                   ResizeMode.STRETCH.value, "--resize_mode")
    quality = ask("JPEG quality of re-encoded images, 1..100 (90 recommended)?", parse_number_in(1, 100), "90", "--jpeg_q")
    label_offset = ask(f"Label convention: 1 (labels 1..{num_classes}, 0 = background: what the Inception and Model "
                       f"Garden scripts expect) or 0 (labels 0..{num_classes - 1}: as TFDS and torchvision)?",
                       parse_choice(LABEL_OFFSETS, LABEL_ALIASES), "1", "--label_offset")
    return Answers(data_dir, output_dir, resize, height, width, mode, quality, int(label_offset), labels_file,
                   validation_labels_file)


def build_arguments(answers: Answers, args: argparse.Namespace) -> list[str]:
    """The build_imagenet_data.py arguments for these answers; every path absolute, so it runs from anywhere."""
    argv = []
    if answers.train_dir:
        argv += ["--train_directory", str(answers.train_dir)]
    if answers.validation_dir:
        argv += ["--validation_directory", str(answers.validation_dir)]
    argv += answers.tar_arguments()
    argv += ["--output_directory", str(answers.output_dir)]
    argv += ["--labels_file", str(answers.labels_file)] if answers.labels_file else []
    argv += ["--validation_labels_file", str(answers.validation_labels_file)] if answers.validation_labels_file else []
    if (answers.data_dir / BOUNDING_BOX_FILE).is_file():
        argv += ["--bounding_box_file", str(answers.data_dir / BOUNDING_BOX_FILE)]
    for flag in ("train_shards", "validation_shards", "num_threads"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag}", str(value)]
    if answers.resize:
        argv += ["--resize_images", "--new_height", str(answers.height), "--new_width", str(answers.width),
                 "--resize_mode", answers.mode]
    argv += ["--resize_quality", args.resize_quality] if args.resize_quality else []
    argv += ["--jpeg_q", str(answers.quality), "--label_offset", str(answers.label_offset)]
    argv += ["--skip_bad_images"] if args.skip_bad_images else []
    return argv


def command_line(argv: list[str], build_command: Sequence[str]) -> str:
    """The shell command that runs the same build from any folder: `build_command` (absolute, see
    `commands.generate_tfrecord_protos`) and the arguments, each quoted for the shell."""
    return shlex.join([*build_command, *argv])


def memory_need(workers: int) -> int:
    """Bytes a build with `workers` worker processes needs, by the measured figures above."""
    return PARENT_NEED + workers * WORKER_NEED


def check_memory(need: int, prompter: Prompter) -> None:
    """Before a training-set build: warn below `need` bytes available; offer (never run silently) the purge."""
    available = read_memory().available
    if available >= need:
        return
    print(f"only {gib(available)} of memory available; this build wants {gib(need)} free "
          "(a low-memory build can be killed by the kernel: see dmesg)")
    if not prompter.interactive:
        print("run purge_mem_caches.py first if the build runs out of memory")
        return
    if prompter.confirm("Run purge_mem_caches.py now (drop the page cache, list idle leftover processes)?", default=False):
        try:
            purge(PurgeOptions(yes=True), prompter)
        except UserError as exc:
            print(f"purge_mem_caches.py: {exc}; going on with the build")


def _run(args: argparse.Namespace, build_command: Sequence[str]) -> int:
    prompter = Prompter(interactive=sys.stdin.isatty() and not args.yes)
    answers = ask_answers(args, prompter, os.environ)
    build_argv = build_arguments(answers, args)
    for split, folder, tar in (("validation", "validation", "val"), ("train", "train", "train")):
        if not (answers.data_dir / folder).is_dir() and not answers.tarball(tar):
            print(f"{answers.data_dir} holds no {folder}/ folder (nor {BUILTIN_ARCHIVES[tar].name}): the {split} "
                  "split is skipped")
    if answers.train_dir or answers.tarball("train"):
        need = memory_need(args.num_threads or available_cpus()) if args.min_free_gb is None else args.min_free_gb * GIB
        check_memory(int(need), prompter)
    print(f"running: {command_line(build_argv, build_command)}", flush=True)
    return cli.main(build_argv)


def main(argv: list[str] | None, build_command: Sequence[str]) -> int:
    """Ask, print the command, run the build in this process; the exit code."""
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args, build_command), "\ninterrupted; nothing was built")
