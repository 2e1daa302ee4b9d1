# pyattach bootstrap: runs inside the target, called through
# PyRun_SimpleString by a thread that holds the GIL at a safe point.
#
# Valid Python 2.7 and 3.6-3.14.  The files of this folder, concatenated
# in the order bootstrap.rs lists them, make one module, run once per
# process in a namespace of its own (never __main__'s): it defines the
# session's machinery and registers `start` in sys._pyattach_code under K,
# a hash of the source (set by the caller), so that a later injection of the
# same pyattach only calls it: compiling it and defining its classes
# would hold the GIL for milliseconds on every injection.  An injection of
# another pyattach version has another K and never sees this one.
#
# start(params, n, exc) runs one injection: `params` is the parameters'
# blob, or its address in this process's memory (n bytes), where pyattach
# wrote it; `exc`, an exception a signal handler raised as the entry text
# began (signals.py):
#   nonce NUL token NUL mode NUL chan NUL path NUL wait NUL wakeup_fd_fn NUL code
# nonce, token: hex; mode: 'run' | 'file' | 'repl' | 'pdb' | 'manhole', or
# 'run-here' and 'file-here' to run the code in the thread that called start
# (else a thread of its own runs it); chan: 'pair' | 'unix'; path: the unix socket
# (chan 'unix'); wait: seconds to wait for pyattach's ack; wakeup_fd_fn:
# PySignal_SetWakeupFd's address, decimal, 0 if unknown, and before 3.10
# ",HANDLERS,IS_TRIPPED" (signals.py, trip_flags); code: the code to
# run (mode 'run'; mode 'file': the file's name NUL its bytes; mode
# 'manhole': 'start' or 'stop' NUL the socket's path, see manhole.py), the
# rest of the blob, any bytes.
# start never raises, and every path here catches its own errors, so
# nothing reaches the target's code.
#
# Frames on the channel: 1 byte kind, 4 bytes big-endian length, payload.
# target -> pyattach: H hello, O stdout, E stderr, S stacks, Q wants a line
#   (payload: prompt), C completions, R result of --run ('ok' | 'raised';
#   a prompt sends 'ok' when the user left it, and only then),
#   I the code runs in this thread (payload: its tid; '0': it stopped),
#   B another session's code, KeyboardInterrupt pending, still runs in this
#   thread: cut its blocking call short (payload: its tid; manhole.py),
#   X the bootstrap could not go on (payload: why; the session ends)
# pyattach -> target: A ack, D a line, Z end of input, T complete, K Ctrl-C
#
# Leftovers, all harmless: sys._pyattach_claims (one entry per injection, so
# an injection runs once even if two strategies fire); sys._pyattach_code
# (`start` of this file, under K, reused by later injections); while a
# session is open, sys.stdin/stdout/stderr are thread-aware proxies
# (restored when the last session ends; streams.py); while pyattach's code
# runs in the main thread, its Python signal handlers are deferred
# (signals.py).
import struct
import sys


class _Originals(object):
    def __init__(self, fns):
        self.__dict__.update(zip(_THREAD_NAMES, fns))
        # Who replaced them, when no original could be found: a thread
        # "started" through such a function may never run (a greenlet of
        # a hub this session never runs), so it is not used; None when
        # they are the interpreter's own.
        self.patched_by = None
        for f in fns:
            if not isinstance(f, type(len)):
                self.patched_by = getattr(f, '__module__', None) or '?'


_THREAD_NAMES = ('allocate_lock', 'start_new_thread', 'get_ident', 'stack_size')


def _originals():
    """The socket and thread primitives as the interpreter made them.
    gevent's and eventlet's monkey-patching replace socket.socket and
    _thread's functions, in place, with cooperative ones that wait by
    switching to an event loop (a hub) that this session's threads never
    run: a recv there never returns, and a "thread" is a greenlet of the
    caught thread. The C module _socket is never patched, and both
    libraries keep _thread's originals (as python-manhole finds them);
    neither library is imported here if the application did not. The
    functions are taken now, so a patch applied later does not reach them."""
    import _socket
    try:
        import _thread as th
    except ImportError:
        import thread as th
    mods = sys.modules
    fns = None
    try:
        if 'gevent.monkey' in mods:
            fns = mods['gevent.monkey'].get_original(th.__name__,
                                                     _THREAD_NAMES)
        elif 'eventlet.patcher' in mods:
            orig = mods['eventlet.patcher'].original(th.__name__)
            fns = [getattr(orig, n) for n in _THREAD_NAMES]
    except Exception:
        fns = None
    if fns is None:
        fns = [getattr(th, n) for n in _THREAD_NAMES]
    if not all(isinstance(f, type(len)) for f in fns):
        fns = _fresh(th.__name__) or fns
    return _socket, _Originals(fns)


