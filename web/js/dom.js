// A tiny element builder: el("div", {class: "x", onclick: f}, [children or text]).
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "value") node.value = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A small icon-only button (PrimeIcons class), labelled for screen readers and tests.
export function iconButton(icon, title, testid, onclick) {
  return el("button", { class: "sagemaker-icon-button", title, "aria-label": title, "data-testid": testid, onclick }, [
    el("i", { class: icon }),
  ]);
}
