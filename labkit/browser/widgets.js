// labkit browser widgets: the page itself talks to the lab (WebSocket, EventSource, fetch).
// One module for every widget kind (model "kind"): "game", "whiteboard", "probe", "link".
// Each keeps a DevTools-like log of what crossed the connection and sends its rows and the
// browser-measured timings (performance.now()) back to Python at most ten times a second.

const MAX_LOG_ROWS = 200;
const FLUSH_MS = 100;
const encoder = new TextEncoder();

function sizeOf(data) {
  if (typeof data === "string") return encoder.encode(data).length;
  if (data && data.byteLength !== undefined) return data.byteLength;
  if (data && data.size !== undefined) return data.size;
  return 0;
}

// The lab's base URL as this page reaches it: through Jupyter's proxy when the page is a Jupyter
// page (its base URL comes from the page's own configuration), else the direct URL.
function labBase(model) {
  if (model.get("via") !== "direct") {
    const config = document.getElementById("jupyter-config-data");
    if (config) {
      try {
        const base = (JSON.parse(config.textContent).baseUrl || "/").replace(/\/?$/, "/");
        return new URL(base + model.get("proxy_path"), window.location.href).href;
      } catch (err) {
        // fall through to the direct URL
      }
    }
  }
  return model.get("direct_url").replace(/\/?$/, "/");
}

function wsBase(httpBase) {
  return httpBase.replace(/^http/, "ws");
}

