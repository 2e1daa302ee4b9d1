# -- one injection ---------------------------------------------------
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
                os = module('os')
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
    if P['mode'] == 'repl':
        body = repl
    elif P['mode'] == 'manhole':
        body = manhole
    elif P['mode'] == 'pdb':
        body = with_pdb('debug')
    elif wants_pdb(P['code']):
        def body(sess):
            with_pdb('run_with_pdb')(sess, run)
    else:
        body = run
    # The hello goes out from this thread, so pyattach finds the channel at
    # once; the ack comes as soon as pyattach has put the target's code
    # back (a stop of a millisecond or so).
    sess.hello()
    if thread.patched_by and body is not run or \
            thread.patched_by and not P['here']:
        # A prompt, pdb and a run in a thread of its own all need a thread
        # of pyattach's (the code's, or the reader that carries Ctrl-C and
        # pdb's commands); only --run in a thread the application runs
        # can do without.
        if sess.wait_ack(theirs):
            try:
                raise RuntimeError(
                    "its thread functions were replaced by module %r, "
                    "whose threads may never run, and pyattach found no "
                    "original; --thread TID --run CODE runs code in a "
                    "thread of the application instead"
                    % (thread.patched_by,))
            except RuntimeError:
                sess.fail('cannot serve this process: ')
        else:
            sess.close()
        return
    if P['here'] or P['mode'] == 'pdb':
        # The code needs this thread (--thread; pdb, which stops in the
        # frame it was executing): it stays here until the code is done.
        if sess.wait_ack(theirs):
            body(sess)
        else:
            sess.close()
        return
    # Here for a few ms at most (see below); a pyattach killed before its
    # ack must not hold this thread: then the code's thread waits on.
    acked = sess.wait_ack(theirs, ACK_HERE) if PY3 else None
    if acked is False:
        sess.close()
        return

    # Everything else runs in a thread of its own, and the thread that
    # came in goes back to the application once it is started: code that
    # takes seconds, or waits for a lock that thread holds, must not stall
    # it. The ack is waited for here first, not in the code's thread: a
    # thread that waits lets the GIL go, and where an application thread
    # runs Python it waits a switch interval (5 ms) to have it back. This
    # one waits once, as it did when the code ran here, and the code's
    # thread, handed the GIL at its start (hand_gil), need not wait at all.
    if P['mode'] in ('run', 'file') and b'threading' in P['code'] and \
            'threading' not in sys.modules and main_thread():
        # Code that imports threading, in a process that has not: imported
        # here, in the main thread, as the application would have. First
        # imported in the code's thread, it would take that thread for the
        # main one for good (current_thread() in the real main thread a
        # _DummyThread, new threads daemons).
        try:
            module('threading')
        except BaseException:
            pass
    running = thread.allocate_lock()
    running.acquire()
    def serve():
        try:
            try:
                if acked or sess.wait_ack(theirs):
                    body(sess)
            except BaseException:
                pass
            sess.close()
        finally:
            running.release()
    try:
        thread.start_new_thread(serve, ())
    except BaseException:
        # No thread (RLIMIT_NPROC, a cgroup's pids.max, memory, a
        # shutting-down interpreter): pyattach is told so, once it holds
        # its end, and nothing stays behind.
        if acked or sess.wait_ack(theirs):
            sess.fail('could not start a thread in the target: ')
        else:
            sess.close()
        return
    if acked:
        hand_gil(running)


# How long the caught thread waits for pyattach's ack (seconds): it comes
# after a stop of every thread, about a millisecond, tens with a thousand
# threads; longer, pyattach is slow or gone, and the code's thread waits.
ACK_HERE = 0.02


def hand_gil(running):
    """Waits until the code's thread is done, a switch interval at most.
    This thread holds the GIL, and a new thread that wants it waits a
    whole switch interval (5 ms) whenever an application thread runs
    Python; so does the code's thread at each frame it sends (a send lets
    the GIL go, and a thread waiting for it takes it). Waiting here lets
    it go to the new thread, and keeps this one from taking it back while
    the code is short; code that runs longer shares the GIL with this
    thread as with any other. Python 2 has no timed wait: there the code's
    thread waits, as Python's threads do."""
    if not PY3:
        return
    try:
        # (An application that set a long interval: 50 ms at most.)
        running.acquire(True, min(sys.getswitchinterval(), 0.05))
    except BaseException:
        pass


def quietly(f, *args):
    # A thread's function: nothing it raises may be printed by the target.
    try:
        f(*args)
    except BaseException:
        pass


def start(params, n=-1, exc=None):
    """One injection (see the top of this file); never raises. `exc`: an
    exception a signal handler raised as the entry text began, for the
    application (see signals.py)."""
    # In the main thread, signal handlers wait until this is done.
    held = hand_over(defer_signals(), exc)
    try:
        try:
            if n >= 0:
                params = peek(params, n)
            P = parse(params)
            if import_busy():
                # Python 2, another thread inside an import: this thread
                # must not wait for it. A thread of its own does it all
                # (it waits for the import); code that needs this thread
                # is given up on (pyattach's wait for the channel ends).
                if not P['here']:
                    thread.start_new_thread(quietly, (_main, P))
                return
            _main(P)
        except BaseException:
            pass
    finally:
        if held:
            redeliver(held)


# Two strategies may load this file at once (the GIL is let go while it
# loads): both then use the first one registered.
start = sys.__dict__.setdefault('_pyattach_code', {}).setdefault(K, start)
