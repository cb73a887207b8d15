"""The workspace's warm runner: commands that run flows start with every library imported.

A cold `unlearn-ops forget` spends about 9 s importing great-expectations, MLflow, torch
and Prefect before any work (docs/COSTS.md, issue 15). The warm runner pays that once per
workspace: a process in the background that imports them and then waits on a Unix socket.
For each command it forks a child, a copy of itself with every module loaded, and the
child runs the command exactly as a new process would, on the caller's terminal (the
client passes its stdin, stdout and stderr), in the caller's directory and environment.
The client forwards Ctrl-C and other signals to the child and exits with its status.
Nothing is shared between commands but imported code: each command is its own process.

Only `train`, `forget`, `rollback` and `retrain-exact` go through it (:data:`COMMANDS`),
and only from a real command process (not when Prefect is already imported, as in tests
or an application embedding us). The runner is started on first use, like the workspace's
Prefect server, and recorded in `WS/.unlearn-ops/warm-runner.json` with a stamp of the
code and the environment it imported with. A command whose stamp differs (other code
installed, another environment) replaces it; a runner that does not start leaves the
command to run here, with one line on stderr. It exits after an hour without commands or
when its workspace is gone; `unlearn-ops server stop` stops it with the Prefect server.
`UNLEARN_OPS_WARM_RUNNER=false` turns it off.

The socket lives in a folder only the user can open (`$TMPDIR/unlearn-ops-UID`, mode 0700),
and the runner also checks each caller's uid: it runs commands for its own user only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = [
    "COMMANDS",
    "RECORD",
    "WarmRunner",
    "delegate",
    "read_exactly",
    "read_record",
    "receive_message",
    "running_runner",
    "send_message",
    "stamp",
    "state_dir",
    "stop_runner",
]

# The commands that run flows, and so pay the heavy imports.
COMMANDS = frozenset({"train", "forget", "rollback", "retrain-exact"})
_START_TIMEOUT = 180.0
RECORD = "warm-runner.json"
_LOG = "warm-runner.log"
_LOCK = "warm-runner.lock"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Variables that differ between shells without changing what a process imports.
_VOLATILE = ("PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "PS1", "PS2", "LS_COLORS")
_VOLATILE_PREFIXES = ("TERM", "COLORTERM", "SSH_", "TMUX", "PYTEST_", "HISTFILE", "WINDOWID")


@dataclass(frozen=True)
class WarmRunner:
    """A warm runner serving one workspace.

    Attributes:
        pid: its process id.
        started_at: when that process started (tells it from a later one with its pid).
        socket: the Unix socket it accepts commands on.
        stamp: the code and environment it imported with (:func:`stamp`).
    """

    pid: int
    started_at: float
    socket: str
    stamp: str

    def alive(self) -> bool:
        """The recorded process is the one running."""
        from unlearn_ops.adapters.process import process_started_at

        started = process_started_at(self.pid)
        return started is not None and abs(started - self.started_at) < 1.0


def stamp(environ: Mapping[str, str]) -> str:
    """What a runner must share with a command to run it: the interpreter, code and environment.

    The code is every module file of the `unlearn_ops` and `pipelines` packages (path, size,
    modification time); the environment is every variable but those that differ between
    shells for no reason (`PWD`, `TERM`, ...).
    """
    import pipelines
    import unlearn_ops

    digest = hashlib.sha256(sys.executable.encode())
    for package in (unlearn_ops, pipelines):
        folder = Path(package.__file__ or ".").parent
        for path in sorted(folder.rglob("*.py")):
            info = path.stat()
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    for key in sorted(environ):
        if key in _VOLATILE or key.startswith(_VOLATILE_PREFIXES):
            continue
        digest.update(f"{key}={environ[key]}\0".encode())
    return digest.hexdigest()


def state_dir(root: Path) -> Path:
    folder = root / ".unlearn-ops"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _socket_path(root: Path) -> Path | None:
    """A short path (Unix sockets allow 107 bytes) in a folder only this user can open."""
    folder = Path(tempfile.gettempdir()) / f"unlearn-ops-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None  # someone else's, or open to others: no runner rather than a shared one
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return folder / f"{name}.sock"


def read_record(root: Path) -> WarmRunner | None:
    try:
        data = json.loads((root / ".unlearn-ops" / RECORD).read_text(encoding="utf-8"))
        return WarmRunner(
            int(data["pid"]), float(data["started_at"]), str(data["socket"]), str(data["stamp"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _locked(root: Path) -> contextlib.AbstractContextManager[None]:
    """One command at a time decides whether to start or replace the runner."""
    from unlearn_ops.adapters.process import file_lock

    return file_lock(state_dir(root) / _LOCK)


def running_runner(root: Path) -> WarmRunner | None:
    """The workspace's runner if its process is running; None otherwise."""
    runner = read_record(root)
    return runner if runner is not None and runner.alive() else None


