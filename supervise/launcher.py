"""`python -m supervise.launcher -c supervisord.conf`: supervisord as PID 1, with a real exit code.

Runs supervisord's main loop in this process (so supervisord itself is PID 1 and reaps orphans with
its waitpid(-1) loop) and replicates `supervisor.supervisord.main`'s restart loop. Two additions:

- When every process of a program is FATAL (web, socket_holder, or all task executors: with
  ROLE=executor the executors are the whole bundle), log one line naming the program and its
  last error, shut everything down and exit 1. supervisord alone would
  keep running without the service, or exit 0.
- When supervisord starts stopping, send the stop signal to the task executors and the socket
  holders at once: the executors finish or hand back their task while the proxy and web drain,
  instead of waiting for their priority turn, and the port stops taking connections (nginx
  closes its listening socket on SIGQUIT; without the proxy the Gunicorn master and its busy
  workers close their copies on SIGTERM, see supervise.gunicorn_hooks), so new clients are
  refused at once instead of waiting in the backlog until the drain ends. `supervisorctl
  restart web` leaves the holders alone.
- With a `proxy` program (nginx, stopped first), web stops once nginx is gone: every request
  Gunicorn still runs then has no client left to answer (nginx delivered or cut every one), so
  web gets AFTER_PROXY_STOP_SECONDS instead of its full stopwaitsecs (which `supervisorctl
  restart web` keeps for requests in flight). The renderer counts the same time in its
  worst-case stop budget (renderer.render.WEB_AFTER_PROXY_STOPWAITSECS).
- Signals wake the main loop at once (a self-pipe in the poll set). Python restarts a poll()
  interrupted by a signal (PEP 475), so plain supervisord notices a child's exit or a stop request
  only at its next 1 s poll timeout: every step of an ordered stop waited up to a second. For the
  same reason the ordered stop skips groups that are already stopped.
- Every program gets a parent-death signal, set in the forked child just before supervisord
  execs it (LauncherOptions.execve): when PID 1 is SIGKILLed on a host (not in a container,
  where the kernel kills the whole PID namespace), no program outlives it, so the same command
  can start the service again at once. The signal is the one that stops each program fastest
  and cleanly (PARENT_DEATH_SIGNALS). A program whose supervisord died before the signal was
  set is not started at all.
- Where programs share a Prometheus multiprocess directory (PROMETHEUS_MULTIPROC_DIR in their
  environment=), the launcher empties it before supervisord starts them.
- SIGHUP reloads gracefully instead of restarting everything (supervisord's own meaning, which
  stops every program and refuses requests meanwhile): the Gunicorn master (`web`) gets HUP and
  re-reads gunicorn.conf.py, starting new workers before the old ones finish their requests, and
  nginx (`proxy`) gets HUP and re-reads nginx.conf. supervisord.conf is not re-read (that is
  `supervisorctl reread && supervisorctl update`, or `supervisorctl reload` for a full restart).
  SIGTTIN and SIGTTOU go to the Gunicorn master too (one worker more or fewer). In dev mode
  and with ROLE=executor (no Gunicorn) SIGHUP keeps supervisord's meaning and SIGTTIN/SIGTTOU
  are ignored, with a log line. docs/operations.md lists every signal.
- supervisord applies its `umask=` only when it daemonizes; the launcher runs it in the
  foreground, so it applies the configured umask itself, before it creates any file or child.
- Without SUPERVISOR_USER/SUPERVISOR_PASSWORD the renderer deliberately protects the control socket
  by its file mode (0700, owned by the running user) instead of HTTP auth. supervisord reports that
  as CRIT on every start; the launcher states the decision at INFO instead, so a CRIT line always
  means something is wrong.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from supervisor import events
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.options import ServerOptions
from supervisor.states import ProcessStates, SupervisorStates
from supervisor.supervisord import Supervisor

from shared import parent_death
from shared.logformat import iso_time

EXIT_FATAL = 1
# Sent to each program (by its group name) when supervisord dies; SIGTERM for the others.
# web: Gunicorn's quick shutdown (SIGTERM would drain for GUNICORN_GRACEFUL_TIMEOUT; in dev mode
# the Werkzeug reloader treats both alike). task_executor: hand the current task back at once.
# proxy: nginx's fast stop (the signal survives serve_proxy's exec of nginx).
PARENT_DEATH_SIGNALS = {
    "web": signal.SIGINT,
    "task_executor": signal.SIGINT,
    "proxy": signal.SIGTERM,
}
# program groups, on shutdown or reload
STOPPED_AT_ONCE = ("task_executor", "socket_holder", "metrics")
# prometheus_client's multiprocess directory, named in the programs' environment=
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PROXY_GROUP = "proxy"
AFTER_PROXY = "web"  # the group whose clients all come through the proxy
AFTER_PROXY_STOP_SECONDS = 3
WEB_GROUP = "web"
GUNICORN_MARKER = "supervise.serve_web"  # in web's command in production mode only
# Signals PID 1 passes on (to these groups) instead of supervisord's own handling.
RELOAD_SIGNALS: dict[int, tuple[str, ...]] = {signal.SIGHUP: (WEB_GROUP, PROXY_GROUP)}
WORKER_COUNT_SIGNALS: dict[int, tuple[str, ...]] = {
    signal.SIGTTIN: (WEB_GROUP,),
    signal.SIGTTOU: (WEB_GROUP,),
}
TAIL_LINES = 5
TAIL_BYTES = 4096


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _file_tail(path: str | None) -> str:
    """Last non-empty line of a regular log file, '' when there is none."""
    if not path or not os.path.isfile(path):
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        return _last_line(handle.read().decode("utf-8", "replace"))


NO_AUTH_WARNING = "running without any HTTP authentication checking"
# supervisord's level names -> logging's
SUPERVISOR_LEVELS = {
    "CRIT": "CRITICAL",
    "ERRO": "ERROR",
    "WARN": "WARNING",
    "INFO": "INFO",
    "DEBG": "DEBUG",
    "TRAC": "DEBUG",
    "BLAT": "DEBUG",
}


class JsonLogLine(str):
    """A supervisor log handler's ``fmt`` that renders each record of supervisord's own log as
    one JSON line with the keys of shared.logformat.JsonFormatter (supervisor's handlers format
    with ``fmt % record.asdict()``)."""

    def __mod__(self, values: Any) -> str:
        level = str(values.get("levelname", "INFO"))
        return (
            json.dumps(
                {
                    "time": iso_time(time.time()),
                    "level": SUPERVISOR_LEVELS.get(level, level),
                    "program": "supervisord",
                    "pid": os.getpid(),
                    "logger": "supervisord",
                    "message": str(values.get("message", "")).rstrip("\n"),
                },
                ensure_ascii=False,
            )
            + "\n"
        )


def programs_log_format(options: Any) -> str:
    """LOG_FORMAT as the rendered config gives it to the programs (text when none says)."""
    for group in options.process_group_configs:
        for process in group.process_configs:
            value = (process.environment or {}).get("LOG_FORMAT")
            if value:
                return str(value).strip().lower()
    return "text"


class LauncherOptions(ServerOptions):  # type: ignore[misc]
    """ServerOptions that report a unix socket without HTTP auth as the decision it is, and
    give every program a parent-death signal."""

    def __init__(self) -> None:
        super().__init__()
        self.supervisord_pid = os.getpid()
        self.handing_over: int | None = None
        parent_death.prepare()  # resolved here, not in each forked child

    def execve(self, filename: str, argv: list[str], env: dict[str, str]) -> None:
        """Runs in the forked child (after its setuid, umask and chdir), right before the exec."""
        group = env.get("SUPERVISOR_GROUP_NAME", "")
        signum = PARENT_DEATH_SIGNALS.get(group, signal.SIGTERM)
        if not parent_death.die_with_parent(signum, self.supervisord_pid):
            # supervisord reports "couldn't exec" and the child exits 127 without starting
            raise OSError(errno.ESRCH, "supervisord exited before the program started")
        super().execve(filename, argv, env)

    def make_logger(self) -> None:
        """supervisord's own log; one JSON object per line with LOG_FORMAT=json."""
        if programs_log_format(self) != "json":
            super().make_logger()
            return
        # the messages make_logger logs at once, logged here once the handlers write JSON
        names = ("parse_criticals", "parse_warnings", "parse_infos")
        pending: list[list[str]] = [list(getattr(self, name)) for name in names]
        for name in names:
            setattr(self, name, [])
        super().make_logger()
        for handler in self.logger.handlers:
            handler.fmt = JsonLogLine("json")
        for log, messages in zip(
            (self.logger.critical, self.logger.warn, self.logger.info), pending, strict=True
        ):
            for message in messages:
                log(message)

    def get_signal(self) -> int | None:
        """The next signal; first the one LauncherSupervisor.handle_signal hands over."""
        signum, self.handing_over = self.handing_over, None
        return signum if signum is not None else super().get_signal()

    def setsignals(self) -> None:
        super().setsignals()
        # default action of both is to stop the process: receive them like supervisord's own
        for signum in WORKER_COUNT_SIGNALS:
            signal.signal(signum, self.signal_receiver.receive)

    def make_http_servers(self, supervisord: Any) -> Any:
        critical = self.logger.critical

        def report(msg: str, **kwargs: Any) -> None:
            if NO_AUTH_WARNING in msg and "unix_http_server" in msg:
                self.logger.info(
                    "unix_http_server: no HTTP auth (SUPERVISOR_USER/SUPERVISOR_PASSWORD unset); "
                    "access is limited by the socket's file mode 0700"
                )
            else:
                critical(msg, **kwargs)

        self.logger.critical = report
        try:
            return super().make_http_servers(supervisord)
        finally:
            self.logger.critical = critical


