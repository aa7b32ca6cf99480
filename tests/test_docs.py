"""The README and docs/ against the tree: every command and option they show exists in the real parsers, every
`make` target in the Makefile, every FLEETBED_ variable in the code, every path, module and link they name."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
TOP_LEVEL = {path.name for path in ROOT.iterdir()} - {".venv", ".fleetbed", ".git"}
# Paths the docs name that are created when used, not kept in the tree.
CREATED_WHEN_USED = ("nix/secrets/fleetbed", "nix/secrets/grafana", "nix/secrets/locust")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def code(text: str) -> Iterator[tuple[str, bool]]:
    """(code, runnable) for every fenced line (continuations joined) and inline span; `sh` blocks are runnable."""
    for language, block in _FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            yield line, language == "sh"
    for span in _INLINE.findall(_FENCE.sub("", text)):
        yield span, False


def invocations(line: str, program: str) -> Iterator[list[str]]:
    """The words after each `program` in a line of code, up to a comment, `&&`, `|` or `;`."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        words = line.split()
    at_start = True
    for i, word in enumerate(words):
        if at_start and (word == program or word.endswith("/" + program)):
            rest = []
            for arg in words[i + 1 :]:
                if arg in ("&&", "|", ";", "||", ">", "<"):
                    break
                rest.append(arg)
            yield rest
        # A command starts a line, follows a separator, or follows variable assignments (`A=1 fleetbed ...`).
        at_start = word in ("&&", "|", ";", "||") or (at_start and re.fullmatch(r"[A-Z_]+=\S*", word) is not None)


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_words(args: list[str]) -> list[str]:
    """`--slo`, `-o` from `[--slo ...]`, `--step=5s`, `[--duration D | --until-failure]`."""
    found = []
    for arg in args:
        for word in re.split(r"[\[\]|]", arg):
            if re.match(r"^--?[A-Za-z]", word):
                found.append(word.split("=")[0])
    return found


def fleetbed_problems(args: list[str], runnable: bool) -> list[str]:
    """What is wrong with `fleetbed ARGS` as the docs show it: an unknown command or option, or (for a runnable
    example) arguments the real parser refuses."""
    parser = build_parser()
    commands = subcommands(parser)
    words = [a for a in args if not a.startswith("-")]
    name = words[0] if words else None
    if name is None or re.fullmatch(r"[A-Z_]+", name):
        known = options_of(parser).union(*(options_of(p) for p in commands.values()))
        return [f"fleetbed has no option {o}" for o in option_words(args) if o not in known]
    if name not in commands:
        return [f"fleetbed has no command {name!r}"]
    known = options_of(parser) | options_of(commands[name])
    problems = [f"fleetbed {name} has no option {o}" for o in option_words(args) if o not in known]
    if runnable and not problems:
        try:
            parser.parse_args(args)
        except SystemExit:
            problems.append(f"fleetbed {shlex.join(args)} is refused by the parser")
    return problems


# Locust's --help leaves out the options a locustfile adds, so the real parser is built in a process of its own
# (gevent stays out of this one) with the locustfile imported, and its option strings printed.
_LOCUST_OPTIONS = """
import importlib, sys
import locust
from locust.argument_parser import get_parser
importlib.import_module(sys.argv[1])
print("\\n".join(get_parser(default_config_files=[])._option_string_actions))
"""


@functools.cache
def locust_options(locustfile: str) -> frozenset[str]:
    path = ROOT / locustfile
    result = subprocess.run(
        [sys.executable, "-c", _LOCUST_OPTIONS, path.stem],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(path.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return frozenset(result.stdout.split())


def locust_problems(args: list[str]) -> list[str]:
    locustfile = "locustfiles/kettle.py"
    for flag in ("-f", "--locustfile"):
        if flag in args:
            shown = args[args.index(flag) + 1]
            # `$(fleetbed locustfile)` prints the installed copy of locustfiles/kettle.py.
            locustfile = (
                "locustfiles/kettle.py" if shown.startswith("$(fleetbed") else shown.removeprefix("/opt/fleetbed/")
            )
    known = locust_options(locustfile)
    return [f"locust -f {locustfile} has no option {o}" for o in option_words(args) if o not in known]


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*):", (ROOT / "Makefile").read_text(), re.M))


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_fleetbed_command_and_option_shown_exists(doc: Path) -> None:
    problems = [
        f"{problem}: {line.strip()}"
        for line, runnable in code(doc.read_text())
        for args in invocations(line, "fleetbed")
        for problem in fleetbed_problems(args, runnable)
    ]
    assert problems == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_locust_option_shown_exists(doc: Path) -> None:
    problems = [
        f"{problem}: {line.strip()}"
        for line, _ in code(doc.read_text())
        for args in invocations(line, "locust")
        for problem in locust_problems(args)
    ]
    assert problems == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_make_target_shown_exists(doc: Path) -> None:
    shown = {args[0] for line, _ in code(doc.read_text()) for args in invocations(line, "make") if args}
    assert shown - make_targets() == set()


def source_text() -> str:
    folders = ("app", "tests", "locustfiles", "bench", "nix", "monitoring")
    files = [p for folder in folders for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".nix", ".yml")]
    files += [ROOT / "compose.yaml", ROOT / "Dockerfile", ROOT / ".ci" / "run"]
    return "\n".join(p.read_text() for p in files if p.is_file() and "node_modules" not in p.parts)


