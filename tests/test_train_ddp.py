"""Data-parallel training: torchrun's processes train what one process trains, and resume.

The torchrun tests start ``python -m torch.distributed.run --standalone --nproc_per_node 2``
(gloo on the CPU, one torch thread a process) on the tiny random Gemma 3 of
tests/test_train.py, through tests/ddp_worker.py. The fixture's three launches take about
30 s on a 2-core machine; the refusal's launch about 10 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from model.training.train.base import TrainingError  # noqa: E402
from model.training.train.fimformat import Tokens, encode  # noqa: E402
from model.training.train.loop import (  # noqa: E402
    attach_lora,
    example_at,
    is_plain,
    learning_rate,
    middle_loss,
    samples_of,
    train_lora,
)
from model.training.train.parallel import World, autocast, start_world  # noqa: E402
from model.training.train.state import (  # noqa: E402
    STEPS_DIR,
    completed_steps,
    load_tensors,
    lora_parameters,
)
from tests.ddp_worker import ADAPTER, HELDOUT, RESULT, TRAIN  # noqa: E402
from tests.test_train import (  # noqa: E402
    IDENTITY,
    ByteTokenizer,
    settings,
    tensors,
    tiny_model,
)

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# The processes' gradients are added in another order than one process adds them (each
# process sums its own micro-steps, then gloo sums the processes), so float32 rounding
# differs in the last bits. AdamW divides each gradient element by its own running size,
# so where a step's examples nearly cancel, that rounding becomes a relative difference
# in the element's update, of at most about the learning rate: the worker trains at
# lr 1e-3, where 4 steps differ by at most 9e-8 (weights about 0.2); at lr 1e-2 one
# element reached 6e-6. Without the gradient averaging they differ by 1e-3 or more.
TOLERANCE = 1e-5
BATCH = 4  # two micro-steps a process: the accumulation under no_sync is exercised


def launch(
    processes: int, *outs: Path, batch_size: int = BATCH
) -> subprocess.CompletedProcess[str]:
    """tests/ddp_worker.py alone (one process, no launcher) or under torchrun."""
    worker = ["-m", "tests.ddp_worker", "--batch-size", str(batch_size), *map(str, outs)]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone"]
        command = [sys.executable, *launcher, "--nproc_per_node", str(processes), *worker]
    else:
        command = [sys.executable, *worker]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def interrupted_copy(source: Path, target: Path) -> Path:
    """``source`` as its run left it one step checkpoint earlier: the newest one deleted."""
    shutil.copytree(source, target)
    shutil.rmtree(completed_steps(target)[-1])
    for output in (ADAPTER, RESULT):
        (target / output).unlink()
    return target


def adapter(out: Path) -> dict[str, Any]:
    return load_tensors(out / ADAPTER)


def result(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / RESULT).read_text()))


def max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One process straight; two processes straight; each resumed by the other count."""
    root = tmp_path_factory.mktemp("ddp")
    one, two = root / "one", root / "two"
    done = launch(1, one)
    assert done.returncode == 0, done.stderr
    two_after_one = interrupted_copy(one, root / "two-after-one")
    done = launch(2, two, two_after_one)
    assert done.returncode == 0, done.stderr
    one_after_two = interrupted_copy(two, root / "one-after-two")
    done = launch(1, one_after_two)
    assert done.returncode == 0, done.stderr
    return {"one": one, "two": two, "two-after-one": two_after_one, "one-after-two": one_after_two}


def test_two_processes_train_the_adapter_one_process_trains(runs: dict[str, Path]) -> None:
    one, two = runs["one"], runs["two"]
    assert max_difference(adapter(one), adapter(two)) <= TOLERANCE
    a, b = result(one), result(two)
    # The same samples in the same steps: every step's tokens (all processes') match.
    assert [e["tokens"] for e in a["log"]] == [e["tokens"] for e in b["log"]]
    assert [e["loss"] for e in a["log"]] == pytest.approx([e["loss"] for e in b["log"]], abs=1e-4)
    assert b["heldout_loss_before"] == pytest.approx(a["heldout_loss_before"], abs=1e-5)
    assert b["heldout_loss_after"] == pytest.approx(a["heldout_loss_after"], abs=1e-5)
    assert a["tokens"] == b["tokens"] == sum(e["tokens"] for e in a["log"])
    # The step checkpoints are whole, with no partial directory left behind by a second writer.
    written = sorted(p.name for p in (two / STEPS_DIR).iterdir())
    assert written == ["step-0000002", "step-0000004"]


def test_a_run_resumes_with_another_process_count(runs: dict[str, Path]) -> None:
    straight = adapter(runs["one"])
    for resumed in (runs["two-after-one"], runs["one-after-two"]):
        assert result(resumed)["resumed_from"] == 2
        assert max_difference(straight, adapter(resumed)) <= TOLERANCE
        assert result(resumed)["tokens"] == result(runs["one"])["tokens"]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path: Path) -> None:
    done = launch(2, tmp_path / "out", batch_size=3)
    assert done.returncode != 0
    line = "apprentice: --batch-size 3 does not split evenly over 2 processes"
    assert line in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_processes_train_the_same_samples_whatever_their_number() -> None:
    alone = samples_of(3, 4, World().share(4))
    assert alone == [12, 13, 14, 15]
    for size in (2, 4):
        shares = [World(rank=r, size=size).share(4) for r in range(size)]
        together = [s for share in shares for s in samples_of(3, 4, share)]
        assert together == alone


