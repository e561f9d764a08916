"""``dvx artifacts ...``: named, typed, versioned data (``protocols/artifacts.md``).

A typer app the main CLI registers with ``app.add_typer(artifacts_app, name="artifacts")``.
It only parses and renders; ``dvx.api`` (``artifacts_*``) and ``dvx.artifacts`` do the work.
(No ``from __future__ import annotations``: typer reads the annotations.)
"""

from typing import Annotated, Any

import typer

artifacts_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                            help="Artifacts: named, typed versions of tracked data, with aliases.")

_JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _size(n: int) -> str:
    from dvx.cli import human

    return human(n)


@artifacts_app.command("add")
def add_cmd(
    path: Annotated[str, typer.Argument(help="a file or directory in the repository")],
    name: Annotated[str, typer.Option("--name", help="artifact name, e.g. model")],
    type_: Annotated[str, typer.Option("--type", help="artifact type, e.g. model or dataset")],
    alias: Annotated[list[str] | None, typer.Option(
        "--alias", "-a", help="alias to point at this version (repeatable); latest is set anyway")] = None,
    as_json: _JsonOpt = False,
) -> None:
    """Store PATH (as dvx add) and record it as a new version of NAME (only when its content changed)."""
    from dvx.cli import _emit_json, _progress, _run, out

    def go() -> None:
        from dvx.api import artifacts_add

        res = artifacts_add(path, name=name, type=type_, aliases=alias or [], progress=_progress())
        if as_json:
            _emit_json(res.to_json())
            return
        v = res.version
        what = "added" if res.created else "unchanged content, already"
        out.print(f"{what} {v.ref} ({_size(v.size)}, {v.id[:12]}); aliases: {', '.join(v.aliases)}")

    _run(go)


@artifacts_app.command("list")
def list_cmd(
    type_: Annotated[str | None, typer.Option("--type", "-t", help="only artifacts of this type")] = None,
    as_json: _JsonOpt = False,
) -> None:
    """Artifacts, by name: type, versions, latest, aliases."""
    from dvx.cli import _emit_json, _run, _warn, out

    def go() -> None:
        from dvx.api import artifacts_list

        arts = artifacts_list(type=type_)
        for problem in arts.errors:
            _warn(problem)
        if as_json:
            _emit_json(arts.to_json())
            return
        if not arts:
            out.print("no artifacts" + (f" of type {type_}" if type_ else "") +
                      " yet (dvx artifacts add PATH --name NAME --type TYPE, or run.log_artifact)")
            return
        rows = []
        for a in arts:
            latest = a.aliases.get("latest")
            lv = a.versions[latest] if latest is not None else None
            rows.append((a.name, a.type, str(len(a.live)), f"v{latest}" if latest is not None else "-",
                         _size(lv.size) if lv else "-",
                         ", ".join(f"{k}=v{n}" for k, n in sorted(a.aliases.items()) if k != "latest")))
        heads = ("NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "ALIASES")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        for row in (heads, *rows):
            out.print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    _run(go)


@artifacts_app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[:vN|:ALIAS]")],
    as_json: _JsonOpt = False,
) -> None:
    """An artifact's versions and aliases, or one version."""
    from dvx.cli import _emit_json, _run, out

    def go() -> None:
        from dvx.api import artifacts_show

        got = artifacts_show(ref)
        if as_json:
            _emit_json(got.to_json())
            return
        versions = [got] if ":" in ref else got.versions
        if ":" not in ref:
            out.print(f"{got.name} ({got.type}); retention: {got.retention.describe()}")
        for v in versions:
            if v.dropped:
                out.print(f"  v{v.version}  dropped  {v.created}  {v.id[:12]}  {v.path}")
                continue
            tags = f"  [{', '.join(v.aliases)}]" if v.aliases else ""
            run = f"  run {v.run}" if v.run else ""
            out.print(f"  v{v.version}  {v.kind}  {_size(v.size)}  {v.created}  {v.id[:12]}  "
                      f"{v.path}{run}{tags}")

    _run(go)


@artifacts_app.command("alias")
def alias_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME:vN", help="the version (NAME:vN or NAME:ALIAS); "
                                                                "with --remove, NAME")],
    alias: Annotated[str, typer.Argument(metavar="ALIAS")],
    remove: Annotated[bool, typer.Option("--remove", help="remove ALIAS from artifact NAME")] = False,
    as_json: _JsonOpt = False,
) -> None:
    """Point ALIAS at a version (it moves if it named another), or remove it with --remove."""
    from dvx.cli import _emit_json, _run, out

    def go() -> None:
        from dvx.api import artifacts_alias, artifacts_unalias

        if remove:
            from dvx.errors import UsageError

            if ":" in ref:
                raise UsageError("--remove takes the artifact NAME, not a version",
                                 f"dvx artifacts alias --remove {ref.split(':')[0]} {alias}")
            was = artifacts_unalias(ref, alias)
            if as_json:
                _emit_json({"name": ref, "alias": alias, "removed": True, "version": was})
            else:
                out.print(f"removed alias {alias} from {ref} (it named v{was})")
            return
        v = artifacts_alias(ref, alias)
        if as_json:
            _emit_json(v.to_json())
        else:
            out.print(f"{v.name}:{alias} -> v{v.version}")

    _run(go)


@artifacts_app.command("get")
def get_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[:vN|:ALIAS]")],
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="where to write it (default artifacts/NAME/vN/FILE)")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="replace what is at the output path")] = False,
    remote: Annotated[str | None, typer.Option(
        "--remote", "-r", help="fetch from this remote (default: the default remote)")] = None,
    as_json: _JsonOpt = False,
) -> None:
    """Materialise a version (from the local store, else fetched from the remote)."""
    from dvx.cli import _emit_json, _progress, _run, out

    def go() -> None:
        from dvx.api import artifacts_get

        res = artifacts_get(ref, output=output, force=force, remote=remote, progress=_progress())
        if as_json:
            _emit_json(res.to_json())
        else:
            src = " (fetched)" if res.fetched else ""
            out.print(f"{res.name}:v{res.version} -> {res.path} ({_size(res.size)}){src}")

    _run(go)


@artifacts_app.command("retention")
def retention_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    keep_last: Annotated[int | None, typer.Option("--keep-last", min=0, metavar="N",
                                                  help="keep the N newest versions (0: no limit)")] = None,
    keep_aliased: Annotated[bool | None, typer.Option("--keep-aliased/--no-keep-aliased",
                                                      help="never drop a version an alias names "
                                                           "(default: on)")] = None,
    ttl: Annotated[int | None, typer.Option("--ttl", min=0, metavar="DAYS",
                                            help="drop versions older than DAYS (0: no limit)")] = None,
    as_json: _JsonOpt = False,
) -> None:
    """Show or set the retention policy `dvx gc` applies (`dvx gc --dry-run` lists what it would drop)."""
    from dvx.cli import _emit_json, _run, out

    def go() -> None:
        from dvx.api import artifacts_retention

        args: dict[str, Any] = {}
        if keep_last is not None:
            args["keep_last"] = keep_last
        if ttl is not None:
            args["ttl_days"] = ttl
        art = artifacts_retention(name, keep_aliased=keep_aliased, **args)
        if as_json:
            _emit_json({"name": art.name, "retention": art.retention.to_json()})
        else:
            out.print(f"{art.name}: {art.retention.describe()}")

    _run(go)
