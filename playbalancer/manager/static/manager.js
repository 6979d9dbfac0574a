// playbalancer manager: live updates, charts and controls through the JSON
// API.  Values reach the page only through textContent: never as HTML.
"use strict";

(function () {
  var HISTORY = 180;       // points per chart: the server's 15 minutes of 5 s samples
  var PERIOD = 1500;       // ms between updates of the table
  var HISTORY_PERIOD = 5000;  // ms between updates of the charts
  var live = document.getElementById("live");

  function formatBytes(n) {
    var units = ["B", "KiB", "MiB", "GiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
  }

  function latency(m) {
    if (m.latency_mean_ms === null) { return "-"; }
    return m.latency_mean_ms.toFixed(1) + " / " + m.latency_p95_ms.toFixed(1) + " ms";
  }

  function eventsText(m) {
    return m.events.slice(0, 3).map(function (e) {
      return e.text + ", " + new Date(e.at * 1000).toISOString().substr(11, 8);
    }).join(" \u00b7 ");
  }

  function checkText(m) {
    if (!m.check) { return "-"; }
    return (m.check.ok ? "" : "failing: ") + m.check.detail + " \u00b7 " +
      m.check.duration_ms.toFixed(0) + " ms";
  }

  function setField(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (!cell) { return; }
    var target = cell.querySelector(".badge") || cell;
    if (target.textContent !== text) { target.textContent = text; }
  }

  function draw(canvas, series) {
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    [["rate", "#2b7a3d"], ["p95", "#c26a00"]].forEach(function (spec) {
      var values = series[spec[0]];
      if (values.length < 2) { return; }
      var max = Math.max.apply(null, values.concat([1e-9]));
      ctx.strokeStyle = spec[1];
      ctx.beginPath();
      values.forEach(function (v, i) {
        var x = w - (values.length - 1 - i) * (w / (HISTORY - 1));
        var y = h - 2 - (v / max) * (h - 4);
        if (i === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
      });
      ctx.stroke();
    });
    canvas.title = "requests/s (green): " + (series.rate[series.rate.length - 1] || 0).toFixed(1) +
      ", p95 latency ms (orange): " + (series.p95[series.p95.length - 1] || 0).toFixed(1);
  }

  function update(status) {
    var known = 0, shown = document.querySelectorAll("tr.member").length;
    Object.keys(status.balancers).forEach(function (bname) {
      var section = document.querySelector('section[data-balancer="' + CSS.escape(bname) + '"]');
      var members = status.balancers[bname].members;
      Object.keys(members).forEach(function (mname) {
        known++;
        var m = members[mname];
        var row = section && section.querySelector('tr[data-member="' + CSS.escape(mname) + '"]');
        if (!row) { return; }
        row.className = "member state-" + m.state;
        setField(row, "state_text", m.state_text);
        setField(row, "events", eventsText(m));
        setField(row, "check", checkText(m));
        setField(row, "admin", m.admin);
        setField(row, "standby", m.standby ? "yes" : "no");
        setField(row, "weight", String(m.weight));
        setField(row, "active", String(m.active));
        setField(row, "requests", String(m.requests));
        setField(row, "failures", String(m.failures));
        setField(row, "latency", latency(m));
        setField(row, "bytes", formatBytes(m.bytes_in) + " / " + formatBytes(m.bytes_out));
      });
    });
    if (known !== shown) { window.location.reload(); }   // members added or removed
  }

  function refresh() {
    fetch("api/status", {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (status) {
        update(status);
        live.textContent = "live · updated " + new Date().toLocaleTimeString();
        live.className = "muted on";
      })
      .catch(function (e) {
        live.textContent = "live updates failing: " + e.message;
        live.className = "muted error";
      });
  }

  // The charts: the manager keeps the last 15 minutes (GET api/history),
  // so they are full as soon as the page is open.
  function drawHistory(history) {
    Object.keys(history.balancers).forEach(function (bname) {
      var section = document.querySelector('section[data-balancer="' + CSS.escape(bname) + '"]');
      var members = history.balancers[bname].members;
      Object.keys(members).forEach(function (mname) {
        var row = section && section.querySelector('tr[data-member="' + CSS.escape(mname) + '"]');
        var canvas = row && row.querySelector("canvas.chart");
        if (!canvas) { return; }
        var series = members[mname];
        draw(canvas, {
          rate: series.requests,
          p95: series.p95.map(function (v) { return v === null ? 0 : v; })
        });
      });
    });
  }

  function refreshHistory() {
    fetch("api/history", {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(drawHistory)
      .catch(function () { /* the table's updates say when the manager is unreachable */ });
  }

  function send(method, path, body) {
    var options = {method: method, credentials: "same-origin", headers: {}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok && answer.needs_force && window.confirm(answer.error + "\n\nDo it anyway?")) {
          // The last usable member: asked, and confirmed.
          return method === "DELETE" ? send(method, path + "?force=true") :
            send(method, path, Object.assign({}, body, {force: true}));
        }
        if (!r.ok) { throw new Error(answer.error || ("HTTP " + r.status)); }
        return answer;
      });
    });
  }

  var CHANGES = {
    "enable": {admin: "enabled"}, "drain": {admin: "drain"}, "disable": {admin: "disabled"},
    "standby-on": {standby: true}, "standby-off": {standby: false}, "reset": {reset: true}
  };

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var data = new FormData(form);
    var action = form.classList.contains("add") ? "add" :
      (event.submitter ? event.submitter.value : data.get("action"));
    var path = "api/balancers/" + encodeURIComponent(data.get("balancer")) +
      "/members/" + encodeURIComponent(data.get("member"));
    var done;
    if (action === "add") {
      done = send("PUT", path, {url: data.get("url"), standby: data.get("standby") === "on",
                                weight: parseInt(data.get("weight") || "1", 10)});
    } else if (action === "remove") {
      if (!window.confirm("Remove " + data.get("member") + "?")) { event.preventDefault(); return; }
      done = send("DELETE", path);
    } else if (action === "weight") {
      done = send("POST", path, {weight: parseInt(data.get("weight"), 10)});
    } else if (CHANGES[action]) {
      done = send("POST", path, CHANGES[action]);
    } else {
      return;  // let the browser post the form
    }
    event.preventDefault();
    done.then(function () {
      if (action === "add" || action === "remove" || action.indexOf("standby") === 0) {
        window.location.reload();
      } else {
        refresh();
      }
    }).catch(function (e) { window.alert(e.message); });
  });

  refresh();
  refreshHistory();
  window.setInterval(refresh, PERIOD);
  window.setInterval(refreshHistory, HISTORY_PERIOD);
})();
