// The demo page: plain EventSource, no build step.
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const clockTime = (ms) => new Date(ms).toLocaleTimeString([], { hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const delayOf = (sentAt) => Math.max(0, Date.now() - sentAt);
const formatMs = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);

// ---- What the guard did -------------------------------------------------------------------------

const EXPLAIN = {
  'compression-bypassed': () => 'compression() skipped this response (Cache-Control: no-transform): events go out as written',
  'compression-flushed': (d) => `compressed with ${d.encoding}, flushed after every event`,
  'timeout-disarmed': (d) => `${[].concat(d.middleware).join(' and ')} timer cancelled for this stream`,
  'timeout-refused': (d) => `refused: ${[].concat(d.middleware).join(' and ')} would cut the stream`,
  'socket-timeout-disarmed': (d) => `socket idle timeout (${d.timeout} ms) turned off`,
  'headers-sent': () => 'refused: headers were already sent',
  'slow-consumer': () => 'dropped a client that stopped reading',
  'handler-error': (d) => `handler failed: ${d.error}`,
};

function showDecisions(info) {
  const box = $('#decisions');
  let route = [...box.children].find((node) => node.dataset.route === info.route);
  if (!route) {
    route = el('div', 'route');
    route.dataset.route = info.route;
    route.append(el('h3'), el('ul'));
    $('h3', route).append(el('code', '', `GET ${info.route}`));
    box.append(route);
  }
  const list = $('ul', route);
  list.replaceChildren();
  if (info.decisions.length === 0) list.append(el('li', 'none', 'nothing to guard against on this request'));
  for (const { reason, details } of info.decisions) {
    const item = el('li');
    item.dataset.reason = reason;
    item.append(el('code', '', reason), el('span', '', (EXPLAIN[reason] ?? (() => ''))(details)));
    list.append(item);
  }
}

async function showDefaultPolicy() {
  const box = $('#default-policy');
  try {
    const res = await fetch('/stream/default-policy', { headers: { accept: 'text/event-stream' } });
    if (res.ok) return; // The app no longer mounts a timeout middleware: nothing to refuse.
    const body = await res.json();
    const reason = $('.reason', box);
    reason.replaceChildren(el('code', '', `${res.status} ${body.code}`), el('span', '', body.error.replace(/^sse-guard: /, '')));
    box.hidden = false;
  } catch {
    // Informative only; the page works without it.
  }
}

// ---- This tab's stream: clock and chat ----------------------------------------------------------

const STORE = 'sse-guard-demo/chat';
const KEEP = 200;

// The tab's chat survives a reload: messages and the last id, so the stream resumes where it left off.
function loadChat() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE));
    if (saved && Array.isArray(saved.messages)) return saved;
  } catch {
    // Nothing usable saved.
  }
  return { lastEventId: null, messages: [] };
}

const chat = loadChat();
const saveChat = () => sessionStorage.setItem(STORE, JSON.stringify(chat));

function setState(state) {
  const pill = $('#conn-state');
  pill.dataset.state = state;
  pill.textContent = state;
  $('#reconnect').hidden = state !== 'closed';
}

function renderMessage(message) {
  const list = $('#chat-list');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = el('li', 'message');
  item.dataset.id = message.id;
  const meta = el('div', 'meta');
  meta.append(el('b', '', message.author), el('time', '', clockTime(message.sentAt)), el('span', 'id', `#${message.id}`));
  item.append(meta, el('p', 'text', message.text));
  list.append(item);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function chatStatus(text) {
  $('#chat-status').textContent = text;
}

let source;
let opens = 0;
let ticks = 0;

function showLastId() {
  $('#last-id').textContent = chat.lastEventId ? `#${chat.lastEventId}` : 'none';
}

function connect() {
  source?.close();
  const resume = chat.lastEventId ? `?lastEventId=${encodeURIComponent(chat.lastEventId)}` : '';
  source = new EventSource(`/stream${resume}`);
  setState('connecting');
  source.onopen = () => {
    opens += 1;
    $('#reconnects').textContent = String(opens - 1);
    setState('open');
  };
  // EventSource retries by itself after a dropped connection; CLOSED means it gave up (an error status).
  source.onerror = () => setState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');

  source.addEventListener('guard', (event) => {
    const info = JSON.parse(event.data);
    showDecisions(info);
    if (info.resumedAfter) chatStatus(`Reconnected: replaying what came after #${info.resumedAfter} (Last-Event-ID).`);
  });

  source.addEventListener('clock', (event) => {
    const { sentAt } = JSON.parse(event.data);
    $('#clock-time').textContent = clockTime(sentAt);
    $('#clock-delay').textContent = `arrived ${formatMs(delayOf(sentAt))} after it was sent`;
    ticks += 1;
    $('#clock-count').textContent = String(ticks);
  });

  source.addEventListener('chat', (event) => {
    const message = { id: event.lastEventId, ...JSON.parse(event.data) };
    chat.messages.push(message);
    chat.messages.splice(0, chat.messages.length - KEEP);
    chat.lastEventId = message.id;
    saveChat();
    showLastId();
    renderMessage(message);
  });

  // The id this tab resumed from is older than the server's history: start over from now.
  source.addEventListener('resync', () => {
    chat.messages = [];
    chat.lastEventId = null;
    saveChat();
    showLastId();
    $('#chat-list').replaceChildren();
    chatStatus('You were away longer than the server keeps history: showing new messages from now.');
  });
}

for (const message of chat.messages) renderMessage(message);
showLastId();
connect();
$('#reconnect').addEventListener('click', connect);

const authorInput = $('#chat-author');
authorInput.value = localStorage.getItem('sse-guard-demo/author') ?? '';

$('#chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const textInput = $('#chat-text');
  const error = $('#chat-error');
  const author = authorInput.value.trim();
  localStorage.setItem('sse-guard-demo/author', author);
  try {
    const res = await fetch('/chat', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ author: author || undefined, text: textInput.value }),
    });
    if (!res.ok) throw new Error((await res.json()).error ?? res.statusText);
    textInput.value = '';
    error.hidden = true;
  } catch (err) {
    error.textContent = `Not sent: ${err.message}`;
    error.hidden = false;
  }
});

