"""Where the workbench finds its notebooks and keeps what it generates (caches, runs, reports).

Two ways to run it, two sets of defaults:

- from a source checkout (`make setup`'s editable install, or the folder on `sys.path`):
  everything stays in the checkout: `notebooks/`, `.cache/`, `reports/`;
- from an installed package (`pip install .` or a wheel): the package lives in
  site-packages, which is no place for outputs, so reports and runs go to `./reports`
  of the current directory, caches to `$XDG_CACHE_HOME/sr_lib` (`~/.cache/sr_lib`), and the
  notebooks are the wheel's package data `sr_lib/notebooks/*.ipynb` (pyproject maps the
  top-level `notebooks/` folder to it).

`$SR_LIB_REPORTS` and `$SR_LIB_CACHE` win in both cases.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The source checkout when sr_lib runs from one; for an installed package, site-packages."""


def _in_checkout() -> bool:
    """True when sr_lib runs from its source checkout (its pyproject and notebooks beside it)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "notebooks").is_dir()


def cache_dir() -> Path:
    """Git-ignored cache for generated phantoms and feature networks (`$SR_LIB_CACHE` wins)."""
    if env := os.environ.get("SR_LIB_CACHE"):
        return Path(env)
    if _in_checkout():
        return PROJECT_ROOT / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sr_lib"


def reports_dir() -> Path:
    """Where tables, figures, executed notebooks and run folders go (`$SR_LIB_REPORTS` wins):
    the checkout's `reports/`, or `./reports` of the current directory for an installed package."""
    if env := os.environ.get("SR_LIB_REPORTS"):
        return Path(env)
    return PROJECT_ROOT / "reports" if _in_checkout() else Path.cwd() / "reports"


def notebooks_dir() -> Path:
    """The notebooks `sr-lib report` executes: the checkout's `notebooks/`, or the installed
    package data `sr_lib/notebooks/` (the same files: the wheel copies that folder)."""
    if _in_checkout():
        return PROJECT_ROOT / "notebooks"
    return Path(__file__).resolve().parent / "notebooks"


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (a value) or leave alone (None) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is not None:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
