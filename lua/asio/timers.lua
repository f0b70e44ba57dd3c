-- The timer heap: light thread slots ordered by deadline. A thread waits for
-- one thing at a time, so its slot doubles as its heap entry and a timeout
-- allocates nothing. The nearest deadline is the poll timeout. Deadlines
-- are kept by heap position (S.heap_dl), not by slot, so a thread that
-- waits without a timeout (an idle connection) costs the heap nothing.

local S = require 'asio.state'

local floor = math.floor
local heap, heap_dl, th_hidx = S.heap, S.heap_dl, S.th_hidx

local function heap_up(i)
  local s, d = heap[i], heap_dl[i]
  while i > 1 do
    local p = floor(i / 2)
    local pd = heap_dl[p]
    if pd <= d then break end
    local ps = heap[p]
    heap[i], heap_dl[i] = ps, pd; th_hidx[ps] = i
    i = p
  end
  heap[i], heap_dl[i] = s, d; th_hidx[s] = i
end

local function heap_down(i)
  local s, d = heap[i], heap_dl[i]
  local n = S.nheap
  while true do
    local c = i * 2
    if c > n then break end
    if c < n and heap_dl[c + 1] < heap_dl[c] then c = c + 1 end
    local cd = heap_dl[c]
    if cd >= d then break end
    local cs = heap[c]
    heap[i], heap_dl[i] = cs, cd; th_hidx[cs] = i
    i = c
  end
  heap[i], heap_dl[i] = s, d; th_hidx[s] = i
end

local M = {}

function M.push(s, deadline)
  local n = S.nheap + 1
  S.nheap = n
  heap[n], heap_dl[n] = s, deadline
  heap_up(n)
end

function M.remove(s)
  local i = th_hidx[s]
  th_hidx[s] = false
  local n = S.nheap
  local last, lastd = heap[n], heap_dl[n]
  heap[n], heap_dl[n] = nil, nil
  n = n - 1
  S.nheap = n
  if i <= n then
    heap[i], heap_dl[i] = last, lastd; th_hidx[last] = i
    heap_down(i)
    heap_up(th_hidx[last])
  end
end

return M
