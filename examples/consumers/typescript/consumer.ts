/**
 * A starter consumer of vx-bridge's events (TypeScript, nats.js v3: @nats-io/transport-node,
 * @nats-io/jetstream, @nats-io/kv).
 *
 * A durable pull consumer on `{prefix}.completed.>` and `{prefix}.pending`, idempotent handling
 * by `event_id` (a file of handled ids that survives a restart), ack after handling, NAK with
 * delay on a transient failure, `{prefix}.status.get` with its error headers, `{prefix}.watch`
 * for a session it created, and a watch of the session view (KV bucket VX_SESSIONS). The types in generated/ come from schemas/*.json
 * (scripts/contracts/gen-consumer-types.sh); do not edit them.
 *
 * PII: with VX_KEK_FILE (and read access to the keys bucket VX_KEYS_BUCKET), the kit decrypts each
 * event's `result_encrypted` (pii.ts) and prints how it read it, never the PII; without it, it
 * works on the decision fields alone. It keeps one file per session in VX_STATE_DIR (status and
 * the SHA-256 of the VX body, no PII) and deletes it on `{prefix}.erased`.
 *
 * Run: examples/consumers/typescript/run.sh (configured by env, see ../README.md). Prints one
 * JSON object per line (handled, duplicate_ignored, nak, status, status_error, watch,
 * watch_error, kv, pii_reader, pii, erased) for scripts/contracts/consumers-check.sh. Touches nothing but
 * its own durable consumer, its store file and its session directory.
 */
import { appendFileSync, existsSync, fsyncSync, openSync, readFileSync } from "node:fs";
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { VxBridgeVerificationEvent } from "./generated/verification-event.schema.js";
import type { VxBridgeSessionState } from "./generated/session-state.schema.js";
import type { VxBridgeStatusReply } from "./generated/status-reply.schema.js";
import type { VxBridgeServiceError } from "./generated/service-error.schema.js";
import type { VxBridgeWatchReply } from "./generated/watch-reply.schema.js";
import type { VxBridgeSessionErased } from "./generated/session-erased.schema.js";
import { KekFileError, KekRing, PiiReader, SessionStore, TransientKeyError } from "./pii.js";

const SERVICE_ERROR_HEADER = "Nats-Service-Error";
const SERVICE_ERROR_CODE_HEADER = "Nats-Service-Error-Code";
/** Where an event came from: poll, replay; none for a webhook. */
const SOURCE_HEADER = "vx-source";

const env = (name: string, fallback: string): string => process.env[name] || fallback;
const URL = env("NATS_URL", "nats://127.0.0.1:4222");
const PREFIX = env("VX_PREFIX", "verification");
const STREAM = env("VX_STREAM", "VERIFICATIONS");
const DURABLE = env("VX_DURABLE", "example-consumer-ts");
const BUCKET = env("VX_BUCKET", "VX_SESSIONS");
const STORE = env("VX_STORE", `${DURABLE}.handled`);
const ACK_WAIT_MS = Number(env("VX_ACK_WAIT_MS", "30000"));
const STATUS_ID = process.env.VX_STATUS_ID || undefined;
/** A session this service created at VX, to have the bridge watch ({prefix}.watch). */
const WATCH_ID = process.env.VX_WATCH_ID || undefined;
/** Test hook: exit (code 3) after handling the N-th event, before acking it. */
const EXIT_BEFORE_ACK = process.env.VX_EXIT_BEFORE_ACK ? Number(process.env.VX_EXIT_BEFORE_ACK) : undefined;
/** Demo hook: the first delivery of the first event fails "transiently" and is NAKed. */
const NAK_FIRST = env("VX_NAK_FIRST", "0") === "1";
/**
 * The PII reader: a KEK file (one id:base64 per line) and the keys bucket. Without a KEK file the
 * kit reads no PII and works on the decision fields alone.
 */
const KEK_FILE = process.env.VX_KEK_FILE || undefined;
const KEYS_BUCKET = env("VX_KEYS_BUCKET", "VX_KEYS");
/** What the kit keeps per session (one file per request_id, no PII), deleted on {prefix}.erased. */
const STATE_DIR = env("VX_STATE_DIR", `${STORE}.sessions`);

const emit = (line: Record<string, unknown>): void => {
  process.stdout.write(JSON.stringify(line) + "\n");
};

/**
 * The event_ids already handled, one per line, synced before the ack. A real service records the
 * id in the same transaction as its effect (a unique key on event_id), so "handled" and
 * "recorded" cannot part.
 */
