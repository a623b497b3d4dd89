#!/usr/bin/env bash
# deploy/stack.sh: the local pixq stack (redis-server + s3rver) on free loopback ports.
#
#   deploy/stack.sh start DIR    start both servers with their state, logs and pid files in DIR,
#                                wait until both answer, write DIR/stack.env
#   deploy/stack.sh stop DIR     stop both servers (idempotent: a stopped or missing stack is fine),
#                                after what deploy/quickstart.sh --keep left running beside them:
#                                the pixq-worker of DIR/worker.pid and the helper servers of
#                                DIR/photos.pid and DIR/postback.pid
#   deploy/stack.sh status DIR   exit 0 if both servers of DIR are running
#
# Environment:
#   PIXQ_STACK_BUCKETS   buckets s3rver creates at start, comma- or space-separated
#                        (default "pixq-test"); the first one becomes PIXQ_DEFAULT_BUCKET
#   PIXQ_STACK_TIMEOUT   seconds to wait for each server to answer (default 20)
#
# DIR/stack.env holds KEY=value lines for the worker and the CLI (`set -a; . DIR/stack.env`):
#   PIXQ_REDIS_URL, PIXQ_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
#   PIXQ_DEFAULT_BUCKET.
#
# Everything binds to 127.0.0.1 only. Ports are chosen by the OS (s3rver: -p 0) or by probing a
# bind (redis-server cannot report a port it chose itself), never fixed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
s3rver_dir="$here/s3rver"
s3rver_bin="$s3rver_dir/node_modules/.bin/s3rver"
python=/usr/bin/python3
timeout_s=${PIXQ_STACK_TIMEOUT:-20}

die() {
	echo "stack.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 start|stop|status DIR" >&2
	exit 2
}

# ---------------------------------------------------------------------------------------------
# processes

