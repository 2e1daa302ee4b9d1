# -- pdb, compiled on first use ----------------------------------------
# pdb.py is in PDB_SOURCE as text: compiled with the rest, it would hold the
# GIL about twice as long at every process's first injection, whatever the
# mode (13 ms more on 3.12).
def with_pdb(name):
    """pdb.py's function `name`; its text is compiled the first time."""
    g = globals()
    if '_G' not in g:  # pdb.py's last line
        exec(compile(PDB_SOURCE, '<pyattach>', 'exec', 0, True), g)
    return g[name]


def wants_pdb(code):
    """--run code that may open pdb (see pdb.py's run_with_pdb)."""
    return b'breakpoint' in code or b'set_trace' in code
