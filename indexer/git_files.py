"""Asking git which files a repository shows, without letting the repository run anything.

Git is found on absolute ``PATH`` entries only, and runs with the settings a cloned
repository could abuse (fsmonitor, hooks, pager, ssh) switched off on its command line.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_GIT_TIMEOUT_S = 120


def git_top(root: Path) -> Path | None:
    """The nearest folder at or above ``root`` that holds ``.git``."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder
    return None


# Command-line configuration outranks every config file, so these neutralise what a
# cloned repository's .git/config could make git run: an fsmonitor hook (executed by
# ls-files itself), hooks, a pager. The ownership check (safe.directory) stays on:
# setting GIT_DIR would skip it, so git discovers the repository from the cwd.
_GIT_CONFIG = (
    *("core.fsmonitor=false", "core.untrackedCache=false", f"core.hooksPath={os.devnull}"),
    *("core.pager=cat", "core.sshCommand=false", "protocol.allow=never"),
)
_GIT_ENV = {
    "GIT_OPTIONAL_LOCKS": "0",  # never write the user's index behind their back
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_LAZY_FETCH": "1",  # a partial clone must not reach the network
    "GIT_PAGER": "cat",
}
# Set in our environment, these would point git at another repository than the root.
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")


def git_list(root: Path, paths: Sequence[str] = ()) -> list[str] | None:
    """What git shows under ``root`` (tracked + untracked-not-ignored), or None if git fails.

    ``paths``: only these (repository-relative, literal) paths.
    """
    redirect = [name for name in _GIT_REDIRECTS if os.environ.get(name)]
    if redirect:
        logger.warning("%s set in the environment: walking %s without git", redirect[0], root)
        return None
    executable = trusted_executable("git")
    if executable is None:
        logger.warning("git is unavailable: walking %s without it", root)
        return None
    command = [executable, "--no-pager"]
    command += [arg for setting in _GIT_CONFIG for arg in ("-c", setting)]
    command += ["ls-files", "--cached", "--others", "--exclude-standard", "-z"]
    command += ["--", *(f":(literal){path}" for path in paths)] if paths else []
    try:
        done = subprocess.run(
            command,
            cwd=root,
            env={**os.environ, **_GIT_ENV},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("cannot run git in %s, walking without it: %s", root, exc)
        return None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        if "dubious ownership" in message:
            logger.warning(
                "git refuses %s: it belongs to another user (see git's safe.directory); "
                "walking it without git",
                root,
            )
        else:
            logger.warning("git ls-files failed in %s, walking without git: %s", root, message)
        return None
    output = done.stdout
    return [os.fsdecode(path) for path in output.split(b"\0") if path]


def trusted_executable(name: str) -> str | None:
    """``name`` found on PATH, absolute entries only.

    A relative entry (``.``, an empty one) names the working directory, which for a language
    server is often the repository: a ``git`` planted there must never run.
    """
    entries = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    return shutil.which(name, path=os.pathsep.join(e for e in entries if os.path.isabs(e)))
