"""Server settings: camelCase JSON in, typed defaults out, every problem reported."""

from __future__ import annotations

from lsp.core.settings import DEFAULT_LANGUAGES, ServerSettings, parse_settings, settings_as_json


def test_nothing_given_is_the_default_configuration() -> None:
    assert parse_settings(None) == (ServerSettings(), [])
    assert parse_settings({}) == (ServerSettings(), [])


def test_camel_case_keys_reach_typed_fields() -> None:
    settings, problems = parse_settings(
        {
            "model": {"path": "/m.gguf", "remoteUrl": "http://127.0.0.1:8080", "threads": 2},
            "completion": {"debounceMs": 10, "maxTokens": 12, "candidates": 1},
            "verify": {"ruff": False},
            "index": {"location": "/tmp/idx", "embeddings": False},
            "languages": ["python"],
            "logLevel": "DEBUG",
        }
    )
    assert problems == []
    assert settings.model.path == "/m.gguf"
    assert settings.model.remote_url == "http://127.0.0.1:8080"
    assert settings.model.threads == 2
    assert (settings.completion.debounce_ms, settings.completion.max_tokens) == (10, 12)
    assert settings.completion.candidates == 1
    assert settings.verify.ruff is False and settings.verify.syntax is True
    assert settings.index.location == "/tmp/idx" and settings.index.embeddings is False
    assert settings.languages == ("python",)
    assert settings.log_level == "debug"


def test_vscode_shape_under_an_apprentice_key() -> None:
    settings, problems = parse_settings({"apprentice": {"completion": {"debounceMs": 5}}})
    assert problems == [] and settings.completion.debounce_ms == 5


def test_each_bad_value_is_reported_and_only_it_falls_back() -> None:
    settings, problems = parse_settings(
        {
            "completion": {"debounceMs": "fast", "candidates": 0, "maxTokens": 20, "bogus": 1},
            "model": {"threads": True, "path": 3},
            "verify": "yes",
            "languages": "python",
            "logLevel": "loud",
            "colour": "blue",
        }
    )
    text = "\n".join(problems)
    for fragment in (
        "completion.debounceMs",
        "completion.candidates",
        "completion.bogus",
        "model.threads",
        "model.path",
        "verify: expected an object",
        "languages",
        "logLevel",
        "colour",
    ):
        assert fragment in text, fragment
    assert len(problems) == 9
    default = ServerSettings()
    assert settings.completion.debounce_ms == default.completion.debounce_ms
    assert settings.completion.candidates == default.completion.candidates
    assert settings.completion.max_tokens == 20  # the good neighbour is kept
    assert settings.model == default.model
    assert settings.verify == default.verify
    assert settings.languages == DEFAULT_LANGUAGES
    assert settings.log_level == "info"


def test_strings_are_not_numbers_and_numbers_are_not_booleans() -> None:
    settings, problems = parse_settings(
        {"completion": {"maxTokens": "12", "multiline": 1}, "model": {"gpuLayers": 1.5}}
    )
    assert len(problems) == 3
    assert settings == ServerSettings()


def test_settings_round_trip_through_their_json_form() -> None:
    settings, _ = parse_settings({"completion": {"debounceMs": 7}, "languages": ["go"]})
    again, problems = parse_settings(settings_as_json(settings))
    assert problems == [] and again == settings
    assert settings_as_json(ServerSettings())["completion"]["debounceMs"] == 25
