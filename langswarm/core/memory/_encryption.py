"""Sealed values for encryption at rest: AES-GCM envelopes, and the keyring that holds the keys.

A sealed value is a string, ``enc:v1:<key id>:<base64 of nonce + ciphertext + tag>``, so every
backend stores it as it stores any text. Inside, one byte says how to read the rest (``s``:
UTF-8 text, ``j``: JSON) and the value follows. Each value is bound to associated data the
caller chooses (its session and place), which is not stored: opening it with other associated
data, another key or altered bytes fails instead of returning garbage.

Nonces are 96 bits, random for each value; or, for values the store compares with what it
holds (session metadata, merged key by key), derived from the key, the associated data and
the value (a keyed BLAKE2b), so sealing the same value at the same place again gives the
same text and the store sees no change. Either way two different values never share a nonce
but by a 96-bit collision; a key should seal at most 2**32 values (rotate before).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from .exceptions import (
    MemoryConfigurationError,
    MemoryEncryptionError,
    TransientBackendError,
)

__all__ = [
    "PREFIX",
    "Cipher",
    "KeyFunction",
    "Keyring",
    "Opener",
    "Sealer",
    "StaticKeyring",
    "as_keyring",
    "is_sealed",
]

PREFIX: Final = "enc:v1:"
_NONCE, _TAG = 12, 16
_KEY_SIZES = (16, 24, 32)
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Nonces drawn from the OS at once (one system call for this many values).
_NONCE_BATCH = 64


@runtime_checkable
class Keyring(Protocol):
    """Where keys come from: the key new values are sealed with, and any key by its id.

    ``current()`` is asked once per batch written, mostly on the event loop: keep the current
    key at hand (rotating means changing what it returns). ``get()`` is asked once per key id
    per read, from a worker thread: it may block (a key service). Both must be thread-safe.
    A key id names one key for good: rotating means a new id, not new bytes under an old one.
    """

    def current(self) -> tuple[str, bytes]:
        """The id and key (16, 24 or 32 bytes) that new values are sealed with."""
        ...

    def get(self, key_id: str) -> bytes | None:
        """The key with this id; ``None`` if the keyring does not hold it."""
        ...


#: A keyring as one function: ``provider(None)`` gives the current ``(key id, key)``,
#: ``provider(key_id)`` that key's ``(key id, key)``, or ``None`` if it is unknown.
KeyFunction = Callable[[str | None], tuple[str, bytes] | None]


def check_key(key_id: object, key: object) -> str | None:
    """What is wrong with this key id and key (``None``: nothing)."""
    if not isinstance(key_id, str) or _KEY_ID.fullmatch(key_id) is None:
        return f"key id {key_id!r} is not 1-64 characters of A-Z a-z 0-9 . _ -"
    if not isinstance(key, bytes) or len(key) not in _KEY_SIZES:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        return f"key {key_id!r} must be 16, 24 or 32 bytes, not {size}"
    return None


class StaticKeyring:
    """Keys held in this process: ``StaticKeyring({"k1": key}, current="k1")``.

    :meth:`rotate` adds a key and seals with it from then on; values sealed with older keys
    still open as long as the keyring holds them.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        for key_id, key in keys.items():
            if (problem := check_key(key_id, key)) is not None:
                raise MemoryConfigurationError(problem)
        if current not in keys:
            raise MemoryConfigurationError(f"current key {current!r} is not among the keys")
        self._keys = dict(keys)
        self._current = current
        self._lock = threading.Lock()

    def current(self) -> tuple[str, bytes]:
        with self._lock:
            return self._current, self._keys[self._current]

    def get(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    def rotate(self, key_id: str, key: bytes) -> None:
        """Seal with ``key`` from now on; an id already held must name the same key."""
        if (problem := check_key(key_id, key)) is not None:
            raise MemoryConfigurationError(problem)
        with self._lock:
            if self._keys.get(key_id, key) != key:
                raise MemoryConfigurationError(f"key id {key_id!r} already names another key")
            self._keys[key_id] = key
            self._current = key_id


class _FunctionKeyring:
    """A :data:`KeyFunction` seen as a :class:`Keyring`."""

    def __init__(self, provider: KeyFunction) -> None:
        self._provider = provider

    def current(self) -> tuple[str, bytes]:
        found = self._provider(None)
        if found is None:
            raise MemoryEncryptionError("the key provider gave no current key")
        return found

    def get(self, key_id: str) -> bytes | None:
        found = self._provider(key_id)
        if found is None:
            return None
        if found[0] != key_id:
            raise MemoryEncryptionError(f"asked for key {key_id!r}, the provider gave {found[0]!r}")
        return found[1]


def as_keyring(keyring: Keyring | KeyFunction) -> Keyring:
    """``keyring`` itself, or a function of the :data:`KeyFunction` shape made into one."""
    if isinstance(keyring, Keyring):
        return keyring
    if callable(keyring):
        return _FunctionKeyring(keyring)
    raise MemoryConfigurationError(
        f"keyring must have current() and get(key_id), or be a function of a key id, "
        f"not {type(keyring).__name__}"
    )


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed envelope."""
    return isinstance(value, str) and value.startswith(PREFIX)


def _aes_gcm() -> tuple[Any, type[Exception]]:
    """The AES-GCM class and the error it raises when a value does not authenticate."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise MemoryConfigurationError(
            "encryption at rest needs the 'cryptography' package: "
            "pip install 'langswarm-memory-runtime[encryption]'"
        ) from exc
    return AESGCM, InvalidTag


