"""The user's settings file: defaults laid beneath whatever the editor or the command line sends.

An install with no editor to configure (an air-gapped bundle's ``install.sh``, a team's
checkpoint) writes its choices to one JSON file, ``$XDG_CONFIG_HOME/apprentice/settings.json``
(``~/.config/...``; ``$APPRENTICE_SETTINGS`` names another). It holds the same camelCase keys
as the editor's settings, bare or under an ``apprentice`` key. ``apprentice serve``,
``apprentice complete`` and ``apprentice doctor`` read it; what the editor sends (or a
command-line flag) wins key by key, with one exception: a file that sets
``model.requireSignature`` keeps signatures required, and its ``model.trustedKeys`` are the
only keys trusted, so an editor's defaults cannot loosen a team's policy.

The file never stops anything: unreadable, not JSON or not an object, it is ignored with one
log line; a bad key is dropped with one log line naming it, and the rest is kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp.core.settings import ServerSettings, parse_settings

logger = logging.getLogger(__name__)

ENV_VAR = "APPRENTICE_SETTINGS"
# A settings file is a few hundred bytes; anything far bigger is not one.
MAX_BYTES = 1 << 20
_SECTIONS = ("model", "completion", "verify", "index")


def settings_path() -> Path:
    """Where the user's settings file lives (it may not exist)."""
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base).expanduser() if base else Path.home() / ".config"
    return root / "apprentice" / "settings.json"


@dataclass(frozen=True)
class UserSettings:
    """The good keys of the settings file, and one line per thing that was wrong with it."""

    path: Path
    raw: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    found: bool = False

    def keys(self) -> list[str]:
        """The dotted keys the file sets (``model.path``, ``logLevel``)."""
        return [".".join(path) for path, _ in _leaves(self.raw)]


def load_user_settings(path: Path | None = None) -> UserSettings:
    """Read the settings file (``settings_path()`` by default); never raises."""
    path = path or settings_path()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return UserSettings(path)
    except OSError as error:
        return _ignored(path, f"cannot be read ({error.strerror or error})")
    if size > MAX_BYTES:
        return _ignored(path, f"is {size} bytes, more than a settings file's {MAX_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return _ignored(path, f"cannot be read ({error})")
    except ValueError as error:
        return _ignored(path, f"is not JSON ({error})")
    data = _unwrapped(data)
    if not isinstance(data, dict):
        return _ignored(path, f"holds a {type(data).__name__}, not an object of settings")
    raw, problems = clean(data)
    if problems:
        logger.warning(
            "settings file %s: ignoring %s (the rest is used)", path, "; ".join(problems)
        )
    return UserSettings(path, raw, tuple(problems), found=True)


def _ignored(path: Path, why: str) -> UserSettings:
    message = f"settings file {path} {why}: it is ignored and the defaults are used"
    logger.warning("%s", message)
    return UserSettings(path, problems=(message,), found=True)


def _leaves(raw: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Each setting as (path, value): a section's keys one by one, anything else whole."""
    for key, value in raw.items():
        if key in _SECTIONS and isinstance(value, dict):
            for inner, item in value.items():
                yield (key, inner), item
        else:
            yield (key,), value


def _nest(path: tuple[str, ...], value: Any, into: dict[str, Any]) -> None:
    node = into
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def clean(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The keys of ``raw`` the settings schema accepts, and one line per key it refuses."""
    kept: dict[str, Any] = {}
    problems: list[str] = []
    for path, value in _leaves(raw):
        alone: dict[str, Any] = {}
        _nest(path, value, alone)
        _, refused = parse_settings(alone)
        if refused:
            problems.extend(refused)
        else:
            _nest(path, value, kept)
    return kept, problems


def _unwrapped(raw: object) -> object:
    if isinstance(raw, dict) and isinstance(raw.get("apprentice"), dict):
        return raw["apprentice"]
    return raw


def layered(raw: object, user: UserSettings) -> tuple[ServerSettings, list[str]]:
    """The settings in force: ``raw`` (the editor's, or flags) over the user's file.

    Returns them with one line per problem in ``raw`` (each bad key keeps the file's value,
    else its default), as ``parse_settings`` reports them.
    """
    raw = _unwrapped(raw)
    if raw is not None and not isinstance(raw, dict):
        return parse_settings(user.raw)[0], [
            f"settings: expected an object, got {type(raw).__name__}"
        ]
    given, problems = clean(raw or {})
    merged: dict[str, Any] = {}
    for path, value in _leaves(user.raw):
        _nest(path, value, merged)
    for path, value in _leaves(given):
        _nest(path, value, merged)
    policy = user.raw.get("model", {})
    if policy.get("requireSignature") is True:
        model = merged.setdefault("model", {})
        if model.get("requireSignature") is not True or (
            "trustedKeys" in policy and model.get("trustedKeys") != policy["trustedKeys"]
        ):
            logger.info("the signature policy of %s is kept over the editor's", user.path)
        model["requireSignature"] = True
        if "trustedKeys" in policy:
            model["trustedKeys"] = policy["trustedKeys"]
    settings, late = parse_settings(merged)
    return settings, problems + late
