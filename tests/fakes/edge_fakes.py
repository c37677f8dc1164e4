#!/usr/bin/env python3
"""Loopback fakes for the edge, Python 3 standard library only (so CI can run them next to
an armv7 binary under qemu-arm without building anything else).

* A fake Service Bus namespace: peek-lock (`POST {topic}/subscriptions/{sub}/messages/head`
  with long polling), complete (DELETE lock URI), abandon (PUT), renew (POST), lock tokens,
  delivery counts, dead-lettering after MAX_DELIVERY, and the SAS header checked against
  the key (HMAC-SHA256 over the key string's UTF-8 bytes).
* A fake Hue v1 bridge: `GET /api/{key}/config`, `GET /api/{key}/lights` (one Extended color
  light, number 1) and `GET /api/{key}/groups` (none), which the edge reads to check its key
  and learn what each target can show, and `PUT /api/{key}/lights/{id}/state` and
  `/groups/{id}/action`, recording every PUT; 404 on /clip/v2 so the edge picks v1. The
  shapes are those of Hue's v1 API reference ("Lights API: Get all lights", "Groups API: Get
  all groups", developers.meethue.com) and of the Rust fake bridge's v1 view
  (crates/test-fakes/src/hue.rs); a wrong key gets error 1 "unauthorized user" as a real
  bridge answers it.

Control endpoints (no auth) on the Service Bus port:
  POST /_control/enqueue        body: one JSON message (or a JSON array of them)
  GET  /_control/stats          {"pending", "locked", "completed", "deadlettered"}
and on the Hue port:
  GET  /_control/puts           [{"path", "body"}, ...]

Usage: edge_fakes.py --ready-file PATH [--key KEY] [--hue-key KEY]
writes {"servicebus": PORT, "hue": PORT} to PATH once both listen.
"""

import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_DELIVERY = 10
LOCK_SECONDS = 30


class Broker:
    def __init__(self):
        self.cond = threading.Condition()
        self.messages = []  # dicts: seq, id, body, delivery, token, locked_until
        self.completed = 0
        self.deadlettered = 0
        self.next_seq = 1

    def enqueue(self, body):
        with self.cond:
            self.messages.append({"seq": self.next_seq, "id": uuid.uuid4().hex, "body": body,
                                  "delivery": 0, "token": None, "locked_until": 0})
            self.next_seq += 1
            self.cond.notify_all()

    def _available(self):
        now = time.time()
        for m in self.messages:
            if m["token"] is None or m["locked_until"] < now:
                return m
        return None

    def lock_next(self, timeout):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                m = self._available()
                if m is not None:
                    m["delivery"] += 1
                    m["token"] = str(uuid.uuid4())
                    m["locked_until"] = time.time() + LOCK_SECONDS
                    return dict(m)
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def find(self, seq, token):
        for m in self.messages:
            if str(m["seq"]) == seq and m["token"] == token and m["locked_until"] >= time.time():
                return m
        return None

    def stats(self):
        with self.cond:
            locked = sum(1 for m in self.messages if m["token"] and m["locked_until"] >= time.time())
            return {"pending": len(self.messages), "locked": locked,
                    "completed": self.completed, "deadlettered": self.deadlettered}


def check_sas(header, key_name, key):
    if not header or not header.startswith("SharedAccessSignature "):
        return False
    fields = dict(p.split("=", 1) for p in header[len("SharedAccessSignature "):].split("&") if "=" in p)
    try:
        if fields["skn"] != key_name or int(fields["se"]) < time.time():
            return False
        to_sign = (fields["sr"] + "\n" + fields["se"]).encode()
        want = base64.b64encode(hmac.new(key.encode(), to_sign, hashlib.sha256).digest()).decode()
        return hmac.compare_digest(urllib.parse.unquote(fields["sig"]), want)
    except (KeyError, ValueError):
        return False


