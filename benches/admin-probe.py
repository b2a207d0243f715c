#!/usr/bin/env python3
"""Admin-port timings (issue 15, docs/operations.md "Hostile clients"): sequential requests,
then a request while 1, 7 and 8 clients have sent half a request and stalled.

    benches/admin-probe.py ADMIN_PORT    # against a running flin-server on 127.0.0.1
"""

import socket, sys, time
host, port = "127.0.0.1", int(sys.argv[1])
def get(path):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk: break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1])
for path, n in [("/health", 2000), ("/api/stats", 500), ("/", 500)]:
    t = time.perf_counter()
    for _ in range(n): assert get(path) == 200
    print(f"{path}: {n} sequential requests, {(time.perf_counter()-t)/n*1e6:.0f} us each")
for stalled_count in [1, 7]:
    stalled = []
    for _ in range(stalled_count):
        s = socket.create_connection((host, port)); s.sendall(b"GET /api/stats HTTP/1.1\r\nHo"); stalled.append(s)
    time.sleep(0.05)
    t = time.perf_counter(); code = get("/health")
    print(f"/health with {stalled_count} stalled clients: {code} in {(time.perf_counter()-t)*1e3:.1f} ms")
    t = time.perf_counter()
    for s in stalled: s.settimeout(10); s.recv(100); s.close()
    print(f"  stalled clients answered 408 after {(time.perf_counter()-t)*1e3:.0f} ms more")
    time.sleep(0.3)
stalled = []
for _ in range(8):
    s = socket.create_connection((host, port)); s.sendall(b"GET / HTTP/1.1\r\n"); stalled.append(s)
time.sleep(0.05)
t = time.perf_counter(); code = get("/health")
print(f"/health with 8 stalled clients: {code} in {(time.perf_counter()-t)*1e3:.1f} ms")
for s in stalled: s.close()
