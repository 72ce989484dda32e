"""Tests for the pure-Python GGUF reader, on synthetic files and on the embedded Gemma model."""

from __future__ import annotations

import random
import struct
import time
import tracemalloc
from pathlib import Path

import pytest

from model.runtime.api import InvalidModelError, ModelError, ModelNotFoundError
from model.runtime.gguf import GgufInfo, describe, read_gguf, validate_gguf
from tests.gguf_writer import (
    OLD_FIM_KEYS,
    VOCAB,
    Gguf,
    Tensor,
    gstr,
    kv_str,
    kv_u32,
    tiny_model,
)

# --- parsing -------------------------------------------------------------------------


def test_reads_header_metadata_and_tensors(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "tiny.gguf")
    info = read_gguf(path)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.name == "Tiny Test"
    assert info.context_length == 2048
    assert info.file_type == "Q4_K_M"
    assert info.tensor_type == "Q4_K"
    assert info.quantization == "Q4_K_M"
    assert info.tensor_count == 4
    assert info.parameter_count == 256 * len(VOCAB) + 256 * 256 + 256 * 64 + 256
    assert info.vocab_size == len(VOCAB)
    assert info.size_bytes == path.stat().st_size
    assert info.metadata["llama.context_length"] == 2048
    # arrays are summarized, never kept
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.arrays["tokenizer.ggml.tokens"] == ("string", len(VOCAB))
    assert info.arrays["tokenizer.ggml.scores"] == ("float32", 1)
    assert info.data_offset % 32 == 0


def test_version_2_is_supported(tmp_path: Path) -> None:
    model = tiny_model()
    model.version = 2
    assert read_gguf(model.write(tmp_path / "v2.gguf")).version == 2


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    model = Gguf(kvs=[kv_str("general.architecture", "qwen2")])
    info = read_gguf(model.write(tmp_path / "my-model.Q8_0.gguf"))
    assert info.name == "my-model.Q8_0"
    assert info.context_length == 0
    assert info.file_type == ""
    assert info.fim_tokens == {}
    assert not info.has_fim


@pytest.mark.parametrize("fim_first", [False, True], ids=["ids-after-vocab", "ids-before-vocab"])
def test_new_fim_keys_map_roles_to_token_text(tmp_path: Path, fim_first: bool) -> None:
    info = read_gguf(tiny_model(fim_first=fim_first).write(tmp_path / "m.gguf"))
    assert info.fim_token_ids == {
        "prefix": 6,
        "suffix": 7,
        "middle": 8,
        "pad": 9,
        "repo": 10,
        "sep": 11,
    }
    assert info.fim_tokens == {
        "prefix": "<|fim_prefix|>",
        "suffix": "<|fim_suffix|>",
        "middle": "<|fim_middle|>",
        "pad": "<|fim_pad|>",
        "repo": "<|repo_name|>",
        "sep": "<|file_sep|>",
    }
    assert info.has_fim


def test_legacy_fim_keys(tmp_path: Path) -> None:
    info = read_gguf(tiny_model(fim=OLD_FIM_KEYS).write(tmp_path / "old.gguf"))
    assert info.fim_tokens == {
        "prefix": "<|fim_prefix|>",
        "suffix": "<|fim_suffix|>",
        "middle": "<|fim_middle|>",
    }
    assert info.has_fim


def test_new_fim_keys_win_over_legacy_and_bad_ids_are_dropped(tmp_path: Path) -> None:
    fim = [
        kv_u32("tokenizer.ggml.prefix_token_id", 3),
        kv_u32("tokenizer.ggml.fim_pre_token_id", 6),
        kv_u32("tokenizer.ggml.fim_suf_token_id", 99_999),  # outside the vocabulary
    ]
    info = read_gguf(tiny_model(fim=fim).write(tmp_path / "m.gguf"))
    assert info.fim_tokens == {"prefix": "<|fim_prefix|>"}
    assert not info.has_fim


def test_known_fim_markers_are_looked_up_in_the_vocab(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "m.gguf")
    markers = ["<|fim_prefix|>", "<fim_prefix>", "<|file_sep|>", "hello", ""]
    info = read_gguf(path, markers=markers)
    assert info.known_fim_markers == frozenset({"<|fim_prefix|>", "<|file_sep|>", "hello"})
    assert read_gguf(path).known_fim_markers == frozenset()


