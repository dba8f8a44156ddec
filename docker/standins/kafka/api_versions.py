"""One Kafka ApiVersions (v0) request; exit 0 only if the broker answers it without error."""

import socket
import struct
import sys


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


host, port = sys.argv[1].rsplit(":", 1)
client_id = b"healthcheck"
request = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id  # ApiVersions, v0, correlation 1
with socket.create_connection((host, int(port)), timeout=5) as sock:
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", read_exactly(sock, 4))
    response = read_exactly(sock, size)
correlation, error, count = struct.unpack(">ihi", response[:10])
if correlation != 1 or error != 0:
    sys.exit(f"ApiVersions failed: correlation {correlation}, error code {error}")
print(f"{host}:{port} supports {count} Kafka APIs")
