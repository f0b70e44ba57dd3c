-- The state every module of the scheduler shares: the loop, the buffers
-- that the FFI calls fill, and the light threads. Tables are shared by
-- reference; the scalars that change live in the table itself (S.current,
-- S.nio, ...), so every module sees one copy.

local ffi = require 'ffi'
local C = require('asio.lib').C

local S = {}

S.loop_alive = true
local loop = C.luaasio_loop_new()
if loop == nil then error('asio: cannot create the event loop', 0) end
ffi.gc(loop, function(l)
  -- Finalizers run in no particular order when the state closes; the
  -- connection finalizers check this flag before touching the loop.
  S.loop_alive = false
  C.luaasio_loop_free(l)
end)
S.loop = loop

S.MAX_EVENTS = 256
S.events = ffi.new('luaasio_event[?]', S.MAX_EVENTS)
S.BUFSIZE = 65536
S.rbuf = ffi.new('char[?]', S.BUFSIZE)   -- every read lands here first
S.ADDRSIZE = 256
S.abuf = ffi.new('char[?]', S.ADDRSIZE)  -- address text
S.iport = ffi.new('int[1]')
S.sabuf = ffi.new('char[?]', 128)        -- a sockaddr_storage

-- Light threads live in arrays indexed by a slot number rather than in one
-- table each: a parked connection then costs its coroutine and a few array
-- entries, which matters with thousands of idle connections on a router.
S.current = nil            -- slot of the running light thread
S.th_co = {}               -- slot -> coroutine
S.th_tok = {}              -- slot -> token waited for; when not waiting, -1 - the
                           -- 8-bit sequence of its last token (asio.sched)
S.th_io = {}               -- slot -> parked on an operation in C
S.th_hidx = {}             -- slot -> position in the timer heap
S.th_cv, S.th_cvi = {}, {} -- slot -> condition waited on, queue position
S.slot_of = {}             -- coroutine -> slot, while the thread lives
S.th_obj = {}              -- slot -> what its wait in C uses (a connection or a handle), for kill

-- The cooperative budget of the running light thread: operations that
-- complete without waiting count it down, and at zero the next one yields
-- to the scheduler first (see asio.sched, BUDGET).
S.budget = 0

-- Tokens: 22 bits of slot index, 8 bits of wait sequence; accept events
-- carry tokens with SERVER_BIT set.
S.SLOT_MASK = 0x3fffff
S.SLOT_SEQ_SHIFT = 22
S.SLOT_SEQ = 2 ^ S.SLOT_SEQ_SHIFT
S.SERVER_BIT = 0x40000000

S.nio = 0                  -- threads parked on an operation in C
S.nthreads = 0
S.heap, S.nheap = {}, 0    -- timer min-heap of slots (asio.timers)
S.heap_dl = {}             -- heap position -> deadline
S.servers = {}             -- token -> open server record (asio.server)
S.nservers = 0
S.on_accept = nil          -- set by asio.server: called with (record, handle)

-- Whether asio.relay may forward a connection natively, in C: false for one
-- whose bytes Lua must transform (TLS), which is then relayed by Lua.
S.conn_is_plain = function(c) return true end
S.relaying = {}            -- slot -> true while it runs a native relay (asio.relay)

return S
