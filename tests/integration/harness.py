"""pixq's integration-test harness (Python standard library only).

Each test of a PixqTestCase gets its own world, built in setUp and torn down by cleanups that run
even when the test fails:

* a temporary directory (removed afterwards unless PIXQ_TEST_KEEP=1);
* its own redis-server on a free loopback port, with its data and log in that directory;
* an s3rver (deploy/s3rver, installed by scripts/bootstrap) holding exactly the test's buckets,
  each empty: one s3rver serves every test of the process, emptied before each (node takes about
  1.5 s and 0.7 s of CPU to start one, and a suite ran 600 tests on s3rver), and it ends with the
  process (see SharedS3rver); with s3_server = "stub", the fault-injecting S3 of s3stub.py in the
  test process instead;
* a source HTTP server (SourceServer) that serves bytes from a dict, counts and times requests per
  path, and can stall chosen paths, slow them down or answer them with scripted error statuses;
* a postback receiver (PostbackReceiver) that records every request, with wait helpers, and can
  hold requests unanswered (a receiver that never acknowledged them);
* a RESP client (Redis) connected to the test's redis-server (redis_appendonly = True gives the
  server an AOF, appendfsync everysec, and redis_server.restart() restarts it on the same port and
  directory);
* the worker under test (start_worker), started with the environment of worker_env(); its
  stdout and stderr go to a log file in the temporary directory. At the end it gets SIGTERM and
  must exit 0; a worker that had to be killed, crashed, or whose log has a sanitizer report,
  fails the test.

When a test fails, the logs of the worker, the CLI runs and the servers are printed to stderr.

Paths come from the command line (see main(): --worker, --pixq, --data, as meson passes them) or
from PIXQ_TEST_WORKER, PIXQ_TEST_CLI and PIXQ_TEST_DATA. PIXQ_TEST_TIMEOUT_SCALE multiplies every
timeout (slow machines, sanitizer builds). Traffic goes to 127.0.0.1 only (or, for a server a
test starts with `host=`, to another loopback address).
"""

import argparse
import atexit
import calendar
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
S3RVER_BIN = REPO_ROOT / "deploy" / "s3rver" / "node_modules" / ".bin" / "s3rver"
LUA_DIR = REPO_ROOT / "common" / "lua"
LUA_INCLUDE = re.compile(r"^-- include: (\S+)\n", re.M)
S3RVER_CLUSTER = REPO_ROOT / "tests" / "bench" / "s3rver-cluster.js"  # s3rver in N processes
STACK_SH = REPO_ROOT / "deploy" / "stack.sh"
LOOPBACK = "127.0.0.1"

# GCC 12's libasan can misread a dynamic TLS block's bounds and crash LeakSanitizer's tracer at a
# sanitized program's exit, depending only on where malloc put things (scripts/test explains it
# and sets intercept_tls_get_addr=0): the programs the tests start always get that setting, also
# under a bare `meson test -C build-asan`. Harmless for programs built without ASan.
if "intercept_tls_get_addr" not in os.environ.get("ASAN_OPTIONS", ""):
    os.environ["ASAN_OPTIONS"] = ":".join(
        filter(None, [os.environ.get("ASAN_OPTIONS", ""), "intercept_tls_get_addr=0"]))

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    ": runtime error: ",
)


# ---------------------------------------------------------------------------------------------
# configuration


class Config:
    """Where the programs under test and the data are; filled by main() or the environment."""

    def __init__(self):
        self.worker = os.environ.get("PIXQ_TEST_WORKER")
        self.pixq = os.environ.get("PIXQ_TEST_CLI")
        self.data = Path(os.environ.get("PIXQ_TEST_DATA", str(REPO_ROOT / "tests" / "data")))
        self.timeout_scale = float(os.environ.get("PIXQ_TEST_TIMEOUT_SCALE", "1") or "1")
        self.keep = os.environ.get("PIXQ_TEST_KEEP") == "1"
        # built with ASan/UBSan (meson sets it): timing jitter is larger, not the behaviour
        self.sanitized = os.environ.get("PIXQ_TEST_SANITIZED") == "1"
        self.verbose = os.environ.get("PIXQ_TEST_VERBOSE") == "1"


CONFIG = Config()


def lua_script(name):
    """common/lua/<name>.lua as the worker runs it: each `-- include: PATH` line replaced by
    that file, as tools/embed.c does at build time."""
    text = (LUA_DIR / (name + ".lua")).read_text()
    return LUA_INCLUDE.sub(lambda m: (LUA_DIR / m.group(1)).read_text(), text)


def scaled(seconds):
    """A timeout in seconds, multiplied by PIXQ_TEST_TIMEOUT_SCALE."""
    return seconds * CONFIG.timeout_scale


_corpus_cache = {}


def corpus(name):
    """The bytes of tests/data/corpus/<name> (cached)."""
    if name not in _corpus_cache:
        _corpus_cache[name] = (CONFIG.data / "corpus" / name).read_bytes()
    return _corpus_cache[name]


# ---------------------------------------------------------------------------------------------
# small helpers


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def refused_port(test):
    """A TCP port on 127.0.0.1 that refuses connections for the rest of the test: a socket is
    bound to it and never listens, so the port is not handed to another server meanwhile (a
    port free_port() gave was taken by a test running beside it, which answered)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    test.addCleanup(s.close)
    s.bind((LOOPBACK, 0))
    return s.getsockname()[1]


def held_port_socket():
    """A socket bound to a free port of 127.0.0.1, with SO_REUSEADDR, never listening: while it
    is open, no other bind to port 0 (another test's server, free_port()) is handed that port,
    but a server that sets SO_REUSEADDR too (redis-server, pixq-worker's metrics listener) can
    still bind and listen on it. Closing it gives the port back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOOPBACK, 0))
    return s


def reserved_port(test):
    """A TCP port on 127.0.0.1 kept for a server the test starts later (a worker's
    --metrics-addr): held by held_port_socket() until the test ends, so a test running beside
    it cannot take it between this call and the server's bind (free_port() leaves that window
    open). Only for servers that set SO_REUSEADDR; connections to it are refused until one
    listens."""
    s = held_port_socket()
    test.addCleanup(s.close)
    return s.getsockname()[1]


def log_seconds(event):
    """When a log event was logged: its ts (2026-11-28T06:01:02.345Z, UTC, to the ms) in seconds
    since the epoch, as time.time() gives them."""
    ts = event["ts"]
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + int(ts[20:23]) / 1000.0


def wait_until(predicate, timeout, what="condition", check=None, interval=0.02):
    """Poll predicate() until it returns a true value, and return that value.

    check, if given, is called between polls and may raise (e.g. "the worker died").
    Raises AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def tail(path, lines=200):
    """The last `lines` lines of a text file, or a note that it does not exist."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            content = f.read().splitlines()
    except OSError as e:
        return "(%s: %s)" % (path, e.strerror)
    cut = content[-lines:]
    head = "... (%d earlier lines)\n" % (len(content) - len(cut)) if len(content) > len(cut) else ""
    return head + "\n".join(cut)


