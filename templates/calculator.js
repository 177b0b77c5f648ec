// The cost calculator: the engine's pricing rules on what the customer types, in exact integers
// (cost-plus lines too: list prices from the price book, as exact BigInt fractions).
// Money is never a float here: catalog decimal strings become BigInt in 10^-12 currency units
// (rating/vectorized.py), each line is rounded once, half up, by integer division, and the words
// are the invoice's (billing_pipeline/rating/pricing.py explain, rating/engine.py _usage_line).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("calculator-data").textContent);
  const SCALE = 12;
  const TEN12 = 10n ** BigInt(SCALE);
  const I64_MAX = 2n ** 63n - 1n;
  const minor = data.minor;
  const perMinor = 10n ** BigInt(SCALE - minor); // 10^-12 units in one minor unit
  const currency = data.plan.currency;

  class InputError extends Error {}

  // "0.0040" -> 4000000000n (scale 12); refuses what is not an exact decimal at that scale.
  function parseDecimal(text, scale, what) {
    const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(String(text).trim());
    if (!m || (m[2] === "" && !m[3])) throw new InputError(`${what}: ${JSON.stringify(text)} is not a decimal number`);
    const frac = m[3] || "";
    if (frac.length > scale && /[^0]/.test(frac.slice(scale))) {
      throw new InputError(`${what}: ${text} has more than ${scale} decimal places`);
    }
    const units = BigInt((m[2] || "0") + frac.slice(0, scale).padEnd(scale, "0"));
    return m[1] === "-" ? -units : units;
  }

  // A decimal string as (integer, scale) with no loss: "0.19" -> [19n, 2].
  function parseRate(text) {
    const t = String(text).trim();
    const m = /^(\d*)(?:\.(\d*))?$/.exec(t);
    if (t === "" || !m || (m[1] === "" && !m[2])) {
      throw new InputError(`tax rate: ${JSON.stringify(text)} is not a decimal number, e.g. 0.19`);
    }
    const frac = m[2] || "";
    return [BigInt((m[1] || "0") + frac), frac.length];
  }

  // Base units as the quote command reads them: digits, with optional _ or , separators.
  function parseQuantity(text, label) {
    const t = String(text).trim();
    if (t === "") return 0n;
    if (!/^[0-9][0-9_,]*$/.test(t)) {
      throw new InputError(`${label}: ${JSON.stringify(text)} is not a whole number of base units`);
    }
    const q = BigInt(t.replace(/[_,]/g, ""));
    if (q > I64_MAX) throw new InputError(`${label}: ${t} exceeds 2^63 base units`);
    return q;
  }

  // n / d to the nearest integer, ties away from zero (money.ROUNDING = ROUND_HALF_UP).
  function roundHalfUp(n, d) {
    const a = n < 0n ? -n : n;
    let q = a / d;
    if (2n * (a - q * d) >= d) q += 1n;
    return n < 0n ? -q : q;
  }

  function group(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  const fmtQuantity = (q) => (q < 0n ? "-" + group((-q).toString()) : group(q.toString()));

  // Minor units as a plain decimal string, as the invoice JSON writes amounts: "1500.00".
  function plainMinor(units) {
    const neg = units < 0n;
    let s = (neg ? -units : units).toString();
    if (minor > 0) {
      s = s.padStart(minor + 1, "0");
      s = s.slice(0, -minor) + "." + s.slice(-minor);
    }
    return (neg ? "-" : "") + s;
  }

  // money.fmt_money of an amount already in minor units: "$1,234.50" or "1,234.50 EUR".
  function fmtMinor(units) {
    const neg = units < 0n;
    const [whole, frac] = plainMinor(neg ? -units : units).split(".");
    const text = group(whole) + (frac === undefined ? "" : "." + frac);
    if (currency === "USD") return (neg ? "-$" : "$") + text;
    return (neg ? "-" : "") + text + " " + currency;
  }

  // fmt_money of an exact amount numerator / denominator (currency units): rounded half up.
  const fmtExact = (numerator, denominator) => fmtMinor(roundHalfUp(numerator * 10n ** BigInt(minor), denominator));

  // money.fmt_ratio_money: all the decimals of an exact amount that has at most 12 (at least two
  // shown), else rounded to the minor unit.
  function fmtRatio(f) {
    const scaled = f.n * TEN12;
    if (scaled % f.d !== 0n) return fmtExact(f.n, f.d);
    const v = scaled / f.d;
    const whole = v / TEN12;
    let frac = (v % TEN12).toString().padStart(SCALE, "0").replace(/0+$/, "");
    frac = frac.padEnd(2, "0");
    const text = group(whole.toString()) + "." + frac;
    return currency === "USD" ? "$" + text : text + " " + currency;
  }

  // Exact fractions of currency units (BigInt numerator and denominator): cost-plus list costs.
  function gcd(a, b) {
    while (b !== 0n) [a, b] = [b, a % b];
    return a < 0n ? -a : a;
  }
  function frac(n, d) {
    const g = gcd(n, d) || 1n;
    return { n: n / g, d: d / g };
  }
  const fracAdd = (a, b) => frac(a.n * b.d + b.n * a.d, a.d * b.d);
  const fracMul = (a, b) => frac(a.n * b.n, a.d * b.d);

  const charges = data.charges.map((c) => {
    const where = `charge ${c.id}`;
    const unitSize = c.pricing === "package" ? 1n : BigInt(c.unit_size); // as vectorized.charge_rows
    let lower = 0n;
    const tiers = c.tiers.map((t, i) => {
      const tier = {
        n: i + 1, lower,
        upper: t.up_to === null ? I64_MAX : BigInt(t.up_to),
        upTo: t.up_to === null ? null : BigInt(t.up_to),
        price: parseDecimal(t.unit_price, SCALE, `${where} tier ${i + 1}`),
        fee: parseDecimal(t.flat_fee, SCALE, `${where} tier ${i + 1} flat_fee`),
        priceText: t.price_text, feeText: t.fee_text,
      };
      lower = t.up_to === null ? lower : BigInt(t.up_to);
      return tier;
    });
    return {
      ...c, unitSize, tiers,
      markupUnits: c.markup === null ? 0n : parseDecimal(c.markup, SCALE, `${where} markup`),
      feeUnits: c.unit_fee === null ? 0n : parseDecimal(c.unit_fee, SCALE, `${where} unit_fee`),
      price: c.unit_price === null ? null : parseDecimal(c.unit_price, SCALE, where),
      packagePrice: c.package_price === null ? null : parseDecimal(c.package_price, SCALE, where),
      packageSize: c.package_size === null ? null : BigInt(c.package_size),
    };
  });

  // engine._subject: "output tokens of gpt-4o", "input and output tokens (a, b)", "GPU-seconds".
  function subject(charge, models) {
    if (models.length === 1 && models[0]) return `${charge.what} of ${models[0]}`;
    const shown = models.filter((m) => m);
    return shown.length ? `${charge.what} (${shown.join(", ")})` : charge.what;
  }

  // A cost-plus line: each part's list price (the price book's, per slot) x units, x (1 + markup),
  // + the fee per unit_size; rounded once. Words as rating/cost_plus.py explain writes them.
  function costPlus(charge, line, billable, subj) {
    const parts = [...line.parts.values()].filter((p) => p.q !== 0n).sort(
      (a, b) => a.rank - b.rank || cmp(a.dims, b.dims) || a.entry - b.entry);
    if (!parts.length) return [0n, `${fmtQuantity(billable)} ${subj}: nothing to charge`];
    let listed = frac(0n, 1n);
    const words = parts.map((p) => {
      const cost = frac(p.q * p.price, TEN12 * p.unitSize);
      listed = fracAdd(listed, cost);
      return `${fmtQuantity(p.q)} ${p.label} at ${p.priceText} = ${fmtRatio(cost)}`;
    });
    const markup = fracMul(listed, frac(charge.markupUnits, TEN12));
    const fee = frac(billable * charge.feeUnits, TEN12 * BigInt(charge.unit_size));
    const total = fracAdd(fracAdd(listed, markup), fee);
    const amount = roundHalfUp(total.n * 10n ** BigInt(minor), total.d);
    let text = `${words.join("; ")}: list cost ${fmtRatio(listed)}`;
    if (charge.markup_text) text += ` + ${charge.markup_text} ${fmtRatio(markup)}`;
    if (charge.fee_text) text += ` + ${charge.fee_text} on ${fmtQuantity(billable)} ${charge.fee_unit} ${fmtRatio(fee)}`;
    return [amount, `${text} = ${fmtMinor(amount)}`];
  }

  // One line's amount (minor units, rounded once) and explanation, as pricing.explain words it.
  function price(charge, billable, subj) {
    const what = `${fmtQuantity(billable)} ${subj}`;
    const den = TEN12 * charge.unitSize;
    const roundDen = perMinor * charge.unitSize;
    if (charge.pricing === "per_unit") {
      const amount = roundHalfUp(billable * charge.price, roundDen);
      return [amount, `${what} at ${charge.price_text} = ${fmtMinor(amount)}`];
    }
    if (charge.pricing === "package") {
      const packages = billable === 0n ? 0n : (billable + charge.packageSize - 1n) / charge.packageSize;
      const numerator = packages * charge.packagePrice;
      return [roundHalfUp(numerator, roundDen),
        `${what} = ${fmtQuantity(packages)} package${packages !== 1n ? "s" : ""} of ${fmtQuantity(charge.packageSize)} ` +
        `at ${charge.package_price_text} = ${fmtExact(numerator, den)}`];
    }
    if (charge.pricing === "graduated") {
      let total = 0n;
      const parts = [];
      for (const t of charge.tiers) {
        const clipped = billable < t.lower ? t.lower : billable > t.upper ? t.upper : billable;
        const q = clipped - t.lower; // units of [0, billable] inside (lower, upper]
        if (q <= 0n) continue;
        const numerator = q * t.price + t.fee * charge.unitSize;
        total += numerator;
        const fee = t.fee !== 0n ? ` + ${t.feeText} tier fee` : "";
        const lead = parts.length === 0 ? "first" : "next";
        parts.push(`${lead} ${fmtQuantity(q)} at ${t.priceText}${fee} = ${fmtExact(numerator, den)}`);
      }
      const text = parts.length ? `${what}: ${parts.join("; ")}` : `${what}: nothing to charge`;
      return [roundHalfUp(total, roundDen), text];
    }
    // volume: the month's total picks one tier, which prices all of it
    const t = charge.tiers.find((x) => billable <= x.upper && (billable > x.lower || x.lower === 0n));
    const feeApplies = billable > 0n && t.fee !== 0n;
    const numerator = billable * t.price + (feeApplies ? t.fee * charge.unitSize : 0n);
    const band = t.upTo === null ? `above ${fmtQuantity(t.lower)}` : `${fmtQuantity(t.lower + 1n)} to ${fmtQuantity(t.upTo)}`;
    const fee = feeApplies ? ` + ${t.feeText} tier fee` : "";
    return [roundHalfUp(numerator, roundDen),
      `${what}: the total falls in tier ${t.n} (${band}), so all of it is priced at ${t.priceText}${fee} = ` +
      fmtExact(numerator, den)];
  }

  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // The quote for the typed quantities (one BigInt per slot): the invoice document's numbers.
  function compute(quantities, taxRate) {
    const allowance = data.allowance ? BigInt(data.allowance.quantity) : null;
    let used = 0n;
    const byKey = new Map();
    data.slots.forEach((slot, i) => {
      const q = quantities[i];
      if (q === 0n) return; // an empty input is no usage, as if --usage were not given
      let included = 0n;
      if (allowance !== null && data.allowance.meters.includes(slot.meter)) {
        const left = allowance - used; // included units go first, in page order
        included = q < left ? q : left > 0n ? left : 0n;
        used += q;
      }
      const charge = charges[slot.charge];
      const perModel = charge.pricing === "per_unit" || charge.pricing === "cost_plus"; // a line per model
      const key = JSON.stringify(perModel ? [slot.charge, slot.provider, slot.family] : [slot.charge]);
      let line = byKey.get(key);
      if (!line) {
        line = { charge, index: slot.charge, provider: perModel ? slot.provider : "", family: perModel ? slot.family || "" : "",
          quantity: 0n, included: 0n, models: new Set(), parts: new Map(), changes: new Set() };
        byKey.set(key, line);
      }
      line.quantity += q;
      line.included += included;
      line.models.add(slot.family);
      if (charge.pricing === "cost_plus") {
        const list = slot.list;
        if (!list.price) {
          throw new InputError(`${slot.meter} of ${slot.family || "(no model)"} (${slot.provider}): no price in the ` +
            `price book on ${data.prices_on}, and a cost-plus charge prices from it`);
        }
        const partKey = `${list.rank}\u001f${list.dims_key}\u001f${list.price.entry}`;
        let part = line.parts.get(partKey);
        if (!part) {
          part = { rank: list.rank, dims: list.dims_key, entry: list.price.entry, label: list.part, priceText: list.price.price_text,
            price: parseDecimal(list.price.unit_price, SCALE, list.part), unitSize: BigInt(list.price.unit_size), q: 0n };
          line.parts.set(partKey, part);
        }
        part.q += q - included;
        for (const day of list.changes) line.changes.add(day);
      }
    });
    const usage = [...byKey.values()].sort((a, b) => a.index - b.index || cmp(a.provider, b.provider) || cmp(a.family, b.family));
    const lines = [];
    if (data.base_fee) {
      lines.push({ charge_id: "base_fee", description: data.base_fee.description, explanation: data.base_fee.explanation,
        amount: parseDecimal(data.base_fee.amount, minor, "base fee") });
    }
    let usageTotal = 0n;
    for (const line of usage) {
      const charge = line.charge;
      const billable = line.quantity - line.included;
      if (line.quantity > I64_MAX) throw new InputError(`${charge.title}: a month's quantity exceeds 2^63 base units`);
      const models = [...line.models].sort((a, b) => (a === null ? -1 : b === null ? 1 : cmp(a, b))); // nulls first
      const subj = subject(charge, models);
      let amount, explanation, period = charge.period;
      if (charge.pricing === "cost_plus") {
        [amount, explanation] = costPlus(charge, line, billable, subj);
        const days = [...line.changes, ...charge.markup_days].sort();
        period = days.length ? data.period_labels[days[0]] : "";
      } else {
        [amount, explanation] = price(charge, billable, subj);
      }
      if (period) explanation = `Usage${period} at the prices in effect then: ` + explanation;
      if (line.included > 0n) {
        explanation = `${fmtQuantity(line.quantity)} ${subj}, of which ${fmtQuantity(line.included)} were covered ` +
          `by the plan's included ${fmtQuantity(BigInt(data.allowance.quantity))} units; ` + explanation;
      }
      const named = (charge.pricing === "per_unit" || (charge.pricing === "cost_plus" && models.length === 1)) && models[0];
      const model = named ? ` (${models[0]})` : "";
      lines.push({ charge_id: charge.id, description: charge.title + model + period, explanation, amount,
        model: models.length === 1 ? models[0] : null });
      usageTotal += amount;
    }
    if (data.minimum_commitment) {
      const commitment = parseDecimal(data.minimum_commitment.amount, SCALE, "minimum commitment");
      const gap = commitment - usageTotal * perMinor;
      if (gap > 0n) {
        lines.push({ charge_id: "minimum_commitment", description: data.minimum_commitment.description,
          amount: roundHalfUp(gap, perMinor),
          explanation: `Usage charges ${fmtMinor(usageTotal)} are below the monthly commitment of ` +
            `${data.minimum_commitment.text}; the difference ${fmtExact(gap, TEN12)} is billed` });
      }
    }
    const subtotal = lines.reduce((s, l) => s + l.amount, 0n);
    const [rate, rateScale] = taxRate;
    const tax = roundHalfUp(subtotal * rate, 10n ** BigInt(rateScale)); // round_money(subtotal x rate)
    return { lines, subtotal, tax, total: subtotal + tax };
  }

  // ---- the page ----
  const inputs = [...document.querySelectorAll("input[data-slot]")];
  const taxInput = document.getElementById("tax-rate");
  const body = document.getElementById("lines");
  const errorBox = document.getElementById("error");

  function cell(tag, text, className) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  function setTotal(id, units) {
    const el = document.getElementById(id);
    el.textContent = units === null ? "—" : fmtMinor(units);
    el.dataset.amount = units === null ? "" : plainMinor(units);
  }

  function update() {
    const quantities = new Array(data.slots.length).fill(0n);
    let result = null;
    try {
      for (const input of inputs) {
        const i = Number(input.dataset.slot);
        input.removeAttribute("aria-invalid");
        try {
          quantities[i] = parseQuantity(input.value, data.slots[i].label);
        } catch (err) {
          input.setAttribute("aria-invalid", "true");
          throw err;
        }
      }
      taxInput.removeAttribute("aria-invalid");
      let rate;
      try {
        rate = parseRate(taxInput.value);
      } catch (err) {
        taxInput.setAttribute("aria-invalid", "true");
        throw err;
      }
      result = compute(quantities, rate);
      errorBox.hidden = true;
      errorBox.textContent = "";
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      errorBox.hidden = false;
      errorBox.textContent = err.message;
    }
    body.replaceChildren();
    if (result) {
      for (const line of result.lines) {
        const row = document.createElement("tr");
        row.className = "line";
        row.dataset.charge = line.charge_id;
        row.dataset.amount = plainMinor(line.amount);
        const what = cell("td", "", "what");
        what.append(cell("span", line.description, "description"), cell("span", line.explanation, "explanation"));
        row.append(what, cell("td", fmtMinor(line.amount), "amount"));
        body.append(row);
      }
      if (!result.lines.length) {
        const row = document.createElement("tr");
        const empty = cell("td", "No charges: type quantities above.", "empty");
        empty.colSpan = 2;
        row.append(empty);
        body.append(row);
      }
    }
    setTotal("subtotal", result && result.subtotal);
    setTotal("tax", result && result.tax);
    setTotal("total", result && result.total);
    document.body.dataset.ready = "true";
  }

  for (const input of [...inputs, taxInput]) input.addEventListener("input", update);
  const form = document.getElementById("calculator");
  form.addEventListener("submit", (event) => event.preventDefault()); // Enter recomputes, never navigates
  form.addEventListener("reset", () => setTimeout(update, 0));
  update();
})();
