// The form's red outline of refused nodes (web/js/node_outline.js): a stroke style beside the host's own
// nodeError style, as LGraphCanvas.drawNode calls them (`getStyle.call(node)`), on nodes of the known shape;
// a frontend whose nodes have no strokeStyles gets no outline and no exception.
import assert from "node:assert/strict";
import { test } from "node:test";
import { clearOutlines, outlineNodes } from "../../web/js/node_outline.js";

// What the canvas draws for a node: every stroke style it returns (LGraphCanvas.drawNode, 1.32 to 1.58).
const drawn = (node) =>
  Object.values(node.strokeStyles)
    .map((style) => style.call(node))
    .filter(Boolean);

function host(nodes) {
  const byId = new Map(nodes.map((n) => [String(n.id), n]));
  let redraws = 0;
  return {
    app: { graph: { getNodeById: (id) => byId.get(String(id)) ?? null }, canvas: { setDirty: () => redraws++ } },
    redraws: () => redraws,
  };
}

test("the refused nodes are stroked red beside the host's own styles, and only until cleared", () => {
  const own = () => undefined; // the host's nodeError style, with no host node errors
  const blur = { id: 3, strokeStyles: { nodeError: own } };
  const param = { id: 1, strokeStyles: { nodeError: own } };
  const { app, redraws } = host([blur, param]);
  assert.deepEqual(outlineNodes(app, ["3", "12:5", "99"]), ["3"]); // "12:5" is inside a subgraph: its host node 12
  assert.deepEqual(drawn(blur), [{ color: "red" }]);
  assert.deepEqual(drawn(param), []);
  assert.equal(blur.strokeStyles.nodeError, own);
  assert.deepEqual(outlineNodes(app, ["1"]), ["1"]); // the next refusal replaces the last
  assert.deepEqual(drawn(blur), []);
  assert.deepEqual(drawn(param), [{ color: "red" }]);
  clearOutlines(app);
  assert.deepEqual(drawn(param), []);
  assert.equal(redraws(), 3);
});

test("nodes without strokeStyles (another frontend's shape) get no outline and no exception", () => {
  const { app } = host([{ id: 3 }]);
  assert.deepEqual(outlineNodes(app, ["3"]), []);
  assert.deepEqual(outlineNodes({}, ["3"]), []); // no graph at all
});
