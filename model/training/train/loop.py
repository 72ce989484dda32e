"""The LoRA training loop: seeded data order, loss on the middle only, step checkpoints, resume.

The output head is applied only to the positions that predict the middle: with Gemma 3's
262k-token vocabulary the head costs more than the rest of the model, and the prompt's
positions carry no loss anyway. A step trains ``batch_size`` examples, the next ones of one
seeded stream (sample ``step * batch_size + j``); the example and the plain/FIM choice of
a sample are functions of (seed, sample index), so a run resumed from a step checkpoint
continues exactly as if it had not stopped, with as many processes as before or not
(``parallel``). Each example is its own forward pass (no padding); the gradients of a
step's examples accumulate, and the loss is their mean.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.training.distill.dataset import Example
from model.training.train.base import TrainingError
from model.training.train.fimformat import Encoded, Tokens, encode
from model.training.train.parallel import World, accumulating, autocast, loss_engine
from model.training.train.recipe import Recipe
from model.training.train.state import (
    ADAPTER_FILE,
    OPTIMIZER_FILE,
    latest_step,
    load_tensors,
    lora_parameters,
    optimizer_tensors,
    restore_optimizer,
    save_step,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepReport:
    """Progress after one step."""

    step: int
    steps: int
    loss: float
    tokens_per_s: float
    eta_s: float
    learning_rate: float
    heldout_loss: float | None = None


@dataclass
class TrainResult:
    """What a finished run reports."""

    steps: int
    resumed_from: int
    train_loss: float
    heldout_loss_before: float | None
    heldout_loss_after: float | None
    seconds: float  # training time over every session of the run, resumed ones included
    tokens: int  # tokens trained on, likewise
    log: list[dict[str, Any]] = field(default_factory=list)


Progress = Callable[[StepReport], None]


def learning_rate(settings: Recipe, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    peak = settings.learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def example_at(sample: int, count: int, seed: int) -> int:
    """The training example of ``sample``: a seeded shuffle per pass over the data.

    ``sample`` counts examples from the start of the run (the step, when a step trains one).
    """
    epoch, index = divmod(sample, count)
    order = list(range(count))
    random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return order[index]


def is_plain(sample: int, settings: Recipe) -> bool:
    """Whether ``sample`` trains plain left-to-right text instead of the FIM layout."""
    return random.Random(f"{settings.seed}:plain:{sample}").random() < settings.plain_ratio


def samples_of(step: int, batch_size: int, share: range) -> list[int]:
    """The samples of ``step`` that a process trains: its ``share`` of the step's batch.

    The positions depend on the step and the global batch only, so the processes together
    train the same samples, in the same steps, whatever their number.
    """
    return [step * batch_size + position for position in share]


def attach_lora(model: Any, settings: Recipe) -> Any:
    """The base wrapped by peft with fresh LoRA weights (seeded)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=int(settings.alpha),
        target_modules=list(settings.targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft asks transformers a question transformers has renamed; nothing for a user to do.
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        return get_peft_model(model, config)


def middle_loss(peft_model: Any, encoded: Encoded, device: str) -> Any:
    """Cross-entropy of the middle tokens given everything before them."""
    import torch
    import torch.nn.functional as F

    inner = peft_model.get_base_model()
    ids = torch.tensor([encoded.ids], device=device)
    hidden = inner.model(input_ids=ids).last_hidden_state
    logits = inner.lm_head(hidden[:, encoded.prompt_len - 1 : -1])
    cap = getattr(inner.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    target = ids[:, encoded.prompt_len :]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))


