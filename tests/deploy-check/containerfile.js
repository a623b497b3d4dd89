// Parses and lints a Containerfile (Dockerfile syntax) with dockerfile-utils, the validator of
// the VS Code Docker language server, and prints one JSON object on stdout:
//   {"diagnostics": [{"line", "severity", "message"}],
//    "instructions": [{"keyword", "args": [...], "content", "flags": {name: value}, "line"}]}
// (content: the arguments as one string, line continuations joined).
// Lines are 1-based. Used by tests/integration/test_deploy.py.
"use strict";
const fs = require("fs");
const utils = require("dockerfile-utils");
const { DockerfileParser } = require("dockerfile-ast");

const text = fs.readFileSync(process.argv[2], "utf8");
const severities = { 1: "error", 2: "warning", 3: "information", 4: "hint" };
const diagnostics = utils.validate(text).map((d) => ({
  line: d.range.start.line + 1,
  severity: severities[d.severity] || String(d.severity),
  message: d.message,
}));
const instructions = DockerfileParser.parse(text).getInstructions().map((ins) => {
  const flags = {};
  if (typeof ins.getFlags === "function") {
    for (const f of ins.getFlags()) flags[f.getName()] = f.getValue();
  }
  return {
    keyword: ins.getKeyword(),
    args: ins.getArguments().map((a) => a.getValue()),
    content: ins.getArgumentsContent(),
    flags,
    line: ins.getRange().start.line + 1,
  };
});
process.stdout.write(JSON.stringify({ diagnostics, instructions }) + "\n");
