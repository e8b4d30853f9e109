"""The install holds together: locks, pyproject, LICENSE, environment.yml and the notebooks that
ship as package data agree with each other and with what the report runs."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import sr_lib.paths as paths

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
GPU_ONLY = re.compile(r"(triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)")


def lock_entries(name: str) -> dict[str, list[tuple[Requirement, list[str]]]]:
    """{package: [(requirement with its marker, its sha256 hashes)]} of a lock file."""
    entries: dict[str, list[tuple[Requirement, list[str]]]] = {}
    text = (ROOT / name).read_text(encoding="utf-8")
    for block in re.split(r"\n(?=[A-Za-z])", text):
        lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            continue
        logical = " ".join(line.rstrip("\\ ").strip() for line in lines)
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", logical)
        requirement = Requirement(re.sub(r"\s*--hash=\S+", "", logical).strip())
        entries.setdefault(canonicalize_name(requirement.name), []).append((requirement, hashes))
    return entries


def pinned(entries: dict[str, list[tuple[Requirement, list[str]]]], *, platform: str = "linux") -> dict[str, str]:
    """{package: version} that pip would install from a lock on CPython 3.11 on `platform`."""
    environment = {"sys_platform": platform, "python_full_version": "3.11.7", "python_version": "3.11",
                   "platform_machine": "x86_64", "os_name": "nt" if platform == "win32" else "posix",
                   "implementation_name": "cpython", "platform_system": platform.capitalize()}
    versions = {}
    for name, options in entries.items():
        for requirement, _ in options:
            if requirement.marker is None or requirement.marker.evaluate(environment):
                (spec,) = requirement.specifier
                assert spec.operator == "==", requirement
                versions[name] = spec.version
    return versions


CPU = lock_entries("requirements.lock")
CUDA = lock_entries("requirements-cuda.lock")


def report_notebooks() -> list[str]:
    """The notebook names `sr_lib.pipeline` runs: the first argument of every run_notebook call."""
    tree = ast.parse((ROOT / "sr_lib" / "pipeline.py").read_text(encoding="utf-8"))
    return sorted({node.args[0].value for node in ast.walk(tree)
                   if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_notebook"
                   and node.args and isinstance(node.args[0], ast.Constant)})


def test_notebooks_dir_holds_every_notebook_the_report_runs():
    names = report_notebooks()
    assert {"00_data", "10_train", "80_comparison_tables", "90_difference_maps"} <= set(names)
    for name in names:
        assert (paths.notebooks_dir() / f"{name}.ipynb").is_file(), name
    # ... and the wheel ships that folder: sr_lib.notebooks is the top-level notebooks/ folder.
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"sr_lib.notebooks": "notebooks"}
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["sr_lib.notebooks"] == ["*.ipynb"]
    assert paths.notebooks_dir() == ROOT / "notebooks"


def test_packages_list_every_sr_lib_package():
    """pyproject lists the packages (to map notebooks/ into sr_lib); a new sub-package must be added."""
    found = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sr_lib").rglob("__init__.py"))
    assert PYPROJECT["tool"]["setuptools"]["packages"] == [*found, "sr_lib.notebooks"]
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["sr_lib"]
    for data in (ROOT / "sr_lib").glob("*.*"):
        if data.suffix not in {".py", ".pyc"}:
            assert any(data.match(pattern) for pattern in patterns), f"{data.name} would not ship in the wheel"


def test_outside_a_checkout_outputs_go_to_the_current_directory(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"  # an installed sr_lib: no pyproject.toml beside it
    site.mkdir()
    monkeypatch.setattr(paths, "PROJECT_ROOT", site)
    monkeypatch.chdir(tmp_path)
    for variable in ("SR_LIB_REPORTS", "SR_LIB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.reports_dir() == tmp_path / "reports"
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "sr_lib"
    assert paths.notebooks_dir() == Path(paths.__file__).resolve().parent / "notebooks"
    monkeypatch.setenv("SR_LIB_REPORTS", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.reports_dir() == tmp_path / "elsewhere"
    assert paths.cache_dir() == tmp_path / "xdg" / "sr_lib"


def test_in_a_checkout_outputs_stay_in_it(monkeypatch):
    monkeypatch.delenv("SR_LIB_REPORTS", raising=False)
    monkeypatch.delenv("SR_LIB_CACHE", raising=False)
    assert paths.reports_dir() == ROOT / "reports"
    assert paths.cache_dir() == ROOT / ".cache"


def test_python_version_is_stated_consistently():
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert str(requires) == ">=3.11"
    assert "3.10.14" not in requires and "3.11.5" in requires
    environment = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s*- python=3\.11$", environment, re.M)
    # the locks need 3.11.5 (soupsieve 4.1.2); make and the lock headers say so
    assert "(>= 3.11.5)" in (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert "(3, 11, 5)" in (ROOT / "Makefile").read_text(encoding="utf-8")
    assert sys.version_info >= (3, 11, 5)


def test_license_file_and_spdx_metadata_agree():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the sr_lib developers" in text


def test_build_backend_is_the_locked_setuptools():
    (requirement,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert requirement.name == "setuptools"
    for lock in (CPU, CUDA):
        assert requirement.specifier.contains(pinned(lock)["setuptools"])


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_locks_pin_every_dependency_with_hashes(platform):
    project = PYPROJECT["project"]
    wanted = [*project["dependencies"], *(r for extra in ("test", "lab") for r in project["optional-dependencies"][extra])]
    for lock in (CPU, CUDA):
        versions = pinned(lock, platform=platform)
        for text in wanted:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in versions, f"{name} is in pyproject but not locked: run tools/lock.py"
            assert requirement.specifier.contains(versions[name], prereleases=True), (name, versions[name])
        for options in lock.values():
            for requirement, hashes in options:
                assert hashes, f"{requirement} has no hash: pip's hash-checking needs one on every line"


def test_cpu_and_cuda_locks_differ_only_in_torch_and_its_gpu_packages():
    cpu, cuda = pinned(CPU), pinned(CUDA)
    assert cpu["torch"] == cuda["torch"] + "+cpu"
    assert not [name for name in cpu if GPU_ONLY.fullmatch(name)]
    gpu = {name for name in cuda if GPU_ONLY.fullmatch(name)}
    assert {"triton", "nvidia-cudnn-cu13", "cuda-toolkit"} <= gpu
    assert {k: v for k, v in cpu.items() if k != "torch"} == {k: v for k, v in cuda.items()
                                                              if k != "torch" and k not in gpu}
    # macOS and Windows take PyPI's torch (a CPU build there), hashed as in the CUDA lock
    assert pinned(CPU, platform="darwin")["torch"] == cuda["torch"]
    assert [h for r, h in CPU["torch"] if "+cpu" not in str(r)] == [h for _, h in CUDA["torch"]]


def test_locked_torch_is_the_tested_one():
    """The CPU lock holds the digest of the Linux x86_64 CPU wheel the tests run with (pip refuses
    any other file), and the torch installed here is one of the two locks' versions."""
    from importlib.metadata import version

    (linux,) = [h for r, h in CPU["torch"] if "+cpu" in str(r)]
    assert "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b" in linux
    assert version("torch") in {pinned(CPU)["torch"], pinned(CUDA)["torch"]}


def test_environment_yml_installs_the_cpu_lock():
    lines = [line.strip() for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines()
             if not line.lstrip().startswith("#")]
    pip = lines[lines.index("- pip:") + 1:]
    # one pip call, in hash-checking mode: the lock and the index its Linux torch needs, no local folder
    assert pip == ["- --extra-index-url https://download.pytorch.org/whl/cpu", "- -r requirements.lock"]


@pytest.mark.slow
def test_wheel_ships_the_notebooks_and_the_license(tmp_path):
    """Build the wheel from a copy of the sources (so no build/ lands in the checkout) and read it."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("sr_lib", "notebooks"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    str(source), "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("sr_lib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for notebook in report_notebooks():
        assert f"sr_lib/notebooks/{notebook}.ipynb" in names
    assert {f"sr_lib/notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")} <= names
    assert "sr_lib/viewer.js" in names or not (ROOT / "sr_lib" / "viewer.js").exists()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata and "Requires-Python: >=3.11" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
