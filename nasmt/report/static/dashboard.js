/* nasmt dashboard: renders the payload embedded in #nasmt-data (and, live, /api/data).
 * No external libraries besides plotly.js. User strings go into the DOM only through
 * textContent, and into Plotly text only HTML-escaped (esc). */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var D = null;          // current payload
  var sel = null;        // selected global row index
  var bound = {};        // plot ids with click handlers attached
  var PAGE = 200;        // table rows in the DOM at a time (10k rows would make every redraw slow)
  var POLL_MS = 2500;    // live mode: how often to ask /api/data for a new version (a 204 costs a stat())
  var NEAR_PX = 300;     // lazy views are drawn once they come this close to the viewport
  var C = {};            // table column key -> index in a row (rows are read by key only)
  var T = { sortKey: 'number', sortDir: 1, filter: '', status: 'all', page: 0, order: [], search: null };
  var CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ['sendDataToCloud', 'lasso2d'] };

  function esc(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function fmt(v, type) {
    if (v === null || v === undefined || v === '') return '';
    if (type === 'bool') return v ? '●' : '';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v) && Math.abs(v) >= 1000) return v.toLocaleString('en-US');
    if (Number.isInteger(v)) return String(v);
    var a = Math.abs(v);
    if (a >= 1000) return Math.round(v).toLocaleString('en-US');
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(3);
    return v.toPrecision(4);
  }
  function indexColumns() {
    C = {};
    D.table.columns.forEach(function (c, i) { C[c.key] = i; });
  }
  function row(g) { return D.table.rows[g]; }
  function runOf(g) { return D.runs[row(g)[C.run]]; }
  function objValue(g, j) { return D.table.drawn[g][j]; }  // as every view draws row g (finalized: full budget)

  // ------------------------------------------------------------------ header and cards
  function renderHeader() {
    var box = $('runs-summary'); clear(box);
    D.runs.forEach(function (r) {
      var s = el('span', 'run');
      var sw = el('span', 'sw'); sw.style.background = r.color; s.appendChild(sw);
      s.appendChild(el('span', null, r.name + ' · ' + r.suite + ' · ' + r.grammar_name));
      box.appendChild(s);
    });
    var cards = $('cards'); clear(cards);
    function card(v, k) { var c = el('div', 'stat'); c.appendChild(el('div', 'v', v)); c.appendChild(el('div', 'k', k)); cards.appendChild(c); }
    var n = 0, nc = 0, nf = 0, ns = 0, front = 0;
    D.runs.forEach(function (r) { n += r.n_trials; nc += r.n_complete; nf += r.n_failed; ns += r.n_stopped; front += r.front.length; });
    card(fmt(n), 'trials (' + D.runs.length + (D.runs.length > 1 ? ' runs)' : ' run)'));
    card(fmt(nc), 'complete');
    card(fmt(nf) + ' / ' + fmt(ns), 'failed / stopped');
    card(fmt(front), 'on the Pareto front');
    D.objectives.forEach(function (o, j) {
      var best = null;
      D.table.rows.forEach(function (rw, g) {
        var v = objValue(g, j);
        if (rw[C.status] !== 'complete' || v === null) return;
        if (best === null || (o.direction === 'min' ? v < best : v > best)) best = v;
      });
      card(best === null ? '–' : fmt(best), 'best ' + o.label + (o.direction === 'min' ? ' ↓' : ' ↑'));
    });
    card(D.runs.map(function (r) { return r.hypervolume.toFixed(3); }).join(' / '), 'hypervolume (normalized)');
    renderReferences();
    $('hv-hint').textContent = D.notes.hypervolume;
    $('genome-hint').textContent = D.notes.genome;
    $('imp-hint').textContent = D.notes.importance_evaluator ? ('Optuna ' + D.notes.importance_evaluator + ', run ' + D.runs[0].name) : '';
    $('footer').textContent = 'nasmt report · generated ' + D.generated_at + ' · objectives: ' +
      D.objectives.map(function (o) { return o.name + ':' + o.direction; }).join(', ');
  }

  // Reference models (nasmt baselines): the page's sentences about them under the cards,
  // and a status filter for their table rows.
  function renderReferences() {
    var box = $('reference-notes');
    if (!box) { box = el('section', 'card'); box.id = 'reference-notes'; $('cards').after(box); }
    clear(box); box.hidden = !D.notes.references.length;
    D.notes.references.forEach(function (t) { box.appendChild(el('p', null, t)); });
    var sf = $('status-filter'), has = D.table.rows.some(function (rw) { return rw[C.status] === 'reference'; });
    if (has && !$('status-reference')) { var o = el('option', null, 'reference'); o.id = 'status-reference'; sf.appendChild(o); }
  }

  // ------------------------------------------------------------------ figures
  // The Pareto plot is drawn at once; the other views when they are near the viewport
  // (WebGL views such as parallel coordinates are costly without a GPU), or on drawAll().
  var LAZY = ['hypervolume', 'tasks', 'sharing', 'oneshot', 'controllable', 'genome', 'importance'];
  var CLICKABLE = { pareto: true, tasks: true, sharing: true, oneshot: true };  // points carry [g, trial number, ...]
  var pending = {};
  function drawFigure(k) {
    var fig = D.figures[k], div = $('plot-' + k);
    delete pending[k];
    if (!fig || !div) return;
    Plotly.react(div, fig.data, fig.layout, CONFIG);
    div.dataset.drawn = D.version;
    if (!bound[k] && CLICKABLE[k]) {
      bound[k] = true;
      div.on('plotly_click', function (ev) {
        var p = ev && ev.points && ev.points[0];
        if (!p) return;
        var cd = p.customdata;
        if (cd === undefined && p.data && p.data.customdata) cd = p.data.customdata[p.pointNumber];
        if (cd && cd.length) select(cd[0], true);
      });
    }
    if (!Object.keys(pending).length) document.body.dataset.allDrawn = D.version;
  }
  function near(div) {
    var r = div.getBoundingClientRect(), h = window.innerHeight || 800;
    return r.bottom > -NEAR_PX && r.top < h + NEAR_PX;
  }
  function drawVisible() {
    LAZY.forEach(function (k) { if (pending[k] && near($('plot-' + k))) drawFigure(k); });
  }
  var visTimer = null;
  function scheduleVisible() { clearTimeout(visTimer); visTimer = setTimeout(drawVisible, 60); }
  window.addEventListener('scroll', scheduleVisible, { passive: true });
  window.addEventListener('resize', scheduleVisible);
  function drawAll() { LAZY.forEach(function (k) { if (pending[k]) drawFigure(k); }); }
  function renderFigures(changed) {  // changed: the figure keys a live delta brought (all when absent)
    document.body.dataset.allDrawn = '';
    $('sharing-card').hidden = !D.figures.sharing;  // runs that record no sharing family / balancing method have none
    $('oneshot-card').hidden = !D.figures.oneshot;  // only runs checked by `nasmt oneshot-check` have one
    $('controllable-card').hidden = !D.figures.controllable;  // only one-shot runs have one
    LAZY.forEach(function (k) { if (!changed || changed.indexOf(k) >= 0) pending[k] = true; });
    if (!changed || changed.indexOf('pareto') >= 0) drawFigure('pareto');
    if (!Object.keys(pending).length) document.body.dataset.allDrawn = D.version;
    setTimeout(drawVisible, 0);
  }

  // Task affinity (affinity.json in a run directory): one heatmap per run that has one,
  // drawn at once (a few cells each).
  function renderAffinity() {
    var list = D.affinity || [], box = $('affinity-plots');
    Array.prototype.forEach.call(box.querySelectorAll('.plot'), function (d) { Plotly.purge(d); });
    clear(box);
    $('affinity-card').hidden = !list.length;
    list.forEach(function (a, i) {
      var wrap = el('div', 'affinity-run');
      if (D.runs.length > 1) wrap.appendChild(el('h3', null, a.run));
      wrap.appendChild(el('p', 'hint', a.note));
      var div = el('div', 'plot'); div.id = 'plot-affinity-' + i; div.style.height = a.height + 'px';
      wrap.appendChild(div); box.appendChild(wrap);
      Plotly.react(div, a.figure.data, a.figure.layout, CONFIG);
    });
  }

  function selectedTraceIndex() {
    var data = $('plot-pareto').data || [];
    for (var i = data.length - 1; i >= 0; i--) if (data[i].name === 'selected') return i;
    return -1;
  }

  function markPareto(g) {
    var gd = $('plot-pareto'), i = selectedTraceIndex();
    if (i < 0) return;
    var rw = g === null ? null : row(g), dims = D.pareto_dims;
    var xs = [], ys = [], zs = [];
    if (rw && D.objectives.every(function (o, j) { return j >= dims || objValue(g, j) !== null; })) {
      if (dims === 1) { xs = [rw[C.number]]; ys = [objValue(g, 0)]; }
      else { xs = [objValue(g, 0)]; ys = [objValue(g, 1)]; if (dims >= 3) zs = [objValue(g, 2)]; }
    }
    var upd = { x: [xs], y: [ys] };
    if (dims >= 3) upd.z = [zs];
    Plotly.restyle(gd, upd, [i]);
  }

  // ------------------------------------------------------------------ architecture drawing
  var PREC = { fp32: ['#edf2ff', '#748ffc'], bf16: ['#e6fcf5', '#38d9a9'], int8: ['#fff4e6', '#ffa94d'], int4: ['#fff0f6', '#f783ac'] };
  function precColors(p) { return PREC[p.w] || ['#f1f3f5', '#adb5bd']; }

  function drawArch(info, note) {
    var div = $('plot-arch');
    var shapes = [], ann = [];
    if (!info) {
      div.style.height = '120px';
      Plotly.react(div, [], { xaxis: { visible: false }, yaxis: { visible: false }, margin: { l: 0, r: 0, t: 0, b: 0 },
        paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)',
        annotations: [{ text: esc(note || 'no architecture recorded for this trial'), showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5,
          font: { color: '#868e96', size: 13 } }] }, { displayModeBar: false, responsive: true });
      return;
    }
    // layout in abstract units; one unit becomes `px` pixels (fit to the panel's width)
    var W = 1.0, GAP = 0.32, LH = 0.15, PAD = 0.1;
    var xmax = 0, ymin = 0;
    function box(x, yTop, w, lines, colors, title) {
      var h = LH * (lines.length + 1) + PAD;
      shapes.push({ type: 'rect', x0: x, x1: x + w, y0: yTop - h, y1: yTop, fillcolor: colors[0],
        line: { color: colors[1], width: 1.4 }, layer: 'below' });
      var txt = '<b>' + esc(title) + '</b>' + (lines.length ? '<br>' + lines.map(esc).join('<br>') : '');
      ann.push({ x: x + w / 2, y: yTop - h / 2, text: txt, showarrow: false, font: { size: 10, color: '#343a40' }, align: 'center' });
      xmax = Math.max(xmax, x + w); ymin = Math.min(ymin, yTop - h);
      return h;
    }
    function line(x0, y0, x1, y1, color) {
      shapes.push({ type: 'line', x0: x0, y0: y0, x1: x1, y1: y1, line: { color: color || '#868e96', width: 1.5 } });
    }
    var inp = info.input && info.input.length ? info.input.join('×') : '?';
    var IW = 0.7 * W;
    var hIn = box(0, 0, IW, [inp], ['#f8f9fa', '#ced4da'], 'input');
    var trunkH = hIn, stageX = [], stageBottom = [];
    info.stages.forEach(function (s, i) {
      var x = IW + GAP + i * (W + GAP);
      stageX.push(x);
      var lines = s.ops.slice(); lines.push('w:' + s.prec.w + ' a:' + s.prec.a);
      var h = box(x, 0, W, lines, precColors(s.prec), 'stage ' + (i + 1));
      stageBottom.push(-h);
      trunkH = Math.max(trunkH, h);
      line(x - GAP, -LH, x, -LH);
    });
    var y = -trunkH - 0.3;
    info.branches.forEach(function (b, j) {
      var tapIdx = Math.max(0, Math.min(info.stages.length - 1, b.tap - 1));
      var sx = stageX.length ? stageX[tapIdx] + W * 0.15 + j * 0.06 : IW / 2;
      var lines = b.layers.concat(b.head);
      lines.push('w:' + b.prec.w + ' a:' + b.prec.a);
      var bx = sx + 0.12;
      var h = box(bx, y, W, lines, precColors(b.prec), 'branch (from stage ' + b.tap + ')');
      var mid = y - Math.min(h / 2, LH * 1.5);
      line(sx, stageBottom.length ? stageBottom[tapIdx] : -hIn, sx, mid, '#495057');
      line(sx, mid, bx, mid, '#495057');
      var ox = bx + W + GAP * 0.6;
      line(bx + W, mid, ox, mid, '#495057');
      var oh = LH * 2 + PAD;
      box(ox, mid + oh / 2, W * 0.9, ['linear → ' + (b.out === null ? '?' : b.out)], ['#fff9db', '#fcc419'], b.task);
      y -= Math.max(h, oh) + 0.2;
    });
    var legend = Object.keys(PREC).map(function (k) { return '<span style="color:' + PREC[k][1] + '">■</span> ' + k; }).join('  ');
    ann.push({ text: 'fill = weight precision:  ' + legend, showarrow: false, xref: 'paper', yref: 'paper', x: 0, y: 1.0,
      xanchor: 'left', yanchor: 'bottom', font: { size: 10, color: '#868e96' } });
    var width = Math.max(200, div.clientWidth || 500);
    var xr = [-0.05, xmax + 0.05], yr = [ymin - 0.05, 0.05];
    var px = Math.min(150, width / (xr[1] - xr[0]));
    var fs = Math.max(7, Math.min(11, px * 0.085));
    ann.forEach(function (a) { if (a.xref !== 'paper') a.font.size = fs; });
    div.style.height = Math.round((yr[1] - yr[0]) * px + 26) + 'px';
    Plotly.react(div, [], {
      shapes: shapes, annotations: ann, margin: { l: 0, r: 0, t: 22, b: 4 }, showlegend: false,
      xaxis: { visible: false, range: xr }, yaxis: { visible: false, range: yr },
      paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)', hovermode: false, dragmode: 'pan',
      font: { family: 'Inter, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif' }
    }, { displayModeBar: false, responsive: true });
  }

  // ------------------------------------------------------------------ selection
  function exportCommand(g) {
    var r = runOf(g), n = row(g)[C.number];
    return r.export[0] + n + r.export[1] + n;
  }

  function select(g, fromPlot) {
    if (g === null || g === undefined || !D.table.rows[g]) { g = null; }
    sel = g;
    document.body.dataset.selected = g === null ? '' : String(g);
    var m = $('sel-metrics'); clear(m);
    if (g === null) {
      $('sel-title').textContent = 'Selected trial'; $('export-cmd').textContent = ''; drawArch(null); return;
    }
    var rw = row(g), r = runOf(g), cols = D.table.columns, ref = rw[C.status] === 'reference';
    $('sel-title').textContent = (ref ? 'Reference · ' + rw[C.reference] : 'Trial ' + rw[C.number]) +
      (D.runs.length > 1 ? ' · ' + r.name : '');
    var st = $('sel-status');
    var front = rw[C.front] === 1;
    st.textContent = front ? 'Pareto front' : rw[C.status];
    st.className = 'badge ' + (front ? 'front' : rw[C.status]);
    cols.forEach(function (c, i) {
      if (c.type !== 'num' || rw[i] === null) return;
      var d = el('div'); d.appendChild(el('span', 'k', c.label));
      d.appendChild(el('span', 'v' + (c.objective ? ' obj' : ''), fmt(rw[i]))); m.appendChild(d);
    });
    $('export-cmd').textContent = ref ? '' : exportCommand(g);
    document.body.dataset.selectedTrial = ref ? '' : String(rw[C.number]);
    var err = rw[C.error], eb = $('sel-error');
    if (err) { eb.hidden = false; eb.textContent = err; } else { eb.hidden = true; eb.textContent = ''; }
    var hash = rw[C.hash];
    $('arch-hash').textContent = hash ? '[' + hash + ']' : '';
    document.querySelector('#selection .export').hidden = ref;  // a reference model is not a searched trial
    var missing = hash && !D.archs[hash] ? (D.notes.archs || 'architecture not in this page') : null;  // large runs: front only
    drawArch(hash ? D.archs[hash] : null, ref ? 'reference model: ' + rw[C.reference] + ' (nasmt baselines)' : missing);
    markPareto(g);
    showRow(g, fromPlot);
  }

  // ------------------------------------------------------------------ table
  function rowText(g) {
    if (!T.search) T.search = [];
    if (T.search[g] === undefined) {
      var rw = row(g), cols = D.table.columns, parts = [];
      for (var i = 0; i < rw.length; i++) {
        var v = rw[i];
        if (cols[i].type === 'run') v = D.runs[v].name;
        if (v !== null && v !== '') parts.push(typeof v === 'number' ? fmt(v) + ' ' + v : String(v));
      }
      T.search[g] = parts.join(' ').toLowerCase();
    }
    return T.search[g];
  }

  function computeOrder() {
    var rows = D.table.rows, n = rows.length, out = [], f = T.filter.toLowerCase(), s = T.status;
    for (var g = 0; g < n; g++) {
      var rw = rows[g];
      if (s === 'front' ? rw[C.front] !== 1 : (s !== 'all' && rw[C.status] !== s)) continue;
      if (f && rowText(g).indexOf(f) < 0) continue;
      out.push(g);
    }
    var c = C[T.sortKey], d = T.sortDir, type = D.table.columns[c].type;
    if (type === 'num' || type === 'int' || type === 'bool') { T.order = numericOrder(out, c, d); return; }
    out.sort(function (a, b) {
      var va = rows[a][c], vb = rows[b][c];
      if (type === 'run') { va = D.runs[va].name; vb = D.runs[vb].name; }
      var na = va === null || va === '', nb = vb === null || vb === '';
      if (na || nb) return na && nb ? a - b : (na ? 1 : -1);   // missing last
      if (va < vb) return -d;
      if (va > vb) return d;
      return a - b;
    });
    T.order = out;
  }

  // Numbers: the keys in a typed array, missing values last in row order, ties by row
  // (the order the generic comparator gives, several times faster on 10^5 rows).
  function numericOrder(idx, c, d) {
    var rows = D.table.rows, keys = new Float64Array(idx.length), have = [], missing = [], sorted = true, prev = -Infinity;
    for (var k = 0; k < idx.length; k++) {
      var v = rows[idx[k]][c];
      if (v === null || v === '' || v === undefined) { missing.push(idx[k]); continue; }
      v = +v; keys[have.length] = v; have.push(have.length);
      if (d * v < prev) sorted = false; else prev = d * v;
    }
    var present = new Int32Array(have.length);
    var j = 0;
    for (k = 0; k < idx.length; k++) { var u = rows[idx[k]][c]; if (!(u === null || u === '' || u === undefined)) present[j++] = idx[k]; }
    if (!sorted) {
      var pos = Int32Array.from(have);
      pos.sort(function (a, b) { return (keys[a] - keys[b]) * d || present[a] - present[b]; });
      var tmp = new Int32Array(pos.length);
      for (k = 0; k < pos.length; k++) tmp[k] = present[pos[k]];
      present = tmp;
    }
    var out = Array.prototype.slice.call(present);
    return missing.length ? out.concat(missing) : out;
  }

  function renderHead() {
    var thead = $('trial-table').tHead; clear(thead);
    var tr = el('tr');
    D.table.columns.forEach(function (c) {
      if (c.type === 'run' && D.runs.length < 2) return;
      var th = el('th', c.objective ? 'obj' : '', c.label);
      if (c.key === T.sortKey) th.classList.add(T.sortDir > 0 ? 'sorted-asc' : 'sorted-desc');
      th.title = 'sort by ' + c.label;
      th.addEventListener('click', function () {
        if (T.sortKey === c.key) T.sortDir = -T.sortDir; else { T.sortKey = c.key; T.sortDir = 1; }
        T.page = 0; computeOrder(); renderHead(); renderBody();
      });
      tr.appendChild(th);
    });
    thead.appendChild(tr);
  }

  function renderBody() {
    var tbody = $('trial-table').tBodies[0]; clear(tbody);
    var n = T.order.length, pages = Math.max(1, Math.ceil(n / PAGE));
    T.page = Math.max(0, Math.min(T.page, pages - 1));
    var start = T.page * PAGE, end = Math.min(n, start + PAGE);
    var cols = D.table.columns, frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) {
      var g = T.order[k], rw = row(g), tr = el('tr', rw[C.status]);
      tr.dataset.g = String(g); tr.dataset.trial = String(rw[C.number]);
      if (g === sel) tr.classList.add('sel');
      for (var i = 0; i < cols.length; i++) {
        var c = cols[i], v = rw[i], td;
        if (c.type === 'run') {
          if (D.runs.length < 2) continue;
          td = el('td'); var sw = el('span', 'run-sw'); sw.style.background = D.runs[v].color;
          td.appendChild(sw); td.appendChild(document.createTextNode(D.runs[v].name));
        } else if (c.type === 'bool') {
          td = el('td', 'front-dot', v ? '●' : '');
        } else if (c.key === 'error') {
          td = el('td', 'reason', v); if (v) td.title = v;
        } else if (c.key === 'hash') {
          td = el('td', 'mono', v);
        } else {
          td = el('td', c.type === 'num' || c.type === 'int' ? 'num' : '', fmt(v, c.type));
        }
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    tbody.appendChild(frag);
    $('pager-text').textContent = n ? ('rows ' + fmt(start + 1) + '–' + fmt(end) + ' of ' + fmt(n)) : 'no matching trials';
    $('prev').disabled = $('first').disabled = T.page === 0; $('next').disabled = $('last').disabled = T.page >= pages - 1;
  }

  function showRow(g, scroll) {
    var k = T.order.indexOf(g);
    if (k >= 0 && Math.floor(k / PAGE) !== T.page) { T.page = Math.floor(k / PAGE); renderBody(); }
    var rows = $('trial-table').tBodies[0].rows, target = null;
    for (var i = 0; i < rows.length; i++) {
      var on = rows[i].dataset.g === String(g);
      rows[i].classList.toggle('sel', on);
      if (on) target = rows[i];
    }
    if (target && scroll) {
      var wrap = $('table-wrap');
      var top = target.offsetTop - wrap.clientHeight / 2;
      wrap.scrollTop = Math.max(0, top);
    }
  }

  function bindTable() {
    var t = null;
    $('filter').addEventListener('input', function (e) {
      clearTimeout(t);
      t = setTimeout(function () { T.filter = e.target.value; T.page = 0; computeOrder(); renderBody(); }, 120);
    });
    $('status-filter').addEventListener('change', function (e) { T.status = e.target.value; T.page = 0; computeOrder(); renderBody(); });
    $('prev').addEventListener('click', function () { T.page--; renderBody(); });
    $('next').addEventListener('click', function () { T.page++; renderBody(); });
    $('first').addEventListener('click', function () { T.page = 0; renderBody(); });
    $('last').addEventListener('click', function () { T.page = Math.ceil(T.order.length / PAGE) - 1; renderBody(); });
    $('trial-table').tBodies[0].addEventListener('click', function (e) {
      var tr = e.target.closest('tr');
      if (tr && tr.dataset.g) select(parseInt(tr.dataset.g, 10), false);
    });
    $('copy-cmd').addEventListener('click', function () {
      var txt = $('export-cmd').textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(txt).then(function () { $('copy-cmd').textContent = 'copied'; setTimeout(function () { $('copy-cmd').textContent = 'copy'; }, 1200); });
    });
  }

  // ------------------------------------------------------------------ run info
  function renderRunInfo() {
    var box = $('run-info'); clear(box);
    D.runs.forEach(function (r) {
      var h = el('h3'); var sw = el('span', 'run-sw'); sw.style.background = r.color; h.appendChild(sw);
      h.appendChild(document.createTextNode(r.name)); box.appendChild(h);
      var t = el('table'), tb = el('tbody'); t.appendChild(tb);
      function kv(k, v) { var tr = el('tr'); tr.appendChild(el('td', null, k)); tr.appendChild(el('td', null, v)); tb.appendChild(tr); }
      kv('directory', r.path);
      kv('suite', r.suite + ' — ' + r.tasks.map(function (t) { return t.name + ' (' + t.kind + ', ' + t.metric + ')'; }).join(', '));
      kv('grammar', r.grammar_name + (r.grammar_file ? ' (' + r.grammar_file + ')' : ''));
      kv('trials', r.n_complete + ' complete, ' + r.n_failed + ' failed, ' + r.n_stopped + ' stopped');
      var c = r.config, keys = ['sampler', 'trials', 'epochs', 'steps', 'batch_size', 'lr', 'seed', 'max_bytes', 'max_latency_ms'];
      kv('search', keys.filter(function (k) { return c[k] !== undefined && c[k] !== null; }).map(function (k) { return k + '=' + c[k]; }).join('  '));
      box.appendChild(t);
      var det = el('details'); det.appendChild(el('summary', null, 'grammar text'));
      det.appendChild(el('pre', 'grammar', r.grammar)); box.appendChild(det);
    });
  }

  // ------------------------------------------------------------------ render / live
  function render(p, changed) {
    var keep = sel;
    D = p; T.search = null;
    indexColumns();
    if (C[T.sortKey] === undefined) T.sortKey = 'number';
    renderHeader();
    renderFigures(changed);
    if (!changed || changed.indexOf('affinity') >= 0) renderAffinity();
    computeOrder(); renderHead(); renderBody();
    renderRunInfo();
    var g = keep !== null && D.table.rows[keep] ? keep : D.selected;
    select(g === undefined ? null : g, false);
    document.body.dataset.version = D.version;
    document.body.dataset.rows = String(D.table.rows.length);
  }

  // A live poll's answer when it is a delta (nasmt/report/live.py): the rows appended since
  // the version this page holds, the Pareto rows, the figures that changed, new architectures.
  var DTYPES = { f8: Float64Array, f4: Float32Array, i4: Int32Array, u4: Uint32Array, i2: Int16Array, u2: Uint16Array,
    i1: Int8Array, u1: Uint8Array, u1c: Uint8ClampedArray };
  function plainArray(v) {  // a trace array as a plain Array: Plotly's typed-array spec ({dtype, bdata}) decoded
    if (Array.isArray(v)) return v;
    if (ArrayBuffer.isView(v)) return Array.prototype.slice.call(v);
    if (v && v.bdata !== undefined) {
      var bin = atob(v.bdata), u8 = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
      return Array.prototype.slice.call(new DTYPES[v.dtype](u8.buffer));
    }
    return [];
  }
  var SMALL = ['mode', 'generated_at', 'objectives', 'pareto_dims', 'runs', 'selected', 'notes', 'version'];
  function applyDelta(p) {
    var t = D.table;
    if (p.base !== D.version || p.rows_from !== t.rows.length) { D.version = ''; return; }  // out of step: next poll gets all
    for (var i = 0; i < p.rows.length; i++) { t.rows.push(p.rows[i]); t.drawn.push(p.drawn[i]); }
    var fi = C.front, on = new Uint8Array(t.rows.length);
    p.front_rows.forEach(function (g) { on[g] = 1; });
    for (var g = 0; g < t.rows.length; g++) t.rows[g][fi] = on[g];
    Object.keys(p.archs).forEach(function (h) { D.archs[h] = p.archs[h]; });
    var changed = Object.keys(p.figures).concat(p.removed_figures);
    var patches = p.figure_patches || {};
    Object.keys(patches).forEach(function (k) {  // a figure whose traces only grew: their new values appended
      var f = D.figures[k], pt = patches[k], data = f.data.slice();
      Object.keys(pt.replace).forEach(function (i) { data[+i] = pt.replace[i]; });
      Object.keys(pt.extend).forEach(function (i) {
        var t = Object.assign({}, data[+i]), e = pt.extend[i];
        Object.keys(e).forEach(function (key) { t[key] = plainArray(t[key]).concat(e[key]); });
        data[+i] = t;
      });
      D.figures[k] = { data: data, layout: f.layout };
      changed.push(k);
    });
    p.removed_figures.forEach(function (k) { delete D.figures[k]; });
    Object.keys(p.figures).forEach(function (k) { D.figures[k] = p.figures[k]; });
    if (JSON.stringify(p.affinity) !== JSON.stringify(D.affinity)) { D.affinity = p.affinity; changed.push('affinity'); }
    SMALL.forEach(function (k) { if (k in p) D[k] = p[k]; });
    render(D, changed);
    window.nasmtLastDelta = { rows: p.rows.length, figures: changed };
  }

  function poll() {
    return fetch('api/data?delta=1&v=' + encodeURIComponent(D.version), { cache: 'no-store' }).then(function (res) {
      var live = $('live');
      live.classList.remove('stale');
      if (res.status === 204) return null;
      if (!res.ok) throw new Error(res.status);
      return res.json();
    }).then(function (p) {
      var now = new Date().toLocaleTimeString();
      if (p && p.delta) applyDelta(p); else if (p) render(p);
      $('live-text').textContent = 'live · ' + fmt(D.table.rows.length) + ' trials · checked ' + now;
    }).catch(function () {
      $('live').classList.add('stale'); $('live-text').textContent = 'server unreachable — retrying';
    });
  }

  function start() {
    bindTable();
    render(JSON.parse($('nasmt-data').textContent));
    if (D.mode === 'live') {
      $('live').hidden = false;
      $('live-text').textContent = 'live · ' + fmt(D.table.rows.length) + ' trials';
      setInterval(poll, POLL_MS);
    }
    window.nasmtReadyAt = performance.now();
    document.body.dataset.ready = '1';
  }
  window.nasmt = { select: select, drawAll: drawAll, poll: poll };  // for tests and benchmarks/bench_report.py
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
