#!/usr/bin/python3
"""Run a program inside the sandbox a systemd unit file describes, without systemd.

    sandbox.py UNIT_FILE -- PROGRAM [ARG]...

This machine has no systemd running (no `systemd-run`), so tests/integration/test_deploy.py uses
this to check that pixq-worker (and ImageMagick inside it) works under the sandboxing of
deploy/systemd/pixq-worker@.service. It reads these settings of the unit's [Service] section and
applies them the way systemd does, then execs PROGRAM:

* ProtectSystem=strict: every mount read-only (in a private mount namespace), except /proc,
  /sys and /dev, which get their own treatment below; ProtectHome=yes: empty /home, /root and
  /run/user; PrivateTmp=yes: a fresh /tmp and /var/tmp; PrivateDevices=yes: a /dev with only
  null, zero, full, random, urandom and tty; ProcSubset=pid / ProtectProc=invisible: a /proc of
  processes only, other users' processes hidden.
* DynamicUser=yes: an unprivileged uid and gid (61234) without supplementary groups;
  CapabilityBoundingSet= (empty): the bounding set emptied.
* NoNewPrivileges=yes; MemoryDenyWriteExecute=yes: the kernel's PR_SET_MDWE (no mapping that is
  writable and executable, no making a writable mapping executable).
* SystemCallFilter= (allow-list with group names, then ~ lines removing from it, the groups
  expanded by `systemd-analyze syscall-filter`), SystemCallErrorNumber= (default: kill the
  process), SystemCallArchitectures=native, RestrictAddressFamilies= (other families refused):
  one seccomp filter (python3-seccomp), loaded last, just before the exec.

Settings it does not emulate (resource limits, RestrictNamespaces, ProtectKernel*, ...) are not
needed to judge whether the program runs; a setting this script does not know fails loudly, so
a new sandboxing line in the unit is not silently ignored. Must run as root.
"""

import ctypes
import errno
import os
import subprocess
import sys

SANDBOX_UID = 61234  # in systemd's DynamicUser range (61184-65519)

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18

# Settings applied here, or deliberately not emulated because they only restrict further what
# the program could do (and a program that runs without them runs with them).
APPLIED = {
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProcSubset", "ProtectProc",
    "DynamicUser", "CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges",
    "MemoryDenyWriteExecute", "SystemCallFilter", "SystemCallErrorNumber",
    "SystemCallArchitectures", "RestrictAddressFamilies", "UMask",
}
NOT_EMULATED = {
    "Type", "EnvironmentFile", "Environment", "ExecStart", "Restart", "RestartSec",
    "RestartPreventExitStatus", "KillSignal",
    "KillMode", "TimeoutStopSec", "SuccessExitStatus", "MemoryHigh", "MemoryMax", "TasksMax",
    "LimitNOFILE", "LimitCORE", "PrivateIPC", "PrivateUsers", "PrivateMounts", "ProtectClock",
    "ProtectHostname", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "RemoveIPC", "DevicePolicy",
}
ADDRESS_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16,
                    "AF_PACKET": 17}

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]


def die(msg):
    sys.stderr.write("sandbox.py: %s\n" % msg)
    sys.exit(111)


def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        die("%s: %s" % (what, os.strerror(e)))


def mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    check(libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)),
          "mount %s on %s" % (fstype or src, target))


def parse_service(path):
    """[(key, value)] of the unit's [Service] section, in order (keys repeat)."""
    items, section = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            items.append((key.strip(), value.strip()))
    return items


# ---------------------------------------------------------------------------------------------
# system call filter


