"""An in-memory, fault-injecting S3 for pixq's tests (Python standard library only).

S3Stub is a ThreadingHTTPServer on 127.0.0.1:<free port> that speaks enough path-style S3 for the
worker (PUT, GET and HEAD of `/<bucket>/<key>`), checks every request's AWS Signature Version 4
with an implementation of its own (the functions at the top of this file, written from AWS's
documentation, sharing nothing with the C signer), and misbehaves on request. It runs inside the
test process, so a test configures it through its Python API and reads back what it recorded.

Checks on every request, in this order (each answers the way S3 does):

* Authorization missing: anonymous; reads are refused (403 AccessDenied) unless
  `allow_anonymous_reads`, writes always are.
* Authorization malformed, unknown access key, x-amz-content-sha256 or x-amz-date missing or not
  signed, an x-amz-* header that is not signed, a scope whose date is not x-amz-date's, or a wrong
  signature: 403 (AuthorizationHeaderMalformed 400 for a malformed header); date more than 15 min
  from the stub's clock: 403 RequestTimeTooSkewed. Such requests count as `failed`; the others as
  `verified` (whatever happens to them next).
* Unknown bucket: 404 NoSuchBucket (or the bucket is created, with `auto_create`).
* Signed for another region than the bucket's (set_region): 301 PermanentRedirect with
  `x-amz-bucket-region` and <Endpoint>, or with style="400" a 400 AuthorizationHeaderMalformed
  carrying <Region> in the body (header only if region_header), or with style="opt-in" a 400
  IllegalLocationConstraintException naming the region only in its message (and the header if
  region_header). A HEAD of the bucket (no key: HeadBucket) answers with x-amz-bucket-region.
* Body whose SHA-256 is not x-amz-content-sha256 (unless UNSIGNED-PAYLOAD): 400
  XAmzContentSHA256Mismatch.
* stall delays the answer to a bucket's requests of some methods (all faults but reset and
  drop_reused still apply after it), as an endpoint that has stopped answering.
* Then the faults, first match wins: drop_reused (a PUT on a kept-alive connection finds it
  closed under it, unanswered), reset (connection closed with a TCP RST after part of the
  body, no answer), fail (scripted status and code, N times or always), slow_down_above (503
  SlowDown when the bucket has accepted `rate` PUTs in the last second: a server that accepts at
  most `rate` PUTs per sliding second, counted at the moment each is decided, Record.decided,
  a few ms after its arrival, Record.time), slow_down_probability.
* Otherwise the object is stored (PUT) or served (GET, HEAD; 404 NoSuchKey). set_visibility makes
  new objects of a bucket readable only after a delay, or never.

Every request is recorded as a Record (times, method, bucket, key, status, code, signed region,
fault, client port...); records(...) filters them, window_max() and rate() measure them.

Used by harness.PixqTestCase with `s3_server = "stub"`, by tests/integration/test_throttle.py and
tests/bench/limiter.py; its own tests are tests/integration/test_s3stub.py.
"""

import calendar
import collections
import hashlib
import hmac
import http.server
import os
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape as xml_escape