// A class server reached directly (lk.join on a laptop class): the page is on the student's
// Jupyter origin, so every fetch names the student's token in `Authorization: Bearer` (a
// cross-origin fetch the class server allows with CORS), and a WebSocket or EventSource, which
// cannot set a header, carries it as ?token=. Anywhere else there is no token (the proxy or the
// hub's cookie is the credential).
function authed(model, headers) {
  const token = model.get("token");
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}
function streamUrl(model, url) {
  const token = model.get("token");
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

// Send to the kernel unless it is gone: a stopped or restarted kernel disposes the comm, and the
// comm then throws "Cannot send" for every message; the page just stops reporting.
function toKernel(model, message) {
  try {
    model.send(message);
    return true;
  } catch (err) {
    return false;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A game or a room exists once created: PUT it (idempotent: every page may PUT the same name; 201
// created, 200 already there) before joining, unless the widget was made with create=False.
async function ensureExists(model, log, url, what) {
  if (!model.get("create")) return { ok: true };
  log.add("↑", "PUT " + what, 0);
  try {
    const reply = await fetch(url, { method: "PUT", headers: authed(model, { Accept: "application/json" }), cache: "no-store" });
    const text = await reply.text();
    log.add("↓", `${reply.status}`, sizeOf(text));
    if (reply.ok) {
      let body = null;
      try {
        body = JSON.parse(text);
      } catch (err) {
        // not JSON: nothing more to learn
      }
      return { ok: true, body };
    }
    let detail = `HTTP ${reply.status}`;
    try {
      detail = JSON.parse(text).detail || detail;
    } catch (err) {
      // not JSON: keep the status
    }
    return { ok: false, detail };
  } catch (err) {
    return { ok: false, detail: String(err) };
  }
}

// Tell Python which page this is (its origin reaches the kernel over Jupyter's own, authenticated
// channel, so the lab can accept this page's WebSockets on a hub); wait for the answer (or 3 s).
function hello(model) {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      model.off("msg:custom", onMessage);
      resolve();
    };
    const onMessage = (msg) => {
      if (msg && msg.kind === "ready") finish();
    };
    model.on("msg:custom", onMessage);
    if (!toKernel(model, { kind: "hello", origin: window.location.origin, href: window.location.href })) {
      finish();
      return;
    }
    setTimeout(finish, 3000);
  });
}

// The frame log: newest first, at most MAX_LOG_ROWS rows; rows go to Python in batches.
function makeLog(model, title) {
  const box = el("div", "lk-log");
  box.appendChild(el("div", "lk-log-title", title || "frames (newest first)"));
  const table = el("table", "lk-log-table");
  const head = el("tr");
  for (const name of ["#", "dir", "type", "bytes", "t (ms)"]) head.appendChild(el("th", "", name));
  table.appendChild(head);
  const body = el("tbody");
  table.appendChild(body);
  box.appendChild(table);
  const t0 = performance.now();
  const pending = [];
  const timings = [];
  let timer = null;
  let count = 0;
  const flush = () => {
    timer = null;
    if (pending.length || timings.length) {
      toKernel(model, { kind: "rows", frames: pending.splice(0), timings: timings.splice(0) });
    }
  };
  const schedule = () => {
    if (timer === null) timer = setTimeout(flush, FLUSH_MS);
  };
  return {
    el: box,
    t0,
    now: () => performance.now() - t0,
    add(dir, type, bytes) {
      count += 1;
      const row = { n: count, dir, type, bytes, t_ms: Math.round((performance.now() - t0) * 1000) / 1000 };
      const tr = el("tr", "lk-frame " + (dir === "↑" ? "lk-up" : dir === "↓" ? "lk-down" : "lk-event"));
      for (const value of [row.n, dir, type, bytes, row.t_ms.toFixed(1)]) tr.appendChild(el("td", "", String(value)));
      body.insertBefore(tr, body.firstChild);
      while (body.children.length > MAX_LOG_ROWS) body.removeChild(body.lastChild);
      pending.push(row);
      schedule();
    },
    timing(row) {
      timings.push(row);
      schedule();
    },
    flush,
  };
}

// ---------------------------------------------------------------------------------------------
// Connect Four: a player or a spectator, over WebSocket or REST polling.
function renderGame(model, root, log, base) {
  const game = model.get("game");
  const transport = model.get("transport");
  const status = el("div", "lk-status", "connecting…");
  const board = el("div", "lk-board");
  const cells = [];
  for (let r = 0; r < 6; r++) {
    cells.push([]);
    for (let c = 0; c < 7; c++) {
      const cell = el("div", "lk-cell");
      cell.dataset.row = r;
      cell.dataset.col = c;
      cell.addEventListener("click", () => play(c));
      board.appendChild(cell);
      cells[r].push(cell);
    }
  }
  const notice = el("div", "lk-notice");
  root.appendChild(status);
  root.appendChild(notice);
  root.appendChild(board);
  const tell = (text) => {
    notice.textContent = text;
    root.dataset.notice = text;
  };
  let seat = null;
  let shown = -1;
  let current = null;
  let nextId = 0;
  const sentAt = new Map();
  let pendingCell = null;

  const draw = (state) => {
    if (state.version <= shown) return; // an older state than the one on screen: ignore it
    shown = state.version;
    current = state;
    if (pendingCell) {
      pendingCell.classList.remove("lk-pending");
      pendingCell = null;
    }
    for (let r = 0; r < 6; r++) {
      for (let c = 0; c < 7; c++) {
        const v = state.board[r][c];
        cells[r][c].dataset.disc = v;
        cells[r][c].textContent = v;
      }
    }
    root.dataset.version = state.version;
    root.dataset.winner = state.winner || "";
    root.dataset.moves = state.moves;
    const who = seat ? `you are ${seat}` : "watching";
    status.textContent = state.winner
      ? `${who} · game over: ${state.winner === "draw" ? "a draw" : state.winner + " wins"} · ${state.moves} moves`
      : `${who} · ${state.turn} to play · move ${state.moves + 1}`;
  };
  const refused = (detail, id) => {
    status.textContent = `refused: ${detail}`;
    root.dataset.lastError = detail;
    if (pendingCell) {
      pendingCell.classList.remove("lk-pending");
      pendingCell.dataset.disc = "";
      pendingCell.textContent = "";
      pendingCell = null;
    }
    if (sentAt.has(id)) {
      log.timing({ kind: "move", outcome: "refused", column: null, rtt_ms: log.now() - sentAt.get(id) });
      sentAt.delete(id);
    }
  };
  const optimistic = (column) => {
    if (!model.get("optimistic") || !current) return;
    for (let r = 5; r >= 0; r--) {
      if (!current.board[r][column]) {
        pendingCell = cells[r][column];
        pendingCell.dataset.disc = seat;
        pendingCell.textContent = seat;
        pendingCell.classList.add("lk-pending");
        return;
      }
    }
  };
  const seen = (msg) => {
    // Timings: our own move from click to the server's broadcast; the opponent's from the server's
    // clock (ts) to this screen (same-machine clocks only: on a hub it includes the clock offset).
    const move = msg.move;
    if (!move) return;
    if (move.id !== undefined && move.id !== null && sentAt.has(move.id) && move.seat === seat) {
      log.timing({ kind: "move", outcome: "accepted", column: move.column, rtt_ms: log.now() - sentAt.get(move.id) });
      sentAt.delete(move.id);
    } else if (msg.ts) {
      log.timing({ kind: "seen", column: move.column, seat: move.seat, server_to_screen_ms: Date.now() - msg.ts * 1000 });
    }
  };

  let play = () => {};
  let stop = () => {};
  if (transport === "poll") {
    let token = null;
    let etag = null;
    let timer = null;
    const api = base + `api/games/${encodeURIComponent(game)}`;
    const send = async (method, url, body) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      log.add("↑", `${method} ${url.slice(api.length) || "/"}`, text ? sizeOf(text) : 0);
      const headers = { Accept: "application/json" };
      if (text) headers["Content-Type"] = "application/json";
      if (method === "GET" && etag) headers["If-None-Match"] = etag;
      const reply = await fetch(url, { method, headers: authed(model, headers), body: text, cache: "no-store" });
      const answer = reply.status === 304 ? "" : await reply.text();
      log.add("↓", `${reply.status}`, sizeOf(answer));
      return { status: reply.status, etag: reply.headers.get("ETag"), body: answer ? JSON.parse(answer) : null };
    };
    const poll = async () => {
      try {
        const reply = await send("GET", api);
        if (reply.status === 200) {
          etag = reply.etag;
          draw(reply.body);
        }
      } catch (err) {
        status.textContent = `poll failed: ${err}`;
      }
      timer = setTimeout(poll, model.get("poll_ms"));
    };
    play = async (column) => {
      if (!seat) return;
      const id = ++nextId;
      sentAt.set(id, log.now());
      optimistic(column);
      const reply = await send("POST", api + "/moves", { seat, token, column });
      if (reply.status === 201) {
        log.timing({ kind: "move", outcome: "accepted", column, rtt_ms: log.now() - sentAt.get(id) });
        sentAt.delete(id);
        draw(reply.body);
      } else {
        refused(reply.body ? reply.body.detail : `HTTP ${reply.status}`, id);
      }
    };
    let stopped = false;
    stop = () => {
      stopped = true;
      clearTimeout(timer);
    };
    (async () => {
      const made = await ensureExists(model, log, api, "game");
      if (!made.ok) {
        status.textContent = `could not create the game: ${made.detail}`;
        root.dataset.lastError = made.detail;
        return;
      }
      if (stopped) return;
      if (model.get("role") === "play") {
        const reply = await send("POST", api + "/seats", { name: model.get("name") });
        if (reply.status === 201) {
          seat = reply.body.seat;
          token = reply.body.token;
          root.dataset.seat = seat;
        } else if (reply.status === 409) {
          tell("both seats are held by other pages: you watch");
        } else {
          refused(reply.body ? reply.body.detail : `HTTP ${reply.status}`, null);
        }
      }
      poll();
    })();
  } else {
    let role = model.get("role");
    let wanted = model.get("seat");
    let ws = null;
    let stopped = false;
    // A seat another page holds (this notebook open in a second tab, or another person's page)
    // cannot be taken: take the free one, or watch, and say so.
    const choose = (state) => {
      if (role !== "play" || !state || !state.seats) return;
      const free = ["X", "O"].filter((s) => !state.seats[s]);
      if (wanted && free.includes(wanted)) return;
      if (free.length) {
        if (wanted) tell(`seat ${wanted} is held by another page: you take ${free[0]}`);
        wanted = free[0];
      } else {
        role = "watch";
        tell("both seats are held by other pages: you watch");
      }
    };
    const join = (retry) => {
      const query = new URLSearchParams({ game, role, name: model.get("name") });
      if (role === "play" && wanted) query.set("seat", wanted);
      let welcomed = false;
      ws = new WebSocket(streamUrl(model, wsBase(base) + "ws/game?" + query));
      log.add("•", "upgrade", 0);
      ws.onopen = () => {
        log.add("•", "open", 0);
        root.dataset.connected = "true";
      };
      ws.onmessage = (event) => {
        const msg = JSON.parse(event.data);
        log.add("↓", msg.type, sizeOf(event.data));
        if (msg.type === "welcome") {
          welcomed = true;
          seat = msg.seat;
          root.dataset.seat = seat || "";
          draw(msg.state);
        } else if (msg.type === "state") {
          draw(msg.state);
          seen(msg);
        } else if (msg.type === "error") {
          refused(msg.detail, msg.id);
        }
      };
      ws.onclose = (event) => {
        log.add("•", `close ${event.code}`, 0);
        root.dataset.connected = "false";
        log.flush();
        if (!welcomed && retry && role === "play" && !stopped) {
          // refused before the upgrade: the seat was taken between our look and our join
          role = "watch";
          tell("the seat was taken meanwhile: you watch");
          join(false);
          return;
        }
        if (shown < 0) status.textContent = `could not join (connection closed, code ${event.code})`;
      };
    };
    const gameUrl = base + `api/games/${encodeURIComponent(game)}`;
    const look = async () => {
      const made = await ensureExists(model, log, gameUrl, "game");
      if (!made.ok || made.body || role !== "play") return made;
      try {  // create=False: look at the seats with a GET
        const reply = await fetch(gameUrl, { headers: authed(model, { Accept: "application/json" }), cache: "no-store" });
        return { ok: true, body: reply.ok ? await reply.json() : null };
      } catch (err) {
        return made;
      }
    };
    look().then((made) => {
      if (!made.ok) {
        status.textContent = `could not create the game: ${made.detail}`;
        root.dataset.lastError = made.detail;
      } else if (!stopped) {
        choose(made.body);
        join(true);
      }
    });
    play = (column) => {
      if (!seat || !ws || ws.readyState !== WebSocket.OPEN) return;
      const id = ++nextId;
      const text = JSON.stringify({ type: "move", column, id });
      sentAt.set(id, log.now());
      optimistic(column);
      ws.send(text);
      log.add("↑", "move", sizeOf(text));
    };
    stop = () => {
      stopped = true;
      if (ws) ws.close(1000, "widget stopped");
    };
  }
  return stop;
}

