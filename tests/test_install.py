"""Installing team checkpoints: from a directory and from a mirror on 127.0.0.1, resumed
downloads, refusals that leave nothing behind, a full disk, listing and removing."""

from __future__ import annotations

import http.server
import os
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.checkpoints.checkpoint import HashCache, Policy, resolve_model
from model.checkpoints.install import find_installed, install, list_installed, remove_installed
from model.checkpoints.manifest import MANIFEST_NAME, SIGNATURE_NAME, CheckpointError
from model.checkpoints.pack import pack_checkpoint
from model.checkpoints.signing import generate_keypair
from model.runtime.api import ModelError, ModelNotFoundError
from model.runtime.gguf import read_gguf
from tests.gguf_writer import tiny_model
from tests.lora_gguf import write_lora

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A packed checkpoint (base and one adapter), files copied into it."""
    base = tiny_model().write(tmp_path / "base.gguf")
    lora = write_lora(tmp_path / "team.gguf", read_gguf(base), ["blk.0.attn_q.weight"])
    packed = pack_checkpoint(
        tmp_path / "ckpt", base, name="acme", version="1.0", adapters=[(lora, 0.5)], link=False
    )
    return packed.directory


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cache(tmp_path: Path) -> HashCache:
    return HashCache(tmp_path / "hashes.json")


def leftovers(data: Path) -> list[str]:
    """Everything under the data directory but the listing's own folders."""
    return sorted(
        str(p.relative_to(data))
        for p in data.rglob("*")
        if p.is_file() and ".downloads" not in p.parts and p.name != ".install.lock"
    )


# -- from a directory -------------------------------------------------------------------------


def test_install_list_find_and_remove(checkpoint: Path, data: Path, cache: HashCache) -> None:
    result = install(str(checkpoint), data_dir=data, cache=cache)
    assert result.path == data / "acme" / "1.0" and not result.already
    assert sorted(p.name for p in result.path.iterdir()) == sorted(
        p.name for p in checkpoint.iterdir()
    )
    assert [(i.name, i.version, i.problem) for i in list_installed(data)] == [("acme", "1.0", None)]
    assert install(str(checkpoint), data_dir=data, cache=cache).already
    (result.path / "team.gguf").unlink()  # damaged: the same install repairs it
    repaired = install(str(checkpoint), data_dir=data, cache=cache)
    assert not repaired.already and (result.path / "team.gguf").is_file()
    assert find_installed("acme", data) == result.path
    assert find_installed("acme@1.0", data) == result.path
    resolved = resolve_model("acme@1.0", data_dir=data, cache=cache)
    assert resolved.verified and resolved.directory == result.path
    removed = remove_installed("acme@1.0", data)
    assert [i.version for i in removed] == ["1.0"]
    assert list_installed(data) == [] and not (data / "acme").exists()


def test_the_newest_version_is_the_default(checkpoint: Path, data: Path, tmp_path: Path) -> None:
    base = checkpoint / "base.gguf"
    for version in ("1.9", "1.10", "1.2"):
        packed = pack_checkpoint(tmp_path / version, base, name="acme", version=version)
        install(str(packed.directory), data_dir=data)
    assert find_installed("acme", data).name == "1.10"
    with pytest.raises(ValueError, match="say which"):
        remove_installed("acme", data)


def test_a_tampered_source_installs_nothing(checkpoint: Path, data: Path, cache: HashCache) -> None:
    path = checkpoint / "team.gguf"
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(content))
    with pytest.raises(CheckpointError) as caught:
        install(str(checkpoint), data_dir=data, cache=cache)
    assert caught.value.check == "sha256"
    assert list_installed(data) == [] and leftovers(data) == []


def test_an_untrusted_source_installs_nothing_under_a_policy(
    checkpoint: Path, data: Path, tmp_path: Path
) -> None:
    generate_keypair(tmp_path / "team.key")
    policy = Policy.from_specs([str(tmp_path / "team.key.pub")], require=True)
    with pytest.raises(CheckpointError, match="not signed"):
        install(str(checkpoint), data_dir=data, policy=policy)
    assert leftovers(data) == []


def test_a_different_copy_of_an_installed_version_needs_force(
    checkpoint: Path, data: Path, tmp_path: Path
) -> None:
    install(str(checkpoint), data_dir=data)
    other = pack_checkpoint(
        tmp_path / "other", checkpoint / "base.gguf", name="acme", version="1.0", stop=["x"]
    )
    with pytest.raises(ValueError, match="already installed"):
        install(str(other.directory), data_dir=data)
    install(str(other.directory), data_dir=data, force=True)
    assert (data / "acme" / "1.0" / MANIFEST_NAME).read_bytes() == (
        other.directory / MANIFEST_NAME
    ).read_bytes()


