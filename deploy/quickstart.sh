#!/usr/bin/env bash
# deploy/quickstart.sh: the main job, end to end, on this machine.
#
# Installs what is missing and builds (scripts/bootstrap), starts the local stack (redis-server
# and s3rver on free loopback ports, deploy/stack.sh), a small web server that serves the sample
# photos, a postback receiver and one pixq-worker; then submits a sample Blitline job with
# `pixq submit --wait`, prints the postback the receiver got and the stored object's URL and
# size, and stops everything again. Leave it all running with --keep: the worker's and the helper
# servers' pids are then in DIR (worker.pid, photos.pid, postback.pid), and the stop command
# printed at the end, `deploy/stack.sh stop DIR`, ends them with the stack.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=0
[[ ${1:-} == --keep ]] && keep=1
python=/usr/bin/python3

"$root/scripts/bootstrap"

dir=$(mktemp -d /tmp/pixq-quickstart.XXXXXX)
pids=()
cleanup() {
	((keep)) && return
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	"$root/deploy/stack.sh" stop "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

PIXQ_STACK_BUCKETS=pixq-demo "$root/deploy/stack.sh" start "$dir"
set -a
# shellcheck disable=SC1091
. "$dir/stack.env"
set +a
# the sample's source and postback are on this machine: loopback only (not every private network:
# a job in a stack left running with --keep cannot reach the cloud's metadata address, say)
export PIXQ_ALLOWED_NETWORKS=127.0.0.0/8,::1/128

# serve_port NAME: waits for a helper server to write its port into $dir/NAME.port.
serve_port() {
	for _ in $(seq 100); do
		[[ -s $dir/$1.port ]] && { cat "$dir/$1.port"; return 0; }
		sleep 0.1
	done
	echo "quickstart: the $1 server did not start" >&2
	return 1
}

# The photo server and the postback receiver: each binds port 0 and reports the port it got.
"$python" - "$root/tests/data/corpus" "$dir/photos.port" <<'PY' >"$dir/photos.log" 2>&1 &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[2], "w").write(str(srv.server_address[1]))
srv.serve_forever()
PY
pids+=($!)
echo $! >"$dir/photos.pid"
"$python" - "$dir/postback.port" "$dir/postback.json" <<'PY' >"$dir/postback.log" 2>&1 &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        open(sys.argv[2], "wb").write(body)
        self.send_response(200); self.end_headers()
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(srv.server_address[1]))
srv.serve_forever()
PY
pids+=($!)
echo $! >"$dir/postback.pid"
photos=$(serve_port photos)
postback=$(serve_port postback)

"$root/build/worker/pixq-worker" 2>"$dir/worker.log" &
pids+=($!)
echo $! >"$dir/worker.pid"

cat >"$dir/job.json" <<JSON
{
  "application_id": "quickstart",
  "src": "http://127.0.0.1:$photos/autumn-2560x1600.jpg",
  "postback_url": "http://127.0.0.1:$postback/postback",
  "functions": [
    { "name": "resize_to_fit", "params": { "width": 800 },
      "save": { "image_identifier": "autumn-800",
                "s3_destination": { "bucket": "pixq-demo", "key": "quickstart/autumn-800.jpg" } } }
  ]
}
JSON

echo "== submitting $dir/job.json with: pixq submit --wait"
"$root/build/producer/pixq" submit "$dir/job.json" --wait --timeout 60 >"$dir/submit.out"
echo "job id: $(head -n 1 "$dir/submit.out")"
for _ in $(seq 100); do [[ -s $dir/postback.json ]] && break; sleep 0.1; done
echo "== postback received by http://127.0.0.1:$postback/postback"
"$python" -m json.tool "$dir/postback.json"
url=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"]["images"][0]["s3_url"])' "$dir/postback.json")
echo "== stored object"
echo "url:  $url"
echo "size: $(curl -sS -o "$dir/object" -w '%{size_download}' "$url") bytes"
echo "image: $(identify -format '%m %wx%h' "$dir/object")"
echo "== worker log"
cat "$dir/worker.log"
if ((keep)); then
	echo "== worker, helper servers and stack left running; to reach them: set -a; . $dir/stack.env; set +a; export PIXQ_ALLOWED_NETWORKS=127.0.0.0/8,::1/128"
	echo "== stop them all with: deploy/stack.sh stop $dir"
	echo "== its logs and data stay in $dir: remove it after, rm -rf $dir"
fi
