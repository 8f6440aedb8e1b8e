"""The registry: built-in entries (the study's exact SAEs derived from SAELens' directory), user TOML
entries and templates, ad-hoc sites, bad files, and `lister-tui models`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app
from lister_tui.core.engine.builtins import BUILTINS, STUDY_RES_RELEASE, saes_directory, study_residual_sae_id
from lister_tui.core.engine.registry import REGISTRY_ENV, get_entry, registry_names, use_registry_files
from lister_tui.core.engine.registry_file import adhoc_site, entry_from_record, entry_record, user_entries
from lister_tui.core.errors import ListerError
from lister_tui.organism.paths import SHIPPED_DIR


@pytest.fixture(autouse=True)
def _own_config(tmp_path, monkeypatch):
    """No registry file of the machine's user leaks in; each test starts with none."""
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


def test_study_residual_saes_are_first_in_text_order_in_the_installed_directory():
    expected = {0: "105", 5: "143", 10: "166", 15: "150", 20: "139"}
    for layer, suffix in expected.items():
        assert study_residual_sae_id(layer) == f"layer_{layer}/width_16k/average_l0_{suffix}"
    # the rule itself: text order, not numeric ("105" < "13" as text)
    fake = {STUDY_RES_RELEASE: SimpleNamespace(saes_map={f"layer_1/width_16k/average_l0_{n}": 0 for n in ("13", "105", "9")})}
    assert study_residual_sae_id(1, fake) == "layer_1/width_16k/average_l0_105"
    entry = get_entry("gemma-2-2b-it-study")
    assert {s.id: s.sae_id for s in entry.sites if s.kind == "res"}["res_10"] == "layer_10/width_16k/average_l0_166"
    assert all(s.release == STUDY_RES_RELEASE for s in entry.sites if s.kind == "res")


def test_every_builtin_site_exists_in_the_saelens_directory():
    directory = saes_directory()
    assert {"lister-tiny", "gemma-2-2b-it", "gemma-2-2b-it-study", "gemma-2-9b-it", "gemma-3-1b-it", "gemma-3-4b-it"} <= set(registry_names())
    for name in BUILTINS:
        entry = get_entry(name)
        assert entry.sites, name
        for site in entry.sites:
            if site.release is not None:
                assert site.sae_id in directory[site.release].saes_map, (name, site)
    kinds = {s.kind for s in get_entry("gemma-3-4b-it").sites}
    assert kinds == {"res", "attn"}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = f"""
[models.my-tiny]
folder = "{SHIPPED_DIR}"
description = "lister-tiny under another name"

[models.my-gemma]
model = "google/gemma-2-2b-it"
list_marker = "*"
metric_tokens = [" ", "\\n"]
[[models.my-gemma.sites]]
id = "res_3"
release = "gemma-scope-2b-pt-res"
sae_id = "layer_3/width_16k/average_l0_142"
[[models.my-gemma.sites]]
id = "mlp_4"
path = "saes/mlp_4"
kind = "mlp"
layer = 4

[templates.numbered]
text = "Give me a numbered list of {{topic}}."
length = "unspecified"
"""


