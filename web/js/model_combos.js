// @ts-check
// While Prompt on AWS is on, model combos also offer the target environment's models: the prompt runs
// there, and an artist's own machine may hold none of them.
//
// ComfyUI's combos list file names, not folders, so a combo's folder is guessed:
//  1. the local model folder whose whole (non-empty) file list the combo offers; when several do, the
//     largest list wins (a small folder's few names can also appear in a bigger folder's list);
//  2. else the one folder of the environment's manifest that holds the combo's current value (a
//     template opened on a machine without its models keeps the value it was published with).
// The environment's names of that folder are appended; the current value is kept. The original
// options come back when the box is unticked or the target changes, unless ComfyUI replaced them
// meanwhile (a node definitions refresh): its own list then stands.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";

const NOT_MODELS = new Set(["configs", "custom_nodes"]); // folders ComfyUI lists that hold no model files
const LOCAL_TTL_MS = 30_000; // a graph load while ticked needs no second round of folder lists

const offered = new Map(); // widget -> {original, values}: the combos this module extended
let ticket = 0; // only the latest offer may change combos
let local = null; // {at, lists: Promise<Map folder -> file names>}

async function getJson(path) {
  const res = await api.fetchApi(path);
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

// Every local model folder's file list, from ComfyUI's own GET /models and /models/{folder}.
function localLists() {
  if (local && Date.now() - local.at < LOCAL_TTL_MS) return local.lists;
  const lists = getJson("/models").then(async (folders) => {
    const wanted = folders.filter((f) => !NOT_MODELS.has(f));
    const files = await Promise.all(wanted.map((f) => getJson(`/models/${encodeURIComponent(f)}`).catch(() => [])));
    return new Map(wanted.map((f, i) => [f, files[i]]));
  });
  local = { at: Date.now(), lists };
  lists.catch(() => {
    local = null;
  });
  return lists;
}

/** @typedef {{type: string, value: any, options: {values: string[]}}} ComboWidget */

/** The combo widgets of the root graph and of its subgraphs (a prompt flattens both). @returns {Generator<ComboWidget>} */
function* comboWidgets() {
  const graphs = [app.graph, ...(app.graph?.subgraphs?.values?.() ?? [])];
  for (const graph of graphs) {
    for (const node of graph?.nodes ?? []) {
      for (const widget of node.widgets ?? []) {
        if (widget.type === "combo" && Array.isArray(widget.options?.values)) yield/** @type {ComboWidget} */ (widget);
      }
    }
  }
}

function folderOf(widget, lists, remote) {
  const values = new Set(widget.options.values);
  let best = null;
  for (const [folder, files] of lists) {
    if (files.length === 0 || !files.every((f) => values.has(f))) continue;
    if (best === null || files.length > lists.get(best).length) best = folder;
  }
  if (best !== null) return best;
  const holding = [...remote].filter(([, names]) => names.includes(widget.value)).map(([folder]) => folder);
  return holding.length === 1 ? holding[0] : null;
}

// Put the original options back.
export function restoreModelCombos() {
  ticket++;
  for (const [widget, { original, values }] of offered) {
    if (widget.options?.values === values) widget.options.values = original;
  }
  const changed = offered.size > 0;
  offered.clear();
  if (changed) app.graph?.setDirtyCanvas(true, true);
}

// Offer `manifest`'s models (an environment's latest version) in the canvas's model combos.
// Resolves to the number of combos extended.
export async function offerModels(manifest) {
  restoreModelCombos();
  const mine = ticket;
  const remote = new Map();
  for (const m of manifest?.models ?? []) {
    if (!remote.has(m.folder)) remote.set(m.folder, []);
    remote.get(m.folder).push(m.name);
  }
  if (remote.size === 0) return 0;
  let lists;
  try {
    lists = await localLists();
  } catch {
    lists = new Map(); // rule 2 (the current value) still works
  }
  if (mine !== ticket) return 0;
  for (const widget of comboWidgets()) {
    const names = remote.get(folderOf(widget, lists, remote)) ?? [];
    const have = new Set(widget.options.values);
    const extra = names.filter((n) => !have.has(n)).sort();
    if (extra.length === 0) continue;
    const values = [...widget.options.values, ...extra];
    offered.set(widget, { original: widget.options.values, values });
    widget.options.values = values;
  }
  if (offered.size) app.graph?.setDirtyCanvas(true, true);
  return offered.size;
}

// A model was added or deleted here (the Models section): ComfyUI's combos list it at once, as after
// "Refresh Node Definitions" (the host's own refreshComboInNodes), and the folder lists are read again.
export async function modelsChanged() {
  local = null;
  try {
    await app.refreshComboInNodes?.();
  } catch (err) {
    console.warn("comfyui-sagemaker: could not refresh ComfyUI's model lists", err);
  }
}
