"""Soak: the server under a replayed typing trace for a fixed time, with background indexing and
branch switches, watched for errors, memory and file descriptors.

A real client (pygls) starts ``apprentice serve`` on a git copy of bench/traces/warehouse (two
branches: ``main``, and ``trimmed`` where a module is deleted and another rewritten). It types
``reorder.py``'s function bodies back in, over and over (the document is reopened from its stub
each time round), sending ``didChange``, an automatic inline-completion request and cancels as
VS Code does. Indexing starts with the server and runs while typing. Every ``--switch-every``
seconds the work tree switches branch and the client reports the changed files
(``workspace/didChangeWatchedFiles``). Once a second the server's RSS (with its model worker)
and open descriptors are sampled. Loopback only: nothing leaves the machine.

Pass: no request fails (cancelled ones aside), no error line in the server's log, the server
alive to the end and shut down cleanly, RSS and descriptors within the bounds below.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from bench.traces.keystrokes import build_trace
from bench.typing_trace import DEFAULT_TRACE, Replay
from lsp.evaluation.lsp_client import EditorClient, drain, initialize_params, process_of, status

# Bounds (stated in the README): the whole server, model worker included.
MAX_RSS_MIB = 1536
# Growth from the end of the warm-up (the first 40% of the run: llama.cpp's buffers, the
# index and the lint caches fill up) to the end.
MAX_RSS_GROWTH_MIB = 128
WARM_UP_FRACTION = 0.4
# Samples between two readings of the KV snapshots' size (a status request each).
SNAPSHOT_EVERY = 5
MAX_FDS = 256
MAX_FD_GROWTH = 16
ERROR_MARKERS = (" ERROR ", "Traceback (most recent call last)", " CRITICAL ")


@dataclass
class Sample:
    """One reading of the server's resources."""

    at_s: float
    rss_mib: float
    fds: int
    # The KV snapshots the model worker held then (apprentice.status, read every few
    # seconds): memory it may take up to model.snapshotMemoryMb, bounded on its own.
    snapshot_mib: float = 0.0


@dataclass
class Soak:
    """What the run saw."""

    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    cancelled: int = 0
    shown: int = 0
    rounds: int = 0
    switches: int = 0
    failures: list[str] = field(default_factory=list)
    # The server's KV snapshots and warm-ups (apprentice.status), read after every round.
    snapshots: dict[str, Any] = field(default_factory=dict)
    peak_snapshot_mib: float = 0.0
    warmups: dict[str, Any] = field(default_factory=dict)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sample(pid: int, started: float) -> Sample:
    """The server's RSS plus its children's (the model worker), and its open descriptors."""
    rss = _rss_mib(pid) + sum(_rss_mib(child) for child in _children(pid))
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return Sample(round(time.monotonic() - started, 1), round(rss, 1), fds)


def git(root: Path, *args: str) -> None:
    base = ["git", "-C", str(root), "-c", "user.name=soak", "-c", "user.email=soak@localhost"]
    subprocess.run([*base, *args], check=True, capture_output=True)


def two_branches(root: Path) -> list[Path]:
    """``main`` as copied; ``trimmed`` deletes suppliers.py and rewrites stock.py."""
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "warehouse")
    git(root, "checkout", "-q", "-b", "trimmed")
    package = root / "warehouse"
    git(root, "rm", "-q", "warehouse/suppliers.py")
    stock = package / "stock.py"
    stock.write_text(stock.read_text() + "\n\ndef restock_all(levels):\n    return dict(levels)\n")
    git(root, "commit", "-qam", "trimmed")
    git(root, "checkout", "-q", "main")
    return [package / "suppliers.py", stock]


async def _switch(client: EditorClient, root: Path, branch: str, touched: list[Path]) -> None:
    proc = await asyncio.create_subprocess_exec("git", "-C", str(root), "checkout", "-q", branch)
    if await proc.wait() != 0:
        raise RuntimeError(f"git checkout {branch} failed")
    changes = [
        lsp.FileEvent(
            uri=path.as_uri(),
            type=lsp.FileChangeType.Changed if path.exists() else lsp.FileChangeType.Deleted,
        )
        for path in touched
    ]
    client.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(changes=changes))


