/**
 * Proof, without the bridge, that the kit's PII reader opens what the contract describes.
 *
 * Run: examples/consumers/typescript/run.sh --self-test   (prints "pii self-test: N passed, 0 failed")
 *
 * It writes a KEK file (two KEKs, comments, both base64 alphabets), wraps a data key and
 * encrypts a VX body into an event exactly as the data-protection contract says (the JWEs are
 * built here by hand from node:crypto's AES-256-GCM, independently of jose, byte for byte as the
 * bridge builds them), then reads them back through the kit's own code path (pii.ts PiiReader),
 * with the keys bucket as a Map. It also covers the tombstone, a missing key, no KEK, the clear
 * and omitted modes, a JWE of another session, an altered ciphertext, an unknown KEK, bad KEK
 * files, and the per-session store's deletion on {prefix}.erased.
 */
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompactEncrypt } from "jose";
import type { VxBridgeVerificationEvent } from "./generated/verification-event.schema.js";
import { KekFileError, KekRing, PiiReader, SessionStore, TransientKeyError } from "./pii.js";

const REQUEST_ID = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"; // upper-case on purpose: keys are lower-case
const SESSION = REQUEST_ID.toLowerCase();
/** Personal data, with non-ASCII and odd spacing: the plaintext must come back byte for byte. */
const BODY = Buffer.from(
  `{"request_id": "${REQUEST_ID}",  "status":"PASS","reference":"r-1",\n "data":{"name":"Zoë Ångström","dob":"1990-01-02"}}`,
);
const b64url = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/**
 * A compact JWE as the bridge makes it: {"alg":"dir","enc":"A256GCM","kid":kid}, empty encrypted
 * key, 12-byte IV, AES-256-GCM, AAD = the ASCII of the base64url protected header.
 */
function seal(key: Uint8Array, kid: string, plaintext: Uint8Array): string {
  const prot = b64url(Buffer.from(JSON.stringify({ alg: "dir", enc: "A256GCM", kid })));
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(prot, "ascii"));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return `${prot}..${b64url(iv)}.${b64url(ct)}.${b64url(c.getAuthTag())}`;
}

function event(fields: Partial<VxBridgeVerificationEvent> = {}): VxBridgeVerificationEvent {
  return {
    schema_version: 2,
    event_id: "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
    type: "completed.pass",
    request_id: REQUEST_ID,
    status: "PASS",
    reference: "r-1",
    received_at: "2025-01-02T03:04:05Z",
    progress: { stops: 1 },
    ...fields,
  };
}

const KEK_NEW = randomBytes(32);
const KEK_OLD = randomBytes(32);
const KEK_TEXT =
  "# KEKs of the bridge (a Kubernetes Secret)\n\n" +
  `k2:${KEK_NEW.toString("base64url")}\n` + // URL-safe, unpadded: wraps
  `  k1 : ${KEK_OLD.toString("base64")}  \n`; // standard, padded: unwraps only

let dir = "";
function readerWith(keys: Map<string, string>): PiiReader {
  const path = join(dir, "kek");
  writeFileSync(path, KEK_TEXT);
  return new PiiReader(KekRing.fromFile(path), async (key) => {
    const v = keys.get(key);
    return v === undefined ? null : new Uint8Array(Buffer.from(v, "ascii"));
  });
}

function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

