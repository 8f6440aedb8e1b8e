"""Where lister-tiny's files live, and the shape shared by build and registry."""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED_DIR = Path(__file__).with_name("lister_tiny")
N_LAYERS = 4

# A folder of lister-tiny files to use instead of the shipped ones (e.g. a rebuild
# under test); read on every lookup, so a test can point the whole engine at a rebuild.
WEIGHTS_DIR_ENV = "LISTER_TINY_DIR"

TOKENIZER_SUBDIR = "tokenizer"
MODEL_CONFIG = "model_config.json"
MODEL_WEIGHTS = "model.safetensors"
SAES_SUBDIR = "saes"
CARD = "CARD.md"
BUILD_RECORD = "build.json"


def weights_dir() -> Path:
    """The lister-tiny folder in use: ``$LISTER_TINY_DIR`` if set, else the shipped one."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(override) if override else SHIPPED_DIR
