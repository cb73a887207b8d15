"""The warm runner's process: import everything once, then fork a child per command.

Started by :func:`unlearn_ops.cli.warm.delegate` as `python -m unlearn_ops.cli.warm_runner
ROOT SOCKET`, in its own session, with the caller's environment; the protocol and the
record it writes are :mod:`unlearn_ops.cli.warm`'s.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from unlearn_ops.cli.warm import (
    RECORD,
    WarmRunner,
    read_exactly,
    read_record,
    send_message,
    stamp,
    state_dir,
)

__all__ = ["IDLE_EXIT_SECONDS", "serve"]

IDLE_EXIT_SECONDS = 3600.0
# What the runner imports before it forks: the flows and the libraries they load.
_WARM_MODULES = (
    "unlearn_ops.cli.app",
    "pipelines.forget",
    "pipelines.train",
    "pipelines.rollback",
    "pipelines.approximate",
    "torch",
    "mlflow",
    "mlflow.pyfunc",
    "great_expectations",
    "dvc.repo",
    "unlearn_ops.adapters.gx.gates",
    "unlearn_ops.adapters.mlflow.registry",
    "unlearn_ops.adapters.dvc.lineage",
)


def serve(root: Path, path: Path) -> None:
    """Import everything, listen on `path`, fork a child per command; exit when idle or orphaned."""
    own_stamp = stamp(os.environ)  # before the defaults below change the environment
    from unlearn_ops.cli.flow_runs import prefect_defaults

    prefect_defaults()
    for module in _WARM_MODULES:
        importlib.import_module(module)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    bound = path.stat().st_ino
    listener.listen(16)
    listener.settimeout(30.0)
    from unlearn_ops.adapters.process import process_started_at
    from unlearn_ops.atomic import write_atomic

    started_at = process_started_at(os.getpid()) or time.time()
    me = WarmRunner(os.getpid(), started_at, str(path), own_stamp)
    write_atomic(state_dir(root) / RECORD, json.dumps(asdict(me)) + "\n")
    print(f"warm runner {me.pid} ready on {path}", flush=True)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `server stop`: leave no socket behind
    last_used = time.monotonic()
    try:
        while time.monotonic() - last_used < IDLE_EXIT_SECONDS and read_record(root) == me:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass  # reap the commands that finished
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            last_used = time.monotonic()
            if os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                listener.close()
                _child(connection)  # never returns
            connection.close()
        reason = "idle, or its workspace is gone or replaced"
    except SystemExit:
        reason = "stopped"
    listener.close()
    with contextlib.suppress(OSError):
        if path.stat().st_ino == bound:  # not a later runner's socket at the same path
            path.unlink()
    print(f"warm runner {me.pid} exits ({reason})", flush=True)


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _child(connection: socket.socket) -> None:
    """Run one command as if this process had been started for it; exit with its status."""
    code = 1
    try:
        os.setpgid(0, 0)  # the client signals this group: the command and its subprocesses
        credentials = connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
        if struct.unpack("3i", credentials)[1] != os.getuid():
            os._exit(1)  # another user's process: refuse (the folder should stop it first)
        header, fds, _, _ = socket.recv_fds(connection, 4, 3)
        body = read_exactly(connection, struct.unpack("!I", header)[0])
        if body is None or len(fds) != 3:
            os._exit(1)
        request = json.loads(body)
        send_message(connection, {"pid": os.getpid()})
        print(f"{os.getpid()}: {' '.join(request['argv'])} (in {request['cwd']})", flush=True)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["argv0"], *request["argv"]]
        # Click names the program from these: the client's, not `-m ...warm_runner`.
        sys.modules["__main__"].__package__ = request["main_package"]
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=stream.isatty())  # type: ignore[union-attr]
        finished = threading.Event()
        threading.Thread(target=_end_with_client, args=(connection, finished), daemon=True).start()
        code = _run_command(list(request["argv"]))
        finished.set()
        with contextlib.suppress(OSError):
            send_message(connection, {"exit": code})
    finally:
        os._exit(code)


def _end_with_client(connection: socket.socket, finished: threading.Event) -> None:
    """A client that goes away (killed, or its terminal closed) takes its command with it."""
    with contextlib.suppress(OSError):
        while connection.recv(1):
            pass
    if not finished.is_set():
        os.killpg(0, signal.SIGTERM)


def _run_command(argv: list[str]) -> int:
    """`main(argv)` as a new process would run it, down to its exit handlers; its status."""
    import atexit
    import traceback

    from unlearn_ops.cli import flow_runs
    from unlearn_ops.cli.app import main

    flow_runs.refresh_prefect_settings = True  # this process imported Prefect before the command
    try:
        main(argv, delegate_to_runner=False)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        code = 130
    except BaseException:  # what a new process would print, then status 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # what interpreter shutdown would run
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]))
