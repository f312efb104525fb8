"""The import contracts of pyproject.toml hold, and they fail when a lower layer imports a higher one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "Layers import only downward"
MODEL_ALONE = "The model imports nothing of the package"
AWS_FREE = "The model, the cache and the metrics import without AWS code"


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with ``project``'s pyproject.toml, on the package inside ``project``."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_of_the_project(destination: Path) -> Path:
    """The package and pyproject.toml, copied where a test may break them."""
    shutil.copytree(
        ROOT / "exporter", destination / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_package_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import", "broken_contract"),
    [
        (
            "model/jobs.py",
            "import exporter.config.settings",
            MODEL_ALONE,
        ),
        ("aws/errors.py", "import exporter.refresh.cache", LAYERS),
        ("refresh/cache.py", "import exporter.web.routes", LAYERS),
        ("metrics/families.py", "import botocore.session", AWS_FREE),
        ("refresh/cache.py", "import exporter.refresh.listing", AWS_FREE),
    ],
)
def test_an_import_against_the_layers_fails_the_contract(
    tmp_path: Path, module: str, upward_import: str, broken_contract: str
) -> None:
    project = copy_of_the_project(tmp_path)
    with (project / "exporter" / module).open("a", encoding="utf-8") as source:
        source.write(f"\n{upward_import}  # noqa\n")

    result = lint_imports(project)

    assert result.returncode != 0
    assert f"{broken_contract} BROKEN" in result.stdout