def clean_env():
    """os.environ without pixq/AWS settings or proxies of the outer shell: tests set their own."""
    env = {}
    for k, v in os.environ.items():
        if k.startswith(("PIXQ_", "AWS_")) or k.lower() in (
            "http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"
        ):
            continue
        env[k] = v
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


# urllib without any proxy from the environment: tests talk to 127.0.0.1 only.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(url, method="GET", data=None, headers=None, timeout=10):
    """One HTTP request to a loopback URL: returns (status, headers dict, body bytes).
    HTTP error statuses are returned, not raised."""
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type


def png_size(data):
    """(width, height) of a PNG read whole here, or None: the signature, every chunk's CRC,
    IHDR first, IDAT chunks in one run that inflate to exactly a filter byte (0 to 4) and the
    bytes of each row, IEND last with nothing after it. None for anything else (interlaced, a
    damaged file, not a PNG): identify() then asks ImageMagick. The throttling tests check
    hundreds of small PNGs each, and an identify process costs about 20 ms."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos, chunks = len(PNG_SIGNATURE), []
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return None
        body = data[pos + 8:end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4:end])[0]:
            return None
        chunks.append((kind, body))
        pos = end
        if kind == b"IEND":
            break
    kinds = [k for k, _ in chunks]
    if pos != len(data) or not kinds or kinds[0] != b"IHDR" or kinds[-1] != b"IEND":
        return None
    idat = [i for i, k in enumerate(kinds) if k == b"IDAT"]
    if not idat or idat != list(range(idat[0], idat[-1] + 1)) or len(chunks[0][1]) != 13:
        return None
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if (w == 0 or h == 0 or ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16)
            or (comp, filt, interlace) != (0, 0, 0)):
        return None
    row = (w * _PNG_CHANNELS[ctype] * depth + 7) // 8
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(chunks[i][1] for i in idat), h * (row + 1) + 1)
    except zlib.error:
        return None
    if len(raw) != h * (row + 1) or not inflater.eof or inflater.unused_data:
        return None
    if any(raw[y * (row + 1)] > 4 for y in range(h)):
        return None
    return w, h


def identify(data):
    """Decode an image; return (format, width, height) of its first frame, e.g. ("JPEG", 200,
    125). A whole, well-formed PNG is read here (png_size); anything else by ImageMagick's
    identify."""
    size = png_size(data)
    if size is not None:
        return ("PNG",) + size
    return magick_identify(data)


def magick_identify(data):
    """identify() by ImageMagick's identify, whatever the image."""
    r = subprocess.run(
        ["identify", "-format", "%m %w %h\n", "-"],
        input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
    )
    if r.returncode != 0:
        raise AssertionError("identify could not decode %d bytes: %s"
                             % (len(data), r.stderr.decode(errors="replace").strip()))
    fmt, w, h = r.stdout.decode().splitlines()[0].split()
    return fmt, int(w), int(h)


# ---------------------------------------------------------------------------------------------
# RESP client


class RespError(Exception):
    """An error reply from Redis (-ERR ...)."""


