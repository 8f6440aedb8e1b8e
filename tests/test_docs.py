"""README.md and docs/*.md work as printed: every ```python block runs, every ```sh block runs
(quick, offline, on lister-tiny), and no relative link or anchor is dead.

Blocks in ```text, ```console, ```toml or a bare fence are shown, not run (what opens the
explorer, needs a GPU, downloads or takes minutes); any other language is refused here, so
that a block is never skipped by accident."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHOWN = {"text", "console", "toml", ""}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        for i, match in enumerate(FENCE.finditer(page.read_text(encoding="utf-8"))):
            if match.group(1) == language:
                found.append((str(page.relative_to(ROOT)), i, match.group(2)))
    return found


def test_every_block_is_run_or_marked_as_shown():
    for page in PAGES:
        for match in FENCE.finditer(page.read_text(encoding="utf-8")):
            assert match.group(1) in SHOWN | {"python", "sh"}, f"{page.name}: a ```{match.group(1)} block (run it as sh, or mark it console)"


# What a block must print, where the page promises it (the study's loop on lister-tiny).
PROMISED = {"docs/python-api.md": ["short/Fruits/0 items", "attribution_sum"]}


@pytest.mark.parametrize("page, index, code", blocks("python"), ids=lambda v: v if isinstance(v, str) and v.endswith(".md") else None)
def test_python_block_runs_as_printed(page, index, code, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page} block {index}", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    for promised in PROMISED.get(page, []):
        assert promised in out, f"{page} block {index} did not print {promised!r}"


@pytest.mark.parametrize("page, index, code", blocks("sh"), ids=lambda v: v if isinstance(v, str) and v.endswith(".md") else None)
def test_sh_block_runs_as_printed(page, index, code, tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # this venv's lister-tui
        "PYTHONPATH": str(ROOT),
        "LISTER_TUI_SESSIONS": str(tmp_path / "sessions"),
        "LISTER_TUI_CONFIG_DIR": str(tmp_path / "config"),
        "LISTER_TUI_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "100",
    }
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page} block {index}:\n{code}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    heading = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def dead_links(pages: list[Path]) -> list[str]:
    dead = []
    for page in pages:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            goal = (page.parent / path).resolve() if path else page
            if not goal.exists():
                dead.append(f"{page.name}: {target} (no such file)")
            elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                dead.append(f"{page.name}: {target} (no such heading)")
    return dead


def test_no_relative_link_is_dead():
    dead = dead_links(PAGES)
    assert not dead, "\n".join(dead)


def test_the_link_check_catches_dead_links_and_anchors(tmp_path):
    assert slug("Feature cards: what a feature is") == "feature-cards-what-a-feature-is"
    assert slug("lister-tiny, the model organism") == "lister-tiny-the-model-organism"
    (tmp_path / "b.md").write_text("# Shards, resuming, and sweeps on a Ray cluster\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#shards-resuming-and-sweeps-on-a-ray-cluster) [web](https://example.org/x)\n"
        "[gone](c.md) [bad anchor](b.md#nothing)\n```text\n[in a block](d.md)\n```\n"
    )
    assert dead_links([page]) == ["a.md: c.md (no such file)", "a.md: b.md#nothing (no such heading)"]


def test_every_docs_page_is_in_the_index():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_the_readme_screenshot_is_a_drawn_explorer():
    """The committed PNG (docs/screenshot.py refreshes it) decodes, and shows a drawn screen, not a blank."""
    from PIL import Image

    assert "](docs/screenshot.png)" in (ROOT / "README.md").read_text(encoding="utf-8")
    image = Image.open(ROOT / "docs" / "screenshot.png").convert("RGB")
    assert image.width >= 640 and image.height >= 400
    colours = image.getcolors(maxcolors=image.width * image.height)
    background = max(count for count, _ in colours) / (image.width * image.height)
    assert background < 0.9 and len(colours) > 50  # text and panes in many colours, not one flat fill
