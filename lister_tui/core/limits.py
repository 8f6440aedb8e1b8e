"""The valid range of every number a user gives (command-line options, settings): one place, no imports.

The command line states these ranges in ``--help`` and refuses a value outside them before
anything loads or is written; the core checks them again for callers that are not the command
line (a sweep's manifest, a script). Each bound is far above real use and far below what
exhausts memory or crashes a library (``--threads 100000`` crashed torch).
"""

from __future__ import annotations

import os

MAX_THREADS = 4 * (os.cpu_count() or 1)  # torch threads per process: 4 per core of this machine
MAX_SEED = 2**63 - 1  # a base seed; each sample's own seed is derived from it below 2^31
MAX_BUILD_SEED = 2**31 - 1  # lister-tiny's build: each SAE trains with seed + its index
MAX_SAMPLES_PER_TOPIC = 1000  # per template and topic, in one batch or sweep
MAX_TEMPERATURE = 100.0
MAX_NEW_TOKENS = 4096  # and at most the model's context minus the prompt (checked once the model is loaded)
MAX_TOP_K = 1_000_000
MAX_IG_STEPS = 1000  # each step is a forward and backward pass per SAE
MAX_K = 1000  # (position, feature) pairs zeroed per sample
MAX_STEERING_SCALE = 1000.0  # |scale| times the long-minus-short vector
MAX_LAYER = 1000
MAX_D_SAE = 1 << 22  # Gemma Scope's widest SAEs have 2^20 features
MAX_WORKERS = 1024  # Ray workers of one sweep
MAX_GPUS_PER_WORKER = 64.0
MAX_NODES_PER_SITE = 10_000  # circuit nodes kept per site
MAX_THRESHOLD = 1e12  # circuit node and edge thresholds (|effect|, |weight|)
MAX_CARD_CONTEXTS = 1000  # top contexts on a feature card
MAX_POSITION = 1 << 20  # a token position given by hand (graph --pos); the list's own length is checked once sampled
MAX_GRAPH_CHECKS = 1000  # graph nodes zeroed to compare graph, replacement and real model
MAX_GRAPH_BATCH = 4096  # graph targets per backward pass
MAX_GRAPH_MEMORY_GIB = 1024.0  # what --max-memory may allow
MAX_SUPERNODE_NAME = 80  # characters in a supernode's name (a graph's group of nodes)
MAX_SUPERNODE_MEMBERS = 10_000  # nodes in one supernode
MAX_HEAD_VIEW_HEADS = 64  # heads shown in a graph edge's head view
