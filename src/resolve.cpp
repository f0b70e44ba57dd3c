// Name resolution through the system resolver (so /etc/hosts is honoured),
// run by Boost.Asio off the loop thread.
#include "loop.hpp"
#include "resolve.hpp"

#include <algorithm>
#include <cstring>

namespace luaasio {

resolve_request::resolve_request(loop &l)
    : object(resolve_kind), owner(l), resolver(l.ctx) {}

void resolve_request::close_all() noexcept { resolver.cancel(); }

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_resolve(luaasio_loop *l, int32_t slot, const char *host,
                                       int family) {
  if (!l || !host || slot < 0)
    return LUAASIO_EINVAL;
  if (family != LUAASIO_FAMILY_ANY && family != LUAASIO_FAMILY_INET &&
      family != LUAASIO_FAMILY_INET6)
    return LUAASIO_EINVAL;
  if (*host == '\0')
    return LUAASIO_ENOTRESOLVED;
  LUAASIO_TRY
  auto r = std::make_shared<resolve_request>(*l);
  r->slot = slot;
  int32_t h = l->add(r);
  if (h < 0)
    return h;
  auto done = [r, family](const error_code &ec,
                          const asio::ip::tcp::resolver::results_type &results) {
    if (!r->open)
      return;
    if (ec) {
      int code = map_error(ec);
      r->owner.push(r->slot, code == LUAASIO_ECLOSED ? code : LUAASIO_ENOTRESOLVED, r.get());
      return;
    }
    for (const auto &entry : results) {
      auto addr = entry.endpoint().address();
      if ((family == LUAASIO_FAMILY_INET && !addr.is_v4()) ||
          (family == LUAASIO_FAMILY_INET6 && !addr.is_v6()))
        continue;
      std::string text = addr.to_string();
      if (std::find(r->addresses.begin(), r->addresses.end(), text) == r->addresses.end())
        r->addresses.push_back(std::move(text));
    }
    int n = static_cast<int>(r->addresses.size());
    r->owner.push(r->slot, n > 0 ? n : LUAASIO_ENOTRESOLVED, r.get());
  };
  // No AI_ADDRCONFIG: a host without IPv6 routes must still resolve
  // "localhost" to ::1 when asked for IPv6.
  auto flags = asio::ip::resolver_base::flags();
  if (family == LUAASIO_FAMILY_INET)
    r->resolver.async_resolve(asio::ip::tcp::v4(), host, "", flags, done);
  else if (family == LUAASIO_FAMILY_INET6)
    r->resolver.async_resolve(asio::ip::tcp::v6(), host, "", flags, done);
  else
    r->resolver.async_resolve(host, "", flags, done);
  return h;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_resolve_results(luaasio_loop *l, int32_t h, char *buf, int cap) {
  if (!l || !buf || cap < 0)
    return LUAASIO_EINVAL;
  resolve_request *r = l->get<resolve_request>(h);
  if (!r)
    return LUAASIO_EBADF;
  int used = 0;
  for (const auto &a : r->addresses) {
    if (used + int(a.size()) + 1 > cap)
      break;
    std::memcpy(buf + used, a.c_str(), a.size() + 1);
    used += int(a.size()) + 1;
  }
  return used;
}