LOOPBACK = "127.0.0.1"
ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW_S = 15 * 60
MAX_BODY_BYTES = 256 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# SigV4, from https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def uri_encode(data):
    """Every byte of data (bytes or str, UTF-8) outside A-Z a-z 0-9 - _ . ~ as %XX, uppercase."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out = []
    for b in data:
        out.append(chr(b) if b in _UNRESERVED else "%%%02X" % b)
    return "".join(out)


def _bytes(s):
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s


def canonical_uri(path):
    """S3's canonical URI of a wire path (bytes, or str as UTF-8): each segment between literal
    '/' decoded and encoded exactly once (so %2F inside a segment stays %2F); no dot-segment or
    slash normalisation."""
    if not path:
        return "/"
    path = _bytes(path)
    return "/".join(uri_encode(urllib.parse.unquote_to_bytes(seg)) for seg in path.split(b"/"))


def canonical_query(query):
    """Query parameters (bytes, or str as UTF-8) decoded ('+' stays a plus), encoded, sorted by
    name then value; a name without '=' has an empty value."""
    pairs = []
    for piece in _bytes(query or b"").split(b"&"):
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        pairs.append((uri_encode(urllib.parse.unquote_to_bytes(name)),
                      uri_encode(urllib.parse.unquote_to_bytes(value))))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def _squash(value):
    return " ".join(value.split())


def canonical_headers(headers, signed):
    """headers: [(name, value)] as received (repeats allowed); signed: lower-case names.
    Returns the canonical header block (each line ends with \\n)."""
    values = collections.OrderedDict((name, []) for name in signed)
    for name, value in headers:
        lname = name.lower()
        if lname in values:
            values[lname].append(_squash(value))
    return "".join("%s:%s\n" % (name, ",".join(vals)) for name, vals in values.items())


def canonical_request(method, path, query, headers, signed, payload_hash):
    return "\n".join([method, canonical_uri(path), canonical_query(query),
                      canonical_headers(headers, signed), ";".join(signed), payload_hash])


def string_to_sign(amz_date, scope, creq):
    return "\n".join([ALGORITHM, amz_date, scope,
                      hashlib.sha256(creq.encode("utf-8", "surrogateescape")).hexdigest()])


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def signature(secret, date, region, service, sts):
    return hmac.new(signing_key(secret, date, region, service), sts.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def sign(method, path, query, headers, body_hash, access_key, secret, region, amz_date,
         service="s3"):
    """The Authorization value for a request whose headers (all signed) are given; returns
    (authorization, canonical request, string to sign)."""
    signed = sorted({n.lower() for n, _ in headers})
    creq = canonical_request(method, path, query, headers, signed, body_hash)
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    sts = string_to_sign(amz_date, scope, creq)
    sig = signature(secret, amz_date[:8], region, service, sts)
    authz = "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, access_key, scope, ";".join(signed), sig)
    return authz, creq, sts


_AUTHZ = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request\s*,"
    r"\s*SignedHeaders=([a-z0-9\-;]+)\s*,\s*Signature=([0-9a-f]{64})\s*$")


def parse_authorization(value):
    """{access_key, date, region, service, signed (list), signature} or None."""
    m = _AUTHZ.match(value or "")
    if m is None:
        return None
    return {"access_key": m.group(1), "date": m.group(2), "region": m.group(3),
            "service": m.group(4), "signed": m.group(5).split(";"), "signature": m.group(6)}


def parse_amz_date(value):
    """Seconds since the epoch of an x-amz-date (YYYYMMDDTHHMMSSZ), or None."""
    try:
        return calendar.timegm(time.strptime(value or "", "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


class AuthError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def verify(method, path, query, headers, access_key, secret, now, max_skew_s=MAX_SKEW_S):
    """Checks a signed S3 request (headers: [(name, value)] as received). Returns the parsed
    Authorization dict; raises AuthError as S3 would answer. The body is checked by the caller
    against x-amz-content-sha256."""
    lower = [(n.lower(), v) for n, v in headers]
    authz = [v for n, v in lower if n == "authorization"]
    auth = parse_authorization(authz[0] if len(authz) == 1 else None)
    if auth is None:
        raise AuthError(400, "AuthorizationHeaderMalformed",
                        "The authorization header is malformed: %r" % (authz[:1],))
    if auth["access_key"] != access_key:
        raise AuthError(403, "InvalidAccessKeyId",
                        "The AWS Access Key Id you provided does not exist in our records.")
    names = {n for n, _ in lower}
    signed = auth["signed"]
    for required in ("host", "x-amz-date", "x-amz-content-sha256"):
        if required not in names or required not in signed:
            raise AuthError(403, "AccessDenied", "%s missing or not signed" % required)
    unsigned = sorted(n for n in names if n.startswith("x-amz-") and n not in signed)
    if unsigned:
        raise AuthError(403, "AccessDenied",
                        "There were headers present in the request which were not signed: %s"
                        % ", ".join(unsigned))
    if signed != sorted(set(signed)) or any(n not in names for n in signed):
        raise AuthError(403, "SignatureDoesNotMatch", "SignedHeaders not sorted or not present")
    amz_date = [v for n, v in lower if n == "x-amz-date"][0].strip()
    when = parse_amz_date(amz_date)
    if when is None or amz_date[:8] != auth["date"]:
        raise AuthError(403, "AccessDenied", "bad x-amz-date %r for scope %s"
                        % (amz_date, auth["date"]))
    payload_hash = [v for n, v in lower if n == "x-amz-content-sha256"][0].strip()
    creq = canonical_request(method, path, query, headers, signed, payload_hash)
    scope = "%s/%s/%s/aws4_request" % (auth["date"], auth["region"], auth["service"])
    sts = string_to_sign(amz_date, scope, creq)
    expected = signature(secret, auth["date"], auth["region"], auth["service"], sts)
    if auth["service"] != "s3" or not hmac.compare_digest(expected, auth["signature"]):
        raise AuthError(403, "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you "
                        "provided.\nCanonicalRequest:\n%s\nStringToSign:\n%s" % (creq, sts))
    if abs(when - now) > max_skew_s:
        raise AuthError(403, "RequestTimeTooSkewed",
                        "The difference between the request time and the current time is too "
                        "large.")
    auth["amz_date"] = amz_date
    auth["payload_hash"] = payload_hash
    return auth


# ---------------------------------------------------------------------------------------------
# the server


class Record:
    """One request the stub received."""

    __slots__ = ("time", "decided", "end", "method", "bucket", "key", "status", "code", "region",
                 "verified", "fault", "port", "size", "amz_date", "expect")

    def __init__(self, **kw):
        for name in self.__slots__:
            setattr(self, name, kw.get(name))

    def __repr__(self):
        return "<%s /%s/%s %s%s region=%s%s t=%.3f>" % (
            self.method, self.bucket, self.key, self.status, " " + self.code if self.code else "",
            self.region, " fault=" + self.fault if self.fault else "", self.time)


class _Object:
    __slots__ = ("data", "content_type", "etag", "visible_at", "headers")

    def __init__(self, data, content_type, visible_at, headers):
        self.data = data
        self.content_type = content_type
        self.etag = '"%s"' % hashlib.md5(data).hexdigest()
        self.visible_at = visible_at
        self.headers = headers


class _Fail:
    def __init__(self, status, code, count, methods, key_prefix, message, headers, any_region):
        self.status, self.code, self.count = status, code, count
        self.methods, self.key_prefix = methods, key_prefix
        self.message, self.headers = message, headers
        self.any_region = any_region


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmazonS3"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.owner.idle_timeout_s
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def date_time_string(self, timestamp=None):
        """The Date of every answer, by the stub's clock (as S3 says its own time)."""
        return super().date_time_string(self.server.owner.clock() if timestamp is None
                                        else timestamp)

    def handle_expect_100(self):
        """A client asking first (Expect: 100-continue): a refusal set by refuse_before_body()
        is answered before the body comes, as S3 answers one; else 100 Continue."""
        self.pixq_expect = True
        if self.server.owner._drop_before_continue(self):
            return False
        if self.server.owner._refuse_before_body(self):
            return False
        if self.server.owner._split_path(self.path)[2] in self.server.owner.no_continue:
            return True  # no 100: the client sends its body after its own wait
        return super().handle_expect_100()

    def do_PUT(self):
        self.server.owner._handle(self)

    do_GET = do_HEAD = do_POST = do_DELETE = do_PUT


