"""Repository tasks: holes cut from a git repository, indexed with the holes in place.

The repository's files (as the indexer's walk sees them: secrets and ignored files left
out) are copied into a temporary directory with every hole removed, and that copy is
indexed. The masked text is therefore in neither the index nor any prompt; the
repository itself is never modified.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lsp.evaluation.runner import Workspace
from model.runtime.hardware import physical_cores
from model.training.holes import HoleTask
from model.training.repo_tasks import SourceFile, cut_tasks, masked_text

if TYPE_CHECKING:
    from indexer.index import RepositoryIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepoSource:
    """Which repository ``--suite repo`` cuts holes from, and which holes."""

    repo: Path | None = None
    package: str | None = None  # an installed package's source instead (e.g. git)
    # Cut holes only from the files this distilled dataset held out.
    heldout_of: Path | None = None
    holes_per_file: int = 2
    kinds: Sequence[str] = ()  # () : every kind
    cross_file_only: bool = False
    embed: bool = True


def prepare_source(
    source: RepoSource, scratch: Path, *, limit: int | None, seed: int, index: bool = True
) -> RepoSuite:
    """The tasks of ``source`` and its masked copy (indexed here unless ``index`` is False:
    a real server indexes it itself)."""
    from model.training.distill.dataset import heldout_paths
    from model.training.repo_tasks import KINDS

    repo = source.repo
    if source.package is not None:
        repo = package_repository(source.package, scratch)
    if repo is None:
        raise ValueError("--suite repo needs --repo PATH or --package NAME")
    return prepare(
        repo,
        limit=limit,
        seed=seed,
        kinds=source.kinds or KINDS,
        cross_file_only=source.cross_file_only,
        embed=source.embed,
        only_paths=heldout_paths(source.heldout_of) if source.heldout_of else None,
        per_file=source.holes_per_file,
        index=index,
    )


@dataclass
class RepoSuite:
    """The tasks, and the masked, indexed copy they are completed in."""

    tasks: list[HoleTask]
    workspace: Workspace
    copy: Path
    files: int
    index: RepositoryIndex | None  # None: left to whoever opens the copy (a real server)

    def close(self) -> None:
        """Close the index and delete the masked copy."""
        if self.index is not None:
            self.index.close()
        shutil.rmtree(self.copy.parent, ignore_errors=True)


def package_repository(package: str, scratch: Path) -> Path:
    """A git repository under ``scratch`` holding an installed package's source (its
    ``.py`` files), for repository tasks on code nobody here wrote. Nothing is imported:
    the package is found through its import spec."""
    import importlib.util
    import subprocess

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package!r} is not an installed package (a directory of modules)")
    source = Path(next(iter(spec.submodule_search_locations)))
    root = scratch / f"{package}-source"
    shutil.copytree(
        source, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    )
    subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True)
    return root


def repository_files(root: Path) -> list[SourceFile]:
    """The repository's Python files the indexer would index (secrets and ignored left out)."""
    from indexer.walk import read_source_text, walk_repository

    walked = walk_repository(root)
    out = []
    for source in walked.files:
        if source.language != "python":
            continue
        text = read_source_text(source.abs_path)
        if text is not None:
            out.append(SourceFile(source.path, text))
    return out


def prepare(
    root: Path,
    *,
    limit: int | None,
    seed: int,
    kinds: Sequence[str],
    cross_file_only: bool = False,
    embed: bool = True,
    only_paths: Collection[str] | None = None,
    per_file: int = 2,
    index: bool = True,
) -> RepoSuite:
    """Cut tasks from the repository at ``root`` and index a masked copy of it.

    ``only_paths`` (repository-relative) limits where holes are cut, e.g. to the files a
    training dataset held out; every file is still indexed for context. Without ``index``
    the copy is only made (a language server started on it indexes it).
    """
    from indexer.index import IndexSettings, RepositoryIndex
    from indexer.retrieval import Retriever
    from indexer.walk import walk_repository
    from lsp.core.pipeline import index_context

    root = root.resolve()
    sources = repository_files(root)
    if not sources:
        raise ValueError(f"{root} has no Python files to cut tasks from")
    cut_from = sources
    if only_paths is not None:
        wanted = set(only_paths)
        cut_from = [source for source in sources if source.path in wanted]
        if not cut_from:
            raise ValueError(
                f"none of the {len(wanted)} files asked for are Python files of {root}"
            )
    tasks = cut_tasks(
        cut_from,
        kinds=kinds,
        limit=limit,
        seed=seed,
        per_file=per_file,
        cross_file_only=cross_file_only,
    )
    if not tasks:
        raise ValueError(f"no tasks of kinds {', '.join(kinds)} found in {root}")
    scratch = Path(tempfile.mkdtemp(prefix="apprentice-eval-"))
    copy = scratch / root.name
    holes = defaultdict(list)
    for task in tasks:
        holes[task.path].append(task)
    for source in walk_repository(root).files:
        target = copy / source.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.path in holes:
            text = source.abs_path.read_text(encoding="utf-8")
            target.write_text(masked_text(text, holes[source.path]), encoding="utf-8")
        else:
            shutil.copy2(source.abs_path, target)
    logger.info("%d tasks from %d of %d files of %s", len(tasks), len(cut_from), len(sources), root)
    if not index:
        return RepoSuite(tasks, Workspace(root=copy), copy, len(sources), None)
    threads = max(1, physical_cores() // 2)  # as the server embeds
    built = RepositoryIndex(copy, IndexSettings(location=scratch / "index", embed_threads=threads))
    built.update()
    if embed:
        built.embed_pending()
    retriever = Retriever(built)
    workspace = Workspace(
        root=copy,
        context=index_context(retriever, semantic=embed),
        plain_context=index_context(retriever, semantic=embed, unused_imports=False),
        known_symbols=lambda dotted: retriever.lookup(dotted).found,
    )
    return RepoSuite(tasks, workspace, copy, len(sources), built)
