# -- the interactive prompt ------------------------------------------
# CPython's own prompt, driven here line by line rather than through
# code.InteractiveConsole.interact(): interact() sets sys.ps1/ps2 for the
# whole process (libraries test hasattr(sys, 'ps1') to decide they run
# interactively), its showtraceback() sets sys.last_type/value/traceback
# (3.12+: sys.last_exc too), which keep frames alive, and a frozen app
# may have no `code` module at all. The prompts travel to pyattach in the
# Q frames instead; the "more input?" rule is codeop's, or the same rule
# on compile() where codeop is missing too.
PyCF_DONT_IMPLY_DEDENT = 0x200
PyCF_ALLOW_INCOMPLETE_INPUT = 0x4000


class Compiler(object):
    """codeop.CommandCompiler's rule for a target without codeop: None
    while the source needs more lines, a code object when it is
    complete; SyntaxError when it can never be. Keeps the __future__
    flags of what it compiled, as CommandCompiler does."""

    def __init__(self):
        self.flags = PyCF_DONT_IMPLY_DEDENT | await_flags()
        self.future = 0
        try:
            import __future__
            for name in __future__.all_feature_names:
                self.future |= getattr(__future__, name).compiler_flag
        except Exception:
            pass

    def compile(self, source, extra=0):
        code = compile(source, self.filename, 'single', self.flags | extra,
                       True)
        self.flags |= code.co_flags & self.future
        return code

    def __call__(self, source, filename, symbol='single'):
        self.filename = filename
        for line in source.split('\n'):
            line = line.strip()
            if line and line[0] != '#':
                break
        else:
            source = 'pass'
        if sys.version_info >= (3, 10):
            # The compiler tells incomplete input apart itself.
            try:
                return self.compile(source, PyCF_ALLOW_INCOMPLETE_INPUT)
            except SyntaxError:
                try:
                    self.compile(source + '\n', PyCF_ALLOW_INCOMPLETE_INPUT)
                    return None
                except SyntaxError as e:
                    if 'incomplete input' in str(e):
                        return None
            return self.compile(source)
        # Before 3.10 (codeop's rule then): incomplete if appending
        # newlines changes the error.
        code = code1 = err1 = err2 = None
        try:
            code = self.compile(source)
        except SyntaxError:
            pass
        if code is not None:
            return code
        try:
            code1 = self.compile(source + '\n')
        except SyntaxError as e:
            err1 = e
        try:
            self.compile(source + '\n\n')
        except SyntaxError as e:
            err2 = e
        if code1 is None and repr(err1) == repr(err2):
            raise err1
        return None


def command_compiler():
    try:
        import codeop
        c = codeop.CommandCompiler()
        c.compiler.flags |= await_flags()
        return c
    except Exception:
        return Compiler()


def show_exception(skip=None):
    """The exception being handled, as the prompt shows it, on the
    session's stderr; never stored in sys.last_*. `skip`: the code object
    whose frames head the traceback (the prompt's own)."""
    t, v, tb = sys.exc_info()
    try:
        while tb is not None and (tb.tb_frame.f_code is skip or (
                skip is not None and
                tb.tb_frame.f_code.co_filename == '<pyattach>')):
            tb = tb.tb_next
        try:
            import traceback
            if skip is None:
                text = traceback.format_exception_only(t, v)
            else:
                text = traceback.format_exception(t, v, tb)
            sys.stderr.write(''.join(text))
        except ImportError:
            sys.stderr.write('%s: %s\n' % (t.__name__, v))
    finally:
        del t, v, tb


# What a session changes and puts back: the names its prompt binds where
# CPython's prompt would (builtins._, set by sys.displayhook) and the
# helpers it offers in __main__.
try:
    import builtins as _builtins
except ImportError:
    import __builtin__ as _builtins
_MISSING = object()


def own_thread(frame):
    """True for a thread of pyattach's own (a session's thread, a
    reader): its outermost frame is the bootstrap's."""
    while frame.f_back is not None:
        frame = frame.f_back
    return frame.f_code.co_filename == '<pyattach>'


def read_tid(ident):
    """The kernel's tid of the thread whose pthread_t is `ident`: glibc's
    struct pthread holds it at 0x2d0 on x86_64. Read through /proc/self/mem
    (a bad address fails there, it cannot crash); only believed when the
    same read gives this thread's own tid (see tid_reader). posix, not
    os: eventlet's os.open registers the descriptor with the calling
    thread's hub, making one (an epoll descriptor that outlived each
    session) in this thread of pyattach's."""
    os = module('posix')
    try:
        fd = os.open('/proc/self/mem', os.O_RDONLY)
        try:
            os.lseek(fd, ident + 0x2d0, 0)
            data = os.read(fd, 4)
        finally:
            os.close(fd)
        if len(data) == 4:
            return struct.unpack('<i', data)[0]
    except Exception:
        pass
    return None


