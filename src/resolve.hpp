// Asynchronous name resolution: lookups run on a small pool of threads of
// their own (see resolve.cpp), never on the loop thread.
#pragma once

#include "object.hpp"

namespace luaasio {

struct resolve_request final : object,
                               std::enable_shared_from_this<resolve_request> {
  static constexpr kind_t static_kind = resolve_kind;
  explicit resolve_request(loop &l);
  // A lookup cannot be interrupted: its result is dropped when it arrives.
  void close_all() noexcept override {}

  loop &owner;
  std::vector<std::string> addresses;
  int32_t slot = -1;
};

} // namespace luaasio
