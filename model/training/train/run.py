"""``apprentice train``: a LoRA student from a distilled dataset, exported to llama.cpp, checked.

The output directory holds the step checkpoints (``steps/``), the final adapter
(``adapter.safetensors`` for torch, ``adapter.gguf`` for llama.cpp), the per-step log
(``train_log.jsonl``) and ``training.json`` (recipe, base, FIM layout, dataset, losses,
agreement). The run succeeds only when llama.cpp with the adapter agrees with the trained
model. Any base of ``arch.ARCHITECTURES`` trains, each in its own FIM layout
(``fimformat.choose_layout``), which the packed checkpoint declares; a tuned base (a
checkpoint with one adapter) is continued from its adapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from model.checkpoints.atomic_io import write_text_atomic
from model.checkpoints.spec import ModelSpec
from model.training.distill.dataset import TRAIN_FILE, Example, load_dataset
from model.training.train.agree import Agreement, check_agreement
from model.training.train.arch import ARCHITECTURES
from model.training.train.base import BaseModel, TrainingError, describe_base, load_base
from model.training.train.export import adapter_tensors, read_adapter, write_adapter_gguf
from model.training.train.fimformat import Tokens
from model.training.train.loop import Progress, attach_lora, train_lora
from model.training.train.parallel import start_world
from model.training.train.peft_layout import PEFT_FOLDER, write_peft_adapter
from model.training.train.recipe import Recipe
from model.training.train.state import lora_parameters, save_tensors

logger = logging.getLogger(__name__)

ADAPTER_GGUF = "adapter.gguf"
ADAPTER_SAFETENSORS = "adapter.safetensors"
TRAIN_LOG = "train_log.jsonl"
SUMMARY = "training.json"
CHECKPOINT_DIR = "checkpoint"

Say = Callable[[str], None]


def dataset_id(directory: Path) -> str:
    """The sha256 of the training split: a resumed run must train on the same data."""
    return hashlib.sha256((Path(directory) / TRAIN_FILE).read_bytes()).hexdigest()


def check_base_fits(card: dict[str, Any], base: BaseModel) -> None:
    """Refuse a base other than the one a dataset was distilled for, where it names one.

    The examples are text, so any base can learn them in its own layout; only a dataset
    bound to a base (``base_sha256`` on its card) is kept to that base.
    """
    bound = card.get("base_sha256")
    if bound and bound != base.sha256:
        raise TrainingError(
            f"the dataset was distilled for base {str(bound)[:12]}…; "
            f"{base.path.name} is {base.sha256[:12]}…"
        )


def resolve_device(device: str) -> str:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda: torch sees no CUDA device here")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise TrainingError(f"unknown device {device!r}: choose cpu, cuda or auto")
    return device


def train_student(
    dataset: Path,
    base_spec: ModelSpec | str | None,
    out: Path,
    settings: Recipe,
    *,
    progress: Progress | None = None,
    say: Say | None = None,
    agreement_examples: int = 16,
    pack: PackOptions | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train, export and check one student; returns the ``training.json`` summary.

    ``base_spec`` names the base (``--base``: ``model.checkpoints.spec``; None: the
    default). ``threads`` sets torch's CPU threads (default: torch's own choice, one per core).
    """
    note = say or (lambda message: logger.info("%s", message))
    card, train, heldout = load_dataset(dataset)
    base = describe_base(base_spec)
    check_base_fits(card, base)
    modules = ARCHITECTURES[base.architecture].target_modules(settings.targets)
    if not modules:
        raise TrainingError(
            f"--targets {','.join(settings.targets)}: a {base.architecture} base has none of "
            "those projections"
        )
    with start_world(resolve_device(settings.device)) as world:
        world.share(settings.batch_size)  # an uneven batch is refused before the base loads
        if not world.is_main:  # rank 0 alone speaks, exports, checks and packs
            note, progress = _quiet, None
        if threads:
            import torch

            torch.set_num_threads(threads)
        settings = replace(settings, device=world.device)  # cuda:LOCAL_RANK under torchrun
        note(f"loading {base.path.name} into transformers (dequantized; about a minute on a CPU)")
        model, tokenizer = load_base(base, world.device)
        try:
            tokens = Tokens(tokenizer, base.layout, base.marker_ids)
        except ValueError as error:
            raise TrainingError(f"{base.path.name}: {error}") from None
        note(f"FIM layout: {base.layout.family} (the middle ends with {base.layout.end})")
        peft_model = attach_lora(model, replace(settings, targets=modules))
        if base.adapter is not None:
            start_from_adapter(peft_model, base, settings)
        processes = f", {world.size} processes" if world.size > 1 else ""
        note(
            f"training {settings.steps} steps of {settings.batch_size} on {len(train)} examples "
            f"({world.device}{processes}); held-out loss on "
            f"{min(len(heldout), settings.heldout_limit)} examples first, then every "
            f"{settings.eval_every or settings.steps} steps"
        )
        identity = run_identity(base, dataset, settings)
        result = train_lora(
            peft_model, tokens, train, heldout, out, settings, identity, progress, world=world
        )
        # No barrier after training: every collective has finished, and ranks waiting
        # while rank 0 runs the agreement check could reach NCCL's timeout.
        if not world.is_main:
            return {}
        summary = _export_and_check(
            peft_model, tokens, base, card, (dataset, out), (train, heldout), settings, result,
            say=note, agreement_examples=agreement_examples,
        )  # fmt: skip
        summary["processes"] = world.size
    write_text_atomic(Path(out) / SUMMARY, json.dumps(summary, indent=2) + "\n")
    if pack is not None:
        summary["checkpoint"] = pack_student(Path(out), base, card, pack)
        write_text_atomic(Path(out) / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def _export_and_check(
    peft_model: Any,
    tokens: Tokens,
    base: BaseModel,
    card: dict[str, Any],
    paths: tuple[Path, Path],
    examples: tuple[list[Example], list[Example]],
    settings: Recipe,
    result: Any,
    *,
    say: Say,
    agreement_examples: int,
) -> dict[str, Any]:
    """Write the adapter in every layout, check llama.cpp against torch; the summary.

    Raises when llama.cpp with the exported adapter does not reproduce the trained model
    (``training.json`` is still written, with the agreement that failed).
    """
    dataset, out = paths
    train, heldout = examples
    out = Path(out)
    lora = lora_parameters(peft_model)
    save_tensors(out / ADAPTER_SAFETENSORS, lora)
    write_adapter_gguf(
        out / ADAPTER_GGUF,
        adapter_tensors(lora, base),
        settings.alpha,
        base,
        name=f"{base.name} apprentice student",
    )
    write_peft_adapter(peft_model, out / PEFT_FOLDER, base.name)
    write_text_atomic(out / TRAIN_LOG, "".join(json.dumps(e) + "\n" for e in result.log))
    probe = _agreement_set(heldout, train, agreement_examples)
    say(f"checking llama.cpp with the adapter against the trained model ({len(probe)} examples)")
    agreement = check_agreement(
        peft_model, tokens, probe, base.path, out / ADAPTER_GGUF, max_tokens=settings.max_tokens
    )
    summary = _summary(card, base, dataset, settings, settings.device, result, agreement)
    if not agreement.ok:
        write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
        raise TrainingError(
            f"llama.cpp with the exported adapter agrees with the trained model on "
            f"{agreement.decisive_agreement:.0%} of {agreement.decisive} decisive positions "
            f"(needs {agreement.as_json()['required']:.0%}); {out / ADAPTER_GGUF} is not usable"
        )
    return summary


def _quiet(message: str) -> None:
    """What a process other than rank 0 says: only to the debug log."""
    logger.debug("%s", message)


@dataclass(frozen=True)
class PackOptions:
    """How the trained adapter is packed as a team checkpoint (``model.checkpoints.pack``)."""

    name: str = "apprentice-student"
    version: str = "0.1.0"
    directory: str = CHECKPOINT_DIR  # inside the training output unless absolute
    link: bool = True
    sign_key: str | None = None


def pack_student(out: Path, base: BaseModel, card: dict[str, Any], options: PackOptions) -> str:
    """Pack the base and ``adapter.gguf`` bound to the base's sha256, declaring the FIM family."""
    from model.checkpoints.pack import pack_checkpoint

    directory = out / options.directory
    licences = sorted({str(s.get("licence", "unknown")) for s in card.get("sources", [])})
    packed = pack_checkpoint(
        directory,
        base.path,
        name=options.name,
        version=options.version,
        adapters=[(out / ADAPTER_GGUF, 1.0)],
        peft_adapter=out / PEFT_FOLDER,
        fim=base.layout.pack_fim(),
        fim_stop_tokens=base.layout.template.stop_tokens,
        licence=f"training data: {', '.join(licences)}; the base model's own licence applies",
        description=f"LoRA student of {base.name} trained by apprentice train",
        provenance={
            "dataset_sources": [str(s.get("name")) for s in card.get("sources", [])],
            "training": SUMMARY,
        },
        sign_key=options.sign_key,
        link=options.link,
    )
    return str(packed.directory)


def run_identity(base: BaseModel, dataset: Path, settings: Recipe) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: the base, the starting
    adapter (when continuing a tuned checkpoint), the data, the FIM layout and the recipe."""
    identity: dict[str, Any] = {
        "base_sha256": base.sha256,
        "dataset": dataset_id(dataset),
        "format": base.layout.family,
        "settings": settings.identity(),
    }
    if base.adapter is not None:
        identity["start_adapter_sha256"] = base.adapter_sha256
    return identity


def start_from_adapter(peft_model: Any, base: BaseModel, settings: Recipe) -> None:
    """Put the tuned checkpoint's adapter into the fresh LoRA: the run continues it."""
    import torch

    assert base.adapter is not None
    params = lora_parameters(peft_model)
    weights, alpha = read_adapter(base.adapter, base, params)
    if alpha != float(settings.alpha):
        raise TrainingError(
            f"{base.adapter.name} was trained with LoRA alpha {alpha:g}; continue it with "
            f"--alpha {alpha:g}"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name].to(param.device, param.dtype))
    logger.info("continuing %s (sha256 %s…)", base.adapter.name, base.adapter_sha256[:12])


