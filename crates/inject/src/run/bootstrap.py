# pyattach bootstrap: runs inside the target, called through
# PyRun_SimpleString by a thread that holds the GIL at a safe point.
#
# Valid Python 2.7 and 3.6-3.14.  This file is a module, run once per
# process in a namespace of its own (never __main__'s): it defines the
# session's machinery and registers `start` in sys._pyattach_code under K,
# a hash of this file (set by the caller), so that a later injection of the
# same pyattach only calls it: compiling this file and defining its classes
# would hold the GIL for milliseconds on every injection.  An injection of
# another pyattach version has another K and never sees this one.
#
# start(params, n) runs one injection: `params` is the parameters' blob, or
# its address in this process's memory (n bytes), where pyattach wrote it:
#   nonce NUL token NUL mode NUL chan NUL path NUL wait NUL code
# nonce, token: hex; mode: 'run' | 'repl'; chan: 'pair' | 'unix'; path: the
# unix socket (chan 'unix'); wait: seconds to wait for pyattach's ack; code:
# the code to run (mode 'run'), the rest of the blob, any bytes.
# start never raises, and every path here catches its own errors, so
# nothing reaches the target's code.
#
# Frames on the channel: 1 byte kind, 4 bytes big-endian length, payload.
# target -> pyattach: H hello, O stdout, E stderr, S stacks, Q wants a line
#   (payload: prompt), C completions, R result of --run ('ok' | 'raised'),
#   I the code runs in this thread (payload: its tid; '0': it stopped)
# pyattach -> target: A ack, D a line, Z end of input, T complete, K Ctrl-C
#
# Leftovers, all harmless: sys._pyattach_claims (one entry per injection, so
# an injection runs once even if two strategies fire); sys._pyattach_code
# (`start` of this file, under K, reused by later injections); while a
# session is open, sys.stdin/stdout/stderr are thread-aware proxies
# (restored when the last session ends, unless the application replaced
# them meanwhile).
import socket
import struct
import sys
try:
    import _thread as thread
except ImportError:
    import thread

PY3 = sys.version_info[0] >= 3


def b(s):
    if isinstance(s, bytes):
        return s
    return s.encode('utf-8', 'replace')


def u(s):
    if isinstance(s, bytes):
        return s.decode('utf-8', 'replace')
    return s


def cloexec(sock):
    try:
        import fcntl
        fd = sock.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFD,
                    fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
    except Exception:
        pass


def peek(addr, n):
    """n bytes of this process's memory at addr: /proc/self/mem read
    unbuffered (a buffered read would run past the end), ctypes where /proc
    is not mounted."""
    import os
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
        import ctypes
        s = ctypes.string_at(addr, n)
    return s


