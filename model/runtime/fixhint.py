"""The layout of a model fix: comment lines above the statement the model rewrites.

The server (lsp/core/fixing.py) asks for a fix with it and distillation
(model/training/distill/fixes.py) builds fix tasks with it, so a student learns exactly
the layout it will be asked in.
"""

from __future__ import annotations

from model.runtime.prompt import comment_syntax

# Statements longer than this are never sent for a model fix: a small model cannot rewrite
# them whole.
MAX_FIX_LINES = 30
# Lines of the original statement quoted in the prompt; longer ones are not quoted at all.
QUOTED_LINES = 20


def hint_lines(code: str, message: str, original: str, indent: str, language: str) -> list[str]:
    """Comment lines naming the problem and quoting the statement, then where the fix goes.

    A base model reads "problem, before, after" as a pattern to continue; the fix is written
    right below, at the statement's own indentation.
    """
    lines = [comment_line(f"Ruff {code}: {message}", indent, language)]
    quoted = original.split("\n")
    if len(quoted) <= QUOTED_LINES:
        lines.append(comment_line("Before:", indent, language))
        for line in quoted:
            body = line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t")
            lines.append(comment_line("    " + body.rstrip(), indent, language))
    lines.append(comment_line("After (fixed):", indent, language))
    return lines


def comment_line(text: str, indent: str, language: str) -> str:
    """``text`` as one comment line of ``language`` at ``indent``."""
    opener, closer = comment_syntax(language)
    return f"{indent}{opener} {text}{' ' + closer if closer else ''}".rstrip()
