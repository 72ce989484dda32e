import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeStatus, documentLanguages, PushedStatus } from '../src/status';

/** `apprentice/status` as lsp/server/status_push.py sends it once everything is up. */
const ready: PushedStatus = {
  state: 'ready',
  message: 'gemma-3-270m',
  percentage: null,
  model: 'gemma-3-270m',
  index: { state: 'ready', files: 12 },
  warming: null,
  lastLatencyMs: 240.4,
};

test('ready: model, then the last latency', () => {
  const view = describeStatus({ enabled: true, client: 'running', status: ready, lastLatencyMs: 187.6 });
  assert.equal(view.text, '$(sparkle) gemma-3-270m · 188 ms');
  assert.match(view.tooltip, /index: ready, 12 files/);
  assert.equal(view.warning, false);
});

test("without an editor-side latency, the server's last one", () => {
  assert.equal(describeStatus({ enabled: true, client: 'running', status: ready }).text, '$(sparkle) gemma-3-270m · 240 ms');
  const fresh = { ...ready, lastLatencyMs: null };
  assert.equal(describeStatus({ enabled: true, client: 'running', status: fresh }).text, '$(sparkle) gemma-3-270m');
});

test('loading and indexing show the pushed percentage', () => {
  const loading: PushedStatus = { state: 'loading', message: 'loading the model · indexing 40%', percentage: 40, model: null, index: { state: 'indexing', files: null } };
  const view = describeStatus({ enabled: true, client: 'running', status: loading });
  assert.equal(view.text, '$(loading~spin) loading model · indexing 40%');
  assert.match(view.tooltip, /loading the model · indexing 40%/);
  const embedding: PushedStatus = { ...ready, state: 'indexing', percentage: 7, index: { state: 'embedding', files: 12 } };
  assert.equal(describeStatus({ enabled: true, client: 'running', status: embedding }).text, '$(loading~spin) gemma-3-270m · embedding 7% · 240 ms');
  const waiting: PushedStatus = { ...ready, state: 'indexing', index: { state: 'waiting', files: null } };
  assert.equal(describeStatus({ enabled: true, client: 'running', status: waiting }).text, '$(loading~spin) gemma-3-270m · indexing · 240 ms');
});

test('warming is told in the tooltip; the text does not flicker', () => {
  const warming: PushedStatus = { ...ready, state: 'warming', message: 'gemma-3-270m · warming cart.py', warming: 'shop/cart.py' };
  const view = describeStatus({ enabled: true, client: 'running', status: warming });
  assert.equal(view.text, describeStatus({ enabled: true, client: 'running', status: ready }).text);
  assert.match(view.tooltip, /warming the prompt for shop\/cart\.py/);
});

test('errors, no server, off and not started yet are told apart', () => {
  const error = describeStatus({ enabled: true, client: 'running', status: { state: 'error', message: 'model error: no such file', model: null } });
  assert.equal(error.warning, true);
  assert.equal(error.text, '$(error) Apprentice');
  assert.match(error.tooltip, /no such file/);
  const indexError = describeStatus({ enabled: true, client: 'running', status: { ...ready, index: { state: 'error' } } });
  assert.equal(indexError.text, '$(sparkle) gemma-3-270m · index error · 240 ms');
  assert.equal(describeStatus({ enabled: true, client: 'missing' }).warning, true);
  assert.match(describeStatus({ enabled: false, client: 'running', status: ready }).text, /circle-slash/);
  assert.equal(describeStatus({ enabled: true, client: 'running' }).text, '$(loading~spin) Apprentice');
  assert.equal(describeStatus({ enabled: true, client: 'running', status: { state: 'off' } }).text, '$(loading~spin) Apprentice');
});

test("the server's language ids map to the editor's", () => {
  assert.deepEqual(documentLanguages(['python', 'javascript', 'tsx', 'go']), ['python', 'javascript', 'javascriptreact', 'typescriptreact', 'go']);
});
