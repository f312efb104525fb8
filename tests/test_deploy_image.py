"""deploy/image/build-and-check.sh takes its Debian mirror from DEBIAN_MIRROR or apt's lists only.

No root, buildah or network is needed: the script is sourced, which defines its functions
without running it, and ``debian_mirror`` is called under an apt configuration (APT_CONFIG,
apt's own variable) whose sources and lists are files of the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "deploy" / "image" / "build-and-check.sh"
# A name of the reserved .example domain: nothing is fetched from it.
MIRROR = "http://mirror.example/debian/"
ARCHITECTURE = "amd64"

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian)")


@dataclass(frozen=True)
class FakeApt:
    """An apt configuration that reads sources and lists from ``root`` only."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "apt.conf"

    @property
    def lists(self) -> Path:
        return self.root / "lists"

    def add_updated_suite(self, suite: str, label: str = "Debian") -> None:
        """Lists as ``apt-get update`` leaves them for MIRROR's ``suite`` main: Release, Packages."""
        prefix = f"{MIRROR.removeprefix('http://').rstrip('/').replace('/', '_')}_dists_{suite}"
        (self.lists / f"{prefix}_Release").write_text(
            f"Origin: {label}\nLabel: {label}\nCodename: {suite}\nComponents: main\n"
            f"Architectures: {ARCHITECTURE}\n"
        )
        (self.lists / f"{prefix}_main_binary-{ARCHITECTURE}_Packages").write_text("")


@pytest.fixture
def fake_apt(tmp_path: Path) -> FakeApt:
    """Sources naming MIRROR for bookworm and trixie, and no lists yet (no apt-get update)."""
    apt = FakeApt(tmp_path)
    (apt.lists / "partial").mkdir(parents=True)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        f"deb {MIRROR} bookworm main\ndeb {MIRROR} trixie main\n"
    )
    apt.config.write_text(
        f'Dir::State::Lists "{apt.lists}";\n'
        f'Dir::Etc::SourceList "{tmp_path / "sources.list"}";\n'
        f'Dir::Etc::SourceParts "{tmp_path / "sources.list.d"}";\n'
        f'APT::Architecture "{ARCHITECTURE}";\n'
        f'APT::Architectures {{ "{ARCHITECTURE}"; }};\n'
    )
    return apt


def debian_mirror(
    apt: FakeApt, environment_mirror: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The script's ``debian_mirror``, called under ``apt``'s configuration and DEBIAN_MIRROR."""
    environment = {name: value for name, value in os.environ.items() if name != "DEBIAN_MIRROR"}
    environment["APT_CONFIG"] = str(apt.config)
    if environment_mirror is not None:
        environment["DEBIAN_MIRROR"] = environment_mirror
    return subprocess.run(
        ["bash", "-c", 'source "$1" && debian_mirror', "bash", str(SCRIPT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_apt
def test_mirror_is_the_one_apts_lists_name_for_bookworm_main(fake_apt: FakeApt) -> None:
    fake_apt.add_updated_suite("bookworm")

    result = debian_mirror(fake_apt)

    assert (result.returncode, result.stdout, result.stderr) == (0, f"{MIRROR}\n", "")


def test_mirror_is_debian_mirror_when_set_even_if_apt_names_another(fake_apt: FakeApt) -> None:
    fake_apt.add_updated_suite("bookworm")

    result = debian_mirror(fake_apt, environment_mirror="http://debian.internal.example/debian/")

    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "http://debian.internal.example/debian/\n",
        "",
    )


@needs_apt
@pytest.mark.parametrize(
    "updated_suites",
    [(), ("trixie",)],
    ids=["no-apt-get-update-yet", "lists-of-another-suite"],
)
def test_without_debian_mirror_or_apts_lists_fails_saying_how_to_give_one(
    fake_apt: FakeApt, updated_suites: tuple[str, ...]
) -> None:
    for suite in updated_suites:
        fake_apt.add_updated_suite(suite)

    result = debian_mirror(fake_apt)

    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.startswith("image check FAILED: no Debian mirror: ")
    assert "run apt-get update, or set DEBIAN_MIRROR" in result.stderr


def test_script_names_no_host_but_the_loopback_of_its_own_checks() -> None:
    hosts = set(re.findall(r"\b[a-z][a-z0-9+.-]*://([A-Za-z0-9.-]+)", SCRIPT.read_text()))

    assert hosts <= {"127.0.0.1"}, hosts
