"""scripts/torture's `firstlaw` section: #19's self-checking targets
(tests/fixtures/py/first_law.py) on every interpreter of the matrix, each
put through --run, a prompt session, pdb and dump many times (20 rounds a
full run, 2 with --quick) and then asked what changed. `cargo test` runs
each once (crates/cli/tests/run_first_law.rs); this is the repetition."""
import glob
import os
import random
import signal
import subprocess
import tempfile
import threading
import time


def interpreters():
    """pyenv's 2.7 and 3.6+ builds, and Debian's /usr/bin/python3.11."""
    found = []
    root = os.path.expanduser(os.environ.get("PYENV_ROOT", "~/.pyenv"))
    for exe in sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python"))):
        version = exe.split(os.sep)[-3]
        if version.startswith("2.7") or version.startswith("3."):
            found.append(("pyenv " + version, exe))
    if os.path.exists("/usr/bin/python3.11"):
        found.append(("debian 3.11", "/usr/bin/python3.11"))
    return found


class Case:
    """first_law.py in one of its cases; killed by pid when closed."""

    def __init__(self, T, python, case, flag=None):
        env = dict(os.environ, PYATTACH_CASE=case)
        if flag:
            env["PYATTACH_FLAG"] = flag
        fixture = os.path.join(T.ROOT, "tests", "fixtures", "py", "first_law.py")
        self.proc = subprocess.Popen([python, "-u", fixture], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.pid = self.proc.pid
        self.lines = []
        threading.Thread(target=self._drain, daemon=True).start()
        if not self.wait_for("READY", 30):
            raise RuntimeError("%s %s did not start: %r" % (python, case, self.lines[-5:]))

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix, timeout):
        end = time.time() + timeout
        while self.line(prefix) is None:
            if time.time() > end or self.proc.poll() is not None:
                # An exited process's last lines may still be draining.
                time.sleep(0.1)
                return self.line(prefix) is not None
            time.sleep(0.02)
        return True

    def line(self, prefix):
        for line in list(self.lines):
            if line.startswith(prefix):
                return line[len(prefix):]
        return None

    def ticking(self):
        n = sum(1 for l in list(self.lines) if l.startswith("TICK"))
        time.sleep(0.3)
        return sum(1 for l in list(self.lines) if l.startswith("TICK")) > n

    def close(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()


def sessions(T, args, pid, pdb=True):
    """--run, a prompt, pdb (left with c) and dump, once each; the
    failures, described."""
    runs = [("--run", ["--run", "x = 1", pid], None, 0),
            ("prompt", [pid], b"y = 2\n", 0),
            ("dump", ["dump", pid], None, 0)]
    if pdb:
        runs.insert(2, ("pdb", ["--pdb", pid], b"c\n", 0))
    bad = []
    for what, argv, stdin, want in runs:
        r = T.pyattach(args.bin, *argv, stdin=stdin, timeout=60)
        if r.returncode != want or r.hung:
            bad.append("%s: status %s %s" % (what, r.returncode, r.text()[-200:].strip()))
    return bad


def section(T):
    def section_firstlaw(args, report):
        """#19's targets, many rounds of every kind of session on every
        interpreter: nothing they notice changes."""
        rounds = 2 if args.quick else int(os.environ.get("TORTURE_FIRSTLAW_ROUNDS", 20))
        rng = random.Random(args.seed)
        for name, python in interpreters():
            lost = {"shadow": 0, "threading": 0, "leftovers": 0, "sigterm": 0}
            notes = {}
            # shadow: __main__'s own compile/eval/exec/... never called.
            t = Case(T, python, "shadow")
            try:
                for _ in range(rounds):
                    bad = sessions(T, args, t.pid)
                    if bad:
                        lost["shadow"] += 1
                        notes.setdefault("shadow", bad[0])
                if any(l.startswith("SHADOW") for l in t.lines) or not t.ticking():
                    lost["shadow"] += 1
                    notes.setdefault("shadow", " ".join(l for l in t.lines if l.startswith("SHADOW"))[:200])
            finally:
                t.close()
            # late_threading and leftovers: asked once all rounds are done.
            with tempfile.TemporaryDirectory() as tmp:
                flag = os.path.join(tmp, "flag")
                t = Case(T, python, "late_threading", flag)
                try:
                    for _ in range(rounds):
                        if sessions(T, args, t.pid):
                            lost["threading"] += 1
                    open(flag, "w").close()
                    if not t.wait_for("THREADING", 10) or not (t.line("THREADING ") or "").startswith("ok"):
                        lost["threading"] += 1
                        notes.setdefault("threading", str(t.lines[-3:]))
                finally:
                    t.close()
                os.unlink(flag)
                t = Case(T, python, "leftovers", flag)
                try:
                    for _ in range(rounds):
                        # pdb imports pdb's own modules, as the README says.
                        if sessions(T, args, t.pid, pdb=False):
                            lost["leftovers"] += 1
                    open(flag, "w").close()
                    t.wait_for("LINECACHE", 10)
                    sys_new = t.line("SYS ")
                    if sys_new != "['_pyattach_claims', '_pyattach_code']" or t.line("LINECACHE ") != "[]":
                        lost["leftovers"] += 1
                        notes.setdefault("leftovers", "SYS %s LINECACHE %s" % (sys_new, t.line("LINECACHE ")))
                finally:
                    t.close()
            # sigterm: the handler's SystemExit(0) reaches the application,
            # the signal sent at a random moment of a second's --run.
            for i in range(rounds):
                t = Case(T, python, "sigterm")
                try:
                    argv = [args.bin, "--run", "import time; time.sleep(1)"]
                    if i % 2:
                        argv += ["--thread", str(t.pid)]
                    p = subprocess.Popen(argv + [str(t.pid)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                    time.sleep(rng.uniform(0.05, 0.95))
                    os.kill(t.pid, signal.SIGTERM)
                    try:
                        code = t.proc.wait(15)
                    except subprocess.TimeoutExpired:
                        code = None
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        os.kill(p.pid, signal.SIGKILL)
                        p.wait()
                    if code != 0 or not t.wait_for("EXITING", 5):
                        lost["sigterm"] += 1
                        notes.setdefault("sigterm", "status %s, %s" % (code, t.lines[-2:]))
                finally:
                    t.close()
            for what, n in lost.items():
                report.add("%s: %s after %d rounds of --run, prompt, pdb, dump" % (name, what, rounds)
                           if what != "sigterm" else "%s: SIGTERM's SystemExit during --run" % name,
                           rounds + (0 if what == "sigterm" else 1), n, notes.get(what, ""))
    return {"firstlaw": section_firstlaw}
