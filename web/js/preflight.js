// @ts-check
// Binding preflight (the template rebind dialog): does the chosen environment hold the packs and
// models the template needs? If not, say which and offer to publish a new version with the template.
import { app } from "../../../scripts/app.js";
import { call } from "./api.js";
import { el } from "./dom.js";
import { openNewEnvironment } from "./environments.js";
import { analyzeWorkflow, builtinPacks, environmentPath, missingThere, templatePath } from "./needs.js";

let builtin = null; // this extension and ComfyUI-Manager: never in an environment, never "missing"
function getBuiltin() {
  builtin ??= call("GET", "/snapshot").then(builtinPacks, (err) => {
    builtin = null;
    throw err;
  });
  return builtin;
}

function render(box, template, manifest, lacks) {
  const items = [
    ...lacks.packs.map((p) => `node pack ${p}`),
    ...lacks.models.map((m) => `model ${m}`),
    ...lacks.nodes.map((n) => `node ${n} (not installed in this ComfyUI either)`),
  ];
  if (items.length === 0) {
    box.replaceChildren(
      el(
        "div",
        { class: "sagemaker-ok", "data-testid": "sagemaker-preflight-ok" },
        `${manifest.name} v${manifest.version} has the packs and models ${template} needs.`,
      ),
    );
    return;
  }
  box.replaceChildren(
    el("div", { class: "sagemaker-error", "data-testid": "sagemaker-preflight-missing" }, [
      `${manifest.name} v${manifest.version} lacks what ${template} needs:`,
      el(
        "ul",
        { class: "sagemaker-diff-list" },
        items.map((text) => el("li", { "data-testid": "sagemaker-preflight-item" }, text)),
      ),
    ]),
    el(
      "button",
      {
        class: "sagemaker-button",
        "data-testid": "sagemaker-preflight-publish",
        onclick: () => openNewEnvironment(manifest.name, [template]),
      },
      "Publish new version with this template",
    ),
  );
}

// An element that follows the environment select (and the "replace the workflow" checkbox, whose
// graph is then the one checked). `environments`: the listed ones; others are not checked.
export function bindingPreflight(template, select, replace, environments) {
  const box = el("div", { class: "sagemaker-preflight", "data-testid": "sagemaker-preflight", hidden: true });
  let ticket = 0;
  const run = async () => {
    const name = select.value;
    const mine = ++ticket;
    if (!environments.some((e) => e.name === name)) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    box.replaceChildren(el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-preflight-checking" }, `Checking ${name}...`));
    try {
      const workflow = replace.checked ? (await app.graphToPrompt()).workflow : (await call("GET", templatePath(template.name))).workflow;
      const [analysis, manifest, packs] = await Promise.all([analyzeWorkflow(workflow), call("GET", environmentPath(name)), getBuiltin()]);
      if (mine === ticket) render(box, template.name, manifest, missingThere(analysis, manifest, packs));
    } catch (err) {
      if (mine === ticket)
        box.replaceChildren(
          el("div", { class: "sagemaker-error", "data-testid": "sagemaker-preflight-error" }, `Could not check ${name}: ${err.message}`),
        );
    }
  };
  select.addEventListener("change", run);
  replace.addEventListener("change", run);
  run();
  return box;
}
