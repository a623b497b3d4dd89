"""Random S3 requests signed by botocore, the oracle for test_sigv4's cross-check.

Usage: /usr/bin/python3 sigv4_botocore.py SEED COUNT

Prints COUNT lines, each a JSON object describing one random S3 request (seeded, so a SEED
always gives the same requests) and how botocore's S3SigV4Auth signed it:

  method, path, query    as sent on the wire (path and query already %-encoded, query without '?')
  headers                [[name, value], ...] in order, exactly the headers botocore signed
                         (the caller's, then X-Amz-Date and X-Amz-Content-SHA256 that botocore
                         adds); the Authorization header is left out
  body_hex               the body
  access_key, secret_key, region, service, amz_date
  authorization          the Authorization header botocore produced
  canonical_request      botocore's canonical request, to diagnose a mismatch

botocore is told nothing the C signer is not: requests are plain http (so botocore always hashes
the payload), no Date, User-Agent or Expect header (botocore rewrites or drops them), and the
clock is pinned so X-Amz-Date is the random time chosen here.

Run it with Debian's /usr/bin/python3 (package python3-botocore); exits 2 if botocore is missing.
"""

import datetime
import hashlib
import json
import random
import re
import sys
import types
from urllib.parse import quote

try:
    import botocore
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
except ImportError as exc:
    sys.stderr.write(
        "sigv4_botocore.py: cannot import botocore (%s); install python3-botocore and run "
        "this script with /usr/bin/python3\n" % exc
    )
    sys.exit(2)

REGIONS = ["us-east-1", "us-west-2", "eu-west-3", "ap-southeast-2", "sa-east-1",
           "cn-north-1", "us-gov-west-1", "minio", "garage"]
# Pieces of object keys: the characters S3 clients get wrong.
KEY_PIECES = ["photo", "IMG_0001.jpg", "a b", "  ", "$", "+", "=", "~", "!", "*", "'", "(", ")",
              "&", ",", ";", ":", "@", "%", "#", "?", "[", "]", "é", "ሴ", "日本語", "😀",
              "/", "//", ".", "..", "/../", "/./", "-_.", "%20", "%2F", "x", "0"]
QUERY_NAMES = ["prefix", "max-keys", "list-type", "delimiter", "uploadId", "partNumber",
               "versionId", "response-content-type", "acl", "a b", "Ünï", "x+y", "k=v", "&",
               "~t", "/p", "UPPER", "lower", "a-b", "a"]
META_NAMES = ["X-Amz-Meta-Author", "x-amz-meta-author", "X-AMZ-META-TAGS", "x-amz-meta-a",
              "x-amz-meta-b-c", "X-Amz-Meta-Z"]
OTHER_HEADERS = [("Content-Type", ["image/png", "image/jpeg", "text/plain; charset=utf-8"]),
                 ("Cache-Control", ["max-age=60", "no-cache,  no-store"]),
                 ("x-amz-storage-class", ["STANDARD", "REDUCED_REDUNDANCY"]),
                 ("x-amz-acl", ["private", "public-read"]),
                 ("Content-Disposition", ['attachment; filename="a b.png"'])]
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
SECRET_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"


class PinnedClock:
    """Stands in for the datetime module inside botocore.auth: utcnow() is `now`."""

    def __init__(self):
        self.now = None
        clock = self

        class PinnedDatetime(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return clock.now

        self.datetime = PinnedDatetime
        self.timedelta = datetime.timedelta
        self.timezone = datetime.timezone


def random_key(rng):
    return "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(1, 7)))


def random_path(rng):
    style = rng.random()
    if style < 0.05:
        return "/"
    key = quote(random_key(rng), safe="/~")
    if style < 0.5:
        return "/bucket-%d/%s" % (rng.randint(0, 99), key)  # path-style
    return "/" + key  # virtual-hosted


def random_text(rng, alphabet, low, high):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def wire_encode(rng, s):
    """%-encodes `s` as a client might put it on the wire: canonical, or with some sub-delims
    left raw, or with lowercase hex. Never a raw '+', '&', '=' or '#'."""
    style = rng.random()
    if style < 0.5:
        return quote(s, safe="-_.~")
    if style < 0.8:
        return quote(s, safe="-_.~!*'(),;:@/$")
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(s, safe="-_.~"))


def random_query(rng):
    params, pieces = [], []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        name = rng.choice(QUERY_NAMES)
        value = rng.choice(["", "", "1", "J", "a b", "a+b", "x=y", "ü", "%", "/a/b",
                            random_text(rng, PRINTABLE, 0, 12)])
        params.append((name, value))
        piece = wire_encode(rng, name)
        if value or rng.random() < 0.5:
            piece += "=" + wire_encode(rng, value)
        pieces.append(piece)
    return params, "&".join(pieces)


