"""The two kinds of failure the CLI tells apart (DESIGN.md, "Errors and exit codes")."""


class UserError(Exception):
    """Bad input: a config, an argument, missing data. The CLI prints one line and exits 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run or the sweep failed at run time. The CLI prints the message and exits 1."""

    exit_code = 1
