import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Client, Controller, Host, POLL_BUSY_MS, POLL_IDLE_MS, Timers } from '../src/controller';
import type { ServerCommand } from '../src/serverCommand';
import type { Inspected, Manifest } from '../src/settings';
import type { StatusView } from '../src/status';

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
  last(): StatusView {
    return this.views[this.views.length - 1];
  }
}

class FakeClient implements Client {
  started = 0;
  stopped = 0;
  sent: Record<string, unknown>[] = [];
  status: unknown = { model: { state: 'loading' }, index: { state: 'waiting' } };
  running = true;
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
    if (command === 'apprentice.reindex') {
      return { state: 'ready', files: 4 };
    }
    return this.status;
  }
  async sendSettings(settings: Record<string, unknown>): Promise<void> {
    this.sent.push(settings);
  }
  showLog(): void {}
  isRunning(): boolean {
    return this.running;
  }
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

test('the status is polled often while busy, rarely once ready', async () => {
  const { host, clients, timers, controller } = setup();
  await controller.start();
  assert.equal(await timers.fire(), 0);
  assert.match(host.last().text, /loading model/);
  assert.equal(timers.pending[0].ms, POLL_BUSY_MS);
  clients[0].status = { model: { state: 'ready', name: 'gemma' }, index: { state: 'ready', files: 2 } };
  await timers.fire();
  assert.equal(host.last().text, '$(sparkle) gemma');
  assert.equal(timers.pending[0].ms, POLL_IDLE_MS);
  controller.recordLatency(321);
  assert.equal(host.last().text, '$(sparkle) gemma · 321 ms');
  clients[0].running = false;
  await timers.fire();
  assert.match(host.last().text, /debug-stop/);
  assert.equal(timers.pending.length, 0);
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
