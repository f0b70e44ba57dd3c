// Stable error codes and strings. System messages are never passed through:
// they differ between platforms and are localised on Windows.
#include "loop.hpp"

namespace luaasio {

int map_error(const error_code &ec) noexcept {
  namespace e = asio::error;
  using boost::system::errc::errc_t;
  namespace errc = boost::system::errc;
  if (!ec)
    return LUAASIO_OK;
  if (ec == e::would_block || ec == e::try_again)
    return LUAASIO_EAGAIN;
  if (ec == e::eof)
    return LUAASIO_EOF;
  if (ec == e::operation_aborted || ec == e::bad_descriptor)
    return LUAASIO_ECLOSED;
  if (ec == e::connection_refused)
    return LUAASIO_ECONNREFUSED;
  if (ec == e::connection_reset || ec == e::network_reset)
    return LUAASIO_ECONNRESET;
  if (ec == e::connection_aborted)
    return LUAASIO_ECONNABORTED;
  if (ec == e::broken_pipe || ec == e::shut_down)
    return LUAASIO_EPIPE;
  if (ec == e::address_in_use)
    return LUAASIO_EADDRINUSE;
  if (ec == errc::address_not_available)
    return LUAASIO_EADDRNOTAVAIL;
  if (ec == e::access_denied || ec == e::no_permission)
    return LUAASIO_EACCES;
  if (ec == e::network_unreachable || ec == e::network_down)
    return LUAASIO_ENETUNREACH;
  if (ec == e::host_unreachable)
    return LUAASIO_EHOSTUNREACH;
  if (ec == e::timed_out)
    return LUAASIO_ETIMEDOUT;
  if (ec == e::host_not_found || ec == e::host_not_found_try_again ||
      ec == e::no_data || ec == e::no_recovery || ec == e::service_not_found)
    return LUAASIO_ENOTRESOLVED;
  if (ec == e::operation_not_supported || ec == e::address_family_not_supported ||
      ec == e::socket_type_not_supported || ec == e::no_protocol_option)
    return LUAASIO_ENOTSUP;
  if (ec == errc::no_such_file_or_directory)
    return LUAASIO_ENOENT;
  if (ec == e::no_descriptors || ec == errc::too_many_files_open_in_system)
    return LUAASIO_EMFILE;
  if (ec == e::no_memory || ec == e::no_buffer_space)
    return LUAASIO_ENOMEM;
  if (ec == e::not_connected)
    return LUAASIO_ENOTCONN;
  if (ec == e::invalid_argument)
    return LUAASIO_EINVAL;
  if (ec == e::fault)
    return LUAASIO_EBADADDR;
  if (ec == e::message_size)
    return LUAASIO_EMSGSIZE;
  if (ec == errc::destination_address_required)
    return LUAASIO_ENOTCONN;
  return LUAASIO_ESYSTEM;
}

} // namespace luaasio

LUAASIO_EXPORT const char *luaasio_strerror(int code) {
  switch (code) {
  case LUAASIO_OK: return "ok";
  case LUAASIO_EAGAIN: return "would block";
  case LUAASIO_EOF: return "eof";
  case LUAASIO_ECLOSED: return "closed";
  case LUAASIO_EBADF: return "bad handle";
  case LUAASIO_EINVAL: return "invalid argument";
  case LUAASIO_ETIMEDOUT: return "timeout";
  case LUAASIO_ECONNREFUSED: return "connection refused";
  case LUAASIO_ECONNRESET: return "connection reset";
  case LUAASIO_ECONNABORTED: return "connection aborted";
  case LUAASIO_EPIPE: return "broken pipe";
  case LUAASIO_EADDRINUSE: return "address in use";
  case LUAASIO_EADDRNOTAVAIL: return "address not available";
  case LUAASIO_EACCES: return "permission denied";
  case LUAASIO_ENETUNREACH: return "network unreachable";
  case LUAASIO_EHOSTUNREACH: return "host unreachable";
  case LUAASIO_ENOTRESOLVED: return "name not resolved";
  case LUAASIO_EBADADDR: return "bad address";
  case LUAASIO_ENOTSUP: return "not supported";
  case LUAASIO_ENOENT: return "no such file";
  case LUAASIO_EMFILE: return "too many open files";
  case LUAASIO_ENOMEM: return "out of memory";
  case LUAASIO_ENOTCONN: return "not connected";
  case LUAASIO_ENOORIGDST: return "no original destination";
  case LUAASIO_ESYSTEM: return "system error";
  case LUAASIO_ETLS: return "tls handshake failed";
  case LUAASIO_ECERT: return "certificate verify failed";
  case LUAASIO_ENOTLS: return "tls not available";
  case LUAASIO_ETLSPROTO: return "tls error";
  case LUAASIO_ESTOPPED: return "stopped";
  case LUAASIO_ETOOBIG: return "too big";
  case LUAASIO_ENOLUA: return "no lua api";
  case LUAASIO_ENOSPACE: return "no memory";
  case LUAASIO_ENOTNUM: return "not a number";
  case LUAASIO_EEXIST: return "exists";
  case LUAASIO_ETRUNCATED: return "datagram truncated";
  case LUAASIO_ENOTBOUND: return "not bound";
  case LUAASIO_EMSGSIZE: return "datagram too large";
  default: return "unknown error";
  }
}