@pytest.mark.parametrize(
    ("ftype", "name"),
    [
        (0, "F32"),
        (1, "F16"),
        (7, "Q8_0"),
        (15, "Q4_K_M"),
        (15 | 1024, "Q4_K_M"),  # the "guessed" flag llama.cpp may set
        (18, "Q6_K"),
        (32, "BF16"),
        (999, "FTYPE_999"),
    ],
)
def test_file_type_names(tmp_path: Path, ftype: int, name: str) -> None:
    model = Gguf(kvs=[kv_u32("general.file_type", ftype)])
    assert read_gguf(model.write(tmp_path / "m.gguf")).quantization == name


def test_quantization_falls_back_to_dominant_tensor_type(tmp_path: Path) -> None:
    tensors = [
        Tensor("a.weight", [64, 4], "Q8_0"),
        Tensor("b.weight", [64, 4], "Q8_0"),
        Tensor("c.weight", [256, 4], "Q4_K"),
        Tensor("a.norm", [64], "F32"),
        Tensor("b.norm", [64], "F32"),
        Tensor("c.norm", [64], "F32"),
    ]
    info = read_gguf(Gguf(tensors=tensors).write(tmp_path / "m.gguf"))
    # 1-D norms stay F32 in every quantization, so they do not vote
    assert info.tensor_type == "Q8_0"
    assert info.quantization == "Q8_0"


def test_describe(tmp_path: Path) -> None:
    info = validate_gguf(tiny_model().write(tmp_path / "m.gguf"))
    summary = describe(info)
    assert set(summary) == {
        "path",
        "name",
        "architecture",
        "size_bytes",
        "size_human",
        "parameters",
        "parameters_human",
        "context_length",
        "quantization",
        "fim",
        "fim_tokens",
    }
    assert summary["fim"] is True
    assert summary["quantization"] == "Q4_K_M"
    assert summary["fim_tokens"] == info.fim_tokens


@pytest.mark.parametrize(
    ("params", "size", "params_human", "size_human"),
    [
        (268_098_176, 253_113_024, "268M", "241.4 MiB"),
        (1_543_714_304, 1_117_320_768, "1.5B", "1.0 GiB"),
        (7_241_732_096, 4_368_439_584, "7.2B", "4.1 GiB"),
        (13_000_000_000, 512, "13B", "512 B"),
        (999, 2048, "999", "2.0 KiB"),
        (1_000, 1023, "1K", "1023 B"),
    ],
)
def test_describe_human_sizes(params: int, size: int, params_human: str, size_human: str) -> None:
    info = GgufInfo(
        path=Path("m.gguf"),
        version=3,
        size_bytes=size,
        architecture="llama",
        name="m",
        context_length=0,
        file_type="",
        tensor_type="",
        parameter_count=params,
        tensor_count=0,
    )
    summary = describe(info)
    assert summary["parameters_human"] == params_human
    assert summary["size_human"] == size_human


# --- bad input -----------------------------------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(InvalidModelError) as excinfo:
        read_gguf(path)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        read_gguf(tmp_path / "nope.gguf")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"PK\x03\x04" + b"\0" * 40, "ZIP"),
        (b"\n<!DOCTYPE html><html><body>404</body></html>", "HTML"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
        (struct.pack("<Q", 100) + b'{"__metadata__": {}}', "safetensors"),
        (b"\x80\x02}q\x00", "pickle"),
        (b"lmgg" + b"\0" * 20, "legacy GGML"),
        (b"just some notes about a model\n", "text file"),
        (b"\x00\x01\x02\x03\xff\xfe", "starts with bytes 00 01 02 03"),
        (b"ab", "too short"),
    ],
)
def test_wrong_magic_says_what_was_found(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    message = _error(path)
    assert "not a GGUF model file" in message
    assert expected in message


@pytest.mark.parametrize(
    ("version", "expected"),
    [(1, "unsupported GGUF version 1"), (4, "unsupported GGUF version 4"), (3 << 24, "big-endian")],
)
def test_unsupported_versions(tmp_path: Path, version: int, expected: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, 0))
    assert expected in _error(path)


