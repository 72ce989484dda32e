"""Installed team checkpoints: install from a directory or a team mirror, list, find, remove.

Checkpoints live in ``$XDG_DATA_HOME/apprentice/checkpoints/NAME/VERSION/``. An install
assembles the checkpoint in a staging directory beside them, verifies every file there
(the same checks as ``apprentice model verify``) and only then renames the directory into
place, so a checkpoint is either fully installed or not there at all. Downloads go to
``.downloads/<sha256>.part`` first and resume with an HTTP Range request after a cut.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from model.checkpoints.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    CheckpointError,
    FileEntry,
    Manifest,
    load_manifest,
    manifest_digest,
    parse_manifest,
    version_key,
)
from model.checkpoints.verification import (
    OPEN_POLICY,
    HashCache,
    Policy,
    Report,
    check_signed,
    default_hash_cache,
    is_embedded_base,
    verify_checkpoint,
)
from model.runtime.api import ModelError, ModelNotFoundError
from model.runtime.default_model import sha256_file

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (file, bytes done, bytes total)
_BLOCK = 1 << 20
_DOWNLOADS = ".downloads"
_STAGING = ".staging"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_ATTEMPTS = 4
_TIMEOUT_S = 30.0


def checkpoints_dir(data_dir: Path | None = None) -> Path:
    """Where installed checkpoints live (``$XDG_DATA_HOME/apprentice/checkpoints``)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or ""
    root = Path(base).expanduser() if base else Path.home() / ".local" / "share"
    return root / "apprentice" / "checkpoints"


@dataclass(frozen=True)
class Installed:
    """One installed checkpoint as ``apprentice model list`` shows it; ``problem`` if broken."""

    name: str
    version: str
    path: Path
    problem: str | None = None
    signed: bool = False

    def as_json(self) -> dict[str, object]:
        """The ``--json`` form."""
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "ok": self.problem is None,
            "problem": self.problem,
            "signed": self.signed,
        }


