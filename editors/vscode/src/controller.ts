/**
 * The extension's behaviour, free of the editor API: starting the server, pushing settings,
 * the on/off switch, the status bar, and the commands. The editor is reached through
 * {@link Host} (src/host.ts) and the language client through {@link Client}, so this module
 * runs under Node's test runner with fakes.
 */
import { isMissing, resolveServerCommand, ServerCommand } from './serverCommand';
import { Inspected, Manifest, serverKeys, serverSettings, stringValue, trustedReader } from './settings';
import { describeStatus, isBusy, ServerStatus, StatusInput, StatusView } from './status';

export const STATUS_COMMAND = 'apprentice.status';
export const REINDEX_COMMAND = 'apprentice.reindex';

/** What the controller needs from the editor. */
export interface Host {
  /** `inspect` of `apprentice.<key>`. */
  inspect(key: string): Inspected | undefined;
  isTrusted(): boolean;
  searchPath(): string;
  showError(message: string): void;
  showInfo(message: string): void;
  showStatusItem(view: StatusView): void;
  showDocument(content: string, language: string): Promise<void>;
  /** Writes `apprentice.enable` to the user's settings. */
  setEnabled(enabled: boolean): Promise<void>;
}

/** What the controller needs from a language client. */
export interface Client {
  start(): Promise<void>;
  stop(): Promise<void>;
  executeCommand(command: string): Promise<unknown>;
  sendSettings(settings: Record<string, unknown>): Promise<void>;
  showLog(): void;
  /** False once the connection has died for good. */
  isRunning(): boolean;
}

export type ClientFactory = (command: ServerCommand, initialSettings: () => Record<string, unknown>) => Client;

