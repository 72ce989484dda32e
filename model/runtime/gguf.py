"""Pure-Python GGUF reader: header, metadata, FIM tokens and integrity checks before llama.cpp."""

from __future__ import annotations

import logging
import os
import stat
import struct
from collections import Counter
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from model.runtime.api import InvalidModelError, ModelError, ModelNotFoundError

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4

# Sanity limits, mirroring ggml/src/gguf.cpp where it has them. A corrupt header can
# claim any count; these bound the work before the file itself proves them wrong.
_MAX_COUNT = 1 << 24  # metadata entries or tensors; real models have at most thousands
_MAX_STRING = 1 << 30
_MAX_ARRAY = 1 << 30
_MAX_NESTING = 8
_MAX_SCALAR_STRING = 1 << 20  # longer string values are summarized, not kept
_CHUNK = 1 << 20

Scalar = str | int | float | bool

# GGUF metadata value types.
_T_STRING, _T_ARRAY = 8, 9
_SCALARS: dict[int, tuple[str, struct.Struct]] = {
    0: ("uint8", struct.Struct("<B")),
    1: ("int8", struct.Struct("<b")),
    2: ("uint16", struct.Struct("<H")),
    3: ("int16", struct.Struct("<h")),
    4: ("uint32", struct.Struct("<I")),
    5: ("int32", struct.Struct("<i")),
    6: ("float32", struct.Struct("<f")),
    7: ("bool", struct.Struct("<?")),
    10: ("uint64", struct.Struct("<Q")),
    11: ("int64", struct.Struct("<q")),
    12: ("float64", struct.Struct("<d")),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# ggml tensor types: id -> (name, elements per block, bytes per block), from ggml.h.
# fmt: off
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),          1: ("F16", 1, 2),          2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),       6: ("Q5_0", 32, 22),       7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),       9: ("Q8_1", 32, 36),       10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),    12: ("Q4_K", 256, 144),    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),    15: ("Q8_K", 256, 292),    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),   18: ("IQ3_XXS", 256, 98),  19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),    21: ("IQ3_S", 256, 110),   22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),  24: ("I8", 1, 1),          25: ("I16", 1, 2),
    26: ("I32", 1, 4),         27: ("I64", 1, 8),         28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),    30: ("BF16", 1, 2),        34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),    39: ("MXFP4", 32, 17),     40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),     42: ("Q2_0", 64, 18),
}

# llama.cpp's llama_ftype (general.file_type) -> the name quantize tools print.
LLAMA_FTYPES: dict[int, str] = {
    0: "F32",      1: "F16",      2: "Q4_0",     3: "Q4_1",     4: "Q4_1_SOME_F16",
    7: "Q8_0",     8: "Q5_0",     9: "Q5_1",     10: "Q2_K",    11: "Q3_K_S",
    12: "Q3_K_M",  13: "Q3_K_L",  14: "Q4_K_S",  15: "Q4_K_M",  16: "Q5_K_S",
    17: "Q5_K_M",  18: "Q6_K",    19: "IQ2_XXS", 20: "IQ2_XS",  21: "Q2_K_S",
    22: "IQ3_XS",  23: "IQ3_XXS", 24: "IQ1_S",   25: "IQ4_NL",  26: "IQ3_S",
    27: "IQ3_M",   28: "IQ2_S",   29: "IQ2_M",   30: "IQ4_XS",  31: "IQ1_M",
    32: "BF16",    36: "TQ1_0",   37: "TQ2_0",   38: "MXFP4_MOE", 39: "NVFP4",
    40: "Q1_0",    41: "Q2_0",
}
# fmt: on
_FTYPE_GUESSED = 1024

