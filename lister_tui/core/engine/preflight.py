"""The preflight: every setup mistake of a run found before its first sample.

After the model loads and before anything is sampled, :func:`preflight` renders the chat
template once (the prompt must end with the item marker token), and opens every SAE of the run:
its weights read, its hook checked against its site (in :mod:`loading`), its ``d_in`` against
the model (``d_model``, or heads x head size for ``attn.hook_z``), its layer against the model's
layers, its dtype, and its decoder (``W_dec`` of shape ``[d_sae, d_in]``; an SAE whose decode is
not ``a @ W_dec + b_dec`` is named). Each failure is one :class:`ListerError` naming the file
and the field. The metric and stop tokens were resolved when the model loaded.
"""

from __future__ import annotations

from typing import Sequence

import torch

from lister_tui.core.engine.entries import SAESite
from lister_tui.core.engine.loading import LoadedModel
from lister_tui.core.errors import ListerError

# SAELens architectures whose decode is a @ W_dec + b_dec (a linear map of the feature activations)
LINEAR_DECODERS = ("standard", "jumprelu", "topk", "batchtopk", "gated", "matryoshka_batchtopk")


def _where(loaded: LoadedModel, site: SAESite) -> str:
    if site.path is not None:
        return f"SAE {site.id} ({site.path / 'cfg.json'})"
    if site.release is not None:
        return f"SAE {site.id} ({site.release}:{site.sae_id})"
    return f"SAE {site.id} ({loaded.entry.weights_dir}/saes/{site.id}/cfg.json)"


def expected_d_in(loaded: LoadedModel, site: SAESite) -> int:
    cfg = loaded.model.cfg
    return cfg.n_heads * cfg.d_head if site.hook_name.endswith("attn.hook_z") else cfg.d_model


def check_sae(loaded: LoadedModel, site: SAESite, sae) -> None:
    """One opened SAE against its site and the model: layer, d_in, dtype, decoder form."""
    where = _where(loaded, site)
    n_layers = loaded.model.cfg.n_layers
    if not 0 <= site.layer < n_layers:
        raise ListerError(f"{where}, field 'hook_name': layer {site.layer} does not exist; the model has layers 0..{n_layers - 1}")
    d_in, want = int(sae.cfg.d_in), expected_d_in(loaded, site)
    if d_in != want:
        what = "heads x head size" if site.hook_name.endswith("attn.hook_z") else "d_model"
        raise ListerError(
            f"{where}, field 'd_in': {d_in}, but {site.hook_name} of {loaded.entry.name} has width {want} ({what}); "
            "this SAE was trained on another model or another hook"
        )
    dtype = str(getattr(sae.cfg, "dtype", "float32")).removeprefix("torch.")
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ListerError(f"{where}, field 'dtype': {dtype!r} is not a torch dtype (e.g. float32, bfloat16)")
    architecture = str(sae.cfg.architecture() if callable(getattr(sae.cfg, "architecture", None)) else getattr(sae.cfg, "architecture", "?"))
    if architecture not in LINEAR_DECODERS:
        raise ListerError(
            f"{where}, field 'architecture': {architecture!r}; lister-tui needs a decoder a @ W_dec + b_dec "
            f"({', '.join(LINEAR_DECODERS)})"
        )
    w_dec = getattr(sae, "W_dec", None)
    if w_dec is None or tuple(w_dec.shape) != (int(sae.cfg.d_sae), d_in):
        shape = None if w_dec is None else tuple(w_dec.shape)
        raise ListerError(f"{where}, weights 'W_dec': shape {shape}, expected (d_sae, d_in) = ({sae.cfg.d_sae}, {d_in})")


def check_chat_template(loaded: LoadedModel, template: str = "short", topic: str = "Fruits") -> None:
    """Render one prompt through the entry's chat format; a missing or failing template named with its file."""
    from lister_tui.core.engine.prompts import prompt_ids

    entry = loaded.entry
    try:
        prompt_ids(loaded, template, topic)
    except ListerError:
        raise
    except Exception as exc:  # transformers raises ValueError without a template, jinja errors inside one
        folder = entry.hf_folder or entry.hf_model_name or entry.weights_dir
        raise ListerError(
            f"model {entry.name!r}: the tokenizer's chat template cannot render a prompt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); tokenizer_config.json (or chat_template.jinja) in {folder}, "
            "field 'chat_template'; or set chat_template = false with chat_prefix / chat_suffix in the registry entry"
        ) from exc


def preflight(loaded: LoadedModel, sae_ids: Sequence[str], template: str = "short") -> None:
    """Every check of a run before its first sample; the first failure raises, nothing is sampled."""
    check_chat_template(loaded, template)
    for sae_id in sae_ids:
        site = loaded.entry.site(sae_id)
        cached = loaded.cached_sae(sae_id)
        try:
            sae = cached if cached is not None else loaded.load_sae(sae_id)
        except ListerError:
            raise
        except Exception as exc:  # SAELens raises many types for a broken cfg.json or weights file
            raise ListerError(f"{_where(loaded, site)}: cannot be opened ({type(exc).__name__}: {str(exc)[:200]})") from exc
        check_sae(loaded, site, sae)
        del sae
