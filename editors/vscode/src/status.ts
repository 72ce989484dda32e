/** The status bar item's text and tooltip, from the server's `apprentice.status` answer. */

/** The parts of `apprentice.status` (lsp/server.py) the status bar shows. */
export interface ServerStatus {
  model?: {
    state?: string;
    name?: string | null;
    error?: string | null;
    /** A team checkpoint's manifest (name, version, signer, verified...); null for a plain GGUF. */
    checkpoint?: { name?: string | null; version?: string | null } | null;
  };
  backend?: string | null;
  index?: { state?: string; files?: number; chunks?: number; error?: string };
  latency?: { count?: number; last_ms?: number | null; p50_ms?: number | null };
}

/** What the extension knows when it draws the item. */
export interface StatusInput {
  enabled: boolean;
  /** The client's state: not started (no server found), starting, running, or stopped. */
  client: 'missing' | 'starting' | 'running' | 'stopped';
  status?: ServerStatus;
  /** Keystroke-to-suggestion time of the last suggestion shown, measured in the editor. */
  lastLatencyMs?: number;
}

export interface StatusView {
  text: string;
  tooltip: string;
  /** True when the item should look like a warning (no server, a model error). */
  warning: boolean;
}

/** The model's name as the status bar shows it, with a checkpoint's version when known. */
export function modelLabel(status: ServerStatus | undefined): string {
  const model = status?.model;
  const checkpoint = model?.checkpoint;
  if (checkpoint?.name) {
    return checkpoint.version ? `${checkpoint.name} ${checkpoint.version}` : checkpoint.name;
  }
  const name = model?.name || (status?.backend?.startsWith('remote ') ? status.backend.slice('remote '.length) : '');
  return name || 'model';
}

function indexPart(status: ServerStatus | undefined): string | undefined {
  const index = status?.index;
  switch (index?.state) {
    case 'waiting':
      return 'index waiting';
    case 'indexing':
      return index.files ? `indexing (${index.files} files)` : 'indexing';
    case 'embedding':
      return 'embedding';
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
  const state = status?.model?.state;
  if (input.client === 'starting' || !status) {
    return { text: '$(loading~spin) Apprentice', tooltip: 'Apprentice: starting the language server', warning: false };
  }
  if (state === 'error') {
    const error = status.model?.error ?? 'unknown error';
    return { text: '$(error) Apprentice', tooltip: `Apprentice: the model failed: ${error}`, warning: true };
  }
  const parts: string[] = [];
  if (state === 'ready') {
    parts.push(modelLabel(status));
  } else {
    parts.push('loading model');
  }
  const index = indexPart(status);
  if (index) {
    parts.push(index);
  }
  const latency = input.lastLatencyMs ?? status.latency?.last_ms ?? undefined;
  if (state === 'ready' && latency !== undefined && latency !== null) {
    parts.push(`${Math.round(latency)} ms`);
  }
  const icon = state === 'ready' && !index ? '$(sparkle)' : '$(loading~spin)';
  const tooltip = [
    `Apprentice: ${state === 'ready' ? modelLabel(status) : 'loading the model'}`,
    status.backend ? `backend: ${status.backend}` : undefined,
    status.index?.state ? `index: ${status.index.state}${status.index.files !== undefined ? `, ${status.index.files} files` : ''}` : undefined,
    latency !== undefined && latency !== null ? `last suggestion: ${Math.round(latency)} ms` : undefined,
    'Click for the full status.',
  ].filter((line) => line !== undefined);
  return { text: `${icon} ${parts.join(' · ')}`, tooltip: tooltip.join('\n'), warning: false };
}

/** Whether the server is still busy (model loading, indexing), so the status is polled often. */
export function isBusy(status: ServerStatus | undefined): boolean {
  const model = status?.model?.state;
  const index = status?.index?.state;
  return model === 'idle' || model === 'loading' || index === 'waiting' || index === 'indexing' || index === 'embedding';
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
