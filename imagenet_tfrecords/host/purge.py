"""purge_mem_caches.py: free host memory before a build (drop the page cache, end idle leftover processes)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..commands import add_version_flag
from ..errors import UserError, run_command
from ..prompts import Prompter, Question, flag_type, parse_number_in
from .memory import GIB, container_hint, format_memory_table, gib, knobs, read_memory, uses_sudo, write_knobs
from .processes import DEFAULT_MIN_AGE_SECONDS, IDLE_LOOK_SECONDS, end_processes, find_candidates, format_candidates

DEFAULT_TOP = 10


@dataclass(frozen=True)
class PurgeOptions:
    threshold_gib: float | None = None  # purge only below this much available memory
    yes: bool = False  # drop the cache without asking
    dry_run: bool = False
    compact: bool = False
    force: bool = False  # run even inside a container
    top: int = DEFAULT_TOP
    match: str | None = None
    min_age_minutes: float = DEFAULT_MIN_AGE_SECONDS / 60  # only processes at least this old are offered


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Free host memory before or after an ImageNet build: report memory, sync and drop the page cache "
        "(as root, or through sudo), and offer to end idle leftover python/TensorFlow processes of yours: never "
        "one whose parent or session leader is alive and not offered too (a test's servers, a shell's jobs).",
    )
    add_version_flag(parser)
    parser.add_argument("--threshold", type=float, metavar="GB",
                        help="drop the cache only when less than GB GiB of memory is available")
    parser.add_argument("--yes", action="store_true",
                        help="drop the cache without asking (processes are only listed, never ended, with --yes)")
    parser.add_argument("--dry-run", action="store_true",
                        help="report and list only; write nothing, end nothing (also runs inside a container)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (the text goes to stderr)")
    parser.add_argument("--force", action="store_true", help="run even though this looks like a container")
    parser.add_argument("--compact", action="store_true", help="also compact memory (/proc/sys/vm/compact_memory)")
    parser.add_argument("--top", type=flag_type(parse_number_in(0)), default=DEFAULT_TOP, metavar="N",
                        help=f"list the N largest leftover processes (default {DEFAULT_TOP})")
    parser.add_argument("--match", metavar="TEXT",
                        help="list your idle processes whose command line contains TEXT, "
                        "instead of python/TensorFlow ones")
    parser.add_argument("--min_age", type=flag_type(parse_number_in(0, whole=False)), default=DEFAULT_MIN_AGE_SECONDS / 60, metavar="MINUTES",
                        help="offer only processes started at least MINUTES ago "
                        f"(default {DEFAULT_MIN_AGE_SECONDS / 60:g}) that, with every process below them or in "
                        f"their process group, use no CPU during a {IDLE_LOOK_SECONDS:g} s look")
    return parser


def parse_picks(count: int) -> Callable[[str], list[int]]:
    """A parser of 'all', nothing, or row numbers in 1..count separated by spaces or commas."""

    def parse(text: str) -> list[int]:
        words = text.replace(",", " ").split()
        if words == ["all"]:
            return list(range(1, count + 1))
        numbers = []
        for word in words:
            if not word.isdigit() or not 1 <= int(word) <= count:
                raise ValueError(f"not a row number in 1..{count}: {word!r}")
            numbers.append(int(word))
        return sorted(set(numbers))

    return parse


def purge(options: PurgeOptions, prompter: Prompter, say: Callable[[str], None] = print) -> dict[str, object]:
    """Report, drop the cache, list and offer to end idle leftover processes; the report as a dict."""
    hint = container_hint()
    if hint and not options.force and not options.dry_run:
        raise UserError(f"this looks like a container ({hint}): dropping caches here frees nothing of the host's; "
                        "run purge_mem_caches.py on the host, pass --dry-run to only look, or pass --force")
    if hint:
        say(f"note: this looks like a container ({hint}): dropping caches here frees nothing of the host's")
    before = read_memory()
    report: dict[str, object] = {"container": hint, "dry_run": options.dry_run, "before": before.as_dict(),
                                 "written": [], "processes": [], "ended": []}
    say(format_memory_table(before))
    targets = knobs(options.compact)
    how = "through sudo" if uses_sudo() else "as root"
    plan = ", then ".join(f"write {value} to {path}" for path, value in targets)
    if options.threshold_gib is not None and before.available >= options.threshold_gib * GIB:
        say(f"{gib(before.available)} available, not below --threshold {options.threshold_gib:g} GiB: cache left alone")
    elif options.dry_run:
        say(f"dry run: would sync, then {plan} ({how})")
    elif not options.yes and not prompter.interactive:
        raise UserError("no terminal to confirm on: pass --yes to drop the page cache, or --dry-run to only look")
    elif options.yes or prompter.confirm(f"Sync, then {plan} ({how})?", default=True):
        write_knobs(targets, prompter.secret)
        report["written"] = [str(path) for path, _ in targets]
        after = read_memory()
        say("page cache dropped" + (" and memory compacted" if options.compact else ""))
        say(format_memory_table(before, after))
    else:
        say("cache left alone")
    candidates = find_candidates(options.top, options.match, options.min_age_minutes * 60)
    report["processes"] = [c.as_dict() for c in candidates]
    idle = f"idle, started at least {options.min_age_minutes:g} min ago"
    if not candidates:
        say(f"no leftover python/TensorFlow processes of yours ({idle})" if options.match is None
            else f"no processes of yours match {options.match!r} ({idle})")
    else:
        say(f"largest processes of yours ({idle}) " + ("that look like leftover builds or training runs:"
                                                        if options.match is None else f"matching {options.match!r}:"))
        say(format_candidates(candidates))
        if options.dry_run or not prompter.interactive:
            say("nothing ended (run it in a terminal, without --yes or --dry-run, to pick some)")
        else:
            picked = prompter.answer(Question("End which (row numbers, 'all', or Enter for none)?",
                                              parse_picks(len(candidates)), default=""))
            chosen = [candidates[n - 1] for n in picked]
            if chosen:
                say("\n".join(f"  pid {c.pid}: {c.short_command()}" for c in chosen))
            if chosen and prompter.confirm(f"End these {len(chosen)} process(es)?", default=False):
                ended = end_processes(chosen)
                report["ended"] = ended
                say(f"ended pid {', '.join(map(str, ended))}" if ended else "ended none")
            else:
                say("nothing ended")
    report["after"] = read_memory().as_dict()
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = PurgeOptions(args.threshold, args.yes, args.dry_run, args.compact, args.force, args.top, args.match,
                           args.min_age)
    prompter = Prompter(interactive=sys.stdin.isatty() and not args.yes and not args.json)
    say = partial(print, file=sys.stderr) if args.json else print

    def body() -> int:
        report = purge(options, prompter, say)
        if args.json:
            print(json.dumps(report, indent=2))
        return 0

    return run_command(body, "interrupted")
