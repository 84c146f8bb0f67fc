#!/usr/bin/env python3
"""An HTTP proxy that lets a network namespace with no route out reach the
package registries, for scripts/clean-root.

    netns-proxy.py NETNS_PATH PORT

Listens on 127.0.0.1:PORT *inside* the namespace at NETNS_PATH (e.g.
/run/netns/chassis-clean-root) and opens its outgoing connections from the
namespace it was started in, so the namespace keeps its own loopback (its
own RabbitMQ, PostgreSQL, ... on their standard ports) while apt, cargo, pip
and npm reach their registries through `http_proxy`/`https_proxy`. Handles
CONNECT tunnels (https) and absolute-form plain http requests (apt), which
an HTTP/1.1 server must accept as they are. Runs until killed.
"""

import ctypes
import os
import socket
import sys
import threading
import urllib.parse

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_inside(netns_path, port):
    """A socket listening in the namespace; the caller's namespace is restored."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        setns(target)
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(64)
    finally:
        setns(home)
        os.close(target)
        os.close(home)
    return server


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(client):
    upstream = None
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
            if len(head) > 65536:
                return
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
        else:
            url = urllib.parse.urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection((url.hostname, url.port or 80), timeout=30)
            upstream.sendall(head)
        upstream.settimeout(None)
        back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        back.start()
        pipe(client, upstream)
        back.join()
    except (OSError, ValueError) as error:
        print(f"netns-proxy: {error}", file=sys.stderr, flush=True)
        try:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
    finally:
        client.close()
        if upstream is not None:
            upstream.close()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    server = listen_inside(sys.argv[1], int(sys.argv[2]))
    print(f"netns-proxy: listening on 127.0.0.1:{sys.argv[2]} in {sys.argv[1]}", file=sys.stderr, flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    main()