def test_a_broken_installed_checkpoint_never_breaks_list(checkpoint: Path, data: Path) -> None:
    result = install(str(checkpoint), data_dir=data)
    (result.path / "team.gguf").unlink()
    half = data / "half" / "2.0"
    half.mkdir(parents=True)
    (half / MANIFEST_NAME).write_text("not [toml")
    (data / "stray-file").write_text("x")
    items = {f"{i.name}@{i.version}": i for i in list_installed(data)}
    assert set(items) == {"acme@1.0", "half@2.0"}
    assert items["acme@1.0"].problem == "team.gguf is missing"
    assert items["half@2.0"].problem is not None and "TOML" in items["half@2.0"].problem


# -- from a mirror on 127.0.0.1 ---------------------------------------------------------------


class Mirror(http.server.ThreadingHTTPServer):
    """Serves a directory with Range support; ``cut`` cuts a file's first download short."""

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = directory
        self.cut: dict[str, int] = {}  # file name -> bytes sent before the connection drops
        self.requests: list[tuple[str, str | None]] = []  # (file, Range header)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/team/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Mirror

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.removeprefix("/team/")
        self.server.requests.append((name, self.headers.get("Range")))
        path = self.server.directory / name
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.cut.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the cable is pulled mid-file
            return
        self.wfile.write(body)


@pytest.fixture
def mirror(checkpoint: Path) -> Iterator[Mirror]:
    server = Mirror(checkpoint)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_install_from_a_mirror(mirror: Mirror, data: Path, cache: HashCache) -> None:
    result = install(mirror.url, data_dir=data, cache=cache)
    assert result.path == data / "acme" / "1.0"
    assert resolve_model("acme", data_dir=data, cache=cache).verified
    assert not any((data / ".downloads").iterdir())


def test_a_download_cut_off_midway_resumes_and_verifies(
    mirror: Mirror, data: Path, cache: HashCache
) -> None:
    size = (mirror.directory / "base.gguf").stat().st_size
    mirror.cut["base.gguf"] = size // 2
    result = install(mirror.url, data_dir=data, cache=cache)
    ranges = [r for name, r in mirror.requests if name == "base.gguf"]
    assert ranges == [None, f"bytes={size // 2}-"]  # the second request resumed
    assert (result.path / "base.gguf").read_bytes() == (mirror.directory / "base.gguf").read_bytes()


