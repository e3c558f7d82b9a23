// Generates src/protocol.generated.ts from the JSON Schemas in ../../schemas (written by
// `python -m orca_daemon.schemagen`) with json-schema-to-typescript.
//   node scripts/gen-types.mjs           write the file
//   node scripts/gen-types.mjs --check   exit 1 if the committed file differs from a fresh one
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const schemas = join(here, "..", "..", "..", "schemas");
const target = join(here, "..", "src", "protocol.generated.ts");
const FOLDERS = ["requests", "results", "daemon", "events"];

function read(folder, file) {
  return JSON.parse(readFileSync(join(schemas, folder, file), "utf8"));
}

function jsonFiles(folder) {
  return readdirSync(join(schemas, folder))
    .filter((f) => f.endsWith(".json"))
    .sort();
}

/** The name of the type a schema file describes: its `$ref`'s target, else its title. */
function rootName(schema) {
  return schema.$ref ? schema.$ref.replace("#/$defs/", "") : schema.title;
}

/** One schema whose `$defs` hold every type of every file (names are unique across them). */
function mergedSchema() {
  const defs = {};
  for (const folder of FOLDERS) {
    for (const file of jsonFiles(folder)) {
      const { $defs = {}, $schema, $ref, ...root } = read(folder, file);
      for (const [name, def] of Object.entries($defs)) {
        if (defs[name] && JSON.stringify(defs[name]) !== JSON.stringify(def)) {
          throw new Error(`two different schemas named ${name} (${folder}/${file})`);
        }
        defs[name] = def;
      }
      if (!$ref) defs[root.title] = root;
    }
  }
  const names = Object.keys(defs).sort();
  return {
    title: "OrcaProtocolTypes",
    description: "Every type of the protocol, by name (an index for the generator).",
    type: "object",
    additionalProperties: false,
    required: names,
    properties: Object.fromEntries(names.map((n) => [n, { $ref: `#/$defs/${n}` }])),
    $defs: Object.fromEntries(names.map((n) => [n, defs[n]])),
  };
}

/** `OrcaMethods`: each request type (a bridge method) with its params and result types. */
function methodsMap() {
  const lines = [
    "",
    "/** Each socket request type (a method of `orca bridge`): its params (the request's fields",
    " * without `type`) and its result. */",
    "export interface OrcaMethods {",
  ];
  for (const file of jsonFiles("requests")) {
    if (file === "envelope.json") continue;
    const method = file.replace(/\.json$/, "");
    const request = rootName(read("requests", file));
    const result = rootName(read("results", file));
    lines.push(`  ${method}: { params: Omit<${request}, "type">; result: ${result} };`);
  }
  lines.push("}", "", "export type OrcaMethod = keyof OrcaMethods;", "");
  return lines.join("\n");
}

async function render() {
  const banner =
    "/* Generated from schemas/ by `npm run gen:types` (json-schema-to-typescript); do not edit.\n" +
    " * `npm run check:types` checks it is current; `python -m orca_daemon.schemagen` writes the schemas. */";
  const types = await compile(mergedSchema(), "OrcaProtocolTypes", {
    bannerComment: banner,
    additionalProperties: false,
    strictIndexSignatures: true,
    unknownAny: true,
    declareExternallyReferenced: true,
    format: true,
  });
  return types + methodsMap();
}

const text = await render();
if (process.argv.includes("--check")) {
  let committed = null;
  try {
    committed = readFileSync(target, "utf8");
  } catch {}
  if (committed !== text) {
    console.error(`stale: ${target}\nregenerate with: npm run gen:types`);
    process.exit(1);
  }
  console.log("protocol.generated.ts is current");
} else {
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}
