// The sidebar's "Executions" section: recent Prompt on AWS runs (GET /sagemaker/executions at mount,
// then live from the websocket event "sagemaker.execution", sent to every browser), with their outputs,
// errors and a cancel button. The canvas follows only the latest run of this page (ComfyUI's frontend
// follows one prompt at a time); every run is listed here. A run this page queued that fails is a toast.
import { api } from "../../../scripts/api.js";
import { call, toast, toastError } from "./api.js";
import { el } from "./dom.js";

const LIMIT = 20;
const KEEP = 100; // records kept in memory: the newest
const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };
const isFinal = (r) => RANK[r.state] === 2;

const records = new Map(); // id -> latest summary
const mine = new Set(); // ids of the runs this page queued
const announced = new Set(); // failed runs of this page already shown as a toast
const sections = new Set();

function live() {
  for (const s of sections) if (!s.root.isConnected) sections.delete(s);
  return [...sections];
}

function newest() {
  return [...records.values()].sort((a, b) => (a.id < b.id ? 1 : -1)); // ids sort by creation time
}

// A newer view of a run; an older one (the POST's answer after its first event) is ignored.
function upsert(record) {
  const known = records.get(record.id);
  if (known && (RANK[known.state] ?? 0) > (RANK[record.state] ?? 0)) return;
  records.set(record.id, { ...known, ...record });
  if (records.size > KEEP) for (const r of newest().slice(KEEP)) records.delete(r.id);
  announce(record.id);
  for (const s of live()) s.draw();
}

function announce(id) {
  const r = records.get(id);
  if (!r || !mine.has(id) || r.state !== "failed" || announced.has(id)) return;
  announced.add(id);
  toast("error", `Run on ${r.environment ?? "AWS"} failed`, r.error?.message ?? "unknown error");
}

api.addEventListener("sagemaker.execution", (event) => {
  if (event.detail?.id) upsert(event.detail);
});

// queue.js: a run this page just queued (the answer of POST /sagemaker/executions).
export function executionCreated(execution) {
  mine.add(execution.id);
  upsert(execution);
  announce(execution.id); // its failure may have been heard before this answer
}

// The live run this page queued under ComfyUI's prompt_id, or null.
export function liveRunOf(promptId) {
  for (const id of mine) {
    const r = records.get(id);
    if (r?.prompt_id === promptId && !isFinal(r)) return r;
  }
  return null;
}

// POST .../cancel; resolves true when accepted. 409: it finished meanwhile (its own event says how).
export async function cancelExecution(id) {
  try {
    await call("POST", `/executions/${encodeURIComponent(id)}/cancel`);
    return true;
  } catch (err) {
    if (err.code !== "conflict") toastError("Could not cancel", err);
    return false;
  }
}

function seconds(from, to) {
  const a = Date.parse(from);
  const b = to ? Date.parse(to) : Date.now();
  return Number.isFinite(a) && Number.isFinite(b) ? Math.max(0, (b - a) / 1000) : null;
}

// 4.2 -> "4.2 s"; 125 -> "2 min 5 s".
export function formatDuration(s) {
  if (s === null) return "";
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

function duration(r) {
  if (r.state === "queued") return "";
  return formatDuration(seconds(r.started_at ?? r.created_at, r.finished_at));
}

// The images of a run's outputs ({node: {images: [...]}}), of the given nodes only when `nodes` is set.
export function outputImages(outputs, nodes = null) {
  return Object.entries(outputs ?? {})
    .filter(([node]) => !nodes || nodes.includes(String(node)))
    .flatMap(([, o]) => (Array.isArray(o?.images) ? o.images : []));
}

function images(r) {
  return outputImages(r.outputs);
}

// ComfyUI's /view URL of an output item ({filename, subfolder, type}).
export function viewUrl(image) {
  const q = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder ?? "", type: image.type ?? "output" });
  return api.apiURL(`/view?${q}`);
}

const STATE_ICON = { queued: "pi pi-clock", running: "pi pi-spin pi-spinner", succeeded: "pi pi-check", failed: "pi pi-times", cancelled: "pi pi-ban" };

class ExecutionsSection {
  constructor() {
    this.selected = null; // the id whose outputs are shown
    this.list = el("div", { class: "sagemaker-execution-list", "data-testid": "sagemaker-executions-list" });
    this.root = el("section", { class: "sagemaker-section", "data-testid": "sagemaker-executions" }, [
      el("div", { class: "sagemaker-section-header" }, [
        el("h4", { class: "sagemaker-section-title" }, "Executions"),
        el("button", { class: "sagemaker-icon-button", title: "Refresh the list", "aria-label": "Refresh the list", "data-testid": "sagemaker-executions-refresh", onclick: () => this.refresh() }, el("i", { class: "pi pi-refresh" })),
      ]),
      this.list,
    ]);
    this.timer = setInterval(() => this.tick(), 1000);
    this.draw();
  }

