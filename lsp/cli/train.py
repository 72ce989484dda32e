"""``apprentice distill`` and ``apprentice train``: verified training data and a LoRA student.

Thin wrappers around ``model.training.distill.run`` and ``model.training.train.run``;
torch, transformers and llama.cpp are imported only inside the commands. Every failure
is one line and exit status 1 (``lsp.cli.main``); ``train`` without the ``train`` extra
(torch, transformers, peft) says how to install it and exits 2. ``distill`` needs no extra.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from lsp.cli.common import print_json, say
from lsp.cli.progress import ProgressBar

# Threads asking the teacher at once; more would only queue at any real server.
MAX_CONCURRENCY = 64


def add_commands(commands: Any, model_commands: Any) -> None:
    """Register ``distill`` and ``train``."""
    distill = commands.add_parser("distill", help="verified FIM training data from repositories")
    distill.add_argument("repos", nargs="+", metavar="REPO", help="repository folders")
    distill.add_argument("-o", "--output", required=True, help="dataset directory")
    distill.add_argument(
        "--teacher",
        default="none",
        help="none (ground truth only, the default), self or default (the default model, "
        "best-of-N), base, student, a GGUF file (MODEL+ADAPTER.gguf with an adapter), a "
        "checkpoint directory or installed NAME[@VERSION], or an OpenAI-compatible server "
        "http(s)://host[:port][/v1][#model-id]",
    )
    distill.add_argument(
        "--remote-model", help="model id to ask a remote teacher for (or URL#model-id)"
    )
    distill.add_argument("-k", type=int, default=2, help="teacher samples per task (default 2)")
    distill.add_argument(
        "--temperature", type=float, default=0.8, help="for samples after the first"
    )
    distill.add_argument("--teacher-timeout", type=float, default=30.0, help="seconds per sample")
    distill.add_argument("--retries", type=int, default=3, help="tries after a timeout or error")
    distill.add_argument(
        "--rate", type=float, default=0.0, help="at most this many teacher requests per second"
    )
    distill.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="teacher requests in flight at once (default 1): faster with a server that runs "
        "requests together (vLLM; llama.cpp's llama-server --parallel N), not with python -m "
        "llama_cpp.server, which answers one at a time and, unless started with "
        "--interrupt_requests False, cuts an answer short when another request comes. "
        "Results are kept in task order whatever N",
    )
    distill.add_argument("--fim-template", help="the teacher's FIM family (default: detected)")
    distill.add_argument("--heldout", type=float, default=0.2, help="share of files held out")
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--no-tests", action="store_true", help="do not run repository tests")
    distill.add_argument("--max-files", type=int, help="Python files per repository at most")
    distill.add_argument(
        "--per-file",
        default="holes=8,fix=2",
        help="tasks per file: holes (every kind the evaluation cuts) and fixes of ruff "
        "findings (default holes=8,fix=2)",
    )
    distill.add_argument("--licence", help="licence of the sources (default: read from them)")
    distill.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out files matching this gitignore-style pattern (repeatable)",
    )
    distill.add_argument("--json", action="store_true", help="print the dataset card as JSON")
    distill.set_defaults(handler=cmd_distill)

    train = commands.add_parser("train", help="train a LoRA FIM student on a distilled dataset")
    train.add_argument("dataset", help="dataset directory from apprentice distill")
    train.add_argument(
        "--base",
        help="the model to train on: a GGUF file, base (the embedded Gemma 3 270M), a "
        "checkpoint (directory or installed NAME[@VERSION]), student, MODEL+ADAPTER.gguf, or "
        "default (the default); a tuned model (one adapter) is continued. Architectures: "
        "llama (CodeLlama, DeepSeek-Coder, Mistral, Codestral), qwen2, starcoder2, gemma2, "
        "gemma3, phi3",
    )
    train.add_argument("-o", "--output", required=True, help="training output directory")
    train.add_argument(
        "--threads", type=int, help="CPU threads (default: one per core; fewer on a busy machine)"
    )
    train.add_argument("--name", default="apprentice-student", help="checkpoint name")
    train.add_argument("--version", default="0.1.0", help="checkpoint version")
    train.add_argument("--sign-key", help="sign the checkpoint with this private key")
    train.add_argument("--no-pack", action="store_true", help="do not pack a checkpoint")
    train.add_argument("--json", action="store_true", help="print the summary as JSON")
    train.set_defaults(handler=cmd_train)
    # The recipe's flags come from model.training.train.recipe, added when the command is
    # used: building the parser (for ``serve`` too) imports nothing of training.
    train.__class__ = _TrainParser


class _TrainParser(argparse.ArgumentParser):
    """The ``train`` parser, which adds one flag per recipe field before its first use."""

    _recipe_added = False

    def _add_recipe(self) -> None:
        if not self._recipe_added:
            self._recipe_added = True
            add_recipe_options(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._add_recipe()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_recipe()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_recipe()
        return super().format_help()


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """One flag per field of the training recipe: its type, default, help and metavar."""
    from typing import get_type_hints

    from model.training.train.recipe import Recipe, flag_of, recipe_fields

    group = parser.add_argument_group("recipe (the defaults are the shipped student's)")
    hints = get_type_hints(Recipe)
    for item in recipe_fields():
        kind = hints[item.name]
        default = item.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        flag = flag_of(item)
        group.add_argument(
            flag,
            dest=item.name,
            type=_comma_list if kind == tuple[str, ...] else kind,
            default=default,
            metavar=item.metadata.get("metavar") or flag.lstrip("-").replace("-", "_").upper(),
            help=f"{item.metadata['help']} (default {shown})",
        )


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _limits(text: str) -> Any:
    from model.training.distill.tasks import TaskLimits

    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, count = part.partition("=")
        if not sep or kind not in ("holes", "fix") or not count.isdigit():
            raise ValueError(f"--per-file {text!r}: expected holes=N,fix=N")
        values[kind] = int(count)
    return TaskLimits(**values)


def _concurrency(args: argparse.Namespace, spec: Any) -> int:
    """--concurrency, checked; 1 for a teacher in this process, which answers one at a time."""
    wanted = int(args.concurrency)
    if not 1 <= wanted <= MAX_CONCURRENCY:
        raise ValueError(f"--concurrency {wanted}: expected 1 to {MAX_CONCURRENCY}")
    if wanted > 1 and spec.url is None and spec.kind != "none":
        # Its requests would wait for each other, and the wait counts against
        # --teacher-timeout: more threads only bring timeouts.
        say(
            f"note: the teacher {spec.shown} runs in this process and answers one request at "
            f"a time; --concurrency {wanted} ignored (it helps with a server that batches)"
        )
        return 1
    return wanted


def _teacher(args: argparse.Namespace, spec: Any = None) -> Any:
    """The Teacher the --teacher option names (None for ground truth only); ``spec`` is that
    option parsed, when the caller has it."""
    from model.checkpoints.spec import TEACHER, parse_model_spec
    from model.training.distill.teacher import Teacher, TeacherSettings

    spec = spec or parse_model_spec(args.teacher, allow=TEACHER)
    if spec.kind == "none":
        return None
    settings = TeacherSettings(
        k=args.k,
        temperature=args.temperature,
        timeout_s=args.teacher_timeout,
        retries=args.retries,
        min_interval_s=1.0 / args.rate if args.rate > 0 else 0.0,
        fim_template=args.fim_template,
    )
    if spec.url is not None:
        from model.runtime.remote import RemoteBackend

        backend: Any = RemoteBackend(
            spec.url,
            model=spec.remote_model or args.remote_model,
            connect_timeout=min(5.0, args.teacher_timeout),
            read_timeout=args.teacher_timeout,
            request_timeout=args.teacher_timeout,
        )
    else:
        from model.checkpoints.checkpoint import resolve_model
        from model.factory import BackendSettings, create_backend
        from model.runtime.hardware import interactive_threads

        # One core is left free: llama.cpp's threads stall together when one is pre-empted
        # (a 2-core machine generated 32 tokens in 30 s with 2 threads, 1.6 s with 1).
        backend = create_backend(
            BackendSettings(resolved=resolve_model(spec), n_threads=interactive_threads())
        )
    return Teacher(backend, spec.shown, settings)


def _distill_line(report: Any) -> str:
    """Distillation's progress line: files, tasks, speed, requests in flight, time left."""
    eta = f" ETA {report.eta_s:.0f}s" if report.eta_s is not None else ""
    return (
        f"distill {report.files_done}/{report.files_total} files {report.tasks_done} tasks "
        f"{report.tasks_per_s:.1f} tasks/s {report.in_flight} in flight{eta}"
    )