def syscall_groups():
    """{"@group": [members]} from `systemd-analyze syscall-filter`."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, check=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            groups[current].append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for name in names:
        if name.startswith("@"):
            if name not in groups:
                die("unknown system call group %s" % name)
            if name not in seen:
                seen.add(name)
                out |= expand(groups[name], groups, seen)
        else:
            out.add(name)
    return out


def allowed_syscalls(lines):
    """The allow-list of SystemCallFilter= lines (the first without ~; then ~ lines remove)."""
    groups = syscall_groups()
    allowed = None
    for value in lines:
        deny = value.startswith("~")
        names = value.lstrip("~").split()
        if allowed is None:
            if deny:
                die("a deny-list SystemCallFilter is not emulated")
            allowed = expand(names, groups) | {"execve"}
        elif deny:
            allowed -= expand(names, groups)
        else:
            allowed |= expand(names, groups)
    return allowed


def load_filter(settings):
    try:
        import seccomp  # python3-seccomp (scripts/bootstrap installs it)
    except ImportError:
        die("python3-seccomp is missing: run scripts/bootstrap")

    lines = [v for k, v in settings if k == "SystemCallFilter" and v]
    errno_name = dict(settings).get("SystemCallErrorNumber")
    families = dict(settings).get("RestrictAddressFamilies")
    if not lines and not families:
        return
    deny = seccomp.ERRNO(getattr(errno, errno_name)) if errno_name else seccomp.KILL_PROCESS
    f = seccomp.SyscallFilter(defaction=deny if lines else seccomp.ALLOW)
    allowed = allowed_syscalls(lines) if lines else set()
    allowed.discard("socket")
    for name in sorted(allowed):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # not a system call of this architecture (arm_fadvise64_64...)
    for fam in (families or "").split():
        if fam not in ADDRESS_FAMILIES:
            die("address family %s unknown to sandbox.py" % fam)
        f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, ADDRESS_FAMILIES[fam]))
    if not families:
        f.add_rule(seccomp.ALLOW, "socket")
    f.load()


# ---------------------------------------------------------------------------------------------
# file system


def mount_points():
    points = []
    for line in open("/proc/self/mountinfo", encoding="utf-8"):
        fields = line.split()
        points.append((fields[4].replace("\\040", " "), fields[5].split(",")))
    return points


def protect_system():
    """ProtectSystem=strict: every mount read-only, except the API file systems."""
    for point, opts in mount_points():
        if point.startswith(("/proc", "/sys", "/dev")) or "ro" in opts:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
            if opt in opts:
                flags |= bit
        mount(None, point, None, flags)


def tmpfs(path, mode="0755"):
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=%s,size=2g" % mode)


def private_devices():
    """A /dev with the harmless devices only, bound from the real /dev."""
    keep = ("null", "zero", "full", "random", "urandom", "tty")
    # Built in a tmpfs of this mount namespace (on /tmp, covered by PrivateTmp's later).
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID, "mode=0755")
    os.mkdir("/tmp/dev")
    for name in keep:
        open("/tmp/dev/" + name, "w").close()
        mount("/dev/" + name, "/tmp/dev/" + name, None, MS_BIND)
    mount("/tmp/dev", "/dev", None, MS_BIND | MS_REC)


def setup_mounts(settings):
    s = dict(settings)
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    if s.get("PrivateDevices") == "yes":
        private_devices()
    if s.get("ProcSubset") == "pid" or s.get("ProtectProc") in ("invisible", "noaccess"):
        opts = []
        if s.get("ProcSubset") == "pid":
            opts.append("subset=pid")
        if s.get("ProtectProc") in ("invisible", "noaccess"):
            opts.append("hidepid=" + s["ProtectProc"])
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ",".join(opts))
    if s.get("ProtectSystem") == "strict":
        protect_system()
    elif s.get("ProtectSystem"):
        die("ProtectSystem=%s is not emulated" % s["ProtectSystem"])
    if s.get("ProtectHome") == "yes":
        for path in ("/home", "/root", "/run/user"):
            tmpfs(path, "0755")
    if s.get("PrivateTmp") == "yes" or s.get("DynamicUser") == "yes":
        tmpfs("/tmp", "1777")
        tmpfs("/var/tmp", "1777")


# ---------------------------------------------------------------------------------------------
# credentials and process flags


def drop_privileges(settings):
    s = dict(settings)
    if s.get("CapabilityBoundingSet", None) == "":
        for cap in range(64):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
                die("PR_CAPBSET_DROP %d: %s" % (cap, os.strerror(ctypes.get_errno())))
    if s.get("UMask"):
        os.umask(int(s["UMask"], 8))
    if s.get("DynamicUser") == "yes":
        os.setgroups([])
        os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    if s.get("NoNewPrivileges") == "yes" or s.get("DynamicUser") == "yes":
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    if s.get("MemoryDenyWriteExecute") == "yes":
        check(libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0),
              "PR_SET_MDWE (MemoryDenyWriteExecute; Linux 6.3 or later)")


def main(argv):
    if len(argv) < 4 or argv[2] != "--":
        die("usage: sandbox.py UNIT_FILE -- PROGRAM [ARG]...")
    if os.geteuid() != 0:
        die("must run as root")
    settings = parse_service(argv[1])
    for key, _ in settings:
        if key not in APPLIED and key not in NOT_EMULATED:
            die("the unit sets %s, which sandbox.py does not know: add it to APPLIED (and "
                "apply it) or NOT_EMULATED" % key)
    if dict(settings).get("SystemCallArchitectures", "native") != "native":
        die("SystemCallArchitectures other than native is not emulated")
    program = os.path.abspath(argv[3])  # the service runs in / (WorkingDirectory)
    # opened now and run through its descriptor (fexecve): the program under test may live
    # where the sandbox hides it (a clone under /tmp or /root) or where the sandbox user may
    # not look; the unit's own ExecStart is /usr/local/bin, which the sandbox keeps visible
    fd = os.open(program, os.O_RDONLY | os.O_CLOEXEC)
    setup_mounts(settings)
    drop_privileges(settings)
    os.chdir("/")
    load_filter(settings)  # last: from here on only the filter's system calls work
    os.execve(fd, [program] + argv[4:], os.environ)


if __name__ == "__main__":
    main(sys.argv)
