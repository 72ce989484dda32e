"""``apprentice distill``: tasks from repositories, teacher samples, verification, the dataset.

Work is saved per task in ``OUT/.distill/results.jsonl`` (appended and fsynced), so an
interrupted run resumes where it stopped; the dataset files are written atomically at
the end. With ``concurrency`` above 1 several tasks run at once (``pool``): records are
appended as tasks finish, each with its task's place in the run (``seq``), and the
dataset is built from the records sorted by that place, so it is the same whatever the
concurrency and however often the run was interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexer.records import IndexerError
from indexer.walk import read_source_text, walk_repository
from lint_bridge.ruff import RuffRunner
from model.checkpoints.atomic_io import write_text_atomic
from model.runtime.fim import STUDENT_FAMILY
from model.training.distill.checks import SampleChecker, can_execute
from model.training.distill.dataset import (
    CARD_JSON,
    CARD_MD,
    FORMAT_VERSION,
    HELDOUT_FILE,
    TRAIN_FILE,
    DatasetError,
    Example,
    card_markdown,
    dedupe,
    detect_licence,
    heldout_files,
    prefix_window,
    suffix_window,
    write_jsonl,
)
from model.training.distill.fixes import fix_tasks
from model.training.distill.pool import TaskPool
from model.training.distill.progress import DistillProgress, ProgressTracker
from model.training.distill.tasks import Task, TaskLimits, tasks_for_source
from model.training.distill.teacher import Teacher, TeacherStoppedError

logger = logging.getLogger(__name__)

PROGRESS_DIR = ".distill"
Progress = Callable[[DistillProgress], None]
# Build the tasks of one file: (repo name, path, text) -> tasks. Swappable for the
# evaluation harness's own cutting.
TaskSource = Callable[[str, str, str], list[Task]]


@dataclass(frozen=True)
class DistillSettings:
    """Everything that shapes a dataset (a resumed run must use the same)."""

    limits: TaskLimits = field(default_factory=TaskLimits)
    heldout_ratio: float = 0.2
    seed: int = 0
    run_tests: bool = True
    max_files: int | None = None
    licence: str | None = None  # overrides what the licence files say
    excludes: tuple[str, ...] = ()  # gitignore-style patterns left out of every repository


@dataclass(frozen=True)
class _Repo:
    name: str
    root: Path
    files: list[str]
    licence: str


def distill(
    repos: Sequence[Path],
    out: Path,
    teacher: Teacher | None,
    settings: DistillSettings | None = None,
    *,
    concurrency: int = 1,
    progress: Progress | None = None,
    task_source: TaskSource | None = None,
) -> dict[str, Any]:
    """Build the dataset at ``out`` from ``repos``; returns its card. Resumes unfinished work.

    Up to ``concurrency`` tasks (their teacher requests and checks) run at once; it does
    not change the dataset, so a run may resume with another.
    """
    settings = settings or DistillSettings()
    if not repos:
        raise DatasetError("no repository given")
    sources = [_scan(Path(r), settings) for r in repos]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DatasetError(f"two repositories share a name: {', '.join(names)}")
    teacher_model = teacher.check() if teacher is not None else ""
    state = Path(out) / PROGRESS_DIR
    config = _config(sources, settings, teacher)
    done = _open_progress(state, config)
    build = task_source or (
        lambda repo, path, text: tasks_for_source(repo, path, text, settings.limits, settings.seed)
    )
    ruff = RuffRunner(timeout_s=10.0)
    tracker = ProgressTracker(
        sum(len(s.files) for s in sources),
        progress,
        lambda: teacher.in_flight if teacher is not None else 0,
    )
    started = time.monotonic()
    # Held while this thread cuts tasks and while a pool thread checks a sample: both
    # build syntax trees, which threads must not do at once (SampleChecker says why).
    parsing = threading.Lock()
    checkers: list[SampleChecker] = []
    with (state / "results.jsonl").open("a", encoding="utf-8") as handle:
        log = _Log(handle)

        def deliver(finished: tuple[int, dict[str, Any]]) -> None:
            file, record = finished
            log.append(record)
            tracker.task_done(file)

        try:
            with TaskPool(
                concurrency, deliver, stop=_stopper(teacher), tick=tracker.report
            ) as pool:
                seq = 0  # the task's place in the run: the same in every run of this config
                file = 0
                for source in sources:
                    checker = SampleChecker(
                        source.root, run_tests=settings.run_tests, parsing=parsing
                    )
                    checkers.append(checker)
                    for path in source.files:
                        file += 1
                        with parsing:
                            text, tasks = _file_tasks(source, path, build, settings, ruff)
                        todo: list[tuple[int, Task]] = []
                        for task in tasks:
                            seq += 1
                            if task.id not in done:
                                done.add(task.id)
                                todo.append((seq, task))
                        tracker.file_cut(file, len(todo))
                        for place, task in todo:
                            pool.submit(_job(file, place, task, text, teacher, checker))
                pool.drain()
        finally:
            for checker in checkers:
                checker.close()
            tracker.report()
        os.fsync(handle.fileno())
    logger.info(
        "distilled %d files (%d tasks) in %.1f s with %d at once",
        tracker.files_total,
        tracker.tasks_done,
        time.monotonic() - started,
        concurrency,
    )
    return _finish(Path(out), sources, settings, teacher, teacher_model)


def _file_tasks(
    source: _Repo, path: str, build: TaskSource, settings: DistillSettings, ruff: RuffRunner
) -> tuple[str, list[Task]]:
    """One file's text and its tasks, holes then fixes (none when it cannot be read)."""
    text = read_source_text(source.root / path)
    if text is None:
        return "", []
    holes = build(source.name, path, text)
    fixes = fix_tasks(
        source.name, path, source.root / path, text, settings.limits.fix, ruff, settings.seed
    )
    return text, holes + fixes


