"""``apprentice train`` itself under torchrun: two CPU processes (gloo) on a tiny GGUF base.

tests/test_train_ddp.py checks the training loop's arithmetic under torchrun; this checks
the command a team runs: rank 0 alone prints the summary, exports, passes the agreement
gate and packs, the other process exits 0 quietly, and the adapter is the one a single
process trains with the same global batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.test_train_ddp import LAUNCHER_ENV, ROOT, TOLERANCE
from tests.tiny_archs import distill_shop, tiny_models, train_args


def apprentice_train(processes: int, dataset: Path, base: Path, out: Path) -> dict[str, object]:
    """Run ``apprentice train`` (under torchrun when ``processes`` > 1); its JSON summary."""
    args = train_args(dataset, base, out, steps=3)
    # A small learning rate: AdamW magnifies the all-reduce's rounding at large ones
    # (tests/test_train_ddp.py says more), and this compares weights.
    args[args.index("--lr") + 1] = "1e-3"
    args += ["--batch-size", "2", "--save-every", "2"]
    command = [sys.executable, "-m", "lsp.cli", *args]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [sys.executable, *launcher, "-m", "lsp.cli", *args]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(outputs) == 1, done.stdout  # one summary: rank 0's
    summary: dict[str, object] = json.loads(outputs[0])
    return summary


@pytest.mark.timeout(900)
def test_two_processes_train_pack_and_pass_the_gate_as_one_does(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base = tiny_models(tmp_path / "tiny", ("gemma3",))["gemma3"]
    dataset = distill_shop(tmp_path / "shop")
    two = apprentice_train(2, dataset, base, tmp_path / "two")
    one = apprentice_train(1, dataset, base, tmp_path / "one")
    assert (two["processes"], one["processes"]) == (2, 1)
    agreement = two["agreement"]
    assert isinstance(agreement, dict) and agreement["decisive_agreement"] >= agreement["required"]
    assert (tmp_path / "two" / "checkpoint" / "peft" / "adapter_model.safetensors").is_file()
    a = load_file(str(tmp_path / "two" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "one" / "adapter.safetensors"))
    assert set(a) == set(b)
    worst = max(float((a[name] - b[name]).abs().max()) for name in a)
    assert worst <= TOLERANCE, worst
