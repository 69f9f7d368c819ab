"""Outbound HTTP for JavaScript: ``codemode.http.fetch`` restricted to an allowlist of hosts.

Deny by default: with no allowed hosts every request is refused. The URL is parsed once with
``httpx.URL`` (the same parser that sends the request, so the checked host is the contacted host)
and refused if it carries anything that could make a reader and a parser disagree about the target:
credentials (``user@``), backslashes, whitespace or control characters, percent-encoded or
otherwise invalid host names, and IPv4 addresses written in any form other than four decimal
numbers (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``). Host names are compared
lower-cased, with one trailing dot removed (``Example.COM.`` is ``example.com``); IPv6 addresses
are compared in canonical form, and never match an IPv4 entry.

Allowed-host entries:

* ``"example.com"``: exactly that host, on any port.
* ``"example.com:8443"``: that host on that port only (the default port is 80 for http and
  443 for https).
* ``"*.example.com"``: any subdomain (``api.example.com``, ``a.b.example.com``) but NOT the apex
  ``example.com`` itself; list ``"example.com"`` too if it should be reachable.
* ``"127.0.0.1"``, ``"::1"`` / ``"[::1]"``: IP addresses, optionally with ``:port``.
* ``"*"``: every host. Explicit only; it lets JavaScript reach anything this machine can reach,
  including internal services.

The allowlist is about names: a permitted name that resolves to an internal address (DNS
rebinding) is still contacted. Redirects are followed by hand, and every hop is checked again.
Each call uses its own ``httpx.AsyncClient`` that ignores proxy variables and ``.netrc``, so calls
share no connections, cookies or credentials and are safe from any event loop or thread.
"""

import asyncio
import codecs
import ipaddress
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

import httpx

from codemode.capabilities.base import HostFn
from codemode.capabilities.errors import CapabilityDenied

__all__ = ["HttpCapability", "HttpResponse"]

MiB = 1024 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# A last label like this makes resolvers (and browsers) read the whole host as an IPv4 address.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
_BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")
# Framing and hop-by-hop headers come from the request itself: a program setting them could make
# the client and the server (or a proxy in between) disagree on where a request ends, and smuggle
# a second request into the first one's body.
_FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
    }
)
# Printable ASCII and tab: what HTTP/1.1 clients can send as a header value.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Only encodings decoded here, with a bound on the decoded size (see _BoundedDecoder).
_ACCEPT_ENCODING = "gzip, deflate"
_MAX_SHOWN = 200


def _clip(text: str) -> str:
    """``text`` shortened for an error message (a program may send a megabyte-long URL)."""
    if len(text) <= _MAX_SHOWN:
        return text
    return f"{text[:_MAX_SHOWN]}… ({len(text)} characters)"


class HttpResponse(TypedDict):
    """The response returned by http.fetch.

    ``status`` is the HTTP status code and ``ok`` is true for 2xx. ``url`` is the final URL after
    redirects. ``headers`` has lower-cased names; repeated headers are joined with ``", "``.
    ``text`` is the body decoded with the response's charset (UTF-8 by default; undecodable bytes
    become U+FFFD); use ``JSON.parse(text)`` for JSON.
    """

    status: int
    ok: bool
    url: str
    headers: dict[str, str]
    text: str


class _HostRule(NamedTuple):
    host: str  # canonical host; for a wildcard rule, the parent domain without "*."
    port: int | None  # None: any port
    wildcard: bool
    entry: str  # as configured, for messages


def _canonical_host(raw: str) -> str:
    """Normalize a host for comparison, or raise ValueError saying why it is unacceptable."""
    host = raw.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        if "%" in host:
            raise ValueError(f"host {raw!r} has an IPv6 zone index, which is not allowed")
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise ValueError(f"host {raw!r} is not a valid IPv6 address") from None
    trailing_dot = host.endswith(".")
    if trailing_dot:
        host = host[:-1]
    if not host:
        raise ValueError("URL has no host")
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(
            f"host {_clip(raw)!r} contains characters that are not allowed in a host name "
            "(percent-encoding, empty labels and punctuation are refused)"
        )
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = ""
        if canonical != host or trailing_dot:
            raise ValueError(
                f"host {_clip(raw)!r} is an IP address in a non-canonical form (decimal, octal, "
                "hex, shortened or with a trailing dot); write IPv4 addresses as four decimal "
                "numbers, e.g. '127.0.0.1'"
            )
    return host


