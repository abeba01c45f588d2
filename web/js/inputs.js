// @ts-check
// The sidebar's "Input sync" section: files in ComfyUI's input folder reach the store by themselves.
// Counts and a (collapsed) file list, live from the "sagemaker.input" event; the watcher's switch is
// a ComfyUI setting whose value the server keeps (GET /sagemaker/inputs says what it is).
import { app } from "../../../scripts/app.js";
import { call, onServerEvent, toast, toastError } from "./api.js";
import { el } from "./dom.js";
import { LiveSet, Section } from "./section.js";

const SETTING = "SageMaker.InputSync";
const STATES = ["failed", "pending", "synced"]; // the list's order: what needs attention first
const MAX_ROWS = 200; // an input folder of 10,000 files must not draw 10,000 rows

const files = new Map(); // name -> {name, state, size, mtime_ns, sha256, error}
let watcher = null; // {enabled, running} as the server last said; null until known
let loaded = false;
let fetching = null; // events heard while a GET is in flight, replayed over its answer
/** @type {LiveSet<InputsSection>} */
const sections = new LiveSet();

let drawQueued = false;
function redraw() {
  if (drawQueued) return;
  drawQueued = true; // a scan sends an event per file: draw once per frame
  requestAnimationFrame(() => {
    drawQueued = false;
    for (const s of sections.all()) s.render();
  });
}

function apply(entry) {
  if (entry.state === "deleted") files.delete(entry.name);
  else files.set(entry.name, entry);
}

onServerEvent("sagemaker.input", (entry) => {
  if (!entry?.name) return;
  fetching?.push(entry);
  apply(entry);
  redraw();
});

async function load() {
  const heard = [];
  fetching = heard;
  try {
    const answer = await call("GET", "/inputs");
    if (fetching !== heard) return; // a later load draws
    files.clear();
    for (const entry of [...answer.files, ...heard]) apply(entry);
    watcher = answer.watcher;
    loaded = true;
    redraw();
  } catch (err) {
    if (fetching !== heard) return;
    for (const s of sections.all()) s.fail(err);
    toastError("Could not read the input sync state", err);
  } finally {
    if (fetching === heard) fetching = null;
  }
}

// Make the setting show the server's value: equal to it, so its onChange posts nothing.
function showInSetting(value) {
  Promise.resolve(app.extensionManager?.setting?.set(SETTING, value)).catch((err) => toastError("Could not save the setting", err));
}

// The setting changed. At start-up (no old value) ComfyUI calls this with the stored value: the server
// decides then (see setup), so opening a page never switches the watcher. Switches run one at a time,
// each against the server's answer to the one before, so quick clicks end in the last value.
let switching = Promise.resolve();
function settingChanged(value, old) {
  if (old === undefined || typeof value !== "boolean") return;
  switching = switching.then(() => switchWatcher(value));
}

async function switchWatcher(value) {
  if (value === watcher?.enabled) return;
  try {
    watcher = await call("POST", "/inputs/watcher", { enabled: value });
    toast(
      "info",
      value ? "Input sync on" : "Input sync off",
      value ? "Files put in input/ reach the store." : "Files put in input/ stay on this machine.",
    );
    if (value) load(); // the watcher's start-up scan brings what changed meanwhile
    redraw();
  } catch (err) {
    toastError("Could not switch the input sync", err);
    if (watcher) showInSetting(watcher.enabled); // show what is true
  }
}

app.registerExtension({
  name: "comfyui.sagemaker.inputs",
  settings: [
    {
      id: SETTING,
      name: "Sync the input folder to the store",
      tooltip: "Watch ComfyUI's input folder and upload new and changed files, so remote prompts find them.",
      type: "boolean",
      defaultValue: true,
      category: ["SageMaker", "Input sync", "Watcher"],
      onChange: (value, old) => settingChanged(value, old),
    },
  ],
  setup() {
    // Not awaited: ComfyUI's start-up does not wait for this GET.
    load().then(() => {
      // The server's switch is the truth: the setting shows it.
      if (watcher && app.extensionManager?.setting?.get(SETTING) !== watcher.enabled) showInSetting(watcher.enabled);
    });
  },
});

function countsOf() {
  const counts = { synced: 0, pending: 0, failed: 0 };
  for (const f of files.values()) if (f.state in counts) counts[f.state]++;
  return counts;
}

