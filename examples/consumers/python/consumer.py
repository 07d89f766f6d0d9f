"""A starter consumer of vx-bridge's events (Python, nats-py, pydantic v2).

A durable pull consumer on `{prefix}.completed.>` and `{prefix}.pending`, idempotent handling by
`event_id` (a file of handled ids that survives a restart), ack after handling, NAK with delay
on a transient failure, `{prefix}.status.get` with its error headers, `{prefix}.watch` for a
session it created, and a watch of the session view (KV bucket VX_SESSIONS). The models in vx_events/ are generated from schemas/*.json
(scripts/contracts/gen-consumer-types.sh); do not edit them.

PII: with VX_KEK_FILE (and read access to the keys bucket VX_KEYS_BUCKET), the kit decrypts each
event's `result_encrypted` (vx_pii.py) and prints how it read it, never the PII; without it, it
works on the decision fields alone. It keeps one file per session in VX_STATE_DIR (status and the
SHA-256 of the VX body, no PII) and deletes it on `{prefix}.erased`.

Run: examples/consumers/python/run.sh (configured by env, see ../README.md). Prints one JSON
object per line (handled, duplicate_ignored, nak, status, status_error, watch, watch_error, kv,
pii_reader, pii, erased) for scripts/contracts/consumers-check.sh. Touches nothing but its own durable
consumer, its store file and its session directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import nats
from nats.errors import Error as NatsError, NoRespondersError, TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError
from pydantic import ValidationError

from vx_pii import KekFileError, KekRing, PiiReader, SessionStore, TransientKeyError

from vx_events.service_error_schema import VxBridgeServiceError
from vx_events.session_erased_schema import VxBridgeSessionErased
from vx_events.session_state_schema import VxBridgeSessionState
from vx_events.status_reply_schema import VxBridgeStatusReply
from vx_events.verification_event_schema import VxBridgeVerificationEvent
from vx_events.watch_reply_schema import VxBridgeWatchReply

SERVICE_ERROR_HEADER = "Nats-Service-Error"
SERVICE_ERROR_CODE_HEADER = "Nats-Service-Error-Code"
# Where an event came from: poll, replay; none for a webhook.
SOURCE_HEADER = "vx-source"


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


URL = env("NATS_URL", "nats://127.0.0.1:4222")
PREFIX = env("VX_PREFIX", "verification")
STREAM = env("VX_STREAM", "VERIFICATIONS")
DURABLE = env("VX_DURABLE", "example-consumer-python")
BUCKET = env("VX_BUCKET", "VX_SESSIONS")
STORE = Path(env("VX_STORE", f"{DURABLE}.handled"))
ACK_WAIT_S = int(env("VX_ACK_WAIT_MS", "30000")) / 1000
STATUS_ID = os.environ.get("VX_STATUS_ID") or None
# A session this service created at VX, to have the bridge watch ({prefix}.watch).
WATCH_ID = os.environ.get("VX_WATCH_ID") or None
# Test hook: exit (code 3) after handling the N-th event, before acking it.
EXIT_BEFORE_ACK = int(os.environ["VX_EXIT_BEFORE_ACK"]) if os.environ.get("VX_EXIT_BEFORE_ACK") else None
# Demo hook: the first delivery of the first event fails "transiently" and is NAKed.
NAK_FIRST = env("VX_NAK_FIRST", "0") == "1"
# The PII reader: a KEK file (one id:base64 per line) and the keys bucket. Without a KEK file the
# kit reads no PII and works on the decision fields alone.
KEK_FILE = os.environ.get("VX_KEK_FILE") or None
KEYS_BUCKET = env("VX_KEYS_BUCKET", "VX_KEYS")
# What the kit keeps per session (one file per request_id, no PII), deleted on {prefix}.erased.
STATE_DIR = Path(env("VX_STATE_DIR", f"{STORE}.sessions"))


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


class HandledStore:
    """The event_ids already handled, one per line, synced before the ack. A real service records
    the id in the same transaction as its effect (a unique key on event_id), so "handled" and
    "recorded" cannot part."""

    def __init__(self, path: Path) -> None:
        self.ids = set(path.read_text().split()) if path.exists() else set()
        self.file = path.open("a")

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids

    def record(self, event_id: str) -> None:
        self.file.write(event_id + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.ids.add(event_id)


class ServiceError(Exception):
    """What went wrong with a request to the status service, as the JSON object the kit prints."""

    def __init__(self, info: dict) -> None:
        super().__init__(info)
        self.info = info


async def call(nc: nats.NATS, subject: str, request_id: str) -> bytes:
    """One request to the status service ({prefix}.status.get, {prefix}.watch): the reply's
    payload. An error reply is told by its Nats-Service-Error-Code header (the body says the same)."""
    try:
        reply = await nc.request(subject, json.dumps({"request_id": request_id}).encode(), timeout=10)
    except (NoRespondersError, NatsTimeoutError) as e:  # no status service / no answer: retry later
        raise ServiceError({"request_id": request_id, "error": type(e).__name__}) from e
    headers = reply.headers or {}
    if SERVICE_ERROR_CODE_HEADER in headers:
        code = int(headers[SERVICE_ERROR_CODE_HEADER])
        body = VxBridgeServiceError.model_validate_json(reply.data)
        raise ServiceError({
            "request_id": request_id, "code": code, "message": headers.get(SERVICE_ERROR_HEADER),
            "body_code": body.error.code,
            "retryable": code in (502, 503, 504),  # 400/404: do not retry
        })
    return reply.data


async def ask_status(nc: nats.NATS, request_id: str) -> None:
    """Asks {prefix}.status.get for a session's current status."""
    try:
        status = VxBridgeStatusReply.model_validate_json(await call(nc, f"{PREFIX}.status.get", request_id))
    except ServiceError as e:
        emit({"status_error": e.info})
        return
    emit({"status": status.model_dump(mode="json", exclude_none=True)})


