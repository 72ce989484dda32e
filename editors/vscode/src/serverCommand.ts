/** How `apprentice serve` is started: a configured program, a Python interpreter, or PATH. */
import { accessSync, constants, statSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';

export const INSTALL_HINT =
  'Install it with `pip install /path/to/apprentice` (a checkout of the repository), ' +
  'or set `apprentice.executable` or `apprentice.pythonPath`.';

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where the command came from, for the log. */
  source: 'apprentice.executable' | 'apprentice.pythonPath' | 'PATH';
}

export interface Missing {
  error: string;
}

/** `~` and `~/...` as the home folder, as a shell would read a path typed in settings. */
export function expandHome(file: string, home: string = homedir()): string {
  if (file === '~') {
    return home;
  }
  return file.startsWith('~/') ? path.join(home, file.slice(2)) : file;
}

export interface Lookup {
  executable?: string;
  pythonPath?: string;
  /** The PATH to search (`process.env.PATH`). */
  searchPath: string;
  /** The home folder for `~` (the user's by default). */
  home?: string;
  /** Whether a file exists and may be run; the real file system by default. */
  isExecutable?: (file: string) => boolean;
}

export function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) {
      return false;
    }
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first `name` on the search path that may be run. */
export function which(name: string, searchPath: string, isExecutable: (file: string) => boolean = isExecutableFile): string | undefined {
  for (const folder of searchPath.split(path.delimiter)) {
    if (folder === '') {
      continue;
    }
    const candidate = path.join(folder, name);
    if (isExecutable(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

/**
 * The command that starts the server over stdio. A configured program or interpreter that is
 * not there is an error of its own (no silent fall-back to another installation).
 */
export function resolveServerCommand(lookup: Lookup): ServerCommand | Missing {
  const isExecutable = lookup.isExecutable ?? isExecutableFile;
  const resolve = (configured: string): string | undefined => {
    const program = expandHome(configured, lookup.home);
    if (program.includes('/') || program.includes(path.sep)) {
      return isExecutable(program) ? program : undefined;
    }
    return which(program, lookup.searchPath, isExecutable);
  };
  if (lookup.executable) {
    const found = resolve(lookup.executable);
    if (!found) {
      return { error: `apprentice.executable is set to ${lookup.executable}, which is not an executable file.` };
    }
    return { command: found, args: ['serve'], source: 'apprentice.executable' };
  }
  if (lookup.pythonPath) {
    const found = resolve(lookup.pythonPath);
    if (!found) {
      return { error: `apprentice.pythonPath is set to ${lookup.pythonPath}, which is not an executable file.` };
    }
    return { command: found, args: ['-m', 'lsp.cli', 'serve'], source: 'apprentice.pythonPath' };
  }
  const onPath = which('apprentice', lookup.searchPath, isExecutable);
  if (!onPath) {
    return { error: `The Apprentice language server (\`apprentice\`) was not found on PATH. ${INSTALL_HINT}` };
  }
  return { command: onPath, args: ['serve'], source: 'PATH' };
}

export function isMissing(value: ServerCommand | Missing): value is Missing {
  return 'error' in value;
}
