"""meshclient's benchmark harness: ``python -m bench`` (or ``nox -s bench``).

Every scenario compares meshclient with raw httpx (or a hand-built peer) measured in the
same run, against backend processes on 127.0.0.1, and reports its acceptance check. The
harness reports; it is not a test, so it exits 0 whatever the numbers say.
"""
