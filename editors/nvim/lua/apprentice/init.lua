--- Apprentice for Neovim: registers the Apprentice language server, turns on LSP inline
--- completion in the buffers it serves, and maps keys to accept and cycle suggestions.
---
--- The plugin holds no completion logic: everything (context, model, verification) happens in
--- the server, started as `apprentice serve`. Requires Neovim 0.11 for `vim.lsp.config`, and
--- 0.12 for `vim.lsp.inline_completion`; without the latter the server's ordinary completion
--- items still work.
local M = {}

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
---@field keys apprentice.Keys Insert-mode keys, buffer-local; false leaves a key unmapped.

---@type apprentice.Options
M.defaults = {
  cmd = { 'apprentice', 'serve' },
  filetypes = M.filetypes,
  root_markers = { '.git' },
  settings = {},
  inline_completion = true,
  -- Alt keys, as in other inline-completion plugins: <Tab> stays free for indenting and
  -- snippets unless the user asks for it (accept = '<Tab>' falls back to a real tab).
  keys = { accept = '<M-l>', next = '<M-]>', prev = '<M-[>' },
}

---@type apprentice.Options?
M.options = nil

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
  client:request('workspace/executeCommand', { command = command, arguments = {} }, function(err, result)
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
  run_command('apprentice.reindex')
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

--- Registers the server and the buffer-local behaviour. Safe to call again to change options.
---@param opts? table overrides of `M.defaults`, merged deeply
function M.setup(opts)
  vim.validate('opts', opts, 'table', true)
  local options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  -- Lists replace rather than merge: a shorter cmd must not keep the default's tail.
  for _, key in ipairs({ 'cmd', 'filetypes', 'root_markers' }) do
    if opts and opts[key] then
      options[key] = opts[key]
    end
  end
  vim.validate('cmd', options.cmd, 'table')
  vim.validate('settings', options.settings, 'table')
  M.options = options

  local settings = as_json_objects(options.settings)
  -- Assigned, not merged, so that calling setup again replaces the previous options.
  vim.lsp.config[M.name] = {
    cmd = options.cmd,
    filetypes = options.filetypes,
    root_markers = options.root_markers,
    init_options = settings,
    settings = { apprentice = settings },
  }
  vim.lsp.enable(M.name)

  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = augroup,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= M.name then
        return
      end
      if options.inline_completion and M.has_inline_completion() then
        -- Buffers start with inline completion off; turn it on only where Apprentice serves.
        vim.lsp.inline_completion.enable(true, { bufnr = args.buf })
        map_keys(args.buf, options.keys)
      end
    end,
  })

  vim.api.nvim_create_user_command('ApprenticeStatus', M.status, {
    desc = 'Show the Apprentice server status',
  })
  vim.api.nvim_create_user_command('ApprenticeReindex', M.reindex, {
    desc = 'Re-index the workspace',
  })
end

return M
