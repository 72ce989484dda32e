--- Apprentice for Neovim: registers the Apprentice language server, turns on LSP inline
--- completion in the buffers it serves, and maps keys to accept and cycle suggestions.
---
--- The plugin holds no completion logic: everything (context, model, verification) happens in
--- the server, started as `apprentice serve`. Ghost text needs 0.12
--- (`vim.lsp.inline_completion`); on 0.10 and 0.11 the server's suggestions arrive as
--- completion items, through `vim.lsp.completion` (0.11) or a completion plugin (nvim-cmp).
local M = {}

local status = require('apprentice.status')
local cursor = require('apprentice.cursor')

--- Name of the client and of its `vim.lsp.config` entry.
M.name = 'apprentice'

--- Languages the server indexes and completes (Neovim's filetype names, which it also sends
--- as the LSP language id).
M.filetypes = {
  'python',
  'javascript',
  'javascriptreact',
  'typescript',
  'typescriptreact',
  'go',
  'rust',
  'java',
  'c',
  'cpp',
}

---@class apprentice.Keys
---@field accept string|false Insert-mode key that accepts the shown suggestion (falls through to
---                           the key's own meaning when nothing is shown).
---@field next string|false Insert-mode key that shows the next candidate.
---@field prev string|false Insert-mode key that shows the previous candidate.

---@class apprentice.Options
---@field cmd string[] Command that starts the server (stdio).
---@field filetypes string[] Filetypes to attach to.
---@field root_markers string[] Markers of the workspace root; the nearest one above the file wins.
---@field settings table Server settings (camelCase), sent as `initializationOptions` and as the
---                      `apprentice` section of `workspace/didChangeConfiguration`.
---@field inline_completion boolean Turn on `vim.lsp.inline_completion` in attached buffers.
---@field completion_items boolean|'auto' Turn on `vim.lsp.completion` (0.11+) in attached
---                       buffers; 'auto': only where ghost text is not available or not on, and
---                       nvim-cmp is not loaded (it asks the server itself).
---@field keys apprentice.Keys Insert-mode keys, buffer-local; false leaves a key unmapped.

---@type apprentice.Options
M.defaults = {
  cmd = { 'apprentice', 'serve' },
  filetypes = M.filetypes,
  root_markers = { '.git' },
  settings = {},
  inline_completion = true,
  completion_items = 'auto',
  -- Alt keys, as in other inline-completion plugins: <Tab> stays free for indenting and
  -- snippets unless the user asks for it (accept = '<Tab>' falls back to a real tab).
  keys = { accept = '<M-l>', next = '<M-]>', prev = '<M-[>' },
}

---@type apprentice.Options?
M.options = nil

--- Whether suggestions are on (`:Apprentice toggle`).
M.enabled = true

--- Buffers where this plugin turned a completion mechanism on: bufnr -> { inline, items, client_id }.
local turned_on = {}

local augroup = vim.api.nvim_create_augroup('apprentice', { clear = true })

--- Whether this Neovim has the LSP inline completion API (0.12 and later).
---@return boolean
function M.has_inline_completion()
  local ok, mod = pcall(require, 'vim.lsp.inline_completion')
  return ok and type(mod) == 'table' and type(mod.get) == 'function'
end

--- The running Apprentice client for a buffer, if any.
---@param bufnr? integer buffer (default: current)
---@return vim.lsp.Client?
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = M.name })[1]
end

--- Accept the suggestion shown in the current buffer.
---@return boolean accepted false when no suggestion was shown
function M.accept()
  return M.has_inline_completion() and vim.lsp.inline_completion.get() or false
end

--- Insert-mode mappings for one buffer. The accept key keeps its own meaning when there is
--- nothing to accept, so mapping it to <Tab> does not take indentation away.
---@param bufnr integer
---@param keys apprentice.Keys
local function map_keys(bufnr, keys)
  if keys.accept then
    local fallback = keys.accept
    vim.keymap.set('i', keys.accept, function()
      if not M.accept() then
        return fallback
      end
    end, { buffer = bufnr, expr = true, desc = 'Apprentice: accept the inline suggestion' })
  end
  if keys.next then
    vim.keymap.set('i', keys.next, function()
      vim.lsp.inline_completion.select({ count = 1 })
    end, { buffer = bufnr, desc = 'Apprentice: next inline suggestion' })
  end
  if keys.prev then
    vim.keymap.set('i', keys.prev, function()
      vim.lsp.inline_completion.select({ count = -1 })
    end, { buffer = bufnr, desc = 'Apprentice: previous inline suggestion' })
  end