def parse(blob):
    """The parameters' blob (see the top of this file) as a dict."""
    f = blob.split(b'\0', 6)
    if len(f) != 7:
        raise ValueError('pyattach: bad parameters')
    P = dict(zip(('nonce', 'token', 'mode', 'chan', 'path'),
                 [u(x) for x in f[:5]]))
    P['wait'] = float(u(f[5]))
    P['code'] = f[6]
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
        data = struct.pack('>cI', kind, len(payload)) + payload
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

    def recv_exact(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.rbuf += chunk
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    def recv(self):
        kind, n = struct.unpack('>cI', self.recv_exact(5))
        return kind, self.recv_exact(n)

    def hello(self):
        self.send(b'H', self.P['nonce'] + ' ' + self.P['token'])

    def wait_ack(self, theirs):
        # pyattach acks once it holds its end; until then the target
        # keeps `theirs` open so the end cannot vanish.
        try:
            self.sock.settimeout(self.P['wait'])
            kind, _ = self.recv()
            self.sock.settimeout(None)
            return kind == b'A'
        except BaseException:
            return False
        finally:
            if theirs is not None:
                theirs.close()

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
                        set_async_exc(self.ident, None)
                    asked = self.interrupted
                break
            except KeyboardInterrupt:
                continue
        self.send(b'I', '0')
        return asked

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


def set_async_exc(ident, exc):
    try:
        import ctypes
        f = ctypes.pythonapi.PyThreadState_SetAsyncExc
        tid = ctypes.c_ulong(ident) if sys.version_info >= (3, 7) \
            else ctypes.c_long(ident)
        f(tid, ctypes.py_object(exc) if exc is not None else None)
    except Exception:
        pass


def complete(text):
    import keyword
    main = sys.modules['__main__'].__dict__
    try:
        import builtins
    except ImportError:
        import __builtin__ as builtins
    out = []
    if '.' in text:
        expr, _, attr = text.rpartition('.')
        try:
            obj = eval(expr, main)
        except Exception:
            return []
        for n in dir(obj):
            if n.startswith(attr) and (attr.startswith('_') or
                                       not n.startswith('_')):
                out.append(expr + '.' + n)
    else:
        seen = set()
        for src in (keyword.kwlist, list(main), dir(builtins)):
            for n in src:
                if n.startswith(text) and n not in seen:
                    seen.add(n)
                    out.append(n)
    return sorted(out)[:500]


# -- thread-aware std streams ---------------------------------------
class Out(object):
    def __init__(self, sess, kind):
        self.sess, self.kind = sess, kind
        self.encoding, self.errors = 'utf-8', 'replace'

    def write(self, s):
        # At most 64 KiB a frame, so that what pyattach holds in its
        # bounded queue is bounded in bytes too, whatever one write is.
        data = b(s)
        for i in range(0, len(data), 65536):
            self.sess.send(self.kind, data[i:i + 65536])
        return len(s)

    def writelines(self, lines):
        for s in lines:
            self.write(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def close(self):
        pass


class In(object):
    encoding, errors = 'utf-8', 'replace'

    def __init__(self, sess):
        self.sess = sess

    def readline(self, size=-1):
        return self.sess.readline('')

    def read(self, size=-1):
        out = []
        while True:
            line = self.sess.readline('')
            if not line:
                return ''.join(out)
            out.append(line)

    def readlines(self, hint=-1):
        return self.read().splitlines(True)

    def __iter__(self):
        return iter(self.readline, '')

    def isatty(self):
        return False

    def close(self):
        pass


class Null(object):
    def write(self, s):
        return len(s)

    def __getattr__(self, name):
        return lambda *a, **k: None


class Proxy(object):
    """Stands in for sys.stdout (stderr, stdin): the threads of a
    pyattach session get their session's stream, every other thread the
    stream that was there before."""
    _pyattach_proxy = True

    def __init__(self, orig, name):
        self.__dict__['_orig'] = orig
        self.__dict__['_name'] = name
        self.__dict__['_streams'] = {}

    def _cur(self):
        # A list per thread: a session may start inside another one's
        # code in the same thread (the innermost one writes).
        s = self._streams.get(thread.get_ident())
        if s:
            return s[-1]
        o = self._orig
        return Null() if o is None else o

    def __getattr__(self, name):
        return getattr(self._cur(), name)

    def __setattr__(self, name, value):
        setattr(self._cur(), name, value)

    def write(self, s):
        return self._cur().write(s)

    def writelines(self, lines):
        return self._cur().writelines(lines)

    def flush(self):
        return self._cur().flush()

    def readline(self, *a):
        return self._cur().readline(*a)

    def read(self, *a):
        return self._cur().read(*a)

    def readlines(self, *a):
        return self._cur().readlines(*a)

    def __iter__(self):
        return iter(self._cur())

    def isatty(self):
        return self._cur().isatty()

    def fileno(self):
        return self._cur().fileno()

    def close(self):
        return self._cur().close()


def native_tid():
    # The kernel's id of this thread, for pyattach to cut a blocking
    # call short on Ctrl-C.
    try:
        import os
        return int(os.readlink('/proc/thread-self').rsplit('/', 1)[1])
    except Exception:
        pass
    try:
        import threading
        return threading.get_native_id()
    except Exception:
        return 0


def redirect(sess):
    ident = thread.get_ident()
    sess.ident = ident
    sess.native = native_tid()
    for name, stream in (('stdout', Out(sess, b'O')),
                         ('stderr', Out(sess, b'E')),
                         ('stdin', In(sess))):
        cur = getattr(sys, name)
        if not getattr(cur, '_pyattach_proxy', False):
            cur = Proxy(cur, name)
            setattr(sys, name, cur)
        cur._streams.setdefault(ident, []).append(stream)


def unredirect(sess):
    for name in ('stdout', 'stderr', 'stdin'):
        cur = getattr(sys, name)
        while getattr(cur, '_pyattach_proxy', False):
            mine = cur._streams.get(sess.ident, [])
            for st in list(mine):
                if st.sess is sess:
                    mine.remove(st)
            if not mine:
                cur._streams.pop(sess.ident, None)
            if not cur._streams and getattr(sys, name) is cur:
                setattr(sys, name, cur._orig)
            cur = cur._orig


def stacks():
    import threading
    import traceback
    names = dict((t.ident, t.name) for t in threading.enumerate())
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == thread.get_ident():
            continue
        out.append('Thread %s (%s):\n' % (ident, names.get(ident, '?')))
        out.extend(traceback.format_stack(frame))
        out.append('\n')
    return ''.join(out)


# -- the two modes --------------------------------------------------
def run(sess):
    import traceback
    main = sys.modules['__main__'].__dict__
    src = u(sess.P['code'])
    fname = '<pyattach-run>'
    entry = (len(src), None, src.splitlines(True), fname)
    try:
        # So tracebacks and pdb show the code's lines; removed at the end.
        import linecache
        linecache.cache[fname] = entry
    except Exception:
        pass
    redirect(sess)
    thread.start_new_thread(sess.reader, ())
    status = 'ok'
    try:
        try:
            code = compile(src, fname, 'exec', 0, True)
            sess.start_exec()
            late = False
            try:
                exec(code, main)
            finally:
                # A KeyboardInterrupt still pending can fire on the
                # way into stop_exec (a function's entry is a check
                # point): retried until it returns. None can fire
                # between here and the try (CPython skips the check
                # before a try's set-up).
                while True:
                    try:
                        late = sess.stop_exec() or late
                        break
                    except KeyboardInterrupt:
                        late = True
            if late:
                # Ctrl-C came as the code ended, or never fired (on
                # Python 2 a blocking call cut short just returns, and
                # the check comes every 100 bytecodes): say so.
                raise KeyboardInterrupt
        except BaseException:
            status = 'raised'
            t, v, tb = sys.exc_info()
            while tb is not None and tb.tb_frame.f_code is run.__code__:
                tb = tb.tb_next
            try:
                sys.stderr.write(''.join(
                    traceback.format_exception(t, v, tb)))
            except Exception:
                pass
            del t, v, tb
    finally:
        unredirect(sess)
        try:
            if linecache.cache.get(fname) is entry:
                del linecache.cache[fname]
        except Exception:
            pass
        sess.send(b'R', status)
        sess.close()


def repl(sess):
    import code as codemod
    main = sys.modules['__main__']

    def dump_stacktraces():
        """Print the Python stack of every thread but this one."""
        sys.stdout.write(stacks())

    helpers = {'dump_stacktraces': dump_stacktraces}

    class Console(codemod.InteractiveConsole):
        def raw_input(self, prompt=''):
            line = sess.readline(prompt)
            if not line:
                raise EOFError
            return line.rstrip('\n')

        def runcode(self, code):
            sess.start_exec()
            try:
                late = False
                try:
                    exec(code, self.locals)
                finally:
                    while True:  # as in run()
                        try:
                            late = sess.stop_exec() or late
                            break
                        except KeyboardInterrupt:
                            late = True
                if late:
                    raise KeyboardInterrupt
            except SystemExit:
                raise
            except BaseException:
                self.showtraceback()

    added = []
    try:
        thread.start_new_thread(sess.reader, ())
        sess.send(b'S', stacks())
        for k, v in helpers.items():
            if k not in main.__dict__:
                main.__dict__[k] = v
                added.append(k)
        redirect(sess)
        console = Console(main.__dict__)
        try:
            if PY3:
                console.interact('', '')
            else:
                console.interact('')
        except SystemExit:
            pass
    except BaseException:
        pass
    finally:
        try:
            unredirect(sess)
        except BaseException:
            pass
        for k in added:
            if main.__dict__.get(k) is helpers[k]:
                del main.__dict__[k]
        sess.close()


def _main(P):
    claims = sys.__dict__.setdefault('_pyattach_claims', {})
    me = object()
    if claims.setdefault(P['nonce'], me) is not me:
        return
    # -- the channel ----------------------------------------------------
    if P['chan'] == 'pair':
        mine, theirs = socket.socketpair()
        cloexec(theirs)
    else:
        mine, theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), None
        try:
            try:
                mine.settimeout(P['wait'])
                mine.connect(P['path'])
            finally:
                # Nothing may stay in the target's filesystem, whatever the
                # connect's outcome: a connected channel no longer needs the
                # name, and a refused one means pyattach is gone (killed)
                # and will never remove it. Only this injection's socket
                # and its directory, whose names are unique to it.
                import os
                for rm, path in ((os.unlink, P['path']),
                                 (os.rmdir, os.path.dirname(P['path']))):
                    try:
                        rm(path)
                    except Exception:
                        pass
        except Exception:
            mine.close()
            return
    cloexec(mine)
    sess = Session(mine, P)

    sess.hello()
    if P['mode'] == 'repl':
        # The hello went out from this thread so pyattach finds the channel
        # at once; the session's own thread waits for the ack.
        def serve():
            try:
                if sess.wait_ack(theirs):
                    repl(sess)
            except BaseException:
                pass
            sess.close()
        thread.start_new_thread(serve, ())
    elif sess.wait_ack(theirs):
        run(sess)
    else:
        sess.close()



def start(params, n=-1):
    """One injection (see the top of this file); never raises."""
    try:
        if n >= 0:
            params = peek(params, n)
        _main(parse(params))
    except BaseException:
        pass


# Two strategies may load this file at once (the GIL is let go while it
# loads): both then use the first one registered.
start = sys.__dict__.setdefault('_pyattach_code', {}).setdefault(K, start)
