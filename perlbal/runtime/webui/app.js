// The management page: render /json into the tables, then poll it.
// No full reload ever happens: the tables are rebuilt in place, and
// <body data-refreshes> counts successful polls (the browser test reads it).
"use strict";

(function () {
  var params = new URLSearchParams(window.location.search);
  var interval = Math.max(0.2, parseFloat(params.get("interval") || "2"));
  // one id per page load: if the page were reloaded it would change
  window.perlbalPageLoadId = Math.random().toString(36).slice(2);

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (cell) {
      var td = typeof cell === "object" && cell !== null ? cell : el("td", cell);
      tr.appendChild(td);
    });
    return tr;
  }

  // node states, as the graphs draw them (graphs.js)
  var STATE_COLORS = { up: "#2ca02c", down: "#d62728", ejected: "#ff7f0e", draining: "#bcbd22" };

  function num(value) { return el("td", value, "num"); }

  function duration(seconds) {
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
  }

  function renderServices(services) {
    var body = document.querySelector("#services tbody");
    body.replaceChildren();
    Object.keys(services).sort().forEach(function (name) {
      var s = services[name], q = s.queues;
      var proxy = s.pending_backends !== undefined;
      var tr = row([name, s.role || "", s.listen || "\u2014",
        el("td", s.enabled ? "ENABLED" : "DISABLED", s.enabled ? "enabled" : "disabled"),
        s.pool || "", (s.plugins || []).join(", "),
        num(q ? [q.normal, q.highpri, q.lowpri].map(function (x) { return x.count; }).join(" / ") : ""),
        num(q ? Math.max(q.normal.age, q.highpri.age, q.lowpri.age) + "s" : ""),
        num(proxy ? s.pending_backends : ""), num(proxy ? s.idle_backends : "")]);
      tr.dataset.service = name;
      body.appendChild(tr);
    });
  }

  function renderPools(pools) {
    var box = document.getElementById("pools");
    box.replaceChildren();
    Object.keys(pools).sort().forEach(function (name) {
      var p = pools[name], div = el("div", null, "pool");
      div.dataset.pool = name;
      div.appendChild(el("h3", name));
      div.appendChild(el("p", "balance " + p.balance_method + " \u00b7 used by " + p.services +
        " service(s)" + (p.nodefile ? " \u00b7 nodefile " + p.nodefile : ""), "meta"));
      var table = el("table");
      table.appendChild(row([el("th", "node"), el("th", "requests"), el("th", "open backends"),
        el("th", "last response codes"), el("th", "state")]));
      p.nodes.forEach(function (n) {
        var state = el("td", n.state || "up", "state");
        state.style.background = STATE_COLORS[n.state || "up"] || "#7f7f7f";
        var tr = row([n.ipport, num(n.requests), num(n.open_backends), n.responsecodes || "", state]);
        tr.dataset.node = n.ipport;
        tr.dataset.state = n.state || "up";
        table.appendChild(tr);
      });
      if (!p.nodes.length) table.appendChild(row([el("td", "(no nodes)", "disabled"), "", "", "", ""]));
      div.appendChild(table);
      box.appendChild(div);
    });
  }

  function renderConnections(conns) {
    var body = document.querySelector("#connections tbody");
    body.replaceChildren();
    body.appendChild(row(["client connections", num(conns.clients)]));
    Object.keys(conns.by_class).sort().forEach(function (cls) {
      body.appendChild(row([cls, num(conns.by_class[cls])]));
    });
  }

  function render(data) {
    document.getElementById("version").textContent = data.version;
    document.getElementById("pid").textContent = data.pid;
    document.getElementById("uptime").textContent = duration(data.uptime);
    document.getElementById("requests").textContent = data.requests;
    document.getElementById("clients").textContent = data.connections.clients;
    document.getElementById("workers").textContent = data.worker && data.worker.supervised
      ? " \u00b7 " + data.worker.count + " worker" + (data.worker.count > 1 ? "s" : "") +
        " under a supervisor (numbers of all)"
      : "";
    renderServices(data.services);
    renderPools(data.pools);
    renderConnections(data.connections);
  }

  function setStatus(text, stale) {
    var status = document.getElementById("status");
    status.textContent = text;
    status.className = stale ? "status stale" : "status";
  }

  function poll() {
    fetch("/json", { cache: "no-store" }).then(function (resp) {
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      return resp.json();
    }).then(function (data) {
      render(data);
      var count = parseInt(document.body.dataset.refreshes, 10) + 1;
      document.body.dataset.refreshes = String(count);
      setStatus("updated " + new Date().toLocaleTimeString() + " (" + count + " refreshes)", false);
    }).catch(function (err) {
      setStatus("not updated: " + err.message + " (retrying)", true);
    }).finally(function () {
      window.setTimeout(poll, interval * 1000);
    });
  }

  document.getElementById("interval").textContent = interval;
  try {
    render(JSON.parse(document.getElementById("initial-state").textContent));
    setStatus("as served; refreshing every " + interval + "s", false);
  } catch (err) {
    setStatus("initial state unreadable: " + err.message, true);
  }
  window.setTimeout(poll, interval * 1000);
})();
