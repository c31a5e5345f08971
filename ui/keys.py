"""Every key the dashboard answers to, in one table: the help screen shows it, and a
test checks that each binding in the app appears here."""

from __future__ import annotations

HELP: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Anywhere", (
        ("tab / shift+tab", "next / previous pane"),
        ("1 2 3 4 5", "go to cameras, drones, links, uplink, events"),
        ("6", "go to the GB/T 28181 devices (shown when the vehicle has them)"),
        ("m", "mark an event for the debrief (a short note, published on the bus)"),
        ("R", "start a recording session (named by the time) or stop the open one"),
        ("ctrl+p  or  :", "command palette"),
        ("?", "this help"),
        ("q  or  ctrl+c", "quit"),
    )),
    ("In a pane", (
        ("arrows", "move between cameras, drones, events"),
        ("pageup pagedown home end", "move further in a list"),
        ("enter", "open: a camera's or a drone's detail, an event's whole text"),
    )),
    ("On a camera (cameras pane)", (
        ("u", "push it up to the centre's WHIP server, or stop pushing it (confirmed)"),
    )),
    ("In a camera's detail view (ONVIF and GB/T 28181 cameras)", (
        ("arrows", "pan / tilt while held; let go (or 0.3 s without a repeat) stops"),
        ("+ (or =)  -", "zoom in / out one step"),
        ("1 … 9", "go to preset 1 … 9"),
        ("shift+1 … 9", "store where the camera looks as preset 1 … 9 (confirmed)"),
        ("0", "go to the home position"),
    )),
    ("On a drone (drones pane or drone detail)", (
        ("r", "return to launch"),
        ("h", "hold position"),
        ("l", "land"),
        ("g", "go to a position (latitude, longitude, altitude)"),
    )),
    ("On a WAN link (links pane)", (
        ("f", "carry the tunnel to the centre over this link (forced, confirmed)"),
        ("a", "release a forced link: the policy chooses again (confirmed)"),
        ("enter", "every figure of the link, and why it cannot be measured"),
    )),
    ("On a GB/T 28181 channel (GB devices pane)", (
        ("a", "adopt it as a camera: its id and name, then confirmed; written to the "
              "vehicle's config by the gb28181 service"),
        ("enter", "everything the gb28181 service says about the device"),
    )),
    ("In a replay (edge replay; elsewhere these do nothing)", (
        ("space", "play / pause"),
        ("left / right", "back / forward 10 s (on the dashboard; panes keep up / down)"),
        ("[  ]", "slower / faster: 0.25, 0.5, 1, 2, 4, 8, 16 times"),
        ("n  p", "next / previous mark or alert"),
        (".", "step one second (and pause there)"),
    )),
    ("In a dialog", (
        ("y", "confirm the action the dialog names"),
        ("n  or  esc", "cancel"),
        ("enter", "press the focused button, or go to the next field"),
    )),
    ("In a detail view", (
        ("esc", "back to the dashboard"),
    )),
)

ACTION_NAMES = {"rtl": "return to launch", "hold": "hold position", "land": "land",
                "goto": "go to"}
ACTION_SHORT = {"rtl": "RTL", "hold": "Hold", "land": "Land", "goto": "Go to"}
