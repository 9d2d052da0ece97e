// maskwatch control room page: everything it shows comes from /api/ (the same API scripts use).
"use strict";
(function () {
  var csrf = null;
  var VERDICTS = ["with_mask", "without_mask", "mask_weared_incorrect"];
  var alerts = {};      // event_id -> li
  var historyBefore = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function api(path, opts) {
    opts = opts || {};
    opts.credentials = "same-origin";
    opts.headers = opts.headers || {};
    if (opts.method === "POST") opts.headers["X-CSRF-Token"] = csrf;
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
      if (!r.ok) return r.json().then(function (j) { throw new Error(j.error || r.status); });
      return r.json();
    });
  }
  function t(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "-"; }
  function hm(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : "-"; }
  function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%"; }
  function dayStart() { var d = new Date(); d.setHours(0, 0, 0, 0); return d.getTime() / 1000; }
  function fillSelect(sel, values) {
    var keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    values.forEach(function (v) { var o = el("option", null, v); o.value = v; sel.appendChild(o); });
    sel.value = keep;
  }

  // -- tiles --------------------------------------------------------------------------------------
  function loadDevices() {
    return api("/api/devices?day_start=" + dayStart()).then(function (j) {
      var box = $("tiles");
      box.textContent = "";
      if (!j.devices.length) box.appendChild(el("p", null, "No entrance has reported yet."));
      j.devices.forEach(function (d) {
        var tile = el("div", "tile " + d.state);
        tile.id = "tile-" + d.site + "-" + d.device;
        tile.setAttribute("data-state", d.state);
        tile.appendChild(el("h3", null, d.site + " / " + d.device));
        tile.appendChild(el("div", "state " + d.state, d.state));
        tile.appendChild(el("div", "why", d.state_why));
        var big = el("div", "big", pct(d.today.compliance_rate));
        big.title = "today's compliance rate";
        tile.appendChild(big);
        tile.appendChild(el("div", null, d.today.people + (d.today.people === 1 ? " person" : " people") + " today, " +
                                          d.today.alerts + (d.today.alerts === 1 ? " alert" : " alerts") + " (" +
                                          d.today.unacked_alerts + " not acknowledged)"));
        var last = el("div", "last");
        d.last_verdicts.forEach(function (v) {
          var s = el("span", "v" + (v.alert ? " alert" : ""), v.verdict.replace(/_/g, " "));
          s.title = t(v.ts);
          last.appendChild(s);
        });
        tile.appendChild(last);
        if (d.degraded && d.degraded.length) {  // running, but not as configured: as visible as the twin warning
          tile.classList.add("degraded");
          var deg = el("div", "degraded");
          deg.appendChild(el("div", "degraded-head", "Degraded"));
          d.degraded.forEach(function (why) { deg.appendChild(el("div", "why", why)); });
          tile.appendChild(deg);
        }
        if (d.clock && d.clock.why) {  // its events are filed at the wrong time: the history needs it said
          var clock = el("div", "clock");
          clock.title = "offset " + d.clock.skew_s + " s, from its last stats";
          clock.appendChild(el("div", "clock-head", "Kiosk clock off"));
          clock.appendChild(el("div", "why", d.clock.why));
          tile.appendChild(clock);
        }
        if (d.twin) {  // a headline the operator sees, then the two starts in local time like the rest of the page
          var twin = el("div", "twin");
          twin.title = d.twin.why;
          twin.appendChild(el("div", "twin-head", "Two kiosks report as this entrance"));
          twin.appendChild(el("div", "why", "started " + t(d.twin.starts[0]) + " and " + t(d.twin.starts[1]) +
                                            ": give each its own device name; until then their people and alerts mix here"));
          tile.appendChild(twin);
        }
        box.appendChild(tile);
      });
    });
  }
  var devTimer = null;
  function devicesSoon() { if (!devTimer) devTimer = setTimeout(function () { devTimer = null; loadDevices(); }, 300); }

  // -- live alerts --------------------------------------------------------------------------------
  function alertItem(e) {
    var li = el("li", e.ack_at ? "acked" : "");
    li.id = "alert-" + e.event_id;
    li.setAttribute("data-event-id", e.event_id);
    if (e.has_snapshot) {
      var img = el("img");
      img.src = "/api/events/" + encodeURIComponent(e.event_id) + "/snapshot.jpg";
      img.alt = "snapshot";
      li.appendChild(img);
    }
    var text = el("div", "grow");
    text.appendChild(el("strong", null, e.verdict.replace(/_/g, " ")));
    text.appendChild(document.createTextNode(" at " + e.site + " / " + e.device + ", " + hm(e.ts) +
                                             " (" + (100 * e.confidence).toFixed(0) + "%)"));
    var ack = el("div", "ack");
    text.appendChild(ack);
    li.appendChild(text);
    var b = el("button", "ack-button", "Acknowledge");
    b.addEventListener("click", function () {
      b.disabled = true;
      api("/api/events/" + encodeURIComponent(e.event_id) + "/ack", {method: "POST"})
        .then(markAcked).catch(function (err) { b.disabled = false; alert("acknowledge failed: " + err.message); });
    });
    li.appendChild(b);
    if (e.ack_at) markAckedItem(li, e);
    return li;
  }
  function markAckedItem(li, e) {
    li.className = "acked";
    li.querySelector(".ack").textContent = "acknowledged by " + e.ack_by + " at " + hm(e.ack_at);
    var b = li.querySelector("button");
    if (b) b.remove();
  }
  function markAcked(e) {
    var li = alerts[e.event_id];
    if (li) markAckedItem(li, e);
    countAlerts();
    devicesSoon();
  }
  function addAlert(e, fresh) {
    if (!e.alert || alerts[e.event_id]) return;
    var li = alertItem(e);
    alerts[e.event_id] = li;
    var feed = $("alerts");
    if (fresh) { li.className += " new"; feed.insertBefore(li, feed.firstChild); } else feed.appendChild(li);
    countAlerts();
  }
  function countAlerts() {
    var n = document.querySelectorAll("#alerts li:not(.acked)").length;
    $("alert-count").textContent = n ? "(" + n + " to acknowledge)" : "";
  }
  function loadAlerts() {
    return api("/api/events?alert=true&limit=50").then(function (j) {
      j.events.forEach(function (e) { addAlert(e, false); });
    });
  }

  // -- live stream --------------------------------------------------------------------------------
  function connect() {
    var es = new EventSource("/api/stream");
    es.onopen = function () {
      $("live").className = "pill on"; $("live").textContent = "live";
      loadAlerts(); loadDevices();   // whatever happened while the stream was down
    };
    es.onerror = function () { $("live").className = "pill off"; $("live").textContent = "live: reconnecting"; };
    es.addEventListener("event", function (m) {
      var e = JSON.parse(m.data);
      addAlert(e, true);
      devicesSoon();
      chartSoon();
      historySoon();
    });
    es.addEventListener("ack", function (m) { markAcked(JSON.parse(m.data)); historySoon(); });
    es.addEventListener("device", function () { devicesSoon(); });
  }

  // -- chart ----------------------------------------------------------------------------------------
  var chartTimer = null;
  function chartSoon() { if (!chartTimer) chartTimer = setTimeout(function () { chartTimer = null; loadChart(); }, 2000); }
  function loadChart() {
    var size = $("chart-size").value, width = size === "hour" ? 3600 : 86400, n = size === "hour" ? 48 : 30;
    var now = Date.now() / 1000;
    var q = "size=" + size + "&by=all&tz_offset_min=" + new Date().getTimezoneOffset() +
            "&since=" + Math.floor(now - n * width);
    if ($("chart-site").value) q += "&site=" + encodeURIComponent($("chart-site").value);
    if ($("chart-device").value) q += "&device=" + encodeURIComponent($("chart-device").value);
    return api("/api/buckets?" + q).then(function (j) { drawChart(j.buckets, size, width, n, now); });
  }
  function drawChart(rows, size, width, n, now) {
    var NS = "http://www.w3.org/2000/svg", W = 600, H = 200, P = 30;
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    function add(tag, attrs, text) {
      var e = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      if (text) e.textContent = text;
      svg.appendChild(e);
      return e;
    }
    $("chart").textContent = "";
    $("chart").appendChild(svg);
    // the whole window (48 hours or 30 days, ending with the newest bucket), so the axis never jumps
    var last = rows.length ? rows[rows.length - 1].bucket : Math.floor(now / width) * width;
    var first = last - (n - 1) * width, slots = n, bw = (W - 2 * P) / slots;
    var maxNc = Math.max.apply(null, rows.map(function (r) { return r.non_compliant; }).concat([1]));
    add("line", {x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#9ca3af"});
    add("text", {x: 2, y: P, "font-size": 10, fill: "#b91c1c"}, String(maxNc));
    add("text", {x: 2, y: H - P, "font-size": 10, fill: "#b91c1c"}, "0");
    add("text", {x: W - P + 2, y: P, "font-size": 10, fill: "#2563eb"}, "100%");
    add("text", {x: W - P + 2, y: H - P, "font-size": 10, fill: "#2563eb"}, "0%");
    if (!rows.length) { add("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no data yet"); return; }
    var pts = [];
    rows.forEach(function (r) {
      var i = Math.round((r.bucket - first) / width);
      if (i < 0) return;
      var x = P + i * bw, h = (H - 2 * P) * r.non_compliant / maxNc;
      var label = new Date(r.bucket * 1000).toLocaleString() + ": " + r.people + " people, " + r.non_compliant +
        " non-compliant, compliance " + pct(r.compliance_rate) + ", " + r.events + " events, " + r.alerts + " alerts";
      var bar = add("rect", {x: x + 2, y: H - P - h, width: Math.max(1, bw - 4), height: Math.max(h, 0.5),
                             fill: "#f87171", "class": "bar"});
      var tip = document.createElementNS(NS, "title");
      tip.textContent = label;
      bar.appendChild(tip);
      if (r.compliance_rate !== null) {
        var cx = x + bw / 2, cy = H - P - (H - 2 * P) * r.compliance_rate;
        pts.push(cx + "," + cy);
        var dot = add("circle", {cx: cx, cy: cy, r: 3.5, fill: "#2563eb"});
        var tip2 = document.createElementNS(NS, "title");
        tip2.textContent = label;
        dot.appendChild(tip2);
      }
    });
    if (pts.length > 1) add("polyline", {points: pts.join(" "), fill: "none", stroke: "#2563eb", "stroke-width": 2});
    var fmt = size === "hour" ? function (d) { return d.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"}); }
                              : function (d) { return d.toLocaleDateString(); };
    add("text", {x: P, y: H - 10, "font-size": 11}, fmt(new Date(first * 1000)));
    add("text", {x: P + slots * bw, y: H - 10, "font-size": 11, "text-anchor": "end"}, fmt(new Date((last + width) * 1000)));
  }

  // -- history --------------------------------------------------------------------------------------
  function historyQuery() {
    var q = [];
    ["site", "device", "verdict"].forEach(function (k) {
      var v = $("f-" + k).value;
      if (v) q.push(k + "=" + encodeURIComponent(v));
    });
    ["since", "until"].forEach(function (k) {
      var v = $("f-" + k).value;
      if (v) q.push(k + "=" + Math.floor(new Date(v).getTime() / 1000));
    });
    return q.join("&");
  }
  // news from the stream refreshes the first page under the filters as they are; an operator reading
  // older pages ("Older") is not pulled back to the top
  var historyTimer = null, historyPaged = false;
  function historySoon() {
    if (historyPaged || historyTimer) return;
    historyTimer = setTimeout(function () { historyTimer = null; loadHistory(false); }, 500);
  }
  function loadHistory(more) {
    historyPaged = !!more;
    var q = historyQuery();
    $("csv").href = "/api/events.csv" + (q ? "?" + q : "");
    var url = "/api/events?limit=50" + (q ? "&" + q : "") + (more && historyBefore ? "&before_id=" + historyBefore : "");
    return api(url).then(function (j) {
      var body = document.querySelector("#history tbody");
      if (!more) body.textContent = "";
      j.events.forEach(function (e) {
        var tr = el("tr");
        [t(e.ts), e.site + " / " + e.device, e.verdict.replace(/_/g, " "), (100 * e.confidence).toFixed(0) + "%",
         String(e.track_id), e.ack_at ? e.ack_by + ", " + t(e.ack_at) : (e.alert ? "no" : "")].forEach(function (c) {
          tr.appendChild(el("td", null, c));
        });
        if (e.alert) tr.className = "alert";
        body.appendChild(tr);
      });
      historyBefore = j.next_before_id;
      $("older").hidden = !historyBefore;
    });
  }

  // -- start ----------------------------------------------------------------------------------------
  api("/api/me").then(function (me) {
    csrf = me.csrf;
    $("who").textContent = me.username;
    $("logout-csrf").value = csrf;
    fillSelect($("f-verdict"), VERDICTS);
    api("/api/filters").then(function (f) {
      [$("f-site"), $("chart-site")].forEach(function (s) { fillSelect(s, f.sites); });
      [$("f-device"), $("chart-device")].forEach(function (s) { fillSelect(s, f.devices); });
    });
    $("history-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadHistory(false); });
    $("older").addEventListener("click", function () { loadHistory(true); });
    $("chart-form").addEventListener("change", loadChart);
    loadDevices(); loadAlerts(); loadChart(); loadHistory(false);
    connect();
    setInterval(loadDevices, 10000);  // liveness changes with time alone (stale after 2x the stats interval)
  });
})();
