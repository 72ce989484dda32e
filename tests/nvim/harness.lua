-- A small harness for headless Neovim scenarios run with `nvim --headless --clean -S FILE`:
-- the steps run in a coroutine driven by timers (so insert mode and typed keys are processed
-- by the main loop), a JSON report is written to APPRENTICE_OUT, and every failure, and a
-- watchdog (APPRENTICE_TIMEOUT_MS), end Neovim with a non-zero status.
local H = { report = { ok = false, steps = {} } }

local finished = false
local started_ms = vim.uv.hrtime() / 1e6

--- The environment variable `name`; raises when it is not set.
function H.required(name)
  local value = vim.env[name]
  if not value or value == '' then
    error(name .. ' is not set', 0)
  end
  return value
end

--- Appends a timed line to the report's steps.
function H.step(text)
  table.insert(H.report.steps, ('%d ms: %s'):format(vim.uv.hrtime() / 1e6 - started_ms, text))
end

local function finish(err)
  if finished then
    return
  end
  finished = true
  H.report.ok = not err
  H.report.error = err and tostring(err) or nil
  local file = io.open(H.required('APPRENTICE_OUT'), 'w')
  if file then
    file:write(vim.json.encode(H.report))
    file:close()
  end
  if err then
    io.stderr:write('scenario failed: ' .. tostring(err) .. '\n')
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

--- Yields to the main loop for `ms`.
function H.sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    resume(co)
  end, ms)
  coroutine.yield()
end

--- Polls `condition` until it returns a truthy value, which is returned; raises on timeout.
function H.wait_until(what, timeout_ms, condition)
  local deadline = vim.uv.hrtime() / 1e6 + timeout_ms
  while true do
    local value = condition()
    if value then
      return value
    end
    if vim.uv.hrtime() / 1e6 > deadline then
      error(('timed out after %d ms waiting for %s'):format(timeout_ms, what), 0)
    end
    H.sleep(50)
  end
end

--- Runs `main` in a coroutine once Neovim has reached its main loop.
function H.run(main)
  local watchdog = assert(vim.uv.new_timer())
  watchdog:start(
    tonumber(vim.env.APPRENTICE_TIMEOUT_MS or '150000'),
    0,
    vim.schedule_wrap(function()
      finish('the whole run took longer than APPRENTICE_TIMEOUT_MS')
    end)
  )
  local co = coroutine.create(function()
    local ok, err = xpcall(main, function(message)
      return type(message) == 'string' and message:find('^[^\n]*:%d+:') and debug.traceback(message)
        or message
    end)
    finish(not ok and err or nil)
  end)
  vim.schedule(function()
    resume(co)
  end)
end

return H
