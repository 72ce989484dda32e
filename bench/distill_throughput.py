"""Distillation throughput: tasks a second against ``--concurrency`` (1, 2, 4, 8), on loopback.

The repository is a fixed copy of six standard-library modules (textwrap, fnmatch, bisect,
heapq, colorsys, shlex), cut the same way every time (seed 0, ``--holes`` holes a file, no
fix tasks; ``--llama-holes`` for the model, slow on a CPU), k samples a task. Teachers,
each on 127.0.0.1:

* ``stub-0``: the stub OpenAI server of tests/openai_stub.py answering at once: what the
  client side alone can do (cutting tasks, HTTP, cleaning, lint and symbol checks);
* ``stub-L``: the same stub holding every request ``--latency`` seconds, many at once: a
  server that overlaps requests perfectly, as a batching GPU server roughly does;
* ``stub-L+tests``: the same, with a test file per module, so samples in a tested
  function also run the repository's tests in the sandbox;
* ``llama``: ``python -m llama_cpp.server`` serving the embedded Gemma 3 270M (the flags
  of tests/test_student_chain.py, plus ``--interrupt_requests False``). It answers one
  request at a time (one model behind one lock; it has no ``--parallel``);
* ``llama-default``: the same server with its default ``interrupt_requests=True``, at
  concurrency 1 and 4 only: a new request ends the one streaming, which the client
  cannot tell from a finished answer, so the dataset is checked against concurrency 1's.

Prints a Markdown table per teacher (tasks, seconds, tasks/s, speed-up against 1, the
most requests the progress line saw in flight, whether the dataset's files equal those
written with concurrency 1) and writes every row as JSON. Figures, not assertions: the
machine may be shared, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model.runtime.remote import RemoteBackend
from model.training.distill.dataset import HELDOUT_FILE, TRAIN_FILE
from model.training.distill.progress import DistillProgress
from model.training.distill.run import DistillSettings, distill
from model.training.distill.tasks import TaskLimits
from model.training.distill.teacher import Teacher, TeacherSettings
from tests.openai_stub import running_stub

MODULES = ("textwrap", "fnmatch", "bisect", "heapq", "colorsys", "shlex")
# Tests that name the modules' functions: a hole in one of them runs its test file.
TESTS = {
    "test_textwrap.py": """import textwrap


def test_wrap_and_fill():
    assert textwrap.wrap("the quick brown fox", 10) == ["the quick", "brown fox"]
    assert textwrap.fill("the quick brown fox", 10) == "the quick\\nbrown fox"


def test_dedent_indent_shorten():
    assert textwrap.dedent("  a\\n  b\\n") == "a\\nb\\n"
    assert textwrap.indent("a\\nb\\n", "> ") == "> a\\n> b\\n"
    assert textwrap.shorten("Hello  world!", width=12) == "Hello world!"
""",
    "test_fnmatch.py": """import fnmatch


def test_fnmatch_filter_translate():
    assert fnmatch.fnmatch("a.py", "*.py")
    assert not fnmatch.fnmatchcase("A.PY", "*.py")
    assert fnmatch.filter(["a.py", "b.txt"], "*.py") == ["a.py"]
    assert fnmatch.translate("*.py").endswith("\\\\.py)\\\\Z")
""",
    "test_bisect.py": """import bisect


def test_insort_bisect_left_bisect_right():
    items = [1, 3, 5]
    bisect.insort(items, 4)
    assert items == [1, 3, 4, 5]
    assert bisect.bisect_left(items, 3) == 1 and bisect.bisect_right(items, 3) == 2
""",
    "test_heapq.py": """import heapq


def test_heappush_heappop_nlargest_nsmallest_merge():
    heap = []
    for value in (5, 1, 3):
        heapq.heappush(heap, value)
    assert heapq.heappop(heap) == 1
    assert heapq.nlargest(2, [4, 1, 7]) == [7, 4]
    assert heapq.nsmallest(2, [4, 1, 7]) == [1, 4]
    assert list(heapq.merge([1, 4], [2, 3])) == [1, 2, 3, 4]
