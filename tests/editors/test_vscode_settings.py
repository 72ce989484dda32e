"""The VS Code extension's settings mirror the server's, so the two cannot drift apart.

The server's side is derived from the dataclasses in lsp/core/settings.py (every field of every
group, its JSON type and its default), so a setting added there fails this test until the
extension's package.json declares it too, with the same type and default.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from lsp.server.language_server import REINDEX, STATUS
from lsp.core.settings import LOG_LEVELS, ServerSettings, parse_settings, settings_as_json

PACKAGE = Path(__file__).resolve().parents[2] / "editors" / "vscode" / "package.json"
PREFIX = "apprentice."
# The extension's own settings (how to start the server, the on/off switch), never sent.
CLIENT_KEYS = {"enable", "executable", "pythonPath"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _json_type(annotation: Any) -> dict[str, Any]:
    """The JSON schema type of a settings field's annotation."""
    scalars = {str: "string", int: "integer", bool: "boolean", float: "number"}
    if annotation in scalars:
        return {"type": scalars[annotation]}
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is types.UnionType and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return {"type": [scalars[inner], "null"]}
    if typing.get_origin(annotation) is tuple and args[1:] == (Ellipsis,):
        return {"type": "array", "items": _json_type(args[0])}
    raise AssertionError(f"no JSON type for {annotation!r}: extend this test")


def server_schema() -> dict[str, dict[str, Any]]:
    """Every server setting as ``{"model.path": {"type": ..., "default": ...}}``."""
    defaults = settings_as_json(ServerSettings())
    hints = typing.get_type_hints(ServerSettings)
    schema: dict[str, dict[str, Any]] = {}
    for spec in fields(ServerSettings):
        annotation = hints[spec.name]
        group = _camel(spec.name)
        if is_dataclass(annotation):
            inner_hints = typing.get_type_hints(annotation)
            for inner in fields(annotation):
                key = _camel(inner.name)
                schema[f"{group}.{key}"] = {
                    **_json_type(inner_hints[inner.name]),
                    "default": defaults[group][key],
                }
        else:
            schema[group] = {**_json_type(annotation), "default": defaults[group]}
    return schema


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PACKAGE.read_text(encoding="utf-8"))
    return data


def extension_settings() -> dict[str, dict[str, Any]]:
    """The extension's server settings (client-only keys left out), keyed without the prefix."""
    properties = manifest()["contributes"]["configuration"]["properties"]
    assert all(key.startswith(PREFIX) for key in properties)
    return {
        key.removeprefix(PREFIX): spec
        for key, spec in properties.items()
        if key.removeprefix(PREFIX) not in CLIENT_KEYS
    }


def test_the_extension_declares_exactly_the_server_settings() -> None:
    ours, theirs = set(extension_settings()), set(server_schema())
    assert not theirs - ours, f"missing in editors/vscode/package.json: {sorted(theirs - ours)}"
    assert not ours - theirs, f"not server settings: {sorted(ours - theirs)}"


def test_types_and_defaults_match() -> None:
    ours = extension_settings()
    for key, expected in server_schema().items():
        declared = {name: ours[key][name] for name in expected if name in ours[key]}
        assert declared == expected, f"apprentice.{key}"
        assert ours[key].get("description"), f"apprentice.{key} has no description"


def test_the_log_level_choices_match() -> None:
    assert tuple(extension_settings()["logLevel"]["enum"]) == LOG_LEVELS


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """What the extension sends: nested by the dots, unset (null) values left out."""
    result: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *groups, last = key.split(".")
        node = result
        for group in groups:
            node = node.setdefault(group, {})
        node[last] = value
    return result


def test_the_extension_defaults_are_the_server_defaults() -> None:
    """Sent as they are (the extension's initializationOptions), they change nothing."""
    sent = _nested({key: spec["default"] for key, spec in extension_settings().items()})
    settings, problems = parse_settings({"apprentice": sent})
    assert problems == []
    assert settings == ServerSettings()


def test_settings_that_pick_programs_models_or_servers_are_restricted() -> None:
    """Untrusted workspaces may not set them: every non-numeric model setting, the index
    folder, and the extension's executable and interpreter."""
    data = manifest()
    restricted = set(data["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"])
    properties = data["contributes"]["configuration"]["properties"]
    assert restricted <= set(properties)
    must = {PREFIX + "executable", PREFIX + "pythonPath", PREFIX + "index.location"}
    must |= {
        PREFIX + key
        for key, spec in extension_settings().items()
        if key.startswith("model.") and "integer" not in spec["type"]
    }
    assert not must - restricted, f"not restricted: {sorted(must - restricted)}"
    for key in restricted:
        # Machine scope: a remote window reads them from that machine's settings.
        assert properties[key].get("scope") == "machine-overridable", key


def test_extension_commands_do_not_take_the_server_command_ids() -> None:
    """vscode-languageclient registers the server's commands itself; the same id twice fails
    the client's start ("command already exists")."""
    commands = {entry["command"] for entry in manifest()["contributes"]["commands"]}
    assert commands.isdisjoint({STATUS, REINDEX})
