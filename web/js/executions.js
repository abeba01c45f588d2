// @ts-check
// The sidebar's "Executions" section: Prompt on AWS runs, this ComfyUI's by default or everyone's on the
// store ("Everyone's"), 10 a page (Older / Newer follow the server's `next` cursors). Live: this
// ComfyUI's runs from the websocket event "sagemaker.execution" (sent to every browser), everyone's from
// "sagemaker.changed" (another ComfyUI changed the list). Rows are drawn by execution_rows.js. The canvas
// follows only the latest run of this page (ComfyUI's frontend follows one prompt at a time). A run this
// page queued that fails is a toast, and so is a cancel that fails; so is a run of this ComfyUI that someone else
// cancelled or stopped (run_notices.js). Cancelling someone else's run asks first.
import { call, onServerEvent, toast, toastError } from "./api.js";
import { openDialog } from "./dialog.js";
import { el, find, findAll } from "./dom.js";
import { detailOf, duration, isFinal, rowOf } from "./execution_rows.js";
import { timeAgo } from "./format.js";
import { onShared } from "./live.js";
import { cancelQuestion, endedByOther } from "./run_notices.js";
import { LiveSet, Section } from "./section.js";

export { outputImages, viewUrl } from "./execution_rows.js";

const LIMIT = 10; // runs a page
const KEEP = 100; // records kept in memory: the newest, and every one a section shows
const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };

const records = new Map(); // id -> latest summary
const queuedHere = new Set(); // ids of the runs this page queued
const announced = new Set(); // failed runs of this page already shown as a toast
const noticed = new Set(); // runs of this ComfyUI someone else ended, already shown as a toast
const copied = new Set(); // someone else's finished runs whose outputs this ComfyUI copied (GET /executions/{id})
const opening = new Set(); // ... being copied now
/** @type {LiveSet<ExecutionsSection>} */
const sections = new LiveSet();
const view = { everyone: false }; // the toggle, kept while the page lives (the tab re-renders on every open)
const live = () => sections.all();

const byNewest = (a, b) => (a.id < b.id ? 1 : -1); // ids start with their creation time

// This ComfyUI's (the server says `mine`), or queued from this page.
export const isMine = (r) => r.mine === true || queuedHere.has(r.id);

function trim() {
  if (records.size <= KEEP) return;
  const shown = new Set(live().flatMap((s) => s.ids));
  for (const r of [...records.values()].sort(byNewest).slice(KEEP)) if (!shown.has(r.id)) records.delete(r.id);
}

// A newer view of a run; an older one (the POST's answer after its first event) is ignored.
function upsert(record, draw = true) {
  const known = records.get(record.id);
  if (known && (RANK[known.state] ?? 0) > (RANK[record.state] ?? 0)) return;
  records.set(record.id, { ...known, ...record });
  announce(record.id);
  if (!draw) return;
  trim();
  for (const s of live()) s.draw();
}

function announce(id) {
  const r = records.get(id);
  if (!r || !queuedHere.has(id) || r.state !== "failed" || announced.has(id)) return;
  announced.add(id);
  toast("error", `Run on ${r.environment ?? "AWS"} failed`, r.error?.message ?? "unknown error");
}

onServerEvent("sagemaker.execution", (record) => {
  if (!record?.id) return;
  const before = records.get(record.id);
  upsert(record);
  noticeEnd(record.id, before);
});

// A run of this ComfyUI that this page saw in flight, ended by someone else (a designer's cancel or Stop): say who.
function noticeEnd(id, before) {
  const r = records.get(id);
  if (!r || noticed.has(id) || !isMine(r) || !(queuedHere.has(id) || (before && !isFinal(before)))) return;
  const text = endedByOther(r);
  if (!text) return;
  noticed.add(id);
  toast("warn", "Run ended by someone else", text);
}

// Another ComfyUI's runs changed: shown only when listing everyone's.
onShared("executions", () => {
  if (view.everyone) for (const s of live()) s.refresh();
});

// Another configuration applied (Connect): the store may be another one, so the runs known so far are
// forgotten, except this page's runs still in flight (they finish on the old store; their events go on).
export function forgetRuns() {
  for (const [id, r] of records) if (!queuedHere.has(id) || isFinal(r)) records.delete(id);
  copied.clear();
}

// queue.js: a run this page just queued (the answer of POST /sagemaker/executions).
export function executionCreated(execution) {
  queuedHere.add(execution.id);
  upsert(execution);
  announce(execution.id); // its failure may have been heard before this answer
}

// A run this page has seen (its latest summary), or undefined: the Endpoints section names the run a ComfyUI is busy with.
export const knownRun = (id) => records.get(id);

// The live run this page queued under ComfyUI's prompt_id, or null.
export function liveRunOf(promptId) {
  for (const id of queuedHere) {
    const r = records.get(id);
    if (r?.prompt_id === promptId && !isFinal(r)) return r;
  }
  return null;
}

// POST .../cancel; resolves true when accepted. Any refusal is a toast in the server's words: 409 (it
// ended meanwhile: the lists then show how), 403 (someone else's run, and this ComfyUI is an artist's).
export async function cancelExecution(id) {
  try {
    await call("POST", `/executions/${encodeURIComponent(id)}/cancel`);
    return true;
  } catch (err) {
    toastError("Could not cancel", err);
    if (err.code === "conflict") for (const s of live()) s.refresh();
    return false;
  }
}

// Someone else's finished run, opened here: GET copies its outputs from the store so /view serves them.
async function openRun(id) {
  if (copied.has(id) || opening.has(id)) return;
  opening.add(id);
  for (const s of live()) s.draw();
  try {
    const record = await call("GET", `/executions/${encodeURIComponent(id)}`);
    copied.add(id);
    upsert(record);
  } catch (err) {
    toastError("Could not open the run", err);
  } finally {
    opening.delete(id);
    for (const s of live()) s.draw();
  }
}

class ExecutionsSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-executions",
      title: "Executions",
      refresh: { title: "Refresh the list", testid: "sagemaker-executions-refresh" },
      failure: "Could not list executions",
    });
    this.selected = null; // the id whose outputs are shown
    this.cursors = [null]; // the `after` of each page from the newest to the one shown
    this.ids = []; // the shown page's runs, as listed
    this.next = null; // the cursor of the page after it
    this.loaded = false;
    this.wasShown = false;
    this.everyone = el("input", {
      type: "checkbox",
      checked: view.everyone,
      "data-testid": "sagemaker-executions-everyone",
      onchange: () => this.setEveryone(this.everyone.checked),
    });
    this.newer = el(
      "button",
      { class: "sagemaker-button", "data-testid": "sagemaker-executions-newer", onclick: () => this.turn(-1) },
      "Newer",
    );
    this.older = el(
      "button",
      { class: "sagemaker-button", "data-testid": "sagemaker-executions-older", onclick: () => this.turn(1) },
      "Older",
    );
    this.pageLabel = el("span", { class: "sagemaker-muted", "data-testid": "sagemaker-executions-page" });
    this.pager = el("div", { class: "sagemaker-pager", "data-testid": "sagemaker-executions-pager" }, [
      this.newer,
      this.pageLabel,
      this.older,
    ]);
    this.list = el("div", { class: "sagemaker-execution-list", "data-testid": "sagemaker-executions-list" });
    this.beside(
      el("label", { class: "sagemaker-check sagemaker-note", title: "Every ComfyUI's runs on this store" }, [this.everyone, "Everyone's"]),
    );
    this.root.append(this.slot, this.list, this.pager);
    this.timer = setInterval(() => this.tick(), 1000);
    this.draw();
  }

  setEveryone(on) {
    view.everyone = on;
    this.cursors = [null];
    this.ids = [];
    this.next = null;
    this.loaded = false;
    this.draw();
    this.refresh();
  }

  // Older (+1) or Newer (-1) by one page.
  turn(step) {
    if (step > 0 && this.next) this.cursors.push(this.next);
    else if (step < 0 && this.cursors.length > 1) this.cursors.pop();
    else return;
    this.selected = null;
    this.refresh();
  }

  read() {
    const query = new URLSearchParams({ owner: view.everyone ? "all" : "me", limit: String(LIMIT) });
    const after = this.cursors.at(-1);
    if (after) query.set("after", after);
    return call("GET", `/executions?${query}`);
  }

  show({ executions, next }) {
    for (const r of executions) upsert(r, false);
    this.ids = executions.map((r) => r.id);
    this.next = next ?? null;
    this.loaded = true;
    trim();
    this.draw();
  }

  // The runs to show: an older page as listed; the newest page as listed plus the runs heard of since.
  shown() {
    if (this.cursors.length > 1) return this.ids.map((id) => records.get(id)).filter((r) => r !== undefined);
    const floor = this.ids.length === LIMIT ? this.ids.at(-1) : "";
    return [...records.values()]
      .filter((r) => (view.everyone || isMine(r)) && r.id >= floor)
      .sort(byNewest)
      .slice(0, LIMIT);
  }

  // Running durations count up and times age while the section is shown.
  tick() {
    if (!this.root.isConnected) {
      if (this.wasShown) clearInterval(this.timer); // the sidebar closed: a new section comes with it
      return;
    }
    this.wasShown = true;
    for (const row of findAll(this.list, "[data-execution][data-testid='sagemaker-execution-row']")) {
      const r = records.get(row.dataset.execution);
      if (!r) continue;
      if (r.state === "running") find(row, '[data-testid="sagemaker-execution-duration"]').textContent = duration(r);
      find(row, '[data-testid="sagemaker-execution-time"]').textContent = timeAgo(r.created_at);
    }
  }

  draw() {
    const shown = this.shown();
    const first = this.cursors.length === 1;
    this.newer.disabled = first;
    this.older.disabled = !this.next;
    this.pageLabel.textContent = `page ${this.cursors.length}`;
    this.pager.hidden = first && !this.next;
    if (shown.length === 0) {
      const empty = !this.loaded
        ? "Loading..."
        : !first
          ? "No older runs."
          : view.everyone
            ? "No runs on this store yet."
            : "No runs yet: tick Prompt on AWS and press Run.";
      this.list.replaceChildren(el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-executions-empty" }, empty));
      return;
    }
    const context = { isMine, queuedHere, copied, opening, cancel: (r) => this.cancel(r), select: (id) => this.select(id) };
    this.list.replaceChildren(
      ...shown
        .flatMap((r) => [rowOf(r, r.id === this.selected, context), r.id === this.selected ? detailOf(r, context) : null])
        .filter((node) => node !== null),
    );
  }

  // One's own run is cancelled at once; someone else's asks first, saying whose it is and that they are told.
  cancel(r) {
    if (isMine(r)) return cancelExecution(r.id);
    openDialog(this.slot, {
      title: "Cancel someone else's run?",
      body: el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-execution-cancel-note" }, cancelQuestion(r)),
      okLabel: "Cancel their run",
      danger: true,
      testid: "sagemaker-execution-cancel-dialog",
      onOk: () => cancelExecution(r.id),
    });
    return Promise.resolve(false);
  }

  select(id) {
    this.selected = this.selected === id ? null : id;
    this.draw();
    const r = records.get(id);
    if (this.selected === id && r && !isMine(r) && r.state === "succeeded") openRun(id);
  }
}

// The section's root element; the newest runs load at once.
export function mountExecutions() {
  return sections.add(new ExecutionsSection()).start();
}
