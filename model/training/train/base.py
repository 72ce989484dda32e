"""The base model for training: the GGUF loaded (dequantized) into transformers, and its identity.

transformers reads the GGUF directly (``gguf_file=``), weights and tokenizer, so the
student trains on exactly the model llama.cpp serves. The base's architecture must be one
of ``model.training.train.arch``'s, and the base must have a FIM layout to train in
(``fimformat.choose_layout``): both are checked here, before anything heavy is loaded.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.checkpoints.checkpoint import resolve_model
from model.checkpoints.spec import TRAINING_BASE, ModelSpec, parse_model_spec
from model.runtime.api import ModelError
from model.runtime.default_model import sha256_file
from model.runtime.fim import all_markers
from model.runtime.gguf import read_gguf
from model.training.train.arch import ARCHITECTURES, supported
from model.training.train.fimformat import STUDENT_LAYOUT, Layout, LayoutError, choose_layout

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)


class TrainingError(ModelError):
    """Training cannot start or go on (bad base, bad dataset, a checkpoint of another run)."""


@dataclass(frozen=True)
class BaseModel:
    """A base GGUF: where it is, its sha256 and architecture, its blocks and heads, and the
    FIM layout it is trained in (with its markers' ids in the GGUF's vocabulary)."""

    path: Path
    sha256: str
    architecture: str
    blocks: int
    name: str
    heads: int = 0
    kv_heads: int = 0
    layout: Layout = STUDENT_LAYOUT
    marker_ids: dict[str, int] = field(default_factory=dict)
    # SentencePiece with llama.cpp's space prefix: every text piece starts with "▁".
    space_prefix: bool = False
    # A tuned checkpoint's adapter that training continues from (``--base CHECKPOINT``).
    adapter: Path | None = None
    adapter_sha256: str = ""


def describe_base(spec: ModelSpec | str | None) -> BaseModel:
    """The base ``spec`` names (``--base``; None: the default), checked to be trainable.

    Any model spec will do: a GGUF file, ``base``, ``student``, a checkpoint. A tuned model
    (one adapter, from a checkpoint or ``MODEL+ADAPTER.gguf``) is continued: its adapter is
    where the new LoRA starts. More than one adapter is refused.
    """
    if not isinstance(spec, ModelSpec):
        spec = parse_model_spec(spec, allow=TRAINING_BASE)
    shown = spec.shown or "default"
    model = resolve_model(spec, allow=TRAINING_BASE)
    if len(model.loras) > 1:
        raise TrainingError(
            f"--base {shown!r} carries {len(model.loras)} adapters; training continues one: "
            "pack a checkpoint with the one to continue, or pass its base GGUF to start afresh"
        )
    resolved = model.gguf
    info = read_gguf(resolved, markers=all_markers())
    arch = ARCHITECTURES.get(info.architecture)
    if arch is None:
        raise TrainingError(
            f"{resolved.name} is a {info.architecture or 'unknown'} model; apprentice train "
            f"takes {supported()}"
        )
    blocks = info.metadata.get(f"{info.architecture}.block_count")
    if not isinstance(blocks, int):
        raise TrainingError(f"{resolved.name} does not say how many blocks it has")
    try:
        layout = choose_layout(info, arch.reserved_family)
    except LayoutError as error:
        raise TrainingError(str(error)) from None
    heads = info.metadata.get(f"{info.architecture}.attention.head_count")
    kv_heads = info.metadata.get(f"{info.architecture}.attention.head_count_kv", heads)
    adapter = model.loras[0] if model.loras else None
    sentencepiece = info.metadata.get("tokenizer.ggml.model") == "llama"
    return BaseModel(
        path=resolved,
        sha256=model.gguf_sha256 or sha256_file(resolved),
        architecture=info.architecture,
        blocks=blocks,
        name=str(info.metadata.get("general.name") or resolved.stem),
        heads=heads if isinstance(heads, int) else 0,
        kv_heads=kv_heads if isinstance(kv_heads, int) else 0,
        layout=layout,
        marker_ids=dict(info.marker_ids),
        space_prefix=sentencepiece
        and info.metadata.get("tokenizer.ggml.add_space_prefix") is not False,
        adapter=adapter.path if adapter else None,
        adapter_sha256=(adapter.sha256 or sha256_file(adapter.path)) if adapter else "",
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
    except (OSError, ValueError, NotImplementedError) as error:
        raise TrainingError(f"transformers cannot load {base.path}: {error}") from None
    if base.space_prefix:
        as_llama_cpp_does(tokenizer)
    model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    logger.info("loaded %s into transformers in %.0f s", base.path.name, time.monotonic() - started)
    return model, tokenizer


def as_llama_cpp_does(tokenizer: Any) -> None:
    """Make a SentencePiece tokenizer put "▁" before every piece of text, as llama.cpp does.

    transformers' ``Metaspace`` leaves the prefix out of text that starts with a space
    (" def" is "▁def", llama.cpp's "▁▁def"); CodeLlama's FIM layout puts a space before the
    prefix, so the trained prompt would differ from the served one. A normalizer that
    prepends and replaces, with no pre-tokenizer, is SentencePiece's own rule (transformers
    builds Phi-3's tokenizer so).
    """
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend(prepend="\u2581"), normalizers.Replace(pattern=" ", content="\u2581")]
    )
    backend.pre_tokenizer = None