def _job(
    file: int, seq: int, task: Task, text: str, teacher: Teacher | None, checker: SampleChecker
) -> Callable[[], tuple[int, dict[str, Any]]]:
    """One task's work for a pool thread: its file number and its record."""

    def run() -> tuple[int, dict[str, Any]]:
        return file, {"seq": seq, **_distill_task(task, text, teacher, checker)}

    return run


def _stopper(teacher: Teacher | None) -> Callable[[], None]:
    """What stops the pool's running work: the teacher's requests (checks are short)."""
    return teacher.stop if teacher is not None else lambda: None


def _scan(root: Path, settings: DistillSettings) -> _Repo:
    try:
        walk = walk_repository(root, extra_ignores=settings.excludes)
    except IndexerError as error:
        raise DatasetError(str(error).replace("cannot index", "cannot read")) from None
    files = [f.path for f in walk.files if f.language == "python"]
    if not files:
        raise DatasetError(f"{root} has no Python files: nothing to distill from")
    if settings.max_files is not None:
        files = files[: settings.max_files]
    licence = settings.licence or detect_licence(walk.root)
    return _Repo(walk.root.name, walk.root, files, licence)


def _config(
    sources: Sequence[_Repo], settings: DistillSettings, teacher: Teacher | None
) -> dict[str, Any]:
    return {
        "repos": [str(s.root) for s in sources],
        "settings": asdict(settings),
        "teacher": None if teacher is None else {"name": teacher.name, **asdict(teacher.settings)},
    }


def _open_progress(state: Path, config: dict[str, Any]) -> set[str]:
    """The ids of tasks already done; starts the progress files when there are none."""
    config_path = state / "config.json"
    wanted = json.loads(json.dumps(config))
    if config_path.exists():
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        if saved != wanted:
            raise DatasetError(
                f"{state.parent} holds a distillation run with other repositories or settings; "
                "choose another output directory or delete it to start over"
            )
    else:
        write_text_atomic(config_path, json.dumps(wanted, indent=2))
    _drop_partial_line(state / "results.jsonl")
    done = {record["task"] for record in _records(state / "results.jsonl")}
    if done:
        logger.info("resuming: %d tasks already done", len(done))
    return done


def _drop_partial_line(path: Path) -> None:
    """Cut a record a crash left half-written, so the next append starts on its own line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The saved task results; a line cut short by a crash is skipped (its task runs again)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "task" in record:
                yield record


class _Log:
    """The results file: each record flushed at once, synced to disk at most every 2 s.

    A crash loses at most the last seconds of records, whose tasks simply run again.
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.synced = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()
        if time.monotonic() - self.synced >= 2.0:
            os.fsync(self.handle.fileno())
            self.synced = time.monotonic()


def _same(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))

    return norm(a) == norm(b)


