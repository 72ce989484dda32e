"""apprentice train on a tiny random Gemma 3: layout, determinism, resume, no pickle, export."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from model.training.distill.dataset import Example  # noqa: E402
from model.training.train.base import BaseModel, TrainingError  # noqa: E402
from model.training.train.export import adapter_tensors, write_adapter_gguf  # noqa: E402
from model.training.train.fimformat import Tokens, encode  # noqa: E402
from model.training.train.loop import attach_lora, train_lora  # noqa: E402
from model.training.train.recipe import Recipe  # noqa: E402
from model.training.train.run import check_base_fits  # noqa: E402
from model.training.train.state import STEPS_DIR, completed_steps, latest_step, lora_parameters  # noqa: E402

MARKERS = {"<unused0>": 6, "<unused1>": 7, "<unused2>": 8}


class ByteTokenizer:
    """Bytes as tokens (offset past the specials), Gemma's marker ids, BOS 2."""

    bos_token_id = 2
    unk_token_id = 3

    def encode(
        self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = True
    ) -> list[int]:
        assert not add_special_tokens and split_special_tokens
        return [16 + b for b in text.encode("utf-8")]

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [MARKERS.get(t, self.unk_token_id) for t in tokens]


def tiny_model(seed: int = 0) -> Any:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        sliding_window=64,
    )
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config).eval()


def example(i: int, path: str = "m.py") -> Example:
    return Example(
        id=str(i),
        task=str(i),
        repo="r",
        path=path,
        language="python",
        kind="assign",
        source="truth",
        prefix=f"def f{i}(x):\n    y = ",
        suffix="\n    return y\n",
        middle=f"x + {i}",
    )


TINY_BASE = BaseModel(Path("tiny.gguf"), "0" * 64, "gemma3", 2, "tiny")
IDENTITY = {"base_sha256": "0" * 64, "dataset": "d", "format": "f", "settings": {}}


def settings(**overrides: Any) -> Recipe:
    values: dict[str, Any] = {
        "steps": 4,
        "learning_rate": 1e-2,
        "warmup_steps": 1,
        "rank": 4,
        "alpha": 8,
        "max_tokens": 64,
        "save_every": 2,
        "plain_ratio": 0.25,
    }
    values.update(overrides)
    return Recipe(**values)


def run(out: Path, recipe: Recipe, **kwargs: Any) -> tuple[Any, Any]:
    model = attach_lora(tiny_model(), recipe)
    train = [example(i) for i in range(5)]
    result = train_lora(
        model, Tokens(ByteTokenizer()), train, [example(9, "h.py")], out, recipe, IDENTITY, **kwargs
    )
    return model, result


def tensors(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in lora_parameters(model).items()}


def test_fim_layout_puts_suffix_first_and_ends_the_middle() -> None:
    tokens = Tokens(ByteTokenizer())
    encoded = encode(example(1), tokens, 256)
    ids = encoded.ids
    assert ids[0] == 2 and ids[1] == MARKERS["<unused1>"]
    assert MARKERS["<unused0>"] in ids[: encoded.prompt_len]
    middle = bytes(i - 16 for i in ids[encoded.prompt_len : -1]).decode()
    assert middle == "x + 1" and ids[-1] == MARKERS["<unused2>"]
    prompt_text = bytes(i - 16 for i in ids[: encoded.prompt_len] if i >= 16).decode()
    assert prompt_text.startswith("\n    return y\n") and prompt_text.endswith("    y = ")
    plain = encode(example(1), tokens, 256, plain=True)
    assert not set(MARKERS.values()) & set(plain.ids)


def test_marker_text_in_code_stays_text() -> None:
    tokens = Tokens(ByteTokenizer())
    sneaky = Example(**{**example(1).__dict__, "middle": "'<unused2>'"})
    ids = encode(sneaky, tokens, 256).ids
    assert ids.count(MARKERS["<unused2>"]) == 1  # only the real end marker


def test_a_base_without_the_markers_is_refused() -> None:
    class NoMarkers(ByteTokenizer):
        def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
            return [self.unk_token_id for _ in tokens]

    with pytest.raises(ValueError, match="<unused"):
        Tokens(NoMarkers())


