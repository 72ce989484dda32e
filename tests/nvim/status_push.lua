-- The plugin against the real server, headless: the statusline follows the server's pushed
-- `apprentice/status` with no `apprentice.status` request, the plugin tells the server where
-- the cursor rests (`apprentice/cursor`), and a suggestion that arrives seconds after the last
-- keystroke (the server's debounce is set to APPRENTICE_DEBOUNCE_MS) is shown.
-- Run as `nvim --headless --clean -S status_push.lua`.
--
-- Inputs (environment): APPRENTICE_NVIM_PLUGIN, APPRENTICE_CMD (JSON list), APPRENTICE_TEST_SETTINGS
-- (JSON), APPRENTICE_FILE, APPRENTICE_LINE (1-based; the cursor goes to its end),
-- APPRENTICE_OUT, APPRENTICE_TIMEOUT_MS, APPRENTICE_SUGGEST_MS, APPRENTICE_DEBOUNCE_MS.
-- Report (JSON): ok, error, steps, pushed (each notification: state, model, index state,
-- percentage, and the statusline it drew), statusline_ready, requests (every request method
-- the client sent), cursors (the apprentice/cursor params sent), and for the late answer:
-- late_ms (from the keystroke that entered insert mode to the ghost text), shown,
-- cursor_before/cursor_shown, statusline_after.
local H = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)), 'harness.lua'))
local report = H.report

local function now_ms()
  return vim.uv.hrtime() / 1e6
end

--- Text of the suggestion drawn in the buffer, or nil when none is.
local function shown_text(bufnr)
  local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  if not ns then
    return nil
  end
  for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })) do
    local details = mark[4]
    if details.virt_text then
      local row = {}
      for _, chunk in ipairs(details.virt_text) do
        table.insert(row, chunk[1])
      end
      return table.concat(row)
    end
  end
  return nil
end

H.run(function()
  vim.opt.runtimepath:prepend(H.required('APPRENTICE_NVIM_PLUGIN'))
  local apprentice = require('apprentice')
  local status = require('apprentice.status')

  -- Every request the client sends (none of them may be the plugin's own status poll).
  report.requests = {}
  local answers = 0
  vim.api.nvim_create_autocmd('LspRequest', {
    callback = function(args)
      local request = args.data.request
      if request and request.type == 'pending' then
        table.insert(report.requests, request.method)
      elseif request and request.type == 'complete' and request.method == 'textDocument/inlineCompletion' then
        answers = answers + 1
      end
    end,
  })
  -- Every apprentice/cursor notification, seen before the plugin's own LspAttach sends one.
  report.cursors = {}
  vim.api.nvim_create_autocmd('LspAttach', {
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= apprentice.name or client._recorded then
        return
      end
      client._recorded = true
      local notify = client.notify
      client.notify = function(self, method, params)
        if method == 'apprentice/cursor' then
          table.insert(report.cursors, params)
        end
        return notify(self, method, params)
      end
    end,
  })

  apprentice.setup({
    cmd = vim.json.decode(H.required('APPRENTICE_CMD')),
    settings = vim.json.decode(vim.env.APPRENTICE_TEST_SETTINGS or '{}'),
  })
  vim.cmd.edit(vim.fn.fnameescape(H.required('APPRENTICE_FILE')))
  local bufnr = vim.api.nvim_get_current_buf()
  local original = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)

  -- Each notification as the plugin's handler gets it, with the statusline it leads to.
  report.pushed = {}
  local update = status.update
  status.update = function(client_id, params)
    update(client_id, params)
    local index = type(params) == 'table' and type(params.index) == 'table' and params.index or {}
    table.insert(report.pushed, {
      state = params and params.state,
      model = params and params.model,
      index = index.state,
      percentage = params and params.percentage,
      statusline = apprentice.statusline(bufnr),
    })
  end

  local client = H.wait_until('the client to attach and initialize', 30000, function()
    local found = apprentice.client(bufnr)
    return found and found.initialized and found
  end)
  H.step('attached')
  local uri = vim.uri_from_bufnr(bufnr)
  H.wait_until('apprentice/cursor on attach', 5000, function()
    return #report.cursors > 0
  end)

  report.statusline_ready = H.wait_until('the statusline to name the model, ready', 120000, function()
    local last = report.pushed[#report.pushed]
    return last and last.state == 'ready' and apprentice.statusline(bufnr)
  end)
  H.step('statusline: ' .. report.statusline_ready)

  -- The cursor rests on another line: the server is told once, after the rest.
  local told = #report.cursors
  vim.api.nvim_win_set_cursor(0, { 3, 0 })
  H.sleep(100)
  vim.api.nvim_win_set_cursor(0, { 5, 2 })
  H.wait_until('apprentice/cursor after the cursor rested', 5000, function()
    return #report.cursors > told
  end)
  H.sleep(500)
  report.cursor_moves = #report.cursors - told

  -- The late answer: the server waits APPRENTICE_DEBOUNCE_MS after each request. `A` enters
  -- insert mode at the end of the unfinished line; Neovim requests an inline completion, and
  -- nothing else is typed until the ghost text shows.
  local line = tonumber(H.required('APPRENTICE_LINE'))
  local suggest_ms = tonumber(vim.env.APPRENTICE_SUGGEST_MS or '60000')
  local shown
  for attempt = 1, 3 do
    vim.api.nvim_win_set_cursor(0, { line, 0 })
    H.sleep(50)
    local pressed, answered = now_ms(), answers
    vim.api.nvim_feedkeys('A', 'n', false)
    H.wait_until('insert mode', 5000, function()
      return vim.api.nvim_get_mode().mode == 'i'
    end)
    report.cursor_before = vim.api.nvim_win_get_cursor(0)
    -- Until the ghost text shows, or an answer came that drew none (an empty one).
    local shown_at
    H.wait_until('an answer to the inline completion request', suggest_ms, function()
      if shown_text(bufnr) then
        shown_at = now_ms()
      end
      return shown_at or answers > answered
    end)
    if not shown_at then -- an answer came: give the handler a moment to draw it
      H.sleep(100)
      shown_at = shown_text(bufnr) and now_ms() or nil
    end
    shown = shown_at ~= nil
    if shown then
      report.late_ms = shown_at - pressed
      report.shown = shown_text(bufnr)
      report.cursor_shown = vim.api.nvim_win_get_cursor(0)
      report.lines_shown = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
      H.step(('attempt %d: shown after %d ms'):format(attempt, report.late_ms))
      break
    end
    H.step(('attempt %d: nothing shown'):format(attempt))
    vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'n', false)
    H.wait_until('normal mode', 5000, function()
      return vim.api.nvim_get_mode().mode == 'n'
    end)
  end
  if not shown then
    error('no suggestion was shown in 3 attempts', 0)
  end
  report.buffer_unchanged = vim.deep_equal(report.lines_shown, original)
  -- The suggestion's latency arrives in the next push.
  report.statusline_after = H.wait_until('the latency in the statusline', 10000, function()
    local text = apprentice.statusline(bufnr)
    return text:find('%d+ ms$') and text
  end)
  report.uri = uri
  vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'n', false)
  H.wait_until('normal mode', 5000, function()
    return vim.api.nvim_get_mode().mode == 'n'
  end)
  H.step('done; client ' .. client.id)
end)
