"""The Dockerfile's steps replayed without Docker: the image's layout rebuilt under a directory, from the file itself.

No Docker engine runs here, so `replay(dockerfile, context, root)` reads the instructions and carries them out:
each stage gets its own root under `root`; the image's own directories (IMAGE_DIRS: `/opt`, `/src`, `/wheels`,
`/var/lib/fleetbed`) are rewritten into that root wherever the file names them; ENV, WORKDIR, COPY (from the build
context as `.dockerignore` filters it, or `--from=STAGE`) and RUN (also with `--mount=type=bind,from=STAGE`) are
executed in order; the base image's `python` is the Python running the tests. Users and groups are Docker's
business: `groupadd` and `useradd` are skipped, `install -o/-g` drops its owner, USER is recorded, not switched
to. The result says where the final stage's directories ended up and what its CMD, ENTRYPOINT, HEALTHCHECK and
environment are.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_DIRS = ("/opt", "/src", "/wheels", "/var/lib/fleetbed")
# Absolute paths the file may name that belong to the base system, left as they are.
HOST_PATHS = ("/usr/sbin/nologin",)
_IMAGE_PATH = re.compile(r"(?<![\w./$:-])(" + "|".join(re.escape(d) for d in IMAGE_DIRS) + r")(?![\w.-])")
_ANY_PATH = re.compile(r"(?<![\w./$:}\\-])/[\w.-]+(?:/[\w.-]*)*")  # not URL paths (after a host or {port})
_STEP_TIMEOUT_S = 900


class ReplayError(AssertionError):
    """A step failed, or the file uses something the replay does not reproduce; the message says which."""


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments and parser directives dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def foreign_paths(dockerfile: Path) -> list[str]:
    """Absolute paths the file names that are neither the image's own directories nor known system paths."""
    return [
        path
        for _, arguments in instructions(dockerfile)
        for path in _ANY_PATH.findall(arguments)
        if not path.startswith(IMAGE_DIRS) and path not in HOST_PATHS
    ]


@dataclass
class Stage:
    name: str
    root: Path
    env: dict[str, str]
    workdir: str = "/"
    user: str = "root"
    keywords: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (RUN arguments, what it printed)

    def inside(self, text: str) -> str:
        """`text` with the image's directories moved under this stage's root."""
        return _IMAGE_PATH.sub(lambda match: str(self.root) + match.group(1), text)

    def path(self, image_path: str) -> Path:
        return Path(self.inside(image_path if image_path.startswith("/") else f"{self.workdir}/{image_path}"))

    @property
    def cwd(self) -> Path:
        return self.path(self.workdir)


@dataclass(frozen=True)
class Image:
    """The final stage as a container would start it."""

    stage: Stage
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.stage.env, **overrides}


def _base_env(shims: Path) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLEETBED_", "PYTHON", "VIRTUAL_ENV", "LOCUST_")) and k != "PATH"
    }
    # The base image's PATH, with its `python` (here: the interpreter under the tests' virtualenv) first.
    return {**keep, "PATH": f"{shims}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


def _python_shim(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    for name in ("python", "python3"):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\nexec "{base}" "$@"\n')
        shim.chmod(0o755)
    return directory


def _ignore_rules(context: Path) -> list[tuple[str, bool]]:
    """.dockerignore as (pattern, admits) in file order."""
    ignore = context / ".dockerignore"
    rules = []
    for line in ignore.read_text().splitlines() if ignore.exists() else []:
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.removeprefix("!").rstrip("/"), line.startswith("!")))
    return rules


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern.removeprefix("**/"))
    return fnmatch.fnmatchcase(path, pattern)


