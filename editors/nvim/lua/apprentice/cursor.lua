--- Tells the server where the cursor rests (`apprentice/cursor`), so it can warm the prompt
--- for that place before the next keystroke: at once when a buffer it serves is entered, and
--- once the cursor has rested `REST_MS` on another line. A server that does not handle the
--- notification ignores it (notifications get no answer, so nothing can fail here).
local M = {}

M.METHOD = 'apprentice/cursor'
--- How long the cursor must rest on another line before the server is told.
M.REST_MS = 300

local group = vim.api.nvim_create_augroup('apprentice.cursor', { clear = true })
--- The line the server was last told, per buffer (0-based).
local told = {}
local timer = nil

local function stop_timer()
  if timer then
    timer:stop()
    timer:close()
    timer = nil
  end
end

--- `client:notify` on 0.11+, `client.notify` (no self) on 0.10.
---@param client vim.lsp.Client
---@param params table
local function notify(client, params)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:notify(M.METHOD, params)
  end
  return client.notify(M.METHOD, params)
end

---@class apprentice.CursorSource
---@field client fun(bufnr: integer): vim.lsp.Client? the buffer's Apprentice client
---@field enabled fun(): boolean whether suggestions are on

--- Tells the server where the cursor is in `bufnr`, if that is the current window's buffer.
---@param bufnr integer
---@param source apprentice.CursorSource
function M.send(bufnr, source)
  stop_timer()
  local winid = vim.api.nvim_get_current_win()
  if vim.api.nvim_win_get_buf(winid) ~= bufnr or not source.enabled() then
    return
  end
  local client = source.client(bufnr)
  if not client then
    return
  end
  -- 0-based line, character in the position encoding the client and server agreed on.
  local params = vim.lsp.util.make_position_params(winid, client.offset_encoding)
  told[bufnr] = params.position.line
  notify(client, { textDocument = params.textDocument, position = params.position })
end

--- The cursor moved in `bufnr`: tell the server once it rests on a line it was not told.
---@param bufnr integer
---@param source apprentice.CursorSource
local function moved(bufnr, source)
  local line = vim.api.nvim_win_get_cursor(0)[1] - 1
  stop_timer()
  if told[bufnr] == line then
    return
  end
  timer = assert(vim.uv.new_timer())
  timer:start(
    M.REST_MS,
    0,
    vim.schedule_wrap(function()
      if vim.api.nvim_buf_is_valid(bufnr) then
        M.send(bufnr, source)
      end
    end)
  )
end

--- Follows the cursor in a buffer the Apprentice client attached to; tells the server at once
--- when the buffer is the current one.
---@param bufnr integer
---@param source apprentice.CursorSource
function M.attach(bufnr, source)
  vim.api.nvim_clear_autocmds({ group = group, buffer = bufnr })
  vim.api.nvim_create_autocmd({ 'BufEnter', 'WinEnter' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.send(bufnr, source)
    end,
  })
  vim.api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      moved(bufnr, source)
    end,
  })
  M.send(bufnr, source)
end

--- Stops following a buffer (the client detached).
---@param bufnr integer
function M.detach(bufnr)
  told[bufnr] = nil
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_clear_autocmds({ group = group, buffer = bufnr })
  end
end

return M
