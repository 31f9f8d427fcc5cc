#!/usr/bin/env python3
"""Mixed client load for the local system: sentiment and multi-turn chat over HTTP, new sessions every
few turns, N threads, until stopped (SIGTERM/SIGINT) or --seconds pass. Prints a one-line summary.

    deploy/local/load.py --url http://127.0.0.1:8080 --threads 4 --seconds 60
"""
import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

stop = threading.Event()
lock = threading.Lock()
counts = {"ok": 0, "failed": 0, "blue": 0, "green": 0}
INPUTS = ["今天心情真好", "这个实验太难了,我快崩溃了", "What a lovely day", "The service was awful", "It is fine I guess"]


def post(url, path, body, session):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Session-Id": session})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def worker(url, n):
    i = 0
    while not stop.is_set():
        session = f"load-{n}-{uuid.uuid4().hex[:8]}"
        history = []
        for turn in range(4):
            if stop.is_set():
                break
            try:
                if turn % 2 == 0:
                    d = post(url, "/v1/sentiment", {"input": INPUTS[i % len(INPUTS)]}, session)
                else:
                    history.append({"role": "user", "content": f"Tell me a story about day {i}"})
                    d = post(url, "/v1/chat/completions", {"messages": history, "max_tokens": 16}, session)
                    history.append({"role": "assistant", "content": d["choices"][0]["message"]["content"]})
                with lock:
                    counts["ok"] += 1
                    counts[d.get("colour", "blue")] = counts.get(d.get("colour", "blue"), 0) + 1
            except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
                with lock:
                    counts["failed"] += 1
                print(f"request failed: {e}", file=sys.stderr)
            i += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seconds", type=float, default=0)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=worker, args=(a.url, n), daemon=True) for n in range(a.threads)]
    for t in threads:
        t.start()
    start = time.time()
    while not stop.is_set() and (a.seconds == 0 or time.time() - start < a.seconds):
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=70)
    print(f"load: {counts['ok']} ok, {counts['failed']} failed, answered by blue {counts['blue']}, by green {counts['green']}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