async def watch(nc: nats.NATS, request_id: str) -> None:
    """Asks {prefix}.watch to watch a session this service created at VX: the bridge polls VX for it
    until it is terminal and publishes its result as the same event a webhook would give (header
    vx-source: poll), which the consumer below then handles like any other."""
    try:
        reply = VxBridgeWatchReply.model_validate_json(await call(nc, f"{PREFIX}.watch", request_id))
    except ServiceError as e:
        emit({"watch_error": e.info})
        return
    emit({"watch": reply.model_dump(mode="json", exclude_none=True)})


async def watch_sessions(js) -> None:
    """The current value of every key of the session view, then each change."""
    kv = await js.key_value(BUCKET)
    async for entry in await kv.watchall():
        if entry is None:  # the initial values are done
            continue
        if entry.operation is not None:  # DEL / PURGE: the session left the view
            emit({"kv_removed": entry.key})
            continue
        try:
            s = VxBridgeSessionState.model_validate_json(entry.value)
        except ValidationError as e:
            print(f"{entry.key}: not a session state: {e}", file=sys.stderr)
            continue
        emit({"kv": entry.key, "revision": entry.revision, "status": s.status,
              "current_status": s.current_status, "terminal": s.terminal, "source": s.source})


async def pii_reader(js) -> PiiReader:
    """The PII reader this service may have: a KEK file and the keys bucket, or neither."""
    if not KEK_FILE:
        emit({"pii_reader": {"enabled": False, "reason": "no VX_KEK_FILE"}})
        return PiiReader(None, None)
    try:
        kek = KekRing.from_file(KEK_FILE)
    except (OSError, KekFileError) as e:
        print(f"VX_KEK_FILE: {e}", file=sys.stderr)
        sys.exit(64)
    try:
        kv = await js.key_value(KEYS_BUCKET)
    except Exception as e:  # no such bucket, or no permission (a timeout): decision fields only
        emit({"pii_reader": {"enabled": False, "reason": f"keys bucket {KEYS_BUCKET}: {type(e).__name__}"}})
        return PiiReader(None, None)

    async def get_key(key: str) -> bytes | None:
        try:
            return (await kv.get(key)).value
        except KeyNotFoundError:  # never written, past retention (max_age), deleted or purged
            return None
        except (NatsError, asyncio.TimeoutError) as e:
            raise TransientKeyError(type(e).__name__) from e

    emit({"pii_reader": {"enabled": True, "bucket": KEYS_BUCKET, "keks": kek.ids}})
    return PiiReader(kek, get_key)


