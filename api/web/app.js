// The simulation page: a form for every field of POST /simulations, checked here by the API's
// own rules (GET /assets/rules.json, generated from the engine's table of rules under this
// deployment's limits, so the bounds, defaults and messages are the API's; the API checks again
// and its messages are shown the same way), then the job followed by long-polling GET /results/{id}?wait=
// until it ends, and its result shown with the server's charts, a table and downloads. The job
// id lives in the address (?job=<id>), so a reload or a shared link picks the job up again.
// This file holds only presentation: labels, order, hints in words, and when a field shows.
'use strict';

(function () {
  const { $, $$, el, sleep, retryAfter, problem, money, compact, percent, inlineSvg, apiFetch, download } = window.pmc;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

  // ---------------------------------------------------------------------------------------
  // The rules, as the API words them.
  // ---------------------------------------------------------------------------------------
  let RULES = null; // the rules document, loaded before the form is built

  // The rule of a field: list items share one (`income[2].end_year` → `income[].end_year`).
  const rule = (path) => RULES.fields[path.replace(/\[\d+\]/g, '[]')];
  /** A number as JSON writes one. */
  const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
  const fill = (template, values) =>
    Object.entries(values).reduce((text, [name, v]) => text.replaceAll(`{${name}}`, String(v)), template);

  // What the API takes for a field left out of a request that leaves out its object too: the
  // object's default where it has one (allocation: 0.6 / 0.4 / 0), else the field's own.
  function defaultOf(path) {
    const parts = path.split('.');
    for (let i = 1; i < parts.length; i += 1) {
      const parent = RULES.fields[parts.slice(0, i).join('.')];
      if (parent && parent.default && typeof parent.default === 'object') {
        const v = parts.slice(i).reduce((o, k) => (o === null || o === undefined ? o : o[k]), parent.default);
        if (v !== undefined) return v;
      }
    }
    const r = rule(path);
    return r ? r.default : undefined;
  }

  // A number as the API writes it in a message (digits, never an exponent).
  function plainNumber(x) {
    const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(String(x));
    if (!m) return String(x);
    const [, sign, lead, rest = '', exponent] = m;
    const digits = lead + rest;
    const e = Number(exponent);
    return e < 0 ? `${sign}0.${'0'.repeat(-e - 1)}${digits}` : `${sign}${digits.padEnd(e + 1, '0')}`;
  }

  // The years a cash flow may name: the horizon when it is valid (the API does the same).
  function horizon() {
    const years = Number(value('years'));
    const max = rule('years').maximum;
    return Number.isInteger(years) && years >= 1 && years <= max ? years : max;
  }

  const maximumOf = (r) => (r.maximum === 'years' ? horizon() : r.maximum);

  // A value checked by its rule: { value } or { message }, in the API's words.
  function check(r, x) {
    if (r.kind === 'integer') {
      const max = maximumOf(r);
      return Number.isInteger(x) && x >= r.minimum && x <= max ? { value: x } : { message: fill(r.message, { max }) };
    }
    const above = r.exclusive_minimum ? x > r.minimum : x >= r.minimum;
    if (!(Number.isFinite(x) && above && x <= r.maximum)) return { message: r.message };
    if (r.exclusive_maximum && x >= r.maximum) return { message: r.message_at_maximum };
    return { value: x };
  }

  // The lower-triangular factor of a correlation matrix, or null when it is not positive
  // semi-definite: the engine's own test (linalg::cholesky_psd), step for step.
  function choleskyPsd(m) {
    const l = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
    const dot = (i, j, upTo) => {
      let s = -0;
      for (let k = 0; k < upTo; k += 1) s += l[i][k] * l[j][k];
      return s;
    };
    for (let j = 0; j < 3; j += 1) {
      const d = m[j][j] - dot(j, j, j);
      if (d < -1e-12) return null;
      if (d <= 1e-12) {
        for (let i = j + 1; i < 3; i += 1) {
          if (Math.abs(m[i][j] - dot(i, j, j)) > 1e-9) return null;
        }
        continue;
      }
      const pivot = Math.sqrt(d);
      l[j][j] = pivot;
      for (let i = j + 1; i < 3; i += 1) l[i][j] = (m[i][j] - dot(i, j, j)) / pivot;
    }
    return l;
  }

  const round = (x) => (Number.isFinite(x) ? String(Math.round(x * 1e4) / 1e4) : '');
  const returnKind = () => value('return_model.kind');
  const strategy = () => value('withdrawal.strategy');
  const solving = () => $('#f-solve-enabled').checked;
  // The choice a parameter's `only_for` names: the kind of the return model or the strategy.
  const chosen = (path) => (path.startsWith('return_model.') ? returnKind() : strategy());

  // One entry per input: its JSON path, label, kind and presentation. Bounds, defaults and
  // messages come from the rules; `prefill` puts the default in the box rather than in its
  // placeholder. A parameter of some kinds or strategies only shows while one is chosen.
  const SECTIONS = [
    {
      legend: 'Basics',
      fields: [
        { path: 'starting_portfolio', label: 'Starting portfolio', kind: 'number', value: 1000000, step: 1000 },
        { path: 'monthly_spending', label: 'Monthly spending', kind: 'number', value: 4000, step: 50,
          hint: 'Raised with inflation every month. With guardrails it sets the first year’s withdrawal rate.' },
        { path: 'years', label: 'Years', kind: 'int', value: 30 },
        { path: 'n_scenarios', label: 'Scenarios', kind: 'int', prefill: true,
          hint: 'The historical model runs every window instead.' },
        { path: 'seed', label: 'Seed (optional)', kind: 'seed', hint: 'Blank: one is drawn and shown with the result, so it can be reproduced.' },
      ],
    },
    {
      legend: 'Allocation',
      group: 'allocation',
      hint: 'Target weights, each from 0 to 1, summing to 1.',
      fields: [
        { path: 'allocation.stocks', label: 'Stocks', kind: 'number', prefill: true, step: 0.05 },
        { path: 'allocation.bonds', label: 'Bonds', kind: 'number', prefill: true, step: 0.05 },
        { path: 'allocation.cash', label: 'Cash', kind: 'number', prefill: true, step: 0.05 },
      ],
    },
    {
      legend: 'Returns',
      group: 'return_model',
      fields: [
        { path: 'return_model.kind', label: 'Return model', kind: 'select', labels: {
          lognormal: 'Lognormal (correlated)',
          normal: 'Normal (correlated)',
          student_t: 'Student-t (fat tails)',
          bootstrap: 'Bootstrap of 1928–2024 years',
          historical: 'Every historical window, 1928–2024',
        } },
        { path: 'return_model.df', label: 'Degrees of freedom', kind: 'number', hint: 'Above 2; lower means fatter tails.' },
        { path: 'return_model.block_years', label: 'Block length (years)', kind: 'int', hint: 'Consecutive years drawn together.' },
        { path: 'annual_fee', label: 'Annual fee', kind: 'number', prefill: true, step: 0.001, hint: 'Fraction of the portfolio per year, charged monthly.' },
        { path: 'rebalancing', label: 'Rebalancing', kind: 'select', labels: { monthly: 'Monthly', annual: 'Annual', none: 'Never' } },
      ],
    },
    {
      legend: 'Withdrawals',
      group: 'withdrawal',
      fields: [
        { path: 'withdrawal.strategy', label: 'Strategy', kind: 'select', labels: {
          constant_real: 'Constant real spending',
          percent_of_portfolio: 'Percent of portfolio',
          guardrails: 'Guardrails (Guyton–Klinger)',
          floor_ceiling: 'Percent with floor and ceiling',
        } },
        { path: 'withdrawal.rate', label: 'Rate', kind: 'number', step: 0.005, hint: 'Fraction of the portfolio each year.' },
        { path: 'withdrawal.upper_guardrail', label: 'Upper guardrail', kind: 'number', step: 0.05,
          hint: 'Cut spending when the withdrawal rate rises this far above the initial rate.' },
        { path: 'withdrawal.lower_guardrail', label: 'Lower guardrail', kind: 'number', step: 0.05, hint: 'Raise spending when it falls this far below.' },
        { path: 'withdrawal.cut', label: 'Cut', kind: 'number', step: 0.05 },
        { path: 'withdrawal.raise', label: 'Raise', kind: 'number', step: 0.05 },
        { path: 'withdrawal.monthly_floor', label: 'Monthly floor', kind: 'number', step: 50, hint: 'Today’s money.', blank: 'no floor' },
        { path: 'withdrawal.monthly_ceiling', label: 'Monthly ceiling', kind: 'number', step: 50, hint: 'Today’s money.', blank: 'no ceiling', placeholder: 'none' },
      ],
    },
    {
      legend: 'Safe spending solver',
      group: 'solve',
      fields: [
        { path: 'solve.enabled', label: 'Find the highest constant real monthly spending that reaches a target success rate', kind: 'check', value: false },
        { path: 'solve.target_success', label: 'Target success', kind: 'number', value: 0.9, step: 0.01,
          // Explore hides the plan's solver and sends its own (readSweep): this one is not read.
          when: () => solving() && !$('#mode-explore')?.checked, hint: 'Strictly between 0 and 1. Needs the constant real strategy.' },
      ],
    },
    {
      legend: 'Capital-market assumptions',
      group: 'assumptions',
      collapsible: true,
      hint: 'Used by the lognormal, normal and Student-t models. Blank fields take the 1928–2024 averages shown.',
      fields: [
        ...['stocks', 'bonds', 'cash'].flatMap((asset) => [
          { path: `assumptions.${asset}.mean_return`, label: `${cap(asset)}: mean return`, kind: 'number', rounded: true, step: 0.005 },
          { path: `assumptions.${asset}.volatility`, label: `${cap(asset)}: volatility`, kind: 'number', rounded: true, step: 0.005 },
        ]),
        { path: 'assumptions.inflation.mean', label: 'Inflation: mean', kind: 'number', rounded: true, step: 0.005 },
        { path: 'assumptions.inflation.volatility', label: 'Inflation: volatility', kind: 'number', rounded: true, step: 0.005 },
        ...[[0, 1, 'Stocks–bonds'], [0, 2, 'Stocks–cash'], [1, 2, 'Bonds–cash']].map(([i, j, name]) => ({
          path: `assumptions.correlation[${i}][${j}]`, label: `Correlation ${name}`, kind: 'number', correlation: [i, j],
          rulePath: 'assumptions.correlation', step: 0.05,
        })),
      ],
    },
  ];

  // Income streams, one-off expenses and one-off inflows: lists of small records.
  const LISTS = {
    income: {
      legend: 'Income streams', add: 'Add an income stream', noun: 'Income stream',
      hint: 'Pensions, social security: paid monthly in the years given, reducing what is withdrawn.',
      fields: [
        { name: 'name', label: 'Name', kind: 'text' },
        { name: 'monthly_amount', label: 'Monthly amount', kind: 'number', step: 50 },
        { name: 'start_year', label: 'First year', kind: 'int' },
        { name: 'end_year', label: 'Last year', kind: 'int', placeholder: 'horizon' },
        { name: 'inflation_adjusted', label: 'Rises with inflation', kind: 'check' },
      ],
    },
    expenses: {
      legend: 'One-off expenses', add: 'Add an expense', noun: 'Expense',
      hint: 'Taken from the portfolio at the start of the year.',
      fields: oneOffFields(),
    },
    inflows: {
      legend: 'One-off inflows', add: 'Add an inflow', noun: 'Inflow',
      hint: 'Added to the portfolio at the start of the year (an inheritance, a house sale).',
      fields: oneOffFields(),
    },
  };

  function oneOffFields() {
    return [
      { name: 'name', label: 'Name', kind: 'text' },
      { name: 'year', label: 'Year', kind: 'int' },
      { name: 'amount', label: 'Amount', kind: 'number', step: 1000 },
      { name: 'inflation_adjusted', label: 'In today’s money', kind: 'check' },
    ];
  }

  function cap(word) {
    return word[0].toUpperCase() + word.slice(1);
  }

  // The rule of a form field (the correlation's cells share the matrix's).
  const ruleOf = (spec, path) => rule(spec.rulePath || path);

  // Whether a field shows (and is sent): its own `when`, and for a parameter of some kinds or
  // strategies, whether one of them is chosen.
  function shown(spec, path) {
    if (spec.when) return spec.when();
    const r = ruleOf(spec, path);
    return !(r && r.only_for) || r.only_for.includes(chosen(path));
  }

  // What a field holds after a reset: its example value, or the API's default when prefilled.
  function initial(spec, path) {
    if (spec.value !== undefined) return spec.value;
    if (spec.kind === 'select' || spec.kind === 'check' || spec.prefill) return defaultOf(path);
    return undefined;
  }

  // The placeholder of a blank field: the default the API takes for it.
  function placeholder(spec, path) {
    if (spec.placeholder !== undefined) return spec.placeholder;
    if (spec.prefill || spec.value !== undefined || spec.kind === 'text') return undefined;
    const d = spec.correlation ? defaultOf(spec.rulePath)[spec.correlation[0]][spec.correlation[1]] : defaultOf(path);
    if (typeof d !== 'number') return undefined;
    return spec.rounded || spec.correlation ? round(d) : String(d);
  }

  // The hint in words, and what a blank field becomes.
  function hint(spec, path) {
    const d = defaultOf(path);
    let blank = null;
    if (spec.blank) blank = spec.blank;
    else if (spec.prefill && typeof d === 'number' && spec.kind === 'int') blank = d.toLocaleString('en-US');
    else if (!spec.prefill && spec.value === undefined && !spec.rounded && typeof d === 'number' && !spec.correlation) blank = String(d);
    const parts = [blank !== null && spec.prefill ? `Blank: ${blank}.` : null, spec.hint, blank !== null && !spec.prefill ? `Blank: ${blank}.` : null];
    const text = parts.filter(Boolean).join(' ');
    return text || undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Building the form.
  // ---------------------------------------------------------------------------------------
  const keyOf = (path) => path.replace(/\]/g, '').replace(/[.[]/g, '-');
  const input = (path) => document.getElementById(`f-${keyOf(path)}`);
  const value = (path) => {
    const node = input(path);
    return node ? node.value : '';
  };

  function fieldNode(spec, path) {
    const key = keyOf(path);
    const id = `f-${key}`;
    const r = ruleOf(spec, path);
    const required = Boolean(r && r.required && spec.kind !== 'select');
    const hintText = spec.kind === 'select' || spec.kind === 'check' ? spec.hint : hint(spec, path);
    const describedBy = [hintText ? `h-${key}` : null, `e-${key}`].filter(Boolean).join(' ');
    let control;
    if (spec.kind === 'select') {
      control = el('select', { id, name: path, 'aria-describedby': describedBy },
        r.choices.map((v) => el('option', { value: v }, spec.labels[v] || v)));
    } else if (spec.kind === 'check') {
      control = el('input', { id, name: path, type: 'checkbox', 'aria-describedby': describedBy });
    } else if (spec.kind === 'text') {
      control = el('input', { id, name: path, type: 'text', maxlength: 200, autocomplete: 'off', 'aria-describedby': describedBy });
    } else if (spec.kind === 'seed') {
      control = el('input', { id, name: path, type: 'text', inputmode: 'numeric', pattern: '[0-9]*', autocomplete: 'off', 'aria-describedby': describedBy });
    } else {
      control = el('input', {
        id, name: path, type: 'number', inputmode: spec.kind === 'int' ? 'numeric' : 'decimal',
        step: spec.kind === 'int' ? 1 : spec.step || 'any', placeholder: placeholder(spec, path),
        'aria-describedby': describedBy, 'aria-required': required ? 'true' : null,
      });
    }
    const label = el('label', { for: id }, spec.label, required ? el('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : null);
    const wrapper = el('div', { class: `field field-${spec.kind}`, 'data-path': path },
      spec.kind === 'check' ? [control, label] : [label, control],
      hintText ? el('p', { class: 'hint', id: `h-${key}` }, hintText) : null,
      el('p', { class: 'error', id: `e-${key}` }));
    return wrapper;
  }

  function buildForm() {
    const root = $('#fields');
    for (const section of SECTIONS) {
      const key = section.group ? keyOf(section.group) : null;
      const body = el('div', { class: 'grid' }, section.fields.map((f) => fieldNode(f, f.path)));
      const parts = [
        section.hint ? el('p', { class: 'hint' }, section.hint) : null,
        body,
        key ? el('p', { class: 'error', id: `e-${key}`, 'data-group': 'true' }) : null,
      ];
      if (key === 'assumptions') {
        parts.push(el('p', { class: 'error', id: 'e-assumptions-correlation', 'data-group': 'true' }));
      }
      if (section.collapsible) {
        root.append(el('details', { class: 'section', id: `section-${key}` },
          el('summary', {}, section.legend), el('fieldset', {}, el('legend', { class: 'visually-hidden' }, section.legend), parts)));
      } else {
        root.append(el('fieldset', { class: 'section' }, el('legend', {}, section.legend), parts));
      }
    }
    for (const [name, list] of Object.entries(LISTS)) {
      root.append(el('details', { class: 'section', id: `section-${name}` },
        el('summary', {}, list.legend, el('span', { class: 'count', id: `count-${name}` })),
        el('fieldset', {},
          el('legend', { class: 'visually-hidden' }, list.legend),
          el('p', { class: 'hint' }, list.hint),
          el('div', { class: 'items', id: `items-${name}` }),
          el('p', { class: 'error', id: `e-${name}`, 'data-group': 'true' }),
          el('button', { type: 'button', class: 'add', 'data-add': name }, list.add))));
    }
  }

  function addItem(name, values = {}) {
    const list = LISTS[name];
    const items = $(`#items-${name}`);
    const index = items.children.length;
    const fieldset = el('fieldset', { class: 'item' },
      el('legend', {}, `${list.noun} ${index + 1}`),
      el('div', { class: 'grid' }, list.fields.map((f) => fieldNode(f, `${name}[${index}].${f.name}`))),
      el('button', { type: 'button', class: 'remove', 'data-remove': name, 'data-index': index }, `Remove ${list.noun.toLowerCase()} ${index + 1}`));
    items.append(fieldset);
    for (const f of list.fields) {
      const path = `${name}[${index}].${f.name}`;
      setControl(path, f, values[f.name] ?? initial(f, path));
    }
    updateCounts();
    return fieldset;
  }

  function listValues(name) {
    return $$(`#items-${name} > .item`).map((_, index) =>
      Object.fromEntries(LISTS[name].fields.map((f) => {
        const node = input(`${name}[${index}].${f.name}`);
        return [f.name, f.kind === 'check' ? node.checked : node.value];
      })));
  }

  // Removing an item renumbers the rest, so their paths match what the API will name.
  function removeItem(name, index) {
    const kept = listValues(name).filter((_, i) => i !== index);
    $(`#items-${name}`).replaceChildren();
    kept.forEach((values) => addItem(name, values));
    const next = $(`#items-${name} > .item:nth-child(${Math.min(index + 1, kept.length)}) input`) || $(`[data-add="${name}"]`);
    next.focus();
    updateCounts();
  }

  function updateCounts() {
    for (const name of Object.keys(LISTS)) {
      const n = $(`#items-${name}`).children.length;
      $(`#count-${name}`).textContent = n ? ` (${n})` : '';
    }
  }

  function setControl(path, spec, v) {
    const node = input(path);
    if (!node) return;
    if (spec.kind === 'check') node.checked = Boolean(v);
    else node.value = v === undefined || v === null ? '' : String(v);
  }

  function updateVisibility() {
    for (const section of SECTIONS) {
      for (const f of section.fields) {
        input(f.path).closest('.field').hidden = !shown(f, f.path);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Presets and defaults.
  // ---------------------------------------------------------------------------------------
  const PRESETS = {
    rule4: { monthly_spending: 3333.33, 'allocation.stocks': 0.6, 'allocation.bonds': 0.4 },
    conservative: { monthly_spending: 3000, 'allocation.stocks': 0.4, 'allocation.bonds': 0.6 },
    stocks: { monthly_spending: 3333.33, 'allocation.stocks': 1, 'allocation.bonds': 0 },
    guardrails: { monthly_spending: 4166.67, 'allocation.stocks': 0.6, 'allocation.bonds': 0.4, 'withdrawal.strategy': 'guardrails' },
    historical: { monthly_spending: 3333.33, 'allocation.stocks': 0.6, 'allocation.bonds': 0.4, 'return_model.kind': 'historical' },
  };

  function resetForm() {
    for (const section of SECTIONS) {
      for (const f of section.fields) setControl(f.path, f, initial(f, f.path));
    }
    for (const name of Object.keys(LISTS)) $(`#items-${name}`).replaceChildren();
    updateCounts();
    updateVisibility();
    clearErrors();
  }

  function applyPreset(name) {
    resetForm();
    for (const [path, v] of Object.entries(PRESETS[name])) input(path).value = String(v);
    updateVisibility();
    recentreRanges();
  }

  // Fills the form from a job's normalised request (every default filled in), so a resumed or
  // shared job shows what was asked.
  function fillForm(request, seedText) {
    resetForm();
    const set = (path, v) => {
      const node = input(path);
      if (!node || v === undefined || v === null) return;
      if (node.type === 'checkbox') node.checked = Boolean(v);
      else node.value = String(v);
    };
    for (const path of ['starting_portfolio', 'monthly_spending', 'years', 'n_scenarios', 'annual_fee', 'rebalancing']) set(path, request[path]);
    set('seed', seedText);
    for (const asset of ['stocks', 'bonds', 'cash']) set(`allocation.${asset}`, request.allocation?.[asset]);
    const rm = request.return_model || {};
    set('return_model.kind', rm.kind);
    set('return_model.df', rm.df);
    set('return_model.block_years', rm.block_years);
    const w = request.withdrawal || {};
    set('withdrawal.strategy', w.strategy);
    for (const k of ['rate', 'upper_guardrail', 'lower_guardrail', 'cut', 'raise', 'monthly_floor', 'monthly_ceiling']) set(`withdrawal.${k}`, w[k]);
    // The default ceiling means "none", which a blank box says better than ten billion.
    if (w.monthly_ceiling === defaultOf('withdrawal.monthly_ceiling')) set('withdrawal.monthly_ceiling', '');
    const a = request.assumptions;
    if (a) {
      for (const asset of ['stocks', 'bonds', 'cash']) {
        set(`assumptions.${asset}.mean_return`, a[asset]?.mean_return);
        set(`assumptions.${asset}.volatility`, a[asset]?.volatility);
      }
      set('assumptions.inflation.mean', a.inflation?.mean);
      set('assumptions.inflation.volatility', a.inflation?.volatility);
      for (const [i, j] of [[0, 1], [0, 2], [1, 2]]) set(`assumptions.correlation[${i}][${j}]`, a.correlation?.[i]?.[j]);
    }
    set('solve.enabled', Boolean(request.solve));
    if (request.solve) set('solve.target_success', request.solve.target_success);
    for (const name of Object.keys(LISTS)) {
      for (const item of request[name] || []) addItem(name, item);
    }
    fillSweep(request);
    updateVisibility();
  }

  // ---------------------------------------------------------------------------------------
  // Reading and checking the form: the API's rules, the API's words.
  // ---------------------------------------------------------------------------------------
  function setPath(target, path, v) {
    const parts = path.split('.');
    let node = target;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts[parts.length - 1]] = v;
  }

  function readNumber(path, spec, errors) {
    const r = ruleOf(spec, path);
    const node = input(path);
    const raw = node.value.trim();
    if (node.validity && node.validity.badInput) {
      // Text the browser cannot read as a number: the rule says what the field takes.
      errors.push({ field: path, message: check(r, NaN).message });
      return undefined;
    }
    if (raw === '') {
      if (r.required) errors.push({ field: path, message: RULES.required });
      return undefined;
    }
    const checked = check(r, Number(raw));
    if (checked.message !== undefined) {
      errors.push({ field: path, message: checked.message });
      return undefined;
    }
    return checked.value;
  }

  // Returns the JSON body and the broken rules (an empty list when the body may be sent).
  function readForm() {
    const errors = [];
    const body = {};
    let seed = null; // the seed as JSON text: digits beyond what a JavaScript number holds
    const correlation = {};
    for (const section of SECTIONS) {
      for (const f of section.fields) {
        if (!shown(f, f.path)) continue;
        if (f.kind === 'select') setPath(body, f.path, value(f.path));
        else if (f.kind === 'check') continue;
        else if (f.kind === 'seed') {
          const raw = value(f.path).trim();
          const r = rule('seed');
          if (raw === '') continue;
          if (/^\d+$/.test(raw)) {
            if (BigInt(raw) > BigInt(r.maximum_text)) errors.push({ field: 'seed', message: r.message });
            // Digits as JSON takes them ("007" is no JSON number), however many.
            else seed = BigInt(raw).toString();
          } else if (JSON_NUMBER.test(raw)) {
            // Another way of writing a number (a sign, a fraction, an exponent): sent as the
            // number it is, for the API to take or to say what a seed takes. As a string, its
            // message would be about a string the user never typed.
            seed = raw;
          } else {
            errors.push({ field: 'seed', message: r.message });
          }
        } else {
          const x = readNumber(f.path, f, errors);
          if (x === undefined) continue;
          if (f.correlation) correlation[f.correlation.join('')] = x;
          else setPath(body, f.path, x);
        }
      }
    }
    const table = RULES.limits.table_years;
    if (body.return_model.kind === 'historical' && Number.isInteger(body.years) && body.years > table) {
      errors.push({ field: 'years', message: fill(RULES.messages.historical_years, { table_years: table }) });
    }

    // A given allocation's blank weight is the rule's default (0); none given is the default
    // allocation, which sums to 1.
    if (body.allocation && !errors.some((e) => e.field.startsWith('allocation'))) {
      const weights = ['stocks', 'bonds', 'cash'].map((k) => body.allocation[k] ?? rule(`allocation.${k}`).default);
      const sum = weights.reduce((a, b) => a + b, 0);
      if (Math.abs(sum - 1) > RULES.limits.sum_tolerance) {
        errors.push({ field: 'allocation', message: fill(RULES.messages.allocation_sum, { sum: plainNumber(sum) }) });
      }
    }

    checkCorrelation(body, correlation, errors);

    const w = body.withdrawal;
    if (w.monthly_floor !== undefined && w.monthly_ceiling !== undefined && w.monthly_ceiling < w.monthly_floor) {
      errors.push({ field: 'withdrawal.monthly_ceiling', message: RULES.messages.ceiling_above_floor });
    }

    // Explore mode sends its own `solve` (see readSweep); the plan's solver is hidden then.
    if (solving() && !exploring()) {
      const target = body.solve?.target_success;
      // As the API: the strategy is judged once the target and the withdrawal are valid.
      const settled = target !== undefined && !errors.some((e) => e.field.startsWith('withdrawal'));
      if (settled && w.strategy !== 'constant_real') {
        errors.push({ field: 'solve', message: RULES.messages.solve_constant_real });
      }
      body.solve = { target_success: target };
    } else {
      delete body.solve;
    }

    for (const name of Object.keys(LISTS)) readList(name, body, errors);

    let text = JSON.stringify(body);
    // Seeds go up to 2^63 − 1, past what a JavaScript number holds exactly: splice the digits in.
    if (seed !== null) text = `${text.slice(0, -1)}${text.length > 2 ? ',' : ''}"seed":${seed}}`;
    return { text, errors };
  }

  // The three correlations: a blank one takes the historical figure its placeholder shows;
  // the matrix is sent when any is given, and must be positive semi-definite.
  function checkCorrelation(body, given, errors) {
    const keys = ['01', '02', '12'];
    if (keys.every((k) => given[k] === undefined)) return;
    if (errors.some((e) => e.field.startsWith('assumptions.correlation'))) return;
    const historical = defaultOf('assumptions.correlation');
    const [a, b, c] = keys.map((k) => given[k] ?? historical[Number(k[0])][Number(k[1])]);
    const matrix = [[1, a, b], [a, 1, c], [b, c, 1]];
    if (choleskyPsd(matrix) === null) {
      errors.push({ field: 'assumptions.correlation', message: RULES.messages.correlation_psd });
      return;
    }
    body.assumptions ??= {};
    body.assumptions.correlation = matrix;
  }

  function readList(name, body, errors) {
    const items = $$(`#items-${name} > .item`);
    if (items.length === 0) return;
    const r = rule(name);
    if (items.length > r.max_items) {
      errors.push({ field: name, message: r.message });
      return;
    }
    body[name] = items.map((_, index) => {
      const record = {};
      for (const f of LISTS[name].fields) {
        const path = `${name}[${index}].${f.name}`;
        if (f.kind === 'text') {
          const text = value(path).trim();
          const r = rule(path);
          // The API's rule, in its words: length in characters (code points), no control ones.
          if ([...text].length > r.max_length) errors.push({ field: path, message: r.message });
          else if (/[\u0000-\u001F\u007F-\u009F]/u.test(text)) errors.push({ field: path, message: r.message_control });
          else if (text) record.name = text;
        } else if (f.kind === 'check') {
          record[f.name] = input(path).checked;
        } else {
          const x = readNumber(path, f, errors);
          if (x !== undefined) record[f.name] = x;
        }
      }
      if (record.start_year !== undefined && record.end_year !== undefined && record.end_year < record.start_year) {
        errors.push({ field: `${name}[${index}].end_year`, message: RULES.messages.end_after_start });
      }
      return record;
    });
  }

  // ---------------------------------------------------------------------------------------
  // Showing broken rules next to their fields, and in a summary at the top.
  // ---------------------------------------------------------------------------------------
  function clearErrors() {
    for (const p of $$('#sim-form .error')) p.textContent = '';
    for (const node of $$('#sim-form [aria-invalid]')) node.removeAttribute('aria-invalid');
    for (const control of $$('#sim-form [data-group-error]')) {
      const added = control.dataset.groupError.split(' ');
      const ids = control.getAttribute('aria-describedby').split(' ');
      control.setAttribute('aria-describedby', ids.filter((id) => !added.includes(id)).join(' '));
      delete control.dataset.groupError;
    }
    $('#error-summary').hidden = true;
    $('#error-summary ul').replaceChildren();
  }

  // The element that shows an error for `field` (a JSON path from the API or from the checks
  // above): the field's own, else that of the nearest enclosing group, else the form's.
  function errorTarget(field) {
    let path = field;
    const transposed = /^assumptions\.correlation\[(\d)\]\[(\d)\]$/.exec(path);
    if (transposed && Number(transposed[1]) > Number(transposed[2])) {
      path = `assumptions.correlation[${transposed[2]}][${transposed[1]}]`;
    }
    // In Explore the plan's solver is hidden: a sweep's `solve` is Explore's own checkbox.
    if (exploring() && (path === 'solve' || path === 'solve.target_success')) {
      path = path === 'solve' ? 'sweep.solve' : 'sweep.target';
    }
    let key = keyOf(path);
    while (key) {
      const node = document.getElementById(`e-${key}`);
      if (node && !node.closest('[hidden]')) return { node, key };
      key = key.includes('-') ? key.slice(0, key.lastIndexOf('-')) : '';
    }
    return { node: $('#e-body'), key: 'body' };
  }

  // A problem with the submit as a whole (not a field's), beside the submit button.
  function showFormProblem(text) {
    const node = $('#e-body');
    node.textContent = text;
    node.setAttribute('role', 'alert');
  }

  // A group's error (the weights' sum, the correlations, a sweep's cells) belongs to no one
  // control: each control of the group is marked invalid and described by it, so that a screen
  // reader says it in whichever of them the reader is in.
  function describeGroup(node, key) {
    const group = node.closest('fieldset') || node.parentElement;
    // The group's own entries: not a checkbox that only switches a part on (Explore's solver),
    // nor what is hidden.
    const controls = [...group.querySelectorAll(`[id^="f-${key}-"]`)]
      .filter((c) => c.type !== 'checkbox' && !c.closest('[hidden]'));
    for (const control of controls) {
      control.setAttribute('aria-invalid', 'true');
      const ids = (control.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
      if (ids.includes(node.id)) continue;
      control.setAttribute('aria-describedby', [...ids, node.id].join(' '));
      const added = (control.dataset.groupError || '').split(' ').filter(Boolean);
      control.dataset.groupError = [...added, node.id].join(' ');
    }
  }

  function showErrors(errors) {
    const list = $('#error-summary ul');
    list.replaceChildren();
    for (const error of errors) {
      const { node, key } = errorTarget(error.field);
      // One message a line (`.error` keeps the line breaks), where a group gathers several.
      node.textContent = node.textContent ? `${node.textContent}\n${error.message}` : error.message;
      const control = document.getElementById(`f-${key}`);
      if (control) control.setAttribute('aria-invalid', 'true');
      else describeGroup(node, key);
      const details = node.closest('details');
      if (details) details.open = true;
      // "Income stream 2: Last year", so that same-named fields of list items are told apart.
      const item = node.closest('fieldset.item');
      const label = control ? control.labels?.[0]?.textContent.replace(/\s*\*$/, '') : null;
      const group = control ? null : node.closest('fieldset')?.querySelector('legend')?.textContent;
      const name = `${item ? `${item.querySelector('legend').textContent}: ` : ''}${label || group || error.field}`;
      list.append(el('li', {}, el('a', { href: `#${control ? control.id : node.id}` }, `${name}: ${error.message}`)));
    }
    const summary = $('#error-summary');
    summary.hidden = false;
    summary.focus();
  }

  // ---------------------------------------------------------------------------------------
  // Submitting, following and cancelling a job.
  // ---------------------------------------------------------------------------------------
  let following = null; // { id, token }: the job this page shows; a new token stops old loops
  let unchanged = { state: null, since: 0 }; // the job as last seen, and since when (stalledFor)

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    let { text, errors } = readForm();
    if (exploring()) text = withSweep(text, readSweep(errors));
    if (errors.length) {
      showErrors(errors);
      return;
    }
    const button = $('#submit');
    button.disabled = true;
    button.textContent = 'Submitting…';
    let refocus = false;
    try {
      let response;
      try {
        response = await apiFetch('/simulations', {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            Accept: 'application/json',
            'Idempotency-Key': idempotencyKey(text),
          },
          body: text,
        }, 'simulate');
      } catch (_) {
        showFormProblem('The API could not be reached. Check the connection and submit again.');
        return;
      }
      if (response.status === 202 || response.status === 200) {
        submitting = null;
        const accepted = await response.json();
        history.pushState({ job: accepted.id }, '', `?job=${accepted.id}`);
        follow(accepted.id, { fill: false });
        $('#outcome-heading').focus();
        return;
      }
      const p = await problem(response);
      if (p.errors.length) {
        showErrors(p.errors);
      } else {
        // Not about a field (a spent budget, a full queue, an outage): said beside the button,
        // not listed as fields to correct. The detail names the wait when it has one.
        const wait = retryAfter(response);
        const again = wait !== null && !/retry in/i.test(p.detail) ? ` Try again in ${Math.ceil(wait)} s.` : '';
        showFormProblem(`${p.title}: ${p.detail}.${again}`);
        refocus = true;
      }
    } finally {
      button.disabled = false;
      button.textContent = submitLabel();
      // Back where the reader was (a dismissed key prompt would leave the focus on the page).
      if (refocus) button.focus();
    }
  }

  // The Idempotency-Key of the request being submitted: the same again while the same request
  // is submitted after a failure (a 503 whose outcome is unknown may have recorded the job: the
  // API then answers with it instead of running a second), a new one for another request or
  // once one was accepted.
  let submitting = null; // { text, key }
  function idempotencyKey(text) {
    if (!submitting || submitting.text !== text) submitting = { text, key: randomUuid() };
    return submitting.key;
  }

  // crypto.randomUUID exists only in secure contexts; a page served over plain HTTP from
  // another host than localhost makes its version-4 UUID from random bytes itself.
  function randomUuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function follow(id, { fill, status = 'Submitted; asking for its progress…' }) {
    const token = {};
    following = { id, token };
    $('#idle').hidden = true;
    $('#job').hidden = false;
    $('#result').hidden = true;
    forgetSweep();
    $('#job-problem').hidden = true;
    $('#job-id').textContent = id;
    $('#cancel').hidden = false;
    $('#cancel').disabled = false;
    $('#progress-row').hidden = false;
    setStatus(status);
    poll(id, token, fill);
  }

  function stopFollowing() {
    following = null;
    $('#idle').hidden = false;
    $('#job').hidden = true;
    $('#result').hidden = true;
    forgetSweep();
  }

  // Short enough that progress shows as the job runs; the ending shows the moment it comes.
  const LONG_POLL_SECS = 2;
  /** A job that shows no change for this long gets a word on why it may be waiting. */
  const STALL_SECS = 30;

  const isCurrent = (token) => following !== null && following.token === token;

  // Follows the job until it ends by long-polling (`?wait=`): each request is answered the
  // moment the job ends, or after LONG_POLL_SECS with its progress, and the next one goes out
  // at once. An answer that came back early without an ending (a proxy cutting the wait) is
  // followed by the pause Retry-After asks; while the API cannot be reached it backs off up
  // to 30 s.
  async function poll(id, token, fill) {
    let failures = 0;
    // The first read answers at once: a page reloaded mid-job shows its plan and progress now,
    // not after a long-poll's wait (with the form's defaults, ready to be run, meanwhile).
    let first = true;
    while (isCurrent(token)) {
      let response;
      const asked = Date.now();
      const waitSecs = first ? 0 : LONG_POLL_SECS;
      try {
        response = await apiFetch(`/results/${id}?wait=${waitSecs}`, { headers: { Accept: 'application/json' }, cache: 'no-store' });
      } catch (_) {
        failures += 1;
        const wait = Math.min(30, 2 ** failures);
        setStatus(`The API cannot be reached; trying again in ${wait} s.`);
        await sleep(wait * 1000);
        continue;
      }
      if (!isCurrent(token)) return;
      if (response.status === 404) {
        showJobProblem('There is no such job. The link may be mistyped, or the job was removed.');
        setStatus('');
        $('#progress-row').hidden = true;
        finishControls();
        return;
      }
      if (!response.ok) {
        failures += 1;
        const p = await problem(response);
        const wait = retryAfter(response) ?? Math.min(30, 2 ** failures);
        setStatus(`${p.title}; trying again in ${Math.ceil(wait)} s.`);
        await sleep(wait * 1000);
        continue;
      }
      failures = 0;
      const text = await response.text();
      const job = JSON.parse(text);
      // The seed as written, digit for digit (a JavaScript number may not hold it exactly).
      job.seedText = (/"seed":\s*(\d+)/.exec(text) || [])[1] || String(job.seed);
      if (!isCurrent(token)) return;
      if (fill) {
        fillForm(job.request, job.seedText);
        fill = false;
      }
      showProgress(job);
      if (job.sweep) showSweep(job);
      if (TERMINAL.has(job.status)) {
        finish(job);
        return;
      }
      if (!first && Date.now() - asked < LONG_POLL_SECS * 500) {
        await sleep((retryAfter(response) ?? 1) * 1000);
      }
      first = false;
    }
  }

  function setStatus(text) {
    $('#job-status').textContent = text;
  }

  function showProgress(job) {
    const bar = $('#progress');
    // A sweep's progress is its plans done; a plain job's, its batches.
    const { done, total } = job.sweep ? { done: job.sweep.cells_done, total: job.sweep.cells_total } : job.progress;
    if (total > 0) {
      bar.max = total;
      bar.value = done;
      $('#progress-text').textContent = `${done} of ${total} ${job.sweep ? 'plans' : 'batches'}`;
    } else {
      bar.removeAttribute('value');
      $('#progress-text').textContent = '';
    }
    const stalled = stalledFor(`${job.id} ${job.status} ${job.attempts} ${done}`) >= STALL_SECS;
    if (job.status === 'queued') {
      setStatus((job.error
        ? `Waiting to be retried (attempt ${job.attempts + 1}) after an error: ${job.error}`
        : 'Queued: waiting for a worker.')
        // A retry waits out its back-off first, which may itself be longer.
        + (stalled && !job.error ? ` No worker has taken it in over ${STALL_SECS} s: they may all be busy, or none may be running. It starts as soon as one is free or starts; nothing is lost meanwhile.` : ''));
    } else if (job.status === 'running') {
      setStatus((total > 0 ? `Running: ${Math.round((100 * done) / total)} % done.` : 'Running.')
        // A sweep's count moves a plan at a time, and its plans may wait for busy workers; a
        // job of one batch has no count to move before it ends.
        + (stalled && !job.sweep && total > 1 ? ` No progress in over ${STALL_SECS} s: if its worker has stopped, the job runs again, from the start, on the next worker that finds it silent.` : ''));
    }
  }

  /** How long a job has been seen as it is now (by the page's clock: the server's may differ). */
  function stalledFor(state) {
    if (state !== unchanged.state) unchanged = { state, since: Date.now() };
    return (Date.now() - unchanged.since) / 1000;
  }

  function finishControls() {
    $('#cancel').hidden = true;
    $('#progress-row').hidden = true;
  }

  /** `about`: what the message is about, so that an end which settles it can take it away. */
  function showJobProblem(text, about = 'job') {
    const box = $('#job-problem');
    box.replaceChildren(el('p', {}, text));
    box.dataset.about = about;
    box.hidden = false;
  }

  function finish(job) {
    finishControls();
    // A refusal to cancel says nothing more once the job has ended, whichever way.
    const problemBox = $('#job-problem');
    if (problemBox.dataset.about === 'cancel') problemBox.hidden = true;
    if (job.status === 'succeeded' && job.sweep) {
      setStatus(`Finished: ${job.sweep.cells_total} plans in ${seconds(job)}.`);
      showSweepDownloads(job);
    } else if (job.status === 'succeeded') {
      setStatus(`Finished in ${seconds(job)}.`);
      showResult(job);
    } else if (job.status === 'failed') {
      setStatus('The simulation failed.');
      showJobProblem(`It failed after ${job.attempts} attempt${job.attempts === 1 ? '' : 's'}, and will not be retried. `
        + `The worker reported: ${job.error || 'no reason given'}. `
        + 'If the error names a field, correct it and submit again; if it looks temporary, submitting again may work.');
    } else if (job.sweep && job.sweep.cells_done > 0) {
      setStatus('The simulation was cancelled.');
      showJobProblem(`It was cancelled after ${job.sweep.cells_done} of its ${job.sweep.cells_total} plans: `
        + 'those are shown, the others were not run. Submit the form again to run them all.');
    } else {
      setStatus('The simulation was cancelled.');
      showJobProblem('It was cancelled before it finished, so it has no result. Submit the form again to run it.');
    }
  }

  function seconds(job) {
    const ms = Date.parse(job.finished_at) - Date.parse(job.created_at);
    if (!Number.isFinite(ms)) return 'a moment';
    // A small job ends within milliseconds: "0.0 s" would read as no time at all.
    return ms < 100 ? `${Math.max(ms, 1)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  /** The engine's time: "0 ms" would read as no work at all. */
  function milliseconds(ms) {
    return ms < 1 ? 'under 1 ms' : `${ms.toFixed(0)} ms`;
  }

  async function cancel() {
    if (!following) return;
    const { id } = following;
    const button = $('#cancel');
    button.disabled = true;
    let response;
    try {
      response = await apiFetch(`/simulations/${id}`, { method: 'DELETE', headers: { Accept: 'application/json' } });
    } catch (_) {
      setStatus('The API cannot be reached, so the job could not be cancelled; try again.');
      button.disabled = false;
      return;
    }
    const said = {
      200: 'Cancelled.',
      202: 'Cancelling: the job stops at its next batch, within a second or so.',
      409: 'The job had already finished, so there was nothing to cancel.',
    }[response.status];
    if (!said) {
      const p = await problem(response);
      // Said where the next poll's status does not overwrite it. A refusal that another try
      // would meet again (a key without the `simulate` scope, an operator's) takes the button.
      // A 404 for a job this page reads: an operator's key reads every tenant's jobs, but a
      // job is cancelled only by its own tenant's keys.
      const why = response.status === 404
        ? 'only a key of the tenant that submitted it can cancel it, and this key reads it as an operator'
        : `${p.title}${p.detail ? ` (${p.detail})` : ''}`;
      showJobProblem(`The job could not be cancelled: ${why}.`, 'cancel');
      const again = response.status === 429 || response.status >= 500;
      button.disabled = !again;
      button.hidden = !again;
      return;
    }
    // Look again now rather than at the next scheduled poll.
    follow(id, { fill: false, status: said });
    $('#cancel').disabled = true;
  }

  // ---------------------------------------------------------------------------------------
  // The result.
  // ---------------------------------------------------------------------------------------
  function showResult(job) {
    const r = job.result;
    const id = job.id;
    $('#result').hidden = false;
    const success = $('#success');
    success.textContent = percent(r.success_probability);
    success.dataset.value = String(r.success_probability);
    $('#success-stderr').textContent = r.success_probability_stderr === null || r.success_probability_stderr === undefined
      ? 'No standard error: the historical windows overlap, so they are not independent draws.'
      : `Standard error ± ${(r.success_probability_stderr * 100).toFixed(2)} percentage points (${r.n_scenarios.toLocaleString('en-US')} scenarios).`;

    const summary = $('#summary');
    const t = r.terminal;
    const entries = [
      ['Median real wealth at the end', money(t.p50)],
      ['Mean real wealth at the end', money(t.mean)],
      ['5th–95th percentile at the end', `${money(t.p5)} – ${money(t.p95)}`],
      ['Median year of depletion, when depleted', r.median_depletion_year === null ? 'none was depleted' : `year ${r.median_depletion_year}`],
      ['Scenarios', r.n_scenarios.toLocaleString('en-US')],
      ['Return model', r.return_model],
      // The historical model replays every window of the table: no draw, so no seed matters.
      ['Seed', r.return_model === 'historical' ? `${job.seedText} (not used: the historical model draws nothing)` : job.seedText],
      r.cache === 'hit'
        ? ['Served from', `the result cache: the same request and seed were computed earlier, in ${milliseconds(r.elapsed_ms)} (engine ${r.engine_version})`]
        : ['Computed in', `${milliseconds(r.elapsed_ms)} (engine ${r.engine_version})`],
    ];
    summary.replaceChildren(...entries.flatMap(([term, text]) => [el('dt', {}, term), el('dd', {}, text)]));

    const solve = $('#solve-outcome');
    if (r.solve) {
      solve.replaceChildren(
        el('h3', {}, 'Safe spending'),
        el('p', {}, `The highest constant real monthly spending with at least ${percent(r.solve.target_success)} success is `,
          el('strong', { id: 'safe-spending' }, money(r.solve.safe_monthly_spending)),
          `: ${percent(r.solve.success_probability)} of scenarios succeed at it (found in ${r.solve.iterations} simulations).`));
      solve.hidden = false;
    } else {
      solve.hidden = true;
    }

    const notes = $('#notes');
    $('#notes ul').replaceChildren(...(r.notes || []).map((n) => el('li', {}, n)));
    notes.hidden = !(r.notes && r.notes.length);

    const hist = $('#historical');
    if (r.historical) {
      const h = r.historical;
      hist.replaceChildren(el('h3', {}, 'Historical windows'),
        el('p', {}, `${h.windows} rolling windows starting ${h.start_years[0]}–${h.start_years[h.start_years.length - 1]}. `,
          h.failed_start_years.length
            ? `Failed when starting in: ${h.failed_start_years.join(', ')}.`
            : 'None of them ran out of money.'));
      hist.hidden = false;
    } else {
      hist.hidden = true;
    }

    const variable = job.request?.withdrawal?.strategy && job.request.withdrawal.strategy !== 'constant_real';
    $('#chart-spending').hidden = !variable;
    const charts = ['fan', 'depletion', 'terminal'].concat(variable ? ['spending'] : []);
    for (const name of charts) {
      const box = $(`#chart-${name} .chart-box`);
      box.replaceChildren(el('p', { class: 'hint' }, 'Loading the chart…'));
      inlineSvg(`/results/${id}/charts/${name}.svg`, box);
    }

    showTables(r, variable);
    // The downloads are fetched with the key (a plain link would send none).
    for (const [link, url, name] of [
      [$('#download-json'), `/results/${id}`, `portfolio-mc-${id}.json`],
      [$('#download-csv'), `/results/${id}/table.csv`, `portfolio-mc-${id}.csv`],
    ]) {
      link.href = url;
      link.setAttribute('download', name);
      link.onclick = (event) => {
        event.preventDefault();
        download(url, name).catch((error) => setStatus(`The download failed (${error.message}).`));
      };
    }
  }

  function table(caption, head, rows) {
    return el('table', {},
      el('caption', {}, caption),
      el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map((row) => el('tr', {}, row.map((cell, i) => (i === 0 ? el('th', { scope: 'row' }, cell) : el('td', {}, cell)))))));
  }

  function showTables(r, variable) {
    const p = r.percentiles;
    $('#table-wealth').replaceChildren(table('Real wealth at each year end (today’s money)',
      ['Year', '5th', '25th', 'Median', '75th', '95th', 'Depleted by then'],
      r.years.map((year, i) => [year, money(p.p5[i]), money(p.p25[i]), money(p.p50[i]), money(p.p75[i]), money(p.p95[i]), percent(r.depletion_probability_by_year[i])])));
    const s = r.spending_percentiles;
    $('#table-spending').replaceChildren(...(variable
      ? [table('Real spending in each year (today’s money)', ['Year', '5th', '25th', 'Median', '75th', '95th'],
        s.years.map((year, i) => [year, money(s.p5[i]), money(s.p25[i]), money(s.p50[i]), money(s.p75[i]), money(s.p95[i])]))]
      : []));
  }


  // ---------------------------------------------------------------------------------------
  // Explore: a grid of plans around this one (POST /simulations with `sweep`), shown as the
  // server's heat map, which fills as the plans finish. Each plan of the map is a
  // <rect class="cell" data-index=..> in the SVG itself, so a click names its cell without any
  // geometry here; the table view reaches the same plans by keyboard.
  // ---------------------------------------------------------------------------------------
  const roundTo = (x, step) => Math.round(x / step) * step;

  // The fields a sweep may vary, and the range each starts with around the plan's value.
  const SWEEP_FIELDS = {
    monthly_spending: { label: 'Monthly spending', step: 50, range: (v) => [roundTo(v * 0.75, 50), roundTo(v * 1.25, 50), 9] },
    // Bonds take the rest and cash keeps its weight, so stocks go up to 1 − cash.
    'allocation.stocks': {
      label: 'Stocks (share)', step: 0.05, range: () => {
        // Down to a step, never up: stocks above 1 − cash would leave bonds below 0.
        const top = Math.max(0.05, Math.floor((1 - planValue('allocation.cash')) / 0.05 + 1e-9) * 0.05);
        return [0, top, Math.max(2, Math.round(top / 0.2) + 1)];
      },
    },
    years: {
      label: 'Years', step: 1, range: (v) => {
        const lo = Math.max(1, v - 10);
        const span = Math.min(rule('years').maximum, v + 10) - lo;
        return [lo, lo + 5 * Math.floor(span / 5), Math.floor(span / 5) + 1];
      },
    },
    starting_portfolio: { label: 'Starting portfolio', step: 1000, range: (v) => [roundTo(v * 0.75, 1000), roundTo(v * 1.25, 1000), 5] },
    annual_fee: { label: 'Annual fee', step: 0.001, range: () => [0, 0.02, 5] },
  };

  const exploring = () => $('#mode-explore').checked;
  const submitLabel = () => (exploring() ? 'Explore plans' : 'Run simulation');

  function simpleField(id, label, control) {
    const key = id.slice(2);
    return el('div', { class: 'field', id: `row-${key}` }, el('label', { for: id }, label), control, el('p', { class: 'error', id: `e-${key}` }));
  }

  function buildExplore() {
    const rows = [0, 1].map((k) => {
      const key = `sweep-axes-${k}`;
      const choices = Object.entries(SWEEP_FIELDS).map(([f, spec]) => el('option', { value: f }, spec.label));
      const select = el('select', { id: `f-${key}-field`, name: `sweep.axes[${k}].field`, 'aria-describedby': `e-${key}-field` },
        k === 1 ? [el('option', { value: '' }, 'None: one field only'), ...choices] : choices);
      const number = (part) => el('input', {
        id: `f-${key}-${part}`, name: `sweep.axes[${k}].${part}`, type: 'number',
        inputmode: part === 'steps' ? 'numeric' : 'decimal', step: part === 'steps' ? 1 : 'any',
        'aria-describedby': `e-${key}-${part}`,
      });
      return el('fieldset', { class: 'axis', id: `axis-${k}` },
        el('legend', {}, k === 0 ? 'First field (up the map)' : 'Second field (across the map)'),
        el('div', { class: 'grid' }, simpleField(`f-${key}-field`, 'Field', select)),
        el('div', { class: 'axis-range grid' },
          simpleField(`f-${key}-from`, 'From', number('from')),
          simpleField(`f-${key}-to`, 'To', number('to')),
          simpleField(`f-${key}-steps`, 'How many values', number('steps'))),
        el('p', { class: 'error', id: `e-${key}`, 'data-group': 'true' }));
    });
    $('#explore-axes').replaceChildren(...rows);
    input('sweep.axes[0].field').value = 'monthly_spending';
    input('sweep.axes[1].field').value = 'allocation.stocks';
  }

  // The plan's own value of a swept field: what the form holds, else the API's default.
  function planValue(field) {
    const x = Number(value(field));
    return value(field).trim() !== '' && Number.isFinite(x) ? x : Number(defaultOf(field));
  }

  // Whether a person has edited an axis' range; until then it follows the plan's value.
  const rangeEdited = [false, false];

  function axisDefaults(k) {
    rangeEdited[k] = false;
    const field = value(`sweep.axes[${k}].field`);
    $(`#axis-${k} .axis-range`).hidden = !field;
    if (field) {
      const spec = SWEEP_FIELDS[field];
      const [from, to, steps] = spec.range(planValue(field));
      for (const [part, v] of [['from', from], ['to', to], ['steps', steps]]) {
        const node = input(`sweep.axes[${k}].${part}`);
        node.value = String(Math.round(v * 1e6) / 1e6);
        if (part !== 'steps') node.step = String(spec.step);
      }
    }
    updateMode();
  }

  let exploreReady = false; // the ranges are set around the plan the first time Explore opens

  // Ranges nobody edited follow the plan when it changes all at once (a preset).
  function recentreRanges() {
    if (!exploreReady) return;
    for (const k of [0, 1]) {
      if (!rangeEdited[k] && value(`sweep.axes[${k}].field`)) axisDefaults(k);
    }
  }

  // Reset: the plan's form, and Explore as it first opens (its ranges set around the plan then).
  function resetExplore() {
    exploreReady = false;
    rangeEdited.fill(false);
    $('#mode-plan').checked = true;
    $('#f-sweep-solve').checked = false;
    $('#f-sweep-target').value = $('#f-sweep-target').defaultValue;
    input('sweep.axes[0].field').value = 'monthly_spending';
    input('sweep.axes[1].field').value = 'allocation.stocks';
    updateMode();
  }

  function updateMode() {
    const on = exploring();
    if (on && !exploreReady) {
      exploreReady = true;
      axisDefaults(0);
      axisDefaults(1);
      return;
    }
    $('#explore').hidden = !on;
    input('solve.enabled').closest('fieldset').hidden = on;
    updateVisibility(); // the plan's solver target is read in plan mode only
    $('#sweep-target-row').hidden = !$('#f-sweep-solve').checked;
    $('#submit').textContent = submitLabel();
    updateSweepSize();
  }

  function updateSweepSize() {
    if (!exploring()) return;
    const counts = [0, 1]
      .filter((k) => value(`sweep.axes[${k}].field`))
      .map((k) => Number(value(`sweep.axes[${k}].steps`)));
    const plans = counts.reduce((a, b) => a * b, 1);
    const scenarios = Number(value('n_scenarios')) || defaultOf('n_scenarios');
    // The historical model runs every rolling window of the table, not n_scenarios.
    const each = value('return_model.kind') === 'historical'
      ? 'each over every rolling window of the 1928–2024 table'
      : `of ${scenarios.toLocaleString('en-US')} scenarios each`;
    $('#sweep-size').textContent = counts.every((n) => Number.isInteger(n) && n > 0)
      ? `${counts.join(' × ')}${counts.length > 1 ? ` = ${plans}` : ''} plans ${each}.`
      : '';
  }

  // The `sweep` (and, when solving, `solve`) members of the request; broken rules into `errors`.
  function readSweep(errors) {
    const axes = [];
    for (const k of [0, 1]) {
      const path = `sweep.axes[${k}]`;
      const field = value(`${path}.field`);
      if (!field) continue;
      const axis = { field };
      for (const part of ['from', 'to', 'steps']) {
        const raw = value(`${path}.${part}`).trim();
        const x = Number(raw);
        if (raw === '' || !Number.isFinite(x)) errors.push({ field: `${path}.${part}`, message: 'must be a number' });
        else if (part === 'steps' && !(Number.isInteger(x) && x >= 2)) errors.push({ field: `${path}.${part}`, message: 'must be a whole number from 2' });
        else axis[part] = x;
      }
      axes.push(axis);
    }
    if (axes.length === 2 && axes[0].field === axes[1].field) {
      errors.push({ field: 'sweep.axes[1].field', message: 'must differ from the first field' });
    }
    const members = { sweep: { axes } };
    if ($('#f-sweep-solve').checked) {
      if (axes.length > 1) errors.push({ field: 'sweep.solve', message: 'Finding the safe spending works with one field only: set the second field to None.' });
      else if (axes[0]?.field === 'monthly_spending') errors.push({ field: 'sweep.solve', message: 'Finding the safe spending sets the monthly spending itself: vary another field.' });
      const checked = check(rule('solve.target_success'), Number(value('sweep.target')));
      if (checked.message !== undefined) errors.push({ field: 'sweep.target', message: checked.message });
      else members.solve = { target_success: checked.value };
    }
    return members;
  }

  // Adds `members` to the request's JSON text (which may carry a seed no JavaScript number holds).
  function withSweep(text, members) {
    const extra = Object.entries(members).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',');
    return text.length > 2 ? `${text.slice(0, -1)},${extra}}` : `{${extra}}`;
  }

  // Explore mode and its fields from a job's request, when it was a sweep.
  function fillSweep(request) {
    const sweep = request.sweep;
    if (!sweep || !Array.isArray(sweep.axes)) {
      $('#mode-plan').checked = true;
      updateMode();
      return;
    }
    exploreReady = true;
    $('#mode-explore').checked = true;
    for (const k of [0, 1]) {
      const axis = sweep.axes[k];
      input(`sweep.axes[${k}].field`).value = axis ? axis.field : '';
      $(`#axis-${k} .axis-range`).hidden = !axis;
      if (!axis) continue;
      const values = Array.isArray(axis.values) ? axis.values : null;
      const parts = values ? [values[0], values[values.length - 1], values.length] : [axis.from, axis.to, axis.steps];
      ['from', 'to', 'steps'].forEach((part, i) => { input(`sweep.axes[${k}].${part}`).value = String(parts[i]); });
      rangeEdited[k] = true;
    }
    $('#f-sweep-solve').checked = Boolean(request.solve);
    if (request.solve) input('sweep.target').value = String(request.solve.target_success);
    updateMode();
  }

  // What the page shows of the sweep it follows.
  let sweepJob = null; // the last job document of the sweep followed
  let mapDrawn = null; // cells_done of the map shown (or being fetched)
  let mapLoading = null; // the fetch of the map in flight
  let selectedCell = null;

  function forgetSweep() {
    sweepJob = null;
    mapDrawn = null;
    selectedCell = null;
    $('#sweep-result').hidden = true;
    $('#cell').hidden = true;
    $('#chart-heatmap .chart-box').replaceChildren();
    $('#sweep-table .table-wrap').replaceChildren();
  }

  function showSweep(job) {
    const before = sweepJob;
    sweepJob = job;
    $('#sweep-result').hidden = false;
    $('#result').hidden = true;
    showSweepDownloads(job);
    $('#chart-heatmap figcaption').textContent = mapCaption(job.sweep);
    const done = job.sweep.cells_done;
    if (mapDrawn !== done || TERMINAL.has(job.status)) {
      mapDrawn = done;
      refreshMap();
      showSweepTable(job.sweep);
    }
    // A plan chosen before it was done is shown once it is.
    const had = (j) => j && j.sweep.cells.some((c) => c.index === selectedCell);
    if (selectedCell !== null && !had(before) && had(job)) showCell(selectedCell);
  }

  // A value of a swept field, short, for a table's headings.
  function shortValue(field, v) {
    if (field === 'allocation.stocks') return percent(v, 1);
    if (field === 'annual_fee') return percent(v, 2);
    if (field === 'years') return `${v} years`;
    return money(v);
  }

  // The map as a table: every plan's figure, done ones as buttons that open the plan, so the
  // keyboard and screen readers reach every plan (the chart itself is one image to them).
  function showSweepTable(sweep) {
    const box = $('#sweep-table .table-wrap');
    const focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.index : null;
    const byIndex = new Map(sweep.cells.map((c) => [c.index, c]));
    const [first, second] = sweep.axes;
    const label = (axis) => SWEEP_FIELDS[axis.field]?.label || axis.field;
    const open = (index, text) => (byIndex.has(index)
      ? el('button', { type: 'button', class: 'link', 'data-index': index }, text)
      : el('span', { class: 'hint' }, 'not done'));
    let node;
    if (second) {
      const n = second.values.length;
      node = table(`Scenarios that last, by ${label(first).toLowerCase()} (rows) and ${label(second).toLowerCase()} (columns)`,
        [`${label(first)} ↓, ${label(second)} →`, ...second.values.map((v) => shortValue(second.field, v))],
        first.values.map((v, r) => [shortValue(first.field, v),
          ...second.values.map((_, c) => open(r * n + c, percent(byIndex.get(r * n + c)?.success_probability)))]));
    } else {
      const head = [label(first), 'Scenarios that last'].concat(sweep.solve ? ['Safe monthly spending'] : []);
      node = table(`Plans by ${label(first).toLowerCase()}`, head, first.values.map((v, i) => {
        const cell = byIndex.get(i);
        return [shortValue(first.field, v), open(i, percent(cell?.success_probability))]
          .concat(sweep.solve ? [cell ? money(cell.safe_monthly_spending) : '–'] : []);
      }));
    }
    box.replaceChildren(node);
    if (focused !== null && focused !== undefined) $(`button[data-index="${focused}"]`, box)?.focus();
  }

  function mapCaption(sweep) {
    const choose = 'Choose a plan on the chart to see its fan chart.';
    // The chart marks the plan only when its values lie within the ranges.
    const inside = sweep.axes.every((axis) => {
      const v = sweep.base?.[axis.field];
      return typeof v === 'number' && v >= Math.min(...axis.values) && v <= Math.max(...axis.values);
    });
    const mark = (shape) => (inside ? `the ${shape} is your plan` : 'your plan lies outside these ranges');
    if (sweep.axes.length > 1) {
      return `Share of scenarios that never run out of money, for each plan of the grid. Lines mark 90 % (dashed) and 95 % (solid); ${mark('ring')}. ${choose}`;
    }
    if (sweep.solve) {
      return `The highest constant real monthly spending that keeps ${percent(sweep.solve.target_success)} of scenarios from running out, for each value; ${mark('dotted line')}. ${choose}`;
    }
    return `Share of scenarios that never run out of money, for each value. Lines mark 90 % (dashed) and 95 % (solid); ${mark('dotted line')}. ${choose}`;
  }

  // Fetches the map again; a request made while one is in flight waits for it, then runs once.
  async function refreshMap() {
    if (mapLoading) {
      mapLoading.again = true;
      return;
    }
    const loading = { again: false };
    mapLoading = loading;
    try {
      const job = sweepJob;
      if (!job) return;
      const box = $('#chart-heatmap .chart-box');
      await inlineSvg(`/results/${job.id}/charts/heatmap.svg`, box);
      // The map is one image to the keyboard and screen readers (its plans are reached
      // through the table view), so its cells are for the pointer only.
      for (const rect of $$('rect.cell', box)) {
        if (Number(rect.dataset.index) === selectedCell) rect.classList.add('selected');
      }
    } finally {
      mapLoading = null;
    }
    if (loading.again) refreshMap();
  }

  // A value of a swept field in words.
  function fieldValue(field, v) {
    if (field === 'allocation.stocks') return `${percent(v, 0)} stocks`;
    if (field === 'annual_fee') return `${percent(v, 2)} annual fee`;
    if (field === 'years') return `${v} years`;
    return `${money(v)} ${field === 'monthly_spending' ? 'a month' : 'to start'}`;
  }

  function cellValues(sweep, index) {
    const cell = sweep.cells.find((c) => c.index === index);
    if (cell) return cell.values;
    const [first, second] = sweep.axes;
    if (!second) return [first.values[index]];
    const n = second.values.length;
    return [first.values[Math.floor(index / n)], second.values[index % n]];
  }

  function showCell(index) {
    const job = sweepJob;
    if (!job || !Number.isInteger(index) || index < 0 || index >= job.sweep.cells_total) return;
    selectedCell = index;
    for (const rect of $$('#chart-heatmap rect.cell')) rect.classList.toggle('selected', Number(rect.dataset.index) === index);
    const s = job.sweep;
    const words = cellValues(s, index).map((v, k) => fieldValue(s.axes[k].field, v)).join(', ');
    $('#cell').hidden = false;
    $('#cell').dataset.index = String(index);
    $('#cell-heading').textContent = `Plan ${index + 1} of ${s.cells_total}: ${words}`;
    const cell = s.cells.find((c) => c.index === index);
    const fan = $('#chart-cell-fan');
    const link = $('#download-cell-json');
    if (!cell) {
      $('#cell-note').textContent = 'This plan is not done yet: its figures and chart appear here once it is.';
      $('#cell-summary').replaceChildren();
      fan.hidden = true;
      link.hidden = true;
      return;
    }
    $('#cell-note').textContent = '';
    const entries = [
      ['Scenarios that last', percent(cell.success_probability)],
      cell.success_probability_stderr === null || cell.success_probability_stderr === undefined
        ? null
        : ['Standard error', `± ${(cell.success_probability_stderr * 100).toFixed(2)} percentage points`],
      ['Median real wealth at the end', money(cell.median_terminal_real)],
      ['10th percentile at the end', money(cell.p10_terminal_real)],
      ['Median year of depletion, when depleted', cell.median_depletion_year === null ? 'none was depleted' : `year ${cell.median_depletion_year}`],
      cell.safe_monthly_spending === null || cell.safe_monthly_spending === undefined
        ? null
        : ['Safe monthly spending', money(cell.safe_monthly_spending)],
    ].filter(Boolean);
    $('#cell-summary').replaceChildren(...entries.flatMap(([term, text]) => [el('dt', {}, term), el('dd', {}, text)]));
    fan.hidden = false;
    const box = $('.chart-box', fan);
    box.replaceChildren(el('p', { class: 'hint' }, 'Loading the chart…'));
    inlineSvg(`/results/${job.id}/cells/${index}/charts/fan.svg`, box);
    keyedLink(link, `/results/${job.id}/cells/${index}`, `portfolio-mc-${job.id}-plan-${index}.json`);
    link.hidden = false;
  }

  // A download link that fetches with the key (a plain link would send none).
  function keyedLink(link, url, name) {
    link.href = url;
    link.setAttribute('download', name);
    link.onclick = (event) => {
      event.preventDefault();
      download(url, name).catch((error) => setStatus(`The download failed (${error.message}).`));
    };
  }

  function showSweepDownloads(job) {
    keyedLink($('#download-sweep-csv'), `/results/${job.id}/sweep.csv`, `portfolio-mc-sweep-${job.id}.csv`);
    keyedLink($('#download-sweep-json'), `/results/${job.id}`, `portfolio-mc-sweep-${job.id}.json`);
  }

  // ---------------------------------------------------------------------------------------
  // Wiring.
  // ---------------------------------------------------------------------------------------
  function jobInAddress() {
    const id = new URLSearchParams(location.search).get('job') || location.hash.replace(/^#/, '');
    return id && UUID.test(id) ? id : null;
  }

  async function start() {
    try {
      const response = await fetch('/assets/rules.json', { headers: { Accept: 'application/json' } });
      if (!response.ok) throw new Error(`status ${response.status}`);
      RULES = await response.json();
    } catch (_) {
      showErrors([{ field: 'body', message: 'The form’s rules could not be loaded. Reload the page to try again.' }]);
      return;
    }
    buildForm();
    buildExplore();
    resetForm();
    // A reload may bring the mode back checked (browsers restore form state).
    updateMode();
    const form = $('#sim-form');
    form.addEventListener('submit', submit);
    form.addEventListener('change', (event) => {
      if (['return_model.kind', 'withdrawal.strategy', 'solve.enabled'].includes(event.target.name)) updateVisibility();
      if (event.target.name === 'mode') updateMode();
      const axis = /^sweep\.axes\[(\d)\]\.field$/.exec(event.target.name);
      if (axis) axisDefaults(Number(axis[1]));
      if (event.target.name === 'sweep.solve') updateMode();
      // A range nobody edited stays centred on the plan as the plan changes.
      for (const k of [0, 1]) {
        const field = value(`sweep.axes[${k}].field`);
        const follows = event.target.name === field
          || (field === 'allocation.stocks' && event.target.name === 'allocation.cash');
        if (exploreReady && !rangeEdited[k] && follows) axisDefaults(k);
      }
    });
    form.addEventListener('input', (event) => {
      const edited = /^sweep\.axes\[(\d)\]\.(from|to|steps)$/.exec(event.target.name);
      if (edited) rangeEdited[Number(edited[1])] = true;
      updateSweepSize();
    });
    const map = $('#chart-heatmap .chart-box');
    map.addEventListener('click', (event) => {
      const rect = event.target.closest('rect.cell');
      if (rect) showCell(Number(rect.dataset.index));
    });
    $('#sweep-table').addEventListener('click', (event) => {
      const button = event.target.closest('button[data-index]');
      if (!button) return;
      showCell(Number(button.dataset.index));
      $('#cell-heading').focus();
    });

    form.addEventListener('click', (event) => {
      const target = event.target.closest('button');
      if (!target) return;
      if (target.dataset.preset) applyPreset(target.dataset.preset);
      else if (target.dataset.add) {
        const item = addItem(target.dataset.add);
        item.querySelector('input').focus();
      } else if (target.dataset.remove) removeItem(target.dataset.remove, Number(target.dataset.index));
    });
    $('#reset').addEventListener('click', () => {
      resetForm();
      resetExplore();
      if (jobInAddress()) history.pushState({}, '', location.pathname);
      stopFollowing();
    });
    $('#cancel').addEventListener('click', cancel);
    $('#error-summary').addEventListener('click', (event) => {
      const link = event.target.closest('a');
      if (!link) return;
      event.preventDefault();
      const target = document.getElementById(link.getAttribute('href').slice(1));
      if (target) {
        const details = target.closest('details');
        if (details) details.open = true;
        // A group's error (allocation, the correlations, a sweep's axis) is a paragraph, which
        // takes no focus of its own: made focusable, it is read out where the group is.
        if (!target.matches('input, select, textarea, button')) target.tabIndex = -1;
        target.scrollIntoView({ block: 'center' });
        target.focus({ preventScroll: true });
      }
    });
    window.addEventListener('popstate', () => {
      const id = jobInAddress();
      if (id) follow(id, { fill: true, status: 'Reading the job…' });
      else stopFollowing();
    });
    const id = jobInAddress();
    if (id) follow(id, { fill: true, status: 'Reading the job…' });
  }

  start();
})();
