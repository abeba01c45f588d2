// Capacity fallback in the page (web/js/instance_pools.js): the endpoint form's fallback types read into the
// config's ordered instance_types, refused as the server would, priced per type; an endpoint row's serving type.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fallbackPriceText, fallbackProblem, fallbackTypes, instanceFields, poolsText } from "../../web/js/instance_pools.js";

test("fallback types are read in order, separated by commas or spaces; none keeps today's config", () => {
  assert.deepEqual(fallbackTypes(" ml.g6.xlarge, ml.g4dn.xlarge  ml.g6e.xlarge,"), ["ml.g6.xlarge", "ml.g4dn.xlarge", "ml.g6e.xlarge"]);
  assert.deepEqual(instanceFields("ml.g5.xlarge", []), { instance_type: "ml.g5.xlarge" });
  assert.deepEqual(instanceFields("ml.g5.xlarge", ["ml.g6.xlarge"]), {
    instance_type: "ml.g5.xlarge",
    instance_types: ["ml.g5.xlarge", "ml.g6.xlarge"],
  });
});

test("a fallback list is refused as the server refuses it: shape, repeats, more than five types in all", () => {
  assert.equal(fallbackProblem("ml.g5.xlarge", ["ml.g6.xlarge", "ml.g4dn.xlarge"]), null);
  assert.equal(fallbackProblem("ml.g5.xlarge", ["g6"]), "Fallback type g6 must look like ml.g6.xlarge");
  assert.equal(fallbackProblem("ml.g5.xlarge", ["ml.g5.xlarge"]), "ml.g5.xlarge is listed twice");
  assert.match(
    fallbackProblem("ml.g5.xlarge", ["ml.g6.xlarge", "ml.g6.2xlarge", "ml.g4dn.xlarge", "ml.g6e.xlarge", "ml.g5.2xlarge"]),
    /At most 4/,
  );
});

test("each fallback type's price is said with its type", () => {
  assert.equal(fallbackPriceText("ml.g6.xlarge", "scales to zero"), "if it falls back to ml.g6.xlarge: scales to zero");
});

test("a row says the type its instances run on, and a fallback as such", () => {
  const pools = (counts) => counts.map(([instance_type, instances], i) => ({ instance_type, priority: i + 1, instances }));
  assert.equal(poolsText({}), "");
  assert.equal(
    poolsText({
      instance_pools: pools([
        ["ml.g5.xlarge", 2],
        ["ml.g6.xlarge", 0],
      ]),
    }),
    "on ml.g5.xlarge",
  );
  assert.equal(
    poolsText({
      instance_pools: pools([
        ["ml.g5.xlarge", 0],
        ["ml.g6.xlarge", 2],
      ]),
    }),
    "on ml.g6.xlarge (fallback: ml.g5.xlarge had no capacity)",
  );
  assert.equal(
    poolsText({
      instance_pools: pools([
        ["ml.g5.xlarge", 1],
        ["ml.g6.xlarge", 1],
      ]),
    }),
    "on 1 × ml.g5.xlarge + 1 × ml.g6.xlarge",
  );
  assert.equal(
    poolsText({
      instance_pools: pools([
        ["ml.g5.xlarge", 0],
        ["ml.g6.xlarge", 0],
      ]),
    }),
    "× ml.g5.xlarge (or 1 fallback type)",
  );
});
