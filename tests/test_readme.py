"""README.md stays a guide a newcomer reads in ten minutes, and every command that it and docs/ show
names only flags the command has (checked against the real argparse parsers, not a list kept by hand)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REPO
from imagenet_tfrecords import cli, generate
from imagenet_tfrecords.download import cli as download_cli
from imagenet_tfrecords.host import purge
from imagenet_tfrecords.verify import command as verify_command

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_README_LINES = 250
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}  # fenced blocks whose lines are commands
SEPARATORS = {"&&", "||", ";", "|", "&"}
FENCE = re.compile(r"^```(?P<info>[\w-]*)\n(?P<body>.*?)^```$", re.S | re.M)

# Each command, by every name a user types it under, and its parser.
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "build_imagenet_data.py": cli.build_parser,
    "build-imagenet-data": cli.build_parser,
    "download_imagenet.py": download_cli.build_parser,
    "download-imagenet": download_cli.build_parser,
    "generate_tfrecord_protos.py": generate.build_parser,
    "generate-tfrecord-protos": generate.build_parser,
    "purge_mem_caches.py": purge.build_parser,
    "purge-mem-caches": purge.build_parser,
    "imagenet-tfrecords-verify": getattr(verify_command, "build_parser", None) or verify_command._parser,
}
MODULE_COMMANDS = {"imagenet_tfrecords.verify": "imagenet-tfrecords-verify"}  # python -m MODULE
# docs/flags.md: the heading of each command's section, and its parser
FLAG_SECTIONS = {"build_imagenet_data.py": "build_imagenet_data.py", "download_imagenet.py": "download_imagenet.py",
                 "generate_tfrecord_protos.py": "generate_tfrecord_protos.py",
                 "purge_mem_caches.py": "purge_mem_caches.py",
                 "python -m imagenet_tfrecords.verify": "imagenet-tfrecords-verify"}
EVERY_COMMAND_HAS = {"-h", "--help", "--version"}  # said once at the top of docs/flags.md


def option_strings(command: str) -> set[str]:
    return {flag for action in PARSERS[command]()._actions for flag in action.option_strings}


def shell_lines(markdown: str) -> list[tuple[int, str]]:
    """(line number, command line) of every shell fenced block, a line continued with `\\` joined to the next."""
    lines = []
    for block in FENCE.finditer(markdown):
        if block["info"] not in SHELL_BLOCKS:
            continue
        first = markdown.count("\n", 0, block.start("body")) + 1
        pending, start = "", first
        for number, line in enumerate(block["body"].splitlines(), first):
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append((start, pending + line))
            pending = ""
        if pending:
            lines.append((start, pending))
    return lines


def inline_commands(markdown: str) -> list[tuple[int, str]]:
    """(line number, text) of every inline code span outside the fenced blocks (`python x.py --flag`)."""
    prose = FENCE.sub(lambda block: "\n" * block[0].count("\n"), markdown)  # line numbers kept
    return [(prose.count("\n", 0, span.start()) + 1, " ".join(span[1].split()))
            for span in re.finditer(r"`([^`]+)`", prose)]


def invocations(line: str) -> list[tuple[str, list[str]]]:
    """Each of our commands that `line` runs, with the words after it (up to `&&`, `|`, `;`)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # not shell (an unbalanced quote): split on spaces, drop a comment
        words = line.split("#", 1)[0].split()
    found, current = [], None
    for at, word in enumerate(words):
        if word in SEPARATORS:
            current = None
        elif Path(word).name in PARSERS and current is None:
            current = (Path(word).name, [])
            found.append(current)
        elif word in MODULE_COMMANDS and at > 0 and words[at - 1] == "-m" and current is None:
            current = (MODULE_COMMANDS[word], [])
            found.append(current)
        elif current is not None:
            current[1].append(word)
    return found


