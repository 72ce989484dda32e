-- The plugin's commands, statusline, health check and completion-item fallback, against the
-- real server, headless. Run as `nvim --headless --clean -S commands.lua`.
--
-- Inputs (environment): APPRENTICE_NVIM_PLUGIN, APPRENTICE_CMD (JSON list), APPRENTICE_TEST_SETTINGS
-- (JSON), APPRENTICE_FILE, APPRENTICE_LINE (1-based; the cursor goes to its end),
-- APPRENTICE_OUT, APPRENTICE_TIMEOUT_MS, and APPRENTICE_SCENARIO:
--   commands  `:Apprentice status|reindex|toggle`, the statusline and `:checkhealth apprentice`
--   items     Neovim 0.10/0.11 as the plugin sees them (no vim.lsp.config, no inline
--             completion): the client is started per buffer with vim.lsp.start and the
--             suggestion arrives as a completion item through vim.lsp.completion
-- Report (JSON): ok, error, steps, and what each scenario observed.
local H = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)), 'harness.lua'))
local report = H.report

local notes = {}
vim.notify = function(message, level)
  table.insert(notes, { message = tostring(message), level = level })
end

--- Waits for a notification matching `pattern` after index `after`; returns its message.
local function notified(pattern, after, timeout_ms)
  return H.wait_until('a message matching ' .. pattern, timeout_ms or 60000, function()
    for index = after + 1, #notes do
      if notes[index].message:find(pattern) then
        return notes[index].message
      end
    end
  end)
end

local function start(apprentice)
  apprentice.setup({
    cmd = vim.json.decode(H.required('APPRENTICE_CMD')),
    settings = vim.json.decode(vim.env.APPRENTICE_TEST_SETTINGS or '{}'),
  })
  vim.cmd.edit(vim.fn.fnameescape(H.required('APPRENTICE_FILE')))
  local bufnr = vim.api.nvim_get_current_buf()
  local client = H.wait_until('the client to attach and initialize', 30000, function()
    local found = apprentice.client(bufnr)
    return found and found.initialized and found
  end)
  H.step('attached')
  return bufnr, client
end

local function commands(apprentice)
  local bufnr = start(apprentice)
  report.statusline_first = apprentice.statusline(bufnr)
  -- The statusline names the model once the server pushes that it has loaded.
  report.statusline_ready = H.wait_until('the statusline to name the model', 90000, function()
    local text = apprentice.statusline(bufnr)
    return text:find('Gemma') and text
  end)
  H.step('statusline: ' .. report.statusline_ready)
  report.statusline_other_buffer = apprentice.statusline(vim.api.nvim_create_buf(false, true))

  local before = #notes
  vim.cmd('Apprentice status')
  report.status_message = notified('model', before)

  report.inline_before = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  vim.cmd('Apprentice toggle')
  report.inline_off = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  report.statusline_off = apprentice.statusline(bufnr)
  vim.cmd('Apprentice toggle')
  report.inline_on = vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  report.statusline_on = apprentice.statusline(bufnr)

  before = #notes
  vim.cmd('Apprentice reindex')
  report.reindex_message = notified('indexed', before)

  before = #notes
  vim.cmd('Apprentice frobnicate')
  report.unknown_message = notified('unknown subcommand', before, 5000)
  report.completions = vim.fn.getcompletion('Apprentice ', 'cmdline')

  vim.cmd('checkhealth apprentice')
  report.health = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end

local function items(apprentice)
  -- What the plugin finds on Neovim 0.10/0.11.
  apprentice.use_lsp_enable = function()
    return false
  end
  apprentice.has_inline_completion = function()
    return false
  end
  local bufnr = start(apprentice)
  report.config_registered = vim.lsp.config ~= nil and rawget(vim.lsp.config, apprentice.name) ~= nil
  H.wait_until('the model to be ready', 90000, function()
    local text = apprentice.statusline(bufnr)
    return text:find('Gemma') and text
  end)
  local line = tonumber(H.required('APPRENTICE_LINE'))
  vim.api.nvim_win_set_cursor(0, { line, 0 })
  vim.api.nvim_feedkeys('A', 'n', false)
  H.wait_until('insert mode', 5000, function()
    return vim.api.nvim_get_mode().mode == 'i'
  end)
  H.step('insert mode')
  -- Ask again until the server has a suggestion (the first request may warm its prompt).
  local found
  for attempt = 1, 5 do
    vim.lsp.completion.get()
    found = pcall(H.wait_until, 'completion items', 30000, function()
      return #vim.fn.complete_info({ 'items' }).items > 0
    end)
    H.step(('attempt %d: %s'):format(attempt, found and 'items' or 'none'))
    if found then
      break
    end
  end
  local info = vim.fn.complete_info({ 'items' })
  report.items = {}
  for _, item in ipairs(info.items) do
    table.insert(report.items, { word = item.word, abbr = item.abbr, kind = item.kind, menu = item.menu })
  end
  report.inline_enabled = vim.lsp.inline_completion and vim.lsp.inline_completion.is_enabled({ bufnr = bufnr })
  report.mode = vim.api.nvim_get_mode().mode
  vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'n', false)
  H.wait_until('normal mode', 5000, function()
    return vim.api.nvim_get_mode().mode == 'n'
  end)
  vim.cmd('checkhealth apprentice')
  report.health = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end

H.run(function()
  vim.opt.runtimepath:prepend(H.required('APPRENTICE_NVIM_PLUGIN'))
  local apprentice = require('apprentice')
  local scenario = H.required('APPRENTICE_SCENARIO')
  if scenario == 'commands' then
    commands(apprentice)
  elseif scenario == 'items' then
    items(apprentice)
  else
    error('unknown APPRENTICE_SCENARIO ' .. scenario, 0)
  end
end)