def odd_spacing(rng, text):
    """Surrounds and splits `text` with runs of spaces and tabs."""
    blank = lambda: "".join(rng.choice(" \t") for _ in range(rng.randint(0, 3)))
    words = text.split(" ")
    return blank() + "".join(w + blank() + (" " if i < len(words) - 1 else "")
                             for i, w in enumerate(words)) + blank()


def random_headers(rng, method, host):
    headers = [("Host", host)]
    for _ in range(rng.randint(0, 5)):
        value = rng.choice([random_text(rng, PRINTABLE, 0, 20), "a  b   c", "", "   ",
                            "v1, v2", "x\ty"])
        headers.append((rng.choice(META_NAMES), odd_spacing(rng, value)))
    for name, values in OTHER_HEADERS:
        if rng.random() < 0.25:
            headers.append((name, odd_spacing(rng, rng.choice(values))))
    if method == "GET" and rng.random() < 0.3:
        headers.append(("Range", "bytes=0-%d" % rng.randint(0, 4096)))
    if rng.random() < 0.1:  # as many and as long names as a job may give (JOB_MAX_HEADERS 24,
        for _ in range(24):  # JOB_HEADER_NAME_MAX 128): SignedHeaders of over 3 KB
            name = "x-amz-meta-" + random_text(rng, "abcdefghijklmnopqrstuvwxyz0123456789-",
                                               100, 117)
            headers.append((name, random_text(rng, PRINTABLE, 0, 8)))
    rng.shuffle(headers)
    return headers


def random_body(rng, method):
    if method != "PUT":
        return b""
    kind = rng.random()
    if kind < 0.2:
        return b""
    if kind < 0.5:
        return "Welcome to Amazon S3. é".encode("utf-8") * rng.randint(1, 5)
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))


def random_credentials(rng):
    access = "AKIA" + random_text(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 16)
    return access, random_text(rng, SECRET_CHARS, 40, 40)


def sign_one(rng, clock):
    method = rng.choice(["GET", "PUT", "HEAD"])
    region = rng.choice(REGIONS)
    path = random_path(rng)
    host = rng.choice(["127.0.0.1:9000", "localhost",
                       "bucket.s3.%s.amazonaws.com" % region, "s3.amazonaws.com"])
    params, wire_query = random_query(rng)
    headers = random_headers(rng, method, host)
    body = random_body(rng, method)
    access, secret = random_credentials(rng)
    clock.now = datetime.datetime(2013, 1, 1) + datetime.timedelta(
        seconds=rng.randint(0, 20 * 365 * 86400))
    amz_date = clock.now.strftime("%Y%m%dT%H%M%SZ")

    request = botocore.awsrequest.AWSRequest(method=method, url="http://" + host + path,
                                             data=body, params=params)
    for name, value in headers:
        request.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    signer = botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(access, secret),
                                       "s3", region)
    captured = {}
    canonical_request = signer.canonical_request

    def capture(req):
        captured["creq"] = canonical_request(req)
        return captured["creq"]

    signer.canonical_request = capture
    signer.add_auth(request)

    if request.headers["X-Amz-Date"] != amz_date:
        raise SystemExit("sigv4_botocore.py: botocore did not use the pinned clock")
    if request.headers["X-Amz-Content-SHA256"] != hashlib.sha256(body).hexdigest():
        raise SystemExit("sigv4_botocore.py: botocore did not sign the payload hash")
    sent = [[n, v] for n, v in request.headers.items() if n.lower() != "authorization"]
    return {
        "method": method, "path": path, "query": wire_query, "headers": sent,
        "body_hex": body.hex(), "access_key": access, "secret_key": secret,
        "region": region, "service": "s3", "amz_date": amz_date,
        "authorization": request.headers["Authorization"],
        "canonical_request": captured["creq"],
    }


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: sigv4_botocore.py SEED COUNT")
    rng = random.Random(int(sys.argv[1]))
    count = int(sys.argv[2])
    clock = PinnedClock()
    botocore.auth.datetime = clock
    if hasattr(botocore.auth, "get_current_datetime"):  # botocore >= 1.33 reads the clock here
        botocore.auth.get_current_datetime = lambda *args, **kwargs: clock.now
    for _ in range(count):
        sys.stdout.write(json.dumps(sign_one(rng, clock), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
