"""The web page's style and script, inlined into `index.html` (no CDN, no server: the page opens from
disk, offline). The script reads the page's JSON (`#view-data`), draws each plot as an SVG path, and
moves every plot's cursor, the camera images and the texts with the frame scrubber."""

from __future__ import annotations

__all__ = ["CSS", "SCRIPT"]

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
.where, .note { color: #5b6475; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #d8dce3; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
#episode-list tr[data-ep] { cursor: pointer; } #episode-list tr.off { color: #8a92a3; }
#episode-list tr.current { background: #dbe9ff; } tr.quarantined { background: #fdeaea; }
.scrub { display: flex; align-items: center; gap: 12px; margin: 8px 0; }
#scrubber { width: 60%; } #frame-label { font-family: monospace; font-size: 12px; }
#cameras { display: flex; gap: 8px; flex-wrap: wrap; }
#cameras figure, .plot { margin: 0; } figcaption { font-size: 11px; color: #5b6475; }
#cameras img { width: 224px; height: 224px; border: 1px solid #c5cad3; background: #000; }
#texts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; }
#texts dt { font-weight: 600; } #texts dd { margin: 0; white-space: pre-wrap; font-family: monospace; font-size: 12px; }
.plots { display: flex; flex-wrap: wrap; gap: 6px; }
.plot svg { background: #fff; border: 1px solid #d8dce3; }
path { fill: none; stroke-width: 1.3; } path.native { stroke: #1f5fbf; } path.fast { stroke: #e07b00; stroke-dasharray: 3 2; }
path.state { stroke: #2a8c4a; } line.cursor { stroke: #d0021b; stroke-width: 1; }
.legend span { margin-right: 14px; font-size: 12px; }
"""

SCRIPT = """
(() => {
  const D = JSON.parse(document.getElementById('view-data').textContent);
  const NS = 'http://www.w3.org/2000/svg', W = 230, H = 80, P = 4;
  const $ = (id) => document.getElementById(id);
  let ep = null, cursors = [];

  function node(tag, attrs, parent, ns) {
    const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  function plot(parent, title, lines, x) {
    const fig = node('figure', {class: 'plot'}, parent);
    node('figcaption', {}, fig).textContent = title;
    const svg = node('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`}, fig, NS);
    const ys = lines.flatMap((l) => l.ys).filter((v) => v !== null);
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const x0 = x[0], x1 = x[x.length - 1] > x0 ? x[x.length - 1] : x0 + 1;
    const sx = (v) => P + (W - 2 * P) * (v - x0) / (x1 - x0);
    const sy = (v) => H - P - (H - 2 * P) * (v - lo) / (hi - lo);
    for (const l of lines) {
      let d = '', pen = 'M';
      l.ys.forEach((v, i) => {
        if (v === null) { pen = 'M'; return; }
        d += `${pen}${sx(x[i]).toFixed(1)},${sy(v).toFixed(1)}`; pen = 'L';
      });
      node('path', {d: d, class: l.cls}, svg, NS);
    }
    cursors.push({line: node('line', {class: 'cursor', y1: 0, y2: H}, svg, NS), sx: sx, x: x});
  }

  function show(i) {
    ep = D.episodes[i];
    document.querySelectorAll('#episode-list tr[data-ep]').forEach(
      (r) => r.classList.toggle('current', +r.dataset.ep === i));
    $('episode-title').textContent = ep.label;
    $('decimation').textContent = ep.note;
    const cams = $('cameras'); cams.replaceChildren();
    for (const slot of D.slots) {
      const fig = node('figure', {}, cams);
      node('img', {id: 'cam-' + slot, alt: slot}, fig);
      node('figcaption', {}, fig).textContent = slot;
    }
    cursors = [];
    const x = ep.frames.map((f, k) => (f.t === null ? f.f : f.t));
    for (const [id, dims, make] of [
      ['action-plots', D.action_dims, (d) => [{ys: ep.series.action[d], cls: 'native'}, {ys: ep.series.fast[d], cls: 'fast'}]],
      ['state-plots', D.state_dims, (d) => [{ys: ep.series.state[d], cls: 'state'}]],
    ]) {
      const box = $(id);
      if (!box) continue;
      box.replaceChildren();
      dims.forEach((dim, d) => plot(box, `${dim.name} [${dim.unit}]`, make(d), x));
    }
    const s = $('scrubber'); s.max = ep.frames.length - 1; s.value = 0;
    go(0);
  }

  function go(k) {
    const f = ep.frames[k];
    $('scrubber').value = k;
    $('frame-label').textContent = (f.t === null ? `item ${f.f}` : `frame ${f.f}, ${f.t.toFixed(2)} s`) +
      ` (sample ${k + 1} of ${ep.frames.length} shown) ${f.key}`;
    for (const slot of D.slots) {
      const img = $('cam-' + slot);
      if (f.img[slot]) { img.src = f.img[slot]; img.style.visibility = 'visible'; }
      else { img.removeAttribute('src'); img.style.visibility = 'hidden'; }
    }
    for (const name of ['prompt', 'target', 'subtask', 'instruction', 'turns']) {
      const el = $('text-' + name);
      if (el) el.textContent = f[name] || '';
    }
    for (const c of cursors) {
      const px = c.sx(c.x[k]).toFixed(1);
      c.line.setAttribute('x1', px); c.line.setAttribute('x2', px);
    }
    const fmt = (v) => (v === null ? '–' : (+v).toPrecision(5));
    for (const [id, dims, cols] of [
      ['values-state', D.state_dims, ['state', 'state_n']],
      ['values-action', D.action_dims, ['action', 'action_n', 'fast']],
    ]) {
      const body = $(id);
      if (!body) continue;
      body.replaceChildren();
      dims.forEach((dim, d) => {
        const r = node('tr', {}, body);
        for (const v of [dim.name, dim.unit, ...cols.map((c) => fmt(ep.series[c][d][k]))]) node('td', {}, r).textContent = v;
      });
    }
  }

  $('scrubber').addEventListener('input', (e) => go(+e.target.value));
  document.querySelectorAll('#episode-list tr[data-ep]').forEach((r) => r.addEventListener('click', () => show(+r.dataset.ep)));
  if (D.episodes.length) show(0);
})();
"""
