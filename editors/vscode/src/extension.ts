/** Entry point: wires the controller to the editor (host.ts) and to vscode-languageclient. */
import type { ExtensionContext } from 'vscode';
import { DidChangeConfigurationNotification, ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions, State } from 'vscode-languageclient/node';
import { Client, Controller, CURSOR_NOTIFICATION } from './controller';
import { VsCodeHost } from './host';
import type { ServerCommand } from './serverCommand';
import { Manifest, SECTION } from './settings';
import { documentLanguages, PushedStatus, STATUS_NOTIFICATION } from './status';

let controller: Controller | undefined;

function hasItems(result: unknown): boolean {
  if (Array.isArray(result)) {
    return result.length > 0;
  }
  const items = (result as { items?: unknown[] } | null | undefined)?.items;
  return Array.isArray(items) && items.length > 0;
}

export async function activate(context: ExtensionContext): Promise<void> {
  const host = new VsCodeHost(context);
  const manifest = host.manifest() as Manifest;

  const createClient = (command: ServerCommand, initialSettings: () => Record<string, unknown>): Client => {
    const serverOptions: ServerOptions = { command: command.command, args: command.args };
    const languages = documentLanguages(current.languages());
    const clientOptions: LanguageClientOptions = {
      documentSelector: languages.map((language) => ({ scheme: 'file', language })),
      initializationOptions: initialSettings,
      outputChannelName: 'Apprentice',
      middleware: {
        provideInlineCompletionItems: async (document, position, inlineContext, token, next) => {
          if (!current.enabled()) {
            return null;
          }
          const started = Date.now();
          const result = await next(document, position, inlineContext, token);
          if (hasItems(result)) {
            current.recordLatency(Date.now() - started);
          }
          return result;
        },
        provideCompletionItem: async (document, position, completionContext, token, next) =>
          current.enabled() ? next(document, position, completionContext, token) : null,
      },
    };
    const client = new LanguageClient('apprentice', 'Apprentice', serverOptions, clientOptions);
    client.info(`server: ${command.command} ${command.args.join(' ')} (from ${command.source})`);
    return {
      start: () => client.start(),
      stop: async () => {
        if (client.state !== State.Stopped) {
          await client.stop();
        }
        await client.dispose();
      },
      executeCommand: (name) => client.sendRequest(ExecuteCommandRequest.type, { command: name, arguments: [] }),
      sendSettings: (settings) => client.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings } }),
      sendCursor: (params) => client.sendNotification(CURSOR_NOTIFICATION, params),
      onStatus: (listener) => {
        client.onNotification(STATUS_NOTIFICATION, (params: PushedStatus) => listener(params));
      },
      onState: (listener) => {
        client.onDidChangeState(({ newState }) => {
          listener(newState === State.Running ? 'running' : newState === State.Starting ? 'starting' : 'stopped');
        });
      },
      showLog: () => client.outputChannel.show(true),
    };
  };

  const current = new Controller(host, manifest, createClient);
  controller = current;
  host.command('apprentice.showStatus', () => current.showStatus());
  host.command('apprentice.reindexWorkspace', () => current.reindex());
  host.command('apprentice.toggleCompletions', () => current.toggle());
  host.command('apprentice.showLog', () => current.showLog());
  host.command('apprentice.restartServer', () => current.restart());
  host.onConfigurationChange((affects) => void current.configurationChanged(affects));
  host.onTrustGranted(() => void current.trustGranted());
  host.onCursor((cursor, editorChanged) => current.cursorMoved(cursor, editorChanged));
  await current.start();
}

export async function deactivate(): Promise<void> {
  const ending = controller;
  controller = undefined;
  await ending?.dispose();
}
