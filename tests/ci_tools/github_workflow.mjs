// Reads a GitHub Actions workflow the way GitHub does: @actions/workflow-parser parses it
// and checks it against GitHub's workflow schema; @actions/expressions evaluates each
// job's and step's `if:` for the given event. Prints the jobs that run, as JSON:
//   node github_workflow.mjs WORKFLOW EVENT_NAME
//   -> {"errors": [...], "env": {...}, "jobs": [{"id", "steps": [{"name", "run", "uses",
//       "ifSuccess", "ifFailure"}]}]}
// ifSuccess / ifFailure: whether the step runs when every earlier step passed / one failed.
import { readFileSync } from "node:fs";
import { register } from "node:module";

register("./json_imports.mjs", import.meta.url);
const { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } = await import(
  "@actions/workflow-parser"
);
const { Lexer, Parser, Evaluator, data } = await import("@actions/expressions");
const { truthy } = await import("@actions/expressions/result");

const [path, eventName] = process.argv.slice(2);
const parsed = parseWorkflow(
  { name: path, content: readFileSync(path, "utf8") },
  new NoOperationTraceWriter(),
);
const errors = parsed.context.errors.getErrors().map((e) => e.message);
if (errors.length > 0 || parsed.value === undefined) {
  console.log(JSON.stringify({ errors, jobs: [] }));
  process.exit(0);
}
const workflow = await convertWorkflowTemplate(parsed.context, parsed.value);
errors.push(...(workflow.errors ?? []).map((e) => e.Message));

const github = new data.Dictionary({ key: "event_name", value: new data.StringData(eventName) });
const statusFunctions = (failed) => {
  const status = (name, value) => ({
    name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(value),
  });
  return [status("success", !failed), status("failure", failed), status("always", true),
          status("cancelled", false)];
};
const holds = (condition, failed) => {
  if (!condition) return !failed;
  const functions = statusFunctions(failed);
  const { tokens } = new Lexer(condition.expr).lex();
  const expr = new Parser(tokens, ["github"], functions).parse();
  const context = new data.Dictionary({ key: "github", value: github });
  const evaluated = new Evaluator(expr, context, new Map(functions.map((f) => [f.name, f])));
  return truthy(evaluated.evaluate());
};
const text = (value) => (value === undefined || typeof value === "string" ? value : null);

const jobs = workflow.jobs
  .filter((job) => holds(job.if, false))
  .map((job) => ({
    id: job.id,
    steps: job.steps.map((step) => ({
      name: step.name?.value ?? step.name ?? step.uses?.value ?? step.uses ?? step.id,
      // A `run:` with an expression in it is not a plain string: the test refuses it.
      run: text(step.run?.value ?? step.run),
      uses: step.uses?.value ?? step.uses,
      ifSuccess: holds(step.if, false),
      ifFailure: holds(step.if, true),
    })),
  }));
// The workflow's `env:`; a value with an expression in it is null (the test refuses it).
const env = Object.fromEntries(
  (workflow.env?.map ?? []).map(({ key, value }) => [key.value, text(value.value) ?? null]),
);
console.log(JSON.stringify({ errors, env, jobs }));
