// @ts-check
// The "Prompt on AWS" switch itself: kept per browser (localStorage: ComfyUI settings are shared by
// every browser of a single-user ComfyUI). Its own module, imported by what reads it (queue.js, the
// parameter form) and by prompt_on_aws.js, which draws it; onSwitch listeners hear every flip, this
// tab's or another tab's (a listener that returns false is dropped). An artist's switch is always on:
// an artist runs templates on their endpoints, never on this ComfyUI (role.js).
import { isArtist, onRole } from "./role.js";

const KEY = "sagemaker.promptOnAws";
const listeners = new Set();

export function isPromptOnAws() {
  return isArtist() || localStorage.getItem(KEY) === "1";
}

// On by role: the box shows it and cannot be unticked.
export function isForcedOn() {
  return isArtist();
}

export function setPromptOnAws(on) {
  if (on) localStorage.setItem(KEY, "1");
  else localStorage.removeItem(KEY);
  tell(isPromptOnAws());
}

function tell(on) {
  for (const fn of [...listeners]) if (fn(on) === false) listeners.delete(fn);
}

export function onSwitch(fn) {
  listeners.add(fn);
}

// Another tab of this browser flipped it: this one follows (Run reads it at once anyway).
window.addEventListener("storage", (event) => {
  if (event.key === KEY) tell(isPromptOnAws());
});
onRole(() => tell(isPromptOnAws()));
