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
    elif P['mode'] == 'pdb':
        body = with_pdb('debug')
    elif wants_pdb(P['code']):
        def body(sess):
            with_pdb('run_with_pdb')(sess, run)
    else:
        body = run
    # The hello goes out from this thread, so pyattach finds the channel at
    # once, whichever thread then waits for the ack.
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

    # Everything else runs in a thread of its own, and the thread that
    # came in goes back to the application at once: code that takes
    # seconds, or waits for a lock that thread holds, must not stall it.
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
    def serve():
        try:
            if sess.wait_ack(theirs):
                body(sess)
        except BaseException:
            pass
        sess.close()
    try:
        thread.start_new_thread(serve, ())
    except BaseException:
        # No thread (RLIMIT_NPROC, a cgroup's pids.max, memory, a
        # shutting-down interpreter): pyattach is told so, once it holds
        # its end, and nothing stays behind.
        if sess.wait_ack(theirs):
            sess.fail('could not start a thread in the target: ')
        else:
            sess.close()

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
