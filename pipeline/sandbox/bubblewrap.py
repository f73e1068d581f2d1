"""The bubblewrap command line: what code under bubblewrap sees, and whether it works here.

Code under bubblewrap gets its own user, PID, IPC, UTS, cgroup and network namespaces, a
read-only view of /usr, a few files of /etc and the interpreter, its working directory at
/sandbox and a private /tmp. Its network namespace holds only a loopback of its own: no
route to the host's services or to the internet, unless a command asks for the host's
network (pip).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.sandbox.processes import base_env

MOUNT = "/sandbox"  # the working directory as the code sees it under bubblewrap
VENV_MOUNT = "/venv"  # the service's virtualenv, mounted away from the project directory
_MB = 1024 * 1024

# Only what Python, its libraries and name resolution read from /etc. Not all of /etc: the
# code's uid maps to the service's, so it could read files such as /etc/shadow that the
# service's user owns, or a config file with the service's tokens.
_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "matplotlibrc",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki/ca-trust",
    "pki/tls/certs",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
)


@dataclass(frozen=True)
class Bubblewrap:
    """How to run a command under bubblewrap on this host."""

    executable: str
    python: str  # the interpreter's path inside the sandbox
    python_binds: tuple[tuple[str, str], ...]  # (host, inside), read-only
    disable_userns: bool  # bwrap >= 0.8
    tmpfs_size: bool  # bwrap >= 0.7

    def argv(self, *, work: str, env: Mapping[str, str], network: bool, tmp_mb: int) -> list[str]:
        argv = [self.executable, "--die-with-parent", "--unshare-all", "--new-session"]
        # A user namespace so the code is not uid 0 (root could read /etc/shadow), no caps.
        argv += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]
        if self.disable_userns:
            argv.append("--disable-userns")
        if network:
            argv.append("--share-net")
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in _ETC:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]  # follows symlinks
        for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(name):
                argv += ["--symlink", os.readlink(name), name]
            elif os.path.isdir(name):
                argv += ["--ro-bind", name, name]
        for host, inside in self.python_binds:
            argv += ["--ro-bind", host, inside]
        argv += ["--bind", work, MOUNT, "--chdir", MOUNT, "--proc", "/proc", "--dev", "/dev"]
        if self.tmpfs_size:
            argv += ["--size", str(tmp_mb * _MB)]
        argv += ["--tmpfs", "/tmp", "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        return [*argv, "--"]


def _under_usr(path: str) -> bool:
    return path == "/usr" or path.startswith("/usr/")


def _python_layout() -> tuple[str, tuple[tuple[str, str], ...]]:
    """Mount only the virtualenv and the base interpreter, never the project directory."""
    executable = os.path.abspath(sys.executable)
    binds: list[tuple[str, str]] = []
    if not _under_usr(sys.base_prefix):
        binds.append((sys.base_prefix, sys.base_prefix))  # the venv's python links into it
    if sys.prefix == sys.base_prefix:
        return executable, tuple(binds)
    venv = os.path.abspath(sys.prefix)
    binds.append((venv, VENV_MOUNT))
    if executable.startswith(venv + os.sep):
        executable = VENV_MOUNT + executable[len(venv) :]
    return executable, tuple(binds)


def probe_bubblewrap(executable: str) -> tuple[Bubblewrap | None, str]:
    """bubblewrap as this host allows it, or None and why not."""
    try:
        helptext = subprocess.run(
            [executable, "--help"], capture_output=True, text=True, timeout=10
        ).stdout
        python, binds = _python_layout()
        bwrap = Bubblewrap(
            executable=executable,
            python=python,
            python_binds=binds,
            disable_userns="--disable-userns" in helptext,
            tmpfs_size="--size" in helptext,
        )
        with tempfile.TemporaryDirectory() as work:
            env = base_env(None, path=os.path.dirname(python), home=MOUNT, tmp="/tmp")
            argv = bwrap.argv(work=work, env=env, network=False, tmp_mb=16)
            probe, interfaces = _run_probe([*argv, python, "-c"])
    except (OSError, subprocess.SubprocessError) as error:
        return None, str(error)
    if probe.returncode != 0:
        return None, probe.stderr.decode("utf-8", "replace").strip()[-2000:]
    if interfaces != "lo":
        # The app's port forwarding relies on an empty namespace and a passed descriptor.
        return None, f"the sandbox's network namespace is not empty or unreachable: {interfaces!r}"
    return bwrap, ""


# What the port forwarding needs (forwarding.py): a descriptor passed in, a loopback to
# listen on, and nothing else in the network namespace.
_PROBE = """
import os, socket, sys
socket.create_server(("127.0.0.1", 0)).close()
os.write(int(sys.argv[1]), ",".join(sorted(n for _, n in socket.if_nameindex())).encode())
"""


def _run_probe(argv: list[str]) -> tuple[subprocess.CompletedProcess[bytes], str]:
    read_end, write_end = os.pipe()
    try:
        probe = subprocess.run(
            [*argv, _PROBE, str(write_end)],
            capture_output=True,
            timeout=30,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        write_end = -1
        with os.fdopen(read_end, "rb") as pipe:
            read_end = -1
            return probe, pipe.read(256).decode("utf-8", "replace")
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
