"""The GPU student run: ten times the CPU recipe's tokens on CUDA, evaluated against the base.

One prepared script for a machine with an NVIDIA GPU and this project installed (``make
setup`` there, with a CUDA build of torch). It runs the whole chain with the real commands:

1. copies the Python standard library out of the interpreter (as ``make student`` does) and
   distils it with ``--teacher none`` (ground-truth holes, 24 per file instead of 8, so ten
   times the examples exist without repeating each one ten times);
2. trains the embedded Gemma 3 270M's student with the shipped recipe but a global batch of
   8 and 1,250 steps: 10,000 examples, ten times the CPU recipe's 1,000 (``--device cuda``;
   under ``torchrun`` on every GPU when the machine has more than one);
3. evaluates the base and the new student on every HumanEval single-line task (164, cursor
   on the emptied line, explicit requests: the comparison the shipped student's EVAL.md
   makes), and
4. writes the figures (tokens/s, minutes, pass@1 of both, the device) into the run's
   ``training.json`` under ``gpu_run`` and into ``GPU_RUN.md`` beside it: the student's card.

    python -m bench.gpu_student --work /scratch/apprentice-gpu

Every step resumes: the dataset is kept, training resumes from its step checkpoints, and a
finished evaluation is read back instead of run again. ``--smoke`` runs the same chain at a
toy size (a handful of steps and tasks, on whatever device there is) to check the script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

CPU_RECIPE_EXAMPLES = 1000  # make student: 1,000 steps of one example
BATCH = 8
STEPS = 1250  # 1,250 x 8 = 10,000 examples: ten times the CPU recipe
HOLES_PER_FILE = 24
SKIPPED = ("site-packages", "__pycache__", "*.pyc", "test", "tests", "idlelib", "lib2to3",
           "turtledemo", "config-*")  # fmt: skip


def apprentice(*args: str, launcher: list[str] | None = None) -> None:
    """Run one ``apprentice`` command with this interpreter; stop the script if it fails."""
    command = [*(launcher or [sys.executable]), "-m", "lsp.cli", *args]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise SystemExit(f"gpu_student: {' '.join(args[:1])} failed (exit {done.returncode})")


def gpus() -> int:
    """How many CUDA devices torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_name() -> str:
    """The first GPU's name, or ``cpu``."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def launcher_for(count: int) -> list[str]:
    """torchrun over every GPU when there are several; the plain interpreter otherwise."""
    if count <= 1:
        return [sys.executable]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={count}",
    ]


def summarize(training: dict[str, Any], evaluation: dict[str, Any], device: str) -> dict[str, Any]:
    """The figures the card records: training cost and pass@1 of the base and the student."""
    seconds = float(training.get("seconds") or 0.0)
    tokens = int(training.get("tokens") or 0)
    rows = {str(r["model"]): r for r in evaluation.get("rows", [])}
    base, student = rows.get("base", {}), rows.get("gpu-student", {})
    settings = training.get("settings", {})
    examples = int(settings.get("steps", 0)) * int(settings.get("batch_size", 1))
    return {
        "device": device,
        "examples": examples,
        "examples_vs_cpu_recipe": round(examples / CPU_RECIPE_EXAMPLES, 2),
        "tokens": tokens,
        "minutes": round(seconds / 60, 1),
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "heldout_loss_before": training.get("heldout_loss_before"),
        "heldout_loss_after": training.get("heldout_loss_after"),
        "eval_tasks": student.get("tasks"),
        "pass_at_1_base": base.get("pass_at_1"),
        "pass_at_1_student": student.get("pass_at_1"),
        "exact_base": base.get("exact"),
        "exact_student": student.get("exact"),
    }


def card(figures: dict[str, Any]) -> str:
    """``GPU_RUN.md``: the figures as a short Markdown section."""

    def shown(value: Any) -> str:
        if value is None:
            return "n/a"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [
        "# GPU run of the student",
        "",
        f"Trained on {figures['device']}: {figures['examples']:,} examples "
        f"({figures['examples_vs_cpu_recipe']}x the CPU recipe), {figures['tokens']:,} tokens "
        f"in {figures['minutes']} min ({shown(figures['tokens_per_s'])} tokens/s). Held-out "
        f"loss {shown(figures['heldout_loss_before'])} -> {shown(figures['heldout_loss_after'])}.",
        "",
        f"HumanEval single-line, cursor on the emptied line, {shown(figures['eval_tasks'])} tasks:",
        "",
        "| model | pass@1 | exact |",
        "|---|---|---|",
        f"| base | {shown(figures['pass_at_1_base'])} | {shown(figures['exact_base'])} |",
        f"| student | {shown(figures['pass_at_1_student'])} | {shown(figures['exact_student'])} |",
        "",
    ]
    return "\n".join(lines)


def copy_stdlib(target: Path) -> Path:
    """The standard library's sources, copied out (an interpreter inside a git checkout would
    otherwise be walked as that checkout)."""
    source = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SKIPPED))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("gpu-student-work"))
    parser.add_argument("--smoke", action="store_true", help="toy sizes, any device")
    args = parser.parse_args(argv)
    count = gpus()
    if count == 0 and not args.smoke:
        sys.stderr.write("gpu_student: torch sees no CUDA device; run it on a GPU machine\n")
        return 2
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    steps, batch, holes, limit = (3, 2, 2, 3) if args.smoke else (STEPS, BATCH, HOLES_PER_FILE, 0)
    batch = max(batch, count) // max(count, 1) * max(count, 1)  # divisible by the processes
    dataset, run = work / "dataset", work / f"train-{steps}x{batch}"
    started = time.monotonic()
    if not (dataset / "card.json").is_file():
        apprentice(
            "distill", str(copy_stdlib(work / "cpython-stdlib")), "-o", str(dataset),
            "--teacher", "none", "--per-file", f"holes={holes},fix=0", "--heldout", "0.1",
            "--seed", "0", "--licence", "PSF-2.0", "--no-tests",
        )  # fmt: skip
    apprentice(
        "train", str(dataset), "-o", str(run), "--steps", str(steps),
        "--batch-size", str(batch), "--device", "cuda" if count else "cpu",
        "--name", "apprentice-gemma3-270m-stdlib-gpu", "--version", "0.3.0",
        launcher=launcher_for(count),
    )  # fmt: skip
    evaluation_file = run / "eval.json"
    if not evaluation_file.is_file():
        apprentice(
            "eval", "--trigger", "invoked", "--suite", "humaneval-single",
            "--limit", str(limit), "--placement", "empty", "--model", "base",
            "--model", f"gpu-student={run / 'checkpoint'}", "--output", str(evaluation_file),
        )  # fmt: skip
    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    figures = summarize(training, json.loads(evaluation_file.read_text(encoding="utf-8")),
                        device_name())  # fmt: skip
    training["gpu_run"] = figures
    (run / "training.json").write_text(json.dumps(training, indent=2) + "\n", encoding="utf-8")
    (run / "GPU_RUN.md").write_text(card(figures), encoding="utf-8")
    print(card(figures))
    print(f"gpu_student: done in {(time.monotonic() - started) / 60:.1f} min; {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
