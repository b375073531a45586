/// The report page's stylesheet and script, inlined into every report (no external assets).
///
/// The script folds the embedded facts with the rules of docs/log-format.md (the same checks and
/// updates as `Fold.apply`), keeping a snapshot every 1,024 facts so that a move of the slider
/// folds at most that many facts.
enum ReportAssets {
    static let css = #"""
:root{--unstarted:#e0e0e0;--started:#8ecae6;--finished:#90be6d;--failed:#f94144;--aborted:#f9c74f;--ink:#1d2330;--mute:#5d6575;--line:#d7dbe3}
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--ink);margin:0;padding:0 18px 40px;background:#fafbfc}
h1{font-size:20px;margin:14px 0 4px}h2{font-size:15px;margin:18px 0 6px}
header{padding-top:4px}
.meta,.note{color:var(--mute);font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;background:var(--unstarted)}
.badge.running{background:var(--started)}.badge.finished{background:var(--finished)}.badge.failed{background:var(--failed);color:#fff}.badge.aborted{background:var(--aborted)}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px 12px 10px;margin:10px 0}
#travel{position:sticky;top:0;z-index:5;box-shadow:0 2px 6px rgba(0,0,0,.06)}
.controls{display:flex;gap:4px;align-items:center}
.controls button{min-width:30px}
#slider{flex:1;margin-left:8px}
#at{margin-top:4px;font-size:12px}#at-fact{color:var(--mute)}
button{font:inherit;font-size:12px;border:1px solid var(--line);background:#f3f4f7;border-radius:4px;padding:2px 7px;cursor:pointer}
button.on{background:#dbe7f5;border-color:#8aa9cf}
.wrap{overflow:auto;max-height:70vh;border:1px solid var(--line);border-radius:4px;background:#fff}
.zoom{float:right;margin-top:-22px;color:var(--mute);font-size:12px}
.legend{font-size:12px;color:var(--mute);margin:4px 0}
.sw{display:inline-block;width:12px;height:10px;border:1px solid #889;border-radius:2px;margin:0 3px 0 8px;vertical-align:-1px}
.sw.s-unstarted{background:var(--unstarted)}.sw.s-started{background:var(--started)}.sw.s-finished{background:var(--finished)}.sw.s-failed{background:var(--failed)}.sw.s-aborted{background:var(--aborted)}
.sw.ready{border:2px solid #2a6f97}.sw.waiting{border:2px dashed #8a5a00}
#graph .edges path{fill:none;stroke:#8a90a0;stroke-width:1;marker-end:url(#arrow)}
#graph .node rect{fill:var(--unstarted);stroke:#6b7283;stroke-width:1}
#graph .node text{font:10px Helvetica,Arial,sans-serif;text-anchor:middle;fill:#111;pointer-events:none}
#graph .node{cursor:pointer}
#graph .s-started rect{fill:var(--started)}#graph .s-finished rect{fill:var(--finished)}#graph .s-failed rect{fill:var(--failed)}#graph .s-aborted rect{fill:var(--aborted)}
#graph .ready rect{stroke:#2a6f97;stroke-width:2}#graph .waiting rect{stroke:#8a5a00;stroke-width:2;stroke-dasharray:3 2}
#graph .s-none{opacity:.18}#graph .sel rect{stroke:#000;stroke-width:3}
#tl-wrap{position:relative;max-height:60vh}#tl-space{position:relative}#timeline{position:absolute;left:0;top:0;display:block}
.a-finished{background:#90be6d}.a-failed{background:#f94144}.a-released{background:#f8961e}.a-expired{background:#9d4edd}.a-shutdown{background:#adb5bd}.a-aborted{background:#f9c74f}.a-running{background:#4895ef}
.mk{color:#d00000}
.filters{display:inline-block;margin-bottom:6px}
.filters button{margin-right:3px}
#search{font:inherit;padding:2px 6px;border:1px solid var(--line);border-radius:4px}
.tablewrap{max-height:80vh;overflow:auto;border:1px solid var(--line);border-radius:4px}
#jobs{border-collapse:collapse;width:100%;font-size:12px}
#jobs th{position:sticky;top:0;background:#eef1f5;text-align:left;cursor:pointer;user-select:none;padding:4px 6px;border-bottom:1px solid var(--line);white-space:nowrap}
#jobs th.asc::after{content:" ▲"}#jobs th.desc::after{content:" ▼"}
#jobs td{padding:3px 6px;border-bottom:1px solid #eef0f3;vertical-align:top}
#jobs tr.sel td{background:#fff7d6}
#jobs td.status{white-space:nowrap}
#jobs td.status span.st{display:inline-block;padding:0 6px;border-radius:8px;background:var(--unstarted)}
#jobs tr[data-status=started] span.st{background:var(--started)}#jobs tr[data-status=finished] span.st{background:var(--finished)}
#jobs tr[data-status=failed] span.st{background:var(--failed);color:#fff}#jobs tr[data-status=aborted] span.st{background:var(--aborted)}
#jobs .sub{color:var(--mute);margin-left:4px}
#jobs td.error{color:#a4161a;max-width:360px;word-break:break-word}
#jobs td.num{text-align:right;white-space:nowrap}
#jobs pre{margin:2px 0;max-height:160px;overflow:auto;background:#f6f7f9;padding:3px 5px;font-size:11px;white-space:pre-wrap;word-break:break-all}
#jobs pre.err{background:#fff1f0}
#jobs summary{cursor:pointer;color:var(--mute);max-width:360px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.kv th{text-align:left;vertical-align:top;padding:3px 12px 3px 0;white-space:nowrap}.kv td{padding:3px 0}
code{font-size:11px;word-break:break-all}
.ok{color:#2b7a0b;font-weight:600}.bad{color:#c1121f;font-weight:600}
.warn{background:#fff3cd;border:1px solid #e6c75a;padding:6px 10px;border-radius:4px}
#tip{position:fixed;z-index:10;pointer-events:none;background:#1d2330;color:#fff;padding:4px 7px;border-radius:4px;font-size:12px;max-width:460px;white-space:pre-wrap}
"""#

    static let script = #"""
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("overseer-data").textContent);
  const STATUS = ["unstarted", "started", "finished", "failed", "aborted"];
  const RUNSTATUS = ["running", "finished", "failed", "aborted"];
  const KIND = D.kinds, S = D.s, L = D.l, NJ = D.jt.length, W = 9;
  const NF = Math.floor(D.f.length / W);
  // Kind codes (ReportModel.kinds).
  const RUN_CREATED = 0, RUN_ABORTED = 1, CREATED = 2, CLAIMED = 3, FINISHED = 4, FAILED = 5, RELEASED = 6, ABORTED = 7, RETRIED = 8, REJECTED = 9;
  // Facts, decoded: positions and times (µs after the first fact) from deltas; 0 means "none"
  // for the reference fields, which are otherwise index + 1.
  const P = new Float64Array(NF), T = new Float64Array(NF), K = new Int8Array(NF), J = new Int32Array(NF),
    A = new Int32Array(NF), WK = new Int32Array(NF), R = new Int32Array(NF), X = new Float64Array(NF), Y = new Float64Array(NF);
  {
    let p = 0, t = 0;
    for (let i = 0; i < NF; i++) {
      const o = i * W, f = D.f;
      p += f[o]; t += f[o + 1];
      P[i] = p; T[i] = t; K[i] = f[o + 2]; J[i] = f[o + 3] - 1; A[i] = f[o + 4]; WK[i] = f[o + 5] - 1; R[i] = f[o + 6] - 1;
      X[i] = f[o + 7]; Y[i] = f[o + 8];
    }
  }
  const PAR = D.jp, CH = [];
  for (let j = 0; j < NJ; j++) CH.push([]);
  for (let j = 0; j < NJ; j++) for (const p of PAR[j]) CH[p].push(j);

  // ---- The fold (docs/log-format.md; Fold.apply in the library) ----
  function State() {
    const n = NJ;
    this.i = -1;
    this.st = new Int8Array(n).fill(-1); this.rev = new Int32Array(n); this.att = new Int32Array(n); this.base = new Int32Array(n);
    this.wk = new Int32Array(n).fill(-1); this.cl = new Float64Array(n).fill(-1); this.lease = new Float64Array(n);
    this.fs = new Float64Array(n).fill(-1); this.en = new Float64Array(n).fill(-1); this.nb = new Float64Array(n).fill(-1);
    this.rs = new Float64Array(n).fill(-1); this.rsn = new Int32Array(n).fill(-1); this.err = new Int32Array(n).fill(-1);
    this.out = new Int32Array(n).fill(-1); this.out2 = new Int32Array(n).fill(-1); this.rej = new Int32Array(n); this.lp = new Int32Array(n).fill(-1);
    this.run = { made: false, status: 0, total: 0, counts: [0, 0, 0, 0, 0], ready: 0, abortedByOp: false, abortReason: -1, ended: -1, lp: -1 };
  }
  const ARRAYS = ["st", "rev", "att", "base", "wk", "cl", "lease", "fs", "en", "nb", "rs", "rsn", "err", "out", "out2", "rej", "lp"];
  function copy(s) {
    const c = Object.create(State.prototype);
    c.i = s.i;
    for (const k of ARRAYS) c[k] = s[k].slice();
    c.run = Object.assign({}, s.run, { counts: s.run.counts.slice() });
    return c;
  }
  function FoldError(i, message) { this.i = i; this.message = message; }
  function name(j) { return j >= 0 ? D.jt[j] : "?"; }

  function updateStatus(run, t) {
    let st;
    if (run.total > 0 && run.counts[2] === run.total) st = 1;
    else if (run.total > 0 && run.counts[1] === 0 && run.ready === 0) st = (run.abortedByOp || run.counts[3] === 0) ? 3 : 2;
    else st = 0;
    if (st !== run.status) { run.status = st; run.ended = st === 0 ? -1 : t; }
  }
  function refresh(s, j, i) {
    let ready = s.st[j] === 0;
    if (ready) for (const p of PAR[j]) if (s.st[p] !== 2) { ready = false; break; }
    if (s.rs[j] >= 0 && !ready) { s.rs[j] = -1; s.run.ready--; }
    if (ready && s.rs[j] < 0) { s.rs[j] = P[i]; s.run.ready++; }
  }
  function apply(s, i) {
    const k = K[i], j = J[i], t = T[i], run = s.run;
    const fail = (m) => { throw new FoldError(i, m); };
    if (k === RUN_CREATED) {
      if (run.made) fail("the run already exists");
      run.made = true; run.status = 0; run.lp = i;
      return;
    }
    if (k === RUN_ABORTED) {
      if (!run.made) fail("run.aborted of an unknown run");
      run.abortedByOp = true; run.abortReason = R[i]; run.lp = i;
      updateStatus(run, t);
      return;
    }
    if (j < 0) fail(KIND[k] + " without a job");
    if (!run.made) fail(KIND[k] + " before run.created");
    if (k === CREATED) {
      if (s.st[j] >= 0) fail("job '" + name(j) + "' already exists");
      for (const p of PAR[j]) if (s.st[p] < 0) fail("job '" + name(j) + "' depends on '" + name(p) + "', which is not an earlier job");
      s.st[j] = 0; s.rev[j] = 1; s.rsn[j] = R[i]; s.lp[j] = i;
      run.total++; run.counts[0]++;
      refresh(s, j, i);
      run.lp = i;
      updateStatus(run, t);
      return;
    }
    if (s.st[j] < 0) fail(KIND[k] + " of unknown job '" + name(j) + "'");
    if (k === REJECTED) { s.rej[j]++; s.lp[j] = i; run.lp = i; return; }
    const before = s.st[j];
    switch (k) {
      case CLAIMED:
        if (before !== 0) fail("claim of '" + name(j) + "' while " + STATUS[before]);
        for (const p of PAR[j]) if (s.st[p] !== 2) fail("claim of '" + name(j) + "' before its parent '" + name(p) + "' finished");
        if (A[i] !== s.att[j] + 1) fail("claim of '" + name(j) + "' with attempt " + A[i] + ", expected " + (s.att[j] + 1));
        if (WK[i] < 0) fail("claim of '" + name(j) + "' without a worker");
        s.st[j] = 1; s.att[j] = A[i]; s.wk[j] = WK[i]; s.cl[j] = t; s.lease[j] = X[i];
        if (s.fs[j] < 0) s.fs[j] = t;
        s.en[j] = -1; s.nb[j] = -1;
        break;
      case FINISHED: case FAILED:
        if (before !== 1) fail(KIND[k] + " of '" + name(j) + "' while " + STATUS[before]);
        if (A[i] !== s.att[j]) fail(KIND[k] + " of '" + name(j) + "' for attempt " + A[i] + ", current is " + s.att[j]);
        s.st[j] = k === FINISHED ? 2 : 3; s.en[j] = t;
        if (k === FINISHED) { s.out[j] = X[i] - 1; s.out2[j] = Y[i] - 1; s.err[j] = -1; } else s.err[j] = X[i] - 1;
        break;
      case RELEASED:
        if (before !== 1) fail("release of '" + name(j) + "' while " + STATUS[before]);
        s.st[j] = 0; s.cl[j] = -1;
        s.nb[j] = Y[i] > 0 ? t + (Y[i] - 1) * 1000 : -1;
        if (X[i] > 0) s.err[j] = X[i] - 1;
        break;
      case ABORTED:
        if (before === 2 || before === 4) fail("abort of '" + name(j) + "' while " + STATUS[before]);
        s.st[j] = 4; s.en[j] = t; s.cl[j] = -1;
        break;
      case RETRIED:
        if (before !== 3 && before !== 4) fail("retry of '" + name(j) + "' while " + STATUS[before]);
        s.st[j] = 0; s.base[j] = s.att[j]; s.en[j] = -1; s.nb[j] = -1; s.err[j] = -1;
        break;
      default:
        fail("unknown fact kind " + k);
    }
    s.rev[j]++; s.lp[j] = i;
    if (R[i] >= 0) s.rsn[j] = R[i];
    run.counts[before]--; run.counts[s.st[j]]++;
    refresh(s, j, i);
    if (s.st[j] === 2) for (const c of CH[j]) if (s.st[c] >= 0) refresh(s, c, i);
    run.lp = i;
    updateStatus(run, t);
  }

  // Snapshots every CK facts: seeking folds at most CK facts from the nearest one.
  const CK = 1024;
  const checkpoints = [copy(new State())];  // checkpoints[c]: state after CK*c facts
  let cur = copy(checkpoints[0]);
  let limit = NF - 1, foldError = null;
  function seek(target) {
    if (target > limit) target = limit;
    const c = Math.min(Math.floor((target + 1) / CK), checkpoints.length - 1);
    const base = checkpoints[c];
    if (cur.i > target || base.i > cur.i) cur = copy(base);
    while (cur.i < target) {
      const i = cur.i + 1;
      try { apply(cur, i); } catch (e) {
        if (!(e instanceof FoldError)) throw e;
        foldError = e; limit = i - 1;
        const box = document.getElementById("fold-error");
        box.hidden = false;
        box.textContent = "The embedded facts do not fold at position " + P[i] + ": " + e.message + ". The report stops just before it.";
        break;
      }
      cur.i = i;
      if ((i + 1) % CK === 0 && checkpoints.length === (i + 1) / CK) checkpoints.push(copy(cur));
    }
    return cur;
  }

  // ---- Formatting ----
  function dur(us) {
    if (us < 0) us = 0;
    if (us < 1000) return Math.round(us) + " µs";
    if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
    if (us < 60e6) return (us / 1e6).toFixed(2) + " s";
    if (us < 3600e6) return Math.floor(us / 60e6) + " min " + Math.round((us % 60e6) / 1e6) + " s";
    return Math.floor(us / 3600e6) + " h " + Math.round((us % 3600e6) / 60e6) + " min";
  }
  function iso(rel) {
    const abs = D.t0 + rel, ms = Math.floor(abs / 1000);
    return new Date(ms).toISOString().slice(0, -1) + String(abs - ms * 1000).padStart(3, "0") + "Z";
  }
  function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
  const str = (i) => (i >= 0 ? S[i] : "");
  const txt = (i) => (i >= 0 ? L[i] : "");

  // ---- Attempts, for the timeline (static: from every fact) ----
  const OUT = ["a-running", "a-finished", "a-failed", "a-released", "a-expired", "a-shutdown", "a-aborted"];
  const OUTNAME = ["running", "finished", "failed", "released for a retry", "lease expired", "released at shutdown", "aborted"];
  const ATT = [], MK = [], lanes = [], laneOf = new Map();
  {
    const open = new Int32Array(NJ).fill(-1);
    for (let i = 0; i < NF; i++) {
      const k = K[i], j = J[i];
      if (k === CLAIMED) {
        if (!laneOf.has(WK[i])) { laneOf.set(WK[i], lanes.length); lanes.push({ w: WK[i], rows: [] }); }
        ATT.push({ j: j, n: A[i], w: WK[i], s: i, e: -1, o: 0, row: 0, lane: laneOf.get(WK[i]) });
        open[j] = ATT.length - 1;
      } else if ((k === FINISHED || k === FAILED || k === RELEASED || k === ABORTED) && j >= 0 && open[j] >= 0) {
        const a = ATT[open[j]];
        a.e = i;
        if (k === FINISHED) a.o = 1; else if (k === FAILED) a.o = 2; else if (k === ABORTED) a.o = 6;
        else a.o = str(R[i]) === "lease_expired" ? 4 : str(R[i]) === "shutdown" ? 5 : 3;
        open[j] = -1;
      } else if (k === REJECTED) {
        MK.push({ i: i, j: j, w: WK[i], n: A[i] });
      }
    }
    // Rows within each worker's lane: the first row free at the attempt's start.
    const tEnd = NF ? T[NF - 1] : 0;
    for (const a of ATT) {
      const lane = lanes[a.lane], start = T[a.s], end = a.e >= 0 ? T[a.e] : tEnd;
      let r = lane.rows.findIndex((free) => free <= start);
      if (r < 0) { r = lane.rows.length; lane.rows.push(0); }
      lane.rows[r] = Math.max(end, start + 1);
      a.row = r;
    }
    const byJobAttempt = new Map();
    ATT.forEach((a, k) => byJobAttempt.set(a.j + ":" + a.n, k));
    for (const m of MK) {
      const k = byJobAttempt.get(m.j + ":" + m.n);
      if (k !== undefined) { m.lane = ATT[k].lane; m.row = ATT[k].row; }
      else {
        if (!laneOf.has(m.w)) { laneOf.set(m.w, lanes.length); lanes.push({ w: m.w, rows: [0] }); }
        m.lane = laneOf.get(m.w); m.row = 0;
      }
    }
  }

  // ---- Timeline (a canvas that draws only the visible part of the whole span) ----
  const tlWrap = document.getElementById("tl-wrap"), tlSpace = document.getElementById("tl-space"), tl = document.getElementById("timeline");
  const ctx = tl.getContext("2d");
  const LABEL = 170, ROW = 14, AXIS = 22, BAR = 10;
  const COLOURS = ["#4895ef", "#90be6d", "#f94144", "#f8961e", "#9d4edd", "#adb5bd", "#f9c74f"];
  let tlZoom = 1, tlWidth = 0, tlHeight = 0, tlAt = 0;
  const laneY = [];
  {
    let y = AXIS;
    for (const l of lanes) { laneY.push(y); y += Math.max(1, l.rows.length) * ROW + 6; }
    tlHeight = Math.max(y + 4, AXIS + 30);
  }
  const span = Math.max(NF ? T[NF - 1] : 1, 1);
  const tx = (t) => LABEL + 6 + (t / span) * (tlWidth - LABEL - 16);
  const barY = (lane, row) => laneY[lane] + row * ROW;
  function layoutTimeline() {
    tlWidth = Math.max((tlWrap.clientWidth || 900) - 4, 700) * tlZoom;
    tlSpace.style.width = tlWidth + "px";
    tlSpace.style.height = tlHeight + "px";
  }
  function drawTimeline(i) {
    tlAt = i;
    let visible = 0, running = 0, retries = 0, expired = 0, rejected = 0;
    for (const a of ATT) {
      if (a.s > i) continue;
      visible++;
      if (a.n > 1) retries++;
      if (a.e < 0 || a.e > i) running++;
      else if (a.o === 4) expired++;
    }
    for (const m of MK) if (m.i <= i) rejected++;
    const sum = document.getElementById("tl-summary");
    sum.textContent = visible + " attempts by " + lanes.length + " worker" + (lanes.length === 1 ? "" : "s") + " so far: " + running + " running, " +
      retries + " retries, " + expired + " lease expiries, " + rejected + " rejected late results.";
    sum.dataset.attempts = visible; sum.dataset.running = running; sum.dataset.retries = retries;
    sum.dataset.expiries = expired; sum.dataset.rejected = rejected;
    paintTimeline();
  }
  function paintTimeline() {
    const i = tlAt, vw = Math.min(tlWrap.clientWidth || 900, tlWidth), vh = Math.min(tlWrap.clientHeight || tlHeight, tlHeight);
    const sl = tlWrap.scrollLeft, st = tlWrap.scrollTop, dpr = window.devicePixelRatio || 1;
    if (tl.width !== Math.round(vw * dpr) || tl.height !== Math.round(vh * dpr)) {
      tl.width = Math.round(vw * dpr); tl.height = Math.round(vh * dpr);
      tl.style.width = vw + "px"; tl.style.height = vh + "px";
    }
    tl.style.transform = "translate(" + sl + "px," + st + "px)";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, vw, vh);
    ctx.translate(-sl, -st);
    const x0 = sl, x1 = sl + vw, y0 = st, y1 = st + vh;
    // Lanes.
    lanes.forEach((l, k) => {
      const h = Math.max(1, l.rows.length) * ROW + 6;
      if (laneY[k] - 3 > y1 || laneY[k] + h < y0) return;
      ctx.fillStyle = k % 2 ? "#ffffff" : "#f4f6f9";
      ctx.fillRect(x0, laneY[k] - 3, vw, h);
    });
    // Ticks at a round step.
    const steps = [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 3e7, 6e7, 12e7, 3e8, 6e8, 18e8, 36e8, 72e8, 216e8, 864e8];
    const want = span / Math.max(2, (tlWidth - LABEL) / 110);
    const step = steps.find((s) => s >= want) || steps[steps.length - 1];
    ctx.strokeStyle = "#e2e5ea"; ctx.lineWidth = 1;
    ctx.beginPath();
    for (let t = 0; t <= span; t += step) { const x = Math.round(tx(t)) + 0.5; if (x >= x0 && x <= x1) { ctx.moveTo(x, y0); ctx.lineTo(x, y1); } }
    ctx.stroke();
    // Bars: finished attempts in their outcome's colour, running ones up to the moment.
    const tNow = T[i];
    // One path per colour, filled once; outlines only where a bar is wide enough to show one.
    // Bars of one row that touch and share a colour are drawn as one (a dense run draws as a
    // few rectangles instead of thousands of sub-pixel ones).
    const paths = COLOURS.map(() => new Path2D()), outline = new Path2D();
    const runStart = new Float64Array(rowCount).fill(-1), runEnd = new Float64Array(rowCount), runColour = new Int8Array(rowCount);
    let drawn = 0;
    const flush = (r) => { if (runStart[r] >= 0) { paths[runColour[r]].rect(runStart[r], rowTop[r], runEnd[r] - runStart[r], BAR); runStart[r] = -1; } };
    for (const a of ATT) {
      if (a.s > i) continue;
      const y = rowTop[a.rid];
      if (y > y1 || y + BAR < y0) continue;
      const ended = a.e >= 0 && a.e <= i;
      const xs = tx(T[a.s]), xe = Math.max(xs + 1.5, tx(ended ? T[a.e] : tNow));
      if (xe < x0 || xs > x1) continue;
      drawn++;
      const colour = ended ? a.o : 0, r = a.rid;
      if (xe - xs > 4) { flush(r); paths[colour].rect(xs, y, xe - xs, BAR); outline.rect(xs, y, xe - xs, BAR); continue; }
      if (runStart[r] >= 0 && runColour[r] === colour && xs <= runEnd[r] + 0.5) { if (xe > runEnd[r]) runEnd[r] = xe; continue; }
      flush(r);
      runStart[r] = xs; runEnd[r] = xe; runColour[r] = colour;
    }
    for (let r = 0; r < rowCount; r++) flush(r);
    paths.forEach((p, k) => { ctx.fillStyle = COLOURS[k]; ctx.fill(p); });
    ctx.lineWidth = 0.5; ctx.strokeStyle = "rgba(0,0,0,.35)";
    ctx.stroke(outline);
    // Rejected late results.
    ctx.fillStyle = "#d00000"; ctx.strokeStyle = "#fff";
    for (const m of MK) {
      if (m.i > i) continue;
      const x = tx(T[m.i]), y = barY(m.lane, m.row) + BAR / 2;
      if (x < x0 - 6 || x > x1 + 6 || y < y0 - 6 || y > y1 + 6) continue;
      ctx.beginPath(); ctx.moveTo(x, y - 6); ctx.lineTo(x + 5, y); ctx.lineTo(x, y + 6); ctx.lineTo(x - 5, y); ctx.closePath(); ctx.fill(); ctx.stroke();
    }
    // The moment.
    const cx = Math.round(tx(tNow)) + 0.5;
    ctx.strokeStyle = "#1565c0"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(cx, y0); ctx.lineTo(cx, y1); ctx.stroke();
    // Sticky axis and worker labels.
    ctx.fillStyle = "rgba(255,255,255,.92)";
    ctx.fillRect(x0, y0, vw, 16);
    ctx.font = "10px Helvetica, Arial, sans-serif"; ctx.fillStyle = "#333"; ctx.textBaseline = "alphabetic";
    for (let t = 0; t <= span; t += step) { const x = tx(t); if (x >= x0 - 60 && x <= x1) ctx.fillText("+" + dur(t), x + 2, y0 + 11); }
    ctx.fillStyle = "rgba(255,255,255,.85)";
    ctx.fillRect(x0, y0 + 16, LABEL, vh);
    ctx.fillStyle = "#333";
    lanes.forEach((l, k) => {
      const y = laneY[k] + 10;
      if (y < y0 + 20 || y > y1) return;
      const label = str(l.w);
      ctx.fillText(label.length > 28 ? label.slice(0, 27) + "…" : label, x0 + 4, y);
    });
    tl.dataset.drawn = drawn;
  }
  // What is under the mouse: an attempt (in its lane and row) or a rejection mark.
  const rowLists = new Map();
  // Every (lane, row) pair gets an id, for the painter's run merging.
  const rowTop = [];
  let rowCount = 0;
  {
    const ids = new Map();
    for (const a of ATT) {
      const key = a.lane + ":" + a.row;
      if (!ids.has(key)) { ids.set(key, rowCount++); rowTop.push(barY(a.lane, a.row)); }
      a.rid = ids.get(key);
    }
  }
  ATT.forEach((a, k) => { const key = a.lane + ":" + a.row; if (!rowLists.has(key)) rowLists.set(key, []); rowLists.get(key).push(k); });
  function timelineHit(e) {
    const r = tl.getBoundingClientRect(), x = e.clientX - r.left + tlWrap.scrollLeft, y = e.clientY - r.top + tlWrap.scrollTop, i = tlAt;
    for (let k = 0; k < MK.length; k++) {
      const m = MK[k];
      if (m.i <= i && Math.abs(tx(T[m.i]) - x) <= 6 && Math.abs(barY(m.lane, m.row) + BAR / 2 - y) <= 6) return { mark: k };
    }
    const lane = laneY.findIndex((ly, k) => y >= ly && y < ly + Math.max(1, lanes[k].rows.length) * ROW);
    if (lane < 0) return null;
    const row = Math.floor((y - laneY[lane]) / ROW);
    for (const k of rowLists.get(lane + ":" + row) || []) {
      const a = ATT[k];
      if (a.s > i) continue;
      const ended = a.e >= 0 && a.e <= i, xs = tx(T[a.s]), xe = Math.max(xs + 1.5, tx(ended ? T[a.e] : T[i]));
      if (x >= xs - 1 && x <= xe + 1) return { attempt: k };
    }
    return null;
  }
  tlWrap.addEventListener("scroll", () => requestAnimationFrame(paintTimeline));
  window.addEventListener("resize", () => { layoutTimeline(); paintTimeline(); });

  // ---- Graph ----
  const nodes = [];
  for (let j = 0; j < NJ; j++) nodes.push(document.getElementById("n" + j));
  const nodeClass = new Array(NJ).fill("");
  let selected = -1;
  function jobClass(s, j, i) {
    const st = s.st[j];
    if (st < 0) return "s-none";
    let c = "s-" + STATUS[st];
    if (st === 0 && s.rs[j] >= 0) c += s.nb[j] > T[i] ? " waiting" : " ready";
    return c;
  }
  function drawGraph(s, i) {
    for (let j = 0; j < NJ; j++) {
      const c = "node " + jobClass(s, j, i) + (j === selected ? " sel" : "");
      if (nodeClass[j] !== c && nodes[j]) { nodeClass[j] = c; nodes[j].setAttribute("class", c); }
    }
  }

  // ---- Table (paged: only the rows of one page are in the document) ----
  const tbody = document.getElementById("rows");
  const PAGE = 100;
  let page = 0, sortKey = "order", sortDir = 1, filter = "all", search = "";
  const pool = [];
  function slot(k) {
    while (pool.length <= k) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td class="name"></td><td class="status"></td><td class="num attempts"></td><td class="num duration"></td><td class="worker"></td><td class="error"></td><td class="output"></td>';
      tr.cache = ["", "", "", "", "", "", ""];
      tbody.appendChild(tr);
      pool.push(tr);
    }
    return pool[k];
  }
  const outputCache = new Map();
  function outputHTML(s, j) {
    if (s.out[j] < 0 && s.out2[j] < 0) return "";
    const key = s.out[j] + ":" + s.out2[j];
    let h = outputCache.get(key);
    if (h !== undefined) return h;
    const o = txt(s.out[j]), e = txt(s.out2[j]);
    const lines = (o || e).replace(/\s+$/, "").split("\n");
    h = "<details><summary>" + esc(lines[lines.length - 1].slice(0, 120) || "(output)") + "</summary>";
    if (o) h += "<pre>" + esc(o) + "</pre>";
    if (e) h += '<pre class="err">' + esc(e) + "</pre>";
    h += "</details>";
    outputCache.set(key, h);
    return h;
  }
  function durationOf(s, j, i) {
    if (s.fs[j] < 0) return -1;
    return (s.en[j] >= 0 ? s.en[j] : T[i]) - s.fs[j];
  }
  function statusHTML(s, j, i) {
    const st = s.st[j];
    if (st < 0) return '<span class="st">not created</span>';
    let sub = "";
    if (st === 0) {
      if (s.rs[j] >= 0) sub = s.nb[j] > T[i] ? "retry after +" + dur(s.nb[j]) : "ready";
      else {
        const blockers = PAR[j].filter((p) => s.st[p] === 3 || s.st[p] === 4).map(name);
        const waiting = PAR[j].filter((p) => s.st[p] !== 2).length;
        sub = blockers.length ? "blocked by " + blockers.join(", ") : "waiting for " + waiting + " parent" + (waiting === 1 ? "" : "s");
      }
    } else if (st === 1 && s.cl[j] >= 0) sub = "since +" + dur(s.cl[j]);
    else if (st >= 3 && s.rsn[j] >= 0) sub = "(" + str(s.rsn[j]) + ")";
    return '<span class="st">' + STATUS[st] + "</span>" + (sub ? '<span class="sub">' + esc(sub) + "</span>" : "");
  }
  function drawTable(s, i) {
    const counts = [0, 0, 0, 0, 0];
    const match = [];
    for (let j = 0; j < NJ; j++) {
      const st = s.st[j];
      if (st < 0) continue;
      counts[st]++;
      if ((filter === "all" || filter === STATUS[st]) && (!search || D.jt[j].toLowerCase().includes(search))) match.push(j);
    }
    if (sortKey !== "order") {
      const key = {
        name: (j) => D.jt[j], status: (j) => s.st[j], attempts: (j) => s.att[j], duration: (j) => durationOf(s, j, i),
        worker: (j) => str(s.wk[j]), error: (j) => txt(s.err[j]), output: (j) => txt(s.out[j]) + txt(s.out2[j]),
      }[sortKey];
      const keys = new Map(match.map((j) => [j, key(j)]));
      match.sort((a, b) => { const x = keys.get(a), y = keys.get(b); return (x < y ? -1 : x > y ? 1 : a - b) * sortDir; });
    }
    const pages = Math.max(1, Math.ceil(match.length / PAGE));
    if (page >= pages) page = pages - 1;
    const first = page * PAGE, shown = match.slice(first, first + PAGE);
    shown.forEach((j, k) => {
      const tr = slot(k), cache = tr.cache, st = s.st[j];
      if (tr.style.display) tr.style.display = "";
      if (tr.dataset.j !== String(j)) { tr.dataset.j = j; tr.dataset.job = D.jt[j]; }
      tr.classList.toggle("sel", j === selected);
      const status = STATUS[st];
      if (tr.dataset.status !== status) tr.dataset.status = status;
      const d = durationOf(s, j, i);
      const cells = [esc(D.jt[j]), statusHTML(s, j, i),
        String(s.att[j]) + (s.rej[j] ? ' <span class="sub">' + s.rej[j] + " rejected</span>" : ""),
        d < 0 ? "" : dur(d) + (st === 1 ? "…" : ""), esc(str(s.wk[j])), esc(txt(s.err[j])), outputHTML(s, j)];
      for (let c = 0; c < 7; c++) if (cache[c] !== cells[c]) { cache[c] = cells[c]; tr.cells[c].innerHTML = cells[c]; }
    });
    for (let k = shown.length; k < pool.length; k++) if (!pool[k].style.display) pool[k].style.display = "none";
    const total = counts.reduce((a, b) => a + b, 0);
    let fh = '<button data-f="all" class="' + (filter === "all" ? "on" : "") + '">all ' + total + "</button>";
    STATUS.forEach((name, k) => { fh += '<button data-f="' + name + '" class="' + (filter === name ? "on" : "") + '">' + name + " " + counts[k] + "</button>"; });
    const filters = document.getElementById("filters");
    if (filters.dataset.html !== fh) { filters.dataset.html = fh; filters.innerHTML = fh; }
    document.getElementById("shown").textContent = match.length === 0 ? "no jobs match" :
      "jobs " + (first + 1) + "–" + (first + shown.length) + " of " + match.length + (match.length === total ? "" : " shown (" + total + " in all)");
    document.getElementById("page-prev").disabled = page === 0;
    document.getElementById("page-next").disabled = page >= pages - 1;
    document.getElementById("pager").hidden = pages === 1;
  }
  document.getElementById("page-prev").onclick = () => { page = Math.max(0, page - 1); render(at); };
  document.getElementById("page-next").onclick = () => { page++; render(at); };

  // ---- Header ----
  function drawHeader(s, i) {
    const run = s.run, badge = document.getElementById("run-status");
    const rs = run.made ? RUNSTATUS[run.status] : "not created";
    badge.textContent = rs; badge.className = "badge " + rs;
    const parts = [];
    STATUS.forEach((n, k) => { if (run.counts[k]) parts.push(run.counts[k] + " " + n); });
    document.getElementById("run-counts").textContent = run.total + " jobs: " + (parts.join(", ") || "none yet") + " · " + run.ready + " ready" +
      (run.ended >= 0 ? " · ended at +" + dur(run.ended) : "") + (run.abortedByOp ? " · aborted by an operator" + (run.abortReason >= 0 ? " (" + str(run.abortReason) + ")" : "") : "");
    document.body.dataset.position = P[i];
    document.body.dataset.runStatus = rs;
    document.getElementById("at-pos").textContent = "@" + P[i];
    document.getElementById("at-time").textContent = iso(T[i]) + " (+" + dur(T[i]) + ") · fact " + (i + 1) + " of " + NF + " of this run";
    const k = K[i];
    let f = KIND[k] + (J[i] >= 0 ? " " + name(J[i]) : "") + (A[i] ? " attempt " + A[i] : "") + (WK[i] >= 0 ? " by " + str(WK[i]) : "") + (R[i] >= 0 ? " (" + str(R[i]) + ")" : "");
    if ((k === FAILED || k === RELEASED) && X[i] > 0) f += ": " + txt(X[i] - 1).slice(0, 160);
    if (k === REJECTED && X[i] > 0) f += ": " + txt(X[i] - 1);
    document.getElementById("at-fact").textContent = f;
  }

  // ---- Rendering, the slider, the URL fragment ----
  const slider = document.getElementById("slider");
  let at = NF - 1;
  function render(i) {
    i = Math.max(0, Math.min(i, limit));
    at = i;
    let c = performance.now();
    const lap = (k) => { const n = performance.now(); parts[k] += n - c; c = n; };
    const s = seek(i);
    lap(0);
    slider.value = i;
    drawHeader(s, i);
    drawGraph(s, i);
    lap(1);
    drawTimeline(i);
    lap(2);
    drawTable(s, i);
    lap(3);
  }
  const parts = [0, 0, 0, 0];
  let raf = 0, pending = 0;
  function request(i, updateURL) {
    pending = i;
    if (updateURL !== false) try { history.replaceState(null, "", "#@" + P[Math.max(0, Math.min(i, limit))]); } catch (e) { /* file: URLs may refuse */ }
    if (!raf) raf = requestAnimationFrame(() => { raf = 0; render(pending); });
  }
  function indexOfPosition(p) {
    let lo = 0, hi = NF - 1;
    if (p < P[0]) return 0;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (P[mid] <= p) lo = mid; else hi = mid - 1; }
    return lo;
  }
  function fromHash() {
    const m = /@(\d+)/.exec(location.hash);
    return m ? indexOfPosition(Number(m[1])) : NF - 1;
  }
  slider.addEventListener("input", () => request(Number(slider.value)));
  document.getElementById("first").onclick = () => request(0);
  document.getElementById("last").onclick = () => request(NF - 1);
  document.getElementById("prev").onclick = () => request(at - 1);
  document.getElementById("next").onclick = () => request(at + 1);
  let timer = 0;
  document.getElementById("play").onclick = (e) => {
    if (timer) { clearInterval(timer); timer = 0; e.target.textContent = "play"; return; }
    if (at >= limit) at = -1;
    e.target.textContent = "pause";
    const step = Math.max(1, Math.round(NF / 500));
    timer = setInterval(() => {
      const n = Math.min(at + step, limit);
      render(n);
      if (n >= limit) { clearInterval(timer); timer = 0; e.target.textContent = "play"; }
    }, 50);
  };
  document.addEventListener("keydown", (e) => {
    if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA")) return;
    if (e.key === "ArrowLeft") request(at - 1);
    else if (e.key === "ArrowRight") request(at + 1);
    else if (e.key === "Home") request(0);
    else if (e.key === "End") request(NF - 1);
  });
  window.addEventListener("hashchange", () => render(fromHash()));
  document.getElementById("filters").addEventListener("click", (e) => {
    const f = e.target.dataset && e.target.dataset.f;
    if (f) { filter = f; page = 0; render(at); }
  });
  document.getElementById("search").addEventListener("input", (e) => { search = e.target.value.trim().toLowerCase(); page = 0; render(at); });
  document.querySelectorAll("#jobs th").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.sort;
    if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = 1; }
    document.querySelectorAll("#jobs th").forEach((o) => o.classList.remove("asc", "desc"));
    th.classList.add(sortDir > 0 ? "asc" : "desc");
    render(at);
  }));
  function select(j, fromGraph) {
    selected = j;
    if (fromGraph) {
      // Show the job's row: clear the filters that hide it and turn to its page.
      filter = "all"; search = ""; document.getElementById("search").value = "";
      sortKey = "order"; sortDir = 1;
      document.querySelectorAll("#jobs th").forEach((o) => o.classList.remove("asc", "desc"));
      let k = 0;
      for (let x = 0; x < j; x++) if (cur.st[x] >= 0) k++;
      page = Math.floor(k / PAGE);
    }
    render(at);
    if (fromGraph) {
      const tr = pool.find((r) => r.dataset.j === String(j) && !r.style.display);
      if (tr) tr.scrollIntoView({ block: "center" });
    } else if (nodes[j] && nodes[j].scrollIntoView) nodes[j].scrollIntoView({ block: "center", inline: "center" });
  }
  document.getElementById("graph").addEventListener("click", (e) => {
    const g = e.target.closest && e.target.closest(".node");
    if (g) select(Number(g.dataset.j), true);
  });
  tl.addEventListener("click", (e) => {
    const hit = timelineHit(e);
    if (hit) select(hit.attempt !== undefined ? ATT[hit.attempt].j : MK[hit.mark].j, true);
  });
  tbody.addEventListener("click", (e) => {
    const tr = e.target.closest && e.target.closest("tr");
    if (tr && !e.target.closest("details")) select(Number(tr.dataset.j), false);
  });
  const graphSVG = document.getElementById("graph");
  const naturalW = graphSVG.getAttribute("width"), naturalH = graphSVG.getAttribute("height");
  function graphZoom(fit) {
    if (fit) { graphSVG.setAttribute("width", "100%"); graphSVG.removeAttribute("height"); }
    else { graphSVG.setAttribute("width", naturalW); graphSVG.setAttribute("height", naturalH); }
    document.querySelectorAll("[data-gz]").forEach((o) => o.classList.toggle("on", (o.dataset.gz === "0") === fit));
  }
  document.querySelectorAll("[data-gz]").forEach((b) => b.addEventListener("click", () => graphZoom(b.dataset.gz === "0")));
  // A graph much wider than the page opens fitted (an overview of the colours); 100% shows names.
  graphZoom(Number(naturalW) > (document.getElementById("graph-wrap").clientWidth || 900) * 1.5);
  document.querySelectorAll("[data-tz]").forEach((b) => b.addEventListener("click", () => {
    tlZoom = Number(b.dataset.tz); layoutTimeline(); drawTimeline(at);
    document.querySelectorAll("[data-tz]").forEach((o) => o.classList.toggle("on", o === b));
  }));
  // Tooltips.
  const tip = document.getElementById("tip");
  function showTip(e, text) { tip.hidden = false; tip.textContent = text; tip.style.left = Math.min(e.clientX + 12, innerWidth - 470) + "px"; tip.style.top = (e.clientY + 14) + "px"; }
  document.addEventListener("mousemove", (e) => {
    const t = e.target;
    const hit = t === tl ? timelineHit(e) : null;
    if (hit && hit.attempt !== undefined) {
      const a = ATT[hit.attempt], ended = a.e >= 0 && a.e <= at;
      const end = ended ? T[a.e] : T[at];
      showTip(e, name(a.j) + " · attempt " + a.n + " · " + str(a.w) + "\n+" + dur(T[a.s]) + " → +" + dur(end) + " (" + dur(end - T[a.s]) + ")\n" +
        (ended ? OUTNAME[a.o] + (a.o >= 2 && a.o <= 5 && X[a.e] > 0 ? ": " + txt(X[a.e] - 1).slice(0, 300) : "") : "running at this moment"));
    } else if (hit && hit.mark !== undefined) {
      const m = MK[hit.mark];
      showTip(e, name(m.j) + " · " + str(m.w) + " at +" + dur(T[m.i]) + "\n" + txt(X[m.i] - 1));
    } else if (t.closest && t.closest("#graph .node")) {
      const j = Number(t.closest("#graph .node").dataset.j), s = cur;
      showTip(e, D.jt[j] + " — " + (s.st[j] < 0 ? "not created yet" : STATUS[s.st[j]] + (s.att[j] ? ", attempt " + s.att[j] : "") + (s.wk[j] >= 0 ? ", " + str(s.wk[j]) : "")) +
        (s.err[j] >= 0 ? "\n" + txt(s.err[j]).slice(0, 300) : ""));
    } else tip.hidden = true;
  });

  // ---- Start ----
  const t0 = performance.now();
  seek(NF - 1);  // folds everything once, keeping the snapshots
  layoutTimeline();
  render(fromHash());
  document.body.dataset.loadMs = Math.round(performance.now() - t0);
  if (/bench/.test(location.hash)) {
    // Responsiveness check: random slider moves, each a fold from a snapshot plus a full redraw.
    let total = 0, worst = 0, seed = 7;
    for (let n = 0; n < 40; n++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const i = seed % NF, a = performance.now();
      render(i);
      void document.body.offsetHeight;  // include style and layout
      const d = performance.now() - a;
      total += d; worst = Math.max(worst, d);
    }
    render(fromHash());
    document.body.dataset.benchAvgMs = (total / 40).toFixed(1);
    document.body.dataset.benchMaxMs = worst.toFixed(1);
    document.body.dataset.benchParts = "fold " + (parts[0] / 41).toFixed(1) + ", graph " + (parts[1] / 41).toFixed(1) + ", timeline " + (parts[2] / 41).toFixed(1) + ", table " + (parts[3] / 41).toFixed(1);
  }
  document.body.dataset.ready = "1";
})();
"""#
}