def test_training_learns_and_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first, result = run(tmp_path / "a", settings(steps=12, save_every=100))
    assert result.heldout_loss_before is not None and result.heldout_loss_after is not None
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    second, _ = run(tmp_path / "b", settings(steps=12, save_every=100))
    a, b = tensors(first), tensors(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    third, _ = run(tmp_path / "c", settings(steps=12, save_every=100, seed=1))
    c = tensors(third)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight, _ = run(tmp_path / "straight", settings())

    def stop_at_three(report: Any) -> None:
        if report.step == 3:
            raise Interrupt

    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        run(out, settings(), progress=stop_at_three)
    assert [p.name for p in completed_steps(out)] == ["step-0000002"]
    resumed, result = run(out, settings())
    assert result.resumed_from == 2
    a, b = tensors(straight), tensors(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # Checkpoints hold safetensors and JSON only: nothing pickled.
    files = {p.suffix for p in (out / STEPS_DIR).rglob("*") if p.is_file()}
    assert files == {".safetensors", ".json"}


def test_a_finished_run_started_again_reports_its_loss(tmp_path: Path) -> None:
    _, first = run(tmp_path / "done", settings(steps=2))
    _, again = run(tmp_path / "done", settings(steps=2))
    assert again.resumed_from == 2 and again.train_loss == pytest.approx(first.train_loss)
    json.dumps(again.train_loss, allow_nan=False)
    # The time and tokens of the sessions before count: a resumed run reports the whole run.
    assert again.tokens == first.tokens > 0
    found = latest_step(tmp_path / "done")
    assert found is not None and again.seconds >= found[1]["seconds"] > 0


def test_resuming_another_run_is_refused(tmp_path: Path) -> None:
    run(tmp_path / "out", settings(steps=2))
    model = attach_lora(tiny_model(), settings(steps=2))
    other = {**IDENTITY, "base_sha256": "1" * 64}
    with pytest.raises(TrainingError, match="another base, dataset or recipe"):
        train_lora(
            model,
            Tokens(ByteTokenizer()),
            [example(1)],
            [],
            tmp_path / "out",
            settings(steps=2),
            other,
        )


def test_export_names_and_values(tmp_path: Path) -> None:
    import gguf

    model, _ = run(tmp_path / "t", settings(steps=2))
    lora = lora_parameters(model)
    out = adapter_tensors(lora, TINY_BASE)
    assert len(out) == len(lora) == 2 * 7 * 2
    a, b = out["blk.1.attn_q.weight.lora_a"], out["blk.1.attn_q.weight.lora_b"]
    assert a.shape == (4, 32) and b.shape == (32, 4)  # peft's A (r x in) and B (out x r)
    path = tmp_path / "adapter.gguf"
    write_adapter_gguf(path, out, 8, TINY_BASE, name="tiny student")
    reader = gguf.GGUFReader(str(path))
    fields = {name: reader.fields[name] for name in reader.fields}

    def text(name: str) -> str:
        field = fields[name]
        return bytes(field.parts[field.data[0]]).decode()

    assert text("general.type") == "adapter" and text("adapter.type") == "lora"
    assert text("general.architecture") == "gemma3"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    stored = {t.name: t for t in reader.tensors}
    assert set(stored) == set(out)
    import numpy as np

    assert b.dtype == np.float16  # half the size; llama.cpp's own adapters are f16
    assert stored["blk.1.attn_q.weight.lora_b"].tensor_type == gguf.GGMLQuantizationType.F16
    got = np.asarray(stored["blk.1.attn_q.weight.lora_b"].data).reshape(32, 4)
    assert np.array_equal(got, b)


def test_a_full_disk_leaves_no_adapter_file(tmp_path: Path) -> None:
    """Writing fails part-way (file size limit): nothing at the final path, no temp left."""
    (tmp_path / "adapter.gguf").write_bytes(b"previous good adapter")
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from pathlib import Path
        from model.training.train.base import BaseModel
        from model.training.train.export import write_adapter_gguf
        from model.runtime.api import ModelError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        base = BaseModel(Path("b.gguf"), "0" * 64, "gemma3", 1, "b")
        big = {{"blk.0.attn_q.weight.lora_a": np.ones((8, 40_000), np.float32),
               "blk.0.attn_q.weight.lora_b": np.ones((40_000, 8), np.float32)}}
        try:
            write_adapter_gguf(Path({str(tmp_path)!r}) / "adapter.gguf", big, 16, base, name="x")
        except ModelError as error:
            print("ERROR", error)
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "nothing was written" in done.stdout
    assert (tmp_path / "adapter.gguf").read_bytes() == b"previous good adapter"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.gguf"]


def test_a_full_disk_while_writing_a_dataset_file(tmp_path: Path, monkeypatch: Any) -> None:
    import errno

    from model.checkpoints.atomic_io import WriteError, write_text_atomic

    target = tmp_path / "train.jsonl"
    target.write_text("old\n")

    def no_space(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("model.checkpoints.atomic_io.os.fsync", no_space)
    with pytest.raises(WriteError, match="no space left"):
        write_text_atomic(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


def test_any_base_fits_a_dataset_unless_the_card_binds_one() -> None:
    """The examples are text: a v1 card's apprentice-gemma3 no longer keeps other bases out."""
    card = {"format": {"family": "apprentice-gemma3", "version": 1}}
    check_base_fits(card, TINY_BASE)
    llama = BaseModel(Path("llama.gguf"), "1" * 64, "llama", 2, "llama")
    check_base_fits(card, llama)
    bound = {**card, "base_sha256": "f" * 64}
    with pytest.raises(TrainingError, match="distilled for base"):
        check_base_fits(bound, TINY_BASE)


def test_describe_base_refuses_an_architecture_outside_the_table(tmp_path: Path) -> None:
    from model.training.train.base import describe_base
    from tests.gguf_writer import tiny_model as tiny_gguf

    path = tiny_gguf(architecture="bloom").write(tmp_path / "bloom.gguf")
    with pytest.raises(TrainingError) as refused:
        describe_base(str(path))
    message = str(refused.value)
    assert message.startswith("bloom.gguf is a bloom model; apprentice train takes ")
    assert "llama (Llama, CodeLlama, DeepSeek-Coder, Mistral)" in message
    assert all(name in message for name in ("qwen2", "starcoder2", "gemma2", "gemma3", "phi3"))


def test_summary_json_is_plain(tmp_path: Path) -> None:
    _, result = run(tmp_path / "s", settings(steps=2))
    state = json.loads(next((tmp_path / "s" / STEPS_DIR).glob("*/state.json")).read_text())
    assert state["step"] == 2 and state["run"] == IDENTITY
    assert len(result.log) == 2


def test_the_export_gate_counts_decisive_positions_only() -> None:
    """Near-ties may flip under llama.cpp's quantized arithmetic; the gate ignores them."""
    from model.training.train.agree import Agreement

    flaky = Agreement(40, 0.925, 0.4, 0.6, decisive=36, decisive_agreement=1.0)
    assert flaky.ok and flaky.as_json()["decisive"] == 36
    assert not Agreement(40, 0.99, 0.4, 0.6, decisive=36, decisive_agreement=0.9).ok
    assert not Agreement(40, 1.0, 0.4, 0.6, decisive=0, decisive_agreement=0.0).ok


def test_datasets_of_both_format_versions_load(tmp_path: Path) -> None:
    """v1 (its card named apprentice-gemma3) and v2 hold the same text parts; v3 is refused."""
    from model.training.distill.dataset import (
        CARD_JSON,
        DatasetError,
        dataset_format,
        load_dataset,
        write_jsonl,
    )

    assert dataset_format() == {"family": "text", "version": 2, "rendered": "apprentice-gemma3"}
    for fmt in ({"family": "apprentice-gemma3", "version": 1}, dataset_format()):
        directory = tmp_path / f"v{fmt['version']}"
        directory.mkdir()
        write_jsonl(directory / "train.jsonl", [example(1)])
        write_jsonl(directory / "heldout.jsonl", [])
        (directory / CARD_JSON).write_text(json.dumps({"format": fmt}))
        _, train, _ = load_dataset(directory)
        assert train == [example(1)]
    (tmp_path / "v2" / CARD_JSON).write_text(json.dumps({"format": {"version": 3}}))
    with pytest.raises(DatasetError, match="format v3; this trainer reads v1 and v2"):
        load_dataset(tmp_path / "v2")