end

--- `client:request` on 0.11+, `client.request` (no self) on 0.10.
---@param client vim.lsp.Client
---@param method string
---@param params table
---@param handler function
---@param bufnr? integer
local function request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end
M.request = request

--- Runs `workspace/executeCommand` on the buffer's Apprentice client.
---@param command string
---@param on_result fun(err: lsp.ResponseError?, result: any)
---@param bufnr? integer
---@return boolean sent false when no Apprentice client serves the buffer
function M.execute(command, on_result, bufnr)
  local client = M.client(bufnr)
  if not client then
    return false
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = {} }, function(err, result)
    on_result(err, result)
  end, bufnr or 0)
  return true
end

--- Runs one of the server's commands; errors and a missing server are said, not thrown.
---@param command string
---@param on_result? fun(result: any)
local function run_command(command, on_result)
  local sent = M.execute(command, function(err, result)
    if err then
      vim.notify('Apprentice: ' .. err.message, vim.log.levels.ERROR)
    elseif on_result then
      on_result(result)
    end
  end)
  if not sent then
    vim.notify('Apprentice: no server attached to this buffer', vim.log.levels.WARN)
  end
end

--- Shows the server's `apprentice.status` (model, index, latency, request counters).
function M.status()
  run_command('apprentice.status', function(result)
    vim.notify(vim.inspect(result), vim.log.levels.INFO)
  end)
end

--- Asks the server to re-index the workspace.
function M.reindex()
  run_command('apprentice.reindex', function(result)
    if type(result) == 'table' and result.state == 'off' then
      vim.notify('Apprentice: not indexed: ' .. tostring(result.reason), vim.log.levels.WARN)
    else
      local files = type(result) == 'table' and result.files or 0
      vim.notify(('Apprentice: workspace indexed (%s files)'):format(files), vim.log.levels.INFO)
    end
  end)
end

--- Turns what this plugin enabled in one buffer on or off.
---@param bufnr integer
---@param on boolean
local function apply(bufnr, on)
  local state = turned_on[bufnr]
  if not state or not vim.api.nvim_buf_is_valid(bufnr) then
    turned_on[bufnr] = nil
    return
  end
  if state.inline then
    vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
  end
  if state.items then
    vim.lsp.completion.enable(on, state.client_id, bufnr, { autotrigger = true })
  end
end

--- Turns suggestions on or off in every buffer Apprentice serves (ghost text and the
--- `vim.lsp.completion` items this plugin turned on; a completion plugin keeps its own switch).
---@param on? boolean default: the opposite of now
function M.toggle(on)
  if on == nil then
    on = not M.enabled
  end
  M.enabled = on
  for bufnr in pairs(turned_on) do
    apply(bufnr, on)
  end
  vim.cmd.redrawstatus({ bang = true })
  vim.notify('Apprentice: suggestions ' .. (on and 'on' or 'off'), vim.log.levels.INFO)
end

--- A statusline component: the model, indexing progress and the last latency (from the
--- server's `apprentice/status` notifications), or '' where Apprentice does not serve the
--- buffer. `%{v:lua.require'apprentice'.statusline()}`.
---@param bufnr? integer
---@return string
function M.statusline(bufnr)
  local client = M.client(bufnr)
  if not client then
    return ''
  end
  return status.text(status.clients[client.id], M.enabled)
end

--- Whether this Neovim can use `vim.lsp.completion` (0.11+).
---@return boolean
function M.has_completion_items()
  local ok, mod = pcall(require, 'vim.lsp.completion')
  return ok and type(mod) == 'table' and type(mod.enable) == 'function'
end

--- Whether the client is registered with `vim.lsp.config`/`vim.lsp.enable` (0.11+) rather than
--- started from a FileType autocommand with `vim.lsp.start` (0.10).
---@return boolean
function M.use_lsp_enable()
  return type(vim.lsp.config) == 'table' and type(vim.lsp.enable) == 'function'
end

--- What to turn on in a buffer the client attached to.
---@param options apprentice.Options
---@return boolean inline, boolean items
local function mechanisms(options)
  local inline = options.inline_completion and M.has_inline_completion()
  local items = options.completion_items
  if items == 'auto' then
    items = not inline and package.loaded['cmp'] == nil
  end
  return inline and true or false, (items and M.has_completion_items()) and true or false
end

local subcommands = {
  status = function()
    M.status()
  end,
  reindex = function()
    M.reindex()
  end,
  toggle = function()
    M.toggle()
  end,
}

--- `:Apprentice status|reindex|toggle`.
---@param args table the user command's arguments
local function command(args)
  local name = args.fargs[1] or 'status'
  local run = subcommands[name]
  if not run then
    vim.notify(('Apprentice: unknown subcommand %q (status, reindex, toggle)'):format(name), vim.log.levels.ERROR)
    return
  end
  run()
end

--- A copy of `value` whose empty tables are JSON objects: Lua cannot tell `{}` from `[]`, and
--- the server reads every settings section as an object.
---@param value any
---@return any
local function as_json_objects(value)
  if type(value) ~= 'table' then
    return value
  end
  if next(value) == nil then
    return vim.empty_dict()
  end
  local copy = {}
  for key, item in pairs(value) do
    copy[key] = as_json_objects(item)
  end
  return copy
end

--- Where `apprentice/cursor` finds the buffer's client, and whether suggestions are on (off:
--- the server is not asked to prepare prompts either).
---@type apprentice.CursorSource
local cursor_source = {
  client = function(bufnr)
    return M.client(bufnr)
  end,
  enabled = function()
    return M.enabled
  end,
}

