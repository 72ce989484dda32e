"""Markdown tables of evaluation rows: quality, cost, and ratios to the first model; and
what an editor shows (``--trigger automatic|typed``): shown rate, right when shown, time
to show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsp.evaluation.runner import Summary
from lsp.evaluation.shown import ShownSummary


@dataclass(frozen=True)
class Row:
    """One line of the table: which model, which pipeline, which placement."""

    model: str
    variant: str
    placement: str
    summary: Summary
    no_sandbox: bool = False  # the tasks have tests, but no sandbox could run them


@dataclass(frozen=True)
class EditorRow:
    """One line of the editor table: which model, how the request came, after what delay."""

    model: str
    trigger: str  # automatic | typed
    placement: str
    delay_s: float  # the reading delay between opening the file and the request (or typing)
    summary: ShownSummary
    no_sandbox: bool = False  # the tasks have tests, but no sandbox could run them


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


NO_SANDBOX = "pass@1 not measured: execution scoring is unavailable here (no sandbox)"


def _pass_rate(value: float | None, no_sandbox: bool) -> str:
    return "n/a" if no_sandbox else _rate(value)


def _footnote(rows: Sequence[Row] | Sequence[EditorRow]) -> list[str]:
    """The line saying why pass@1 reads n/a, where it does."""
    return ["", NO_SANDBOX] if any(row.no_sandbox for row in rows) else []


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return "-"
    if base == 0:
        return "-" if value == 0 else "inf"
    return f"{value / base:.2f}x"


def table(rows: Sequence[Row]) -> str:
    """Quality and cost per row."""
    head = (
        "| model | pipeline | placement | tasks | pass@1 | exact | edit sim | ident F1 "
        "| callee (cross-file) | unknown names | empty | p50 ms | p95 ms | prompt tok "
        "| gen tok | tok/s | peak RSS MiB | errors |"
    )
    lines = [head, "|" + "---|" * 18]
    for row in rows:
        s = row.summary
        lines.append(
            f"| {row.model} | {row.variant} | {row.placement} | {s.tasks} "
            f"| {_pass_rate(s.pass_at_1, row.no_sandbox)} "
            f"| {s.exact:.2f} | {s.edit_similarity:.2f} | {s.identifier_f1:.2f} "
            f"| {_rate(s.callee_named)} | {s.unknown_symbols:.2f} | {s.empty:.2f} "
            f"| {s.latency_p50_ms:.0f} | {s.latency_p95_ms:.0f} | {s.prompt_tokens:.0f} "
            f"| {s.generated_tokens:.1f} | {s.tokens_per_s:.1f} "
            f"| {'-' if s.peak_rss_mb is None else f'{s.peak_rss_mb:.0f}'} | {s.errors} |"
        )
    return "\n".join(lines + _footnote(rows))


def ratios(rows: Sequence[Row]) -> str:
    """Each model's quality and cost as ratios to the first model's, row by row."""
    models = list(dict.fromkeys(row.model for row in rows))
    if len(models) < 2:
        return ""
    base = {(r.variant, r.placement): r.summary for r in rows if r.model == models[0]}
    head = (
        f"| model (vs {models[0]}) | pipeline | placement | pass@1 | exact | edit sim "
        "| callee | p50 latency | p95 latency | tok/s | peak RSS |"
    )
    lines = [head, "|" + "---|" * 11]
    for row in rows:
        if row.model == models[0]:
            continue
        b = base.get((row.variant, row.placement))
        if b is None:
            continue
        s = row.summary
        lines.append(
            f"| {row.model} | {row.variant} | {row.placement} "
            f"| {_ratio(s.pass_at_1, b.pass_at_1)} | {_ratio(s.exact, b.exact)} "
            f"| {_ratio(s.edit_similarity, b.edit_similarity)} "
            f"| {_ratio(s.callee_named, b.callee_named)} "
            f"| {_ratio(s.latency_p50_ms, b.latency_p50_ms)} "
            f"| {_ratio(s.latency_p95_ms, b.latency_p95_ms)} "
            f"| {_ratio(s.tokens_per_s, b.tokens_per_s)} | {_ratio(s.peak_rss_mb, b.peak_rss_mb)} |"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def editor_table(rows: Sequence[EditorRow]) -> str:
    """What a person saw at the pause, per row: pass@1 and exact are over all tasks."""
    head = (
        "| model | trigger | placement | delay s | tasks | shown | pass@1 | exact | edit sim "
        "| right when shown | show p50 ms | show p95 ms | empty | timeouts | errors "
        "| requests | cancels | callee (cross-file) |"
    )
    lines = [head, "|" + "---|" * 18]
    for row in rows:
        s = row.summary
        lines.append(
            f"| {row.model} | {row.trigger} | {row.placement} | {row.delay_s:g} | {s.tasks} "
            f"| {s.shown:.2f} | {_pass_rate(s.pass_at_1, row.no_sandbox)} | {s.exact:.2f} "
            f"| {s.edit_similarity:.2f} "
            f"| {_rate(s.right_when_shown)} | {_ms(s.show_p50_ms)} | {_ms(s.show_p95_ms)} "
            f"| {s.empty} | {s.timeouts} | {s.errors} | {s.requests} | {s.cancels_sent} "
            f"| {_rate(s.callee_named)} |"
        )
    return "\n".join(lines + _footnote(rows))
