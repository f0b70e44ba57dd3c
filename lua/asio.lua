-- LuaAsio: non-blocking network I/O for LuaJIT that reads like blocking code.
--
-- Light threads are coroutines. A blocking call first tries the operation
-- without waiting (one FFI call); only if the kernel has nothing for it does
-- the thread arm a readiness wait in C and yield. The scheduler in asio.run()
-- polls completion events from C in batches and resumes the threads they
-- name. C never calls into Lua.
--
-- This file is the public entry point; the modules under asio/ hold the
-- parts (see docs/ARCHITECTURE.md):
--   asio.lib      loading the library, ABI checks, error strings
--   asio.state    state the modules share: the loop, buffers, light threads
--   asio.check    argument checks
--   asio.timers   the timer heap
--   asio.sched    light threads and the run loop
--   asio.sync     conditions
--   asio.conn     connections
--   asio.connect  name resolution and connecting
--   asio.server   servers
--   asio.coroutine coroutines whose code may block (resume and wrap)
--   asio.transfer copying values between Lua states
--   asio.threads  worker threads, threaded servers, channels, shared dicts
--   asio.udp      datagram sockets
--   asio.pool     connection pools (setkeepalive)
--   asio.tls      TLS on connections (loads libluaasio_tls on first use)
--   asio.relay    forwarding two connections to each other (asio.relay)

local sched = require 'asio.sched'
local sync = require 'asio.sync'
local connect = require 'asio.connect'
local threads = require 'asio.threads'
local acoroutine = require 'asio.coroutine'
local server = require 'asio.server'
local udp = require 'asio.udp'
local pool = require 'asio.pool'
local tls = require 'asio.tls'
local relay = require 'asio.relay'

return {
  spawn_light_thread = sched.spawn_light_thread,
  run = sched.run,
  stop = sched.stop,
  sleep = sched.sleep,
  now = sched.now,
  join = sched.join,
  wait_any = sched.wait_any,
  kill = sched.kill,
  yield = sched.yield,
  coroutine = acoroutine,
  install_coroutine = acoroutine.install,
  cond = sync.cond,
  queue = sync.queue,
  semaphore = sync.semaphore,
  on_error = sched.on_error,
  server = threads.server,
  thread = threads.thread,
  channel = threads.channel,
  shared = threads.shared,
  connect = pool.connect,
  pool_flush = pool.flush,
  resolve = connect.resolve,
  addr_to_string = connect.addr_to_string,
  stats = sched.stats,
  udp = udp.udp,
  tls_available = tls.available,
  relay = relay.relay,
  _VERSION = 'LuaAsio 0.1.0',
}