TOKENS_KEY = "tokenizer.ggml.tokens"
FIM_ROLES = ("prefix", "suffix", "middle", "pad", "repo", "sep")
_FIM_KEYS = {
    "prefix": "tokenizer.ggml.fim_pre_token_id",
    "suffix": "tokenizer.ggml.fim_suf_token_id",
    "middle": "tokenizer.ggml.fim_mid_token_id",
    "pad": "tokenizer.ggml.fim_pad_token_id",
    "repo": "tokenizer.ggml.fim_rep_token_id",
    "sep": "tokenizer.ggml.fim_sep_token_id",
}
# Files converted before llama.cpp gained the fim_* keys (2024) name only these three.
_LEGACY_FIM_KEYS = {
    "prefix": "tokenizer.ggml.prefix_token_id",
    "suffix": "tokenizer.ggml.suffix_token_id",
    "middle": "tokenizer.ggml.middle_token_id",
}


@dataclass(frozen=True)
class GgufInfo:
    """What the header of a GGUF file says, without its tensor data or full vocabulary."""

    path: Path
    version: int
    size_bytes: int
    architecture: str
    name: str
    context_length: int
    file_type: str  # llama.cpp ftype name from general.file_type, "" when absent
    tensor_type: str  # most common ggml type among weight matrices by count, e.g. "Q4_K"
    parameter_count: int
    tensor_count: int
    vocab_size: int = 0
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0
    metadata: dict[str, Scalar] = field(default_factory=dict)
    arrays: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (type, length)
    fim_token_ids: dict[str, int] = field(default_factory=dict)
    fim_tokens: dict[str, str] = field(default_factory=dict)
    known_fim_markers: frozenset[str] = frozenset()
    # name -> (dims, ggml type name): the tensor layout, for adapter-vs-base checks
    tensors: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    token_texts: dict[int, str] = field(default_factory=dict)  # the ids asked for by token_ids
    marker_ids: dict[str, int] = field(default_factory=dict)  # each marker found -> its id

    @property
    def quantization(self) -> str:
        """The quantization name users know (Q4_K_M), else the dominant tensor type."""
        return self.file_type or self.tensor_type

    @property
    def has_fim(self) -> bool:
        """True when the vocabulary names prefix, suffix and middle FIM tokens."""
        return all(role in self.fim_tokens for role in ("prefix", "suffix", "middle"))


