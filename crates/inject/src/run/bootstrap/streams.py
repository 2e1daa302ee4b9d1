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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


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
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    next = __next__

    def isatty(self):
        return False

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


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
        streams = self._streams
        s = streams.get(thread.get_ident())
        if s:
            return s[-1]
        # A task a session awaits on the application's event loop (see
        # awaiting.py): its session's stream, by the key the task set.
        var = self.__dict__.get('_task_key')
        if var is not None:
            s = streams.get(var.get(None))
            if s:
                return s[-1]
        o = self._orig
        if not streams and getattr(sys, self._name, None) is self:
            # Put back in sys after the sessions ended (the application
            # had swapped its own stream in, and back): the original
            # again, from its next use on.
            setattr(sys, self._name, o)
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

    # The protocols Python looks up on the type, not through __getattr__:
    # each as the stream in use has it.
    def __iter__(self):
        return iter(self._cur())

    def __next__(self):
        return next(self._cur())

    next = __next__

    def __enter__(self):
        return self._cur().__enter__()

    def __exit__(self, *exc):
        return self._cur().__exit__(*exc)

    def __repr__(self):
        return repr(self._cur())

    def isatty(self):
        return self._cur().isatty()

    def fileno(self):
        return self._cur().fileno()

    def close(self):
        return self._cur().close()


def redirect(sess):
    ident = thread.get_ident()
    sess.ident = ident
    sess.native = native_tid()
    sess.proxies = []
    for name, stream in (('stdout', Out(sess, b'O')),
                         ('stderr', Out(sess, b'E')),
                         ('stdin', In(sess))):
        cur = getattr(sys, name)
        if not getattr(cur, '_pyattach_proxy', False):
            cur = Proxy(cur, name)
            setattr(sys, name, cur)
        cur._streams.setdefault(ident, []).append(stream)
        sess.proxies.append(cur)
        if getattr(sys, name) is cur._orig:
            # Another thread's use put the original back just before.
            setattr(sys, name, cur)


def unredirect(sess):
    # From the proxies this session's streams went to, wherever they are
    # now: the application may have swapped a stream of its own in (a
    # contextlib.redirect_stdout), and swap the proxy back later.
    for cur in getattr(sess, 'proxies', ()):
        mine = cur._streams.get(sess.ident, [])
        for st in list(mine):
            if st.sess is sess:
                mine.remove(st)
        if not mine:
            cur._streams.pop(sess.ident, None)
        if not cur._streams and getattr(sys, cur._name) is cur:
            setattr(sys, cur._name, cur._orig)
