"""Proof, without the bridge, that the kit's PII reader opens what the contract describes.

Run: examples/consumers/python/run.sh --self-test   (prints "pii self-test: N passed, 0 failed")

It writes a KEK file (two KEKs, comments, both base64 alphabets), wraps a data key and encrypts a
VX body into an event exactly as the data-protection contract says (the JWEs are built here by
hand from AES-256-GCM, independently of jwcrypto, byte for byte as the bridge builds them), then
reads them back through the kit's own code path (vx_pii.PiiReader, the generated event model),
with the keys bucket as a dict. It also covers the tombstone, a missing key, no KEK, the clear
and omitted modes, a JWE of another session, an altered ciphertext, an unknown KEK, bad KEK
files, and the per-session store's deletion on {prefix}.erased.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwe, jwk

from vx_events.verification_event_schema import VxBridgeVerificationEvent
from vx_pii import KekFileError, KekRing, PiiReader, SessionStore, TransientKeyError

REQUEST_ID = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"  # upper-case on purpose: keys are lower-case
SESSION = REQUEST_ID.lower()
# Personal data, with non-ASCII and odd spacing: the plaintext must come back byte for byte.
BODY = ('{"request_id": "%s",  "status":"PASS","reference":"r-1",\n "data":{"name":"Zoë Ångström",'
        '"dob":"1990-01-02"}}' % REQUEST_ID).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seal(key: bytes, kid: str, plaintext: bytes) -> str:
    """A compact JWE as the bridge makes it: {"alg":"dir","enc":"A256GCM","kid":kid}, empty
    encrypted key, 12-byte IV, AES-256-GCM, AAD = the ASCII of the base64url protected header."""
    protected = b64url(json.dumps({"alg": "dir", "enc": "A256GCM", "kid": kid}, separators=(",", ":")).encode())
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, protected.encode("ascii"))
    return f"{protected}..{b64url(iv)}.{b64url(sealed[:-16])}.{b64url(sealed[-16:])}"


def event(**fields) -> VxBridgeVerificationEvent:
    envelope = {"schema_version": 2, "event_id": "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", "type": "completed.pass", "request_id": REQUEST_ID,
                "status": "PASS", "reference": "r-1", "received_at": "2025-01-02T03:04:05Z",
                "progress": {"stops": 1}}
    envelope.update(fields)
    return VxBridgeVerificationEvent.model_validate_json(json.dumps(envelope))


KEK_NEW, KEK_OLD = os.urandom(32), os.urandom(32)
KEK_TEXT = (
    "# KEKs of the bridge (a Kubernetes Secret)\n\n"
    f"k2:{base64.urlsafe_b64encode(KEK_NEW).decode().rstrip('=')}\n"  # URL-safe, unpadded: wraps
    f"  k1 : {base64.b64encode(KEK_OLD).decode()}  \n"  # standard, padded: unwraps only
)


def reader_with(keys: dict[str, bytes], tmp: Path) -> PiiReader:
    path = tmp / "kek"
    path.write_text(KEK_TEXT)

    async def get_key(key: str) -> bytes | None:
        return keys.get(key)

    return PiiReader(KekRing.from_file(path), get_key)


def run(read_coro):
    return asyncio.run(read_coro)


def test_decrypts_an_event_under_a_data_key_wrapped_by_hand(tmp: Path) -> None:
    data_key = os.urandom(32)
    keys = {SESSION: seal(KEK_OLD, "k1", data_key).encode()}  # an older KEK: every KEK unwraps
    pii, body = run(reader_with(keys, tmp).read(event(result_encrypted=seal(data_key, SESSION, BODY))))
    assert body == BODY, "the plaintext is the VX body byte for byte"
    assert (pii.kind, pii.size, pii.sha256) == ("decrypted", len(BODY), hashlib.sha256(BODY).hexdigest())
    assert pii.line() == {"pii": "decrypted", "bytes": len(BODY), "sha256": hashlib.sha256(BODY).hexdigest()}


def test_decrypts_a_data_key_wrapped_by_jwcrypto(tmp: Path) -> None:
    data_key = os.urandom(32)
    token = jwe.JWE(data_key, protected={"alg": "dir", "enc": "A256GCM", "kid": "k2"})
    token.add_recipient(jwk.JWK(kty="oct", k=b64url(KEK_NEW)))
    keys = {SESSION: token.serialize(compact=True).encode()}
    pii, body = run(reader_with(keys, tmp).read(event(result_encrypted=seal(data_key, SESSION, BODY))))
    assert pii.kind == "decrypted" and body == BODY


def test_tombstone_missing_key_and_modes(tmp: Path) -> None:
    jwe_text = seal(os.urandom(32), SESSION, BODY)
    reader = reader_with({SESSION: b"erased"}, tmp)
    assert run(reader.read(event(result_encrypted=jwe_text)))[0].kind == "erased"
    assert run(reader_with({}, tmp).read(event(result_encrypted=jwe_text)))[0].kind == "expired-or-unknown"
    assert run(PiiReader(None, None).read(event(result_encrypted=jwe_text)))[0].kind == "no-key-access"
    assert run(reader.read(event(erased=True)))[0].kind == "erased"
    assert run(reader.read(event()))[0].kind == "omitted"
    pii, body = run(reader.read(event(schema_version=1, result=json.loads(BODY))))
    assert (pii.kind, body) == ("clear", None)


def test_a_keys_bucket_that_does_not_answer_is_transient(tmp: Path) -> None:
    async def get_key(key: str) -> bytes | None:
        raise TransientKeyError("TimeoutError")

    reader = PiiReader(KekRing.parse(KEK_TEXT), get_key)
    try:
        run(reader.read(event(result_encrypted=seal(os.urandom(32), SESSION, BODY))))
    except TransientKeyError:
        pass
    else:
        raise AssertionError("want TransientKeyError (the kit NAKs the event)")


def test_refuses_another_sessions_jwe_an_altered_one_and_an_unknown_kek(tmp: Path) -> None:
    data_key = os.urandom(32)
    keys = {SESSION: seal(KEK_NEW, "k2", data_key).encode()}
    reader = reader_with(keys, tmp)
    other = seal(data_key, "00000000-0000-4000-8000-000000000001", BODY)  # right key, wrong kid
    pii, body = run(reader.read(event(result_encrypted=other)))
    assert (pii.kind, body) == ("undecryptable", None) and "kid" in pii.error
    good = seal(data_key, SESSION, BODY).split(".")
    good[3] = b64url(b"x" + base64.urlsafe_b64decode(good[3] + "==")[1:])
    pii, body = run(reader.read(event(result_encrypted=".".join(good))))
    assert (pii.kind, body) == ("undecryptable", None)
    reader = reader_with({SESSION: seal(os.urandom(32), "k9", data_key).encode()}, tmp)
    pii, _ = run(reader.read(event(result_encrypted=seal(data_key, SESSION, BODY))))
    assert pii.kind == "undecryptable" and "k9" in pii.error
    # The PII never shows in what the kit prints.
    assert "Zo" not in json.dumps(pii.line())


def test_bad_kek_files() -> None:
    for text, want in [("", "no KEK"), ("k1\n", "id:base64"), ("k1:@@@\n", "not base64"),
                       (f"k1:{base64.b64encode(b'short').decode()}\n", "5 bytes"),
                       (f"k1:{base64.b64encode(KEK_OLD).decode()}\nk1:{base64.b64encode(KEK_NEW).decode()}\n", "twice")]:
        try:
            KekRing.parse(text)
        except KekFileError as e:
            assert want in str(e), (text, str(e))
            assert base64.b64encode(KEK_OLD).decode() not in str(e)
        else:
            raise AssertionError(f"accepted {text!r}")
    assert KekRing.parse(KEK_TEXT).ids == ["k2", "k1"]


def test_session_store_erase(tmp: Path) -> None:
    store = SessionStore(tmp / "sessions")
    store.save(REQUEST_ID, {"status": "PASS", "sha256": hashlib.sha256(BODY).hexdigest()})
    store.save("00000000-0000-4000-8000-000000000001", {"status": "FAIL"})
    assert json.loads((tmp / "sessions" / f"{SESSION}.json").read_text())["status"] == "PASS"
    assert store.erase(SESSION) == 1
    assert store.erase(SESSION) == 0, "idempotent"
    assert [p.name for p in (tmp / "sessions").iterdir()] == ["00000000-0000-4000-8000-000000000001.json"]


def main() -> int:
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_")]
    passed = failed = 0
    for name, fn in tests:
        with tempfile.TemporaryDirectory() as d:
            try:
                fn(Path(d)) if fn.__code__.co_argcount else fn()
            except Exception:
                failed += 1
                print(f"FAIL {name}", file=sys.stderr)
                traceback.print_exc()
            else:
                passed += 1
                print(f"ok   {name}")
    print(f"pii self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