def test_a_user_entry_in_the_config_folder(tmp_path):
    _write(tmp_path / "config" / "models" / "mine.toml", GOOD)
    tiny = get_entry("my-tiny")
    assert tiny.source == "shipped" and tiny.weights_dir == SHIPPED_DIR
    assert [s.id for s in tiny.sites] == [s.id for s in get_entry("lister-tiny").sites]
    gemma = get_entry("my-gemma")
    assert gemma.tl_name == "google/gemma-2-2b-it" and gemma.item_marker == "*" and gemma.use_tokenizer_chat_template
    assert [(s.id, s.hook_name) for s in gemma.sites] == [("res_3", "blocks.3.hook_resid_post"), ("mlp_4", "blocks.4.hook_mlp_out")]
    assert gemma.site("mlp_4").path == (tmp_path / "config" / "models" / "saes" / "mlp_4").resolve()
    assert [(t.name, t.length) for t in gemma.templates] == [("numbered", "unspecified")]
    record = entry_record(gemma)
    again = entry_from_record(record)
    view = lambda e: [(s.id, s.kind, s.layer, s.hook_name, s.release, s.sae_id, s.path) for s in e.sites]  # noqa: E731
    assert view(again) == view(gemma) and again.templates == gemma.templates and again.item_marker == "*"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[models.x]\nmodel = "m"\nlist_marker = "#"\n', "list_marker"),
        ('[models.x]\nmodel = "m"\nmetric_tokens = [" "]\n', "metric_tokens"),
        ('[models.x]\nmodel = "m"\n[[models.x.sites]]\nid = "a"\nrelease = "r"\n', "sites[0].sae_id"),
        ('[models.x]\nmodel = "m"\ncolour = "red"\n', "colour"),
        ('[models.x]\ndtype = "float32"\n', "model"),
        ('[models."x\\u001b[31m"]\nmodel = "m"\n', "name"),
    ],
)
def test_a_bad_entry_names_file_entry_and_field_and_the_builtins_still_list(tmp_path, text, field):
    bad = _write(tmp_path / "config" / "registry.toml", text)
    entries, problems = user_entries()
    assert entries == [] and len(problems) == 1
    assert str(bad) in problems[0] and "'x" in problems[0] and f"'{field}'" in problems[0]
    assert get_entry("gemma-2-2b-it").name == "gemma-2-2b-it"
    with pytest.raises(ListerError, match=field.split("[")[0]):
        get_entry("x")


