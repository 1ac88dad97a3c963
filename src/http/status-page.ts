/**
 * The status page at `/`: one self-contained HTML document (no CDN, no build step: it works on an air-gapped plant
 * network) whose script reads `GET /api/status` every 5 s and draws it. Hand-written on purpose: a page of banners,
 * a table and one line chart needs no library, and nothing has to be fetched or vendored. The colours: green when a
 * component works, amber when it works with a problem (a sink retrying, the spool's oldest message older than
 * 10 minutes, silent sources), red when it does not (the broker down, a sink failing, the spool full).
 */
export const STATUS_REFRESH_MS = 5_000;

const STYLE = `
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.2em 0 .4em}
.banner{padding:.55em .8em;border-radius:4px;margin:.3em 0;border-left:.5em solid}
.green{background:#e8f5e9;border-color:#2e7d32}.amber{background:#fff8e1;border-color:#f9a825}.red{background:#ffebee;border-color:#c62828}
.banner b{display:inline-block;min-width:9em}.why{color:#444}
table{border-collapse:collapse}td,th{padding:.2em .7em;text-align:left;border-bottom:1px solid #ddd}
th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f4f4f4;padding:0 .3em}#updated{color:#666;font-size:.9em}
svg{background:#fafafa;border:1px solid #ddd}`;

