// @ts-check
// What templates need (POST /sagemaker/analyze over their workflows) and what an environment lacks.
import { call } from "./api.js";

export const templatePath = (name) => `/templates/${encodeURIComponent(name)}`;
export const environmentPath = (name) => `/environments/${encodeURIComponent(name)}`;

export async function analyzeWorkflow(workflow) {
  return call("POST", "/analyze", { workflow });
}

export async function analyzeTemplate(name) {
  const template = await call("GET", templatePath(name));
  return analyzeWorkflow(template.workflow);
}

// The model files an analysis points at, as "folder/name" (an ambiguous name: every candidate folder).
export function modelKeys(model) {
  const folders = model.candidates ?? [model.folder];
  return folders.map((folder) => `${folder}/${model.name}`);
}

// What this ComfyUI lacks for the analysed workflow, as short phrases.
export function missingHere(analysis) {
  return [
    ...analysis.missing_nodes.map((type) => `node ${type}`),
    ...analysis.models.filter((m) => !m.present).map((m) => `model ${m.folder}/${m.name}`),
  ];
}

// The packs an environment never holds (this extension, ComfyUI-Manager): the snapshot marks them.
export function builtinPacks(snapshot) {
  return new Set(snapshot.custom_nodes.filter((p) => p.builtin).map((p) => p.folder));
}

// What the environment's manifest lacks for the analysed workflow: packs and models.
export function missingThere(analysis, manifest, builtin) {
  const packs = new Set(manifest.custom_nodes.map((p) => p.folder));
  const models = new Set(manifest.models.map((m) => `${m.folder}/${m.name}`));
  return {
    packs: analysis.packs.filter((p) => !packs.has(p) && !builtin.has(p)),
    models: analysis.models.filter((m) => !modelKeys(m).some((key) => models.has(key))).map((m) => modelKeys(m)[0]),
    nodes: analysis.missing_nodes, // not installed here, so no environment published from here has them
  };
}

// Templates bound to the environment (names compare without case, as environments do).
export function boundTo(templates, environment) {
  const lower = environment.toLowerCase();
  return templates.filter((t) => t.environment && t.environment.toLowerCase() === lower).map((t) => t.name);
}
