// Waiting for a connection to become readable without an epoll_ctl per
// wait (see docs/ARCHITECTURE.md, "The poll protocol").
//
// Boost.Asio's async_wait re-registers the descriptor with epoll on every
// wait, while its own read operations are queued on the edge-triggered
// registration for free. On epoll, a read wait armed right after a read
// returned EAGAIN is therefore queued as a reactor operation of our own,
// read_wait_op, through the reactor's start_op().
//
// That is correct only while these invariants hold; each is a property of
// this library or of the reactor interface checked below:
//  1. The reactor keeps speculative reads on for these sockets: start_op()
//     calls perform() once when queueing. Nothing on a connection's socket
//     ever reports a read as exhausted to the reactor, which would turn
//     speculation off. read_wait_op answers that first call with not_done.
//  2. Nothing else is queued on the socket's read queue: the library never
//     starts Boost read operations on connections, and at most one read
//     wait per connection is in flight (conn::waiting).
//  3. No readiness event was consumed between the read that found the
//     socket empty and the queueing: only luaasio_poll runs the reactor
//     (only it calls epoll_wait), and the wait is queued only when the
//     EAGAIN happened since the current poll began (conn::eagain_at ==
//     loop::runs; luaasio_poll finishes all ready work before it returns,
//     so no handler runs in between either), or in the same call as a TCP
//     read that came back short while the last readiness report for the
//     socket carried no EPOLLRDHUP, EPOLLERR, EPOLLHUP or EPOLLPRI: such a
//     read emptied the socket, and nothing that arrived before that report
//     is left unread (after_short_read in conn.cpp).
//  4. The reactor interface is the one of Boost 1.74 to 1.81 with epoll:
//     start_op(int op_type, socket_type, per_descriptor_data &, reactor_op
//     *, bool is_continuation, bool allow_speculative). From 1.82 it takes
//     different arguments; io_uring builds (1.78 on, where it may be the
//     default reactor) have no per-descriptor epoll data. Both use the
//     portable path, as does any build with LUAASIO_PORTABLE_WAIT defined
//     (CMake option of the same name, which CI runs the suite with).
// Everything else uses async_wait, which re-checks readiness itself.
#pragma once

#include "object.hpp"

#include <type_traits>

#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IOCP) &&                     \
    !defined(BOOST_ASIO_DISABLE_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING) &&              \
    !defined(LUAASIO_PORTABLE_WAIT) && BOOST_VERSION >= 107400 && BOOST_VERSION < 108200
#define LUAASIO_DIRECT_READ_WAIT 1
#else
#define LUAASIO_DIRECT_READ_WAIT 0
#endif

namespace luaasio {

// A connection's socket, with access to its reactor registration. It is
// bound to the io_context's own executor rather than the type-erased
// any_io_executor of stream::socket, which takes 32 more bytes in every
// connection (see docs/ARCHITECTURE.md, "Memory per idle connection").
class conn_socket : public asio::basic_stream_socket<stream, asio::io_context::executor_type> {
public:
  using base = asio::basic_stream_socket<stream, asio::io_context::executor_type>;
  using base::base;
#if LUAASIO_DIRECT_READ_WAIT
  asio::detail::reactor::per_descriptor_data &reactor_data() {
    return impl_.get_implementation().reactor_data_;
  }
#endif
};

struct conn;

#if LUAASIO_DIRECT_READ_WAIT
// Invariant 4: the reactor is the epoll one, with the start_op() signature
// this code calls. Anything else must not compile into the direct path.
static_assert(std::is_same<asio::detail::reactor, asio::detail::epoll_reactor>::value,
              "the direct read wait needs Boost.Asio's epoll reactor");
static_assert(std::is_same<decltype(&asio::detail::epoll_reactor::start_op),
                           void (asio::detail::epoll_reactor::*)(
                               int, asio::detail::socket_type,
                               asio::detail::epoll_reactor::per_descriptor_data &,
                               asio::detail::reactor_op *, bool, bool)>::value,
              "epoll_reactor::start_op changed: build with LUAASIO_PORTABLE_WAIT");

// Completes at the first readiness event after it was queued (invariant 3).
// The reactor calls perform() once at once when queueing (invariant 1) and
// again on every readiness event; the caller has just seen EAGAIN, so the
// first call only lets the operation be queued.
struct read_wait_op : asio::detail::reactor_op {
  read_wait_op();
  static status perform(asio::detail::reactor_op *base);
  static void complete(void *owner, asio::detail::operation *base, const error_code &,
                       std::size_t);
  std::shared_ptr<conn> holder; // keeps the connection alive while queued
  bool armed = false;
};
#endif

} // namespace luaasio
