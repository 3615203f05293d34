// The operator's dashboard: REST for the state, the WebSocket stream for what changes.
// Every event schedules a refresh of the panels it concerns; the socket reconnects by itself.
(function () {
  "use strict";
  const staff = document.body.dataset.staff === "true";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let controls = null;
  let selected = null;

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Accept": "application/json" } }, options || {}));
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.json();
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : text;
    if (className) td.className = className;
    return td;
  }

  function money(value) {
    if (value === null || value === undefined) return null;
    return Number(value).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function signClass(value) {
    return value === null || value === undefined ? "" : Number(value) > 0 ? "pos" : Number(value) < 0 ? "neg" : "";
  }

  function time(value) {
    if (value === null || value === undefined) return null;
    const date = typeof value === "number" ? new Date(value) : new Date(value);
    return date.toISOString().replace("T", " ").slice(5, 19);
  }

  function fill(tbody, rows, build) {
    tbody.replaceChildren(...rows.map((row) => { const tr = document.createElement("tr"); build(tr, row); return tr; }));
  }

  // Mode banner and staff controls
  async function loadControls() {
    controls = await api("/api/controls/");
    const mode = controls.kill_switch ? "HALTED" : controls.auto_execute ? "AUTO-EXECUTE" : "DISPLAY ONLY";
    $("mode").dataset.mode = mode;
    $("mode").textContent = mode === "AUTO-EXECUTE" ? "AUTO-EXECUTE (paper)" : mode;
    if (staff) {
      $("toggle-auto").textContent = controls.auto_execute ? "Switch to display only" : "Switch to auto-execute";
      $("kill-switch").textContent = controls.kill_switch ? "Release kill switch" : "Kill switch";
    }
  }

  async function changeControls(change) {
    await api("/api/controls/", { method: "PATCH", body: JSON.stringify(change),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" } });
    await loadControls();
  }

  if (staff) {
    $("toggle-auto").addEventListener("click", () => changeControls({ auto_execute: !controls.auto_execute }));
    $("kill-switch").addEventListener("click", () => changeControls({ kill_switch: !controls.kill_switch }));
  }

  // Opportunities and the decision trail
  function edge(o) {
    if (o.kind === "arbitrage") return o.net_pct === null ? null : Number(o.net_pct).toFixed(3) + " %";
    if (o.kind === "forex") return o.direction + " " + Math.round(Number(o.confidence) * 100) + " %";
    return o.direction + " p=" + Number(o.probability).toFixed(2);
  }

  async function loadOpportunities() {
    const page = await api("/api/opportunities/");
    fill($("opportunities").tBodies[0], page.results, (tr, o) => {
      tr.dataset.id = o.id;
      if (String(o.id) === selected) tr.classList.add("selected");
      tr.append(cell(time(o.detected_at)), cell(o.kind), cell(o.symbol), cell(o.venues.join(" → ")),
        cell(edge(o)), cell(o.risk_score), cell(o.status, "status-" + o.status));
      tr.addEventListener("click", () => showTrail(String(o.id)));
    });
  }

  async function showTrail(id) {
    selected = id;
    const o = await api("/api/opportunities/" + id + "/");
    const trail = $("trail");
    trail.replaceChildren();
    const title = document.createElement("h3");
    title.textContent = o.kind + " " + o.symbol + " — " + o.status;
    const list = document.createElement("ul");
    if (!o.decisions.length) {
      const li = document.createElement("li");
      li.textContent = "not decided yet";
      list.append(li);
    }
    for (const d of ["agent", "risk", "governor"].map((layer) => o.decisions.find((x) => x.layer === layer)).filter(Boolean)) {
      const li = document.createElement("li");
      const reasons = d.reasons && d.reasons.length ? d.reasons.join(", ") : "no objection";
      li.textContent = d.layer + ": " + d.verdict + (d.level ? " (" + d.level + ")" : "") + " — " + reasons +
        (d.size_usd ? " — size $" + money(d.size_usd) : "");
      list.append(li);
    }
    trail.append(title, list);
    trail.hidden = false;
    document.querySelectorAll("#opportunities tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  }

  async function loadPositions() {
    const page = await api("/api/positions/?status=open");
    fill($("positions").tBodies[0], page.results, (tr, p) => {
      tr.append(cell(p.kind), cell(p.symbol), cell(p.direction), cell(p.entry_price),
        cell(p.kind === "binary" ? time(p.expiry_ts) : p.stop_loss + " / " + p.take_profit),
        cell(money(p.unrealized_pnl), signClass(p.unrealized_pnl)));
    });
  }

  async function loadTrades() {
    const page = await api("/api/trades/");
    fill($("trades").tBodies[0], page.results.slice(0, 25), (tr, t) => {
      tr.append(cell(time(t.opened_at)), cell(t.kind), cell(t.symbol), cell(t.reject_reason || t.status),
        cell(money(t.size_usd)), cell(money(t.fees_usd)), cell(money(t.realized_pnl), signClass(t.realized_pnl)));
    });
  }

  function chart(svg, values, height, color) {
    svg.replaceChildren();
    if (values.length < 2) return;
    const min = Math.min(...values), max = Math.max(...values), span = max - min || 1;
    const points = values.map((v, i) => (i / (values.length - 1) * 600).toFixed(1) + "," + (height - 4 - (v - min) / span * (height - 8)).toFixed(1));
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
  }

  async function loadPortfolio() {
    const p = await api("/api/portfolio/");
    const items = [["portfolio value $", money(p.portfolio_value)], ["realized P&L $", money(p.realized_pnl)],
      ["unrealized P&L $", money(p.unrealized_pnl)], ["cash $", money(p.cash)], ["max drawdown", p.max_drawdown_pct + " %"],
      ["paper trades", p.paper_trades], ["open positions", p.open_positions],
      ["win rate", p.win_rate === null ? "—" : (Number(p.win_rate) * 100).toFixed(1) + " %"], ["scans", p.total_scans]];
    $("summary").replaceChildren(...items.map(([label, value]) => {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = value === null ? "—" : value;
      const span = document.createElement("span");
      span.textContent = label;
      div.append(b, span);
      return div;
    }));
    chart($("equity"), p.equity_curve.map((s) => Number(s.equity)), 200, "#58a6ff");
    chart($("drawdown"), p.equity_curve.map((s) => -Number(s.drawdown_pct)), 80, "#f85149");
  }

  async function loadRisk() {
    const r = await api("/api/risk/");
    $("risk-level").textContent = r.level;
    $("risk-level").className = "level " + r.level;
    const names = { trades_today: "trades today", daily_loss: "daily loss $", loss_streak: "losses in a row", drawdown_pct: "drawdown from peak %" };
    $("risk").replaceChildren(...Object.entries(names).filter(([key]) => r.checks[key]).map(([key, label]) => {
      const check = r.checks[key];
      const usage = Math.min(1, Number(check.usage));
      const div = document.createElement("div");
      div.className = "bar";
      const text = document.createElement("label");
      text.innerHTML = "<span></span><span></span>";
      text.children[0].textContent = label;
      text.children[1].textContent = Number(check.used).toFixed(2).replace(/\.00$/, "") + " / " + Number(check.limit).toFixed(2).replace(/\.00$/, "");
      const track = document.createElement("div");
      track.className = "track";
      const bar = document.createElement("div");
      bar.className = "fill " + (usage >= 1 ? "blocked" : usage >= 0.8 ? "high" : usage >= 0.5 ? "medium" : "");
      bar.style.width = (usage * 100).toFixed(1) + "%";
      track.append(bar);
      div.append(text, track);
      return div;
    }));
  }

  async function loadFeeds() {
    const page = await api("/api/feeds/");
    fill($("feeds").tBodies[0], page.results, (tr, f) => {
      tr.append(cell(f.feed), cell(f.venue), cell(f.state, "state-" + f.state), cell(f.last_error || f.detail));
    });
  }

  async function loadScans() {
    const page = await api("/api/scans/");
    const latest = {};
    for (const run of page.results) if (!latest[run.kind]) latest[run.kind] = run;
    fill($("scans").tBodies[0], Object.values(latest), (tr, s) => {
      tr.append(cell(s.kind), cell(time(s.started_at)), cell(Number(s.duration_ms).toFixed(1) + " ms"),
        cell(s.opportunities_found), cell(s.opportunities_kept));
    });
  }

  const loaders = { controls: loadControls, opportunities: loadOpportunities, positions: loadPositions, trades: loadTrades,
    portfolio: loadPortfolio, risk: loadRisk, feeds: loadFeeds, scans: loadScans };
  const affects = { opportunity: ["opportunities", "scans"], decision: ["opportunities", "risk"],
    trade: ["trades", "portfolio", "risk", "opportunities"], position: ["positions", "portfolio"], stats: ["portfolio"],
    feed: ["feeds"], controls: ["controls"] };
  const pending = new Set();
  let timer = null;

  function refresh(names) {
    names.forEach((name) => pending.add(name));
    if (timer) return;
    timer = setTimeout(async () => {
      const due = [...pending];
      pending.clear();
      timer = null;
      await Promise.all(due.map((name) => loaders[name]().catch((err) => console.warn(name, err))));
      if (selected && due.includes("opportunities")) showTrail(selected).catch(() => {});
    }, 250);
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(scheme + "://" + location.host + "/ws/stream/");
    const state = $("stream-state");
    socket.onopen = () => { state.textContent = "live"; state.dataset.state = "connected"; delay = 1000; refresh(Object.keys(loaders)); };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (affects[event.type]) refresh(affects[event.type]);
    };
    socket.onclose = () => {
      state.textContent = "reconnecting…";
      state.dataset.state = "disconnected";
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  refresh(Object.keys(loaders));
  setInterval(() => refresh(["portfolio", "risk", "scans", "positions"]), 10000);
  connect(1000);
})();