async def main() -> None:
    nc = await nats.connect(URL)
    js = nc.jetstream()
    # Create the durable, or update it to this config (several filter subjects: nats-server >= 2.10).
    await js.add_consumer(STREAM, ConsumerConfig(
        durable_name=DURABLE,
        filter_subjects=[f"{PREFIX}.completed.>", f"{PREFIX}.pending", f"{PREFIX}.erased"],
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=10,
    ))
    sub = await js.pull_subscribe_bind(DURABLE, STREAM)
    store = HandledStore(STORE)
    reader = await pii_reader(js)
    sessions = SessionStore(STATE_DIR)
    emit({"ready": {"lang": "python", "durable": DURABLE, "known_ids": len(store.ids)}})

    watcher = asyncio.create_task(watch_sessions(js))
    if STATUS_ID:
        await ask_status(nc, STATUS_ID)
    if WATCH_ID:
        await watch(nc, WATCH_ID)

    handled = 0
    nak_pending = NAK_FIRST
    while True:
        try:
            msgs = await sub.fetch(10, timeout=5)
        except NatsTimeoutError:
            continue
        for msg in msgs:
            delivered = msg.metadata.num_delivered
            if msg.subject == f"{PREFIX}.erased":
                # A session's personal data was erased: delete what this service kept about it.
                # Idempotent (a redelivery deletes nothing more), so no event_id bookkeeping.
                try:
                    erased = VxBridgeSessionErased.model_validate_json(msg.data)
                except ValidationError as e:
                    emit({"term": msg.subject, "error": str(e.errors()[0]["msg"])})
                    await msg.term()
                    continue
                deleted = sessions.erase(erased.request_id)
                emit({"erased": erased.request_id, "deleted_files": deleted, "erased_at": erased.erased_at,
                      "delivered": delivered})
                await msg.ack()
                continue
            try:
                event = VxBridgeVerificationEvent.model_validate_json(msg.data)
            except ValidationError as e:
                # Not an event this code understands: redelivering will not help.
                emit({"term": msg.subject, "error": str(e.errors()[0]["msg"])})
                await msg.term()
                continue
            if event.event_id in store:
                # A redelivery (our ack was lost, or we died before it): already done, just ack.
                emit({"duplicate_ignored": event.event_id, "delivered": delivered})
                await msg.ack()
                continue
            if nak_pending:
                # Where a transient failure goes (a database down, a downstream 503): NAK with a
                # delay, and the server redelivers it then (up to max_deliver times).
                nak_pending = False
                emit({"nak": event.event_id, "delay_ms": 500})
                await msg.nak(delay=0.5)
                continue
            try:
                pii, body = await reader.read(event)
            except TransientKeyError as e:
                # The keys bucket did not answer: like any transient failure, NAK with a delay.
                emit({"nak": event.event_id, "delay_ms": 1000, "error": f"keys bucket: {e}"})
                await msg.nak(delay=1)
                continue
            # The handling itself: here, print it and ask the session's current status. A service
            # would use `body` (the VX body, personal data) here; the kit prints only its size and hash.
            del body
            emit({"handled": event.event_id, "request_id": event.request_id, "type": event.type,
                  "status": event.status, "delivered": delivered,
                  "source": (msg.headers or {}).get(SOURCE_HEADER, "webhook")})
            emit({**pii.line(), "event_id": event.event_id, "request_id": event.request_id})
            if pii.kind == "erased":
                sessions.erase(event.request_id)  # keep nothing about an erased session
            else:
                sessions.save(event.request_id, {"request_id": event.request_id.lower(), "status": event.status,
                                                 "type": event.type, "event_id": event.event_id,
                                                 "pii": pii.kind, "sha256": pii.sha256})
            store.record(event.event_id)
            handled += 1
            if EXIT_BEFORE_ACK == handled:
                emit({"exit_before_ack": event.event_id})
                os._exit(3)
            await msg.ack()
            await ask_status(nc, event.request_id)
        if watcher.done() and watcher.exception():
            print(f"session view watch ended: {watcher.exception()}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
