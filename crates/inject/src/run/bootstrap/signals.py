# pyattach bootstrap, first part (see session.py for the whole): signals
# met in the main thread.
#
# CPython runs Python signal handlers in the main thread, wherever it is:
# in pyattach's code too when that thread runs the bootstrap or --run code.
# A handler's exception (SIGTERM's SystemExit, SIGINT's KeyboardInterrupt,
# a SIGALRM timeout) would then end in pyattach's code instead of the
# application's. So, while the main thread runs pyattach's code, each
# Python handler is stood in for by a Deferred that only notes the signal;
# once the thread has gone back to the application, its own handler runs
# there, once: tripped as a signal's arrival would, without its C handler
# (and wakeup fd) seeing it again.
import sys


class Deferred(object):
    _pyattach_deferred = True

    def __init__(self, orig, state):
        self.orig, self.state = orig, state

    def __call__(self, signum, frame):
        if self.state['on']:
            if signum not in self.state['got']:
                # A signal is pending once, whatever the number sent.
                self.state['got'].append(signum)
            return None
        # Left in place after the session (the application swapped
        # handlers meanwhile): the handler it stands for.
        return self.orig(signum, frame)


def main_thread():
    try:
        # Not `import os`: see module() in session.py.
        os = sys.modules.get('os') or __import__('os')
        tid = os.readlink('/proc/thread-self').rsplit('/', 1)[1]
        return tid == str(os.getpid())
    except (OSError, IOError, ImportError, AttributeError, IndexError):
        # (Not a handler's exception: that one is the caller's to keep.)
        return False


def swap(mod, signum, state, new, installed=None):
    # signum's handler h becomes new(h) (unless that is false); noted in
    # `installed`. A handler may run and raise at any bytecode here: in
    # Python 3's signal.signal, which first runs those of signals already
    # pending, or, on Python 2, between any two instructions (and the
    # detour at PyErr_CheckSignals comes in just as one is due). Its
    # exception is kept for the application, and the swap tried again.
    for _ in range(8):
        try:
            h = mod.getsignal(signum)
            if callable(h) and not getattr(h, '_pyattach_deferred', False) \
                    or installed is None:
                w = new(h)
                if w:
                    if installed is not None:
                        installed.append((signum, w))
                    mod.signal(signum, w)
            return
        except BaseException:
            keep(state)


def keep(state):
    # In an except clause: the exception, if it is the first, for the
    # application.
    if state['exc'] is None:
        state['exc'] = sys.exc_info()[1]


def defer_signals():
    """In the main thread: defer the Python signal handlers until
    redeliver(held) with what this returns; elsewhere None. Never raises:
    a handler that runs and raises in here (a signal that came as the
    thread entered) is the main thread's, its exception kept for the
    application."""
    state = {'on': True, 'got': [], 'exc': None}
    installed = []
    mod = sys.modules.get('_signal') or sys.modules.get('signal')
    try:
        if mod is None or not main_thread():
            return None
    except BaseException:
        # Only the main thread runs handlers.
        keep(state)
    signums = range(1, getattr(mod, 'NSIG', 65))
    try:
        # Most are SIG_DFL: only those with a Python handler, found at C
        # speed (tens of microseconds less with the GIL held).
        get = mod.getsignal
        signums = [n for n in signums if callable(get(n))]
    except BaseException:
        keep(state)
    for signum in signums:
        swap(mod, signum, state, lambda h: Deferred(h, state), installed)
    enter(state)
    return mod, state, installed


# The main thread's states while it runs pyattach's code, innermost last
# (an injection may come in while it runs another's --thread code); and
# the lock (made once `thread` is defined, session.py) that makes a
# replay's look at them and its delivery one step against an entry: a
# replay never sets its exception for the main thread once it is inside,
# where pyattach's code would catch it, but hands it to the innermost
# state, whose redeliver gives it back (replay).
INSIDE = []
GATE = []


