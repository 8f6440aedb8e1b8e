"""`sweep --resume` goes on with the registry entry as it is now (a fixed registry file counts) and says
what changed since the sweep ran; it refuses only a change that would mix incompatible rows."""

from __future__ import annotations

import pytest

from lister_tui.core.engine.registry_file import entry_record
from lister_tui.core.errors import ListerError
from lister_tui.organism.paths import weights_dir

SAES = weights_dir() / "saes"


@pytest.fixture(autouse=True)
def _config(tmp_path, monkeypatch):
    from lister_tui.core.engine import registry

    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LISTER_TUI_REGISTRY", raising=False)
    monkeypatch.setattr(registry, "_registered", {})
    (tmp_path / "config").mkdir()
    return tmp_path / "config"


def _write(config, hook_layer: int, description: str = "mine", marker: str = "-"):
    (config / "registry.toml").write_text(
        f'[models.mine]\nfolder = "{weights_dir()}"\ndescription = "{description}"\nlist_marker = "{marker}"\n'
        f'[[models.mine.sites]]\nid = "res_1"\npath = "{SAES / "res_1"}"\nhook = "blocks.{hook_layer}.hook_resid_post"\n'
    )


def _record():
    from lister_tui.core.engine.registry import get_entry

    return entry_record(get_entry("mine"))


def test_a_fixed_site_is_taken_and_said_before_any_row(_config):
    from lister_tui.core.engine.registry import resumed_entry

    _write(_config, hook_layer=2)  # the mistake the sweep ran with
    record = _record()
    _write(_config, hook_layer=1, description="fixed")  # the user fixes the registry file
    entry, changes = resumed_entry("mine", record, ["res_1"], has_rows=False)
    assert entry.site("res_1").hook_name == "blocks.1.hook_resid_post"
    assert any("site res_1: hook_name 'blocks.2.hook_resid_post' -> 'blocks.1.hook_resid_post'" in c for c in changes)
    assert any(c.startswith("description") for c in changes) is False  # the description is not recorded
    with pytest.raises(ListerError, match="site res_1: hook_name"):
        resumed_entry("mine", record, ["res_1"], has_rows=True)


def test_a_harmless_change_is_said_and_a_row_changing_one_refused_once_there_are_rows(_config):
    from lister_tui.core.engine.registry import resumed_entry

    _write(_config, hook_layer=1)
    record = _record()
    # a site the sweep does not use may change; the list marker decides every row
    _write(_config, hook_layer=1, marker="*")
    with pytest.raises(ListerError, match=r"list_marker: '-' -> '\*'.*Start a new sweep"):
        resumed_entry("mine", record, [], has_rows=True)
    entry, changes = resumed_entry("mine", record, [], has_rows=False)
    assert entry.item_marker == "*" and changes == ["list_marker: '-' -> '*'"]


def test_an_entry_gone_from_the_registry_resumes_from_its_record(_config):
    from lister_tui.core.engine.registry import resumed_entry

    _write(_config, hook_layer=1)
    record = _record()
    (_config / "registry.toml").unlink()
    entry, changes = resumed_entry("mine", record, ["res_1"], has_rows=True)
    assert entry.origin.startswith("recorded") and changes == []
