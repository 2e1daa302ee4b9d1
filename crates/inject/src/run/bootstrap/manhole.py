# -- the manhole: a prompt socket that stays (`pyattach manhole PID`) ----
# Injected as --run code is (mode 'manhole'; its code: b'start\0PATH' or
# b'stop\0PATH', PATH empty for the default or, with stop, every one), it
# starts a listener that outlives the injection, with python-manhole's
# semantics: a unix socket, mode 0600, whose peers are checked with
# SO_PEERCRED (the same effective uid or root, others closed at once);
# each connection gets the stack of every thread, then the prompt of
# repl() over __main__, as plain text that socat and `nc -U` speak. The
# listener and each connection are threads of the interpreter's own
# primitives (gevent's and eventlet's hubs never run them; signals.py).
#
# While it listens: one thread, the listening socket, the socket file,
# and sys._pyattach_manholes (path -> Manhole), where `stop` finds it.
# Stopped, none of these is left: the connections are closed (code they
# run is interrupted as Ctrl-C would), their threads and the listener's
# end, the file is unlinked (if it is still this listener's) and the
# registry goes once empty.
REGISTRY = '_pyattach_manholes'
SO_PEERCRED = getattr(socket, 'SO_PEERCRED', 17)
# How long a stop waits for the threads to end (seconds).
STOP_WAIT = 5.0


class ManholeError(Exception):
    """What the manhole could not do, said to the user as it is."""


def manhole(sess):
    op, _, path = u(sess.P['code']).partition('\0')
    status = 'ok'
    try:
        if op == 'start':
            sess.send(b'O', manhole_start(path) + '\n')
        else:
            def blocked(tid):
                sess.send(b'B', str(tid))
            for p in manhole_stop(path, blocked):
                sess.send(b'O', 'stopped %s\n' % p)
    except ManholeError as e:
        status = 'raised'
        sess.send(b'E', '%s\n' % (e,))
    except BaseException:
        status = 'raised'
        sess.send(b'E', 'the manhole failed: %s\n' % describe_exc())
    sess.send(b'R', status)
    sess.close()


def manhole_start(path):
    os = module('os')
    path = path or '/tmp/manhole-%d' % os.getpid()
    if len(b(path)) > 107:
        # connect() could never reach it (sun_path's size).
        raise ManholeError('%s is too long for a unix socket (107 bytes at '
                           'most)' % path)
    reg = sys.__dict__.setdefault(REGISTRY, {})
    try:
        if path not in reg:
            m = Manhole(path)
            reg[path] = m
            try:
                thread.start_new_thread(m.serve, ())
            except BaseException:
                m.finish()
                raise
    finally:
        if not reg and sys.__dict__.get(REGISTRY) is reg:
            del sys.__dict__[REGISTRY]
    return path


def manhole_stop(path, blocked):
    reg = sys.__dict__.get(REGISTRY) or {}
    paths = [path] if path else sorted(reg)
    if not paths or path and path not in reg:
        raise ManholeError('no manhole of pyattach listens in this process%s'
                           % (' at %s' % path if path else ''))
    for p in paths:
        busy = reg[p].stop(blocked)
        if busy:
            # KeyboardInterrupt is pending there, raised once the call it
            # is blocked in returns (a sleep, a read).
            raise ManholeError(
                'the manhole at %s is stopped and its file removed, but '
                'code a session ran still runs in thread %s; that thread '
                'ends once the code returns' % (p, ', '.join(busy)))
    return paths


def wait_lock(lock, secs):
    """True once `lock` could be taken (it is released again), False if
    not within `secs`."""
    if PY3:
        ok = lock.acquire(True, secs)
    else:
        # Python 2 has no timed acquire.
        time = module('time')
        end = time.time() + secs
        while not lock.acquire(False):
            if time.time() > end:
                return False
            nap(0.005)
        ok = True
    if ok:
        lock.release()
    return ok


def nap(secs):
    """time.sleep, but never gevent's or eventlet's (patched in place, it
    would make a hub in this thread): a timed wait on a lock of the
    original primitives (Python 2, which has none, sleeps)."""
    if PY3:
        lock = thread.allocate_lock()
        lock.acquire()
        lock.acquire(True, secs)
    else:
        module('time').sleep(secs)