def enter(state):
    """The main thread is in pyattach's code until leave(state): replays
    from here on hand their signals and exception over to `state`. One a
    replay set before that is raised here, and kept."""
    for _ in range(8):
        try:
            if not [s for s in INSIDE if s is state]:
                if GATE:
                    with GATE[0]:
                        INSIDE.append(state)
                else:
                    # The module's definition (no replay of it yet).
                    INSIDE.append(state)
            break
        except BaseException:
            keep(state)
    drain(state)


def drain(state):
    # An asynchronous exception set for this thread is raised at the next
    # eval-breaker check: one of a loop's backward jumps (3.x), or, on
    # Python 2, once the check interval has run out.
    n = 4 if sys.version_info[0] >= 3 else \
        min(sys.getcheckinterval(), 100000) + 2
    for _ in range(3):
        try:
            for _ in range(n):
                pass
            return
        except BaseException:
            keep(state)


def leave(state):
    # The main thread is leaving pyattach's code: what replays handed to
    # `state` meanwhile is its own to redeliver.
    for _ in range(8):
        try:
            if GATE:
                with GATE[0]:
                    gone(state)
            else:
                gone(state)
            return
        except BaseException:
            keep(state)


def gone(state):
    for i, s in enumerate(INSIDE):
        if s is state:
            del INSIDE[i]
            return


def redeliver(held):
    """Puts the handlers back; the deferred signals (and an exception a
    handler raised meanwhile) go to the main thread once it is back in
    the application."""
    mod, state, installed = held
    for signum, w in installed:
        swap(mod, signum, state, lambda h: h is w and w.orig)
    # From here on the handlers are the application's again: one that runs
    # and raises in the few instructions left of pyattach's code is lost.
    state['on'] = False
    leave(state)
    # A handler may still raise here (around the thread's start): kept, and
    # the start tried again; one replay only (the token), which reads the
    # state once this thread has left pyattach's code.
    state['token'] = True
    for _ in range(3):
        try:
            if state['got'] or state['exc'] is not None:
                thread.start_new_thread(replay, (mod, state, thread.get_ident()))
            return
        except BaseException:
            keep(state)


def ours(frame):
    """A frame of pyattach's own code: the bootstrap and the text that
    PyRun_SimpleString runs to call it (not --run code, <pyattach-run>,
    where pdb may stop)."""
    c = frame.f_code
    return (frame.f_globals.get('__name__') == '__pyattach__' or
            c.co_filename == '<pyattach>' or names_pyattach(c))


def names_pyattach(code, depth=3):
    """The entry text's code (and the lambdas in it) names pyattach's
    registry and file name among its constants."""
    for k in code.co_consts:
        if isinstance(k, str) and k in ('_pyattach_code', '<pyattach>'):
            return True
        if depth and hasattr(k, 'co_consts') and names_pyattach(k, depth - 1):
            return True
    return False


def in_pyattach(frame):
    # pyattach's code or --run code anywhere on the thread's stack.
    while frame is not None:
        if ours(frame) or frame.f_code.co_filename.startswith('<pyattach'):
            return True
        frame = frame.f_back
    return False


def replay(mod, state, ident):
    if not state.pop('token', None):
        return
    import time
    end = time.time() + 5
    while True:
        with GATE[0]:
            if INSIDE:
                # Back in pyattach's code (another injection): its state
                # takes them over, and its redeliver gives them back.
                handed(INSIDE[-1], state)
                return
            if not in_pyattach(sys._current_frames().get(ident)) or \
                    time.time() > end:
                deliver(mod, state, ident)
                return
        time.sleep(0.001)


def handed(to, state):
    # The older exception goes first (it came first); a second one, raised
    # by a handler while the first was on its way, has no place to go.
    if state['exc'] is not None:
        to['exc'] = state['exc']
    for signum in state['got']:
        if signum not in to['got']:
            to['got'].append(signum)


def deliver(mod, state, ident):
    exc = state['exc']
    if exc is not None:
        # Raised where the thread is now, in the application; the same
        # object (a class whose construction returns it: an asynchronous
        # exception is given as a class).
        def again(cls, *a, **k):
            return exc
        try:
            cls = type(type(exc).__name__, (type(exc),),
                       {'__new__': again})
        except Exception:
            cls = type(exc)
        set_async_exc(ident, cls)
    for signum in state['got']:
        if trip(signum):
            continue
        try:
            mod.pthread_kill(ident, signum)
        except Exception:
            import os
            os.kill(os.getpid(), signum)


