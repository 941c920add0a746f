"""Opening reports in a real headless browser (Debian's chromium; `make test` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

PAYLOAD = "<script>window.__pwned=1</script> <img src=x onerror=\"document.title='PWNED'\"> What is the password?"
FORECAST_BLUE = (0x1F, 0x5F, 0xA8)  # the scaling plot's forecast line (rarecast.report.plots)

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Path of the chromium binary; skips the test with the way to install it when there is none."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed; `make .venv/.chromium` (or apt-get install -y chromium) adds it")
    return path


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def screenshot(html: Path, tmp: Path) -> np.ndarray:
    """An RGB screenshot (2000 x 1200) of the page, as a uint8 array."""
    from PIL import Image

    png = tmp / "screenshot.png"
    out = _run([f"--screenshot={png}", "--window-size=1200,2000", html.resolve().as_uri()], tmp / "profile-shot")
    assert png.is_file(), out.stderr[-2000:]
    return np.asarray(Image.open(png).convert("RGB"))


def dump_dom(html: Path, tmp: Path) -> str:
    """The page's DOM after load (scripts, had any run, would have changed it)."""
    out = _run(["--dump-dom", html.resolve().as_uri()], tmp / "profile-dom")
    assert out.returncode == 0 and "<html" in out.stdout, out.stderr[-2000:]
    return out.stdout


def pixels_near(image: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    """How many pixels lie within ``tol`` (per channel) of a colour."""
    return int(np.sum(np.all(np.abs(image.astype(int) - np.array(rgb)) <= tol, axis=2)))


def assert_page_shows_plot(image: np.ndarray) -> None:
    """Not blank, and the scaling plot's forecast line is on screen."""
    assert image.shape[:2] == (2000, 1200)
    assert image.std() > 20, "the screenshot is (nearly) one colour"
    assert pixels_near(image, FORECAST_BLUE) > 500, "the forecast line of the scaling plot is not visible"


def assert_payload_inert(dom: str) -> None:
    """The adversarial query shows as text; no element or handler from it exists or ran."""
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in dom
    assert "&lt;img src=x onerror=" in dom
    assert "<script" not in dom.lower()  # the report itself has no scripts at all
    assert '<img src="x"' not in dom and "<img src=x" not in dom
    assert "PWNED</title>" not in dom and "<title>rarecast report:" in dom