def _agreement_set(heldout: list[Example], train: list[Example], count: int) -> list[Example]:
    """Held-out examples for the check (training ones only when none are held out)."""
    return (heldout or train)[:count]


def _summary(
    card: dict[str, Any],
    base: BaseModel,
    dataset: Path,
    settings: Recipe,
    device: str,
    result: Any,
    agreement: Agreement,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "format": base.layout.family,
        "base": {
            "name": base.name,
            "file": base.path.name,
            "sha256": base.sha256,
            "architecture": base.architecture,
        },
        "dataset": {
            "path": str(dataset),
            "sha256": dataset_id(dataset),
            "counts": card.get("counts", {}),
            "sources": card.get("sources", []),
        },
        "settings": {**asdict(settings), "targets": list(settings.targets), "device": device},
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "train_loss": _round(result.train_loss),
        "heldout_loss_before": _round(result.heldout_loss_before),
        "heldout_loss_after": _round(result.heldout_loss_after),
        "seconds": round(result.seconds, 1),
        "tokens": result.tokens,
        "agreement": agreement.as_json(),
        "adapter": ADAPTER_GGUF,
        "peft": PEFT_FOLDER,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if base.adapter is not None:
        summary["continued"] = {"adapter": base.adapter.name, "sha256": base.adapter_sha256}
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
