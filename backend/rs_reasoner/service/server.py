"""``rs-reasoner serve``: run the HTTP API on loopback with a fresh token.

The socket is bound here (so ``--port 0`` yields a free port known before anything is
announced), uvicorn serves on it, and once it accepts connections the state file
(port, token, pid) is written for clients. SIGINT/SIGTERM/SIGHUP shut down cleanly and
remove the state file (if it still names this process) and this process's uploads. At start
the state file's place is checked, a state file left by a dead backend is removed, and so
are the upload folders of dead backends.

Run without the CLI (tests, automation)::

    python -m rs_reasoner.service.server --port 0 --state-file /tmp/backend.json
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pydantic import ValidationError

from rs_reasoner import __version__
from rs_reasoner.arguments import add_serve_arguments, serve_options
from rs_reasoner.atomic import check_writable
from rs_reasoner.errors import OutputError, RsReasonerError
from rs_reasoner.schemas import ServeOptions, defaults
from rs_reasoner.service.hosts import is_loopback
from rs_reasoner.service.state import (
    default_state_path,
    pid_alive,
    read_state,
    remove_state,
    write_state,
)

log = logging.getLogger("rs_reasoner.service")

#: An upload folder, named after the pid of the backend that owns it.
_UPLOAD_DIR = re.compile(r"^(\d+)-")


#: GIL switch interval of a serving process (see serve()).
_SWITCH_INTERVAL_S = 0.001

#: ``serve``'s defaults: the fields of ServeOptions (the flags' defaults too).
_DEFAULTS = defaults(ServeOptions)


def check_host(host: str, allow_remote: bool = False) -> None:
    """Refuse a non-loopback bind address unless explicitly allowed.

    Raises:
        RsReasonerError: The host is not loopback and ``allow_remote`` is False.
    """
    if is_loopback(host) or allow_remote:
        return
    raise RsReasonerError(
        f"Refusing to listen on '{host}': it is not a loopback address, so other machines "
        "could reach the backend.",
        "Use --host 127.0.0.1 (the default), or add --allow-remote if you really want "
        "the service on the network (requests still need the token).",
    )


def _bind(host: str, port: int) -> socket.socket:
    address = "127.0.0.1" if host.strip().lower() == "localhost" else host.strip().strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP. Without it every keep-alive response (the plugin's polls) waits
    # ~40 ms for a delayed ACK between headers and body.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)  # connections made before uvicorn starts wait in the backlog
    except OSError as exc:
        sock.close()
        raise RsReasonerError(
            f"Cannot listen on {address} port {port}: {exc.strerror or exc}.",
            "Pick another port with --port, or --port 0 for any free one.",
        ) from None
    return sock


def remove_dead_upload_dirs(uploads_root: Path) -> list[str]:
    """Remove the upload folders (``<pid>-*``) of backends that are no longer running.

    A backend removes its own folder when it stops; one killed (kill -9, a crash, power
    loss) leaves it, possibly gigabytes. Folders whose process cannot be probed (Windows)
    are kept.

    Returns:
        The names removed.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(uploads_root):
            owner = _UPLOAD_DIR.match(entry.name)
            if owner is None or not entry.is_dir(follow_symlinks=False):
                continue
            pid = int(owner.group(1))
            if pid != os.getpid() and pid_alive(pid) is False:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    return removed


def _check_state_path(state_path: Path) -> None:
    try:
        check_writable(state_path)
    except OutputError as exc:
        raise RsReasonerError(
            f"Cannot write the state file {state_path}: {exc.message}",
            "Pass --state-file with a writable path.",
        ) from None


