import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Client, Controller, CURSOR_REST_MS, CursorParams, EditorCursor, Host, Timers } from '../src/controller';
import type { ServerCommand } from '../src/serverCommand';
import type { Inspected, Manifest } from '../src/settings';
import type { PushedStatus, StatusView } from '../src/status';

const manifest = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as Manifest & {
  contributes: { configuration: { properties: Record<string, { default?: unknown }> } };
};

class FakeHost implements Host {
  errors: string[] = [];
  infos: string[] = [];
  views: StatusView[] = [];
  documents: string[] = [];
  user: Record<string, unknown> = {};
  workspace: Record<string, unknown> = {};
  trusted = true;
  path = '';
  cursor: EditorCursor | undefined;

  inspect(key: string): Inspected | undefined {
    const property = manifest.contributes.configuration.properties[`apprentice.${key}`];
    if (!property) {
      return undefined;
    }
    return { defaultValue: property.default, globalValue: this.user[key], workspaceValue: this.workspace[key] };
  }
  isTrusted(): boolean {
    return this.trusted;
  }
  searchPath(): string {
    return this.path;
  }
  showError(message: string): void {
    this.errors.push(message);
  }
  showInfo(message: string): void {
    this.infos.push(message);
  }
  showStatusItem(view: StatusView): void {
    this.views.push(view);
  }
  async showDocument(content: string): Promise<void> {
    this.documents.push(content);
  }
  async setEnabled(enabled: boolean): Promise<void> {
    this.user.enable = enabled;
  }
  activeCursor(): EditorCursor | undefined {
    return this.cursor;
  }
  last(): StatusView {
    return this.views[this.views.length - 1];
  }
}

class FakeClient implements Client {
  started = 0;
  stopped = 0;
  sent: Record<string, unknown>[] = [];
  cursors: CursorParams[] = [];
  commands: string[] = [];
  status: unknown = { model: { state: 'loading' }, index: { state: 'waiting' } };
  /** The controller's `apprentice/status` handler: the test plays the server. */
  push: (status: PushedStatus) => void = () => assert.fail('no apprentice/status handler');
  state: (state: 'starting' | 'running' | 'stopped') => void = () => assert.fail('no state handler');
  /** What sending `apprentice/cursor` does: a server without a handler is the same as one with. */
  cursorAnswer: () => Promise<void> = async () => {};
  constructor(
    readonly command: ServerCommand,
    readonly initial: () => Record<string, unknown>,
  ) {}
  async start(): Promise<void> {
    this.started += 1;
  }
  async stop(): Promise<void> {
    this.stopped += 1;
  }
  async executeCommand(command: string): Promise<unknown> {
    this.commands.push(command);
    if (command === 'apprentice.reindex') {
      return { state: 'ready', files: 4 };
    }
    return this.status;
  }
  async sendSettings(settings: Record<string, unknown>): Promise<void> {
    this.sent.push(settings);
  }
  sendCursor(params: CursorParams): Promise<void> {
    this.cursors.push(params);
    return this.cursorAnswer();
  }
  onStatus(listener: (status: PushedStatus) => void): void {
    this.push = listener;
  }
  onState(listener: (state: 'starting' | 'running' | 'stopped') => void): void {
    this.state = listener;
  }
  showLog(): void {}
}

class ManualTimers implements Timers {
  pending: { callback: () => void; ms: number }[] = [];
  set(callback: () => void, ms: number): unknown {
    const entry = { callback, ms };
    this.pending.push(entry);
    return entry;
  }
  clear(handle: unknown): void {
    this.pending = this.pending.filter((entry) => entry !== handle);
  }
  /** Fires the pending timer set for `ms`. */
  async fireAfter(ms: number): Promise<void> {
    const entry = this.pending.find((candidate) => candidate.ms === ms);
    assert.ok(entry, `a ${ms} ms timer is pending`);
    this.clear(entry);
    entry.callback();
    await new Promise((resolve) => setImmediate(resolve));
  }
  async fire(): Promise<number> {
    const entry = this.pending.shift();
    assert.ok(entry, 'a timer is pending');
    entry.callback();
    await new Promise((resolve) => setImmediate(resolve));
    return entry.ms;
  }
}

function setup(configure: (host: FakeHost) => void = () => {}) {
  const host = new FakeHost();
  host.user.pythonPath = process.execPath; // any executable file stands in for the interpreter
  configure(host);
  const clients: FakeClient[] = [];
  const timers = new ManualTimers();
  const controller = new Controller(host, manifest, (command, initial) => {
    const client = new FakeClient(command, initial);
    clients.push(client);
    return client;
  }, timers);
  return { host, clients, timers, controller };
}