def heldout_loss(
    peft_model: Any,
    tokens: Tokens,
    heldout: Sequence[Example],
    settings: Recipe,
    world: World | None = None,
) -> float | None:
    """Mean middle loss over the first ``heldout_limit`` held-out examples (FIM layout).

    In a world of several processes each measures every ``size``-th example and the sums
    are added up, so every process returns the same mean in a fraction of the time.
    """
    import torch

    world = world or World()
    chosen = list(heldout)[: settings.heldout_limit]
    if not chosen:
        return None
    total = 0.0
    with torch.no_grad():
        for example in chosen[world.rank :: world.size]:
            encoded = encode(example, tokens, settings.max_tokens, max_middle=settings.max_middle)
            with autocast(settings.device, settings.precision):
                total += float(middle_loss(peft_model, encoded, settings.device))
    (total,) = world.total([total])
    return total / len(chosen)


def train_lora(
    peft_model: Any,
    tokens: Tokens,
    train: Sequence[Example],
    heldout: Sequence[Example],
    out: Path,
    settings: Recipe,
    run_identity: dict[str, Any],
    progress: Progress | None = None,
    *,
    world: World | None = None,
) -> TrainResult:
    """Train (or resume) the LoRA weights of ``peft_model``; step checkpoints go in ``out``.

    ``world`` is this process's place among torchrun's (``parallel.start_world``; None: a
    world of one). Every process returns the same result; only rank 0 writes checkpoints
    and calls ``progress``.
    """
    import torch

    world = world or World(device=settings.device)
    if not train:
        raise TrainingError("no training examples")
    share = world.share(settings.batch_size)
    torch.use_deterministic_algorithms(True, warn_only=True)
    params = lora_parameters(peft_model)
    names = {id(p): name for name, p in params.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=settings.learning_rate, weight_decay=0.0)
    start, log, before, spent = _resume(out, peft_model, optimizer, names, run_identity, world)
    engine = loss_engine(
        peft_model, world, lambda model, encoded: middle_loss(model, encoded, settings.device)
    )
    if start == 0:
        before = heldout_loss(peft_model, tokens, heldout, settings, world)
        if before is not None and world.is_main:
            logger.info("held-out loss before training: %.4f", before)
    peft_model.train()
    started = time.monotonic()
    tokens_seen = 0
    recent: list[float] = []
    for step in range(start, settings.steps):
        batch = [
            _encoded(train, tokens, sample, settings)
            for sample in samples_of(step, settings.batch_size, share)
        ]
        rate = learning_rate(settings, step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        mine = _accumulate(engine, batch, settings)
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum, counted = world.total([mine, sum(len(e.ids) for e in batch)])
        value, step_tokens = loss_sum / settings.batch_size, round(counted)
        recent = [*recent, value][-20:]
        tokens_seen += step_tokens
        elapsed = max(time.monotonic() - started, 1e-6)
        done = step + 1
        evaluate = bool(settings.eval_every) and done % settings.eval_every == 0
        held = heldout_loss(peft_model, tokens, heldout, settings, world) if evaluate else None
        if evaluate:
            peft_model.train()
        entry = {"step": done, "loss": round(value, 5), "lr": rate, "tokens": step_tokens}
        if held is not None:
            entry["heldout_loss"] = round(held, 5)
        log.append(entry)
        if progress is not None and world.is_main:
            per_step = elapsed / (done - start)
            progress(
                StepReport(
                    step=done,
                    steps=settings.steps,
                    loss=sum(recent) / len(recent),
                    tokens_per_s=tokens_seen / elapsed,
                    eta_s=per_step * (settings.steps - done),
                    learning_rate=rate,
                    heldout_loss=held,
                )
            )
        if world.is_main and (done % settings.save_every == 0 or done == settings.steps):
            total = (spent[0] + time.monotonic() - started, spent[1] + tokens_seen)
            _save(out, done, params, optimizer, names, run_identity, log, before, total)
    peft_model.eval()
    after = heldout_loss(peft_model, tokens, heldout, settings, world)
    if not recent:  # a finished run started again: its loss is in the saved log
        recent = [float(entry["loss"]) for entry in log[-20:]]
    train_loss = sum(recent) / len(recent) if recent else 0.0
    return TrainResult(
        steps=settings.steps,
        resumed_from=start,
        train_loss=train_loss,
        heldout_loss_before=before,
        heldout_loss_after=after,
        seconds=spent[0] + time.monotonic() - started,
        tokens=spent[1] + tokens_seen,
        log=log,
    )


def _encoded(train: Sequence[Example], tokens: Tokens, sample: int, settings: Recipe) -> Encoded:
    """The token ids that ``sample`` trains: its example, plain or in the FIM layout."""
    return encode(
        train[example_at(sample, len(train), settings.seed)],
        tokens,
        settings.max_tokens,
        max_middle=settings.max_middle,
        plain=is_plain(sample, settings),
    )


def _accumulate(engine: Any, batch: list[Encoded], settings: Recipe) -> float:
    """Forward and backward over this process's examples of a step; the sum of their losses.

    Each loss is divided by the number of this process's examples: DDP then averages
    over the processes, so the gradient is the mean over the whole batch, as one process
    with the whole batch computes it. The gradients are averaged once, on the last one.
    """
    total = 0.0
    for index, encoded in enumerate(batch):
        with accumulating(engine, last=index == len(batch) - 1):
            with autocast(settings.device, settings.precision):
                loss = engine(encoded)
            (loss / len(batch) if len(batch) > 1 else loss).backward()
        total += float(loss.detach())
    return total


def _save(
    out: Path,
    step: int,
    params: dict[str, Any],
    optimizer: Any,
    names: dict[int, str],
    identity: dict[str, Any],
    log: list[dict[str, Any]],
    before: float | None,
    spent: tuple[float, int],
) -> None:
    state = {
        "step": step,
        "run": identity,
        "log": log,
        "heldout_loss_before": before,
        "seconds": round(spent[0], 3),
        "tokens": spent[1],
    }
    save_step(out, step, params, optimizer_tensors(optimizer, names), state)
    logger.info("saved step %d", step)


def _resume(
    out: Path,
    peft_model: Any,
    optimizer: Any,
    names: dict[int, str],
    identity: dict[str, Any],
    world: World,
) -> tuple[int, list[dict[str, Any]], float | None, tuple[float, int]]:
    """The newest step checkpoint of this run, loaded: (its step, its log, the held-out loss
    before training, (seconds, tokens) trained so far).

    Every process loads it; they must all have found the same one.
    """
    import torch

    found = latest_step(out)
    _same_everywhere(world, int(found[1].get("step", -1)) if found else 0, out)
    if found is None:
        return 0, [], None, (0.0, 0)
    path, state = found
    if state.get("run") != identity:
        raise TrainingError(
            f"{out} holds a training run with another base, dataset or recipe "
            f"({path.name}); choose another output directory or delete it to start over"
        )
    saved = load_tensors(path / ADAPTER_FILE)
    params = lora_parameters(peft_model)
    if set(saved) != set(params):
        raise TrainingError(f"{path / ADAPTER_FILE} does not hold this run's LoRA tensors")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name].to(param.device))
    restore_optimizer(optimizer, names, load_tensors(path / OPTIMIZER_FILE))
    step = int(state["step"])
    if world.is_main:
        logger.info("resuming from %s (step %d)", path.name, step)
    log = list(state.get("log", []))
    before = state.get("heldout_loss_before")
    spent = (float(state.get("seconds", 0.0)), int(state.get("tokens", 0)))
    return step, log, before if isinstance(before, float) else None, spent


def _same_everywhere(world: World, step: int, out: Path) -> None:
    """Refuse to go on unless every process found the same newest step checkpoint.

    Each process tests the same sums, so all of them refuse or none does.
    """
    total, squares = world.total([step, step * step])
    if total * total != world.size * squares:
        raise TrainingError(
            f"the {world.size} processes see different step checkpoints in {out}: "
            "give them one shared output directory"
        )