async def run(args: argparse.Namespace, workdir: Path, log: Path) -> Soak:
    """One server session of ``args.duration`` seconds."""
    source = Path(args.trace).resolve()
    root = workdir / "workspace"
    shutil.copytree(source.parent.parent, root, ignore=shutil.ignore_patterns(".git"))
    touched = two_branches(root)
    path = root / source.relative_to(source.parent.parent)
    trace = build_trace(source.read_text(), cps=args.cps, seed=args.seed)
    soak = Soak()
    client = EditorClient()
    await client.start_io(sys.executable, "-m", "lsp.cli", "serve")
    process = process_of(client)
    assert process is not None
    copying = asyncio.create_task(drain(process.stderr, log))
    started = time.monotonic()
    try:
        options = {
            "index": {"location": str(workdir / "index"), "embeddings": args.embeddings},
            "completion": {"debounceMs": 25},
        }
        params = initialize_params(root, options)
        assert params.capabilities.workspace is None
        params.capabilities.workspace = lsp.WorkspaceClientCapabilities(
            did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(
                dynamic_registration=True
            )
        )
        await client.initialize_async(params)
        client.initialized(lsp.InitializedParams())
        # Typing starts as soon as the model answers; indexing goes on in the background.
        while (await status(client)).get("model", {}).get("state") != "ready":
            if time.monotonic() - started > args.ready_timeout:
                raise TimeoutError("the model did not load")
            await asyncio.sleep(0.25)
        end = time.monotonic() + args.duration
        branch, next_switch = "main", time.monotonic() + args.switch_every
        sampler = asyncio.create_task(_sample(client, process.pid, started, soak, end))
        version = 1
        while time.monotonic() < end:
            looked_at = await _look_around(client, path)
            uri = path.as_uri()
            item = lsp.TextDocumentItem(
                uri=uri, language_id="python", version=version, text=trace.initial
            )
            client.text_document_did_open(lsp.DidOpenTextDocumentParams(item))
            replay = Replay(client, uri, trace)
            typing = asyncio.create_task(replay.run(settle_s=10.0))
            while not typing.done():
                await asyncio.sleep(0.2)
                if time.monotonic() >= end:
                    typing.cancel()
                elif time.monotonic() >= next_switch:
                    branch = "trimmed" if branch == "main" else "main"
                    await _switch(client, root, branch, touched)
                    soak.switches += 1
                    next_switch = time.monotonic() + args.switch_every
            await asyncio.gather(typing, return_exceptions=True)
            await asyncio.sleep(1.0)  # the last answers of this round
            for other in [uri, *looked_at]:
                client.text_document_did_close(
                    lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri=other))
                )
            found = await status(client)
            soak.snapshots = found.get("snapshots") or {}
            soak.warmups = found.get("warmups") or {}
            soak.peak_snapshot_mib = max(
                soak.peak_snapshot_mib, int(soak.snapshots.get("bytes", 0)) / 2**20
            )
            soak.rounds += 1
            soak.requests += len(replay.sent)
            soak.failed += sum(s.outcome == "error" for s in replay.sent)
            soak.cancelled += sum(s.outcome == "cancelled" for s in replay.sent)
            soak.shown += sum(s.outcome == "items" for s in replay.sent)
            version += len(trace.keystrokes) + 2
        await sampler
        if process.returncode is not None:
            soak.failures.append(f"the server exited ({process.returncode}) during the run")
        await asyncio.wait_for(client.shutdown_async(None), 60)
        client.exit(None)
        code = await asyncio.wait_for(process.wait(), 30)
        if code != 0:
            soak.failures.append(f"the server exited with {code} after shutdown")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await client.stop()
        await copying
    return soak


async def _look_around(client: EditorClient, typed: Path) -> list[str]:
    """Open the package's other modules and rest the cursor in each, as a person reading
    them before typing: the server warms their prompts and keeps KV snapshots of them."""
    uris = []
    for other in sorted(typed.parent.glob("*.py")):
        if other == typed or not other.exists():
            continue
        text = other.read_text(encoding="utf-8")
        uri = other.as_uri()
        item = lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(item))
        line = text.count("\n") // 2
        where = {"textDocument": {"uri": uri}, "position": {"line": line, "character": 0}}
        client.protocol.notify("apprentice/cursor", where)
        uris.append(uri)
        await asyncio.sleep(1.5)
    return uris


async def _sample(client: EditorClient, pid: int, started: float, soak: Soak, end: float) -> None:
    snapshot_mib = 0.0
    while time.monotonic() < end:
        if len(soak.samples) % SNAPSHOT_EVERY == 0:
            found = await status(client)
            snapshot_mib = int((found.get("snapshots") or {}).get("bytes", 0)) / 2**20
            soak.peak_snapshot_mib = max(soak.peak_snapshot_mib, snapshot_mib)
        reading = sample(pid, started)
        reading.snapshot_mib = round(snapshot_mib, 1)
        soak.samples.append(reading)
        await asyncio.sleep(1.0)


