# -- the two modes --------------------------------------------------
def run(sess):
    main = sys.modules['__main__'].__dict__
    data, fname, source = sess.P['code'], '<pyattach-run>', None
    if sess.P['mode'] == 'file':
        # --run-file: the file's name NUL its bytes, compiled as bytes so
        # that a coding cookie counts as in any file; tracebacks name it.
        name, _, data = data.partition(b'\0')
        fname, source = u(name), data
    src = u(data)
    try:
        # An import hook of the application may refuse these.
        linecache = module('linecache')
        traceback = module('traceback')
    except BaseException:
        return sess.fail('could not import what --run needs: ')
    try:
        # Reads pyattach's frames: Ctrl-C, and the end of the session.
        thread.start_new_thread(sess.reader, ())
    except BaseException:
        return sess.fail('could not start a thread in the target: ')
    entry = (len(src), None, src.splitlines(True), fname)
    status = 'ok'
    try:
        # So tracebacks and pdb show the code's lines; removed at the end.
        linecache.cache[fname] = entry
        redirect(sess)
        try:
            code = compile(src if source is None else source, fname,
                           'exec', await_flags(), True)
            sess.start_exec()
            late = False
            try:
                if is_awaiting(code):
                    run_awaited(sess, code, main)
                else:
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
            while tb is not None and \
                    tb.tb_frame.f_code.co_filename == '<pyattach>':
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