# pid_alive FILE NAME: the pid in FILE is a running process whose command line mentions NAME.
pid_alive() {
	local file=$1 name=$2 pid
	[[ -s $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

# stop_pids FILE NAME [FILE NAME]...: SIGTERM the process of each FILE whose command line
# mentions its NAME, SIGKILL those still there after 10 s, remove the FILEs.
stop_pids() {
	local -a pids=() files=()
	local pid i
	while (($# >= 2)); do
		files+=("$1")
		if pid_alive "$1" "$2"; then
			pid=$(<"$1")
			pids+=("$pid")
			kill -TERM "$pid" 2>/dev/null || true
		fi
		shift 2
	done
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "stack.sh: pid $pid ignored SIGTERM, killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	rm -f "${files[@]}"
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
	"$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
# redis-server

write_redis_conf() {
	local dir=$1 port=$2
	cat >"$dir/redis.conf" <<EOF
# Written by deploy/stack.sh: a throwaway Redis for the local stack, no persistence.
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
pidfile "$dir/redis.pid"
logfile "$dir/redis.log"
dir "$dir/redis"
save ""
appendonly no
databases 16
EOF
}

# start_redis DIR: start redis-server on a free port; print the port.
start_redis() {
	local dir=$1 port pid attempt i
	mkdir -p "$dir/redis"
	for ((attempt = 0; attempt < 5; attempt++)); do
		port=$(free_port)
		write_redis_conf "$dir" "$port"
		: >"$dir/redis.log"
		nohup redis-server "$dir/redis.conf" </dev/null >>"$dir/redis.log" 2>&1 &
		pid=$!
		echo "$pid" >"$dir/redis.pid"
		for ((i = 0; i < timeout_s * 10; i++)); do
			if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
				echo "$port"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			echo "stack.sh: redis-server did not answer within ${timeout_s}s" >&2
			tail -n 20 "$dir/redis.log" >&2 || true
			return 1
		fi
		# Died: most likely someone took the port between the probe and the bind. Try another.
		echo "stack.sh: redis-server exited on port $port, retrying" >&2
		tail -n 5 "$dir/redis.log" >&2 || true
	done
	return 1
}

# ---------------------------------------------------------------------------------------------
# s3rver

ensure_s3rver() {
	[[ -x $s3rver_bin ]] && return 0
	command -v npm >/dev/null || die "npm is missing: run scripts/bootstrap"
	echo "stack.sh: installing s3rver (npm ci in deploy/s3rver)" >&2
	(cd "$s3rver_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
	[[ -x $s3rver_bin ]] || die "npm ci did not install s3rver"
}

# start_s3rver DIR BUCKET...: start s3rver on a port the OS chooses; print the port.
start_s3rver() {
	local dir=$1 pid port="" i b
	shift
	local args=(-d "$dir/s3data" -a 127.0.0.1 -p 0)
	for b in "$@"; do
		args+=(--configure-bucket "$b")
	done
	mkdir -p "$dir/s3data"
	: >"$dir/s3rver.log"
	nohup "$s3rver_bin" "${args[@]}" </dev/null >>"$dir/s3rver.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/s3rver.pid"
	for ((i = 0; i < timeout_s * 10; i++)); do
		port=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9][0-9]*\).*$/\1/p' "$dir/s3rver.log" | head -n 1)
		[[ -n $port ]] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z $port ]]; then
		echo "stack.sh: s3rver did not start" >&2
		tail -n 20 "$dir/s3rver.log" >&2 || true
		return 1
	fi
	# It listens; now make sure it answers and that every bucket exists.
	for b in "$@"; do
		for ((i = 0; i < timeout_s * 10; i++)); do
			curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/$b?max-keys=1" && break
			sleep 0.1
		done
		((i < timeout_s * 10)) || {
			echo "stack.sh: s3rver on port $port has no bucket $b" >&2
			return 1
		}
	done
	echo "$port"
}

# ---------------------------------------------------------------------------------------------
# commands

buckets() {
	local list=${PIXQ_STACK_BUCKETS:-pixq-test}
	list=${list//,/ }
	# shellcheck disable=SC2086 # word splitting is the point
	set -- $list
	(($# > 0)) || die "PIXQ_STACK_BUCKETS names no bucket"
	printf '%s\n' "$@"
}

cmd_status() {
	local dir=$1
	pid_alive "$dir/redis.pid" redis-server && pid_alive "$dir/s3rver.pid" s3rver && [[ -s $dir/stack.env ]]
}

cmd_start() {
	local dir=$1 redis_port s3_port
	local -a bkts
	mapfile -t bkts < <(buckets)
	((${#bkts[@]} > 0)) || exit 1
	command -v redis-server >/dev/null || die "redis-server is missing: run scripts/bootstrap"
	command -v redis-cli >/dev/null || die "redis-cli is missing: run scripts/bootstrap"
	command -v curl >/dev/null || die "curl is missing: run scripts/bootstrap"
	[[ -x $python ]] || die "$python is missing: run scripts/bootstrap"
	ensure_s3rver

	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if cmd_status "$dir"; then
		echo "stack.sh: already running in $dir" >&2
		cat "$dir/stack.env"
		return 0
	fi
	cmd_stop "$dir" # leftovers of a half-started stack
	mkdir -p "$dir"

	if ! redis_port=$(start_redis "$dir"); then
		cmd_stop "$dir"
		die "could not start redis-server (log: $dir/redis.log)"
	fi
	if ! s3_port=$(start_s3rver "$dir" "${bkts[@]}"); then
		cmd_stop "$dir"
		die "could not start s3rver (log: $dir/s3rver.log)"
	fi

	cat >"$dir/stack.env.tmp" <<EOF
PIXQ_REDIS_URL=redis://127.0.0.1:$redis_port/0
PIXQ_S3_ENDPOINT=http://127.0.0.1:$s3_port
AWS_ACCESS_KEY_ID=S3RVER
AWS_SECRET_ACCESS_KEY=S3RVER
AWS_REGION=us-east-1
PIXQ_DEFAULT_BUCKET=${bkts[0]}
EOF
	mv "$dir/stack.env.tmp" "$dir/stack.env"
	echo "stack.sh: redis on 127.0.0.1:$redis_port, s3rver on 127.0.0.1:$s3_port (buckets: ${bkts[*]})" >&2
	cat "$dir/stack.env"
}

cmd_stop() {
	local dir=$1
	[[ -d $dir ]] || return 0
	dir=$(cd "$dir" && pwd)
	# first the programs that use the servers (quickstart.sh --keep), each checked by its
	# command line: the worker, and the helper servers, named by the port file they write
	stop_pids "$dir/worker.pid" pixq-worker "$dir/photos.pid" "$dir/photos.port" \
		"$dir/postback.pid" "$dir/postback.port"
	stop_pids "$dir/s3rver.pid" s3rver "$dir/redis.pid" redis-server
	rm -f "$dir/stack.env" "$dir/stack.env.tmp"
}

(($# == 2)) || usage
case $1 in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
status) cmd_status "$2" ;;
*) usage ;;
esac
