"""Team checkpoints: pack/verify round trips, every refusal, signatures and trust, resolution."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest

from model.checkpoints.checkpoint import (
    OPEN_POLICY,
    HashCache,
    Policy,
    describe_model,
    load_checkpoint,
    resolve_model,
    verify_checkpoint,
)
from model.checkpoints.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    CheckpointError,
    FileEntry,
    FimSpec,
    Manifest,
    manifest_toml,
    parse_manifest,
)
from model.checkpoints.pack import pack_checkpoint, parse_adapter_option
from model.checkpoints.signing import generate_keypair, parse_public_key
from model.runtime.api import ModelNotFoundError
from model.runtime.gguf import read_gguf
from tests.gguf_writer import tiny_model
from tests.lora_gguf import write_lora


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A small GGUF with Qwen-style FIM tokens (llama architecture)."""
    return tiny_model().write(tmp_path / "base.gguf")


@pytest.fixture
def adapter(tmp_path: Path, base: Path) -> Path:
    return write_lora(tmp_path / "team.lora.gguf", read_gguf(base), ["blk.0.attn_q.weight"])


@pytest.fixture
def cache(tmp_path: Path) -> HashCache:
    return HashCache(tmp_path / "hashes.json")


def pack(tmp_path: Path, base: Path, adapter: Path | None = None, **extra: object) -> Path:
    adapters = [(adapter, 0.75)] if adapter else []
    options: dict = {"name": "acme", "version": "1.2.0", "adapters": adapters, **extra}
    return pack_checkpoint(tmp_path / "ckpt", base, **options).directory


def edit_manifest(directory: Path, old: str, new: str) -> None:
    path = directory / MANIFEST_NAME
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def refusal(directory: Path, cache: HashCache, policy: Policy = OPEN_POLICY) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(directory, policy, cache=cache)
    return caught.value


# -- round trips ------------------------------------------------------------------------------


