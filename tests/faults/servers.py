"""The processes of the fault harness: the fork server (zygote.py) as the harness drives it, the one
local Ray cluster of every Ray moment, and a real `python -m fastseed.scan`."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WAIT_S = 300  # for every process of a moment to end (a loaded machine)
# the harness's own cluster, reached only from this machine: no token to share with its drivers
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class Zygote:
    """The fork server (zygote.py) as the harness drives it: spawn, learn exits, fill a disk."""

    def __init__(self, data_dir: Path, disks: list[Path] = (), size: str = "16m"):
        argv = [sys.executable, str(HERE / "zygote.py"), str(data_dir)]
        if disks:  # root of a new user and mount namespace, a tmpfs of `size` at each of `disks`
            mounts = "".join(f'mount -t tmpfs -o size={size} tmpfs "{disk}"; ' for disk in disks)
            argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec", f'{mounts}exec "$0" "$@"', *argv]
        env = dict(os.environ, **RAY_ENV, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.pop("FASTSEED_DATA", None)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lock, self.changed = threading.Lock(), threading.Condition()
        self.replies: queue.Queue = queue.Queue()
        self.live: dict = defaultdict(set)   # tag → pids running
        self.codes: dict = {}                # pid → exit code
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"the fork server did not start (exit {self.proc.wait()})")
        self.pid = json.loads(first)["ready"]
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.changed:
                if "spawned" in message:
                    self.live[str(message["tag"])].add(message["spawned"])
                elif "exit" in message:
                    self.codes[message["exit"]] = message["code"]
                    self.live[str(message["tag"])].discard(message["exit"])
                    self.changed.notify_all()
                else:
                    self.replies.put(message)

    def ask(self, request: dict) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return self.replies.get(timeout=WAIT_S)

    def spawn(self, command: str, argv: list, cwd: Path, tag: str) -> int:
        return self.ask({"op": "spawn", "tag": tag, "command": command, "argv": [str(a) for a in argv],
                         "cwd": str(cwd), "stdout": str(cwd / "stdout"), "stderr": str(cwd / "stderr"),
                         "marks": str(cwd / "marks")})["pid"]

    def code(self, pid: int) -> int | None:
        with self.changed:
            return self.codes.get(pid)

    def wait_all(self, tag: str, timeout: float = WAIT_S) -> bool:
        """Until every process of `tag` (the command, a pool's workers) has ended."""
        with self.changed:
            return self.changed.wait_for(lambda: not self.live[tag], timeout)

    def seen(self, path: Path) -> Path:
        """`path` as this process sees it (a tmpfs in the server's mount namespace: through /proc)."""
        return Path(f"/proc/{self.pid}/root") / str(path).lstrip("/")

    def close(self) -> None:
        """The server holds nothing to save: killed, not left to unload torch."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class RayCluster:
    """One local Ray cluster for every Ray moment: `ray start --head` in a session of its own (so
    stopping it kills what it started, and nothing of anyone else's Ray on this machine)."""

    def __init__(self, root: Path, cpus: int = 4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.temp = Path(f"/tmp/ray-faults-{os.getpid()}")  # short: Ray's socket paths have a limit
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        env = dict(os.environ, **RAY_ENV, OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.log = open(root / "ray.log", "w")
        self.proc = subprocess.Popen([ray, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}",
                                      "--num-gpus=0", f"--temp-dir={self.temp}", "--include-dashboard=false",
                                      "--object-store-memory=1000000000", "--node-ip-address=127.0.0.1"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed: {(root / 'ray.log').read_text()[-2000:]}")
                time.sleep(0.2)

    def close(self) -> None:
        """Everything it started, at once (a SIGTERM would drain the node for 30 s): its session, and
        the workers whose command line names its temp folder."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(self.temp) in (proc / "cmdline").read_text():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def fresh(argv: list, logs: Path) -> subprocess.Popen:
    """A real `python -m fastseed.scan`: the interpreter, the imports, the data read and checked."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("FASTSEED_DATA", None)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "fastseed.scan", *map(str, argv)], cwd=logs, env=env,
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
