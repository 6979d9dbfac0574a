// playbalancer manager: live state, charts, the timeline, the rolling
// restart panel and the controls, through the JSON API.  Values reach the
// page only through textContent, never as HTML.  Without this script the
// page is complete as served, and its forms post to "actions".
"use strict";

(function () {
  var PERIOD = 1500;          // ms between updates of the state
  var HISTORY_PERIOD = 5000;  // ms between updates of the charts
  var ROLLING_PERIOD = 1000;  // ms between updates of a rolling restart
  var SIGNS = {serving: "\u2714", standby: "\u25d0", draining: "\u2198", disabled: "\u2298",
               down: "\u2716", idle: "\u2013", removing: "\u2296"};
  var STATES = ["serving", "standby", "draining", "disabled", "down", "idle", "removing"];
  var live = document.getElementById("live");
  var lastStatus = null;

  // Times: the viewer's local time, with its offset from UTC.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function offset(date) {
    var minutes = -date.getTimezoneOffset();
    var sign = minutes < 0 ? "-" : "+";
    minutes = Math.abs(minutes);
    return sign + pad(Math.floor(minutes / 60)) + ":" + pad(minutes % 60);
  }
  function localTime(seconds) {
    var date = new Date(seconds * 1000);
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) +
      " " + offset(date);
  }
  function timeElement(seconds) {
    var element = document.createElement("time");
    element.dateTime = new Date(seconds * 1000).toISOString();
    element.textContent = localTime(seconds);
    return element;
  }
  function localizeTimes(scope) {
    Array.prototype.forEach.call(scope.querySelectorAll("time[datetime]"), function (t) {
      var at = Date.parse(t.getAttribute("datetime"));
      if (!isNaN(at)) { t.textContent = localTime(at / 1000); }
    });
  }

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
  function checkText(m) {
    if (!m.check) { return "-"; }
    return (m.check.ok ? "" : "failing: ") + m.check.detail + " \u00b7 " +
      m.check.duration_ms.toFixed(0) + " ms";
  }
  function setText(element, text) {
    if (element && element.textContent !== text) { element.textContent = text; }
  }
  function field(row, name) { return row.querySelector('[data-field="' + name + '"]'); }
  function byName(selector, name) {
    return document.querySelector(selector + '[data-balancer="' + CSS.escape(name) + '"]');
  }

  // Charts: requests/s (solid) and p95 in ms (dashed), each scaled to its
  // own maximum, which is written on the left; 15 minutes up to now.
  function draw(canvas, series, span) {
    var ctx = canvas.getContext("2d");
    var style = window.getComputedStyle(document.documentElement);
    var colours = {requests: style.getPropertyValue("--chart-requests").trim() || "#1e7a3a",
                   p95: style.getPropertyValue("--chart-p95").trim() || "#a35200",
                   grid: style.getPropertyValue("--chart-grid").trim() || "#dde1e7",
                   text: style.getPropertyValue("--muted").trim() || "#4f5a6b"};
    var w = canvas.width, h = canvas.height, top = 12, bottom = h - 2;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = colours.grid;
    ctx.setLineDash([]);
    ctx.beginPath(); ctx.moveTo(0, bottom + 0.5); ctx.lineTo(w, bottom + 0.5); ctx.stroke();
    var now = series.t.length ? series.t[series.t.length - 1] : 0;
    var labels = [];
    [["requests", [], "/s"], ["p95", [4, 3], " ms"]].forEach(function (spec) {
      var values = series[spec[0]] || [];
      var max = 0;
      values.forEach(function (v) { if (v !== null && v > max) { max = v; } });
      labels.push([spec[0], max, spec[2]]);
      if (values.length < 2 || max <= 0) { return; }
      ctx.strokeStyle = colours[spec[0]];
      ctx.setLineDash(spec[1]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      var started = false;
      values.forEach(function (v, i) {
        if (v === null) { started = false; return; }
        var x = w - ((now - series.t[i]) / span) * w;
        var y = bottom - (v / max) * (bottom - top);
        if (started) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); started = true; }
      });
      ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = colours.text;
    ctx.fillText(labels.map(function (l) {
      return "max " + (l[1] >= 100 ? l[1].toFixed(0) : l[1].toFixed(1)) + l[2];
    }).join(" \u00b7 "), 2, 10);
    canvas.title = "last 15 minutes: " + labels.map(function (l) {
      return l[0] + " up to " + l[1].toFixed(1) + l[2];
    }).join(", ");
  }

  function drawHistory(history) {
    Object.keys(history.balancers).forEach(function (bname) {
      var entry = history.balancers[bname];
      var tile = byName("article.tile", bname);
      var canvas = tile && tile.querySelector("canvas.chart");
      if (canvas) { draw(canvas, entry.series, history.span); }
      var section = byName("section.balancer", bname);
      Object.keys(entry.members).forEach(function (mname) {
        var row = section && section.querySelector('tr[data-member="' + CSS.escape(mname) + '"]');
        var chart = row && row.querySelector("canvas.chart");
        if (chart) { draw(chart, entry.members[mname], history.span); }
      });
    });
  }

  // State: members, the overview, the title, the timeline.
  function updateMember(row, m) {
    row.className = "member state-" + m.state;
    setText(field(row, "state_text"), (SIGNS[m.state] || "") + " " + m.state_text);
    var events = field(row, "events");
    if (events) {
      var key = m.events.slice(0, 3).map(function (e) { return e.at + e.text; }).join("|");
      if (events.dataset.key !== key) {
        events.dataset.key = key;
        events.textContent = "";
        m.events.slice(0, 3).forEach(function (e, i) {
          if (i) { events.appendChild(document.createTextNode(" \u00b7 ")); }
          events.appendChild(document.createTextNode(e.text + ", "));
          events.appendChild(timeElement(e.at));
        });
      }
    }
    setText(field(row, "check"), checkText(m));
    Array.prototype.forEach.call(row.querySelectorAll('[data-field="admin"] button'), function (b) {
      var value = {enable: "enabled", drain: "drain", disable: "disabled"}[b.value];
      b.setAttribute("aria-pressed", String(m.admin === value));
    });
    var standby = field(row, "standby");
    if (standby) {
      standby.setAttribute("aria-pressed", String(m.standby));
      standby.value = m.standby ? "standby-off" : "standby-on";
    }
    var weight = row.querySelector("input.weight");
    if (weight && document.activeElement !== weight) { weight.value = String(m.weight); }
    setText(field(row, "active"), String(m.active));
    setText(field(row, "requests"), String(m.requests));
    setText(field(row, "failures"), String(m.failures));
    setText(field(row, "latency"), latency(m));
    setText(field(row, "bytes"), formatBytes(m.bytes_in) + " / " + formatBytes(m.bytes_out));
    var remove = row.querySelector('button[value="remove"]');
    if (remove) { remove.dataset.inFlight = String(m.active); }
  }

  function updateOverview(overview) {
    var overall = document.getElementById("overall");
    if (overall) {
      setText(overall, overview.sign + " " + overview.text);
      overall.className = "overall state-" + overview.state;
    }
    var title = overview.sign + " " + overview.text + " \u00b7 playbalancer";
    if (document.title !== title) { document.title = title; }
    Object.keys(overview.balancers).forEach(function (bname) {
      var t = overview.balancers[bname];
      var tile = byName("article.tile", bname);
      if (!tile) { return; }
      tile.className = "tile state-" + t.state;
      var badge = tile.querySelector('[data-o="state"]');
      if (badge) { badge.className = "badge state-" + t.state; setText(badge, t.sign + " " + t.text); }
      setText(tile.querySelector('[data-o="requests"]'),
              t.requests_per_second === null ? "-" : t.requests_per_second.toFixed(1) + "/s");
      setText(tile.querySelector('[data-o="errors"]'),
              t.error_share === null ? "-" : (t.error_share * 100).toFixed(1) + "%");
      setText(tile.querySelector('[data-o="p95"]'), t.p95_ms === null ? "-" : t.p95_ms.toFixed(1) + " ms");
      setText(tile.querySelector('[data-o="members"]'), STATES.filter(function (s) {
        return t.members[s];
      }).map(function (s) { return t.members[s] + " " + s; }).join(" \u00b7 ") || "no members");
    });
  }

  function filterTimeline() {
    var select = document.getElementById("timeline-filter");
    var wanted = select ? select.value : "";
    Array.prototype.forEach.call(document.querySelectorAll("ol.timeline li"), function (li) {
      li.hidden = Boolean(wanted) && li.dataset.balancer !== wanted;
    });
  }

  function updateTimeline(events) {
    var section = document.getElementById("timeline");
    if (!section) { return; }
    var list = section.querySelector("ol.timeline");
    var key = events.map(function (e) { return e.at + e.balancer + e.member + e.text; }).join("|");
    if (list && list.dataset.key === key) { return; }
    if (!list) {
      list = document.createElement("ol");
      list.className = "timeline";
      list.setAttribute("aria-live", "polite");
      var empty = section.querySelector("p.muted");
      if (empty) { empty.remove(); }
      section.appendChild(list);
    }
    list.dataset.key = key;
    list.textContent = "";
    events.forEach(function (e) {
      var li = document.createElement("li");
      li.dataset.balancer = e.balancer;
      var who = document.createElement("strong");
      who.textContent = e.balancer + "/" + e.member;
      li.appendChild(timeElement(e.at));
      li.appendChild(who);
      li.appendChild(document.createTextNode(": " + e.text));
      list.appendChild(li);
    });
    filterTimeline();
  }

  function update(status) {
    lastStatus = status;
    var known = 0, shown = document.querySelectorAll("tr.member").length;
    Object.keys(status.balancers).forEach(function (bname) {
      var section = byName("section.balancer", bname);
      var members = status.balancers[bname].members;
      Object.keys(members).forEach(function (mname) {
        known++;
        var row = section && section.querySelector('tr[data-member="' + CSS.escape(mname) + '"]');
        if (row) { updateMember(row, members[mname]); }
      });
    });
    if (status.overview) { updateOverview(status.overview); }
    if (status.timeline) { updateTimeline(status.timeline); }
    if (known !== shown) { window.location.reload(); }   // members added or removed
  }

  function getJSON(path) {
    return fetch(path, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (!r.ok) { var e = new Error("HTTP " + r.status); e.status = r.status; throw e; }
      return r.json();
    });
  }

  function say(text, className) {
    if (live) { live.textContent = text; live.className = className; }
  }

  function refresh() {
    getJSON("api/status").then(function (status) {
      update(status);
      say("live \u00b7 updated " + localTime(Date.now() / 1000), "muted on");
    }).catch(function (e) {
      say("live updates failing: " + e.message, "muted error");
    });
  }

  function refreshHistory() {
    getJSON("api/history").then(drawHistory).catch(function () {
      // (the state's updates say when the manager cannot be reached)
    });
  }

  // The rolling restart panel (GET api/rolling), when the manager has it.
  var rollingTimer = null;
  function elapsed(since, until) {
    var s = Math.max(0, Math.round(until - since));
    return s >= 60 ? Math.floor(s / 60) + "m " + pad(s % 60) + "s" : s + "s";
  }
  function renderRolling(answer) {
    var panel = document.getElementById("rolling");
    if (!panel) { return; }
    var now = answer.time || Date.now() / 1000;
    panel.textContent = "";
    var shown = 0;
    Object.keys(answer.balancers || {}).forEach(function (bname) {
      var entry = answer.balancers[bname] || {};
      var run = entry.run !== undefined ? entry.run : (entry.state ? entry : null);
      if (!run && !entry.configured) { return; }
      shown++;
      var block = document.createElement("div");
      block.className = "rolling-run";
      block.dataset.balancer = bname;
      var h = document.createElement("h2");
      h.textContent = "rolling restart of " + bname + " ";
      var small = document.createElement("small");
      if (run) {
        small.textContent = run.state + (run.reason ? ": " + run.reason : "") + " \u00b7 " +
          run.done + "/" + run.total + " members \u00b7 " +
          elapsed(run.started, run.finished || now) + " \u00b7 from the " + run.origin +
          (run.who ? " by " + run.who : "");
      } else {
        small.textContent = "not running";
      }
      h.appendChild(small);
      block.appendChild(h);
      if (run) {
        var bar = document.createElement("progress");
        bar.max = Math.max(1, run.total);
        bar.value = run.done;
        bar.setAttribute("aria-label", "members restarted");
        block.appendChild(bar);
        var list = document.createElement("ol");
        list.className = "steps";
        (run.members || []).forEach(function (m) {
          var li = document.createElement("li");
          li.dataset.member = m.name;
          li.dataset.step = m.step;
          li.className = "step-" + m.step;
          li.textContent = m.name + ": " + m.step + (m.detail ? " (" + m.detail + ")" : "") +
            (m.since ? ", " + elapsed(m.since, now) : "");
          list.appendChild(li);
        });
        block.appendChild(list);
      }
      if (entry.configured && !(run && run.state === "running")) {
        var start = document.createElement("button");
        start.type = "button";
        start.textContent = "Start a rolling restart of " + bname;
        start.addEventListener("click", function () {
          if (!window.confirm("Restart every member of " + bname + " in turn with the command " +
                              "configured for it?")) { return; }
          send("POST", "api/rolling/" + encodeURIComponent(bname), {}).then(refreshRolling)
            .catch(function (e) { window.alert(e.message); });
        });
        block.appendChild(start);
      }
      panel.appendChild(block);
    });
    panel.hidden = shown === 0;
  }
  function refreshRolling() {
    getJSON("api/rolling").then(renderRolling).catch(function (e) {
      if (e.status === 404 && rollingTimer !== null) {  // a manager without it
        window.clearInterval(rollingTimer);
        rollingTimer = null;
      }
    });
  }

  // Controls.
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

  function removalQuestion(member, balancer, inFlight) {
    var n = parseInt(inFlight || "0", 10);
    return "Remove " + member + " from " + balancer + "?  It gets no new requests from now, and " +
      (n ? "its " + n + " request" + (n === 1 ? "" : "s") + " in flight will finish first."
         : "nothing is in flight.");
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var data = new FormData(form);
    var submitter = event.submitter;
    var action = form.classList.contains("add") ? "add" : (submitter ? submitter.value : data.get("action"));
    var path = "api/balancers/" + encodeURIComponent(data.get("balancer")) +
      "/members/" + encodeURIComponent(data.get("member"));
    var done;
    if (action === "add") {
      done = send("PUT", path, {url: data.get("url"), standby: data.get("standby") === "on",
                                weight: parseInt(data.get("weight") || "1", 10)});
    } else if (action === "remove") {
      var question = removalQuestion(data.get("member"), data.get("balancer"),
                                     submitter && submitter.dataset.inFlight);
      if (!window.confirm(question)) { event.preventDefault(); return; }
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
      if (action === "add" || action === "remove") {
        window.location.reload();
      } else {
        refresh();
      }
    }).catch(function (e) { window.alert(e.message); });
  });

  var filter = document.getElementById("timeline-filter");
  if (filter) { filter.addEventListener("change", filterTimeline); }
  localizeTimes(document);
  refresh();
  refreshHistory();
  refreshRolling();
  window.setInterval(refresh, PERIOD);
  window.setInterval(refreshHistory, HISTORY_PERIOD);
  rollingTimer = window.setInterval(refreshRolling, ROLLING_PERIOD);
})();
