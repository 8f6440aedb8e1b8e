"""Where lister-tiny's shipped files live, and the shape shared by build and registry."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).with_name("lister_tiny")
N_LAYERS = 4

TOKENIZER_SUBDIR = "tokenizer"
MODEL_CONFIG = "model_config.json"
MODEL_WEIGHTS = "model.safetensors"
SAES_SUBDIR = "saes"
CARD = "CARD.md"
BUILD_RECORD = "build.json"