test('no server anywhere: said once, with the install command, and shown in the status bar', async () => {
  const { host, clients, controller } = setup((h) => {
    delete h.user.pythonPath;
    h.path = '/nonexistent';
  });
  await controller.start();
  await controller.restart();
  assert.equal(clients.length, 0);
  assert.equal(host.errors.length, 1);
  assert.match(host.errors[0], /pip install/);
  assert.equal(host.last().warning, true);
  // A click on the status bar item asks explicitly: the reason is said again.
  await controller.showStatus();
  assert.deepEqual(host.errors, [host.errors[0], host.errors[0]]);
  assert.equal(host.documents.length, 0);
});

test('starts the server and sends the trusted settings at initialize', async () => {
  const { clients, controller } = setup((h) => {
    h.user['completion.debounceMs'] = 50;
    h.workspace['model.path'] = '/repo/model.gguf';
  });
  await controller.start();
  assert.equal(clients.length, 1);
  assert.deepEqual(clients[0].command.args, ['-m', 'lsp.cli', 'serve']);
  const initial = clients[0].initial();
  assert.deepEqual((initial.model as Record<string, unknown>).path, '/repo/model.gguf');
  assert.equal((initial.completion as Record<string, unknown>).debounceMs, 50);
  assert.equal('pythonPath' in initial, false);
});

test('untrusted workspace: its interpreter and model path are not used', async () => {
  const { clients, controller } = setup((h) => {
    h.trusted = false;
    h.workspace.pythonPath = '/repo/.venv/bin/python';
    h.workspace['model.path'] = '/repo/model.gguf';
    h.workspace['completion.candidates'] = 3;
  });
  await controller.start();
  assert.equal(clients[0].command.command, process.execPath);
  const initial = clients[0].initial();
  assert.equal((initial.model as Record<string, unknown>).path, undefined);
  assert.equal((initial.completion as Record<string, unknown>).candidates, 3);
});

test('a settings change is pushed; a new interpreter restarts the server', async () => {
  const { host, clients, controller } = setup();
  await controller.start();
  host.user['verify.ruff'] = false;
  await controller.configurationChanged((key) => key === 'verify.ruff');
  assert.equal(clients.length, 1);
  assert.deepEqual((clients[0].sent[0].verify as Record<string, unknown>).ruff, false);
  await controller.configurationChanged((key) => key === 'pythonPath');
  assert.equal(clients.length, 2);
  assert.equal(clients[0].stopped, 1);
  host.user.languages = ['python', 'go'];
  await controller.configurationChanged((key) => key === 'languages');
  assert.equal(clients.length, 3);
  assert.deepEqual(controller.languages(), ['python', 'go']);
});

test('toggle flips the user setting and the status bar', async () => {
  const { host, controller } = setup();
  await controller.start();
  assert.equal(controller.enabled(), true);
  await controller.toggle();
  assert.equal(host.user.enable, false);
  assert.equal(controller.enabled(), false);
  assert.match(host.last().text, /circle-slash/);
  await controller.toggle();
  assert.equal(controller.enabled(), true);
});

const loading: PushedStatus = {
  state: 'loading',
  message: 'loading the model · indexing 40%',
  percentage: 40,
  model: null,
  index: { state: 'indexing', files: null },
  warming: null,
  lastLatencyMs: null,
};
const ready: PushedStatus = { ...loading, state: 'ready', message: 'gemma', percentage: null, model: 'gemma', index: { state: 'ready', files: 2 } };

test('the status bar follows the pushed apprentice/status; nothing polls', async () => {
  const { host, clients, timers, controller } = setup();
  await controller.start();
  assert.match(host.last().text, /loading~spin/);
  clients[0].push(loading);
  assert.equal(host.last().text, '$(loading~spin) loading model · indexing 40%');
  clients[0].push(ready);
  assert.equal(host.last().text, '$(sparkle) gemma');
  controller.recordLatency(321);
  assert.equal(host.last().text, '$(sparkle) gemma · 321 ms');
  clients[0].push({ ...ready, state: 'error', message: 'model error: gone', model: null });
  assert.equal(host.last().warning, true);
  // No timer and no apprentice.status request: the server says when something changes.
  assert.equal(timers.pending.length, 0);
  assert.deepEqual(clients[0].commands, []);
});

test("the client's own state: a crash and a restart by the client, then it gives up", async () => {
  const { host, clients, controller } = setup();
  await controller.start();
  clients[0].push(ready);
  clients[0].state('starting');
  assert.match(host.last().text, /loading~spin\) Apprentice/);
  clients[0].state('running');
  clients[0].push(ready);
  assert.equal(host.last().text, '$(sparkle) gemma');
  clients[0].state('stopped');
  assert.match(host.last().text, /debug-stop/);
});