def list_installed(data_dir: Path | None = None) -> list[Installed]:
    """Every installed checkpoint, broken ones included (with their problem); never raises."""
    root = checkpoints_dir(data_dir)
    found: list[Installed] = []
    try:
        names = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return found
    for name_dir in names:
        try:
            versions = [p for p in name_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError:
            continue
        for version_dir in sorted(versions, key=lambda p: version_key(p.name)):
            found.append(_inspect(name_dir.name, version_dir))
    return found


def stored_files(manifest: Manifest) -> tuple[FileEntry, ...]:
    """The files an install holds: all of the checkpoint's (its PEFT folder's included) but a
    base that is the embedded model (the checkpoint then loads on the embedded copy; 253 MB
    not stored twice)."""
    if is_embedded_base(manifest.base):
        return tuple(e for e in manifest.files() if e is not manifest.base)
    return manifest.files()


def _inspect(name: str, directory: Path) -> Installed:
    """A cheap health check: the manifest parses, names this place, and every file has its size."""
    version = directory.name
    try:
        manifest, _ = load_manifest(directory)
        if (manifest.name, manifest.version) != (name, version):
            return Installed(
                name, version, directory, f"the manifest names {manifest.label}", False
            )
        for entry in stored_files(manifest):
            path = directory / entry.file
            if not path.is_file():
                return Installed(name, version, directory, f"{entry.file} is missing")
            if path.stat().st_size != entry.size:
                return Installed(name, version, directory, f"{entry.file} has the wrong size")
    except (CheckpointError, OSError) as exc:
        return Installed(name, version, directory, str(exc))
    return Installed(name, version, directory, None, (directory / SIGNATURE_NAME).is_file())


def split_spec(spec: str) -> tuple[str, str | None]:
    """``NAME@VERSION`` -> (name, version); ``NAME`` -> (name, None)."""
    name, _, version = spec.partition("@")
    if not name or name.startswith(".") or "/" in spec or (version == "" and "@" in spec):
        raise ValueError(f"{spec!r} is not NAME or NAME@VERSION")
    return name, version or None


def find_installed(spec: str, data_dir: Path | None = None) -> Path:
    """The directory of installed ``NAME[@VERSION]`` (the newest version when none is given)."""
    name, version = split_spec(spec)
    candidates = [i for i in list_installed(data_dir) if i.name == name]
    if version is not None:
        candidates = [i for i in candidates if i.version == version]
    if not candidates:
        raise ModelNotFoundError(
            f"no model file or installed checkpoint named {spec!r} "
            "(`apprentice model list` shows the installed ones)"
        )
    if version is None:
        healthy = [i for i in candidates if i.problem is None] or candidates
        candidates = sorted(healthy, key=lambda i: version_key(i.version))
    return candidates[-1].path


def remove_installed(spec: str, data_dir: Path | None = None) -> list[Installed]:
    """Remove ``NAME@VERSION`` (or ``NAME`` when only one version is installed)."""
    name, version = split_spec(spec)
    matches = [
        i for i in list_installed(data_dir) if i.name == name and version in (None, i.version)
    ]
    if not matches:
        raise ModelNotFoundError(f"no installed checkpoint {spec!r}")
    if version is None and len(matches) > 1:
        versions = ", ".join(i.version for i in matches)
        raise ValueError(f"{name} has versions {versions}: say which, e.g. {name}@{versions[0]}")
    with _store_lock(checkpoints_dir(data_dir)):
        for item in matches:
            _remove(item.path)
    return matches


def _remove(path: Path) -> None:
    """Out of the listing first (one rename), then deleted: never half a checkpoint listed."""
    trash = Path(tempfile.mkdtemp(prefix=".removing-", dir=path.parent.parent))
    os.replace(path, trash / "ckpt")
    shutil.rmtree(trash, ignore_errors=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the name's folder, once its last version is gone


@contextlib.contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """One install or remove at a time per store (installs share partial downloads)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = (root / ".install.lock").open("a")
    except OSError as exc:
        raise ModelError(f"cannot write to {root}: {exc.strerror or exc}") from None
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


# -- installing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did."""

    manifest: Manifest
    path: Path
    report: Report | None
    already: bool = False


def install(
    source: str,
    *,
    policy: Policy = OPEN_POLICY,
    data_dir: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
    cache: HashCache | None = None,
) -> InstallResult:
    """Install the checkpoint at ``source`` (a directory, or an http(s) URL of one).

    Every file is verified in a staging directory before the checkpoint is renamed into
    place; on any failure nothing is left under its final name. A cut download keeps its
    ``.part`` file and resumes on the next try; a full disk removes everything partial.
    """
    fetcher = _Fetcher.for_source(source)
    root = checkpoints_dir(data_dir)
    with _store_lock(root):
        _remove_stale(root)
        return _install(fetcher, root, policy, force, progress, cache)


def _remove_stale(root: Path) -> None:
    """What an install or remove killed midway left (we hold the lock: nothing is live)."""
    stale = [*(root / _STAGING).glob("*"), *root.glob(".removing-*")]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def _install(
    fetcher: _Fetcher,
    root: Path,
    policy: Policy,
    force: bool,
    progress: Progress | None,
    cache: HashCache | None,
) -> InstallResult:
    raw = fetcher.read_small(MANIFEST_NAME)
    if raw is None:
        raise CheckpointError(fetcher.describe(MANIFEST_NAME), "manifest", "the file is missing")
    manifest = parse_manifest(raw, fetcher.describe(MANIFEST_NAME))
    signature = fetcher.read_small(SIGNATURE_NAME)
    target = root / manifest.name / manifest.version
    if target.exists():
        try:
            _, existing = load_manifest(target)
        except CheckpointError:
            existing = b""
        if existing == raw and not force:
            if _inspect(manifest.name, target).problem is None:
                return InstallResult(manifest, target, None, already=True)
            force = True  # the same checkpoint, damaged: installed afresh
        if not force:
            raise ValueError(
                f"{manifest.label} is already installed with other contents at {target}; "
                f"remove it first (apprentice model remove {manifest.label}) or pass --force"
            )
    cache = cache or default_hash_cache()
    staging: Path | None = None
    try:
        (root / _STAGING).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{manifest.label}.", dir=root / _STAGING))
        (staging / MANIFEST_NAME).write_bytes(raw)
        if signature is not None:
            (staging / SIGNATURE_NAME).write_bytes(signature)
        # The signature first: an untrusted or forged checkpoint costs no download.
        check_signed(staging, raw, policy)
        for entry in stored_files(manifest):
            (staging / entry.file).parent.mkdir(exist_ok=True)  # the PEFT folder's files
            if fetcher.fetch(entry, staging / entry.file, root / _DOWNLOADS, progress):
                cache.prime(staging / entry.file, entry.sha256)
        report = verify_checkpoint(staging, policy, cache=cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # --force: the old one goes only once the new one is verified
            _remove(target)
            target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)
        staging = None
        for entry in stored_files(manifest):  # hashed in staging: not again at the first load
            cache.prime(target / entry.file, entry.sha256)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            fetcher.discard_downloads(manifest, root / _DOWNLOADS)
            raise ModelError(
                f"no space left while installing {manifest.label} into {root} "
                f"({exc.strerror}); nothing was installed: free some space and try again"
            ) from None
        raise ModelError(f"installing {manifest.label} failed: {exc.strerror or exc}") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("installed %s at %s (digest %s)", manifest.label, target, manifest_digest(raw))
    return InstallResult(manifest, target, report)


class _Fetcher:
    """Reads a checkpoint's files from a directory or over HTTP(S)."""

    def __init__(self, base: str) -> None:
        self.base = base

    @staticmethod
    def for_source(source: str) -> _Fetcher:
        scheme = urllib.parse.urlsplit(source).scheme.lower()
        if scheme in ("http", "https"):
            return _HttpFetcher(source.rstrip("/") + "/")
        if scheme and len(scheme) > 1:
            raise ValueError(f"cannot install from {source!r}: use a directory or an http(s) URL")
        path = Path(source).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(f"no checkpoint directory at {path}")
        return _Fetcher(str(path))

    def describe(self, name: str) -> str:
        return str(Path(self.base) / name)

    def read_small(self, name: str) -> bytes | None:
        """A manifest-sized file, or None when the source has no such file."""
        try:
            return (Path(self.base) / name).read_bytes()
        except FileNotFoundError:
            return None

    def fetch(
        self, entry: FileEntry, dest: Path, downloads: Path, progress: Progress | None
    ) -> bool:
        """Put one file into the staging directory; True when its sha256 was checked here.

        A file not checked here is verified later, with the rest of the checkpoint.
        """
        source = Path(self.base) / entry.file
        if not source.is_file():
            raise CheckpointError(source, "presence", "the file is missing")
        with source.open("rb") as src, dest.open("wb") as out:
            done = 0
            while block := src.read(_BLOCK):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(entry.file, done, entry.size)
            out.flush()
            os.fsync(out.fileno())
        return False

    def discard_downloads(self, manifest: Manifest, downloads: Path) -> None:
        """Nothing is kept for a directory source."""


class _HttpFetcher(_Fetcher):
    """A team mirror: ``BASE/apprentice-model.toml`` and the files beside it."""

    def describe(self, name: str) -> str:
        return urllib.parse.urljoin(self.base, urllib.parse.quote(name))

    def _open(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={"User-Agent": "apprentice", **headers})
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
        assert isinstance(response, http.client.HTTPResponse)
        return response

    def read_small(self, name: str) -> bytes | None:
        url = self.describe(name)
        try:
            with self._open(url, {}) as response:
                return response.read(1 << 20)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ModelError(f"{url}: the server answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(f"cannot reach {url}: {reason}") from None

    def fetch(
        self, entry: FileEntry, dest: Path, downloads: Path, progress: Progress | None
    ) -> bool:
        """Download to ``.downloads/<sha256>.part``, resuming, check it, move it into staging.

        A part kept from an earlier try may hold another mirror's bytes: when the finished
        file does not match and some of it was resumed, the part is discarded and the file
        downloaded once more from its first byte, so a bad mirror is not blamed on this one.
        """
        downloads.mkdir(parents=True, exist_ok=True)
        part = downloads / f"{entry.sha256}.part"
        url = self.describe(entry.file)
        resumed = self._complete(url, part, entry, progress)
        digest = sha256_file(part)
        if digest != entry.sha256 and resumed:
            logger.warning(
                "%s: the resumed download does not match its sha256; downloading it again "
                "from the start (the earlier part may have come from another mirror)",
                url,
            )
            part.unlink()
            self._complete(url, part, entry, progress)
            digest = sha256_file(part)
        if digest != entry.sha256:
            part.unlink()
            raise CheckpointError(
                url,
                "sha256",
                f"the digest is {digest[:16]}…, the manifest says {entry.sha256[:16]}…",
            )
        os.replace(part, dest)
        return True

    def _complete(self, url: str, part: Path, entry: FileEntry, progress: Progress | None) -> bool:
        """Download ``part`` until it has ``entry.size`` bytes; True when any was resumed."""
        last_error = ""
        resumed = False
        for attempt in range(_ATTEMPTS):
            have = part.stat().st_size if part.exists() else 0
            if have > entry.size:
                part.unlink()
                have = 0
            if have == entry.size:
                resumed = resumed or attempt == 0
                break
            if attempt or have:
                logger.info("resuming %s at byte %d of %d", url, have, entry.size)
            resumed = resumed or have > 0
            try:
                self._download(url, part, have, entry, progress)
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError) as exc:
                last_error = str(getattr(exc, "reason", exc)) or type(exc).__name__
            except ConnectionError as exc:
                last_error = exc.strerror or type(exc).__name__
        have = part.stat().st_size if part.exists() else 0
        if have != entry.size:
            raise ModelError(
                f"downloading {url} stopped at {have} of {entry.size} bytes ({last_error}); "
                "run the same install again to resume"
            )
        return resumed

    def _download(
        self, url: str, part: Path, have: int, entry: FileEntry, progress: Progress | None
    ) -> None:
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            response = self._open(url, headers)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # our partial file is not a prefix of theirs: start over
                part.unlink(missing_ok=True)
                raise urllib.error.URLError("the server refused the resume range") from None
            if exc.code == 404:
                raise CheckpointError(url, "presence", "the mirror has no such file") from None
            raise ModelError(f"{url}: the server answered {exc.code} {exc.reason}") from None
        with response:
            if have and response.status == 206:
                start = _range_start(response.headers.get("Content-Range", ""))
                if start != have:
                    raise ModelError(f"{url}: the server resumed at byte {start}, not {have}")
                mode = "ab"
            else:
                have, mode = 0, "wb"  # no range support: the whole file again
            with part.open(mode) as out:
                while block := response.read(_BLOCK):
                    if have + len(block) > entry.size:
                        raise CheckpointError(url, "size", f"longer than {entry.size} bytes")
                    out.write(block)
                    have += len(block)
                    if progress is not None:
                        progress(entry.file, have, entry.size)
                out.flush()
                os.fsync(out.fileno())

    def discard_downloads(self, manifest: Manifest, downloads: Path) -> None:
        """After a full disk, partial downloads only take space the user needs back."""
        for entry in stored_files(manifest):
            with contextlib.suppress(OSError):
                (downloads / f"{entry.sha256}.part").unlink()


def _range_start(content_range: str) -> int:
    """The first byte of ``Content-Range: bytes START-END/TOTAL`` (-1 when unreadable)."""
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1