// ---------------------------------------------------------------------------------------------
// A shared whiteboard: draw strokes, see everyone's cursors (sent at most tick_hz times a second).
function renderWhiteboard(model, root, log, base) {
  const width = 480;
  const height = 300;
  const canvas = el("canvas", "lk-canvas");
  canvas.width = width;
  canvas.height = height;
  const status = el("div", "lk-status", "connecting…");
  root.appendChild(status);
  root.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  const strokes = new Map();
  const cursors = new Map();
  let drawing = null;
  let lastCursor = 0;
  let dirty = true;
  // Every cursor is labelled with its owner's name: a page given no name picks one of its own, and
  // the server numbers a name already in the room ("ada 2"), so two tabs never both say "you".
  const asked = model.get("name") || `guest-${Math.random().toString(16).slice(2, 6)}`;
  let me = asked;
  const query = new URLSearchParams({ room: model.get("room"), name: asked });
  const api = base + `api/collab/${encodeURIComponent(model.get("room"))}`;
  let ws = null;
  let stopped = false;
  const send = (value) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify(value);
    ws.send(text);
    log.add("↑", value.type, sizeOf(text));
  };
  // The welcome holds the newest strokes only (a bounded message): page the older kept ones.
  const loadOlder = async (since, until) => {
    while (!stopped && since < until) {
      log.add("↑", `GET ?since=${since}`, 0);
      const reply = await fetch(`${api}?since=${since}`, { headers: authed(model, { Accept: "application/json" }), cache: "no-store" });
      const text = await reply.text();
      log.add("↓", `${reply.status}`, sizeOf(text));
      if (!reply.ok) return;
      const page = JSON.parse(text);
      for (const s of page.strokes) if (s.seq < until) strokes.set(s.seq, s);
      root.dataset.strokes = strokes.size;
      dirty = true;
      if (!page.more || page.next_since <= since) return;
      since = page.next_since;
    }
  };
  const join = () => {
    ws = new WebSocket(streamUrl(model, wsBase(base) + "ws/collab?" + query));
    ws.onopen = () => log.add("•", "open", 0);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      log.add("↓", msg.type, sizeOf(event.data));
      if (msg.type === "welcome") {
        me = msg.you || asked;
        root.dataset.me = me;
        for (const s of msg.strokes) strokes.set(s.seq, s);
        if (msg.older > 0) {
          const until = msg.strokes.length ? msg.strokes[0].seq : msg.last_seq + 1;
          loadOlder(msg.first_kept - 1, until).catch((err) => log.add("•", `paging failed: ${err}`, 0));
        }
      } else if (msg.type === "stroke") strokes.set(msg.seq, msg);
      else if (msg.type === "cursor") cursors.set(msg.name, msg);
      else if (msg.type === "leave") cursors.delete(msg.name);
      root.dataset.strokes = strokes.size;
      dirty = true;
    };
    ws.onclose = (event) => {
      log.add("•", `close ${event.code}`, 0);
      status.textContent = `closed (${event.code})`;
      log.flush();
    };
  };
  ensureExists(model, log, api, "room").then((made) => {
    if (!made.ok) {
      status.textContent = `could not create the room: ${made.detail}`;
      root.dataset.lastError = made.detail;
    } else if (!stopped) {
      join();
    }
  });
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)),
            Math.min(1, Math.max(0, (event.clientY - box.top) / box.height))];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = [at(event)];
  });
  canvas.addEventListener("pointermove", (event) => {
    const point = at(event);
    if (drawing && drawing.length < 500) drawing.push(point);
    const now = performance.now();
    if (now - lastCursor >= 1000 / model.get("tick_hz")) {
      lastCursor = now;
      send({ type: "cursor", x: point[0], y: point[1] });
    }
  });
  canvas.addEventListener("pointerup", () => {
    if (drawing && drawing.length) send({ type: "stroke", points: drawing, color: model.get("color") });
    drawing = null;
  });
  const paint = () => {
    // at most ten redraws a second, only when something changed
    if (!dirty) return;
    dirty = false;
    ctx.clearRect(0, 0, width, height);
    for (const seq of [...strokes.keys()].sort((a, b) => a - b)) {
      const s = strokes.get(seq);
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * width, y * height) : ctx.moveTo(x * width, y * height)));
      ctx.stroke();
    }
    for (const [name, c] of cursors) {
      ctx.fillStyle = "#d62728";
      ctx.beginPath();
      ctx.arc(c.x * width, c.y * height, 4, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillText(name, c.x * width + 6, c.y * height - 6);
    }
    status.textContent = `you are ${me} · ${cursors.size} other cursor(s): ${[...cursors.keys()].join(", ") || "none"} · ${strokes.size} stroke(s)`;
    root.dataset.cursors = [...cursors.keys()].join(",");
  };
  const timer = setInterval(paint, 100);
  return () => {
    stopped = true;
    clearInterval(timer);
    if (ws) ws.close(1000, "widget stopped");
  };
}

