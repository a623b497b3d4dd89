// Validates Kubernetes objects against their OpenAPI schemas, twice:
//  1. with the models' own validators (kubernetes-models for the built-in kinds,
//     @kubernetes-models/keda for KEDA's CRDs): types, required fields, formats, enums;
//  2. with TypeScript's checker against the same models' interfaces, each object written as an
//     object literal of its kind's type: this also refuses fields the schema does not have
//     (a misspelt `readOnlyRootFilesytem` passes the first check, as unknown fields do there).
// Reads a JSON array of objects on stdin (tests/integration/test_deploy.py turns the YAML into
// JSON); prints a JSON array with one {"apiVersion", "kind", "name", "errors": [...]} per object.
// An object whose apiVersion/kind has no model is an error too.
"use strict";
const fs = require("fs");
const path = require("path");
const ts = require("typescript");

function modelPath(apiVersion, kind) {
  if (!/^[A-Za-z0-9]+$/.test(kind)) return null;
  if (apiVersion.startsWith("keda.sh/")) return "@kubernetes-models/keda/" + apiVersion + "/" + kind;
  if (!/^[a-z0-9.]*\/?v[0-9a-z]+$/.test(apiVersion)) return null;
  return "kubernetes-models/" + apiVersion + "/" + kind;
}

function loadModel(obj) {
  const p = modelPath(String(obj.apiVersion || ""), String(obj.kind || ""));
  try {
    return p && require(p)[obj.kind] ? p : null;
  } catch (e) {
    return null;
  }
}

function validate(obj, out) {
  try {
    new (require(out.module)[obj.kind])(obj).validate();
  } catch (e) {
    out.errors.push(String(e.message || e));
  }
}

// One .ts file beside node_modules: `const docN: I<Kind> = <object>;` per object.
function typeCheck(docs, results) {
  const lines = [];
  const starts = [];
  docs.forEach((d, i) => {
    if (results[i].module) {
      lines.push(`import type { I${d.kind} as T${i} } from ${JSON.stringify(results[i].module)};`);
    }
  });
  docs.forEach((d, i) => {
    if (!results[i].module) return;
    starts.push([lines.length, i]);
    lines.push(...`export const doc${i}: T${i} = ${JSON.stringify(d, null, 1)};`.split("\n"));
  });
  const file = path.join(__dirname, `.typecheck-${process.pid}.ts`);
  fs.writeFileSync(file, lines.join("\n") + "\n");
  try {
    const program = ts.createProgram([file], {
      noEmit: true, strict: true, types: [], skipLibCheck: true,
      moduleResolution: ts.ModuleResolutionKind.Node10, module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2020,
    });
    const diags = ts.getPreEmitDiagnostics(program).filter((d) => d.file && d.file.fileName === file);
    for (const d of diags) {
      const line = d.file.getLineAndCharacterOfPosition(d.start).line;
      let owner = null;
      for (const [start, i] of starts) if (start <= line) owner = i;
      const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
      if (owner === null) throw new Error("type check: " + text);
      results[owner].errors.push("type: " + text);
    }
  } finally {
    fs.unlinkSync(file);
  }
}

const docs = JSON.parse(fs.readFileSync(0, "utf8"));
const results = docs.map((obj) => ({
  apiVersion: obj.apiVersion, kind: obj.kind, name: (obj.metadata || {}).name, errors: [],
  module: loadModel(obj),
}));
docs.forEach((obj, i) => {
  if (results[i].module) validate(obj, results[i]);
  else results[i].errors.push("no schema for apiVersion " + obj.apiVersion + " kind " + obj.kind);
});
typeCheck(docs, results);
for (const r of results) delete r.module;
process.stdout.write(JSON.stringify(results) + "\n");
