"""Step checkpoints: LoRA weights and optimizer state in safetensors, the rest in JSON.

No pickle anywhere: a checkpoint is ``adapter.safetensors`` (peft's LoRA tensors),
``optimizer.safetensors`` (AdamW's moments per parameter, by name) and ``state.json``
(step, losses, the run's identity). Each step directory is written under a temporary
name and renamed, so the latest complete step is always whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from model.checkpoints.atomic_io import fsync_directory, write_bytes_atomic, write_text_atomic
from model.training.train.base import TrainingError

logger = logging.getLogger(__name__)

STEPS_DIR = "steps"
ADAPTER_FILE = "adapter.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def lora_parameters(model: Any) -> dict[str, Any]:
    """The trainable LoRA tensors by name (peft's names, stable across runs)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    """Tensors to a safetensors file, atomically."""
    from safetensors.torch import save

    data = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    write_bytes_atomic(path, save(data))


def load_tensors(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file (on the CPU)."""
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as error:
        raise TrainingError(f"cannot read {path}: {error}") from None


def optimizer_tensors(optimizer: Any, names: dict[int, str]) -> dict[str, Any]:
    """AdamW's state as named tensors: ``NAME.exp_avg``, ``NAME.exp_avg_sq``, ``NAME.step``."""
    import torch

    found: dict[str, Any] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            name = names[id(param)]
            for key, value in state.items():
                tensor = value if torch.is_tensor(value) else torch.tensor(float(value))
                found[f"{name}.{key}"] = tensor
    return found


def restore_optimizer(optimizer: Any, names: dict[int, str], tensors: dict[str, Any]) -> None:
    """Put the saved moments back on the optimizer's parameters."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            state = {
                key.rsplit(".", 1)[1]: value.to(param.device)
                for key, value in tensors.items()
                if key.rsplit(".", 1)[0] == name
            }
            if state:
                optimizer.state[param] = state


def save_step(
    out: Path,
    step: int,
    adapter: dict[str, Any],
    optimizer: dict[str, Any],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write step ``step``'s checkpoint whole, then drop older ones beyond ``keep``."""
    steps = out / STEPS_DIR
    final = steps / f"step-{step:07d}"
    partial = steps / f".step-{step:07d}.partial"
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        save_tensors(partial / ADAPTER_FILE, adapter)
        save_tensors(partial / OPTIMIZER_FILE, optimizer)
        write_text_atomic(partial / STATE_FILE, json.dumps(state, indent=1))
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(final)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_directory(steps)
    for old in completed_steps(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def completed_steps(out: Path) -> list[Path]:
    """The whole step directories, oldest first."""
    steps = out / STEPS_DIR
    if not steps.is_dir():
        return []
    found = [p for p in steps.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_step(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete step directory and its state, or None."""
    for path in reversed(completed_steps(out)):
        try:
            state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("skipping unreadable step checkpoint %s", path)
            continue
        if isinstance(state, dict):
            return path, state
    return None