class _Reader:
    """Buffered little-endian reader that turns running past EOF into one clear error."""

    def __init__(self, f: BinaryIO, size: int, path: Path) -> None:
        self._f = f
        self._size = size
        self._path = path
        self._buf = b""
        self._pos = 0  # position inside _buf
        self._base = 0  # file offset of _buf[0]
        self.context = "the header"

    def tell(self) -> int:
        return self._base + self._pos

    def remaining(self) -> int:
        return self._size - self.tell()

    def truncated(self, need: int) -> InvalidModelError:
        at = self.tell()
        missing = at + need - self._size
        return InvalidModelError(
            f"{self._path}: truncated GGUF file: {self.context} runs past the end of the file "
            f"(needs {need} bytes at offset {at}, {missing} bytes missing of a "
            f"{self._size}-byte file)"
        )

    def corrupt(self, what: str) -> InvalidModelError:
        return InvalidModelError(f"{self._path}: corrupt GGUF file: {self.context} {what}")

    def seek(self, offset: int) -> None:
        self._buf, self._pos, self._base = b"", 0, offset

    def _fill(self, n: int) -> None:
        start = self.tell()
        if start + n > self._size:
            raise self.truncated(n)
        keep = self._buf[self._pos :]
        self._f.seek(start + len(keep))
        want = min(max(_CHUNK, n - len(keep)), self._size - start - len(keep))
        self._buf = keep + self._f.read(want)
        self._base, self._pos = start, 0
        if len(self._buf) < n:  # the file shrank while we read it
            raise self.truncated(n)

    def read(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n:
            self._fill(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def skip(self, n: int) -> None:
        if n > self.remaining():
            raise self.truncated(n)
        if len(self._buf) - self._pos >= n:
            self._pos += n
        else:
            self.seek(self.tell() + n)

    def unpack(self, fmt: struct.Struct) -> int | float | bool:
        if len(self._buf) - self._pos < fmt.size:
            self._fill(fmt.size)
        value = fmt.unpack_from(self._buf, self._pos)[0]
        self._pos += fmt.size
        return value

    def u32(self) -> int:
        return int(self.unpack(_U32))

    def u64(self) -> int:
        return int(self.unpack(_U64))

    def string_length(self) -> int:
        n = self.u64()
        if n > _MAX_STRING or n > self._size:
            raise self.corrupt(f"declares a string of {n} bytes, larger than the whole file")
        return n

    def string(self) -> str:
        return self.read(self.string_length()).decode("utf-8", errors="replace")

    def scan_strings(
        self, count: int, want_ids: Set[int], want_texts: Set[bytes]
    ) -> tuple[dict[int, bytes], dict[bytes, int]]:
        """Walk a string array, keeping only wanted entries; the hot loop for 262k-token vocabs.

        Returns the texts of ``want_ids`` and the first id of each of ``want_texts`` found.
        """
        found: dict[int, bytes] = {}
        seen: dict[bytes, int] = {}
        lengths = {len(t) for t in want_texts}
        buf, pos = self._buf, self._pos
        for i in range(count):
            if pos + 8 > len(buf):
                self._pos = pos
                self._fill(8)
                buf, pos = self._buf, self._pos
            n = _U64.unpack_from(buf, pos)[0]
            pos += 8
            if pos + n > len(buf):
                self._pos = pos
                if n > _MAX_STRING or n > self._size:
                    raise self.corrupt(f"entry {i} declares a {n}-byte string")
                self._fill(n)
                buf, pos = self._buf, self._pos
            if n in lengths or i in want_ids:
                text = buf[pos : pos + n]
                if i in want_ids:
                    found[i] = text
                if text in want_texts and text not in seen:
                    seen[text] = i
            pos += n
        self._pos = pos
        return found, seen


def _sniff(head: bytes, size: int) -> str:
    """Guess what a non-GGUF file is, so the error tells the user what they pointed at."""
    low = head.lstrip().lower()
    if size == 0:
        return "the file is empty (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return "looks like a ZIP archive (a PyTorch checkpoint or a zipped download?)"
    if head.startswith(b"version https://git-lfs"):
        return "looks like a Git LFS pointer, not the model itself (run `git lfs pull`)"
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return "looks like an HTML page (an error page saved instead of the model?)"
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"algg"):
        return "looks like a legacy GGML/GGJT file; convert it to GGUF with llama.cpp"
    if len(head) >= 10 and head[8:10] == b'{"':
        return "looks like a safetensors file; convert it with llama.cpp's convert_hf_to_gguf.py"
    for magic, kind in (
        (b"\x1f\x8b", "a gzip archive"),
        (b"\x28\xb5\x2f\xfd", "a zstd archive"),
        (b"\xfd7zXZ", "an xz archive"),
        (b"BZh", "a bzip2 archive"),
        (b"7z\xbc\xaf", "a 7-Zip archive"),
        (b"\x7fELF", "an executable"),
        (b"\x89HDF", "an HDF5 file (Keras?)"),
    ):
        if head.startswith(magic):
            return f"looks like {kind}"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "looks like a Python pickle (a PyTorch .bin/.pt checkpoint?)"
    if low.startswith((b"{", b"[")):
        return "looks like a JSON file"
    if size < len(GGUF_MAGIC):
        return f"too short to be GGUF ({size} bytes)"
    sample = head[:32]
    if all(32 <= b < 127 or b in b"\t\r\n" for b in sample):
        return f"looks like a text file starting with {sample.decode('ascii')!r}"
    return f"starts with bytes {head[:8].hex(' ')} instead of 'GGUF'"


def _skip_array(r: _Reader, depth: int) -> tuple[str, int]:
    """Skip one array value (the reader is past its type tag); return (element type, length)."""
    etype = r.u32()
    n = r.u64()
    if n > _MAX_ARRAY:
        raise r.corrupt(f"declares an array of {n} elements")
    if etype in _SCALARS:
        name, fmt = _SCALARS[etype]
        r.skip(n * fmt.size)
    elif etype == _T_STRING:
        name = "string"
        r.scan_strings(n, frozenset(), frozenset())
    elif etype == _T_ARRAY:
        name = "array"
        if depth >= _MAX_NESTING:
            raise r.corrupt("nests arrays too deeply")
        for _ in range(n):
            _skip_array(r, depth + 1)
    else:
        raise r.corrupt(f"has an array of unknown value type {etype}")
    return name, n


def _read_scalar(r: _Reader, vtype: int) -> Scalar:
    if vtype == _T_STRING:
        n = r.string_length()
        if n > _MAX_SCALAR_STRING:
            r.skip(n)
            return f"<string of {n} bytes>"
        return r.read(n).decode("utf-8", errors="replace")
    if vtype not in _SCALARS:
        raise r.corrupt(f"has unknown value type {vtype}")
    return r.unpack(_SCALARS[vtype][1])


def _as_int(value: Scalar | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _open_checked(path: Path) -> tuple[BinaryIO, int]:
    """Open a model file, turning the usual filesystem problems into one-line model errors."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelNotFoundError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidModelError(f"{path} is a directory, not a GGUF model file")
    if not stat.S_ISREG(st.st_mode):
        # a FIFO or device would block or stream forever
        raise InvalidModelError(f"{path} is not a regular file")
    try:
        return path.open("rb"), st.st_size
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None


def read_gguf(
    path: str | os.PathLike[str], *, markers: Iterable[str] = (), token_ids: Iterable[int] = ()
) -> GgufInfo:
    """Read a GGUF file's header and metadata, checking that its tensor data is all present.

    ``markers``: strings to look for in the vocabulary (``known_fim_markers``);
    ``token_ids``: ids whose token text to return (``token_texts``).
    """
    p = Path(path).expanduser()
    f, size = _open_checked(p)
    try:
        with f:
            return _parse(_Reader(f, size, p), p, size, markers, frozenset(token_ids))
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror or exc}") from None
    except (ValueError, OverflowError, struct.error, MemoryError, RecursionError) as exc:
        # a safety net: malformed input must surface as an error, never a crash
        raise InvalidModelError(f"{p}: corrupt GGUF file ({type(exc).__name__}: {exc})") from None


def validate_gguf(path: str | os.PathLike[str], *, markers: Iterable[str] = ()) -> GgufInfo:
    """Check a file is a complete GGUF model before llama.cpp (which may abort) sees it."""
    return read_gguf(path, markers=markers)


def _parse(
    r: _Reader, p: Path, size: int, markers: Iterable[str], token_ids: frozenset[int]
) -> GgufInfo:
    head = r.read(min(size, 64))
    if not head.startswith(GGUF_MAGIC):
        if 0 < size < len(GGUF_MAGIC) and GGUF_MAGIC.startswith(head):
            raise r.truncated(len(GGUF_MAGIC) - size)
        raise InvalidModelError(f"{p}: not a GGUF model file: {_sniff(head, size)}")
    r.seek(len(GGUF_MAGIC))
    version = r.u32()
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            raise InvalidModelError(f"{p}: big-endian GGUF files are not supported")
        raise InvalidModelError(
            f"{p}: unsupported GGUF version {version} (supported: 2, 3); "
            "re-convert it with a current llama.cpp"
        )
    tensor_count = r.u64()
    kv_count = r.u64()
    if tensor_count > _MAX_COUNT or kv_count > _MAX_COUNT:
        raise InvalidModelError(
            f"{p}: corrupt GGUF header: claims {tensor_count} tensors and "
            f"{kv_count} metadata entries"
        )

    wanted_markers = {m.encode("utf-8") for m in markers if m}
    metadata: dict[str, Scalar] = {}
    arrays: dict[str, tuple[str, int]] = {}
    tokens_at: tuple[int, int] | None = None  # (file offset of the first entry, count)
    token_texts: dict[int, bytes] = {}
    seen_markers: dict[bytes, int] = {}
    for i in range(kv_count):
        r.context = f"metadata entry #{i}"
        key = r.string()
        r.context = f"metadata key {key!r}"
        vtype = r.u32()
        if vtype != _T_ARRAY:
            metadata[key] = _read_scalar(r, vtype)
            continue
        if key == TOKENS_KEY:
            start = r.tell()
            etype, n = r.u32(), r.u64()
            if etype == _T_STRING and n <= _MAX_ARRAY:
                tokens_at = (r.tell(), n)
                # FIM ids usually come after the vocab, so only ids already known are
                # collected here; a second, targeted pass picks up the rest.
                want = {v for v in (*_fim_ids(metadata).values(), *token_ids) if 0 <= v < n}
                token_texts, seen_markers = r.scan_strings(n, want, wanted_markers)
                arrays[key] = ("string", n)
                continue
            r.seek(start)
        arrays[key] = _skip_array(r, 0)

    vocab_size = tokens_at[1] if tokens_at else 0
    fim_ids = {role: v for role, v in _fim_ids(metadata).items() if 0 <= v < vocab_size}
    asked = {v for v in token_ids if 0 <= v < vocab_size}
    missing = {v for v in (*fim_ids.values(), *asked) if v not in token_texts}
    if missing and tokens_at is not None:
        resume = r.tell()
        r.seek(tokens_at[0])
        r.context = f"metadata key {TOKENS_KEY!r}"
        more, _ = r.scan_strings(max(missing) + 1, missing, frozenset())
        token_texts.update(more)
        r.seek(resume)

    alignment = _as_int(metadata.get("general.alignment")) or DEFAULT_ALIGNMENT
    if alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelError(f"{p}: corrupt GGUF file: general.alignment is {alignment}")

    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    params, tensor_type, data_offset = _read_tensor_infos(
        r, p, size, tensor_count, alignment, tensors
    )

    arch = str(metadata.get("general.architecture", ""))
    name = metadata.get("general.name")
    ftype = _as_int(metadata.get("general.file_type"))
    file_type = ""
    if ftype is not None:
        ftype &= ~_FTYPE_GUESSED
        file_type = LLAMA_FTYPES.get(ftype, f"FTYPE_{ftype}")
    fim_tokens = {
        role: token_texts[v].decode("utf-8", errors="replace")
        for role, v in fim_ids.items()
        if v in token_texts
    }
    return GgufInfo(
        path=p,
        version=version,
        size_bytes=size,
        architecture=arch,
        name=str(name) if isinstance(name, str) and name else p.stem,
        context_length=_as_int(metadata.get(f"{arch}.context_length")) or 0,
        file_type=file_type,
        tensor_type=tensor_type,
        parameter_count=params,
        tensor_count=tensor_count,
        vocab_size=vocab_size,
        alignment=alignment,
        data_offset=data_offset,
        metadata=metadata,
        arrays=arrays,
        fim_token_ids=fim_ids,
        fim_tokens=fim_tokens,
        known_fim_markers=frozenset(m.decode("utf-8") for m in seen_markers),
        marker_ids={m.decode("utf-8"): i for m, i in seen_markers.items()},
        tensors=tensors,
        token_texts={
            v: token_texts[v].decode("utf-8", errors="replace") for v in asked if v in token_texts
        },
    )


def _fim_ids(metadata: dict[str, Scalar]) -> dict[str, int]:
    """FIM token ids by role; the current fim_* keys win over the legacy names."""
    ids: dict[str, int] = {}
    for keys in (_LEGACY_FIM_KEYS, _FIM_KEYS):
        for role, key in keys.items():
            value = _as_int(metadata.get(key))
            if value is not None:
                ids[role] = value
    return ids


def _read_tensor_infos(
    r: _Reader,
    p: Path,
    size: int,
    count: int,
    alignment: int,
    layout: dict[str, tuple[tuple[int, ...], str]],
) -> tuple[int, str, int]:
    """Walk the tensor infos into ``layout``; return (parameters, dominant type, data offset)."""
    params = 0
    weight_types: Counter[str] = Counter()
    names: set[str] = set()
    data_end, last_tensor = 0, ""
    for i in range(count):
        r.context = f"tensor info #{i}"
        tname = r.string()
        r.context = f"tensor info {tname!r}"
        if tname in names:
            raise r.corrupt("appears twice")
        names.add(tname)
        n_dims = r.u32()
        if n_dims > MAX_DIMS:
            raise r.corrupt(f"has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = [r.u64() for _ in range(n_dims)]
        gtype = r.u32()
        offset = r.u64()
        elements = 1
        for d in dims:
            elements *= d
        if elements >= 1 << 63:
            raise r.corrupt(f"has an impossible shape {dims}")
        params += elements
        if offset % alignment:
            raise r.corrupt(f"has offset {offset}, not a multiple of the alignment {alignment}")
        known = GGML_TYPES.get(gtype)
        if known is None:
            # a ggml type newer than this table: don't reject, but its size is unknown
            logger.warning("%s: tensor %r has unknown ggml type %d", p, tname, gtype)
            type_name, nbytes = f"TYPE_{gtype}", 0
        else:
            type_name, block, block_bytes = known
            if dims and dims[0] % block:
                raise r.corrupt(f"has a row of {dims[0]} elements, not a multiple of {block}")
            nbytes = elements // block * block_bytes
        layout[tname] = (tuple(dims), type_name)
        if n_dims >= 2:
            weight_types[type_name] += 1
        if offset + nbytes > data_end:
            data_end, last_tensor = offset + nbytes, tname
    infos_end = r.tell()
    data_offset = infos_end + (-infos_end) % alignment
    if count and data_offset + data_end > size:
        end = data_offset + data_end
        raise InvalidModelError(
            f"{p}: truncated GGUF file: tensor {last_tensor!r} ends at byte {end} but the file "
            f"has {size} bytes ({end - size} bytes missing); re-download or re-assemble it"
        )
    dominant = weight_types.most_common(1)[0][0] if weight_types else ""
    return params, dominant, data_offset


def _scale(n: float, units: tuple[str, ...], step: float) -> tuple[float, str]:
    unit = units[0]
    for unit in units:
        if abs(n) < step or unit == units[-1]:
            break
        n /= step
    return n, unit


def _human_bytes(n: int) -> str:
    value, unit = _scale(n, ("B", "KiB", "MiB", "GiB", "TiB"), 1024)
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _human_count(n: int) -> str:
    value, unit = _scale(n, ("", "K", "M", "B", "T"), 1000)
    if not unit:
        return str(n)
    # "268M", "13B" but "1.5B": one decimal only while it carries information
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
    return f"{text}{unit}"


def describe(info: GgufInfo) -> dict[str, object]:
    """A JSON-ready summary of a model, as `apprentice model info --json` prints it."""
    return {
        "path": str(info.path),
        "name": info.name,
        "architecture": info.architecture,
        "size_bytes": info.size_bytes,
        "size_human": _human_bytes(info.size_bytes),
        "parameters": info.parameter_count,
        "parameters_human": _human_count(info.parameter_count),
        "context_length": info.context_length,
        "quantization": info.quantization,
        "fim": info.has_fim,
        "fim_tokens": dict(info.fim_tokens),
    }
