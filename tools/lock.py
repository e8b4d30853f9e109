"""Regenerate the two locks from pyproject.toml: requirements-cuda.lock, then requirements.lock.

Why two: PyPI's Linux torch wheel is the CUDA build and pulls about twenty NVIDIA and triton
packages; the CPU build (`torch==X+cpu`) is only on the PyTorch CPU index, TORCH_INDEX.

1. `uv pip compile --universal --generate-hashes` resolves pyproject's dependencies and its
   `test` and `lab` extras against PyPI into requirements-cuda.lock: every package pinned,
   with the hashes of all its files (every platform), markers where a platform differs.
2. requirements.lock (CPU) is that lock without the GPU-only packages (nvidia-*, cuda-*,
   triton) and with torch replaced: on Linux the `+cpu` build, hashed with CPU_TORCH_SHA256;
   elsewhere PyPI's torch, which is a CPU build on macOS and Windows (same hashes as step 1).

Run with PyPI reachable: `pip install uv==0.13.8 && python tools/lock.py`. uv keeps the
versions already in requirements-cuda.lock (delete a package's entry, or pass `--upgrade`
through UV_UPGRADE=1, to let it move).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_LOCK = ROOT / "requirements-cuda.lock"
CPU_LOCK = ROOT / "requirements.lock"
PYTHON = "3.11.5"  # the oldest CPython the pins allow (soupsieve 4.1.2 needs 3.11.5)
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
GPU_ONLY = re.compile(r"(triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)")

# SHA-256 of the PyTorch CPU index's Linux wheels of the locked torch for CPython 3.11. That
# index was not reachable from the machine that wrote this table: the x86_64 digest was
# computed there from the wheel every test ran with, and agrees with what projects that pin
# the same file publish; the aarch64 digest is as published (not recomputed).
CPU_TORCH_SHA256 = {
    "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl":
        "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b",
    "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_aarch64.whl":
        "84453b69508ec79902f899c5ed9495acb9e2bbe9fda5f1d5d6f19e3c3842e1a7",
}

CUDA_HEADER = f"""\
# CUDA lock: torch {{torch}} from PyPI (its Linux wheel is built for CUDA 13.0) and the NVIDIA,
# cuda-* and triton packages it requires, for CPython 3.11 (>= {PYTHON}) on Linux x86_64 or
# aarch64 with an NVIDIA driver for CUDA 13. Every other pin equals requirements.lock's.
#   python3.11 -m venv .venv && .venv/bin/pip install -r requirements-cuda.lock
#   .venv/bin/pip install --no-deps --no-build-isolation -e .
# On macOS and Windows PyPI's torch is a CPU build: use requirements.lock there.
# Written by `python tools/lock.py` (uv pip compile --universal --generate-hashes); do not edit.
"""

CPU_HEADER = f"""\
# CPU lock (what `make setup` installs): every package pinned with its hashes, for CPython 3.11
# (>= {PYTHON}). On Linux torch is the CPU build {{torch}}+cpu, which is not on PyPI but on the
# PyTorch CPU index; pip needs that index added (make adds it when pip cannot find torch without it):
#   python3.11 -m venv .venv
#   .venv/bin/pip install -r requirements.lock --extra-index-url {TORCH_INDEX}
#   .venv/bin/pip install --no-deps --no-build-isolation -e .
# A plain PyPI install would take the CUDA build instead: for CUDA use requirements-cuda.lock.
# Written by `python tools/lock.py` from requirements-cuda.lock; do not edit.
"""


def entries(text: str) -> list[str]:
    """The lock's entries: a requirement line with its `--hash` and `# via` lines below it."""
    found: list[str] = []
    for line in text.splitlines(keepends=True):
        if line[:1].isalpha():
            found.append(line)
        elif found and line.startswith(" "):
            found[-1] += line
    return found


def entry_name(entry: str) -> str:
    return re.split(r"[=<>!~ ;\[]", entry, maxsplit=1)[0].lower().replace("_", "-")


def compile_cuda() -> None:
    """Step 1: resolve pyproject against PyPI into requirements-cuda.lock."""
    subprocess.run(["uv", "pip", "compile", "pyproject.toml", "--extra", "test", "--extra", "lab",
                    "--universal", "--python-version", PYTHON, "--generate-hashes", "--no-header", "--quiet",
                    "--output-file", CUDA_LOCK.name], cwd=ROOT, check=True)
    body = "".join(entries(CUDA_LOCK.read_text(encoding="utf-8")))
    torch = next(e for e in entries(body) if entry_name(e) == "torch").split()[0].split("==")[1]
    CUDA_LOCK.write_text(CUDA_HEADER.format(torch=torch) + body, encoding="utf-8")


def write_cpu() -> None:
    """Step 2: requirements.lock from requirements-cuda.lock (GPU-only packages out, CPU torch in)."""
    kept: list[str] = []
    torch = ""
    for entry in entries(CUDA_LOCK.read_text(encoding="utf-8")):
        name = entry_name(entry)
        if GPU_ONLY.fullmatch(name):
            continue
        if name != "torch":
            kept.append(entry)
            continue
        torch = entry.split()[0].split("==")[1]
        pypi_hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", entry)
        cpu_hashes = [f"--hash=sha256:{digest}" for wheel, digest in sorted(CPU_TORCH_SHA256.items())
                      if wheel.startswith(f"torch-{torch}+cpu-")]
        if not cpu_hashes:
            sys.exit(f"no CPU wheel digest for torch {torch}: add its wheels from {TORCH_INDEX} "
                     "to CPU_TORCH_SHA256 (tools/lock.py)")
        kept.append(f"torch=={torch}+cpu ; sys_platform == 'linux' \\\n    "
                    + " \\\n    ".join(cpu_hashes)
                    + f"\n    # Linux: the CPU build, from {TORCH_INDEX}\n")
        kept.append(f"torch=={torch} ; sys_platform != 'linux' \\\n    "
                    + " \\\n    ".join(pypi_hashes)
                    + "\n    # macOS, Windows: PyPI's wheels are CPU builds\n")
    CPU_LOCK.write_text(CPU_HEADER.format(torch=torch) + "".join(kept), encoding="utf-8")


if __name__ == "__main__":
    compile_cuda()
    write_cpu()
