// Channels and shared dictionaries: process-wide objects that every thread
// and every Lua state can use. Values are byte strings (or numbers and
// booleans in dictionaries) copied in and out under a mutex held only for
// the copy, so no operation blocks a loop for long.
#include "threads.hpp"

#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <unordered_map>

namespace luaasio {

namespace {

struct waiter {
  std::shared_ptr<loop_link> link;
  int32_t slot;
};

// Wakes every waiter of one side: each retries its operation, and those that
// find nothing wait again. A waiter that timed out meanwhile ignores the
// event (its token no longer matches), so no wake-up is ever lost.
void wake_all(std::vector<waiter> &ws) {
  for (auto &w : ws)
    wake_loop(*w.link, w.slot);
  ws.clear();
}

struct channel {
  std::mutex m;
  std::deque<std::string> items;
  size_t capacity;
  bool closed = false;
  int refs = 1;
  std::vector<waiter> senders, receivers;
  explicit channel(size_t cap) : capacity(cap) {}
};

struct entry_t {
  int type;
  double num;
  std::string str;
  double expires; // steady seconds; 0: never
  std::list<std::string>::iterator lru;
};

struct shdict {
  std::mutex m;
  size_t max_bytes;
  size_t used = 0;
  std::unordered_map<std::string, entry_t> map;
  std::list<std::string> lru; // most recently used first
  explicit shdict(size_t mb) : max_bytes(mb) {}
};

// Registries are made on first use and never destroyed by exit(): a worker
// thread still running then must not find them gone. When the library is
// unloaded with no worker running (the last Lua state that loaded it was
// closed), their contents are released (release_registries below).
template <class T> struct registry {
  std::mutex m;
  std::unordered_map<int32_t, std::shared_ptr<T>> by_id;
  int32_t next = 0;
};

registry<channel> *channel_registry = nullptr;
registry<shdict> *dict_registry = nullptr;
std::unordered_map<std::string, int32_t> *dict_name_map = nullptr;
std::once_flag registries_made;

void make_registries() {
  std::call_once(registries_made, [] {
    channel_registry = new registry<channel>();
    dict_registry = new registry<shdict>();
    dict_name_map = new std::unordered_map<std::string, int32_t>();
  });
}

registry<channel> &channels() {
  make_registries();
  return *channel_registry;
}

registry<shdict> &dicts() {
  make_registries();
  return *dict_registry;
}

std::unordered_map<std::string, int32_t> &dict_names() {
  make_registries();
  return *dict_name_map;
}

template <class T> std::shared_ptr<T> find(registry<T> &r, int32_t id) {
  std::lock_guard<std::mutex> g(r.m);
  auto it = r.by_id.find(id);
  return it == r.by_id.end() ? nullptr : it->second;
}

template <class T> int32_t insert(registry<T> &r, std::shared_ptr<T> obj) {
  std::lock_guard<std::mutex> g(r.m);
  for (int tries = 0; tries < 1 << 20; ++tries) {
    r.next = r.next == 0x7fffffff ? 1 : r.next + 1;
    if (r.by_id.emplace(r.next, obj).second)
      return r.next;
  }
  return LUAASIO_EMFILE;
}

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// What an entry counts against max_bytes: its key, its string and a fixed
// share for the map node, the list node and the bookkeeping.
constexpr size_t entry_overhead = 96;
size_t cost(const std::string &key, const entry_t &e) {
  return key.size() + e.str.size() + entry_overhead;
}

void erase(shdict &d, std::unordered_map<std::string, entry_t>::iterator it) {
  d.used -= cost(it->first, it->second);
  d.lru.erase(it->second.lru);
  d.map.erase(it);
}

// Looks a key up, dropping it if it expired; marks it recently used.
entry_t *lookup(shdict &d, const std::string &key, double t) {
  auto it = d.map.find(key);
  if (it == d.map.end())
    return nullptr;
  if (it->second.expires > 0 && it->second.expires <= t) {
    erase(d, it);
    return nullptr;
  }
  d.lru.splice(d.lru.begin(), d.lru, it->second.lru);
  return &it->second;
}

// Frees room for `need` more bytes, least recently used first; returns the
// number of entries evicted, or -1 when even an empty dictionary is too small.
int make_room(shdict &d, size_t need, const std::string *keep) {
  if (need > d.max_bytes)
    return -1;
  int evicted = 0;
  while (d.used + need > d.max_bytes && !d.lru.empty()) {
    const std::string &victim = d.lru.back();
    if (keep && victim == *keep && d.lru.size() == 1)
      return -1;
    if (keep && victim == *keep) {
      d.lru.splice(d.lru.begin(), d.lru, std::prev(d.lru.end()));
      continue;
    }
    erase(d, d.map.find(victim));
    ++evicted;
  }
  return d.used + need > d.max_bytes ? -1 : evicted;
}

int store(shdict &d, const std::string &key, int type, const char *str, size_t slen,
          double num, double ttl, int mode) {
  double t = now();
  entry_t *e = lookup(d, key, t);
  if ((mode & LUAASIO_SHDICT_ADD) && e)
    return LUAASIO_EEXIST;
  if ((mode & LUAASIO_SHDICT_REPLACE) && !e)
    return LUAASIO_ENOENT;
  if (type == LUAASIO_SHDICT_NIL) {
    if (e)
      erase(d, d.map.find(key));
    return 0;
  }
  entry_t fresh{type, num, std::string(str ? str : "", str ? slen : 0),
                ttl > 0 ? t + ttl : 0, {}};
  size_t old = e ? cost(key, *e) : 0;
  size_t add = cost(key, fresh);
  int evicted = 0;
  if (add > old) {
    evicted = make_room(d, add - old, e ? &key : nullptr);
    if (evicted < 0)
      return LUAASIO_ENOSPACE;
    e = lookup(d, key, t); // eviction never removes `key`, but re-find it
  }
  if (e) {
    d.used = d.used - old + add;
    fresh.lru = e->lru;
    *e = std::move(fresh);
  } else {
    d.lru.push_front(key);
    fresh.lru = d.lru.begin();
    try {
      d.map.emplace(key, std::move(fresh));
    } catch (...) {
      d.lru.pop_front();
      throw;
    }
    d.used += add;
  }
  return evicted;
}

#if defined(__GNUC__) && !defined(_WIN32)
__attribute__((destructor)) void release_registries() {
  if (running_workers.load() != 0 || !channel_registry)
    return;
  delete channel_registry;
  delete dict_registry;
  delete dict_name_map;
  channel_registry = nullptr;
  dict_registry = nullptr;
  dict_name_map = nullptr;
}
#endif

} // namespace

} // namespace luaasio