def in_context(relative: str, rules: list[tuple[str, bool]]) -> bool:
    """Docker's rule: the last line matching the path or one of its parent folders decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    admitted = True
    for pattern, admits in rules:
        if any(_matches(prefix, pattern) for prefix in prefixes):
            admitted = admits
    return admitted


def _copy_from_context(context: Path, source: str, target: Path) -> None:
    rules = _ignore_rules(context)
    origin = context / source
    if not in_context(source.rstrip("/"), rules):
        raise ReplayError(f"COPY {source}: .dockerignore keeps it out of the build context")
    if origin.is_dir():
        for path in sorted(origin.rglob("*")):
            if path.is_file() and in_context(path.relative_to(context).as_posix(), rules):
                destination = target / path.relative_to(origin)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
    else:
        if target.is_dir():
            target = target / origin.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)


def _copy(stage: Stage, arguments: str, context: Path, stages: dict[str, Stage]) -> None:
    origin: Stage | None = None
    if arguments.startswith("--"):
        option, _, arguments = arguments.partition(" ")
        if not option.startswith("--from="):
            raise ReplayError(f"COPY {option}: only --from=STAGE is reproduced")
        origin = stages[option.removeprefix("--from=")]
    *sources, destination = arguments.split()
    for source in sources:
        target = stage.path(destination)
        if origin is not None:
            found = origin.path(source)
            if found.is_dir():  # a folder's contents, as Docker copies them
                shutil.copytree(found, target, symlinks=True, dirs_exist_ok=True)
            else:
                target = target / found.name if destination.endswith("/") else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found, target)
            continue
        if destination.endswith("/") or len(sources) > 1:
            target = target / Path(source).name
        _copy_from_context(context, source.removeprefix("./"), target)


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def _without_user_management(command: str) -> str:
    kept = []
    for part in command.split(" && "):
        words = part.split()
        if words and words[0] in ("groupadd", "useradd"):
            continue
        if words and words[0] == "install":
            part = re.sub(r"\s-(o|g)\s+\S+", "", part)
        kept.append(part)
    return " && ".join(kept)


def _run(stage: Stage, arguments: str, stages: dict[str, Stage]) -> None:
    links: list[Path] = []
    while arguments.startswith("--mount="):
        option, _, arguments = arguments.partition(" ")
        spec = dict(item.split("=", 1) for item in option.removeprefix("--mount=").split(","))
        if spec.get("type") != "bind" or "from" not in spec:
            raise ReplayError(f"RUN {option}: only --mount=type=bind,from=STAGE is reproduced")
        target = stage.path(spec["target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(stages[spec["from"]].path(spec.get("source", "/")))
        links.append(target)
        arguments = arguments.strip()
    command = stage.inside(_without_user_management(arguments))
    stage.cwd.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=stage.cwd,
            env=stage.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=_STEP_TIMEOUT_S,
        )
    finally:
        for link in links:
            link.unlink()
    stage.outputs.append((arguments, result.stdout + result.stderr))
    if result.returncode != 0:
        raise ReplayError(f"RUN {arguments[:200]} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def replay(dockerfile: Path, context: Path, root: Path) -> Image:
    shims = _python_shim(root / "base-image-bin")
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            stage = Stage(name, root / name, _base_env(shims))
            stages[name] = stage
            continue
        if keyword == "ARG" and stage is None:
            continue
        if stage is None:
            raise ReplayError(f"{keyword} before FROM")
        stage.keywords.append((keyword, arguments))
        if keyword == "ENV":
            for assignment in shlex.split(arguments):
                name, _, value = assignment.partition("=")
                stage.env[name] = _expand(stage.inside(value), stage.env)
        elif keyword == "WORKDIR":
            stage.workdir = arguments
            stage.cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            _copy(stage, arguments, context, stages)
        elif keyword == "RUN":
            _run(stage, arguments, stages)
        elif keyword == "USER":
            stage.user = arguments
        elif keyword in ("EXPOSE", "VOLUME", "LABEL", "ENTRYPOINT", "CMD", "HEALTHCHECK", "ARG"):
            pass  # metadata, read below
        else:
            raise ReplayError(f"{keyword}: not reproduced by the replay; teach tests/support/dockerfile_replay.py")
    if stage is None:
        raise ReplayError("no FROM in the Dockerfile")
    final = dict(stage.keywords)
    healthcheck = final.get("HEALTHCHECK", "")
    return Image(
        stage,
        json.loads(final.get("ENTRYPOINT", "[]")),
        json.loads(final.get("CMD", "[]")),
        json.loads(healthcheck.split(" CMD ", 1)[1]) if " CMD " in healthcheck else [],
    )