$('#drop').addEventListener('click', () => {
  // Two seconds before the tabs come back, long enough to post something they will have to catch up on.
  fetch('/admin/drop', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ retry: 2000 }) });
});

// ---- Naive vs sse-guard -------------------------------------------------------------------------

const SCALE_MS = 5000;
const running = new Map();

function lane(name, url) {
  const box = $(`#lane-${name}`);
  const list = $('ol', box);
  const status = $('.lane-status', box);
  const started = performance.now();
  const arrivals = [];
  let total;
  let connected = false;

  list.replaceChildren();
  const tokens = $('.tokens', box);
  if (tokens) tokens.textContent = '';
  box.dataset.state = 'waiting';
  const source = new EventSource(url);

  const update = () => {
    const waited = formatMs(performance.now() - started);
    if (arrivals.length === 0) {
      status.textContent = box.dataset.state === 'done' ? 'no events' : `${connected ? 'connected, ' : ''}no events yet · ${waited}`;
      return;
    }
    const first = formatMs(arrivals[0] - started);
    const spread = arrivals[arrivals.length - 1] - arrivals[0];
    const pace = box.dataset.state !== 'done' ? '' : arrivals.length > 1 && spread < 250 ? ' · all in one burst' : ' · each on time';
    status.textContent = `${arrivals.length}/${total} events · first after ${first}${pace}`;
  };
  const ticker = setInterval(update, 100);
  const finish = () => {
    source.close();
    clearInterval(ticker);
    running.delete(name);
    box.dataset.state = 'done';
    update();
  };

  source.onopen = () => {
    connected = true;
    update();
  };
  source.addEventListener('guard', (event) => showDecisions(JSON.parse(event.data)));
  source.addEventListener('tick', (event) => {
    const { n, of, sentAt, token } = JSON.parse(event.data);
    const tokens = $('.tokens', box);
    if (tokens && token !== undefined) tokens.textContent += token;
    const delay = delayOf(sentAt);
    total = of;
    arrivals.push(performance.now());
    const item = el('li', delay < 250 ? 'ok' : delay < 1000 ? 'slow' : 'late');
    item.dataset.delay = String(delay);
    const bar = el('span', 'bar');
    bar.append(el('i'));
    bar.firstChild.style.width = `${Math.max(1, Math.min(100, (delay / SCALE_MS) * 100))}%`;
    item.append(el('span', 'n', `#${n}`), bar, el('span', 'ms', formatMs(delay)));
    list.append(item);
    update();
  });
  source.addEventListener('done', finish);
  // The route ended or failed: either way this run is over, and EventSource must not start it again.
  source.onerror = finish;
  running.set(name, finish);
  update();
}

function runCompare() {
  for (const name of ['naive', 'guard']) running.get(name)?.();
  lane('naive', '/compare/naive');
  lane('guard', '/compare/guarded');
}

$('#compare-run').addEventListener('click', runCompare);

// ---- Model answer -------------------------------------------------------------------------------

// Long enough after Stop for several of the model's token intervals to pass.
const AFTER_STOP_MS = 600;
let answer;

function answerState(state) {
  const node = $('#answer-state');
  node.dataset.state = state;
  node.textContent = state;
}

function ask() {
  answer?.source.close();
  const source = new EventSource('/answer');
  const current = { source, id: undefined, received: 0 };
  answer = current;
  $('#answer-text').replaceChildren();
  $('#answer-received').textContent = '0';
  $('#answer-after-stop').textContent = '–';
  answerState('generating');
  source.addEventListener('answer', (event) => {
    current.id = JSON.parse(event.data).id;
    $('#answer-stop').disabled = false;
  });
  source.addEventListener('token', (event) => {
    $('#answer-text').append(event.data);
    current.received += 1;
    $('#answer-received').textContent = String(current.received);
  });
  source.addEventListener('answer-done', () => {
    source.close();
    $('#answer-stop').disabled = true;
    answerState('finished');
  });
  // The route ended or failed: EventSource must not ask again on its own.
  source.onerror = () => {
    source.close();
    if ($('#answer-state').dataset.state === 'generating') answerState('failed');
  };
}

async function stop() {
  const current = answer;
  if (!current?.id) return;
  current.source.close();
  $('#answer-stop').disabled = true;
  answerState('stopping');
  await new Promise((resolve) => setTimeout(resolve, AFTER_STOP_MS));
  try {
    const stats = await (await fetch(`/answer/stats/${current.id}`)).json();
    if (answer !== current) return;
    answerState(stats.state === 'generating' ? 'still generating' : stats.state);
    $('#answer-after-stop').textContent = stats.afterClose === null ? 'unknown' : String(stats.afterClose);
  } catch {
    answerState('unknown');
  }
}

$('#answer-ask').addEventListener('click', ask);
$('#answer-stop').addEventListener('click', stop);

runCompare();

function runThirdParty() {
  for (const name of ['third-plain', 'third-guard']) running.get(name)?.();
  lane('third-plain', '/third-party/plain');
  lane('third-guard', '/third-party/guarded');
}

$('#third-run').addEventListener('click', runThirdParty);
runThirdParty();
showDefaultPolicy();