/** The page's script: plain browser JavaScript, no framework. */
const SCRIPT = `
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const dur = (sec) => { sec = Math.round(sec || 0); return sec < 120 ? sec + ' s' : sec < 7200 ? Math.round(sec / 60) + ' min' : sec < 172800 ? (sec / 3600).toFixed(1) + ' h' : (sec / 86400).toFixed(1) + ' days'; };
const rate = (r) => (r === null || r === undefined ? '—' : r.toFixed(r < 10 ? 2 : 0) + '/s');
function banner(colour, name, why) {
  return '<div class="banner ' + colour + '" data-component="' + esc(name) + '" data-colour="' + colour + '"><b>' + esc(name) + '</b> <span class="why">' + esc(why) + '</span></div>';
}
function sinkBanner(name, s) {
  if (s.state === 'ok') return ['green', 'sink ' + name, s.lastDeliveryAt ? 'delivering; last delivery ' + s.lastDeliveryAt : 'healthy'];
  // Red when the sink does not deliver: a condition to fix, or retrying with nothing delivered since the problem
  // began (an outage). Amber when it delivers with a problem: some messages retried, or a write slow to answer.
  const stalled = s.problemSince && !(s.lastDeliveryAt && s.lastDeliveryAt > s.problemSince);
  const colour = s.state === 'failing' || stalled ? 'red' : 'amber';
  const head = s.state === 'failing' ? 'FAILING' : stalled ? 'NOT DELIVERING' : 'delivering with errors';
  const since = s.problemSince ? ' since ' + s.problemSince : s.lastErrorAt ? ' since ' + s.lastErrorAt : '';
  return [colour, 'sink ' + name, head + since + ': ' + (s.detail || s.state) + (s.lastError ? '; last error: ' + s.lastError : '') + '. Messages wait in the spool; see docs/runbook.md.'];
}
function chart(points) {
  if (points.length < 2) return '<p>(the chart starts after two samples, 10 s apart)</p>';
  const w = 600, h = 120, max = Math.max(1, ...points.map((p) => p.messages));
  const xy = points.map((p, i) => (i * w / (points.length - 1)).toFixed(1) + ',' + (h - p.messages / max * (h - 10)).toFixed(1)).join(' ');
  return '<svg id="spool-chart" width="' + w + '" height="' + h + '" role="img" aria-label="spool depth, last hour"><polyline fill="none" stroke="#1565c0" stroke-width="2" points="' + xy + '"/></svg>' +
    '<div>at most ' + max + (max === 1 ? ' message' : ' messages') + '; from ' + esc(points[0].at) + ' to ' + esc(points[points.length - 1].at) + '</div>';
}
function render(s) {
  const c = s.components;
  const b = [];
  b.push([s.ready ? 'green' : 'red', 'node', s.ready ? 'ready: taking messages' : 'NOT READY: ' + (c.stopping ? 'stopping' : 'a component below is down or the spool is full')]);
  const broker = c.broker || {};
  b.push([broker.state === 'up' ? 'green' : 'red', 'broker', (broker.mode || '') + ' ' + (broker.state || '') + (broker.detail ? ': ' + broker.detail : '')]);
  const spool = c.spool || {};
  const spoolColour = spool.full ? 'red' : spool.oldestAgeSeconds > 600 ? 'amber' : 'green';
  b.push([spoolColour, 'spool', spool.full ? 'FULL: ' + (spool.fullReason || '') + ' (publishers are no longer acknowledged)' : (spool.messages ?? 0) + ' messages waiting, oldest ' + dur(spool.oldestAgeSeconds)]);
  for (const [name, sink] of Object.entries(c.sinks || {})) b.push(sinkBanner(name, sink));
  const silent = (s.sources && s.sources.silent) || [];
  if (s.sources) b.push([silent.length ? 'amber' : 'green', 'sources', silent.length ? s.sources.count + ' silent (no message for over ' + dur(s.sources.silentAfterSeconds) + ')' + (s.sources.count > silent.length ? '; the first ' + silent.length + ' are listed, all at /api/sources?silent=true' : '') : 'none silent']);
  // One line above the banners with the worst colour, naming what needs attention, so nothing hides below the fold.
  const problems = b.filter((x) => x[0] !== 'green');
  const worst = problems.some((x) => x[0] === 'red') ? 'red' : problems.length ? 'amber' : 'green';
  $('summary').innerHTML = banner(worst, 'summary', problems.length ? problems.length + ' need attention: ' + problems.map((x) => x[1]).join(', ') : 'everything works');
  $('banners').innerHTML = b.map((x) => banner(x[0], x[1], x[2])).join('');
  const rows = [['in (to the spool)', s.history.rates.in]].concat(Object.entries(s.history.rates.sinks).map(([k, v]) => ['out: ' + k, v]));
  $('rates').innerHTML = '<tr><th></th><th class="num">1 min</th><th class="num">5 min</th><th class="num">15 min</th></tr>' +
    rows.map(([k, r]) => '<tr><td>' + esc(k) + '</td><td class="num">' + rate(r.m1) + '</td><td class="num">' + rate(r.m5) + '</td><td class="num">' + rate(r.m15) + '</td></tr>').join('');
  $('chart').innerHTML = chart(s.history.spool);
  const dl = Object.entries(s.history.deadLetters).flatMap(([sink, reasons]) => Object.entries(reasons).map(([r, n]) => '<tr><td>' + esc(sink) + '</td><td>' + esc(r) + '</td><td class="num">' + n + '</td></tr>'));
  $('dead').innerHTML = dl.length ? '<tr><th>sink</th><th>reason</th><th class="num">since start</th></tr>' + dl.join('') : '<tr><td>none since the start</td></tr>';
  $('silent').innerHTML = silent.length ? '<tr><th>topic</th><th>last message</th><th class="num">quiet</th></tr>' + silent.map((x) => '<tr><td>' + esc(x.topic) + '</td><td>' + esc(x.lastSeenAt) + '</td><td class="num">' + dur(x.quietSeconds) + '</td></tr>').join('') : '<tr><td>none</td></tr>';
  $('about').textContent = 'version ' + s.version + ', up ' + dur(s.uptimeSeconds) + ', ' + (s.history.brokerClients ?? 'no own') + ' broker clients';
  $('config').textContent = JSON.stringify(s.config, null, 2);
  $('updated').textContent = 'updated ' + new Date().toISOString();
}
async function refresh() {
  try {
    const r = await fetch('/api/status', { headers: { accept: 'application/json' } });
    render(await r.json());
  } catch (err) {
    $('summary').innerHTML = banner('red', 'summary', ($('updated').textContent ? 'the figures below are from ' + $('updated').textContent.replace('updated ', '') : 'no figures yet') + ': the node does not answer');
    $('banners').innerHTML = banner('red', 'page', 'cannot read /api/status: ' + err.message);
  }
}
refresh();
setInterval(refresh, ${STATUS_REFRESH_MS});
`;

export function statusPageHtml(): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mqtt-ingest status</title>
<meta name="viewport" content="width=device-width"><link rel="icon" href="data:,"><style>${STYLE}</style></head>
<body><h1>mqtt-ingest</h1><div id="updated"></div>
<div id="summary"></div>
<div id="banners"></div>
<h2>Silent sources</h2><table id="silent"></table>
<h2>Rates</h2><table id="rates"></table>
<h2>Spool, last hour</h2><div id="chart"></div>
<h2>Dead letters</h2><table id="dead"></table><p>Inspect them with <code>mqtt-ingest dlq list</code>, replay with <code>mqtt-ingest dlq replay</code>.</p>
<h2>Node</h2><p id="about"></p><pre id="config"></pre>
<p><a href="/api/status">/api/status</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a> · <a href="/healthz">/healthz</a></p>
<script>${SCRIPT}</script></body></html>
`;
}
