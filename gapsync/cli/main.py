"""Entry point: the one place where exceptions become exit codes (pip's ``_run_wrapper`` in small)."""

from __future__ import annotations

import sys

import click

from gapsync import __version__
from gapsync.cli.commands import LazyGroup
from gapsync.cli.exit_codes import ExitCode, exit_code_for
from gapsync.errors import GapsyncError


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gapsync")
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Carry Python packages, images and models across an air gap, signed and verified."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug



def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    from gapsync.log import set_unattended

    set_unattended(False)  # only `sync` turns it on, for its own run
    code: int
    try:
        rv = cli.main(args=argv, prog_name="gapsync", standalone_mode=False)
    except GapsyncError as e:
        click.echo("gapsync: error: " + " ".join(str(e).split()), err=True)  # always one line
        code = exit_code_for(e)
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.ClickException as e:
        e.show()
        code = ExitCode.USAGE if isinstance(e, click.UsageError) else ExitCode.ERROR
    except click.Abort:
        click.echo("gapsync: interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        click.echo("gapsync: interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        code = ExitCode.ERROR
    except Exception as e:  # the last resort: one line unless --debug
        if debug:
            raise
        click.echo(f"gapsync: internal error: {type(e).__name__}: {e} (run with --debug for a traceback)", err=True)
        code = ExitCode.ERROR
    else:
        code = int(rv) if isinstance(rv, int) else ExitCode.OK
    if argv is None:
        sys.exit(int(code))
    return int(code)


if __name__ == "__main__":
    main()
