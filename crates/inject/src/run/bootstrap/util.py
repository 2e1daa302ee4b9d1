# -- helpers the modes share ----------------------------------------
def set_async_exc(ident, exc):
    try:
        ctypes = module('ctypes')
        f = ctypes.pythonapi.PyThreadState_SetAsyncExc
        tid = ctypes.c_ulong(ident) if sys.version_info >= (3, 7) \
            else ctypes.c_long(ident)
        f(tid, ctypes.py_object(exc) if exc is not None else None)
    except Exception:
        pass


class _Flushed(BaseException):
    """Raised in a thread and caught at once (see flush_async_exc)."""


def flush_async_exc():
    """Takes back a KeyboardInterrupt still pending for this thread, by
    putting one of ours in its place and catching it right here. Clearing
    it with PyThreadState_SetAsyncExc(id, NULL) leaves Python 3's
    eval-breaker flag set for good (it is set for NULL too, and cleared
    only when a thread raises one): every thread then takes the slow path
    at each check, and on 3.11 a thread with a trace function spins at the
    start of its next call, the GIL held, forever."""
    # Ours may be raised as soon as the call that sets it returns: the
    # handler is in place before.
    try:
        try:
            import ctypes
            ident = thread.get_ident()
            tid = ctypes.c_ulong(ident) if sys.version_info >= (3, 7) \
                else ctypes.c_long(ident)
            if ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    tid, ctypes.py_object(_Flushed)) != 1:
                return
        except Exception:
            return
        n = 0
        while n < 10000000:  # raised at the first check (2.7: 100 ticks)
            n += 1
    except _Flushed:
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


def native_tid():
    # The kernel's id of this thread, for pyattach to cut a blocking
    # call short on Ctrl-C. From 3.8 a gettid that keeps the GIL: a
    # readlink lets it go, and where an application thread runs Python
    # this thread then waits a switch interval to have it back.
    try:
        return module('_thread').get_native_id()
    except Exception:
        pass
    try:
        link = module('os').readlink('/proc/thread-self')
        return int(link.rsplit('/', 1)[1])
    except Exception:
        pass
    # Never `import threading` here: imported first from a thread other
    # than the main one, it takes that thread for the main one for good.
    try:
        return sys.modules['threading'].get_native_id()
    except Exception:
        return 0


def describe_exc():
    """The exception being handled, in one line."""
    t, v = sys.exc_info()[:2]
    try:
        return '%s: %s' % (t.__name__, v)
    except Exception:
        return 'an exception'


# Python 2 has one import lock for the whole process, and every import
# statement takes it, even of a module already imported: a thread of the
# application caught while another one is inside a slow import would wait
# for it in the bootstrap (seconds). imp.lock_held() says so; imp is
# imported once, with the bootstrap, so that asking needs no import.
IMP = None
if not PY3:
    try:
        import imp as IMP
    except Exception:
        pass


def import_busy():
    try:
        return IMP is not None and IMP.lock_held()
    except Exception:
        return False