def _step_line(report: Any) -> str:
    """A training step as its progress line: loss, held-out loss, speed, time left."""
    held = f" held-out {report.heldout_loss:.3f}" if report.heldout_loss is not None else ""
    return (
        f"step {report.step}/{report.steps} loss {report.loss:.3f}{held} "
        f"{report.tokens_per_s:.0f} tok/s ETA {report.eta_s:.0f}s"
    )


def cmd_distill(args: argparse.Namespace) -> int:
    """``apprentice distill REPO... -o DATASET``: tasks, teacher samples, verified, split."""
    from model.checkpoints.spec import TEACHER, parse_model_spec
    from model.training.distill.run import DistillSettings, distill

    settings = DistillSettings(
        limits=_limits(args.per_file),
        heldout_ratio=args.heldout,
        seed=args.seed,
        run_tests=not args.no_tests,
        max_files=args.max_files,
        licence=args.licence,
        excludes=tuple(args.exclude),
    )
    spec = parse_model_spec(args.teacher, allow=TEACHER)
    concurrency = _concurrency(args, spec)
    teacher = _teacher(args, spec)
    progress = ProgressBar(unit="files")
    try:
        card = distill(
            [Path(r) for r in args.repos],
            Path(args.output),
            teacher,
            settings,
            concurrency=concurrency,
            progress=lambda report: progress.line(
                "distill", report.files_done, report.files_total, _distill_line(report)
            ),
        )
    finally:
        progress.close()
        if teacher is not None:
            teacher.backend.close()
    if args.json:
        print_json(card)
    else:
        counts = card["counts"]
        say(
            f"{args.output}: {counts['train_examples']} training and "
            f"{counts['heldout_examples']} held-out examples from {counts['tasks']} tasks; "
            f"teacher kept {counts['teacher_kept']} of {counts['teacher_samples']} samples"
        )
    return 0


