// The web UI: task list, task page (status, steps, tool calls, diff) applied live from the
// patch stream, a form to submit tasks, and a login form (API key → HttpOnly cookie) when the
// kernel answers 401.
import { StateClient } from '/client.js';

const $ = (sel) => document.querySelector(sel);
let selected = location.hash.slice(1) || null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
  return node;
}

function renderTasks(state) {
  const list = $('#tasks');
  const tasks = Object.values(state.tasks).sort((a, b) => b.createdAt - a.createdAt);
  list.replaceChildren(
    ...tasks.map((t) => {
      const li = el('li', { 'data-task': t.id, class: t.id === selected ? 'selected' : '' },
        el('span', { class: `status ${t.status}` }, t.status), el('span', {}, t.prompt.slice(0, 80)));
      li.onclick = () => {
        selected = t.id;
        location.hash = t.id;
        render(state);
      };
      return li;
    }),
  );
  if (tasks.length === 0) list.append(el('li', { class: 'muted' }, 'No tasks yet.'));
}

function diffBlock(unified) {
  const pre = el('pre');
  for (const line of unified.split('\n')) {
    const cls = line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('-') && !line.startsWith('---') ? 'del' : '';
    pre.append(el('span', cls ? { class: cls } : {}, `${line}\n`));
  }
  return pre;
}

function renderTask(state) {
  const root = $('#task');
  const t = selected && state.tasks[selected];
  if (!t) {
    root.replaceChildren(el('p', { class: 'muted' }, 'Select a task.'));
    return;
  }
  const steps = Object.values(t.steps).sort((a, b) => a.n - b.n);
  const calls = Object.values(t.toolCalls).sort((a, b) => a.startedAt - b.startedAt);
  const children = [
    el('h2', {}, t.prompt),
    el('p', {}, el('span', { id: 'task-status', class: `status ${t.status}` }, t.status), ' ',
      el('span', { class: 'muted' }, `${t.model} · ${t.workspace} · session ${t.sessionId ?? '—'}${t.sessionStatus ? ` (${t.sessionStatus})` : ''} · tokens ${t.usage.promptTokens}+${t.usage.completionTokens}`)),
  ];
  if (t.summary) children.push(el('p', {}, t.summary));
  if (t.error) children.push(el('p', { class: 'error' }, t.error));
  if (t.sessionId && t.sessionStatus === 'open' && t.status !== 'running') {
    const commit = el('button', { id: 'commit' }, 'Commit');
    const discard = el('button', { id: 'discard' }, 'Discard');
    commit.onclick = () => fetch(`/api/sessions/${t.sessionId}/commit`, { method: 'POST' });
    discard.onclick = () => fetch(`/api/sessions/${t.sessionId}/discard`, { method: 'POST' });
    children.push(el('p', {}, commit, ' ', discard));
  }
  children.push(el('h2', {}, `Steps (${steps.length})`));
  children.push(el('table', { id: 'steps' }, ...steps.map((s) => el('tr', {}, el('td', {}, s.n), el('td', {}, s.component), el('td', {}, s.step), el('td', {}, s.detail)))));
  children.push(el('h2', {}, `Tool calls (${calls.length})`));
  children.push(el('table', { id: 'tool-calls' }, ...calls.map((c) => el('tr', { 'data-call': c.id },
    el('td', {}, el('span', { class: `status ${c.status}` }, c.status === 'error' && c.outcome ? c.outcome : c.status)),
    el('td', {}, `${c.caller} → ${c.target}.${c.method}`),
    el('td', {}, el('code', {}, c.input.slice(0, 300))),
    el('td', {}, formatDuration(c))))));
  if (t.diff) {
    children.push(el('h2', {}, `Diff (${t.diff.length} file${t.diff.length === 1 ? '' : 's'})`));
    const diff = el('div', { id: 'diff' });
    for (const change of t.diff) {
      diff.append(el('p', {}, el('strong', {}, `${change.kind} ${change.from ? `${change.from} → ` : ''}${change.path}`)));
      if (change.unified) diff.append(diffBlock(change.unified));
    }
    children.push(diff);
  }
  root.replaceChildren(...children);
}

function render(state) {
  renderTasks(state);
  renderTask(state);
}

const client = new StateClient((state, seq) => {
  $('#conn').textContent = `live · seq ${seq}`;
  render(state);
}, () => showLogin());
client.connect();

function showLogin(message = '') {
  $('#conn').textContent = 'not logged in';
  $('#login-error').textContent = message;
  $('#login').hidden = false;
}

$('#login').onsubmit = async (event) => {
  event.preventDefault();
  const key = new FormData(event.target).get('key');
  const res = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) });
  if (res.status !== 204) {
    $('#login-error').textContent = (await res.json()).message;
    return;
  }
  event.target.reset();
  $('#login').hidden = true;
  client.connect();
};

$('#submit').onsubmit = async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { task: form.get('task'), workspace: form.get('workspace') };
  if (form.get('model')) body.model = form.get('model');
  const res = await fetch('/api/tasks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await res.json();
  if (res.status === 401) showLogin(answer.message);
  if (!res.ok) {
    $('#submit-error').textContent = answer.message;
    return;
  }
  $('#submit-error').textContent = '';
  selected = answer.id;
  location.hash = answer.id;
  if (client.state) render(client.state);
};

/** A call's duration: µs below a millisecond, ms above. */
function formatDuration(call) {
  if (call.durationUs !== undefined && call.durationUs < 1000) return `${call.durationUs} µs`;
  return call.durationMs === undefined ? '' : `${call.durationMs} ms`;
}