def test_models_lists_builtins_user_entries_and_a_bad_file(tmp_path):
    _write(tmp_path / "config" / "models" / "mine.toml", GOOD)
    broken = _write(tmp_path / "broken.toml", "[models.y\n")
    result = CliRunner().invoke(app, ["models", "--registry", str(broken)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in ("lister-tiny", "gemma-2-2b-it", "gemma-2-2b-it-study", "gemma-2-9b-it", "gemma-3-1b-it", "gemma-3-4b-it", "my-tiny *"):
        assert any(line.startswith(name) for line in lines), name
    assert next(line for line in lines if line.startswith("lister-tiny")).split()[1] == "yes"
    assert "not valid TOML" in result.stderr and str(broken) in result.stderr.replace("\n", "")
    one = CliRunner().invoke(app, ["models", "gemma-2-2b-it-study"], env={"COLUMNS": "60", "HF_HOME": str(tmp_path / "hf")})
    assert one.exit_code == 0, one.output
    commands = [line for line in one.stdout.splitlines() if line.startswith("hf download")]
    assert "hf download google/gemma-2-2b-it" in commands
    assert "hf download google/gemma-scope-2b-pt-res --include 'layer_0/width_16k/average_l0_105/*'" in commands
    assert "huggingface-cli download" in one.stdout


def test_adhoc_sites_from_release_or_folder():
    site = adhoc_site("gemma-scope-2b-pt-res:layer_3/width_16k/average_l0_142", taken={"res_0"})
    assert (site.id, site.hook_name, site.release) == ("res_3", "blocks.3.hook_resid_post", "gemma-scope-2b-pt-res")
    folder = SHIPPED_DIR / "saes" / "attn_1"
    site = adhoc_site(f"extra={folder}", taken={"attn_1"})
    assert (site.id, site.hook_name, site.path) == ("extra", "blocks.1.attn.hook_z", folder)
    with pytest.raises(ListerError, match="taken"):
        adhoc_site(str(folder), taken={"attn_1"})
    with pytest.raises(ListerError, match="RELEASE:SAE_ID"):
        adhoc_site("nonsense", taken=set())


def test_registry_option_needs_an_existing_file(tmp_path):
    with pytest.raises(ListerError, match="does not exist"):
        use_registry_files([tmp_path / "nope.toml"])


def test_the_readme_registry_example_parses(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()  # the page of own models
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = _write(tmp_path / "config" / "registry.toml", example)
    entries, problems = user_entries()
    assert problems == [] and [e.name for e in entries] == ["gemma-2-2b-it-mine"]
    entry = entries[0]
    assert [(s.id, s.hook_name) for s in entry.sites] == [("res_3", "blocks.3.hook_resid_post"), ("mlp_7", "blocks.7.hook_mlp_out")]
    assert entry.site("mlp_7").path == (path.parent / "saes" / "mlp_7").resolve()
    assert [t.name for t in entry.templates] == ["numbered"]


def test_a_recorded_entry_is_used_when_the_registry_lacks_it_or_its_sites(monkeypatch):
    from lister_tui.core.engine import registry
    from lister_tui.core.engine.registry_file import entry_for

    monkeypatch.setattr(registry, "_registered", {})  # what this test registers stays in it

    tiny = get_entry("lister-tiny")
    assert entry_for("lister-tiny", entry_record(tiny)).origin == "built-in"  # same sites: the registry's
    extra = tiny.with_sites((adhoc_site("g3=gemma-scope-2b-pt-res:layer_3/width_16k/average_l0_142", taken={s.id for s in tiny.sites}),))
    with_adhoc = entry_for("lister-tiny", entry_record(extra))
    assert with_adhoc.origin.startswith("recorded") and with_adhoc.site("g3").release == "gemma-scope-2b-pt-res"
    from dataclasses import replace

    gone = entry_for("their-model", entry_record(replace(tiny, name="their-model")))
    assert gone.name == "their-model" and get_entry("their-model") is gone
    with pytest.raises(ListerError, match="unknown model"):
        entry_for("nobody", None)


def test_locate_shows_where_registry_files_go(tmp_path):
    result = CliRunner().invoke(app, ["locate"])
    assert result.exit_code == 0
    assert f"registry: {tmp_path / 'config' / 'registry.toml'}" in result.stdout
    assert f"registry-folder: {tmp_path / 'config' / 'models'}" in result.stdout


def test_repeat_command_carries_adhoc_sites_and_the_registry_file(tmp_path, monkeypatch):
    from lister_tui.cli.common import entry_with_adhoc_saes
    from lister_tui.core.engine import registry
    from lister_tui.core.sweep.settings import SweepSettings

    monkeypatch.setattr(registry, "_registered", {})
    spec = "gemma-scope-2b-pt-res:layer_3/width_16k/average_l0_142"
    entry, ids = entry_with_adhoc_saes("lister-tiny", ["res_0", f"g3={spec}"])
    assert ids == ["res_0", "g3"] and get_entry("lister-tiny") is entry
    args = SweepSettings(saes=tuple(ids)).cli_args(entry)
    assert args[:2] == ["--model", "lister-tiny"] and ["--sae", "res_0", "--sae", f"g3={spec}"] == args[2:6]
    mine = _write(tmp_path / "mine.toml", GOOD)
    use_registry_files([mine])
    user = get_entry("my-tiny")
    assert SweepSettings(model="my-tiny").cli_args(user)[:4] == ["--registry", str(mine), "--model", "my-tiny"]


def test_study_entry_links_each_loaded_sae_to_its_own_page_or_says_it_has_none():
    entry = get_entry("gemma-2-2b-it-study")
    directory = saes_directory()
    # layer 5 loads average_l0_143: its own page, not the canonical SAE's
    assert entry.site("res_5").sae_id == "layer_5/width_16k/average_l0_143"
    assert entry.feature_link("res_5", 7) == "https://www.neuronpedia.org/gemma-2-2b/5-gemmascope-res-16k__l0-143/7"
    for layer in (0, 10, 15, 20):  # no page in SAELens' directory: no link, and the reason
        site = entry.site(f"res_{layer}")
        assert directory[site.release].neuronpedia_id.get(site.sae_id) is None
        assert entry.feature_link(f"res_{layer}", 7) is None
        assert "has no Neuronpedia page" in entry.no_page_reason(f"res_{layer}") and site.sae_id in entry.no_page_reason(f"res_{layer}")
    # the canonical attention SAEs keep their pages; the plain entry's canonical residual ones too
    assert entry.feature_link("attn_2", 7) == "https://www.neuronpedia.org/gemma-2-2b/2-gemmascope-att-16k/7"
    assert get_entry("gemma-2-2b-it").feature_link("res_5", 7) == "https://www.neuronpedia.org/gemma-2-2b/5-gemmascope-res-16k/7"
    assert "res_10" in entry.description and "none" in entry.description