class Sealer:
    """Seals values with one key (the current one when it was made). One thread at a time."""

    __slots__ = ("_aead", "_nonce_key", "_nonces", "_prefix", "_used", "key_id")

    def __init__(self, key_id: str, key: bytes, aead: Any) -> None:
        self.key_id = key_id
        self._aead = aead
        self._nonce_key = hashlib.blake2b(key, digest_size=32, person=b"langswarm-nonce").digest()
        self._prefix = f"{PREFIX}{key_id}:"
        self._nonces = b""
        self._used = 0

    def seal(self, value: Any, ad: bytes, *, fixed: bool = False) -> str:
        """``value`` (plain JSON-compatible data) sealed and bound to ``ad``; ``fixed``: the
        same value and ``ad`` always give the same text."""
        if value.__class__ is str:
            data = b"s" + value.encode()
        else:
            data = b"j" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        if fixed:
            framed = len(ad).to_bytes(4, "big") + ad + data
            nonce = hashlib.blake2b(framed, digest_size=_NONCE, key=self._nonce_key).digest()
        else:
            if self._used == len(self._nonces):
                self._nonces, self._used = os.urandom(_NONCE * _NONCE_BATCH), 0
            nonce = self._nonces[self._used : self._used + _NONCE]
            self._used += _NONCE
        sealed = nonce + self._aead.encrypt(nonce, data, ad)
        return self._prefix + binascii.b2a_base64(sealed, newline=False).decode()


class Cipher:
    """Seals with the keyring's current key and opens with whichever key a value names.

    The keyring is asked for every batch sealed and, per key id, for every read, so a key it
    no longer holds stops opening anything at once; the AES-GCM state of each key is kept.
    """

    def __init__(self, keyring: Keyring | KeyFunction) -> None:
        self._keyring = as_keyring(keyring)
        self._aead_class, self.invalid = _aes_gcm()
        self._keys: dict[str, tuple[bytes, Any]] = {}

    def sealer(self) -> Sealer:
        """A sealer with the current key (asks the keyring: may block)."""
        try:
            key_id, key = self._keyring.current()
        except MemoryEncryptionError:
            raise
        except Exception as exc:
            raise TransientBackendError(f"the keyring gave no current key: {exc!r}") from exc
        return Sealer(key_id, key, self.aead(key_id, key))

    def opener(self) -> Opener:
        """An opener for one read (asks the keyring for each key id it meets: may block)."""
        return Opener(self)

    def key(self, key_id: str, session_id: str) -> Any:
        """The AES-GCM state of the key the keyring holds under ``key_id``."""
        try:
            key = self._keyring.get(key_id)
        except LookupError:
            key = None
        except MemoryEncryptionError:
            raise
        except Exception as exc:
            raise TransientBackendError(
                f"the keyring failed to give key {key_id!r}: {exc!r}"
            ) from exc
        if key is None:
            raise MemoryEncryptionError(
                f"cannot decrypt session {session_id!r}: key {key_id!r} is not in the keyring"
            )
        return self.aead(key_id, key)

    def aead(self, key_id: str, key: bytes) -> Any:
        """The AES-GCM state for this key, built once per (id, key)."""
        cached = self._keys.get(key_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        if (problem := check_key(key_id, key)) is not None:
            raise MemoryEncryptionError(f"the keyring gave an unusable key: {problem}")
        aead = self._aead_class(key)
        self._keys[key_id] = (key, aead)
        return aead


class Opener:
    """Opens the values of one read. One thread at a time."""

    __slots__ = ("_cipher", "_keys")

    def __init__(self, cipher: Cipher) -> None:
        self._cipher = cipher
        self._keys: dict[str, Any] = {}

    def open(self, value: str, ad: bytes, session_id: str) -> Any:
        """The value sealed in ``value`` (an envelope), bound to ``ad``, of ``session_id``."""
        key_id, _, body = value[len(PREFIX) :].partition(":")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) < _NONCE + _TAG + 1:
            raise MemoryEncryptionError(f"a stored value of session {session_id!r} is malformed")
        aead = self._keys.get(key_id)
        if aead is None:
            aead = self._keys[key_id] = self._cipher.key(key_id, session_id)
        try:
            data = aead.decrypt(raw[:_NONCE], raw[_NONCE:], ad)
        except self._cipher.invalid:
            raise MemoryEncryptionError(
                f"cannot decrypt a stored value of session {session_id!r} with key "
                f"{key_id!r}: the key is wrong, or the value was altered or moved"
            ) from None
        if data[:1] == b"s":
            return data[1:].decode()
        return json.loads(data[1:])