""",
    "test_colorsys.py": """import colorsys


def test_rgb_to_hsv_hsv_to_rgb_rgb_to_hls_hls_to_rgb():
    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert colorsys.hsv_to_rgb(0.0, 1.0, 1.0) == (1.0, 0.0, 0.0)
    assert colorsys.rgb_to_hls(1.0, 0.0, 0.0) == (0.0, 0.5, 1.0)
    assert colorsys.hls_to_rgb(0.0, 0.5, 1.0) == (1.0, 0.0, 0.0)
""",
    "test_shlex.py": """import shlex


def test_split_quote_join():
    assert shlex.split('a "b c" d') == ["a", "b c", "d"]
    assert shlex.quote("a b") == "'a b'"
    assert shlex.join(["a", "b c"]) == "a 'b c'"
""",
}
ANSWERS = ("result\n", "text\n", "None\n", "len(text)\n", "0\n")


def make_repository(root: Path, *, with_tests: bool) -> Path:
    """The standard-library copy (and its tests) as a git repository at ``root``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    root.mkdir(parents=True)
    for name in MODULES:
        shutil.copyfile(stdlib / f"{name}.py", root / f"{name}.py")
    if with_tests:
        for name, text in TESTS.items():
            (root / name).write_text(text, encoding="utf-8")
    (root / "LICENSE").write_text("Python Software Foundation License\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def stub_answer(prompt: str) -> str:
    """A deterministic answer chosen by the prompt."""
    return ANSWERS[hashlib.sha256(prompt.encode()).digest()[0] % len(ANSWERS)]


@contextmanager
def stub_server(latency: float) -> Iterator[str]:
    """The stub on 127.0.0.1, holding each request ``latency`` seconds (many at once)."""
    with running_stub() as stub:
        stub.delay_s = latency
        stub.answer_for = stub_answer
        yield stub.url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def llama_server(log: Path, *, interrupt: bool) -> Iterator[str]:
    """``python -m llama_cpp.server`` with the embedded Gemma on 127.0.0.1."""
    from model.runtime.default_model import ensure_default_model

    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(ensure_default_model()),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
        "--interrupt_requests", str(interrupt),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        give_up = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > give_up:
                raise SystemExit(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=1.0):
                    break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def measure(
    url: str, repo: Path, out: Path, concurrency: int, holes: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One distillation of ``repo`` into ``out``: its time, counts and peak in flight."""
    backend = RemoteBackend(url, read_timeout=args.timeout, request_timeout=args.timeout)
    teacher = Teacher(backend, "bench", TeacherSettings(k=args.k, timeout_s=args.timeout))
    settings = DistillSettings(limits=TaskLimits(holes=holes, fix=0), seed=0)
    peak = 0

    def progress(report: DistillProgress) -> None:
        nonlocal peak
        peak = max(peak, report.in_flight)

    started = time.perf_counter()
    try:
        card = distill([repo], out, teacher, settings, concurrency=concurrency, progress=progress)
    finally:
        backend.close()
    seconds = time.perf_counter() - started
    counts = card["counts"]
    return {
        "concurrency": concurrency,
        "tasks": counts["tasks"],
        "requests": teacher.requests,
        "seconds": round(seconds, 2),
        "tasks_per_s": round(counts["tasks"] / seconds, 3),
        "peak_in_flight": peak,
        "teacher_kept": counts["teacher_kept"],
        "rejected_by_tests": card["reject_reasons"].get("tests", 0),
    }


def dataset_bytes(out: Path) -> bytes:
    return (out / TRAIN_FILE).read_bytes() + b"\0" + (out / HELDOUT_FILE).read_bytes()


def teacher_examples(out: Path) -> set[tuple[str, str]]:
    """(task, text) of every teacher example kept in the dataset."""
    found = set()
    for name in (TRAIN_FILE, HELDOUT_FILE):
        for line in (out / name).read_text(encoding="utf-8").splitlines():
            example = json.loads(line)
            if example["source"] == "teacher":
                found.add((example["task"], example["middle"]))
    return found


def run_teacher(
    name: str, url: str, repo: Path, work: Path, levels: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every concurrency level against one teacher; speed-up and dataset against level 1."""
    rows: list[dict[str, Any]] = []
    first = work / f"{name}-0"
    holes = args.llama_holes if name.startswith("llama") else args.holes
    for index, concurrency in enumerate(levels):
        out = work / f"{name}-{index}"
        row = {"teacher": name, **measure(url, repo, out, concurrency, holes, args)}
        row["speedup"] = round(row["tasks_per_s"] / rows[0]["tasks_per_s"], 2) if rows else 1.0
        row["same_dataset"] = dataset_bytes(out) == dataset_bytes(first)
        # Teacher examples kept by one run and not the other.
        row["differing_examples"] = len(teacher_examples(out) ^ teacher_examples(first))
        rows.append(row)
        print(f"  {name} concurrency {concurrency}: {row['seconds']} s", file=sys.stderr)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| teacher | concurrency | tasks | requests | seconds | tasks/s | speed-up vs 1 "
        "| peak in flight | rejected by tests | same dataset as 1 (teacher examples differing) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['teacher']} | {row['concurrency']} | {row['tasks']} | {row['requests']} "
            f"| {row['seconds']} | {row['tasks_per_s']} | {row['speedup']} "
            f"| {row['peak_in_flight']} | {row['rejected_by_tests']} "
            f"| {'yes' if row['same_dataset'] else 'no'} ({row['differing_examples']}) |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen teachers at every level; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,2,4,8", help="concurrency levels")
    parser.add_argument(
        "--teachers",
        default="stub-0,stub-L,stub-L+tests,llama,llama-default",
        help="which teachers (see above)",
    )
    parser.add_argument("--latency", type=float, default=0.25, help="stub-L's seconds a request")
    parser.add_argument("--holes", type=int, default=4, help="holes a file")
    parser.add_argument(
        "--llama-holes", type=int, default=1, help="holes a file for llama (slow on a CPU)"
    )
    parser.add_argument("-k", type=int, default=2, help="samples a task")
    parser.add_argument("--timeout", type=float, default=300.0, help="teacher timeout, seconds")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(tempfile.gettempdir()) / "apprentice-distill-throughput.json",
        help="where the rows go",
    )
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    teachers = args.teachers.split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="apprentice-distill-bench-") as tmp:
        work = Path(tmp)
        plain = make_repository(work / "stdlib-sample", with_tests=False)
        tested = make_repository(work / "stdlib-tested", with_tests=True)
        for name in teachers:
            if name == "stub-0":
                with stub_server(0.0) as url:
                    rows += run_teacher(name, url, plain, work, levels, args)
            elif name == "stub-L":
                with stub_server(args.latency) as url:
                    rows += run_teacher(name, url, plain, work, levels, args)
            elif name == "stub-L+tests":
                with stub_server(args.latency) as url:
                    rows += run_teacher(name, url, tested, work, levels, args)
            elif name in ("llama", "llama-default"):
                default = name == "llama-default"
                chosen = [1, 4] if default else levels
                with llama_server(work / f"{name}.log", interrupt=default) as url:
                    rows += run_teacher(name, url, plain, work, chosen, args)
            else:
                parser.error(f"unknown teacher {name}")
    print(
        f"\nbench/distill_throughput.py: {args.k} samples a task, {args.holes} holes a file "
        f"({args.llama_holes} for llama), stub-L holds each request {args.latency:g} s"
    )
    print_table(rows)
    args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\nrows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
