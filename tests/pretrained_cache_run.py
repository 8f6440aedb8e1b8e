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
    report["transcoders"] = transcoder_report(app)
    (root / "report.json").write_text(json.dumps(report, indent=1))


def transcoder_report(app) -> dict:
    """Each Gemma entry's transcoder set through load_transcoders, with and without the model (ln2's gain folded or not)."""
    from typer.testing import CliRunner

    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.transcoders import load_transcoders

    out = {}
    for name in ("gemma-2-2b-it", "gemma-3-1b-it"):
        loaded = load_model(name, device="cpu", dtype="float32")
        # The random models' ln2 gains are all one; other gains make the fold show.
        for block in loaded.model.blocks:
            block.ln2.w.data = torch.rand(block.ln2.w.shape, generator=torch.Generator().manual_seed(1)) + 0.5
        folded = load_transcoders(loaded)
        plain = load_transcoders(name)
        layer = max(folded)
        x = torch.randn(5, loaded.model.cfg.d_model, generator=torch.Generator().manual_seed(0))
        gain = loaded.model.blocks[layer].ln2.w
        tc_f, tc_p = folded[layer], plain[layer]
        with torch.no_grad():
            # the folded transcoder on ln2's normalised output = the hub's on ln2's output (after the gain)
            fold_error = float((tc_f(x) - tc_p(x * gain)).abs().max())
            gain_matters = float((tc_p(x) - tc_p(x * gain)).abs().max())
        models = CliRunner().invoke(app, ["models", name])
        out[name] = {
            "layers": sorted(folded),
            "classes": sorted({type(t).__name__ for t in folded.values()}),
            "hooks": [folded[layer].cfg.metadata.hook_name, folded[layer].cfg.metadata.hook_name_out],
            "shape": [tc_f.cfg.d_in, tc_f.cfg.d_sae, tc_f.cfg.d_out],
            "dtype": str(tc_f.W_enc.dtype),
            "fold_error": fold_error,
            "gain_matters": gain_matters,
            "models_output": models.output,
        }
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]))