# What ``apprentice train`` imports that the server does not: the ``train`` extra.
TRAIN_EXTRA = ("torch", "transformers", "peft", "safetensors", "gguf")
TRAIN_EXTRA_FIX = "pip install 'apprentice[train]' (from a checkout: pip install -e '.[train]')"


def missing_train_extra() -> str | None:
    """The first package of the ``train`` extra that cannot be imported, or None."""
    for name in TRAIN_EXTRA:
        try:
            importlib.import_module(name)
        except (ImportError, OSError):  # OSError: torch installed without its shared libraries
            return name
    return None


def cmd_train(args: argparse.Namespace) -> int:
    """``apprentice train DATASET -o DIR``: LoRA, export to llama.cpp, agreement, checkpoint."""
    missing = missing_train_extra()
    if missing is not None:
        say(
            f"apprentice: train needs the train extra ({missing} is not installed); "
            f"install it: {TRAIN_EXTRA_FIX}"
        )
        return 2
    from model.checkpoints.spec import TRAINING_BASE, parse_model_spec
    from model.training.train.recipe import Recipe, recipe_fields
    from model.training.train.run import PackOptions, train_student

    settings = Recipe(**{item.name: getattr(args, item.name) for item in recipe_fields()})
    settings.check()
    base = parse_model_spec(args.base, allow=TRAINING_BASE)  # refused before any loading
    pack = None if args.no_pack else PackOptions(args.name, args.version, sign_key=args.sign_key)
    progress = ProgressBar(unit="steps")
    try:
        summary = train_student(
            Path(args.dataset),
            base,
            Path(args.output),
            settings,
            progress=lambda step: progress.line("train", step.step, step.steps, _step_line(step)),
            say=say,
            pack=pack,
            threads=args.threads,
        )
    finally:
        progress.close()
    if not summary:  # another process of a torchrun launch: rank 0 reports
        return 0
    if args.json:
        print_json(summary)
    else:
        agreement = summary["agreement"]
        say(
            f"{args.output}: trained {summary['steps']} steps, loss {summary['train_loss']}, "
            f"held-out loss {summary['heldout_loss_before']} -> {summary['heldout_loss_after']}; "
            f"llama.cpp agrees on {agreement['decisive_agreement']:.0%} of "
            f"{agreement['decisive']} decisive positions ({agreement['agreement']:.0%} of all "
            f"{agreement['positions']})"
            + (f"; checkpoint {summary['checkpoint']}" if "checkpoint" in summary else "")
        )
    return 0
