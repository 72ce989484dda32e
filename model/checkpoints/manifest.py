"""The team checkpoint manifest (``apprentice-model.toml``): its schema, parsing and writing.

A checkpoint is a directory holding this manifest beside the files it names. The manifest
binds every file to its size and sha256, each LoRA adapter to the base it was trained on,
and declares how to prompt the model. It is read with ``tomllib`` and written by a small
emitter here (only the value types the schema uses); model.checkpoints.pack writes it, and
its signature, whole or not at all (model.checkpoints.atomic_io).
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.runtime.api import ModelError

MANIFEST_NAME = "apprentice-model.toml"
SIGNATURE_NAME = "apprentice-model.sig"
SCHEMA_VERSION = 1
APPRENTICE_VERSION = "0.1.0"
# Names and versions become directory names when installed: no separators, no dot-files.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIM_ORDERS = ("psm", "spm")
# A declared context length outside this range (tokens) is a mistake, not a model.
MAX_CONTEXT_LENGTH = 2**24


class CheckpointError(ModelError):
    """A checkpoint failed a check; ``check`` names it and ``file`` is the file at fault."""

    def __init__(self, file: str | Path, check: str, detail: str) -> None:
        self.file = str(file)
        self.check = check
        self.detail = detail
        super().__init__(f"{self.file}: {check} check failed: {detail}")


@dataclass(frozen=True)
class FileEntry:
    """One file of the checkpoint, relative to its directory."""

    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class AdapterEntry(FileEntry):
    """A LoRA adapter: applied with ``scale``, valid only on the base whose sha256 it names."""

    scale: float = 1.0
    base_sha256: str = ""


@dataclass(frozen=True)
class PeftEntry:
    """The LoRA in PEFT's layout, for serving from vLLM: a folder of ``files`` in the checkpoint.

    ``base_model`` is what its ``adapter_config.json`` names as the base (the base model's
    name: the base here is a GGUF, while vLLM serves the same model in Hugging Face format).
    Apprentice never loads these files; they are verified like every other file.
    """

    directory: str
    files: tuple[FileEntry, ...]
    base_model: str = ""

    def entries(self) -> tuple[FileEntry, ...]:
        """Its files with paths relative to the checkpoint (``peft/adapter_config.json``)."""
        return tuple(FileEntry(f"{self.directory}/{e.file}", e.sha256, e.size) for e in self.files)


@dataclass(frozen=True)
class FimMarker:
    """A FIM marker: its text and its single token id in the base vocabulary."""

    text: str
    id: int


@dataclass(frozen=True)
class FimSpec:
    """How to build fill-in-the-middle prompts for this model.

    ``template`` is ``none`` (prefix-only prompts), a known family name (``qwen2.5-coder``...)
    or ``custom`` (the markers below, in ``order``). ``stop_tokens`` end a middle.
    """

    template: str = "none"
    order: str = "psm"
    prefix: FimMarker | None = None
    suffix: FimMarker | None = None
    middle: FimMarker | None = None
    stop_tokens: tuple[FimMarker, ...] = ()

    def markers(self) -> tuple[FimMarker, ...]:
        """Every marker the template uses, stop tokens included."""
        found = (self.prefix, self.suffix, self.middle, *self.stop_tokens)
        return tuple(m for m in found if m is not None)


@dataclass(frozen=True)
class Manifest:
    """What ``apprentice-model.toml`` declares."""

    name: str
    version: str
    base: FileEntry
    architecture: str = ""
    adapters: tuple[AdapterEntry, ...] = ()
    fim: FimSpec = field(default_factory=FimSpec)
    stop: tuple[str, ...] = ()
    context_length: int = 0
    licence: str = ""
    embedding_model: str = ""
    min_apprentice: str = APPRENTICE_VERSION
    description: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    # Absent from older manifests, which stay valid (and an older Apprentice ignores it).
    peft: PeftEntry | None = None

    @property
    def label(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def files(self) -> tuple[FileEntry, ...]:
        """The base, each adapter, then the PEFT folder's files (paths inside the checkpoint)."""
        peft = self.peft.entries() if self.peft else ()
        return (self.base, *self.adapters, *peft)


