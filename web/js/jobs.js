// @ts-check
// Jobs (an environment publish): progress arrives as the websocket event "sagemaker.job";
// GET /sagemaker/jobs/{id} every few seconds covers an event that was missed.
import { call, onServerEvent, toastError } from "./api.js";
import { el } from "./dom.js";
import { formatBytes } from "./format.js";
import { isArtist } from "./role.js";

const POLL_MS = 2000;
// A job's phases in order: a view in an earlier phase than the one shown is stale.
const PHASES = ["starting", "hashing", "packing", "uploading", "writing manifest", "deploying", "done", "cancelled"];

const watchers = new Map(); // job id -> Set of callbacks
const anyJob = new Set(); // callbacks that hear every job

// Registered at load: ComfyUI's api only dispatches event types someone listens to.
onServerEvent("sagemaker.job", (job) => {
  if (!job?.id) return;
  for (const fn of [...(watchers.get(job.id) ?? [])]) fn(job);
  for (const fn of [...anyJob]) fn(job);
});

// Hear every job's events (e.g. a publish started by another browser); returns the unsubscribe.
export function onJob(fn) {
  anyJob.add(fn);
  return () => anyJob.delete(fn);
}

export const isFinished = (job) => job.state !== "running";

function isStale(next, last) {
  if (isFinished(last)) return true; // a finished job is final
  if (isFinished(next)) return false;
  const a = PHASES.indexOf(next.phase);
  const b = PHASES.indexOf(last.phase);
  return a < b || (a === b && next.bytes_done < last.bytes_done) || (a === b && next.files_done < last.files_done);
}

// Calls onUpdate with each newer view of the job; resolves to the finished job.
export function followJob(job, onUpdate) {
  return new Promise((resolve) => {
    let last = job;
    let timer = null;
    const callbacks = watchers.get(job.id) ?? new Set();
    watchers.set(job.id, callbacks);
    const stop = () => {
      clearInterval(timer);
      callbacks.delete(update);
      if (callbacks.size === 0) watchers.delete(job.id);
    };
    function update(next) {
      if (next !== job && isStale(next, last)) return;
      last = next;
      onUpdate(next);
      if (isFinished(next)) {
        stop();
        resolve(next);
      }
    }
    const poll = async () => {
      try {
        update(await call("GET", `/jobs/${encodeURIComponent(job.id)}`));
      } catch (err) {
        // 404: ComfyUI restarted and forgot the job; its outcome is unknown.
        if (err.status === 404) update({ ...last, state: "failed", error: { code: err.code, message: err.message } });
      }
    };
    callbacks.add(update);
    update(job);
    if (isFinished(job)) return;
    timer = setInterval(poll, POLL_MS);
    poll(); // events sent before this listener existed are missed: read the job once now
  });
}

export async function cancelJob(id) {
  try {
    await call("POST", `/jobs/${encodeURIComponent(id)}/cancel`);
  } catch (err) {
    // 409: it finished meanwhile; its own event says how.
    if (err.code !== "conflict") toastError("Could not cancel", err);
  }
}

// The fraction of the current phase that is done, 0..1.
export function phaseFraction(job) {
  if (job.state === "succeeded") return 1;
  if (job.bytes_total > 0) return Math.min(1, job.bytes_done / job.bytes_total);
  if (job.files_total > 0) return Math.min(1, job.files_done / job.files_total);
  return job.phase === "writing manifest" || job.phase === "deploying" ? 1 : 0;
}

function detail(job) {
  const parts = [];
  if (job.files_total > 0) parts.push(`${job.files_done}/${job.files_total} files`);
  if (job.bytes_total > 0) parts.push(`${formatBytes(job.bytes_done)} of ${formatBytes(job.bytes_total)}`);
  return parts.join(" · ");
}

function outcome(job) {
  if (job.state === "succeeded") return job.result?.version ? `done: version ${job.result.version}` : "done";
  if (job.state === "cancelled") return "cancelled";
  return `failed: ${job.error?.message ?? "unknown error"}`;
}

// A progress card: title, phase, bar, files and bytes, current file, Cancel (then Dismiss).
export function jobCard(job, title, onDismiss) {
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
        cancelJob(job.id);
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
  const root = el("div", { class: "sagemaker-job", "data-testid": "sagemaker-job", "data-job": job.id }, [
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
  update(job);
  return { root, update, setTitle };
}
