"""apprentice train --base CHECKPOINT continues a tuned checkpoint from its adapter.

A tiny llama (whose q/k LoRA rows the export permutes, so reading the adapter back must undo
it) is trained and packed; a second run on that checkpoint starts from the packed adapter,
records its sha256 in the run's identity, and packs one adapter on the original base. What
cannot be continued (two adapters; another rank, alpha or set of projections) is refused in
one line that says what to pass.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llama_cpp")

from lsp.cli import main  # noqa: E402
from model.runtime.default_model import sha256_file  # noqa: E402
from model.training.train.arch import ARCHITECTURES  # noqa: E402
from model.training.train.base import TrainingError, describe_base, load_base  # noqa: E402
from model.training.train.loop import attach_lora  # noqa: E402
from model.training.train.recipe import Recipe  # noqa: E402
from model.training.train.run import start_from_adapter  # noqa: E402
from model.training.train.state import latest_step, load_tensors, lora_parameters  # noqa: E402
from tests.tiny_archs import distill_shop, tiny_models, train_args  # noqa: E402

FIRST_RECIPE = Recipe(rank=4, alpha=8)  # what train_args trains with


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models(tmp_path_factory.mktemp("tiny"), ("llama",))["llama"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return distill_shop(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def first(llama: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained and packed tiny llama student: its output directory."""
    out = tmp_path_factory.mktemp("first") / "student"
    assert main(train_args(dataset, llama, out)) == 0
    return out


def _started(base_spec: str, recipe: Recipe = FIRST_RECIPE) -> dict[str, object]:
    base = describe_base(base_spec)
    model, _ = load_base(base)
    modules = ARCHITECTURES[base.architecture].target_modules(recipe.targets)
    peft_model = attach_lora(model, replace(recipe, targets=modules))
    start_from_adapter(peft_model, base, recipe)
    return {k: v.detach().clone() for k, v in lora_parameters(peft_model).items()}


def test_the_new_lora_starts_from_the_checkpoints_adapter(first: Path, llama: Path) -> None:
    base = describe_base(str(first / "checkpoint"))
    assert base.adapter is not None
    assert base.adapter_sha256 == sha256_file(first / "adapter.gguf")
    assert base.sha256 == sha256_file(llama)
    trained = load_tensors(first / "adapter.safetensors")
    for spec in (str(first / "checkpoint"), f"{llama}+{first / 'adapter.gguf'}"):
        started = _started(spec)
        assert set(started) == set(trained)
        for name, tensor in trained.items():
            # The adapter GGUF holds float16: equal to the trained weights rounded so.
            assert torch.equal(started[name], tensor.half().float()), name
    assert any(float(t.abs().sum()) > 0 for n, t in trained.items() if "lora_B" in n)


def test_a_continued_run_records_its_start_and_packs_one_adapter(
    first: Path, llama: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model.checkpoints.checkpoint import resolve_model

    out = tmp_path / "second"
    code = main(train_args(dataset, first / "checkpoint", out, steps=1))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    start = sha256_file(first / "adapter.gguf")
    assert summary["continued"] == {"adapter": "adapter.gguf", "sha256": start}
    found = latest_step(out)
    assert found is not None and found[1]["run"]["start_adapter_sha256"] == start
    assert summary["agreement"]["decisive_agreement"] >= summary["agreement"]["required"]
    resolved = resolve_model(summary["checkpoint"])
    assert resolved.manifest is not None and len(resolved.manifest.adapters) == 1
    assert resolved.manifest.base.sha256 == sha256_file(llama)
    assert resolved.loras[0].sha256 == sha256_file(out / "adapter.gguf") != start
    assert resolved.fim is not None and resolved.fim.family == "codellama"


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--rank", "8", "has LoRA rank 4; continue it with --rank 4"),
        ("--alpha", "16", "was trained with LoRA alpha 8; continue it with --alpha 8"),
        (
            "--targets",
            "q_proj,v_proj",
            "continue it with --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        ),
    ],
)
def test_a_checkpoint_of_another_recipe_is_refused(
    first: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    says: str,
) -> None:
    code = main([*train_args(dataset, first / "checkpoint", tmp_path / "out"), flag, value])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # progress lines come first
    assert code == 1 and last.startswith("apprentice: ") and says in last, last


def test_a_checkpoint_with_two_adapters_is_refused(
    first: Path, llama: Path, tmp_path: Path
) -> None:
    from model.checkpoints.pack import pack_checkpoint

    second = tmp_path / "other.gguf"
    shutil.copyfile(first / "adapter.gguf", second)
    packed = pack_checkpoint(
        tmp_path / "two",
        llama,
        name="two",
        version="1.0.0",
        adapters=[(first / "adapter.gguf", 1.0), (second, 0.5)],
    )
    with pytest.raises(TrainingError, match="carries 2 adapters; training continues one"):
        describe_base(str(packed.directory))
