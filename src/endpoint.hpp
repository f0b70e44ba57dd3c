// Conversions between endpoints, text and raw socket addresses.
#pragma once

#include "loop.hpp"

namespace luaasio {

// Builds a generic endpoint for a Unix socket path, or returns an error code.
int unix_endpoint(const char *path, stream::endpoint &out);

// Writes an endpoint's address as text (a path for Unix sockets) into buf and
// its port into *port; returns the text length or an error code.
int endpoint_text(const stream::endpoint &ep, char *buf, int cap, int *port);

// True if both are IPv4/IPv6 addresses with the same address and port,
// treating an IPv4-mapped IPv6 address as the IPv4 address it maps.
bool same_address(const sockaddr *a, const sockaddr *b);

// Decodes a sockaddr string from any supported platform layout.
int parse_sockaddr(const unsigned char *data, int len, asio::ip::address &addr, int &port);

} // namespace luaasio
