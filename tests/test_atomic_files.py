"""Temporary files of atomic writes (and the sessions folder's write probe) never follow a planted
symlink: the file a symlink points to is never written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lister_tui.core.files import atomic
from lister_tui.core.files.atomic import atomic_write_bytes, exclusive_file


@pytest.fixture
def victim(tmp_path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.txt"
    target.write_text("keep me")
    return target


def test_a_symlink_at_the_old_predictable_temp_name_is_not_followed(tmp_path, victim):
    folder = tmp_path / "session"
    folder.mkdir()
    (folder / f".manifest.json.tmp-{os.getpid()}").symlink_to(victim)
    atomic_write_bytes(folder / "manifest.json", b"new")
    assert (folder / "manifest.json").read_bytes() == b"new" and victim.read_text() == "keep me"


def test_a_symlink_at_the_drawn_temp_name_makes_another_name_be_drawn(tmp_path, victim, monkeypatch):
    folder = tmp_path / "session"
    folder.mkdir()
    names = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(names))
    (folder / f".table.parquet.aaaaaaaaaaaa.tmp-{os.getpid()}").symlink_to(victim)  # the attacker guessed right
    atomic_write_bytes(folder / "table.parquet", b"rows")
    assert (folder / "table.parquet").read_bytes() == b"rows" and victim.read_text() == "keep me"
    assert not list(folder.glob("*bbbbbbbbbbbb*"))  # the temp file it used is gone


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path, victim):
    folder = tmp_path / "session"
    folder.mkdir()
    (folder / "manifest.json").symlink_to(victim)
    atomic_write_bytes(folder / "manifest.json", b"new")
    assert not (folder / "manifest.json").is_symlink() and (folder / "manifest.json").read_bytes() == b"new"
    assert victim.read_text() == "keep me"


def test_the_write_probe_and_the_settings_file_never_follow_a_symlink(tmp_path, victim, monkeypatch):
    from lister_tui.core.files.user_settings import SETTINGS_FILE, UserSettings
    from lister_tui.core.sessions.store import SessionStore

    folder = tmp_path / "s"
    folder.mkdir()
    (folder / f".probe-{os.getpid()}").symlink_to(victim)  # the old predictable probe name
    SessionStore(folder)._prepare_folder()
    assert victim.read_text() == "keep me" and not [p for p in folder.iterdir() if "probe" in p.name and not p.is_symlink()]
    config = tmp_path / "config"
    config.mkdir()
    (config / f".{SETTINGS_FILE}.tmp-{os.getpid()}").symlink_to(victim)
    settings = UserSettings(theme="x", path=config / SETTINGS_FILE)
    settings.save()
    assert victim.read_text() == "keep me" and UserSettings.load(config).theme == "x"


def test_exclusive_file_gives_up_after_its_attempts(tmp_path, monkeypatch, victim):
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "cccccccccccc")
    (tmp_path / f".x.cccccccccccc.tmp-{os.getpid()}").symlink_to(victim)
    with pytest.raises(FileExistsError):
        exclusive_file(tmp_path, "x", attempts=3)
    assert victim.read_text() == "keep me"
