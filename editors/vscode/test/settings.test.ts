import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CLIENT_KEYS, effectiveValue, Manifest, restrictedKeys, serverKeys, serverSettings, trustedReader } from '../src/settings';

const manifest = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as Manifest & {
  contributes: { configuration: { properties: Record<string, { default?: unknown }> } };
};

test('server keys are every apprentice.* setting except the client ones', () => {
  const keys = serverKeys(manifest);
  assert.ok(keys.includes('model.path'));
  assert.ok(keys.includes('logLevel'));
  for (const key of CLIENT_KEYS) {
    assert.ok(!keys.includes(key), key);
    assert.ok(`apprentice.${key}` in manifest.contributes.configuration.properties, key);
  }
});

test('restricted keys name programs, models, checkpoints and servers', () => {
  const restricted = restrictedKeys(manifest);
  for (const key of ['executable', 'pythonPath', 'model.path', 'model.lora', 'model.remoteUrl']) {
    assert.ok(restricted.has(key), key);
  }
  assert.ok(!restricted.has('completion.debounceMs'));
});

test('untrusted workspace: a restricted key ignores workspace values', () => {
  const inspected = { defaultValue: null, globalValue: '/home/me/team.gguf', workspaceValue: '/repo/evil.gguf' };
  assert.equal(effectiveValue(inspected, true, false), '/home/me/team.gguf');
  assert.equal(effectiveValue({ defaultValue: null, workspaceValue: '/repo/evil.gguf' }, true, false), null);
  assert.equal(effectiveValue({ defaultValue: null, workspaceFolderValue: '/repo/evil' }, true, false), null);
});

test('trusted workspace, or an unrestricted key: the most specific scope wins', () => {
  const inspected = { defaultValue: 25, globalValue: 50, workspaceValue: 75, workspaceFolderValue: 100 };
  assert.equal(effectiveValue(inspected, false, false), 100);
  assert.equal(effectiveValue(inspected, true, true), 100);
  assert.equal(effectiveValue({ defaultValue: 25, globalValue: 50, workspaceValue: 75 }, false, true), 75);
  assert.equal(effectiveValue({ defaultValue: 25 }, false, true), 25);
  assert.equal(effectiveValue(undefined, false, true), undefined);
});

test('settings are nested as the server reads them, unset values left out', () => {
  const values: Record<string, unknown> = {
    'model.path': '/m.gguf',
    'model.remoteUrl': '',
    'model.threads': null,
    'completion.debounceMs': 40,
    'verify.ruff': false,
    languages: ['python'],
    logLevel: 'debug',
  };
  const result = serverSettings(Object.keys(values), (key) => values[key]);
  assert.deepEqual(result, {
    model: { path: '/m.gguf' },
    completion: { debounceMs: 40 },
    verify: { ruff: false },
    languages: ['python'],
    logLevel: 'debug',
  });
});

test('the defaults alone give the manifest defaults, client keys left out', () => {
  const properties = manifest.contributes.configuration.properties;
  const read = trustedReader((key) => ({ defaultValue: properties[`apprentice.${key}`]?.default }), manifest, true);
  const result = serverSettings(serverKeys(manifest), read);
  assert.equal('enable' in result, false);
  assert.equal('executable' in result, false);
  assert.deepEqual((result.completion as Record<string, unknown>).debounceMs, properties['apprentice.completion.debounceMs'].default);
  assert.equal((result.model as Record<string, unknown>).path, undefined);
});

test('a workspace model path is not sent from an untrusted workspace', () => {
  const scopes: Record<string, { defaultValue?: unknown; workspaceValue?: unknown }> = {
    'model.path': { defaultValue: null, workspaceValue: '/repo/model.gguf' },
    'completion.debounceMs': { defaultValue: 25, workspaceValue: 60 },
  };
  const keys = Object.keys(scopes);
  const untrusted = serverSettings(keys, trustedReader((key) => scopes[key], manifest, false));
  assert.deepEqual(untrusted, { completion: { debounceMs: 60 } });
  const trusted = serverSettings(keys, trustedReader((key) => scopes[key], manifest, true));
  assert.deepEqual(trusted, { model: { path: '/repo/model.gguf' }, completion: { debounceMs: 60 } });
});
