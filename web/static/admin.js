// The admin queue view: polls /admin/queues.json every 2 s, updates the figures in place
// and draws two small SVG charts. No framework; the page works (without updates) when
// this does not run.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var WINDOW_MS = 5 * 60 * 1000;
  var SVG = "http://www.w3.org/2000/svg";
  var history = [];
  var last = null;

  function ready(s, kind) {
    return s.queues.filter(function (q) { return q.kind === kind; }).reduce(function (a, q) { return a + q.ready; }, 0);
  }
  function consumers(s, kind) {
    return s.queues.filter(function (q) { return q.kind === kind; }).reduce(function (a, q) { return a + q.consumers; }, 0);
  }
  function set(id, value) {
    var el = document.getElementById(id);
    if (el && el.textContent !== String(value)) { el.textContent = value; }
  }
  function ms(v) {
    if (v === null || v === undefined) { return "—"; }
    return v >= 1000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms";
  }
  function clock(t) { return new Date(t).toISOString().slice(11, 19) + " UTC"; }
  function signed(v) { return (v > 0 ? "+" : v < 0 ? "−" : "±") + Math.abs(v).toFixed(1) + "/s"; }

  function el(name, attrs, text) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function clear(svg) {
    Array.prototype.slice.call(svg.childNodes).forEach(function (n) {
      if (n.nodeName.toLowerCase() !== "desc") { svg.removeChild(n); }
    });
  }
  // Draws in the SVG's own pixels, so text and strokes are never stretched.
  function size(svg) {
    var w = Math.max(200, Math.round(svg.getBoundingClientRect().width));
    var h = Math.max(80, Math.round(svg.getBoundingClientRect().height));
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    return { W: w, H: h };
  }
  function niceMax(v) { return Math.max(5, Math.ceil(v * 1.2)); }

  function drawDepth(now) {
    var svg = document.getElementById("depth-chart");
    if (!svg) { return; }
    clear(svg);
    var box = size(svg), W = box.W, top = 12, bottom = box.H - 12;
    var max = niceMax(history.reduce(function (m, p) { return Math.max(m, p.i, p.b, p.d, p.x); }, 0));
    var x = function (t) { return W - ((now - t) / WINDOW_MS) * W; };
    var y = function (v) { return bottom - (v / max) * (bottom - top); };
    [0, 0.5, 1].forEach(function (f) {
      svg.appendChild(el("line", { x1: 0, x2: W, y1: y(max * f), y2: y(max * f), "class": "grid" }));
    });
    svg.appendChild(el("text", { x: 4, y: top + 10, "class": "axis" }, String(max)));
    svg.appendChild(el("text", { x: 4, y: bottom - 4, "class": "axis" }, "0"));
    [["i", "s-interactive"], ["b", "s-bulk"], ["d", "s-delay"], ["x", "s-dead"]].forEach(function (s) {
      if (history.length === 0) { return; }
      var pts = history.map(function (p) { return x(p.t).toFixed(1) + "," + y(p[s[0]]).toFixed(1); });
      if (history.length === 1) { pts.unshift("0," + y(history[0][s[0]]).toFixed(1)); }
      svg.appendChild(el("polyline", { points: pts.join(" "), "class": "series " + s[1] }));
    });
  }

  function drawRates(s) {
    var svg = document.getElementById("rates-chart");
    if (!svg) { return; }
    clear(svg);
    var a = s.activity, n = a.created.length;
    if (n === 0) { return; }
    var box = size(svg), W = box.W, top = 10, bottom = box.H - 10, bw = W / n;
    var max = niceMax(Math.max.apply(null, a.created.concat(a.finished)));
    var y = function (v) { return bottom - (v / max) * (bottom - top); };
    svg.appendChild(el("line", { x1: 0, x2: W, y1: bottom, y2: bottom, "class": "grid" }));
    a.created.forEach(function (v, i) {
      svg.appendChild(el("rect", { x: (i * bw + 1).toFixed(1), y: y(v).toFixed(1), width: (bw - 2).toFixed(1), height: (bottom - y(v)).toFixed(1), "class": "bar s-publish" }));
    });
    var pts = a.finished.map(function (v, i) { return ((i + 0.5) * bw).toFixed(1) + "," + y(v).toFixed(1); });
    svg.appendChild(el("polyline", { points: pts.join(" "), "class": "series s-ack" }));
    svg.appendChild(el("text", { x: 4, y: top + 10, "class": "axis" }, max + " per " + s.bucketSecs + " s"));
  }

  function pacingRows(s) {
    var body = document.getElementById("pacing-body");
    if (!body) { return; }
    var html = s.pacing.map(function (p) {
      var app = p.appWindows.map(function (w) { return w.permits + " of " + w.capacity + " (" + w.limit + ")"; }).join("; ") || "—";
      var paused = p.paused.map(function (x) { return "connection " + x.connection + " until " + clock(x.untilMs); }).join("; ") || "no";
      return [p.name, app, p.perConnection.join("; ") || "—", p.busyConnections, p.exhaustedConnections, paused];
    });
    var rows = body.rows;
    // Rebuild only when something changed, so focus and selection survive.
    var text = JSON.stringify(html);
    if (body.getAttribute("data-last") === text) { return; }
    body.setAttribute("data-last", text);
    while (rows.length) { body.deleteRow(0); }
    html.forEach(function (cells) {
      var tr = body.insertRow();
      cells.forEach(function (c) { tr.insertCell().textContent = c; });
    });
  }

  function apply(s) {
    var point = { t: s.atMs, i: ready(s, "interactive"), b: ready(s, "bulk"), d: ready(s, "delay"), x: ready(s, "dead") };
    if (s.brokerError) {
      set("live-state", "RabbitMQ did not answer");
    } else {
      if (last) {
        var dt = (point.t - last.t) / 1000;
        if (dt > 0) {
          set("r-interactive", signed((point.i - last.i) / dt));
          set("r-bulk", signed((point.b - last.b) / dt));
        }
      }
      history.push(point);
      last = point;
      set("q-interactive", point.i);
      set("q-bulk", point.b);
      set("q-delay", point.d);
      set("q-dead", point.x);
      set("c-interactive", consumers(s, "interactive"));
      set("c-bulk", consumers(s, "bulk"));
      set("live-state", "live");
    }
    while (history.length && history[0].t < s.atMs - WINDOW_MS) { history.shift(); }
    set("updated", clock(s.atMs));
    set("rate-publish", s.rates.publish.toFixed(1) + "/s");
    set("rate-deliver", s.rates.deliver.toFixed(1) + "/s");
    set("rate-ack", s.rates.ack.toFixed(1) + "/s");
    set("p50", ms(s.activity.p50Ms));
    set("p99", ms(s.activity.p99Ms));
    set("w50", ms(s.activity.queueWaitP50Ms));
    set("w99", ms(s.activity.queueWaitP99Ms));
    pacingRows(s);
    drawDepth(s.atMs);
    drawRates(s);
  }

  function poll() {
    fetch("/admin/queues.json", { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(apply)
      .catch(function (e) { set("live-state", "not updating (" + e.message + "); retrying"); })
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  var initial = document.getElementById("initial-snapshot");
  try {
    apply(JSON.parse(initial.textContent));
  } catch (e) {
    set("live-state", "loading");
  }
  setTimeout(poll, POLL_MS);
})();
