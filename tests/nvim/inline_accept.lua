-- End-to-end check of the Neovim plugin: one inline completion, shown and accepted.
--
-- Run as `nvim --headless --clean -S inline_accept.lua` (not `-l`: a `-l` script never reaches
-- Neovim's main loop, and insert mode, which drives automatic inline completion requests and
-- insert-mode mappings, only runs there). The steps run in a coroutine driven by timers; every
-- failure, and a watchdog, end Neovim with a non-zero status, so the test can never hang here.
--
-- Inputs (environment):
--   APPRENTICE_NVIM_PLUGIN  the plugin folder (editors/nvim), put on 'runtimepath'
--   APPRENTICE_CMD          JSON list: the command that starts the server
--   APPRENTICE_TEST_SETTINGS     JSON object: server settings for setup()
--   APPRENTICE_FILE         the file to edit
--   APPRENTICE_LINE         1-based line; the cursor goes to its end, in insert mode
--   APPRENTICE_OUT          where to write the JSON report
--   APPRENTICE_TIMEOUT_MS   budget for the whole run (default 150000)
--   APPRENTICE_SUGGEST_MS   budget for each answer to arrive (default 60000)
--   APPRENTICE_ATTEMPTS     requests to make while the server answers with nothing (default 3)
-- The report (JSON): ok, error (on failure), steps (timed log), original and lines (the buffer
-- before and after), suggestion and range (the server's first item), shown (the ghost text
-- drawn), shown_after, cursor_before and cursor_after (0-based line, byte column), mode_after,
-- attempts.

local env = vim.env

--- The environment variable `name`; raises when it is not set.
local function required(name)
  local value = env[name]
  if not value or value == '' then
    error(name .. ' is not set', 0)
  end
  return value
end

local report = { ok = false, steps = {} }
local finished = false

local function step(text)
  table.insert(report.steps, ('%d ms: %s'):format(vim.uv.hrtime() / 1e6 - report.started_ms, text))
end

local function write_report()
  local file = assert(io.open(required('APPRENTICE_OUT'), 'w'))
  file:write(vim.json.encode(report))
  file:close()
end

--- Ends Neovim; a failure writes the reason into the report and exits with status 1.
local function finish(err)
  if finished then
    return
  end
  finished = true
  if err then
    report.ok = false
    report.error = tostring(err)
  else
    report.ok = true
  end
  local wrote, write_err = pcall(write_report)
  if not wrote then
    io.stderr:write('cannot write the report: ' .. tostring(write_err) .. '\n')
  end
  if err then
    io.stderr:write('inline_accept.lua failed: ' .. tostring(err) .. '\n')
    vim.cmd('cquit 1')
  else
    vim.cmd('qall!')
  end
end

local function resume(co)
  local ok, err = coroutine.resume(co)
  if not ok then
    finish(err)
  end
end

local function sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    resume(co)
  end, ms)
  coroutine.yield()
end

--- Polls `condition` until it returns a truthy value, which is returned; raises on timeout.
local function wait_until(what, timeout_ms, condition)
  local deadline = vim.uv.hrtime() / 1e6 + timeout_ms
  while true do
    local value = condition()
    if value then
      return value
    end
    if vim.uv.hrtime() / 1e6 > deadline then
      error(('timed out after %d ms waiting for %s'):format(timeout_ms, what), 0)
    end
    sleep(50)
  end
end

--- Sends one request and waits for its answer: {err, result}.
local function request(client, method, params, bufnr, timeout_ms)
  local answer
  client:request(method, params, function(err, result)
    answer = { err = err, result = result }
  end, bufnr)
  return wait_until(method, timeout_ms, function()
    return answer
  end)
end

local function inline_namespace()
  return vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
end

--- Text of the suggestion drawn in the buffer (virtual text and lines), or nil when none is.
local function shown_text(bufnr)
  local ns = inline_namespace()
  if not ns then
    return nil
  end
  for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })) do
    local details = mark[4]
    if details.virt_text then
      local rows = {}
      for _, chunks in ipairs({ details.virt_text, unpack(details.virt_lines or {}) }) do
        local row = {}
        for _, chunk in ipairs(chunks) do
          table.insert(row, chunk[1])
        end
        table.insert(rows, table.concat(row))
      end
      return table.concat(rows, '\n')
    end
  end
  return nil
end

