// Helpers shared by the simulation page (app.js) and the operators' dashboard
// (dashboard.js): element building without innerHTML for text, number formats, Retry-After,
// problem documents, inlining the server's SVG charts, and the API key: every call to the API
// goes through apiFetch, which sends the key as a Bearer header and, when the API answers 401
// (or 403 where a scope is needed), asks for one. The key is kept in this tab's sessionStorage
// only: never in a URL, a cookie or localStorage.
'use strict';

window.pmc = (function () {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // el('p', {class: 'x', id: 'y'}, 'text', otherNode): text children become text nodes, so
  // nothing that came from the API is ever parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Seconds from a Retry-After header (delta-seconds or an HTTP date), or null.
  function retryAfter(response) {
    const value = response.headers.get('Retry-After');
    if (!value) return null;
    const seconds = Number(value);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds;
    const date = Date.parse(value);
    return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
  }

  // The problem document of an error response, or one made up from its status.
  async function problem(response) {
    try {
      const body = await response.json();
      if (body && typeof body === 'object') {
        return {
          title: body.title || `HTTP ${response.status}`,
          detail: body.detail || '',
          errors: Array.isArray(body.errors) ? body.errors : [],
          status: response.status,
          type: body.type || '',
        };
      }
    } catch (_) {
      // Not JSON (a proxy's error page): fall through.
    }
    return { title: `HTTP ${response.status}`, detail: response.statusText, errors: [], status: response.status, type: '' };
  }

  const wholeNumber = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const money = (x) => (Number.isFinite(x) ? wholeNumber.format(x) : '–');

  // Mirrors the server's chart labels (api/src/draw/mod.rs `compact`): 1.25M, 830k.
  function compact(x) {
    if (!Number.isFinite(x)) return '–';
    const a = Math.abs(x);
    const [value, suffix] = a >= 1e12 ? [a / 1e12, 'T'] : a >= 1e9 ? [a / 1e9, 'B'] : a >= 1e6 ? [a / 1e6, 'M'] : a >= 1e3 ? [a / 1e3, 'k'] : [a, ''];
    const digits = value >= 100 || value === 0 ? 0 : value >= 10 ? 1 : 2;
    let text = value.toFixed(digits);
    if (text.includes('.')) text = text.replace(/0+$/, '').replace(/\.$/, '');
    return `${x < 0 ? '-' : ''}${text}${suffix}`;
  }

  const percent = (share, digits = 1) => (Number.isFinite(share) ? `${(share * 100).toFixed(digits)} %` : '–');

  const KEY_STORAGE = 'portfolio-mc.api-key';

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE);
    } catch (_) {
      return null;
    }
  }

  function setApiKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      // Storage refused (a private mode): the key lives until the page is left.
    }
    memoryKey = key || null;
    showForget();
  }

  let memoryKey = null;
  const currentKey = () => apiKey() || memoryKey;

  // One prompt at a time: every request refused meanwhile waits for the same answer.
  let asking = null;

  // Shows the key form with `reason`, resolves once a key is entered.
  // `back`: a link out of the dialog (to the planner) for a page this key may not open.
  // `dismiss`: the label of a button that closes it without a key (the promise then resolves
  // to null), for a prompt the page can do without (one action this key may not take).
  function askForKey(reason, back = null, dismiss = null) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const input = el('input', {
        id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
        required: true, 'aria-describedby': 'api-key-reason api-key-hint',
      });
      const form = el('form', { id: 'api-key-form', method: 'dialog' },
        el('h2', { id: 'api-key-heading' }, 'API key needed'),
        el('p', { id: 'api-key-reason', role: 'alert' }, reason),
        el('label', { for: 'api-key' }, 'API key'),
        input,
        el('p', { id: 'api-key-hint', class: 'hint' },
          'It looks like pmc_xxxxxxxx_… and comes from whoever runs this service (portfolio-api keys create). It is kept in this tab only, until the tab is closed.'),
        el('div', { class: 'actions' },
          el('button', { type: 'submit', id: 'api-key-submit', class: 'primary' }, 'Use this key'),
          ...(back ? [el('a', { href: back.href, id: 'api-key-back' }, back.text)] : []),
          ...(dismiss ? [el('button', { type: 'button', id: 'api-key-dismiss' }, dismiss)] : [])));
      const dialog = el('dialog', { id: 'api-key-dialog', 'aria-labelledby': 'api-key-heading' }, form);
      let given = false;
      const close = (key) => {
        given = true;
        dialog.close();
        dialog.remove();
        asking = null;
        resolve(key);
      };
      if (dismiss) form.querySelector('#api-key-dismiss').addEventListener('click', () => close(null));
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) {
          input.focus();
          return;
        }
        setApiKey(key);
        close(key);
      });
      // Escape would leave the page waiting for ever: the form stays until a key is given,
      // unless it can be dismissed. Chromium closes a modal dialog on a second Escape whatever
      // its cancel handler says, so a dialog closed without a key opens again.
      dialog.addEventListener('cancel', (event) => {
        event.preventDefault();
        if (dismiss) close(null);
      });
      dialog.addEventListener('close', () => {
        if (given) return;
        dialog.showModal();
        input.focus();
      });
      document.body.append(dialog);
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  // What the key prompt says when a key lacks the scope a request needs, and where it offers
  // to go instead.
  const SCOPE_PROMPTS = {
    operator: ['This page is for operators, and this key does not have the operator scope. Enter a key that has it, or go back to the planner.',
      { href: '/', text: 'Back to the planner' }],
    simulate: ['Running a plan needs a key with the simulate scope, and this key does not have it (an operator-only key reads jobs but runs none). Enter a key that has it.',
      null, 'Not now'],
  };

  // fetch() for the API: sends the key; on 401 (or on 403 when `scope` names the scope the
  // page needs) asks for a key and tries again.
  async function apiFetch(url, options = {}, scope = null) {
    for (;;) {
      const headers = new Headers(options.headers || {});
      const key = currentKey();
      if (key) headers.set('Authorization', `Bearer ${key}`);
      const response = await fetch(url, { ...options, headers });
      // A key entered meanwhile (for another request's prompt) is tried before asking again.
      if ((response.status === 401 || response.status === 403) && currentKey() !== key) continue;
      if (response.status === 401) {
        setApiKey(null);
        await askForKey(key
          ? 'The API did not accept that key (it may be mistyped or revoked). Enter another one.'
          : 'This service needs an API key. Enter yours to continue.');
        continue;
      }
      if (response.status === 403 && scope) {
        // The key is good for the rest of the site: it stays until another is entered here.
        // Dismissed, the refusal is the answer, for the page to show.
        if ((await askForKey(...SCOPE_PROMPTS[scope])) === null) return response;
        continue;
      }
      return response;
    }
  }

  // Saves what the API answers at `url` as a file named `name` (a plain link would carry no key).
  async function download(url, name) {
    const response = await apiFetch(url);
    if (!response.ok) {
      const p = await problem(response);
      throw new Error(`${p.title}${p.detail ? `: ${p.detail}` : ''}`);
    }
    const href = URL.createObjectURL(await response.blob());
    const link = el('a', { href, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  }

  // "Forget the API key", in the site's navigation while a key is kept.
  function showForget() {
    const nav = $('header.site nav');
    if (!nav) return;
    let button = $('#forget-key', nav);
    if (!button) {
      button = el('button', { type: 'button', id: 'forget-key', class: 'link' }, 'Forget API key');
      button.addEventListener('click', () => {
        setApiKey(null);
        location.reload();
      });
      nav.append(button);
    }
    button.hidden = !currentKey();
  }

  // The navigation's link to the OpenAPI document, which needs the key like the rest of the API.
  function keyedLinks() {
    showForget();
    for (const link of $$('a[href="/openapi.json"]')) {
      link.addEventListener('click', (event) => {
        event.preventDefault();
        download('/openapi.json', 'portfolio-mc-openapi.json').catch(() => {});
      });
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', keyedLinks);
  else keyedLinks();

  // Every chart of one kind names its <title> and <desc> alike (fan-title, fan-desc): two on the
  // page at once (a plan's, and a plan of a sweep's) would each be labelled by the first. So each
  // inlined chart gets ids of its own, and its aria references follow them.
  let inlinedCharts = 0;
  function uniqueIds(svg) {
    if (!svg) return;
    const prefix = `chart${++inlinedCharts}-`;
    const nodes = [svg, ...svg.querySelectorAll('*')];
    const renamed = new Map();
    for (const node of nodes.filter((n) => n.id)) {
      renamed.set(node.id, prefix + node.id);
      node.id = prefix + node.id;
    }
    for (const node of nodes) {
      for (const name of ['aria-labelledby', 'aria-describedby']) {
        const value = node.getAttribute(name);
        if (value) node.setAttribute(name, value.split(/\s+/).map((id) => renamed.get(id) ?? id).join(' '));
      }
    }
  }

  // Fetches one of the server's SVG charts and puts it into `box`, inline, so its <title> and
  // <desc> reach assistive technology and it scales with the page.
  async function inlineSvg(url, box, scope = null) {
    box.setAttribute('aria-busy', 'true');
    try {
      const response = await apiFetch(url, { headers: { Accept: 'image/svg+xml' } }, scope);
      if (!response.ok) {
        const p = await problem(response);
        throw new Error(`${p.title}${p.detail ? `: ${p.detail}` : ''}`);
      }
      const svg = await response.text();
      // Our own server's SVG (plotters output, text escaped there), not user content.
      box.innerHTML = svg;
      uniqueIds(box.querySelector('svg'));
    } catch (error) {
      box.replaceChildren(el('p', { class: 'chart-error' }, `The chart could not be loaded (${error.message}).`));
    } finally {
      box.removeAttribute('aria-busy');
    }
  }

  return { $, $$, el, sleep, retryAfter, problem, money, compact, percent, inlineSvg, apiFetch, download };
})();
