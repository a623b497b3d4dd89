"""A credentials endpoint on loopback for the tests: a container's (ECS task roles, EKS Pod
Identity) at /creds, and the EC2 instance metadata service's version 2 under /latest/, serving the
keys the test sets, as AWS does:

* container: GET /creds, with the Authorization value the test asks for (when it asks for one),
  answers {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"};
* IMDSv2: PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds gives a session token;
  GET /latest/meta-data/iam/security-credentials/ with it names the role, and GET .../<role>
  answers {"Code": "Success", ..., the keys}. A GET without a valid token is answered 401, as an
  instance that requires IMDSv2 does;
* STS: POST / with a form Action=AssumeRoleWithWebIdentity, Version, RoleArn,
  RoleSessionName and WebIdentityToken answers AssumeRoleWithWebIdentityResponse XML with the
  keys when the token is `web_token` (else 400 InvalidIdentityToken, in STS's XML).

`down` makes every answer a 500; `hang` (seconds) holds every answer that long first, as an
endpoint that does not answer. For IMDS, `token_status` answers the token's PUT with that status
instead (an IMDSv1-only instance, or a proxy, answers 403, 404 or 405), `token_hang` holds that
answer (a container behind a hop limit of 1, which IMDSv2's answers do not reach), and `v1`
takes GETs without a token (an instance that allows IMDSv1). Every request is recorded (method,
path, headers)."""

import http.server
import json
import threading
import time
import urllib.parse

ROLE = "pixq-role"


class MetadataStub:
    def __init__(self):
        self.keys = None  # (access key, secret, token, expiration as epoch seconds)
        self.auth = None  # the Authorization value /creds wants; None: any
        self.down = False
        self.hang = 0.0
        self.token_status = None
        self.token_hang = 0.0
        self.v1 = False
        self.web_token = None  # the web identity token STS takes
        self.forms = []  # the forms POSTed to / (STS)
        self.requests = []
        self._tokens = set()
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                owner._handle(self)

            do_PUT = do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client gone while held
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def url(self, path):
        return self.base + path

    def set(self, key, secret, token, expires_in_s):
        self.keys = (key, secret, token, time.time() + expires_in_s)

    def paths(self, method=None):
        with self._lock:
            return [r[1] for r in self.requests if method is None or r[0] == method]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, h, status, body, content_type="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _keys_json(self, imds):
        key, secret, token, expires = self.keys
        doc = {"AccessKeyId": key, "SecretAccessKey": secret, "Token": token,
               "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}
        if imds:
            doc = dict({"Code": "Success", "Type": "AWS-HMAC",
                        "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, **doc)
        else:
            doc["RoleArn"] = "arn:aws:iam::123456789012:role/" + ROLE
        return json.dumps(doc, indent=2)

    def _sts(self, h, body):
        form = dict(urllib.parse.parse_qsl(body.decode()))
        with self._lock:
            self.forms.append(form)
        if form.get("WebIdentityToken") != self.web_token:
            return self._answer(h, 400, (
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>"
                "<Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn&apos;t "
                "retrieve verification key from your identity provider</Message></Error>"
                "<RequestId>stub</RequestId></ErrorResponse>"), "text/xml")
        key, secret, token, expires = self.keys
        return self._answer(h, 200, (
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
            "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>%s</AccessKeyId>"
            "<SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>"
            "<Expiration>%s</Expiration></Credentials><SubjectFromWebIdentityToken>system:sa"
            "</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>%s/%s</Arn></AssumedRoleUser>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>") % (
            key, secret.replace("&", "&amp;"), token,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            form.get("RoleArn"), form.get("RoleSessionName")), "text/xml")

    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((h.command, h.path, dict(h.headers.items())))
        if self.hang:
            time.sleep(self.hang)
        if self.down:
            return self._answer(h, 500, "metadata service unavailable")
        if h.command == "POST" and h.path == "/":
            return self._sts(h, body)
        creds_path = "/latest/meta-data/iam/security-credentials/"
        if h.command == "PUT" and h.path == "/latest/api/token":
            if self.token_hang:
                time.sleep(self.token_hang)
            if self.token_status is not None:
                return self._answer(h, self.token_status, "")
            if not h.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self._answer(h, 400, "missing ttl")
            token = "imds-session-%d" % len(self.requests)
            with self._lock:
                self._tokens.add(token)
            return self._answer(h, 200, token)
        if h.command != "GET":
            return self._answer(h, 405, "")
        if h.path.startswith("/latest/"):
            token = h.headers.get("X-aws-ec2-metadata-token")
            if token not in self._tokens and not (self.v1 and token is None):
                return self._answer(h, 401, "")
            if h.path == creds_path:
                return self._answer(h, 200, ROLE)
            if h.path == creds_path + ROLE and self.keys:
                return self._answer(h, 200, self._keys_json(True))
            return self._answer(h, 404, "")
        if h.path == "/creds":
            if self.auth is not None and h.headers.get("Authorization") != self.auth:
                return self._answer(h, 401, json.dumps({"code": "AccessDeniedException"}),
                                    "application/json")
            return self._answer(h, 200, self._keys_json(False), "application/json")
        return self._answer(h, 404, "")
