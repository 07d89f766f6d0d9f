"""The consumer kit's PII reader and per-session store (Python, jwcrypto).

vx-bridge's events carry their decision in clear and the VX body (personal data) encrypted
(`events.pii = "encrypted"`, schema_version 2): `result_encrypted` is a compact JWE (alg dir,
enc A256GCM, protected header kid = the lower-case request_id) under the session's data key.
The data key is the value of key <lower-case request_id> in the JetStream KV bucket VX_KEYS: a
JWE (alg dir, enc A256GCM, kid = a KEK's id) whose plaintext is the 32 key bytes; the value
`erased` is a tombstone; a missing key is past retention (or never existed). The KEKs come from
a file, one `id:base64` per line (as Kubernetes mounts a Secret).

A service needs a KEK and read access to `$KV.VX_KEYS.>` to read PII; every other consumer works
on the decision fields alone. Nothing here prints, logs or stores the PII: only its length and
SHA-256. No I/O but the KEK file, the KV get passed in and the session store's directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from jwcrypto import jwe, jwk
from jwcrypto.common import JWException

# The value of a data key that was erased ({prefix}.erase): a tombstone.
TOMBSTONE = b"erased"
ALG, ENC = "dir", "A256GCM"


class KekFileError(ValueError):
    """A KEK file that cannot be used; the message names the line, never key bytes."""


def _b64_any(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    s = "".join(text.split()).replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _oct_key(raw: bytes) -> jwk.JWK:
    return jwk.JWK(kty="oct", k=_b64url(raw))


class KekRing:
    """The KEKs of a KEK file, by id: the first line's wraps new keys, all of them unwrap."""

    def __init__(self, keks: list[tuple[str, bytes]]) -> None:
        if not keks:
            raise KekFileError("no KEK in the file")
        self.ids = [kid for kid, _ in keks]
        self._keys = {kid: _oct_key(raw) for kid, raw in keks}

    @classmethod
    def parse(cls, text: str) -> "KekRing":
        keks: list[tuple[str, bytes]] = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kid, sep, b64 = line.partition(":")
            kid = kid.strip()
            if not sep or not kid:
                raise KekFileError(f"line {n}: want id:base64")
            try:
                raw = _b64_any(b64)
            except (binascii.Error, ValueError):
                raise KekFileError(f"line {n} (KEK {kid}): not base64") from None
            if len(raw) != 32:
                raise KekFileError(f"line {n} (KEK {kid}): {len(raw)} bytes, want 32")
            if any(kid == k for k, _ in keks):
                raise KekFileError(f"line {n}: KEK id {kid} given twice")
            keks.append((kid, raw))
        return cls(keks)

    @classmethod
    def from_file(cls, path: str | Path) -> "KekRing":
        return cls.parse(Path(path).read_text())

    def unwrap(self, wrapped: str) -> bytes:
        """A data key from its KV value (a JWE under the KEK its kid names)."""
        header = jwe_header(wrapped)
        key = self._keys.get(header.get("kid", ""))
        if key is None:
            raise JweError(f"data key wrapped under KEK {header.get('kid')!r}, which the KEK file lacks")
        raw = decrypt(key, wrapped)
        if len(raw) != 32:
            raise JweError(f"the unwrapped data key has {len(raw)} bytes, want 32")
        return raw


class JweError(Exception):
    """A JWE that is not of the contract's form or does not decrypt. Never carries key or plaintext bytes."""


def jwe_header(compact: str) -> dict[str, Any]:
    """The protected header of a compact JWE, checked to be the contract's form (not decrypted yet:
    the header is bound to the ciphertext as its additional data, so decryption proves it)."""
    parts = compact.split(".")
    if len(parts) != 5 or parts[1] != "":
        raise JweError("not a compact JWE with an empty encrypted key (alg dir)")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError):
        raise JweError("the protected header does not decode") from None
    if not isinstance(header, dict) or header.get("alg") != ALG or header.get("enc") != ENC \
            or not isinstance(header.get("kid"), str) or "zip" in header or "crit" in header:
        raise JweError("unsupported JWE header (want alg dir, enc A256GCM, a kid, no zip)")
    return header


def decrypt(key: jwk.JWK, compact: str) -> bytes:
    """Decrypts a compact JWE whose header was checked by jwe_header (jwcrypto; dir/A256GCM only)."""
    token = jwe.JWE()
    token.allowed_algs = [ALG, ENC]
    try:
        token.deserialize(compact, key=key)
    except JWException:
        raise JweError("the JWE does not decrypt under this key (wrong key, or altered)") from None
    return token.payload


@dataclass
class PiiRead:
    """How one event's PII was read: what the kit prints and stores (never the PII itself).
    kind: decrypted, erased, expired-or-unknown, no-key-access, clear, omitted, undecryptable."""

    kind: str
    size: int | None = None
    sha256: str | None = None
    error: str | None = None

    def line(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pii": self.kind}
        if self.size is not None:
            out["bytes"] = self.size
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.error is not None:
            out["error"] = self.error
        return out


class TransientKeyError(Exception):
    """The keys bucket did not answer (timeout, connection): NAK the event and try again later."""


# A KV get of the keys bucket: the value, or None when the key is missing (or deleted/purged).
# Raises TransientKeyError when the bucket does not answer.
KeyGetter = Callable[[str], Awaitable[bytes | None]]


class PiiReader:
    """Reads an event's PII. kek/get_key None: this service may not read keys (no KEK, or no
    access to the keys bucket), and reads only what the event carries in clear."""

    def __init__(self, kek: KekRing | None, get_key: KeyGetter | None) -> None:
        self.kek = kek
        self.get_key = get_key

    async def read(self, event: Any) -> tuple[PiiRead, bytes | None]:
        """(how it was read, the plaintext VX body or None). `event` is a VxBridgeVerificationEvent."""
        if event.result is not None:
            return PiiRead("clear"), None
        if event.erased:
            return PiiRead("erased"), None
        if event.result_encrypted is None:
            return PiiRead("omitted"), None
        if self.kek is None or self.get_key is None:
            return PiiRead("no-key-access"), None
        session = event.request_id.lower()
        wrapped = await self.get_key(session)
        if wrapped is None:
            return PiiRead("expired-or-unknown"), None
        if wrapped == TOMBSTONE:
            return PiiRead("erased"), None
        try:
            data_key = _oct_key(self.kek.unwrap(wrapped.decode("ascii")))
            header = jwe_header(event.result_encrypted)
            if header["kid"] != session:
                # The ciphertext belongs to another session: never decrypt it as this one's.
                raise JweError("the event's JWE kid is not its request_id")
            body = decrypt(data_key, event.result_encrypted)
        except (JweError, UnicodeDecodeError) as e:
            return PiiRead("undecryptable", error=str(e)), None
        return PiiRead("decrypted", size=len(body), sha256=hashlib.sha256(body).hexdigest()), body


class SessionStore:
    """What this service keeps about each session: one file per request_id (its last status and
    the SHA-256 of its decrypted VX body: not the PII), deleted on {prefix}.erased."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def save(self, request_id: str, record: dict[str, Any]) -> None:
        session = request_id.lower()
        tmp = self.dir / f"{session}.json.tmp"
        with tmp.open("w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.dir / f"{session}.json")

    def erase(self, request_id: str) -> int:
        """Deletes every file of the session; how many there were."""
        session = request_id.lower()
        n = 0
        for p in list(self.dir.glob(f"{session}.*")):
            p.unlink(missing_ok=True)
            n += 1
        return n
