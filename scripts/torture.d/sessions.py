"""scripts/torture's interactive sections: the prompt on a serving target,
and --run, the prompt and pdb in monkey-patched (gevent, eventlet,
gunicorn -k gevent) servers. `sections(T)` gets torture's own namespace
(Target, Load, PdbTerminal, pyattach, debugger_left, ...), so both files
share one notion of a target, a request and a loss."""
import os
import random
import subprocess
import threading
import time

# What a prompt session types: a statement, a block with a blank line in
# it, a print; CPython's prompt runs each as it completes.
SESSION = (
    "x = {i}\n"
    "for k in range(3):\n"
    "    x += k\n"
    "\n"
    "print('x', x)\n"
)

# After every kind of session: no interactive marker left in the target.
LEFT_BEHIND = (
    "import sys, builtins\n"
    "print(sorted(n for n in ('ps1', 'ps2', 'last_type', 'last_value', "
    "'last_traceback') if hasattr(sys, n)), hasattr(builtins, '_'))\n"
)


def sections(T):
    def section_prompt(args, report):
        """Prompt sessions under load: piped, typed ahead on a pty, and
        pyattach SIGKILLed in the middle of one; nothing left behind."""
        t = T.Target(args.python)
        rng = random.Random(args.seed)
        n = max(args.runs // 10, 5)
        try:
            t.get("/")
            T.pyattach(args.bin, "--run", "pass", t.pid)
            # The load alone first: a thread per request makes glibc
            # create its malloc arenas, mappings of the target's own.
            warm = T.Load(t)
            time.sleep(1.5)
            warm.finish()
            time.sleep(0.3)
            before = t.resources()
            maps0 = mappings(t.pid)
            marks = T.pyattach(args.bin, "--run", LEFT_BEHIND, t.pid).stdout
            load = T.Load(t)
            lost = 0
            for i in range(n):
                r = T.pyattach(args.bin, t.pid, stdin=SESSION.format(i=i).encode())
                if r.returncode != 0 or r.stdout != b"x %d\n" % (i + 3):
                    lost += 1
                    if lost <= 3:
                        T.failure(r, "prompt")
            report.add("piped prompt sessions under load (a block, a blank line)", n, lost)
            lost = 0
            for i in range(n):
                term = T.PdbTerminal(args.bin, t.pid, opts=())
                # Typed ahead: all three lines before the first prompt.
                term.send("y = %d\ry += 1\rprint('y', y)\r" % i)
                # Ctrl-D once the next prompt is up: typed while a
                # statement runs, CPython's own prompt loses it too (the
                # terminal is not in raw mode then).
                ok = term.expect(b"y %d" % (i + 1)) and term.expect(b">>> ")
                term.send("\x04")
                status = term.close()
                if not ok or status != 0:
                    lost += 1
                    if lost <= 3:
                        print("    status %s, screen %r" % (status, term.screen[-300:]))
            report.add("typed-ahead prompt sessions on a pty", n, lost)
            load.finish()
            report.add("HTTP requests during the prompt sessions", load.ok + len(load.failed), len(load.failed),
                       load.failed[0] if load.failed else "")
            # Without the load: healthy() also says whether the target
            # spins, which a client's requests would blur.
            lost = 0
            for _ in range(args.kills):
                term = T.PdbTerminal(args.bin, t.pid, opts=())
                term.expect(b">>> ")
                term.send("import time; time.sleep(0.05)\r")
                time.sleep(rng.uniform(0, args.kill_window))
                term.kill()
                if not t.healthy(timeout=10):
                    lost += 1
                    if not t.alive():
                        break
            report.add("SIGKILL of pyattach during a prompt session, target unharmed", args.kills, lost)
            after = T.pyattach(args.bin, "--run", LEFT_BEHIND, t.pid).stdout
            report.add("no sys.ps1/ps2/last_*, builtins._ left", 1, int(after != marks or not after),
                       "before %r, after %r" % (marks, after))
            leaked = [l for l in t.lines if l.startswith(("x ", "y ", ">>>"))]
            report.add("nothing of the sessions on the target's stdout", 1, int(bool(leaked)), " ".join(leaked[:3]))
            time.sleep(0.5)
            odd = unexplained(mappings(t.pid) - maps0)
            report.add("no mapping left but glibc's arenas and stack cache, and ctypes", 1, int(bool(odd)),
                       " / ".join(odd[:3]))
            T.settle(t, before, report, "target resources after the sessions",
                     {"fds": 2, "threads": 2, "rss_kb": 16384, "maps": None})
        finally:
            t.close()

    def section_green(args, report):
        """--run, the prompt and pdb in gevent, eventlet and gunicorn -k
        gevent servers under a steady client: nothing lost, no stall."""
        fixture = os.path.join(T.ROOT, "tests", "fixtures", "py", "green_server.py")
        have = subprocess.run([args.python, "-c", "import gevent, eventlet, gunicorn"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        if not have:
            print("NOTE: skipping because %s lacks gevent, eventlet or gunicorn (run scripts/setup)" % args.python)
            return
        n = max(args.runs // 10, 5)
        for kind in ("gevent", "eventlet", "gunicorn"):
            t = T.Target(args.python, extra=[kind], fixture=fixture)
            try:
                t.get("/")
                load = GreenLoad(t)
                failed = {"--run": 0, "prompt": 0, "pdb": 0}
                for i in range(n):
                    r = T.pyattach(args.bin, "--run", "print(%d)" % i, t.pid)
                    failed["--run"] += int(r.returncode != 0 or r.stdout != b"%d\n" % i)
                    r = T.pyattach(args.bin, t.pid, stdin=b"print(%d * 2)\n" % i)
                    failed["prompt"] += int(r.returncode != 0 or r.stdout != b"%d\n" % (2 * i))
                    r = T.pyattach(args.bin, "--pdb", t.pid, stdin=b"p %d\nc\n" % i)
                    failed["pdb"] += int(r.returncode != 0 or (b"(Pdb) %d\n" % i) not in r.stdout)
                    if r.returncode != 0 and sum(failed.values()) <= 3:
                        T.failure(r, kind)
                load.finish()
                for what, lost in failed.items():
                    report.add("%s: %s while it serves" % (kind, what), n, lost)
                report.add("%s: HTTP requests meanwhile (none over %.0f s)" % (kind, T.STALL),
                           load.ok + len(load.failed), len(load.failed),
                           load.failed[0] if load.failed else "slowest %.0f ms" % (1000 * load.worst))
                left = T.debugger_left(args.bin, t.pid)
                report.add("%s: no debugger left" % kind, 1, int(bool(left)), left)
            finally:
                t.close()

    return {"prompt": section_prompt, "green": section_green}


def mappings(pid):
    """The target's mappings, as lines of /proc/PID/maps without the
    ranges' current sizes folded in (a heap that grew is one line)."""
    with open("/proc/%d/maps" % pid) as f:
        return set(f.read().splitlines())


def unexplained(added):
    """The added mappings that are not glibc's doing or ctypes': anonymous
    read-write ones (with their PROT_NONE reserve) are the malloc arenas
    and cached thread stacks glibc keeps once pyattach's threads have run
    beside the application's (bounded by glibc: 8 arenas per core, a 40
    MiB stack cache); _ctypes and libffi are loaded when a running
    statement must be interrupted (Ctrl-C, or pyattach gone). Anything
    else, an executable page above all, is pyattach's and a loss."""
    odd = []
    for line in sorted(added):
        f = line.split()
        path = f[5] if len(f) > 5 else ""
        if not path and f[1] in ("rw-p", "---p"):
            continue
        if "_ctypes" in path or "libffi" in path:
            continue
        odd.append(line)
    return odd


class GreenLoad:
    """One client, a request every 10 ms; a request slower than STALL is
    a loss, as a failed one is."""

    def __init__(self, target, stall=1.0):
        self.target, self.stall = target, stall
        self.ok, self.failed, self.worst = 0, [], 0.0
        self.stop = threading.Event()
        self.worker = threading.Thread(target=self._run, daemon=True)
        self.worker.start()

    def _run(self):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                body = self.target.get("/", timeout=10)
                took = time.time() - t0
                self.worst = max(self.worst, took)
                if not body.startswith("ok ") or took > self.stall:
                    self.failed.append("%r after %.2f s" % (body[:40], took))
                else:
                    self.ok += 1
            except Exception as e:
                self.failed.append(repr(e))
            time.sleep(0.01)

    def finish(self):
        self.stop.set()
        self.worker.join()