/** Timer functions, replaceable in tests. */
export interface Timers {
  set(callback: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (callback, ms) => setTimeout(callback, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * Settings whose change needs a new client rather than a settings push: another program, or
 * other languages (the client's document selector is fixed when it is created).
 */
const RESTART_KEYS = ['executable', 'pythonPath', 'languages'];

export const POLL_BUSY_MS = 1000;
export const POLL_IDLE_MS = 10000;

export class Controller {
  private client: Client | undefined;
  private clientState: StatusInput['client'] = 'starting';
  private status: ServerStatus | undefined;
  private lastLatencyMs: number | undefined;
  private missingReported = false;
  /** Why there is no server, while there is none. */
  private missing: string | undefined;
  private poll: unknown;
  private disposed = false;

  constructor(
    private readonly host: Host,
    private readonly manifest: Manifest,
    private readonly createClient: ClientFactory,
    private readonly timers: Timers = realTimers,
  ) {}

  private read(key: string): unknown {
    return trustedReader((name) => this.host.inspect(name), this.manifest, this.host.isTrusted())(key);
  }

  /** The settings sent to the server (trust applied, client-only keys left out). */
  serverSettings(): Record<string, unknown> {
    return serverSettings(serverKeys(this.manifest), (key) => this.read(key));
  }

  /** The server's languages setting, for the document selector. */
  languages(): string[] {
    const value = this.read('languages');
    return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
  }

  enabled(): boolean {
    return this.read('enable') !== false;
  }

  /** Starts the server; when it cannot be found, says so once and shows it in the status bar. */
  async start(): Promise<void> {
    const command = resolveServerCommand({
      executable: stringValue(this.read('executable')),
      pythonPath: stringValue(this.read('pythonPath')),
      searchPath: this.host.searchPath(),
    });
    if (isMissing(command)) {
      this.clientState = 'missing';
      this.missing = `Apprentice: ${command.error}`;
      this.render();
      if (!this.missingReported) {
        this.missingReported = true;
        this.host.showError(this.missing);
      }
      return;
    }
    this.missing = undefined;
    const client = this.createClient(command, () => this.serverSettings());
    this.client = client;
    this.clientState = 'starting';
    this.render();
    try {
      await client.start();
    } catch (error) {
      this.clientState = 'stopped';
      this.render();
      this.host.showError(`Apprentice: the language server did not start (${String(error)}). See Apprentice: Show Log.`);
      return;
    }
    this.clientState = 'running';
    this.render();
    this.schedulePoll(0);
  }

  async stop(): Promise<void> {
    this.cancelPoll();
    const client = this.client;
    this.client = undefined;
    if (client) {
      await client.stop();
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    this.status = undefined;
    await this.start();
  }

  /** A settings change: a new server for a new program, else the new settings pushed. */
  async configurationChanged(affects: (key: string) => boolean): Promise<void> {
    if (RESTART_KEYS.some(affects)) {
      await this.restart();
      return;
    }
    if (affects('enable')) {
      this.render();
    }
    if (this.client && serverKeys(this.manifest).some(affects)) {
      await this.client.sendSettings(this.serverSettings());
    }
  }

  /** Trust granted: the workspace's own programs, models and servers now apply. */
  async trustGranted(): Promise<void> {
    await this.restart();
  }

  async toggle(): Promise<void> {
    const enabled = !this.enabled();
    await this.host.setEnabled(enabled);
    this.host.showInfo(`Apprentice: suggestions ${enabled ? 'on' : 'off'}`);
    this.render();
  }

  /** The time from an inline completion request to a non-empty answer. */
  recordLatency(ms: number): void {
    this.lastLatencyMs = ms;
    this.render();
  }

  /** `apprentice.status`, shown as a JSON document; without a server, why there is none. */
  async showStatus(): Promise<void> {
    if (!this.client) {
      await this.start();
      if (!this.client) {
        // Asked for explicitly (the status bar item's click): say why again.
        if (this.missing && this.missingReported) {
          this.host.showError(this.missing);
        }
        return;
      }
    }
    try {
      const status = await this.client.executeCommand(STATUS_COMMAND);
      this.status = status as ServerStatus;
      this.render();
      await this.host.showDocument(JSON.stringify(status, null, 2), 'json');
    } catch (error) {
      this.host.showError(`Apprentice: ${STATUS_COMMAND} failed: ${String(error)}`);
    }
  }

  async reindex(): Promise<void> {
    if (!this.client) {
      this.host.showError('Apprentice: the language server is not running.');
      return;
    }
    try {
      this.status = { ...this.status, index: { state: 'indexing' } };
      this.render();
      const result = (await this.client.executeCommand(REINDEX_COMMAND)) as { state?: string; files?: number; reason?: string } | null;
      if (result?.state === 'off') {
        this.host.showInfo(`Apprentice: not indexed: ${result.reason ?? 'indexing is off'}`);
      } else {
        this.host.showInfo(`Apprentice: workspace indexed (${result?.files ?? 0} files)`);
      }
    } catch (error) {
      this.host.showError(`Apprentice: re-indexing failed: ${String(error)}`);
    }
    await this.refreshStatus();
  }

  showLog(): void {
    if (this.client) {
      this.client.showLog();
    } else {
      this.host.showError('Apprentice: the language server is not running, so there is no log yet.');
    }
  }

  /** Asks the server for its status and redraws the status bar item. */
  async refreshStatus(): Promise<void> {
    const client = this.client;
    if (!client) {
      return;
    }
    if (!client.isRunning()) {
      this.clientState = 'stopped';
      this.render();
      return;
    }
    try {
      this.status = (await client.executeCommand(STATUS_COMMAND)) as ServerStatus;
    } catch {
      // A status that does not come is not worth a message; the next poll tries again.
    }
    this.render();
  }

  view(): StatusView {
    return describeStatus({ enabled: this.enabled(), client: this.clientState, status: this.status, lastLatencyMs: this.lastLatencyMs });
  }

  private render(): void {
    if (!this.disposed) {
      this.host.showStatusItem(this.view());
    }
  }

  private schedulePoll(ms: number): void {
    this.cancelPoll();
    if (this.disposed) {
      return;
    }
    this.poll = this.timers.set(() => {
      this.poll = undefined;
      void this.refreshStatus().then(() => {
        if (this.client && this.clientState === 'running') {
          this.schedulePoll(isBusy(this.status) ? POLL_BUSY_MS : POLL_IDLE_MS);
        }
      });
    }, ms);
  }

  private cancelPoll(): void {
    if (this.poll !== undefined) {
      this.timers.clear(this.poll);
      this.poll = undefined;
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.stop();
  }
}
