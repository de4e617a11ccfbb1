"""Pure builders of argv lists and remote command strings.

Nothing here performs I/O or imports an executor: every function returns data that
``subprocess`` (locally) or ``bgkit.hosts`` (remotely) runs, and every one is tested
with exact-value assertions.
"""
