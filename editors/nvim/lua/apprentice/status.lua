--- What the statusline shows: the model, indexing progress and the last latency, from the
--- server's `apprentice/status` notifications. The server sends one whenever its state
--- changes (the model loads, is ready or fails, the index makes progress, a suggestion is
--- shown), so nothing is polled; `:Apprentice status` asks for the detailed `apprentice.status`.
local M = {}

--- The notification's method (lsp/server/status_push.py).
M.METHOD = 'apprentice/status'

--- Per client id: { status = the last `apprentice/status` params }. The params (every key is
--- always sent; JSON null arrives as nil):
---   state          'loading'|'indexing'|'warming'|'ready'|'error'|'off'
---   message        one line for people
---   percentage     the index build's progress (0-100) while it runs
---   model          the serving model's name (a checkpoint's name and version), once loaded
---   index          { state = 'off'|'waiting'|'indexing'|'embedding'|'ready'|'error', files }
---   warming        the file whose prompt the model is warming
---   lastLatencyMs  server-side time of the last suggestion shown
M.clients = {}

--- Records one `apprentice/status` notification and redraws the statusline.
---@param client_id integer
---@param params table?
function M.update(client_id, params)
  if type(params) ~= 'table' then
    return
  end
  M.clients[client_id] = { status = params }
  vim.cmd.redrawstatus({ bang = true })
end

--- The `apprentice/status` handler (`vim.lsp.start`'s `handlers`).
---@param ctx lsp.HandlerContext
function M.handler(_, params, ctx)
  M.update(ctx.client_id, params)
end

--- Drops a client's state (it exited).
---@param client_id integer
function M.forget(client_id)
  M.clients[client_id] = nil
end

--- The index part of the statusline: 'indexing 40%', 'embedding', 'index error', or nil.
---@param status table
---@return string?
local function index_part(status)
  local index = type(status.index) == 'table' and status.index.state or nil
  local percentage = type(status.percentage) == 'number' and (' ' .. status.percentage .. '%') or ''
  if index == 'waiting' or index == 'indexing' then
    return 'indexing' .. percentage
  elseif index == 'embedding' then
    return 'embedding' .. percentage
  elseif index == 'error' then
    return 'index error'
  end
  return nil
end

--- The statusline text for one client's state. Warming is left out: it comes and goes with
--- every buffer entered and every line the cursor rests on (it is in `M.clients[id].status`).
---@param entry table? `M.clients[id]`
---@param enabled boolean whether suggestions are on
---@return string
function M.text(entry, enabled)
  if not enabled then
    return 'Apprentice: off'
  end
  local status = entry and entry.status
  if not status or status.state == 'off' then
    return 'Apprentice: starting'
  end
  if status.state == 'error' then
    return 'Apprentice: model error'
  end
  local model = type(status.model) == 'string' and status.model ~= '' and status.model or nil
  local parts = { model or 'loading model' }
  local index = index_part(status)
  if index then
    table.insert(parts, index)
  end
  local latency = status.lastLatencyMs
  if model and type(latency) == 'number' then
    table.insert(parts, ('%d ms'):format(math.floor(latency + 0.5)))
  end
  return 'Apprentice: ' .. table.concat(parts, ' · ')
end

return M
