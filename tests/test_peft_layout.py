"""The student's LoRA in PEFT's layout (for vLLM): written by peft, packed, signed, verified,
installed, and ignored by the local llama.cpp path."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.checkpoints.checkpoint import HashCache, Policy, resolve_model, verify_checkpoint
from model.checkpoints.install import install, list_installed
from model.checkpoints.manifest import (
    MANIFEST_NAME,
    CheckpointError,
    FileEntry,
    Manifest,
    PeftEntry,
    manifest_toml,
    parse_manifest,
)
from model.checkpoints.pack import pack_checkpoint
from model.checkpoints.signing import generate_keypair
from model.runtime.default_model import sha256_file
from model.runtime.gguf import read_gguf
from tests.gguf_writer import tiny_model
from tests.lora_gguf import write_lora
from tests.test_install import Mirror

BASE_NAME = "Gemma 3 270m"
TARGETS = ("q_proj", "v_proj", "down_proj")


def fake_peft(folder: Path, *, rank: int = 4, config: dict[str, Any] | None = None) -> Path:
    """A PEFT folder as save_pretrained writes one (two layers, q_proj only), without torch."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": BASE_NAME,
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj"],
        "rank_pattern": {},
        **(config or {}),
    }
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(2):
        stem = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        tensors[f"{stem}.lora_A.weight"] = rng.standard_normal((rank, 32)).astype(np.float32)
        tensors[f"{stem}.lora_B.weight"] = rng.standard_normal((32, rank)).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tiny_model().write(tmp_path / "base.gguf")


@pytest.fixture
def adapter(tmp_path: Path, base: Path) -> Path:
    return write_lora(tmp_path / "student.gguf", read_gguf(base), ["blk.0.attn_q.weight"])


@pytest.fixture
def cache(tmp_path: Path) -> HashCache:
    return HashCache(tmp_path / "hashes.json")


@pytest.fixture
def checkpoint(tmp_path: Path, base: Path, adapter: Path) -> Path:
    """A checkpoint with a GGUF adapter and the PEFT folder, files copied into it."""
    packed = pack_checkpoint(
        tmp_path / "ckpt",
        base,
        name="acme-student",
        version="1.0",
        adapters=[(adapter, 1.0)],
        peft_adapter=fake_peft(tmp_path / "trained" / "peft"),
        link=False,
    )
    return packed.directory


def refusal(directory: Path, cache: HashCache, policy: Policy | None = None) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(directory, policy or Policy(), cache=cache)
    return caught.value


# -- written by peft ----------------------------------------------------------------------------


