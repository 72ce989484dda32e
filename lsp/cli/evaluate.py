"""``apprentice eval``: suggestion quality and cost through the full pipeline.

By default (``--trigger automatic``) what an editor shows at a pause, from a real server;
``--trigger invoked`` calls the pipeline directly (ablations, levers, verification). The
harness lives in ``lsp/evaluation``; this module only parses the command line and
prints. One JSON object on stdout with ``--json``, Markdown tables otherwise; progress
goes to stderr on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp.core.levers import DEFAULT_OFF, DEFAULT_ON, LEVER_NAMES

if TYPE_CHECKING:
    from lsp.evaluation.repo import RepoSource

# Options that only the invoked path has (they vary the pipeline, not the editor): with
# no --trigger they pick it, since the editor run (the default) would have to refuse them.
INVOKED_ONLY = (
    "--ablations",
    "--with-lever",
    "--without-lever",
    "--as-typed",
    "--candidates",
    "--verification",
    "--confidence-curve",
)
# model.training.holes.LINE_PLACEMENTS, spelled out: building the parser (which every
# command, serve included, does) must not import the training package.
PLACEMENT_CHOICES = ("empty", "indent", "typed")


def add_commands(commands: Any, model_commands: Any) -> None:
    """Register ``apprentice eval``."""
    parser = commands.add_parser(
        "eval",
        help="measure suggestion quality and cost (HumanEval infilling, repositories); by "
        "default what an editor shows at a pause",
    )
    parser.add_argument(
        "--suite",
        default="humaneval-single",
        choices=["humaneval-single", "humaneval-multi", "humaneval-span", "repo"],
        help="task set (default humaneval-single); 'repo' cuts holes from --repo",
    )
    parser.add_argument("--repo", help="git repository for --suite repo")
    parser.add_argument(
        "--package",
        help="--suite repo on this installed package's source, copied into a temporary "
        "git repository (e.g. git, for GitPython)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SPEC",
        help="[LABEL=]default | base | student | MODEL.gguf | BASE.gguf+LORA.gguf | "
        "CHECKPOINT_DIR | NAME[@VERSION] | http(s)://host:port/v1[#model]; repeat to "
        "compare (invoked: ratios to the first)",
    )
    parser.add_argument("--limit", type=int, default=150, help="tasks (default 150; 0: all)")
    parser.add_argument("--seed", type=int, default=0, help="task sampling seed (default 0)")
    parser.add_argument(
        "--placement",
        action="append",
        choices=list(PLACEMENT_CHOICES),
        help="where the cursor is for whole-line holes (default: empty for automatic; all "
        "three for HumanEval and indent for repositories when invoked)",
    )
    parser.add_argument(
        "--trigger",
        choices=["automatic", "typed", "invoked"],
        help="automatic (the default: what an editor shows at a pause is the headline "
        "measure): each task a freshly opened file in a real `apprentice serve`, one automatic "
        "request after the reading delay; typed: the hole's line typed from its auto-indent, 8 "
        "keystrokes a second, and what is shown at the pause; invoked: the pipeline called "
        "directly, an explicit request on a warm prompt (the default when an invoked-only "
        "option is given: "
        f"{', '.join(INVOKED_ONLY)})",
    )
    parser.add_argument(
        "--delay",
        action="append",
        type=float,
        metavar="SECONDS",
        help="automatic/typed: seconds between opening the file and the request (or the "
        "first keystroke); repeat for rows (default: 0 and 3)",
    )
    parser.add_argument(
        "--min-confidence",
        action="append",
        type=_unit_interval,
        metavar="P",
        help="automatic/typed: the server's completion.minConfidence (0..1; 0 shows every "
        "verified suggestion); repeat for rows, a server run each on the same tasks "
        "(default: the server's own default)",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="invoked: raw model, + context, + candidates and verification, everything",
    )
    parser.add_argument(
        "--without-lever",
        action="append",
        default=[],
        metavar="LEVER",
        help="invoked: add a row of the default pipeline with this lever off "
        f"({', '.join(sorted(DEFAULT_ON, key=LEVER_NAMES.index))}; docs/levers.md)",
    )
    parser.add_argument(
        "--with-lever",
        action="append",
        default=[],
        metavar="LEVER",
        help="invoked: add a row of the default pipeline with this lever on (one that is off "
        f"by default: {', '.join(DEFAULT_OFF)})",
    )
    parser.add_argument(
        "--heldout-of",
        metavar="DATASET",
        help="repo: cut holes only from the files this `apprentice distill` dataset held "
        "out (a student tuned on the repository is measured on code it never saw)",
    )
    parser.add_argument(
        "--holes-per-file",
        type=int,
        default=2,
        metavar="N",
        help="repo: holes cut from one file at most (default 2; more for a few held-out files)",
    )
    parser.add_argument("--kinds", help="repo task kinds, comma-separated (default: all)")
    parser.add_argument(
        "--cross-file-only", action="store_true", help="repo tasks needing another file only"
    )
    parser.add_argument("--no-embed", action="store_true", help="repo: lexical context only")
    parser.add_argument(
        "--as-typed",
        action="store_true",
        help="invoked: apply the server's time budget for automatic requests (default: the "
        "user asked)",
    )
    # None, not the value itself, when not given: giving one picks the invoked path.
    parser.add_argument(
        "--candidates",
        type=int,
        help="invoked: candidates to try until one verifies (default: the server's "
        "completion.candidates)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds a completion may take (default 30; automatic/typed: the server's "
        "completion.timeoutMs and 5 s, after which no answer counts as a timeout)",
    )
    parser.add_argument("--n-threads", type=int, help="llama.cpp threads (default: as the server)")
    parser.add_argument(
        "--verification",
        type=int,
        metavar="N",
        help="invoked, HumanEval: verify and run N candidates per task, to measure the "
        "verifier's precision and recall against the tests",
    )
    parser.add_argument(
        "--confidence-curve",
        action="store_true",
        help="invoked: try every candidate and score each; per row, coverage and right when "
        "shown at completion.minConfidence 0, 0.1, ..., 0.9 (replayed from this one run) and "
        "the choice among candidates (first-come, by confidence, by mean log-probability, "
        "oracle); the row's own figures are then the choice by confidence",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--output", help="also write the JSON (every task) to this file")
    parser.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation and print its tables."""
    from lsp.cli.progress import ProgressBar
    from lsp.core.settings import CompletionSettings
    from lsp.evaluation.driver import EVAL_TIMEOUT_S, EvalOptions, parse_model, run, variants_for
    from lsp.evaluation.report import ratios, table
    from model.runtime.hardware import interactive_threads
    from model.training.holes import LINE_PLACEMENTS

    trigger = choose_trigger(args)
    threads = args.n_threads or interactive_threads()
    models = [parse_model(spec, n_threads=threads) for spec in args.model or ["default"]]
    if trigger != "invoked":
        return _cmd_editor(args, trigger, models)
    candidates = CompletionSettings().candidates if args.candidates is None else args.candidates
    if args.delay:
        raise ValueError("--delay applies to --trigger automatic or typed")
    if args.min_confidence:
        # The invoked run shows the best candidate whatever its confidence (an explicit
        # request); its curve is --confidence-curve.
        raise ValueError(
            "--min-confidence applies to --trigger automatic or typed "
            "(invoked: --confidence-curve gives every operating point)"
        )
    options = EvalOptions(
        suite=args.suite,
        models=models,
        limit=args.limit or None,
        seed=args.seed,
        # An editor puts the cursor on a new line after Enter, with its auto-indent.
        placements=args.placement or (("indent",) if args.suite == "repo" else LINE_PLACEMENTS),
        timeout_s=args.timeout or EVAL_TIMEOUT_S,
        variants=variants_for(
            candidates,
            ablate=args.ablations,
            without=args.without_lever,
            repository=args.suite == "repo",
            with_=args.with_lever,
        ),
        source=repo_source(args),
        as_typed=args.as_typed,
        candidates=candidates,
        verification_samples=args.verification or 0,
        confidence_curve=args.confidence_curve,
    )
    bar = ProgressBar(unit="tasks")
    result = run(options, progress=bar)
    bar.close()
    data = {
        "suite": args.suite,
        "limit": options.limit,
        "seed": args.seed,
        "tasks": result.tasks,
        "trigger": "invoked",
        "as_typed": args.as_typed,
        **result.as_json(),
    }
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return 0
    sys.stdout.write(table(result.rows) + "\n")
    compared = ratios(result.rows)
    if compared:
        sys.stdout.write("\n" + compared + "\n")
    for model, found in result.verification.items():
        sys.stdout.write(f"\nVerification against execution ({model}):\n\n{found.table()}\n")
    if result.curves:
        _write_curves(result)
    return 0