def test_truncated_in_header(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(tiny_model().build()[:10])
    message = _error(path)
    assert "truncated" in message
    assert "the header" in message
    assert "bytes missing" in message


def test_truncated_in_metadata(tmp_path: Path) -> None:
    data = tiny_model().build()
    cut = data.index(b"<|fim_middle|>")  # inside the vocabulary array
    path = tmp_path / "m.gguf"
    path.write_bytes(data[:cut])
    message = _error(path)
    assert "truncated" in message
    assert "'tokenizer.ggml.tokens'" in message


def test_truncated_in_tensor_data(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(tiny_model().build()[:-1000])
    message = _error(path)
    assert "truncated" in message
    assert "1000 bytes missing" in message
    assert "'output_norm.weight'" in message


def test_every_truncation_point_is_a_clean_error(tmp_path: Path) -> None:
    data = tiny_model(fim=OLD_FIM_KEYS).build()
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    header_end = read_gguf(path).data_offset
    # every byte of the header and metadata, then a sample of the tensor data
    for cut in [*range(header_end + 1), *range(header_end + 1, len(data), 997)]:
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidModelError):
            read_gguf(path)


def test_random_corruption_never_crashes(tmp_path: Path) -> None:
    data = tiny_model().build()
    header_end = data.index(b"token_embd.weight") + 64
    rng = random.Random(1234)
    path = tmp_path / "m.gguf"
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(4, header_end)] = rng.randrange(256)
        path.write_bytes(bytes(mutated))
        try:
            read_gguf(path)
        except ModelError as exc:
            assert "\n" not in str(exc)


def _peak_bytes_reading(path: Path) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelError):
            read_gguf(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (struct.pack("<QQ", 1 << 62, 0), "claims 4611686018427387904 tensors"),
        (struct.pack("<QQ", 0, 1 << 40), "1099511627776 metadata entries"),
        (struct.pack("<QQQ", 0, 1, 1 << 60), "string of 1152921504606846976 bytes"),
        (struct.pack("<QQ", 0, 1) + gstr("k") + struct.pack("<IIQ", 9, 8, 1 << 50), "array"),
        (struct.pack("<QQ", 0, 1) + gstr("k") + struct.pack("<IIQ", 9, 8, 1 << 20), "truncated"),
        (struct.pack("<QQ", 0, 1) + gstr("k") + struct.pack("<IIQ", 9, 6, 1 << 29), "truncated"),
        (struct.pack("<QQ", 0, 1) + gstr("k") + struct.pack("<I", 77), "unknown value type 77"),
    ],
)
def test_huge_bogus_counts_do_not_allocate(tmp_path: Path, body: bytes, expected: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + body + b"\0" * 64)
    assert _peak_bytes_reading(path) < 4 << 20
    assert expected in _error(path)


def test_bad_tensor_infos(tmp_path: Path) -> None:
    model = Gguf(tensors=[Tensor("w", [16, 4], "Q4_K")])  # rows must be multiples of 256
    assert "not a multiple of 256" in _error(model.write(tmp_path / "rows.gguf"))
    twice = Gguf(tensors=[Tensor("w", [4]), Tensor("w", [4])])
    assert "appears twice" in _error(twice.write(tmp_path / "twice.gguf"))
    five = Gguf(tensors=[Tensor("w", [1, 1, 1, 1, 1])])
    assert "5 dimensions" in _error(five.write(tmp_path / "dims.gguf"))
    odd = Gguf(kvs=[kv_u32("general.alignment", 48)])
    assert "general.alignment is 48" in _error(odd.write(tmp_path / "align.gguf"))


# --- the embedded model --------------------------------------------------------------


def test_real_gemma_header(gemma_path: Path) -> None:
    start = time.perf_counter()
    info = read_gguf(gemma_path, markers=["<|fim_prefix|>", "<start_of_turn>"])
    elapsed = time.perf_counter() - start
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.context_length > 0
    assert info.vocab_size == 262_144
    assert not info.has_fim
    assert info.known_fim_markers == frozenset({"<start_of_turn>"})
    summary = describe(info)
    assert summary["fim"] is False
    assert summary["parameters_human"] == "268M"
    # about 0.1 s on a laptop; generous so a loaded CI machine does not flake
    assert elapsed < 2.0
