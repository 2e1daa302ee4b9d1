# -- pdb for exactly as long as the session lasts (mode 'pdb') --------
# The caught thread runs this at its safe point, on top of the frames the
# application was executing: the first stop is that application frame,
# shown at once (the thread may be blocked for long in the call it made),
# and the thread then goes back to the application under the debugger.
# Breakpoints are hit in any thread; one thread at a time talks to
# pyattach. When the session ends for any reason (q, Ctrl-D, `detach`, c
# with no breakpoint left, pyattach gone or the channel broken), finish()
# takes every trace function and breakpoint back; a thread whose trace
# function cannot be reached from here drops it itself at its next event.
# pdb's own input and output are the channel, never the target's streams.
#
# Trace functions of threads other than the one running this: 3.12+ have
# sys._settraceallthreads; 3.9-3.11 export _PyEval_SetTrace(tstate, ...),
# called with the C trampoline that sys.settrace put in this thread's
# state; 2.7 and 3.6-3.8 have neither, and get the three fields that
# PyEval_SetTrace sets written into the other threads' states, at the
# places where this thread's own sys.settrace is seen to write them, and
# the interpreter's count of traced threads moved as it would (see count).
# New threads get it from threading.settrace.
def debug(sess):
    """Mode 'pdb': the first stop, then the application runs on under the
    debugger until the session ends."""
    d = None
    try:
        frame, owner = app_frame()
        d = debugger_class()(sess)
        sess.interrupt = d.on_interrupt
        # The reader thread runs no application code but may call some
        # (Tab completion): it never stops, nor waits for the prompt.
        d.quiet.add(thread.start_new_thread(sess.reader, ()))
        d.begin(frame, owner)
    except BaseException:
        if d is not None:
            d.finish()
        else:
            sess.close()


def run_with_pdb(sess, run):
    """Mode 'run': `run(sess)`, with breakpoint() and pdb.set_trace()
    called in the code's thread opening this debugger (other threads get
    what they had). It stops where it is called and lasts until the
    session ends, with the code or before."""
    code = sess.P['code']
    hooks = []

    def enter(frame):
        d = debugger_class()(sess)
        d.owns = False
        d.fallback, sess.interrupt = sess.interrupt, d.on_interrupt
        d.begin(frame, thread.get_ident())

    def hook(orig):
        def hooked(*a, **k):
            if thread.get_ident() != sess.ident:
                return orig(*a, **k)
            enter(sys._getframe(1))
        return hooked

    try:
        if b'breakpoint' in code and hasattr(sys, 'breakpointhook'):
            hooks.append((sys, 'breakpointhook', sys.breakpointhook))
        if b'set_trace' in code:
            import pdb
            hooks.append((pdb, 'set_trace', pdb.set_trace))
        for i, (obj, name, orig) in enumerate(hooks):
            hooks[i] += (hook(orig),)
            setattr(obj, name, hooks[i][3])
    except Exception:
        pass
    try:
        run(sess)
    finally:
        for h in hooks:
            try:
                if len(h) == 4 and getattr(h[0], h[1]) is h[3]:
                    setattr(h[0], h[1], h[2])
            except Exception:
                pass


def app_frame():
    """The frame the caught thread was executing, and that thread's id;
    for a thread of pyattach's own (no application frame below), the main
    thread's."""
    f = sys._getframe(1)
    while f is not None and ours(f):
        f = f.f_back
    if f is not None:
        return f, thread.get_ident()
    import threading
    frames = sys._current_frames()
    main = [t.ident for t in threading.enumerate()
            if isinstance(t, threading._MainThread)]
    for ident in main + list(frames):
        f = frames.get(ident)
        while f is not None and ours(f):
            f = f.f_back
        if f is not None:
            return f, ident
    raise RuntimeError('pyattach: no application frame')


def bottom(frame):
    while frame.f_back is not None:
        frame = frame.f_back
    return frame


