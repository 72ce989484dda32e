"""One training process for tests/test_train_ddp.py: a tiny random Gemma 3, alone or under torchrun.

``python -m tests.ddp_worker --batch-size 2 OUT...`` trains (or resumes) one run in each
OUT, one after the other, in the same process world; rank 0 then writes the LoRA weights
(``adapter.safetensors``) and the result (``result.json``) into OUT. A refused run prints
one line, as ``apprentice train`` does, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from model.runtime.api import ModelError
from model.training.train.fimformat import Tokens
from model.training.train.loop import attach_lora, train_lora
from model.training.train.parallel import start_world
from model.training.train.state import lora_parameters, save_tensors
from tests.test_train import IDENTITY, ByteTokenizer, example, settings, tiny_model

ADAPTER = "adapter.safetensors"
RESULT = "result.json"
TRAIN = [example(i) for i in range(5)]
HELDOUT = [example(i, "h.py") for i in range(20, 23)]  # three: two processes share unevenly


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("outs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recipe = settings(
        steps=args.steps,
        batch_size=args.batch_size,
        save_every=args.save_every,
        eval_every=2,
        learning_rate=args.lr,
    )
    try:
        with start_world("cpu") as world:
            for out in args.outs:
                model = attach_lora(tiny_model(), recipe)
                tokens = Tokens(ByteTokenizer())
                result = train_lora(
                    model, tokens, TRAIN, HELDOUT, out, recipe, IDENTITY, world=world
                )
                if world.is_main:
                    save_tensors(out / ADAPTER, lora_parameters(model))
                    (out / RESULT).write_text(json.dumps(asdict(result)))
    except ModelError as error:
        print(f"apprentice: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