class HandledStore {
  readonly ids: Set<string>;
  private readonly fd: number;
  constructor(path: string) {
    this.ids = new Set(existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : []);
    this.fd = openSync(path, "a");
  }
  has(eventId: string): boolean {
    return this.ids.has(eventId);
  }
  record(eventId: string): void {
    appendFileSync(this.fd, eventId + "\n");
    fsyncSync(this.fd);
    this.ids.add(eventId);
  }
}

/** What went wrong with a request to the status service, as the JSON object the kit prints. */
class ServiceError extends Error {
  constructor(readonly info: Record<string, unknown>) {
    super(JSON.stringify(info));
  }
}

/**
 * One request to the status service ({prefix}.status.get, {prefix}.watch): the reply. An error
 * reply is told by its Nats-Service-Error-Code header (the body says the same).
 */
async function call(nc: NatsConnection, subject: string, requestId: string) {
  let reply;
  try {
    reply = await nc.request(subject, JSON.stringify({ request_id: requestId }), { timeout: 10_000 });
  } catch (e) {
    // No responder (no status service running) or a timeout: retry later.
    throw new ServiceError({ request_id: requestId, error: e instanceof Error ? e.name : String(e) });
  }
  const code = reply.headers?.get(SERVICE_ERROR_CODE_HEADER);
  if (code) {
    const body = reply.json<VxBridgeServiceError>();
    const n = Number(code);
    throw new ServiceError({
      request_id: requestId,
      code: n,
      message: reply.headers?.get(SERVICE_ERROR_HEADER),
      body_code: body.error.code,
      retryable: n === 502 || n === 503 || n === 504, // 400/404: do not retry
    });
  }
  return reply;
}

/** Asks {prefix}.status.get for a session's current status. */
async function askStatus(nc: NatsConnection, requestId: string): Promise<void> {
  try {
    const reply = await call(nc, `${PREFIX}.status.get`, requestId);
    emit({ status: reply.json<VxBridgeStatusReply>() });
  } catch (e) {
    if (!(e instanceof ServiceError)) throw e;
    emit({ status_error: e.info });
  }
}

/**
 * Asks {prefix}.watch to watch a session this service created at VX: the bridge polls VX for it
 * until it is terminal and publishes its result as the same event a webhook would give (header
 * vx-source: poll), which the consumer below then handles like any other.
 */
async function watch(nc: NatsConnection, requestId: string): Promise<void> {
  try {
    const reply = await call(nc, `${PREFIX}.watch`, requestId);
    emit({ watch: reply.json<VxBridgeWatchReply>() });
  } catch (e) {
    if (!(e instanceof ServiceError)) throw e;
    emit({ watch_error: e.info });
  }
}

/** The current value of every key of the session view, then each change. */
async function watchSessions(js: JetStreamClient): Promise<void> {
  const kv = await new Kvm(js).open(BUCKET);
  for await (const e of await kv.watch()) {
    if (e.operation !== "PUT") {
      emit({ kv_removed: e.key }); // DEL / PURGE: the session left the view
      continue;
    }
    const s = e.json<VxBridgeSessionState>();
    emit({
      kv: e.key,
      revision: e.revision,
      status: s.status,
      current_status: s.current_status,
      terminal: s.terminal,
      source: s.source,
    });
  }
}

/** The PII reader this service may have: a KEK file and the keys bucket, or neither. */
async function piiReader(js: JetStreamClient): Promise<PiiReader> {
  if (!KEK_FILE) {
    emit({ pii_reader: { enabled: false, reason: "no VX_KEK_FILE" } });
    return new PiiReader();
  }
  let kek: KekRing;
  try {
    kek = KekRing.fromFile(KEK_FILE);
  } catch (e) {
    console.error(`VX_KEK_FILE: ${e instanceof KekFileError ? e.message : String(e)}`);
    process.exit(64);
  }
  let kv;
  try {
    kv = await new Kvm(js).open(KEYS_BUCKET);
    await kv.status(); // open() only binds: ask the server that the bucket is there
  } catch (e) {
    // No such bucket, or no permission (a timeout): decision fields only.
    emit({ pii_reader: { enabled: false, reason: `keys bucket ${KEYS_BUCKET}: ${e instanceof Error ? e.name : String(e)}` } });
    return new PiiReader();
  }
  const keys = kv;
  const getKey = async (key: string): Promise<Uint8Array | null> => {
    let entry;
    try {
      entry = await keys.get(key);
    } catch (e) {
      throw new TransientKeyError(e instanceof Error ? e.name : String(e));
    }
    // Never written, past retention (max_age), deleted or purged.
    if (entry === null || entry.operation !== "PUT") return null;
    return entry.value;
  };
  emit({ pii_reader: { enabled: true, bucket: KEYS_BUCKET, keks: kek.ids } });
  return new PiiReader(kek, getKey);
}

