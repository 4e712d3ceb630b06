"""`confctl`: the command-line client of the control API, for people (rich tables) and scripts
(`--json`). It only speaks HTTP, so it works against any bridge it can reach."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8080"
CONNECT_TIMEOUT_S = 10.0
EXIT_API_ERROR = 1
EXIT_UNREACHABLE = 2

app = typer.Typer(
    name="confctl",
    help="Control the conference bridge through its HTTP API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals would include the bearer token
)
callers_app = typer.Typer(help="Caller lists of a conference.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens of applications (needs the admin token).")
app.add_typer(callers_app, name="callers")
app.add_typer(token_app, name="token")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class Access(StrEnum):
    none = "none"
    room = "room"
    caller = "caller"
    room_caller = "room+caller"


# --- HTTP --------------------------------------------------------------------------------------


def fail(message: str, code: int = EXIT_API_ERROR) -> NoReturn:
    """Every error ends here, so scripts can rely on stderr plus a non-zero exit code."""
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def error_message(response: httpx.Response) -> str:
    """The API's `message`; a proxy or crash may answer without the JSON error body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    text = response.text.strip()
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


def segment(value: str) -> str:
    """A path segment: caller numbers may hold '+' or other characters URLs treat specially."""
    return quote(value, safe="")


@dataclass
class Api:
    """One server and token for the whole command; turns transport and API errors into exits."""

    url: str
    token: str | None

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=CONNECT_TIMEOUT_S)

    def close(self) -> None:
        self.client.close()

    def unreachable(self, exc: httpx.TransportError) -> NoReturn:
        fail(f"cannot connect to {self.url}: {exc}", EXIT_UNREACHABLE)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.unreachable(exc)
        except httpx.TransportError as exc:
            fail(f"request to {self.url} failed: {exc}")
        if response.is_error:
            fail(error_message(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        return response.json() if response.content else None

    def events(self, types: str) -> Iterator[tuple[str, str]]:
        """(type, data) of each Server-Sent Event, forever: no read timeout, the server sends
        keepalive comments and the user stops with Ctrl-C."""
        params = {"types": types} if types else {}
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=None)
        try:
            with self.client.stream("GET", "/v1/events", params=params, timeout=timeout) as r:
                if r.is_error:
                    r.read()
                    fail(error_message(r))
                yield from parse_sse(r.iter_lines())
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.unreachable(exc)
        except httpx.TransportError as exc:
            fail(f"event stream from {self.url} broke: {exc}")


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-Sent Events framing: fields until a blank line; ':' lines are comments."""
    kind, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)


def api(ctx: typer.Context) -> Api:
    client: Api = ctx.find_root().obj
    return client


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="CONFCTL_URL", help="Base URL of the control API.")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="CONFCTL_TOKEN", help="Bearer token (admin token for 'token')."),
    ] = None,
) -> None:
    """Control the conference bridge through its HTTP API."""
    client = Api(url.rstrip("/"), token)
    ctx.obj = client
    ctx.call_on_close(client.close)


# --- output ------------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Plain JSON, no colors or wrapping, so it pipes into jq."""
    typer.echo(json.dumps(data, indent=2))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(escape(str(v)) for v in value)
    return escape(str(value))


def local_time(value: str | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """API times are UTC; people read their own clock."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone().strftime(pattern)
    except ValueError:
        return value


def parse_start(value: str | None) -> str | None:
    """ISO 8601 for the API; a time without an offset means local time, not UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time", param_hint="--start"
        ) from None
    return moment.astimezone().isoformat()


def conference_summary(conference: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key in ("name", "state", "access", "code", "dial_in", "locked", "participants"):
        grid.add_row(key, cell(conference.get(key)))
    grid.add_row("start", local_time(conference.get("start_time")))
    grid.add_row("end", local_time(conference.get("end_time")))
    out.print(grid)


def conference_details(conference: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in conference.items():
        shown = local_time(value) if key.endswith(("_time", "_at")) else cell(value)
        grid.add_row(key, shown)
    out.print(grid)


def participants_table(participants: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(participants)} participant(s)")
    columns = ("id", "caller", "display_name", "joined", "muted", "deaf", "talking", "on_hold")
    for column in (*columns, "volume_db", "codec", "in/out/lost", "jitter_ms"):
        table.add_column(column)
    for p in participants:
        packets = f"{p.get('packets_in')}/{p.get('packets_out')}/{p.get('packets_lost')}"
        table.add_row(
            *(cell(p.get(c)) for c in columns[:3]),
            local_time(p.get("joined_at"), "%H:%M:%S"),
            *(cell(p.get(c)) for c in columns[4:]),
            cell(p.get("volume_db")),
            cell(p.get("codec")),
            packets,
            cell(p.get("jitter_ms")),
        )
    return table


# --- conferences -------------------------------------------------------------------------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print raw JSON for scripts.")]


@app.command()
def rooms(
    ctx: typer.Context,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many conferences.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List conferences."""
    response = api(ctx).call("GET", "/v1/conferences", params={"offset": offset, "limit": limit})
    conferences = response.json()
    if as_json:
        print_json(conferences)
        return
    table = Table()
    for column in ("name", "state", "access", "participants", "start", "end", "locked"):
        table.add_column(column)
    for c in conferences:
        table.add_row(
            cell(c["name"]),
            cell(c["state"]),
            cell(c["access"]),
            cell(c["participants"]),
            local_time(c.get("start_time")),
            local_time(c.get("end_time")),
            cell(c["locked"]),
        )
    out.print(table)
    count = response.headers.get("X-Result-Count", str(len(conferences)))
    total = response.headers.get("X-Total-Count", "?")
    out.print(f"{count} of {total}" + (f" (from offset {offset})" if offset else ""))


@app.command()
def show(ctx: typer.Context, room: str, as_json: JsonFlag = False) -> None:
    """Show a conference and its participants."""
    conference = api(ctx).json("GET", f"/v1/conferences/{segment(room)}")
    participants = api(ctx).json("GET", f"/v1/conferences/{segment(room)}/participants")
    if as_json:
        print_json({"conference": conference, "participants": participants})
        return
    conference_details(conference)
    out.print(participants_table(participants))


AccessOption = Annotated[Access | None, typer.Option(help="Who may enter.")]
CodeOption = Annotated[str | None, typer.Option(help="Room code (4-12 digits).")]
StartOption = Annotated[
    str | None, typer.Option("--start", help="Start, ISO 8601 (no offset: local time).")
]
DurationOption = Annotated[int | None, typer.Option("--duration", help="Length in minutes.")]
MaxOption = Annotated[int | None, typer.Option("--max", help="Most participants at once.")]
DivertOption = Annotated[
    str | None, typer.Option("--divert", help="Room or SIP URI for callers when full.")
]
LeaderOption = Annotated[str | None, typer.Option(help="Caller number of the leader.")]


def without_none(**fields: Any) -> dict[str, Any]:
    """Only the options given: the API treats a present field as a change."""
    return {key: value for key, value in fields.items() if value is not None}


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Room name; the API picks one if omitted.")
    ] = None,
    access: AccessOption = None,
    code: CodeOption = None,
    start: StartOption = None,
    duration: DurationOption = None,
    max_participants: MaxOption = None,
    divert: DivertOption = None,
    leader: LeaderOption = None,
    caller: Annotated[
        list[str] | None, typer.Option(help="Admitted caller number (repeatable).")
    ] = None,
    locked: Annotated[bool, typer.Option("--locked", help="Create it locked.")] = False,
    end_on_exit: Annotated[
        bool, typer.Option("--end-on-exit", help="End it when the leader leaves.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a conference."""
    body = without_none(
        name=name,
        access=access.value if access else None,
        code=code,
        start_time=parse_start(start),
        duration_minutes=duration,
        max_participants=max_participants,
        divert_to=divert,
        leader=leader,
        callers=caller or None,
        locked=locked or None,
        end_on_leader_exit=end_on_exit or None,
    )
    conference = api(ctx).json("POST", "/v1/conferences", json=body)
    if as_json:
        print_json(conference)
        return
    conference_summary(conference)


@app.command()
def modify(
    ctx: typer.Context,
    room: str,
    access: AccessOption = None,
    code: CodeOption = None,
    start: StartOption = None,
    duration: DurationOption = None,
    extend: Annotated[int | None, typer.Option(help="Add this many minutes.")] = None,
    max_participants: MaxOption = None,
    divert: DivertOption = None,
    leader: LeaderOption = None,
    lock: Annotated[bool | None, typer.Option("--lock/--unlock", help="Lock or unlock.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a conference; only the options given are sent."""
    body = without_none(
        access=access.value if access else None,
        code=code,
        start_time=parse_start(start),
        duration_minutes=duration,
        extend_minutes=extend,
        max_participants=max_participants,
        divert_to=divert,
        leader=leader,
        locked=lock,
    )
    if not body:
        raise typer.BadParameter("give at least one option to change")
    conference = api(ctx).json("PATCH", f"/v1/conferences/{segment(room)}", json=body)
    if as_json:
        print_json(conference)
        return
    conference_summary(conference)


@app.command()
def remove(ctx: typer.Context, room: str) -> None:
    """End a conference now; everyone in it is hung up."""
    api(ctx).call("DELETE", f"/v1/conferences/{segment(room)}")
    out.print(f"removed {escape(room)}")


def set_locked(ctx: typer.Context, room: str, locked: bool) -> None:
    api(ctx).json("PATCH", f"/v1/conferences/{segment(room)}", json={"locked": locked})
    out.print(f"{'locked' if locked else 'unlocked'} {escape(room)}")


@app.command()
def lock(ctx: typer.Context, room: str) -> None:
    """Lock a conference: nobody new gets in."""
    set_locked(ctx, room, True)


@app.command()
def unlock(ctx: typer.Context, room: str) -> None:
    """Unlock a conference."""
    set_locked(ctx, room, False)


# --- recordings --------------------------------------------------------------------------------

FormatOption = Annotated[
    str | None, typer.Option("--format", help="wav or ogg (Opus); default: the bridge's config.")
]


@app.command()
def record(ctx: typer.Context, room: str, fmt: FormatOption = None) -> None:
    """Start recording a conference's mix."""
    started = api(ctx).json(
        "POST", f"/v1/conferences/{segment(room)}/recording", json=without_none(format=fmt)
    )
    out.print(f"recording {escape(room)} to {escape(started['file'])}")


@app.command("stop-recording")
def stop_recording(ctx: typer.Context, room: str) -> None:
    """Stop a conference's recording (the file is finished a moment later)."""
    api(ctx).call("DELETE", f"/v1/conferences/{segment(room)}/recording")
    out.print(f"stopped recording {escape(room)}")


@app.command()
def recordings(ctx: typer.Context, room: str, as_json: JsonFlag = False) -> None:
    """List a conference's recordings."""
    files = api(ctx).json("GET", f"/v1/conferences/{segment(room)}/recordings")
    if as_json:
        print_json(files)
        return
    table = Table("file", "bytes", "state")
    for item in files:
        state = "recording" if item["recording"] else "done"
        table.add_row(escape(item["file"]), str(item["size_bytes"]), state)
    out.print(table)


@app.command()
def download(
    ctx: typer.Context,
    room: str,
    file: str,
    to: Annotated[Path, typer.Option(help="The directory to save it in.")] = Path("."),
) -> None:
    """Save one recording of a conference."""
    response = api(ctx).call("GET", f"/v1/conferences/{segment(room)}/recordings/{segment(file)}")
    target = to / Path(file).name
    target.write_bytes(response.content)
    out.print(f"saved {escape(str(target))} ({len(response.content)} bytes)")


# --- announcements -----------------------------------------------------------------------------


@app.command()
def upload(ctx: typer.Context, name: str, file: Path) -> None:
    """Upload an audio file (WAV, Ogg, MP3, ...) as the announcement NAME."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    stored = api(ctx).json("PUT", f"/v1/announcements/{segment(name)}", content=data)
    out.print(f"uploaded {escape(stored['name'])} ({stored['seconds']} s)")


@app.command()
def announce(
    ctx: typer.Context,
    room: str,
    announcement: Annotated[str | None, typer.Option(help="An uploaded announcement.")] = None,
    prompt: Annotated[str | None, typer.Option(help="A packaged prompt instead.")] = None,
    participant: Annotated[str | None, typer.Option(help="Only this participant hears it.")] = None,
) -> None:
    """Play an announcement or a prompt to a conference (or one participant in it)."""
    body = without_none(
        announcement=announcement,
        prompt=prompt,
        participant_id=resolve(ctx, room, participant)["id"] if participant else None,
    )
    api(ctx).call("POST", f"/v1/conferences/{segment(room)}/announcements", json=body)
    out.print(f"playing to {escape(participant or room)}")


# --- participants ------------------------------------------------------------------------------


def resolve(ctx: typer.Context, room: str, who: str) -> dict[str, Any]:
    """A participant by id, or by caller number as people know them; never a guess."""
    participants = api(ctx).json("GET", f"/v1/conferences/{segment(room)}/participants")
    by_id = [p for p in participants if p["id"] == who]
    if by_id:
        return by_id[0]
    by_caller = [p for p in participants if p.get("caller") == who]
    if len(by_caller) > 1:
        ids = ", ".join(p["id"] for p in by_caller)
        fail(f"{who!r} is ambiguous in {room!r}: participants {ids}; give an id")
    if not by_caller:
        fail(f"participant {who!r} not found in conference {room!r}")
    return by_caller[0]


def label(participant: dict[str, Any]) -> str:
    return escape(f"{participant.get('caller')} ({participant['id']})")


def participant_path(room: str, participant: dict[str, Any]) -> str:
    return f"/v1/conferences/{segment(room)}/participants/{segment(participant['id'])}"


def set_muted(ctx: typer.Context, room: str, who: str, muted: bool) -> None:
    participant = resolve(ctx, room, who)
    api(ctx).json("PATCH", participant_path(room, participant), json={"muted": muted})
    out.print(f"{'muted' if muted else 'unmuted'} {label(participant)} in {escape(room)}")


Participant = Annotated[str, typer.Argument(help="Participant id or caller number.")]


@app.command()
def mute(ctx: typer.Context, room: str, participant: Participant) -> None:
    """Mute a participant."""
    set_muted(ctx, room, participant, True)


@app.command()
def unmute(ctx: typer.Context, room: str, participant: Participant) -> None:
    """Unmute a participant."""
    set_muted(ctx, room, participant, False)


@app.command()
def kick(ctx: typer.Context, room: str, participant: Participant) -> None:
    """Eject a participant: the bridge hangs up the call."""
    found = resolve(ctx, room, participant)
    api(ctx).call("DELETE", participant_path(room, found))
    out.print(f"kicked {label(found)} from {escape(room)}")


# --- caller lists ------------------------------------------------------------------------------


@callers_app.command("add")
def callers_add(ctx: typer.Context, room: str, number: str) -> None:
    """Admit a caller number to a conference."""
    api(ctx).json("POST", f"/v1/conferences/{segment(room)}/callers", json={"number": number})
    out.print(f"added {escape(number)} to {escape(room)}")


@callers_app.command("remove")
def callers_remove(ctx: typer.Context, room: str, number: str) -> None:
    """Take a caller number off a conference's list."""
    api(ctx).call("DELETE", f"/v1/conferences/{segment(room)}/callers/{segment(number)}")
    out.print(f"removed {escape(number)} from {escape(room)}")


# --- events ------------------------------------------------------------------------------------

SHOWN_KEYS = ("time", "conference", "participant_id")


def event_line(kind: str, payload: dict[str, Any]) -> str:
    details = " ".join(f"{k}={v}" for k, v in payload.items() if k not in SHOWN_KEYS)
    parts = (
        local_time(payload.get("time"), "%H:%M:%S"),
        f"[bold]{escape(kind)}[/bold]",
        escape(str(payload.get("conference") or "-")),
        escape(str(payload.get("participant_id") or "-")),
        escape(details),
    )
    return " ".join(parts)


def decode(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError:
        return {"data": data}
    return payload if isinstance(payload, dict) else {"data": payload}


@app.command()
def watch(
    ctx: typer.Context,
    types: Annotated[
        list[str] | None,
        typer.Option(help="Event types, comma-separated or repeated; all if omitted."),
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print live events, one per line, until Ctrl-C (or --count events)."""
    wanted = ",".join(t.strip() for value in types or () for t in value.split(",") if t.strip())
    client = api(ctx)
    err.print(f"[dim]watching {escape(client.url)} (Ctrl-C to stop)[/dim]")
    printed = 0
    try:
        for kind, data in client.events(wanted):
            payload = decode(data)
            if as_json:
                typer.echo(json.dumps({"type": kind, "data": payload}), nl=True)
            else:
                out.print(event_line(kind, payload), soft_wrap=True)
            printed += 1
            if count is not None and printed >= count:
                return
    except KeyboardInterrupt:
        return


# --- tokens ------------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    application: Annotated[str, typer.Argument(help="Application name; created if missing.")],
    as_json: JsonFlag = False,
) -> None:
    """Create an API token for an application (the admin token goes in --token)."""
    created = api(ctx).json("POST", f"/v1/admin/applications/{segment(application)}/tokens")
    if as_json:
        print_json(created)
        return
    typer.echo(f"token: {created['token']}")
    err.print(
        f"[dim]New token of {escape(created['application'])}; it is shown only once. "
        f"Use it with: export CONFCTL_TOKEN={escape(created['token'])}[/dim]"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