// ---------------------------------------------------------------------------------------------
// A probe: `count` WebSocket echoes, EventSource events or fetches, each timed in the page.
function renderProbe(model, root, log, base) {
  const kind = model.get("transport");
  const count = model.get("count");
  const path = model.get("path");
  const payload = "x".repeat(model.get("payload_bytes"));
  const status = el("div", "lk-status", `${kind}: starting…`);
  root.appendChild(status);
  let done = 0;
  const finish = (what) => {
    status.textContent = `${kind}: ${what} · ${done} of ${count}`;
    root.dataset.done = done;
    log.flush();
  };
  if (kind === "websocket") {
    const ws = new WebSocket(streamUrl(model, wsBase(base) + path.replace(/^\//, "")));
    const opened = performance.now();
    log.add("•", "upgrade", 0);
    let sent = 0;
    const next = () => {
      sent = performance.now();
      ws.send(payload);
      log.add("↑", "text", sizeOf(payload));
    };
    ws.onopen = () => {
      log.add("•", "open", 0);
      log.timing({ transport: "websocket", i: 0, what: "open", ms: performance.now() - opened });
      next();
    };
    ws.onmessage = (event) => {
      log.add("↓", "text", sizeOf(event.data));
      done += 1;
      log.timing({ transport: "websocket", i: done, what: "echo", ms: performance.now() - sent });
      if (done < count) next();
      else ws.close(1000, "done");
    };
    ws.onclose = (event) => {
      log.add("•", `close ${event.code}`, 0);
      finish(done >= count ? "done" : `closed (${event.code})`);
    };
    return () => ws.close(1000, "widget stopped");
  }
  if (kind === "sse") {
    const source = new EventSource(streamUrl(model, base + path.replace(/^\//, "")));
    let last = performance.now();
    source.onopen = () => log.add("•", "open", 0);
    source.onmessage = (event) => {
      const now = performance.now();
      log.add("↓", "event", sizeOf(event.data));
      done += 1;
      log.timing({ transport: "sse", i: done, what: "gap", ms: now - last });
      last = now;
      if (done >= count) {
        source.close();
        finish("done");
      }
    };
    source.onerror = () => log.add("•", "error/reconnect", 0);
    return () => source.close();
  }
  let stopped = false;
  (async () => {
    for (let i = 1; i <= count && !stopped; i++) {
      const started = performance.now();
      log.add("↑", "GET", 0);
      const reply = await fetch(base + path.replace(/^\//, ""), { cache: "no-store", headers: authed(model, {}) });
      const body = await reply.text();
      log.add("↓", String(reply.status), sizeOf(body));
      done = i;
      log.timing({ transport: "fetch", i, what: "request", ms: performance.now() - started });
    }
    finish("done");
  })();
  return () => {
    stopped = true;
  };
}

// ---------------------------------------------------------------------------------------------
function renderLink(model, root, base) {
  const link = el("a", "lk-anchor", model.get("text") || base);
  link.href = base;
  link.target = "_blank";
  link.rel = "noopener";
  root.appendChild(link);
  return () => {};
}

async function render({ model, el: host }) {
  const root = el("div", `labkit-browser lk-${model.get("kind")}`);
  host.appendChild(root);
  await hello(model);
  const base = labBase(model);
  root.dataset.base = base;
  if (model.get("login_path")) {
    // a JupyterHub service on this page's origin: one same-origin fetch of its login path lets the
    // hub's OAuth set the service's cookie (no page to confirm), which later fetches and WebSockets carry
    try {
      await fetch(base + model.get("login_path"), { cache: "no-store", credentials: "same-origin" });
    } catch (err) {
      // not logged in to the hub: the widget's own requests will say 401
    }
  }
  try {
    model.set("page_base", base);
    model.set("rendered", true);
    model.save_changes();
  } catch (err) {
    // the kernel is gone: the page still draws, it only cannot report
  }
  const kind = model.get("kind");
  if (kind === "link") return renderLink(model, root, base);
  const log = makeLog(model);
  let stop = () => {};
  if (kind === "game") stop = renderGame(model, root, log, base);
  else if (kind === "whiteboard") stop = renderWhiteboard(model, root, log, base);
  else if (kind === "probe") stop = renderProbe(model, root, log, base);
  root.appendChild(log.el);
  const seconds = model.get("seconds");
  const timer = seconds > 0 ? setTimeout(() => stop(), seconds * 1000) : null; // stops by itself
  return () => {
    if (timer) clearTimeout(timer);
    stop();
    log.flush();
  };
}

export default { render };
