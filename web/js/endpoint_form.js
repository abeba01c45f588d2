// @ts-check
// The endpoint config fields of the New Environment dialog; they change with the kind.
// The server validates the config again (core/endpoint_config.py) and its 400 message is shown.
// No surprise bills: a new SageMaker endpoint is async with autoscaling min 0, max 1 (it scales to zero), and
// what the chosen min/max costs is shown before Publish deploys it (GET /sagemaker/prices, core/prices.py), for
// each fallback type too (web/js/instance_pools.js: the types tried in order when the first has no capacity).
import { call } from "./api.js";
import { field } from "./dialog.js";
import { el } from "./dom.js";
import { fallbackPriceText, fallbackProblem, fallbackTypes, instanceFields } from "./instance_pools.js";

// Offered in the list; any other ml.* type may be typed.
export const INSTANCE_TYPES = [
  "ml.g4dn.xlarge",
  "ml.g4dn.2xlarge",
  "ml.g5.xlarge",
  "ml.g5.2xlarge",
  "ml.g5.4xlarge",
  "ml.g6.xlarge",
  "ml.g6.2xlarge",
  "ml.g6e.xlarge",
  "ml.g6e.2xlarge",
  "ml.p4d.24xlarge",
];
export const MODE_NOTE = "real-time: SageMaker limits a request to 60 s; async: up to an hour, can scale to zero";
const INSTANCE_TYPE = /^ml\.[a-z0-9-]+\.[a-z0-9]+$/; // ml.p6-b200.48xlarge has a hyphen

let lists = 0; // datalist ids must be unique in the page

function number(value, testid, min) {
  return el("input", {
    type: "number",
    class: "sagemaker-input sagemaker-number",
    min,
    step: "1",
    value: String(value),
    "data-testid": testid,
  });
}

function whole(input) {
  const text = input.value.trim();
  return /^-?\d+$/.test(text) ? Number(text) : NaN;
}

const LOCAL = "local (a worker on this computer)";