def test_a_batch_that_does_not_split_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="--batch-size 3 does not split evenly over 2"):
        World(rank=0, size=2).share(3)
    recipe = settings(batch_size=3)
    model = attach_lora(tiny_model(), recipe)
    with pytest.raises(TrainingError, match="choose a multiple of 2"):
        train_lora(
            model, Tokens(ByteTokenizer()), TRAIN, [], tmp_path, recipe, IDENTITY,
            world=World(rank=0, size=2),
        )  # fmt: skip
    assert not (tmp_path / STEPS_DIR).exists()


def reference(batch_size: int, steps: int = 4) -> tuple[dict[str, Any], list[float]]:
    """A step as written by hand: the mean loss of samples step * batch .. + batch - 1,
    one backward pass, clipping, AdamW. Returns the weights and each step's mean loss."""
    recipe = settings(steps=steps, batch_size=batch_size)
    model = attach_lora(tiny_model(), recipe)
    params = lora_parameters(model)
    optimizer = torch.optim.AdamW(params.values(), lr=recipe.learning_rate, weight_decay=0.0)
    tokens = Tokens(ByteTokenizer())
    model.train()
    means = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        losses = []
        for sample in range(step * batch_size, (step + 1) * batch_size):
            chosen = TRAIN[example_at(sample, len(TRAIN), recipe.seed)]
            encoded = encode(
                chosen, tokens, recipe.max_tokens, max_middle=recipe.max_middle,
                plain=is_plain(sample, recipe),
            )  # fmt: skip
            losses.append(middle_loss(model, encoded, "cpu"))
        (losses[0] if batch_size == 1 else sum(losses) / batch_size).backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        means.append(sum(float(loss.detach()) for loss in losses) / batch_size)
    return tensors(model), means


def trained(out: Path, batch_size: int, **kwargs: Any) -> tuple[Any, Any]:
    recipe = settings(steps=4, batch_size=batch_size, save_every=100)
    model = attach_lora(tiny_model(), recipe)
    tokens = Tokens(ByteTokenizer())
    return model, train_lora(model, tokens, TRAIN, HELDOUT, out, recipe, IDENTITY, **kwargs)


def test_one_example_a_step_trains_bit_for_bit_as_a_plain_loop(tmp_path: Path) -> None:
    expected, means = reference(1)
    model, result = trained(tmp_path, 1)
    got = tensors(model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert [entry["loss"] for entry in result.log] == [round(m, 5) for m in means]


def test_a_step_of_several_examples_descends_their_mean_loss(tmp_path: Path) -> None:
    expected, means = reference(2)
    model, result = trained(tmp_path, 2)
    got = tensors(model)
    # Accumulated per example rather than summed in one graph: float32 rounding only.
    assert max_difference(expected, got) <= 1e-6
    assert [entry["loss"] for entry in result.log] == pytest.approx(means, abs=1e-5)
    assert max_difference(expected, reference(1)[0]) > 1e-3  # the batch changed the update


def test_only_rank_0_writes_checkpoints_and_reports_progress(tmp_path: Path) -> None:
    reports: list[Any] = []
    _, result = trained(tmp_path / "r1", 2, progress=reports.append, world=World(rank=1, size=2))
    assert reports == [] and not (tmp_path / "r1").exists()
    assert len(result.log) == 4
    _, result = trained(tmp_path / "r0", 2, progress=reports.append, world=World(rank=0, size=2))
    assert [r.step for r in reports] == [1, 2, 3, 4]
    assert [p.name for p in completed_steps(tmp_path / "r0")] == ["step-0000004"]


@dataclass(frozen=True)
class BesideAPeer(World):
    """Rank 0 of two whose peer's sums are ``peer``: a stand-in for a process group."""

    peer: tuple[float, ...] = ()

    def total(self, values: Any) -> list[float]:
        return [v + p for v, p in zip(values, self.peer, strict=True)]


def test_processes_that_see_different_checkpoints_refuse(tmp_path: Path) -> None:
    world = BesideAPeer(rank=0, size=2, peer=(2, 4))  # the peer found step 2, this one none
    with pytest.raises(TrainingError, match="different step checkpoints"):
        trained(tmp_path, 2, world=world)


def test_without_a_launcher_the_world_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_ENV:
        monkeypatch.delenv(name, raising=False)
    assert start_world("cpu") == World(rank=0, size=1, device="cpu", distributed=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not start_world("cpu").distributed


def test_a_launch_without_its_rendezvous_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(TrainingError, match="--device cuda:1 names one GPU"):
        start_world("cuda:1")
    with pytest.raises(
        TrainingError, match=r"cannot join the 2-process group \(gloo\).*MASTER_ADDR"
    ):
        start_world("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(TrainingError, match="RANK='one' is not a number"):
        start_world("cpu")


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # a CPU-only torch
def test_auto_precision_is_bf16_on_a_gpu_that_has_it_and_float32_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    on_gpu = autocast("cuda:1", "auto")
    assert isinstance(on_gpu, torch.autocast) and on_gpu.fast_dtype == torch.bfloat16
    assert not isinstance(autocast("cuda:1", "fp32"), torch.autocast)
    assert not isinstance(autocast("cpu", "auto"), torch.autocast)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert not isinstance(autocast("cuda", "auto"), torch.autocast)  # e.g. a V100 or a T4
