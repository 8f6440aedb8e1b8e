"""A broken registry file in the config folder never crashes `lister-tui models`: invalid UTF-8,
nesting too deep for the TOML reader, symlink loops (as a file and as an entry's folder) are each one
`registry error` line naming the file, the built-ins still list; a site id must be a plain name."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lister_tui.cli import app


@pytest.fixture(autouse=True)
def _config(tmp_path, monkeypatch):
    monkeypatch.setenv("LISTER_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LISTER_TUI_REGISTRY", raising=False)
    (tmp_path / "config" / "models").mkdir(parents=True)
    return tmp_path / "config"


def _models() -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def _loop(a, b):
    a.symlink_to(b.name)
    b.symlink_to(a.name)


@pytest.mark.parametrize(
    ("write", "said"),
    [
        (lambda c: (c / "registry.toml").write_bytes(b'[models.a]\nmodel = "x\xff"\n'), "not UTF-8"),
        (lambda c: (c / "registry.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n"), "nested too deeply"),
        (lambda c: _loop(c / "models" / "one.toml", c / "models" / "two.toml"), "Too many levels of symbolic links"),
        (lambda c: (_loop(c / "l1", c / "l2"), (c / "registry.toml").write_text('[models.a]\nfolder = "l1"\n')), "field 'folder'"),
    ],
)
def test_a_hostile_registry_file_is_one_error_and_the_builtins_still_list(_config, write, said):
    write(_config)
    code, out, err = _models()
    assert code == 0 and "Traceback" not in out + err
    assert any(line.startswith("lister-tiny") for line in out.splitlines())
    assert "registry error" in err and said in err.replace("\n", "")


@pytest.mark.parametrize("site_id", ["..", ".", ".hidden", "a/b"])
def test_a_site_id_that_is_not_a_plain_name_is_refused(_config, site_id):
    from lister_tui.core.engine.registry import user_entries

    (_config / "registry.toml").write_text(f'[models.a]\nmodel = "m"\n[[models.a.sites]]\nid = "{site_id}"\npath = "/x"\nhook = "blocks.0.hook_resid_post"\n')
    entries, problems = user_entries()
    assert entries == [] and "sites[0].id" in problems[0] and repr(site_id) in problems[0]
