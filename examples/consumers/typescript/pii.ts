/**
 * The consumer kit's PII reader and per-session store (TypeScript, jose).
 *
 * vx-bridge's events carry their decision in clear and the VX body (personal data) encrypted
 * (`events.pii = "encrypted"`, schema_version 2): `result_encrypted` is a compact JWE (alg dir,
 * enc A256GCM, protected header kid = the lower-case request_id) under the session's data key.
 * The data key is the value of key <lower-case request_id> in the JetStream KV bucket VX_KEYS: a
 * JWE (alg dir, enc A256GCM, kid = a KEK's id) whose plaintext is the 32 key bytes; the value
 * `erased` is a tombstone; a missing key is past retention (or never existed). The KEKs come from
 * a file, one `id:base64` per line (as Kubernetes mounts a Secret).
 *
 * A service needs a KEK and read access to `$KV.VX_KEYS.>` to read PII; every other consumer
 * works on the decision fields alone. Nothing here prints, logs or stores the PII: only its
 * length and SHA-256. No I/O but the KEK file, the KV get passed in and the session directory.
 */
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { compactDecrypt, decodeProtectedHeader } from "jose";
import type { VxBridgeVerificationEvent } from "./generated/verification-event.schema.js";

/** The value of a data key that was erased ({prefix}.erase): a tombstone. */
export const TOMBSTONE = "erased";
const ALG = "dir";
const ENC = "A256GCM";

/** A KEK file that cannot be used; the message names the line, never key bytes. */
export class KekFileError extends Error {}

/** A JWE that is not of the contract's form or does not decrypt. Never carries key or plaintext bytes. */
export class JweError extends Error {}

/** The keys bucket did not answer (timeout, connection): NAK the event and try again later. */
export class TransientKeyError extends Error {}

/** Standard or URL-safe base64, padded or not; undefined when it is not base64. */
function b64Any(text: string): Uint8Array | undefined {
  const s = text.replace(/\s+/g, "").replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) return undefined;
  return new Uint8Array(Buffer.from(s, "base64"));
}

/** The KEKs of a KEK file, by id: the first line's wraps new keys, all of them unwrap. */
export class KekRing {
  readonly ids: string[];
  private readonly keys: Map<string, Uint8Array>;

  constructor(keks: [string, Uint8Array][]) {
    if (keks.length === 0) throw new KekFileError("no KEK in the file");
    this.ids = keks.map(([id]) => id);
    this.keys = new Map(keks);
  }

  static parse(text: string): KekRing {
    const keks: [string, Uint8Array][] = [];
    text.split(/\r?\n/).forEach((raw, i) => {
      const n = i + 1;
      const line = raw.trim();
      if (!line || line.startsWith("#")) return;
      const at = line.indexOf(":");
      const id = at < 0 ? "" : line.slice(0, at).trim();
      if (!id) throw new KekFileError(`line ${n}: want id:base64`);
      const key = b64Any(line.slice(at + 1));
      if (!key) throw new KekFileError(`line ${n} (KEK ${id}): not base64`);
      if (key.length !== 32) throw new KekFileError(`line ${n} (KEK ${id}): ${key.length} bytes, want 32`);
      if (keks.some(([k]) => k === id)) throw new KekFileError(`line ${n}: KEK id ${id} given twice`);
      keks.push([id, key]);
    });
    return new KekRing(keks);
  }

  static fromFile(path: string): KekRing {
    return KekRing.parse(readFileSync(path, "utf8"));
  }

  /** A data key from its KV value (a JWE under the KEK its kid names). */
  async unwrap(wrapped: string): Promise<Uint8Array> {
    const kid = jweKid(wrapped);
    const kek = this.keys.get(kid);
    if (!kek) throw new JweError(`data key wrapped under KEK ${JSON.stringify(kid)}, which the KEK file lacks`);
    const raw = await decrypt(kek, wrapped);
    if (raw.length !== 32) throw new JweError(`the unwrapped data key has ${raw.length} bytes, want 32`);
    return raw;
  }
}

/**
 * The kid of a compact JWE's protected header, the header checked to be the contract's form (not
 * decrypted yet: the header is bound to the ciphertext as its additional data, so decryption
 * proves it).
 */
