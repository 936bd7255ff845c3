"""The report in a real browser (Debian's headless Chromium): no console errors, readable at
1280 px, sorting and filtering work and keep the total honest, and it prints to PDF."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.report.cdp import FLAGS, Page, chromium
from tests.report.conftest import REPO, Runs

pytestmark = pytest.mark.integration
SCREENSHOT = REPO / "var" / "screenshots" / "report.png"


def test_report_in_headless_chromium(runs: Runs, tmp_path: Path) -> None:
    url = runs.report.resolve().as_uri()
    page = Page(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        started = time.monotonic()
        page.call("Page.navigate", url=url)
        page.wait_for("Page.loadEventFired")
        load_s = time.monotonic() - started
        # Readable at 1280 px: nothing wider than the window, figures not wrapped.
        assert page.eval("document.documentElement.scrollWidth") <= 1280
        assert page.eval("document.documentElement.classList.contains('js')")
        # Full-page screenshot at 1280 px.
        height = page.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
        shot = page.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
        )
        png = tmp_path / "report.png"
        png.write_bytes(base64.b64decode(shot["data"]))
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, SCREENSHOT)
        assert png.stat().st_size > 50_000
        # Filter to one partner: only its rows show and the footer sums exactly those.
        rows = page.eval("document.querySelectorAll('#disc > tbody > tr').length")
        shown = page.eval("""(() => { const s = document.getElementById('fp');
            s.value = 'aws'; s.dispatchEvent(new Event('change'));
            return [...document.querySelectorAll('#disc > tbody > tr')].filter(r => !r.hidden)
              .map(r => [r.dataset.partner, parseFloat(r.querySelector('td[data-f=amount]')
              .dataset.v) || 0]); })()""")
        assert shown and len(shown) < rows and {p for p, _ in shown} == {"aws"}
        footer = page.eval("document.querySelector('#disc tfoot td[data-f=amount]').textContent")
        want = sum(round(v * 100) for _, v in shown) / 100
        assert footer.replace("\u2212", "-").replace("$", "").replace(",", "") == f"{want:.2f}"
        # Sort by amount: ascending puts the largest shortfall first.
        order = page.eval("""(() => { document.getElementById('fp').value = '';
            document.getElementById('fp').dispatchEvent(new Event('change'));
            document.querySelector('#disc button[data-k="4"]').click();
            return [...document.querySelectorAll('#disc > tbody > tr')]
              .map(r => parseFloat(r.querySelector('td[data-f=amount]').dataset.v) || 0); })()""")
        # (a statement-only flag has no amount: it sorts and sums as zero)
        assert order == sorted(order) and len(order) == rows
        page.eval("document.querySelector('#disc button[data-k=\"4\"]').click()")  # back, desc
        # Print layout at A4 landscape's printable width: no sticky headers, no table cut.
        page.call("Emulation.setEmulatedMedia", media="print")
        page.call("Emulation.setDeviceMetricsOverride", width=1030, height=700,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        sticky = page.eval("getComputedStyle(document.querySelector('thead th')).position")
        assert sticky == "static"
        assert page.eval("getComputedStyle(document.querySelector('.filter')).display") == "none"
        wide = page.eval("""[...document.querySelectorAll('table')].filter(t =>
            t.getBoundingClientRect().width > 0 &&
            t.getBoundingClientRect().right > document.documentElement.clientWidth + 1).length""")
        assert wide == 0
        assert not page.errors, page.errors
        print(f"report loaded in {load_s:.2f} s; {height:.0f} px tall; screenshot {SCREENSHOT}")
    finally:
        page.close()

    # And the real print path: Chromium's own --print-to-pdf.
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [str(chromium()), *FLAGS, f"--user-data-dir={tmp_path / 'profile-pdf'}",
         "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 30_000
    assert data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 2
