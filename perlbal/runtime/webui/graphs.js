// Live graphs of the last 15 minutes, drawn as inline SVG from /timeline.
// The server keeps one sample a second (perlbal/runtime/timeline.py); this
// page fetches the whole ring once, then only what is newer (?since=T), and
// redraws.  No library: each chart is an <svg> with one <path> per series.
// Every path carries what it drew, for tests and for the curious:
// data-series, data-count (points), data-sum, data-last and data-values
// ("t:v" pairs, the gaps left out).  <body data-samples> counts the samples held.
"use strict";

(function () {
  var WINDOW = 900;  // seconds on the x axis: the server's ring
  var NS = "http://www.w3.org/2000/svg";
  var W = 232, H = 86, LEFT = 34, TOP = 8, BOTTOM = 14;
  var SERIES = {
    requests: ["requests/s", "#1f77b4"], p50: ["p50", "#2ca02c"], p99: ["p99", "#d62728"],
    "5xx": ["5xx/s", "#d62728"], normal: ["normal", "#1f77b4"], highpri: ["high", "#ff7f0e"],
    lowpri: ["low", "#9467bd"], in_use: ["in use", "#8c564b"], idle: ["idle", "#17becf"]
  };
  var STATES = { up: "#2ca02c", down: "#d62728", ejected: "#ff7f0e", draining: "#bcbd22" };
  var params = new URLSearchParams(window.location.search);
  var interval = Math.max(0.2, parseFloat(params.get("interval") || "1"));
  var samples = [];
  var lastT = 0;

  function node(tag, attrs, text) {
    var n = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function html(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function stateColor(state) { return STATES[state] || "#7f7f7f"; }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var top = [1, 2, 5, 10].map(function (m) { return m * step; })
      .filter(function (v) { return v >= value; })[0];
    return top;
  }

  // the x axis: the last 15 minutes, or since the first sample when the server is
  // younger (at least a minute), so a fresh server's graphs are not a sliver
  function span(now) {
    return samples.length ? Math.min(WINDOW, Math.max(60, now - samples[0].t + 1)) : WINDOW;
  }

  function ago(seconds) {
    return "-" + (seconds >= 120 ? Math.round(seconds / 60) + "m" : seconds + "s");
  }

  // series: [{key, values: [[t, v or null], ...]}]; band: [[t, state], ...] or null
  function chart(title, series, now, band) {
    var plotW = W - LEFT - 4, plotH = H - TOP - BOTTOM;
    var width = span(now), start = now - width;
    var max = 0;
    series.forEach(function (s) {
      s.values.forEach(function (p) { if (p[1] !== null && p[1] > max) max = p[1]; });
    });
    max = niceMax(max);
    var x = function (t) { return LEFT + Math.max(0, t - start) / width * plotW; };
    var y = function (v) { return TOP + plotH - v / max * plotH; };
    var svg = node("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H,
      "class": "chart", "data-chart": title, "data-max": max });
    svg.appendChild(node("rect", { x: LEFT, y: TOP, width: plotW, height: plotH, "class": "plot" }));
    [0, 0.5, 1].forEach(function (f) {
      var v = max * f, label = v >= 100 || v === 0 ? String(Math.round(v)) : v.toPrecision(2);
      svg.appendChild(node("line", { x1: LEFT, x2: LEFT + plotW, y1: y(v), y2: y(v), "class": "grid" }));
      svg.appendChild(node("text", { x: LEFT - 3, y: y(v) + 3, "class": "tick" }, label));
    });
    svg.appendChild(node("text", { x: LEFT, y: H - 2, "class": "tick start" }, ago(width)));
    svg.appendChild(node("text", { x: LEFT + plotW, y: H - 2, "class": "tick end" }, "now"));
    if (band) {
      band.forEach(function (p, i) {
        var next = i + 1 < band.length ? band[i + 1][0] : p[0] + 1;
        svg.appendChild(node("rect", { x: x(p[0] - 1), y: TOP + plotH - 3, height: 3,
          width: Math.max(0.5, x(next - 1) - x(p[0] - 1)), fill: stateColor(p[1]),
          "class": "state", "data-state": p[1] }));
      });
    }
    var legend = [];
    series.forEach(function (s) {
      var d = "", pen = "M", sum = 0, count = 0, last = null, pairs = [];
      s.values.forEach(function (p) {
        if (p[1] === null || p[0] <= start) { pen = "M"; return; }
        d += pen + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
        pen = "L";
        sum += p[1]; count += 1; last = p[1]; pairs.push(p[0] + ":" + p[1]);
      });
      var meta = SERIES[s.key];
      var path = node("path", { d: d || "M0 0", stroke: meta[1], "class": "line",
        "data-series": s.key, "data-count": count, "data-sum": Math.round(sum * 1000) / 1000,
        "data-last": last === null ? "" : last, "data-values": pairs.join(" ") });
      svg.appendChild(path);
      legend.push([meta, last]);
    });
    var box = html("figure", "chart-box");
    var caption = html("figcaption", null, title + " ");
    legend.forEach(function (l) {
      var span = html("span", "key", l[0][0] + " " + (l[1] === null ? "\u2013" : l[1]));
      span.style.color = l[0][1];
      caption.appendChild(span);
    });
    box.appendChild(caption);
    box.appendChild(svg);
    return box;
  }

  // the points of one field of one service/node entry: [[t, value or null], ...]
  function pick(kind, name, get) {
    return samples.map(function (s) {
      var e = s[kind][name];
      return [s.t, e ? get(e) : null];
    });
  }

  function field(key) { return function (e) { return e[key] === undefined ? null : e[key]; }; }

  function section(kind, name, now) {
    var latest = samples.length ? samples[samples.length - 1][kind][name] : null;
    var box = html("div", "graph-group");
    box.dataset.graph = kind;
    box.dataset.name = name;
    var head = html("h3", null, name);
    if (kind === "nodes" && latest) {
      var badge = html("span", "state-badge", latest.state);
      badge.style.background = stateColor(latest.state);
      head.appendChild(badge);
      box.dataset.state = latest.state;
    }
    box.appendChild(head);
    var band = kind === "nodes" ? pick(kind, name, field("state"))
      .filter(function (p) { return p[1] !== null; }) : null;
    var s = function (key) { return { key: key, values: pick(kind, name, field(key)) }; };
    box.appendChild(chart("requests/s", [s("requests")], now, band));
    box.appendChild(chart("latency ms", [s("p50"), s("p99")], now, band));
    box.appendChild(chart("5xx/s", [s("5xx")], now, band));
    if (kind === "services" && latest && latest.queue) {
      box.appendChild(chart("queue depth", ["normal", "highpri", "lowpri"].map(function (q, i) {
        return { key: q, values: pick(kind, name, function (e) { return e.queue ? e.queue[i] : null; }) };
      }), now, null));
    }
    if (!latest || latest.in_use !== undefined) {
      box.appendChild(chart("backend connections", [s("in_use"), s("idle")], now, band));
    }
    return box;
  }

  function draw() {
    var root = document.getElementById("graphs");
    if (!root) return;
    var now = samples.length ? samples[samples.length - 1].t : Math.floor(Date.now() / 1000);
    var names = { services: {}, nodes: {} };
    samples.forEach(function (s) {
      Object.keys(s.services).forEach(function (n) { names.services[n] = true; });
      Object.keys(s.nodes).forEach(function (n) { names.nodes[n] = true; });
    });
    var fresh = document.createDocumentFragment();
    ["services", "nodes"].forEach(function (kind) {
      var title = html("h3", "graph-kind", kind === "services" ? "Per service" : "Per pool node");
      fresh.appendChild(title);
      var keys = Object.keys(names[kind]).sort();
      if (!keys.length) fresh.appendChild(html("p", "meta", "(none yet)"));
      keys.forEach(function (name) { fresh.appendChild(section(kind, name, now)); });
    });
    root.replaceChildren(fresh);
    document.body.dataset.samples = String(samples.length);
    document.body.dataset.lastSample = String(lastT);
  }

  function take(data) {
    data.samples.forEach(function (s) {
      if (s.t > lastT) { samples.push(s); lastT = s.t; }
    });
    var cut = lastT - WINDOW;
    while (samples.length && (samples[0].t <= cut || samples.length > WINDOW)) samples.shift();
  }

  function poll() {
    fetch("/timeline" + (lastT ? "?since=" + lastT : ""), { cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      }).then(function (data) {
        take(data);
        draw();
      }).catch(function (err) {
        var status = document.getElementById("graph-status");
        if (status) status.textContent = "graphs not updated: " + err.message + " (retrying)";
      }).finally(function () {
        window.setTimeout(poll, interval * 1000);
      });
  }

  poll();
})();
