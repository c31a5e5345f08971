"""What every detail screen shares: a title, a field list, a steady refresh and `escape` back."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

from ui.screens.main import REFRESH_HZ
from ui.state import DashboardState


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "back", "Back")]

    def __init__(self, state: DashboardState, item_id: str) -> None:
        super().__init__()
        self.state = state
        self.item_id = item_id

    def on_mount(self) -> None:
        # Redrawn on a timer, not per bus message (see docs/architecture.md).
        self.set_interval(1 / REFRESH_HZ, self.refresh_view)
        self.refresh_view()

    def refresh_view(self) -> None:
        raise NotImplementedError

    def action_back(self) -> None:
        self.dismiss(None)