def _write_curves(result: Any) -> None:
    """--confidence-curve's tables: the operating points, then the choice among candidates."""
    from lsp.evaluation.confidence_curve import curve_table, selection_table

    def label(key: tuple[str, str, str]) -> str:
        return " · ".join(key)

    sys.stdout.write(
        "\nShow or hold (completion.minConfidence; automatic requests), replayed from this "
        f"run:\n\n{curve_table([(label(k), v) for k, v in result.curves.items()])}\n"
    )
    sys.stdout.write(
        "\nChoosing among the candidates (right over all tasks):\n\n"
        f"{selection_table([(label(k), v) for k, v in result.selections.items()])}\n"
    )


def choose_trigger(args: argparse.Namespace) -> str:
    """The run's trigger: ``--trigger``, else automatic (what an editor shows at a pause is
    the headline measure), else invoked where an invoked-only option asks for the pipeline
    itself; that choice is said on stderr, so a table of the other kind is no surprise."""
    given = [flag for flag in INVOKED_ONLY if _given(args, flag)]
    if args.trigger is None:
        if not given:
            return "automatic"
        sys.stderr.write(f"{given[0]} measures the pipeline directly: --trigger invoked\n")
        return "invoked"
    if args.trigger != "invoked" and given:
        raise ValueError(f"{given[0]} applies to --trigger invoked only")
    return str(args.trigger)


