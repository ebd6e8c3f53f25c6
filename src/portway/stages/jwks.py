"""JSON Web Key Sets for the JWT and Cognito user pool authorizers: where an issuer's signing keys come from.

A :class:`KeySet` holds one issuer's public keys by ``kid``. Its keys come from one :class:`KeySetSource`:

- ``DISCOVERY``: the issuer's OpenID configuration (``{issuer}/.well-known/openid-configuration``, or a
  scheme's ``openIdConnectUrl``), whose ``jwks_uri`` names the key set, as an HTTP API's JWT authorizer does;
- ``JWKS_URL``: a key set URL, as a Cognito user pool's (``{issuer}/.well-known/jwks.json``), or one given
  with ``x-portway-jwks``;
- ``FILE``: a key set in a local file (``x-portway-jwks: keys/jwks.json``), read when the gateway is built.

Remote key sets are fetched on first use, then again when a token names a ``kid`` the set does not hold, when
the set is older than :data:`MAX_AGE_S`, or while the issuer could not be reached: never more than once per
:data:`REFETCH_INTERVAL_S`, so a flood of tokens with made-up ``kid`` values cannot hammer the issuer, and
all requests waiting for a key share one fetch. A fetch has :data:`FETCH_TIMEOUT_S` and reads at most
:data:`MAX_JWKS_BYTES` (HTTP API quotas: "Timeout for JSON Web Key Set endpoint 1500 ms", "Response size
from JSON Web Key Set endpoint 150000 bytes", "Timeout for OpenID Connect discovery endpoint 1500 ms").
An issuer that cannot be reached is logged once (an error) and its recovery once (a warning); the keys
fetched before stay in use meanwhile.

Accepted keys: ``RSA`` (RS256, RS384, RS512: what AWS accepts) and, beyond AWS, ``EC`` (ES256 on P-256,
ES384 on P-384). Symmetric (``oct``) keys are never taken from a key set: a shared secret is no public key.
A key must have a ``kid`` (API Gateway picks the key by the token's ``kid``), and a ``use`` other than
``sig`` or an ``alg`` outside those above rules it out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, RSAKey
from joserfc.jws import JWSRegistry

__all__ = [
    "ACCEPTED_ALGORITHMS",
    "DISCOVERY_PATH",
    "FETCH_TIMEOUT_S",
    "MAX_AGE_S",
    "MAX_JWKS_BYTES",
    "REFETCH_INTERVAL_S",
    "KeySet",
    "KeySetError",
    "KeySetSource",
    "SourceKind",
    "VerifyingKey",
    "parse_jwks",
    "read_jwks_file",
]

log = logging.getLogger("portway.auth")

FETCH_TIMEOUT_S = 1.5
MAX_JWKS_BYTES = 150_000
REFETCH_INTERVAL_S = 10.0  # at most one fetch per key set in this many seconds
MAX_AGE_S = 3600.0  # a key set this old is fetched again (on use), so keys the issuer dropped stop working
DISCOVERY_PATH = "/.well-known/openid-configuration"

# Key type -> the algorithms a key of that type may verify. HS* never: no shared secrets in a key set.
_ALGORITHMS_BY_KEY_TYPE: dict[str, tuple[str, ...]] = {
    "RSA": ("RS256", "RS384", "RS512"),
    "EC": ("ES256", "ES384"),
}
ACCEPTED_ALGORITHMS = frozenset(a for algs in _ALGORITHMS_BY_KEY_TYPE.values() for a in algs)
_KEY_CLASSES: dict[str, type[RSAKey] | type[ECKey]] = {"RSA": RSAKey, "EC": ECKey}
# Private members: a key set publishes public keys; whatever else a file holds is not imported.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeySetError(Exception):
    """A key set (or an OpenID configuration) could not be fetched, read or understood."""


class SourceKind(StrEnum):
    DISCOVERY = "discovery"  # an OpenID configuration URL, whose jwks_uri names the key set
    JWKS_URL = "jwks_url"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class KeySetSource:
    """Where a key set comes from: a URL (``DISCOVERY``, ``JWKS_URL``) or an absolute file path."""

    kind: SourceKind
    location: str

    def describe(self) -> str:
        if self.kind is SourceKind.DISCOVERY:
            return f"the OpenID configuration {self.location}"
        if self.kind is SourceKind.FILE:
            return f"the key set file {self.location}"
        return f"the key set {self.location}"


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """One public key of a set, with the algorithms it may verify (name -> joserfc's algorithm)."""

    kid: str
    key: Key
    algorithms: Mapping[str, JWSAlgModel]
    fingerprint: bytes  # the key's public members, canonical: tells a changed key set from the same one


def parse_jwks(raw: bytes) -> tuple[dict[str, VerifyingKey], list[str]]:
    """The usable keys of a JWKS document by ``kid``, and why each other key was left out.

    Raises :class:`KeySetError` when ``raw`` is not a JSON object with a ``keys`` list.

    >>> parse_jwks(b'{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}')
    ({}, ["key 's': key type 'oct' is not accepted (RSA or EC keys only)"])
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeySetError(f"not JSON ({exc})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeySetError("not a JSON Web Key Set: no 'keys' list")
    keys: dict[str, VerifyingKey] = {}
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        found = _verifying_key(entry, index)
        if isinstance(found, str):
            skipped.append(found)
        elif found.kid in keys:
            skipped.append(f"key {found.kid!r}: a second key with the same kid (the first one is used)")
        else:
            keys[found.kid] = found
    return keys, skipped


def _verifying_key(entry: Any, index: int) -> VerifyingKey | str:
    if not isinstance(entry, dict):
        return f"key #{index}: not a JSON object"
    kid = entry.get("kid")
    label = f"key {kid!r}" if isinstance(kid, str) else f"key #{index}"
    kty = entry.get("kty")
    if kty not in _KEY_CLASSES:
        return f"{label}: key type {kty!r} is not accepted (RSA or EC keys only)"
    if not isinstance(kid, str) or not kid:
        return f"{label}: no kid (tokens name their key by kid)"
    use = entry.get("use")
    if use is not None and use != "sig":
        return f"{label}: use {use!r} is not 'sig'"
    public = {name: value for name, value in entry.items() if name not in _PRIVATE_MEMBERS}
    try:
        key = _KEY_CLASSES[kty].import_key(public)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        return f"{label}: not a valid {kty} key ({exc})"
    algorithms: dict[str, JWSAlgModel] = {}
    for name in _ALGORITHMS_BY_KEY_TYPE[kty]:
        model = JWSRegistry.algorithms[name]
        try:
            model.check_key(key)  # key type, curve, the key's own "alg" and "use"
        except JoseError:
            continue
        algorithms[name] = model
    if not algorithms:
        accepted = ", ".join(sorted(ACCEPTED_ALGORITHMS))
        return f"{label}: its alg {entry.get('alg')!r} is not accepted ({accepted})"
    fingerprint = orjson.dumps(public, option=orjson.OPT_SORT_KEYS)
    return VerifyingKey(kid, key, algorithms, fingerprint)


def read_jwks_file(path: Path) -> bytes:
    """A key set file's bytes; over :data:`MAX_JWKS_BYTES` or unreadable raises :class:`KeySetError`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise KeySetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_JWKS_BYTES:
        raise KeySetError(f"{path} is over {MAX_JWKS_BYTES} bytes")
    return raw


class KeySet:
    """One issuer's signing keys, fetched from their :class:`KeySetSource` when needed (see the module).

    ``find(kid)`` is the one call the authorizers make; ``generation`` grows whenever the keys change, so a
    token verified with an older generation is verified again. ``fetches`` counts the attempts.
    """

    def __init__(
        self,
        source: KeySetSource,
        clock: Callable[[], float] = time.time,
        *,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
        refetch_interval_s: float = REFETCH_INTERVAL_S,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self.source = source
        self.clock = clock
        self.fetch_timeout_s = fetch_timeout_s
        self.refetch_interval_s = refetch_interval_s
        self.max_age_s = max_age_s
        self.keys: dict[str, VerifyingKey] = {}
        self.generation = 0
        self.loaded_at: float | None = None  # when keys were last read successfully
        self.fetches = 0
        self.down_since: float | None = None  # the issuer (or file) has failed since then
        self.last_error: str | None = None
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """Keys were read at least once (an issuer down since then still has its old keys used)."""
        return self.loaded_at is not None

    def load_now(self) -> None:
        """Read a ``FILE`` source at once (when the gateway is built); raises :class:`KeySetError`."""
        raw = read_jwks_file(Path(self.source.location))
        keys, skipped = parse_jwks(raw)
        self._install(keys, skipped, self.clock())

    async def find(self, kid: str) -> VerifyingKey | None:
        """The key named ``kid``. A set that lacks it (or was never loaded) is fetched first; a set older
        than ``max_age_s`` is fetched again in the background."""
        key = self.keys.get(kid)
        if key is not None:
            loaded_at = self.loaded_at
            if loaded_at is not None and self.clock() - loaded_at >= self.max_age_s:
                self._start_refresh()  # in the background: the key in hand is still good meanwhile
            return key
        await self.refresh()
        return self.keys.get(kid)

    async def refresh(self) -> None:
        """Read the keys again, unless an attempt was made under ``refetch_interval_s`` ago (then return at
        once) or one is under way (then wait for it). Never raises: failures are logged and kept in
        ``last_error``."""
        task = self._start_refresh()
        if task is not None:
            await asyncio.shield(task)  # a request that goes away does not cancel the fetch others wait for

    def _start_refresh(self) -> asyncio.Task[None] | None:
        """The fetch under way, or a new one if the last attempt is old enough; None when it is too soon."""
        loop = asyncio.get_running_loop()
        inflight = self._inflight
        if inflight is not None and not inflight.done() and inflight.get_loop() is loop:
            return inflight
        now = self.clock()
        if self._last_attempt is not None and now - self._last_attempt < self.refetch_interval_s:
            return None
        self._last_attempt = now
        self._inflight = loop.create_task(self._refresh())
        return self._inflight

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            raw = await self._read()
            keys, skipped = parse_jwks(raw)
        except Exception as exc:  # whatever goes wrong reading the keys counts as the issuer being down
            self._failed(exc)
            return
        self._install(keys, skipped, self.clock())

    def _install(self, keys: dict[str, VerifyingKey], skipped: list[str], now: float) -> None:
        if self.down_since is not None:
            log.warning(
                "%s: readable again after %.1f s", self.source.describe(), time.monotonic() - self.down_since
            )
            self.down_since = None
        self.last_error = None
        if not self.available or _fingerprints(keys) != _fingerprints(self.keys):
            self.generation += 1
            for why in skipped:  # said once per change of the set, not at every fetch
                log.warning("%s: %s", self.source.describe(), why)
            if not keys:
                log.warning("%s holds no key Portway can verify tokens with", self.source.describe())
        self.keys = keys
        self.loaded_at = now

    def _failed(self, exc: BaseException) -> None:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            why = f"no answer within {self.fetch_timeout_s:g} s"
        self.last_error = why
        if self.down_since is None:
            self.down_since = time.monotonic()
            held = (
                f"still using the {len(self.keys)} keys read before" if self.available else "refusing tokens"
            )
            log.error(
                "%s could not be read (%s); %s until it is back (tried at most every %g s)",
                self.source.describe(),
                why,
                held,
                self.refetch_interval_s,
            )
        else:
            log.debug("%s still unreadable: %s", self.source.describe(), why)

    async def _read(self) -> bytes:
        if self.source.kind is SourceKind.FILE:
            return await asyncio.to_thread(read_jwks_file, Path(self.source.location))
        if self.source.kind is SourceKind.JWKS_URL:
            return await self._fetch(self.source.location)
        configuration = await self._fetch(self.source.location)
        try:
            document = orjson.loads(configuration)
        except orjson.JSONDecodeError:
            raise KeySetError(f"{self.source.location} is not JSON") from None
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise KeySetError(f"{self.source.location} names no http(s) jwks_uri")
        return await self._fetch(jwks_uri)

    async def _fetch(self, url: str) -> bytes:
        # Imported on first use, as the HTTP proxy does: APIs without JWT routes do not pay aiohttp's import.
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.fetch_timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.get(url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status != 200:
                raise KeySetError(f"{url} answered {response.status}")
            if response.content_length is not None and response.content_length > MAX_JWKS_BYTES:
                raise KeySetError(f"{url} sent {response.content_length} bytes, over {MAX_JWKS_BYTES}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(16_384):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise KeySetError(f"{url} sent over {MAX_JWKS_BYTES} bytes")
            return bytes(body)


def _fingerprints(keys: Mapping[str, VerifyingKey]) -> set[tuple[str, bytes]]:
    return {(kid, key.fingerprint) for kid, key in keys.items()}
