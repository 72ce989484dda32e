--- `:checkhealth apprentice`: is this Neovim new enough, is the server command there, and is a
--- client running.
local M = {}

--- Reports each check under `:checkhealth apprentice`.
function M.check()
  local health = vim.health
  local apprentice = require('apprentice')

  health.start('Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or later is needed (vim.lsp.config)')
  end
  if apprentice.has_inline_completion() then
    health.ok('vim.lsp.inline_completion is available (ghost text)')
  else
    health.warn(
      'vim.lsp.inline_completion is missing: suggestions come as completion items only',
      { 'Neovim 0.12 or later shows them as ghost text' }
    )
  end

  health.start('Server')
  local options = apprentice.options
  if not options then
    health.error("require('apprentice').setup() has not been called")
    return
  end
  local command = options.cmd[1]
  if vim.fn.executable(command) == 1 then
    health.ok(('command: %s'):format(table.concat(options.cmd, ' ')))
  else
    health.error(
      ('%s is not executable'):format(command),
      { 'install the server (pip install apprentice) or set cmd to its full path' }
    )
  end
  local clients = vim.lsp.get_clients({ name = apprentice.name })
  if #clients == 0 then
    health.info('no client running (open a ' .. table.concat(options.filetypes, '/') .. ' file)')
  end
  for _, client in ipairs(clients) do
    local root = client.root_dir or 'no workspace (single file)'
    health.ok(('client %d running, workspace: %s'):format(client.id, root))
  end
end

return M
