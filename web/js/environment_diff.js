// @ts-check
// An environment's latest version against this ComfyUI (GET /sagemaker/environments/{name}/diff), drawn.
import { el } from "./dom.js";

// One list of names under a heading; long lists fold away.
function part(label, names, testid, emphasis) {
  if (names.length === 0) return null;
  const items = el(
    "ul",
    { class: "sagemaker-diff-list" },
    names.map((n) => el("li", { title: n }, n)),
  );
  const heading = `${label} (${names.length})`;
  return el(
    "div",
    { class: "sagemaker-diff-part", "data-testid": testid },
    names.length > 6
      ? el("details", {}, [el("summary", { class: emphasis }, heading), items])
      : [el("div", { class: emphasis }, heading), items],
  );
}

export function renderDiff(diff) {
  const { packs, models, comfyui_version: version } = diff;
  const there = `in ${diff.name}`;
  const parts = [
    part(`Packs only ${there}`, packs.removed, "sagemaker-diff-packs-removed", "sagemaker-diff-warn"),
    part("Packs that changed", packs.changed, "sagemaker-diff-packs-changed", "sagemaker-diff-warn"),
    part("Packs only here", packs.added, "sagemaker-diff-packs-added", "sagemaker-muted"),
    part(`Models only ${there}`, models.missing_here, "sagemaker-diff-models-missing-here", "sagemaker-diff-warn"),
    part("Models that changed size", models.changed, "sagemaker-diff-models-changed", "sagemaker-diff-warn"),
    part("Models only here", models.missing_there, "sagemaker-diff-models-missing-there", "sagemaker-muted"),
  ].filter(Boolean);
  const sameVersion = version.here === version.there;
  return el("div", { class: "sagemaker-diff", "data-testid": "sagemaker-diff" }, [
    el(
      "div",
      { class: sameVersion ? "sagemaker-muted" : "sagemaker-diff-warn", "data-testid": "sagemaker-diff-comfyui" },
      sameVersion ? `ComfyUI ${version.here} here and ${there}` : `ComfyUI ${version.here} here, ${version.there} ${there}`,
    ),
    ...(parts.length
      ? parts
      : [el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-diff-same" }, "Same packs and models as here.")]),
  ]);
}
