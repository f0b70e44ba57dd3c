#!/usr/bin/env python3
"""Writes the hand-made seed corpus of the fuzz targets into fuzz/corpus/.

The seeds are committed; rerun this only to change them. Each file is named
after what it holds. Inputs the fuzzers found later (minimised reproducers)
live next to them as repro-*.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


# --- fuzz_sockaddr: raw sockaddr strings -----------------------------------

def pad(b, n=128):
    return b + b'\0' * (n - len(b))


def u16le(n): return struct.pack('<H', n)
def u16be(n): return struct.pack('>H', n)
def u32le(n): return struct.pack('<I', n)
def u32be(n): return struct.pack('>I', n)


V4 = bytes([192, 0, 2, 17])
V6 = bytes.fromhex('20010db8000000000000000000000042')
LL = bytes.fromhex('fe800000000000000000000000000001')
MAPPED = bytes(10) + b'\xff\xff' + V4


def v4(fam, port, n=128):
    return pad(fam + u16be(port) + V4, n)


def v6(fam, port, n=128, addr=V6, scope=b''):
    return pad(fam + u16be(port) + bytes(4) + addr + scope, n)


sa = {
    'linux-le-v4': v4(u16le(2), 80),
    'linux-be-v4': v4(u16be(2), 8080),
    'linux-le-v6': v6(u16le(10), 443),
    'linux-be-v6': v6(u16be(10), 443),
    'windows-v4': v4(u16le(2), 3389),
    'windows-v6': v6(u16le(23), 53),
    'freebsd-v4': v4(bytes([16, 2]), 25),
    'freebsd-v6': v6(bytes([28, 28]), 25),
    'openbsd-v6': v6(bytes([28, 24]), 22),
    'macos-v6': v6(bytes([28, 30]), 993),
    'bare-sockaddr_in-16': v4(u16le(2), 1, 16),
    'bare-sockaddr_in6-28': v6(u16le(10), 65535, 28),
    'v4-mapped-v6': v6(u16le(10), 80, addr=MAPPED),
    'link-local-le-scope1': v6(u16le(10), 80, addr=LL, scope=u32le(1)),
    'link-local-be-scope1': v6(u16be(10), 80, addr=LL, scope=u32be(1)),
    'link-local-scope-huge': v6(u16le(10), 80, addr=LL, scope=u32le(0xfffffff0)),
    'link-local-bsd-scope2': v6(bytes([28, 28]), 80, addr=LL, scope=u32le(2)),
    'bad-empty': b'',
    'bad-len127': v4(u16le(2), 80, 127),
    'bad-len129': v4(u16le(2), 80, 129),
    'bad-family0': v4(u16le(0), 80),
    'bad-family-unix': v4(u16le(1), 80),
    'bad-family99': v4(u16le(99), 80),
    'bad-port0-v4': v4(u16le(2), 0),
    'bad-port0-v6': v6(u16le(10), 0),
    'bad-v6-in-16': v6(u16le(10), 80, 28)[:16],
    'bad-all-ff': b'\xff' * 128,
}
for name, data in sa.items():
    put('fuzz_sockaddr', name, data)


# --- fuzz_address: opcode, fields, NUL-terminated string --------------------

def z(s):
    return s.encode('latin-1') + b'\0'


def server(host, port=80, portmode=0, backlog=0, flags=0, slotmode=0):
    return bytes([0, portmode]) + u16le(port) + bytes([backlog, flags, slotmode]) + z(host)


def connect(ipaddr, port=80, portmode=0):
    return bytes([1, portmode]) + u16le(port) + z(ipaddr)


def userver(name, backlog=0, connect_after=1):
    return bytes([2, backlog, connect_after]) + z(name)


def uconnect(name):
    return bytes([3]) + z(name)


def resolve(name, fam=0):
    return bytes([4, fam]) + z(name)


addr = {
    'server-v4-literals': server('127.0.0.1') + server('0.0.0.0', 0) + server('192.0.2.1', 443)
    + server('255.255.255.255', 1) + server('1.2.3.4x') + server('1.2.3.4', portmode=3, port=1),
    'server-v6-literals': server('::1') + server('::') + server('fe80::1%lo', 80)
    + server('fe80::1%4294967295') + server('::ffff:192.0.2.1') + server('2001:db8::1%eth0')
    + server('1:2:3:4:5:6:7:8:9'),
    'server-flags-backlog': server('127.0.0.1', 0, 0, 2, 1) + server('::1', 0, 0, 3, 2)
    + server('::1', 0, 0, 6, 7) + server('127.0.0.1', 0, 0, 7, 0x81, 0x1f),
    # odd-length hosts also connect to the server and check both ends
    'server-connect-pair': server('127.0.0.1', 1, 0, 4) + server('::1', 1, 0, 4)
    + server('0.0.0.0', 1, 0, 1, 1),
    'connect-literals': connect('127.0.0.1') + connect('10.0.0.1', 22) + connect('::1', 65535)
    + connect('2001:db8::5', 1) + connect('fe80::2%1', 80) + connect('localhost')
    + connect('127.0.0.1', 0, 3) + connect('1.1.1.1', 0),
    'connect-malformed': connect('') + connect('1.2.3') + connect('::g') + connect('[::1]')
    + connect('127.0.0.1:80') + connect(' 1.2.3.4') + connect('1.2.3.4 ') + connect('0x7f.1')
    + connect('%' * 40) + connect('fe80::' + '%' + 'a' * 300),
    'unix-paths': userver('sock') + userver('a/b') + userver('..') + userver('x' * 90)
    + userver('y' * 91) + userver('z' * 92) + userver('') + userver('w' * 120) + uconnect('nothere')
    + uconnect('') + uconnect('v' * 107) + uconnect('u' * 200),
    'resolve-numeric': resolve('127.0.0.1') + resolve('::1', 2) + resolve('127.1', 1)
    + resolve('0x7f000001') + resolve('::ffff:1.2.3.4', 2) + resolve('fe80::1%1')
    + resolve('1.2.3.4', 2) + resolve('::1', 1),
    'resolve-names-odd-family': resolve('example.invalid', 3) + resolve('localhost', 7)
    + resolve('', 0) + resolve('', 3) + resolve('localhost', 1) + resolve('nonexistent.name', 0),
}
for name, data in addr.items():
    put('fuzz_address', name, data)


# --- fuzz_abi: opcode + argument bytes ---------------------------------------
# Handle pick byte: b < 0x80 picks known[b % n] (handles in order of issue),
# 0x80..0xbf a live handle, 0xc0..0xdf a mutation, >= 0xe0 a made-up value.
OPEN, CONNECT, POLL, READ, WRITE, WAIT, UNWAIT, SHUT, SETOPT, ADDR, ORIG, CLOSE, \
    COUNT, SPORT, RESOLVE, RESULTS, NULLS, DRAIN, CHURN = range(19)


def op(*b):
    return bytes(b)


poll1ms = op(POLL, 4, 2)
abi = {
    # server, connect, accept, data both ways, EOF after shutdown, close all
    'tcp-roundtrip': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0) + poll1ms * 3
    + op(WRITE, 1, 3, 0) + poll1ms + op(READ, 2, 4) + op(WAIT, 2, 0, 1)
    + op(WRITE, 2, 5, 1) + op(WAIT, 1, 0, 1) + op(READ, 1, 6) + op(SHUT, 1, 1)
    + poll1ms + op(READ, 2, 6) + op(READ, 2, 6) + op(ADDR, 1, 0, 7) + op(ADDR, 2, 1, 7)
    + op(ADDR, 2, 1, 0) + op(ORIG, 2, 0) + op(COUNT) + op(CLOSE, 1) + op(CLOSE, 1)
    + op(READ, 1, 4) + op(CLOSE, 2) + op(SPORT, 0) + op(CLOSE, 0) + op(COUNT),
    'tcp6-and-unix': op(OPEN, 1, 0, 0) + op(OPEN, 2, 0, 0) + op(CONNECT, 0, 0)
    + op(CONNECT, 1, 0) + poll1ms * 4 + op(WRITE, 2, 4, 0) + op(WRITE, 3, 4, 0) + poll1ms
    + op(READ, 4, 7) + op(READ, 5, 7) + op(SPORT, 0) + op(SPORT, 1) + op(ADDR, 3, 0, 7)
    + op(DRAIN),
    'refused-missing-badaddr': op(CONNECT, 0, 0) + op(CONNECT, 1, 0) + op(CONNECT, 2, 0)
    + op(CONNECT, 3, 1) + op(CONNECT, 4, 2) + poll1ms * 4 + op(READ, 0, 3) + op(WRITE, 1, 1, 0)
    + op(ADDR, 0, 1, 7) + op(DRAIN) + op(COUNT),
    'waits-unwaits': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0) + poll1ms * 2
    + op(WAIT, 1, 1, 0) + op(WAIT, 1, 1, 0) + op(UNWAIT, 1, 1) + op(WAIT, 2, 0, 0)
    + op(WAIT, 2, 2, 0) + op(UNWAIT, 2, 3) + op(WAIT, 2, 0, 0x0f) + poll1ms * 2
    + op(WAIT, 1, 1, 1) + op(UNWAIT, 2, 0) + op(DRAIN),
    'options-shutdown': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0) + poll1ms * 2
    + b''.join(op(SETOPT, 1, o, v) for o in range(7) for v in range(4))
    + op(SHUT, 1, 0) + op(SHUT, 1, 1) + op(SHUT, 1, 2) + op(SHUT, 1, 3) + op(SHUT, 1, 4)
    + op(READ, 1, 3) + op(WRITE, 1, 2, 0) + op(SETOPT, 2, 5, 1) + op(CLOSE, 2) + poll1ms
    + op(READ, 1, 3) + op(WRITE, 1, 2, 0),
    'stale-and-made-up-handles': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0) + op(CLOSE, 1)
    + b''.join(op(x, h, 0) for x in (READ, WRITE, UNWAIT, SHUT, ADDR, ORIG, SPORT, RESULTS)
               for h in (1, 0xc0, 0xc1, 0xc2, 0xc3, 0xe0, 0xe1, 0xe4, 0xe5, 0xe6))
    + op(CLOSE, 0xe1) + op(CLOSE, 0xc4) + op(CLOSE, 0) + op(CLOSE, 0) + op(COUNT),
    'resolve-requests': op(RESOLVE, 0, 0) + op(RESOLVE, 1, 2) + op(RESOLVE, 4, 2)
    + op(RESOLVE, 5, 1) + op(RESOLVE, 2, 4) + op(RESOLVE, 0, 0x80) + poll1ms * 5
    + op(RESULTS, 0, 6) + op(RESULTS, 1, 2) + op(RESULTS, 2, 0) + op(RESULTS, 3, 7)
    + op(READ, 0, 3) + op(SPORT, 1) + op(CLOSE, 0) + op(RESULTS, 0, 6) + op(DRAIN),
    'null-arguments': b''.join(op(NULLS, i) for i in range(20)) + op(POLL, 6, 0)
    + op(POLL, 7, 3) + op(POLL, 0, 4) + op(POLL, 0, 5),
    'backlog-fill-unix': op(OPEN, 2, 0, 2) + op(CONNECT, 0, 0) * 6 + poll1ms * 6 + op(DRAIN),
    'bulk-write-fill': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0) + poll1ms * 2
    + op(SETOPT, 1, 3, 1) + op(WRITE, 1, 7, 0) * 12 + op(WAIT, 1, 1, 1) + op(READ, 2, 8) * 4
    + op(WAIT, 1, 1, 1) + op(CLOSE, 1) + op(READ, 2, 8) * 4 + op(WAIT, 2, 0, 1),
    # one table index through all 128 generations: stale values come back
    'handle-generation-wrap': op(CONNECT, 0, 0) + op(CLOSE, 0) + op(CHURN, 200)
    + op(READ, 0, 3) + op(CLOSE, 0) + op(CLOSE, 1) + op(COUNT),
    # Reading right after connect, before the connect event was polled: the
    # ABI promises a non-blocking read (EAGAIN), see fuzz/README.md.
    'repro-read-blocks-before-connect-event': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0) + op(READ, 1, 3),
    # The same for writes, once the socket buffers are full.
    'repro-write-blocks-before-connect-event': op(OPEN, 0, 0, 0) + op(CONNECT, 0, 0)
    + op(WRITE, 1, 7, 0) * 150,
    # A read right after connecting to a closed port takes the pending
    # ECONNREFUSED, and the connect event then reports success.
    'repro-refused-connect-reported-ok': op(CONNECT, 0, 0) + op(READ, 0, 1) + op(DRAIN),
}
for name, data in abi.items():
    put('fuzz_abi', name, data)

# --- fuzz_tls_server: a mode byte, then a client's bytes -------------------
# ClientHellos from Python's ssl module (TLS 1.3 and 1.2, with SNI and ALPN),
# written whole (mode 0), with a client certificate asked for (mode 2), and
# cut into chunks (mode 1: a length byte before each piece).

def client_hellos():
    import ssl
    out = {}
    for label, version in (('tls13', ssl.TLSVersion.TLSv1_3), ('tls12', ssl.TLSVersion.TLSv1_2)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_alpn_protocols(['h2', 'http/1.1'])
        inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, outg, server_hostname='fuzz.example')
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out[label] = outg.read()
    return out


def chunks(data, size):
    return b''.join(bytes([len(data[i:i + size])]) + data[i:i + size]
                    for i in range(0, len(data), size))


for label, hello in client_hellos().items():
    put('fuzz_tls_server', 'hello-%s' % label, b'\x00' + hello)
    put('fuzz_tls_server', 'hello-%s-ask-cert' % label, b'\x02' + hello)
    put('fuzz_tls_server', 'hello-%s-chunks' % label, b'\x01' + chunks(hello, 37))
    # the record header alone, then the rest: a record split across reads
    put('fuzz_tls_server', 'hello-%s-split-header' % label,
        b'\x05' + chunks(hello[:3], 3) + chunks(hello[3:], 255))
put('fuzz_tls_server', 'plaintext-http', b'\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n')
put('fuzz_tls_server', 'sslv2-hello', b'\x00' + bytes.fromhex('80 2e 01 0003 01 0015 0000 0010') + bytes(21) + bytes(16))

print('seeds written to', ROOT)
