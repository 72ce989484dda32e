--- `:checkhealth apprentice`: this Neovim's features, the server executable, the model or
--- checkpoint, and the index (from the running server when there is one, else the settings).
local M = {}

local health = vim.health

--- The running server's `apprentice.status`, or nil (and why) when there is none.
---@param client vim.lsp.Client
---@return table? status, string? error
local function server_status(client)
  local params = { command = 'apprentice.status', arguments = {} }
  local answer, err
  if vim.fn.has('nvim-0.11') == 1 then
    answer, err = client:request_sync('workspace/executeCommand', params, 5000)
  else
    answer, err = client.request_sync('workspace/executeCommand', params, 5000)
  end
  if not answer then
    return nil, tostring(err)
  end
  if answer.err then
    return nil, answer.err.message
  end
  return answer.result, nil
end

--- Reports the executable that starts the server.
---@param options apprentice.Options
local function check_executable(options)
  local program = options.cmd[1]
  local path = vim.fn.exepath(program)
  if path ~= '' then
    health.ok(('executable: %s (command: %s)'):format(path, table.concat(options.cmd, ' ')))
  else
    health.error(('%s is not executable'):format(program), {
      'install the server: pip install /path/to/apprentice (a checkout), then `apprentice` is on PATH',
      "or set cmd = { '/path/to/venv/bin/apprentice', 'serve' } in setup()",
    })
  end
end

--- Reports the model from the settings, when no server runs.
---@param settings table
local function check_model_settings(settings)
  local model = settings.model or {}
  if type(model.remoteUrl) == 'string' and model.remoteUrl ~= '' then
    health.info('model: remote server ' .. model.remoteUrl .. ' (model.remoteUrl)')
  elseif type(model.path) == 'string' and model.path ~= '' then
    local path = vim.fn.expand(model.path)
    local kind = vim.fn.isdirectory(path) == 1 and 'checkpoint directory' or 'file'
    if vim.uv.fs_stat(path) then
      health.ok(('model: %s %s (model.path)'):format(kind, path))
    else
      health.info(('model: %s (model.path; not a path here: an installed NAME[@VERSION]?)'):format(model.path))
    end
  else
    health.info('model: the embedded default (Gemma 3 270M); set settings.model.path for another')
  end
end

--- Reports the model and the index of a running server.
---@param status table
local function check_running(status)
  local model = status.model or {}
  local checkpoint = type(model.checkpoint) == 'table' and model.checkpoint or nil
  local name = tostring(model.name or '?')
  if model.state == 'ready' then
    health.ok(('model: %s ready (%s)'):format(name, tostring(status.backend)))
  elseif model.state == 'error' then
    health.error('model: ' .. tostring(model.error), { 'fix settings.model.path or settings.model.remoteUrl' })
  else
    health.info('model: ' .. tostring(model.state))
  end
  if checkpoint then
    local line = ('checkpoint: %s %s, signer %s, verified %s'):format(
      tostring(checkpoint.name),
      tostring(checkpoint.version),
      tostring(checkpoint.signer),
      tostring(checkpoint.verified)
    )
    if checkpoint.verified then
      health.ok(line)
    else
      health.warn(line)
    end
  end
  local index = status.index or {}
  if index.state == 'ready' then
    health.ok(('index: ready, %s files, %s chunks, %s symbols (%s)'):format(
      tostring(index.files),
      tostring(index.chunks),
      tostring(index.symbols),
      tostring(index.directory)
    ))
  elseif index.state == 'error' then
    health.error('index: ' .. tostring(index.error))
  else
    health.info('index: ' .. tostring(index.state) .. (index.root and (' (' .. index.root .. ')') or ''))
  end
end

--- Reports each check under `:checkhealth apprentice`.
function M.check()
  local apprentice = require('apprentice')

  health.start('Neovim')
  if vim.fn.has('nvim-0.10') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.10 or later is needed')
  end
  if apprentice.has_inline_completion() then
    health.ok('vim.lsp.inline_completion is available (ghost text)')
  elseif apprentice.has_completion_items() then
    health.warn('no vim.lsp.inline_completion: suggestions come as completion items (vim.lsp.completion)', {
      'Neovim 0.12 or later shows them as ghost text',
    })
  else
    health.warn('no vim.lsp.inline_completion or vim.lsp.completion: use a completion plugin (nvim-cmp)', {
      'Neovim 0.12 or later shows suggestions as ghost text',
    })
  end

  health.start('Server')
  local options = apprentice.options
  if not options then
    health.error("require('apprentice').setup() has not been called")
    return
  end
  check_executable(options)
  health.info('suggestions: ' .. (apprentice.enabled and 'on' or 'off (:Apprentice toggle)'))

  health.start('Model and index')
  local clients = vim.lsp.get_clients({ name = apprentice.name })
  if #clients == 0 then
    health.info('no server running (open a ' .. table.concat(options.filetypes, '/') .. ' file)')
    check_model_settings(options.settings)
    local index = options.settings.index or {}
    if index.enabled == false then
      health.info('index: off (index.enabled = false)')
    else
      health.info('index: built in the background when the server starts, in ' .. tostring(index.location or '$XDG_CACHE_HOME/apprentice'))
    end
    return
  end
  for _, client in ipairs(clients) do
    health.info(('client %d, workspace: %s'):format(client.id, client.root_dir or 'none (single file)'))
    local status, err = server_status(client)
    if status then
      check_running(status)
    else
      health.error('apprentice.status failed: ' .. tostring(err))
    end
  end
end

return M
