"""Reading YAML for configuration: the line of every key, and errors that name file, line and key.

:class:`KeyPathValidator` checks parts of a parsed document; each failure is a
:class:`ConfigError` whose message starts with ``file:line: dotted.key.path:``. Used by
the exporter's configuration and by ``--web.config.file``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_DURATION_PATTERN = re.compile(
    r"(?:(?P<w>\d{1,9})w)?(?:(?P<d>\d{1,9})d)?(?:(?P<h>\d{1,9})h)?(?:(?P<m>\d{1,9})m)?(?:(?P<s>\d{1,9})s)?"
)
_DURATION_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_HINT = "a number of seconds or a duration such as 90s, 5m, 1h, 7d"
_MAX_DURATION_SECONDS = 10 * 365 * 86400


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


def read_text_file(path: Path, kind: str) -> str:
    """The UTF-8 text of ``path``; ``kind`` (``config file``) names it in the error."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {kind}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {kind} is not UTF-8 text") from None


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings, so their validation can name the key."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str, source: str, empty_message: str) -> tuple[object, dict[str, int]]:
    """The document in YAML ``text`` and the line of each of its key paths.

    Duplicate, complex and recursive keys are errors; ``empty_message`` is the error for an
    empty document.
    """
    try:
        root = yaml.compose(text, Loader=_ConfigLoader)
        if root is None:
            raise ConfigError(f"{source}: {empty_message}")
        lines: dict[str, int] = {}
        _index_node_lines(root, "", lines, source, ancestors=(), visited=set())
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(_describe_yaml_error(error, source)) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    except ValueError as error:  # e.g. an integer literal longer than Python converts
        raise ConfigError(f"{source}: invalid YAML: {error}") from None
    return data, lines


def parse_duration(value: object) -> float | None:
    """Seconds in ``value`` (a number, or a string like ``90s``, ``5m``, ``1h30m``), else None.

    Negative, infinite and absurd values (over ten years) are None too.
    """
    if isinstance(value, bool):
        return None
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = _finite_float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION_PATTERN.fullmatch(text)
        if text and match is not None:
            seconds = float(
                sum(
                    int(count) * _DURATION_UNIT_SECONDS[unit]
                    for unit, count in match.groupdict().items()
                    if count
                )
            )
        else:
            seconds = _finite_float(text)
    if seconds is None or not 0 <= seconds <= _MAX_DURATION_SECONDS:
        return None
    return seconds


def _finite_float(value: int | float | str) -> float | None:
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _describe_yaml_error(error: yaml.YAMLError, source: str) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return f"{source}: invalid YAML: {problem}"
    return f"{source}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}"


def _index_node_lines(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    source: str,
    *,
    ancestors: tuple[int, ...],
    visited: set[int],
) -> None:
    """Record the 1-based line of every key path; reject duplicate, complex and recursive keys.

    A node reached again through an alias is not walked again, so aliases of aliases cannot
    multiply the work; the paths below it take their line from the alias.
    """
    line = node.start_mark.line + 1
    if id(node) in ancestors:
        raise ConfigError(f"{source}:{line}: {path}: an alias refers to its own ancestor")
    lines[path] = line
    if id(node) in visited:
        return
    visited.add(id(node))
    ancestors = (*ancestors, id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    f"{source}:{key_line}: {path or '(top level)'}: keys must be plain names"
                )
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                raise ConfigError(f"{source}:{key_line}: {child}: duplicate key")
            seen.add(key)
            _index_node_lines(
                value_node, child, lines, source, ancestors=ancestors, visited=visited
            )
            lines[child] = key_line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_node_lines(
                item, f"{path}[{index}]", lines, source, ancestors=ancestors, visited=visited
            )


class KeyPathValidator:
    """Checks parts of a parsed YAML document; each failure names its file, line and key path."""

    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self._source = source
        self._lines = lines

    def fail(self, path: str, message: str) -> ConfigError:
        """The error to raise for the value at ``path``."""
        line = self._line_of(path)
        where = f"{self._source}:{line}" if line is not None else self._source
        return ConfigError(f"{where}: {path or '(top level)'}: {message}")

    def _line_of(self, path: str) -> int | None:
        """The line of ``path``, or of its nearest ancestor when only that was indexed."""
        while path not in self._lines and path:
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
        return self._lines.get(path)

    def mapping(self, value: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """``value`` as a mapping whose keys are all in ``allowed``."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {type_name(value)}")
        for key in value:
            if key not in allowed:
                child = f"{path}.{key}" if path else str(key)
                raise self.fail(child, f"unknown key; expected one of {', '.join(allowed)}")
        return value

    def string(self, value: object, path: str) -> str:
        """``value`` as a non-empty string."""
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {describe_value(value)}")
        return value

    def optional_string(self, parent: Mapping[str, Any], key: str, path: str) -> str | None:
        """``parent[key]`` as a non-empty string, or None when absent or empty."""
        if parent.get(key) is None:
            return None
        return self.string(parent[key], f"{path}.{key}" if path else key)

    def string_list(self, value: object, path: str) -> list[str]:
        """``value`` as a list of non-empty strings."""
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {type_name(value)}")
        return [self.string(item, f"{path}[{index}]") for index, item in enumerate(value)]


def type_name(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def describe_value(value: object) -> str:
    """A short, printable description of ``value`` for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**50:
        return "a number too large"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 60 else f"{text[:57]}..."
    return type_name(value)
