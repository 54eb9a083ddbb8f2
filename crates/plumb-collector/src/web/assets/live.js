// plumb dashboard: the only script. Everything works without it except the
// live parts: durations of running runs, the live tail of a run's output,
// and `/` to focus the search box.
(function () {
  "use strict";

  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var q = document.getElementById("q");
    if (q) { e.preventDefault(); q.focus(); q.select(); }
  });

  function human(ns) {
    var s = Math.max(0, Math.floor(ns / 1e9));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60); s %= 60;
    if (m < 60) return m + "m" + (s < 10 ? "0" : "") + s + "s";
    var h = Math.floor(m / 60); m %= 60;
    if (h < 48) return h + "h" + (m < 10 ? "0" : "") + m + "m";
    return Math.floor(h / 24) + "d" + (h % 24) + "h";
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
  // rendered with; segments are u8 stream | i64 time ns | u32 len | bytes.
  var out = document.querySelector("pre[data-live]");
  if (out) {
    var run = out.getAttribute("data-run");
    var cursor = out.getAttribute("data-cursor") || "";
    var decoder = new TextDecoder();
    var polls = 0;
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
            span.textContent = decoder.decode(new Uint8Array(buf, p + 13, len));
            out.appendChild(span);
            p += 13 + len;
          }
          if (atBottom) out.scrollTop = out.scrollHeight;
          var st = document.getElementById("run-state");
          if (state && st && state !== "running") {
            st.textContent = state;
            st.className = "state st-" + state;
            out.removeAttribute("data-live");
            return;
          }
          setTimeout(poll, polls < 30 ? 1000 : 3000);
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 1000);
  }
})();
