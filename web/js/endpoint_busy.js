// @ts-check
// What an endpoint row says of its worker's ComfyUIs while any is not idle (the worker's /status `comfyuis`):
// "ComfyUI 0: running Blur (Ann) · ComfyUI 1: idle". A run this page knows is named by its template and owner,
// another by its execution id; a ComfyUI restarted to stop a cancelled run says so (issue 32: the section
// showed nothing busy while a cancelled run kept a ComfyUI computing).

/** @typedef {{index: number, state: string, execution?: string | null, reason?: string | null}} ComfyUIView */
/** @typedef {{template?: string | null, owner?: {name?: string} | null}} RunView */

/** @param {ComfyUIView} c @param {(id: string) => RunView | undefined} runOf @returns {string} */
export function comfyuiText(c, runOf) {
  const name = `ComfyUI ${c.index}`;
  if (c.state === "busy") {
    const run = c.execution ? runOf(c.execution) : undefined;
    if (run?.template) return `${name}: running ${run.template}${run.owner?.name ? ` (${run.owner.name})` : ""}`;
    return c.execution ? `${name}: running execution ${c.execution}` : `${name}: busy`;
  }
  if (c.state === "ready") return `${name}: idle`;
  return `${name}: ${c.state}`;
}

/** The line for a row, "" when every ComfyUI is idle (or the endpoint reports none).
 * @param {{comfyuis?: ComfyUIView[] | null}} e @param {(id: string) => RunView | undefined} runOf @returns {string} */
export function comfyuisText(e, runOf) {
  const comfyuis = e.comfyuis ?? [];
  if (!comfyuis.some((c) => c.state !== "ready")) return "";
  return comfyuis.map((c) => comfyuiText(c, runOf)).join(" · ");
}

/** The tooltip: each ComfyUI's execution id and, while it restarts or failed, why.
 * @param {{comfyuis?: ComfyUIView[] | null}} e @returns {string} */
export function comfyuisTitle(e) {
  return (e.comfyuis ?? [])
    .map((c) =>
      [`ComfyUI ${c.index}: ${c.state}`, c.execution ? `execution ${c.execution}` : "", c.reason ?? ""].filter(Boolean).join(", "),
    )
    .join("\n");
}
