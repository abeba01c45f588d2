// @ts-check
// A small dialog drawn inside a slot of the sidebar panel: never modal, never a page lock.
// The rest of ComfyUI stays usable while it is open; opening another one replaces it.
import { el } from "./dom.js";

/**
 * @typedef {object} DialogOptions
 * @property {string} title
 * @property {import("./dom.js").Child | import("./dom.js").Child[]} [body]
 * @property {string} [okLabel]
 * @property {string} [busyLabel] the OK button's text while onOk runs (e.g. "Publishing…")
 * @property {boolean} [danger]
 * @property {(dialog: Dialog) => Promise<unknown> | unknown} onOk the dialog closes when it resolves and shows the
 *   error when it rejects (with the error's `action` element, if it carries one)
 * @property {string} [testid]
 */
/** @typedef {ReturnType<typeof openDialog>} Dialog */

/**
 * openDialog(slot, {title, body, okLabel, onOk, testid}) -> {setError, setOkEnabled, close}.
 * @param {HTMLElement} slot @param {DialogOptions} options
 */
export function openDialog(slot, { title, body = [], okLabel = "OK", busyLabel, danger = false, onOk, testid = "sagemaker-dialog" }) {
  const error = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-dialog-error", hidden: true });
  const ok = el(
    "button",
    { class: `sagemaker-button sagemaker-primary${danger ? " sagemaker-danger" : ""}`, "data-testid": "sagemaker-dialog-ok" },
    okLabel,
  );
  const cancel = el("button", { class: "sagemaker-button", "data-testid": "sagemaker-dialog-cancel" }, "Cancel");
  const box = el("div", { class: "sagemaker-dialog", role: "dialog", "aria-label": title, "data-testid": testid }, [
    el("div", { class: "sagemaker-dialog-title" }, title),
    ...[body].flat(),
    error,
    el("div", { class: "sagemaker-dialog-buttons" }, [cancel, ok]),
  ]);
  let okEnabled = true;
  let busy = false;
  const sync = () => {
    ok.disabled = busy || !okEnabled;
  };

  const handle = {
    box,
    /** `action`: an element offered with the message (e.g. a button to where it can be fixed).
     * @param {string} message @param {Node | null} [action] */
    setError(message, action = null) {
      error.hidden = !message;
      error.replaceChildren(...(message ? [message] : []), ...(message && action ? [action] : []));
    },
    /** @param {boolean} enabled */
    setOkEnabled(enabled) {
      okEnabled = enabled;
      sync();
    },
    close() {
      box.remove();
    },
    async submit() {
      if (ok.disabled) return;
      busy = true;
      sync();
      const label = ok.textContent;
      if (busyLabel) ok.textContent = busyLabel; // says it is at it until the dialog closes or shows why not
      handle.setError("");
      try {
        await onOk(handle);
        handle.close();
      } catch (err) {
        handle.setError(err?.message ?? String(err), err?.action);
      } finally {
        busy = false;
        if (busyLabel && ok.textContent === busyLabel) ok.textContent = label; // onOk may have renamed it ("Delete anyway")
        sync();
      }
    },
  };
  ok.addEventListener("click", () => handle.submit());
  cancel.addEventListener("click", () => handle.close());
  box.addEventListener("keydown", (event) => {
    // Keys typed here are ours: ComfyUI's canvas shortcuts must not see them.
    event.stopPropagation();
    if (event.key === "Escape") handle.close();
    else if (event.key === "Enter" && event.target instanceof HTMLInputElement && event.target.type !== "checkbox") handle.submit();
  });
  slot.replaceChildren(box);
  const first = box.querySelector("input, select");
  if (first instanceof HTMLElement) first.focus();
  return handle;
}

/** A labelled form field: label above, control below. @param {string} label @param {Node} control */
export function field(label, control) {
  return el("label", { class: "sagemaker-field" }, [el("span", { class: "sagemaker-label" }, label), control]);
}
