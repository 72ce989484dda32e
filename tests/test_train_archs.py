"""apprentice train on a tiny random model of every architecture it takes (tests/tiny_archs.py).

Per architecture: transformers and llama.cpp compute the same logits for the untrained base;
training and serving put the same token ids in a prompt (the base's own FIM layout, chosen
as the server chooses it); and the whole chain (one layout-neutral dataset from
``apprentice distill --teacher none``, a few steps of ``apprentice train``, the export, the
agreement gate with llama.cpp, the packed checkpoint) passes. No real weights: seconds each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")

from lsp.cli import main
from model.runtime.api import ModelInfo, SpecialToken
from model.runtime.fim import all_markers, select_template
from model.runtime.prompt import PromptInput, build_prompt
from model.training.distill.dataset import Example
from model.training.train.base import TrainingError, describe_base, load_base
from model.training.train.fimformat import Tokens, encode
from tests.tiny_archs import ARCHS, EXTRA, distill_shop, tiny_models, train_args

EXAMPLE = Example(
    id="1",
    task="1",
    repo="shop",
    path="shop/prices.py",
    language="python",
    kind="assign",
    source="truth",
    prefix="def with_tax(amount):\n    total = ",
    suffix="\n    return round(total, 2)\n",
    middle="amount * 1.2",
)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny model, written once per session."""
    return tiny_models(tmp_path_factory.mktemp("tiny-archs"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset for every architecture: its examples are text, whatever the base."""
    return distill_shop(tmp_path_factory.mktemp("shop"))


def _logits(path: Path, ids: list[int]) -> Any:
    """llama.cpp's logits for ``ids`` on the base at ``path`` (a child process, as the gate)."""
    from model.training.train.agree import llama_predictions

    positions = [list(range(len(ids)))]
    return llama_predictions(path, None, [ids], positions)["top1"][0]


@pytest.mark.parametrize("key", list(ARCHS))
def test_untrained_base_agrees_with_llama_cpp(key: str, tiny: dict[str, Path]) -> None:
    """transformers reads the tiny GGUF as llama.cpp does: the same next token everywhere."""
    import torch

    base = describe_base(str(tiny[key]))
    model, tokenizer = load_base(base)
    ids = tokenizer.encode("def f(x):\n    return x + 1\n", add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    best = logits.topk(2, dim=-1)
    decisive = [i for i in range(len(ids)) if float(best.values[i, 0] - best.values[i, 1]) > 0.05]
    found = _logits(base.path, ids)
    assert len(decisive) >= len(ids) // 2
    assert [found[i] for i in decisive] == [int(best.indices[i, 0]) for i in decisive]


@pytest.mark.parametrize("key", [*ARCHS, "deepseek", "codegemma"])
def test_training_prompts_as_the_server_does(key: str, tiny: dict[str, Path]) -> None:
    """The base's own layout, and the same ids as llama.cpp's worker gives the same prompt."""
    from model.runtime.worker import _Engine

    family = {**ARCHS, **EXTRA}[key].family
    base = describe_base(str(tiny[key]))
    assert base.layout.family == family
    _, tokenizer = load_base(base)
    tokens = Tokens(tokenizer, base.layout, base.marker_ids)
    built = build_prompt(
        PromptInput(EXAMPLE.path, "python", EXAMPLE.prefix, EXAMPLE.suffix),
        base.layout.template,
        tokens.count,
        200,
    )
    markers = sorted(all_markers())
    engine = _Engine({"path": str(base.path), "n_ctx": 256, "n_threads": 1, "markers": markers})
    # The server, reading the same GGUF through llama.cpp, picks the same template; a layout
    # on reserved tokens it takes only when the packed checkpoint declares it.
    served = ModelInfo(
        name=base.name,
        special_tokens=frozenset(engine.markers),
        fim_tokens=engine.info()["fim_tokens"],
    )
    declared = base.layout.family.startswith("apprentice-")
    assert select_template(served) == (None if declared else base.layout.template)
    parts = [["s", p.text] if isinstance(p, SpecialToken) else ["t", p] for p in built.prompt]
    assert tokens.prompt(built.prompt) == engine.tokens_for(parts)
    end = engine.llm.tokenize(base.layout.end.encode(), add_bos=False, special=True)
    assert end == [tokens.marker(base.layout.end)]


def test_qwen2_is_trained_in_qwens_layout(tiny: dict[str, Path]) -> None:
    """File separator and path, <|fim_prefix|> prefix, <|fim_suffix|> suffix, <|fim_middle|>,
    then the middle and <|endoftext|>; no BOS (a Qwen GGUF does not add one)."""
    base = describe_base(str(tiny["qwen2"]))
    _, tokenizer = load_base(base)
    tokens = Tokens(tokenizer, base.layout, base.marker_ids)
    ids = encode(EXAMPLE, tokens, 256).ids
    marker = {m: base.marker_ids[m] for m in ("<|file_sep|>", "<|fim_prefix|>", "<|fim_suffix|>")}
    marker |= {m: base.marker_ids[m] for m in ("<|fim_middle|>", "<|endoftext|>")}
    where = {m: ids.index(i) for m, i in marker.items()}
    assert where["<|file_sep|>"] == 0 and ids.count(marker["<|endoftext|>"]) == 1
    assert (
        where["<|file_sep|>"]
        < where["<|fim_prefix|>"]
        < where["<|fim_suffix|>"]
        < where["<|fim_middle|>"]
        < where["<|endoftext|>"]
        == len(ids) - 1
    )
    between = tokenizer.decode(ids[where["<|fim_prefix|>"] + 1 : where["<|fim_suffix|>"]])
    assert between == EXAMPLE.prefix
    middle = tokenizer.decode(ids[where["<|fim_middle|>"] + 1 : -1])
    assert middle == EXAMPLE.middle


def test_a_base_without_fim_or_reserved_tokens_is_refused(tiny: dict[str, Path]) -> None:
    with pytest.raises(TrainingError) as refused:
        describe_base(str(tiny["plain"]))
    message = str(refused.value)
    assert "\n" not in message and tiny["plain"].name in message
    assert "no FIM tokens of its own" in message and "no reserved tokens" in message


@pytest.mark.timeout(600)
@pytest.mark.parametrize("key", list(ARCHS))
def test_chain(
    key: str,
    tiny: dict[str, Path],
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Train a few steps in the base's own layout, export, pass the gate, pack, resolve."""
    from model.checkpoints.checkpoint import resolve_model

    code = main(train_args(dataset, tiny[key], tmp_path / "student"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    family = ARCHS[key].family
    assert summary["format"] == family and summary["base"]["architecture"] == tiny_arch(key)
    agreement = summary["agreement"]
    assert agreement["decisive"] >= 10, agreement
    assert agreement["decisive_agreement"] >= agreement["required"], agreement
    assert agreement["changed_by_adapter"] > 0, agreement
    # The checkpoint declares the layout it was trained in: served, it prompts in that one.
    resolved = resolve_model(summary["checkpoint"])
    assert resolved.fim_declared and resolved.fim is not None
    assert resolved.fim.family == family
    with capsys.disabled():
        sys.stderr.write(f"\n{key}: {summary['seconds']} s training, {agreement}\n")


def tiny_arch(key: str) -> str:
    return ARCHS[key].architecture


def test_markers_of_the_trained_families_are_looked_for() -> None:
    """Backends check the reserved-token families' markers as single tokens too."""
    assert {"<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>"} <= all_markers()


def test_llama_q_and_k_are_permuted_into_llama_cpps_order(tmp_path: Path) -> None:
    """B's rows of q/k (not v, not A) go into llama.cpp's order, and come back out of it."""
    import numpy as np
    import torch

    from model.training.train.arch import permute_rows
    from model.training.train.base import BaseModel
    from model.training.train.export import adapter_tensors, read_adapter, write_adapter_gguf

    base = BaseModel(tmp_path / "b.gguf", "0" * 64, "llama", 1, "b", heads=4, kv_heads=2)
    prefix = "base_model.model.model.layers.0.self_attn"
    torch.manual_seed(0)
    lora = {
        f"{prefix}.{proj}.lora_{factor}.default.weight": torch.randn(shape)
        for proj, rows in (("q_proj", 64), ("k_proj", 32), ("v_proj", 32))
        for factor, shape in (("A", (4, 64)), ("B", (rows, 4)))
    }
    out = adapter_tensors(lora, base)
    q_b, k_b = (
        lora[f"{prefix}.q_proj.lora_B.default.weight"],
        lora[f"{prefix}.k_proj.lora_B.default.weight"],
    )
    assert np.array_equal(
        out["blk.0.attn_q.weight.lora_b"], permute_rows(q_b.numpy(), 4).astype(np.float16)
    )
    assert np.array_equal(
        out["blk.0.attn_k.weight.lora_b"], permute_rows(k_b.numpy(), 2).astype(np.float16)
    )
    assert not np.array_equal(out["blk.0.attn_q.weight.lora_b"], q_b.numpy().astype(np.float16))
    v_b = lora[f"{prefix}.v_proj.lora_B.default.weight"]
    assert np.array_equal(out["blk.0.attn_v.weight.lora_b"], v_b.numpy().astype(np.float16))
    q_a = lora[f"{prefix}.q_proj.lora_A.default.weight"]
    assert np.array_equal(out["blk.0.attn_q.weight.lora_a"], q_a.numpy().astype(np.float16))
    path = tmp_path / "adapter.gguf"
    write_adapter_gguf(path, out, 8, base, name="x")
    back, alpha = read_adapter(path, base, lora)
    assert alpha == 8.0
    for name, tensor in lora.items():
        assert torch.equal(back[name], tensor.half().float()), name


def test_a_llama_export_without_the_permutation_fails_the_gate(
    tiny: dict[str, Path],
    dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The permutation is what makes llama.cpp agree: without it the gate refuses."""
    import dataclasses

    import model.training.train.export as export
    from model.training.train.arch import ARCHITECTURES

    unpermuted = dataclasses.replace(ARCHITECTURES["llama"], permuted_qk=False)
    monkeypatch.setattr(export, "ARCHITECTURES", {**ARCHITECTURES, "llama": unpermuted})
    assert main([*train_args(dataset, tiny["llama"], tmp_path / "out")]) == 1
    assert "is not usable" in capsys.readouterr().err
    agreement = json.loads((tmp_path / "out" / "training.json").read_text())["agreement"]
    assert agreement["decisive_agreement"] < 0.9


def test_the_recipes_projections_name_each_architectures_modules() -> None:
    from model.training.train.arch import ARCHITECTURES
    from model.training.train.recipe import ALL_PROJECTIONS

    modules = {name: a.target_modules(ALL_PROJECTIONS) for name, a in ARCHITECTURES.items()}
    assert modules["phi3"] == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert modules["starcoder2"] == ("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj")
    assert modules["qwen2"] == ALL_PROJECTIONS
    assert ARCHITECTURES["phi3"].target_modules(("k_proj", "up_proj")) == (
        "qkv_proj",
        "gate_up_proj",
    )
    assert ARCHITECTURES["starcoder2"].target_modules(("gate_proj",)) == ()
    # ...and an adapter's llama.cpp tensors name the roles back (for --targets in a refusal).
    assert ARCHITECTURES["phi3"].roles_of({"attn_qkv", "ffn_up"}) == (
        "q_proj",
        "k_proj",
        "v_proj",
        "gate_proj",
        "up_proj",
    )
    assert ARCHITECTURES["starcoder2"].roles_of({"ffn_up", "attn_q"}) == ("q_proj", "up_proj")
