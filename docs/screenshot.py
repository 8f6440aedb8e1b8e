"""Refresh docs/screenshot.png, the README's picture of the explorer.

    python docs/screenshot.py            # docs/screenshot.png (and docs/screenshot.svg, not committed)

Drives the explorer as a user does (Textual's pilot, 80×24, lister-tiny, the first batch with its
fixed seeds): `S` and a short list, `T` `.` (the attribution position), `a` (attribute), `s` until
the filter reads `sae:res_0`. Textual saves the screen as SVG; headless Chromium (Debian's
`chromium`, driven by Playwright, as in tests/test_serve.py) draws that SVG into the PNG.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


async def explore(svg: Path) -> None:
    from textual.worker import WorkerCancelled

    from lister_tui.core.engine.loading import load_model
    from lister_tui.tui.app import ListerApp

    async def settle(app, pilot) -> None:
        for _ in range(3):
            try:
                await app.workers.wait_for_complete()
            except WorkerCancelled:
                pass
            await pilot.pause()

    app = ListerApp(load_model("lister-tiny", device="cpu"), session=None, persist=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("S", "home")  # the first list: short/City Names/0
        await pilot.press("T", "full_stop", "a")
        await settle(app, pilot)
        for _ in range(8):  # the SAE filter: all, then each SAE in turn
            if "sae:res_0" in app.screen.features.query_text:
                break
            await pilot.press("s")
            await pilot.pause()
        await pilot.press("T")
        app.clear_notifications()
        await pilot.pause()
        app.save_screenshot(filename=svg.name, path=str(svg.parent))


def to_png(svg: Path, png: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(device_scale_factor=1)
        page.set_content(f"<html><body style='margin:0'>{svg.read_text(encoding='utf-8')}</body></html>")
        page.locator("svg").first.screenshot(path=str(png))
        browser.close()


def main() -> None:
    svg, png = HERE / "screenshot.svg", HERE / "screenshot.png"
    asyncio.run(explore(svg))
    to_png(svg, png)
    print(f"wrote {png} ({png.stat().st_size:,} bytes) from {svg}")


if __name__ == "__main__":
    main()
