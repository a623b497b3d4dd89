#!/usr/bin/python3
"""The deploy/ files, each checked with the best tool this machine has (issue 8):

* deploy/systemd/pixq-worker@.service: its sandboxing and stop settings; `systemd-analyze
  verify` on a copy whose ExecStart is the built worker; `systemd-analyze security --offline`
  exposure at most 2.0; ExecStart where `meson install` puts the worker; and a real job through
  a worker running inside the unit's sandbox (tests/deploy-check/sandbox.py applies the unit's
  ProtectSystem, PrivateTmp, PrivateDevices, ProcSubset, DynamicUser, empty capability set,
  NoNewPrivileges, MemoryDenyWriteExecute, SystemCallFilter and RestrictAddressFamilies:
  this machine runs no systemd).
* deploy/systemd/pixq.env.example: every line a setting the worker knows with a valid value
  (`pixq-worker --config FILE --print-config`), the commented ones too; placeholders only;
  every setting of `pixq-worker --help` in it, a commented one with its default. README.md's
  configuration table likewise: a row for every setting, with its default.
* deploy/redis.conf: redis-server started with it (port, bind and dir overridden), CONFIG GET of
  the settings that keep jobs safe; its commented ACL user is enough for a worker and the CLI
  and is refused the dangerous commands and other keys.
* deploy/Containerfile: parsed and linted with dockerfile-utils (npm, tests/deploy-check); the
  build stage's commands run on exactly the files its COPY lines take (not in sanitizer builds:
  the same check twice); every Debian package it installs exists (apt-cache); the runtime
  stage's packages provide every shared library the programs need; non-root numeric USER;
  .dockerignore leaves the build directories and npm's modules out of its build context.
* deploy/prometheus/pixq-alerts.yml: `promtool check rules` and `promtool test rules` with
  tests/deploy-check/pixq-alerts.test.yml (every alert shown firing and not firing; a broken
  copy of a rule fails them); every metric and label value its expressions name is one that
  `pixq stats --prometheus` or a worker's /metrics exposes. promtool comes out of Debian's
  prometheus package (scripts/bootstrap, tests/deploy-check/bin).
* README.md's Redis keys: the type of each key of its table that a job leaves, which expire,
  the workers' lease scores, the queue's data token written only if missing, and its redis-cli
  commands (watching a queue, deploy/migrate-task-mark.lua) run as written.
* deploy/quickstart.sh: its job's output (800 px wide, the postback, the object's URL and size)
  and nothing left running or in /tmp after it; with --keep, the stop command it prints ends
  every process it started (the worker, the two helper servers, redis-server and s3rver).
* deploy/k8s/*.yaml: every object validated against its OpenAPI schema (kubernetes-models and
  @kubernetes-models/keda, npm), with the models' validators and with TypeScript's checker on
  their interfaces (which also refuses unknown fields), and checked against each other (Secret
  name, ports, grace period above the shutdown timeout, the KEDA trigger's list and Redis
  address).

Each check is also shown to fail on a broken copy of its file. What cannot be tested here: the
container build itself (no registry for the base image), `kubectl apply` and KEDA (no cluster),
and systemd running the unit (no systemd as PID 1).

    /usr/bin/python3 tests/integration/test_deploy.py --worker build-dep/worker/pixq-worker \\
        --pixq build-dep/producer/pixq --data tests/data [UnitTest]
"""

import datetime
import difflib
import fnmatch
import functools
import json
import os
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from pathlib import Path

import yaml

sys.dont_write_bytecode = True
import harness  # noqa: E402
from harness import CONFIG, PixqTestCase, clean_env  # noqa: E402
from test_fleet import parse_exposition  # noqa: E402

REPO = harness.REPO_ROOT
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "pixq-worker@.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "pixq.env.example"
REDIS_CONF = DEPLOY / "redis.conf"
CONTAINERFILE = DEPLOY / "Containerfile"
K8S = DEPLOY / "k8s"
CHECK_DIR = REPO / "tests" / "deploy-check"
ALERTS = DEPLOY / "prometheus" / "pixq-alerts.yml"
ALERT_TESTS = CHECK_DIR / "pixq-alerts.test.yml"
PROMTOOL = CHECK_DIR / "bin" / "promtool"
SANDBOX = CHECK_DIR / "sandbox.py"
PYTHON = "/usr/bin/python3"
FUNCTION_MEANINGS = REPO / "docs" / "functions-meaning.tsv"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 (locked down) .. 10 (exposed)


def run(argv, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, **kw)


def node(script, *args, input=None):
    """Run tests/deploy-check/<script> with node; its JSON output, parsed."""
    if not (CHECK_DIR / "node_modules").is_dir():
        raise AssertionError("%s/node_modules is missing: run scripts/bootstrap "
                             "(npm ci in tests/deploy-check)" % CHECK_DIR)
    r = run(["node", str(CHECK_DIR / script), *map(str, args)], input=input, cwd=CHECK_DIR)
    if r.returncode != 0:
        raise AssertionError("node %s failed (%d): %s" % (script, r.returncode, r.stderr))
    return json.loads(r.stdout)


def worker_settings():
    """{VARIABLE: default} of every setting, from `pixq-worker --help`."""
    r = run([CONFIG.worker, "--help"])
    settings = {}
    for m in re.finditer(r"^  --\S+\s+([A-Z][A-Z0-9_]+)\s+\[(.*)\]$", r.stdout, re.M):
        settings[m.group(1)] = m.group(2)
    if len(settings) < 40:
        raise AssertionError("could not read the settings from pixq-worker --help:\n" + r.stdout)
    return settings


def process_worst_mib(env):
    """MiB one worker process may hold at most with these settings (the rest at their
    defaults): ImageMagick's pixels in memory and mapped, a job's encoded outputs, its source
    and the sources it keeps."""
    d = dict(worker_settings())
    d.update(env)
    mib = int(d["PIXQ_MAGICK_MEMORY_MB"]) + int(d["PIXQ_MAGICK_MAP_MB"])
    for name in ("PIXQ_MAX_JOB_OUTPUT_BYTES", "PIXQ_MAX_SRC_BYTES", "PIXQ_SOURCE_CACHE_BYTES"):
        mib += int(d[name]) / (1 << 20)
    return mib


def print_config(env=None, config=None):
    """pixq-worker [--config FILE] --print-config with this environment: CompletedProcess."""
    argv = [CONFIG.worker] + (["--config", str(config)] if config else []) + ["--print-config"]
    full = clean_env()
    full.update(env or {})
    return run(argv, env=full)


def service_settings(text, section_name="[Service]"):
    """[(key, value)] of a unit's [Service] section (or another), in order."""
    items, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
        elif section == section_name:
            key, _, value = line.partition("=")
            items.append((key.strip(), value.strip()))
    return items


def seconds(value):
    """A systemd time span ("35s", "1min 5s", "35") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(num) * units[unit]
    return total


def env_lines(text):
    """{KEY: value} of the uncommented KEY=value lines of an env file."""
    return dict(line.split("=", 1) for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#"))


# ---------------------------------------------------------------------------------------------
# systemd


class UnitTest(unittest.TestCase):
    """deploy/systemd/pixq-worker@.service."""

    REQUIRED = {
        "Type": "exec", "Restart": "on-failure", "RestartPreventExitStatus": "2",
        "KillSignal": "SIGTERM",
        "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
    }

    def setUp(self):
        self.text = UNIT.read_text()
        self.tmp = Path(tempfile.mkdtemp(prefix="pixq-deploy-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def copy(self, text=None):
        """The unit as pixq-worker@test.service in a temporary directory, its ExecStart the
        built worker (verify needs the binary to exist)."""
        text = self.text if text is None else text
        text, n = re.subn(r"^ExecStart=\S+", "ExecStart=" + os.path.abspath(CONFIG.worker),
                          text, flags=re.M)
        self.assertEqual(n, 1, "the unit should have one ExecStart line")
        path = self.tmp / "pixq-worker@test.service"
        path.write_text(text)
        return path

    def verify(self, path):
        return run(["systemd-analyze", "verify", str(path)], cwd=self.tmp)

    def exposure(self, path):
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
                cwd=self.tmp)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        self.assertIsNotNone(m, "systemd-analyze security said:\n%s%s" % (r.stdout, r.stderr))
        return float(m.group(1)), r.stdout

    def test_start_limit(self):
        """README (Metrics): a worker that exits 1 (a metrics port still held, a name server
        that does not answer) is restarted by systemd at most 5 starts in 60 s, then the unit
        fails: the [Unit] section's StartLimitBurst= and StartLimitIntervalSec= say so."""
        values = dict(service_settings(self.text, "[Unit]"))
        self.assertEqual((values.get("StartLimitBurst"), values.get("StartLimitIntervalSec")),
                         ("5", "60"))
        readme = (REPO / "README.md").read_text()
        self.assertIn("restarted by systemd (at most 5 starts in 60 s; then the unit fails)",
                      " ".join(readme.split()))

    def test_settings(self):
        settings = service_settings(self.text)
        values = dict(settings)
        for key, want in self.REQUIRED.items():
            self.assertIn(key, values, "the unit lacks %s=" % key)
            self.assertEqual(values[key], want, "%s=%s" % (key, values[key]))
        self.assertEqual(values["ExecStart"].split()[0], "/usr/local/bin/pixq-worker")
        filters = [v for k, v in settings if k == "SystemCallFilter"]
        self.assertEqual(filters[0], "@system-service")
        self.assertRegex(values["MemoryMax"], r"^\d+[KMG]$")
        env_files = [v for k, v in settings if k == "EnvironmentFile"]
        self.assertEqual(env_files, ["/etc/pixq/pixq.env", "-/etc/pixq/%i.env"])

    def test_exec_start_is_where_meson_installs(self):
        build = Path(CONFIG.worker).resolve().parent.parent
        r = run(["meson", "introspect", str(build), "--installed"])
        self.assertEqual(r.returncode, 0, r.stderr)
        installed = json.loads(r.stdout)
        self.assertEqual(installed.get(str(Path(CONFIG.worker).resolve())),
                         "/usr/local/bin/pixq-worker", installed)
        # README: `meson install` puts /usr/local/bin/pixq-worker and pixq
        self.assertEqual(installed.get(str(Path(CONFIG.pixq).resolve())),
                         "/usr/local/bin/pixq", installed)

    def test_stop_timeout_above_shutdown_timeout(self):
        stop_s = seconds(dict(service_settings(self.text))["TimeoutStopSec"])
        default_ms = int(worker_settings()["PIXQ_SHUTDOWN_TIMEOUT_MS"])
        example_ms = int(env_lines(ENV_EXAMPLE.read_text()).get("PIXQ_SHUTDOWN_TIMEOUT_MS",
                                                                 default_ms))
        # the supervisor kills a worker 5 s after the shutdown timeout; systemd comes later
        for ms in (default_ms, example_ms):
            self.assertGreaterEqual(stop_s, ms / 1000 + 10,
                                    "TimeoutStopSec=%gs leaves a draining worker no margin "
                                    "over PIXQ_SHUTDOWN_TIMEOUT_MS=%d" % (stop_s, ms))
        self.assertEqual(dict(service_settings(self.text))["KillMode"], "mixed")

    def test_memory_caps_above_what_the_processes_may_hold(self):
        """MemoryHigh (throttling) and MemoryMax (the OOM killer) leave the example's processes
        room for their pixels, outputs and sources: at 1536M, two processes' pixel budgets alone
        filled MemoryHigh."""
        units = {"K": 1 / 1024, "M": 1, "G": 1024}
        settings = dict(service_settings(self.text))
        env = env_lines(ENV_EXAMPLE.read_text())
        need = int(env.get("PIXQ_PROCESSES", "1")) * process_worst_mib(env)
        for key in ("MemoryHigh", "MemoryMax"):
            m = re.fullmatch(r"(\d+)([KMG])", settings[key])
            self.assertIsNotNone(m, settings[key])
            self.assertGreaterEqual(int(m.group(1)) * units[m.group(2)], need, key)
        self.assertGreaterEqual(int(settings["TasksMax"]), 256 * 4, "256 processes' threads")

    def test_systemd_analyze_verify(self):
        r = self.verify(self.copy())
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_verify_catches_a_broken_unit(self):
        broken = self.text.replace("ProtectSystem=strict", "ProtectSystm=strict")
        r = self.verify(self.copy(broken))
        self.assertIn("ProtectSystm", r.stderr)
        broken = self.text.replace("Restart=on-failure", "Restart=sometimes")
        r = self.verify(self.copy(broken))
        self.assertIn("restart specifier, ignoring: sometimes", r.stderr)

    def test_security_exposure(self):
        level, report = self.exposure(self.copy())
        sys.stderr.write("figures: systemd-analyze security exposure=%.1f\n" % level)
        self.assertLessEqual(level, MAX_EXPOSURE, report)
        # and README gives operators the level measured
        said = re.findall(r"rates its exposure (\d+\.\d) of 10", (REPO / "README.md").read_text())
        self.assertEqual(said, ["%.1f" % level])
        # and the measure bites: without the sandboxing lines the same unit is exposed
        bare = "\n".join(line for line in self.text.splitlines()
                         if line.split("=", 1)[0] not in self.REQUIRED or
                         line.startswith(("Type", "Restart", "KillSignal")))
        bare = re.sub(r"^(SystemCallFilter|Protect\w+|Private\w+|Restrict\w+)=.*$", "", bare,
                      flags=re.M)
        level_bare, _ = self.exposure(self.copy(bare))
        self.assertGreater(level_bare, 5.0)


class SandboxedWorkerTest(PixqTestCase):
    """A worker inside the unit's sandbox (sandbox.py) processes a real JPEG job: ImageMagick
    works without writable+executable memory, with the unit's system calls only, a read-only
    system and a private /tmp; Redis is reached by name (the resolver works too)."""

    start_worker_in_setup = False

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the sandbox needs root (mount namespace, setuid)")
        super().setUp()

    def start_sandboxed(self, **env):
        e = self.worker_env(**env)
        e["PIXQ_REDIS_URL"] = "redis://localhost:%d/0" % self.redis_server.port
        # LeakSanitizer stops the world with ptrace, which the unit's filter refuses
        e["ASAN_OPTIONS"] = ":".join(filter(None, [e.get("ASAN_OPTIONS"), "detect_leaks=0"]))
        n = len(self.programs_ever) + 1
        prog = harness.Program("sandboxed-worker-%d" % n,
                               [PYTHON, str(SANDBOX), str(UNIT), "--", CONFIG.worker], e,
                               self.tmp / ("sandboxed-worker-%d.log" % n))
        self.programs.append(prog)
        self.programs_ever.append(prog)
        return prog

    def test_job_end_to_end_in_the_sandbox(self):
        port = harness.reserved_port(self)  # held for the test: the worker binds it
        prog = self.start_sandboxed(PIXQ_PROCESSES=2, PIXQ_LOG_LEVEL="info",
                                    PIXQ_METRICS_ADDR="127.0.0.1:%d" % port,
                                    PIXQ_CPU_AFFINITY=1)
        src = self.src.add("/autumn.jpg", harness.corpus("autumn-2560x1600.jpg"))
        for i in range(3):
            self.push_job(self.make_job(src, "sandbox/%d.jpg" % i, params={"width": 320 + i},
                                        job_id="sandbox-%d" % i))
        for i in range(3):
            pb = self.wait_for_postback(60, job_id="sandbox-%d" % i)
            self.assertNotIn("errors", pb.results, pb.results)
            self.assert_image(self.s3_object("sandbox/%d.jpg" % i), "JPEG", 320 + i,
                              round((320 + i) * 1600 / 2560))
        self.assert_queue_drained()
        # the metrics endpoint the Kubernetes liveness probe and Prometheus use answers too
        status, headers, body = harness.http_request("http://127.0.0.1:%d/metrics" % port)
        self.assertEqual(status, 200, body[:300])
        self.assertRegex(body.decode(), r"(?m)^pixq_\w+(\{[^}]*\})? \d")
        # the unit's system call filter lets the workers pin themselves (PIXQ_CPU_AFFINITY)
        self.assertEqual(prog.log_events("cpu_affinity_failed"), [])
        self.assertEqual(len(prog.log_events("cpu_affinity")), 2)

    def test_sandbox_is_in_force(self):
        """The same launcher really applies the unit: a probe inside it cannot map W+X memory,
        write outside /tmp, open a netlink socket or see /proc/meminfo, and runs as nobody."""
        r = run([PYTHON, str(SANDBOX), str(UNIT), "--", PYTHON, "-c", PROBE])
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got, {"uid": 61234, "capeff": "0000000000000000", "nnp": "1",
                               "wx": "refused", "/usr": "refused", "/tmp": "writable",
                               "netlink": "refused", "inet": "ok", "meminfo": False,
                               "dev": ["full", "null", "random", "tty", "urandom", "zero"]})


