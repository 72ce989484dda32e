"""Ed25519 signatures over a checkpoint's manifest: keys, signing, and checking against trust.

The manifest names the sha256 of every file, so a signature over its exact bytes covers the
whole checkpoint. The signature lives beside it in ``apprentice-model.sig`` (TOML: signer,
key id, public key, signature); whether that key is *trusted* is the reader's decision
(``--trust`` or the ``model.trustedKeys`` setting), never the file's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from model.checkpoints.manifest import (
    SIGNATURE_NAME,
    CheckpointError,
    manifest_digest,
    manifest_toml_value,
)

PUBLIC_PREFIX = "apprentice-ed25519"


@dataclass(frozen=True)
class PublicKey:
    """A trusted (or presented) ed25519 public key."""

    raw: bytes
    comment: str = ""

    @property
    def key_id(self) -> str:
        """A short fingerprint: the first 16 hex digits of the key's sha256."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def line(self) -> str:
        """The one-line text form, as written to a ``.pub`` file and given to ``--trust``."""
        text = f"{PUBLIC_PREFIX} {base64.b64encode(self.raw).decode('ascii')}"
        return f"{text} {self.comment}" if self.comment else text


@dataclass(frozen=True)
class Signature:
    """A checked signature: who signed and whether that key is one the reader trusts."""

    signer: str
    key_id: str
    trusted: bool


def generate_keypair(private_path: Path, comment: str = "") -> PublicKey:
    """Write a new private key (PEM, mode 0600) and ``<private_path>.pub``; return the public."""
    private_path = Path(private_path).expanduser()
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise ValueError(f"{path} already exists; choose another name or remove it")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = PublicKey(_public_raw(key.public_key()), comment)
    public_path.write_text(public.line() + "\n", encoding="utf-8")
    return public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM ed25519 private key (as ``apprentice model keygen`` writes it)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 key")
    return key


def parse_public_key(spec: str) -> PublicKey:
    """A public key from a ``.pub`` file path or the key text itself (one ``.pub`` line)."""
    text = spec.strip()
    path = Path(text).expanduser()
    if not text.startswith(PUBLIC_PREFIX) and path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the public key {path}: {exc}") from None
    parts = text.split(maxsplit=2)
    if len(parts) < 2 or parts[0] != PUBLIC_PREFIX:
        raise ValueError(
            f"{spec[:80]!r} is not a public key: expected a .pub file or "
            f"'{PUBLIC_PREFIX} BASE64' (from `apprentice model keygen`)"
        )
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"public key {parts[1][:20]!r}… is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an ed25519 public key has 32 bytes, this one {len(raw)}")
    return PublicKey(raw, parts[2] if len(parts) > 2 else "")


def sign_manifest(raw_manifest: bytes, key: Ed25519PrivateKey, signer: str) -> bytes:
    """The signature file's bytes for a manifest, signed by ``key`` in the name of ``signer``."""
    public = PublicKey(_public_raw(key.public_key()), signer)
    signature = base64.b64encode(key.sign(raw_manifest)).decode("ascii")
    lines = [
        "# Ed25519 signature over the exact bytes of apprentice-model.toml.",
        'algorithm = "ed25519"',
        f"signer = {manifest_toml_value(signer)}",
        f"key_id = {manifest_toml_value(public.key_id)}",
        f"public_key = {manifest_toml_value(public.line())}",
        f"manifest_sha256 = {manifest_toml_value(manifest_digest(raw_manifest))}",
        f"signature = {manifest_toml_value(signature)}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def check_signature(
    directory: Path, raw_manifest: bytes, trusted: tuple[PublicKey, ...]
) -> Signature | None:
    """The checkpoint's signature, checked; None when it has none.

    A signature that does not verify against the key it names raises CheckpointError
    whatever the trust; ``trusted`` only decides the ``trusted`` flag.
    """
    path = Path(directory) / SIGNATURE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(path, "signature", f"cannot read it: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
        public = parse_public_key(str(data["public_key"]))
        signature = base64.b64decode(str(data["signature"]), validate=True)
        signer = str(data.get("signer", ""))
    except (
        UnicodeDecodeError,
        tomllib.TOMLDecodeError,
        KeyError,
        ValueError,
        RecursionError,
    ) as exc:
        raise CheckpointError(path, "signature", f"unreadable signature file ({exc})") from None
    if data.get("algorithm", "ed25519") != "ed25519":
        raise CheckpointError(path, "signature", f"unknown algorithm {data.get('algorithm')!r}")
    try:
        Ed25519PublicKey.from_public_bytes(public.raw).verify(signature, raw_manifest)
    except InvalidSignature:
        raise CheckpointError(
            path,
            "signature",
            f"the signature by key {public.key_id} does not match the manifest "
            "(the manifest was changed after signing, or the signature was forged)",
        ) from None
    return Signature(
        signer=signer or public.comment,
        key_id=public.key_id,
        trusted=any(key.raw == public.raw for key in trusted),
    )


def _public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