const tests: Record<string, () => Promise<void> | void> = {
  async decrypts_an_event_under_a_data_key_wrapped_by_hand() {
    const dataKey = randomBytes(32);
    // An older KEK: every KEK of the file unwraps.
    const reader = readerWith(new Map([[SESSION, seal(KEK_OLD, "k1", dataKey)]]));
    const { read, body } = await reader.read(event({ result_encrypted: seal(dataKey, SESSION, BODY) }));
    assert(body && Buffer.from(body).equals(BODY), "the plaintext is the VX body byte for byte");
    assert(
      JSON.stringify(read) === JSON.stringify({ pii: "decrypted", bytes: BODY.length, sha256: sha256(BODY) }),
      `read ${JSON.stringify(read)}`,
    );
  },

  async decrypts_a_data_key_wrapped_by_jose() {
    const dataKey = randomBytes(32);
    const wrapped = await new CompactEncrypt(dataKey).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: "k2" }).encrypt(KEK_NEW);
    const reader = readerWith(new Map([[SESSION, wrapped]]));
    const { read, body } = await reader.read(event({ result_encrypted: seal(dataKey, SESSION, BODY) }));
    assert(read.pii === "decrypted" && body && Buffer.from(body).equals(BODY), read.pii);
  },

  async tombstone_missing_key_and_modes() {
    const jwe = seal(randomBytes(32), SESSION, BODY);
    const reader = readerWith(new Map([[SESSION, "erased"]]));
    assert((await reader.read(event({ result_encrypted: jwe }))).read.pii === "erased", "tombstone");
    assert((await readerWith(new Map()).read(event({ result_encrypted: jwe }))).read.pii === "expired-or-unknown", "missing");
    assert((await new PiiReader().read(event({ result_encrypted: jwe }))).read.pii === "no-key-access", "no KEK");
    assert((await reader.read(event({ erased: true }))).read.pii === "erased", "erased: true");
    assert((await reader.read(event())).read.pii === "omitted", "omitted");
    const clear = await reader.read(event({ schema_version: 1, result: JSON.parse(BODY.toString()) }));
    assert(clear.read.pii === "clear" && clear.body === undefined, "clear");
  },

  async a_keys_bucket_that_does_not_answer_is_transient() {
    const reader = new PiiReader(KekRing.parse(KEK_TEXT), async () => {
      throw new TransientKeyError("TimeoutError");
    });
    let threw = false;
    try {
      await reader.read(event({ result_encrypted: seal(randomBytes(32), SESSION, BODY) }));
    } catch (e) {
      threw = e instanceof TransientKeyError;
    }
    assert(threw, "want TransientKeyError (the kit NAKs the event)");
  },

  async refuses_another_sessions_jwe_an_altered_one_and_an_unknown_kek() {
    const dataKey = randomBytes(32);
    let reader = readerWith(new Map([[SESSION, seal(KEK_NEW, "k2", dataKey)]]));
    // The right key, but the kid of another session.
    let r = await reader.read(event({ result_encrypted: seal(dataKey, "00000000-0000-4000-8000-000000000001", BODY) }));
    assert(r.read.pii === "undecryptable" && r.body === undefined && r.read.error?.includes("kid"), JSON.stringify(r.read));
    const parts = seal(dataKey, SESSION, BODY).split(".");
    const ct = Buffer.from(parts[3], "base64url");
    ct[0] ^= 1;
    parts[3] = b64url(ct);
    r = await reader.read(event({ result_encrypted: parts.join(".") }));
    assert(r.read.pii === "undecryptable" && r.body === undefined, "altered ciphertext");
    reader = readerWith(new Map([[SESSION, seal(randomBytes(32), "k9", dataKey)]]));
    r = await reader.read(event({ result_encrypted: seal(dataKey, SESSION, BODY) }));
    assert(r.read.pii === "undecryptable" && r.read.error?.includes("k9"), "unknown KEK");
    assert(!JSON.stringify(r.read).includes("Zo"), "the PII never shows in what the kit prints");
  },

  bad_kek_files() {
    const cases: [string, string][] = [
      ["", "no KEK"],
      ["k1\n", "id:base64"],
      ["k1:@@@\n", "not base64"],
      [`k1:${Buffer.from("short").toString("base64")}\n`, "5 bytes"],
      [`k1:${KEK_OLD.toString("base64")}\nk1:${KEK_NEW.toString("base64")}\n`, "twice"],
    ];
    for (const [text, want] of cases) {
      let msg = "";
      try {
        KekRing.parse(text);
      } catch (e) {
        assert(e instanceof KekFileError, `a KekFileError for ${JSON.stringify(text)}`);
        msg = e.message;
      }
      assert(msg.includes(want), `${JSON.stringify(text)}: ${msg || "accepted"}`);
      assert(!msg.includes(KEK_OLD.toString("base64")), "no key bytes in the message");
    }
    assert(JSON.stringify(KekRing.parse(KEK_TEXT).ids) === '["k2","k1"]', "ids in file order");
  },

  session_store_erase() {
    const store = new SessionStore(join(dir, "sessions"));
    store.save(REQUEST_ID, { status: "PASS", sha256: sha256(BODY) });
    store.save("00000000-0000-4000-8000-000000000001", { status: "FAIL" });
    assert(JSON.parse(readFileSync(join(dir, "sessions", `${SESSION}.json`), "utf8")).status === "PASS", "saved");
    assert(store.erase(SESSION) === 1, "one file deleted");
    assert(store.erase(SESSION) === 0, "idempotent");
    assert(
      JSON.stringify(readdirSync(join(dir, "sessions"))) === '["00000000-0000-4000-8000-000000000001.json"]',
      "the other session's file is kept",
    );
  },
};

let passed = 0;
let failed = 0;
for (const [name, fn] of Object.entries(tests)) {
  dir = mkdtempSync(join(tmpdir(), "vx-pii-test-"));
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.error(`FAIL ${name}: ${e instanceof Error ? e.stack : String(e)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(`pii self-test: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
