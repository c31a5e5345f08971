"""What every detail screen shares: a title, a field list, a steady refresh and `escape` back."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

from ui.screens.main import REFRESH_HZ

if TYPE_CHECKING:
    from ui.app import DashboardApp


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "back", "Back")]

    def __init__(self, item_id: str) -> None:
        super().__init__()
        self.item_id = item_id

    @property
    def dashboard(self) -> DashboardApp:
        app: DashboardApp = self.app  # type: ignore[assignment]
        return app

    def on_mount(self) -> None:
        # Redrawn on a timer, not per bus message (see docs/architecture.md).
        self.set_interval(1 / REFRESH_HZ, self.refresh_view)
        self.refresh_view()

    def refresh_view(self) -> None:
        raise NotImplementedError

    def action_back(self) -> None:
        self.dismiss(None)
