"""`lister-tui serve`: the explorer in a real browser (Chromium, headless, driven by Playwright).

The browser test starts `lister-tui serve` on a free port, checks from /proc/net/tcp{,6} that it
listens on loopback only, loads the page with every request that leaves this machine refused
(so it works offline), checks the screenshots as images (the terminal is drawn, a key press
changes it) and that the session the explorer works on is saved. It needs Debian's chromium
(`.ci/run` installs it) and the `playwright` package (no `playwright install`)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.cli.serve import explorer_command, is_loopback
from lister_tui.core.sessions.store import read_session

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> list[str]:
    """The local addresses with a socket listening on ``port`` (TCP over IPv4 and IPv6), from /proc."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc writes each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words))
    return found


def test_loopback_names():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.org"))


def test_a_remote_host_needs_the_flag_and_nothing_listens(tmp_path):
    port = free_port()
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", str(port), "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output and "no login" in result.output
    assert listening(port) == []
    for bad, says in ((["--port", "70000"], "valid: 1 to 65535"), (["--model", "no-such-model"], "unknown model")):
        result = CliRunner().invoke(app, ["serve", *bad, "--sessions-dir", str(tmp_path)])
        assert result.exit_code == 2 and says in result.output, result.output


def test_each_tab_runs_the_explorer_with_the_options_given(tmp_path):
    command = explorer_command(
        model="lister-tiny", sae=["res_0"], registry=[tmp_path / "r.toml"], templates=[], device="cpu", dtype=None,
        sessions_dir=tmp_path, autosave=False, session=None,
    )
    assert command[:3] == [sys.executable, "-m", "lister_tui.cli"]
    assert ["--registry", str((tmp_path / "r.toml").resolve())] == command[3:5]
    assert {"--model", "lister-tiny", "--sae", "res_0", "--no-autosave", "--sessions-dir", str(tmp_path)} <= set(command)
    reopen = explorer_command(
        model="lister-tiny", sae=[], registry=[], templates=[], device="cpu", dtype=None, sessions_dir=tmp_path,
        autosave=True, session=tmp_path / "s1",
    )
    assert reopen[3:5] == ["open", str(tmp_path / "s1")]


def drawn_share(png: bytes) -> float:
    """The share of the screenshot's pixels that differ from its most common colour (the background)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height)
    return 1 - max(count for count, _ in colours) / (image.width * image.height)


def changed_share(before: bytes, after: bytes) -> float:
    """The share of pixels that changed between two screenshots."""
    from PIL import Image, ImageChops

    a, b = (Image.open(io.BytesIO(x)).convert("RGB") for x in (before, after))
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 24 else 0)
    return diff.histogram()[255] / (a.width * a.height)


def saved_with_samples(sessions: Path) -> Path | None:
    for manifest in sessions.glob("*/manifest.json"):
        try:
            if json.loads(manifest.read_text())["counts"]["samples"] > 0:
                return manifest
        except (OSError, ValueError, KeyError):
            continue  # being replaced: the next look reads the new one
    return None


def settled(page) -> bytes | None:
    """A screenshot equal to the one taken half a second before (nothing is moving), else None."""
    one = page.screenshot()
    time.sleep(0.5)
    two = page.screenshot()
    return two if changed_share(one, two) == 0 else None


def wait_for(what: str, check, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_the_explorer_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser test drives chromium with it)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("the listening sockets are read from /proc (Linux)")
    port = free_port()
    sessions = tmp_path / "sessions"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LISTER_TUI_CONFIG_DIR": str(tmp_path / "config"), "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "lister_tui.cli", "serve", "--port", str(port), "--device", "cpu", "--sessions-dir", str(sessions)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        addresses = wait_for("the server to listen", lambda: listening(port), 120)
        assert addresses == ["127.0.0.1"], addresses  # loopback only, and nothing on 0.0.0.0 or ::
        refused = []

        def only_this_machine(route):
            if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 600})
                page.route("**/*", only_this_machine)
                page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                assert page.locator("canvas").count() >= 1
                # The explorer draws its panes once its model is loaded (the tab's process starts then).
                def shot_if(condition):
                    shot = page.screenshot()
                    return shot if condition(shot) else None

                # textual-serve shows its splash until the tab's process sends its first byte; the terminal
                # is blank until the explorer draws its panes (after loading the model).
                wait_for("the explorer's first byte", lambda: "-first-byte" in (page.get_attribute("body", "class") or ""), 180)
                first = wait_for("the explorer to be drawn", lambda: shot_if(lambda s: drawn_share(s) > 0.03), 180)
                # The session it works on is saved (autosave, once the first batch of lists is sampled).
                manifest = wait_for("the session to be saved with its lists", lambda: saved_with_samples(sessions), 240)
                opened = read_session(manifest.parent)
                assert opened.model.name == "lister-tiny" and len(opened.workspace.samples) > 0
                # A key press changes what is drawn: ? opens the help screen, escape closes it again.
                before = wait_for("the screen to settle", lambda: settled(page), 60)
                page.evaluate("document.querySelector('.xterm-helper-textarea')?.focus()")
                page.keyboard.press("?")
                after = wait_for("the help screen", lambda: shot_if(lambda s: changed_share(before, s) > 0.10), 60)
                assert drawn_share(after) > 0.03
                (tmp_path / "before.png").write_bytes(before)
                (tmp_path / "help.png").write_bytes(after)
                page.keyboard.press("Escape")
                opened_by_key = changed_share(before, after)
                # back to the main screen: far nearer to the first shot than the help screen was
                back = wait_for("the help screen to close", lambda: shot_if(lambda s: changed_share(before, s) < opened_by_key / 5), 60)
                (tmp_path / "back.png").write_bytes(back)
                assert "-closed" not in (page.get_attribute("body", "class") or "")  # the explorer still runs
                assert first and all(urlparse(u).hostname not in ("127.0.0.1", "localhost") for u in refused)
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
