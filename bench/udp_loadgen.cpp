// udp_loadgen - load for a UDP echo server on 127.0.0.1.
//
//   udp_loadgen --port P [--flows 50] [--size 64] [--seconds 5] [--warmup 1] [--pid PID]
//
// Each flow is a connected socket with one datagram in flight: it sends, and
// sends the next when the echo arrives (checked byte for byte). A datagram
// unanswered for 200 ms is counted lost and sent again, so a kernel drop
// stalls nothing. Prints one line:
//   RESULT mode=udp flows=.. size=.. seconds=.. dps=.. lost=.. server_drops=..
//          [server_cpu_s=.. cpu_us_per_dgram=..]
// dps counts echoes per second in the measured window; server_drops is the
// server socket's drop count in /proc/net/udp over the window; the CPU
// figures are the server process's utime + stime over the window.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string &msg) {
  std::cerr << "udp_loadgen: " << msg << std::endl;
  std::exit(1);
}

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double cpu_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) die("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// The drop count of the socket bound to 127.0.0.1:port, from /proc/net/udp.
long drops(int port) {
  std::ifstream f("/proc/net/udp");
  std::string line;
  char want[32];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  while (std::getline(f, line)) {
    if (line.find(want) == std::string::npos || line.find(want) > 20) continue;
    std::istringstream ss(line);
    std::string field, last;
    while (ss >> field) last = field;
    return std::stol(last);
  }
  return -1;
}

struct flow {
  int fd;
  double sent_at;
  unsigned seq;
};

} // namespace

int main(int argc, char **argv) {
  int port = 0, flows = 50, size = 64, pid = 0;
  double seconds = 5, warmup = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    const char *v = argv[i + 1];
    if (k == "--port") port = std::atoi(v);
    else if (k == "--flows") flows = std::atoi(v);
    else if (k == "--size") size = std::atoi(v);
    else if (k == "--seconds") seconds = std::atof(v);
    else if (k == "--warmup") warmup = std::atof(v);
    else if (k == "--pid") pid = std::atoi(v);
    else die("unknown option " + k);
  }
  if (port <= 0 || flows <= 0 || size < 8 || size > 65507) die("bad arguments");

  int ep = epoll_create1(0);
  std::vector<flow> fl(flows);
  std::vector<char> out(size), in(65536);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(uint16_t(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < flows; ++i) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&to), sizeof to) != 0) die("socket/connect");
    fl[i] = {fd, 0, 0};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = uint32_t(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  auto fill = [&](int i) {
    std::memset(out.data(), 'a' + i % 26, size_t(size));
    std::memcpy(out.data(), &fl[i].seq, sizeof fl[i].seq);
  };
  auto send_one = [&](int i) {
    fill(i);
    if (send(fl[i].fd, out.data(), size_t(size), 0) != size) { /* counted lost on timeout */ }
    fl[i].sent_at = now();
  };
  for (int i = 0; i < flows; ++i) send_one(i);

  double start = now(), t0 = start + warmup, t1 = t0 + seconds;
  bool measuring = false;
  long echoes = 0, lost = 0, drops0 = 0;
  double cpu0 = 0;
  double last_check = start;
  std::vector<epoll_event> evs(flows);
  while (true) {
    double t = now();
    if (!measuring && t >= t0) {
      measuring = true;
      echoes = lost = 0;
      drops0 = drops(port);
      if (pid) cpu0 = cpu_seconds(pid);
    }
    if (t >= t1) break;
    int n = epoll_wait(ep, evs.data(), flows, 10);
    for (int k = 0; k < n; ++k) {
      int i = int(evs[k].data.u32);
      while (true) {
        ssize_t got = recv(fl[i].fd, in.data(), in.size(), 0);
        if (got < 0) break;
        unsigned seq;
        std::memcpy(&seq, in.data(), sizeof seq);
        if (seq != fl[i].seq) continue; // an echo of a resent datagram
        fill(i);
        if (got != size || std::memcmp(in.data(), out.data(), size_t(size)) != 0) die("echo differs");
        ++echoes;
        ++fl[i].seq;
        send_one(i);
      }
    }
    if (t - last_check > 0.05) {
      last_check = t;
      for (int i = 0; i < flows; ++i)
        if (t - fl[i].sent_at > 0.2) {
          ++lost;
          ++fl[i].seq;
          send_one(i);
        }
    }
  }
  double elapsed = now() - t0;
  long server_drops = drops(port) - drops0;
  std::cout << "RESULT mode=udp flows=" << flows << " size=" << size << " seconds=" << elapsed
            << " dps=" << echoes / elapsed << " lost=" << lost << " server_drops=" << server_drops;
  if (pid) {
    double cpu = cpu_seconds(pid) - cpu0;
    std::cout << " server_cpu_s=" << cpu << " cpu_us_per_dgram=" << (echoes ? cpu * 1e6 / double(echoes) : 0);
  }
  std::cout << std::endl;
}
