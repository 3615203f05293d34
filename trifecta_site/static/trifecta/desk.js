// The operator's dashboard: REST for the state, the WebSocket stream for what changes.
// Every event schedules a refresh of the panels it concerns; the socket reconnects by itself.
// All times shown are market time (UTC): in a replay, the simulated time of the recording.
(function () {
  "use strict";
  const staff = document.body.dataset.staff === "true";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const LW = window.LightweightCharts;
  const desk = { controls: null, feeds: [], scans: [], state: null, stream: "connecting", selected: null, instrument: null };
  window.trifecta = desk; // read by the browser tests and handy in the console (desk.refresh(["positions"]) redraws a panel)

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Accept": "application/json" } }, options || {}));
    if (!response.ok) throw Object.assign(new Error(path + ": " + response.status), { status: response.status });
    return response.json();
  }

  // Formatting -----------------------------------------------------------------
  const isNone = (v) => v === null || v === undefined || v === "";
  function money(value) {
    if (isNone(value)) return null;
    return Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function signed(value) {
    if (isNone(value)) return null;
    const n = Number(value);
    return (n > 0 ? "+" : "") + money(n);
  }
  const signClass = (v) => isNone(v) ? "" : Number(v) > 0 ? "pos" : Number(v) < 0 ? "neg" : "even";
  const pct = (v, digits) => isNone(v) ? null : Number(v).toFixed(digits === undefined ? 3 : digits) + " %";
  const pad = (n) => String(n).padStart(2, "0");
  function clockText(ms, withDate) {
    if (isNone(ms)) return null;
    const d = new Date(Number(ms));
    const time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    return withDate ? d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + time : time;
  }
  function marketTime(ms) {  // table cells: the time, and the date when it is not the market's today
    if (isNone(ms)) return null;
    const today = desk.state && desk.state.clock.market_ms ? new Date(marketNow()).toISOString().slice(0, 10) : null;
    const day = new Date(Number(ms)).toISOString().slice(0, 10);
    return day === today ? clockText(ms) : day.slice(5) + " " + clockText(ms);
  }

  function cell(text, className, label) {
    const td = document.createElement("td");
    td.textContent = isNone(text) ? "—" : text;
    if (className) td.className = className;
    if (label) td.dataset.label = label;
    return td;
  }
  function fill(table, rows, build) {
    const labels = [...table.tHead.rows[0].cells].map((th) => th.textContent);
    table.tBodies[0].replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      build(tr, row);
      [...tr.cells].forEach((td, i) => { if (!td.dataset.label) td.dataset.label = labels[i] || ""; });
      return tr;
    }));
  }
  function empty(id, html) {  // an empty state: why the panel is empty and what to do
    const p = $(id);
    if (!html) { p.hidden = true; return; }
    p.innerHTML = html;
    p.hidden = false;
  }
  const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

  // What the desk is doing, for the empty states ------------------------------------
  function feedProblem() {
    if (desk.state && desk.state.source.kind === "none") return esc(desk.state.source.words) + " " + esc(desk.state.source.switch);
    if (!desk.feeds.length) return null;
    const down = desk.feeds.filter((f) => f.state === "down");
    if (down.length === desk.feeds.length) {
      return "The feed is down (" + esc(down[0].last_error || down[0].detail || "no answer") + "). " +
        "See Feeds below; the desk resumes by itself when the venues answer.";
    }
    return null;
  }
  function modeProblem() {
    if (!desk.controls) return null;
    if (desk.controls.kill_switch) return "<b>Kill switch on:</b> nothing new executes. " + (staff ? "Release it with the button above." : "A staff user can release it.");
    if (!desk.controls.auto_execute) return "<b>Display only:</b> opportunities are decided but nothing executes. " +
      (staff ? "Switch to auto-execute with the button above" : "A staff user can switch to auto-execute") + " (or PATCH /api/controls/ {\"auto_execute\": true}).";
    return null;
  }

  // Header: controls, source badge, market clock ----------------------------------------
  async function loadControls() {
    desk.controls = await api("/api/controls/");
    const c = desk.controls;
    const mode = c.kill_switch ? "HALTED" : c.auto_execute ? "AUTO-EXECUTE" : "DISPLAY ONLY";
    $("mode").dataset.mode = mode;
    $("mode").textContent = mode === "AUTO-EXECUTE" ? "AUTO-EXECUTE (paper)" : mode;
    if (staff) {
      $("toggle-auto").textContent = c.auto_execute ? "Switch to display only" : "Switch to auto-execute";
      $("kill-switch").textContent = c.kill_switch ? "Release kill switch" : "Kill switch";
      $("toggle-auto").disabled = $("kill-switch").disabled = false;  // disabled in the page until the controls are known
    }
    emptyStates();
  }
  async function changeControls(change) {  // a refusal is said in the header, not lost in the console
    try {
      await api("/api/controls/", { method: "PATCH", body: JSON.stringify(change),
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" } });
      $("notice").hidden = true;
    } catch (err) {
      $("notice").textContent = String(err.message).endsWith("403")
        ? "Not changed: your account lacks the 'change controls' permission (admin › Users)." : "Not changed: " + err.message;
      $("notice").hidden = false;
    }
    await loadControls();
  }
  if (staff) {
    $("toggle-auto").addEventListener("click", () => changeControls({ auto_execute: !desk.controls.auto_execute }));
    $("kill-switch").addEventListener("click", () => changeControls({ kill_switch: !desk.controls.kill_switch }));
  }

  function marketNow() {
    const s = desk.state;
    if (!s || isNone(s.clock.market_ms)) return null;
    return s.clock.market_ms + (Date.now() - s.fetchedAt) * (s.clock.speed || 1);
  }
  function tickClock() {
    const now = marketNow();
    const s = desk.state;
    const pace = s && s.source.kind !== "live" && s.clock.speed && s.clock.speed !== 1 ? " · ×" + s.clock.speed : "";
    $("clock").textContent = now === null ? "market time —" : clockText(now, true) + " UTC" + (s.source.kind === "live" ? "" : " (" + s.source.kind + pace + ")");
  }
  function badge() {
    const label = desk.state ? desk.state.source.label : document.body.dataset.source.toUpperCase();
    const states = desk.feeds.map((f) => f.state);
    let feed = states.length === 0 ? "waiting" : states.every((s) => s === "ok") ? "ok" : states.every((s) => s === "down") ? "down" : "degraded";
    if (desk.state && desk.state.source.kind === "none") feed = "down";
    const stream = desk.stream;
    const state = stream !== "connected" ? (stream === "connecting" ? "connecting" : "disconnected") : feed === "waiting" ? "connecting" : feed;
    const words = { ok: "feed ok · live stream", degraded: "feed degraded · live stream", down: "feed down",
      connecting: stream === "connected" ? "waiting for the feed" : "connecting…", disconnected: "stream reconnecting…" };
    $("badge").dataset.state = state;
    $("badge").textContent = label + " · " + words[state];
  }
  async function loadState() {
    const s = await api("/dashboard/state/");
    s.fetchedAt = Date.now();
    desk.state = s;
    $("source-words").textContent = s.source.words;
    $("source-switch").textContent = s.source.switch;
    tickClock();
    badge();
    const o = s.outcomes, parts = [];
    for (const kind of ["arbitrage", "forex", "binary"]) {
      const k = o[kind];
      if (k.wins + k.losses + k.ties + k.voids === 0) continue;
      parts.push(kind + ": " + k.wins + " won · " + k.losses + " lost" + (k.ties ? " · " + k.ties + " tie" + (k.ties > 1 ? "s" : "") : "") +
        (k.voids ? " · " + k.voids + " void" : "") + winRate(k));
    }
    $("outcomes").textContent = parts.length ? parts.join("   |   ") + "  (ties and voids returned the stake: neither won nor lost)" : "";
    fillInstruments(s.instruments);
  }
  const winRate = (k) => k.wins + k.losses ? " (win rate " + Math.round(100 * k.wins / (k.wins + k.losses)) + " % of decided)" : "";

  // Opportunities ---------------------------------------------------------------
  function columns(o) {  // what matters for each kind
    const f = o.figures || {};
    const signal = o.kind === "arbitrage" ? (o.type === "triangular" ? "triangle" : "buy → sell") : o.direction + (f.expiry_s ? " " + f.expiry_s + " s" : "");
    if (o.kind === "arbitrage") {
      return { signal, net: pct(o.net_pct), netUsd: signed(o.expected_profit_usd), prob: null, probTitle: "",
        exp: signed(o.expected_profit_usd), expClass: signClass(o.expected_profit_usd) };
    }
    if (o.kind === "binary") {  // the desk's calibrated figures once decided, else the scanner's
      const ev = isNone(f.expected_value) ? null : (Number(f.expected_value) >= 0 ? "+" : "") + Number(f.expected_value).toFixed(2) + " per $1";
      const usd = !isNone(o.expected_profit_usd);
      return { signal, net: null, netUsd: null, prob: isNone(o.probability) ? null : "p " + (Number(o.probability) * 100).toFixed(1) + " %",
        probTitle: "calibrated probability of winning", exp: usd ? "$" + signed(o.expected_profit_usd) : ev,
        expClass: signClass(usd ? o.expected_profit_usd : f.expected_value) };
    }
    const prob = !isNone(o.probability) ? "p " + (Number(o.probability) * 100).toFixed(1) + " %"
      : isNone(o.confidence) ? null : "conf. " + Math.round(Number(o.confidence) * 100) + " %";
    return { signal, net: null, netUsd: null, prob, probTitle: isNone(o.probability) ? "signal confidence: agreement of trend and momentum, not a probability" : "probability",
      exp: isNone(o.expected_profit_usd) ? (f.risk_reward ? "R:R " + Number(f.risk_reward).toFixed(2) : null) : "$" + signed(o.expected_profit_usd),
      expClass: signClass(o.expected_profit_usd) };
  }
  async function loadOpportunities() {
    const page = await api("/api/opportunities/");
    desk.opportunities = page.results;
    fill($("opportunities"), page.results, (tr, o) => {
      const c = columns(o);
      tr.dataset.id = o.id;
      if (String(o.id) === desk.selected) tr.classList.add("selected");
      const prob = cell(c.prob, "num");
      prob.title = c.probTitle;
      tr.append(cell(marketTime(o.market_ts)), cell(o.kind), cell(o.symbol), cell(o.venues.join(" → ")), cell(c.signal),
        cell(c.net, "num " + signClass(o.net_pct)), cell(c.netUsd, "num " + signClass(o.expected_profit_usd)), prob,
        cell(c.exp, "num " + c.expClass), cell(Number(o.risk_score).toFixed(0), "num"), cell(o.status, "status-" + o.status));
      tr.addEventListener("click", () => { showTrail(String(o.id)); selectInstrument(o.venues[0], o.symbol); });
    });
    emptyStates();
  }
  async function showTrail(id) {
    desk.selected = id;
    const o = await api("/api/opportunities/" + id + "/");
    const trail = $("trail");
    const title = document.createElement("h3");
    title.textContent = o.kind + " " + o.symbol + " at " + clockText(o.market_ts, true) + " — " + o.status;
    const list = document.createElement("ul");
    if (!o.decisions.length) {
      const li = document.createElement("li");
      li.textContent = "not decided yet";
      list.append(li);
    }
    for (const d of ["agent", "risk", "governor"].map((layer) => o.decisions.find((x) => x.layer === layer)).filter(Boolean)) {
      const li = document.createElement("li");
      const reasons = d.reasons && d.reasons.length ? d.reasons.join(", ") : "no objection";
      li.textContent = d.layer + ": " + d.verdict + (d.level ? " (" + d.level + ")" : "") + " — " + reasons + (d.size_usd ? " — size $" + money(d.size_usd) : "");
      list.append(li);
    }
    trail.replaceChildren(title, list);
    trail.hidden = false;
    document.querySelectorAll("#opportunities tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  }

  // Positions and trades ---------------------------------------------------------------
  async function loadPositions() {
    const page = await api("/api/positions/?status=open");
    desk.positions = page.results;
    fill($("positions"), page.results, (tr, p) => {
      const binary = p.kind === "binary";
      tr.append(cell(marketTime(p.opened_ts)), cell(p.kind), cell(p.symbol + " · " + p.venue), cell(p.direction), cell(p.entry_price, "num"),
        cell(binary ? null : (p.stop_loss || "—") + " / " + (p.take_profit || "—"), "num"), cell(binary ? marketTime(p.expiry_ts) : null),
        cell(money(p.reserved_usd), "num"), cell(signed(p.unrealized_pnl), "num " + signClass(p.unrealized_pnl)),
        actionCell(can.close && !binary ? "Close" : null, "close-" + p.id, () => closePosition(p)));
    });
    emptyStates();
  }

  // The operator's hands: close a position now, pause a pair or a route, lift a pause ----------------
  const can = { close: document.body.dataset.canClose === "true", pause: document.body.dataset.canPause === "true",
    lift: document.body.dataset.canLift === "true" };
  async function send(path, method, body) {  // the server's own message on a refusal, said in the header
    const response = await fetch(path, { method, credentials: "same-origin", body: body ? JSON.stringify(body) : undefined,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" } });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = data.detail || Object.entries(data).map(([k, v]) => k + ": " + [].concat(v).join(" ")).join("; ");
      say("Not done: " + (detail || response.status));
      return null;
    }
    say(null);
    return data;
  }
  function say(text) { $("notice").textContent = text || ""; $("notice").hidden = !text; }
  const armed = {};  // button id -> when its first click armed it: kept while the table redraws under it
  const ARMED_MS = 8000;
  function actionCell(label, id, act) {  // a button that asks once more before it acts
    const td = cell(null);
    if (!label) return td;
    const button = document.createElement("button");
    button.type = "button";
    button.id = id;
    const arm = () => { button.dataset.armed = "true"; button.textContent = "Confirm " + label.toLowerCase(); button.className = "danger"; };
    button.textContent = label;
    if (Date.now() - (armed[id] || 0) < ARMED_MS) arm();
    button.addEventListener("click", () => {
      if (!(Date.now() - (armed[id] || 0) < ARMED_MS)) { armed[id] = Date.now(); arm(); return; }
      delete armed[id];
      button.disabled = true;
      act();
    });
    td.replaceChildren(button);
    return td;
  }
  async function closePosition(p) {
    const closed = await send("/api/positions/" + p.id + "/close/", "POST", { reason: "closed from the dashboard" });
    if (closed) say(null);
    refresh(["positions", "trades", "portfolio", "risk"]);
  }
  async function loadPauses() {
    const page = await api("/api/pauses/?in_force=true");
    desk.pauses = page.results;
    fill($("pauses"), page.results, (tr, p) => {
      tr.append(cell(p.scope), cell(p.target), cell(p.until ? p.until.replace("T", " ").slice(0, 19) + " UTC" : "until lifted"),
        cell(p.reason || null), cell(p.created_by), actionCell(can.lift ? "Lift" : null, "lift-" + p.id, () => liftPause(p)));
    });
    empty("pauses-empty", page.results.length ? null : "<b>No pause.</b> " + (can.pause ? "Pause a pair or a route with the form above." : "A staff user can pause a pair or a route."));
  }
  async function liftPause(p) {
    await send("/api/pauses/" + p.id + "/", "DELETE");
    refresh(["pauses"]);
  }
  if (can.pause) {
    $("pause-form").hidden = false;
    $("pause-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const body = { scope: f.scope.value, target: f.target.value, reason: f.reason.value };
      if (f.minutes.value) body.minutes = Number(f.minutes.value);
      if (await send("/api/pauses/", "POST", body)) e.target.reset();
      refresh(["pauses"]);
    });
  }
  async function loadTrades() {
    const [page, closed] = await Promise.all([api("/api/trades/"), api("/api/positions/?status=closed")]);
    const reasons = {};
    for (const p of closed.results) reasons[p.trade] = p.close_reason;
    desk.trades = page.results;
    fill($("trades"), page.results.slice(0, 30), (tr, t) => {
      tr.append(cell(marketTime(t.opened_ts)), cell(marketTime(t.closed_ts)), cell(t.kind), cell(t.symbol), cell(t.direction || null),
        cell(outcome(t, reasons[t.id])), cell(money(t.size_usd), "num"), cell(money(t.fees_usd), "num"),
        cell(signed(t.realized_pnl), "num " + signClass(t.realized_pnl)));
    });
    emptyStates();
  }
  function outcome(t, reason) {
    if (t.status === "rejected") return "rejected: " + (t.reject_reason || "");
    if (t.status === "open") return "open";
    if (reason === "tie" || reason === "void") return reason + " (stake back)";
    const pnl = Number(t.realized_pnl);
    const word = pnl > 0 ? "won" : pnl < 0 ? "lost" : "even";
    return reason && reason !== "win" && reason !== "loss" ? word + " · " + reason.replace("_", " ") : word;
  }

  // Charts --------------------------------------------------------------------------
  const chartOptions = (el, height) => ({
    autoSize: true,
    layout: { background: { type: "solid", color: "#141a20" }, textColor: "#c9d1d9", fontSize: 11, attributionLogo: false },
    grid: { vertLines: { color: "#1e252c" }, horzLines: { color: "#1e252c" } },
    rightPriceScale: { borderColor: "#30363d" },
    timeScale: { borderColor: "#30363d", timeVisible: true, secondsVisible: false },
    crosshair: { mode: LW ? LW.CrosshairMode.Normal : 0 },
    handleScroll: { vertTouchDrag: false },
  });
  function legendOn(chart, series, legendId, format) {
    chart.subscribeCrosshairMove((param) => {
      const point = param.time !== undefined ? param.seriesData.get(series) : null;
      $(legendId).textContent = point ? clockText(Number(param.time) * 1000, true) + " UTC · " + format(point.value) : "hover the chart for values";
    });
  }
  const charts = {};
  desk.charts = charts;
  function makeCharts() {
    if (!LW) return;
    charts.equity = LW.createChart($("equity-chart"), chartOptions());
    charts.equitySeries = charts.equity.addAreaSeries({ lineColor: "#58a6ff", topColor: "#58a6ff44", bottomColor: "#58a6ff05", lineWidth: 2,
      priceFormat: { type: "price", precision: 2, minMove: 0.01 },
      autoscaleInfoProvider: (original) => keepInView(original(), desk.startValue, 0.0025) });
    legendOn(charts.equity, charts.equitySeries, "equity-legend", (v) => "equity $" + money(v) + (desk.startValue ? " (" + signed(v - desk.startValue) + " vs start)" : ""));
    charts.drawdown = LW.createChart($("drawdown-chart"), chartOptions());
    charts.drawdownSeries = charts.drawdown.addAreaSeries({ lineColor: "#f85149", topColor: "#f8514905", bottomColor: "#f8514944", lineWidth: 2,
      priceFormat: { type: "custom", formatter: (v) => v.toFixed(2) + " %", minMove: 0.01 },
      autoscaleInfoProvider: (original) => keepInView(original(), 0, 0.5, true) });
    legendOn(charts.drawdown, charts.drawdownSeries, "drawdown-legend", (v) => "drawdown " + (-v).toFixed(3) + " %");
    charts.price = LW.createChart($("price-chart"), chartOptions());
    charts.priceSeries = charts.price.addLineSeries({ color: "#e6e9ec", lineWidth: 1.5 });
    legendOn(charts.price, charts.priceSeries, "price-legend", (v) => "price " + v.toFixed(desk.pricePrecision || 2));
    const sync = (a, b) => a.timeScale().subscribeVisibleLogicalRangeChange((range) => { if (range) b.timeScale().setVisibleLogicalRange(range); });
    sync(charts.equity, charts.drawdown);
    sync(charts.drawdown, charts.equity);
  }
  // The autoscaled range always holds `anchor` and spans at least `share` of it (or `share`
  // itself, `absolute`): a 0.004 % move must not look like a crash.
  function keepInView(info, anchor, share, absolute) {
    if (!info || anchor === null || anchor === undefined) return info;
    const span = absolute ? share : Math.abs(anchor) * share;
    const range = info.priceRange;
    let min = Math.min(range.minValue, anchor), max = Math.max(range.maxValue, anchor);
    if (max - min < span) { const mid = absolute ? Math.min(0, (min + max) / 2) : (min + max) / 2; min = Math.min(min, mid - span / 2); max = Math.max(max, mid + span / 2); }
    if (absolute) max = Math.max(max, 0);
    return { priceRange: { minValue: min, maxValue: max }, margins: info.margins };
  }

  async function loadPortfolio() {
    const p = await api("/api/portfolio/");
    desk.portfolio = p;
    desk.startValue = Number(p.starting_value);
    summary(p);
    if (!charts.equity) return;
    const points = dedupe(p.equity_curve.map((s) => ({ time: Math.floor(s.minute_ts / 1000), equity: Number(s.equity), dd: -Number(s.drawdown_pct) })));
    charts.equitySeries.setData(points.map((s) => ({ time: s.time, value: s.equity })));
    charts.drawdownSeries.setData(points.map((s) => ({ time: s.time, value: s.dd })));
    if (!charts.startLine) {
      charts.startLine = charts.equitySeries.createPriceLine({ price: desk.startValue, color: "#8c98a4", lineWidth: 1, lineStyle: 2, axisLabelVisible: true, title: "start" });
    } else {
      charts.startLine.applyOptions({ price: desk.startValue });
    }
    if (points.length) { charts.equity.timeScale().fitContent(); charts.drawdown.timeScale().fitContent(); }
    emptyStates();
  }
  function dedupe(points) {
    const out = [];
    for (const p of points) { if (out.length && out[out.length - 1].time >= p.time) out[out.length - 1] = p; else out.push(p); }
    return out;
  }
  function summary(p, live) {
    const items = [["portfolio value $", money(p.portfolio_value)], ["realized P&L $", signed(p.realized_pnl), signClass(p.realized_pnl)],
      ["unrealized P&L $", signed(p.unrealized_pnl), signClass(p.unrealized_pnl), "unrealized"], ["cash $", money(p.cash)],
      ["max drawdown", pct(p.max_drawdown_pct, 2)], ["paper trades", p.paper_trades], ["open positions", p.open_positions], ["scans", p.total_scans]];
    $("summary").replaceChildren(...items.map(([label, value, className, id]) => {
      const div = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = isNone(value) ? "—" : value;
      if (className) b.className = className;
      if (id) b.id = id;
      const span = document.createElement("span");
      span.textContent = label;
      div.append(b, span);
      return div;
    }));
  }
  function onStats(e) {  // the monitor's latest figures, every 2 s: move the numbers and the curve's last point
    if (!desk.portfolio || isNone(e.equity)) return;
    Object.assign(desk.portfolio, { portfolio_value: e.equity, cash: e.cash, realized_pnl: e.realized_pnl, unrealized_pnl: e.unrealized_pnl, open_positions: e.open_positions });
    summary(desk.portfolio);
    if (charts.equitySeries && e.minute_ts) {
      const time = Math.floor(e.minute_ts / 1000);
      try {
        charts.equitySeries.update({ time, value: Number(e.equity) });
        charts.drawdownSeries.update({ time, value: -Number(e.drawdown_pct) });
        $("equity-empty").hidden = true;
      } catch (err) { refresh(["portfolio"]); }
    }
  }

  // Price chart of the selected instrument -------------------------------------------------
  function fillInstruments(list) {
    const select = $("instrument");
    const keys = list.map((i) => i.venue + "|" + i.symbol);
    if (select.dataset.keys === keys.join(",")) return;
    select.dataset.keys = keys.join(",");
    select.replaceChildren(...list.map((i) => { const o = document.createElement("option"); o.value = i.venue + "|" + i.symbol; o.textContent = i.symbol + " · " + i.venue; return o; }));
    if (!desk.instrument && list.length) {
      const freshest = list.reduce((best, i) => ((i.last_ms || 0) > (best.last_ms || 0) ? i : best), list[0]);
      const trading = (i) => (i.last_ms || 0) >= (freshest.last_ms || 0) - 5 * 60_000;  // not in a gap of its data
      const preferred = list.find((i) => trading(i) && (desk.opportunities || []).some((o) => o.symbol === i.symbol && o.venues[0] === i.venue)) || freshest;
      desk.instrument = preferred.venue + "|" + preferred.symbol;
    }
    if (desk.instrument) select.value = desk.instrument;
    loadPrices();
  }
  $("instrument").addEventListener("change", (e) => { desk.instrument = e.target.value; loadPrices(); });
  function selectInstrument(venue, symbol) {
    const key = venue + "|" + symbol;
    if (![...$("instrument").options].some((o) => o.value === key)) return;
    desk.instrument = key;
    $("instrument").value = key;
    loadPrices();
  }
  async function loadPrices() {
    if (!desk.instrument || !charts.price) return;
    const [venue, symbol] = desk.instrument.split("|");
    const data = await api("/dashboard/prices/?venue=" + encodeURIComponent(venue) + "&symbol=" + encodeURIComponent(symbol));
    if (desk.instrument !== venue + "|" + symbol) return;
    desk.prices = data;
    $("price-what").textContent = data.what ? data.what + " · last 2 h of market time" + (data.gap ? " · " + data.gap : "") : "";
    empty("price-empty", data.empty ? "<b>No prices yet:</b> " + esc(data.empty) + "." : null);
    const precision = Math.min(8, Math.max(2, ...data.series.slice(-50).map((p) => (p.value.split(".")[1] || "").length)));
    desk.pricePrecision = precision;
    charts.priceSeries.applyOptions({ priceFormat: { type: "price", precision, minMove: Math.pow(10, -precision) } });
    charts.priceSeries.setData(data.series.map((p) => ({ time: p.time, value: Number(p.value) })));
    const times = data.series.map((p) => p.time);
    charts.priceSeries.setMarkers(data.markers.map((m) => marker(m, times)).filter(Boolean).sort((a, b) => a.time - b.time));
    if (!desk.priceFitted && data.series.length) { charts.price.timeScale().fitContent(); desk.priceFitted = true; }
  }
  function marker(m, times) {  // on the nearest price point at or before the event
    if (!times.length) return null;
    let lo = 0, hi = times.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (times[mid] <= m.time) lo = mid; else hi = mid - 1; }
    const up = m.side === "BUY" || m.side === "CALL";
    if (m.kind === "exit") {
      return { time: times[lo], position: up ? "aboveBar" : "belowBar", shape: "circle", color: Number(m.pnl) > 0 ? "#3fb950" : Number(m.pnl) < 0 ? "#f85149" : "#8c98a4", text: m.text };
    }
    return { time: times[lo], position: up ? "belowBar" : "aboveBar", shape: up ? "arrowUp" : "arrowDown", color: up ? "#3fb950" : "#f85149", text: m.text };
  }

  // Risk, feeds, scans ----------------------------------------------------------------
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
      const name = document.createElement("span"), value = document.createElement("span");
      name.textContent = label;
      value.textContent = Number(check.used).toFixed(2).replace(/\.00$/, "") + " / " + Number(check.limit).toFixed(2).replace(/\.00$/, "");
      text.append(name, value);
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
    desk.feeds = page.results;
    fill($("feeds"), page.results, (tr, f) => {
      tr.append(cell(f.feed), cell(f.venue), cell(f.state, "state-" + f.state), cell(f.state === "ok" ? f.detail : f.last_error || f.detail));
    });
    badge();
    emptyStates();
  }
  async function loadScans() {
    const page = await api("/api/scans/");
    desk.scans = page.results;
    const latest = {};
    for (const run of page.results) if (!latest[run.kind]) latest[run.kind] = run;
    fill($("scans"), Object.values(latest), (tr, s) => {
      const skipped = Object.entries(s.skipped || {}).sort((a, b) => b[1] - a[1])[0];
      tr.append(cell(s.kind), cell(marketTime(s.market_ts)), cell(Number(s.duration_ms).toFixed(1) + " ms", "num"),
        cell(s.opportunities_found, "num"), cell(s.opportunities_kept, "num"), cell(skipped ? skipped[0].replace(/_/g, " ") + " × " + skipped[1] : null));
    });
    emptyStates();
  }

  function emptyStates() {
    const feed = feedProblem(), mode = modeProblem();
    const has = (name) => desk[name] && desk[name].length;
    let opp = null;
    if (!has("opportunities")) {
      if (feed) opp = "<b>No market data.</b> " + feed;
      else if (!desk.scans.length) opp = "<b>No data yet:</b> waiting for the first scan (scans run every 5-10 s once the feed answers).";
      else opp = "<b>Nothing above the thresholds yet</b> in " + desk.scans.length + " recent scans. The Scans panel says what was skipped and why; " +
        "thresholds are in admin (Arbitrage, Forex, Binary thresholds).";
    }
    empty("opportunities-empty", opp);
    let pos = null;
    if (desk.positions && !desk.positions.length) {
      pos = feed ? "<b>No market data.</b> " + feed : mode || "<b>No open position.</b> Forex and binary trades show here, their unrealized P&amp;L moving, until they close.";
    }
    empty("positions-empty", pos);
    let trades = null;
    if (desk.trades && !desk.trades.length) trades = mode || (feed ? "<b>No market data.</b> " + feed : "<b>No paper trade yet:</b> auto-execute is on; a trade appears when an opportunity passes the agent, the risk manager and the governor.");
    empty("trades-empty", trades);
    const curve = desk.portfolio && desk.portfolio.equity_curve.length;
    empty("equity-empty", desk.portfolio && !curve ? "<b>No equity points yet:</b> the monitor records one a minute of market time" + (feed ? "; " + feed : ".") : null);
    empty("feeds-empty", !desk.feeds.length ? (desk.state && desk.state.source.kind === "none" ? feedProblem() : "<b>No feed status yet:</b> the scan worker reports within 5 s of starting. Is the worker running (see /api/health/)?") : null);
    empty("scans-empty", !desk.scans.length ? "<b>No scan yet.</b> " + (feed || "Scans start once the worker and beat run.") : null);
  }

  // Refreshing ---------------------------------------------------------------------
  const loaders = { controls: loadControls, state: loadState, opportunities: loadOpportunities, positions: loadPositions, trades: loadTrades,
    portfolio: loadPortfolio, risk: loadRisk, feeds: loadFeeds, scans: loadScans, prices: loadPrices, pauses: loadPauses };
  const affects = { opportunity: ["opportunities", "scans"], decision: ["opportunities", "risk"],
    trade: ["trades", "portfolio", "risk", "opportunities", "state", "prices", "positions"], position: ["positions", "portfolio", "prices", "trades", "state"],
    stats: ["positions"], feed: ["feeds", "state"], controls: ["controls"] };
  const pending = new Set();
  let timer = null;
  function refresh(names) {
    names.forEach((name) => pending.add(name));
    if (timer) return;
    timer = setTimeout(async () => {
      const due = [...pending];
      pending.clear();
      timer = null;
      // a load that failed on the way or on the server (busy, restarting) is tried again in 2 s, not at the next event or tick
      const again = (name, err) => { console.warn(name, err); if (!(err.status >= 400 && err.status < 500)) setTimeout(() => refresh([name]), 2000); };
      await Promise.all(due.map((name) => loaders[name]().catch((err) => again(name, err))));
      if (desk.selected && due.includes("opportunities")) showTrail(desk.selected).catch(() => {});
    }, 250);
  }
  desk.refresh = refresh;
  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(scheme + "://" + location.host + "/ws/stream/");
    socket.onopen = () => { desk.stream = "connected"; delay = 1000; badge(); refresh(Object.keys(loaders)); };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "stats") onStats(event.data || event);
      if (affects[event.type]) refresh(affects[event.type]);
    };
    socket.onclose = () => {
      desk.stream = "disconnected";
      badge();
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  makeCharts();
  refresh(Object.keys(loaders));
  setInterval(tickClock, 1000);
  setInterval(() => refresh(["state", "feeds", "scans", "prices", "risk", "pauses"]), 10000);
  setInterval(() => refresh(["portfolio"]), 30000);
  connect(1000);
})();