--- Registers the server and the buffer-local behaviour. Safe to call again to change options.
---@param opts? table overrides of `M.defaults`, merged deeply
function M.setup(opts)
  if opts ~= nil and type(opts) ~= 'table' then
    error('apprentice.setup: opts must be a table', 2)
  end
  local options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  -- Lists replace rather than merge: a shorter cmd must not keep the default's tail.
  for _, key in ipairs({ 'cmd', 'filetypes', 'root_markers' }) do
    if opts and opts[key] then
      options[key] = opts[key]
    end
  end
  for _, key in ipairs({ 'cmd', 'filetypes', 'root_markers', 'settings' }) do
    if type(options[key]) ~= 'table' then
      error(('apprentice.setup: %s must be a table'):format(key), 2)
    end
  end
  M.options = options

  local settings = as_json_objects(options.settings)
  -- The server pushes its state (`apprentice/status`) whenever it changes: the statusline
  -- follows it, nothing polls.
  local handlers = { [status.METHOD] = status.handler }
  local function on_exit(_, _, client_id)
    status.forget(client_id)
  end
  local config = {
    name = M.name,
    cmd = options.cmd,
    filetypes = options.filetypes,
    root_markers = options.root_markers,
    init_options = settings,
    settings = { apprentice = settings },
    handlers = handlers,
    on_exit = on_exit,
  }

  vim.api.nvim_clear_autocmds({ group = augroup })
  if M.use_lsp_enable() then
    -- Assigned, not merged, so that calling setup again replaces the previous options.
    vim.lsp.config[M.name] = config
    vim.lsp.enable(M.name)
  else
    -- Neovim 0.10: no vim.lsp.config; start (or reuse) the client for each buffer.
    vim.api.nvim_create_autocmd('FileType', {
      group = augroup,
      pattern = options.filetypes,
      callback = function(args)
        vim.lsp.start({
          name = M.name,
          cmd = options.cmd,
          root_dir = vim.fs.root(args.buf, options.root_markers),
          init_options = settings,
          settings = config.settings,
          handlers = handlers,
          on_exit = on_exit,
        }, { bufnr = args.buf })
      end,
    })
  end

  vim.api.nvim_create_autocmd('LspAttach', {
    group = augroup,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= M.name then
        return
      end
      local inline, items = mechanisms(options)
      turned_on[args.buf] = { inline = inline, items = items, client_id = client.id }
      if inline then
        -- Buffers start with inline completion off; turn it on only where Apprentice serves.
        map_keys(args.buf, options.keys)
      end
      apply(args.buf, M.enabled)
      cursor.attach(args.buf, cursor_source)
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = augroup,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        turned_on[args.buf] = nil
        cursor.detach(args.buf)
      end
    end,
  })

  vim.api.nvim_create_user_command('Apprentice', command, {
    nargs = '?',
    complete = function()
      return vim.tbl_keys(subcommands)
    end,
    desc = 'Apprentice: status, reindex or toggle',
  })
  vim.api.nvim_create_user_command('ApprenticeStatus', M.status, {
    desc = 'Show the Apprentice server status',
  })
  vim.api.nvim_create_user_command('ApprenticeReindex', M.reindex, {
    desc = 'Re-index the workspace',
  })
end

return M
