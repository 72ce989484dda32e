"""A checkpoint served by the real llama.cpp backend: adapters at their scales, the declared
FIM template in the prompt, the declared stop sequences."""

from __future__ import annotations

from pathlib import Path

from lsp.core.pipeline import CompletionPipeline, Cursor, PipelineSettings
from model.checkpoints.checkpoint import HashCache, load_checkpoint
from model.checkpoints.pack import pack_checkpoint
from model.factory import BackendSettings, create_backend
from model.runtime.api import CompletionRequest
from model.runtime.gguf import read_gguf
from tests.lora_gguf import write_lora

PROMPT = ("def add(a, b):\n",)


def greedy(settings: BackendSettings, max_tokens: int = 12) -> str:
    backend = create_backend(settings)
    try:
        return backend.complete(CompletionRequest(prompt=PROMPT, max_tokens=max_tokens)).text()
    finally:
        backend.close()


def test_adapters_are_applied_at_their_declared_scales(tmp_path: Path, gemma_path: Path) -> None:
    lora = write_lora(tmp_path / "strong.gguf", read_gguf(gemma_path), magnitude=0.5)
    cache = HashCache(tmp_path / "h.json")
    outputs = {}
    for scale in (1.0, 0.0):
        packed = pack_checkpoint(
            tmp_path / f"s{scale}", gemma_path, name="acme", version="1", adapters=[(lora, scale)]
        )
        resolved = load_checkpoint(packed.directory, cache=cache)
        outputs[scale] = greedy(BackendSettings(resolved=resolved, n_ctx=512, n_threads=2))
    base = greedy(BackendSettings(model_path=str(gemma_path), n_ctx=512, n_threads=2))
    assert outputs[0.0] == base  # at scale 0 the adapter changes nothing
    assert outputs[1.0] != base, (outputs, base)


def test_the_declared_fim_template_and_stops_are_used(tmp_path: Path, gemma_path: Path) -> None:
    packed = pack_checkpoint(
        tmp_path / "fim",
        gemma_path,
        name="student",
        version="1",
        fim="spm:<unused0>,<unused1>",
        fim_stop_tokens=["<unused2>"],
        stop=["return"],
    )
    resolved = load_checkpoint(packed.directory, cache=HashCache(tmp_path / "h.json"))
    backend = create_backend(BackendSettings(resolved=resolved, n_ctx=1024, n_threads=2))
    try:
        info = backend.info()
        assert info.name == "student@1" and info.fim_declared
        pipeline = CompletionPipeline(backend, PipelineSettings(candidates=1, max_tokens=16))
        text = "def add(a, b):\n    \n\nprint(add(1, 2))\n"
        result = pipeline.complete(
            Cursor(path="m.py", language="python", text=text, offset=text.index("    \n") + 4)
        )
        assert result.mode == "fim"  # the Gemma base has no FIM tokens of its own
        # The declared stop sequence ends generation wherever the model says it.
        raw = backend.complete(CompletionRequest(prompt=PROMPT, max_tokens=12)).text()
        assert "return" not in raw and raw == "    "
    finally:
        backend.close()


def test_a_trained_family_declared_by_name_resolves_to_its_markers(
    tmp_path: Path, gemma_path: Path
) -> None:
    from model.runtime.fim import STUDENT_FAMILY

    packed = pack_checkpoint(
        tmp_path / "student",
        gemma_path,
        name="student",
        version="1",
        fim=STUDENT_FAMILY,
        fim_stop_tokens=["<unused2>", "<eos>"],
    )
    fim = packed.manifest.fim
    assert (fim.template, fim.order) == (STUDENT_FAMILY, "spm")
    assert fim.prefix is not None and (fim.prefix.text, fim.prefix.id) == ("<unused0>", 6)
    resolved = load_checkpoint(packed.directory, cache=HashCache(tmp_path / "h.json"))
    assert resolved.fim is not None
    assert (resolved.fim.prefix, resolved.fim.suffix, resolved.fim.middle) == (
        "<unused0>",
        "<unused1>",
        None,
    )
    assert resolved.fim.order == "spm" and resolved.fim.stop_tokens == ("<unused2>", "<eos>")
