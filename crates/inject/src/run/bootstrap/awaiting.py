# -- top-level await (the prompt and --run, 3.8+) --------------------
# `await coro()` at the prompt or in --run code, as `python -m asyncio`
# allows: compiled with PyCF_ALLOW_TOP_LEVEL_AWAIT, the code is a
# coroutine, which runs as a task on the event loop the target already
# runs (found in the threads' frames, not guessed; the main thread's
# first when there are several, and the session is told), while the
# session's thread waits for it. Ctrl-C cancels that task alone. What the
# task prints reaches the session: the stream proxies also follow a
# context variable the task sets (tasks it starts inherit it), so the
# application's own output from the loop's thread stays the
# application's.
PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000
CO_COROUTINE = 0x80


def await_flags():
    return PyCF_ALLOW_TOP_LEVEL_AWAIT if sys.version_info >= (3, 8) else 0


def is_awaiting(code):
    return bool(code.co_flags & CO_COROUTINE)


def running_loops():
    """(thread ident, loop) of each asyncio event loop running in the
    target, the main thread's first. A loop runs in the frame of its
    BaseEventLoop.run_forever; a loop of another kind (uvloop) has no
    such frame and is looked for among live objects."""
    asyncio = sys.modules.get('asyncio')
    if asyncio is None:
        return []
    base = asyncio.base_events.BaseEventLoop
    forever = base.run_forever.__code__
    found = []
    frames = sys._current_frames()
    try:
        for ident, frame in frames.items():
            while frame is not None:
                if frame.f_code is forever:
                    loop = frame.f_locals.get('self')
                    if isinstance(loop, base) and loop.is_running():
                        found.append((ident, loop))
                    break
                frame = frame.f_back
    finally:
        del frames, frame
    if not found:
        for o in module('gc').get_objects():
            if isinstance(o, asyncio.AbstractEventLoop) and o.is_running():
                found.append((getattr(o, '_thread_id', None), o))
    threading = sys.modules.get('threading')
    main = threading.main_thread().ident if threading else None
    found.sort(key=lambda f: f[0] != main)
    return found


def thread_label(ident):
    """`TID "name"` of the thread `ident`, as `pyattach dump` shows it."""
    threading = sys.modules.get('threading')
    t = threading and threading._active.get(ident)
    if t is None:
        return '? (ident %#x)' % (ident or 0)
    return '%s "%s"' % (getattr(t, 'native_id', '?'), t.name)


_WRAP = '''
async def _pyattach_task(var, key, coro):
    var.set(key)
    return await coro
'''


def task_context(sess):
    """The context variable the stream proxies of `sess` follow (one per
    process, kept on the proxies, which outlive any one session's
    namespace)."""
    var = None
    for p in sess.proxies:
        var = var or p.__dict__.get('_task_key')
    if var is None:
        var = module('contextvars').ContextVar('pyattach_session')
    for p in sess.proxies:
        p.__dict__['_task_key'] = var
    return var


def run_awaited(sess, code, ns):
    """Runs `code` (compiled with await_flags(), a coroutine) as a task on
    the target's running event loop and waits for it; returns its value,
    raises its exception (with the task's own traceback)."""
    loops = running_loops()
    if not loops:
        raise RuntimeError('await needs an asyncio event loop running in '
                           'the target, and none is')
    ident, loop = loops[0]
    if ident == thread.get_ident():
        raise RuntimeError('the code runs in the thread of the event loop '
                           'it would await on (--thread): run it without '
                           '--thread')
    if len(loops) > 1 and not getattr(sess, 'told_loops', False):
        sess.told_loops = True
        sys.stderr.write(
            'pyattach: awaiting on the event loop of thread %s; loops also '
            'run in threads %s\n' % (thread_label(ident), ', '.join(
                thread_label(i) for i, _ in loops[1:])))
    asyncio = sys.modules['asyncio']
    futures = module('concurrent.futures')
    g = {}
    exec(compile(_WRAP, '<pyattach>', 'exec', 0, True), g)
    coro = eval(code, ns)
    fut = asyncio.run_coroutine_threadsafe(
        g['_pyattach_task'](task_context(sess), sess.ident, coro), loop)
    try:
        while True:
            try:
                return fut.result(0.05)
            except futures.TimeoutError:
                continue
            except futures.CancelledError:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        fut.cancel()
        stop = KeyboardInterrupt()
    except BaseException:
        stop = fut.exception(0) if fut.done() and not fut.cancelled() \
            else None
        if stop is None:
            raise
        # The task's own frames: from the code on (the ones above, in
        # this thread and in concurrent.futures, are not the user's).
        tb = first = stop.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_name != '_pyattach_task':
            tb = tb.tb_next
        stop.__traceback__ = first if tb is None else tb.tb_next
        del tb, first
    # Raised here, outside the handlers: not chained to what they caught.
    raise stop