def flag_problems(markdown: str, source: str) -> list[str]:
    """`source:line: COMMAND has no flag --x` for every flag that a command shown (in a shell block, or in
an inline code span such as `python build_imagenet_data.py --verify OUT`) names and its parser lacks."""
    problems = []
    for number, line in shell_lines(markdown) + inline_commands(markdown):
        for command, words in invocations(line):
            known = option_strings(command)
            for word in words:
                flag = word.strip("[]()").split("=", 1)[0]
                if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and flag not in known:
                    problems.append(f"{source}:{number}: {command} has no flag {flag}: {line.strip()}")
    return problems


def test_readme_is_short_enough_to_read_in_ten_minutes() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move reference material to docs/"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_shown_uses_flags_that_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert flag_problems(text, path.name) == []


def test_readme_shows_every_command_it_promises() -> None:
    """The check above looks at something: README's blocks run the builder, with flags, more than once."""
    shown = [command for _, line in shell_lines(README.read_text(encoding="utf-8"))
             for command, words in invocations(line) if any(w.startswith("--") for w in words)]
    assert shown.count("build_imagenet_data.py") >= 3 and "download_imagenet.py" in shown


def test_the_flag_check_catches_a_misspelt_flag() -> None:
    """A made-up guide: a typo, a flag of another command, one after a line continuation, one in brackets."""
    made_up = "\n".join([
        "```bash",
        "python build_imagenet_data.py --train_directory T --ouptut_directory O   # --not_checked in a comment",
        "python3 download_imagenet.py --target_dir D --resize_images && python build_imagenet_data.py --sample",
        "build-imagenet-data --train_directory T \\",
        "    --output_directory O --max_image_per_split 10",
        "python -m imagenet_tfrecords.verify OUT [--deeper]",
        "pip install --no-deps . && dask worker tcp://HOST:8786 --nworkers 8",
        "```",
        "```python",
        'subprocess.run(["build_imagenet_data.py", "--not_a_shell_block"])',
        "```",
        "Check it with `python build_imagenet_data.py --verfy OUT`; `--not_a_command` alone is not checked.",
    ])
    assert [problem.split(": ", 2)[1] for problem in flag_problems(made_up, "made-up.md")] == [
        "build_imagenet_data.py has no flag --ouptut_directory",
        "download_imagenet.py has no flag --resize_images",
        "build-imagenet-data has no flag --max_image_per_split",
        "imagenet-tfrecords-verify has no flag --deeper",
        "build_imagenet_data.py has no flag --verfy",
    ]
    assert [number for number, _ in shell_lines(made_up)] == [2, 3, 4, 6, 7]


def test_docs_flags_lists_every_flag_of_every_command() -> None:
    """docs/flags.md has a section per command naming each of its flags (from the parser, so a new flag
    without a line there fails here)."""
    text = (REPO / "docs" / "flags.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    assert set(sections) == set(FLAG_SECTIONS)
    for heading, command in FLAG_SECTIONS.items():
        written = set(re.findall(r"--?[A-Za-z][\w-]*", sections[heading]))
        missing = sorted(option_strings(command) - EVERY_COMMAND_HAS - written)
        assert not missing, f"docs/flags.md, section {heading}: no line for {', '.join(missing)}"
    assert all(flag in text.split("\n## ", 1)[0] for flag in EVERY_COMMAND_HAS)


def test_readme_holds_the_test_command_that_ci_runs() -> None:
    """.ci/run runs README's "Run the tests" command; the two must not drift apart."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = ci[ci.index('# README "Run the tests":') + 1]
    assert command in [line for _, line in shell_lines(README.read_text(encoding="utf-8"))]


def _anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_links_between_readme_and_docs_lead_somewhere(path: Path) -> None:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for target, anchor in re.findall(r"\]\((?!https?://)([^)#\s]*)(?:#([^)\s]*))?\)", text):
        linked = (path.parent / target).resolve() if target else path
        assert linked.is_file(), f"{path.name}: link to {target}, which is not there"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", linked.read_text(encoding="utf-8")), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{path.name}: no heading #{anchor} in {target or 'it'}"
