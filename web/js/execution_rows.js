// @ts-check
// How the Executions list draws a run: its row (state, template, owner when it is not this ComfyUI's,
// duration, age, first image, Cancel) and, when selected, its detail (error, images, versions).
import { api } from "../../../scripts/api.js";
import { toast } from "./api.js";
import { el } from "./dom.js";
import { formatDuration, timeAgo } from "./format.js";
import { proofButton } from "./proofs.js";
import { isArtist } from "./role.js";

const STATE_ICON = {
  queued: "pi pi-clock",
  running: "pi pi-spin pi-spinner",
  succeeded: "pi pi-check",
  failed: "pi pi-times",
  cancelled: "pi pi-ban",
};
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export const isFinal = (r) => FINAL.has(r.state);

function seconds(from, to) {
  const a = Date.parse(from);
  const b = to ? Date.parse(to) : Date.now();
  return Number.isFinite(a) && Number.isFinite(b) ? Math.max(0, (b - a) / 1000) : null;
}

export function duration(r) {
  if (r.state === "queued") return "";
  return formatDuration(seconds(r.started_at ?? r.created_at, r.finished_at));
}

/** The images of a run's outputs ({node: {images: [...]}}), of the given nodes only when `nodes` is set.
 * @param {Record<string, any> | null | undefined} outputs @param {string[] | null} [nodes] @returns {any[]} */
export function outputImages(outputs, nodes = null) {
  return Object.entries(outputs ?? {})
    .filter(([node]) => !nodes || nodes.includes(String(node)))
    .flatMap(([, o]) => (Array.isArray(o?.images) ? o.images : []));
}

// ComfyUI's /view URL of an output item ({filename, subfolder, type}).
export function viewUrl(image) {
  const q = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder ?? "", type: image.type ?? "output" });
  return api.apiURL(`/view?${q}`);
}

const ownerName = (owner) => (owner ? `${owner.name}${owner.user ? ` (${owner.user})` : ""}` : "an older version");

// Someone else's outputs are on this ComfyUI only once the run was opened here (the GET copies them).
const imagesHere = (r, ctx) => (ctx.isMine(r) || ctx.copied.has(r.id) ? outputImages(r.outputs) : []);

// ctx: {isMine(r), queuedHere, copied, opening, cancel(r) -> Promise<bool>, select(id)}.
export function rowOf(r, selected, ctx) {
  const mine = ctx.isMine(r);
  const first = imagesHere(r, ctx)[0];
  // Anyone cancels their own runs; only a designer cancels someone else's (the server says the same).
  let stop = null;
  if (!isFinal(r) && (mine || !isArtist())) {
    stop = el(
      "button",
      {
        class: "sagemaker-icon-button",
        title: "Cancel this run",
        "aria-label": "Cancel this run",
        "data-testid": "sagemaker-execution-cancel",
      },
      el("i", { class: "pi pi-stop-circle" }),
    );
    stop.addEventListener("click", (event) => {
      event.stopPropagation();
      stop.disabled = true;
      ctx.cancel(r).then((accepted) => {
        stop.disabled = accepted;
      });
    });
  }
  const title = `${r.id}${ctx.queuedHere.has(r.id) ? " (queued from this page)" : ""}\ncreated ${r.created_at ?? "?"}`;
  return el(
    "div",
    {
      class: `sagemaker-execution${selected ? " sagemaker-selected" : ""}`,
      role: "button",
      tabindex: "0",
      title,
      "data-testid": "sagemaker-execution-row",
      "data-execution": r.id,
      "data-state": r.state,
      "data-mine": String(mine),
      onclick: () => ctx.select(r.id),
      onkeydown: (event) => event.key === "Enter" && ctx.select(r.id),
    },
    [
      el("i", { class: `${STATE_ICON[r.state] ?? "pi pi-question"} sagemaker-execution-icon sagemaker-${r.state}` }),
      el("div", { class: "sagemaker-execution-main" }, [
        el(
          "span",
          { class: "sagemaker-execution-template", "data-testid": "sagemaker-execution-template" },
          r.template ?? r.environment ?? "?",
        ),
        el("span", { class: "sagemaker-muted sagemaker-execution-facts" }, [
          el("span", { "data-testid": "sagemaker-execution-state" }, r.state),
          el("span", { "data-testid": "sagemaker-execution-duration" }, duration(r)),
          el("span", { title: r.created_at ?? "", "data-testid": "sagemaker-execution-time" }, timeAgo(r.created_at)),
          mine
            ? null
            : el(
                "span",
                { class: "sagemaker-execution-owner", title: `run by ${ownerName(r.owner)}`, "data-testid": "sagemaker-execution-owner" },
                [el("i", { class: "pi pi-user" }), ` ${ownerName(r.owner)}`],
              ),
        ]),
      ]),
      first
        ? el("img", {
            class: "sagemaker-thumb",
            src: viewUrl(first),
            alt: first.filename,
            loading: "lazy",
            "data-testid": "sagemaker-execution-thumb",
          })
        : null,
      stop,
    ],
  );
}