class Tracing(object):
    """Trace functions in threads other than the calling one (see the top
    of this part)."""

    def __init__(self):
        self.off = self.tramp = self.use = None
        self.api = None

    def learn(self, tracer):
        """Seen in this thread with `tracer` as its trace function: where a
        thread state holds it, the C trampoline beside it and, before 3.9,
        the flag that turns tracing on (seen by setting it again)."""
        if self.off is not None:
            return
        prev = sys.gettrace()
        try:
            if prev is not tracer:
                sys.settrace(tracer)
            import ctypes
            api = ctypes.PyDLL(None)
            P = ctypes.c_void_p
            for name, res, args in (
                    ('PyThreadState_Get', P, []),
                    ('PyInterpreterState_Head', P, []),
                    ('PyInterpreterState_Next', P, [P]),
                    ('PyInterpreterState_ThreadHead', P, [P]),
                    ('PyThreadState_Next', P, [P]),
                    ('Py_IncRef', None, [ctypes.py_object]),
                    ('Py_DecRef', None, [ctypes.py_object])):
                f = getattr(api, name)
                f.restype, f.argtypes = res, args
            if (3, 9) <= sys.version_info < (3, 12):
                f = api._PyEval_SetTrace
                f.restype, f.argtypes = ctypes.c_int, [P] * 3
            me = api.PyThreadState_Get()
            w = (P * 32).from_address(me)
            # c_profilefunc, c_tracefunc, c_profileobj, c_traceobj, in that
            # order in every version since 2.7, within the first 32 words
            # (read one by one up to it: 2.7's state is not much longer).
            off = 3
            while off < 32 and w[off] != id(tracer):
                off += 1
            if off == 32 or not w[off - 2] or w[off - 3]:
                return
            if sys.version_info < (3, 9):
                # The int turned from 0 to 1 just before c_profilefunc:
                # use_tracing (`tracing`, the one before it, stays 0).
                n = (off - 3) * 8
                on = ctypes.string_at(me, n)
                sys.settrace(None)
                off_ = ctypes.string_at(me, n)
                sys.settrace(tracer)
                use = [j for j in range(n - 8, n, 4)
                       if off_[j:j + 4] == b'\0' * 4 and
                       on[j:j + 4] == struct.pack('=i', 1)]
                if len(use) != 1 or use[0] < 4:
                    return
                self.use = use[0]
            self.api, self.off, self.tramp = api, off, w[off - 2]
        except Exception:
            pass
        if prev is not tracer:
            sys.settrace(prev)

    def states(self):
        """(thread state, its trace object's id or None), other threads."""
        import ctypes
        api = self.api
        me = api.PyThreadState_Get()
        # This interpreter's threads: the list that holds this one.
        interp = api.PyInterpreterState_Head()
        while interp:
            out, found = [], False
            ts = api.PyInterpreterState_ThreadHead(interp)
            while ts:
                if ts == me:
                    found = True
                else:
                    out.append((ts, (ctypes.c_void_p * (self.off + 1))
                                .from_address(ts)[self.off]))
                ts = api.PyThreadState_Next(ts)
            if found:
                return out
            interp = api.PyInterpreterState_Next(interp)
        raise RuntimeError('pyattach: this thread is in no interpreter')

    def put(self, ts, tracer, on):
        """Before 3.9: what PyEval_SetTrace does, for another thread's
        state (the GIL is held, and its thread only reads these fields
        with the GIL). Its `use_tracing` is left alone while it is inside
        a trace or profile function: it recomputes it on the way out."""
        import ctypes
        w = (ctypes.c_void_p * (self.off + 1)).from_address(ts)
        flags = (ctypes.c_int * 2).from_address(ts + self.use - 4)
        if on:
            self.api.Py_IncRef(tracer)
            w[self.off - 2], w[self.off] = self.tramp, id(tracer)
        else:
            w[self.off - 2] = w[self.off] = None
        if flags[0] == 0:
            flags[1] = int(on or bool(w[self.off - 3]))
        if not on:
            self.api.Py_DecRef(tracer)

    def count(self, delta):
        """Before 3.9, CPython counts the threads that have a trace
        function (line events need it non-zero), and a thread's own
        sys.settrace moves it: moves it by `delta` (1 or -1) for a thread
        whose fields put() writes, through this thread's own sys.settrace,
        this thread's fields left as they were. False if this thread's
        trace function is not a Python one (then nothing is done)."""
        import ctypes
        me = self.api.PyThreadState_Get()
        w = (ctypes.c_void_p * (self.off + 1)).from_address(me)
        mine = sys.gettrace()
        if mine is None:
            if w[self.off - 2]:
                return False
            if delta > 0:
                sys.settrace(_noop)
                self.put(me, _noop, False)
            else:
                self.put(me, _noop, True)
                sys.settrace(None)
        else:
            if w[self.off - 2] != self.tramp:
                return False
            if delta > 0:
                self.put(me, mine, False)
                sys.settrace(mine)
            else:
                sys.settrace(None)
                self.put(me, mine, True)
        return True

    def install(self, tracer):
        """`tracer` in every other thread that has no trace function."""
        if self.off is None:
            return
        try:
            if sys.version_info >= (3, 12):
                if all(t is None or t == id(tracer)
                       for _, t in self.states()):
                    sys._settraceallthreads(tracer)
                return
            for ts, t in self.states():
                if t is not None:
                    continue
                if sys.version_info >= (3, 9):
                    self.api._PyEval_SetTrace(ts, self.tramp, id(tracer))
                elif self.count(1):
                    self.put(ts, tracer, True)
        except Exception:
            pass

    def remove(self, tracer):
        """`tracer` out of every other thread; True if none keeps it."""
        if self.off is None:
            return False
        try:
            states = self.states()
            if sys.version_info >= (3, 12):
                if all(t is None or t == id(tracer) for _, t in states):
                    mine = sys.gettrace()
                    sys._settraceallthreads(None)
                    if mine is not None and mine is not tracer:
                        sys.settrace(mine)
                    return True
                return False
            for ts, t in states:
                if t != id(tracer):
                    continue
                if sys.version_info >= (3, 9):
                    self.api._PyEval_SetTrace(ts, None, None)
                else:
                    self.put(ts, tracer, False)
                    self.count(-1)
            return True
        except Exception:
            return False


