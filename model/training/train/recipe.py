"""The training recipe: one dataclass whose defaults are the shipped student's recipe.

``apprentice train`` makes one flag per field from the field's metadata (its flag, help
and metavar; the type and default come from the field itself), and ``make student`` passes
only what it exposes as variables (steps, device) besides paths and the checkpoint's name,
so the recipe is written down once, here. Changing a default changes the shipped recipe.

A resumed run must share every field but the last five with the run it continues
(``identity``): those five change how a run is watched and where and in what precision it
runs, not what it learns. ``batch_size`` is the global batch, examples per optimizer step
over all processes; the number of processes (torchrun's) is not part of the recipe, so a run
may resume with another one.
"""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The fields that may differ between a run and its resumption.
NOT_IDENTITY = ("save_every", "eval_every", "heldout_limit", "device", "precision")
PRECISIONS = ("auto", "fp32")


def _option(default: Any, help: str, *, flag: str = "", metavar: str = "") -> Any:
    """A recipe field: its default and how its command-line flag reads."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar})


@dataclass(frozen=True)
class Recipe:
    """One training run's recipe; the defaults are what ``make student`` trains."""

    steps: int = _option(1000, "optimizer steps, --batch-size examples each")
    batch_size: int = _option(
        1, "examples per optimizer step over all processes (a multiple of their number)"
    )
    learning_rate: float = _option(1e-4, "peak learning rate", flag="--lr")
    warmup_steps: int = _option(20, "linear warm-up steps", flag="--warmup")
    rank: int = _option(16, "LoRA rank")
    alpha: int = _option(32, "LoRA alpha (the adapter is scaled by alpha / rank)")
    targets: tuple[str, ...] = _option(
        ALL_PROJECTIONS,
        "projections that get LoRA weights, comma-separated",
        metavar="PROJ,...",
    )
    max_tokens: int = _option(256, "tokens per example at most, prompt and middle")
    max_middle: int = _option(96, "tokens of the middle at most")
    plain_ratio: float = _option(0.5, "share of steps trained as plain left-to-right text")
    seed: int = _option(0, "seed of the data order, the plain/FIM choice and the LoRA init")
    save_every: int = _option(100, "steps between step checkpoints (a run resumes from them)")
    eval_every: int = _option(500, "steps between held-out losses (0: before and after only)")
    heldout_limit: int = _option(64, "held-out examples each held-out loss is measured on")
    device: str = _option("cpu", "cpu, cuda or auto (CUDA when torch sees a GPU)")
    precision: str = _option("auto", "auto (bf16 autocast on a CUDA GPU, else float32) or fp32")

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        data = asdict(self)
        for key in NOT_IDENTITY:
            data.pop(key)
        data["targets"] = list(self.targets)
        if self.batch_size == 1:
            # One example a step is how every run trained before batches existed: its
            # identity stays as it was, so those runs' checkpoints still resume.
            data.pop("batch_size")
        return data

    def check(self) -> None:
        """Refuse a recipe that cannot train (ValueError, one line naming the flags)."""
        if min(self.steps, self.batch_size, self.rank, self.save_every, self.max_middle) < 1:
            raise ValueError(
                "--steps, --batch-size, --rank, --save-every and --max-middle must be at least 1"
            )
        if self.max_tokens < 16:
            raise ValueError("--max-tokens must be at least 16")
        if self.warmup_steps < 0 or self.eval_every < 0 or not 0.0 <= self.plain_ratio <= 1.0:
            raise ValueError("--warmup and --eval-every must be 0 or more, --plain-ratio 0 to 1")
        unknown = [t for t in self.targets if t not in ALL_PROJECTIONS]
        if unknown or not self.targets:
            raise ValueError(
                f"--targets {','.join(unknown) or '(none)'}: choose among "
                f"{','.join(ALL_PROJECTIONS)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision {self.precision}: choose {' or '.join(PRECISIONS)}")


def recipe_fields() -> tuple[Field[Any], ...]:
    """The recipe's fields, in the order their flags are listed."""
    return fields(Recipe)


def flag_of(item: Field[Any]) -> str:
    """The command-line flag of a recipe field: its own, or ``--`` and its dashed name."""
    return str(item.metadata.get("flag") or "--" + item.name.replace("_", "-"))