PROBE = r'''
import json, mmap, os, socket
r = {"uid": os.getuid(), "meminfo": os.path.exists("/proc/meminfo"),
     "dev": sorted(os.listdir("/dev"))}
for line in open("/proc/self/status"):
    if line.startswith(("CapEff", "NoNewPrivs")):
        r[line.split(":")[0].lower().replace("nonewprivs", "nnp")] = line.split()[1]
def attempt(name, fn, ok="ok"):
    try:
        fn(); r[name] = ok
    except OSError:
        r[name] = "refused"
attempt("wx", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC))
attempt("/usr", lambda: open("/usr/pixq-probe", "w"), "writable")
attempt("/tmp", lambda: open("/tmp/pixq-probe", "w"), "writable")
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM).close())
attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
print(json.dumps(r))
'''


class EnvExampleTest(unittest.TestCase):
    """deploy/systemd/pixq.env.example."""

    def test_every_line_is_a_valid_setting(self):
        text = ENV_EXAMPLE.read_text()
        known = worker_settings()
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            self.assertRegex(line, r"^[A-Z][A-Z0-9_]*=[^\s'\"]*$",
                             "not a plain KEY=value line (systemd and --config read it)")
            self.assertIn(line.split("=")[0], known)
        r = print_config(config=ENV_EXAMPLE)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_commented_settings_are_valid_too(self):
        """Every commented setting uncommented is a value the worker takes, but for the
        credentials file, the keys' alternative (the file says so): beside the keys above it
        --print-config refuses it, as the start does."""
        text = ENV_EXAMPLE.read_text()
        uncommented = re.sub(r"^# ([A-Z][A-Z0-9_]*=)", r"\1", text, flags=re.M)
        self.assertGreater(len(env_lines(uncommented)), len(env_lines(text)) + 10)
        alternative = re.compile(r"^AWS_SHARED_CREDENTIALS_FILE=.*\n", re.M)
        for config, status in ((alternative.sub("", uncommented), 0), (uncommented, 2)):
            with tempfile.NamedTemporaryFile("w", suffix=".env") as f:
                f.write(config)
                f.flush()
                r = print_config(config=f.name)
            self.assertEqual(r.returncode, status, r.stderr)
        self.assertIn("AWS_SHARED_CREDENTIALS_FILE and AWS_ACCESS_KEY_ID", r.stderr)

    def test_commented_settings_show_their_defaults(self):
        """The file says its commented settings show their defaults (an example value for those
        empty by default), and that every setting is there: an operator who uncomments one
        expects no change. Checked against --print-config with no settings."""
        defaults = env_lines(print_config().stdout)
        text = ENV_EXAMPLE.read_text()
        commented = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))
        for name, value in sorted(commented.items()):
            if defaults[name] != "":
                self.assertEqual(value, defaults[name], "pixq.env.example's commented " + name)
        named = set(commented) | set(env_lines(text))
        self.assertEqual(sorted(set(defaults) - named), [], "settings the file does not name")

    def test_a_bad_value_is_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".env") as f:
            f.write(ENV_EXAMPLE.read_text().replace("PIXQ_PROCESSES=2", "PIXQ_PROCESSES=two"))
            f.flush()
            r = print_config(config=f.name)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("PIXQ_PROCESSES", r.stderr)

    def test_unknown_pixq_variables_are_named(self):
        """A misspelt setting in the environment (systemd's EnvironmentFile, a pod's env) is
        named, not ignored without a word; a config file refuses it outright."""
        env = dict(clean_env(), PIXQ_PROCESS="4", PIXQ_QUEUE="default")
        r = subprocess.run([CONFIG.worker, "--print-config"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "pixq-worker: warning: PIXQ_PROCESS in the environment is "
                                   "not a setting (ignored)\n")
        self.assertIn("PIXQ_PROCESSES=1\n", r.stdout)
        r = subprocess.run([CONFIG.pixq, "queues", "--help"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=20)
        self.assertIn("pixq: warning: PIXQ_PROCESS in the environment is not a setting", r.stderr)
        # the same name in a config file: status 2 from both (README), with its file and line
        with tempfile.NamedTemporaryFile("w", suffix=".env") as f:
            f.write("PIXQ_QUEUE=default\nPIXQ_PROCESS=4\n")
            f.flush()
            for argv in ([CONFIG.worker, "--config", f.name, "--print-config"],
                         [CONFIG.pixq, "--config", f.name, "queues"]):
                r = subprocess.run(argv, env=clean_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=20)
                self.assertEqual((r.returncode, r.stdout), (2, ""), argv)
                self.assertTrue(r.stderr.endswith(": %s:2: unknown setting 'PIXQ_PROCESS'\n"
                                                  % f.name), r.stderr)

    def test_settings_checked_before_start(self):
        # a queue list, a Redis URL or an image format list the worker cannot use ends it with
        # status 2 at once, also under --processes; before, it retried "start_failed" for ever
        # (the queues and the URL) or its children died and were restarted over and over
        cases = [({"PIXQ_QUEUE": "default,default"}, "named twice"),
                 ({"PIXQ_QUEUE": "a{b}"}, "braces"),
                 ({"PIXQ_REDIS_URL": "http://127.0.0.1:6379"}, "PIXQ_REDIS_URL"),
                 ({"PIXQ_IMAGE_FORMATS": "jpeg,jpg2"}, "unknown format 'jpg2'"),
                 ({"PIXQ_IMAGE_FORMATS": "jpeg,jpg2", "PIXQ_PROCESSES": "2"}, "jpg2"),
                 # numeric but no IP address: refused before the resolver could ask a name
                 # server; before, it passed, and the worker exited 1 (restarted) on it
                 ({"PIXQ_METRICS_ADDR": "256.1.1.1:80"}, "PIXQ_METRICS_ADDR")]
        for env, message in cases:
            for argv in ([CONFIG.worker], [CONFIG.worker, "--print-config"]):
                r = subprocess.run(argv, env=dict(clean_env(), **env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=20)
                self.assertEqual(r.returncode, 2, (env, argv, r.stderr[-500:]))
                self.assertIn(message, r.stderr)
                self.assertEqual(r.stdout, "")
            r = subprocess.run([CONFIG.pixq, "stats"], env=dict(clean_env(), **env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=20)
            if "PIXQ_IMAGE_FORMATS" not in env:  # the producer reads no image
                self.assertEqual(r.returncode, 2, (env, r.stderr))
                self.assertIn(message, r.stderr)
            # --help still answers, naming what is wrong: the reader may have come to fix it
            tmp = Path(tempfile.mkdtemp(prefix="pixq-help-"))
            self.addCleanup(shutil.rmtree, tmp, True)
            bad = tmp / "bad.env"
            bad.write_text("PIXQ_MAX_PIXELS=abc\n")
            for argv, usage in (([CONFIG.worker, "--help"], "PIXQ_QUEUE"),
                                ([CONFIG.pixq, "--help"], "usage: pixq [--config FILE]"),
                                ([CONFIG.worker, "--config", str(bad), "--help"], "PIXQ_QUEUE"),
                                ([CONFIG.worker, "--config", str(bad), "-h"], "PIXQ_QUEUE"),
                                ([CONFIG.pixq, "--config", str(bad), "-h"],
                                 "usage: pixq [--config FILE]"),
                                ([CONFIG.pixq, "stats", "--help"], "usage: pixq stats"),
                                ([CONFIG.pixq, "--config", str(bad), "dead", "-h"],
                                 "usage: pixq dead"),
                                # the first command word's help (submit is the first command
                                # of pixq's table), as with good settings
                                ([CONFIG.pixq, "--config", str(bad), "submit", "-h"],
                                 "usage: pixq submit"),
                                ([CONFIG.pixq, "--config", str(bad), "dead", "stats", "-h"],
                                 "usage: pixq dead"),
                                # a setting's value is no command word
                                ([CONFIG.pixq, "--config", str(bad), "--queue", "stats", "-h"],
                                 "usage: pixq [--config FILE]")):
                r = subprocess.run(argv, env=dict(clean_env(), **env), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=20)
                self.assertEqual(r.returncode, 0, (env, argv, r.stderr[-500:]))
                self.assertIn(usage, r.stdout)
                if str(bad) in argv:
                    self.assertIn("PIXQ_MAX_PIXELS", r.stderr)  # and says what is wrong
                elif argv[0] == CONFIG.worker or "PIXQ_IMAGE_FORMATS" not in env:
                    self.assertIn(message, r.stderr)
            # after `--` nothing is a flag: no help then, the settings' error (status 2)
            r = subprocess.run([CONFIG.pixq, "--config", str(bad), "--", "-h"], env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=20)
            self.assertEqual((r.returncode, r.stdout), (2, ""), r.stderr)
            self.assertIn("PIXQ_MAX_PIXELS", r.stderr)

    def test_metrics_addr_unusable_here_ends_with_status_2(self):
        """A well-formed PIXQ_METRICS_ADDR the worker cannot listen on (not an address of this
        host: 192.0.2.1, TEST-NET-1, so no packet leaves) is a setting to fix: status 2, which
        the systemd unit does not restart, also under --processes (the supervisor binds it, once,
        before its children start). It used to log metrics_failed and exit 1, restarted over
        and over. A port another process holds may be free at the next start: status 1."""
        held = socket.socket()
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        in_use = "127.0.0.1:%d" % held.getsockname()[1]
        # a name that does not resolve (an empty label: glibc refuses it without asking a name
        # server) is one too, in the same words: it used to say "metrics address '...': ..."
        cases = [("192.0.2.1:9464", 2, "Cannot assign requested address"),
                 ("a..b:9464", 2, "Name or service not known"),
                 (in_use, 1, "Address already in use")]
        for addr, status, reason in cases:
            for args in ((), ("--processes", "2")):
                env = dict(clean_env(), PIXQ_METRICS_ADDR=addr,
                           PIXQ_REDIS_URL="redis://127.0.0.1:%d/0" % harness.refused_port(self))
                r = subprocess.run([CONFIG.worker, *args], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   timeout=harness.scaled(20))
                self.assertEqual(r.returncode, status, (addr, args, r.stderr[-500:]))
                last = r.stderr.splitlines()[-1]
                self.assertTrue(last.startswith("pixq-worker: PIXQ_METRICS_ADDR: cannot listen on "
                                                "%s for metrics: %s (" % (addr, reason)), last)
                self.assertIn("metrics_failed", r.stderr)
                self.assertNotIn("worker_start", r.stderr)
                self.assertNotIn("child_start", r.stderr)
                self.assertEqual(r.stdout, "")

    def test_metrics_addr_whose_name_server_does_not_answer_ends_with_status_1(self):
        """A PIXQ_METRICS_ADDR name that a name server could not answer for now (EAI_AGAIN:
        the name server down or out of reach at boot) may resolve at the next start: status 1,
        which systemd restarts (README, Metrics), not 2. Run in a network and mount namespace
        of its own, whose resolv.conf names 127.0.0.1, where nothing listens: the question
        goes nowhere."""
        if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
            self.skipTest("needs root, unshare and ip for a namespace of its own")
        tmp = Path(tempfile.mkdtemp(prefix="pixq-resolv-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        (tmp / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        addr = "pixq-metrics.example:9464"
        env = dict(clean_env(), PIXQ_METRICS_ADDR=addr, PIXQ_REDIS_URL="redis://127.0.0.1:1/0")
        script = 'ip link set lo up && mount --bind "$1" /etc/resolv.conf && exec "$2"'
        r = subprocess.run(["unshare", "--mount", "--net", "--", "sh", "-c", script, "sh",
                            str(tmp / "resolv.conf"), os.path.abspath(CONFIG.worker)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=harness.scaled(30))
        self.assertEqual(r.returncode, 1, r.stderr[-500:])
        last = r.stderr.splitlines()[-1]
        self.assertEqual(last, "pixq-worker: PIXQ_METRICS_ADDR: cannot listen on %s for "
                         "metrics: Temporary failure in name resolution (this may pass: exit "
                         "status 1, to be started again; check PIXQ_METRICS_ADDR if it persists)"
                         % addr)
        self.assertNotIn("worker_start", r.stderr)

    def test_operator_settings_present_and_placeholders_only(self):
        values = env_lines(ENV_EXAMPLE.read_text())
        for key in ("PIXQ_REDIS_URL", "PIXQ_QUEUE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                    "AWS_REGION", "PIXQ_DEFAULT_BUCKET", "PIXQ_POSTBACK_SECRET",
                    "PIXQ_PROCESSES", "PIXQ_LOG_FORMAT", "PIXQ_SHUTDOWN_TIMEOUT_MS"):
            self.assertIn(key, values)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PIXQ_POSTBACK_SECRET",
                    "PIXQ_REDIS_URL"):
            self.assertIn("CHANGE-ME", values[key], "%s should be a placeholder" % key)
        self.assertIn("# PIXQ_METRICS_ADDR=", ENV_EXAMPLE.read_text())

    def test_every_setting_is_in_the_example(self):
        """Every setting appears, set or commented; a commented one shows its default (an
        example for one empty by default). 47 of the 92 were missing: the example said
        `pixq-worker --help lists every setting` instead."""
        text = ENV_EXAMPLE.read_text()
        shown = dict(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))
        commented = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))
        for var, default in worker_settings().items():
            self.assertTrue(var in shown, "%s is missing from %s" % (var, ENV_EXAMPLE.name))
            if var in commented and default != "":
                self.assertEqual(commented[var], default, "# %s= should show the default" % var)


def function_tables():
    """The names of the worker's function tables (worker/ops*.c), read from the source."""
    tables = set()
    for path in sorted((REPO / "worker").glob("ops*.c")):
        tables.update(re.findall(r'\{"([a-z0-9_]+)", op_[a-z0-9_]+,', path.read_text()))
    if len(tables) <= 50:
        raise AssertionError("the function tables were not found")
    return tables


class ReadmeFunctionsTest(unittest.TestCase):
    """README.md's list of the functions a job may name against the worker's function tables
    (worker/ops*.c): a function added, renamed or dropped without the list fails here."""

    def test_the_list_is_the_worker_s(self):
        tables = function_tables()
        text = (REPO / "README.md").read_text()
        start = text.index("The functions a job may name, ")
        block = text[start:text.index("\nTheir parameters are Blitline's", start)]
        names = re.findall(r"`([a-z0-9_]+)`", block[block.index("\n- "):])  # the list
        self.assertEqual(sorted(names), sorted(set(names)), "a function listed twice")
        self.assertEqual(set(names), tables)
        count = int(re.match(r"The functions a job may name, (\d+) in all", block).group(1))
        self.assertEqual(count, len(tables))


def function_meanings():
    """{(function, parameter): meaning} of docs/functions-meaning.tsv (parameter "" for the
    function's own line), read here rather than by scripts/functions-doc, so that a test of the
    file does not rest on the script it checks."""
    meanings = {}
    lines = [line for line in FUNCTION_MEANINGS.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    if not lines or lines[0] != "function\tparameter\tmeaning":
        raise AssertionError("%s has no header line" % FUNCTION_MEANINGS)
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != 3 or not cells[0] or not cells[2].strip():
            raise AssertionError("%s: malformed line %r" % (FUNCTION_MEANINGS, line))
        if (cells[0], cells[1]) in meanings:
            raise AssertionError("%s: %s.%s twice" % (FUNCTION_MEANINGS, cells[0], cells[1]))
        meanings[(cells[0], cells[1])] = cells[2]
    return meanings


class FunctionsDocTest(unittest.TestCase):
    """docs/FUNCTIONS.md's tables against `pixq-worker --functions`, which records the parameters
    each operation reads (worker/opdoc.c), and docs/functions-meaning.tsv, which says what each
    function and parameter means: scripts/functions-doc merges the two. The doc cannot drift from
    the code, a function or parameter cannot go without a meaning nor a meaning outlive its
    parameter, and a function the recorder misses, or stops in, fails here."""

    BEGIN = "<!-- scripts/functions-doc: begin -->\n"
    END = "<!-- scripts/functions-doc: end -->"
    GENERATOR = REPO / "scripts" / "functions-doc"

    def functions(self, *args):
        r = run([CONFIG.worker, "--functions", *args], env=clean_env())
        self.assertEqual(r.returncode, 0, "pixq-worker --functions %s failed:\n%s"
                         % (" ".join(args), r.stderr))
        return r.stdout

    def assert_same_text(self, got, want, what):
        """Fails with the unified diff from `want` to `got` (assertEqual shows no more than the
        first differing characters of a long text)."""
        if got != want:
            diff = difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                        "expected", "got")
            self.fail("%s:\n%s" % (what, "".join(list(diff)[:60])))

    def reported(self):
        """Every (function, parameter) the worker reports, parameter "" for the function."""
        keys = []
        for f in json.loads(self.functions("--json")):
            keys.append((f["function"], ""))
            keys.extend((f["function"], p["name"]) for p in f["parameters"])
        return keys

    def test_the_doc_is_the_generator_s(self):
        r = run([PYTHON, str(self.GENERATOR), "--print", CONFIG.worker], env=clean_env())
        self.assertEqual(r.returncode, 0, "scripts/functions-doc --print failed:\n%s" % r.stderr)
        self.assert_same_text((REPO / "docs" / "FUNCTIONS.md").read_text(), r.stdout,
                              "docs/FUNCTIONS.md is not what scripts/functions-doc writes from "
                              "pixq-worker --functions --json and docs/functions-meaning.tsv: "
                              "run scripts/functions-doc")
        r = run([PYTHON, str(self.GENERATOR), "--check", CONFIG.worker], env=clean_env())
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_every_function_and_parameter_has_a_meaning(self):
        meanings = function_meanings()
        missing = ["%s.%s" % k if k[1] else k[0] for k in self.reported() if k not in meanings]
        self.assertEqual(missing, [], "no meaning in docs/functions-meaning.tsv")

    def test_no_meaning_is_stale(self):
        reported = set(self.reported())
        stale = ["%s.%s" % k if k[1] else k[0] for k in function_meanings() if k not in reported]
        self.assertEqual(stale, [], "docs/functions-meaning.tsv describes what "
                         "pixq-worker --functions does not report")

    def test_the_tables_are_the_worker_s_markdown_with_meanings(self):
        """The doc's tables, their meanings taken out, are what `--markdown` prints: the
        generator formats type, default and range as the worker does."""
        text = (REPO / "docs" / "FUNCTIONS.md").read_text()
        block = text[text.index(self.BEGIN) + len(self.BEGIN):text.index(self.END)]
        meanings = function_meanings()
        stripped = []
        for line in block.splitlines(True):
            if line.startswith("| "):
                cells = line.rstrip("\n")[2:-2].split(" | ")
                del cells[1]
                line = "| %s |\n" % " | ".join(cells)
            elif line.startswith("|---"):
                line = "|---|---|---|---|---|\n"
            stripped.append(line)
        stripped = "".join(stripped)
        for (fn, param), meaning in meanings.items():
            if not param:
                stripped = stripped.replace("### %s\n\n%s\n\n" % (fn, meaning), "### %s\n\n" % fn)
        self.assert_same_text(stripped, self.functions("--markdown"),
                              "docs/FUNCTIONS.md's tables without their meanings are not what "
                              "pixq-worker --functions --markdown prints")

    def test_every_function_is_described(self):
        described = json.loads(self.functions("--json"))
        names = [f["function"] for f in described]
        self.assertEqual(sorted(names), sorted(function_tables()))
        for f in described:
            for p in f["parameters"]:
                self.assertTrue(p["type"], "%s.%s has no type" % (f["function"], p["name"]))
        # a sample of what the code says, in each form
        params = {f["function"]: {p["name"]: p for p in f["parameters"]} for f in described}
        self.assertEqual(params["no_op"], {})
        self.assertTrue(params["thumbnail"]["height"]["required"])
        self.assertEqual(params["sharpen"]["sigma"],
                         {"name": "sigma", "type": "number", "required": False, "default": "1",
                          "min": 0, "max": 4, "range_depends_on_image": False, "alias": None,
                          "note": None})
        # an integer's bounds are JSON integers, a number's are numbers with a fraction (an
        # opdoc.c mutant gave 1000000000.0 and lived: Python compares it equal to the integer)
        self.assertIs(type(params["resize_to_fit"]["width"]["max"]), int)
        self.assertEqual(params["resize_to_fit"]["width"]["max"], 1000000000)
        self.assertIs(type(params["sharpen"]["sigma"]["max"]), float)
        # a required parameter has no default, whatever the operation falls back to inside (a
        # mutant gave pad.size "0" and lived)
        self.assertEqual((params["pad"]["size"]["required"], params["pad"]["size"]["default"]),
                         (True, None))
        self.assertEqual(params["modulate"]["brightness"]["alias"], "Brightness")
        self.assertTrue(params["stegano"]["offset"]["range_depends_on_image"])
        self.assertIn("scale_to_fill.height", params["composite"])
        text = self.functions()
        self.assertRegex(text, r"(?m)^sharpen\n  radius +number +0 +\[0, 12\]$")
        # the columns: name, type and default 26, 18 and 14 wide (a mutant with 24 lived)
        self.assertIn("\n  %-26s %-18s %-14s %s\n" % ("radius", "number", "0", "[0, 12]"), text)
        # a function without parameters, an alias and a note, each as the text form shows it
        self.assertRegex(text, r"(?m)^no_op\n  \(no parameters\)\nresize_to_fit\n")
        self.assertRegex(text, r"(?m)^modulate\n  brightness +number +1 +\[0, 10\]  "
                         r"\(or Brightness\)$")
        self.assertRegex(text, r"(?m)^resize_to_fit\n  width +integer +0 +\[0, 1000000000\]  "
                         r"width or height is required$")
        self.assertNotRegex(text, r"(?m) $", "a line padded with spaces at its end")

    def test_help_and_readme_name_it(self):
        r = run([CONFIG.worker, "--help"], env=clean_env())
        self.assertIn("--functions", r.stdout)
        self.assertIn("docs/FUNCTIONS.md", (REPO / "README.md").read_text())
        r = run([CONFIG.worker, "--functions", "--yaml"], env=clean_env())
        self.assertEqual(r.returncode, 2)


class ReadmeSettingsTest(unittest.TestCase):
    """README.md's configuration table against `pixq-worker --help`: every setting has a row,
    every row names settings, and the default the row gives is the program's (nothing checked
    this: the table and the code could drift apart)."""

    EMPTY = {"none", "none (any)", "none (off)", "AWS"}  # how the table says "empty"

    def rows(self):
        """{VARIABLE: the default the README gives}, from the table under ## Configuration."""
        text = (REPO / "README.md").read_text()
        section = text[text.index("\n## Configuration\n"):]
        section = section[:section.index("\n## ", 1)]
        rows = {}
        for line in section.splitlines():
            if not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
            defaults = [d.strip().strip("`") for d in cells[1].split(", ")] \
                if len(names) > 1 and "," in cells[1] else [cells[1].strip("`")]
            for i, name in enumerate(names):
                rows[name] = defaults[i] if i < len(defaults) else defaults[-1]
        return rows

    def test_every_setting_has_a_row_with_its_default(self):
        rows = self.rows()
        settings = worker_settings()
        for var, default in settings.items():
            self.assertTrue(var in rows, "README's configuration table has no row for %s" % var)
            shown = rows[var]
            m = re.fullmatch(r"(\d+) MiB", shown)
            if m:
                shown = str(int(m.group(1)) << 20)
            elif shown in self.EMPTY:
                shown = ""
            self.assertEqual(shown, default, "README's default of %s" % var)
        self.assertEqual(sorted(set(rows) - set(settings)), [], "rows that are no setting")


def strip_c_comments(text):
    """C source without its comments (each kept as its newlines), string and character literals
    as they are: a comment that quotes a LOG_WARN(...) call is no call, and "*/*" in a string
    opens no comment."""
    def keep(m):
        s = m.group(0)
        return s if s[0] in "\"'" else "\n" * s.count("\n")
    return re.sub(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', keep, text,
                  flags=re.S)


def logged_warnings():
    """{event: ["file:line", ...]} for every event the C programs may log at warn or error level:
    the literal first argument of LOG_WARN and LOG_ERROR, and of LOG_AT when its level is
    LOG_LEVEL_WARN or LOG_LEVEL_ERROR, or a variable set in the same function from one of them
    (supervisor.c's child_exit: info for a clean stop, else warn)."""
    events = {}
    for path in sorted(p for d in ("worker", "producer", "common") for p in (REPO / d).glob("*.c")):
        text = strip_c_comments(path.read_text())
        calls = re.finditer(r'\bLOG_(WARN|ERROR|AT)\(\s*(?:([^,()]+),\s*)?"([a-z0-9_]+)"', text)
        for m in calls:
            if m.group(1) == "AT" and not re.fullmatch(r"LOG_LEVEL_(WARN|ERROR)", m.group(2)):
                body = text[text.rfind("\n{\n", 0, m.start()):m.start()]
                if m.group(2).startswith("LOG_LEVEL_") or \
                        not re.search(r"\bLOG_LEVEL_(WARN|ERROR)\b", body):
                    continue
            line = text.count("\n", 0, m.start()) + 1
            events.setdefault(m.group(3), []).append("%s:%d" % (path.relative_to(REPO), line))
    return events


class ReadmeLogsTest(unittest.TestCase):
    """Every event the worker and pixq log at warn or error level is named in README's Logs
    section (`event`, in backquotes), so that an operator who meets one finds what it means:
    21 such events were named nowhere in README (h224)."""

    def test_every_warning_and_error_is_named(self):
        events = logged_warnings()
        # the scan itself: calls on one line and over two, and a LOG_AT whose level is a variable
        for known in ("job_failed", "adopt_failed", "children_killed", "child_exit"):
            self.assertIn(known, events)
        self.assertNotIn("redis_reconnect", events)  # LOG_AT at a level only info or debug
        self.assertGreater(len(events), 50)
        logs = readme_section("## Logs")
        missing = {e: at for e, at in sorted(events.items())
                   if not re.search(r"`%s[` ]" % e, logs)}
        self.assertFalse(missing, "README's ## Logs does not name these warn/error events: " +
                         ", ".join("%s (%s)" % (e, " ".join(at)) for e, at in missing.items()))

    def test_reconnect_line_never_a_warning(self):
        """redis_reconnect's level is rq's reconnect_level, set by rq_set_reconnect_log_level():
        info or debug (not counted above); a caller that set it to warn must name it in README."""
        for path in sorted(p for d in ("worker", "producer", "common")
                           for p in (REPO / d).glob("*.c")):
            text = strip_c_comments(path.read_text())
            for m in re.finditer(r"(rq_set_reconnect_log_level\(|reconnect_level =)([^;]*);", text):
                self.assertNotRegex(m.group(2), r"LOG_LEVEL_(WARN|ERROR)",
                                    "%s: %s" % (path.name, m.group(0)))


# ---------------------------------------------------------------------------------------------
# Redis


ACL_PASSWORD = "pixq-test-acl-password"


class FleetRedisServer(harness.RedisServer):
    """redis-server running deploy/redis.conf, with only what a test must change appended:
    port, loopback bind, directory, log to stdout, process id file; and the file's commented `user pixq` ACL
    line uncommented with a test password."""

    def _write_conf(self):
        text = REDIS_CONF.read_text()
        acl = re.search(r"^# (user pixq on >\S+ .*)$", text, re.M)
        if acl is None:
            raise AssertionError("deploy/redis.conf has no commented `user pixq ...` example")
        user = re.sub(r">\S+", ">" + ACL_PASSWORD, acl.group(1), count=1)
        text = re.sub(r"^dir .*$", 'dir "%s"' % self.dir, text, flags=re.M)
        text += ("\n# test overrides\nport %d\nbind 127.0.0.1\nlogfile \"\"\ndaemonize no\n"
                 "pidfile \"%s\"\n%s\n") % (self.port, self.dir / "redis.pid", user)
        conf = self.dir / "redis.conf"
        conf.write_text(text)
        return conf


class RedisConfTest(PixqTestCase):
    """deploy/redis.conf."""

    start_worker_in_setup = False

    def setUp(self):
        original = harness.RedisServer
        harness.RedisServer = FleetRedisServer  # setUp builds self.redis_server from it
        try:
            super().setUp()
        finally:
            harness.RedisServer = original

    def config(self, name):
        reply = self.redis.execute("CONFIG", "GET", name)
        return reply[1] if reply else None

    def test_settings_that_keep_jobs(self):
        want = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction",
                "maxmemory": str(1 << 30), "protected-mode": "yes", "timeout": "0",
                "aof-use-rdb-preamble": "yes", "no-appendfsync-on-rewrite": "no",
                "tcp-keepalive": "60"}
        got = {k: self.config(k) for k in want}
        self.assertEqual(got, want)
        text = REDIS_CONF.read_text()
        self.assertRegex(text, r"(?m)^bind 127\.0\.0\.1 -::1$", "the file binds loopback only")
        # Debian's redis-server.service reads the process id there (PIDFile=); the test's own
        self.assertRegex(text, r"(?m)^pidfile /run/redis/redis-server\.pid$")
        self.assertTrue((self.redis_server.dir / "redis.pid").is_file())
        self.assertRegex(text, r"(?m)^# requirepass ")
        # the AOF really is written
        self.redis.lpush("pixq:{default}:jobs", "{}")
        self.wait_until(lambda: any(p.stat().st_size > 0
                                    for p in (self.redis_server.dir).rglob("*.aof*")
                                    if p.is_file()), 5, "an AOF file")

    def test_refused_login_or_database_ends_the_worker(self):
        """A wrong password, or a database Redis does not have, is a setting to fix: the worker
        (and a supervisor with its children) ends with status 2 and says why; it used to log
        start_failed every 5 s for ever, active to systemd. A Redis that is only away is still
        waited for (test_settings_checked_before_start, harness start-up)."""
        port = self.redis_server.port
        cases = [("redis://pixq:wrong@127.0.0.1:%d/0" % port, "redis AUTH refused: WRONGPASS"),
                 ("redis://pixq:%s@127.0.0.1:%d/99" % (ACL_PASSWORD, port),
                  "redis SELECT refused: ERR DB index is out of range")]
        for url, message in cases:
            for args in ((), ("--processes", "2")):
                prog = self.start_worker(*args, PIXQ_REDIS_URL=url)
                prog.proc.wait(harness.scaled(20))
                self.programs.remove(prog)
                prog.terminate()
                self.assertEqual(prog.proc.returncode, 2, (url, args))
                log = prog.log_path.read_text()
                self.assertIn(message, log)
                self.assertIn("check PIXQ_REDIS_URL", log)
                if args:
                    self.assertIn("child_config_error", log)
                    self.assertEqual(len(prog.log_events("child_start")), 2, log)  # none again

    def test_cluster_node_is_refused(self):
        """pixq's client does not follow MOVED or ASK: on a Cluster node the keys of a bucket's
        limiter on another node failed open (uploads without a token) and `pixq limit` failed.
        The worker ends with status 2 and says why instead."""
        port = harness.start_cluster_node(self)
        prog = self.start_worker(PIXQ_REDIS_URL="redis://127.0.0.1:%d/0" % port)
        prog.proc.wait(harness.scaled(20))
        self.programs.remove(prog)
        prog.terminate()
        self.assertEqual(prog.proc.returncode, 2)
        log = prog.log_path.read_text()
        self.assertIn("Redis Cluster is not supported", log)
        self.assertIn("check PIXQ_REDIS_URL", log)

    def test_eviction_policy_other_than_noeviction_is_warned(self):
        """A Redis that may evict keys drops whole queues (a list is one key) without a trace;
        under a volatile-* policy only keys with a TTL (parked outputs, results, job hashes),
        never a queue, which the warning says as it is."""
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        for policy, what in (("allkeys-lru", "whole queues with them"),
                             ("volatile-lru", "those with a TTL: parked outputs, results and "
                                              "job hashes")):
            self.redis.execute("CONFIG", "SET", "maxmemory-policy", policy)
            prog = self.start_worker()
            self.wait_until(lambda: prog.log_events("worker_start"), 20, "the worker")
            warned = prog.log_events("redis_eviction_policy")
            self.assertEqual([(e.get("level"), e.get("policy")) for e in warned],
                             [("warn", policy)])
            self.assertEqual(warned[0].get("error"), "Redis may evict keys under memory "
                             "pressure, %s: set maxmemory-policy noeviction" % what)
        self.redis.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
        quiet = self.start_worker()
        self.wait_until(lambda: quiet.log_events("worker_start"), 20, "the worker")
        self.assertEqual(quiet.log_events("redis_eviction_policy"), [])

    def test_parked_limit_past_half_of_maxmemory_is_warned(self):
        """Every queue may park up to PIXQ_MAX_PARKED_MB: their sum past half of maxmemory
        leaves the queues too little room, and a full Redis refuses every write."""
        self.redis.execute("CONFIG", "SET", "maxmemory", str(1000 << 20))
        self.addCleanup(self.redis.execute, "CONFIG", "SET", "maxmemory", "0")
        cases = (({"PIXQ_QUEUE": "a,b"}, True),  # 2 x 256 MB past 500
                 ({}, False),  # 256 MB
                 ({"PIXQ_MAX_PARKED_MB": "0"}, True))  # no limit
        for env, warns in cases:
            prog = self.start_worker(**env)
            self.wait_until(lambda: prog.log_events("worker_start"), 20, "the worker")
            warned = prog.log_events("parked_limit_high")
            self.assertEqual(len(warned), 1 if warns else 0, (env, warned))
            if warns:
                self.assertEqual(warned[0]["level"], "warn")  # README: "a worker warns"
                self.assertEqual(warned[0]["maxmemory_mb"], "1000")
                self.assertIn("half of maxmemory", warned[0]["error"])
        # exactly half is within the limit: README, with deploy/redis.conf's 1 GB "up to two
        # queues at the default" (2 x 256 MB of 1024 MB); a third queue is past it
        self.redis.execute("CONFIG", "SET", "maxmemory", str(1 << 30))
        for queues, warns in (("a,b", False), ("a,b,c", True)):
            prog = self.start_worker(PIXQ_QUEUE=queues)
            self.wait_until(lambda: prog.log_events("worker_start"), 20, "the worker")
            self.assertEqual(len(prog.log_events("parked_limit_high")), 1 if warns else 0, queues)

    def test_redis_at_maxclients_is_waited_for(self):
        """'ERR max number of clients reached' answers the login too: a spike of connections,
        not a setting to fix. The worker waits it out (it once ended, taking the fleet down)."""
        url = "redis://pixq:%s@127.0.0.1:%d/0" % (ACL_PASSWORD, self.redis_server.port)
        self.redis.execute("CONFIG", "SET", "maxclients", "1")  # this connection is the one
        try:
            prog = self.start_worker("--processes", "2", PIXQ_REDIS_URL=url)
            self.wait_until(lambda: len(prog.log_events("start_failed")) >= 4, 20,
                            "refused logins")
            self.assertIn("max number of clients", prog.log_path.read_text())
        finally:
            self.redis.execute("CONFIG", "SET", "maxclients", "10000")
        self.wait_until(lambda: len(prog.log_events("worker_start")) == 2, 20, "the workers")
        self.assertFalse(prog.log_events("start_refused"))
        self.assertFalse(prog.log_events("child_config_error"))

    def test_acl_user_runs_a_worker_and_the_cli(self):
        url = "redis://pixq:%s@127.0.0.1:%d/0" % (ACL_PASSWORD, self.redis_server.port)
        worker = self.start_worker(PIXQ_REDIS_URL=url)
        src = self.src.add("/a.png", (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes())
        job = self.make_job(src, "acl/a.png", params={"width": 16}, job_id="acl-job")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(job, f)
            f.flush()
            r = self.run_pixq("submit", f.name, "--wait", "--timeout", "60",
                              env={"PIXQ_REDIS_URL": url})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("acl-job", r.stdout)
        r = self.run_pixq("stats", "--json", env={"PIXQ_REDIS_URL": url})
        self.assertEqual(r.returncode, 0, r.stderr)
        json.loads(r.stdout)
        r = self.run_pixq("limit", "show", env={"PIXQ_REDIS_URL": url})
        self.assertEqual(r.returncode, 0, r.stderr)
        # the user is held to pixq's keys and refused the dangerous commands
        acl = harness.Redis("127.0.0.1", self.redis_server.port)
        self.addCleanup(acl.close)
        self.assertEqual(acl.execute("AUTH", "pixq", ACL_PASSWORD), "OK")
        for cmd in (("FLUSHALL",), ("CONFIG", "SET", "appendonly", "no"), ("SET", "other", "1"),
                    ("DEBUG", "SLEEP", "0")):
            with self.assertRaises(harness.RespError, msg=" ".join(cmd)):
                acl.execute(*cmd)
        # but it may read INFO (+info): the worker checked the server at start (INFO is one of
        # -@dangerous, and the check was skipped under the user the file recommended)
        self.assertIn("maxmemory_policy:noeviction", acl.execute("INFO", "memory"))
        self.assertEqual(worker.log_events("redis_info_unavailable"), [])
        # KEDA (deploy/k8s/scaledobject.yaml) logs in as the Secret's REDIS_USERNAME, the user of
        # this file, selects each trigger's database and asks the length of its list
        user = re.search(r"(?m)^# user (\S+) on ", REDIS_CONF.read_text()).group(1)
        self.assertEqual(load_yaml(K8S / "secret.yaml")[0]["stringData"]["REDIS_USERNAME"], user)
        worker.terminate(harness.scaled(20))  # so that the entries below stay queued
        self.redis.lpush("pixq:{default}:jobs", "{}", "{}")
        self.addCleanup(self.redis.delete, "pixq:{default}:jobs")
        scaled = {d["kind"]: d for d in load_yaml(K8S / "scaledobject.yaml")}["ScaledObject"]
        for trigger in scaled["spec"]["triggers"]:
            md = trigger["metadata"]
            self.assertEqual(acl.execute("SELECT", md["databaseIndex"]), "OK")
            self.assertEqual(acl.execute("LLEN", md["listName"]),
                             2 if md["listName"] == "pixq:{default}:jobs" else 0)

    def test_info_refused_is_said(self):
        """A user without INFO (the ACL line before +info): the start-up checks are skipped, and
        the worker says so."""
        self.redis.execute("ACL", "SETUSER", "noinfo", "on", ">noinfo-password", "~pixq:*",
                           "resetchannels", "+@all", "-@admin", "-@dangerous")
        url = "redis://noinfo:noinfo-password@127.0.0.1:%d/0" % self.redis_server.port
        worker = self.start_worker(PIXQ_REDIS_URL=url)
        self.wait_until(lambda: worker.log_events("worker_start"), 20, "the worker")
        said = worker.log_events("redis_info_unavailable")
        self.assertEqual(len(said), 1, said)
        self.assertIn("NOPERM", said[0]["error"])
        self.assertIn("+info", said[0]["note"])


class ScriptedRedis:
    """A loopback server that answers the first command of its Nth connection with the Nth
    answer of `answers` (the last one from then on) and closes it: what a worker meets at start,
    connection by connection, whatever the time between its tries."""

    def __init__(self, test, answers):
        self.answers = list(answers)
        self.connections = 0
        self.sock = socket.socket()
        test.addCleanup(self.sock.close)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                answer = self.answers[min(self.connections, len(self.answers) - 1)]
                self.connections += 1
                try:
                    if conn.recv(65536):
                        conn.sendall(answer.encode() + b"\r\n")
                except OSError:
                    pass


WRONGPASS = "-WRONGPASS invalid username-password pair or user is disabled."
LOADING = "-LOADING Redis is loading the dataset in memory"


class StartTest(unittest.TestCase):
    """pixq-worker's start-up, against a Redis that refuses it or is not ready (README:
    PIXQ_REDIS_URL's refusals are a setting to fix, status 2; only an unreachable or loading
    Redis is waited for, PIXQ_REDIS_RETRY_MIN_MS doubling to PIXQ_REDIS_RETRY_MAX_MS apart, each
    wait drawn between half its step and the step), and what it logs before it reaches Redis."""

    def test_arguments(self):
        """--help and -h print the usage (status 0); an argument that is no setting, and
        anything after `--` (the worker takes no operand), is bad usage: status 2, said on
        stderr, also when a setting is wrong too (--help before `--` still answers then)."""
        env = dict(clean_env(),
                   PIXQ_REDIS_URL="redis://127.0.0.1:%d/0" % harness.refused_port(self))
        for argv in (["--help"], ["-h"], ["--queue", "a", "-h"]):
            r = run([CONFIG.worker, *argv], env=env)
            self.assertEqual((r.returncode, r.stderr), (0, ""), argv)
            self.assertTrue(r.stdout.startswith("usage: pixq-worker "), argv)
        bad = dict(env, PIXQ_MAX_PIXELS="abc")
        for argv, e, said in ((["frob"], env, "unknown argument 'frob' (see --help)"),
                              (["--print-config", "-x"], env, "unknown argument '-x'"),
                              (["--", "--help"], env, "unknown argument '--'"),
                              (["--", "--help"], bad, "PIXQ_MAX_PIXELS: 'abc' is not a whole"),
                              (["--functions", "--json", "--markdown"], env,
                               "unknown argument '--markdown' (see --help)"),
                              (["--functions", "extra"], env,
                               "--functions takes --json or --markdown, not 'extra'"),
                              (["--functions", "--json", "x", "y"], env, "argument 'x' (see")):
            r = run([CONFIG.worker, *argv], env=e)
            self.assertEqual((r.returncode, r.stdout), (2, ""), argv)
            self.assertTrue(r.stderr.startswith("pixq-worker: "), (argv, r.stderr))
            self.assertIn(said, r.stderr, argv)
        with open("/dev/full", "w") as full:  # the table could not be written: status 1
            r = run([CONFIG.worker, "--functions"], env=env, stdout=full)
        self.assertEqual(r.returncode, 1, r.stderr)

    def worker(self, server, *args, **env):
        env = dict(clean_env(), PIXQ_LOG_FORMAT="json",
                   PIXQ_REDIS_URL="redis://:pw@127.0.0.1:%d/0" % server.port, **env)
        proc = subprocess.Popen([CONFIG.worker, *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(lambda: proc.poll() is not None or (proc.kill(), proc.wait()))
        timer = threading.Timer(harness.scaled(30), proc.kill)
        self.addCleanup(timer.cancel)
        timer.start()
        return proc

    @staticmethod
    def event(line):
        try:
            return json.loads(line)
        except ValueError:
            return {"event": None, "text": line}

    def until_waiting(self, *args, tries=1, **env):
        """Runs the worker against a Redis that answers LOADING until `tries` start_failed
        events came, then stops it: (its JSON events and other lines, its pid). It waits 1 to 2
        ms between tries unless `env` sets PIXQ_REDIS_RETRY_MIN_MS and _MAX_MS."""
        server = ScriptedRedis(self, [LOADING])
        proc = self.worker(server, *args, **dict({"PIXQ_REDIS_RETRY_MIN_MS": "1",
                                                  "PIXQ_REDIS_RETRY_MAX_MS": "2"}, **env))
        events = []
        for line in proc.stderr:
            events.append(self.event(line))
            if [e["event"] for e in events].count("start_failed") == tries:
                proc.terminate()
        self.assertEqual(proc.wait(harness.scaled(20)), 0, events[-3:])
        return events, proc.pid

    def test_unknown_setting_is_logged(self):
        """A PIXQ_ variable that is no setting (a typo in an EnvironmentFile) is named in the
        log at start, a warning, as --print-config names it on stderr."""
        events, _ = self.until_waiting(PIXQ_PROCESS="4")
        said = [e for e in events if e["event"] == "unknown_setting"]
        self.assertEqual([(e["level"], e["name"], e["where"]) for e in said],
                         [("warn", "PIXQ_PROCESS", "environment")], events[:3])
        self.assertEqual([e for e in events if e["event"] is None], [])  # no other text

    def test_every_line_of_a_fleet_carries_its_pid(self):
        """README: with --processes N > 1 every log line carries the pid of the process that
        wrote it: the supervisor's own start-up lines (its settings, where the S3 keys come
        from) as the children's."""
        events, pid = self.until_waiting("--processes", "2", tries=2)
        self.assertEqual([e for e in events if "pid" not in e], [])
        config = [e for e in events if e["event"] == "config"]
        self.assertGreater(len(config), 50)
        self.assertEqual({e["pid"] for e in config}, {pid})
        self.assertEqual({e["pid"] for e in events if e["event"] == "s3_credentials_missing"},
                         {pid})
        # a single worker's lines carry none, as README's examples show them
        events, _ = self.until_waiting()
        self.assertGreater(len(events), 50)
        self.assertEqual([e for e in events if "pid" in e], [])

    def test_a_fleet_s_processes_draw_their_own_waits(self):
        """README: the waits at start are drawn so that a fleet started while Redis is away does
        not come back to it all at once: the two processes of --processes 2, started in the
        same second, draw different first waits (30 to 60 s here: the same by chance once in
        30,001). Drawn from the time alone, without the pid, they were the same."""
        events, _ = self.until_waiting("--processes", "2", tries=2,
                                       PIXQ_REDIS_RETRY_MIN_MS="60000",
                                       PIXQ_REDIS_RETRY_MAX_MS="60000")
        waits = {e["pid"]: int(e["retry_ms"]) for e in events if e["event"] == "start_failed"}
        self.assertEqual(len(waits), 2, events[-5:])
        self.assertTrue(all(30000 <= t <= 60000 for t in waits.values()), waits)
        self.assertEqual(len(set(waits.values())), 2, waits)

    def test_one_key_alone_is_warned(self):
        """Either of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY alone signs nothing: the worker
        warns s3_credentials_missing at start, as when both are missing; nor is a container's
        endpoint then asked (README: only without either key of the pair)."""
        endpoint = "http://127.0.0.1:%d/creds" % harness.refused_port(self)
        for env in ({"AWS_ACCESS_KEY_ID": "AKIDALONE"}, {"AWS_SECRET_ACCESS_KEY": "alone"}):
            events, _ = self.until_waiting(AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint, **env)
            names = [e["event"] for e in events]
            self.assertEqual(names.count("s3_credentials_missing"), 1, (env, names[:80]))
            self.assertNotIn("s3_credentials", names, env)

    def test_keys_in_the_environment_are_named_by_their_last_four(self):
        """Keys in the environment are said once at start, the access key id by its last four
        characters only (s3_credentials source=environment access_key_id_ends=...), however
        short it is: a key id of five showed whole when only one of more than eight was cut."""
        for key_id, shown in (("AKIAIOSFODNN7EXAMPLE", "MPLE"), ("AKIDX", "KIDX")):
            events, _ = self.until_waiting(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY="s")
            said = [(e.get("source"), e.get("access_key_id_ends")) for e in events
                    if e["event"] == "s3_credentials"]
            self.assertEqual(said, [("environment", shown)], events[:80])
            self.assertNotIn("s3_credentials_missing", [e["event"] for e in events])

    def test_export_line_is_warned_of(self):
        """An `export KEY=value` line of the --config file is read, but systemd's
        EnvironmentFile=, which reads the same file under the unit README gives, drops it: the
        start logs config_export_line (a warning, the first such line) and --print-config says
        so on stderr; a file without one, neither."""
        tmp = Path(tempfile.mkdtemp(prefix="pixq-export-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = tmp / "pixq.env"
        conf.write_text("PIXQ_DEAD_MAX=5\nexport PIXQ_QUEUE=exported\nexport PIXQ_PROCESSES=1\n")
        events, _ = self.until_waiting("--config", str(conf))
        said = [(e["level"], e["at"]) for e in events if e["event"] == "config_export_line"]
        self.assertEqual(said, [("warn", "%s:2" % conf)], events[:5])
        r = print_config(config=conf)
        self.assertIn("PIXQ_QUEUE=exported", r.stdout.splitlines())  # read all the same
        self.assertEqual((r.returncode, r.stderr),
                         (0, "pixq-worker: warning: %s:2: an 'export' line, which systemd's "
                             "EnvironmentFile= ignores: write KEY=value\n" % conf))
        conf.write_text("PIXQ_DEAD_MAX=5\nPIXQ_QUEUE=plain\n")
        r = print_config(config=conf)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        events, _ = self.until_waiting("--config", str(conf))
        self.assertEqual([e for e in events if e["event"] == "config_export_line"], [])

    def test_a_session_token_alone_leaves_the_endpoint_in_use(self):
        """AWS_SESSION_TOKEN alone is no key pair (the AWS SDKs' environment source wants
        both keys): a container's endpoint is still where the keys come from (README), said
        once at start, with no s3_credentials_missing."""
        endpoint = "http://127.0.0.1:%d/creds" % harness.refused_port(self)
        events, _ = self.until_waiting(AWS_CONTAINER_CREDENTIALS_FULL_URI=endpoint,
                                       AWS_SESSION_TOKEN="tok")
        said = [(e.get("source"), e.get("url")) for e in events if e["event"] == "s3_credentials"]
        self.assertEqual(said, [("container", endpoint)], events[:80])
        self.assertNotIn("s3_credentials_missing", [e["event"] for e in events])

    def test_credentials_that_cannot_be_used_end_it(self):
        """Settings to fix, status 2 before Redis is tried (README): a session token counts as
        one of the three keys beside AWS_SHARED_CREDENTIALS_FILE or the instance's keys, and a
        credentials file that cannot be read for another reason than not being there yet (a
        path through a file) is not waited for."""
        tmp = Path(tempfile.mkdtemp(prefix="pixq-creds-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        creds = tmp / "credentials"
        creds.write_text("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s\n")
        both = ("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN are both set: the "
                "keys come from one or the other")
        cases = (({"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_SESSION_TOKEN": "tok"},
                  "pixq-worker: AWS_SHARED_CREDENTIALS_FILE and " + both),
                 ({"PIXQ_S3_INSTANCE_CREDENTIALS": "1", "AWS_SESSION_TOKEN": "tok"},
                  "pixq-worker: PIXQ_S3_INSTANCE_CREDENTIALS and " + both),
                 ({"AWS_SHARED_CREDENTIALS_FILE": str(creds / "x")},
                  "pixq-worker: AWS_SHARED_CREDENTIALS_FILE %s: Not a directory" % (creds / "x")))
        server = ScriptedRedis(self, [LOADING])
        for env, said in cases:
            r = run([CONFIG.worker], env=dict(
                clean_env(), PIXQ_REDIS_URL="redis://127.0.0.1:%d/0" % server.port, **env),
                timeout=harness.scaled(20))
            self.assertEqual((r.returncode, r.stderr.splitlines()[-1]), (2, said), env)
        self.assertEqual(server.connections, 0)
        # the settings alone tell two sources of keys: --print-config says so as the start does
        # (a file that cannot be read is the start's to find)
        for env, said in cases[:2] + (({"AWS_SHARED_CREDENTIALS_FILE": str(creds),
                                        "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"},
                                       "pixq-worker: AWS_SHARED_CREDENTIALS_FILE and " + both),
                                      ({"PIXQ_S3_INSTANCE_CREDENTIALS": "1",
                                        "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
                                       "pixq-worker: PIXQ_S3_INSTANCE_CREDENTIALS and "
                                       "AWS_SHARED_CREDENTIALS_FILE are both set: the keys come "
                                       "from one or the other")):
            r = run([CONFIG.worker, "--print-config"], env=dict(clean_env(), **env),
                    timeout=harness.scaled(20))
            self.assertEqual((r.returncode, r.stdout, r.stderr.splitlines()[-1:]),
                             (2, "", [said]), env)

    def test_metrics_thread_that_cannot_start_ends_it(self):
        """One process with PIXQ_METRICS_ADDR serves the metrics from a thread: a thread that
        cannot be made (its stack, RLIMIT_STACK's 1 TiB, more than the host may map) ends the
        worker with metrics_failed and status 1 before Redis is tried, as a port it cannot take
        does: an operator who asked for metrics gets an error, not a worker without them. It
        exited 0 in a main.c mutant the tests let live. It says why (pthread_create's error),
        and says it on stderr too, as start_metrics() does its own failures."""
        def huge_stack():
            resource.setrlimit(resource.RLIMIT_STACK, (1 << 40, resource.RLIM_INFINITY))

        server = ScriptedRedis(self, [LOADING])
        port = harness.reserved_port(self)  # the worker binds it before the thread
        r = run([CONFIG.worker], env=dict(
            clean_env(), PIXQ_METRICS_ADDR="127.0.0.1:%d" % port, PIXQ_LOG_FORMAT="json",
            PIXQ_REDIS_URL="redis://127.0.0.1:%d/0" % server.port), preexec_fn=huge_stack,
            timeout=harness.scaled(20))
        lines = r.stderr.splitlines()
        events = [self.event(line) for line in lines[:-1]]
        self.assertEqual(r.returncode, 1, lines[-3:])
        said = [e.get("error") for e in events if e["event"] == "metrics_failed"]
        why = "cannot start the metrics thread: Resource temporarily unavailable"
        self.assertEqual(said, [why], lines[-3:])
        # and on stderr in plain words, as a port it cannot take is said (it was only logged)
        self.assertEqual(lines[-1], "pixq-worker: PIXQ_METRICS_ADDR: %s (exit status 1, to be "
                         "started again)" % why)
        self.assertEqual(server.connections, 0)

    def test_three_refusals_in_a_row_end_it(self):
        """Refused twice, then loading, then refused: the loading answer starts the count again,
        and the third refusal in a row (the sixth try) ends the worker with status 2. Ending it
        at the first refusal, or counting refusals that were not in a row, fails here."""
        server = ScriptedRedis(self, [WRONGPASS, WRONGPASS, LOADING, WRONGPASS])
        proc = self.worker(server, PIXQ_REDIS_RETRY_MIN_MS="1", PIXQ_REDIS_RETRY_MAX_MS="2")
        events = [self.event(line) for line in proc.stderr]
        self.assertEqual(proc.wait(), 2, events[-3:])
        self.assertEqual(server.connections, 6)
        names = [e["event"] for e in events]
        self.assertEqual(names.count("start_failed"), 5, names)
        self.assertEqual(names.count("start_refused"), 1, names)
        self.assertEqual(events[-1].get("text"), "pixq-worker: redis AUTH refused: %s (check "
                         "PIXQ_REDIS_URL)\n" % WRONGPASS[1:])

    def test_refusals_end_it_soon_whatever_the_outage_waits(self):
        """README: a refused login ends the worker with status 2 (at once, give or take its
        three tries), also with PIXQ_REDIS_RETRY_MIN_MS at its largest (60 s): the waits after a
        refusal are at most a second. With the outage waits after them it took 1.5 to 3 minutes
        (the test's timer kills it after 30 s: status -9)."""
        server = ScriptedRedis(self, [WRONGPASS])
        proc = self.worker(server, PIXQ_REDIS_RETRY_MIN_MS="60000",
                           PIXQ_REDIS_RETRY_MAX_MS="60000")
        events = [self.event(line) for line in proc.stderr]
        self.assertEqual(proc.wait(), 2, events[-3:])
        self.assertEqual(server.connections, 3)
        waits = [int(e["retry_ms"]) for e in events if e["event"] == "start_failed"]
        self.assertEqual(len(waits), 2, events)
        self.assertTrue(all(0 < t <= 1000 for t in waits), waits)
        # the second is the refusals' alone: a loading Redis is waited for as configured
        events, _ = self.until_waiting(PIXQ_REDIS_RETRY_MIN_MS="60000",
                                       PIXQ_REDIS_RETRY_MAX_MS="60000")
        waits = [int(e["retry_ms"]) for e in events if e["event"] == "start_failed"]
        self.assertEqual(len(waits), 1, events)
        self.assertTrue(30000 <= waits[0] <= 60000, waits)

    def test_a_stop_as_a_wait_begins_ends_it_at_once(self):
        """SIGTERM sent as the start_failed line is read, a wait of 30 to 60 s ahead: the worker
        ends with status 0 at once, each of five times. It slept the whole wait in one
        nanosleep, which a signal that came just before it (after the stop was checked) did not
        end: it slept on to the end of the wait, two times in three."""
        for _ in range(5):
            server = ScriptedRedis(self, [LOADING])
            proc = self.worker(server, PIXQ_REDIS_RETRY_MIN_MS="60000",
                               PIXQ_REDIS_RETRY_MAX_MS="60000")
            for line in proc.stderr:
                if self.event(line)["event"] == "start_failed":
                    proc.terminate()
                    break
            try:
                status = proc.wait(harness.scaled(3))
            except subprocess.TimeoutExpired:
                status = "still waiting 3 s after SIGTERM"
            self.assertEqual(status, 0)

    def test_loading_redis_is_waited_for_as_configured(self):
        """The waits between tries at start are PIXQ_REDIS_RETRY_MIN_MS (40 ms) doubling to
        PIXQ_REDIS_RETRY_MAX_MS (80 ms), each between half its step and the step, as for a
        Redis lost later; they were 100 ms doubling to 5 s whatever the settings, the same in
        every worker of a fleet (no jitter). A stop while it waits ends it with status 0."""
        server = ScriptedRedis(self, [LOADING])
        proc = self.worker(server, PIXQ_REDIS_RETRY_MIN_MS="40", PIXQ_REDIS_RETRY_MAX_MS="80")
        waits, stamps = [], []
        for line in proc.stderr:
            e = self.event(line)
            if e["event"] == "start_failed":
                self.assertIn("LOADING", e["error"])
                waits.append(int(e["retry_ms"]))
                stamps.append(datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ"))
                if len(waits) == 6:
                    proc.terminate()
                    break
        self.assertEqual(proc.wait(harness.scaled(20)), 0)
        self.assertEqual(len(waits), 6, waits)
        self.assertTrue(20 <= waits[0] <= 40, waits)
        self.assertTrue(all(40 <= t <= 80 for t in waits[1:]), waits)
        # drawn: five waits of the same step all the same has a chance of 41 ** -4
        self.assertGreater(len(set(waits[1:])), 1, waits)
        # and waited: each try at least its wait after the one before (the lines' times are
        # whole milliseconds); a wait slept in microseconds passed the figures above
        gaps = [(b - a) / datetime.timedelta(milliseconds=1) for a, b in zip(stamps, stamps[1:])]
        self.assertTrue(all(g >= t - 1 for g, t in zip(gaps, waits)), (gaps, waits))


# ---------------------------------------------------------------------------------------------
# Containerfile


def apt_closure(packages):
    """The packages and everything they depend on (Depends and Pre-Depends), per apt-cache."""
    r = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages])
    names = set(packages)
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*(?:\|?(?:Pre)?Depends: )?<?([a-z0-9][a-z0-9.+-]+)", line)
        if m:
            names.add(m.group(1).split(":")[0])
    return names


@functools.lru_cache(maxsize=None)
def package_of(path):
    """The Debian package that owns a file (tried as given and with /usr merged), or None."""
    real = os.path.realpath(path)
    candidates = {path, real, real.replace("/usr/lib/", "/lib/", 1)}
    for p in candidates:
        r = run(["dpkg", "-S", p])
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def readme_section(heading):
    """README.md from the line `heading` ("## Name", "### Name") to the next "## " heading or
    the end."""
    text = (REPO / "README.md").read_text()
    start = text.index("\n%s\n" % heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def meson_dependency_packages(case):
    """{name: Debian package} for every dependency('name') of the project's meson files, through
    pkg-config (asserted on `case`: each known, and more than five of them)."""
    names = set()
    for path in [REPO / "meson.build"] + sorted(REPO.glob("*/**/meson.build")):
        if "node_modules" not in path.parts:
            names |= set(re.findall(r"dependency\('([^']+)'", path.read_text()))
    names.discard("threads")
    case.assertGreater(len(names), 5, names)
    packages = {}
    for name in sorted(names):
        r = run(["pkg-config", "--path", name])
        case.assertEqual(r.returncode, 0, "pkg-config knows no %s" % name)
        packages[name] = package_of(r.stdout.strip())
    return packages


def needed_libraries(binary):
    """{soname: path} of the shared libraries a program needs directly."""
    r = run(["readelf", "-d", str(binary)])
    sonames = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", r.stdout)
    r = run(["ldd", str(binary)])
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", r.stdout, re.M))
    for path in re.findall(r"^\s*(/\S+) \(0x", r.stdout, re.M):  # the dynamic loader
        paths.setdefault(os.path.basename(path), path)
    return {s: paths.get(s) for s in sonames}


class ContainerfileTest(unittest.TestCase):
    """deploy/Containerfile."""

    @classmethod
    def setUpClass(cls):
        cls.parsed = node("containerfile.js", CONTAINERFILE)
        cls.stages = []
        for ins in cls.parsed["instructions"]:
            if ins["keyword"] == "FROM":
                cls.stages.append({"from": ins, "instructions": []})
            elif cls.stages:
                cls.stages[-1]["instructions"].append(ins)

    def stage(self, i):
        return self.stages[i]["instructions"]

    def keyword(self, i, kw):
        return [ins for ins in self.stage(i) if ins["keyword"] == kw]

    def apt_packages(self, i):
        pkgs = []
        for ins in self.keyword(i, "RUN"):
            for m in re.finditer(r"apt-get install ((?:\s*-\S+)*)((?:\s+[a-z0-9][a-z0-9.+-]+)+)",
                                 ins["content"]):
                pkgs += m.group(2).split()
        return pkgs

    def test_lint_clean(self):
        self.assertEqual(self.parsed["diagnostics"], [])

    def test_linter_catches_a_broken_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".Containerfile") as f:
            f.write(CONTAINERFILE.read_text().replace("COPY common/ common/", "COPY common/")
                    .replace("FROM debian:12-slim\n", "FROM\n"))
            f.flush()
            messages = [d["message"] for d in node("containerfile.js", f.name)["diagnostics"]]
        self.assertEqual(len(messages), 2, messages)

    def test_stages_base_user_entrypoint(self):
        self.assertEqual(len(self.stages), 2)
        self.assertEqual(self.stages[0]["from"]["args"], ["debian:12-slim", "AS", "build"])
        self.assertEqual(self.stages[1]["from"]["args"], ["debian:12-slim"])
        users = self.keyword(1, "USER")
        self.assertEqual(len(users), 1)
        uid = users[0]["args"][0].split(":")[0]
        self.assertRegex(uid, r"^[1-9][0-9]*$", "USER must be a numeric non-root uid")
        self.assertEqual(self.keyword(1, "ENTRYPOINT")[0]["content"],
                         '["/usr/local/bin/pixq-worker"]')
        # the USER comes after the last RUN: nothing runs as root at run time
        last_run = max(ins["line"] for ins in self.keyword(1, "RUN"))
        self.assertGreater(users[0]["line"], last_run)
        self.assertIn("--uid %s" % uid, " ".join(i["content"] for i in self.keyword(1, "RUN")))

    @unittest.skipIf(os.geteuid() != 0, "useradd --prefix needs root")
    def test_runtime_user_and_group_are_the_user_line_s(self):
        """The runtime stage's groupadd/useradd commands, run with --prefix on a copy of this
        machine's /etc files (Debian 12's shadow, as in the image), make the user and the group
        of its `USER uid:gid` line (and the pod's runAsUser/runAsGroup): `useradd --system
        --user-group` gave the group a system GID (995 here), not the 10001 the image runs as."""
        uid, gid = re.search(r"(?m)^USER (\d+):(\d+)$", CONTAINERFILE.read_text()).groups()
        commands = []
        for ins in self.keyword(1, "RUN"):
            for part in re.split(r"\s*&&\s*", " ".join(ins["content"].replace("\\\n", " ")
                                                     .split())):
                if part.split()[0] in ("groupadd", "useradd"):
                    commands.append(part.split())
        self.assertEqual([c[0] for c in commands][-1], "useradd", commands)
        tmp = Path(tempfile.mkdtemp(prefix="pixq-useradd-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        (tmp / "etc").mkdir()
        for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
            shutil.copy2(Path("/etc", name), tmp / "etc" / name)
        for argv in commands:
            r = run([argv[0], "--prefix", str(tmp)] + argv[1:])
            self.assertEqual(r.returncode, 0, "%s: %s" % (argv, r.stderr))
        name = commands[-1][-1]
        users = {f[0]: f for f in (line.split(":") for line in
                                   (tmp / "etc" / "passwd").read_text().splitlines())}
        groups = {f[2]: f[0] for f in (line.split(":") for line in
                                       (tmp / "etc" / "group").read_text().splitlines())}
        self.assertEqual(users[name][2:4], [uid, gid], "the user's uid and primary group")
        self.assertEqual(groups.get(gid), name, "a group with the USER line's gid")

    def test_no_secrets(self):
        for stage in range(2):
            for ins in self.keyword(stage, "ENV") + self.keyword(stage, "ARG"):
                self.assertNotRegex(ins["content"], r"(?i)secret|password|AWS_|REDIS_URL",
                                    "line %d" % ins["line"])
            for ins in self.keyword(stage, "COPY") + self.keyword(stage, "ADD"):
                self.assertNotRegex(ins["content"], r"\.env\b|credentials", ins)

    def test_copy_sources_exist(self):
        self.assertEqual(self.keyword(1, "ADD") + self.keyword(0, "ADD"), [])
        copies = self.keyword(0, "COPY")
        self.assertGreater(len(copies), 3)
        for ins in copies:
            self.assertEqual(ins["flags"], {}, ins)
            for src in ins["args"][:-1]:
                self.assertTrue((REPO / src).exists(), "COPY source %s is not in the repo" % src)
        for ins in self.keyword(1, "COPY"):
            self.assertEqual(ins["flags"], {"from": "build"}, ins)

    def test_packages_exist(self):
        for stage in range(2):
            pkgs = self.apt_packages(stage)
            self.assertGreater(len(pkgs), 3)
            # one apt-cache for all of a stage's packages: each run reads the whole package
            # cache (about 1 s; one run per package took 54 s under a busy ASan suite). It
            # shows the packages it finds and passes over the others, so each name is looked
            # for in what it shows.
            r = run(["apt-cache", "show", "--no-all-versions"] + pkgs)
            shown = set(re.findall(r"(?m)^Package: (\S+)$", r.stdout))
            missing = [p for p in pkgs if p not in shown]
            self.assertEqual(missing, [], "Debian has no package %s (stage %d): %s"
                             % (missing, stage, r.stderr.strip()))

    def test_build_packages_provide_every_dependency(self):
        """Every dependency('X') of the meson files the build stage copies comes, through
        pkg-config, from a package the build stage installs (or one they depend on)."""
        build = apt_closure(self.apt_packages(0))
        for name, pkg in meson_dependency_packages(self).items():
            self.assertIn(pkg, build, "meson needs %s (%s), which the build stage does not "
                          "install" % (name, pkg))
        for tool in ("meson", "ninja-build", "pkg-config", "gcc", "libc6-dev"):
            self.assertIn(tool, build)

    def test_runtime_packages_provide_every_library(self):
        runtime = apt_closure(self.apt_packages(1))
        for program in (CONFIG.worker, CONFIG.pixq):
            for soname, path in needed_libraries(program).items():
                if soname.startswith(("libasan", "libubsan")):
                    continue  # sanitizer builds only
                self.assertIsNotNone(path, "%s: %s not found" % (program, soname))
                pkg = package_of(path)
                self.assertIsNotNone(pkg, "no Debian package owns %s" % path)
                self.assertIn(pkg, runtime | {"libc6"},
                              "%s needs %s (%s), which the runtime stage does not install"
                              % (program, soname, pkg))
        self.assertIn("ca-certificates", runtime)
        # the fonts the text functions draw Blitline's Helvetica, Times and Courier with, as
        # scripts/bootstrap installs them for the tests (worker/ops_draw.c)
        self.assertIn("fonts-urw-base35", runtime)
        self.assertIn("fonts-urw-base35", (REPO / "scripts" / "bootstrap").read_text())

    def context_patterns(self):
        """The patterns of .dockerignore, the build context's exclusions."""
        text = (REPO / ".dockerignore").read_text()
        return [line.strip() for line in text.splitlines()
                if line.strip() and not line.startswith("#")]

    def context_ignored_anywhere(self):
        """The names .dockerignore leaves out at any depth (its "**/NAME" patterns)."""
        return [p[3:] for p in self.context_patterns() if p.startswith("**/")]

    def context_ignore(self):
        """A copytree() ignore that leaves out what .dockerignore does: its "**/NAME" names at
        any depth, and its other patterns matched against the path from the repository's
        root."""
        anywhere = self.context_ignored_anywhere()
        rooted = [p for p in self.context_patterns() if not p.startswith("**/")]

        def ignore(directory, names):
            rel = os.path.relpath(directory, REPO)
            return {n for n in names if any(fnmatch.fnmatch(n, p) for p in anywhere) or
                    any(fnmatch.fnmatch(os.path.normpath(os.path.join(rel, n)), p)
                        for p in rooted)}
        return ignore

    def test_build_context_leaves_out_caches_and_builds(self):
        """The context sent for `podman build ... .` leaves out the build directories and the
        npm modules (node_modules under tests/, which COPY tests/ took into the build stage:
        56 MB) and promtool (48 MB), and none of what the build stage copies."""
        patterns = self.context_patterns()
        for name in ("build", "build-asan", "build-fuzz", ".git", "tests/deploy-check/bin"):
            self.assertTrue(any(fnmatch.fnmatch(name, p) for p in patterns), name)
        anywhere = self.context_ignored_anywhere()
        self.assertIn("node_modules", anywhere)
        self.assertIn("__pycache__", anywhere)
        for ins in self.keyword(0, "COPY"):
            for src in ins["args"][:-1]:
                for p in patterns:
                    self.assertFalse(fnmatch.fnmatch(src.rstrip("/"), p), (src, p))

    @unittest.skipIf(os.geteuid() != 0 or not shutil.which("setpriv"),
                     "runs pixq-apply as another user: needs root and setpriv")
    def test_runtime_has_a_prebuilt_font_cache(self):
        """The image's worker (uid 10001, no writable home or /var/cache) cannot write a font
        cache: without one made at install time, every process that draws text scans the fonts
        again and prints "Fontconfig error: No writable cache directories" on stderr, among its
        log lines, about 20 times. The `fontconfig` package's trigger runs fc-cache when fonts
        are installed; the runtime stage must install it (it did not: libfontconfig1 alone has
        no fc-cache). Shown with pixq-apply drawing text as uid 10001, HOME=/nonexistent and a
        fontconfig configuration whose only cache folder, root's, is first empty, then filled
        by fc-cache as root."""
        self.assertIn("fontconfig", self.apt_packages(1))
        uid = re.search(r"(?m)^USER (\d+):(\d+)$", CONTAINERFILE.read_text()).groups()
        tmp = Path(tempfile.mkdtemp(prefix="pixq-fontcache-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        tmp.chmod(0o755)
        (tmp / "out").mkdir(mode=0o777)
        (tmp / "out").chmod(0o777)
        (tmp / "cache").mkdir(mode=0o755)
        apply = Path(CONFIG.worker).parents[1] / "tests" / "tools" / "pixq-apply"
        shutil.copy(apply, tmp / "pixq-apply")  # the build folder may be closed to others
        shutil.copy(CONFIG.data / "images" / "autumn-320x200.jpg", tmp / "src.jpg")
        conf = tmp / "fonts.conf"
        conf.write_text('<?xml version="1.0"?>\n<fontconfig>\n'
                        "  <dir>/usr/share/fonts</dir>\n"
                        "  <cachedir>%s</cachedir>\n"
                        '  <include ignore_missing="yes">/etc/fonts/conf.d</include>\n'
                        "</fontconfig>\n" % (tmp / "cache"))
        job = tmp / "job.json"
        job.write_text(json.dumps({"src": "x", "functions": [{
            "name": "annotate", "params": {"text": "pixq", "font_family": "Helvetica",
                                           "point_size": 20},
            "save": {"image_identifier": "text"}}]}))
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "FONTCONFIG_FILE": str(conf),
               "TMPDIR": str(tmp / "out")}
        argv = ["setpriv", "--reuid", uid[0], "--regid", uid[1], "--clear-groups",
                str(tmp / "pixq-apply"), str(job), str(tmp / "src.jpg"), str(tmp / "out")]
        r = run(argv, env=env, cwd=tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Fontconfig error: No writable cache directories", r.stderr)
        r = run(["fc-cache", "-s"], env=env)  # what the fontconfig package's trigger runs
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(argv, env=env, cwd=tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("Fontconfig", r.stderr)

    @unittest.skipIf(CONFIG.sanitized, "the build stage is checked in the plain build's run")
    def test_build_stage_commands_build_the_programs(self):
        """WORKDIR and COPY emulated on a copy of exactly what the build stage copies, then its
        RUN lines other than apt-get run there; the runtime stage's COPY --from source must
        then hold both programs, and they run."""
        tmp = Path(tempfile.mkdtemp(prefix="pixq-containerfile-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        root, workdir = tmp / "root", "/"
        ignore = self.context_ignore()
        for ins in self.stage(0):
            kw, args = ins["keyword"], ins["args"]
            if kw == "WORKDIR":
                workdir = os.path.join(workdir, args[0])
                (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif kw == "COPY":
                dest = root / os.path.join(workdir, args[-1]).lstrip("/")
                for src in args[:-1]:
                    if (REPO / src).is_dir():
                        shutil.copytree(REPO / src, dest, ignore=ignore, dirs_exist_ok=True)
                    else:
                        dest.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(REPO / src, dest)
            elif kw == "RUN" and not ins["content"].startswith("apt-get"):
                r = run(["sh", "-ec", ins["content"]], cwd=root / workdir.lstrip("/"),
                        env=clean_env(), timeout=600)
                self.assertEqual(r.returncode, 0, "RUN line %d failed:\n%s%s"
                                 % (ins["line"], r.stdout[-3000:], r.stderr[-3000:]))
        src = self.keyword(1, "COPY")[0]["args"][0]
        out = root / src.lstrip("/")
        self.assertEqual(sorted(p.name for p in out.iterdir()), ["pixq", "pixq-worker"])
        for prog in ("pixq", "pixq-worker"):
            r = run([str(out / prog), "--help"])
            self.assertEqual(r.returncode, 0, r.stderr)


# ---------------------------------------------------------------------------------------------
# Kubernetes


def load_yaml(path):
    import yaml  # python3-yaml

    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


class KubernetesTest(unittest.TestCase):
    """deploy/k8s/: deployment.yaml, secret.yaml, scaledobject.yaml."""

    @classmethod
    def setUpClass(cls):
        cls.docs = []
        for name in ("deployment.yaml", "secret.yaml", "scaledobject.yaml"):
            cls.docs += load_yaml(K8S / name)
        cls.by_kind = {d["kind"]: d for d in cls.docs}

    def validate(self, docs):
        return node("k8s.js", input=json.dumps(docs))

    def test_schemas(self):
        results = self.validate(self.docs)
        self.assertEqual(sorted(r["kind"] for r in results),
                         ["Deployment", "ScaledObject", "Secret", "TriggerAuthentication"])
        for r in results:
            self.assertEqual(r["errors"], [], r)

    def test_schemas_catch_broken_objects(self):
        broken = json.loads(json.dumps(self.docs))
        kinds = {d["kind"]: d for d in broken}
        kinds["Deployment"]["spec"]["replicas"] = "two"
        del kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["name"]
        del kinds["ScaledObject"]["spec"]["scaleTargetRef"]
        kinds["Secret"]["stringData"]["X"] = 1
        kinds["TriggerAuthentication"]["spec"]["secretTargetRef"][0]["key"] = ["k"]
        for r in self.validate(broken):
            self.assertNotEqual(r["errors"], [], r["kind"])
        typo = [dict(self.by_kind["Deployment"], apiVersion="apps/v1beta9")]
        self.assertNotEqual(self.validate(typo)[0]["errors"], [])
        # unknown (misspelt) fields, which the schema validators let through, are refused by
        # the type check
        unknown = json.loads(json.dumps(self.docs))
        kinds = {d["kind"]: d for d in unknown}
        kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["securityContext"][
            "readOnlyRootFilesytem"] = True
        kinds["ScaledObject"]["spec"]["maxReplicas"] = 3
        kinds["Secret"]["stringDta"] = {}
        kinds["TriggerAuthentication"]["spec"]["secretTargetRef"][0]["keyy"] = "x"
        for r in self.validate(unknown):
            self.assertEqual(len(r["errors"]), 1, r)
            self.assertRegex(r["errors"][0], r"^type: Object literal may only specify known "
                             r"properties, and '\"(readOnlyRootFilesytem|maxReplicas|stringDta|"
                             r"keyy)\"' does not exist")

    def container(self):
        return self.by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]

    def env(self):
        """The container's environment: the Secret's keys, then its own env (which wins)."""
        env = dict(self.by_kind["Secret"]["stringData"])
        env.update({e["name"]: e["value"] for e in self.container()["env"]})
        return env

    def test_security_context_and_resources(self):
        pod = self.by_kind["Deployment"]["spec"]["template"]["spec"]
        c = self.container()
        self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
        sc = c["securityContext"]
        self.assertIs(sc["runAsNonRoot"], True)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("add", sc["capabilities"])
        uid = re.search(r"(?m)^USER (\d+)", CONTAINERFILE.read_text()).group(1)
        self.assertEqual(str(pod["securityContext"]["runAsUser"]), uid)
        for kind in ("requests", "limits"):
            self.assertEqual(sorted(c["resources"][kind]), ["cpu", "memory"])
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        self.assertEqual(len(tmp), 1, "a writable /tmp for ImageMagick's disk cache")
        m = re.fullmatch(r"(\d+)(Mi|Gi)", c["resources"]["limits"]["memory"])
        self.assertIsNotNone(m, c["resources"]["limits"]["memory"])
        limit_mib = int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)
        env = self.env()
        self.assertGreaterEqual(limit_mib, int(env.get("PIXQ_PROCESSES", "1"))
                                * process_worst_mib(env), "room for pixels, outputs, sources")

    def test_env_is_valid_for_the_worker(self):
        env = self.env()
        known = set(worker_settings()) | {"TMPDIR", "REDIS_USERNAME", "REDIS_PASSWORD"}
        self.assertEqual(set(env) - known, set())
        r = print_config(env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.container()["envFrom"],
                         [{"secretRef": {"name": self.by_kind["Secret"]["metadata"]["name"]}}])
        for key in ("AWS_SECRET_ACCESS_KEY", "PIXQ_POSTBACK_SECRET", "REDIS_PASSWORD"):
            self.assertIn("CHANGE-ME", env[key])

    def test_grace_period_and_probe(self):
        env = self.env()
        grace = self.by_kind["Deployment"]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]
        shutdown_ms = int(env.get("PIXQ_SHUTDOWN_TIMEOUT_MS",
                                  worker_settings()["PIXQ_SHUTDOWN_TIMEOUT_MS"]))
        self.assertGreaterEqual(grace, shutdown_ms / 1000 + 10)
        port = int(env["PIXQ_METRICS_ADDR"].rsplit(":", 1)[1])
        ports = {p["name"]: p["containerPort"] for p in self.container()["ports"]}
        probe = self.container()["livenessProbe"]["httpGet"]
        self.assertEqual(ports[probe["port"]], port)
        self.assertEqual(probe["path"], "/metrics")
        annotations = self.by_kind["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/port"], str(port))

    def test_keda_scales_this_deployment_on_its_queues(self):
        so, dep = self.by_kind["ScaledObject"], self.by_kind["Deployment"]
        self.assertEqual(so["spec"]["scaleTargetRef"]["name"], dep["metadata"]["name"])
        self.assertEqual(so["metadata"]["namespace"], dep["metadata"]["namespace"])
        env = self.env()
        queues = env.get("PIXQ_QUEUE", "default").split(",")
        triggers = so["spec"]["triggers"]
        self.assertEqual(sorted(t["metadata"]["listName"] for t in triggers),
                         sorted("pixq:{%s}:jobs" % q for q in queues))
        self.assertIn("pixq:{default}:jobs", [t["metadata"]["listName"] for t in triggers])
        # cooldownPeriod covers scaling to zero only: with a minimum of 1, scaling in is the
        # HPA's, slowed by its own window
        if so["spec"].get("minReplicaCount", 0) >= 1:
            hpa = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
            self.assertGreaterEqual(hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
                                    300)
        url = urllib.parse.urlsplit(env["PIXQ_REDIS_URL"])
        auth = self.by_kind["TriggerAuthentication"]
        secret = self.by_kind["Secret"]
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        for t in triggers:
            md = t["metadata"]
            self.assertEqual(t["type"], "redis")
            self.assertGreater(int(md["listLength"]), 0)
            self.assertEqual(md["address"], "%s:%d" % (url.hostname, url.port))
            self.assertEqual(md["databaseIndex"], url.path.strip("/"))
            self.assertEqual(t["authenticationRef"]["name"], auth["metadata"]["name"])
        for param, want in (("username", url.username), ("password", url.password)):
            self.assertEqual(refs[param]["name"], secret["metadata"]["name"])
            self.assertEqual(secret["stringData"][refs[param]["key"]], want)


def pid_gone(pid):
    """Whether process `pid` has ended (a zombie has)."""
    try:
        return Path("/proc", str(pid), "stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


class ReadmeFleetTest(unittest.TestCase):
    """The figures README's "Operating a fleet" gives an operator against the files in deploy/
    and the worker's defaults they describe: each was written by hand, and a file changed
    alone left README telling operators the old value (nothing compared them)."""

    @classmethod
    def setUpClass(cls):
        cls.fleet = readme_section("## Operating a fleet")
        cls.unit = dict(service_settings(UNIT.read_text()))
        cls.defaults = worker_settings()
        docs = {}
        for name in ("deployment.yaml", "scaledobject.yaml"):
            docs.update({d["kind"]: d for d in load_yaml(K8S / name)})
        cls.deployment, cls.scaled = docs["Deployment"], docs["ScaledObject"]

    def figure(self, pattern):
        """The first group of `pattern` in the section (one match, or the test fails)."""
        found = re.findall(pattern, self.fleet)
        self.assertEqual(len(found), 1, "README's fleet section, %r: %r" % (pattern, found))
        return found[0]

    def default_s(self, var):
        return int(self.defaults[var]) / 1000

    def test_the_files_it_names_exist(self):
        names = self.figure(r"(?s)The files are in `deploy/`: (.+?)\.\n\n")
        for name in re.findall(r"`([^`]+)`", names):
            self.assertTrue((DEPLOY / name).exists(), "deploy/%s" % name)
        kinds = [d["kind"] for name in ("deployment.yaml", "secret.yaml", "scaledobject.yaml")
                 for d in load_yaml(K8S / name)]
        for kind in re.search(r"\(([^)]*)\)", names).group(1).split(", "):
            self.assertIn(kind.split()[-1], kinds)

    def test_unit_figures(self):
        for key in ("MemoryHigh", "MemoryMax", "TimeoutStopSec"):
            self.assertEqual(self.figure(r"`%s=(\w+)`" % key), self.unit[key], key)
        processes = self.figure(r"`MemoryMax=\w+` cap an\s+instance of (\d+) processes")
        self.assertEqual(processes, env_lines(ENV_EXAMPLE.read_text())["PIXQ_PROCESSES"])
        pixels = self.figure(r"`PIXQ_MAGICK_MAP_MB` for pixels, (\d+) MiB by default")
        self.assertEqual(int(pixels), int(self.defaults["PIXQ_MAGICK_MEMORY_MB"]) +
                         int(self.defaults["PIXQ_MAGICK_MAP_MB"]))
        worst = self.figure(r"about (\d+\.\d) GiB at the\s+defaults' worst")
        self.assertEqual(worst, "%.1f" % (process_worst_mib({}) / 1024))

    def test_drain_figures(self):
        self.assertEqual(float(self.figure(r"`PIXQ_SHUTDOWN_TIMEOUT_MS` \((\d+) s\)")),
                         self.default_s("PIXQ_SHUTDOWN_TIMEOUT_MS"))
        # a reap pass comes up to a tenth of its interval late (its jitter)
        self.assertEqual(float(self.figure(
            r"`PIXQ_LEASE_MS` \+ 1\.1 times `PIXQ_REAP_INTERVAL_MS`, ([\d.]+) s by default")),
            self.default_s("PIXQ_LEASE_MS") + 1.1 * self.default_s("PIXQ_REAP_INTERVAL_MS"))
        grace = self.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        self.assertEqual(int(self.figure(r"`terminationGracePeriodSeconds: (\d+)`")), grace)
        # the container's stop: README's --stop-timeout and its worker's two figures
        stop = self.figure(r"podman run --stop-timeout (\d+) ")
        self.assertIn("--stop-timeout %s " % stop, CONTAINERFILE.read_text())
        shutdown, grace_s = self.figure(r"less than a worker's (\d+) s \+ (\d+) s to finish")
        self.assertEqual((float(shutdown), float(grace_s)),
                         (self.default_s("PIXQ_SHUTDOWN_TIMEOUT_MS"),
                          self.default_s("PIXQ_STOP_GRACE_MS")))
        self.assertGreater(int(stop), int(shutdown) + int(grace_s))

    def test_dead_list_and_horizon_figures(self):
        self.assertEqual(self.figure(r"`PIXQ_DEAD_MAX` \(([\d,]+)\)").replace(",", ""),
                         self.defaults["PIXQ_DEAD_MAX"])
        days = int(self.figure(r"`PIXQ_DEAD_MAX_AGE_S` \((\d+) days\)"))
        self.assertEqual(days * 86400, int(self.defaults["PIXQ_DEAD_MAX_AGE_S"]))
        minutes = int(self.figure(r"`PIXQ_S3_HORIZON_MS`\s+\((\d+) minutes\)"))
        self.assertEqual(minutes * 60000, int(self.defaults["PIXQ_S3_HORIZON_MS"]))

    def test_container_figures(self):
        text = CONTAINERFILE.read_text()
        uid = self.figure(r"running as uid (\d+)")
        self.assertEqual(re.findall(r"(?m)^USER (\d+):", text), [uid])
        entry = self.figure(r"entry point `([^`]+)`")
        self.assertEqual(re.findall(r'(?m)^ENTRYPOINT \["/usr/local/bin/([^"]+)"\]$', text),
                         [entry])
        self.assertIn("Debian 12 slim", self.fleet)
        self.assertEqual(re.findall(r"(?m)^FROM (\S+)", text), ["debian:12-slim"] * 2)

    def test_kubernetes_figures(self):
        pod = self.deployment["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        self.assertIn("one worker process per pod", self.fleet)
        self.assertEqual(env["PIXQ_PROCESSES"], "1")
        port = int(self.figure(r"use the\s+metrics port (\d+)"))
        self.assertEqual(env["PIXQ_METRICS_ADDR"].rsplit(":", 1)[1], str(port))
        self.assertEqual(pod["containers"][0]["ports"][0]["containerPort"], port)
        spec = self.scaled["spec"]
        low, high = self.figure(r"scales it between (\d+) and (\d+) replicas")
        self.assertEqual((int(low), int(high)), (spec["minReplicaCount"], spec["maxReplicaCount"]))
        trigger = spec["triggers"][0]["metadata"]
        self.assertEqual(self.figure(r"the length of\s+`([^`]+)`"), trigger["listName"])
        self.assertEqual(self.figure(r"one replica per (\d+) waiting jobs"), trigger["listLength"])
        self.assertEqual(int(self.figure(r"checked every (\d+) s")), spec["pollingInterval"])
        window = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        self.assertEqual(int(self.figure(r"scaling in after (\d+) s quiet")),
                         window["stabilizationWindowSeconds"])

    def test_kubernetes_commands_and_pod_hardening(self):
        """The kubectl lines as written: the namespace they create is every object's, the
        files exist and are the ones deployment.yaml's header gives; the Secret it names is the
        one the pods and KEDA read; and the pod's hardening README lists."""
        block = self.figure(r"(?s)```sh\n(kubectl create namespace.*?)```")
        lines = [line.split("#")[0].split() for line in block.splitlines() if line.strip()]
        self.assertEqual(lines[0][:3], ["kubectl", "create", "namespace"])
        namespace = lines[0][3]
        files = []
        for words in lines[1:]:
            self.assertEqual(words[:2], ["kubectl", "apply"], words)
            files += [w for i, w in enumerate(words) if i and words[i - 1] == "-f"]
        self.assertEqual(sorted(files), sorted("deploy/k8s/%s" % p.name
                                               for p in K8S.glob("*.yaml")))
        for name in files:
            for doc in load_yaml(REPO / name):
                self.assertEqual(doc["metadata"]["namespace"], namespace,
                                 "%s: %s" % (name, doc["kind"]))
        header = "\n".join(line[1:].split("#")[0].strip()
                           for line in (K8S / "deployment.yaml").read_text().splitlines()
                           if line.startswith("#   kubectl"))
        self.assertEqual(header, "\n".join(" ".join(w) for w in lines))
        secret = self.figure(r"create the Secret `([^`]+)`")
        self.assertEqual(load_yaml(K8S / "secret.yaml")[0]["metadata"]["name"], secret)
        pod = self.deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["envFrom"], [{"secretRef": {"name": secret}}])
        self.assertIn("a RuntimeDefault seccomp profile", self.fleet)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertNotIn("seccompProfile", container["securityContext"])  # not overridden
        self.assertIn("an\n`emptyDir` `/tmp` for ImageMagick", self.fleet)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        tmp = [name for name, path in mounts.items() if path == "/tmp"]
        self.assertEqual(len(tmp), 1)
        self.assertIn("emptyDir", volumes[tmp[0]])
        env = {e["name"]: e["value"] for e in container["env"]}
        self.assertEqual(env.get("TMPDIR", "/tmp"), "/tmp")
        # room in it for every process's disk pixel cache (past its sizeLimit the kubelet
        # evicts the pod, job and all)
        m = re.fullmatch(r"(\d+)(Mi|Gi)", volumes[tmp[0]]["emptyDir"]["sizeLimit"])
        size_mib = int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)
        settings = dict(self.defaults, **env)
        self.assertGreaterEqual(size_mib, int(settings["PIXQ_PROCESSES"])
                                * int(settings["PIXQ_MAGICK_DISK_MB"]))
        self.assertIn("ENV TMPDIR=/tmp MAGICK_TEMPORARY_PATH=/tmp", CONTAINERFILE.read_text())
        # the pod runs as the image's user and group (USER uid:gid)
        uid, gid = re.search(r"(?m)^USER (\d+):(\d+)$", CONTAINERFILE.read_text()).groups()
        self.assertEqual((str(pod["securityContext"]["runAsUser"]),
                          str(pod["securityContext"]["runAsGroup"])), (uid, gid))


def promtool(*args, cwd=None):
    if not os.access(PROMTOOL, os.X_OK):
        raise AssertionError("%s is missing: run scripts/bootstrap (promtool from Debian's "
                             "prometheus package)" % PROMTOOL)
    return run([str(PROMTOOL), *map(str, args)], cwd=cwd)


def exposition_families(text):
    """{family: {label: {values}}} of a Prometheus text exposition, parsed by test_fleet's
    strict parser (a family with no sample too; a histogram's _bucket, _sum and _count under
    the family's name)."""
    fams = {}
    for name, fam in parse_exposition(text).items():
        labels = fams.setdefault(name, {})
        for _, sample_labels, _ in fam["samples"]:
            for k, v in sample_labels.items():
                labels.setdefault(k, set()).add(v)
    return fams


class AlertRulesTest(PixqTestCase):
    """deploy/prometheus/pixq-alerts.yml, the alerts README's "Watching the fleet" recommends."""

    start_worker_in_setup = False

    def rules(self):
        doc = yaml.safe_load(ALERTS.read_text())
        return [r for g in doc["groups"] for r in g["rules"]]

    def test_promtool_checks_the_rules(self):
        r = promtool("check", "rules", ALERTS)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS: %d rules found" % len(self.rules()), r.stdout)

    def test_each_alert_fires_and_stays_quiet_as_its_tests_say(self):
        r = promtool("test", "rules", ALERT_TESTS.name, cwd=CHECK_DIR)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)
        seen = {}
        for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
            for t in case["alert_rule_test"]:
                seen.setdefault(t["alertname"], set()).add(bool(t["exp_alerts"]))
        self.assertEqual(seen, {rule["alert"]: {True, False} for rule in self.rules()})

    def test_a_broken_rule_fails_its_tests(self):
        """A copy of the rules with one threshold moved (the Redis memory alert at 95 %, not
        80 %) fails promtool's tests: they check the rules, not only their syntax."""
        tmp = Path(tempfile.mkdtemp(dir=self.tmp))
        text = ALERTS.read_text()
        broken = text.replace("(pixq_redis_maxmemory_bytes > 0) > 0.8", "(pixq_redis_maxmemory_"
                              "bytes > 0) > 0.95")
        self.assertNotEqual(broken, text)
        (tmp / "rules.yml").write_text(broken)
        tests = ALERT_TESTS.read_text().replace("../../deploy/prometheus/pixq-alerts.yml",
                                                "rules.yml")
        (tmp / "tests.yml").write_text(tests)
        r = promtool("test", "rules", "tests.yml", cwd=tmp)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("alertname: PixqRedisMemoryHigh", r.stdout + r.stderr)

    def exposed(self):
        """The families and label values of `pixq stats --prometheus` and of a worker's
        /metrics, once a payload that is not a job has died (the queue's `dead` counter)."""
        port = harness.reserved_port(self)
        self.push_job("{not json")
        self.start_worker("--metrics-addr", "127.0.0.1:%d" % port)
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 30, "the dead entry")
        stats = self.run_pixq("stats", "--prometheus")
        self.assertEqual(stats.returncode, 0, stats.stderr)
        url = "http://127.0.0.1:%d/metrics" % port

        def scraped():
            try:
                status, _, body = harness.http_request(url)
            except OSError:
                return None
            return body.decode() if status == 200 and b"pixq_lease_age_seconds " in body else None
        metrics = self.wait_until(scraped, 20, "the worker's metrics with a lease")
        fams = exposition_families(stats.stdout)
        for name, labels in exposition_families(metrics).items():
            self.assertNotIn(name, fams)
            fams[name] = labels
        return fams

    def test_every_metric_and_label_value_named_exists(self):
        """A metric renamed, or a label value gone, would leave an alert that never fires:
        every pixq_* name in the expressions is a family that pixq exposes, and every label
        value they match (= or !=, or each of =~'s or !~'s alternatives) one of its samples'
        (the test's Redis runs under noeviction)."""
        fams = self.exposed()
        named = 0
        for rule in self.rules():
            for name, selector in re.findall(r"\b(pixq_[a-z_]+)(\{[^}]*\})?", rule["expr"]):
                named += 1
                with self.subTest(alert=rule["alert"], metric=name):
                    self.assertIn(name, fams)
                    for label, op, value in re.findall(r'(\w+)(=~|!~|!=|=)"([^"]*)"', selector):
                        for v in value.split("|") if op.endswith("~") else [value]:
                            self.assertIn(v, fams[name].get(label, set()))
        self.assertGreaterEqual(named, len(self.rules()))

    def test_readme_alerts_are_the_rules(self):
        """README's "Watching the fleet" names the file, and each metric it says to alert on
        is in one of the rules, each alert of which it names."""
        section = readme_section("### Watching the fleet")
        self.assertIn("`deploy/prometheus/pixq-alerts.yml`", section)
        advice = section[section.index("Alert on"):section.index("The oldest job's age is")]
        exprs = " ".join(rule["expr"] for rule in self.rules())
        metrics = re.findall(r"`(pixq_[a-z_]+)", advice)
        self.assertGreaterEqual(len(metrics), 8, advice)
        for name in metrics:
            self.assertRegex(exprs, r"\b%s\b" % name)
        for rule in self.rules():
            self.assertIn("`%s`" % rule["alert"], section)


class ReadmeWhatIsTestedTest(unittest.TestCase):
    """README's "What is tested here and what is not": the commands it gives run tests that
    exist, and its figures are the tests' own."""

    @classmethod
    def setUpClass(cls):
        cls.section = readme_section("### What is tested here and what is not")

    def test_commands_and_figures(self):
        commands = re.findall(r"`meson test -C build (\w+)`", self.section)
        self.assertEqual(commands, ["deploy", "multihost"])
        r = run(["meson", "test", "-C", str(Path(CONFIG.worker).parents[1]), "--list"])
        self.assertEqual(r.returncode, 0, r.stderr)
        tests = {line.rsplit(" / ", 1)[-1] for line in r.stdout.splitlines()}
        for name in commands:
            self.assertIn(name, tests)
        self.assertRegex(self.section, r"`meson test -C build deploy` "
                         r"\(tests/integration/test_deploy\.py\)")
        exposure = float(re.search(r"exposure at most (\d+\.\d+)", self.section).group(1))
        self.assertEqual(exposure, MAX_EXPOSURE)
        deps = json.loads((CHECK_DIR / "package.json").read_text())["dependencies"]
        for name in re.findall(r"OpenAPI schemas\s+\(`([^`]+)`, `([^`]+)`", self.section)[0]:
            self.assertIn(name, deps)
        self.assertIn("the `dockerfile-utils` linter", self.section)
        self.assertIn("dockerfile-utils", deps)
        words = {"two": 2, "three": 3, "four": 4}
        hosts = re.search(r"scale-out test in (\w+) network namespaces", self.section).group(1)
        multihost = (REPO / "tests" / "integration" / "test_multihost.py").read_text()
        self.assertEqual(re.findall(r"(?m)^HOSTS = (\d+)$", multihost), [str(words[hosts])])

class ReadmeLicencesTest(unittest.TestCase):
    """README's "Licences of the test data" against the files in tests/data: each folder it
    names has the notes it points to, and every file in them is covered by a note (a file added
    without one ships with no stated origin or licence)."""

    DATA = REPO / "tests" / "data"

    @classmethod
    def setUpClass(cls):
        cls.section = readme_section("## Licences of the test data")

    def files(self, folder):
        return sorted(p.name for p in (self.DATA / folder).iterdir() if p.name != "README.md")

    def test_the_folders_it_names(self):
        named = re.findall(r"`tests/data/([^`]+)/`", self.section)
        self.assertEqual(sorted(named), ["aws-sig-v4-test-suite", "corpus", "images",
                                         "jobs/blitline"])
        for folder in named:
            self.assertTrue((self.DATA / folder).is_dir(), folder)

    def test_corpus_rows(self):
        """A row of corpus/README.md for each photo, with its real size, byte count and a
        licence README names (LGPLv3 / CC-BY-SA)."""
        self.assertIn("(LGPLv3 / CC-BY-SA, see its\nREADME)", self.section)
        rows = {}
        for line in (self.DATA / "corpus" / "README.md").read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("|") and len(cells) == 5 and "." in cells[0]:
                rows[cells[0]] = cells
        files = self.files("corpus")
        self.assertEqual(sorted(rows), files)
        for name in files:
            _, _, size, size_bytes, origin = rows[name]
            path = self.DATA / "corpus" / name
            self.assertEqual(int(size_bytes.replace(",", "")), path.stat().st_size, name)
            self.assertIn(size, name)
            self.assertRegex(origin, r"(LGPLv3|CC-BY-SA(-4\.0)?)$", name)

    def test_every_small_image_has_a_note(self):
        """Each file of images/ is named, or matched by a name or pattern, in its README."""
        text = (self.DATA / "images" / "README.md").read_text()
        self.assertIn("`tests/data/images/` small images derived from them or drawn for the "
                      "tests (see its\nREADME)", self.section)
        tokens = set(re.findall(r"`([a-z0-9][a-z0-9*.-]*)`", text))

        def covered(name):
            return any(fnmatch.fnmatch(name, t) or fnmatch.fnmatch(name, t + "-*")
                       or fnmatch.fnmatch(name, t + ".*") for t in tokens)

        files = self.files("images")
        self.assertGreater(len(files), 20)
        self.assertEqual([name for name in files if not covered(name)], [])

    def test_sigv4_suite_licence_and_blitline_jobs(self):
        suite = self.DATA / "aws-sig-v4-test-suite"
        self.assertIn("Amazon's SigV4 test suite (Apache 2.0, with its\nLICENSE and NOTICE)",
                      self.section)
        self.assertIn("Apache License\n                           Version 2.0",
                      (suite / "LICENSE").read_text())
        self.assertIn("Amazon.com, Inc.", (suite / "NOTICE").read_text())
        table = (self.DATA / "jobs" / "blitline" / "README.md").read_text()
        self.assertIn("published by Blitline", table)
        rows = re.findall(r"(?m)^\| (\S+\.json) \|", table)
        self.assertEqual(sorted(rows), self.files("jobs/blitline"))

def bootstrap_packages():
    """The Debian packages scripts/bootstrap installs (its `packages=(...)` list)."""
    text = (REPO / "scripts" / "bootstrap").read_text()
    block = re.search(r"(?ms)^packages=\((.*?)^\)", text).group(1)
    return block.split()


class ReadmeBuildingTest(unittest.TestCase):
    """README's "Building by hand": the packages it tells someone building without
    scripts/bootstrap to install. It named neither a compiler nor liblcms2-dev and zlib1g-dev,
    which worker/meson.build asks for, nor half the packages the tests use (valgrind, clang,
    djpeg...), while it said bootstrap installs "all of them"."""

    @classmethod
    def setUpClass(cls):
        cls.section = readme_section("## Building by hand")

    def build_list(self):
        m = re.search(r"Dependencies \(Debian 12 packages\): `([^`]+)`", self.section)
        self.assertIsNotNone(m, "README: the build's package list")
        return m.group(1).split()

    def test_the_build_list_has_what_meson_asks_for(self):
        named = set(self.build_list())
        for tool in ("build-essential", "meson", "ninja-build", "pkg-config"):
            self.assertIn(tool, named)
        for name, pkg in meson_dependency_packages(self).items():
            self.assertIn(pkg, named, "meson.build needs %s, from %s, which README's list of "
                          "build dependencies does not name" % (name, pkg))

    def test_every_package_bootstrap_installs_is_named(self):
        """Each package in the section's build list or its backquoted names is one bootstrap
        installs (as it says), and each one bootstrap installs is named there."""
        listed = set(self.build_list())
        quoted = set(re.findall(r"`([a-z0-9][a-z0-9.+-]+)`", self.section))
        wanted = set(bootstrap_packages())
        self.assertGreater(len(wanted), 20)
        self.assertEqual(sorted(listed - wanted), [], "named in the build list, not installed "
                         "by scripts/bootstrap")
        self.assertEqual(sorted(wanted - listed - quoted), [],
                         "installed by scripts/bootstrap, not named in README")
        self.assertIn("`scripts/bootstrap` installs all of them", self.section)

    def test_commands_as_written(self):
        """The setup lines are the ones bootstrap runs (same options), and the unit suite the
        first line runs exists."""
        block = re.search(r"(?s)```sh\n(.*?)```", self.section).group(1)
        lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
        self.assertEqual(lines[0], "meson setup build && ninja -C build && "
                         "meson test -C build --suite unit")
        asan = lines[1].split()
        self.assertEqual(asan[:3], ["meson", "setup", "build-asan"])
        boot = (REPO / "scripts" / "bootstrap").read_text()
        self.assertIn("build build-asan %s\n" % " ".join(asan[3:]), boot)
        # the build directory holds the unit suite the line runs
        r = run(["meson", "test", "-C", str(Path(CONFIG.worker).parents[1]), "--list",
                 "--suite", "unit"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(len(r.stdout.split()), 5, r.stdout)

    def test_bootstrap_help_is_its_whole_header(self):
        """scripts/bootstrap --help prints the comment at its top, every line of it (it printed
        a fixed range of lines, which had lost the last step, the builds, when the comment
        grew), and exits 0; an unknown argument exits 2 with the same text."""
        script = REPO / "scripts" / "bootstrap"
        header = []
        for line in script.read_text().splitlines()[1:]:
            if not line.startswith("#"):
                break
            header.append(re.sub(r"^# ?", "", line))
        self.assertIn("ninja", header[-1] + header[-2])
        r = run([str(script), "--help"], env=clean_env(), timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), header)
        r = run([str(script), "--no-such-option"], env=clean_env(), timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown argument: --no-such-option", r.stderr)
        self.assertEqual(r.stdout.splitlines(), header)

class ReadmeRedisKeysTest(PixqTestCase):
    """README's "Redis keys" against a real worker's Redis: the type of every key in its table
    that a job leaves behind, which of them expire, and the redis-cli commands it gives an
    operator, run as written (with the test Redis's address added)."""

    s3_server = "stub"
    start_worker_in_setup = False
    TYPES = {"list": "list", "sorted set": "zset", "hash": "hash", "string": "string"}

    @classmethod
    def setUpClass(cls):
        text = (REPO / "README.md").read_text()
        start = text.index("\n## Redis keys\n")
        cls.section = text[start:text.index("\n## ", start + 1)]

    def redis_cli(self, command, cwd=None):
        """A `redis-cli ...` command line of README, against the test's Redis: stdout."""
        argv = shlex.split(command)
        self.assertEqual(argv[0], "redis-cli", command)
        argv[1:1] = ["-h", harness.LOOPBACK, "-p", str(self.redis_server.port)]
        r = run(argv, cwd=cwd, timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, ""), command)
        return r.stdout

    def run_jobs(self):
        """One job that succeeds (an upload, a postback) and one payload that is not a job."""
        self.src.add("/q.png", (CONFIG.data / "images" / "quadrants-64x64.png").read_bytes())
        job = self.make_job(self.src.url("/q.png"), "out/q.png", params={"width": 16},
                            job_id="keys-1")
        self.push_job(job)
        self.assertNotIn("errors", self.wait_for_postback(job_id="keys-1").json["results"])
        self.push_job("{not json")
        self.wait_until(lambda: self.redis.llen(self.key("dead")) == 1, 30, "the dead entry")
        self.wait_until(lambda: self.redis.exists(self.key("tput")), 10, "the tput key")

    def test_key_types_and_expiry(self):
        worker = self.start_worker()
        self.run_jobs()
        rows = re.findall(r"(?m)^\| `(pixq:[^`]+)` \| ([a-z ]+) \|", self.section)
        self.assertGreaterEqual(len(rows), 17, rows)
        seen = {}
        for pattern, kind in rows:
            glob = re.sub(r"<[a-z_]+>", "*", pattern.replace("{Q}", "{%s}" % self.queue))
            for name in self.redis.execute("KEYS", glob):
                self.assertEqual(self.redis.type(name), self.TYPES[kind], (pattern, name))
                seen[pattern] = name
        self.assertLessEqual({"pixq:{Q}:workers", "pixq:{Q}:job:<id>", "pixq:rl:{<bucket>}",
                              "pixq:{Q}:epoch", "pixq:{Q}:result:<id>", "pixq:{Q}:dead",
                              "pixq:{Q}:stats", "pixq:{Q}:tput"}, set(seen))
        # "expires", "never expires", "after about 120 idle seconds"
        for pattern in ("pixq:{Q}:job:<id>", "pixq:{Q}:result:<id>", "pixq:{Q}:tput"):
            self.assertGreater(self.redis.ttl(seen[pattern]), 0, pattern)
        self.assertLessEqual(self.redis.ttl(seen["pixq:{Q}:tput"]), 120)
        self.assertEqual(self.redis.ttl(seen["pixq:{Q}:epoch"]), -1)
        # workers: scored by the lease deadline, ms of Redis's clock (PIXQ_LEASE_MS, 20 s, ahead)
        now_s, now_us = self.redis.execute("TIME")
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        wid, score = self.redis.zrange(self.key("workers"), withscores=True)
        self.assertTrue(now_ms < float(score) <= now_ms + 20000, float(score) - now_ms)
        self.assertEqual(wid, worker.log_events("worker_start")[0]["worker"])
        # reaped: "reaped or stopped worker id", once it stops (SIGTERM, as systemd stops it)
        self.assertEqual(self.redis.exists(self.key("reaped")), 0)
        self._stop_programs()
        self.assertEqual(self.redis.zrange(self.key("workers")), [])
        self.assertEqual(self.redis.type(self.key("reaped")), "zset")
        self.assertEqual(self.redis.zrange(self.key("reaped")), [wid])

    def test_epoch_is_written_only_if_missing(self):
        """SET NX: a worker that overwrote the queue's token would make every other worker
        take its reservations for data Redis lost, and keep their jobs a second time."""
        self.redis.set(self.key("epoch"), "token-of-the-data")
        self.start_worker()
        self.run_jobs()
        self.assertEqual(self.redis.get(self.key("epoch")), "token-of-the-data")

    def test_watch_commands_as_written(self):
        self.start_worker()
        self.run_jobs()
        watch = re.search(r"Watch a queue with plain `redis-cli`: (.+?)\.\n", self.section, re.S)
        self.assertIsNotNone(watch, "README's watch commands")
        commands = re.findall(r"`(redis-cli [^`]+)`", watch.group(1))
        self.assertEqual([c.split()[1] for c in commands], ["LLEN", "LRANGE", "HGETALL"])
        self.assertEqual(self.redis_cli(commands[0]), "0\n")
        dead = self.redis_cli(commands[1]).splitlines()
        self.assertEqual(len(dead), 1, dead)
        entry = json.loads(dead[0])  # a payload that is not a job: no job_id
        self.assertEqual(sorted(entry), ["attempts", "error", "failed_at", "job"])
        self.assertEqual((entry["job"], entry["attempts"]), ("{not json", 1))
        lines = self.redis_cli(commands[2]).splitlines()
        stats = dict(zip(lines[::2], lines[1::2]))
        stats.pop("uploaded_bytes", None)  # added at the next heartbeat
        # a payload that is not a job counts only as failed and dead, not as received
        self.assertEqual(stats, {"received": "1", "succeeded": "1", "failed": "1", "dead": "1"})

    def test_task_mark_migration_as_written(self):
        """The upgrade past `pixq-task:`: README's command, from the repository's top folder,
        with every worker stopped."""
        command = re.search(r"`(redis-cli --eval deploy/migrate-task-mark\.lua [^`]+)`",
                            self.section).group(1)
        old_upload, old_pill = '{"pixq_upload":{"job_id":"a"}}', '{"pixq_poison":"{}"}'
        self.redis.execute("ZADD", self.key("delayed"), 5, old_upload)
        self.redis.rpush(self.key("jobs"), old_pill)
        self.assertEqual(self.redis_cli(command, cwd=REPO), "2\n")
        self.assertEqual(self.redis.zrange(self.key("delayed"), withscores=True),
                         ["pixq-task:" + old_upload, "5"])
        self.assertEqual(self.redis.lrange(self.key("jobs")), ["pixq-task:" + old_pill])
        self.assertEqual(self.redis_cli(command, cwd=REPO), "0\n")


class QuickstartTest(unittest.TestCase):
    """deploy/quickstart.sh --keep, then the stop command it prints: nothing it started is left
    running (it found a worker and the helper servers left behind, issue: quickstart stop)."""

    def processes_of(self, directory, redis_url):
        """Pids of the processes whose command line names `directory` or whose environment
        holds `redis_url` (the worker's)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
                environ = Path("/proc", entry, "environ").read_bytes()
                state = Path("/proc", entry, "stat").read_text().split(") ", 1)[1]
            except OSError:
                continue
            if state.startswith("Z"):
                continue
            if directory.encode() in cmdline or \
                    ("PIXQ_REDIS_URL=" + redis_url).encode() in environ.split(b"\0"):
                found.append(int(entry))
        return found

    def kill_leftovers(self, directory, redis_url):
        for pid in self.processes_of(directory, redis_url):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def test_without_keep_it_prints_the_job_and_leaves_nothing(self):
        """README's quick start: the job resizes the photo to 800 px wide and the script prints
        the postback, the stored object's URL and size; without --keep it then stops all it
        started and removes its folder (only --keep's stop command was checked)."""
        out_path = Path(tempfile.mkdtemp(prefix="pixq-qs-test-")) / "out"
        self.addCleanup(shutil.rmtree, out_path.parent, True)
        with open(out_path, "w") as out:
            r = subprocess.run([str(DEPLOY / "quickstart.sh")], env=clean_env(), stdout=out,
                               stderr=subprocess.STDOUT, timeout=300)
        text = out_path.read_text()
        directory = re.search(r"^== submitting (/tmp/pixq-quickstart\.\w+)/job\.json ", text,
                              re.M).group(1)
        redis_url = re.search(r"^PIXQ_REDIS_URL=(\S+)$", text, re.M).group(1)
        self.addCleanup(shutil.rmtree, directory, True)
        self.addCleanup(self.kill_leftovers, directory, redis_url)
        self.assertEqual(r.returncode, 0, text)
        postback = re.search(r"(?ms)^== postback received by \S+\n(\{.*?^\})\n", text)
        self.assertIsNotNone(postback, text)
        results = json.loads(postback.group(1))["results"]
        self.assertNotIn("errors", results)
        image = results["images"][0]
        self.assertEqual(image["meta"]["width"], 800)
        self.assertEqual(re.findall(r"(?m)^url:  (\S+)$", text), [image["s3_url"]])
        size = re.search(r"(?m)^size: (\d+) bytes$", text)
        self.assertIsNotNone(size, text)
        self.assertGreater(int(size.group(1)), 1000)
        self.assertRegex(text, r"(?m)^image: JPEG 800x\d+$")
        self.assertNotIn("stop them all with", text)
        self.assertFalse(Path(directory).exists(), "its folder is left")
        self.assertEqual(self.processes_of(directory, redis_url), [])

    def test_printed_stop_command_ends_everything(self):
        out_path = Path(tempfile.mkdtemp(prefix="pixq-qs-test-")) / "out"
        self.addCleanup(shutil.rmtree, out_path.parent, True)
        with open(out_path, "w") as out:  # a file: the kept worker holds its stdout open
            r = subprocess.run([str(DEPLOY / "quickstart.sh"), "--keep"], env=clean_env(),
                               stdout=out, stderr=subprocess.STDOUT, timeout=300)
        text = out_path.read_text()
        m = re.search(r"stop them all with: (deploy/stack\.sh stop (/tmp/pixq-quickstart\.\w+))$",
                      text.rstrip(), re.M)
        self.assertIsNotNone(m, text)
        directory = m.group(2)
        self.addCleanup(shutil.rmtree, directory, True)
        env = dict(line.split("=", 1)
                   for line in Path(directory, "stack.env").read_text().splitlines())
        redis_url = env["PIXQ_REDIS_URL"]
        self.addCleanup(self.kill_leftovers, directory, redis_url)
        self.addCleanup(subprocess.run, [str(DEPLOY / "stack.sh"), "stop", directory],
                        env=clean_env(), stdout=subprocess.DEVNULL, timeout=120)
        self.assertEqual(r.returncode, 0, text)
        self.assertIn('"s3_url"', text)  # the job ran
        # the line that says how to reach them, run as printed, lets the CLI see the stack
        reach = re.search(r"left running; to reach them: (.+)$", text, re.M)
        self.assertIsNotNone(reach, text)
        stats = subprocess.run(["bash", "-c", "%s; build/producer/pixq stats --json"
                                % reach.group(1)], cwd=REPO, env=clean_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(stats.returncode, 0, stats.stderr)
        self.assertIn("default", json.dumps(json.loads(stats.stdout)))
        started = set(self.processes_of(directory, redis_url))  # the worker, 2 helpers, s3rver
        started |= {int(Path(directory, f).read_text()) for f in ("redis.pid", "s3rver.pid")}
        self.assertEqual(len(started), 5, started)

        stop = subprocess.run(m.group(1).split(), cwd=REPO, env=clean_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(stop.returncode, 0, stop.stderr)
        deadline = time.monotonic() + 10
        left = started
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = {pid for pid in started if not pid_gone(pid)}
        self.assertEqual({pid: Path("/proc", str(pid), "cmdline").read_bytes() for pid in left},
                         {})
        self.assertEqual(self.processes_of(directory, redis_url), [])


if __name__ == "__main__":
    harness.main()
