# -- the interactive prompt ------------------------------------------
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


