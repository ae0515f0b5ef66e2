// Helpers shared by the simulation page (app.js) and the operators' dashboard
// (dashboard.js): element building without innerHTML for text, number formats, Retry-After,
// problem documents, and inlining the server's SVG charts.
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

  // Mirrors the server's chart labels (api/src/charts/mod.rs `compact`): 1.25M, 830k.
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

  // Fetches one of the server's SVG charts and puts it into `box`, inline, so its <title> and
  // <desc> reach assistive technology and it scales with the page.
  async function inlineSvg(url, box) {
    box.setAttribute('aria-busy', 'true');
    try {
      const response = await fetch(url, { headers: { Accept: 'image/svg+xml' } });
      if (!response.ok) {
        const p = await problem(response);
        throw new Error(`${p.title}${p.detail ? `: ${p.detail}` : ''}`);
      }
      const svg = await response.text();
      // Our own server's SVG (plotters output, text escaped there), not user content.
      box.innerHTML = svg;
    } catch (error) {
      box.replaceChildren(el('p', { class: 'chart-error' }, `The chart could not be loaded (${error.message}).`));
    } finally {
      box.removeAttribute('aria-busy');
    }
  }

  return { $, $$, el, sleep, retryAfter, problem, money, compact, percent, inlineSvg };
})();
