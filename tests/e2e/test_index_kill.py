"""SIGKILL the indexer mid-run, again and again: the index stays consistent and completes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_repo(root: Path, files: int = 400) -> None:
    for i in range(files):
        package = root / f"pkg{i % 10}"
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
        body = "\n\n".join(
            f"def handler_{i}_{j}(request, limit={j}):\n"
            f'    """Handle request number {j} of module {i}."""\n'
            f"    values = [request.get(k) for k in range({j} + 3)]\n"
            f"    return sum(v or 0 for v in values) + limit\n"
            for j in range(6)
        )
        (package / f"module_{i}.py").write_text(body + "\n")
    subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)


def index_command(repo: Path, index_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lsp.cli",
        "index",
        str(repo),
        "--json",
        "--index-dir",
        str(index_dir),
        "--embedder",
        "fake",
    ]


def check_consistent(index_dir: Path) -> None:
    [database] = list(index_dir.glob("*/index.sqlite"))
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = connection.execute(
            "SELECT COUNT(*) FROM chunks WHERE path NOT IN (SELECT path FROM files)"
        ).fetchone()[0]
        assert orphans == 0
        orphan_symbols = connection.execute(
            "SELECT COUNT(*) FROM symbols WHERE path NOT IN (SELECT path FROM files)"
        ).fetchone()[0]
        assert orphan_symbols == 0
    finally:
        connection.close()


def touch_every_file(repo: Path, round_number: int) -> None:
    """Change every module, so the next run has all of its work to do again."""
    for path in repo.glob("pkg*/module_*.py"):
        lines = path.read_text().split("\n")
        lines[0:0] = [f"# round {round_number}"] if not lines[0].startswith("#") else []
        lines[0] = f"# round {round_number}"
        path.write_text("\n".join(lines))


def test_repeated_sigkill_leaves_a_consistent_index_that_completes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo)
    # How long a whole run takes here, so the kills land inside one, on any machine.
    started = time.monotonic()
    baseline = subprocess.run(
        index_command(repo, tmp_path / "baseline"), cwd=ROOT, capture_output=True, timeout=300
    )
    assert baseline.returncode == 0, baseline.stderr
    full_run = time.monotonic() - started
    index_dir = tmp_path / "index"
    rng = random.Random(7)
    killed = 0
    for round_number in range(8):
        touch_every_file(repo, round_number)
        process = subprocess.Popen(
            index_command(repo, index_dir),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 0.95) * full_run)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed += 1
        process.wait()
        if any(index_dir.glob("*/index.sqlite")):
            check_consistent(index_dir)
    assert killed >= 4, f"only {killed} of 8 runs were still going when killed"
    done = subprocess.run(
        index_command(repo, index_dir), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files"] == 400 + 10
    check_consistent(index_dir)
    # Every chunk has its vector after the completing run.
    again = subprocess.run(
        index_command(repo, index_dir), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert json.loads(again.stdout)["embedded"] == 0
