// @ts-check
// Proofs (core/proofs.py): a designer makes a template's succeeded run its proof ("Use this run as the proof",
// POST /templates/{name}/proof); each redeploy runs the proofs on the new version before traffic moves to it.
// The Templates list says whether a template's proof passed on the version its endpoint serves.
import { call, toast, toastError } from "./api.js";
import { el } from "./dom.js";
import { changedHere } from "./live.js";
import { proofStatus } from "./proof_status.js";

/** The proof note of a template's row. @param {{name: string, proof?: boolean}} t @param {any} endpoint */
export function proofNote(t, endpoint) {
  const status = proofStatus(t, endpoint);
  const warn = status.state === "failed" || status.state === "blocked";
  return el(
    "span",
    {
      class: warn ? "sagemaker-warning" : "sagemaker-muted",
      title: status.title,
      "data-testid": "sagemaker-template-proof",
      "data-proof": status.state,
    },
    status.text,
  );
}

/** Makes a succeeded run its template's proof; true once it is. @param {{id: string, template: string}} r */
export async function useAsProof(r) {
  try {
    await call("POST", `/templates/${encodeURIComponent(r.template)}/proof`, { execution_id: r.id });
    changedHere("templates"); // the Templates list shows it has a proof
    toast("success", `This run is now ${r.template}'s proof: each new version runs it before artists get it`);
    return true;
  } catch (err) {
    toastError(`Could not make this run ${r.template}'s proof`, err);
    return false;
  }
}

/** A designer's button in a succeeded template run's detail. @param {{id: string, template: string}} r */
export function proofButton(r) {
  const button = el(
    "button",
    {
      class: "sagemaker-button",
      title:
        "Its parameters' values and outputs (count, kind, size, look) become the template's proof, " +
        "run on each new environment version before traffic moves",
      "data-testid": "sagemaker-execution-proof",
    },
    "Use this run as the proof",
  );
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    button.disabled = true;
    useAsProof(r).then((done) => {
      button.disabled = done;
    });
  });
  return button;
}