def test_a_download_still_cut_keeps_its_part_for_the_next_install(
    mirror: Mirror, data: Path, cache: HashCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.checkpoints.install

    monkeypatch.setattr(model.checkpoints.install, "_ATTEMPTS", 1)
    size = (mirror.directory / "team.gguf").stat().st_size
    mirror.cut["team.gguf"] = 1000
    with pytest.raises(ModelError, match="run the same install again to resume"):
        install(mirror.url, data_dir=data, cache=cache)
    assert list_installed(data) == [] and leftovers(data) == []
    parts = list((data / ".downloads").iterdir())
    assert [p.stat().st_size for p in parts if p.name.endswith(".part")] == [1000]
    install(mirror.url, data_dir=data, cache=cache)
    ranges = [r for name, r in mirror.requests if name == "team.gguf"]
    assert ranges == [None, "bytes=1000-"] and size > 1000


def test_a_mirror_serving_a_corrupt_file_installs_nothing(
    mirror: Mirror, data: Path, cache: HashCache
) -> None:
    path = mirror.directory / "team.gguf"
    data_bytes = bytearray(path.read_bytes())
    data_bytes[-1] ^= 0xFF
    path.write_bytes(bytes(data_bytes))
    with pytest.raises(CheckpointError) as caught:
        install(mirror.url, data_dir=data, cache=cache)
    assert caught.value.check == "sha256"
    assert list_installed(data) == [] and leftovers(data) == []


def test_a_part_left_by_a_bad_mirror_is_downloaded_again_from_the_start(
    mirror: Mirror, data: Path, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.checkpoints.install

    monkeypatch.setattr(model.checkpoints.install, "_ATTEMPTS", 1)
    bad_dir = tmp_path / "bad-mirror"
    shutil.copytree(mirror.directory, bad_dir)
    corrupt = bytearray((bad_dir / "team.gguf").read_bytes())
    corrupt[100] ^= 0xFF  # inside the part the bad mirror gets to send
    (bad_dir / "team.gguf").write_bytes(bytes(corrupt))
    bad = Mirror(bad_dir)
    threading.Thread(target=bad.serve_forever, args=(0.05,), daemon=True).start()
    try:
        bad.cut["team.gguf"] = 1000
        with pytest.raises(ModelError, match="run the same install again to resume"):
            install(bad.url, data_dir=data, cache=cache)
    finally:
        bad.shutdown()
        bad.server_close()
    result = install(mirror.url, data_dir=data, cache=cache)  # the good mirror
    ranges = [r for name, r in mirror.requests if name == "team.gguf"]
    assert ranges == ["bytes=1000-", None]  # resumed, mismatched, then once from the start
    assert (result.path / "team.gguf").read_bytes() == (mirror.directory / "team.gguf").read_bytes()


def test_an_untrusted_mirror_is_refused_before_any_model_file_is_downloaded(
    mirror: Mirror, data: Path, tmp_path: Path
) -> None:
    generate_keypair(tmp_path / "team.key")
    policy = Policy.from_specs([str(tmp_path / "team.key.pub")], require=True)
    with pytest.raises(CheckpointError, match="not signed"):
        install(mirror.url, data_dir=data, policy=policy)
    assert {name for name, _ in mirror.requests} == {MANIFEST_NAME, SIGNATURE_NAME}
    assert leftovers(data) == []


def test_a_mirror_without_the_checkpoint_is_a_clear_error(mirror: Mirror, data: Path) -> None:
    with pytest.raises(CheckpointError, match="manifest"):
        install(mirror.url + "nothing/", data_dir=data)
    with pytest.raises(ModelError, match="cannot reach"):
        install("http://127.0.0.1:9/team/", data_dir=data)
    with pytest.raises(ModelNotFoundError):
        install(str(data / "absent"), data_dir=data)


# -- a full disk ------------------------------------------------------------------------------


def _limit_file_size() -> None:
    # Writes past 64 KiB fail as on a full disk (EFBIG; Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_disk_during_install_leaves_nothing_partial(
    checkpoint: Path, data: Path, tmp_path: Path
) -> None:
    big = tiny_model()
    big.tensors[0].dims = [256, 4096]  # about 600 KB: more than the disk has room for
    base = big.write(tmp_path / "big.gguf")
    packed = pack_checkpoint(tmp_path / "big", base, name="big", version="1", link=False)
    result = subprocess.run(
        [sys.executable, "-m", "lsp.cli", "model", "install", str(packed.directory)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")},
        preexec_fn=_limit_file_size,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "nothing was installed" in result.stderr and "Traceback" not in result.stderr
    store = tmp_path / "xdg" / "apprentice" / "checkpoints"
    assert list_installed(store) == []
    assert [p.name for p in store.rglob("*") if p.is_file()] == [".install.lock"]


def test_what_a_killed_install_left_is_cleaned_by_the_next(
    checkpoint: Path, data: Path, cache: HashCache
) -> None:
    staging = data / ".staging" / "acme@1.0.abc"
    staging.mkdir(parents=True)
    (staging / "base.gguf").write_bytes(b"half")
    removing = data / ".removing-xyz" / "ckpt"
    removing.mkdir(parents=True)
    install(str(checkpoint), data_dir=data, cache=cache)
    assert not staging.exists() and not removing.parent.exists()
    assert leftovers(data) == sorted(
        str((data / "acme" / "1.0" / p.name).relative_to(data)) for p in checkpoint.iterdir()
    )


def test_a_full_disk_during_a_download_leaves_nothing_partial(
    tmp_path: Path, mirror: Mirror
) -> None:
    big = tiny_model()
    big.tensors[0].dims = [256, 4096]
    pack_checkpoint(mirror.directory / "big", big.write(tmp_path / "big.gguf"), name="big",
                    version="1", link=False)  # fmt: skip
    mirror.directory = mirror.directory / "big"
    result = subprocess.run(
        [sys.executable, "-m", "lsp.cli", "model", "install", mirror.url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")},
        preexec_fn=_limit_file_size,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "nothing was installed" in result.stderr and "Traceback" not in result.stderr
    store = tmp_path / "xdg" / "apprentice" / "checkpoints"
    assert [p.name for p in store.rglob("*") if p.is_file()] == [".install.lock"]


def test_a_checkpoint_on_the_embedded_base_installs_without_a_second_copy_of_it(
    checkpoint: Path, data: Path, cache: HashCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.checkpoints.verification as verification
    from model.runtime.default_model import sha256_file

    embedded = checkpoint / "base.gguf"  # stands in for the assembled embedded model
    digest = sha256_file(embedded)
    monkeypatch.setattr(verification, "embedded_sha256", lambda: digest)
    monkeypatch.setattr(verification, "ensure_default_model", lambda: embedded)
    result = install(str(checkpoint), data_dir=data, cache=cache)
    assert not (result.path / "base.gguf").exists() and (result.path / "team.gguf").is_file()
    assert [i.problem for i in list_installed(data)] == [None]
    resolved = resolve_model("acme@1.0", data_dir=data)
    assert resolved.gguf == embedded and resolved.loras[0].path == result.path / "team.gguf"
    assert install(str(checkpoint), data_dir=data, cache=cache).already