def _stop(runner: WarmRunner | None, timeout: float = 10.0) -> bool:
    """Stop the runner's process (not the commands it runs: each is its own process group)."""
    if runner is None or not runner.alive():
        return False
    from unlearn_ops.adapters.process import stop_groups

    stop_groups([runner.pid], timeout=timeout)
    return True


def stop_runner(root: Path) -> WarmRunner | None:
    """Stop the workspace's runner; the one stopped, or None if none was running."""
    with _locked(root):
        runner = read_record(root)
        (root / ".unlearn-ops" / RECORD).unlink(missing_ok=True)
        return runner if _stop(runner) else None


# --- the client: a command that hands itself to the runner -----------------------------


def _enabled() -> bool:
    from unlearn_ops.errors import ConfigError
    from unlearn_ops.settings import load_settings

    try:
        return load_settings().warm_runner
    except ConfigError:
        return False  # the command itself reports the setting


def delegate(argv: list[str], workspace_of: Callable[[list[str]], str | None]) -> int | None:
    """Run the command `argv` in the workspace's warm runner; its exit status, or None.

    None means "run it here": the command does not run flows, its command line does not
    parse (`workspace_of` gives None: the command itself reports the mistake, and nothing
    is started for it), the runner is off or cannot start, or this process embeds us
    (Prefect imported already). `workspace_of` parses `argv` as the application would and
    gives its `--workspace` (option, environment variable or default). Call it before
    anything changes `os.environ`: the runner is chosen by the environment the user gave.
    """
    command = argv[0] if argv else None
    if command not in COMMANDS or "--help" in argv or "prefect" in sys.modules:
        return None
    if not _enabled():
        return None
    workspace = workspace_of(argv)
    if workspace is None:
        return None
    from unlearn_ops.errors import WorkspaceNotFoundError
    from unlearn_ops.workflow.location import find_workspace

    try:
        root = find_workspace(workspace)
    except (WorkspaceNotFoundError, OSError):
        return None  # the command itself says what is wrong
    runner = _ensure_runner(root)
    if runner is None:
        return None
    return _run_in(runner, argv)


def _ensure_runner(root: Path) -> WarmRunner | None:
    """The workspace's runner for this code and environment, started (or replaced) if needed."""
    wanted = stamp(os.environ)
    with _locked(root):
        runner = read_record(root)
        if runner is not None and runner.alive() and runner.stamp == wanted:
            return runner
        _stop(runner)
        (root / ".unlearn-ops" / RECORD).unlink(missing_ok=True)
        path = _socket_path(root)
        if path is None:
            return None
        log = state_dir(root) / _LOG
        with log.open("ab") as output:
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "unlearn_ops.cli.warm_runner", str(root), str(path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            runner = read_record(root)
            if runner is not None and runner.pid == process.pid:
                return runner
            time.sleep(0.1)
        if process.poll() is None:
            process.kill()
        process.wait()
        print(
            f"note: the workspace's warm runner did not start (see {log}); running the "
            "command in this process",
            file=sys.stderr,
        )
        return None


def send_message(connection: socket.socket, message: Mapping[str, object]) -> None:
    payload = json.dumps(message).encode()
    connection.sendall(struct.pack("!I", len(payload)) + payload)


def receive_message(connection: socket.socket) -> dict[str, object] | None:
    """The next message, or None when the other side closed the connection."""
    header = read_exactly(connection, 4)
    if header is None:
        return None
    body = read_exactly(connection, struct.unpack("!I", header)[0])
    return None if body is None else dict(json.loads(body))


def read_exactly(connection: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _run_in(runner: WarmRunner, argv: list[str]) -> int | None:
    """Hand `argv` to the runner with this process's terminal; the command's exit status."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(runner.socket)
    except OSError:
        connection.close()
        return None  # gone between the check and now: run here
    main = sys.modules.get("__main__")
    request = json.dumps(
        {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            # How click names the program in its messages: this process's script or module.
            "argv0": sys.argv[0],
            "main_package": getattr(main, "__package__", None),
        }
    ).encode()
    with connection:
        socket.send_fds(connection, [struct.pack("!I", len(request))], [0, 1, 2])
        connection.sendall(request)
        started = receive_message(connection)
        if started is None:
            return None  # the runner refused or died before the command began: run here
        child = int(str(started["pid"]))
        forwarded: list[int] = []

        def forward(signum: int, _frame: FrameType | None) -> None:
            forwarded.append(signum)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signum)

        previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
        try:
            finished = receive_message(connection)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if finished is not None:
        return int(str(finished["exit"]))
    if forwarded:
        return 128 + forwarded[-1]
    print("error: the command's process ended without an exit status", file=sys.stderr)
    return 1