def errno_of(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


def listen_at(path):
    """A listening unix socket whose file is `path`, mode 0600 from the
    start: bound in a fresh 0700 directory beside it, then linked into
    place (a link never replaces anything; the umask, the whole process's,
    is left alone)."""
    os = module('os')
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    private = name = None
    try:
        cloexec(s)
        s.settimeout(None)
        try:
            private = private_dir(os.path.dirname(path) or '.')
            name = os.path.join(private, 's')
            s.bind(name)
            os.chmod(name, 0o600)
            s.listen(16)
            try:
                os.link(name, path)
            except OSError as e:
                if errno_of(e) != module('errno').EEXIST:
                    raise
                clear_stale(path)
                os.link(name, path)
        except (OSError, IOError, socket.error) as e:
            raise ManholeError('cannot listen at %s: %s' % (
                path, getattr(e, 'strerror', None) or e))
        finally:
            for rm, p in ((os.unlink, name), (os.rmdir, private)):
                try:
                    if p is not None:
                        rm(p)
                except Exception:
                    pass
    except BaseException:
        s.close()
        raise
    return s


def private_dir(parent):
    """A new directory in `parent`, mode 0700, made here (mkdir fails on
    one that exists, whoever made it). Named without os.urandom, which
    keeps /dev/urandom open for good on Python 2."""
    os = module('os')
    for n in range(100):
        # Short: the name bound is this one's, and a unix socket's path
        # has 107 bytes at most.
        d = os.path.join(parent, '.pyattach-%d-%d' % (os.getpid(), n))
        try:
            os.mkdir(d, 0o700)
            return d
        except OSError as e:
            if errno_of(e) != module('errno').EEXIST:
                raise
    raise OSError(module('errno').EEXIST, 'no free name in %s' % parent)


def clear_stale(path):
    """Removes the socket file at `path` if nothing listens there any more
    (a manhole's process that died: python-manhole's, or ours after
    SIGKILL); anything else there is refused, never removed."""
    os = module('os')
    st = module('stat')
    if not st.S_ISSOCK(os.lstat(path).st_mode):
        raise ManholeError('%s exists and is not a socket' % path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except socket.error as e:
            if errno_of(e) != module('errno').ECONNREFUSED:
                raise
            os.unlink(path)
            return
    finally:
        probe.close()
    raise ManholeError('something already listens at %s' % path)


def accept(lsock):
    if hasattr(lsock, '_accept'):
        # Python 3's _socket gives a descriptor (made with SOCK_CLOEXEC).
        fd, _ = lsock._accept()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    else:
        conn = lsock.accept()[0]
        cloexec(conn)
    conn.settimeout(None)
    return conn


def peer_allowed(conn):
    """SO_PEERCRED's uid (the peer's effective uid when it connected) is
    this process's effective uid, or root: python-manhole's rule."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, SO_PEERCRED,
                                struct.calcsize('3i'))
        uid = struct.unpack('3i', creds)[1]
    except Exception:
        return False
    return uid == 0 or uid == module('os').geteuid()


class Manhole(object):
    def __init__(self, path):
        os = module('os')
        self.path = path
        # A forked child inherits this object and the socket, not the
        # thread (see stop()).
        self.pid = os.getpid()
        self.sessions = []
        self.lock = thread.allocate_lock()
        self.stopping = False
        # Held until the listener thread is done (see stop()).
        self.ended = thread.allocate_lock()
        self.ended.acquire()
        self.sock = listen_at(path)
        try:
            st = os.lstat(path)
            self.inode = (st.st_dev, st.st_ino)
        except OSError:
            self.inode = None

    def serve(self):
        try:
            while not self.stopping:
                try:
                    conn = accept(self.sock)
                except socket.error as e:
                    # stop() shuts the socket down: accept fails (EINVAL).
                    if self.stopping or errno_of(e) == 22:
                        break
                    if errno_of(e) != 4:  # EINTR
                        # Out of descriptors, memory: later, again.
                        nap(0.1)
                    continue
                if self.stopping or not peer_allowed(conn):
                    conn.close()
                    continue
                self.admit(conn)
        except BaseException:
            pass
        self.finish()

    def admit(self, conn):
        sess = RawSession(conn)
        with self.lock:
            self.sessions.append(sess)
        try:
            thread.start_new_thread(self.converse, (sess,))
        except BaseException:
            with self.lock:
                self.sessions.remove(sess)
            sess.close()

    def converse(self, sess):
        try:
            try:
                sess.send(b'O', 'pyattach manhole in process %d (Python %s)\n'
                          % (module('os').getpid(),
                             sys.version.split()[0]))
                repl(sess)
                sess.close()
                # The reader thread closes the socket as it leaves.
                wait_lock(sess.left, STOP_WAIT)
            except BaseException:
                pass
        finally:
            with self.lock:
                if sess in self.sessions:
                    self.sessions.remove(sess)
            sess.done.release()

    def finish(self):
        os = module('os')
        try:
            self.sock.close()
        except Exception:
            pass
        try:
            # Only this listener's file: a later one may have taken the
            # path since.
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.inode:
                os.unlink(self.path)
        except Exception:
            pass
        self.forget()
        self.ended.release()

    def forget(self):
        reg = sys.__dict__.get(REGISTRY)
        if reg is not None:
            if reg.get(self.path) is self:
                del reg[self.path]
            if not reg:
                sys.__dict__.pop(REGISTRY, None)

    def stop(self, blocked):
        """Ends the listener and every session; the tids of the sessions'
        threads that are not done within STOP_WAIT (blocked in code).
        blocked(tid) asks pyattach to cut short the blocking call of a
        session's thread that is not done at once."""
        if module('os').getpid() != self.pid:
            # A forked child's copy: the listener is the parent's, whose
            # socket a shutdown here would end too. Only the copy goes.
            try:
                self.sock.close()
            except Exception:
                pass
            self.forget()
            return []
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass
        time = module('time')
        end = time.time() + STOP_WAIT
        wait_lock(self.ended, STOP_WAIT)
        with self.lock:
            sessions = list(self.sessions)
        for sess in sessions:
            sess.end()
        for sess in sessions:
            # Only code (KeyboardInterrupt pending in it) is cut short.
            if not wait_lock(sess.done, 0.2) and sess.executing and \
                    sess.native:
                blocked(sess.native)
        # One wait for them all, however many are blocked.
        return [str(sess.native or '?') for sess in sessions
                if not wait_lock(sess.done, max(end - time.time(), 0.01))]


class RawSession(Session):
    """A manhole connection: what repl() sends as frames goes as plain
    text (output, stacks, prompts; the rest is pyattach's own protocol),
    and lines come in as they are typed."""

    def __init__(self, sock):
        Session.__init__(self, sock, {'wait': STOP_WAIT})
        # Released when the reader thread is done, and when the session's
        # thread is.
        self.left = thread.allocate_lock()
        self.left.acquire()
        self.done = thread.allocate_lock()
        self.done.acquire()
        # Released by close(): the reader closes the descriptor then.
        self.over = thread.allocate_lock()
        self.over.acquire()

    def readline(self, prompt=''):
        # Each prompt goes out, as a terminal's python shows it (Session
        # asks pyattach for a line only when none is queued).
        if prompt:
            self.send(b'O', prompt)
        return Session.readline(self, prompt)

    def send(self, kind, payload=b''):
        # Q, the prompt pyattach would show: sent by readline above.
        if kind in (b'O', b'E', b'S'):
            self.write(b(payload))

    def reader(self):
        self.reading = True
        try:
            try:
                buf = b''
                while True:
                    try:
                        chunk = self.sock.recv(65536)
                    except socket.error as e:
                        if errno_of(e) == 4:  # EINTR, on Python 2
                            continue
                        break
                    if not chunk:
                        break
                    buf += chunk
                    while b'\n' in buf:
                        line, buf = buf.split(b'\n', 1)
                        self.push(u(line.rstrip(b'\r')) + '\n')
                if buf:
                    self.push(u(buf) + '\n')
            except BaseException:
                pass
            # The end of input (socat, `nc -N` shut their side down when
            # theirs ends): the prompt runs what came and leaves, its
            # output still going out. The descriptor is closed here once
            # the session is over (see Session.close).
            self.push(None)
            self.over.acquire()
            self.release()
        finally:
            self.left.release()

    def close(self):
        self.closed = True
        try:
            self.over.release()
        except Exception:
            pass
        Session.close(self)

    def end(self):
        """stop(): code running for the session is interrupted, as Ctrl-C
        would, and the session closed (the prompt sees the end of input)."""
        self.interrupt()
        self.close()