// endpointForm(initial config or null, onChange) -> {root, value(), problem()}.
export function endpointForm(initial, onChange) {
  const start = initial?.kind === "sagemaker" ? initial : { kind: initial?.kind ?? "local" };
  // A narrow sidebar cuts a select's text: the chosen kind is also its tooltip.
  const kind = el("select", { class: "sagemaker-input", "data-testid": "sagemaker-endpoint-kind" }, [
    el("option", { value: "local", selected: start.kind === "local", title: LOCAL }, LOCAL),
    el("option", { value: "sagemaker", selected: start.kind === "sagemaker", title: "SageMaker" }, "SageMaker"),
  ]);
  const titleKind = () => {
    kind.title = kind.selectedOptions[0]?.textContent ?? "";
  };
  kind.addEventListener("change", titleKind);
  titleKind();
  const listId = `sagemaker-instance-types-${++lists}`;
  const instanceType = el("input", {
    type: "text",
    class: "sagemaker-input",
    list: listId,
    autocomplete: "off",
    spellcheck: "false",
    value: start.instance_type ?? "ml.g5.xlarge",
    "data-testid": "sagemaker-endpoint-instance-type",
  });
  // Capacity fallback: the types after the first of the config's instance_types, in order.
  const fallback = el("input", {
    type: "text",
    class: "sagemaker-input",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "none, or e.g. ml.g6.xlarge, ml.g4dn.xlarge",
    title: "tried in order when the instance type above has no capacity (same GPUs per instance)",
    value: (start.instance_types ?? []).slice(1).join(", "),
    "data-testid": "sagemaker-endpoint-fallback-types",
  });
  const datalist = el(
    "datalist",
    { id: listId },
    INSTANCE_TYPES.map((t) => el("option", { value: t })),
  );
  const count = number(start.initial_count ?? 1, "sagemaker-endpoint-count", "1");
  const mode = el("select", { class: "sagemaker-input", "data-testid": "sagemaker-endpoint-mode" }, [
    el("option", { value: "async", selected: start.mode !== "realtime" }, "async"),
    el("option", { value: "realtime", selected: start.mode === "realtime" }, "real-time"),
  ]);
  // On unless the config being edited chose null (always on), which it keeps, priced below.
  const scaling = el("input", {
    type: "checkbox",
    checked: start.autoscaling !== null,
    "data-testid": "sagemaker-endpoint-autoscaling",
  });
  const min = number(start.autoscaling?.min ?? 0, "sagemaker-endpoint-min", "0");
  const max = number(start.autoscaling?.max ?? 1, "sagemaker-endpoint-max", "1");
  const range = el("div", { class: "sagemaker-inline" }, [field("Min", min), field("Max", max)]);
  const message = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-endpoint-error", hidden: true });
  const price = el("div", { class: "sagemaker-note", "data-testid": "sagemaker-endpoint-price", hidden: true });
  const sagemaker = el("div", { class: "sagemaker-subfields", "data-testid": "sagemaker-endpoint-sagemaker" }, [
    field("Instance type", instanceType),
    field("Fallback types (comma-separated)", fallback),
    datalist,
    el("div", { class: "sagemaker-inline" }, [field("Initial count", count), field("Mode", mode)]),
    el("div", { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-endpoint-mode-note" }, MODE_NOTE),
    el("label", { class: "sagemaker-check" }, [scaling, "Autoscaling"]),
    range,
    price,
  ]);

  const form = {
    root: el("fieldset", { class: "sagemaker-fieldset", "data-testid": "sagemaker-endpoint" }, [
      el("legend", { class: "sagemaker-label" }, "Endpoint"),
      field("Kind", kind),
      sagemaker,
      message,
    ]),
    /** @returns {{kind: "local"} | {kind: "sagemaker", instance_type: string, instance_types?: string[],
     *   initial_count: number, mode: string, autoscaling: {min: number, max: number} | null}} */
    value() {
      if (kind.value === "local") return { kind: "local" };
      return {
        kind: "sagemaker",
        ...instanceFields(instanceType.value.trim(), fallbackTypes(fallback.value)),
        initial_count: whole(count),
        mode: mode.value,
        autoscaling: scaling.checked ? { min: whole(min), max: whole(max) } : null,
      };
    },
    // What is out of range, said the way the server would; null when the config looks fine.
    problem() {
      const c = form.value();
      if (c.kind === "local") return null;
      if (!INSTANCE_TYPE.test(c.instance_type)) return "Instance type must look like ml.g5.xlarge";
      const fallbackWrong = fallbackProblem(c.instance_type, (c.instance_types ?? []).slice(1));
      if (fallbackWrong) return fallbackWrong;
      if (!Number.isInteger(c.initial_count) || c.initial_count < 1) {
        return (
          "Initial count must be at least 1: SageMaker cannot create an endpoint with 0 instances " +
          "(async scales to 0 afterwards with autoscaling min 0)"
        );
      }
      if (!c.autoscaling) return null;
      const { min: lo, max: hi } = c.autoscaling;
      if (!Number.isInteger(lo) || lo < 0) return "Autoscaling min must be a whole number, 0 or more";
      if (!Number.isInteger(hi) || hi < 1) return "Autoscaling max must be at least 1";
      if (lo > hi) return `Autoscaling min (${lo}) is over max (${hi})`;
      if (lo === 0 && c.mode === "realtime") return "Autoscaling min 0 is only for async endpoints; real-time needs 1";
      return null;
    },
  };
  let asked = 0; // the newest price question wins: answers may come back out of order
  const showPrice = async () => {
    const c = form.value();
    if (c.kind !== "sagemaker" || form.problem()) {
      price.hidden = true;
      return;
    }
    // Without autoscaling the initial count runs all the time: its floor is what the month costs.
    const [lo, hi] = c.autoscaling ? [c.autoscaling.min, c.autoscaling.max] : [c.initial_count, c.initial_count];
    const ask = (type) => call("GET", `/prices?${new URLSearchParams({ instance_type: type, min: String(lo), max: String(hi) })}`);
    const mine = ++asked;
    let text;
    let floor = false;
    /** @type {HTMLElement[]} */
    let fallbacks = [];
    try {
      const [quote, ...others] = await Promise.all((c.instance_types ?? [c.instance_type]).map(ask));
      text = `${quote.text} (prices of ${quote.as_of})`;
      floor = lo > 0;
      fallbacks = others.map((q) =>
        el("div", { "data-testid": "sagemaker-endpoint-fallback-price" }, fallbackPriceText(q.instance_type, q.text)),
      );
    } catch (err) {
      text = `price unknown: ${err?.message ?? err}`;
    }
    if (mine !== asked) return;
    price.hidden = false;
    price.replaceChildren(el("div", {}, text), ...fallbacks);
    price.classList.toggle("sagemaker-warning", floor);
    price.classList.toggle("sagemaker-muted", !floor);
  };
  const sync = () => {
    sagemaker.hidden = kind.value !== "sagemaker";
    range.hidden = !scaling.checked;
    const problem = form.problem();
    message.hidden = !problem;
    message.textContent = problem ?? "";
    showPrice();
    onChange?.();
  };
  for (const input of [kind, instanceType, fallback, count, mode, scaling, min, max]) {
    input.addEventListener("input", sync);
    input.addEventListener("change", sync);
  }
  sync();
  return form;
}
