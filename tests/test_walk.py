"""The repository walk: git and plain listings, ignore rules, skipped classes, secrets, symlinks."""

from __future__ import annotations

import logging
import os
import random
import string
import subprocess
from pathlib import Path

import pytest

from indexer import walk as walk_module
from indexer.records import IndexerError
from indexer.secrets import is_secret_path
from indexer.walk import (
    WalkResult,
    path_skip_reason,
    read_source_text,
    skip_reason,
    walk_repository,
)

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Git sees neither the machine's config nor a hook's GIT_DIR/GIT_INDEX_FILE."""
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"):
        monkeypatch.delenv(name, raising=False)


def fake(alphabet: str, length: int, seed: int = 1) -> str:
    """A random-looking token built at run time, so no secret-shaped literal sits in the repo."""
    return "".join(random.Random(seed).choices(alphabet, k=length))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")
    return path


def commit_all(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "snapshot")


def write(root: Path, rel: str, text: str | bytes = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def paths(result: WalkResult) -> list[str]:
    return [file.path for file in result.files]


IGNORE_TREE = {
    "app.py": "x = 1\n",
    "debug.log": "log\n",
    "keep.log": "kept by a negation\n",
    "anchored.py": "ignored only at the root\n",
    "pkg/anchored.py": "kept: the pattern is anchored to the root\n",
    "pkg/cache_dir/data.py": "ignored: directory-only pattern\n",
    "docs/cache_dir": "kept: a file, not a directory\n",
    "deep/a/b/gen/out.py": "ignored through **\n",
    "deep/gen.py": "kept\n",
    "excluded_dir/file.py": "ignored: its folder is, negation cannot bring it back\n",
    "sub/local.py": "ignored by sub/.gitignore\n",
    "sub/special.log": "re-included by sub/.gitignore\n",
    "sub/mod.py": "kept\n",
    "scratch.py": "ignored by .git/info/exclude when in git\n",
    "dir with space/naïve файл.py": "kept: spaces and unicode\n",
}
ROOT_GITIGNORE = (
    "*.log\n!keep.log\n/anchored.py\ncache_dir/\ndeep/**/gen/\nexcluded_dir/\n"
    "!excluded_dir/file.py\n"
)
EXPECTED_KEPT = [
    ".gitignore",
    "app.py",
    "deep/gen.py",
    "dir with space/naïve файл.py",
    "docs/cache_dir",
    "keep.log",
    "pkg/anchored.py",
    "sub/.gitignore",
    "sub/mod.py",
    "sub/special.log",
]


def build_ignore_tree(root: Path) -> None:
    for rel, text in IGNORE_TREE.items():
        write(root, rel, text)
    write(root, ".gitignore", ROOT_GITIGNORE)
    write(root, "sub/.gitignore", "local.py\n!special.log\n")


def test_git_walk_honours_every_gitignore_level_and_info_exclude(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    build_ignore_tree(repo)
    write(repo, ".git/info/exclude", "scratch.py\n")
    git(repo, "add", "app.py", ".gitignore")
    git(repo, "commit", "-q", "-m", "first")
    result = walk_repository(repo)
    assert result.is_git
    assert result.root == repo.resolve()
    # Untracked files that are not ignored are listed along with tracked ones.
    assert paths(result) == EXPECTED_KEPT
    assert [f.language for f in result.files if f.path.endswith(".py")] == ["python"] * 5
    assert next(f for f in result.files if f.path == "keep.log").language == "text"


def test_plain_walk_applies_the_same_ignore_rules(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    build_ignore_tree(root)
    result = walk_repository(root)
    assert not result.is_git
    # Without git, scratch.py has no info/exclude to hide it.
    assert paths(result) == sorted([*EXPECTED_KEPT, "scratch.py"])
    assert result.skipped["ignored"] >= 6


def test_a_tracked_file_matching_gitignore_is_listed_as_git_shows_it(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    write(repo, ".gitignore", "*.cfg.py\n")
    write(repo, "forced.cfg.py")
    write(repo, "other.cfg.py")
    git(repo, "add", "-f", "forced.cfg.py")
    assert paths(walk_repository(repo)) == [".gitignore", "forced.cfg.py"]


def test_walk_of_a_subdirectory_uses_paths_relative_to_it(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    write(repo, ".gitignore", "*.tmp.py\n")
    write(repo, "src/pkg/a.py")
    write(repo, "src/pkg/b.tmp.py")
    write(repo, "top.py")
    result = walk_repository(repo / "src")
    assert result.is_git
    assert paths(result) == ["pkg/a.py"]
    assert result.files[0].abs_path == (repo / "src/pkg/a.py").resolve()


def test_deleted_tracked_file_is_skipped(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    write(repo, "a.py")
    write(repo, "gone.py")
    write(repo, "gone_dir/x.py")
    commit_all(repo)
    (repo / "gone.py").unlink()
    (repo / "gone_dir/x.py").unlink()
    (repo / "gone_dir").rmdir()
    result = walk_repository(repo)
    assert paths(result) == ["a.py"]
    assert result.skipped == {"deleted": 2}


def test_repository_without_commits_and_empty_repository(tmp_path: Path) -> None:
    empty = init_repo(tmp_path / "empty")
    result = walk_repository(empty)
    assert result.is_git and result.files == [] and result.skipped == {}
    fresh = init_repo(tmp_path / "fresh")
    write(fresh, "new.py")
    git(fresh, "add", "new.py")
    write(fresh, "untracked.py")
    assert paths(walk_repository(fresh)) == ["new.py", "untracked.py"]
    plain = tmp_path / "plain-empty"
    plain.mkdir()
    assert walk_repository(plain).files == []


def test_fsmonitor_hook_from_repository_config_is_never_run(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    marker = tmp_path / "fsmonitor-ran"
    hook = write(tmp_path, "hook.sh", f"#!/bin/sh\ntouch '{marker}'\n")
    hook.chmod(0o755)
    write(repo, "a.py")
    commit_all(repo)
    git(repo, "config", "core.fsmonitor", str(hook))
    # The trap is live: git itself runs the hook for a plain ls-files.
    git(repo, "ls-files", "--cached", "--others", "--exclude-standard")
    assert marker.exists()
    marker.unlink()
    result = walk_repository(repo)
    assert result.is_git and paths(result) == ["a.py"]
    assert not marker.exists()


def test_dubious_ownership_falls_back_to_plain_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = init_repo(tmp_path / "repo")
    write(repo, ".gitignore", "*.log\n")
    write(repo, ".git/info/exclude", "scratch.py\n")
    write(repo, "src/a.py")
    write(repo, "src/b.log")
    write(repo, "src/scratch.py")
    monkeypatch.setenv("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1")
    failed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True)
    if "dubious ownership" not in failed.stderr:
        pytest.skip("this git has no GIT_TEST_ASSUME_DIFFERENT_OWNER switch")
    with caplog.at_level(logging.WARNING, logger="indexer.walk"):
        result = walk_repository(repo / "src")
    assert not result.is_git
    # The repository's .gitignore and info/exclude above the root still apply.
    assert paths(result) == ["a.py"]
    assert "another user" in caplog.text


def test_git_redirect_in_environment_falls_back_to_plain_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = init_repo(tmp_path / "repo")
    other = init_repo(tmp_path / "other")
    write(other, "elsewhere.py")
    commit_all(other)
    write(repo, "mine.py")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    result = walk_repository(repo)
    assert not result.is_git
    assert paths(result) == ["mine.py"]


@pytest.mark.parametrize(
    "name",
    [
        ".env",
        ".env.local",
        ".env.example",
        ".envrc",
        "deploy/id_rsa",
        "id_ed25519.pub",
        "certs/server.pem",
        "tls.key",
        "store.p12",
        "app.jks",
        ".netrc",
        ".npmrc",
        ".pypirc",
        ".git-credentials",
        "home/.aws/credentials",
        "home/.docker/config.json",
        "credentials.json",
        "prod.credentials",
        "secrets.yaml",
        "service-account-prod.json",
        "infra/prod.tfvars",
        "vault.kdbx",
    ],
)
def test_secret_file_names(name: str) -> None:
    assert is_secret_path(name)
    assert path_skip_reason(name) == "secret"


@pytest.mark.parametrize(
    "name",
    ["credentials.py", "auth/secrets.py", "keyboard.py", "envelope.py", "environment.ts", "key.go"],
)
def test_code_files_with_secret_like_names_are_not_secrets(name: str) -> None:
    assert not is_secret_path(name)


def _github_token() -> str:
    return "gh" + "p_" + fake(ALNUM, 36)


def test_walk_skips_credential_files_by_name_and_keeps_files_holding_a_secret(
    tmp_path: Path,
) -> None:
    for with_git in (True, False):
        root = tmp_path / ("git" if with_git else "plain")
        if with_git:
            init_repo(root)
        write(root, "app.py")
        write(root, ".env", "DEBUG=1\n")
        write(root, "keys/deploy_key.pem", "not even a key\n")
        write(root, "settings.py", f'GITHUB_TOKEN = "{_github_token()}"\n')
        write(root, "auth/credentials.py", "def load(path):\n    return open(path).read()\n")
        result = walk_repository(root)
        assert result.is_git is with_git
        # settings.py is indexed: its token is redacted from the text read for the index.
        assert paths(result) == ["app.py", "auth/credentials.py", "settings.py"]
        assert result.skipped == {"secret": 2}
        text = read_source_text(root / "settings.py")
        assert text == 'GITHUB_TOKEN = "<redacted:github-token>"\n'


def test_binary_large_and_non_utf8_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "ok.py", "print('ok')\n")
    write(tmp_path, "blob.dat", b"abc\x00def")
    write(tmp_path, "image.png", "text, but an image by name\n")
    write(tmp_path, "big.py", "x = 1\n" * 200)
    write(tmp_path, "latin1.py", "s = 'caf\xe9'\n".encode("latin-1"))
    write(tmp_path, "bom.py", "\ufeffy = 2\n".encode())
    result = walk_repository(tmp_path, max_file_bytes=1000)
    assert paths(result) == ["bom.py", "ok.py"]
    assert result.skipped == {"binary": 2, "too-large": 1, "non-utf8": 1}
    assert read_source_text(tmp_path / "bom.py") == "y = 2\n"


def test_generated_and_vendored_files_are_skipped(tmp_path: Path) -> None:
    go_header = "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n"
    files = {
        "src/app.py": "x = 1\n",
        "node_modules/lib/index.js": "module.exports = 1\n",
        "vendor/github.com/x/y.go": "package y\n",
        "third_party/z.c": "int z;\n",
        "dist/bundle.js": "var a;\n",
        "build/__init__.py": "",
        "build/builder.py": "kept: build/ here is a Python package\n",
        "crate/Cargo.toml": "[package]\n",
        "crate/target/debug/main.rs": "fn main() {}\n",
        "web/package.json": "{}\n",
        "web/dist/app.js": "var a;\n",
        "cmd/build/main.go": "package main\n",
        "myenv/pyvenv.cfg": "home = /usr/bin\n",
        "myenv/lib/site.py": "x = 1\n",
        "pkg.egg-info/PKG-INFO": "Name: pkg\n",
        "package-lock.json": "{}\n",
        "Cargo.lock": "# lock\n",
        "static/app.min.js": "var a;\n",
        "static/app.js.map": "{}\n",
        "proto/api_pb2.py": "x = 1\n",
        "api/api.pb.go": go_header,
        "api/handwritten.go": go_header,
        "lexer.py": '"""Helpers for tokens generated by the lexer."""\n',
    }
    for with_git in (True, False):
        root = tmp_path / ("git" if with_git else "plain")
        if with_git:
            init_repo(root)
        for rel, text in files.items():
            write(root, rel, text)
        if with_git:
            commit_all(root)
        result = walk_repository(root)
        assert result.is_git is with_git
        assert paths(result) == [
            "build/__init__.py",
            "build/builder.py",
            "cmd/build/main.go",  # a source folder: no manifest beside it
            "crate/Cargo.toml",
            "lexer.py",
            "src/app.py",
            "web/package.json",
        ]
        assert set(result.skipped) == {"generated"}


def test_symlinks_outside_loops_and_duplicates(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/secret_notes.py", "x = 1\n")
    for with_git in (True, False):
        root = tmp_path / ("git" if with_git else "plain")
        if with_git:
            init_repo(root)
        write(root, "real.py")
        write(root, "pkg/mod.py")
        write(root, "ignored_dir/hidden.py", "y = 2\n")
        write(root, ".gitignore", "ignored_dir/\n")
        (root / "to_outside.py").symlink_to(outside)
        (root / "outside_dir").symlink_to(outside.parent, target_is_directory=True)
        (root / "pkg/loop").symlink_to(root, target_is_directory=True)
        (root / "pkg/sibling").symlink_to(root / "ignored_dir", target_is_directory=True)
        (root / "cycle_a").symlink_to(root / "cycle_b")
        (root / "cycle_b").symlink_to(root / "cycle_a")
        (root / "alias.py").symlink_to(root / "real.py")
        (root / "exposed.py").symlink_to(root / "ignored_dir/hidden.py")
        (root / "dangling.py").symlink_to(root / "missing.py")
        result = walk_repository(root)
        assert result.is_git is with_git
        # real.py once under its own path; hidden.py, not indexed itself, under its link.
        assert paths(result) == [".gitignore", "exposed.py", "pkg/mod.py", "real.py"]
        assert result.skipped.get("symlink-outside") == 2
        assert result.skipped.get("symlink-loop") == 3
        assert result.skipped.get("symlink-dir") == 1
        assert result.skipped.get("duplicate") == 1
        assert result.skipped.get("unreadable") == 1


def test_file_deleted_between_listing_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_repo(tmp_path)
    write(tmp_path, "a.py")
    write(tmp_path, "vanishing.py")
    original = walk_module._read

    def delete_then_read(abs_path: Path, max_file_bytes: int) -> tuple[bytes, os.stat_result]:
        if abs_path.name == "vanishing.py":
            abs_path.unlink()
        return original(abs_path, max_file_bytes)

    monkeypatch.setattr(walk_module, "_read", delete_then_read)
    result = walk_repository(tmp_path)
    assert paths(result) == ["a.py"]
    assert result.skipped == {"unreadable": 1}


def test_permission_denied_and_fifo_are_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "a.py")
    locked = write(tmp_path, "locked.py")
    os.mkfifo(tmp_path / "pipe.py")
    real_open = os.open

    def guarded_open(path: os.PathLike[str] | str, flags: int, *args: int) -> int:
        # Tests run as root here, where chmod 000 would not stop the read.
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", guarded_open)
    result = walk_repository(tmp_path)
    assert paths(result) == ["a.py"]
    assert result.skipped == {"unreadable": 2}


def test_extra_ignores_apply_in_both_modes(tmp_path: Path) -> None:
    for with_git in (True, False):
        root = tmp_path / ("git" if with_git else "plain")
        if with_git:
            init_repo(root)
        write(root, "src/a.py")
        write(root, "docs/guide.md", "# guide\n")
        write(root, "notes.txt", "notes\n")
        result = walk_repository(root, extra_ignores=["docs/", "*.txt"])
        assert paths(result) == ["src/a.py"]
        assert result.skipped == {"ignored": 2}


def test_known_unchanged_files_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path, "a.py")
    write(tmp_path, "b.py")
    info = a.stat()
    original = walk_module._read
    read: list[str] = []

    def counting_read(abs_path: Path, max_file_bytes: int) -> tuple[bytes, os.stat_result]:
        read.append(abs_path.name)
        return original(abs_path, max_file_bytes)

    monkeypatch.setattr(walk_module, "_read", counting_read)
    result = walk_repository(tmp_path, known={"a.py": (info.st_size, info.st_mtime_ns)})
    assert paths(result) == ["a.py", "b.py"]
    assert read == ["b.py"]
    os.utime(a, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    read.clear()
    walk_repository(tmp_path, known={"a.py": (info.st_size, info.st_mtime_ns)})
    assert sorted(read) == ["a.py", "b.py"]


def test_root_must_be_an_existing_directory(tmp_path: Path) -> None:
    file = write(tmp_path, "a.py")
    with pytest.raises(IndexerError, match="not a directory"):
        walk_repository(file)
    with pytest.raises(IndexerError, match="does not exist"):
        walk_repository(tmp_path / "missing")


def test_single_file_rules_match_the_walk(tmp_path: Path) -> None:
    assert skip_reason("src/app.py", b"def f():\n    return 1\n") is None
    assert skip_reason(".env.production", b"DEBUG=1\n") == "secret"
    assert skip_reason("app.py", _github_token().encode()) is None  # redacted, not skipped
    assert skip_reason("data.py", b"\x00\x01") == "binary"
    assert skip_reason("big.py", b"x" * 11, max_file_bytes=10) == "too-large"
    assert skip_reason("latin.py", "é".encode("latin-1")) == "non-utf8"
    assert skip_reason("node_modules/x/index.js", b"var a;\n") == "generated"
    good = write(tmp_path, "good.py", "x = 1\n")
    leaky = write(tmp_path, "leaky.py", f"token = '{_github_token()}'\n")
    assert read_source_text(good, 1000) == "x = 1\n"
    assert read_source_text(leaky, 1000) == "token = '<redacted:github-token>'\n"
    assert read_source_text(write(tmp_path, "id_rsa", "x\n"), 1000) is None
    assert read_source_text(tmp_path / "missing.py", 1000) is None


def test_tracked_files_below_a_folder_replaced_by_a_symlink_are_not_read(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    write(repo, "a.py")
    write(repo, "linked/x.py")
    commit_all(repo)
    write(tmp_path, "outside/x.py", "outside = True\n")
    (repo / "linked/x.py").unlink()
    (repo / "linked").rmdir()
    (repo / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert "linked/x.py" in git(repo, "ls-files")
    result = walk_repository(repo)
    assert paths(result) == ["a.py"]
    # git also lists the link itself as untracked; it leads outside.
    assert result.skipped == {"symlink-dir": 1, "symlink-outside": 1}


def test_file_names_that_are_not_utf8_are_skipped(tmp_path: Path) -> None:
    for with_git in (True, False):
        root = tmp_path / ("git" if with_git else "plain")
        if with_git:
            init_repo(root)
        write(root, "ok.py")
        fd = os.open(os.fsencode(root) + b"/caf\xe9.py", os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        result = walk_repository(root)
        assert result.is_git is with_git
        assert paths(result) == ["ok.py"]
        assert result.skipped == {"non-utf8": 1}