export function jweKid(compact: string): string {
  const parts = compact.split(".");
  if (parts.length !== 5 || parts[1] !== "") throw new JweError("not a compact JWE with an empty encrypted key (alg dir)");
  let header;
  try {
    header = decodeProtectedHeader(compact);
  } catch {
    throw new JweError("the protected header does not decode");
  }
  if (header.alg !== ALG || header.enc !== ENC || typeof header.kid !== "string" || "zip" in header || "crit" in header) {
    throw new JweError("unsupported JWE header (want alg dir, enc A256GCM, a kid, no zip)");
  }
  return header.kid;
}

/** Decrypts a compact JWE whose header jweKid checked (jose; dir/A256GCM only). */
async function decrypt(key: Uint8Array, compact: string): Promise<Uint8Array> {
  try {
    const { plaintext } = await compactDecrypt(compact, key, {
      keyManagementAlgorithms: [ALG],
      contentEncryptionAlgorithms: [ENC],
    });
    return plaintext;
  } catch {
    throw new JweError("the JWE does not decrypt under this key (wrong key, or altered)");
  }
}

/** How one event's PII was read: what the kit prints and stores (never the PII itself). */
export type PiiKind =
  | "decrypted"
  | "erased"
  | "expired-or-unknown"
  | "no-key-access"
  | "clear"
  | "omitted"
  | "undecryptable";

export interface PiiRead {
  pii: PiiKind;
  bytes?: number;
  sha256?: string;
  error?: string;
}

/**
 * A KV get of the keys bucket: the value, or null when the key is missing (or deleted/purged).
 * Throws TransientKeyError when the bucket does not answer.
 */
export type KeyGetter = (key: string) => Promise<Uint8Array | null>;

/**
 * Reads an event's PII. kek/getKey undefined: this service may not read keys (no KEK, or no
 * access to the keys bucket), and reads only what the event carries in clear.
 */
export class PiiReader {
  constructor(
    readonly kek?: KekRing,
    readonly getKey?: KeyGetter,
  ) {}

  /** How it was read, and the plaintext VX body when it was decrypted. */
  async read(event: VxBridgeVerificationEvent): Promise<{ read: PiiRead; body?: Uint8Array }> {
    if (event.result !== undefined) return { read: { pii: "clear" } };
    if (event.erased) return { read: { pii: "erased" } };
    if (event.result_encrypted === undefined) return { read: { pii: "omitted" } };
    if (!this.kek || !this.getKey) return { read: { pii: "no-key-access" } };
    const session = event.request_id.toLowerCase();
    const wrapped = await this.getKey(session);
    if (wrapped === null) return { read: { pii: "expired-or-unknown" } };
    const value = Buffer.from(wrapped).toString("latin1");
    if (value === TOMBSTONE) return { read: { pii: "erased" } };
    try {
      const dataKey = await this.kek.unwrap(value);
      // The ciphertext must belong to this session: never decrypt another's as this one's.
      if (jweKid(event.result_encrypted) !== session) throw new JweError("the event's JWE kid is not its request_id");
      const body = await decrypt(dataKey, event.result_encrypted);
      return {
        read: { pii: "decrypted", bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") },
        body,
      };
    } catch (e) {
      if (!(e instanceof JweError)) throw e;
      return { read: { pii: "undecryptable", error: e.message } };
    }
  }
}

/**
 * What this service keeps about each session: one file per request_id (its last status and the
 * SHA-256 of its decrypted VX body: not the PII), deleted on {prefix}.erased.
 */
export class SessionStore {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  save(requestId: string, record: Record<string, unknown>): void {
    const session = requestId.toLowerCase();
    const tmp = join(this.dir, `${session}.json.tmp`);
    const fd = openSync(tmp, "w");
    try {
      writeSync(fd, JSON.stringify(record));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, `${session}.json`));
  }

  /** Deletes every file of the session; how many there were. */
  erase(requestId: string): number {
    const prefix = `${requestId.toLowerCase()}.`;
    let n = 0;
    for (const name of readdirSync(this.dir)) {
      if (!name.startsWith(prefix)) continue;
      rmSync(join(this.dir, name), { force: true });
      n += 1;
    }
    return n;
  }
}