local function main()
  vim.opt.runtimepath:prepend(required('APPRENTICE_NVIM_PLUGIN'))
  local apprentice = require('apprentice')
  apprentice.setup({
    cmd = vim.json.decode(required('APPRENTICE_CMD')),
    settings = vim.json.decode(env.APPRENTICE_TEST_SETTINGS or '{}'),
  })
  if not apprentice.has_inline_completion() then
    error('this Neovim has no vim.lsp.inline_completion', 0)
  end
  local suggest_ms = tonumber(env.APPRENTICE_SUGGEST_MS or '60000')
  local line = tonumber(required('APPRENTICE_LINE'))
  if not line then
    error('APPRENTICE_LINE is not a number', 0)
  end

  vim.cmd.edit(vim.fn.fnameescape(required('APPRENTICE_FILE')))
  local bufnr = vim.api.nvim_get_current_buf()
  report.original = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
  step('opened with filetype ' .. vim.bo[bufnr].filetype)

  local client = wait_until('the client to attach and initialize', 30000, function()
    local found = apprentice.client(bufnr)
    return found and found.initialized and found
  end)
  step('attached to ' .. client.name)

  -- The model loads in the background after `initialized`; a request before it is ready
  -- would be answered with nothing.
  wait_until('the model to be ready', 90000, function()
    local answer = request(client, 'workspace/executeCommand', {
      command = 'apprentice.status',
      arguments = {},
    }, bufnr, 10000)
    if answer.err then
      error('apprentice.status failed: ' .. vim.inspect(answer.err), 0)
    end
    local model = answer.result and answer.result.model or {}
    if model.state == 'error' then
      error('the model failed to load: ' .. tostring(model.error), 0)
    end
    if model.state == 'ready' then
      return true
    end
    sleep(250)
  end)
  step('model ready')

  -- Record what the server answers, to compare with what ends up in the buffer.
  local answers = {}
  local plain_request = client.request
  client.request = function(self, method, params, handler, req_bufnr)
    if method == 'textDocument/inlineCompletion' and handler then
      local inner = handler
      handler = function(err, result, ctx)
        table.insert(answers, { err = err, result = result })
        return inner(err, result, ctx)
      end
    end
    return plain_request(self, method, params, handler, req_bufnr)
  end

  -- A slow machine can leave the server with nothing to show in its time limit; as when a user
  -- goes on typing, a fresh request (leave insert mode and enter it again) tries once more,
  -- with the prompt now in the model's cache.
  local attempts = tonumber(env.APPRENTICE_ATTEMPTS or '3')
  local item
  for attempt = 1, attempts do
    local before = #answers
    vim.api.nvim_win_set_cursor(0, { line, 0 })
    -- Typed keys, handled by the main loop once this step yields: `A` enters insert mode at
    -- the end of the line, and InsertEnter makes Neovim request an inline completion.
    vim.api.nvim_feedkeys('A', 'n', false)
    wait_until('insert mode', 5000, function()
      return vim.api.nvim_get_mode().mode == 'i'
    end)
    local cursor = vim.api.nvim_win_get_cursor(0)
    report.cursor_before = { cursor[1] - 1, cursor[2] }
    step(('attempt %d: insert mode at %d:%d'):format(attempt, cursor[1] - 1, cursor[2]))

    local answer = wait_until('an inline completion answer', suggest_ms, function()
      return #answers > before and answers[#answers]
    end)
    if answer.err then
      error('textDocument/inlineCompletion failed: ' .. vim.inspect(answer.err), 0)
    end
    local items = answer.result and (answer.result.items or answer.result) or {}
    step(('attempt %d: answer with %d item(s)'):format(attempt, #items))
    if #items > 0 then
      item = items[1]
      break
    end
    vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'n', false)
    wait_until('normal mode', 5000, function()
      return vim.api.nvim_get_mode().mode == 'n'
    end)
  end
  if not item then
    error(('the server answered with no suggestion %d times'):format(attempts), 0)
  end
  report.attempts = #answers
  report.suggestion = type(item.insertText) == 'string' and item.insertText or item.insertText.value
  report.range = item.range

  report.shown = wait_until('the suggestion to be drawn', 5000, function()
    return shown_text(bufnr)
  end)
  step('shown')

  -- Accept through the plugin's own insert-mode mapping, as a user would.
  vim.api.nvim_feedkeys(vim.keycode(apprentice.options.keys.accept), 'm', false)
  wait_until('the suggestion to be inserted', 5000, function()
    return not vim.deep_equal(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), report.original)
  end)
  local cursor = vim.api.nvim_win_get_cursor(0)
  report.cursor_after = { cursor[1] - 1, cursor[2] }
  report.mode_after = vim.api.nvim_get_mode().mode
  report.lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
  report.shown_after = shown_text(bufnr)
  step('accepted')

  vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'n', false)
  wait_until('normal mode', 5000, function()
    return vim.api.nvim_get_mode().mode == 'n'
  end)
end

report.started_ms = vim.uv.hrtime() / 1e6
local watchdog = assert(vim.uv.new_timer())
watchdog:start(
  tonumber(env.APPRENTICE_TIMEOUT_MS or '150000'),
  0,
  vim.schedule_wrap(function()
    finish('the whole run took longer than APPRENTICE_TIMEOUT_MS')
  end)
)

local co = coroutine.create(function()
  local ok, err = xpcall(main, function(message)
    -- Plain messages (level 0) are expected failures; anything else gets a traceback.
    return type(message) == 'string' and message:find('^[^\n]*:%d+:') and debug.traceback(message)
      or message
  end)
  finish(not ok and err or nil)
end)
-- Start once Neovim has reached its main loop, so typed keys are processed.
vim.schedule(function()
  resume(co)
end)
