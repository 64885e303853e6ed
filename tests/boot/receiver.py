#!/usr/bin/env python3
"""The boot test's HTTP receiver (python3 standard library only).

    receiver.py --port 19099 --secret-file webhook.secret --log requests.jsonl

Listens on 127.0.0.1 and records every POST as one JSON line in --log:

  /alertmanager   Alertmanager's webhook notifications (body as JSON);
  /control-plane  driftd's control-plane webhook, signed per Standard
                  Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 over
                  "id.timestamp.body">`, keyed with the secret file's
                  content (`whsec_<base64>`, else the trimmed raw bytes, as
                  src/signal/webhook.rs reads it). `signature_valid` says
                  whether one of the listed signatures matches;
                  `timestamp_fresh` whether webhook-timestamp is within five
                  minutes of now (the Standard Webhooks tolerance).

Answers 200 to every POST (a control-plane request with an invalid
signature gets 401, as a real receiver would refuse it), so driftd marks
the signal delivered. GET /healthz answers 200 (readiness probe).
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_secret(data: bytes) -> bytes:
    """Mirror of driftd's parse_secret (src/signal/webhook.rs)."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = None
    if text is not None and text.startswith("whsec_"):
        return base64.b64decode(text[len("whsec_"):], validate=True)
    raw = data.strip()
    if not raw:
        raise ValueError("secret file is empty")
    return raw


def expected_signature(secret: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    mac.update(msg_id.encode())
    mac.update(b".")
    mac.update(timestamp.encode())
    mac.update(b".")
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_valid(secret: bytes, headers, body: bytes) -> bool:
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False
    want = expected_signature(secret, msg_id, ts, body)
    # The header may list several space-separated signatures (key rotation).
    return any(hmac.compare_digest(want, s) for s in sigs.split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    with open(args.secret_file, "rb") as f:
        secret = parse_secret(f.read())
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")

    def record(doc: dict) -> None:
        with lock:
            log.write(json.dumps(doc, sort_keys=True) + "\n")
            log.flush()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # stderr, one line per request
            super().log_message(fmt, *a)

        def reply(self, code: int, text: str = "ok\n") -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/healthz":
                self.reply(200)
            else:
                self.reply(404, "not found\n")

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
            doc = {
                "received_unix": time.time(),
                "path": self.path,
                "user_agent": self.headers.get("user-agent"),
                "content_type": self.headers.get("content-type"),
                "body": parsed,
            }
            code = 200
            if self.path == "/control-plane":
                valid = signature_valid(secret, self.headers, body)
                ts = self.headers.get("webhook-timestamp") or ""
                try:
                    fresh = abs(time.time() - int(ts)) <= 300
                except ValueError:
                    fresh = False
                doc.update(
                    webhook_id=self.headers.get("webhook-id"),
                    webhook_timestamp=ts,
                    signature_valid=valid,
                    timestamp_fresh=fresh,
                )
                if parsed is None:
                    doc["body_raw"] = binascii.hexlify(body[:4096]).decode()
                code = 200 if valid and fresh else 401
            elif self.path != "/alertmanager":
                code = 404
            doc["answered"] = code
            record(doc)
            self.reply(code, "ok\n" if code == 200 else "refused\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
