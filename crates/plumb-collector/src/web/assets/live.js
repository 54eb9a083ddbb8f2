// plumb dashboard: the only script. Everything works without it except the
// live parts: durations of running runs, the live tail of a run's output,
// the nodes table refreshing itself, and `/` to focus the search box.
(function () {
  "use strict";

  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var q = document.getElementById("q");
    if (q) { e.preventDefault(); q.focus(); q.select(); }
  });

  // The same rules as plumb_model::display::duration (a test in web/mod.rs
  // compares the two), so a ticking duration reads as the CLI prints it.
  function human(ns) {
    ns = Math.max(0, ns);
    if (ns === 0) return "0s";
    if (ns < 1e3) return Math.floor(ns) + "ns";
    if (ns < 1e6) return Math.floor(ns / 1e3) + "us";
    if (ns < 1e9) return Math.floor(ns / 1e6) + "ms";
    if (ns < 1e10) {
      var t = Math.floor(ns / 1e8);
      return Math.floor(t / 10) + "." + (t % 10) + "s";
    }
    var s = Math.floor(ns / 1e9), m = Math.floor(s / 60); s %= 60;
    if (m === 0) return s + "s";
    var h = Math.floor(m / 60); m %= 60;
    if (h === 0) return m + "m" + (s < 10 ? "0" : "") + s + "s";
    var d = Math.floor(h / 24); h %= 24;
    if (d === 0) return h + "h" + (m < 10 ? "0" : "") + m + "m";
    return d + "d" + h + "h";
  }

  function tickDurations() {
    var now = Date.now() * 1e6;
    var els = document.querySelectorAll("[data-started]");
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = human(now - Number(els[i].getAttribute("data-started")));
    }
  }
  if (document.querySelector("[data-started]")) {
    tickDurations();
    setInterval(tickDurations, 1000);
  }

  // Live tail: poll the run's output endpoint from the cursor the page was
  // rendered with; segments are u8 stream | i64 time ns | u32 len | bytes
  // (stream 0: the gap over the output cap).
  var out = document.querySelector("pre[data-live]");
  if (out) {
    var run = out.getAttribute("data-run");
    var cursor = out.getAttribute("data-cursor") || "";
    var decoder = new TextDecoder();
    var polls = 0;
    var openLine = 0;
    var poll = function () {
      polls++;
      fetch("/api/v1/runs/" + encodeURIComponent(run) + "/output?cursor=" + encodeURIComponent(cursor),
            { credentials: "same-origin" })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          cursor = r.headers.get("x-plumb-cursor") || cursor;
          var state = r.headers.get("x-plumb-run-state");
          return r.arrayBuffer().then(function (buf) { return [buf, state]; });
        })
        .then(function (res) {
          var buf = res[0], state = res[1], v = new DataView(buf), p = 0;
          var atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
          while (p + 13 <= buf.byteLength) {
            var stream = v.getUint8(p);
            var len = v.getUint32(p + 9, true);
            var span = document.createElement("span");
            if (stream === 2) span.className = "err";
            if (stream === 3) span.className = "combined";
            if (stream === 0 && len >= 16) {
              // The gap over the output cap: two u64 counts, then the
              // line that says so, as the server words it.
              if (openLine) out.appendChild(document.createTextNode("\n"));
              openLine = 0;
              span.className = "gap";
              span.textContent = decoder.decode(new Uint8Array(buf, p + 13 + 16, len - 16));
              out.appendChild(span);
              out.appendChild(document.createTextNode("\n"));
              p += 13 + len;
              continue;
            }
            var text = decoder.decode(new Uint8Array(buf, p + 13, len));
            // One stream's read after the other's unfinished line starts
            // a line of its own, as the server-rendered page does.
            if (openLine && openLine !== stream) out.appendChild(document.createTextNode("\n"));
            openLine = text.length && text[text.length - 1] !== "\n" ? stream : 0;
            span.textContent = text;
            out.appendChild(span);
            p += 13 + len;
          }
          if (atBottom) out.scrollTop = out.scrollHeight;
          var st = document.getElementById("run-state");
          if (state && st && st.textContent !== state) {
            st.textContent = state;
            st.className = "state st-" + state;
          }
          if (state && state !== "running" && state !== "waiting") {
            out.removeAttribute("data-live");
            return;
          }
          setTimeout(poll, polls < 30 ? 1000 : 3000);
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 1000);
  }
  // The nodes table keeps itself current: every few seconds it fetches the
  // page's JSON twin and rewrites the rows whose node changed. Rows are built
  // with DOM calls and textContent only, never markup from the data. The
  // server-rendered table is complete without this.
  var nodes = document.querySelector("table#nodes[data-poll]");
  if (nodes) {
    var every = Number(nodes.getAttribute("data-every")) || 3000;
    var body = nodes.tBodies[0];
    var el = function (tag, cls, text) {
      var e = document.createElement(tag);
      if (cls) e.className = cls;
      if (text !== undefined) e.textContent = text;
      return e;
    };
    var bytes = function (n) {
      var u = ["B", "KiB", "MiB", "GiB", "TiB"], v = n, i = 0;
      while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
      return i === 0 ? n + " B" : v.toFixed(1) + " " + u[i];
    };
    var isoSecs = function (ns) {
      return new Date(ns / 1e6).toISOString().replace(/\.\d+Z$/, "Z");
    };
    var cell = function (cls, text) { return el("td", cls, text); };
    // A row's sparkline from its `spark`, drawn as the server's
    // plumb_model::chart::mini_spark_svg draws it (the same scale, y and
    // gaps; absolute moves): load solid, scaled to the CPUs or the highest
    // load, and the fullest disk dashed, 0-100 %.
    var SVG_NS = "http://www.w3.org/2000/svg";
    var sparkCell = function (n) {
      var c = cell("sp");
      var s = n.spark;
      if (!s) { c.textContent = "\u2014"; return c; }
      var highest = function (vs) {
        return vs.reduce(function (m, v) { return v != null && v > m ? v : m; }, 0);
      };
      var hi = highest(s.load), disk = highest(s.disk);
      var len = Math.max(s.load.length, s.disk.length, 2);
      var svg = document.createElementNS(SVG_NS, "svg");
      svg.setAttribute("viewBox", "0 0 " + (len - 1) + " 9");
      var t = document.createElementNS(SVG_NS, "title");
      t.textContent = "load\u2264" + hi.toFixed(1) + " disk\u2264" + disk.toFixed(0) + "%";
      svg.appendChild(t);
      [[s.load, Math.max(hi, n.cpus)], [s.disk, 100]].forEach(function (series, k) {
        var top = series[1] > 0 ? series[1] : 1, d = "", run = 0;
        series[0].forEach(function (v, i) {
          if (v == null) {
            if (run === 1) d += "h.1";
            run = 0;
            return;
          }
          var y = Math.round(9 - Math.min(Math.max(v / top, 0), 1) * 9);
          d += (run ? "L" : "M") + i + " " + y;
          run++;
        });
        if (run === 1) d += "h.1";
        if (!d) return;
        var p = document.createElementNS(SVG_NS, "path");
        if (k === 1) p.setAttribute("class", "l2");
        p.setAttribute("d", d);
        svg.appendChild(p);
      });
      c.appendChild(svg);
      return c;
    };
    var nodeCells = function (n) {
      var out = [];
      var c = cell(), a = el("a", null, n.node);
      a.href = "/nodes/" + encodeURIComponent(n.node);
      c.appendChild(a); out.push(c);
      c = cell(); c.appendChild(el("span", "state st-" + n.state, n.state)); out.push(c);
      c = cell(); c.title = isoSecs(n.since); out.push(c);
      out.push(cell(null, n.load1.toFixed(2) + " / " + n.cpus));
      out.push(cell(null, n.mem_total ? bytes(n.mem_available) + " / " + bytes(n.mem_total) : "\u2014"));
      c = cell("disk");
      n.disks.forEach(function (d, i) {
        var pct = d.total > 0 ? d.available / d.total * 100 : 0;
        if (i > 0) c.appendChild(el("br"));
        c.appendChild(document.createTextNode(d.mount + " "));
        var bar = el("span", pct < 10 ? "bar low" : pct < 25 ? "bar mid" : "bar");
        bar.style.setProperty("--p", pct.toFixed(0) + "%");
        c.appendChild(bar);
        c.appendChild(document.createTextNode(" " + bytes(d.available) + " / " + bytes(d.total)));
      });
      out.push(c);
      out.push(cell(null, n.clock_offset_ms == null ? "\u2014" : n.clock_offset_ms.toFixed(1) + " ms"));
      c = cell();
      if (n.fingerprint) {
        c.appendChild(el("code", null, n.fingerprint.slice(0, 12)));
        if (n.fingerprint_differs) {
          c.appendChild(document.createTextNode(" "));
          var m = el("span", "marker", "\u2260 group");
          m.title = "differs from most nodes labelled " + (n.group || "(none)");
          c.appendChild(m);
        }
      } else {
        c.textContent = "\u2014";
      }
      out.push(c);
      out.push(cell(null, String(n.runs)));
      out.push(sparkCell(n));
      return out;
    };
    // What a row shows, apart from the age that changes every poll.
    var shown = function (n) {
      return JSON.stringify([n.state, n.since, n.load1, n.cpus, n.mem_total, n.mem_available, n.disks,
        n.clock_offset_ms, n.fingerprint, n.fingerprint_differs, n.group, n.runs, n.spark]);
    };
    var update = function (v) {
      var rows = {}, i;
      for (i = 0; i < body.rows.length; i++) rows[body.rows[i].getAttribute("data-node")] = body.rows[i];
      var counts = {}, order = [], added = false;
      v.nodes.forEach(function (n) {
        counts[n.state] = (counts[n.state] || 0) + 1;
        var tr = rows[n.node];
        delete rows[n.node];
        if (!tr) {
          tr = document.createElement("tr");
          tr.setAttribute("data-node", n.node);
          added = true;
        }
        var sig = shown(n);
        // Server-rendered rows have no signature yet: rebuilt once, so the
        // table is in the script's own form from the first poll on.
        if (tr.getAttribute("data-shown") !== sig) {
          while (tr.firstChild) tr.removeChild(tr.firstChild);
          nodeCells(n).forEach(function (c) { tr.appendChild(c); });
          tr.setAttribute("data-shown", sig);
        }
        tr.cells[2].textContent = human(v.now - n.since) + " ago";
        order.push(tr);
      });
      var removed = false;
      for (var gone in rows) { body.removeChild(rows[gone]); removed = true; }
      if (added || removed) order.forEach(function (tr) { body.appendChild(tr); });
      var summary = document.getElementById("node-counts");
      if (summary) {
        summary.firstChild.textContent = String(v.nodes.length);
        var spans = summary.querySelectorAll("[data-count]");
        for (i = 0; i < spans.length; i++) spans[i].textContent = String(counts[spans[i].getAttribute("data-count")] || 0);
      }
      if (v.nodes.length) {
        nodes.hidden = false;
        var none = document.getElementById("no-nodes");
        if (none) none.parentNode.removeChild(none);
      }
      nodes.setAttribute("data-refreshed", String(v.now));
    };
    var refresh = function () {
      if (document.hidden) { setTimeout(refresh, every); return; }
      fetch(nodes.getAttribute("data-poll"), { credentials: "same-origin" })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (v) { update(v); setTimeout(refresh, every); })
        .catch(function () { setTimeout(refresh, every * 5); });
    };
    setTimeout(refresh, every);
  }
})();
