"""The customer's screen of lesson 09: balance, payments and the support chat, live.

    screen = lk.bank_widget(lab, account_id, seconds=120)

It holds two WebSockets (the account's changes and its support room, as the customer) and uses REST
for the actions (Pay). Redraws at most every REFRESH_S seconds; after `seconds` it closes both
sockets by itself and greys out (`screen.stop()` ends it earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import time

import aiohttp
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.clients._target import base_url

from . import REFRESH_S


class CustomerScreen:
    """A customer's page as ipywidgets, fed by the account's WebSocket streams."""

    def __init__(self, target, account_id: str, *, seconds: float = 120.0, show: int = 8):
        import ipywidgets as widgets

        self.url, self.ws_url, self.account_id, self.show = base_url(target), base_url(target, "ws"), \
            account_id, show
        self.balance: dict = {}
        self.payments: dict[int, dict] = {}
        self.chat: list[dict] = []
        self.title = widgets.HTML()
        self.payment_list = widgets.HTML()
        self.chat_list = widgets.HTML()
        self.amount = widgets.BoundedIntText(value=250, min=1, max=100_000_000, description="cents")
        self.pay_button = widgets.Button(description="Pay", button_style="primary")
        self.text = widgets.Text(placeholder="ask support…", continuous_update=False)
        self.feedback = widgets.HTML()
        self.box = widgets.VBox([self.title, widgets.HBox([self.amount, self.pay_button]),
                                 self.payment_list, self.chat_list, self.text, self.feedback])
        self.pay_button.on_click(lambda _: self.pay(self.amount.value))
        self.text.observe(lambda change: self.say(change["new"]), names="value")
        self.ends_at = time.time() + seconds
        self._sockets: dict = {}
        self._task = asyncio.run_coroutine_threadsafe(self._run(), _loop.client_loop())

    # -- actions (REST and the support socket) --------------------------------------------------
    def pay(self, cents: int, payee: str = "Corner shop") -> int:
        """POST a payment; returns the HTTP status (the screen shows the outcome when it is pushed)."""
        async def _pay():
            async with aiohttp.ClientSession() as session, session.post(
                    f"{self.url}/api/payments",
                    json={"account": self.account_id, "payee": payee, "amount": int(cents)}) as reply:
                return reply.status, await reply.json(content_type=None)

        status, body = _loop.run(_pay())
        if status != 201:
            self.feedback.value = f"<span style='color:#b35c00'>{html.escape(str(body.get('detail')))}</span>"
        return status

    def say(self, text: str) -> None:
        """Send `text` to the support room as the customer (Enter in the box does this)."""
        sock = self._sockets.get("support")
        if not text or sock is None:
            return
        _loop.run(sock.send(json.dumps({"type": "message", "text": text})))
        self.text.value = ""

    def stop(self) -> None:
        """Close the screen's sockets now."""
        self.ends_at = 0.0
        with contextlib.suppress(Exception):
            self._task.result(timeout=5)

    # -- background ------------------------------------------------------------------------------
    async def _listen(self, name: str, path: str) -> None:
        async with connect(f"{self.ws_url}{path}", compression=None) as sock:
            self._sockets[name] = sock
            async for raw in sock:
                msg = json.loads(raw)
                data = msg.get("data") or {}
                if msg.get("type") == "welcome" and "account" in msg and isinstance(msg["account"], dict):
                    self.balance = msg["account"]
                elif name == "account" and "payment" in data:
                    self.payments[data["payment"]["id"]] = data["payment"]
                    self.balance = {**self.balance, "balance": data["balance"],
                                    "available": data["available"]}
                elif name == "support" and "text" in data:
                    self.chat.append(data)

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._listen("account", f"/ws/bank?account={self.account_id}")),
                 asyncio.create_task(self._listen(
                     "support", f"/ws/bank/support?account={self.account_id}&role=customer"))]
        try:
            while time.time() < self.ends_at and not all(t.done() for t in tasks):
                self.redraw()
                await asyncio.sleep(REFRESH_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._sockets.clear()
            self.redraw()
            self.pay_button.disabled = self.text.disabled = True
            self.feedback.value = "<i>this screen has closed its connections.</i>"

    def redraw(self) -> None:
        b = self.balance
        if b:
            self.title.value = (f"<b>{html.escape(str(b.get('owner', '')))}</b> · balance "
                                f"<b>{b.get('balance', 0) / 100:.2f} EUR</b> · available "
                                f"{b.get('available', 0) / 100:.2f} EUR")
        rows = [f"<div>#{p['id']} {html.escape(p['payee'])} {p['amount'] / 100:.2f} EUR — "
                f"<b>{p['status']}</b></div>" for p in list(self.payments.values())[-self.show:]]
        self.payment_list.value = "".join(rows) or "<i>no payments yet</i>"
        lines = [f"<div><b>{html.escape(m['name'])}</b>: {html.escape(m['text'])}</div>"
                 for m in self.chat[-self.show:]]
        self.chat_list.value = "".join(lines) or "<i>support chat: no messages yet</i>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def bank_widget(target, account_id: str, **options) -> CustomerScreen:
    """The customer's live screen for `account_id` (see CustomerScreen)."""
    return CustomerScreen(target, account_id, **options)