function sorted() {
  const rank = (f) => {
    const i = STATES.indexOf(f.state);
    return i < 0 ? STATES.length : i;
  };
  return [...files.values()].sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

class InputsSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-inputs",
      title: "Input sync",
      refresh: { title: "Look for new files in input/ and refresh", testid: "sagemaker-inputs-scan" },
    });
    this.watcherMark = el("span", { class: "sagemaker-badge", "data-testid": "sagemaker-inputs-watcher" });
    this.counts = el("div", { class: "sagemaker-inputs-counts", "data-testid": "sagemaker-inputs-counts" });
    this.summary = el("summary", { class: "sagemaker-inputs-summary", "data-testid": "sagemaker-inputs-toggle" }, "Files");
    this.list = el("ul", { class: "sagemaker-inputs-list", "data-testid": "sagemaker-inputs-list" });
    this.details = el("details", { class: "sagemaker-collapsible", "data-testid": "sagemaker-inputs-files" }, [this.summary, this.list]);
    this.details.addEventListener("toggle", () => this.render());
    this.error = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-inputs-error", hidden: true });
    this.beside(this.watcherMark);
    this.root.append(this.counts, this.error, this.details);
    this.render();
  }

  // The state is the page's (events keep it current): mounting reads it again.
  start() {
    load();
    return this.root;
  }

  // Refresh scans input/ first.
  refresh() {
    return this.scan();
  }

  fail(err) {
    this.error.hidden = false;
    this.error.textContent = err.message;
  }

  // With the watcher off a scan would upload what the user chose to keep here: only refresh then.
  async scan() {
    if (watcher?.enabled) {
      try {
        await call("POST", "/inputs/scan");
      } catch (err) {
        toastError("Could not scan the input folder", err);
      }
    }
    await load();
  }

  render() {
    if (!loaded) {
      this.counts.replaceChildren(el("span", { class: "sagemaker-muted" }, "Loading..."));
      this.watcherMark.hidden = true;
      return;
    }
    this.error.hidden = true;
    const counts = countsOf();
    this.counts.replaceChildren(
      ...STATES.slice()
        .reverse()
        .flatMap((state, i) => [
          i ? el("span", { class: "sagemaker-muted" }, " · ") : null,
          el(
            "span",
            {
              class: `sagemaker-input-count sagemaker-input-${state}`,
              "data-testid": `sagemaker-inputs-${state}`,
              "data-count": String(counts[state]),
            },
            `${counts[state]} ${state}`,
          ),
        ])
        .filter((node) => node !== null),
    );
    const on = Boolean(watcher?.enabled);
    this.watcherMark.hidden = false;
    this.watcherMark.dataset.enabled = String(on);
    this.watcherMark.textContent = on ? (watcher.running ? "watching" : "not running") : "off";
    this.watcherMark.title = on
      ? "Files put in input/ are uploaded to the store"
      : "The watcher is off (Settings › SageMaker › Input sync): files in input/ are not uploaded";
    this.watcherMark.classList.toggle("sagemaker-unbound", !on);
    this.summary.textContent = `Files (${files.size})`;
    if (!this.details.open) return; // collapsed: no rows to keep up to date
    this.drawRows();
  }

  drawRows() {
    const all = sorted();
    if (all.length === 0) {
      this.list.replaceChildren(el("li", { class: "sagemaker-muted", "data-testid": "sagemaker-inputs-empty" }, "No files in input/ yet."));
      return;
    }
    const rows = all
      .slice(0, MAX_ROWS)
      .map((f) =>
        el("li", { class: "sagemaker-input-file", "data-testid": "sagemaker-input-row", "data-input": f.name, "data-state": f.state }, [
          el("div", { class: "sagemaker-input-line" }, [
            el("span", { class: "sagemaker-input-name", title: f.sha256 ? `${f.name}\nsha256 ${f.sha256}` : f.name }, f.name),
            el("span", { class: `sagemaker-input-state sagemaker-input-${f.state}`, "data-testid": "sagemaker-input-state" }, f.state),
          ]),
          f.state === "failed"
            ? el(
                "div",
                { class: "sagemaker-error sagemaker-input-error", "data-testid": "sagemaker-input-error" },
                f.error || "unknown error",
              )
            : null,
        ]),
      );
    if (all.length > MAX_ROWS) rows.push(el("li", { class: "sagemaker-muted" }, `+${all.length - MAX_ROWS} more`));
    this.list.replaceChildren(...rows);
  }
}

// The section's root element; its state loads at once (events keep it current afterwards).
export function mountInputs() {
  return sections.add(new InputsSection()).start();
}
