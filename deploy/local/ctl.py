#!/usr/bin/env python3
"""Send one operator command to the QwenNats promoter: the same request as `nats req qwen.ctl.<verb> '<json>'`,
for machines without the NATS CLI. Standard library only.

    deploy/local/ctl.py status
    deploy/local/ctl.py start '{"candidate":"green","reason":"profile v2"}'
    deploy/local/ctl.py promote '{"full":true}'

Environment: NATS_URL (default nats://127.0.0.1:4222); credentials from the URL (nats://user:pass@host:port),
else NATS_USER/NATS_PASSWORD, else the operator user of a local run (.run/nats-users.env written by up.sh).
Prints the JSON reply; exits 1 when the reply says ok=false.
"""
import json
import os
import socket
import sys
import uuid
from urllib.parse import urlparse


def credentials(u):
    if u.username:
        return u.username, u.password or ""
    if os.environ.get("NATS_USER"):
        return os.environ["NATS_USER"], os.environ.get("NATS_PASSWORD", "")
    env = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".run", "nats-users.env")
    if os.path.exists(env):
        with open(env) as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                if key == "QWEN_NATS_OPERATOR_PASSWORD":
                    return "operator", value
    return None, ""


def request(url: str, subject: str, payload: bytes, timeout: float = 5.0) -> bytes:
    u = urlparse(url)
    sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=timeout)
    f = sock.makefile("rb")
    f.readline()  # INFO
    connect = {"verbose": False, "pedantic": False, "lang": "python", "version": "qwen-ctl"}
    user, password = credentials(u)
    if user:
        connect.update({"user": user, "pass": password})
    inbox = f"_INBOX.{uuid.uuid4().hex}"
    sock.sendall(
        f"CONNECT {json.dumps(connect)}\r\nSUB {inbox} 1\r\nPUB {subject} {inbox} {len(payload)}\r\n".encode()
        + payload + b"\r\nPING\r\n")
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("connection closed before a reply")
        if line.startswith(b"MSG"):
            parts = line.split()
            size = int(parts[-1])
            data = f.read(size)
            f.read(2)
            if size == 0:
                raise LookupError(f"no promoter answered on {subject} (no responders)")
            return data
        if line.startswith(b"HMSG"):
            parts = line.split()
            header_len, total = int(parts[-2]), int(parts[-1])
            blob = f.read(total)
            f.read(2)
            if total == header_len:
                raise LookupError(f"no promoter answered on {subject} (no responders)")
            return blob[header_len:]
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
        if line.startswith(b"-ERR"):
            raise ConnectionError(line.decode().strip())


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    verb = sys.argv[1]
    body = sys.argv[2] if len(sys.argv) > 2 else ""
    try:
        reply = request(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), f"qwen.ctl.{verb}", body.encode())
    except (OSError, LookupError) as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    text = reply.decode()
    try:
        parsed = json.loads(text)
        print(json.dumps(parsed, indent=2, ensure_ascii=False))
        return 0 if parsed.get("ok") else 1
    except json.JSONDecodeError:
        print(text)
        return 1


if __name__ == "__main__":
    sys.exit(main())