# -- reading -------------------------------------------------------------------------------


def load_manifest(directory: Path) -> tuple[Manifest, bytes]:
    """The manifest of the checkpoint in ``directory`` and its exact bytes (what is signed)."""
    path = Path(directory) / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "manifest", "the file is missing") from None
    except OSError as exc:
        raise CheckpointError(path, "manifest", f"cannot read it: {exc.strerror or exc}") from None
    return parse_manifest(raw, path), raw


def parse_manifest(raw: bytes, where: str | Path = MANIFEST_NAME) -> Manifest:
    """Parse and validate manifest bytes; CheckpointError names the first problem."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(where, "manifest", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise CheckpointError(where, "manifest", f"not valid TOML ({exc})") from None
    except RecursionError:
        raise CheckpointError(where, "manifest", "values are nested too deeply") from None
    return _Fields(data, where).manifest()


class _Fields:
    """Typed access to the parsed TOML, each failure naming the key."""

    def __init__(self, data: dict[str, Any], where: str | Path) -> None:
        self.data = data
        self.where = where

    def fail(self, detail: str) -> CheckpointError:
        return CheckpointError(self.where, "manifest", detail)

    def get(self, table: Mapping[str, Any], key: str, kind: type, prefix: str = "") -> Any:
        if key not in table:
            raise self.fail(f"the field {prefix}{key} is missing")
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(f"{prefix}{key} should be a {kind.__name__}, got {value!r}")
        return value

    def opt(
        self, table: Mapping[str, Any], key: str, kind: type, default: Any, prefix: str = ""
    ) -> Any:
        return self.get(table, key, kind, prefix) if key in table else default

    def manifest(self) -> Manifest:
        data = self.data
        schema = self.get(data, "schema", int)
        if schema > SCHEMA_VERSION:
            raise CheckpointError(
                self.where,
                "schema",
                f"manifest schema {schema} is newer than this Apprentice understands "
                f"({SCHEMA_VERSION}); upgrade Apprentice",
            )
        if schema < 1:
            raise self.fail(f"schema {schema} is not a valid schema version")
        minimum = self.opt(data, "min_apprentice", str, APPRENTICE_VERSION)
        if version_key(minimum) > version_key(APPRENTICE_VERSION):
            raise CheckpointError(
                self.where,
                "version",
                f"the checkpoint needs Apprentice {minimum} or newer (this is "
                f"{APPRENTICE_VERSION}); upgrade Apprentice",
            )
        name = self.get(data, "name", str)
        version = self.get(data, "version", str)
        for key, value in (("name", name), ("version", version)):
            if not _NAME.match(value):
                raise self.fail(f"{key} {value!r} may use only letters, digits and . _ + -")
        base_table = self.get(data, "base", dict)
        base = self.entry(base_table, "base.")
        adapters = tuple(
            self.adapter(item, f"adapters[{i}].")
            for i, item in enumerate(self.opt(data, "adapters", list, []))
        )
        stop = self.opt(data, "stop", list, [])
        if not all(isinstance(s, str) and s for s in stop):
            raise self.fail("stop should be a list of non-empty strings")
        provenance = self.opt(data, "provenance", dict, {})
        return Manifest(
            name=name,
            version=version,
            base=base,
            architecture=self.opt(base_table, "architecture", str, "", "base."),
            adapters=adapters,
            fim=self.fim(self.opt(data, "fim", dict, {})),
            stop=tuple(stop),
            context_length=self.context_length(data),
            licence=self.opt(data, "licence", str, ""),
            embedding_model=self.opt(data, "embedding_model", str, ""),
            min_apprentice=minimum,
            description=self.opt(data, "description", str, ""),
            provenance=provenance,
            schema=schema,
            peft=self.peft(data),
        )

    def context_length(self, data: Mapping[str, Any]) -> int:
        """The declared context length: 0 when absent, else 1..MAX_CONTEXT_LENGTH tokens."""
        if "context_length" not in data:
            return 0
        value: int = self.get(data, "context_length", int)
        if not 1 <= value <= MAX_CONTEXT_LENGTH:
            raise self.fail(
                f"context_length {value} is out of range (1 to {MAX_CONTEXT_LENGTH} tokens)"
            )
        return value

    def entry(self, table: Any, prefix: str) -> FileEntry:
        if not isinstance(table, dict):
            raise self.fail(f"{prefix.rstrip('.')} should be a table")
        file = self.get(table, "file", str, prefix)
        if "\0" in file:
            raise self.fail(f"{prefix}file {file!r}: file name contains a NUL byte")
        if not is_plain_name(file):
            raise self.fail(f"{prefix}file {file!r} must be a file name inside the checkpoint")
        sha = self.get(table, "sha256", str, prefix).lower()
        if not _HEX64.match(sha):
            raise self.fail(f"{prefix}sha256 is not a 64-digit hex digest")
        size = self.get(table, "size", int, prefix)
        if size < 0:
            raise self.fail(f"{prefix}size is negative")
        return FileEntry(file=file, sha256=sha, size=size)

    def adapter(self, table: Any, prefix: str) -> AdapterEntry:
        entry = self.entry(table, prefix)
        scale = self.opt(table, "scale", float, 1.0, prefix)
        if not math.isfinite(scale):
            raise self.fail(f"{prefix}scale must be a finite number")
        bound = self.get(table, "base_sha256", str, prefix).lower()
        if not _HEX64.match(bound):
            raise self.fail(f"{prefix}base_sha256 is not a 64-digit hex digest")
        return AdapterEntry(entry.file, entry.sha256, entry.size, scale=scale, base_sha256=bound)

    def peft(self, data: Mapping[str, Any]) -> PeftEntry | None:
        """The optional ``[peft]`` table: a plain folder name and its files, each hashed."""
        if "peft" not in data:
            return None
        table = self.get(data, "peft", dict)
        directory = self.get(table, "directory", str, "peft.")
        if not is_plain_name(directory):
            raise self.fail(f"peft.directory {directory!r} must be a folder name in the checkpoint")
        items = self.get(table, "files", list, "peft.")
        files = tuple(self.entry(item, f"peft.files[{i}].") for i, item in enumerate(items))
        if not files or len({f.file for f in files}) != len(files):
            raise self.fail("peft.files should list each file of the folder once")
        base_model = self.opt(table, "base_model", str, "", "peft.")
        return PeftEntry(directory=directory, files=files, base_model=base_model)

    def fim(self, table: dict[str, Any]) -> FimSpec:
        template = self.opt(table, "template", str, "none", "fim.")
        order = self.opt(table, "order", str, "psm", "fim.")
        if order not in _FIM_ORDERS:
            raise self.fail(f"fim.order should be psm or spm, got {order!r}")
        markers = {role: self.marker(table, role) for role in ("prefix", "suffix", "middle")}
        stops = tuple(
            self.marker_from(item, f"fim.stop_tokens[{i}]")
            for i, item in enumerate(self.opt(table, "stop_tokens", list, [], "fim."))
        )
        if template != "none" and (markers["prefix"] is None or markers["suffix"] is None):
            raise self.fail(f"fim.template {template!r} needs fim.prefix and fim.suffix")
        return FimSpec(template=template, order=order, stop_tokens=stops, **markers)

    def marker(self, table: dict[str, Any], role: str) -> FimMarker | None:
        if role not in table:
            return None
        return self.marker_from(table[role], f"fim.{role}")

    def marker_from(self, value: Any, where: str) -> FimMarker:
        if not isinstance(value, dict):
            raise self.fail(f"{where} should be a table {{ text = ..., id = ... }}")
        text = self.get(value, "text", str, where + ".")
        token_id = self.get(value, "id", int, where + ".")
        if not text or token_id < 0:
            raise self.fail(f"{where} needs a non-empty text and a token id >= 0")
        return FimMarker(text=text, id=token_id)


def is_plain_name(name: str) -> bool:
    """True for a bare file name: no directory part, not hidden, not the manifest."""
    return (
        bool(name)
        and name == Path(name).name
        and not name.startswith(".")
        and "\\" not in name
        and name not in (MANIFEST_NAME, SIGNATURE_NAME)
    )


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key for versions: numeric parts compare as numbers (1.10 > 1.9)."""
    parts = re.split(r"[.+-]", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


# -- writing -------------------------------------------------------------------------------


def manifest_toml(manifest: Manifest) -> str:
    """The manifest as TOML text (what ``load_manifest`` reads back)."""
    out = [
        "# Apprentice team checkpoint. Every file is checked against its size and sha256",
        "# before the model is loaded; `apprentice model verify DIR` runs the same checks.",
        f"schema = {manifest.schema}",
        f"name = {_value(manifest.name)}",
        f"version = {_value(manifest.version)}",
    ]
    scalars: list[tuple[str, Any]] = [
        ("description", manifest.description),
        ("licence", manifest.licence),
        ("min_apprentice", manifest.min_apprentice),
        ("context_length", manifest.context_length),
        ("embedding_model", manifest.embedding_model),
        ("stop", list(manifest.stop)),
    ]
    # Empty values, and a context length of 0 (unknown), are left out.
    out += [f"{key} = {_value(value)}" for key, value in scalars if value not in ("", [], 0)]
    base = _entry_fields(manifest.base)
    if manifest.architecture:
        base["architecture"] = manifest.architecture
    out += ["", "[base]", *_pairs(base)]
    for adapter in manifest.adapters:
        fields = _entry_fields(adapter)
        fields.update(scale=adapter.scale, base_sha256=adapter.base_sha256)
        out += ["", "[[adapters]]", *_pairs(fields)]
    if manifest.peft is not None:
        peft: dict[str, Any] = {"directory": manifest.peft.directory}
        if manifest.peft.base_model:
            peft["base_model"] = manifest.peft.base_model
        out += ["", "[peft]", *_pairs(peft)]
        for entry in manifest.peft.files:
            out += ["", "[[peft.files]]", *_pairs(_entry_fields(entry))]
    fim = manifest.fim
    fim_fields: dict[str, Any] = {"template": fim.template}
    if fim.template != "none":
        fim_fields["order"] = fim.order
        for role in ("prefix", "suffix", "middle"):
            marker = getattr(fim, role)
            if marker is not None:
                fim_fields[role] = {"text": marker.text, "id": marker.id}
        if fim.stop_tokens:
            fim_fields["stop_tokens"] = [{"text": m.text, "id": m.id} for m in fim.stop_tokens]
    out += ["", "[fim]", *_pairs(fim_fields)]
    if manifest.provenance:
        out += ["", "[provenance]", *_pairs(dict(manifest.provenance))]
    return "\n".join(out) + "\n"


def _entry_fields(entry: FileEntry) -> dict[str, Any]:
    return {"file": entry.file, "sha256": entry.sha256, "size": entry.size}


def _pairs(table: Mapping[str, Any]) -> list[str]:
    return [f"{_key(key)} = {_value(value)}" for key, value in table.items()]


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    escaped = []
    for ch in text:
        if ch in ('"', "\\"):
            escaped.append("\\" + ch)
        elif ch == "\n":
            escaped.append("\\n")
        elif ch == "\t":
            escaped.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\u{ord(ch):04x}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def _value(value: Any) -> str:
    """One TOML value: strings, integers, finite floats, booleans, lists, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written to a manifest")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise ValueError(f"a manifest cannot hold {type(value).__name__} values")


def manifest_toml_value(value: Any) -> str:
    """One value in TOML syntax (for files written beside the manifest)."""
    return _value(value)


def manifest_digest(raw: bytes) -> str:
    """The sha256 of the manifest's bytes: the checkpoint's identity."""
    return hashlib.sha256(raw).hexdigest()
