// Asynchronous name resolution requests.
#pragma once

#include "object.hpp"

namespace luaasio {

struct resolve_request final : object,
                               std::enable_shared_from_this<resolve_request> {
  static constexpr kind_t static_kind = resolve_kind;
  explicit resolve_request(loop &l);
  void close_all() noexcept override;

  loop &owner;
  asio::ip::tcp::resolver resolver;
  std::vector<std::string> addresses;
  int32_t slot = -1;
};

} // namespace luaasio