class S3Stub:
    """See the module's comment. Buckets are created from `buckets` (and add_bucket), or on
    demand with auto_create. clock() gives the stub's idea of now (time.time by default)."""

    def __init__(self, buckets=(), access_key="AKIDPIXQSTUB", secret_key=None, region="us-east-1",
                 auto_create=False, allow_anonymous_reads=False, idle_timeout_s=60,
                 log_path=None):
        self.access_key = access_key
        self.secret_key = secret_key or "pixq/Stub+Secret/wJalrXUtnFEMI/K7MDENG"
        self.default_region = region
        self.auto_create = auto_create
        self.allow_anonymous_reads = allow_anonymous_reads
        self.idle_timeout_s = idle_timeout_s
        self.session_token = None  # if set: a signed request must carry it (x-amz-security-token)
        self.expired_tokens = set()  # tokens answered 400 ExpiredToken, as S3 does past expiry
        # more keys S3 takes: {access_key: (secret_key, session_token or None)}, as temporary
        # credentials just issued are good while the last ones are not expired yet
        self.also_valid = {}
        self.clock = time.time
        self.log_path = log_path  # if given: one line per request, for failure reports
        self._log = None
        self._lock = threading.Lock()
        self._buckets = {}  # name -> region
        self._objects = {}  # (bucket, key) -> _Object
        self._records = []
        self._failures = []  # (record, message) of requests whose signature failed
        self.verified = 0
        self.failed = 0
        self._rng = random.Random(1234)
        self._stopping = threading.Event()
        self.clear_faults()
        for b in buckets:
            self.add_bucket(b)
        self.httpd = None
        self.port = None
        self._thread = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self):
        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        if self.log_path is not None:
            self._log = open(self.log_path, "a", encoding="utf-8", errors="replace")
            self._log.write("S3 stub listening on %s\n" % self.endpoint())
            self._log.flush()
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()  # stalled requests end
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join(5)
            self.httpd = None
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def endpoint(self):
        return "http://%s:%d" % (LOOPBACK, self.port)

    def host(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def credentials(self):
        """The environment a client needs to sign for this stub."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def object_url(self, bucket, key):
        return "%s/%s/%s" % (self.endpoint(), bucket, urllib.parse.quote(key, safe="/~"))

    # -- buckets and objects -------------------------------------------------------------------

    def add_bucket(self, name, region=None):
        with self._lock:
            self._buckets[name] = region or self.default_region

    def set_region(self, bucket, region, style="301", region_header=True):
        """The bucket lives in `region`: requests signed for another one get a 301
        PermanentRedirect (style "301"), a 400 AuthorizationHeaderMalformed (style "400"), a
        307 TemporaryRedirect (style "307": S3's answer for up to a day after a bucket's creation)
        or a 400 IllegalLocationConstraintException (style "opt-in": S3's answer when a bucket in
        a region one must opt in to, such as af-south-1, is addressed through another region, or
        the other way round; its message names the bucket's region, no XML element does);
        region_header=False leaves x-amz-bucket-region out, so only the XML names it (or, for
        "opt-in", nothing but the message). A HEAD of the bucket itself (HeadBucket, no key)
        always carries x-amz-bucket-region, as S3's does, whatever its status."""
        with self._lock:
            self._buckets[bucket] = region
            self._redirect[bucket] = (style, region_header)

    def set_visibility(self, bucket, delay_s):
        """Objects PUT from now on into bucket become readable (GET, HEAD) delay_s seconds after
        their PUT; None: never; 0: at once."""
        with self._lock:
            self._visibility[bucket] = delay_s

    def object(self, bucket, key):
        """The stored bytes (whether or not visible yet), or None."""
        with self._lock:
            obj = self._objects.get((bucket, key))
            return None if obj is None else obj.data

    def object_headers(self, bucket, key):
        with self._lock:
            obj = self._objects.get((bucket, key))
            return None if obj is None else dict(obj.headers)

    def keys(self, bucket):
        with self._lock:
            return sorted(k for b, k in self._objects if b == bucket)

    def put_object(self, bucket, key, data, content_type="application/octet-stream"):
        """Stores an object as a client with rights would (readable at once); the status, as
        harness's s3rver put_object()."""
        with self._lock:
            if bucket not in self._buckets:
                return 404
            self._objects[(bucket, key)] = _Object(data, content_type, 0.0, {})
        return 200

    def get_object(self, bucket, key):
        """(status, headers, body) as an anonymous reader with rights would see it (for the
        harness's s3_object())."""
        data = self.object(bucket, key)
        return (200, {}, data) if data is not None else (404, {}, b"NoSuchKey")

    # -- faults --------------------------------------------------------------------------------

    def clear_faults(self):
        with self._lock:
            self._fails = {}  # bucket -> [_Fail]
            self._stalls = {}  # bucket -> [seconds, methods, count left or None]
            self._stalled = 0
            self._resets = {}  # bucket -> [remaining, after_bytes]
            self._drops = {}  # bucket -> remaining (None: every one)
            self._early = {}  # bucket -> [status, code, remaining (None: every one), close]
            self.no_continue = set()  # buckets whose PUTs asking first get no "100 Continue"
            self._slow_rate = {}  # bucket -> PUTs per sliding second
            self._slow_prob = {}  # bucket -> probability
            self._reset_prob = {}  # bucket -> [probability, after_bytes]
            self._accepted = collections.defaultdict(collections.deque)  # bucket -> PUT times
            self._redirect = getattr(self, "_redirect", {})
            self._visibility = getattr(self, "_visibility", {})

    def fail(self, bucket, status, code, count=None, methods=("PUT",), key_prefix="",
             message=None, headers=None, any_region=False):
        """Answer the next `count` requests (None: all) of `methods` to bucket (keys starting
        with key_prefix) with status and an S3 error body carrying code (None: an HTML page
        without one, as a proxy in front of the store answers); any_region: whatever region
        they are signed for (else one signed for another than the bucket's gets the
        wrong-region answer of set_region() first)."""
        with self._lock:
            self._fails.setdefault(bucket, []).append(
                _Fail(status, code, count, tuple(methods), key_prefix,
                      message or "injected %s" % code, headers or {}, any_region))

    def refuse_before_body(self, bucket, status, code, count=None, close=True):
        """Answer the next `count` (None: every) PUTs to bucket that ask first (Expect:
        100-continue) with status and code before their body comes, and close the connection
        (or, not `close`, keep it for the next request, as a store answering 417 Expectation
        Failed does). Such a request is recorded with fault "before_body" and size 0; its
        signature is checked from its headers (a bad one is answered as such instead)."""
        with self._lock:
            self._early[bucket] = [status, code, count, close]

    def stall(self, bucket, seconds, methods=("HEAD",), count=None):
        """Hold the answer to the next `count` (None: every) `methods` requests to bucket for
        `seconds` (or until stop()). stalled() tells how many arrived so far."""
        with self._lock:
            self._stalls[bucket] = [seconds, tuple(methods), count]

    def stalled(self):
        """Requests held by stall() so far (arrived, answered or not)."""
        with self._lock:
            return self._stalled

    def request_timeout(self, bucket, count):
        """400 RequestTimeout for the next count PUTs."""
        self.fail(bucket, 400, "RequestTimeout", count,
                  message="Your socket connection to the server was not read from or written to "
                          "within the timeout period. Idle connections will be closed.")

    def reset(self, bucket, count=None, after_bytes=512):
        """The next count PUTs (None: all) to bucket read at most after_bytes of their body, then
        the connection is reset (TCP RST) without an answer."""
        with self._lock:
            self._resets[bucket] = [count, after_bytes]

    def reset_probability(self, bucket, p, after_bytes=512):
        """Each PUT to bucket (past those reset() was told to reset) is reset as reset() does,
        with probability p (0: off), drawn from the same generator as slow_down_probability's."""
        with self._lock:
            self._reset_prob[bucket] = [p, after_bytes]

    def drop_reused(self, bucket, count=None):
        """The next count PUTs (None: all) to bucket that come on a kept-alive connection (one
        that has carried a request already) find it closed as they arrive, nothing answered, as
        when S3 closes a connection it held idle while the client is sending the next request on
        it: a third of the body (at most 1 MiB) is taken in, as a TCP stack would while the close
        crosses the request, the rest left unread (so the close is a reset, and the client is
        still sending when it comes). Recorded with status 0 and fault "dropped"; a PUT on a new
        connection is served. A PUT that asks first (Expect: 100-continue) finds it closed before
        any "100 Continue": S3 closed it, so none comes, and no body is sent."""
        with self._lock:
            self._drops[bucket] = count

    def slow_down_above(self, bucket, rate):
        """503 SlowDown for a PUT to bucket when `rate` PUTs were accepted in the last second
        (None: off). The accepted PUTs never exceed `rate` in any sliding second."""
        with self._lock:
            if rate is None:
                self._slow_rate.pop(bucket, None)
            else:
                self._slow_rate[bucket] = rate

    def slow_down_probability(self, bucket, p, seed=None):
        """503 SlowDown for each PUT to bucket with probability p."""
        with self._lock:
            self._slow_prob[bucket] = p
            if seed is not None:
                self._rng.seed(seed)

    # -- what happened -------------------------------------------------------------------------

    def records(self, method=None, bucket=None, key=None, status=None, fault=None,
                predicate=None):
        """The recorded requests matching every given filter, in arrival order."""
        with self._lock:
            out = list(self._records)
        return [r for r in out
                if (method is None or r.method == method) and (bucket is None or r.bucket == bucket)
                and (key is None or r.key == key) and (status is None or r.status == status)
                and (fault is None or r.fault == fault)
                and (predicate is None or predicate(r))]

    def failures(self):
        """[(record, reason)] of the requests whose authentication failed."""
        with self._lock:
            return list(self._failures)

    def forget_failures(self):
        """Forgets the requests whose authentication failed (failures(), the failed count and
        their records): for a test that checked its own."""
        with self._lock:
            failed = {id(rec) for rec, _ in self._failures}
            self._records = [r for r in self._records if id(r) not in failed]
            self._failures.clear()
            self.failed = 0

    def counts(self):
        """{"verified": n, "failed": n, "requests": n}."""
        with self._lock:
            return {"verified": self.verified, "failed": self.failed,
                    "requests": len(self._records)}

    # -- request handling ----------------------------------------------------------------------

    @staticmethod
    def _split_path(raw_path):
        """http.server decodes the request line as Latin-1: back to the bytes on the wire."""
        path, _, query = raw_path.encode("latin-1").partition(b"?")
        parts = path.lstrip(b"/").split(b"/", 1)

        def text(b):
            return urllib.parse.unquote_to_bytes(b).decode("utf-8", "surrogateescape")

        bucket = text(parts[0]) if parts[0] else None
        key = text(parts[1]) if len(parts) > 1 else ""
        return path, query, bucket, key

    @staticmethod
    def _headers(h):
        """The request's headers as [(name, value)] and {lower name: value}: values arrive as
        Latin-1, their bytes recovered as UTF-8 text."""
        headers = [(n, v.encode("latin-1", "replace").decode("utf-8", "surrogateescape"))
                   for n, v in h.headers.items()]
        return headers, {n.lower(): v for n, v in headers}

    def _refuse_before_body(self, h):
        path, query, bucket, key = self._split_path(h.path)
        with self._lock:
            early = self._early.get(bucket)
            if h.command != "PUT" or early is None or early[2] == 0:
                return False
            early[2] = None if early[2] is None else early[2] - 1
        rec = Record(time=time.time(), method=h.command, port=h.client_address[1], size=0,
                     bucket=bucket, key=key, fault="before_body", expect=True)
        denied = None
        try:
            headers, hmap = self._headers(h)  # the signature is checked from the headers alone
            denied = self._authenticate(h, rec, path, query, headers, hmap)
            rec.status, rec.code = denied[:2] if denied is not None else early[:2]
            message = (denied[2] if denied is not None
                       else "injected %s before the body" % rec.code)
        except Exception as exc:  # a bug in the stub must not look like a worker failure
            rec.status, rec.code, message, rec.fault = 500, "InternalError", repr(exc), "stub-error"
        rec.end = time.time()
        with self._lock:
            self._records.append(rec)
        close = early[3] or denied is not None
        h.close_connection = close
        self._answer(h, rec, rec.status, rec.code, message,
                     {"Connection": "close"} if close else {}, None)
        self._write_log(rec)
        return True

    def _handle(self, h):
        rec = Record(time=time.time(), method=h.command, port=h.client_address[1], size=0,
                     expect=getattr(h, "pixq_expect", False))
        h.pixq_expect = False
        path, query, rec.bucket, rec.key = self._split_path(h.path)
        headers, hmap = self._headers(h)
        hold = 0
        with self._lock:
            stall = self._stalls.get(rec.bucket)
            if stall is not None and rec.method in stall[1] and stall[2] != 0:
                hold = stall[0]
                stall[2] = None if stall[2] is None else stall[2] - 1
                self._stalled += 1
        if hold:
            rec.fault = "stall"
            self._stopping.wait(hold)
        try:
            if self._maybe_drop(h, rec) or self._maybe_reset(h, rec):
                return
            body = self._read_body(h)
            rec.size = len(body)
            status, code, message, extra, payload = self._decide(h, rec, path, query, headers,
                                                                 hmap, body)
        except Exception as exc:  # a bug in the stub must not look like a worker failure
            status, code, message, extra, payload = 500, "InternalError", repr(exc), {}, None
            rec.fault = "stub-error"
        rec.status, rec.code = status, code
        rec.end = time.time()  # when the answer was ready
        with self._lock:
            self._records.append(rec)
        self._answer(h, rec, status, code, message, extra, payload)
        self._write_log(rec)

    def _write_log(self, rec):
        with self._lock:
            if self._log is not None:
                self._log.write("%s %.3f %s\n" % (
                    time.strftime("%H:%M:%S", time.localtime(rec.time)), rec.time % 1, rec))
                self._log.flush()

    def _read_body(self, h):
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
        n = int(h.headers.get("Content-Length") or 0)
        if n > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return h.rfile.read(n) if n > 0 else b""

    def _drop_due(self, h, rec):
        """Whether drop_reused() drops this request (counted, and the connection's requests
        counted); rec gets the fault."""
        served = getattr(h, "pixq_served", 0)  # requests this connection carried before
        h.pixq_served = served + 1
        if h.command != "PUT" or served == 0:
            return False
        with self._lock:
            if rec.bucket not in self._drops or self._drops[rec.bucket] == 0:
                return False
            if self._drops[rec.bucket] is not None:
                self._drops[rec.bucket] -= 1
            rec.status, rec.code, rec.fault = 0, "", "dropped"
        return True

    def _drop_before_continue(self, h):
        _, _, bucket, key = self._split_path(h.path)
        rec = Record(time=time.time(), method=h.command, port=h.client_address[1], size=0,
                     bucket=bucket, key=key, expect=True)
        if not self._drop_due(h, rec):
            h.pixq_served -= 1  # counted again by _handle()
            return False
        rec.end = time.time()
        with self._lock:
            self._records.append(rec)
        os.close(h.connection.detach())
        h.close_connection = True
        self._write_log(rec)
        return True

    def _maybe_drop(self, h, rec):
        if not self._drop_due(h, rec):
            return False
        n = int(h.headers.get("Content-Length") or 0)  # see drop_reused()
        h.rfile.read(min(n // 3, 1 << 20))
        rec.end = time.time()
        with self._lock:
            self._records.append(rec)
        os.close(h.connection.detach())  # the unread body makes it a reset
        h.close_connection = True
        self._write_log(rec)
        return True

    def _maybe_reset(self, h, rec):
        if h.command != "PUT":
            return False
        with self._lock:
            state = self._resets.get(rec.bucket)
            p, chance_after = self._reset_prob.get(rec.bucket, (0, 0))
            if state is not None and state[0] != 0:
                if state[0] is not None:
                    state[0] -= 1
                after = state[1]
            elif p and self._rng.random() < p:
                after = chance_after
            else:
                return False
        n = int(h.headers.get("Content-Length") or 0)
        if n > 0:
            h.rfile.read(min(after, max(n // 2, 1)))
        rec.status, rec.code, rec.fault = 0, "", "reset"
        with self._lock:
            self._records.append(rec)
        conn = h.connection
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(conn.detach())  # RST, no FIN, no answer
        h.close_connection = True
        rec.end = time.time()
        self._write_log(rec)
        return True

    def _authenticate(self, h, rec, path, query, headers, hmap):
        """None when the request may go on, else (status, code, message)."""
        if "authorization" not in hmap:
            if h.command in ("GET", "HEAD") and self.allow_anonymous_reads:
                return None
            return 403, "AccessDenied", "Anonymous access is forbidden for this operation"
        m = _AUTHZ.match(hmap.get("authorization", ""))
        key, secret, token = self.access_key, self.secret_key, self.session_token
        if m and m.group(1) in self.also_valid:
            key = m.group(1)
            secret, token = self.also_valid[key]
        try:
            auth = verify(h.command, path, query, headers, key, secret, self.clock())
        except AuthError as e:
            with self._lock:
                self.failed += 1
                self._failures.append((rec, "%s: %s" % (e.code, e.message)))
            rec.verified = False
            m = _AUTHZ.match(hmap.get("authorization", ""))
            rec.region = m.group(3) if m else None
            return e.status, e.code, e.message
        with self._lock:
            self.verified += 1
        rec.verified = True
        rec.region = auth["region"]
        rec.amz_date = auth["amz_date"]
        if hmap.get("x-amz-security-token") in self.expired_tokens:
            return 400, "ExpiredToken", "The provided token has expired."
        if token is not None and hmap.get("x-amz-security-token") != token:
            return 403, "InvalidToken", "The provided token is malformed or otherwise invalid."
        return None

    def _decide(self, h, rec, path, query, headers, hmap, body):
        """(status, code, message, extra headers, payload bytes or None)."""
        denied = self._authenticate(h, rec, path, query, headers, hmap)
        if denied is not None:
            return denied + ({}, None)
        with self._lock:
            region = self._buckets.get(rec.bucket)
            if region is None and self.auto_create and rec.bucket:
                region = self._buckets[rec.bucket] = self.default_region
            redirect = self._redirect.get(rec.bucket, ("301", True))
        if region is None:
            return 404, "NoSuchBucket", "The specified bucket does not exist", {}, None
        if rec.region is not None and rec.region != region:
            fault = self._fault(h.command, rec, any_region=True)
            return fault if fault is not None else self._wrong_region(rec, region, redirect)
        claimed = hmap.get("x-amz-content-sha256", "").strip()
        if rec.verified and claimed != UNSIGNED and claimed != hashlib.sha256(body).hexdigest():
            return (400, "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    {}, None)
        fault = self._fault(h.command, rec)
        if fault is not None:
            return fault
        if h.command == "PUT":
            return self._put(rec, hmap, body)
        if h.command in ("GET", "HEAD"):
            return self._get(rec)
        return 501, "NotImplemented", "not implemented by the stub", {}, None

    def _wrong_region(self, rec, region, redirect):
        style, with_header = redirect
        head_bucket = rec.method == "HEAD" and rec.key == ""
        extra = {"x-amz-bucket-region": region} if with_header or head_bucket else {}
        rec.fault = "redirect"
        if style == "opt-in":
            return (400, "IllegalLocationConstraintException",
                    "The %s location constraint is incompatible for the region specific endpoint "
                    "this request was sent to." % region, extra, None)
        if style == "307":
            return (307, "TemporaryRedirect", "Please re-send this request to the specified "
                    "temporary endpoint. Continue to use the original request endpoint for future "
                    "requests.", extra,
                    {"Endpoint": "%s.s3-%s.amazonaws.com" % (rec.bucket, region),
                     "Bucket": rec.bucket})
        if style == "400":
            return (400, "AuthorizationHeaderMalformed",
                    "The authorization header is malformed; the region '%s' is wrong; expecting "
                    "'%s'" % (rec.region, region), extra, {"Region": region})
        return (301, "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified "
                "endpoint. Please send all future requests to this endpoint.", extra,
                {"Endpoint": "%s.s3.%s.amazonaws.com" % (rec.bucket, region),
                 "Bucket": rec.bucket})

    def _fault(self, method, rec, any_region=False):
        """The injected answer to a request, if any; any_region: only fail()'s any_region ones
        (asked before the bucket's wrong-region answer)."""
        now = time.time()
        with self._lock:
            for f in self._fails.get(rec.bucket, ()):
                if f.count == 0 or method not in f.methods or not rec.key.startswith(
                        f.key_prefix) or (any_region and not f.any_region):
                    continue
                if f.count is not None:
                    f.count -= 1
                rec.fault = "fail"
                return f.status, f.code, f.message, dict(f.headers), None
            if method != "PUT" or any_region:
                return None
            p = self._slow_prob.get(rec.bucket)
            if p and self._rng.random() < p:
                rec.fault = "slowdown-p"
                return 503, "SlowDown", "Please reduce your request rate.", {}, None
            rate = self._slow_rate.get(rec.bucket)
            if rate is not None:
                window = self._accepted[rec.bucket]
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= rate:
                    rec.fault = "slowdown"
                    return 503, "SlowDown", "Please reduce your request rate.", {}, None
                window.append(now)  # accepted: counts against the next second
                rec.decided = now
        return None

    def _put(self, rec, hmap, body):
        keep = {n: v for n, v in hmap.items()
                if n.startswith(("x-amz-meta-", "x-amz-acl", "x-amz-grant-", "cache-control",
                                 "content-"))}
        with self._lock:
            delay = self._visibility.get(rec.bucket, 0)
            visible_at = float("inf") if delay is None else time.time() + delay
            obj = _Object(body, hmap.get("content-type", "binary/octet-stream"), visible_at,
                          keep)
            self._objects[(rec.bucket, rec.key)] = obj
        return 200, "", "", {"ETag": obj.etag}, None

    def _get(self, rec):
        if rec.method == "HEAD" and rec.key == "":  # HeadBucket: the bucket exists, and where
            with self._lock:
                region = self._buckets.get(rec.bucket)
            return 200, "", "", {"x-amz-bucket-region": region}, None
        with self._lock:
            obj = self._objects.get((rec.bucket, rec.key))
        if obj is None or time.time() < obj.visible_at:
            return 404, "NoSuchKey", "The specified key does not exist.", {}, None
        return 200, "", "", {"ETag": obj.etag, "Content-Type": obj.content_type}, obj

    def _answer(self, h, rec, status, code, message, extra, payload):
        head_only = h.command == "HEAD"
        if isinstance(payload, _Object):
            body, ctype = payload.data, payload.content_type
        elif status >= 300 and code is None:  # a proxy's page: no S3 error, no code
            body = b"<html><body><h1>%d Bad Gateway</h1></body></html>" % status
            ctype = "text/html"
        elif status >= 300:
            fields = "".join("<%s>%s</%s>" % (k, xml_escape(v), k)
                             for k, v in (payload or {}).items())
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                    "<Message>%s</Message>%s<Resource>/%s/%s</Resource>"
                    "<RequestId>%016X</RequestId></Error>"
                    % (code, xml_escape(message), fields, xml_escape(rec.bucket or ""),
                       xml_escape(rec.key or ""), id(rec))).encode()
            ctype = "application/xml"
        else:
            body, ctype = b"", None
        try:
            h.send_response(status)
            if ctype:
                h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.send_header("x-amz-request-id", "%016X" % id(rec))
            for k, v in extra.items():
                h.send_header(k, v)
            h.end_headers()
            if not head_only and body:
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True


# ---------------------------------------------------------------------------------------------
# measuring what was recorded


def window_max(times, width=1.0):
    """The largest number of times inside any half-open window [t, t + width)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def least_jitter(times, rate):
    """The least slot-to-arrival delay J that explains times as slots at most `rate` a second
    (burst 0: slots at least 1 / rate apart), each arriving between its slot and J after it: the
    largest (k - i) / rate - (t_k - t_i) over i < k, or 0. PUTs k - i slots apart that arrived
    closer than that were late by that much between them, at least."""
    interval = 1.0 / rate
    best, lowest = 0.0, None
    for k, t in enumerate(sorted(times)):
        ahead = k * interval - t
        lowest = ahead if lowest is None else min(lowest, ahead)
        best = max(best, ahead - lowest)
    return best


def rate(times):
    """Events per second from the first to the last of times ((n - 1) / span), or 0."""
    times = sorted(times)
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])