def test_every_variable_shown_exists_and_every_setting_is_in_the_readme() -> None:
    source = source_text()
    shown = {v for doc in DOCS for v in re.findall(r"\bFLEETBED_[A-Z0-9_]*[A-Z0-9]", doc.read_text())}
    assert {v for v in shown if v not in source} == set(), "documented but never read"
    settings = set(re.findall(r'"(FLEETBED_[A-Z0-9_]+)"', (ROOT / "app" / "settings.py").read_text()))
    settings -= {"FLEETBED_TEST_HANDLER_CPU_MS"}  # a test-only setting, documented where the tests use it
    readme = (ROOT / "README.md").read_text()
    assert {v for v in settings if v not in readme} == set(), "a setting missing from the README's table"


def looks_like_a_path(span: str) -> bool:
    first = span.split("/")[0]
    return (
        "/" in span
        and first in TOP_LEVEL
        and not re.search(r"[\s<>{}$]|NNN|\.\.\.", span)
        and not span.startswith(CREATED_WHEN_USED)
    )


def missing_paths(text: str) -> list[str]:
    return [
        span
        for span, _ in code(text)
        if looks_like_a_path(span.rstrip("/")) and not any(ROOT.glob(span.rstrip("/").split(":")[0].split("#")[0]))
    ]


def unresolved_modules(text: str) -> list[str]:
    """`app.x.y` names (modules, or names in them) that do not resolve."""
    unresolved = []
    for span, _ in code(text):
        name = span.removesuffix("()").split("(")[0]
        if not re.fullmatch(r"app(\.[A-Za-z_]\w*)+", name):
            continue
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                target: object = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            try:
                for attribute in parts[cut:]:
                    target = getattr(target, attribute)
            except AttributeError:
                unresolved.append(name)
            break
    return unresolved


def broken_links(doc: Path, text: str) -> list[str]:
    targets = [t for t in _LINK.findall(_FENCE.sub("", text)) if not re.match(r"^[a-z]+:", t)]
    return [t for t in targets if t.split("#")[0] and not (doc.parent / t.split("#")[0]).exists()]


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_path_module_and_link_shown_exists(doc: Path) -> None:
    text = doc.read_text()
    assert missing_paths(text) == []
    assert unresolved_modules(text) == []
    assert broken_links(doc, text) == []


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert "make run " in readme
    assert "make test " in readme


def test_these_checks_catch_what_is_wrong(tmp_path: Path) -> None:
    wrong = """
```sh
fleetbed serve --no-such-option
fleetbed experiment --devices many
fleetbed frobnicate
locust -H http://127.0.0.1:8080 --no-such-locust-option
make no-such-target
```

Synopsis: `fleetbed backfill --devices D [--no-such-flag]`, the module `app.no_such_module`, the name
`app.validation.no_such_name`, the file `app/no_such_file.py`, a [link](no-such-page.md).
"""
    fleetbed = [
        p for line, run in code(wrong) for args in invocations(line, "fleetbed") for p in fleetbed_problems(args, run)
    ]
    assert len(fleetbed) == 4, fleetbed
    locust = [p for line, _ in code(wrong) for args in invocations(line, "locust") for p in locust_problems(args)]
    assert len(locust) == 1, locust
    assert {args[0] for line, _ in code(wrong) for args in invocations(line, "make")} - make_targets()
    assert missing_paths(wrong) == ["app/no_such_file.py"]
    assert unresolved_modules(wrong) == ["app.no_such_module", "app.validation.no_such_name"]
    assert broken_links(tmp_path / "doc.md", wrong) == ["no-such-page.md"]
    assert "FLEETBED_" + "NO_SUCH_SETTING" not in source_text()
    right = "```sh\nfleetbed serve --workers 2\nfleetbed experiment --devices 200 --duration 60s --out runs/a\n```\n"
    assert [
        p for line, run in code(right) for args in invocations(line, "fleetbed") for p in fleetbed_problems(args, run)
    ] == []