class SignalWakeup:
    """A self-pipe dispatcher for supervisord's socket map: any signal makes poll() return."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()  # not inherited by children (PEP 446)
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        # Each signal writes one byte; drain what is there (the loop handles the signals).
        with contextlib.suppress(BlockingIOError):
            os.read(self.read_fd, 4096)

    def handle_error(self) -> None:
        pass

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        os.close(self.read_fd)
        os.close(self.write_fd)


class LauncherSupervisor(Supervisor):  # type: ignore[misc]
    """supervisord's Supervisor plus the fatal-state exit code and the early stops."""

    def __init__(self, options: LauncherOptions) -> None:
        super().__init__(options)
        self.exit_code = 0
        self.recent_output: dict[str, collections.deque[str]] = {}

    def runforever(self) -> None:
        # Supervisor.run() clears every subscription first, so subscribe here.
        events.subscribe(events.ProcessStateFatalEvent, self.on_fatal)
        events.subscribe(events.SupervisorStoppingEvent, self.on_stopping)
        events.subscribe(events.ProcessLogStderrEvent, self.on_output)
        events.subscribe(events.ProcessLogStdoutEvent, self.on_output)
        socket_map = self.options.get_socket_map()
        wakeup = SignalWakeup()
        socket_map[wakeup.read_fd] = wakeup
        os.write(wakeup.write_fd, b"\0")  # the first poll returns at once: spawn without a 1 s wait
        try:
            super().runforever()
        finally:
            del socket_map[wakeup.read_fd]
            wakeup.close()

    def ordered_stop_groups_phase_1(self) -> None:
        # Skip groups with nothing left to stop (the executors, stopped early): supervisord would
        # otherwise spend a whole poll timeout on each of them before stopping the next group.
        while self.stop_groups and not self.stop_groups[-1].get_unstopped_processes():
            self.stop_groups.pop()
        super().ordered_stop_groups_phase_1()
        self.hurry_after_proxy()

    def hurry_after_proxy(self) -> None:
        """Bound web's stop once the proxy (stopped before it) is gone; see the module doc."""
        if not self.stop_groups or PROXY_GROUP not in self.process_groups:
            return
        group = self.stop_groups[-1]
        if group.config.name != AFTER_PROXY:
            return
        deadline = time.time() + AFTER_PROXY_STOP_SECONDS
        for process in group.processes.values():
            # supervisord SIGKILLs a STOPPING process once time.time() passes its `delay`.
            if process.get_state() == ProcessStates.STOPPING and process.delay > deadline:
                process.delay = deadline

    def handle_signal(self) -> None:
        """Pass SIGHUP, SIGTTIN and SIGTTOU on to Gunicorn (see the module doc); supervisord
        handles every other signal."""
        signum = self.options.get_signal()
        if not signum or self.pass_on_signal(signum):
            return
        self.options.handing_over = signum  # supervisord's handler gets this one, in order
        super().handle_signal()

    def serves_with_gunicorn(self) -> bool:
        group = self.process_groups.get(WEB_GROUP)
        return group is not None and GUNICORN_MARKER in str(group.config.process_configs[0].command)

    def pass_on_signal(self, signum: int) -> bool:
        """True when the signal was handled here: passed on to the running programs it is for."""
        targets = RELOAD_SIGNALS.get(signum) or WORKER_COUNT_SIGNALS.get(signum)
        if targets is None or self.options.mood < SupervisorStates.RUNNING:
            return False
        name = signal.Signals(signum).name
        if not self.serves_with_gunicorn():
            if signum in RELOAD_SIGNALS:
                return False  # dev mode: supervisord's restart
            why = "dev mode" if WEB_GROUP in self.process_groups else "ROLE=executor"
            self.options.logger.info(f"received {name}: ignored (no Gunicorn in {why})")
            return True
        sent = []
        for group_name in targets:
            group = self.process_groups.get(group_name)
            for process in group.processes.values() if group else ():
                if process.get_state() == ProcessStates.RUNNING:
                    process.signal(signum)
                    sent.append(str(process.config.name))
        what = "graceful reload" if signum in RELOAD_SIGNALS else "worker count change"
        self.options.logger.info(f"received {name} indicating {what}: sent to {', '.join(sent)}")
        return True

    def on_output(self, event: Any) -> None:
        """Keep the last lines of output of processes with stdout/stderr events enabled."""
        name = str(event.process.config.name)
        tail = self.recent_output.setdefault(name, collections.deque(maxlen=TAIL_LINES))
        line = _last_line(event.data.decode("utf-8", "replace"))
        if line:
            tail.append(line)

    def last_error(self, process: Any) -> str:
        config = process.config
        name = str(config.name)
        for candidate in (
            self.recent_output[name][-1] if self.recent_output.get(name) else "",
            _file_tail(config.stderr_logfile),
            _file_tail(config.stdout_logfile) if config.redirect_stderr else "",
            process.spawnerr or "",
        ):
            if candidate:
                return str(candidate)
        return f"exit status {process.exitstatus}"

    def on_fatal(self, event: Any) -> None:
        if self.stopping or self.options.mood < SupervisorStates.RUNNING:
            return
        process = event.process
        group = process.group
        if any(p.get_state() != ProcessStates.FATAL for p in group.processes.values()):
            return
        self.exit_code = EXIT_FATAL
        self.options.logger.critical(
            f"{group.config.name} is FATAL (last error of {process.config.name}: "
            f"{self.last_error(process)}); shutting down with exit code {EXIT_FATAL}"
        )
        self.options.mood = SupervisorStates.SHUTDOWN

    def on_stopping(self, event: Any) -> None:
        for name in STOPPED_AT_ONCE:
            group = self.process_groups.get(name)
            for process in group.processes.values() if group else ():
                if process.get_state() in (ProcessStates.RUNNING, ProcessStates.STARTING):
                    process.stop()


