"""What `--verify` found: the report of the whole directory, per split, as a table or as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .shard_check import Problem, ShardReport


@dataclass
class SplitStats:
    shards: int = 0
    records: int = 0
    expected_records: int | None = None  # from manifest.json (images planned less bad images)
    classes: int = 0
    per_class_min: int = 0
    per_class_max: int = 0
    min_classes_per_shard: int = 0
    label_histogram: dict[int, int] = field(default_factory=dict)


@dataclass
class VerifyReport:
    directory: str
    index_directory: str | None
    deep: bool
    shards: list[ShardReport] = field(default_factory=list)
    splits: dict[str, SplitStats] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, file: str, message: str) -> None:
        self.problems.append(Problem(file, None, message))


def format_table(report: VerifyReport) -> str:
    lines = [f"verified {report.directory}: {len(report.shards)} shards"
             + (f", DALI indexes in {report.index_directory}" if report.index_directory else "")
             + (", every image decoded" if report.deep else ""),
             f"{'split':<11} {'shards':>7} {'records':>9} {'expected':>9} {'classes':>8} "
             f"{'per class':>11} {'classes/shard':>14}"]
    for split, s in report.splits.items():
        expected = "-" if s.expected_records is None else s.expected_records
        lines.append(f"{split:<11} {s.shards:>7} {s.records:>9} {expected:>9} {s.classes:>8} "
                     f"{f'{s.per_class_min}..{s.per_class_max}':>11} {f'>= {s.min_classes_per_shard}':>14}")
    lines += [f"note: {note}" for note in report.notes]
    if report.ok:
        lines.append("OK: every check holds")
    else:
        lines.append(f"FAILED: {len(report.problems)} problems")
        lines += [problem.line() for problem in report.problems]
    return "\n".join(lines)


def report_json(report: VerifyReport) -> dict:
    return {
        "ok": report.ok,
        "directory": report.directory,
        "index_directory": report.index_directory,
        "deep": report.deep,
        "splits": {split: asdict(stats) for split, stats in report.splits.items()},
        "shards": {s.name: {"split": s.split, "records": s.records, "size": s.size, "sha256": s.sha256,
                            "framing_ok": s.framing_ok, "classes": len(s.labels)} for s in report.shards},
        "problems": [asdict(p) | {"line": p.line()} for p in report.problems],
        "notes": report.notes,
    }
