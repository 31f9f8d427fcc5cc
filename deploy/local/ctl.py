#!/usr/bin/env python3
"""deploy/local/ctl.py: send one operator command to the QwenNats promoter, the same request as
`nats req qwen.ctl.<verb> '<json>'`, for machines without the NATS CLI. Standard library only.

usage: deploy/local/ctl.py <verb> ['<json>']
       deploy/local/ctl.py <verb> --help      what the verb does, its fields and examples
       deploy/local/ctl.py --help             this text

Environment: NATS_URL (default nats://127.0.0.1:4222); credentials from the URL (nats://user:pass@host:port),
else NATS_USER/NATS_PASSWORD, else the operator user of a local run (.run/nats-users.env written by up.sh).
Prints the promoter's JSON reply; exits 0 when it says ok, 1 when it refuses (its "code" and "error" say
why) or no promoter answers, 2 on a usage error (nothing is sent).
"""
import json
import os
import socket
import sys
import uuid
from urllib.parse import urlparse


# verb -> (summary, fields, examples). The verbs are the promoter's (contracts: Rollouts.Verbs.All).
VERBS = {
    "status": ("the rollout state, the judge's latest verdict and the leading promoter",
               "none",
               ["status"]),
    "start": ("start a rollout: the candidate colour enters Shadow (it gets mirrored traffic, clients still get live answers)",
              "candidate (colour, required), reason, actor",
              ['start \'{"candidate":"green","reason":"profile v2","actor":"alice"}\'']),
    "promote": ("next step: Shadow -> first canary step -> next steps -> Promoted; in Promoted it closes the bake window",
                "full (true: straight to Promoted), reason, actor",
                ["promote", 'promote \'{"full":true,"reason":"looks good"}\'']),
    "set-weight": ("set the canary weight (percent of new sessions that get the candidate)",
                   "weight (0-100, required), reason, actor",
                   ['set-weight \'{"weight":25}\'']),
    "pause": ("hold the rollout where it is (the judge no longer moves it)",
              "reason, actor",
              ['pause \'{"reason":"look closer"}\'']),
    "resume": ("continue a paused rollout in the phase it was paused in",
               "reason, actor",
               ["resume"]),
    "rollback": ("send everything back to the live colour at once (from Shadow, Canary, Paused or Promoted)",
                 "reason, actor",
                 ['rollback \'{"reason":"answers got colder"}\'']),
    "abort": ("cancel a rollout that is not yet promoted, back to Stable",
              "reason, actor",
              ["abort", 'abort \'{"reason":"wrong profile"}\'']),
    "history": ("the audit log: the latest rollout events, newest first",
                "limit (number of events)",
                ["history", 'history \'{"limit":20}\'']),
    "pin": ("pin a session to a colour for a while (grey testing)",
            "session (required), colour (required), ttl_seconds",
            ['pin \'{"session":"my-session","colour":"green","ttl_seconds":600}\'']),
    "golden": ("run the golden sentiment set against the colours and report accuracy per colour",
               "colour (one colour; default all)",
               ["golden", 'golden \'{"colour":"green"}\'']),
}


def usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = [__doc__.strip(), "", "verbs:"]
    lines += [f"  {verb.ljust(width)}  {summary}" for verb, (summary, _, _) in VERBS.items()]
    lines += ["", "examples:", "  deploy/local/ctl.py status",
              "  deploy/local/ctl.py start '{\"candidate\":\"green\",\"reason\":\"profile v2\"}'",
              "  deploy/local/ctl.py promote '{\"full\":true}'",
              "  deploy/local/ctl.py rollback '{\"reason\":\"answers got colder\"}'",
              "  deploy/local/ctl.py rollback --help"]
    return "\n".join(lines)


def verb_usage(verb: str) -> str:
    summary, fields, examples = VERBS[verb]
    lines = [f"deploy/local/ctl.py {verb} ['<json>']: {summary}.",
             f"Sends qwen.ctl.{verb}. JSON fields: {fields}.", "", "examples:"]
    lines += [f"  deploy/local/ctl.py {e}" for e in examples]
    return "\n".join(lines)


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
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        if len(args) > 1 and args[0] == "help" and args[1] in VERBS:
            print(verb_usage(args[1]))
            return 0
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    verb = args[0]
    if verb not in VERBS:
        print(f"ctl.py: unknown verb '{verb}'; known: {', '.join(VERBS)} (deploy/local/ctl.py --help)", file=sys.stderr)
        return 2
    if len(args) > 1 and args[1] in ("-h", "--help"):
        print(verb_usage(verb))
        return 0
    if len(args) > 2:
        print(f"ctl.py: {verb} takes one JSON argument, got {len(args) - 1}; quote it: deploy/local/ctl.py {verb} '{{...}}'", file=sys.stderr)
        return 2
    body = args[1] if len(args) > 1 else ""
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