def _fresh(name):
    """Another patcher's work: a fresh import of the C module has its own,
    unpatched functions (eventlet.patcher.original does the same)."""
    saved = sys.modules.pop(name, None)
    try:
        mod = __import__(name)
        return [getattr(mod, n) for n in _THREAD_NAMES]
    except Exception:
        return None
    finally:
        if saved is not None:
            sys.modules[name] = saved


socket, thread = _originals()


def _roomy(start, stack_size):
    """start_new_thread for pyattach's own threads, which run the user's
    code (and pdb, a reader): with the default stack, whatever size the
    application set for its threads (threading.stack_size(32 * 1024) would
    overflow under that code and crash the process)."""
    def start_new_thread(f, args, *kw):
        try:
            old = stack_size(0)
        except Exception:
            old = 0
        try:
            return start(f, args, *kw)
        finally:
            if old:
                try:
                    stack_size(old)
                except Exception:
                    pass
    return start_new_thread


thread.start_new_thread = _roomy(thread.start_new_thread, thread.stack_size)
# (signals.py: a replay's delivery and the main thread's entries.)
GATE.append(thread.allocate_lock())

PY3 = sys.version_info[0] >= 3


def b(s):
    if isinstance(s, bytes):
        return s
    return s.encode('utf-8', 'replace')


def u(s):
    if isinstance(s, bytes):
        return s.decode('utf-8', 'replace')
    return s


def module(name):
    """The module `name`, imported if it is not yet. Not an import
    statement: on Python 2 every one waits for the process's import lock,
    even for a module already imported (see import_busy in util.py). A
    module another thread is still importing (Python 3 marks its spec;
    two manhole connections at once, each importing traceback) is waited
    for by the import, not used half made."""
    mod = sys.modules.get(name)
    if mod is None or getattr(getattr(mod, '__spec__', None),
                              '_initializing', False):
        __import__(name)
        mod = sys.modules[name]
    return mod


def cloexec(sock):
    try:
        fcntl = module('fcntl')
        fd = sock.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFD,
                    fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
    except Exception:
        pass


def peek(addr, n):
    """n bytes of this process's memory at addr: /proc/self/mem read
    unbuffered (a buffered read would run past the end), ctypes where /proc
    is not mounted. posix, not os: see read_tid in repl.py."""
    os = module('posix')
    s = b''
    try:
        fd = os.open('/proc/self/mem', os.O_RDONLY)
        try:
            os.lseek(fd, addr, 0)
            while len(s) < n:
                chunk = os.read(fd, n - len(s))
                if not chunk:
                    break
                s += chunk
        finally:
            os.close(fd)
    except Exception:
        s = b''
    if len(s) != n:
        s = module('ctypes').string_at(addr, n)
    return s


def parse(blob):
    """The parameters' blob (see the top of this file) as a dict."""
    f = blob.split(b'\0', 7)
    if len(f) != 8:
        raise ValueError('pyattach: bad parameters')
    P = dict(zip(('nonce', 'token', 'mode', 'chan', 'path'),
                 [u(x) for x in f[:5]]))
    P['mode'], here, _ = P['mode'].partition('-here')
    P['here'] = bool(here)
    P['wait'] = float(u(f[5]))
    w = [int(x) for x in f[6].split(b',')]
    WAKEUP_FD_FN[0] = w[0] or WAKEUP_FD_FN[0]
    if len(w) == 3:
        TRIP_FLAGS[:] = w[1:]
    P['code'] = f[7]
    return P


