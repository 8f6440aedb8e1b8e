"""Run in a fresh process by tests/test_pretrained_cache.py, with HF_HOME pointing at an empty folder and
HF_HUB_OFFLINE=1: build the local cache there (tests/gemma_fixtures.py), then go through lister-tui's real
pretrained path on each model: load_model, the SAEs, and `lister-tui sweep` (sample, attribute, ablate,
tables). Writes what it saw to <root>/report.json for the test to check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)


def main(root: Path) -> None:
    from gemma_fixtures import LLAMA_ENTRY_TOML, build_hf_cache, write_saelens_folder
    from typer.testing import CliRunner

    from lister_tui.cli import app
    from lister_tui.core.engine import loading

    paths = build_hf_cache(root)
    registry = root / "registry.toml"
    registry.write_text(LLAMA_ENTRY_TOML.replace("{saes}", str(paths["saes"])))
    write_saelens_folder(root / "adhoc" / "res_3", "blocks.3.hook_resid_post", 32, seed=3)
    report: dict = {}
    seen: dict = {}
    real_load = loading.load_model

    def recording_load(entry, device=None, dtype=None, weights_dir=None):
        loaded = real_load(entry, device=device, dtype=dtype, weights_dir=weights_dir)
        cfg = loaded.model.cfg
        saes = {}
        for site in loaded.entry.sites:
            sae = loaded.load_sae(site.id)
            saes[site.id] = {"class": type(sae).__name__, "hook": sae.cfg.metadata.hook_name, "d_in": sae.cfg.d_in,
                             "d_sae": sae.cfg.d_sae, "reshape": sae.cfg.reshape_activations}  # fmt: skip
        seen[loaded.entry.name] = {
            "architecture": cfg.original_architecture, "n_layers": cfg.n_layers, "d_model": cfg.d_model,
            "n_heads": cfg.n_heads, "n_key_value_heads": cfg.n_key_value_heads, "d_vocab": cfg.d_vocab,
            "style": loaded.ids.style, "saes": saes,
        }  # fmt: skip
        return loaded

    loading.load_model = recording_load
    runs = {
        "gemma-2-2b-it": ["--sae", "res_0,attn_2"],
        "gemma-3-1b-it": ["--sae", "res_7,attn_13"],
        "tiny-llama": ["--registry", str(registry), "--sae", f"mlp_2,res_1,{root / 'adhoc' / 'res_3'}"],
    }
    for model, extra in runs.items():
        out = root / "sweeps" / model
        args = ["sweep", "--model", model, *extra, "--topic", "Fruits", "--samples", "2", "--max-new-tokens", "24",
                "--device", "cpu", "--dtype", "float32", "--no-steering", "--no-restricted", "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(app, args)
        report[model] = {"exit_code": result.exit_code, "output": result.output[-3000:], "out": str(out), "loaded": seen.get(model)}
    (root / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
