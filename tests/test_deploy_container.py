"""deploy/Dockerfile agrees with the package: console script, port, config path, health check.

No Docker daemon is needed: the Dockerfile is parsed, its paths are checked against the
repository and .dockerignore, and its HEALTHCHECK command is run against a real exporter.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from exporter.cli import DEFAULT_LISTEN_ADDRESS
from exporter.config.settings import ExporterConfig
from tests.conftest import ROOT, RunningExporter
from tests.processes import free_port

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONFIG_PATH = "/etc/sagemaker-tuning-exporter/config.yaml"
DEFAULT_PORT = int(DEFAULT_LISTEN_ADDRESS.rsplit(":", 1)[1])


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    parsed = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def arguments_of(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction, in order."""
    return [arguments for key, arguments in instructions() if key == keyword]


def healthcheck_command() -> list[str]:
    """The exec-form command of the HEALTHCHECK instruction."""
    (healthcheck,) = arguments_of("HEALTHCHECK")
    command: list[str] = json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])
    return command


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (last match wins)."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(relative, pattern) or relative.startswith(pattern + "/"):
            excluded = not negated
    return excluded


def test_entrypoint_is_the_packages_console_script_when_the_image_runs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = arguments_of("ENTRYPOINT")
    (cmd,) = arguments_of("CMD")

    assert json.loads(entrypoint) == ["sagemaker-tuning-exporter"]
    assert scripts["sagemaker-tuning-exporter"] == "exporter.cli:main"
    assert json.loads(cmd) == [f"--config.file={CONFIG_PATH}"]


def test_image_is_built_in_two_stages_and_runs_as_a_numeric_non_root_user() -> None:
    stages = arguments_of("FROM")
    (user,) = arguments_of("USER")
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]

    assert len(stages) == 2
    assert stages[0].endswith(" AS build")
    assert any("--from=build" in copy for copy in arguments_of("COPY"))
    uid, _, gid = user.partition(":")
    assert int(uid) > 0
    assert int(gid) > 0
    (install,) = [run for run in arguments_of("RUN") if "useradd" in run]
    assert f"--gid {gid} " in install
    assert f"--uid {uid} --gid {gid} " in install
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in re.sub(r"\s+", " ", DOCKERFILE.read_text())
    assert requires_python == ">=3.11"


def test_exposed_port_and_health_check_port_are_the_exporters_default() -> None:
    (exposed,) = arguments_of("EXPOSE")

    assert int(exposed) == DEFAULT_PORT
    assert f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in " ".join(healthcheck_command())


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    sources = []
    for copy in arguments_of("COPY"):
        words = [word for word in copy.split() if not word.startswith("--")]
        if "--from=" not in copy:
            sources.extend(words[:-1])

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(source.rstrip("/")), source
    assert dockerignore_excludes("tests")
    assert dockerignore_excludes(".venv")


def test_image_default_config_is_the_example_and_is_valid() -> None:
    copies = [copy.split() for copy in arguments_of("COPY")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--check-config",
            "--config.file",
            "config.example.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert ["config.example.yaml", CONFIG_PATH] in copies
    assert result.returncode == 0, result.stderr


def test_health_check_succeeds_when_the_exporter_serves_and_fails_when_it_does_not(
    make_config: Callable[..., ExporterConfig],
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    running = run_exporter(make_config())
    command = healthcheck_command()
    assert command[0] == "python"

    def run_against(port: int) -> int:
        moved = [part.replace(f":{DEFAULT_PORT}/", f":{port}/") for part in command[1:]]
        return subprocess.run([sys.executable, *moved], capture_output=True, check=False).returncode

    assert run_against(running.server.port) == 0
    assert run_against(free_port()) != 0
