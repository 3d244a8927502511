"""The fault harness's fork server: one process that imports fastseed and torch, reads CIFAR-10 once
and trains one seed once, then forks every scan, merge and pool worker the harness asks for. A moment
then costs its own work, not a Python start (on 2 cores: ~2 s to import torch, ~2 s to read and check
the data, ~3 s for a first seed's one-time set-up). `tests/faults/harness.py` also starts real
`python -m fastseed.scan` processes, for the signals that land while Python imports.

    python zygote.py DATA_DIR [MOUNT SIZE]    # MOUNT: a tmpfs of SIZE is mounted there first (disk moments)

What a forked process differs in, and why it does not matter to what is tested:
- The data set is the copy read (and checked against its digests) here: `cifar.load_cifar10` returns it,
  and `jobs.to_tensors` the tensors made of it once (training reads them, never writes).
- Signals: it starts with SIGINT and SIGTERM blocked; the command installs its handler and unblocks
  them (workers/local.py: StopFlag.installed; merge.main), as a pool's worker does. No signal is lost
  and none lands before the handler: what `python -m` start-up does not offer (the harness's real
  processes are sent theirs once their handler is in place).
- A pool's workers are forked here too, never from the pool's parent (which has a store open: SQLite
  must not be carried across a fork): `pool._spawn` asks this server over a Unix socket, and gets the
  worker's pid, its output (a pipe, passed as a file descriptor), and later its exit code.
- Every SQLite connection has a trace callback that writes a line to `$FAULTS_MARKS` when a record is
  inserted and when a transaction commits, then waits 10 ms: the harness fires "commit" moments on
  that line, inside the transaction.

Requests on stdin, one JSON object a line: {"op": "spawn", "tag", "command": "scan"|"merge", "argv",
"cwd", "stdout", "stderr", "marks"}, answered {"pid"}; {"op": "fill", "path"} fills the file system of
`path` (answered {"filled": bytes}); {"op": "free", "path"} removes that file. Every process that ends
(a command or a worker) is told as {"spawned": pid, "tag"} when it starts and {"exit": pid, "code",
"tag"} when it ends (code as Popen's returncode).
"""

import json
import os
import select
import signal
import socket
import sqlite3
import struct
import sys
import time
import traceback

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MARK_WAIT_S = 0.010


def warm(data_dir: str):
    """Everything a forked process would otherwise do first: imports, the data set, a first seed."""
    import torch
    torch.set_num_threads(1)
    import fastseed.jobs as jobs
    import fastseed.merge  # noqa: F401
    import fastseed.scan  # noqa: F401
    import fastseed.workers.pool  # noqa: F401
    from fastseed.data import cifar
    from fastseed.recipe.overrides import resolve_protocol
    data = cifar.load_cifar10(data_dir)
    cifar.load_cifar10 = lambda *args, **kwargs: data  # where a job reads it (jobs calls cifar.load_cifar10)
    tensors, to_tensors = jobs.to_tensors(data, "cpu"), jobs.to_tensors
    jobs.to_tensors = lambda arrays, device: tensors if arrays is data and str(device) == "cpu" else \
        to_tensors(arrays, device)  # shared by every fork (training only reads it), not copied by each
    tiny = resolve_protocol("smoke", ["width=0.0625", "train_size=100", "test_size=100", "batch_size=50",
                                      "chunk_size=50", "epochs=2", "eval_batch_size=100"])
    job = jobs.make_job(tiny, jobs.Options(device="cpu"))
    job.load()
    job.train([0], lambda record: None, stop_flag=False)


def traced(connect):
    def connect_traced(*args, **kwargs):
        conn = connect(*args, **kwargs)
        path = os.environ.get("FAULTS_MARKS")
        if path:
            conn.set_trace_callback(lambda statement: mark(path, statement))
        return conn
    return connect_traced


FIRST = [True]  # the next insert is its transaction's first


def mark(path: str, statement: str) -> None:
    """A line for every record inserted and every commit; a wait after a transaction's first insert and
    before its commit, so that a signal sent on that line lands inside the transaction."""
    kind = "insert" if statement.startswith("INSERT INTO records") else "commit" if statement == "COMMIT" else None
    if kind is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{os.getpid()} {kind}\n".encode())
    os.close(fd)
    if kind == "commit" or FIRST[0]:
        time.sleep(MARK_WAIT_S)
    FIRST[0] = kind == "commit"


def fresh_streams(out_fd: int, err_fd: int) -> None:
    """The forked process's stdout and stderr on these descriptors, as new objects (a lock or a buffer
    of this process's must not be inherited half-used)."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def forked(run, *, out_fd: int, err_fd: int, marks: str, tag, cwd: str | None = None, session: bool = False) -> int:
    """Fork a process that runs `run()` (its exit code) with the stop signals blocked; its pid."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid
    code = 1
    try:
        if session:
            os.setsid()
        for s in STOP_SIGNALS + (signal.SIGCHLD,):
            signal.signal(s, signal.SIG_DFL)
        fresh_streams(out_fd, err_fd)
        os.environ["FAULTS_MARKS"], os.environ["FAULTS_TAG"] = marks, str(tag)
        if cwd is not None:
            os.chdir(cwd)
        code = run()
        sys.stdout.flush()
        sys.stderr.flush()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 (printed: the harness fails a moment on a traceback)
        traceback.print_exc()
    os._exit(code)


