"""The one HTML page of `zss serve`: inline CSS and JS only, nothing loaded from elsewhere."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zss: segment with any words</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
 h1 { font-size: 1.3rem; margin: 0 0 1rem; }
 form { display: grid; gap: .6rem; max-width: 46rem; }
 label { font-weight: 600; }
 input[type=text] { width: 100%; padding: .4rem; font-size: 1rem; box-sizing: border-box; }
 .row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: center; }
 .examples img { height: 64px; cursor: pointer; border: 3px solid transparent; }
 .examples img.picked { border-color: #2a6; }
 button { font-size: 1rem; padding: .4rem 1.2rem; }
 #message { color: #b00; font-weight: 600; min-height: 1.2em; }
 #status { color: #555; }
 #status[data-state=queued] { color: #a60; font-weight: 600; }
 #understood { color: #555; font-size: .9rem; min-height: 1.1em; }
 #results { display: flex; gap: 1.5rem; flex-wrap: wrap; margin-top: 1rem; }
 .result { border: 1px solid #ccc; padding: .6rem; max-width: 24rem; }
 .result h2 { font-size: .85rem; margin: 0 0 .4rem; word-break: break-all; }
 table { border-collapse: collapse; margin-top: .4rem; }
 td, th { border-bottom: 1px solid #ddd; padding: .15rem .6rem; text-align: left; }
 .swatch { display: inline-block; width: .9em; height: .9em; border: 1px solid #000; margin-right: .3em; }
</style></head>
<body>
<h1>zss &mdash; segment an image with any words</h1>
<form id="form">
 <label for="image">Image</label>
 <div class="row"><input type="file" id="image" name="image" accept="image/*">
  <span>or pick an example:</span><span class="examples" id="examples"></span></div>
 <label for="vocab">Classes (&ldquo;,&rdquo; between classes, &ldquo;;&rdquo; between synonyms)</label>
 <input type="text" id="vocab" name="vocab" placeholder="zebra, traffic cone, wet asphalt;road">
 <div id="understood" aria-live="polite"></div>
 <label class="row" for="auto"><input type="checkbox" id="auto" name="auto">
  name it for me (the classes are chosen from a bank of names; the first time builds the model's index)</label>
 <div class="row" id="models"></div>
 <div class="row"><button type="submit" id="run">Segment</button><span id="status"></span></div>
 <div id="message" role="alert"></div>
</form>
<div id="results"></div>
<script>
const COLOURS = (() => {  // PASCAL VOC colour map, shifted by one as zss.eval.render does
  const out = [];
  for (let i = 1; i < 256; i++) { let c = i, r = 0, g = 0, b = 0;
    for (let j = 0; j < 8; j++) { r |= ((c >> 0) & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j); c >>= 3; }
    out.push(`rgb(${r},${g},${b})`); }
  return out; })();
let example = null;
const $ = (id) => document.getElementById(id);
function el(tag, props, ...kids) { const e = document.createElement(tag); Object.assign(e, props || {});
  for (const k of kids) e.append(k); return e; }
async function init() {
  const info = await (await fetch('/api/info')).json();
  info.models.forEach((m, i) => { const id = 'model' + i;
    $('models').append(el('label', {htmlFor: id}, el('input', {type: 'checkbox', id, name: 'model', value: m,
      checked: true}), ' ' + m)); });
  for (const name of info.examples) {
    const img = el('img', {src: '/examples/' + name, alt: name, title: name});
    img.onclick = () => { example = name; $('image').value = '';
      document.querySelectorAll('.examples img').forEach(x => x.classList.toggle('picked', x === img)); };
    $('examples').append(img); }
  $('auto').onchange = () => { $('vocab').disabled = $('auto').checked; };
  let typing = null;   // what the words are understood as, shown while typing (the server's parser)
  $('vocab').oninput = () => { clearTimeout(typing); typing = setTimeout(understand, 250); };
  $('image').onchange = () => { example = null;
    document.querySelectorAll('.examples img').forEach(x => x.classList.remove('picked')); };
}
function show(data) {
  $('results').replaceChildren();
  for (const r of data.results) {
    const table = el('table', {}, el('tr', {}, el('th', {}, 'class'), el('th', {}, 'area')));
    for (const a of r.areas) {
      const sw = el('span', {className: 'swatch'}); sw.style.background = COLOURS[a.id];
      table.append(el('tr', {className: 'area'}, el('td', {}, sw, a.name),
                      el('td', {}, (100 * a.fraction).toFixed(1) + ' %'))); }
    const card = el('div', {className: 'result'},
      el('h2', {}, r.model + ` (${r.seconds.toFixed(2)} s)`),
      el('img', {className: 'overlay', src: r.overlay, alt: 'overlay ' + r.model}),
      el('div', {}, el('a', {href: r.label, download: 'label.png', className: 'download'},
                       'download label PNG')),
      table);
    if (r.names) {
      const names = el('table', {className: 'names'},
        el('tr', {}, el('th', {}, 'chosen name'), el('th', {}, 'score'), el('th', {}, 'area')));
      for (const n of r.names)
        names.append(el('tr', {className: 'name'}, el('td', {title: n.id + (n.synonyms.length ?
          ' (' + n.synonyms.join(', ') + ')' : '')}, n.name), el('td', {}, n.score.toFixed(3)),
          el('td', {}, (100 * n.area).toFixed(1) + ' %')));
      card.append(names); }
    card.dataset.height = data.size[0]; card.dataset.width = data.size[1];
    $('results').append(card); }
}
async function understand() {
  const data = await (await fetch('/api/vocab?text=' + encodeURIComponent($('vocab').value))).json()
    .catch(() => ({}));
  $('understood').textContent = data.understood || data.error || '';
}
const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const MAX_TRIES = 40;
async function post(body) {
  // "busy" is a 503 with Retry-After: wait that long, visibly queued, and send the same request again
  for (let attempt = 1; ; attempt++) {
    const resp = await fetch('/api/segment', {method: 'POST', body});
    if (resp.status !== 503 || attempt >= MAX_TRIES) return resp;
    const wait = Math.max(1, parseInt(resp.headers.get('Retry-After') || '2', 10));
    $('status').dataset.state = 'queued';
    for (let left = wait; left > 0; left--) {
      $('status').textContent = `queued: the server is busy, retrying in ${left} s (attempt ${attempt + 1})`;
      await sleep(1000); }
    $('status').textContent = 'segmenting...'; $('status').dataset.state = 'running';
  }
}
$('form').onsubmit = async (ev) => {
  ev.preventDefault();
  $('message').textContent = ''; $('status').textContent = 'segmenting...'; $('run').disabled = true;
  $('status').dataset.state = 'running';
  const body = new FormData();
  const file = $('image').files[0];
  if (file) body.append('image', file); else if (example) body.append('example', example);
  body.append('vocab', $('vocab').value);
  if ($('auto').checked) body.append('auto', '1');
  document.querySelectorAll('input[name=model]:checked').forEach(x => body.append('model', x.value));
  try {
    const resp = await post(body);
    const data = await resp.json().catch(() => ({error: `server error ${resp.status}`}));
    if (data.error) { $('message').textContent = data.error; } else {
      show(data); if (data.understood && data.understood !== 'auto') $('understood').textContent = data.understood; }
  } catch (e) { $('message').textContent = 'request failed: ' + e; }
  $('status').textContent = ''; $('status').dataset.state = 'idle'; $('run').disabled = false;
};
init();
</script>
</body></html>
"""
