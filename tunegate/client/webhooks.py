"""``tunegate webhooks add URL [--events …] | list | update ID … | rotate-secret ID | remove ID |
test ID | deliveries ID``: a project's webhook endpoints, through the SDK's ``client.webhooks``
(the server's ``/v1/webhook_endpoints``), and tunegate's list of an endpoint's deliveries."""

from __future__ import annotations

import argparse
import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.webhooks.webhook_endpoint import WebhookEndpoint

# tunegate/domain/webhooks.py EVENT_TYPES (the client imports nothing of the server's).
EVENT_TYPES = ("fine_tuning.job.succeeded", "fine_tuning.job.failed",
               "fine_tuning.job.cancelled", "eval.run.succeeded", "eval.run.failed",
               "eval.run.canceled")
JOB_ENDS = EVENT_TYPES[:3]


class Says(Protocol):
    def say(self, line: str) -> None: ...
    def complain(self, line: str) -> None: ...


def add_arguments(commands: Any, connection: argparse.ArgumentParser) -> None:
    hooks = commands.add_parser("webhooks",
                                help="add, list, change, remove or test webhook endpoints")
    actions = hooks.add_subparsers(dest="webhooks_command", required=True)
    add = actions.add_parser(
        "add", parents=[connection], help="register a URL for events; prints its secret once",
        description="Register URL to be sent the events named (default: a fine-tuning job's "
                    "end, succeeded, failed or cancelled). The signing secret (whsec_…) is "
                    "printed this once: give it to the receiver's client.webhooks.unwrap().")
    # Not dest "url": that is the server's (--url).
    add.add_argument("endpoint_url", metavar="URL", help="http(s) URL the events are POSTed to")
    _events_argument(add, "event types", default=list(JOB_ENDS))
    add.add_argument("--name", help="a name to tell endpoints apart (default: the URL)")
    add.add_argument("--secret", help="sign with this whsec_… secret instead of a new one")
    actions.add_parser("list", parents=[connection], help="the project's endpoints")
    change = _endpoint_command(
        actions, connection, "update", "change an endpoint's URL, name, events or status",
        description="Change what is given and keep the rest. --disable stops the endpoint (its "
                    "waiting deliveries are given up); --enable takes it back, one disabled "
                    "for failing too.")
    change.add_argument("--endpoint-url", metavar="URL", help="a new http(s) URL")
    change.add_argument("--name", help="a new name")
    _events_argument(change, "the new set of event types")
    status = change.add_mutually_exclusive_group()
    status.add_argument("--enable", dest="status", action="store_const", const="enabled",
                        help="send it events again")
    status.add_argument("--disable", dest="status", action="store_const", const="disabled",
                        help="stop sending it events")
    rotate = _endpoint_command(
        actions, connection, "rotate-secret",
        "give an endpoint a new signing secret; prints it once",
        description="Make a new whsec_… secret for the endpoint and print it this once. Events "
                    "are signed with it from now on; with --keep-old, with the old one too for "
                    "24 hours, while the receiver is given the new one.")
    rotate.add_argument("--keep-old", action="store_true",
                        help="keep signing with the old secret too for 24 hours")
    _endpoint_command(actions, connection, "remove",
                      "remove an endpoint (its pending deliveries with it)")
    test = _endpoint_command(actions, connection, "test",
                             "send one sample event now and show the answer's status")
    test.add_argument("--event", choices=EVENT_TYPES, default=JOB_ENDS[0],
                      help="the sample's event type")
    _endpoint_command(actions, connection, "deliveries",
                      "an endpoint's deliveries: status, attempts, next try")


def _endpoint_command(actions: Any, connection: argparse.ArgumentParser, name: str, text: str,
                      description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand acting on one endpoint: its ``ID`` first."""
    command: argparse.ArgumentParser = actions.add_parser(
        name, parents=[connection], help=text, description=description)
    command.add_argument("endpoint_id", metavar="ID", help="the endpoint's id (we_…)")
    return command


def _events_argument(command: argparse.ArgumentParser, what: str, **default: Any) -> None:
    command.add_argument("--events", nargs="+", choices=EVENT_TYPES, metavar="EVENT",
                         help=f"{what}, of: " + ", ".join(EVENT_TYPES), **default)


def _endpoint_line(endpoint: WebhookEndpoint) -> str:
    """An endpoint as ``list`` and ``update`` print it: id, status (tunegate's), URL, events."""
    status = (endpoint.model_extra or {}).get("status", "enabled")
    return f"{endpoint.id}  {status:8}  {endpoint.url}  {','.join(endpoint.event_types)}"


def _update(args: argparse.Namespace, client: OpenAI, terminal: Says) -> int:
    changes: dict[str, Any] = {}
    if args.endpoint_url is not None:
        changes["url"] = args.endpoint_url
    if args.name is not None:
        changes["name"] = args.name
    if args.events is not None:
        changes["event_types"] = args.events
    if not changes and args.status is None:
        terminal.complain("nothing to change: give --endpoint-url, --name, --events, --enable "
                          "or --disable")
        return 2
    extra = {"status": args.status} if args.status else None  # tunegate's field
    terminal.say(_endpoint_line(client.webhooks.update(args.endpoint_id, extra_body=extra,
                                                       **changes)))
    return 0


def _when(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def run_webhooks(args: argparse.Namespace, client: OpenAI, terminal: Says) -> int:
    action = args.webhooks_command
    if action == "add":
        extra = {"signing_secret": args.secret} if args.secret else None
        made = client.webhooks.create(url=args.endpoint_url, event_types=args.events,  # type: ignore[arg-type]
                                      name=args.name or args.endpoint_url, extra_body=extra)
        terminal.say(f"{made.id} {made.url} {' '.join(made.event_types)}")
        terminal.say(made.signing_secret)
        terminal.complain("(the signing secret above is shown this once: keep it)")
    elif action == "update":
        return _update(args, client, terminal)
    elif action == "rotate-secret":
        rotated = client.webhooks.rotate_secret(
            args.endpoint_id, keep_old_secret_active_for_24_hours=args.keep_old)
        terminal.say(rotated.signing_secret)
        terminal.complain("(the new signing secret above is shown this once: keep it; the old "
                          + ("one signs too for 24 hours)" if args.keep_old
                             else "one no longer signs)"))
    elif action == "list":
        for endpoint in client.webhooks.list():
            terminal.say(_endpoint_line(endpoint))
    elif action == "remove":
        client.webhooks.delete(args.endpoint_id)
        terminal.say(f"{args.endpoint_id} removed")
    elif action == "test":
        result = client.webhooks.test(args.endpoint_id, event_type=args.event)
        terminal.say(f"{args.endpoint_id} answered HTTP {result.status_code}")
        return 0 if 200 <= result.status_code < 300 else 1
    else:
        page = client.get(f"/webhook_endpoints/{args.endpoint_id}/deliveries",
                          cast_to=object)
        for item in page["data"]:  # type: ignore[index]
            terminal.say(f"{item['id']}  {item['event_type']:26} {item['data_id']}  "
                         f"{item['status']:9} attempts {item['attempts']}  last "
                         f"{item['last_status_code'] or item['last_error'] or '-'}  next "
                         f"{_when(item['next_attempt_at'])}")
    return 0
