// @ts-check
// Collapsible sidebar sections: a section's title is a toggle; what is collapsed is remembered per browser
// (localStorage, like Prompt on AWS) and comes back at every open of the tab. A header action (+, refresh)
// opens the section, so what it shows is seen.
import { el } from "./dom.js";

const KEY = "sagemaker.collapsed";

function collapsed() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) ?? "[]");
    return new Set(Array.isArray(stored) ? stored : []);
  } catch {
    return new Set();
  }
}

function remember(id, isCollapsed) {
  const set = collapsed();
  if (isCollapsed) set.add(id);
  else set.delete(id);
  localStorage.setItem(KEY, JSON.stringify([...set]));
}

// Makes `section` (a .sagemaker-section with a header holding an h4 title) collapsible; returns it.
export function collapsible(section) {
  const id = section.dataset.testid;
  const header = section.querySelector(":scope > .sagemaker-section-header");
  const title = header?.querySelector(":scope > .sagemaker-section-title");
  if (!id || !title) return section;
  const chevron = el("i", { class: "pi pi-chevron-down", "aria-hidden": "true" });
  const toggle = el("button", { class: "sagemaker-section-toggle", "aria-expanded": "true", "data-testid": "sagemaker-section-toggle" }, [
    chevron,
    el("span", {}, title.textContent),
  ]);
  title.replaceChildren(toggle);
  const apply = (isCollapsed) => {
    section.dataset.collapsed = String(isCollapsed);
    toggle.setAttribute("aria-expanded", String(!isCollapsed));
    toggle.title = isCollapsed ? "Show this section" : "Hide this section";
    chevron.className = `pi ${isCollapsed ? "pi-chevron-right" : "pi-chevron-down"}`;
  };
  toggle.addEventListener("click", () => {
    const isCollapsed = section.dataset.collapsed !== "true";
    remember(id, isCollapsed);
    apply(isCollapsed);
  });
  header.addEventListener("click", (event) => {
    if (section.dataset.collapsed !== "true" || toggle.contains(event.target) || !event.target.closest("button")) return;
    remember(id, false);
    apply(false);
  });
  apply(collapsed().has(id));
  return section;
}