class Redis:
    """A tiny synchronous RESP2 client: execute(*args) sends one command and returns its reply.

    Bulk strings come back as str (UTF-8, undecodable bytes kept as surrogates) unless the client
    was made with decode=False; nil is None; arrays are lists; error replies raise RespError."""

    def __init__(self, host, port, timeout=10.0, decode=True):
        self.host, self.port, self.timeout, self.decode = host, port, timeout, decode
        self._sock = None
        self._file = None

    def connect(self):
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._file = self._sock.makefile("rb")
        return self

    def close(self):
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode("utf-8")
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read_reply(self):
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._file.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("short bulk reply")
            data = data[:-2]
            return data.decode("utf-8", "surrogateescape") if self.decode else data
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            items = []
            for _ in range(n):
                try:
                    items.append(self._read_reply())
                except RespError as e:  # an error inside an array (EXEC) is a value
                    items.append(e)
            return items
        raise ConnectionError("bad RESP reply: %r" % line)

    def execute(self, *args):
        """Send one command; return its reply."""
        self.connect()
        self._sock.sendall(self._encode(args))
        return self._read_reply()

    def pipeline(self, *commands):
        """Send the commands (each a tuple of arguments) in one write; return their replies."""
        self.connect()
        self._sock.sendall(b"".join(self._encode(c) for c in commands))
        return [self._read_reply() for _ in commands]

    # The commands tests use, for readability.
    def ping(self):
        return self.execute("PING")

    def lpush(self, key, *values):
        return self.execute("LPUSH", key, *values)

    def rpush(self, key, *values):
        return self.execute("RPUSH", key, *values)

    def llen(self, key):
        return self.execute("LLEN", key)

    def lrange(self, key, start=0, stop=-1):
        return self.execute("LRANGE", key, start, stop)

    def lindex(self, key, index):
        return self.execute("LINDEX", key, index)

    def get(self, key):
        return self.execute("GET", key)

    def set(self, key, value):
        return self.execute("SET", key, value)

    def delete(self, *keys):
        return self.execute("DEL", *keys)

    def exists(self, *keys):
        return self.execute("EXISTS", *keys)

    def type(self, key):
        return self.execute("TYPE", key)

    def keys(self, pattern):
        """KEYS: for tests only, never in pixq itself."""
        return self.execute("KEYS", pattern)

    def hgetall(self, key):
        flat = self.execute("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2]))

    def zrange(self, key, start=0, stop=-1, withscores=False):
        args = ["ZRANGE", key, start, stop] + (["WITHSCORES"] if withscores else [])
        return self.execute(*args)

    def pttl(self, key):
        return self.execute("PTTL", key)

    def ttl(self, key):
        return self.execute("TTL", key)


# ---------------------------------------------------------------------------------------------
# HTTP servers of the tests' own


def _read_body(handler):
    """The request body, from Content-Length or chunked transfer encoding."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n > 0 else b""


class _ThreadingHTTPServer6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:<free port>, served from a daemon thread. `host` may
    name another loopback address ("127.0.0.9", "::1") for tests that tell addresses apart."""

    def __init__(self, handler_class, host=LOOPBACK):
        self.host = host
        server_class = _ThreadingHTTPServer6 if ":" in host else http.server.ThreadingHTTPServer
        self.httpd = server_class((host, 0), handler_class)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def base_url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (host, self.port)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (about 40 ms per response on loopback)
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections end after this

    def log_message(self, fmt, *args):  # keep test output clean; servers record what matters
        pass

    def reply(self, status, body=b"", content_type="text/plain", head_only=False, extra=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head_only:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (a killed worker): no noise


CONTENT_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
    ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff", ".json": "application/json",
}


class _SourceHandler(_Handler):
    def do_GET(self):
        self.server.owner._serve(self, head_only=False)

    def do_HEAD(self):
        self.server.owner._serve(self, head_only=True)


class SourceServer(_Server):
    """Serves source images: files maps a path ("/autumn.jpg") to bytes.

    requests(path) counts the GET/HEAD requests per path (query strings ignored) and
    request_times(path) says when they arrived (time.time(), the clock Redis's TIME uses on this
    host). stall(path) makes requests for path wait, without answering, until release() or stop()
    (or `stall_seconds`); status[path] = code answers that path with an error status instead;
    answer_with(path, 503, 503) answers the next requests for path with those statuses, one each,
    before serving it normally again (a status may be (status, {header: value}) to send those
    headers with it); delay[path] = seconds answers that path late."""

    def __init__(self, files=None, stall_seconds=120, host=LOOPBACK):
        self.files = dict(files or {})
        self.status = {}
        self.delay = {}
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self._counts = {}
        self._times = {}
        self._scripted = {}
        self._stalled = set()
        self._release = threading.Event()
        super().__init__(_SourceHandler, host)

    def add(self, path, data):
        self.files[path] = data
        return self.url(path)

    def url(self, path):
        return self.base_url() + path

    def requests(self, path=None):
        """How many requests path received; all paths' counts as a dict without a path."""
        with self._lock:
            return dict(self._counts) if path is None else self._counts.get(path, 0)

    def request_times(self, path):
        """When each request for path arrived (time.time()), in order."""
        with self._lock:
            return list(self._times.get(path, ()))

    def answer_with(self, path, *statuses):
        """Answer the next requests for path with these statuses, in order, then as before."""
        with self._lock:
            self._scripted.setdefault(path, []).extend(statuses)

    def stall(self, path):
        with self._lock:
            self._stalled.add(path)
        self._release.clear()

    def release(self):
        with self._lock:
            self._stalled.clear()
        self._release.set()

    def stop(self):
        self.release()
        super().stop()

    def _serve(self, handler, head_only):
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            self._times.setdefault(path, []).append(time.time())
            stalled = path in self._stalled
            scripted = self._scripted.get(path)
            scripted = scripted.pop(0) if scripted else None
        if stalled:
            self._release.wait(self.stall_seconds)
        if self.delay.get(path):
            time.sleep(self.delay[path])
        if scripted is not None:
            status, extra = scripted if isinstance(scripted, tuple) else (scripted, None)
            handler.reply(status, b"scripted error\n", head_only=head_only, extra=extra)
        elif path in self.status:
            handler.reply(self.status[path], b"error\n", head_only=head_only)
        elif path in self.files:
            ext = os.path.splitext(path)[1].lower()
            handler.reply(200, self.files[path], CONTENT_TYPES.get(ext, "application/octet-stream"),
                          head_only=head_only)
        else:
            handler.reply(404, b"not found\n", head_only=head_only)


class Postback:
    """One request the postback receiver got."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # dict, lower-case names
        self.body = body  # bytes
        self.time = time.monotonic()
        self.wall = time.time()
        try:
            self.json = json.loads(body.decode("utf-8"))
        except ValueError:
            self.json = None

    @property
    def results(self):
        """body["results"] of a JSON postback, or None."""
        return self.json.get("results") if isinstance(self.json, dict) else None

    @property
    def job_id(self):
        r = self.results
        return r.get("job_id") if isinstance(r, dict) else None

    def __repr__(self):
        return "Postback(%s %s %s)" % (self.method, self.path, self.body[:300])


class _PostbackHandler(_Handler):
    def _record(self):
        self.server.owner._record(self)

    do_POST = do_PUT = do_GET = _record


class PostbackReceiver(_Server):
    """Records every request (method, path, headers, body, parsed JSON) and answers
    `status` (200), or the statuses queued with answer_with(...) first, one per request.

    hold_next(n): the next n requests are read but neither recorded nor answered (a receiver that
    crashed while handling them: for the sender they were never delivered) until drop_held()
    closes their connections without an answer; `held` lists them. delay = seconds answers
    every request that late (recorded at once); answer_body = bytes answers a 2xx with that
    body instead of `{}`, error_body = bytes any other status instead of `error`; cut_answer =
    True sends less of the body than its Content-Length."""

    def __init__(self, host=LOOPBACK):
        self.status = 200
        self.delay = 0.0
        self.answer_body = None
        self.error_body = None
        self.cut_answer = False
        self._queued = []
        self._records = []
        self._to_hold = 0
        self.held = []
        self._drop = threading.Event()
        self._cond = threading.Condition()
        super().__init__(_PostbackHandler, host)

    def hold_next(self, n=1):
        with self._cond:
            self._to_hold += n
            self._drop.clear()

    def drop_held(self):
        """Close the held requests' connections without answering them."""
        self._drop.set()

    def stop(self):
        self._drop.set()
        super().stop()

    def url(self, path="/pb"):
        return self.base_url() + path

    def answer_with(self, *statuses):
        """Answer the next requests with these statuses, in order, then with `status`; a status
        may be (status, {header: value}) to send those headers with it."""
        with self._cond:
            self._queued.extend(statuses)

    @property
    def postbacks(self):
        with self._cond:
            return list(self._records)

    def _record(self, handler):
        body = _read_body(handler)
        pb = Postback(handler.command, handler.path,
                      {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._cond:
            hold = self._to_hold > 0
            if hold:
                self._to_hold -= 1
                self.held.append(pb)
                self._cond.notify_all()
        if hold:
            self._drop.wait(120)
            handler.close_connection = True
            return
        with self._cond:
            self._records.append(pb)
            status = self._queued.pop(0) if self._queued else self.status
            self._cond.notify_all()
        status, extra = status if isinstance(status, tuple) else (status, None)
        if self.delay > 0:
            time.sleep(self.delay)
        body = (self.answer_body or b"{}") if status < 300 else (self.error_body or b"error")
        if self.cut_answer:  # promises 1000 bytes more than it sends, then hangs up
            handler.send_response(status)
            handler.send_header("Content-Length", str(len(body) + 1000))
            handler.end_headers()
            handler.wfile.write(body)
            handler.close_connection = True
            return
        handler.reply(status, body, "application/json", extra=extra)

    def wait_for_postback(self, timeout=30, path=None, job_id=None, predicate=None, check=None):
        """The first recorded postback that matches path, job_id and predicate, waiting up to
        timeout seconds for it. check() is called while waiting and may raise."""

        def match(pb):
            return ((path is None or pb.path == path)
                    and (job_id is None or pb.job_id == job_id)
                    and (predicate is None or predicate(pb)))

        return self.wait_for_postbacks(1, timeout, match, check)[0]

    def wait_for_postbacks(self, count, timeout=30, match=None, check=None):
        """The first `count` recorded postbacks for which match(pb) is true (all if None)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [pb for pb in self._records if match is None or match(pb)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "timed out after %.1fs waiting for %d postback(s); received: %r"
                        % (timeout, count, self._records))
                self._cond.wait(min(left, 0.1))
                if check is not None:
                    self._cond.release()
                    try:
                        check()
                    finally:
                        self._cond.acquire()


class TcpProxy:
    """A TCP relay from 127.0.0.1:<free port> to 127.0.0.1:<target_port>, for network-failure
    tests: point a program at the proxy instead of the server.

    swallow = True drops whatever the server sends to the clients (the server did the work, its
    answer never arrives); cut() closes every relayed connection (both ends see the connection
    end); cut_on(pattern) closes the first connection whose client sends `pattern` when the
    server next sends anything on it, dropping that (`tripped` is set then): the answer to the
    command holding the pattern when the client has no other answer outstanding (the server did
    the work, the client never hears of it); cut_before(pattern) closes the first connection
    whose client sends `pattern` without relaying those bytes (the server never runs that
    command; `tripped` is set); new connections are relayed as before. refuse = pattern closes,
    for as long as it is set, every connection whose client sends `pattern`, without relaying
    those bytes (one client of several cut off from the server; `refusals` counts them).
    hold_on(pattern) keeps the bytes of the first client that sends `pattern` from the server
    (`held` is set) until release(): a call held up on the way. mark(pattern) picks the next
    connection whose client sends `pattern`; inject(data) then sends `data` to that client as if
    from the server (bytes no command asked for). stop() ends everything."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.swallow = False
        self.refuse = None
        self.refusals = 0
        self.tripped = threading.Event()
        self._trigger = None
        self._trigger_before = None
        self._hold = None
        self._mark = None
        self.marked = None  # the (client, upstream) pair mark() picked
        self.held = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._pairs = []
        self._stopped = False
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def redis_url(self, db=0):
        return "redis://%s:%d/%d" % (LOOPBACK, self.port, db)

    def connections(self):
        with self._lock:
            return len(self._pairs)

    def _accept_loop(self):
        while not self._stopped:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def cut_on(self, pattern):
        """Arms the trigger: see the class."""
        self.tripped.clear()
        with self._lock:
            self._trigger = pattern

    def cut_before(self, pattern):
        """Arms the other trigger: see the class."""
        self.tripped.clear()
        with self._lock:
            self._trigger_before = pattern

    def hold_on(self, pattern):
        """Holds the next call that sends `pattern`: see the class."""
        self.held.clear()
        self._released.clear()
        with self._lock:
            self._hold = pattern

    def release(self):
        self._released.set()

    def mark(self, pattern):
        """Picks the next connection whose client sends `pattern`: see the class."""
        with self._lock:
            self.marked = None
            self._mark = pattern

    def inject(self, data):
        """Sends `data` to the marked connection's client: see the class."""
        with self._lock:
            pair = self.marked
        if pair is None:
            raise AssertionError("no connection sent the marked pattern")
        pair[0].sendall(data)

    def _pump(self, pair):
        client, upstream = pair
        doomed = False
        tail = b""  # the client's last bytes: a pattern may span two reads
        try:
            while not self._stopped:
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        with self._lock:
                            seen = tail + data
                            if self._trigger_before is not None and self._trigger_before in seen:
                                self._trigger_before = None
                                self.tripped.set()
                                return  # neither these bytes nor the rest reach the server
                            if self.refuse is not None and self.refuse in seen:
                                self.refusals += 1
                                return
                            if self._mark is not None and self._mark in seen:
                                self._mark = None
                                self.marked = pair
                            hold = self._hold is not None and self._hold in seen
                            if hold:
                                self._hold = None
                        if hold:
                            self.held.set()
                            self._released.wait(60)
                        upstream.sendall(data)
                        with self._lock:
                            if self._trigger is not None and self._trigger in seen:
                                self._trigger = None
                                doomed = True
                            tail = seen[-256:]
                    elif doomed:  # the server's answer: dropped with the connection
                        self.tripped.set()
                        return
                    elif not self.swallow:
                        client.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self._close(pair)

    def _close(self, pair):
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self):
        """Close every connection relayed now."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair)

    def stop(self):
        self._stopped = True
        self._released.set()
        try:
            self._sock.close()
        except OSError:
            pass
        self.cut()


# ---------------------------------------------------------------------------------------------
# real servers: redis-server and s3rver


class _Daemon:
    """A server subprocess with its output in a log file; stop() kills it (test data only)."""

    proc = None
    log_path = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def start_cluster_node(test):
    """A Redis Cluster node (cluster-enabled, no slots assigned) on a free loopback port, for the
    tests that pixq refuses one. It is stopped, and its folder removed, when `test` ends. Returns
    its port once it answers PING."""
    folder = Path(tempfile.mkdtemp(prefix="pixq-cluster-"))
    test.addCleanup(shutil.rmtree, folder, True)
    port = reserved_port(test)  # held for the test: see reserved_port()
    # its own bus port: by default port + 10000, past 65535 for a high free port
    node = subprocess.Popen(["redis-server", "--port", str(port), "--bind", LOOPBACK,
                             "--cluster-enabled", "yes", "--cluster-port", str(reserved_port(test)),
                             "--dir", str(folder), "--save", "", "--appendonly", "no",
                             "--logfile", str(folder / "node.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    test.addCleanup(node.wait)
    test.addCleanup(node.terminate)

    def answers():
        probe = Redis(LOOPBACK, port, timeout=1)
        try:
            return probe.ping() == "PONG"
        except OSError:
            return False
        finally:
            probe.close()

    try:
        wait_until(answers, scaled(10), "the cluster node")
    except AssertionError:
        log = folder / "node.log"
        raise AssertionError("the cluster node did not start: %s"
                             % (log.read_text() if log.exists() else "(no log)"))
    return port

class RedisServer(_Daemon):
    """redis-server on a free loopback port, files in `directory`. No persistence, or with
    appendonly=True an append-only file synced every second (what deploy/ recommends; or as
    `appendfsync` says), so that restart() brings the data back."""

    def __init__(self, directory, appendonly=False, appendfsync="everysec"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.port = None
        self.appendonly = appendonly
        self.appendfsync = appendfsync  # "always": every write on disk before its answer
        # the port, held from start() to release_port() (see held_port_socket()): no other
        # test's server can take it, at the start or while restart() has the server down
        self._hold = None

    def _write_conf(self):
        conf = self.dir / "redis.conf"
        persistence = ("appendonly yes\nappendfsync %s\n" % self.appendfsync if self.appendonly
                       else "appendonly no\n")
        conf.write_text(
            "bind 127.0.0.1\nport %d\nprotected-mode yes\ndaemonize no\n"
            'dir "%s"\nlogfile ""\nsave ""\n%s' % (self.port, self.dir, persistence))
        return conf

    def _spawn(self):
        conf = self._write_conf()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", str(conf)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.dir)

    def start(self, timeout=20):
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server is not installed: run scripts/bootstrap")
        for _ in range(5):
            self.release_port()
            self._hold = held_port_socket()
            self.port = self._hold.getsockname()[1]
            self._spawn()
            if self._wait_ready(timeout):
                return self
            self.stop()  # the port could not be had after all: try another
        self.release_port()
        raise AssertionError("redis-server did not start:\n" + tail(self.log_path, 30))

    def release_port(self):
        """Stop holding the port (after stop(): the server is not restarted again)."""
        if self._hold is not None:
            self._hold.close()
            self._hold = None

    def shutdown(self, sig=signal.SIGTERM, timeout=20):
        """Stop the server with `sig` (SIGTERM: a clean shutdown that flushes the AOF; SIGKILL:
        a crash) and wait for it to exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_seconds=0.0, sig=signal.SIGTERM, timeout=20):
        """shutdown(sig), stay down `down_seconds`, start again on the same port and directory
        (with appendonly=True the data comes back from the AOF). Returns when it answers PING."""
        self.shutdown(sig, timeout)
        if down_seconds > 0:
            time.sleep(down_seconds)
        for _ in range(50):  # the port may linger for a moment
            self._spawn()
            if self._wait_ready(timeout):
                return self
            self.stop()
            time.sleep(0.1)
        raise AssertionError("redis-server did not restart on port %d:\n%s"
                             % (self.port, tail(self.log_path, 30)))

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline and self.alive():
            try:
                client = Redis(LOOPBACK, self.port, timeout=1)
                try:
                    if client.ping() == "PONG":
                        return True
                finally:
                    client.close()
            except (OSError, RespError):
                pass
            time.sleep(0.02)
        return False

    def url(self, db=0):
        return "redis://%s:%d/%d" % (LOOPBACK, self.port, db)


class S3rverServer(_Daemon):
    """s3rver (deploy/s3rver, npm) on a port the OS chooses, data in `directory`; the buckets
    are created at start. With processes > 1, that many s3rver processes share the port and
    the data (tests/bench/s3rver-cluster.js)."""

    LISTENING = re.compile(r"S3rver listening on 127\.0\.0\.1:(\d+)")

    def __init__(self, directory, buckets=("pixq-test",), processes=1, die_with_parent=False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "s3rver.log"
        self.buckets = tuple(buckets)
        self.processes = processes
        # killed by the kernel when the thread that started it ends (setpriv --pdeathsig): for a
        # server that outlives the test that started it, if the test process is killed
        self.die_with_parent = die_with_parent
        self.port = None

    def start(self, timeout=30):
        if not os.access(S3RVER_BIN, os.X_OK):
            raise AssertionError("%s is missing: run scripts/bootstrap (npm ci in deploy/s3rver)"
                                 % S3RVER_BIN)
        args = [str(S3RVER_BIN), "-d", str(self.dir / "data"), "-a", LOOPBACK, "-p", "0"]
        if self.processes > 1:
            (self.dir / "data").mkdir(exist_ok=True)
            args = ["node", str(S3RVER_CLUSTER), "-d", str(self.dir / "data"), "-a", LOOPBACK,
                    "--processes", str(self.processes)]
        for b in self.buckets:
            args += ["--configure-bucket", b]
        if self.die_with_parent:
            args = ["setpriv", "--pdeathsig", "KILL", "--"] + args
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            self.port = int(wait_until(self._listening_port, scaled(timeout), "s3rver to listen",
                                       check=self._check_alive))
            for b in self.buckets:
                wait_until(lambda b=b: self.get_object(b, "")[0] == 200, scaled(timeout),
                           "s3rver bucket %s" % b, check=self._check_alive)
        except AssertionError as e:
            self.stop()
            raise AssertionError("%s\n%s" % (e, tail(self.log_path, 30))) from None
        return self

    def stop(self):
        if self.proc is not None and self.processes > 1 and self.proc.poll() is None:
            self.proc.terminate()  # the cluster's primary stops its children first
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        super().stop()

    def _listening_port(self):
        try:
            m = self.LISTENING.search(self.log_path.read_text(errors="replace"))
        except OSError:
            return None
        return m.group(1) if m else None

    def _check_alive(self):
        if not self.alive():
            raise AssertionError("s3rver exited with status %s" % self.proc.returncode)

    def empty(self, buckets, timeout=10):
        """Leave exactly `buckets`, each without objects or uploads. s3rver keeps everything in
        its data directory (a directory per bucket, files per object) and reads it there on each
        request, so the directory is rebuilt; then GET / must list just these buckets (OSError
        if it does not answer within `timeout` seconds)."""
        data = self.dir / "data"
        for entry in data.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for b in buckets:
            (data / b).mkdir()
        self.buckets = tuple(buckets)
        listed = self.bucket_names(timeout)
        if listed != sorted(buckets):
            raise AssertionError("s3rver, emptied for %s, lists %s" % (list(buckets), listed))

    def bucket_names(self, timeout=10):
        """The buckets GET / lists, sorted; AssertionError if it does not answer 200, OSError
        if it does not answer."""
        status, _, body = http_request(self.endpoint() + "/", timeout=timeout)
        if status != 200:
            raise AssertionError("s3rver answered GET / with %s: %r" % (status, body[:300]))
        return sorted(re.findall(r"<Name>([^<]*)</Name>", body.decode("utf-8", "replace")))

    def endpoint(self):
        return "http://%s:%d" % (LOOPBACK, self.port)

    def object_url(self, bucket, key):
        """Path-style URL of an object: http://127.0.0.1:<port>/<bucket>/<key>."""
        return "%s/%s/%s" % (self.endpoint(), bucket, urllib.parse.quote(key, safe="/~"))

    def get_object(self, bucket, key):
        """Anonymous GET: (status, headers, body)."""
        return http_request(self.object_url(bucket, key))

    def put_object(self, bucket, key, data, content_type="application/octet-stream"):
        """Anonymous PUT (s3rver accepts it): the status."""
        return http_request(self.object_url(bucket, key), "PUT", data,
                            {"Content-Type": content_type})[0]


class SharedS3rver:
    """A test's view of the process's one s3rver (PixqTestCase with s3_server = "s3rver").

    start() empties the server for this test's buckets, starting it at the first test (and again
    if it has died, or does not answer within ANSWER_TIMEOUT seconds); stop() does nothing: the server stays for the next test (and this view can
    still show its log). Attributes not defined here are the server's (port, proc, log_path,
    endpoint(), get_object(), ...). The server and its directory go when the process exits
    (atexit), and with the process if it is killed (die_with_parent)."""

    _server = None  # the process's S3rverServer
    _dir = None
    ANSWER_TIMEOUT = 10  # seconds; a server that does not answer the emptying is replaced

    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.server = None

    def start(self):
        cls = SharedS3rver
        if cls._server is not None and not cls._server.alive():
            cls._server.stop()
            cls._server = None
        if cls._server is not None:
            try:
                cls._server.empty(self.buckets, cls.ANSWER_TIMEOUT)
            except OSError as e:
                # hung (stopped, or stuck in its event loop): every later test of the process
                # would fail at this point, so it makes way for a new one
                sys.stderr.write("harness: s3rver (pid %d) did not answer (%s); starting a new "
                                 "one\n" % (cls._server.proc.pid, e))
                cls._server.stop()
                cls._server = None
        if cls._server is None:
            if cls._dir is None:
                cls._dir = Path(tempfile.mkdtemp(prefix="pixq-s3rver-"))
                atexit.register(cls._end)
            d = cls._dir / ("s3rver-%d" % len(list(cls._dir.iterdir())))
            cls._server = S3rverServer(d, self.buckets, die_with_parent=True).start()
        self.server = cls._server
        return self

    def stop(self):
        pass

    def __getattr__(self, name):
        if self.server is None:
            raise AttributeError("%s: the test's s3rver is not started" % name)
        return getattr(self.server, name)

    @classmethod
    def _end(cls):
        if cls._server is not None:
            cls._server.stop()
            cls._server = None
        if cls._dir is not None and not CONFIG.keep:
            shutil.rmtree(cls._dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the programs under test


class Program:
    """A pixq program started as a subprocess, output in a log file."""

    def __init__(self, name, argv, env, log_path, started_marks=()):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        # log texts that show the program has set up its signal handlers (see wait_started)
        self.started_marks = tuple(started_marks)
        self._log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def wait_started(self, age):
        """Wait until the log shows one of started_marks, the program has ended, or it has run
        for `age` seconds. A SIGTERM sent before the program has set up its handlers ends it
        with the signal's default action, not its graceful stop: a worker started just before
        a test ends (the chaos test replaces killed workers to the last moment) is still loading
        its libraries, a quarter of a second under ASan on a busy machine."""
        def started():
            if not self.alive() or time.monotonic() - self.started_at >= age:
                return True
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                return False
            return any(mark in text for mark in self.started_marks)

        if self.started_marks:
            wait_until(started, age + 1, "%s to start" % self.name)

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self):
        """Raise AssertionError if the program has exited."""
        if self.proc.poll() is not None:
            raise AssertionError("%s (pid %d) exited with status %s; its log:\n%s"
                                 % (self.name, self.pid, self.proc.returncode,
                                    tail(self.log_path, 60)))

    def terminate(self, timeout=20):
        """SIGTERM, wait; SIGKILL if it is still there. Returns (exit status, was killed)."""
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                killed = True
        self._log.close()
        return self.proc.returncode, killed

    LOG_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')

    def log_events(self, event=None):
        """The key=value lines of the log (pixq's log format) as dicts, those of one event name
        only if given; quoted values are unquoted."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        events = []
        for line in text.splitlines():
            fields = {}
            for k, v in self.LOG_FIELD.findall(line):
                if v.startswith('"') and v.endswith('"') and len(v) >= 2:
                    v = re.sub(r'\\(.)', r'\1', v[1:-1])
                fields[k] = v
            if "event" in fields and (event is None or fields["event"] == event):
                events.append(fields)
        return events

    def sanitizer_report(self):
        """The first line of the log that a sanitizer wrote, or None."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if any(m in line for m in SANITIZER_MARKERS):
                return line
        return None


# ---------------------------------------------------------------------------------------------
# the test case


class PixqTestCase(unittest.TestCase):
    """Base class: every test gets its own servers, clients and temporary directory.

    Class attributes to override: queue, buckets (the first is PIXQ_DEFAULT_BUCKET),
    redis_appendonly, redis_appendfsync, s3_server, start_worker_in_setup, worker_env_extra,
    worker_exit_statuses, worker_stop_timeout."""

    queue = "default"
    buckets = ("pixq-test",)
    redis_appendonly = False  # True: the test's redis-server keeps an AOF (see RedisServer)
    redis_appendfsync = "everysec"  # its appendfsync ("always": a crash loses no answered write)
    # "s3rver", or "stub": the in-memory fault-injecting S3 of s3stub.py, in the test process
    # (self.s3 is then an S3Stub: faults, records(), counts(); see make_s3)
    s3_server = "s3rver"
    start_worker_in_setup = True
    worker_env_extra = {}
    worker_exit_statuses = (0,)  # what the worker may exit with after SIGTERM
    worker_stop_timeout = 20  # seconds a worker has to exit after SIGTERM

    maxDiff = None

    # -- set-up and tear-down ------------------------------------------------------------------

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="pixq-it-"))
        self.addCleanup(self._remove_tmp)
        self.addCleanup(self._dump_logs_if_failed)
        self.programs = []  # running programs, stopped at the end
        self.programs_ever = []  # every program started, for the failure log
        self.cli_logs = []

        self.redis_server = RedisServer(self.tmp / "redis", appendonly=self.redis_appendonly,
                                        appendfsync=self.redis_appendfsync)
        self.addCleanup(self.redis_server.release_port)  # after stop(): cleanups run last first
        self.addCleanup(self.redis_server.stop)
        self.redis_server.start()
        self.s3 = self.make_s3()
        self.addCleanup(self.s3.stop)
        self.s3.start()
        self.src = SourceServer()
        self.addCleanup(self.src.stop)
        self.postbacks = PostbackReceiver()
        self.addCleanup(self.postbacks.stop)
        self.redis = Redis(LOOPBACK, self.redis_server.port)
        self.addCleanup(self.redis.close)
        # Registered last, so run first: programs end before the servers they talk to.
        self.addCleanup(self._stop_programs)

        self.worker = self.start_worker() if self.start_worker_in_setup else None

    def make_s3(self):
        """The test's S3 server, not started yet: the process's s3rver (SharedS3rver, emptied
        for this test's buckets when started), or with s3_server = "stub" an
        s3stub.S3Stub holding self.buckets, its requests logged to s3stub.log in the temporary
        directory. Workers get its endpoint and credentials from worker_env()."""
        if self.s3_server == "stub":
            import s3stub  # noqa: E402 (beside this file)
            return s3stub.S3Stub(buckets=self.buckets, log_path=self.tmp / "s3stub.log")
        return SharedS3rver(self.buckets)

    def _stop_programs(self):
        problems = []
        for prog in reversed(self.programs):
            prog.wait_started(scaled(3))
            status, killed = prog.terminate(scaled(self.worker_stop_timeout))
            report = prog.sanitizer_report()
            if killed:
                problems.append("%s (pid %d) ignored SIGTERM for %.0fs and was killed"
                                % (prog.name, prog.pid, scaled(self.worker_stop_timeout)))
            elif status not in self.worker_exit_statuses:
                problems.append("%s (pid %d) exited with status %s after SIGTERM (expected %s)"
                                % (prog.name, prog.pid, status, self.worker_exit_statuses))
            if report:
                problems.append("%s (pid %d) log has a sanitizer report: %s"
                                % (prog.name, prog.pid, report))
        self.programs = []
        if problems:
            self._force_dump = True
            raise AssertionError("\n".join(problems))

    def _failed(self):
        """Whether this test has failed so far (its body, setUp or a cleanup that already ran)."""
        if getattr(self, "_force_dump", False) or CONFIG.verbose:
            return True
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return True
        for test, _ in getattr(result, "errors", []) + getattr(result, "failures", []):
            if getattr(test, "test_case", test) is self:  # a subTest names its test_case
                return True
        return False

    def _dump_logs_if_failed(self):
        if not self._failed():
            return
        out = ["", "=" * 30 + " logs of %s (in %s) " % (self.id(), self.tmp) + "=" * 30]
        for prog in getattr(self, "programs_ever", []):
            out += ["--- %s log (%s)" % (prog.name, prog.log_path), tail(prog.log_path, 400)]
        for name, path in self.cli_logs:
            out += ["--- %s" % name, tail(path, 100)]
        s3_log = getattr(getattr(self, "s3", None), "log_path", None)  # None: never started
        if s3_log is not None:
            out += ["--- s3rver log (last 40 lines)", tail(s3_log, 40)]
        if hasattr(self, "redis_server"):
            out += ["--- redis log (last 20 lines)", tail(self.redis_server.log_path, 20)]
        if hasattr(self, "postbacks"):
            out += ["--- postbacks received: %r" % self.postbacks.postbacks]
        if hasattr(self, "src"):
            out += ["--- source requests: %r" % self.src.requests()]
        out += ["=" * 80, ""]
        sys.stderr.write("\n".join(out))
        sys.stderr.flush()

    def _remove_tmp(self):
        if CONFIG.keep:
            sys.stderr.write("PIXQ_TEST_KEEP=1: kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the programs under test ---------------------------------------------------------------

    def worker_env(self, **extra):
        """The environment of the worker and the CLI for this test's servers."""
        env = clean_env()
        env.update({
            "PIXQ_REDIS_URL": self.redis_server.url(),
            "PIXQ_QUEUE": self.queue,
            "PIXQ_S3_ENDPOINT": self.s3.endpoint(),
            "AWS_ACCESS_KEY_ID": "S3RVER",
            "AWS_SECRET_ACCESS_KEY": "S3RVER",
            "AWS_REGION": "us-east-1",
            "PIXQ_DEFAULT_BUCKET": self.buckets[0],
            "PIXQ_ALLOW_PRIVATE_NETWORKS": "1",
            "PIXQ_LOG_LEVEL": "debug",
        })
        if hasattr(self.s3, "credentials"):  # the stub checks signatures with its own keys
            env.update(self.s3.credentials())
        env.update({k: str(v) for k, v in self.worker_env_extra.items()})
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def cli_env(self, **extra):
        """worker_env() for the CLI: PIXQ_LOG_LEVEL=info unless `extra` says otherwise, so that
        pixq's stderr holds its messages, not a debug line per Redis command."""
        return self.worker_env(**dict({"PIXQ_LOG_LEVEL": "info"}, **extra))

    def start_worker(self, *args, **env):
        """Start one more worker (pixq-worker [args]) with worker_env(**env); it is stopped with
        SIGTERM at the end of the test. Returns its Program."""
        if not CONFIG.worker or not os.access(CONFIG.worker, os.X_OK):
            raise AssertionError("no worker binary (--worker or PIXQ_TEST_WORKER): %r"
                                 % CONFIG.worker)
        n = len(self.programs_ever) + 1
        # started: a worker's handlers are set before it logs worker_start, a supervisor's
        # before it forks its first child
        prog = Program("worker-%d" % n, [CONFIG.worker, *args], self.worker_env(**env),
                       self.tmp / ("worker-%d.log" % n),
                       started_marks=("worker_start", "child_start"))
        self.programs.append(prog)
        self.programs_ever.append(prog)
        return prog

    def run_pixq(self, *args, input=None, timeout=60, env=None, cwd=None):
        """Run the CLI (pixq [args]) to completion with cli_env(); returns CompletedProcess
        with str stdout and stderr (both also kept for the failure log)."""
        if not CONFIG.pixq or not os.access(CONFIG.pixq, os.X_OK):
            raise AssertionError("no pixq CLI binary (--pixq or PIXQ_TEST_CLI): %r" % CONFIG.pixq)
        n = len(self.cli_logs) + 1
        r = subprocess.run([os.path.abspath(CONFIG.pixq), *args], input=input,
                           env=self.cli_env(**(env or {})),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=scaled(timeout), cwd=cwd)
        path = self.tmp / ("pixq-%d.log" % n)
        path.write_text("$ pixq %s\nexit status %d\n--- stdout\n%s--- stderr\n%s"
                        % (" ".join(args), r.returncode, r.stdout, r.stderr))
        self.cli_logs.append(("pixq %s (exit %d)" % (" ".join(args), r.returncode), path))
        return r

    def kill_worker(self, prog, sig=signal.SIGKILL):
        """Send sig to a worker (a crash, for recovery tests), wait for it to end, and take it
        off the list checked at tear-down. Returns its exit status."""
        prog.proc.send_signal(sig)
        prog.proc.wait(scaled(self.worker_stop_timeout))
        if prog in self.programs:
            self.programs.remove(prog)
        prog.terminate()  # closes its log
        return prog.proc.returncode

    def check_workers(self):
        """Raise if any worker started by this test has exited."""
        for prog in self.programs:
            prog.check_alive()

    # -- Redis keys and jobs -------------------------------------------------------------------

    def key(self, name):
        """pixq:{<queue>}:<name>"""
        return "pixq:{%s}:%s" % (self.queue, name)

    def push_job(self, job):
        """LPUSH a job (a dict, dumped as JSON, or a raw string) onto pixq:{queue}:jobs."""
        payload = job if isinstance(job, str) else json.dumps(job)
        return self.redis.lpush(self.key("jobs"), payload)

    def make_job(self, src, key=None, function="resize_to_fit", params=None, identifier="thumb",
                 job_id=None, postback_path="/pb", bucket=None):
        """A one-function Blitline job: `src` (URL), one function whose save goes to
        s3_destination bucket/key (or to no destination if key is None)."""
        fn = {"name": function}
        if params is not None:
            fn["params"] = params
        save = {"image_identifier": identifier}
        if key is not None:
            save["s3_destination"] = {"bucket": bucket or self.buckets[0], "key": key}
        fn["save"] = save
        job = {"application_id": "test", "src": src,
               "postback_url": self.postbacks.url(postback_path), "functions": [fn]}
        if job_id is not None:
            job["job_id"] = job_id
        return job

    def wait_for_postback(self, timeout=30, **match):
        """The first postback matching path/job_id/predicate, watching that the workers live."""
        return self.postbacks.wait_for_postback(scaled(timeout), check=self.check_workers,
                                                **match)

    def wait_until(self, predicate, timeout=30, what="condition"):
        """Poll predicate() (watching the workers) until it is true; return its value."""
        return wait_until(predicate, scaled(timeout), what, check=self.check_workers)

    def read_result(self, job_id, timeout=10):
        """The result JSON stored at pixq:{queue}:result:<job_id> (a list), parsed."""
        key = self.key("result:" + job_id)
        self.wait_until(lambda: self.redis.exists(key), timeout, "%s to exist" % key)
        kind = self.redis.type(key)
        self.assertEqual(kind, "list", "%s should be a list" % key)
        raw = self.redis.lindex(key, 0)
        return json.loads(raw)

    def assert_queue_drained(self, timeout=10):
        """pixq:{queue}:jobs ends empty and no pixq:{queue}:active:* key remains."""
        jobs, active = self.key("jobs"), self.key("active:*")
        self.wait_until(
            lambda: self.redis.llen(jobs) == 0 and not self.redis.keys(active), timeout,
            "%s to be empty and no %s key" % (jobs, active))

    # -- S3 ------------------------------------------------------------------------------------

    def s3_url(self, key, bucket=None):
        return self.s3.object_url(bucket or self.buckets[0], key)

    def s3_object(self, key, bucket=None):
        """The bytes of an object in s3rver (anonymous GET); fails the test if it is absent."""
        status, _, body = self.s3.get_object(bucket or self.buckets[0], key)
        if status == 200 and not body:
            # s3rver once answered an object stored a moment before (a 734-byte PUT, 200) with
            # an empty body, on a loaded machine: read again; an object stored empty stays so
            time.sleep(0.2)
            status, _, body = self.s3.get_object(bucket or self.buckets[0], key)
        self.assertEqual(status, 200, "GET %s answered %d: %r" % (self.s3_url(key, bucket),
                                                                  status, body[:300]))
        return body

    def assert_image(self, data, fmt, width, height):
        """data decodes (ImageMagick) as fmt ("JPEG", "PNG", "WEBP") of width x height."""
        self.assertEqual(identify(data), (fmt, width, height))

    def assert_saves_stored(self, results, job_id, saves, bucket_of):
        """results (a postback's) report job_id's saves img0, img1... without an error, each a
        PNG of 8 + 4i pixels a side stored at <job_id>/<i>.png in bucket_of(i), as its s3_url
        and meta say (the jobs of the S3 stub's tests: test_throttle, MixedChaosTest)."""
        self.assertNotIn("errors", results, results)
        self.assertEqual(results["job_id"], job_id)
        images = sorted(results["images"], key=lambda im: im["image_identifier"])
        self.assertEqual([im["image_identifier"] for im in images],
                         sorted("img%d" % i for i in range(saves)), results)
        for im in images:
            i = int(im["image_identifier"][3:])
            bucket, key = bucket_of(i), "%s/%d.png" % (job_id, i)
            self.assertEqual(im["s3_url"], self.s3.object_url(bucket, key))
            self.assertEqual(im["meta"], {"width": 8 + 4 * i, "height": 8 + 4 * i})
            data = self.s3.object(bucket, key)
            self.assertIsNotNone(data, "%s/%s was not stored" % (bucket, key))
            self.assertEqual(identify(data), ("PNG", 8 + 4 * i, 8 + 4 * i))


# ---------------------------------------------------------------------------------------------
# command line


class _TimedResult(unittest.TextTestResult):
    """A TextTestResult that keeps how long each test took (set-up and clean-ups included)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.durations = []
        self._started = None

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.durations.append((time.monotonic() - self._started, test.id()))


class TimedRunner(unittest.TextTestRunner):
    """unittest's runner, ending with the slowest tests and their seconds: where the suite's
    time goes, in every meson log."""

    resultclass = _TimedResult
    SHOWN = 8

    def run(self, test):
        result = super().run(test)
        slowest = sorted(result.durations, reverse=True)[:self.SHOWN]
        if slowest:
            self.stream.writeln("slowest tests: total %.1f s" % sum(d for d, _ in result.durations))
            for seconds, name in slowest:
                self.stream.writeln("  %6.1f s  %s" % (seconds, name))
            self.stream.flush()
        return result


NETNS_MARK = "PIXQ_TEST_OWN_NETNS"


def in_own_network_namespace():
    """Runs this test program again in a network namespace of its own, holding only a loopback
    interface, when the machine lets it (root, or user namespaces: `unshare --net`), and
    returns in the new one. For the tests that name addresses elsewhere than loopback (a
    private range, the instance metadata service at 169.254.169.254) for the worker's guard to
    refuse: should the guard regress, or a mutant of it be tested, a request meets "network is
    unreachable" instead of leaving the machine; so do name look-ups beyond /etc/hosts. Where
    it cannot, says so on stderr and goes on in the machine's own network."""
    if os.environ.get(NETNS_MARK) == "1":
        return
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        why = "unshare or ip not found"
    else:
        probe = subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if probe.returncode == 0:
            os.environ[NETNS_MARK] = "1"
            sys.stdout.flush()
            sys.stderr.flush()
            os.execvp("unshare", ["unshare", "--net", "--", "sh", "-c",
                                  'ip link set lo up && exec "$@"', "sh", sys.executable,
                                  *sys.argv])
        why = probe.stderr.strip() or "unshare --net failed"
    print("note: no network namespace of its own (%s): running in the machine's network"
          % why, file=sys.stderr)


def share_of(names, part):
    """The classes `names` of a test file's part, or of one share of it: "rest" is every one,
    "rest/2:1" the first of two shares (every other one, from the first), so that meson runs a
    long part as tests of their own, side by side, and the suite's run is not held up by one."""
    base, _, share = part.partition("/")
    if not share:
        return list(names)
    count, _, index = share.partition(":")
    assert 1 <= int(index) <= int(count), part
    return list(names)[int(index) - 1::int(count)]


def main(argv=None):
    """Parse --worker, --pixq, --data, --timeout-scale; hand the rest to unittest.main()."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--worker")
    parser.add_argument("--pixq")
    parser.add_argument("--data")
    parser.add_argument("--timeout-scale", type=float)
    opts, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if opts.worker:
        CONFIG.worker = opts.worker
    if opts.pixq:
        CONFIG.pixq = opts.pixq
    if opts.data:
        CONFIG.data = Path(opts.data)
    if opts.timeout_scale:
        CONFIG.timeout_scale = opts.timeout_scale
    unittest.main(module="__main__", argv=[sys.argv[0]] + rest, verbosity=2,
                  testRunner=TimedRunner)