# PySignal_SetWakeupFd's address in this process, from pyattach (0:
# unknown); see trip().
WAKEUP_FD_FN = [0]


def trip(signum):
    """Has the application's Python handler of `signum` run in the main
    thread, as a signal's arrival would, without sending one: the signal
    already went through the process's C handler (its wakeup fd, a C
    library's own handler) once, and must not twice: PyErr_SetInterruptEx
    (3.10+), or the flags it sets (trip_flags, before). False where it
    cannot, and the signal is sent again instead."""
    if sys.version_info < (3, 10):
        return trip_flags(signum)
    try:
        import ctypes
        api = ctypes.pythonapi
        # A trip also writes the signal's byte to the wakeup fd, which its
        # arrival already did: asyncio's add_signal_handler callbacks,
        # run from those bytes, would run twice. The fd is off for the
        # trip (the GIL held, a few instructions; a signal arriving in
        # just those would miss its byte), and the fd's warn_on_full_buffer
        # comes back as True, the default.
        off = getattr(api, 'PySignal_SetWakeupFd', None)
        if off is None and WAKEUP_FD_FN[0]:
            # Not exported before 3.13: pyattach found it for us.
            off = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_int)(
                WAKEUP_FD_FN[0])
        fd = off(-1) if off is not None else -1
        try:
            return api.PyErr_SetInterruptEx(signum) == 0
        finally:
            if fd != -1:
                off(fd)
    except Exception:
        return False


# Before 3.10: the addresses of signalmodule.c's `Handlers` (an entry of 16
# bytes a signal: its int flag first) and `is_tripped`, from pyattach
# (empty: unknown); see trip_flags().
TRIP_FLAGS = []


def trip_flags(signum):
    """trip() before 3.10, which has no PyErr_SetInterruptEx: what a
    signal's arrival does after its C handler has written the wakeup fd,
    done here (the GIL held): its handler's flag and the module's set, and
    PyErr_CheckSignals queued as a pending call, which only the main thread
    runs: there it calls the Python handler, whose exception propagates
    where the thread is, as a handler's does. False where the flags are
    unknown, and the signal is sent again instead."""
    if not TRIP_FLAGS or not 0 < signum < 65:
        return False
    try:
        import ctypes
        api = ctypes.pythonapi
        handlers, flag = TRIP_FLAGS
        ctypes.c_int.from_address(handlers + 16 * signum).value = 1
        ctypes.c_int.from_address(flag).value = 1
        # Prototypes of their own: the application's ctypes.pythonapi
        # functions keep their argtypes.
        add = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                                ctypes.c_void_p)(('Py_AddPendingCall', api))
        check = ctypes.cast(ctypes.PYFUNCTYPE(ctypes.c_int)(
            ('PyErr_CheckSignals', api)), ctypes.c_void_p)
        # (Refused only when its queue is full: the flags stay set, and the
        # next check the main thread makes runs the handler.)
        add(check, None)
        return True
    except Exception:
        return False


def hand_over(held, exc):
    """`held` (from defer_signals), with `exc` to raise again in the main
    thread once it is back in the application: an exception a handler
    raised in pyattach's code before the deferral began. Only the main
    thread runs handlers: elsewhere `exc` is pyattach's own failure, and
    stays here."""
    if exc is not None and (held or main_thread()):
        if not held:
            held = (None, {'on': False, 'got': [], 'exc': None}, [])
        if held[1]['exc'] is None:
            held[1]['exc'] = exc
    return held


def loaded(exc=None):
    """Ends the deferral begun as this module was defined (LOADING); `exc`
    as in hand_over."""
    held = hand_over(LOADING and LOADING.pop(), exc)
    if held:
        redeliver(held)


# The first injection in a process defines this module: imports (which run
# Python code) and definitions, in the main thread too. Handlers are
# deferred from here on, until the loader calls loaded() (bootstrap.rs),
# whether the rest of the module could be defined or not. The last line of
# this part.
LOADING = []
LOADING.append(defer_signals())
