// The simulation page: a form for every field of POST /simulations, checked here by the same
// rules as shared/engine/src/request.rs (the API checks again and its messages are shown the
// same way), then the job followed by polling GET /results/{id} until it ends, and its result
// shown with the server's charts, a table and downloads. The job id lives in the address
// (?job=<id>), so a reload or a shared link picks the job up again.
'use strict';

(function () {
  const { $, $$, el, sleep, retryAfter, problem, money, compact, percent, inlineSvg } = window.pmc;
  const DEFAULTS = JSON.parse($('#pmc-defaults').textContent);
  const A = DEFAULTS.assumptions;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
  const MAX_SEED = 9223372036854775807n; // 2^63 − 1: seeds are stored in a signed 64-bit column
  const MAX_CASH_FLOWS = 50;
  const SUM_TOLERANCE = 1e-6;

  // ---------------------------------------------------------------------------------------
  // The rules, as the API words them.
  // ---------------------------------------------------------------------------------------
  const closed = (min, max) => ({ min, max, minOpen: false });
  const openClosed = (min, max) => ({ min, max, minOpen: true });
  const inRange = (x, r) => Number.isFinite(x) && (r.minOpen ? x > r.min : x >= r.min) && x <= r.max;
  const describe = (r) => r.message || `must be a finite number ${r.minOpen ? '>' : '≥'} ${r.min} and ≤ ${r.max}`;
  const intMessage = (min, max) => `must be an integer from ${min} to ${max}`;

  const round = (x) => (Number.isFinite(x) ? String(Math.round(x * 1e4) / 1e4) : '');
  const returnKind = () => value('return_model.kind');
  const strategy = () => value('withdrawal.strategy');
  const solving = () => $('#f-solve-enabled').checked;

  // One entry per input: its JSON path, label, kind and rule. `when` hides a field (and leaves
  // it out of the request) unless its choice is selected.
  const SECTIONS = [
    {
      legend: 'Basics',
      fields: [
        { path: 'starting_portfolio', label: 'Starting portfolio', kind: 'number', range: openClosed(0, 1e12), required: true, value: 1000000, step: 1000 },
        { path: 'monthly_spending', label: 'Monthly spending', kind: 'number', range: closed(0, 1e10), required: true, value: 4000, step: 50,
          hint: 'Raised with inflation every month. With guardrails it sets the first year’s withdrawal rate.' },
        { path: 'years', label: 'Years', kind: 'int', min: 1, max: () => (returnKind() === 'historical' ? DEFAULTS.table_years : DEFAULTS.max_years), required: true, value: 30 },
        { path: 'n_scenarios', label: 'Scenarios', kind: 'int', min: 1, max: () => DEFAULTS.max_scenarios, value: DEFAULTS.default_scenarios,
          hint: `Blank: ${DEFAULTS.default_scenarios.toLocaleString('en-US')}. The historical model runs every window instead.` },
        { path: 'seed', label: 'Seed (optional)', kind: 'seed', hint: 'Blank: one is drawn and shown with the result, so it can be reproduced.' },
      ],
    },
    {
      legend: 'Allocation',
      group: 'allocation',
      hint: 'Target weights, each from 0 to 1, summing to 1.',
      fields: [
        { path: 'allocation.stocks', label: 'Stocks', kind: 'number', range: closed(0, 1), value: 0.6, step: 0.05 },
        { path: 'allocation.bonds', label: 'Bonds', kind: 'number', range: closed(0, 1), value: 0.4, step: 0.05 },
        { path: 'allocation.cash', label: 'Cash', kind: 'number', range: closed(0, 1), value: 0, step: 0.05 },
      ],
    },
    {
      legend: 'Returns',
      group: 'return_model',
      fields: [
        { path: 'return_model.kind', label: 'Return model', kind: 'select', value: 'lognormal', options: [
          ['lognormal', 'Lognormal (correlated)'],
          ['normal', 'Normal (correlated)'],
          ['student_t', 'Student-t (fat tails)'],
          ['bootstrap', 'Bootstrap of 1928–2024 years'],
          ['historical', 'Every historical window, 1928–2024'],
        ] },
        { path: 'return_model.df', label: 'Degrees of freedom', kind: 'number', range: { min: 2, max: 1e6, minOpen: true, message: 'must be a finite number > 2 and ≤ 1e6' },
          placeholder: '5', when: () => returnKind() === 'student_t', hint: 'Above 2; lower means fatter tails. Blank: 5.' },
        { path: 'return_model.block_years', label: 'Block length (years)', kind: 'int', min: 1, max: () => DEFAULTS.table_years,
          placeholder: '1', when: () => returnKind() === 'bootstrap', hint: 'Consecutive years drawn together. Blank: 1.' },
        { path: 'annual_fee', label: 'Annual fee', kind: 'number', range: closed(0, 0.1), value: 0, step: 0.001, hint: 'Fraction of the portfolio per year, charged monthly; 0 to 0.1.' },
        { path: 'rebalancing', label: 'Rebalancing', kind: 'select', value: 'monthly', options: [['monthly', 'Monthly'], ['annual', 'Annual'], ['none', 'Never']] },
      ],
    },
    {
      legend: 'Withdrawals',
      group: 'withdrawal',
      fields: [
        { path: 'withdrawal.strategy', label: 'Strategy', kind: 'select', value: 'constant_real', options: [
          ['constant_real', 'Constant real spending'],
          ['percent_of_portfolio', 'Percent of portfolio'],
          ['guardrails', 'Guardrails (Guyton–Klinger)'],
          ['floor_ceiling', 'Percent with floor and ceiling'],
        ] },
        { path: 'withdrawal.rate', label: 'Rate', kind: 'number', range: openClosed(0, 1), placeholder: '0.04', step: 0.005,
          when: () => ['percent_of_portfolio', 'floor_ceiling'].includes(strategy()), hint: 'Fraction of the portfolio each year. Blank: 0.04.' },
        { path: 'withdrawal.upper_guardrail', label: 'Upper guardrail', kind: 'number', range: openClosed(0, 10), placeholder: '0.2', step: 0.05,
          when: () => strategy() === 'guardrails', hint: 'Cut spending when the withdrawal rate rises this far above the initial rate. Blank: 0.2.' },
        { path: 'withdrawal.lower_guardrail', label: 'Lower guardrail', kind: 'number', range: openClosed(0, 0.99), placeholder: '0.2', step: 0.05,
          when: () => strategy() === 'guardrails', hint: 'Raise spending when it falls this far below. Blank: 0.2.' },
        { path: 'withdrawal.cut', label: 'Cut', kind: 'number', range: closed(0, 0.99), placeholder: '0.1', step: 0.05, when: () => strategy() === 'guardrails', hint: 'Blank: 0.1.' },
        { path: 'withdrawal.raise', label: 'Raise', kind: 'number', range: closed(0, 10), placeholder: '0.1', step: 0.05, when: () => strategy() === 'guardrails', hint: 'Blank: 0.1.' },
        { path: 'withdrawal.monthly_floor', label: 'Monthly floor', kind: 'number', range: closed(0, 1e10), placeholder: '0', step: 50,
          when: () => strategy() === 'floor_ceiling', hint: 'Today’s money. Blank: no floor.' },
        { path: 'withdrawal.monthly_ceiling', label: 'Monthly ceiling', kind: 'number', range: closed(0, 1e10), placeholder: 'none', step: 50,
          when: () => strategy() === 'floor_ceiling', hint: 'Today’s money. Blank: no ceiling.' },
      ],
    },
    {
      legend: 'Safe spending solver',
      group: 'solve',
      fields: [
        { path: 'solve.enabled', label: 'Find the highest constant real monthly spending that reaches a target success rate', kind: 'check', value: false },
        { path: 'solve.target_success', label: 'Target success', kind: 'number', range: openClosed(0, 1), value: 0.9, step: 0.01,
          when: solving, hint: 'Strictly between 0 and 1. Needs the constant real strategy.' },
      ],
    },
    {
      legend: 'Capital-market assumptions',
      group: 'assumptions',
      collapsible: true,
      hint: 'Used by the lognormal, normal and Student-t models. Blank fields take the 1928–2024 averages shown.',
      fields: [
        ...['stocks', 'bonds', 'cash'].flatMap((asset) => [
          { path: `assumptions.${asset}.mean_return`, label: `${cap(asset)}: mean return`, kind: 'number', range: closed(-0.5, 1), placeholder: round(A[asset].mean_return), step: 0.005 },
          { path: `assumptions.${asset}.volatility`, label: `${cap(asset)}: volatility`, kind: 'number', range: closed(0, 1), placeholder: round(A[asset].volatility), step: 0.005 },
        ]),
        { path: 'assumptions.inflation.mean', label: 'Inflation: mean', kind: 'number', range: closed(-0.1, 0.5), placeholder: round(A.inflation.mean), step: 0.005 },
        { path: 'assumptions.inflation.volatility', label: 'Inflation: volatility', kind: 'number', range: closed(0, 0.2), placeholder: round(A.inflation.volatility), step: 0.005 },
        ...[[0, 1, 'Stocks–bonds'], [0, 2, 'Stocks–cash'], [1, 2, 'Bonds–cash']].map(([i, j, name]) => ({
          path: `assumptions.correlation[${i}][${j}]`, label: `Correlation ${name}`, kind: 'number', correlation: [i, j],
          range: { min: -1, max: 1, minOpen: false, message: 'must be a number from -1 to 1' }, placeholder: round(A.correlation[i][j]), step: 0.05,
        })),
      ],
    },
  ];

  // Income streams, one-off expenses and one-off inflows: lists of small records.
  const LISTS = {
    income: {
      legend: 'Income streams', add: 'Add an income stream', noun: 'Income stream', countMessage: `at most ${MAX_CASH_FLOWS} streams`,
      hint: 'Pensions, social security: paid monthly in the years given, reducing what is withdrawn.',
      fields: [
        { name: 'name', label: 'Name', kind: 'text' },
        { name: 'monthly_amount', label: 'Monthly amount', kind: 'number', range: closed(0, 1e10), required: true, step: 50 },
        { name: 'start_year', label: 'First year', kind: 'int', min: 1, max: () => horizon(), placeholder: '1' },
        { name: 'end_year', label: 'Last year', kind: 'int', min: 1, max: () => horizon(), placeholder: 'horizon' },
        { name: 'inflation_adjusted', label: 'Rises with inflation', kind: 'check', value: true },
      ],
    },
    expenses: {
      legend: 'One-off expenses', add: 'Add an expense', noun: 'Expense', countMessage: `at most ${MAX_CASH_FLOWS} items`,
      hint: 'Taken from the portfolio at the start of the year.',
      fields: oneOffFields(),
    },
    inflows: {
      legend: 'One-off inflows', add: 'Add an inflow', noun: 'Inflow', countMessage: `at most ${MAX_CASH_FLOWS} items`,
      hint: 'Added to the portfolio at the start of the year (an inheritance, a house sale).',
      fields: oneOffFields(),
    },
  };

  function oneOffFields() {
    return [
      { name: 'name', label: 'Name', kind: 'text' },
      { name: 'year', label: 'Year', kind: 'int', min: 1, max: () => horizon(), required: true },
      { name: 'amount', label: 'Amount', kind: 'number', range: closed(0, 1e12), required: true, step: 1000 },
      { name: 'inflation_adjusted', label: 'In today’s money', kind: 'check', value: true },
    ];
  }

  function cap(word) {
    return word[0].toUpperCase() + word.slice(1);
  }

  // The years a cash flow may name: the horizon when it is valid (the API does the same).
  function horizon() {
    const years = Number(value('years'));
    return Number.isInteger(years) && years >= 1 && years <= DEFAULTS.max_years ? years : DEFAULTS.max_years;
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
    const describedBy = [spec.hint ? `h-${key}` : null, `e-${key}`].filter(Boolean).join(' ');
    let control;
    if (spec.kind === 'select') {
      control = el('select', { id, name: path, 'aria-describedby': describedBy },
        spec.options.map(([v, text]) => el('option', { value: v }, text)));
    } else if (spec.kind === 'check') {
      control = el('input', { id, name: path, type: 'checkbox', 'aria-describedby': describedBy });
    } else if (spec.kind === 'text') {
      control = el('input', { id, name: path, type: 'text', maxlength: 200, autocomplete: 'off', 'aria-describedby': describedBy });
    } else if (spec.kind === 'seed') {
      control = el('input', { id, name: path, type: 'text', inputmode: 'numeric', pattern: '[0-9]*', autocomplete: 'off', 'aria-describedby': describedBy });
    } else {
      control = el('input', {
        id, name: path, type: 'number', inputmode: spec.kind === 'int' ? 'numeric' : 'decimal',
        step: spec.kind === 'int' ? 1 : spec.step || 'any', placeholder: spec.placeholder,
        'aria-describedby': describedBy, 'aria-required': spec.required ? 'true' : null,
      });
    }
    const label = el('label', { for: id }, spec.label, spec.required ? el('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : null);
    const wrapper = el('div', { class: `field field-${spec.kind}`, 'data-path': path },
      spec.kind === 'check' ? [control, label] : [label, control],
      spec.hint ? el('p', { class: 'hint', id: `h-${key}` }, spec.hint) : null,
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
      setControl(`${name}[${index}].${f.name}`, f, values[f.name] ?? f.value);
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
        if (f.when) input(f.path).closest('.field').hidden = !f.when();
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
      for (const f of section.fields) setControl(f.path, f, f.value);
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
    if (w.monthly_ceiling >= 1e10) set('withdrawal.monthly_ceiling', '');
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
    updateVisibility();
  }

  // ---------------------------------------------------------------------------------------
  // Reading and checking the form: the same rules as the API, the same words.
  // ---------------------------------------------------------------------------------------
  function setPath(target, path, v) {
    const parts = path.split('.');
    let node = target;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts[parts.length - 1]] = v;
  }

  function readNumber(path, spec, errors) {
    const node = input(path);
    const raw = node.value.trim();
    if (node.validity && node.validity.badInput) {
      errors.push({ field: path, message: spec.kind === 'int' ? intMessage(spec.min, spec.max()) : 'must be a number' });
      return undefined;
    }
    if (raw === '') {
      if (spec.required) errors.push({ field: path, message: 'is required' });
      return undefined;
    }
    const x = Number(raw);
    if (spec.kind === 'int') {
      const max = spec.max();
      if (!Number.isInteger(x) || x < spec.min || x > max) {
        errors.push({ field: path, message: intMessage(spec.min, max) });
        return undefined;
      }
      return x;
    }
    if (!inRange(x, spec.range)) {
      errors.push({ field: path, message: describe(spec.range) });
      return undefined;
    }
    return x;
  }

  // Returns the JSON body and the broken rules (an empty list when the body may be sent).
  function readForm() {
    const errors = [];
    const body = {};
    let seed = null;
    const correlation = {};
    for (const section of SECTIONS) {
      for (const f of section.fields) {
        if (f.when && !f.when()) continue;
        if (f.kind === 'select') setPath(body, f.path, value(f.path));
        else if (f.kind === 'check') continue;
        else if (f.kind === 'seed') {
          const raw = value(f.path).trim();
          if (raw === '') continue;
          if (!/^\d+$/.test(raw)) errors.push({ field: 'seed', message: 'must be a whole number from 0 to 2^63-1' });
          else if (BigInt(raw) > MAX_SEED) errors.push({ field: 'seed', message: `must be at most 2^63-1 (${MAX_SEED})` });
          else seed = raw;
        } else {
          const x = readNumber(f.path, f, errors);
          if (x === undefined) continue;
          if (f.correlation) correlation[f.correlation.join('')] = x;
          else setPath(body, f.path, x);
        }
      }
    }
    // Discriminated unions: the choice names the variant, its parameters sit beside it.
    const rm = body.return_model;
    body.return_model = { kind: rm.kind };
    if (rm.kind === 'student_t' && rm.df !== undefined) body.return_model.df = rm.df;
    if (rm.kind === 'bootstrap' && rm.block_years !== undefined) body.return_model.block_years = rm.block_years;
    if (rm.kind === 'historical' && Number.isInteger(body.years) && body.years > DEFAULTS.table_years) {
      errors.push({ field: 'years', message: `must be at most ${DEFAULTS.table_years} for the historical model (the table covers ${DEFAULTS.table_years} years)` });
    }

    const alloc = body.allocation || {};
    const weights = ['stocks', 'bonds', 'cash'].map((k) => alloc[k] ?? 0);
    if (!errors.some((e) => e.field.startsWith('allocation'))) {
      const sum = weights.reduce((a, b) => a + b, 0);
      if (Math.abs(sum - 1) > SUM_TOLERANCE) errors.push({ field: 'allocation', message: `weights must sum to 1 (± 1e-6); they sum to ${sum}` });
    }

    checkCorrelation(body, correlation, errors);

    const w = body.withdrawal;
    if (w.strategy === 'floor_ceiling' && w.monthly_floor !== undefined && w.monthly_ceiling !== undefined && w.monthly_ceiling < w.monthly_floor) {
      errors.push({ field: 'withdrawal.monthly_ceiling', message: 'must be ≥ withdrawal.monthly_floor' });
    }

    if (solving()) {
      const target = body.solve?.target_success;
      if (target === undefined && !errors.some((e) => e.field === 'solve.target_success')) {
        errors.push({ field: 'solve.target_success', message: 'is required' });
      } else if (target !== undefined && target >= 1) {
        errors.push({ field: 'solve.target_success', message: 'must be strictly between 0 and 1' });
      }
      if (w.strategy !== 'constant_real') {
        errors.push({ field: 'solve', message: 'the solver finds a constant real monthly_spending; use withdrawal.strategy constant_real with it' });
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

  function checkCorrelation(body, given, errors) {
    const keys = ['01', '02', '12'];
    const filled = keys.filter((k) => given[k] !== undefined);
    const failed = errors.some((e) => e.field.startsWith('assumptions.correlation'));
    if (filled.length === 0 && !failed) return;
    if (failed) return;
    if (filled.length < 3) {
      errors.push({ field: 'assumptions.correlation', message: 'give all three correlations, or none for the historical ones' });
      return;
    }
    const [a, b, c] = keys.map((k) => given[k]);
    // A symmetric 3×3 matrix with a unit diagonal is positive semi-definite exactly when its
    // principal minors are ≥ 0: 1 − a², 1 − b², 1 − c² (true within [-1, 1]) and the
    // determinant.
    const det = 1 + 2 * a * b * c - a * a - b * b - c * c;
    if (det < -1e-9) {
      errors.push({ field: 'assumptions.correlation', message: 'must be positive semi-definite (a valid correlation matrix)' });
      return;
    }
    body.assumptions ??= {};
    body.assumptions.correlation = [[1, a, b], [a, 1, c], [b, c, 1]];
  }

  function readList(name, body, errors) {
    const items = $$(`#items-${name} > .item`);
    if (items.length === 0) return;
    if (items.length > MAX_CASH_FLOWS) {
      errors.push({ field: name, message: LISTS[name].countMessage });
      return;
    }
    body[name] = items.map((_, index) => {
      const record = {};
      for (const f of LISTS[name].fields) {
        const path = `${name}[${index}].${f.name}`;
        if (f.kind === 'text') {
          const text = value(path).trim();
          if (text) record.name = text;
        } else if (f.kind === 'check') {
          record[f.name] = input(path).checked;
        } else {
          const x = readNumber(path, f, errors);
          if (x !== undefined) record[f.name] = x;
        }
      }
      if (name === 'income' && record.start_year !== undefined && record.end_year !== undefined && record.end_year < record.start_year) {
        errors.push({ field: `${name}[${index}].end_year`, message: 'must be ≥ start_year' });
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
    let key = keyOf(path);
    while (key) {
      const node = document.getElementById(`e-${key}`);
      if (node && !node.closest('[hidden]')) return { node, key };
      key = key.includes('-') ? key.slice(0, key.lastIndexOf('-')) : '';
    }
    return { node: $('#e-body'), key: 'body' };
  }

  function showErrors(errors) {
    const list = $('#error-summary ul');
    list.replaceChildren();
    for (const error of errors) {
      const { node, key } = errorTarget(error.field);
      node.textContent = node.textContent ? `${node.textContent} ${error.message}` : error.message;
      const control = document.getElementById(`f-${key}`);
      if (control) control.setAttribute('aria-invalid', 'true');
      const details = node.closest('details');
      if (details) details.open = true;
      // "Income stream 2: Last year", so that same-named fields of list items are told apart.
      const item = node.closest('fieldset.item');
      const label = control ? control.labels?.[0]?.textContent.replace(/\s*\*$/, '') : null;
      const name = `${item ? `${item.querySelector('legend').textContent}: ` : ''}${label || error.field}`;
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

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const { text, errors } = readForm();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    const button = $('#submit');
    button.disabled = true;
    button.textContent = 'Submitting…';
    try {
      let response;
      try {
        response = await fetch('/simulations', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          body: text,
        });
      } catch (_) {
        showErrors([{ field: 'body', message: 'The API could not be reached. Check the connection and submit again.' }]);
        return;
      }
      if (response.status === 202 || response.status === 200) {
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
        const wait = retryAfter(response);
        const again = wait !== null ? ` Try again in ${Math.ceil(wait)} s.` : '';
        showErrors([{ field: 'body', message: `${p.title}: ${p.detail}.${again}` }]);
      }
    } finally {
      button.disabled = false;
      button.textContent = 'Run simulation';
    }
  }

  function follow(id, { fill, status = 'Submitted; asking for its progress…' }) {
    const token = {};
    following = { id, token };
    $('#idle').hidden = true;
    $('#job').hidden = false;
    $('#result').hidden = true;
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
  }

  const isCurrent = (token) => following !== null && following.token === token;

  // Polls until the job ends: waits at least what Retry-After asks, longer while nothing
  // changes (up to 8 s more), and backs off up to 30 s while the API cannot be reached.
  async function poll(id, token, fill) {
    let extra = 0;
    let failures = 0;
    let last = null;
    while (isCurrent(token)) {
      let response;
      try {
        response = await fetch(`/results/${id}`, { headers: { Accept: 'application/json' }, cache: 'no-store' });
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
      if (TERMINAL.has(job.status)) {
        finish(job);
        return;
      }
      const seen = `${job.status}/${job.progress.done}`;
      if (seen === last) extra = Math.min(extra ? extra * 2 : 0.5, 8);
      else extra = 0;
      last = seen;
      await sleep(((retryAfter(response) ?? 1) + extra) * 1000);
    }
  }

  function setStatus(text) {
    $('#job-status').textContent = text;
  }

  function showProgress(job) {
    const bar = $('#progress');
    const { done, total } = job.progress;
    if (total > 0) {
      bar.max = total;
      bar.value = done;
      $('#progress-text').textContent = `${done} of ${total} batches`;
    } else {
      bar.removeAttribute('value');
      $('#progress-text').textContent = '';
    }
    if (job.status === 'queued') {
      setStatus(job.error
        ? `Waiting to be retried (attempt ${job.attempts + 1}) after an error: ${job.error}`
        : 'Queued: waiting for a worker.');
    } else if (job.status === 'running') {
      setStatus(total > 0 ? `Running: ${Math.round((100 * done) / total)} % done.` : 'Running.');
    }
  }

  function finishControls() {
    $('#cancel').hidden = true;
    $('#progress-row').hidden = true;
  }

  function showJobProblem(text) {
    const box = $('#job-problem');
    box.replaceChildren(el('p', {}, text));
    box.hidden = false;
  }

  function finish(job) {
    finishControls();
    if (job.status === 'succeeded') {
      setStatus(`Finished in ${seconds(job)}.`);
      showResult(job);
    } else if (job.status === 'failed') {
      setStatus('The simulation failed.');
      showJobProblem(`It failed after ${job.attempts} attempt${job.attempts === 1 ? '' : 's'}, and will not be retried. `
        + `The worker reported: ${job.error || 'no reason given'}. `
        + 'If the error names a field, correct it and submit again; if it looks temporary, submitting again may work.');
    } else {
      setStatus('The simulation was cancelled.');
      showJobProblem('It was cancelled before it finished, so it has no result. Submit the form again to run it.');
    }
  }

  function seconds(job) {
    const ms = Date.parse(job.finished_at) - Date.parse(job.created_at);
    return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'a moment';
  }

  async function cancel() {
    if (!following) return;
    const { id } = following;
    const button = $('#cancel');
    button.disabled = true;
    let response;
    try {
      response = await fetch(`/simulations/${id}`, { method: 'DELETE', headers: { Accept: 'application/json' } });
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
      setStatus(`The job could not be cancelled: ${p.title}${p.detail ? ` (${p.detail})` : ''}.`);
      button.disabled = false;
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
      ['Seed', job.seedText],
      ['Computed in', `${r.elapsed_ms.toFixed(0)} ms (engine ${r.engine_version})`],
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
    const json = $('#download-json');
    json.href = `/results/${id}`;
    json.setAttribute('download', `portfolio-mc-${id}.json`);
    const csv = $('#download-csv');
    csv.href = `/results/${id}/table.csv`;
    csv.setAttribute('download', `portfolio-mc-${id}.csv`);
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
  // Wiring.
  // ---------------------------------------------------------------------------------------
  function jobInAddress() {
    const id = new URLSearchParams(location.search).get('job') || location.hash.replace(/^#/, '');
    return id && UUID.test(id) ? id : null;
  }

  function start() {
    buildForm();
    resetForm();
    const form = $('#sim-form');
    form.addEventListener('submit', submit);
    form.addEventListener('change', (event) => {
      if (['return_model.kind', 'withdrawal.strategy', 'solve.enabled'].includes(event.target.name)) updateVisibility();
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
        target.focus();
      }
    });
    window.addEventListener('popstate', () => {
      const id = jobInAddress();
      if (id) follow(id, { fill: true });
      else stopFollowing();
    });
    const id = jobInAddress();
    if (id) follow(id, { fill: true });
  }

  start();
})();
