// @ts-check
// Red outlines on the canvas's nodes for a run the sidebar form sent and ComfyUI's validation refused: the one
// place that touches the canvas's node drawing (an adapter at the host's edge).
//
// ComfyUI's own Run outlines a refused node through the host's node errors (app.lastNodeErrors), which its
// LiteGraph nodes read in a stroke style: litegraphService gives each node `strokeStyles.nodeError`, returning
// {color: "red"} while app.lastNodeErrors has errors for that node id, and LGraphCanvas.drawNode strokes every
// style a node's `strokeStyles` returns (frontends 1.32 to 1.58 at least). The host offers extensions no way to
// set those node errors (1.32: a getter over its execution store; 1.58: extensionManager.lastNodeErrors is
// read-only), and they belong to the host's own queue. So the form adds its own stroke style, the host's colour,
// beside the host's: the same outline, drawn by the same canvas code, cleared by the form's next run.
// A frontend whose nodes have no `strokeStyles` (or that draws nodes another way, e.g. Vue nodes) gets no
// outline: said once in the console, the field messages still say it.

const STYLE = "sagemakerFormError";
/** @type {Set<string>} */
const outlined = new Set();
let warned = false;

/** The canvas node of an API prompt's node id ("5", or "12:5" inside a subgraph: its host node 12). */
function nodeOf(/** @type {any} */ app, /** @type {string} */ id) {
  return app?.graph?.getNodeById?.(String(id).split(":")[0]) ?? null;
}

/** @this {any} */
function stroke() {
  return outlined.has(String(this.id)) ? { color: "red" } : undefined;
}

function redraw(/** @type {any} */ app) {
  if (app?.canvas?.setDirty) app.canvas.setDirty(true, true);
  else app?.graph?.setDirtyCanvas?.(true, true);
}

/**
 * Outlines the canvas's nodes of these prompt node ids (and only them); resolves to the ids it outlined.
 * @param {any} app the frontend's app @param {string[]} ids
 * @returns {string[]}
 */
export function outlineNodes(app, ids) {
  outlined.clear();
  for (const id of ids) {
    const node = nodeOf(app, id);
    if (!node) continue;
    if (typeof node.strokeStyles !== "object" || node.strokeStyles === null) {
      if (!warned)
        console.warn("[comfyui-sagemaker] this ComfyUI frontend's nodes have no strokeStyles: the form cannot outline a refused node");
      warned = true;
      continue;
    }
    node.strokeStyles[STYLE] = stroke;
    outlined.add(String(node.id));
  }
  redraw(app);
  return [...outlined];
}

/** @param {any} app */
export function clearOutlines(app) {
  if (outlined.size === 0) return;
  outlined.clear();
  redraw(app);
}
