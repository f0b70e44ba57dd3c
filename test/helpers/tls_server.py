#!/usr/bin/env python3
"""A TLS line-echo server from Python's ssl module, a peer for test/tls.lua.

    tls_server.py CERT KEY [--ca CA] [--tls 1.2|1.3] [--alpn a,b]

Listens on 127.0.0.1 (port chosen by the kernel), prints "port N", then
answers each line "L" of each connection with "echo:L", one connection at a
time, until killed.
"""
import argparse
import socket
import ssl

ap = argparse.ArgumentParser()
ap.add_argument("cert")
ap.add_argument("key")
ap.add_argument("--ca")
ap.add_argument("--tls")
ap.add_argument("--alpn")
a = ap.parse_args()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(a.cert, a.key)
if a.ca:
    ctx.load_verify_locations(a.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
if a.tls == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
elif a.tls == "1.3":
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
if a.alpn:
    ctx.set_alpn_protocols(a.alpn.split(","))

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print("port", srv.getsockname()[1], flush=True)
while True:
    raw, _ = srv.accept()
    try:
        with ctx.wrap_socket(raw, server_side=True) as s:
            f = s.makefile("rwb")
            for line in f:
                f.write(b"echo:" + line)
                f.flush()
    except (ssl.SSLError, OSError):
        pass