  async refresh() {
    try {
      const { executions } = await call("GET", `/executions?limit=${LIMIT}`);
      for (const r of executions) upsert(r);
      this.draw(true);
    } catch (err) {
      this.list.replaceChildren(el("div", { class: "sagemaker-error", "data-testid": "sagemaker-executions-error" }, err.message));
      toastError("Could not list executions", err);
    }
  }

  // Running durations count up while the section is shown.
  tick() {
    if (!this.root.isConnected) {
      if (this.shown) clearInterval(this.timer); // the sidebar closed: a new section comes with it
      return;
    }
    this.shown = true;
    for (const row of this.list.querySelectorAll('[data-state="running"]')) {
      const r = records.get(row.dataset.execution);
      if (r) row.querySelector('[data-testid="sagemaker-execution-duration"]').textContent = duration(r);
    }
  }

  draw(loaded = this.drawn) {
    this.drawn = loaded;
    const shown = newest().slice(0, LIMIT);
    if (shown.length === 0) {
      this.list.replaceChildren(el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-executions-empty" },
        loaded ? "No runs yet: tick Prompt on AWS and press Run." : "Loading..."));
      return;
    }
    this.list.replaceChildren(...shown.flatMap((r) => [this.row(r), r.id === this.selected ? this.detail(r) : null]).filter(Boolean));
  }

  row(r) {
    const first = images(r)[0];
    const stop = el("button", { class: "sagemaker-icon-button", title: "Cancel this run", "aria-label": "Cancel this run", "data-testid": "sagemaker-execution-cancel", hidden: isFinal(r) }, el("i", { class: "pi pi-stop-circle" }));
    stop.addEventListener("click", (event) => {
      event.stopPropagation();
      stop.disabled = true;
      cancelExecution(r.id).then((accepted) => { stop.disabled = accepted; });
    });
    const title = `${r.id}${mine.has(r.id) ? " (queued from this page)" : ""}\ncreated ${r.created_at ?? "?"}`;
    return el("div", {
      class: `sagemaker-execution${r.id === this.selected ? " sagemaker-selected" : ""}`, role: "button", tabindex: "0", title,
      "data-testid": "sagemaker-execution-row", "data-execution": r.id, "data-state": r.state,
      onclick: () => this.select(r.id),
      onkeydown: (event) => event.key === "Enter" && this.select(r.id),
    }, [
      el("i", { class: `${STATE_ICON[r.state] ?? "pi pi-question"} sagemaker-execution-icon sagemaker-${r.state}` }),
      el("div", { class: "sagemaker-execution-main" }, [
        el("span", { class: "sagemaker-execution-template", "data-testid": "sagemaker-execution-template" }, r.template ?? r.environment ?? "?"),
        el("span", { class: "sagemaker-muted sagemaker-execution-facts" }, [
          el("span", { "data-testid": "sagemaker-execution-state" }, r.state),
          el("span", { "data-testid": "sagemaker-execution-duration" }, duration(r)),
        ]),
      ]),
      first ? el("img", { class: "sagemaker-thumb", src: viewUrl(first), alt: first.filename, loading: "lazy", "data-testid": "sagemaker-execution-thumb" }) : null,
      stop,
    ]);
  }

  detail(r) {
    const shown = images(r);
    return el("div", { class: "sagemaker-execution-detail", "data-testid": "sagemaker-execution-detail", "data-execution": r.id }, [
      r.error ? el("div", { class: "sagemaker-error", "data-testid": "sagemaker-execution-error" }, r.error.message ?? r.error.code) : null,
      shown.length
        ? el("div", { class: "sagemaker-execution-images" }, shown.map((image) =>
          el("a", { href: viewUrl(image), target: "_blank", rel: "noopener", title: image.filename, "data-testid": "sagemaker-execution-image" }, el("img", { src: viewUrl(image), alt: image.filename }))))
        : el("div", { class: "sagemaker-muted" }, isFinal(r) ? "No images." : "Outputs appear when it is done."),
      el("div", { class: "sagemaker-muted sagemaker-note" }, `${r.environment ?? "?"} · ${r.id}`),
    ]);
  }

  select(id) {
    this.selected = this.selected === id ? null : id;
    this.draw();
  }
}

// The section's root element; the recent runs load at once.
export function mountExecutions() {
  const section = new ExecutionsSection();
  sections.add(section);
  section.refresh();
  return section.root;
}