async function main(): Promise<void> {
  const nc = await connect({ servers: URL });
  const jsm = await jetstreamManager(nc);
  // Create the durable, or update it to this config (several filter subjects: nats-server >= 2.10).
  await jsm.consumers.add(STREAM, {
    durable_name: DURABLE,
    filter_subjects: [`${PREFIX}.completed.>`, `${PREFIX}.pending`, `${PREFIX}.erased`],
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(ACK_WAIT_MS),
    max_deliver: 10,
  });
  const js = jetstream(nc);
  const consumer = await js.consumers.get(STREAM, DURABLE);
  const store = new HandledStore(STORE);
  const reader = await piiReader(js);
  const sessions = new SessionStore(STATE_DIR);
  emit({ ready: { lang: "typescript", durable: DURABLE, known_ids: store.ids.size } });

  watchSessions(js).catch((e) => console.error(`session view watch ended: ${e}`));
  if (STATUS_ID) await askStatus(nc, STATUS_ID);
  if (WATCH_ID) await watch(nc, WATCH_ID);

  let handled = 0;
  let nakPending = NAK_FIRST;
  for await (const msg of await consumer.consume()) {
    const delivered = msg.info.deliveryCount;
    if (msg.subject === `${PREFIX}.erased`) {
      // A session's personal data was erased: delete what this service kept about it. Idempotent
      // (a redelivery deletes nothing more), so no event_id bookkeeping.
      let erased: VxBridgeSessionErased;
      try {
        erased = msg.json<VxBridgeSessionErased>();
        if (typeof erased.request_id !== "string" || !/^[0-9a-f-]{36}$/.test(erased.request_id)) {
          throw new Error("no lower-case UUID request_id");
        }
      } catch (e) {
        emit({ term: msg.subject, error: String(e) });
        msg.term();
        continue;
      }
      const deleted = sessions.erase(erased.request_id);
      emit({ erased: erased.request_id, deleted_files: deleted, erased_at: erased.erased_at, delivered });
      await msg.ackAck();
      continue;
    }
    let event: VxBridgeVerificationEvent;
    try {
      event = msg.json<VxBridgeVerificationEvent>();
    } catch (e) {
      // Not an event this code understands: redelivering will not help.
      emit({ term: msg.subject, error: String(e) });
      msg.term();
      continue;
    }
    if (store.has(event.event_id)) {
      // A redelivery (our ack was lost, or we died before it): already done, just ack.
      emit({ duplicate_ignored: event.event_id, delivered });
      await msg.ackAck();
      continue;
    }
    if (nakPending) {
      // Where a transient failure goes (a database down, a downstream 503): NAK with a delay, and
      // the server redelivers it then (up to max_deliver times).
      nakPending = false;
      emit({ nak: event.event_id, delay_ms: 500 });
      msg.nak(500);
      continue;
    }
    let pii;
    try {
      pii = await reader.read(event);
    } catch (e) {
      if (!(e instanceof TransientKeyError)) throw e;
      // The keys bucket did not answer: like any transient failure, NAK with a delay.
      emit({ nak: event.event_id, delay_ms: 1000, error: `keys bucket: ${e.message}` });
      msg.nak(1000);
      continue;
    }
    // The handling itself: here, print it and ask the session's current status. A service would
    // use pii.body (the VX body, personal data) here; the kit prints only its size and hash.
    emit({
      handled: event.event_id,
      request_id: event.request_id,
      type: event.type,
      status: event.status,
      delivered,
      source: msg.headers?.get(SOURCE_HEADER) || "webhook",
    });
    emit({ ...pii.read, event_id: event.event_id, request_id: event.request_id });
    if (pii.read.pii === "erased") {
      sessions.erase(event.request_id); // keep nothing about an erased session
    } else {
      sessions.save(event.request_id, {
        request_id: event.request_id.toLowerCase(),
        status: event.status,
        type: event.type,
        event_id: event.event_id,
        pii: pii.read.pii,
        sha256: pii.read.sha256 ?? null,
      });
    }
    store.record(event.event_id);
    handled += 1;
    if (EXIT_BEFORE_ACK === handled) {
      emit({ exit_before_ack: event.event_id });
      process.exit(3);
    }
    await msg.ackAck();
    await askStatus(nc, event.request_id);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
