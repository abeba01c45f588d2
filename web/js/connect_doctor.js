// @ts-check
// The Connect panel's Doctor: `aws doctor` (aws/doctor.py) on the configuration this ComfyUI runs, with real
// calls on doctor/ keys of the store (deleted after). A designer's button beside Check; its lines are listed
// as Check's results are (connect_view.js), each pass, fail or skip with the fix.
import { call } from "./api.js";
import { resultRow } from "./connect_view.js";
import { el } from "./dom.js";

/** "3 passed, 1 failed, 2 skipped". @param {any[]} lines */
export function doctorSummary(lines) {
  const count = (/** @type {string} */ s) => lines.filter((x) => x.status === s).length;
  const [passed, failed, skipped] = [count("pass"), count("fail"), count("skip")];
  return [`${passed} passed`, failed && `${failed} failed`, skipped && `${skipped} skipped`].filter(Boolean).join(", ");
}

/** The Doctor button; `section` shows the lines in its results list and its errors as Check does.
 * @param {{ results: HTMLDivElement, showError: (m: string) => void,
 *           setBusy: (busy: boolean, button?: HTMLButtonElement | null, text?: string) => void }} section */
export function doctorButton(section) {
  /** @type {HTMLButtonElement} */
  const button = el(
    "button",
    {
      class: "sagemaker-button",
      title: "aws doctor: the AWS account tried as the extension uses it (real calls on doctor/ keys, deleted after)",
      "data-testid": "sagemaker-connect-doctor",
      onclick: () => run(),
    },
    "Doctor",
  );
  async function run() {
    section.showError("");
    section.setBusy(true, button, "Checking...");
    section.results.dataset.busy = "true";
    section.results.replaceChildren(
      el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-connect-checking" }, "aws doctor: this takes a few seconds..."),
    );
    try {
      const { lines } = await call("POST", "/connect/doctor", {});
      section.results.replaceChildren(
        ...lines.map(resultRow),
        el("div", { class: "sagemaker-connect-results-summary", "data-testid": "sagemaker-connect-results-summary" }, doctorSummary(lines)),
      );
    } catch (err) {
      section.results.replaceChildren();
      section.showError(err.message);
    } finally {
      delete section.results.dataset.busy;
      section.setBusy(false, button);
    }
  }
  return button;
}