using namespace luaasio;

LUAASIO_EXPORT int32_t luaasio_channel_new(int capacity) {
  if (capacity <= 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  return insert(channels(), std::make_shared<channel>(size_t(capacity)));
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_retain(int32_t id) {
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(ch->m);
  ++ch->refs;
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_release(int32_t id) {
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  bool last;
  {
    std::lock_guard<std::mutex> g(ch->m);
    last = --ch->refs == 0;
    if (last) {
      // Nobody can reach it any more: wake whoever still waits, as close does.
      ch->closed = true;
      wake_all(ch->senders);
      wake_all(ch->receivers);
    }
  }
  if (last) {
    auto &r = channels();
    std::lock_guard<std::mutex> g(r.m);
    r.by_id.erase(id);
  }
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_send(luaasio_loop *l, int32_t id, const char *data, int len,
                                        int32_t slot) {
  if (!l || len < 0 || (!data && len > 0))
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(ch->m);
  if (ch->closed)
    return LUAASIO_ECLOSED;
  if (ch->items.size() >= ch->capacity) {
    if (slot < 0)
      return LUAASIO_EAGAIN;
    ch->senders.push_back({l->link, slot});
    return LUAASIO_EAGAIN;
  }
  ch->items.emplace_back(data ? data : "", size_t(len));
  wake_all(ch->receivers);
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_recv(luaasio_loop *l, int32_t id, int32_t slot, char *buf,
                                        int cap, int *needed) {
  if (!l || cap < 0 || (!buf && cap > 0))
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(ch->m);
  if (ch->items.empty()) {
    if (ch->closed)
      return LUAASIO_ECLOSED;
    if (slot >= 0)
      ch->receivers.push_back({l->link, slot});
    return LUAASIO_EAGAIN;
  }
  std::string &front = ch->items.front();
  if (front.size() > size_t(cap)) {
    if (needed)
      *needed = static_cast<int>(front.size());
    return LUAASIO_ETOOBIG;
  }
  int n = static_cast<int>(front.size());
  if (n > 0)
    std::memcpy(buf, front.data(), front.size());
  ch->items.pop_front();
  wake_all(ch->senders);
  return n;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_unwait(luaasio_loop *l, int32_t id, int32_t slot) {
  if (!l)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  constexpr int32_t thread_bits = 0x3fffff;
  std::lock_guard<std::mutex> g(ch->m);
  for (auto *ws : {&ch->senders, &ch->receivers}) {
    auto keep = ws->begin();
    for (auto it = ws->begin(); it != ws->end(); ++it)
      if (!(it->link == l->link && (it->slot & thread_bits) == (slot & thread_bits)))
        *keep++ = std::move(*it);
    ws->erase(keep, ws->end());
  }
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_close(int32_t id) {
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(ch->m);
  ch->closed = true;
  wake_all(ch->senders);
  wake_all(ch->receivers);
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_channel_count(int32_t id) {
  LUAASIO_TRY
  auto ch = find(channels(), id);
  if (!ch)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(ch->m);
  return static_cast<int>(ch->items.size());
  LUAASIO_CATCH
}

LUAASIO_EXPORT int32_t luaasio_shdict_open(const char *name, double max_bytes) {
  if (!name || !(max_bytes >= 1024) || max_bytes > 1e15)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto &r = dicts();
  std::lock_guard<std::mutex> g(r.m);
  auto &names = dict_names();
  auto it = names.find(name);
  if (it != names.end())
    return it->second;
  auto d = std::make_shared<shdict>(size_t(max_bytes));
  for (int tries = 0; tries < 1 << 20; ++tries) {
    r.next = r.next == 0x7fffffff ? 1 : r.next + 1;
    if (r.by_id.emplace(r.next, d).second) {
      try {
        names.emplace(name, r.next);
      } catch (...) {
        r.by_id.erase(r.next);
        throw;
      }
      return r.next;
    }
  }
  return LUAASIO_EMFILE;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_shdict_get(int32_t id, const char *key, int klen, char *buf, int cap,
                                      double *out) {
  if (!key || klen < 0 || cap < 0 || (!buf && cap > 0) || !out)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto d = find(dicts(), id);
  if (!d)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(d->m);
  double t = now();
  entry_t *e = lookup(*d, std::string(key, size_t(klen)), t);
  out[0] = LUAASIO_SHDICT_NIL;
  out[1] = 0;
  out[2] = 0;
  if (!e)
    return 0;
  out[0] = e->type;
  out[1] = e->num;
  out[2] = e->expires > 0 ? e->expires - t : 0;
  if (e->type != LUAASIO_SHDICT_STRING)
    return 0;
  if (e->str.size() > size_t(cap)) {
    out[1] = double(e->str.size());
    return LUAASIO_ETOOBIG;
  }
  if (!e->str.empty())
    std::memcpy(buf, e->str.data(), e->str.size());
  return static_cast<int>(e->str.size());
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_shdict_set(int32_t id, const char *key, int klen, int how,
                                      const char *str, int slen, double num, double ttl) {
  int type = how & 15, mode = how & ~15;
  if (!key || klen < 0 || slen < 0 || type > LUAASIO_SHDICT_STRING || ttl != ttl)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto d = find(dicts(), id);
  if (!d)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(d->m);
  return store(*d, std::string(key, size_t(klen)), type, str, size_t(slen), num, ttl, mode);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_shdict_incr(int32_t id, const char *key, int klen, double delta,
                                       double init, int has_init, double ttl, double *out) {
  if (!key || klen < 0 || !out || delta != delta)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto d = find(dicts(), id);
  if (!d)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(d->m);
  std::string k(key, size_t(klen));
  entry_t *e = lookup(*d, k, now());
  if (!e) {
    if (!has_init)
      return LUAASIO_ENOENT;
    int rc = store(*d, k, LUAASIO_SHDICT_NUMBER, nullptr, 0, init + delta, ttl, 0);
    if (rc < 0)
      return rc;
    *out = init + delta;
    return rc;
  }
  if (e->type != LUAASIO_SHDICT_NUMBER)
    return LUAASIO_ENOTNUM;
  e->num += delta;
  *out = e->num;
  return 0;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_shdict_keys(int32_t id, char *buf, int cap, int max, int *needed) {
  if (cap < 0 || (!buf && cap > 0) || max < 0)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto d = find(dicts(), id);
  if (!d)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(d->m);
  double t = now();
  size_t total = 0;
  int count = 0;
  // Most recently used first, skipping entries that expired.
  for (const std::string &k : d->lru) {
    const entry_t &e = d->map.find(k)->second;
    if (e.expires > 0 && e.expires <= t)
      continue;
    if (max > 0 && count == max)
      break;
    total += k.size() + 1;
    ++count;
  }
  if (total > size_t(cap)) {
    if (needed)
      *needed = static_cast<int>(total);
    return LUAASIO_ETOOBIG;
  }
  size_t off = 0;
  count = 0;
  for (const std::string &k : d->lru) {
    const entry_t &e = d->map.find(k)->second;
    if (e.expires > 0 && e.expires <= t)
      continue;
    if (max > 0 && count == max)
      break;
    std::memcpy(buf + off, k.data(), k.size());
    off += k.size();
    buf[off++] = '\0';
    ++count;
  }
  return static_cast<int>(off);
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_shdict_stats(int32_t id, double *out) {
  if (!out)
    return LUAASIO_EINVAL;
  LUAASIO_TRY
  auto d = find(dicts(), id);
  if (!d)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(d->m);
  out[0] = double(d->used);
  out[1] = double(d->max_bytes);
  out[2] = double(d->map.size());
  return LUAASIO_OK;
  LUAASIO_CATCH
}

LUAASIO_EXPORT int luaasio_shdict_flush(int32_t id) {
  LUAASIO_TRY
  auto d = find(dicts(), id);
  if (!d)
    return LUAASIO_EBADF;
  std::lock_guard<std::mutex> g(d->m);
  d->map.clear();
  d->lru.clear();
  d->used = 0;
  return LUAASIO_OK;
  LUAASIO_CATCH
}