function versions(r) {
  const template = r.template ? `${r.template}${r.template_version ? ` v${r.template_version}` : ""}` : null;
  const environment = `${r.environment ?? "?"}${r.environment_version ? ` v${r.environment_version}` : ""}`;
  return [template, environment].filter(Boolean).join(" on ");
}

// A run's id (<time>-<8 random hex digits>-<its ComfyUI>) is long: shown by its random part; the whole id is the
// tooltip and is copied by a click (said in a toast where the page may not use the clipboard).
export const shortId = (id) => String(id).split("-")[1] ?? String(id);

function copyId(id) {
  const said = () => toast("info", "Run id copied", id);
  const shown = () => toast("info", "Run id (select it to copy)", id);
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(id).then(said, shown);
  else shown();
}

function idButton(id) {
  return el(
    "button",
    {
      class: "sagemaker-execution-id",
      title: `${id}\nclick to copy`,
      "data-testid": "sagemaker-execution-id",
      onclick: (event) => {
        event.stopPropagation(); // the row's click selects
        copyId(id);
      },
    },
    `run ${shortId(id)}`,
  );
}

export function detailOf(r, ctx) {
  const shown = imagesHere(r, ctx);
  let empty = isFinal(r) ? "No images." : "Outputs appear when it is done.";
  if (ctx.opening.has(r.id)) empty = "Copying its outputs from the store...";
  else if (!ctx.isMine(r) && r.state === "succeeded" && !ctx.copied.has(r.id)) empty = "";
  return el("div", { class: "sagemaker-execution-detail", "data-testid": "sagemaker-execution-detail", "data-execution": r.id }, [
    r.error ? el("div", { class: "sagemaker-error", "data-testid": "sagemaker-execution-error" }, r.error.message ?? r.error.code) : null,
    r.outputs_error
      ? el(
          "div",
          { class: "sagemaker-error", "data-testid": "sagemaker-execution-outputs-error" },
          `Its outputs could not be copied: ${r.outputs_error}`,
        )
      : null,
    shown.length
      ? el(
          "div",
          { class: "sagemaker-execution-images" },
          shown.map((image) =>
            el(
              "a",
              {
                href: viewUrl(image),
                target: "_blank",
                rel: "noopener",
                title: image.filename,
                "data-testid": "sagemaker-execution-image",
              },
              el("img", { src: viewUrl(image), alt: image.filename }),
            ),
          ),
        )
      : empty
        ? el("div", { class: "sagemaker-muted" }, empty)
        : null,
    shown.length
      ? el(
          "div",
          { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-execution-folder" },
          shown[0].subfolder ? `In ComfyUI's output folder, under ${shown[0].subfolder}/` : "In ComfyUI's output folder",
        )
      : null,
    el("div", { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-execution-versions" }, [
      `${versions(r)} · `,
      idButton(r.id),
    ]),
    r.state === "succeeded" && r.template && !isArtist() ? proofButton(r) : null,
  ]);
}
