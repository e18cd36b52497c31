"""How fast `POST /webhooks/sendgrid` answers: a signed batch of N events (SendGrid posts up to 768 KB at a
time) about N delivered messages, posted over loopback to the app served by uvicorn, then the same batch again
(all duplicates).

    .venv/bin/python bench/webhook.py [--events 2000]

Prints the answer times; asserts nothing. SendGrid expects an answer within seconds and retries otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.config import load_settings
from pipeline.models import Contact
from pipeline.runtime import Runtime
from pipeline.web import create_app

CONFIG = """\
database: sqlite:///var/bench.db
sender: {{from: newsroom@bench.example.com}}
organization: {{name: Bench Co, postal_address: "1 Bench Road, Halifax, NS"}}
sendgrid: {{webhook_public_key: "{key}"}}
"""
RELEASE = "FOR IMMEDIATE RELEASE\n\nBench Co Counts Its Events\n\nHALIFAX, Nova Scotia -- Bench Co counted.\n\n###\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "config.yaml").write_text(CONFIG.format(key=public), encoding="utf-8")
        (folder / "releases").mkdir()
        (folder / "releases" / "bench.txt").write_text(RELEASE, encoding="utf-8")
        runtime = Runtime.open(load_settings(folder / "config.yaml"))
        runtime.store.save_contacts([Contact(email=f"r{i}@example.com") for i in range(args.events)])
        from pipeline.intake import queue_release
        from pipeline.parse import parse_release
        from pipeline.store import utcnow

        release = parse_release(folder / "releases" / "bench.txt")
        dist_id, _ = queue_release(runtime.store, runtime.settings, release, ("all",), utcnow(), "UTC")
        assert dist_id is not None
        runtime.dispatcher().dispatch(dist_id)
        events = [
            {
                "email": d["address"],
                "event": "delivered",
                "timestamp": int(time.time()),
                "sg_event_id": f"evt-{d['id']}",
                "sg_message_id": f"m{d['id']}.filter0001",
                "delivery_id": str(d["id"]),
                "response": "250 2.0.0 OK",
            }
            for d in runtime.store.deliveries_of(dist_id)
        ]
        body = json.dumps(events).encode()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        for label in ("new events", "the same again (duplicates)"):
            stamp = str(int(time.time()))
            signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/webhooks/sendgrid",
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "X-Twilio-Email-Event-Webhook-Signature": signature,
                    "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                },
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as answer:
                result = json.loads(answer.read())
            seconds = time.perf_counter() - start
            size = f"{len(events):,} events, {len(body) / 1024:,.0f} KB"
            print(f"{size}, {label}: answered in {seconds * 1000:.0f} ms {result}")
        server.should_exit = True
        runtime.close()


if __name__ == "__main__":
    main()
