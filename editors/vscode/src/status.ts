/** The status bar item's text and tooltip, from the server's `apprentice/status` notification. */

/** The server's notification of its state, sent whenever it changes (lsp/server/status_push.py). */
export const STATUS_NOTIFICATION = 'apprentice/status';

/** `apprentice/status` params; every key is always sent. */
export interface PushedStatus {
  /**
   * The most pressing state: 'error', 'loading', 'warming', 'indexing', 'ready'; 'off' before
   * the model engine exists. A string: a newer server may add states.
   */
  state: string;
  /** One line for people (the model's error, when there is one). */
  message?: string;
  /** The index build's progress (0-100) while it runs. */
  percentage?: number | null;
  /** The serving model (a checkpoint's name and version, the model's name, the remote server); null until one has loaded. */
  model?: string | null;
  index?: { state?: string; files?: number | null };
  /** The file whose prompt the model is warming ahead of a request. */
  warming?: string | null;
  /** Server-side time of the last suggestion shown. */
  lastLatencyMs?: number | null;
}

/** What the extension knows when it draws the item. */
export interface StatusInput {
  enabled: boolean;
  /** The client's state: not started (no server found), starting, running, or stopped. */
  client: 'missing' | 'starting' | 'running' | 'stopped';
  /** The server's last `apprentice/status`; undefined until the first arrives. */
  status?: PushedStatus;
  /** Keystroke-to-suggestion time of the last suggestion shown, measured in the editor. */
  lastLatencyMs?: number;
}

export interface StatusView {
  text: string;
  tooltip: string;
  /** True when the item should look like a warning (no server, a model error). */
  warning: boolean;
}

function indexPart(status: PushedStatus): string | undefined {
  const percentage = typeof status.percentage === 'number' ? ` ${status.percentage}%` : '';
  switch (status.index?.state) {
    case 'waiting':
    case 'indexing':
      return `indexing${percentage}`;
    case 'embedding':
      return `embedding${percentage}`;
    case 'error':
      return 'index error';
    default:
      return undefined;
  }
}

export function describeStatus(input: StatusInput): StatusView {
  if (input.client === 'missing') {
    return { text: '$(warning) Apprentice', tooltip: 'Apprentice: the language server was not found. Click for details.', warning: true };
  }
  if (input.client === 'stopped') {
    return { text: '$(debug-stop) Apprentice', tooltip: 'Apprentice: the language server stopped (see Apprentice: Show Log).', warning: true };
  }
  if (!input.enabled) {
    return { text: '$(circle-slash) Apprentice', tooltip: 'Apprentice: suggestions are off (Apprentice: Toggle Completions).', warning: false };
  }
  const status = input.status;
  if (input.client === 'starting' || !status || status.state === 'off') {
    return { text: '$(loading~spin) Apprentice', tooltip: 'Apprentice: starting the language server', warning: false };
  }
  if (status.state === 'error') {
    return { text: '$(error) Apprentice', tooltip: `Apprentice: ${status.message ?? 'the model failed'}`, warning: true };
  }
  const model = status.model;
  const parts = [model || 'loading model'];
  const index = indexPart(status);
  if (index) {
    parts.push(index);
  }
  const latency = input.lastLatencyMs ?? status.lastLatencyMs ?? undefined;
  if (model && latency !== undefined) {
    parts.push(`${Math.round(latency)} ms`);
  }
  // Warming comes and goes with every file opened and every line the cursor rests on: it
  // is told in the tooltip only, so the item does not flicker.
  const busy = !model || status.index?.state === 'waiting' || status.index?.state === 'indexing' || status.index?.state === 'embedding';
  const files = status.index?.files;
  const tooltip = [
    `Apprentice: ${status.message ?? parts.join(' · ')}`,
    status.index?.state ? `index: ${status.index.state}${typeof files === 'number' ? `, ${files} files` : ''}` : undefined,
    status.warming ? `warming the prompt for ${status.warming}` : undefined,
    latency !== undefined ? `last suggestion: ${Math.round(latency)} ms` : undefined,
    'Click for the full status.',
  ].filter((line) => line !== undefined);
  return { text: `${busy ? '$(loading~spin)' : '$(sparkle)'} ${parts.join(' · ')}`, tooltip: tooltip.join('\n'), warning: false };
}

/** VS Code language ids for the server's `languages` setting. */
export function documentLanguages(serverLanguages: readonly string[]): string[] {
  const extra: Record<string, string[]> = {
    javascript: ['javascript', 'javascriptreact'],
    tsx: ['typescriptreact'],
  };
  const ids = serverLanguages.flatMap((language) => extra[language] ?? [language]);
  return [...new Set(ids)];
}
