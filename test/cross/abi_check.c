/*
 * A LuaJIT-free check of a cross-built libluaasio under qemu-user (see
 * test/cross.sh): it loads like any C consumer would, and the sockaddr
 * decoder is fed this machine's own layouts (from the kernel, through qemu's
 * translation) and the other byte order's. It is what runs on targets whose
 * LuaJIT cannot run under qemu (s390x, the big-endian one).
 *
 *   abi_check        prints "abi_check: ok (<byte order>)" or the failures
 */
#include "luaasio.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("abi_check: FAIL %s\n", what);
    failures++;
  }
}

/* Decodes `len` bytes and compares with the expected family, text and port. */
static void expect(const char *what, const unsigned char *sa, int len, int family,
                   const char *ip, int port) {
  char text[64] = "";
  int got_port = -1;
  int rc = luaasio_sockaddr_parse((const char *)sa, len, text, sizeof text, &got_port);
  if (rc != family || strcmp(text, ip) != 0 || got_port != port) {
    printf("abi_check: FAIL %s: got %d '%s' %d, want %d '%s' %d\n", what, rc, text,
           got_port, family, ip, port);
    failures++;
  }
}

int main(void) {
  union {
    uint16_t u16;
    unsigned char b[2];
  } probe = {0x0102};
  int big_endian = probe.b[0] == 0x01;

  check(luaasio_abi_version() == LUAASIO_ABI_VERSION, "abi version");
  check(luaasio_event_size() == (int)sizeof(luaasio_event), "event size");
  check(strcmp(luaasio_strerror(LUAASIO_ECONNREFUSED), "connection refused") == 0,
        "strerror");
  check(strstr(luaasio_cdef(), "luaasio_sockaddr_parse") != NULL, "cdef text");

  /* This machine's layouts, built with its own structures. */
  struct sockaddr_storage ss;
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  memset(&ss, 0, sizeof ss);
  in->sin_family = AF_INET;
  in->sin_port = htons(8080);
  inet_pton(AF_INET, "192.0.2.7", &in->sin_addr);
  expect("native sockaddr_in in sockaddr_storage", (unsigned char *)&ss,
         LUAASIO_SOCKADDR_SIZE, 4, "192.0.2.7", 8080);
  expect("native sockaddr_in", (unsigned char *)&ss, 16, 4, "192.0.2.7", 8080);

  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  memset(&ss, 0, sizeof ss);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(443);
  inet_pton(AF_INET6, "2001:db8::5", &in6->sin6_addr);
  expect("native sockaddr_in6 in sockaddr_storage", (unsigned char *)&ss,
         LUAASIO_SOCKADDR_SIZE, 6, "2001:db8::5", 443);
  expect("native sockaddr_in6", (unsigned char *)&ss, 28, 6, "2001:db8::5", 443);

  /* Both byte orders of the family field, as little- and big-endian Linux
   * machines produce them. */
  unsigned char le4[16] = {2, 0, 0x1f, 0x90, 10, 1, 2, 3};
  unsigned char be4[16] = {0, 2, 0x1f, 0x90, 10, 1, 2, 3};
  expect("little-endian AF_INET", le4, 16, 4, "10.1.2.3", 8080);
  expect("big-endian AF_INET", be4, 16, 4, "10.1.2.3", 8080);
  unsigned char le6[28] = {10, 0, 0, 80};
  unsigned char be6[28] = {0, 10, 0, 80};
  le6[8] = be6[8] = 0x20;
  le6[9] = be6[9] = 0x01;
  le6[10] = be6[10] = 0x0d;
  le6[11] = be6[11] = 0xb8;
  le6[23] = be6[23] = 9;
  expect("little-endian AF_INET6", le6, 28, 6, "2001:db8::9", 80);
  expect("big-endian AF_INET6", be6, 28, 6, "2001:db8::9", 80);

  /* A sockaddr the kernel filled in (qemu converts it to this machine's
   * layout), as get_original_dst would return it. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0, "socket");
  if (fd >= 0) {
    memset(&ss, 0, sizeof ss);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    check(bind(fd, (struct sockaddr *)&ss, sizeof *in) == 0, "bind");
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    check(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname");
    expect("kernel sockaddr_in", (unsigned char *)&ss, LUAASIO_SOCKADDR_SIZE, 4,
           "127.0.0.1", ntohs(in->sin_port));
    close(fd);
  }

  /* The loop comes up and goes down. */
  luaasio_loop *loop = luaasio_loop_new();
  check(loop != NULL, "loop_new");
  if (loop) {
    luaasio_event ev[4];
    check(luaasio_poll(loop, ev, 4, 0) == 0, "poll of an empty loop");
    int32_t srv = luaasio_server_open(loop, 1, "127.0.0.1", 0, 0, 0);
    check(srv > 0, "server_open");
    if (srv > 0) {
      check(luaasio_server_port(loop, srv) > 0, "server_port");
      check(luaasio_close(loop, srv) == LUAASIO_OK, "close");
    }
    check(luaasio_loop_count(loop) == 0, "no objects left");
    luaasio_loop_free(loop);
  }

  if (failures) {
    printf("abi_check: %d failure(s)\n", failures);
    return 1;
  }
  printf("abi_check: ok (%s-endian)\n", big_endian ? "big" : "little");
  return 0;
}
