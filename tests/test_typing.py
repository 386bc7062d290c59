"""A user's ``mypy --strict`` sees langswarm's types (``tests/typing/``).

mypy runs in a subprocess, from a scratch directory (so the repository is not the user's
source tree) and with ``tests/typing/mypy.ini`` (so the project's own settings do not apply).
It must find langswarm as an installed package, where it reads types only from a package
marked ``py.typed``. setuptools' editable install is an import hook, which mypy cannot follow,
so the directory the installed package is imported from goes on ``PYTHONPATH``: mypy takes
those entries as installed packages, as it does site-packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import langswarm

TYPING = Path(__file__).resolve().parent / "typing"
#: Where ``import langswarm`` finds the package (the source tree, for an editable install).
INSTALLED = Path(langswarm.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mypy_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache kept between runs when pytest has its cache (a cold run takes ~40 s)."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("mypy-downstream"))
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(file: Path, cache: Path, cwd: Path, packages: Path = INSTALLED) -> tuple[int, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(TYPING / "mypy.ini"),
            "--cache-dir",
            str(cache),
            str(file),
        ],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(packages)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.timeout(600)
def test_downstream_code_passes_strict(mypy_cache: Path, tmp_path: Path) -> None:
    code, output = mypy(TYPING / "downstream.py", mypy_cache, tmp_path)
    assert code == 0, output
    assert "Success: no issues found in 1 source file" in output


@pytest.mark.timeout(600)
def test_negative_control_fails_on_exactly_the_marked_lines(
    mypy_cache: Path, tmp_path: Path
) -> None:
    source = TYPING / "downstream_errors.py"
    marked = {
        number
        for number, line in enumerate(source.read_text().splitlines(), start=1)
        if line.endswith("# error")
    }
    assert len(marked) >= 5
    code, output = mypy(source, mypy_cache, tmp_path)
    assert code == 1, output
    reported = {int(n) for n in re.findall(r"^.*downstream_errors\.py:(\d+): error:", output, re.M)}
    assert reported == marked, output
    # The SDKs' request types are what the converters are checked against.
    assert "ChatCompletionUserMessageParam" in output and "EasyInputMessageParam" in output


@pytest.mark.timeout(600)
def test_the_py_typed_marker_is_what_makes_the_package_typed(
    mypy_cache: Path, tmp_path: Path
) -> None:
    assert (INSTALLED / "langswarm" / "py.typed").is_file()
    assert (INSTALLED / "langswarm" / "core" / "memory" / "py.typed").is_file()
    unmarked = tmp_path / "site-packages"
    shutil.copytree(
        INSTALLED / "langswarm",
        unmarked / "langswarm",
        ignore=shutil.ignore_patterns("py.typed", "__pycache__"),
    )
    work = tmp_path / "work"
    work.mkdir()
    code, output = mypy(TYPING / "downstream.py", mypy_cache, work, packages=unmarked)
    assert code == 1
    assert "module is installed, but missing library stubs or py.typed marker" in output, output
