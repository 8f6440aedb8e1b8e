"""Our attribution graph beside circuit-tracer's on lister-tiny (attention features off).

Two halves, because circuit-tracer 0.5.0 pins transformers <= 4.57.3 and huggingface-hub < 1
and so lives in its own virtualenv:

    python3 -m venv /work/ct-venv && /work/ct-venv/bin/pip install circuit-tracer==0.5.0
    .venv/bin/python bench/compare_circuit_tracer.py --ct-python /work/ct-venv/bin/python \
        [--transcoders FOLDER | --fitted] [--template short --topic Animals --sample 0]

The project's half samples the list, writes its tokens, and runs the circuit-tracer half
(``--circuit-tracer-half``, in the other virtualenv: it imports only torch, safetensors,
transformers, transformer_lens and circuit_tracer) on them:
``TransformerLensReplacementModel.from_config`` from lister-tiny's ``model_config.json`` as a
``HookedTransformerConfig``, the shipped weights with the MLP keys under ``mlp.old_mlp.*`` and
the unembedding under ``unembed.old_unembed.*``, our transcoders as a ``TranscoderSet(...,
feature_input_hook="ln2.hook_normalized", feature_output_hook="hook_mlp_out")``, and
``attribute()`` with a ``CustomTarget`` of W_U[:, blank] − W_U[:, "\\n"]. Then both adjacency
matrices are compared on the nodes they share: transcoder features and MLP errors at
positions 1.. (circuit-tracer zeroes position 0's features and errors) and the target.
Token nodes differ by design: circuit-tracer's token node is the token embedding alone,
ours the residual stream's start (token + positional embedding), so they are left out.

``--fitted``: the least-squares transcoders of the tests (tests/graph_fixtures.py, d 256),
fitted here on lister-tiny in float32 and saved to a temporary folder. Their skip once had
entries of ~2e4 along the all-ones input direction, which LayerNorm's centred output nulls in
exact arithmetic: float32's rounding of the input's mean, times that, moved each transcoder's
output by up to 0.1, so the error vectors of two correct implementations summing in different
orders differed by 0.14. The fixture now removes that direction (it changes nothing exact);
the script prints the float32-vs-float64 difference of each skip so that it would show again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "lister_tui" / "organism" / "lister_tiny"


def circuit_tracer_half(tokens_file: Path, out_file: Path, tc_folder: Path) -> None:
    import torch
    from circuit_tracer import attribute
    from circuit_tracer.attribution.targets import CustomTarget
    from circuit_tracer.replacement_model import ReplacementModel  # noqa: F401  (import check)
    from circuit_tracer.replacement_model.replacement_model_transformerlens import (
        TransformerLensReplacementModel,
    )
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import (
        SingleLayerTranscoder,
        TranscoderSet,
    )
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokens_file.read_text())
    cfg = HookedTransformerConfig(**json.loads((TINY / "model_config.json").read_text()), dtype=torch.float32, device="cpu")
    tcs = {}
    for layer in range(cfg.n_layers):
        w = load_file(str(tc_folder / f"mlp_{layer}" / "sae_weights.safetensors"))
        d_model, d_tc = w["W_enc"].shape
        tc = SingleLayerTranscoder(d_model, d_tc, JumpReLU(w["threshold"].float(), 0.1), layer, skip_connection="W_skip" in w,
                                   device=torch.device("cpu"), dtype=torch.float32)
        with torch.no_grad():
            tc.W_enc.copy_(w["W_enc"].T)  # SAELens [d_in, d_sae]; circuit-tracer [d_sae, d_in]
            tc.W_dec.copy_(w["W_dec"])
            tc.b_enc.copy_(w["b_enc"])
            tc.b_dec.copy_(w["b_dec"])
            if "W_skip" in w:
                tc.W_skip.copy_(w["W_skip"])
        tcs[layer] = tc
    tset = TranscoderSet(tcs, feature_input_hook="ln2.hook_normalized", feature_output_hook="hook_mlp_out")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(TINY / "tokenizer" / "tokenizer.json"), bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    tok_dir = tempfile.TemporaryDirectory()  # TransformerLens reloads the tokenizer from its folder: kept to the end
    tokenizer.save_pretrained(tok_dir.name)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir.name)
    model = TransformerLensReplacementModel.from_config(cfg, tset, tokenizer=tokenizer)
    state = load_file(str(TINY / "model.safetensors"))
    renamed = {}
    for key, value in state.items():
        if key.endswith(("attn.mask", "attn.IGNORE")):
            continue  # the attention masks are left to the config
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "blocks" and parts[2] == "mlp":
            key = ".".join(parts[:3] + ["old_mlp"] + parts[3:])
        elif parts[0] == "unembed":
            key = ".".join(["unembed", "old_unembed"] + parts[1:])
        renamed[key] = value
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    missing = [k for k in missing if not k.startswith("transcoders") and "IGNORE" not in k and "mask" not in k]
    if missing or unexpected:
        raise SystemExit(f"weights did not load: missing {missing}, unexpected {unexpected}")
    W_U = model.unembed.W_U
    target = CustomTarget("logit(blank) - logit(newline)", 1.0, (W_U[:, spec["blank"]] - W_U[:, spec["newline"]]).detach())
    started = time.perf_counter()
    graph = attribute(torch.tensor(spec["tokens"]), model, attribution_targets=[target], batch_size=256, verbose=False)
    seconds = time.perf_counter() - started
    ctx = model.setup_attribution(torch.tensor(spec["tokens"]))
    torch.save({"activations": ctx.activation_matrix.to_dense().detach(), "mlp_in": ctx.mlp_in_cache.detach() if hasattr(ctx, "mlp_in_cache") else None, "error_vectors": ctx.error_vectors.detach(), "adjacency": graph.adjacency_matrix, "active_features": graph.active_features,
                "selected_features": graph.selected_features, "seconds": seconds}, out_file)


def project_half(args) -> None:
    import torch

    from lister_tui.core.engine.generation import sample_lists
    from lister_tui.core.engine.loading import load_model
    from lister_tui.core.engine.prompts import build_prompts
    from lister_tui.core.engine.transcoders import TranscoderSet, load_transcoder
    from lister_tui.core.study.graphs.attribute import (
        MLP_ERROR,
        TARGET,
        TC,
        attribute_graph,
    )
    from lister_tui.core.study.settings import SAMPLING_PRESETS

    torch.set_num_threads(1)
    loaded = load_model("lister-tiny", device="cpu")
    n_layers = loaded.model.cfg.n_layers
    fitted_dir = tempfile.TemporaryDirectory() if args.fitted else None
    if fitted_dir is not None:
        sys.path.insert(0, str(ROOT / "tests"))
        from graph_fixtures import fit_transcoders

        for layer, tc in fit_transcoders(loaded).items():
            tc.save_model(str(Path(fitted_dir.name) / f"mlp_{layer}"))
    folder = Path(fitted_dir.name) if fitted_dir else Path(args.transcoders) if args.transcoders else TINY / "transcoders"
    tcs = {layer: load_transcoder(loaded.entry, TranscoderSet("bench", tuple(range(n_layers)), path=folder), layer) for layer in range(n_layers)}
    spec = build_prompts([args.template], [args.topic], samples_per_topic=args.sample + 1, base_seed=0)[args.sample]
    sample = sample_lists(loaded, [spec], SAMPLING_PRESETS["code"])[0]
    pos = sample.structure.attribution_pos
    tokens = list(sample.tokens[: pos + 1])
    ids = dict(blank_id=loaded.ids.blank, newline_id=loaded.ids.newline)
    with torch.no_grad():  # how much float32 rounding of the input moves each skip (the fitted set's old trouble)
        _, cache = loaded.model.run_with_cache(torch.tensor([tokens]), names_filter=lambda n: n.endswith("ln2.hook_normalized"))
        for layer, tc in tcs.items():
            x = cache[f"blocks.{layer}.ln2.hook_normalized"][0]
            if getattr(tc, "W_skip", None) is not None:
                rounding = float((x @ tc.W_skip.T - (x.double() @ tc.W_skip.double().T)).abs().max())
                print(f"layer {layer}: skip's largest entry {float(tc.W_skip.abs().max()):.3g}, float32 vs float64 output {rounding:.3g}")
    started = time.perf_counter()
    ours = attribute_graph(loaded.model, tokens, tcs, {}, [pos], **ids, batch=256)
    our_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        tokens_file, out_file = Path(tmp) / "tokens.json", Path(tmp) / "ct.pt"
        tokens_file.write_text(json.dumps({"tokens": tokens, "blank": ids["blank_id"], "newline": ids["newline_id"]}))
        subprocess.run([args.ct_python, __file__, "--circuit-tracer-half", str(tokens_file), str(out_file), str(folder)], check=True)
        ct = torch.load(out_file)
    A_ct, active = ct["adjacency"].double(), ct["active_features"]  # active: [n, 3] (layer, pos, feature)
    n = len(tokens)
    n_feat = len(ct["selected_features"])
    # circuit-tracer's node order: selected features, errors (layer-major, then position), tokens, logits
    ct_index = {}
    for row, feature_id in enumerate(ct["selected_features"].tolist()):
        layer, p, f = active[feature_id].tolist()
        ct_index[(TC, layer, p, f)] = row
    for layer in range(n_layers):
        for p in range(n):
            ct_index[(MLP_ERROR, layer, p, -1)] = n_feat + layer * n + p
    ct_index[(TARGET, -1, pos, -1)] = A_ct.shape[0] - 1
    state = ours.extra["state"]
    our_errors = torch.stack([e.double() for e in state.tc_error])[:, 1:]
    print(f"MLP error vectors at positions 1..: max |ours − circuit-tracer's| {float((our_errors - ct['error_vectors'].double()[:, 1:]).abs().max()):.3g} "
          f"(largest |error| {float(our_errors.abs().max()):.3g})")
    err_diff = (our_errors - ct['error_vectors'].double()[:, 1:]).abs().amax(-1)  # [layers, pos]
    print("  error differences by layer and position (max over d_model):", [[round(float(v), 3) for v in row] for row in err_diff])
    if args.debug:
        for layer in range(1, n_layers):
            d = ct['error_vectors'].double()[layer, 1:] - state.tc_error[layer].double()[1:]
            x = state.tc_in[layer].double()[1:]
            for name, guess in (("skip", x @ tcs[layer].W_skip.double().T), ("mlp_out", state.mlp_out[layer].double()[1:]),
                                ("prev mlp_out", state.mlp_out[layer - 1].double()[1:]), ("prev error", state.tc_error[layer - 1].double()[1:])):
                coef = float((d * guess).sum() / (guess * guess).sum())
                print(f"  layer {layer}: difference ≈ {coef:+.3f} × {name}, residual {float((d - coef * guess).abs().max()):.3g}")
    our_acts = torch.stack([a.double() for a in state.tc_acts])[:, 1:]
    their_acts = ct["activations"].double()[:, 1:]
    flips = ((our_acts != 0) != (their_acts != 0))  # != 0: circuit-tracer's JumpReLU has no ReLU (a negative threshold passes negatives)
    print(f"transcoder activations at positions 1..: {int(flips.sum())} features active in one graph only; "
          f"max |difference| where both are active {float(((our_acts - their_acts) * ((our_acts != 0) & (their_acts != 0))).abs().max()):.3g}")
    nodes = ours.nodes
    shared = [(i, ct_index[key]) for i, key in enumerate(zip(nodes.kind.tolist(), nodes.layer.tolist(), nodes.pos.tolist(), nodes.feature.tolist()))
              if key in ct_index and (key[0] == TARGET or key[2] > 0)]
    our_rows = torch.as_tensor([i for i, _ in shared])
    ct_rows = torch.as_tensor([j for _, j in shared])
    A_ours = ours.adjacency.double()[our_rows][:, our_rows]
    A_theirs = A_ct[ct_rows][:, ct_rows]
    diff = (A_ours - A_theirs).abs()
    scale = A_theirs.abs().max()
    n_ours_features = int((nodes.kind == TC).sum())
    n_ct_features_pos = int((active[:, 1] > 0).sum())
    print(f"list {spec.key}, target position {pos}, {n} tokens")
    print(f"our features {n_ours_features} (positions 0..), circuit-tracer's active features at positions 1..: {n_ct_features_pos}; shared nodes {len(shared)}")
    print(f"max |our edge − circuit-tracer's edge| over the shared nodes: {float(diff.max()):.3g} (largest |edge| {float(scale):.3g}; "
          f"relative {float(diff.max() / scale):.3g}); edges compared {A_theirs.numel()}, non-zero {int((A_theirs != 0).sum())}")
    print(f"time: ours {our_seconds:.1f} s, circuit-tracer's attribute() {ct['seconds']:.1f} s (this machine, CPU, float32)")
    keys = [(int(nodes.kind[i]), int(nodes.layer[i]), int(nodes.pos[i]), int(nodes.feature[i])) for i, _ in shared]
    for flat in diff.flatten().argsort(descending=True)[:5].tolist():
        r, c = divmod(flat, diff.shape[1])
        print(f"  largest differences: edge {keys[c]} -> {keys[r]}: ours {float(A_ours[r, c]):+.4f}, circuit-tracer's {float(A_theirs[r, c]):+.4f}")
    from_features = torch.as_tensor([k[0] == TC for k in keys])
    feature_diff = float(diff[:, from_features].max())
    error_diff = float(diff[:, ~from_features].max()) if (~from_features).any() else 0.0
    tolerance = 1e-4 * float(scale)
    print(f"edges out of feature nodes: max difference {feature_diff:.3g}; out of error nodes: {error_diff:.3g} (tolerance {tolerance:.3g})")
    verdict = "agree" if max(feature_diff, error_diff) <= tolerance else ("features agree, errors differ" if feature_diff <= tolerance else "DISAGREE")
    print(f"verdict: {verdict}")
    if verdict == "DISAGREE":
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--circuit-tracer-half", nargs=3, metavar=("TOKENS", "OUT", "TRANSCODERS"))
    parser.add_argument("--ct-python", default="/work/ct-venv/bin/python")
    parser.add_argument("--transcoders", default=None, help="folder of SAELens transcoders mlp_0..; default: lister-tiny's shipped set")
    parser.add_argument("--fitted", action="store_true", help="the tests' least-squares transcoders (tests/graph_fixtures.py), fitted here")
    parser.add_argument("--template", default="short")
    parser.add_argument("--topic", default="Animals")
    parser.add_argument("--sample", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    if args.fitted and args.transcoders:
        parser.error("give --transcoders or --fitted, not both")
    if args.circuit_tracer_half:
        tokens, out, folder = args.circuit_tracer_half
        circuit_tracer_half(Path(tokens), Path(out), Path(folder))
    else:
        project_half(args)


if __name__ == "__main__":
    main()