test("a restarted server's status replaces the old one; the old client is not heard", async () => {
  const { host, clients, controller } = setup();
  await controller.start();
  clients[0].push(ready);
  await controller.restart();
  assert.match(host.last().text, /loading~spin\) Apprentice/);
  clients[0].push(ready);
  clients[0].state('stopped');
  assert.match(host.last().text, /loading~spin\) Apprentice/);
  clients[1].push(loading);
  assert.match(host.last().text, /loading model/);
});

const cart: EditorCursor = { uri: 'file:///repo/shop/cart.py', scheme: 'file', languageId: 'python', line: 10, character: 4 };

test('the cursor: the active editor at start and on a switch at once; another line once it rests', async () => {
  const { clients, timers, controller } = setup((h) => {
    h.cursor = cart;
  });
  await controller.start();
  const sent = clients[0].cursors;
  assert.deepEqual(sent, [{ textDocument: { uri: cart.uri }, position: { line: 10, character: 4 } }]);
  // Typing along the same line: nothing new to tell.
  controller.cursorMoved({ ...cart, character: 5 }, false);
  controller.cursorMoved({ ...cart, character: 6 }, false);
  assert.equal(timers.pending.length, 0);
  // Another line: told once the cursor rests there, with where it rests.
  controller.cursorMoved({ ...cart, line: 11, character: 0 }, false);
  controller.cursorMoved({ ...cart, line: 12, character: 0 }, false);
  controller.cursorMoved({ ...cart, line: 12, character: 3 }, false);
  assert.equal(timers.pending.length, 1);
  assert.equal(sent.length, 1);
  await timers.fireAfter(CURSOR_REST_MS);
  assert.deepEqual(sent[1], { textDocument: { uri: cart.uri }, position: { line: 12, character: 3 } });
  // Away and back to the line the server knows before resting: nothing sent.
  controller.cursorMoved({ ...cart, line: 30 }, false);
  controller.cursorMoved({ ...cart, line: 12, character: 1 }, false);
  assert.equal(timers.pending.length, 0);
  // Another editor: at once.
  const other = { ...cart, uri: 'file:///repo/shop/pricing.py', line: 0, character: 0 };
  controller.cursorMoved(other, true);
  assert.deepEqual(sent[2], { textDocument: { uri: other.uri }, position: { line: 0, character: 0 } });
  assert.equal(sent.length, 3);
});

test('the cursor is told only for documents the server serves, while it runs and suggestions are on', async () => {
  const { host, clients, timers, controller } = setup((h) => {
    h.user.languages = ['python', 'tsx'];
  });
  controller.cursorMoved(cart, true); // no server yet
  await controller.start();
  const sent = clients[0].cursors;
  controller.cursorMoved({ ...cart, languageId: 'markdown', uri: 'file:///repo/README.md' }, true);
  controller.cursorMoved({ ...cart, scheme: 'untitled', uri: 'untitled:Untitled-1' }, true);
  controller.cursorMoved({ ...cart, scheme: 'output', languageId: 'log' }, true);
  controller.cursorMoved(undefined, true);
  assert.equal(sent.length, 0);
  controller.cursorMoved({ ...cart, languageId: 'typescriptreact', uri: 'file:///repo/app.tsx' }, true);
  assert.equal(sent.length, 1);
  host.user.enable = false;
  controller.cursorMoved(cart, true);
  assert.equal(sent.length, 1);
  host.user.enable = true;
  controller.cursorMoved({ ...cart, line: 3 }, false);
  await controller.stop();
  assert.equal(timers.pending.length, 0, 'a pending cursor is dropped with the client');
  assert.equal(sent.length, 1);
});

test('a server that does not handle apprentice/cursor: no error shown', async () => {
  const { host, clients, controller } = setup((h) => {
    h.cursor = cart;
  });
  const failing = async () => {
    throw new Error('Unhandled method apprentice/cursor');
  };
  await controller.start();
  clients[0].cursorAnswer = failing;
  controller.cursorMoved({ ...cart, uri: 'file:///repo/b.py' }, true);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(host.errors, []);
  assert.equal(clients[0].cursors.length, 2);
});

test('status opens as a JSON document; reindex reports the files', async () => {
  const { host, controller } = setup();
  await controller.start();
  await controller.showStatus();
  assert.deepEqual(JSON.parse(host.documents[0]), { model: { state: 'loading' }, index: { state: 'waiting' } });
  await controller.reindex();
  assert.match(host.infos[host.infos.length - 1], /4 files/);
  await controller.dispose();
});
