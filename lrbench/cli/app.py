"""The typer application and the one place that turns errors into exit codes."""

from __future__ import annotations

import sys
import traceback

import typer

from lrbench import __version__
from lrbench.errors import RunFailed, UserError

app = typer.Typer(
    name="lrbench",
    help=(
        "Budgeted-training benchmarks of learning-rate schedules.\n\n"
        "Preview a schedule (lrbench schedule rex --steps 1000), train one run (lrbench run), "
        "run a YAML sweep (lrbench sweep configs/smoke.yaml) and turn it into the REX paper's "
        "tables (lrbench report results/smoke)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lrbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, map UserError to exit 2 and RunFailed to exit 1."""
    try:
        # a typer.Exit(n) comes back as n here
        code = app(args=argv, prog_name="lrbench", standalone_mode=False)
    except (UserError, RunFailed) as err:
        if _state["debug"]:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except typer.Exit as ex:
        sys.exit(ex.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        # typer's usage errors (its bundled click's ClickException): one line and exit 2; the
        # help a bare command asks for (no_args_is_help) is shown whole.
        if hasattr(err, "show") and isinstance(getattr(err, "exit_code", None), int):
            if type(err).__name__ == "NoArgsIsHelpError" or not hasattr(err, "format_message"):
                err.show()
            else:
                print(f"error: {usage_line(err)}", file=sys.stderr)
            sys.exit(err.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


def usage_line(err: Exception) -> str:
    """A usage error as one line: typer's message, the value typed (typer validates options
    with pydantic, whose error holds it), and where the command's help is."""
    line = err.format_message()  # type: ignore[attr-defined]
    cause = err.__cause__
    if hasattr(cause, "errors") and cause.errors() and "input" in cause.errors()[0]:
        line += f", got {cause.errors()[0]['input']}"
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        line += f" (see {ctx.command_path} --help)"
    return line
