// @ts-check
// An environment's versions, newest first (GET /sagemaker/environments/{name}/versions), drawn: who published
// each, when, what it changed against the one before (packs, models, templates), and which one serves now.
import { el } from "./dom.js";
import { timeAgo } from "./format.js";

const KINDS = [
  ["packs", "pack"],
  ["models", "model"],
  ["templates", "template"],
];
const HOW = [
  ["added", "+"],
  ["removed", "−"],
  ["changed", "~"],
];

/** "+pack A · −model loras/x" (what the version changed), or a note that nothing the history follows did. */
function changesText(changes) {
  const parts = [];
  for (const [kind, word] of KINDS) {
    for (const [how, sign] of HOW) for (const item of changes?.[kind]?.[how] ?? []) parts.push(`${sign}${word} ${item}`);
  }
  if (changes?.endpoint_changed) parts.push("~endpoint config");
  return parts.join(" · ") || "no pack, model or template changed";
}

function item(v) {
  const attrs = {
    class: `sagemaker-history-item${v.serving ? " sagemaker-history-serving" : ""}`,
    "data-testid": "sagemaker-environment-history-item",
    "data-version": String(v.version),
    "data-serving": String(Boolean(v.serving)),
  };
  const head = el("div", { class: "sagemaker-history-line" }, [
    el("strong", {}, `v${v.version}`),
    v.serving ? el("span", { class: "sagemaker-badge", title: "the version its endpoint serves now" }, "serving") : null,
    v.problem
      ? null
      : el(
          "span",
          { class: "sagemaker-muted", title: v.created_at ?? "" },
          `${v.created_at ? timeAgo(v.created_at) : "?"} by ${v.published_by?.name ?? "unknown"}`,
        ),
  ]);
  if (v.problem) return el("li", attrs, [head, el("div", { class: "sagemaker-error" }, v.problem)]);
  return el("li", attrs, [
    head,
    el("div", { class: "sagemaker-history-changes", "data-testid": "sagemaker-environment-history-changes" }, changesText(v.changes)),
    v.proofs ? proofsLine(v.proofs) : null,
  ]);
}

// The proofs run on the version before traffic moved to it (core/proofs.py): passed, or which template failed.
function proofsLine(run) {
  const failed = run.results.filter((r) => !r.passed);
  const text = failed.length
    ? `proof failed: ${failed.map((r) => `${r.template} (${r.problems[0] ?? "failed"})`).join("; ")}`
    : `proofs passed (${run.results.length} template${run.results.length === 1 ? "" : "s"})`;
  return el(
    "div",
    {
      class: failed.length ? "sagemaker-error" : "sagemaker-muted",
      "data-testid": "sagemaker-environment-history-proofs",
      "data-passed": String(run.passed),
    },
    text,
  );
}

/** @param {{name: string, serving: number | null, versions: any[]}} history */
export function renderHistory(history) {
  return el("ol", { class: "sagemaker-history", "data-testid": "sagemaker-environment-history" }, history.versions.map(item));
}
