"""Where the workbench keeps generated data: caches, runs and reports."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _in_checkout() -> bool:
    return (PROJECT_ROOT / "pyproject.toml").exists()


def cache_dir() -> Path:
    """Git-ignored cache for generated phantoms and feature networks (`$SR_LIB_CACHE` wins)."""
    if env := os.environ.get("SR_LIB_CACHE"):
        return Path(env)
    return PROJECT_ROOT / ".cache" if _in_checkout() else Path.home() / ".cache" / "sr_lib"


def reports_dir() -> Path:
    """Where tables, figures and executed notebooks go (`$SR_LIB_REPORTS` wins)."""
    if env := os.environ.get("SR_LIB_REPORTS"):
        return Path(env)
    return PROJECT_ROOT / "reports" if _in_checkout() else Path.cwd() / "reports"


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"
