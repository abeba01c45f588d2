// @ts-check
// The sidebar's "Costs" section: every endpoint with its instances now, what it costs per hour, today and this
// month (from its own history: SageMaker's instance metrics, else estimated and said so; local endpoints cost 0),
// how long it has been idle; the store's bytes by prefix and their monthly cost; a plot of the last 30 days
// (cost per day as bars, instances over time as a line), drawn in SVG. Read when the section is drawn and when
// Refresh is pressed, never on a timer: nothing asks the store or AWS while nobody looks.
import { call } from "./api.js";
import { el } from "./dom.js";
import { formatBytes } from "./format.js";
import { Section } from "./section.js";

const SVG = "http://www.w3.org/2000/svg";
const PLOT_W = 300;
const PLOT_H = 90;

/** @param {number | null | undefined} usd @param {string} [unit] */
export function money(usd, unit = "") {
  if (usd === null || usd === undefined) return "price unknown";
  return `$${usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}${unit}`;
}

/** @param {number | null} seconds */
export function idleText(seconds) {
  if (seconds === null || seconds === undefined) return "no recent run";
  if (seconds === 0) return "running now";
  const minutes = Math.floor(seconds / 60);
  return minutes >= 60 ? `idle ${Math.floor(minutes / 60)} h ${minutes % 60} min` : `idle ${minutes} min`;
}

/** @param {string} tag @param {Record<string, string | number>} attrs @param {Node[]} [children] */
function svg(tag, attrs, children = []) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

/**
 * Cost per day (bars, scaled to the dearest day) and instances over time (a line, scaled to the most instances).
 * @param {{day: string, cost: number | null, instance_hours: number}[]} days
 * @param {number[]} instances one value per hour from the first day
 */
export function plot(days, instances) {
  const barW = PLOT_W / Math.max(days.length, 1);
  const dearest = Math.max(0, ...days.map((d) => d.cost ?? 0));
  const most = Math.max(0, ...instances);
  const bars = days.map((d, i) => {
    const h = dearest > 0 ? ((d.cost ?? 0) / dearest) * (PLOT_H - 4) : 0;
    const title = svg("title", {}, [document.createTextNode(`${d.day}: ${money(d.cost)}, ${d.instance_hours.toFixed(1)} instance-h`)]);
    return svg("rect", { class: "sagemaker-costs-bar", x: i * barW + 1, y: PLOT_H - h, width: Math.max(barW - 2, 1), height: h }, [title]);
  });
  const step = PLOT_W / Math.max(days.length * 24, 1);
  const points = instances.map((n, i) => `${(i * step).toFixed(1)},${(PLOT_H - (most > 0 ? (n / most) * (PLOT_H - 4) : 0)).toFixed(1)}`);
  const line = svg("polyline", { class: "sagemaker-costs-line", points: points.join(" "), fill: "none" });
  const label = `last ${days.length} days: cost per day (bars, up to ${money(dearest)}), instances (line, up to ${most.toFixed(1)})`;
  return svg(
    "svg",
    { viewBox: `0 0 ${PLOT_W} ${PLOT_H}`, class: "sagemaker-costs-plot", "data-testid": "sagemaker-costs-plot", role: "img" },
    [svg("title", {}, [document.createTextNode(label)]), ...bars, line],
  );
}

// Under the plot: what its bars and its line are, and their peaks.
function legend(report) {
  const dearest = Math.max(0, ...report.days.map((d) => d.cost ?? 0));
  const most = Math.max(0, ...report.series.instances);
  return `Last ${report.days.length} days: cost per day (bars, up to ${money(dearest)}), instances (line, up to ${most.toFixed(1)})`;
}

function endpointRow(e) {
  const what =
    e.kind === "sagemaker" ? `${e.instances} × ${e.instance_type ?? "?"}` : `${e.instances} local worker${e.instances === 1 ? "" : "s"}`;
  const estimated = e.history === "estimate" && e.kind === "sagemaker" ? " (estimated: no instance metrics)" : "";
  return el("div", { class: "sagemaker-cost-row", "data-testid": "sagemaker-cost-row", "data-endpoint": e.name, "data-kind": e.kind }, [
    el("div", { class: "sagemaker-row" }, [
      el("span", { class: "sagemaker-label" }, e.name),
      el("span", { class: "sagemaker-value", "data-testid": "sagemaker-cost-hourly" }, `${what} · ${money(e.hourly, "/h")}`),
    ]),
    el(
      "div",
      { class: "sagemaker-muted", "data-testid": "sagemaker-cost-spent" },
      `today ${money(e.cost_today)} (${e.instance_hours_today.toFixed(1)} instance-h) · this month ${money(e.cost_month)} ` +
        `(${e.instance_hours_month.toFixed(1)} instance-h)${estimated} · ${idleText(e.idle_s)}`,
    ),
  ]);
}

function storageRows(storage) {
  if (!storage) return [];
  return [
    el("div", { class: "sagemaker-row", "data-testid": "sagemaker-costs-storage" }, [
      el("span", { class: "sagemaker-label" }, `Storage (${storage.kind})`),
      el("span", { class: "sagemaker-value" }, `${formatBytes(storage.bytes)} · ${money(storage.monthly, "/month")}`),
    ]),
    ...storage.prefixes.map((p) =>
      el("div", { class: "sagemaker-row sagemaker-muted", "data-testid": "sagemaker-costs-prefix", "data-prefix": p.prefix }, [
        el("span", {}, p.prefix),
        el("span", {}, `${formatBytes(p.bytes)} · ${money(p.monthly, "/month")}`),
      ]),
    ),
  ];
}

class CostsSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-costs",
      title: "Costs",
      refresh: { title: "Compute the costs again", testid: "sagemaker-costs-refresh" },
      failure: "Could not compute the costs",
    });
    this.fresh = false;
    this.list = el(
      "div",
      { class: "sagemaker-costs-body", "data-testid": "sagemaker-costs-body" },
      el("div", { class: "sagemaker-muted" }, "Loading..."),
    );
    this.root.append(this.list);
  }

  // The first read may take the answer kept for a minute; Refresh asks for one computed now.
  read() {
    const path = this.fresh ? "/costs?fresh=1" : "/costs";
    this.fresh = true;
    return call("GET", path);
  }

  show(report) {
    const t = report.totals;
    this.list.replaceChildren(
      el("div", { class: "sagemaker-row", "data-testid": "sagemaker-costs-totals" }, [
        el("span", { class: "sagemaker-label" }, "Now"),
        el("span", { class: "sagemaker-value" }, `${money(t.hourly, "/h")} · today ${money(t.today)} · this month ${money(t.month)}`),
      ]),
      ...(report.endpoints.length
        ? report.endpoints.map(endpointRow)
        : [el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-costs-none" }, "No endpoint.")]),
      ...storageRows(report.storage),
      plot(report.days, report.series.instances),
      el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-costs-legend" }, legend(report)),
      ...report.unavailable.map((p) =>
        el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-costs-unavailable" }, `${p.kind}: ${p.reason}`),
      ),
      el(
        "div",
        { class: "sagemaker-muted sagemaker-note" },
        `Prices of ${report.prices_as_of ?? "?"} (${report.region || "no region"}), estimates.`,
      ),
    );
  }
}

export function mountCosts() {
  return new CostsSection().start();
}
