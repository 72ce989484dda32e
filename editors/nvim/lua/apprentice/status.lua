--- What the statusline shows: the model, indexing progress and the last latency, kept fresh
--- from the server's `apprentice.status` (polled: often while the model loads or the
--- workspace is indexed, rarely after) and from its `$/progress` reports.
local M = {}

--- Per client id: { status = apprentice.status answer?, progress = { title, percentage }?,
--- timer = uv timer }.
M.clients = {}

local BUSY_MS = 1000
local IDLE_MS = 10000

--- Whether the server is still getting ready (model loading, index being built).
---@param status table?
---@return boolean
function M.is_busy(status)
  if not status then
    return true
  end
  local model = status.model and status.model.state
  local index = status.index and status.index.state
  return model == 'idle'
    or model == 'loading'
    or index == 'waiting'
    or index == 'indexing'
    or index == 'embedding'
end

--- The model as the statusline names it: a checkpoint's name and version, else the model's
--- name, else the remote server.
---@param status table?
---@return string
function M.model_label(status)
  local model = status and status.model or {}
  local checkpoint = type(model.checkpoint) == 'table' and model.checkpoint or nil
  if checkpoint and type(checkpoint.name) == 'string' and checkpoint.name ~= '' then
    local version = type(checkpoint.version) == 'string' and (' ' .. checkpoint.version) or ''
    return checkpoint.name .. version
  end
  if type(model.name) == 'string' and model.name ~= '' then
    return model.name
  end
  local backend = status and status.backend
  if type(backend) == 'string' and backend:match('^remote ') then
    return backend:sub(#'remote ' + 1)
  end
  return 'model'
end

--- The statusline text for one client's state.
---@param entry table? `M.clients[id]`
---@param enabled boolean whether suggestions are on
---@return string
function M.text(entry, enabled)
  if not enabled then
    return 'Apprentice: off'
  end
  local status = entry and entry.status
  local model = status and status.model or {}
  if model.state == 'error' then
    return 'Apprentice: model error'
  end
  local parts = { model.state == 'ready' and M.model_label(status) or 'loading model' }
  local progress = entry and entry.progress
  local index = status and status.index and status.index.state
  if progress then
    local percentage = progress.percentage and (' ' .. progress.percentage .. '%') or ''
    table.insert(parts, 'indexing' .. percentage)
  elseif index == 'waiting' or index == 'indexing' or index == 'embedding' then
    table.insert(parts, index == 'embedding' and 'embedding' or 'indexing')
  elseif index == 'error' then
    table.insert(parts, 'index error')
  end
  local latency = status and type(status.latency) == 'table' and status.latency.last_ms
  if model.state == 'ready' and type(latency) == 'number' then
    table.insert(parts, ('%d ms'):format(math.floor(latency + 0.5)))
  end
  return 'Apprentice: ' .. table.concat(parts, ' · ')
end

--- Asks the server for its status; redraws the statusline when the answer comes.
---@param client vim.lsp.Client
---@param request fun(client: vim.lsp.Client, method: string, params: table, handler: function)
---@param on_done? fun()
function M.refresh(client, request, on_done)
  local entry = M.clients[client.id]
  if not entry then
    return
  end
  request(client, 'workspace/executeCommand', { command = 'apprentice.status', arguments = {} }, function(err, result)
    if not err and type(result) == 'table' then
      entry.status = result
      vim.cmd.redrawstatus({ bang = true })
    end
    if on_done then
      on_done()
    end
  end)
end

--- Starts polling one client's status (once per client); stops when the client stops.
---@param client vim.lsp.Client
---@param request fun(client: vim.lsp.Client, method: string, params: table, handler: function)
function M.watch(client, request)
  if M.clients[client.id] then
    return
  end
  local entry = { timer = assert(vim.uv.new_timer()) }
  M.clients[client.id] = entry
  local function tick()
    -- A method on 0.11+, a plain function on 0.10 (which ignores the extra argument).
    if client:is_stopped() then
      M.forget(client.id)
      return
    end
    M.refresh(client, request, function()
      if M.clients[client.id] then
        entry.timer:start(M.is_busy(entry.status) and BUSY_MS or IDLE_MS, 0, vim.schedule_wrap(tick))
      end
    end)
  end
  entry.timer:start(0, 0, vim.schedule_wrap(tick))
end

--- Drops a client's state and stops its timer.
---@param client_id integer
function M.forget(client_id)
  local entry = M.clients[client_id]
  if entry then
    entry.timer:stop()
    entry.timer:close()
    M.clients[client_id] = nil
  end
end

--- Records a `$/progress` report (the LspProgress event's data).
---@param client_id integer
---@param value table the progress value: kind, title, percentage
function M.progress(client_id, value)
  local entry = M.clients[client_id]
  if not entry or type(value) ~= 'table' then
    return
  end
  if value.kind == 'end' then
    entry.progress = nil
  else
    entry.progress = {
      title = value.title or (entry.progress and entry.progress.title),
      percentage = value.percentage,
    }
  end
  vim.cmd.redrawstatus({ bang = true })
end

return M