def _is_canonical_ipv4(host: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


def _parse_rule(entry: str) -> _HostRule:
    """Turn one ``allowed_hosts`` entry into a rule, rejecting anything that is not host[:port]."""
    if not isinstance(entry, str):
        raise TypeError(f"allowed_hosts entries must be strings, got {type(entry).__name__}")
    text = entry.strip().lower()
    if not text or text != entry.lower() or any(c in text for c in "/@\\?#"):
        raise ValueError(
            f"invalid allowed_hosts entry {entry!r}: expected a host name or IP address, "
            "optionally with ':port' or a leading '*.', not a URL"
        )
    wildcard = text.startswith("*.")
    if wildcard:
        text = text[2:]
    if "*" in text:
        raise ValueError(f"invalid allowed_hosts entry {entry!r}: only a leading '*.' is supported")
    port: int | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid allowed_hosts entry {entry!r}")
            port = _parse_port(rest[1:], entry)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _parse_port(port_text, entry)
    else:
        host = text
    if ":" not in host:
        # Same IDNA encoding httpx applies to URLs, so Unicode entries match Unicode URLs.
        try:
            host = httpx.URL(f"http://{host}/").raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise ValueError(f"invalid allowed_hosts entry {entry!r}: {exc}") from None
    try:
        canonical = _canonical_host(host)
    except ValueError as exc:
        raise ValueError(f"invalid allowed_hosts entry {entry!r}: {exc}") from None
    if wildcard and (":" in canonical or _NUMERIC_LABEL.fullmatch(canonical.rsplit(".", 1)[-1])):
        raise ValueError(f"invalid allowed_hosts entry {entry!r}: '*.' needs a domain name")
    return _HostRule(canonical, port, wildcard, entry)


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port in allowed_hosts entry {entry!r}")
    return int(text)


class HttpCapability:
    """``codemode.http``: HTTP(S) requests to explicitly allowed hosts only.

    Args:
        allowed_hosts: Hosts JavaScript may contact (see the module docstring for the syntax).
            None or empty means no host at all; ``"*"`` must be given explicitly to allow any.
        allowed_schemes: URL schemes allowed; a subset of ``("https", "http")``.
        max_response_bytes: Larger (decoded) response bodies abort the request with an error.
        timeout_s: Deadline for the whole exchange, redirects and body included.
        max_redirects: Redirect hops followed before giving up with an error.
        allowed_methods: HTTP methods allowed (case-insensitive).
    """

    namespace: str = "http"
    description: str

    def __init__(
        self,
        allowed_hosts: Sequence[str] | None = None,
        *,
        allowed_schemes: Sequence[str] = ("https", "http"),
        max_response_bytes: int = 5 * MiB,
        timeout_s: float = 30.0,
        max_redirects: int = 5,
        allowed_methods: Sequence[str] = _DEFAULT_METHODS,
    ) -> None:
        for name, value in (
            ("allowed_hosts", allowed_hosts),
            ("allowed_schemes", allowed_schemes),
            ("allowed_methods", allowed_methods),
        ):
            if isinstance(value, (str, bytes)):
                raise TypeError(
                    f"{name} must be a sequence of strings; wrap it in a list: [{value!r}]"
                )
        entries = list(allowed_hosts or ())
        self._allow_any = "*" in entries
        self._rules: tuple[_HostRule, ...] = tuple(_parse_rule(e) for e in entries if e != "*")
        self._schemes = tuple(dict.fromkeys(s.lower() for s in allowed_schemes))
        unknown = [s for s in self._schemes if s not in _DEFAULT_PORTS]
        if unknown:
            raise ValueError(f"unsupported schemes {unknown}: only 'http' and 'https' are possible")
        self._methods = tuple(dict.fromkeys(m.upper() for m in allowed_methods))
        if max_response_bytes < 0 or timeout_s <= 0 or max_redirects < 0:
            raise ValueError("max_response_bytes and max_redirects must be >= 0, timeout_s > 0")
        self._max_bytes = max_response_bytes
        self._timeout_s = float(timeout_s)
        self._max_redirects = max_redirects
        self._entries = ["*"] if self._allow_any else [r.entry for r in self._rules]
        if self._allow_any:
            self.description = "HTTP requests to any host."
        elif self._rules:
            self.description = f"HTTP requests to these hosts only: {', '.join(self._entries)}."
        else:
            self.description = "HTTP requests (no hosts are allowed, so every request is refused)."

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """The allowlist as configured."""
        return tuple(self._entries)

    def exports(self) -> Mapping[str, HostFn]:
        """The JavaScript-visible functions of ``codemode.http``."""
        return {"fetch": self.fetch}

    async def fetch(
        self,
        *,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: str | None = None,
        json: Any = None,
        follow_redirects: bool = True,
    ) -> HttpResponse:
        """Send an HTTP request to an allowed host and return the whole response.

        Args:
            url: Absolute http(s) URL. Its host must be allowed; credentials in the URL
                (user@host) are refused, send them in headers instead.
            method: HTTP method, e.g. "GET" or "POST".
            headers: Request headers. The Host header cannot be set.
            body: Text request body, sent as UTF-8. Do not combine with json.
            json: A JSON-serializable value sent as the body with Content-Type application/json.
            follow_redirects: Follow redirects (each target must be allowed too); if false,
                a 3xx response is returned as is.

        Returns:
            The status, ok (true for 2xx), final URL, lower-cased headers and body text.
        """
        target = self._check_url(url)
        verb = self._check_method(method)
        request_headers = self._check_headers(headers)
        if body is not None and json is not None:
            raise ValueError("pass either body or json, not both")
        if body is not None and not isinstance(body, str):
            raise TypeError(f"body must be a string, got {type(body).__name__}; use json= for data")
        content = body.encode("utf-8") if body is not None else None
        try:
            return await asyncio.wait_for(
                self._exchange(target, verb, request_headers, content, json, follow_redirects),
                self._timeout_s,
            )
        except (TimeoutError, asyncio.TimeoutError) as exc:
            if exc.args:  # Already explained by _exchange.
                raise
            raise TimeoutError(
                f"HTTP {verb} {_clip(url)} did not complete within "
                f"timeout_s={self._timeout_s:g} seconds"
            ) from None

    # ------------------------------------------------------------------------------ request policy

    def _denied_host(self, host: str, port: int) -> CapabilityDenied:
        if not self._rules:
            return CapabilityDenied(
                f"host {_clip(host)!r} is not allowed (allowed hosts: none — pass "
                "allowed_hosts=[...] to HttpCapability)"
            )
        if any(self._host_matches(rule, host) for rule in self._rules):
            return CapabilityDenied(
                f"port {port} on host {host!r} is not allowed (allowed hosts: {self._entries})"
            )
        return CapabilityDenied(
            f"host {_clip(host)!r} is not allowed (allowed hosts: {self._entries})"
        )

    @staticmethod
    def _host_matches(rule: _HostRule, host: str) -> bool:
        if rule.wildcard:
            return host.endswith("." + rule.host)
        return host == rule.host

    def _check_url(self, url: str) -> httpx.URL:
        """Parse ``url`` and refuse it unless it unambiguously targets an allowed host."""
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        shown = _clip(url)
        if any(ord(c) < 0x21 or ord(c) == 0x7F or c.isspace() for c in url):
            raise CapabilityDenied(
                f"URL {shown!r} contains whitespace or control characters, which are not allowed; "
                "percent-encode them"
            )
        if "\\" in url:
            raise CapabilityDenied(
                f"URL {shown!r} contains a backslash, which is not allowed (parsers disagree on "
                "its meaning); percent-encode it as %5C"
            )
        scheme, sep, rest = url.partition("://")
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else ""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            host = authority.rpartition("@")[2].rpartition(":")[0] or authority
            if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and not _is_canonical_ipv4(host):
                raise CapabilityDenied(
                    f"URL {shown!r} refused: host {_clip(host)!r} is an IP address in a "
                    "non-canonical form; write IPv4 addresses as four decimal numbers, e.g. "
                    "'127.0.0.1'"
                ) from None
            raise ValueError(f"invalid URL {shown!r}: {exc}") from None
        scheme = parsed.scheme
        if scheme not in self._schemes:
            if not scheme:
                raise ValueError(
                    f"URL {shown!r} is not absolute; write it with a scheme, e.g. 'https://host/path'"
                )
            raise CapabilityDenied(
                f"URL scheme {scheme!r} is not allowed (allowed schemes: {list(self._schemes)})"
            )
        if "@" in authority or parsed.userinfo:
            raise CapabilityDenied(
                f"URL {shown!r} contains credentials ('user@' before the host), which are not "
                "allowed; send credentials in headers instead"
            )
        try:
            host = _canonical_host(parsed.raw_host.decode("ascii"))
        except (ValueError, UnicodeError) as exc:
            raise CapabilityDenied(f"URL {shown!r} refused: {exc}") from None
        port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[scheme]
        if not 0 < port < 65536:
            raise ValueError(f"URL {shown!r} has an invalid port {port}")
        if not (self._allow_any or self._port_host_allowed(host, port)):
            raise self._denied_host(host, port)
        return parsed

    def _port_host_allowed(self, host: str, port: int) -> bool:
        return any(
            self._host_matches(rule, host) and rule.port in (None, port) for rule in self._rules
        )

    def _check_method(self, method: str) -> str:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        verb = method.upper()
        if verb not in self._methods:
            raise CapabilityDenied(
                f"HTTP method {verb!r} is not allowed (allowed methods: {list(self._methods)})"
            )
        return verb

    @staticmethod
    def _check_headers(headers: dict[str, str] | None) -> dict[str, str]:
        if headers is None:
            return {}
        if not isinstance(headers, Mapping):
            raise TypeError(f"headers must be an object of strings, got {type(headers).__name__}")
        checked: dict[str, str] = {}
        for name, value in headers.items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid header name {_clip(str(name))!r}")
            if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
                raise ValueError(
                    f"invalid value for header {name!r}: must be a one-line string of printable "
                    "ASCII characters (no CR, LF, NUL or other control characters; "
                    "percent-encode anything else)"
                )
            lowered = name.lower()
            if lowered == "host":
                raise CapabilityDenied(
                    "setting the Host header is not allowed; the host comes from the URL, which is "
                    "checked against the allowed hosts"
                )
            if lowered in _FRAMING_HEADERS:
                raise CapabilityDenied(
                    f"setting the {name} header is not allowed: message framing and connection "
                    "headers are set from the request itself (pass the body as body or json)"
                )
            checked[name] = value
        return checked

    # ---------------------------------------------------------------------------------- exchange

    async def _exchange(
        self,
        url: httpx.URL,
        method: str,
        headers: dict[str, str],
        content: bytes | None,
        json: Any,
        follow_redirects: bool,
    ) -> HttpResponse:
        """Send the request and follow redirects by hand, re-checking each hop."""
        origin = (url.scheme, url.raw_host, url.port)
        hops = 0
        timeout = httpx.Timeout(self._timeout_s)
        try:
            async with httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=timeout
            ) as client:
                while True:
                    request = client.build_request(
                        method, url, headers=headers, content=content, json=json
                    )
                    if not any(k.lower() == "accept-encoding" for k in headers):
                        request.headers["Accept-Encoding"] = _ACCEPT_ENCODING
                    try:
                        response = await client.send(request, stream=True)
                    except httpx.InvalidURL as exc:
                        # httpx parses a redirect's Location before handing the response back.
                        raise CapabilityDenied(
                            f"redirect from {_clip(str(url))} refused: its Location is not a "
                            f"valid URL ({exc})"
                        ) from None
                    try:
                        if not (follow_redirects and response.has_redirect_location):
                            data = await self._read_body(response, url)
                            return self._result(response, url, data)
                        if hops >= self._max_redirects:
                            raise RuntimeError(
                                f"too many redirects: stopped after max_redirects="
                                f"{self._max_redirects} at {_clip(str(url))}"
                            )
                        location = response.headers["location"]
                    finally:
                        await response.aclose()
                    next_url = self._check_redirect(url, location)
                    hops += 1
                    if (response.status_code == 303 and method != "HEAD") or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method, content, json = "GET", None, None
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS
                        }
                    if (next_url.scheme, next_url.raw_host, next_url.port) != origin:
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS
                        }
                    url = next_url
        except httpx.TimeoutException as exc:
            raise TimeoutError(
                f"HTTP {method} {_clip(str(url))} timed out ({type(exc).__name__}) within "
                f"timeout_s={self._timeout_s:g} seconds"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectionError(
                f"HTTP {method} {_clip(str(url))} failed: {type(exc).__name__}: {_clip(str(exc))}"
            ) from None

    def _check_redirect(self, current: httpx.URL, location: str) -> httpx.URL:
        """Resolve a Location header against the current URL and apply the full URL policy."""
        try:
            if "\\" in location or any(ord(c) < 0x21 or ord(c) == 0x7F for c in location):
                raise CapabilityDenied(
                    f"Location {_clip(location)!r} contains forbidden characters"
                )
            try:
                target = str(current.join(location))
            except httpx.InvalidURL as exc:
                raise ValueError(f"invalid redirect Location {_clip(location)!r}: {exc}") from None
            return self._check_url(target)
        except CapabilityDenied as exc:
            raise CapabilityDenied(
                f"redirect from {_clip(str(current))} to {_clip(location)!r} refused: {exc}"
            ) from None

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        """Stream the body, aborting as soon as more than ``max_response_bytes`` arrived."""
        if response.request.method == "HEAD":
            return b""
        limit = self._max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ValueError(
                f"response from {_clip(str(url))} is {declared} bytes (Content-Length), more than "
                f"max_response_bytes={limit}"
            )
        decoder = _BoundedDecoder(response.headers.get_list("content-encoding"), url)
        data = bytearray()
        async for chunk in response.aiter_raw():
            data += decoder.decode(chunk, limit + 1 - len(data))
            if len(data) > limit:
                raise ValueError(
                    f"response body from {_clip(str(url))} exceeded max_response_bytes={limit}; "
                    "the transfer was aborted"
                )
        data += decoder.flush(limit + 1 - len(data))
        if len(data) > limit:
            raise ValueError(
                f"response body from {_clip(str(url))} exceeded max_response_bytes={limit}; "
                "the transfer was aborted"
            )
        return bytes(data)

    @staticmethod
    def _result(response: httpx.Response, url: httpx.URL, data: bytes) -> HttpResponse:
        encoding = response.charset_encoding or "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = "utf-8"
        return HttpResponse(
            status=response.status_code,
            ok=200 <= response.status_code < 300,
            url=str(url),
            headers={
                name.lower(): ", ".join(response.headers.get_list(name))
                for name in response.headers.keys()
            },
            text=data.decode(encoding, errors="replace"),
        )


class _BoundedDecoder:
    """Undo a response's Content-Encoding without ever producing more than asked for.

    httpx's own decoders inflate a whole network chunk at once, so a small compressed body (a
    "zip bomb") could take hundreds of megabytes before the size limit is even checked. Here each
    call inflates at most ``room`` bytes; whatever would come after is never produced.
    """

    def __init__(self, encodings: Sequence[str], url: httpx.URL) -> None:
        names = [
            part.strip().lower()
            for value in encodings
            for part in value.split(",")
            if part.strip() and part.strip().lower() != "identity"
        ]
        self._url = url
        self._zlib: Any = None
        self._raw_deflate = False
        self._started = False
        if len(names) > 1:
            raise ValueError(
                f"response from {_clip(str(url))} uses several content encodings {names}; "
                "only one of gzip or deflate is supported"
            )
        self._encoding = names[0] if names else ""
        if self._encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self._encoding == "deflate":
            self._zlib = zlib.decompressobj()
        elif self._encoding:
            raise ValueError(
                f"response from {_clip(str(url))} uses Content-Encoding {self._encoding!r}, which "
                "is not supported (only gzip and deflate)"
            )

    def decode(self, chunk: bytes, room: int) -> bytes:
        """Up to ``room`` decoded bytes from ``chunk``; more means the limit is passed."""
        if self._zlib is None:
            return chunk
        try:
            out = self._zlib.decompress(chunk, room)
        except zlib.error as exc:
            if self._encoding == "deflate" and not self._started and not self._raw_deflate:
                # Some servers send raw deflate without the zlib header.
                self._raw_deflate = True
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(chunk, room)
            raise self._corrupt(exc) from None
        self._started = True
        return out

    def flush(self, room: int) -> bytes:
        if self._zlib is None:
            return b""
        try:
            return self._zlib.flush(max(room, 1))
        except zlib.error as exc:
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: zlib.error) -> ValueError:
        return ValueError(
            f"response body from {_clip(str(self._url))} is not valid {self._encoding} data: {exc}"
        )
