"""A small HTTP client for Spillway's RL-bridge protocol.

Uses only ``urllib.request`` so the agent needs nothing beyond the standard
library and numpy. Every call returns plain Python data (dicts, lists,
floats) decoded from JSON. Any non-2xx answer raises
:class:`SpillwayHTTPError` carrying the status code and the server's
``{"error": "..."}`` message, so a caller sees *why* the engine refused.
"""

import json
import urllib.error
import urllib.parse
import urllib.request


class SpillwayError(Exception):
    """Base class of every error raised while talking to the engine."""


class SpillwayHTTPError(SpillwayError):
    """The engine answered with a non-2xx status.

    Attributes:
        status: the HTTP status code (e.g. 404, 409).
        message: the ``error`` field of the JSON body, or the raw body text
            when it was not JSON.
        method, path: the request that failed, for the error text.
    """

    def __init__(self, status, message, method, path):
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


class SpillwayConnectionError(SpillwayError):
    """The engine could not be reached (refused, timed out, bad URL)."""


def read_token_file(path):
    """Return the bearer token stored in ``path``, surrounding whitespace stripped."""
    with open(path, "r", encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise SpillwayError(f"token file {path} is empty")
    return token


class SpillwayClient:
    """Client of one engine (or simulator) at ``base_url``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8082`` (a trailing slash is fine).
        token: optional bearer token, sent as ``Authorization: Bearer TOKEN``
            on every request.
        timeout_s: per-request timeout in seconds.
    """

    def __init__(self, base_url, token=None, timeout_s=5.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = float(timeout_s)

    # -- protocol -----------------------------------------------------------

    def apis(self):
        """``GET /apis``: the list of agent-controlled APIs (list of dicts)."""
        body = self._request("GET", "/apis")
        return _api_list(body, "GET /apis")

    def metrics(self, api):
        """``GET /metrics?method=API``: ``{"goodput": req/s, "latency": p95 ms}``."""
        body = self._request("GET", "/metrics", params={"method": api})
        if not isinstance(body, dict) or "goodput" not in body or "latency" not in body:
            raise SpillwayError(f"GET /metrics for {api!r}: unexpected body {body!r}")
        return {"goodput": float(body["goodput"]), "latency": float(body["latency"])}

    def set_rate(self, api, rate_rps):
        """``POST /set_rate?method=API``: ask for a new admitted rate (req/s).

        The server clamps the value to the API's [lower_bound, upper_bound].
        """
        self._request("POST", "/set_rate", params={"method": api},
                      body={"rate_limit": float(rate_rps)})

    def services(self):
        """``GET /services``: every service's overload signal, a list of
        ``{"name", "utilisation", "queueing_ms", "overloaded"}``."""
        body = self._request("GET", "/services")
        if not isinstance(body, dict) or not isinstance(body.get("services"), list):
            raise SpillwayError(f"GET /services: expected {{\"services\": [...]}}, got {body!r}")
        return body["services"]

    def step(self):
        """``POST /step`` (simulator only): advance virtual time by one tick.

        Returns the decoded body: ``{"tick", "time_s", "done", "apis": {name: {...}}}``.
        """
        body = self._request("POST", "/step", body=b"")
        if not isinstance(body, dict) or not isinstance(body.get("apis"), dict):
            raise SpillwayError(f"POST /step: unexpected body {body!r}")
        return body

    def reset(self, seed=None):
        """``POST /reset`` (simulator only): start a new randomised episode.

        Returns the new API list, like :meth:`apis`.
        """
        payload = {} if seed is None else {"seed": int(seed)}
        body = self._request("POST", "/reset", body=payload)
        return _api_list(body, "POST /reset")

    # -- plumbing -----------------------------------------------------------

    def _request(self, method, path, params=None, body=None):
        """Send one request; return the decoded JSON body (None if empty).

        ``body`` is a JSON-serialisable object, or raw ``bytes`` (``b""`` for
        an empty POST), or None for no body at all.
        """
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        headers = {"Accept": "application/json"}
        data = None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read() if e.fp is not None else b""
            raise SpillwayHTTPError(e.code, _error_message(raw, e.reason), method, path) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SpillwayConnectionError(f"{method} {url}: {reason}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise SpillwayError(f"{method} {path}: body is not JSON: {raw[:200]!r}") from None


def _error_message(raw, fallback):
    """Extract the ``error`` field of a JSON error body, else its text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text or str(fallback)
    if isinstance(doc, dict) and "error" in doc:
        return str(doc["error"])
    return text or str(fallback)


def _api_list(body, what):
    if not isinstance(body, dict) or not isinstance(body.get("apis"), list):
        raise SpillwayError(f"{what}: expected {{\"apis\": [...]}}, got {body!r}")
    return body["apis"]