def command_line(main, name: str, argv: list) -> int:
    """`main()` as `python -m fastseed.NAME ARGV` calls it: without arguments, from sys.argv."""
    sys.argv = [f"python -m fastseed.{name}", *argv]
    return main()


class Server:
    def __init__(self, data_dir: str):
        warm(data_dir)
        sqlite3.connect = traced(sqlite3.connect)
        self.tags = {}         # pid → tag of every process forked here and not reaped yet
        self.workers = {}      # worker pid → the socket its parent waits on for its exit code
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.address = f"\0fastseed-faults-{os.getpid()}"  # abstract: no file to leave behind
        self.listener.bind(self.address)
        self.listener.listen(64)
        import fastseed.workers.pool as pool
        pool._spawn = worker_spawner(self.address)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the test run is the harness's to handle

    def say(self, message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def spawn(self, request: dict) -> None:
        import fastseed.merge
        import fastseed.scan
        command = {"scan": fastseed.scan.main, "merge": fastseed.merge.main}[request["command"]]
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        pid = forked(lambda: command_line(command, request["command"], request["argv"]), out_fd=out, err_fd=err,
                     marks=request["marks"],
                     tag=request["tag"], cwd=request["cwd"])
        os.close(out)
        os.close(err)
        self.tags[pid] = request["tag"]
        self.say({"spawned": pid, "tag": request["tag"]})
        self.say({"pid": pid})

    def worker(self, conn: socket.socket) -> None:
        """A pool's worker, asked for by its parent: forked here, its output a pipe whose read end goes
        back to the parent over the socket; the socket later carries its exit code. A parent that has
        ended (reaped already) gets none: a real pool's parent that died had started no child either."""
        from fastseed.workers.local import child_main
        parent = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        try:
            request = json.loads(conn.makefile().readline())
        except ValueError:  # its parent died while asking
            request = None
        if request is None or parent not in self.tags:
            conn.close()
            return
        read, write = os.pipe()
        pid = forked(lambda: child_main(request["spec"]), out_fd=write, err_fd=write, marks=request["marks"],
                     tag=request["tag"], session=True)
        os.close(write)
        socket.send_fds(conn, [json.dumps({"pid": pid}).encode() + b"\n"], [read])
        os.close(read)
        self.tags[pid] = request["tag"]
        self.workers[pid] = conn
        self.say({"spawned": pid, "tag": request["tag"]})

    def fill(self, path: str) -> int:
        written = 0
        with open(path, "wb", buffering=0) as f:
            try:
                while True:
                    written += f.write(bytes(1 << 16))
            except OSError:
                pass
        return written

    def reap(self) -> None:
        while self.tags:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            conn = self.workers.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"code": code}).encode() + b"\n")
                except OSError:
                    pass  # its parent is gone
                conn.close()
            self.say({"exit": pid, "code": code, "tag": self.tags.pop(pid, None)})

    def serve(self) -> None:
        self.say({"ready": os.getpid()})
        while True:
            ready, _, _ = select.select([sys.stdin, self.listener], [], [], 0.005)
            self.reap()  # first: a worker is not started for a parent that has ended
            if self.listener in ready:
                conn, _ = self.listener.accept()
                self.worker(conn)
            if sys.stdin in ready:
                line = sys.stdin.readline()
                if not line:
                    return
                request = json.loads(line)
                if request["op"] == "spawn":
                    self.spawn(request)
                elif request["op"] == "fill":
                    self.say({"filled": self.fill(request["path"])})
                elif request["op"] == "free":
                    if os.path.exists(request["path"]):
                        os.unlink(request["path"])
                    self.say({"freed": request["path"]})
            self.reap()


class Worker:
    """A pool's worker forked by the server, as `pool.scan_pool` sees a `subprocess.Popen`."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        message, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        self.pid = json.loads(message)["pid"]
        self.stdout = open(fds[0], "r", buffering=1, errors="replace")
        self.returncode = None
        self._buffer = b""

    def poll(self):
        if self.returncode is None:
            self.conn.setblocking(False)
            try:
                chunk = self.conn.recv(1024)
            except BlockingIOError:
                chunk = None
            if chunk is not None:
                self._buffer += chunk
                if b"\n" in self._buffer or not chunk:
                    self.returncode = json.loads(self._buffer)["code"] if self._buffer.strip() else -9
        return self.returncode

    def wait(self, timeout=None):
        import subprocess
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("worker", timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


def worker_spawner(address: str):
    def spawn(name: str, device: str, spec: dict):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(address)
        options = dict(spec["options"], device=device)
        request = {"spec": dict(spec, options=options), "marks": os.environ.get("FAULTS_MARKS", ""),
                   "tag": os.environ.get("FAULTS_TAG")}
        conn.sendall(json.dumps(request).encode() + b"\n")
        return Worker(conn)
    return spawn


if __name__ == "__main__":
    Server(sys.argv[1]).serve()
