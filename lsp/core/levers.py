"""The pipeline's quality levers, as data: one entry per lever, the only list of them.

A lever is a switch of the completion pipeline whose worth ``apprentice eval --trigger
invoked`` measures (``--without-lever`` / ``--with-lever`` add a row with it flipped).
Everything that names levers reads them from ``LEVERS``: the defaults of
``PipelineSettings``, the runner's variants, the command line's help and the table in
``docs/levers.md`` (``lever_table``; ``python -m lsp.core.levers`` prints it).

Adding a lever is an entry here and the code that reads it: a ``PipelineSettings`` field
whose default is ``default_of(name)`` (``pipeline`` levers) or an option of the repository
context (``context`` levers, switched in ``lsp.evaluation.runner``). Tests check that the
fields and this table agree, and that ``docs/levers.md`` shows the table as rendered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Lever:
    """One quality lever: its name, whether it is on by default, what it does, what it did."""

    name: str
    default: bool
    # What the pipeline does with the lever on, in one line.
    does: str
    # Its effect as measured by ``apprentice eval`` (the README's figures), in one line.
    measured: str
    # Where it acts: a ``PipelineSettings`` field, or an option of the repository context.
    acts_on: Literal["pipeline", "context"] = "pipeline"


LEVERS: tuple[Lever, ...] = (
    Lever(
        "line_start",
        True,
        "Complete the line from its start where the cursor sits in leading whitespace (a "
        "dedent after auto-indent; a new line above a line of code); the suggestion replaces "
        "the indentation.",
        "pass@1 0.36 with, 0.26 without (100 HumanEval single-line holes, after auto-indent).",
    ),
    Lever(
        "code_over_comment",
        True,
        "Never offer a comment alone where code follows (unless a comment is being written).",
        "pass@1 0.37 with and without (100 holes, empty line); a narrating comment becomes no "
        "suggestion (empty 0.17 with, 0.12 without). On for what it shows a user.",
    ),
    Lever(
        "suffix_names",
        False,
        "Prefer a candidate that defines the names the code below reads and nothing defines "
        "yet (a model without fill-in-the-middle never sees that code).",
        "No gain: pass@1 0.37 with and without (100 holes, empty line), for 10% more prompt "
        "tokens (extra candidates).",
    ),
    Lever(
        "unused_imports",
        True,
        "Repository context first gives the definitions of names the buffer imports but does "
        "not use yet (whoever imported them is about to use them).",
        "No measurable change (GitPython cross-file holes, same figures with and without).",
        acts_on="context",
    ),
    Lever(
        "token_healing",
        True,
        'Leave spaces typed after code out of the prompt, for the model to write ("total " '
        "would ask for a token split it rarely saw).",
        "pass@1 0.46 with, 0.21 without (150 holes, first characters typed; the second from "
        "an earlier run on the same tasks).",
    ),
    Lever(
        "suffix_body",
        True,
        "End a suggested block opener where the block's body already follows below.",
        "pass@1 0.37 with, 0.35 without (100 holes, empty line).",
    ),
    Lever(
        "suffix_syntax",
        False,
        "Prefer a candidate after which the buffer parses, where only the missing line keeps "
        "it from parsing (a block body below waiting for its opener).",
        "No gain: pass@1 0.37 with and without (100 holes, empty line), for 6% more prompt tokens.",
    ),
    Lever(
        "snippet_heads",
        True,
        "A repository snippet too long for the room left gives its first lines (a "
        "definition's signature and docstring) instead of being skipped.",
        "GitPython rest-of-line cross-file holes: empty 0.00 with, 0.24 without; edit "
        "similarity 0.64 with, 0.61 without, for about 140 more context tokens.",
    ),
    Lever(
        "whole_lines",
        True,
        "Past the time budget of an automatic request, show only the complete lines of a "
        "verified partial generation (the rest follows on the next request), never a line cut "
        "where it happened to parse.",
        "With the server's budget (--as-typed, 60 holes, empty line): pass@1 0.38 with, 0.30 "
        "without; exact 0.32 with, 0.22 without.",
    ),
    Lever(
        "complete_names",
        False,
        "Where the legal names at the cursor are all known (after `module.` or `Class.` the "
        "index reads, after `from module import`), the model may only write one of them, and "
        "after a qualifier the generation itself writes (`os.`, a class known whole) only one "
        "of its attributes (constrained decoding); elsewhere decoding stays free.",
        "No gain: HumanEval pass@1 0.35 with and without (150 holes, empty line); GitPython "
        "cross-file holes the same with and without (40); jinja2's: exact and callee the same, "
        "one empty rest-of-line suggestion fewer in 19. Unknown names 0.00 either way "
        "(verification refuses them); 1-3% a token, +78 MiB.",
    ),
)

LEVER_NAMES: tuple[str, ...] = tuple(lever.name for lever in LEVERS)
# The levers that are PipelineSettings fields (the rest are options of the context).
PIPELINE_LEVERS: tuple[str, ...] = tuple(
    lever.name for lever in LEVERS if lever.acts_on == "pipeline"
)
DEFAULT_ON: frozenset[str] = frozenset(lever.name for lever in LEVERS if lever.default)
DEFAULT_OFF: tuple[str, ...] = tuple(lever.name for lever in LEVERS if not lever.default)


def lever(name: str) -> Lever:
    """The lever called ``name``; ValueError naming the choices when there is none."""
    for entry in LEVERS:
        if entry.name == name:
            return entry
    raise ValueError(f"unknown lever {name!r}; choose from {', '.join(LEVER_NAMES)}")


def default_of(name: str) -> bool:
    """Whether the lever ``name`` is on in the default pipeline (the server's)."""
    return lever(name).default


def lever_table() -> str:
    """The levers as a Markdown table (``docs/levers.md`` holds it verbatim)."""
    rows = [
        "| lever | default | what it does | measured |",
        "|---|---|---|---|",
    ]
    for entry in LEVERS:
        where = " (repository context)" if entry.acts_on == "context" else ""
        state = "on" if entry.default else "off"
        rows.append(f"| `{entry.name}`{where} | {state} | {entry.does} | {entry.measured} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(lever_table())
