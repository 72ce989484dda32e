/**
 * The extension's behaviour, free of the editor API: starting the server, pushing settings,
 * the on/off switch, the status bar (from the server's `apprentice/status` notifications),
 * telling the server where the cursor rests, and the commands. The editor is reached through
 * {@link Host} (src/host.ts) and the language client through {@link Client}, so this module
 * runs under Node's test runner with fakes.
 */
import { isMissing, resolveServerCommand, ServerCommand } from './serverCommand';
import { Inspected, Manifest, serverKeys, serverSettings, stringValue, trustedReader } from './settings';
import { describeStatus, documentLanguages, PushedStatus, StatusInput, StatusView } from './status';

export const STATUS_COMMAND = 'apprentice.status';
export const REINDEX_COMMAND = 'apprentice.reindex';
/** Client -> server: where the cursor rests, so the server warms the prompt for that place. */
export const CURSOR_NOTIFICATION = 'apprentice/cursor';
/** How long the cursor must rest on another line before the server is told. */
export const CURSOR_REST_MS = 300;

/** The active editor's cursor. */
export interface EditorCursor {
  uri: string;
  scheme: string;
  languageId: string;
  /** 0-based line and UTF-16 character, as LSP positions. */
  line: number;
  character: number;
}

/** `apprentice/cursor` params. */
export interface CursorParams {
  textDocument: { uri: string };
  position: { line: number; character: number };
}

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
  /** The active editor's cursor, if there is an active editor. */
  activeCursor(): EditorCursor | undefined;
}

/** What the controller needs from a language client. */
export interface Client {
  start(): Promise<void>;
  stop(): Promise<void>;
  executeCommand(command: string): Promise<unknown>;
  sendSettings(settings: Record<string, unknown>): Promise<void>;
  /** `apprentice/cursor`; a server that does not handle it ignores it. */
  sendCursor(params: CursorParams): Promise<void>;
  /** Registers the `apprentice/status` handler (before start, so the first is not missed). */
  onStatus(listener: (status: PushedStatus) => void): void;
  /** The client's own state changes: a crashed server is restarted by the client, or stops. */
  onState(listener: (state: 'starting' | 'running' | 'stopped') => void): void;
  showLog(): void;
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

export class Controller {
  private client: Client | undefined;
  private clientState: StatusInput['client'] = 'starting';
  private status: PushedStatus | undefined;
  private lastLatencyMs: number | undefined;
  private missingReported = false;
  /** Why there is no server, while there is none. */
  private missing: string | undefined;
  /** Where the server was last told the cursor is. */
  private cursorSent: { uri: string; line: number } | undefined;
  private cursorTimer: unknown;
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
    this.status = undefined;
    client.onStatus((status) => {
      if (this.client === client) {
        this.status = status;
        this.render();
      }
    });
    client.onState((state) => this.clientStateChanged(client, state));
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
    this.cursorSent = undefined;
    this.cursorMoved(this.host.activeCursor(), true);
  }

  /** The client restarted a crashed server, or gave up on it. */
  private clientStateChanged(client: Client, state: 'starting' | 'running' | 'stopped'): void {
    if (this.client !== client || this.clientState === state) {
      return;
    }
    this.clientState = state;
    if (state !== 'running') {
      this.status = undefined; // a restarted server pushes its state anew
    }
    this.render();
  }

  async stop(): Promise<void> {
    this.cancelCursor();
    const client = this.client;
    this.client = undefined;
    if (client) {
      await client.stop();
    }
  }

  async restart(): Promise<void> {
    await this.stop();
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
    // The server pushes the indexing progress to the status bar itself.
    try {
      const result = (await this.client.executeCommand(REINDEX_COMMAND)) as { state?: string; files?: number; reason?: string } | null;
      if (result?.state === 'off') {
        this.host.showInfo(`Apprentice: not indexed: ${result.reason ?? 'indexing is off'}`);
      } else {
        this.host.showInfo(`Apprentice: workspace indexed (${result?.files ?? 0} files)`);
      }
    } catch (error) {
      this.host.showError(`Apprentice: re-indexing failed: ${String(error)}`);
    }
  }

  showLog(): void {
    if (this.client) {
      this.client.showLog();
    } else {
      this.host.showError('Apprentice: the language server is not running, so there is no log yet.');
    }
  }

  /**
   * The active editor changed (`editorChanged`) or its cursor moved: the server is told where
   * the cursor is at once for a newly active editor, else once it has rested on another line
   * for {@link CURSOR_REST_MS}. Only documents the server serves, only while it runs and
   * suggestions are on.
   */
  cursorMoved(cursor: EditorCursor | undefined, editorChanged: boolean): void {
    if (!editorChanged && cursor && this.cursorSent?.uri === cursor.uri && this.cursorSent.line === cursor.line) {
      this.cancelCursor(); // back on the line the server knows: a pending move is moot
      return;
    }
    this.cancelCursor();
    if (!cursor || !this.serves(cursor)) {
      return;
    }
    if (editorChanged) {
      this.sendCursor(cursor);
      return;
    }
    this.cursorTimer = this.timers.set(() => {
      this.cursorTimer = undefined;
      this.sendCursor(cursor);
    }, CURSOR_REST_MS);
  }

  private serves(cursor: EditorCursor): boolean {
    return (
      this.client !== undefined &&
      this.clientState === 'running' &&
      this.enabled() &&
      cursor.scheme === 'file' &&
      documentLanguages(this.languages()).includes(cursor.languageId)
    );
  }

  private sendCursor(cursor: EditorCursor): void {
    const client = this.client;
    if (!client || !this.serves(cursor)) {
      return;
    }
    this.cursorSent = { uri: cursor.uri, line: cursor.line };
    const params: CursorParams = { textDocument: { uri: cursor.uri }, position: { line: cursor.line, character: cursor.character } };
    // A hint: a server that cannot take it (stopping, an older one) is not worth a message.
    client.sendCursor(params).catch(() => undefined);
  }

  private cancelCursor(): void {
    if (this.cursorTimer !== undefined) {
      this.timers.clear(this.cursorTimer);
      this.cursorTimer = undefined;
    }
  }

  view(): StatusView {
    return describeStatus({ enabled: this.enabled(), client: this.clientState, status: this.status, lastLatencyMs: this.lastLatencyMs });
  }

  private render(): void {
    if (!this.disposed) {
      this.host.showStatusItem(this.view());
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.stop();
  }
}
