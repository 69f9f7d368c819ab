"""How a run shows up while it runs: a live widget, or plain text printed as it arrives.

Both are driven from the kernel's main thread by the runner (start, then ``update`` about every
100 ms, then ``finish``), so no widget or stream is touched from an engine thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from codemode_jupyter.record import Recorder, RunRecord
from codemode_jupyter.render import call_summary, call_text, headline, log_text


class Presenter(Protocol):
    def start(self, record: RunRecord) -> None: ...

    def update(self, recorder: Recorder) -> None: ...

    def finish(self, recorder: Recorder) -> None: ...


class WidgetPresenter:
    """Displays one :class:`RunWidget` and streams batched deltas into it."""

    def __init__(
        self, *, max_rows: int, max_logs: int, display: Callable[..., Any] | None = None
    ) -> None:
        self.max_rows = max_rows
        self.max_logs = max_logs
        self._display = display
        self.widget: Any = None
        self._handle: Any = None

    def start(self, record: RunRecord) -> None:
        from codemode_jupyter.widget import RunWidget

        self.widget = RunWidget(record, max_rows=self.max_rows, max_logs=self.max_logs)
        show = self._display or _ipython_display
        self._handle = show(self.widget, display_id=True)

    def update(self, recorder: Recorder) -> None:
        delta = recorder.take_delta()
        if delta is not None:
            self.widget.push(delta)

    def finish(self, recorder: Recorder) -> None:
        recorder.take_delta()  # the final traits supersede any pending delta
        self.widget.finish(recorder.record)
        if self._handle is not None:
            # Refresh the text/html fallback saved with the notebook (same widget model).
            self._handle.update(self.widget)


class TextPresenter:
    """Prints console lines as they arrive; unless quiet, a summary and trace at the end."""

    def __init__(self, *, quiet: bool, write: Callable[[str], Any] | None = None) -> None:
        self.quiet = quiet
        self._write = write or print
        self._shown = 0

    def start(self, record: RunRecord) -> None:
        self._shown = 0

    def update(self, recorder: Recorder) -> None:
        lines = recorder.logs_since(self._shown)
        self._shown += len(lines)
        if lines:
            self._write("\n".join(log_text(line) for line in lines))

    def finish(self, recorder: Recorder) -> None:
        self.update(recorder)
        record = recorder.record
        if self.quiet:
            return
        out = [headline(record)]
        for call in record.calls[:10]:
            out.append("  " + call_text(call))
        more = record.call_count - min(len(record.calls), 10)
        if more > 0:
            out.append(f"  … {more:,} more calls: " + "; ".join(call_summary(record.calls)))
        self._write("\n".join(out))


def _ipython_display(obj: Any, **kwargs: Any) -> Any:
    from IPython.display import display

    return display(obj, **kwargs)