def test_pack_then_verify_round_trip(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    packed = pack_checkpoint(
        tmp_path / "ckpt",
        base,
        name="acme",
        version="1.2.0",
        adapters=[(adapter, 0.75)],
        stop=["\n\n\n"],
        licence="Apache-2.0",
        embedding_model="all-MiniLM-L6-v2",
        provenance={"dataset_card": "card.md", "training_command": "apprentice train ..."},
    )
    assert len(packed.digest) == 64
    report = verify_checkpoint(packed.directory, cache=cache)
    manifest = report.manifest
    assert report.digest == packed.digest
    assert (manifest.name, manifest.version, manifest.licence) == ("acme", "1.2.0", "Apache-2.0")
    assert manifest.base.size == base.stat().st_size
    assert manifest.adapters[0].scale == 0.75
    assert manifest.adapters[0].base_sha256 == manifest.base.sha256
    # Detected from the GGUF: its FIM tokens are Qwen's, its context 2048.
    assert manifest.fim.template == "qwen2.5-coder"
    assert manifest.fim.prefix is not None and manifest.fim.prefix.text == "<|fim_prefix|>"
    assert manifest.fim.prefix.id == 6
    assert manifest.context_length == 2048
    assert manifest.stop == ("\n\n\n",)
    assert manifest.provenance["training_command"] == "apprentice train ..."
    assert report.checks == ("manifest", "unsigned", "files", "headers", "adapters", "fim")


def test_the_emitter_writes_what_tomllib_reads_back() -> None:
    tricky = 'quote " back\\slash\nnew line\ttab \x01 ünïcode'
    manifest = Manifest(
        name="acme",
        version="2.0+build.1",
        base=FileEntry("base.gguf", "a" * 64, 12),
        stop=(tricky, "</s>"),
        description=tricky,
        fim=FimSpec(),
        provenance={"steps": 800, "lr": 0.0002, "flags": ["a", tricky], "ok": True},
    )
    again = parse_manifest(manifest_toml(manifest).encode())
    assert again == manifest


def test_packing_resolves_a_custom_fim_layout_to_token_ids(tmp_path: Path, base: Path) -> None:
    directory = pack(tmp_path, base, fim="spm:<|fim_prefix|>,<|fim_suffix|>")
    resolved = load_checkpoint(directory, cache=HashCache(tmp_path / "h.json"))
    assert resolved.fim is not None
    assert (resolved.fim.order, resolved.fim.prefix, resolved.fim.middle) == (
        "spm",
        "<|fim_prefix|>",
        None,
    )
    assert resolved.fim_declared and resolved.verified


def test_packing_refuses_fim_markers_the_vocabulary_lacks(tmp_path: Path, base: Path) -> None:
    with pytest.raises(ValueError, match="<nope>"):
        pack(tmp_path, base, fim="psm:<nope>,<|fim_suffix|>")
    assert not (tmp_path / "ckpt" / MANIFEST_NAME).exists()


def test_packing_refuses_an_adapter_for_another_model(tmp_path: Path, base: Path) -> None:
    wrong = write_lora(
        tmp_path / "wrong.gguf",
        read_gguf(base),
        ["blk.0.attn_q.weight"],
        shape_of={"blk.0.attn_q.weight": (512, 256)},
    )
    with pytest.raises(CheckpointError, match="tensor layout"):
        pack(tmp_path, base, wrong)
    assert not (tmp_path / "ckpt").exists()


def test_adapter_option_parsing() -> None:
    assert parse_adapter_option("a.gguf:0.5") == ("a.gguf", 0.5)
    assert parse_adapter_option("a.gguf") == ("a.gguf", 1.0)
    assert parse_adapter_option("C:/x/a.gguf") == ("C:/x/a.gguf", 1.0)


# -- refusals: each names the file and the check ------------------------------------------------


def test_a_wrong_hash_is_refused(tmp_path: Path, base: Path, cache: HashCache) -> None:
    directory = pack(tmp_path, base)
    copy = directory / "base.gguf"
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    copy.unlink()  # it is a hard link to the source: replace, never write through
    copy.write_bytes(bytes(data))
    error = refusal(directory, cache)
    assert error.check == "sha256" and error.file == str(copy)


def test_a_truncated_file_is_refused(tmp_path: Path, base: Path, cache: HashCache) -> None:
    directory = pack(tmp_path, base, link=False)
    with (directory / "base.gguf").open("r+b") as f:
        f.truncate(100)
    error = refusal(directory, cache)
    assert error.check == "size" and "truncated" in str(error)


def test_a_missing_file_is_refused(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    (directory / adapter.name).unlink()
    error = refusal(directory, cache)
    assert error.check == "presence" and error.file.endswith(adapter.name)


def test_a_manifest_that_is_not_toml_is_refused(
    tmp_path: Path, base: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base)
    (directory / MANIFEST_NAME).write_text("name = [unclosed\n")
    error = refusal(directory, cache)
    assert error.check == "manifest" and "not valid TOML" in str(error)


def test_a_manifest_missing_a_field_is_refused(
    tmp_path: Path, base: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base)
    edit_manifest(directory, 'version = "1.2.0"\n', "")
    error = refusal(directory, cache)
    assert error.check == "manifest" and "version is missing" in str(error)


@pytest.mark.parametrize(
    "nested", ["[" * 10_000 + "]" * 10_000, "{a=" * 10_000 + "1" + "}" * 10_000]
)
def test_a_deeply_nested_manifest_is_refused_clearly(
    tmp_path: Path, base: Path, cache: HashCache, nested: str
) -> None:
    directory = pack(tmp_path, base)
    with (directory / MANIFEST_NAME).open("a") as f:
        f.write(f"[provenance]\nx = {nested}\n")
    error = refusal(directory, cache)
    assert error.check == "manifest" and error.file.endswith(MANIFEST_NAME)
    assert "nested too deeply" in str(error)


def test_a_nul_byte_in_a_file_name_is_refused_naming_the_entry(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    edit_manifest(directory, 'file = "team.lora.gguf"', 'file = "team\\u0000.lora.gguf"')
    error = refusal(directory, cache)
    assert error.check == "manifest" and error.file.endswith(MANIFEST_NAME)
    assert "adapters[0].file" in str(error) and "file name contains a NUL byte" in str(error)


@pytest.mark.parametrize("value", ["-1", "0", str(10**12)])
def test_an_absurd_context_length_is_refused(
    tmp_path: Path, base: Path, cache: HashCache, value: str
) -> None:
    directory = pack(tmp_path, base)
    edit_manifest(directory, "context_length = 2048", f"context_length = {value}")
    error = refusal(directory, cache)
    assert error.check == "manifest" and f"context_length {value} is out of range" in str(error)


def test_an_unknown_context_length_is_left_out_of_the_manifest(tmp_path: Path, base: Path) -> None:
    packed = parse_manifest((pack(tmp_path, base) / MANIFEST_NAME).read_bytes())
    text = manifest_toml(dataclasses.replace(packed, context_length=0))
    assert "context_length" not in text
    assert parse_manifest(text.encode()).context_length == 0


def test_a_missing_manifest_is_refused(tmp_path: Path, cache: HashCache) -> None:
    error = refusal(tmp_path, cache)
    assert error.check == "manifest" and error.file.endswith(MANIFEST_NAME)


def test_a_newer_schema_is_refused_clearly(tmp_path: Path, base: Path, cache: HashCache) -> None:
    directory = pack(tmp_path, base)
    edit_manifest(directory, "schema = 1", "schema = 7")
    error = refusal(directory, cache)
    assert error.check == "schema" and "newer" in str(error) and "upgrade" in str(error)


def test_a_newer_minimum_apprentice_is_refused(
    tmp_path: Path, base: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base)
    edit_manifest(directory, 'min_apprentice = "0.1.0"', 'min_apprentice = "9.0"')
    assert refusal(directory, cache).check == "version"


def test_an_adapter_bound_to_another_base_is_refused(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    sha = read_sha(directory)
    edit_manifest(directory, f'base_sha256 = "{sha}"', f'base_sha256 = "{"0" * 64}"')
    error = refusal(directory, cache)
    assert error.check == "base binding" and error.file.endswith(adapter.name)


def read_sha(directory: Path) -> str:
    return parse_manifest((directory / MANIFEST_NAME).read_bytes()).base.sha256


def swap_adapter(directory: Path, name: str, replacement: Path) -> None:
    """Put another adapter in place and fix its size and hash (a well-formed lie)."""
    from model.runtime.default_model import sha256_file

    target = directory / name
    old = parse_manifest((directory / MANIFEST_NAME).read_bytes()).adapters[0]
    target.unlink()
    target.write_bytes(replacement.read_bytes())
    edit_manifest(directory, old.sha256, sha256_file(target))
    edit_manifest(directory, f"size = {old.size}", f"size = {target.stat().st_size}")


def test_an_adapter_for_another_architecture_is_refused(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    other = write_lora(
        tmp_path / "other.gguf", read_gguf(base), ["blk.0.attn_q.weight"], architecture="qwen2"
    )
    swap_adapter(directory, adapter.name, other)
    error = refusal(directory, cache)
    assert error.check == "architecture" and "qwen2" in str(error)


def test_an_adapter_shaped_for_another_model_is_refused(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    other = write_lora(
        tmp_path / "other.gguf",
        read_gguf(base),
        ["blk.0.attn_q.weight"],
        shape_of={"blk.0.attn_q.weight": (256, 512)},
    )
    swap_adapter(directory, adapter.name, other)
    error = refusal(directory, cache)
    assert error.check == "tensor layout" and "blk.0.attn_q.weight" in str(error)


def test_an_adapter_naming_tensors_the_base_lacks_is_refused(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    other = write_lora(
        tmp_path / "other.gguf",
        read_gguf(base),
        ["blk.7.attn_q.weight"],
        shape_of={"blk.7.attn_q.weight": (256, 256)},
    )
    swap_adapter(directory, adapter.name, other)
    error = refusal(directory, cache)
    assert error.check == "tensor layout" and "no tensor blk.7.attn_q.weight" in str(error)


def test_fim_tokens_the_vocabulary_lacks_are_refused(
    tmp_path: Path, base: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base)
    edit_manifest(
        directory,
        'prefix = { text = "<|fim_prefix|>", id = 6 }',
        'prefix = { text = "<|fim_prefix|>", id = 3 }',
    )
    error = refusal(directory, cache)
    assert error.check == "FIM tokens" and "'hello'" in str(error)
    edit_manifest(directory, "id = 3 }", "id = 99999 }")
    assert "outside" in str(refusal(directory, cache))


# -- signatures and trust ---------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """Two key pairs: the team's and a stranger's (private key paths)."""
    team, stranger = tmp_path / "team.key", tmp_path / "stranger.key"
    generate_keypair(team, "ACME ML")
    generate_keypair(stranger, "someone")
    return team, stranger


def test_a_signed_checkpoint_verifies_under_a_trust_policy(
    tmp_path: Path, base: Path, keys: tuple[Path, Path], cache: HashCache
) -> None:
    team, _ = keys
    directory = pack(tmp_path, base, sign_key=team, signer="ACME ML")
    policy = Policy.from_specs([str(team) + ".pub"], require=True)
    report = verify_checkpoint(directory, policy, cache=cache)
    assert report.signature is not None and report.signature.trusted
    assert report.signature.signer == "ACME ML"
    assert report.signature.key_id == parse_public_key(str(team) + ".pub").key_id
    # The key text itself works as well as its file.
    line = (tmp_path / "team.key.pub").read_text()
    assert verify_checkpoint(directory, Policy.from_specs([line]), cache=cache).signature


def test_a_manifest_changed_after_signing_is_refused_without_any_policy(
    tmp_path: Path, base: Path, keys: tuple[Path, Path], cache: HashCache
) -> None:
    directory = pack(tmp_path, base, sign_key=keys[0])
    edit_manifest(directory, 'name = "acme"', 'name = "evil"')
    error = refusal(directory, cache)
    assert error.check == "signature" and "does not match" in str(error)


def test_a_deeply_nested_signature_file_is_refused_clearly(
    tmp_path: Path, base: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base)
    (directory / SIGNATURE_NAME).write_text("x = " + "[" * 10_000 + "]" * 10_000 + "\n")
    error = refusal(directory, cache)
    assert error.check == "signature" and "unreadable signature file" in str(error)


def test_an_unsigned_checkpoint_is_refused_under_a_policy(
    tmp_path: Path, base: Path, keys: tuple[Path, Path], cache: HashCache
) -> None:
    directory = pack(tmp_path, base)
    error = refusal(directory, cache, Policy.from_specs([str(keys[0]) + ".pub"], require=True))
    assert error.check == "signature" and "not signed" in str(error)
    error = refusal(directory, cache, Policy(require_signature=True))
    assert error.check == "signature"


def test_a_signature_by_an_untrusted_key_is_refused(
    tmp_path: Path, base: Path, keys: tuple[Path, Path], cache: HashCache
) -> None:
    team, stranger = keys
    directory = pack(tmp_path, base, sign_key=stranger, signer="someone")
    error = refusal(directory, cache, Policy.from_specs([str(team) + ".pub"], require=True))
    assert error.check == "signature" and "not among the trusted keys" in str(error)


def test_a_signature_from_another_checkpoint_is_refused(
    tmp_path: Path, base: Path, keys: tuple[Path, Path], cache: HashCache
) -> None:
    signed = pack(tmp_path, base, sign_key=keys[0])
    other = pack_checkpoint(tmp_path / "other", base, name="acme", version="9").directory
    (other / "apprentice-model.sig").write_bytes((signed / "apprentice-model.sig").read_bytes())
    assert refusal(other, cache).check == "signature"


def test_bad_public_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a public key"):
        parse_public_key("ssh-rsa AAAA")
    with pytest.raises(ValueError, match="32 bytes"):
        parse_public_key("apprentice-ed25519 AAAA")


def test_keygen_refuses_to_overwrite_and_keeps_the_private_key_private(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="already exists"):
        generate_keypair(tmp_path / "k")


# -- hashing once per content, resolution ----------------------------------------------------


def test_files_are_hashed_once_per_content(tmp_path: Path, base: Path, cache: HashCache) -> None:
    directory = pack(tmp_path, base, link=False)
    verify_checkpoint(directory, cache=cache)
    assert cache.hashed == 1
    verify_checkpoint(directory, cache=HashCache(cache.path))  # a new process: from disk
    verify_checkpoint(directory, cache=cache)
    assert cache.hashed == 1
    path = directory / "base.gguf"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    with path.open("r+b") as f:  # same size, same inode: only mtime and ctime move
        f.write(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert refusal(directory, cache).check == "sha256"
    assert cache.hashed == 2


def test_resolve_a_checkpoint_directory(tmp_path: Path, base: Path, adapter: Path) -> None:
    directory = pack(tmp_path, base, adapter, stop=["<|end|>"], signer="")
    resolved = resolve_model(str(directory), cache=HashCache(tmp_path / "h.json"))
    assert resolved.verified and resolved.source == "checkpoint"
    assert resolved.gguf == directory / "base.gguf"
    assert [(lora.path.name, lora.scale) for lora in resolved.loras] == [(adapter.name, 0.75)]
    assert resolved.stops == ("<|end|>",)
    assert resolved.fim is not None and resolved.fim.family == "qwen2.5-coder"
    described = resolved.describe()
    assert (described["name"], described["version"], described["verified"]) == (
        "acme",
        "1.2.0",
        True,
    )
    # One description: the resolved model and its directory read the same.
    assert described == describe_model(directory)
    assert described["adapters"] == [{"file": adapter.name, "scale": 0.75}]
    assert described["fim"] == "qwen2.5-coder" and described["stop"] == ["<|end|>"]
    with_header = describe_model(resolved, header=True)
    assert with_header["base"]["architecture"] == "llama"  # type: ignore[index]
    assert with_header == {**described, "base": with_header["base"]}


def test_a_bare_gguf_still_loads_logged_as_unverified(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="model.checkpoints.checkpoint"):
        resolved = resolve_model(str(base))
    assert resolved.gguf == base and not resolved.verified and resolved.manifest is None
    assert not resolved.fim_declared
    assert any("unverified" in r.getMessage() for r in caplog.records)


def test_a_bare_gguf_is_refused_when_signatures_are_required(base: Path) -> None:
    with pytest.raises(CheckpointError, match="signature"):
        resolve_model(str(base), policy=Policy(require_signature=True))


def test_an_unknown_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="apprentice model list"):
        resolve_model("nobody@1.0", data_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="model file not found"):
        resolve_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelNotFoundError, match="not NAME or NAME@VERSION"):
        resolve_model("acme@", data_dir=tmp_path)


def test_info_describes_a_broken_checkpoint_without_failing(
    tmp_path: Path, base: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, link=False)
    with (directory / "base.gguf").open("r+b") as f:
        f.truncate(100)
    info = describe_model(directory)
    assert info["name"] == "acme" and info["verified"] is False
    assert "size check failed" in str(info["problem"])
    assert info["adapters"] == [] and info["source"] == "checkpoint"


def test_the_evaluation_harness_takes_a_checkpoint(tmp_path: Path, base: Path) -> None:
    from lsp.evaluation.driver import parse_model

    directory = pack(tmp_path, base)
    spec = parse_model(f"team={directory}", n_threads=1)
    resolved = spec.settings.resolve()
    assert spec.label == "team" and resolved.verified and resolved.manifest is not None
    assert resolved.manifest.label == "acme@1.2.0"


def test_info_of_a_manifest_with_dates_in_its_provenance_is_json(
    tmp_path: Path, base: Path
) -> None:
    import json

    directory = pack(tmp_path, base)
    with (directory / MANIFEST_NAME).open("a") as f:
        f.write("[provenance]\ntrained = 2026-12-01T10:00:00Z\n")
    info = describe_model(directory, header=True)
    assert json.loads(json.dumps(info))["provenance"]["trained"].startswith("2026-12-01")


def test_a_model_where_an_adapter_belongs_is_refused(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache
) -> None:
    directory = pack(tmp_path, base, adapter)
    swap_adapter(directory, adapter.name, base)  # a whole model, not a LoRA
    error = refusal(directory, cache)
    assert error.check == "adapter type" and error.file.endswith(adapter.name)


# -- a checkpoint that leaves out the embedded base ---------------------------------------------


def test_a_checkpoint_without_its_base_uses_the_embedded_model_when_that_is_the_base(
    tmp_path: Path, base: Path, adapter: Path, cache: HashCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.checkpoints.verification as verification
    from model.runtime.default_model import sha256_file

    directory = pack(tmp_path, base, adapter, link=False)
    (directory / "base.gguf").unlink()  # a shipped student: its adapter and manifest alone
    assert refusal(directory, cache).check == "presence"  # the base is not the embedded one

    embedded = tmp_path / "embedded" / "model.gguf"
    embedded.parent.mkdir()
    embedded.write_bytes(base.read_bytes())
    monkeypatch.setattr(verification, "embedded_sha256", lambda: sha256_file(base))
    monkeypatch.setattr(verification, "ensure_default_model", lambda: embedded)
    report = verify_checkpoint(directory, cache=cache)
    assert "embedded base" in report.checks and report.base_path == embedded
    resolved = load_checkpoint(directory, cache=cache)
    assert resolved.gguf == embedded and resolved.loras[0].path == directory / adapter.name
    assert describe_model(directory)["verified"] is True

    (directory / adapter.name).write_bytes(b"GGUF" + bytes(64))  # the adapter is still checked
    assert refusal(directory, cache).check in {"size", "sha256"}


def test_base_student_and_the_default_name_the_shipped_models(
    tmp_path: Path, base: Path, adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.checkpoints.checkpoint as checkpoint
    import model.checkpoints.verification as verification

    monkeypatch.setattr(verification, "ensure_default_model", lambda: base)
    monkeypatch.setattr(checkpoint, "SHIPPED_STUDENT", tmp_path / "nothing-shipped")
    with pytest.raises(ModelNotFoundError, match="make student"):
        resolve_model("student")
    monkeypatch.setattr(checkpoint, "SHIPPED_STUDENT", pack(tmp_path, base, adapter))
    student = resolve_model("student")
    assert student.source == "checkpoint" and student.loras
    assert resolve_model("base").source == "embedded" and not resolve_model("base").loras
    monkeypatch.setattr(checkpoint, "DEFAULT_IS_STUDENT", False)
    assert resolve_model(None).source == "embedded"
    monkeypatch.setattr(checkpoint, "DEFAULT_IS_STUDENT", True)
    assert resolve_model(None).loras == student.loras
