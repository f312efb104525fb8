"""The package as a user installs it: sdist and wheel built, checked by twine, the wheel run.

``python -m build`` builds both from a copy of the source tree, once for this module; the
wheel is installed with its dependencies into a fresh virtualenv, whose console script must
report the version of pyproject.toml, the one place the version is written.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DIST_INFO = f"{PROJECT['name'].replace('-', '_')}-{PROJECT['version']}.dist-info"
# The files a user of the sdist needs besides the package: what it is, what changed, and
# the example configurations the README starts from.
SDIST_DOCUMENTS = ("README.md", "CHANGELOG.md", "config.example.yaml", "web-config.example.yaml")
# Building, and installing the wheel's dependencies, go through the package index.
BUILD_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Distributions:
    sdist: Path
    wheel: Path


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``command``; a non-zero exit fails the test with its output."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    """The sdist and the wheel, built from a copy of the tree without local artefacts."""
    source = tmp_path_factory.mktemp("source") / "sagemaker-tuning-exporter"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".client-versions",
        ),
    )
    outdir = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", outdir, source)
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return Distributions(sdist, wheel)


def test_build_names_both_distributions_for_the_project_and_its_version(
    distributions: Distributions,
) -> None:
    stem = f"{PROJECT['name'].replace('-', '_')}-{PROJECT['version']}"

    assert distributions.sdist.name == f"{stem}.tar.gz"
    assert distributions.wheel.name == f"{stem}-py3-none-any.whl"


def test_twine_check_passes_on_the_sdist_and_the_wheel(distributions: Distributions) -> None:
    result = run(
        sys.executable, "-m", "twine", "check", "--strict", distributions.sdist, distributions.wheel
    )

    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_metadata_carries_the_readme_as_markdown_and_the_console_script(
    distributions: Distributions,
) -> None:
    with zipfile.ZipFile(distributions.wheel) as wheel:
        metadata = email.parser.Parser().parsestr(wheel.read(f"{DIST_INFO}/METADATA").decode())
        entry_points = wheel.read(f"{DIST_INFO}/entry_points.txt").decode()
        names = wheel.namelist()

    assert metadata["Version"] == PROJECT["version"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == (ROOT / "README.md").read_text().strip()
    assert "sagemaker-tuning-exporter = exporter.cli:main" in entry_points
    assert "exporter/py.typed" in names
    assert not [name for name in names if name.startswith("tests/")]


def test_sdist_carries_the_readme_changelog_and_example_configs_but_not_the_tests(
    distributions: Distributions,
) -> None:
    with tarfile.open(distributions.sdist) as sdist:
        top, *_ = sdist.getnames()
        names = {name.removeprefix(f"{top}/") for name in sdist.getnames()}

    for document in SDIST_DOCUMENTS:
        assert document in names, document
    assert "pyproject.toml" in names
    assert "exporter/cli.py" in names
    assert not [name for name in names if name.startswith("tests/")]


def test_sdist_and_wheel_carry_the_repositorys_apache_2_0_license(
    distributions: Distributions,
) -> None:
    license_text = (ROOT / "LICENSE").read_text()
    with tarfile.open(distributions.sdist) as sdist:
        top, *_ = sdist.getnames()
        member = sdist.extractfile(f"{top}/LICENSE")
        assert member is not None, "the sdist's LICENSE is not a regular file"
        sdist_license = member.read().decode()
    with zipfile.ZipFile(distributions.wheel) as wheel:
        # PEP 639: the files of License-File go to .dist-info/licenses/.
        wheel_license = wheel.read(f"{DIST_INFO}/licenses/LICENSE").decode()
        metadata = email.parser.Parser().parsestr(wheel.read(f"{DIST_INFO}/METADATA").decode())

    assert license_text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in license_text
    assert sdist_license == license_text
    assert wheel_license == license_text
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_wheel_installed_in_a_fresh_virtualenv_reports_the_pyproject_version(
    distributions: Distributions, tmp_path: Path
) -> None:
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    run(environment / "bin" / "python", "-m", "pip", "install", "--quiet", distributions.wheel)

    version = run(environment / "bin" / "sagemaker-tuning-exporter", "--version")
    check = run(
        environment / "bin" / "sagemaker-tuning-exporter",
        "--check-config",
        "--config.file",
        ROOT / "config.example.yaml",
    )

    assert version.stdout == f"sagemaker-tuning-exporter {PROJECT['version']}\n"
    assert check.stdout.endswith("configuration is valid\n")


def test_changelog_has_a_section_for_the_version_of_pyproject() -> None:
    headings = [
        line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## [")
    ]

    assert headings[0] == "## [Unreleased]"
    assert any(heading.startswith(f"## [{PROJECT['version']}] - ") for heading in headings)