def tid_reader():
    if read_tid(thread.get_ident()) == native_tid() != 0:
        return read_tid
    return lambda ident: None


def session_stacks():
    """Every thread's stack but pyattach's own, each headed by the tid that
    --thread takes (as `pyattach dump` shows it) and the thread's name."""
    traceback = module('traceback')
    # Names only where the application uses threading: imported here, in
    # a thread not the main one, it would take this thread for the main
    # one for good.
    threading = sys.modules.get('threading')
    known, main = {}, ()
    if threading is not None:
        known = dict((t.ident, t) for t in threading.enumerate())
        main = getattr(threading, '_MainThread', ())
    tid_of = frame = None
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == thread.get_ident() or own_thread(frame):
            continue
        t = known.get(ident)
        tid = getattr(t, 'native_id', None)
        if tid is None:
            if tid_of is None:
                tid_of = tid_reader()
            tid = tid_of(ident)
        head = 'Thread %s' % (tid if tid else '? (ident %#x)' % ident)
        if t is not None:
            head += ' "%s"' % t.name
        if isinstance(t, main):
            head += ' (main)'
        out.append(head + ':\n')
        # A thread caught for this session may still be in pyattach's
        # code (it hands the GIL over): its stack is the application's.
        while frame is not None and ours(frame):
            frame = frame.f_back
        out.extend(traceback.format_stack(frame))
        out.append('\n')
    del frame
    return ''.join(out)


class Prompt(object):
    """One session's prompt: lines read from pyattach, compiled with the
    "more input?" rule, run in __main__'s globals, in this thread."""

    def __init__(self, sess, ns):
        self.sess = sess
        self.ns = ns
        self.compiler = command_compiler()
        self.ps1 = str(getattr(sys, 'ps1', '>>> '))
        self.ps2 = str(getattr(sys, 'ps2', '... '))
        # The last value the session's statements bound to builtins._
        # (sys.displayhook does, for each value shown).
        self.underscore = _MISSING

    def loop(self):
        """Until end of input or SystemExit (exit()): the user left."""
        lines = []
        while True:
            try:
                line = self.sess.readline(self.ps2 if lines else self.ps1)
                if not line:
                    return
                lines.append(line.rstrip('\n'))
                try:
                    code = self.compiler('\n'.join(lines), '<console>')
                except (OverflowError, SyntaxError, ValueError):
                    lines = []
                    show_exception()
                    if not PY3:
                        sys.exc_clear()
                    continue
                if code is None:
                    continue
                lines = []
                self.run(code)
            except SystemExit:
                return
            except KeyboardInterrupt:
                lines = []
                try:
                    sys.stderr.write('\nKeyboardInterrupt\n')
                except KeyboardInterrupt:
                    pass

    def run(self, code):
        sess = self.sess
        sess.start_exec()
        try:
            late = False
            before = _builtins.__dict__.get('_', _MISSING)
            try:
                if is_awaiting(code):
                    run_awaited(sess, code, self.ns)
                else:
                    exec(code, self.ns)
            finally:
                now = _builtins.__dict__.get('_', _MISSING)
                if now is not before:
                    self.underscore = now
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
            show_exception(self.run.__func__.__code__)
            if not PY3:
                sys.exc_clear()


def repl(sess):
    main = sys.modules['__main__']

    def dump_stacktraces():
        """Print the Python stack of every thread but pyattach's own."""
        sys.stdout.write(session_stacks())

    helpers = {'dump_stacktraces': dump_stacktraces}
    added = []
    underscore = _builtins.__dict__.get('_', _MISSING)
    prompt = None
    try:
        thread.start_new_thread(sess.reader, ())
        sess.send(b'S', session_stacks())
        for k, v in helpers.items():
            if k not in main.__dict__:
                main.__dict__[k] = v
                added.append(k)
        redirect(sess)
        prompt = Prompt(sess, main.__dict__)
        prompt.loop()
        # The user left (end of input, exit()): anything else ends the
        # session without this, and pyattach says so.
        sess.send(b'R', 'ok')
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
        # As before the session: what sys.displayhook bound to `_` while
        # it ran is not the application's (unless the application bound
        # its own since).
        try:
            mine = _MISSING if prompt is None else prompt.underscore
            if mine is not _MISSING and \
                    _builtins.__dict__.get('_', _MISSING) is mine:
                if underscore is _MISSING:
                    _builtins.__dict__.pop('_', None)
                else:
                    _builtins._ = underscore
        except BaseException:
            pass
        sess.close()
