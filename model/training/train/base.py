"""The base model for training: the GGUF loaded (dequantized) into transformers, and its identity.

transformers reads the GGUF directly (``gguf_file=``), weights and tokenizer, so the
student trains on exactly the model llama.cpp serves. Only Gemma 3 bases are accepted:
the student's FIM markers are Gemma 3's reserved ``<unusedN>`` tokens.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.checkpoints.checkpoint import resolve_model
from model.checkpoints.spec import TRAINING_BASE, ModelSpec, parse_model_spec
from model.runtime.api import ModelError
from model.runtime.default_model import sha256_file
from model.runtime.gguf import read_gguf

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("gemma3",)


class TrainingError(ModelError):
    """Training cannot start or go on (bad base, bad dataset, a checkpoint of another run)."""


@dataclass(frozen=True)
class BaseModel:
    """A base GGUF: where it is, its sha256 and architecture, and the number of blocks."""

    path: Path
    sha256: str
    architecture: str
    blocks: int
    name: str


def describe_base(spec: ModelSpec | str | None) -> BaseModel:
    """The base ``spec`` names (``--base``; None: the default), checked to be a Gemma 3 GGUF.

    Any model spec that resolves to a GGUF alone will do: a file, ``base``, a checkpoint
    without adapters. One that carries adapters (``student``, a trained checkpoint) is
    refused: training does not continue a tuned model yet.
    """
    if not isinstance(spec, ModelSpec):
        spec = parse_model_spec(spec, allow=TRAINING_BASE)
    model = resolve_model(spec, allow=TRAINING_BASE)
    if model.loras:
        raise TrainingError(f"--base {spec.shown or 'default'!r}: {TRAINING_BASE.adapter_refusal}")
    resolved = model.gguf
    info = read_gguf(resolved)
    if info.architecture not in SUPPORTED_ARCHITECTURES:
        raise TrainingError(
            f"{resolved.name} is a {info.architecture or 'unknown'} model; the student's FIM "
            f"markers need a {'/'.join(SUPPORTED_ARCHITECTURES)} base"
        )
    blocks = info.metadata.get(f"{info.architecture}.block_count")
    if not isinstance(blocks, int):
        raise TrainingError(f"{resolved.name} does not say how many blocks it has")
    return BaseModel(
        path=resolved,
        sha256=model.gguf_sha256 or sha256_file(resolved),
        architecture=info.architecture,
        blocks=blocks,
        name=str(info.metadata.get("general.name") or resolved.stem),
    )


def load_base(base: BaseModel, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from the GGUF, float32, in eval mode, on ``device``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()  # no bar redrawn into a log file
    started = time.monotonic()
    folder, name = str(base.path.parent), base.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise TrainingError(f"transformers cannot load {base.path}: {error}") from None
    model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    logger.info("loaded %s into transformers in %.0f s", base.path.name, time.monotonic() - started)
    return model, tokenizer