def judge(soak: Soak, log_text: str) -> dict[str, Any]:
    """The report, with ``failures`` listing every bound or rule the run broke."""
    samples = [s for s in soak.samples if s.rss_mib > 0 and s.fds >= 0]
    warm = samples[int(len(samples) * WARM_UP_FRACTION)] if samples else None
    last = samples[-1] if samples else None
    peak_rss = max((s.rss_mib for s in samples), default=0.0)
    peak_fds = max((s.fds for s in samples), default=0)
    failures = list(soak.failures)
    errors = [line for line in log_text.splitlines() if any(m in line for m in ERROR_MARKERS)]
    if soak.failed:
        failures.append(f"{soak.failed} request(s) failed")
    if errors:
        failures.append(f"{len(errors)} error line(s) in the server log, first: {errors[0][:200]}")
    if peak_rss > MAX_RSS_MIB:
        failures.append(f"RSS peaked at {peak_rss:.0f} MiB (bound {MAX_RSS_MIB})")
    if peak_fds > MAX_FDS:
        failures.append(f"{peak_fds} open descriptors (bound {MAX_FDS})")
    rss_growth = fd_growth = None
    snapshot_growth = None
    if warm is not None and last is not None:
        rss_growth = round(last.rss_mib - warm.rss_mib, 1)
        fd_growth = last.fds - warm.fds
        # The KV snapshots fill up to their own bound (checked below); the rest must not grow.
        snapshot_growth = round(last.snapshot_mib - warm.snapshot_mib, 1)
        if rss_growth - snapshot_growth > MAX_RSS_GROWTH_MIB:
            failures.append(
                f"RSS grew {rss_growth:.0f} MiB after warm-up "
                f"({rss_growth - snapshot_growth:.0f} besides the KV snapshots)"
            )
        if fd_growth > MAX_FD_GROWTH:
            failures.append(f"open descriptors grew by {fd_growth} after warm-up")
    if not soak.requests:
        failures.append("no request was sent")
    limit_mib = int(soak.snapshots.get("limit_bytes", 0)) / 2**20
    if limit_mib and soak.peak_snapshot_mib > limit_mib:
        failures.append(
            f"KV snapshots held {soak.peak_snapshot_mib:.0f} MiB (bound {limit_mib:.0f})"
        )
    return {
        "seconds": samples[-1].at_s if samples else 0,
        "rounds": soak.rounds,
        "branch_switches": soak.switches,
        "requests": soak.requests,
        "shown": soak.shown,
        "cancelled": soak.cancelled,
        "failed": soak.failed,
        "error_rate": round(soak.failed / soak.requests, 4) if soak.requests else None,
        "log_errors": len(errors),
        "rss_mib": {
            "warm": warm.rss_mib if warm else None,
            "end": last.rss_mib if last else None,
            "peak": peak_rss,
            "growth": rss_growth,
            "snapshot_growth": snapshot_growth,
        },
        "fds": {
            "warm": warm.fds if warm else None,
            "end": last.fds if last else None,
            "peak": peak_fds,
            "growth": fd_growth,
        },
        "snapshots": {
            "count": soak.snapshots.get("count"),
            "peak_mib": round(soak.peak_snapshot_mib, 1),
            "limit_mib": round(limit_mib, 1),
            "restores": soak.snapshots.get("restores"),
            "tokens_saved": soak.snapshots.get("tokens_saved"),
        },
        "warmups": soak.warmups,
        "bounds": {
            "rss_mib": MAX_RSS_MIB,
            "rss_growth_mib": MAX_RSS_GROWTH_MIB,
            "fds": MAX_FDS,
            "fd_growth": MAX_FD_GROWTH,
        },
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its report; exit status 1 when a bound or rule was broken."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=300.0, help="seconds of typing (default 300)")
    add("--switch-every", type=float, default=60.0, help="seconds between branch switches")
    add("--trace", default=str(DEFAULT_TRACE), help="the Python file to type")
    add("--cps", type=float, default=8.0, help="characters a second (default 8)")
    add("--seed", type=int, default=0, help="seed of the typing rhythm's jitter")
    add("--embeddings", action="store_true", help="embed in the background too")
    add("--ready-timeout", type=float, default=600.0, help="seconds to wait for the model")
    add("--server-log", help="keep the server's stderr in this file")
    add("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apprentice-soak-") as tmp:
        log = Path(args.server_log) if args.server_log else Path(tmp) / "server.log"
        try:
            soak = asyncio.run(run(args, Path(tmp), log))
        except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as error:
            print(f"soak: {error}", file=sys.stderr)
            return 2
        report = judge(soak, log.read_text(errors="replace") if log.exists() else "")
    if args.json:
        print(json.dumps(report))
    else:
        rss, fds = report["rss_mib"], report["fds"]
        print(
            f"soak: {report['seconds']} s, {report['rounds']} round(s) of typing, "
            f"{report['branch_switches']} branch switch(es)"
        )
        print(
            f"requests {report['requests']} (shown {report['shown']}, cancelled "
            f"{report['cancelled']}, failed {report['failed']}); log errors "
            f"{report['log_errors']}"
        )
        print(
            f"RSS MiB warm/end/peak {rss['warm']}/{rss['end']}/{rss['peak']} "
            f"(bound {MAX_RSS_MIB}, growth {rss['growth']}, of which KV snapshots "
            f"{rss['snapshot_growth']}; bound {MAX_RSS_GROWTH_MIB} besides them)"
        )
        print(
            f"descriptors warm/end/peak {fds['warm']}/{fds['end']}/{fds['peak']} "
            f"(bound {MAX_FDS}, growth {fds['growth']} of {MAX_FD_GROWTH})"
        )
        snaps, warmups = report["snapshots"], report["warmups"]
        print(
            f"KV snapshots peak {snaps['peak_mib']} MiB of {snaps['limit_mib']} "
            f"({snaps['count']} kept, {snaps['restores']} restores sparing "
            f"{snaps['tokens_saved']} prompt tokens); warm-ups {warmups.get('runs')} "
            f"({warmups.get('stopped')} stopped for a keystroke, "
            f"{warmups.get('evaluated')} tokens)"
        )
        for failure in report["failures"]:
            print(f"FAIL: {failure}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
