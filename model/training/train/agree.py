"""Does llama.cpp with the exported adapter predict what the trained torch model predicts?

On held-out examples, at the prompt's last position and the middle's positions (the
middle fed as it really is), the top-1 next token of the torch model (dequantized base +
LoRA) is compared with llama.cpp's (quantized base + adapter GGUF), and with llama.cpp's
base alone, to show the adapter changes what the model says.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.training.distill.dataset import Example
from model.training.train.base import TrainingError
from model.training.train.fimformat import Tokens, encode

logger = logging.getLogger(__name__)

REQUIRED_AGREEMENT = 0.95
# Positions where the torch model's best two tokens are closer than this (in logits) are
# ties: llama.cpp's quantized arithmetic (8-bit activations) may break them either way, so
# the gate counts the decisive positions only (every position is still reported).
TIE_MARGIN = 0.25


@dataclass(frozen=True)
class Agreement:
    """Top-1 agreement of llama.cpp + adapter with torch, and how often it differs from the base."""

    positions: int
    agreement: float
    base_agreement: float  # llama.cpp base alone vs the trained torch model
    changed_by_adapter: float  # positions where llama.cpp's top-1 differs with and without it
    decisive: int = 0  # positions whose torch top-1 leads by at least TIE_MARGIN
    decisive_agreement: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the export reproduces the trained model well enough to ship."""
        return self.decisive > 0 and self.decisive_agreement >= REQUIRED_AGREEMENT

    def as_json(self) -> dict[str, Any]:
        """The report's fields, rounded."""
        return {
            "positions": self.positions,
            "agreement": round(self.agreement, 4),
            "base_agreement": round(self.base_agreement, 4),
            "changed_by_adapter": round(self.changed_by_adapter, 4),
            "decisive": self.decisive,
            "decisive_agreement": round(self.decisive_agreement, 4),
            "required": REQUIRED_AGREEMENT,
        }


def probe_sequences(
    examples: Sequence[Example], tokens: Tokens, max_tokens: int, per_example: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each example and the positions to compare (prompt end, then the middle)."""
    sequences: list[list[int]] = []
    positions: list[list[int]] = []
    for example in examples:
        encoded = encode(example, tokens, max_tokens)
        last = len(encoded.ids) - 1
        start = encoded.prompt_len - 1
        sequences.append(encoded.ids)
        positions.append(list(range(start, min(last, start + per_example))))
    return sequences, positions


def torch_top1(
    peft_model: Any, sequences: list[list[int]], positions: list[list[int]]
) -> tuple[list[int], list[float]]:
    """The trained model's top-1 next token at each position and its lead over the
    runner-up in logits (both flattened)."""
    import torch

    inner = peft_model.get_base_model()
    device = next(inner.parameters()).device
    found: list[int] = []
    leads: list[float] = []
    with torch.no_grad():
        for ids, where in zip(sequences, positions, strict=True):
            hidden = inner.model(input_ids=torch.tensor([ids], device=device)).last_hidden_state
            best = inner.lm_head(hidden[0, where]).topk(2, dim=-1)
            found.extend(int(i) for i in best.indices[:, 0])
            leads.extend(float(v) for v in best.values[:, 0] - best.values[:, 1])
    return found, leads


def llama_predictions(
    model_path: Path,
    lora_path: Path | None,
    sequences: list[list[int]],
    positions: list[list[int]],
    generate: int = 0,
) -> dict[str, Any]:
    """Run ``model.training.train.llama_probe`` in a child process and return its answer."""
    from model.runtime.hardware import interactive_threads

    request = {
        # llama.cpp's threads wait for each other at every step; on a busy machine fewer
        # threads finish sooner (the server's own default, for the same reason).
        "threads": interactive_threads(),
        "model": str(model_path),
        "lora": str(lora_path) if lora_path else None,
        "sequences": sequences,
        "positions": positions,
        "generate": generate,
    }
    done = subprocess.run(
        [sys.executable, "-m", "model.training.train.llama_probe"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise TrainingError(f"llama.cpp could not load the adapter: {tail[0]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def check_agreement(
    peft_model: Any,
    tokens: Tokens,
    examples: Sequence[Example],
    base_path: Path,
    adapter_path: Path,
    *,
    max_tokens: int,
    per_example: int = 8,
) -> Agreement:
    """Compare torch and llama.cpp (with and without the adapter) on ``examples``."""
    sequences, positions = probe_sequences(examples, tokens, max_tokens, per_example)
    if not sequences:
        return Agreement(0, 0.0, 0.0, 0.0)
    want, leads = torch_top1(peft_model, sequences, positions)
    with_adapter = _flat(llama_predictions(base_path, adapter_path, sequences, positions)["top1"])
    base_only = _flat(llama_predictions(base_path, None, sequences, positions)["top1"])
    n = len(want)
    decisive = [i for i, lead in enumerate(leads) if lead >= TIE_MARGIN]
    result = Agreement(
        positions=n,
        agreement=sum(a == b for a, b in zip(want, with_adapter, strict=True)) / n,
        base_agreement=sum(a == b for a, b in zip(want, base_only, strict=True)) / n,
        changed_by_adapter=sum(a != b for a, b in zip(with_adapter, base_only, strict=True)) / n,
        decisive=len(decisive),
        decisive_agreement=(
            sum(want[i] == with_adapter[i] for i in decisive) / len(decisive) if decisive else 0.0
        ),
    )
    logger.info("llama.cpp agreement: %s", result.as_json())
    return result


def _flat(rows: list[list[int]]) -> list[int]:
    return [value for row in rows for value in row]
