"""Atomic writes: a file appears under its final name complete, or not at all.

Every writer in the workbench (NIfTI, checkpoints, CSV, tables, figures) goes through
`atomic_path`: it hands out a temporary name in the same folder, and renames it over the
final name only when the block finished without an exception. The temporary name is
hidden and carries `PARTIAL_MARKER`, so that a file left behind by a SIGKILL is unmistakable:
`is_partial` recognises it and the input scanners (`apply`, `check`, folder datasets) skip it.
`terminate_as_interrupt` turns SIGTERM into an exception so that the cleanup also runs when a
batch is terminated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_MARKER = ".sr_lib-partial"  # in every temporary name; never in a finished file


class Terminated(KeyboardInterrupt):
    """SIGTERM received: raised where the program was, so `finally` blocks clean up."""


def is_partial(path: str | os.PathLike) -> bool:
    """True for a temporary file of `atomic_path` (also the older ``.x.abc.partial.nii.gz`` names)."""
    name = Path(path).name
    return name.startswith(".") and (PARTIAL_MARKER in name or ".partial." in name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path` (same suffixes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{PARTIAL_MARKER}{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files owner-only; give them the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) like Ctrl-C does.

    Without it, SIGTERM kills the process on the spot and a half-written temporary file stays.
    Only the main thread can install signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def read_json(path: str | os.PathLike, *, kind: type = dict) -> Any:
    """Parse a JSON file that must hold a `kind` (object by default); one-line `ValueError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    if not text.strip():
        raise ValueError(f"{path}: empty file, expected JSON")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(value, kind):
        expected = {dict: "a JSON object", list: "a JSON list"}.get(kind, kind.__name__)
        raise ValueError(f"{path}: expected {expected}, got {type(value).__name__}")
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented, key-sorted JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