def make_sb_handler(broker, key_name, key):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, code, body=b"", headers=None):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def route(self, method):
            url = urllib.parse.urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            data = self.body()
            if parts[:1] == ["_control"]:
                if parts[1:] == ["enqueue"] and method == "POST":
                    v = json.loads(data)
                    for m in (v if isinstance(v, list) else [v]):
                        broker.enqueue(json.dumps(m).encode())
                    return self.reply(201)
                if parts[1:] == ["stats"]:
                    return self.reply(200, json.dumps(broker.stats()).encode(),
                                      {"Content-Type": "application/json"})
                return self.reply(404)
            if not check_sas(self.headers.get("Authorization"), key_name, key):
                return self.reply(401, b"bad SAS token")
            # {topic}/subscriptions/{sub}/messages/head  or  .../messages/{seq}/{token}
            if len(parts) == 5 and parts[1] == "subscriptions" and parts[3:] == ["messages", "head"] \
                    and method == "POST":
                q = urllib.parse.parse_qs(url.query)
                timeout = min(float(q.get("timeout", ["60"])[0]), 60)
                m = broker.lock_next(timeout)
                if m is None:
                    return self.reply(204)
                props = {"DeliveryCount": m["delivery"], "LockToken": m["token"],
                         "LockedUntilUtc": formatdate(m["locked_until"], usegmt=True),
                         "MessageId": m["id"], "SequenceNumber": m["seq"], "State": "Active"}
                loc = "https://fake.servicebus.windows.net/%s/subscriptions/%s/messages/%d/%s" % (
                    parts[0], parts[2], m["seq"], m["token"])
                return self.reply(201, m["body"], {"BrokerProperties": json.dumps(props),
                                                    "Location": loc,
                                                    "Content-Type": "application/json"})
            if len(parts) == 6 and parts[1] == "subscriptions" and parts[3] == "messages":
                with broker.cond:
                    m = broker.find(parts[4], parts[5])
                    if m is None:
                        return self.reply(410, b"lock lost")
                    if method == "DELETE":
                        broker.messages.remove(m)
                        broker.completed += 1
                    elif method == "PUT":
                        m["token"] = None
                        if m["delivery"] >= MAX_DELIVERY:
                            broker.messages.remove(m)
                            broker.deadlettered += 1
                        broker.cond.notify_all()
                    elif method == "POST":
                        m["locked_until"] = time.time() + LOCK_SECONDS
                return self.reply(200)
            return self.reply(404)

        def do_POST(self):
            self.route("POST")

        def do_PUT(self):
            self.route("PUT")

        def do_DELETE(self):
            self.route("DELETE")

        def do_GET(self):
            self.route("GET")

    return H


def make_hue_handler(hue_key, puts, lock):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, code, value):
            body = json.dumps(value).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parts = [p for p in self.path.split("/") if p]
            if parts == ["_control", "puts"]:
                with lock:
                    return self.reply(200, list(puts))
            if parts[:1] == ["api"] and parts[2:] == ["config"]:
                if parts[1] == "0" or parts[1] == hue_key:
                    return self.reply(200, {"bridgeid": "001788FFFE000001", "apiversion": "1.16.0",
                                            "name": "Fake"})
                return self.reply(200, [{"error": {"type": 1, "address": "/", "description": "unauthorized user"}}])
            if parts[:1] == ["api"] and parts[2:] in (["lights"], ["groups"]):
                if parts[1] != hue_key:
                    return self.reply(200, [{"error": {"type": 1, "address": "/" + parts[2],
                                                       "description": "unauthorized user"}}])
                if parts[2] == "groups":
                    return self.reply(200, {})
                return self.reply(200, {"1": {
                    "name": "Hue color lamp 1", "type": "Extended color light",
                    "modelid": "LCT015", "manufacturername": "Signify Netherlands B.V.",
                    "state": {"on": False, "bri": 254, "xy": [0.3227, 0.329], "ct": 366,
                              "reachable": True, "colormode": "xy"},
                    "capabilities": {"control": {"colorgamuttype": "C",
                                                 "ct": {"min": 153, "max": 500}}}}})
            self.reply(404, {"error": "not found"})

        def do_PUT(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}")
            parts = [p for p in self.path.split("/") if p]
            if len(parts) == 5 and parts[0] == "api" and parts[2] in ("lights", "groups"):
                if parts[1] != hue_key:
                    return self.reply(200, [{"error": {"type": 1, "address": "/", "description": "unauthorized user"}}])
                with lock:
                    puts.append({"path": "/" + "/".join(parts[2:]), "body": body})
                return self.reply(200, [{"success": {"/%s/%s/state/%s" % (parts[2], parts[3], k): v}}
                                        for k, v in body.items()])
            self.reply(404, {"error": "not found"})

    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--key-name", default="edge")
    ap.add_argument("--key", default="fake-sas-key=")
    ap.add_argument("--hue-key", default="fake-hue-key")
    a = ap.parse_args()
    broker = Broker()
    puts, lock = [], threading.Lock()
    sb = ThreadingHTTPServer(("127.0.0.1", 0), make_sb_handler(broker, a.key_name, a.key))
    hue = ThreadingHTTPServer(("127.0.0.1", 0), make_hue_handler(a.hue_key, puts, lock))
    sb.daemon_threads = hue.daemon_threads = True
    for s in (sb, hue):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(a.ready_file + ".tmp", "w") as f:
        json.dump({"servicebus": sb.server_address[1], "hue": hue.server_address[1]}, f)
    import os
    os.replace(a.ready_file + ".tmp", a.ready_file)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
