import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { expandHome, isExecutableFile, isMissing, resolveServerCommand, which } from '../src/serverCommand';

function folderWith(files: Record<string, number>): string {
  const folder = mkdtempSync(path.join(tmpdir(), 'apprentice-cmd-'));
  for (const [name, mode] of Object.entries(files)) {
    const file = path.join(folder, name);
    writeFileSync(file, '#!/bin/sh\n');
    chmodSync(file, mode);
  }
  return folder;
}

test('apprentice on PATH is found and run as `apprentice serve`', () => {
  const empty = folderWith({});
  const bin = folderWith({ apprentice: 0o755 });
  const result = resolveServerCommand({ searchPath: [empty, bin].join(path.delimiter) });
  assert.deepEqual(result, { command: path.join(bin, 'apprentice'), args: ['serve'], source: 'PATH' });
});

test('a file that may not be run is passed over', () => {
  const plain = folderWith({ apprentice: 0o644 });
  assert.equal(isExecutableFile(path.join(plain, 'apprentice')), false);
  assert.equal(which('apprentice', plain), undefined);
});

test('nothing found: one error that names the install command', () => {
  const result = resolveServerCommand({ searchPath: folderWith({}) });
  assert.ok(isMissing(result));
  assert.match(result.error, /pip install/);
  assert.match(result.error, /apprentice\.pythonPath/);
});

test('a configured executable wins over PATH', () => {
  const bin = folderWith({ apprentice: 0o755 });
  const other = folderWith({ apprentice: 0o755 });
  const result = resolveServerCommand({ executable: path.join(other, 'apprentice'), searchPath: bin });
  assert.deepEqual(result, { command: path.join(other, 'apprentice'), args: ['serve'], source: 'apprentice.executable' });
});

test('a Python interpreter runs the server module', () => {
  const venv = folderWith({ python: 0o755 });
  const result = resolveServerCommand({ pythonPath: path.join(venv, 'python'), searchPath: '' });
  assert.deepEqual(result, { command: path.join(venv, 'python'), args: ['-m', 'lsp.cli', 'serve'], source: 'apprentice.pythonPath' });
});

test('a configured program that is not there is an error, not a fall-back', () => {
  const bin = folderWith({ apprentice: 0o755 });
  const result = resolveServerCommand({ pythonPath: '/nonexistent/python', searchPath: bin });
  assert.ok(isMissing(result));
  assert.match(result.error, /apprentice\.pythonPath is set to \/nonexistent\/python/);
});

test('a configured path may start with ~', () => {
  assert.equal(expandHome('~/.venvs/a/bin/apprentice', '/home/me'), '/home/me/.venvs/a/bin/apprentice');
  assert.equal(expandHome('/opt/bin/apprentice', '/home/me'), '/opt/bin/apprentice');
  const home = folderWith({ apprentice: 0o755 });
  const result = resolveServerCommand({ executable: '~/apprentice', searchPath: '', home });
  assert.deepEqual(result, { command: path.join(home, 'apprentice'), args: ['serve'], source: 'apprentice.executable' });
});

test('a bare program name is looked up on PATH', () => {
  const bin = folderWith({ 'apprentice-dev': 0o755 });
  const result = resolveServerCommand({ executable: 'apprentice-dev', searchPath: bin });
  assert.deepEqual(result, { command: path.join(bin, 'apprentice-dev'), args: ['serve'], source: 'apprentice.executable' });
});
