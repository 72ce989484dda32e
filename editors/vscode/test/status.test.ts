import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeStatus, documentLanguages, isBusy, modelLabel } from '../src/status';

const ready = {
  model: { state: 'ready', name: 'gemma-3-270m' },
  backend: 'llama.cpp (embedded default model, 1 thread(s))',
  index: { state: 'ready', files: 12 },
  latency: { last_ms: 240.4 },
};

test('ready: model, then the last latency', () => {
  const view = describeStatus({ enabled: true, client: 'running', status: ready, lastLatencyMs: 187.6 });
  assert.equal(view.text, '$(sparkle) gemma-3-270m · 188 ms');
  assert.match(view.tooltip, /index: ready, 12 files/);
  assert.equal(view.warning, false);
});

test("without an editor-side latency, the server's last one", () => {
  assert.equal(describeStatus({ enabled: true, client: 'running', status: ready }).text, '$(sparkle) gemma-3-270m · 240 ms');
});

test('loading and indexing show progress', () => {
  const view = describeStatus({ enabled: true, client: 'running', status: { model: { state: 'loading' }, index: { state: 'indexing', files: 3 } } });
  assert.equal(view.text, '$(loading~spin) loading model · indexing (3 files)');
  assert.ok(isBusy({ model: { state: 'loading' } }));
  assert.ok(isBusy({ model: { state: 'ready' }, index: { state: 'embedding' } }));
  assert.ok(!isBusy(ready));
});

test('a checkpoint shows its version; a remote backend its address', () => {
  const checkpoint = { name: 'team-coder', version: '7', signer: 'ci', verified: true };
  assert.equal(modelLabel({ model: { state: 'ready', name: 'qwen2.5-coder', checkpoint } }), 'team-coder 7');
  assert.equal(modelLabel({ model: { state: 'ready', name: 'qwen2.5-coder', checkpoint: null } }), 'qwen2.5-coder');
  assert.equal(modelLabel({ model: { state: 'ready', name: '' }, backend: 'remote http://127.0.0.1:8080' }), 'http://127.0.0.1:8080');
});

test('errors, no server, and off are told apart', () => {
  const error = describeStatus({ enabled: true, client: 'running', status: { model: { state: 'error', error: 'no such file' } } });
  assert.equal(error.warning, true);
  assert.match(error.tooltip, /no such file/);
  assert.equal(describeStatus({ enabled: true, client: 'missing' }).warning, true);
  assert.match(describeStatus({ enabled: false, client: 'running', status: ready }).text, /circle-slash/);
});

test("the server's language ids map to the editor's", () => {
  assert.deepEqual(documentLanguages(['python', 'javascript', 'tsx', 'go']), ['python', 'javascript', 'javascriptreact', 'typescriptreact', 'go']);
});
