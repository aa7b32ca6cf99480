"""Cutting a test into windows of constant target fleet, on the master (or a lone local process), for the SLO.

A window opens when the target user count changes: by the load shape at each step (`cut`, with the step's planned
end), or from the web UI's form (noticed by `observe`, called every second). It records the cumulative figures
(Locust's request statistics and the fleet's slots) at its start, when its warm-up ends (`app.slo.warmup_end`)
and at its end; the differences are the window's warm-up and judged figures. The master's figures are those the
workers have reported so far (every few seconds), so a boundary is as sharp as the reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.slo import Figures, Window, warmup_end


@dataclass
class OpenWindow:
    users: int
    devices: int
    start: float  # epoch seconds
    planned_end: float | None
    at_start: Figures
    spawned: float | None = None
    judged_from: float | None = None
    at_judged_from: Figures | None = None


class WindowTracker:
    """The windows of the current test. `figures` reads the cumulative figures; `user_count` the running users."""

    def __init__(
        self,
        figures: Callable[[], Figures],
        user_count: Callable[[], int],
        devices_per_user: int,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.figures = figures
        self.user_count = user_count
        self.devices_per_user = devices_per_user
        self.interval_s = interval_s
        self.clock = clock
        self.windows: list[Window] = []
        self.current: OpenWindow | None = None

    def cut(self, users: int, planned_end: float | None = None) -> Window | None:
        """Close the open window (returned) and open one for `users` (none when 0)."""
        now = self.clock()
        figures = self.figures()
        closed = self._close(now, figures)
        if users > 0:
            self.current = OpenWindow(users, users * self.devices_per_user, now, planned_end, figures)
        return closed

    def reset(self) -> None:
        """A new test (Locust has just cleared its statistics): forget the windows; an open one starts now."""
        self.windows = []
        self.restart()

    def restart(self) -> None:
        """The statistics were cleared under the open window (the web UI's reset button): it starts again now, with
        its warm-up, since its earlier figures are gone."""
        current = self.current
        if current is not None:
            self.current = OpenWindow(current.users, current.devices, self.clock(), current.planned_end, self.figures())

    def observe(self, target_users: int | None) -> None:
        """Called every second: notice a new target (`None`: the shape cuts the windows itself), the end of
        spawning and of the warm-up."""
        current = self.current
        if target_users is not None and (current is None or target_users != current.users):
            if target_users > 0 or current is not None:
                self.cut(target_users)
            return
        if current is None:
            return
        now = self.clock()
        if current.spawned is None and self.user_count() == current.users:
            current.spawned = now
        if current.spawned is not None and current.judged_from is None:
            begins = warmup_end(current.start, current.spawned, self.interval_s, current.planned_end)
            if now >= begins:
                current.judged_from = now
                current.at_judged_from = self.figures()

    def close(self) -> Window | None:
        """End of the test: close the open window with the figures as they are now."""
        return self._close(self.clock(), self.figures())

    def live(self, figures: Figures | None = None) -> Window | None:
        """The open window as it stands now (left open), or None."""
        current = self.current
        if current is None:
            return None
        return self._window(current, self.clock(), self.figures() if figures is None else figures)

    def _close(self, now: float, figures: Figures) -> Window | None:
        current, self.current = self.current, None
        if current is None:
            return None
        window = self._window(current, now, figures)
        self.windows.append(window)
        return window

    @staticmethod
    def _window(current: OpenWindow, now: float, figures: Figures) -> Window:
        if current.at_judged_from is None:
            warmup, judged = figures.minus(current.at_start), Figures()
        else:
            warmup = current.at_judged_from.minus(current.at_start)
            judged = figures.minus(current.at_judged_from)
        return Window(current.users, current.devices, current.start, now, current.judged_from, warmup, judged)
