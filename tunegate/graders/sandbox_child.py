"""The child side of the Python grader's sandbox (``tunegate.graders.sandbox``), run as
``python -I -B sandbox_child.py``: standard library only, and nothing of tunegate imported.

In order, before the user's code runs: resource limits (address space, CPU seconds, file size,
open files, processes), one CPU, its own network namespace where the kernel grants one (no
interface but a down loopback: no connection can leave), then an audit hook that refuses what
the limits cannot express — sockets, new processes, foreign calls through ctypes, signals to
other processes, and opening, listing or changing files outside the folder it runs in, except
reading Python's own installation (to import the standard library and site-packages). Then it
compiles the source, calls ``grade(sample, item)`` and writes ``{"score": ...}`` or
``{"error": ..., "details": ...}`` as JSON to the result pipe it was given.
"""

import contextlib
import json
import math
import os
import resource
import signal
import sys
import traceback
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_REFUSED_EVENTS = frozenset({
    "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg",
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
    "subprocess.Popen", "pty.spawn", "ctypes.call_function", "ctypes.dlsym", "os.killpg",
    "urllib.Request", "ftplib.connect", "http.client.connect", "smtplib.connect",
    "webbrowser.open",
})
# Events whose first argument is a path the code would change.
_CHANGES = frozenset({"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime",
                      "os.truncate", "os.symlink", "os.link", "os.rename", "shutil.rmtree",
                      "shutil.move", "shutil.copyfile", "shutil.copytree", "os.mkfifo",
                      "os.mknod", "os.setxattr", "os.removexattr"})
_LISTINGS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.chdir"})
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    result = os.fdopen(request["result_fd"], "w", encoding="utf-8")
    home = os.path.realpath(request["folder"])
    _limit(request["limits"])
    isolated = _leave_network()
    readable = _python_roots() + [home, "/dev/null", "/dev/urandom", "/dev/zero",
                                  "/usr/share/zoneinfo", "/etc/localtime", "/proc/self/"]
    sys.addaudithook(_guard(home, readable))
    answer = _run(request["source"], request["sample"], request["item"])
    answer["network_namespace"] = isolated
    result.write(json.dumps(answer))
    result.close()


def _limit(limits: dict) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too large file is an error, not a death
    seconds = max(1, math.ceil(limits["seconds"]))
    for kind, value in ((resource.RLIMIT_AS, limits["memory_bytes"]),
                        (resource.RLIMIT_CPU, seconds),
                        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
                        (resource.RLIMIT_NOFILE, limits["open_files"]),
                        (resource.RLIMIT_CORE, 0),
                        # Enforced for users other than root (root is held by the audit hook).
                        (resource.RLIMIT_NPROC, 0)):
            hard = value + 1 if kind == resource.RLIMIT_CPU else value
            resource.setrlimit(kind, (value, hard))
    with contextlib.suppress(AttributeError, OSError):
        # One core, a different one for concurrent graders (spread by process id).
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[os.getpid() % len(cores)]})


def _leave_network() -> bool:
    """A network namespace of its own: as root directly, else inside a user namespace where
    unprivileged ones are allowed. False where neither is (the audit hook still refuses
    sockets)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    return any(libc.unshare(flags) == 0
               for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET))


def _python_roots() -> list:
    """Python's installation and its site-packages: what ``import`` has to read."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for entry in sys.path:
        if entry and any(os.path.realpath(entry).startswith(os.path.realpath(root))
                         for root in tuple(roots)):
            roots.add(entry)
    return sorted({os.path.realpath(root) for root in roots})


def _inside(path: Any, roots: list) -> bool:
    if isinstance(path, int):
        return True  # an already open descriptor
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        path = os.fspath(path)
    real = os.path.realpath(path)
    return any(real == root.rstrip("/") or real.startswith(root.rstrip("/") + "/")
               for root in roots)


def _guard(home: str, readable: list):
    writable = [home, "/dev/null"]

    def hook(event: str, args: tuple) -> None:
        if event in _REFUSED_EVENTS:
            raise PermissionError(f"the Python grader's sandbox refuses {event}")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if not _inside(path, writable if writes else readable):
                raise PermissionError(
                    f"the Python grader's sandbox refuses to {'write' if writes else 'read'} "
                    f"{path!r}: only its own folder ({home}) is open to it")
        elif event in _CHANGES:
            for path in args[:2] if event in ("os.rename", "os.link", "os.symlink",
                                               "shutil.move", "shutil.copyfile",
                                               "shutil.copytree") else args[:1]:
                if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path, writable):
                    raise PermissionError(f"the Python grader's sandbox refuses {event} "
                                          f"outside its own folder: {path!r}")
        elif event in _LISTINGS and args and args[0] is not None:
            if not _inside(args[0], readable):
                raise PermissionError(f"the Python grader's sandbox refuses {event} of "
                                      f"{args[0]!r}")
        elif event == "os.kill" and args[0] != os.getpid():
            raise PermissionError("the Python grader's sandbox refuses signals to other "
                                  "processes")
    return hook


def _run(source: str, sample: dict, item: dict) -> dict:
    namespace = {"__name__": "grader"}
    try:
        exec(compile(source, "grader.py", "exec"), namespace)  # noqa: S102 - the sandbox's job
        grade = namespace.get("grade")
        if not callable(grade):
            return {"error": "no_grade", "details": "the source defines no grade(sample, item)"}
        value = grade(sample, item)
    except BaseException as failure:  # noqa: BLE001 - what the user's code raises is its error
        return {"error": "exception", "details": _clipped(_user_traceback(failure))}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {"error": "not_a_number",
                "details": f"grade() returned {type(value).__name__}, not a number"}
    if not math.isfinite(value):
        return {"error": "not_a_number", "details": f"grade() returned {value}"}
    return {"score": float(value)}


def _user_traceback(failure: BaseException) -> str:
    """The traceback without this file's frames (the sandbox's, not the user's)."""
    frames = [frame for frame in traceback.extract_tb(failure.__traceback__)
              if frame.filename != __file__]
    return "".join(["Traceback (most recent call last):\n",
                    *traceback.format_list(frames),
                    *traceback.format_exception_only(type(failure), failure)])


def _clipped(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


if __name__ == "__main__":
    main()
