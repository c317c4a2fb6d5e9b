"""The running server on anyio: listeners, client and backend connections, roles.

Entry points: ``perlbal.runtime.main.run_server`` (a whole process) and
``perlbal.runtime.server.Runtime`` (the interpreter's ``Effects``).  The
contract role handlers are written against is ``perlbal.runtime.context``.
"""
