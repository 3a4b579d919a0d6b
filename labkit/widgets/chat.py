"""A chat box for the student: a text box, a Send button and the room's messages, live.

    box = lk.chat_widget(lab, "me", seconds=120)   # joins the room over WebSocket; Enter sends
    box = lk.chat_widget(lab)                      # as "you"; on a class server, a name of your own

On a class server (`lk.join`) the box joins the class's room with this kernel's personal token;
each person has one name there (`clients.chat.personal_name`, or the one they already hold): the
box shows it.

The message list redraws at most every REFRESH_S seconds and the widget leaves the room by itself
after `seconds` (the box stays, greyed out).
"""

from __future__ import annotations

import asyncio
import html
import time

from labkit import _loop

from . import REFRESH_S

TYPING_EVERY_S = 1.0
"""At most one typing signal per this many seconds."""
TYPING_SHOWN_S = 2.0
"""How long "x is typing…" stays after the last signal."""


class ChatBox:
    """ipywidgets chat box talking to the room through a ChatWsClient."""

    def __init__(self, target, name: str | None = None, *, seconds: float = 120.0, show: int = 30):
        import ipywidgets as widgets

        from labkit.clients.chat import join_room

        self.client = join_room(target, name)
        self.name = self.client.name
        self.show = show
        self.who = widgets.HTML(f"<i>you are <b><bdi>{html.escape(self.name)}</bdi></b> in this "
                                "room</i>")
        self.text = widgets.Text(placeholder="say something…", continuous_update=True)
        self.button = widgets.Button(description="Send", button_style="primary")
        self.list = widgets.HTML()
        self.typing_label = widgets.HTML()
        self.feedback = widgets.HTML()
        self.box = widgets.VBox([self.who, self.list, self.typing_label,
                                 widgets.HBox([self.text, self.button]), self.feedback])
        self.box.add_class("labkit-chat-box")
        self.button.on_click(lambda _: self.send())
        self.text.on_msg(self._on_key)  # Enter in the text box sends, like the button
        self.text.observe(self._on_typing, names="value")
        self._last_typing = 0.0
        self.ends_at = time.time() + seconds
        self._refresher = asyncio.run_coroutine_threadsafe(self._refresh(), _loop.client_loop())

    def send(self, text: str | None = None) -> None:
        """Send the box's text (or `text`); an empty one is refused by the room, shown below."""
        if not self.client.is_open:
            self.feedback.value = "<i>this chat box has left the room</i>"
            return
        self.client.send(self.text.value if text is None else text)
        self.text.value = ""

    def _on_key(self, _widget, content, _buffers) -> None:
        """The browser reports Enter in a Text box as a custom "submit" message."""
        if content.get("event") == "submit":
            self.send()

    def _on_typing(self, change) -> None:
        now = time.time()
        if change["new"] and now - self._last_typing > TYPING_EVERY_S and self.client.is_open:
            self._last_typing = now
            self.client.typing()

    def close(self, why: str = "this chat box has left the room") -> None:
        """Leave the room now (the name is free once this returns: the room answers the close
        only after it let the name go), and stop redrawing."""
        self._refresher.cancel()
        if self.client.is_open:
            self.client.close()
        self.text.disabled = self.button.disabled = True
        self.feedback.value = f"<i>{html.escape(why)}</i>"

    async def _refresh(self) -> None:
        while time.time() < self.ends_at:
            self.redraw()
            await asyncio.sleep(REFRESH_S)
        self.redraw()
        await asyncio.to_thread(self.client.close)
        self.text.disabled = self.button.disabled = True
        self.feedback.value = "<i>time is up: this chat box has left the room.</i>"

    def redraw(self) -> None:
        # <bdi> isolates each name and text: right-to-left text stays inside its own element
        lines = [f"<div><b><bdi>{html.escape(m['data']['name'])}</bdi></b> "
                 f"<span style='color:#888'>#{m['seq']}</span> "
                 f"<bdi>{html.escape(m['data']['text'])}</bdi></div>"
                 for m in self.client.messages[-self.show:]]
        self.list.value = "".join(lines) or "<i>no messages yet</i>"
        recent = {t["name"] for t in self.client.typing_seen
                  if time.time() - t["received_ts"] < TYPING_SHOWN_S}
        self.typing_label.value = (f"<i>{html.escape(', '.join(sorted(recent)))} typing…</i>"
                                   if recent else "")
        if self.client.errors:
            self.feedback.value = f"<span style='color:#b35c00'>" \
                                  f"{html.escape(self.client.errors[-1]['detail'])}</span>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


_OPEN: dict[tuple[str, str], ChatBox] = {}
"""The chat box of each (lab, name) made in this kernel: running the cell again replaces it."""


def chat_widget(target, name: str | None = None, **options) -> ChatBox:
    """Join the room over WebSocket with a chat box (see ChatBox) as `name` (default: "you" on the
    kernel's own lab, this person's own name on a class server: `clients.chat.personal_name`). A
    box this kernel already has for the same lab and name leaves the room first, so a cell run
    twice joins again instead of finding its own name taken (409)."""
    from labkit.clients.chat import personal_name
    from labkit.clients.feed import target_url

    name = personal_name(target) if name is None else name
    key = (target_url(target, "ws"), name)
    previous = _OPEN.pop(key, None)
    if previous is not None:
        previous.close("replaced by the chat box of a newer run of this cell")
    box = _OPEN[key] = ChatBox(target, name, **options)
    return box
