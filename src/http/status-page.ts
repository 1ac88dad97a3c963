/**
 * The status page at `/`: one self-contained HTML document (no CDN, no build step: it works on an air-gapped plant
 * network) whose script reads `GET /api/status` every 5 s and draws it. Hand-written on purpose: a page of banners,
 * tables and two line charts needs no library, and nothing has to be fetched or vendored. Every readiness component
 * has a banner; the colours: green when it works, amber when it works with a problem (a sink retrying, the spool's
 * oldest message older than 10 minutes, silent sources, insecure settings allowed, a leave under way), red when it
 * does not (the broker or the subscriber down, a sink failing, the spool full, a leave past its deadline).
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
svg{background:#fafafa;border:1px solid #ddd}svg text{font-size:10px;fill:#666}.chart{margin:.2em 0 .6em}`;

/** The page's script: plain browser JavaScript, no framework. */
const SCRIPT = `
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const dur = (sec) => { sec = Math.round(sec || 0); return sec < 120 ? sec + ' s' : sec < 7200 ? Math.round(sec / 60) + ' min' : sec < 172800 ? (sec / 3600).toFixed(1) + ' h' : (sec / 86400).toFixed(1) + ' days'; };
const rate = (r) => (r === null || r === undefined ? '—' : r.toFixed(r < 10 ? 2 : 0) + '/s');
// A sentence joined to the next without a doubled full stop.
const sentence = (t) => String(t).replace(/[.\\s]+$/, '') + '.';
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
  const what = sentence(head + since + ': ' + (s.detail || s.state) + (s.lastError ? '; last error: ' + s.lastError : '')) + ' Messages wait in the spool.';
  // The action comes from the node (status-api.ts), chosen by the sink's reason; the runbook section by its heading.
  const todo = s.action ? ' What to do: ' + sentence(s.action) + (s.runbook ? ' Runbook: "' + s.runbook.heading + '" (' + s.runbook.url + ').' : '') : ' See docs/runbook.md.';
  return [colour, 'sink ' + name, what + todo];
}
function sourceBanner(src) {
  const st = src.state;
  if (st === 'in-process') return ['green', 'source', 'in-process: the embedded broker hands each message to the spool'];
  if (st === 'subscribed') return ['green', 'source', 'subscribed to ' + src.url + ' as ' + src.clientId + (src.connections > 1 ? ' (connection ' + src.connections + ')' : '')];
  if (st === 'starting') return ['amber', 'source', 'starting'];
  if (st === 'leaving' || st === 'left') return ['amber', 'source', (st === 'left' ? 'left ' : 'leaving ') + (src.url || 'the broker') + ' (mqtt-ingest leave): no message is taken'];
  // connecting, disconnected, stopped; down (the embedded broker): nothing is taken in.
  const where = src.url ? ' to ' + src.url : '';
  return ['red', 'source', 'NOT CONNECTED' + where + ' (' + st + ')' + (src.lastError ? ': ' + src.lastError : '') + '. Nothing is taken meanwhile; the subscriber reconnects by itself. What to do: check that the broker runs and takes the node\\'s connection (MQTT_BROKER, MQTT_USERNAME, MQTT_PASSWORD, MQTT_TOPICS and the broker\\'s ACL). Runbook: "MqttIngestNotReady" (docs/runbook.md#mqttingestnotready).'];
}
function leaveBanner(l) {
  const spool = '; ' + l.spoolMessages + ' messages in the spool still to deliver';
  if (l.state === 'left') return ['green', 'leave', 'left at the request of mqtt-ingest leave: ' + sentence(l.detail) + ' What to do: stop the node and scale down'];
  if (l.state === 'deadline_passed') return ['red', 'leave', 'DEADLINE PASSED (' + l.deadlineAt + '): ' + l.detail + spool + '. The node goes on delivering and takes nothing. What to do: see why a sink does not deliver (its banner), or run mqtt-ingest leave --deadline … again to wait longer'];
  return ['amber', 'leave', 'leaving since ' + l.startedAt + ', deadline ' + l.deadlineAt + ': ' + l.detail + spool];
}
function spoolBanner(spool) {
  if (spool.state === 'closed') return ['red', 'spool', 'CLOSED'];
  if (spool.full) return ['red', 'spool', 'FULL: ' + (spool.fullReason || '') + ' (publishers are no longer acknowledged)'];
  if (spool.writable === false) return ['red', 'spool', 'NOT WRITABLE: check the disk and the permissions of DATA_DIR'];
  return [spool.oldestAgeSeconds > 600 ? 'amber' : 'green', 'spool', (spool.messages ?? 0) + ' messages waiting, oldest ' + dur(spool.oldestAgeSeconds)];
}
function componentBanners(s) {
  const c = s.components;
  const b = [];
  if (c.leave) b.push(leaveBanner(c.leave));
  const broker = c.broker || {};
  // After mqtt-ingest leave the node is off its broker on purpose: amber, not down.
  const brokerColour = broker.state === 'up' ? 'green' : c.leave ? 'amber' : 'red';
  b.push([brokerColour, 'broker', (broker.mode || '') + ' ' + (broker.state || '') + (broker.detail ? ': ' + broker.detail : '') + (brokerColour === 'amber' ? ' (mqtt-ingest leave)' : '')]);
  if (c.source) b.push(sourceBanner(c.source));
  b.push(spoolBanner(c.spool || {}));
  for (const [name, sink] of Object.entries(c.sinks || {})) b.push(sinkBanner(name, sink));
  const insecure = (c.security && c.security.insecure) || [];
  if (c.security) b.push([insecure.length ? 'amber' : 'green', 'security', insecure.length ? insecure.length + ' insecure setting' + (insecure.length > 1 ? 's' : '') + ' allowed by MQTT_ALLOW_INSECURE: ' + insecure.join('; ') : 'no insecure setting']);
  const silent = (s.sources && s.sources.silent) || [];
  if (s.sources) b.push([silent.length ? 'amber' : 'green', 'sources', silent.length ? s.sources.count + ' silent (no message for over ' + dur(s.sources.silentAfterSeconds) + ')' + (s.sources.count > silent.length ? '; the first ' + silent.length + ' are listed, all at /api/sources?silent=true' : '') : 'none silent']);
  return b;
}
function nodeBanner(s, below) {
  if (s.ready) return ['green', 'node', 'ready: taking messages'];
  const c = s.components;
  // Named from the banners below, so that a red node always points at a red banner (or says why none is).
  const down = below.filter((x) => x[0] === 'red').map((x) => x[1]);
  const why = c.stopping ? 'stopping' : c.leave ? 'leaving (mqtt-ingest leave): it takes no messages' : down.length ? 'a component below is down: ' + down.join(', ') : 'starting, or not yet subscribed (see /readyz)';
  return ['red', 'node', 'NOT READY: ' + why];
}
// One chart of the spool's last hour: its own scale, from 0 to the largest value, labelled with the unit.
function lineChart(id, label, points, pick, fmt, stroke) {
  const w = 600, h = 90, peak = Math.max(0, ...points.map(pick)), top = peak > 0 ? peak : 1;
  const xy = points.map((p, i) => (i * w / (points.length - 1)).toFixed(1) + ',' + (h - 4 - pick(p) / top * (h - 18)).toFixed(1)).join(' ');
  return '<div class="chart"><div>' + esc(label) + ': now ' + esc(fmt(pick(points[points.length - 1]))) + ', at most ' + esc(fmt(peak)) + '</div>' +
    '<svg id="' + id + '" data-peak="' + peak + '" width="' + w + '" height="' + h + '" role="img" aria-label="' + esc(label) + ', last hour">' +
    '<text x="4" y="12">' + esc(fmt(top)) + '</text><text x="4" y="' + (h - 6) + '">0</text>' +
    '<polyline fill="none" stroke="' + stroke + '" stroke-width="2" points="' + xy + '"/></svg></div>';
}
function charts(points) {
  if (points.length < 2) return '<p>(the charts start after two samples, 10 s apart)</p>';
  const n = (v) => v + (v === 1 ? ' message' : ' messages');
  return lineChart('spool-chart', 'depth (messages waiting)', points, (p) => p.messages, n, '#1565c0') +
    lineChart('spool-age-chart', 'age of the oldest message', points, (p) => p.oldestAgeSeconds, (v) => dur(v), '#e65100') +
    '<div>from ' + esc(points[0].at) + ' to ' + esc(points[points.length - 1].at) + ', one point per 10 s</div>';
}
function deadLetters(h) {
  const held = h.deadLettersHeld || {}, since = h.deadLetters || {};
  const rows = [];
  for (const sink of [...new Set(Object.keys(held).concat(Object.keys(since)))].sort()) {
    const reasons = [...new Set(Object.keys(held[sink] || {}).concat(Object.keys(since[sink] || {})))].sort();
    for (const r of reasons) rows.push('<tr><td>' + esc(sink) + '</td><td>' + esc(r) + '</td><td class="num">' + ((held[sink] || {})[r] || 0) + '</td><td class="num">' + ((since[sink] || {})[r] || 0) + '</td></tr>');
  }
  const at = h.deadLettersCountedAt ? ' (counted ' + esc(h.deadLettersCountedAt) + ')' : '';
  return rows.length ? '<tr><th>sink</th><th>reason</th><th class="num">held' + at + '</th><th class="num">since start</th></tr>' + rows.join('') : '<tr><td>none held' + at + '</td></tr>';
}
function routes(cfg) {
  if (!cfg.routes) return '<tr><td>no routes file: every message goes to each sink\\'s destination above</td></tr>';
  const to = (r) => r.drop ? 'dropped (acknowledged, counted, sent nowhere)' : [r.pubsub && 'Pub/Sub ' + r.pubsub, r.bigquery && 'BigQuery ' + r.bigquery, r.file && 'file'].filter(Boolean).join(', ');
  const unmatched = { raw: 'the sinks\\' own destinations above', dead_letter: 'the dead-letter store (no_route)', drop: 'dropped' }[cfg.routesUnmatched] || cfg.routesUnmatched;
  return '<tr><th>route</th><th>MQTT topic</th><th>to</th></tr>' + cfg.routes.map((r) => '<tr><td>' + esc(r.name) + '</td><td><code>' + esc(r.topic) + '</code></td><td>' + esc(to(r)) + '</td></tr>').join('') +
    '<tr><td>unmatched</td><td>any other</td><td>' + esc(unmatched) + '</td></tr>';
}
function render(s) {
  const below = componentBanners(s);
  const b = [nodeBanner(s, below)].concat(below);
  // One line above the banners with the worst colour, naming what needs attention, so nothing hides below the fold.
  const problems = b.filter((x) => x[0] !== 'green');
  const worst = problems.some((x) => x[0] === 'red') ? 'red' : problems.length ? 'amber' : 'green';
  $('summary').innerHTML = banner(worst, 'summary', problems.length ? problems.length + ' need attention: ' + problems.map((x) => x[1]).join(', ') : 'everything works');
  $('banners').innerHTML = b.map((x) => banner(x[0], x[1], x[2])).join('');
  const rows = [['in (to the spool)', s.history.rates.in]].concat(Object.entries(s.history.rates.sinks).map(([k, v]) => ['out: ' + k, v]));
  $('rates').innerHTML = '<tr><th></th><th class="num">1 min</th><th class="num">5 min</th><th class="num">15 min</th></tr>' +
    rows.map(([k, r]) => '<tr><td>' + esc(k) + '</td><td class="num">' + rate(r.m1) + '</td><td class="num">' + rate(r.m5) + '</td><td class="num">' + rate(r.m15) + '</td></tr>').join('');
  $('chart').innerHTML = charts(s.history.spool);
  $('dead').innerHTML = deadLetters(s.history);
  const silent = (s.sources && s.sources.silent) || [];
  $('silent').innerHTML = silent.length ? '<tr><th>topic</th><th>last message</th><th class="num">quiet</th></tr>' + silent.map((x) => '<tr><td>' + esc(x.topic) + '</td><td>' + esc(x.lastSeenAt) + '</td><td class="num">' + dur(x.quietSeconds) + '</td></tr>').join('') : '<tr><td>none</td></tr>';
  $('about').textContent = 'version ' + s.version + ', up ' + dur(s.uptimeSeconds) + ', ' + (s.history.brokerClients ?? 'no own') + ' broker clients';
  $('routes').innerHTML = routes(s.config);
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
<h2>Dead letters in the store</h2><table id="dead"></table><p>Inspect them with <code>mqtt-ingest dlq list</code>, replay with <code>mqtt-ingest dlq replay</code>.</p>
<h2>Node</h2><p id="about"></p><h2>Routes</h2><table id="routes"></table><pre id="config"></pre>
<p><a href="/api/status">/api/status</a> · <a href="/metrics">/metrics</a> · <a href="/readyz">/readyz</a> · <a href="/healthz">/healthz</a></p>
<script>${SCRIPT}</script></body></html>
`;
}