def _unit_interval(text: str) -> float:
    """A probability threshold from the command line (0..1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0..1")
    return value


def _given(args: argparse.Namespace, flag: str) -> bool:
    """Whether ``flag`` was on the command line (store_true off, append empty, else None)."""
    value = getattr(args, flag.removeprefix("--").replace("-", "_"))
    return value is not None and value is not False and value != []


def _cmd_editor(args: argparse.Namespace, trigger: str, models: list[Any]) -> int:
    """``--trigger automatic|typed``: a real server, freshly opened files, what is shown."""
    from lsp.cli.progress import ProgressBar
    from lsp.evaluation.editor import DEFAULT_DELAYS, EditorOptions, ServerRunError, run_editor
    from lsp.evaluation.report import editor_table

    placements = args.placement or ["empty"]
    if trigger == "typed" and args.placement:
        raise ValueError("--trigger typed types from the auto-indent; --placement does not apply")
    if "typed" in placements:
        # The invoked run has a typed placement (the characters in the buffer at once).
        raise ValueError(
            "--placement typed: use --trigger typed (the characters are typed) "
            "or --trigger invoked (already in the buffer)"
        )
    options = EditorOptions(
        trigger=trigger,
        suite=args.suite,
        models=models,
        limit=args.limit or None,
        seed=args.seed,
        placements=placements,
        delays=args.delay or DEFAULT_DELAYS,
        source=repo_source(args),
        n_threads=args.n_threads,
        answer_timeout_s=args.timeout,
        min_confidences=args.min_confidence or (None,),
    )
    bar = ProgressBar(unit="tasks")
    try:
        result = run_editor(options, progress=bar)
    except ServerRunError as error:
        bar.close()
        tail = error.log.read_text(errors="replace")[-3000:] if error.log.exists() else ""
        sys.stderr.write(f"apprentice eval: {error}\n--- server stderr, last lines ---\n{tail}\n")
        return 2
    bar.close()
    data = {
        "suite": args.suite,
        "limit": options.limit,
        "seed": args.seed,
        "tasks": result.tasks,
        "trigger": trigger,
        "delays_s": list(options.delays),
        "min_confidences": list(options.min_confidences),
        **result.as_json(),
    }
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(editor_table(result.rows) + "\n")
    return 0


def repo_source(args: argparse.Namespace) -> RepoSource:
    """``--suite repo``'s options, as both runs take them."""
    from lsp.evaluation.repo import RepoSource

    return RepoSource(
        repo=Path(args.repo) if args.repo else None,
        package=args.package,
        heldout_of=Path(args.heldout_of) if args.heldout_of else None,
        holes_per_file=args.holes_per_file,
        kinds=tuple(args.kinds.split(",")) if args.kinds else (),
        cross_file_only=args.cross_file_only,
        embed=not args.no_embed,
    )
