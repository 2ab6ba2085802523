#!/usr/bin/env python3
"""A small SOCKS4 / SOCKS4a server (CONNECT only), standard library only, for
make-tunnel-samples.sh: curl --socks4 / --socks4a talk to it, and it relays to
the target. One thread per connection; it resolves 4a host names itself.

  socks4_server.py HOST PORT
"""

import socket
import socketserver
import struct
import sys
import threading


def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        buf = b""
        while len(buf) < 8 or b"\0" not in buf[8:]:
            d = c.recv(1024)
            if not d:
                return
            buf += d
        vn, cd, port = struct.unpack("!BBH", buf[:4])
        ip = buf[4:8]
        end = buf.index(b"\0", 8) + 1
        if ip[:3] == b"\0\0\0" and ip[3] != 0:          # SOCKS4a: a host name follows
            while b"\0" not in buf[end:]:
                buf += c.recv(1024)
            host = buf[end:buf.index(b"\0", end)].decode()
            end = buf.index(b"\0", end) + 1
        else:
            host = socket.inet_ntoa(ip)
        if vn != 4 or cd != 1:
            c.sendall(struct.pack("!BBH4s", 0, 91, 0, b"\0" * 4))
            return
        try:
            up = socket.create_connection((host, port), timeout=10)
        except OSError:
            c.sendall(struct.pack("!BBH4s", 0, 91, 0, b"\0" * 4))
            return
        c.sendall(struct.pack("!BBH4s", 0, 90, 0, b"\0" * 4))
        if buf[end:]:
            up.sendall(buf[end:])
        t = threading.Thread(target=pump, args=(up, c), daemon=True)
        t.start()
        pump(c, up)
        t.join(10)
        up.close()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
