"""The Markdown documentation holds together: its links lead somewhere, the README stays short.

A relative link must name a file or directory that exists, and its ``#fragment``, if any, must
be the GitHub anchor of a heading in the Markdown file it names. Links to other schemes
(``https:``, ``mailto:``) are not followed. Links inside code blocks and code spans are not
links.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

README_LIMIT_BYTES = 20_000
# Directories that hold no documentation of this project: tool caches, virtualenvs, builds.
SKIPPED_DIRECTORIES = {"build", "dist", "node_modules"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# A code span: a run of backticks, then anything up to the same run, within one paragraph.
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^>\n]*>|\S+)", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
LINE_FRAGMENT = re.compile(r"^L\d+(?:-L\d+)?$")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def markdown_files(root: Path) -> list[Path]:
    """Every Markdown file of the project, outside hidden directories and build output."""
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [
            name
            for name in subdirectories
            if not (
                name.startswith(".") or name in SKIPPED_DIRECTORIES or name.endswith(".egg-info")
            )
        ]
        found.extend(Path(directory, name) for name in files if name.endswith(".md"))
    return sorted(found)


def without_code_blocks(text: str) -> str:
    """``text`` with the lines of fenced code blocks blanked out, lines kept."""
    lines = text.split("\n")
    fence: str | None = None
    for number, line in enumerate(lines):
        marker = FENCE.match(line)
        if fence is None and marker:
            fence = marker.group(1)
            lines[number] = ""
        elif fence is not None:
            # A closing fence: the opening one's character, at least as many, nothing after.
            if marker and marker.group(1).startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            lines[number] = ""
    return "\n".join(lines)


def prose(text: str) -> str:
    """``text`` with code blocks and code spans blanked out, lines and offsets kept."""
    return CODE_SPAN.sub(blanked, without_code_blocks(text))


def blanked(match: re.Match[str]) -> str:
    """The matched text as spaces, its line breaks kept."""
    return re.sub(r"[^\n]", " ", match.group(0))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but ``-`` and ``_`` gone,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags show nothing
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of ``path``; repeated ones numbered as GitHub does."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in without_code_blocks(path.read_text(encoding="utf-8")).split("\n"):
        heading = ATX_HEADING.match(line)
        if heading is None:
            continue
        anchor = github_anchor(heading.group(1) or "")
        repeats = seen.get(anchor, 0)
        seen[anchor] = repeats + 1
        found.add(anchor if repeats == 0 else f"{anchor}-{repeats}")
    return found


def links(path: Path) -> Iterator[Link]:
    """The link targets of ``path``, inline and reference definitions, with their lines."""
    text = prose(path.read_text(encoding="utf-8"))
    matches = [*INLINE_LINK.finditer(text), *REFERENCE_DEFINITION.finditer(text)]
    for match in sorted(matches, key=lambda match: match.start(1)):
        target = match.group(1).removeprefix("<").removesuffix(">")
        yield Link(path, text.count("\n", 0, match.start(1)) + 1, target)


def problem(link: Link, root: Path) -> str | None:
    """Why ``link`` does not resolve, or None when it does or is not a relative link."""
    if SCHEME.match(link.target):
        return None
    address, _, fragment = link.target.partition("#")
    address = urllib.parse.unquote(address)
    if not address:
        target = link.source
    elif address.startswith("/"):
        target = root / address.lstrip("/")
    else:
        target = link.source.parent / address
    if not target.exists():
        return f"no file {os.path.relpath(target, root)}"
    if not fragment:
        return None
    fragment = urllib.parse.unquote(fragment)
    if target.suffix == ".md":
        if fragment in anchors(target):
            return None
        return f"no heading of {os.path.relpath(target, root)} has the anchor #{fragment}"
    if target.is_file() and LINE_FRAGMENT.match(fragment):
        return None
    return f"#{fragment}: only Markdown files have heading anchors; other files have lines (#L10)"


def broken_links(root: Path) -> list[str]:
    return [
        f"{link.source.relative_to(root)}:{link.line}: ({link.target}): {reason}"
        for path in markdown_files(root)
        for link in links(path)
        if (reason := problem(link, root)) is not None
    ]


def test_every_relative_markdown_link_resolves() -> None:
    assert len(markdown_files(ROOT)) > 1

    broken = broken_links(ROOT)

    assert broken == [], "links that lead nowhere:\n" + "\n".join(broken)


def test_readme_is_under_20000_bytes() -> None:
    size = (ROOT / "README.md").stat().st_size

    assert size < README_LIMIT_BYTES, (
        f"README.md is {size} bytes, the limit is {README_LIMIT_BYTES}: move long explanations "
        "to docs/, deploy/README.md, bench/README.md or CONTRIBUTING.md and link them"
    )


def test_a_link_to_a_missing_file_or_heading_is_reported_with_its_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Reloading the configuration\n")
    (tmp_path / "README.md").write_text(
        "# Project\n"
        "\n"
        "See [the guide](docs/guide.md#reloading-the-configuration) and\n"
        "[a missing file](docs/gone.md), [a missing heading](docs/guide.md#reloading) and\n"
        "[this page](#project), [that page](#nowhere).\n"
    )

    assert broken_links(tmp_path) == [
        "README.md:4: (docs/gone.md): no file docs/gone.md",
        "README.md:4: (docs/guide.md#reloading): no heading of docs/guide.md has the anchor "
        "#reloading",
        "README.md:5: (#nowhere): no heading of README.md has the anchor #nowhere",
    ]


def test_anchors_follow_githubs_rules_for_punctuation_code_and_repeated_headings(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# `sagemaker-tuning-exporter`: what it is\n"
        "## Tags, labels & the prometheus_client bound\n"
        "## Example\n"
        "## Example\n"
        "```sh\n"
        "# not a heading\n"
        "```\n"
    )

    assert anchors(page) == {
        "sagemaker-tuning-exporter-what-it-is",
        "tags-labels--the-prometheus_client-bound",
        "example",
        "example-1",
    }


def test_links_in_code_and_to_other_schemes_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "# Project\n"
        "[exporter-toolkit](https://github.com/prometheus/exporter-toolkit#readme), "
        "[mail](mailto:team@example.com), `[code](gone.md)`\n"
        "```md\n"
        "[in a block](gone.md)\n"
        "```\n"
        "    ~~~\n"
        "[after an indented tilde line](gone.md#x)\n"
    )

    assert broken_links(tmp_path) == ["README.md:7: (gone.md#x): no file gone.md"]