def _noop(frame, event, arg):
    return None


class NoReadline(object):
    """pdb and code.interact import readline to tune it: that module
    belongs to the application's terminal, and some builds write to
    stdout as they load it. pdb does without (its input is the channel)."""

    def __enter__(self):
        self.had = 'readline' in sys.modules
        if not self.had:
            sys.modules['readline'] = None

    def __exit__(self, *exc):
        if not self.had and sys.modules.get('readline', 0) is None:
            del sys.modules['readline']


_debugger = []


def debugger_class():
    """pdb.Pdb's subclass, defined on first use (importing pdb costs
    milliseconds that no other mode should pay)."""
    if _debugger:
        return _debugger[0]
    with NoReadline():
        import bdb
        import cmd
        import pdb

    class Debugger(pdb.Pdb):
        def __init__(self, sess):
            kw = {'skip': ['__pyattach__']}
            if PY3:
                kw['nosigint'] = True  # never the target's SIGINT handler
            if sys.version_info >= (3, 6):
                kw['readrc'] = False  # never the target's .pdbrc
            d = self

            class PdbIn(In):
                def readline(self, size=-1):
                    d.prompting = True
                    line = ''
                    try:
                        line = sess.readline('')
                        return line
                    finally:
                        # From here a Ctrl-C is for the command the line
                        # starts (see onecmd).
                        with d.xlock:
                            d.prompting = False
                            if line:
                                d.cmd_ident = thread.get_ident()
                                d.kbd = False

            if PY3:
                with NoReadline():
                    pdb.Pdb.__init__(self, stdin=PdbIn(sess),
                                     stdout=Out(sess, b'O'), **kw)
            else:
                # 2.7's pdb.Pdb.__init__ without what it does besides:
                # import readline and read the target's .pdbrc files (any
                # file there, a FIFO would hold this thread for good).
                bdb.Bdb.__init__(self, skip=kw['skip'])
                cmd.Cmd.__init__(self, 'tab', PdbIn(sess), Out(sess, b'O'))
                self.aliases = {}
                self.mainpyfile = ''
                self._wait_for_mainpyfile = 0
                self.commands = {}
                self.commands_doprompt = {}
                self.commands_silent = {}
                self.commands_defining = False
                self.commands_bnum = None
            self.rcLines = []
            self.use_rawinput = 0
            self.prompt = '(Pdb) '
            self.sess = sess
            self.done = False
            self.prompting = False
            self.owner = thread.get_ident()
            # One thread at a time at the prompt.
            self.term = thread.allocate_lock()
            # One object, so every thread's trace function can be told as
            # ours.
            self.tracer = self.trace_dispatch
            self.tracing = Tracing()
            self.hook = None
            self.quiet = set()
            # Mode 'pdb': the session is the debugger's; mode 'run': the
            # code's, and Ctrl-C goes to the code once the debugger is
            # done (`fallback`).
            self.owns = True
            self.fallback = None
            # A command running at the prompt (Ctrl-C interrupts it), and
            # whether a KeyboardInterrupt was sent its way.
            self.xlock = thread.allocate_lock()
            self.cmd_ident = None
            self.kbd = False

        # -- the session's life --------------------------------------
        def begin(self, frame, owner):
            self.reset()
            if owner != thread.get_ident():
                self.stdout.write(
                    '(pyattach got in through a thread of its own: this is '
                    'where the main thread is; it runs on until a command '
                    'such as n or s stops it)\n')
            self.interaction(frame, None)
            if self.done:
                return
            self.owner = owner
            f = frame
            while f is not None:
                f.f_trace = self.tracer
                f = f.f_back
            self.resume(owner)

        def resume(self, ident=None):
            """After a stop: the stopped thread (`ident`) goes on under
            the debugger, and while breakpoints are set, every thread."""
            if self.done:
                return
            me = thread.get_ident()
            if ident is None or ident == me:
                sys.settrace(self.tracer)
            self.tracing.learn(self.tracer)
            if self.breaks or (ident is not None and ident != me):
                self.trace_all()

        def trace_all(self):
            import threading
            if getattr(threading, '_trace_hook', None) is None:
                threading.settrace(self.tracer)
                self.hook = True
            frames = sys._current_frames()
            for ident, f in frames.items():
                if ident == thread.get_ident():
                    continue
                while f is not None:
                    if not ours(f) and f.f_trace is None:
                        f.f_trace = self.tracer
                    f = f.f_back
            self.tracing.install(self.tracer)

        def finish(self):
            """The end of the session: nothing of the debugger stays."""
            if self.done:
                return
            self.done = True
            try:
                for fn in list(self.breaks):
                    for line in list(self.breaks.get(fn, ())):
                        self.clear_break(fn, line)
                # bdb numbers breakpoints process-wide: with none left
                # (no other debugger's), as before the session.
                B = bdb.Breakpoint
                if not [x for x in B.bpbynumber if x is not None]:
                    B.next, B.bplist, B.bpbynumber = 1, {}, [None]
            except Exception:
                pass
            try:
                for f in sys._current_frames().values():
                    while f is not None:
                        if self.is_mine(f.f_trace):
                            f.f_trace = None
                        f = f.f_back
            except Exception:
                pass
            try:
                if self.is_mine(sys.gettrace()):
                    sys.settrace(None)
            except Exception:
                pass
            self.tracing.remove(self.tracer)
            try:
                import threading
                if self.hook and self.is_mine(threading._trace_hook):
                    threading.settrace(None)
            except Exception:
                pass
            if self.owns:
                self.sess.send(b'R', 'ok')
                self.sess.close()

        def is_mine(self, f):
            try:
                return getattr(f, '__self__', None) is self
            except Exception:
                return False

        def leave(self, frame):
            # After the end, each trace function still reached drops
            # itself.
            try:
                if self.is_mine(sys.gettrace()):
                    sys.settrace(None)
                if self.is_mine(frame.f_trace):
                    frame.f_trace = None
            except Exception:
                pass
            return None

        def trace_dispatch(self, frame, event, arg):
            if self.done:
                return self.leave(frame)
            if frame.f_globals is _G or thread.get_ident() in self.quiet:
                return None
            try:
                r = pdb.Pdb.trace_dispatch(self, frame, event, arg)
            except BaseException:
                # BdbQuit, or anything else: never into the application.
                self.finish()
                return self.leave(frame)
            if self.done:
                return self.leave(frame)
            return r

        # -- stops ---------------------------------------------------
        def stop_here(self, frame):
            # Stepping belongs to the thread that asked for it; the
            # others stop only at breakpoints.
            if thread.get_ident() != self.owner or ours(frame):
                return False
            return pdb.Pdb.stop_here(self, frame)

        def interaction(self, frame, tb):
            if self.done or self.in_reader(frame):
                return
            with self.term:
                if self.done:
                    return
                me = self.owner = thread.get_ident()
                self.botframe = bottom(frame)
                undo = self.redirect_here()
                try:
                    pdb.Pdb.interaction(self, frame, tb)
                finally:
                    if undo is not None:
                        unredirect(self.sess)
                        self.sess.ident, self.sess.native = undo
                    for name in ('__return__', '__exception__'):
                        try:
                            if name in frame.f_locals:
                                del frame.f_locals[name]
                        except Exception:
                            pass
                if self.quitting:
                    self.finish()
                elif self.owner == me and sys.gettrace() is not None:
                    self.resume()

        def redirect_here(self):
            """The session's streams for this thread while it stops (for
            `!print(x)`, `interact`), unless it has them already (the
            --run code's thread); what to put back, or None."""
            me = thread.get_ident()
            cur = sys.stdout
            if getattr(cur, '_pyattach_proxy', False) and [
                    st for st in cur._streams.get(me, ())
                    if getattr(st, 'sess', None) is self.sess]:
                return None
            undo = self.sess.ident, self.sess.native
            redirect(self.sess)
            return undo

        def get_stack(self, f, t):
            # pyattach's own frames are not the target's: `where`, `up`
            # and `down` never show them.
            stack, i = pdb.Pdb.get_stack(self, f, t)
            cur = stack[i] if 0 <= i < len(stack) else None
            kept = [e for e in stack if e is cur or not ours(e[0])]
            return kept, (kept.index(cur) if cur in kept else len(kept) - 1)

        def in_reader(self, frame):
            # Application code the session's reader thread calls (Tab
            # completion) never stops: the prompt waits for that thread.
            reader = Session.__dict__['reader'].__code__
            while frame is not None:
                if frame.f_code is reader:
                    return True
                frame = frame.f_back
            return False

        def cmdloop(self, intro=None):
            # Ctrl-C at the prompt: a fresh prompt, as pdb in a terminal.
            while True:
                try:
                    return pdb.Pdb.cmdloop(self, intro)
                except KeyboardInterrupt:
                    self.stdout.write('--KeyboardInterrupt--\n')
                    intro = None

        def default(self, line):
            # pdb swaps sys.stdout/stdin for a statement: let the swap be
            # the thread-aware proxies, so other threads keep theirs.
            saved = self.stdin, self.stdout
            self.stdin, self.stdout = sys.stdin, sys.stdout
            try:
                return pdb.Pdb.default(self, line)
            finally:
                self.stdin, self.stdout = saved

        def set_continue(self):
            pdb.Pdb.set_continue(self)
            if not self.breaks:
                self.finish()

        def set_quit(self):
            pdb.Pdb.set_quit(self)
            self.finish()

        if hasattr(pdb.Pdb, 'do_interact'):  # 3.2+
            def do_interact(self, arg):
                with NoReadline():
                    r = pdb.Pdb.do_interact(self, arg)
                # Ctrl-D left the interpreter, not the session (the end
                # of input stays queued otherwise).
                q = self.sess.inq
                if q and q[0] is None and not self.sess.closed:
                    q.pop(0)
                return r

        def do_debug(self, arg):
            """debug code
            Not available through pyattach: step into the code instead."""
            # It would start a plain pdb: the target's .pdbrc, its SIGINT
            # handler replaced, a trace function no end of session takes.
            self.stdout.write('*** debug is not available through '
                              'pyattach; step into the code instead\n')

        def do_detach(self, arg):
            """detach
            Leave the debugger: the target runs on as if pdb had never
            been there (q and Ctrl-D do the same here)."""
            self.finish()
            return 1

        # -- Ctrl-C ----------------------------------------------------
        def on_interrupt(self):
            """A K frame (Ctrl-C), or the end of the channel."""
            if self.sess.closed or self.done:
                self.finish()
                if self.fallback is not None:
                    self.fallback()
            elif self.prompting:
                q = self.sess.inq
                if q and q[0] is not None and q[0] is not KeyboardInterrupt:
                    # Typed after a line that was not read yet: the
                    # command that line would run is what it stops.
                    q[0] = KeyboardInterrupt
                else:
                    self.sess.push(KeyboardInterrupt)
            elif self.term.locked():
                with self.xlock:
                    if self.cmd_ident is not None:
                        self.kbd = True
                        set_async_exc(self.cmd_ident, KeyboardInterrupt)
            else:
                self.break_in()

        def onecmd(self, line):
            # A command may run for long (`p f()`, `!stmt`): Ctrl-C
            # interrupts it, and pyattach is told which thread runs it so
            # that it can cut a blocking call short. No KeyboardInterrupt
            # outlives the command (as in stop_exec).
            ident = thread.get_ident()
            if self.owns:
                self.sess.send(b'I', str(native_tid()))
            with self.xlock:
                # (A Ctrl-C since the line was read stays asked for.)
                self.cmd_ident = ident
            try:
                return pdb.Pdb.onecmd(self, line)
            finally:
                while True:
                    try:
                        with self.xlock:
                            self.cmd_ident = None
                            if self.kbd:
                                flush_async_exc()
                        break
                    except KeyboardInterrupt:
                        continue
                if self.owns:
                    self.sess.send(b'I', '0')

        def break_in(self):
            # What pdb's SIGINT handler does (set_trace where the thread
            # is), for the thread that stopped last.
            frames = sys._current_frames()
            ident = self.owner
            if ident not in frames:
                ident = app_frame()[1]
            f = frames.get(ident)
            while f is not None:
                if not ours(f):
                    f.f_trace = self.tracer
                f = f.f_back
            self.set_step()
            self.owner = ident
            self.trace_all()

    _debugger.append(Debugger)
    return Debugger


_G = globals()