def trained_peft_model(name_or_path: str) -> Any:
    """A tiny random Gemma 3 with a seeded LoRA whose B matrices are not the zero init."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from tests.test_train import tiny_model as tiny_gemma

    model = tiny_gemma()
    # transformers names the GGUF's folder on the trainer's machine here; peft copies it.
    model.config._name_or_path = model.name_or_path = name_or_path
    torch.manual_seed(1)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=list(TARGETS), lora_dropout=0.0, task_type="CAUSAL_LM"
    )
    with warnings.catch_warnings():  # peft asks transformers by a name it has renamed
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        peft_model = peft.get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    return peft_model.eval()


def test_the_written_adapter_loads_back_onto_a_fresh_base_with_the_same_logits(
    tmp_path: Path,
) -> None:
    from model.training.train.peft_layout import write_peft_adapter

    trainer_folder = str(tmp_path / "home" / "trainer" / "models")
    peft_model = trained_peft_model(trainer_folder)
    torch = pytest.importorskip("torch")
    from peft import PeftModel

    from tests.test_train import tiny_model as tiny_gemma

    folder = write_peft_adapter(peft_model, tmp_path / "out" / "peft", BASE_NAME)
    assert folder == tmp_path / "out" / "peft"
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]  # no pickle (.bin), no model card naming the trainer's folder
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["peft"]  # nothing partial
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    assert sorted(config["target_modules"]) == sorted(TARGETS)
    assert config["base_model_name_or_path"] == BASE_NAME
    assert trainer_folder not in (folder / "adapter_config.json").read_text()
    # The live model keeps its own config: only the written one names the base.
    assert peft_model.peft_config["default"].base_model_name_or_path == trainer_folder

    ids = torch.tensor([[2, 17, 40, 99, 3, 250, 7]])
    with torch.no_grad():
        trained = peft_model(input_ids=ids).logits
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            loaded = PeftModel.from_pretrained(tiny_gemma(), str(folder)).eval()
        again = loaded(input_ids=ids).logits
        plain = tiny_gemma()(input_ids=ids).logits
    assert torch.equal(trained, again)
    assert not torch.allclose(trained, plain, atol=1e-3)  # the adapter does something


def test_a_config_left_with_a_local_path_is_refused_and_the_earlier_folder_kept(
    tmp_path: Path,
) -> None:
    from model.training.train.base import TrainingError
    from model.training.train.peft_layout import write_peft_adapter

    peft_model = trained_peft_model("")
    folder = write_peft_adapter(peft_model, tmp_path / "peft", BASE_NAME)
    before = (folder / "adapter_model.safetensors").read_bytes()
    peft_model.peft_config["default"].revision = str(tmp_path / "elsewhere")
    with pytest.raises(TrainingError, match="revision names a path"):
        write_peft_adapter(peft_model, folder, BASE_NAME)
    with pytest.raises(TrainingError, match="should be a model's name"):
        write_peft_adapter(peft_model, folder, str(tmp_path / "base.gguf"))
    assert (folder / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peft"]


def test_a_peft_folder_written_by_peft_packs_and_verifies(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    from model.training.train.peft_layout import write_peft_adapter

    folder = write_peft_adapter(trained_peft_model(""), tmp_path / "peft", BASE_NAME)
    packed = pack_checkpoint(
        tmp_path / "ckpt",
        base,
        name="s",
        version="1",
        adapters=[(adapter, 1.0)],
        peft_adapter=folder,
    )
    report = verify_checkpoint(packed.directory, cache=cache)
    assert report.checks[-1] == "peft" and report.manifest.peft is not None
    assert report.manifest.peft.base_model == BASE_NAME


# -- packed and verified --------------------------------------------------------------------


def test_pack_lists_the_peft_files_with_their_sha256_and_verify_checks_them(
    checkpoint: Path, tmp_path: Path, cache: HashCache
) -> None:
    report = verify_checkpoint(checkpoint, cache=cache)
    peft = report.manifest.peft
    assert peft is not None and peft.directory == "peft" and peft.base_model == BASE_NAME
    source = tmp_path / "trained" / "peft"
    assert [(f.file, f.sha256, f.size) for f in peft.files] == [
        (name, sha256_file(source / name), (source / name).stat().st_size)
        for name in ("adapter_config.json", "adapter_model.safetensors")
    ]
    assert [e.file for e in report.manifest.files()][-2:] == [
        "peft/adapter_config.json",
        "peft/adapter_model.safetensors",
    ]
    assert report.checks == ("manifest", "unsigned", "files", "headers", "adapters", "fim", "peft")
    text = (checkpoint / MANIFEST_NAME).read_text()
    assert "[peft]" in text and sha256_file(source / "adapter_model.safetensors") in text


def test_a_tampered_peft_weights_file_is_refused(checkpoint: Path, cache: HashCache) -> None:
    weights = checkpoint / "peft" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one weight changed
    weights.write_bytes(bytes(data))
    error = refusal(checkpoint, cache)
    assert (error.file, error.check) == (str(weights), "sha256")


def test_a_missing_peft_file_is_refused(checkpoint: Path, cache: HashCache) -> None:
    (checkpoint / "peft" / "adapter_config.json").unlink()
    error = refusal(checkpoint, cache)
    assert error.check == "presence" and error.file.endswith("peft/adapter_config.json")


def test_the_signature_covers_the_peft_files(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    key = tmp_path / "team.key"
    generate_keypair(key, "ACME ML")
    folder = fake_peft(tmp_path / "peft-src")
    packed = pack_checkpoint(
        tmp_path / "signed", base, name="s", version="1", adapters=[(adapter, 1.0)],
        peft_adapter=folder, sign_key=key, signer="ACME ML",
    )  # fmt: skip
    policy = Policy.from_specs([f"{key}.pub"], require=True)
    assert verify_checkpoint(packed.directory, policy, cache=cache).signature is not None
    # Whoever swaps the weights must change the manifest too, and then the signature fails.
    other = fake_peft(tmp_path / "other", config={"lora_alpha": 99})
    manifest = packed.directory / MANIFEST_NAME
    old = sha256_file(folder / "adapter_config.json")
    manifest.write_text(
        manifest.read_text().replace(old, sha256_file(other / "adapter_config.json"))
    )
    (packed.directory / "peft" / "adapter_config.json").write_bytes(
        (other / "adapter_config.json").read_bytes()
    )
    error = refusal(packed.directory, cache, policy)
    assert error.check == "signature"


def test_a_manifest_whose_peft_table_leaves_out_the_config_is_refused(
    checkpoint: Path, cache: HashCache
) -> None:
    manifest = checkpoint / MANIFEST_NAME
    text = manifest.read_text()
    start = text.index('[[peft.files]]\nfile = "adapter_config.json"')
    end = text.index("\n\n", start) + 2
    manifest.write_text(text[:start] + text[end:])
    error = refusal(checkpoint, cache)
    assert error.check == "manifest" and "does not list adapter_config.json" in error.detail


@pytest.mark.parametrize("directory", ["../elsewhere", "peft/inner", ".hidden", ""])
def test_a_peft_directory_outside_the_checkpoint_is_refused(directory: str) -> None:
    manifest = Manifest(
        name="s",
        version="1",
        base=FileEntry("base.gguf", "a" * 64, 1),
        peft=PeftEntry(directory, (FileEntry("adapter_config.json", "b" * 64, 2),)),
    )
    with pytest.raises(CheckpointError, match=r"peft\.directory"):
        parse_manifest(manifest_toml(manifest).encode())


def test_the_peft_table_reads_back_as_written() -> None:
    peft = PeftEntry(
        "peft",
        (FileEntry("adapter_config.json", "b" * 64, 2), FileEntry("w.safetensors", "c" * 64, 3)),
        base_model='name "quoted"',
    )
    manifest = Manifest(name="s", version="1", base=FileEntry("b.gguf", "a" * 64, 1), peft=peft)
    assert parse_manifest(manifest_toml(manifest).encode()).peft == peft


def test_a_checkpoint_without_the_peft_folder_stays_valid(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    packed = pack_checkpoint(tmp_path / "old", base, name="s", version="1", adapters=[(adapter, 1)])
    assert "[peft]" not in (packed.directory / MANIFEST_NAME).read_text()
    report = verify_checkpoint(packed.directory, cache=cache)
    assert report.manifest.peft is None and "peft" not in report.checks


def test_the_local_llama_path_loads_only_the_gguf_adapter(
    checkpoint: Path, adapter: Path, cache: HashCache
) -> None:
    resolved = resolve_model(str(checkpoint), cache=cache)
    assert [lora.path.name for lora in resolved.loras] == [adapter.name]
    assert all("peft" not in path.parts for path, _ in resolved.pins())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / "adapter_model.safetensors").unlink(), "no adapter_model.safetensors"),
        (
            lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin"),
            "adapter_model.bin \\(pickle",
        ),
        (lambda f: (f / "adapter_config.json").unlink(), "no adapter_config.json"),
        (
            lambda f: fake_peft(f, config={"base_model_name_or_path": "/home/me/models/gemma"}),
            "base_model_name_or_path names a path",
        ),
        (lambda f: fake_peft(f, config={"peft_type": "IA3"}), "not 'LORA'"),
        (lambda f: fake_peft(f, config={"r": 8}), "rank 4; the config says r = 8"),
        (
            lambda f: (f / "adapter_model.safetensors").write_bytes(b"\x10" + b"\0" * 7 + b"{}"),
            "not a safetensors file",
        ),
    ],
)
def test_pack_refuses_a_folder_that_is_not_a_clean_peft_lora(
    tmp_path: Path, base: Path, change: Any, message: str
) -> None:
    folder = fake_peft(tmp_path / "peft")
    change(folder)
    with pytest.raises((ValueError, CheckpointError), match=message):
        pack_checkpoint(tmp_path / "ckpt", base, name="s", version="1", peft_adapter=folder)
    assert not (tmp_path / "ckpt").exists()  # refused before anything was written


def test_weights_that_are_not_lora_matrices_are_refused(tmp_path: Path, base: Path) -> None:
    from safetensors.numpy import save_file

    folder = fake_peft(tmp_path / "peft")
    tensors = {"model.layers.0.self_attn.q_proj.weight": np.zeros((4, 4), np.float32)}
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="not a LoRA A or B matrix"):
        pack_checkpoint(tmp_path / "ckpt", base, name="s", version="1", peft_adapter=folder)


# -- installed ------------------------------------------------------------------------------


def test_install_copies_and_verifies_the_peft_folder(
    checkpoint: Path, tmp_path: Path, cache: HashCache
) -> None:
    data = tmp_path / "data"
    result = install(str(checkpoint), data_dir=data, cache=cache)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (result.path / "peft" / name).read_bytes() == (
            checkpoint / "peft" / name
        ).read_bytes()
    assert result.report is not None and "peft" in result.report.checks
    assert [i.problem for i in list_installed(data)] == [None]
    (result.path / "peft" / "adapter_model.safetensors").unlink()
    assert "peft/adapter_model.safetensors is missing" in str(list_installed(data)[0].problem)


def test_a_tampered_peft_file_installs_nothing(
    checkpoint: Path, tmp_path: Path, cache: HashCache
) -> None:
    weights = checkpoint / "peft" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    data = tmp_path / "data"
    with pytest.raises(CheckpointError, match=r"adapter_model\.safetensors: sha256"):
        install(str(checkpoint), data_dir=data, cache=cache)
    assert list_installed(data) == []


@pytest.fixture
def mirror(checkpoint: Path) -> Iterator[Mirror]:
    server = Mirror(checkpoint)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_install_from_a_mirror_downloads_the_peft_folder(
    mirror: Mirror, checkpoint: Path, tmp_path: Path, cache: HashCache
) -> None:
    result = install(mirror.url, data_dir=tmp_path / "data", cache=cache)
    assert sha256_file(result.path / "peft" / "adapter_model.safetensors") == sha256_file(
        checkpoint / "peft" / "adapter_model.safetensors"
    )
    assert ("peft/adapter_config.json", None) in mirror.requests


def test_a_checkpoint_on_the_embedded_base_installs_its_peft_folder(
    checkpoint: Path, tmp_path: Path, cache: HashCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.checkpoints.verification as verification

    embedded = checkpoint / "base.gguf"  # stands in for the assembled embedded model
    digest = sha256_file(embedded)
    monkeypatch.setattr(verification, "embedded_sha256", lambda: digest)
    monkeypatch.setattr(verification, "ensure_default_model", lambda: embedded)
    result = install(str(checkpoint), data_dir=tmp_path / "data", cache=cache)
    assert not (result.path / "base.gguf").exists()
    assert (result.path / "peft" / "adapter_model.safetensors").is_file()
