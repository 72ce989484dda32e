"""What llama.cpp predicts for given token ids, with or without a LoRA adapter.

Runs as its own process (``python -m model.training.train.llama_probe``; JSON on stdin and stdout)
so llama.cpp never shares a process, or its thread pools, with torch. Input:
``{"model", "lora", "sequences": [[ids]], "positions": [[i]], "generate": n}``; output:
``{"top1": [[id at each position]], "generated": [[ids]]}`` (greedy continuations).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Top-1 next-token ids at the asked positions, and greedy continuations."""
    import numpy as np
    from llama_cpp import Llama

    sequences: list[list[int]] = request["sequences"]
    longest = max((len(s) for s in sequences), default=1) + int(request.get("generate", 0))
    llm = Llama(
        model_path=request["model"],
        lora_path=request.get("lora") or None,
        n_ctx=max(256, longest + 8),
        n_batch=512,
        logits_all=True,
        verbose=False,
        n_threads=request.get("threads") or None,
    )
    top1: list[list[int]] = []
    generated: list[list[int]] = []
    for ids, positions in zip(sequences, request["positions"], strict=True):
        llm.reset()
        llm.eval(ids)
        scores = llm.scores
        top1.append([int(np.argmax(scores[p])) for p in positions])
        more: list[int] = []
        for _ in range(int(request.get("generate", 0))):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            more.append(token)
            if llm.token_eos() == token:
                break
            llm.eval([token])
        generated.append(more)
    return {"top1": top1, "generated": generated}


def main() -> int:
    """Read one request from stdin, write one answer to stdout."""
    request = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(probe(request)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
