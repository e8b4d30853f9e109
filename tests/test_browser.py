"""The viewer in a real browser: JupyterLab headless, driven in Chromium by Playwright.

The test writes a small notebook (volumes made here: HR, a 2x LR, a blurred "method" and a
hole), starts ``jupyter lab`` on a free local port with a token, opens the notebook in
Debian's Chromium, runs its cells, then moves the slice slider and clicks a panel, and checks
that the picture, the panel titles and the readout change, in the page and in the kernel.
Screenshots go to ``$SR_LIB_SCREENSHOTS`` (default ``.cache/screenshots``) for a person to
look at.

It needs Chromium (``apt-get install chromium``; `.ci/run` installs it) and the Playwright
package (in the lock); Playwright cannot download its own browsers here, so it is given
``/usr/bin/chromium``. Without them the test is skipped with the reason, never passed.
Run it alone with ``.venv/bin/python -m pytest tests/test_browser.py -v``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = os.environ.get("SR_LIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "sr-lib-browser-test"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

NOTEBOOK_CELLS = [
    """import numpy as np
from scipy import ndimage
from sr_lib.io import Volume
from sr_lib.viewer import show_volumes

# A head-like test object: a bright ellipsoid with a darker core and a few spots, 1 x 1 x 2 mm voxels.
x, y, z = np.meshgrid(np.linspace(-1, 1, 48), np.linspace(-1, 1, 40), np.linspace(-1, 1, 24), indexing="ij")
hr = (0.8 * (x**2 + y**2 + z**2 < 0.8) - 0.4 * (x**2 / 0.1 + y**2 / 0.3 + z**2 < 0.5)).astype(np.float32)
hr += 0.3 * (np.sin(9 * x) * np.cos(7 * y) > 0.6) * (hr > 0)
affine = np.diag([1.0, 1.0, 2.0, 1.0])
lr = hr.reshape(24, 2, 20, 2, 12, 2).mean(axis=(1, 3, 5))
method = ndimage.gaussian_filter(hr, 1.0)
hole = (np.abs(x - 0.3) < 0.15) & (np.abs(y) < 0.2) & (np.abs(z) < 0.5)""",
    """viewer = show_volumes({"LR": Volume(lr, np.diag([2.0, 2.0, 4.0, 1.0])), "method": Volume(method, affine),
                       "HR": Volume(hr, affine)}, difference_to="HR", mask=hole, panel_size=200)
viewer""",
]


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (it is in requirements.lock: `make setup`)"
    if CHROMIUM is None:
        return ("no Chromium on PATH: `apt-get install chromium` (as root; .ci/run does it) "
                "or set SR_LIB_CHROMIUM to a Chromium binary")
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=f"browser test: {_missing()}")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer at {url} within {timeout:.0f} s")


@pytest.fixture
def jupyter_lab(tmp_path):
    """A headless JupyterLab serving `tmp_path` (with the test notebook); yields its base URL."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    served = tmp_path / "served"
    served.mkdir()
    nbformat.write(nb, served / "viewer.ipynb")
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={served}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp_path / "jupyter.log", "w")
    process = subprocess.Popen(command, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={TOKEN}", process)
        yield base
    except RuntimeError as err:
        log.flush()
        raise RuntimeError(f"{err}\n{(tmp_path / 'jupyter.log').read_text()[-3000:]}") from None
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _canvas_fingerprint(page, name: str) -> str:
    return page.locator(f'canvas.srv-canvas[data-name="{name}"]').evaluate("c => c.toDataURL()")


def _run_cell_code(page, code: str) -> None:
    """Insert a cell below the active one (the toolbar's "+"), type `code` into it and run it."""
    page.locator('[data-command="notebook:insert-cell-below"]').first.click()
    page.keyboard.press("Enter")  # edit the new cell
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def test_viewer_in_jupyterlab_with_chromium(jupyter_lab):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("SR_LIB_SCREENSHOTS", ".cache/screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{jupyter_lab}/lab/tree/viewer.ipynb?token={TOKEN}")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle").first).to_be_visible(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            panels = page.locator("canvas.srv-canvas")
            expect(panels).to_have_count(3, timeout=90_000)
            readout = page.locator(".srv-readout")
            subtitles = page.locator(".srv-subtitle")
            expect(subtitles.nth(1)).to_contain_text("dB")  # per-slice PSNR of "method" against HR
            page.screenshot(path=str(shots / "viewer-1-opened.png"))

            before_image = _canvas_fingerprint(page, "method")
            before_title = subtitles.nth(1).inner_text()
            slider = page.locator("input.srv-slider")
            slider.click()  # the thumb sits mid-track, at the slice shown: focus without a move
            for _ in range(4):
                page.keyboard.press("ArrowRight")
            expect(subtitles.nth(1)).not_to_have_text(before_title, timeout=30_000)
            expect(page.locator(".srv-slice-label")).to_contain_text("z = 16")  # 12 + 4
            page.wait_for_timeout(300)
            assert _canvas_fingerprint(page, "method") != before_image, "the slice slider did not change the picture"
            page.screenshot(path=str(shots / "viewer-2-slider.png"))

            hr_canvas = page.locator('canvas.srv-canvas[data-name="HR"]')
            box = hr_canvas.bounding_box()
            page.mouse.move(box["x"] + 5, box["y"] + 5)  # background, outside the object
            page.mouse.move(box["x"] + box["width"] + 40, box["y"] - 40)  # leave: readout shows the crosshair
            before_readout = readout.inner_text()
            before_cross = _canvas_fingerprint(page, "HR")
            page.mouse.click(box["x"] + 0.3 * box["width"], box["y"] + 0.7 * box["height"])
            page.mouse.move(box["x"] + box["width"] + 40, box["y"] - 40)
            expect(readout).not_to_have_text(before_readout, timeout=10_000)
            assert "crosshair" in readout.inner_text() and "mm" in readout.inner_text()
            assert _canvas_fingerprint(page, "HR") != before_cross, "the crosshair did not move on the picture"

            page.locator("select.srv-overlay").select_option("abs")
            expect(subtitles.nth(1)).to_contain_text("dB")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "viewer-3-crosshair-overlay.png"))

            # The kernel saw it all: the slice index and the crosshair moved there too.
            _run_cell_code(page, "print('kernel', viewer.index, [round(c, 1) for c in viewer.crosshair], viewer.overlay)")
            kernel_line = page.locator(".jp-OutputArea-output pre", has_text="kernel")
            expect(kernel_line).to_have_count(1, timeout=30_000)
            words = kernel_line.inner_text().split()
            assert words[1] == "16" and words[-1] == "abs", kernel_line.inner_text()
            x_mm = float(words[2].strip("[,"))
            assert 0.2 * 48 < x_mm < 0.4 * 48, f"crosshair x {x_mm} mm is not where the panel was clicked"
        finally:
            page.screenshot(path=str(shots / "viewer-last.png"))
            browser.close()
