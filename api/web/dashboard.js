// The operators' dashboard: reads /queue/stats and the queue-depth chart every REFRESH_MS and
// writes each figure into the element whose data-stat names its path in the JSON. A source
// that did not answer is flagged and its figures shown as "unavailable" rather than stale.
'use strict';

(function () {
  const { $, $$, el, sleep, problem, inlineSvg, apiFetch } = window.pmc;
  const REFRESH_MS = 5000;

  // How each figure is written; the default is a whole number.
  const FORMATS = {
    'queue.oldest_ready_age_seconds': (v) => (v === null ? 'none waiting' : `${v.toFixed(1)} s`),
    'jobs.latency.p50_seconds': (v) => (v === null ? '–' : `${v.toFixed(2)} s`),
    'jobs.latency.p95_seconds': (v) => (v === null ? '–' : `${v.toFixed(2)} s`),
    'jobs.error_rate.rate': (v) => (v === null ? '–' : `${(v * 100).toFixed(1)} %`),
  };
  const perMinute = (v) => v.toFixed(2);

  function lookup(stats, path) {
    return path.split('.').reduce((node, part) => (node === null || node === undefined ? undefined : node[part]), stats);
  }

  function showFigures(stats) {
    for (const node of $$('[data-stat]')) {
      const path = node.dataset.stat;
      const root = stats[path.split('.')[0]];
      if (root === null || root === undefined) {
        node.textContent = 'unavailable';
        node.classList.add('unavailable');
        continue;
      }
      node.classList.remove('unavailable');
      const v = lookup(stats, path);
      const format = FORMATS[path] || (path.endsWith('.per_minute') ? perMinute : (x) => String(x));
      node.textContent = v === undefined ? '–' : format(v);
    }
  }

  // Alerts are rewritten only when they change, so a screen reader announces an outage once,
  // not at every refresh.
  function showSources(stats) {
    const box = $('#sources');
    const messages = [['Redis', stats.redis], ['Postgres', stats.postgres]]
      .filter(([, source]) => !source.available)
      .map(([name, source]) => `${name} is unavailable: ${source.error || 'no answer'}. Its figures are not shown until it answers again.`);
    if (messages.join('\n') === box.dataset.shown) return;
    box.dataset.shown = messages.join('\n');
    box.replaceChildren(...messages.map((m) => el('p', { class: 'problem', role: 'alert' }, m)));
  }

  function time(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString();
  }

  function showWorkers(queue) {
    const body = $('#workers tbody');
    if (!queue) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 4 }, 'Unavailable while Redis does not answer.')));
      return;
    }
    if (!queue.workers.length) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 4 }, 'No worker is registered with the queue: none is running, or each stopped cleanly.')));
      return;
    }
    body.replaceChildren(...queue.workers.map((w) => el('tr', { 'data-worker': w.name },
      el('th', { scope: 'row' }, w.name),
      el('td', { class: w.alive ? 'ok' : 'bad' }, w.alive ? 'alive' : 'silent'),
      el('td', {}, `${time(w.last_heartbeat)} (${w.seconds_since_heartbeat} s ago)`),
      el('td', {}, w.current_jobs.length
        ? w.current_jobs.map((id, i) => [i ? ', ' : '', el('a', { href: `/?job=${id}` }, id.slice(0, 8))])
        : 'idle'))));
  }

  function showFailures(jobs) {
    const body = $('#failures tbody');
    if (!jobs) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 4 }, 'Unavailable while Postgres does not answer.')));
      return;
    }
    if (!jobs.recent_failures.length) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 4 }, 'No failed jobs.')));
      return;
    }
    body.replaceChildren(...jobs.recent_failures.map((f) => el('tr', { 'data-job': f.id },
      el('th', { scope: 'row' }, el('a', { href: `/?job=${f.id}` }, f.id)),
      el('td', {}, time(f.failed_at)),
      el('td', {}, String(f.attempts)),
      el('td', { class: 'error-text' }, f.error || '–'))));
  }

  // Without an answer, the last figures would read as current: each is shown unavailable.
  function showNothing(why) {
    showFigures({});
    // Redis's and Postgres's alerts were the API's word: it says nothing now.
    $('#sources').replaceChildren();
    delete $('#sources').dataset.shown;
    for (const css of ['#workers tbody', '#failures tbody']) {
      $(css).replaceChildren(el('tr', {}, el('td', { colspan: 4 }, `Unavailable while ${why}.`)));
    }
  }

  async function refresh() {
    let response;
    try {
      response = await apiFetch('/queue/stats', { headers: { Accept: 'application/json' }, cache: 'no-store' }, 'operator');
    } catch (_) {
      $('#updated').textContent = `The API cannot be reached (last try ${new Date().toLocaleTimeString()}); retrying.`;
      showNothing('the API does not answer');
      return;
    }
    if (!response.ok) {
      const p = await problem(response);
      $('#updated').textContent = `${p.title}: ${p.detail} (at ${new Date().toLocaleTimeString()}); retrying.`;
      showNothing('the API cannot tell');
      return;
    }
    const stats = await response.json();
    showSources(stats);
    showFigures(stats);
    showWorkers(stats.queue);
    showFailures(stats.jobs);
    document.body.dataset.generatedAt = stats.generated_at;
    $('#updated').textContent = `Updated ${time(stats.generated_at)}.`;
  }

  async function loop() {
    for (;;) {
      const started = Date.now();
      await Promise.all([refresh(), inlineSvg('/queue/charts/depth.svg', $('#depth-chart .chart-box'), 'operator')]);
      await sleep(Math.max(0, REFRESH_MS - (Date.now() - started)));
    }
  }

  loop();
})();
