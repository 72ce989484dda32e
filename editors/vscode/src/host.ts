/**
 * Every call into the editor API (`vscode.*`) lives here: configuration, workspace trust,
 * messages, the status bar item, documents, the active editor's cursor and command
 * registration.
 */
import * as vscode from 'vscode';
import type { EditorCursor, Host } from './controller';
import { Inspected, SECTION } from './settings';
import type { StatusView } from './status';

export class VsCodeHost implements Host {
  private readonly item: vscode.StatusBarItem;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.item = vscode.window.createStatusBarItem('apprentice.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'Apprentice';
    this.item.command = 'apprentice.showStatus';
    this.item.show();
    context.subscriptions.push(this.item);
  }

  inspect(key: string): Inspected | undefined {
    return vscode.workspace.getConfiguration(SECTION).inspect(key);
  }

  isTrusted(): boolean {
    return vscode.workspace.isTrusted;
  }

  searchPath(): string {
    return process.env.PATH ?? '';
  }

  showError(message: string): void {
    void vscode.window.showErrorMessage(message);
  }

  showInfo(message: string): void {
    void vscode.window.setStatusBarMessage(message, 4000);
  }

  showStatusItem(view: StatusView): void {
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.warning ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
  }

  async showDocument(content: string, language: string): Promise<void> {
    const document = await vscode.workspace.openTextDocument({ content, language });
    await vscode.window.showTextDocument(document, { preview: true });
  }

  async setEnabled(enabled: boolean): Promise<void> {
    await vscode.workspace.getConfiguration(SECTION).update('enable', enabled, vscode.ConfigurationTarget.Global);
  }

  activeCursor(): EditorCursor | undefined {
    return cursorOf(vscode.window.activeTextEditor);
  }

  /**
   * Calls back with the active editor's cursor when another editor becomes active
   * (`editorChanged`, undefined when none is) and when the active editor's cursor moves.
   */
  onCursor(listener: (cursor: EditorCursor | undefined, editorChanged: boolean) => void): void {
    this.context.subscriptions.push(
      vscode.window.onDidChangeActiveTextEditor((editor) => listener(cursorOf(editor), true)),
      vscode.window.onDidChangeTextEditorSelection((event) => {
        if (event.textEditor === vscode.window.activeTextEditor) {
          listener(cursorOf(event.textEditor), false);
        }
      }),
    );
  }

  /** Registers a command for the extension's lifetime. */
  command(id: string, run: () => unknown): void {
    this.context.subscriptions.push(vscode.commands.registerCommand(id, run));
  }

  /** Calls back with a test for "did this `apprentice.<key>` change" on every settings change. */
  onConfigurationChange(listener: (affects: (key: string) => boolean) => void): void {
    this.context.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (event.affectsConfiguration(SECTION)) {
          listener((key) => event.affectsConfiguration(`${SECTION}.${key}`));
        }
      }),
    );
  }

  onTrustGranted(listener: () => void): void {
    this.context.subscriptions.push(vscode.workspace.onDidGrantWorkspaceTrust(listener));
  }

  /** The extension's package.json. */
  manifest(): unknown {
    return this.context.extension.packageJSON;
  }
}

function cursorOf(editor: vscode.TextEditor | undefined): EditorCursor | undefined {
  if (!editor) {
    return undefined;
  }
  const { document, selection } = editor;
  // VS Code positions are LSP positions already: 0-based lines, UTF-16 characters.
  return {
    uri: document.uri.toString(),
    scheme: document.uri.scheme,
    languageId: document.languageId,
    line: selection.active.line,
    character: selection.active.character,
  };
}