class Session(object):
    def __init__(self, sock, P):
        self.sock = sock
        self.P = P
        self.wlock = thread.allocate_lock()
        self.xlock = thread.allocate_lock()
        self.inq = []
        self.insem = thread.allocate_lock()
        self.insem.acquire()
        self.ident = None
        self.native = 0
        self.executing = False
        self.interrupted = False
        self.closed = False
        # Once the reader thread runs, it owns the descriptor: see
        # close().
        self.reading = False
        self.rbuf = b''

    # -- framing ---------------------------------------------------
    def send(self, kind, payload=b''):
        payload = b(payload)
        self.write(struct.pack('>cI', kind, len(payload)) + payload)

    def write(self, data):
        # `with`, not acquire/try: a KeyboardInterrupt from Ctrl-C can
        # land between any two bytecodes of the session's code, and the
        # interpreter never delivers one between a with-statement's
        # acquire and its cleanup. sendall is one C call: a frame is
        # never cut in the middle.
        with self.wlock:
            try:
                if not self.closed:
                    self.sock.sendall(data)
            except Exception:
                self.closed = True

    def recv_exact(self, n, bounded=False):
        end = None
        while len(self.rbuf) < n:
            try:
                chunk = self.sock.recv(65536)
            except socket.error as e:
                # Python 2 does not retry a call a signal cut short (a
                # timer's signal every few ms): again, and if `bounded`,
                # for what is left of the wait.
                if e.args[:1] != (4,):  # EINTR
                    raise
                if bounded:
                    time = module('time')
                    end = end or time.time() + self.P['wait']
                    if time.time() > end:
                        raise
                    self.sock.settimeout(end - time.time())
                continue
            if not chunk:
                raise EOFError
            self.rbuf += chunk
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    def recv(self, bounded=False):
        kind, n = struct.unpack('>cI', self.recv_exact(5, bounded))
        return kind, self.recv_exact(n, bounded)

    def hello(self):
        self.send(b'H', self.P['nonce'] + ' ' + self.P['token'])

    def wait_ack(self, theirs, within=None):
        # pyattach acks once it holds its end; until then the target
        # keeps `theirs` open so the end cannot vanish. With `within`
        # (seconds): None if the ack has not come by then, `theirs` still
        # open, for another wait_ack to wait on (an ack is one 5-byte
        # frame: a wait cut short keeps what it read of it in rbuf).
        ok = False
        try:
            try:
                self.sock.settimeout(self.P['wait'] if within is None
                                     else within)
                kind, _ = self.recv(bounded=within is None)
                self.sock.settimeout(None)
                ok = kind == b'A'
            except socket.timeout:
                if within is not None:
                    return None
        except BaseException:
            pass
        if theirs is not None:
            theirs.close()
        return ok

    # -- input from pyattach, read by a reader thread ---------------
    def reader(self):
        self.reading = True
        try:
            while True:
                kind, data = self.recv()
                if kind == b'D':
                    self.push(u(data))
                elif kind == b'Z':
                    self.push(None)
                elif kind == b'T':
                    self.send(b'C', '\n'.join(complete(u(data))))
                elif kind == b'K':
                    self.interrupt()
        except BaseException:
            pass
        self.closed = True
        self.push(None)
        # pyattach is gone (it exited, was killed, or the user left):
        # code still running for it is stopped, as Ctrl-C would.
        self.interrupt()
        self.release()

    def push(self, item):
        self.inq.append(item)
        try:
            self.insem.release()
        except Exception:
            pass

    def readline(self, prompt=''):
        """A line from pyattach (with its newline), '' at end of input;
        raises KeyboardInterrupt for a Ctrl-C typed at the prompt."""
        while True:
            if self.inq:
                item = self.inq.pop(0)
                if item is None:
                    self.inq.insert(0, None)
                    return ''
                if item is KeyboardInterrupt:
                    raise KeyboardInterrupt
                return item
            if self.closed:
                return ''
            self.send(b'Q', prompt)
            self.insem.acquire()

    def interrupt(self):
        with self.xlock:
            if self.executing and self.ident is not None:
                self.interrupted = True
                set_async_exc(self.ident, KeyboardInterrupt)
            else:
                self.push(KeyboardInterrupt)

    def start_exec(self):
        # Tell pyattach which thread runs the code (first: a Ctrl-C can
        # land anywhere once `executing` is set).
        self.send(b'I', str(self.native))
        with self.xlock:
            self.executing = True
            self.interrupted = False

    def stop_exec(self):
        # A Ctrl-C may race with the end of the code: clear any
        # KeyboardInterrupt still pending so it never reaches the
        # target's own code. True if one was asked for (it may not
        # have fired: Python 2 looks only every 100 bytecodes).
        while True:
            try:
                with self.xlock:
                    self.executing = False
                    # Only interrupt() queues one, and says so first
                    # (this spares importing ctypes in every target).
                    if self.interrupted and self.ident is not None:
                        if self.ident == thread.get_ident():
                            flush_async_exc()
                        else:
                            set_async_exc(self.ident, None)
                    asked = self.interrupted
                break
            except KeyboardInterrupt:
                continue
        self.send(b'I', '0')
        return asked

    def fail(self, what):
        # Called in an except clause: pyattach says what failed and why,
        # and the session ends.
        self.send(b'X', what + describe_exc())
        self.close()

    def close(self):
        # shutdown() wakes the reader thread blocked in recv and tells
        # pyattach at once; close() alone does neither. The reader then
        # closes the descriptor as it leaves; never here while it may
        # still use the number: a recv restarted after the process was
        # stopped (by a signal, SIGSTOP, any debugger) reads the number
        # again, which the target may have given to a connection of its
        # own meanwhile, and would eat that connection's data.
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass
        if not self.reading:
            self.release()

    def release(self):
        # Under wlock: no sendall (which restarts too) is under way.
        with self.wlock:
            self.closed = True
            try:
                self.sock.close()
            except Exception:
                pass


