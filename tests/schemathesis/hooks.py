"""Schemathesis hooks for tests/tests/e2e/schemathesis.rs: sign every generated request.

Each request gets a request-bound v2 signature (API.md, "Signatures"):

    X-HMAC-Signature: t=<unix seconds>,v2=<hex>
    hex = HMAC-SHA256(secret, "v2\\n" + METHOD + "\\n" + path + "\\n" + query + "\\n" + t + "\\n" + body)

The MAC is computed on the prepared `requests` request, the bytes that go on the wire: the
path exactly as on the request line (percent-encoded, without the query), the raw query
string and the encoded body. It is a `requests` auth callable that a `before_call` hook
hands to the transport, so it runs after schemathesis has serialised the case.

A server refuses a timestamped signature it has seen before (401 "replay"). Schemathesis
sends the same request more than once (examples, shrinking, the same empty GET for each
phase), so for a request signed before the hook takes another `t`: the current second if
unused, else the nearest unused second before it, then after it, all well within the
server's +-300 s window. Two requests that differ in anything signed get different MACs
whatever their `t`.

Environment: LOGCANARY_TEST_SECRET (default "test-secret", test_support::TEST_SECRET) and,
optionally, LOGCANARY_TEST_KEY_ID (sent as X-HMAC-Key-Id).
"""

import hashlib
import hmac
import os
import threading
import time
from urllib.parse import urlsplit

import requests
import schemathesis

SECRET = os.environ.get("LOGCANARY_TEST_SECRET", "test-secret").encode()
KEY_ID = os.environ.get("LOGCANARY_TEST_KEY_ID")
# How far from now a timestamp may be taken: well inside LOGCANARY_HMAC_TOLERANCE_SECS (300).
MAX_SKEW_SECS = 240

_lock = threading.Lock()
_used: set[str] = set()


def _mac(method: str, path: str, query: str, t: int, body: bytes) -> str:
    message = f"v2\n{method}\n{path}\n{query}\n{t}\n".encode() + body
    return hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def sign(method: str, path: str, query: str, body: bytes) -> str:
    """The header value for one request, with a (method, path, query, body, t) not used before."""
    now = int(time.time())
    offsets = [0]
    for step in range(1, MAX_SKEW_SECS + 1):
        offsets += [-step, step]
    with _lock:
        for offset in offsets:
            t = now + offset
            mac = _mac(method, path, query, t, body)
            if mac not in _used:
                _used.add(mac)
                return f"t={t},v2={mac}"
    raise RuntimeError(
        f"{method} {path}?{query} was signed at every second within {MAX_SKEW_SECS} s of now"
    )


class SignV2(requests.auth.AuthBase):
    """Signs the prepared request: method, request-line path and query, and the final body."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            # Send the very bytes that are signed (requests would leave the encoding to urllib3).
            body = body.encode("utf-8")
            request.body = body
        elif not isinstance(body, (bytes, bytearray)):
            raise TypeError(f"cannot sign a streamed body ({type(body).__name__})")
        parts = urlsplit(request.url)
        path = parts.path or "/"
        request.headers["X-HMAC-Signature"] = sign(request.method, path, parts.query, bytes(body))
        if KEY_ID:
            request.headers["X-HMAC-Key-Id"] = KEY_ID
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    # Passed on to `requests.Session.request(auth=...)`: applied after the body is encoded.
    kwargs["auth"] = SignV2()


@schemathesis.check
def signature_accepted(ctx, response, case):
    """Every request carries a valid, fresh signature of a key with every scope, so a 401
    means the signing above is broken (and the run would only test the authentication)."""
    if response.status_code == 401:
        raise AssertionError(f"A signed request was refused with 401: {response.text[:300]}")
