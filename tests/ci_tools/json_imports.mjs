// @actions/workflow-parser imports its JSON schema without an import attribute, which
// Node 22 accepts and Node 20 refuses; this load hook adds the attribute.
export async function load(url, context, next) {
  if (url.endsWith(".json")) {
    return next(url, { ...context, importAttributes: { type: "json" } });
  }
  return next(url, context);
}