def _distill_task(
    task: Task, text: str, teacher: Teacher | None, checker: SampleChecker
) -> dict[str, Any]:
    """One task's verified examples (the ground truth first) and why samples were refused."""
    middles: list[tuple[str, str]] = []
    if task.truth is not None and task.truth.strip():
        middles.append(("truth", task.truth))
    rejected: Counter[str] = Counter()
    samples = teacher.samples(task) if teacher is not None else []
    kept = 0
    for sample in samples:
        if teacher is not None and teacher.stopping:
            raise TeacherStoppedError(f"teacher {teacher.name} was stopped")
        if any(_same(sample, middle) for _, middle in middles):
            rejected["duplicate"] += 1
            continue
        reason = checker.check(task, text, sample)
        if reason is None:
            middles.append(("teacher", sample))
            kept += 1
        else:
            rejected[reason] += 1
    examples = [
        Example(
            id=f"{task.id}-{index}",
            task=task.id,
            repo=task.repo,
            path=task.path,
            language=task.language,
            kind=task.kind,
            source=source,
            prefix=prefix_window(task.prefix),
            suffix=suffix_window(task.suffix),
            middle=middle,
        )
        for index, (source, middle) in enumerate(middles)
    ]
    return {
        "task": task.id,
        "repo": task.repo,
        "path": task.path,
        "kind": task.kind,
        "teacher_samples": len(samples),
        "teacher_kept": kept,
        "rejected": dict(rejected),
        "examples": [e.as_json() for e in examples],
    }


def _finish(
    out: Path,
    sources: Sequence[_Repo],
    settings: DistillSettings,
    teacher: Teacher | None,
    teacher_model: str,
) -> dict[str, Any]:
    """Dedupe, split by file, write the splits and the card (each file atomically)."""
    # In the tasks' order, not the order they finished in. Records of a run from before
    # ``seq`` existed were written in task order, ahead of any later one: they stay first.
    records = sorted(_records(out / PROGRESS_DIR / "results.jsonl"), key=lambda r: r.get("seq", 0))
    if not any(record["examples"] for record in records):
        raise DatasetError(
            "no examples: the repositories gave no tasks (files too small, or none parse)"
        )
    examples, duplicates = dedupe(
        Example.from_json(data) for record in records for data in record["examples"]
    )
    files = sorted({(e.repo, e.path) for e in examples})
    held = heldout_files(files, settings.heldout_ratio, settings.seed)
    train = [e for e in examples if (e.repo, e.path) not in held]
    heldout = [e for e in examples if (e.repo, e.path) in held]
    write_jsonl(out / TRAIN_FILE, train)
    write_jsonl(out / HELDOUT_FILE, heldout)
    rejected: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    tasks_by_repo: Counter[str] = Counter()
    for record in records:
        rejected.update(record["rejected"])
        by_kind[record["kind"]] += 1
        tasks_by_repo[record["repo"]] += 1
    card = {
        "format": {"family": STUDENT_FAMILY, "version": FORMAT_VERSION},
        "sources": [
            {
                "name": s.name,
                "path": str(s.root),
                "licence": s.licence,
                "files": len(s.files),
                "tasks": tasks_by_repo[s.name],
            }
            for s in sources
        ],
        "counts": {
            "tasks": len(records),
            "tasks_by_kind": dict(by_kind),
            "teacher_samples": sum(r["teacher_samples"] for r in records),
            "teacher_kept": sum(r["teacher_kept"] for r in records),
            "duplicates": duplicates,
            "train_examples": len(train),
            "heldout_examples": len(heldout),
            "train_files": len(files) - len(held),
            "heldout_files": len(held),
        },
        "heldout_files": sorted(f"{repo}/{path}" for repo, path in held),
        "reject_reasons": dict(rejected),
        "teacher": {
            "name": teacher.name if teacher is not None else "none",
            "model": teacher_model,
            "k": teacher.settings.k if teacher is not None else 0,
            "temperature": teacher.settings.temperature if teacher is not None else 0.0,
            "requests": teacher.requests if teacher is not None else 0,
            "retried": teacher.retried if teacher is not None else 0,
        },
        "settings": {
            "seed": settings.seed,
            "heldout_ratio": settings.heldout_ratio,
            # Whether samples really ran against the tests (not only whether asked to).
            "tests": settings.run_tests and can_execute(),
            "limits": asdict(settings.limits),
        },
    }
    write_text_atomic(out / CARD_JSON, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / CARD_MD, card_markdown(card))
    return card