def metrics_dirs(options: Any) -> set[str]:
    """Every PROMETHEUS_MULTIPROC_DIR named in a program's environment=."""
    return {
        str(process.environment[METRICS_DIR_VARIABLE])
        for group in options.process_group_configs
        for process in group.process_configs
        if process.environment and process.environment.get(METRICS_DIR_VARIABLE)
    }


def reset_metrics_dir(path: str, uid: int | None, gid: int | None) -> None:
    """Empty (or create) the metrics directory before any program starts: the files of the
    previous run's processes would otherwise add their counts to this run's (pids are reused)."""
    os.makedirs(path, exist_ok=True)
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else -1)


def main(argv: Sequence[str] | None = None) -> int:
    """supervisor.supervisord.main with our Supervisor; returns the process exit code."""
    exit_code = 0
    first = True
    while True:
        options = LauncherOptions()
        options.realize(list(argv) if argv is not None else None, doc=__doc__)
        os.umask(options.umask)  # [supervisord] umask=, for its own files and every program
        for path in metrics_dirs(options):
            reset_metrics_dir(path, options.uid, getattr(options, "gid", None))
        options.first = first
        options.test = False
        supervisor = LauncherSupervisor(options)
        with contextlib.suppress(asyncore.ExitNow):
            supervisor.main()
        options.close_httpservers()
        options.close_logger()
        first = False
        exit_code = max(exit_code, supervisor.exit_code)
        if options.mood < SupervisorStates.RESTARTING:
            return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
