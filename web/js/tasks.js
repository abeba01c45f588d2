// @ts-check
// Tasks (an environment publish, a model download): progress arrives as the websocket event "sagemaker.job"
// (a task's view, under its first name);
// GET /sagemaker/tasks/{id} every few seconds covers an event that was missed.
import { call, onServerEvent, toastError } from "./api.js";
import { el } from "./dom.js";
import { formatBytes } from "./format.js";
import { isArtist } from "./role.js";

const POLL_MS = 2000;
// A task's phases in order: a view in an earlier phase than the one shown is stale.
const PHASES = ["starting", "hashing", "packing", "uploading", "writing manifest", "deploying", "done", "cancelled"];

const watchers = new Map(); // task id -> Set of callbacks
const anyTask = new Set(); // callbacks that hear every task

// Registered at load: ComfyUI's api only dispatches event types someone listens to.
onServerEvent("sagemaker.job", (task) => {
  if (!task?.id) return;
  for (const fn of [...(watchers.get(task.id) ?? [])]) fn(task);
  for (const fn of [...anyTask]) fn(task);
});

// Hear every task's events (e.g. a publish started by another browser); returns the unsubscribe.
export function onTask(fn) {
  anyTask.add(fn);
  return () => anyTask.delete(fn);
}

export const isFinished = (task) => task.state !== "running";

function isStale(next, last) {
  if (isFinished(last)) return true; // a finished task is final
  if (isFinished(next)) return false;
  const a = PHASES.indexOf(next.phase);
  const b = PHASES.indexOf(last.phase);
  return a < b || (a === b && next.bytes_done < last.bytes_done) || (a === b && next.files_done < last.files_done);
}

// Calls onUpdate with each newer view of the task; resolves to the finished task.
export function followTask(task, onUpdate) {
  return new Promise((resolve) => {
    let last = task;
    let timer = null;
    const callbacks = watchers.get(task.id) ?? new Set();
    watchers.set(task.id, callbacks);
    const stop = () => {
      clearInterval(timer);
      callbacks.delete(update);
      if (callbacks.size === 0) watchers.delete(task.id);
    };
    function update(next) {
      if (next !== task && isStale(next, last)) return;
      last = next;
      onUpdate(next);
      if (isFinished(next)) {
        stop();
        resolve(next);
      }
    }
    const poll = async () => {
      try {
        update(await call("GET", `/tasks/${encodeURIComponent(task.id)}`));
      } catch (err) {
        // 404: ComfyUI restarted and forgot the task; its outcome is unknown.
        if (err.status === 404) update({ ...last, state: "failed", error: { code: err.code, message: err.message } });
      }
    };
    callbacks.add(update);
    update(task);
    if (isFinished(task)) return;
    timer = setInterval(poll, POLL_MS);
    poll(); // events sent before this listener existed are missed: read the task once now
  });
}

export async function cancelTask(id) {
  try {
    await call("POST", `/tasks/${encodeURIComponent(id)}/cancel`);
  } catch (err) {
    // 409: it finished meanwhile; its own event says how.
    if (err.code !== "conflict") toastError("Could not cancel", err);
  }
}

// The fraction of the current phase that is done, 0..1.
export function phaseFraction(task) {
  if (task.state === "succeeded") return 1;
  if (task.bytes_total > 0) return Math.min(1, task.bytes_done / task.bytes_total);
  if (task.files_total > 0) return Math.min(1, task.files_done / task.files_total);
  return task.phase === "writing manifest" || task.phase === "deploying" ? 1 : 0;
}

function detail(task) {
  const parts = [];
  if (task.files_total > 0) parts.push(`${task.files_done}/${task.files_total} files`);
  if (task.bytes_total > 0) parts.push(`${formatBytes(task.bytes_done)} of ${formatBytes(task.bytes_total)}`);
  return parts.join(" · ");
}

function outcome(task) {
  if (task.state === "succeeded") return task.result?.version ? `done: version ${task.result.version}` : "done";
  if (task.state === "cancelled") return "cancelled";
  return `failed: ${task.error?.message ?? "unknown error"}`;
}

// A progress card: title, phase, bar, files and bytes, current file, Cancel (then Dismiss).
// Its testids, classes and data-job keep the name "job": tests and users' scripts select them.
export function taskCard(task, title, onDismiss) {
  const heading = el("span", { class: "sagemaker-job-title", "data-testid": "sagemaker-job-title" });
  const setTitle = (text) => {
    heading.textContent = text;
    heading.title = text;
  };
  setTitle(title);
  const phase = el("span", { class: "sagemaker-job-phase", "data-testid": "sagemaker-job-phase" });
  const fill = el("div", { class: "sagemaker-progress-fill" });
  const bar = el(
    "div",
    { class: "sagemaker-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "data-testid": "sagemaker-job-bar" },
    fill,
  );
  const counts = el("div", { class: "sagemaker-muted sagemaker-job-detail", "data-testid": "sagemaker-job-detail" });
  const current = el("div", { class: "sagemaker-muted sagemaker-job-current", "data-testid": "sagemaker-job-current" });
  const cancel = el(
    "button",
    {
      class: "sagemaker-button",
      "data-testid": "sagemaker-job-cancel",
      onclick: () => {
        cancel.disabled = true;
        cancelTask(task.id);
      },
    },
    "Cancel",
  );
  const dismiss = el(
    "button",
    {
      class: "sagemaker-icon-button",
      title: "Dismiss",
      "aria-label": "Dismiss",
      "data-testid": "sagemaker-job-dismiss",
      hidden: true,
      onclick: () => {
        root.remove();
        onDismiss?.();
      },
    },
    el("i", { class: "pi pi-times" }),
  );
  const root = el("div", { class: "sagemaker-job", "data-testid": "sagemaker-job", "data-job": task.id }, [
    el("div", { class: "sagemaker-section-header" }, [heading, dismiss]),
    el("div", { class: "sagemaker-job-line" }, [phase, cancel]),
    bar,
    counts,
    current,
  ]);
  const update = (next) => {
    const percent = Math.round(phaseFraction(next) * 100);
    fill.style.width = `${percent}%`;
    bar.setAttribute("aria-valuenow", String(percent));
    root.dataset.state = next.state;
    root.classList.toggle("sagemaker-job-failed", next.state === "failed");
    const finished = isFinished(next);
    phase.textContent = finished ? outcome(next) : next.phase;
    phase.classList.toggle("sagemaker-error", next.state === "failed");
    counts.textContent = detail(next);
    current.textContent = next.current ?? "";
    current.title = next.current ?? "";
    cancel.hidden = finished || isArtist(); // publishes and downloads are a designer's to cancel
    dismiss.hidden = !finished;
  };
  update(task);
  return { root, update, setTitle };
}
