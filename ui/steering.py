"""Sending a camera's steering requests (:class:`~ui.requests.SteerCamera`) for the app.

The camera's detail view decides what to send and when (:mod:`ui.ptz`); the app
owns the bus and the command flow, so it sends them here: as the commander's,
named by this dashboard's operator, straight to `camera@<id>`, except storing a
preset, which overwrites what a key recalls and so goes through the confirmed
command flow (:mod:`ui.commands`) like any other command the commander gives.
"""

from __future__ import annotations

from edge.bus import topics
from edge.bus.messages import PtzCommand, Reply
from ui.commands import Command, CommandFlow
from ui.ptz import describe
from ui.requests import SteerCamera

# `who` when the dashboard has no bus bridge (and so no operator's name).
DASHBOARD = "dashboard"


async def steer(flow: CommandFlow, message: SteerCamera) -> None:
    """Send (or confirm, then send) the request; its reply (None: cancelled) to `done`."""
    request = message.request
    request.controller = "commander"
    request.who = flow.bridge.author if flow.bridge is not None else DASHBOARD
    reply: Reply | None
    if message.confirm:
        reply = await flow.run(confirmed(flow, message.camera_id, request))
    elif flow.bridge is None:
        reply = Reply(status="error", detail="not sent: no bus")
    else:
        reply = await flow.bridge.request(topics.camera_service(message.camera_id), request)
    message.done(reply)


def confirmed(flow: CommandFlow, camera_id: str, request: PtzCommand) -> Command:
    """The confirmed command for a request that needs it (storing a preset)."""
    view = flow.state.cameras.get(camera_id)
    name = view.name if view is not None and view.name else camera_id
    what = describe(request)
    return Command(
        service=topics.camera_service(camera_id), request=request, subject=camera_id,
        label=f"Store {request.preset}", name=f"{what} of {name}",
        title=f"Store preset {request.preset} on {name}?",
        body=(f"Where {name} ({camera_id}) looks now becomes preset {request.preset}, "
              f"replacing what it was: key {request.preset} in its view goes back here."),
        kind="camera control")
