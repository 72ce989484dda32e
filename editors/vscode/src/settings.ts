/**
 * Which settings go to the server, and where each value is read from.
 *
 * The extension's `contributes.configuration` (package.json) is the one list of settings on
 * this side: every `apprentice.*` key except the client's own ({@link CLIENT_KEYS}) is a
 * server setting and is sent, nested and camelCase, as the server reads it (lsp/core/settings.py).
 * A test on the Python side compares that list with the server's schema.
 */

/** Settings the extension itself reads; they are never sent to the server. */
export const CLIENT_KEYS: readonly string[] = ['enable', 'executable', 'pythonPath'];

export const SECTION = 'apprentice';

/** The scopes a value can come from, as `WorkspaceConfiguration.inspect` reports them. */
export interface Inspected {
  defaultValue?: unknown;
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/** The part of the extension's package.json this module reads. */
export interface Manifest {
  contributes?: { configuration?: { properties?: Record<string, unknown> } };
  capabilities?: { untrustedWorkspaces?: { restrictedConfigurations?: string[] } };
}

/** Server setting keys (`model.path`, `logLevel`, ...), in the manifest's order. */
export function serverKeys(manifest: Manifest): string[] {
  const properties = manifest.contributes?.configuration?.properties ?? {};
  const prefix = `${SECTION}.`;
  return Object.keys(properties)
    .filter((key) => key.startsWith(prefix))
    .map((key) => key.slice(prefix.length))
    .filter((key) => !CLIENT_KEYS.includes(key));
}

/**
 * Keys (without the `apprentice.` prefix) whose workspace values are ignored in an untrusted
 * workspace: those that name a program, a model file, a checkpoint or a remote server.
 */
export function restrictedKeys(manifest: Manifest): Set<string> {
  const listed = manifest.capabilities?.untrustedWorkspaces?.restrictedConfigurations ?? [];
  const prefix = `${SECTION}.`;
  return new Set(listed.filter((key) => key.startsWith(prefix)).map((key) => key.slice(prefix.length)));
}

/**
 * The value in force for one key. In a trusted workspace the most specific scope wins (folder,
 * workspace, user, default); in an untrusted one a restricted key skips the workspace scopes,
 * so a cloned repository cannot make the editor run its program or load its model.
 */
export function effectiveValue(inspected: Inspected | undefined, restricted: boolean, trusted: boolean): unknown {
  if (!inspected) {
    return undefined;
  }
  const order: unknown[] =
    restricted && !trusted
      ? [inspected.globalValue, inspected.defaultValue]
      : [inspected.workspaceFolderValue, inspected.workspaceValue, inspected.globalValue, inspected.defaultValue];
  return order.find((value) => value !== undefined);
}

/** Reads the value in force for a key (without the prefix), trust already applied. */
export type Reader = (key: string) => unknown;

/** A reader over `inspect` results that applies workspace trust. */
export function trustedReader(inspect: (key: string) => Inspected | undefined, manifest: Manifest, trusted: boolean): Reader {
  const restricted = restrictedKeys(manifest);
  return (key) => effectiveValue(inspect(key), restricted.has(key), trusted);
}

/**
 * The settings object the server reads: `{ model: { path }, completion: {...}, logLevel }`.
 * Unset values (null, undefined, and the empty string a cleared text box leaves) are left out,
 * so the server keeps its own default for them.
 */
export function serverSettings(keys: readonly string[], read: Reader): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const key of keys) {
    const value = read(key);
    if (value === undefined || value === null || value === '') {
      continue;
    }
    const path = key.split('.');
    let node = result;
    for (const part of path.slice(0, -1)) {
      const child = node[part];
      if (typeof child === 'object' && child !== null) {
        node = child as Record<string, unknown>;
      } else {
        const created: Record<string, unknown> = {};
        node[part] = created;
        node = created;
      }
    }
    node[path[path.length - 1]] = value;
  }
  return result;
}

/** A string setting's value, or undefined when unset or empty. */
export function stringValue(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}