def _forget_stale_state(state_path: Path) -> None:
    """Warn about a live backend named by the state file; remove one left by a dead one
    (so no client tries it while this one starts, or after this start fails)."""
    previous = read_state(state_path)
    if not previous or previous.get("pid") == os.getpid():
        return
    pid = previous.get("pid")
    alive = pid_alive(pid)
    if alive:
        log.warning(
            "state file %s names another running backend (pid %s); taking it over",
            state_path,
            pid,
        )
    elif alive is False and isinstance(pid, int) and remove_state(state_path, pid):
        log.info("removed the stale state file of backend pid %s (not running)", pid)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _setup_logging() -> None:
    if log.handlers or logging.getLogger().handlers or logging.getLogger("rs_reasoner").handlers:
        return
    try:
        from uvicorn.logging import DefaultFormatter

        formatter: logging.Formatter = DefaultFormatter("%(levelprefix)s %(message)s")
    except ImportError:  # pragma: no cover
        formatter = logging.Formatter("%(levelname)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    pkg = logging.getLogger("rs_reasoner")
    pkg.addHandler(handler)
    pkg.setLevel(logging.INFO)
    pkg.propagate = False


def _make_server_class() -> type:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn.Server that announces itself once serving and exits cleanly on signals
        (stock uvicorn re-raises SIGINT/SIGTERM after shutdown)."""

        on_started: Callable[[], None] | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit and self.on_started is not None:
                self.on_started()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = [signal.SIGINT, signal.SIGTERM]
            for name in ("SIGBREAK", "SIGHUP"):  # Windows Ctrl+Break; terminal closed
                if hasattr(signal, name):
                    handled.append(getattr(signal, name))
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return _Server


def serve(
    host: str = _DEFAULTS["host"],
    port: int = _DEFAULTS["port"],
    allow_remote: bool = _DEFAULTS["allow_remote"],
    state_file: Path | str | None = _DEFAULTS["state_file"],
    device: str = _DEFAULTS["device"],
    job_time_limit: float = _DEFAULTS["job_time_limit"],
    train_time_limit: float = _DEFAULTS["train_time_limit"],
    max_queued_jobs: int = _DEFAULTS["max_queued_jobs"],
) -> None:
    """Serve the API until SIGINT/SIGTERM.

    Args:
        host: Bind address; must be loopback unless ``allow_remote``.
        port: Port; 0 picks a free one.
        allow_remote: Allow a non-loopback ``host``.
        state_file: Where to write port/token/pid (default:
            :func:`~rs_reasoner.service.state.default_state_path`).
        device: Torch device for the models (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        job_time_limit: Seconds a segmentation job may run.
        train_time_limit: Seconds a training job may run.
        max_queued_jobs: Jobs that may wait (more get HTTP 429).

    Raises:
        RsReasonerError: Non-loopback host without ``allow_remote``, port unavailable, or
            the server failed to start.
    """
    check_host(host, allow_remote)
    _setup_logging()
    # The job worker runs CPU-bound Python beside the event loop; a 1 ms GIL switch
    # interval (default 5 ms) keeps polls answered promptly while a job runs.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    state_path = Path(state_file).expanduser() if state_file else default_state_path()
    _check_state_path(state_path)
    _forget_stale_state(state_path)

    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    token = secrets.token_urlsafe(32)
    pid = os.getpid()
    upload_dir: Path | None = None
    try:
        import platformdirs
        import uvicorn

        from rs_reasoner.pipeline import SegmentationPipeline
        from rs_reasoner.service.app import create_app, gpu_info
        from rs_reasoner.service.limits import JobLimits

        uploads_root = Path(platformdirs.user_cache_dir("rs-reasoner")) / "uploads"
        try:
            uploads_root.mkdir(parents=True, exist_ok=True)
            for name in remove_dead_upload_dirs(uploads_root):
                log.info("removed the uploads of a backend that is not running: %s", name)
            upload_dir = Path(tempfile.mkdtemp(prefix=f"{pid}-", dir=uploads_root))
        except OSError as exc:
            raise RsReasonerError(
                f"Cannot create the uploads folder in {uploads_root}: {exc.strerror or exc}.",
                "Make that folder writable, or point XDG_CACHE_HOME at a writable folder.",
            ) from None
        pipeline = SegmentationPipeline(device=device)
        # Resolve the device now (imports torch for "auto"), so /health answers at once.
        gpu = gpu_info(pipeline.device)
        log.info(
            "device: %s%s",
            pipeline.device,
            f" ({gpu['gpu_name']}, {gpu['gpu_memory_total'] / 1024**3:.1f} GiB)"
            if gpu["gpu_name"]
            else "",
        )
        # A backend serving the network is reached under names not known here.
        limits = JobLimits(
            segment_time_limit_s=job_time_limit,
            train_time_limit_s=train_time_limit,
            max_queued=max_queued_jobs,
        )
        app = create_app(
            pipeline,
            token,
            upload_dir,
            job_limits=limits,
            isolate_checks=True,
            loopback_only=is_loopback(host),
        )
        config = uvicorn.Config(
            app,
            log_level="info",
            access_log=False,  # the plugin polls; one line per poll drowns the log
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
        server = _make_server_class()(config)
        failure: list[RsReasonerError] = []

        def announce() -> None:
            try:
                write_state(state_path, bound_host, bound_port, token, pid, __version__)
            except OSError as exc:  # checked at start; this is a change since: stop cleanly
                failure.append(
                    RsReasonerError(
                        f"Cannot write the state file {state_path}: {exc.strerror or exc}.",
                        "Pass --state-file with a writable path.",
                    )
                )
                server.should_exit = True
                return
            log.info(
                "RS Reasoner backend on %s (state file: %s)",
                _url(bound_host, bound_port),
                state_path,
            )

        server.on_started = announce
        server.run(sockets=[sock])
        if failure:
            raise failure[0]
        if not server.started:
            raise RsReasonerError(
                "The backend failed to start.", "See the messages above for the cause."
            )
    finally:
        remove_state(state_path, pid)
        if upload_dir is not None:
            shutil.rmtree(upload_dir, ignore_errors=True)
        sock.close()
    log.info("RS Reasoner backend stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rs_reasoner.service.server``: the same flags as ``rs-reasoner serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m rs_reasoner.service.server", description="Run the RS Reasoner backend."
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        serve(**serve_options(args))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: {problems}", file=sys.stderr)
        return 2
    except RsReasonerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
